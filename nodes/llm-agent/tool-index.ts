/**
 * The llm-agent's index of the catalog for its tool budget (nodes/llm-agent/tool-select.ts):
 * function names and definitions built once per tool, their token estimates, and two BM25
 * indexes (`minisearch`): the text of each distinct tool (a "template", shared by every agent
 * that offers it) and each agent's id, name and kind. It is kept per llm-agent node and updated
 * as the catalog changes (`sync` walks the catalog, `syncByAgent` only the agents that changed),
 * so a turn costs one search, not an index build.
 */
import MiniSearch from 'minisearch';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import { assignToolNames, FUNCTION_NAME_PATTERN } from '@toolmesh/agent/protocol/tool-names';
import type { OfferedTool } from '../shared/registry-api';
import { Best } from './best';
import { toFunctionDefinition } from './tool-definition';

/** Agent facts the index searches besides the tools' own text. */
export interface AgentInfo {
  id: string;
  name?: string;
  kind?: string;
}

/**
 * Estimated tokens of one tool definition as sent (its JSON). Calibrated against gpt-tokenizer
 * (o200k_base) on the packs' catalogs as tool-definition.ts renders them (bench/tool-selection.mjs
 * prints the error): about 4.15 characters a token for the text, JSON punctuation mostly merged
 * into its neighbours' tokens.
 */
export function estimateTokens(def: ChatCompletionFunctionTool): number {
  const json = JSON.stringify(def);
  let punct = 0;
  for (let i = 0; i < json.length; i++) {
    const c = json.charCodeAt(i);
    if (c === 34 || c === 123 || c === 125 || c === 58 || c === 44 || c === 91 || c === 93) punct++;
  }
  return Math.ceil((json.length - punct) / 4.15 + punct * 0.2);
}

const STOP = new Set(('a an and are as at be by can could do does for from get give has have how i if in into is it its me my of on or '
  + 'please show tell that the their them then there these this to up us was we what when where which who why will with would you your '
  + 'der die das und ist ein eine auf im in mir mit von zu bitte wie was'
).split(' '));

/** Terms of a text: lower case, split at anything but letters and digits, stop words left out. */
function terms(text: string): string[] {
  return text.toLowerCase().split(/[^\p{L}\p{N}]+/u).filter((t) => t.length > 1 && !STOP.has(t));
}


/** The parameter names and descriptions of a JSON Schema (one level of nesting is enough for tool inputs). */
function paramText(schema: unknown, depth = 0): string {
  const props = (schema as { properties?: Record<string, { description?: string; properties?: unknown }> } | undefined)?.properties;
  if (!props || depth > 2) return '';
  return Object.entries(props).map(([k, v]) => `${k.replace(/_/g, ' ')} ${v?.description ?? ''} ${paramText(v, depth + 1)}`).join(' ');
}

/**
 * The canonical order of tools in a request: by function name, compared by UTF-16 code units (no
 * locale), so it is the same on every machine and does not depend on when an agent connected.
 */
export const compareNames = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

/** An (agent, tool) pair's key in the index and in a selection's used and found lists. */
export const keyOf = (o: { agentId: string; tool: { name: string } }) => `${o.agentId}\0${o.tool.name}`;

/** One catalog entry: the tool, its function name and definition (built once), its token estimate. */
export interface Entry {
  offered: OfferedTool;
  name: string;
  def: ChatCompletionFunctionTool;
  tokens: number;
  /** The tool's text (name, description, parameters), shared by every agent that offers the same tool. */
  template: number;
}

interface TemplateDoc {
  id: number;
  tool: string;
  text: string;
  params: string;
}

interface AgentDoc {
  id: string;
  agentText: string;
}

const tokenize = (t: string) => t.split(/[^\p{L}\p{N}]+/u);
const processTerm = (t: string) => {
  const s = t.toLowerCase();
  return s.length > 1 && !STOP.has(s) ? s : null;
};

/** Weight of an agent's match (id, name, kind) against a tool's match (name, description, parameters). */
const AGENT_WEIGHT = 1.5;
/** Agents whose id, name or kind match that are crossed with their tools in a ranking. */
const AGENT_CANDIDATES = 64;

/**
 * The catalog as the selection sees it: function names, definitions, token estimates and the
 * BM25 indexes. A mesh repeats the same tools on many agents, so the text of each distinct tool
 * (a "template") is indexed once and each agent's id, name and kind once; a tool on an agent
 * scores its template's match plus its agent's. {@link sync} brings it up to date with a new
 * catalog, indexing only new templates and agents.
 */
