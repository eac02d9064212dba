import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { PHOTO_BASE64, recordingSource, startLoopHarness, type LoopHarness } from '../../test/support/loop-harness';
import { toMemory } from './memory';
import { runToolLoop, ToolLoopError, type LoopEvent, type ToolCallInfo } from './tool-loop';

let h: LoopHarness;
beforeAll(async () => { h = await startLoopHarness('loop-features-test'); });
afterAll(async () => { await h.close(); });
afterEach(async () => { await h.reset(); });

const toolMessages = (body: any) => body.messages.filter((m: any) => m.role === 'tool');
const until = async (cond: () => boolean) => { while (!cond()) await new Promise((r) => setTimeout(r, 5)); };

describe('tool calls', () => {
  it('passes each call its id, name and risk, and records start and end times', async () => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const events: LoopEvent[] = [];
    const before = Date.now();
    const opts = await h.setup([{ toolCalls: [{ id: 'p1', name: 'pi__take_photo', arguments: {} }] }, { content: 'ok' }], {},
      { tools: recordingSource(h.caller, infos), onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(infos).toEqual([{ id: 'p1', name: 'pi__take_photo', risk: 'low' }]);
    const [call] = r.toolCalls;
    expect(call.startedAt).toBeGreaterThanOrEqual(before);
    expect(call.endedAt).toBeGreaterThanOrEqual(call.startedAt);
    expect(call.endedAt).toBeLessThanOrEqual(Date.now());
    expect(events.find((e) => e.type === 'tool-call-start')).toEqual({ type: 'tool-call-start', id: 'p1', name: 'pi__take_photo', agent: 'pi', tool: 'take_photo', arguments: {}, startedAt: call.startedAt });
    // what a chat card shows: the text and the image, as a page may show them
    expect(events.find((e) => e.type === 'tool-call-end')).toEqual({ type: 'tool-call-end', call, result: { text: 'photo taken', images: [{ mimeType: 'image/jpeg', data: PHOTO_BASE64 }], imagesOmitted: 0 } });
  });

  it('runs the calls of one turn in parallel (their recorded times overlap) and returns results in call order', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'a', name: 'pi__slow_a', arguments: {} }, { id: 'b', name: 'pi__slow_b', arguments: {} }] },
      { content: 'both done' },
    ]);
    const r = await runToolLoop(opts);
    const [a, b] = r.toolCalls;
    expect(a.startedAt).toBeLessThan(b.endedAt);
    expect(b.startedAt).toBeLessThan(a.endedAt);
    expect(toolMessages(h.llm.requests[1].body).map((m: any) => [m.tool_call_id, m.content])).toEqual([['a', 'A done'], ['b', 'B done']]);
  });

  it('returns denials and approvals required as tool results so the model can explain or retry', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'd', name: 'pi__reboot', arguments: {} }, { id: 'w', name: 'pi__wipe', arguments: {} }] },
      { content: 'The reboot was denied; wiping needs approval.' },
    ]);
    const r = await runToolLoop(opts);
    expect(toolMessages(h.llm.requests[1].body).map((m: any) => m.content)).toEqual(['DENIED: the operator denied this call', 'APPROVAL_REQUIRED: this call needs an approval token']);
    expect(r.toolCalls.map((c) => c.code)).toEqual(['DENIED', 'APPROVAL_REQUIRED']);
  });
});

