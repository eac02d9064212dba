/**
 * zod schemas for every message of wire protocol v1 (docs/protocol.md). Payloads are
 * MCP-shaped JSON-RPC 2.0 (MCP spec 2025-11-25, "Tools" and "Cancellation"/"Progress").
 * Unknown fields are kept (`loose`), so later optional fields pass through.
 */
import { z } from 'zod';
import { ID_PATTERN } from './topics';

/** Hard size cap of a request or response payload, bytes (4 MiB); requests are checked before parsing. */
export const DEFAULT_MAX_PAYLOAD_BYTES = 4 * 1024 * 1024;

/** Risk levels, lowest first. */
export const RISK_LEVELS = ['low', 'medium', 'high', 'critical'] as const;
export const RiskSchema = z.enum(RISK_LEVELS);
export type Risk = z.infer<typeof RiskSchema>;

const Id = z.string().regex(ID_PATTERN);

/** `{root}/agents/{id}/status`, retained. The will carries only state, agent and instance. */
export const StatusSchema = z.looseObject({
  state: z.enum(['online', 'offline', 'lost']),
  agent: Id,
  instance: z.string().min(1),
  kind: z.string().optional(),
  version: z.string().optional(),
  catalogRev: z.number().int().optional(),
  ts: z.number().optional(),
});
export type AgentStatus = z.infer<typeof StatusSchema>;

/** `{root}/callers/{id}/status`, retained (optional `caller` in place of `agent`). */
export const CallerStatusSchema = z.looseObject({
  state: z.enum(['online', 'offline', 'lost']),
  caller: Id.optional(),
  instance: z.string().optional(),
  ts: z.number().optional(),
});
export type CallerStatus = z.infer<typeof CallerStatusSchema>;

/** Tool annotations: MCP's hints plus ToolMesh's `risk`. */
export const AnnotationsSchema = z.looseObject({
  risk: RiskSchema,
  readOnlyHint: z.boolean().optional(),
  destructiveHint: z.boolean().optional(),
  idempotentHint: z.boolean().optional(),
  /** The tool takes `_meta.dryRun` (a preview that changes nothing); any other tool answers a dry run with NOT_SUPPORTED. */
  supportsDryRun: z.boolean().optional(),
});

/** One tool of a catalog (MCP Tool shape plus `timeoutMs`, the tool's default budget in ms). */
export const ToolSchema = z.looseObject({
  name: z.string().min(1).max(128),
  description: z.string(),
  inputSchema: z.record(z.string(), z.unknown()),
  outputSchema: z.record(z.string(), z.unknown()).optional(),
  annotations: AnnotationsSchema,
  timeoutMs: z.number().int().positive().optional(),
});
export type Tool = z.infer<typeof ToolSchema>;

/** `{root}/agents/{id}/catalog`, retained. `rev` changes whenever the tools change. */
export const CatalogSchema = z.looseObject({
  agent: z.looseObject({
    id: Id,
    name: z.string().optional(),
    kind: z.string().optional(),
    host: z.string().optional(),
    version: z.string().optional(),
  }),
  rev: z.number().int(),
  tools: z.array(ToolSchema),
});
export type Catalog = z.infer<typeof CatalogSchema>;

/** JSON-RPC id: a string or an integer. */
export const RequestIdSchema = z.union([z.string().min(1).max(256), z.number().int()]);
export type RequestId = z.infer<typeof RequestIdSchema>;

/** Any JSON-RPC 2.0 request (has an id). */
export const RequestSchema = z.looseObject({
  jsonrpc: z.literal('2.0'),
  id: RequestIdSchema,
  method: z.string().min(1),
  params: z.record(z.string(), z.unknown()).optional(),
});
export type RpcRequest = z.infer<typeof RequestSchema>;

/** Any JSON-RPC 2.0 notification (no id). */
export const NotificationSchema = z.looseObject({
  jsonrpc: z.literal('2.0'),
  method: z.string().min(1),
  params: z.record(z.string(), z.unknown()).optional(),
});

