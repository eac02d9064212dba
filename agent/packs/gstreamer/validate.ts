/**
 * validate_pipeline's checks: syntax (pipeline.ts), then for every element: on the allowlist,
 * installed (gst-inspect-1.0), every property known and writable with a value of its type, and
 * every destination allowed (destinations.ts). Unknown names get a "did you mean" suggestion.
 */
import type { ElementCatalog, ElementInfo, PropertyInfo } from './inspect';
import { checkDestination, DESTINATION_RULES, isRiskyProperty, type DestinationPolicy, type DestinationProblem } from './destinations';
import { parsePipeline, toArgv, type PipelineNode, type SyntaxIssue } from './pipeline';

/** What a pipeline may use on this board. */
export interface PipelinePolicy extends DestinationPolicy {
  /** Element allowlist: the profile's elements and the config's `elements`. */
  allowed: ReadonlySet<string>;
}

export type IssueCode = SyntaxIssue['code'] | DestinationProblem['code'] | 'UNKNOWN_ELEMENT' | 'ELEMENT_NOT_ALLOWED'
  | 'ELEMENT_NOT_INSTALLED' | 'UNKNOWN_PROPERTY' | 'READ_ONLY_PROPERTY' | 'PROPERTY_NOT_ALLOWED';

/** One problem; `position` is the 1-based element it concerns. */
export interface PipelineIssue {
  code: IssueCode;
  message: string;
  position?: number;
  element?: string;
  property?: string;
  /** The name the model probably meant. */
  suggestion?: string;
}

/** validate_pipeline's answer. `argv` is what gst-launch-1.0 gets after `-e --` (empty when invalid). */
export interface PipelineCheck {
  valid: boolean;
  errors: PipelineIssue[];
  argv: string[];
  /** The normalized pipeline text (argv joined with spaces). */
  pipeline: string;
}

/** Optimal string alignment distance (Levenshtein plus adjacent swaps). */
export function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The closest candidate within max(2, 40 % of the input's length) edits, case-insensitively; undefined when none is close. */
export function suggest(input: string, candidates: Iterable<string>): string | undefined {
  const x = input.toLowerCase();
  let best: { name: string; d: number } | undefined;
  for (const c of candidates) {
    const d = editDistance(x, c.toLowerCase());
    if (!best || d < best.d) best = { name: c, d };
  }
  return best && best.name !== input && best.d <= Math.max(2, Math.floor(x.length * 0.4)) ? best.name : undefined;
}

const didYouMean = (s: string | undefined) => (s ? `; did you mean "${s}"?` : '');
const INTEGER_TYPES = new Set(['Integer', 'Unsigned Integer', 'Integer64', 'Unsigned Integer64', 'Long', 'Unsigned Long']);

function toBigInt(v: string): bigint | undefined {
  try {
    return /^[+-]?(\d+|0x[0-9a-f]+)$/i.test(v) ? BigInt(v.replace(/^\+/, '')) : undefined;
  } catch {
    return undefined;
  }
}

/** Checks a value against a property's type; returns the problem text or undefined. */
export function valueProblem(p: PropertyInfo, value: string): { message: string; suggestion?: string } | undefined {
  const range = p.range ? ` (range ${p.range.min} - ${p.range.max})` : '';
  if (p.type === 'Boolean') return /^(true|false|yes|no|t|f|1|0)$/i.test(value) ? undefined : { message: `${p.name} takes true or false, not "${value}"` };
  if (INTEGER_TYPES.has(p.type)) {
    const n = toBigInt(value);
    if (n === undefined) return { message: `${p.name} takes an integer${range}, not "${value}"` };
    const min = p.range ? toBigInt(p.range.min) : undefined;
    const max = p.range ? toBigInt(p.range.max) : undefined;
    if ((min !== undefined && n < min) || (max !== undefined && n > max)) return { message: `${p.name}=${value} is out of range${range}` };
    return undefined;
  }
  if (p.type === 'Float' || p.type === 'Double') {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n)) return { message: `${p.name} takes a number${range}, not "${value}"` };
    if (p.range && (n < Number(p.range.min) || n > Number(p.range.max))) return { message: `${p.name}=${value} is out of range${range}` };
    return undefined;
  }
  if (p.type === 'Enum' || p.type === 'Flags') {
    const values = p.values ?? [];
    const known = (part: string) => values.some((v) => v.nick === part || v.value === part || (p.type === 'Flags' && toBigInt(part) !== undefined));
    const parts = p.type === 'Flags' ? value.split('+') : [value];
    const bad = parts.find((part) => !known(part));
    if (bad === undefined) return undefined;
    const s = suggest(bad, values.map((v) => v.nick));
    return { message: `${p.name} has no value "${bad}"; values: ${values.map((v) => v.nick).join(', ')}${didYouMean(s)}`, suggestion: s };
  }
  if (p.type === 'Fraction') return /^\d+(\/\d+)?$/.test(value) ? undefined : { message: `${p.name} takes a fraction such as 30/1, not "${value}"` };
  if (p.type === 'Object' || p.type === 'Boxed' || p.type === 'Pointer') return { message: `${p.name} (${p.typeName ?? p.type}) cannot be set from a pipeline description` };
  return undefined;
}

