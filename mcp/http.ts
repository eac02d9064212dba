/**
 * The bridge over Streamable HTTP (MCP 2025-11-25, "Transports", Streamable HTTP) at `/mcp`,
 * for Open WebUI, LiteLLM, n8n and VS Code: one SDK transport and one {@link McpBridge} session
 * per `Mcp-Session-Id`.
 *
 * - Authentication: a static bearer token (`token`), OAuth 2.1 sign-in (`oauth`: the MCP SDK's
 *   `mcpAuthRouter` with {@link BridgeOAuthProvider}, a consent page approved with a pairing
 *   code), or both. Every request to `/mcp` then needs `Authorization: Bearer <token>`; without a
 *   valid one the answer is HTTP 401 with `WWW-Authenticate: Bearer resource_metadata="…"` (MCP
 *   2025-11-25, "Authorization"; RFC 9728 §5.1). Off loopback one of them is required to start.
 * - Each session belongs to the identity that opened it (mcp/identity.ts): a request with another
 *   client's token on it is refused (403); a client revoked in the state file (`toolmesh mcp
 *   clients --revoke`) has its sessions closed within a second.
 * - TLS (`tls`): the front serves HTTPS itself, so an OAuth issuer off loopback can be `https:`.
 * - `Host` and `Origin` are checked against an allow-list by the SDK transport's DNS-rebinding
 *   protection (HTTP 403), so a web page in the user's browser cannot drive a bridge on
 *   localhost.
 * - Bodies are capped (default 4 MiB, as the mesh caps requests); sessions are capped in number
 *   (a full table closes its least recently used idle session) and closed after an idle time; a
 *   call whose response the client closes is cancelled on the device (mcp/sessions.ts).
 */
