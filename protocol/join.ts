/**
 * Joining the mesh with a one-time join string (issue 18, item 3): the editor makes a join string,
 * a person pastes it into `toolmesh-agent join` on the device, and the device and Node-RED trade a
 * broker account for an agent config in one request, without a login and without the secret of
 * the join string ever crossing the wire.
 *
 * Join string: `tmjoin1.<base64url(JSON)>` of a {@link JoinTicket}. The device sends a
 * {@link JoinRequest} to `POST <u>/toolmesh/join` with a proof `HMAC-SHA256(K, canonical request)`
 * and a fresh nonce; Node-RED answers a {@link JoinAnswer} with a proof
 * `HMAC-SHA256(K, canonical answer)` (the answer's canonical form holds the device's nonce), and the
 * device refuses an answer whose proof fails. `K = SHA-256("toolmesh-join-v1\0" + secret)`: that is
 * the only thing Node-RED keeps of the secret (in memory, until the code is used, void or expired).
 * So something in the middle learns neither the secret nor K, and cannot hand the device another
 * broker URL, CA, username or other approval keys. With `https` and `f` in the ticket the device
 * also pins Node-RED's certificate (SHA-256 of the DER, hex with or without colons).
 *
 * The device makes its own broker password and sends only its scrypt hash
 * (protocol/broker-auth.ts `hashPassword`).
 *
 * No Node-RED imports: the agent (agent/join.ts) and the tool-registry node both use this file.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { z } from 'zod';
import { ID_PATTERN } from './topics';

/** What every join string starts with (format version 1). */
export const JOIN_PREFIX = 'tmjoin1.';
/** How long a join string is valid, ms (10 min). */
export const JOIN_TTL_MS = 10 * 60_000;
/** Largest request body the join endpoint reads, bytes. */
export const MAX_JOIN_BODY_BYTES = 16 * 1024;
/** Longest join string accepted, characters (a ticket is ~300). */
export const MAX_JOIN_STRING = 4096;
/** Wrong proofs after which one code is void. */
export const MAX_PROOF_FAILURES = 5;
/** Failed join attempts (any code, unknown ones too) per minute before the endpoint answers 429. */
export const MAX_FAILURES_PER_MINUTE = 10;

/** A scrypt hash as protocol/broker-auth.ts `hashPassword` makes it. */
const PASSWORD_HASH = /^\$scrypt\$[A-Za-z0-9$+/=.,_:-]{16,400}$/;

/**
 * The most a joined device's password hash may cost per login: what `hashPassword`
 * (broker-auth.ts) makes, 16 MiB and about 40 ms. The broker accepts up to 1 GiB for hashes an
 * operator types; a join string's holder must not get to make every login of its id that dear.
 */
export const MAX_JOIN_COST = Object.freeze({ ln: 14, r: 8, p: 1 });

/** True when `hash`'s scrypt parameters are within {@link MAX_JOIN_COST} (each of ln, r and p). */
function withinJoinCost(hash: string): boolean {
  const m = /^\$scrypt\$ln=(\d{1,2}),r=(\d{1,2}),p=(\d{1,2})\$/.exec(hash);
  return !!m && Number(m[1]) <= MAX_JOIN_COST.ln && Number(m[2]) <= MAX_JOIN_COST.r && Number(m[3]) <= MAX_JOIN_COST.p;
}
const B64URL = /^[A-Za-z0-9_-]+$/;

/** The decoded join string. Field names are short so the string stays short. */
export interface JoinTicket {
  /** Node-RED's base URL as the device reaches it (admin root included), e.g. `http://192.168.1.5:1880`. */
  u: string;
  /** Code id: 12 random base64url characters. */
  i: string;
  /** Secret: 16 random bytes, base64url (22 characters). Never sent. */
  s: string;
  /** Broker URL as the device reaches it, e.g. `mqtt://192.168.1.5:1883`. */
  b: string;
  /** Suggested agent id. */
  a?: string;
  /** Expiry, epoch seconds. */
  x: number;
  /** SHA-256 fingerprint (hex) of Node-RED's TLS certificate, with an https `u`. */
  f?: string;
}

