// The bridge's HTTP front under session churn and cut calls (mcp/sessions.ts), with real parts:
// an aedes broker in process, a real agent runtime whose tools record what ran on the device, the
// real McpBridge and serveHttp front, and a plain node:http client sending MCP's messages by hand
// (as Home Assistant's per-call sessions do: initialize, a call, and maybe no DELETE).
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, RpcCaller, type ToolDefinition } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { McpBridge } from '../mcp/bridge';
import { serveHttp, type HttpFront, type HttpOptions } from '../mcp/http';
import { until } from './support/until';

const AGENT = 'pi-sess';
const quiet = { info() {}, warn() {}, error() {} };

/** What the slow tool did on the device, per tag. */
const device = new Map<string, { started: number; abortedAt?: number; done: boolean }>();
const tools: ToolDefinition[] = [
  defineTool({
    name: 'echo', description: 'Echoes its text', risk: 'low', readOnly: true,
    input: z.strictObject({ text: z.string() }),
    execute: (a) => ({ echoed: a.text }),
  }),
  defineTool({
    name: 'slow_switch', description: 'Switches a relay after `ms` (the side effect happens at the end)', risk: 'low', timeoutMs: 60_000,
    input: z.strictObject({ ms: z.number().int(), tag: z.string() }),
    execute: (a, ctx) => new Promise((resolve) => {
      const rec: { started: number; abortedAt?: number; done: boolean } = { started: Date.now(), done: false };
      device.set(a.tag, rec);
      const t = setTimeout(() => { rec.done = true; resolve({ switched: a.tag }); }, a.ms);
      ctx.signal.addEventListener('abort', () => { clearTimeout(t); rec.abortedAt = Date.now(); resolve({ aborted: true }); });
    }),
  }),
];

let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
let bridge: McpBridge;
let front: HttpFront | undefined;

beforeAll(async () => {
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-sessions-'));
  agent = await startAgent(validateConfig({ version: 1, agent: { id: AGENT, name: 'Sessions', kind: 'pi' }, broker: { url: broker.url } }, 'test.yaml', dir), quiet, tools);
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'mcp-sessions-test' });
  await caller.start();
  await until(() => caller.agent(AGENT)?.ready, 'the agent ready');
  bridge = new McpBridge({ caller });
});
afterEach(async () => {
  await front?.close();
  front = undefined;
});
afterAll(async () => {
  await bridge?.close();
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
});

async function start(opts: Partial<HttpOptions> = {}): Promise<HttpFront> {
  front = await serveHttp(bridge, { host: '127.0.0.1', port: 0, ...opts });
  return front;
}

interface Answer { status: number; sid?: string; message?: { result?: Record<string, unknown>; error?: { message: string } } }

/**
 * One HTTP exchange with the front; an SSE answer is reduced to its first JSON-RPC message.
 * `cut` destroys the request that many ms after it was sent (a client's timeout).
 */
function send(f: HttpFront, method: string, sid: string | undefined, body?: unknown, cut?: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request(f.url, { method, agent: false, headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream',
      ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-06-18' } : {}),
    } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { text += d; });
      res.on('end', () => {
        const data = /^data: (.*)$/m.exec(text);
        let message;
        try { message = JSON.parse(data ? data[1] : text || 'null'); } catch { message = undefined; }
        resolve({ status: res.statusCode!, sid: res.headers['mcp-session-id'] as string | undefined, message });
      });
      res.on('error', reject);
    });
    req.on('error', reject);
    if (cut !== undefined) setTimeout(() => req.destroy(new Error('cut by the client')), cut);
    req.end(body === undefined ? undefined : JSON.stringify(body));
  });
}

const init = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'vitest-raw', version: '1' } } };

/** A new session (initialize + initialized); its id. */
async function open(f: HttpFront): Promise<string> {
  const a = await send(f, 'POST', undefined, init);
  expect(a.status).toBe(200);
  expect((await send(f, 'POST', a.sid, { jsonrpc: '2.0', method: 'notifications/initialized' })).status).toBe(202);
  return a.sid!;
}

const list = (f: HttpFront, sid: string) => send(f, 'POST', sid, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
const call = (f: HttpFront, sid: string, name: string, args: Record<string, unknown>, cut?: number) =>
  send(f, 'POST', sid, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: `${AGENT}__${name}`, arguments: args } }, cut);

