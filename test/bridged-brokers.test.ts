// Two Debian mosquitto brokers joined by a mosquitto bridge (scripts/mosquitto/bridge-site-b.conf,
// `toolmesh/v1/#` both ways, QoS 1, cleansession false, try_private): agents (the real agent
// runtime, startAgent) on broker A, the caller (an RpcCaller, as the tool-registry uses) on broker
// B. The bridge connects to A through a TCP proxy, so the test can cut the link. What crosses the
// bridge (retained status and catalog, wills, queued results) is written down in docs/scaling.md.
// The last block puts a real Node-RED runtime on B instead (node-red-node-test-helper): a
// tool-registry config node in external mode on broker B and a remote-tool node calling pi-a.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, toolErrorOf } from '../protocol';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { startMosquittoWith, type Mosquitto } from './support/mosquitto';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy';
import { until } from './support/until';
import { withCatalog } from './support/i18n';
import { NODE_RED_MAIN } from './support/node-red-path';
import registryNode, { type AgentSummary, type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import remoteToolCatalog from '../nodes/remote-tool/locales/en-US/remote-tool.json';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const quiet = { info() {}, warn() {}, error() {} };
const template = readFileSync(join(__dirname, '..', 'scripts', 'mosquitto', 'bridge-site-b.conf'), 'utf8');

/** The bridge configuration the test runs: the template, pointed at `port` on loopback. */
function bridgeConf(port: number): string {
  const conf = template.replace(/^address .*$/m, `address 127.0.0.1:${port}`);
  if (conf === template && !template.includes(`address 127.0.0.1:${port}`)) throw new Error('no address line in bridge-site-b.conf');
  return conf;
}

const ends: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const e of ends.splice(0).reverse()) await e().catch(() => {});
});

interface Sites {
  a: Mosquitto;
  b: Mosquitto;
  proxy: TcpProxy;
  agent: RunningAgent;
  runs: Map<number, number>;
  done: Set<number>;
  aborted: Set<number>;
}

/** Broker A with a real agent on it, the proxy, then broker B bridged to A through the proxy. */
async function sites(): Promise<Sites | null> {
  const a = await startMosquittoWith((port) => `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n`);
  if (!a) return null;
  ends.push(() => a.stop());
  const runs = new Map<number, number>();
  const aborted = new Set<number>();
  const done = new Set<number>();
  const slow = defineTool({
    name: 'slow', description: 'takes ms, reports progress', risk: 'low',
    input: z.object({ n: z.number(), ms: z.number() }).strict(),
    execute: async (args, ctx) => {
      runs.set(args.n, (runs.get(args.n) ?? 0) + 1);
      for (let i = 1; i <= 3; i++) {
        await new Promise((r) => setTimeout(r, args.ms / 3));
        if (ctx.signal.aborted) { aborted.add(args.n); throw ctx.signal.reason; }
        ctx.progress(i, 3, `step ${i}`);
      }
      done.add(args.n);
      return { n: args.n };
    },
  });
  const agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi-a', kind: 'pi' }, broker: { url: a.url }, limits: { maxRunningPerCaller: 16 } }, 'test.yaml', a.dir), quiet, [slow]);
  ends.push(() => agent.stop());
  const proxy = await startTcpProxy({ targetPort: a.port });
  ends.push(() => proxy.close());
  const b = await startMosquittoWith((port) => `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${bridgeConf(proxy.port)}\n`);
  ends.push(() => b!.stop());
  return { a, b: b!, proxy, agent, runs, done, aborted };
}

async function callerOn(b: Mosquitto, callerId = 'nr-b'): Promise<RpcCaller> {
  const caller = new RpcCaller({ connection: { url: b.url }, callerId });
  await caller.start();
  ends.push(() => caller.stop());
  return caller;
}

