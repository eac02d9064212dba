// Every node's edit dialog and help in the real Node-RED editor (Chromium through playwright-core,
// Debian's /usr/bin/chromium), in English and in German. Node-RED runs with this pack installed
// (test/support/node-red-process.ts) and a flow holding one node of each type. For each language a
// fresh browser profile opens the editor with that locale (playwright's `locale` sets
// Accept-Language and navigator.language, from which Node-RED's editor picks its catalogs), then
// for each node: double-click it, click through every tab of its dialog (its own tabs, then the
// tray's Description and Appearance tabs), open the tool-registry's dialog from the node's
// registry field where it has one, cancel, and show the node's help in the help sidebar. It fails
// on a raw catalog key (`llm-agent.label.x`) in any text or placeholder seen on the way, a tab
// label or palette label other than the catalog's text in that language, an empty help page or
// one that is not the help file of that language, uncaught page errors and console errors, and
// requests to any host but 127.0.0.1.
import { generateKeyPairSync } from 'node:crypto';
import { encryptCredentials } from '../scripts/demo/gate-keys';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { buildMesh, type MeshAgent } from '../scripts/mesh/catalog';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
/** The nodes by folder name (nodes/<name>/, its catalog and help files), which is also the palette label. */
const TYPES = ['tool-registry', 'remote-tool', 'llm-agent', 'tool-in', 'tool-out', 'confirm-gate', 'audit-log'] as const;
type NodeType = (typeof TYPES)[number];
const REGISTRY: NodeType = 'tool-registry';
/** The Node-RED type of a node: the pack's prefix before its name (issue 18, flow library rule N01). */
const typeOf = (name: NodeType) => `toolmesh-${name}`;
/** A message key of one of our catalogs shown as it is (Node-RED shows the key when it finds no text). */
const RAW_KEY = /\b(tool-registry|remote-tool|llm-agent|tool-in|tool-out|confirm-gate|audit-log)\.[a-zA-Z-]+\.[a-zA-Z.-]+/;
const LANGS = [{ locale: 'en-US', dir: 'en-US' }, { locale: 'de-DE', dir: 'de' }] as const;

/** The node's catalog in `dir` (`en-US`, `de`), without its type level. */
function catalog(type: NodeType, dir: string): Record<string, Record<string, string>> {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'nodes', type, 'locales', dir, `${type}.json`), 'utf8'))[type];
}

/** One text of the node's catalog in `dir`, by section and key (`hint`, `more-agents`). */
function catalogText(type: NodeType, dir: string, section: string, key: string): string {
  return catalog(type, dir)[section][key];
}

/** The first 40 characters of the help file's first paragraph, as the browser renders its text. */
function helpOpening(type: NodeType, dir: string): string {
  const html = readFileSync(join(REPO_ROOT, 'nodes', type, 'locales', dir, `${type}.html`), 'utf8');
  const p = /<p>([\s\S]*?)<\/p>/.exec(html)?.[1] ?? '';
  return p.replace(/<[^>]+>/g, '').replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&').replace(/\s+/g, ' ').trim().slice(0, 40);
}

