/**
 * Tool calling for models without native tool calls ("JSON in text"): the tools are described in
 * a system message with an exact reply format, the model answers with a JSON object, and the
 * results come back as a `user` message. The transcript stays plain Chat Completions (no `tools`,
 * no `tool_calls`, no `tool` messages), so any OpenAI-compatible server accepts it.
 */
import type { ChatCompletionContentPart, ChatCompletionFunctionTool, ChatCompletionSystemMessageParam, ChatCompletionUserMessageParam } from 'openai/resources/chat/completions';
import { imageParts, type ToolImage } from './tool-results';
import { checkJsonLimits } from '@toolmesh/agent/protocol/json-limits';

/** A tool call found in a reply; `arguments` as the model wrote it (object, JSON text, or anything). */
export interface TextToolCall {
  name: string;
  arguments: unknown;
}

/** Most `{` positions tried when looking for a JSON object inside prose. */
const MAX_CANDIDATES = 32;

/** The first line of every results message; the system message refers to it. */
export const RESULTS_HEADING = 'Tool results';

/**
 * The system message that offers `tools` (name, description, parameters JSON Schema, one JSON
 * object per line) and states the reply format: one JSON object
 * `{"tool_calls":[{"name":"<tool name>","arguments":{...}}]}` and nothing else.
 */
export function jsonToolsPrompt(tools: readonly ChatCompletionFunctionTool[]): ChatCompletionSystemMessageParam {
  const list = tools.map((t) => JSON.stringify({ name: t.function.name, description: t.function.description ?? '', parameters: t.function.parameters ?? {} }));
  return {
    role: 'system',
    content: [
      'You can call tools. To call tools, reply with exactly one JSON object and nothing else, in this format:',
      '{"tool_calls":[{"name":"<tool name>","arguments":{<arguments that match the tool\'s parameters>}}]}',
      'Put several calls in the list when they do not depend on each other.',
      `The results come back in a user message that starts with "${RESULTS_HEADING}".`,
      'When you need no tool, or have what you need, answer in plain text without any tool-call JSON.',
      'Tools (one JSON object per line: name, description, parameters as JSON Schema):',
      ...list,
    ].join('\n'),
  };
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * One call in any accepted shape: `{name, arguments}`, `{name, parameters}` (Llama 3.1's JSON
 * format), `{tool, args}`, `{type, function: {name, arguments}}`. `strict` (a call standing alone,
 * not in a `tool_calls` list) also requires the arguments key, so an answer that merely is JSON
 * with a `name` is not taken for a call.
 */
function callOf(v: unknown, strict: boolean): TextToolCall | undefined {
  if (!isObject(v)) return undefined;
  const fn = isObject(v.function) ? v.function : v;
  const name = fn.name ?? v.tool;
  if (typeof name !== 'string' || !name) return undefined;
  const args = fn.arguments ?? v.args ?? fn.parameters;
  if (strict && args === undefined) return undefined;
  return { name, arguments: args ?? {} };
}

/** The calls a parsed JSON value asks for, or `undefined` when it is not a tool-call request. */
function callsOf(value: unknown, allowArray: boolean): TextToolCall[] | undefined {
  const list = isObject(value) && Array.isArray(value.tool_calls) ? value.tool_calls
    : allowArray && Array.isArray(value) ? value
    : undefined;
  if (list) {
    const calls = list.map((v) => callOf(v, false));
    return calls.length && calls.every(Boolean) ? calls as TextToolCall[] : undefined;
  }
  const one = callOf(value, true);
  return one ? [one] : undefined;
}

/** The end (exclusive) of the balanced JSON object or array starting at `start`, or -1. */
function balancedEnd(text: string, start: number): number {
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{' || c === '[') depth++;
    else if (c === '}' || c === ']') {
      if (--depth === 0) return i + 1;
    }
  }
  return -1;
}

/** JSON from a model's reply, or undefined when it does not parse or is over the shape limits (protocol/json-limits.ts). */
function tryParse(text: string): unknown {
  try {
    const v: unknown = JSON.parse(text);
    return checkJsonLimits(v) ? undefined : v;
  } catch {
    return undefined;
  }
}

/**
 * The tool calls a reply asks for, or `undefined` when it is a final answer. Accepted: the
 * whole reply as JSON, a fenced block (```json ... ``` or ``` ... ```), or a JSON object inside
 * prose (the first that parses and has a tool-call shape); shapes `{"tool_calls":[...]}` (items
 * `{name, arguments}`, `{tool, args}` or OpenAI's `{type, function: {name, arguments}}`), a single
 * `{name, arguments}` or `{tool, args}`, and, for the whole reply or a fenced block, a bare list
 * of calls.
 */
export function extractJsonToolCalls(text: string): TextToolCall[] | undefined {
  const trimmed = text.trim();
  if (!trimmed.includes('{')) return undefined;
  const whole = callsOf(tryParse(trimmed), true);
  if (whole) return whole;
  for (const m of trimmed.matchAll(/```[a-zA-Z]*\s*\n?([\s\S]*?)```/g)) {
    const fenced = callsOf(tryParse(m[1].trim()), true);
    if (fenced) return fenced;
  }
  let tried = 0;
  for (let i = trimmed.indexOf('{'); i >= 0 && tried < MAX_CANDIDATES; i = trimmed.indexOf('{', i + 1), tried++) {
    const end = balancedEnd(trimmed, i);
    if (end < 0) continue;
    const calls = callsOf(tryParse(trimmed.slice(i, end)), false);
    if (calls) return calls;
  }
  return undefined;
}

/** One result for {@link jsonResultsMessage}. */
export interface TextToolResult {
  id: string;
  name: string;
  text: string;
}

/**
 * The `user` message that returns a turn's results in json mode: the heading, each result under
 * `[<call id>] <function name>:`, a reminder of the reply format; with images, content parts
 * (the text, then each image's label and `image_url` part).
 */
export function jsonResultsMessage(results: readonly TextToolResult[], images: readonly ToolImage[] = []): ChatCompletionUserMessageParam {
  const text = [
    `${RESULTS_HEADING} (one per call, in call order):`,
    ...results.map((r) => `[${r.id}] ${r.name}:\n${r.text}`),
    'Answer in plain text now, or reply with one {"tool_calls":[...]} JSON object to call more tools.',
  ].join('\n\n');
  if (!images.length) return { role: 'user', content: text };
  const parts: ChatCompletionContentPart[] = [{ type: 'text', text }, ...imageParts(images)];
  return { role: 'user', content: parts };
}
