/**
 * What the audit-log node records about a message: one {@link AuditEntry} per message, redacted.
 * No Node-RED imports.
 *
 * | the message has                           | kind                       | recorded                                   |
 * | ---                                       | ---                        | ---                                        |
 * | `msg.toolResult`                          | `tool-result` / `refusal`  | callId, agent, tool, outcome, durationMs   |
 * | `msg.toolCall` with an approval           | `approval`                 | callId, agent, tool, args, approval        |
 * | `msg.toolCall`                            | `tool-call`                | callId, agent, tool, risk, args            |
 * | `msg.toolCalls` (array) and `msg.usage`   | `answer`                   | text, tokens, calls                        |
 * | `msg.approval` (a decision, say)          | `approval`                 | approval, approved                         |
 * | `msg.payload` a string                    | `prompt`                   | text                                       |
 * | anything else                             | `message`                  | topic, payload type                        |
 *
 * `msg.toolCall` and `msg.toolResult` are the shared contract (nodes/shared/tool-messages.ts); the
 * log records what a message holds even when it breaks that contract, so every field is read
 * with its type checked here.
 *
 * An approval is `msg.approval` or `msg.toolCall.approval` (a token string, or an object with
 * `approver`/`jti`/`kid`/`at`/`token`): only approver, jti, kid and at are kept, never the token.
 */
import { REFUSAL_CODES, approvalOf, type AuditEntry, type Redactor } from '@toolmesh/agent/protocol/audit';
import type { ToolCall, ToolResult } from '../shared/tool-messages';

type Obj = Record<string, unknown>;
/** A contract message's fields, each still to be checked (the message may break the contract). */
type Unchecked<T> = { [K in keyof T]?: unknown } & Obj;

const obj = (v: unknown): Obj | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Obj) : undefined);
const str = (v: unknown): string | undefined => (typeof v === 'string' ? v : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);
const id = (v: unknown): string | number | undefined => (typeof v === 'string' || typeof v === 'number' ? v : undefined);

/** The error code of an MCP-shaped tool result (`structuredContent.error.code`), `EXECUTION_FAILED` when it has none. */
function errorOf(result: Obj): { code: string; message?: string } {
  const e = obj(obj(result.structuredContent)?.error);
  return { code: str(e?.code) ?? 'EXECUTION_FAILED', message: str(e?.message) };
}

/**
 * The record for one message.
 * @param r the redaction policy (key names plus the flows' known credentials).
 */
export function entryOf(msg: Obj, r: Redactor): AuditEntry {
  const base: Partial<AuditEntry> = {
    msgId: str(msg._msgid),
    runId: str(msg.runId) ?? str(msg.sessionId),
    topic: typeof msg.topic === 'string' && msg.topic ? r.redactText(msg.topic) : undefined,
  };
  const call: Unchecked<ToolCall> | undefined = obj(msg.toolCall);
  const result: Unchecked<ToolResult> | undefined = obj(msg.toolResult);
  const approval = approvalOf(msg.approval) ?? approvalOf(call?.approval);
  if (result) {
    const failed = result.isError === true ? errorOf(result) : undefined;
    const refused = failed && REFUSAL_CODES.has(failed.code);
    return {
      ...base,
      kind: refused ? 'refusal' : 'tool-result',
      callId: id(result.id) ?? id(call?.id),
      agent: str(result.agent) ?? str(call?.agent),
      tool: str(result.tool) ?? str(call?.tool),
      outcome: failed?.code ?? 'ok',
      refusal: refused ? { code: failed.code, reason: failed.message && r.redactText(failed.message) } : undefined,
      durationMs: num(result.durationMs) ?? num(obj(msg.toolMeta)?.durationMs),
      approval,
    };
  }
  if (call) {
    return {
      ...base,
      kind: approval ? 'approval' : 'tool-call',
      callId: id(call.id),
      agent: str(call.agent),
      tool: str(call.tool) ?? str(call.name),
      risk: str(call.risk),
      args: r.redact(call.arguments ?? {}),
      dryRun: typeof call.dryRun === 'boolean' ? call.dryRun : undefined,
      approval,
    };
  }
  const usage = obj(msg.usage);
  if (Array.isArray(msg.toolCalls) && usage) {
    return {
      ...base,
      kind: 'answer',
      text: typeof msg.payload === 'string' ? r.redactText(msg.payload) : undefined,
      tokens: { prompt: num(usage.prompt_tokens), completion: num(usage.completion_tokens), total: num(usage.total_tokens) },
      calls: msg.toolCalls.map((c) => {
        const s = obj(c) ?? {};
        return { agent: str(s.agent), tool: str(s.tool) ?? str(s.name), outcome: s.ok === false ? str(s.code) ?? 'EXECUTION_FAILED' : 'ok', durationMs: num(s.durationMs) };
      }),
    };
  }
  if (approval) {
    const approve = obj(msg.approval)?.approve;
    return { ...base, kind: 'approval', approval, approved: typeof approve === 'boolean' ? approve : undefined };
  }
  if (typeof msg.payload === 'string') return { ...base, kind: 'prompt', text: r.redactText(msg.payload) };
  return { ...base, kind: 'message', payloadType: msg.payload === null ? 'null' : Array.isArray(msg.payload) ? 'array' : typeof msg.payload };
}