const HttpUrl = z.string().max(500).refine((u) => { try { return ['http:', 'https:'].includes(new URL(u).protocol); } catch { return false; } },
  'expected an http:// or https:// URL');
const BrokerUrl = z.string().max(500).regex(/^(mqtts?|wss?):\/\/[^\s@/]+(\/[^\s@]*)?$/, 'expected a broker URL such as mqtt://192.168.1.5:1883 (no user info)');
const AgentId = z.string().regex(ID_PATTERN, `expected an agent id (${ID_PATTERN.source})`);

/** Schema of a decoded {@link JoinTicket}. */
export const JoinTicketSchema = z.strictObject({
  u: HttpUrl,
  i: z.string().length(12, 'expected 12 characters').regex(B64URL, 'expected base64url characters'),
  s: z.string().min(22, 'expected at least 22 characters').max(64, 'expected at most 64 characters').regex(B64URL, 'expected base64url characters'),
  b: BrokerUrl,
  a: AgentId.optional(),
  x: z.number().int('expected whole seconds').positive('expected epoch seconds'),
  f: z.string().regex(/^([0-9A-Fa-f]{2}:?){31}[0-9A-Fa-f]{2}$/, 'expected a SHA-256 fingerprint (64 hex digits)').optional(),
});

/** Packs a device may ask for (names of agent/packs; the agent checks them again). */
const PackName = z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected a pack name such as docker');

/** The device's request body (`POST /toolmesh/join`). */
export const JoinRequestSchema = z.strictObject({
  i: z.string().length(12, 'expected the 12-character code id').regex(B64URL, 'expected base64url characters'),
  agentId: AgentId,
  passwordHash: z.string().regex(PASSWORD_HASH, 'expected an scrypt hash ($scrypt$...) of the password the device made')
    .refine(withinJoinCost, `expected an scrypt hash of at most the agent's own cost (ln=${MAX_JOIN_COST.ln}, r=${MAX_JOIN_COST.r}, p=${MAX_JOIN_COST.p}), as hashPassword makes`),
  packs: z.array(PackName).max(16, 'expected at most 16 packs').default([]),
  nonce: z.string().min(22, 'expected at least 22 base64url characters').max(64, 'expected at most 64 characters').regex(B64URL, 'expected base64url characters'),
  proof: z.string().length(43, 'expected an HMAC-SHA256, base64url (43 characters)').regex(B64URL, 'expected base64url characters'),
});
/** The device's request body. */
export type JoinRequest = z.output<typeof JoinRequestSchema>;

/**
 * How the device logs in to the broker: `added` (the embedded broker has its user now), `external`
 * (the operator adds the user to an external broker: the device prints its password once) or
 * `none` (the broker asks for no credentials).
 */
export const BROKER_ACCOUNTS = ['added', 'external', 'none'] as const;

/** Node-RED's answer (200). */
export const JoinAnswerSchema = z.strictObject({
  agentId: AgentId,
  username: AgentId.optional(),
  brokerUrl: BrokerUrl,
  root: z.string().min(1).max(200),
  /** PEM CA the broker's certificate chains to, when it serves TLS. */
  ca: z.string().max(20_000).optional(),
  /** Confirm-gate public keys (SPKI PEM) by key id, as `approvals.keys` of the agent config takes them. */
  keys: z.record(z.string().regex(/^[A-Za-z0-9._-]{1,64}$/), z.string().max(2000)).refine((k) => Object.keys(k).length <= 64, 'expected at most 64 keys'),
  account: z.enum(BROKER_ACCOUNTS),
  proof: z.string().length(43).regex(B64URL),
});
/** Node-RED's answer. */
export type JoinAnswer = z.output<typeof JoinAnswerSchema>;

/** A join problem; `code` says which, `message` is one line for a person. */
export class JoinError extends Error {
  constructor(readonly code: 'bad-string' | 'expired' | 'used' | 'wrong-proof' | 'throttled' | 'unreachable' | 'bad-answer' | 'refused' | 'pinning', message: string) {
    super(message);
    this.name = 'JoinError';
  }
}

