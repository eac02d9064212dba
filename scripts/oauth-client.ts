/**
 * The client side of an OAuth sign-in to `toolmesh mcp --oauth`, shared by the tests
 * (test/support/oauth-client.ts) and red-team scenario N (scripts/redteam/oauth.ts): plain HTTP
 * to 127.0.0.1, an in-memory `OAuthClientProvider` for the MCP SDK's client-side auth
 * (`@modelcontextprotocol/sdk/client/auth.js`: RFC 9728 / 8414 discovery, RFC 7591 registration,
 * PKCE S256, RFC 8707 `resource`), and the hidden fields of the bridge's consent page.
 */
import { request as httpRequest } from 'node:http';
import type { OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';

/** A plain HTTP exchange: status, headers, body. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/**
 * One HTTP request (no redirects followed); `localAddress` is the address to send from
 * (127.0.0.x), to look like another client. Rejects on a socket error or after 30 s without an answer.
 */
export function httpCall(url: string | URL, opts: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, localAddress: opts.localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.setTimeout(30_000, () => req.destroy(new Error(`${opts.method ?? 'GET'} ${String(url)}: no answer in 30 s`)));
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** An in-memory OAuth client: what it registered, its tokens and PKCE verifier, and the last authorization URL it was sent to. */
export class MemoryOAuthClient implements OAuthClientProvider {
  info?: OAuthClientInformationMixed;
  saved?: OAuthTokens;
  verifier = '';
  /** The authorization URL the SDK would open in a browser. */
  authorizationUrl?: URL;

  constructor(readonly redirect = 'http://127.0.0.1:9/callback', readonly name = 'Test Client', readonly extra: Partial<OAuthClientMetadata> = {}) {}

  get redirectUrl(): string {
    return this.redirect;
  }
  get clientMetadata(): OAuthClientMetadata {
    return { client_name: this.name, redirect_uris: [this.redirect], grant_types: ['authorization_code', 'refresh_token'], response_types: ['code'], token_endpoint_auth_method: 'none', ...this.extra };
  }
  clientInformation() { return this.info; }
  saveClientInformation(i: OAuthClientInformationMixed) { this.info = i; }
  tokens() { return this.saved; }
  saveTokens(t: OAuthTokens) { this.saved = t; }
  redirectToAuthorization(url: URL) { this.authorizationUrl = url; }
  saveCodeVerifier(v: string) { this.verifier = v; }
  codeVerifier() { return this.verifier; }
}

/** The hidden fields and the cookie of a consent page answer. */
export function consentFormOf(page: HttpAnswer): { consent: string; csrf: string; cookie: string } {
  const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(page.body)?.[1] ?? '';
  const set = page.headers['set-cookie'];
  const cookie = (Array.isArray(set) ? set[0] : set ?? '').split(';')[0];
  return { consent: field('consent'), csrf: field('csrf'), cookie };
}
