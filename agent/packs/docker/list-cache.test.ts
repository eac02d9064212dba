import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { PassThrough } from 'node:stream';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { ToolContext } from '../../../protocol/tool';
import type { Logger } from '../types';
import { DockerConfigSchema } from './index';
import { ContainerListCache, type ListEngine } from './list-cache';
import { containerTools } from './tools';

const dockerd = inject('dockerd');
if (dockerd === undefined) {
  throw new Error('the Docker engine comes from test/support/global-setup.ts; add it to globalSetup in the vitest config');
}

const signal = new AbortController().signal;
const toolCtx: ToolContext = { signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {} };

/** A logger that keeps what it was told. */
function keptLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info ${m}`), warn: (m) => lines.push(`warn ${m}`), error: (m) => lines.push(`error ${m}`) };
}

async function until(what: string, ok: () => boolean | Promise<boolean>, ms = 5000): Promise<number> {
  const t0 = performance.now();
  while (!(await ok())) {
    if (performance.now() - t0 > ms) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return performance.now() - t0;
}

describe('container list cache: its rules, on an engine whose answers the test times', () => {
  /** An engine whose list answers wait for `answer()` and whose event stream the test writes. */
  function heldEngine() {
    const events = new PassThrough();
    const held: Array<() => void> = [];
    let asked = 0;
    const engine = {
      listContainers: () => {
        asked++;
        return new Promise((resolve) => held.push(() => resolve([
          { Id: 'a'.repeat(64), Names: ['/web'], Image: 'nginx', State: 'running', Status: `Up ${asked} seconds` },
        ])));
      },
      getEvents: async () => events,
    } as unknown as ListEngine;
    return { engine, events, asked: () => asked, answer: () => held.shift()?.() };
  }

  it('keeps no list whose request raced an event, and keeps the next one', async () => {
    const e = heldEngine();
    const cache = new ContainerListCache(e.engine, { maxAgeMs: 60_000, log: keptLog() });
    await cache.start();
    expect(cache.active).toBe(true);
    const raced = cache.list(false, signal);
    e.events.write('{"Type":"container","Action":"start"}\n');
    await new Promise((r) => setImmediate(r));
    e.answer();
    expect((await raced)[0].status).toBe('Up 1 seconds');
    const second = cache.list(false, signal);
    e.answer();
    expect((await second)[0].status).toBe('Up 2 seconds');
    expect((await cache.list(false, signal))[0].status).toBe('Up 2 seconds');
    expect(e.asked()).toBe(2);
    cache.close();
  });

  it('keeps no list whose request raced invalidate(), and serves a list per value of all', async () => {
    const e = heldEngine();
    const cache = new ContainerListCache(e.engine, { maxAgeMs: 60_000, log: keptLog() });
    await cache.start();
    const raced = cache.list(true, signal);
    cache.invalidate();
    e.answer();
    await raced;
    const running = cache.list(false, signal);
    e.answer();
    await running;
    const all = cache.list(true, signal);
    e.answer();
    await all;
    await cache.list(true, signal);
    await cache.list(false, signal);
    expect(e.asked()).toBe(3);
    cache.close();
  });

  it('serves a list for at most maxAgeMs, and none at all with 0', async () => {
    const e = heldEngine();
    const answering = { ...e.engine, listContainers: (o: unknown) => { const p = e.engine.listContainers(o as never); e.answer(); return p; } } as ListEngine;
    const cache = new ContainerListCache(answering, { maxAgeMs: 80, log: keptLog() });
    await cache.start();
    await cache.list(false, signal);
    await cache.list(false, signal);
    expect(e.asked()).toBe(1);
    await new Promise((r) => setTimeout(r, 120));
    await cache.list(false, signal);
    expect(e.asked()).toBe(2);
    cache.close();

    const off = new ContainerListCache(answering, { maxAgeMs: 0, log: keptLog() });
    await off.start();
    expect(off.active).toBe(false);
    await off.list(false, signal);
    await off.list(false, signal);
    expect(e.asked()).toBe(4);
  });

  it('rejects an aborted call even when it holds the list', async () => {
    const e = heldEngine();
    const cache = new ContainerListCache(e.engine, { maxAgeMs: 60_000, log: keptLog() });
    await cache.start();
    const first = cache.list(false, signal);
    e.answer();
    await first;
    const aborted = AbortSignal.abort();
    await expect(cache.list(false, aborted)).rejects.toMatchObject({ name: 'AbortError' });
    cache.close();
  });
});

/** A unix-socket proxy in front of the engine that can drop its connections and refuse new ones. */
async function engineProxy(target: string): Promise<{ socketPath: string; cut(): void; refuse(on: boolean): void; close(): Promise<void> }> {
  const socketPath = `/tmp/toolmesh-engine-proxy-${process.pid}-${randomBytes(3).toString('hex')}.sock`;
  const open = new Set<Socket>();
  let refusing = false;
  const server: Server = createServer((client) => {
    if (refusing) {
      client.destroy();
      return;
    }
    const upstream = connect(target);
    for (const s of [client, upstream]) {
      open.add(s);
      s.on('error', () => {});
      s.on('close', () => {
        open.delete(s);
        client.destroy();
        upstream.destroy();
      });
    }
    client.pipe(upstream).pipe(client);
  });
  await new Promise<void>((r) => server.listen(socketPath, r));
  return {
    socketPath,
    cut: () => { for (const s of open) s.destroy(); },
    refuse: (on) => { refusing = on; },
    close: async () => {
      for (const s of open) s.destroy();
      await new Promise((r) => server.close(r));
      rmSync(socketPath, { force: true });
    },
  };
}

describe.skipIf(dockerd === null)('container list cache on a real engine', () => {
  const { socketPath, image } = dockerd ?? { socketPath: '', image: '' };
  const suffix = randomBytes(4).toString('hex');
  const docker = new Docker({ socketPath });
  let asked = 0;
  /** The real engine, counting the list requests that reach it. */
  const counted: ListEngine = {
    listContainers: (opts?: Docker.ContainerListOptions) => { asked++; return docker.listContainers(opts); },
    getEvents: docker.getEvents.bind(docker),
  } as ListEngine;
  const names = (rows: Array<{ name: string }>) => rows.map((r) => r.name);
  /**
   * Waits for two lists in a row that asked the engine once. Other test files share this engine,
   * and their events (and the replayed ones of a stream just opened) rightly empty the cache.
   */
  // the engine is shared with the other test files running beside this one: any of their events
  // empties the cache, so two lists in a row hit memory only in a quiet moment (up to 20 s in CI)
  const servesFromMemory = (cache: ContainerListCache) => until('a list served from memory', async () => {
    const before = asked;
    await cache.list(false, signal);
    await cache.list(false, signal);
    return asked - before === 1;
  }, 20_000);

  async function container(name: string) {
    const c = await docker.createContainer({ name: `${name}-${suffix}`, Image: image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' } });
    await c.start();
    return c;
  }

  beforeAll(async () => {
    await container('tm-cache-a');
  });

  afterAll(async () => {
    const mine = await docker.listContainers({ all: true, filters: { name: [suffix] } });
    await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  });

  it('answers from memory until the engine reports a change made outside the agent', async () => {
    const cache = new ContainerListCache(counted, { maxAgeMs: 60_000, log: keptLog() });
    await cache.start();
    try {
      expect(names(await cache.list(false, signal))).toContain(`tm-cache-a-${suffix}`);
      await servesFromMemory(cache);
      const b = await container('tm-cache-b');
      const shownAfterMs = await until('the new container in the list', async () => names(await cache.list(false, signal)).includes(`tm-cache-b-${suffix}`));
      expect(shownAfterMs).toBeLessThan(1000); // the event did it, not the 60 s age limit
      await b.pause();
      await until('the paused state in the list', async () => (await cache.list(false, signal)).some((r) => r.name === `tm-cache-b-${suffix}` && r.state === 'paused'));
      await b.remove({ force: true });
      await until('the removed container gone', async () => !names(await cache.list(false, signal)).includes(`tm-cache-b-${suffix}`));
    } finally {
      cache.close();
    }
  });

  it('shows a change made through the pack at once, without waiting for the event', async () => {
    // The event stream of this cache never says anything: only the tools' invalidate() can refresh it.
    const silent: ListEngine = { listContainers: counted.listContainers, getEvents: async () => new PassThrough() } as unknown as ListEngine;
    const cache = new ContainerListCache(silent, { maxAgeMs: 60_000, log: keptLog() });
    await cache.start();
    const tools = containerTools(docker, DockerConfigSchema.parse({ socketPath, images: [{ image }] }), 'pi', cache);
    const run = (name: string, args: unknown) => {
      const t = tools.find((x) => x.name === name)!;
      return t.execute(t.input.parse(args), toolCtx) as Promise<any>;
    };
    const stateOf = async (name: string) => ((await run('docker_list_containers', { all: true })).containers as Array<{ name: string; state: string }>)
      .find((r) => r.name === name)?.state;
    try {
      const name = `tm-cache-own-${suffix}`;
      expect(await stateOf(name)).toBeUndefined();
      await run('docker_run_container', { image, name, command: ['sleep', '3600'] });
      expect(await stateOf(name)).toBe('running');
      await run('docker_stop_container', { container: name, timeoutSeconds: 0 });
      expect(await stateOf(name)).toBe('exited');
      await run('docker_start_container', { container: name });
      expect(await stateOf(name)).toBe('running');
      await run('docker_remove_container', { container: name, force: true });
      expect(await stateOf(name)).toBeUndefined();
    } finally {
      cache.close();
    }
  });

  it('serves nothing from memory while the event stream is down, says so once, and reopens it', async () => {
    const proxy = await engineProxy(socketPath);
    const viaProxy = new Docker({ socketPath: proxy.socketPath });
    const log = keptLog();
    const cache = new ContainerListCache({ listContainers: counted.listContainers, getEvents: viaProxy.getEvents.bind(viaProxy) } as ListEngine,
      { maxAgeMs: 60_000, log, retryMinMs: 40, retryMaxMs: 80 });
    await cache.start();
    try {
      expect(cache.active).toBe(true);
      await cache.list(false, signal);
      proxy.refuse(true);
      proxy.cut();
      await until('the cache to stop serving from memory', () => !cache.active);
      const before = asked;
      await cache.list(false, signal);
      await cache.list(false, signal);
      expect(asked - before).toBe(2);
      await new Promise((r) => setTimeout(r, 300)); // several reopen attempts fail meanwhile
      expect(log.lines.filter((l) => l.startsWith('warn'))).toEqual([
        expect.stringMatching(/^warn docker: event stream failed \(.+\); docker_list_containers asks the engine on every call until it is open again$/),
      ]);
      proxy.refuse(false);
      await until('the event stream open again', () => cache.active);
      expect(log.lines.at(-1)).toBe('info docker: event stream open again; docker_list_containers answers from memory again');
      await servesFromMemory(cache);
    } finally {
      cache.close();
      await proxy.close();
    }
  });

  it('starts without an event stream when the engine refuses it, and opens it later', async () => {
    const proxy = await engineProxy(socketPath);
    proxy.refuse(true);
    const viaProxy = new Docker({ socketPath: proxy.socketPath });
    const log = keptLog();
    const cache = new ContainerListCache({ listContainers: counted.listContainers, getEvents: viaProxy.getEvents.bind(viaProxy) } as ListEngine,
      { maxAgeMs: 60_000, log, retryMinMs: 40, retryMaxMs: 80 });
    try {
      await cache.start();
      expect(cache.active).toBe(false);
      expect(names(await cache.list(false, signal))).toContain(`tm-cache-a-${suffix}`);
      proxy.refuse(false);
      await until('the event stream open', () => cache.active);
    } finally {
      cache.close();
      await proxy.close();
    }
    const closed = new ContainerListCache(counted, { maxAgeMs: 60_000, log });
    await closed.start();
    closed.close();
    closed.close();
    expect(closed.active).toBe(false);
  });
});

