// End to end with the robot example as a user imports it (flows/robot.json), in a real Node-RED
// (test helper) with a real robot agent started from configs/robot.yaml (pointed at the flow's
// embedded broker, trusting the gate's public key) and the scripted OpenAI-compatible model:
// - "what do you see?": the model asks for robot_take_photo, the llm-agent runs it itself (low
//   risk), the next model request carries the photo as an image_url (vision on), the answer
//   reaches the "answer" debug node;
// - "drive forward a bit": robot_drive (medium) leaves the llm-agent for the confirm-gate, which
//   holds it; approved with an input message (msg.approval), it runs on the agent with the gate's
//   signed token and the motors drive; the flow's STOP row stops them. Denied, nothing moves;
// - the rows without an LLM: photo and status.
// GStreamer (gst-launch-1.0, Debian gstreamer1.0-tools) is required in CI; elsewhere the photo
// parts skip saying why.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys, RpcCaller, toolErrorOf, type CallEvent } from '../protocol';
import { loadConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import auditLogNode from '../nodes/audit-log/audit-log';
import confirmGateNode from '../nodes/confirm-gate/confirm-gate';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { systemBinary } from './support/mosquitto';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

const GST = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools');
const ROOT = join(__dirname, '..');
const flow = JSON.parse(readFileSync(join(ROOT, 'flows/robot.json'), 'utf8')) as Array<Record<string, any>>;
const GATE = 'tm-robot-gate';
const gateDef = flow.find((n) => n.id === GATE)!;
const keys = generateApprovalKeys();
const credentials = { [GATE]: { signingKey: keys.privateKeyPem } };

const SEE = flow.find((n) => n.id === 'tm-robot-ask-see')!.payload as string;
const DRIVE = flow.find((n) => n.id === 'tm-robot-ask-drive')!.payload as string;
/** The drive the scripted model asks for; the test config allows 60 s so "driving" can be checked without racing the stop. */
const DRIVE_ARGS = { direction: 'forward', speed: 0.2, durationMs: 60_000 };

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

/** True for a complete JPEG: SOI marker first, EOI marker last. */
function isJpeg(buf: Buffer): boolean {
  return buf.length > 4 && buf.subarray(0, 2).toString('hex') === 'ffd8' && buf.subarray(-2).toString('hex') === 'ffd9';
}

/** The scripted model: a prompt gets its tool call; anything after tool results gets an answer quoting them. */
function model(body: any) {
  const last = body.messages.at(-1);
  const fn = (tool: string) => (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith(`__${tool}`));
  if (last.role === 'user' && last.content === SEE) return { toolCalls: [{ name: fn('robot_take_photo'), arguments: {} }] };
  if (last.role === 'user' && last.content === DRIVE) return { toolCalls: [{ name: fn('robot_drive'), arguments: DRIVE_ARGS }] };
  const results = body.messages.filter((m: any) => m.role === 'tool').map((m: any) => m.content);
  return { content: `model read: ${results.at(-1)}` };
}

describe('robot example: photo with vision, drive with approval', () => {
  let llm: FakeLlm;
  let agent: RunningAgent;
  let observer: RpcCaller;
  let reg: ToolRegistryNode;
  const calls: CallEvent[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-robot-flow-'));
  const status = async () => (await observer.call('robot', 'robot_get_status', {})).structuredContent as any;

  beforeAll(async () => {
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm(model);
    const patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-vision' }
      : n.type === 'toolmesh-audit-log' ? { ...n, file: join(dir, 'flow-audit.jsonl') } : n));
    await helper.load([registryNode, remoteToolNode, llmAgentNode, confirmGateNode, auditLogNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'), coreNode('function/15-change.js'), coreNode('function/10-switch.js')], patched, credentials);
    reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const port = await until(() => reg.brokerPort, 'the embedded broker');

    // configs/robot.yaml as shipped, with the test broker, the gate's public key and a longer drive cap
    const cfg = parseYaml(readFileSync(join(ROOT, 'configs/robot.yaml'), 'utf8'));
    expect(cfg.policy.approvalRequiredFrom).toBe('medium');
    cfg.broker.url = `mqtt://127.0.0.1:${port}`;
    cfg.approvals.keys = { [gateDef.kid]: keys.publicKeyPem };
    cfg.packs.robot.motors.maxDurationMs = DRIVE_ARGS.durationMs;
    writeFileSync(join(dir, 'robot.yaml'), toYaml(cfg));
    agent = await startAgent(loadConfig(join(dir, 'robot.yaml')), { info() {}, warn() {}, error() {} });
    agent.server.on('call', (e: CallEvent) => calls.push(e));
    observer = new RpcCaller({ connection: { url: `mqtt://127.0.0.1:${port}` }, callerId: 'robot-flow-observer' });
    await observer.start();
    await until(() => observer.agent('robot')?.ready && reg.listTools().filter((t) => t.agentId === 'robot').length === 5, 'the robot\'s tools in the registry');
  });

  afterAll(async () => {
    await observer?.stop();
    await agent?.stop();
    await helper.unload();
    await llm?.close();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it.skipIf(GST === null)('"what do you see?": the model gets the photo as an image and answers', async () => {
    const answered = next('tm-robot-answer');
    const seen = llm.requests.length;
    await helper.request().post('/inject/tm-robot-ask-see').expect(200);
    const msg = await answered;
    const [ask, after] = llm.requests.slice(seen).map((r) => r.body);
    expect(ask.tools.map((t: any) => t.function.name)).toContain('robot__robot_take_photo');
    const parts = after.messages.flatMap((m: any) => (m.role === 'user' && Array.isArray(m.content) ? m.content : []));
    const urls = parts.filter((p: any) => p.type === 'image_url').map((p: any) => p.image_url.url as string);
    expect(urls).toHaveLength(1);
    expect(urls[0]).toMatch(/^data:image\/jpeg;base64,/);
    const jpeg = Buffer.from(urls[0].slice('data:image/jpeg;base64,'.length), 'base64');
    expect(isJpeg(jpeg)).toBe(true);
    expect(jpeg.length).toBeLessThanOrEqual(1024 * 1024);
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool, c.ok])).toEqual([['robot', 'robot_take_photo', true]]);
    expect(msg.payload).toMatch(/^model read: Photo from videotestsrc pattern=ball \(simulated camera\): 640x480 JPEG, \d+ bytes, taken .*\(1 image attached below\)$/s);
  });

  it('the agent refuses a drive without the gate\'s approval', async () => {
    const r = await observer.call('robot', 'robot_drive', DRIVE_ARGS);
    expect(toolErrorOf(r)).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect((await status()).motors.state).toBe('stopped');
  });

  it('"drive forward a bit": held by the gate, approved, driven on the agent; the STOP row stops it', async () => {
    const requests = next('tm-robot-requests');
    await helper.request().post('/inject/tm-robot-ask-drive').expect(200);
    const req = await requests;
    expect(req.payload).toMatchObject({ agent: 'robot', tool: 'robot_drive', risk: 'medium', arguments: DRIVE_ARGS });
    expect((await status()).motors.state, 'held: nothing moves yet').toBe('stopped');

    const ran = next('tm-robot-results');
    const answered = next('tm-robot-answer');
    helper.getNode(GATE).receive({ approval: { id: req.payload.approvalId, approve: true, approver: 'robot-tester' } });
    const result = await ran;
    expect(result.toolResult.isError).toBe(false);
    expect(result.payload).toMatchObject({ driving: true, direction: 'forward', speed: 0.2, durationMs: 60_000 });
    expect((await status()).motors).toMatchObject({ state: 'driving', direction: 'forward', speed: 0.2, startedBy: reg.callerId });
    const drive = calls.find((c) => c.tool === 'robot_drive' && !c.code)!;
    expect(drive.approval).toMatchObject({ approver: 'robot-tester', kid: 'gate-robot' });
    expect((await answered).payload).toMatch(/^model read: \{"driving":true,"direction":"forward"/);
    // the flow's audit-log nodes recorded the loop, and toolmesh audit verify passes on their file
    const audit = readFileSync(join(dir, 'flow-audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(audit.slice(-5).map((r) => [r.kind, r.tool])).toEqual([['prompt', undefined], ['tool-call', 'robot_drive'], ['approval', 'robot_drive'], ['tool-result', 'robot_drive'], ['answer', undefined]]);
    expect(audit.at(-3).approval).toMatchObject({ approver: 'robot-tester', kid: 'gate-robot' });
    const verify = spawnSync(process.execPath, [join(ROOT, 'packages/agent/dist/agent/toolmesh.js'), 'audit', 'verify', join(dir, 'flow-audit.jsonl')], { encoding: 'utf8' });
    expect(verify.status, verify.stdout + verify.stderr).toBe(0);

    const stopped = next('tm-robot-stop-out');
    await helper.request().post('/inject/tm-robot-stop-btn').expect(200);
    expect((await stopped).payload).toMatchObject({ stopped: true, wasDriving: true });
    expect((await status()).motors).toMatchObject({ state: 'stopped', lastStop: { reason: 'stop-requested' } });
  });

  it('denied with the "deny the request shown" button: the model reads DENIED and nothing moves', async () => {
    const requests = next('tm-robot-requests');
    const denied = next('tm-robot-denied');
    const answered = next('tm-robot-answer');
    const drivesBefore = calls.filter((c) => c.tool === 'robot_drive').length;
    await helper.request().post('/inject/tm-robot-ask-drive').expect(200);
    await requests;
    await helper.request().post('/inject/tm-robot-deny').expect(200);
    expect((await denied).toolResult.structuredContent.error.code).toBe('DENIED');
    const msg = await answered;
    expect(msg.toolCalls.find((c: any) => c.tool === 'robot_drive')).toMatchObject({ ok: false, code: 'DENIED' });
    expect(calls.filter((c) => c.tool === 'robot_drive')).toHaveLength(drivesBefore);
    expect((await status()).motors.state).toBe('stopped');
  });

  it.skipIf(GST === null)('the rows without an LLM: a photo as image content, and the status', async () => {
    const photo = next('tm-robot-photo-out');
    await helper.request().post('/inject/tm-robot-photo-btn').expect(200);
    const msg = await photo;
    expect(msg.payload).toMatchObject({ mimeType: 'image/jpeg', width: 640, height: 480 });
    const image = msg.toolResult.content.find((c: any) => c.type === 'image');
    expect(isJpeg(Buffer.from(image.data, 'base64'))).toBe(true);

    const st = next('tm-robot-status-out');
    await helper.request().post('/inject/tm-robot-status-btn').expect(200);
    expect((await st).payload).toMatchObject({ backend: 'simulated', motors: { state: 'stopped' }, camera: { available: true }, battery: { simulated: true } });
  });
});
