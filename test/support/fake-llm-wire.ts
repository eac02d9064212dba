/**
 * How each OpenAI-compatible server puts an answer on the wire, for the fake LLM
 * (`fake-llm.ts`). `openai` follows the OpenAI API reference ("Create chat completion", "The chat
 * completion chunk object", "Error codes"); the others differ from it as noted on each profile.
 * Where a difference was seen in a public issue, the issue is named; where not, it is a quirk we
 * support and the note says so.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import type http from 'node:http';

/** The servers the fake can imitate. */
export type FakeProvider = 'openai' | 'ollama' | 'llamacpp' | 'vllm' | 'lmstudio' | 'litellm';

/** Switches that add one quirk to any provider. */
export interface WireSwitches {
  /** `function.arguments` as a JSON object, not a string (llama.cpp builds of March 2026, ggml-org/llama.cpp#20198). */
  argumentsAsObject?: boolean;
  /** Tool calls carry no `id` field at all (a quirk we support; see llamacpp for empty ids). */
  omitToolCallIds?: boolean;
  /** Every tool call of an answer has the first call's id (a quirk we support). */
  duplicateToolCallIds?: boolean;
  /** `stream: true` together with `tools` is refused with the profile's `streamRefusal`. */
  rejectStreamWithTools?: boolean;
  /** No native tool calling: a request with `tools` is refused with the profile's `toolsRefusal`. */
  rejectTools?: boolean;
  /** vllm only: error bodies in the flat form of vLLM before 0.10.1 (vllm-project/vllm#12886). */
  flatErrors?: boolean;
}

/** OpenAI's `param` and `code` of an error. */
export interface ErrorExtra {
  param?: string;
  code?: string;
}

/** A refusal: HTTP status, message, error type. */
export interface Refusal {
  status: number;
  message: string;
  type: string;
}

/** How tool calls travel in an SSE stream. */
export type StreamStyle =
  /** OpenAI: `{index, id, type, function: {name, arguments: ""}}`, then `{index, function: {arguments: piece}}`. */
  | 'fragments'
  /** As `fragments`, but the first chunk of a call has no `arguments` key. */
  | 'name-then-arguments'
  /** Each call whole in its own chunk, every one with `index: 0`. */
  | 'whole-index-0'
  /** All calls whole in one chunk, `index` 0..n-1. */
  | 'all-in-one'
  /** Fragments that each repeat `index`, `id`, `type` and `function.name` (`""` after the first). */
  | 'repeat-id';

/** What differs per provider. */
export interface Profile {
  /** Id of call `i` of answer `n` when the script names none. */
  id(n: number, i: number): string;
  stream: StreamStyle;
  /** Usage in a stream (only when `stream_options.include_usage`): a last chunk with empty `choices`, or on the `finish_reason` chunk followed by an empty-choices chunk. */
  usage: 'last-chunk' | 'finish-chunk';
  /** Extra fields of `choices[0].message` in a plain answer (`hasCalls`: the answer has tool calls). */
  messageExtras(hasCalls: boolean): Record<string, unknown>;
  /** Extra fields of each choice. */
  choiceExtras: Record<string, unknown>;
  /** Extra fields of the last chunk of a stream. */
  lastChunkExtras: Record<string, unknown>;
  /** The JSON body of an HTTP error; `extra` (OpenAI's `param` and `code`) is used where the provider has such fields. */
  errorBody(status: number, message: string, type: string, sw: WireSwitches, extra?: ErrorExtra): unknown;
  toolsRefusal(model: string): Refusal;
  streamRefusal: Refusal;
}

const GENERIC_TOOLS_REFUSAL: Refusal = { status: 400, message: 'this model does not support tools', type: 'invalid_request_error' };
const GENERIC_STREAM_REFUSAL: Refusal = { status: 400, message: 'stream=true is not supported together with tools', type: 'invalid_request_error' };
const alnum = (n: number, alphabet = 'abcdefghijklmnopqrstuvwxyz0123456789') => [...randomBytes(n)].map((b) => alphabet[b % alphabet.length]).join('');
const openAiError = (_status: number, message: string, type: string, _sw?: WireSwitches, extra: ErrorExtra = {}) => ({ error: { message, type, param: extra.param ?? null, code: extra.code ?? null } });

