/**
 * Parses the subset of gst-launch-1.0's pipeline description language this pack accepts, and
 * writes it back as an argument list for gst-launch-1.0 (no shell ever sees it).
 *
 * Accepted (gst-launch-1.0(1), "PIPELINE DESCRIPTION"):
 * - elements by factory name, linked with `!`: `videotestsrc ! x264enc ! fakesink`;
 * - properties as `name=value` after their element; spaces around `=` are allowed; values may be
 *   quoted with `"` or `'` (no backslashes or quote characters inside);
 * - caps between two links: `! video/x-raw,width=1280,height=720 !` (or quoted, with spaces after commas);
 * - named elements (`name=mux`) and references to them, with an optional pad: `mux.`, `t.src_1`;
 * - several chains separated by whitespace: `... ! mux.  audiotestsrc ! mux.`.
 * Refused: bins `( ... )`, URIs in place of elements, child-proxy properties (`a::b=c`),
 * presets, and anything starting with `-` (gst-launch options).
 */

/** A property as written. */
export interface PropertyNode { name: string; value: string }

export type PipelineNode =
  | { kind: 'element'; factory: string; properties: PropertyNode[]; position: number }
  | { kind: 'caps'; caps: string }
  | { kind: 'ref'; name: string; pad: string }
  | { kind: 'link' };

/** A syntax problem; `position` is the 1-based element it concerns, when there is one. */
export interface SyntaxIssue { code: 'SYNTAX' | 'DUPLICATE_NAME' | 'UNKNOWN_REFERENCE'; message: string; position?: number }

export interface ParsedPipeline {
  nodes: PipelineNode[];
  issues: SyntaxIssue[];
}

/** Caps limits: at most this many elements per pipeline, this long a value. */
export const MAX_ELEMENTS = 64;
const MAX_VALUE_LENGTH = 1024;

const PROPERTY_TOKEN = /^([A-Za-z_][A-Za-z0-9_-]*)=(.*)$/s;
const ELEMENT_TOKEN = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;
const REF_TOKEN = /^([A-Za-z_][A-Za-z0-9_-]*)\.([A-Za-z0-9_%-]*)$/;
const CAPS_TOKEN = /^[a-z]+\/[A-Za-z0-9.+_-]+(\([A-Za-z0-9:_,-]+\))?(,[A-Za-z0-9_-]+=(\([a-z0-9]+\))?[A-Za-z0-9_./:+-]+)*$/;
/** Values written without quotes; anything else is quoted. */
const PLAIN_VALUE = /^[A-Za-z0-9_.:/,+=%@?&~-]+$/;
/** Element names (the `name` property) that references can use. */
export const NAME_VALUE = /^[A-Za-z_][A-Za-z0-9_-]{0,63}$/;

function unquoted(tok: string): string {
  const q = tok[0];
  return (q === '"' || q === "'") && tok.length >= 2 && tok.endsWith(q) ? tok.slice(1, -1) : tok;
}

/** Splits on whitespace and `!` outside quotes. Throws a message for a backslash or an open quote. */
function tokenize(text: string): string[] {
  const tokens: string[] = [];
  let cur = '';
  let quote: string | undefined;
  for (const ch of text) {
    if (ch === '\\') throw new Error('backslashes are not accepted; quote values that contain spaces with "..."');
    if (quote) {
      cur += ch;
      if (ch === quote) quote = undefined;
    } else if (ch === '"' || ch === "'") {
      cur += ch;
      quote = ch;
    } else if (/\s/.test(ch) || ch === '!') {
      if (cur) tokens.push(cur);
      cur = '';
      if (ch === '!') tokens.push('!');
    } else {
      cur += ch;
    }
  }
  if (quote) throw new Error(`a ${quote} quote is not closed`);
  if (cur) tokens.push(cur);
  return tokens;
}

/** Joins `a = b`, `a= b`, `a =b` and caps written with spaces after commas into single tokens. */
function joinTokens(tokens: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < tokens.length; i++) {
    let t = tokens[i];
    while (i + 1 < tokens.length && tokens[i + 1] !== '!' && (t.endsWith('=') || t.endsWith(',') || tokens[i + 1].startsWith('=') || tokens[i + 1].startsWith(','))) {
      t += tokens[++i];
    }
    out.push(t);
  }
  return out;
}

/** Writes a value so gst-launch reads back exactly it: plain, or in double quotes. */
export function formatValue(value: string): string {
  return PLAIN_VALUE.test(value) ? value : `"${value}"`;
}

/**
 * Parses a pipeline description. Never throws: problems come back in `issues` (an empty
 * `issues` means `nodes` is a well-formed pipeline whose references all resolve).
 */
