/**
 * Reads an llm-agent node's editor config (as stored in the flow file), its credentials and the
 * environment into {@link LlmSettings}, checking every field. No Node-RED imports: problems are
 * returned as catalog keys with parameters, and the node translates them.
 */
import { RISK_LEVELS, type Risk } from '@toolmesh/agent/protocol';
import { DEFAULT_MAX_ITERATIONS, DEFAULT_MAX_PARALLEL_TOOL_CALLS, MAX_PARALLEL_TOOL_CALLS_LIMIT, type ToolMode } from './tool-loop';
import { DEFAULT_MAX_TOOL_TOKENS, DEFAULT_MAX_TOOLS, MAX_TOOLS_LIMIT } from './tool-select';

/** Model used when neither the node nor `TOOLMESH_LLM_MODEL` names one. */
export const DEFAULT_MODEL = 'gpt-4o-mini';

/** The node's properties in the flow file (see the help text for their meaning). */
export interface LlmAgentConfig {
  name?: string;
  /** Id of a tool-registry config node; empty offers no tools. */
  registry?: string;
  /** OpenAI-compatible base URL incl. `/v1`; empty: `TOOLMESH_LLM_BASE_URL`, else `OPENAI_BASE_URL`. */
  baseUrl?: string;
  /** Empty: `TOOLMESH_LLM_MODEL`, else {@link DEFAULT_MODEL}. */
  model?: string;
  systemPrompt?: string;
  /** Cap on LLM requests per message, 1–100 (default 8). */
  maxIterations?: number | string;
  /** Budget of each tool call, ms; empty: the tool's own budget. */
  toolTimeoutMs?: number | string;
  /** Tool calls of one model turn running at once, 1–32 (default 4); a turn's calls beyond 4 × this get `BUSY`. */
  maxParallelToolCalls?: number | string;
  /** Sampling temperature 0–2; empty: the endpoint's default. */
  temperature?: number | string;
  /** `direct` (default): the node calls tools through the registry; `wired`: every call leaves on output 2. */
  mode?: string;
  /** Direct mode: calls of this risk level or above still leave on output 2 (for a confirm-gate); `never` to call all directly. Default `high`. */
  approvalRisk?: string;
  /** How long a call sent out on output 2 may take to come back, ms (default 120 000). */
  wiredTimeoutMs?: number | string;
  /** Whole-run budget, ms (default 300 000); empty: none. */
  runTimeoutMs?: number | string;
  /** Cap on the tokens (`usage.total_tokens`) one run may spend; empty: none. */
  maxTotalTokens?: number | string;
  /** Tools per LLM request, 1–128 (default 16; `find_tools` counts). */
  maxTools?: number | string;
  /** Estimated tokens of the tool definitions of one request, 100–1e6 (default 2 500). */
  maxToolTokens?: number | string;
  /** Tools always offered: patterns `agent/tool` with `*`, separated by commas or new lines. */
  pinnedTools?: string;
  /** Messages kept per conversation (msg.sessionId, else msg.topic); 0 turns memory off (default 20). */
  memoryMessages?: number | string;
  /** Estimated tokens kept per conversation; empty: no token bound. */
  memoryTokens?: number | string;
  /** Node-RED context store of conversations; empty: the default store. */
  contextStore?: string;
  /** Conversations kept at most; the least recently used goes first, 1–1 000 000 (default 1 000). */
  maxSessions?: number | string;
  /** A conversation unused this long is forgotten, ms, 1 000–31 536 000 000 (default 86 400 000: 24 h). */
  sessionIdleMs?: number | string;
  /** The model accepts images (tool-result images and msg.images go to it). */
  vision?: boolean;
  /** Stream responses and emit text deltas on the progress output. */
  stream?: boolean;
  /** `auto` (default), `native` or `json` (tool calls as JSON in the reply text). */
  toolMode?: string;
  /** Emit run events on output 3. */
  progress?: boolean;
}

