/**
 * The broker-restart rules of docs/protocol.md ("Lost agents and lost callers") and the JSON
 * limits, over a real aedes broker. Wills are published by a raw client exactly as a shutting-down
 * broker would (mosquitto publishes every client's will before it drops the connections).
 */
import { afterEach, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { z } from 'zod';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcServer } from './rpc-server';
import { RpcCaller } from './rpc-client';
import { defineTool, type ToolDefinition } from './tool';
import { toolErrorOf } from './errors';
import { topics } from './topics';
import { CallStore, ENTRY_OVERHEAD_BYTES } from './call-store';
import { checkJsonLimits } from './json-limits';
import { until } from '../test/support/until';

const t = topics();
const fast = { backoffMinMs: 50, backoffMaxMs: 100 };

/** A tool that runs until released; counts starts and aborts. */
function gatedTool() {
  const state = { runs: 0, aborts: 0, release: [] as Array<() => void> };
  const tool: ToolDefinition = defineTool({
    name: 'slow', description: 'waits until released or aborted', risk: 'low', input: z.object({}).loose(),
    execute: (_a, ctx) => new Promise((resolve, reject) => {
      state.runs++;
      state.release.push(() => resolve({ done: true }));
      ctx.signal.addEventListener('abort', () => { state.aborts++; reject(ctx.signal.reason); });
    }),
  });
  return { state, tool };
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(opts: { offlineGraceMs?: number; reconnectGraceMs?: number; callerGraceMs?: number } = {}) {
  const ctx: { broker: EmbeddedBroker } = { broker: await startBroker({ port: 0 }) };
  cleanups.push(() => ctx.broker.close());
  const { state, tool } = gatedTool();
  const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: ctx.broker.url, ...fast }, agentId: 'pi', tools: [tool], callerGraceMs: opts.callerGraceMs });
  await server.start();
  cleanups.push(() => server.stop());
  const caller = new RpcCaller({ connection: { url: ctx.broker.url, ...fast }, callerId: 'nr', offlineGraceMs: opts.offlineGraceMs, reconnectGraceMs: opts.reconnectGraceMs });
  await caller.start();
  cleanups.push(() => caller.stop());
  await until(() => caller.agent('pi')?.ready, 'caller.agent(pi)?.ready');
  return { ctx, server, caller, state };
}

async function raw(url: string): Promise<mqtt.MqttClient> {
  const c = await mqtt.connectAsync(url);
  cleanups.push(() => c.endAsync());
  return c;
}

describe('lost agents (caller side)', () => {
  it('keeps the calls of an agent that is back online with the same instance inside the window', async () => {
    const { ctx, server, caller, state } = await setup({ offlineGraceMs: 500 });
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.agentStatus('pi'), JSON.stringify({ state: 'lost', agent: 'pi', instance: server.instance }), { qos: 1, retain: true });
    await until(() => caller.agent('pi')?.status?.state === 'lost', 'caller.agent(pi)?.status?.state === lost');
    await c.publishAsync(t.agentStatus('pi'), JSON.stringify({ state: 'online', agent: 'pi', instance: server.instance, catalogRev: server.catalog.rev }), { qos: 1, retain: true });
    await until(() => caller.agent('pi')?.online, 'caller.agent(pi)?.online');
    await new Promise((r) => setTimeout(r, 600)); // past the window
    state.release[0]();
    expect((await p).structuredContent).toEqual({ done: true });
    expect(state.runs).toBe(1);
  });

  it('settles at once when the agent comes back as a new instance (its store is gone)', async () => {
    const { ctx, caller, state } = await setup({ offlineGraceMs: 5000 });
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.agentStatus('pi'), JSON.stringify({ state: 'online', agent: 'pi', instance: 'rebooted' }), { qos: 1, retain: true });
    const r = await p;
    expect(toolErrorOf(r)).toMatchObject({ code: 'AGENT_OFFLINE', details: { outcome: 'unknown' } });
    expect(toolErrorOf(r)!.message).toContain('restarted');
  });

  it('settles nothing on a will that arrives just before its own connection drops; delivers the result after the broker restart', async () => {
    const { ctx, server, caller, state } = await setup({ offlineGraceMs: 200 });
    const port = ctx.broker.port;
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    // what a shutting-down broker does: publish the agent's will (and the caller's), then drop everyone
    const c = await mqtt.connectAsync(ctx.broker.url);
    await c.publishAsync(t.agentStatus('pi'), JSON.stringify({ state: 'lost', agent: 'pi', instance: server.instance }), { qos: 1, retain: true });
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'lost', caller: 'nr', instance: caller.instance }), { qos: 1, retain: true });
    await c.endAsync();
    await ctx.broker.close();
    let settled = false;
    void p.then(() => { settled = true; });
    await new Promise((r) => setTimeout(r, 700)); // broker down longer than offlineGraceMs
    expect(settled).toBe(false);
    ctx.broker = await startBroker({ port });
    await until(() => caller.connected && server.connected && caller.agent('pi')?.online, 'both back online', 10_000);;
    state.release[0]();
    expect((await p).structuredContent).toEqual({ done: true });
    expect(state.runs).toBe(1);
    expect(state.aborts).toBe(0);
  });

  it('re-sends when the agent returns after the caller, though no will said it had gone (aedes closes without wills)', async () => {
    let broker = await startBroker({ port: 0 });
    const port = broker.port;
    cleanups.push(() => broker.close());
    const { state, tool } = gatedTool();
    // the agent reconnects well after the caller, so the caller's own re-send finds nobody
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url, backoffMinMs: 1500, backoffMaxMs: 1500 }, agentId: 'pi', tools: [tool] });
    await server.start();
    cleanups.push(() => server.stop());
    const caller = new RpcCaller({ connection: { url: broker.url, ...fast }, callerId: 'nr' });
    await caller.start();
    cleanups.push(() => caller.stop());
    await until(() => caller.agent('pi')?.ready, 'agent ready');
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 20_000 });
    await until(() => state.release.length === 1, 'call running');
    await broker.close();
    state.release[0](); // finishes while nobody is connected: the result waits in the agent's store
    await new Promise((r) => setTimeout(r, 200));
    broker = await startBroker({ port });
    await until(() => caller.connected, 'caller back');
    expect(server.connected).toBe(false);
    expect((await p).structuredContent).toEqual({ done: true });
    expect(state.runs).toBe(1);
  });

  it('ends the calls of an agent that stays lost with AGENT_OFFLINE after the window', async () => {
    const { ctx, server, caller, state } = await setup({ offlineGraceMs: 150 });
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.agentStatus('pi'), JSON.stringify({ state: 'lost', agent: 'pi', instance: server.instance }), { qos: 1, retain: true });
    expect(toolErrorOf(await p)?.code).toBe('AGENT_OFFLINE');
  });
});

