#!/usr/bin/env node
// ToolMesh discovery bench: prints figures, asserts nothing. Everything on 127.0.0.1.
// A caller that starts fresh (the tool-registry after a Node-RED restart) must see every agent
// ready from the retained status and catalog messages alone: agents republish only on their own
// (re)connect or when a caller that misses part of their state asks (notifications/republish),
// not when a caller comes online (before issue 20 they did, within 2 s: agents × 12 KB to every
// subscriber per caller start).
//
//   1. Debian's mosquitto (/usr/sbin/mosquitto, persistence off) on a free port;
//   2. DISCOVERY_AGENTS (1000) agents with DISCOVERY_TOOLS (20) zod tools each. Default
//      (DISCOVERY_MODE=retained): one plain MQTT.js client publishes each agent's retained catalog
//      and status, shaped exactly like a real agent's (the catalog is a real RpcServer's, with
//      the agent id swapped in; the status has the fields RpcServer publishes). Such agents do
//      not republish when the caller turns online, so what the caller gets is the retained set
//      alone. DISCOVERY_MODE=servers runs real RpcServer instances instead, spread over
//      DISCOVERY_HOSTS (4) child processes, one MQTT connection per agent. 1,000 of them used to
//      stop at ~250: mosquitto logs a line per connect to its stderr, which this bench piped and
//      never read, so at 64 KB mosquitto blocked writing its log and accepted no one. The log is
//      drained now; 1,000 start in about 8 s on the 2-core test machine;
//   3. DISCOVERY_RUNS (3) times, a fresh child process starts an RpcCaller (same callerId each
//      time, as a restarted Node-RED) and times start → listAgents() with every agent ready, and
//      its heap growth per agent (after gc), then counts the 'agents' events of the next 2.5 s
//      (a republish storm adds two per agent; none is expected);
//   4. the retained bytes on the broker: status and catalog per agent (a plain MQTT.js client).
//
// DISCOVERY_DISTINCT_TOOLS=1 (retained mode): each agent's first tool names the agent, so no two
// catalogs share their tools text and the caller's tool-list cache (protocol/catalog-reader.ts)
// never hits: every catalog is parsed and validated whole, the worst case.
// DISCOVERY_CPU_PROF=<dir>: each caller child runs with `node --cpu-prof` into <dir>.
//
//   npm run build && node bench/discovery.mjs
import { fork, spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const self = fileURLToPath(import.meta.url);
const root = join(dirname(self), '..');
const require = createRequire(import.meta.url);

const AGENTS = Number(process.env.DISCOVERY_AGENTS ?? 1000);
const TOOLS = Number(process.env.DISCOVERY_TOOLS ?? 20);
const HOSTS = Number(process.env.DISCOVERY_HOSTS ?? 4);
const RUNS = Number(process.env.DISCOVERY_RUNS ?? 3);
const DISTINCT = process.env.DISCOVERY_DISTINCT_TOOLS === '1';
const role = process.argv[2];

/** 20 tools shaped like the packs' ones: an object schema with a few typed, described fields. */
function tools(defineTool, z, n) {
  return Array.from({ length: n }, (_, i) => defineTool({
    name: `tool_${String(i).padStart(2, '0')}_read_something`,
    description: `Reads something number ${i} from this device and returns it as structured JSON; safe to call at any time.`,
    risk: i % 5 === 0 ? 'high' : 'low',
    timeoutMs: 10_000,
    input: z.object({
      path: z.string().max(256).describe('What to read'),
      limit: z.number().int().min(1).max(1000).default(100).describe('At most this many entries'),
      verbose: z.boolean().optional().describe('Include details'),
    }).strict(),
    execute: async (a) => ({ ok: true, path: a.path }),
  }));
}

async function host() {
  const { RpcServer, defineTool } = require(join(root, 'packages/agent/dist/protocol/index.js'));
  const { z } = require('zod');
  const [url, from, count] = [process.argv[3], Number(process.argv[4]), Number(process.argv[5])];
  const servers = [];
  for (let i = from; i < from + count; i++) {
    const s = new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId: `agent-${String(i).padStart(5, '0')}`, info: { name: `Agent ${i}`, kind: 'pi', host: `host-${i}`, version: '0.1.0' }, tools: tools(defineTool, z, TOOLS) });
    servers.push(s);
  }
  for (let i = 0; i < servers.length; i += 50) await Promise.all(servers.slice(i, i + 50).map((s) => s.start()));
  process.send({ ready: count, rssMB: Math.round(process.memoryUsage().rss / 1e6) });
  process.on('message', async (m) => {
    if (m === 'stop') {
      for (let i = 0; i < servers.length; i += 100) await Promise.all(servers.slice(i, i + 100).map((s) => s.stop()));
      process.exit(0);
    }
  });
}

