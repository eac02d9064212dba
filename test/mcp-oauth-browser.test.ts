// The consent page in Chromium, as a person meets it: the SDK's OAuth client sends them to the
// bridge's authorize URL; they read who asks, type a label and the pairing code, press Allow; the
// browser lands on the client's loopback redirect URI with the code, and the client calls a tool.
// Also what a hostile page cannot do: frame the consent page, or post the form cross-site.
// Screenshots at phone (390 × 844) and desktop sizes go to a temp folder printed by the test.
import { createServer, type Server } from 'node:http';
import { mkdtempSync, statSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, RpcCaller } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { McpBridge } from '../mcp/bridge';
import { serveHttp, type HttpFront } from '../mcp/http';
import { newPairingCode } from '../mcp/oauth/provider';
import { OAuthStateFile } from '../mcp/oauth/state';
import { CHROMIUM_ARGS } from './support/browser';
import { systemBinary } from './support/mosquitto';
import { authorizationUrlOf, MemoryOAuthClient, connectWith } from './support/oauth-client';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-oauth-browser-'));
const shots = mkdtempSync(join(tmpdir(), 'toolmesh-oauth-shots-'));
const quiet = { info() {}, warn() {}, error() {} };
let echoed = 0;

let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
let bridge: McpBridge;
let front: HttpFront;
let state: OAuthStateFile;
let browser: Browser;
/** The client's redirect URI (a loopback server, as a native MCP client runs) and a hostile site, on one server. */
let site: Server;
let siteUrl = '';
const arrived: URL[] = [];

