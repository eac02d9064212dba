/**
 * A small client of Node-RED's Admin HTTP API (Node-RED docs, "Admin API methods"): `GET /flows`,
 * `GET /flow/:id`, `POST /flow`, `PUT /flow/:id`, `GET /nodes`, and `POST /auth/token` when the
 * editor's adminAuth is on. Every request sends `Node-RED-API-Version: v1` (flows as a plain array).
 * Failures become {@link ToolError}s that say what to fix; the error of a request aborted by the
 * caller's signal passes through unchanged (the agent knows why it aborted).
 */
import { ToolError } from '../../../protocol/errors';

/** One node of a flow as the Admin API carries it. */
export interface FlowNode {
  id: string;
  type: string;
  z?: string;
  name?: string;
  wires?: string[][];
  [k: string]: unknown;
}

/** One entry of a tab's `env` list. */
export interface EnvEntry {
  name: string;
  type: string;
  value: string;
}

/** A tab as `GET /flow/:id` returns it and `PUT /flow/:id` / `POST /flow` take it. */
export interface TabFlow {
  id?: string;
  label: string;
  disabled?: boolean;
  info?: string;
  env?: EnvEntry[];
  nodes: FlowNode[];
  /** Config nodes scoped to the tab (`z` is the tab's id). */
  configs?: FlowNode[];
}

/**
 * How the client proves who it is: a user of the editor's adminAuth (`username` + `password`,
 * exchanged for a bearer token at `POST /auth/token`), or a ready bearer `token` (adminAuth's
 * `tokens` setting). Neither: requests go without credentials (adminAuth off).
 */
export interface AdminAuth {
  username?: string;
  password?: string;
  token?: string;
}

/** Options of {@link NodeRedAdmin}. */
export interface NodeRedAdminOptions {
  /** Admin API root, e.g. `http://127.0.0.1:1880` (with httpAdminRoot appended when it is not `/`). */
  url: string;
  auth?: AdminAuth;
  /** Budget of one HTTP request, ms. */
  timeoutMs: number;
}

/** A token is renewed this long before Node-RED says it expires, ms. */
const TOKEN_MARGIN_MS = 60_000;

/** The client. One instance per pack; it keeps the bearer token between calls. */
export class NodeRedAdmin {
  readonly url: string;
  private token: { value: string; expires: number } | undefined;

  constructor(private readonly opts: NodeRedAdminOptions) {
    this.url = opts.url.replace(/\/+$/, '');
    if (opts.auth?.token) this.token = { value: opts.auth.token, expires: Infinity };
  }

  /** Every node of every flow (`GET /flows`); read only, never written back by this pack. */
  async getFlows(signal: AbortSignal): Promise<FlowNode[]> {
    return (await this.request('GET', '/flows', undefined, signal)) as FlowNode[];
  }

  /** One tab (`GET /flow/:id`), or null when Node-RED has no flow with that id. */
  async getFlow(id: string, signal: AbortSignal): Promise<TabFlow | null> {
    return (await this.request('GET', `/flow/${encodeURIComponent(id)}`, undefined, signal, true)) as TabFlow | null;
  }

  /** Adds a tab (`POST /flow`); Node-RED starts its nodes and returns the tab's new id. */
  async addFlow(flow: TabFlow, signal: AbortSignal): Promise<string> {
    const res = (await this.request('POST', '/flow', flow, signal)) as { id?: unknown };
    if (typeof res?.id !== 'string') throw new ToolError('EXECUTION_FAILED', `Node-RED answered POST /flow without a tab id: ${JSON.stringify(res)}`);
    return res.id;
  }

  /** Replaces one tab's nodes and config nodes (`PUT /flow/:id`); only that tab restarts. */
  async updateFlow(id: string, flow: TabFlow, signal: AbortSignal): Promise<void> {
    await this.request('PUT', `/flow/${encodeURIComponent(id)}`, { ...flow, id }, signal);
  }

  /** Node types the runtime has (`GET /nodes`): type → module and whether its node set is enabled. */
  async nodeTypes(signal: AbortSignal): Promise<Map<string, { module: string; enabled: boolean }>> {
    const sets = (await this.request('GET', '/nodes', undefined, signal)) as { module?: string; enabled?: boolean; types?: string[] }[];
    const types = new Map<string, { module: string; enabled: boolean }>();
    for (const s of Array.isArray(sets) ? sets : []) {
      for (const t of s.types ?? []) types.set(t, { module: s.module ?? '?', enabled: s.enabled !== false });
    }
    return types;
  }

