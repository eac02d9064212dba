// The chat and approvals pages (flows/chat-dashboard.json) as a person uses them: a real Node-RED
// process with FlowFuse Dashboard 2.0 and the flow as shipped (its embedded broker on a free port,
// the llm-agent pointed at the scripted OpenAI-compatible server, which streams), an agent `pi`
// (RpcServer) that trusts the flow's gate, and headless Chromium (Debian's /usr/bin/chromium) with
// one context per "browser": a phone (390 × 844) and a desktop (1280 × 800).
//
// The approvals side is exercised from three places: the card on the phone, the approvals page on
// the desktop, and the ToolMesh sidebar in the Node-RED editor (which decides through the gate's
// admin endpoint); and the MCP bridge (`toolmesh mcp --approvals gate`, spawned by an SDK MCP
// client over stdio) asks the flow's gate over MQTT, where the approvals page shows who asks.
//
// Screenshots go to <tmp>/toolmesh-chat-dashboard-shots/ (or $TOOLMESH_SCREENSHOT_DIR); the test
// prints the directory.
import { mkdirSync, readFileSync } from 'node:fs';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool, generateApprovalKeys, type CallEvent, type CallToolResult } from '../protocol';
import { patchFlow } from '../scripts/demo/options';
import { trustingAuthorization, verdictOf } from './support/approvals';
import { CHROMIUM_ARGS } from './support/browser';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

/** The Node-RED editor's global, inside the editor page. */
declare const RED: any;
const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const SHOTS = process.env.TOOLMESH_SCREENSHOT_DIR ?? join(tmpdir(), 'toolmesh-chat-dashboard-shots');
const flow = JSON.parse(readFileSync(join(REPO_ROOT, 'flows/chat-dashboard.json'), 'utf8')) as Array<Record<string, any>>;
const gateDef = flow.find((n) => n.type === 'toolmesh-confirm-gate')!;
const keys = generateApprovalKeys();
const XSS = '<img src=x onerror="window.__xss = 1">';
const PNG_1PX = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

/** What the agent did. */
const ran: string[] = [];
const verdicts: Array<{ verdict: string; approver?: string }> = [];
const tools = [
  defineTool({ name: 'docker_list_containers', description: 'Lists the containers.', risk: 'low', input: z.object({}), execute: () => { ran.push('list'); return { containers: [{ name: 'web', state: 'running' }, { name: 'db', state: 'running' }] }; } }),
  defineTool({ name: 'read_note', description: 'Reads a note from a web page.', risk: 'low', input: z.object({}), execute: () => { ran.push('note'); return XSS; } }),
  defineTool({
    name: 'take_photo', description: 'Takes a photo.', risk: 'low', input: z.object({}),
    execute: (): CallToolResult => { ran.push('photo'); return { content: [{ type: 'text', text: 'photo taken' }, { type: 'image', mimeType: 'image/png', data: PNG_1PX }] }; },
  }),
  defineTool({ name: 'docker_restart_container', description: 'Restarts a container.', risk: 'high', input: z.object({ container: z.string() }), execute: (a) => { ran.push(`restart:${a.container}`); return { container: a.container, state: 'running' }; } }),
];

/**
 * The scripted model: after a tool result it answers from it; otherwise a question naming
 * "containers", "note", "photo" or "restart" gets the call of that tool, and any other question a
 * streamed answer that repeats it.
 */
function script(body: any): any {
  const fn = (tool: string) => (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith(`__${tool}`)) ?? `missing_${tool}`;
  const last = body.messages.at(-1);
  if (last.role === 'tool') {
    if (last.content.startsWith('DENIED')) return { content: 'The restart was denied, so nothing changed.' };
    return { content: `Done. The tool said: ${last.content.slice(0, 80)}` };
  }
  const q = String(last.content);
  if (/containers/.test(q)) return { toolCalls: [{ id: 'call-list', name: fn('docker_list_containers'), arguments: {} }] };
  if (/note/.test(q)) return { toolCalls: [{ id: 'call-note', name: fn('read_note'), arguments: {} }] };
  if (/photo/.test(q)) return { toolCalls: [{ id: 'call-photo', name: fn('take_photo'), arguments: {} }] };
  if (/restart/.test(q)) return { toolCalls: [{ id: 'call-restart', name: fn('docker_restart_container'), arguments: { container: 'web' } }] };
  return { content: `You asked: ${q}. Here is a streamed answer in several pieces.` };
}

