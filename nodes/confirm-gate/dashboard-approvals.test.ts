// The confirm-gate side of dashboard approvals (issue 21), in Node-RED (node-red-node-test-helper)
// against a real broker and an agent: `held`/`settled` on toolmeshEvents and `approval-settled` on
// output 2 however a hold ends (input message, admin endpoint, timeout, redeploy), `_client` carried
// to the page that asked, decisions for another gate's hold forwarded to it (once; a repeat refused),
// `list-approvals`, the dashboard user as approver, and listeners that throw.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool, generateApprovalKeys, verifyApproval } from '../../protocol';
import { trustingAuthorization } from '../../test/support/approvals';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import confirmGateNode from './confirm-gate';
import catalog from './locales/en-US/confirm-gate.json';
import { toolmeshEvents, type HeldEvent, type SettledEvent } from '../shared/events';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';

const KID = 'gate-dash';
const CALLER = 'dash-caller';
const keys = generateApprovalKeys();
const trusted = new Map([[KID, keys.publicKeyPem]]);
const gateWithCatalog = withCatalog(confirmGateNode, catalog);

const tools = [
  defineTool({
    name: 'docker_restart_container', description: 'Restarts a container.', risk: 'high',
    input: z.strictObject({ container: z.string() }), execute: (a) => ({ container: a.container, restarted: true }),
  }),
];

let broker: EmbeddedBroker;
let agent: RpcServer;

/** Every held and settled event while a test runs. */
const held: HeldEvent[] = [];
const settled: SettledEvent[] = [];
const onHeld = (e: HeldEvent) => held.push(e);
const onSettled = (e: SettledEvent) => settled.push(e);

/** Collects what helper node `id` receives (with `topic`: only that topic). */
function collect(id: string, topic?: string): any[] {
  const got: any[] = [];
  helper.getNode(id).on('input', (m: any) => {
    if (topic === undefined || m.topic === topic) got.push(m);
  });
  return got;
}

