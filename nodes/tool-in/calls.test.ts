// runInFlow on its own: a call whose message cannot be built or sent ends at once as a failure,
// with onEnd called once, instead of staying open (a tool-in busy for ever).
import { describe, expect, it } from 'vitest';
import type { ToolContext } from '../../protocol';
import { answerCall, runInFlow, type ToolCallMessage } from './calls';

function context(): ToolContext {
  return { signal: new AbortController().signal, callerId: 'c1', requestId: 'r1', dryRun: false, progress: () => undefined };
}

describe('runInFlow', () => {
  it('ends the call with onEnd once when the arguments cannot be copied into the message', async () => {
    const ends: Array<string | undefined> = [];
    const emitted: ToolCallMessage[] = [];
    // a function is no JSON value: structuredClone refuses it
    const call = runInFlow({ nodeId: 'n1', agentId: 'flows', tool: 't' }, { f: () => 1 }, context(), (m) => emitted.push(m), (code) => ends.push(code));
    await expect(call).rejects.toThrow();
    expect(emitted).toEqual([]);
    expect(ends).toEqual(['EXECUTION_FAILED']);
  });

  it('ends the call with onEnd once when sending throws, and a late answer finds it ended', async () => {
    const ends: Array<string | undefined> = [];
    let callId = '';
    const call = runInFlow({ nodeId: 'n1', agentId: 'flows', tool: 't' }, { a: 1 }, context(), (m) => {
      callId = m._toolmesh.callId;
      throw new RangeError('Maximum call stack size exceeded');
    }, (code) => ends.push(code));
    await expect(call).rejects.toThrow('Maximum call stack size exceeded');
    expect(ends).toEqual(['EXECUTION_FAILED']);
    expect(answerCall(callId, { kind: 'result', value: { ok: true } })).toBe('unknown');
  });
});
