/**
 * One-time codes a person types or pastes: the pairing code that approves an MCP client's sign-in
 * (mcp/oauth/), and meant for device join codes too. A code is shown once; only its SHA-256 is
 * kept, with its expiry; it is consumed by its first successful use; and wrong attempts are
 * counted against every outstanding code of the same book together, so after
 * {@link OneTimeCodeOptions.maxFailures} wrong ones all of them are void and the owner makes a new
 * one (a guesser gets 5 tries at 2^40, not a stream of them).
 *
 * The book is plain data ({@link CodeBook}) so that a caller can keep it in a state file and
 * change it under that file's lock from two processes (`toolmesh mcp pair` beside the bridge).
 */
import { createHash, randomInt, timingSafeEqual } from 'node:crypto';

/** Crockford's base-32 alphabet: no I, L, O or U, so a code read aloud or typed from a phone survives. */
const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';

/** The outstanding codes of one purpose and the wrong attempts against them; plain JSON. */
export interface CodeBook {
  /** SHA-256 (hex) of each outstanding code's normalised form, with its expiry (epoch ms). */
  codes: { sha256: string; expiresAt: number }[];
  /** Wrong attempts since the last code was made. */
  failures: number;
}

/** Options of {@link issueCode} and {@link useCode}. */
export interface OneTimeCodeOptions {
  /** How long a code is valid, ms (default 10 min). */
  ttlMs?: number;
  /** Wrong attempts after which every outstanding code is void (default 5). */
  maxFailures?: number;
  /** Most outstanding codes (default 5); the oldest goes first. */
  maxCodes?: number;
  /** Clock, epoch ms (tests). */
  now?: number;
}

/** Defaults of {@link OneTimeCodeOptions}. */
export const ONE_TIME_CODE_DEFAULTS = Object.freeze({ ttlMs: 10 * 60_000, maxFailures: 5, maxCodes: 5 });

/** An empty book. */
export function emptyCodeBook(): CodeBook {
  return { codes: [], failures: 0 };
}

/** `XXXX-XXXX` with any case, spaces or dashes → `XXXXXXXX`; Crockford's I/L → 1 and O → 0. */
export function normaliseCode(typed: string): string {
  return typed.toUpperCase().replace(/[\s-]/g, '').replace(/[IL]/g, '1').replace(/O/g, '0');
}

function sha256(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

/**
 * Makes a new code of 8 base-32 characters (40 bits), shown as `XXXX-XXXX`, and records its hash
 * in `book` (which it changes). Making a code clears the failure count and drops expired codes.
 * @returns the code to show the person, once.
 */
export function issueCode(book: CodeBook, opts: OneTimeCodeOptions = {}): { code: string; expiresAt: number } {
  const now = opts.now ?? Date.now();
  const ttl = opts.ttlMs ?? ONE_TIME_CODE_DEFAULTS.ttlMs;
  const maxCodes = opts.maxCodes ?? ONE_TIME_CODE_DEFAULTS.maxCodes;
  let raw = '';
  for (let i = 0; i < 8; i++) raw += ALPHABET[randomInt(ALPHABET.length)];
  const expiresAt = now + ttl;
  book.codes = book.codes.filter((c) => c.expiresAt > now);
  book.codes.push({ sha256: sha256(raw), expiresAt });
  while (book.codes.length > maxCodes) book.codes.shift();
  book.failures = 0;
  return { code: `${raw.slice(0, 4)}-${raw.slice(4)}`, expiresAt };
}

/** What {@link useCode} found. */
export type CodeVerdict =
  | { ok: true }
  | { ok: false; reason: 'wrong' | 'none-outstanding' | 'too-many-failures'; attemptsLeft: number };

/**
 * Tries `typed` against the book (which it changes): a match is consumed; a miss counts a failure,
 * and at {@link OneTimeCodeOptions.maxFailures} every outstanding code is dropped.
 * Comparison is by SHA-256 in constant time.
 */
export function useCode(book: CodeBook, typed: string, opts: OneTimeCodeOptions = {}): CodeVerdict {
  const now = opts.now ?? Date.now();
  const maxFailures = opts.maxFailures ?? ONE_TIME_CODE_DEFAULTS.maxFailures;
  book.codes = book.codes.filter((c) => c.expiresAt > now);
  if (book.codes.length === 0) {
    return { ok: false, reason: book.failures >= maxFailures ? 'too-many-failures' : 'none-outstanding', attemptsLeft: 0 };
  }
  const given = Buffer.from(sha256(normaliseCode(typed)), 'hex');
  const at = book.codes.findIndex((c) => timingSafeEqual(Buffer.from(c.sha256, 'hex'), given));
  if (at >= 0) {
    book.codes.splice(at, 1);
    return { ok: true };
  }
  book.failures += 1;
  if (book.failures >= maxFailures) {
    book.codes = [];
    return { ok: false, reason: 'too-many-failures', attemptsLeft: 0 };
  }
  return { ok: false, reason: 'wrong', attemptsLeft: maxFailures - book.failures };
}
