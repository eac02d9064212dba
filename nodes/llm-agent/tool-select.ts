/**
 * The tool budget of llm-agent (issue 12): which tools one chat-completions request offers.
 * OpenAI accepts at most 128 functions per request (API reference, "Create chat completion",
 * `tools`), and every definition costs prompt tokens (a local model's context is small: Ollama's
 * default is 4,096 tokens). Under the budget every tool is offered, as before. Over it each turn
 * offers, while the budget lasts: tools pinned in the dialog, tools the session already used, and
 * the best matches (BM25, `minisearch`) for the conversation's user text, an agent named in it
 * ranking its own tools first; plus the meta-tools `find_tools` and `call_tool`.
 *
 * The tool block is a stable prompt prefix (issue 20): a prompt cache (llama.cpp's, Ollama's)
 * keeps only the part of a request equal to the previous one, and the tools come first in every
 * chat template. So the block is chosen once, at the first turn of a session, and then frozen:
 * the same tools in one canonical order (by function name, `<agent>__<tool>`, then the two
 * meta-tools) for every turn of the run and every run of the session ({@link ToolBlockState},
 * kept by the llm-agent per session id). Tools the model finds later do not join it: `find_tools`
 * answers with their definitions as text, and `call_tool` calls one by name (tool-loop.ts runs
 * it as the real call). When the catalog changes the frozen block is kept as long as all of its
 * tools are still there and the pins are in it; otherwise it is chosen again (pinned, used,
 * the old block's survivors, then matches).
 *
 * The catalog's index, kept per llm-agent node and updated as the catalog changes, is
 * nodes/llm-agent/tool-index.ts.
 */
