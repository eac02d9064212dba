/**
 * Bounded work in one model turn: at most `maxParallelToolCalls` tool calls run at once, the rest
 * wait in call order, calls beyond `maxToolCallsPerTurn` come back to the model as `BUSY`, and a
 * cancelled or timed-out run starts no waiting call. Real pieces: the scripted LLM on the OpenAI
 * wire format (it refuses a transcript with a tool_call_id left unanswered), an in-process broker,
 * an agent (RpcServer) with a slow tool that counts how many of its calls overlap.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import { runToolLoop, ToolLoopError, type LoopEvent, type ToolLoopOptions } from './tool-loop';

/** The slow tool's bookkeeping: calls running now, the most that ever ran at once, the order they started in. */
const load = { active: 0, max: 0, started: [] as number[], holdMs: 80 };
const tools = [
  defineTool({
    name: 'slow', description: 'Takes a while.', risk: 'low', input: z.object({ n: z.number().int() }),
    execute: async (a) => {
      load.started.push(a.n);
      load.active++;
      load.max = Math.max(load.max, load.active);
      await new Promise((r) => setTimeout(r, load.holdMs));
      load.active--;
      return { n: a.n };
    },
  }),
];

let broker: EmbeddedBroker;
let server: RpcServer;
let caller: RpcCaller;
let llm: FakeLlm | undefined;

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools });
  await server.start();
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'parallel-test' });
  await caller.start();
  await new Promise<void>((r) => { const chk = () => caller.listTools().length === 1 ? r() : setTimeout(chk, 10); chk(); });
});
afterAll(async () => {
  await caller.stop();
  await server.stop();
  await broker.close();
});
afterEach(async () => {
  await llm?.close();
  llm = undefined;
  Object.assign(load, { active: 0, max: 0, started: [], holdMs: 80 });
});

/** A turn naming `count` calls of pi__slow, ids `c0` ... */
const slowCalls = (count: number) => ({ toolCalls: Array.from({ length: count }, (_, n) => ({ id: `c${n}`, name: 'pi__slow', arguments: { n } })) });
const ids = (count: number) => Array.from({ length: count }, (_, n) => `c${n}`);

async function setup(script: FakeScript, extra: Partial<ToolLoopOptions> = {}): Promise<ToolLoopOptions> {
  llm = await startFakeLlm(script);
  const client = new OpenAI({ baseURL: llm.url, apiKey: 'sk-test', maxRetries: 0 });
  return { client, model: 'fake-model', messages: [{ role: 'user', content: 'go' }], tools: caller, ...extra };
}

