/**
 * Redaction of what goes into audit records: secrets by key name (anywhere nested) and by known
 * value, approval tokens and other token-shaped strings, and size caps. No Node-RED imports.
 */

/** What replaces a secret. */
export const REDACTED = '[redacted]';

/**
 * Key-name fragments that mark a secret, matched case-insensitively against the key with `-`,
 * `_`, `.` and spaces removed, anywhere in the key (`X-Api-Key`, `db_password`, `refreshToken`).
 * So `max_tokens` is redacted too: a lost number is cheaper than a leaked secret.
 */
export const DEFAULT_REDACT_KEYS: readonly string[] = [
  'password', 'passwd', 'passphrase', 'secret', 'token', 'apikey', 'authorization', 'cookie',
  'privatekey', 'credential', 'approval', 'signature',
];

/** Known secret values shorter than this are not searched for (they would match everywhere), chars. */
export const MIN_SECRET_LENGTH = 4;

/** Options of {@link redact}. */
export interface RedactOptions {
  /** Extra key-name fragments, added to {@link DEFAULT_REDACT_KEYS}. */
  keys?: Iterable<string>;
  /** Known secret values (passwords, API keys): every occurrence inside a string is replaced. */
  values?: Iterable<string>;
  /** Longest string kept, chars (default 4 096); longer ones are cut and say how much was cut. */
  maxString?: number;
  /** Deepest nesting kept (default 12); deeper values become `"[too deep]"`. */
  maxDepth?: number;
}

/** A compiled redaction policy; build it once and reuse it per record. */
export class Redactor {
  private readonly keys: string[];
  private readonly values: string[];
  private readonly maxString: number;
  private readonly maxDepth: number;

  constructor(opts: RedactOptions = {}) {
    this.keys = [...DEFAULT_REDACT_KEYS, ...[...(opts.keys ?? [])].map(normalizeKey).filter(Boolean)];
    // longest first, so a secret that contains another is replaced whole
    this.values = [...new Set([...(opts.values ?? [])].filter((v) => typeof v === 'string' && v.length >= MIN_SECRET_LENGTH))]
      .sort((a, b) => b.length - a.length);
    this.maxString = opts.maxString ?? 4096;
    this.maxDepth = opts.maxDepth ?? 12;
  }

  /** True when a value under this key is a secret. */
  isSecretKey(key: string): boolean {
    const k = normalizeKey(key);
    return this.keys.some((p) => k.includes(p));
  }

  /**
   * A redacted, plain-JSON copy of `value`: secret keys and token-shaped strings become
   * `"[redacted]"`, known secret values inside strings become `[redacted]`, Buffers and typed
   * arrays become `"[binary N bytes]"`, cycles `"[circular]"`; functions and undefined are dropped.
   */
  redact(value: unknown): unknown {
    return this.walk(value, 0, new WeakSet());
  }

  /** A string with known secret values replaced and the length capped (no key-name rules). */
  redactText(text: string): string {
    if (looksLikeToken(text)) return REDACTED;
    let out = text;
    for (const v of this.values) if (out.includes(v)) out = out.split(v).join(REDACTED);
    return out.length > this.maxString ? `${out.slice(0, this.maxString)}…[${out.length - this.maxString} more chars]` : out;
  }

  private walk(value: unknown, depth: number, seen: WeakSet<object>): unknown {
    if (typeof value === 'string') return this.redactText(value);
    if (typeof value === 'number') return Number.isFinite(value) ? value : String(value);
    if (typeof value === 'boolean' || value === null) return value;
    if (typeof value === 'bigint') return value.toString();
    if (typeof value !== 'object') return undefined;
    if (ArrayBuffer.isView(value)) return `[binary ${value.byteLength} bytes]`;
    if (value instanceof Date) return value.toISOString();
    if (seen.has(value)) return '[circular]';
    if (depth >= this.maxDepth) return '[too deep]';
    seen.add(value);
    try {
      if (Array.isArray(value)) return value.map((v) => this.walk(v, depth + 1, seen) ?? null);
      const out: Record<string, unknown> = {};
      for (const [k, v] of Object.entries(value)) {
        const r = this.isSecretKey(k) ? (v === undefined ? undefined : REDACTED) : this.walk(v, depth + 1, seen);
        if (r !== undefined) out[k] = r;
      }
      return out;
    } finally {
      seen.delete(value);
    }
  }
}

/** Lower case, with `-`, `_`, `.` and spaces removed. */
function normalizeKey(key: string): string {
  return key.toLowerCase().replace(/[-_.\s]/g, '');
}

const TOKEN_SHAPE = /^[A-Za-z0-9_-]{16,}(\.[A-Za-z0-9_-]{16,}){1,2}$/;

/**
 * True for a string shaped like an approval token or a JWT: two or three base64url parts whose
 * first decodes to a JSON object (docs/protocol.md, approval tokens).
 */
export function looksLikeToken(s: string): boolean {
  if (!TOKEN_SHAPE.test(s)) return false;
  try {
    const head = JSON.parse(Buffer.from(s.slice(0, s.indexOf('.')), 'base64url').toString('utf8')) as unknown;
    return !!head && typeof head === 'object' && !Array.isArray(head);
  } catch {
    return false;
  }
}

/**
 * What an audit record keeps of an approval: `approver`, `jti`, `kid` and `at`, never the token.
 * Accepts a token string (its payload is decoded WITHOUT checking the signature: the agent
 * checks it; this only names it) or an object with those fields and/or a `token` field.
 * @returns undefined when `value` holds none of them.
 */
export function approvalOf(value: unknown): { approver?: string; jti?: string; kid?: string; at?: number } | undefined {
  let fields: Record<string, unknown> = {};
  if (typeof value === 'string') fields = decodeTokenPayload(value) ?? {};
  else if (value && typeof value === 'object') {
    const o = value as Record<string, unknown>;
    fields = { ...(typeof o.token === 'string' ? decodeTokenPayload(o.token) ?? {} : {}), ...o };
  }
  const str = (k: string) => (typeof fields[k] === 'string' && !looksLikeToken(fields[k] as string) ? (fields[k] as string).slice(0, 256) : undefined);
  const at = typeof fields.at === 'number' ? fields.at : typeof fields.approvedAt === 'number' ? fields.approvedAt : undefined;
  const out = { approver: str('approver'), jti: str('jti'), kid: str('kid'), at };
  return out.approver || out.jti || out.kid || out.at !== undefined ? JSON.parse(JSON.stringify(out)) : undefined;
}

/** The JSON payload of `base64url(payload).base64url(sig)`, unverified; undefined when it is not one. */
function decodeTokenPayload(token: string): Record<string, unknown> | undefined {
  const dot = token.indexOf('.');
  if (dot <= 0) return undefined;
  try {
    const v = JSON.parse(Buffer.from(token.slice(0, dot), 'base64url').toString('utf8')) as unknown;
    return v && typeof v === 'object' && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}
