/**
 * The confirm-gate's signing key: the Ed25519 private key, kept on the runtime side in a key
 * file under Node-RED's user directory (`<userDir>/toolmesh-keys/<kid>.pem`, mode 0600) that the
 * editor never sees, or — for flows made before key files — in the node's credential (PEM,
 * possibly flattened to one line by the editor's password field); and the snippet that tells
 * agents its public key (docs/protocol.md, "Approval tokens"). No Node-RED imports.
 */
import { createHash, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateApprovalKeys, publicKeyOf } from '@toolmesh/agent/protocol';

/** A usable signing key: the private key and its public half. */
export interface SigningKey {
  privateKey: KeyObject;
  /** SPKI PEM, what agents are configured with. */
  publicKeyPem: string;
}

/** Key ids the gate accepts: letters, digits, `_`, `.`, `-`, 1 to 128 of them (a plain YAML key). */
export const KID_PATTERN = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Restores a PEM block whose line breaks were lost (an `<input>` field drops them): the base64
 * body between the `-----BEGIN X-----` and `-----END X-----` lines is re-wrapped at 64 characters
 * (RFC 7468). Text without such a block is returned trimmed.
 */
export function normalizePem(text: string): string {
  const m = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/.exec(text);
  if (!m) return text.trim();
  const body = m[2].replace(/\s+/g, '');
  return `-----BEGIN ${m[1]}-----\n${(body.match(/.{1,64}/g) ?? []).join('\n')}\n-----END ${m[1]}-----\n`;
}

/**
 * Reads the signing key credential.
 * @param pem an Ed25519 private key, PKCS#8 PEM (line breaks optional).
 * @throws Error saying what is wrong: not PEM, not a private key, or not Ed25519.
 */
export function readSigningKey(pem: string): SigningKey {
  const text = normalizePem(pem);
  if (!text.startsWith('-----BEGIN')) throw new Error('it is not a PEM block (expected "-----BEGIN PRIVATE KEY-----")');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(text);
  } catch (e) {
    throw new Error(`it is not a readable private key (${(e as Error).message})`);
  }
  if (privateKey.asymmetricKeyType !== 'ed25519') throw new Error(`it is a ${privateKey.asymmetricKeyType} key, not Ed25519`);
  return { privateKey, publicKeyPem: publicKeyOf(text) };
}

/**
 * The lines to paste into an agent's configuration so it trusts tokens signed under `kid`:
 * `approvals: keys: <kid>: |` followed by the PEM, indented (YAML block scalar).
 */
export function agentKeySnippet(kid: string, publicKeyPem: string): string {
  const pem = publicKeyPem.trim().split('\n').map((l) => `      ${l}`).join('\n');
  return `approvals:\n  keys:\n    ${kid}: |\n${pem}\n`;
}

/** Folder of the gates' key files inside Node-RED's user directory. */
export const KEY_DIR = 'toolmesh-keys';

/** Path of the key file of `kid` (a {@link KID_PATTERN} id, so it cannot leave the folder). */
export function keyFilePath(userDir: string, kid: string): string {
  if (!KID_PATTERN.test(kid) || kid.startsWith('.')) throw new Error(`key id ${JSON.stringify(kid)} is not 1 to 128 letters, digits, _ . or - (not starting with .)`);
  return join(userDir, KEY_DIR, `${kid}.pem`);
}

/**
 * Fingerprint of a public key, as people compare it: `SHA256:` and the unpadded base64 of the
 * SHA-256 of its SPKI DER (the form OpenSSH prints).
 */
export function keyFingerprint(publicKeyPem: string): string {
  const der = createPublicKey(publicKeyPem).export({ type: 'spki', format: 'der' });
  return `SHA256:${createHash('sha256').update(der).digest('base64').replace(/=+$/, '')}`;
}

/** What {@link ensureKeyFile} reports: the public half, never the private key. */
export interface KeyFileInfo {
  kid: string;
  file: string;
  publicKeyPem: string;
  fingerprint: string;
  /** True when the file was made now; false when it was there already (and was kept). */
  created: boolean;
}

/**
 * Makes the key file of `kid` with a new Ed25519 pair, or keeps the one that is there (agents
 * already trust it) unless `replace`. The folder is made with mode 0700, the file with 0600.
 * @throws Error for a bad key id, an unreadable existing file, or a failed write (the message says which).
 */
export function ensureKeyFile(userDir: string, kid: string, replace = false): KeyFileInfo {
  const file = keyFilePath(userDir, kid);
  if (!replace && existsSync(file)) {
    const key = readSigningKey(readFileSync(file, 'utf8'));
    return { kid, file, publicKeyPem: key.publicKeyPem, fingerprint: keyFingerprint(key.publicKeyPem), created: false };
  }
  mkdirSync(join(userDir, KEY_DIR), { recursive: true, mode: 0o700 });
  const { privateKeyPem, publicKeyPem } = generateApprovalKeys();
  writeFileSync(file, privateKeyPem, { mode: 0o600, flag: replace ? 'w' : 'wx' });
  chmodSync(file, 0o600);
  return { kid, file, publicKeyPem, fingerprint: keyFingerprint(publicKeyPem), created: true };
}

/**
 * Reads the key file of `kid`, or returns undefined when there is none.
 * @throws Error when the file exists but is not a usable Ed25519 private key.
 */
export function readKeyFile(userDir: string, kid: string): SigningKey | undefined {
  const file = keyFilePath(userDir, kid);
  if (!existsSync(file)) return undefined;
  return readSigningKey(readFileSync(file, 'utf8'));
}
