// confirm-gate in Node-RED (node-red-node-test-helper) against a real broker and an RpcServer
// agent whose real authorization requires a valid approval token for high-risk tools: what passes,
// what is held, decisions by message, HTTP and MQTT, timeouts, repeated decisions, redeploys,
// a misconfigured gate, the key endpoints, and remote-tool carrying the token to the agent.
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  RpcServer, defineTool, generateApprovalKeys, publicKeyOf, verifyApproval, type CallEvent,
} from '../../protocol';
import { trustingAuthorization, verdictOf } from '../../test/support/approvals';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import remoteToolNode from '../remote-tool/remote-tool';
import confirmGateNode from './confirm-gate';
import catalog from './locales/en-US/confirm-gate.json';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { hostilePayloads, publishAll, trapFirstRead, watchProcessFaults } from '../../test/support/nodes-faults';

const KID = 'gate-test';
const CALLER = 'gate-caller';
const keys = generateApprovalKeys();
const trusted = new Map([[KID, keys.publicKeyPem]]);

/** What the agent's real authorization said of each call (its `call` event). */
const seen: Array<{ tool: string; dryRun?: boolean; verdict: string }> = [];
const runs: string[] = [];

const tools = [
  defineTool({ name: 'status', description: 'Reads the status.', risk: 'low', input: z.strictObject({}), execute: () => ({ ok: true }) }),
  defineTool({
    name: 'docker_restart_container', description: 'Restarts a container.', risk: 'high', supportsDryRun: true,
    input: z.strictObject({ container: z.string() }),
    execute: (a, ctx) => {
      if (!ctx.dryRun) runs.push(a.container);
      return { container: a.container, restarted: !ctx.dryRun, dryRun: ctx.dryRun };
    },
  }),
];

const gateWithCatalog = withCatalog(confirmGateNode, catalog);

let broker: EmbeddedBroker;
let agent: RpcServer;

/** Resolves with the next message helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** Collects everything helper node `id` receives. */
function collect(id: string): any[] {
  const got: any[] = [];
  helper.getNode(id).on('input', (m: unknown) => got.push(m));
  return got;
}

/** Texts the node with id `id` passed to `method` (the helper spies on log, warn, status ...). */
function calls(id: string, method: 'warn' | 'log' | 'status'): unknown[] {
  const spy = helper.getNode(id)[method];
  return spy.getCalls().filter((c: any) => c.thisValue?.id === id).map((c: any) => c.args[0]);
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
/** A tool call as llm-agent emits it. */
function toolCall(tool: string, args: Record<string, unknown>, risk: string, extra: Record<string, unknown> = {}) {
  return { id: `tc-${++seq}`, name: `pi__${tool}`, agent: 'pi', tool, arguments: args, risk, modelCallId: `call_${seq}`, timeoutMs: 120_000, ...extra };
}
const restart = (container = 'homeassistant', extra: Record<string, unknown> = {}) => toolCall('docker_restart_container', { container }, 'high', extra);

/**
 * Loads registry → confirm-gate `gate` (outputs → helpers `run`, `req`, `denied`; with `remote`,
 * output 1 also → remote-tool `rt` → helper `rtout`) and a catch node → helper `caught`.
 */
async function load(gate: Record<string, unknown> = {}, opts: { remote?: boolean; signingKey?: string | null } = {}): Promise<ToolRegistryNode> {
  const flow = [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: CALLER, policy: '*/*' },
    { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', name: 'gate', registry: 'reg', kid: KID, x: 100, y: 100, ...gate, wires: [opts.remote ? ['run', 'rt'] : ['run'], ['req'], ['denied']] },
    { id: 'run', type: 'helper', z: 'f1', x: 300, y: 60 },
    { id: 'req', type: 'helper', z: 'f1', x: 300, y: 100 },
    { id: 'denied', type: 'helper', z: 'f1', x: 300, y: 140 },
    { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', name: 'rt', registry: 'reg', x: 300, y: 200, wires: [['rtout']] },
    { id: 'rtout', type: 'helper', z: 'f1', x: 500, y: 200 },
    { id: 'c1', type: 'catch', z: 'f1', name: 'errors', scope: null, uncaught: false, x: 100, y: 300, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1', x: 300, y: 300 },
  ];
  const signingKey = opts.signingKey === undefined ? keys.privateKeyPem : opts.signingKey;
  await helper.load([registryNode, remoteToolNode, gateWithCatalog], flow, signingKey === null ? {} : { gate: { signingKey } });
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.listAgents().find((a) => a.id === 'pi' && a.ready), 'agent pi in the registry');
  return reg;
}

/** Sends a call into the gate and resolves with its approval request (output 2). */
async function hold(call: Record<string, unknown>): Promise<any> {
  const req = next('req');
  helper.getNode('gate').receive({ topic: call.name, payload: call.arguments, toolCall: call });
  return req;
}

beforeAll(async () => {
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0 });
  agent = new RpcServer({ authorization: await trustingAuthorization(trusted), connection: { url: broker.url }, agentId: 'pi', tools });
  agent.on('call', (e: CallEvent) => seen.push({ tool: e.tool, ...(e.dryRun ? { dryRun: true } : {}), verdict: verdictOf(e) }));
  await agent.start();
});
afterAll(async () => {
  await agent.stop();
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
});
afterEach(async () => {
  await helper.unload();
  seen.length = 0;
  runs.length = 0;
});