export const PROFILES: Record<FakeProvider, Profile> = {
  /** OpenAI. Ids are really `call_` + 24 random characters; the fake keeps `call_<answer>_<call>` so tests can name them. */
  openai: {
    id: (n, i) => `call_${n}_${i}`,
    stream: 'fragments',
    usage: 'last-chunk',
    messageExtras: () => ({ refusal: null, annotations: [] }),
    choiceExtras: { logprobs: null },
    lastChunkExtras: {},
    errorBody: openAiError,
    // o1-preview/o1-mini refused tools, and o1 at launch refused streaming, with these messages
    toolsRefusal: () => ({ status: 400, message: "Unsupported parameter: 'tools' is not supported with this model.", type: 'invalid_request_error' }),
    streamRefusal: { status: 400, message: "Unsupported value: 'stream' does not support true with this model. Supported values are: false.", type: 'invalid_request_error' },
  },
  /**
   * Ollama's OpenAI compatibility (`/v1`): ids `call_` + 8 lowercase letters and digits;
   * arguments a JSON string; in a stream each call whole in one chunk, all with `index: 0`
   * (ollama/ollama#15457; still so for models without a dedicated parser, #15497); errors with
   * `type: "api_error"`; a model without tool support answers 400 "<model> does not support
   * tools" (ollama/ollama#5793, #14795). Ollama never refused streaming with tools (it buffered
   * the answer instead, ollama/ollama#9092), so its stream refusal is the generic one.
   */
  ollama: {
    id: () => `call_${alnum(8)}`,
    stream: 'whole-index-0',
    usage: 'last-chunk',
    messageExtras: () => ({}),
    choiceExtras: {},
    lastChunkExtras: {},
    errorBody: (status, message) => openAiError(status, message, 'api_error'),
    toolsRefusal: (model) => ({ status: 400, message: `registry.ollama.ai/library/${model} does not support tools`, type: 'api_error' }),
    streamRefusal: GENERIC_STREAM_REFUSAL,
  },
  /**
   * llama.cpp `llama-server --jinja`: tool-call ids empty, as builds of early 2025 sent them
   * (ggml-org/llama.cpp#11992, #12279); streamed tool calls as OpenAI's fragments (since
   * ggml-org/llama.cpp#12379); `timings` on the last chunk and errors as `{error: {code,
   * message, type}}` (tools/server/server-task.cpp). Before #12379 `stream` with `tools` was
   * refused with HTTP 500 "Cannot use tools with stream" (seen in abetlen/llama-cpp-python#1883,
   * simonw/llm-llama-server#3); without `--jinja`, `tools` with 500 "tools param requires --jinja flag".
   */
  llamacpp: {
    id: () => '',
    stream: 'fragments',
    usage: 'last-chunk',
    messageExtras: () => ({}),
    choiceExtras: {},
    lastChunkExtras: { timings: { prompt_n: 1, prompt_ms: 1, predicted_n: 1, predicted_ms: 1 } },
    errorBody: (status, message, type) => ({ error: { code: status, message, type } }),
    toolsRefusal: () => ({ status: 500, message: 'tools param requires --jinja flag', type: 'server_error' }),
    streamRefusal: { status: 500, message: 'Cannot use tools with stream', type: 'server_error' },
  },
  /**
   * vLLM: ids `chatcmpl-tool-` + 32 hex digits; plain answers carry `tool_calls: []` and
   * `reasoning_content: null`, choices `stop_reason`; a call's first stream chunk has its name and
   * no `arguments` key; errors nested since 0.10.1 (vllm-project/vllm PR #22099), flat before
   * (`flatErrors`, #12886); without `--enable-auto-tool-choice` a request with tools is refused
   * with 400 '"auto" tool choice requires ...' (langchain4j/langchain4j#3475).
   */
  vllm: {
    id: () => `chatcmpl-tool-${randomBytes(16).toString('hex')}`,
    stream: 'name-then-arguments',
    usage: 'last-chunk',
    messageExtras: (hasCalls) => ({ reasoning_content: null, ...(hasCalls ? {} : { tool_calls: [] }) }),
    choiceExtras: { logprobs: null, stop_reason: null },
    lastChunkExtras: {},
    errorBody: (status, message, type, sw) => (sw.flatErrors
      ? { object: 'error', message, type, param: null, code: status }
      : { error: { message, type, param: null, code: status } }),
    toolsRefusal: () => ({ status: 400, message: '"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set', type: 'BadRequestError' }),
    streamRefusal: GENERIC_STREAM_REFUSAL,
  },
  /**
   * LM Studio: ids of 9 digits (lmstudio-bug-tracker#830 shows "193629320"); streamed calls in
   * fragments that repeat the id and an empty function name after the first (LM Studio 0.3.16,
   * lmstudio-bug-tracker#649). Errors as `{"error": "<message>"}`, a plain string: a quirk we
   * support. No known refusal texts: generic ones.
   */
  lmstudio: {
    id: () => alnum(9, '0123456789'),
    stream: 'repeat-id',
    usage: 'last-chunk',
    messageExtras: () => ({}),
    choiceExtras: { logprobs: null },
    lastChunkExtras: {},
    errorBody: (_status, message) => ({ error: message }),
    toolsRefusal: () => GENERIC_TOOLS_REFUSAL,
    streamRefusal: GENERIC_STREAM_REFUSAL,
  },
  /**
   * LiteLLM proxy (in front of e.g. Gemini): ids `call_<uuid>` and all calls whole in one chunk
   * (BerriAI/litellm#11999); usage on the finish chunk, then a last chunk with empty choices
   * (seen with xai/grok in BerriAI/litellm#17136); error messages prefixed
   * `litellm.<ErrorClass>:` and `code` a string; a provider without tool calling refused with
   * `litellm.UnsupportedParamsError: ... does not support parameters: ['tools']`.
   */
  litellm: {
    id: () => `call_${randomUUID()}`,
    stream: 'all-in-one',
    usage: 'finish-chunk',
    messageExtras: () => ({}),
    choiceExtras: {},
    lastChunkExtras: {},
    errorBody: (status, message, type) => ({ error: { message: message.startsWith('litellm.') ? message : `litellm.${type}: ${message}`, type: null, param: null, code: String(status) } }),
    toolsRefusal: (model) => ({
      status: 400,
      message: `litellm.UnsupportedParamsError: ollama does not support parameters: ['tools'], for model=${model}. To drop these, set \`litellm.drop_params=True\``,
      type: 'BadRequestError',
    }),
    streamRefusal: GENERIC_STREAM_REFUSAL,
  },
};