let nodeRed: NodeRedProcess;
let llm: FakeLlm;
let agent: RpcServer | undefined;
let browser: Browser;
/** The flow's embedded broker port (patched to a free one). */
let mqttPort: number;
/** The `toolmesh` CLI (built). */
const BIN = join(REPO_ROOT, 'dist/nodes/cli.js');

/** A browser context with its page, every websocket frame it received, and its page errors. */
interface Person { context: BrowserContext; page: Page; frames: string[]; errors: string[] }

async function person(viewport: { width: number; height: number }, path = '/dashboard/chat'): Promise<Person> {
  const context = await browser.newContext({ viewport, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.setDefaultTimeout(20_000);
  const frames: string[] = [];
  const errors: string[] = [];
  page.on('websocket', (ws) => ws.on('framereceived', (f) => frames.push(String(f.payload))));
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('request', (r) => { if (!/^(data:|https?:\/\/127\.0\.0\.1[:/]|ws:\/\/127\.0\.0\.1[:/])/.test(r.url())) errors.push(`request off 127.0.0.1: ${r.url()}`); });
  await page.goto(`${nodeRed.url}${path}`);
  return { context, page, frames, errors };
}

/** Types a question and presses Enter. */
async function ask(p: Person, question: string): Promise<void> {
  const input = p.page.getByLabel('Your question');
  await input.fill(question);
  await input.press('Enter');
}

/** The run events (llm-agent output 3) and answers a page received over its websocket. */
function chatFrames(p: Person): any[] {
  return p.frames.filter((f) => f.startsWith('42')).map((f) => { try { return JSON.parse(f.slice(2)); } catch { return undefined; } })
    .filter((m) => Array.isArray(m) && m[0] === 'msg-input:tm-chat-template').map((m) => m[1]);
}

const answers = (p: Person) => p.page.locator('.tmc-answer .tmc-text');

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  console.log(`chat-dashboard screenshots: ${SHOTS}`);
  llm = await startFakeLlm(script);
  mqttPort = await freePort();
  const flows = patchFlow(flow as never, mqttPort).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n));
  nodeRed = await startNodeRedProcess({
    modules: ['@flowfuse/node-red-dashboard'],
    flows,
    // plain credentials: Node-RED encrypts them on the next deploy
    files: { 'flows_cred.json': JSON.stringify({ [gateDef.id]: { signingKey: keys.privateKeyPem } }) },
  });
  agent = new RpcServer({ authorization: await trustingAuthorization(new Map([[gateDef.kid, keys.publicKeyPem]])), connection: { url: `mqtt://127.0.0.1:${mqttPort}` }, agentId: 'pi', tools });
  agent.on('call', (e: CallEvent) => { if (e.risk === 'high') verdicts.push({ verdict: verdictOf(e), ...(e.approval ? { approver: e.approval.approver } : {}) }); });
  await agent.start();
  browser = await chromium.launch({ executablePath: CHROMIUM!, args: CHROMIUM_ARGS, headless: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await agent?.stop();
  await nodeRed?.stop();
  await llm?.close();
});

