// OAuth 2.1 sign-in on the bridge's HTTP front, as real clients meet it: the official SDK's
// client-side auth (discovery, registration, PKCE, resource) against a real bridge on a real
// broker with a real agent; the consent form posted as a browser would (Chromium drives it in
// test/mcp-oauth-browser.test.ts). Each refused case is checked at the HTTP answer and, where it
// matters, on the device (nothing ran).
import { mkdtempSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash, randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, RpcCaller, type ToolDefinition } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { McpBridge } from '../mcp/bridge';
import { serveHttp, type HttpFront } from '../mcp/http';
import { newPairingCode, revokeClient, listClients } from '../mcp/oauth/provider';
import { OAuthStateFile } from '../mcp/oauth/state';
import { runMcp } from '../mcp/cli';
import { authorizationUrlOf, MemoryOAuthClient, connectWith, consentOverHttp, httpCall, signIn } from './support/oauth-client';
import { until } from './support/until';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-oauth-test-'));
const quiet = { info() {}, warn() {}, error() {} };
const runs: Record<string, number> = {};
const tools: ToolDefinition[] = [
  defineTool({
    name: 'echo', description: 'Echoes its text', risk: 'low', readOnly: true,
    input: z.strictObject({ text: z.string().max(100) }),
    execute: (a) => { runs.echo = (runs.echo ?? 0) + 1; return { echoed: a.text }; },
  }),
];

let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
let bridge: McpBridge;
let front: HttpFront;
let state: OAuthStateFile;
const STATIC = randomBytes(24).toString('hex');
const logs: string[] = [];

const pair = () => newPairingCode(state).code;
const text = (r: unknown) => JSON.stringify(r);

beforeAll(async () => {
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi', name: 'Pi', kind: 'pi' }, broker: { url: broker.url } }, 'a.yaml', dir), quiet, tools);
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'mcp-oauth-test' });
  await caller.start();
  bridge = new McpBridge({ caller });
  state = new OAuthStateFile(join(dir, 'oauth', 'state.json'));
  front = await serveHttp(bridge, {
    host: '127.0.0.1', port: 0, token: STATIC, log: (l, t) => logs.push(`${l}: ${t}`),
    oauth: { state, rateLimit: false, accessTokenTtlMs: 60_000 },
  });
  await until(() => bridge.listTools().length > 0 || caller.listTools().length > 0, 'the agent seen', 5000);
});
afterAll(async () => {
  await front?.close();
  await bridge?.close();
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
});

