/**
 * The tool budget of llm-agent (issue 12): which tools one chat-completions request offers.
 * OpenAI accepts at most 128 functions per request (API reference, "Create chat completion",
 * `tools`), and every definition costs prompt tokens (a local model's context is small: Ollama's
 * default is 4,096 tokens). Under the budget every tool is offered, as before. Over it each turn
 * offers, in this order and while the budget lasts: tools pinned in the dialog, tools the session
 * already used, tools the model found with the meta-tool `find_tools`, and the best matches
 * (BM25, `minisearch`) for the conversation's user text, an agent named in it ranking its own
 * tools first; plus `find_tools` itself.
 *
 * The catalog's index, kept per llm-agent node and updated as the catalog changes, is
 * nodes/llm-agent/tool-index.ts.
 */
import type { ChatCompletionFunctionTool, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { globToRegExp } from '../../protocol/glob';
import { estimateTokens, keyOf, type Entry, type ToolIndex } from './tool-index';

export { estimateTokens, ToolIndex, type AgentInfo } from './tool-index';

/** Default cap on tools per request. */
export const DEFAULT_MAX_TOOLS = 16;
/** OpenAI's cap on functions per request; the budget never goes above it. */
export const MAX_TOOLS_LIMIT = 128;
/** Default cap on the (estimated) tokens of the tool definitions of one request. */
export const DEFAULT_MAX_TOOL_TOKENS = 2500;
/** The meta-tool's function name (catalog tools are always `<agent>__<tool>`, so it cannot collide). */
export const FIND_TOOLS = 'find_tools';
/** Tools one `find_tools` call loads. */
export const FIND_LIMIT = 8;

/** The budget of one request. */
export interface ToolBudget {
  /** At most this many tools, `find_tools` included (capped at {@link MAX_TOOLS_LIMIT}). */
  maxTools: number;
  /** At most this many estimated tokens of tool definitions. */
  maxTokens: number;
  /** Patterns `agent/tool` (`*` wildcards) of tools always offered. */
  pinned?: readonly string[];
}

/** Why a tool was offered in a turn. */
export type OfferReason = 'all' | 'pinned' | 'used' | 'found' | 'match' | 'meta';

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
    description: 'Search every tool of the mesh when none of the offered tools fits. Matching tools are offered from the next turn.',
    parameters: { type: 'object', properties: { query: { type: 'string', description: 'what the tool should do, and on which machine or room' } }, required: ['query'] },
  },
};

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

/** Selection state of one run. */
export class ToolSelection {
  /** Keys of tools the session used (history and this run), most recent last. */
  readonly used = new Set<string>();
  /** Keys of tools `find_tools` found, with their scores, most recent first. */
  found: Array<{ key: string; score: number }> = [];
  private lastQuery?: string;
  private lastRank: Array<{ entry: Entry; score: number }> = [];
  private pinned: Entry[] = [];
  private pinnedAt = -1;

  constructor(readonly index: ToolIndex, readonly budget: ToolBudget | undefined) {}

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

  /** Runs `find_tools`: the matches for `query` join the next turns' offer. Returns the tool message text. */
  find(query: string): string {
    const hits = this.index.rank(query, FIND_LIMIT);
    if (!hits.length) return `No tool matches "${query}". Try other words: what the tool does, or the machine's name or room.`;
    const keys = new Set(hits.map((h) => keyOf(h.entry.offered)));
    this.found = [...hits.map((h) => ({ key: keyOf(h.entry.offered), score: h.score })), ...this.found.filter((f) => !keys.has(f.key))];
    const lines = hits.map((h) => `- ${h.entry.name}: ${firstLine(h.entry.offered.tool.description)}`);
    return `Found ${hits.length} tools for "${query}"; they are offered from the next turn:\n${lines.join('\n')}`;
  }

  /** The tools of the next request and why each is there. */
  turn(messages: readonly ChatCompletionMessageParam[], iteration: number): { tools: ChatCompletionFunctionTool[]; offer: TurnOffer } {
    const { index, budget } = this;
    if (!budget || fits(index, budget)) {
      const tools: ChatCompletionFunctionTool[] = [];
      const entries: OfferedEntry[] = [];
      for (const e of index.entries()) {
        tools.push(e.def);
        entries.push({ name: e.name, agent: e.offered.agentId, tool: e.offered.tool.name, reason: 'all' });
      }
      return { tools, offer: { iteration, catalog: index.size, tokens: index.totalTokens, limited: false, tools: entries } };
    }
    const maxTools = Math.min(budget.maxTools, MAX_TOOLS_LIMIT);
    const meta = estimateTokens(FIND_TOOLS_DEFINITION);
    const tools: ChatCompletionFunctionTool[] = [];
    const entries: OfferedEntry[] = [];
    const taken = new Set<Entry>();
    let tokens = meta;
    const room = maxTools - 1;
    const take = (e: Entry | undefined, reason: OfferReason, score?: number): boolean => {
      if (!e || taken.has(e)) return true;
      if (tools.length >= room) return false;
      if (tokens + e.tokens > budget.maxTokens) return true; // a smaller one may still fit
      taken.add(e);
      tokens += e.tokens;
      tools.push(e.def);
      entries.push({ name: e.name, agent: e.offered.agentId, tool: e.offered.tool.name, reason, ...(score !== undefined ? { score: round(score) } : {}) });
      return true;
    };
    if (budget.pinned?.length) {
      if (this.pinnedAt !== index.version) {
        const pins = budget.pinned.map((p) => globToRegExp(p.trim(), '/'));
        this.pinned = [...index.entries()].filter((e) => pins.some((re) => re.test(`${e.offered.agentId}/${e.offered.tool.name}`)));
        this.pinnedAt = index.version;
      }
      for (const e of this.pinned) if (!take(e, 'pinned')) break;
    }
    for (const key of [...this.used].reverse()) if (!take(index.entryOf(key), 'used')) break;
    for (const f of this.found) if (!take(index.entryOf(f.key), 'found', f.score)) break;
    const query = conversationText(messages);
    if (query !== this.lastQuery) {
      this.lastQuery = query;
      this.lastRank = index.rank(query, MAX_TOOLS_LIMIT);
    }
    for (const h of this.lastRank) if (!take(h.entry, 'match', h.score)) break;
    tools.push(FIND_TOOLS_DEFINITION);
    entries.push({ name: FIND_TOOLS, reason: 'meta' });
    return { tools, offer: { iteration, catalog: index.size, tokens, limited: true, tools: entries } };
  }
}

function fits(index: ToolIndex, budget: ToolBudget): boolean {
  return index.size <= Math.min(budget.maxTools, MAX_TOOLS_LIMIT) && index.totalTokens <= budget.maxTokens;
}

const round = (n: number) => Math.round(n * 100) / 100;
const firstLine = (s: string) => {
  const line = s.trim().split('\n')[0] ?? '';
  return line.length > 140 ? `${line.slice(0, 137)}...` : line;
};
