#!/usr/bin/env node
// The llm-agent loop's own overhead per turn (one LLM request and what the loop does around it),
// without model or tool time: an in-process stub client answers at once, alternating one
// tool-call turn and one final answer, and an in-process tool source resolves at once. Prints
// median and p99 per turn in ms for: 1 call per tool turn, 3 parallel calls, and streaming
// (the stub returns an async iterable of chunks). Asserts nothing; the target is <= 2 ms median.
//
//   node scripts/build.mjs && node bench/loop-overhead.mjs
//   TOOLMESH_DIST=<dir of a tsc emit> node bench/loop-overhead.mjs   (another build output)
//   BENCH_TURNS=5000 BENCH_WARMUP_TURNS=1000 BENCH_TOOLS=20          (defaults)
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const dist = resolve(process.env.TOOLMESH_DIST ?? join(root, 'dist'));
const { runToolLoop } = require(join(dist, 'nodes/llm-agent/tool-loop.js'));

const TURNS = Number(process.env.BENCH_TURNS ?? 5000);
const WARMUP_TURNS = Number(process.env.BENCH_WARMUP_TURNS ?? 1000);
const N_TOOLS = Number(process.env.BENCH_TOOLS ?? 20);

// A catalog of the size a small mesh offers (one agent, N_TOOLS tools with a small schema).
const offered = Array.from({ length: N_TOOLS }, (_, i) => ({
  agentId: 'pi',
  tool: {
    name: `tool_${i}`, description: `Tool number ${i}.`, annotations: { risk: 'low' }, timeoutMs: 30_000,
    inputSchema: { type: 'object', properties: { text: { type: 'string' }, count: { type: 'integer' } }, required: ['text'] },
  },
}));
const toolResult = { content: [{ type: 'text', text: '{"ok":true}' }], structuredContent: { ok: true } };
const source = { listTools: () => offered, call: async () => toolResult };

const usage = { prompt_tokens: 120, completion_tokens: 20, total_tokens: 140 };
const toolCalls = (n) => Array.from({ length: n }, (_, i) => ({ id: `call_${i}`, type: 'function', function: { name: `pi__tool_${i}`, arguments: `{"text":"hello ${i}","count":${i}}` } }));

/** The chunks of a streamed message: role, content in pieces, tool-call fragments, finish, usage. */
function chunksOf(message, finish) {
  const base = { id: 'chatcmpl-stub', object: 'chat.completion.chunk', created: 0, model: 'stub' };
  const out = [{ ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] }];
  for (const piece of (message.content ?? '').match(/.{1,8}/g) ?? []) out.push({ ...base, choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] });
  (message.tool_calls ?? []).forEach((c, index) => {
    out.push({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] }, finish_reason: null }] });
    for (const piece of c.function.arguments.match(/.{1,10}/g)) out.push({ ...base, choices: [{ index: 0, delta: { tool_calls: [{ index, function: { arguments: piece } }] }, finish_reason: null }] });
  });
  out.push({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
  out.push({ ...base, choices: [], usage });
  return out;
}

/** A client whose `create` answers at once: a tool-call turn, then a final answer, and so on. */
function stubClient(parallel) {
  const toolMessage = { role: 'assistant', content: null, tool_calls: toolCalls(parallel), refusal: null };
  const finalMessage = { role: 'assistant', content: 'All done: the tool answered ok.', refusal: null };
  const completion = (message, finish) => ({ id: 'chatcmpl-stub', object: 'chat.completion', created: 0, model: 'stub', choices: [{ index: 0, message, finish_reason: finish, logprobs: null }], usage });
  const plain = [completion(toolMessage, 'tool_calls'), completion(finalMessage, 'stop')];
  const streamed = [chunksOf(toolMessage, 'tool_calls'), chunksOf(finalMessage, 'stop')];
  let n = 0;
  return {
    baseURL: 'stub://llm',
    chat: {
      completions: {
        create: async (body) => {
          const i = n++ % 2;
          if (!body.stream) return plain[i];
          return (async function* () { yield* streamed[i]; })();
        },
      },
    },
  };
}

const pct = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

/** Runs 2-turn conversations; returns per-turn times (ms) of the measured runs. */
async function measure({ parallel, stream }) {
  const client = stubClient(parallel);
  const opts = { client, model: 'stub', messages: [{ role: 'user', content: 'Check the thing.' }], systemPrompt: 'Be brief.', tools: source, stream, maxIterations: 4, onEvent: () => {} };
  for (let i = 0; i < WARMUP_TURNS / 2; i++) await runToolLoop(opts);
  const perTurn = [];
  for (let i = 0; i < TURNS / 2; i++) {
    const t = process.hrtime.bigint();
    const r = await runToolLoop(opts);
    perTurn.push(Number(process.hrtime.bigint() - t) / 1e6 / r.iterations);
    if (r.toolCalls.length !== parallel) throw new Error(`expected ${parallel} tool calls, got ${r.toolCalls.length}`);
  }
  return perTurn.sort((a, b) => a - b);
}

const cases = [
  { name: '1 tool call per tool turn', parallel: 1, stream: false },
  { name: '3 parallel tool calls per tool turn', parallel: 3, stream: false },
  { name: 'streaming, 1 tool call per tool turn', parallel: 1, stream: true },
  { name: 'streaming, 3 parallel tool calls', parallel: 3, stream: true },
];
console.log(`llm-agent loop overhead per turn (${TURNS} turns after ${WARMUP_TURNS} warm-up, ${N_TOOLS} offered tools, Node ${process.version}, ${dist})`);
const rows = [];
for (const c of cases) {
  const t = await measure(c);
  rows.push({ case: c.name, medianMs: pct(t, 50).toFixed(4), p99Ms: pct(t, 99).toFixed(4), turnsPerSec: Math.round(1000 / (t.reduce((a, b) => a + b, 0) / t.length)) });
}
console.table(rows);
