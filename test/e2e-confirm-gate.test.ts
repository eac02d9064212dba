// End to end with the approvals example as a user imports it (flows/llm-confirm-gate.json): a
// scripted model asks for an uptime reading (low risk) and a container restart (high risk) in one
// turn. The llm-agent (direct mode) runs the first itself and sends the second out of its
// tool-call output to the confirm-gate, which holds it and asks. A person approves with the flow's
// "approve the request shown" button (it names the request shown last by its approval id), denies
// over HTTP, or nobody answers before a redeploy; with an MCP bridge's request waiting too, the
// button settles exactly the request shown and a decision without an id is refused. Approved calls
// travel through remote-tool over MQTT to an RpcServer agent whose real authorization checks the
// token (caller, agent, tool, arguments, expiry, single use); denials come
// back into the llm-agent as DENIED tool results that the model reads.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool, generateApprovalKeys, type CallEvent } from '../protocol';
import { trustingAuthorization, verdictOf } from './support/approvals';
import auditLogNode from '../nodes/audit-log/audit-log';
import confirmGateNode from '../nodes/confirm-gate/confirm-gate';
import gateCatalog from '../nodes/confirm-gate/locales/en-US/confirm-gate.json';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

const keys = generateApprovalKeys();
const flow = JSON.parse(readFileSync(join(__dirname, '../flows/llm-confirm-gate.json'), 'utf8')) as Array<Record<string, any>>;
const gateDef = flow.find((n) => n.type === 'toolmesh-confirm-gate')!;
const GATE = gateDef.id as string;
const credentials = { [GATE]: { signingKey: keys.privateKeyPem } };

/** Restarts the agent really did, and the authorize verdict of every high-risk call with its approver. */
const restarts: string[] = [];
const verdicts: Array<{ verdict: string; approver?: string }> = [];


const tools = [
  defineTool({ name: 'system_uptime', description: 'Uptime.', risk: 'low', input: z.strictObject({}), execute: () => ({ uptimeSeconds: 4242 }) }),
  defineTool({
    name: 'docker_restart_container', description: 'Restarts a container.', risk: 'high', input: z.strictObject({ container: z.string() }),
    execute: (a) => {
      restarts.push(a.container);
      return { container: a.container, state: 'running' };
    },
  }),
];

/** The helper's `RED._` returns keys as they are; the gate's texts are filled in from its en-US catalog, so the test reads what the model reads. */
const gateWithTexts = (RED: { _: (key: string, params?: Record<string, unknown>) => string }) => {
  const keep = RED._;
  RED._ = (key, params = {}) => {
    if (!key.startsWith('confirm-gate.')) return keep(key, params);
    const text = key.split('.').reduce<any>((o, k) => o?.[k], gateCatalog);
    if (typeof text !== 'string') throw new Error(`missing i18n key ${key}`);
    return text.replace(/__(\w+)__/g, (_m: string, name: string) => String(params[name]));
  };
  return confirmGateNode(RED as unknown as Parameters<typeof confirmGateNode>[0]);
};

/** Observers beside the flow's own wiring: the gate's three outputs and the llm-agent's answer. */
const OUT = { run: 'out-run', requests: 'out-requests', denied: 'out-denied', answer: 'out-answer' };

