/**
 * Approvals in the demo: every confirm-gate in the demo's flows gets a signing key, and every demo
 * agent trusts the gates' public keys, so flows with a gate work without copying keys by hand.
 *
 * - The demo key: an Ed25519 pair made once, `.toolmesh-demo/approval-signing.key` (PKCS#8 PEM,
 *   mode 0600). Paste it into a gate (tab "Signing key") that was imported while the demo runs.
 * - At each start, before Node-RED runs, the confirm-gates in the user's flows file that have no
 *   signing key get the demo key in Node-RED's credentials file (`flows_cred.json`, encrypted as
 *   Node-RED does it: AES-256-CTR, key SHA-256(credentialSecret), `{"$": hex IV + base64}`).
 *   A gate that has a key of its own (generated in its dialog) keeps it.
 * - The agents trust, by key id (`kid`): the demo key under the key ids of the example flows'
 *   gates (so a freshly imported example works once the demo key is pasted), and each gate's own
 *   public key under that gate's key id (so keys generated in the editor work after a restart).
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { basename, extname, join, resolve } from 'node:path';
import { generateApprovalKeys, publicKeyOf } from '@toolmesh/agent/protocol';
import { readSigningKey } from '../../nodes/confirm-gate/keys';
import { defaultKid } from '../../nodes/confirm-gate/settings';
import type { FlowNode } from './options';

/** The demo key pair's file in the demo user directory. */
export const SIGNING_KEY_FILE = 'approval-signing.key';

/** The demo's signing key. */
export interface DemoKey {
  file: string;
  privateKeyPem: string;
  publicKeyPem: string;
}

/** Reads the demo key, making it on the first run. @throws Error when the file is not an Ed25519 private key. */
export function ensureDemoKey(userDir: string): DemoKey {
  const file = join(userDir, SIGNING_KEY_FILE);
  if (!existsSync(file)) {
    writeFileSync(file, generateApprovalKeys().privateKeyPem, { mode: 0o600 });
  }
  const privateKeyPem = readFileSync(file, 'utf8');
  return { file, privateKeyPem, publicKeyPem: publicKeyOf(privateKeyPem) };
}

/** The key id a confirm-gate signs with: its `kid` property, else `gate-<id>` (nodes/confirm-gate/settings.ts). */
export function gateKid(node: FlowNode): string {
  return String(node.kid ?? '').trim() || defaultKid(node.id);
}

/** The key ids of the confirm-gates in `flows`. */
export function gateKidsOf(flows: FlowNode[]): string[] {
  return [...new Set(flows.filter((n) => n.type === 'toolmesh-confirm-gate').map(gateKid))];
}

/** Node-RED credentials: by node id, each node's credential fields. */
export type Credentials = Record<string, Record<string, unknown>>;

/** Node-RED's credential encryption key: SHA-256 of the credentialSecret. */
const cipherKey = (secret: string) => createHash('sha256').update(secret).digest();

function decrypt(secret: string, file: { $: string }): Credentials {
  const decipher = createDecipheriv('aes-256-ctr', cipherKey(secret), Buffer.from(file.$.slice(0, 32), 'hex'));
  return JSON.parse(decipher.update(file.$.slice(32), 'base64', 'utf8') + decipher.final('utf8')) as Credentials;
}

/**
 * flows_cred.json's content as Node-RED writes it with `credentialSecret` `secret`:
 * `{"$": hex(iv) + base64(AES-256-CTR(sha256(secret), iv, JSON))}`, credentials by node id.
 */
export function encryptCredentials(secret: string, creds: Credentials): { $: string } {
  const iv = randomBytes(16);
  const cipher = createCipheriv('aes-256-ctr', cipherKey(secret), iv);
  return { $: iv.toString('hex') + cipher.update(JSON.stringify(creds), 'utf8', 'base64') + cipher.final('base64') };
}

/** Node-RED's credentials of the user's flows, decrypted, and how to write them back. */
export interface CredentialStore {
  /** `<userDir>/<flow file base>_cred<ext>`. */
  file: string;
  /** Credentials by node id; change them in place, then {@link save}. */
  creds: Credentials;
  /** Writes `creds` as Node-RED would (encrypted with the credentialSecret, or plain when it is false), mode 0600, atomically. */
  save(): void;
}

/**
 * Opens Node-RED's credentials file of `<userDir>/<flowFile>` (Node-RED's name for it,
 * runtime/lib/storage/localfilesystem: `<flow file base>_cred<ext>`); an absent file is empty.
 * @param settings `flowFile` (default flows.json) and `credentialSecret` (a string, or false for
 *   unencrypted credentials).
 * @returns the store, or `problem`: `no-secret` when settings.js sets no credentialSecret (Node-RED
 *   then keeps its own key, which the demo cannot read), else a sentence saying why the file cannot be read.
 */
