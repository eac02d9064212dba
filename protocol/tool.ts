/**
 * Tool definitions: plain data plus a function. The zod input schema is
 * the one source of the argument rules; the catalog's JSON Schema is derived from it with
 * `z.toJSONSchema(schema, { io: "input" })` (zod 4 docs, "JSON Schema").
 */
import { z } from 'zod';
import type { CallToolResult, Content, Risk, Tool } from './schemas';

/** What a running tool can see and do besides its arguments. */
export interface ToolContext {
  /** Aborted when the call is cancelled, times out, or its caller is lost. */
  readonly signal: AbortSignal;
  /** Caller id from the request topic. */
  readonly callerId: string;
  /** JSON-RPC id of the request. */
  readonly requestId: string | number;
  /**
   * `_meta.dryRun`: describe what would happen, change nothing. True only for a tool that
   * declares {@link ToolDefinition.supportsDryRun}: any other tool's dry run is refused with
   * NOT_SUPPORTED before it starts.
   */
  readonly dryRun: boolean;
  /** Reports progress (restarts the caller's idle timer). `progress`/`total` are unitless. */
  progress(progress: number, total?: number, message?: string): void;
}

/**
 * What `execute` may return:
 * - a full {@link CallToolResult} (has a `content` array) is sent as is;
 * - any other value becomes `structuredContent` (wrapped as `{ value }` when not an object) and a
 *   JSON text item for models.
 */
export type ToolReturn = CallToolResult | Record<string, unknown> | unknown[] | string | number | boolean | null;

/** One tool: name, description, zod input schema, risk level and the function that runs it. */
export interface ToolDefinition<S extends z.ZodType = z.ZodType> {
  /** Unique within an agent, e.g. `docker_restart_container`. */
  name: string;
  description: string;
  input: S;
  risk: Risk;
  readOnly?: boolean;
  destructive?: boolean;
  idempotent?: boolean;
  /** Default time budget in ms (default 30 000). */
  timeoutMs?: number;
  /**
   * True when `execute` honours `ctx.dryRun` (previews, changes nothing). A dry run skips the
   * approval check, so only a tool that declares this takes one; any other tool answers
   * `_meta.dryRun` with NOT_SUPPORTED and runs nothing. Announced as
   * `annotations.supportsDryRun` (docs/protocol.md, "Catalog").
   */
  supportsDryRun?: boolean;
  /** Runs the tool. Throw {@link ToolError} to fail with a code; other errors become EXECUTION_FAILED. */
  execute(args: z.output<S>, ctx: ToolContext): Promise<ToolReturn> | ToolReturn;
}

/** Default tool time budget, ms. */
export const DEFAULT_TOOL_TIMEOUT_MS = 30_000;

/** Helper that keeps the schema's type for `execute` (no runtime effect). */
export function defineTool<S extends z.ZodType>(def: ToolDefinition<S>): ToolDefinition<S> {
  return def;
}

/** The catalog entry (MCP Tool shape) of a definition. */
export function toCatalogTool(def: ToolDefinition): Tool {
  const inputSchema = z.toJSONSchema(def.input, { io: 'input' }) as Record<string, unknown>;
  delete inputSchema.$schema;
  return {
    name: def.name,
    description: def.description,
    inputSchema,
    annotations: {
      risk: def.risk,
      readOnlyHint: def.readOnly ?? false,
      destructiveHint: def.destructive ?? false,
      idempotentHint: def.idempotent ?? false,
      ...(def.supportsDryRun ? { supportsDryRun: true } : {}),
    },
    timeoutMs: def.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS,
  };
}

function isCallToolResult(v: unknown): v is CallToolResult {
  return typeof v === 'object' && v !== null && Array.isArray((v as CallToolResult).content);
}

/** Turns what `execute` returned into a {@link CallToolResult}. */
export function toCallToolResult(value: ToolReturn): CallToolResult {
  if (isCallToolResult(value)) return value;
  if (typeof value === 'string') return { content: [{ type: 'text', text: value }], isError: false };
  const structured = typeof value === 'object' && value !== null && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : { value };
  const content: Content[] = [{ type: 'text', text: JSON.stringify(structured) }];
  return { content, structuredContent: structured, isError: false };
}
