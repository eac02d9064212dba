/**
 * gst-inspect-1.0: runs it (argument list, no shell) and parses its text output into factory
 * details, pad templates and properties. The layout parsed is gst-inspect 1.x's
 * (tools/gst-inspect.c): section headers in column 0 ("Factory Details:", "Pad Templates:",
 * "Element Properties:" ...), property headers indented by two spaces (`  name : blurb`, the
 * blurb sometimes continued in column 0), their flags and type on lines indented further, enum
 * and flags values as `(value): nick - text`; a caps property with a default prints the caps
 * (`ANY`, `video/x-raw`) in place of a type.
 */
import { execFile } from 'node:child_process';
import { ToolError } from '../../../protocol/errors';

/** One property as gst-inspect shows it. */
export interface PropertyInfo {
  name: string;
  description: string;
  /** e.g. readable, writable, controllable, "changeable only in NULL or READY state" */
  flags: string[];
  writable: boolean;
  /** Boolean, String, Integer, Unsigned Integer, Integer64, Unsigned Integer64, Float, Double, Enum, Flags, Fraction, Caps, Object, Boxed, Pointer, Array, or the raw type line. */
  type: string;
  /** GType of Enum, Flags, Object and Boxed properties. */
  typeName?: string;
  /** The default as printed (strings unquoted); null when gst-inspect prints `null`. */
  default?: string | null;
  range?: { min: string; max: string };
  /** Enum and Flags values. */
  values?: Array<{ value: string; nick: string; description: string }>;
}

/** One pad template; `caps` holds one summary string per caps structure (or ANY / EMPTY). */
export interface PadTemplateInfo {
  name: string;
  direction: 'sink' | 'src';
  presence: string;
  caps: string[];
}

/** What gst-inspect-1.0 says about one element. */
export interface ElementInfo {
  element: string;
  factory: Record<string, string>;
  plugin: Record<string, string>;
  padTemplates: PadTemplateInfo[];
  properties: PropertyInfo[];
}

/** Element factory names: letters, digits, `_` and `-`, starting with a letter (so never an option). */
export const ELEMENT_NAME = /^[A-Za-z][A-Za-z0-9_-]{0,63}$/;

const ANSI = /\x1b\[[0-9;]*m/g;
const SECTION = /^(\S[^:]*):\s*$/;
const KEY_VALUE = /^ {2}(\S.*?)\s{2,}(.*)$/;
const PROPERTY = /^ {2}([A-Za-z_][A-Za-z0-9_-]*)\s*: ?(.*)$/;
const ENUM_VALUE = /^\((-?\d+|0x[0-9a-fA-F]+)\): (.+?)\s+- (.*)$/;
const SCALAR = /^(Boolean|String|Integer|Unsigned Integer|Integer64|Unsigned Integer64|Long|Unsigned Long|Float|Double|Fraction)\.\s*(.*)$/;

function unquote(v: string): string | null {
  if (v === 'null' || v === '(null)') return null;
  return v.length >= 2 && v.startsWith('"') && v.endsWith('"') ? v.slice(1, -1) : v;
}

/** Reads the type line of a property into `p`. */
function parseType(p: PropertyInfo, line: string): void {
  let m = SCALAR.exec(line);
  if (m) {
    p.type = m[1];
    const range = /Range:\s*(\S+)\s*-\s*(\S+)\s+Default:\s*(.*?)\s*$/.exec(m[2]);
    if (range) {
      p.range = { min: range[1], max: range[2] };
      p.default = unquote(range[3]);
    } else {
      const def = /Default:\s*(.*?)\s*$/.exec(m[2]);
      if (def) p.default = unquote(def[1]);
    }
    return;
  }
  if ((m = /^(Enum|Flags) "([^"]+)" Default: (\S+?),? "(.*)"\s*$/.exec(line))) {
    p.type = m[1];
    p.typeName = m[2];
    p.default = m[4];
    p.values = [];
    return;
  }
  if ((m = /^(Object|Boxed pointer) of type "([^"]+)"/.exec(line))) {
    p.type = m[1] === 'Object' ? 'Object' : 'Boxed';
    p.typeName = m[2];
    return;
  }
  // a caps property with a default prints the caps themselves: ANY, EMPTY or media/type...
  if (/^(ANY|EMPTY)$|^[a-z]+\/\S/.test(line)) {
    p.type = 'Caps';
    p.default = line;
  } else if (line.startsWith('Caps')) p.type = 'Caps';
  else if (line.startsWith('Pointer')) p.type = 'Pointer';
  else if (/^(GstValueArray|Array) of GValues/.test(line)) p.type = 'Array';
  else if (line.startsWith('Default:')) p.default = unquote(line.slice('Default:'.length).trim());
  else p.type = line;
}

/** Reads the lines of the "Element Properties:" section. */
function parseProperties(lines: string[]): PropertyInfo[] {
  const props: PropertyInfo[] = [];
  let cur: PropertyInfo | undefined;
  for (const raw of lines) {
    const head = PROPERTY.exec(raw);
    if (head) {
      cur = { name: head[1], description: head[2].trim(), flags: [], writable: false, type: '' };
      props.push(cur);
      continue;
    }
    const line = raw.trim();
    if (!cur || line === '') continue;
    if (!/^\s/.test(raw) && cur.flags.length === 0) {
      cur.description += ` ${line}`;
    } else if (line.startsWith('flags:')) {
      // "changeable in NULL, READY, PAUSED or PLAYING state" holds commas itself: keep it whole
      const text = line.slice('flags:'.length);
      const at = text.indexOf('changeable');
      const simple = (at >= 0 ? text.slice(0, at) : text).split(',').map((f) => f.trim()).filter(Boolean);
      cur.flags = at >= 0 ? [...simple, text.slice(at).trim()] : simple;
      cur.writable = cur.flags.includes('writable');
    } else if (cur.values && ENUM_VALUE.test(line)) {
      const v = ENUM_VALUE.exec(line)!;
      cur.values.push({ value: v[1], nick: v[2], description: v[3].trim() });
    } else if (cur.type === '' || (cur.type === 'Array' && line.startsWith('Default:'))) {
      parseType(cur, line);
    }
  }
  return props;
}