export function parsePipeline(text: string): ParsedPipeline {
  const issues: SyntaxIssue[] = [];
  const nodes: PipelineNode[] = [];
  let tokens: string[];
  try {
    tokens = joinTokens(tokenize(text));
  } catch (e) {
    return { nodes, issues: [{ code: 'SYNTAX', message: (e as Error).message }] };
  }
  if (tokens.length === 0) return { nodes, issues: [{ code: 'SYNTAX', message: 'the pipeline is empty' }] };
  let position = 0;
  let afterLink = false;
  for (const tok of tokens) {
    const last = nodes[nodes.length - 1];
    if (tok === '!') {
      if (!last || last.kind === 'link') issues.push({ code: 'SYNTAX', message: 'a "!" needs an element, caps or reference on each side' });
      nodes.push({ kind: 'link' });
      afterLink = true;
      continue;
    }
    const prop = PROPERTY_TOKEN.exec(tok);
    if (prop) {
      const value = unquoted(prop[2]);
      if (!last || last.kind !== 'element' || afterLink) {
        issues.push({ code: 'SYNTAX', message: `property ${prop[1]}=… must follow its element (write "element ${prop[1]}=value")` });
      } else if (/["'\x00-\x1f\x7f]/.test(value) || value.length > MAX_VALUE_LENGTH) {
        issues.push({ code: 'SYNTAX', message: `the value of ${prop[1]} has a quote or control character, or is longer than ${MAX_VALUE_LENGTH} characters`, position: last.position });
      } else {
        last.properties.push({ name: prop[1], value });
      }
      continue;
    }
    const bare = unquoted(tok).replace(/,\s+/g, ',');
    if (/^[a-z]+\//.test(bare)) {
      if (!CAPS_TOKEN.test(bare)) issues.push({ code: 'SYNTAX', message: `"${bare}" is not caps this agent accepts (e.g. video/x-raw,width=1280,height=720,framerate=30/1)` });
      else if (!afterLink) issues.push({ code: 'SYNTAX', message: `caps "${bare}" must sit between two "!" links` });
      nodes.push({ kind: 'caps', caps: bare });
    } else if (REF_TOKEN.test(tok)) {
      const [, name, pad] = REF_TOKEN.exec(tok)!;
      nodes.push({ kind: 'ref', name, pad });
    } else if (ELEMENT_TOKEN.test(tok)) {
      position++;
      nodes.push({ kind: 'element', factory: tok, properties: [], position });
    } else {
      issues.push({ code: 'SYNTAX', message: `"${tok}" is not an element, name=value property, caps or name. reference; bins "( )", URIs and options are not accepted` });
    }
    afterLink = false;
  }
  checkStructure(nodes, issues, position);
  return { nodes, issues };
}

/** Links at the ends, caps without a following link, element count, names and references. */
function checkStructure(nodes: PipelineNode[], issues: SyntaxIssue[], elements: number): void {
  if (nodes[nodes.length - 1]?.kind === 'link') issues.push({ code: 'SYNTAX', message: 'the pipeline ends with "!"; link it to an element' });
  nodes.forEach((n, i) => {
    if (n.kind === 'caps' && nodes[i + 1]?.kind !== 'link') issues.push({ code: 'SYNTAX', message: `caps "${n.caps}" must be followed by "!" and an element` });
    if (n.kind === 'ref' && nodes[i - 1]?.kind !== 'link' && nodes[i + 1]?.kind !== 'link') {
      issues.push({ code: 'SYNTAX', message: `reference ${n.name}. is not linked to anything` });
    }
  });
  if (elements === 0) issues.push({ code: 'SYNTAX', message: 'the pipeline has no element' });
  if (elements > MAX_ELEMENTS) issues.push({ code: 'SYNTAX', message: `the pipeline has ${elements} elements; at most ${MAX_ELEMENTS} are accepted` });
  const names = new Map<string, number>();
  for (const n of nodes) {
    if (n.kind !== 'element') continue;
    for (const p of n.properties.filter((x) => x.name === 'name')) {
      if (!NAME_VALUE.test(p.value)) issues.push({ code: 'SYNTAX', message: `name=${p.value}: element names are letters, digits, _ and -`, position: n.position });
      else if (names.has(p.value)) issues.push({ code: 'DUPLICATE_NAME', message: `two elements are named "${p.value}"`, position: n.position });
      else names.set(p.value, n.position);
    }
  }
  for (const n of nodes) {
    if (n.kind === 'ref' && !names.has(n.name)) {
      issues.push({ code: 'UNKNOWN_REFERENCE', message: `"${n.name}." refers to no element; name one with name=${n.name}` });
    }
  }
}

/** The gst-launch-1.0 argument list of parsed nodes: one argument per element, property, caps, reference and `!`. */
export function toArgv(nodes: PipelineNode[]): string[] {
  return nodes.flatMap((n) => {
    switch (n.kind) {
      case 'link': return ['!'];
      case 'caps': return [n.caps];
      case 'ref': return [`${n.name}.${n.pad}`];
      case 'element': return [n.factory, ...n.properties.map((p) => `${p.name}=${formatValue(p.value)}`)];
    }
  });
}
