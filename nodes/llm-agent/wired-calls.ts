/**
 * Wired tool calls: each call leaves the llm-agent as its own message (`msg.toolCall`, with
 * `msg.payload` = the arguments) and its result comes back into the node's input as
 * `msg.toolResult`, from remote-tool or any flow. This module matches results to calls by
 * `msg.toolCall.id` (or `msg.toolResult.id`), and turns calls that never come back into
 * `TIMEOUT` results and cancelled runs into `CANCELLED` ones. No Node-RED imports.
 */
import { randomBytes } from 'node:crypto';
import { toCallToolResult, toolErrorResult, type CallToolResult, type Risk, type ToolReturn } from '@toolmesh/agent/protocol';
import { callIdOf, type ToolCall } from '../shared/tool-messages';

/** `msg.toolCall` of a message on the tool-call output: the shared {@link ToolCall} with every field llm-agent sets. */
export interface WiredToolCall extends ToolCall {
  /** Unique per call across runs and restarts; results refer to it. */
  id: string;
  /** The function name the model used. */
  name: string;
  agent: string;
  tool: string;
  arguments: Record<string, unknown>;
  risk: Risk;
  /** The tool-call id the model sent (may repeat across runs). */
  modelCallId: string;
  /** Budget of the call, ms, after which the llm-agent stops waiting. */
  timeoutMs: number;
}

interface Waiting {
  call: WiredToolCall;
  timer: NodeJS.Timeout;
  resolve(result: CallToolResult): void;
}

/**
 * Turns what a flow put in `msg.toolResult` into a tool result: an MCP CallToolResult (has a
 * `content` array) as is; a string as text; any other value as structured content.
 */
export function toolResultOf(value: unknown): CallToolResult {
  return toCallToolResult((value ?? null) as ToolReturn);
}

/**
 * Pending wired calls of one llm-agent node. `R` is what the emitter needs to route a call (the
 * node passes the `send` of the run that made it).
 */
export class WiredCalls<R = void> {
  private readonly waiting = new Map<string, Waiting>();
  private readonly prefix = randomBytes(4).toString('hex');
  private seq = 0;

  /**
   * @param emit sends one call out (the node's tool-call output).
   */
  constructor(private readonly emit: (call: WiredToolCall, route: R) => void) {}

  /** Number of calls waiting for a result. */
  get size(): number {
    return this.waiting.size;
  }

  /**
   * Sends a call out and resolves with its result when it comes back; `TIMEOUT` after
   * `timeoutMs` (ms), `CANCELLED` when `signal` aborts, `EXECUTION_FAILED` when `emit` throws
   * (e.g. Node-RED cannot clone the message). Never rejects; once it has resolved, no timer,
   * abort listener or waiting entry of the call is left.
   */
  call(target: { agent: string; tool: string; name: string; risk: Risk; modelCallId: string }, args: Record<string, unknown>, timeoutMs: number, route: R, signal?: AbortSignal): Promise<CallToolResult> {
    const call: WiredToolCall = { id: `tc-${this.prefix}-${++this.seq}`, ...target, arguments: args, timeoutMs };
    return new Promise((resolve) => {
      if (signal?.aborted) return resolve(toolErrorResult('CANCELLED', 'the run was cancelled before the call was sent'));
      const finish = (result: CallToolResult) => {
        const w = this.waiting.get(call.id);
        if (!w) return;
        clearTimeout(w.timer);
        this.waiting.delete(call.id);
        signal?.removeEventListener('abort', onAbort);
        resolve(result);
      };
      const onAbort = () => finish(toolErrorResult('CANCELLED', 'the run was cancelled while the call was out'));
      const timer = setTimeout(() => finish(toolErrorResult('TIMEOUT', `no result came back for ${call.agent}/${call.tool} within ${timeoutMs} ms; check that the tool-call output is wired back to this node's input`, { timeoutMs })), timeoutMs);
      this.waiting.set(call.id, { call, timer, resolve: finish });
      signal?.addEventListener('abort', onAbort, { once: true });
      try {
        this.emit(call, route);
      } catch (e) {
        finish(toolErrorResult('EXECUTION_FAILED', `the call to ${call.agent}/${call.tool} could not be sent out of the tool-call output: ${(e as Error)?.message ?? String(e)}`));
      }
    });
  }

  /** The id a message refers to: `msg.toolResult.id`, else `msg.toolCall.id`; undefined when neither is a string. */
  static idOf(msg: object): string | undefined {
    return callIdOf(msg as { toolCall?: unknown; toolResult?: unknown });
  }

  /** True when `id` is a call waiting for its result. */
  has(id: string): boolean {
    return this.waiting.has(id);
  }

  /** Settles a waiting call with the result a message brought; false when no call has that id. */
  settle(id: string, toolResult: unknown): boolean {
    const w = this.waiting.get(id);
    if (!w) return false;
    w.resolve(toolResultOf(toolResult));
    return true;
  }

  /** Ends every waiting call with `CANCELLED` (node closing). */
  cancelAll(reason: string): void {
    for (const w of [...this.waiting.values()]) w.resolve(toolErrorResult('CANCELLED', reason));
  }
}