describe('chat page (/dashboard/chat)', () => {
  let phone: Person;
  let desktop: Person;

  beforeAll(async () => {
    phone = await person({ width: 390, height: 844 });
    desktop = await person({ width: 1280, height: 800 });
    await until(async () => (await fetch(`${nodeRed.url}/dashboard/chat`)).ok, 'the dashboard');
  });

  afterAll(async () => {
    await phone?.context.close();
    await desktop?.context.close();
  });

  it('answers a question, streaming the answer in (text-delta run events), on a phone', async () => {
    await phone.page.getByText('Ask a question').waitFor();
    await ask(phone, 'hello mesh');
    await phone.page.getByText('You asked: hello mesh. Here is a streamed answer in several pieces.').waitFor();
    const events = chatFrames(phone).map((m) => m.payload);
    const deltas = events.filter((e) => e.type === 'text-delta');
    expect(deltas.length, 'several text-delta events').toBeGreaterThan(1);
    expect(deltas.map((e) => e.text).join('')).toBe('You asked: hello mesh. Here is a streamed answer in several pieces.');
    expect(events.at(-1)).toEqual({ type: 'answer', text: 'You asked: hello mesh. Here is a streamed answer in several pieces.' });
    await expect(answers(phone).count()).resolves.toBe(1);
    await phone.page.screenshot({ path: join(SHOTS, 'chat-phone-answer.png'), fullPage: true });
  });

  it('shows a tool call as a card that ends "done", then the answer, on a desktop', async () => {
    await ask(desktop, 'which containers run?');
    const card = desktop.page.locator('.tmc-card[data-call="call-list"]');
    await card.waitFor();
    await expect(card.getAttribute('data-state')).resolves.toMatch(/running|done/);
    await desktop.page.getByText(/^Done\. The tool said:/).waitFor();
    await until(async () => (await card.getAttribute('data-state')) === 'done', 'the card to end done');
    await expect(card.locator('.tmc-state').textContent()).resolves.toMatch(/^done · \d+ ms$/);
    await expect(card.locator('.tmc-tool').textContent()).resolves.toBe('pi / docker_list_containers');
    await expect(card.locator('.tmc-result').textContent()).resolves.toContain('"name":"web"');
    expect(ran).toContain('list');
    await desktop.page.screenshot({ path: join(SHOTS, 'chat-desktop-tool-card.png'), fullPage: true });
  });

  it('keeps the two browsers\' conversations apart, in their websocket frames and on the page', async () => {
    const sessionOf = (p: Person) => p.page.evaluate(() => window.localStorage.getItem('toolmesh-chat-session'));
    const [a, b] = [await sessionOf(phone), await sessionOf(desktop)];
    expect(a).toMatch(/^chat-/);
    expect(b).toMatch(/^chat-/);
    expect(a).not.toBe(b);
    const phoneFrames = chatFrames(phone);
    const desktopFrames = chatFrames(desktop);
    expect(phoneFrames.length).toBeGreaterThan(0);
    expect(desktopFrames.length).toBeGreaterThan(0);
    // every chat message a browser received was of its own conversation
    expect(phoneFrames.every((m) => m.sessionId === a), 'the phone received only its own conversation').toBe(true);
    expect(desktopFrames.every((m) => m.sessionId === b), 'the desktop received only its own conversation').toBe(true);
    expect(phone.frames.join('\n')).not.toContain('docker_list_containers');
    expect(desktop.frames.join('\n')).not.toContain('hello mesh');
    await expect(phone.page.getByText('which containers run?').count()).resolves.toBe(0);
    // the conversation id outlives a reload (the socket id does not)
    await phone.page.reload();
    await phone.page.getByLabel('Your question').waitFor();
    await expect(sessionOf(phone)).resolves.toBe(a);
  });

  it('shows a tool result carrying HTML as text: no script runs, no element is made from it', async () => {
    await ask(desktop, 'read the note');
    const card = desktop.page.locator('.tmc-card[data-call="call-note"]');
    await until(async () => (await card.getAttribute('data-state')) === 'done', 'the note card to end done');
    await expect(card.locator('.tmc-result').textContent()).resolves.toBe(XSS);
    await desktop.page.getByText(/^Done\. The tool said: <img/).waitFor();
    await expect(desktop.page.evaluate(() => (window as unknown as { __xss?: number }).__xss)).resolves.toBeUndefined();
    await expect(desktop.page.locator('img[src="x"]').count()).resolves.toBe(0);
    expect(desktop.errors).toEqual([]);
  });

  it('shows the image a tool returns in its card, as a data: URL', async () => {
    await ask(phone, 'take a photo');
    const card = phone.page.locator('.tmc-card[data-call="call-photo"]');
    await until(async () => (await card.getAttribute('data-state')) === 'done', 'the photo card to end done');
    await expect(card.locator('img.tmc-img').getAttribute('src')).resolves.toBe(`data:image/png;base64,${PNG_1PX}`);
    await phone.page.getByText(/^Done\. The tool said: photo taken/).waitFor();
    await phone.page.screenshot({ path: join(SHOTS, 'chat-phone-photo-card.png'), fullPage: true });
  });

  it('"New conversation" clears the page and the model\'s history of this browser', async () => {
    await phone.page.getByRole('button', { name: 'New conversation' }).click();
    await phone.page.getByText('Ask a question').waitFor();
    const before = llm.requests.length;
    await ask(phone, 'fresh start');
    await phone.page.getByText(/^You asked: fresh start/).waitFor();
    const sent = llm.requests.slice(before).at(-1)!.body.messages.filter((m: any) => m.role === 'user');
    expect(sent.map((m: any) => m.content)).toEqual(['fresh start']);
    expect(phone.errors).toEqual([]);
  });

  it('works by keyboard: Tab from the question reaches Send, Enter on "New conversation" starts over', async () => {
    const page = desktop.page;
    await page.getByLabel('Your question').fill('typed only');
    await page.keyboard.press('Tab');
    await expect(page.evaluate(() => document.activeElement?.textContent?.trim())).resolves.toBe('Send');
    await page.getByRole('button', { name: 'New conversation' }).focus();
    await page.keyboard.press('Enter');
    await page.getByText('Ask a question').waitFor();
    await expect(page.locator('.tmc-card').count()).resolves.toBe(0);
  });
});

