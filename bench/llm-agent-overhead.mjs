#!/usr/bin/env node
// llm-agent overhead through a real Node-RED runtime (issue 12, item 6), with 1,000 agents in the
// catalog: a stub registry config node offers 20,000 tools (1,000 simulated agents × 20 real pack
// tools, scripts/mesh/catalog.ts), and an in-process OpenAI-compatible server records when each
// chat-completions request arrives. Per run (one message, one tool call, one answer) it measures
//   - message → request: from node.receive() (the message entering the node) to the first request;
//   - tool result → request: from the registry call resolving to the next request.
// Both include the openai client and the loopback HTTP hop. Prints median and p99 in ms; the goal
// is ≤ 2 ms per turn. Cases: 12 tools (under the budget: all offered), 20,000 tools (the budget
// selects), and 20,000 tools with one agent re-publishing its catalog before every message (the
// stub offers toolsByAgent as the real registry does, so the index re-reads that agent only).
//
//   node scripts/build.mjs && node bench/llm-agent-overhead.mjs
//   BENCH_RUNS=300 BENCH_WARMUP=50 (defaults)
import http from 'node:http';
import { dist, fromDist, nodeRedHelper, pct } from './support.mjs';

const helper = nodeRedHelper();
const llmAgentNode = fromDist('nodes/llm-agent/llm-agent.js').default;
const { provideRegistry } = fromDist('nodes/shared/registry-api.js');
const { buildMesh, offeredOf } = fromDist('scripts/mesh/catalog.js');

const RUNS = Number(process.env.BENCH_RUNS ?? 300);
const WARMUP = Number(process.env.BENCH_WARMUP ?? 50);
const now = () => Number(process.hrtime.bigint()) / 1e6;

// --- the catalog: 1,000 agents × 20 tools (each agent's own kind first, then other packs' tools)
const mesh = await buildMesh(1000, { toolsPerAgent: 20 });
const big = offeredOf(mesh);
const small = big.slice(0, 12);
const views = new Map(mesh.map((a) => [a.id, { id: a.id, online: true, ready: true, status: { state: 'online', agent: a.id, instance: 'i', kind: a.kind, name: a.name } }]));

// --- the fake LLM: request 1 of a run asks for the first offered catalog tool, request 2 answers
const arrivals = [];
let n = 0;
const server = http.createServer((req, res) => {
  const at = now();
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString());
    arrivals.push({ at, tools: body.tools?.length ?? 0 });
    const last = body.messages.at(-1);
    const tool = body.tools?.find((t) => t.function.name !== 'find_tools');
    const message = last.role === 'tool' || !tool
      ? { role: 'assistant', content: 'done' }
      : { role: 'assistant', content: null, tool_calls: [{ id: `c${n++}`, type: 'function', function: { name: tool.function.name, arguments: '{}' } }] };
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message, finish_reason: message.tool_calls ? 'tool_calls' : 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/v1`;

// --- the stub registry config node
// the registry API's optional toolsByAgent: per agent an array that stays the same object while that agent is unchanged
const grouped = (offered) => {
  const m = new Map();
  for (const o of offered) (m.get(o.agentId) ?? m.set(o.agentId, []).get(o.agentId)).push(o);
  return m;
};
const state = { groups: grouped(small), listeners: new Set(), resultAt: 0 };
function stubRegistryNode(RED) {
  RED.nodes.registerType('stub-registry', function (def) {
    RED.nodes.createNode(this, def);
    provideRegistry(this, {
      state: 'connected', callerId: 'bench', register: (u) => u.onRegistryState('connected'), deregister() {},
      // a fresh list per call, one step per agent, as the real registry's (RpcCaller.listAgents)
      listAgents: () => [...state.groups.keys()].map((id) => ({ ...views.get(id) })), listTools: () => [...state.groups.values()].flat(), toolsByAgent: () => state.groups, isOffered: () => true,
      call: async () => { state.resultAt = now(); return { content: [{ type: 'text', text: '{"ok":true}' }], structuredContent: { ok: true } }; },
      onCatalogChange: (l) => { state.listeners.add(l); return () => state.listeners.delete(l); },
      agentConnection: async () => undefined, beforeClose: () => () => {},
    });
  });
}

async function measure(name, offered, churn) {
  state.groups = grouped(offered);
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([stubRegistryNode, llmAgentNode], [
    { id: 'f1', type: 'tab', label: 'bench' },
    { id: 'reg', type: 'stub-registry' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: url, model: 'm', maxIterations: 4, approvalRisk: 'never', memoryMessages: 0, wires: [['out']] },
    { id: 'out', type: 'helper', ...at },
  ], { llm: { apiKey: 'sk' } });
  const node = helper.getNode('llm');
  const out = helper.getNode('out');
  const toRequest = []; const afterResult = []; let tools = 0;
  for (let i = 0; i < WARMUP + RUNS; i++) {
    if (churn) {
      // one agent re-publishes its catalog (new objects, same tools): the index updates that agent
      const id = mesh[i % mesh.length].id;
      state.groups = new Map(state.groups).set(id, state.groups.get(id).map((o) => ({ agentId: o.agentId, tool: { ...o.tool } })));
      for (const l of state.listeners) l();
    }
    arrivals.length = 0;
    const done = new Promise((r) => out.once('input', r));
    const t0 = now();
    node.receive({ payload: `restart the nginx container on ${mesh[i % mesh.length].id}` });
    await done;
    if (i < WARMUP) continue;
    toRequest.push(arrivals[0].at - t0);
    afterResult.push(arrivals[1].at - state.resultAt);
    tools = Math.max(tools, arrivals[0].tools, arrivals[1].tools);
  }
  await helper.unload();
  return { case: name, catalog: offered.length, 'tools/request max': tools,
    'message→request p50 ms': pct(toRequest, 50).toFixed(3), 'message→request p99 ms': pct(toRequest, 99).toFixed(3),
    'tool result→request p50 ms': pct(afterResult, 50).toFixed(3), 'tool result→request p99 ms': pct(afterResult, 99).toFixed(3) };
}

console.log(`llm-agent overhead through Node-RED (${RUNS} runs after ${WARMUP} warm-up, default budget 16 tools / 2500 tokens, Node ${process.version}, ${dist})`);
const rows = [];
rows.push(await measure('12 tools (under the budget: all offered)', small, false));
rows.push(await measure('1,000 agents / 20,000 tools', big, false));
rows.push(await measure('20,000 tools, a catalog change per message', big, true));
console.table(rows);
server.close();
process.exit(0);
