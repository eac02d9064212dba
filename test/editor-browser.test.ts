// The real Node-RED editor in Chromium (playwright-core, Debian's /usr/bin/chromium): a Node-RED
// process with this pack installed as a user installs it (test/support/node-red-process.ts), and
// every example flow (flows/*.json) imported through the menu as a person does it — Menu > Import >
// Examples > @toolmesh/node-red-toolmesh > <flow> > Import — then deployed. After each: the editor
// knows every node type (no `unknown` nodes), no node is flagged invalid, no error notification
// appeared, the runtime logged no error, and `GET /flows` holds the imported tab with all its nodes.
// The examples share the registry config node `tm-registry`: from the second import on, Node-RED
// reports the conflict, and the test takes "View nodes..." > "Import selected", which keeps the
// existing registry (the config node is left unticked by default) and imports the tab as it is.
// One screenshot per flow goes to a temp directory that is kept (and named) when a test fails.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, onTestFailed } from 'vitest';
import { systemBinary } from './support/mosquitto';
import { until } from './support/until';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];
const PACKAGE = '@toolmesh/node-red-toolmesh';
/** The port the examples' embedded broker (tool-registry `tm-registry`) listens on. */
const EXAMPLE_BROKER_PORT = 1883;

interface FlowNode { id: string; type: string; z?: string; [k: string]: unknown }

const FLOWS_DIR = join(REPO_ROOT, 'flows');
const flowFiles = readdirSync(FLOWS_DIR).filter((f) => f.endsWith('.json')).sort();
const flows = new Map(flowFiles.map((f) => [f, JSON.parse(readFileSync(join(FLOWS_DIR, f), 'utf8')) as FlowNode[]]));
/** Dashboard 2.0 nodes are `ui-*`; the pack's dashboard example needs the module installed. */
const needsDashboard = [...flows.values()].some((flow) => flow.some((n) => n.type.startsWith('ui-')));

/** Resolves true when 127.0.0.1:`port` can be bound now. */
function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ host: '127.0.0.1', port, exclusive: true }, () => s.close(() => resolve(true)));
  });
}

/** What the editor says about the nodes of `ids`: missing ones, unknown types, invalid ones. */
interface EditorState { missing: string[]; unknown: string[]; invalid: string[]; dirty: boolean }

// the page functions below run in the editor, where `RED` is a global
declare const RED: any;
declare const $: any;

