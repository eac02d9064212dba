import { describe, expect, it } from 'vitest';
import { ToolError } from '../../protocol';
import { answerOf, callIdOf } from './answer';

const t = (key: string, params: Record<string, unknown> = {}) => `${key}${Object.keys(params).length ? ` ${JSON.stringify(params)}` : ''}`;

describe('tool-out answers', () => {
  it('reads the call id from msg._toolmesh', () => {
    expect(callIdOf({ _toolmesh: { callId: 'c1' } })).toBe('c1');
    expect(callIdOf({ _toolmesh: { callId: '' } })).toBeUndefined();
    expect(callIdOf({ _toolmesh: 'c1' })).toBeUndefined();
    expect(callIdOf({})).toBeUndefined();
  });

  it('takes msg.payload as the result: objects, strings, and anything else as is', () => {
    expect(answerOf({ payload: { a: 1 } }, t)).toEqual({ kind: 'result', value: { a: 1 } });
    expect(answerOf({ payload: 'ok' }, t)).toEqual({ kind: 'result', value: 'ok' });
    expect(answerOf({ payload: 3 }, t)).toEqual({ kind: 'result', value: 3 });
    expect(answerOf({}, t)).toEqual({ kind: 'result', value: null });
  });

  it('fails with EXECUTION_FAILED from msg.error, keeping the source node and its code', () => {
    const a = answerOf({ payload: 'x', error: { message: 'TIMEOUT: slow', code: 'TIMEOUT', source: { id: 'n1', type: 'toolmesh-remote-tool' } } }, t);
    expect(a.kind).toBe('error');
    const e = (a as { error: ToolError }).error;
    expect(e).toBeInstanceOf(ToolError);
    expect([e.code, e.message, e.details]).toEqual(['EXECUTION_FAILED', 'TIMEOUT: slow', { cause: 'TIMEOUT', source: { id: 'n1', type: 'toolmesh-remote-tool' } }]);
    expect((answerOf({ error: 'plain text' }, t) as { error: ToolError }).error.message).toBe('plain text');
  });

  it('fails on msg.isError === true with the payload as the message', () => {
    expect((answerOf({ isError: true, payload: { message: 'nope', n: 1 } }, t) as { error: ToolError }).error)
      .toMatchObject({ code: 'EXECUTION_FAILED', message: 'nope', details: { payload: { message: 'nope', n: 1 } } });
    expect((answerOf({ isError: true }, t) as { error: ToolError }).error.message).toBe('tool-out.errors.flow-failed');
    expect(answerOf({ isError: 'yes', payload: 'fine' }, t)).toEqual({ kind: 'result', value: 'fine' });
  });

  it('passes a progress report instead of answering', () => {
    expect(answerOf({ payload: 'x', progress: { progress: 2, total: 4, message: 'half' } }, t)).toEqual({ kind: 'progress', progress: 2, total: 4, message: 'half' });
    expect(answerOf({ payload: 'x', progress: 50 }, t)).toEqual({ kind: 'result', value: 'x' });
  });

  it('uses a ready msg.toolResult, keeping only the MCP fields, and refuses a malformed one', () => {
    const toolResult = { content: [{ type: 'text', text: 'hi' }], isError: true, durationMs: 5, agent: 'pi' };
    expect(answerOf({ payload: 'ignored', toolResult }, t)).toEqual({ kind: 'result', value: { content: [{ type: 'text', text: 'hi' }], structuredContent: undefined, isError: true } });
    expect(() => answerOf({ toolResult: { content: [{ text: 'no type' }] } }, t)).toThrow(/^tool-out\.errors\.bad-result \{"path":"content\.0/);
    expect(answerOf({ payload: 'p', toolResult: { note: 'no content array' } }, t)).toEqual({ kind: 'result', value: 'p' });
  });
});