/** Reads the lines of the "Pad Templates:" section. */
function parsePadTemplates(lines: string[]): PadTemplateInfo[] {
  const pads: PadTemplateInfo[] = [];
  let cur: PadTemplateInfo | undefined;
  for (const raw of lines) {
    const head = /^ {2}(SINK|SRC|UNKNOWN) template: '([^']*)'/.exec(raw);
    if (head) {
      cur = { name: head[2], direction: head[1] === 'SRC' ? 'src' : 'sink', presence: '', caps: [] };
      pads.push(cur);
      continue;
    }
    if (!cur) continue;
    const presence = /^ {4}Availability: (.*)$/.exec(raw);
    if (presence) cur.presence = presence[1].trim().toLowerCase();
    else if (/^ {6}\S/.test(raw)) cur.caps.push(raw.trim());
    else if (/^ {7,}\S/.test(raw) && cur.caps.length > 0) {
      const field = raw.trim().replace(/:\s+/, ': ');
      cur.caps[cur.caps.length - 1] += `, ${field}`;
    }
  }
  return pads;
}

/** Parses gst-inspect-1.0's text for one element. Unknown sections are skipped. */
export function parseInspect(element: string, text: string): ElementInfo {
  const sections = new Map<string, string[]>();
  let current: string[] | undefined;
  for (const raw of text.replace(ANSI, '').split(/\r?\n/)) {
    const head = SECTION.exec(raw);
    if (head) {
      current = [];
      sections.set(head[1], current);
    } else if (current) {
      // column-0 lines inside a section continue a multi-line property blurb; elsewhere they are
      // prose ("Element has no clocking capabilities.") or the class tree, which no pattern matches
      current.push(raw);
    }
  }
  const keyValues = (name: string) => Object.fromEntries((sections.get(name) ?? [])
    .map((l) => KEY_VALUE.exec(l)).filter((m): m is RegExpExecArray => m !== null).map((m) => [m[1], m[2].trim()]));
  return {
    element,
    factory: keyValues('Factory Details'),
    plugin: keyValues('Plugin Details'),
    padTemplates: parsePadTemplates(sections.get('Pad Templates') ?? []),
    properties: parseProperties(sections.get('Element Properties') ?? []),
  };
}

/** Output and exit of one program run. */
interface Run { code: number; stdout: string; stderr: string }

/** Runs `bin args` (no shell) and resolves with its output even when it exits non-zero; rejects when it cannot start. */
export function runTool(bin: string, args: string[], signal?: AbortSignal, timeoutMs = 15_000): Promise<Run> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, {
      signal, timeout: timeoutMs, maxBuffer: 8 * 1024 * 1024,
      env: { ...process.env, GST_INSPECT_NO_COLORS: '1', PAGER: 'cat', LC_ALL: 'C' },
    }, (err, stdout, stderr) => {
      const e = err as (NodeJS.ErrnoException & { code?: number | string }) | null;
      if (e && typeof e.code !== 'number') return reject(e);
      resolve({ code: e ? Number(e.code) : 0, stdout, stderr });
    });
  });
}

/** Most element lookups kept before the cache starts over. */
const MAX_CACHED = 1000;

/**
 * Element lookups through gst-inspect-1.0, cached per element name for the life of the pack
 * (installing plugins needs an agent restart to be seen). Failed runs are not cached. A lookup is
 * shared by every call that asks meanwhile, so it takes no call's abort signal; each run is
 * bounded by runTool's 15 s timeout instead.
 */
export class ElementCatalog {
  private readonly cache = new Map<string, Promise<ElementInfo | null>>();

  constructor(readonly gstInspect: string) {}

  /**
   * The element's info, or null when gst-inspect knows no such element.
   * @throws ToolError INVALID_ARGUMENTS for a malformed name; EXECUTION_FAILED when gst-inspect fails otherwise.
   */
  get(element: string): Promise<ElementInfo | null> {
    if (!ELEMENT_NAME.test(element)) {
      return Promise.reject(new ToolError('INVALID_ARGUMENTS', `"${element}" is not an element name (letters, digits, _ and -, starting with a letter)`));
    }
    let hit = this.cache.get(element);
    if (!hit) {
      // names come from models too; a flood of made-up ones must not grow the cache for ever
      if (this.cache.size >= MAX_CACHED) this.cache.clear();
      hit = this.inspect(element);
      this.cache.set(element, hit);
      hit.catch(() => this.cache.delete(element));
    }
    return hit;
  }

  private async inspect(element: string): Promise<ElementInfo | null> {
    let run: Run;
    try {
      run = await runTool(this.gstInspect, [element]);
    } catch (err) {
      throw new ToolError('EXECUTION_FAILED', `${this.gstInspect} could not run: ${(err as Error).message}`);
    }
    if (run.code !== 0) {
      if (/No such element or plugin/i.test(run.stdout + run.stderr)) return null;
      throw new ToolError('EXECUTION_FAILED', `${this.gstInspect} ${element} exited with ${run.code}: ${(run.stderr || run.stdout).trim().slice(0, 500)}`);
    }
    return parseInspect(element, run.stdout);
  }
}
