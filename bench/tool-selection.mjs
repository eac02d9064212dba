#!/usr/bin/env node
// Prompt size and selection recall of the llm-agent tool budget (issue 12, item 2), for meshes of
// 5, 50, 500 and 1,000 agents built from the real packs' catalogs (scripts/mesh/catalog.ts).
// For each labelled prompt of bench/tool-prompts.json it takes the first request's tools as the
// llm-agent would offer them (default budget: 16 tools, 2,500 estimated tokens) and counts
//   - tokens of the tool definitions as sent (JSON), with gpt-tokenizer (o200k_base), and of the
//     same tools as published (description, agent/tool/risk line, the whole inputSchema: what was
//     sent before nodes/llm-agent/tool-definition.ts; issue 20, item 2);
//   - recall@budget: the prompt's (agent, tool) is offered in the first request;
//   - recall with find_tools: offered, or among the definitions one find_tools call returns (to be
//     called with call_tool) whose query is the prompt's own words (the model's call is simulated
//     with the prompt text; no model is asked);
//   - block stability (issue 20): the prompts run one after the other as the runs of one session
//     (a shared ToolBlockState): in how many runs the tool block differed from the previous run's,
//     and the session's recall: in the (frozen) block or among the definitions find_tools returns;
//     "2 finds": or named among its further matches and found by a second find_tools for that name.
// Also prints the run-time estimate's error against gpt-tokenizer, and the time per selection.
//
//   node scripts/build.mjs && node bench/tool-selection.mjs
//   BENCH_SIZES=5,50,500,1000 BENCH_MAX_TOOLS=16 BENCH_MAX_TOKENS=2500   (defaults)
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { encode } from 'gpt-tokenizer';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const dist = resolve(process.env.TOOLMESH_DIST ?? join(root, 'dist'));
const { ToolIndex, ToolSelection, estimateTokens, FIND_TOOLS_DEFINITION, CALL_TOOL_DEFINITION } = require(join(dist, 'nodes/llm-agent/tool-select.js'));
const { buildMesh, offeredOf } = require(join(dist, 'scripts/mesh/catalog.js'));

const SIZES = (process.env.BENCH_SIZES ?? '5,50,500,1000').split(',').map(Number);
const budget = { maxTools: Number(process.env.BENCH_MAX_TOOLS ?? 16), maxTokens: Number(process.env.BENCH_MAX_TOKENS ?? 2500) };
const { prompts } = JSON.parse(readFileSync(join(root, 'bench/tool-prompts.json'), 'utf8'));
const tokensOf = (tools) => encode(JSON.stringify(tools)).length;
/** A tool as published in the catalog, rendered as before tool-definition.ts (for the "raw" column). */
const rawOf = (name, o) => {
  const text = o.tool.description.trim();
  return { type: 'function', function: { name, description: `${text}${text ? '\n' : ''}(tool "${o.tool.name}" on agent "${o.agentId}", risk: ${o.tool.annotations?.risk ?? 'unknown'})`, parameters: o.tool.inputSchema } };
};
const mean = (a) => a.reduce((x, y) => x + y, 0) / (a.length || 1);
const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];

console.log(`llm-agent tool selection (budget ${budget.maxTools} tools / ${budget.maxTokens} est. tokens; ${prompts.length} labelled prompts: `
  + `${prompts.filter((p) => p.split === 'tune').length} tune, ${prompts.filter((p) => p.split === 'heldout').length} held-out; Node ${process.version})`);
console.log('find_tools is simulated: one call per missed prompt, query = the prompt text.');

