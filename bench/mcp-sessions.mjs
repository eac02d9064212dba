#!/usr/bin/env node
// Session churn at the bridge's HTTP front (`toolmesh mcp --http`), as Home Assistant's MCP
// client makes it: a new MCP session per tool call (the Python SDK's streamablehttp_client per
// call, 10 s timeout). Prints figures, asserts nothing. Everything on 127.0.0.1: an embedded
// aedes broker and a real agent runtime (startAgent from packages/agent/dist/agent) in this process, the bridge
// (McpBridge + serveHttp from dist/mcp, default session settings) in a forked child process so
// its RSS is its own, and a plain node:http client with a fresh connection pool per session.
//   1. BENCH_CYCLES cycles of initialize → notifications/initialized → tools/list → tools/call →
//      DELETE: the bridge's open sessions and RSS after them, cycle time p50/p95, non-2xx answers;
//   2. one call cut by a 10 s client timeout (BENCH_CUT_MS) against a tool that runs 30 s: when
//      the tool on the device saw the cancel, and whether it finished its side effect;
//   3. BENCH_CYCLES cycles without DELETE (the client drops its connections and forgets the session).
//
//   node scripts/build.mjs && node bench/mcp-sessions.mjs
//   BENCH_CYCLES=1000 BENCH_CUT_MS=10000 BENCH_SLOW_MS=30000   (defaults)
import { fork } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const sleep = (t) => new Promise((r) => setTimeout(r, t));

if (process.argv[2] === '--bridge') {
  // the bridge process: a caller on the broker, one McpBridge, its HTTP front on a free port
  const { RpcCaller } = require(join(root, 'packages/agent/dist/protocol/index.js'));
  const { McpBridge } = require(join(root, 'dist/mcp/bridge.js'));
  const { serveHttp } = require(join(root, 'dist/mcp/http.js'));
  const caller = new RpcCaller({ connection: { url: process.argv[3] }, callerId: 'bench-sessions' });
  await caller.start();
  const bridge = new McpBridge({ caller });
  const front = await serveHttp(bridge, { host: '127.0.0.1', port: 0 });
  process.on('message', async (m) => {
    if (m === 'stats') {
      global.gc?.();
      await sleep(50);
      global.gc?.();
      process.send({ sessions: front.sessions(), bridgeSessions: bridge.sessionCount, rssMb: process.memoryUsage().rss / 2 ** 20, heapMb: process.memoryUsage().heapUsed / 2 ** 20 });
    } else if (m === 'stop') {
      await front.close();
      await bridge.close();
      await caller.stop();
      process.exit(0);
    }
  });
  process.send({ port: front.port });
} else {
  await main();
}

