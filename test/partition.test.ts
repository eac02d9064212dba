// Partitions and half-open connections (docs/protocol.md, "Behaviour"): an agent behind a TCP
// proxy that blackholes its traffic without closing sockets. The broker (aedes, and Debian's
// mosquitto) notices the silent agent by keepalive and publishes its `lost` will; the caller fails the
// agent's calls with AGENT_OFFLINE; after the path heals the agent reconnects (same instance), and
// a result it kept reaches the caller that was still waiting for it.
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, RpcServer, toolErrorOf, topics, type CallToolResult } from '../protocol';
import { diagEcho, makeDiagSleep } from '../agent/packs/diag';
import { startBroker } from '../protocol/broker';
import { startMosquitto, systemBinary } from './support/mosquitto';
import { startTcpProxy, type TcpProxy } from './support/tcp-proxy';
import { until } from './support/until';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('tcp proxy', () => {
  it('forwards, blackholes both directions without closing, holds new connections, and heals', async () => {
    const echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
    const proxy = await startTcpProxy({ targetPort: (echo.address() as net.AddressInfo).port });
    try {
      const connect = () => new Promise<{ s: net.Socket; got: () => string; closed: () => boolean }>((resolve) => {
        let data = '';
        let closed = false;
        const s = net.connect(proxy.port, '127.0.0.1', () => resolve({ s, got: () => data, closed: () => closed }));
        s.on('data', (d) => (data += d));
        s.on('close', () => (closed = true));
      });
      const a = await connect();
      a.s.write('one');
      await until(() => a.got() === 'one', 'the echo through the proxy', 2000);

      proxy.blackhole();
      a.s.write('two');
      const b = await connect(); // accepted but held: not connected upstream yet
      b.s.write('held');
      await sleep(300);
      expect(a.got()).toBe('one');
      expect(b.got()).toBe('');
      expect(a.closed() || b.closed()).toBe(false);

      proxy.heal();
      await until(() => a.got() === 'onetwo' && b.got() === 'held', 'the queued bytes after heal', 2000);
      expect(proxy.accepted).toBe(2);

      proxy.cut();
      await until(() => a.closed() && b.closed(), 'both sockets closed by cut()', 2000);
    } finally {
      await proxy.close();
      await new Promise<void>((r) => echo.close(() => r()));
    }
  });
});

const mosquittoBin = systemBinary('/usr/sbin/mosquitto', 'mosquitto');

/** A broker under test: its URL, port, how to stop it, and how soon it must publish the will of a silent client. */
interface Broker { url: string; port: number; stop(): Promise<void> }

/**
 * Each broker and its bound on "lost" after the agent's last packet, ms, for keepalive `k` s.
 * aedes follows MQTT-3.1.2-24 (1.5 × keepalive; +0.5 s for timers). Debian's mosquitto 2.0.11
 * measured here publishes the will of a silent client only after about 3 × keepalive (2.85–3.0 ×
 * over six runs at 2 s and 4 s, with an idle and a busy broker alike), so its bound is 3 × + 1 s.
 */
const BROKERS: { name: string; start: () => Promise<Broker | null>; lostWithinMs: (k: number) => number }[] = [
  {
    name: 'aedes (embedded)',
    start: async () => {
      const b = await startBroker({ port: 0 });
      return { url: b.url, port: b.port, stop: () => b.close() };
    },
    lostWithinMs: (k) => 1.5 * k * 1000 + 500,
  },
  ...(mosquittoBin ? [{
    name: 'Debian mosquitto 2.0.11',
    start: async () => startMosquitto(),
    lostWithinMs: (k: number) => 3 * k * 1000 + 1000,
  }] : []),
];

