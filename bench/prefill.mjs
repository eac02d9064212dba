#!/usr/bin/env node
// What a model must prefill, turn by turn (issue 20, item 3). A local server with a prompt cache
// (llama.cpp's, Ollama's) reuses the longest prefix a request shares with the previous one and
// prefills the rest, at a few hundred tokens/s on a mini PC or a Pi 5; the tool block comes first.
//
// Multi-turn runs through a real llm-agent node in Node-RED (node-red-node-test-helper) against an
// in-process scripted OpenAI-compatible server (plain JSON chat completions, as the openai client
// reads them) that records every request body. The mesh: scripts/mesh/catalog.ts's labelled agents
// plus simulated ones (default 287 agents in all, each with its kind's real pack catalog), offered
// by a stub registry config node as the real registry offers it. Per labelled prompt of
// bench/tool-prompts.json (default 20, spread over the file) one session of two runs (messages):
//   run 1: the prompt; the scripted model calls the labelled tool when it is offered, else
//          `find_tools` (query = the prompt; in every 4th session it searches first anyway, as
//          small models often do), then the tool (by its function name when offered, or
//          through a `call_tool`-like meta-tool when the request offers one), then answers;
//   run 2: a follow-up prompt for the same agent, same session id (history from memory), catalog
//          unchanged.
// For every request after the first of a run, with gpt-tokenizer (o200k_base):
//   - re-prefilled: tokens after the longest prefix shared with the previous request, where a
//     request is its tools part (JSON of `tools`) followed by its messages part (each message as
//     a chat template renders it: role, text, tool calls as {"name","arguments"} JSON); a change in
//     the tools part re-prefills the rest of it and every message token;
//   - added: tokens of the messages this request has that the previous one had not (assistant
//     tool calls, tool results, new user text).
// A turn "prefilled only what it added" when re-prefilled ≤ added + SLACK tokens (default 8: the
// template's per-message markers and the generation prompt's header are not in `added`).
// Cross-run: run 2's first request against run 1's last request of the same session.
// Recall: the run called the labelled (agent, tool) (the stub registry records what it ran).
// The scripted model knows a function as the labelled tool when its name or description names
// both the agent id and the tool name (today: `<agent>__<tool>` and `(tool "x" on agent "y")`).
// Table: `tool block` = tokens of the first request's `tools` JSON (as bench/tool-selection.mjs
// counts them); `find_tools` = "first" (searched although the tool was offered) or "needed".
//
//   node scripts/build.mjs && node bench/prefill.mjs
//   BENCH_AGENTS=287 BENCH_PROMPTS=20 (or "all", or "heldout") BENCH_SEARCH_EVERY=4 (0: never)
//   BENCH_SLACK=8 BENCH_PREFILL_TPS=300   (defaults)
//   BENCH_DUMP=/tmp/tools.jsonl   appends each request's `tools` (JSON, one request per line), to read what a block holds
import http from 'node:http';
import { readFileSync, appendFileSync } from 'node:fs';
import { join } from 'node:path';
import { encode } from 'gpt-tokenizer';
import { dist, fromDist, nodeRedHelper, root } from './support.mjs';

const helper = nodeRedHelper();
const llmAgentNode = fromDist('nodes/llm-agent/llm-agent.js').default;
const { provideRegistry } = fromDist('nodes/shared/registry-api.js');
const { buildMesh, offeredOf } = fromDist('scripts/mesh/catalog.js');

const AGENTS = Number(process.env.BENCH_AGENTS ?? 287);
const PROMPTS = process.env.BENCH_PROMPTS ?? '20';
const SLACK = Number(process.env.BENCH_SLACK ?? 8);
const TPS = Number(process.env.BENCH_PREFILL_TPS ?? 300);
const SEARCH_EVERY = Number(process.env.BENCH_SEARCH_EVERY ?? 4);
const FIND_TOOLS = 'find_tools';

// --- the prompts: one session per chosen prompt; its follow-up is the next prompt for the same agent
const all = JSON.parse(readFileSync(join(root, 'bench/tool-prompts.json'), 'utf8')).prompts;
const chosen = PROMPTS === 'all' ? all
  : PROMPTS === 'heldout' ? all.filter((p) => p.split === 'heldout')
  : Array.from({ length: Math.min(Number(PROMPTS), all.length) }, (_, i) => all[Math.floor((i * all.length) / Math.min(Number(PROMPTS), all.length))]);
