// The ToolMesh sidebar in the real Node-RED editor (Chromium through playwright-core), in English
// and in German. Node-RED runs with this pack installed (test/support/node-red-process.ts) and a
// flow of a tool-registry with an embedded broker, an inject node that sends a high-risk
// msg.toolCall into a confirm-gate, and a dynamic remote-tool behind the gate's first output. A
// real agent (the protocol's RpcServer) connects to that broker. For each language: the sidebar
// lists the agent online with its tools and their risk; the injected call appears under pending
// approvals; clicking Approve releases it (the agent runs the tool, the remote-tool gets its
// result, and the call shows up under last calls with OK) and the approval leaves the list; the
// agent stops and the sidebar shows it offline, all without a page reload (comms only signals a
// change; the sidebar reads its endpoints, see editor-sidebar-permissions.test.ts). It fails on a raw
// catalog key in the sidebar, texts other than the catalog's of that language, page and console
// errors, and requests to any host but 127.0.0.1.
import { generateKeyPairSync } from 'node:crypto';
import { encryptCredentials } from '../scripts/demo/gate-keys';
import { createConnection } from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Page } from 'playwright-core';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import mqtt from 'mqtt';
import { RpcServer, defineTool, publicKeyOf, verifyApproval } from '../protocol';
import { approvalTopics } from '../protocol/approval-requests';
import { defaultKid } from '../nodes/confirm-gate/settings';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';
import { trustingAuthorization } from './support/approvals';
import { buildMesh } from '../scripts/mesh/catalog';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const LANGS = [{ locale: 'en-US', dir: 'en-US' }, { locale: 'de-DE', dir: 'de' }] as const;
/** A key of the sidebar's catalog shown as it is. */
const RAW_KEY = /\btoolmesh-sidebar\.[a-z-]+\.[a-z.-]+/;

/** The sidebar's catalog in `dir` (`en-US`, `de`), without its top level. */
function catalog(dir: string): Record<string, Record<string, string>> {
  return JSON.parse(readFileSync(join(REPO_ROOT, 'nodes/toolmesh-sidebar/locales', dir, 'toolmesh-sidebar.json'), 'utf8'))['toolmesh-sidebar'];
}

const GATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function testFlow(port: number) {
  const z = 'sb-tab';
  return [
    { id: z, type: 'tab', label: 'sidebar' },
    { id: 'sb-registry', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'embedded', port, host: '127.0.0.1', root: 'toolmesh/v1', policy: '*/*', timeout: 30000 },
    {
      id: 'sb-inject', type: 'inject', z, x: 120, y: 80, once: false, repeat: '', topic: '',
      props: [{ p: 'toolCall', v: '{"id":"c1","agent":"pi","tool":"wipe_disk","arguments":{"disk":"sdb"},"risk":"high"}', vt: 'json' }],
      wires: [['sb-gate']],
    },
    { id: 'sb-gate', type: 'toolmesh-confirm-gate', z, x: 320, y: 80, name: 'door', registry: 'sb-registry', threshold: 'high', timeout: 120000, validity: 60000, remoteRequests: true, wires: [['sb-remote'], [], []] },
    { id: 'sb-remote', type: 'toolmesh-remote-tool', z, x: 520, y: 80, registry: 'sb-registry', agent: '', tool: '', arguments: '{}', argsFrom: 'config', wires: [[]] },
  ];
}