export function openCredentials(userDir: string, settings: { flowFile?: string; credentialSecret?: unknown }): CredentialStore | { problem: string } {
  const secret = settings.credentialSecret;
  if (typeof secret !== 'string' && secret !== false) return { problem: 'no-secret' };
  const flowFile = resolve(userDir, settings.flowFile ?? 'flows.json');
  const ext = extname(flowFile);
  const file = join(userDir, `${basename(flowFile, ext)}_cred${ext}`);
  let creds: Credentials = {};
  if (existsSync(file)) {
    try {
      const raw = JSON.parse(readFileSync(file, 'utf8')) as Credentials | { $: string };
      creds = typeof raw.$ === 'string' ? (typeof secret === 'string' ? decrypt(secret, raw as { $: string }) : {}) : raw as Credentials;
    } catch (e) {
      return { problem: `cannot read ${file} (${(e as Error).message})` };
    }
  }
  return {
    file,
    creds,
    save() {
      const tmp = `${file}.toolmesh-demo.tmp`;
      writeFileSync(tmp, `${JSON.stringify(typeof secret === 'string' ? encryptCredentials(secret, creds) : creds, null, 4)}\n`, { mode: 0o600 });
      chmodSync(tmp, 0o600);
      renameSync(tmp, file);
    },
  };
}

/** What {@link settleGateKeys} did. */
export interface GateKeys {
  /** Public keys (SPKI PEM) the demo agents trust, by key id. */
  trusted: Record<string, string>;
  /** One line each: gates given the demo key, and problems (a conflicting key id, unreadable credentials). */
  notes: string[];
}

/**
 * Gives the key-less confirm-gates of `<userDir>/<flowFile>` the demo key and collects the
 * public keys the agents should trust (see the module comment).
 * @param settings Node-RED's settings: `flowFile` (default flows.json) and `credentialSecret`
 *   (a string, or false for unencrypted credentials).
 * @param exampleKids key ids of the example flows' gates, trusted with the demo key.
 */
export function settleGateKeys(userDir: string, settings: { flowFile?: string; credentialSecret?: unknown }, key: DemoKey, exampleKids: string[]): GateKeys {
  const trusted: Record<string, string> = Object.fromEntries(exampleKids.map((kid) => [kid, key.publicKeyPem]));
  const notes: string[] = [];
  const flowFile = resolve(userDir, settings.flowFile ?? 'flows.json');
  let flows: FlowNode[] = [];
  try { flows = JSON.parse(readFileSync(flowFile, 'utf8')) as FlowNode[]; } catch { /* no flows yet, or Node-RED reports the broken file */ }
  const gates = flows.filter((n) => n.type === 'toolmesh-confirm-gate');
  if (!gates.length) return { trusted, notes };

  const store = openCredentials(userDir, settings);
  if ('problem' in store) {
    notes.push(store.problem === 'no-secret'
      ? 'settings.js has no credentialSecret, so the demo cannot give confirm-gates its key: paste it into each gate (see below)'
      : `${store.problem}; the confirm-gates keep their keys as they are`);
    return { trusted, notes };
  }
  const creds = store.creds;
  const seen = new Map<string, string>(); // kid -> gate id that set it
  let changed = false;
  for (const gate of gates) {
    const kid = gateKid(gate);
    let publicKeyPem: string;
    const own = creds[gate.id]?.signingKey;
    if (typeof own === 'string' && own.trim()) {
      try {
        publicKeyPem = readSigningKey(own).publicKeyPem;
      } catch (e) {
        notes.push(`confirm-gate ${gate.id} has an unusable signing key (${(e as Error).message}); generate a new one in its dialog`);
        continue;
      }
    } else {
      creds[gate.id] = { ...creds[gate.id], signingKey: key.privateKeyPem };
      publicKeyPem = key.publicKeyPem;
      changed = true;
      notes.push(`confirm-gate ${gate.id} (key id ${kid}) had no signing key: it gets the demo key`);
    }
    const first = seen.get(kid);
    if (first && trusted[kid] !== publicKeyPem) {
      notes.push(`confirm-gates ${first} and ${gate.id} sign as ${kid} with different keys; the agents trust ${first}'s. Give one of them another key id`);
      continue;
    }
    seen.set(kid, gate.id);
    trusted[kid] = publicKeyPem;
  }
  if (changed) store.save();
  return { trusted, notes };
}