describe('discovery (MCP 2025-11-25 authorization; RFC 9728, RFC 8414)', () => {
  it('answers /mcp without a token with 401 and the protected-resource metadata URL', async () => {
    const r = await httpCall(front.url, { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(r.status).toBe(401);
    const base = new URL(front.url).origin;
    expect(r.headers['www-authenticate']).toBe(`Bearer resource_metadata="${base}/.well-known/oauth-protected-resource/mcp"`);
    const prm = JSON.parse((await httpCall(`${base}/.well-known/oauth-protected-resource/mcp`)).body);
    expect(prm.resource).toBe(front.url);
    expect(prm.authorization_servers).toEqual([`${base}/`]);
    const as = JSON.parse((await httpCall(`${base}/.well-known/oauth-authorization-server`)).body);
    expect(as.code_challenge_methods_supported).toEqual(['S256']);
    expect(as.registration_endpoint).toBe(`${base}/register`);
    expect(as.revocation_endpoint).toBe(`${base}/revoke`);
  });

  it('keeps the static bearer token working beside OAuth', async () => {
    const r = await httpCall(front.url, {
      method: 'POST', headers: { authorization: `Bearer ${STATIC}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '1' } } }),
    });
    expect(r.status).toBe(200);
    expect(r.headers['mcp-session-id']).toBeTruthy();
  });
});

describe('sign-in with the SDK client and a pairing code', () => {
  it('registers, gets a code after consent, calls a mesh tool; the state file is 0600 and holds no token', async () => {
    const oauth = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Home Assistant');
    const { client } = await signIn(front.url, oauth, pair(), 'home-assistant');
    const before = runs.echo ?? 0;
    const r = await client.callTool({ name: 'pi__echo', arguments: { text: 'hi' } });
    expect(text(r)).toContain('hi');
    expect(runs.echo).toBe(before + 1);
    const file = readFileSync(state.file, 'utf8');
    expect(statSync(state.file).mode & 0o777).toBe(0o600);
    expect(file).not.toContain(oauth.saved!.access_token);
    expect(file).not.toContain(oauth.saved!.refresh_token!);
    const listed = listClients(state.read()).find((c) => c.clientId === oauth.info!.client_id)!;
    expect(listed.label).toBe('home-assistant');
    expect(listed.name).toBe('Home Assistant');
    await client.close();
  });

  it('refuses a wrong pairing code; five from one address block that address only; twenty in all void every code', async () => {
    const good = pair();
    const url = await authorizationUrlOf(front.url, new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Guesser'));
    const at = (pairingCode: string, localAddress: string) => consentOverHttp(url, { pairingCode, label: 'x', localAddress });
    let last = '';
    for (let i = 0; i < 5; i++) last = (await at(`ZZZZ-ZZZ${i}`, '127.0.0.3')).answer.body;
    expect(last).toContain('0 attempts left from this address');
    // the guesser's address is refused without a check, even with the right code
    const blocked = await at(good, '127.0.0.3');
    expect(blocked.redirect).toBeUndefined();
    expect(blocked.answer.body).toContain('Too many wrong pairing codes from this address');
    // the owner, at another address, is not locked out by a stranger's guesses
    const owner = await at(good, '127.0.0.2');
    expect(owner.redirect?.searchParams.get('code')).toBeTruthy();
    // many addresses together: twenty wrong codes void every outstanding one
    const many = await authorizationUrlOf(front.url, new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Many'));
    const real = pair();
    let voided = '';
    for (let i = 0; i < 20; i++) {
      voided = (await consentOverHttp(many, { pairingCode: `YYYY-YY${String(i).padStart(2, '0')}`, label: 'x', localAddress: `127.0.1.${10 + Math.floor(i / 4)}` })).answer.body;
    }
    expect(voided).toContain('Too many wrong pairing codes: every outstanding code is void');
    const late = await consentOverHttp(many, { pairingCode: real, label: 'x', localAddress: '127.0.2.1' });
    expect(late.redirect).toBeUndefined();
    expect(late.answer.body).toContain('toolmesh mcp pair');
  });

  it('takes a pairing code once', async () => {
    const code = pair();
    const a = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'First');
    const { client } = await signIn(front.url, a, code, 'first');
    await client.close();
    const b = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Second');
    await expect(signIn(front.url, b, code, 'second')).rejects.toThrow(/no authorization code: 400/);
  });

  it('denies: the client is sent back with access_denied and gets no code', async () => {
    const oauth = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Denied');
    await expect(signIn(front.url, oauth, 'unused', 'x')).rejects.toThrow();
    const { redirect } = await consentOverHttp(oauth.authorizationUrl!, { pairingCode: '', label: 'x', decision: 'deny' });
    expect(redirect?.searchParams.get('error')).toBe('access_denied');
    expect(redirect?.searchParams.get('code')).toBeNull();
  });
});

/** Registers a public client by hand and returns its id. */
async function register(redirect: string, name = 'Hand'): Promise<{ status: number; body: any }> {
  const r = await httpCall(new URL('/register', front.url), {
    method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ client_name: name, redirect_uris: [redirect], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] }),
  });
  return { status: r.status, body: JSON.parse(r.body) };
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

function authorizeUrl(clientId: string, redirect: string, challenge: string, extra: Record<string, string> = {}): URL {
  const u = new URL('/authorize', front.url);
  for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: redirect, code_challenge: challenge, code_challenge_method: 'S256', state: 's1', resource: front.url, ...extra })) u.searchParams.set(k, v);
  return u;
}

async function token(params: Record<string, string>): Promise<{ status: number; body: any }> {
  const r = await httpCall(new URL('/token', front.url), { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() });
  return { status: r.status, body: JSON.parse(r.body) };
}

async function codeFor(clientId: string, redirect: string, challenge: string, label = 'hand'): Promise<string> {
  const { redirect: back } = await consentOverHttp(authorizeUrl(clientId, redirect, challenge), { pairingCode: pair(), label });
  const code = back?.searchParams.get('code');
  expect(back?.searchParams.get('state')).toBe('s1');
  if (!code) throw new Error('no code');
  return code;
}

describe('refused cases', () => {
  const cb = 'http://127.0.0.1:9/cb';

  it('registration: redirect URIs must be https or http on loopback', async () => {
    for (const bad of ['http://192.168.1.5/cb', 'http://evil.example/cb', 'javascript:alert(1)', 'https://x.example/cb#frag']) {
      const r = await register(bad);
      expect(r.status, bad).toBe(400);
      expect(r.body.error).toBe('invalid_client_metadata');
    }
    expect((await register('https://ha.example.org/auth/external/callback')).status).toBe(201);
  });

  it('authorize: an unregistered redirect URI gets a 400, never a redirect', async () => {
    const { body } = await register(cb);
    const r = await httpCall(authorizeUrl(body.client_id, 'http://127.0.0.1:9/other', pkce().challenge));
    expect(r.status).toBe(400);
    expect(r.headers.location).toBeUndefined();
  });

  it('a wrong PKCE verifier gets invalid_grant', async () => {
    const { body } = await register(cb);
    const p = pkce();
    const code = await codeFor(body.client_id, cb, p.challenge);
    const r = await token({ grant_type: 'authorization_code', client_id: body.client_id, code, code_verifier: pkce().verifier, redirect_uri: cb, resource: front.url });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_grant');
  });

  it('a token for another resource (RFC 8707): refused at authorize and at the token endpoint', async () => {
    const { body } = await register(cb);
    const p = pkce();
    const page = await httpCall(authorizeUrl(body.client_id, cb, p.challenge, { resource: 'https://other.example/mcp' }));
    expect(page.status).toBe(302);
    expect(new URL(page.headers.location as string).searchParams.get('error')).toBe('invalid_target');
    const code = await codeFor(body.client_id, cb, p.challenge);
    const r = await token({ grant_type: 'authorization_code', client_id: body.client_id, code, code_verifier: p.verifier, redirect_uri: cb, resource: 'https://other.example/mcp' });
    expect(r.status).toBe(400);
    expect(r.body.error).toBe('invalid_target');
  });

  it('an authorization code used twice revokes the tokens it gave', async () => {
    const { body } = await register(cb);
    const p = pkce();
    const code = await codeFor(body.client_id, cb, p.challenge);
    const ok = await token({ grant_type: 'authorization_code', client_id: body.client_id, code, code_verifier: p.verifier, redirect_uri: cb, resource: front.url });
    expect(ok.status).toBe(200);
    const again = await token({ grant_type: 'authorization_code', client_id: body.client_id, code, code_verifier: p.verifier, redirect_uri: cb, resource: front.url });
    expect(again.body.error).toBe('invalid_grant');
    const r = await httpCall(front.url, { method: 'POST', headers: { authorization: `Bearer ${ok.body.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(r.status).toBe(401);
  });

  it('a reused refresh token revokes the whole sign-in, the new tokens too', async () => {
    const { body } = await register(cb);
    const p = pkce();
    const code = await codeFor(body.client_id, cb, p.challenge);
    const first = (await token({ grant_type: 'authorization_code', client_id: body.client_id, code, code_verifier: p.verifier, redirect_uri: cb })).body;
    const second = await token({ grant_type: 'refresh_token', client_id: body.client_id, refresh_token: first.refresh_token });
    expect(second.status).toBe(200);
    expect(second.body.refresh_token).not.toBe(first.refresh_token);
    const replay = await token({ grant_type: 'refresh_token', client_id: body.client_id, refresh_token: first.refresh_token });
    expect(replay.body.error).toBe('invalid_grant');
    const r = await httpCall(front.url, { method: 'POST', headers: { authorization: `Bearer ${second.body.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(r.status).toBe(401);
    expect(r.headers['www-authenticate']).toMatch(/error="invalid_token"/);
    expect((await token({ grant_type: 'refresh_token', client_id: body.client_id, refresh_token: second.body.refresh_token })).body.error).toBe('invalid_grant');
  });

  it('another client\'s token on a session is refused (403); the session goes on for its own client', async () => {
    const a = await signIn(front.url, new MemoryOAuthClient(cb, 'A'), pair(), 'client-a');
    const b = new MemoryOAuthClient(cb, 'B');
    (await signIn(front.url, b, pair(), 'client-b')).client.close();
    const sid = a.transport.sessionId!;
    const r = await httpCall(front.url, {
      method: 'POST', headers: { authorization: `Bearer ${b.saved!.access_token}`, 'mcp-session-id': sid, 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/list' }),
    });
    expect(r.status).toBe(403);
    expect(r.body).toContain('another client');
    expect((await a.client.listTools()).tools.length).toBeGreaterThan(0);
    await a.client.close();
  });

  it('a revoked client is refused at once and its open session is closed within a second', async () => {
    const oauth = new MemoryOAuthClient(cb, 'Revoked Soon');
    const { client, transport } = await signIn(front.url, oauth, pair(), 'revoke-me');
    const sid = transport.sessionId!;
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    const out: string[] = [];
    expect(await runMcp(['clients', '--revoke', 'revoke-me', '--oauth-state', state.file], (l) => out.push(l), (l) => out.push(l))).toBe(0);
    expect(out.join('\n')).toContain(oauth.info!.client_id);
    const t0 = Date.now();
    await until(() => logs.some((l) => l.includes(`session ${sid} is closed`)), 'the session closed', 2000);
    expect(Date.now() - t0).toBeLessThan(1000);
    const r = await httpCall(front.url, { method: 'POST', headers: { authorization: `Bearer ${oauth.saved!.access_token}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{}' });
    expect(r.status).toBe(401);
    // and it cannot sign in again under the same registration
    const again = await httpCall(authorizeUrl(oauth.info!.client_id, cb, pkce().challenge));
    expect(again.status).toBe(400);
    await client.close().catch(() => {});
  });

  it('keeps at most 20 registrations nobody consented to: a new one replaces the oldest', async () => {
    const s2 = new OAuthStateFile(join(dir, 'cap', 'state.json'));
    const bridge2 = new McpBridge({ caller });
    const f2 = await serveHttp(bridge2, { host: '127.0.0.1', port: 0, oauth: { state: s2, rateLimit: false } });
    try {
      const ids: string[] = [];
      for (let i = 0; i < 25; i++) {
        const r = await httpCall(new URL('/register', f2.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: `spam ${i}`, redirect_uris: [cb], token_endpoint_auth_method: 'none' }) });
        expect(r.status).toBe(201);
        ids.push(JSON.parse(r.body).client_id);
      }
      // 20 kept, the newest: a flood cannot lock a new client out, it only pushes the oldest out
      expect(Object.keys(s2.read().clients).sort()).toEqual(ids.slice(5).sort());
      const gone = await httpCall(new URL(`/authorize?response_type=code&client_id=${ids[0]}&redirect_uri=${encodeURIComponent(cb)}&code_challenge=${pkce().challenge}&code_challenge_method=S256`, f2.url));
      expect(gone.status).toBe(400);
      // a consented client is never pushed out
      s2.update((st) => { st.clients[ids[5]].consentedAt = Date.now(); st.clients[ids[5]].label = 'kept'; });
      for (let i = 0; i < 25; i++) {
        await httpCall(new URL('/register', f2.url), { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_name: `more ${i}`, redirect_uris: [cb], token_endpoint_auth_method: 'none' }) });
      }
      expect(s2.read().clients[ids[5]]?.label).toBe('kept');
      expect(Object.keys(s2.read().clients)).toHaveLength(21);
    } finally {
      await f2.close();
      await bridge2.close();
    }
  });
});

describe('the consent page', () => {
  const cb = 'http://127.0.0.1:9/cb';

  it('escapes what the client chose, cannot be framed, and refuses cross-site posts', async () => {
    const { body } = await register(cb, '<img src=x onerror=alert(1)>"Evil"');
    const p = pkce();
    const page = await httpCall(authorizeUrl(body.client_id, cb, p.challenge));
    expect(page.status).toBe(200);
    expect(page.body).not.toContain('<img src=x');
    expect(page.body).toContain('&lt;img src=x onerror=alert(1)&gt;&quot;Evil&quot;');
    expect(page.body).not.toMatch(/<script/i);
    expect(page.headers['x-frame-options']).toBe('DENY');
    expect(page.headers['content-security-policy']).toContain("frame-ancestors 'none'");
    expect(page.headers['content-security-policy']).toContain("default-src 'none'");
    const consent = /name="consent" value="([^"]*)"/.exec(page.body)![1];
    const csrf = /name="csrf" value="([^"]*)"/.exec(page.body)![1];
    const cookie = String(page.headers['set-cookie']).split(';')[0];
    const form = new URLSearchParams({ consent, csrf, label: 'x', pairing_code: pair(), decision: 'allow' }).toString();
    const post = (headers: Record<string, string>) => httpCall(new URL('/consent', front.url), { method: 'POST', body: form, headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers } });
    expect((await post({ origin: 'https://evil.example', cookie })).status).toBe(403);
    expect((await post({ 'sec-fetch-site': 'cross-site', cookie })).status).toBe(403);
    expect((await post({ origin: new URL(front.url).origin })).status).toBe(403); // no cookie: not the browser that saw the page
    // the same form from the page itself works
    const ok = await post({ origin: new URL(front.url).origin, 'sec-fetch-site': 'same-origin', cookie });
    expect(ok.status).toBe(303);
    expect(new URL(ok.headers.location as string).searchParams.get('code')).toBeTruthy();
  });

  it('refuses a label that is not a label, and keeps the page', async () => {
    const { body } = await register(cb);
    const { answer } = await consentOverHttp(authorizeUrl(body.client_id, cb, pkce().challenge), { pairingCode: pair(), label: 'has space' });
    expect(answer.status).toBe(400);
    expect(answer.body).toContain('The label must be');
  });
});