const rows = [];
const misses = [];
let estErr;
for (const n of SIZES) {
  const mesh = await buildMesh(n);
  const offered = offeredOf(mesh);
  const index = new ToolIndex();
  const t0 = performance.now();
  index.sync(() => offered, () => mesh.map((a) => ({ id: a.id, name: a.name, kind: a.kind })));
  index.rank('warm up the index', 1); // builds the search index (lazily, on the first search)
  const buildMs = performance.now() - t0;
  if (estErr === undefined || n === SIZES.at(-1)) {
    // estimate vs real over every distinct definition of this mesh's kinds
    const seen = new Set();
    let est = 0; let real = 0; let worst = 0;
    for (const e of index.entries()) {
      if (seen.has(e.offered.tool.name)) continue;
      seen.add(e.offered.tool.name);
      const r = encode(JSON.stringify(e.def)).length;
      est += e.tokens; real += r;
      worst = Math.max(worst, Math.abs(e.tokens - r) / r);
    }
    estErr = { defs: seen.size, est, real, total: (est - real) / real, worst };
  }
  const allTokens = n <= 50 ? tokensOf([...index.entries()].map((e) => e.def)) : undefined;
  for (const split of ['tune', 'heldout']) {
    const set = prompts.filter((p) => p.split === split);
    let offeredHits = 0; let foundHits = 0;
    const tokens = []; const counts = []; const ms = []; const estTok = []; const raw = [];
    for (const p of set) {
      const sel = new ToolSelection(index, budget);
      const s0 = performance.now();
      const { tools, offer } = sel.turn([{ role: 'user', content: p.prompt }], 1);
      ms.push(performance.now() - s0);
      tokens.push(tokensOf(tools));
      raw.push(tokensOf(offer.tools.map((t) => (t.agent === undefined ? FIND_TOOLS_DEFINITION : rawOf(t.name, index.entryOf(`${t.agent}\0${t.tool}`).offered)))));
      estTok.push(offer.tokens);
      counts.push(tools.length);
      const want = new Set(p.tools.map((t) => `${p.agent}\0${t}`));
      const hit = offer.tools.some((t) => want.has(`${t.agent}\0${t.tool}`));
      if (hit) { offeredHits++; continue; }
      const found = sel.search ? sel.search(p.prompt).map((h) => h.entry.offered) : (sel.find(p.prompt), sel.turn([{ role: 'user', content: p.prompt }], 2).offer.tools.map((t) => ({ agentId: t.agent, tool: { name: t.tool } })));
      if (found.some((o) => want.has(`${o.agentId}\0${o.tool.name}`))) foundHits++;
      else misses.push({ agents: n, split, prompt: p.prompt, want: `${p.agent}/${p.tools.join('|')}`, offered: offer.tools.slice(0, 3).map((t) => t.name).join(', ') });
    }
    // the prompts as the runs of one session: does the block move from run to run?
    // (and is the prompt's tool reached: in the frozen block, or among what find_tools returns?)
    const sel0 = typeof new ToolSelection(index, budget).search === 'function';
    const session = {};
    let moved = 0; let last; let sessionHits = 0; let secondHits = 0;
    for (const p of set) {
      const sel = new ToolSelection(index, budget, session);
      const { tools, offer } = sel.turn([{ role: 'user', content: p.prompt }], 1);
      const block = JSON.stringify(tools);
      if (last !== undefined && block !== last) moved++;
      last = block;
      const want = new Set(p.tools.map((t) => `${p.agent}\0${t}`));
      if (offer.tools.some((t) => want.has(`${t.agent}\0${t.tool}`))) sessionHits++;
      else if (sel0) {
        const { found, more } = sel.searchMore(p.prompt);
        const wanted = (o) => want.has(`${o.agentId}\0${o.tool.name}`);
        if (found.some((h) => wanted(h.entry.offered))) sessionHits++;
        else {
          // named among the further matches: a second find_tools with that exact name
          const named = more.find((e) => wanted(e.offered));
          if (named && sel.search(named.name).some((h) => !h.offered && h.entry === named)) secondHits++;
        }
      }
    }
    rows.push({
      agents: n, tools: index.size, split, prompts: set.length,
      'session block changes': `${moved}/${set.length - 1}`,
      'session recall': sel0 ? (sessionHits / set.length).toFixed(3) : 'n/a',
      'session recall, 2 finds': sel0 ? ((sessionHits + secondHits) / set.length).toFixed(3) : 'n/a',
      'all tools tokens': allTokens ?? '(n/a: > 128 tools)',
      'tools/request max': Math.max(...counts),
      'tokens/request mean': Math.round(mean(tokens)), 'tokens/request max': Math.max(...tokens),
      'as published mean': Math.round(mean(raw)),
      'recall@budget': (offeredHits / set.length).toFixed(3),
      'recall+find_tools': ((offeredHits + foundHits) / set.length).toFixed(3),
      'select ms p50': pct(ms, 50).toFixed(3), 'select ms p99': pct(ms, 99).toFixed(3),
      'index build ms': Math.round(buildMs),
    });
  }
}
console.table(rows);
console.log(`token estimate vs gpt-tokenizer over ${estErr.defs} distinct definitions: estimated ${estErr.est}, real ${estErr.real}, `
  + `error of the sum ${(estErr.total * 100).toFixed(1)}%, worst single definition ${(estErr.worst * 100).toFixed(1)}% (goal: within 15%)`);
console.log(`find_tools definition: ${estimateTokens(FIND_TOOLS_DEFINITION)} est. / ${encode(JSON.stringify(FIND_TOOLS_DEFINITION)).length} real tokens`);
if (CALL_TOOL_DEFINITION) console.log(`call_tool definition: ${estimateTokens(CALL_TOOL_DEFINITION)} est. / ${encode(JSON.stringify(CALL_TOOL_DEFINITION)).length} real tokens`);
if (misses.length) {
  console.log(`misses (${misses.length}):`);
  console.table(misses);
}