/** Resolves once something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

// the page functions below run in the editor, where `RED` and jQuery are globals
declare const RED: any;

describe.skipIf(!CHROMIUM)('ToolMesh sidebar in the Node-RED editor (skipped outside CI when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  let brokerPort: number;
  /** The disks the agent really wiped (one per approved call). */
  const wiped: string[] = [];
  const tools = [
    defineTool({ name: 'echo_text', description: 'Echoes.', risk: 'low', input: z.strictObject({ text: z.string() }), execute: (a) => ({ text: a.text }) }),
    defineTool({
      name: 'wipe_disk', description: 'Wipes a disk.', risk: 'high', input: z.strictObject({ disk: z.string() }),
      execute: (a) => { wiped.push(a.disk); return { disk: a.disk, wiped: true }; },
    }),
  ];

  beforeAll(async () => {
    brokerPort = await freePort();
    nodeRed = await startNodeRedProcess({
      flows: testFlow(brokerPort),
      files: { 'flows_cred.json': JSON.stringify(encryptCredentials('toolmesh-test-secret', { 'sb-gate': { signingKey: GATE_KEY } })) },
      settings: { editorTheme: { tours: false, palette: { catalogues: [] } } },
    });
    await until(() => listening(brokerPort), 'the embedded broker', 20_000);
  }, 90_000);
  afterAll(async () => { await nodeRed?.stop(); });

  describe.each(LANGS)('editor in $locale', ({ locale, dir }) => {
    const cat = catalog(dir);
    let browser: WatchedPage | undefined;
    let page: Page;
    let agent: RpcServer | undefined;
    /** Page and console errors, and requests to anywhere but 127.0.0.1 (tests talk to 127.0.0.1 only). */
    let pageErrors: string[] = [];
    let offHost: string[] = [];

    beforeAll(async () => {
      // the agent trusts the gate's key, as a configured Pi would
      agent = new RpcServer({ authorization: await trustingAuthorization(new Map([[defaultKid('sb-gate'), publicKeyOf(GATE_KEY)]])), connection: { url: `mqtt://127.0.0.1:${brokerPort}` }, agentId: 'pi', info: { name: 'Test Pi', kind: 'pi', version: '9.8.7' }, tools });
      await agent.start();
      browser = await openWatchedPage(CHROMIUM!, locale);
      ({ page, errors: pageErrors, offHost } = browser);
      await page.goto(`${nodeRed.url}/`);
      await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('sb-remote') && RED.workspaces?.active() === 'sb-tab', null, { timeout: 60_000 });
      await page.evaluate(() => RED.sidebar.show('toolmesh-sidebar'));
    }, 90_000);

    afterAll(async () => {
      await agent?.stop();
      await browser?.close();
    });

    const sidebar = () => page.locator('.toolmesh-sidebar');

    it('is a sidebar tab named from the catalog, with its three sections', async () => {
      await expect.poll(() => sidebar().isVisible()).toBe(true);
      const headings = await sidebar().locator('h4.toolmesh-section').allInnerTexts();
      expect(headings.map((h) => h.trim())).toEqual([cat.label.agents, cat.label.approvals, cat.label.calls]);
      const lang = await page.evaluate(() => RED.i18n.lang());
      expect(lang.split('-')[0]).toBe(dir.split('-')[0]);
    });

    it('lists the agent online, with kind, version and each tool with its risk', async () => {
      const row = sidebar().locator('.toolmesh-agent[data-agent="pi"]');
      await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('online');
      expect((await row.locator('.toolmesh-agent-state').innerText()).trim()).toBe(cat.state.online);
      const meta = await row.locator('.toolmesh-agent-meta').innerText();
      expect(meta).toContain(cat.label.kind.replace('__kind__', 'pi'));
      expect(meta).toContain(cat.label.version.replace('__version__', '9.8.7'));
      expect((await row.locator('.toolmesh-tool[data-tool="wipe_disk"] .toolmesh-risk').innerText()).trim()).toBe(cat.risk.high);
      expect((await row.locator('.toolmesh-tool[data-tool="echo_text"] .toolmesh-risk').innerText()).trim()).toBe(cat.risk.low);
      expect(await sidebar().locator('.toolmesh-registry[data-registry="sb-registry"]').innerText()).toContain(cat.label.registry.replace('__name__', 'mesh'));
    });

    it('shows a held call under pending approvals; Approve releases it to the agent and removes it; the call shows under last calls', async () => {
      const before = wiped.length;
      await expect.poll(() => sidebar().locator('.toolmesh-empty').allInnerTexts()).toContain(cat.empty.approvals);
      const res = await fetch(`${nodeRed.url}/inject/sb-inject`, { method: 'POST' });
      expect(res.status).toBe(200);
      const approval = sidebar().locator('.toolmesh-approval[data-gate="sb-gate"]');
      await approval.waitFor({ state: 'visible' });
      expect(await approval.count()).toBe(1);
      expect(await approval.innerText()).toContain('wipe_disk');
      expect(await sidebar().locator('.toolmesh-gate').innerText()).toContain(cat.label.gate.replace('__name__', 'door'));
      // the gate's own endpoint agrees
      const pending = await (await fetch(`${nodeRed.url}/toolmesh/confirm-gate/sb-gate/approvals`)).json() as Array<{ approvalId: string }>;
      expect(pending.map((p) => p.approvalId)).toEqual([await approval.getAttribute('data-approval')]);
      expect(wiped.length, 'nothing ran before the approval').toBe(before);

      const approve = approval.locator('button.toolmesh-approve');
      expect((await approve.innerText()).trim()).toBe(cat.label.approve);
      expect((await approval.locator('button.toolmesh-deny').innerText()).trim()).toBe(cat.label.deny);
      const calls = sidebar().locator('.toolmesh-call[data-agent="pi"][data-tool="wipe_disk"]');
      const callsBefore = await calls.count();
      await approve.click();

      await until(() => wiped.length === before + 1, 'the agent ran the approved call', 15_000);
      await approval.waitFor({ state: 'detached' });
      expect(await (await fetch(`${nodeRed.url}/toolmesh/confirm-gate/sb-gate/approvals`)).json()).toEqual([]);
      // newest first: the call just released is the top row
      await expect.poll(() => calls.count()).toBe(callsBefore + 1);
      const call = calls.first();
      expect(await call.getAttribute('data-code'), 'the remote-tool got the result').toBe('OK');
      expect(await call.locator('.toolmesh-call-duration').innerText()).toMatch(new RegExp(`^${cat.label.duration.replace('__ms__', '\\d+')}$`));
    }, 60_000);

    it('shows a request from another caller (an MCP bridge over MQTT) with who asks; Approve answers it with a token for that caller', async () => {
      const at = approvalTopics('toolmesh/v1');
      const b = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
      try {
        const answers: any[] = [];
        b.on('message', (_t, payload) => answers.push(JSON.parse(payload.toString())));
        await b.subscribeAsync(at.response('mcp-bridge'), { qos: 1 });
        const approvalId = `sidebar-${dir}-${Date.now()}`;
        await b.publishAsync(at.request('mcp-bridge'), JSON.stringify({
          v: 1, approvalId, agent: 'pi', tool: 'wipe_disk', arguments: { disk: 'sdc' }, requester: 'Claude Desktop', expiresAt: Date.now() + 60_000,
        }), { qos: 1 });
        const approval = sidebar().locator(`.toolmesh-approval[data-approval="${approvalId}"]`);
        await approval.waitFor({ state: 'visible', timeout: 15_000 });
        expect((await approval.locator('.toolmesh-approval-caller').innerText()).trim())
          .toBe(cat.label['asked-by-requester'].replace('__caller__', 'mcp-bridge').replace('__requester__', 'Claude Desktop'));
        await approval.locator('button.toolmesh-approve').click();
        await until(() => answers.length === 1, 'the answer to the bridge', 15_000);
        expect(answers[0]).toMatchObject({ v: 1, approvalId, approved: true });
        const keys = new Map([[defaultKid('sb-gate'), publicKeyOf(GATE_KEY)]]);
        const expectation = { caller: 'mcp-bridge', agent: 'pi', tool: 'wipe_disk', args: { disk: 'sdc' }, keys, skewMs: 0 };
        expect(verifyApproval(answers[0].token, expectation).ok).toBe(true);
        expect(verifyApproval(answers[0].token, { ...expectation, caller: 'someone-else' })).toMatchObject({ ok: false, refusal: 'wrong-caller' });
        await approval.waitFor({ state: 'detached' });
      } finally {
        await b.endAsync(true);
      }
    }, 60_000);

    it('shows the agent offline once it stops, without a reload', async () => {
      const row = sidebar().locator('.toolmesh-agent[data-agent="pi"]');
      await agent!.stop();
      agent = undefined;
      await expect.poll(() => row.getAttribute('data-state'), { timeout: 15_000 }).toBe('offline');
      expect((await row.locator('.toolmesh-agent-state').innerText()).trim()).toBe(cat.state.offline);
    }, 30_000);

    it('with 120 more agents: shows 50, those not online first, and searches the others through the registry', async () => {
      const mesh = await buildMesh(120);
      const pub = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
      try {
        for (const a of mesh) {
          await pub.publishAsync(`toolmesh/v1/agents/${a.id}/catalog`, JSON.stringify({ agent: { id: a.id, name: a.name, kind: a.kind }, rev: 1, tools: a.tools }), { qos: 1, retain: true });
          await pub.publishAsync(`toolmesh/v1/agents/${a.id}/status`, JSON.stringify({ state: 'online', agent: a.id, instance: 'sim', kind: a.kind, catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
        }
      } finally {
        await pub.endAsync();
      }
      const block = sidebar().locator('.toolmesh-registry-block[data-registry="sb-registry"]');
      const more = cat.label.more.replace('__shown__', '50').replace('__total__', '121').replace('__down__', '1');
      await expect.poll(() => block.locator('.toolmesh-more').innerText(), { timeout: 15_000 }).toBe(more);
      const rows = block.locator('.toolmesh-agent');
      expect(await rows.count()).toBe(50);
      expect(await rows.first().getAttribute('data-agent'), 'the agent not online comes first').toBe('pi');
      // the search field asks the registry: every agent with "garage" in its id, name or kind
      const garage = mesh.filter((a) => `${a.id} ${a.name} ${a.kind}`.toLowerCase().includes('garage'));
      await block.locator('input.toolmesh-filter').fill('garage');
      const found = cat.label.found.replace('__shown__', String(Math.min(50, garage.length))).replace('__total__', String(garage.length)).replace('__q__', 'garage');
      await expect.poll(() => block.locator('.toolmesh-more').innerText()).toBe(found);
      const listed = await rows.evaluateAll((els) => els.map((e) => e.getAttribute('data-agent')));
      expect(listed.sort()).toEqual(garage.map((a) => a.id).slice(0, 50).sort());
      const one = garage[0];
      expect(await block.locator(`.toolmesh-agent[data-agent="${one.id}"] .toolmesh-tool`).count(), 'a found agent lists its tools').toBe(one.tools.length);
      // a snapshot that arrives while searching (an agent re-announces itself) leaves the results alone
      const again = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
      await again.publishAsync(`toolmesh/v1/agents/${mesh[0].id}/status`, JSON.stringify({ state: 'online', agent: mesh[0].id, instance: 'sim', kind: mesh[0].kind, catalogRev: 1, ts: Date.now() }), { qos: 1, retain: true });
      await again.endAsync();
      await page.waitForTimeout(1_000); // the registry's 20 ms burst, the plugin's 50 ms, the comms hop, the sidebar's 500 ms between reads
      expect(await block.locator('.toolmesh-more').innerText()).toBe(found);
      expect(await rows.count()).toBe(Math.min(50, garage.length));
      // clearing the field brings the 50 back
      await block.locator('input.toolmesh-filter').fill('');
      await expect.poll(() => block.locator('.toolmesh-more').innerText()).toBe(more);
      expect(await rows.count()).toBe(50);
      // decommissioned (empty retained status and catalog), they leave the registry and the sidebar
      const gone = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
      try {
        for (const a of mesh) {
          await gone.publishAsync(`toolmesh/v1/agents/${a.id}/status`, '', { qos: 1, retain: true });
          await gone.publishAsync(`toolmesh/v1/agents/${a.id}/catalog`, '', { qos: 1, retain: true });
        }
      } finally {
        await gone.endAsync();
      }
      await expect.poll(() => rows.count(), { timeout: 15_000 }).toBe(1);
      expect(await block.locator('.toolmesh-more').innerText()).toBe('');
      expect(await block.locator('input.toolmesh-filter').isVisible(), 'no search field for one agent').toBe(false);
    }, 60_000);

    it('shows no raw catalog key, had no page errors and asked nothing of other hosts', async () => {
      const text = await sidebar().innerText();
      expect(text.match(RAW_KEY)?.[0]).toBeUndefined();
      expect(await page.evaluate(() => document.body.innerText.match(/\btoolmesh-sidebar\.[a-z-]+\.[a-z.-]+/)?.[0])).toBeUndefined();
      expect(pageErrors).toEqual([]);
      expect(offHost, 'requests to hosts other than 127.0.0.1').toEqual([]);
    });
  });
});