const followUp = (p) => {
  const same = all.filter((q) => q.agent === p.agent);
  const at = same.indexOf(p);
  return same[(at + 1) % same.length];
};

// --- the mesh, offered by a stub registry as the real one offers it (registry-api.ts)
const mesh = await buildMesh(AGENTS);
const offered = offeredOf(mesh);
const schemaOf = new Map(offered.map((o) => [`${o.agentId}\0${o.tool.name}`, o.tool.inputSchema]));
const groups = new Map();
for (const o of offered) (groups.get(o.agentId) ?? groups.set(o.agentId, []).get(o.agentId)).push(o);
const views = new Map(mesh.map((a) => [a.id, { id: a.id, online: true, ready: true, status: { state: 'online', agent: a.id, instance: 'i', kind: a.kind, name: a.name } }]));
const calls = []; // (agent, tool) the registry ran
function stubRegistryNode(RED) {
  RED.nodes.registerType('stub-registry', function (def) {
    RED.nodes.createNode(this, def);
    provideRegistry(this, {
      state: 'connected', callerId: 'bench', register: (u) => u.onRegistryState('connected'), deregister() {},
      listAgents: () => [...groups.keys()].map((id) => ({ ...views.get(id) })),
      agent: (id) => (views.has(id) ? { ...views.get(id) } : undefined),
      listTools: () => offered, toolsByAgent: () => groups,
      isOffered: (agentId, tool) => schemaOf.has(`${agentId}\0${tool}`),
      call: async (agentId, tool, args) => {
        calls.push({ agent: agentId, tool });
        const result = { ok: true, agent: agentId, tool, args: args ?? {}, value: 42 };
        return { content: [{ type: 'text', text: JSON.stringify(result) }], structuredContent: result };
      },
      onCatalogChange: () => () => {},
      agentConnection: async () => undefined, beforeClose: () => () => {},
    });
  });
}

// --- the scripted model
/** Identifier-like words of a text (agent ids, tool names, function names). */
const words = (s) => new Set(String(s ?? '').split(/[^A-Za-z0-9_.-]+|__/).filter(Boolean));
/** True when `text` names agent `agent` and one of `tools` (as words, or as a `<agent>__<tool>` function name). */
function names(text, agent, tools) {
  const w = words(text);
  return w.has(agent) && tools.some((t) => w.has(t));
}
/**
 * How surely `name` (with `text`, its description or line) is the wanted tool: 0 not at all; else
 * better when the name itself holds the tool's name, then when the text quotes it (`tool "x"`),
 * than when the text only mentions it (a description may name a related tool).
 */
function score(name, text, want) {
  if (!names(`${name} ${text}`, want.agent, want.tools)) {
    // last resort: both named with other separators (e.g. `pi_greenhouse_1`)
    const flat = (x) => x.toLowerCase().replace(/[^a-z0-9]/g, '');
    const all = flat(`${name} ${text}`);
    return all.includes(flat(want.agent)) && want.tools.some((t) => all.includes(flat(t))) ? 0.5 : 0;
  }
  const w = words(name);
  return want.tools.some((t) => w.has(t)) ? 3 : want.tools.some((t) => text.includes(`"${t}"`)) ? 2 : 1;
}
/** The best of `candidates` ({name, text}) for the wanted tool, or undefined. */
function best(candidates, want) {
  let top; let topScore = 0;
  for (const c of candidates) {
    const s = score(c.name, c.text, want);
    if (s > topScore) { top = c; topScore = s; }
  }
  return top;
}
/** The function of `tools` (request `tools`) that is the wanted tool, judged by its name and description. */
const offeredFn = (tools, want) => best(tools.filter((t) => t.function.name !== FIND_TOOLS)
  .map((t) => ({ name: t.function.name, text: t.function.description ?? '', t })), want)?.t;
