/**
 * Shape limits for untrusted JSON, checked right after `JSON.parse` and before any hashing,
 * schema work, redaction or logging (docs/protocol.md, "Limits").
 *
 * Why: `JSON.parse` itself copes with deep nesting, but every recursive walk after it (the
 * RFC 8785 request hash, zod, redaction, audit records) overflows the stack on a 40 KB request
 * nested 20,000 levels deep (`RangeError: Maximum call stack size exceeded`). The check below is
 * iterative (an explicit stack), so it cannot overflow, and it stops at the first violation.
 */

/** Deepest nesting of arrays and objects accepted (the top-level value is depth 1). */
export const DEFAULT_MAX_JSON_DEPTH = 64;
/** Most entries accepted in one array or object. */
export const DEFAULT_MAX_JSON_WIDTH = 10_000;

/** Options of {@link checkJsonLimits}. */
export interface JsonLimits {
  /** Deepest nesting accepted, levels (default 64). */
  maxDepth?: number;
  /** Most entries of one array or object (default 10 000). */
  maxWidth?: number;
}

/** A violated limit: which one, its bound, and a sentence for the error message. */
export interface JsonLimitViolation {
  limit: 'maxDepth' | 'maxWidth';
  bound: number;
  message: string;
}

/**
 * Checks a parsed JSON value against depth and width limits without recursion.
 * @param value the output of `JSON.parse` (any JSON value).
 * @returns `undefined` when within the limits, else the first violation found.
 */
export function checkJsonLimits(value: unknown, limits: JsonLimits = {}): JsonLimitViolation | undefined {
  const maxDepth = limits.maxDepth ?? DEFAULT_MAX_JSON_DEPTH;
  const maxWidth = limits.maxWidth ?? DEFAULT_MAX_JSON_WIDTH;
  if (value === null || typeof value !== 'object') return undefined;
  const stack: Array<{ v: object; depth: number }> = [{ v: value, depth: 1 }];
  while (stack.length > 0) {
    const { v, depth } = stack.pop()!;
    if (depth > maxDepth) {
      return { limit: 'maxDepth', bound: maxDepth, message: `JSON nested deeper than ${maxDepth} levels (limit maxDepth ${maxDepth})` };
    }
    const children: unknown[] = Array.isArray(v) ? v : Object.values(v);
    if (children.length > maxWidth) {
      const what = Array.isArray(v) ? 'an array' : 'an object';
      return { limit: 'maxWidth', bound: maxWidth, message: `${what} with ${children.length} entries, more than ${maxWidth} (limit maxWidth ${maxWidth})` };
    }
    for (const c of children) if (c !== null && typeof c === 'object') stack.push({ v: c, depth: depth + 1 });
  }
  return undefined;
}

/**
 * `JSON.parse` followed by {@link checkJsonLimits}.
 * @returns `{ value }` on success, `{ error, kind: "parse" | "limit" }` otherwise (never throws).
 */
export function parseJsonWithin(text: string, limits?: JsonLimits):
  { value: unknown } | { kind: 'parse' | 'limit'; error: string; value?: unknown } {
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch (e) {
    return { kind: 'parse', error: (e as Error).message };
  }
  const v = checkJsonLimits(value, limits);
  return v ? { kind: 'limit', error: v.message, value } : { value };
}