/** The node's credentials (kept out of the flow file by Node-RED). */
export interface LlmAgentCredentials {
  /** Empty: `TOOLMESH_LLM_API_KEY`, else `OPENAI_API_KEY`. */
  apiKey?: string;
}

/** What a run needs, with defaults applied. */
export interface LlmSettings {
  /** Undefined: the `openai` client's default (api.openai.com). */
  baseURL?: string;
  apiKey?: string;
  model: string;
  systemPrompt?: string;
  maxIterations: number;
  /** ms */
  toolTimeoutMs?: number;
  maxParallelToolCalls: number;
  temperature?: number;
  mode: 'direct' | 'wired';
  /** Lowest risk that leaves on the tool-call output in direct mode; undefined: none does. */
  approvalRisk?: Risk;
  /** ms */
  wiredTimeoutMs: number;
  /** ms */
  runTimeoutMs?: number;
  maxTotalTokens?: number;
  maxTools: number;
  maxToolTokens: number;
  pinnedTools: string[];
  /** 0: no memory. */
  memoryMessages: number;
  memoryTokens?: number;
  contextStore?: string;
  /** Conversations kept at most (least recently used evicted first). */
  maxSessions: number;
  /** Idle time after which a conversation is forgotten, ms. */
  sessionIdleMs: number;
  vision: boolean;
  stream: boolean;
  toolMode: ToolMode | 'auto';
  progress: boolean;
}

/** Default of {@link LlmSettings.wiredTimeoutMs}: long enough for a person to answer a confirm-gate, ms. */
export const DEFAULT_WIRED_TIMEOUT_MS = 120_000;
/** Default of {@link LlmSettings.runTimeoutMs}, ms. */
export const DEFAULT_RUN_TIMEOUT_MS = 300_000;
/** Default of {@link LlmSettings.memoryMessages}. */
export const DEFAULT_MEMORY_MESSAGES = 20;
/** Default of {@link LlmSettings.maxSessions}. */
export const DEFAULT_MAX_SESSIONS = 1000;
/** Default of {@link LlmSettings.sessionIdleMs}: 24 h, ms. */
export const DEFAULT_SESSION_IDLE_MS = 86_400_000;

/**
 * A config problem as a catalog key under `llm-agent.errors` with its parameters:
 * `no-endpoint` (neither base URL nor API key anywhere), `bad-field` (`field`, `value`, `expected`).
 */
export type SettingsProblem =
  | { key: 'no-endpoint' }
  | { key: 'bad-field'; field: string; value: string; expected: string };

/** The environment variables read, in order of preference. */
export const ENV = {
  baseUrl: ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL'],
  apiKey: ['TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY'],
  model: ['TOOLMESH_LLM_MODEL'],
} as const;

const text = (v: unknown) => (typeof v === 'string' ? v.trim() : typeof v === 'number' ? String(v) : '');
const firstOf = (own: unknown, names: readonly string[], env: NodeJS.ProcessEnv) =>
  text(own) || names.map((n) => text(env[n])).find(Boolean) || undefined;

/**
 * Applies defaults and checks ranges. A bad number is reported (and its default used) so the
 * node can refuse to run instead of half-working.
 */
