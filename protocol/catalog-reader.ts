/**
 * Reads catalog messages (docs/protocol.md, `{root}/agents/{id}/catalog`) for a caller, fast when
 * many agents announce the same tools: a mesh of 10,000 agents is mostly a few kinds of device,
 * whose catalogs differ only in `agent` (id, name, host). Parsing and validating the 12 KB `tools`
 * array of each of them was most of a fresh caller's start (10,000 agents: `JSON.parse` ~1.1 s,
 * the depth/width check ~0.3 s, zod ~0.7 s, and the garbage collection of 10,000 copies ~1.2 s on
 * the 2-core test machine; measured with `node --cpu-prof` on bench/discovery.mjs's caller).
 *
 * How: the text of a catalog is cut at its first `"tools":` key and its closing `}` into a head
 * (with a placeholder in place of the tools) and the tools' own text. The head is parsed and
 * validated every time (it is small); the tools' text is looked up in a bounded cache of tool
 * lists already parsed, checked against the depth and width limits, and validated with
 * {@link ToolSchema}, by their exact text. A hit skips the work and shares one frozen array between
 * the agents (equal text gives an equal value: JSON.parse is a function of the text).
 *
 * Why the cut is safe on untrusted text: the placeholder is a JSON string with a random nonce of
 * this reader, so the parsed head can hold that string as its `tools` only if the placeholder
 * stood as the value of the (last) top-level `tools` key. The tools' text parses on its own to one
 * array (else no cache entry is made). Putting one whole JSON value in place of another value
 * token gives the same document with that value in that place, so head plus tools equals what
 * `JSON.parse` of the whole text gives; every other shape (a `tools` key that is not the last one,
 * nested, or missing; text after the closing `}`) returns `undefined`, and the caller takes the
 * full path (parse, limits, {@link CatalogSchema}) with its usual errors.
 */
import { randomBytes } from 'node:crypto';
import { CatalogSchema, ToolSchema, type Catalog, type Tool } from './schemas';
import { DEFAULT_MAX_JSON_DEPTH, parseJsonWithin, type JsonLimits } from './json-limits';

/** Most distinct tool lists kept by one reader (least recently used ones go first). */
export const DEFAULT_TOOL_LISTS_CACHED = 256;
/** Most characters of tool-list text kept by one reader, all entries together (16 Mi). */
export const DEFAULT_TOOL_LIST_CACHE_CHARS = 16 * 1024 * 1024;

const TOOLS_KEY = '"tools":';
const ToolsSchema = ToolSchema.array();
const CatalogHeadSchema = CatalogSchema.omit({ tools: true });

/** Freezes a parsed JSON value and everything in it, with an explicit stack (no recursion). */
function deepFreeze<T>(value: T): T {
  const stack: unknown[] = [value];
  while (stack.length > 0) {
    const v = stack.pop();
    if (v === null || typeof v !== 'object' || Object.isFrozen(v)) continue;
    Object.freeze(v);
    for (const c of Object.values(v as object)) if (c !== null && typeof c === 'object') stack.push(c);
  }
  return value;
}

function isJsonSpace(code: number): boolean {
  return code === 0x20 || code === 0x0a || code === 0x0d || code === 0x09;
}

/**
 * One caller's catalog reader. {@link read} gives the validated catalog of a text, or `undefined`
 * when it cannot take the fast path (the caller then parses and validates the whole text).
 */
export class CatalogReader {
  /** `"#tools-<nonce>"`: a JSON string token no sender can guess. */
  private readonly placeholder: string;
  private readonly placeholderValue: string;
  /** Validated, frozen tool lists by their exact JSON text; Map order is use order (oldest first). */
  private readonly lists = new Map<string, readonly Tool[]>();
  private chars = 0;
  /** The list used last and its text: consecutive catalogs of a mesh mostly share their tools, and `===` on a 12 KB string is cheaper than hashing it for the Map. */
  private last?: { text: string; list: readonly Tool[] };
  private readonly toolLimits: JsonLimits;

  /**
   * @param limits depth and width limits of the whole catalog (protocol/json-limits.ts defaults);
   *   the tools array sits one level down, so its own text is checked with one level less.
   * @param maxLists most distinct tool lists kept ({@link DEFAULT_TOOL_LISTS_CACHED}).
   * @param maxChars most characters of tool-list text kept ({@link DEFAULT_TOOL_LIST_CACHE_CHARS});
   *   a longer list is validated but not kept.
   */
  constructor(private readonly limits: JsonLimits = {}, private readonly maxLists = DEFAULT_TOOL_LISTS_CACHED, private readonly maxChars = DEFAULT_TOOL_LIST_CACHE_CHARS) {
    this.placeholderValue = `#tools-${randomBytes(12).toString('hex')}`;
    this.placeholder = JSON.stringify(this.placeholderValue);
    this.toolLimits = { maxDepth: (limits.maxDepth ?? DEFAULT_MAX_JSON_DEPTH) - 1, maxWidth: limits.maxWidth };
  }

  /** Tool lists kept now (for tests and figures). */
  get size(): number {
    return this.lists.size;
  }

  /**
   * The catalog of `text`, validated as {@link CatalogSchema} would (its `tools` array frozen and
   * possibly shared with other agents' catalogs), or `undefined`: not cut-able, over the limits or
   * invalid. `undefined` says nothing about validity; the caller must take the full path.
   */
  read(text: string): Catalog | undefined {
    const at = text.indexOf(TOOLS_KEY);
    if (at < 0) return undefined;
    let end = text.length - 1;
    while (end > at && isJsonSpace(text.charCodeAt(end))) end--;
    if (text.charCodeAt(end) !== 0x7d) return undefined; // not an object's closing brace
    const start = at + TOOLS_KEY.length;
    const parsed = parseJsonWithin(text.slice(0, start) + this.placeholder + text.slice(end), this.limits);
    if ('error' in parsed) return undefined;
    const head = parsed.value as Record<string, unknown> | null;
    if (head === null || typeof head !== 'object' || Array.isArray(head) || head.tools !== this.placeholderValue) return undefined;
    const h = CatalogHeadSchema.safeParse(head);
    if (!h.success) return undefined;
    const tools = this.tools(text.slice(start, end));
    if (!tools) return undefined;
    return { ...h.data, tools } as Catalog;
  }

  /** The validated list of a tools text, from the cache or made (and kept) now; `undefined` when invalid. */
  private tools(toolsText: string): readonly Tool[] | undefined {
    if (this.last?.text === toolsText) return this.last.list; // already the most recently used
    const known = this.lists.get(toolsText);
    if (known) {
      // most recently used last
      this.lists.delete(toolsText);
      this.lists.set(toolsText, known);
      this.last = { text: toolsText, list: known };
      return known;
    }
    const parsed = parseJsonWithin(toolsText, this.toolLimits);
    if ('error' in parsed || !Array.isArray(parsed.value)) return undefined;
    const t = ToolsSchema.safeParse(parsed.value);
    if (!t.success) return undefined;
    const list = deepFreeze(t.data) as readonly Tool[];
    if (toolsText.length <= this.maxChars) {
      this.lists.set(toolsText, list);
      this.chars += toolsText.length;
      for (const [k] of this.lists) {
        if (this.lists.size <= this.maxLists && this.chars <= this.maxChars) break;
        this.lists.delete(k);
        this.chars -= k.length;
      }
      this.last = this.lists.has(toolsText) ? { text: toolsText, list } : undefined;
    }
    return list;
  }
}