/** A tool call ready for the wire; `id` undefined means no `id` field. */
export interface WireCall {
  id?: string;
  name: string;
  /** JSON text, or an object with `argumentsAsObject`. */
  arguments: string | Record<string, unknown>;
}

/** `{id?, type, function}` as sent in a plain answer. */
export function wireToolCall(c: WireCall): Record<string, unknown> {
  return { ...(c.id !== undefined ? { id: c.id } : {}), type: 'function', function: { name: c.name, arguments: c.arguments } };
}

/** Splits a string into about `n` pieces (at least one, possibly empty). */
function pieces(s: string, n = 3): string[] {
  const size = Math.max(1, Math.ceil(s.length / n));
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out.length ? out : [''];
}

/** The `delta.tool_calls` arrays of a streamed answer, one per chunk, in the profile's style. */
function toolCallDeltas(style: StreamStyle, calls: readonly WireCall[]): object[][] {
  const idOf = (c: WireCall) => (c.id !== undefined ? { id: c.id } : {});
  const argPieces = (c: WireCall) => (typeof c.arguments === 'string' ? pieces(c.arguments) : [c.arguments]);
  switch (style) {
    case 'whole-index-0':
      return calls.map((c) => [{ ...idOf(c), index: 0, type: 'function', function: { name: c.name, arguments: c.arguments } }]);
    case 'all-in-one':
      return [calls.map((c, index) => ({ ...idOf(c), index, type: 'function', function: { name: c.name, arguments: c.arguments } }))];
    case 'repeat-id':
      return calls.flatMap((c, index) => argPieces(c).map((p, k) => [{ index, ...idOf(c), type: 'function', function: { name: k === 0 ? c.name : '', arguments: p } }]));
    default: {
      const head = (c: WireCall) => (style === 'fragments' ? { name: c.name, arguments: '' } : { name: c.name });
      return calls.flatMap((c, index) => [
        [{ index, ...idOf(c), type: 'function', function: head(c) }],
        ...argPieces(c).map((p) => [{ index, function: { arguments: p } }]),
      ]);
    }
  }
}

/** What {@link writeStream} sends. */
export interface StreamAnswer {
  content: string | null;
  calls: WireCall[];
  finish: 'stop' | 'tool_calls';
  usage: object;
  includeUsage: boolean;
}

/** Writes a streamed answer as SSE (`data: {chunk}\n\n` ... `data: [DONE]\n\n`) in the profile's style. */
export function writeStream(res: http.ServerResponse, base: object, profile: Profile, a: StreamAnswer): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const send = (chunk: object) => res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', ...chunk })}\n\n`);
  const choice = (delta: object, finish: string | null = null) => ({ choices: [{ index: 0, delta, ...profile.choiceExtras, finish_reason: finish }] });
  send(choice({ role: 'assistant', content: '' }));
  if (a.content) for (const p of pieces(a.content)) send(choice({ content: p }));
  for (const tool_calls of toolCallDeltas(profile.stream, a.calls)) send(choice({ tool_calls }));
  const finishUsage = a.includeUsage && profile.usage === 'finish-chunk';
  const last = a.includeUsage ? { choices: [], ...(finishUsage ? {} : { usage: a.usage }) } : undefined;
  send({ ...choice({}, a.finish), ...(finishUsage ? { usage: a.usage } : {}), ...(last ? {} : profile.lastChunkExtras) });
  if (last) send({ ...last, ...profile.lastChunkExtras });
  res.end('data: [DONE]\n\n');
}