/** Resolves with the next message helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 10_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

describe('approvals example: llm-agent → confirm-gate → remote-tool → agent, and back', () => {
  let llm: FakeLlm;
  let agent: RpcServer;
  let patched: Array<Record<string, any>>;
  const toolMessages = (i: number) => (llm.requests[i].body.messages as any[]).filter((m) => m.role === 'tool').slice(-2);

  beforeAll(async () => {
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm((body: any) => {
      const last = body.messages.at(-1);
      if (last.role === 'user') {
        return { toolCalls: [{ id: 'up', name: 'pi__system_uptime', arguments: {} }, { id: 'rs', name: 'pi__docker_restart_container', arguments: { container: 'homeassistant' } }] };
      }
      return { content: `model read: ${body.messages.filter((m: any) => m.role === 'tool').slice(-2).map((m: any) => m.content).join(' | ')}` };
    });
    const auditDir = mkdtempSync(join(tmpdir(), 'toolmesh-gate-audit-'));
    patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake' }
      : n.type === 'toolmesh-audit-log' ? { ...n, file: join(auditDir, 'approvals.jsonl') } : { ...n }));
    const gate = patched.find((n) => n.id === GATE)!;
    gate.wires = gate.wires.map((w: string[], i: number) => [...w, [OUT.run, OUT.requests, OUT.denied][i]]);
    const agentDef = patched.find((n) => n.type === 'toolmesh-llm-agent')!;
    agentDef.wires = agentDef.wires.map((w: string[], i: number) => (i === 0 ? [...w, OUT.answer] : w));
    for (const id of Object.values(OUT)) patched.push({ id, type: 'helper', z: gate.z, x: 900, y: 100 });
    await helper.load([registryNode, remoteToolNode, llmAgentNode, gateWithTexts, auditLogNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'), coreNode('function/15-change.js'), coreNode('function/10-switch.js')], patched, credentials);
    const reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const port = await until(() => reg.brokerPort, 'the embedded broker');
    // the real authorization of an agent that trusts the gate's key
    agent = new RpcServer({ authorization: await trustingAuthorization(new Map([[gateDef.kid, keys.publicKeyPem]])), connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
    agent.on('call', (e: CallEvent) => {
      if (e.risk === 'high') verdicts.push({ verdict: verdictOf(e), ...(e.approval ? { approver: e.approval.approver } : {}) });
    });
    await agent.start();
    await until(() => reg.listTools().length === 2, 'the agent\'s tools');
  });

  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
    await llm?.close();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
  });

  it('approved with the flow\'s "approve the request shown" button: the agent verifies the token and runs the restart', async () => {
    const requests = next(OUT.requests);
    const ran = next(OUT.run);
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    const req = await requests;
    expect(req.payload).toMatchObject({ summary: 'Restart container homeassistant on pi', agent: 'pi', tool: 'docker_restart_container', risk: 'high' });
    expect(restarts).toEqual([]);

    const answered = next(OUT.answer);
    await helper.request().post('/inject/tm-gate-approve').expect(200);
    const approved = await ran;
    expect(approved.toolCall).toMatchObject({ tool: 'docker_restart_container', approval: expect.any(String) });
    const msg = await answered;
    expect(restarts).toEqual(['homeassistant']);
    expect(verdicts).toEqual([{ verdict: 'approved', approver: 'Node-RED editor' }]);
    expect(msg.toolCalls.map((c: any) => [c.tool, c.ok])).toEqual([['system_uptime', true], ['docker_restart_container', true]]);
    expect(msg.payload).toBe('model read: {"uptimeSeconds":4242} | {"container":"homeassistant","state":"running"}');
  });

  it('denied over HTTP: the model reads "DENIED: bob denied this call …" and nothing is restarted', async () => {
    const requests = next(OUT.requests);
    const denied = next(OUT.denied);
    const answered = next(OUT.answer);
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    const req = await requests;
    await helper.request().post(`/toolmesh/confirm-gate/${GATE}/approvals/${req.payload.approvalId}`)
      .send({ approve: false, approver: 'bob', reason: 'not during the film' }).expect(200);
    expect((await denied).toolResult.structuredContent.error.code).toBe('DENIED');
    const msg = await answered;
    const [uptime, restart] = toolMessages(llm.requests.length - 1);
    expect(uptime.content).toBe('{"uptimeSeconds":4242}');
    expect(restart.content).toMatch(/^DENIED: bob denied this call \(Restart container homeassistant on pi\): not during the film; it was not run\ndetails: /);
    expect(msg.toolCalls.find((c: any) => c.tool === 'docker_restart_container')).toMatchObject({ ok: false, code: 'DENIED' });
    expect(restarts).toEqual(['homeassistant']);
    expect(verdicts).toHaveLength(1);
  });

  it('an MCP bridge\'s request arrives while the model\'s call waits: the button settles exactly the request shown, a decision without an id is refused', async () => {
    const reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const bridge = await mqtt.connectAsync(`mqtt://127.0.0.1:${reg.brokerPort}`, { protocolVersion: 4, reconnectPeriod: 0 });
    try {
      const answers: any[] = [];
      bridge.on('message', (_t, payload) => answers.push(JSON.parse(payload.toString())));
      await bridge.subscribeAsync('toolmesh/v1/approvals/e2e-bridge/res', { qos: 1 });
      let requests = next(OUT.requests);
      const answered = next(OUT.answer);
      await helper.request().post('/inject/tm-gate-ask').expect(200);
      const local = (await requests).payload;
      requests = next(OUT.requests);
      const remote = { v: 1, approvalId: `bridge-${Date.now()}`, agent: 'pi', tool: 'docker_restart_container', arguments: { container: 'db' }, expiresAt: Date.now() + 60_000 };
      await bridge.publishAsync('toolmesh/v1/approvals/e2e-bridge/req', JSON.stringify(remote), { qos: 1 });
      expect((await requests).payload).toMatchObject({ approvalId: remote.approvalId, caller: 'e2e-bridge', summary: 'Restart container db on pi' });

      // two wait: a decision without an id is refused, naming both
      const refused = await helper.request().post(`/toolmesh/confirm-gate/${GATE}/approvals`).send({ approve: true }).expect(409);
      expect(refused.body.pending).toEqual([local.approvalId, remote.approvalId]);

      // the button names the request shown last: the bridge's, and only it
      await helper.request().post('/inject/tm-gate-approve').expect(200);
      await until(() => answers.length === 1, 'the bridge\'s answer');
      expect(answers[0]).toMatchObject({ approvalId: remote.approvalId, approved: true, approver: 'Node-RED editor' });
      const waiting = (await helper.request().get(`/toolmesh/confirm-gate/${GATE}/approvals`).expect(200)).body;
      expect(waiting.map((r: any) => r.approvalId)).toEqual([local.approvalId]);

      await helper.request().post(`/toolmesh/confirm-gate/${GATE}/approvals/${local.approvalId}`).send({ approve: false, approver: 'bob' }).expect(200);
      expect((await answered).payload).toMatch(/DENIED: bob denied this call \(Restart container homeassistant on pi\)/);
      expect(restarts).toEqual(['homeassistant']);
    } finally {
      await bridge.endAsync(true);
    }
  });

  it('a redeploy while the call waits answers the run with a denial instead of leaving it hanging', async () => {
    const requests = next(OUT.requests);
    const answered = next(OUT.answer);
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    await requests;
    await helper.setFlows(patched.map((n) => (n.id === GATE ? { ...n, timeout: 90_000 } : n)), 'nodes', credentials);
    const msg = await answered;
    expect(msg.payload).toMatch(/^model read: \{"uptimeSeconds":4242\} \| DENIED: the confirm-gate was redeployed or stopped while this call \(Restart container homeassistant on pi\) waited for approval; it was not run/);
    expect(restarts).toEqual(['homeassistant']);
  });
});
