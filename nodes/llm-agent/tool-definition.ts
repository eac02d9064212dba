/**
 * How ONE catalog tool becomes the OpenAI function definition a model reads (issue 20, item 2).
 * Every definition is prompt a model must prefill on every turn, so this renders the least that
 * still lets a model pick the tool and call it right:
 *
 * - the name is the function name (`<agent>__<tool>`, protocol/tool-names.ts), unchanged;
 * - the description is the tool's own text cut to whole sentences within
 *   {@link DESCRIPTION_CAP} characters (a longer first sentence made to fit by {@link fitSentence}),
 *   plus sentences that state what the tool accepts (allowlists such as "Allowed folders: /tmp",
 *   "Units: …", "Apps: …"), then the risk when it is high, critical or unknown, and the tool and
 *   agent only when the function name is not the plain `<agent>__<tool>` (a hashed name hides them);
 * - the parameters are the tool's `inputSchema` without what does not change a call: `$schema`,
 *   `$id`, `$comment`, `title`, `examples`, `additionalProperties: false`, `propertyNames`, empty
 *   `required`, implied defaults (`false`, `""`, `[]`, `{}`, `null`), `minLength: 1`, the bounds
 *   zod adds for "any safe integer" (±9007199254740991), length and item bounds of 256 or more,
 *   and long or Unicode-class `pattern`s; a property's `title` becomes its description when there is
 *   none and it says more than the property's name. Property descriptions are cut to their first
 *   clause ({@link propertyDescription}: at most {@link PROPERTY_DESCRIPTION_CAP} characters,
 *   but a list of accepted values stays whole and an enum's explanation gets the description's
 *   cap). Types, `required`, `enum`/`const`, `format`, numeric bounds, short length bounds, other
 *   defaults, `items`, `anyOf`/`oneOf`/`allOf`, nested objects and map-like
 *   `additionalProperties` schemas are kept.
 *
 * A property description that only repeats the tool's name and description is left out
 * ({@link saysNothingNew}). Over a whole block, {@link withReferences} renders a tool repeated on
 * another agent by reference.
 *
 * Only what the model is shown shrinks: arguments are still validated against the tool's real
 * schema (on the llm-agent side and by the agent), and its error names the field and the
 * expectation, so a model that missed a dropped bound learns it from the answer.
 */
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import type { OfferedTool } from '../shared/registry-api';

/** Characters of a tool's description the model reads (whole sentences; the first one always, cut here when longer). */
export const DESCRIPTION_CAP = 90;
/** Characters of a property's description the model reads. */
export const PROPERTY_DESCRIPTION_CAP = 60;
/** A `pattern` longer than this (characters) is left out; the real schema still checks it. */
export const PATTERN_CAP = 24;
/** Item and property-count bounds at or above this are left out (no argument a model writes comes near). */
const BIG_BOUND = 256;
/**
 * String length bounds at or above this are left out: names, labels, topics and paths a model
 * writes stay well under them, and one that does not is refused by the agent's own check with an
 * error naming the field and the bound, which the model reads and corrects.
 */
const BIG_LENGTH = 32;
/** zod's bounds of `z.number().int()`: `Number.MAX_SAFE_INTEGER` either way. */
const SAFE_INT = Number.MAX_SAFE_INTEGER;
/** Schema nodes walked per tool at most; the rest of a bigger schema is kept as published. */
const MAX_NODES = 2000;

/** Keywords left out wherever they are: they describe the schema, not the call. */
const DROPPED = new Set(['$schema', '$id', '$comment', 'title', 'examples', 'propertyNames', 'readOnly', 'writeOnly']);
/** Keywords whose value is one schema. */
const ONE_SCHEMA = new Set(['items', 'not', 'additionalItems', 'contains', 'if', 'then', 'else']);
/** Keywords whose value is a list of schemas. */
const LIST_OF_SCHEMAS = new Set(['anyOf', 'oneOf', 'allOf', 'prefixItems']);
/** Keywords whose value is a map of schemas by name. */
const MAP_OF_SCHEMAS = new Set(['properties', '$defs', 'definitions', 'patternProperties']);