async function main() {
  const { startBroker } = require(join(root, 'packages/agent/dist/protocol/broker.js'));
  const { defineTool } = require(join(root, 'packages/agent/dist/protocol/index.js'));
  const { startAgent } = require(join(root, 'packages/agent/dist/agent/runtime.js'));
  const { validateConfig } = require(join(root, 'packages/agent/dist/agent/config.js'));
  const { z } = require('zod');

  const CYCLES = Number(process.env.BENCH_CYCLES ?? 1000);
  const CUT_MS = Number(process.env.BENCH_CUT_MS ?? 10_000);
  const SLOW_MS = Number(process.env.BENCH_SLOW_MS ?? 30_000);
  const AGENT = 'benchsess';
  const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

  // what ran on the device
  const slow = { started: 0, startedAt: 0, abortedAt: undefined, completed: 0 };
  let cutAt;
  const tools = [
    defineTool({
      name: 'echo', description: 'Echoes its text', risk: 'low', readOnly: true,
      input: z.strictObject({ text: z.string() }),
      execute: (a) => ({ echoed: a.text }),
    }),
    defineTool({
      name: 'slow_switch', description: `Switches after a delay (the side effect happens at the end)`, risk: 'low', timeoutMs: SLOW_MS * 2,
      input: z.strictObject({ ms: z.number().int() }),
      execute: (a, ctx) => new Promise((resolve) => {
        slow.startedAt = Date.now();
        slow.started++;
        const t = setTimeout(() => { slow.completed++; resolve({ switched: true }); }, a.ms);
        ctx.signal.addEventListener('abort', () => { clearTimeout(t); slow.abortedAt = Date.now(); resolve({ aborted: true }); });
      }),
    }),
  ];

  const broker = await startBroker({ port: 0, host: '127.0.0.1' });
  const quiet = { info() {}, warn() {}, error() {} };
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-bench-sessions-'));
  const agent = await startAgent(validateConfig({ version: 1, agent: { id: AGENT, kind: 'pi' }, broker: { url: broker.url } }, 'bench.yaml', dir), quiet, tools);

  const child = fork(fileURLToPath(import.meta.url), ['--bridge', broker.url], { execArgv: ['--expose-gc'], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const replies = [];
  let waiting;
  child.on('message', (m) => { replies.push(m); waiting?.(); });
  const next = async () => {
    while (!replies.length) await new Promise((r) => { waiting = r; });
    return replies.shift();
  };
  const { port } = await next();
  const stats = async () => { child.send('stats'); return next(); };

  /** One HTTP exchange; the body of an SSE answer is reduced to its JSON-RPC message. */
  function exchange(agentPool, method, headers, body, opts = {}) {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, path: '/mcp', method, agent: agentPool, headers: {
        'content-type': 'application/json', accept: 'application/json, text/event-stream', ...headers,
      } }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { text += d; });
        res.on('end', () => {
          let message;
          const data = /^data: (.*)$/m.exec(text);
          try { message = JSON.parse(data ? data[1] : text || 'null'); } catch { message = undefined; }
          resolve({ status: res.statusCode, sid: res.headers['mcp-session-id'], message });
        });
        res.on('error', reject);
      });
      req.on('error', reject);
      if (opts.timeoutMs) req.setTimeout(opts.timeoutMs, () => { cutAt = Date.now(); req.destroy(new Error(`client timeout after ${opts.timeoutMs} ms`)); });
      req.end(body === undefined ? undefined : JSON.stringify(body));
    });
  }

  const init = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'bench-ha', version: '1.0' } } };
  const nonOk = new Map();
  const note = (what, status) => { const k = `${what} ${status}`; nonOk.set(k, (nonOk.get(k) ?? 0) + 1); };

  /** One client session as Home Assistant makes it; `del` ends it with DELETE, else it is dropped. */
  async function cycle(del, call = { name: `${AGENT}__echo`, arguments: { text: 'hi' } }, timeoutMs) {
    const pool = new http.Agent({ keepAlive: true });
    try {
      const a = await exchange(pool, 'POST', {}, init);
      if (a.status !== 200) return note('initialize', a.status);
      const h = { 'mcp-session-id': a.sid, 'mcp-protocol-version': '2025-06-18' };
      const n = await exchange(pool, 'POST', h, { jsonrpc: '2.0', method: 'notifications/initialized' });
      if (n.status !== 202) note('initialized', n.status);
      const l = await exchange(pool, 'POST', h, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
      if (l.status !== 200) note('tools/list', l.status);
      const c = await exchange(pool, 'POST', h, { jsonrpc: '2.0', id: 2, method: 'tools/call', params: call }, { timeoutMs });
      if (c.status !== 200 || c.message?.result?.isError) note('tools/call', c.status);
      if (del) {
        const d = await exchange(pool, 'DELETE', h);
        if (d.status !== 200) note('DELETE', d.status);
      }
    } finally {
      pool.destroy();
    }
  }

  // the agent's tools listed by the bridge
  for (let i = 0; ; i++) {
    const pool = new http.Agent();
    const a = await exchange(pool, 'POST', {}, init);
    const h = { 'mcp-session-id': a.sid, 'mcp-protocol-version': '2025-06-18' };
    const l = await exchange(pool, 'POST', h, { jsonrpc: '2.0', id: 1, method: 'tools/list' });
    await exchange(pool, 'DELETE', h);
    pool.destroy();
    if (l.message?.result?.tools?.some((t) => t.name === `${AGENT}__echo`)) break;
    if (i > 200) throw new Error('the bridge never listed the agent\'s tools');
    await sleep(25);
  }

  const before = await stats();
  console.log(`MCP session churn, ${CYCLES} cycles each, one session per call (Home Assistant's pattern)`);
  console.log(`  bridge at start: ${before.sessions} sessions, RSS ${before.rssMb.toFixed(1)} MB, heap ${before.heapMb.toFixed(1)} MB`);
  async function churn(del) {
    nonOk.clear();
    const times = [];
    for (let i = 0; i < CYCLES; i++) {
      const t0 = process.hrtime.bigint();
      try {
        await cycle(del);
      } catch (e) {
        note('error', e.message);
      }
      times.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    times.sort((a, b) => a - b);
    const s = await stats();
    const bad = [...nonOk].map(([k, v]) => `${k} ×${v}`).join(', ') || 'none';
    console.log(`  ${del ? 'with DELETE   ' : 'without DELETE'}: open sessions ${s.sessions} (bridge ${s.bridgeSessions}), RSS ${s.rssMb.toFixed(1)} MB, heap ${s.heapMb.toFixed(1)} MB; cycle p50 ${pct(times, 50).toFixed(2)} ms, p95 ${pct(times, 95).toFixed(2)} ms; non-2xx: ${bad}`);
  }
  await churn(true);

  // 3. a call cut by the client's timeout, the session dropped (no DELETE, no MCP cancel)
  nonOk.clear();
  const t0 = Date.now();
  let outcome = 'answered';
  try {
    await cycle(false, { name: `${AGENT}__slow_switch`, arguments: { ms: SLOW_MS } }, CUT_MS);
  } catch (e) {
    outcome = e.message;
  }
  await sleep(3000);
  const bad = [...nonOk].map(([k, v]) => `${k} ×${v}`).join(', ');
  console.log(`  a ${SLOW_MS / 1000} s tool cut by a ${CUT_MS / 1000} s client timeout: the client got "${outcome}"${bad ? ` (${bad})` : ''}; on the device: started ${slow.started}, `
    + (slow.abortedAt === undefined ? `no cancel seen within ${((Date.now() - t0) / 1000).toFixed(1)} s` : `cancel seen ${slow.abortedAt - cutAt} ms after the cut (the tool ran ${slow.abortedAt - slow.startedAt} ms)`)
    + `, side effect done ${slow.completed}`);
  if (slow.abortedAt === undefined && !slow.completed) {
    // wait for the tool's end, to tell whether it ran to completion
    const until = t0 + SLOW_MS + 2000;
    while (Date.now() < until && !slow.completed && slow.abortedAt === undefined) await sleep(100);
    console.log(`    … after ${((Date.now() - t0) / 1000).toFixed(1)} s: side effect done ${slow.completed}${slow.abortedAt !== undefined ? `, cancel seen ${slow.abortedAt - cutAt} ms after the cut` : ''}`);
  }

  await churn(false);

  child.send('stop');
  await new Promise((r) => child.once('exit', r));
  await agent.stop();
  await broker.close();
}
