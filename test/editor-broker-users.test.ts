// Broker users one by one and removing a device, in the real Node-RED editor (Chromium through
// playwright-core, English): Node-RED runs this pack with a tool-registry whose embedded broker
// has authentication on and one user in its text list. In the registry's dialog (Security tab) the
// list shows that user; Add makes a user with a generated password shown once, which logs in at
// once; Reset password (confirmed) shows a new one and the old stops working. Then a real agent
// (RpcServer) logs in as that user, the ToolMesh sidebar lists it, and its Remove button (after a
// confirmation naming it) revokes and decommissions it: it leaves the sidebar, cannot reconnect,
// and a fresh subscriber gets nothing retained under its id. Fails on page and console errors and
// requests to any host but 127.0.0.1.
import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import mqtt from 'mqtt';
import { RpcServer, defineTool } from '../protocol';
import { encryptCredentials } from '../scripts/demo/gate-keys';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const registryCat = JSON.parse(readFileSync(join(REPO_ROOT, 'nodes/tool-registry/locales/en-US/tool-registry.json'), 'utf8'))['tool-registry'];
const sidebarCat = JSON.parse(readFileSync(join(REPO_ROOT, 'nodes/toolmesh-sidebar/locales/en-US/toolmesh-sidebar.json'), 'utf8'))['toolmesh-sidebar'];

function testFlow(port: number) {
  const z = 'bu-tab';
  return [
    { id: z, type: 'tab', label: 'users' },
    { id: 'bu-registry', type: 'tool-registry', name: 'mesh', mode: 'embedded', port, host: '127.0.0.1', requireAuth: true, root: 'toolmesh/v1', policy: '*/*', timeout: 30000 },
    { id: 'bu-remote', type: 'remote-tool', z, x: 200, y: 80, registry: 'bu-registry', agent: '', tool: '', arguments: '{}', argsFrom: 'config', wires: [[]] },
  ];
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** Connects once and reports `connected`, or the refusal's message. */
function tryConnect(url: string, username: string, password: string): Promise<string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { username, password, reconnectPeriod: 0, connectTimeout: 5000 });
    c.on('connect', () => c.end(true, {}, () => resolve('connected')));
    c.on('error', (e) => c.end(true, {}, () => resolve(e.message)));
  });
}

declare const RED: any;