/**
 * A sentence that says what the tool accepts on this agent (an allowlist), kept even past the
 * cap: "Allowed folders: /tmp; …", "Only these URLs may be fetched: …", "Units: a, b.", "Apps: x, y.".
 */
const ACCEPTS = /^(allowed\b|only these\b|[A-Z][a-z]+( [a-z]+)?: \S)/i;

/**
 * Sentences of a text: split after `.`, `!` or `?` and a space before a capital or a digit, not
 * after "e.g.", "i.e.", "etc." or "vs.".
 */
function sentences(text: string): string[] {
  return text.replace(/\s+/g, ' ').trim().split(/(?<!\b(?:e\.g|i\.e|etc|vs)\.)(?<=[.!?])\s+(?=[A-Z0-9])/u).filter(Boolean);
}

/** `text` cut at a word boundary to at most `cap` characters, with `…` when cut. */
function clip(text: string, cap: number): string {
  if (text.length <= cap) return text;
  const cut = text.slice(0, cap - 1);
  const space = cut.lastIndexOf(' ');
  return `${(space > cap / 2 ? cut.slice(0, space) : cut).replace(/[\s,;:(]+$/, '')}…`;
}

/**
 * One sentence made to fit `cap` characters with the least lost: as it is when it fits; else
 * without its asides in parentheses ("… a container (stdout and stderr interleaved), at most 500
 * lines" reads "… a container, at most 500 lines") when that fits; else, of that, the clauses before
 * the last `, `/`; `/` — ` within the cap (when they keep at least half of it), ended with `.`;
 * else {@link clip}ped at a word with `…`. A sentence cut mid-way costs tokens and says less than
 * one ended at a clause.
 */
export function fitSentence(sentence: string, cap: number): string {
  if (sentence.length <= cap) return sentence;
  const end = /[.!?]$/.test(sentence) ? sentence.slice(-1) : '.';
  const bare = sentence.replace(/ \([^()]*\)/g, '');
  if (bare.length <= cap) return /[.!?]$/.test(bare) ? bare : `${bare}${end}`;
  const head = bare.slice(0, cap - 1);
  const at = Math.max(head.lastIndexOf(', '), head.lastIndexOf('; '), head.lastIndexOf(' — '));
  if (at >= cap / 2) return `${head.slice(0, at).replace(/[\s,;:]+$/, '')}…`;
  return clip(bare, cap);
}

/**
 * A description cut to whole sentences within `cap` characters: the first sentence always (made to
 * fit by {@link fitSentence}, or with `keepAsides` only {@link clip}ped at `cap`), the next ones
 * while they fit, and sentences stating what the tool accepts ({@link ACCEPTS}) when `keepAccepts`.
 * Whitespace runs become one space.
 */
export function shortDescription(text: string, cap = DESCRIPTION_CAP, keepAccepts = true, keepAsides = false): string {
  const all = sentences(text);
  if (!all.length) return '';
  const out = [keepAsides ? clip(all[0], cap) : fitSentence(all[0], cap)];
  let len = out[0].length;
  let open = out[0].length === all[0].length;
  for (const s of all.slice(1)) {
    if (open && len + 1 + s.length <= cap) {
      out.push(s);
      len += 1 + s.length;
      continue;
    }
    open = false;
    if (keepAccepts && ACCEPTS.test(s)) out.push(s);
  }
  return out.join(' ');
}

/** A property description that lists what the property accepts ("One of: a, b", "Allowed: …"): kept whole. */
const LISTS_VALUES = /^(one of|allowed|only)\b/i;

/**
 * A property's description as the model reads it: one that lists the accepted values
 * ({@link LISTS_VALUES}) whole; one of a property with an `enum` (it says what the values mean)
 * cut like a tool's description; any other its first sentence up to the first aside (` (`, `; `,
 * `, e.g.`) when what comes before says enough (12 characters or more), cut to
 * {@link PROPERTY_DESCRIPTION_CAP}. "Container name or id (a unique id prefix works too)" reads
 * "Container name or id".
 */
