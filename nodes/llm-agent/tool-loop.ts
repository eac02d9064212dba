/**
 * The tool-calling loop of llm-agent, free of Node-RED so it can be tested and benchmarked alone.
 * It follows the Chat Completions tool-calling protocol (OpenAI API reference, "Function
 * calling"): send messages + tools; for each `tool_calls[i]` of the answer append one
 * `{ role: "tool", tool_call_id, content }` message, in call order; repeat until the model answers
 * without tool calls.
 */
import OpenAI from 'openai';
import type {
  ChatCompletionAssistantMessageParam, ChatCompletionCreateParamsNonStreaming, ChatCompletionMessageParam, ChatCompletionMessageToolCall,
} from 'openai/resources/chat/completions';
import { toolErrorOf, toolErrorResult, type CallOptions, type CallToolResult } from '../../protocol';
import type { OfferedTool } from '../shared/registry-api';
import { buildToolNames, type ToolNameMap } from './tool-names';

/** Default cap on LLM requests per run. */
export const DEFAULT_MAX_ITERATIONS = 8;

/** Where the loop finds and calls tools: the parts of `ToolRegistryApi` it needs. */
export interface ToolSource {
  /** Tools that may be offered now. Read once at the start of a run. */
  listTools(): OfferedTool[];
  /** Calls a tool; always resolves (failures are `isError` results with `structuredContent.error.code`). */
  call(agentId: string, tool: string, args: Record<string, unknown>, opts?: CallOptions): Promise<CallToolResult>;
}

/** Token counts summed over every LLM request of a run (OpenAI `usage` fields). */
export interface TokenUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** What one tool call of a run did. */
export interface ToolCallSummary {
  /** `tool_calls[i].id` as the model sent it. */
  id: string;
  /** Function name as the model sent it. */
  name: string;
  /** Agent id and tool name behind `name`; absent when the name was not offered. */
  agent?: string;
  tool?: string;
  /** Parsed arguments, or the raw text when it was not a JSON object. */
  arguments: Record<string, unknown> | string;
  /** Wall time of the call, ms (0 when nothing was called). */
  durationMs: number;
  ok: boolean;
  /** Tool error code when `ok` is false (`INVALID_ARGUMENTS`, `TOOL_NOT_FOUND`, `TIMEOUT`, ...). */
  code?: string;
}

/** Progress of a run, for status displays. */
export type LoopEvent =
  | { type: 'llm-request'; iteration: number }
  | { type: 'tool-call'; id: string; name: string; agent?: string; tool?: string }
  | { type: 'tool-result'; call: ToolCallSummary };

/** Options of {@link runToolLoop}. */
export interface ToolLoopOptions {
  /** An `openai` client (its `baseURL` is named in errors). */
  client: Pick<OpenAI, 'chat' | 'baseURL'>;
  model: string;
  /** The conversation so far (not modified). */
  messages: ChatCompletionMessageParam[];
  /** Prepended as a system message unless `messages` already starts with a system or developer message. */
  systemPrompt?: string;
  /** Tools offered to the model; none when omitted. */
  tools?: ToolSource;
  /** Cap on LLM requests (default {@link DEFAULT_MAX_ITERATIONS}). */
  maxIterations?: number;
  /** Budget of each tool call, ms (default: the tool's own `timeoutMs`). */
  toolTimeoutMs?: number;
  temperature?: number;
  /** Aborts the pending LLM request and cancels running tool calls. */
  signal?: AbortSignal;
  onEvent?(event: LoopEvent): void;
}

/** The outcome of a run. */
export interface ToolLoopResult {
  /** The final answer's text (`""` when the model sent none). */
  answer: string;
  /** Full transcript: input (with the system prompt), assistant turns with `tool_calls`, tool messages, the answer. */
  messages: ChatCompletionMessageParam[];
  toolCalls: ToolCallSummary[];
  usage: TokenUsage;
  /** LLM requests made. */
  iterations: number;
}

/** Why a run failed. */
export type ToolLoopErrorCode = 'MAX_ITERATIONS' | 'LLM_ERROR' | 'BAD_RESPONSE' | 'ABORTED';

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

