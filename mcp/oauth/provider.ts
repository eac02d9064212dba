/**
 * The bridge's OAuth 2.1 authorization server, as the `OAuthServerProvider` the MCP SDK's
 * `mcpAuthRouter` (`@modelcontextprotocol/sdk/server/auth`) drives: the SDK parses and checks the
 * requests of the metadata (RFC 8414, RFC 9728), registration (RFC 7591), authorize, token and
 * revocation (RFC 7009) endpoints, and verifies PKCE (S256 only); this provider decides.
 *
 * Per the MCP authorization spec (2025-11-25, "Authorization"):
 * - **Registration**: redirect URIs must be `https:` or `http:` on a loopback host (RFC 8252
 *   §7.3; the SDK then accepts any port for loopback ones). At most
 *   {@link OAuthProviderOptions.maxPendingClients} registrations nobody consented to are kept (a new
 *   one replaces the oldest), each for {@link OAuthProviderOptions.pendingClientTtlMs}.
 * - **Authorize**: answers with the consent page (mcp/oauth/consent.ts); the owner approves by
 *   typing a pairing code (`toolmesh mcp pair`) and gives the client a label. Only then is an
 *   authorization code issued (single use, {@link CODE_TTL_MS}).
 * - **Resource indicators** (RFC 8707): a `resource` other than this bridge's `/mcp` URL is
 *   refused (`invalid_target`); every token is bound to the bridge's resource and
 *   {@link verifyAccessToken} refuses one bound elsewhere.
 * - **Tokens**: opaque random strings (`tm_at_…` access, `tm_rt_…` refresh; 256 bits); only their
 *   SHA-256 is stored. Access tokens live {@link OAuthProviderOptions.accessTokenTtlMs} (1 h);
 *   refresh tokens rotate on every use and live {@link OAuthProviderOptions.refreshTokenTtlMs}
 *   (30 days); a spent refresh token used again revokes its whole family (OAuth 2.1 §4.3.1 /
 *   RFC 9700 §4.14.2), as does a reused authorization code (RFC 6749 §4.1.2).
 *
 * Client-ID metadata documents (an optional way for clients to identify themselves in the
 * 2025-11-25 spec) are not supported: the SDK's server has no handler for them, and clients fall
 * back to dynamic registration (docs/mcp-oauth.md).
 */
