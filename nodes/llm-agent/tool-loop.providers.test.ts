import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startLoopHarness, recordingSource, type LoopHarness } from '../../test/support/loop-harness';
import type { FakeProvider, FakeScript } from '../../test/support/fake-llm';
import { fetchWithNestedErrors } from './providers';
import { runToolLoop, type LoopEvent, type ToolCallInfo } from './tool-loop';

let h: LoopHarness;
beforeAll(async () => { h = await startLoopHarness('loop-providers-test'); });
afterAll(async () => { await h.close(); });
afterEach(async () => { await h.reset(); });

/** Two echo calls without ids (the provider names them), then a final answer. */
const twoCalls: FakeScript = [
  { toolCalls: [{ name: 'pi__echo', arguments: { text: 'a' } }, { name: 'pi__echo', arguments: { text: 'b' } }], content: 'Checking.' },
  { content: 'Both echoed.' },
];

/** Ids each provider gives (llama.cpp sends empty ones, so the loop makes `call_<iteration>_<index>`). */
const ID_PATTERNS: Record<FakeProvider, RegExp> = {
  openai: /^call_0_[01]$/,
  ollama: /^call_[a-z0-9]{8}$/,
  llamacpp: /^call_1_[01]$/,
  vllm: /^chatcmpl-tool-[0-9a-f]{32}$/,
  lmstudio: /^\d{9}$/,
  litellm: /^call_[0-9a-f-]{36}$/,
};

const toolMessages = (body: any) => body.messages.filter((m: any) => m.role === 'tool');
const assistantCalls = (body: any) => body.messages.find((m: any) => m.role === 'assistant' && m.tool_calls)?.tool_calls;

describe.each(Object.keys(ID_PATTERNS) as FakeProvider[])('provider %s', (provider) => {
  it.each([false, true])('runs a two-call turn with stream=%s', async (stream) => {
    const events: LoopEvent[] = [];
    const opts = await h.setup(twoCalls, { provider }, { stream, onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('Both echoed.');
    expect([...h.runs].sort()).toEqual(['echo:a', 'echo:b']);
    const ids = r.toolCalls.map((c) => c.id);
    for (const id of ids) expect(id).toMatch(ID_PATTERNS[provider]);
    expect(new Set(ids).size).toBe(2);
    const second = h.llm.requests[1].body;
    expect(assistantCalls(second).map((c: any) => [c.id, c.function.name, c.function.arguments])).toEqual([[ids[0], 'pi__echo', '{"text":"a"}'], [ids[1], 'pi__echo', '{"text":"b"}']]);
    expect(toolMessages(second)).toEqual([
      { role: 'tool', tool_call_id: ids[0], content: '{"echo":"a"}' },
      { role: 'tool', tool_call_id: ids[1], content: '{"echo":"b"}' },
    ]);
    expect(r.messages[1]).toMatchObject({ role: 'assistant', content: 'Checking.' });
    expect(r.usage.total_tokens).toBeGreaterThan(0);
    expect(h.llm.requests.every((q) => (q.body.stream === true) === stream)).toBe(true);
    const deltas = events.flatMap((e) => (e.type === 'text-delta' ? [e.text] : []));
    expect(deltas.join('')).toBe(stream ? 'Checking.Both echoed.' : '');
    expect(r.fallbacks).toEqual([]);
  });
});

describe('tool-call quirks', () => {
  it.each([false, true])('accepts arguments sent as JSON objects (stream=%s) and sends them back as text', async (stream) => {
    const opts = await h.setup(twoCalls, { provider: 'llamacpp', argumentsAsObject: true }, { stream });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => c.arguments)).toEqual([{ text: 'a' }, { text: 'b' }]);
    expect(assistantCalls(h.llm.requests[1].body).map((c: any) => c.function.arguments)).toEqual(['{"text":"a"}', '{"text":"b"}']);
  });

  it.each([false, true])('makes ids for calls without any (stream=%s) and uses them everywhere', async (stream) => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const opts = await h.setup(twoCalls, { provider: 'ollama', omitToolCallIds: true }, { stream, tools: recordingSource(h.caller, infos) });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => c.id)).toEqual(['call_1_0', 'call_1_1']);
    expect(toolMessages(h.llm.requests[1].body).map((m: any) => m.tool_call_id)).toEqual(['call_1_0', 'call_1_1']);
    expect(infos.map((i) => i?.id).sort()).toEqual(['call_1_0', 'call_1_1']);
  });

  it('keeps new ids distinct from those of the conversation it continues', async () => {
    const history = [
      { role: 'user' as const, content: 'before' },
      { role: 'assistant' as const, content: null, tool_calls: [{ id: 'call_1_0', type: 'function' as const, function: { name: 'pi__echo', arguments: '{"text":"old"}' } }] },
      { role: 'tool' as const, tool_call_id: 'call_1_0', content: '{"echo":"old"}' },
      { role: 'assistant' as const, content: 'old answer' },
      { role: 'user' as const, content: 'again' },
    ];
    const opts = await h.setup(twoCalls, { provider: 'llamacpp' }, { messages: history });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => c.id)).toEqual(['call_1_0_2', 'call_1_1']);
  });

  it.each([false, true])('makes repeated ids unique within a turn and across turns (stream=%s)', async (stream) => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const opts = await h.setup([
      { toolCalls: [{ id: 'same', name: 'pi__echo', arguments: { text: 'a' } }, { id: 'same', name: 'pi__take_photo', arguments: {} }] },
      { toolCalls: [{ id: 'same', name: 'pi__echo', arguments: { text: 'c' } }] },
      { content: 'ok' },
    ], { provider: 'vllm', duplicateToolCallIds: true }, { stream, tools: recordingSource(h.caller, infos) });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => [c.id, c.name])).toEqual([['same', 'pi__echo'], ['call_1_1', 'pi__take_photo'], ['call_2_0', 'pi__echo']]);
    expect(toolMessages(h.llm.requests[2].body).map((m: any) => m.tool_call_id)).toEqual(['same', 'call_1_1', 'call_2_0']);
    expect(infos).toContainEqual({ id: 'call_1_1', name: 'pi__take_photo', risk: 'low' });
    expect(infos).toContainEqual({ id: 'same', name: 'pi__echo', risk: 'low' });
  });
});

