import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { z } from 'zod';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcServer } from './rpc-server';
import { RpcCaller } from './rpc-client';
import { defineTool, type ToolDefinition } from './tool';
import { toolErrorOf } from './errors';
import { topics } from './topics';
import { backoffDelay } from './mqtt';

let broker: EmbeddedBroker;
const runs: Record<string, number> = {};
const release: Array<() => void> = [];

const tools: ToolDefinition[] = [
  defineTool({
    name: 'echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }).strict(),
    execute: (a) => { runs.echo = (runs.echo ?? 0) + 1; return { echo: a.text }; },
  }),
  defineTool({
    name: 'slow', description: 'waits until released or aborted', risk: 'low', input: z.object({}),
    execute: (_a, ctx) => new Promise((resolve, reject) => {
      runs.slow = (runs.slow ?? 0) + 1;
      ctx.progress(1, 2, 'started');
      release.push(() => resolve({ done: true }));
      ctx.signal.addEventListener('abort', () => { runs.slowAborted = (runs.slowAborted ?? 0) + 1; reject(ctx.signal.reason); });
    }),
  }),
];

function rawClient(): Promise<mqtt.MqttClient> {
  return new Promise((resolve) => { const c = mqtt.connect(broker.url); c.on('connect', () => resolve(c)); });
}

/** Publishes a raw request and resolves with the next response on the res topic. */
async function rawCall(payload: string | Buffer, callerId = 'raw', agentId = 'pi'): Promise<any> {
  const t = topics();
  const c = await rawClient();
  await c.subscribeAsync(t.res(agentId, callerId), { qos: 1 });
  const got = new Promise<any>((resolve) => c.on('message', (_t, p) => resolve(JSON.parse(p.toString()))));
  await c.publishAsync(t.req(agentId, callerId), payload, { qos: 1 });
  const msg = await got;
  await c.endAsync();
  return msg;
}

