/**
 * The contract of {@link runToolLoop} (`tool-loop.ts`): its options, progress events, result
 * and error. Kept apart so the loop itself stays readable; `tool-loop.ts` re-exports all of it.
 */
import type OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { CallOptions, CallToolResult } from '@toolmesh/agent/protocol';
import type { OfferedTool } from '../shared/registry-api';
import type { ResultPreview } from './tool-results';
import type { AgentInfo, ToolBlockState, ToolBudget, ToolIndex, TurnOffer } from './tool-select';

/** Default cap on LLM requests per run. */
export const DEFAULT_MAX_ITERATIONS = 8;
/** Default of {@link ToolLoopOptions.maxParallelToolCalls}: tool calls of one turn running at once. */
export const DEFAULT_MAX_PARALLEL_TOOL_CALLS = 4;
/** Highest {@link ToolLoopOptions.maxParallelToolCalls} the node accepts. */
export const MAX_PARALLEL_TOOL_CALLS_LIMIT = 32;
/** A turn's calls beyond this many times {@link ToolLoopOptions.maxParallelToolCalls} are not run (default of `maxToolCallsPerTurn`). */
export const TOOL_CALLS_PER_TURN_FACTOR = 4;

/** Which tool call a {@link ToolSource.call} belongs to. */
export interface ToolCallInfo {
  /** The tool call's id as it stands in the transcript (made unique by the loop; see `providers.ts`). */
  id: string;
  /** The function name of the tool called (for a call through `call_tool`, the name it named). */
  name: string;
  /** The tool's risk level from its catalog annotations (`low` ... `critical`), when known. */
  risk?: string;
}

/** Where the loop finds and calls tools: the parts of `ToolRegistryApi` it needs. */
export interface ToolSource {
  /** Tools that may be offered now. Read once at the start of a run (not at all when `catalogRevision` is unchanged). */
  listTools(): OfferedTool[];
  /** Optional: the same tools grouped by agent, an agent's array unchanged while its tools are (`ToolRegistryApi.toolsByAgent`); read instead of `listTools` when present. */
  toolsByAgent?(): ReadonlyMap<string, readonly OfferedTool[]>;
  /** Changes whenever the catalog changes; lets a {@link ToolLoopOptions.toolIndex} skip reading an unchanged one. */
  catalogRevision?(): unknown;
  /** Agent names and kinds, searched with their tools when a budget applies. */
  listAgents?(): AgentInfo[];
  /**
   * Calls a tool; always resolves (failures are `isError` results with `structuredContent.error.code`).
   * `opts.signal` fires when the run is aborted or times out; `info` names the call.
   */
  call(agentId: string, tool: string, args: Record<string, unknown>, opts?: CallOptions, info?: ToolCallInfo): Promise<CallToolResult>;
}

/** Token counts summed over every LLM request of a run (OpenAI `usage` fields; 0 when a server sent none). */
export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What one tool call of a run did. */
export interface ToolCallSummary {
  /** The call's id in the transcript: the model's, or one the loop made (missing or repeated ids). */
  id: string;
  /** Function name as the model sent it; for a call through `call_tool`, the real tool's function name it named. */
  name: string;
  /** `call_tool` when the model called the tool through that meta-tool (absent for direct calls). */
  via?: 'call_tool';
  /** Agent id and tool name behind `name`; absent when the name was not offered. */
  agent?: string;
  tool?: string;
  /** Parsed arguments, or the raw text when it was not a JSON object. */
  arguments: Record<string, unknown> | string;
  /** When the call started and ended, epoch ms (equal when nothing was called). */
  startedAt: number;
  endedAt: number;
  /** Wall time of the call, ms (0 when nothing was called). */
  durationMs: number;
  ok: boolean;
  /** Tool error code when `ok` is false (`INVALID_ARGUMENTS`, `TOOL_NOT_FOUND`, `DENIED`, `TIMEOUT`, `BUSY` for a call over the turn's limit, ...). */
  code?: string;
}