/** A meta-tool that calls a found tool by name (today's code has none; item 1 of issue 20 may add `call_tool`). */
const callToolFn = (tools) => tools.find((t) => /^(call|use|run|invoke)_?tool$/i.test(t.function.name));
/** Arguments that satisfy `schema`'s required properties (one level). */
function argsFor(schema) {
  const out = {};
  for (const k of schema?.required ?? []) {
    const p = schema.properties?.[k] ?? {};
    const type = Array.isArray(p.type) ? p.type[0] : p.type;
    out[k] = p.enum?.[0] ?? p.default ?? (type === 'number' || type === 'integer' ? (p.minimum ?? 1)
      : type === 'boolean' ? false : type === 'array' ? [] : type === 'object' ? {} : 'nginx');
  }
  return out;
}
/** The function name of the wanted tool in a `find_tools` result (text lines, or JSON with `name`s). */
function foundName(text, want) {
  const candidates = [];
  try {
    // a JSON answer: every object with a string `name`, walked with a queue (no recursion)
    const queue = [JSON.parse(text)];
    for (let i = 0; i < queue.length && i < 10_000; i++) {
      const v = queue[i];
      if (!v || typeof v !== 'object') continue;
      if (typeof v.name === 'string') candidates.push({ name: v.name, text: JSON.stringify(v) });
      queue.push(...Object.values(v));
    }
  } catch {
    for (const line of String(text).split('\n')) {
      // a line that is one definition as JSON (llm-agent's find_tools), or `- name: text`
      if (line.trimStart().startsWith('{')) {
        try {
          const v = JSON.parse(line);
          if (typeof v?.name === 'string') { candidates.push({ name: v.name, text: line }); continue; }
        } catch { /* not JSON after all */ }
      }
      const m = /^\s*[-*]?\s*`?([A-Za-z0-9_.-]+)`?\s*[:(]/.exec(line);
      if (m) candidates.push({ name: m[1], text: line });
    }
  }
  return best(candidates, want)?.name;
}
const textOf = (content) => (typeof content === 'string' ? content : Array.isArray(content) ? content.map((p) => (p.type === 'text' ? p.text : '')).join('') : '');

let script; // { want: {agent, tools}, prompt } of the run under way
let callSeq = 0;
/** The model's answer to one request body. */
function reply(body) {
  const msgs = body.messages;
  const tools = body.tools ?? [];
  const last = msgs.at(-1);
  const call = (name, args) => ({ role: 'assistant', content: null, tool_calls: [{ id: `call_${callSeq++}`, type: 'function', function: { name, arguments: JSON.stringify(args) } }] });
  const direct = offeredFn(tools, script.want);
  const args = () => argsFor(schemaOf.get(`${script.want.agent}\0${script.want.tools[0]}`));
  if (last.role === 'user') {
    const canFind = tools.some((t) => t.function.name === FIND_TOOLS);
    if (direct && !(script.searchFirst && canFind)) return call(direct.function.name, args());
    if (canFind) {
      script.searched = true;
      return call(FIND_TOOLS, { query: script.prompt });
    }
    return { role: 'assistant', content: 'No tool for that is offered.' };
  }
  if (last.role === 'tool') {
    const asked = msgs.findLast((m) => m.role === 'assistant')?.tool_calls?.[0]?.function?.name;
    if (asked !== FIND_TOOLS) return { role: 'assistant', content: `Done: ${last.content ? textOf(last.content).slice(0, 60) : 'no result'}` };
    if (direct) return call(direct.function.name, args());
    const meta = callToolFn(tools);
    const name = meta && foundName(textOf(last.content), script.want);
    if (meta && name) {
      // fill the meta-tool's own parameters: the function name, the agent if asked apart, the arguments
      const props = meta.function.parameters?.properties ?? {};
      const metaArgs = {};
      for (const [k, p] of Object.entries(props)) {
        if (/arg|input|param/i.test(k)) metaArgs[k] = p.type === 'string' ? JSON.stringify(args()) : args();
        else if (/agent/i.test(k)) metaArgs[k] = script.want.agent;
        else if (/name|tool|function/i.test(k)) metaArgs[k] = name;
      }
      return call(meta.function.name, metaArgs);
    }
    return { role: 'assistant', content: 'find_tools found nothing that fits.' };
  }
  return { role: 'assistant', content: 'ok' };
}

const requests = []; // bodies, in order
const server = http.createServer((req, res) => {
  const chunks = [];
  req.on('data', (c) => chunks.push(c));
  req.on('end', () => {
    const body = JSON.parse(Buffer.concat(chunks).toString());
    requests.push(body);
    if (process.env.BENCH_DUMP) appendFileSync(process.env.BENCH_DUMP, `${JSON.stringify(body.tools ?? [])}\n`);
    let message;
    try { message = reply(body); } catch (e) { message = { role: 'assistant', content: `bench script failed: ${e.message}` }; }
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: 'x', object: 'chat.completion', created: 0, model: 'm', choices: [{ index: 0, message, finish_reason: message.tool_calls ? 'tool_calls' : 'stop', logprobs: null }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } }));
  });
});
await new Promise((r) => server.listen(0, '127.0.0.1', r));
const url = `http://127.0.0.1:${server.address().port}/v1`;