/** One node of each type on one tab (the registry embeds a broker on `port`). */
function testFlow(port: number) {
  const z = 'dlg-tab';
  const at = (i: number) => ({ z, x: 180 + (i % 3) * 260, y: 80 + Math.floor(i / 3) * 100, wires: [] as string[][] });
  return [
    { id: z, type: 'tab', label: 'dialogs' },
    { id: 'dlg-registry', type: 'toolmesh-tool-registry', name: '', mode: 'embedded', port, host: '127.0.0.1', root: 'toolmesh/v1', policy: '*/*', timeout: 30000,
      // one row of the MCP servers tab (nothing listens there: the server stays offline)
      mcpServers: [{ name: 'dialogs', type: 'http', url: 'http://127.0.0.1:9/mcp', risks: {} }] },
    { id: 'dlg-remote-tool', type: 'toolmesh-remote-tool', registry: 'dlg-registry', agent: 'pi', tool: 'diag_echo', arguments: '{}', argsFrom: 'config', ...at(0), wires: [[]] },
    { id: 'dlg-llm-agent', type: 'toolmesh-llm-agent', registry: 'dlg-registry', baseUrl: 'http://127.0.0.1:9/v1', maxIterations: 8, ...at(1), wires: [[], [], []] },
    { id: 'dlg-tool-in', type: 'toolmesh-tool-in', registry: 'dlg-registry', agent: 'dialogs', tool: 'echo', risk: 'low', timeout: 30000, ...at(2), wires: [['dlg-tool-out']] },
    { id: 'dlg-tool-out', type: 'toolmesh-tool-out', ...at(3) },
    { id: 'dlg-confirm-gate', type: 'toolmesh-confirm-gate', registry: 'dlg-registry', threshold: 'high', timeout: 120000, validity: 60000, ...at(4), wires: [[], [], []] },
    { id: 'dlg-audit-log', type: 'toolmesh-audit-log', rotateMb: 10, rotateDaily: true, ...at(5), wires: [[]] },
  ];
}

const GATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

// the page functions below run in the editor, where `RED` and jQuery are globals
declare const RED: any;
declare const $: any;

