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
 * The index is kept per catalog and updated incrementally (tools are added and discarded as the
 * catalog changes), so a turn costs one search, not an index build.
 */
import MiniSearch from 'minisearch';
import type { ChatCompletionFunctionTool, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { globToRegExp } from '../../protocol/glob';
import { assignToolNames } from '../../protocol/tool-names';
import type { OfferedTool } from '../shared/registry-api';

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

/** Agent facts the index searches besides the tools' own text. */
export interface AgentInfo {
  id: string;
  name?: string;
  kind?: string;
}

/**
 * Estimated tokens of one tool definition as sent (its JSON). Calibrated against gpt-tokenizer
 * (o200k_base) on the packs' catalogs (bench/tool-selection.mjs prints the error): about 4.15
 * characters a token for the text, JSON punctuation mostly merged into its neighbours' tokens.
 */
export function estimateTokens(def: ChatCompletionFunctionTool): number {
  const json = JSON.stringify(def);
  let punct = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 34 || c === 123 || c === 125 || c === 58 || c === 44 || c === 91 || c === 93) punct++;
  }
  return Math.ceil((json.length - punct) / 4.15 + punct * 0.2) + 3;
}

const STOP = new Set(('a an and are as at be by can could do does for from get give has have how i if in into is it its me my of on or '
  + 'please show tell that the their them then there these this to up us was we what when where which who why will with would you your '
  + 'der die das und ist ein eine auf im in mir mit von zu bitte wie was'
).split(' '));

/** Terms of a text: lower case, split at anything but letters and digits, stop words left out. */
function terms(text: string): string[] {
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((t) => t.length > 1 && !STOP.has(t));
}

interface Doc {
  id: number;
  key: string;
  agent: string;
  tool: string;
  text: string;
  params: string;
  agentText: string;
}

