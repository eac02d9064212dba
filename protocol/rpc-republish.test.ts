/**
 * Discovery without a storm (issue 20, docs/protocol.md "Behaviour"): agents republish status and
 * catalog on their own (re)connect and when a caller that misses part of their retained state asks
 * (`notifications/republish`, rate-limited at the agent and at the caller), never merely because a
 * caller came online. Over a real aedes broker; the "broker lost retained state" cases are made by
 * clearing a retained message with a raw client, as a broker restart without persistence would.
 */
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { z } from 'zod';
import { startBroker } from './broker';
import { RpcServer } from './rpc-server';
import { RpcCaller } from './rpc-client';
import { defineTool } from './tool';
import { topics } from './topics';
import { until } from '../test/support/until';

const t = topics();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const tools = [defineTool({ name: 'echo', description: 'echoes', risk: 'low', input: z.object({ text: z.string() }), execute: async (a: { text: string }) => a })];

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function broker() {
  const b = await startBroker({ port: 0 });
  cleanups.push(() => b.close());
  return b;
}

async function agent(url: string, agentId: string, extra: { republishMinIntervalMs?: number } = {}) {
  const s = new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId, tools, ...extra });
  const asked: string[] = [];
  s.on('republish-asked', (c: string) => asked.push(c));
  await s.start();
  cleanups.push(() => s.stop());
  return { s, asked };
}

async function caller(url: string, callerId: string, extra: { republishAskAfterMs?: number; republishAskIntervalMs?: number } = {}) {
  const c = new RpcCaller({ connection: { url }, callerId, ...extra });
  c.on('warn', () => {});
  await c.start();
  cleanups.push(() => c.stop());
  return c;
}

/** A raw client that records the live (not retained) catalogs and statuses agents publish, and what reaches a req topic. */
async function watcher(url: string, subs: string[]) {
  const w = await mqtt.connectAsync(url);
  cleanups.push(() => w.endAsync());
  const live: string[] = [];
  const reqs: unknown[] = [];
  w.on('message', (topic, payload, packet) => {
    if (topic.endsWith('/req')) reqs.push(JSON.parse(payload.toString()));
    else if (!packet.retain && payload.length) live.push(topic);
  });
  await w.subscribeAsync(subs, { qos: 1 });
  return { w, live, reqs };
}

describe('no republish storm', () => {
  it('a caller coming online costs no announcement from the agents', async () => {
    const b = await broker();
    await agent(b.url, 'pi-1');
    await agent(b.url, 'pi-2');
    const obs = await watcher(b.url, [t.anyAgentCatalog, t.anyAgentStatus]);
    const c = await caller(b.url, 'nr');
    await until(() => c.agent('pi-1')?.ready && c.agent('pi-2')?.ready, 'both agents ready from the retained messages');
    // the old agents republished within 2 s of a caller's `online`
    await sleep(2500);
    expect(obs.live).toEqual([]);
  });

  it('an agent reconnecting announces again (its own connection is new)', async () => {
    const b = await broker();
    const { s } = await agent(b.url, 'pi');
    const obs = await watcher(b.url, [t.agentCatalog('pi')]);
    (s as unknown as { client: mqtt.MqttClient }).client.stream.destroy();
    await until(() => obs.live.length >= 1, 'the catalog announced again after the reconnect', 10_000);
  });
});

