/**
 * The agent's own execution log (config `audit:`): one hash-chained record (protocol/audit) per
 * `tools/call` the agent finished or refused, from the server's `call` events, and, for calls
 * at or above `audit.durableFrom` (default high), a `call-started` record written before the
 * call runs.
 *
 * Record: `{ kind: 'tool-call' | 'refusal', caller, agent, tool, callId, risk, args (redacted),
 * approval: { approver, jti, kid }, outcome: 'ok' | <tool error code>, durationMs, dryRun,
 * refusal: { code, reason }, onBehalfOf }`. `onBehalfOf` is the client the caller said it called for
 * (`_meta.onBehalfOf`, e.g. the label of an MCP client of `toolmesh mcp`): the caller's word,
 * worth what the caller id is worth, recorded so the log says which of the caller's clients asked. A call counts as refused when the server says so (`refusal`) or
 * its code is one of {@link REFUSAL_CODES} (invalid arguments, permission, approval, denial).
 * Calls to unknown tools and unreadable requests get a JSON-RPC error and no `call` event, so
 * they are not logged here.
 *
 * Started record: `{ kind: 'call-started', caller, agent, tool, callId, risk, args (as sent,
 * redacted), approval, onBehalfOf }`, appended (line and anchor fsynced) after the policy allowed the call
 * and before its approval token is marked used and the tool starts. When it cannot be written
 * the call is refused (fail closed, see {@link AgentAudit.started}); a started record with no
 * later record of the same (caller, callId) means the agent stopped while, or just before, the
 * call ran. A started record followed by a refusal of the same call means a check after it
 * refused the call (a token replayed in the same instant, or not recordable as used). Dry runs
 * change nothing and get no started record.
 *
 * Lower-risk calls run even when the log cannot be written: one warning when writing starts to
 * fail, one line when it works again with the number of records lost meanwhile.
 */
import { readFileSync } from 'node:fs';
import type { EventEmitter } from 'node:events';
import { RISK_LEVELS, type Risk } from '../protocol/schemas';
import type { ApprovalClaims, AuthorizeRefusal, AuthorizeRequest } from '../protocol/authorize';
import type { CallEvent } from '../protocol/rpc-server';
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
    onBehalfOf: e.onBehalfOf,
  };
}

/** The `call-started` record of a call about to run (`args` as sent, redacted). */
export function startedEntry(call: AuthorizeRequest, agentId: string, r: Redactor, approval?: ApprovalClaims): AuditEntry {
  return {
    kind: 'call-started',
    caller: call.callerId,
    agent: agentId,
    tool: call.tool.name,
    callId: call.id,
    risk: call.tool.risk,
    args: r.redact(call.args),
    approval: approval ? { approver: approval.approver, jti: approval.jti, kid: approval.kid } : undefined,
    onBehalfOf: call.meta.onBehalfOf,
  };
}

/** An open execution log. */
export interface AgentAudit {
  /** The live log file (absolute path). */
  readonly file: string;
  /** Calls at or above this risk need their `call-started` record on disk before they run. */
  readonly durableFrom: Risk;
  /** Appends a record for every `call` event of `server`. Never throws; a failed write is a warning. */
  attach(server: EventEmitter): void;
  /**
   * The hook run after the policy allowed `call` and before it runs: for a call at or above
   * {@link durableFrom} (dry runs excepted) it appends the `call-started` record and waits for
   * it to be on disk (line and anchor fsynced). Lower-risk calls and dry runs pass at once.
   *
   * Fail closed: when the record cannot be written (ENOSPC, EIO, the log closed ...) the
   * answer is a refusal with code `EXECUTION_FAILED` and `details: { refusal:
   * "audit-not-written", file, risk, durableFrom }`; the message says that the audit log (named)
   * could not be written and what to do. EXECUTION_FAILED rather than PERMISSION_DENIED: the
   * caller is allowed to make this call, the agent failed to carry it out, and the same call
   * succeeds once the log can be written again (a model may tell the user so, or retry later).
   * @returns undefined when the call may run, else the refusal. Never rejects.
   */
  started(call: AuthorizeRequest, approval?: ApprovalClaims): Promise<AuthorizeRefusal | undefined>;
  /** Waits for queued records and closes the file. Safe to call twice. */
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
  const durableFrom = a.durableFrom;
  const threshold = RISK_LEVELS.indexOf(durableFrom);
  // write failures are told once when they start and once when writing works again, not per record
  let lost = 0;
  let refused = 0;
  const wrote = () => {
    if (lost === 0) return;
    log.info(`audit: writing to ${file} again; ${lost} record${lost === 1 ? ' was' : 's were'} not written meanwhile${refused ? ` and ${refused} call${refused === 1 ? ' was' : 's were'} refused (risk ${durableFrom} or higher)` : ''}`);
    lost = 0;
    refused = 0;
  };
  const failed = (what: string, err: Error) => {
    if (lost === 0) log.warn(`audit: ${what} was not written: ${err.message} (calls below ${durableFrom} risk still run; calls at ${durableFrom} or higher are refused until the log can be written; further failures are counted, not logged)`);
    lost++;
  };
  log.info(`audit: recording calls in ${file} (from seq ${writer.chainHead.seq + 1}); calls of risk ${durableFrom} or higher run only once their start is on disk`);
  return {
    file,
    durableFrom,
    attach(server) {
      server.on('call', (e: AuditedCall) => {
        let entry: AuditEntry;
        try {
          entry = callEntry(e, cfg.agent.id, r);
        } catch (err) {
          return failed(`the record of ${e.tool} from ${e.callerId}`, err as Error);
        }
        writer.append(entry).then(wrote, (err: Error) => failed(`the record of ${e.tool} from ${e.callerId}`, err));
      });
    },
    async started(call, approval) {
      if (call.meta.dryRun || RISK_LEVELS.indexOf(call.tool.risk) < threshold) return undefined;
      try {
        await writer.append(startedEntry(call, cfg.agent.id, r, approval));
        wrote();
        return undefined;
      } catch (e) {
        const err = e as Error;
        failed(`the start of ${call.tool.name} from ${call.callerId}`, err);
        refused++;
        return {
          code: 'EXECUTION_FAILED',
          message: `the audit log ${file} could not be written (${err.message}), so ${call.tool.name} was not run: on this agent calls of risk ${durableFrom} or higher (this one is ${call.tool.risk}) run only once their start is recorded. Free space on the disk that holds ${file} (or fix the error), then call again`,
          details: { refusal: 'audit-not-written', file, risk: call.tool.risk, durableFrom },
        };
      }
    },
    close: () => writer.close(),
  };
}