describe('confirm-gate: what passes and what is held', () => {
  it('lets a low-risk call pass on output 1 untouched', async () => {
    await load();
    const requests = collect('req');
    const run = next('run');
    const call = toolCall('status', {}, 'low');
    helper.getNode('gate').receive({ topic: call.name, payload: {}, toolCall: structuredClone(call) });
    const msg = await run;
    expect(msg.toolCall).toEqual(call);
    expect(msg.payload).toEqual({});
    expect(msg.approvalId).toBeUndefined();
    expect(requests).toEqual([]);
  });

  it('holds a high-risk call and asks with a readable summary on output 2', async () => {
    await load();
    const ran = collect('run');
    const call = restart();
    const before = Date.now();
    const req = await hold(call);
    expect(req.topic).toBe('approval-request');
    expect(req.toolCall).toBeUndefined();
    expect(req.payload).toEqual({
      approvalId: expect.any(String), summary: 'Restart container homeassistant on pi', agent: 'pi', tool: 'docker_restart_container',
      arguments: { container: 'homeassistant' }, risk: 'high', callId: call.id, requestedAt: expect.any(Number), expiresAt: expect.any(Number),
    });
    expect(req.payload.expiresAt - req.payload.requestedAt).toBe(120_000);
    expect(req.payload.requestedAt).toBeGreaterThanOrEqual(before);
    await until(() => calls('gate', 'status').some((s: any) => s.text === '1 waiting for approval'), 'the waiting status');
    expect(ran).toEqual([]);
  });

  it('takes the higher of msg.toolCall.risk and the catalog, so a flow cannot lower it', async () => {
    await load();
    const req = await hold(toolCall('docker_restart_container', { container: 'db' }, 'low'));
    expect(req.payload.risk).toBe('high');
  });

  it('applies the always-hold and never-hold patterns', async () => {
    await load({ alwaysHold: 'pi/status', neverHold: '*/docker_*' });
    const req = await hold(toolCall('status', {}, 'low'));
    expect(req.payload.summary).toBe('Run status on pi');
    const run = next('run');
    helper.getNode('gate').receive({ toolCall: restart() });
    expect((await run).toolCall.approval).toBeUndefined();
  });

  it('a message without msg.toolCall fails to the Catch node', async () => {
    await load();
    const caught = next('caught');
    helper.getNode('gate').receive({ payload: 'hello' });
    const msg = await caught;
    expect(msg.error.message).toMatch(/^(Error: )?confirm-gate needs msg.toolCall/);
    expect(msg.error.source.id).toBe('gate');
  });

  it('a msg.toolCall that breaks the contract fails to the Catch node naming the field, and nothing leaves', async () => {
    await load();
    const run = collect('run');
    const caught = next('caught');
    helper.getNode('gate').receive({ toolCall: { id: 'x', agent: 'pi', tool: 'docker_restart', arguments: {}, risk: 'harmless' } });
    const msg = await caught;
    expect(msg.error.message).toMatch(/^(Error: )?msg\.toolCall\.risk must be low, medium, high or critical, got "harmless"/);
    expect(run).toEqual([]);
  });
});