describe('lost callers (agent side)', () => {
  it('keeps the calls of a caller that comes back with the same instance inside the grace period', async () => {
    const { ctx, caller, state } = await setup({ callerGraceMs: 300 });
    const p = caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'lost', caller: 'nr', instance: caller.instance }), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 100));
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'online', caller: 'nr', instance: caller.instance }), { qos: 1, retain: true });
    await new Promise((r) => setTimeout(r, 400));
    expect(state.aborts).toBe(0);
    state.release[0]();
    expect((await p).structuredContent).toEqual({ done: true });
  });

  it('cancels at once the calls of a caller that comes back as a new instance', async () => {
    const { ctx, caller, state } = await setup({ callerGraceMs: 60_000 });
    void caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'lost', caller: 'nr', instance: caller.instance }), { qos: 1, retain: true });
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'online', caller: 'nr', instance: 'new-one' }), { qos: 1, retain: true });
    await until(() => state.aborts === 1, 'state.aborts === 1');
  });

  it('cancels at once the calls of a caller that says offline', async () => {
    const { ctx, caller, state } = await setup({ callerGraceMs: 60_000 });
    void caller.call('pi', 'slow', {}, { timeoutMs: 10_000 });
    await until(() => state.release.length === 1, 'state.release.length === 1');
    const c = await raw(ctx.broker.url);
    await c.publishAsync(t.callerStatus('nr'), JSON.stringify({ state: 'offline', caller: 'nr', instance: caller.instance }), { qos: 1, retain: true });
    await until(() => state.aborts === 1, 'state.aborts === 1');
  });
});