// --- what a prompt cache keeps: token prefixes
/** One message as a chat template renders it: role header, text, tool calls as {"name","arguments"} JSON. */
function render(m) {
  let s = `\n<${m.role}>\n${textOf(m.content)}`;
  for (const c of m.tool_calls ?? []) s += `\n<tool_call>${JSON.stringify({ name: c.function.name, arguments: c.function.arguments })}</tool_call>`;
  return `${s}\n</${m.role}>`;
}
const lcp = (a, b) => {
  let i = 0;
  while (i < a.length && i < b.length && a[i] === b[i]) i++;
  return i;
};
/** Tokens of a request's two parts, in template order: tools, then messages. */
const partsOf = (body) => ({ tools: encode(JSON.stringify(body.tools ?? [])), messages: encode(body.messages.map(render).join('')), rendered: body.messages.map(render) });
/** What `cur` re-prefills after `prev`, and the tokens of the messages it added. */
function compare(prev, cur) {
  const p = partsOf(prev); const c = partsOf(cur);
  const t = lcp(p.tools, c.tools);
  const toolsSame = t === p.tools.length && t === c.tools.length;
  const refillTools = toolsSame ? 0 : c.tools.length - t;
  const refillMessages = toolsSame ? c.messages.length - lcp(p.messages, c.messages) : c.messages.length;
  // added: messages of cur not in prev (as a multiset of renderings)
  const seen = new Map();
  for (const r of p.rendered) seen.set(r, (seen.get(r) ?? 0) + 1);
  let added = 0;
  for (const r of c.rendered) {
    if (seen.get(r)) seen.set(r, seen.get(r) - 1);
    else added += encode(r).length;
  }
  return { refillTools, refillMessages, refill: refillTools + refillMessages, added, ok: refillTools + refillMessages <= added + SLACK, toolsChanged: !toolsSame };
}

// --- the runs
const at = { z: 'f1', x: 0, y: 0 };
await helper.load([stubRegistryNode, llmAgentNode], [
  { id: 'f1', type: 'tab', label: 'bench' },
  { id: 'reg', type: 'stub-registry' },
  { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: url, model: 'm', maxIterations: 6, approvalRisk: 'never',
    systemPrompt: 'You operate the machines of this home through tools. Answer briefly.', wires: [['out'], [], []] },
  { id: 'out', type: 'helper', ...at },
], { llm: { apiKey: 'sk' } });
const node = helper.getNode('llm');
const out = helper.getNode('out');

/** Sends one message, returns the requests it caused and whether the wanted tool ran. */
async function run(p, sessionId, searchFirst) {
  script = { want: { agent: p.agent, tools: p.tools }, prompt: p.prompt, searchFirst };
  const from = requests.length;
  calls.length = 0;
  let onOut; let onErr; let timer;
  const done = new Promise((resolve, reject) => {
    onOut = resolve;
    onErr = (call) => reject(new Error(`run "${p.prompt}" failed: ${call.args?.[0]?.message ?? call.args?.[0]}`));
    timer = setTimeout(() => reject(new Error(`run "${p.prompt}" timed out`)), 30_000);
    out.on('input', onOut);
    node.on('call:error', onErr);
  });
  node.receive({ payload: p.prompt, sessionId });
  try {
    await done;
  } finally {
    clearTimeout(timer);
    out.off('input', onOut);
    node.off('call:error', onErr);
  }
  const bodies = requests.slice(from);
  const hit = calls.some((c) => c.agent === p.agent && p.tools.includes(c.tool));
  return { bodies, hit, found: script.searched === true };
}