/**
 * What `_meta.onBehalfOf` must look like: the label of the client a caller calls for, as the MCP
 * bridge's owner named it (the same rule as mcp/identity.ts `LABEL_PATTERN`): letters, digits,
 * `_`, `.`, `-`; 1–64 characters.
 */
export const ON_BEHALF_OF_PATTERN = /^[A-Za-z0-9_.-]{1,64}$/;

/**
 * `_meta` of a `tools/call`. `timeoutMs` is the budget counted from receipt (the primary bound);
 * `deadline` (epoch ms) is advisory and checked with a skew tolerance.
 *
 * `onBehalfOf` (optional, {@link ON_BEHALF_OF_PATTERN}): the client the caller calls for, e.g. the
 * label of the MCP client whose session made the call through `toolmesh mcp`. It is the caller's
 * word: an agent records it, and may trust it exactly as far as it trusts the caller id (the
 * broker account behind the topic), never further. It grants nothing by itself. A value that
 * does not match makes the params invalid (JSON-RPC -32602); agents older than the field ignore it.
 */
export const CallMetaSchema = z.looseObject({
  progressToken: z.union([z.string(), z.number()]).optional(),
  timeoutMs: z.number().int().positive().optional(),
  deadline: z.number().optional(),
  dryRun: z.boolean().optional(),
  approval: z.string().optional(),
  onBehalfOf: z.string().regex(ON_BEHALF_OF_PATTERN, 'must match ^[A-Za-z0-9_.-]{1,64}$ (a client label)').optional(),
});
export type CallMeta = z.infer<typeof CallMetaSchema>;

/** `params` of `tools/call`. */
export const CallParamsSchema = z.looseObject({
  name: z.string().min(1),
  arguments: z.record(z.string(), z.unknown()).optional(),
  _meta: CallMetaSchema.optional(),
});
export type CallParams = z.infer<typeof CallParamsSchema>;

/** `params` of `notifications/cancelled`. */
export const CancelledParamsSchema = z.looseObject({
  requestId: RequestIdSchema,
  reason: z.string().optional(),
});

/** `params` of `notifications/progress`. */
export const ProgressParamsSchema = z.looseObject({
  progressToken: z.union([z.string(), z.number()]),
  progress: z.number(),
  total: z.number().optional(),
  message: z.string().optional(),
});
export type ProgressParams = z.infer<typeof ProgressParamsSchema>;

/** One content item of a tool result (MCP text and image content). */
export const ContentSchema = z.union([
  z.looseObject({ type: z.literal('text'), text: z.string() }),
  z.looseObject({ type: z.literal('image'), data: z.string(), mimeType: z.string() }),
  z.looseObject({ type: z.string() }),
]);
export type Content =
  | { type: 'text'; text: string }
  | { type: 'image'; data: string; mimeType: string };

/** `result` of `tools/call` (MCP CallToolResult). */
export const CallToolResultSchema = z.looseObject({
  content: z.array(ContentSchema),
  structuredContent: z.record(z.string(), z.unknown()).optional(),
  isError: z.boolean().optional(),
});
export interface CallToolResult {
  content: Content[];
  structuredContent?: Record<string, unknown>;
  isError?: boolean;
  [extra: string]: unknown;
}

/** A JSON-RPC success response. */
export const ResultResponseSchema = z.looseObject({
  jsonrpc: z.literal('2.0'),
  id: RequestIdSchema,
  result: z.unknown().refine((v) => v !== undefined, 'result is required'),
});

/** A JSON-RPC error response (`id` is null when the request could not be read). */
export const ErrorResponseSchema = z.looseObject({
  jsonrpc: z.literal('2.0'),
  id: z.union([RequestIdSchema, z.null()]),
  error: z.looseObject({ code: z.number().int(), message: z.string(), data: z.unknown().optional() }),
});
