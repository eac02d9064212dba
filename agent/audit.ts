/**
 * The agent's own execution log (config `audit:`): one hash-chained record (protocol/audit) per
 * `tools/call` the agent finished or refused, from the server's `call` events.
 *
 * Record: `{ kind: 'tool-call' | 'refusal', caller, agent, tool, callId, risk, args (redacted),
 * approval: { approver, jti, kid }, outcome: 'ok' | <tool error code>, durationMs, dryRun,
 * refusal: { code, reason } }`. A call counts as refused when the server says so (`refusal`) or
 * its code is one of {@link REFUSAL_CODES} (invalid arguments, permission, approval, denial).
 * Calls to unknown tools and unreadable requests get a JSON-RPC error and no `call` event, so
 * they are not logged here.
 */
import { readFileSync } from 'node:fs';
import type { EventEmitter } from 'node:events';
import type { CallEvent } from '../protocol';
import { AuditWriter, REFUSAL_CODES, Redactor, type AuditEntry } from '../protocol/audit';
import type { AgentConfig } from './config';
import type { Logger } from './packs/types';

/** A call event with the optional fields the server may add (all read defensively). */
type AuditedCall = CallEvent & {
  risk?: string;
  args?: unknown;
  dryRun?: boolean;
  approval?: { approver?: string; jti?: string; kid?: string };
  /** What refused the call (`expired`, `replayed`, `not-allowed` ... or a tool error code). */
  refusal?: string;
};

/** The record of one call event. */
export function callEntry(e: AuditedCall, agentId: string, r: Redactor): AuditEntry {
  const refused = e.refusal !== undefined || (e.code !== undefined && REFUSAL_CODES.has(e.code));
  const reason = typeof e.refusal === 'string' ? e.refusal : undefined;
  const a = e.approval;
  return {
    kind: refused ? 'refusal' : 'tool-call',
    caller: e.callerId,
    agent: agentId,
    tool: e.tool,
    callId: e.id,
    risk: e.risk,
    args: e.args === undefined ? undefined : r.redact(e.args),
    // the event carries the token's claims only; the token string never reaches the log
    approval: a ? { approver: a.approver, jti: a.jti, kid: a.kid } : undefined,
    outcome: e.code ?? 'ok',
    durationMs: e.durationMs,
    dryRun: e.dryRun,
    refusal: refused ? { code: e.code ?? 'PERMISSION_DENIED', reason: reason && r.redactText(reason) } : undefined,
  };
}

/** An open execution log. */
export interface AgentAudit {
  /** Appends a record for every `call` event of `server`. */
  attach(server: EventEmitter): void;
  /** Waits for queued records and closes the file. */
  close(): Promise<void>;
}

/** The broker password the agent uses, to redact by value (the same sources as the connection). */
function brokerPassword(cfg: AgentConfig): string | undefined {
  const b = cfg.broker;
  if (b.password) return b.password;
  if (b.passwordFile) {
    try { return readFileSync(b.passwordFile, 'utf8').trim(); } catch { return undefined; }
  }
  return process.env.TOOLMESH_BROKER_PASSWORD;
}

/**
 * Opens the log named by `cfg.audit` (one line per recovery step to `log`).
 * @throws AuditError when the log cannot be continued (its anchor shows records removed from the
 *   end, a malformed last line ...): the agent does not start with a log it cannot vouch for.
 */
export async function openAgentAudit(cfg: AgentConfig, log: Logger): Promise<AgentAudit | undefined> {
  const a = cfg.audit;
  if (!a) return undefined;
  const file = a.file ?? `${cfg.agent.id}-audit.jsonl`;
  const writer = await AuditWriter.open({
    file,
    rotateBytes: Math.round(a.rotateMb * 1024 * 1024),
    rotateDaily: a.daily,
    anchorKey: a.anchorKeyFile ? readFileSync(a.anchorKeyFile, 'utf8').trim() : undefined,
    onNotice: (text) => log.warn(`audit: ${text}`),
  });
  const r = new Redactor({ keys: a.redactKeys, values: [brokerPassword(cfg)].filter((v): v is string => !!v) });
  let failing = false;
  log.info(`audit: recording calls in ${file} (from seq ${writer.chainHead.seq + 1})`);
  return {
    attach(server) {
      server.on('call', (e: AuditedCall) => {
        writer.append(callEntry(e, cfg.agent.id, r)).then(
          () => { failing = false; },
          (err: Error) => {
            if (!failing) log.error(`audit: the record of ${e.tool} from ${e.callerId} was not written: ${err.message} (further failures are not logged until a record is written again)`);
            failing = true;
          },
        );
      });
    },
    close: () => writer.close(),
  };
}
