// The ToolMesh sidebar honours Node-RED's permissions (issue 17, item 7), in the real editor
// (Chromium through playwright-core) against a real Node-RED process with adminAuth and two users:
// `admin` ("*") and `viewer`, who may open the editor and read flows, nodes, settings and status
// but holds neither toolmesh-tool-registry.read nor toolmesh-confirm-gate.read (the bare scope "read" would grant
// both: Node-RED's "read" matches every "<x>.read").
//
// A real agent with a distinctive id and tool (PLANTED) connects to the registry's embedded
// broker; calls to it run through an http-in → remote-tool flow that names neither (the viewer
// may read the flow), and an MCP bridge over MQTT asks the confirm-gate to approve two calls of
// it. Every websocket frame and every HTTP response body each browser received is recorded.
// The viewer's sidebar shows only that it may not read the sections, the viewer's browser never
// asks the sidebar's or the gate's endpoints (and is refused with 401 when made to), and no frame
// or response it received contains PLANTED, except the remote-tool's own node status (a known
// leak outside the sidebar, see REMOTE_TOOL below). Comms carries only `toolmesh/sidebar/changed`
// `{ rev }` to both users. The admin sees the agent, its tool, the calls and both approvals,
// approves the second one by its id (the first stays pending), and a burst of 40 calls reads the
// calls section at most once per 500 ms.
import { generateKeyPairSync } from 'node:crypto';
import { encryptCredentials } from '../scripts/demo/gate-keys';
import { createConnection } from 'node:net';
import type { Page, Request } from 'playwright-core';
import { openWatchedPage, type WatchedPage } from './support/browser';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import mqtt from 'mqtt';
import { RpcServer, defineTool } from '../protocol';
import { approvalTopics } from '../protocol/approval-requests';
import { freePort, systemBinary } from './support/mosquitto';
import { startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { resolveFromNodeRed } from './support/node-red-path';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
/** What only the agent and its callers know: in no flow, no setting, no file of the editor. */
const PLANTED = { agent: 'zq-planted-agent-7731', tool: 'zq_planted_tool_7731', name: 'Zq Planted Box', requester: 'Zq Planted Requester' };
/** Matches any part of {@link PLANTED} (the common parts, so a shortened or re-cased copy counts too). */
const LEAK = /planted|7731/i;
const PASSWORD = 'sidebar-test-password';
/** Enough to open the editor and watch it (comms needs status.read), nothing of ToolMesh's. */
const VIEWER_PERMISSIONS = ['settings.read', 'flows.read', 'nodes.read', 'plugins.read', 'status.read', 'context.read', 'library.read'];
/** The flow's remote-tool node. */
const REMOTE_TOOL = 'sp-remote';
const GATE_KEY = generateKeyPairSync('ed25519').privateKey.export({ type: 'pkcs8', format: 'pem' }).toString();

function bcryptHash(password: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bcrypt = require(resolveFromNodeRed('bcryptjs')) as { hashSync(pw: string, rounds: number): string };
  return bcrypt.hashSync(password, 8);
}

function testFlow(port: number) {
  const z = 'sp-tab';
  return [
    { id: z, type: 'tab', label: 'permissions' },
    { id: 'sp-registry', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'embedded', port, host: '127.0.0.1', root: 'toolmesh/v1', policy: '*/*', timeout: 30000 },
    { id: 'sp-gate', type: 'toolmesh-confirm-gate', z, x: 320, y: 200, name: 'door', registry: 'sp-registry', threshold: 'high', timeout: 120000, validity: 60000, remoteRequests: true, wires: [[], [], []] },
    // POST /sp-call { id, agent, tool, arguments } → the call; the flow names no agent or tool
    { id: 'sp-in', type: 'http in', z, x: 100, y: 80, url: '/sp-call', method: 'post', wires: [['sp-set']] },
    { id: 'sp-set', type: 'change', z, x: 260, y: 80, rules: [{ t: 'move', p: 'payload', pt: 'msg', to: 'toolCall', tot: 'msg' }], wires: [['sp-remote']] },
    { id: REMOTE_TOOL, type: 'toolmesh-remote-tool', z, x: 420, y: 80, registry: 'sp-registry', agent: '', tool: '', arguments: '{}', argsFrom: 'config', wires: [['sp-out']] },
    { id: 'sp-out', type: 'http response', z, x: 580, y: 80, statusCode: '', headers: {} },
  ];
}

function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = createConnection({ host: '127.0.0.1', port }, () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** A logged-in editor and everything its browser received. */
interface Session {
  watched: WatchedPage;
  page: Page;
  /** Text of every websocket frame received, in order. */
  frames: string[];
  /** Every response from Node-RED: method, path, status, body (bodies are read at the end, {@link bodies}). */
  responses: Array<{ method: string; path: string; status: number; body: Promise<string>; request: Request }>;
}

/** The `{ topic, data }` messages in a comms frame (Node-RED sends one or an array of them). */
function commsMessages(frame: string): Array<{ topic?: string; data?: unknown }> {
  try {
    const m = JSON.parse(frame);
    return Array.isArray(m) ? m : [m];
  } catch {
    return [];
  }
}

declare const RED: any;

describe.skipIf(!CHROMIUM)('ToolMesh sidebar permissions in the Node-RED editor (skipped when chromium is not installed)', () => {
  let nodeRed: NodeRedProcess;
  let brokerPort: number;
  let agent: RpcServer;
  let bridge: mqtt.MqttClient;
  const answers: Array<{ approvalId: string; approved: boolean }> = [];
  const approvalIds = ['sp-approval-1', 'sp-approval-2'];
  let admin: Session;
  let viewer: Session;

  const call = async (n: number) => {
    const res = await fetch(`${nodeRed.url}/sp-call`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ id: `c${n}`, agent: PLANTED.agent, tool: PLANTED.tool, arguments: { n } }),
    });
    expect(res.status).toBe(200);
    return res.json();
  };

  async function open(username: string): Promise<Session> {
    const watched = await openWatchedPage(CHROMIUM!, 'en-US');
    const { page } = watched;
    const s: Session = { watched, page, frames: [], responses: [] };
    page.on('websocket', (ws) => ws.on('framereceived', (f) => s.frames.push(typeof f.payload === 'string' ? f.payload : f.payload.toString('utf8'))));
    page.on('response', (r) => {
      const u = new URL(r.url());
      if (u.origin !== nodeRed.url) return;
      s.responses.push({ method: r.request().method(), path: u.pathname, status: r.status(), body: r.text().catch(() => ''), request: r.request() });
    });
    await page.goto(`${nodeRed.url}/`);
    await page.locator('#node-dialog-login-username').fill(username);
    await page.locator('#node-dialog-login-password').fill(PASSWORD);
    await page.locator('#node-dialog-login-submit').click();
    await page.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('sp-remote') && RED.workspaces?.active() === 'sp-tab', null, { timeout: 60_000 });
    await page.evaluate(() => RED.sidebar.show('toolmesh-sidebar'));
    return s;
  }

  beforeAll(async () => {
    brokerPort = await freePort();
    nodeRed = await startNodeRedProcess({
      flows: testFlow(brokerPort),
      files: { 'flows_cred.json': JSON.stringify(encryptCredentials('toolmesh-test-secret', { 'sp-gate': { signingKey: GATE_KEY } })) },
      settings: {
        editorTheme: { tours: false, palette: { catalogues: [] } },
        adminAuth: {
          type: 'credentials',
          users: [
            { username: 'admin', password: bcryptHash(PASSWORD), permissions: '*' },
            { username: 'viewer', password: bcryptHash(PASSWORD), permissions: VIEWER_PERMISSIONS },
          ],
        },
      },
    });
    await until(() => listening(brokerPort), 'the embedded broker', 20_000);
    const tool = defineTool({ name: PLANTED.tool, description: 'Echoes n.', risk: 'low', input: z.strictObject({ n: z.number() }), execute: (a) => ({ n: a.n }) });
    agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url: `mqtt://127.0.0.1:${brokerPort}` }, agentId: PLANTED.agent, info: { name: PLANTED.name, kind: 'pi' }, tools: [tool],
      // the burst of 40 calls below comes from one caller: above the default of 8 at once they would be BUSY
      maxRunningPerCaller: 64, maxRunning: 64 });
    await agent.start();
    await until(async () => (await call(0).catch(() => null))?.n === 0, 'a first call reaches the planted agent', 20_000);

    admin = await open('admin');
    viewer = await open('viewer');

    // while both watch: an MCP bridge asks for two approvals, and one more call runs
    const at = approvalTopics('toolmesh/v1');
    bridge = await mqtt.connectAsync(`mqtt://127.0.0.1:${brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
    bridge.on('message', (_t, payload) => answers.push(JSON.parse(payload.toString())));
    await bridge.subscribeAsync(at.response('mcp-bridge'), { qos: 1 });
    for (const [i, approvalId] of approvalIds.entries()) {
      await bridge.publishAsync(at.request('mcp-bridge'), JSON.stringify({
        v: 1, approvalId, agent: PLANTED.agent, tool: PLANTED.tool, arguments: { n: 100 + i }, requester: PLANTED.requester, expiresAt: Date.now() + 120_000,
      }), { qos: 1 });
    }
    await call(1);
  }, 150_000);

  afterAll(async () => {
    await bridge?.endAsync(true);
    await agent?.stop();
    await admin?.watched.close();
    await viewer?.watched.close();
    await nodeRed?.stop();
  });

  const sidebar = (s: Session) => s.page.locator('.toolmesh-sidebar');

  it('shows the admin the planted agent with its tool, the calls and both approvals', async () => {
    const row = sidebar(admin).locator(`.toolmesh-agent[data-agent="${PLANTED.agent}"]`);
    await expect.poll(() => row.getAttribute('data-state'), { timeout: 20_000 }).toBe('online');
    expect(await row.locator(`.toolmesh-tool[data-tool="${PLANTED.tool}"]`).count()).toBe(1);
    expect(await row.innerText()).toContain(PLANTED.name);
    await expect.poll(() => sidebar(admin).locator(`.toolmesh-call[data-agent="${PLANTED.agent}"][data-tool="${PLANTED.tool}"]`).count()).toBeGreaterThanOrEqual(2);
    for (const id of approvalIds) await sidebar(admin).locator(`.toolmesh-approval[data-approval="${id}"]`).waitFor({ state: 'visible' });
    expect(await sidebar(admin).locator('.toolmesh-approval').count()).toBe(2);
    expect(await sidebar(admin).locator('.toolmesh-forbidden').count()).toBe(0);
  }, 60_000);

  it('Approve decides the approval it belongs to, by its id: the other stays pending', async () => {
    const second = sidebar(admin).locator(`.toolmesh-approval[data-approval="${approvalIds[1]}"]`);
    await second.locator('button.toolmesh-approve').click();
    await until(() => answers.length === 1, 'the answer to the bridge', 15_000);
    expect(answers[0]).toMatchObject({ approvalId: approvalIds[1], approved: true });
    await second.waitFor({ state: 'detached' });
    expect(await sidebar(admin).locator(`.toolmesh-approval[data-approval="${approvalIds[0]}"]`).count()).toBe(1);
    const pending = await admin.page.evaluate(() => $.getJSON('toolmesh/confirm-gate/sp-gate/approvals'));
    expect(pending.map((p: { approvalId: string }) => p.approvalId)).toEqual([approvalIds[0]]);
  }, 30_000);

  it('reads the calls section at most once per 500 ms during a burst of 40 calls', async () => {
    const since = Date.now();
    const signalsBefore = admin.frames.flatMap(commsMessages).filter((m) => m.topic === 'toolmesh/sidebar/changed').length;
    for (let batch = 0; batch < 4; batch++) {
      await Promise.all(Array.from({ length: 10 }, (_, i) => call(1000 + batch * 10 + i)));
      await new Promise((r) => setTimeout(r, 150));
    }
    await expect.poll(() => sidebar(admin).locator('.toolmesh-call').first().getAttribute('data-agent')).toBe(PLANTED.agent);
    await admin.page.waitForTimeout(1_200); // the last read after the burst
    const signals = admin.frames.flatMap(commsMessages).filter((m) => m.topic === 'toolmesh/sidebar/changed').length - signalsBefore;
    // when the browser started each read (its own clock: CDP events arrive late on a busy machine)
    const reads = admin.responses.filter((r) => r.path === '/toolmesh/sidebar/calls').map((r) => r.request.timing().startTime).filter((t) => t >= since);
    const gaps = reads.slice(1).map((t, i) => t - reads[i]);
    console.log(`burst of 40 calls over ${Date.now() - since} ms: ${signals} change signals, ${reads.length} reads of the calls section, gaps ${gaps.join(', ')} ms`);
    expect(signals, 'the burst signalled more often than the editor read').toBeGreaterThan(reads.length);
    expect(reads.length).toBeGreaterThanOrEqual(2);
    // the sidebar starts its reads 500 ms apart; the browser may put one off by some ms (three
    // requests at once), so a gap can look shorter by that much; without the throttle they are ~50 ms
    // (a loaded CI machine once started one read ~70 ms late: gaps 431 and 500 ms, mean 466)
    for (const g of gaps) expect(g).toBeGreaterThanOrEqual(350);
    expect(gaps.reduce((a, b) => a + b, 0) / gaps.length).toBeGreaterThanOrEqual(430);
    // unchanged sections answer 204 without a body
    const agentReads = admin.responses.filter((r) => r.path === '/toolmesh/sidebar/agents' && r.request.timing().startTime >= since);
    expect(agentReads.length).toBeGreaterThan(0);
    expect(agentReads.every((r) => r.status === 204)).toBe(true);
  }, 60_000);

  it('comms carries only toolmesh/sidebar/changed with { rev } to both users', async () => {
    for (const s of [admin, viewer]) {
      const ours = s.frames.flatMap(commsMessages).filter((m) => typeof m.topic === 'string' && m.topic.startsWith('toolmesh/'));
      expect(ours.length).toBeGreaterThan(0);
      for (const m of ours) {
        expect(m.topic).toBe('toolmesh/sidebar/changed');
        expect(Object.keys(m.data as object)).toEqual(['rev']);
        expect(typeof (m.data as { rev: unknown }).rev).toBe('number');
      }
    }
  });

  it('shows the viewer that it may not read the sections, and nothing of them', async () => {
    const forbidden = await sidebar(viewer).locator('.toolmesh-forbidden').allInnerTexts();
    expect(forbidden).toEqual([
      'You lack the permission toolmesh-tool-registry.read to see this.',
      'You lack the permission toolmesh-confirm-gate.read to see this.',
      'You lack the permission toolmesh-tool-registry.read to see this.',
    ]);
    expect(await sidebar(viewer).locator('.toolmesh-agent, .toolmesh-call, .toolmesh-approval, .toolmesh-registry').count()).toBe(0);
    expect(await viewer.page.evaluate(() => document.body.innerText)).not.toMatch(LEAK);
  });

  it('the viewer\'s browser never asked the sidebar\'s or the gate\'s endpoints, and they refuse its token with 401', async () => {
    expect(viewer.responses.filter((r) => r.path.startsWith('/toolmesh/')).map((r) => r.path)).toEqual([]);
    const statuses = await viewer.page.evaluate(async (paths) => Promise.all(paths.map((p) => new Promise<number>((resolve) => {
      $.ajax({ url: p, dataType: 'json' }).always((a: any, _s: string, b: any) => resolve((a && a.status) ?? b.status));
    }))), ['toolmesh/sidebar/agents', 'toolmesh/sidebar/calls', 'toolmesh/sidebar/approvals', 'toolmesh/confirm-gate/sp-gate/approvals',
      'toolmesh/registry/sp-registry/agents?q=zq']);
    expect(statuses).toEqual([401, 401, 401, 401, 401]);
    // the same requests with the admin's token answer
    const adminStatuses = await admin.page.evaluate(async () => Promise.all(['toolmesh/sidebar/agents', 'toolmesh/sidebar/approvals'].map((p) => new Promise<number>((resolve) => {
      $.ajax({ url: p, dataType: 'json' }).always((a: any, _s: string, b: any) => resolve((a && a.status) ?? b.status));
    }))));
    expect(adminStatuses).toEqual([200, 200]);
  });

  it('no websocket frame and no HTTP response the viewer received names the planted agent, tool or requester', async () => {
    const bodies = await Promise.all(viewer.responses.map(async (r) => ({ ...r, text: await r.body })));
    expect(bodies.length).toBeGreaterThan(5);
    expect(bodies.filter((r) => LEAK.test(r.text)).map((r) => `${r.method} ${r.path} ${r.status}`)).toEqual([]);
    const messages = viewer.frames.flatMap(commsMessages);
    expect(messages.length).toBeGreaterThan(0);
    expect(viewer.frames.filter((f) => commsMessages(f).length === 0 && LEAK.test(f)), 'frames that are not comms messages').toEqual([]);
    const leaking = messages.filter((m) => LEAK.test(JSON.stringify(m)));
    // KNOWN, NOT THE SIDEBAR'S: a remote-tool's node status ("calling <tool>…", "waiting for
    // <agent> (lost)…") names the agent and tool of a dynamic call, and Node-RED sends node status
    // to every session with status.read. Reported (issue 17); only that node's status is let through.
    const statusLeaks = leaking.filter((m) => m.topic === `status/${REMOTE_TOOL}`);
    if (statusLeaks.length) console.warn(`remote-tool status names the planted call in ${statusLeaks.length} comms messages to the viewer, e.g. ${JSON.stringify(statusLeaks[0])}`);
    expect(leaking.filter((m) => m.topic !== `status/${REMOTE_TOOL}`)).toEqual([]);
    // the admin's browser did receive them (through the endpoints), so the pattern finds what it should
    const adminBodies = await Promise.all(admin.responses.map((r) => r.body));
    expect(adminBodies.some((b) => b.includes(PLANTED.agent) && b.includes(PLANTED.tool))).toBe(true);
    expect(viewer.frames.length).toBeGreaterThan(0);
  });

  it('had no page errors in the admin\'s editor and asked nothing of other hosts', () => {
    // the editor's first GET /settings before the login is refused: that is how it learns to ask for one
    expect(admin.watched.errors.filter((e) => !/^\[page load\] console error: .*status of 401 .*\/settings\?_=\d+\)$/.test(e))).toEqual([]);
    expect(admin.watched.offHost).toEqual([]);
    expect(viewer.watched.offHost).toEqual([]);
  });
});
