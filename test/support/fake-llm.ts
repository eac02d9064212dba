/**
 * A scripted OpenAI-compatible HTTP server for tests. It speaks the
 * real Chat Completions wire format (OpenAI API reference, "Create chat completion" and "The chat
 * completion chunk object"), so the real `openai` client talks to it:
 * - `POST /v1/chat/completions` (also `/chat/completions`), plain JSON or SSE when `stream: true`
 *   (`data: {chunk}\n\n` ... `data: [DONE]\n\n`, tool calls as `delta.tool_calls[i]` fragments);
 * - `GET /v1/models` (also `/models`).
 * With `provider` it puts answers, streams and errors on the wire as that server does, and
 * switches add single quirks (`fake-llm-wire.ts` documents each with its source).
 * Listens on 127.0.0.1, port 0.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { PROFILES, wireToolCall, writeStream, type ErrorExtra, type FakeProvider, type Profile, type WireCall, type WireSwitches } from './fake-llm-wire';

export type { FakeProvider, WireSwitches } from './fake-llm-wire';

/** Token counts as OpenAI reports them in `usage`. */
export interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** One tool call the model asks for; `arguments` objects are sent as their JSON text (unless `argumentsAsObject`). */
export interface FakeToolCall {
  /** Default: the provider's (openai: `call_<answer index>_<call index>`). */
  id?: string;
  name: string;
  arguments: Record<string, unknown> | string;
}

/**
 * What the fake model answers to one request:
 * - `{ content }`: a final answer, `finish_reason: "stop"`;
 * - `{ toolCalls }`: `finish_reason: "tool_calls"`, `message.tool_calls[i] = { id, type: "function",
 *   function: { name, arguments } }` (content null unless given);
 * - `{ error: { status, message } }`: an HTTP error with an OpenAI-style error body.
 * `usage` overrides the estimated token counts; `delayMs` holds the answer back that long.
 */
export type FakeReply = ({ content: string } | { toolCalls: FakeToolCall[]; content?: string } | { error: { status: number; message: string; type?: string } })
  & { usage?: Partial<FakeUsage>; delayMs?: number };

/** A list of replies (request i gets reply i), or a function of the request body and its index (0-based). */
export type FakeScript = FakeReply[] | ((body: any, index: number) => FakeReply | Promise<FakeReply>);

/** One recorded chat-completions request. */
export interface RecordedRequest {
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body (`undefined` when it was not JSON). */
  body: any;
  /** The client went away before the answer was complete (e.g. an aborted request). */
  aborted: boolean;
}

/** A running fake LLM. */
export interface FakeLlm {
  /** Base URL including `/v1`, e.g. `http://127.0.0.1:43121/v1`. */
  readonly url: string;
  /** Every chat-completions request received, in order (invalid ones too). */
  readonly requests: RecordedRequest[];
  close(): Promise<void>;
}

/** Options of {@link startFakeLlm}; the {@link WireSwitches} add single quirks to any provider. */
export interface FakeLlmOptions extends WireSwitches {
  /** When set, requests whose `Authorization` is not `Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** Model ids listed by `GET /v1/models` (default `["fake-model"]`). */
  models?: string[];
  /** Whose wire format to speak (default `openai`). */
  provider?: FakeProvider;
}

/** Checks an assistant message's `tool_calls` as OpenAI does (plus: ids unique within the message). */
function invalidToolCalls(m: any, i: number): { message: string; param: string } | undefined {
  const ids = new Set<string>();
  for (const [k, c] of m.tool_calls.entries()) {
    const at = `messages[${i}].tool_calls[${k}]`;
    if (typeof c?.id !== 'string' || !c.id) return { message: `Missing required parameter: '${at}.id'.`, param: `${at}.id` };
    if (ids.has(c.id)) return { message: `Duplicate tool call id '${c.id}' in '${at}.id'.`, param: `${at}.id` };
    ids.add(c.id);
    if (typeof c.function?.arguments !== 'string') {
      return { message: `Invalid type for '${at}.function.arguments': expected a string, but got ${typeof c.function?.arguments} instead.`, param: `${at}.function.arguments` };
    }
  }
  return undefined;
}

