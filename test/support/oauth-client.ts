/**
 * An MCP client that signs in with OAuth as Home Assistant, Claude or the Inspector do: the
 * official SDK's client-side auth (`@modelcontextprotocol/sdk/client/auth.js`: RFC 9728 / 8414
 * discovery, RFC 7591 registration, PKCE S256, RFC 8707 `resource`) through an in-memory
 * `OAuthClientProvider`. The consent step is done by {@link consentOverHttp} (raw HTTP, as a
 * browser would send the form) or by a test driving Chromium.
 */
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { consentFormOf, httpCall, MemoryOAuthClient, type HttpAnswer } from '../../scripts/oauth-client';

export { consentFormOf, httpCall, MemoryOAuthClient, type HttpAnswer };

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
  const url = await authorizationUrlOf(mcpUrl, oauth, first);
  const { redirect, answer } = await consentOverHttp(url, { pairingCode, label });
  const code = redirect?.searchParams.get('code');
  if (!code) throw new Error(`no authorization code: ${answer.status} ${redirect?.href ?? answer.body.slice(0, 300)}`);
  await first.finishAuth(code);
  return connectWith(mcpUrl, oauth);
}

/**
 * Starts a sign-in as an MCP client does (connect → 401 → discovery → registration) and returns
 * the authorization URL it would open in a browser.
 * @throws Error when the client connects without signing in, or the SDK stops before authorizing.
 */
export async function authorizationUrlOf(mcpUrl: string, oauth: MemoryOAuthClient, transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth })): Promise<URL> {
  try {
    await new Client({ name: oauth.name, version: '1.0.0' }).connect(transport);
    throw new Error('the client connected without signing in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (!oauth.authorizationUrl) throw new Error('the SDK did not reach the authorization step');
  return oauth.authorizationUrl;
}

/** A new SDK client connected with `oauth`'s tokens. */
export async function connectWith(mcpUrl: string, oauth: MemoryOAuthClient): Promise<{ client: Client; transport: StreamableHTTPClientTransport }> {
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  const client = new Client({ name: oauth.name, version: '1.0.0' });
  await client.connect(transport);
  return { client, transport };
}
