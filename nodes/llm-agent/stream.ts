/**
 * Assembles a streamed chat completion (OpenAI API reference, "The chat completion chunk
 * object": `choices[0].delta.content` pieces and `delta.tool_calls[i]` fragments keyed by
 * `index`, then `usage` in a last chunk when `stream_options.include_usage` was asked) from what
 * real servers send, which is not always that:
 * - the whole call in one chunk, every call with `index: 0` (Ollama, ollama/ollama#15457 and
 *   #15497; LiteLLM's Gemini and Responses bridges, BerriAI/litellm#16194 and #21331): a chunk
 *   whose id differs from the id already at that index starts a new call, and so does one that
 *   names a function (with arguments) once the arguments at that index are complete JSON;
 * - no `index` at all (Ollama before 0.4.7, ollama/ollama#7881): the same rules against the last
 *   call (a new id is looked up among all calls), anything else continues the last one;
 * - the id and an empty or repeated name on every fragment (LM Studio 0.3.16,
 *   lmstudio-bug-tracker#649): an equal or empty name is not appended again;
 * - `arguments` as a JSON object in one piece (llama.cpp#20198 builds): it replaces what was there;
 * - `usage` on a chunk that still has choices (LiteLLM, BerriAI/litellm#17136), or on every
 *   chunk (vLLM `continuous_usage_stats`): the last one seen counts.
 */
import type { ChatCompletionChunk } from 'openai/resources/chat/completions';
import type { CompletionUsage } from 'openai/resources/completions';
import type { RawToolCall } from './providers';

/** One assistant turn put together from its chunks. */
export interface AssembledTurn {
  /** The text, or `null` when no chunk carried any. */
  content: string | null;
  /** Tool calls in order of first appearance; `arguments` is JSON text (possibly incomplete). */
  toolCalls: RawToolCall[];
  usage?: CompletionUsage;
  /** At least one chunk had a choice (a stream without any is a bad response). */
  sawChoice: boolean;
}

interface Slot {
  id: string;
  name: string;
  args: string;
}

/** A `delta.tool_calls[i]` as servers send it (every field optional, `arguments` maybe an object). */
interface DeltaCall {
  index?: unknown;
  id?: unknown;
  function?: { name?: unknown; arguments?: unknown } | null;
}

/**
 * True when a fragment cannot belong to `slot`: it has another id; or the slot's arguments are
 * already complete JSON and the fragment names another function, or names the same one again
 * together with arguments (a whole second call). A name split over fragments is joined instead,
 * and a repeated name without arguments is ignored.
 */
function startsNewCall(slot: Slot, id: string, name: string, args: unknown): boolean {
  if (id && slot.id && id !== slot.id) return true;
  if (!name || !slot.name) return false;
  try {
    JSON.parse(slot.args);
  } catch {
    return false;
  }
  if (name !== slot.name) return !name.startsWith(slot.name);
  return args !== undefined && args !== null && args !== '';
}

/** Collects tool-call fragments into slots, tolerating the quirks listed in the module doc. */
class ToolCallAssembler {
  readonly slots: Slot[] = [];
  /** The newest slot for each wire `index`. */
  private readonly byIndex = new Map<number, Slot>();

  add(d: DeltaCall): void {
    const id = typeof d.id === 'string' ? d.id : '';
    const name = typeof d.function?.name === 'string' ? d.function.name : '';
    const args = d.function?.arguments;
    let slot: Slot | undefined;
    if (typeof d.index === 'number') {
      slot = this.byIndex.get(d.index);
      if (!slot || startsNewCall(slot, id, name, args)) this.byIndex.set(d.index, slot = this.open());
    } else if (id) {
      slot = this.slots.find((s) => s.id === id) ?? this.open();
    } else {
      const last = this.slots.at(-1);
      slot = last && !startsNewCall(last, id, name, args) ? last : this.open();
    }
    if (id && !slot.id) slot.id = id;
    if (name && name !== slot.name) slot.name = name.startsWith(slot.name) ? name : slot.name + name;
    if (typeof args === 'string') slot.args += args;
    else if (args !== undefined && args !== null) slot.args = JSON.stringify(args);
  }

  private open(): Slot {
    const slot = { id: '', name: '', args: '' };
    this.slots.push(slot);
    return slot;
  }
}

/**
 * Reads `chunks` to the end and returns the assembled turn; `onText` gets each non-empty content
 * piece as it arrives. Only choice 0 is read.
 * @throws whatever iterating `chunks` throws (HTTP or connection errors, aborts).
 */
export async function assembleStream(chunks: AsyncIterable<ChatCompletionChunk>, onText?: (text: string) => void): Promise<AssembledTurn> {
  let content: string | null = null;
  let usage: CompletionUsage | undefined;
  let sawChoice = false;
  const calls = new ToolCallAssembler();
  for await (const chunk of chunks) {
    if (chunk.usage) usage = chunk.usage;
    const choice = chunk.choices?.find((c) => (c.index ?? 0) === 0);
    if (!choice) continue;
    sawChoice = true;
    const delta = choice.delta;
    if (!delta) continue;
    if (typeof delta.content === 'string' && delta.content) {
      content = (content ?? '') + delta.content;
      onText?.(delta.content);
    }
    if (Array.isArray(delta.tool_calls)) for (const d of delta.tool_calls) calls.add(d as DeltaCall);
  }
  const toolCalls = calls.slots.map((s): RawToolCall => ({ id: s.id, type: 'function', function: { name: s.name, arguments: s.args } }));
  return { content, toolCalls, usage, sawChoice };
}
