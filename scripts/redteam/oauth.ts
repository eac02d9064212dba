/**
 * Scenario N of `npm run redteam` (issue 19): the MCP bridge's OAuth 2.1 sign-in
 * (`toolmesh mcp --oauth --oauth-state <dir>/mcp-oauth.json`, beside its static token) attacked
 * with real HTTP from this process: the SDK's client-side auth
 * (`@modelcontextprotocol/sdk/client/auth.js`) for genuine sign-ins, raw requests for the rest.
 * Pairing codes come from `toolmesh mcp pair` and revocation from `toolmesh mcp clients --revoke`,
 * each run as a child process, as an owner would.
 *
 * The bridge's world broker (`reg2`) gets an agent of its own for this, `pi-oauth` (diag pack:
 * `diag_sleep` recording every execution, an audit file), so "nothing ran" is read on the device:
 * its execution record and its audit (which names the signed-in client as `onBehalfOf`).
 *
 * Attacks: (1) /mcp with no, a made-up and an almost-right token; (2) registration flood and bad
 * redirect URIs; (3) pairing-code guessing; (4) cross-site consent posts; (5) refresh-token
 * replay, another client's token on a session, a token for another resource; (6) revocation of
 * a signed-in client with a session open; (7) the codes and tokens in output, audits, state file.
 * Times are ms.
 */
import { createHash, randomBytes, randomInt } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { UnauthorizedError } from '@modelcontextprotocol/sdk/client/auth.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { consentFormOf as consentForm, httpCall, MemoryOAuthClient, type HttpAnswer } from '../oauth-client';
import { AGENT_CLI, Child, SECRETS, TOOLMESH_CLI, agentYaml, sleep, waitFor, type World } from './lib';
import type { Row, Scenario } from './scenarios';

/**
 * The codes and tokens scenario N handled (name → value), filled as it runs; scenario K searches
 * every output and audit for them as it does for its planted secrets.
 */
export const OAUTH_SECRETS: Record<string, string> = {};
/** Files scenario N wrote through the bridge and its agent (the OAuth state file, pi-oauth's audit); K searches them too. */
export const OAUTH_FILES: string[] = [];

/** The problem line a consent page shows, or ''. */
const problemOf = (page: HttpAnswer) => (/<p class="problem" role="alert">([^<]*)<\/p>/.exec(page.body)?.[1] ?? '')
  .replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');

/** POSTs the consent form with `headers` (a browser on the page sends its origin, `Sec-Fetch-Site: same-origin` and the cookie). */
function postConsent(origin: string, f: { consent: string; csrf: string }, pairingCode: string, label: string, headers: Record<string, string>, from?: string): Promise<HttpAnswer> {
  return httpCall(`${origin}/consent`, {
    localAddress: from,
    method: 'POST', body: new URLSearchParams({ consent: f.consent, csrf: f.csrf, label, pairing_code: pairingCode, decision: 'allow' }).toString(),
    headers: { 'content-type': 'application/x-www-form-urlencoded', ...headers },
  });
}

/** The `code` of a consent answer's redirect, or undefined. */
function codeOf(a: HttpAnswer): string | undefined {
  const loc = a.headers.location;
  return typeof loc === 'string' ? new URL(loc).searchParams.get('code') ?? undefined : undefined;
}

/** Signs `oauth` in the way an MCP client does (401 → discovery → registration → authorize), consents with `pairingCode`, and connects. */
async function signIn(mcpUrl: string, oauth: MemoryOAuthClient, pairingCode: string, label: string): Promise<{ client: Client; session: string }> {
  const first = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  try {
    await new Client({ name: oauth.name, version: '1.0.0' }).connect(first);
    throw new Error('connected without signing in');
  } catch (e) {
    if (!(e instanceof UnauthorizedError)) throw e;
  }
  if (!oauth.authorizationUrl) throw new Error('the SDK did not reach the authorization step');
  const page = await httpCall(oauth.authorizationUrl);
  if (page.status !== 200) throw new Error(`consent page: HTTP ${page.status}`);
  const f = consentForm(page);
  const origin = oauth.authorizationUrl.origin;
  const answer = await postConsent(origin, f, pairingCode, label, { origin, 'sec-fetch-site': 'same-origin', cookie: f.cookie });
  const code = codeOf(answer);
  if (!code) throw new Error(`no authorization code: HTTP ${answer.status} ${problemOf(answer)}`);
  OAUTH_SECRETS[`authorization code of ${label}`] = code;
  await first.finishAuth(code);
  const transport = new StreamableHTTPClientTransport(new URL(mcpUrl), { authProvider: oauth });
  const client = new Client({ name: oauth.name, version: '1.0.0' });
  await client.connect(transport);
  if (!transport.sessionId) throw new Error('no session id after sign-in');
  return { client, session: transport.sessionId };
}