const toolMessages = (i: number) => llm!.requests[i].body.messages.filter((m: any) => m.role === 'tool');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('runToolLoop: parallel tool calls', () => {
  it('runs at most maxParallelToolCalls at once, in call order, and answers every id in the next request', async () => {
    const opts = await setup([slowCalls(10), { content: 'all done' }], { maxParallelToolCalls: 3 });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('all done');
    expect(load.max).toBe(3);
    expect(load.started).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    // the fake LLM would have answered 400 for any tool_call_id left without a result
    expect(llm!.requests).toHaveLength(2);
    const results = toolMessages(1);
    expect(results.map((m: any) => m.tool_call_id)).toEqual(ids(10));
    expect(results.map((m: any) => JSON.parse(m.content).n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    expect(r.toolCalls.every((c) => c.ok)).toBe(true);
  });

  it('defaults to 4 at once', async () => {
    const opts = await setup([slowCalls(10), { content: 'ok' }]);
    await runToolLoop(opts);
    expect(load.max).toBe(4);
    expect(toolMessages(1)).toHaveLength(10);
  });

  it('answers calls beyond 4 × the limit with BUSY, which the model reads, and runs the rest', async () => {
    const events: LoopEvent[] = [];
    const opts = await setup([slowCalls(10), { content: 'did eight' }], { maxParallelToolCalls: 2, onEvent: (e) => events.push(e) });
    const r = await runToolLoop(opts);
    expect(load.started).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(load.max).toBe(2);
    const results = toolMessages(1);
    expect(results.map((m: any) => m.tool_call_id)).toEqual(ids(10));
    const refusal = 'BUSY: too many tool calls in one turn: 10 named, at most 8 run; call the rest in a later turn';
    expect(results.slice(8).map((m: any) => m.content)).toEqual([refusal, refusal]);
    expect(results.slice(0, 8).every((m: any) => !m.content.startsWith('BUSY'))).toBe(true);
    expect(r.toolCalls.map((c) => c.code ?? 'ok')).toEqual([...Array(8).fill('ok'), 'BUSY', 'BUSY']);
    expect(r.toolCalls[9]).toMatchObject({ id: 'c9', agent: 'pi', tool: 'slow', arguments: { n: 9 }, durationMs: 0 });
    expect(events.filter((e) => e.type === 'tool-call-end')).toHaveLength(10);
  });

  it('takes maxToolCallsPerTurn as the hard limit, also in json mode', async () => {
    const json = (n: number) => JSON.stringify({ tool_calls: Array.from({ length: n }, (_, i) => ({ name: 'pi__slow', arguments: { n: i } })) });
    const opts = await setup([{ content: json(5) }, { content: 'three ran' }], { maxParallelToolCalls: 2, maxToolCallsPerTurn: 3, toolMode: 'json' });
    const r = await runToolLoop(opts);
    expect(r.answer).toBe('three ran');
    expect(load.started).toEqual([0, 1, 2]);
    const sent = JSON.stringify(llm!.requests[1].body.messages);
    expect(sent).toContain('too many tool calls in one turn: 5 named, at most 3 run; call the rest in a later turn');
    expect(r.toolCalls.map((c) => c.code ?? 'ok')).toEqual(['ok', 'ok', 'ok', 'BUSY', 'BUSY']);
  });

  it('starts no waiting call once the run is cancelled', async () => {
    load.holdMs = 300;
    const ac = new AbortController();
    let starts = 0;
    const opts = await setup([slowCalls(10), { content: 'never' }], {
      maxParallelToolCalls: 2, maxToolCallsPerTurn: 10, signal: ac.signal,
      onEvent: (e) => { if (e.type === 'tool-call-start' && ++starts === 2) ac.abort(); },
    });
    const err = await runToolLoop(opts).catch((e) => e);
    expect(err).toBeInstanceOf(ToolLoopError);
    expect((err as ToolLoopError).code).toBe('ABORTED');
    // the two running calls end (cancelled or not); none of the eight waiting ones may start
    await sleep(700);
    expect(starts).toBe(2);
    expect(load.started.length).toBeLessThanOrEqual(2);
    expect(llm!.requests).toHaveLength(1);
  });

  it('starts no waiting call once the run timeout has struck', async () => {
    load.holdMs = 400;
    let starts = 0;
    const opts = await setup([slowCalls(10), { content: 'never' }], {
      maxParallelToolCalls: 1, maxToolCallsPerTurn: 10, runTimeoutMs: 1_000, onEvent: (e) => { if (e.type === 'tool-call-start') starts++; },
    });
    const err = await runToolLoop(opts).catch((e) => e);
    expect((err as ToolLoopError).code).toBe('RUN_TIMEOUT');
    const atFailure = starts;
    expect(atFailure).toBeGreaterThanOrEqual(1);
    expect(atFailure).toBeLessThan(10);
    await sleep(900);
    expect(starts).toBe(atFailure);
    expect(load.started).toEqual(Array.from({ length: atFailure }, (_, n) => n));
  });

  it('refuses a limit that is not a whole number of at least 1, naming the option', async () => {
    const opts = await setup([{ content: 'never' }]);
    await expect(runToolLoop({ ...opts, maxParallelToolCalls: 0 })).rejects.toThrow('maxParallelToolCalls must be a whole number of at least 1, got 0');
    await expect(runToolLoop({ ...opts, maxToolCallsPerTurn: 2.5 })).rejects.toThrow('maxToolCallsPerTurn must be a whole number of at least 1, got 2.5');
    expect(llm!.requests).toHaveLength(0);
  });
});