describe('agents on broker A, the caller on broker B, a mosquitto bridge between them', () => {
  it('discovery from retained messages, calls with progress, and cancel cross the bridge', async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    // the agent published its retained status and catalog on A before B existed: they reach B
    // through the bridge's subscription, and B keeps them retained for a caller that comes later
    await new Promise((r) => setTimeout(r, 500));
    const raw = mqtt.connect(s.b.url);
    ends.push(() => raw.endAsync());
    const retained: string[] = [];
    raw.on('message', (topic, _p, packet) => { if (packet.retain) retained.push(topic); });
    await raw.subscribeAsync('toolmesh/v1/agents/+/+', { qos: 1 });
    await until(() => retained.length >= 2, 'retained status and catalog on B');
    expect(retained.sort()).toEqual(['toolmesh/v1/agents/pi-a/catalog', 'toolmesh/v1/agents/pi-a/status']);

    const caller = await callerOn(s.b);
    const t0 = Date.now();
    await until(() => caller.agent('pi-a')?.ready, 'pi-a ready on B', 5000);
    // from the retained messages, not a republish (that comes up to 2 s after our online)
    expect(Date.now() - t0).toBeLessThan(1000);
    expect(caller.listTools().map((t) => t.tool.name)).toContain('slow');

    const progress: number[] = [];
    const r = await caller.call('pi-a', 'slow', { n: 1, ms: 300 }, { onProgress: (p) => progress.push(p.progress) });
    expect(toolErrorOf(r)).toBeUndefined();
    expect(r.structuredContent).toEqual({ n: 1 });
    expect(progress).toEqual([1, 2, 3]);

    const ac = new AbortController();
    const cancelled = caller.call('pi-a', 'slow', { n: 2, ms: 1500 }, { signal: ac.signal });
    await until(() => s.runs.get(2), 'call 2 running on A');
    ac.abort('enough');
    expect(toolErrorOf(await cancelled)?.code).toBe('CANCELLED');
    await until(() => s.aborted.has(2), 'the cancel reached the tool on A', 3000);
    expect(s.runs.get(2)).toBe(1);
  }, 30_000);

  it("an agent whose socket dies on A: its will (lost) crosses the bridge and its calls end AGENT_OFFLINE", async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    const hang = defineTool({ name: 'hang', description: 'never ends', risk: 'low', input: z.object({}).strict(), execute: () => new Promise(() => {}) });
    const doomed = new RpcServer({ authorization: { keys: new Map() }, connection: { url: s.a.url }, agentId: 'doomed', tools: [hang] });
    await doomed.start();
    ends.push(() => doomed.stop());
    const caller = await callerOn(s.b);
    await until(() => caller.agent('doomed')?.ready, 'doomed ready on B', 5000);
    const pending = caller.call('doomed', 'hang', {}, { timeoutMs: 20_000 });
    await new Promise((r) => setTimeout(r, 300));
    const t0 = Date.now();
    // as kill -9: the socket goes away without a DISCONNECT, so A publishes the will
    // (MQTT.js end(true) destroys the stream without sending DISCONNECT)
    (doomed as unknown as { client: { end(force: boolean): void } }).client.end(true);
    const r = await pending;
    const took = Date.now() - t0;
    expect(toolErrorOf(r)?.code).toBe('AGENT_OFFLINE');
    expect((r.structuredContent as { error: { details: { outcome: string } } }).error.details.outcome).toBe('unknown');
    expect(caller.agent('doomed')?.status?.state).toBe('lost');
    expect(took).toBeLessThan(5000);
    console.log(`will across the bridge: AGENT_OFFLINE on B ${took} ms after the agent's socket died on A`);
  }, 30_000);

  it('the bridge link cut with calls in flight: every result arrives (queued by A for the bridge session), nothing runs twice', async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    const caller = await callerOn(s.b);
    await until(() => caller.agent('pi-a')?.ready, 'pi-a ready on B', 5000);
    const n = 10;
    const calls = Array.from({ length: n }, (_, i) => caller.call('pi-a', 'slow', { n: 100 + i, ms: 1500 }, { timeoutMs: 20_000 }));
    await until(() => s.runs.size === n, 'all calls running on A');
    const accepted = s.proxy.accepted;
    // cut the link and hold the bridge's reconnect until every call has finished on A: the
    // results are published while the link is down, and A queues them for the bridge's session
    s.proxy.cut();
    s.proxy.blackhole();
    const t0 = Date.now();
    await until(() => s.done.size === n, 'all calls finished on A', 10_000);
    await new Promise((r) => setTimeout(r, 500));
    let settled = 0;
    for (const c of calls) void c.then(() => settled++);
    await new Promise((r) => setTimeout(r, 0));
    expect(settled).toBe(0);
    s.proxy.heal();
    const results = await Promise.all(calls);
    console.log(`bridge link cut for ${Date.now() - t0} ms (results published on A meanwhile): ${n}/${n} results on B after healing; bridge connections ${s.proxy.accepted - accepted}`);
    expect(results.map(toolErrorOf).filter(Boolean)).toEqual([]);
    expect(results.map((r) => (r.structuredContent as { n: number }).n)).toEqual(Array.from({ length: n }, (_, i) => 100 + i));
    expect([...s.runs.values()].every((c) => c === 1)).toBe(true);
    expect(s.proxy.accepted).toBeGreaterThan(accepted);
    // a link cut publishes no will of A's clients on B: the agent stays online there
    expect(caller.agent('pi-a')?.online).toBe(true);
  }, 40_000);
});

