// WiredCalls on its own: a call resolves with its result, TIMEOUT or CANCELLED, and never
// rejects, also when sending the call out throws; no timer or waiting entry is left behind.
import { describe, expect, it } from 'vitest';
import { toolErrorOf, type CallToolResult } from '../../protocol';
import { WiredCalls, type WiredToolCall } from './wired-calls';

const target = { agent: 'pi', tool: 'uptime', name: 'pi__uptime', risk: 'low' as const, modelCallId: 'call_1' };

/** Number of active timers of this process. */
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;

describe('WiredCalls', () => {
  it('resolves with the result that comes back, and clears its timer', async () => {
    const sent: WiredToolCall[] = [];
    const wired = new WiredCalls((call) => sent.push(call));
    const before = timers();
    const result = wired.call(target, { unit: 'h' }, 3_600_000, undefined);
    expect(wired.size).toBe(1);
    expect(wired.settle(sent[0].id, 'up 42 h')).toBe(true);
    expect((await result).content).toEqual([{ type: 'text', text: 'up 42 h' }]);
    expect(wired.size).toBe(0);
    expect(timers()).toBe(before);
  });

  it('resolves with an error result, leaving no timer or waiting call, when sending the call throws', async () => {
    const wired = new WiredCalls(() => {
      throw new RangeError('Maximum call stack size exceeded');
    });
    const before = timers();
    // an hour: a timer left running would keep a Node-RED shutdown waiting
    const outcome = await wired.call(target, { unit: 'h' }, 3_600_000, undefined).then(
      (result) => ({ result }),
      (e: Error) => ({ rejected: e.message }),
    );
    expect(outcome).not.toHaveProperty('rejected');
    const error = toolErrorOf((outcome as { result: CallToolResult }).result);
    expect(error).toMatchObject({ code: 'EXECUTION_FAILED' });
    expect(error?.message).toContain('Maximum call stack size exceeded');
    expect(wired.size).toBe(0);
    expect(timers()).toBe(before);
  });

  it('resolves with CANCELLED and removes its abort listener when the run is cancelled', async () => {
    const wired = new WiredCalls(() => undefined);
    const ac = new AbortController();
    const before = timers();
    const result = wired.call(target, {}, 3_600_000, undefined, ac.signal);
    ac.abort();
    expect(toolErrorOf(await result)).toMatchObject({ code: 'CANCELLED' });
    expect(wired.size).toBe(0);
    expect(timers()).toBe(before);
  });
});