/** How tools are offered: the API's `tools` parameter, or described in a system message (JSON in text). */
export type ToolMode = 'native' | 'json';

/**
 * A change of approach during a run, after the endpoint refused a request:
 * - `stream` → `non-stream`: streaming together with `tools` was refused; the request was sent
 *   again without streaming, and so were the later ones of the run that carry tools. Remember it
 *   as `streamWithTools: false`.
 * - `native` → `json`: the `tools` parameter was refused; the run went on in json mode. Remember
 *   it as `toolMode: 'json'`.
 * `reason` is the endpoint's error message.
 */
export type LoopFallback =
  | { from: 'stream'; to: 'non-stream'; reason: string }
  | { from: 'native'; to: 'json'; reason: string };

/**
 * Progress of a run, in order: `turn-start` before each LLM request; `text-delta` for each piece
 * of streamed text (streaming only; in json mode it includes any tool-call JSON the model
 * writes); `fallback` when the loop changes approach; `tool-call-start` / `tool-call-end` around
 * each tool call (calls of one turn overlap, at most `maxParallelToolCalls` at once).
 * `tool-call-end` carries `result`, what a chat card shows of the tool result (plain text and
 * images of safe types only, {@link ResultPreview}). The llm-agent node adds the
 * {@link ToolCallHoldEvent}s between a call's start and end (see {@link RunEvent}).
 */
export type LoopEvent =
  | { type: 'turn-start'; iteration: number }
  | ({ type: 'tools-offered' } & TurnOffer)
  | { type: 'text-delta'; text: string }
  | ({ type: 'fallback' } & LoopFallback)
  | { type: 'tool-call-start'; id: string; name: string; via?: 'call_tool'; agent?: string; tool?: string; arguments: ToolCallSummary['arguments']; startedAt: number }
  | { type: 'tool-call-end'; call: ToolCallSummary; result?: ResultPreview };

/**
 * A call of the run held by a confirm-gate, and its end (from `toolmeshEvents` `held` /
 * `settled`, nodes/shared/events.ts), which the llm-agent node adds to its run events: `id` is
 * the call's id in the run (as in `tool-call-start`), joined to the gate's hold through the wired
 * call id (`msg.toolCall.id` on output 2). `tool-call-held` comes while the call waits for a
 * person (`expiresAt` epoch ms: then silence denies it); `tool-call-settled` when the hold ends,
 * wherever it was decided (a page, the sidebar, MQTT, the timeout; `by` names who decided an
 * `approved` or `denied` outcome). `tool-call-end` still follows with the result.
 */
export type ToolCallHoldEvent =
  | { type: 'tool-call-held'; id: string; approvalId: string; gate: string; summary: string; agent: string; tool: string; risk: string; expiresAt: number }
  | { type: 'tool-call-settled'; id: string; approvalId: string; outcome: 'approved' | 'denied' | 'timeout' | 'closed'; by?: string };

/** What llm-agent's output 3 carries in `msg.payload` ("progress" on): the loop's events and the holds of the run's calls. */
export type RunEvent = LoopEvent | ToolCallHoldEvent;

