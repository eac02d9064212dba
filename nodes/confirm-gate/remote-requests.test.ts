// confirm-gate with "hold approval requests from other callers" (docs/protocol.md, "Approval
// requests from other callers") under node-red-node-test-helper, against a real embedded aedes
// broker: a raw MQTT client plays the MCP bridge, publishes requests to approvals/{caller}/req and
// reads the gate's answers on approvals/{caller}/res. Decisions by HTTP and by input message,
// timeouts, expiresAt, retained and hostile requests, redeploys, and broker authentication with
// the registry's own embedded broker (a bridge cannot ask or read under another caller's id).
import mqtt, { type MqttClient } from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, generateApprovalKeys, verifyApproval } from '../../protocol';
import { trustingAuthorization } from '../../test/support/approvals';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import { ApprovalResponseMessageSchema, MAX_APPROVAL_MESSAGE_BYTES, approvalTopics } from '../../protocol/approval-requests';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import confirmGateNode from './confirm-gate';
import catalog from './locales/en-US/confirm-gate.json';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { toolmeshEvents, type HeldEvent, type SettledEvent } from '../shared/events';
import { deepArrayJson, watchProcessFaults } from '../../test/support/nodes-faults';

const KID = 'gate-remote';
const REG_CALLER = 'nodered-reg';
const BRIDGE = 'mcp-bridge';
const keys = generateApprovalKeys();
const trusted = new Map([[KID, keys.publicKeyPem]]);
const at = approvalTopics('toolmesh/v1');
const gateWithCatalog = withCatalog(confirmGateNode, catalog);

let broker: EmbeddedBroker;
const clients: MqttClient[] = [];

function calls(id: string, method: 'warn' | 'log' | 'status' | 'error'): unknown[] {
  const spy = helper.getNode(id)[method];
  return spy.getCalls().filter((c: any) => c.thisValue?.id === id).map((c: any) => c.args[0]);
}
/** What helper node `id` receives (with `topic`: only messages of that topic; output 2 also says approval-settled). */
function collect(id: string, topic?: string): any[] {
  const got: any[] = [];
  helper.getNode(id).on('input', (m: any) => {
    if (topic === undefined || m.topic === topic) got.push(m);
  });
  return got;
}
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A raw MQTT client as the bridge: subscribed to its own response topic, collecting the answers. */
async function bridge(url: string, caller = BRIDGE, auth: { username?: string; password?: string } = {}) {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, ...auth });
  clients.push(c);
  const answers: any[] = [];
  c.on('message', (topic, payload) => answers.push({ topic, ...JSON.parse(payload.toString()) }));
  await c.subscribeAsync(at.response(caller), { qos: 1 });
  const ask = (body: Record<string, unknown> | string, opts: { retain?: boolean; as?: string } = {}) =>
    c.publishAsync(at.request(opts.as ?? caller), typeof body === 'string' ? body : JSON.stringify(body), { qos: 1, retain: opts.retain ?? false });
  return { client: c, answers, ask };
}

let seq = 0;
function request(extra: Record<string, unknown> = {}) {
  return {
    v: 1, approvalId: `appr-${++seq}-${Date.now()}`, agent: 'pi', tool: 'docker_restart_container', arguments: { container: 'homeassistant' },
    risk: 'high', requester: 'MCP client Claude Desktop via toolmesh mcp', expiresAt: Date.now() + 60_000, ...extra,
  };
}