describe('streaming', () => {
  it('emits the answer as text deltas and assembles it', async () => {
    const events: LoopEvent[] = [];
    const opts = await h.setup([{ content: 'Streaming works well here.', usage: { prompt_tokens: 7, completion_tokens: 5 } }], {}, { stream: true, onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    const deltas = events.flatMap((e) => (e.type === 'text-delta' ? [e.text] : []));
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.join('')).toBe('Streaming works well here.');
    expect(r.answer).toBe('Streaming works well here.');
    expect(r.usage).toEqual({ prompt_tokens: 7, completion_tokens: 5, total_tokens: 12 });
    expect(h.llm.requests[0].body.stream_options).toEqual({ include_usage: true });
  });
});

describe('run limits', () => {
  it.each([false, true])('stops with RUN_TIMEOUT while the LLM is pending (stream=%s) and aborts the request', async (stream) => {
    const opts = await h.setup([{ content: 'too late', delayMs: 5_000 }], {}, { runTimeoutMs: 150, stream });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err).toBeInstanceOf(ToolLoopError);
    expect(err.code).toBe('RUN_TIMEOUT');
    expect(err.message).toMatch(/^RUN_TIMEOUT: the run took longer than its 150 ms budget .* while waiting for the LLM/);
    await until(() => h.llm.requests[0].aborted);
  });

  it('stops with RUN_TIMEOUT while tools run, cancels them, and keeps the transcript resendable', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'e', name: 'pi__echo', arguments: { text: 'first' } }] },
      { toolCalls: [{ id: 's', name: 'pi__sleep', arguments: { ms: 10_000 } }] },
      { content: 'never' },
    ], {}, { runTimeoutMs: 1_500 });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err.code).toBe('RUN_TIMEOUT');
    expect(err.message).toContain('while tools were running');
    expect(err.partial.messages.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'e' });
    expect(err.partial.toolCalls.map((c: any) => c.id)).toEqual(['e']);
    await until(() => h.runs.includes('sleep:cancelled'));
  });

  it('an outside abort is still ABORTED', async () => {
    const ac = new AbortController();
    const opts = await h.setup([{ content: 'late', delayMs: 5_000 }], {}, { runTimeoutMs: 10_000, signal: ac.signal });
    const p = runToolLoop(opts).catch((e) => e);
    await until(() => h.llm.requests.length > 0);
    ac.abort();
    expect((await p).code).toBe('ABORTED');
  });

  it('stops with TOKEN_BUDGET when the summed total_tokens exceed the budget, even on a final answer', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'e', name: 'pi__echo', arguments: { text: 'x' } }], usage: { prompt_tokens: 80, completion_tokens: 20 } },
      { content: 'final', usage: { prompt_tokens: 90, completion_tokens: 10 } },
    ], {}, { maxTotalTokens: 150 });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err.code).toBe('TOKEN_BUDGET');
    expect(err.message).toMatch(/^TOKEN_BUDGET: the run used 200 tokens, over its budget of 150/);
    expect(err.partial.usage.total_tokens).toBe(200);
    expect(err.partial.messages.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'e' });
  });

  it('does not run the calls of the response that broke the budget', async () => {
    const opts = await h.setup([{ toolCalls: [{ name: 'pi__echo', arguments: { text: 'x' } }], usage: { prompt_tokens: 400, completion_tokens: 100 } }], {}, { maxTotalTokens: 100 });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err.code).toBe('TOKEN_BUDGET');
    expect(h.runs).toEqual([]);
  });
});

