// The dashboard pack against the real thing: a Node-RED process with FlowFuse Dashboard 2.0 and
// adminAuth on (test/support/dashboard-env.ts), an embedded broker for the widgets' topics, and an
// agent with the pack, called over MQTT. A group and a gauge bound to test/temp are added, 21.5 is
// published, and headless Chromium shows the group, the gauge's label and the live value on the
// dashboard page; a switch clicked in the browser publishes on its command topic. A tab "Other"
// stays byte for byte as it was; removal, moves, snapshots and dry runs are checked on the tab
// Node-RED really holds.
import { EventEmitter } from 'node:events';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, toolErrorOf, type CallToolResult } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { dashboardPack, DashboardConfigSchema } from '../agent/packs/dashboard';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { ADMIN, openChromium, readFlow, readFlows, startDashboardNodeRed } from './support/dashboard-env';
import { systemBinary } from './support/mosquitto';
import type { NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const AGENT = 'dash';
const quiet = { info() {}, warn() {}, error() {} };
/** A tab the pack must never touch: nodes, a config node scoped to it, wires. */
const OTHER = [
  { id: 'other-tab', type: 'tab', label: 'Other', disabled: false, info: 'not the pack\'s', env: [] },
  { id: 'other-inject', type: 'inject', z: 'other-tab', name: 'tick', props: [{ p: 'payload' }], repeat: '', once: false, topic: '', payload: '', payloadType: 'date', x: 120, y: 80, wires: [['other-debug']] },
  { id: 'other-debug', type: 'debug', z: 'other-tab', name: 'out', active: true, tosidebar: true, complete: 'payload', targetType: 'msg', x: 320, y: 80, wires: [] },
  { id: 'other-comment', type: 'comment', z: 'other-tab', name: 'hands off', info: '', x: 120, y: 140, wires: [] },
];

let nodeRed: NodeRedProcess;
let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
let configDir: string;
let otherBefore: unknown;
const ids: Record<string, string> = {};

/** Calls a tool of the agent; fails the test on a tool error unless `allowError`. */
async function call(tool: string, args: Record<string, unknown> = {}, opts: { dryRun?: boolean; allowError?: boolean } = {}): Promise<any> {
  const r: CallToolResult = await caller.call(AGENT, tool, args, { dryRun: opts.dryRun, timeoutMs: 30_000 });
  if (!opts.allowError) expect(r.isError, `${tool}: ${JSON.stringify(r.content)}`).toBe(false);
  return opts.allowError ? r : r.structuredContent;
}

/** The pack's tab as Node-RED holds it (all nodes, flow and config), looked up by its marker. */
async function packTab(): Promise<{ id: string; nodes: any[] }> {
  const tab = (await readFlows(nodeRed)).find((n) => n.type === 'tab' && n.env?.some((e: any) => e.name === 'TOOLMESH_DASHBOARD_TAB'));
  expect(tab, 'the pack\'s tab').toBeDefined();
  const flow = await readFlow(nodeRed, tab.id);
  return { id: tab.id, nodes: [...flow.nodes, ...(flow.configs ?? [])] };
}

beforeAll(async () => {
  nodeRed = await startDashboardNodeRed(OTHER);
  otherBefore = await readFlow(nodeRed, 'other-tab');
  broker = await startBroker({ port: 0 });
  configDir = mkdtempSync(join(tmpdir(), 'toolmesh-dashboard-snapshots-'));
  const cfg = validateConfig({
    version: 1, agent: { id: AGENT }, broker: { url: broker.url },
    packs: { dashboard: { url: nodeRed.url, auth: { username: ADMIN.username, password: ADMIN.password }, mqtt: { url: broker.url }, configDir } },
  }, 'dash.yaml', configDir);
  agent = await startAgent(cfg, quiet);
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'dashtest' });
  await caller.start();
  await until(() => caller.agent(AGENT)?.ready, 'the dashboard agent');
}, 120_000);

afterAll(async () => {
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
  await nodeRed?.stop();
});

