/**
 * The message contract between ToolMesh nodes, defined once: `msg.toolCall` (a tool call on its
 * way to be run, from llm-agent or tool-in, through confirm-gate and audit-log to remote-tool)
 * and `msg.toolResult` (its result on the way back, from remote-tool, confirm-gate or a flow, to
 * llm-agent, audit-log or tool-out). Each is a zod schema and the TypeScript type inferred from
 * it. Unknown extra fields are kept, so nodes can carry their own (tool-in's `callerId`,
 * llm-agent's `modelCallId`). No Node-RED imports; errors carry the field, the expectation and
 * what was found, and each node turns them into text through its own catalog.
 */
import { z } from 'zod';
import { CallToolResultSchema, isValidId, RISK_LEVELS } from '@toolmesh/agent/protocol';

/** A JSON-RPC request id, or an id a node made (string or integer). */
const IdSchema = z.union([z.string(), z.number().int()]);

/**
 * `msg.toolCall`:
 * - `agent` (agent id, `^[A-Za-z0-9_-]{1,64}$`) and `tool` (non-empty) name what to call;
 * - `arguments`: the tool's arguments (a JSON object; missing means `{}`);
 * - `id`: the call's id, which its `msg.toolResult.id` repeats (llm-agent matches results by it);
 * - `name`: the function name the model used (llm-agent);
 * - `risk`: `low` | `medium` | `high` | `critical`, as the caller knows it;
 * - `approval`: an approval token a confirm-gate signed (docs/protocol.md, "Approval tokens");
 * - `dryRun`: ask the agent for a preview only;
 * - `timeoutMs`: how long the caller waits for the result, ms (llm-agent);
 * - `callerId`: the caller on the mesh that made the call (tool-in).
 */
export const ToolCallSchema = z.looseObject({
  id: IdSchema.optional(),
  name: z.string().optional(),
  agent: z.string().refine(isValidId),
  tool: z.string().min(1),
  arguments: z.record(z.string(), z.unknown()).optional(),
  risk: z.enum(RISK_LEVELS).optional(),
  approval: z.string().min(1).optional(),
  dryRun: z.boolean().optional(),
  timeoutMs: z.number().int().positive().optional(),
  callerId: z.string().optional(),
});
/** `msg.toolCall` (see {@link ToolCallSchema}). */
export type ToolCall = z.infer<typeof ToolCallSchema>;

/**
 * `msg.toolResult`: an MCP CallToolResult (`content` array, optional `structuredContent`
 * object and `isError`; docs/protocol.md, "Messages") plus, from remote-tool and confirm-gate,
 * `id` (the `msg.toolCall.id` it answers), `agent`, `tool` and `durationMs` (ms).
 */
export const ToolResultSchema = CallToolResultSchema.extend({
  id: IdSchema.optional(),
  agent: z.string().optional(),
  tool: z.string().optional(),
  durationMs: z.number().nonnegative().optional(),
});
/** `msg.toolResult` (see {@link ToolResultSchema}). */
export type ToolResult = z.infer<typeof ToolResultSchema>;

/**
 * What a field should hold, as a short catalog key suffix (each node that reports it has
 * `<node>.expect.<kind>`): `object`, `agent-id`, `name`, `id`, `risk`, `token`, `boolean`, `ms`,
 * `content`, `text`.
 */
export type Expectation = 'object' | 'agent-id' | 'name' | 'id' | 'risk' | 'token' | 'boolean' | 'ms' | 'content' | 'text';

const EXPECTED: Record<string, Expectation> = {
  agent: 'agent-id', tool: 'name', name: 'name', id: 'id', arguments: 'object', risk: 'risk', approval: 'token',
  dryRun: 'boolean', timeoutMs: 'ms', durationMs: 'ms', callerId: 'text', content: 'content', structuredContent: 'object',
  isError: 'boolean',
};

/** A message that breaks the contract: which field, what it should hold, what it holds. */
export class ToolMessageError extends Error {
  /** The field as a user writes it, e.g. `msg.toolCall.agent`. */
  readonly field: string;
  readonly expected: Expectation;
  /** What the field holds: `missing`, a kind (`array`, `null` ...), or a short JSON rendering. */
  readonly got: string;

  constructor(field: string, expected: Expectation, got: string) {
    super(`${field} must be ${expected}, got ${got}`);
    this.field = field;
    this.expected = expected;
    this.got = got;
  }
}

/** Short rendering of a wrong value: `missing`, `null`, `array`, `object`, or JSON of a scalar (≤ 40 characters). */
function describe(v: unknown): string {
  if (v === undefined) return 'missing';
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  if (typeof v === 'object') return 'object';
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 40 ? `${text.slice(0, 39)}…` : text;
}

function valueAt(root: unknown, path: readonly PropertyKey[]): unknown {
  let v = root;
  for (const k of path) v = v !== null && typeof v === 'object' ? (v as Record<PropertyKey, unknown>)[k] : undefined;
  return v;
}

function parseWith<T>(schema: z.ZodType<T>, value: unknown, field: string): T {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) throw new ToolMessageError(field, 'object', describe(value));
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const issue = r.error.issues[0];
  // the first path segment names the field; deeper ones (content.0.text) are shown as is
  const path = issue.path.filter((k): k is string | number => typeof k !== 'symbol');
  const expected = path.length > 1 && path[0] === 'content' ? 'content' : EXPECTED[String(path[0])] ?? 'object';
  const at = path.length > 1 && path[0] === 'content' ? path.slice(0, 2) : path.slice(0, 1);
  throw new ToolMessageError([field, ...at].join('.'), expected, describe(valueAt(value, at)));
}

/**
 * Checks `msg.toolCall`.
 * @param value what the message holds there.
 * @param field how to name it in the error (default `msg.toolCall`).
 * @returns the call, with `arguments` defaulted to `{}`; extra fields kept.
 * @throws ToolMessageError naming the first field that breaks {@link ToolCallSchema}.
 */
export function parseToolCall(value: unknown, field = 'msg.toolCall'): ToolCall & { arguments: Record<string, unknown> } {
  const call = parseWith(ToolCallSchema, value, field);
  return { ...call, arguments: call.arguments ?? {} };
}

/**
 * Checks `msg.toolResult`.
 * @throws ToolMessageError naming the first field that breaks {@link ToolResultSchema}.
 */
export function parseToolResult(value: unknown, field = 'msg.toolResult'): ToolResult {
  return parseWith(ToolResultSchema, value, field);
}

/** True when `value` claims to be a ready tool result: an object with a `content` array. */
export function looksLikeToolResult(value: unknown): value is { content: unknown[] } {
  return value !== null && typeof value === 'object' && Array.isArray((value as { content?: unknown }).content);
}

/**
 * The call id a message refers to: `msg.toolResult.id`, else `msg.toolCall.id`, when it is a
 * string; `undefined` otherwise. Reads without validating (a result that breaks the contract
 * still finds its call).
 */
export function callIdOf(msg: { toolCall?: unknown; toolResult?: unknown }): string | undefined {
  const idIn = (v: unknown) => (v !== null && typeof v === 'object' ? (v as { id?: unknown }).id : undefined);
  const fromResult = idIn(msg.toolResult);
  if (typeof fromResult === 'string') return fromResult;
  const fromCall = idIn(msg.toolCall);
  return typeof fromCall === 'string' ? fromCall : undefined;
}
