/**
 * What one input message asks of the llm-agent: its conversation (memory + `msg.messages` +
 * `msg.payload` + `msg.images`), and how the result is remembered. Conversations live in
 * Node-RED context under `llm-agent:<sessionId>`, so a persistent context store keeps them
 * across restarts; they are stored with image bytes replaced by placeholders ({@link toMemory})
 * and trimmed to the node's bounds ({@link trimHistory}). No Node-RED imports: the context is
 * passed in.
 */
import type { ChatCompletionContentPart, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { toMemory, trimHistory } from './memory';
import type { LlmSettings } from './settings';

/** The parts of a Node-RED context (node.context()) this module uses. */
export interface ContextLike {
  get(key: string, store: string | undefined, cb: (err: Error | null | undefined, value?: unknown) => void): void;
  set(key: string, value: unknown, store: string | undefined, cb: (err?: Error | null) => void): void;
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

const contextKey = (sessionId: string) => `llm-agent:${sessionId}`;

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

/** A message's conversation, and how to remember its outcome. */
export interface Conversation {
  sessionId: string;
  /** Messages for the loop: remembered history (unless `msg.messages` is given) + the new turn. */
  messages: ChatCompletionMessageParam[];
  /** True when nothing new was asked (e.g. only `msg.reset`). */
  empty: boolean;
  /** Stores a finished run's transcript (no-op when memory is off or `msg.messages` was given). */
  remember(transcript: readonly ChatCompletionMessageParam[]): Promise<void>;
}

/**
 * Builds the conversation of one input message.
 * @throws InputError for `msg.messages` that is not an array of chat messages, a bad image, or
 *   images while the node says the model does not accept them.
 */
export async function openConversation(msg: ConversationInput, settings: LlmSettings, ctx: ContextLike): Promise<Conversation> {
  const sessionId = sessionIdOf(msg);
  const key = contextKey(sessionId);
  const store = settings.contextStore;
  const useMemory = settings.memoryMessages > 0 && msg.messages === undefined;
  if (msg.reset) await ctxSet(ctx, key, undefined, store);
  let messages: ChatCompletionMessageParam[] = [];
  if (msg.messages !== undefined) {
    if (!Array.isArray(msg.messages)) throw new InputError('bad-messages', { type: typeof msg.messages });
    const bad = msg.messages.findIndex((m) => typeof m !== 'object' || m === null || typeof (m as { role?: unknown }).role !== 'string');
    if (bad >= 0) throw new InputError('bad-message', { index: bad });
    messages = [...msg.messages] as ChatCompletionMessageParam[];
  } else if (useMemory) {
    const stored = await ctxGet(ctx, key, store);
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
      const kept = trimHistory(toMemory(transcript.slice(start)), { maxMessages: settings.memoryMessages, maxTokens: settings.memoryTokens });
      await ctxSet(ctx, key, kept, store);
    },
  };
}