beforeAll(async () => {
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi', name: 'Pi', kind: 'pi' }, broker: { url: broker.url } }, 'a.yaml', dir), quiet, [
    defineTool({ name: 'echo', description: 'Echoes', risk: 'low', readOnly: true, input: z.strictObject({ text: z.string() }), execute: (a) => { echoed++; return { echoed: a.text }; } }),
  ]);
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'mcp-browser-test' });
  await caller.start();
  bridge = new McpBridge({ caller });
  state = new OAuthStateFile(join(dir, 'state.json'));
  front = await serveHttp(bridge, { host: '127.0.0.1', port: 0, oauth: { state, rateLimit: false } });
  site = createServer((req, res) => {
    const u = new URL(req.url ?? '/', siteUrl);
    if (u.pathname === '/callback') {
      arrived.push(u);
      res.writeHead(200, { 'content-type': 'text/html' }).end('<p>Signed in; you can close this window.</p>');
    } else if (u.pathname === '/hostile') {
      // a copy of the consent form that posts itself to the bridge as soon as it loads
      const q = (k: string) => (u.searchParams.get(k) ?? '').replace(/[^A-Za-z0-9_:/.-]/g, '');
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<form id="x" method="post" action="${q('action')}">
        <input name="consent" value="${q('consent')}"><input name="csrf" value="${q('csrf')}"><input name="label" value="evil">
        <input name="pairing_code" value="${q('code')}"><input name="decision" value="allow"></form>
        <script>document.getElementById('x').submit()</script>`);
    } else if (u.pathname === '/frame') {
      res.writeHead(200, { 'content-type': 'text/html' }).end(`<iframe id="f" src="${u.searchParams.get('src')}" width="600" height="600"></iframe>`);
    } else {
      res.writeHead(404).end();
    }
  });
  await new Promise<void>((r) => site.listen(0, '127.0.0.1', r));
  // the hostile site is "localhost": another origin than the bridge's 127.0.0.1
  siteUrl = `http://localhost:${(site.address() as AddressInfo).port}`;
  if (CHROMIUM) browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
});
afterAll(async () => {
  await browser?.close();
  await new Promise((r) => site?.close(r));
  await front?.close();
  await bridge?.close();
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
  console.log(`mcp-oauth-browser: screenshots in ${shots}`);
});

/** Starts a sign-in with the SDK client; returns the authorization URL a browser would open. */
const startSignIn = (oauth: MemoryOAuthClient) => authorizationUrlOf(front.url, oauth);

describe.skipIf(!CHROMIUM)('the consent page in Chromium (skipped outside CI when chromium is not installed)', () => {
  it.each([
    { size: 'phone', viewport: { width: 390, height: 844 } },
    { size: 'desktop', viewport: { width: 1280, height: 900 } },
  ])('a person approves on a $size: label, pairing code, Allow; the client gets a code and calls a tool', async ({ size, viewport }) => {
    const oauth = new MemoryOAuthClient(`http://127.0.0.1:${(site.address() as AddressInfo).port}/callback`, 'Home Assistant');
    const url = await startSignIn(oauth);
    const context = await browser.newContext({ viewport });
    const page = await context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(e.message));
    // the wrong code's page is a 400 and the browser asks for /favicon.ico (404): resources, not script errors
    page.on('console', (m) => { if (m.type() === 'error' && !/^Failed to load resource/.test(m.text())) errors.push(m.text()); });
    await page.goto(url.href);
    await expect(page.getByRole('heading')).toBeTruthy();
    expect(await page.title()).toBe('Allow Home Assistant to use ToolMesh?');
    expect(await page.locator('main').innerText()).toContain('pi__echo');
    // nothing wider than the screen on a phone
    expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(viewport.width);
    const code = newPairingCode(state).code.toLowerCase();
    await page.locator('#label').fill(`ha-${size}`);
    await page.locator('#pairing').fill('WRONG-123');
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForLoadState();
    expect(await page.locator('.problem').innerText()).toContain('attempts left');
    await page.screenshot({ path: join(shots, `consent-${size}-wrong-code.png`), fullPage: true });
    // the person types the code right (lower case, as a phone keyboard might)
    await page.locator('#pairing').fill(code);
    await page.screenshot({ path: join(shots, `consent-${size}.png`), fullPage: true });
    const before = arrived.length;
    await page.getByRole('button', { name: 'Allow' }).click();
    await page.waitForURL(/\/callback\?/);
    expect(arrived.length).toBe(before + 1);
    const back = arrived[arrived.length - 1];
    expect(back.searchParams.get('state')).toBe(url.searchParams.get('state'));
    const authCode = back.searchParams.get('code')!;
    expect(authCode).toMatch(/^tm_ac_/);
    const t = new StreamableHTTPClientTransport(new URL(front.url), { authProvider: oauth });
    await t.finishAuth(authCode);
    const { client } = await connectWith(front.url, oauth);
    const n = echoed;
    await client.callTool({ name: 'pi__echo', arguments: { text: size } });
    expect(echoed).toBe(n + 1);
    await client.close();
    expect(errors).toEqual([]);
    expect(statSync(join(shots, `consent-${size}.png`)).size).toBeGreaterThan(5000);
    await context.close();
  });

  it('cannot be framed by another site', async () => {
    const url = await startSignIn(new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Framed'));
    const context = await browser.newContext();
    const page = await context.newPage();
    const blocked = new Promise<boolean>((resolve) => {
      page.on('console', (m) => { if (/frame-ancestors|X-Frame-Options|Refused to display/i.test(m.text())) resolve(true); });
      setTimeout(() => resolve(false), 5000);
    });
    await page.goto(`${siteUrl}/frame?src=${encodeURIComponent(url.href)}`);
    expect(await blocked).toBe(true);
    const frame = page.frames().find((f) => f !== page.mainFrame());
    const inside = frame ? await frame.locator('body').innerText().catch(() => '') : '';
    expect(inside).not.toContain('Pairing code');
    await context.close();
  });

  it('refuses the form posted from another site, even with a valid consent id and code', async () => {
    const oauth = new MemoryOAuthClient('http://127.0.0.1:9/cb', 'Cross Site');
    const url = await startSignIn(oauth);
    const context = await browser.newContext();
    const page = await context.newPage();
    // the victim's browser loads the real page (gets its cookie), then a hostile page posts a copy of the form
    await page.goto(url.href);
    const consent = await page.locator('input[name=consent]').inputValue();
    const csrf = await page.locator('input[name=csrf]').inputValue();
    const code = newPairingCode(state).code;
    const hostile = new URL('/hostile', siteUrl);
    for (const [k, v] of Object.entries({ action: new URL('/consent', front.url).href, consent, csrf, code })) hostile.searchParams.set(k, v);
    const [answer] = await Promise.all([page.waitForResponse((r) => r.url().endsWith('/consent')), page.goto(hostile.href)]);
    expect(answer.status()).toBe(403);
    expect(await answer.text()).toMatch(/refused/);
    await context.close();
  });
});
