// "Add a device" in the real Node-RED editor (Chromium through playwright-core), in English and
// German, end to end: Node-RED (test/support/node-red-process.ts) with a tool-registry whose
// embedded broker requires authentication; in the ToolMesh sidebar a person presses "Add a
// device", enters an agent id, ticks a pack and makes a join string; the test runs the shown
// commands on the "device" (packages/agent/dist/agent/cli.js join ..., then --config ...) in an empty directory,
// and the sidebar shows the dialog's "joined" line and the agent online with its tools, without a
// reload. Also: the tool-registry dialog's link opens the same panel; the panel fits a phone-width
// window. Fails on raw catalog keys, page or console errors, and requests to other hosts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const CLI = join(REPO_ROOT, 'packages/agent/dist/agent/cli.js');
const LANGS = [{ locale: 'en-US', dir: 'en-US' }, { locale: 'de-DE', dir: 'de' }] as const;
const RAW_KEY = /\btoolmesh-sidebar\.[a-z-]+\.[a-z.-]+/;
declare const RED: any;

function catalog(dir: string): Record<string, Record<string, string>> {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'nodes/toolmesh-sidebar/locales', dir, 'toolmesh-sidebar.json'), 'utf8'))['toolmesh-sidebar'];
}

/** The shell words of a shown command (the join string is quoted only when it has to be). */
function words(command: string): string[] {
  return command.trim().split(/\s+/).map((w) => w.replace(/^'(.*)'$/, '$1'));
}

const children: ChildProcess[] = [];
function run(args: string[], cwd: string): { child: ChildProcess; exit: Promise<number | null>; output: () => string } {
  const child = spawn(process.execPath, [CLI, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return { child, exit: new Promise((r) => child.once('exit', (c) => r(c))), output: () => out };
}

describe.skipIf(!CHROMIUM)('Add a device in the Node-RED editor (skipped outside CI when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  const device = mkdtempSync(join(tmpdir(), 'toolmesh-device-'));

  beforeAll(async () => {
    const port = await freePort();
    nodeRed = await startNodeRedProcess({
      flows: [{ id: 'tab1', type: 'tab', label: 'join' }, { id: 'jr', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'embedded', host: '127.0.0.1', port, requireAuth: true, callerId: 'editor-join' }],
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
  }, 90_000);
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
    await nodeRed?.stop();
    rmSync(device, { recursive: true, force: true });
  });

  describe.each(LANGS)('editor in $locale', ({ locale, dir }) => {
    const cat = catalog(dir);
    let browser: WatchedPage | undefined;
    let page: Page;

    beforeAll(async () => {
      browser = await openWatchedPage(CHROMIUM!, locale);
      page = browser.page;
      await page.goto(`${nodeRed.url}/`);
      await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('jr'), null, { timeout: 60_000 });
      await page.evaluate(() => RED.sidebar.show('toolmesh-sidebar'));
    }, 90_000);
    afterAll(async () => { await browser?.close(); });

    const sidebar = () => page.locator('.toolmesh-sidebar');

    it('makes a join string; the two commands on the device bring the agent online in the sidebar', async () => {
      const agentId = `dev-${dir}`;
      await sidebar().locator('.toolmesh-registry[data-registry="jr"]').waitFor({ state: 'visible', timeout: 20_000 });
      const button = sidebar().locator('.toolmesh-add-device-button');
      expect((await button.innerText()).trim()).toBe(cat.join['add-device']);
      await button.click();
      const panel = sidebar().locator('.toolmesh-add-device');
      expect(await panel.locator('.toolmesh-join-nodered').inputValue()).toBe(nodeRed.url);
      expect(await panel.locator('.toolmesh-join-broker').inputValue()).toMatch(/^mqtt:\/\/127\.0\.0\.1:\d+$/);
      await panel.locator('.toolmesh-join-agent').fill(agentId);
      await panel.locator('.toolmesh-join-packs input[value="diag"]').check();
      await panel.locator('.toolmesh-join-make').click();
      const command = panel.locator('textarea.toolmesh-join-command');
      await command.waitFor({ state: 'visible' });
      expect(await panel.locator('textarea.toolmesh-join-install').inputValue()).toBe('npm install -g @toolmesh/agent');
      const joinCmd = await command.inputValue();
      expect(joinCmd).toMatch(new RegExp(`^toolmesh-agent join tmjoin1\\.\\S+ --config ${agentId}\\.yaml --packs system,diag --run$`));
      expect(await panel.locator('.toolmesh-join-expiry').innerText()).toMatch(/9:5\d|10:00/);

      // two commands on the device: the install (the agent is built here) and the join, which runs it (--run)
      const [, ...joinArgs] = words(joinCmd);
      const j = run(joinArgs, device);
      expect(await panel.locator('textarea.toolmesh-join-start').inputValue()).toBe(`toolmesh-agent --config ${agentId}.yaml`);
      const row = sidebar().locator(`.toolmesh-agent[data-agent="${agentId}"]`);
      await expect.poll(() => row.getAttribute('data-state'), { timeout: 30_000 }).toBe('online');
      await expect.poll(() => row.locator('.toolmesh-tool[data-tool="diag_echo"]').count()).toBe(1);
      expect(j.output()).toMatch(new RegExp(`joined as agent ${agentId}: wrote .*\\.yaml[\\s\\S]*starting it; next time: toolmesh-agent --config`));
      await expect.poll(() => panel.locator('.toolmesh-join-expiry').innerText(), { timeout: 10_000 }).toBe(cat.join.joined.replace('__agent__', agentId));
      expect(await sidebar().innerText()).not.toMatch(RAW_KEY);
    }, 90_000);

    it('opens from the tool-registry dialog\'s link and fits a phone-width window', async () => {
      await page.evaluate(() => $('.toolmesh-add-device').hide());
      await page.evaluate(() => RED.editor.editConfig('', 'toolmesh-tool-registry', 'jr'));
      const link = page.locator('#tool-registry-add-device');
      await link.waitFor({ state: 'visible' });
      await link.click();
      await page.locator('.toolmesh-add-device .toolmesh-join-make').waitFor({ state: 'visible' });
      expect(await page.locator('.toolmesh-add-device .toolmesh-join-registry').inputValue()).toBe('jr');
      await page.evaluate(() => RED.tray.close());
      await page.setViewportSize({ width: 390, height: 800 });
      const overflow = await page.evaluate(() => { const b = document.querySelector('.toolmesh-add-device') as HTMLElement; return b.scrollWidth - b.clientWidth; });
      expect(overflow).toBeLessThanOrEqual(0);
      expect(browser!.errors).toEqual([]);
      expect(browser!.offHost).toEqual([]);
    }, 60_000);
  });
});
