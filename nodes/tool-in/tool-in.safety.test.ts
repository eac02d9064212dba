// The safety promise for tools made in a flow (issue: a high-risk tool-in ran for any caller):
// a tool-in is served by the protocol's own authorization (RpcServer's required `authorization`),
// so a raw MQTT client without a token gets APPROVAL_REQUIRED, a dry run of a tool-in that does
// not take dry runs gets NOT_SUPPORTED, and neither reaches the flow; a confirm-gate deployed in
// the same Node-RED approves a call through remote-tool and the flow runs exactly once; a replay,
// a token of an unknown key and a caller outside the tool's *Callers* are refused; used tokens are
// kept in the user directory; a removed tool-in decommissions its agent.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, generateApprovalKeys, signApproval, toolErrorOf } from '../../protocol';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import remoteToolNode from '../remote-tool/remote-tool';
import confirmGateNode from '../confirm-gate/confirm-gate';
import gateCatalog from '../confirm-gate/locales/en-US/confirm-gate.json';
import toolInNode from './tool-in';
import toolOutNode from '../tool-out/tool-out';
import toolInCatalog from './locales/en-US/tool-in.json';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { coreNode, helper } from '../../test/support/node-red';

const KID = 'gate-here';
const gateKeys = generateApprovalKeys();
const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-tool-in-safety-'));
const nodes = [registryNode, remoteToolNode, withCatalog(confirmGateNode, gateCatalog), withCatalog(toolInNode, toolInCatalog), toolOutNode, coreNode('function/15-change.js')];

/**
 * Registry `reg` (embedded broker, caller `flowreg`); tool-in `wipe` (high risk, agent `flows`) →
 * change (payload {wiped:true}) → helper `ran` and tool-out; tool-in `only` (low risk, callers
 * `trusted-*`) → tool-out; confirm-gate `gate` (its outputs → remote-tool `rt` → helper `rtout`,
 * helper `req`, helper `denied`).
 */
function flow(extra: { gate?: boolean } = {}): object[] {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, callerId: 'flowreg', policy: '*/*' },
    { id: 'tin_wipe', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 100, registry: 'reg', agent: 'flows', tool: 'wipe', description: 'Wipes the disk.', risk: 'high', wires: [['chg']] },
    { id: 'chg', type: 'change', z: 'f1', x: 100, y: 100, wires: [['tout', 'ran']], rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"wiped":true}', tot: 'json' }] },
    { id: 'tin_only', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 100, registry: 'reg', agent: 'flows', tool: 'only', description: 'For trusted callers.', risk: 'low', callers: 'trusted-*, flowreg', wires: [['tout']] },
    { id: 'tout', type: 'toolmesh-tool-out', z: 'f1', x: 100, y: 100, wires: [] },
    { id: 'ran', type: 'helper', z: 'f1' },
    ...(extra.gate === false ? [] : [
      { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', x: 100, y: 100, name: 'gate', registry: 'reg', kid: KID, wires: [['rt'], ['req'], ['denied']] },
      { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', x: 100, y: 100, name: 'rt', registry: 'reg', wires: [['rtout']] },
      { id: 'rtout', type: 'helper', z: 'f1' },
      { id: 'req', type: 'helper', z: 'f1' },
      { id: 'denied', type: 'helper', z: 'f1' },
    ]),
  ];
}

let port = 0;
const ran: unknown[] = [];
const callers: RpcCaller[] = [];

async function load(extra: { gate?: boolean } = {}): Promise<void> {
  await helper.load(nodes, flow(extra), extra.gate === false ? {} : { gate: { signingKey: gateKeys.privateKeyPem } });
  helper.getNode('ran').on('input', (m: unknown) => ran.push(m));
  const reg = helper.getNode('reg') as ToolRegistryNode;
  port = await until(() => reg.brokerPort, 'the embedded broker');
  await until(() => reg.listAgents().find((a) => a.id === 'flows' && a.ready), 'the flow agent');
}

/** A protocol caller named `callerId` on the registry's broker. */
async function callerNamed(callerId: string): Promise<RpcCaller> {
  const c = new RpcCaller({ connection: { url: `mqtt://127.0.0.1:${port}` }, callerId });
  callers.push(c);
  await c.start();
  await until(() => c.agent('flows')?.ready, 'agent flows');
  return c;
}