export class ToolIndex {
  private readonly templates = new MiniSearch<TemplateDoc>({
    fields: ['tool', 'text', 'params'], tokenize, processTerm, searchOptions: { boost: { tool: 2, text: 1, params: 0.5 } },
  });
  private readonly agentSearch = new MiniSearch<AgentDoc>({ fields: ['agentText'], tokenize, processTerm });
  private byKey = new Map<string, Entry>();
  private byName = new Map<string, Entry>();
  /** Template id by tool content, and by tool object (the fast path for unchanged catalogs). */
  private readonly templateIds = new Map<string, number>();
  private readonly templateOf = new WeakMap<object, number>();
  private pendingTemplates: TemplateDoc[] = [];
  /** Per template, its entries in catalog order; per agent, its entries by template. */
  private byTemplate = new Map<number, Set<Entry>>();
  private byAgent = new Map<string, Map<number, Entry>>();
  /** Agent docs indexed, by agent id, with the text indexed. */
  private readonly indexedAgents = new Map<string, string>();
  private pendingAgents = new Map<string, string>();
  private agentsById = new Map<string, AgentInfo>();
  private lastTools?: readonly OfferedTool[];
  /** Per agent, the array {@link syncByAgent} indexed (undefined after {@link sync}). */
  private groups?: Map<string, readonly OfferedTool[]>;
  /** True when every function name is the plain `<agent>__<tool>` (then agents can be updated one by one). */
  private plainNames = false;
  private lastRevision?: unknown;
  /** Agent ids and names (lower case) → agent id, for mentions in the prompt. */
  private mentionable = new Map<string, string>();
  /** The keys of {@link mentionable} each agent put there. */
  private mentionsOf = new Map<string, string[]>();
  private sorted?: { version: number; entries: Entry[] };
  totalTokens = 0;
  /** Bumped whenever the catalog changed. */
  version = 0;

  get size(): number {
    return this.byKey.size;
  }

  /**
   * Updates the index to `tools`. With a `revision` equal to the last one nothing is read;
   * without one, the same array as last time is skipped. Cost: one step per tool.
   */
  sync(read: () => readonly OfferedTool[], agents?: () => readonly AgentInfo[], revision?: unknown): void {
    if (revision !== undefined && this.lastRevision !== undefined && revision === this.lastRevision) return;
    const tools = read();
    if (tools === this.lastTools && revision === undefined) return;
    this.lastTools = tools;
    this.lastRevision = revision;
    this.version++;
    this.readAgents(agents);
    this.rebuild(tools);
    this.indexAgents();
  }

  /**
   * Updates the index to the tools of `read()`, grouped by agent id, where an agent's array is
   * the same object while its tools are unchanged (`ToolRegistryApi.toolsByAgent`). Only the
   * agents whose array changed are re-indexed: after one agent of 1,000 re-published its catalog
   * a turn costs one step per agent plus that agent's tools, not one per tool of the mesh. Falls
   * back to a whole rebuild the first time, and whenever a function name is not the plain
   * `<agent>__<tool>` (hashed or colliding names are assigned over the whole catalog). With a
   * `revision` equal to the last one nothing is read.
   */
  syncByAgent(read: () => ReadonlyMap<string, readonly OfferedTool[]>, agents?: () => readonly AgentInfo[], revision?: unknown): void {
    if (revision !== undefined && this.lastRevision !== undefined && revision === this.lastRevision) return;
    const groups = read();
    const old = this.groups;
    const moved = old && changedGroups(old, groups);
    if (revision === undefined && moved?.size === 0) return;
    this.lastTools = undefined;
    this.lastRevision = revision;
    this.version++;
    const changed = this.readAgents(agents);
    if (old && moved && this.plainNames && this.updateAgents(old, groups, moved, changed)) return this.indexAgents(changed);
    this.rebuild([...groups.values()].flat(), groups);
    this.indexAgents();
  }

  /**
   * Re-indexes the agents `moved` (their array changed from `old` to `groups`, see
   * {@link changedGroups}), adding their ids to `changed`; false (state to be rebuilt) when a
   * name is not plain.
   */
  private updateAgents(old: Map<string, readonly OfferedTool[]>, groups: ReadonlyMap<string, readonly OfferedTool[]>,
    moved: ReadonlySet<string>, changed: Set<string>): boolean {
    const reusable = new Map<string, Entry>();
    for (const id of moved) {
      changed.add(id);
      for (const e of this.byAgent.get(id)?.values() ?? []) {
        const key = keyOf(e.offered);
        this.byKey.delete(key);
        this.byName.delete(e.name);
        this.byTemplate.get(e.template)?.delete(e);
        this.totalTokens -= e.tokens;
        reusable.set(key, e);
      }
      this.byAgent.delete(id);
    }
    for (const id of moved) {
      const tools = groups.get(id);
      if (!tools) continue;
      const mine = new Map<number, Entry>();
      this.byAgent.set(id, mine);
      for (const o of tools) {
        const name = `${o.agentId}__${o.tool.name}`;
        if (o.agentId !== id || this.byName.has(name) || !FUNCTION_NAME_PATTERN.test(name)) return false;
        this.add(this.entryFor(name, o, reusable.get(keyOf(o))), mine);
      }
    }
    for (const id of moved) {
      const tools = groups.get(id);
      if (tools) old.set(id, tools);
      else old.delete(id);
    }
    return true;
  }