/** Parses a function call's `arguments` text: `""` is `{}`; anything but a JSON object is an error text. */
function parseArguments(raw: string): { args: Record<string, unknown> } | { error: string } {
  if (raw.trim() === '') return { args: {} };
  let value: unknown;
  try {
    value = JSON.parse(raw);
  } catch (err) {
    return { error: `arguments are not valid JSON (${(err as Error).message}); send one JSON object that matches the tool's parameters` };
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    return { error: `arguments must be a JSON object, got ${Array.isArray(value) ? 'an array' : value === null ? 'null' : typeof value}` };
  }
  return { args: value as Record<string, unknown> };
}

/**
 * The text a model reads for a tool result: for failures `CODE: message` (plus `details` as JSON,
 * e.g. zod issues, so the model can correct itself); otherwise the text items, else the JSON of
 * `structuredContent`. Images are named, not sent (vision is a later feature).
 */
export function toolResultText(result: CallToolResult): string {
  const error = toolErrorOf(result);
  if (error) return `${error.code}: ${error.message}${error.details ? `\ndetails: ${JSON.stringify(error.details)}` : ''}`;
  const parts = result.content.map((c) => c.type === 'text' ? c.text : c.type === 'image' ? `[image ${c.mimeType} not shown]` : '').filter(Boolean);
  if (parts.length) return parts.join('\n');
  return result.structuredContent ? JSON.stringify(result.structuredContent) : '(no output)';
}

/** Describes a failed LLM request: HTTP status and endpoint, or why the endpoint was unreachable. */
function llmError(err: unknown, baseURL: string, partial: ToolLoopError['partial']): ToolLoopError {
  if (err instanceof OpenAI.APIUserAbortError) return new ToolLoopError('ABORTED', 'the run was aborted while waiting for the LLM', partial, undefined, { cause: err });
  if (err instanceof OpenAI.APIConnectionError) {
    const cause = (err.cause as Error | undefined)?.message;
    return new ToolLoopError('LLM_ERROR', `LLM endpoint ${baseURL} unreachable: ${err.message}${cause ? ` (${cause})` : ''}; check the base URL`, partial, undefined, { cause: err });
  }
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const hint = err.status === 401 || err.status === 403 ? '; check the API key' : err.status === 404 ? '; check the base URL and model' : '';
    const text = err.message.replace(/^\d{3}\s*/, '');
    return new ToolLoopError('LLM_ERROR', `LLM endpoint ${baseURL} answered HTTP ${err.status}: ${text}${hint}`, partial, err.status, { cause: err });
  }
  return new ToolLoopError('LLM_ERROR', `LLM request to ${baseURL} failed: ${(err as Error).message}`, partial, undefined, { cause: err });
}

/**
 * A tool call as sent back in the transcript: only the spec's fields (some servers add others),
 * and an id even where a server sent none, so tool messages can refer to it.
 */
function normalizeCall(call: ChatCompletionMessageToolCall, fallbackId: string): ChatCompletionMessageToolCall {
  const id = call.id || fallbackId;
  if (call.type !== 'function') return { ...call, id };
  return { id, type: 'function', function: { name: call.function.name, arguments: call.function.arguments ?? '' } };
}

/** Runs one tool call; never rejects. */
async function runCall(call: ChatCompletionMessageToolCall, names: ToolNameMap, opts: ToolLoopOptions): Promise<{ summary: ToolCallSummary; content: string }> {
  const name = call.type === 'function' ? call.function.name : call.custom.name;
  const raw = call.type === 'function' ? call.function.arguments : call.custom.input;
  const target = call.type === 'function' ? names.resolve(name) : undefined;
  const parsed = parseArguments(raw);
  const base = { id: call.id, name, agent: target?.agentId, tool: target?.tool.name, arguments: 'args' in parsed ? parsed.args : raw };
  opts.onEvent?.({ type: 'tool-call', id: call.id, name, agent: base.agent, tool: base.tool });
  let result: CallToolResult;
  const started = performance.now();
  if (!target || !opts.tools) {
    result = toolErrorResult('TOOL_NOT_FOUND', `no tool named "${name}" is offered; use one of the functions listed in tools`);
  } else if ('error' in parsed) {
    result = toolErrorResult('INVALID_ARGUMENTS', parsed.error);
  } else {
    result = await opts.tools.call(target.agentId, target.tool.name, parsed.args, { timeoutMs: opts.toolTimeoutMs, signal: opts.signal })
      .catch((err: Error) => toolErrorResult('EXECUTION_FAILED', `the registry failed the call: ${err.message}`));
  }
  const durationMs = target && 'args' in parsed ? Math.round(performance.now() - started) : 0;
  const code = toolErrorOf(result)?.code;
  const summary: ToolCallSummary = { ...base, durationMs, ok: code === undefined, ...(code ? { code } : {}) };
  opts.onEvent?.({ type: 'tool-result', call: summary });
  return { summary, content: toolResultText(result) };
}