/** Issue messages as `field: what is wrong; ...` (zod issues, paths joined with dots). */
export function describeIssues(issues: readonly z.core.$ZodIssue[]): string {
  return issues.slice(0, 5).map((i) => `${i.path.map(String).join('.') || '(body)'}: ${i.code === 'unrecognized_keys' ? `unknown key(s) ${i.keys.join(', ')}` : i.message}`).join('; ');
}

/** `tmjoin1.` + base64url(JSON) of `ticket`. */
export function encodeJoinString(ticket: JoinTicket): string {
  return JOIN_PREFIX + Buffer.from(JSON.stringify(ticket)).toString('base64url');
}

/**
 * Decodes and checks a join string (spaces and line breaks from copying are dropped).
 * @throws JoinError `bad-string` naming the field, or `expired` past `x` (clock `now`, epoch ms).
 */
export function parseJoinString(text: string, now = Date.now()): JoinTicket {
  const s = text.replace(/\s+/g, '');
  if (s.length > MAX_JOIN_STRING) throw new JoinError('bad-string', `join string: longer than ${MAX_JOIN_STRING} characters`);
  if (!s.startsWith(JOIN_PREFIX)) throw new JoinError('bad-string', `join string: expected it to start with ${JOIN_PREFIX} (copy it whole from the editor's "Add a device")`);
  const body = s.slice(JOIN_PREFIX.length);
  if (!B64URL.test(body)) throw new JoinError('bad-string', 'join string: expected base64url characters after the prefix');
  let raw: unknown;
  try {
    raw = JSON.parse(Buffer.from(body, 'base64url').toString('utf8'));
  } catch {
    throw new JoinError('bad-string', 'join string: not a ToolMesh join string (the part after the prefix is no JSON); copy it whole');
  }
  const parsed = JoinTicketSchema.safeParse(raw);
  if (!parsed.success) throw new JoinError('bad-string', `join string: ${describeIssues(parsed.error.issues)}`);
  if (parsed.data.x * 1000 <= now) throw new JoinError('expired', `join string: expired at ${new Date(parsed.data.x * 1000).toISOString()}; make a new one in the editor (Add a device)`);
  return parsed.data;
}

/** The proof key of a secret: SHA-256 of a label and the secret. Node-RED keeps only this. */
export function proofKey(secret: string): Buffer {
  return createHash('sha256').update('toolmesh-join-v1\0').update(secret).digest();
}

/** The bytes the request proof covers: every field but the proof, in a fixed order. */
export function canonicalRequest(r: Omit<JoinRequest, 'proof'>): string {
  return JSON.stringify(['tmjoin1-request', r.i, r.agentId, r.passwordHash, [...r.packs], r.nonce]);
}

/** The bytes the answer proof covers: the request's nonce and every field but the proof, keys sorted. */
export function canonicalAnswer(nonce: string, a: Omit<JoinAnswer, 'proof'>): string {
  const keys = Object.keys(a.keys).sort().map((k) => [k, a.keys[k]]);
  return JSON.stringify(['tmjoin1-answer', nonce, a.agentId, a.username ?? null, a.brokerUrl, a.root, a.ca ?? null, keys, a.account]);
}

/** HMAC-SHA256 of `text` under `key`, base64url. */
export function prove(key: Buffer, text: string): string {
  return createHmac('sha256', key).update(text).digest('base64url');
}

/** Constant-time comparison of two base64url proofs. */
export function proofsEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'base64url');
  const y = Buffer.from(b, 'base64url');
  return x.length === y.length && x.length > 0 && timingSafeEqual(x, y);
}

/** Builds the device's request body for `ticket` (the password hash made by the caller). */
export function makeJoinRequest(ticket: JoinTicket, fields: { agentId: string; passwordHash: string; packs: string[] }, nonce = randomBytes(16).toString('base64url')): JoinRequest {
  const r = { i: ticket.i, agentId: fields.agentId, passwordHash: fields.passwordHash, packs: fields.packs, nonce };
  return { ...r, proof: prove(proofKey(ticket.s), canonicalRequest(r)) };
}

/**
 * Checks Node-RED's answer on the device: its shape, its proof under the ticket's secret and the
 * request's nonce, and that it is for the agent id asked for.
 * @throws JoinError `bad-answer` (shape) or `wrong-proof` (tampered with, or not from the Node-RED that made the code).
 */
