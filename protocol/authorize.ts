/**
 * The shapes of authorization on the device (protocol/policy.ts `createAuthorizer`, which every
 * {@link RpcServer} builds from its required `authorization` option): the agent's policy
 * decides, per `tools/call`, whether the call may run, after the arguments passed validation
 * and before the tool starts (docs/protocol.md, "Approval tokens").
 */
import type { ApprovalPayload } from './approval';
import type { ToolErrorCode } from './errors';
import type { CallMeta, RequestId } from './schemas';
import type { ToolDefinition } from './tool';
import type { RpcServer, RpcServerOptions } from './rpc-server';

/** What {@link RpcServerOptions.authorize} is asked about. */
export interface AuthorizeRequest {
  /** Caller id from the request topic (spoofable unless the broker authenticates callers). */
  callerId: string;
  id: RequestId;
  tool: ToolDefinition;
  /** `params.arguments` exactly as sent, before the schema parsed them (what an approval token binds). */
  args: Record<string, unknown>;
  /** `params._meta` as sent (`approval`, `dryRun`, ...). */
  meta: CallMeta;
}

/** The claims of an approval token, as the audit log records them (`exp` is epoch ms). */
export type ApprovalClaims = Pick<ApprovalPayload, 'approver' | 'jti' | 'kid' | 'exp'>;

/** A refusal: the call does not run and gets this tool error. `details.refusal` (a string) names the check that refused it. */
export interface AuthorizeRefusal {
  code: ToolErrorCode;
  message: string;
  details?: Record<string, unknown>;
  /** Claims of a token whose signature verified but that did not fit this call (for the `call` event only, not sent). */
  approval?: ApprovalClaims;
}

/** `undefined` or `{}`: the call may run; `{ approval }`: it may run on that approval; a {@link AuthorizeRefusal}: it may not. */
export type AuthorizeDecision = undefined | { approval?: ApprovalClaims } | AuthorizeRefusal;
