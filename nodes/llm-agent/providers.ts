/**
 * What differs between OpenAI-compatible servers (OpenAI, LiteLLM, Ollama `/v1`, llama.cpp
 * server, vLLM, LM Studio) and how the loop evens it out:
 * - tool calls: `function.arguments` sent as a JSON object instead of a string (llama.cpp builds
 *   of March 2026, ggml-org/llama.cpp#20198); ids missing or empty (llama.cpp early 2025,
 *   ggml-org/llama.cpp#11992; LM Studio 0.3.21, lmstudio-bug-tracker#830) or repeated within a
 *   turn — {@link normalizeToolCalls};
 * - a server that refuses `stream: true` together with `tools` (llama.cpp before
 *   ggml-org/llama.cpp#12379 answered HTTP 500 "Cannot use tools with stream"), or refuses `tools`
 *   altogether (Ollama: 400 "<model> does not support tools"; vLLM without
 *   `--enable-auto-tool-choice`: 400 '"auto" tool choice requires ...'; llama.cpp without
 *   `--jinja`: 500 "tools param requires --jinja flag") — {@link rejectionOf};
 * - vLLM before 0.10.1 put its error at the top level of the body (vllm-project/vllm#12886), where
 *   the `openai` client does not look, so the message is lost — {@link fetchWithNestedErrors}.
 */
import OpenAI from 'openai';
import type { ChatCompletionMessageFunctionToolCall } from 'openai/resources/chat/completions';

/** A tool call as some server sent it: any field may be missing or of another type. */
export interface RawToolCall {
  id?: unknown;
  type?: unknown;
  function?: { name?: unknown; arguments?: unknown } | null;
}

/** `arguments` as the Chat Completions API wants it: JSON text (objects are serialized, nothing is `""`). */
function argumentsText(value: unknown): string {
  if (typeof value === 'string') return value;
  if (value === undefined || value === null) return '';
  return JSON.stringify(value);
}

/**
 * Turns the raw tool calls of one assistant turn into well-formed function calls: arguments as
 * JSON text, and an id that is non-empty and unique among `usedIds` (ids of the run so far; the
 * new ones are added). A missing, empty or already used id becomes `call_<iteration>_<index>`
 * (plus `_<n>` if even that is taken). Only `id`, `type`, `function.name` and
 * `function.arguments` are kept (some servers add fields the API refuses when sent back).
 */
export function normalizeToolCalls(calls: readonly RawToolCall[], iteration: number, usedIds: Set<string>): ChatCompletionMessageFunctionToolCall[] {
  return calls.map((call, index) => {
    let id = typeof call.id === 'string' ? call.id : '';
    if (!id || usedIds.has(id)) {
      id = `call_${iteration}_${index}`;
      for (let n = 2; usedIds.has(id); n++) id = `call_${iteration}_${index}_${n}`;
    }
    usedIds.add(id);
    const name = typeof call.function?.name === 'string' ? call.function.name : '';
    return { id, type: 'function', function: { name, arguments: argumentsText(call.function?.arguments) } };
  });
}

/** Why a server refused a request: streaming together with tools, or tools at all. */
export type Rejection = 'stream-with-tools' | 'tools';

/** HTTP statuses a refusal of a request feature arrives with (llama.cpp uses 500 for it). */
const REFUSAL_STATUSES = new Set([400, 422, 500, 501]);

/** The text of an API error: its message and, when the body had more, that body as JSON. */
function errorText(err: InstanceType<typeof OpenAI.APIError>): string {
  const body = err.error === undefined || err.error === null ? '' : typeof err.error === 'string' ? err.error : JSON.stringify(err.error);
  return body && !err.message.includes(body) ? `${err.message} ${body}` : err.message;
}

/**
 * Classifies a failed request as a refusal of a feature the loop can do without:
 * - `stream-with-tools`: the request streamed and carried tools, and the error (HTTP 400, 422,
 *   500 or 501) mentions streaming — retry it without streaming;
 * - `tools`: the request carried tools and the error mentions tools, tool choice or functions
 *   (but not a `tool_call_id` or the `tool` role, which point at the transcript instead) — the
 *   endpoint has no native tool calling.
 * Anything else (`undefined`) is a real failure. A body the client could not read (vLLM before
 * 0.10.1 without {@link fetchWithNestedErrors}) never classifies.
 */
export function rejectionOf(err: unknown, request: { stream: boolean; tools: boolean }): Rejection | undefined {
  if (!(err instanceof OpenAI.APIError) || err.status === undefined || !REFUSAL_STATUSES.has(err.status) || !request.tools) return undefined;
  const text = errorText(err);
  if (request.stream && /stream/i.test(text)) return 'stream-with-tools';
  if (/tool_call_id|role\W{0,3}tool\b/i.test(text)) return undefined;
  return /\btools?\b|tool[_ ]choice|tool[_ ]call|function/i.test(text) ? 'tools' : undefined;
}

/**
 * Wraps a `fetch` for the `openai` client (its `fetch` option) so that an error body in vLLM's
 * old flat form `{"object":"error","message":...,"type":...,"code":400}` reaches the client in
 * OpenAI's form `{"error":{"message":...,"type":...,"param":...,"code":...}}`; every other
 * response passes untouched. Without it the client reports such errors as "status code (no body)".
 */
export function fetchWithNestedErrors(base: typeof fetch = fetch): typeof fetch {
  return async (input, init) => {
    const res = await base(input, init);
    if (res.ok || !(res.headers.get('content-type') ?? '').includes('json')) return res;
    const text = await res.text();
    let body: unknown;
    try { body = JSON.parse(text); } catch { body = undefined; }
    const flat = body as { error?: unknown; message?: unknown } | undefined;
    const fixed = flat && typeof flat === 'object' && flat.error === undefined && typeof flat.message === 'string' ? JSON.stringify({ error: flat }) : text;
    const headers = new Headers(res.headers);
    headers.delete('content-length');
    headers.delete('content-encoding');
    return new Response(fixed, { status: res.status, statusText: res.statusText, headers });
  };
}