export function checkJoinAnswer(ticket: JoinTicket, request: JoinRequest, body: unknown): JoinAnswer {
  const parsed = JoinAnswerSchema.safeParse(body);
  if (!parsed.success) throw new JoinError('bad-answer', `answer of ${ticket.u}: ${describeIssues(parsed.error.issues)}`);
  const { proof, ...rest } = parsed.data;
  if (!proofsEqual(proof, prove(proofKey(ticket.s), canonicalAnswer(request.nonce, rest)))) {
    throw new JoinError('wrong-proof', `answer of ${ticket.u}: its proof does not match the join string: it was changed on the way, or comes from another server; nothing was written`);
  }
  if (rest.agentId !== request.agentId) throw new JoinError('bad-answer', `answer of ${ticket.u}: agentId is ${rest.agentId}, asked for ${request.agentId}`);
  return parsed.data;
}

/** What Node-RED keeps of one outstanding code. */
interface OutstandingCode {
  key: Buffer;
  expiresAt: number;
  failures: number;
  /** Settings signed into the answer, fixed when the code was made. */
  brokerUrl: string;
  owner: string;
}

/** What {@link JoinCodeBook.redeem} decided. */
export type RedeemVerdict<T> =
  | { ok: true; owner: string; brokerUrl: string; value: T }
  | { ok: false; status: 400 | 403 | 410 | 429; error: string; retryAfterSec?: number };

/**
 * The outstanding join codes of one Node-RED process, with the failure throttle: a code is void
 * after {@link MAX_PROOF_FAILURES} wrong proofs; more than {@link MAX_FAILURES_PER_MINUTE} failures
 * (wrong proofs, unknown, used or expired codes, bad bodies) in a sliding minute make every
 * attempt answer 429 until the oldest drops out. Codes are single-use and kept in memory only.
 */
export class JoinCodeBook {
  private readonly codes = new Map<string, OutstandingCode>();
  private readonly failures: number[] = [];
  /** Ids of used or voided codes (until their expiry), so the device hears "used" rather than "unknown". */
  private readonly spent = new Map<string, number>();

  constructor(private readonly now: () => number = Date.now, private readonly ttlMs = JOIN_TTL_MS) {}

  /**
   * Makes a code for `owner` (e.g. the registry node id) and returns its join string.
   * @throws Error naming the field when a URL or the agent id is unusable.
   */
  issue(o: { owner: string; nodeRedUrl: string; brokerUrl: string; agentId?: string; fingerprint?: string }): { joinString: string; codeId: string; expiresAt: number } {
    this.sweep();
    if (this.codes.size >= 1000) throw new Error('too many outstanding join codes (1000); wait until some expire');
    const expiresAt = this.now() + this.ttlMs;
    const ticket: JoinTicket = {
      u: o.nodeRedUrl.replace(/\/+$/, ''), i: randomBytes(9).toString('base64url'), s: randomBytes(16).toString('base64url'),
      b: o.brokerUrl, x: Math.floor(expiresAt / 1000),
    };
    if (o.agentId) ticket.a = o.agentId;
    if (o.fingerprint) ticket.f = o.fingerprint;
    const checked = JoinTicketSchema.safeParse(ticket);
    if (!checked.success) {
      const names: Record<string, string> = { u: 'nodeRedUrl', b: 'brokerUrl', a: 'agentId', f: 'fingerprint' };
      throw new Error(checked.error.issues.map((i) => `${names[String(i.path[0])] ?? String(i.path[0])}: ${i.message}`).join('; '));
    }
    this.codes.set(ticket.i, { key: proofKey(ticket.s), expiresAt, failures: 0, brokerUrl: o.brokerUrl, owner: o.owner });
    return { joinString: encodeJoinString(ticket), codeId: ticket.i, expiresAt };
  }

  /** Seconds until the throttle lets an attempt through; 0 when it does now. */
  throttledFor(): number {
    const now = this.now();
    while (this.failures.length && this.failures[0] <= now - 60_000) this.failures.shift();
    if (this.failures.length < MAX_FAILURES_PER_MINUTE) return 0;
    return Math.max(1, Math.ceil((this.failures[0] + 60_000 - now) / 1000));
  }

