#!/usr/bin/env node
// What the MCP bridge (`toolmesh mcp`) adds to a tool call. Prints figures, asserts nothing.
// Everything on 127.0.0.1: an embedded aedes broker in this process, a real toolmesh-agent
// process with the diag pack, and `diag_echo` {text} called sequentially
//   (a) straight through the protocol caller (RpcCaller from packages/agent/dist/protocol), the baseline;
//   (b) through the MCP SDK Client over stdio against a `toolmesh mcp` process;
//   (c) through the MCP SDK Client over Streamable HTTP (bearer token) against a second
//       `toolmesh mcp --http` process.
//   (d) the same HTTP bridge through a plain node:http keep-alive client sending MCP's messages by
//       hand: (c) minus the SDK client's own cost, i.e. what the bridge adds over HTTP.
//   (e) as (d), with an OAuth access token instead of the static one (the bridge runs with both;
//       the token is seeded in its state file as a signed-in client's, so (e) - (d) is what
//       checking an OAuth token and carrying the client's identity cost per call).
// The paths run interleaved in rounds (a b c d, b c d a, ...) after a warm-up, so drift of a
// shared machine lands on all of them alike. Then a short pipelined run (window BENCH_WINDOW) per
// path gives the calls/s a client with parallel calls sees. Goal: (b), (c) and (d) ≤ a + 0.5 ms at p50.
//
//   node scripts/build.mjs && node bench/mcp-overhead.mjs
//   BENCH_SEQ=2000 BENCH_ROUNDS=10 BENCH_WARMUP=300 BENCH_PIPE=4000 BENCH_WINDOW=32   (defaults)
//   BENCH_CPU_PROF=<dir>   write a V8 CPU profile of each bridge process there (--cpu-prof)
import { spawn } from 'node:child_process';
import http from 'node:http';
import { mkdtempSync, mkdirSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { RpcCaller } = require(join(root, 'packages/agent/dist/protocol/index.js'));
const { startBroker } = require(join(root, 'packages/agent/dist/protocol/broker.js'));
const { Client } = require('@modelcontextprotocol/sdk/client/index.js');
const { StdioClientTransport } = require('@modelcontextprotocol/sdk/client/stdio.js');
const { StreamableHTTPClientTransport } = require('@modelcontextprotocol/sdk/client/streamableHttp.js');

// The SDK's HTTP client makes each request with fetch on its transport's long-lived signal, and
// undici adds an abort listener per request that it frees only on GC: Node warns once per call
// past 1,500. Counted and told once at the end instead of thousands of lines (this process only).
let listenerWarnings = 0;
process.removeAllListeners('warning');
process.on('warning', (w) => {
  if (w.name === 'MaxListenersExceededWarning') listenerWarnings++;
  else console.warn(`${w.name}: ${w.message}`);
});
process.on('exit', () => {
  if (listenerWarnings) console.log(`(${listenerWarnings} MaxListenersExceededWarning from the SDK's HTTP client in this process: undici's per-fetch abort listeners, freed on GC)`);
});

const N_SEQ = Number(process.env.BENCH_SEQ ?? 2000);
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 10);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 300);
const N_PIPE = Number(process.env.BENCH_PIPE ?? 4000);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 32);
const PROF_DIR = process.env.BENCH_CPU_PROF ? resolve(process.env.BENCH_CPU_PROF) : undefined;
const GOAL_MS = 0.5;
const AGENT = 'benchmcp';
const TOKEN = 'bench-token-0123456789abcdef';
const ARGS = { text: 'hello mesh' };

const sleep = (t) => new Promise((r) => setTimeout(r, t));
const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const toMs = (ns) => ns / 1e6;
const fmt = (x) => x.toFixed(3);

function freePort() {
  return new Promise((res, rej) => {
    const s = require('node:net').createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
  });
}

function spawnAgent(url, dir) {
  const cfg = join(dir, `${AGENT}.yaml`);
  // the pipelined runs keep WINDOW calls of one caller in flight: above the default bounds (8 per caller, 32 in all)
  writeFileSync(cfg, `version: 1\nagent: { id: ${AGENT}, kind: pi }\nbroker: { url: "${url}" }\nlimits: { maxRunningPerCaller: ${Math.max(8, WINDOW * 2)}, maxRunning: ${Math.max(32, WINDOW * 4)} }\npacks:\n  diag: {}\n`);
  // as users run the bin: through its shebang (which sets the agent's V8 flags)
  return spawn(join(root, 'packages/agent/dist/agent/cli.js'), ['--config', cfg], { stdio: ['ignore', 'ignore', 'ignore'] });
}

function bridgeArgs(url, callerId, extra = [], prof) {
  const node = prof ? ['--cpu-prof', '--cpu-prof-dir', PROF_DIR, '--cpu-prof-name', `${prof}.cpuprofile`] : [];
  return [...node, join(root, 'dist/nodes/cli.js'), 'mcp', '--broker', url, '--caller-id', callerId, ...extra];
}