describe('dashboard pack on a real Node-RED with Dashboard 2.0', () => {
  it('is in the catalog with its nine tools', () => {
    expect(agent.packs).toEqual(['dashboard']);
    expect(caller.agent(AGENT)!.catalog!.tools.map((t) => t.name).sort()).toEqual([
      'add_dashboard_element', 'create_dashboard_group', 'get_dashboard_status', 'list_dashboard_configs', 'list_groups',
      'load_dashboard', 'move_group', 'remove_dashboard_element', 'save_dashboard',
    ]);
  });

  it('creates its tab with a group and a gauge bound to test/temp', async () => {
    expect(await call('list_groups')).toEqual({ tab: null, groups: [] });
    const g = await call('create_dashboard_group', { name: 'Living room' });
    expect(g.group).toMatchObject({ name: 'Living room', page: 'ToolMesh', url: `${nodeRed.url}/dashboard/toolmesh` });
    expect(g.changes.added).toEqual(expect.arrayContaining([expect.stringMatching(/^ui-base /), expect.stringMatching(/^ui-page "ToolMesh"/), expect.stringMatching(/^ui-group "Living room"/)]));
    const e = await call('add_dashboard_element', { group: 'Living room', type: 'gauge', label: 'Temperature', topic: 'test/temp', min: 0, max: 50, units: '°C' });
    ids.gauge = e.element.id;
    const tab = await packTab();
    const gauge = tab.nodes.find((n) => n.id === ids.gauge);
    expect(gauge).toMatchObject({ type: 'ui-gauge', title: 'Temperature', group: g.group.id, z: tab.id });
    expect(tab.nodes.find((n) => n.type === 'mqtt in' && n.topic === 'test/temp').wires).toEqual([[ids.gauge]]);
    expect(tab.nodes.filter((n) => n.type === 'mqtt-broker')).toEqual([expect.objectContaining({ broker: '127.0.0.1', port: String(broker.port) })]);
  });

  it.skipIf(!CHROMIUM)('shows the group, the gauge label and the live value 21.5 in Chromium', async () => {
    const browser = await openChromium(CHROMIUM!);
    const client = await mqtt.connectAsync(broker.url);
    try {
      const { page } = browser;
      await page.goto(`${nodeRed.url}/dashboard/toolmesh`);
      await page.getByText('Living room', { exact: true }).waitFor({ timeout: 20_000 });
      await page.getByText('Temperature', { exact: true }).waitFor();
      expect(await page.getByText('21.5').count()).toBe(0);
      await client.publishAsync('test/temp', '21.5');
      await page.getByText('21.5', { exact: true }).waitFor({ timeout: 20_000 });
    } finally {
      await client.endAsync();
      await browser.close();
    }
  });

  it.skipIf(!CHROMIUM)('a switch clicked in Chromium publishes on its command topic', async () => {
    const e = await call('add_dashboard_element', { group: 'Living room', type: 'switch', label: 'Lamp', topic: 'test/lamp/state', commandTopic: 'test/lamp/set' });
    ids.switch = e.element.id;
    const browser = await openChromium(CHROMIUM!);
    const client = await mqtt.connectAsync(broker.url);
    try {
      const got: string[] = [];
      client.on('message', (_t, p) => got.push(p.toString()));
      await client.subscribeAsync('test/lamp/set');
      await browser.page.goto(`${nodeRed.url}/dashboard/toolmesh`);
      await browser.page.getByText('Lamp', { exact: true }).waitFor({ timeout: 20_000 });
      await browser.page.getByRole('switch').or(browser.page.locator('input[type=checkbox]')).first().click();
      expect(await until(() => got[0], 'the switch\'s message on test/lamp/set', 20_000)).toBe('true');
    } finally {
      await client.endAsync();
      await browser.close();
    }
  });

  it('lists groups with their elements and reports its status', async () => {
    const list = await call('list_groups');
    expect(list.groups).toHaveLength(1);
    expect(list.groups[0]).toMatchObject({ name: 'Living room', page: 'ToolMesh', pagePath: '/toolmesh', order: 1, width: 6 });
    expect(list.groups[0].elements[0]).toEqual({ id: ids.gauge, type: 'gauge', label: 'Temperature', topic: 'test/temp' });
    const status = await call('get_dashboard_status');
    expect(status).toMatchObject({
      nodeRed: nodeRed.url, dashboardInstalled: true, broker: broker.url, tab: { label: 'ToolMesh dashboard' },
      base: { path: '/dashboard', scope: 'tab' }, pages: [{ name: 'ToolMesh', url: `${nodeRed.url}/dashboard/toolmesh` }], groups: 1,
      elements: list.groups[0].elements.length,
    });
  });

  it('moves groups by order and to a new page', async () => {
    await call('create_dashboard_group', { name: 'Kitchen', width: 4 });
    await call('move_group', { group: 'Kitchen', order: 1 });
    expect((await call('list_groups')).groups.map((g: any) => [g.name, g.order])).toEqual([['Kitchen', 1], ['Living room', 2]]);
    await call('move_group', { group: 'kitchen', page: 'Second floor' });
    const groups = (await call('list_groups')).groups;
    expect(groups.map((g: any) => [g.name, g.page, g.pagePath, g.order])).toEqual([['Living room', 'ToolMesh', '/toolmesh', 1], ['Kitchen', 'Second floor', '/second-floor', 1]]);
  });

  it('removes an element with its MQTT nodes', async () => {
    const e = await call('add_dashboard_element', { group: 'Kitchen', type: 'number', label: 'Setpoint', topic: 'test/setpoint', min: 5, max: 30, step: 0.5 });
    const before = (await packTab()).nodes.length;
    const r = await call('remove_dashboard_element', { id: e.element.id });
    expect(r.removed.map((s: string) => s.split(' ')[0]).sort()).toEqual(['mqtt', 'mqtt', 'ui-number-input']);
    const after = await packTab();
    expect(after.nodes).toHaveLength(before - 3);
    expect(after.nodes.some((n) => n.topic === 'test/setpoint')).toBe(false);
    expect(toolErrorOf(await call('remove_dashboard_element', { id: e.element.id }, { allowError: true }))).toMatchObject({ code: 'EXECUTION_FAILED' });
  });

  it('saves, lists and loads snapshots of its tab', async () => {
    const saved = await call('save_dashboard', { name: 'evening' });
    expect(saved).toMatchObject({ saved: 'evening', groups: 2, skipped: [] });
    const snapshotIds = (await packTab()).nodes.map((n) => n.id).sort();
    expect(toolErrorOf(await call('save_dashboard', { name: 'evening' }, { allowError: true }))?.message).toMatch(/overwrite: true/);
    await call('remove_dashboard_element', { id: ids.gauge });
    await call('add_dashboard_element', { group: 'Kitchen', type: 'indicator', label: 'Oven', topic: 'test/oven' });
    expect((await call('list_dashboard_configs')).configs).toEqual([expect.objectContaining({ name: 'evening', groups: 2, elements: saved.elements })]);
    const loaded = await call('load_dashboard', { name: 'evening' });
    expect(loaded).toMatchObject({ loaded: 'evening', groups: 2, elements: saved.elements });
    expect((await packTab()).nodes.map((n) => n.id).sort()).toEqual(snapshotIds);
    expect((await call('list_groups')).groups[0].elements[0]).toMatchObject({ id: ids.gauge, label: 'Temperature' });
  });

  it('answers every tool with side effects with a dry-run preview and changes nothing', async () => {
    const DRY: Record<string, Record<string, unknown>> = {
      create_dashboard_group: { name: 'Garage' },
      add_dashboard_element: { group: 'Living room', type: 'text', label: 'Humidity', topic: 'test/hum' },
      remove_dashboard_element: { id: ids.gauge },
      move_group: { group: 'Living room', page: 'Attic' },
      save_dashboard: { name: 'dry' },
      load_dashboard: { name: 'evening' },
    };
    const changing = caller.agent(AGENT)!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint).map((t) => t.name);
    expect(changing.sort()).toEqual(Object.keys(DRY).sort());
    const flowsBefore = JSON.stringify(await readFlows(nodeRed));
    const filesBefore = readdirSync(configDir).sort();
    for (const [tool, args] of Object.entries(DRY)) {
      const r = await call(tool, args, { dryRun: true });
      expect(r, tool).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
      if (tool !== 'save_dashboard') expect(r.changes, tool).toEqual({ added: expect.any(Array), removed: expect.any(Array), changed: expect.any(Array) });
    }
    expect(JSON.stringify(await readFlows(nodeRed))).toBe(flowsBefore);
    expect(readdirSync(configDir).sort()).toEqual(filesBefore);
  });

  it('refuses topics of ToolMesh itself', async () => {
    const r = await call('add_dashboard_element', { group: 'Living room', type: 'button', label: 'Sneaky', topic: 'toolmesh/v1/agents/pi/rpc/x/req' }, { allowError: true });
    expect(toolErrorOf(r)).toMatchObject({ code: 'PERMISSION_DENIED' });
  });

  it('"add a PV power gauge to Solar": a group that does not exist is created, and the result says so', async () => {
    expect((await call('list_groups')).groups.map((g: any) => g.name)).not.toContain('Solar');
    const dry = await call('add_dashboard_element', { group: 'Solar', type: 'gauge', label: 'PV power', topic: 'test/solar/pv', max: 5000, units: 'W' }, { dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, groupCreated: true, wouldDo: expect.stringMatching(/ui-group "Solar"/) });
    expect((await call('list_groups')).groups.map((g: any) => g.name), 'a dry run creates nothing').not.toContain('Solar');

    const r = await call('add_dashboard_element', { group: 'Solar', type: 'gauge', label: 'PV power', topic: 'test/solar/pv', max: 5000, units: 'W' });
    expect(r).toMatchObject({ group: 'Solar', groupCreated: true, note: 'there was no group "Solar": created it on page "ToolMesh"', url: `${nodeRed.url}/dashboard/toolmesh` });
    expect(r.changes.added).toEqual(expect.arrayContaining([expect.stringMatching(/^ui-group "Solar"/), expect.stringMatching(/^ui-gauge "PV power"/)]));
    const solar = (await call('list_groups')).groups.find((g: any) => g.name === 'Solar');
    expect(solar).toMatchObject({ page: 'ToolMesh', width: 6, elements: [{ id: r.element.id, type: 'gauge', label: 'PV power', topic: 'test/solar/pv' }] });

    // the next element finds the group (by name, any case): nothing is created, nothing is said
    const again = await call('add_dashboard_element', { group: 'solar', type: 'text', label: 'PV today', topic: 'test/solar/today' });
    expect(again.group).toBe('Solar');
    expect(again).not.toHaveProperty('groupCreated');
    expect(again).not.toHaveProperty('note');
    expect((await call('list_groups')).groups.filter((g: any) => g.name === 'Solar')).toHaveLength(1);
  });

  it('never wrote the tab "Other"', async () => {
    expect(await readFlow(nodeRed, 'other-tab')).toEqual(otherBefore);
    const tabs = (await readFlows(nodeRed)).filter((n) => n.type === 'tab').map((n) => n.label);
    expect(tabs).toEqual(['Other', 'ToolMesh dashboard']);
  });
});

describe('dashboard pack and Node-RED\'s adminAuth', () => {
  const create = (auth?: Record<string, string>) => dashboardPack.create(
    DashboardConfigSchema.parse({ url: nodeRed.url, auth, configDir }), { agentId: 'x', log: quiet, events: new EventEmitter() });

  it('is unavailable with a wrong password, saying which user Node-RED refused', async () => {
    expect(await create({ username: ADMIN.username, password: 'wrong' })).toEqual({ unavailable: expect.stringMatching(/refused the login of user "admin"/) });
  });

  it('without credentials it reads (anonymous read) but an edit says to set packs.dashboard.auth', async () => {
    const pack = await create();
    if (!('tools' in pack)) throw new Error(`unavailable: ${pack.unavailable}`);
    const tool = pack.tools.find((t) => t.name === 'create_dashboard_group')!;
    const ctx = { signal: new AbortController().signal, callerId: 't', requestId: 1, dryRun: false, progress() {} };
    await expect(tool.execute(tool.input.parse({ name: 'Nope' }), ctx)).rejects.toMatchObject({ code: 'PERMISSION_DENIED', message: expect.stringMatching(/packs\.dashboard\.auth/) });
  });
});
