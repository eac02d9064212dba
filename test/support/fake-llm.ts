/**
 * A scripted OpenAI-compatible HTTP server for tests (DESIGN.md section 5, "LLM"). It speaks the
 * real Chat Completions wire format (OpenAI API reference, "Create chat completion" and "The chat
 * completion chunk object"), so the real `openai` client talks to it:
 * - `POST /v1/chat/completions` (also `/chat/completions`), plain JSON or SSE when `stream: true`
 *   (`data: {chunk}\n\n` ... `data: [DONE]\n\n`, tool calls as `delta.tool_calls[i]` fragments);
 * - `GET /v1/models` (also `/models`).
 * Listens on 127.0.0.1, port 0.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** Token counts as OpenAI reports them in `usage`. */
export interface FakeUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** One tool call the model asks for; `arguments` objects are sent as their JSON text. */
export interface FakeToolCall {
  /** Default `call_<request index>_<call index>`. */
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

/** Options of {@link startFakeLlm}. */
export interface FakeLlmOptions {
  /** When set, requests whose `Authorization` is not `Bearer <apiKey>` get 401. */
  apiKey?: string;
  /** Model ids listed by `GET /v1/models` (default `["fake-model"]`). */
  models?: string[];
}

function sendError(res: http.ServerResponse, status: number, message: string, type = 'invalid_request_error', param: string | null = null, code: string | null = null): void {
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify({ error: { message, type, param, code } }));
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
      if (!open.includes(m.tool_call_id)) return { message: `Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.`, param: `messages.[${i}].role` };
      open = open.filter((id) => id !== m.tool_call_id);
      continue;
    }
    if (open.length) break;
    if (m.role === 'assistant' && Array.isArray(m.tool_calls)) open = m.tool_calls.map((c: any) => c.id);
  }
  if (open.length) {
    return { message: `An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${open.join(', ')}`, param: 'messages' };
  }
  return undefined;
}

const tokens = (s: string) => Math.ceil(s.length / 4);

interface WireToolCall { id: string; type: 'function'; function: { name: string; arguments: string } }
interface Answer {
  message: { role: 'assistant'; content: string | null; tool_calls?: WireToolCall[]; refusal: null };
  finish: 'stop' | 'tool_calls';
}

/** Builds the assistant message and finish reason of a non-error reply. */
function assistantMessage(reply: FakeReply, index: number): Answer {
  if ('toolCalls' in reply) {
    const tool_calls = reply.toolCalls.map((c, i): WireToolCall => ({
      id: c.id ?? `call_${index}_${i}`, type: 'function',
      function: { name: c.name, arguments: typeof c.arguments === 'string' ? c.arguments : JSON.stringify(c.arguments) },
    }));
    return { message: { role: 'assistant', content: reply.content ?? null, tool_calls, refusal: null }, finish: 'tool_calls' };
  }
  return { message: { role: 'assistant', content: (reply as { content: string }).content, refusal: null }, finish: 'stop' };
}

/** Splits a string into about `n` pieces (at least one, possibly empty). */
function pieces(s: string, n = 3): string[] {
  const size = Math.max(1, Math.ceil(s.length / n));
  const out: string[] = [];
  for (let i = 0; i < s.length; i += size) out.push(s.slice(i, i + size));
  return out.length ? out : [''];
}

function writeStream(res: http.ServerResponse, base: object, msg: Answer, usage: FakeUsage, includeUsage: boolean): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', connection: 'keep-alive' });
  const chunk = (delta: object, finish: string | null = null) =>
    res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [{ index: 0, delta, logprobs: null, finish_reason: finish }] })}\n\n`);
  chunk({ role: 'assistant', content: '', refusal: null });
  if (msg.message.content) for (const p of pieces(msg.message.content)) chunk({ content: p });
  for (const [index, c] of (msg.message.tool_calls ?? []).entries()) {
    chunk({ tool_calls: [{ index, id: c.id, type: 'function', function: { name: c.function.name, arguments: '' } }] });
    for (const p of pieces(c.function.arguments)) chunk({ tool_calls: [{ index, function: { arguments: p } }] });
  }
  chunk({}, msg.finish);
  if (includeUsage) res.write(`data: ${JSON.stringify({ ...base, object: 'chat.completion.chunk', choices: [], usage })}\n\n`);
  res.end('data: [DONE]\n\n');
}

/**
 * Starts the fake LLM on 127.0.0.1 (port 0).
 * Answers: 401 when `opts.apiKey` is set and the bearer token differs; 400 (OpenAI error body)
 * when the JSON is unreadable, `model` is missing, `messages` is not a non-empty array, or a
 * tool_call_id has no tool message; 500 when a list script has no reply left or a script function throws; 404 on other paths.
 */
export async function startFakeLlm(script: FakeScript, opts: FakeLlmOptions = {}): Promise<FakeLlm> {
  const requests: RecordedRequest[] = [];
  let answered = 0;
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0].replace(/^\/v1(?=\/)/, '');
    if (opts.apiKey !== undefined && req.headers.authorization !== `Bearer ${opts.apiKey}`) {
      return sendError(res, 401, 'Incorrect API key provided.', 'invalid_request_error', null, 'invalid_api_key');
    }
    if (req.method === 'GET' && path === '/models') {
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ object: 'list', data: (opts.models ?? ['fake-model']).map((id) => ({ id, object: 'model', created: 0, owned_by: 'fake-llm' })) }));
    }
    if (req.method !== 'POST' || path !== '/chat/completions') return sendError(res, 404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', null, 'unknown_url');
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', async () => {
      let body: any;
      try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { body = undefined; }
      const rec: RecordedRequest = { path: req.url ?? '', headers: req.headers, body, aborted: false };
      requests.push(rec);
      res.on('close', () => { rec.aborted = !res.writableFinished; });
      const bad = invalidRequest(body);
      if (bad) return sendError(res, 400, bad.message, 'invalid_request_error', bad.param);
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
      const msg = assistantMessage(reply, index);
      const completion = tokens(msg.message.content ?? '') + (msg.message.tool_calls ? tokens(JSON.stringify(msg.message.tool_calls)) : 0);
      const u = { prompt_tokens: tokens(JSON.stringify(body.messages)), completion_tokens: completion, ...reply.usage };
      const usage: FakeUsage = { prompt_tokens: u.prompt_tokens, completion_tokens: u.completion_tokens, total_tokens: u.total_tokens ?? u.prompt_tokens + u.completion_tokens };
      const base = { id: `chatcmpl-fake-${index}`, created: Math.floor(Date.now() / 1000), model: body.model, system_fingerprint: 'fp_fake' };
      if (body.stream === true) return writeStream(res, base, msg, usage, body.stream_options?.include_usage === true);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ...base, object: 'chat.completion', choices: [{ index: 0, message: msg.message, logprobs: null, finish_reason: msg.finish }], usage }));
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