describe('notifications/republish', () => {
  it('a caller that sees a live status without a catalog asks that agent, which announces, and the agent becomes ready', async () => {
    const b = await broker();
    // the start's announcement counts as the last one: an ask inside 500 ms is served at its end
    const { asked } = await agent(b.url, 'pi', { republishMinIntervalMs: 500 });
    await agent(b.url, 'other');
    // the broker lost pi's retained catalog (as after a restart without persistence)
    const raw = await mqtt.connectAsync(b.url);
    cleanups.push(() => raw.endAsync());
    await raw.publishAsync(t.agentCatalog('pi'), '', { qos: 1, retain: true });
    const c = await caller(b.url, 'nr', { republishAskAfterMs: 300 });
    await until(() => c.agent('other')?.ready, 'other ready');
    expect(c.agent('pi')?.online).toBe(true);
    expect(c.agent('pi')?.ready).toBe(false);
    await until(() => c.agent('pi')?.ready, 'pi ready after its republish', 5000);
    expect(asked).toEqual(['nr']);
    expect(c.listTools().map((x) => `${x.agentId}/${x.tool.name}`)).toEqual(['other/echo', 'pi/echo']);
  });

  it('the agent announces at most once per republishMinIntervalMs, however many asks arrive', async () => {
    const b = await broker();
    const { asked } = await agent(b.url, 'pi', { republishMinIntervalMs: 1000 });
    const obs = await watcher(b.url, [t.agentCatalog('pi')]);
    const raw = await mqtt.connectAsync(b.url);
    cleanups.push(() => raw.endAsync());
    const ask = (callerId: string) => raw.publishAsync(t.req('pi', callerId), JSON.stringify({ jsonrpc: '2.0', method: 'notifications/republish', params: { missing: 'catalog' } }), { qos: 1 });
    // inside the interval of the start's announcement: 20 asks of 5 callers make one announcement at its end
    await Promise.all(Array.from({ length: 20 }, (_, i) => ask(`c${i % 5}`)));
    await until(() => asked.length === 20, 'every ask reached the agent');
    await sleep(1500);
    expect(obs.live).toEqual([t.agentCatalog('pi')]);
    // past the interval: the next ask is served at once
    const before = performance.now();
    await ask('c9');
    await until(() => obs.live.length === 2, 'a second announcement');
    expect(performance.now() - before).toBeLessThan(500);
  });

  it('the caller asks an agent that stays incomplete at most once per republishAskIntervalMs, and names what is missing', async () => {
    const b = await broker();
    // an agent that never answers: a retained live status whose catalogRev no catalog matches
    const raw = await mqtt.connectAsync(b.url);
    cleanups.push(() => raw.endAsync());
    await raw.publishAsync(t.agentStatus('mute'), JSON.stringify({ state: 'online', agent: 'mute', instance: 'i1', catalogRev: 7, ts: Date.now() }), { qos: 1, retain: true });
    await raw.publishAsync(t.agentCatalog('mute'), JSON.stringify({ agent: { id: 'mute' }, rev: 6, tools: [] }), { qos: 1, retain: true });
    await raw.publishAsync(t.agentCatalog('bare'), JSON.stringify({ agent: { id: 'bare' }, rev: 1, tools: [] }), { qos: 1, retain: true });
    const obs = await watcher(b.url, [t.requestsTo('mute'), t.requestsTo('bare')]);
    await caller(b.url, 'nr', { republishAskAfterMs: 100, republishAskIntervalMs: 1000 });
    await sleep(2600);
    const asks = obs.reqs as Array<{ method: string; params: { missing: string }; id?: unknown }>;
    expect(asks.every((m) => m.method === 'notifications/republish' && m.id === undefined)).toBe(true);
    const byMissing = (m: string) => asks.filter((x) => x.params.missing === m).length;
    // first ask after ~100 ms, then one per second: 3 in 2.6 s for each agent, not one per sweep
    expect(byMissing('rev')).toBeGreaterThanOrEqual(2);
    expect(byMissing('rev')).toBeLessThanOrEqual(3);
    expect(byMissing('status')).toBeGreaterThanOrEqual(2);
    expect(byMissing('status')).toBeLessThanOrEqual(3);
  });

  it('an agent answers nothing to the notification (no response on the caller\'s topic) and keeps serving calls', async () => {
    const b = await broker();
    await agent(b.url, 'pi');
    const res = await watcher(b.url, [t.responsesTo('raw')]);
    const raw = await mqtt.connectAsync(b.url);
    cleanups.push(() => raw.endAsync());
    await raw.publishAsync(t.req('pi', 'raw'), JSON.stringify({ jsonrpc: '2.0', method: 'notifications/republish' }), { qos: 1 });
    await raw.publishAsync(t.req('pi', 'raw'), JSON.stringify({ jsonrpc: '2.0', method: 'notifications/republish', params: { missing: 'x'.repeat(10) } }), { qos: 1 });
    const c = await caller(b.url, 'nr');
    await until(() => c.agent('pi')?.ready, 'pi ready');
    const r = await c.call('pi', 'echo', { text: 'hi' });
    expect(r.isError).toBeFalsy();
    await sleep(200);
    expect(res.live).toEqual([]);
  });
});