async function stopChild(child, signal = 'SIGTERM') {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill(signal);
  await exited;
}

function checked(r, path) {
  if (r.isError || r.structuredContent?.echo?.text !== ARGS.text) throw new Error(`${path}: unexpected result ${JSON.stringify(r)}`);
}

async function untilListed(client) {
  for (let i = 0; i < 400; i++) {
    const { tools } = await client.listTools();
    if (tools.some((t) => t.name === `${AGENT}__diag_echo`)) return;
    await sleep(25);
  }
  throw new Error('the bridge never listed diag_echo');
}

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-bench-mcp-'));
if (PROF_DIR) mkdirSync(PROF_DIR, { recursive: true });
const broker = await startBroker({ port: 0, host: '127.0.0.1' });
const agent = spawnAgent(broker.url, dir);
// a run that throws must not leave its agent running
process.on('exit', () => { if (agent.exitCode === null && agent.signalCode === null) agent.kill('SIGKILL'); });

// (a) the protocol caller, in this process
const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'bench-direct' });
await caller.start();
for (let i = 0; !caller.agent(AGENT)?.ready; i++) {
  if (i > 400) throw new Error(`agent ${AGENT} never became ready`);
  await sleep(25);
}

// (b) the bridge over stdio, started by the SDK client as VS Code starts it
const stdioTransport = new StdioClientTransport({ command: process.execPath, args: bridgeArgs(broker.url, 'bench-mcp-stdio', [], PROF_DIR && 'bridge-stdio'), stderr: 'ignore' });
const stdioClient = new Client({ name: 'bench-stdio', version: '1.0.0' });
await stdioClient.connect(stdioTransport);
await untilListed(stdioClient);

// (c) the bridge over Streamable HTTP, with a bearer token
const port = await freePort();
// a signed-in OAuth client and its access token, as the consent and token steps leave them
const OAUTH_TOKEN = `tm_at_bench${'x'.repeat(32)}`;
const oauthState = join(dir, 'oauth-state.json');
{
  const { OAuthStateFile, tokenKey } = require(join(root, 'dist/mcp/oauth/state.js'));
  new OAuthStateFile(oauthState).update((st) => {
    st.clients['bench-client'] = { info: { client_id: 'bench-client', redirect_uris: ['http://127.0.0.1:9/cb'] }, registeredAt: Date.now(), consentedAt: Date.now(), label: 'bench', lastUsedAt: Date.now() };
    st.tokens[tokenKey(OAUTH_TOKEN)] = { kind: 'access', clientId: 'bench-client', family: 'f', expiresAt: Date.now() + 86_400_000, resource: `http://127.0.0.1:${port}/mcp` };
  });
}
const httpBridge = spawn(process.execPath, bridgeArgs(broker.url, 'bench-mcp-http', ['--http', `127.0.0.1:${port}`, '--oauth', '--oauth-state', oauthState], PROF_DIR && 'bridge-http'),
  { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TOOLMESH_MCP_TOKEN: TOKEN } });
let httpErr = '';
httpBridge.stderr.on('data', (d) => { httpErr += d; });
for (let i = 0; !httpErr.includes('serving MCP (Streamable HTTP)'); i++) {
  if (i > 400 || httpBridge.exitCode !== null) throw new Error(`the HTTP bridge did not start: ${httpErr}`);
  await sleep(25);
}
const httpClient = new Client({ name: 'bench-http', version: '1.0.0' });
await httpClient.connect(new StreamableHTTPClientTransport(new URL(`http://127.0.0.1:${port}/mcp`), { requestInit: { headers: { authorization: `Bearer ${TOKEN}` } } }));
await untilListed(httpClient);

// (d) the same HTTP bridge through a plain node:http client on a keep-alive connection: MCP's
// wire messages by hand, so the client's own cost (the SDK's, undici's fetch) is not in the figure
const lean = new http.Agent({ keepAlive: true, maxSockets: WINDOW });
function post(body, sid, token = TOKEN) {
  return new Promise((resolvePost, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', agent: lean, headers: {
      'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`,
      ...(sid ? { 'mcp-session-id': sid, 'mcp-protocol-version': '2025-11-25' } : {}),
    } }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolvePost({ status: res.statusCode, sid: res.headers['mcp-session-id'], text: Buffer.concat(chunks).toString() }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}
/** The JSON-RPC response with `id` in an answer (JSON, or the data lines of an SSE stream). */
function answerOf(text, id) {
  const messages = text.startsWith('{') ? [text] : text.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6));
  return messages.map((m) => JSON.parse(m)).find((m) => m.id === id);
}
const init = await post({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-lean', version: '1.0.0' } } });
if (init.status !== 200 || !init.sid) throw new Error(`(d) initialize: HTTP ${init.status} ${init.text}`);
const leanSid = init.sid;
await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, leanSid);
let leanId = 0;
async function leanCall() {
  const id = ++leanId;
  const r = await post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: `${AGENT}__diag_echo`, arguments: ARGS } }, leanSid);
  const answer = answerOf(r.text, id);
  if (r.status !== 200 || !answer?.result) throw new Error(`(d) tools/call: HTTP ${r.status} ${r.text}`);
  return answer.result;
}

