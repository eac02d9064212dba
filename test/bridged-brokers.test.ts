// Two Debian mosquitto brokers joined by a mosquitto bridge (scripts/mosquitto/bridge-site-b.conf,
// `toolmesh/v1/#` both ways, QoS 1, cleansession false, try_private): agents (the real agent
// runtime, startAgent) on broker A, the caller (an RpcCaller, as the tool-registry uses) on broker
// B. The bridge connects to A through a TCP proxy, so the test can cut the link. What crosses the
// bridge (retained status and catalog, wills, queued results) is written down in docs/scaling.md.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, toolErrorOf } from '../protocol';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { startMosquittoWith, type Mosquitto } from './support/mosquitto';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy';
import { until } from './support/until';

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
  const agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi-a', kind: 'pi' }, broker: { url: a.url } }, 'test.yaml', a.dir), quiet, [slow]);
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
    const doomed = new RpcServer({ connection: { url: s.a.url }, agentId: 'doomed', tools: [hang] });
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
