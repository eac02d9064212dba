/**
 * Reads an llm-agent node's editor config (as stored in the flow file), its credentials and the
 * environment into {@link LlmSettings}, checking every field. No Node-RED imports: problems are
 * returned as catalog keys with parameters, and the node translates them.
 */
import { DEFAULT_MAX_ITERATIONS } from './tool-loop';

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
  /** Sampling temperature 0–2; empty: the endpoint's default. */
  temperature?: number | string;
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
  temperature?: number;
}

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
  const settings: LlmSettings = {
    baseURL: firstOf(config.baseUrl, ENV.baseUrl, env),
    apiKey: firstOf(creds.apiKey, ENV.apiKey, env),
    model: firstOf(config.model, ENV.model, env) ?? DEFAULT_MODEL,
    systemPrompt: text(config.systemPrompt) || undefined,
    maxIterations: num('maxIterations', 1, 100, true, 'a whole number from 1 to 100') ?? DEFAULT_MAX_ITERATIONS,
    toolTimeoutMs: num('toolTimeoutMs', 1, 86_400_000, true, 'a whole number of ms from 1 to 86400000, or empty'),
    temperature: num('temperature', 0, 2, false, 'a number from 0 to 2, or empty'),
  };
  if (!settings.baseURL && !settings.apiKey) problems.unshift({ key: 'no-endpoint' });
  return { settings, problems };
}