/** remote-tool with its en-US catalog, so its statuses and warnings read as users see them. */
const remoteToolWithCatalog = withCatalog(remoteToolNode, remoteToolCatalog);

/** A Node-RED message as the helper node gets it (loosely typed: the helper ships no types). */
type Msg = Record<string, any>;

/** Collects every message helper node `id` receives. */
function collect(id: string): Msg[] {
  const got: Msg[] = [];
  helper.getNode(id).on('input', (m: Msg) => got.push(m));
  return got;
}

/** Collects the text of every status node `id` shows from now on. */
function statusTexts(id: string): string[] {
  const texts: string[] = [];
  helper.getNode(id).on('call:status', (call: { args: Array<{ text?: string }> }) => texts.push(String(call.args[0]?.text)));
  return texts;
}

/**
 * Loads, in the Node-RED runtime, a tool-registry in external mode on broker B (caller id
 * `nodered-b`), a static remote-tool `rt` calling pi-a/slow with msg.payload as arguments, wired
 * to helper `out`, and a Catch node wired to helper `caught`. Resolves once the registry is
 * connected to B (not once it sees pi-a: the tests check that themselves).
 */
async function nodeRedOn(b: Mosquitto): Promise<ToolRegistryNode> {
  const flow = [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'site B', mode: 'external', broker: b.url, callerId: 'nodered-b' },
    { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', registry: 'reg', agent: 'pi-a', tool: 'slow', argsFrom: 'payload', wires: [['out']] },
    { id: 'out', type: 'helper', z: 'f1' },
    { id: 'c1', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];
  await helper.load([registryNode, remoteToolWithCatalog], flow);
  // unloaded first (ends run in reverse): the registry says offline while broker B still runs
  ends.push(() => helper.unload());
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.state === 'connected', 'the registry connected to broker B');
  expect(reg.callerId).toBe('nodered-b');
  return reg;
}

/** {@link nodeRedOn}, then until the registry sees pi-a ready; with the collectors of `out` and `caught` and the remote-tool node. */
async function flowReadyOn(b: Mosquitto) {
  const reg = await nodeRedOn(b);
  await until(() => reg.listAgents().find((a) => a.id === 'pi-a' && a.ready), 'pi-a ready in the registry on B', 5000);
  return { reg, outs: collect('out'), caught: collect('caught'), rt: helper.getNode('rt') };
}

/** What the editor's admin endpoint says about one agent of the registry. */
async function summaryOf(agentId: string): Promise<AgentSummary | undefined> {
  const res = await helper.request().get('/toolmesh/registry/reg/agents').expect(200);
  return (res.body as AgentSummary[]).find((a) => a.id === agentId);
}