describe('rpc over aedes', () => {
  let server: RpcServer;
  let caller: RpcCaller;
  beforeAll(async () => {
    broker = await startBroker({ port: 0 });
    server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools, info: { kind: 'pi' } });
    await server.start();
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'test' });
    await caller.start();
    await new Promise<void>((r) => { const chk = () => caller.agent('pi')?.ready ? r() : setTimeout(chk, 10); chk(); });
  });
  afterAll(async () => {
    await caller.stop();
    await server.stop();
    await broker.close();
  });

  it('sees the retained catalog with rev == status.catalogRev', () => {
    const a = caller.agent('pi')!;
    expect(a.ready).toBe(true);
    expect(a.catalog!.rev).toBe(a.status!.catalogRev);
    expect(caller.listTools().map((t) => t.tool.name)).toEqual(['echo', 'slow']);
    expect(a.catalog!.tools[0].inputSchema).toMatchObject({ type: 'object', properties: { text: { type: 'string' } } });
  });

  it('forgets a decommissioned agent (empty retained status and catalog) instead of listing it as unknown', async () => {
    const t = topics();
    const c = await rawClient();
    const status = { state: 'online', agent: 'old-pi', instance: 'x', catalogRev: 1, ts: Date.now() };
    await c.publishAsync(t.agentCatalog('old-pi'), JSON.stringify({ agent: { id: 'old-pi' }, rev: 1, tools: [] }), { qos: 1, retain: true });
    await c.publishAsync(t.agentStatus('old-pi'), JSON.stringify(status), { qos: 1, retain: true });
    await new Promise<void>((r) => { const chk = () => caller.agent('old-pi')?.ready ? r() : setTimeout(chk, 10); chk(); });
    const changed: string[] = [];
    const onAgents = (id: string) => changed.push(id);
    caller.on('agents', onAgents);
    await c.publishAsync(t.agentStatus('old-pi'), '', { qos: 1, retain: true });
    await c.publishAsync(t.agentCatalog('old-pi'), '', { qos: 1, retain: true });
    // one 'agents' event for the empty status (the empty catalog of an agent already forgotten
    // makes none; before issue 20 a second one came from the agents' republish for our `online`)
    await new Promise<void>((r) => { const chk = () => changed.includes('old-pi') ? r() : setTimeout(chk, 10); chk(); });
    await new Promise((r) => setTimeout(r, 100)); // the empty catalog too
    caller.off('agents', onAgents);
    await c.endAsync();
    expect(caller.agent('old-pi')).toBeUndefined();
    expect(caller.listAgents().map((a) => a.id)).not.toContain('old-pi');
    expect(caller.toolsByAgent().has('old-pi')).toBe(false);
    expect(caller.agent('pi')?.ready, 'the others stay').toBe(true);
  });

  it('calls a tool', async () => {
    const r = await caller.call('pi', 'echo', { text: 'hi' });
    expect(r.isError).toBe(false);
    expect(r.structuredContent).toEqual({ echo: 'hi' });
  });

  it('answers invalid arguments with INVALID_ARGUMENTS and runs nothing', async () => {
    const before = runs.echo ?? 0;
    const r = await caller.call('pi', 'echo', { text: 5 });
    expect(toolErrorOf(r)?.code).toBe('INVALID_ARGUMENTS');
    expect((toolErrorOf(r)?.details as any).issues[0].path).toEqual(['text']);
    expect(runs.echo ?? 0).toBe(before);
  });

  it('maps unknown tools to TOOL_NOT_FOUND (-32602)', async () => {
    expect(toolErrorOf(await caller.call('pi', 'nope'))?.code).toBe('TOOL_NOT_FOUND');
    const raw = await rawCall(JSON.stringify({ jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: 'nope', arguments: {} } }));
    expect(raw).toMatchObject({ id: 7, error: { code: -32602, data: { code: 'TOOL_NOT_FOUND' } } });
  });

  it('gives each malformed message its one wire form', async () => {
    expect(await rawCall('{not json')).toMatchObject({ id: null, error: { code: -32700 } });
    expect(await rawCall(JSON.stringify({ hello: 1, id: 3 }))).toMatchObject({ id: null, error: { code: -32600 } });
    expect(await rawCall(JSON.stringify({ jsonrpc: '2.0', id: 4, method: 'resources/list' }))).toMatchObject({ id: 4, error: { code: -32601 } });
    expect(await rawCall(JSON.stringify({ jsonrpc: '2.0', id: 5, method: 'ping' }))).toEqual({ jsonrpc: '2.0', id: 5, result: {} });
    const big = Buffer.alloc(4 * 1024 * 1024 + 1, 0x20);
    expect(await rawCall(big)).toMatchObject({ id: null, error: { code: -32600, message: expect.stringContaining('too large') } });
  });

  it('refuses an oversized request on the caller side without sending it', async () => {
    const before = runs.echo ?? 0;
    const r = await caller.call('pi', 'echo', { text: 'x'.repeat(4 * 1024 * 1024) });
    expect(toolErrorOf(r)).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { limit: 4 * 1024 * 1024 } });
    expect(runs.echo ?? 0).toBe(before);
  });

  it('refuses a call whose deadline passed beyond the skew, without running it', async () => {
    const before = runs.echo ?? 0;
    const res = await rawCall(JSON.stringify({ jsonrpc: '2.0', id: 'd1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' }, _meta: { deadline: Date.now() - 60_000 } } }));
    expect(res.result.structuredContent.error.code).toBe('TIMEOUT');
    expect(runs.echo ?? 0).toBe(before);
  });

  it('suppresses duplicates by (caller, id): stored result, and -32600 for different params', async () => {
    const before = runs.echo ?? 0;
    const req = JSON.stringify({ jsonrpc: '2.0', id: 'dup-1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'once' } } });
    const a = await rawCall(req, 'dupcaller');
    const b = await rawCall(req, 'dupcaller');
    expect(b).toEqual(a);
    expect(runs.echo - before).toBe(1);
    // same id from another caller is another call
    await rawCall(req, 'othercaller');
    expect(runs.echo - before).toBe(2);
    const changed = await rawCall(JSON.stringify({ jsonrpc: '2.0', id: 'dup-1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'twice' } } }), 'dupcaller');
    expect(changed).toMatchObject({ id: 'dup-1', error: { code: -32600 } });
  });

  it('reports progress and times out into TIMEOUT with the tool aborted', async () => {
    const progress: number[] = [];
    const aborted = runs.slowAborted ?? 0;
    const r = await caller.call('pi', 'slow', {}, { timeoutMs: 150, onProgress: (p) => progress.push(p.progress) });
    expect(toolErrorOf(r)?.code).toBe('TIMEOUT');
    expect(progress).toEqual([1]);
    await new Promise((res) => setTimeout(res, 50));
    expect(runs.slowAborted).toBe(aborted + 1);
  });

  it('cancels through an AbortSignal', async () => {
    const ac = new AbortController();
    const aborted = runs.slowAborted ?? 0;
    const p = caller.call('pi', 'slow', {}, { signal: ac.signal, onProgress: () => ac.abort('user') });
    expect(toolErrorOf(await p)?.code).toBe('CANCELLED');
    await new Promise((res) => setTimeout(res, 50));
    expect(runs.slowAborted).toBe(aborted + 1);
  });

  it('ends a call as TIMEOUT, not CANCELLED, when the caller cancels it because its budget ran out', async () => {
    const t = topics();
    const events: Array<{ code?: string; tool: string }> = [];
    const onCall = (e: { code?: string; tool: string }) => events.push(e);
    server.on('call', onCall);
    const started = runs.slow ?? 0;
    const aborted = runs.slowAborted ?? 0;
    const c = await rawClient();
    const answers: string[] = [];
    await c.subscribeAsync(t.res('pi', 'budget'), { qos: 1 });
    c.on('message', (_t, p) => answers.push(p.toString()));
    const call = (id: string) => JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'slow', arguments: {}, _meta: { timeoutMs: 60_000 } } });
    const cancel = (id: string, reason: string) => JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason } });
    for (const [id, reason] of [['b1', 'timeout'], ['b2', 'the user left']]) {
      await c.publishAsync(t.req('pi', 'budget'), call(id), { qos: 1 });
      await new Promise<void>((r) => { const chk = () => (runs.slow ?? 0) > started + (id === 'b1' ? 0 : 1) ? r() : setTimeout(chk, 5); chk(); });
      await c.publishAsync(t.req('pi', 'budget'), cancel(id, reason), { qos: 1 });
    }
    await new Promise<void>((r) => { const chk = () => events.filter((e) => e.tool === 'slow').length >= 2 ? r() : setTimeout(chk, 5); chk(); });
    server.off('call', onCall);
    await c.endAsync();
    expect(events.filter((e) => e.tool === 'slow').map((e) => e.code)).toEqual(['TIMEOUT', 'CANCELLED']);
    expect(runs.slowAborted).toBe(aborted + 2);
    expect(answers.filter((a) => !a.includes('notifications/progress')), 'a cancelled request gets no response').toEqual([]);
  });
});