describe('vision', () => {
  const photoAndEcho = [
    { toolCalls: [{ id: 'p', name: 'pi__take_photo', arguments: {} }, { id: 'e', name: 'pi__echo', arguments: { text: 'hi' } }] },
    { content: 'I see it.' },
  ];

  it('on: sends the image in one user message right after all tool messages of the turn', async () => {
    const opts = await h.setup(photoAndEcho, {}, { vision: true });
    const r = await runToolLoop(opts);
    const msgs = h.llm.requests[1].body.messages;
    expect(msgs.map((m: any) => m.role)).toEqual(['user', 'assistant', 'tool', 'tool', 'user']);
    expect(msgs[2].content).toBe('photo taken\n(1 image attached below)');
    const parts = msgs[4].content;
    expect(parts[0]).toEqual({ type: 'text', text: 'Images from tool results: 1 image from pi/take_photo.' });
    expect(parts.at(-1)).toEqual({ type: 'image_url', image_url: { url: `data:image/jpeg;base64,${PHOTO_BASE64}` } });
    expect(parts.filter((p: any) => p.type === 'image_url')).toHaveLength(1);
    const stored = toMemory(r.messages);
    expect(JSON.stringify(stored)).not.toContain(PHOTO_BASE64);
    expect((stored[4].content as any[]).at(-1)).toEqual({ type: 'text', text: '[image image/jpeg 3 KB from tool pi/take_photo — not kept in memory]' });
  });

  it('off: the tool message says the image was omitted, and no image is sent', async () => {
    const opts = await h.setup(photoAndEcho);
    await runToolLoop(opts);
    const body = h.llm.requests[1].body;
    expect(toolMessages(body)[0].content).toBe('photo taken\n[image image/jpeg 3 KB omitted: this model does not accept images]');
    expect(JSON.stringify(body)).not.toContain('image_url');
  });

  it('json mode: images travel in the results message', async () => {
    const opts = await h.setup([{ content: '{"tool_calls":[{"name":"pi__take_photo","arguments":{}}]}' }, { content: 'seen' }], {}, { vision: true, toolMode: 'json' });
    await runToolLoop(opts);
    const last = h.llm.requests[1].body.messages.at(-1);
    expect(last.role).toBe('user');
    expect(last.content[0].text).toMatch(/^Tool results[\s\S]*\[call_1_0\] pi__take_photo:\nphoto taken\n\(1 image attached below\)/);
    expect(last.content.at(-1).image_url.url).toBe(`data:image/jpeg;base64,${PHOTO_BASE64}`);
  });

  it('passes input messages with image parts through as they are', async () => {
    const input = [{ role: 'user' as const, content: [{ type: 'text' as const, text: 'What is this?' }, { type: 'image_url' as const, image_url: { url: 'data:image/png;base64,iVBORw0KGgo=', detail: 'low' as const } }] }];
    const opts = await h.setup([{ content: 'A picture.' }], {}, { messages: input });
    await runToolLoop(opts);
    expect(h.llm.requests[0].body.messages).toEqual(input);
  });
});