  /** The entry of `o` named `name`: `old` again when it is the same tool under the same name. */
  private entryFor(name: string, o: OfferedTool, old: Entry | undefined): Entry {
    if (old && old.name === name && old.offered.tool === o.tool) {
      old.offered = o;
      return old;
    }
    // the definition is made of the name, the template's text (name, description, input schema) and the risk
    const template = this.templateIdOf(o.tool);
    if (old && old.name === name && old.template === template && old.offered.tool.annotations?.risk === o.tool.annotations?.risk) {
      old.offered = o;
      return old;
    }
    const def = toFunctionDefinition(name, o);
    return { offered: o, name, def, tokens: estimateTokens(def), template };
  }

  /** Puts `e` in the lookups, in `mine` (its agent's entries by template) and the token total. */
  private add(e: Entry, mine: Map<number, Entry>): void {
    this.byKey.set(keyOf(e.offered), e);
    this.byName.set(e.name, e);
    let list = this.byTemplate.get(e.template);
    if (!list) this.byTemplate.set(e.template, (list = new Set()));
    list.add(e);
    mine.set(e.template, e);
    this.totalTokens += e.tokens;
  }

  /** Rebuilds the entries from the whole catalog `tools` (grouped as `groups` when read so). */
  private rebuild(tools: readonly OfferedTool[], groups?: ReadonlyMap<string, readonly OfferedTool[]>): void {
    const { names, plain } = namesOf(tools);
    const old = this.byKey; // entries of unchanged tools are kept
    this.byKey = new Map();
    this.byName = new Map();
    this.byTemplate = new Map();
    this.byAgent = new Map();
    this.totalTokens = 0;
    for (const [name, o] of names) {
      let mine = this.byAgent.get(o.agentId);
      if (!mine) this.byAgent.set(o.agentId, (mine = new Map()));
      this.add(this.entryFor(name, o, old.get(keyOf(o))), mine);
    }
    this.plainNames = plain;
    this.groups = groups && new Map(groups);
  }

  /**
   * Takes in the agents' facts (name, kind); returns the ids whose facts are new or changed.
   * Agents no longer listed keep their last facts: only agents with tools are ever looked up.
   */
  private readAgents(agents?: () => readonly AgentInfo[]): Set<string> {
    const changed = new Set<string>();
    for (const a of agents?.() ?? []) {
      const known = this.agentsById.get(a.id);
      if (known && known.name === a.name && known.kind === a.kind) continue;
      this.agentsById.set(a.id, a);
      changed.add(a.id);
    }
    return changed;
  }

  /**
   * Agents' documents and the names a prompt may mention: for the agents `only`, or for all
   * (gone ones dropped). Mentions of every agent looked at are cleared first, so a name freed by
   * one can be taken by another.
   */
  private indexAgents(only?: ReadonlySet<string>): void {
    if (!only) {
      this.mentionable = new Map();
      this.mentionsOf = new Map();
      for (const id of [...this.indexedAgents.keys(), ...this.pendingAgents.keys()]) if (!this.byAgent.has(id)) this.dropAgent(id);
    }
    const ids = only ?? [...this.byAgent.keys()];
    for (const id of ids) {
      for (const k of this.mentionsOf.get(id) ?? []) if (this.mentionable.get(k) === id) this.mentionable.delete(k);
      this.mentionsOf.delete(id);
    }
    for (const id of ids) {
      if (!this.byAgent.has(id)) {
        this.dropAgent(id);
        continue;
      }
      // the agent document is (re)indexed by the next search that needs it (flush)
      const a = this.agentsById.get(id);
      const text = `${id} ${a?.name ?? ''} ${a?.kind ?? ''}`;
      if (this.indexedAgents.get(id) !== text) this.pendingAgents.set(id, text);
      else this.pendingAgents.delete(id);
      const keys = [id.toLowerCase()];
      const n = a?.name?.toLowerCase();
      if (n && n.length > 3 && !this.mentionable.has(n)) keys.push(n);
      for (const k of keys) this.mentionable.set(k, id);
      this.mentionsOf.set(id, keys);
    }
  }

  private dropAgent(id: string): void {
    this.pendingAgents.delete(id);
    if (this.indexedAgents.delete(id)) this.agentSearch.discard(id);
  }

