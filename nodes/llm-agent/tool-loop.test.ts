import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, type Tool } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import { runToolLoop, ToolLoopError, type LoopEvent, type ToolLoopOptions } from './tool-loop';
import { buildToolNames, FUNCTION_NAME_PATTERN, functionNameOf } from './tool-names';

const LONG_AGENT = 'living-room-raspberry-pi-4';
const LONG_TOOL = 'docker_list_containers_including_stopped_ones_with_their_sizes';
const runs: string[] = [];
const spans: Record<string, { start: number; end: number }> = {};

/**
 * Records start and end (performance.now) under `key`; ends when `waitFor` has started (polled,
 * at most 2 s), so a sequential run shows no overlap however loaded the machine is.
 */
async function span(key: string, waitFor?: string): Promise<void> {
  spans[key] = { start: performance.now(), end: Infinity };
  const deadline = Date.now() + 2_000;
  do await new Promise((r) => setTimeout(r, 5));
  while (waitFor && !spans[waitFor] && Date.now() < deadline);
  spans[key].end = performance.now();
}

const piTools = [
  defineTool({ name: 'echo', description: 'Echoes text.', risk: 'low', input: z.object({ text: z.string() }).strict(), execute: (a) => { runs.push(`echo:${a.text}`); return { echo: a.text }; } }),
  defineTool({ name: 'slow_a', description: 'Takes a while.', risk: 'medium', input: z.object({}), execute: async () => { await span('a', 'b'); return 'A done'; } }),
  defineTool({ name: 'slow_b', description: 'Takes a while too.', risk: 'medium', input: z.object({}), execute: async () => { await span('b'); return 'B done'; } }),
  defineTool({ name: 'camera.take.photo', description: 'Dotted name.', risk: 'medium', input: z.object({}), execute: () => { runs.push('photo'); return { taken: true }; } }),
];
const longTools = [
  defineTool({ name: LONG_TOOL, description: 'Long name.', risk: 'low', input: z.object({}), execute: () => { runs.push('long'); return { containers: [] }; } }),
];

let broker: EmbeddedBroker;
let servers: RpcServer[];
let caller: RpcCaller;
let llm: FakeLlm | undefined;

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  servers = [
    new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools: piTools }),
    new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: LONG_AGENT, tools: longTools }),
  ];
  await Promise.all(servers.map((s) => s.start()));
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'loop-test' });
  await caller.start();
  await new Promise<void>((r) => { const chk = () => caller.listTools().length === 5 ? r() : setTimeout(chk, 10); chk(); });
});
afterAll(async () => {
  await caller.stop();
  await Promise.all(servers.map((s) => s.stop()));
  await broker.close();
});
afterEach(async () => {
  await llm?.close();
  llm = undefined;
  runs.length = 0;
});

/** Starts the fake LLM with `script` and returns loop options using the real RPC caller as the tool source. */
async function setup(script: FakeScript, extra: Partial<ToolLoopOptions> = {}): Promise<ToolLoopOptions> {
  llm = await startFakeLlm(script);
  const client = new OpenAI({ baseURL: llm.url, apiKey: 'sk-test', maxRetries: 0 });
  return { client, model: 'fake-model', messages: [{ role: 'user', content: 'go' }], tools: caller, ...extra };
}

const toolMessages = (body: any) => body.messages.filter((m: any) => m.role === 'tool');

