// The dashboard pack's tab model without Node-RED: scaffolding (own or global ui-base), groups,
// elements and their MQTT wiring, removal, moves, diffs, snapshots and the tools' argument rules.
// test/dashboard-pack.test.ts runs the same against a real Node-RED with Dashboard 2.0.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { NodeRedAdmin, type FlowNode } from './admin-api';
import { TabEditor } from './editor';
import { addElement, addGroup, findGroup, indicatorTemplate, listGroups, moveGroup, removeElement } from './elements';
import { DashboardConfigSchema, brokerSettings } from './index';
import { listSnapshots, readSnapshot, writeSnapshot } from './snapshots';
import { brokerOf, diffNodes, findOwnTabs, newModel, scaffold, surroundings, TAB_MARKER, type TabModel } from './tab';
import { dashboardTools } from './tools';

const BROKER = { host: '127.0.0.1', port: 1883, tls: false };
const SHAPE = { basePath: '/dashboard', broker: BROKER };

/** A fresh scaffolded model and its surroundings in a Node-RED holding `others`. */
function fresh(others: FlowNode[] = []) {
  const s = surroundings(others, undefined);
  const m = newModel('ToolMesh dashboard', 'dash');
  scaffold(m, s, SHAPE);
  return { m, s };
}
const ofType = (m: TabModel, type: string) => m.nodes.filter((n) => n.type === type);

describe('scaffold', () => {
  it('gives a tab in a Node-RED without a dashboard its own ui-base, theme and broker', () => {
    const { m } = fresh();
    expect(ofType(m, 'ui-base')).toEqual([expect.objectContaining({ path: '/dashboard' })]);
    expect(ofType(m, 'ui-theme')).toHaveLength(1);
    expect(brokerOf(m)).toMatchObject({ broker: '127.0.0.1', port: '1883', usetls: false });
    expect(brokerOf(m)!.credentials).toBeUndefined();
    expect(m.env).toEqual([{ name: TAB_MARKER, type: 'str', value: 'ToolMesh dashboard' }]);
  });

  it('uses a global ui-base and theme instead, and drops a base of its own', () => {
    const others = [{ id: 'gb', type: 'ui-base', path: '/ui' }, { id: 'gt', type: 'ui-theme' }, { id: 't1', type: 'tab' }];
    const { m, s } = fresh();
    addGroup(m, s, { name: 'G', page: 'P', width: 6 });
    const s2 = surroundings(others, undefined);
    scaffold(m, s2, SHAPE);
    expect(ofType(m, 'ui-base')).toEqual([]);
    expect(ofType(m, 'ui-page')[0]).toMatchObject({ ui: 'gb' });
    const own = fresh(others).m;
    expect(ofType(own, 'ui-base')).toEqual([]);
    expect(ofType(own, 'ui-theme')).toEqual([]);
  });

  it('refuses a dashboard whose only ui-base is scoped to another tab', () => {
    const s = surroundings([{ id: 't1', type: 'tab' }, { id: 'sb', type: 'ui-base', z: 't1' }], undefined);
    expect(() => scaffold(newModel('x', 'a'), s, SHAPE)).toThrow(expect.objectContaining({ code: 'NOT_SUPPORTED', message: expect.stringMatching(/scope to global/) }));
  });

  it('sends broker credentials when a username is set, and puts every MQTT node on the one broker', () => {
    const { m } = fresh();
    m.nodes.push({ id: 'in1', type: 'mqtt in', broker: 'elsewhere' }, { id: 'b2', type: 'mqtt-broker' });
    scaffold(m, surroundings([], undefined), { ...SHAPE, broker: { ...BROKER, username: 'u', password: 'p' } });
    expect(ofType(m, 'mqtt-broker')).toHaveLength(1);
    expect(brokerOf(m)!.credentials).toEqual({ user: 'u', password: 'p' });
    expect(m.nodes.find((n) => n.id === 'in1')!.broker).toBe(brokerOf(m)!.id);
  });

  it('finds its tab by the env marker, not by the label', () => {
    const flows = [
      { id: 'a', type: 'tab', label: 'ToolMesh dashboard', env: [] },
      { id: 'b', type: 'tab', label: 'renamed', env: [{ name: TAB_MARKER, type: 'str', value: 'ToolMesh dashboard' }] },
    ];
    expect(findOwnTabs(flows, 'ToolMesh dashboard')).toEqual(['b']);
  });
});

