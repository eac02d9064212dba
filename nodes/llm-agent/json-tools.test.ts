import { describe, expect, it } from 'vitest';
import { extractJsonToolCalls, jsonResultsMessage, jsonToolsPrompt } from './json-tools';

describe('extractJsonToolCalls', () => {
  const echo = [{ name: 'pi__echo', arguments: { text: 'hi' } }];

  it.each([
    ['bare', '{"tool_calls":[{"name":"pi__echo","arguments":{"text":"hi"}}]}'],
    ['fenced', 'Sure.\n```json\n{"tool_calls":[{"name":"pi__echo","arguments":{"text":"hi"}}]}\n```\nWait for it.'],
    ['fenced without language', '```\n{"tool_calls":[{"name":"pi__echo","arguments":{"text":"hi"}}]}\n```'],
    ['in prose', 'Let me call it: {"tool_calls": [{"name": "pi__echo", "arguments": {"text": "hi"}}]} and see.'],
    ['single name/arguments', '{"name":"pi__echo","arguments":{"text":"hi"}}'],
    ['single tool/args in prose', 'Calling {"tool": "pi__echo", "args": {"text": "hi"}} now'],
    ['Llama 3.1 name/parameters', '{"name": "pi__echo", "parameters": {"text": "hi"}}'],
    ['OpenAI-shaped items', '{"tool_calls":[{"type":"function","function":{"name":"pi__echo","arguments":{"text":"hi"}}}]}'],
    ['bare list', '[{"name":"pi__echo","arguments":{"text":"hi"}}]'],
  ])('reads the %s form', (_name, text) => {
    expect(extractJsonToolCalls(text)).toEqual(echo);
  });

  it('keeps arguments written as JSON text, and several calls in order', () => {
    expect(extractJsonToolCalls('{"tool_calls":[{"name":"a","arguments":"{\\"x\\":1}"},{"name":"b"}]}')).toEqual([{ name: 'a', arguments: '{"x":1}' }, { name: 'b', arguments: {} }]);
  });

  it('skips braces inside strings and objects that are not calls', () => {
    expect(extractJsonToolCalls('Config {"a": "}{"} then {"name":"pi__echo","arguments":{"text":"hi"}}')).toEqual(echo);
  });

  it.each([
    ['plain text', 'The disk is 40% full.'],
    ['JSON with a name but no arguments', '{"name": "Alice", "age": 3}'],
    ['a list that is not calls', '[1, 2, 3]'],
    ['broken JSON', '{"tool_calls": [{"name": "pi__echo", "arguments": {'],
    ['an empty call list', '{"tool_calls": []}'],
  ])('treats %s as a final answer', (_name, text) => {
    expect(extractJsonToolCalls(text)).toBeUndefined();
  });
});

describe('json-mode messages', () => {
  it('describes each tool with its schema and the reply format', () => {
    const prompt = jsonToolsPrompt([{ type: 'function', function: { name: 'pi__echo', description: 'Echoes.', parameters: { type: 'object', properties: { text: { type: 'string' } } } } }]);
    expect(prompt.role).toBe('system');
    expect(prompt.content).toContain('{"tool_calls":[{"name":"<tool name>","arguments":{');
    expect(prompt.content).toContain('{"name":"pi__echo","description":"Echoes.","parameters":{"type":"object","properties":{"text":{"type":"string"}}}}');
  });

  it('lists results by call id and name', () => {
    const m = jsonResultsMessage([{ id: 'call_1_0', name: 'a', text: 'one' }, { id: 'call_1_1', name: 'b', text: 'ERR: two' }]);
    expect(m.role).toBe('user');
    expect(m.content).toMatch(/^Tool results \(one per call, in call order\):\n\n\[call_1_0\] a:\none\n\n\[call_1_1\] b:\nERR: two\n\n/);
  });
});