describe('streaming with tools refused', () => {
  it.each(['llamacpp', 'openai'] as const)('retries without streaming on %s, keeps streaming tool-less requests off that path, and reports the fallback', async (provider) => {
    const events: LoopEvent[] = [];
    const opts = await h.setup(twoCalls, { provider, rejectStreamWithTools: true }, { stream: true, onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('Both echoed.');
    const reason = provider === 'llamacpp' ? 'Cannot use tools with stream' : expect.stringContaining("'stream' does not support true");
    expect(r.fallbacks).toEqual([{ from: 'stream', to: 'non-stream', reason }]);
    expect(events.filter((e) => e.type === 'fallback')).toEqual([{ type: 'fallback', from: 'stream', to: 'non-stream', reason }]);
    expect(h.llm.requests.map((q) => q.body.stream === true)).toEqual([true, false, false]);
    expect(r.iterations).toBe(2);
  });

  it('does not stream requests with tools when told so (streamWithTools: false)', async () => {
    const opts = await h.setup(twoCalls, { provider: 'llamacpp', rejectStreamWithTools: true }, { stream: true, streamWithTools: false });
    const r = await runToolLoop(opts);
    expect(r.fallbacks).toEqual([]);
    expect(h.llm.requests.map((q) => q.body.stream === true)).toEqual([false, false]);
  });
});

/** A model that writes tool calls as JSON in text, then answers. */
const jsonScript: FakeScript = (body, i) => {
  if (i === 0) return { content: 'I will echo it.\n```json\n{"tool_calls":[{"name":"pi__echo","arguments":{"text":"j1"}},{"name":"pi__echo","arguments":{"text":"j2"}}]}\n```' };
  const last = body.messages.at(-1).content as string;
  return { content: last.includes('{"echo":"j2"}') ? 'Echoed j1 and j2.' : 'results missing' };
};

describe('json tool mode', () => {
  it('describes the tools in a system message, runs the calls found in the text and returns results as a user message', async () => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const opts = await h.setup(jsonScript, { rejectTools: true }, { toolMode: 'json', systemPrompt: 'Be brief.', tools: recordingSource(h.caller, infos) });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('Echoed j1 and j2.');
    expect(r.toolMode).toBe('json');
    expect(h.runs.sort()).toEqual(['echo:j1', 'echo:j2']);
    const [first, second] = h.llm.requests.map((q) => q.body);
    expect(first.tools).toBeUndefined();
    expect(first.messages.map((m: any) => m.role)).toEqual(['system', 'system', 'user']);
    expect(first.messages[1].content).toContain('{"tool_calls":[{"name":"<tool name>"');
    expect(first.messages[1].content).toContain('"name":"pi__echo","description":"Echoes text.');
    expect(second.messages.map((m: any) => m.role)).toEqual(['system', 'system', 'user', 'assistant', 'user']);
    expect(second.messages[4].content).toMatch(/^Tool results[\s\S]*\[call_1_0\] pi__echo:\n\{"echo":"j1"\}[\s\S]*\[call_1_1\] pi__echo:\n\{"echo":"j2"\}/);
    expect(r.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'user', 'assistant']);
    expect(r.toolCalls.map((c) => [c.id, c.ok])).toEqual([['call_1_0', true], ['call_1_1', true]]);
    expect(infos.map((i) => i?.id).sort()).toEqual(['call_1_0', 'call_1_1']);
  });

  it.each([
    ['ollama', /does not support tools/],
    ['vllm', /"auto" tool choice requires/],
    ['litellm', /UnsupportedParamsError/],
  ] as const)('auto: switches to json when %s refuses tools', async (provider, reason) => {
    const events: LoopEvent[] = [];
    const opts = await h.setup(jsonScript, { provider, rejectTools: true }, { onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('Echoed j1 and j2.');
    expect(r.toolMode).toBe('json');
    expect(r.fallbacks).toEqual([{ from: 'native', to: 'json', reason: expect.stringMatching(reason) }]);
    expect(events.map((e) => e.type)).toEqual(['turn-start', 'fallback', 'tool-call-start', 'tool-call-start', 'tool-call-end', 'tool-call-end', 'turn-start']);
    expect(h.llm.requests.map((q) => q.body.tools !== undefined)).toEqual([true, false, false]);
  });

  it('auto on llama.cpp without --jinja, streaming: falls back twice and streams in json mode', async () => {
    const opts = await h.setup(jsonScript, { provider: 'llamacpp', rejectTools: true, rejectStreamWithTools: true }, { stream: true });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('Echoed j1 and j2.');
    expect(r.fallbacks.map((f) => `${f.from}>${f.to}: ${f.reason}`)).toEqual(['stream>non-stream: Cannot use tools with stream', 'native>json: tools param requires --jinja flag']);
    expect(h.llm.requests.map((q) => [q.body.stream === true, q.body.tools !== undefined])).toEqual([[true, true], [false, true], [true, false], [true, false]]);
  });

  it('reads vLLM < 0.10.1 flat errors through fetchWithNestedErrors; without it the message is lost', async () => {
    const opts = await h.setup(jsonScript, { provider: 'vllm', rejectTools: true, flatErrors: true });
    const lost = await runToolLoop(opts).catch((e) => e);
    expect(lost).toMatchObject({ code: 'LLM_ERROR', status: 400 });
    expect(lost.message).toContain('status code (no body)');
    const client = new OpenAI({ baseURL: h.llm.url, apiKey: 'k', maxRetries: 0, fetch: fetchWithNestedErrors() });
    const r = await runToolLoop({ ...opts, client });
    expect(r.fallbacks).toEqual([{ from: 'native', to: 'json', reason: expect.stringContaining('--enable-auto-tool-choice') }]);
    expect(r.answer).toBe('Echoed j1 and j2.');
  });

  it('native: a refusal of tools is an LLM_ERROR, not a fallback', async () => {
    const opts = await h.setup(jsonScript, { provider: 'ollama', rejectTools: true }, { toolMode: 'native' });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err).toMatchObject({ code: 'LLM_ERROR', status: 400 });
    expect(err.message).toMatch(/does not support tools/);
    expect(err.partial.fallbacks).toEqual([]);
  });

  it('answers unknown tools and bad arguments in json mode so the model can retry', async () => {
    const opts = await h.setup([
      { content: '{"name": "pi__nope", "arguments": {}}' },
      { content: 'Retrying: {"tool": "pi__echo", "args": {"text": 5}}' },
      { content: '{"tool_calls":[{"name":"pi__echo","arguments":{"text":"ok"}}]}' },
      { content: 'done' },
    ], {}, { toolMode: 'json' });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => c.code ?? 'ok')).toEqual(['TOOL_NOT_FOUND', 'INVALID_ARGUMENTS', 'ok']);
    expect(h.llm.requests[1].body.messages.at(-1).content).toContain('TOOL_NOT_FOUND: no tool named "pi__nope" is offered; use one of the tools listed in the system message');
    expect(h.llm.requests[2].body.messages.at(-1).content).toMatch(/INVALID_ARGUMENTS: [\s\S]*details: \[\{"path":\["text"\]/);
    expect(h.runs).toEqual(['echo:ok']);
  });
});