import type { ChatCompletionFunctionTool, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { globToRegExp } from '@toolmesh/agent/protocol/glob';
import { withReferences } from './tool-definition';
import { compareNames, estimateTokens, keyOf, type Entry, type ToolIndex } from './tool-index';

export { estimateTokens, ToolIndex, type AgentInfo } from './tool-index';

/** Default cap on tools per request. */
export const DEFAULT_MAX_TOOLS = 16;
/** OpenAI's cap on functions per request; the budget never goes above it. */
export const MAX_TOOLS_LIMIT = 128;
/** Default cap on the (estimated) tokens of the tool definitions of one request. */
export const DEFAULT_MAX_TOOL_TOKENS = 2500;
/** The search meta-tool's function name (catalog tools are always `<agent>__<tool>`, so it cannot collide). */
export const FIND_TOOLS = 'find_tools';
/** The call meta-tool's function name: `{"name": "<agent>__<tool>", "arguments": {...}}` calls any tool of the catalog. */
export const CALL_TOOL = 'call_tool';
/** Tools one `find_tools` call returns with their definitions. */
export const FIND_LIMIT = 8;
/** Further matches one `find_tools` call names (name and first line only; a search for the name gives the definition). */
export const FIND_MORE = 8;

/** The budget of one request. */
export interface ToolBudget {
  /** At most this many tools, `find_tools` and `call_tool` included (capped at {@link MAX_TOOLS_LIMIT}). */
  maxTools: number;
  /** At most this many estimated tokens of tool definitions. */
  maxTokens: number;
  /** Patterns `agent/tool` (`*` wildcards) of tools always offered. */
  pinned?: readonly string[];
}

/** Why a tool was offered in a turn. */
export type OfferReason = 'all' | 'pinned' | 'used' | 'match' | 'meta';

/** One tool a turn offered. */
export interface OfferedEntry {
  /** Function name. */
  name: string;
  agent?: string;
  tool?: string;
  reason: OfferReason;
  /** BM25 score (`match` and `found`). */
  score?: number;
}

/** What one turn offered (`msg.toolsOffered[i]`, run event `tools-offered`). */
export interface TurnOffer {
  iteration: number;
  /** Tools in the catalog. */
  catalog: number;
  /** Estimated tokens of the offered definitions. */
  tokens: number;
  /** False: the whole catalog fit the budget and was offered. */
  limited: boolean;
  tools: OfferedEntry[];
}

/** The `find_tools` definition. */
export const FIND_TOOLS_DEFINITION: ChatCompletionFunctionTool = {
  type: 'function',
  function: {
    name: FIND_TOOLS,
    description: 'Search all tools of the mesh; returns definitions for call_tool.',
    parameters: { type: 'object', properties: { query: { type: 'string', description: 'task and machine or room' } }, required: ['query'] },
  },
};

/** The `call_tool` definition: one string and one object, the flattest shape that carries any tool's arguments. */
export const CALL_TOOL_DEFINITION: ChatCompletionFunctionTool = {
  type: 'function',
  function: {
    name: CALL_TOOL,
    description: 'Call a tool that find_tools returned.',
    parameters: {
      type: 'object',
      properties: {
        name: { type: 'string', description: 'its name as returned' },
        arguments: { type: 'object' },
      },
      required: ['name', 'arguments'],
    },
  },
};

/** The meta-tools, in the order they close every limited tool block. */
const META_TOOLS = [FIND_TOOLS_DEFINITION, CALL_TOOL_DEFINITION];

/**
 * The frozen tool block of one session, kept by the caller between runs (the llm-agent keeps one
 * per session id, as many as it keeps conversations). Opaque to callers: pass the same object to
 * every run of the session ({@link ToolLoopOptions.toolSession}), a new one after a reset.
 */
export interface ToolBlockState {
  /** The chosen tools (index keys) in canonical order, with why each was chosen. */
  block?: Array<{ key: string; reason: OfferReason; score?: number }>;
  /** The index and its version the block was checked against. */
  index?: ToolIndex;
  version?: number;
  /** The budget it was chosen for (`maxTools`/`maxTokens`/pins). */
  budgetKey?: string;
}

/** The user text of a conversation: what the matches are ranked for (the last few user messages, newest first). */
export function conversationText(messages: readonly ChatCompletionMessageParam[], maxMessages = 3): string {
  const out: string[] = [];
  for (let i = messages.length - 1; i >= 0 && out.length < maxMessages; i--) {
    const m = messages[i];
    if (m.role !== 'user') continue;
    if (typeof m.content === 'string') out.push(m.content);
    else if (Array.isArray(m.content)) out.push(m.content.map((p) => (p.type === 'text' ? p.text : '')).join(' '));
  }
  return out.join('\n');
}

/** One match of `find_tools`. */
export interface FoundTool {
  entry: Entry;
  score: number;
  /** True when the tool is in the offered block (callable directly). */
  offered: boolean;
}

/** Selection state of one run; the block itself lives in a {@link ToolBlockState}. */
export class ToolSelection {
  /** Keys of tools the session used (history and this run), most recent last. */
  readonly used = new Set<string>();
  /** Keys of tools `find_tools` found, with their scores, most recent first (reported, never offered). */
  found: Array<{ key: string; score: number }> = [];
  private pinned: Entry[] = [];
  private pinnedAt = -1;
  private lastTurn?: { version: number; tools: ChatCompletionFunctionTool[]; offer: Omit<TurnOffer, 'iteration'> };

  /**
   * @param session the session's frozen block; a new one (frozen for this run only) when omitted.
   */
  constructor(readonly index: ToolIndex, readonly budget: ToolBudget | undefined, readonly session: ToolBlockState = {}) {}

  /** True when the catalog is over the budget: the block is a selection and the meta-tools are offered. */
  get active(): boolean {
    return this.budget !== undefined && !fits(this.index, this.budget);
  }

  /** Notes a tool call of the transcript (by function name). */
  noteUsed(name: string): void {
    const o = this.index.resolve(name);
    if (o) {
      const key = keyOf(o);
      this.used.delete(key);
      this.used.add(key);
    }
  }

  /**
   * The best matches for `query` that are not in the block (at most {@link FIND_LIMIT}), best
   * first, noted as found, with the block's tools that rank among them (`offered: true`); the
   * block does not change.
   */
  search(query: string): FoundTool[] {
    return this.searchMore(query).found;
  }

  /** {@link search}, plus the next {@link FIND_MORE} matches not in the block (`more`). */
  searchMore(query: string): { found: FoundTool[]; more: Entry[] } {
    const inBlock = new Set(this.session.block?.map((b) => b.key));
    const out: FoundTool[] = [];
    const more: Entry[] = [];
    let fresh = 0;
    for (const h of this.index.rank(query, FIND_LIMIT + FIND_MORE + inBlock.size)) {
      const offered = inBlock.has(keyOf(h.entry.offered));
      if (!offered && fresh >= FIND_LIMIT) {
        if (more.length >= FIND_MORE) break;
        more.push(h.entry);
        continue;
      }
      if (!offered) fresh++;
      out.push({ entry: h.entry, score: h.score, offered });
    }
    const hits = out.filter((h) => !h.offered);
    const keys = new Set(hits.map((h) => keyOf(h.entry.offered)));
    this.found = [...hits.map((h) => ({ key: keyOf(h.entry.offered), score: h.score })), ...this.found.filter((f) => !keys.has(f.key))];
    return { found: out, more };
  }

  /**
   * Runs `find_tools`: the tool message text. Each match not in the block is given as its
   * definition (`{"name","description","parameters"}`, JSON on one line, exactly what the block
   * would carry; a repeat of an earlier one in the answer by reference, {@link withReferences}), to
   * be called with `call_tool`; matches already offered are named on one line,
   * and the next {@link FIND_MORE} matches by name and first description line.
   */
  find(query: string): string {
    const { found: hits, more } = this.searchMore(query);
    if (!hits.length) return `No tool matches "${query}". Try other words: what the tool does, or the machine's name or room.`;
    const fresh = hits.filter((h) => !h.offered);
    const offered = hits.filter((h) => h.offered).map((h) => h.entry.name);
    const lines = withReferences(fresh.map((h) => h.entry.def)).map((d) => JSON.stringify(d.function));
    if (offered.length) lines.push(`Also matching, already in your tools (call them directly): ${offered.join(', ')}`);
    if (more.length) lines.push(`More matches (${FIND_TOOLS} with the exact name gives the definition):`, ...more.map((e) => `- ${e.name}: ${firstLine(e.offered.tool.description)}`));
    return `Found ${fresh.length} tools for "${query}". Call one with ${CALL_TOOL} {"name": "<name>", "arguments": {...}}:\n${lines.join('\n')}`;
  }

  /**
   * The tools of the next request and why each is there. Under the budget: every tool, sorted by
   * function name. Over it: the session's frozen block (chosen now when there is none, or when
   * the catalog changed under it), sorted by function name, then `find_tools` and `call_tool`.
   * The same catalog version gives the same array, so every turn of a run sends identical tools.
   */
  turn(messages: readonly ChatCompletionMessageParam[], iteration: number): { tools: ChatCompletionFunctionTool[]; offer: TurnOffer } {
    const { index, budget } = this;
    if (this.lastTurn?.version === index.version) return { tools: this.lastTurn.tools, offer: { iteration, ...this.lastTurn.offer, tools: [...this.lastTurn.offer.tools] } };
    let tools: ChatCompletionFunctionTool[];
    let offer: Omit<TurnOffer, 'iteration'>;
    if (!budget || fits(index, budget)) {
      tools = [];
      const entries: OfferedEntry[] = [];
      for (const e of index.sortedEntries()) {
        tools.push(e.def);
        entries.push({ name: e.name, agent: e.offered.agentId, tool: e.offered.tool.name, reason: 'all' });
      }
      const r = referenced(tools, index.totalTokens);
      tools = r.tools;
      offer = { catalog: index.size, tokens: r.tokens, limited: false, tools: entries };
    } else {
      const block = this.block(messages, budget);
      tools = [];
      const entries: OfferedEntry[] = [];
      let tokens = 0;
      for (const b of block) {
        const e = index.entryOf(b.key)!;
        tools.push(e.def);
        tokens += e.tokens;
        entries.push({ name: e.name, agent: e.offered.agentId, tool: e.offered.tool.name, reason: b.reason, ...(b.score !== undefined ? { score: b.score } : {}) });
      }
      for (const m of META_TOOLS) {
        tools.push(m);
        tokens += estimateTokens(m);
        entries.push({ name: m.function.name, reason: 'meta' });
      }
      const r = referenced(tools, tokens);
      tools = r.tools;
      offer = { catalog: index.size, tokens: r.tokens, limited: true, tools: entries };
    }
    this.lastTurn = { version: index.version, tools, offer };
    return { tools, offer: { iteration, ...offer, tools: [...offer.tools] } };
  }

  /** The session's block, checked against the catalog (and chosen again when it no longer holds). */
  private block(messages: readonly ChatCompletionMessageParam[], budget: ToolBudget): NonNullable<ToolBlockState['block']> {
    const { index, session } = this;
    const budgetKey = `${budget.maxTools}\0${budget.maxTokens}\0${(budget.pinned ?? []).join('\n')}`;
    const pinned = this.pinnedEntries(budget);
    if (session.block && session.index === index && session.budgetKey === budgetKey) {
      if (session.version === index.version) return session.block;
      // the catalog changed: the block holds while every tool of it is still there, the pins are in it and it fits
      const keys = new Set(session.block.map((b) => b.key));
      let tokens = META_TOOLS.reduce((n, m) => n + estimateTokens(m), 0);
      let whole = true;
      for (const b of session.block) {
        const e = index.entryOf(b.key);
        if (!e) { whole = false; break; }
        tokens += e.tokens;
      }
      if (whole && tokens <= budget.maxTokens && pinned.every((e) => keys.has(keyOf(e.offered)))) {
        session.version = index.version;
        return session.block;
      }
    }
    const previous = session.index === index ? session.block ?? [] : [];
    const chosen = this.choose(messages, budget, pinned, previous);
    Object.assign(session, { block: chosen, index, version: index.version, budgetKey });
    return chosen;
  }

  /** Chooses a block: pinned, used (most recent first), the previous block's tools, then the matches; sorted by function name. */
  private choose(messages: readonly ChatCompletionMessageParam[], budget: ToolBudget, pinned: Entry[], previous: NonNullable<ToolBlockState['block']>) {
    const { index } = this;
    const room = Math.min(budget.maxTools, MAX_TOOLS_LIMIT) - META_TOOLS.length;
    let tokens = META_TOOLS.reduce((n, m) => n + estimateTokens(m), 0);
    const chosen: Array<{ entry: Entry; reason: OfferReason; score?: number }> = [];
    const taken = new Set<Entry>();
    const take = (e: Entry | undefined, reason: OfferReason, score?: number): boolean => {
      if (!e || taken.has(e)) return true;
      if (chosen.length >= room) return false;
      if (tokens + e.tokens > budget.maxTokens) return true; // a smaller one may still fit
      taken.add(e);
      tokens += e.tokens;
      chosen.push({ entry: e, reason, ...(score !== undefined ? { score: round(score) } : {}) });
      return true;
    };
    for (const e of pinned) if (!take(e, 'pinned')) break;
    for (const key of [...this.used].reverse()) if (!take(index.entryOf(key), 'used')) break;
    for (const b of previous) if (!take(index.entryOf(b.key), b.reason, b.score)) break;
    for (const h of index.rank(conversationText(messages), MAX_TOOLS_LIMIT)) if (!take(h.entry, 'match', h.score)) break;
    return chosen.sort((a, b) => compareNames(a.entry.name, b.entry.name)).map((c) => ({ key: keyOf(c.entry.offered), reason: c.reason, ...(c.score !== undefined ? { score: c.score } : {}) }));
  }

  private pinnedEntries(budget: ToolBudget): Entry[] {
    if (!budget.pinned?.length) return [];
    if (this.pinnedAt !== this.index.version) {
      const pins = budget.pinned.map((p) => globToRegExp(p.trim(), '/'));
      this.pinned = [...this.index.sortedEntries()].filter((e) => pins.some((re) => re.test(`${e.offered.agentId}/${e.offered.tool.name}`)));
      this.pinnedAt = this.index.version;
    }
    return this.pinned;
  }
}

function fits(index: ToolIndex, budget: ToolBudget): boolean {
  return index.size <= Math.min(budget.maxTools, MAX_TOOLS_LIMIT) && index.totalTokens <= budget.maxTokens;
}

const round = (n: number) => Math.round(n * 100) / 100;
const firstLine = (s: string) => {
  const line = s.trim().split('\n')[0] ?? '';
  return line.length > 100 ? `${line.slice(0, 97)}...` : line;
};

/**
 * `defs` {@link withReferences}, with `total` (the estimated tokens of `defs`) less what the
 * definitions rendered by reference save.
 */
function referenced(defs: ChatCompletionFunctionTool[], total: number): { tools: ChatCompletionFunctionTool[]; tokens: number } {
  const tools = withReferences(defs);
  let tokens = total;
  for (let i = 0; i < tools.length; i++) if (tools[i] !== defs[i]) tokens -= estimateTokens(defs[i]) - estimateTokens(tools[i]);
  return { tools, tokens };
}
