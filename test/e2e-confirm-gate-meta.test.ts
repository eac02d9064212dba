// The approvals example (flows/llm-confirm-gate.json) with a catalog over the llm-agent's tool
// budget (issue 20): the restart is not in the offered tool block, so the scripted model reaches it
// the way a real one must, through the meta-tool call_tool. The call must be the real call in
// every respect: sent out of output 2 by its own risk, held by the confirm-gate with its own
// summary, approved with a token bound to the real agent, tool and arguments (which the agent's
// real authorization checks), audited under the real tool, shown under the real tool's name in
// msg.toolCalls. A call_tool naming a tool the registry's policy hides is a tool error; nothing runs.
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


const wiped: string[] = [];
const fillers = ['cpu_temperature', 'memory_usage', 'disk_usage', 'network_info', 'list_processes', 'hostname'].map((name) => defineTool({
  name: `system_${name}`, description: `Reads the ${name.replace('_', ' ')}.`, risk: 'low', input: z.strictObject({}), execute: () => ({ ok: name }),
}));

const tools = [
  ...fillers,
  defineTool({ name: 'wipe_disk', description: 'Wipes the disk.', risk: 'low', input: z.strictObject({}), execute: () => { wiped.push('disk'); return 'wiped'; } }),
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

describe('approvals example over the tool budget: call_tool → confirm-gate → remote-tool → agent', () => {
  let llm: FakeLlm;
  let agent: RpcServer;
  let auditFile: string;
  const viaCallTool = (id: string, name: string, args: Record<string, unknown>) => ({ id, name: 'call_tool', arguments: { name, arguments: args } });

  beforeAll(async () => {
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm((body: any) => {
      const last = body.messages.at(-1);
      if (last.role === 'user') {
        return { toolCalls: [viaCallTool('rs', 'pi__docker_restart_container', { container: 'homeassistant' }), viaCallTool('wd', 'pi__wipe_disk', {})] };
      }
      return { content: `model read: ${body.messages.filter((m: any) => m.role === 'tool').slice(-2).map((m: any) => m.content).join(' | ')}` };
    });
    const auditDir = mkdtempSync(join(tmpdir(), 'toolmesh-gate-meta-audit-'));
    auditFile = join(auditDir, 'approvals.jsonl');
    // 3 tools a request: one of the catalog, find_tools and call_tool; the policy hides wipe_disk
    const patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake', maxTools: 3, pinnedTools: 'pi/system_uptime' }
      : n.type === 'toolmesh-audit-log' ? { ...n, file: auditFile } : n.type === 'toolmesh-tool-registry' ? { ...n, policy: '*/*\n!pi/wipe_disk' } : { ...n }));
    const gate = patched.find((n) => n.id === GATE)!;
    gate.wires = gate.wires.map((w: string[], i: number) => [...w, [OUT.run, OUT.requests, OUT.denied][i]]);
    const agentDef = patched.find((n) => n.type === 'toolmesh-llm-agent')!;
    agentDef.wires = agentDef.wires.map((w: string[], i: number) => (i === 0 ? [...w, OUT.answer] : w));
    for (const id of Object.values(OUT)) patched.push({ id, type: 'helper', z: gate.z, x: 900, y: 100 });
    await helper.load([registryNode, remoteToolNode, llmAgentNode, gateWithTexts, auditLogNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'), coreNode('function/15-change.js'), coreNode('function/10-switch.js')], patched, credentials);
    const reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const port = await until(() => reg.brokerPort, 'the embedded broker');
    agent = new RpcServer({ authorization: await trustingAuthorization(new Map([[gateDef.kid, keys.publicKeyPem]])), connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
    agent.on('call', (e: CallEvent) => {
      if (e.risk === 'high') verdicts.push({ verdict: verdictOf(e), ...(e.approval ? { approver: e.approval.approver } : {}) });
    });
    await agent.start();
    // every tool but the one the policy hides
    await until(() => reg.listTools().length === tools.length - 1, 'the agent\'s tools');
  });

  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
    await llm?.close();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
  });

  it('the restart named through call_tool is held by the gate as the real call, approved with a token the agent checks, audited and shown under the real tool', async () => {
    const requests = next(OUT.requests);
    const ran = next(OUT.run);
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    const req = await requests;
    // the restart is not in the offered block: only the pinned tool and the meta-tools
    expect(llm.requests[0].body.tools.map((t: any) => t.function.name)).toEqual(['pi__system_uptime', 'find_tools', 'call_tool']);
    expect(req.payload).toMatchObject({ summary: 'Restart container homeassistant on pi', agent: 'pi', tool: 'docker_restart_container', risk: 'high', arguments: { container: 'homeassistant' } });
    expect(restarts).toEqual([]);

    const answered = next(OUT.answer);
    await helper.request().post('/inject/tm-gate-approve').expect(200);
    const approved = await ran;
    expect(approved.toolCall).toMatchObject({ agent: 'pi', tool: 'docker_restart_container', name: 'pi__docker_restart_container', approval: expect.any(String) });
    expect(approved.payload).toEqual({ container: 'homeassistant' });
    const msg = await answered;
    expect(restarts).toEqual(['homeassistant']);
    expect(verdicts).toEqual([{ verdict: 'approved', approver: 'Node-RED editor' }]);
    expect(wiped).toEqual([]);
    expect(msg.toolCalls.map((c: any) => [c.name, c.via, c.agent, c.tool, c.ok, c.code])).toEqual([
      ['pi__docker_restart_container', 'call_tool', 'pi', 'docker_restart_container', true, undefined],
      ['pi__wipe_disk', 'call_tool', undefined, undefined, false, 'TOOL_NOT_FOUND'],
    ]);
    expect(msg.payload).toMatch(/^model read: \{"container":"homeassistant","state":"running"\} \| TOOL_NOT_FOUND: call_tool: no tool named "pi__wipe_disk" in the catalog/);
    // every request of the run sent the same tool block
    expect(new Set(llm.requests.map((r) => JSON.stringify(r.body.tools))).size).toBe(1);
    // the audit names the real agent, tool and arguments, never the meta-tool
    const records = await until(() => {
      const lines = readFileSync(auditFile, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      return lines.some((r) => r.kind === 'answer') ? lines : undefined;
    }, 'the audit of the answer');
    const calls = records.filter((r) => r.kind === 'tool-call' || r.kind === 'approval' || r.kind === 'tool-result');
    expect(calls.map((r) => [r.kind, r.agent, r.tool, r.topic])).toEqual([
      ['tool-call', 'pi', 'docker_restart_container', 'pi__docker_restart_container'],
      ['approval', 'pi', 'docker_restart_container', 'pi__docker_restart_container'],
      ['tool-result', 'pi', 'docker_restart_container', 'pi__docker_restart_container'],
    ]);
    expect(calls[0].args).toEqual({ container: 'homeassistant' });
    expect(calls[1].approval).toMatchObject({ approver: 'Node-RED editor', kid: gateDef.kid });
    expect(records.find((r) => r.kind === 'answer').calls.map((c: any) => [c.agent, c.tool])).toContainEqual(['pi', 'docker_restart_container']);
  });
});