  /** Counts a failed attempt (also for a body that failed its schema). */
  fail(): void {
    this.failures.push(this.now());
    if (this.failures.length > 1000) this.failures.shift();
  }

  /**
   * Checks a parsed request against its code; on a good proof consumes the code and runs `use`
   * (which adds the broker user); when `use` throws, the code is spent (a device asks for a new
   * one) unless the error has `keepCode: true`, and the error goes to the caller.
   */
  async redeem<T>(req: JoinRequest, use: (code: { owner: string; brokerUrl: string; key: Buffer }) => Promise<T>): Promise<RedeemVerdict<T>> {
    const wait = this.throttledFor();
    if (wait > 0) return { ok: false, status: 429, error: 'too many failed join attempts; try again later', retryAfterSec: wait };
    this.sweep();
    const code = this.codes.get(req.i);
    if (!code) {
      this.fail();
      return this.spent.has(req.i)
        ? { ok: false, status: 410, error: 'i: this join string was used already or is void; make a new one in the editor' }
        : { ok: false, status: 410, error: 'i: no such join string (expired, used, or made by another Node-RED); make a new one in the editor' };
    }
    const { proof, ...rest } = req;
    if (!proofsEqual(proof, prove(code.key, canonicalRequest(rest)))) {
      this.fail();
      code.failures += 1;
      if (code.failures >= MAX_PROOF_FAILURES) {
        this.codes.delete(req.i);
        this.spent.set(req.i, code.expiresAt);
      }
      return { ok: false, status: 403, error: 'proof: does not match the join string' };
    }
    this.codes.delete(req.i);
    this.spent.set(req.i, code.expiresAt);
    try {
      const value = await use({ owner: code.owner, brokerUrl: code.brokerUrl, key: code.key });
      return { ok: true, owner: code.owner, brokerUrl: code.brokerUrl, value };
    } catch (e) {
      // e.g. the agent id is taken: the device proved the secret, so it may try another id
      if ((e as { keepCode?: boolean }).keepCode && code.expiresAt > this.now()) {
        this.spent.delete(req.i);
        this.codes.set(req.i, code);
      }
      throw e;
    }
  }

  /** True while code `id` is outstanding. */
  has(id: string): boolean {
    this.sweep();
    return this.codes.has(id);
  }

  /** Drops every code of `owner` (its registry was deleted). */
  revokeOwner(owner: string): void {
    for (const [id, c] of this.codes) if (c.owner === owner) { this.codes.delete(id); this.spent.set(id, c.expiresAt); }
  }

  /** Outstanding codes (tests). */
  get size(): number {
    this.sweep();
    return this.codes.size;
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, c] of this.codes) if (c.expiresAt <= now) this.codes.delete(id);
    for (const [id, until] of this.spent) if (until <= now) this.spent.delete(id);
  }
}

/** Signs an answer for the device (Node-RED side). */
export function signJoinAnswer(key: Buffer, nonce: string, a: Omit<JoinAnswer, 'proof'>): JoinAnswer {
  return { ...a, proof: prove(key, canonicalAnswer(nonce, a)) };
}

/**
 * Checks an untrusted request body (already JSON-parsed by the web server; at most
 * {@link MAX_JOIN_BODY_BYTES} when serialised). Never throws.
 * @returns the request, or an error naming the field.
 */
export function parseJoinRequest(body: unknown): { ok: true; value: JoinRequest } | { ok: false; error: string } {
  let size: number;
  try {
    size = Buffer.byteLength(JSON.stringify(body) ?? '');
  } catch {
    return { ok: false, error: '(body): expected a JSON object' };
  }
  if (size > MAX_JOIN_BODY_BYTES) return { ok: false, error: `(body): larger than ${MAX_JOIN_BODY_BYTES} bytes` };
  if (typeof body !== 'object' || body === null || Array.isArray(body)) return { ok: false, error: '(body): expected a JSON object' };
  const parsed = JoinRequestSchema.safeParse(body);
  return parsed.success ? { ok: true, value: parsed.data } : { ok: false, error: describeIssues(parsed.error.issues) };
}
