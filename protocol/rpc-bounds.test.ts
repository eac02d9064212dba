// Bounded work on the agent side, against a real broker with raw MQTT clients (no RpcCaller, so
// nothing on the calling side smooths the traffic): 30 copies of one request sent while it runs
// get one answer; copies after it finished are answered at most once per resend interval; a
// caller runs at most maxRunningPerCaller calls and all callers together at most maxRunning
// (rotated caller ids do not help), the excess gets BUSY without being stored (the same id runs
// once a slot is free); a running call counts toward the store's byte cap.
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcServer } from './rpc-server';
import { defineTool } from './tool';
import { until } from '../test/support/until';

let broker: EmbeddedBroker;
let server: RpcServer | undefined;
const clients: MqttClient[] = [];
let running = 0;
let peak = 0;
let runs = 0;
/** Releases every sleeping call. */
let release: () => void = () => undefined;
let gate = new Promise<void>((r) => { release = r; });

const sleepTool = defineTool({
  name: 'hold', description: 'runs until released', risk: 'low', input: z.strictObject({ n: z.number().optional(), pad: z.string().optional() }),
  execute: async () => {
    runs++;
    running++;
    peak = Math.max(peak, running);
    try {
      await gate;
    } finally {
      running--;
    }
    return { done: true };
  },
});

async function serve(opts: Partial<ConstructorParameters<typeof RpcServer>[0]> = {}): Promise<RpcServer> {
  server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'bounded', tools: [sleepTool], ...opts });
  await server.start();
  return server;
}

/** A raw client for caller `callerId` that collects the answers it gets. */
async function raw(callerId: string): Promise<{ send(id: string | number, args?: Record<string, unknown>): Promise<unknown>; answers: any[] }> {
  const c = await mqtt.connectAsync(broker.url);
  clients.push(c);
  const answers: any[] = [];
  await c.subscribeAsync(`toolmesh/v1/agents/bounded/rpc/${callerId}/res`, { qos: 1 });
  c.on('message', (_t, p) => answers.push(JSON.parse(p.toString())));
  return {
    answers,
    send: (id, args = {}) => c.publishAsync(`toolmesh/v1/agents/bounded/rpc/${callerId}/req`,
      JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'hold', arguments: args } }), { qos: 1 }),
  };
}

const errorCode = (a: any) => a.result?.structuredContent?.error?.code;
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
});
afterAll(async () => {
  await broker.close();
});
afterEach(async () => {
  release();
  await Promise.all(clients.splice(0).map((c) => c.endAsync()));
  await server?.stop();
  server = undefined;
  running = 0;
  peak = 0;
  runs = 0;
  gate = new Promise<void>((r) => { release = r; });
});

describe('bounded work', () => {
  it('30 copies of one request during its run get one answer; copies after it are rate-limited', async () => {
    await serve({ resendIntervalMs: 1000 });
    const c = await raw('dup');
    for (let i = 0; i < 30; i++) await c.send('same');
    await until(() => runs === 1, 'the run');
    await pause(300); // every copy has reached the agent while the call still runs
    release();
    await until(() => c.answers.length === 1, 'the answer');
    await pause(200);
    expect(c.answers).toHaveLength(1);
    expect(runs).toBe(1);
    // after completion: the first copy is answered from the store, the next ones within the interval are not
    for (let i = 0; i < 30; i++) await c.send('same');
    await until(() => c.answers.length === 2, 'the stored answer');
    await pause(300);
    expect(c.answers).toHaveLength(2);
    await pause(800);
    await c.send('same');
    await until(() => c.answers.length === 3, 'an answer after the interval');
    expect(runs).toBe(1);
    expect(c.answers.every((a) => a.result?.structuredContent?.done === true)).toBe(true);
  });

  it('a caller runs at most maxRunningPerCaller calls; the excess gets BUSY, not stored, and the same id runs later', async () => {
    await serve({ maxRunningPerCaller: 3, maxRunning: 100 });
    const c = await raw('greedy');
    for (let i = 0; i < 10; i++) await c.send(i);
    await until(() => c.answers.length === 7, 'seven BUSY answers');
    expect(c.answers.map(errorCode)).toEqual(Array(7).fill('BUSY'));
    expect(c.answers[0].result.structuredContent.error.details).toMatchObject({ limit: 'maxRunningPerCaller', bound: 3 });
    expect(peak).toBe(3);
    const other = await raw('modest');
    await other.send('o1');
    await until(() => running === 4, 'another caller still gets a slot');
    release();
    await until(() => c.answers.length === 10 && other.answers.length === 1, 'the results');
    // a BUSY id was not stored: sent again, it runs
    await c.send(9);
    await until(() => c.answers.length === 11, 'the retried id');
    expect(c.answers.at(-1).result.structuredContent).toEqual({ done: true });
    expect(runs).toBe(5);
  });

  it('rotating caller ids does not get past maxRunning', async () => {
    await serve({ maxRunningPerCaller: 8, maxRunning: 5 });
    const callers = await Promise.all(Array.from({ length: 20 }, (_, i) => raw(`rot-${i}`)));
    for (const c of callers) await c.send(1);
    await until(() => callers.filter((c) => c.answers.length === 1).length === 15, 'fifteen BUSY answers');
    expect(peak).toBe(5);
    expect(callers.flatMap((c) => c.answers).map(errorCode)).toEqual(Array(15).fill('BUSY'));
    expect(callers.flatMap((c) => c.answers)[0].result.structuredContent.error.details).toMatchObject({ limit: 'maxRunning', bound: 5 });
  });

  it('running calls count toward the store\'s byte cap', async () => {
    await serve({ storeMaxBytes: 40_000, maxRunningPerCaller: 100, maxRunning: 100 });
    const c = await raw('big');
    const pad = 'x'.repeat(10_000);
    for (let i = 0; i < 6; i++) await c.send(i, { pad });
    await until(() => c.answers.length >= 3, 'the store refuses what does not fit');
    await pause(100);
    expect(peak).toBeLessThanOrEqual(3);
    expect(c.answers.map(errorCode).every((code) => code === 'BUSY')).toBe(true);
    expect(c.answers[0].result.structuredContent.error.details).toMatchObject({ limit: 'storeMaxBytes' });
  });
});