import { randomUUID, timingSafeEqual, createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createMcpExpressApp } from '@modelcontextprotocol/sdk/server/express.js';
import { mcpAuthRouter, getOAuthProtectedResourceMetadataUrl } from '@modelcontextprotocol/sdk/server/auth/router.js';
import { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import { DEFAULT_MAX_PAYLOAD_BYTES, isLoopbackHost } from '@toolmesh/agent/protocol';
import type { LogLevel, McpBridge } from './bridge';
import { STATIC_TOKEN_CLIENT_ID, STATIC_TOKEN_LABEL, type ClientIdentity } from './identity';
import { consentHandler, renderConsentPage, type ConsentPageContext } from './oauth/consent';
import { BridgeOAuthProvider, endedClients, identityOf } from './oauth/provider';
import type { OAuthStateFile } from './oauth/state';

/** OAuth settings of {@link serveHttp}. */
export interface HttpOAuthOptions {
  /** The state file: registered clients, token hashes, pairing codes (mcp/oauth/state.ts). */
  state: OAuthStateFile;
  /**
   * The URL clients reach the bridge at, without a path (`https://pi.lan:8765`): the issuer and
   * the base of `/mcp`. Default: the listening address (with `https:` when `tls` is set). It
   * must be `https:` unless it is 127.0.0.1 or localhost (the SDK refuses other issuers).
   */
  publicUrl?: string;
  /** Access token lifetime, ms (default 1 h). */
  accessTokenTtlMs?: number;
  /** Refresh token lifetime, ms (default 30 days). */
  refreshTokenTtlMs?: number;
  /**
   * The SDK's per-address rate limits of the OAuth endpoints (express-rate-limit; defaults
   * authorize 100 / 15 min, token 50 / 15 min, register 20 / h, revoke 50 / 15 min); `false`
   * turns them off (tests from one address).
   */
  rateLimit?: false | { windowMs?: number; max?: number };
  /** Called when the owner approves a client on the consent page. */
  onApproved?: (clientId: string, label: string) => void;
}
import { readBody } from './body';
import { SessionTable } from './sessions';

/** Options of {@link serveHttp}. */
export interface HttpOptions {
  /** Address to listen on, e.g. `127.0.0.1`. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /** Bearer token every request must carry; required when `host` is not loopback. */
  token?: string;
  /** OAuth 2.1 sign-in for clients that cannot send a static token (Home Assistant, Claude, Cursor). */
  oauth?: HttpOAuthOptions;
  /** PEM certificate chain and key: serve HTTPS. */
  tls?: { cert: string; key: string };
  /** More `Host` header values to accept (`name:port`), besides the listening address (and localhost forms on loopback). */
  allowedHosts?: string[];
  /** More `Origin` values to accept (`http://name:port`); browsers' requests from any other origin get 403. */
  allowedOrigins?: string[];
  /** Largest request body, bytes (default 4 MiB). */
  maxBodyBytes?: number;
  /**
   * Most open sessions (default 64). A new session past it closes the least recently used
   * session with no HTTP exchange open; when every session is busy it gets HTTP 503.
   */
  maxSessions?: number;
  /** A session without requests this long is closed (never while a call is in flight), ms (default 30 min). */
  sessionIdleMs?: number;
  /** A session with no request after `initialize` (and no GET stream) is closed after this long, ms (default 60 s). */
  freshSessionIdleMs?: number;
  log?: (level: LogLevel, text: string) => void;
}

/** A running HTTP front. */
export interface HttpFront {
  /** `http://host:port/mcp`. */
  url: string;
  port: number;
  /** Open sessions. */
  sessions(): number;
  /** Closes every session and the listener. */
  close(): Promise<void>;
}

function sameSecret(given: string, expected: string): boolean {
  // hashed first, so the comparison takes the same time whatever the lengths
  const a = createHash('sha256').update(given).digest();
  const b = createHash('sha256').update(expected).digest();
  return timingSafeEqual(a, b);
}

/**
 * Starts the HTTP front of `bridge`.
 * @throws Error when `host` is not loopback and no token is set, or when the port cannot be bound.
 */
export async function serveHttp(bridge: McpBridge, opts: HttpOptions): Promise<HttpFront> {
  if (!isLoopbackHost(opts.host) && !opts.token && !opts.oauth) {
    throw new Error(`--http ${opts.host}: authentication is required off loopback: a bearer token (TOOLMESH_MCP_TOKEN or --token-file), --oauth, or both`);
  }
  const log = opts.log ?? (() => {});
  const sessions = new SessionTable({ maxSessions: opts.maxSessions, idleMs: opts.sessionIdleMs, freshIdleMs: opts.freshSessionIdleMs });
  let allowedHosts: string[] = [];
  let allowedOrigins: string[] = [];

  const reply = (res: ServerResponse, status: number, message: string, headers: Record<string, string> = {}, code = -32000) => {
    res.writeHead(status, { 'content-type': 'application/json', ...headers });
    res.end(JSON.stringify({ jsonrpc: '2.0', error: { code, message }, id: null }));
  };
  const maxBody = opts.maxBodyBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;

  const newTransport = (identity: ClientIdentity | undefined): StreamableHTTPServerTransport => {
    const t: StreamableHTTPServerTransport = new StreamableHTTPServerTransport({
      sessionIdGenerator: () => randomUUID(),
      enableDnsRebindingProtection: true,
      allowedHosts,
      allowedOrigins,
      maxRequestBodySize: maxBody,
      onsessioninitialized: (id) => {
        sessions.add(id, t, identity);
      },
    });
    return t;
  };

  const handle = async (req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== '/mcp') {
      if (oauthApp) return void oauthApp(req, res);
      return reply(res, 404, `not found: ${path}; the MCP endpoint is /mcp`);
    }
    // fail closed: OAuth configured but not set up yet (or failed) admits nobody on its strength
    if (opts.oauth && !provider) return reply(res, 503, 'the sign-in is not ready; retry', { 'retry-after': '1' });
    let identity: ClientIdentity | undefined;
    if (opts.token || provider) {
      const auth = req.headers.authorization ?? '';
      const m = /^Bearer\s+(.+)$/i.exec(auth);
      const given = m?.[1].trim();
      let problem = m ? 'invalid bearer token' : 'missing bearer token: send Authorization: Bearer <token>';
      if (given && opts.token && sameSecret(given, opts.token)) {
        identity = { clientId: STATIC_TOKEN_CLIENT_ID, label: STATIC_TOKEN_LABEL };
      } else if (given && provider) {
        try {
          identity = identityOf(await provider.verifyAccessToken(given));
        } catch (e) {
          problem = (e as Error).message;
        }
      }
      if (!identity) {
        const challenge = provider
          ? `Bearer ${given ? `error="invalid_token", error_description="${problem.replace(/["\\]/g, '')}", ` : ''}resource_metadata="${resourceMetadataUrl}"`
          : 'Bearer realm="toolmesh"';
        return reply(res, 401, problem, { 'www-authenticate': challenge });
      }
    }
    // a POST body is read and parsed here and handed to the SDK as parsedBody (its documented
    // option for body-parser middleware), not read through the SDK's web-standard Request body
    // stream: ~45% less CPU in this front per call, 0.95 -> 0.87 ms p50 over a direct call for a
    // plain HTTP client (bench/mcp-overhead.mjs, path d). The answers are the SDK's own: 413 over
    // the limit, 400 / -32700 for bad JSON.
    let parsed: unknown;
    if (req.method === 'POST') {
      const body = await readBody(req, maxBody);
      if (body === undefined) return reply(res, 413, `Payload Too Large: Request body must not exceed ${maxBody} bytes`);
      try {
        parsed = JSON.parse(body);
      } catch {
        return reply(res, 400, 'Parse error: Invalid JSON', {}, -32700);
      }
    }
    const sid = req.headers['mcp-session-id'];
    if (typeof sid === 'string') {
      const s = sessions.get(sid);
      if (!s) return reply(res, 404, 'unknown or expired session; initialize a new one');
      if (s.identity?.clientId !== identity?.clientId) return reply(res, 403, 'this session belongs to another client; initialize a session of your own');
      return sessions.serve(s, req, res, parsed);
    }
    if (req.method !== 'POST') return reply(res, 400, 'no Mcp-Session-Id: start with an initialize request (POST)');
    if (!sessions.makeRoom()) return reply(res, 503, `too many busy sessions (${sessions.maxSessions}, each with a request in flight); retry later`, { 'retry-after': '1' });
    const transport = newTransport(identity);
    const server = bridge.createServer(identity);
    transport.onclose = () => {
      if (transport.sessionId) sessions.delete(transport.sessionId);
    };
    await server.connect(transport);
    await transport.handleRequest(req, res, parsed);
    // a first request that was not a valid initialize leaves a transport without a session
    if (!transport.sessionId || !sessions.get(transport.sessionId)) await server.close().catch(() => {});
  };

  let oauthApp: ((req: IncomingMessage, res: ServerResponse) => void) | undefined;
  let provider: BridgeOAuthProvider | undefined;
  let resourceMetadataUrl = '';
  const listener = (req: IncomingMessage, res: ServerResponse) => {
    handle(req, res).catch((e: Error) => {
      log('error', `HTTP ${req.method} ${req.url}: ${e.message}`);
      if (!res.headersSent) reply(res, 500, 'internal error');
      else res.end();
    });
  };
  const http: HttpServer = opts.tls ? createHttpsServer({ cert: opts.tls.cert, key: opts.tls.key }, listener) : createServer(listener);
  await new Promise<void>((resolve, reject) => {
    http.once('error', reject);
    http.listen(opts.port, opts.host, () => {
      http.off('error', reject);
      resolve();
    });
  });
  const port = (http.address() as AddressInfo).port;
  const shown = opts.host.includes(':') && !opts.host.startsWith('[') ? `[${opts.host}]` : opts.host;
  const names = isLoopbackHost(opts.host) ? [shown, 'localhost', '127.0.0.1', '[::1]'] : [shown];
  const scheme = opts.tls ? 'https' : 'http';
  const publicUrl = opts.oauth?.publicUrl ? new URL(opts.oauth.publicUrl) : undefined;
  allowedHosts = [...new Set([...names.map((n) => `${n}:${port}`), ...(publicUrl ? [publicUrl.host] : []), ...(opts.allowedHosts ?? [])])];
  allowedOrigins = [...new Set([...names.map((n) => `${scheme}://${n}:${port}`), ...(publicUrl ? [publicUrl.origin] : []), ...(opts.allowedOrigins ?? [])])];
  if (opts.oauth) {
    try {
      const o = setUpOAuth(bridge, opts.oauth, { host: opts.host, base: publicUrl ?? new URL(`${scheme}://${shown}:${port}`), names, port, scheme, allowedHosts, allowedOrigins, secure: !!opts.tls || publicUrl?.protocol === 'https:' });
      oauthApp = o.app;
      provider = o.provider;
      resourceMetadataUrl = o.resourceMetadataUrl;
    } catch (e) {
      http.closeAllConnections();
      await new Promise<void>((r) => http.close(() => r()));
      throw e;
    }
    opts.oauth.state.watch((state) => {
      // a revoked (or removed) client loses its open sessions at once
      const ended = new Set(endedClients(state, [...sessions.clientIds()].filter((id) => id !== STATIC_TOKEN_CLIENT_ID)));
      if (!ended.size) return;
      for (const { id, identity } of sessions.closeClients(ended)) {
        log('info', `client ${identity.label} (${identity.clientId}) was revoked: its session ${id} is closed`);
      }
    });
  }

  const sweep = setInterval(() => sessions.sweep(), sessions.sweepEveryMs);
  sweep.unref();

  return {
    url: publicUrl ? new URL('/mcp', publicUrl).href : `${scheme}://${shown}:${port}/mcp`,
    port,
    sessions: () => sessions.size,
    async close() {
      clearInterval(sweep);
      opts.oauth?.state.unwatch();
      await sessions.closeAll();
      http.closeAllConnections();
      await new Promise<void>((resolve) => http.close(() => resolve()));
    },
  };
}

