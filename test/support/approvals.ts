/**
 * The real authorization of an agent that trusts given approval keys (protocol/policy.ts), with
 * its used-token store in a fresh temporary directory: what tests hand to `RpcServer` instead of
 * writing an approval check of their own.
 */
import { createPublicKey } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { UsedTokenStore, type ServerAuthorization } from '../../protocol';

/** `{ keys, store }` for `RpcServerOptions.authorization`; `keys` maps key ids to SPKI PEM public keys. */
export async function trustingAuthorization(keys: ReadonlyMap<string, string>, extra: Partial<ServerAuthorization> = {}): Promise<ServerAuthorization> {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-test-approvals-'));
  const store = await UsedTokenStore.open(join(dir, 'used.jsonl'), 0, () => undefined);
  return { keys: new Map([...keys].map(([kid, pem]) => [kid, createPublicKey(pem)])), store, skewToleranceMs: 0, ...extra };
}

/** What an agent's `call` event says of its approval check: `approved`, a refusal name, or `open` (no token needed or checked). */
export function verdictOf(e: { refusal?: string; approval?: unknown; code?: string }): string {
  return e.refusal ?? (e.approval ? 'approved' : 'open');
}
