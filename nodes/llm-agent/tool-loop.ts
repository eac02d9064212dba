/**
 * The tool-calling loop of llm-agent, free of Node-RED so it can be tested and benchmarked alone.
 * It follows the Chat Completions tool-calling protocol (OpenAI API reference, "Function
 * calling"): send messages + tools; for each `tool_calls[i]` of the answer append one
 * `{ role: "tool", tool_call_id, content }` message, in call order; repeat until the model answers
 * without tool calls. Server differences are evened out in `providers.ts` and `stream.ts`; models
 * without native tool calls are served by `json-tools.ts`; images by `tool-results.ts`.
 */
import OpenAI from 'openai';
import type {
  ChatCompletionCreateParamsNonStreaming, ChatCompletionFunctionTool, ChatCompletionCreateParamsStreaming, ChatCompletionMessageFunctionToolCall, ChatCompletionMessageParam,
  ChatCompletionSystemMessageParam,
} from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import { toolErrorOf, toolErrorResult, type CallToolResult } from '@toolmesh/agent/protocol';
import { checkJsonLimits } from '@toolmesh/agent/protocol/json-limits';
import { extractJsonToolCalls, jsonResultsMessage, jsonToolsPrompt } from './json-tools';
import {
  DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_PARALLEL_TOOL_CALLS, TOOL_CALLS_PER_TURN_FACTOR, ToolLoopError, type LoopEvent, type LoopFallback, type TokenUsage, type ToolCallSummary, type ToolLoopErrorCode,
  type ToolLoopOptions, type ToolLoopResult, type ToolMode,
} from './loop-types';
import { normalizeToolCalls, rejectionOf, type RawToolCall } from './providers';
import { assembleStream } from './stream';
import { CALL_TOOL, estimateTokens, FIND_TOOLS, ToolIndex, ToolSelection, type TurnOffer } from './tool-select';
import { imagesMessage, renderToolResult, resultPreview, type ToolImage } from './tool-results';

export * from './loop-types';

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
  // model output is untrusted: nothing recursive (cloning, hashing, redaction) sees it before this
  const shape = checkJsonLimits(value);
  if (shape) return { error: `arguments refused: ${shape.message}` };
  return { args: value as Record<string, unknown> };
}

/**
 * True when the endpoint refused a request for not fitting the model's context: OpenAI answers
 * HTTP 400 with code `context_length_exceeded`; Ollama's `/v1/chat/completions` answers HTTP 500
 * once the prompt overflows its context (default 4,096 tokens) and truncation dropped the user
 * message ("no user query found in messages", ollama/ollama#18107); llama.cpp and vLLM answer 400
 * naming the context size.
 */
export function isContextLengthError(err: unknown): boolean {
  if (!(err instanceof OpenAI.APIError) || (err.status !== 400 && err.status !== 413 && err.status !== 500)) return false;
  if (err.code === 'context_length_exceeded') return true;
  const text = `${err.message} ${JSON.stringify(err.error ?? '')}`;
  return /context[ _-]?(length|window|size)|maximum context|exceeds? the (available )?context|too many tokens|prompt is too long|no user query found in messages/i.test(text);
}

/** Describes a failed LLM request: HTTP status and endpoint, or why the endpoint was unreachable. */
function llmError(err: unknown, baseURL: string, partial: ToolLoopError['partial']): ToolLoopError {
  if (err instanceof OpenAI.APIConnectionError) {
    const cause = (err.cause as Error | undefined)?.message;
    return new ToolLoopError('LLM_ERROR', `LLM endpoint ${baseURL} unreachable: ${err.message}${cause ? ` (${cause})` : ''}; check the base URL`, partial, undefined, { cause: err });
  }
  if (err instanceof OpenAI.APIError && err.status !== undefined) {
    const hint = err.status === 401 || err.status === 403 ? '; check the API key' : err.status === 404 ? '; check the base URL and model' : '';
    return new ToolLoopError('LLM_ERROR', `LLM endpoint ${baseURL} answered HTTP ${err.status}: ${err.message.replace(/^\d{3}\s*/, '')}${hint}`, partial, err.status, { cause: err });
  }
  return new ToolLoopError('LLM_ERROR', `LLM request to ${baseURL} failed: ${(err as Error).message}`, partial, undefined, { cause: err });
}