/**
 * Runs the loop until the model answers without tool calls. The calls of one turn run
 * concurrently; their tool messages are appended in call order. Bad JSON arguments and unknown
 * function names become `INVALID_ARGUMENTS` / `TOOL_NOT_FOUND` tool results and the run goes on.
 * @throws ToolLoopError `MAX_ITERATIONS` when the model still asks for tools at the last allowed
 *   request (those calls are not run); `LLM_ERROR` when a request fails (HTTP status, unreachable
 *   endpoint); `BAD_RESPONSE` when an answer has no choice; `ABORTED` when `signal` fires.
 */
export async function runToolLoop(opts: ToolLoopOptions): Promise<ToolLoopResult> {
  const maxIterations = opts.maxIterations ?? DEFAULT_MAX_ITERATIONS;
  const names = buildToolNames(opts.tools?.listTools() ?? []);
  const first = opts.messages[0]?.role;
  const messages: ChatCompletionMessageParam[] = opts.systemPrompt && first !== 'system' && first !== 'developer'
    ? [{ role: 'system', content: opts.systemPrompt }, ...opts.messages]
    : [...opts.messages];
  const toolCalls: ToolCallSummary[] = [];
  const usage: TokenUsage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  let iterations = 0;
  const partial = () => ({ messages: [...messages], toolCalls: [...toolCalls], usage: { ...usage }, iterations });
  const baseURL = opts.client.baseURL;

  while (true) {
    iterations++;
    opts.onEvent?.({ type: 'llm-request', iteration: iterations });
    const request: ChatCompletionCreateParamsNonStreaming = { model: opts.model, messages };
    if (names.tools.length) request.tools = names.tools;
    if (opts.temperature !== undefined) request.temperature = opts.temperature;
    let completion;
    try {
      completion = await opts.client.chat.completions.create(request, { signal: opts.signal });
    } catch (err) {
      throw llmError(err, baseURL, partial());
    }
    if (completion.usage) {
      usage.prompt_tokens += completion.usage.prompt_tokens ?? 0;
      usage.completion_tokens += completion.usage.completion_tokens ?? 0;
      usage.total_tokens += completion.usage.total_tokens ?? 0;
    }
    const message = completion.choices?.[0]?.message;
    if (!message) throw new ToolLoopError('BAD_RESPONSE', `LLM endpoint ${baseURL} answered without a choice (model ${opts.model})`, partial());
    const calls = (message.tool_calls ?? []).map((c, i) => normalizeCall(c, `call_${iterations}_${i}`));
    if (!calls.length) {
      const answer = message.content ?? '';
      messages.push({ role: 'assistant', content: answer });
      return { answer, messages, toolCalls, usage, iterations };
    }
    if (iterations >= maxIterations) {
      throw new ToolLoopError('MAX_ITERATIONS',
        `no final answer after ${iterations} LLM requests (max iterations ${maxIterations}): the model still asked for ${calls.map((c) => c.type === 'function' ? c.function.name : c.custom.name).join(', ')}; `
        + `${toolCalls.length} tool calls ran before. Raise "max iterations" or narrow the task`, partial());
    }
    const turn: ChatCompletionAssistantMessageParam = { role: 'assistant', content: message.content ?? null, tool_calls: calls };
    const results = await Promise.all(calls.map((call) => runCall(call, names, opts)));
    if (opts.signal?.aborted) throw new ToolLoopError('ABORTED', 'the run was aborted while tools were running', partial());
    messages.push(turn, ...results.map((r) => ({ role: 'tool' as const, tool_call_id: r.summary.id, content: r.content })));
    toolCalls.push(...results.map((r) => r.summary));
  }
}