/**
 * The OAuth endpoints: the SDK's `mcpAuthRouter` (metadata, authorize, token, register, revoke)
 * on the SDK's express app (`createMcpExpressApp`, with its Host-header check), plus `POST
 * /consent`.
 * @throws Error when the issuer would not be https: off loopback (the SDK's rule), naming the fix.
 */
function setUpOAuth(bridge: McpBridge, o: HttpOAuthOptions, at: { host: string; base: URL; names: string[]; port: number; scheme: string; allowedHosts: string[]; allowedOrigins: string[]; secure: boolean }) {
  const base = at.base;
  if (base.protocol !== 'https:' && base.hostname !== '127.0.0.1' && base.hostname !== 'localhost') {
    throw new Error(`--oauth at ${base.origin}: sign-in off loopback needs HTTPS (OAuth 2.1 and the MCP SDK refuse an http: issuer there): give --tls-cert and --tls-key, or put a TLS reverse proxy in front and name it with --public-url https://…`);
  }
  const resources = [new URL('/mcp', base).href, ...(isLoopbackHost(at.host) ? at.names.map((n) => `${at.scheme}://${n}:${at.port}/mcp`) : [])];
  const ctx: ConsentPageContext = {
    secure: at.secure,
    access: (clientId, label) => {
      const names = bridge.listTools({ clientId, label }).map((t) => t.name);
      const rules = bridge.clientRuleKeys();
      if (!rules.length) return names;
      return [`as "${label}" (--client-allow rules exist for: ${rules.join(', ')}; a label without a rule gets nothing):`, ...names];
    },
  };
  const provider = new BridgeOAuthProvider({
    state: o.state, resources: [...new Set(resources)], accessTokenTtlMs: o.accessTokenTtlMs, refreshTokenTtlMs: o.refreshTokenTtlMs,
    renderConsent: (res, consent, client, record, problem) => renderConsentPage(res, ctx, consent, client, record, problem),
  });
  const app = createMcpExpressApp({ host: at.host, allowedHosts: [...new Set(at.allowedHosts.map((h) => new URL(`http://${h}`).hostname))] });
  app.disable('x-powered-by');
  const limits = o.rateLimit === undefined ? {} : { rateLimit: o.rateLimit };
  app.use(mcpAuthRouter({
    provider, issuerUrl: base, resourceServerUrl: new URL('/mcp', base), resourceName: 'ToolMesh',
    authorizationOptions: limits, tokenOptions: limits, clientRegistrationOptions: { ...limits, clientSecretExpirySeconds: 0 }, revocationOptions: limits,
  }));
  app.post('/consent', consentHandler(provider, ctx, at.allowedOrigins, o.onApproved));
  app.use((req, res) => {
    res.status(404).json({ error: 'not_found', error_description: `not found: ${req.path}; the MCP endpoint is /mcp` });
  });
  return { app: app as unknown as (req: IncomingMessage, res: ServerResponse) => void, provider, resourceMetadataUrl: getOAuthProtectedResourceMetadataUrl(new URL('/mcp', base)) };
}
