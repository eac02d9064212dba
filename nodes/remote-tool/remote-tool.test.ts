import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import mqtt from 'mqtt';
import { RpcServer, defineTool, topics } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import { registryOf } from '../shared/registry-api';
import remoteToolNode from './remote-tool';
import catalog from './locales/en-US/remote-tool.json';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { trapFirstRead, watchProcessFaults } from '../../test/support/nodes-faults';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const runs: Record<string, number> = {};
const count = (name: string) => { runs[name] = (runs[name] ?? 0) + 1; };
const tools = [
  defineTool({
    name: 'echo', description: 'Echoes text.', risk: 'low', input: z.object({ text: z.string(), times: z.number().int().optional() }).strict(),
    execute: (a) => { count('echo'); return { echo: a.text.repeat(a.times ?? 1) }; },
  }),
  defineTool({
    name: 'greet', description: 'Says hello as text.', risk: 'low', input: z.object({ who: z.string() }),
    execute: (a) => { count('greet'); return `hello ${a.who}`; },
  }),
  defineTool({
    name: 'encode', description: 'Reports progress, then finishes.', risk: 'low', input: z.object({}),
    execute: async (_a, ctx) => {
      count('encode');
      ctx.progress(40, 100, 'encoding');
      await new Promise((r) => setTimeout(r, 150));
      return { done: true };
    },
  }),
  defineTool({
    name: 'slow', description: 'Takes 700 ms.', risk: 'low', input: z.object({}),
    execute: async () => { count('slow'); await new Promise((r) => setTimeout(r, 700)); return { slow: true }; },
  }),
  defineTool({
    name: 'danger_wipe', description: 'Hidden from models by the policy.', risk: 'high', input: z.object({}),
    execute: () => { count('danger_wipe'); return { wiped: true }; },
  }),
];

const remoteToolWithCatalog = withCatalog(remoteToolNode, catalog);

let broker: EmbeddedBroker;
let agent: RpcServer;


/** Resolves with the next message the helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** Collects everything helper node `id` receives. */
function collect(id: string): any[] {
  const got: any[] = [];
  helper.getNode(id).on('input', (m: unknown) => got.push(m));
  return got;
}

/**
 * Loads registry (external, on the shared broker) → remote-tool `rt` → helper `out`, plus a
 * catch node → helper `caught`; resolves once agent `pi` is ready in the registry.
 */
async function load(props: Record<string, unknown>, extra: Record<string, unknown>[] = []): Promise<void> {
  const flow = [
    ...extra,
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: 'rt-test', policy: '*/*\n!*/danger*' },
    { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', registry: 'reg', wires: [['out']], ...props },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'c1', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];
  await helper.load([registryNode, remoteToolWithCatalog], flow);
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.listAgents().find((a) => a.id === 'pi' && a.ready), 'agent pi in the registry');
}

beforeAll(async () => {
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0 });
  agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools });
  await agent.start();
});
afterAll(async () => {
  await agent.stop();
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
});
afterEach(async () => {
  await helper.unload();
  for (const k of Object.keys(runs)) delete runs[k];
});

