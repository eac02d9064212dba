/**
 * How the MCP bridge obtains an approval token (docs/protocol.md, "Approval tokens") for a call
 * that needs one. The bridge has no power a device does not grant: the agent checks the token.
 *
 * - `refuse` (default): no token; the call ends with an `APPROVAL_REQUIRED` `isError` result that
 *   says how to set approvals up.
 * - `elicit`: the MCP client's user is asked through `elicitation/create` (MCP 2025-11-25,
 *   "Elicitation", form mode) with the confirm-gate's one-line summary; on "approve" the bridge
 *   signs a single-use token with its own Ed25519 key, which agents trust like a gate's key.
 *   This trusts the MCP client to put the question in front of its person.
 * - `gate`: a confirm-gate in Node-RED holds the call for a person (mcp/gate-approvals.ts) and
 *   signs the token for this bridge's caller id.
 */
import type { Server } from '@modelcontextprotocol/sdk/server/index.js';
import type { ServerNotification, ServerRequest } from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import { signApproval, summarizeCall, toolErrorResult, type CallToolResult, type Risk } from '@toolmesh/agent/protocol';
import type { AuditApproval } from '@toolmesh/agent/protocol/audit';
import type { GateApprovals } from './gate-approvals';
import type { ClientIdentity } from './identity';

/** Default validity of a token the bridge signs in `elicit` mode, ms (it is used at once). */
export const DEFAULT_ELICIT_VALIDITY_MS = 60_000;
/** Default wait for a person at the confirm-gate, ms. MCP clients must allow calls this long. */
export const DEFAULT_GATE_WAIT_MS = 120_000;

/** Approval settings of the bridge. */
export type ApprovalSettings =
  | { mode: 'refuse' }
  | { mode: 'elicit'; kid: string; privateKeyPem: string; validityMs?: number }
  | { mode: 'gate'; gate: GateApprovals; waitMs?: number };

/** The approval modes, as `--approvals` takes them. */
export const APPROVAL_MODES = ['refuse', 'elicit', 'gate'] as const;
export type ApprovalMode = (typeof APPROVAL_MODES)[number];

/** What one call's approval needs to know. */
export interface ApprovalContext {
  server: Server;
  extra: RequestHandlerExtra<ServerRequest, ServerNotification>;
  callerId: string;
  agentId: string;
  tool: string;
  risk?: Risk;
  args: Record<string, unknown>;
  /** "Claude Desktop 1.2" (from `initialize`), for the approver field and the person. */
  clientName: string;
  /**
   * The session's authenticated identity (mcp/identity.ts), when it has one: its label goes to
   * the person (gate `requester` and `onBehalfOf`, the elicit token's `approver`) beside the
   * client's self-given name, which alone proves nothing.
   */
  identity?: ClientIdentity;
  /** Why an approval is needed ("risk high"). */
  reason: string;
  /** MCP progress for the waiting client, when it asked for progress. */
  onProgress?: (p: { progress: number; total?: number; message?: string }) => void;
}

/** A token with what the audit log records of it, or the result that ends the call. */
export type ApprovalOutcome = { token: string; audit: AuditApproval } | { refusal: CallToolResult };

function tokenAudit(token: string): AuditApproval {
  try {
    const p = JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString('utf8')) as { jti?: string; kid?: string; approver?: string };
    return { jti: p.jti, kid: p.kid, approver: p.approver, at: Date.now() };
  } catch {
    return { at: Date.now() };
  }
}

function denied(message: string, details: Record<string, unknown>): { refusal: CallToolResult } {
  return { refusal: toolErrorResult('DENIED', message, details) };
}

/**
 * Who asks, for the person at the gate (≤ 200 characters): "MCP client home-assistant (client
 * Home Assistant 2026.1) via toolmesh mcp (caller mcp-desk)" for a session with an identity (the
 * label first: the owner gave it; the client's own name after it, marked as such), else
 * "Claude Desktop 1.2 via toolmesh mcp (caller mcp-desk)".
 */
export function requesterOf(c: Pick<ApprovalContext, 'clientName' | 'callerId' | 'identity'>): string {
  const tail = ` via toolmesh mcp (caller ${c.callerId})`;
  if (!c.identity) return `${c.clientName}${tail}`.slice(0, 200);
  // the self-given name is cut first, so label and caller always fit (label ≤ 64, caller id ≤ 64)
  const head = `MCP client ${c.identity.label}`;
  const room = 200 - head.length - tail.length - ' (client )'.length;
  const name = c.clientName.length > room ? `${c.clientName.slice(0, Math.max(0, room - 1))}…` : c.clientName;
  return `${head} (client ${name})${tail}`.slice(0, 200);
}