describe('confirm-gate: approving', () => {
  it('signs a token bound to the registry caller, agent, tool and arguments (msg.approval)', async () => {
    await load({ validity: 30_000 });
    const call = restart();
    const req = await hold(call);
    const run = next('run');
    helper.getNode('gate').receive({ approval: { id: req.payload.approvalId, approve: true, approver: 'alice' } });
    const msg = await run;
    expect(msg.toolCall).toMatchObject({ id: call.id, agent: 'pi', tool: 'docker_restart_container', arguments: { container: 'homeassistant' } });
    expect(msg.approvalId).toBe(req.payload.approvalId);
    const token = msg.toolCall.approval;
    const expect0 = { caller: CALLER, agent: 'pi', tool: 'docker_restart_container', keys: trusted, skewMs: 0 };
    const v = verifyApproval(token, { ...expect0, args: { container: 'homeassistant' } });
    expect(v.ok).toBe(true);
    expect(v.payload).toMatchObject({ kid: KID, caller: CALLER, approver: 'alice' });
    expect(v.payload!.exp - Date.now()).toBeGreaterThan(25_000);
    expect(v.payload!.exp - Date.now()).toBeLessThanOrEqual(30_000);
    // bound to this call only
    expect(verifyApproval(token, { ...expect0, args: { container: 'mosquitto' } })).toMatchObject({ ok: false, refusal: 'arguments-changed' });
    expect(verifyApproval(token, { ...expect0, caller: 'someone-else', args: { container: 'homeassistant' } })).toMatchObject({ ok: false, refusal: 'wrong-caller' });
    await until(() => calls('gate', 'status').some((s: any) => s.text === 'approved by alice'), 'the approved status');
  });

  it('takes dashboard-style decisions: msg.topic approve with the id; without one only while exactly one call waits', async () => {
    await load();
    const first = await hold(restart('one'));
    const second = await hold(restart('two'));
    const ids = [first.payload.approvalId, second.payload.approvalId];
    const ran = collect('run');
    const denied = collect('denied');
    // two wait: a button without an id is refused (to Catch, naming both), and both still wait
    const caught = next('caught');
    helper.getNode('gate').receive({ topic: 'approve', payload: '' });
    const err = (await caught).error;
    expect(err.message.replace(/^Error: /, '')).toBe(`2 calls wait for approval (${ids.join(', ')}): a message decision without an approval id is refused, since it could settle a call nobody looked at; name the approval id`);
    expect(err.source.id).toBe('gate');
    await pause(50);
    expect(ran).toEqual([]);
    expect(denied).toEqual([]);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body.map((r: any) => r.approvalId)).toEqual(ids);

    let run = next('run');
    helper.getNode('gate').receive({ topic: 'approve', payload: second.payload.approvalId, approver: 'bob' });
    expect((await run).toolCall.arguments).toEqual({ container: 'two' });
    // now one call of this flow waits: a button without an id settles it
    run = next('run');
    helper.getNode('gate').receive({ topic: 'approve', payload: '' });
    const msg = await run;
    expect(msg.approvalId).toBe(first.payload.approvalId);
    expect(verifyApproval(msg.toolCall.approval, { caller: CALLER, agent: 'pi', tool: 'docker_restart_container', args: { container: 'one' }, keys: trusted, skewMs: 0 })).toMatchObject({ ok: true, payload: { approver: 'flow' } });
  });

  it('HTTP without an id (POST .../approvals): settles the one waiting call; refused (409, naming both ids) while two wait; 404 when none waits', async () => {
    await load();
    const first = await hold(restart('one'));
    const second = await hold(restart('two'));
    const ids = [first.payload.approvalId, second.payload.approvalId];
    const ran = collect('run');
    const refused = await helper.request().post('/toolmesh/confirm-gate/gate/approvals').send({ approve: true, approver: 'alice' }).expect(409);
    expect(refused.body).toEqual({
      error: `2 calls wait for approval (${ids.join(', ')}): a HTTP decision without an approval id is refused, since it could settle a call nobody looked at; name the approval id`,
      pending: ids,
    });
    await pause(50);
    expect(ran).toEqual([]);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body.map((r: any) => r.approvalId)).toEqual(ids);

    const denied = next('denied');
    await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${ids[0]}`).send({ approve: false, approver: 'bob' }).expect(200);
    await denied;
    const run = next('run');
    const res = await helper.request().post('/toolmesh/confirm-gate/gate/approvals').send({ approve: true, approver: 'alice' }).expect(200);
    expect(res.body).toEqual({ approvalId: ids[1], approved: true, approver: 'alice' });
    expect((await run).approvalId).toBe(ids[1]);
    const none = await helper.request().post('/toolmesh/confirm-gate/gate/approvals').send({ approve: true }).expect(404);
    expect(none.body.error).toBe('no call waits for approval; the HTTP decision is ignored');
    await helper.request().post('/toolmesh/confirm-gate/gate/approvals').send({ approve: 'maybe' }).expect(400);
  });

  it('holds at most "Hold at most" calls: one more is denied at once on output 3 and to Catch, with no request and nothing kept', async () => {
    await load({ maxPending: 2 });
    const reqs = collect('req');
    await hold(restart('one'));
    await hold(restart('two'));
    const denied = next('denied');
    const caught = next('caught');
    const call = restart('three');
    helper.getNode('gate').receive({ toolCall: call });
    const msg = await denied;
    const message = 'the confirm-gate holds 2 calls waiting for approval already, the most it may (Hold at most); this call (Restart container three on pi) was not held and not run';
    expect(msg.toolResult).toEqual({
      id: call.id, content: [{ type: 'text', text: `DENIED: ${message}` }],
      structuredContent: { error: { code: 'DENIED', message, details: { cause: 'full', max: 2 } } }, isError: true,
    });
    expect((await caught).error.message.replace(/^Error: /, '')).toBe(message);
    await pause(50);
    expect(reqs).toHaveLength(2);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body).toHaveLength(2);
    expect(calls('gate', 'status').at(-1)).toMatchObject({ text: '2 waiting for approval' });
  });

  it('ignores a second decision on the same approval, with a warning', async () => {
    await load();
    const req = await hold(restart());
    const ran = collect('run');
    const denied = collect('denied');
    const id = req.payload.approvalId;
    helper.getNode('gate').receive({ approval: { id, approve: true, approver: 'alice' } });
    helper.getNode('gate').receive({ approval: { id, approve: false, approver: 'mallory' } });
    helper.getNode('gate').receive({ approval: { id, approve: true, approver: 'mallory' } });
    await until(() => calls('gate', 'warn').length >= 2, 'two warnings');
    await pause(50);
    expect(ran).toHaveLength(1);
    expect(denied).toEqual([]);
    expect(calls('gate', 'warn')).toEqual([
      `approval ${id} was already settled (approved); the message decision is ignored`,
      `approval ${id} was already settled (approved); the message decision is ignored`,
    ]);
  });
});

describe('confirm-gate: denying', () => {
  it('HTTP: lists pending approvals, denies one (output 3 DENIED result), answers 409 to a repeat and 404 to unknown ids', async () => {
    await load();
    const call = restart();
    const req = await hold(call);
    const id = req.payload.approvalId;
    const list = await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200);
    expect(list.body).toEqual([req.payload]);

    const denied = next('denied');
    const res = await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${id}`).send({ approve: false, approver: 'bob', reason: 'not during the film' }).expect(200);
    expect(res.body).toEqual({ approvalId: id, approved: false, approver: 'bob' });
    const msg = await denied;
    const message = 'bob denied this call (Restart container homeassistant on pi): not during the film; it was not run';
    expect(msg.toolCall).toEqual(call);
    expect(msg.toolResult).toEqual({
      id: call.id, content: [{ type: 'text', text: `DENIED: ${message}` }],
      structuredContent: { error: { code: 'DENIED', message, details: { approvalId: id, cause: 'person', approver: 'bob', reason: 'not during the film' } } },
      isError: true,
    });
    expect(msg.payload).toEqual(msg.toolResult.structuredContent);

    const again = await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${id}`).send({ approve: true }).expect(409);
    expect(again.body).toMatchObject({ settled: 'denied' });
    expect(calls('gate', 'warn')).toContain(`approval ${id} was already settled (denied); the HTTP decision is ignored`);
    await helper.request().post('/toolmesh/confirm-gate/gate/approvals/nope').send({ approve: true }).expect(404);
    const bad = await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${id}`).send({ approve: 'maybe' }).expect(400);
    expect(bad.body.error).toBe('approve must be true or false, got "maybe"');
    await helper.request().get('/toolmesh/confirm-gate/not-a-gate/approvals').expect(404);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body).toEqual([]);
  });

  it('denies after the timeout, and never holds longer than msg.toolCall.timeoutMs', async () => {
    await load({ timeout: 150 });
    const denied = next('denied');
    const req = await hold(restart());
    const msg = await denied;
    expect(msg.toolResult.content[0].text).toBe('DENIED: nobody approved this call (Restart container homeassistant on pi) within 150 ms; it was not run');
    expect(msg.toolResult.structuredContent.error.details).toEqual({ approvalId: req.payload.approvalId, cause: 'timeout', reason: 'no decision within 150 ms' });
    expect(calls('gate', 'status').at(-1)).toMatchObject({ fill: 'red', text: 'denied: no decision in time' });

    await helper.unload();
    await load({ timeout: 60_000 });
    const capped = await hold(restart('db', { timeoutMs: 100 }));
    expect(capped.payload.expiresAt - capped.payload.requestedAt).toBe(100);
    expect((await next('denied')).toolResult.structuredContent.error.details.cause).toBe('timeout');
  });

  it('a redeploy denies every waiting call on output 3', async () => {
    await load();
    await hold(restart('one'));
    await hold(restart('two'));
    await until(() => calls('gate', 'status').some((s: any) => s.text === '2 waiting for approval'), 'two waiting');
    const denied = collect('denied');
    const flow = helper._redNodes.getFlows().flows.map((n: any) => (n.id === 'gate' ? { ...n, timeout: 90_000 } : n));
    await helper.setFlows(flow, 'nodes', { gate: { signingKey: keys.privateKeyPem } });
    await until(() => denied.length === 2, 'both denials');
    expect(denied.map((m) => m.toolCall.arguments.container)).toEqual(['one', 'two']);
    expect(denied[0].toolResult.content[0].text).toBe('DENIED: the confirm-gate was redeployed or stopped while this call (Restart container one on pi) waited for approval; it was not run');
    expect(denied[0].toolResult.structuredContent.error.details).toMatchObject({ cause: 'closed', reason: 'the gate was redeployed' });
  });

  it('without a signing key: denies held calls at once (and tells Catch), lets low-risk ones pass', async () => {
    await load({}, { signingKey: null });
    expect(calls('gate', 'status').at(-1)).toMatchObject({ fill: 'red', text: 'no signing key' });
    const denied = next('denied');
    const caught = next('caught');
    helper.getNode('gate').receive({ toolCall: restart() });
    const msg = await denied;
    expect(msg.toolResult.content[0].text).toMatch(/^DENIED: the confirm-gate cannot approve calls \(no signing key: open the node, generate a key pair/);
    expect((await caught).error.message).toMatch(/^(Error: )?no signing key: open the node/);
    const run = next('run');
    helper.getNode('gate').receive({ toolCall: toolCall('status', {}, 'low') });
    await run;
  });
});