  private templateIdOf(tool: OfferedTool['tool']): number {
    const known = this.templateOf.get(tool);
    if (known !== undefined) return known;
    const content = `${tool.name}\0${tool.description}\0${JSON.stringify(tool.inputSchema)}`;
    let id = this.templateIds.get(content);
    if (id === undefined) {
      id = this.templateIds.size + 1;
      this.templateIds.set(content, id);
      this.pendingTemplates.push({ id, tool: tool.name.replace(/[_.-]/g, ' '), text: tool.description, params: paramText(tool.inputSchema) });
    }
    this.templateOf.set(tool, id);
    return id;
  }

  /** Indexes what sync left for the first search (without a budget there is none). */
  private flush(): void {
    if (this.pendingTemplates.length) {
      this.templates.addAll(this.pendingTemplates);
      this.pendingTemplates = [];
    }
    if (this.pendingAgents.size) {
      for (const [id, text] of this.pendingAgents) {
        if (this.indexedAgents.has(id)) this.agentSearch.discard(id);
        this.agentSearch.add({ id, agentText: text });
        this.indexedAgents.set(id, text);
      }
      this.pendingAgents.clear();
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

  /** Every entry, in catalog order (which changes when an agent reconnects; see {@link sortedEntries}). */
  entries(): IterableIterator<Entry> {
    return this.byKey.values();
  }

  /** Every entry in canonical order ({@link compareNames} on the function name); sorted once per catalog version. */
  sortedEntries(): readonly Entry[] {
    if (this.sorted?.version !== this.version) {
      this.sorted = { version: this.version, entries: [...this.byKey.values()].sort((a, b) => compareNames(a.name, b.name)) };
    }
    return this.sorted.entries;
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
   * The best matches for `text`, best first: BM25 over tool name, description and parameters,
   * plus BM25 over agent id, name and kind; tools of an agent named in the text first.
   */
  rank(text: string, limit: number): Array<{ entry: Entry; score: number }> {
    const q = terms(text);
    if (!q.length || !this.byKey.size) return [];
    this.flush();
    const query = q.join(' ');
    const opts = { combineWith: 'OR' as const, prefix: (t: string) => t.length > 4 };
    const toolScore = new Map<number, number>();
    for (const h of this.templates.search(query, opts)) toolScore.set(h.id as number, h.score);
    const agentHits = this.agentSearch.search(query, opts).slice(0, AGENT_CANDIDATES);
    const named = this.mentions(text);
    const best = new Best<Entry>(limit);
    const crossed = new Set<string>();
    // agents that match: each of their tools, scored tool + agent
    for (const a of agentHits) {
      const mine = this.byAgent.get(a.id as string);
      if (!mine) continue;
      crossed.add(a.id as string);
      const isNamed = named.has(a.id as string);
      for (const [template, e] of mine) best.offer(e, (toolScore.get(template) ?? 0) + AGENT_WEIGHT * a.score, isNamed);
    }
    for (const id of named) {
      if (crossed.has(id)) continue;
      for (const [template, e] of this.byAgent.get(id) ?? []) best.offer(e, toolScore.get(template) ?? 0, true);
    }
    // every other agent: its tools score their template's match only, so the first `limit` of the best templates suffice
    let rest = 0;
    for (const [template, score] of [...toolScore].sort((x, y) => y[1] - x[1])) {
      for (const e of this.byTemplate.get(template) ?? []) {
        if (crossed.has(e.offered.agentId) || named.has(e.offered.agentId)) continue;
        best.offer(e, score, false);
        if (++rest >= limit) break;
      }
      if (rest >= limit) break;
    }
    return best.sorted();
  }
}

/**
 * The ids whose array differs between `old` and `groups` (new, changed or gone): one lookup per
 * agent of `groups`, and a walk of `old` only when some of its agents are gone.
 */
function changedGroups(old: ReadonlyMap<string, readonly OfferedTool[]>, groups: ReadonlyMap<string, readonly OfferedTool[]>): Set<string> {
  const moved = new Set<string>();
  let kept = 0;
  for (const [id, tools] of groups) {
    const before = old.get(id);
    if (before !== undefined) kept++;
    if (before !== tools) moved.add(id);
  }
  if (kept < old.size) for (const id of old.keys()) if (!groups.has(id)) moved.add(id);
  return moved;
}

/**
 * The function names {@link assignToolNames} gives, without its sorting work in the usual case:
 * when every (agent, tool) pair has a valid, distinct plain name `<agent>__<tool>`, those are the
 * names (`plain: true`); otherwise (hashed names, collisions, repeated pairs) it is asked.
 */
function namesOf(tools: readonly OfferedTool[]): { names: Map<string, OfferedTool>; plain: boolean } {
  const byName = new Map<string, OfferedTool>();
  for (const o of tools) {
    const plain = `${o.agentId}__${o.tool.name}`;
    if (byName.has(plain) || !FUNCTION_NAME_PATTERN.test(plain)) return { names: assignToolNames(tools), plain: false };
    byName.set(plain, o);
  }
  return { names: byName, plain: true };
}

