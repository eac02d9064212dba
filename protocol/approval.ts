/**
 * Approval tokens (docs/protocol.md, "Approval tokens"): a person's approval of one exact
 * tool call, signed with Ed25519 (node:crypto) so the agent that runs the tool can check it.
 *
 * Token: `base64url(payload) + "." + base64url(Ed25519 signature over the payload bytes)`, where
 * payload is the JSON `{"v":1,"kid","jti","caller","agent","tool","argsSha256","exp","approver"}`
 * and `argsSha256` is the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the arguments as
 * sent (`canonicalize` package). `exp` is epoch ms.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, randomUUID, sign, verify, type KeyObject } from 'node:crypto';
import { z } from 'zod';
import { canonicalHash } from './call-store';

/** The signed claims of an approval. */
export const ApprovalPayloadSchema = z.strictObject({
  v: z.literal(1),
  kid: z.string().min(1).max(128),
  jti: z.string().min(8).max(128),
  caller: z.string().min(1),
  agent: z.string().min(1),
  tool: z.string().min(1),
  argsSha256: z.string().regex(/^[0-9a-f]{64}$/),
  exp: z.number().int(),
  approver: z.string().min(1).max(256),
});
export type ApprovalPayload = z.infer<typeof ApprovalPayloadSchema>;

/** The hex SHA-256 of the RFC 8785 canonical JSON of `args` (the value bound into a token). */
export function argsSha256(args: Record<string, unknown>): string {
  return canonicalHash(args);
}

/** A new Ed25519 key pair as PEM strings (PKCS#8 private, SPKI public). */
export function generateApprovalKeys(): { privateKeyPem: string; publicKeyPem: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  return {
    privateKeyPem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
    publicKeyPem: publicKey.export({ type: 'spki', format: 'pem' }).toString(),
  };
}

/** The public key (SPKI PEM) of an Ed25519 private key (PKCS#8 PEM). @throws Error for a non-Ed25519 or malformed key. */
export function publicKeyOf(privateKeyPem: string): string {
  const key = createPrivateKey(privateKeyPem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the approval signing key must be Ed25519, got ${key.asymmetricKeyType}`);
  return createPublicKey(key).export({ type: 'spki', format: 'pem' }).toString();
}

/** What {@link signApproval} needs. */
export interface ApprovalRequest {
  /** Key id the agents know the public key by. */
  kid: string;
  /** Ed25519 private key: PKCS#8 PEM or a KeyObject. */
  privateKey: string | KeyObject;
  caller: string;
  agent: string;
  tool: string;
  /** The arguments exactly as they will be sent. */
  args: Record<string, unknown>;
  /** Expiry, epoch ms. */
  exp: number;
  /** Who approved (a person's name, a button id). */
  approver: string;
  /** Unique token id (default: a random UUID). */
  jti?: string;
}

/**
 * Signs an approval of one call.
 * @returns the token string.
 * @throws Error when the key is not an Ed25519 private key.
 */
export function signApproval(r: ApprovalRequest): string {
  const payload: ApprovalPayload = {
    v: 1, kid: r.kid, jti: r.jti ?? randomUUID(), caller: r.caller, agent: r.agent, tool: r.tool,
    argsSha256: argsSha256(r.args), exp: r.exp, approver: r.approver,
  };
  const bytes = Buffer.from(JSON.stringify(payload), 'utf8');
  const key = typeof r.privateKey === 'string' ? createPrivateKey(r.privateKey) : r.privateKey;
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`the approval signing key must be Ed25519, got ${key.asymmetricKeyType}`);
  return `${bytes.toString('base64url')}.${sign(null, bytes, key).toString('base64url')}`;
}

/**
 * An Ed25519 public key from SPKI PEM text: what an agent trusts approval tokens by.
 * @throws Error saying what is wrong (not a public key, or another key type).
 */
export function ed25519PublicKey(pem: string): KeyObject {
  const key = createPublicKey(pem);
  if (key.asymmetricKeyType !== 'ed25519') throw new Error(`an Ed25519 public key is needed, this is ${key.asymmetricKeyType}`);
  return key;
}

/**
 * Merges key maps (key id → public key), in order. A key id that two maps give different keys is
 * left out: a token naming it cannot tell whose it is.
 */
export function mergeTrustedKeys(maps: Iterable<ReadonlyMap<string, KeyObject> | Iterable<[string, KeyObject]>>): Map<string, KeyObject> {
  const out = new Map<string, KeyObject>();
  const clash = new Set<string>();
  for (const map of maps) {
    for (const [kid, key] of map) {
      const had = out.get(kid);
      if (had && !had.equals(key)) clash.add(kid);
      else out.set(kid, key);
    }
  }
  for (const kid of clash) out.delete(kid);
  return out;
}

/** Why a token was refused (each a distinct check, so an audit can say which). */
export type ApprovalRefusal = 'malformed' | 'unknown-key' | 'bad-signature' | 'wrong-caller' | 'wrong-agent' | 'wrong-tool' | 'arguments-changed' | 'expired' | 'replayed';

/** What the agent expects a token to approve. */
export interface ApprovalExpectation {
  caller: string;
  agent: string;
  tool: string;
  args: Record<string, unknown>;
  /** Trusted public keys by key id (SPKI PEM or KeyObject). */
  keys: ReadonlyMap<string, string | KeyObject>;
  /** Tolerated clock skew for `exp`, ms. */
  skewMs: number;
  now?: number;
}

/**
 * Checks a token's signature, key id, caller, agent, tool, argument hash and expiry (the replay
 * check by `jti` is the caller's job: see the agent's approval store).
 * @returns the payload, or the first refusal.
 */
export function verifyApproval(token: string, e: ApprovalExpectation): { ok: true; payload: ApprovalPayload } | { ok: false; refusal: ApprovalRefusal; payload?: ApprovalPayload } {
  const parts = token.split('.');
  if (parts.length !== 2) return { ok: false, refusal: 'malformed' };
  const bytes = Buffer.from(parts[0], 'base64url');
  let payload: ApprovalPayload;
  try {
    const parsed = ApprovalPayloadSchema.safeParse(JSON.parse(bytes.toString('utf8')));
    if (!parsed.success) return { ok: false, refusal: 'malformed' };
    payload = parsed.data;
  } catch {
    return { ok: false, refusal: 'malformed' };
  }
  const key = e.keys.get(payload.kid);
  if (!key) return { ok: false, refusal: 'unknown-key', payload };
  let good = false;
  try {
    good = verify(null, bytes, typeof key === 'string' ? createPublicKey(key) : key, Buffer.from(parts[1], 'base64url'));
  } catch {
    good = false;
  }
  if (!good) return { ok: false, refusal: 'bad-signature', payload };
  if (payload.caller !== e.caller) return { ok: false, refusal: 'wrong-caller', payload };
  if (payload.agent !== e.agent) return { ok: false, refusal: 'wrong-agent', payload };
  if (payload.tool !== e.tool) return { ok: false, refusal: 'wrong-tool', payload };
  if (payload.argsSha256 !== argsSha256(e.args)) return { ok: false, refusal: 'arguments-changed', payload };
  if ((e.now ?? Date.now()) > payload.exp + e.skewMs) return { ok: false, refusal: 'expired', payload };
  return { ok: true, payload };
}
