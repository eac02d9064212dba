import { describe, expect, it } from 'vitest';
import { callIdOf, parseToolCall, parseToolResult, ToolMessageError } from './tool-messages';

/** The error `fn` throws, or a failure when it throws none or another kind. */
function errorOf(fn: () => unknown): ToolMessageError {
  try {
    fn();
  } catch (e) {
    if (e instanceof ToolMessageError) return e;
    throw e;
  }
  throw new Error('no ToolMessageError thrown');
}

describe('msg.toolCall', () => {
  it('accepts what llm-agent and tool-in send, keeps extra fields and defaults arguments to {}', () => {
    const fromAgent = { id: 'tc-1', name: 'pi__echo', agent: 'pi', tool: 'echo', arguments: { text: 'x' }, risk: 'low', modelCallId: 'm', timeoutMs: 60000 };
    expect(parseToolCall(fromAgent)).toEqual(fromAgent);
    const fromToolIn = { id: 3, agent: 'flows', tool: 'greet', arguments: {}, callerId: 'c1', dryRun: true };
    expect(parseToolCall(fromToolIn)).toEqual(fromToolIn);
    expect(parseToolCall({ agent: 'pi', tool: 'echo' }).arguments).toEqual({});
  });

  it('names the first broken field, the expectation and what it holds', () => {
    expect(errorOf(() => parseToolCall('pi/echo'))).toMatchObject({ field: 'msg.toolCall', expected: 'object', got: '"pi/echo"' });
    expect(errorOf(() => parseToolCall({ tool: 'echo' }))).toMatchObject({ field: 'msg.toolCall.agent', expected: 'agent-id', got: 'missing' });
    expect(errorOf(() => parseToolCall({ agent: 'pi/x', tool: 'echo' }))).toMatchObject({ field: 'msg.toolCall.agent', expected: 'agent-id', got: '"pi/x"' });
    expect(errorOf(() => parseToolCall({ agent: 'pi', tool: '' }))).toMatchObject({ field: 'msg.toolCall.tool', expected: 'name' });
    expect(errorOf(() => parseToolCall({ agent: 'pi', tool: 'e', arguments: [1] }))).toMatchObject({ field: 'msg.toolCall.arguments', expected: 'object', got: 'array' });
    expect(errorOf(() => parseToolCall({ agent: 'pi', tool: 'e', approval: '' }))).toMatchObject({ field: 'msg.toolCall.approval', expected: 'token' });
    expect(errorOf(() => parseToolCall({ agent: 'pi', tool: 'e', dryRun: 'yes' }))).toMatchObject({ field: 'msg.toolCall.dryRun', expected: 'boolean' });
  });
});

describe('msg.toolResult', () => {
  it('accepts remote-tool\'s result and names a broken content item', () => {
    const r = { id: 'tc-1', content: [{ type: 'text', text: 'ok' }], isError: false, agent: 'pi', tool: 'echo', durationMs: 3 };
    expect(parseToolResult(r)).toEqual(r);
    expect(errorOf(() => parseToolResult({ content: [{ text: 'no type' }] }))).toMatchObject({ field: 'msg.toolResult.content.0', expected: 'content', got: 'object' });
    expect(errorOf(() => parseToolResult({ content: [], isError: 'no' }))).toMatchObject({ field: 'msg.toolResult.isError', expected: 'boolean' });
  });

  it('finds the call id a message refers to, result first', () => {
    expect(callIdOf({ toolResult: { id: 'r' }, toolCall: { id: 'c' } })).toBe('r');
    expect(callIdOf({ toolResult: 'text', toolCall: { id: 'c' } })).toBe('c');
    expect(callIdOf({ toolCall: { id: 4 } })).toBeUndefined();
  });
});