const oinit = await post({ jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'bench-oauth', version: '1.0.0' } } }, undefined, OAUTH_TOKEN);
if (oinit.status !== 200 || !oinit.sid) throw new Error(`(e) initialize: HTTP ${oinit.status} ${oinit.text}`);
await post({ jsonrpc: '2.0', method: 'notifications/initialized' }, oinit.sid, OAUTH_TOKEN);
async function oauthCall() {
  const id = ++leanId;
  const r = await post({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: `${AGENT}__diag_echo`, arguments: ARGS } }, oinit.sid, OAUTH_TOKEN);
  const answer = answerOf(r.text, id);
  if (r.status !== 200 || !answer?.result) throw new Error(`(e) tools/call: HTTP ${r.status} ${r.text}`);
  return answer.result;
}

const paths = [
  { key: 'a', name: '(a) RpcCaller → aedes → agent', once: async () => checked(await caller.call(AGENT, 'diag_echo', ARGS), 'a') },
  { key: 'b', name: '(b) SDK Client → stdio → toolmesh mcp → aedes → agent', once: async () => checked(await stdioClient.callTool({ name: `${AGENT}__diag_echo`, arguments: ARGS }), 'b') },
  { key: 'c', name: '(c) SDK Client → HTTP+bearer → toolmesh mcp → aedes → agent', once: async () => checked(await httpClient.callTool({ name: `${AGENT}__diag_echo`, arguments: ARGS }), 'c') },
  { key: 'd', name: '(d) node:http keep-alive → HTTP+bearer → toolmesh mcp → aedes → agent', once: async () => checked(await leanCall(), 'd') },
  { key: 'e', name: '(e) as (d) with an OAuth access token', once: async () => checked(await oauthCall(), 'e') },
];

for (const p of paths) for (let i = 0; i < WARMUP; i++) await p.once();

const lat = { a: [], b: [], c: [], d: [], e: [] };
const busyNs = { a: 0, b: 0, c: 0, d: 0, e: 0 };
const perRound = Math.ceil(N_SEQ / ROUNDS);
const roundP50 = { a: [], b: [], c: [], d: [], e: [] };
for (let round = 0; round < ROUNDS; round++) {
  // rotate the order each round, so no path always follows the same one
  const order = paths.map((_, i) => paths[(i + round) % paths.length]);
  for (const p of order) {
    const mine = [];
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < perRound; i++) {
      const t = process.hrtime.bigint();
      await p.once();
      mine.push(Number(process.hrtime.bigint() - t));
    }
    busyNs[p.key] += Number(process.hrtime.bigint() - t0);
    lat[p.key].push(...mine);
    mine.sort((x, y) => x - y);
    roundP50[p.key].push(toMs(pct(mine, 50)));
  }
}

async function pipelined(once) {
  let started = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: WINDOW }, async () => { while (started < N_PIPE) { started++; await once(); } }));
  return N_PIPE / ((performance.now() - t) / 1000);
}
const pipe = {};
for (const p of paths) pipe[p.key] = await pipelined(p.once);

const stats = {};
for (const p of paths) {
  const s = lat[p.key].sort((x, y) => x - y);
  stats[p.key] = { p50: toMs(pct(s, 50)), p99: toMs(pct(s, 99)), seqPerSec: s.length / (busyNs[p.key] / 1e9) };
}
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];

console.log(`\ndiag_echo round trip, sequential ${perRound * ROUNDS} calls per path in ${ROUNDS} interleaved rounds (warm-up ${WARMUP}); pipelined ${N_PIPE} calls, window ${WINDOW}`);
console.table(paths.map((p) => ({
  path: p.name,
  'p50 ms': fmt(stats[p.key].p50),
  'p99 ms': fmt(stats[p.key].p99),
  'seq calls/s': Math.round(stats[p.key].seqPerSec),
  [`pipelined calls/s (w=${WINDOW})`]: Math.round(pipe[p.key]),
  'p50 over (a) ms': p.key === 'a' ? '' : fmt(stats[p.key].p50 - stats.a.p50),
  'median of round p50s over (a) ms': p.key === 'a' ? '' : fmt(median(roundP50[p.key].map((v, i) => v - roundP50.a[i]))),
})));
for (const k of ['b', 'c', 'd', 'e']) {
  const over = stats[k].p50 - stats.a.p50;
  console.log(`(${k}) adds ${fmt(over)} ms at p50 over the direct call: ${over <= GOAL_MS ? 'meets' : 'MISSES'} the goal of ≤ ${GOAL_MS} ms`);
}

await stdioClient.close();
await httpClient.close();
lean.destroy();
await stopChild(httpBridge);
await caller.stop();
await stopChild(agent);
await broker.close();
rmSync(dir, { recursive: true, force: true });
if (PROF_DIR) console.log(`CPU profiles of the bridge processes in ${PROF_DIR}`);
