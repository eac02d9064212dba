#!/usr/bin/env node
// Bounded memory for months of uptime (issue 17, item 8): heap floor, peak and heap after full
// collections for
//   1. llm-agent: BENCH_TOPICS distinct msg.topic (default 100,000) through a real llm-agent node in
//      Node-RED (node-red-node-test-helper) against an in-process OpenAI-compatible server, default
//      session bounds (1,000 conversations, 24 h). The floor is taken after the first 1,000 topics
//      (the store full), so "after" − "floor" is what the other topics left behind.
//   2. RpcCaller on an in-process aedes: BENCH_AGENTS agent ids (default 10,000) going online →
//      catalog (10 tools, ~3 KB) → lost/offline, plus as many invalid catalogs, with forgetAfterMs 300 ms; and the
//      same with forgetAfterMs 1 day (what the caller keeps without the bound), for comparison.
//
//   npm run build && node --expose-gc bench/memory-soak.mjs
import http from 'node:http';
import { dist, fromDist, nodeRedHelper, require } from './support.mjs';

if (typeof globalThis.gc !== 'function') {
  console.error('run with node --expose-gc bench/memory-soak.mjs');
  process.exit(2);
}
const TOPICS = Number(process.env.BENCH_TOPICS ?? 100_000);
const AGENTS = Number(process.env.BENCH_AGENTS ?? 10_000);
const MB = 1024 * 1024;
const mb = (n) => `${(n / MB).toFixed(1)} MB`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function heapAfterGc() {
  for (let i = 0; i < 4; i++) {
    globalThis.gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

async function until(check, what, ms = 60_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// --- 1. llm-agent through Node-RED
async function llmAgentTopics() {
  const helper = nodeRedHelper();
  const llmAgentNode = fromDist('nodes/llm-agent/llm-agent.js').default;
  // a minimal OpenAI-compatible endpoint: answers every prompt with `re: <prompt>`
  const server = http.createServer((req, res) => {
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8'));
      const content = `re: ${body.messages.at(-1).content}`;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({
        id: 'c', object: 'chat.completion', created: 0, model: body.model,
        choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 },
      }));
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${server.address().port}/v1`;
  await new Promise((r) => helper.startServer(r));
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([llmAgentNode], [
    { id: 'f1', type: 'tab', label: 'bench' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, baseUrl: url, model: 'fake-model', wires: [['out'], [], []] },
    { id: 'out', type: 'helper', ...at },
  ], { llm: { apiKey: 'sk-bench' } });
  const node = helper.getNode('llm');
  let answered = 0;
  helper.getNode('out').on('input', () => answered++);
  const keys = () => node.context().keys().filter((k) => k.startsWith('llm-agent:')).length;
  const BATCH = 100;
  const started = Date.now();
  let floor = 0;
  let peak = 0;
  for (let sent = 0; sent < TOPICS + 1000; sent += BATCH) {
    for (let i = sent; i < sent + BATCH; i++) node.receive({ topic: `topic-${i}`, payload: `question ${i}: how warm is the garage?` });
    await until(() => answered >= sent + BATCH, `answers up to ${sent + BATCH}`);
    // node-red-node-test-helper spies on every node method (sinon) and keeps each call: that
    // history is the harness's, not the node's, so it is dropped before measuring
    helper._sandbox.resetHistory();
    if (sent + BATCH === 1000) floor = await heapAfterGc();
    if (sent % 5000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  const ms = Date.now() - started;
  await sleep(100);
  const after = await heapAfterGc();
  console.log(`llm-agent, ${TOPICS.toLocaleString('en')} topics after the first 1,000 (maxSessions 1000): ${(ms / (TOPICS + 1000)).toFixed(2)} ms/message, `
    + `conversations in the context store ${keys()}; heap floor ${mb(floor)}, peak ${mb(peak)}, after gc ${mb(after)} (${after - floor >= 0 ? '+' : ''}${mb(after - floor)})`);
  await helper.unload();
  await new Promise((r) => helper.stopServer(r));
  await new Promise((r) => server.close(r));
}

// --- 2. RpcCaller on aedes
/** A catalog of 10 tools with schemas (~3 KB of JSON), like a small pack's. */
const catalogOf = (agent) => ({
  agent: { id: agent, name: `Bench ${agent}`, kind: 'pi' },
  rev: 1,
  tools: Array.from({ length: 10 }, (_, k) => ({
    name: `tool_${k}`,
    description: `Reads sensor ${k} of ${agent} and reports its value with the unit and the time it was taken.`,
    inputSchema: { type: 'object', properties: { unit: { type: 'string', enum: ['si', 'imperial'] }, samples: { type: 'integer', minimum: 1, maximum: 100 } } },
    annotations: { risk: 'low', readOnlyHint: true },
  })),
});
async function callerAgents(forgetAfterMs, label) {
  const mqtt = require('mqtt');
  const { RpcCaller } = fromDist('protocol/index.js');
  const { startBroker } = fromDist('protocol/broker.js');
  const broker = await startBroker({ port: 0 });
  const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'soak', forgetAfterMs });
  await caller.start();
  const pub = mqtt.connect(broker.url);
  await new Promise((r) => pub.on('connect', r));
  const send = (topic, body) => new Promise((resolve, reject) => pub.publish(topic, JSON.stringify(body), { qos: 1 }, (e) => (e ? reject(e) : resolve())));
  const t = caller.topics;
  const floor = await heapAfterGc();
  let peak = floor;
  for (let batch = 0; batch < AGENTS; batch += 500) {
    const sends = [];
    for (let i = batch; i < Math.min(AGENTS, batch + 500); i++) {
      const agent = `agent-${i}`;
      const instance = `i${i}`;
      sends.push(send(t.agentStatus(agent), { state: 'online', agent, instance, catalogRev: 1, ts: Date.now() }));
      sends.push(send(t.agentCatalog(agent), catalogOf(agent)));
      sends.push(send(t.agentStatus(agent), { state: i % 2 ? 'lost' : 'offline', agent, instance, ts: Date.now() }));
      sends.push(send(t.agentCatalog(`junk-${i}`), i % 2 ? { rev: 'x' } : { agent: { id: 'someone-else' }, rev: 1, tools: [] }));
    }
    await Promise.all(sends);
    peak = Math.max(peak, process.memoryUsage().heapUsed);
  }
  await sleep(Math.min(forgetAfterMs, 1000) + 500);
  const known = caller.listAgents().length;
  await new Promise((r) => pub.end(false, {}, r));
  const after = await heapAfterGc();
  console.log(`RpcCaller, ${AGENTS.toLocaleString('en')} agents + ${AGENTS.toLocaleString('en')} invalid catalogs, ${label}: agents still known ${known}; `
    + `heap floor ${mb(floor)}, peak ${mb(peak)}, after gc ${mb(after)} (${after - floor >= 0 ? '+' : ''}${mb(after - floor)})`);
  await caller.stop();
  await broker.close();
}

console.log(`node ${process.version}, build ${dist}`);
await callerAgents(300, 'forgetAfterMs 300 ms');
await callerAgents(86_400_000, 'forgetAfterMs 1 day (no bound in reach)');
if (TOPICS > 0) await llmAgentTopics();
process.exit(0);