/** Settles like `p`, or rejects as soon as `signal` aborts (for clients and tool sources that ignore the signal). */
function raceAbort<T>(p: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    p.catch(() => undefined);
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    p.then((v) => { signal.removeEventListener('abort', onAbort); resolve(v); }, (e) => { signal.removeEventListener('abort', onAbort); reject(e); });
  });
}

/** One assistant turn as the loop needs it, streamed or not. */
interface Turn {
  content: string | null;
  toolCalls: readonly RawToolCall[];
  usage?: CompletionUsage;
}

/** One tool call's outcome: its summary, the tool message text and the images for the model. */
interface CallOutcome {
  summary: ToolCallSummary;
  text: string;
  images: ToolImage[];
}

/**
 * A whole number >= 1 from a loop option, or `fallback` when it is undefined.
 * @throws RangeError naming the option and the value when it is anything else
 */
function countOption(name: 'maxParallelToolCalls' | 'maxToolCallsPerTurn', value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value < 1) throw new RangeError(`runToolLoop: ${name} must be a whole number of at least 1, got ${String(value)}`);
  return value;
}

/** The state of one run. */
class LoopRun {
  readonly messages: ChatCompletionMessageParam[];
  readonly toolCalls: ToolCallSummary[] = [];
  readonly usage: TokenUsage = { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
  readonly fallbacks: LoopFallback[] = [];
  /** The catalog (function names, definitions, search index). */
  readonly index: ToolIndex;
  readonly selection: ToolSelection;
  /** The tools of the next request. */
  tools: ChatCompletionFunctionTool[] = [];
  readonly toolsOffered: TurnOffer[] = [];
  readonly signal: AbortSignal;
  iterations = 0;
  mode: ToolMode;
  streamWithTools: boolean;
  /** Ids of every tool call in the transcript, so new ones stay unique. */
  readonly usedIds = new Set<string>();
  /** Tool calls of one turn running at once. */
  readonly parallel: number;
  /** Tool calls of one turn run at all; the rest get `BUSY`. */
  readonly perTurn: number;
  private readonly controller = new AbortController();
  private timer?: NodeJS.Timeout;
  private timedOut = false;
  private jsonPrompt?: ChatCompletionSystemMessageParam;
  private jsonPromptFor?: ChatCompletionFunctionTool[];
  private readonly onAbort = () => this.controller.abort(this.opts.signal?.reason);

  constructor(readonly opts: ToolLoopOptions) {
    this.parallel = countOption('maxParallelToolCalls', opts.maxParallelToolCalls, DEFAULT_MAX_PARALLEL_TOOL_CALLS);
    this.perTurn = countOption('maxToolCallsPerTurn', opts.maxToolCallsPerTurn, TOOL_CALLS_PER_TURN_FACTOR * this.parallel);
    this.index = opts.toolIndex ?? new ToolIndex();
    const source = opts.tools;
    const agents = source?.listAgents && (() => source.listAgents!());
    if (source?.toolsByAgent) this.index.syncByAgent(() => source.toolsByAgent!(), agents, source.catalogRevision?.());
    else if (source) this.index.sync(() => source.listTools(), agents, source.catalogRevision?.());
    else this.index.sync(() => []);
    this.selection = new ToolSelection(this.index, opts.toolBudget, opts.toolSession);
    const first = opts.messages[0]?.role;
    this.messages = opts.systemPrompt && first !== 'system' && first !== 'developer'
      ? [{ role: 'system', content: opts.systemPrompt }, ...opts.messages]
      : [...opts.messages];
    for (const m of opts.messages) {
      if (m.role === 'assistant' && m.tool_calls) {
        for (const c of m.tool_calls) {
          this.usedIds.add(c.id);
          if (c.type === 'function') this.selection.noteUsed(c.function.name === CALL_TOOL ? calledName(c.function.arguments) ?? '' : c.function.name);
        }
      }
    }
    this.mode = opts.toolMode === 'json' ? 'json' : 'native';
    this.streamWithTools = opts.streamWithTools ?? true;
    this.signal = this.controller.signal;
    if (opts.signal?.aborted) this.onAbort();
    else opts.signal?.addEventListener('abort', this.onAbort, { once: true });
    if (opts.runTimeoutMs !== undefined) {
      this.timer = setTimeout(() => { this.timedOut = true; this.controller.abort(new Error('run timeout')); }, opts.runTimeoutMs);
    }
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.opts.signal?.removeEventListener('abort', this.onAbort);
  }

  emit(event: LoopEvent): void {
    this.opts.onEvent?.(event);
  }

  partial(): ToolLoopError['partial'] {
    return {
      messages: [...this.messages], toolCalls: [...this.toolCalls], usage: { ...this.usage }, iterations: this.iterations, toolMode: this.mode,
      fallbacks: [...this.fallbacks], toolsOffered: [...this.toolsOffered],
    };
  }

  fail(code: ToolLoopErrorCode, message: string): ToolLoopError {
    return new ToolLoopError(code, message, this.partial());
  }

  /** `RUN_TIMEOUT` or `ABORTED`, saying what was pending. */
  abortError(stage: string): ToolLoopError {
    if (!this.timedOut) return this.fail('ABORTED', `the run was aborted ${stage}`);
    return this.fail('RUN_TIMEOUT', `the run took longer than its ${this.opts.runTimeoutMs} ms budget (run timeout) and was stopped ${stage}; `
      + `${this.toolCalls.length} tool calls had run in ${this.iterations} LLM requests. Raise "run timeout" or narrow the task`);
  }

  fallback(f: LoopFallback): void {
    this.fallbacks.push(f);
    this.emit({ type: 'fallback', ...f });
  }

  addUsage(u: CompletionUsage | undefined): void {
    if (!u) return;
    const prompt = u.prompt_tokens ?? 0;
    const completion = u.completion_tokens ?? 0;
    this.usage.prompt_tokens += prompt;
    this.usage.completion_tokens += completion;
    this.usage.total_tokens += u.total_tokens ?? prompt + completion;
  }

  /** Chooses the tools of the next request (the whole catalog under the budget) and reports them. */
  offerTools(): void {
    if (!this.opts.tools) return;
    const { tools, offer } = this.selection.turn(this.messages, this.iterations);
    this.tools = tools;
    this.toolsOffered.push(offer);
    // under the budget nothing changes, the run events included
    if (offer.limited) this.emit({ type: 'tools-offered', ...offer });
  }

  /** The catalog tool behind a function name (any tool of the catalog, offered this turn or not). */
  resolve(name: string) {
    return this.index.resolve(name);
  }

  /** The messages of the next request: in json mode with the tool description after the leading system messages. */
  requestMessages(): ChatCompletionMessageParam[] {
    if (this.mode !== 'json' || !this.tools.length) return this.messages;
    if (this.jsonPromptFor !== this.tools) {
      this.jsonPrompt = jsonToolsPrompt(this.tools);
      this.jsonPromptFor = this.tools;
    }
    const at = this.messages.findIndex((m) => m.role !== 'system' && m.role !== 'developer');
    const i = at < 0 ? this.messages.length : at;
    return [...this.messages.slice(0, i), this.jsonPrompt!, ...this.messages.slice(i)];
  }
}

/**
 * Sends one request and reads the answer. A refusal of streaming with tools is retried without
 * streaming; a refusal of `tools` (tool mode `auto`) switches the run to json mode and is retried.
 */
async function requestTurn(run: LoopRun): Promise<Turn> {
  const { opts, signal } = run;
  const useTools = run.mode === 'native' && run.tools.length > 0;
  const stream = opts.stream === true && (!useTools || run.streamWithTools);
  const body: ChatCompletionCreateParamsNonStreaming = { model: opts.model, messages: run.requestMessages() };
  if (useTools) body.tools = run.tools;
  if (opts.temperature !== undefined) body.temperature = opts.temperature;
  try {
    if (stream) {
      const streamed: ChatCompletionCreateParamsStreaming = { ...body, stream: true, stream_options: { include_usage: true } };
      const chunks = await raceAbort(opts.client.chat.completions.create(streamed, { signal }), signal);
      const onText = opts.onEvent ? (text: string) => run.emit({ type: 'text-delta', text }) : undefined;
      const turn = await raceAbort(assembleStream(chunks, onText), signal);
      if (!turn.sawChoice) throw run.fail('BAD_RESPONSE', `LLM endpoint ${opts.client.baseURL} streamed no choice (model ${opts.model})`);
      return turn;
    }
    const completion = await raceAbort(opts.client.chat.completions.create(body, { signal }), signal);
    const message = completion.choices?.[0]?.message;
    if (!message) throw run.fail('BAD_RESPONSE', `LLM endpoint ${opts.client.baseURL} answered without a choice (model ${opts.model})`);
    return { content: message.content ?? null, toolCalls: (message.tool_calls ?? []) as RawToolCall[], usage: completion.usage };
  } catch (err) {
    if (err instanceof ToolLoopError) throw err;
    if (signal.aborted) throw run.abortError('while waiting for the LLM');
    const rejection = rejectionOf(err, { stream, tools: useTools });
    const reason = (err as Error).message.replace(/^\d{3}\s*/, '');
    if (rejection === 'stream-with-tools') {
      run.streamWithTools = false;
      run.fallback({ from: 'stream', to: 'non-stream', reason });
      return requestTurn(run);
    }
    if (rejection === 'tools' && (opts.toolMode ?? 'auto') === 'auto') {
      run.mode = 'json';
      run.fallback({ from: 'native', to: 'json', reason });
      return requestTurn(run);
    }
    if (isContextLengthError(err)) throw contextError(err as InstanceType<typeof OpenAI.APIError>, body, run);
    throw llmError(err, opts.client.baseURL, run.partial());
  }
}

/** `CONTEXT_LENGTH`: the request did not fit the model's context; names its size and what to change. */
function contextError(err: InstanceType<typeof OpenAI.APIError>, body: ChatCompletionCreateParamsNonStreaming, run: LoopRun): ToolLoopError {
  const tools = body.tools ?? [];
  const toolTokens = tools.reduce((n, t) => n + (t.type === 'function' ? estimateTokens(t) : 0), 0);
  const jsonMessages = JSON.stringify(body.messages);
  const promptTokens = Math.ceil(jsonMessages.length / 4) + toolTokens;
  const reason = err.message.replace(/^\d{3}\s*/, '');
  const message = `the request to ${run.opts.client.baseURL} did not fit the model's context (HTTP ${err.status}: ${reason}): it held about ${promptTokens} prompt tokens, `
    + `${toolTokens} of them in ${tools.length} tool definitions, ${body.messages.length} messages. Raise the model's context length (Ollama: OLLAMA_CONTEXT_LENGTH `
    + `or PARAMETER num_ctx in a Modelfile; its default is 4096), or lower "max tools" / "max tool tokens", "memory" or the tool output`;
  return new ToolLoopError('CONTEXT_LENGTH', message, run.partial(), err.status, { cause: err });
}

/**
 * The name of the tool a `call_tool` call names, or undefined (cheap: only the top-level `name`
 * of a JSON object within the JSON limits is read).
 */
function calledName(raw: string): string | undefined {
  const parsed = parseArguments(raw);
  return 'args' in parsed && typeof parsed.args.name === 'string' ? parsed.args.name : undefined;
}

/** A tool call as the loop runs it: a `call_tool` call unwrapped to the call it names. */
interface EffectiveCall {
  /** Function name of the tool to run. */
  name: string;
  parsed: ReturnType<typeof parseArguments>;
  via?: 'call_tool';
  /** Set when the call cannot run: the tool error the model reads (nothing is called). */
  refused?: CallToolResult;
}

/**
 * Unwraps a call of the meta-tool `call_tool` (`{"name": "<agent>__<tool>", "arguments": {...}}`,
 * `arguments` also accepted as a JSON text, as some models send nested objects) into the call
 * it names; any other call is returned as it is. A `call_tool` that names no catalog tool, names
 * a meta-tool or carries bad arguments is refused (`TOOL_NOT_FOUND`, `INVALID_ARGUMENTS`).
 */
function effectiveCall(call: ChatCompletionMessageFunctionToolCall, run: LoopRun): EffectiveCall {
  const { name, arguments: raw } = call.function;
  const parsed = parseArguments(raw);
  if (name !== CALL_TOOL || !run.selection.active) return { name, parsed };
  const via = 'call_tool' as const;
  if ('error' in parsed) return { name, parsed, via, refused: toolErrorResult('INVALID_ARGUMENTS', parsed.error) };
  const { name: inner, arguments: args } = parsed.args;
  if (typeof inner !== 'string' || inner === '') {
    return { name, parsed, via, refused: toolErrorResult('INVALID_ARGUMENTS', `${CALL_TOOL} needs {"name": "<tool name from find_tools>", "arguments": {...}}; "name" is missing`) };
  }
  let innerParsed: ReturnType<typeof parseArguments>;
  if (args === undefined) innerParsed = { args: {} };
  else if (typeof args === 'string') innerParsed = parseArguments(args);
  else if (typeof args === 'object' && args !== null && !Array.isArray(args)) innerParsed = { args: args as Record<string, unknown> };
  else innerParsed = { error: `"arguments" of ${CALL_TOOL} must be a JSON object, got ${Array.isArray(args) ? 'an array' : args === null ? 'null' : typeof args}` };
  if (inner === CALL_TOOL || inner === FIND_TOOLS || !run.resolve(inner)) {
    const shown = JSON.stringify(inner.slice(0, 200));
    return { name: inner, parsed: innerParsed, via, refused: toolErrorResult('TOOL_NOT_FOUND', `${CALL_TOOL}: no tool named ${shown} in the catalog; find it with ${FIND_TOOLS} and use the name it gives`) };
  }
  return { name: inner, parsed: innerParsed, via };
}

/**
 * Runs one tool call; never rejects. A `call_tool` call runs as the call it names, in every
 * respect: the same function name, risk, routing (output 2 / confirm-gate), policy and
 * summary as a direct call of that tool; only `via` tells them apart.
 */
async function runCall(call: ChatCompletionMessageFunctionToolCall, run: LoopRun): Promise<CallOutcome> {
  const { opts } = run;
  if (call.function.name === FIND_TOOLS && run.selection.active) return findTools(call, parseArguments(call.function.arguments), run);
  const { name, parsed, via, refused } = effectiveCall(call, run);
  const raw = call.function.arguments;
  const target = refused ? undefined : run.resolve(name);
  if (target) run.selection.noteUsed(name);
  const startedAt = Date.now();
  const base = { id: call.id, name, ...(via ? { via } : {}), agent: target?.agentId, tool: target?.tool.name, arguments: 'args' in parsed ? parsed.args : raw };
  run.emit({ type: 'tool-call-start', id: call.id, name, ...(via ? { via } : {}), agent: base.agent, tool: base.tool, arguments: base.arguments, startedAt });
  let result: CallToolResult;
  let called = false;
  const t0 = performance.now();
  if (refused) {
    result = refused;
  } else if (!target || !opts.tools) {
    result = toolErrorResult('TOOL_NOT_FOUND', `no tool named "${name}" is offered; use one of the ${run.mode === 'json' ? 'tools listed in the system message' : 'functions listed in tools'}`);
  } else if ('error' in parsed) {
    result = toolErrorResult('INVALID_ARGUMENTS', parsed.error);
  } else {
    called = true;
    try {
      result = await opts.tools.call(target.agentId, target.tool.name, parsed.args, { timeoutMs: opts.toolTimeoutMs, signal: run.signal },
        { id: call.id, name, risk: target.tool.annotations?.risk });
    } catch (err) {
      result = toolErrorResult('EXECUTION_FAILED', `the registry failed the call: ${(err as Error).message}`);
    }
  }
  const code = toolErrorOf(result)?.code;
  const summary: ToolCallSummary = {
    ...base, startedAt, endedAt: called ? Date.now() : startedAt, durationMs: called ? Math.round(performance.now() - t0) : 0, ok: code === undefined, ...(code ? { code } : {}),
  };
  run.emit({ type: 'tool-call-end', call: summary, ...(opts.onEvent ? { result: resultPreview(result) } : {}) });
  const rendered = renderToolResult(result, { vision: opts.vision === true, source: target ? `${target.agentId}/${target.tool.name}` : name, callId: call.id });
  return { summary, ...rendered };
}

/**
 * Runs the calls of one turn: at most `run.parallel` at once, the others waiting for a free slot in
 * call order. Calls beyond `run.perTurn` are not run: each gets a `BUSY` result the model can read.
 * Once the run's signal fires no waiting call starts (the loop then fails the run, so their
 * outcomes stay empty). Never rejects.
 */
async function runCalls(calls: readonly ChatCompletionMessageFunctionToolCall[], run: LoopRun): Promise<CallOutcome[]> {
  const runnable = Math.min(calls.length, run.perTurn);
  const outcomes: CallOutcome[] = new Array<CallOutcome>(calls.length);
  const message = `too many tool calls in one turn: ${calls.length} named, at most ${runnable} run; call the rest in a later turn`;
  let next = 0;
  const slot = async (): Promise<void> => {
    while (next < runnable && !run.signal.aborted) {
      const i = next++;
      outcomes[i] = await runCall(calls[i], run);
    }
  };
  // the first calls start (and emit their events) before the refused ones are answered
  const running = Promise.all(Array.from({ length: Math.min(run.parallel, runnable) }, slot));
  for (let i = runnable; i < calls.length; i++) outcomes[i] = notRun(calls[i], run, toolErrorResult('BUSY', message));
  await running;
  return outcomes;
}

/** The outcome of a call the loop answers itself without calling anything (`result` is an error). */
function notRun(call: ChatCompletionMessageFunctionToolCall, run: LoopRun, result: CallToolResult): CallOutcome {
  const raw = call.function.arguments;
  const { name, parsed, via, refused } = effectiveCall(call, run);
  const target = refused ? undefined : run.resolve(name);
  const startedAt = Date.now();
  const args = 'args' in parsed ? parsed.args : raw;
  run.emit({ type: 'tool-call-start', id: call.id, name, ...(via ? { via } : {}), agent: target?.agentId, tool: target?.tool.name, arguments: args, startedAt });
  const summary: ToolCallSummary = {
    id: call.id, name, ...(via ? { via } : {}), agent: target?.agentId, tool: target?.tool.name, arguments: args,
    startedAt, endedAt: startedAt, durationMs: 0, ok: false, code: toolErrorOf(result)?.code,
  };
  run.emit({ type: 'tool-call-end', call: summary, ...(run.opts.onEvent ? { result: resultPreview(result) } : {}) });
  const rendered = renderToolResult(result, { vision: false, source: name, callId: call.id });
  return { summary, ...rendered };
}

/** Runs the meta-tool `find_tools` in the loop: the matches' definitions are its result; the offered tools do not change. */
function findTools(call: ChatCompletionMessageFunctionToolCall, parsed: ReturnType<typeof parseArguments>, run: LoopRun): CallOutcome {
  const startedAt = Date.now();
  const name = call.function.name;
  run.emit({ type: 'tool-call-start', id: call.id, name, tool: FIND_TOOLS, arguments: 'args' in parsed ? parsed.args : call.function.arguments, startedAt });
  const query = 'args' in parsed && typeof parsed.args.query === 'string' ? parsed.args.query.trim() : '';
  const text = 'error' in parsed ? `INVALID_ARGUMENTS: ${parsed.error}`
    : !query ? 'INVALID_ARGUMENTS: find_tools needs {"query": "<what the tool should do, and where>"}'
    : run.selection.find(query.slice(0, 500));
  const ok = !text.startsWith('INVALID_ARGUMENTS');
  const summary: ToolCallSummary = {
    id: call.id, name, tool: FIND_TOOLS, arguments: 'args' in parsed ? parsed.args : call.function.arguments, startedAt, endedAt: Date.now(), durationMs: 0, ok,
    ...(ok ? {} : { code: 'INVALID_ARGUMENTS' }),
  };
  run.emit({ type: 'tool-call-end', call: summary });
  return { summary, text, images: [] };
}

/**
 * Runs the loop until the model answers without tool calls. The calls of one turn run
 * concurrently, at most `maxParallelToolCalls` at once; calls beyond `maxToolCallsPerTurn` get a
 * `BUSY` result instead of running. Their results are appended in call order (native mode: one `tool` message each,
 * then, with `vision`, one `user` message with their images; json mode: one `user` results
 * message). Bad JSON arguments, unknown function names and tool failures (denials, approvals
 * required, timeouts ...) become `CODE: message` tool results and the run goes on.
 * @throws ToolLoopError `MAX_ITERATIONS` when the model still asks for tools at the last allowed
 *   request (those calls are not run); `TOKEN_BUDGET` when the summed `total_tokens` exceed
 *   `maxTotalTokens` after a response (its calls are not run, its answer not kept); `RUN_TIMEOUT`
 *   when `runTimeoutMs` runs out (the pending request and running tool calls are aborted);
 *   `LLM_ERROR` when a request fails (HTTP status, unreachable endpoint); `BAD_RESPONSE` when an
 *   answer has no choice; `CONTEXT_LENGTH` when the endpoint refused the request as too long for
 *   the model's context (the message names the prompt size and what to change); `ABORTED` when
 *   `signal` fires. With `toolBudget`, each request offers at most that many tools (`tool-select.ts`).
 * @throws RangeError when `maxParallelToolCalls` or `maxToolCallsPerTurn` is not a whole number >= 1
 */
export async function runToolLoop(opts: ToolLoopOptions): Promise<ToolLoopResult> {
  const run = new LoopRun(opts);
  try {
    return await loop(run);
  } finally {
    run.dispose();
  }
}

async function loop(run: LoopRun): Promise<ToolLoopResult> {
  const { opts, messages, toolCalls } = run;
  const maxIterations = opts.maxIterations ?? DEFAULT_MAX_ITERATIONS;
  while (true) {
    run.iterations++;
    run.emit({ type: 'turn-start', iteration: run.iterations });
    run.offerTools();
    const turn = await requestTurn(run);
    run.addUsage(turn.usage);
    if (opts.maxTotalTokens !== undefined && run.usage.total_tokens > opts.maxTotalTokens) {
      throw run.fail('TOKEN_BUDGET', `the run used ${run.usage.total_tokens} tokens, over its budget of ${opts.maxTotalTokens} (max total tokens), `
        + `after ${run.iterations} LLM requests and ${toolCalls.length} tool calls. Raise "max total tokens" or narrow the task`);
    }
    const json = run.mode === 'json';
    const requested = json
      ? (extractJsonToolCalls(turn.content ?? '') ?? []).map((c): RawToolCall => ({ function: { name: c.name, arguments: c.arguments } }))
      : turn.toolCalls;
    if (!requested.length) {
      const answer = turn.content ?? '';
      messages.push({ role: 'assistant', content: answer });
      return { answer, messages, toolCalls, usage: run.usage, iterations: run.iterations, toolMode: run.mode, fallbacks: run.fallbacks, toolsOffered: run.toolsOffered };
    }
    const calls = normalizeToolCalls(requested, run.iterations, run.usedIds);
    if (run.iterations >= maxIterations) {
      throw run.fail('MAX_ITERATIONS', `no final answer after ${run.iterations} LLM requests (max iterations ${maxIterations}): the model still asked for `
        + `${calls.map((c) => c.function.name).join(', ')}; ${toolCalls.length} tool calls ran before. Raise "max iterations" or narrow the task`);
    }
    let outcomes: CallOutcome[];
    try {
      outcomes = await raceAbort(runCalls(calls, run), run.signal);
    } catch {
      throw run.abortError('while tools were running');
    }
    if (run.signal.aborted) throw run.abortError('while tools were running');
    const images = outcomes.flatMap((o) => o.images);
    if (json) {
      messages.push({ role: 'assistant', content: turn.content ?? '' }, jsonResultsMessage(outcomes.map((o) => ({ id: o.summary.id, name: o.summary.name, text: o.text })), images));
    } else {
      messages.push({ role: 'assistant', content: turn.content, tool_calls: calls }, ...outcomes.map((o) => ({ role: 'tool' as const, tool_call_id: o.summary.id, content: o.text })));
      if (images.length) messages.push(imagesMessage(images));
    }
    toolCalls.push(...outcomes.map((o) => o.summary));
  }
}