type Element = Extract<PipelineNode, { kind: 'element' }>;

/** Problems of one element's properties, destination rules included (unset rule properties are checked at their defaults). */
async function propertyIssues(node: Element, info: ElementInfo, policy: PipelinePolicy): Promise<PipelineIssue[]> {
  const issues: PipelineIssue[] = [];
  const at = { position: node.position, element: node.factory };
  const rules = DESTINATION_RULES[node.factory] ?? {};
  const writable = info.properties.filter((p) => p.writable);
  for (const { name, value } of node.properties) {
    const p = info.properties.find((x) => x.name === name);
    if (!p) {
      const s = suggest(name, writable.map((x) => x.name));
      issues.push({ ...at, code: 'UNKNOWN_PROPERTY', property: name, suggestion: s, message: `${node.factory} has no property "${name}"${didYouMean(s)}` });
      continue;
    }
    if (!p.writable) {
      issues.push({ ...at, code: 'READ_ONLY_PROPERTY', property: name, message: `${node.factory}.${name} is read-only` });
      continue;
    }
    const rule = rules[name];
    if (!rule && isRiskyProperty(name)) {
      issues.push({ ...at, code: 'PROPERTY_NOT_ALLOWED', property: name, message: `${node.factory}.${name} may name a file, address or device, which this agent allows only on the sinks and sources it checks (${Object.keys(DESTINATION_RULES).join(', ')})` });
      continue;
    }
    const bad = valueProblem(p, value);
    if (bad) {
      issues.push({ ...at, code: 'INVALID_VALUE', property: name, message: `${node.factory}: ${bad.message}`, ...(bad.suggestion ? { suggestion: bad.suggestion } : {}) });
      continue;
    }
    const dest = rule && await checkDestination(rule, name, value, policy);
    if (dest) issues.push({ ...at, property: name, code: dest.code, message: `${node.factory}: ${dest.message}` });
  }
  for (const [name, rule] of Object.entries(rules)) {
    if (node.properties.some((p) => p.name === name) || rule.kind === 'recording-path') continue;
    const def = info.properties.find((p) => p.name === name)?.default;
    const dest = def ? await checkDestination(rule, name, def, policy) : undefined;
    if (dest) issues.push({ ...at, property: name, code: dest.code, message: `${node.factory}: ${dest.message} (${name} defaults to ${def}; set it)` });
  }
  return issues;
}

/**
 * Validates a pipeline description against the board's allowlist, its installed elements and
 * the allowed destinations.
 * @throws ToolError EXECUTION_FAILED when gst-inspect-1.0 itself fails.
 */
export async function validatePipeline(text: string, catalog: ElementCatalog, policy: PipelinePolicy): Promise<PipelineCheck> {
  const parsed = parsePipeline(text);
  const errors: PipelineIssue[] = [...parsed.issues];
  const elements = parsed.nodes.filter((n): n is Element => n.kind === 'element');
  const infos = await Promise.all(elements.map((n) => catalog.get(n.factory)));
  for (const [i, node] of elements.entries()) {
    const info = infos[i];
    const at = { position: node.position, element: node.factory };
    if (!policy.allowed.has(node.factory)) {
      const s = info ? undefined : suggest(node.factory, policy.allowed);
      errors.push(info
        ? { ...at, code: 'ELEMENT_NOT_ALLOWED', message: `element ${node.factory} is installed but not on this board's allowlist (gst_get_board_info lists the allowed elements)` }
        : { ...at, code: 'UNKNOWN_ELEMENT', suggestion: s, message: `unknown element "${node.factory}"${didYouMean(s)}` });
      continue;
    }
    if (!info) {
      errors.push({ ...at, code: 'ELEMENT_NOT_INSTALLED', message: `element ${node.factory} is allowed but not installed on this board (gst-inspect-1.0 does not know it); gst_get_encoder_info lists the installed encoders` });
      continue;
    }
    errors.push(...await propertyIssues(node, info, policy));
  }
  const valid = errors.length === 0;
  const argv = valid ? toArgv(parsed.nodes) : [];
  return { valid, errors, argv, pipeline: argv.join(' ') };
}