describe('remote-tool, static mode', () => {
  it('calls the configured tool and puts structuredContent on msg.payload', async () => {
    await load({ agent: 'pi', tool: 'echo', arguments: '{"text":"hi","times":2}' });
    const out = next('out');
    helper.getNode('rt').receive({ payload: 1700000000000 });
    const msg = await out;
    expect(msg.payload).toEqual({ echo: 'hihi' });
    expect(msg.toolResult).toMatchObject({ isError: false, agent: 'pi', tool: 'echo', structuredContent: { echo: 'hihi' } });
    expect(msg.toolResult.id).toBeUndefined();
    expect(msg.toolMeta).toEqual({ agent: 'pi', tool: 'echo', durationMs: msg.toolResult.durationMs });
    expect(msg.toolMeta.durationMs).toBeGreaterThanOrEqual(0);
  });

  it('joins text content when there is no structuredContent', async () => {
    await load({ agent: 'pi', tool: 'greet', arguments: '{}', argsFrom: 'payload' });
    const out = next('out');
    helper.getNode('rt').receive({ payload: { who: 'Ada' } });
    expect((await out).payload).toBe('hello Ada');
  });

  it('merges msg.payload keys over the configured arguments', async () => {
    await load({ agent: 'pi', tool: 'echo', arguments: '{"text":"a","times":3}', argsFrom: 'merge' });
    const out = next('out');
    helper.getNode('rt').receive({ payload: { text: 'b' } });
    expect((await out).payload).toEqual({ echo: 'bbb' });
  });

  it('sends INVALID_ARGUMENTS to Catch nodes and, by default, nothing on the output', async () => {
    await load({ agent: 'pi', tool: 'echo', arguments: '{"text":5}' });
    const outs = collect('out');
    const caught = next('caught');
    helper.getNode('rt').receive({ payload: 'go' });
    const c = await caught;
    expect(c.error.code).toBe('INVALID_ARGUMENTS');
    expect(c.error.message).toMatch(/INVALID_ARGUMENTS: invalid arguments for echo: text/);
    expect(c.error.source.id).toBe('rt');
    expect(c.toolResult.structuredContent.error.details.issues[0].path).toEqual(['text']);
    expect(runs.echo).toBeUndefined();
    await new Promise((r) => setTimeout(r, 50));
    expect(outs).toEqual([]);
  });

  it('also sends the failed result on the output when "send errors" is set', async () => {
    await load({ agent: 'pi', tool: 'nope', sendErrors: true });
    const out = next('out');
    const caught = next('caught');
    helper.getNode('rt').receive({ payload: 'go' });
    const [o, c] = await Promise.all([out, caught]);
    expect(c.error.code).toBe('TOOL_NOT_FOUND');
    expect(o.toolResult.isError).toBe(true);
    expect(o.payload.error.code).toBe('TOOL_NOT_FOUND');
  });

  it('fails with AGENT_OFFLINE when the agent is offline', async () => {
    const gone = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'gone', tools });
    await gone.start();
    await gone.stop();
    await load({ agent: 'gone', tool: 'echo', arguments: '{"text":"x"}' });
    await until(() => (helper.getNode('reg') as ToolRegistryNode).listAgents().find((a) => a.id === 'gone' && a.status?.state === 'offline'), 'agent gone offline');
    const caught = next('caught');
    helper.getNode('rt').receive({ payload: 'go' });
    const c = await caught;
    expect(c.error.code).toBe('AGENT_OFFLINE');
    expect(c.toolResult.structuredContent.error.details.outcome).toBe('not_sent');
  });

  it('refuses a non-object msg.payload as arguments, naming the field, without calling', async () => {
    await load({ agent: 'pi', tool: 'echo', argsFrom: 'payload' });
    const caught = next('caught');
    helper.getNode('rt').receive({ payload: 'text' });
    const c = await caught;
    expect(c.error.code).toBe('INVALID_ARGUMENTS');
    expect(c.error.message).toContain('msg.payload');
    expect(runs.echo).toBeUndefined();
  });

  it('logs a warning when it is closed while a call runs (its Catch nodes stop with the flow)', async () => {
    await load({ agent: 'pi', tool: 'encode', arguments: '{}' });
    const rt = helper.getNode('rt');
    const warnings: string[] = [];
    const warn = rt.warn.bind(rt);
    rt.warn = (m: string) => { warnings.push(String(m)); warn(m); };
    rt.receive({ payload: 'go' });
    await until(() => runs.encode, 'the call running');
    await new Promise<void>((resolve) => rt.close(false).then(resolve, resolve));
    await until(() => warnings.length, 'a warning');
    expect(warnings[0]).toMatch(/pi\/encode was cancelled: the node was closed/);
  });

  it('shows progress in its status while the call runs, then ok', async () => {
    await load({ agent: 'pi', tool: 'encode' });
    const rt = helper.getNode('rt');
    const texts: string[] = [];
    rt.on('call:status', (call: { args: Array<{ text?: string }> }) => texts.push(String(call.args[0].text)));
    const out = next('out');
    rt.receive({ payload: 'go' });
    await out;
    await until(() => texts.some((x) => /^ok \d+ ms$/.test(x)), 'the ok status');
    expect(texts).toContain('calling encode…');
    expect(texts).toContain('encoding 40%');
  });

  it('says it waits for the agent while a running call\'s agent is lost, and calls again when it is back', async () => {
    await load({ agent: 'pi', tool: 'slow' });
    const rt = helper.getNode('rt');
    const shown: Array<{ fill?: string; text?: string }> = [];
    rt.on('call:status', (call: { args: Array<{ fill?: string; text?: string }> }) => shown.push(call.args[0]));
    // what the broker publishes for the agent's will, then the agent's own status again
    const status = topics().agentStatus('pi');
    const peer = await mqtt.connectAsync(broker.url, { clientId: `rt-test-peer-${process.pid}` });
    let online = '';
    peer.on('message', (_t, payload) => { online ||= payload.toString(); });
    await peer.subscribeAsync(status);
    await until(() => online, 'the agent\'s retained status');
    try {
      const out = next('out');
      rt.receive({ payload: {} });
      await until(() => runs.slow, 'the call running');
      const instance = JSON.parse(online).instance;
      await peer.publishAsync(status, JSON.stringify({ state: 'lost', agent: 'pi', instance }), { qos: 1, retain: true });
      await until(() => shown.some((s) => s.text === 'waiting for pi (lost)…'), 'the waiting status');
      expect(shown.find((s) => s.text === 'waiting for pi (lost)…')?.fill).toBe('yellow');
      await peer.publishAsync(status, online, { qos: 1, retain: true });
      const result = await out;
      expect(result.payload).toEqual({ slow: true });
      const texts = shown.map((s) => s.text);
      expect(texts.lastIndexOf('calling slow…')).toBeGreaterThan(texts.indexOf('waiting for pi (lost)…'));
      await until(() => /^ok \d+ ms$/.test(String(shown.at(-1)?.text)), 'the ok status');
    } finally {
      await peer.endAsync();
    }
  });
});

