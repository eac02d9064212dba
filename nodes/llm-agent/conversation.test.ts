// SessionRuns on its own: one queue per session, resets that take effect at once, and no state
// left once a session's work has ended.
import { describe, expect, it } from 'vitest';
import { SessionRuns } from './conversation';

/** A promise and its resolve. */
function deferred(): { promise: Promise<void>; resolve: () => void } {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => { resolve = r; });
  return { promise, resolve };
}

const tick = () => new Promise((r) => setImmediate(r));

describe('SessionRuns', () => {
  it('runs the tasks of one session in order, others side by side, and forgets ended sessions', async () => {
    const runs = new SessionRuns();
    const log: string[] = [];
    const first = deferred();
    const a = runs.run('s', async () => { log.push('a start'); await first.promise; log.push('a end'); });
    const b = runs.run('s', async () => { log.push('b'); });
    const c = runs.run('t', async () => { log.push('c'); });
    await c;
    await tick();
    expect(log).toEqual(['a start', 'c']);
    first.resolve();
    await Promise.all([a, b]);
    expect(log).toEqual(['a start', 'c', 'a end', 'b']);
    await tick();
    expect(runs.size).toBe(0);
  });

  it('starts the next task after one that rejected, and passes the rejection on', async () => {
    const runs = new SessionRuns();
    const a = runs.run('s', async () => { throw new Error('boom'); });
    const b = runs.run('s', async () => 'b ran');
    await expect(a).rejects.toThrow('boom');
    await expect(b).resolves.toBe('b ran');
  });

  it('marks the running task stale on a reset, and starts queued tasks after the clearing, not stale', async () => {
    const runs = new SessionRuns();
    const first = deferred();
    const clearing = deferred();
    let staleA: (() => boolean) | undefined;
    const order: string[] = [];
    const a = runs.run('s', async (stale) => { staleA = stale; await first.promise; order.push(`a stale=${stale()}`); });
    const b = runs.run('s', async (stale) => { order.push(`b stale=${stale()}`); });
    await tick();
    expect(staleA!()).toBe(false);
    const reset = runs.reset('s', async () => { await clearing.promise; order.push('cleared'); });
    expect(staleA!()).toBe(true);
    first.resolve();
    await a;
    await tick();
    expect(order).toEqual(['a stale=true']); // b waits for the clearing
    clearing.resolve();
    await Promise.all([reset, b]);
    expect(order).toEqual(['a stale=true', 'cleared', 'b stale=false']);
    await tick();
    expect(runs.size).toBe(0);
  });

  it('reports a failed clearing to the reset and still runs the queued tasks', async () => {
    const runs = new SessionRuns();
    const reset = runs.reset('s', async () => { throw new Error('store is read-only'); });
    const b = runs.run('s', async () => 'b ran');
    await expect(reset).rejects.toThrow('store is read-only');
    await expect(b).resolves.toBe('b ran');
  });
});