describe('MCP HTTP sessions: a full table evicts idle sessions, never busy ones', () => {
  it('at the cap a new session closes the least recently used idle one; the others keep working', async () => {
    const f = await start({ maxSessions: 3 });
    const sessionsBefore = bridge.sessionCount;
    const a = await open(f);
    const b = await open(f);
    const c = await open(f);
    expect((await list(f, a)).status).toBe(200); // a is now more recent than b
    const d = await open(f);
    expect(f.sessions()).toBe(3);
    expect((await list(f, b)).status).toBe(404); // b was evicted
    for (const s of [a, c, d]) expect((await list(f, s)).status).toBe(200);
    // the evicted session's server is gone from the bridge too
    expect(bridge.sessionCount - sessionsBefore).toBe(3);
  });

  it('a client that opens a session per call and never sends DELETE is served past the cap (Home Assistant)', async () => {
    const f = await start({ maxSessions: 4 });
    const base = bridge.sessionCount;
    for (let i = 0; i < 20; i++) {
      const sid = await open(f);
      const r = await call(f, sid, 'echo', { text: `call ${i}` });
      expect(r.status).toBe(200);
      expect(r.message?.result?.structuredContent).toEqual({ echoed: `call ${i}` });
    }
    expect(f.sessions()).toBe(4);
    expect(bridge.sessionCount - base).toBe(4);
  });

  it('a session with a call in flight is never evicted; 503 only when every session is busy', async () => {
    const f = await start({ maxSessions: 2 });
    await until(async () => JSON.stringify((await list(f, await open(f))).message).includes('slow_switch'), 'the tools listed', 5000);
    const a = await open(f);
    const b = await open(f);
    const ca = call(f, a, 'slow_switch', { ms: 1500, tag: 'busy-a' });
    const cb = call(f, b, 'slow_switch', { ms: 1500, tag: 'busy-b' });
    await until(() => device.has('busy-a') && device.has('busy-b'), 'both calls running on the device', 5000);
    const refused = await send(f, 'POST', undefined, init);
    expect(refused.status).toBe(503);
    expect(refused.message?.error?.message).toMatch(/too many busy sessions \(2/);
    // both calls complete: nothing was cancelled to make room
    expect((await ca).message?.result?.structuredContent).toEqual({ switched: 'busy-a' });
    expect((await cb).message?.result?.structuredContent).toEqual({ switched: 'busy-b' });
    expect(device.get('busy-a')?.abortedAt).toBeUndefined();
    // idle again: a newcomer is served by evicting one of them
    expect(await open(f)).toBeTruthy();
    expect(f.sessions()).toBe(2);
  });

  it('an open GET stream keeps its session from eviction', async () => {
    const f = await start({ maxSessions: 2 });
    const a = await open(f);
    const b = await open(f);
    const stream = http.request(f.url, { method: 'GET', agent: false, headers: { accept: 'text/event-stream', 'mcp-session-id': a, 'mcp-protocol-version': '2025-06-18' } });
    const got = new Promise<number>((resolve) => stream.on('response', (res) => resolve(res.statusCode!)));
    stream.on('error', () => {});
    stream.end();
    expect(await got).toBe(200);
    const c = await open(f); // evicts b, the idle one, although a is older
    expect((await list(f, b)).status).toBe(404);
    expect((await list(f, a)).status).toBe(200);
    expect((await list(f, c)).status).toBe(200);
    stream.destroy();
  });

  it('DELETE frees the slot at once, in the front and in the bridge', async () => {
    const f = await start({ maxSessions: 2 });
    const base = bridge.sessionCount;
    const a = await open(f);
    await open(f);
    expect(f.sessions()).toBe(2);
    expect((await send(f, 'DELETE', a)).status).toBe(200);
    expect(f.sessions()).toBe(1);
    expect(bridge.sessionCount).toBe(base + 1);
    expect((await list(f, a)).status).toBe(404);
  });

  it('a session with no request after initialize is closed after the short idle time; one that made requests stays', async () => {
    const f = await start({ freshSessionIdleMs: 200, sessionIdleMs: 60_000 });
    const fresh = await open(f);
    const used = await open(f);
    expect((await list(f, used)).status).toBe(200);
    await until(() => f.sessions() === 1, 'the fresh session closed', 5000);
    expect((await list(f, fresh)).status).toBe(404);
    expect((await list(f, used)).status).toBe(200);
  });
});

describe('MCP HTTP sessions: a call whose response the client closes is cancelled on the device', () => {
  it('the tool sees the abort within 1 s of the cut and does not do its side effect; the session serves the next call', async () => {
    const f = await start();
    const sid = await open(f);
    await until(async () => JSON.stringify((await list(f, sid)).message).includes('slow_switch'), 'the tools listed', 5000);
    const cutAfter = 500;
    const sent = Date.now();
    await expect(call(f, sid, 'slow_switch', { ms: 3000, tag: 'cut' }, cutAfter)).rejects.toThrow(/cut by the client/);
    await until(() => device.get('cut')?.abortedAt, 'the tool saw the abort', 3000);
    const rec = device.get('cut')!;
    expect(rec.abortedAt! - (sent + cutAfter)).toBeLessThan(1000);
    // past the tool's own end: the relay never switched
    await new Promise((r) => setTimeout(r, 3000 - (Date.now() - rec.started) + 300));
    expect(rec.done).toBe(false);
    const next = await call(f, sid, 'echo', { text: 'after the cut' });
    expect(next.message?.result?.structuredContent).toEqual({ echoed: 'after the cut' });
  });

  it('only the cut POST\'s call is cancelled: another call of the same session runs to its end', async () => {
    const f = await start();
    const sid = await open(f);
    const kept = send(f, 'POST', sid, { jsonrpc: '2.0', id: 7, method: 'tools/call', params: { name: `${AGENT}__slow_switch`, arguments: { ms: 1200, tag: 'kept' } } });
    const cut = send(f, 'POST', sid, { jsonrpc: '2.0', id: 8, method: 'tools/call', params: { name: `${AGENT}__slow_switch`, arguments: { ms: 1200, tag: 'dropped' } } }, 400);
    await expect(cut).rejects.toThrow(/cut by the client/);
    const r = await kept;
    expect(r.message?.result?.structuredContent).toEqual({ switched: 'kept' });
    expect(device.get('kept')?.abortedAt).toBeUndefined();
    expect(device.get('dropped')?.abortedAt).toBeDefined();
    expect(device.get('dropped')?.done).toBe(false);
  });
});
