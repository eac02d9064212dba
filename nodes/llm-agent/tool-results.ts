/**
 * What a model reads of a tool result (MCP CallToolResult, docs/protocol.md): text for every
 * tool message, and images for models that accept them. Chat Completions tool messages carry text
 * only (OpenAI API reference, `ChatCompletionToolMessageParam.content`: string or text parts), so
 * images travel in one `user` message after the tool messages of a turn.
 */
import type { ChatCompletionContentPart, ChatCompletionUserMessageParam } from 'openai/resources/chat/completions';
import { toolErrorOf, type CallToolResult } from '@toolmesh/agent/protocol';

/** Longest `details` text put into an error result, characters. */
const MAX_DETAILS_CHARS = 1_000;

/** An image of a tool result, kept for the images message. */
export interface ToolImage {
  /** base64 */
  data: string;
  mimeType: string;
  /** Decoded size, bytes. */
  bytes: number;
  /** `agent/tool`, or the function name when the call resolved to no tool. */
  source: string;
  /** The tool call's id. */
  callId: string;
}

/** What one tool result becomes: the tool message text and the images to send after it. */
export interface RenderedResult {
  text: string;
  /** Empty unless `vision` was on. */
  images: ToolImage[];
}

/** Decoded size of base64 text, bytes. */
export function base64Bytes(data: string): number {
  const len = data.replace(/\s/g, '').length;
  return Math.max(0, Math.floor((len * 3) / 4) - (data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0));
}

/** A size for people and models: `512 B`, `182 KB`, `1.4 MB`. */
export function sizeText(bytes: number): string {
  if (bytes < 1024) return `${bytes} B`;
  if (bytes < 1024 * 1024) return `${Math.round(bytes / 1024)} KB`;
  return `${(bytes / (1024 * 1024)).toFixed(1)} MB`;
}

/**
 * `details` of a tool error, compact: zod `issues` as `[{path, message}]` (what a model needs to
 * fix its arguments), other details as JSON without the wire-only `rpcCode`/`code`; cut at
 * {@link MAX_DETAILS_CHARS}. `undefined` when nothing is left to say.
 */
function compactDetails(details: Record<string, unknown> | undefined): string | undefined {
  if (!details) return undefined;
  const { issues, rpcCode: _rpcCode, code: _code, ...rest } = details;
  const value = Array.isArray(issues) ? issues.map((i: { path?: unknown; message?: unknown }) => ({ path: i?.path, message: i?.message })) : rest;
  if (!Array.isArray(value) && Object.keys(value).length === 0) return undefined;
  const json = JSON.stringify(value);
  return json.length > MAX_DETAILS_CHARS ? `${json.slice(0, MAX_DETAILS_CHARS)}…` : json;
}

/**
 * Renders a tool result for the model.
 * - Failures (`isError`): `CODE: message`, plus `details: <compact JSON>` on a second line (e.g.
 *   zod issues for INVALID_ARGUMENTS), so the model can correct itself; `DENIED` and
 *   `APPROVAL_REQUIRED` read the same way.
 * - Success: the text items joined by newlines, else the JSON of `structuredContent`, else
 *   `(no output)`. Each image item adds, with `vision` on, "(N image(s) attached below)" and goes
 *   to `images`; with `vision` off a line saying it was omitted because the model does not
 *   accept images.
 */
export function renderToolResult(result: CallToolResult, opts: { vision: boolean; source: string; callId: string }): RenderedResult {
  const error = toolErrorOf(result);
  if (error) {
    const details = compactDetails(error.details);
    return { text: `${error.code}: ${error.message}${details ? `\ndetails: ${details}` : ''}`, images: [] };
  }
  const texts: string[] = [];
  const images: ToolImage[] = [];
  for (const item of result.content) {
    if (item.type === 'text' && item.text) texts.push(item.text);
    if (item.type !== 'image' || typeof item.data !== 'string') continue;
    const image: ToolImage = { data: item.data, mimeType: item.mimeType, bytes: base64Bytes(item.data), source: opts.source, callId: opts.callId };
    if (opts.vision) images.push(image);
    else texts.push(`[image ${image.mimeType} ${sizeText(image.bytes)} omitted: this model does not accept images]`);
  }
  if (!texts.length) texts.push(result.structuredContent ? JSON.stringify(result.structuredContent) : images.length ? '' : '(no output)');
  if (images.length) texts.push(`(${images.length} image${images.length > 1 ? 's' : ''} attached below)`);
  return { text: texts.filter(Boolean).join('\n'), images };
}

