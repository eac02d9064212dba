/**
 * The tool calls a flow is working on, shared by tool-in (which opens them) and tool-out (which
 * answers them), like http-in and http-response share a request. A call is known by an opaque
 * call id that travels in `msg._toolmesh.callId`; it ends when tool-out answers, or when the
 * agent aborts it (timeout, cancel, lost caller, redeploy). Ended calls are remembered for a
 * while so a late answer is told apart from a message that never belonged to a call.
 */
import { randomUUID } from 'node:crypto';
import { ToolError, type ToolContext, type ToolReturn } from '@toolmesh/agent/protocol';
import type { ToolCall } from '../shared/tool-messages';

/** What tool-in puts on the message of a call (see the tool-in help text). */
export interface ToolCallMessage {
  payload: Record<string, unknown>;
  topic: string;
  /** The shared `msg.toolCall` contract (nodes/shared/tool-messages.ts), with the fields tool-in always sets. */
  toolCall: ToolCall & {
    /** JSON-RPC id of the request. */
    id: string | number;
    arguments: Record<string, unknown>;
    callerId: string;
    dryRun: boolean;
  };
  _toolmesh: { callId: string };
}

/**
 * How an ended call ended: `ANSWERED` (the flow answered it already), or the tool error code it
 * was aborted with (`TIMEOUT`, `CANCELLED` ...), with the reason.
 */
export interface EndedCall {
  agentId: string;
  tool: string;
  code: string;
  reason: string;
}

/** What a flow answers: a result, a failure, or a progress report (the call goes on). */
export type Answer =
  | { kind: 'result'; value: ToolReturn }
  | { kind: 'error'; error: ToolError }
  | { kind: 'progress'; progress: number; total?: number; message?: string };

interface OpenCall {
  nodeId: string;
  agentId: string;
  tool: string;
  ctx: ToolContext;
  resolve(value: ToolReturn): void;
  reject(error: Error): void;
}

/** How long an ended call is remembered for telling late answers apart, ms. */
const ENDED_TTL_MS = 10 * 60_000;
/** At most this many ended calls are remembered. */
const ENDED_MAX = 1000;

const open = new Map<string, OpenCall>();
const ended = new Map<string, EndedCall & { at: number }>();

/** Code of an ended call that the flow answered. */
const ANSWERED = 'ANSWERED';

function remember(callId: string, call: OpenCall, code: string, reason: string): void {
  const now = Date.now();
  for (const [id, e] of ended) {
    if (ended.size < ENDED_MAX && now - e.at < ENDED_TTL_MS) break;
    ended.delete(id); // oldest first: a Map iterates in insertion order
  }
  ended.set(callId, { agentId: call.agentId, tool: call.tool, code, reason, at: now });
}

function codeOf(error: Error): string {
  return error instanceof ToolError ? error.code : 'CANCELLED';
}

/**
 * Opens a call and hands its message to `emit` (tool-in's `send`). Settles with the answer
 * tool-out gives ({@link answerCall}); rejects with the abort reason when `ctx.signal` aborts
 * (the agent then sends TIMEOUT or CANCELLED itself). `onEnd` runs once, with no code when the
 * flow answered and with the error code when the call ended otherwise.
 */
export function runInFlow(
  call: { nodeId: string; agentId: string; tool: string },
  args: Record<string, unknown>,
  ctx: ToolContext,
  emit: (msg: ToolCallMessage) => void,
  onEnd: (code?: string) => void,
): Promise<ToolReturn> {
  return new Promise<ToolReturn>((resolve, reject) => {
    const callId = randomUUID();
    const entry: OpenCall = {
      ...call,
      ctx,
      resolve: (value) => {
        ctx.signal.removeEventListener('abort', onAbort);
        onEnd();
        resolve(value);
      },
      reject: (error) => {
        ctx.signal.removeEventListener('abort', onAbort);
        onEnd(error instanceof ToolError ? error.code : 'EXECUTION_FAILED');
        reject(error);
      },
    };
    const onAbort = () => {
      if (!open.delete(callId)) return;
      const reason = ctx.signal.reason instanceof Error ? ctx.signal.reason : new ToolError('CANCELLED', 'the call was aborted');
      remember(callId, entry, codeOf(reason), reason.message);
      onEnd(codeOf(reason));
      reject(reason);
    };
    open.set(callId, entry);
    if (ctx.signal.aborted) return onAbort();
    ctx.signal.addEventListener('abort', onAbort, { once: true });
    // building or sending the message may throw (structuredClone, Node-RED's clone for several
    // wires): the call then ends as a failure instead of staying open
    try {
      const msg: ToolCallMessage = {
        payload: args,
        topic: call.tool,
        toolCall: {
          id: ctx.requestId, agent: call.agentId, tool: call.tool, arguments: structuredClone(args),
          callerId: ctx.callerId, dryRun: ctx.dryRun,
        },
        _toolmesh: { callId },
      };
      emit(msg);
    } catch (e) {
      if (!open.delete(callId)) return;
      entry.reject(e instanceof Error ? e : new Error(String(e)));
    }
  });
}

/**
 * Answers the call `callId`. A result or failure ends it; a progress report is passed to the
 * caller and the call goes on.
 * @returns `answered`; the {@link EndedCall} when it had already ended (a late answer, to be
 * ignored); `unknown` when no call with that id was opened (or it ended too long ago).
 */
export function answerCall(callId: string, answer: Answer): 'answered' | EndedCall | 'unknown' {
  const call = open.get(callId);
  if (!call) {
    const e = ended.get(callId);
    return e ? { agentId: e.agentId, tool: e.tool, code: e.code, reason: e.reason } : 'unknown';
  }
  if (answer.kind === 'progress') {
    call.ctx.progress(answer.progress, answer.total, answer.message);
    return 'answered';
  }
  open.delete(callId);
  remember(callId, call, ANSWERED, 'it was answered already');
  if (answer.kind === 'result') call.resolve(answer.value);
  else call.reject(answer.error);
  return 'answered';
}

/** Ends every open call of tool-in node `nodeId` with `error` (the node is being stopped). */
export function endCallsOf(nodeId: string, error: ToolError): void {
  for (const [callId, call] of open) {
    if (call.nodeId !== nodeId) continue;
    open.delete(callId);
    remember(callId, call, error.code, error.message);
    call.reject(error);
  }
}
