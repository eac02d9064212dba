import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { z } from 'zod';
import { RpcServer, defineTool, toolErrorOf } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import type { RegistryState } from '../shared/registry-api';
import registryNode, { type AgentSummary, type ToolRegistryNode } from './tool-registry';
import { until } from '../../test/support/until';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const noop = (name: string, risk: 'low' | 'high' = 'low') =>
  defineTool({ name, description: `${name} tool`, risk, input: z.object({ n: z.number().optional() }), execute: () => ({ ok: true }) });

const agents: RpcServer[] = [];
const brokers: EmbeddedBroker[] = [];


async function startAgent(url: string, agentId: string, tools = [noop('echo')]): Promise<RpcServer> {
  const agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId, tools, info: { name: `${agentId} box`, kind: agentId } });
  agents.push(agent);
  await agent.start();
  return agent;
}

/** Loads one registry config node with `props` and returns it once it left `connecting`. */
async function loadRegistry(props: Record<string, unknown>, credentials?: Record<string, unknown>): Promise<ToolRegistryNode> {
  const flow = [{ id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', ...props }];
  await helper.load(registryNode, flow, credentials ? { reg: credentials } : {});
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.state !== 'connecting', 'the registry to connect or fail');
  return reg;
}

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await helper.unload();
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

describe('tool-registry', () => {
  it('starts an embedded broker, sees catalogs, applies the policy, and serves the admin endpoint', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, host: '127.0.0.1', policy: 'pi/*\n# robots are not for models\n!*/danger*' });
    expect(reg.state).toBe('connected');
    expect(reg.brokerPort).toBeGreaterThan(0);
    expect(reg.brokerUrl).toBe(`mqtt://127.0.0.1:${reg.brokerPort}`);
    await startAgent(reg.brokerUrl!, 'pi', [noop('echo'), noop('danger_wipe', 'high')]);
    await startAgent(reg.brokerUrl!, 'robot', [noop('drive')]);
    await until(() => reg.listAgents().filter((a) => a.ready).length === 2, 'both agents ready');

    expect(reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`)).toEqual(['pi/echo']);
    expect(reg.isOffered('pi', 'echo')).toBe(true);
    expect(reg.isOffered('pi', 'danger_wipe')).toBe(false);
    expect(reg.isOffered('robot', 'drive')).toBe(false);
    const r = await reg.call('robot', 'drive', { n: 1 });
    expect(r.structuredContent).toEqual({ ok: true }); // the policy limits offers, not the registry's own calls

    const res = await helper.request().get('/toolmesh/registry/reg/agents').expect(200);
    const body = res.body as AgentSummary[];
    expect(body.map((a) => a.id)).toEqual(['pi', 'robot']);
    expect(body[0]).toMatchObject({ id: 'pi', name: 'pi box', kind: 'pi', state: 'online', online: true, ready: true });
    expect(body[0].tools.map((t) => [t.name, t.offered, t.annotations.risk])).toEqual([['echo', true, 'low'], ['danger_wipe', false, 'high']]);
    expect(body[0].tools[0].inputSchema).toMatchObject({ type: 'object', properties: { n: { type: 'number' } } });
    await helper.request().get('/toolmesh/registry/nope/agents').expect(404);
  });

  it('groups the offered tools by agent, each agent\'s array kept while its catalog is unchanged', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, host: '127.0.0.1', policy: '*/*\n!*/danger*' });
    const pi = await startAgent(reg.brokerUrl!, 'pi', [noop('echo'), noop('danger_wipe', 'high')]);
    await startAgent(reg.brokerUrl!, 'robot', [noop('drive')]);
    await until(() => reg.listAgents().filter((a) => a.ready).length === 2, 'both agents ready');
    const first = reg.toolsByAgent();
    const names = (m: ReadonlyMap<string, readonly { agentId: string; tool: { name: string } }[]>) =>
      [...m].map(([id, tools]) => `${id}: ${tools.map((t) => `${t.agentId}/${t.tool.name}`).join(' ')}`).sort();
    expect(names(first)).toEqual(['pi: pi/echo', 'robot: robot/drive']);
    const flat = new Map<string, Array<{ agentId: string; tool: { name: string } }>>();
    for (const t of reg.listTools()) flat.set(t.agentId, [...(flat.get(t.agentId) ?? []), t]);
    expect(names(first), 'the same tools as listTools()').toEqual(names(flat));
    const again = reg.toolsByAgent();
    expect(again.get('pi')).toBe(first.get('pi'));
    expect(again.get('robot')).toBe(first.get('robot'));
    // pi comes back with another catalog: its array is new, robot's is the same object
    await pi.stop();
    await until(() => !reg.toolsByAgent().has('pi'), 'pi gone from the offer');
    await startAgent(reg.brokerUrl!, 'pi', [noop('echo'), noop('uptime')]);
    await until(() => reg.toolsByAgent().get('pi')?.length === 2, 'pi back with two offered tools');
    const after = reg.toolsByAgent();
    expect(names(after)).toEqual(['pi: pi/echo pi/uptime', 'robot: robot/drive']);
    expect(after.get('pi')).not.toBe(first.get('pi'));
    expect(after.get('robot')).toBe(first.get('robot'));
  });

  it('pushes its state to registered users and catalog changes to listeners', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0 });
    const states: RegistryState[] = [];
    reg.register({ id: 'u1', onRegistryState: (s) => states.push(s) });
    expect(states).toEqual(['connected']);
    // what each notification saw: listeners run once per burst, after its last message
    const sawReady: boolean[] = [];
    const off = reg.onCatalogChange(() => sawReady.push(reg.listTools().some((t) => t.agentId === 'pi')));
    await startAgent(reg.brokerUrl!, 'pi');
    await until(() => sawReady.at(-1) === true, 'a catalog change that shows the agent ready');
    expect(sawReady.length, 'status and catalog (2 messages) of one start need not be told apart').toBeLessThanOrEqual(2);
    off();
    reg.deregister({ id: 'u1', onRegistryState: () => {} });
  });

  it('tells catalog listeners once per burst, not once per message, when it starts against many agents', async () => {
    const broker = await startBroker({ port: 0 });
    brokers.push(broker);
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
    const N = 200;
    for (let i = 0; i < N; i++) {
      const id = `many-${i}`;
      await pub.publishAsync(`toolmesh/v1/agents/${id}/catalog`, JSON.stringify({ agent: { id }, rev: 1, tools: [] }), { qos: 1, retain: true });
      await pub.publishAsync(`toolmesh/v1/agents/${id}/status`, JSON.stringify({ state: 'online', agent: id, instance: 'x', catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
    }
    await pub.endAsync();
    const reg = await loadRegistry({ mode: 'external', broker: broker.url, callerId: 'many-1' });
    let changes = 0;
    const off = reg.onCatalogChange(() => changes++);
    await until(() => reg.listAgents().filter((a) => a.ready).length === N, `${N} agents ready`);
    await new Promise((r) => setImmediate(r));
    off();
    // 2 messages per agent arrived; the listeners heard of them in a few bursts
    expect(changes).toBeGreaterThan(0);
    expect(changes).toBeLessThan(N / 4);
  });

  it('admin endpoint: pages and filters the agents, names a bad parameter', async () => {
    const broker = await startBroker({ port: 0 });
    brokers.push(broker);
    const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
    const rooms = ['garage', 'attic', 'kitchen', 'study'];
    const N = 240;
    const tool = { name: 'system_uptime', description: 'uptime', inputSchema: { type: 'object' }, annotations: { risk: 'low' } };
    for (let i = 0; i < N; i++) {
      const id = `pi-${rooms[i % 4]}-${i}`;
      await pub.publishAsync(`toolmesh/v1/agents/${id}/catalog`, JSON.stringify({ agent: { id, name: `${rooms[i % 4]} box ${i}`, kind: i % 2 ? 'pi' : 'robot' }, rev: 1, tools: [tool] }), { qos: 1, retain: true });
      await pub.publishAsync(`toolmesh/v1/agents/${id}/status`, JSON.stringify({ state: 'online', agent: id, instance: 'x', catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
    }
    await pub.endAsync();
    const reg = await loadRegistry({ mode: 'external', broker: broker.url, callerId: 'admin-1' });
    await until(() => reg.listAgents().filter((a) => a.ready).length === N, `${N} agents ready`);
    const get = (query: string) => helper.request().get(`/toolmesh/registry/reg/agents${query}`);

    // default page: 100 of 240, with tools; the total in X-Total-Count
    const first = await get('').expect(200);
    expect(first.body).toHaveLength(100);
    expect(first.headers['x-total-count']).toBe(String(N));
    expect(first.body[0].tools.map((t: { name: string }) => t.name)).toEqual(['system_uptime']);
    // the pages cover every agent once
    const seen: string[] = [];
    for (let offset = 0; offset < N; offset += 70) seen.push(...(await get(`?offset=${offset}&limit=70`).expect(200)).body.map((a: AgentSummary) => a.id));
    expect(seen).toHaveLength(N);
    expect(new Set(seen).size).toBe(N);
    // type-ahead: agents whose id, name or kind holds the text, those that start with it first
    const garage = await get('?q=GARAGE&limit=20&tools=false').expect(200);
    expect(garage.headers['x-total-count']).toBe(String(N / 4));
    expect(garage.body).toHaveLength(20);
    expect(garage.body.every((a: AgentSummary) => a.id.includes('garage') && a.tools.length === 0)).toBe(true);
    const boxes = await get('?q=attic&limit=500&tools=false').expect(200);
    expect(boxes.body[0].name).toMatch(/^attic box/); // name starts with it: ahead of ids that only contain it
    expect((await get('?q=robot&limit=1').expect(200)).headers['x-total-count']).toBe(String(N / 2));
    const one = await get('?agent=pi-study-3').expect(200);
    expect(one.body.map((a: AgentSummary) => [a.id, a.tools.length])).toEqual([['pi-study-3', 1]]);
    expect((await get('?agent=nobody').expect(200)).body).toEqual([]);
    // bad parameters: 400 naming the parameter and what it takes
    expect((await get('?limit=0').expect(400)).body.error).toBe('limit: expected a whole number from 1 to 500');
    expect((await get('?limit=9999').expect(400)).body.error).toBe('limit: expected a whole number from 1 to 500');
    expect((await get('?offset=-1').expect(400)).body.error).toBe('offset: expected a whole number from 0');
    expect((await get('?tools=maybe').expect(400)).body.error).toBe('tools: expected true or false');
    expect((await get('?agent=a/b').expect(400)).body.error).toMatch(/^agent: expected an agent id/);
    expect((await get('?q=a&q=b').expect(400)).body.error).toBe('q: expected one text');
  });

  it('connects to an external broker with the credentials, kept out of the flow', async () => {
    const broker = await startBroker({ port: 0 });
    brokers.push(broker);
    const seen: Array<{ username?: string; password?: string }> = [];
    broker.aedes.authenticate = (_client, username, password, cb) => {
      seen.push({ username, password: password?.toString() });
      cb(null, true);
    };
    const reg = await loadRegistry({ mode: 'external', broker: broker.url, callerId: 'flows-1', root: 'lab/v1' }, { username: 'flows-1', password: 's3cret' });
    expect(reg.state).toBe('connected');
    expect(reg.callerId).toBe('flows-1');
    expect(reg.brokerPort).toBeUndefined();
    expect(seen).toContainEqual({ username: 'flows-1', password: 's3cret' });
    await startAgent(broker.url, 'other-root'); // default root: not ours
    const pi = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', root: 'lab/v1', tools: [noop('echo')] });
    agents.push(pi);
    await pi.start();
    await until(() => reg.listTools().length === 1, 'the lab/v1 agent');
    expect(reg.listAgents().map((a) => a.id)).toEqual(['pi']);
  });

  it('reports a port in use as state error, logs it, and fails calls without sending', async () => {
    const taken = await startBroker({ port: 0 });
    brokers.push(taken);
    const reg = await loadRegistry({ mode: 'embedded', port: taken.port });
    const states: Array<[RegistryState, string | undefined]> = [];
    reg.register({ id: 'u1', onRegistryState: (s, d) => states.push([s, d]) });
    expect(states).toEqual([['error', `127.0.0.1:${taken.port} in use`]]);
    const errors = helper.log().args.filter((a: Array<{ level: number }>) => a[0].level === helper.log().ERROR);
    expect(errors.length).toBe(1);
    const r = await reg.call('pi', 'echo');
    expect(toolErrorOf(r)).toMatchObject({ code: 'AGENT_OFFLINE', details: { outcome: 'not_sent' } });
  });

  it('turns a bad config field into state error naming it', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, policy: 'pi' });
    expect(reg.state).toBe('error');
    const states: Array<string | undefined> = [];
    reg.register({ id: 'u1', onRegistryState: (_s, d) => states.push(d) });
    expect(states[0]).toMatch(/^policy: policy line 1 "pi"/);
    expect(reg.listTools()).toEqual([]);
  });

  it('releases the port on close, so a redeploy can bind it again', async () => {
    const first = await loadRegistry({ mode: 'embedded', port: 0 });
    const port = first.brokerPort!;
    await helper.unload();
    const again = await loadRegistry({ mode: 'embedded', port });
    expect(again.state).toBe('connected');
    expect(again.brokerPort).toBe(port);
  });

  it('derives a stable default caller id from the instance and node id', async () => {
    const a = (await loadRegistry({ mode: 'embedded', port: 0 })).callerId;
    await helper.unload();
    const b = (await loadRegistry({ mode: 'embedded', port: 0 })).callerId;
    expect(a).toMatch(/^nodered-[0-9a-f]{12}$/);
    expect(b).toBe(a);
  });
});
