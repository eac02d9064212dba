// The tool-registry's "Broker settings" in the real Node-RED editor (Chromium through
// playwright-core, Debian's /usr/bin/chromium; Node-RED with this pack installed): a registry of
// an older flow, with its embedded broker's settings inline, shows them and a "Move to a broker
// node" button; the button creates a toolmesh-broker node with those settings and chooses it,
// the inline fields hide, and after a deploy the registry runs the broker from that node (on the
// same port). Fails on page and console errors and on requests to hosts other than 127.0.0.1.
import mqtt from 'mqtt';
import type { Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { freePort, systemBinary } from './support/mosquitto';
import { startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');

// the page functions below run in the editor, where `RED` and jQuery are globals
declare const RED: any;
declare const $: any;

type FlowNode = { id: string; type: string; [k: string]: unknown };

describe.skipIf(!CHROMIUM)('tool-registry: moving inline broker settings to a toolmesh-broker node in the editor (skipped outside CI without chromium)', () => {
  let nodeRed: NodeRedProcess;
  let browser: WatchedPage | undefined;
  let page: Page;
  let port: number;

  beforeAll(async () => {
    port = await freePort();
    nodeRed = await startNodeRedProcess({
      flows: [
        { id: 'tab', type: 'tab', label: 'broker' },
        { id: 'reg', type: 'toolmesh-tool-registry', name: '', mode: 'embedded', port, host: '127.0.0.1', requireAuth: false, root: 'toolmesh/v1', policy: '*/*', timeout: 30000 },
        { id: 'rt', type: 'toolmesh-remote-tool', z: 'tab', registry: 'reg', agent: 'pi', tool: 'echo', arguments: '{}', argsFrom: 'config', x: 200, y: 100, wires: [[]] },
      ],
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
    browser = await openWatchedPage(CHROMIUM!, 'en-US');
    page = browser.page;
    await page.goto(`${nodeRed.url}/`);
    await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('rt') && RED.workspaces?.active() === 'tab', null, { timeout: 60_000 });
  }, 90_000);
  afterAll(async () => {
    await browser?.close();
    await nodeRed?.stop();
  });

  const flows = async (): Promise<FlowNode[]> => {
    const res = await fetch(`${nodeRed.url}/flows`, { headers: { 'Node-RED-API-Version': 'v1' } });
    return await res.json() as FlowNode[];
  };

  it('shows the inline settings, moves them to a new broker node, and the deployed registry runs that node\'s broker', async () => {
    browser!.phase = 'registry dialog';
    await page.dblclick('[id="rt"] .red-ui-flow-node');
    await page.click('#node-input-btn-registry-edit');
    await page.waitForSelector('#node-config-dialog-cancel', { state: 'visible' });
    // a registry of an older flow: no broker node chosen, its own fields shown
    expect(await page.locator('#node-config-input-brokerNode').inputValue()).toBe('_ADD_');
    await expect.poll(() => page.locator('#node-config-input-port').isVisible()).toBe(true);
    expect(await page.locator('#tool-registry-move-broker').isVisible()).toBe(true);

    await page.click('#tool-registry-move-broker');
    const chosen = await page.locator('#node-config-input-brokerNode').inputValue();
    expect(chosen).not.toBe('_ADD_');
    const created = await page.evaluate((id) => {
      const n = RED.nodes.node(id);
      return n && { type: n.type, port: String(n.port), host: n.host, requireAuth: n.requireAuth, valid: n.valid };
    }, chosen);
    expect(created).toEqual({ type: 'toolmesh-broker', port: String(port), host: '127.0.0.1', requireAuth: false, valid: true });
    await expect.poll(() => page.locator('#node-config-input-port').isVisible()).toBe(false);
    expect(await page.locator('#tool-registry-move-broker').isVisible()).toBe(false);
    // the select shows the new node by its label
    expect(await page.locator('#node-config-input-brokerNode option:checked').innerText()).toBe(`embedded broker 127.0.0.1:${port}`);

    await page.click('#node-config-dialog-ok');
    await page.waitForSelector('#node-config-dialog-ok', { state: 'detached' });
    await page.click('#node-dialog-cancel');
    await page.waitForSelector('.red-ui-tray', { state: 'detached' });

    browser!.phase = 'deploy';
    await page.click('#red-ui-header-button-deploy');
    const deployed = await until(async () => {
      const all = await flows();
      const b = all.find((n) => n.type === 'toolmesh-broker');
      return b && all.find((n) => n.id === 'reg')?.brokerNode === b.id ? b : undefined;
    }, 'the broker node deployed and chosen by the registry', 20_000);
    expect({ id: deployed.id, port: String(deployed.port), host: deployed.host }).toEqual({ id: chosen, port: String(port), host: '127.0.0.1' });
    // the registry runs its broker from the node: on the same port, for an agent without a login
    // the broker moved from the registry's key to the broker node's: it restarts once, on the same port
    const started = () => nodeRed.output().split(`Embedded broker listening on mqtt://127.0.0.1:${port}`).length - 1;
    await until(() => started() === 2, 'the registry\'s broker started from the broker node', 20_000);
    const client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { protocolVersion: 4, reconnectPeriod: 0 });
    await client.endAsync();
    expect(nodeRed.output()).not.toMatch(/Tool registry not usable/);
    expect(browser!.errors).toEqual([]);
    expect(browser!.offHost).toEqual([]);
  }, 120_000);
});
