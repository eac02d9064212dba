/**
 * The open MCP sessions of the HTTP front (mcp/http.ts): one SDK transport per `Mcp-Session-Id`,
 * bounded in number and in idle time, with the HTTP exchanges each one has open.
 *
 * Clients such as Home Assistant's (homeassistant/components/mcp, the Python SDK's
 * `streamablehttp_client` per tool call, 10 s timeout) open a session per call and may never
 * send HTTP DELETE. So:
 * - A full table evicts: a new session closes the least-recently-used session that has no HTTP
 *   exchange open (no POST awaiting its answer, no GET stream); only when every session is busy
 *   is the newcomer refused (HTTP 503).
 * - A session that never got a request after `initialize` is closed after a short idle time
 *   ({@link DEFAULT_FRESH_IDLE_MS}); others after {@link DEFAULT_IDLE_MS}. A session with a POST
 *   in flight is never closed by idleness (a long tool call is not cut).
 * - A POST whose response the client closes before it was complete (the client's timeout) has
 *   its JSON-RPC requests cancelled in the session's server, as an MCP
 *   `notifications/cancelled` from the client would: the handler's `extra.signal` aborts, and
 *   the bridge cancels the protocol call on the device. The SDK transport does not do this
 *   itself (SDK 1.32.2, checked in both answer modes: a cancelled SSE stream only drops its
 *   stream mapping, a JSON answer waits for the handler; the handler runs to its end either way).
 *   MCP's "disconnection SHOULD NOT be interpreted as cancellation" assumes a client that can
 *   resume the stream; this front keeps no event store, so a closed response can never carry
 *   the result. The front answers in SSE mode: in the SDK's JSON answer mode a cancelled
 *   request's `handleRequest` would never settle (no answer is sent for it).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientIdentity } from './identity';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';

/** Default most open sessions. */
export const DEFAULT_MAX_SESSIONS = 64;
/** Default idle time after which a session that made requests is closed, ms (30 min). */
export const DEFAULT_IDLE_MS = 30 * 60_000;
/**
 * Default idle time after which a session that never made a request after `initialize` is
 * closed, ms (60 s). Clients that keep a session send `tools/list` right after `initialize`
 * (Claude Desktop, VS Code, the SDKs' clients, Home Assistant within milliseconds); one that
 * has not within a minute was abandoned, and one that comes back gets HTTP 404 and initializes
 * again, as MCP's Streamable HTTP transport requires of it.
 */
export const DEFAULT_FRESH_IDLE_MS = 60_000;

/** One open session. */
export interface Session {
  transport: StreamableHTTPServerTransport;
  /** Last request, Date.now() ms. */
  lastSeen: number;
  /** POSTs carrying JSON-RPC requests whose answer is not complete yet. */
  posts: number;
  /** Open GET (server-to-client SSE) streams. */
  streams: number;
  /** JSON-RPC requests after `initialize`. */
  requests: number;
  /** Who opened it (mcp/identity.ts); every later request must be the same client. */
  identity?: ClientIdentity;
}

/** Limits of a {@link SessionTable}. */
export interface SessionLimits {
  /** Most open sessions (default {@link DEFAULT_MAX_SESSIONS}). */
  maxSessions?: number;
  /** Idle time of a session that made requests, ms (default {@link DEFAULT_IDLE_MS}). */
  idleMs?: number;
  /** Idle time of a session with no request after `initialize`, ms (default {@link DEFAULT_FRESH_IDLE_MS}). */
  freshIdleMs?: number;
}

/** The ids of the JSON-RPC requests (not notifications or responses) in a parsed POST body. */
function requestIds(body: unknown): Array<string | number> {
  const ids: Array<string | number> = [];
  for (const m of Array.isArray(body) ? body : [body]) {
    if (m && typeof m === 'object' && typeof (m as { method?: unknown }).method === 'string') {
      const id = (m as { id?: unknown }).id;
      if (typeof id === 'string' || typeof id === 'number') ids.push(id);
    }
  }
  return ids;
}

/** The sessions of one HTTP front; insertion order of the map is least recently used first. */
export class SessionTable {
  readonly maxSessions: number;
  readonly idleMs: number;
  readonly freshIdleMs: number;
  private readonly sessions = new Map<string, Session>();

