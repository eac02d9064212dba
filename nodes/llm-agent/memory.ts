/**
 * Helpers for keeping a conversation between runs (the node stores it in Node-RED context):
 * {@link toMemory} drops image data, {@link trimHistory} bounds the length without leaving a
 * transcript the Chat Completions API would refuse (OpenAI API reference: every assistant
 * `tool_calls[i].id` needs its `tool` message before the next turn, and a `tool` message must
 * answer a preceding `tool_calls`).
 */
import type { ChatCompletionContentPart, ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { RESULTS_HEADING } from './json-tools';
import { base64Bytes, sizeText } from './tool-results';

/** `data:<mime>[;base64],<data>` (RFC 2397). */
const DATA_URL = /^data:([^;,]*)(;base64)?,/;

/** The placeholder text for a data-URL image; `source` from the label before it, if any. Size: decoded base64, else the URL-encoded length. */
function placeholder(url: string, source: string | undefined): string {
  const m = DATA_URL.exec(url)!;
  const data = url.slice(m[0].length);
  const bytes = m[2] ? base64Bytes(data) : data.length;
  return `[image ${m[1] || 'unknown type'} ${sizeText(bytes)}${source ? ` from tool ${source}` : ''} — not kept in memory]`;
}

/** The `from tool <source>` of an image label (`tool-results.ts` `imageLabel`). */
const LABEL_SOURCE = /from tool (\S+)/;

/**
 * A copy of `messages` fit for storage: each `image_url` part whose URL is a data URL becomes a
 * text part such as `[image image/jpeg 182 KB from tool pi/take_photo — not kept in memory]`
 * (the source is read from the label part that precedes tool images). Other parts, http(s) image
 * URLs and the input objects themselves are left as they are.
 */
export function toMemory(messages: readonly ChatCompletionMessageParam[]): ChatCompletionMessageParam[] {
  return messages.map((m) => {
    if (!Array.isArray(m.content) || !m.content.some((p) => p.type === 'image_url' && DATA_URL.test(p.image_url.url))) return m;
    const parts = m.content as ChatCompletionContentPart[];
    const content = parts.map((p, i): ChatCompletionContentPart => {
      if (p.type !== 'image_url' || !DATA_URL.test(p.image_url.url)) return p;
      const prev = parts[i - 1];
      const source = prev?.type === 'text' ? LABEL_SOURCE.exec(prev.text)?.[1] : undefined;
      return { type: 'text', text: placeholder(p.image_url.url, source) };
    });
    return { ...m, content } as ChatCompletionMessageParam;
  });
}

/**
 * Estimated tokens of one message: `ceil(length of its JSON / 4)` (about 4 characters per token
 * for English text with OpenAI's tokenizers; an estimate, not a count).
 */
export function estimateTokens(message: ChatCompletionMessageParam): number {
  return Math.ceil(JSON.stringify(message).length / 4);
}

/** Limits of {@link trimHistory}; either may be omitted. */
export interface TrimLimits {
  /** Most messages to keep, leading system messages included. */
  maxMessages?: number;
  /** Most estimated tokens ({@link estimateTokens}) to keep, leading system messages included. */
  maxTokens?: number;
  /**
   * Once a limit is exceeded, trim down to this fraction of each limit (0 < lowWater <= 1;
   * default 1: just enough). Below 1 the history is trimmed in steps, once every few runs, so
   * the runs in between send the same start of the conversation and a prompt cache keeps it.
   */
  lowWater?: number;
}

/** The {@link TrimLimits.lowWater} the llm-agent stores its conversations with: half the limits after a trim. */
export const MEMORY_LOW_WATER = 0.5;

const isSystem = (m: ChatCompletionMessageParam) => m.role === 'system' || m.role === 'developer';

/**
 * Splits the messages after the leading system ones into turns. A turn starts at a `user`
 * message, except one that continues a tool round: right after a `tool` message (the images of
 * tool results) or starting with the json-mode results heading. Anything before the first user
 * message is a turn. An assistant message with `tool_calls` and its tool messages are therefore
 * never split.
 */
function turnsOf(messages: readonly ChatCompletionMessageParam[]): ChatCompletionMessageParam[][] {
  const turns: ChatCompletionMessageParam[][] = [];
  messages.forEach((m, i) => {
    const text = typeof m.content === 'string' ? m.content : Array.isArray(m.content) && m.content[0]?.type === 'text' ? m.content[0].text : '';
    const startsTurn = m.role === 'user' && messages[i - 1]?.role !== 'tool' && !text.startsWith(RESULTS_HEADING);
    if (startsTurn || !turns.length) turns.push([m]);
    else turns.at(-1)!.push(m);
  });
  return turns;
}

/**
 * A copy of `messages` within `limits`: the leading system/developer messages are always kept,
 * then whole turns (see {@link turnsOf}) are dropped, oldest first, until both limits hold
 * (once one is exceeded: until both hold at `lowWater` of themselves). The
 * newest turn is always kept, even alone over a limit, so the result never ends mid-exchange and
 * never holds a `tool` message without its assistant `tool_calls` message, or the reverse. Without
 * limits the messages are returned as they are (copied).
 */
export function trimHistory(messages: readonly ChatCompletionMessageParam[], limits: TrimLimits): ChatCompletionMessageParam[] {
  let lead = 0;
  while (lead < messages.length && isSystem(messages[lead])) lead++;
  const system = messages.slice(0, lead);
  const turns = turnsOf(messages.slice(lead));
  const tokens = turns.map((t) => t.reduce((sum, m) => sum + estimateTokens(m), 0));
  let count = system.length + turns.reduce((sum, t) => sum + t.length, 0);
  let total = system.reduce((sum, m) => sum + estimateTokens(m), 0) + tokens.reduce((a, b) => a + b, 0);
  let first = 0;
  const over = (f: number) => (limits.maxMessages !== undefined && count > limits.maxMessages * f) || (limits.maxTokens !== undefined && total > limits.maxTokens * f);
  const low = limits.lowWater !== undefined && limits.lowWater > 0 && limits.lowWater < 1 ? limits.lowWater : 1;
  const fraction = over(1) ? low : 1;
  while (first < turns.length - 1 && over(fraction)) {
    count -= turns[first].length;
    total -= tokens[first];
    first++;
  }
  return [...system, ...turns.slice(first).flat()];
}