describe('hostile JSON', () => {
  const deep = (n: number) => '['.repeat(n) + ']'.repeat(n);

  it('answers a 20,000-level nested tools/call with -32600 naming the limit, and stays up', async () => {
    const { ctx, caller } = await setup();
    const c = await raw(ctx.broker.url);
    await c.subscribeAsync(t.res('pi', 'evil'), { qos: 1 });
    const answers: any[] = [];
    c.on('message', (_t, p) => answers.push(JSON.parse(p.toString())));
    const payload = `{"jsonrpc":"2.0","id":"n1","method":"tools/call","params":{"name":"slow","arguments":{"a":${deep(20_000)}}}}`;
    expect(payload.length).toBeGreaterThan(40_000);
    await c.publishAsync(t.req('pi', 'evil'), payload, { qos: 1 });
    await c.publishAsync(t.req('pi', 'evil'), JSON.stringify({ jsonrpc: '2.0', id: 'w1', method: 'ping', params: { a: Array(20_001).fill(0) } }), { qos: 1 });
    // a notification over the limits gets no answer; a request without a usable id gets id null
    await c.publishAsync(t.req('pi', 'evil'), `{"jsonrpc":"2.0","method":"notifications/cancelled","params":${deep(100)}}`, { qos: 1 });
    await c.publishAsync(t.req('pi', 'evil'), deep(5000), { qos: 1 });
    await until(() => answers.length >= 3, 'answers.length >= 3');
    await new Promise((r) => setTimeout(r, 100));
    expect(answers).toHaveLength(3);
    expect(answers[0]).toMatchObject({ id: 'n1', error: { code: -32600, message: expect.stringContaining('deeper than 64'), data: { limit: 'maxDepth', bound: 64 } } });
    expect(answers[1]).toMatchObject({ id: 'w1', error: { code: -32600, message: expect.stringContaining('maxWidth'), data: { limit: 'maxWidth' } } });
    expect(answers[2]).toMatchObject({ id: null, error: { code: -32600 } });
    expect((await caller.request('pi', 'ping')) as object).toEqual({});
  });

  it('ignores nested caller statuses, agent statuses, catalogs and responses with a warning', async () => {
    const { ctx, server, caller } = await setup();
    const warnings: string[] = [];
    server.on('warn', (m: string) => warnings.push(`server: ${m}`));
    caller.on('warn', (m: string) => warnings.push(`caller: ${m}`));
    const c = await raw(ctx.broker.url);
    const nested = `{"state":"lost","caller":"nr","x":${deep(20_000)}}`;
    await c.publishAsync(t.callerStatus('nr'), nested, { qos: 1 });
    await c.publishAsync(t.agentStatus('pi'), `{"state":"lost","agent":"pi","instance":"${server.instance}","x":${deep(20_000)}}`, { qos: 1 });
    await c.publishAsync(t.agentCatalog('pi'), `{"agent":{"id":"pi"},"rev":1,"tools":${deep(20_000)}}`, { qos: 1 });
    await c.publishAsync(t.res('pi', 'nr'), `{"jsonrpc":"2.0","id":"x","result":${deep(20_000)}}`, { qos: 1 });
    await until(() => warnings.filter((w) => w.includes('over the limits')).length >= 3 && warnings.some((w) => w.startsWith('server:')), 'four warnings');
    expect(warnings.some((w) => w.startsWith('server: ignored a malformed caller status'))).toBe(true);
    expect(warnings.filter((w) => w.includes('over the limits')).length).toBeGreaterThanOrEqual(3);
    expect(caller.agent('pi')?.ready).toBe(true);
    expect((await caller.request('pi', 'ping')) as object).toEqual({});
  });

  it('refuses nested arguments on the caller side without sending them', async () => {
    const { caller, state } = await setup();
    let v: unknown = {};
    for (let i = 0; i < 100_000; i++) v = { v };
    const r = await caller.call('pi', 'slow', { v });
    expect(toolErrorOf(r)).toMatchObject({ code: 'INVALID_ARGUMENTS', details: { limit: 'maxDepth' } });
    expect(state.runs).toBe(0);
  });

  it('checks depth and width without recursion', () => {
    let v: unknown = 1;
    for (let i = 0; i < 1_000_000; i++) v = [v];
    expect(checkJsonLimits(v)).toMatchObject({ limit: 'maxDepth', bound: 64 });
    expect(checkJsonLimits({ a: Object.fromEntries(Array.from({ length: 10_001 }, (_, i) => [`k${i}`, i])) })).toMatchObject({ limit: 'maxWidth' });
    expect(checkJsonLimits(JSON.parse(deep(64)))).toBeUndefined();
    expect(checkJsonLimits(JSON.parse(deep(65)))).toMatchObject({ limit: 'maxDepth' });
  });
});

describe('call store', () => {
  it('counts stored responses in UTF-8 bytes, not UTF-16 code units', () => {
    const store = new CallStore({ ttlMs: 60_000, maxBytes: 3000 });
    const call = store.begin('c', 1, 'h');
    store.finish(call, '€'.repeat(100)); // 100 code units, 300 bytes
    expect(store.storedBytes).toBe(300 + ENTRY_OVERHEAD_BYTES);
    for (let i = 2; i < 6; i++) store.finish(store.begin('c', i, 'h'), '€'.repeat(100));
    expect(store.storedBytes).toBeLessThanOrEqual(3000);
    expect(store.get('c\u00001')).toBeUndefined(); // the oldest went first
  });

  it('only ever raises its keep time', () => {
    const store = new CallStore({ ttlMs: 1000 });
    store.keepAtLeast(5000);
    store.keepAtLeast(10);
    expect(store.ttlMs).toBe(5000);
  });
});