/** Resolves with the next message helper `id` receives. */
function next(id: string, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

const token = (over: Partial<Parameters<typeof signApproval>[0]> = {}) => signApproval({
  kid: KID, privateKey: gateKeys.privateKeyPem, caller: 'raw', agent: 'flows', tool: 'wipe', args: {}, exp: Date.now() + 60_000, approver: 'test', ...over,
});

beforeAll(async () => {
  helper.settings({ userDir });
  await new Promise<void>((resolve) => helper.startServer(resolve));
});
afterAll(async () => {
  await new Promise<void>((resolve) => helper.stopServer(resolve));
  helper.settings({});
});
afterEach(async () => {
  await Promise.all(callers.splice(0).map((c) => c.stop()));
  await helper.unload();
  ran.length = 0;
});

describe('tool-in: the protocol authorization guards flow tools', () => {
  it('a raw MQTT client without a token, or with a dry run, or with a token of an unknown key, runs nothing', async () => {
    await load();
    const raw = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'raw-attacker' });
    const answers: Array<{ id: string; result: any }> = [];
    await raw.subscribeAsync('toolmesh/v1/agents/flows/rpc/raw/res', { qos: 1 });
    raw.on('message', (_t, p) => answers.push(JSON.parse(p.toString())));
    const send = (id: string, meta: Record<string, unknown> = {}) => raw.publishAsync('toolmesh/v1/agents/flows/rpc/raw/req',
      JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'wipe', arguments: {}, _meta: meta } }), { qos: 1 });
    await send('plain');
    await send('dry', { dryRun: true });
    await send('forged', { approval: token({ kid: KID, privateKey: generateApprovalKeys().privateKeyPem }) });
    await send('stranger-kid', { approval: token({ kid: 'somebody-else', privateKey: generateApprovalKeys().privateKeyPem }) });
    await until(() => answers.length >= 4, 'four answers');
    await raw.endAsync();
    const code = (id: string) => answers.find((a) => a.id === id)!.result.structuredContent.error;
    expect(code('plain')).toMatchObject({ code: 'APPROVAL_REQUIRED', details: { refusal: 'approval-required' } });
    expect(code('dry').code).toBe('NOT_SUPPORTED');
    expect(code('forged')).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'bad-signature' } });
    expect(code('stranger-kid')).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'unknown-key' } });
    expect(ran).toEqual([]);
  });

  it('runs once on a token the gate deployed here signs; the replay is refused and the token is kept in the user directory', async () => {
    await load();
    const c = await callerNamed('raw');
    const t = token({ jti: 'jti-once-1' });
    const first = await c.call('flows', 'wipe', {}, { approval: t });
    expect(first.isError).toBe(false);
    expect(first.structuredContent).toEqual({ wiped: true });
    const again = await c.call('flows', 'wipe', {}, { approval: t });
    expect(toolErrorOf(again)).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
    expect(ran).toHaveLength(1);
    const used = join(userDir, 'toolmesh-approvals', 'flows.used.jsonl');
    expect(existsSync(used)).toBe(true);
    expect(readFileSync(used, 'utf8')).toContain('"jti-once-1"');
  });

  it('confirm-gate → remote-tool in the same Node-RED: held, approved by id, the flow runs once', async () => {
    await load();
    const req = next('req');
    helper.getNode('gate').receive({ toolCall: { id: 'tc-1', agent: 'flows', tool: 'wipe', arguments: {}, risk: 'high' } });
    const held = await req;
    expect(ran).toEqual([]);
    const out = next('rtout');
    helper.getNode('gate').receive({ approval: { id: held.payload.approvalId, approve: true, approver: 'alice' } });
    const msg = await out;
    expect(msg.toolResult).toMatchObject({ isError: false, structuredContent: { wiped: true } });
    expect(ran).toHaveLength(1);
    // the same approved message sent again is refused by the flow agent
    const replay = next('rtout');
    helper.getNode('rt').receive({ toolCall: { ...msg.toolCall, id: 'tc-replay' } });
    expect((await replay).toolResult.structuredContent.error).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
    expect(ran).toHaveLength(1);
  });

  it('without a gate deployed, the gate\'s token is no longer trusted', async () => {
    await load({ gate: false });
    const c = await callerNamed('raw');
    expect(toolErrorOf(await c.call('flows', 'wipe', {}, { approval: token({ jti: 'jti-nogate' }) }))).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'unknown-key' } });
    expect(ran).toEqual([]);
  });

  it('callers: a caller outside the tool\'s list is refused and does not see it in tools/list', async () => {
    await load();
    const stranger = await callerNamed('stranger');
    const trusted = await callerNamed('trusted-1');
    expect(toolErrorOf(await stranger.call('flows', 'only', {}))).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'caller-not-allowed' } });
    const listed = (await stranger.request('flows', 'tools/list')) as { tools: Array<{ name: string }> };
    expect(listed.tools.map((t) => t.name)).toEqual(['wipe']);
    const own = (await trusted.request('flows', 'tools/list')) as { tools: Array<{ name: string }> };
    expect(own.tools.map((t) => t.name).sort()).toEqual(['only', 'wipe']);
  });

  it('a removed tool-in decommissions its agent: empty retained status and catalog', async () => {
    await load({ gate: false });
    const url = `mqtt://127.0.0.1:${port}`;
    // remove every tool-in of the agent with a "modified nodes" style stop: close with removed = true
    await Promise.all(['tin_wipe', 'tin_only'].map((id) => new Promise<void>((resolve) => {
      (helper.getNode(id) as unknown as { close(removed: boolean): Promise<void> }).close(true).then(() => resolve());
    })));
    const sub = await mqtt.connectAsync(url);
    const retained = new Map<string, string>();
    sub.on('message', (topic, p, packet) => { if (packet.retain) retained.set(topic, p.toString()); });
    await sub.subscribeAsync('toolmesh/v1/agents/flows/#', { qos: 1 });
    await new Promise((r) => setTimeout(r, 300));
    await sub.endAsync();
    // an empty retained message clears the topic: nothing retained is left for the agent
    expect([...retained.keys()]).toEqual([]);
  });
});