/** A data URL for an image (RFC 2397). */
export function dataUrl(image: Pick<ToolImage, 'mimeType' | 'data'>): string {
  return `data:${image.mimeType};base64,${image.data}`;
}

/** The text part just before each image of {@link imageParts}; `memory.ts` reads `from tool <source>` back from it. */
export function imageLabel(image: ToolImage, n: number, of: number): string {
  return `Image ${n} of ${of}, from tool ${image.source} (call ${image.callId}):`;
}

/** For each image, a label text part then an `image_url` part with its data URL. */
export function imageParts(images: readonly ToolImage[]): ChatCompletionContentPart[] {
  return images.flatMap((image, i): ChatCompletionContentPart[] => [
    { type: 'text', text: imageLabel(image, i + 1, images.length) },
    { type: 'image_url', image_url: { url: dataUrl(image) } },
  ]);
}

/**
 * The one `user` message that carries the images of a turn's tool results, appended after all
 * tool messages of that turn: `Images from tool results: ...` then, per image, its label and an
 * `image_url` part (OpenAI vision input format).
 */
export function imagesMessage(images: readonly ToolImage[]): ChatCompletionUserMessageParam {
  const sources = [...new Set(images.map((i) => i.source))].join(', ');
  return {
    role: 'user',
    content: [{ type: 'text', text: `Images from tool results: ${images.length} image${images.length > 1 ? 's' : ''} from ${sources}.` }, ...imageParts(images)],
  };
}

/** Image types a {@link ResultPreview} carries (no SVG: it can hold script). */
export const PREVIEW_IMAGE_TYPES: readonly string[] = ['image/png', 'image/jpeg', 'image/gif', 'image/webp'];
/** Longest base64 text of one preview image, characters (1 MiB; about 768 KiB decoded). */
export const MAX_PREVIEW_IMAGE_CHARS = 1024 * 1024;
/** Most images in one preview. */
export const MAX_PREVIEW_IMAGES = 4;
/** Longest preview text, characters. */
export const MAX_PREVIEW_TEXT_CHARS = 500;

/**
 * What a chat card shows of a tool result (`tool-call-end` run events): plain text for people,
 * never HTML, and the images a page may show as they are.
 */
export interface ResultPreview {
  /** The result's text items joined by newlines, else the JSON of `structuredContent`, else `""`; `CODE: message` for a failure; cut at {@link MAX_PREVIEW_TEXT_CHARS} characters (`…` marks a cut). */
  text: string;
  /** Images of the types in {@link PREVIEW_IMAGE_TYPES}, valid base64 of at most {@link MAX_PREVIEW_IMAGE_CHARS} characters, at most {@link MAX_PREVIEW_IMAGES}; shown as `data:<mimeType>;base64,<data>`. */
  images: Array<{ mimeType: string; data: string }>;
  /** Image items left out (other types, too large, not base64, over the count). */
  imagesOmitted: number;
}

const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;

/** The {@link ResultPreview} of a tool result. */
export function resultPreview(result: CallToolResult): ResultPreview {
  const images: ResultPreview['images'] = [];
  let imagesOmitted = 0;
  for (const item of toolErrorOf(result) ? [] : result.content) {
    if (item.type !== 'image') continue;
    const data = typeof item.data === 'string' ? item.data : '';
    const fits = PREVIEW_IMAGE_TYPES.includes(item.mimeType) && data.length > 0 && data.length <= MAX_PREVIEW_IMAGE_CHARS && data.length % 4 === 0 && BASE64.test(data);
    if (fits && images.length < MAX_PREVIEW_IMAGES) images.push({ mimeType: item.mimeType, data });
    else imagesOmitted++;
  }
  const text = toolErrorOf(result) ? renderToolResult(result, { vision: false, source: '', callId: '' }).text
    : result.content.filter((i) => i.type === 'text' && i.text).map((i) => (i as { text: string }).text).join('\n')
      || (result.structuredContent ? JSON.stringify(result.structuredContent) : '');
  return { text: text.length > MAX_PREVIEW_TEXT_CHARS ? `${text.slice(0, MAX_PREVIEW_TEXT_CHARS)}…` : text, images, imagesOmitted };
}