  /**
   * One request; JSON in and out. With `missingIsNull`, a 404 resolves null. A 401 with a
   * username configured fetches a new token and tries once more.
   * @throws ToolError PERMISSION_DENIED (401/403), TIMEOUT (no answer within `timeoutMs`),
   *   EXECUTION_FAILED (unreachable, other HTTP errors).
   */
  private async request(method: string, path: string, body: unknown, signal: AbortSignal, missingIsNull = false, retried = false): Promise<unknown> {
    const headers: Record<string, string> = { 'Node-RED-API-Version': 'v1', Accept: 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    const bearer = await this.bearer(signal);
    if (bearer) headers.Authorization = `Bearer ${bearer}`;
    const res = await this.fetch(`${method} ${path}`, this.url + path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) }, signal);
    if (res.status === 401 && this.opts.auth?.username && !retried) {
      this.token = undefined;
      return this.request(method, path, body, signal, missingIsNull, true);
    }
    if (res.status === 404 && missingIsNull) return null;
    const text = await res.text();
    if (!res.ok) throw this.httpError(`${method} ${path}`, res.status, text);
    if (text === '') return {};
    try {
      return JSON.parse(text);
    } catch {
      throw new ToolError('EXECUTION_FAILED', `Node-RED answered ${method} ${path} with a body that is not JSON: ${text.slice(0, 200)}`, { url: this.url });
    }
  }

  /** The bearer token to send: the configured one, a cached one, or a new one from `POST /auth/token`. */
  private async bearer(signal: AbortSignal): Promise<string | undefined> {
    const auth = this.opts.auth;
    if (this.token && this.token.expires > Date.now()) return this.token.value;
    if (!auth?.username) return undefined;
    const form = new URLSearchParams({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: auth.username, password: auth.password ?? '' });
    const res = await this.fetch('POST /auth/token', `${this.url}/auth/token`, {
      method: 'POST', headers: { 'Content-Type': 'application/x-www-form-urlencoded', Accept: 'application/json' }, body: form.toString(),
    }, signal);
    const text = await res.text();
    if (res.status === 401 || res.status === 403) {
      throw new ToolError('PERMISSION_DENIED', `Node-RED at ${this.url} refused the login of user "${auth.username}" (HTTP ${res.status}): check packs.dashboard.auth.username and its password`, { url: this.url });
    }
    if (!res.ok) throw this.httpError('POST /auth/token', res.status, text);
    const t = JSON.parse(text) as { access_token?: string; expires_in?: number };
    if (!t.access_token) throw new ToolError('EXECUTION_FAILED', `Node-RED at ${this.url} answered POST /auth/token without an access_token; is its adminAuth of type "credentials"?`, { url: this.url });
    this.token = { value: t.access_token, expires: Date.now() + (t.expires_in ?? 3600) * 1000 - TOKEN_MARGIN_MS };
    return t.access_token;
  }

  /** `fetch` with the request budget and the caller's signal; maps network failures. */
  private async fetch(what: string, url: string, init: RequestInit, signal: AbortSignal): Promise<Response> {
    const timeout = AbortSignal.timeout(this.opts.timeoutMs);
    try {
      return await fetch(url, { ...init, signal: AbortSignal.any([signal, timeout]) });
    } catch (err) {
      if (signal.aborted) throw err;
      if (timeout.aborted) throw new ToolError('TIMEOUT', `Node-RED at ${this.url} did not answer ${what} within ${this.opts.timeoutMs} ms`, { url: this.url });
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new ToolError('EXECUTION_FAILED',
        `Node-RED's admin API at ${this.url} is not reachable (${cause?.code ?? cause?.message ?? (err as Error).message}); is Node-RED running, and is packs.dashboard.url right?`,
        { url: this.url });
    }
  }

  private httpError(what: string, status: number, text: string): ToolError {
    let message = text.slice(0, 300);
    try {
      const j = JSON.parse(text) as { message?: string; error?: string };
      message = j.message ?? j.error ?? message;
    } catch { /* not JSON: keep the text */ }
    if (status === 401) {
      return new ToolError('PERMISSION_DENIED', `Node-RED at ${this.url} asks for a login (HTTP 401 on ${what}): its adminAuth is on; set packs.dashboard.auth (username and password, or token) of a user allowed to write flows`, { url: this.url, status });
    }
    if (status === 403) {
      return new ToolError('PERMISSION_DENIED', `Node-RED at ${this.url} refused ${what} (HTTP 403): the configured user may not do this; it needs the "*" or "flows.write" permission`, { url: this.url, status });
    }
    return new ToolError('EXECUTION_FAILED', `Node-RED answered ${what} with HTTP ${status}: ${message}`, { url: this.url, status });
  }
}
