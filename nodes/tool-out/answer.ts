/**
 * What tool-out makes of a message, without Node-RED: the call it answers and the answer
 * (a result, a failure, or a progress report).
 */
import { ToolError, type CallToolResult, type ToolReturn } from '@toolmesh/agent/protocol';
import { looksLikeToolResult, ToolResultSchema } from '../shared/tool-messages';
import type { Answer } from '../tool-in/calls';

/** Node-RED's translation function (`RED._`). */
export type Translate = (key: string, params?: Record<string, string | number>) => string;

/** The message properties tool-out reads (see the tool-out help text). */
export interface AnswerMessage {
  payload?: unknown;
  toolResult?: unknown;
  error?: unknown;
  isError?: unknown;
  progress?: unknown;
  _toolmesh?: unknown;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** `msg._toolmesh.callId`, or `undefined` when the message carries none. */
export function callIdOf(msg: AnswerMessage): string | undefined {
  const id = isObject(msg._toolmesh) ? msg._toolmesh.callId : undefined;
  return typeof id === 'string' && id !== '' ? id : undefined;
}

/** The failure a message reports: `msg.error` (e.g. from a Catch node), or `msg.isError === true`. */
function failureOf(msg: AnswerMessage, t: Translate): ToolError | undefined {
  if (msg.error !== undefined && msg.error !== null && msg.error !== false) {
    const e = msg.error;
    const message = isObject(e) && typeof e.message === 'string' ? e.message : typeof e === 'string' ? e : JSON.stringify(e);
    const details: Record<string, unknown> = {};
    if (isObject(e) && typeof e.code === 'string') details.cause = e.code;
    if (isObject(e) && isObject(e.source)) details.source = e.source;
    return new ToolError('EXECUTION_FAILED', message || t('tool-out.errors.flow-failed'), Object.keys(details).length ? details : undefined);
  }
  if (msg.isError === true) {
    const p = msg.payload;
    const message = typeof p === 'string' && p !== '' ? p
      : isObject(p) && typeof p.message === 'string' ? p.message
      : t('tool-out.errors.flow-failed');
    return new ToolError('EXECUTION_FAILED', message, isObject(p) ? { payload: p } : undefined);
  }
  return undefined;
}

/** A progress report in `msg.progress`: `{ progress, total?, message? }` with a finite `progress`. */
function progressOf(msg: AnswerMessage): Extract<Answer, { kind: 'progress' }> | undefined {
  const p = msg.progress;
  if (!isObject(p) || typeof p.progress !== 'number' || !Number.isFinite(p.progress)) return undefined;
  return {
    kind: 'progress',
    progress: p.progress,
    total: typeof p.total === 'number' && Number.isFinite(p.total) ? p.total : undefined,
    message: typeof p.message === 'string' ? p.message : undefined,
  };
}

/**
 * The answer a message gives, in this order: a failure (`msg.error` set, or `msg.isError === true`);
 * a progress report (`msg.progress`); a ready result (`msg.toolResult` with a `content` array,
 * checked against the shared contract in nodes/shared/tool-messages.ts and used as is); else `msg.payload` as the result (an object becomes structuredContent plus a JSON
 * text item, a string a text item, anything else `{ value }`).
 * @throws Error naming the field when `msg.toolResult` has a `content` array but breaks the contract.
 */
export function answerOf(msg: AnswerMessage, t: Translate): Answer {
  const failure = failureOf(msg, t);
  if (failure) return { kind: 'error', error: failure };
  const progress = progressOf(msg);
  if (progress) return progress;
  if (looksLikeToolResult(msg.toolResult)) {
    const r = ToolResultSchema.safeParse(msg.toolResult);
    if (!r.success) {
      const issue = r.error.issues[0];
      throw new Error(t('tool-out.errors.bad-result', { path: issue.path.join('.') || '(root)', error: issue.message }));
    }
    // only the MCP fields: remote-tool's msg.toolResult also carries id, agent, tool and durationMs
    const { content, structuredContent, isError } = r.data;
    return { kind: 'result', value: { content: content as CallToolResult['content'], structuredContent, isError: isError === true } };
  }
  return { kind: 'result', value: msg.payload === undefined ? null : msg.payload as ToolReturn };
}