describe('runToolLoop', () => {
  it('runs the requested tool and sends its result back before the final answer', async () => {
    const events: LoopEvent[] = [];
    const opts = await setup([
      { toolCalls: [{ id: 't1', name: 'pi__echo', arguments: { text: 'hello' } }], usage: { prompt_tokens: 10, completion_tokens: 4 } },
      { content: 'It said hello.', usage: { prompt_tokens: 20, completion_tokens: 6 } },
    ], { systemPrompt: 'Be brief.', onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('It said hello.');
    expect(runs).toEqual(['echo:hello']);
    const [first, second] = llm!.requests.map((q) => q.body);
    expect(first.messages[0]).toEqual({ role: 'system', content: 'Be brief.' });
    const echo = first.tools.find((t: any) => t.function.name === 'pi__echo');
    expect(echo.function.description).toBe('Echoes text.');
    expect(echo.function.parameters).toMatchObject({ type: 'object', properties: { text: { type: 'string' } } });
    expect(toolMessages(second)).toEqual([{ role: 'tool', tool_call_id: 't1', content: '{"echo":"hello"}' }]);
    expect(r.messages.map((m) => m.role)).toEqual(['system', 'user', 'assistant', 'tool', 'assistant']);
    expect(r.toolCalls).toEqual([{ id: 't1', name: 'pi__echo', agent: 'pi', tool: 'echo', arguments: { text: 'hello' }, startedAt: expect.any(Number), endedAt: expect.any(Number), durationMs: expect.any(Number), ok: true }]);
    expect(r.usage).toEqual({ prompt_tokens: 30, completion_tokens: 10, total_tokens: 40 });
    expect(r.iterations).toBe(2);
    expect(events.map((e) => e.type)).toEqual(['turn-start', 'tool-call-start', 'tool-call-end', 'turn-start']);
  });

  it('runs the calls of one turn concurrently and appends results in call order', async () => {
    const opts = await setup([
      { toolCalls: [{ id: 'a', name: 'pi__slow_a', arguments: {} }, { id: 'b', name: 'pi__slow_b', arguments: {} }] },
      { content: 'both done' },
    ]);
    const r = await runToolLoop(opts);
    // overlap: each started before the other ended
    expect(spans.b.start).toBeLessThan(spans.a.end);
    expect(spans.a.start).toBeLessThan(spans.b.end);
    expect(toolMessages(llm!.requests[1].body)).toEqual([
      { role: 'tool', tool_call_id: 'a', content: 'A done' },
      { role: 'tool', tool_call_id: 'b', content: 'B done' },
    ]);
    expect(r.toolCalls.map((c) => [c.id, c.ok])).toEqual([['a', true], ['b', true]]);
  });

  it('refuses arguments nested 20,000 deep as INVALID_ARGUMENTS naming the limit, before anything walks them', async () => {
    const deep = `{"text":${'['.repeat(20_000)}${']'.repeat(20_000)}}`;
    const opts = await setup([
      { toolCalls: [{ id: 'deep', name: 'pi__echo', arguments: deep }] },
      { content: 'gave up' },
    ]);
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('gave up');
    expect(runs).toEqual([]);
    expect(toolMessages(llm!.requests[1].body)[0].content).toMatch(/^INVALID_ARGUMENTS: arguments refused: JSON nested deeper than 64 levels/);
  });

  it('answers invalid JSON arguments with an INVALID_ARGUMENTS tool result and lets the model retry', async () => {
    const opts = await setup([
      { toolCalls: [{ id: 'bad', name: 'pi__echo', arguments: '{"text": "unterminated' }] },
      { toolCalls: [{ id: 'good', name: 'pi__echo', arguments: { text: 'fixed' } }] },
      { content: 'fixed it' },
    ]);
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('fixed it');
    expect(runs).toEqual(['echo:fixed']);
    expect(toolMessages(llm!.requests[1].body)[0].content).toMatch(/^INVALID_ARGUMENTS: arguments are not valid JSON/);
    expect(r.toolCalls).toMatchObject([
      { id: 'bad', ok: false, code: 'INVALID_ARGUMENTS', arguments: '{"text": "unterminated', durationMs: 0 },
      { id: 'good', ok: true, arguments: { text: 'fixed' } },
    ]);
  });

  it('passes the agent\'s schema errors back with their details', async () => {
    const opts = await setup([{ toolCalls: [{ id: 'n', name: 'pi__echo', arguments: { text: 5 } }] }, { content: 'ok' }]);
    const r = await runToolLoop(opts);
    const content = toolMessages(llm!.requests[1].body)[0].content;
    expect(content).toMatch(/^INVALID_ARGUMENTS: /);
    expect(content).toContain('"path":["text"]');
    expect(r.toolCalls[0]).toMatchObject({ ok: false, code: 'INVALID_ARGUMENTS', agent: 'pi', tool: 'echo' });
    expect(runs).toEqual([]);
  });

  it('answers an unknown function name with TOOL_NOT_FOUND', async () => {
    const opts = await setup([{ toolCalls: [{ id: 'x', name: 'pi__format_disk', arguments: {} }] }, { content: 'cannot' }]);
    const r = await runToolLoop(opts);
    expect(toolMessages(llm!.requests[1].body)[0].content).toMatch(/^TOOL_NOT_FOUND: no tool named "pi__format_disk"/);
    expect(r.toolCalls[0]).toEqual({ id: 'x', name: 'pi__format_disk', agent: undefined, tool: undefined, arguments: {}, startedAt: expect.any(Number), endedAt: r.toolCalls[0].startedAt, durationMs: 0, ok: false, code: 'TOOL_NOT_FOUND' });
  });

  it('rejects with MAX_ITERATIONS when the model keeps asking for tools, without running the last calls', async () => {
    const opts = await setup((_b, i) => ({ toolCalls: [{ id: `c${i}`, name: 'pi__echo', arguments: { text: `${i}` } }] }), { maxIterations: 3 });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err).toBeInstanceOf(ToolLoopError);
    expect(err.code).toBe('MAX_ITERATIONS');
    expect(err.message).toMatch(/^MAX_ITERATIONS: no final answer after 3 LLM requests/);
    expect(llm!.requests).toHaveLength(3);
    expect(runs).toEqual(['echo:0', 'echo:1']);
    expect(err.partial.messages.at(-1)).toMatchObject({ role: 'tool', tool_call_id: 'c1' });
    expect(err.partial.toolCalls).toHaveLength(2);
  });

  it('maps long and dotted names to valid function names and back to the exact tool', async () => {
    const opts = await setup((body, i) => {
      if (i > 0) return { content: 'done' };
      const names: string[] = body.tools.map((t: any) => t.function.name);
      const long = names.find((n) => n.startsWith('living-room'))!;
      const dotted = names.find((n) => n.startsWith('pi__camera'))!;
      return { toolCalls: [{ name: long, arguments: {} }, { name: dotted, arguments: {} }] };
    });
    const r = await runToolLoop(opts);
    for (const t of llm!.requests[0].body.tools) expect(t.function.name).toMatch(FUNCTION_NAME_PATTERN);
    expect(r.toolCalls.map((c) => [c.agent, c.tool, c.ok])).toEqual([[LONG_AGENT, LONG_TOOL, true], ['pi', 'camera.take.photo', true]]);
    expect(runs).toEqual(['long', 'photo']);
  });

  it('reports the HTTP status of a failing LLM endpoint and an unreachable one', async () => {
    const opts = await setup([{ error: { status: 503, message: 'model overloaded' } }]);
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err).toMatchObject({ code: 'LLM_ERROR', status: 503 });
    expect(err.message).toBe(`LLM_ERROR: LLM endpoint ${llm!.url} answered HTTP 503: model overloaded`);
    const url = llm!.url;
    await llm!.close();
    const down = await runToolLoop({ ...opts, client: new OpenAI({ baseURL: url, apiKey: 'k', maxRetries: 0 }) }).catch((e) => e);
    expect(down.code).toBe('LLM_ERROR');
    expect(down.message).toMatch(/unreachable.*check the base URL/);
  });

  it('aborts a pending LLM request', async () => {
    const ac = new AbortController();
    const opts = await setup([{ content: 'too late', delayMs: 5_000 }], { signal: ac.signal });
    const p = runToolLoop(opts).catch((e) => e);
    await new Promise<void>((r) => { const chk = () => llm!.requests.length ? r() : setTimeout(chk, 5); chk(); });
    ac.abort();
    expect((await p).code).toBe('ABORTED');
  });
});