describe('agents on broker A, Node-RED (tool-registry + remote-tool) on broker B, a mosquitto bridge between them', () => {
  beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
  afterAll(async () => {
    await helper.unload();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
  });

  it('discovery: the registry on B sees pi-a ready from the retained status and catalog on B alone', async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    // the status and catalog have crossed to B (live or retained: they may arrive after this
    // subscription; B keeps them retained either way) ...
    const raw = mqtt.connect(s.b.url);
    ends.push(() => raw.endAsync());
    const seen = new Set<string>();
    raw.on('message', (topic) => seen.add(topic));
    await raw.subscribeAsync('toolmesh/v1/agents/pi-a/+', { qos: 1 });
    await until(() => seen.size === 2, 'status and catalog of pi-a on B');
    expect([...seen].sort()).toEqual(['toolmesh/v1/agents/pi-a/catalog', 'toolmesh/v1/agents/pi-a/status']);
    // ... then the bridge goes silent, so nothing A sends (the agents' republish when a caller
    // turns online) can reach Node-RED: what it learns, it learns from B's retained messages
    s.proxy.blackhole();
    const down = s.proxy.bytes.down;
    const t0 = Date.now();
    const reg = await nodeRedOn(s.b);
    const pi = await until(() => reg.listAgents().find((a) => a.id === 'pi-a' && a.ready), 'pi-a ready in the registry on B', 5000);
    const took = Date.now() - t0;
    expect(s.proxy.bytes.down, 'nothing came from A while Node-RED discovered pi-a').toBe(down);
    expect(pi.online).toBe(true);
    expect(pi.status?.state).toBe('online');
    expect(pi.status?.catalogRev).toBe(pi.catalog?.rev);
    expect(pi.catalog?.agent).toMatchObject({ id: 'pi-a', kind: 'pi' });
    expect(reg.listAgents().map((a) => a.id)).toEqual(['pi-a']);
    const tools = reg.listTools();
    expect(tools.map((t) => `${t.agentId}/${t.tool.name}`)).toContain('pi-a/slow');
    expect(tools.find((t) => t.tool.name === 'slow')?.tool.inputSchema).toMatchObject({ type: 'object', properties: { n: { type: 'number' }, ms: { type: 'number' } } });
    expect(reg.isOffered('pi-a', 'slow')).toBe(true);
    // the editor's view (admin endpoint of the Node-RED runtime) says the same
    const summary = await summaryOf('pi-a');
    expect(summary).toMatchObject({ id: 'pi-a', kind: 'pi', state: 'online', online: true, ready: true });
    expect(summary?.tools.find((t) => t.name === 'slow')).toMatchObject({ offered: true, annotations: { risk: 'low' } });
    console.log(`Node-RED on B: pi-a ready ${took} ms after the flow was loaded, from B's retained messages (bridge silent)`);
    s.proxy.heal();
  }, 30_000);

  it('a call from the remote-tool node returns the result once, the tool ran once on A, progress shows in the node status', async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    const { reg, outs, caught, rt } = await flowReadyOn(s.b);
    const texts = statusTexts('rt');
    rt.receive({ payload: { n: 1, ms: 300 }, topic: 'first' });
    await until(() => outs.length >= 1, 'the result of call 1 on the output');
    const msg = outs[0];
    expect(msg.topic).toBe('first');
    expect(msg.payload).toEqual({ n: 1 });
    expect(msg.toolResult).toMatchObject({ isError: false, agent: 'pi-a', tool: 'slow', structuredContent: { n: 1 } });
    expect(msg.toolMeta).toEqual({ agent: 'pi-a', tool: 'slow', durationMs: msg.toolResult.durationMs });
    expect(msg.toolMeta.durationMs).toBeGreaterThanOrEqual(250); // 3 steps of 100 ms on A
    // progress: each of the tool's 3 notifications crossed the bridge and became the node's status
    await until(() => texts.some((x) => /^ok \d+ ms$/.test(x)), 'the ok status');
    expect(texts).toEqual(['calling slow…', 'step 1 33%', 'step 2 67%', 'step 3 100%', `ok ${msg.toolMeta.durationMs} ms`]);
    // exactly once: a second call's result comes after the first's, with no repeat of it between
    rt.receive({ payload: { n: 2, ms: 30 }, topic: 'second' });
    await until(() => outs.some((m) => m.topic === 'second'), 'the result of call 2 on the output');
    expect(outs.map((m) => m.payload)).toEqual([{ n: 1 }, { n: 2 }]);
    expect(caught).toEqual([]);
    expect(s.runs.get(1)).toBe(1);
    expect(s.runs.get(2)).toBe(1);
    expect([...s.done].sort()).toEqual([1, 2]);
  }, 30_000);

  it('cancel: closing the remote-tool node mid-call cancels the tool on A', async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    const { reg, outs, caught, rt } = await flowReadyOn(s.b);
    const warnings: string[] = [];
    const warn = rt.warn.bind(rt);
    rt.warn = (m: unknown) => { warnings.push(String(m)); warn(m); };
    rt.receive({ payload: { n: 7, ms: 1500 } });
    await until(() => s.runs.get(7), 'call 7 running on A');
    // as a redeploy does to this node: it aborts its calls; the registry (and its caller) stay
    // up, so what stops the tool is the cancel notification, not the caller going away
    await new Promise<void>((resolve) => rt.close(false).then(resolve, resolve));
    await until(() => warnings.length, 'the node\'s warning about the cancelled call');
    expect(warnings).toEqual(['the call of pi-a/slow was cancelled: the node was closed (redeploy or shutdown) before the result arrived']);
    await until(() => s.aborted.has(7), 'the cancel reached the tool on A', 3000);
    expect(reg.state).toBe('connected');
    expect(s.done.has(7)).toBe(false);
    expect(s.runs.get(7)).toBe(1);
    expect(outs).toEqual([]);
    expect(caught).toEqual([]);
  }, 30_000);

  it("the agent's will: its socket dies on A, the registry on B sees it lost, the pending call and a new one end AGENT_OFFLINE at the Catch node", async () => {
    const s = await sites();
    if (!s) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
    const { reg, outs, caught, rt } = await flowReadyOn(s.b);
    const texts = statusTexts('rt');
    rt.receive({ payload: { n: 5, ms: 6000 }, topic: 'pending' });
    await until(() => s.runs.get(5), 'call 5 running on A');
    const t0 = Date.now();
    // as kill -9 of the agent: MQTT.js end(true) destroys the socket without a DISCONNECT, so A
    // publishes the will (lost), and the bridge carries it to B
    (s.agent.server as unknown as { client: { end(force: boolean): void } }).client.end(true);
    await until(() => reg.listAgents().find((a) => a.id === 'pi-a' && a.status?.state === 'lost'), 'pi-a lost in the registry on B', 5000);
    const lostAfter = Date.now() - t0;
    const pi = reg.listAgents().find((a) => a.id === 'pi-a')!;
    expect(pi.online).toBe(false);
    expect(pi.ready).toBe(false);
    expect(reg.listTools().map((t) => t.agentId)).not.toContain('pi-a');
    expect(await summaryOf('pi-a')).toMatchObject({ state: 'lost', online: false, ready: false });
    // the call in flight: AGENT_OFFLINE (outcome unknown) after the confirmation window, to the Catch node
    await until(() => caught.length >= 1, 'the pending call failed at the Catch node', 5000);
    const failedAfter = Date.now() - t0;
    expect(caught[0].topic).toBe('pending');
    expect(caught[0].error.code).toBe('AGENT_OFFLINE');
    // (Node-RED's Catch message carries the Error's toString(), hence "Error: ")
    expect(caught[0].error.message).toBe('Error: AGENT_OFFLINE: agent pi-a went lost for 1000 ms while the call was pending; it may or may not have run');
    expect(caught[0].error.source.id).toBe('rt');
    expect(caught[0].toolResult.structuredContent.error.details).toEqual({ agent: 'pi-a', outcome: 'unknown' });
    // a call made now is not sent at all
    rt.receive({ payload: { n: 6, ms: 30 }, topic: 'after' });
    await until(() => caught.length >= 2, 'the new call failed at the Catch node');
    expect(caught[1].topic).toBe('after');
    expect(caught[1].error.code).toBe('AGENT_OFFLINE');
    expect(caught[1].error.message).toBe('Error: AGENT_OFFLINE: agent pi-a is lost; the call was not sent');
    expect(caught[1].toolResult.structuredContent.error.details).toEqual({ agent: 'pi-a', outcome: 'not_sent' });
    expect(s.runs.has(6)).toBe(false);
    expect(outs).toEqual([]); // static mode without "send errors": failures go to Catch nodes only
    // the node's status: the will came while a call was running, so it waits for the agent (the
    // lost state crossed the bridge), then each failed call shows its code
    expect(texts).toEqual(['calling slow…', 'waiting for pi-a (lost)…', 'AGENT_OFFLINE', 'calling slow…', 'AGENT_OFFLINE']);
    console.log(`Node-RED on B: pi-a lost ${lostAfter} ms and the pending call AGENT_OFFLINE ${failedAfter} ms after its socket died on A`);
  }, 30_000);
});