  constructor(limits: SessionLimits = {}) {
    this.maxSessions = limits.maxSessions ?? DEFAULT_MAX_SESSIONS;
    this.idleMs = limits.idleMs ?? DEFAULT_IDLE_MS;
    this.freshIdleMs = Math.min(limits.freshIdleMs ?? DEFAULT_FRESH_IDLE_MS, this.idleMs);
  }

  /** Open sessions. */
  get size(): number {
    return this.sessions.size;
  }

  /** The session `id`, or undefined when it is unknown or closed. */
  get(id: string): Session | undefined {
    return this.sessions.get(id);
  }

  /** Adds the session `id` (from the transport's `onsessioninitialized`). */
  add(id: string, transport: StreamableHTTPServerTransport, identity?: ClientIdentity): void {
    this.sessions.set(id, { transport, lastSeen: Date.now(), posts: 0, streams: 0, requests: 0, identity });
  }

  /** The client ids of the open sessions' identities. */
  clientIds(): Set<string> {
    const out = new Set<string>();
    for (const s of this.sessions.values()) if (s.identity) out.add(s.identity.clientId);
    return out;
  }

  /** Closes every session whose identity's client id is in `clientIds` (a revoked client); returns the closed sessions' ids. */
  closeClients(clientIds: Set<string>): Array<{ id: string; identity: ClientIdentity }> {
    const closed: Array<{ id: string; identity: ClientIdentity }> = [];
    for (const [id, s] of [...this.sessions]) {
      if (!s.identity || !clientIds.has(s.identity.clientId)) continue;
      closed.push({ id, identity: s.identity });
      this.close(id, s);
    }
    return closed;
  }

  /** Drops `id` from the table (from the transport's `onclose`); its slot is free at once. */
  delete(id: string): void {
    this.sessions.delete(id);
  }

  /**
   * Makes room for one more session: true when there is room, after closing the least recently
   * used session with no HTTP exchange open if the table was full; false when every session is
   * busy (answer 503).
   */
  makeRoom(): boolean {
    if (this.sessions.size < this.maxSessions) return true;
    for (const [id, s] of this.sessions) {
      if (s.posts || s.streams) continue;
      this.close(id, s);
      return true;
    }
    return false;
  }

  /**
   * Hands one HTTP exchange of session `s` to its transport, counting it open until its response
   * closes; a POST's requests are cancelled when the response closes before it was complete.
   * `body` is the parsed POST body (undefined for GET and DELETE).
   */
  async serve(s: Session, req: IncomingMessage, res: ServerResponse, body: unknown): Promise<void> {
    // moved to the end: the map's order is least recently used first
    const id = s.transport.sessionId;
    if (id !== undefined && this.sessions.get(id) === s) {
      this.sessions.delete(id);
      this.sessions.set(id, s);
    }
    s.lastSeen = Date.now();
    const ids = req.method === 'POST' ? requestIds(body) : [];
    if (ids.length) {
      s.requests += ids.length;
      s.posts++;
      res.once('close', () => {
        s.posts--;
        if (res.writableEnded) return;
        // the client gave up on the answer (its timeout, or it went away): nothing can carry
        // the result any more, so the calls stop on the device now
        for (const requestId of ids) {
          s.transport.onmessage?.({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId, reason: 'the client closed the HTTP response before the answer' } });
        }
      });
    } else if (req.method === 'GET') {
      s.streams++;
      res.once('close', () => { s.streams--; });
    }
    await s.transport.handleRequest(req, res, body);
  }

  /** Closes the sessions idle for longer than their limit (never one with a POST in flight). */
  sweep(now = Date.now()): void {
    for (const [id, s] of this.sessions) {
      if (s.posts) continue;
      // an open GET stream is a client listening for notifications, not an abandoned start
      if (now - s.lastSeen > (s.requests || s.streams ? this.idleMs : this.freshIdleMs)) this.close(id, s);
    }
  }

  /** How often {@link sweep} should run, ms. */
  get sweepEveryMs(): number {
    return Math.max(1000, Math.min(60_000, this.freshIdleMs / 2));
  }

  /** Closes every session. */
  async closeAll(): Promise<void> {
    const all = [...this.sessions.values()];
    this.sessions.clear();
    await Promise.all(all.map((s) => s.transport.close().catch(() => {})));
  }

  private close(id: string, s: Session): void {
    this.sessions.delete(id);
    // the transport's close aborts its running handlers and drops the bridge's server
    void s.transport.close().catch(() => {});
  }
}
