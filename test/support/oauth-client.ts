/**
 * An MCP client that signs in with OAuth as Home Assistant, Claude or the Inspector do: the
 * official SDK's client-side auth (`@modelcontextprotocol/sdk/client/auth.js`: RFC 9728 / 8414
 * discovery, RFC 7591 registration, PKCE S256, RFC 8707 `resource`) through an in-memory
 * `OAuthClientProvider`. The consent step is done by {@link consentOverHttp} (raw HTTP, as a
 * browser would send the form) or by a test driving Chromium.
 */
import { request as httpRequest } from 'node:http';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError, type OAuthClientProvider } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { OAuthClientInformationMixed, OAuthClientMetadata, OAuthTokens } from '@modelcontextprotocol/sdk/shared/auth.js';

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

/** A plain HTTP exchange: status, headers, body. */
export interface HttpAnswer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

/** One HTTP request to 127.0.0.1 (no redirects followed). */
export function httpCall(url: string | URL, opts: { method?: string; headers?: Record<string, string>; body?: string; localAddress?: string } = {}): Promise<HttpAnswer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers, localAddress: opts.localAddress }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** The hidden fields and cookie of a consent page answer. */
export function consentFormOf(page: HttpAnswer): { consent: string; csrf: string; cookie: string } {
  const field = (name: string) => new RegExp(`name="${name}" value="([^"]*)"`).exec(page.body)?.[1] ?? '';
  const set = page.headers['set-cookie'];
  const cookie = (Array.isArray(set) ? set[0] : set ?? '').split(';')[0];
  return { consent: field('consent'), csrf: field('csrf'), cookie };
}

/**
 * Opens the authorization URL and posts the consent form as a browser on that page would
 * (same-origin `Origin`, the page's cookie). Returns the redirect's URL (with `code` or `error`),
 * or the page answer when there is no redirect (a wrong code shows the page again).
 */
export async function consentOverHttp(authorizationUrl: URL, form: { pairingCode: string; label: string; decision?: 'allow' | 'deny'; localAddress?: string }): Promise<{ redirect?: URL; answer: HttpAnswer }> {
  const page = await httpCall(authorizationUrl, { localAddress: form.localAddress });
  if (page.status !== 200) return { answer: page };
  const { consent, csrf, cookie } = consentFormOf(page);
  const body = new URLSearchParams({ consent, csrf, label: form.label, pairing_code: form.pairingCode, decision: form.decision ?? 'allow' }).toString();
  const answer = await httpCall(new URL('/consent', authorizationUrl), {
    method: 'POST', body, localAddress: form.localAddress,
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: authorizationUrl.origin, 'sec-fetch-site': 'same-origin', cookie },
  });
  const location = answer.headers.location;
  return { redirect: typeof location === 'string' ? new URL(location) : undefined, answer };
}

/**
 * Signs `oauth` in to the bridge at `mcpUrl`: connect (401 → discovery, registration,
 * authorization URL), consent with `pairingCode` and `label`, `finishAuth(code)`; then returns a
 * connected SDK client.
 * @throws Error when a step does not go as a client expects.
 */
export async function signIn(mcpUrl: string, oauth: MemoryOAuthClient, pairingCode: string, label: string): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  const probe = new Client({ name: oauth.name, version: '1.0.0' });
  try {
    await probe.connect(first);
    // already signed in
    return { client: probe, transport: first };
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (!oauth.authorizationUrl) throw new Error('the SDK did not reach the authorization step');
  const { redirect, answer } = await consentOverHttp(oauth.authorizationUrl, { pairingCode, label });
  const code = redirect?.searchParams.get('code');
  if (!code) throw new Error(`no authorization code: ${answer.status} ${redirect?.href ?? answer.body.slice(0, 300)}`);
  await first.finishAuth(code);
  return connectWith(mcpUrl, oauth);
}

/** A new SDK client connected with `oauth`'s tokens. */
export async function connectWith(mcpUrl: string, oauth: MemoryOAuthClient): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  const client = new Client({ name: oauth.name, version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}