/** Texts gate `id` passed to `warn`. */
function warnings(id: string): unknown[] {
  return helper.getNode(id).warn.getCalls().filter((c: any) => c.thisValue?.id === id).map((c: any) => c.args[0]);
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

let seq = 0;
/** A tool call as llm-agent emits it. */
function restart(container: string) {
  return { id: `tc-${++seq}`, name: 'pi__docker_restart_container', agent: 'pi', tool: 'docker_restart_container', arguments: { container }, risk: 'high', timeoutMs: 120_000 };
}

/**
 * Loads a registry and two gates: `gate` ("Gate A"; outputs → helpers run, req, denied) and
 * `gateB` (→ runB, reqB, deniedB), both with the same key; a catch node → helper caught.
 */
async function load(a: Record<string, unknown> = {}, b: Record<string, unknown> = {}): Promise<void> {
  const flow = [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: CALLER, policy: '*/*' },
    { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', name: 'Gate A', registry: 'reg', kid: KID, ...a, wires: [['run'], ['req'], ['denied']] },
    { id: 'gateB', type: 'toolmesh-confirm-gate', z: 'f1', registry: 'reg', kid: KID, ...b, wires: [['runB'], ['reqB'], ['deniedB']] },
    ...['run', 'req', 'denied', 'runB', 'reqB', 'deniedB'].map((id) => ({ id, type: 'helper', z: 'f1' })),
    { id: 'c1', type: 'catch', z: 'f1', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1' },
  ];
  await helper.load([registryNode, gateWithCatalog], flow, { gate: { signingKey: keys.privateKeyPem }, gateB: { signingKey: keys.privateKeyPem } });
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.listAgents().some((x) => x.id === 'pi' && x.ready), 'agent pi in the registry');
}

/** Sends a call into gate `gate` and resolves with its approval request (output 2 helper `req`). */
async function hold(gate: string, req: string, call: Record<string, unknown>, extra: Record<string, unknown> = {}): Promise<any> {
  const requests = collect(req, 'approval-request');
  helper.getNode(gate).receive({ topic: call.name, payload: call.arguments, toolCall: call, ...extra });
  await until(() => requests.length === 1, `the approval request of ${gate}`);
  return requests[0];
}

const tokenOf = (msg: any, container: string) =>
  verifyApproval(msg.toolCall.approval, { caller: CALLER, agent: 'pi', tool: 'docker_restart_container', args: { container }, keys: trusted, skewMs: 0 });

beforeAll(async () => {
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  agent = new RpcServer({ authorization: await trustingAuthorization(trusted), connection: { url: broker.url }, agentId: 'pi', tools });
  await agent.start();
  toolmeshEvents.on('held', onHeld);
  toolmeshEvents.on('settled', onSettled);
});
afterAll(async () => {
  toolmeshEvents.off('held', onHeld);
  toolmeshEvents.off('settled', onSettled);
  await agent.stop();
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
});
afterEach(async () => {
  await helper.unload();
  held.length = 0;
  settled.length = 0;
});

describe('confirm-gate: held and settled', () => {
  it('a hold emits held; a decision from a page (msg._client) settles it, by "dashboard", and every message of the call carries _client', async () => {
    await load();
    const client = { socketId: 'sock-1', socketIp: '127.0.0.1' };
    const call = restart('homeassistant');
    const req = await hold('gate', 'req', call, { _client: client });
    expect(req._client).toEqual(client);
    expect(held).toEqual([{
      gate: 'gate', gateName: 'Gate A', approvalId: req.payload.approvalId, callId: call.id, summary: 'Restart container homeassistant on pi',
      agent: 'pi', tool: 'docker_restart_container', risk: 'high', requestedAt: req.payload.requestedAt, expiresAt: req.payload.expiresAt,
    }]);
    expect(settled).toEqual([]);

    const done = collect('req', 'approval-settled');
    const run = collect('run');
    helper.getNode('gate').receive({ topic: 'approve', payload: req.payload.approvalId, _client: { socketId: 'sock-2' } });
    await until(() => run.length === 1 && done.length === 1, 'the approved call and approval-settled');
    expect(run[0]._client).toEqual(client);
    expect(tokenOf(run[0], 'homeassistant')).toMatchObject({ ok: true, payload: { approver: 'dashboard' } });
    const event = { gate: 'gate', approvalId: req.payload.approvalId, callId: call.id, outcome: 'approved', by: 'dashboard', ts: expect.any(Number) };
    expect(settled).toEqual([event]);
    // to every page: no _client on approval-settled
    expect(done[0]).toEqual({ _msgid: expect.any(String), topic: 'approval-settled', payload: event });
  });

  it('a denial on output 3 carries _client; the dashboard user (FlowFuse login, msg._client.user) is recorded as who decided', async () => {
    await load();
    const client = { socketId: 'sock-1' };
    const req = await hold('gate', 'req', restart('db'), { _client: client });
    const denied = collect('denied');
    helper.getNode('gate').receive({ topic: 'deny', payload: req.payload, reason: 'not now', _client: { socketId: 'sock-1', user: { userId: 'u1', username: 'alice', name: 'Alice A.' } } });
    await until(() => denied.length === 1, 'the denial');
    expect(denied[0]._client).toEqual(client);
    expect(denied[0].toolResult.structuredContent.error.details).toMatchObject({ cause: 'person', approver: 'alice', reason: 'not now' });
    expect(settled).toEqual([expect.objectContaining({ approvalId: req.payload.approvalId, outcome: 'denied', by: 'alice' })]);

    // a name the page sends is kept beside the logged-in user
    const req2 = await hold('gate', 'req', restart('web'));
    const run = collect('run');
    helper.getNode('gate').receive({ approval: { id: req2.payload.approvalId, approve: true, approver: 'bob' }, _client: { socketId: 's', user: { username: 'alice' } } });
    await until(() => run.length === 1, 'the approval');
    expect(tokenOf(run[0], 'web')).toMatchObject({ ok: true, payload: { approver: 'bob (via alice)' } });
    // a message without _client records the flow, as before
    const req3 = await hold('gate', 'req', restart('mqtt'));
    helper.getNode('gate').receive({ topic: 'approve', payload: req3.payload.approvalId });
    await until(() => run.length === 2, 'the second approval');
    expect(settled.map((s) => s.by)).toEqual(['alice', 'bob (via alice)', 'flow']);
  });

  it('a hold decided from the admin endpoint emits settled and approval-settled on output 2', async () => {
    await load();
    const req = await hold('gate', 'req', restart('homeassistant'));
    const done = collect('req', 'approval-settled');
    await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${req.payload.approvalId}`).send({ approve: false, reason: 'no' }).expect(200);
    await until(() => done.length === 1, 'approval-settled');
    expect(done[0].payload).toEqual({ gate: 'gate', approvalId: req.payload.approvalId, callId: req.payload.callId, outcome: 'denied', by: 'admin API', ts: expect.any(Number) });
    expect(settled).toEqual([done[0].payload]);
  });

  it('a timeout and a redeploy settle as timeout and closed, without by', async () => {
    await load({ timeout: 100 });
    const first = await hold('gate', 'req', restart('one'));
    await until(() => settled.length === 1, 'the timeout');
    expect(settled[0]).toEqual({ gate: 'gate', approvalId: first.payload.approvalId, callId: first.payload.callId, outcome: 'timeout', ts: expect.any(Number) });

    const second = await hold('gateB', 'reqB', restart('two'));
    const flow = helper._redNodes.getFlows().flows.map((n: any) => (n.id === 'gateB' ? { ...n, timeout: 90_000 } : n));
    await helper.setFlows(flow, 'nodes', { gate: { signingKey: keys.privateKeyPem }, gateB: { signingKey: keys.privateKeyPem } });
    await until(() => settled.length === 2, 'the closed hold');
    expect(settled[1]).toEqual({ gate: 'gateB', approvalId: second.payload.approvalId, callId: second.payload.callId, outcome: 'closed', ts: expect.any(Number) });
  });

  it('listeners that throw on held and settled never break the gate', async () => {
    const boom = () => {
      throw new Error('a broken page');
    };
    toolmeshEvents.prependListener('held', boom);
    toolmeshEvents.prependListener('settled', boom);
    toolmeshEvents.prependListener('approvals', boom);
    try {
      await load();
      const caught = collect('caught');
      const req = await hold('gate', 'req', restart('homeassistant'));
      const run = collect('run');
      const done = collect('req', 'approval-settled');
      helper.getNode('gate').receive({ topic: 'approve', payload: req.payload.approvalId, approver: 'carol' });
      await until(() => run.length === 1 && done.length === 1, 'the approved call');
      expect(tokenOf(run[0], 'homeassistant')).toMatchObject({ ok: true, payload: { approver: 'carol' } });
      await pause(50);
      expect(caught).toEqual([]);
    } finally {
      toolmeshEvents.off('held', boom);
      toolmeshEvents.off('settled', boom);
      toolmeshEvents.off('approvals', boom);
    }
    // the listeners after the throwing one missed these: the gate went on all the same
    expect(held).toEqual([]);
  });
});

describe('confirm-gate: one page for every gate', () => {
  it('a decision sent to gate A for a hold of gate B settles it once, in B; a second decision is refused with its reason', async () => {
    await load();
    const req = await hold('gateB', 'reqB', restart('homeassistant'));
    const runB = collect('runB');
    const run = collect('run');
    const doneB = collect('reqB', 'approval-settled');
    helper.getNode('gate').receive({ topic: 'approve', payload: req.payload.approvalId, _client: { socketId: 's1', user: { username: 'alice' } } });
    await until(() => runB.length === 1, 'gate B passes the approved call');
    expect(tokenOf(runB[0], 'homeassistant')).toMatchObject({ ok: true, payload: { approver: 'alice', kid: KID } });
    expect(settled).toEqual([expect.objectContaining({ gate: 'gateB', approvalId: req.payload.approvalId, outcome: 'approved', by: 'alice' })]);

    helper.getNode('gate').receive({ approval: { id: req.payload.approvalId, approve: false, approver: 'mallory' } });
    await until(() => warnings('gate').length === 1, 'the refusal');
    expect(warnings('gate')).toEqual([`approval ${req.payload.approvalId} was already settled (approved); the message decision is ignored`]);
    await pause(50);
    expect(runB).toHaveLength(1);
    expect(run).toEqual([]);
    expect(doneB).toHaveLength(1);
    expect(settled).toHaveLength(1);
    expect(collect('deniedB')).toEqual([]);
  });

  it('an id no gate knows is warned about as before; a decision without an id stays with its own gate', async () => {
    await load();
    await hold('gateB', 'reqB', restart('homeassistant'));
    helper.getNode('gate').receive({ topic: 'approve', payload: 'no-such-id' });
    await until(() => warnings('gate').length === 1, 'the warning');
    expect(warnings('gate')).toEqual(['no call waits for approval no-such-id; the message decision is ignored']);
    helper.getNode('gate').receive({ topic: 'approve' });
    await until(() => warnings('gate').length === 2, 'the second warning');
    expect(warnings('gate')[1]).toBe('no call waits for approval; the message decision is ignored');
    await pause(50);
    expect(settled).toEqual([]);
  });

  it('list-approvals answers on output 2 with every gate\'s pending holds, oldest first, to the page that asked', async () => {
    await load();
    const a = await hold('gate', 'req', restart('one'));
    await pause(5);
    const b = await hold('gateB', 'reqB', restart('two'));
    const answers = collect('req', 'approvals');
    const client = { socketId: 'sock-9' };
    helper.getNode('gate').receive({ topic: 'list-approvals', _client: client });
    await until(() => answers.length === 1, 'the list');
    expect(answers[0]._client).toEqual(client);
    expect(answers[0].payload).toEqual([held[0], held[1]]);
    expect(answers[0].payload.map((h: HeldEvent) => [h.gate, h.approvalId])).toEqual([['gate', a.payload.approvalId], ['gateB', b.payload.approvalId]]);

    helper.getNode('gateB').receive({ topic: 'approve', payload: a.payload.approvalId });
    await until(() => settled.length === 1, 'the forwarded approval');
    const answersB = collect('reqB', 'approvals');
    helper.getNode('gateB').receive({ topic: 'list-approvals' });
    await until(() => answersB.length === 1, 'the second list');
    expect(answersB[0]._client).toBeUndefined();
    expect(answersB[0].payload.map((h: HeldEvent) => h.approvalId)).toEqual([b.payload.approvalId]);
  });
});
