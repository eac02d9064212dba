#!/usr/bin/env node
// The editor's pick-lists at mesh scale (issue 12, item 3): a tool-registry node in a Node-RED
// runtime (node-red-node-test-helper) in external mode on an embedded aedes broker that holds the
// retained status and catalog of 1,000 simulated agents × 20 real pack tools (scripts/mesh/catalog.ts).
// Times the admin endpoint the remote-tool dialog asks while a person types, over HTTP on
// 127.0.0.1: the first page of agents (no tools), a type-ahead search, one agent with its tools,
// and, for contrast, the largest page with tools. Prints p50/p99 ms and bytes per answer; the goal
// is < 100 ms with 20,000 tools.
//
//   node scripts/build.mjs && node bench/editor-search.mjs
//   BENCH_AGENTS=1000 BENCH_RUNS=200 (defaults)
import { fromDist, nodeRedHelper, pct, require } from './support.mjs';

const helper = nodeRedHelper();
const registryNode = fromDist('nodes/tool-registry/tool-registry.js').default;
const { startBroker } = fromDist('protocol/broker.js');
const { buildMesh } = fromDist('scripts/mesh/catalog.js');
const mqtt = require('mqtt');

const AGENTS = Number(process.env.BENCH_AGENTS ?? 1000);
const RUNS = Number(process.env.BENCH_RUNS ?? 200);

// 20 tools per agent: its own kind's first, then other packs'
const mesh = await buildMesh(AGENTS, { toolsPerAgent: 20 });

const broker = await startBroker({ port: 0, host: '127.0.0.1' });
const pub = await mqtt.connectAsync(broker.url, { protocolVersion: 4 });
let tools = 0;
for (const a of mesh) {
  tools += a.tools.length;
  await pub.publishAsync(`toolmesh/v1/agents/${a.id}/catalog`, JSON.stringify({ agent: { id: a.id, name: a.name, kind: a.kind }, rev: 1, tools: a.tools }), { qos: 1, retain: true });
  await pub.publishAsync(`toolmesh/v1/agents/${a.id}/status`, JSON.stringify({ state: 'online', agent: a.id, instance: 'sim', kind: a.kind, catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
}
await pub.endAsync();

await new Promise((r) => helper.startServer(r));
await helper.load(registryNode, [{ id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'external', broker: broker.url, callerId: 'bench-editor' }]);
const reg = helper.getNode('reg');
const t0 = Date.now();
while (reg.listAgents().filter((a) => a.ready).length < AGENTS) {
  if (Date.now() - t0 > 60_000) throw new Error('the registry did not see every agent');
  await new Promise((r) => setTimeout(r, 20));
}

const named = mesh[Math.floor(AGENTS / 2)];
const cases = {
  'first page of agents (dialog opens)': '?limit=20&tools=false',
  'type-ahead "garage"': '?q=garage&limit=20&tools=false',
  [`type-ahead "${named.id}"`]: `?q=${named.id}&limit=20&tools=false`,
  'one agent with its tools (agent picked)': `?agent=${named.id}`,
  'largest page, with tools (500 agents)': '?limit=500',
};
const rows = [];
for (const [name, query] of Object.entries(cases)) {
  const url = `/toolmesh/registry/reg/agents${query}`;
  for (let i = 0; i < 20; i++) await helper.request().get(url).expect(200); // warm-up
  const lat = [];
  let bytes = 0;
  let total = 0;
  for (let i = 0; i < RUNS; i++) {
    const t = process.hrtime.bigint();
    const res = await helper.request().get(url).expect(200);
    lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    bytes = res.text.length;
    total = Number(res.headers['x-total-count']);
  }
  rows.push({ case: name, matches: total, 'bytes': bytes, 'p50 ms': pct(lat, 50).toFixed(2), 'p99 ms': pct(lat, 99).toFixed(2) });
}
console.log(`\neditor pick-lists: GET toolmesh/registry/<id>/agents through Node-RED's admin API, ${AGENTS} agents / ${tools} tools, ${RUNS} requests per case (goal < 100 ms)`);
console.table(rows);
await helper.unload();
await new Promise((r) => helper.stopServer(r));
await broker.close();
process.exit(0);
