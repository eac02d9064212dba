#!/usr/bin/env node
// ToolMesh benchmark: prints figures, asserts nothing. Everything on 127.0.0.1.
//   1. round trip of a no-op tool call (RpcCaller.call → broker → a toolmesh-agent process), the path
//      remote-tool and llm-agent use: p50/p99 latency, and pipelined throughput with one agent;
//   2. the same over plain MQTT.js request/response with default socket options (Nagle on) and
//      an aedes broker with default sockets: the baseline;
//   3. agent idle RSS beside its floor (a bare Node process that loads mqtt + zod + yaml + dockerode);
//   4. time from spawning toolmesh-agent to its retained `online` status.
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { RpcCaller } = require(join(root, 'packages/agent/dist/protocol/index.js'));
const { startBroker } = require(join(root, 'packages/agent/dist/protocol/broker.js'));
const mqtt = require('mqtt');
const { Aedes } = require('aedes');

const N_SEQ = Number(process.env.BENCH_SEQ ?? 3000);
const N_PIPE = Number(process.env.BENCH_PIPE ?? 20000);
const WINDOW = Number(process.env.BENCH_WINDOW ?? 256);

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
const ms = (ns) => (Number(ns) / 1e6).toFixed(3);
function summary(name, lat, pipeMs, nPipe) {
  lat.sort((a, b) => a - b);
  return { name, p50ms: ms(pct(lat, 50)), p99ms: ms(pct(lat, 99)), callsPerSec: Math.round(nPipe / (pipeMs / 1000)) };
}
async function sequential(n, once) {
  for (let i = 0; i < Math.min(200, n); i++) await once(); // warm-up
  const lat = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    await once();
    lat.push(Number(process.hrtime.bigint() - t));
  }
  return lat;
}
async function pipelined(n, window, once) {
  let started = 0;
  const t = performance.now();
  await Promise.all(Array.from({ length: window }, async () => {
    while (started < n) { started++; await once(); }
  }));
  return performance.now() - t;
}

function spawnAgent(url, dir, id) {
  const cfg = join(dir, `${id}.yaml`);
  writeFileSync(cfg, `version: 1\nagent: { id: ${id}, kind: pi }\nbroker: { url: "${url}" }\npacks:\n  docker: { socketPath: ${join(dir, 'no-docker.sock')} }\n  system: {}\n  diag: {}\n`);
  // run as users run the bin: through its shebang (which sets the agent's V8 flags)
  return spawn(join(root, 'packages/agent/dist/agent/cli.js'), ['--config', cfg], { stdio: ['ignore', 'ignore', 'ignore'] });
}
async function stopChild(child) {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

// The agent is the real toolmesh-agent process (diag_echo is its no-op tool); broker and caller
// share this process, as the embedded broker and the registry share Node-RED's.
async function toolmeshRoundTrip(dir) {
  const broker = await startBroker({ port: 0 });
  const agent = spawnAgent(broker.url, dir, 'benchrt');
  const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'bench-caller' });
  await caller.start();
  while (!caller.agent('benchrt')?.ready) await sleep(5);
  const once = async () => {
    const r = await caller.call('benchrt', 'diag_echo', {});
    if (r.isError) throw new Error(JSON.stringify(r));
  };
  const lat = await sequential(N_SEQ, once);
  const pipeMs = await pipelined(N_PIPE, WINDOW, once);
  await caller.stop(); await stopChild(agent); await broker.close();
  return summary('toolmesh: RpcCaller → aedes → toolmesh-agent (diag_echo)', lat, pipeMs, N_PIPE);
}

// Same shape with plain MQTT.js on both ends and default sockets on client and broker.
async function plainBaseline() {
  const aedes = await Aedes.createBroker();
  const srv = net.createServer((s) => aedes.handle(s));
  await new Promise((r) => srv.listen(0, '127.0.0.1', r));
  const url = `mqtt://127.0.0.1:${srv.address().port}`;
  const responder = fork(join(root, 'bench/plain-responder.mjs'), [url], { stdio: ['ignore', 'ignore', 'ignore', 'ipc'] });
  await new Promise((r) => responder.once('message', r));
  const requester = await new Promise((r) => { const c = mqtt.connect(url); c.on('connect', () => r(c)); });
  await requester.subscribeAsync('bench/res', { qos: 1 });
  const waiting = new Map();
  requester.on('message', (_t, p) => { const m = JSON.parse(p.toString()); waiting.get(m.id)?.(); waiting.delete(m.id); });
  let seq = 0;
  const once = () => new Promise((resolve) => {
    const id = ++seq;
    waiting.set(id, resolve);
    requester.publish('bench/req', JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'noop', arguments: {} } }), { qos: 1 });
  });
  // Nagle makes each sequential round trip ~tens of ms: fewer samples keep the run short
  const lat = await sequential(Math.min(N_SEQ, 200), once);
  const pipeMs = await pipelined(N_PIPE, WINDOW, once);
  await requester.endAsync(); await stopChild(responder);
  await new Promise((r) => srv.close(() => aedes.close(r)));
  return summary('baseline: plain MQTT.js req/res, default sockets', lat, pipeMs, N_PIPE);
}

const rssMb = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};
const sleep = (t) => new Promise((r) => setTimeout(r, t));

async function agentFigures(dir) {
  const broker = await startBroker({ port: 0 });
  const watcher = await new Promise((r) => { const c = mqtt.connect(broker.url); c.on('connect', () => r(c)); });
  await watcher.subscribeAsync('toolmesh/v1/agents/benchpi/status', { qos: 1 });
  const onlineTimes = [];
  let rss;
  for (let run = 0; run < 5; run++) {
    const online = new Promise((resolve) => {
      const h = (_t, p) => { if (p.length && JSON.parse(p.toString()).state === 'online') { watcher.off('message', h); resolve(performance.now()); } };
      watcher.on('message', h);
    });
    const t0 = performance.now();
    const child = spawnAgent(broker.url, dir, 'benchpi');
    onlineTimes.push((await online) - t0);
    if (run === 0) { await sleep(3000); rss = rssMb(child.pid); }
    await stopChild(child);
  }
  const floorChild = spawn(process.execPath, ['-e', "require('mqtt');require('zod');require('yaml');require('dockerode');setTimeout(()=>{},60000)"], { cwd: root, stdio: 'ignore' });
  await sleep(3000);
  const floor = rssMb(floorChild.pid);
  await stopChild(floorChild);
  await watcher.endAsync(); await broker.close();
  onlineTimes.sort((a, b) => a - b);
  return { rss, floor, onlineMedianMs: onlineTimes[2], onlineMaxMs: onlineTimes[4] };
}

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-bench-'));
const rows = [await toolmeshRoundTrip(dir), await plainBaseline()];
console.log(`\nround trip of a no-op tool call (sequential ${N_SEQ} calls; pipelined ${N_PIPE} calls, window ${WINDOW})`);
console.table(rows);
const a = await agentFigures(dir);
rmSync(dir, { recursive: true, force: true });
console.log('agent (toolmesh-agent with docker [no engine], system and diag packs)');
console.table([{
  'idle RSS MB': a.rss.toFixed(1), 'floor RSS MB (mqtt+zod+yaml+dockerode)': a.floor.toFixed(1), 'over floor MB': (a.rss - a.floor).toFixed(1),
  'start→online median ms': a.onlineMedianMs.toFixed(0), 'start→online max ms (5 runs)': a.onlineMaxMs.toFixed(0),
}]);
console.log('targets: p50 ≤ 1 ms, p99 ≤ 5 ms, ≥ 5000 calls/s, idle RSS within 15 MB of the floor, online ≤ 1000 ms');