describe('remote-tool, dynamic mode (msg.toolCall)', () => {
  it('calls the agent and tool named by msg.toolCall and returns msg.toolResult with its id', async () => {
    await load({ agent: '', tool: '' });
    const out = next('out');
    const toolCall = { id: 'call_1', name: 'pi__echo', agent: 'pi', tool: 'echo', arguments: { text: 'yo' }, risk: 'low' };
    helper.getNode('rt').receive({ payload: 'ignored', toolCall });
    const msg = await out;
    expect(msg.payload).toEqual({ echo: 'yo' });
    expect(msg.toolCall).toEqual(toolCall);
    expect(msg.toolResult).toMatchObject({ id: 'call_1', isError: false, agent: 'pi', tool: 'echo' });
    expect(runs.greet).toBeUndefined();
  });

  it('always sends a failed result on, with the error, and tells Catch nodes', async () => {
    await load({});
    const out = next('out');
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_2', agent: 'pi', tool: 'echo', arguments: { text: 1 } } });
    const [o, c] = await Promise.all([out, caught]);
    expect(o.toolResult).toMatchObject({ id: 'call_2', isError: true });
    expect(o.toolResult.structuredContent.error.code).toBe('INVALID_ARGUMENTS');
    expect(c.error.code).toBe('INVALID_ARGUMENTS');
  });

  it('refuses a toolCall without agent before anything is sent', async () => {
    await load({ agent: 'pi', arguments: '{"text":"static"}' });
    const out = next('out');
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_3', tool: 'echo', arguments: { text: 'x' } } });
    const [o, c] = await Promise.all([out, caught]);
    expect(c.error.code).toBe('INVALID_ARGUMENTS');
    expect(c.error.message).toContain('msg.toolCall.agent');
    expect(o.toolResult).toMatchObject({ id: 'call_3', isError: true });
    expect(runs.echo).toBeUndefined();
  });

  it('refuses arguments that are not an object, naming the field', async () => {
    await load({});
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_4', agent: 'pi', tool: 'echo', arguments: '{"text":"x"}' } });
    const c = await caught;
    expect(c.error.message).toContain('msg.toolCall.arguments');
    expect(runs.echo).toBeUndefined();
  });

  it('names the field, the expectation and what it got for a toolCall that breaks the contract', async () => {
    await load({});
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_6', agent: 'pi', tool: 'echo', arguments: { text: 'x' }, risk: 'extreme' } });
    const c = await caught;
    expect(c.error.code).toBe('INVALID_ARGUMENTS');
    expect(c.error.message).toMatch(/INVALID_ARGUMENTS: msg\.toolCall\.risk must be low, medium, high or critical, got "extreme"; the call was not sent$/);
    expect(runs.echo).toBeUndefined();
  });

  it('refuses a call from msg.toolCall when the registry cannot check its policy (no isOffered)', async () => {
    await load({});
    // an older or foreign registry without the policy check: the real one with it taken away
    Object.defineProperty(registryOf({ nodes: { getNode: (id: string) => helper.getNode(id) } }, 'reg')!, 'isOffered', { value: undefined });
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_7', agent: 'pi', tool: 'echo', arguments: { text: 'x' } } });
    const c = await caught;
    expect(c.error.code).toBe('PERMISSION_DENIED');
    expect(c.error.message).toContain('cannot check its policy for pi/echo');
    expect(runs.echo).toBeUndefined();
  });

  it('does not call a tool the registry policy hides from models', async () => {
    await load({});
    const caught = next('caught');
    helper.getNode('rt').receive({ toolCall: { id: 'call_5', agent: 'pi', tool: 'danger_wipe', arguments: {} } });
    const c = await caught;
    expect(c.error.code).toBe('PERMISSION_DENIED');
    expect(runs.danger_wipe).toBeUndefined();
  });
});

