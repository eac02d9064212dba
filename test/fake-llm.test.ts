import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';

let llm: FakeLlm | undefined;
afterEach(async () => {
  await llm?.close();
  llm = undefined;
});

const client = (apiKey = 'sk-test') => new OpenAI({ baseURL: llm!.url, apiKey, maxRetries: 0 });
const user = [{ role: 'user' as const, content: 'hi' }];

describe('fake LLM', () => {
  it('answers a list script in order, with tool calls and usage, and records requests', async () => {
    llm = await startFakeLlm([
      { toolCalls: [{ name: 'pi__echo', arguments: { text: 'x' } }, { id: 'mine', name: 'b', arguments: '{"a":1}' }], usage: { prompt_tokens: 10, completion_tokens: 5 } },
      { content: 'done' },
    ]);
    const c = client();
    const first = await c.chat.completions.create({ model: 'm1', messages: user, tools: [{ type: 'function', function: { name: 'pi__echo', parameters: { type: 'object' } } }] });
    expect(first.choices[0].finish_reason).toBe('tool_calls');
    expect(first.choices[0].message.tool_calls).toEqual([
      { id: 'call_0_0', type: 'function', function: { name: 'pi__echo', arguments: '{"text":"x"}' } },
      { id: 'mine', type: 'function', function: { name: 'b', arguments: '{"a":1}' } },
    ]);
    expect(first.usage).toEqual({ prompt_tokens: 10, completion_tokens: 5, total_tokens: 15 });
    const second = await c.chat.completions.create({
      model: 'm1',
      messages: [...user, first.choices[0].message, { role: 'tool', tool_call_id: 'call_0_0', content: 'r1' }, { role: 'tool', tool_call_id: 'mine', content: 'r2' }],
    });
    expect(second.choices[0]).toMatchObject({ finish_reason: 'stop', message: { role: 'assistant', content: 'done' } });
    expect(second.usage!.total_tokens).toBe(second.usage!.prompt_tokens + second.usage!.completion_tokens);
    expect(llm.requests).toHaveLength(2);
    expect(llm.requests[0].body.tools[0].function.name).toBe('pi__echo');
    expect(llm.requests[1].body.messages.at(-1)).toEqual({ role: 'tool', tool_call_id: 'mine', content: 'r2' });
    expect(llm.requests[0].headers.authorization).toBe('Bearer sk-test');
    expect(llm.requests[0].path).toBe('/v1/chat/completions');
  });

  it('streams content and tool-call deltas that the openai client assembles', async () => {
    llm = await startFakeLlm((_body, i) => i === 0
      ? { toolCalls: [{ name: 'a', arguments: { long: 'abcdefghijklmnop' } }, { name: 'b', arguments: {} }] }
      : { content: 'streamed answer text' });
    const c = client();
    const tools = await c.chat.completions.stream({ model: 'm', messages: user, stream_options: { include_usage: true } }).finalChatCompletion();
    expect(tools.choices[0].finish_reason).toBe('tool_calls');
    expect(tools.choices[0].message.tool_calls!.map((t) => t.type === 'function' && [t.id, t.function.name, JSON.parse(t.function.arguments)]))
      .toEqual([['call_0_0', 'a', { long: 'abcdefghijklmnop' }], ['call_0_1', 'b', {}]]);
    expect(tools.usage!.total_tokens).toBeGreaterThan(0);

    const stream = await c.chat.completions.create({ model: 'm', messages: user, stream: true });
    const deltas: string[] = [];
    let finish: string | null = null;
    for await (const chunk of stream) {
      if (chunk.choices[0]?.delta.content) deltas.push(chunk.choices[0].delta.content);
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('streamed answer text');
    expect(finish).toBe('stop');
  });

  it('answers 400 with an OpenAI error body for malformed requests, 401 for a wrong key', async () => {
    llm = await startFakeLlm([{ content: 'never' }], { apiKey: 'right', models: ['a', 'b'] });
    const c = client('right');
    const err = await c.chat.completions.create({ model: '', messages: user }).catch((e) => e);
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err.status).toBe(400);
    expect(err.error).toMatchObject({ type: 'invalid_request_error', param: 'model' });
    const noMessages = await c.chat.completions.create({ model: 'm', messages: [] }).catch((e) => e);
    expect(noMessages.status).toBe(400);
    const orphan = await c.chat.completions.create({
      model: 'm', messages: [...user, { role: 'assistant', content: null, tool_calls: [{ id: 'x', type: 'function', function: { name: 'f', arguments: '{}' } }] }],
    }).catch((e) => e);
    expect(orphan.status).toBe(400);
    expect(orphan.message).toContain('did not have response messages: x');
    const denied = await client('wrong').chat.completions.create({ model: 'm', messages: user }).catch((e) => e);
    expect(denied).toBeInstanceOf(OpenAI.AuthenticationError);
    expect((await c.models.list()).data.map((m) => m.id)).toEqual(['a', 'b']);
    expect((await c.chat.completions.create({ model: 'm', messages: user })).choices[0].message.content).toBe('never');
  });

  it('accepts paths without /v1, scripted HTTP errors, and reports an exhausted script', async () => {
    llm = await startFakeLlm([{ error: { status: 503, message: 'overloaded' } }]);
    const c = new OpenAI({ baseURL: llm.url.replace(/\/v1$/, ''), apiKey: 'k', maxRetries: 0 });
    const err = await c.chat.completions.create({ model: 'm', messages: user }).catch((e) => e);
    expect(err.status).toBe(503);
    expect(err.message).toContain('overloaded');
    expect(llm.requests[0].path).toBe('/chat/completions');
    const exhausted = await c.chat.completions.create({ model: 'm', messages: user }).catch((e) => e);
    expect(exhausted.status).toBe(500);
  });

  it('marks a request the client aborted', async () => {
    llm = await startFakeLlm([{ content: 'late', delayMs: 5_000 }]);
    const ac = new AbortController();
    const p = client().chat.completions.create({ model: 'm', messages: user }, { signal: ac.signal }).catch((e) => e);
    await new Promise<void>((r) => { const chk = () => llm!.requests.length ? r() : setTimeout(chk, 5); chk(); });
    ac.abort();
    expect(await p).toBeInstanceOf(OpenAI.APIUserAbortError);
    await new Promise<void>((r) => { const chk = () => llm!.requests[0].aborted ? r() : setTimeout(chk, 5); chk(); });
    expect(llm.requests[0].aborted).toBe(true);
  });
});