export function readSettings(config: LlmAgentConfig, creds: LlmAgentCredentials, env: NodeJS.ProcessEnv = process.env): { settings: LlmSettings; problems: SettingsProblem[] } {
  const problems: SettingsProblem[] = [];
  const num = (field: keyof LlmAgentConfig, min: number, max: number, integer: boolean, expected: string): number | undefined => {
    const raw = text(config[field]);
    if (raw === '') return undefined;
    const n = Number(raw);
    if (Number.isFinite(n) && n >= min && n <= max && (!integer || Number.isInteger(n))) return n;
    problems.push({ key: 'bad-field', field, value: raw, expected });
    return undefined;
  };
  const oneOf = <T extends string>(field: keyof LlmAgentConfig, allowed: readonly T[], fallback: T): T => {
    const raw = text(config[field]);
    if (raw === '') return fallback;
    if ((allowed as readonly string[]).includes(raw)) return raw as T;
    problems.push({ key: 'bad-field', field, value: raw, expected: `one of ${allowed.join(', ')}` });
    return fallback;
  };
  const settings: LlmSettings = {
    baseURL: firstOf(config.baseUrl, ENV.baseUrl, env),
    apiKey: firstOf(creds.apiKey, ENV.apiKey, env),
    model: firstOf(config.model, ENV.model, env) ?? DEFAULT_MODEL,
    systemPrompt: text(config.systemPrompt) || undefined,
    maxIterations: num('maxIterations', 1, 100, true, 'a whole number from 1 to 100') ?? DEFAULT_MAX_ITERATIONS,
    toolTimeoutMs: num('toolTimeoutMs', 1, 86_400_000, true, 'a whole number of ms from 1 to 86400000, or empty'),
    maxParallelToolCalls: num('maxParallelToolCalls', 1, MAX_PARALLEL_TOOL_CALLS_LIMIT, true, `a whole number from 1 to ${MAX_PARALLEL_TOOL_CALLS_LIMIT}`) ?? DEFAULT_MAX_PARALLEL_TOOL_CALLS,
    temperature: num('temperature', 0, 2, false, 'a number from 0 to 2, or empty'),
    mode: oneOf('mode', ['direct', 'wired'] as const, 'direct'),
    approvalRisk: (() => {
      const r = oneOf('approvalRisk', [...RISK_LEVELS, 'never'] as const, 'high');
      return r === 'never' ? undefined : r;
    })(),
    wiredTimeoutMs: num('wiredTimeoutMs', 1, 86_400_000, true, 'a whole number of ms from 1 to 86400000') ?? DEFAULT_WIRED_TIMEOUT_MS,
    runTimeoutMs: text(config.runTimeoutMs) === '' && config.runTimeoutMs !== undefined ? undefined
      : num('runTimeoutMs', 1, 86_400_000, true, 'a whole number of ms from 1 to 86400000, or empty') ?? DEFAULT_RUN_TIMEOUT_MS,
    maxTotalTokens: num('maxTotalTokens', 1, 1e9, true, 'a whole number of tokens, or empty'),
    maxTools: num('maxTools', 1, MAX_TOOLS_LIMIT, true, `a whole number from 1 to ${MAX_TOOLS_LIMIT}`) ?? DEFAULT_MAX_TOOLS,
    maxToolTokens: num('maxToolTokens', 100, 1e6, true, 'a whole number of tokens from 100 to 1000000') ?? DEFAULT_MAX_TOOL_TOKENS,
    pinnedTools: text(config.pinnedTools).split(/[\n,]+/).map((p) => p.trim()).filter(Boolean),
    memoryMessages: num('memoryMessages', 0, 10_000, true, 'a whole number from 0 to 10000') ?? DEFAULT_MEMORY_MESSAGES,
    memoryTokens: num('memoryTokens', 1, 1e9, true, 'a whole number of tokens, or empty'),
    contextStore: text(config.contextStore) || undefined,
    maxSessions: num('maxSessions', 1, 1_000_000, true, 'a whole number from 1 to 1000000') ?? DEFAULT_MAX_SESSIONS,
    sessionIdleMs: num('sessionIdleMs', 1000, 31_536_000_000, true, 'a whole number of ms from 1000 to 31536000000 (365 days)') ?? DEFAULT_SESSION_IDLE_MS,
    vision: config.vision === true,
    stream: config.stream === true,
    toolMode: oneOf('toolMode', ['auto', 'native', 'json'] as const, 'auto'),
    progress: config.progress === true,
  };
  if (!settings.baseURL && !settings.apiKey) problems.unshift({ key: 'no-endpoint' });
  return { settings, problems };
}