describe('confirm-gate: keys', () => {
  it('GET .../public-key shows the deployed key with its fingerprint and the agent snippet (key files: keyfile.test.ts)', async () => {
    await load();
    const pub = await helper.request().get('/toolmesh/confirm-gate/gate/public-key').expect(200);
    expect(pub.body.fingerprint).toMatch(/^SHA256:/);
    expect(pub.body.agentConfig).toBe(`approvals:\n  keys:\n    ${KID}: |\n${keys.publicKeyPem.trim().split('\n').map((l: string) => `      ${l}`).join('\n')}\n`);
    expect(pub.body).toMatchObject({ kid: KID, publicKeyPem: keys.publicKeyPem });
    expect(pub.body.agentConfig).toContain(`    ${KID}: |\n      -----BEGIN PUBLIC KEY-----`);
  });

  it('reads a key pasted without line breaks', async () => {
    await load({}, { signingKey: keys.privateKeyPem.replace(/\n/g, '') });
    const pub = await helper.request().get('/toolmesh/confirm-gate/gate/public-key').expect(200);
    expect(pub.body.publicKeyPem).toBe(keys.publicKeyPem);
  });
});

describe('confirm-gate + remote-tool + agent', () => {
  it('the agent runs an approved call: remote-tool sends the token and dryRun in _meta', async () => {
    await load({}, { remote: true });
    const req = await hold(restart('homeassistant', { dryRun: true }));
    const out = next('rtout');
    helper.getNode('gate').receive({ approval: { id: req.payload.approvalId, approve: true, approver: 'alice' } });
    const msg = await out;
    expect(msg.toolResult).toMatchObject({ id: msg.toolCall.id, isError: false });
    expect(msg.payload).toEqual({ container: 'homeassistant', restarted: false, dryRun: true });
    // a dry run of a tool that supports one needs no approval: the token is neither checked nor used up
    expect(typeof msg.toolCall.approval).toBe('string');
    expect(seen).toEqual([{ tool: 'docker_restart_container', dryRun: true, verdict: 'open' }]);
    expect(runs).toEqual([]);
  });

  it('going around the gate does not work: the agent refuses the call without a token, and a replayed one', async () => {
    await load({}, { remote: true });
    const rt = helper.getNode('rt');
    let out = next('rtout');
    rt.receive({ toolCall: restart() });
    expect((await out).toolResult.structuredContent.error.code).toBe('APPROVAL_REQUIRED');

    const req = await hold(restart());
    out = next('rtout');
    helper.getNode('gate').receive({ approval: { id: req.payload.approvalId, approve: true, approver: 'alice' } });
    const approved = await out;
    expect(approved.payload).toEqual({ container: 'homeassistant', restarted: true, dryRun: false });
    // the same token on a second message is refused by the agent
    out = next('rtout');
    rt.receive({ toolCall: { ...approved.toolCall, id: 'tc-replay' } });
    expect((await out).toolResult.structuredContent.error).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
    expect(runs).toEqual(['homeassistant']);
    expect(seen.map((s) => s.verdict)).toEqual(['approval-required', 'approved', 'replayed']);
  });
});

