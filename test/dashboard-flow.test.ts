// End to end with the dashboard example as a user imports it (flows/dashboard-editing.json), in a
// real Node-RED (test helper) with the scripted OpenAI-compatible model, and a dashboard agent
// started from configs/dashboard.yaml (pointed at the flow's embedded broker and at a second, real
// Node-RED process with Dashboard 2.0 and adminAuth, test/support/dashboard-env.ts):
// - "add a living-room gauge": the model creates a group and adds a gauge on home/living/temp; the
//   real Node-RED then holds it in the agent's tab, and Chromium shows a reading published on the
//   flow's broker;
// - the rows without an LLM: list groups and status.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { parse as parseYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig, validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { ADMIN, openChromium, readFlow, readFlows, startDashboardNodeRed } from './support/dashboard-env';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { systemBinary } from './support/mosquitto';
import { coreNode, helper } from './support/node-red';
import type { NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const ROOT = join(__dirname, '..');
const CONFIG = join(ROOT, 'configs/dashboard.yaml');
const flow = JSON.parse(readFileSync(join(ROOT, 'flows/dashboard-editing.json'), 'utf8')) as Array<Record<string, any>>;
const ASK = flow.find((n) => n.id === 'tm-dash-inject-ask')!.payload as string;
const GAUGE = { group: 'Living room', type: 'gauge', label: 'Living-room temperature', topic: 'home/living/temp', min: 0, max: 40, units: '°C' };

/** Resolves with the next message node `id` receives; rejects after `ms`. */
function next(id: string, ms = 20_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

let nodeRed: NodeRedProcess;
let llm: FakeLlm;
let reg: ToolRegistryNode;
let agent: RunningAgent | undefined;
const agentLog: string[] = [];

beforeAll(async () => {
  nodeRed = await startDashboardNodeRed();
  // the scripted model: a group, then the gauge, then an answer
  llm = await startFakeLlm((body: any, i: number) => {
    const fn = (tool: string) => (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith(`__${tool}`));
    if (i === 0) return { toolCalls: [{ name: fn('create_dashboard_group') ?? 'missing', arguments: { name: 'Living room' } }] };
    if (i === 1) return { toolCalls: [{ name: fn('add_dashboard_element') ?? 'missing', arguments: GAUGE }] };
    return { content: 'Added the gauge "Living-room temperature".' };
  });
  await new Promise<void>((resolve) => helper.startServer(resolve));
  const patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n));
  await helper.load([registryNode, remoteToolNode, llmAgentNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js')], patched);
  reg = helper.getNode('tm-registry') as ToolRegistryNode;
  await until(() => reg.state === 'connected', 'the flow\'s embedded broker');
  // configs/dashboard.yaml as shipped, pointed at this broker, this Node-RED (with its login) and a temp snapshot dir
  const raw = parseYaml(readFileSync(CONFIG, 'utf8'));
  const brokerUrl = `mqtt://127.0.0.1:${reg.brokerPort}`;
  raw.broker.url = brokerUrl;
  Object.assign(raw.packs.dashboard, { url: nodeRed.url, auth: { ...ADMIN }, mqtt: { url: brokerUrl }, configDir: mkdtempSync(join(tmpdir(), 'toolmesh-dash-flow-')) });
  const log = (level: string) => (m: string) => { agentLog.push(`${level}: ${m}`); };
  agent = await startAgent(validateConfig(raw, CONFIG, ROOT), { info: log('info'), warn: log('warn'), error: log('error') });
  await until(() => reg.listAgents().find((a) => a.id === 'dashboard' && a.online), 'agent dashboard online in the registry');
}, 120_000);

afterAll(async () => {
  await agent?.stop();
  await helper.unload();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
  await llm?.close();
  await nodeRed?.stop();
  if (agentLog.some((l) => l.startsWith('error'))) console.log(`agent log:\n${agentLog.join('\n')}`);
});

describe('dashboard-editing.json with a dashboard agent and a real Dashboard 2.0', () => {
  it('ships an agent config that validates as is, for agent "dashboard", the id the flow calls', () => {
    const cfg = loadConfig(CONFIG);
    expect(cfg.agent.id).toBe('dashboard');
    expect(Object.keys(cfg.packs)).toEqual(['dashboard']);
    for (const n of flow.filter((x) => x.type === 'toolmesh-remote-tool')) expect(n.agent).toBe('dashboard');
    expect(flow.find((n) => n.type === 'toolmesh-llm-agent')).toMatchObject({ registry: 'tm-registry', baseUrl: '', model: '' });
  });

  it('"add a living-room gauge": the model\'s calls put a gauge on home/living/temp into the agent\'s tab', async () => {
    expect(ASK).toMatch(/living-room temperature on topic home\/living\/temp/);
    const got = next('tm-dash-debug-answer', 60_000);
    await helper.request().post('/inject/tm-dash-inject-ask').expect(200);
    const msg = await got;
    expect(msg.payload).toBe('Added the gauge "Living-room temperature".');
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool])).toEqual([['dashboard', 'create_dashboard_group'], ['dashboard', 'add_dashboard_element']]);
    const addResult = JSON.parse(llm.requests[2].body.messages.filter((m: any) => m.role === 'tool').at(-1).content);
    expect(addResult.element).toMatchObject({ type: 'gauge', label: GAUGE.label, topic: GAUGE.topic });
    const tab = (await readFlows(nodeRed)).find((n) => n.type === 'tab' && n.label === 'ToolMesh dashboard');
    const nodes = [...(await readFlow(nodeRed, tab.id)).nodes, ...((await readFlow(nodeRed, tab.id)).configs ?? [])];
    const gauge = nodes.find((n: any) => n.type === 'ui-gauge');
    expect(gauge).toMatchObject({ id: addResult.element.id, title: GAUGE.label, min: 0, max: 40, units: '°C' });
    expect(nodes.find((n: any) => n.type === 'mqtt in')).toMatchObject({ topic: 'home/living/temp', wires: [[gauge.id]] });
  });

  it.skipIf(!CHROMIUM)('the page shows a reading published on the flow\'s broker', async () => {
    const browser = await openChromium(CHROMIUM!);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${reg.brokerPort}`);
    try {
      await browser.page.goto(`${nodeRed.url}/dashboard/toolmesh`);
      await browser.page.getByText(GAUGE.label, { exact: true }).waitFor({ timeout: 20_000 });
      await client.publishAsync('home/living/temp', '20.5', { retain: true });
      await browser.page.getByText('20.5', { exact: true }).waitFor({ timeout: 20_000 });
    } finally {
      await client.endAsync();
      await browser.close();
    }
  });

  it('"list groups" row lists the group and its gauge', async () => {
    const got = next('tm-dash-debug-groups');
    await helper.request().post('/inject/tm-dash-inject-groups').expect(200);
    const msg = await got;
    expect(msg.toolMeta).toMatchObject({ agent: 'dashboard', tool: 'list_groups' });
    expect(msg.payload.groups).toEqual([expect.objectContaining({ name: 'Living room', page: 'ToolMesh', elements: [expect.objectContaining({ type: 'gauge', topic: 'home/living/temp' })] })]);
  });

  it('"status" row reports the page URL and one element', async () => {
    const got = next('tm-dash-debug-status');
    helper.getNode('tm-dash-inject-status').receive({});
    const msg = await got;
    expect(msg.payload).toMatchObject({ dashboardInstalled: true, groups: 1, elements: 1, pages: [{ url: `${nodeRed.url}/dashboard/toolmesh` }] });
  });
});