describe('call_tool: a call through the meta-tool is the real call', () => {
  // pi offers 7 tools: a budget of 4 offers 2 of them plus find_tools and call_tool
  const budget = { maxTools: 4, maxTokens: 10_000 };
  const via = (name: string, args: unknown) => ({ name: 'call_tool', arguments: { name, arguments: args } });

  it('runs the named tool with its own name, risk, arguments, events and summary; the block stays the same', async () => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const events: LoopEvent[] = [];
    const opts = await h.setup([
      { toolCalls: [{ id: 'c1', ...via('pi__slow_b', {}) }] },
      { toolCalls: [{ id: 'c2', ...via('pi__echo', { text: 'hi' }) }] },
      { content: 'ok' },
    ], {}, { tools: recordingSource(h.caller, infos), toolBudget: budget, onEvent: (e) => events.push(e), messages: [{ role: 'user', content: 'echo hi' }] });
    const r = await runToolLoop(opts);
    expect(infos).toEqual([{ id: 'c1', name: 'pi__slow_b', risk: 'medium' }, { id: 'c2', name: 'pi__echo', risk: 'low' }]);
    expect(h.runs).toEqual(['echo:hi']);
    expect(r.toolCalls.map((c) => [c.name, c.via, c.agent, c.tool, c.arguments, c.ok])).toEqual([
      ['pi__slow_b', 'call_tool', 'pi', 'slow_b', {}, true], ['pi__echo', 'call_tool', 'pi', 'echo', { text: 'hi' }, true],
    ]);
    expect(events.filter((e) => e.type === 'tool-call-start').map((e: any) => [e.name, e.via, e.agent, e.tool])).toEqual([
      ['pi__slow_b', 'call_tool', 'pi', 'slow_b'], ['pi__echo', 'call_tool', 'pi', 'echo'],
    ]);
    // the transcript keeps the model's own call_tool call, answered by the tool's result
    expect(h.llm.requests[2].body.messages.at(-2).tool_calls[0].function).toEqual({ name: 'call_tool', arguments: JSON.stringify({ name: 'pi__echo', arguments: { text: 'hi' } }) });
    expect(toolMessages(h.llm.requests[2].body).map((m: any) => m.content)).toEqual(['B done', '{"echo":"hi"}']);
    expect(new Set(h.llm.requests.map((q) => JSON.stringify(q.body.tools))).size).toBe(1);
    expect(h.llm.requests[0].body.tools.map((t: any) => t.function.name).slice(-2)).toEqual(['find_tools', 'call_tool']);
  });

  it('validates the arguments against the real tool\'s schema (at the agent), and accepts them as a JSON text', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'bad', ...via('pi__echo', { text: 5 }) }, { id: 'text', ...via('pi__echo', '{"text":"as text"}') }] },
      { content: 'ok' },
    ], {}, { toolBudget: budget });
    const r = await runToolLoop(opts);
    expect(r.toolCalls.map((c) => [c.name, c.code])).toEqual([['pi__echo', 'INVALID_ARGUMENTS'], ['pi__echo', undefined]]);
    expect(toolMessages(h.llm.requests[1].body)[0].content).toMatch(/^INVALID_ARGUMENTS: invalid arguments for echo: text: /);
    expect(h.runs).toEqual(['echo:as text']);
  });

  it('a name that is not in the catalog, a meta-tool or a missing name is a tool error the model reads; nothing runs', async () => {
    const infos: (ToolCallInfo | undefined)[] = [];
    const opts = await h.setup([
      { toolCalls: [
        { id: 'n1', ...via('pi__format_disk', {}) }, { id: 'n2', ...via('call_tool', { name: 'pi__echo', arguments: { text: 'x' } }) },
        { id: 'n3', name: 'call_tool', arguments: { arguments: { text: 'x' } } }, { id: 'n4', ...via('pi__echo', [1]) },
      ] },
      { content: 'ok' },
    ], {}, { tools: recordingSource(h.caller, infos), toolBudget: budget });
    const r = await runToolLoop(opts);
    expect(infos).toEqual([]);
    expect(h.runs).toEqual([]);
    expect(r.toolCalls.map((c) => [c.name, c.code, c.ok])).toEqual([
      ['pi__format_disk', 'TOOL_NOT_FOUND', false], ['call_tool', 'TOOL_NOT_FOUND', false], ['call_tool', 'INVALID_ARGUMENTS', false], ['pi__echo', 'INVALID_ARGUMENTS', false],
    ]);
    const texts = toolMessages(h.llm.requests[1].body).map((m: any) => m.content);
    expect(texts[0]).toMatch(/^TOOL_NOT_FOUND: call_tool: no tool named "pi__format_disk" in the catalog; find it with find_tools/);
    expect(texts[2]).toMatch(/^INVALID_ARGUMENTS: call_tool needs \{"name"/);
    expect(texts[3]).toMatch(/^INVALID_ARGUMENTS: "arguments" of call_tool must be a JSON object, got an array/);
  });

  it('counts in the per-turn cap: calls beyond it are BUSY under the real tool\'s name', async () => {
    const opts = await h.setup([
      { toolCalls: [{ id: 'a', ...via('pi__echo', { text: 'one' }) }, { id: 'b', name: 'pi__echo', arguments: { text: 'two' } }, { id: 'c', ...via('pi__echo', { text: 'three' }) }] },
      { content: 'ok' },
    ], {}, { toolBudget: budget, maxParallelToolCalls: 1, maxToolCallsPerTurn: 2 });
    const r = await runToolLoop(opts);
    expect(h.runs).toEqual(['echo:one', 'echo:two']);
    expect(r.toolCalls.map((c) => [c.name, c.via, c.code])).toEqual([['pi__echo', 'call_tool', undefined], ['pi__echo', undefined, undefined], ['pi__echo', 'call_tool', 'BUSY']]);
  });
});