describe.each(BROKERS)('an agent partitioned from $name', ({ start, lostWithinMs }) => {
  const KEEPALIVE_S = 2;
  let broker: Broker;
  let proxy: TcpProxy;
  let server: RpcServer;
  let caller: RpcCaller;
  let observer: mqtt.MqttClient;
  let dir: string;
  const statuses: { at: number; state: string; instance?: string }[] = [];

  beforeAll(async () => {
    broker = (await start())!;
    proxy = await startTcpProxy({ targetPort: broker.port });
    dir = mkdtempSync(join(tmpdir(), 'toolmesh-partition-'));
    server = new RpcServer({ authorization: { keys: new Map() },
      // through the proxy, with a short keepalive; reconnects capped at 2 s so the test is short
      connection: { url: `mqtt://127.0.0.1:${proxy.port}`, keepaliveSec: KEEPALIVE_S, backoffMinMs: 200, backoffMaxMs: 2000 },
      agentId: 'pi',
      tools: [diagEcho, makeDiagSleep(join(dir, 'runs.jsonl'))],
    });
    await server.start();
    observer = mqtt.connect(broker.url, { protocolVersion: 4 });
    observer.on('message', (_t, p) => {
      if (p.length) {
        const s = JSON.parse(p.toString()) as { state: string; instance?: string };
        statuses.push({ at: Date.now(), state: s.state, instance: s.instance });
      }
    });
    await observer.subscribeAsync(topics().agentStatus('pi'), { qos: 1 });
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'partition-test' });
    await caller.start();
    await until(() => caller.agent('pi')?.ready, 'the agent online', 5000);
  });
  afterAll(async () => {
    await caller?.stop();
    await server?.stop();
    await observer?.endAsync();
    await proxy?.close();
    await broker?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it('is lost by keepalive, its calls fail AGENT_OFFLINE, and a kept result arrives after the heal', async () => {
    const late = new Map<string, CallToolResult>();
    caller.on('late-result', (e: { id: string; result: CallToolResult }) => late.set(e.id, e.result));
    const settled: { at: number; result: CallToolResult }[] = [];
    const call = caller.call('pi', 'diag_sleep', { ms: 1500, tag: 'kept' }, { timeoutMs: 60_000 });
    void call.then((result) => settled.push({ at: Date.now(), result }));
    const runsFile = join(dir, 'runs.jsonl');
    await until(() => existsSync(runsFile) && readFileSync(runsFile, 'utf8').includes('"kept"'), 'the call running on the agent', 3000);

    const cutAt = Date.now();
    proxy.blackhole();
    const lastPacketAt = proxy.lastForwardedAt.up;
    const lost = await until(() => statuses.find((s) => s.state === 'lost' && s.at >= cutAt), 'the agent\'s will', 4 * KEEPALIVE_S * 1000);
    expect(lost.at - lastPacketAt).toBeLessThanOrEqual(lostWithinMs(KEEPALIVE_S));
    expect(lost.instance).toBe(server.instance);

    await until(() => settled.length === 1, 'AGENT_OFFLINE for the partitioned call', 5000);
    expect(toolErrorOf(settled[0].result)).toMatchObject({ code: 'AGENT_OFFLINE', details: { outcome: 'unknown' } });

    await sleep(Math.max(0, lost.at + 2000 - Date.now())); // partitioned until 2 s after the will, well past the tool's 1.5 s
    const healAt = Date.now();
    proxy.heal();
    await until(() => statuses.find((s) => s.state === 'online' && s.at >= healAt), 'the agent online again', 15_000);
    expect(caller.agent('pi')?.status?.instance).toBe(server.instance);

    const id = await until(() => [...late.keys()][0], 'the kept result delivered to the waiting caller', 10_000);
    expect(late.get(id)?.isError).toBe(false);
    expect(late.get(id)?.structuredContent).toMatchObject({ slept: 1500, tag: 'kept' });
    const runs = readFileSync(runsFile, 'utf8').trim().split('\n');
    expect(runs).toHaveLength(1); // delivered after the heal without running again

    const again = await caller.call('pi', 'diag_echo', { text: 'after the heal' });
    expect(again.structuredContent).toEqual({ echo: { text: 'after the heal' } });
  }, 45_000);
});
