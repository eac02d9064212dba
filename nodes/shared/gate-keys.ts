/**
 * The approval keys of the confirm-gates deployed in this Node-RED: each gate with a usable
 * signing key adds its public half while it is deployed, and the flow agents of this Node-RED
 * (nodes/tool-in/flow-agent.ts) trust them by default, so an approval a person gives at a gate
 * here lets a high-risk tool-in flow run (docs/protocol.md, "Approval tokens"). One module
 * instance per Node-RED process (all nodes load from the same dist/). No Node-RED imports.
 */
import { createPublicKey, type KeyObject } from 'node:crypto';
import { mergeTrustedKeys } from '@toolmesh/agent/protocol';

/** A gate's public key under its key id (`kid`, what tokens name). */
interface GateKey {
  kid: string;
  key: KeyObject;
}

const byNode = new Map<string, GateKey>();
let merged: ReadonlyMap<string, KeyObject> | undefined;

/**
 * Trusts the public key `publicKeyPem` (SPKI PEM, Ed25519) of gate node `nodeId` under `kid`
 * until the returned function is called (the gate closes).
 * @throws Error when the PEM is not a public key.
 */
export function addGateKey(nodeId: string, kid: string, publicKeyPem: string): () => void {
  const entry = { kid, key: createPublicKey(publicKeyPem) };
  byNode.set(nodeId, entry);
  merged = undefined;
  return () => {
    if (byNode.get(nodeId) !== entry) return;
    byNode.delete(nodeId);
    merged = undefined;
  };
}

/**
 * The deployed gates' keys by key id. When two gates use one key id with different keys, the
 * key id is left out: a token naming it cannot tell which gate signed it.
 */
export function gateKeys(): ReadonlyMap<string, KeyObject> {
  merged ??= mergeTrustedKeys([[...byNode.values()].map(({ kid, key }): [string, KeyObject] => [kid, key])]);
  return merged;
}