/** POSTs a chat request with raw fetch, so the test sees exactly what is on the wire. */
async function post(body: Record<string, unknown>): Promise<{ status: number; json?: any; chunks?: any[] }> {
  const res = await fetch(`${llm!.url}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'm', messages: user, ...body }) });
  const text = await res.text();
  if (!text.startsWith('data: ')) return { status: res.status, json: JSON.parse(text) };
  const events = text.split('\n\n').filter(Boolean).map((e) => e.replace(/^data: /, ''));
  expect(events.at(-1)).toBe('[DONE]');
  return { status: res.status, chunks: events.slice(0, -1).map((e) => JSON.parse(e)) };
}
const tools = [{ type: 'function', function: { name: 'f', parameters: { type: 'object' } } }];
const twoCalls = [{ toolCalls: [{ name: 'f', arguments: { a: 'xyzxyzxyz' } }, { name: 'g', arguments: {} }] }];
const callDeltas = (chunks: any[]) => chunks.filter((c) => c.choices[0]?.delta?.tool_calls).map((c) => c.choices[0].delta.tool_calls);

describe('fake LLM provider wire formats', () => {
  it('ollama: ids call_ + 8 characters; in a stream each call whole in one chunk with index 0; usage in a last chunk', async () => {
    llm = await startFakeLlm([...twoCalls, ...twoCalls], { provider: 'ollama' });
    const plain = await post({ tools });
    expect(plain.json.choices[0].message.tool_calls.map((c: any) => c.id)).toEqual([expect.stringMatching(/^call_[a-z0-9]{8}$/), expect.stringMatching(/^call_[a-z0-9]{8}$/)]);
    const { chunks } = await post({ tools, stream: true, stream_options: { include_usage: true } });
    expect(callDeltas(chunks!)).toEqual([
      [{ id: expect.stringMatching(/^call_/), index: 0, type: 'function', function: { name: 'f', arguments: '{"a":"xyzxyzxyz"}' } }],
      [{ id: expect.stringMatching(/^call_/), index: 0, type: 'function', function: { name: 'g', arguments: '{}' } }],
    ]);
    expect(chunks!.at(-1)).toMatchObject({ choices: [], usage: { total_tokens: expect.any(Number) } });
  });

  it('llamacpp: empty ids, OpenAI fragments, timings on the last chunk', async () => {
    llm = await startFakeLlm([...twoCalls, ...twoCalls], { provider: 'llamacpp' });
    expect((await post({ tools })).json.choices[0].message.tool_calls.map((c: any) => c.id)).toEqual(['', '']);
    const { chunks } = await post({ tools, stream: true });
    const deltas = callDeltas(chunks!);
    expect(deltas[0]).toEqual([{ index: 0, id: '', type: 'function', function: { name: 'f', arguments: '' } }]);
    expect(deltas.filter((d) => d[0].index === 0).map((d) => d[0].function.arguments).join('')).toBe('{"a":"xyzxyzxyz"}');
    expect(chunks!.at(-1).timings).toBeDefined();
    expect(chunks!.some((c) => c.usage)).toBe(false);
  });

  it('vllm: tool_calls [] on plain answers, name-first fragments without arguments, nested or flat errors', async () => {
    llm = await startFakeLlm([{ content: 'hi' }, ...twoCalls], { provider: 'vllm' });
    expect((await post({})).json.choices[0]).toMatchObject({ message: { content: 'hi', tool_calls: [], reasoning_content: null }, stop_reason: null });
    const { chunks } = await post({ tools, stream: true });
    expect(callDeltas(chunks!)[0]).toEqual([{ index: 0, id: expect.stringMatching(/^chatcmpl-tool-[0-9a-f]{32}$/), type: 'function', function: { name: 'f' } }]);
    await llm.close();
    llm = await startFakeLlm([], { provider: 'vllm', rejectTools: true, flatErrors: true });
    expect(await post({ tools })).toEqual({ status: 400, json: { object: 'error', message: expect.stringContaining('--enable-auto-tool-choice'), type: 'BadRequestError', param: null, code: 400 } });
  });

  it('lmstudio: numeric ids repeated on every fragment, empty names after the first; errors as plain strings', async () => {
    llm = await startFakeLlm(twoCalls, { provider: 'lmstudio', rejectTools: true });
    expect(await post({ tools })).toEqual({ status: 400, json: { error: 'this model does not support tools' } });
    const { chunks } = await post({ stream: true });
    const first = callDeltas(chunks!).filter((d) => d[0].index === 0);
    expect(first.length).toBeGreaterThan(1);
    expect(new Set(first.map((d) => d[0].id)).size).toBe(1);
    expect(first[0][0].id).toMatch(/^\d{9}$/);
    expect(first.map((d) => d[0].function.name)).toEqual(['f', ...first.slice(1).map(() => '')]);
  });

  it('litellm: all calls whole in one chunk, usage on the finish chunk, then an empty one', async () => {
    llm = await startFakeLlm(twoCalls, { provider: 'litellm' });
    const { chunks } = await post({ tools, stream: true, stream_options: { include_usage: true } });
    expect(callDeltas(chunks!)).toEqual([[
      { id: expect.stringMatching(/^call_[0-9a-f-]{36}$/), index: 0, type: 'function', function: { name: 'f', arguments: '{"a":"xyzxyzxyz"}' } },
      { id: expect.stringMatching(/^call_[0-9a-f-]{36}$/), index: 1, type: 'function', function: { name: 'g', arguments: '{}' } },
    ]]);
    expect(chunks!.at(-2)).toMatchObject({ choices: [{ finish_reason: 'tool_calls' }], usage: { total_tokens: expect.any(Number) } });
    expect(chunks!.at(-1)).toEqual(expect.objectContaining({ choices: [] }));
    expect(chunks!.at(-1).usage).toBeUndefined();
  });

  it('switches: arguments as objects, no ids, one id for all, refusals of tools and of streaming with tools', async () => {
    llm = await startFakeLlm([...twoCalls, ...twoCalls, ...twoCalls], { argumentsAsObject: true, omitToolCallIds: true });
    expect((await post({})).json.choices[0].message.tool_calls[0]).toEqual({ type: 'function', function: { name: 'f', arguments: { a: 'xyzxyzxyz' } } });
    expect(callDeltas((await post({ stream: true })).chunks!)[1]).toEqual([{ index: 0, function: { arguments: { a: 'xyzxyzxyz' } } }]);
    await llm.close();
    llm = await startFakeLlm(twoCalls, { duplicateToolCallIds: true });
    expect((await post({})).json.choices[0].message.tool_calls.map((c: any) => c.id)).toEqual(['call_0_0', 'call_0_0']);
    await llm.close();
    llm = await startFakeLlm(twoCalls, { provider: 'llamacpp', rejectStreamWithTools: true, rejectTools: true });
    expect(await post({ tools, stream: true })).toEqual({ status: 500, json: { error: { code: 500, message: 'Cannot use tools with stream', type: 'server_error' } } });
    expect(await post({ tools })).toEqual({ status: 500, json: { error: { code: 500, message: 'tools param requires --jinja flag', type: 'server_error' } } });
    expect((await post({ stream: true })).status).toBe(200);
  });

  it('refuses transcripts a strict server refuses: object arguments, missing or repeated ids, images in tool messages', async () => {
    llm = await startFakeLlm([{ content: 'never' }], {});
    const call = (id: unknown, args: unknown) => ({ id, type: 'function', function: { name: 'f', arguments: args } });
    const turn = (calls: unknown[], tool: unknown[] = []) => [...user, { role: 'assistant', content: null, tool_calls: calls }, ...tool];
    const cases: [unknown[], RegExp][] = [
      [turn([call('a', { x: 1 })], [{ role: 'tool', tool_call_id: 'a', content: 'r' }]), /expected a string, but got object/],
      [turn([call(undefined, '{}')]), /Missing required parameter: 'messages\[1\]\.tool_calls\[0\]\.id'/],
      [turn([call('a', '{}'), call('a', '{}')], [{ role: 'tool', tool_call_id: 'a', content: 'r' }]), /Duplicate tool call id 'a'/],
      [turn([call('a', '{}')], [{ role: 'tool', tool_call_id: 'a', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA==' } }] }]), /only allowed for messages with role 'user'/],
    ];
    for (const [messages, message] of cases) {
      const r = await post({ messages });
      expect(r.status).toBe(400);
      expect(r.json.error.message).toMatch(message);
    }
    expect(llm.requests).toHaveLength(4);
  });
});
