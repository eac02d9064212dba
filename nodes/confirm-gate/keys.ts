/**
 * The confirm-gate's signing key: reading the Ed25519 private key from the node's credential
 * (PEM, possibly flattened to one line by the editor's password field), and the snippet that
 * tells agents its public key (docs/protocol.md, "Approval tokens"). No Node-RED imports.
 */
import { createPrivateKey, type KeyObject } from 'node:crypto';
import { publicKeyOf } from '../../protocol';

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