/** registry (external, the test broker) → confirm-gate with remoteRequests → helpers req (output 2), run, denied; a catch node → helper caught. */
async function load(gate: Record<string, unknown> = {}, registry: Record<string, unknown> = { mode: 'external', broker: broker.url }, creds: Record<string, unknown> = {}) {
  const flow = [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', callerId: REG_CALLER, policy: '*/*', ...registry },
    { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', x: 100, y: 100, name: 'gate', registry: 'reg', kid: KID, remoteRequests: true, ...gate, wires: [['run'], ['req'], ['denied']] },
    { id: 'run', type: 'helper', z: 'f1', x: 300, y: 100 },
    { id: 'req', type: 'helper', z: 'f1', x: 300, y: 100 },
    { id: 'denied', type: 'helper', z: 'f1', x: 300, y: 100 },
    { id: 'c1', type: 'catch', z: 'f1', name: 'errors', scope: null, uncaught: false, x: 100, y: 300, wires: [['caught']] },
    { id: 'caught', type: 'helper', z: 'f1', x: 300, y: 300 },
  ];
  await helper.load([registryNode, gateWithCatalog], flow, { gate: { signingKey: keys.privateKeyPem }, reg: creds });
  await until(() => calls('gate', 'log').includes('holding approval requests from other callers on toolmesh/v1/approvals/+/req'), 'the request subscription');
  return helper.getNode('reg') as ToolRegistryNode;
}

beforeAll(async () => {
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
});
afterAll(async () => {
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
});
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  await helper.unload();
});

describe('confirm-gate: approval requests from other callers', () => {
  it('holds a request, shows who asks, and an HTTP approval answers with a token for the topic\'s caller only', async () => {
    await load({ validity: 30_000 });
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q = request();
    await b.ask(q);
    await until(() => reqs.length === 1, 'the approval request on output 2');
    expect(reqs[0].payload).toEqual({
      approvalId: q.approvalId, summary: 'Restart container homeassistant on pi', agent: 'pi', tool: 'docker_restart_container',
      arguments: { container: 'homeassistant' }, risk: 'high', caller: BRIDGE, requester: q.requester,
      requestedAt: expect.any(Number), expiresAt: expect.any(Number),
    });
    await until(() => calls('gate', 'status').some((s: any) => s.text === '1 waiting for approval'), 'the waiting status');
    const list = await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200);
    expect(list.body).toEqual([reqs[0].payload]);

    await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${q.approvalId}`).send({ approve: true, approver: 'alice' }).expect(200);
    await until(() => b.answers.length === 1, 'the answer');
    const a = b.answers[0];
    expect(a.topic).toBe(at.response(BRIDGE));
    expect(ApprovalResponseMessageSchema.safeParse({ ...a, topic: undefined }).success).toBe(true);
    expect(a).toMatchObject({ v: 1, approvalId: q.approvalId, approved: true, approver: 'alice' });
    const expectation = { caller: BRIDGE, agent: 'pi', tool: 'docker_restart_container', args: { container: 'homeassistant' }, keys: trusted, skewMs: 0 };
    const v = verifyApproval(a.token, expectation);
    expect(v).toMatchObject({ ok: true, payload: { caller: BRIDGE, kid: KID, approver: 'alice' } });
    expect(v.payload!.exp - Date.now()).toBeGreaterThan(25_000);
    expect(v.payload!.exp - Date.now()).toBeLessThanOrEqual(30_000);
    // signed for the bridge, not for the registry's caller or anyone else
    expect(verifyApproval(a.token, { ...expectation, caller: REG_CALLER })).toMatchObject({ ok: false, refusal: 'wrong-caller' });
    expect(verifyApproval(a.token, { ...expectation, args: { container: 'db' } })).toMatchObject({ ok: false, refusal: 'arguments-changed' });
    expect(collect('run')).toEqual([]);
  });

  it('the caller id comes from the topic: a "caller" in the payload changes nothing', async () => {
    await load();
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q = { ...request(), caller: 'someone-else', summary: 'Read the uptime of pi' };
    await b.ask(q);
    await until(() => reqs.length === 1, 'the request');
    expect(reqs[0].payload.caller).toBe(BRIDGE);
    // the person reads the gate's summary of what is signed; the caller's words only beside it
    expect(reqs[0].payload.summary).toBe('Restart container homeassistant on pi');
    expect(reqs[0].payload.requestSummary).toBe('Read the uptime of pi');
    helper.getNode('gate').receive({ topic: 'approve', payload: q.approvalId, approver: 'bob' });
    await until(() => b.answers.length === 1, 'the answer');
    expect(verifyApproval(b.answers[0].token, { caller: BRIDGE, agent: 'pi', tool: 'docker_restart_container', args: q.arguments, keys: trusted, skewMs: 0 }))
      .toMatchObject({ ok: true, payload: { approver: 'bob' } });
  });

  it('an input-message denial answers cause person with the reason; a repeat of a settled request gets the same answer, a repeat while pending is ignored', async () => {
    await load();
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q = request();
    await b.ask(q);
    await b.ask(q);
    await until(() => reqs.length >= 1, 'the request');
    await pause(100);
    expect(reqs).toHaveLength(1);
    helper.getNode('gate').receive({ approval: { id: q.approvalId, approve: false, approver: 'carol', reason: 'not during the film' } });
    await until(() => b.answers.length === 1, 'the denial');
    const reason = 'carol denied this call (Restart container homeassistant on pi): not during the film; it was not run';
    expect(b.answers[0]).toEqual({ topic: at.response(BRIDGE), v: 1, approvalId: q.approvalId, approved: false, cause: 'person', reason, approver: 'carol' });
    await b.ask(q);
    await until(() => b.answers.length === 2, 'the repeated answer');
    expect(b.answers[1]).toEqual(b.answers[0]);
    expect(reqs).toHaveLength(1);
    expect(collect('denied')).toEqual([]);
  });

  it('a held request is emitted as held (with caller and requester), and a dashboard decision settles it: settled, approval-settled, the token for its caller', async () => {
    const held: HeldEvent[] = [];
    const settled: SettledEvent[] = [];
    const onHeld = (e: HeldEvent) => held.push(e);
    const onSettled = (e: SettledEvent) => settled.push(e);
    toolmeshEvents.on('held', onHeld).on('settled', onSettled);
    try {
      await load();
      const b = await bridge(broker.url);
      const done = collect('req', 'approval-settled');
      const q = request();
      await b.ask(q);
      await until(() => held.length === 1, 'the held event');
      expect(held[0]).toEqual({
        gate: 'gate', gateName: 'gate', approvalId: q.approvalId, summary: 'Restart container homeassistant on pi', agent: 'pi', tool: 'docker_restart_container',
        risk: 'high', requester: q.requester, caller: BRIDGE, requestedAt: expect.any(Number), expiresAt: expect.any(Number),
      });
      helper.getNode('gate').receive({ topic: 'approve', payload: q.approvalId, _client: { socketId: 'sock-1' } });
      await until(() => b.answers.length === 1 && done.length === 1, 'the answer and approval-settled');
      expect(verifyApproval(b.answers[0].token, { caller: BRIDGE, agent: 'pi', tool: 'docker_restart_container', args: q.arguments, keys: trusted, skewMs: 0 }))
        .toMatchObject({ ok: true, payload: { approver: 'dashboard' } });
      expect(settled).toEqual([{ gate: 'gate', approvalId: q.approvalId, outcome: 'approved', by: 'dashboard', ts: expect.any(Number) }]);
      expect(done[0].payload).toEqual(settled[0]);
    } finally {
      toolmeshEvents.off('held', onHeld).off('settled', onSettled);
    }
  });

  it('silence is a timeout, at the earlier of the gate timeout and expiresAt; an expired request is answered at once', async () => {
    await load({ timeout: 60_000 });
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q = request({ expiresAt: Date.now() + 300 });
    const start = Date.now();
    await b.ask(q);
    await until(() => b.answers.length === 1, 'the timeout');
    expect(Date.now() - start).toBeLessThan(5000);
    expect(b.answers[0]).toMatchObject({ approvalId: q.approvalId, approved: false, cause: 'timeout', reason: expect.stringMatching(/^nobody approved this call \(Restart container homeassistant on pi\) within \d+ ms; it was not run$/) });
    expect(reqs[0].payload.expiresAt - reqs[0].payload.requestedAt).toBeLessThanOrEqual(300);
    expect(calls('gate', 'status').at(-1)).toMatchObject({ text: 'denied: no decision in time' });

    const old = request({ expiresAt: Date.now() - 1000 });
    await b.ask(old);
    await until(() => b.answers.length === 2, 'the expired answer');
    expect(b.answers[1]).toMatchObject({ approvalId: old.approvalId, approved: false, cause: 'timeout', reason: expect.stringContaining('expired before the confirm-gate got it') });
    expect(reqs).toHaveLength(1);

    await helper.unload();
    await load({ timeout: 200 });
    const b2 = await bridge(broker.url);
    const q2 = request();
    await b2.ask(q2);
    await until(() => b2.answers.length === 1, 'the gate timeout');
    expect(b2.answers[0]).toMatchObject({ approvalId: q2.approvalId, cause: 'timeout', reason: 'nobody approved this call (Restart container homeassistant on pi) within 200 ms; it was not run' });
  });

  it('ignores a retained request: an old request is never held', async () => {
    const b0 = await bridge(broker.url);
    const q = request();
    await b0.ask(q, { retain: true });
    await load();
    const b = await bridge(broker.url);
    await pause(300);
    expect(helper.getNode('gate') && (await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body).toEqual([]);
    expect(b.answers).toEqual([]);
    expect(calls('gate', 'warn')).toEqual([]);
    await b0.client.publishAsync(at.request(BRIDGE), '', { qos: 1, retain: true });
  });

  it('turns malformed, oversized and 20,000-deep requests into one warning each, and still holds the next good one', async () => {
    await load();
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const faults = watchProcessFaults();
    try {
      const hostile = [
        'not json {',
        JSON.stringify({ ...request(), v: 2 }),
        JSON.stringify({ ...request(), agent: 'a/b' }),
        JSON.stringify({ ...request(), arguments: [1, 2] }),
        JSON.stringify({ ...request(), expiresAt: 'soon' }),
        deepArrayJson(20_000),
        JSON.stringify({ ...request(), arguments: { blob: 'x'.repeat(MAX_APPROVAL_MESSAGE_BYTES) } }),
      ];
      for (const h of hostile) await b.ask(h);
      await until(() => calls('gate', 'warn').length >= hostile.length, `${hostile.length} warnings`);
      await pause(200);
      const warns = calls('gate', 'warn') as string[];
      expect(warns).toHaveLength(hostile.length);
      expect(warns[0]).toMatch(/^an approval request on toolmesh\/v1\/approvals\/mcp-bridge\/req was ignored: payload: not JSON/);
      expect(warns[1]).toMatch(/: v: /);
      expect(warns[2]).toMatch(/: agent: an agent id/);
      expect(warns[3]).toMatch(/: arguments: /);
      expect(warns[4]).toMatch(/: expiresAt: /);
      expect(warns[5]).toMatch(/payload: JSON nested deeper than 64 levels/);
      expect(warns[6]).toMatch(/^an approval request of \d+ bytes on toolmesh\/v1\/approvals\/mcp-bridge\/req was ignored: requests are at most 262144 bytes$/);
      expect(reqs).toEqual([]);
      // the schema failures that name an approval id are answered, so the bridge does not wait
      await until(() => b.answers.length === 4, 'the four answers');
      expect(b.answers.every((a) => a.approved === false && a.cause === 'misconfigured' && /could not read this approval request/.test(a.reason))).toBe(true);
      const q = request();
      await b.ask(q);
      await until(() => reqs.length === 1, 'the good request');
      expect(reqs[0].payload.approvalId).toBe(q.approvalId);
      expect(faults.seen).toEqual([]);
    } finally {
      faults.stop();
    }
  });

  it('a redeploy answers every held remote request with cause closed', async () => {
    await load();
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q1 = request();
    const q2 = request({ arguments: { container: 'db' } });
    await b.ask(q1);
    await b.ask(q2);
    await until(() => reqs.length === 2, 'both held');
    await helper.unload();
    await until(() => b.answers.length === 2, 'both closed answers');
    expect(b.answers.map((a) => [a.approvalId, a.approved, a.cause])).toEqual([[q1.approvalId, false, 'closed'], [q2.approvalId, false, 'closed']]);
    expect(b.answers[0].reason).toBe('the confirm-gate was redeployed or stopped while this call (Restart container homeassistant on pi) waited for approval; it was not run');
  });

  it('off by default: nothing is held and nothing subscribed', async () => {
    const flow = [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: REG_CALLER },
      { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', x: 100, y: 100, registry: 'reg', kid: KID, wires: [[], ['req'], []] },
      { id: 'req', type: 'helper', z: 'f1', x: 300, y: 100 },
    ];
    await helper.load([registryNode, gateWithCatalog], flow, { gate: { signingKey: keys.privateKeyPem } });
    const reqs = collect('req', 'approval-request');
    const b = await bridge(broker.url);
    await b.ask(request());
    await pause(300);
    expect(reqs).toEqual([]);
    expect(b.answers).toEqual([]);
  });
});

describe('confirm-gate: a decision without an id never settles another caller\'s request', () => {
  const TOPIC = 'toolmesh/v1/approvals/gate-buttons';

  it('by message, HTTP and MQTT: refused naming its id while it is the only one waiting; it still waits, and its id settles it', async () => {
    await load({ approvalTopic: TOPIC });
    await until(() => calls('gate', 'log').includes(`taking approvals from MQTT topic ${TOPIC}`), 'the MQTT subscription');
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const q = request();
    await b.ask(q);
    await until(() => reqs.length === 1, 'the request');
    const text = (via: string) => `the only waiting call (${q.approvalId}) is a request of another caller (${BRIDGE}): a ${via} decision without an approval id settles only a call held from this gate's own input; name the approval id`;

    const caught = new Promise<any>((resolve) => helper.getNode('caught').once('input', resolve));
    helper.getNode('gate').receive({ topic: 'approve', payload: '', approver: 'flow button' });
    expect((await caught).error.message.replace(/^Error: /, '')).toBe(text('message'));

    const res = await helper.request().post('/toolmesh/confirm-gate/gate/approvals').send({ approve: true, approver: 'alice' }).expect(409);
    expect(res.body).toEqual({ error: text('HTTP'), pending: [q.approvalId] });

    const button = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0 });
    clients.push(button);
    await button.publishAsync(TOPIC, 'approve', { qos: 1 });
    await until(() => calls('gate', 'warn').includes(text('MQTT')), 'the MQTT refusal warning');

    await pause(100);
    expect(b.answers).toEqual([]);
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body.map((r: any) => r.approvalId)).toEqual([q.approvalId]);
    await button.publishAsync(TOPIC, JSON.stringify({ id: q.approvalId, approve: true, approver: 'carol' }), { qos: 1 });
    await until(() => b.answers.length === 1, 'the answer');
    expect(b.answers[0]).toMatchObject({ approvalId: q.approvalId, approved: true, approver: 'carol' });
  });
});

describe('confirm-gate: caps on pending requests', () => {
  it('1,000 requests from one caller leave 20 waiting (the default cap per caller); the rest are denied at once, with one warning, and not remembered', async () => {
    await load();
    const b = await bridge(broker.url);
    const reqs = collect('req', 'approval-request');
    const qs = Array.from({ length: 1000 }, (_, i) => request({ arguments: { container: `c${i}` } }));
    await Promise.all(qs.map((q) => b.ask(q)));
    await until(() => b.answers.length === 980, '980 denials', 30_000);
    await pause(200);
    expect(reqs).toHaveLength(20);
    expect(reqs.map((r) => r.payload.approvalId)).toEqual(qs.slice(0, 20).map((q) => q.approvalId));
    const list = (await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body;
    expect(list).toHaveLength(20);
    expect(b.answers.every((a) => ApprovalResponseMessageSchema.safeParse({ ...a, topic: undefined }).success)).toBe(true);
    expect(b.answers.map((a) => a.approvalId)).toEqual(qs.slice(20).map((q) => q.approvalId));
    expect(b.answers[0]).toEqual({
      topic: at.response(BRIDGE), v: 1, approvalId: qs[20].approvalId, approved: false, cause: 'misconfigured',
      reason: `the confirm-gate holds 20 requests of ${BRIDGE} waiting for approval already, the most one caller may have (Per other caller); this call (Restart container c20 on pi) was not held and not run`,
    });
    expect(calls('gate', 'warn')).toEqual([`20 requests of ${BRIDGE} wait for approval, the most one caller may have (Per other caller): its further requests are denied at once until one is decided`]);
    expect(calls('gate', 'status').at(-1)).toMatchObject({ text: '20 waiting for approval' });

    // another caller is not crowded out
    const other = await bridge(broker.url, 'other-bridge');
    const o = request();
    await other.ask(o);
    await until(() => reqs.length === 21, 'the other caller\'s request');
    expect(reqs[20].payload).toMatchObject({ approvalId: o.approvalId, caller: 'other-bridge' });

    // a refused request was not remembered: asked again once there is room, it is held
    await helper.request().post(`/toolmesh/confirm-gate/gate/approvals/${qs[0].approvalId}`).send({ approve: false }).expect(200);
    await until(() => b.answers.length === 981, 'the denial of the first');
    await b.ask(qs[20]);
    await until(() => reqs.length === 22, 'the repeated request, held now');
    expect(reqs[21].payload.approvalId).toBe(qs[20].approvalId);
    await b.ask(qs[21]);
    await until(() => b.answers.length === 982, 'the cap again');
    expect(b.answers[981]).toMatchObject({ approvalId: qs[21].approvalId, cause: 'misconfigured' });
    // the cap was reached again after a settle: warned again, once
    expect(calls('gate', 'warn')).toHaveLength(2);
  }, 60_000);

  it('the total cap: callers together hold at most "Hold at most"; a call of the flow past it is denied on output 3', async () => {
    await load({ maxPending: 30, maxPendingPerCaller: 20 });
    const a = await bridge(broker.url, 'bridge-a');
    const b = await bridge(broker.url, 'bridge-b');
    const reqs = collect('req', 'approval-request');
    await Promise.all(Array.from({ length: 25 }, () => a.ask(request())));
    await until(() => a.answers.length === 5, 'bridge-a at its cap');
    await Promise.all(Array.from({ length: 25 }, () => b.ask(request())));
    await until(() => b.answers.length === 15, 'the total cap');
    await pause(200);
    expect(reqs).toHaveLength(30);
    expect(reqs.filter((r) => r.payload.caller === 'bridge-b')).toHaveLength(10);
    expect(b.answers[0].reason).toMatch(/^the confirm-gate holds 30 calls waiting for approval already, the most it may \(Hold at most\); this call \(Restart container homeassistant on pi\) was not held and not run$/);
    expect(calls('gate', 'warn')).toEqual([
      '20 requests of bridge-a wait for approval, the most one caller may have (Per other caller): its further requests are denied at once until one is decided',
      '30 calls wait for approval, the most this gate holds (Hold at most): further requests are denied at once until one is decided',
    ]);
    const denied = new Promise<any>((resolve) => helper.getNode('denied').once('input', resolve));
    helper.getNode('gate').receive({ toolCall: { id: 'tc-local', agent: 'pi', tool: 'docker_restart_container', arguments: { container: 'db' }, risk: 'high' } });
    expect((await denied).toolResult.structuredContent.error.details).toEqual({ cause: 'full', max: 30 });
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/approvals').expect(200)).body).toHaveLength(30);
  }, 60_000);
});

describe('confirm-gate: approval requests, end to end with an agent', () => {
  it('the agent runs the call for the bridge with the token, refuses it from another caller and a second time', async () => {
    const runs: string[] = [];
    const restartTool = defineTool({
      name: 'docker_restart_container', description: 'Restarts a container.', risk: 'high', input: z.strictObject({ container: z.string() }),
      execute: (a) => { runs.push(a.container); return { restarted: a.container }; },
    });
    const agent = new RpcServer({ authorization: await trustingAuthorization(trusted), connection: { url: broker.url }, agentId: 'pi', tools: [restartTool] });
    const asBridge = new RpcCaller({ connection: { url: broker.url }, callerId: BRIDGE });
    const asOther = new RpcCaller({ connection: { url: broker.url }, callerId: 'other' });
    try {
      await agent.start();
      await asBridge.start();
      await asOther.start();
      await load();
      await until(() => asBridge.agent('pi')?.ready && asOther.agent('pi')?.ready, 'the agent');
      const b = await bridge(broker.url);
      const reqs = collect('req', 'approval-request');
      const q = request();
      await b.ask(q);
      await until(() => reqs.length === 1, 'the request');
      expect(reqs[0].payload.risk).toBe('high');
      helper.getNode('gate').receive({ topic: 'approve', payload: reqs[0].payload, approver: 'alice' });
      await until(() => b.answers.length === 1, 'the token');
      const token = b.answers[0].token as string;
      const stolen = await asOther.call('pi', 'docker_restart_container', q.arguments, { approval: token });
      expect(stolen.structuredContent).toMatchObject({ error: { code: 'PERMISSION_DENIED', details: { refusal: 'wrong-caller' } } });
      const ok = await asBridge.call('pi', 'docker_restart_container', q.arguments, { approval: token });
      expect(ok.isError).toBeFalsy();
      expect(ok.structuredContent).toEqual({ restarted: 'homeassistant' });
      const again = await asBridge.call('pi', 'docker_restart_container', q.arguments, { approval: token });
      expect(again.structuredContent).toMatchObject({ error: { code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } } });
      expect(runs).toEqual(['homeassistant']);
    } finally {
      await asOther.stop();
      await asBridge.stop();
      await agent.stop();
    }
  });
});

describe('confirm-gate: approval requests with broker authentication (the registry\'s embedded broker)', () => {
  it('the gate (the registry\'s own caller) reads and answers; a bridge can neither ask nor read under another caller\'s id', async () => {
    const reg = await load({}, { mode: 'embedded', port: 0, requireAuth: true }, { users: 'caller mcp-bridge bridge-secret\ncaller other other-secret' });
    const url = reg.brokerUrl!;
    const b = await bridge(url, BRIDGE, { username: BRIDGE, password: 'bridge-secret' });
    const other = await bridge(url, 'other', { username: 'other', password: 'other-secret' });
    // the other caller may not subscribe to the bridge's answers, nor to every request
    const refusedSub = await new Promise<number[]>((resolve) => other.client.subscribe([at.response(BRIDGE), at.anyRequest, at.response('+')], { qos: 1 },
      (_e, _g, packet) => resolve((packet as unknown as { granted: number[] }).granted)));
    expect(refusedSub).toEqual([128, 128, 128]);
    const reqs = collect('req', 'approval-request');

    // a request under another caller's id is refused by the broker (connection closed), never held
    const forged = request();
    other.client.publish(at.request(BRIDGE), JSON.stringify(forged), { qos: 1 });
    await until(() => !other.client.connected, 'the broker to close the forger');
    await pause(200);
    expect(reqs).toEqual([]);

    const q = request();
    await b.ask(q);
    await until(() => reqs.length === 1, 'the bridge\'s own request');
    expect(reqs[0].payload).toMatchObject({ approvalId: q.approvalId, caller: BRIDGE });
    helper.getNode('gate').receive({ approval: { id: q.approvalId, approve: true, approver: 'alice' } });
    await until(() => b.answers.length === 1, 'the answer');
    expect(verifyApproval(b.answers[0].token, { caller: BRIDGE, agent: 'pi', tool: 'docker_restart_container', args: q.arguments, keys: trusted, skewMs: 0 }).ok).toBe(true);
    expect(other.answers).toEqual([]);
    expect(calls('gate', 'warn').filter((w) => String(w).includes('refused'))).toEqual([]);
  });
});