// These need the gate side of issue 21 (confirm-gate emits held/settled on toolmeshEvents, sends
// approval-settled on output 2, answers list-approvals, and takes decisions for any gate's hold):
// they run once both branches are merged.
describe('approvals on the chat card and on /dashboard/approvals (needs the confirm-gate side of issue 21)', () => {
  let phone: Person;
  let desktop: Person;

  beforeAll(async () => {
    phone = await person({ width: 390, height: 844 });
    desktop = await person({ width: 1280, height: 800 }, '/dashboard/approvals');
    await desktop.page.getByText(/wait|Nothing waits/).first().waitFor();
  });

  afterAll(async () => {
    await phone?.context.close();
    await desktop?.context.close();
  });

  it('a high-risk call waits on its card; Approve runs it once on the agent, then the answer', async () => {
    const runsBefore = ran.filter((r) => r === 'restart:web').length;
    await ask(phone, 'restart web');
    const card = phone.page.locator('.tmc-card[data-call="call-restart"]');
    await until(async () => (await card.getAttribute('data-state')) === 'waiting', 'the card to wait for approval');
    await expect(card.locator('.tmc-state').textContent()).resolves.toMatch(/^waiting for approval/);
    await expect(card.locator('.tmc-summary').textContent()).resolves.toMatch(/web/);
    // the approvals page shows the same hold, live
    await desktop.page.locator('.tma-card').first().waitFor();
    await phone.page.screenshot({ path: join(SHOTS, 'chat-phone-waiting.png'), fullPage: true });
    await desktop.page.screenshot({ path: join(SHOTS, 'approvals-desktop.png'), fullPage: true });
    await card.getByRole('button', { name: 'Approve' }).click();
    await until(async () => (await card.getAttribute('data-state')) === 'done', 'the card to end done');
    await expect(card.locator('.tmc-note').textContent()).resolves.toMatch(/^Approved by /);
    await phone.page.getByText(/^Done\. The tool said:.*running/).waitFor();
    expect(ran.filter((r) => r === 'restart:web').length - runsBefore).toBe(1);
    expect(verdicts.at(-1)).toMatchObject({ verdict: 'approved' });
    // and the approvals page lets it go
    await until(async () => (await desktop.page.locator('.tma-card').count()) === 0, 'the approvals page to empty');
  });

  it('Deny on the card: the model is told and the card says denied', async () => {
    await ask(phone, 'restart web again');
    // the scripted model repeats its call id, which the llm-agent makes unique in the conversation: the newest card
    const card = phone.page.locator('.tmc-card').last();
    await until(async () => (await card.getAttribute('data-state')) === 'waiting', 'the card to wait');
    await card.getByRole('button', { name: 'Deny' }).click();
    await until(async () => (await card.getAttribute('data-state')) === 'denied', 'the card to say denied');
    await expect(card.locator('.tmc-state').textContent()).resolves.toMatch(/^denied/);
    await phone.page.getByText('The restart was denied, so nothing changed.').last().waitFor();
  });

  it('a card goes "approved elsewhere" when the approvals page decides', async () => {
    await ask(phone, 'restart web once more');
    const card = phone.page.locator('.tmc-card').last();
    await until(async () => (await card.getAttribute('data-state')) === 'waiting', 'the card to wait');
    const row = desktop.page.locator('.tma-card').first();
    await row.getByRole('button', { name: 'Approve' }).click();
    await until(async () => /Approved elsewhere/.test((await card.locator('.tmc-note').textContent()) ?? ''), 'the card to say approved elsewhere');
    await until(async () => (await card.getAttribute('data-state')) === 'done', 'the card to end done');
  });

  it('a card goes "approved elsewhere" when the SIDEBAR decides (the gate\'s admin endpoint): the call runs once', async () => {
    // the Node-RED editor with the ToolMesh sidebar open, as the person at the desk has it
    const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, deviceScaleFactor: 1 });
    try {
      const editor = await context.newPage();
      editor.setDefaultTimeout(20_000);
      const editorErrors: string[] = [];
      editor.on('pageerror', (e) => editorErrors.push(e.message));
      await editor.goto(`${nodeRed.url}/`);
      await editor.waitForFunction(() => typeof RED !== 'undefined' && RED.nodes?.node?.('tm-chat-gate') && RED.workspaces?.active() === 'tm-chat-tab', null, { timeout: 60_000 });
      await editor.evaluate(() => RED.sidebar.show('toolmesh-sidebar'));
      await editor.locator('.toolmesh-sidebar').waitFor();

      const runsBefore = ran.filter((r) => r === 'restart:web').length;
      await ask(phone, 'restart web from the desk');
      const card = phone.page.locator('.tmc-card').last();
      await until(async () => (await card.getAttribute('data-state')) === 'waiting', 'the card to wait');
      const callId = await card.getAttribute('data-call');
      const held = chatFrames(phone).map((m) => m.payload).filter((e) => e?.type === 'tool-call-held' && e.id === callId).at(-1);
      expect(held?.approvalId, 'the held event names the approval id').toEqual(expect.any(String));
      // the sidebar lists the same hold under the chat flow's gate, by its approval id
      const row = editor.locator(`.toolmesh-approval[data-gate="tm-chat-gate"][data-approval="${held.approvalId}"]`);
      await row.waitFor({ state: 'visible' });
      expect(ran.filter((r) => r === 'restart:web').length, 'nothing ran before the decision').toBe(runsBefore);
      const decided = editor.waitForResponse((r) => r.request().method() === 'POST' && r.url().endsWith(`/toolmesh/confirm-gate/tm-chat-gate/approvals/${encodeURIComponent(held.approvalId)}`));
      await row.locator('button.toolmesh-approve').click();
      const res = await decided;
      expect(res.status()).toBe(200);
      await expect(res.json()).resolves.toMatchObject({ approvalId: held.approvalId, approved: true, approver: 'admin API' });

      await until(async () => (await card.getAttribute('data-state')) === 'done', 'the card to end done');
      await expect(card.locator('.tmc-note').textContent()).resolves.toBe('Approved elsewhere by admin API.');
      await phone.page.getByText(/^Done\. The tool said:.*running/).last().waitFor();
      expect(ran.filter((r) => r === 'restart:web').length - runsBefore, 'the call ran once').toBe(1);
      expect(verdicts.at(-1)).toEqual({ verdict: 'approved', approver: 'admin API' });
      await row.waitFor({ state: 'detached' });
      // the approvals page let it go as well
      await until(async () => (await desktop.page.locator('.tma-card').count()) === 0, 'the approvals page to empty');
      await phone.page.screenshot({ path: join(SHOTS, 'chat-phone-approved-elsewhere.png'), fullPage: true });
      expect(editorErrors).toEqual([]);
      expect(phone.errors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 120_000);

  it('the approvals page shows a held MCP request with who asks; Approve lets the bridge\'s call run once', async () => {
    // an MCP client (as VS Code or Claude Desktop would) starts the bridge over stdio, in gate mode
    let stderr = '';
    const transport = new StdioClientTransport({
      command: process.execPath,
      args: [BIN, 'mcp', '--broker', `mqtt://127.0.0.1:${mqttPort}`, '--caller-id', 'mcp-chat', '--approvals', 'gate'],
      stderr: 'pipe',
    });
    transport.stderr?.on('data', (d) => { stderr += d; });
    const client = new Client({ name: 'vitest-desk', version: '2.0.0' }, { capabilities: {} });
    await client.connect(transport);
    try {
      await until(async () => (await client.listTools()).tools.some((t) => t.name === 'pi__docker_restart_container'), `the bridge to offer pi's tools; its stderr:\n${stderr}`, 20_000);
      const runsBefore = ran.filter((r) => r === 'restart:db').length;
      const verdictsBefore = verdicts.length;
      const call = client.callTool({ name: 'pi__docker_restart_container', arguments: { container: 'db' } }, undefined, { timeout: 90_000 });

      const row = desktop.page.locator('.tma-card', { hasText: 'db' });
      await row.waitFor();
      await expect(row.locator('.tma-summary').textContent()).resolves.toMatch(/docker_restart_container.*db|db.*docker_restart_container|restart.*db/i);
      const facts = await row.locator('.tma-facts').innerText();
      expect(facts).toContain('pi / docker_restart_container');
      expect(facts).toMatch(/Asked by\s+vitest-desk.* via toolmesh mcp \(caller mcp-chat\)/);
      expect(ran.filter((r) => r === 'restart:db').length, 'nothing ran before the decision').toBe(runsBefore);
      await desktop.page.screenshot({ path: join(SHOTS, 'approvals-desktop-mcp.png'), fullPage: true });

      await row.getByRole('button', { name: 'Approve' }).click();
      const result = await call as { isError?: boolean; content: Array<{ type: string; text?: string }> };
      expect(result.isError ?? false, `the bridge's call failed: ${JSON.stringify(result.content)}`).toBe(false);
      expect(result.content.map((c) => c.text ?? '').join('\n')).toMatch(/"container":\s*"db"[\s\S]*"state":\s*"running"/);
      expect(ran.filter((r) => r === 'restart:db').length - runsBefore, 'the agent ran it once').toBe(1);
      expect(verdicts.slice(verdictsBefore)).toEqual([{ verdict: 'approved', approver: 'dashboard' }]);
      await until(async () => (await desktop.page.locator('.tma-card').count()) === 0, 'the approvals page to let it go');
      await expect(desktop.page.locator('.tma-recent').innerText()).resolves.toMatch(/approved by dashboard/);
      expect(desktop.errors).toEqual([]);
    } finally {
      await client.close();
    }
  }, 120_000);
});
