/**
 * Approval requests over MQTT (docs/protocol.md, "Approval requests from other callers"): how a
 * caller that has no person of its own in front of it (the MCP bridge, `toolmesh mcp`) asks a
 * confirm-gate in Node-RED to hold a high-risk call for a person's decision, and gets back a
 * single-use approval token signed for its own caller id.
 *
 * | topic | from → to | QoS | retained |
 * | --- | --- | --- | --- |
 * | `{root}/approvals/{callerId}/req` | caller → gate | 1 | no |
 * | `{root}/approvals/{callerId}/res` | gate → caller | 1 | no |
 *
 * The caller id comes from the topic, never from the payload: with broker authentication a
 * caller may publish only `approvals/{self}/req` and subscribe only `approvals/{self}/res`, so a
 * token is signed for the one caller that can use it. Optional extension of protocol v1: a
 * caller that never publishes a request is unaffected.
 */
import { z } from 'zod';
import { isValidId } from './topics';
import { ON_BEHALF_OF_PATTERN, RiskSchema } from './schemas';

/** Version of the approval-request messages. */
export const APPROVAL_REQUEST_VERSION = 1;

/** Largest approval request or response read, bytes (the arguments of one call and a summary). */
export const MAX_APPROVAL_MESSAGE_BYTES = 256 * 1024;

/** Topic builders of approval requests under `root` (e.g. `toolmesh/v1`). */
export function approvalTopics(root: string) {
  return {
    /** `{root}/approvals/{callerId}/req`: the caller publishes its requests here. */
    request: (callerId: string) => `${root}/approvals/${callerId}/req`,
    /** `{root}/approvals/{callerId}/res`: the gate publishes its answers here. */
    response: (callerId: string) => `${root}/approvals/${callerId}/res`,
    /** `{root}/approvals/+/req`: what a gate that accepts requests subscribes to. */
    anyRequest: `${root}/approvals/+/req`,
    /** The caller id of a request or response topic under this root, or `undefined`. */
    callerOf(topic: string, kind: 'req' | 'res'): string | undefined {
      const prefix = `${root}/approvals/`;
      if (!topic.startsWith(prefix) || !topic.endsWith(`/${kind}`)) return undefined;
      const id = topic.slice(prefix.length, -(kind.length + 1));
      return isValidId(id) ? id : undefined;
    },
  };
}

/**
 * A request: hold this call for a person. `approvalId` is the caller's (unique, 1–128
 * characters); the gate uses it as the hold's approval id, so decisions over HTTP, MQTT or the
 * dashboard name it. `expiresAt` (epoch ms) bounds the hold: the gate denies on silence at the
 * earlier of it and its own timeout (a request already past it is answered `timeout` at once).
 * A repeat of a pending request (same caller, same `approvalId`) is ignored; a repeat after the
 * answer gets the same answer again (the gate keeps its last 1,000 answers until redeployed).
 */
export const ApprovalRequestMessageSchema = z.object({
  v: z.literal(APPROVAL_REQUEST_VERSION),
  approvalId: z.string().min(1).max(128),
  agent: z.string().refine(isValidId, 'an agent id (^[A-Za-z0-9_-]{1,64}$)'),
  tool: z.string().min(1).max(128),
  arguments: z.record(z.string(), z.unknown()),
  risk: RiskSchema.optional(),
  /**
   * One line for a person. The gate always shows its own summary of agent, tool and arguments
   * (what the token binds) and shows this one beside it, as the caller's words.
   */
  summary: z.string().max(500).optional(),
  /**
   * Who is asking, for the person: e.g. "MCP client home-assistant (client Home Assistant 2026.1)
   * via toolmesh mcp (caller mcp-desk)".
   */
  requester: z.string().max(200).optional(),
  /**
   * The client the caller asks for (as `tools/call` `_meta.onBehalfOf`): the label the bridge's
   * owner gave the MCP client. The caller's word, as trustworthy as the caller id; gates that
   * do not know the field ignore it.
   */
  onBehalfOf: z.string().regex(ON_BEHALF_OF_PATTERN, 'must match ^[A-Za-z0-9_.-]{1,64}$ (a client label)').optional(),
  expiresAt: z.number().int().positive(),
});
export type ApprovalRequestMessage = z.infer<typeof ApprovalRequestMessageSchema>;

/**
 * The answer: approved with a token (docs/protocol.md, "Approval tokens", `caller` = the topic's
 * caller id), or denied with the cause (`person`, `timeout`, `closed`: the gate stopped or was
 * redeployed) and a reason a model can read.
 */
export const ApprovalResponseMessageSchema = z.discriminatedUnion('approved', [
  z.object({
    v: z.literal(APPROVAL_REQUEST_VERSION),
    approvalId: z.string().min(1).max(128),
    approved: z.literal(true),
    token: z.string().min(1),
    approver: z.string().max(200),
  }),
  z.object({
    v: z.literal(APPROVAL_REQUEST_VERSION),
    approvalId: z.string().min(1).max(128),
    approved: z.literal(false),
    cause: z.enum(['person', 'timeout', 'closed', 'misconfigured']),
    reason: z.string().max(2000),
    approver: z.string().max(200).optional(),
  }),
]);
export type ApprovalResponseMessage = z.infer<typeof ApprovalResponseMessageSchema>;