import { randomBytes } from 'node:crypto';
import type { Response } from 'express';
import type { OAuthRegisteredClientsStore } from '@modelcontextprotocol/sdk/server/auth/clients.js';
import {
  InvalidClientMetadataError, InvalidGrantError, InvalidTargetError, InvalidTokenError,
} from '@modelcontextprotocol/sdk/server/auth/errors.js';
import type { AuthorizationParams, OAuthServerProvider } from '@modelcontextprotocol/sdk/server/auth/provider.js';
import type { AuthInfo } from '@modelcontextprotocol/sdk/server/auth/types.js';
import type { OAuthClientInformationFull, OAuthTokenRevocationRequest, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';
import { issueCode, useCode, type CodeVerdict } from '@toolmesh/agent/protocol/one-time-code';
import type { ClientIdentity } from '../identity';
import { OAuthStateFile, prune, tokenKey, type ClientRecord, type OAuthState } from './state';

/** How long an authorization code may wait for the token request, ms (RFC 6749 §4.1.2 recommends ≤ 10 min; clients redeem at once). */
export const CODE_TTL_MS = 60_000;
/**
 * Wrong pairing codes, from all addresses together, after which every outstanding code is void.
 * One address gets {@link PAIRING_FAILURES_PER_ADDRESS} (mcp/oauth/consent.ts), so a stranger
 * alone cannot void the owner's code; 20 guesses at 2^40 codes succeed with odds of 2·10^-11.
 */
export const PAIRING_MAX_FAILURES = 20;
/** Wrong pairing codes one client address may try per {@link CONSENT_TTL_MS} before it is refused without a check. */
export const PAIRING_FAILURES_PER_ADDRESS = 5;
/** How long a consent page stays valid, ms. */
export const CONSENT_TTL_MS = 10 * 60_000;
/** Most consent pages open at once; the oldest is dropped. */
const MAX_PENDING_CONSENTS = 64;
/** How often a client's `lastUsedAt` is written at most, ms. */
const LAST_USED_EVERY_MS = 60_000;
const LOOPBACK_HOSTS = new Set(['localhost', '127.0.0.1', '[::1]']);

/** Options of {@link BridgeOAuthProvider}. */
export interface OAuthProviderOptions {
  /** The state file (clients, token hashes, pairing codes). */
  state: OAuthStateFile;
  /**
   * The bridge's resource URLs (`…/mcp`), canonical first: a token request or authorization for
   * any other `resource` is refused, and tokens name the canonical one.
   */
  resources: string[];
  /** Access token lifetime, ms (default 1 h). */
  accessTokenTtlMs?: number;
  /** Refresh token lifetime, ms (default 30 days); each use gives a new one with a new lifetime. */
  refreshTokenTtlMs?: number;
  /** Most registrations nobody consented to (default 20); at the cap a new one replaces the oldest. */
  maxPendingClients?: number;
  /** How long a registration nobody consented to is kept, ms (default 1 h). */
  pendingClientTtlMs?: number;
  /** Lifetime of a pairing code, ms (default 10 min). */
  pairingCodeTtlMs?: number;
  /** Writes the consent page for a pending authorization (mcp/oauth/consent.ts). */
  renderConsent: (res: Response, consent: PendingConsent, client: OAuthClientInformationFull, record: ClientRecord | undefined, problem?: string) => void;
}

/** An authorization waiting for the owner on the consent page. */
export interface PendingConsent {
  /** Random id in the page's form (256 bits, base64url). */
  id: string;
  /** Double-submit value: in the form and in a SameSite=Strict cookie. */
  csrf: string;
  clientId: string;
  params: AuthorizationParams;
  expiresAt: number;
}

interface IssuedCode {
  clientId: string;
  label: string;
  challenge: string;
  redirectUri: string;
  resource: string;
  family: string;
  expiresAt: number;
}

function randomToken(prefix: string): string {
  return `${prefix}${randomBytes(32).toString('base64url')}`;
}

/** True when `uri` may be a redirect URI: `https:`, or `http:` on a loopback host; no fragment. */
export function allowedRedirectUri(uri: string): boolean {
  let u: URL;
  try {
    u = new URL(uri);
  } catch {
    return false;
  }
  if (u.hash) return false;
  return u.protocol === 'https:' || (u.protocol === 'http:' && LOOPBACK_HOSTS.has(u.hostname));
}

/** The OAuth side of the bridge's HTTP front. One per bridge. */
export class BridgeOAuthProvider implements OAuthServerProvider {
  private readonly consents = new Map<string, PendingConsent>();
  /** SHA-256 of issued authorization codes → what they grant; spent ones stay (as `null`) until they expire, to catch reuse. */
  private readonly codes = new Map<string, IssuedCode | { spent: true; family: string; expiresAt: number }>();
  private readonly accessTtl: number;
  private readonly refreshTtl: number;
  private readonly maxPending: number;
  private readonly pendingTtl: number;

  constructor(private readonly opts: OAuthProviderOptions) {
    this.accessTtl = opts.accessTokenTtlMs ?? 3_600_000;
    this.refreshTtl = opts.refreshTokenTtlMs ?? 30 * 86_400_000;
    this.maxPending = opts.maxPendingClients ?? 20;
    this.pendingTtl = opts.pendingClientTtlMs ?? 3_600_000;
  }

  /** The canonical resource URL tokens are bound to. */
  get resource(): string {
    return this.opts.resources[0];
  }

  private resourceOf(given: URL | string | undefined): string {
    if (given === undefined) return this.resource;
    const href = (typeof given === 'string' ? new URL(given) : given).href;
    const same = this.opts.resources.find((r) => r === href || r === href.replace(/\/$/, ''));
    if (!same) throw new InvalidTargetError(`resource ${href} is not this server; tokens here are for ${this.resource}`);
    return this.resource;
  }

  /** The registered clients (RFC 7591) as the SDK's handlers read them. */
  readonly clientsStore: OAuthRegisteredClientsStore = {
    getClient: (clientId: string): OAuthClientInformationFull | undefined => {
      const c = this.opts.state.read().clients[clientId];
      if (!c || c.revokedAt) return undefined;
      if (!c.consentedAt && Date.now() - c.registeredAt > this.pendingTtl) return undefined;
      return c.info as unknown as OAuthClientInformationFull;
    },
    registerClient: (client: Omit<OAuthClientInformationFull, 'client_id' | 'client_id_issued_at'>): OAuthClientInformationFull => {
      const bad = client.redirect_uris.filter((u) => !allowedRedirectUri(String(u)));
      if (bad.length || client.redirect_uris.length === 0) {
        throw new InvalidClientMetadataError(`redirect_uris: each must be https: or http: on a loopback host (127.0.0.1, localhost, [::1]), without a fragment${bad.length ? `; refused: ${bad.map(String).join(', ')}` : ''}`);
      }
      if (client.grant_types && !client.grant_types.includes('authorization_code')) {
        throw new InvalidClientMetadataError('grant_types: this server issues tokens by authorization code (with refresh_token); it must include authorization_code');
      }
      const full = client as OAuthClientInformationFull;
      if (!full.client_id) throw new InvalidClientMetadataError('client_id generation is off; this server makes its own');
      return this.opts.state.update((s) => {
        const now = Date.now();
        prune(s, now, this.pendingTtl);
        // at the cap the oldest registration nobody consented to goes, not the new one: refusing
        // would let 20 anonymous registrations lock every new client out for an hour
        const pending = Object.entries(s.clients).filter(([, c]) => !c.consentedAt && !c.revokedAt).sort((a, b) => a[1].registeredAt - b[1].registeredAt);
        for (let i = 0; i <= pending.length - this.maxPending; i++) delete s.clients[pending[i][0]];
        s.clients[full.client_id] = { info: full as unknown as Record<string, unknown>, registeredAt: now };
        return full;
      });
    },
  };

  /** Starts the authorize step: checks the resource, then shows the consent page. */
  async authorize(client: OAuthClientInformationFull, params: AuthorizationParams, res: Response): Promise<void> {
    this.resourceOf(params.resource);
    const now = Date.now();
    for (const [id, p] of this.consents) if (p.expiresAt <= now) this.consents.delete(id);
    while (this.consents.size >= MAX_PENDING_CONSENTS) this.consents.delete(this.consents.keys().next().value!);
    const consent: PendingConsent = {
      id: randomBytes(32).toString('base64url'), csrf: randomBytes(32).toString('base64url'),
      clientId: client.client_id, params, expiresAt: now + CONSENT_TTL_MS,
    };
    this.consents.set(consent.id, consent);
    this.opts.renderConsent(res, consent, client, this.opts.state.read().clients[client.client_id]);
  }

  /** The pending consent of `id`, when it is still open. */
  consent(id: string): PendingConsent | undefined {
    const c = this.consents.get(id);
    if (c && c.expiresAt > Date.now()) return c;
    if (c) this.consents.delete(id);
    return undefined;
  }

  /** Closes a pending consent (decided, or refused for good). */
  endConsent(id: string): void {
    this.consents.delete(id);
  }

  /**
   * The owner approved `consent` with `pairingCode` and gave the client `label`: consumes the
   * code, records the consent and label, and returns the authorization code. A wrong code is
   * counted (protocol/one-time-code.ts) and returned as the verdict.
   */
  approve(consent: PendingConsent, pairingCode: string, label: string): { code: string } | Exclude<CodeVerdict, { ok: true }> | { revoked: true } {
    const verdict = this.opts.state.update((s): CodeVerdict | { revoked: true } => {
      const c = s.clients[consent.clientId];
      if (!c || c.revokedAt) return { revoked: true };
      const v = useCode(s.pairing, pairingCode, { maxFailures: PAIRING_MAX_FAILURES });
      if (v.ok) {
        const now = Date.now();
        c.consentedAt ??= now;
        c.label = label;
      }
      return v;
    });
    if ('revoked' in verdict) return verdict;
    if (!verdict.ok) return verdict;
    this.consents.delete(consent.id);
    const code = randomToken('tm_ac_');
    const now = Date.now();
    for (const [k, v] of this.codes) if (v.expiresAt <= now) this.codes.delete(k);
    this.codes.set(tokenKey(code), {
      clientId: consent.clientId, label, challenge: consent.params.codeChallenge, redirectUri: consent.params.redirectUri,
      resource: this.resourceOf(consent.params.resource), family: randomBytes(16).toString('hex'), expiresAt: now + CODE_TTL_MS,
    });
    return { code };
  }

  private issued(code: string, clientId: string): IssuedCode {
    const c = this.codes.get(tokenKey(code));
    if (!c || c.expiresAt <= Date.now()) throw new InvalidGrantError('authorization code unknown or expired');
    if ('spent' in c) {
      // RFC 6749 §4.1.2: a code used twice revokes what it gave
      this.revokeFamily(c.family);
      this.codes.delete(tokenKey(code));
      throw new InvalidGrantError('authorization code already used; the tokens it gave are revoked');
    }
    if (c.clientId !== clientId) throw new InvalidGrantError('authorization code was issued to another client');
    return c;
  }

  async challengeForAuthorizationCode(client: OAuthClientInformationFull, authorizationCode: string): Promise<string> {
    return this.issued(authorizationCode, client.client_id).challenge;
  }

  async exchangeAuthorizationCode(client: OAuthClientInformationFull, authorizationCode: string, _codeVerifier?: string, redirectUri?: string, resource?: URL): Promise<OAuthTokens> {
    const c = this.issued(authorizationCode, client.client_id);
    // OAuth 2.1 §4.1.3: the redirect_uri, when the authorization request had one, must match
    if (redirectUri !== undefined && redirectUri !== c.redirectUri) throw new InvalidGrantError('redirect_uri does not match the authorization request');
    if (resource !== undefined && this.resourceOf(resource) !== c.resource) throw new InvalidTargetError('resource does not match the authorization request');
    this.codes.set(tokenKey(authorizationCode), { spent: true, family: c.family, expiresAt: c.expiresAt });
    return this.issueTokens(client.client_id, c.family, c.resource);
  }

  private issueTokens(clientId: string, family: string, resource: string, spend?: string): OAuthTokens {
    const access = randomToken('tm_at_');
    const refresh = randomToken('tm_rt_');
    const now = Date.now();
    this.opts.state.update((s) => {
      const c = s.clients[clientId];
      if (!c || c.revokedAt) throw new InvalidGrantError('the client was revoked');
      if (spend) {
        const old = s.tokens[spend];
        if (!old || old.spentAt) throw new InvalidGrantError('refresh token already used');
        old.spentAt = now;
      }
      prune(s, now, this.pendingTtl);
      s.tokens[tokenKey(access)] = { kind: 'access', clientId, family, expiresAt: now + this.accessTtl, resource };
      s.tokens[tokenKey(refresh)] = { kind: 'refresh', clientId, family, expiresAt: now + this.refreshTtl, resource };
    });
    return { access_token: access, token_type: 'Bearer', expires_in: Math.floor(this.accessTtl / 1000), refresh_token: refresh };
  }

  async exchangeRefreshToken(client: OAuthClientInformationFull, refreshToken: string, _scopes?: string[], resource?: URL): Promise<OAuthTokens> {
    const key = tokenKey(refreshToken);
    const t = this.opts.state.read().tokens[key];
    if (!t || t.kind !== 'refresh' || t.expiresAt <= Date.now()) throw new InvalidGrantError('refresh token unknown, revoked or expired');
    if (t.clientId !== client.client_id) throw new InvalidGrantError('refresh token was issued to another client');
    if (t.spentAt) {
      // a spent refresh token again: stolen or replayed; the whole family goes (OAuth 2.1 §4.3.1)
      this.revokeFamily(t.family);
      throw new InvalidGrantError('refresh token already used; every token of this sign-in is revoked, sign in again');
    }
    if (resource !== undefined && this.resourceOf(resource) !== t.resource) throw new InvalidTargetError('resource does not match the token');
    return this.issueTokens(client.client_id, t.family, t.resource, key);
  }

  private revokeFamily(family: string): void {
    this.opts.state.update((s) => {
      for (const [k, t] of Object.entries(s.tokens)) if (t.family === family) delete s.tokens[k];
    });
  }

  /**
   * The identity and grant of an access token.
   * @throws InvalidTokenError when it is unknown, expired, bound to another resource, or its client was revoked.
   */
  async verifyAccessToken(token: string): Promise<AuthInfo> {
    const state = this.opts.state.read();
    const t = state.tokens[tokenKey(token)];
    const now = Date.now();
    if (!t || t.kind !== 'access') throw new InvalidTokenError('access token unknown or revoked');
    if (t.expiresAt <= now) throw new InvalidTokenError('access token expired');
    if (t.resource !== this.resource) throw new InvalidTokenError(`access token is for ${t.resource}, not this server`);
    const c = state.clients[t.clientId];
    if (!c || c.revokedAt || !c.label) throw new InvalidTokenError('the client of this token was revoked');
    if (!c.lastUsedAt || now - c.lastUsedAt > LAST_USED_EVERY_MS) {
      try {
        this.opts.state.update((s) => { if (s.clients[t.clientId]) s.clients[t.clientId].lastUsedAt = now; });
      } catch { /* a busy lock only delays the "last used" column */ }
    }
    return { token, clientId: t.clientId, scopes: [], expiresAt: Math.floor(t.expiresAt / 1000), resource: new URL(t.resource), extra: { label: c.label } };
  }

  /** RFC 7009: revokes the token and every token of its sign-in; unknown tokens are ignored. */
  async revokeToken(client: OAuthClientInformationFull, request: OAuthTokenRevocationRequest): Promise<void> {
    const t = this.opts.state.read().tokens[tokenKey(request.token)];
    if (t && t.clientId === client.client_id) this.revokeFamily(t.family);
  }
}

/** The identity of a verified access token (mcp/identity.ts). */
export function identityOf(info: AuthInfo): ClientIdentity {
  return { clientId: info.clientId, label: String(info.extra?.label ?? '') };
}

/**
 * Makes a pairing code in the state file (`toolmesh mcp pair`, `npm start`): valid `ttlMs`
 * (default 10 min), single use; wrong attempts are limited per address and in all ({@link PAIRING_FAILURES_PER_ADDRESS}, {@link PAIRING_MAX_FAILURES}).
 */
export function newPairingCode(state: OAuthStateFile, ttlMs?: number): { code: string; expiresAt: number } {
  return state.update((s) => issueCode(s.pairing, { ttlMs }));
}

/** A registered client as `toolmesh mcp clients` lists it. */
export interface ClientListing {
  clientId: string;
  label?: string;
  name?: string;
  registeredAt: number;
  consentedAt?: number;
  lastUsedAt?: number;
  revokedAt?: number;
  redirectUris: string[];
}

/** Every registered client, newest first. */
export function listClients(state: OAuthState): ClientListing[] {
  return Object.entries(state.clients).map(([clientId, c]) => ({
    clientId, label: c.label, name: typeof c.info.client_name === 'string' ? c.info.client_name : undefined,
    registeredAt: c.registeredAt, consentedAt: c.consentedAt, lastUsedAt: c.lastUsedAt, revokedAt: c.revokedAt,
    redirectUris: Array.isArray(c.info.redirect_uris) ? c.info.redirect_uris.map(String) : [],
  })).sort((a, b) => b.registeredAt - a.registeredAt);
}

/**
 * Revokes every client whose client_id or label is `who`: marks it revoked and drops its tokens.
 * A running bridge closes its sessions within a second (it watches the file).
 * @returns the client ids revoked (empty when none matched).
 */
export function revokeClient(state: OAuthStateFile, who: string): string[] {
  return state.update((s) => {
    const ids = Object.entries(s.clients).filter(([id, c]) => !c.revokedAt && (id === who || c.label === who)).map(([id]) => id);
    const now = Date.now();
    for (const id of ids) s.clients[id].revokedAt = now;
    for (const [k, t] of Object.entries(s.tokens)) if (ids.includes(t.clientId)) delete s.tokens[k];
    return ids;
  });
}

/** Client ids that may no longer hold sessions: revoked, or gone from the file. */
export function endedClients(state: OAuthState, open: Iterable<string>): string[] {
  return [...open].filter((id) => !state.clients[id] || !!state.clients[id].revokedAt);
}