describe('groups and elements', () => {
  it('creates pages on demand at a free path and keeps group names unique', () => {
    const { m, s } = fresh([{ id: 'op', type: 'ui-page', path: '/toolmesh', z: 'other' }]);
    const g = addGroup(m, s, { name: 'Living room', page: 'ToolMesh', width: 6 });
    expect(m.nodes.find((n) => n.id === g.page)).toMatchObject({ type: 'ui-page', name: 'ToolMesh', path: '/toolmesh-2' });
    expect(() => addGroup(m, s, { name: 'living ROOM', page: 'ToolMesh', width: 6 })).toThrow(/exists already/);
    expect(findGroup(m, 'LIVING room').id).toBe(g.id);
    expect(() => findGroup(m, 'nope')).toThrow(expect.objectContaining({ code: 'EXECUTION_FAILED' }));
  });

  it('wires mqtt in → widget for displays and widget → mqtt out for controls', () => {
    const { m, s } = fresh();
    const g = addGroup(m, s, { name: 'G', page: 'P', width: 6 });
    const broker = brokerOf(m)!.id;
    const gauge = addElement(m, g, broker, { type: 'gauge', label: 'Temp', topic: 'home/t', min: -10, max: 40, units: '°C' });
    const sw = addElement(m, g, broker, { type: 'switch', label: 'Lamp', topic: 'home/lamp/state', commandTopic: 'home/lamp/set', retain: true });
    const btn = addElement(m, g, broker, { type: 'button', label: 'Bell', topic: 'home/bell', payload: 'ring' });
    expect(gauge).toMatchObject({ type: 'ui-gauge', title: 'Temp', min: -10, max: 40, units: '°C', order: 1 });
    expect(sw).toMatchObject({ type: 'ui-switch', passthru: false, order: 2 });
    expect(listGroups(m)[0].elements).toEqual([
      { id: gauge.id, type: 'gauge', label: 'Temp', topic: 'home/t' },
      { id: sw.id, type: 'switch', label: 'Lamp', topic: 'home/lamp/state', commandTopic: 'home/lamp/set' },
      { id: btn.id, type: 'button', label: 'Bell', topic: 'home/bell', commandTopic: 'home/bell' },
    ]);
    expect(ofType(m, 'mqtt in').map((n) => n.topic)).toEqual(['home/t', 'home/lamp/state']);
    expect(ofType(m, 'mqtt out').map((n) => [n.topic, n.retain])).toEqual([['home/lamp/set', 'true'], ['home/bell', 'false']]);
    expect(btn.payload).toBe('ring');
  });

  it('keeps an indicator label out of template compilation', () => {
    const t = indicatorTemplate('Door <b>{{ process }}</b>');
    expect(t).toContain('<span v-pre>Door &#60;b&#62;{{ process }}&#60;/b&#62;</span>');
    expect(t).not.toContain('<b>');
  });

  it('removes an element with the MQTT nodes only it uses', () => {
    const { m, s } = fresh();
    const g = addGroup(m, s, { name: 'G', page: 'P', width: 6 });
    const broker = brokerOf(m)!.id;
    const a = addElement(m, g, broker, { type: 'number', label: 'Setpoint', topic: 'home/sp' });
    const b = addElement(m, g, broker, { type: 'text', label: 'Mode', topic: 'home/mode' });
    const shared = ofType(m, 'mqtt in').find((n) => n.topic === 'home/mode')!;
    shared.wires = [[b.id, a.id]];
    const removed = removeElement(m, a.id).map((n) => n.type).sort();
    expect(removed).toEqual(['mqtt in', 'mqtt out', 'ui-number-input']);
    expect(shared.wires).toEqual([[b.id]]);
    expect(() => removeElement(m, a.id)).toThrow(/no dashboard element/);
  });

  it('moves groups within a page and to other pages, renumbering both', () => {
    const { m, s } = fresh();
    const [a, b, c] = ['A', 'B', 'C'].map((name) => addGroup(m, s, { name, page: 'P', width: 6 }));
    moveGroup(m, s, c, { order: 1 });
    expect(listGroups(m).map((g) => [g.name, g.order])).toEqual([['C', 1], ['A', 2], ['B', 3]]);
    moveGroup(m, s, a, { page: 'Second' });
    expect(listGroups(m).map((g) => [g.name, g.page, g.order])).toEqual([['C', 'P', 1], ['B', 'P', 2], ['A', 'Second', 1]]);
    moveGroup(m, s, b, { order: 99 });
    expect(b.order).toBe(2);
  });

  it('diffs by id, ignoring key order and credentials', () => {
    const before: FlowNode[] = [{ id: '1', type: 'a', x: 1, y: 2 }, { id: '2', type: 'b', name: 'B' }];
    const after: FlowNode[] = [{ id: '1', y: 2, x: 1, type: 'a', credentials: { p: 1 } }, { id: '3', type: 'c', title: 'T' }];
    expect(diffNodes(before, after)).toEqual({ added: ['c "T" (3)'], removed: ['b "B" (2)'], changed: [] });
  });
});