console.log(`llm-agent prefill per turn (${AGENTS} agents / ${offered.length} tools, ${chosen.length} sessions of 2 runs, default budget, `
  + `gpt-tokenizer o200k_base, slack ${SLACK} tokens; Node ${process.version}, ${dist})`);
const rows = [];
const runs = [];
const cross = [];
for (const [i, p] of chosen.entries()) {
  const sessionId = `bench-${i}`;
  for (const [k, q] of [p, followUp(p)].entries()) {
    // a model that searches before it acts: run 1 of every SEARCH_EVERY-th session calls find_tools first
    const r = await run(q, sessionId, k === 0 && SEARCH_EVERY > 0 && i % SEARCH_EVERY === SEARCH_EVERY - 1);
    const turns = [];
    for (let j = 1; j < r.bodies.length; j++) turns.push(compare(r.bodies[j - 1], r.bodies[j]));
    const sum = (f) => turns.reduce((a, t) => a + f(t), 0);
    const block = encode(JSON.stringify(r.bodies[0].tools ?? [])).length;
    const rec = { run: k + 1, turns: r.bodies.length, block, refill: sum((t) => t.refill), added: sum((t) => t.added), ok: turns.every((t) => t.ok), hit: r.hit, toolsChanged: turns.some((t) => t.toolsChanged) };
    runs.push(rec);
    if (k === 1) {
      const prevRun = runs.at(-2);
      cross.push(compare(prevRun.lastBody, r.bodies[0]));
    }
    rec.lastBody = r.bodies.at(-1);
    rows.push({
      session: i, run: k + 1, prompt: q.prompt.length > 40 ? `${q.prompt.slice(0, 37)}...` : q.prompt, turns: r.bodies.length,
      find_tools: r.found ? (r.bodies[0].tools?.some((t) => offeredFn([t], script.want)) ? 'first' : 'needed') : '', 'tool block': block,
      're-prefilled tools': sum((t) => t.refillTools), 're-prefilled messages': sum((t) => t.refillMessages), added: rec.added,
      'only added': rec.ok ? 'yes' : 'NO', 'tool called': r.hit ? 'yes' : 'NO',
      ...(k === 1 ? { 'cross-run re-prefilled/added': `${cross.at(-1).refill}/${cross.at(-1).added}` } : {}),
    });
  }
}
console.table(rows);

const mean = (a) => a.reduce((x, y) => x + y, 0) / (a.length || 1);
const share = (a, f) => `${a.filter(f).length}/${a.length} (${((100 * a.filter(f).length) / (a.length || 1)).toFixed(0)}%)`;
const firsts = runs.filter((r) => r.run === 1);
const refillAll = runs.reduce((a, r) => a + r.refill, 0);
const addedAll = runs.reduce((a, r) => a + r.added, 0);
const laterTurns = runs.reduce((a, r) => a + r.turns - 1, 0);
console.log(`turns after the first prefilled only what they added (≤ added + ${SLACK} tokens): ${share(runs, (r) => r.ok)} of runs `
  + `(first runs of sessions: ${share(firsts, (r) => r.ok)}); tools offered changed within ${share(runs, (r) => r.toolsChanged)} runs`);
console.log(`tool block (first request, JSON of tools): mean ${Math.round(mean(runs.map((r) => r.block)))} tokens, max ${Math.max(...runs.map((r) => r.block))}`);
console.log(`recall (the labelled tool was called): ${share(runs, (r) => r.hit)} of runs; first runs: ${share(firsts, (r) => r.hit)}`);
console.log(`re-prefilled ${refillAll} tokens against ${addedAll} added over ${laterTurns} later turns: ${Math.round(refillAll / (laterTurns || 1))} vs ${Math.round(addedAll / (laterTurns || 1))} per turn; `
  + `at ${TPS} tokens/s prefill ${(refillAll / (laterTurns || 1) / TPS).toFixed(2)} s vs ${(addedAll / (laterTurns || 1) / TPS).toFixed(2)} s per turn`);
console.log(`cross-run (run 2's first request vs run 1's last, same session, catalog unchanged): only added in ${share(cross, (c) => c.ok)}; `
  + `re-prefilled ${Math.round(mean(cross.map((c) => c.refill)))} vs ${Math.round(mean(cross.map((c) => c.added)))} added tokens on average, tools changed in ${share(cross, (c) => c.toolsChanged)}`);

await helper.unload();
server.close();
process.exit(0);