function pkce(): { verifier: string; challenge: string } {
  const verifier = randomBytes(32).toString('base64url');
  return { verifier, challenge: createHash('sha256').update(verifier).digest('base64url') };
}

const sha256 = (t: string) => createHash('sha256').update(t).digest('hex');
const MCP_HEADERS = { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-11-25' };
const AGENT = 'pi-oauth';
const TOOL = `${AGENT}__diag_sleep`;
const CB = 'http://127.0.0.1:9/cb';
const OTHER_RESOURCE = 'https://other.example/mcp';

/** A random pairing-code-shaped guess (Crockford base 32). */
function guess(): string {
  const a = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
  let s = '';
  for (let i = 0; i < 8; i++) s += a[randomInt(a.length)];
  return `${s.slice(0, 4)}-${s.slice(4)}`;
}

/** Runs `toolmesh mcp <args>` to its end (at most 15 s); exit code and output. Not one of the world's children: `pair` prints a code by design. */
async function toolmesh(w: World, args: string[]): Promise<{ code: number | null; out: string }> {
  const c = new Child(`toolmesh mcp ${args[0]}`, process.execPath, [TOOLMESH_CLI, 'mcp', ...args], { cwd: w.dir });
  const done = await Promise.race([c.exited.then(() => true), sleep(15_000).then(() => false)]);
  if (!done) await c.stop(2000);
  return { code: done ? c.proc.exitCode : null, out: c.output() };
}

export const N: Scenario = {
  id: 'N', title: 'OAuth sign-in of the MCP bridge: tokens, registration flood, pairing-code guessing, CSRF, refresh replay, revocation, secrets',
  async run(w, row) {
    const stateFile = join(w.dir, 'mcp-oauth.json');
    const origin = new URL(w.bridgeUrl).origin;
    const prmUrl = `${origin}/.well-known/oauth-protected-resource/mcp`;
    const record = join(w.dir, 'pi-oauth-executions.jsonl');
    const audit = join(w.dir, 'pi-oauth-audit.jsonl');
    OAUTH_FILES.push(stateFile, audit);
    /** What happened per attack number, printed in that order. */
    const happened: Array<[number, string]> = [];
    const miss = (m: string) => row.misses.push(m);
    const runs = (tag: string) => (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter((l) => l.includes(`"tag":"${tag}`)).length : 0);
    const allRuns = () => (existsSync(record) ? readFileSync(record, 'utf8').split('\n').filter(Boolean).length : 0);
    const stateText = () => (existsSync(stateFile) ? readFileSync(stateFile, 'utf8') : '');
    const state = () => JSON.parse(stateText() || '{"clients":{},"tokens":{}}') as { clients: Record<string, { consentedAt?: number; revokedAt?: number; label?: string; info: { redirect_uris?: string[] } }>; tokens: Record<string, unknown> };
    const pair = async (n: string) => {
      const r = await toolmesh(w, ['pair', '--oauth-state', stateFile]);
      const code = r.out.trim().split('\n').pop() ?? '';
      if (r.code !== 0 || !/^[0-9A-Z]{4}-[0-9A-Z]{4}$/.test(code)) throw new Error(`toolmesh mcp pair: exit ${r.code}, last line not a code`);
      OAUTH_SECRETS[`pairing code ${n}`] = code;
      OAUTH_SECRETS[`pairing code ${n} (no dash)`] = code.replace('-', '');
      return code;
    };
    const mcp = (body: unknown, o: { token?: string; session?: string } = {}) => httpCall(w.bridgeUrl, {
      method: 'POST', body: JSON.stringify(body),
      headers: { ...MCP_HEADERS, ...(o.token !== undefined ? { authorization: `Bearer ${o.token}` } : {}), ...(o.session ? { 'mcp-session-id': o.session } : {}) },
    });
    const call = (tag: string, id = 1) => ({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: TOOL, arguments: { ms: 10, tag } } });
    const init = { jsonrpc: '2.0', id: 0, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'redteam-N', version: '1' } } };
    const token = async (params: Record<string, string>) => {
      const r = await httpCall(`${origin}/token`, { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body: new URLSearchParams(params).toString() });
      let body: { error?: string; access_token?: string; refresh_token?: string } = {};
      try { body = JSON.parse(r.body); } catch { /* not JSON */ }
      return { status: r.status, body };
    };
    const register = (redirect: string, name: string, from?: string) => httpCall(`${origin}/register`, {
      method: 'POST', localAddress: from, headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_name: name, redirect_uris: [redirect], token_endpoint_auth_method: 'none', grant_types: ['authorization_code', 'refresh_token'] }),
    });
    const authorizeUrl = (clientId: string, challenge: string, resource = w.bridgeUrl) => {
      const u = new URL('/authorize', origin);
      for (const [k, v] of Object.entries({ response_type: 'code', client_id: clientId, redirect_uri: CB, code_challenge: challenge, code_challenge_method: 'S256', state: 'N', resource })) u.searchParams.set(k, v);
      return u;
    };

    // an agent on the bridge's broker whose executions and audit show what ran
    const yaml = join(w.dir, 'pi-oauth.yaml');
    writeFileSync(yaml, agentYaml({ id: AGENT, url: w.reg2Url, record, audit }));
    const agent = new Child('agent pi-oauth', AGENT_CLI, ['--config', yaml], { cwd: w.dir });
    w.children.push(agent);
    const up = await waitFor(() => !agent.running || /online|connected/i.test(agent.output()), 20_000);
    if (!up || !agent.running) throw new Error(`agent pi-oauth did not come up (${agent.exitText})`);

    // a session of the static token: the control call, and the session the bad tokens are tried on
    const opened = await mcp(init, { token: SECRETS.mcpToken });
    const s0 = opened.headers['mcp-session-id'];
    if (opened.status !== 200 || typeof s0 !== 'string') throw new Error(`static-token initialize: HTTP ${opened.status}`);
    await mcp({ jsonrpc: '2.0', method: 'notifications/initialized' }, { token: SECRETS.mcpToken, session: s0 });
    const listed = await waitFor(async () => (await mcp({ jsonrpc: '2.0', id: 2, method: 'tools/list' }, { token: SECRETS.mcpToken, session: s0 })).body.includes(TOOL), 20_000);
    if (!listed) throw new Error(`the bridge does not list ${TOOL}`);
    const ctl = await mcp(call('N-ctl-static', 3), { token: SECRETS.mcpToken, session: s0 });
    const ctlRan = await waitFor(() => runs('N-ctl-static') === 1, 5000);
    if (ctl.status !== 200 || !ctlRan) miss('control: the static token\'s tools/call did not run (the probe cannot see a run)');

    // (1) no token, a made-up token, the static token with its first character changed
    const bad: Array<[string, string | undefined]> = [
      ['no token', undefined], ['made-up tm_at_ token', `tm_at_${randomBytes(32).toString('base64url')}`],
      ['static token, 1st char changed', `X${SECRETS.mcpToken.slice(1)}`],
    ];
    const wwwOk = new RegExp(`^Bearer .*resource_metadata="${prmUrl.replace(/[.?/]/g, '\\$&')}"$`);
    const r1: string[] = [];
    for (const [i, [what, tok]] of bad.entries()) {
      const r = await mcp(call(`N1-${i}`), { token: tok, session: s0 });
      const www = String(r.headers['www-authenticate'] ?? '');
      r1.push(`${what} → ${r.status}${wwwOk.test(www) ? ' +resource_metadata' : ` (WWW-Authenticate: ${www.slice(0, 60) || 'none'})`}`);
      if (r.status !== 401) miss(`(1) ${what}: HTTP ${r.status}, not 401`);
      if (!wwwOk.test(www)) miss(`(1) ${what}: no WWW-Authenticate Bearer resource_metadata`);
    }
    happened.push([1, `(1) ${r1.join(', ')}`]);

    // (2a) redirect URIs that are not https: or loopback http:
    const r2a: string[] = [];
    for (const uri of ['http://evil.example/cb', 'javascript:alert(1)']) {
      const r = await register(uri, 'Evil');
      r2a.push(`${uri} → ${r.status}`);
      if (r.status !== 400) miss(`(2) registration with ${uri}: HTTP ${r.status}, not 400`);
    }
    if (Object.values(state().clients).some((c) => (c.info.redirect_uris ?? []).some((u) => /evil|javascript/.test(u)))) miss('(2) a bad redirect URI was stored');

    // (3) pairing-code guessing on a consent page, with the owner's code outstanding
    const realCode = await pair('3');
    const regG = await register(CB, 'Guesser');
    const clientG = (JSON.parse(regG.body) as { client_id?: string }).client_id;
    if (regG.status !== 201 || !clientG) throw new Error(`registration of the guesser: HTTP ${regG.status}`);
    const pg = pkce();
    const pageG = await httpCall(authorizeUrl(clientG, pg.challenge));
    if (pageG.status !== 200) throw new Error(`consent page: HTTP ${pageG.status}`);
    const fG = consentForm(pageG);
    const browser = { origin, 'sec-fetch-site': 'same-origin', cookie: fG.cookie };
    // one guesser address: 10 wrong codes, then the real one; then the owner's address with the real code
    const GUESSER = '127.0.0.50';
    let blockedAt = 0;
    let codesIssued = 0;
    for (let i = 1; i <= 10; i++) {
      const a = await postConsent(origin, fG, guess(), 'guesser', browser, GUESSER);
      if (codeOf(a)) codesIssued++;
      if (!blockedAt && /from this address/.test(problemOf(a)) && /Too many/.test(problemOf(a))) blockedAt = i;
    }
    const realFromGuesser = await postConsent(origin, fG, realCode, 'guesser', browser, GUESSER);
    const regO = await register(CB, 'Owner', '127.0.0.51');
    const clientO = (JSON.parse(regO.body) as { client_id?: string }).client_id;
    if (regO.status !== 201 || !clientO) throw new Error(`registration of the owner's client: HTTP ${regO.status}`);
    const ownerPage = await httpCall(authorizeUrl(clientO, pkce().challenge), { localAddress: '127.0.0.51' });
    const fO = consentForm(ownerPage);
    const owner = await postConsent(origin, fO, realCode, 'owner', { origin, 'sec-fetch-site': 'same-origin', cookie: fO.cookie }, '127.0.0.51');
    // many addresses together (4 wrong codes each, under the per-address limit): the codes go void at 20
    const code3b = await pair('3b');
    const fV = consentForm(await httpCall(authorizeUrl(clientG, pkce().challenge)));
    const viaV = { origin, 'sec-fetch-site': 'same-origin', cookie: fV.cookie };
    let voidAt = 0;
    for (let i = 1; i <= 24; i++) {
      const a = await postConsent(origin, fV, guess(), 'guesser', viaV, `127.0.3.${Math.ceil(i / 4)}`);
      if (codeOf(a)) codesIssued++;
      if (!voidAt && /Too many wrong pairing codes: every outstanding code is void/.test(problemOf(a))) voidAt = i;
    }
    const realAfterVoid = await postConsent(origin, fV, code3b, 'owner', viaV, '127.0.0.52');
    happened.push([3, `(3) 10 wrong codes from one address: that address refused without a check from guess ${blockedAt || 'never'} (the real code from it → ${codeOf(realFromGuesser) ? 'a code' : `HTTP ${realFromGuesser.status}`}); the owner's real code from another address → ${codeOf(owner) ? 'an authorization code' : `HTTP ${owner.status} "${problemOf(owner).slice(0, 80)}"`}; 24 wrong codes from 6 addresses: every code void at guess ${voidAt || 'never'}, the real code then → ${codeOf(realAfterVoid) ? 'a code' : `HTTP ${realAfterVoid.status}`}`]);
    if (blockedAt !== 6) miss(`(3) the guesser's address was refused from guess ${blockedAt || 'never'}, expected from guess 6 (5 wrong ones allowed)`);
    if (codesIssued) miss(`(3) ${codesIssued} wrong guess(es) got an authorization code`);
    if (codeOf(realFromGuesser)) miss('(3) the guesser\'s address still got a code after 5 wrong ones');
    if (!codeOf(owner)) miss('(3) a stranger\'s guesses locked the owner (another address) out');
    if (voidAt !== 20) miss(`(3) codes voided at guess ${voidAt || 'never'} from many addresses, expected 20`);
    if (codeOf(realAfterVoid)) miss('(3) the real code still worked after 20 wrong guesses from many addresses');
    else if (!problemOf(realAfterVoid).includes('toolmesh mcp pair')) miss('(3) the page does not say to run toolmesh mcp pair');

    // (4) cross-site consent posts with a valid consent id, csrf field and pairing code
    const code4 = await pair('4');
    const p4 = pkce();
    const page4 = await httpCall(authorizeUrl(clientG, p4.challenge));
    const f4 = consentForm(page4);
    const cross: Array<[string, Record<string, string>]> = [
      ['Origin https://evil.example', { origin: 'https://evil.example', cookie: f4.cookie }],
      ['Sec-Fetch-Site cross-site', { 'sec-fetch-site': 'cross-site', cookie: f4.cookie }],
      ['same origin, no cookie', { origin, 'sec-fetch-site': 'same-origin' }],
    ];
    const r4: string[] = [];
    for (const [what, h] of cross) {
      const a = await postConsent(origin, f4, code4, 'csrf', h);
      r4.push(`${what} → ${a.status}`);
      if (a.status !== 403) miss(`(4) ${what}: HTTP ${a.status}, not 403`);
      if (codeOf(a)) miss(`(4) ${what}: an authorization code was issued`);
    }
    if (state().clients[clientG]?.consentedAt) miss('(4) a cross-site post made the client consented');
    const after4 = await postConsent(origin, f4, code4, 'csrf-after', { origin, 'sec-fetch-site': 'same-origin', cookie: f4.cookie });
    const code4g = codeOf(after4);
    if (code4g) OAUTH_SECRETS['authorization code after the CSRF posts'] = code4g;
    row.notes.push(`(4) after the refused cross-site posts the same consent page and pairing code still worked from the page itself: ${code4g ? 'yes (HTTP 303 with a code; the refusal spends neither)' : `no (HTTP ${after4.status})`}`);
    let target4 = 'not tried (no code)';
    if (code4g) {
      const t = await token({ grant_type: 'authorization_code', client_id: clientG, code: code4g, code_verifier: p4.verifier, redirect_uri: CB, resource: OTHER_RESOURCE });
      target4 = `${t.status} ${t.body.error ?? 'tokens'}`;
      if (t.body.error !== 'invalid_target') miss(`(5) authorization code with resource ${OTHER_RESOURCE}: ${target4}, not invalid_target`);
    }
    happened.push([4, `(4) ${r4.join(', ')}`]);

    // (5) genuine sign-ins (SDK client auth, codes from toolmesh mcp pair)
    const A = new MemoryOAuthClient(undefined, 'Client A');
    const a = await signIn(w.bridgeUrl, A, await pair('5a'), 'client-a');
    const B = new MemoryOAuthClient(undefined, 'Client B');
    const b = await signIn(w.bridgeUrl, B, await pair('5b'), 'client-b');
    const at1 = A.saved!.access_token;
    const rt1 = A.saved!.refresh_token!;
    OAUTH_SECRETS['access token a1'] = at1;
    OAUTH_SECRETS['refresh token a1'] = rt1;
    OAUTH_SECRETS['access token b'] = B.saved!.access_token;
    OAUTH_SECRETS['refresh token b'] = B.saved!.refresh_token!;
    await a.client.callTool({ name: TOOL, arguments: { ms: 10, tag: 'N-ctl-a' } });
    await waitFor(() => runs('N-ctl-a') === 1, 5000);
    if (runs('N-ctl-a') !== 1) miss('control: client-a\'s call did not run once');
    const auditLines = () => (existsSync(audit) ? readFileSync(audit, 'utf8') : '');
    const onBehalf = /"onBehalfOf":"client-a"/.test(auditLines());
    row.notes.push(`pi-oauth's audit names client-a as onBehalfOf: ${onBehalf}`);
    // the state file: hashes of live tokens, never the tokens
    const midState = stateText();
    const hashesKept = midState.includes(sha256(at1)) && midState.includes(sha256(B.saved!.access_token));
    const mode = existsSync(stateFile) ? (statSync(stateFile).mode & 0o777).toString(8) : '-';
    if (!hashesKept) miss('(7) the state file does not key the live tokens by their SHA-256');
    if (mode !== '600') miss(`(7) the state file is mode ${mode}, not 600`);
    // another client's token on client-a's session
    const crossSession = await mcp(call('N5-cross'), { token: B.saved!.access_token, session: a.session });
    if (crossSession.status !== 403) miss(`(5) client-b's token on client-a's session: HTTP ${crossSession.status}, not 403`);
    // a refresh token for another resource
    const t5 = await token({ grant_type: 'refresh_token', client_id: String(A.info!.client_id), refresh_token: rt1, resource: OTHER_RESOURCE });
    if (t5.body.error !== 'invalid_target') miss(`(5) refresh with resource ${OTHER_RESOURCE}: ${t5.status} ${t5.body.error ?? 'tokens'}, not invalid_target`);
    // rotation, then the spent refresh token again
    const rot = await token({ grant_type: 'refresh_token', client_id: String(A.info!.client_id), refresh_token: rt1, resource: w.bridgeUrl });
    const at2 = rot.body.access_token ?? '';
    if (rot.body.access_token) OAUTH_SECRETS['access token a2'] = rot.body.access_token;
    if (rot.body.refresh_token) OAUTH_SECRETS['refresh token a2'] = rot.body.refresh_token;
    if (rot.status !== 200 || !at2) throw new Error(`refresh of client-a: HTTP ${rot.status} ${rot.body.error ?? ''}`);
    const before2 = await mcp(init, { token: at2 });
    const replay = await token({ grant_type: 'refresh_token', client_id: String(A.info!.client_id), refresh_token: rt1 });
    const after2 = await mcp(call('N5-after-replay'), { token: at2, session: a.session });
    const rt2 = await token({ grant_type: 'refresh_token', client_id: String(A.info!.client_id), refresh_token: rot.body.refresh_token ?? '' });
    happened.push([5, `(5) client-b's token on client-a's session → ${crossSession.status}; refresh for ${OTHER_RESOURCE} → ${t5.status} ${t5.body.error ?? 'tokens'}, code for it → ${target4}; new access token ${before2.status} before the replay; spent refresh token replayed → ${replay.status} ${replay.body.error ?? 'tokens'}, then the new access token → ${after2.status}, the new refresh token → ${rt2.body.error ?? rt2.status}`]);
    if (before2.status !== 200) miss(`(5) the rotated access token did not work before the replay (HTTP ${before2.status})`);
    if (replay.body.error !== 'invalid_grant') miss(`(5) replayed refresh token: ${replay.status} ${replay.body.error ?? 'tokens'}, not invalid_grant`);
    if (after2.status !== 401) miss(`(5) the new access token after the replay: HTTP ${after2.status}, not 401`);
    if (rt2.body.error !== 'invalid_grant') miss('(5) the new refresh token still worked after the replay');
    await a.client.close().catch(() => undefined);

    // (6) revoke client-b while its session is open
    await b.client.callTool({ name: TOOL, arguments: { ms: 10, tag: 'N-ctl-b' } });
    await waitFor(() => runs('N-ctl-b') === 1, 5000);
    if (runs('N-ctl-b') !== 1) miss('control: client-b\'s call did not run once');
    const rev = await toolmesh(w, ['clients', '--revoke', 'client-b', '--oauth-state', stateFile]);
    const revokedAt = state().clients[String(B.info!.client_id)]?.revokedAt ?? Date.now();
    const tokenAfter = await mcp(call('N6-after-revoke'), { token: B.saved!.access_token, session: b.session });
    const tokenAfterAt = Date.now();
    let goneAt = 0;
    let last = 0;
    while (Date.now() - revokedAt < 5000) {
      last = (await mcp({ jsonrpc: '2.0', id: 7, method: 'tools/list' }, { token: SECRETS.mcpToken, session: b.session })).status;
      if (last === 404) { goneAt = Date.now(); break; }
      await sleep(20);
    }
    const closedLogged = w.bridge.output().includes(`session ${b.session} is closed`);
    happened.push([6, `(6) \`toolmesh mcp clients --revoke client-b\` (exit ${rev.code}): its token → ${tokenAfter.status} ${tokenAfterAt - revokedAt} ms after the revocation was written; its session → 404 (static token) ${goneAt ? `${goneAt - revokedAt} ms` : `never within 5 s (last ${last})`} after`]);
    if (rev.code !== 0) miss(`(6) toolmesh mcp clients --revoke: exit ${rev.code}`);
    if (tokenAfter.status !== 401) miss(`(6) the revoked client's token: HTTP ${tokenAfter.status}, not 401`);
    if (!goneAt || goneAt - revokedAt > 1000) miss(`(6) the revoked client's session was not gone within 1 s (${goneAt ? goneAt - revokedAt : '>5000'} ms)`);
    if (!closedLogged) row.notes.push('(6) the bridge did not log the session\'s closing');
    await b.client.close().catch(() => undefined);

    // (2b) registration flood, each from its own loopback address (past the SDK's 20/h-per-address limit): the bridge's own cap
    // can a web page the owner visits register too? (a CORS preflight as a browser sends it)
    const preflight = await httpCall(`${origin}/register`, { method: 'OPTIONS', headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type' } });
    const acao = preflight.headers['access-control-allow-origin'];
    row.notes.push(`(2) /register answers a CORS preflight from https://evil.example with Access-Control-Allow-Origin: ${acao ?? 'none'}${acao === '*' || acao === 'https://evil.example' ? ' (a web page in the owner\'s browser can send these registrations too)' : ''}`);
    const before = Object.values(state().clients).filter((c) => !c.consentedAt && !c.revokedAt).length;
    const statuses: number[] = [];
    for (let i = 0; i < 30; i++) statuses.push((await register(CB, `flood ${i}`, `127.0.0.${10 + i}`)).status);
    const pending = Object.values(state().clients).filter((c) => !c.consentedAt && !c.revokedAt).length;
    const kept = statuses.filter((s) => s === 201).length;
    const lateComer = await register(CB, 'Late genuine client', '127.0.0.200');
    happened.push([2, `(2) http://evil.example/cb → ${r2a[0].split('→ ')[1]}, javascript: → ${r2a[1].split('→ ')[1]}; 30 registrations from 30 addresses: ${kept} answered 201, ${pending} kept waiting for consent (${before} before; the oldest replaced); a genuine client's registration after them → HTTP ${lateComer.status}`]);
    if (pending > 20) miss(`(2) ${pending} registrations kept waiting for consent, more than 20`);
    if (lateComer.status !== 201) miss(`(2) after the flood a genuine client's registration → HTTP ${lateComer.status}: the flood locks new clients out`);

    // (7) codes and tokens in the bridge's and the agent's output and audit, and in the state file
    await sleep(300);
    const haystacks = [
      { name: 'bridge output', text: w.bridge.output() }, { name: 'bridge audit', text: existsSync(w.mcpAudit) ? readFileSync(w.mcpAudit, 'utf8') : '' },
      { name: 'pi-oauth output', text: agent.output() }, { name: 'pi-oauth audit', text: auditLines() }, { name: 'state file', text: stateText() },
    ];
    const hits: string[] = [];
    for (const [name, v] of Object.entries(OAUTH_SECRETS)) for (const h of haystacks) if (h.text.includes(v)) hits.push(`${name} in ${h.name}`);
    happened.push([7, `(7) ${Object.keys(OAUTH_SECRETS).length} codes/tokens searched in ${haystacks.map((h) => h.name).join(', ')}: ${hits.length} hits${hits.length ? ` (${hits.slice(0, 4).join('; ')})` : ''}; state file keeps SHA-256 keys: ${hashesKept}, mode ${mode}`]);
    if (hits.length) miss(`(7) ${hits.length} code/token hits`);

    const attackRuns = allRuns() - runs('N-ctl');
    row.tried = `(1) tools/call ${TOOL} on a static-token session with no / made-up / almost-right bearer; (2) bad redirect URIs, 30 registrations; (3) 10 wrong pairing codes from one address with the owner's code outstanding, then 24 from six addresses; (4) consent posts cross-site or without the cookie, valid consent id + code; (5) genuine SDK sign-ins (codes from \`toolmesh mcp pair\`), then another client's token on a session, refresh for another resource, refresh token replayed after rotation; (6) \`toolmesh mcp clients --revoke\` with a session open; (7) grep for codes and tokens`;
    row.happened = happened.sort((x, y) => x[0] - y[0]).map((h) => h[1]).join('; ');
    row.ran = `${AGENT} diag_sleep ran ${attackRuns}× from the attacks, ${runs('N-ctl')}× from the 3 genuine control calls (static token, client-a, client-b)`;
    if (attackRuns) miss(`${attackRuns} attack call(s) ran on ${AGENT}`);
  },
};
