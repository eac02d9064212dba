/**
 * The container list `docker_list_containers` answers from memory while Docker's event stream
 * says nothing has changed.
 *
 * Outside facts (Docker Engine API v1.41, `GET /events`, "Monitor events"): the engine streams
 * one JSON object per line for every container, image, network, volume, plugin and daemon event
 * (create, start, die, stop, pause, rename, health_status, connect, …), and `since` replays the
 * events it still holds from that time before streaming new ones. Every change that alters the
 * list's rows (id, name, image, state, status text) raises one of those events, except the
 * passing of time in the status text ("Up 5 seconds"), which `maxAgeMs` bounds.
 */
import type Docker from 'dockerode';
import { backoffDelay } from '../../../protocol/mqtt';
import type { Logger } from '../types';
import { containerRow, type ContainerRow } from './format';

/** The engine calls the cache makes; a `Docker` instance from dockerode. */
export type ListEngine = Pick<Docker, 'listContainers' | 'getEvents'>;

/** Options of a {@link ContainerListCache}. */
export interface ListCacheOptions {
  /** Longest a list is served from memory, ms; 0 turns the cache off (every call asks the engine). */
  maxAgeMs: number;
  log: Logger;
  /** First and largest delay between attempts to reopen the event stream, ms (default 500 / 10 000). */
  retryMinMs?: number;
  retryMaxMs?: number;
}

/** How far back a (re)opened event stream replays, ms: covers the moment between the request and the engine's subscription. */
const REPLAY_MS = 1000;

/**
 * Lists of containers (one for `all: false`, one for `all: true`), kept while the engine's event
 * stream is open and quiet. Rules, each guarding one way to serve a stale list:
 * - nothing is kept while the event stream is closed (not yet open, dropped, engine restarting);
 *   a dropped stream is reopened with backoff, and every call asks the engine meanwhile;
 * - any byte on the stream drops both lists (no parsing: every event counts);
 * - a list is kept only when no event and no {@link invalidate} came while the engine answered
 *   it (a generation count), so a request that raced a change is never stored;
 * - a list is served for at most `maxAgeMs` after its request went out;
 * - the pack's own changes (start, stop, remove, run) call {@link invalidate} before they
 *   return, so a caller that changed something and lists next sees its change, without waiting
 *   for the engine's event.
 */
export class ContainerListCache {
  private generation = 0;
  private live = false;
  private closed = false;
  private failures = 0;
  private readonly lists = new Map<boolean, { rows: ContainerRow[]; at: number }>();
  private readonly abort = new AbortController();
  private stream?: NodeJS.ReadableStream;
  private retry?: NodeJS.Timeout;

  constructor(private readonly docker: ListEngine, private readonly opts: ListCacheOptions) {}

  /** Opens the event stream (no-op when `maxAgeMs` is 0). Resolves once it is open or has failed once; never rejects. */
  async start(): Promise<void> {
    if (this.opts.maxAgeMs > 0) await this.open();
  }

  /** True while lists may be served from memory (the event stream is open). */
  get active(): boolean {
    return this.live;
  }

  /**
   * The container rows for `all`, from memory when allowed (see the class rules), else from the
   * engine's `GET /containers/json`. Rejects as dockerode does (engine errors, `signal` aborts).
   */
  async list(all: boolean, signal: AbortSignal): Promise<ContainerRow[]> {
    signal.throwIfAborted();
    const now = performance.now();
    const kept = this.lists.get(all);
    if (kept !== undefined && now - kept.at <= this.opts.maxAgeMs) return kept.rows;
    const generation = this.generation;
    const rows = (await this.docker.listContainers({ all, abortSignal: signal })).map(containerRow);
    if (this.live && generation === this.generation) this.lists.set(all, { rows, at: now });
    return rows;
  }

  /** Drops the kept lists, and any list an engine request is answering right now. */
  invalidate(): void {
    this.generation++;
    this.lists.clear();
  }

  /** Closes the event stream and stops reopening it. Safe to call twice. */
  close(): void {
    this.closed = true;
    this.down();
    clearTimeout(this.retry);
    this.abort.abort();
  }

  private async open(): Promise<void> {
    const since = ((Date.now() - REPLAY_MS) / 1000).toFixed(3);
    let stream: NodeJS.ReadableStream;
    try {
      // dockerode's getEvents takes `abortSignal` at run time (lib/docker.js); @types/dockerode omits it.
      const opts = { since, abortSignal: this.abort.signal } as unknown as { since: number };
      stream = await this.docker.getEvents(opts);
    } catch (err) {
      this.lost(err);
      return;
    }
    if (this.closed) {
      (stream as unknown as { destroy?: () => void }).destroy?.();
      return;
    }
    this.stream = stream;
    stream.on('data', () => this.invalidate());
    stream.on('error', (err: unknown) => this.lost(err));
    stream.on('end', () => this.lost(new Error('the engine ended the stream')));
    stream.on('close', () => this.lost(new Error('the stream closed')));
    this.invalidate();
    this.live = true;
    if (this.failures > 0) this.opts.log.info('docker: event stream open again; docker_list_containers answers from memory again');
    this.failures = 0;
  }

  /** Stops serving from memory. */
  private down(): void {
    this.live = false;
    this.invalidate();
  }

  /** The stream failed or ended: serve nothing from memory, log the first failure of an outage, reopen with backoff. */
  private lost(err: unknown): void {
    if (this.closed || this.retry !== undefined) return;
    this.down();
    if (this.stream !== undefined) {
      this.stream.removeAllListeners();
      this.stream.on('error', () => {});
      (this.stream as unknown as { destroy?: () => void }).destroy?.();
      this.stream = undefined;
    }
    if (this.failures === 0) { // the first failure since the stream was last open
      const reason = (err as Error)?.message ?? String(err);
      this.opts.log.warn(`docker: event stream failed (${reason}); docker_list_containers asks the engine on every call until it is open again`);
    }
    const delay = backoffDelay(this.failures++, this.opts.retryMinMs ?? 500, this.opts.retryMaxMs ?? 10_000);
    this.retry = setTimeout(() => {
      this.retry = undefined;
      void this.open();
    }, delay);
    this.retry.unref();
  }
}
