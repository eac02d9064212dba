// Broker restarts against Debian's mosquitto, which publishes every client's will on SIGTERM:
// calls in flight across a restart all get their results and run once, with persistence off and
// with Debian's default (retained messages, wills included, kept across the restart). The figures
// for 100 calls and the real agent binary come from `npm run faults`.
import { afterEach, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, toolErrorOf } from '../protocol';
import { startRestartableMosquitto, type RestartableMosquitto } from './support/restartable-mosquitto';
import { until } from './support/until';

let broker: RestartableMosquitto | null = null;
const ends: Array<() => Promise<unknown>> = [];
afterEach(async () => {
  for (const e of ends.splice(0).reverse()) await e();
  await broker?.dispose();
  broker = null;
});

async function restartUnderCalls(persistence: boolean) {
  broker = await startRestartableMosquitto({ persistence });
  if (!broker) return console.warn('skipped: /usr/sbin/mosquitto is missing (Debian package mosquitto)');
  const ran = new Map<string, number>();
  const slow = defineTool({
    name: 'slow', description: 'takes 1.5 s', risk: 'low', input: z.object({ n: z.number() }).strict(),
    execute: async (a, ctx) => {
      ran.set(String(a.n), (ran.get(String(a.n)) ?? 0) + 1);
      await new Promise((r) => setTimeout(r, 1500));
      if (ctx.signal.aborted) throw ctx.signal.reason;
      return { n: a.n };
    },
  });
  // 20 calls of one caller run at once below (the default bound is 8)
  const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools: [slow], maxRunningPerCaller: 32 });
  await server.start();
  ends.push(() => server.stop());
  const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'nr' });
  await caller.start();
  ends.push(() => caller.stop());
  await until(() => caller.agent('pi')?.ready, 'agent ready');
  const n = 20;
  const calls = Array.from({ length: n }, (_, i) => caller.call('pi', 'slow', { n: i }, { timeoutMs: 20_000 }));
  await until(() => ran.size === n, 'all calls running');
  await broker.restart(700);
  const results = await Promise.all(calls);
  const failed = results.map(toolErrorOf).filter(Boolean);
  expect(failed).toEqual([]);
  expect(results.map((r) => (r.structuredContent as { n: number }).n)).toEqual([...Array(n).keys()]);
  expect([...ran.values()].every((c) => c === 1)).toBe(true);
  await until(() => caller.agent('pi')?.ready, 'agent ready again');
  expect(caller.agent('pi')!.status!.instance).toBe(server.instance);
}

describe('mosquitto restarted with calls in flight', () => {
  it('persistence false: every result arrives, nothing runs twice', () => restartUnderCalls(false), 40_000);
  it("Debian's default (persistence true: a retained lost greets the caller): every result arrives, nothing runs twice", () => restartUnderCalls(true), 40_000);
});