/** The parameter names and descriptions of a JSON Schema (one level of nesting is enough for tool inputs). */
function paramText(schema: unknown, depth = 0): string {
  const props = (schema as { properties?: Record<string, { description?: string; properties?: unknown }> } | undefined)?.properties;
  if (!props || depth > 2) return '';
  return Object.entries(props).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v?.description ?? ''} ${paramText(v, depth + 1)}`).join(' ');
}

const keyOf = (o: { agentId: string; tool: { name: string } }) => `${o.agentId}\0${o.tool.name}`;

/** The definition the model reads, as {@link buildToolNames} makes it. */
function definitionOf(name: string, o: OfferedTool): ChatCompletionFunctionTool {
  const risk = o.tool.annotations?.risk ?? 'unknown';
  const text = o.tool.description.trim();
  return { type: 'function', function: { name, description: `${text}${text ? '\n' : ''}(tool "${o.tool.name}" on agent "${o.agentId}", risk: ${risk})`, parameters: o.tool.inputSchema } };
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

/** One catalog entry: the tool, its function name and definition (built once), its token estimate. */
interface Entry {
  offered: OfferedTool;
  name: string;
  def: ChatCompletionFunctionTool;
  tokens: number;
  docId: number;
}

/**
 * The catalog as the selection sees it: function names, definitions, token estimates and the
 * BM25 index. {@link sync} brings it up to date with a new catalog, re-indexing only the tools
 * that changed.
 */
export class ToolIndex {
  private readonly search = new MiniSearch<Doc>({
    fields: ['tool', 'text', 'params', 'agentText'],
    storeFields: ['key', 'agent'],
    tokenize: (t) => t.split(/[^\p{L}\p{N}]+/u),
    processTerm: (t) => {
      const s = t.toLowerCase();
      return s.length > 1 && !STOP.has(s) ? s : null;
    },
    searchOptions: { boost: { tool: 2, text: 1, params: 0.5, agentText: 1.5 } },
  });
  private byKey = new Map<string, Entry>();
  private byName = new Map<string, Entry>();
  private byDoc = new Map<number, Entry>();
  private agentsById = new Map<string, AgentInfo>();
  private nextId = 1;
  /** Documents not yet in the search index (indexing waits for the first search: without a budget there is none). */
  private pending = new Map<number, Doc>();
  private lastTools?: readonly OfferedTool[];
  private lastRevision?: unknown;
  /** Agent ids and names (lower case) → agent id, for mentions in the prompt. */
  private mentionable = new Map<string, string>();
  totalTokens = 0;
  /** Bumped whenever the catalog changed. */
  version = 0;

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Updates the index to `tools`. With a `revision` equal to the last one nothing is read;
   * without one, the same array as last time is skipped and otherwise the catalogs are compared
   * tool by tool (by object identity, then by content).
   */
  sync(read: () => readonly OfferedTool[], agents?: () => readonly AgentInfo[], revision?: unknown): void {
    if (revision !== undefined && this.lastRevision !== undefined && revision === this.lastRevision) return;
    const tools = read();
    if (tools === this.lastTools && revision === undefined) return;
    this.lastTools = tools;
    this.lastRevision = revision;
    this.version++;
    const agentList = agents?.() ?? [];
    // agents whose name or kind changed are re-indexed (a new agent has no tools indexed yet)
    const changedAgents = new Set<string>();
    for (const a of agentList) {
      const old = this.agentsById.get(a.id);
      if (old && (old.name !== a.name || old.kind !== a.kind)) changedAgents.add(a.id);
    }
    if (agentList.length) this.agentsById = new Map(agentList.map((a) => [a.id, a]));
    const seen = new Set<string>();
    const keep = new Map<string, Entry>();
    for (const o of tools) {
      const key = keyOf(o);
      if (seen.has(key)) continue;
      seen.add(key);
      const old = this.byKey.get(key);
      if (old && (old.offered.tool === o.tool || sameTool(old.offered, o)) && !changedAgents.has(o.agentId)) {
        old.offered = o;
        keep.set(key, old);
      }
    }
    for (const [key, e] of this.byKey) {
      if (!keep.has(key)) {
        if (!this.pending.delete(e.docId)) this.search.discard(e.docId);
        this.byDoc.delete(e.docId);
      }
    }
    const names = assignToolNames(tools);
    const byKey = new Map<string, Entry>();
    const byName = new Map<string, Entry>();
    let total = 0;
    for (const [name, o] of names) {
      const key = keyOf(o);
      let e = keep.get(key);
      if (!e || e.name !== name) {
        const def = definitionOf(name, o);
        const docId = e?.docId ?? this.nextId++;
        e = { offered: o, name, def, tokens: estimateTokens(def), docId };
        if (!keep.has(key)) {
          const a = this.agentsById.get(o.agentId);
          this.pending.set(docId, { id: docId, key, agent: o.agentId, tool: o.tool.name.replace(/[_.-]/g, ' '), text: o.tool.description, params: paramText(o.tool.inputSchema),
            agentText: `${o.agentId} ${a?.name ?? ''} ${a?.kind ?? ''}` });
        }
        this.byDoc.set(docId, e);
      }
      byKey.set(key, e);
      byName.set(name, e);
      total += e.tokens;
    }
    this.byKey = byKey;
    this.byName = byName;
    this.totalTokens = total;
    this.mentionable = new Map();
    for (const e of byKey.values()) {
      const id = e.offered.agentId;
      if (this.mentionable.has(id.toLowerCase())) continue;
      this.mentionable.set(id.toLowerCase(), id);
      const n = this.agentsById.get(id)?.name;
      if (n && n.length > 3) this.mentionable.set(n.toLowerCase(), id);
    }
  }

  /** The entry behind a function name. */
  resolve(name: string): OfferedTool | undefined {
    return this.byName.get(name)?.offered;
  }

  entryOf(key: string): Entry | undefined {
    return this.byKey.get(key);
  }

  entryByName(name: string): Entry | undefined {
    return this.byName.get(name);
  }

  /** Every entry, in catalog order. */
  entries(): IterableIterator<Entry> {
    return this.byKey.values();
  }

  /** Agent ids named in `text` (ids and agent names, whole words). */
  mentions(text: string): Set<string> {
    const found = new Set<string>();
    const lower = text.toLowerCase();
    if (!lower) return found;
    for (const [m, id] of this.mentionable) {
      let at = lower.indexOf(m);
      while (at >= 0) {
        const before = at === 0 ? '' : lower[at - 1];
        const after = lower[at + m.length] ?? '';
        if (!/[\p{L}\p{N}_-]/u.test(before) && !/[\p{L}\p{N}_]/u.test(after) && !(after === '-' && /[\p{L}\p{N}]/u.test(lower[at + m.length + 1] ?? ''))) {
          found.add(id);
          break;
        }
        at = lower.indexOf(m, at + 1);
      }
    }
    return found;
  }

  /**
   * The best matches for `text`, best first: BM25 over tool name, description, parameters and
   * agent id, name and kind; tools of an agent named in the text first.
   */
  rank(text: string, limit: number): Array<{ entry: Entry; score: number }> {
    const q = terms(text);
    if (!q.length || !this.byKey.size) return [];
    if (this.pending.size) {
      this.search.addAll([...this.pending.values()]);
      this.pending.clear();
    }
    const named = this.mentions(text);
    const hits = this.search.search(q.join(' '), { combineWith: 'OR', prefix: (t) => t.length > 4 });
    const out: Array<{ entry: Entry; score: number; named: boolean }> = [];
    for (const h of hits) {
      const e = this.byDoc.get(h.id as number);
      if (!e || this.byKey.get(keyOf(e.offered)) !== e) continue;
      out.push({ entry: e, score: h.score, named: named.has(e.offered.agentId) });
    }
    if (named.size) out.sort((a, b) => Number(b.named) - Number(a.named) || b.score - a.score);
    return out.slice(0, limit).map(({ entry, score }) => ({ entry, score }));
  }
}

function sameTool(a: OfferedTool, b: OfferedTool): boolean {
  return a.tool.description === b.tool.description && a.tool.annotations?.risk === b.tool.annotations?.risk
    && JSON.stringify(a.tool.inputSchema) === JSON.stringify(b.tool.inputSchema);
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