describe.skipIf(!CHROMIUM)('example flows in the Node-RED editor (skipped outside CI when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  let context: BrowserContext;
  let page: Page;
  let profileDir: string;
  const shotsDir = mkdtempSync(join(tmpdir(), 'toolmesh-editor-shots-'));
  let failed = false;
  const pageErrors: string[] = [];
  /** Requests the editor made to anywhere but 127.0.0.1 (tests talk to 127.0.0.1 only). */
  const offHost: string[] = [];

  beforeAll(async () => {
    expect(await portFree(EXAMPLE_BROKER_PORT), `127.0.0.1:${EXAMPLE_BROKER_PORT} is in use (a running demo?); the examples' embedded broker needs it`).toBe(true);
    nodeRed = await startNodeRedProcess({
      modules: needsDashboard ? ['@flowfuse/node-red-dashboard'] : [],
      // the palette manager would fetch its catalogue from the internet; tests talk to 127.0.0.1 only
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
    profileDir = mkdtempSync(join(tmpdir(), 'toolmesh-chromium-'));
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM!, args: CHROMIUM_ARGS, headless: true, viewport: { width: 1600, height: 1000 },
    });
    page = context.pages()[0] ?? await context.newPage();
    page.setDefaultTimeout(30_000);
    page.on('pageerror', (e) => pageErrors.push(e.message));
    page.on('request', (r) => { if (/^(https?|wss?):/.test(r.url()) && new URL(r.url()).hostname !== '127.0.0.1') offHost.push(r.url()); });
    await page.goto(`${nodeRed.url}/`);
    // the editor is ready once it has the palette (our types included) and an empty workspace
    await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.getType?.('toolmesh-tool-registry') && RED.workspaces?.active(), null, { timeout: 60_000 });
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    if (profileDir) rmSync(profileDir, { recursive: true, force: true });
    await nodeRed?.stop();
    if (failed) console.error(`editor-browser: screenshots kept in ${shotsDir}`);
    else rmSync(shotsDir, { recursive: true, force: true });
  });

  /** Opens Menu > Import and the Examples tab; resolves with the tab's content panel. */
  async function openExamples() {
    // a dialog or fixed notification left by an earlier failure would block the menu
    await page.evaluate(() => {
      $('.ui-dialog-content:visible').dialog('close');
      $('.red-ui-notification button').filter((_: number, b: HTMLElement) => b.textContent === RED._('common.label.cancel')).trigger('click');
    });
    await page.click('#red-ui-header-button-sidemenu');
    await page.click('#menu-item-import');
    await page.waitForSelector('#red-ui-clipboard-dialog-import-tabs', { state: 'visible' });
    await page.click('#red-ui-tab-red-ui-clipboard-dialog-import-tab-examples a');
    const panel = page.locator('#red-ui-clipboard-dialog-import-tab-examples');
    await panel.waitFor({ state: 'visible' });
    // Node-RED selects the tree's first item 100 ms after filling it (red.js, library createBrowser
    // `data(content, selectFirst)`), which disables Import again: a click before that is undone
    await panel.locator('.red-ui-treeList-label.selected').first().waitFor({ state: 'attached' });
    // the module's folder loads its flow list when expanded (GET library/_examples_/flows/<module>);
    // a click that lands while the tree is still being built is lost, so a folder that is still
    // closed after 5 s is clicked again (a click on an open, selected folder would close it)
    const module = panel.locator('.red-ui-treeList-label', { hasText: PACKAGE }).first();
    const files = panel.locator('.red-ui-treeList-label:has(.fa-file-o)');
    for (let attempt = 1; ; attempt++) {
      const open = await module.evaluate((label: HTMLElement) => label.parentElement?.classList.contains('expanded') ?? false);
      if (!open) await module.click();
      try {
        await files.first().waitFor({ state: 'visible', timeout: 5_000 });
        return panel;
      } catch (e) {
        if (attempt === 3) throw new Error(`Import > Examples > ${PACKAGE} listed no flow after ${attempt} tries (folder open: ${open})`, { cause: e });
      }
    }
  }

  /** The flow names listed under Examples > @toolmesh/node-red-toolmesh (the dialog is then cancelled). */
  async function listedExamples(): Promise<string[]> {
    const panel = await openExamples();
    const files = panel.locator('.red-ui-treeList-label:has(.fa-file-o)');
    const names = (await files.allInnerTexts()).map((t) => t.trim());
    await page.click('#red-ui-clipboard-dialog-cancel');
    return names;
  }

  /** Imports `name` from Examples, resolving the shared registry conflict by keeping the existing node. */
  async function importExample(name: string, tabId: string): Promise<void> {
    const panel = await openExamples();
    const file = panel.locator('.red-ui-treeList-label:has(.fa-file-o)', { hasText: new RegExp(`^\\s*${name}\\s*$`) });
    const ok = page.locator('#red-ui-clipboard-dialog-ok:not(.ui-button-disabled):not([disabled])');
    for (let attempt = 1; ; attempt++) {
      await file.click();
      try {
        await ok.waitFor({ state: 'visible', timeout: 5_000 });
        break;
      } catch (e) {
        if (attempt === 3) throw new Error(`Import stayed disabled after ${attempt} clicks on ${name}`, { cause: e });
      }
    }
    await page.click('#red-ui-clipboard-dialog-ok');
    const conflict = page.locator('.red-ui-notification button', { hasText: 'View nodes' });
    await page.waitForFunction((id) => RED.nodes.workspace(id) || document.querySelector('.red-ui-notification button'), tabId);
    if (await conflict.count()) {
      await conflict.click();
      await page.waitForSelector('#red-ui-clipboard-dialog-import-conflict', { state: 'visible' });
      await page.click('#red-ui-clipboard-dialog-import-conflict');
    }
    await page.waitForFunction((id) => RED.nodes.workspace(id), tabId);
  }

  function editorState(ids: string[]): Promise<EditorState> {
    return page.evaluate((nodeIds: string[]) => {
      const state = { missing: [] as string[], unknown: [] as string[], invalid: [] as string[], dirty: RED.nodes.dirty() as boolean };
      for (const id of nodeIds) {
        const n = RED.nodes.node(id) ?? RED.nodes.workspace(id) ?? RED.nodes.group?.(id);
        if (!n) state.missing.push(id);
        else if (n.type === 'unknown') state.unknown.push(`${id} (${n._orig?.type ?? n.name})`);
        else if (n.valid === false) state.invalid.push(`${id} (${n.type})`);
      }
      RED.nodes.eachNode((n: any) => { if (n.type === 'unknown' && !nodeIds.includes(n.id)) state.unknown.push(`${n.id} (${n._orig?.type ?? n.name})`); });
      RED.nodes.eachConfig((n: any) => { if (n.type === 'unknown' && !nodeIds.includes(n.id)) state.unknown.push(`${n.id} (${n._orig?.type ?? n.name})`); });
      return state;
    }, ids);
  }

  it('every example flow is listed under Import > Examples > @toolmesh/node-red-toolmesh', async () => {
    onTestFailed(() => { failed = true; });
    expect(flowFiles.length).toBeGreaterThan(0);
    const listed = await listedExamples();
    expect(listed.sort()).toEqual(flowFiles.map((f) => f.replace(/\.json$/, '')).sort());
  }, 60_000);

  it.each(flowFiles)('%s: imported from the menu and deployed, with every node type known and no errors', async (file) => {
    onTestFailed(() => { failed = true; });
    const flow = flows.get(file)!;
    const name = file.replace(/\.json$/, '');
    const tab = flow.find((n) => n.type === 'tab');
    expect(tab, `${file} has a tab`).toBeDefined();
    const ids = flow.map((n) => n.id);
    const logFrom = nodeRed.output().length;
    const errorsBefore = await page.locator('.red-ui-notification-error').count();
    const pageErrorsBefore = pageErrors.length;

    await importExample(name, tab!.id);
    const imported = await editorState(ids);
    expect(imported.missing, 'nodes of the file that the editor did not import').toEqual([]);
    expect(imported.unknown, 'nodes whose type the editor does not know').toEqual([]);
    expect(imported.invalid, 'nodes the editor flags as not properly configured').toEqual([]);
    expect(imported.dirty, 'the import left changes to deploy').toBe(true);

    await page.click('#red-ui-header-button-deploy');
    // unknown or invalid nodes make the editor ask before deploying (a notification with a confirm button)
    await page.waitForFunction(() => !RED.nodes.dirty() || document.querySelector('#red-ui-deploy-dialog-confirm-deploy-deploy'));
    const warning = page.locator('.red-ui-notification:has(#red-ui-deploy-dialog-confirm-deploy-deploy)');
    const warningText = (await warning.count()) ? await warning.first().innerText() : '';
    await page.evaluate((id) => RED.workspaces.show(id), tab!.id);
    await until(() => /Started (modified )?flows/.test(nodeRed.output().slice(logFrom)), 'the runtime to start the deployed flows', 30_000);
    await page.waitForTimeout(500); // asynchronous start-up errors (a broker port in use) reach the log and the page
    await page.screenshot({ path: join(shotsDir, `${name}.png`) });
    expect(warningText, 'the editor asked before deploying').toBe('');
    expect(await editorState(ids).then((s) => s.dirty), 'the deploy finished (nothing left to deploy)').toBe(false);

    const deployed = await (await fetch(`${nodeRed.url}/flows`, { headers: { 'Node-RED-API-Version': 'v1' } })).json() as FlowNode[];
    const deployedIds = new Set(deployed.map((n) => n.id));
    expect(ids.filter((id) => !deployedIds.has(id)), 'nodes missing from GET /flows').toEqual([]);
    // the examples share one registry: never a second copy (the LAN example has its own, on a broker node)
    const shared = deployed.filter((n) => n.id === 'tm-registry');
    if (flow.some((n) => n.id === 'tm-registry')) expect(shared, 'one shared registry').toHaveLength(1);
    else expect(shared.length, 'one shared registry at most').toBeLessThanOrEqual(1);

    const errors = await page.locator('.red-ui-notification-error').allInnerTexts();
    expect(errors.slice(errorsBefore), 'error notifications in the editor').toEqual([]);
    const runtimeErrors = nodeRed.output().slice(logFrom).split('\n').filter((l) => /\[error\]/.test(l));
    expect(runtimeErrors, 'errors in the Node-RED log since this import').toEqual([]);
    expect(pageErrors.slice(pageErrorsBefore), 'uncaught errors in the editor page').toEqual([]);
  }, 120_000);

  it('the examples are deployed side by side, sharing one tool-registry', async () => {
    onTestFailed(() => { failed = true; });
    const deployed = await (await fetch(`${nodeRed.url}/flows`, { headers: { 'Node-RED-API-Version': 'v1' } })).json() as FlowNode[];
    const tabs = deployed.filter((n) => n.type === 'tab').map((n) => n.id);
    for (const flow of flows.values()) expect(tabs).toContain(flow.find((n) => n.type === 'tab')!.id);
    expect(deployed.filter((n) => n.type === 'toolmesh-tool-registry' && !n.brokerNode).map((n) => n.id)).toEqual(['tm-registry']);
    expect(deployed.filter((n) => n.type === 'toolmesh-tool-registry' && n.brokerNode).map((n) => [n.id, n.brokerNode])).toEqual([['tm-lan-registry', 'tm-lan-broker']]);
    expect(existsSync(join(nodeRed.userDir, 'flows.json')), 'Node-RED saved the flows').toBe(true);
  });

  it('the editor asked nothing of hosts other than 127.0.0.1', () => {
    onTestFailed(() => { failed = true; });
    expect(offHost).toEqual([]);
  });
});

