// End to end with the desktop example as a user imports it (flows/desktop-assistant.json), in a
// real Node-RED (test helper) with a real desktop agent started from configs/desktop.yaml
// (allowed path: a temp dir; pointed at the flow's embedded broker; trusting the gate's public
// key) and the scripted OpenAI-compatible model:
// - "make a reports folder": the model creates reports/2026 and searches reports/**, the
//   llm-agent runs both itself (medium and low risk), the answer quotes the search, and the
//   directory really exists on disk;
// - "clean up reports": desktop_delete_directory (high) leaves the llm-agent for the
//   confirm-gate; denied, nothing is deleted and the model reads DENIED; approved, the agent
//   checks the gate's signed token and the directory is gone;
// - the rows without an LLM: device info and search.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys } from '../protocol';
import { loadConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import confirmGateNode from '../nodes/confirm-gate/confirm-gate';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

const ROOT = join(__dirname, '..');
const flow = JSON.parse(readFileSync(join(ROOT, 'flows/desktop-assistant.json'), 'utf8')) as Array<Record<string, any>>;
const GATE = 'tm-desk-gate';
const gateDef = flow.find((n) => n.id === GATE)!;
const keys = generateApprovalKeys();
const credentials = { [GATE]: { signingKey: keys.privateKeyPem } };
const dir = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-desktop-flow-')));
const home = join(dir, 'documents');

const MAKE = flow.find((n) => n.id === 'tm-desk-ask')!.payload as string;
const CLEAN = flow.find((n) => n.id === 'tm-desk-cleanup')!.payload as string;

/** Resolves with the next message node `id` receives; rejects after `ms`. */
function next(id: string, ms = 15_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/**
 * The scripted model: "make" → create reports/2026, then search reports/**, then an answer
 * listing what the search found; "clean" → delete reports recursively, then an answer quoting
 * the result.
 */
function model(body: any) {
  const last = body.messages.at(-1);
  const fn = (tool: string) => (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith(`__${tool}`));
  if (last.role === 'user' && last.content === MAKE) return { toolCalls: [{ name: fn('desktop_create_directory'), arguments: { path: 'reports/2026' } }] };
  if (last.role === 'user' && last.content === CLEAN) return { toolCalls: [{ name: fn('desktop_delete_directory'), arguments: { path: 'reports', recursive: true } }] };
  const asked = body.messages.filter((m: any) => m.role === 'assistant' && m.tool_calls).at(-1).tool_calls[0].function.name as string;
  if (asked.endsWith('__desktop_create_directory')) {
    return { toolCalls: [{ name: fn('desktop_search_files'), arguments: { root: 'reports', pattern: '**' } }] };
  }
  if (asked.endsWith('__desktop_search_files')) {
    const found = JSON.parse(last.content).matches.map((m: any) => `${m.relativePath} (${m.type})`);
    return { content: `reports holds: ${found.join(', ')}` };
  }
  return { content: `model read: ${last.content}` };
}

describe('desktop example: folders, search and a delete behind the confirm-gate', () => {
  let llm: FakeLlm;
  let agent: RunningAgent;
  let reg: ToolRegistryNode;
  const agentLog: string[] = [];

  beforeAll(async () => {
    mkdirSync(home);
    writeFileSync(join(home, 'todo.txt'), 'water the plants');
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm(model);
    const patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake' } : { ...n }));
    await helper.load([registryNode, remoteToolNode, llmAgentNode, confirmGateNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'), coreNode('function/15-change.js'), coreNode('function/10-switch.js')], patched, credentials);
    reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const port = await until(() => reg.brokerPort, 'the embedded broker');
    // the example config as shipped, with this test's folder, broker and gate key
    const cfg = parseYaml(readFileSync(join(ROOT, 'configs/desktop.yaml'), 'utf8'));
    cfg.broker.url = `mqtt://127.0.0.1:${port}`;
    cfg.packs.desktop.allowedPaths = [home];
    cfg.approvals.keys = { [gateDef.kid]: keys.publicKeyPem };
    const file = join(dir, 'desktop.yaml');
    writeFileSync(file, toYaml(cfg));
    const log = (level: string) => (m: string) => { agentLog.push(`${level}: ${m}`); };
    agent = await startAgent(loadConfig(file), { info: log('info'), warn: log('warn'), error: log('error') });
    await until(() => reg.listAgents().find((a) => a.id === 'desktop' && a.online), 'agent desktop online in the registry');
  });

  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
    await llm?.close();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
    if (agentLog.some((l) => l.startsWith('error'))) console.log(`agent log:\n${agentLog.join('\n')}`);
    rmSync(dir, { recursive: true, force: true });
  });

  it('offers the desktop tools the flow calls', () => {
    const offered = reg.listTools().filter((t) => t.agentId === 'desktop').map((t) => t.tool.name);
    expect(offered.sort()).toEqual(['desktop_create_directory', 'desktop_delete_directory', 'desktop_fetch_webpage', 'desktop_get_device_info', 'desktop_open_app', 'desktop_search_files']);
    for (const n of flow.filter((x) => x.type === 'toolmesh-remote-tool' && x.tool)) expect(offered, n.id).toContain(n.tool);
  });

  it('"make a reports folder": the model creates reports/2026, searches, answers; the folder exists', async () => {
    const answered = next('tm-desk-answer');
    await helper.request().post('/inject/tm-desk-ask').expect(200);
    const msg = await answered;
    expect(msg.payload).toBe('reports holds: 2026 (directory)');
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool, c.ok])).toEqual([
      ['desktop', 'desktop_create_directory', true],
      ['desktop', 'desktop_search_files', true],
    ]);
    expect(existsSync(join(home, 'reports', '2026'))).toBe(true);
    const created = llm.requests[1].body.messages.find((m: any) => m.role === 'tool');
    expect(JSON.parse(created.content)).toMatchObject({ path: join(home, 'reports', '2026'), created: true });
  });

  it('"clean up reports" denied: the gate holds the delete, the model reads DENIED, nothing is deleted', async () => {
    const requests = next('tm-desk-requests');
    const denied = next('tm-desk-denied');
    const answered = next('tm-desk-answer');
    await helper.request().post('/inject/tm-desk-cleanup').expect(200);
    const req = await requests;
    expect(req.payload).toMatchObject({ agent: 'desktop', tool: 'desktop_delete_directory', risk: 'high', summary: 'Delete directory reports on desktop with recursive: true' });
    await helper.request().post('/inject/tm-desk-deny').expect(200);
    expect((await denied).toolResult.structuredContent.error.code).toBe('DENIED');
    const msg = await answered;
    // the test helper's RED._ leaves catalog keys as they are; the details carry who and why
    expect(msg.payload).toMatch(/^model read: DENIED: .*\ndetails: .*"approver":"Node-RED editor","reason":"keep it"/);
    expect(existsSync(join(home, 'reports', '2026'))).toBe(true);
  });

  it('"clean up reports" approved: the agent checks the signed token and the folder is gone', async () => {
    const requests = next('tm-desk-requests');
    const results = next('tm-desk-results');
    const answered = next('tm-desk-answer');
    await helper.request().post('/inject/tm-desk-cleanup').expect(200);
    await requests;
    expect(existsSync(join(home, 'reports'))).toBe(true);
    await helper.request().post('/inject/tm-desk-approve').expect(200);
    const ran = await results;
    expect(ran.toolCall).toMatchObject({ tool: 'desktop_delete_directory', approval: expect.any(String) });
    expect(ran.toolResult.structuredContent).toMatchObject({ path: join(home, 'reports'), deleted: true, directories: 1, files: 0 });
    const msg = await answered;
    expect(msg.payload).toMatch(/^model read: .*"deleted":true/);
    expect(existsSync(join(home, 'reports'))).toBe(false);
    expect(existsSync(join(home, 'todo.txt'))).toBe(true);
  });

  it('rows without an LLM: device info and a search of the first allowed folder', async () => {
    const info = next('tm-desk-info-out');
    await helper.request().post('/inject/tm-desk-info-btn').expect(200);
    const i = await info;
    expect(i.toolResult.isError).toBe(false);
    expect(i.payload).toMatchObject({ hostname: hostname(), storage: [{ path: home }] });
    const search = next('tm-desk-search-out');
    await helper.request().post('/inject/tm-desk-search-btn').expect(200);
    const s = await search;
    expect(s.payload).toMatchObject({ root: home, truncated: false });
    expect(s.payload.matches.map((m: any) => m.relativePath)).toEqual(['todo.txt']);
  });
});
