/**
 * What remote-tool does with a message, without Node-RED: pick the call (static config or
 * `msg.toolCall`), build the arguments, and shape the result into `msg.payload` and
 * `msg.toolResult`. Failures here are thrown as {@link ToolCallError}s before anything is sent.
 *
 * The mode rule: a node whose dialog sets both agent and tool is static and ignores
 * `msg.toolCall` (so tool-in → remote-tool → tool-out calls the configured tool, not the flow's
 * own); a node with agent or tool empty is dynamic and calls what `msg.toolCall` names (the wired
 * llm-agent loop), falling back to its own settings when a message has no `msg.toolCall`.
 */
import { isValidId, type CallToolResult, type Content, type ProgressParams } from '@toolmesh/agent/protocol';
import { ToolCallError } from '../shared/tool-call-error';
import { parseToolCall, ToolMessageError } from '../shared/tool-messages';

/** Where static-mode arguments come from. */
export type ArgsFrom = 'config' | 'merge' | 'payload';

/** The node's properties in the flow file (see the help text for their meaning). */
export interface RemoteToolConfig {
  name?: string;
  /** Id of the tool-registry config node. */
  registry?: string;
  /** Static mode: agent id. */
  agent?: string;
  /** Static mode: tool name. */
  tool?: string;
  /** Static mode: JSON object text (default `{}`). */
  arguments?: string;
  /** `config` (default): the editor's arguments; `merge`: msg.payload's keys over them; `payload`: msg.payload alone. */
  argsFrom?: ArgsFrom;
  /** Also send failed results on the output in static mode (dynamic mode always does). */
  sendErrors?: boolean;
  /** Call budget, ms; empty: the tool's own, else the registry's default. */
  timeout?: number | string;
}

/** One call to make. `dynamic` when it came from `msg.toolCall`. */
export interface CallTarget {
  agent: string;
  tool: string;
  args: Record<string, unknown>;
  dynamic: boolean;
  /** Dynamic mode: `msg.toolCall.approval`, the approval token a confirm-gate signed (sent as `_meta.approval`). */
  approval?: string;
  /** Dynamic mode: `msg.toolCall.dryRun` (sent as `_meta.dryRun`). */
  dryRun?: boolean;
}

/** Node-RED's translation function (`RED._`). */
export type Translate = (key: string, params?: Record<string, string | number>) => string;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v;
}

/**
 * Parses the editor's arguments text (empty means `{}`).
 * @throws ToolCallError INVALID_ARGUMENTS naming the `arguments` property when it is not a JSON object.
 */
export function parseArguments(text: string | undefined, t: Translate): Record<string, unknown> {
  if (text === undefined || text.trim() === '') return {};
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.bad-json', { field: 'arguments', error: (e as Error).message }));
  }
  if (!isObject(v)) throw new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.not-object', { field: 'arguments', got: kindOf(v) }));
  return v;
}

/** True when the node's dialog sets both agent and tool: it then ignores `msg.toolCall`. */
export function isStatic(cfg: { agent?: string; tool?: string }): boolean {
  return Boolean(cfg.agent?.trim() && cfg.tool?.trim());
}

/** True when the message makes a dynamic call: the node is not static and `msg.toolCall` is set (not `undefined` or `null`). */
export function isDynamicCall(msg: { toolCall?: unknown }, cfg: { agent?: string; tool?: string }): boolean {
  return !isStatic(cfg) && msg.toolCall !== undefined && msg.toolCall !== null;
}

/**
 * The text of a broken `msg.toolCall`, through remote-tool's catalog: the field, what it should
 * hold (`remote-tool.expect.<kind>`) and what it holds.
 */
export function contractErrorText(e: ToolMessageError, t: Translate): string {
  return t('remote-tool.errors.bad-message', { field: e.field, expected: t(`remote-tool.expect.${e.expected}`), got: e.got });
}

/**
 * The call a message asks for (see the mode rule above): `msg.toolCall` (checked against the
 * shared contract, nodes/shared/tool-messages.ts) in dynamic mode, else the node's agent, tool
 * and arguments (`baseArgs` is the parsed editor arguments or the error parsing them raised).
 * In dynamic mode `msg.toolCall.approval` and `msg.toolCall.dryRun` are carried on, to be sent in
 * the request's `_meta`.
 * @throws ToolCallError INVALID_ARGUMENTS naming the missing or malformed field.
 */
export function resolveTarget(
  msg: { toolCall?: unknown; payload?: unknown },
  cfg: { agent?: string; tool?: string; argsFrom?: ArgsFrom; baseArgs: Record<string, unknown> | ToolCallError },
  t: Translate,
): CallTarget {
  const missing = (field: string) => new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.missing', { field }));
  const notObject = (field: string, v: unknown) => new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.not-object', { field, got: kindOf(v) }));
  if (isDynamicCall(msg, cfg)) {
    let call;
    try {
      call = parseToolCall(msg.toolCall);
    } catch (e) {
      if (!(e instanceof ToolMessageError)) throw e;
      throw new ToolCallError('INVALID_ARGUMENTS', contractErrorText(e, t));
    }
    const target: CallTarget = { agent: call.agent, tool: call.tool, args: call.arguments, dynamic: true };
    if (call.approval !== undefined) target.approval = call.approval;
    if (call.dryRun !== undefined) target.dryRun = call.dryRun;
    return target;
  }
  const agent = cfg.agent?.trim();
  const tool = cfg.tool?.trim();
  if (!agent) throw missing('agent');
  if (!isValidId(agent)) throw new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.bad-agent', { field: 'agent', value: JSON.stringify(agent) }));
  if (!tool) throw missing('tool');
  const from = cfg.argsFrom ?? 'config';
  if (from !== 'payload' && cfg.baseArgs instanceof ToolCallError) throw cfg.baseArgs;
  const base = cfg.baseArgs instanceof ToolCallError ? {} : cfg.baseArgs;
  if (from === 'config') return { agent, tool, args: { ...base }, dynamic: false };
  if (!isObject(msg.payload)) throw notObject('msg.payload', msg.payload);
  return { agent, tool, args: from === 'merge' ? { ...base, ...msg.payload } : { ...msg.payload }, dynamic: false };
}

/** `msg.payload` of a result: its `structuredContent` when present, else its text items joined with newlines. */
export function payloadOf(result: CallToolResult): unknown {
  if (result.structuredContent !== undefined) return result.structuredContent;
  return result.content
    .filter((c): c is Extract<Content, { type: 'text' }> => c.type === 'text')
    .map((c) => c.text)
    .join('\n');
}

/** Longest progress message shown in a node status, characters. */
export const STATUS_TEXT_MAX = 60;

/**
 * Status text of a progress notification: `encoding 40%` (with a total) or `encoding 3` (without);
 * the message is cut to {@link STATUS_TEXT_MAX} characters.
 */
export function progressText(p: ProgressParams, tool: string): string {
  const amount = p.total ? `${Math.round((p.progress / p.total) * 100)}%` : String(p.progress);
  // an agent's message is untrusted and may be up to the payload cap: a node status is one short line
  const raw = String(p.message ?? tool);
  const label = raw.length > STATUS_TEXT_MAX ? `${raw.slice(0, STATUS_TEXT_MAX - 1)}…` : raw;
  return `${label} ${amount}`;
}
