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
