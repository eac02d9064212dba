/**
 * Approvals on the agent (docs/protocol.md, "Approval tokens"): the `approvals` section of the
 * agent config (trusted Ed25519 public keys by key id) and the store of used token ids (`jti`),
 * kept on disk until the tokens expire so that a restart does not reopen a replay.
 *
 * ```yaml
 * approvals:
 *   keys: { gate-1: "-----BEGIN PUBLIC KEY-----\n..." }   # or keyFiles: { gate-1: ./gate-1.pub }
 *   usedTokensFile: ./approvals-used.jsonl                 # default <config dir>/<agent id>.approvals-used.jsonl
 *   skewToleranceMs: 30000
 * ```
 */
import type { KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { DEFAULT_SKEW_TOLERANCE_MS } from '../protocol/rpc-server';
import { ed25519PublicKey } from '../protocol/approval';

export { UsedTokenStore, UsedTokenStoreError } from '../protocol/used-tokens';

/** A key id as tokens carry it (`kid`, 1 to 128 characters). */
const KeyId = z.string().min(1).max(128);

/** The `approvals` section of the agent config. Unknown keys are errors. */
export const ApprovalsConfigSchema = z.strictObject({
  keys: z.record(KeyId, z.string().min(1)).default({})
    .describe('Trusted Ed25519 public keys (SPKI PEM) by key id'),
  keyFiles: z.record(KeyId, z.string().min(1)).default({})
    .describe('Trusted Ed25519 public keys by key id, read from PEM files (relative to the config)'),
  usedTokensFile: z.string().min(1).optional()
    .describe('Where used token ids are kept (JSON lines); default <config dir>/<agent id>.approvals-used.jsonl'),
  skewToleranceMs: z.number().int().min(0).max(600_000).default(DEFAULT_SKEW_TOLERANCE_MS)
    .describe('How long after its exp a token is still accepted, ms'),
});
export type ApprovalsConfig = z.output<typeof ApprovalsConfigSchema>;

/** A validated `approvals` section: every key parsed, paths absolute. */
export interface ResolvedApprovals {
  /** Trusted public keys by key id, from `keys` and `keyFiles`. */
  keys: ReadonlyMap<string, KeyObject>;
  usedTokensFile: string;
  skewToleranceMs: number;
}

/**
 * Parses the keys (reading `keyFiles` relative to `baseDir`) and settles the used-token file.
 * @returns the resolved section, or the problems as `approvals.<key>: what is wrong`.
 */
export function resolveApprovals(section: ApprovalsConfig, agentId: string, baseDir: string): ResolvedApprovals | { problems: string[] } {
  const problems: string[] = [];
  const keys = new Map<string, KeyObject>();
  for (const [kid, pem] of Object.entries(section.keys)) {
    try {
      keys.set(kid, ed25519PublicKey(pem));
    } catch (e) {
      problems.push(`approvals.keys.${kid}: not a usable public key (${(e as Error).message}); paste the PEM text "-----BEGIN PUBLIC KEY-----..." or use approvals.keyFiles`);
    }
  }
  for (const [kid, file] of Object.entries(section.keyFiles)) {
    if (keys.has(kid) || kid in section.keys) {
      problems.push(`approvals.keyFiles.${kid}: key id also in approvals.keys; give each key id one key`);
      continue;
    }
    const path = resolve(baseDir, file);
    try {
      keys.set(kid, ed25519PublicKey(readFileSync(path, 'utf8')));
    } catch (e) {
      problems.push(`approvals.keyFiles.${kid}: cannot use ${path}: ${(e as Error).message}`);
    }
  }
  if (problems.length) return { problems };
  const usedTokensFile = resolve(baseDir, section.usedTokensFile ?? `${agentId}.approvals-used.jsonl`);
  return { keys, usedTokensFile, skewToleranceMs: section.skewToleranceMs };
}
