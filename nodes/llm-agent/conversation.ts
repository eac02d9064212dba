/**
 * What one input message asks of the llm-agent: its conversation (memory + `msg.messages` +
 * `msg.payload` + `msg.images`), and how the result is remembered. Conversations live in
 * Node-RED context under `llm-agent:<sessionId>`, so a persistent context store keeps them
 * across restarts; they are stored with image bytes replaced by placeholders ({@link toMemory})
 * and trimmed to the node's bounds ({@link trimHistory}). How many are kept, and for how long,
 * is bounded too ({@link ConversationStore}: the node's `maxSessions` and `sessionIdleMs`), so
 * months of distinct `msg.topic`s do not pile up. No Node-RED imports: the context is passed in.
 *
 * Concurrency ({@link SessionRuns}): the runs of one session that use memory run one after the
 * other, each starting from the history the previous one stored; runs of different sessions,
 * and runs that bring their own `msg.messages`, run side by side. A `msg.reset` clears the
 * session's history the moment it arrives, also during a run of that session; a run that was
 * already under way then still answers, but does not store its transcript (it would bring back
 * the history the reset cleared). Runs that start after the reset, queued ones included, start
 * from the empty history.
 */
import type { ChatCompletionContentPart, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { MEMORY_LOW_WATER, toMemory, trimHistory } from './memory';
import type { LlmSettings } from './settings';

/** The parts of a Node-RED context (node.context()) this module uses. */
export interface ContextLike {
  get(key: string, store: string | undefined, cb: (err: Error | null | undefined, value?: unknown) => void): void;
  set(key: string, value: unknown, store: string | undefined, cb: (err?: Error | null) => void): void;
  /** Node-RED's `keys(store, cb)`: the keys of this node's context in `store`. */
  keys(store: string, cb: (err: Error | null | undefined, keys?: string[]) => void): void;
}

/** An input error; `key` is a catalog key under `llm-agent.errors`, `params` its parameters. */
export class InputError extends Error {
  constructor(readonly key: string, readonly params: Record<string, string | number> = {}) {
    super(key);
    this.name = 'InputError';
  }
}

/** The input fields this module reads. */
export interface ConversationInput {
  payload?: unknown;
  messages?: unknown;
  /** Images for the model: data URLs, or `{ data: base64 | Buffer, mimeType }`. */
  images?: unknown;
  sessionId?: unknown;
  topic?: unknown;
  /** Clears the conversation first. */
  reset?: unknown;
}

/** Session id of a message: `msg.sessionId`, else `msg.topic`, else `default`. */
export function sessionIdOf(msg: ConversationInput): string {
  for (const v of [msg.sessionId, msg.topic]) {
    if ((typeof v === 'string' && v !== '') || typeof v === 'number') return String(v);
  }
  return 'default';
}

const KEY_PREFIX = 'llm-agent:';
const contextKey = (sessionId: string) => `${KEY_PREFIX}${sessionId}`;

function imageUrl(image: unknown, index: number): string {
  if (typeof image === 'string' && /^data:image\/[\w.+-]+;base64,/.test(image)) return image;
  const o = image as { data?: unknown; mimeType?: unknown } | null;
  if (o && typeof o === 'object' && typeof o.mimeType === 'string' && /^image\//.test(o.mimeType)) {
    const data = Buffer.isBuffer(o.data) ? o.data.toString('base64') : typeof o.data === 'string' ? o.data : undefined;
    if (data) return `data:${o.mimeType};base64,${data}`;
  }
  throw new InputError('bad-image', { index });
}

/** The user turn of a message: text, plus image parts when `msg.images` is set (requires vision). */
function userTurn(msg: ConversationInput, vision: boolean): ChatCompletionMessageParam | undefined {
  const text = typeof msg.payload === 'string' && msg.payload.trim() !== '' ? msg.payload : undefined;
  if (msg.images === undefined) return text === undefined ? undefined : { role: 'user', content: text };
  const images = Array.isArray(msg.images) ? msg.images : [msg.images];
  if (!vision) throw new InputError('no-vision');
  const parts: ChatCompletionContentPart[] = text === undefined ? [] : [{ type: 'text', text }];
  images.forEach((img, i) => parts.push({ type: 'image_url', image_url: { url: imageUrl(img, i) } }));
  return { role: 'user', content: parts };
}

function ctxGet(ctx: ContextLike, key: string, store?: string): Promise<unknown> {
  return new Promise((resolve, reject) => ctx.get(key, store, (err, value) => (err ? reject(err) : resolve(value))));
}

function ctxSet(ctx: ContextLike, key: string, value: unknown, store?: string): Promise<void> {
  return new Promise((resolve, reject) => ctx.set(key, value, store, (err) => (err ? reject(err) : resolve())));
}

/**
 * True when the message asks the model nothing: no `msg.messages`, no `msg.images`, and no
 * non-blank string `msg.payload` (say, a bare `msg.reset`).
 */
export function asksNothing(msg: ConversationInput): boolean {
  return msg.messages === undefined && msg.images === undefined && !(typeof msg.payload === 'string' && msg.payload.trim() !== '');
}

/**
 * Forgets the stored conversation of `sessionId` (what `msg.reset` asks for).
 * @throws the context store's error when it cannot write.
 */
export function clearConversation(sessionId: string, store: ConversationStore): Promise<void> {
  return store.clear(sessionId);
}

/** Options of {@link ConversationStore}. */
export interface ConversationStoreOptions {
  /** Clock, ms since the epoch (default `Date.now`; tests pass a fake one). */
  now?: () => number;
  /** How often idle conversations are looked for, ms (default: the idle time, at most 60 000). */
  sweepMs?: number;
  /** A conversation the store could not list or delete; the store goes on without it. */
  onError?: (err: Error, sessionId?: string) => void;
}

/**
 * The conversations of one llm-agent node in its Node-RED context store, bounded: at most
 * `maxSessions` are kept, and one unused for `sessionIdleMs` is forgotten. Eviction is least
 * recently used first (a read or a write is a use) and deletes the conversation from the context
 * store itself (`set(key, undefined)`), memory or persistent. The order of use is kept in memory
 * (one Map entry per kept conversation, ~100 bytes); conversations a persistent store brought
 * back from before a restart are listed once, on first use, and count as used at that moment.
 * Call {@link close} when the node closes (it stops the idle sweep, an unref'd interval).
 */
export class ConversationStore {
  /** Session id → last use, ms; Map order is the order of use, oldest first. */
  private readonly used = new Map<string, number>();
  private loading?: Promise<void>;
  private sweeper?: NodeJS.Timeout;
  private closed = false;
  private readonly now: () => number;

  constructor(
    private readonly ctx: ContextLike,
    private readonly settings: Pick<LlmSettings, 'contextStore' | 'maxSessions' | 'sessionIdleMs'>,
    private readonly opts: ConversationStoreOptions = {},
  ) {
    this.now = opts.now ?? Date.now;
  }

  /** Conversations kept now (as far as this node knows: listed or written since it started). */
  get size(): number {
    return this.used.size;
  }

  /** The stored history of `sessionId` (`undefined` when none); a use of it. */
  async read(sessionId: string): Promise<unknown> {
    await this.load();
    this.evictIdle();
    const value = await ctxGet(this.ctx, contextKey(sessionId), this.settings.contextStore);
    if (value !== undefined) this.touch(sessionId);
    return value;
  }

  /**
   * Stores the history of `sessionId`, then evicts the least recently used conversations over
   * `maxSessions` and those idle for `sessionIdleMs`.
   * @throws the context store's error when it cannot write.
   */
  async write(sessionId: string, history: unknown): Promise<void> {
    await this.load();
    await ctxSet(this.ctx, contextKey(sessionId), history, this.settings.contextStore);
    this.touch(sessionId);
    this.evictIdle();
    while (this.used.size > this.settings.maxSessions) this.evict(this.used.keys().next().value!);
  }

  /**
   * Deletes the conversation of `sessionId`.
   * @throws the context store's error when it cannot write.
   */
  async clear(sessionId: string): Promise<void> {
    await this.load();
    this.used.delete(sessionId);
    await ctxSet(this.ctx, contextKey(sessionId), undefined, this.settings.contextStore);
  }

  /** Evicts the conversations idle for `sessionIdleMs` (the sweep calls it; so do reads and writes). */
  evictIdle(): void {
    const oldest = this.now() - this.settings.sessionIdleMs;
    for (const [id, at] of this.used) {
      if (at > oldest) break; // in order of use: the rest are newer
      this.evict(id);
    }
  }

  /** Stops the idle sweep. The conversations stay in the context store. */
  close(): void {
    this.closed = true;
    clearInterval(this.sweeper);
    this.sweeper = undefined;
  }

  private touch(sessionId: string): void {
    this.used.delete(sessionId);
    this.used.set(sessionId, this.now());
  }

  private evict(sessionId: string): void {
    this.used.delete(sessionId);
    ctxSet(this.ctx, contextKey(sessionId), undefined, this.settings.contextStore).catch((e: Error) => this.opts.onError?.(e, sessionId));
  }

  /** Lists the conversations already in the store (once) and starts the idle sweep. */
  private load(): Promise<void> {
    this.loading ??= new Promise<void>((resolve) => {
      this.ctx.keys(this.settings.contextStore ?? '_', (err, keys) => {
        if (err) this.opts.onError?.(err);
        const at = this.now();
        for (const key of keys ?? []) {
          if (key.startsWith(KEY_PREFIX) && !this.used.has(key.slice(KEY_PREFIX.length))) this.used.set(key.slice(KEY_PREFIX.length), at);
        }
        while (this.used.size > this.settings.maxSessions) this.evict(this.used.keys().next().value!);
        resolve();
      });
    }).then(() => {
      if (this.closed) return;
      const every = this.opts.sweepMs ?? Math.min(this.settings.sessionIdleMs, 60_000);
      this.sweeper = setInterval(() => this.evictIdle(), every);
      this.sweeper.unref();
    });
    return this.loading;
  }
}

interface SessionState {
  /** Settles when the last queued run of the session has ended. */
  tail: Promise<void>;
  /** Settles when the resets issued so far have written their empty history (never rejects). */
  clearing: Promise<void>;
  /** Queued, running and clearing work of the session; the entry goes when it drops to 0. */
  active: number;
  /** Resets seen while the entry lived. */
  resets: number;
}

/**
 * The runs of one llm-agent node, per session id: a queue per session (a run starts once every
 * earlier run of its session has ended, rejected or not), and resets that take effect at once.
 * State is kept only while a session has queued, running or clearing work, so it stays bounded
 * by the messages in flight.
 */
export class SessionRuns {
  private readonly sessions = new Map<string, SessionState>();

  /** Sessions with work in flight. */
  get size(): number {
    return this.sessions.size;
  }

  private enter(sessionId: string): SessionState {
    let s = this.sessions.get(sessionId);
    if (!s) {
      s = { tail: Promise.resolve(), clearing: Promise.resolve(), active: 0, resets: 0 };
      this.sessions.set(sessionId, s);
    }
    s.active++;
    return s;
  }

  private leave(sessionId: string, s: SessionState): void {
    if (--s.active === 0 && this.sessions.get(sessionId) === s) this.sessions.delete(sessionId);
  }

  /**
   * Queues `task` behind the earlier runs of `sessionId` (and behind the resets issued before it
   * starts). `task` gets `stale()`, which turns true once a reset of the session arrives after
   * the task started: the task must then not store its history.
   * @returns what `task` resolves with; rejects as `task` does.
   */
  run<T>(sessionId: string, task: (stale: () => boolean) => Promise<T>): Promise<T> {
    const s = this.enter(sessionId);
    const result = s.tail.then(() => s.clearing).then(() => {
      const at = s.resets;
      return task(() => s.resets !== at);
    });
    const ended = result.then(() => undefined, () => undefined);
    s.tail = ended;
    void ended.then(() => this.leave(sessionId, s));
    return result;
  }

  /**
   * Resets `sessionId` now: runs under way see `stale()` turn true, and runs that have not
   * started yet start after `clear` has finished (whether it worked or not).
   * @param clear writes the empty history (see {@link clearConversation}).
   * @returns `clear`'s promise: rejects with the store's error.
   */
  reset(sessionId: string, clear: () => Promise<void>): Promise<void> {
    const s = this.enter(sessionId);
    s.resets++;
    const cleared = Promise.resolve().then(clear);
    const settled = cleared.then(() => undefined, () => undefined);
    s.clearing = Promise.all([s.clearing, settled]).then(() => undefined);
    void settled.then(() => this.leave(sessionId, s));
    return cleared;
  }
}

/** A message's conversation, and how to remember its outcome. */
export interface Conversation {
  sessionId: string;
  /** Messages for the loop: remembered history (unless `msg.messages` is given) + the new turn. */
  messages: ChatCompletionMessageParam[];
  /** True when nothing new was asked (e.g. only `msg.reset`). */
  empty: boolean;
  /**
   * Stores a finished run's transcript; no-op when memory is off, `msg.messages` was given, or
   * `opts.stale()` says a reset came during the run.
   */
  remember(transcript: readonly ChatCompletionMessageParam[]): Promise<void>;
}

/** True when a message's run uses the remembered history of its session (memory on, no `msg.messages`). */
export function usesMemory(msg: ConversationInput, settings: Pick<LlmSettings, 'memoryMessages'>): boolean {
  return settings.memoryMessages > 0 && msg.messages === undefined;
}

/**
 * Builds the conversation of one input message. It does not apply `msg.reset`: the node does
 * that when the message arrives ({@link SessionRuns.reset}, {@link clearConversation}).
 * @param store the node's conversations (read and written through it, so they stay bounded).
 * @param opts.stale asked just before storing: true stops {@link Conversation.remember}.
 * @throws InputError for `msg.messages` that is not an array of chat messages, a bad image, or
 *   images while the node says the model does not accept them.
 */
export async function openConversation(msg: ConversationInput, settings: LlmSettings, store: ConversationStore, opts: { stale?: () => boolean } = {}): Promise<Conversation> {
  const sessionId = sessionIdOf(msg);
  const useMemory = usesMemory(msg, settings);
  let messages: ChatCompletionMessageParam[] = [];
  if (msg.messages !== undefined) {
    if (!Array.isArray(msg.messages)) throw new InputError('bad-messages', { type: typeof msg.messages });
    const bad = msg.messages.findIndex((m) => typeof m !== 'object' || m === null || typeof (m as { role?: unknown }).role !== 'string');
    if (bad >= 0) throw new InputError('bad-message', { index: bad });
    messages = [...msg.messages] as ChatCompletionMessageParam[];
  } else if (useMemory) {
    const stored = await store.read(sessionId);
    if (Array.isArray(stored)) messages = [...stored] as ChatCompletionMessageParam[]; // a copy: the memory context store hands out the stored array itself
  }
  const turn = userTurn(msg, settings.vision);
  const empty = turn === undefined && msg.messages === undefined;
  if (turn) messages.push(turn);
  return {
    sessionId,
    messages,
    empty,
    async remember(transcript) {
      if (!useMemory) return;
      // the system prompt is added to every run; keeping it would freeze an old one
      const start = settings.systemPrompt && transcript[0]?.role === 'system' && transcript[0].content === settings.systemPrompt ? 1 : 0;
      // trimmed in steps (to half the limits), not by one turn a run: the runs between two trims
      // start with the same messages, which a prompt cache keeps (issue 20). Placeholders are
      // made once, when an image is first stored, and stay the same text afterwards.
      const kept = trimHistory(toMemory(transcript.slice(start)), { maxMessages: settings.memoryMessages, maxTokens: settings.memoryTokens, lowWater: MEMORY_LOW_WATER });
      // checked right before the write, in the same tick: a reset's write always comes after ours
      if (opts.stale?.()) return;
      await store.write(sessionId, kept);
    },
  };
}
