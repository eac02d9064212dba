import { describe, expect, it } from 'vitest';
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import { assembleStream } from './stream';

/** Chunks with the given `delta.tool_calls` arrays (as loose as servers send them). */
async function* chunks(...toolCalls: unknown[][]): AsyncIterable<ChatCompletionChunk> {
  for (const tc of toolCalls) yield { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [{ index: 0, delta: { tool_calls: tc } as any, finish_reason: null }] };
}
const calls = async (...toolCalls: unknown[][]) => (await assembleStream(chunks(...toolCalls))).toolCalls.map((c: any) => [c.id, c.function.name, c.function.arguments]);

describe('assembleStream', () => {
  it('joins OpenAI fragments by index', async () => {
    expect(await calls(
      [{ index: 0, id: 'a', type: 'function', function: { name: 'f', arguments: '' } }],
      [{ index: 1, id: 'b', type: 'function', function: { name: 'g', arguments: '{"y"' } }],
      [{ index: 0, function: { arguments: '{"x":' } }],
      [{ index: 0, function: { arguments: '1}' } }],
      [{ index: 1, function: { arguments: ':2}' } }],
    )).toEqual([['a', 'f', '{"x":1}'], ['b', 'g', '{"y":2}']]);
  });

  it('separates calls that all say index 0 (by id, or by a second complete call without ids)', async () => {
    expect(await calls(
      [{ index: 0, id: 'a', function: { name: 'f', arguments: '{}' } }],
      [{ index: 0, id: 'b', function: { name: 'f', arguments: '{"n":2}' } }],
    )).toEqual([['a', 'f', '{}'], ['b', 'f', '{"n":2}']]);
    expect(await calls(
      [{ index: 0, id: 'a', function: { name: 'f', arguments: '' } }],
      [{ index: 0, function: { arguments: '{"n":1}' } }],
      [{ index: 0, id: 'b', function: { name: 'f', arguments: '' } }],
      [{ index: 0, function: { arguments: '{"n":2}' } }],
    )).toEqual([['a', 'f', '{"n":1}'], ['b', 'f', '{"n":2}']]);
    expect(await calls(
      [{ index: 0, function: { name: 'f', arguments: '{}' } }],
      [{ index: 0, function: { name: 'g', arguments: '{}' } }],
      [{ index: 0, function: { name: 'g', arguments: '{"again":true}' } }],
    )).toEqual([['', 'f', '{}'], ['', 'g', '{}'], ['', 'g', '{"again":true}']]);
  });

  it('works without any index: by id, else continuing the last call', async () => {
    expect(await calls(
      [{ id: 'a', function: { name: 'f', arguments: '{"x"' } }],
      [{ function: { arguments: ':1}' } }],
      [{ id: 'b', function: { name: 'g', arguments: '{}' } }],
      [{ id: 'a', function: { arguments: '' } }],
    )).toEqual([['a', 'f', '{"x":1}'], ['b', 'g', '{}']]);
  });

  it('ignores repeated or empty names on later fragments and joins a split name', async () => {
    expect(await calls(
      [{ index: 0, id: '123', function: { name: 'pi__echo', arguments: '{"te' } }],
      [{ index: 0, id: '123', function: { name: '', arguments: 'xt":"a"}' } }],
      [{ index: 0, id: '123', function: { name: 'pi__echo' } }],
      [{ index: 1, function: { name: 'pi__', arguments: '' } }],
      [{ index: 1, function: { name: 'slow', arguments: '{}' } }],
    )).toEqual([['123', 'pi__echo', '{"text":"a"}'], ['', 'pi__slow', '{}']]);
  });

  it('takes arguments sent as an object in one piece', async () => {
    expect(await calls([{ index: 0, id: 'a', function: { name: 'f', arguments: { x: [1, 2] } } }])).toEqual([['a', 'f', '{"x":[1,2]}']]);
  });

  it('collects text, reports each piece, and keeps the last usage wherever it comes', async () => {
    const texts: string[] = [];
    async function* s(): AsyncIterable<ChatCompletionChunk> {
      const base = { id: 'c', object: 'chat.completion.chunk' as const, created: 0, model: 'm' };
      yield { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] };
      yield { ...base, choices: [{ index: 0, delta: { content: 'Hel' }, finish_reason: null }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } };
      yield { ...base, choices: [{ index: 0, delta: { content: 'lo' }, finish_reason: 'stop' }], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } };
      yield { ...base, choices: [] };
    }
    const turn = await assembleStream(s(), (t) => texts.push(t));
    expect(turn).toEqual({ content: 'Hello', toolCalls: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 }, sawChoice: true });
    expect(texts).toEqual(['Hel', 'lo']);
  });

  it('says when no chunk had a choice', async () => {
    async function* empty(): AsyncIterable<ChatCompletionChunk> { yield { id: 'c', object: 'chat.completion.chunk', created: 0, model: 'm', choices: [] }; }
    expect(await assembleStream(empty())).toEqual({ content: null, toolCalls: [], usage: undefined, sawChoice: false });
  });
});