describe('buildToolNames', () => {
  const tool = (name: string): Tool => ({ name, description: '', inputSchema: { type: 'object' }, annotations: { risk: 'low' } });

  it('gives every tool a unique valid name that resolves to exactly that tool', () => {
    const offered = [
      { agentId: 'pi', tool: tool('a.b') },
      { agentId: 'pi', tool: tool('a_b') },
      { agentId: 'pi', tool: tool('a_b') },
      { agentId: 'x'.repeat(64), tool: tool(`${'t'.repeat(60)}_one`) },
      { agentId: 'x'.repeat(64), tool: tool(`${'t'.repeat(60)}_two`) },
      { agentId: 'pi', tool: tool(functionNameOf('pi', 'a.b').slice(4)) },
    ];
    const map = buildToolNames(offered);
    const names = map.tools.map((t) => t.function.name);
    expect(names).toHaveLength(5);
    expect(new Set(names).size).toBe(5);
    for (const n of names) expect(n).toMatch(FUNCTION_NAME_PATTERN);
    expect(names[1]).toBe('pi__a_b');
    expect(names[0]).not.toBe(functionNameOf('pi', 'a.b'));
    expect(names[4]).toBe(functionNameOf('pi', 'a.b'));
    map.tools.forEach((t, i) => expect(map.resolve(t.function.name)).toBe(offered[i < 2 ? i : i + 1]));
    expect(map.resolve('pi__nope')).toBeUndefined();
  });

  it('keeps both tools whose plain names are the same (agent a__b, tool c; agent a, tool b__c)', () => {
    const offered = [{ agentId: 'a__b', tool: tool('c') }, { agentId: 'a', tool: tool('b__c') }];
    const map = buildToolNames(offered);
    const names = map.tools.map((t) => t.function.name);
    expect(names[0]).toBe('a__b__c');
    expect(names[1]).toMatch(/^a__b__c_[0-9a-f]{8}$/);
    expect(names.map((n) => map.resolve(n))).toEqual(offered);
  });
});
