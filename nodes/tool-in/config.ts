/**
 * Reads a tool-in node's editor config (as stored in the flow file) into the tool it offers:
 * name, description, risk, hints, time budget and the zod schema its arguments are checked
 * against. The argument schema is JSON Schema text, turned into zod with zod 4's
 * `z.fromJSONSchema()` (zod docs, "JSON Schema → Zod"; it refuses `if`/`then`/`else`, `not`,
 * `unevaluated*`, `dependent*` and external `$ref`s), so the catalog's JSON Schema is derived from
 * the same zod schema the arguments are validated with, as for every other tool.
 */
import { createHash } from 'node:crypto';
import { z } from 'zod';
import { DEFAULT_TOOL_TIMEOUT_MS, RiskSchema, isValidId, toCatalogTool, type Risk } from '@toolmesh/agent/protocol';

/** The node's properties in the flow file (see the help text for their meaning). */
export interface ToolInConfig {
  name?: string;
  /** Id of the tool-registry config node whose broker the tool is offered on. */
  registry?: string;
  /** Agent id; empty derives one per registry (see {@link defaultFlowAgentId}). */
  agent?: string;
  /** Tool name, `^[a-zA-Z0-9_-]{1,64}$`. */
  tool?: string;
  description?: string;
  /** `low` (default), `medium`, `high` or `critical`. */
  risk?: string;
  /** JSON Schema text of the arguments (an object schema); empty means {@link DEFAULT_ARGUMENT_SCHEMA}. */
  schema?: string;
  /** Time budget of one call, ms (default 30 000). */
  timeout?: number | string;
  readOnly?: boolean;
  destructive?: boolean;
  idempotent?: boolean;
  /** The flow honours `msg.toolCall.dryRun` (previews, changes nothing): the tool takes dry runs. Default false: a dry run is refused with NOT_SUPPORTED. */
  dryRun?: boolean;
  /** Caller ids allowed to call the tool: globs separated by commas or spaces (`*` any run, `?` one character); empty: any caller. */
  callers?: string;
}

/** A checked tool-in config: everything a `ToolDefinition` needs except `execute`. */
export interface FlowToolSpec {
  agentId: string;
  name: string;
  description: string;
  risk: Risk;
  input: z.ZodType;
  timeoutMs: number;
  readOnly: boolean;
  destructive: boolean;
  idempotent: boolean;
  supportsDryRun: boolean;
  /** Caller-id globs allowed to call the tool; undefined: any caller. */
  callers?: string[];
}

/** Node-RED's translation function (`RED._`). */
export type Translate = (key: string, params?: Record<string, string | number>) => string;

/** The argument schema of a new tool-in: no arguments. */
export const DEFAULT_ARGUMENT_SCHEMA = '{"type":"object","properties":{},"additionalProperties":false}';

const TOOL_NAME = /^[a-zA-Z0-9_-]{1,64}$/;
/** A caller-id glob: id characters plus `*` and `?`, 1 to 64 of them. */
const CALLER_GLOB = /^[A-Za-z0-9_*?-]{1,64}$/;
const MAX_TIMEOUT_MS = 24 * 3600_000;

/**
 * The default agent id of the flow tools of one registry: `nodered-flows-` + the first 12 hex
 * digits of SHA-256 over the Node-RED user directory and the registry node's id. All tool-in
 * nodes of a registry get the same id (so they form one agent), it survives restarts, and two
 * instances that import the same flow get different ids. The hash is the one the registry's
 * default caller id (`nodered-<hash>`) is built from, so the two read as a pair.
 */
export function defaultFlowAgentId(userDir: string | undefined, registryId: string): string {
  return `nodered-flows-${createHash('sha256').update(`${userDir ?? ''}|${registryId}`).digest('hex').slice(0, 12)}`;
}

/**
 * Parses JSON Schema text of the arguments into zod.
 * @throws Error saying what is wrong (not JSON, not an object schema, or a construct zod cannot express).
 */
export function argumentSchema(text: string | undefined, t: Translate): z.ZodType {
  const source = text?.trim() ? text : DEFAULT_ARGUMENT_SCHEMA;
  let json: unknown;
  try {
    json = JSON.parse(source);
  } catch (e) {
    throw new Error(t('tool-in.errors.schema-json', { error: (e as Error).message }));
  }
  const type = (json as { type?: unknown } | null)?.type;
  if (typeof json !== 'object' || json === null || Array.isArray(json) || type !== 'object') {
    throw new Error(t('tool-in.errors.schema-not-object'));
  }
  try {
    return z.fromJSONSchema(json as Parameters<typeof z.fromJSONSchema>[0]);
  } catch (e) {
    throw new Error(t('tool-in.errors.schema-unsupported', { error: (e as Error).message }));
  }
}

/**
 * Checks every field and builds the tool's spec. Never throws: `error` names the first bad field
 * and what was expected, and then `spec` is absent (the tool is not offered).
 */
export function readToolInConfig(
  def: ToolInConfig,
  ctx: { t: Translate; userDir?: string },
): { spec?: FlowToolSpec; error?: string } {
  const { t } = ctx;
  const bad = (field: string, value: unknown, expected: string) => ({
    error: t('tool-in.errors.bad-field', { field, value: JSON.stringify(value ?? null), expected }),
  });
  if (!def.registry) return { error: t('tool-in.errors.no-registry') };
  const agentId = def.agent?.trim() || defaultFlowAgentId(ctx.userDir, def.registry);
  if (!isValidId(agentId)) return bad('agent', def.agent, t('tool-in.expected.id'));
  const name = def.tool?.trim() ?? '';
  if (!TOOL_NAME.test(name)) return bad('tool', def.tool, t('tool-in.expected.name'));
  const risk = RiskSchema.safeParse(def.risk || 'low');
  if (!risk.success) return bad('risk', def.risk, 'low, medium, high or critical');
  const timeoutText = String(def.timeout ?? '').trim();
  const timeoutMs = timeoutText === '' ? DEFAULT_TOOL_TIMEOUT_MS : Number(timeoutText);
  if (!Number.isInteger(timeoutMs) || timeoutMs < 1 || timeoutMs > MAX_TIMEOUT_MS) {
    return bad('timeout', def.timeout, t('tool-in.expected.timeout'));
  }
  let input: z.ZodType;
  try {
    input = argumentSchema(def.schema, t);
  } catch (e) {
    return { error: t('tool-in.errors.bad-schema', { error: (e as Error).message }) };
  }
  const callers = String(def.callers ?? '').split(/[\s,]+/).filter(Boolean);
  const badCaller = callers.find((c) => !CALLER_GLOB.test(c));
  if (badCaller !== undefined) return bad('callers', def.callers, t('tool-in.expected.callers'));
  const spec: FlowToolSpec = {
    agentId, name, description: def.description?.trim() ?? '', risk: risk.data, input, timeoutMs,
    readOnly: def.readOnly === true, destructive: def.destructive === true, idempotent: def.idempotent === true,
    supportsDryRun: def.dryRun === true, ...(callers.length ? { callers } : {}),
  };
  try {
    // the catalog entry is derived from the zod schema; refuse a schema that cannot go back to JSON Schema
    toCatalogTool({ ...spec, execute: () => null });
  } catch (e) {
    return { error: t('tool-in.errors.bad-schema', { error: (e as Error).message }) };
  }
  return { spec };
}
