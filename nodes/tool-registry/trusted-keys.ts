/**
 * The registry's trusted approval keys: public keys of confirm-gates in OTHER Node-RED instances
 * whose approvals the flow agents of this registry (tool-in) accept, besides the gates deployed
 * here (nodes/shared/gate-keys.ts). The text is what a gate's dialog offers to copy for agents
 * (`approvals: keys: <kid>: |` + PEM, nodes/confirm-gate/keys.ts `agentKeySnippet`), or just the
 * map of key id to PEM; parsed with the `yaml` package. No Node-RED imports.
 */
import type { KeyObject } from 'node:crypto';
import { parse } from 'yaml';
import { ed25519PublicKey } from '@toolmesh/agent/protocol';

/** Key ids as tokens carry them (`kid`, as the gate accepts them). */
const KID = /^[A-Za-z0-9_.-]{1,128}$/;

/**
 * Parses the trusted-keys text (empty: none).
 * @returns the keys by key id, or `problem`: what is wrong, naming the key id or the line.
 */
export function parseTrustedKeys(text: string | undefined): { keys: ReadonlyMap<string, KeyObject>; problem?: string } {
  const keys = new Map<string, KeyObject>();
  if (!text?.trim()) return { keys };
  let doc: unknown;
  try {
    doc = parse(text, { maxAliasCount: 0 });
  } catch (e) {
    return { keys, problem: `not YAML: ${(e as Error).message.split('\n')[0]}` };
  }
  const approvals = isObject(doc) && isObject(doc.approvals) ? doc.approvals : undefined;
  const map = approvals && isObject(approvals.keys) ? approvals.keys : doc;
  if (!isObject(map)) return { keys, problem: 'expected "approvals: keys: <key id>: |" and a PEM public key under it, as a confirm-gate\'s dialog shows it, or "<key id>: |" and the PEM' };
  for (const [kid, pem] of Object.entries(map)) {
    if (!KID.test(kid)) return { keys: new Map(), problem: `key id "${kid}": expected 1 to 128 letters, digits, _ . or -` };
    try {
      if (typeof pem !== 'string') throw new Error('expected PEM text');
      keys.set(kid, ed25519PublicKey(pem));
    } catch (e) {
      return { keys: new Map(), problem: `key ${kid}: not a usable public key (${(e as Error).message}); paste "-----BEGIN PUBLIC KEY-----..." as the gate shows it` };
    }
  }
  return { keys };
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
