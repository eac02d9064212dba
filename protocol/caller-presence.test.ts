// CallerPresence on its own (fake timers): callers that are gone are forgotten after
// forgetAfterMs, but not while they are online or have calls running.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { CallerPresence, DEFAULT_CALLER_FORGET_MS } from './caller-presence';

beforeEach(() => { vi.useFakeTimers(); });
afterEach(() => { vi.useRealTimers(); });

/** A presence with `running` callers having calls, recording cancels and lost reports. */
function presence(forgetAfterMs?: number) {
  const running = new Set<string>();
  const log: string[] = [];
  const p = new CallerPresence({
    graceMs: 1000,
    forgetAfterMs,
    connected: () => true,
    hasRunning: (id) => running.has(id),
    cancel: (id, why) => {
      log.push(`cancel ${id}: ${why}`);
      running.delete(id);
    },
    lost: (id, state) => log.push(`lost ${id} ${state}`),
  });
  return { p, running, log };
}

describe('CallerPresence forgetting', () => {
  it('forgets 1,000 callers that went offline, lost or gone after forgetAfterMs, and keeps online ones', () => {
    const { p } = presence(5000);
    const states = ['offline', 'lost', 'gone'] as const;
    for (let i = 0; i < 1000; i++) {
      p.update(`c${i}`, 'online', `i${i}`, false);
      p.update(`c${i}`, states[i % 3], `i${i}`, false);
    }
    p.update('stays', 'online', 'x', false);
    expect(p.size).toBe(1001);
    vi.advanceTimersByTime(4999);
    expect(p.size).toBe(1001); // seen for a while, as before
    vi.advanceTimersByTime(1);
    expect(p.size).toBe(1);
    vi.advanceTimersByTime(DEFAULT_CALLER_FORGET_MS);
    expect(p.size).toBe(1); // online callers are never forgotten
  });

  it('keeps a lost caller while its calls run, and forgets it once they ended', () => {
    const { p, running, log } = presence(500);
    p.update('dash', 'online', 'a', false);
    running.add('dash');
    p.update('dash', 'lost', 'a', false);
    vi.advanceTimersByTime(600);
    expect(p.size).toBe(1); // the grace (1 s) still runs: the calls are still running
    vi.advanceTimersByTime(400);
    expect(log).toEqual(['lost dash lost', 'cancel dash: caller dash is lost and did not come back within 1000 ms']);
    vi.advanceTimersByTime(500);
    expect(p.size).toBe(0);
  });

  it('stops the forget timer of a caller that comes back online, and starts it afresh when it goes again', () => {
    const { p } = presence(1000);
    p.update('dash', 'online', 'a', false);
    p.update('dash', 'offline', 'a', false);
    vi.advanceTimersByTime(900);
    p.update('dash', 'online', 'a', false);
    vi.advanceTimersByTime(5000);
    expect(p.size).toBe(1);
    p.update('dash', 'offline', 'a', false);
    vi.advanceTimersByTime(999);
    expect(p.size).toBe(1);
    vi.advanceTimersByTime(1);
    expect(p.size).toBe(0);
  });

  it('forgets a caller known only from a retained will, by default after 10 minutes; close() stops the timers', () => {
    const { p } = presence();
    p.update('old', 'lost', 'z', true);
    vi.advanceTimersByTime(DEFAULT_CALLER_FORGET_MS);
    expect(p.size).toBe(0);
    p.update('other', 'offline', 'y', true);
    p.close();
    vi.advanceTimersByTime(DEFAULT_CALLER_FORGET_MS);
    expect(p.size).toBe(1);
  });
});