/** The 400 message OpenAI gives for a malformed request, or `undefined` when it is acceptable. */
function invalidRequest(body: any): { message: string; param: string } | undefined {
  if (typeof body !== 'object' || body === null) return { message: 'We could not parse the JSON body of your request.', param: 'body' };
  if (typeof body.model !== 'string' || !body.model) return { message: 'you must provide a model parameter', param: 'model' };
  if (!Array.isArray(body.messages) || body.messages.length === 0) return { message: "Invalid 'messages': expected a non-empty array.", param: 'messages' };
  // as OpenAI does: every tool_call_id of an assistant turn needs its tool message before the next turn
  let open: string[] = [];
  for (const [i, m] of body.messages.entries()) {
    if (typeof m?.role !== 'string') return { message: `Invalid 'messages[${i}]': missing 'role'.`, param: `messages[${i}]` };
    if (m.role === 'tool') {
      if (Array.isArray(m.content) && m.content.some((p: any) => p?.type !== 'text')) {
        return { message: `Image URLs are only allowed for messages with role 'user', but this message with role 'tool' contains an image URL.`, param: `messages[${i}]` };
      }
      if (!open.includes(m.tool_call_id)) return { message: `Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`, param: `messages.[${i}].role` };
      open = open.filter((id) => id !== m.tool_call_id);
      continue;
    }
    if (open.length) break;
    if (m.role === 'assistant' && Array.isArray(m.tool_calls)) {
      const bad = invalidToolCalls(m, i);
      if (bad) return bad;
      open = m.tool_calls.map((c: any) => c.id);
    }
  }
  if (open.length) {
    return { message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${open.join(', ')}`, param: 'messages' };
  }
  return undefined;
}

const tokens = (s: string) => Math.ceil(s.length / 4);

/** A non-error reply as the provider sends it: text, tool calls (ids and arguments per provider and switches), finish reason. */
interface Answer {
  content: string | null;
  calls: WireCall[];
  finish: 'stop' | 'tool_calls';
}

function answerOf(reply: FakeReply, index: number, profile: Profile, sw: WireSwitches): Answer {
  if (!('toolCalls' in reply)) return { content: (reply as { content: string }).content, calls: [], finish: 'stop' };
  const ids = reply.toolCalls.map((c, i) => c.id ?? profile.id(index, i));
  const calls = reply.toolCalls.map((c, i): WireCall => {
    const text = typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments);
    let args: WireCall['arguments'] = text;
    if (sw.argumentsAsObject) {
      try { args = JSON.parse(text); } catch { args = text; }
    }
    return { id: sw.omitToolCallIds ? undefined : sw.duplicateToolCallIds ? ids[0] : ids[i], name: c.name, arguments: args };
  });
  return { content: reply.content ?? null, calls, finish: 'tool_calls' };
}

/** The refusal a request meets under the `reject*` switches, if any (streaming is checked first). */
function refusalOf(body: any, profile: Profile, sw: WireSwitches) {
  const tools = Array.isArray(body.tools) && body.tools.length > 0;
  if (sw.rejectStreamWithTools && tools && body.stream === true) return profile.streamRefusal;
  if (sw.rejectTools && tools) return profile.toolsRefusal(body.model);
  return undefined;
}

/**
 * Starts the fake LLM on 127.0.0.1 (port 0).
 * Answers: 401 when `opts.apiKey` is set and the bearer token differs; 400 (error body in the
 * provider's form) when the JSON is unreadable, `model` is missing, `messages` is not a non-empty
 * array, an assistant tool call has no id, a repeated id or non-string arguments, a tool message
 * holds an image, or a tool_call_id has no tool message; the provider's refusal under
 * `rejectStreamWithTools` / `rejectTools`; 500 when a list script has no reply left or a script
 * function throws; 404 on other paths.
 */
export async function startFakeLlm(script: FakeScript, opts: FakeLlmOptions = {}): Promise<FakeLlm> {
  const requests: RecordedRequest[] = [];
  const profile = PROFILES[opts.provider ?? 'openai'];
  let answered = 0;
  const sendError = (res: http.ServerResponse, status: number, message: string, type = 'invalid_request_error', extra?: ErrorExtra) => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(profile.errorBody(status, message, type, opts, extra)));
  };
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0].replace(/^\/v1(?=\/)/, '');
    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      return sendError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', { code: 'invalid_api_key' });
    }
    if (req.method === 'GET' && path === '/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: (opts.models ?? ['fake-model']).map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake-llm' })) }));
    }
    if (req.method !== 'POST' || path !== '/chat/completions') return sendError(res, 404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', { code: 'unknown_url' });
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', async () => {
      let body: any;
      try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { body = undefined; }
      const rec: RecordedRequest = { path: req.url ?? '', headers: req.headers, body, aborted: false };
      requests.push(rec);
      res.on('close', () => { rec.aborted = !res.writableFinished; });
      const bad = invalidRequest(body);
      if (bad) return sendError(res, 400, bad.message, 'invalid_request_error', { param: bad.param });
      const refusal = refusalOf(body, profile, opts);
      if (refusal) return sendError(res, refusal.status, refusal.message, refusal.type);
      const index = answered++;
      let reply: FakeReply | undefined;
      try {
        reply = typeof script === 'function' ? await script(body, index) : script[index];
      } catch (err) {
        return sendError(res, 500, `fake LLM script failed: ${(err as Error).message}`, 'server_error');
      }
      if (!reply) return sendError(res, 500, `fake LLM script has no reply for request ${index}`, 'server_error');
      if (reply.delayMs) await new Promise((r) => setTimeout(r, reply.delayMs));
      if (!res.socket || res.socket.destroyed) return;
      if ('error' in reply) return sendError(res, reply.error.status, reply.error.message, reply.error.type ?? 'server_error');
      const answer = answerOf(reply, index, profile, opts);
      const completion = tokens(answer.content ?? '') + (answer.calls.length ? tokens(JSON.stringify(answer.calls)) : 0);
      const u = { prompt_tokens: tokens(JSON.stringify(body.messages)), completion_tokens: completion, ...reply.usage };
      const usage: FakeUsage = { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens ?? u.prompt_tokens + u.completion_tokens };
      const base = { id: `chatcmpl-fake-${index}`, created: Math.floor(Date.now() / 1000), model: body.model, system_fingerprint: 'fp_fake' };
      if (body.stream === true) return writeStream(res, base, profile, { ...answer, usage, includeUsage: body.stream_options?.include_usage === true });
      const message = {
        role: 'assistant', content: answer.content, ...(answer.calls.length ? { tool_calls: answer.calls.map(wireToolCall) } : {}), ...profile.messageExtras(answer.calls.length > 0),
      };
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message, ...profile.choiceExtras, finish_reason: answer.finish }], usage }));
    });
  });
  server.on('connection', (s) => s.setNoDelay(true));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1`,
    requests,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