describe.skipIf(!CHROMIUM)('broker users and device removal in the Node-RED editor (skipped outside CI when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  let brokerUrl: string;
  let browser: WatchedPage | undefined;
  let page: Page;
  let password = '';
  let agent: RpcServer | undefined;

  beforeAll(async () => {
    const port = await freePort();
    brokerUrl = `mqtt://127.0.0.1:${port}`;
    nodeRed = await startNodeRedProcess({
      flows: testFlow(port),
      files: { 'flows_cred.json': JSON.stringify(encryptCredentials('toolmesh-test-secret', { 'bu-registry': { users: 'agent listed listed-secret-long\nadmin watch watch-secret-long' } })) },
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
    await until(() => listening(port), 'the embedded broker', 20_000);
    browser = await openWatchedPage(CHROMIUM!, 'en-US');
    page = browser.page;
    await page.goto(`${nodeRed.url}/`);
    await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('bu-remote') && RED.workspaces?.active() === 'bu-tab', null, { timeout: 60_000 });
  }, 120_000);
  afterAll(async () => {
    await agent?.stop();
    await browser?.close();
    await nodeRed?.stop();
  });

  it('lists, adds with a password shown once, and resets a broker user in the registry dialog', async () => {
    browser!.phase = 'registry dialog';
    await page.dblclick('[id="bu-remote"] .red-ui-flow-node');
    await page.click('#node-input-btn-registry-edit');
    await page.waitForSelector('#node-config-dialog-cancel', { state: 'visible' });
    await page.click('#tool-registry-tabs a[href="#tool-registry-tab-security"]');
    const listed = page.locator('tr.tool-registry-user[data-user="listed"]');
    await listed.waitFor({ state: 'visible' });
    expect(await listed.innerText()).toContain(registryCat.label['source-list']);
    expect(await listed.locator('button').count(), 'a user of the text is changed there').toBe(0);

    await page.fill('#tool-registry-user-new-id', 'dev1');
    await page.selectOption('#tool-registry-user-new-role', 'agent');
    await page.click('#tool-registry-user-add');
    const secret = page.locator('#tool-registry-user-password .tool-registry-user-secret');
    await secret.waitFor({ state: 'visible' });
    const first = await secret.inputValue();
    expect(first).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await page.locator('#tool-registry-user-password').innerText()).toContain(registryCat.hint['password-once'].replace('__id__', 'dev1'));
    const row = page.locator('tr.tool-registry-user[data-user="dev1"]');
    await row.waitFor({ state: 'visible' });
    expect(await row.innerText()).toContain(registryCat.label['source-editor']);
    expect(await tryConnect(brokerUrl, 'dev1', first)).toBe('connected');

    const asked: string[] = [];
    page.once('dialog', (d) => { asked.push(d.message()); void d.accept(); });
    await row.locator('button.tool-registry-user-reset').click();
    await expect.poll(() => secret.inputValue().catch(() => '')).not.toBe(first);
    password = await secret.inputValue();
    expect(asked[0]).toBe(registryCat.hint['confirm-reset'].replace('__id__', 'dev1'));
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await tryConnect(brokerUrl, 'dev1', first)).toMatch(/Bad username or password|Not authorized/);
    expect(await tryConnect(brokerUrl, 'dev1', password)).toBe('connected');

    await page.click('#node-config-dialog-cancel');
    await page.waitForSelector('#node-config-dialog-cancel', { state: 'detached' });
    await page.click('#node-dialog-cancel');
    await page.waitForSelector('.red-ui-tray', { state: 'detached' });
  }, 60_000);

  it('removes an agent from the sidebar: confirmed by name, revoked, gone from the list, nothing retained', async () => {
    browser!.phase = 'sidebar remove';
    const refused: string[] = [];
    const ping = defineTool({ name: 'ping', description: 'ping', risk: 'low', input: z.object({}), execute: () => ({ pong: true }) });
    agent = new RpcServer({ authorization: { keys: new Map() }, agentId: 'dev1', tools: [ping], connection: { url: brokerUrl, username: 'dev1', password, extra: { reconnectPeriod: 200 } } });
    agent.on('connection-error', (e: Error) => refused.push(e.message));
    await agent.start();
    await page.evaluate(() => RED.sidebar.show('toolmesh-sidebar'));
    const row = page.locator('.toolmesh-sidebar .toolmesh-agent[data-agent="dev1"]');
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('online');
    const remove = row.locator('button.toolmesh-agent-remove');
    expect((await remove.innerText()).trim()).toBe(sidebarCat.label.remove);

    const asked: string[] = [];
    page.once('dialog', (d) => { asked.push(d.message()); void d.accept(); });
    await remove.click();
    await row.waitFor({ state: 'detached', timeout: 20_000 });
    expect(asked[0]).toBe(sidebarCat.confirm.remove.replace('__agent__', 'dev1').replace('__registry__', 'mesh'));
    await until(() => refused.length >= 2, 'the agent refused on reconnect', 10_000);
    expect(refused.at(-1)).toMatch(/Bad username or password|Not authorized/);

    const watcher = await mqtt.connectAsync(brokerUrl, { username: 'watch', password: 'watch-secret-long', reconnectPeriod: 0 });
    const retained: string[] = [];
    watcher.on('message', (topic, _p, packet) => { if (packet.retain) retained.push(topic); });
    await watcher.subscribeAsync('toolmesh/v1/agents/dev1/#');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await watcher.endAsync();
    expect(retained).toEqual([]);
    const users = await (await fetch(`${nodeRed.url}/toolmesh/registry/bu-registry/broker-users`)).json() as Array<{ username: string }>;
    expect(users.map((u) => u.username)).toEqual(['listed', 'watch']);
    expect(browser!.errors).toEqual([]);
    expect(browser!.offHost).toEqual([]);
  }, 60_000);
});