describe('remote-tool, static or dynamic', () => {
  it('with agent and tool set in its dialog, ignores msg.toolCall and calls its own tool', async () => {
    await load({ agent: 'pi', tool: 'echo', arguments: '{"text":"static"}' });
    const out = next('out');
    const toolCall = { id: 7, agent: 'flows', tool: 'lookup', arguments: { q: 1 }, callerId: 'x', dryRun: false };
    helper.getNode('rt').receive({ payload: {}, toolCall });
    const msg = await out;
    expect(msg.payload).toEqual({ echo: 'static' });
    expect(msg.toolResult).toMatchObject({ id: 7, isError: false, agent: 'pi', tool: 'echo' });
    expect(runs.echo).toBe(1);
  });

  it('with the tool empty, takes agent and tool from msg.toolCall', async () => {
    await load({ agent: 'pi', tool: '' });
    const out = next('out');
    helper.getNode('rt').receive({ toolCall: { id: 'c', agent: 'pi', tool: 'greet', arguments: { who: 'Ada' } } });
    expect((await out).payload).toBe('hello Ada');
  });
});

describe('remote-tool, failures after the call', () => {
  it('sends an exception thrown while passing the result on to Catch nodes, never as an unhandled rejection', async () => {
    // output 1 goes to two nodes, so Node-RED clones the message, and the clone throws once
    await load({ agent: 'pi', tool: 'echo', arguments: '{"text":"hi"}', wires: [['out', 'out2']] }, [{ id: 'out2', type: 'helper', z: 'f1' }]);
    const faults = watchProcessFaults();
    try {
      const caught = next('caught');
      const msg: Record<string, unknown> = { payload: 'go' };
      trapFirstRead(msg);
      helper.getNode('rt').receive(msg);
      const c = await caught;
      expect(c.error.message).toContain('the trap property cannot be read');
      expect(c.error.source.id).toBe('rt');
      expect(runs.echo).toBe(1);
      expect(faults.seen).toEqual([]);
      // the node still works
      const out = next('out');
      helper.getNode('rt').receive({ payload: 'again' });
      expect((await out).payload).toEqual({ echo: 'hi' });
    } finally {
      faults.stop();
    }
  });
});