describe('agent and caller lifecycles', () => {
  it('fails pending calls with AGENT_OFFLINE once the agent stayed lost for offlineGraceMs, and still accepts the late result', async () => {
    const b = await startBroker({ port: 0 });
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: b.url }, agentId: 'robot', tools });
    await server.start();
    const caller = new RpcCaller({ connection: { url: b.url }, callerId: 'c1', offlineGraceMs: 300 });
    await caller.start();
    await new Promise<void>((r) => { const chk = () => caller.agent('robot')?.ready ? r() : setTimeout(chk, 10); chk(); });
    const late: unknown[] = [];
    caller.on('late-result', (e) => late.push(e));
    const started = new Promise<void>((r) => { const n = release.length; const chk = () => release.length > n ? r() : setTimeout(chk, 5); chk(); });
    const p = caller.call('robot', 'slow', {}, { timeoutMs: 5000 });
    await started;
    // a lost from an older instance is ignored
    const raw = await rawClientFor(b.url);
    await raw.publishAsync('toolmesh/v1/agents/robot/status', JSON.stringify({ state: 'lost', agent: 'robot', instance: 'older' }), { qos: 1, retain: true });
    await new Promise((res) => setTimeout(res, 50));
    expect(caller.agent('robot')!.online).toBe(true);
    await raw.publishAsync('toolmesh/v1/agents/robot/status', JSON.stringify({ state: 'lost', agent: 'robot', instance: server.instance }), { qos: 1, retain: true });
    const lostAt = Date.now();
    let settledAt = 0;
    const r = await p.then((v) => { settledAt = Date.now(); return v; });
    expect(toolErrorOf(r)).toMatchObject({ code: 'AGENT_OFFLINE', details: { outcome: 'unknown' } });
    expect(settledAt - lostAt).toBeGreaterThanOrEqual(250);
    release.pop()!();
    await new Promise<void>((res) => { const chk = () => late.length ? res() : setTimeout(chk, 5); chk(); });
    expect(late[0]).toMatchObject({ agentId: 'robot', tool: 'slow', result: { structuredContent: { done: true } } });
    await raw.endAsync();
    await caller.stop();
    await server.stop();
    await b.close();
  });

  it('tells packs at once that a caller is lost, and cancels its running calls only after the grace period', async () => {
    const b = await startBroker({ port: 0 });
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: b.url }, agentId: 'robot', tools, callerGraceMs: 400 });
    await server.start();
    const caller = new RpcCaller({ connection: { url: b.url }, callerId: 'c2' });
    await caller.start();
    await new Promise<void>((r) => { const chk = () => caller.agent('robot')?.ready ? r() : setTimeout(chk, 10); chk(); });
    const aborted = runs.slowAborted ?? 0;
    const lost: string[] = [];
    server.on('caller-lost', (id: string) => lost.push(id));
    void caller.call('robot', 'slow', {}, { timeoutMs: 5000 });
    await new Promise((res) => setTimeout(res, 50));
    const raw = await rawClientFor(b.url);
    await raw.publishAsync('toolmesh/v1/callers/c2/status', JSON.stringify({ state: 'lost', caller: 'c2', instance: caller.instance }), { qos: 1, retain: true });
    const lostAt = Date.now();
    await new Promise<void>((res) => { const chk = () => lost.length ? res() : setTimeout(chk, 5); chk(); });
    expect(lost).toEqual(['c2']);
    expect(runs.slowAborted ?? 0).toBe(aborted);
    await new Promise<void>((res) => { const chk = () => (runs.slowAborted ?? 0) > aborted ? res() : setTimeout(chk, 5); chk(); });
    expect(Date.now() - lostAt).toBeGreaterThanOrEqual(350);
    expect(runs.slowAborted).toBe(aborted + 1);
    await raw.endAsync();
    await caller.stop();
    await server.stop();
    await b.close();
  });

  it('publishes offline on a clean stop and re-sends pending calls after a broker restart', async () => {
    let b = await startBroker({ port: 0 });
    const port = b.port;
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: b.url, backoffMinMs: 50, backoffMaxMs: 100 }, agentId: 'pi2', tools });
    await server.start();
    const caller = new RpcCaller({ connection: { url: b.url, backoffMinMs: 50, backoffMaxMs: 100 }, callerId: 'c3' });
    await caller.start();
    await new Promise<void>((r) => { const chk = () => caller.agent('pi2')?.ready ? r() : setTimeout(chk, 10); chk(); });
    const n = release.length;
    const before = runs.slow ?? 0;
    const p = caller.call('pi2', 'slow', {}, { timeoutMs: 10_000 });
    await new Promise<void>((res) => { const chk = () => release.length > n ? res() : setTimeout(chk, 5); chk(); });
    await b.close();
    b = await startBroker({ port });
    // both reconnect; the caller re-sends, the agent joins the running call instead of running it again
    await new Promise<void>((res) => { const chk = () => caller.connected && server.connected ? res() : setTimeout(chk, 10); chk(); });
    await new Promise((res) => setTimeout(res, 100));
    release.pop()!();
    const r = await p;
    expect(r.structuredContent).toEqual({ done: true });
    expect(runs.slow - before).toBe(1);
    const seen = new Promise<any>((res) => { caller.on('agents', (id) => { if (id === 'pi2' && caller.agent('pi2')?.status?.state === 'offline') res(caller.agent('pi2')); }); });
    await server.stop();
    expect((await seen).status.instance).toBe(server.instance);
    await caller.stop();
    await b.close();
  });
});

function rawClientFor(url: string): Promise<mqtt.MqttClient> {
  return new Promise((resolve) => { const c = mqtt.connect(url); c.on('connect', () => resolve(c)); });
}

describe('reconnect backoff', () => {
  it('grows exponentially with jitter in [window/2, window] on every attempt, the first one too', () => {
    expect(backoffDelay(0, 1000, 30_000, () => 0)).toBe(500);
    expect(backoffDelay(0, 1000, 30_000, () => 1)).toBe(1000);
    expect(new Set(Array.from({ length: 50 }, () => backoffDelay(0))).size).toBeGreaterThan(10);
    expect(backoffDelay(20, undefined, undefined, () => 1)).toBe(5000); // default cap: back within 5 s of the broker
    expect(backoffDelay(3, 1000, 30_000, () => 0)).toBe(4000);
    expect(backoffDelay(3, 1000, 30_000, () => 1)).toBe(8000);
    expect(backoffDelay(20, 1000, 30_000, () => 1)).toBe(30_000);
    expect(backoffDelay(20, 1000, 30_000, () => 0)).toBe(15_000);
    const seen = new Set(Array.from({ length: 50 }, () => backoffDelay(4)));
    expect(seen.size).toBeGreaterThan(10);
  });
});