describe('tokens expire and are refreshed', () => {
  it('an expired access token is refreshed by the SDK client and the call goes through', async () => {
    const s3 = new OAuthStateFile(join(dir, 'short', 'state.json'));
    const bridge3 = new McpBridge({ caller });
    const f3 = await serveHttp(bridge3, { host: '127.0.0.1', port: 0, oauth: { state: s3, rateLimit: false, accessTokenTtlMs: 1000 } });
    try {
      const oauth = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Short');
      const { client } = await signIn(f3.url, oauth, newPairingCode(s3).code, 'short');
      await client.close();
      const firstAccess = oauth.saved!.access_token;
      await new Promise((r) => setTimeout(r, 1200));
      const again = await connectWith(f3.url, oauth);
      const r = await again.client.callTool({ name: 'pi__echo', arguments: { text: 'after refresh' } });
      expect(text(r)).toContain('after refresh');
      expect(oauth.saved!.access_token).not.toBe(firstAccess);
      await again.client.close();
    } finally {
      await f3.close();
      await bridge3.close();
    }
  });
});

describe('toolmesh mcp pair and clients', () => {
  it('pair prints the code on its last line; clients lists label, name and state', async () => {
    const out: string[] = [];
    expect(await runMcp(['pair', '--oauth-state', state.file], (l) => out.push(l), (l) => out.push(l))).toBe(0);
    expect(out[out.length - 1]).toMatch(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    const listing: string[] = [];
    expect(await runMcp(['clients', '--oauth-state', state.file], (l) => listing.push(l), (l) => listing.push(l))).toBe(0);
    expect(listing[0]).toBe('LABEL\tCLIENT_ID\tNAME\tREGISTERED\tLAST_USED\tSTATE');
    expect(listing.join('\n')).toMatch(/home-assistant\t[0-9a-f-]{36}\tHome Assistant\t/);
    expect(listing.join('\n')).toMatch(/revoke-me\t.*\trevoked /);
    const err: string[] = [];
    expect(await runMcp(['clients', '--revoke', 'nobody', '--oauth-state', state.file], () => {}, (l) => err.push(l))).toBe(1);
    expect(revokeClient(state, 'nobody')).toEqual([]);
  });
});