/** Options of {@link runToolLoop}. */
export interface ToolLoopOptions {
  /** An `openai` client (its `baseURL` is named in errors). */
  client: Pick<OpenAI, 'chat' | 'baseURL'>;
  model: string;
  /** The conversation so far (not modified). Image parts in it are sent as they are. */
  messages: ChatCompletionMessageParam[];
  /** Prepended as a system message unless `messages` already starts with a system or developer message. */
  systemPrompt?: string;
  /** Tools offered to the model; none when omitted. */
  tools?: ToolSource;
  /**
   * Tools per request and tokens of their definitions (see `tool-select.ts`); omitted: every tool
   * is offered in every request.
   */
  toolBudget?: ToolBudget;
  /** The catalog index, kept between runs so it is updated, not rebuilt (default: a new one per run). */
  toolIndex?: ToolIndex;
  /**
   * The session's frozen tool block (with `toolBudget`): pass the same object to every run of a
   * session so they all send the same tools in the same order while the catalog holds them
   * (default: a new one, so the block is frozen for this run only). See `tool-select.ts`.
   */
  toolSession?: ToolBlockState;
  /** Cap on LLM requests (default {@link DEFAULT_MAX_ITERATIONS}). */
  maxIterations?: number;
  /** Budget of each tool call, ms (default: the tool's own `timeoutMs`). */
  toolTimeoutMs?: number;
  /** Budget of the whole run, ms; when it runs out the pending request and running tool calls are aborted (`RUN_TIMEOUT`). */
  runTimeoutMs?: number;
  /** Cap on the sum of `usage.total_tokens` of the run; checked after each response (`TOKEN_BUDGET`). */
  maxTotalTokens?: number;
  /**
   * Tool calls of one turn running at once, a whole number >= 1 (default
   * {@link DEFAULT_MAX_PARALLEL_TOOL_CALLS}); the others wait for a free slot in the order the model
   * named them, and never start once the run is aborted or timed out.
   */
  maxParallelToolCalls?: number;
  /**
   * Tool calls of one turn that are run at all, a whole number >= 1 (default
   * {@link TOOL_CALLS_PER_TURN_FACTOR} × `maxParallelToolCalls`); each call beyond it gets a `BUSY`
   * tool result ("too many tool calls in one turn: ...") without running.
   */
  maxToolCallsPerTurn?: number;
  temperature?: number;
  /** Stream responses (`stream: true`, `stream_options.include_usage`) and emit `text-delta` events (default false). */
  stream?: boolean;
  /** With `stream`, also stream requests that carry `tools` (default true; pass false once a run reported a `stream` fallback). */
  streamWithTools?: boolean;
  /**
   * `native`: the `tools` parameter; `json`: tools described in a system message, calls read from
   * the reply text; `auto` (default): native, switching to json for the run when the endpoint
   * refuses `tools`.
   */
  toolMode?: ToolMode | 'auto';
  /** The model accepts images: tool-result images are sent as `image_url` parts (default false: they are named and omitted). */
  vision?: boolean;
  /** Aborts the pending LLM request and cancels running tool calls. */
  signal?: AbortSignal;
  onEvent?(event: LoopEvent): void;
}

/** The outcome of a run. */
export interface ToolLoopResult {
  /** The final answer's text (`""` when the model sent none). */
  answer: string;
  /**
   * Full transcript: input (with the system prompt), assistant turns, tool messages (json mode:
   * user results messages), image messages, the answer. The json-mode tool description is not
   * in it: it is added to every request.
   */
  messages: ChatCompletionMessageParam[];
  toolCalls: ToolCallSummary[];
  usage: TokenUsage;
  /** LLM requests made (a request retried after a fallback counts once). */
  iterations: number;
  /** The tool mode the run ended in. */
  toolMode: ToolMode;
  /** Changes of approach during the run, for the caller to remember for the next runs. */
  fallbacks: LoopFallback[];
  /** Per LLM request: which tools it offered and why. */
  toolsOffered: TurnOffer[];
}

/** Why a run failed. */
export type ToolLoopErrorCode = 'MAX_ITERATIONS' | 'LLM_ERROR' | 'BAD_RESPONSE' | 'ABORTED' | 'RUN_TIMEOUT' | 'TOKEN_BUDGET' | 'CONTEXT_LENGTH';

/**
 * A failed run; its message is `CODE: what happened`. `partial` holds what happened up to the failure; its transcript ends after the
 * last complete tool round, so it can be sent again. `status` is the LLM endpoint's HTTP status.
 */
export class ToolLoopError extends Error {
  constructor(
    readonly code: ToolLoopErrorCode,
    message: string,
    readonly partial: Omit<ToolLoopResult, 'answer'>,
    readonly status?: number,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
    this.name = 'ToolLoopError';
  }
}