/**
 * Obtains a token for one call per `settings`. Never throws for a refusal, a denial, a client
 * without elicitation support or a missing gate: each is an `isError` result a model can read.
 */
export async function obtainApproval(settings: ApprovalSettings, c: ApprovalContext): Promise<ApprovalOutcome> {
  const summary = summarizeCall(c.agentId, c.tool, c.args);
  const what = `${c.agentId}/${c.tool}`;
  if (settings.mode === 'refuse') {
    return {
      refusal: toolErrorResult('APPROVAL_REQUIRED',
        `"${summary}" (${what}, ${c.reason}) needs a person's approval, and this MCP bridge runs with approvals "refuse", so it was not sent. `
        + 'Ask the operator to start toolmesh mcp with --approvals gate (a person decides at a confirm-gate in Node-RED) '
        + 'or --approvals elicit (your MCP client asks you); see the README, section "MCP".',
        { agent: c.agentId, tool: c.tool, mode: 'refuse' }),
    };
  }
  if (settings.mode === 'elicit') {
    if (!c.server.getClientCapabilities()?.elicitation) {
      return {
        refusal: toolErrorResult('APPROVAL_REQUIRED',
          `"${summary}" (${what}, ${c.reason}) needs a person's approval; this bridge asks through MCP elicitation, which ${c.clientName} does not support, so it was not sent.`,
          { agent: c.agentId, tool: c.tool, mode: 'elicit' }),
      };
    }
    let answer;
    try {
      answer = await c.server.elicitInput({
        mode: 'form',
        message: `Approve this action on your devices?\n\n${summary}\n\n(${what}, ${c.reason}; arguments: ${JSON.stringify(c.args).slice(0, 500)})`,
        requestedSchema: {
          type: 'object',
          properties: {
            decision: { type: 'string', title: 'Decision', enum: ['approve', 'deny'], enumNames: ['Approve', 'Deny'], description: `Let ${c.clientName} run this once` },
            reason: { type: 'string', title: 'Reason (optional)', description: 'Told to the model when you deny' },
          },
          required: ['decision'],
        },
      }, { relatedRequestId: c.extra.requestId, signal: c.extra.signal, timeout: DEFAULT_GATE_WAIT_MS });
    } catch (e) {
      return denied(`"${summary}" was not approved: asking through ${c.clientName} failed (${(e as Error).message}).`, { cause: 'elicitation-failed' });
    }
    const decision = answer.action === 'accept' ? (answer.content as { decision?: unknown } | undefined)?.decision : undefined;
    if (decision !== 'approve') {
      const reason = typeof (answer.content as { reason?: unknown } | undefined)?.reason === 'string' ? (answer.content as { reason: string }).reason : undefined;
      return denied(`The user denied "${summary}"${reason ? `: ${reason}` : ''} (${answer.action === 'accept' ? 'deny' : answer.action}).`,
        { cause: 'person', action: answer.action, ...(reason ? { reason } : {}) });
    }
    const token = signApproval({
      kid: settings.kid, privateKey: settings.privateKeyPem, caller: c.callerId, agent: c.agentId, tool: c.tool, args: c.args,
      exp: Date.now() + (settings.validityMs ?? DEFAULT_ELICIT_VALIDITY_MS),
      approver: `mcp-elicitation:${c.identity ? `${c.identity.label} (client ${c.clientName})` : c.clientName}`.slice(0, 200),
    });
    return { token, audit: tokenAudit(token) };
  }
  const waitMs = settings.waitMs ?? DEFAULT_GATE_WAIT_MS;
  c.onProgress?.({ progress: 0, message: `waiting for a person to approve "${summary}" at the confirm-gate` });
  const answer = await settings.gate.request({
    agent: c.agentId, tool: c.tool, arguments: c.args, ...(c.risk ? { risk: c.risk } : {}), summary,
    requester: requesterOf(c),
    ...(c.identity ? { onBehalfOf: c.identity.label } : {}),
  }, waitMs, c.extra.signal);
  if (answer.approved) return { token: answer.token, audit: { ...tokenAudit(answer.token), approver: answer.approver } };
  const by = 'approver' in answer && answer.approver ? ` by ${answer.approver}` : '';
  return denied(`"${summary}" was not approved${by}: ${answer.reason}`, { cause: answer.cause, ...(by ? { approver: (answer as { approver?: string }).approver } : {}) });
}