async function caller() {
  const { RpcCaller } = require(join(root, 'packages/agent/dist/protocol/index.js'));
  const url = process.argv[3];
  const expected = Number(process.argv[4]);
  const gc = globalThis.gc;
  gc(); gc();
  const heap0 = process.memoryUsage().heapUsed;
  const t0 = performance.now();
  const c = new RpcCaller({ connection: { url }, callerId: 'bench-registry' });
  let events = 0;
  let firstAgent;
  const ready = new Promise((resolve) => {
    let count = 0;
    c.on('agents', (id) => {
      events++;
      firstAgent ??= performance.now() - t0;
      // cheap check per event: only the agent that changed
      const a = c.agent(id);
      if (a?.ready && !seen.has(id)) { seen.add(id); count++; }
      if (count >= expected) resolve(performance.now() - t0);
    });
  });
  const seen = new Set();
  await c.start();
  const connected = performance.now() - t0;
  const readyMs = await ready;
  // the whole list as a registry reads it
  const tl = performance.now();
  const list = c.listAgents();
  const listMs = performance.now() - tl;
  const nReady = list.filter((a) => a.ready).length;
  const nTools = c.listTools().length;
  const eventsAtReady = events;
  gc(); gc();
  const heap1 = process.memoryUsage().heapUsed;
  // agents that republished for every caller's `online` did so within 2 s: count what comes
  await new Promise((r) => setTimeout(r, 2500));
  process.send({ connected, firstAgent, readyMs, listMs, nReady, nTools, eventsAtReady, eventsAfterRepublish: events, heapPerAgentKB: (heap1 - heap0) / expected / 1024, rssMB: process.memoryUsage().rss / 1e6 });
  await c.stop();
  process.exit(0);
}

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => resolve(p)); });
  });
}
async function accepts(port) {
  return new Promise((resolve) => { const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); }); s.on('error', () => resolve(false)); });
}
const once = (child, pred) => new Promise((resolve, reject) => {
  child.on('message', (m) => { if (pred(m)) resolve(m); });
  child.once('exit', (code) => reject(new Error(`child exited ${code}`)));
});

async function retainedBytes(url) {
  const mqtt = require('mqtt');
  const c = mqtt.connect(url);
  const sizes = { status: [], catalog: [] };
  await new Promise((r) => c.on('connect', r));
  c.on('message', (topic, payload, packet) => {
    if (!packet.retain) return;
    if (topic.endsWith('/status') && topic.includes('/agents/')) sizes.status.push(payload.length + Buffer.byteLength(topic));
    if (topic.endsWith('/catalog')) sizes.catalog.push(payload.length + Buffer.byteLength(topic));
  });
  c.subscribe(['toolmesh/v1/agents/+/status', 'toolmesh/v1/agents/+/catalog'], { qos: 1 });
  await new Promise((r) => setTimeout(r, 1500));
  c.end(true);
  const avg = (a) => (a.length ? a.reduce((x, y) => x + y, 0) / a.length : 0);
  return { statuses: sizes.status.length, catalogs: sizes.catalog.length, statusBytes: Math.round(avg(sizes.status)), catalogBytes: Math.round(avg(sizes.catalog)) };
}

async function startHosts(url, t, hosts) {
  const per = Math.ceil(AGENTS / HOSTS);
  for (let h = 0; h < HOSTS; h++) {
    const from = h * per;
    const count = Math.min(per, AGENTS - from);
    if (count <= 0) break;
    const child = fork(self, ['host', url, String(from), String(count)], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    hosts.push({ child, ready: once(child, (m) => m?.ready) });
  }
  const hostInfo = await Promise.all(hosts.map((h) => h.ready));
  console.log(`agents online in ${((performance.now() - t) / 1000).toFixed(1)} s; agent host RSS ${hostInfo.map((h) => `${h.rssMB} MB`).join(', ')} (${(hostInfo.reduce((s, h) => s + h.rssMB, 0) / AGENTS * 1000).toFixed(0)} KB per agent)`);
}

/** Publishes every agent's retained catalog and status, shaped exactly like RpcServer's. */
async function publishRetained(url) {
  const { RpcServer, defineTool } = require(join(root, 'packages/agent/dist/protocol/index.js'));
  const { z } = require('zod');
  const mqtt = require('mqtt');
  const { randomBytes } = require('node:crypto');
  const template = new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId: 'template', info: { kind: 'pi', version: '0.1.0' }, tools: tools(defineTool, z, TOOLS) }).catalog;
  const c = mqtt.connect(url);
  await new Promise((r) => c.on('connect', r));
  const pub = (topic, payload) => new Promise((res, rej) => c.publish(topic, payload, { qos: 1, retain: true }, (e) => (e ? rej(e) : res())));
  const all = [];
  for (let i = 0; i < AGENTS; i++) {
    const id = `agent-${String(i).padStart(5, '0')}`;
    const catalog = { ...template, agent: { id, name: `Agent ${i}`, kind: 'pi', host: `host-${i}`, version: '0.1.0' } };
    // every agent's tools differ (the caller's catalog cache never hits): the worst case
    if (DISTINCT) catalog.tools = template.tools.map((t, j) => (j === 0 ? { ...t, description: `${t.description} On ${id}.` } : t));
    const status = { state: 'online', agent: id, instance: randomBytes(8).toString('hex'), kind: 'pi', version: '0.1.0', catalogRev: template.rev, ts: Date.now() };
    all.push(pub(`toolmesh/v1/agents/${id}/catalog`, JSON.stringify(catalog)), pub(`toolmesh/v1/agents/${id}/status`, JSON.stringify(status)));
  }
  await Promise.all(all);
  await new Promise((r) => c.end(false, {}, r));
}

