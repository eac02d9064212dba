/**
 * Error codes and the one wire form of each failure (docs/protocol.md, "Every failure has
 * exactly one wire form"). JSON-RPC codes from JSON-RPC 2.0 section 5.1.
 */
import type { CallToolResult, RequestId } from './schemas';

/** JSON-RPC 2.0 error codes used on the wire. */
export const JSONRPC = {
  PARSE_ERROR: -32700,
  INVALID_REQUEST: -32600,
  METHOD_NOT_FOUND: -32601,
  INVALID_PARAMS: -32602,
  INTERNAL_ERROR: -32603,
} as const;

/** Tool-level error codes carried in `structuredContent.error.code`. */
export const TOOL_ERROR_CODES = [
  'INVALID_ARGUMENTS', 'TOOL_NOT_FOUND', 'PERMISSION_DENIED', 'PATH_NOT_ALLOWED', 'APP_NOT_ALLOWED',
  'APPROVAL_REQUIRED', 'DENIED', 'EXECUTION_FAILED', 'TIMEOUT', 'CANCELLED', 'NOT_SUPPORTED',
  'PAYLOAD_TOO_LARGE', 'BUSY',
  // caller side only: the agent went away while the call was pending; details.outcome says
  // "unknown" (the call may have run) or "not_sent".
  'AGENT_OFFLINE',
] as const;
export type ToolErrorCode = (typeof TOOL_ERROR_CODES)[number];

/** The error object inside a failed tool result. */
export interface ToolErrorInfo {
  code: ToolErrorCode | string;
  message: string;
  details?: Record<string, unknown>;
}

/**
 * An error a tool throws to fail with a specific code. The agent turns it into an
 * `isError: true` result; any other thrown Error becomes `EXECUTION_FAILED`.
 */
export class ToolError extends Error {
  constructor(
    readonly code: ToolErrorCode,
    message: string,
    readonly details?: Record<string, unknown>,
  ) {
    super(message);
    this.name = 'ToolError';
  }
}

/**
 * Builds the wire form of a tool-level failure: `isError: true`, the error in
 * `structuredContent.error`, and a text item saying the same for models.
 */
export function toolErrorResult(code: ToolErrorCode | string, message: string, details?: Record<string, unknown>): CallToolResult {
  const error: ToolErrorInfo = details ? { code, message, details } : { code, message };
  return {
    content: [{ type: 'text', text: `${code}: ${message}` }],
    structuredContent: { error },
    isError: true,
  };
}

/** Returns the error of a failed tool result, or `undefined` when it succeeded. */
export function toolErrorOf(result: CallToolResult): ToolErrorInfo | undefined {
  if (!result.isError) return undefined;
  const e = result.structuredContent?.error as Partial<ToolErrorInfo> | undefined;
  if (e && typeof e.code === 'string') {
    return { code: e.code, message: typeof e.message === 'string' ? e.message : e.code, details: e.details };
  }
  const text = result.content.find((c) => c.type === 'text') as { text?: string } | undefined;
  return { code: 'EXECUTION_FAILED', message: text?.text ?? 'tool failed' };
}

/** A JSON-RPC error response. */
export function rpcError(id: RequestId | null, code: number, message: string, data?: Record<string, unknown>) {
  return { jsonrpc: '2.0' as const, id, error: data ? { code, message, data } : { code, message } };
}

/**
 * Maps a JSON-RPC error response (as a caller receives it) to a tool error, so callers see every
 * failure the same way. -32602 with `data.code` keeps that code (TOOL_NOT_FOUND).
 */
export function rpcErrorToToolResult(error: { code: number; message: string; data?: unknown }): CallToolResult {
  const data = (error.data ?? {}) as Record<string, unknown>;
  const code = typeof data.code === 'string' ? data.code
    : error.code === JSONRPC.METHOD_NOT_FOUND ? 'NOT_SUPPORTED'
    : error.code === JSONRPC.INVALID_REQUEST && /too large/i.test(error.message) ? 'PAYLOAD_TOO_LARGE'
    : 'EXECUTION_FAILED';
  return toolErrorResult(code, error.message, { rpcCode: error.code, ...data });
}