describe.skipIf(!CHROMIUM)('edit dialogs and help in the Node-RED editor (skipped outside CI when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  /** The simulated agents on the registry's broker (the mesh of a large home lab). */
  let mesh: MeshAgent[];

  beforeAll(async () => {
    const port = await freePort();
    nodeRed = await startNodeRedProcess({
      flows: testFlow(port),
      files: { 'flows_cred.json': JSON.stringify(encryptCredentials('toolmesh-test-secret', { 'dlg-confirm-gate': { signingKey: GATE_KEY } })) },
      // no palette catalogue from the internet (tests talk to 127.0.0.1 only), no tour
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
    // 300 agents publish their retained status and catalog to the registry's embedded broker, so
    // every dialog is seen with a mesh behind it, and the pick-lists must page and search
    mesh = await buildMesh(300);
    const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4 });
    for (const a of mesh) {
      await pub.publishAsync(`toolmesh/v1/agents/${a.id}/catalog`, JSON.stringify({ agent: { id: a.id, name: a.name, kind: a.kind }, rev: 1, tools: a.tools }), { qos: 1, retain: true });
      await pub.publishAsync(`toolmesh/v1/agents/${a.id}/status`, JSON.stringify({ state: 'online', agent: a.id, instance: 'sim', kind: a.kind, catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
    }
    await pub.endAsync();
  }, 90_000);
  afterAll(async () => { await nodeRed?.stop(); });

  describe.each(LANGS)('editor in $locale', ({ locale, dir }) => {
    let browser: WatchedPage | undefined;
    let page: Page;
    /** Page and console errors, and requests to anywhere but 127.0.0.1 (tests talk to 127.0.0.1 only). */
    let pageErrors: string[] = [];
    let offHost: string[] = [];

    beforeAll(async () => {
      browser = await openWatchedPage(CHROMIUM!, locale);
      ({ page, errors: pageErrors, offHost } = browser);
      await page.goto(`${nodeRed.url}/`);
      await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('dlg-audit-log') && RED.workspaces?.active() === 'dlg-tab', null, { timeout: 60_000 });
      // Node-RED emits editor:close 250 ms after the last tray has gone, and then disposes the
      // Monaco editors and models a dialog left behind (red.js, code-editors/monaco): counted so
      // a test can wait for it and late errors belong to the dialog that caused them
      await page.evaluate(() => { (window as any).tmEditorCloses = 0; RED.events.on('editor:close', () => { (window as any).tmEditorCloses++; }); });
      browser.phase = 'first tests';
    }, 90_000);

    /** Waits until Node-RED has finished closing the dialog (editor:close number `n`) and two frames have been drawn. */
    async function settled(n: number): Promise<void> {
      await page.waitForFunction((k) => (window as any).tmEditorCloses >= k, n);
      await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    }

    afterEach(async () => {
      if (browser) browser.phase = 'between tests';
      // a failed test may leave dialogs open, which would block the next double-click
      await page?.evaluate(() => { for (let i = 0; i < 3 && $('.red-ui-tray').length; i++) RED.tray.close(); });
      await page?.waitForSelector('.red-ui-tray', { state: 'detached' }).catch(() => undefined);
    });

    afterAll(async () => {
      await browser?.close();
    });

    it('the editor runs in that language (its own strings and ours)', async () => {
      const lang = await page.evaluate(() => RED.i18n.lang());
      expect(lang.split('-')[0]).toBe(dir.split('-')[0]);
      // Node-RED's own Deploy button, in the editor's catalog of that language
      const deploy = (await page.locator('#red-ui-header-button-deploy .red-ui-deploy-button-content>span').innerText()).trim();
      expect(deploy).toBe(dir === 'de' ? 'Übernahme (deploy)' : 'Deploy');
    });

    it.each(TYPES.filter((t) => t !== REGISTRY))('%s: the palette label comes from the catalog', async (type) => {
      const label = await page.locator(`.red-ui-palette-node[data-palette-type="${typeOf(type)}"] .red-ui-palette-label`).textContent();
      // the palette breaks a label into lines at spaces and hyphens, so compare without white space
      expect(label?.replace(/\s+/g, '')).toBe(catalog(type, dir).label.palette.replace(/\s+/g, ''));
    });

    /** Visible text and placeholders of the topmost tray, each checked for raw keys by the caller. */
    function trayText(): Promise<string> {
      return page.evaluate(() => {
        const tray = $('.red-ui-tray').last();
        const placeholders = tray.find('input:visible, textarea:visible').map((_: number, e: HTMLInputElement) => e.placeholder || '').get();
        const titles = tray.find('[title]:visible').map((_: number, e: HTMLElement) => e.title).get();
        return [tray[0]?.innerText ?? '', ...placeholders, ...titles].join('\n');
      });
    }

    /** Clicks each tab of the topmost tray: the node's own first, then the tray's; returns every text seen. */
    async function clickThroughTabs(type: NodeType, seen: string[]): Promise<string[]> {
      const tray = page.locator('.red-ui-tray').last();
      const own = tray.locator(`li[id^="red-ui-tab-${type}-tab-"] a`);
      const labels: string[] = [];
      for (let i = 0; i < await own.count(); i++) {
        await own.nth(i).click();
        labels.push((await own.nth(i).innerText()).trim());
        seen.push(await trayText());
      }
      const trayTabs = tray.locator('li[id^="red-ui-tab-editor-tab-"]:visible a');
      for (let i = (await trayTabs.count()) - 1; i >= 0; i--) {
        await trayTabs.nth(i).click();
        seen.push(await trayText());
      }
      return labels;
    }

    it.each(TYPES)('%s: dialog (every tab) and help show catalog texts of that language, no raw key', async (type) => {
      const errorsBefore = pageErrors.length;
      const closes = await page.evaluate(() => (window as any).tmEditorCloses as number);
      browser!.phase = `${type} dialog`;
      const seen: string[] = [];
      const cat = catalog(type, dir);
      const expectedTabs = Object.values(cat.tabs ?? {});
      let tabLabels: string[];
      if (type === REGISTRY) {
        // a config node's dialog opens from the field that picks it, here remote-tool's
        await page.dblclick('[id="dlg-remote-tool"] .red-ui-flow-node');
        await page.click('#node-input-btn-registry-edit');
        await page.waitForSelector('#node-config-dialog-cancel', { state: 'visible' });
        await page.waitForTimeout(300);
        tabLabels = await clickThroughTabs(type, seen);
        await page.click('#node-config-dialog-cancel');
        await page.waitForSelector('#node-config-dialog-cancel', { state: 'detached' });
        await page.click('#node-dialog-cancel');
      } else {
        await page.dblclick(`[id="dlg-${type}"] .red-ui-flow-node`);
        await page.waitForSelector('#node-dialog-cancel', { state: 'visible' });
        await page.waitForTimeout(300); // oneditprepare's requests (pick-lists, public key) answer
        seen.push(await trayText());
        tabLabels = await clickThroughTabs(type, seen);
        await page.click('#node-dialog-cancel');
      }
      await page.waitForSelector('.red-ui-tray', { state: 'detached' });
      await settled(closes + 1);
      // a dialog that leaves a Monaco editor on the page has its model disposed under it by
      // Node-RED's editor:close handler, and that editor then throws 'Model is disposed!'
      const monaco = await page.evaluate(() => ({ editors: (window as any).monaco?.editor.getEditors().length ?? 0, models: (window as any).monaco?.editor.getModels().length ?? 0 }));
      expect(monaco, 'Monaco editors and models left on the page by the closed dialog').toEqual({ editors: 0, models: 0 });
      browser!.phase = `${type} help`;
      expect(tabLabels, 'the dialog\'s own tabs, as the catalog names them').toEqual(expectedTabs);
      expect(seen.length, 'texts collected from the dialog').toBeGreaterThan(0);
      expect(seen.join('\n').match(RAW_KEY)?.[0], 'a raw catalog key in the dialog').toBeUndefined();
      const labelTexts = Object.entries(cat.label).filter(([k]) => k !== 'palette').map(([, v]) => v);
      expect(labelTexts.some((t) => seen.join('\n').includes(t)), `the dialog shows a label of the ${dir} catalog`).toBe(true);

      const help = await page.evaluate((t) => {
        RED.sidebar.help.show(t);
        const section = $('.red-ui-help').last();
        return { text: String(section[0]?.innerText ?? ''), none: section.find('.red-ui-help-info-none').length };
      }, typeOf(type));
      expect(help.none, 'the help sidebar says there is no help').toBe(0);
      expect(help.text.replace(/\s+/g, ' ').length, 'help text length').toBeGreaterThan(200);
      expect(help.text.match(RAW_KEY)?.[0], 'a raw catalog key in the help').toBeUndefined();
      expect(help.text.replace(/\s+/g, ' '), `the help is the ${dir} help file`).toContain(helpOpening(type, dir));

      expect(pageErrors.slice(errorsBefore), 'page and console errors').toEqual([]);
    }, 60_000);

    it('remote-tool: the agent field searches the registry\'s 300 agents as you type, the tool field lists the picked agent\'s tools', async () => {
      const errorsBefore = pageErrors.length;
      const closes = await page.evaluate(() => (window as any).tmEditorCloses as number);
      browser!.phase = 'remote-tool pick-lists';
      await page.dblclick('[id="dlg-remote-tool"] .red-ui-flow-node');
      await page.waitForSelector('#node-dialog-cancel', { state: 'visible' });
      const options = (list: string) => page.locator(`#${list} option`).evaluateAll((os) => os.map((o) => (o as HTMLOptionElement).value));
      const matching = (text: string) => mesh.filter((a) => `${a.id} ${a.name} ${a.kind}`.toLowerCase().includes(text)).map((a) => a.id);
      // opened on agent 'pi' (no agent has that id here): the first 20 agents that match it, and how many do
      await page.waitForFunction(() => $('#remote-tool-agents option').length > 0);
      expect((await options('remote-tool-agents')).length).toBe(20);
      const more = catalogText('remote-tool', dir, 'hint', 'more-agents').replace('__shown__', '20').replace('__total__', String(matching('pi').length));
      expect(await page.locator('#remote-tool-more').innerText()).toBe(more);
      // typing narrows the list to the agents that match
      const agent = page.locator('#node-input-agent');
      await agent.fill('');
      await agent.pressSequentially('garage');
      const garage = matching('garage');
      // (the answer for 'pi' is also 20 long: wait for the one for 'garage')
      await page.waitForFunction((ids) => {
        const values = $('#remote-tool-agents option').map((_: number, o: HTMLOptionElement) => o.value).get() as string[];
        return values.length === Math.min(20, ids.length) && values.every((v) => ids.includes(v));
      }, garage).catch(() => undefined);
      const listed = await options('remote-tool-agents');
      expect(listed.length).toBe(Math.min(20, garage.length));
      expect(listed.filter((id) => !garage.includes(id)), 'listed agents without "garage" in id, name or kind').toEqual([]);
      // an agent picked: its tools, and the picked tool's description and risk
      const picked = mesh.find((a) => a.id === garage[0])!;
      await agent.fill(picked.id);
      await page.waitForFunction((n) => $('#remote-tool-tools option').length === n, picked.tools.length);
      expect(await options('remote-tool-tools')).toEqual(picked.tools.map((t) => t.name));
      await page.locator('#node-input-tool').fill(picked.tools[0].name);
      await expect.poll(() => page.locator('#remote-tool-info').innerText()).toContain(picked.tools[0].description.split('\n')[0].slice(0, 40));
      expect(await page.locator('#remote-tool-template').isVisible(), 'the arguments template button').toBe(true);
      await page.click('#node-dialog-cancel');
      await page.waitForSelector('.red-ui-tray', { state: 'detached' });
      await settled(closes + 1);
      expect(pageErrors.slice(errorsBefore), 'page and console errors').toEqual([]);
    }, 60_000);

    it('remote-tool: pick-list answers that arrive after the dialog closed change nothing and raise no error', async () => {
      const errorsBefore = pageErrors.length;
      const closes = await page.evaluate(() => (window as any).tmEditorCloses as number);
      browser!.phase = 'remote-tool late answers';
      // the registry's answers come 1 s late (a loaded machine): the dialog is closed by then
      const late = async (route: import('playwright-core').Route) => { await new Promise((r) => setTimeout(r, 1000)); await route.continue().catch(() => undefined); };
      await page.route('**/toolmesh/registry/*/agents**', late);
      try {
        await page.dblclick('[id="dlg-remote-tool"] .red-ui-flow-node');
        await page.waitForSelector('#node-dialog-cancel', { state: 'visible' });
        const answered = page.waitForResponse((r) => r.url().includes('/agents'));
        await page.click('#node-dialog-cancel');
        await page.waitForSelector('.red-ui-tray', { state: 'detached' });
        await settled(closes + 1);
        await answered;
        await page.waitForTimeout(300);
      } finally {
        await page.unroute('**/toolmesh/registry/*/agents**', late);
      }
      expect(pageErrors.slice(errorsBefore), 'page and console errors').toEqual([]);
    }, 60_000);

    it('a page error that only looks like the known Monaco defect still counts', async () => {
      const before = pageErrors.length;
      await page.evaluate(() => new Promise((r) => { setTimeout(() => { setTimeout(r, 50); throw new Error('Model is disposed!'); }); }));
      await page.waitForTimeout(100);
      const raised = pageErrors.splice(before);
      expect(raised).toHaveLength(1);
      expect(raised[0]).toMatch(/page error: Model is disposed!/);
    });

    it('the whole page shows no raw catalog key, had no errors and asked nothing of other hosts', async () => {
      browser!.phase = 'whole page';
      const text = await page.evaluate(() => document.body.innerText);
      expect(text.match(RAW_KEY)?.[0]).toBeUndefined();
      expect(pageErrors).toEqual([]);
      expect(offHost, 'requests to hosts other than 127.0.0.1').toEqual([]);
    });
  });
});