async function main() {
  const bin = '/usr/sbin/mosquitto';
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-discovery-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n`);
  const broker = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  // drain mosquitto's log (a line per connect): an unread pipe fills at 64 KB, and then mosquitto
  // blocks writing its log and accepts no one (what stopped 1,000 real agents at ~250 before)
  let brokerLog = '';
  broker.stderr.on('data', (d) => { brokerLog = (brokerLog + d).slice(-4000); });
  broker.once('exit', (code) => { if (code) console.error(`mosquitto exited ${code}: ${brokerLog}`); });
  for (let i = 0; !(await accepts(port)); i++) { if (i > 100) throw new Error('mosquitto did not start'); await new Promise((r) => setTimeout(r, 50)); }
  const url = `mqtt://127.0.0.1:${port}`;
  console.log(`discovery bench: ${AGENTS} agents × ${TOOLS} tools${DISTINCT ? ', every agent\'s tools distinct' : ''} (${(process.env.DISCOVERY_MODE ?? 'retained') === 'retained' ? 'retained messages from one client' : `real RpcServer instances in ${HOSTS} processes`}), Debian mosquitto on ${url}, node ${process.version}`);
  const t = performance.now();
  const hosts = [];
  if ((process.env.DISCOVERY_MODE ?? 'retained') === 'retained') {
    await publishRetained(url);
    console.log(`retained catalogs and statuses of ${AGENTS} agents published in ${((performance.now() - t) / 1000).toFixed(1)} s (one plain MQTT.js client, QoS 1)`);
  } else await startHosts(url, t, hosts);
  await new Promise((r) => setTimeout(r, 1000));
  const rb = await retainedBytes(url);
  console.log(`retained on the broker: ${rb.statuses} statuses (avg ${rb.statusBytes} B incl. topic), ${rb.catalogs} catalogs (avg ${rb.catalogBytes} B incl. topic): ${((rb.statusBytes + rb.catalogBytes) / 1024).toFixed(1)} KB per agent, ${((rb.statusBytes + rb.catalogBytes) * AGENTS / 1e6).toFixed(1)} MB for ${AGENTS}`);
  const rows = [];
  for (let r = 0; r < RUNS; r++) {
    const prof = process.env.DISCOVERY_CPU_PROF ? ['--cpu-prof', `--cpu-prof-dir=${process.env.DISCOVERY_CPU_PROF}`] : [];
    const child = fork(self, ['caller', url, String(AGENTS)], { execArgv: ['--expose-gc', ...prof], stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
    const m = await once(child, (x) => x?.readyMs !== undefined);
    await new Promise((res) => child.once('exit', res));
    rows.push(m);
    console.log(`run ${r + 1}: connected ${m.connected.toFixed(0)} ms, first agent ${m.firstAgent.toFixed(0)} ms, ${m.nReady}/${AGENTS} ready (${m.nTools} tools) after ${m.readyMs.toFixed(0)} ms, listAgents() ${m.listMs.toFixed(1)} ms; 'agents' events ${m.eventsAtReady} at readiness, ${m.eventsAfterRepublish - m.eventsAtReady} more in the next 2.5 s (republished); caller heap ${m.heapPerAgentKB.toFixed(1)} KB per agent, RSS ${m.rssMB.toFixed(0)} MB`);
    await new Promise((res) => setTimeout(res, 1000)); // let the agents' republish settle
  }
  const sorted = rows.map((r) => r.readyMs).sort((a, b) => a - b);
  console.log(`caller heap per agent: ${(rows.reduce((s, r) => s + r.heapPerAgentKB, 0) / rows.length).toFixed(1)} KB (mean over runs)`);
  console.log(`fresh caller sees ${AGENTS} agents × ${TOOLS} tools ready: median ${sorted[Math.floor(sorted.length / 2)].toFixed(0)} ms (min ${sorted[0].toFixed(0)}, max ${sorted[sorted.length - 1].toFixed(0)}) over ${RUNS} runs; target ${AGENTS > 1000 ? '5000 ms (10,000 agents)' : '1000 ms, and real agents within 1.5× of the retained-only median'}`);
  for (const h of hosts) h.child.send('stop');
  await Promise.all(hosts.map((h) => new Promise((r) => h.child.once('exit', r))));
  await new Promise((r) => { broker.once('exit', r); broker.kill('SIGTERM'); });
  rmSync(dir, { recursive: true, force: true });
}

if (role === 'host') host().catch((e) => { console.error(e); process.exit(1); });
else if (role === 'caller') caller().catch((e) => { console.error(e); process.exit(1); });
else main().catch((e) => { console.error(e); process.exit(1); });
