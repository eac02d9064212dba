/**
 * The Error a node hands to `done(err)` when a tool call fails, so Catch nodes get it.
 * Node-RED copies an error's own `code` property into the Catch node's `msg.error.code`
 * (@node-red/runtime, Flow.handleError); `details` stays on the Error for JavaScript callers.
 */
import type { ToolErrorInfo } from '@toolmesh/agent/protocol';

/** A failed tool call: message `<code>: <message>`, with `code` and `details` as properties. */
export class ToolCallError extends Error {
  /** A protocol tool error code, e.g. `INVALID_ARGUMENTS`, `TOOL_NOT_FOUND`, `AGENT_OFFLINE`. */
  readonly code: string;
  /** The message without the code prefix. */
  readonly reason: string;
  /** The error's `details` from the tool result (zod issues, `outcome`, ...), if any. */
  readonly details?: Record<string, unknown>;

  constructor(code: string, message: string, details?: Record<string, unknown>) {
    super(`${code}: ${message}`);
    this.code = code;
    this.reason = message;
    if (details !== undefined) this.details = details;
  }

  /** The Error of a failed tool result's error (see `toolErrorOf` in protocol). */
  static of(error: ToolErrorInfo): ToolCallError {
    return new ToolCallError(error.code, error.message, error.details);
  }
}