describe('confirm-gate: approvals over MQTT', () => {
  const TOPIC = 'toolmesh/v1/approvals/gate1';

  async function publish(payload: string, retain = false): Promise<void> {
    const client = mqtt.connect(broker.url);
    await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
    await client.publishAsync(TOPIC, payload, { qos: 1, retain });
    await client.endAsync();
  }

  it('plain "approve" decides only the one waiting call (refused, naming both ids, while two wait); JSON names one; retained messages are ignored', async () => {
    await publish('approve', true);
    await load({ approvalTopic: TOPIC });
    await until(() => calls('gate', 'log').includes(`taking approvals from MQTT topic ${TOPIC}`), 'the MQTT subscription');
    await pause(100);
    // the retained "approve" was dropped unread (it would have warned that no call waits)
    expect(calls('gate', 'warn')).toEqual([]);
    const first = await hold(restart('one'));
    const second = await hold(restart('two'));
    const ran = collect('run');

    // a physical button with two calls waiting: one warning naming both, nothing settled
    await publish('approve');
    const refusal = `2 calls wait for approval (${first.payload.approvalId}, ${second.payload.approvalId}): a MQTT decision without an approval id is refused, since it could settle a call nobody looked at; name the approval id`;
    await until(() => calls('gate', 'warn').includes(refusal), 'the refusal warning');
    await pause(50);
    expect(ran).toEqual([]);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body).toHaveLength(2);

    const denied = next('denied');
    await publish(JSON.stringify({ id: second.payload.approvalId, approve: false, approver: 'carol', reason: 'later' }));
    expect((await denied).toolResult.structuredContent.error.details).toMatchObject({ approver: 'carol', reason: 'later' });

    // one waits now: the button decides it
    const run = next('run');
    await publish('approve');
    const msg = await run;
    expect(msg.approvalId).toBe(first.payload.approvalId);
    expect(verifyApproval(msg.toolCall.approval, { caller: CALLER, agent: 'pi', tool: 'docker_restart_container', args: { container: 'one' }, keys: trusted, skewMs: 0 }))
      .toMatchObject({ ok: true, payload: { approver: `mqtt:${TOPIC}` } });

    await publish('perhaps');
    await until(() => calls('gate', 'warn').some((w) => String(w).startsWith('the MQTT payload must be')), 'the warning');
    await publish('', true);
  });

  it('an exception while applying an MQTT decision reaches Catch nodes, never the MQTT client as an uncaught exception', async () => {
    // output 1 goes to two nodes (run, rt), so sending the approved call clones it, and the clone throws once
    await load({ approvalTopic: TOPIC }, { remote: true });
    await until(() => calls('gate', 'log').includes(`taking approvals from MQTT topic ${TOPIC}`), 'the MQTT subscription');
    const faults = watchProcessFaults();
    try {
      const call = restart('trapped');
      const req = next('req');
      const msg: Record<string, unknown> = { topic: call.name, payload: call.arguments, toolCall: call };
      trapFirstRead(msg);
      helper.getNode('gate').receive(msg);
      await req;
      const caught = next('caught');
      await publish('approve');
      expect((await caught).error.message).toContain('the trap property cannot be read');
      expect(faults.seen).toEqual([]);
      // the gate and its subscription still work
      const second = await hold(restart('after'));
      const run = next('run');
      await publish(JSON.stringify({ id: second.payload.approvalId, approve: true, approver: 'dave' }));
      expect((await run).approvalId).toBe(second.payload.approvalId);
      expect(faults.seen).toEqual([]);
    } finally {
      faults.stop();
    }
  });

  it('turns each hostile message on the approval topic into one warning and nothing else', async () => {
    await load({ approvalTopic: TOPIC });
    await until(() => calls('gate', 'log').includes(`taking approvals from MQTT topic ${TOPIC}`), 'the MQTT subscription');
    const held = await hold(restart('kept'));
    const outputs = [...collect('run'), ...collect('denied'), ...collect('caught')];
    const faults = watchProcessFaults();
    try {
      const hostile = [
        ...hostilePayloads((json) => `{"id":${json},"approve":true,"approver":"mallory"}`),
        { name: 'id of the held call, approve of the wrong type', payload: JSON.stringify({ id: held.payload.approvalId, approve: [[[true]]] }) },
        { name: 'approver of the wrong type', payload: JSON.stringify({ id: held.payload.approvalId, approve: true, approver: { name: 'x' } }) },
        { name: 'a megabyte of text', payload: 'a'.repeat(1024 * 1024) },
      ];
      const before = calls('gate', 'warn').length;
      await publishAll(broker.url, TOPIC, hostile.map((h) => h.payload));
      await until(() => calls('gate', 'warn').length >= before + hostile.length, `${hostile.length} warnings`);
      await pause(200);
      expect(calls('gate', 'warn').length - before).toBe(hostile.length);
      expect(outputs).toEqual([]);
      expect(faults.seen).toEqual([]);
      // still held, and still decided by the next good message
      const run = next('run');
      await publish(JSON.stringify({ id: held.payload.approvalId, approve: true, approver: 'erin' }));
      expect((await run).approvalId).toBe(held.payload.approvalId);
      expect(faults.seen).toEqual([]);
    } finally {
      faults.stop();
    }
  });
});
