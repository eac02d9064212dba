/**
 * Audit records: one JSON object per line (JSONL), hash-chained.
 *
 * `hash` is the hex SHA-256 of the RFC 8785 (JCS) canonical JSON of the record without `hash`
 * (`canonicalize` package); `prev` is the `hash` of the record before it (across rotated files),
 * or {@link GENESIS} for the first record of a chain. Since `hash` covers `prev`, every record
 * commits to the whole history before it. The line on disk is plain `JSON.stringify` output in a
 * readable key order; only the canonical form is hashed, so key order and spacing do not matter.
 * No Node-RED imports.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';

/** `prev` of the first record of a chain: 64 zeros. */
export const GENESIS = '0'.repeat(64);

/** What a record describes. Open-ended: readers must accept kinds they do not know. */
export type AuditKind = 'prompt' | 'tool-call' | 'approval' | 'tool-result' | 'answer' | 'refusal' | 'message' | (string & {});

/** An approval as recorded: who approved and the token's id; never the token itself. */
export interface AuditApproval {
  approver?: string;
  jti?: string;
  kid?: string;
  /** When it was approved, epoch ms, when known. */
  at?: number;
}

/** Token counts of an LLM run (OpenAI `usage`). */
export interface AuditTokens {
  prompt?: number;
  completion?: number;
  total?: number;
}

/** The fields a producer sets; the writer adds `seq`, `ts` (unless given), `prev`, `hash`. */
export interface AuditEntry {
  kind: AuditKind;
  /** Epoch ms; the writer's clock when absent. */
  ts?: number;
  /** An LLM run or session the record belongs to. */
  runId?: string;
  /** Node-RED `_msgid` of the message described. */
  msgId?: string;
  /** Caller id (agent side: from the request topic). */
  caller?: string;
  /**
   * The authenticated MCP client a bridge record belongs to (mcp/identity.ts): its OAuth
   * `client_id` (or `static-token`) and the owner's label of it. Absent for sessions without an
   * identity (stdio, unauthenticated loopback) and for every other producer.
   */
  clientId?: string;
  label?: string;
  /** Agent side: the client the caller said it called for (`tools/call` `_meta.onBehalfOf`). */
  onBehalfOf?: string;
  agent?: string;
  tool?: string;
  /** Tool call id (`msg.toolCall.id`, or the JSON-RPC request id on the agent). */
  callId?: string | number;
  risk?: string;
  /** Tool arguments, already redacted ({@link redact}). */
  args?: unknown;
  approval?: AuditApproval;
  /** `ok`, or the tool error code (`DENIED`, `TIMEOUT`, ...). */
  outcome?: string;
  /** Wall time, ms. */
  durationMs?: number;
  tokens?: AuditTokens;
  dryRun?: boolean;
  /** Why a call was refused before it ran. */
  refusal?: { code: string; reason?: string };
  /** Prompt or answer text (redacted by value, capped). */
  text?: string;
  /** Calls an LLM run made: `{ agent, tool, outcome, durationMs }` each. */
  calls?: Array<{ agent?: string; tool?: string; outcome: string; durationMs?: number }>;
  topic?: string;
  /** Anything else a producer wants kept (plain JSON). */
  [extra: string]: unknown;
}

/** A record as stored. */
export interface AuditRecord extends AuditEntry {
  /** 1 for the first record of a chain, +1 per record, continuing across rotated files. */
  seq: number;
  ts: number;
  /** Base name of the previous file, on the first record after a rotation. */
  rotatedFrom?: string;
  prev: string;
  hash: string;
}

/** Hex SHA-256 of the canonical JSON of `record` without its `hash` field. */
export function hashOf(record: Omit<AuditRecord, 'hash'> & { hash?: string }): string {
  const { hash: _ignored, ...rest } = record;
  return createHash('sha256').update(canonicalize(rest) ?? 'null').digest('hex');
}

/**
 * Builds the next record: plain JSON (undefined fields dropped, so writer and verifier hash the
 * same thing), fields in a readable order, `hash` last.
 */
export function sealRecord(entry: AuditEntry, seq: number, prev: string, now: number, rotatedFrom?: string): AuditRecord {
  const { kind, ts, ...rest } = JSON.parse(JSON.stringify(entry)) as AuditEntry;
  delete rest.seq; delete rest.prev; delete rest.hash; delete rest.rotatedFrom;
  const body = { seq, ts: ts ?? now, kind, ...rest, ...(rotatedFrom ? { rotatedFrom } : {}), prev };
  return { ...body, hash: hashOf(body) } as AuditRecord;
}

/** The line written for a record, with its `\n`. */
export function lineOf(record: AuditRecord): string {
  return `${JSON.stringify(record)}\n`;
}

/** Parses one line into a record; undefined when it is not JSON or lacks seq/ts/kind/prev/hash. */
export function parseRecord(line: string): AuditRecord | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!v || typeof v !== 'object' || Array.isArray(v)) return undefined;
  const r = v as AuditRecord;
  const hex = /^[0-9a-f]{64}$/;
  if (!Number.isSafeInteger(r.seq) || r.seq < 1 || typeof r.ts !== 'number' || typeof r.kind !== 'string') return undefined;
  if (typeof r.prev !== 'string' || !hex.test(r.prev) || typeof r.hash !== 'string' || !hex.test(r.hash)) return undefined;
  return r;
}

/** `YYYYMMDD` of an epoch-ms time, UTC. */
export function utcDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 10).replace(/-/g, '');
}

/** `YYYYMMDD-HHMMSS` of an epoch-ms time, UTC. */
export function utcStamp(ms: number): string {
  const iso = new Date(ms).toISOString();
  return `${iso.slice(0, 10).replace(/-/g, '')}-${iso.slice(11, 19).replace(/:/g, '')}`;
}

/** Why an audit log cannot be opened or written; `code` names the problem, `message` says what to do. */
export class AuditError extends Error {
  constructor(readonly code: 'malformed' | 'truncated' | 'edited' | 'anchor' | 'write-failed' | 'closed', message: string) {
    super(message);
    this.name = 'AuditError';
  }
}

/**
 * Tool error codes that mean the call was refused rather than run and failed: such outcomes are
 * recorded with kind `refusal` (docs/protocol.md, tool error codes).
 */
export const REFUSAL_CODES: ReadonlySet<string> = new Set([
  'INVALID_ARGUMENTS', 'TOOL_NOT_FOUND', 'PERMISSION_DENIED', 'PATH_NOT_ALLOWED', 'APP_NOT_ALLOWED', 'APPROVAL_REQUIRED', 'DENIED',
]);