describe('snapshots', () => {
  it('round-trips, lists, and refuses node types the pack does not create', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toolmesh-dash-snap-'));
    const { m, s } = fresh();
    addElement(m, addGroup(m, s, { name: 'G', page: 'P', width: 6 }), brokerOf(m)!.id, { type: 'gauge', label: 'T', topic: 't' });
    await writeSnapshot(dir, { version: 1, name: 'one', savedAt: '2026-11-23T00:00:00.000Z', tabLabel: m.label, nodes: m.nodes });
    expect((await readSnapshot(dir, 'one')).nodes).toEqual(m.nodes);
    writeFileSync(join(dir, 'evil.json'), JSON.stringify({ version: 1, name: 'evil', savedAt: '', tabLabel: 'x', nodes: [{ id: 'e', type: 'exec', command: 'rm' }] }));
    await expect(readSnapshot(dir, 'evil')).rejects.toMatchObject({ code: 'EXECUTION_FAILED', details: { types: ['exec'] } });
    await expect(readSnapshot(dir, 'missing')).rejects.toThrow(/no snapshot named "missing"/);
    expect(await listSnapshots(dir)).toEqual([{ name: 'one', savedAt: '2026-11-23T00:00:00.000Z', groups: 1, elements: 1, bytes: expect.any(Number) }]);
  });
});

describe('config and argument rules', () => {
  const cfg = DashboardConfigSchema.parse({});
  const tools = dashboardTools(new TabEditor(new NodeRedAdmin({ url: cfg.url, timeoutMs: 1000 }), { tabLabel: 'x', basePath: '/d', broker: BROKER, agentId: 'a' }), {
    dashboardUrl: 'http://127.0.0.1:1880', defaultPage: 'P', configDir: '/nonexistent', deniedTopicPrefixes: ['toolmesh/'], allowedTopicPrefixes: [], brokerUrl: 'mqtt://127.0.0.1:1883',
  });
  const input = (name: string) => tools.find((t) => t.name === name)!.input;

  it('has defaults for a Node-RED and broker on this machine', () => {
    expect(cfg).toMatchObject({ url: 'http://127.0.0.1:1880', tabLabel: 'ToolMesh dashboard', basePath: '/dashboard', mqtt: { url: 'mqtt://127.0.0.1:1883' }, deniedTopicPrefixes: ['toolmesh/'] });
    expect(brokerSettings({ url: 'mqtts://broker.lan' })).toEqual({ host: 'broker.lan', port: 8883, tls: true, username: undefined, password: undefined });
    expect(DashboardConfigSchema.safeParse({ auth: { password: 'x' } }).success).toBe(false);
    expect(DashboardConfigSchema.safeParse({ url: 'file:///etc/passwd' }).success).toBe(false);
  });

  it('offers nine tools; edits are medium risk, removal and load destructive', () => {
    expect(tools.map((t) => [t.name, t.risk, Boolean(t.readOnly), Boolean(t.destructive)])).toEqual([
      ['create_dashboard_group', 'medium', false, false], ['add_dashboard_element', 'medium', false, false],
      ['remove_dashboard_element', 'medium', false, true], ['move_group', 'medium', false, false],
      ['list_groups', 'low', true, false], ['get_dashboard_status', 'low', true, false],
      ['save_dashboard', 'low', false, false], ['load_dashboard', 'medium', false, true], ['list_dashboard_configs', 'low', true, false],
    ]);
  });

  it('refuses options that do not fit the element type, bad ranges and wildcard topics', () => {
    const el = input('add_dashboard_element');
    const base = { group: 'G', label: 'L', topic: 'home/x' };
    expect(el.safeParse({ ...base, type: 'gauge', min: 0, max: 50, units: '°C' }).success).toBe(true);
    expect(el.safeParse({ ...base, type: 'switch', units: '°C' }).error?.issues[0].message).toMatch(/units applies to gauge only/);
    expect(el.safeParse({ ...base, type: 'gauge', min: 5, max: 5 }).success).toBe(false);
    expect(el.safeParse({ ...base, type: 'text', topic: 'home/#' }).success).toBe(false);
    expect(el.safeParse({ ...base, type: 'text', topic: '$SYS/x' }).success).toBe(false);
    expect(input('move_group').safeParse({ group: 'G' }).success).toBe(false);
    expect(input('save_dashboard').safeParse({ name: '../etc' }).success).toBe(false);
  });
});
