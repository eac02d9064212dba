/**
 * A small glob matcher for `desktop_search_files`, written here because Node 20 has no
 * `fs.glob` and no glob library is a dependency of this package. It builds no regular
 * expression: matching uses the two-pointer wildcard algorithm (worst case O(pattern × name)
 * per name, and the same over path segments for `**`), so no pattern can make it backtrack
 * exponentially.
 *
 * Syntax (matched against `/`-separated paths relative to the search root):
 * - `*` any run of characters within one name (hidden names included), `?` one character;
 * - `[abc]`, `[a-z]`, `[!a-z]` or `[^a-z]` one character from (or not from) a set; an
 *   unclosed `[` is a literal `[`;
 * - `**` as a whole segment: zero or more directories (`docs/**` + `/*.md`, `**` alone: anything);
 * - `\x` the character x itself (e.g. `\*`);
 * - a pattern without `/` is matched against the name alone, at any depth (`*.pdf`); a
 *   pattern with `/` against the whole relative path (`src/*.ts`).
 */

/** One element of a segment pattern. */
type Token =
  | { kind: 'char'; ch: string }
  | { kind: 'one' }
  | { kind: 'star' }
  | { kind: 'set'; negate: boolean; ranges: Array<[string, string]> };

type Segment = Token[] | 'globstar';

/** Longest pattern accepted, characters. */
export const MAX_PATTERN_CHARS = 256;

/** A compiled glob. */
export interface Glob {
  /** True when `relativePath` (segments joined with `/`, no leading `/`) matches. */
  matches(relativePath: string): boolean;
}

/** Parses a `[...]` set starting at `chars[i]` (the `[`); `undefined` when it is not closed. */
function parseSet(chars: string[], i: number): { token: Token; next: number } | undefined {
  let j = i + 1;
  const negate = chars[j] === '!' || chars[j] === '^';
  if (negate) j++;
  const ranges: Array<[string, string]> = [];
  let first = true;
  while (j < chars.length && (chars[j] !== ']' || first)) {
    first = false;
    const lo = chars[j] === '\\' && j + 1 < chars.length ? chars[++j] : chars[j];
    if (chars[j + 1] === '-' && j + 2 < chars.length && chars[j + 2] !== ']') {
      ranges.push([lo, chars[j + 2]]);
      j += 3;
    } else {
      ranges.push([lo, lo]);
      j += 1;
    }
  }
  if (j >= chars.length) return undefined;
  return { token: { kind: 'set', negate, ranges }, next: j + 1 };
}

function parseSegment(text: string): Segment {
  if (text === '**') return 'globstar';
  const chars = Array.from(text);
  const tokens: Token[] = [];
  for (let i = 0; i < chars.length;) {
    const c = chars[i];
    if (c === '\\' && i + 1 < chars.length) {
      tokens.push({ kind: 'char', ch: chars[i + 1] });
      i += 2;
    } else if (c === '*') {
      if (tokens.at(-1)?.kind !== 'star') tokens.push({ kind: 'star' });
      i += 1;
    } else if (c === '?') {
      tokens.push({ kind: 'one' });
      i += 1;
    } else if (c === '[' && parseSet(chars, i)) {
      const set = parseSet(chars, i)!;
      tokens.push(set.token);
      i = set.next;
    } else {
      tokens.push({ kind: 'char', ch: c });
      i += 1;
    }
  }
  return tokens;
}

function tokenMatches(t: Token, ch: string): boolean {
  if (t.kind === 'one') return true;
  if (t.kind === 'char') return t.ch === ch;
  if (t.kind === 'set') {
    const hit = t.ranges.some(([lo, hi]) => ch >= lo && ch <= hi);
    return hit !== t.negate;
  }
  return false;
}

/**
 * The two-pointer wildcard match: `isStar(p)` items match any run of items, `same(p, s)`
 * compares one pattern item with one subject item. On a mismatch it retries from the last star,
 * one subject item further, so each (star, subject position) pair is tried at most once.
 */
function wildcardMatch<P, S>(pattern: readonly P[], subject: readonly S[], isStar: (p: P) => boolean, same: (p: P, s: S) => boolean): boolean {
  let p = 0;
  let s = 0;
  let starP = -1;
  let starS = 0;
  while (s < subject.length) {
    if (p < pattern.length && isStar(pattern[p])) {
      starP = p++;
      starS = s;
    } else if (p < pattern.length && same(pattern[p], subject[s])) {
      p++;
      s++;
    } else if (starP >= 0) {
      p = starP + 1;
      s = ++starS;
    } else {
      return false;
    }
  }
  while (p < pattern.length && isStar(pattern[p])) p++;
  return p === pattern.length;
}

function segmentMatches(tokens: Token[], name: string): boolean {
  return wildcardMatch(tokens, Array.from(name), (t) => t.kind === 'star', tokenMatches);
}

/**
 * Compiles a glob (syntax in the module comment).
 * @throws Error with a message for people when the pattern is empty, too long, absolute, holds
 *   NUL or an empty segment (`a//b`).
 */
export function compileGlob(pattern: string): Glob {
  if (pattern === '' || pattern.length > MAX_PATTERN_CHARS) throw new Error(`a pattern of 1 to ${MAX_PATTERN_CHARS} characters`);
  if (pattern.includes('\0')) throw new Error('a pattern without NUL characters');
  if (pattern.startsWith('/')) throw new Error('a pattern relative to the search root (no leading /)');
  const texts = pattern.split('/');
  if (texts.some((t) => t === '')) throw new Error('a pattern without empty segments (a//b)');
  const segments = texts.map(parseSegment);
  if (segments.length === 1) {
    const only = segments[0];
    if (only === 'globstar') return { matches: () => true };
    return { matches: (rel) => segmentMatches(only, rel.slice(rel.lastIndexOf('/') + 1)) };
  }
  return {
    matches: (rel) => wildcardMatch(segments, rel.split('/'), (seg) => seg === 'globstar', (seg, name) => seg !== 'globstar' && segmentMatches(seg, name)),
  };
}
