/**
 * Approval requests from other callers (docs/protocol.md, "Approval requests from other
 * callers"; wire form in protocol/approval-requests.ts): reading one MQTT message into a request,
 * and the answers the gate publishes. No Node-RED imports.
 */
import {
  APPROVAL_REQUEST_VERSION, ApprovalRequestMessageSchema, type ApprovalRequestMessage, type ApprovalResponseMessage,
} from '@toolmesh/agent/protocol/approval-requests';
import { parseJsonWithin } from '@toolmesh/agent/protocol/json-limits';

/** Why a request was not held: `field` names where (`payload` for the whole message), `problem` what is wrong. */
export interface RequestProblem {
  field: string;
  problem: string;
}

/**
 * Reads a request payload (already size-capped by the subscription): JSON syntax, then the
 * shape limits of protocol/json-limits.ts, then {@link ApprovalRequestMessageSchema}.
 * @returns the request, or the first problem (never throws).
 */
export function readApprovalRequest(text: string): { request: ApprovalRequestMessage } | { problem: RequestProblem } {
  const parsed = parseJsonWithin(text);
  if (!('value' in parsed) || 'kind' in parsed) {
    const p = parsed as { kind: 'parse' | 'limit'; error: string };
    return { problem: { field: 'payload', problem: p.kind === 'parse' ? `not JSON (${p.error})` : p.error } };
  }
  const r = ApprovalRequestMessageSchema.safeParse(parsed.value);
  if (r.success) return { request: r.data };
  const issue = r.error.issues[0];
  const field = issue.path.length ? issue.path.map(String).join('.') : 'payload';
  return { problem: { field, problem: issue.message } };
}

/** The `approvalId` of a payload that failed validation, when it has a usable one (to answer it). */
export function approvalIdOf(text: string): string | undefined {
  const parsed = parseJsonWithin(text);
  if (!('value' in parsed) || 'kind' in parsed) return undefined;
  const v = parsed.value as { approvalId?: unknown } | null;
  return v && typeof v === 'object' && typeof v.approvalId === 'string' && v.approvalId.length >= 1 && v.approvalId.length <= 128 ? v.approvalId : undefined;
}

/** An approval answer. */
export function approvedResponse(approvalId: string, token: string, approver: string): ApprovalResponseMessage {
  return { v: APPROVAL_REQUEST_VERSION, approvalId, approved: true, token, approver: approver.slice(0, 200) };
}

/** A denial answer; `reason` is cut to the schema's 2000 characters. */
export function deniedResponse(
  approvalId: string, cause: 'person' | 'timeout' | 'closed' | 'misconfigured', reason: string, approver?: string,
): ApprovalResponseMessage {
  return { v: APPROVAL_REQUEST_VERSION, approvalId, approved: false, cause, reason: reason.slice(0, 2000), ...(approver ? { approver: approver.slice(0, 200) } : {}) };
}
