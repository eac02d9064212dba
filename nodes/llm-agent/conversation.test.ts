// SessionRuns on its own: one queue per session, resets that take effect at once, and no state
// left once a session's work has ended. ConversationStore on Node-RED's own context stores
// (memory, and localfilesystem across a restart): bounded by count (LRU) and idle time.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConversationStore, SessionRuns, type ContextLike } from './conversation';
import { NODE_RED_PACKAGE_DIR } from '../../test/support/node-red-path';

/** A Node-RED context store module (memory or localfilesystem) as this node's context (scope `n1:f1`). */
interface StoreModule {
  open(): Promise<void>;
  close(): Promise<void>;
  get(scope: string, key: string, cb: (err: Error | null | undefined, value?: unknown) => void): void;
  set(scope: string, key: string, value: unknown, cb: (err?: Error | null) => void): void;
  keys(scope: string, cb: (err: Error | null | undefined, keys?: string[]) => void): void;
}
function nodeRedStore(name: 'memory' | 'localfilesystem', config: Record<string, unknown> = {}): StoreModule {
  const path = require.resolve(`@node-red/runtime/lib/nodes/context/${name}`, { paths: [NODE_RED_PACKAGE_DIR] });
  return require(path)(config);
}
const asContext = (m: StoreModule): ContextLike => ({
  get: (key, _store, cb) => m.get('n1:f1', key, cb),
  set: (key, value, _store, cb) => m.set('n1:f1', key, value, cb),
  keys: (_store, cb) => m.keys('n1:f1', cb),
});
const keysOf = (m: StoreModule) => new Promise<string[]>((resolve, reject) => m.keys('n1:f1', (e, k) => (e ? reject(e) : resolve((k ?? []).sort()))));

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

describe('ConversationStore', () => {
  it('keeps the maxSessions most recently used conversations (reads count as use) and deletes the rest from the store', async () => {
    const m = nodeRedStore('memory');
    await m.open();
    let now = 0;
    const store = new ConversationStore(asContext(m), { maxSessions: 3, sessionIdleMs: 60_000 }, { now: () => now });
    for (const id of ['a', 'b', 'c']) {
      now += 10;
      await store.write(id, [{ role: 'user', content: id }]);
    }
    now += 10;
    expect(await store.read('a')).toEqual([{ role: 'user', content: 'a' }]);
    await store.write('d', []);
    expect(await keysOf(m)).toEqual(['llm-agent:a', 'llm-agent:c', 'llm-agent:d']);
    expect(await store.read('b')).toBeUndefined();
    await store.clear('c');
    expect(store.size).toBe(2);
    expect(await keysOf(m)).toEqual(['llm-agent:a', 'llm-agent:d']);
    store.close();
  });

  it('forgets conversations unused for sessionIdleMs, on the next use or the sweep', async () => {
    const m = nodeRedStore('memory');
    await m.open();
    let now = 0;
    const store = new ConversationStore(asContext(m), { maxSessions: 100, sessionIdleMs: 1000 }, { now: () => now, sweepMs: 20 });
    await store.write('old', []);
    now = 600;
    await store.write('newer', []);
    now = 1000;
    await store.read('newer');
    expect(await keysOf(m)).toEqual(['llm-agent:newer']);
    now = 2000;
    await new Promise((r) => setTimeout(r, 60)); // the sweep runs every 20 ms here
    expect(await keysOf(m)).toEqual([]);
    expect(store.size).toBe(0);
    store.close();
  });

  it('finds the conversations a persistent store kept across a restart, and bounds them too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toolmesh-ctx-'));
    try {
      const first = nodeRedStore('localfilesystem', { dir, cache: false });
      await first.open();
      const before = new ConversationStore(asContext(first), { maxSessions: 10, sessionIdleMs: 60_000 });
      for (const id of ['s1', 's2', 's3', 's4']) await before.write(id, [{ role: 'user', content: id }]);
      before.close();
      await first.close();

      // restarted with a smaller bound: the first use lists the store and evicts down to it
      const second = nodeRedStore('localfilesystem', { dir, cache: false });
      await second.open();
      let now = 5000;
      const after = new ConversationStore(asContext(second), { maxSessions: 2, sessionIdleMs: 60_000 }, { now: () => now });
      expect(await after.read('s4')).toEqual([{ role: 'user', content: 's4' }]);
      expect(after.size).toBe(2);
      await new Promise((r) => setTimeout(r, 50)); // evictions are written in the background
      expect(await keysOf(second)).toHaveLength(2);
      expect(await keysOf(second)).toContain('llm-agent:s4');
      // the ones brought back count as used at that first use: idle from then on
      now += 60_000;
      after.evictIdle();
      await new Promise((r) => setTimeout(r, 50));
      expect(await keysOf(second)).toEqual([]);
      after.close();
      await second.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