export function propertyDescription(text: string, hasEnum = false): string {
  const first = text.replace(/\s+/g, ' ').trim();
  if (LISTS_VALUES.test(first)) return first;
  // an enum's explanation is mostly asides ("gauge (number on a dial), text (value as text)"): keep them
  if (hasEnum) return shortDescription(first, DESCRIPTION_CAP, false, true);
  let head = sentences(first)[0] ?? '';
  const aside = head.search(/ \(|; |, e\.g\./);
  if (aside >= 12) head = head.slice(0, aside);
  return clip(head.replace(/[.,;:]$/, ''), PROPERTY_DESCRIPTION_CAP);
}

/** A default a model would assume anyway: `false`, `""`, `null`, `[]`, `{}`. */
function impliedDefault(v: unknown): boolean {
  if (v === false || v === '' || v === null) return true;
  if (Array.isArray(v)) return v.length === 0;
  return typeof v === 'object' && Object.keys(v as object).length === 0;
}

/** Whether keyword `k` with value `v` of a schema node is left out of what the model reads. */
function dropped(k: string, v: unknown): boolean {
  if (DROPPED.has(k)) return true;
  switch (k) {
    case 'additionalProperties': return v === false;
    case 'required': return Array.isArray(v) && v.length === 0;
    case 'default': return impliedDefault(v);
    case 'minLength': case 'minItems': case 'minProperties': return v === 0 || (k === 'minLength' && v === 1);
    case 'maxLength': return typeof v === 'number' && v >= BIG_LENGTH;
    case 'maxItems': case 'maxProperties': return typeof v === 'number' && v >= BIG_BOUND;
    case 'minimum': return v === -SAFE_INT;
    case 'maximum': return v === SAFE_INT;
    case 'pattern': return typeof v !== 'string' || v.length > PATTERN_CAP || v.includes('\\p{') || v.includes('\\P{');
    default: return false;
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * The JSON Schema `schema` as the model reads it (see the file's comment for what is dropped and
 * kept). With `shown` (the {@link wordsOf} the tool's name and description, which the model reads
 * next to the schema), a property's description that {@link saysNothingNew} is left out too: in
 * `desktop_create_directory`, `path` "Directory to create". A new object; `schema` is not changed. Walks with an explicit stack (no recursion over
 * the catalog's schemas); past {@link MAX_NODES} schema nodes the rest is copied as published.
 */
export function compactSchema(schema: unknown, shown?: ReadonlySet<string>): unknown {
  if (!isObject(schema)) return schema;
  const root: Record<string, unknown> = {};
  const stack: Frame[] = [[schema, root]];
  let nodes = 0;
  while (stack.length) {
    const [src, out, name] = stack.pop()!;
    if (++nodes > MAX_NODES) {
      Object.assign(out, src);
      continue;
    }
    if (name !== undefined && typeof src.title === 'string' && src.description === undefined && !sameWords(src.title, name)) {
      const d = propertyDescription(src.title, Array.isArray(src.enum));
      if (d) out.description = d;
    }
    for (const [k, v] of Object.entries(src)) {
      if (dropped(k, v)) continue;
      if (k === 'description' && typeof v === 'string') {
        const d = propertyDescription(v, Array.isArray(src.enum));
        if (d && !(shown && name !== undefined && !Array.isArray(src.enum) && saysNothingNew(d, name, shown))) out[k] = d;
      } else if (ONE_SCHEMA.has(k) || (k === 'additionalProperties' && isObject(v))) {
        out[k] = child(v, stack);
      } else if (LIST_OF_SCHEMAS.has(k) && Array.isArray(v)) {
        out[k] = v.map((s) => child(s, stack));
      } else if (MAP_OF_SCHEMAS.has(k) && isObject(v)) {
        const map: Record<string, unknown> = {};
        for (const [prop, s] of Object.entries(v)) map[prop] = child(s, stack, prop);
        out[k] = map;
      } else {
        out[k] = v;
      }
    }
  }
  return root;
}

/** One schema node to copy: the source, its copy, and its property name when it is a property. */
type Frame = [Record<string, unknown>, Record<string, unknown>, string?];

/** A copy target for the sub-schema `s` (property `name`), queued on `stack`; anything but an object is kept as it is. */
function child(s: unknown, stack: Frame[], name?: string): unknown {
  if (!isObject(s)) return s;
  const out: Record<string, unknown> = {};
  stack.push([s, out, name]);
  return out;
}

/** Whether a title says no more than a property name: "Timeout Seconds" and `timeout_seconds`, `timeoutSeconds`. */
function sameWords(title: string, name: string): boolean {
  const norm = (t: string) => t.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().replace(/[^a-z0-9]+/g, '');
  return norm(title) === norm(name);
}

/** Words with no meaning of their own in a short property description ("Directory to create"). */
const FILLER = new Set(['a', 'an', 'and', 'as', 'at', 'by', 'for', 'from', 'in', 'into', 'is', 'it', 'its', 'of', 'on', 'or', 'the', 'to', 'with']);

/**
 * The lowercase words of a name or a text, `snake_case`, `kebab-case` and `camelCase` split, a
 * final "s" dropped from words of 4 letters and more ("files" → "file"), {@link FILLER} left out.
 */
export function wordsOf(text: string): string[] {
  return text.replace(/([a-z0-9])([A-Z])/g, '$1 $2').toLowerCase().split(/[^a-z0-9]+/)
    .filter((w) => w && !FILLER.has(w)).map((w) => (w.length >= 4 && w.endsWith('s') && !w.endsWith('ss') ? w.slice(0, -1) : w));
}

/**
 * Whether a property's description says nothing the model does not read already: every word of it
 * ({@link wordsOf}) is a word of the property's `name` or of `shown` (the tool's name and
 * description). "Directory to create" for `path` of `desktop_create_directory` says nothing new;
 * "Container name or id" for `container` of `docker_stop_container` does ("name or id"). A
 * description with a digit or a quote always counts as new (a unit, a value, an example).
 */
export function saysNothingNew(description: string, name: string, shown: ReadonlySet<string>): boolean {
  if (/[0-9"'`]/.test(description)) return false;
  const own = new Set(wordsOf(name));
  const words = wordsOf(description);
  return words.length > 0 && words.every((w) => own.has(w) || shown.has(w));
}

/** Rendered parameters by input schema object (a catalog repeats one tool's schema on many agents), then by tool name and description. */
const compacted = new WeakMap<object, Map<string, Record<string, unknown>>>();

/**
 * {@link compactSchema} of a tool's `inputSchema` beside the words of its name and the description
 * the model reads, made once per schema object, name and description; an object schema always
 * (`{ type: "object", properties: {} }` at least).
 */
function parametersOf(inputSchema: unknown, toolName: string, description: string): Record<string, unknown> {
  if (!isObject(inputSchema)) return { type: 'object', properties: {} };
  let byWords = compacted.get(inputSchema);
  if (!byWords) compacted.set(inputSchema, (byWords = new Map()));
  const key = `${toolName}\n${description}`;
  let p = byWords.get(key);
  if (!p) {
    p = compactSchema(inputSchema, new Set([...wordsOf(toolName), ...wordsOf(description)])) as Record<string, unknown>;
    if (p.type === 'object' && !isObject(p.properties)) p.properties = {};
    // one entry per distinct text beside the schema: a handful per tool (agents differ in allowlists)
    if (byWords.size >= 64) byWords.clear();
    byWords.set(key, p);
  }
  return p;
}

/**
 * The description the model reads: {@link shortDescription} of the tool's text, then
 * `(risk: high)` when it is high, critical or unknown, and `(tool "x" on agent "y")` when `name` is not
 * the plain `<agent>__<tool>` (a hashed or sanitized name). A tool with no annotations reads `risk: unknown`.
 */
export function describeTool(name: string, o: OfferedTool): string {
  const risk: string = o.tool.annotations?.risk ?? 'unknown';
  const facts: string[] = [];
  if (name !== `${o.agentId}__${o.tool.name}`) facts.push(`tool "${o.tool.name}" on agent "${o.agentId}"`);
  // high and critical: the model can tell the person a call waits for their approval; medium and low
  // run without one, so saying so costs tokens and changes no call
  if (risk === 'high' || risk === 'critical' || risk === 'unknown') facts.push(`risk: ${risk}`);
  const text = shortDescription(o.tool.description ?? '');
  const tail = facts.length ? `(${facts.join(', ')})` : '';
  return text && tail ? `${text} ${tail}` : text || tail;
}

/**
 * The OpenAI function definition of the offered tool `o` under the function name `name`
 * (`tools[]` of a chat-completions request): `{ type: "function", function: { name, description,
 * parameters } }` with the description of {@link describeTool} and the parameters of
 * {@link compactSchema} (beside the tool name and that description). The parameters object is shared by every definition of the same schema
 * object: callers must not change it.
 */
export function toFunctionDefinition(name: string, o: OfferedTool): ChatCompletionFunctionTool {
  const description = describeTool(name, o);
  return { type: 'function', function: { name, description, parameters: parametersOf(o.tool.inputSchema, o.tool.name, description) } };
}

/** The facts {@link describeTool} appends: `(risk: high)`, `(tool "x" on agent "y", risk: critical)`. */
const FACTS_TAIL = / \((?:tool "[^"]*" on agent "[^"]*")?(?:, )?(?:risk: [a-z]+)?\)$/;

/**
 * `defs` with every repeated tool rendered by reference (issue 20, item 2): a definition whose
 * description and parameters equal those of an earlier one in `defs` (the same tool of the same
 * pack on another agent, as on a mesh of 14 robots) reads `Same as <earlier function name>.`
 * (`Same as on <agent>.` when both names are `<agent>__<tool>` with the same tool), then
 * the facts {@link describeTool} appended to it (the risk, the tool and agent of a hashed name),
 * so a model still sees the risk of each. Its parameters keep everything a call and a grammar need
 * (a server such as llama.cpp builds one from them): only their descriptions go, which the
 * referenced definition carries. Function
 * names and order are unchanged, and the same `defs` give the same result, so a frozen block stays
 * byte-identical from turn to turn. Definitions not repeated are returned as they are (same objects).
 */
export function withReferences(defs: readonly ChatCompletionFunctionTool[]): ChatCompletionFunctionTool[] {
  const first = new Map<string, string>();
  return defs.map((d) => {
    const f = d.function;
    if (!f.description) return d;
    const key = `${f.description}\u0000${JSON.stringify(f.parameters ?? null)}`;
    const earlier = first.get(key);
    if (earlier === undefined) {
      first.set(key, f.name);
      return d;
    }
    const facts = FACTS_TAIL.exec(f.description)?.[0] ?? '';
    // `<agent>__<tool>` beside `<other agent>__<tool>`: naming the other agent says it all
    const cut = f.name.indexOf('__');
    const tail = cut > 0 ? f.name.slice(cut) : '';
    const ref = tail && earlier.endsWith(tail) && earlier.length > tail.length ? `on ${earlier.slice(0, -tail.length)}` : earlier;
    return { type: 'function', function: { ...f, description: `Same as ${ref}.${facts}`, parameters: bareParameters(f.parameters) } };
  });
}

/** Parameters without their descriptions, by parameters object (definitions share theirs, see {@link toFunctionDefinition}). */
const bare = new WeakMap<object, Record<string, unknown>>();

/**
 * `parameters` without the `description` of any schema node: for a definition rendered by
 * reference, whose descriptions the referenced one carries. Everything a call and a grammar need
 * stays (types, `required`, `enum`, bounds, defaults, nesting). Made once per parameters object;
 * walks with an explicit stack.
 */
function bareParameters(parameters: Record<string, unknown> | undefined): Record<string, unknown> | undefined {
  if (!parameters) return parameters;
  let out = bare.get(parameters);
  if (!out) {
    out = JSON.parse(JSON.stringify(parameters)) as Record<string, unknown>;
    const stack: unknown[] = [out];
    let nodes = 0;
    while (stack.length && ++nodes <= MAX_NODES) {
      const node = stack.pop();
      if (Array.isArray(node)) stack.push(...node.filter((v) => typeof v === 'object' && v !== null));
      else if (isObject(node)) {
        if (typeof node.description === 'string') delete node.description;
        for (const [k, v] of Object.entries(node)) if (k !== 'enum' && k !== 'const' && k !== 'default' && typeof v === 'object' && v !== null) stack.push(v);
      }
    }
    bare.set(parameters, out);
  }
  return out;
}
