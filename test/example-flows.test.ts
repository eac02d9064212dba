// The example flows (flows/*.json, offered under Import > Examples) in a real Node-RED runtime:
// every node type is known and every node starts, the tool-registry brings up its embedded broker,
// and — for docker-management.json — a real agent with the demo's config answers the inject rows
// (through the inject node's own admin endpoint, as the editor's button does) and failures reach
// the tab's catch node. The approvals example (llm-confirm-gate.json) runs its loop with a real
// agent whose policy makes a tool high risk: the audit-log nodes record prompt, tool call,
// approval, result and answer, and `toolmesh audit verify` passes on their file and on the agent's
// own log. The approve/deny buttons of every example name the request shown by its approval id.
// The flow-as-tool example answers the llm-agent's call through tool-in → function → tool-out.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { stringify as toYaml } from 'yaml';
import { loadConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { generateApprovalKeys } from '../protocol';
import { agentConfigYaml, patchFlow, AGENT_ID, DEMO_CONTAINER } from '../scripts/demo/options';
import auditLogNode from '../nodes/audit-log/audit-log';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import toolInNode from '../nodes/tool-in/tool-in';
import toolOutNode from '../nodes/tool-out/tool-out';
import confirmGateNode from '../nodes/confirm-gate/confirm-gate';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import brokerNode from '../nodes/broker/broker';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { until } from './support/until';
import { NODE_RED_CORE_DIR, NODE_RED_MAIN } from './support/node-red-path';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

/** Core nodes the examples may use, from Node-RED's own package (catch is preloaded by the helper). */
const coreDir = join(NODE_RED_CORE_DIR, 'common');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const core = (file: string) => require(join(coreDir, file));
const NODE_MODULES = [registryNode, brokerNode, remoteToolNode, llmAgentNode, confirmGateNode, auditLogNode, toolInNode, toolOutNode, core('20-inject.js'), core('21-debug.js'), core('90-comment.js'), core('60-link.js'),
  core('../function/10-switch.js'), core('../function/10-function.js'), core('../function/15-change.js'), core('../network/10-mqtt.js'), core('../storage/10-file.js')];
/** Dashboard 2.0 (`@flowfuse/node-red-dashboard`, a dev dependency the demo installs) nodes the chat example uses. */
const DASHBOARD_DIR = join(dirname(require.resolve('@flowfuse/node-red-dashboard/package.json')), 'nodes');
// eslint-disable-next-line @typescript-eslint/no-require-imports
const DASHBOARD_MODULES = ['config/ui_base.js', 'config/ui_page.js', 'config/ui_group.js', 'config/ui_theme.js', 'widgets/ui_template.js'].map((f) => require(join(DASHBOARD_DIR, f)));
const KNOWN_TYPES = new Set(['tab', 'toolmesh-tool-registry', 'toolmesh-broker', 'toolmesh-remote-tool', 'toolmesh-llm-agent', 'toolmesh-confirm-gate', 'toolmesh-audit-log', 'toolmesh-tool-in', 'toolmesh-tool-out', 'inject', 'debug', 'catch', 'comment', 'link in', 'link out',
  'switch', 'function', 'change', 'mqtt in', 'mqtt-broker', 'file', 'ui-base', 'ui-page', 'ui-group', 'ui-theme', 'ui-template']);

const FLOWS_DIR = join(__dirname, '../flows');
const flowFiles = readdirSync(FLOWS_DIR).filter((f) => f.endsWith('.json')).sort();
const dockerd = inject('dockerd');

interface FlowNode { id: string; type: string; z?: string; wires?: string[][]; [k: string]: unknown }

function readFlow(file: string): FlowNode[] {
  return JSON.parse(readFileSync(join(FLOWS_DIR, file), 'utf8')) as FlowNode[];
}


/** Resolves with the next message helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 15_000): Promise<any> {
  const node = helper.getNode(id);
  if (!node) throw new Error(`node ${id} is not running`);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    node.once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** The embedded registry in a loaded flow, once it has left `connecting`. */
async function registryOf(flow: FlowNode[]): Promise<ToolRegistryNode> {
  const def = flow.find((n) => n.type === 'toolmesh-tool-registry');
  expect(def, 'the flow has a tool-registry').toBeDefined();
  const reg = helper.getNode(def!.id) as ToolRegistryNode;
  await until(() => reg.state !== 'connecting', 'the registry to connect or fail');
  return reg;
}

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));

describe('example flows', () => {
  it('include the Docker example', () => {
    expect(flowFiles).toContain('docker-management.json');
  });

  it('show every node type of the pack in at least one example', () => {
    const pack = JSON.parse(readFileSync(join(__dirname, '../package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
    const used = new Set(flowFiles.flatMap((f) => readFlow(f).map((n) => n.type)));
    expect(Object.keys(pack['node-red'].nodes).filter((t) => !used.has(t)), 'node types in no example').toEqual([]);
  });

  it('decide approvals by id: every approve/deny button names the request a gate showed, never "the oldest"', () => {
    let buttons = 0;
    for (const file of flowFiles) {
      const flow = readFlow(file);
      const byId = new Map(flow.map((n) => [n.id, n]));
      for (const gate of flow.filter((n) => n.type === 'toolmesh-confirm-gate')) {
        // what the gate's output 2 keeps in flow context, by variable name: only its approval requests
        // (output 2 also says when a hold settled), so through a switch on msg.topic == approval-request
        const onOutput2 = (gate.wires?.[1] ?? []).map((id) => byId.get(id)!);
        const keepsPayload = (n: FlowNode) => n.type === 'change' && (n.rules as Array<Record<string, string>>).some((r) => r.t === 'set' && r.pt === 'flow' && r.tot === 'msg');
        expect(onOutput2.filter(keepsPayload).map((n) => n.id), `${file}: ${gate.id}'s output 2 goes through a topic switch before it is kept`).toEqual([]);
        const requestsOnly = onOutput2.filter((n) => n.type === 'switch' && n.property === 'topic'
          && JSON.stringify(n.rules) === JSON.stringify([{ t: 'eq', v: 'approval-request', vt: 'str' }]));
        const kept = new Set(requestsOnly.flatMap((sw) => (sw.wires?.[0] ?? []).map((id) => byId.get(id)!)).filter((n) => n.type === 'change')
          .flatMap((n) => (n.rules as Array<Record<string, string>>).filter((r) => r.t === 'set' && r.pt === 'flow' && r.tot === 'msg' && r.to === 'payload').map((r) => r.p)));
        for (const b of flow.filter((n) => n.type === 'inject' && (n.wires ?? []).flat().includes(gate.id))) {
          buttons++;
          expect(['approve', 'deny'], `${file}: ${b.id} sends a decision`).toContain(b.topic);
          expect(b.payloadType, `${file}: ${b.id} sends a request from flow context, not an empty payload`).toBe('flow');
          expect(kept.has(String(b.payload)), `${file}: ${b.id} sends flow.${String(b.payload)}, which ${gate.id}'s output 2 keeps`).toBe(true);
          expect(String(b.name)).not.toMatch(/oldest/);
        }
      }
    }
    expect(buttons).toBe(8);
  });

  describe.each(flowFiles)('%s', (file) => {
    const flow = readFlow(file);

    afterAll(() => helper.unload());

    it('is a well-formed export: one tab, unique ids, names everywhere, wires to existing nodes', () => {
      const ids = new Set(flow.map((n) => n.id));
      expect(ids.size, 'unique ids').toBe(flow.length);
      const tabs = flow.filter((n) => n.type === 'tab');
      expect(tabs).toHaveLength(1);
      for (const n of flow) {
        if (n.type === 'tab') continue;
        expect(typeof n.name === 'string' && n.name.trim() !== '', `${n.type} ${n.id} has a name`).toBe(true);
        if (n.z !== undefined) expect(n.z).toBe(tabs[0].id);
        for (const out of n.wires ?? []) for (const target of out) expect(ids.has(target), `${n.id} wires to ${target}`).toBe(true);
      }
      const unknown = flow.map((n) => n.type).filter((t) => !KNOWN_TYPES.has(t));
      expect(unknown, 'node types outside ToolMesh and the core nodes').toEqual([]);
      // the registry in an example listens on loopback only
      for (const r of flow.filter((n) => n.type === 'toolmesh-tool-registry' && n.mode === 'embedded' && !n.brokerNode)) expect(r.host).toBe('127.0.0.1');
      for (const b of flow.filter((n) => n.type === 'toolmesh-broker')) expect(b.host).toBe('127.0.0.1');
    });

    it('starts in Node-RED with every node running and the embedded broker up', async () => {
      const dashboard = flow.some((n) => n.type.startsWith('ui-'));
      await helper.load(dashboard ? [...NODE_MODULES, ...DASHBOARD_MODULES] : NODE_MODULES, patchFlow(flow, 0));
      for (const n of flow) {
        if (n.type !== 'tab') expect(helper.getNode(n.id), `${n.type} ${n.id} is running`).toBeTruthy();
      }
      const reg = await registryOf(flow);
      expect(reg.state).toBe('connected');
      expect(reg.brokerPort).toBeGreaterThan(0);
    });
  });
});

describe('docker-management.json with a real agent', () => {
  const flow = readFlow('docker-management.json');
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-example-'));
  const agentLog: string[] = [];
  let agent: RunningAgent | undefined;
  let reg: ToolRegistryNode;
  let llm: FakeLlm;

  beforeAll(async () => {
    // a scripted OpenAI-compatible model: it asks for the memory tool, then answers
    llm = await startFakeLlm((body: any, i: number) => {
      if (i === 0) {
        const fn = (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.includes('system_memory'));
        return fn ? { toolCalls: [{ name: fn, arguments: {} }] } : { content: 'no memory tool offered' };
      }
      return { content: 'done' };
    });
    // the flow leaves base URL and model empty for the environment; point this copy at the fake
    const patched = patchFlow(flow, 0).map((n) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n));
    await helper.load(NODE_MODULES, patched);
    reg = await registryOf(flow);
    expect(reg.state).toBe('connected');
    // the demo's agent config (npm start writes the same file), with the test engine when there is one
    const file = join(dir, 'pi-agent.yaml');
    writeFileSync(file, agentConfigYaml({ mqttPort: reg.brokerPort!, dockerSocket: dockerd?.socketPath }));
    const log = (level: string) => (m: string) => { agentLog.push(`${level}: ${m}`); };
    agent = await startAgent(loadConfig(file), { info: log('info'), warn: log('warn'), error: log('error') });
    await until(() => reg.listAgents().find((a) => a.id === AGENT_ID && a.online), `agent ${AGENT_ID} online in the registry`);
  });

  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
    await llm?.close();
  });

  it('offers the agent\'s tools the flow calls', () => {
    const offered = reg.listTools().filter((t) => t.agentId === AGENT_ID).map((t) => t.tool.name);
    expect(offered).toEqual(expect.arrayContaining(['system_memory', 'system_disk_usage', 'diag_echo']));
    if (dockerd) expect(offered).toEqual(expect.arrayContaining(['docker_list_containers', 'docker_restart_container', 'docker_container_logs']));
    // every tool a remote-tool node names exists on the agent (or is a docker tool, absent without an engine)
    for (const n of flow.filter((x) => x.type === 'toolmesh-remote-tool')) {
      expect(n.agent).toBe(AGENT_ID);
      if (dockerd || !String(n.tool).startsWith('docker_')) expect(offered, `${n.id} calls ${n.tool}`).toContain(n.tool);
    }
  });

  it('"memory" button: POST /inject/<id> reaches the debug node with the agent\'s reading', async () => {
    const got = next('tm-debug-memory');
    await helper.request().post('/inject/tm-inject-memory').expect(200);
    const msg = await got;
    expect(msg.toolMeta).toMatchObject({ agent: AGENT_ID, tool: 'system_memory' });
    expect(msg.toolResult.isError).toBe(false);
    expect(msg.payload.totalBytes).toBeGreaterThan(0);
    expect(msg.payload.availableBytes).toBeGreaterThan(0);
    expect(msg.payload.usedPercent).toBeGreaterThanOrEqual(0);
  });

  it('"disk usage" row returns the mounted file systems', async () => {
    const got = next('tm-debug-disk-usage');
    helper.getNode('tm-inject-disk-usage').receive({});
    const msg = await got;
    expect(msg.toolResult.isError).toBe(false);
    expect(Array.isArray(msg.payload.filesystems)).toBe(true);
    expect(msg.payload.filesystems.length).toBeGreaterThan(0);
  });

  it.skipIf(dockerd === null)('"list containers" row lists the test engine\'s containers', async () => {
    const got = next('tm-debug-list-containers');
    helper.getNode('tm-inject-list-containers').receive({});
    const msg = await got;
    expect(msg.toolResult.isError).toBe(false);
    expect(Array.isArray(msg.payload.containers)).toBe(true);
  });

  it('a failing row reaches the catch node with the tool error', async () => {
    // the test engine has no toolmesh-demo-web (and without an engine there is no docker pack):
    // either way the call fails and remote-tool hands the error to the tab's catch node
    const got = next('tm-debug-errors');
    const answered = next('tm-debug-logs-web', 1500).then(() => 'answered', () => 'silent');
    helper.getNode('tm-inject-logs-web').receive({});
    const msg = await got;
    expect(msg.error.source.id).toBe('tm-call-logs-web');
    expect(msg.error.message).toMatch(dockerd ? new RegExp(`^(Error: )?EXECUTION_FAILED: .*${DEMO_CONTAINER}`) : /^(Error: )?TOOL_NOT_FOUND: .*docker_container_logs/);
    expect(await answered, 'a failed call sends nothing on the output (sendErrors is off)').toBe('silent');
  });

  it('"ask about the Pi" row: the llm-agent calls the agent\'s tool the model picks and answers', async () => {
    const got = next('tm-debug-answer');
    await helper.request().post('/inject/tm-inject-ask').expect(200);
    const msg = await got;
    expect(msg.payload).toBe('done');
    expect(msg.toolCalls).toHaveLength(1);
    expect(msg.toolCalls[0]).toMatchObject({ agent: AGENT_ID, tool: 'system_memory' });
    const first = llm.requests[0].body;
    const llmDef = flow.find((n) => n.type === 'toolmesh-llm-agent')!;
    expect(first.messages[0]).toEqual({ role: 'system', content: llmDef.systemPrompt });
    expect(first.messages.at(-1)).toEqual({ role: 'user', content: flow.find((n) => n.id === 'tm-inject-ask')!.payload });
    // the tool result went back to the model
    const toolMsg = llm.requests[1].body.messages.find((m: any) => m.role === 'tool');
    expect(JSON.parse(toolMsg.content)).toHaveProperty('totalBytes');
  });

  it('the LLM row is wired to the registry and leaves base URL and model to the environment', () => {
    const llm = flow.find((n) => n.type === 'toolmesh-llm-agent')!;
    const registry = flow.find((n) => n.type === 'toolmesh-tool-registry')!;
    expect(llm.registry).toBe(registry.id);
    expect(llm.baseUrl).toBe('');
    expect(llm.model).toBe('');
    const ask = flow.find((n) => n.type === 'inject' && n.wires?.[0]?.includes(llm.id))!;
    expect(ask.payload).toBe('Which containers are running on the Pi? Restart toolmesh-demo-web and tell me its state afterwards.');
    expect(helper.getNode(llm.id)).toBeTruthy();
  });

  afterAll(() => {
    if (agentLog.some((l) => l.startsWith('error'))) console.log(`agent log:\n${agentLog.join('\n')}`);
  });
});

const TOOLMESH_CLI = join(__dirname, '../packages/agent/dist/agent/toolmesh.js');

/** `node packages/agent/dist/agent/toolmesh.js audit verify <files>`: its output; throws (with the output) on a non-zero exit. */
function auditVerify(...files: string[]): string {
  try {
    return execFileSync(process.execPath, [TOOLMESH_CLI, 'audit', 'verify', ...files], { encoding: 'utf8' });
  } catch (e) {
    const err = e as { status: number; stdout: string; stderr: string };
    throw new Error(`toolmesh audit verify exited ${err.status}: ${err.stdout}${err.stderr}`);
  }
}

/** The records of a JSONL audit log, in order. */
function records(file: string): Array<Record<string, any>> {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
}

describe('llm-confirm-gate.json: the audit-log nodes record the approval loop', () => {
  const flow = readFlow('llm-confirm-gate.json');
  const gate = flow.find((n) => n.type === 'toolmesh-confirm-gate')!;
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-example-audit-'));
  const flowLog = join(dir, 'approvals.jsonl');
  const agentLog = join(dir, 'pi-audit.jsonl');
  const keys = generateApprovalKeys();
  let agent: RunningAgent | undefined;
  let llm: FakeLlm;

  beforeAll(async () => {
    // the model asks for diag_echo, which the agent's policy raises to high risk: it needs an approval
    llm = await startFakeLlm((body: any) => {
      if (body.messages.at(-1).role === 'user') {
        const fn = (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith('diag_echo'));
        return fn ? { toolCalls: [{ name: fn, arguments: { text: 'restart homeassistant' } }] } : { content: 'no diag_echo offered' };
      }
      return { content: `the agent said: ${body.messages.at(-1).content}` };
    });
    const patched = patchFlow(flow, 0).map((n) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' }
      : n.type === 'toolmesh-audit-log' ? { ...n, file: flowLog } : n));
    await helper.load(NODE_MODULES, patched, { [gate.id]: { signingKey: keys.privateKeyPem } });
    const reg = await registryOf(flow);
    expect(reg.state).toBe('connected');
    const file = join(dir, 'pi.yaml');
    writeFileSync(file, toYaml({
      version: 1,
      agent: { id: AGENT_ID, kind: 'pi' },
      broker: { url: `mqtt://127.0.0.1:${reg.brokerPort}` },
      packs: { diag: {} },
      policy: { risk: { diag_echo: 'high' } },
      approvals: { keys: { [String(gate.kid)]: keys.publicKeyPem }, usedTokensFile: join(dir, 'used-tokens.jsonl') },
      audit: { file: agentLog },
    }));
    const quiet = () => undefined;
    agent = await startAgent(loadConfig(file), { info: quiet, warn: quiet, error: (m: string) => console.error(m) });
    await until(() => reg.listTools().find((t) => t.agentId === AGENT_ID && t.tool.name === 'diag_echo'), 'diag_echo in the registry');
  });

  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
    await llm?.close();
  });

  it('records prompt, tool call, approval, result and answer of an approved call, and both logs verify', async () => {
    const requests = next('tm-gate-requests');
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    const request = await requests;
    expect(request.payload).toMatchObject({ agent: AGENT_ID, tool: 'diag_echo', risk: 'high' });
    const answered = next('tm-gate-answer');
    await helper.request().post('/inject/tm-gate-approve').expect(200);
    const answer = await answered;
    expect(answer.payload).toBe('the agent said: {"echo":{"text":"restart homeassistant"}}');

    const log = records(flowLog);
    expect(log.map((r) => r.kind)).toEqual(['prompt', 'tool-call', 'approval', 'tool-result', 'answer']);
    const [prompt, call, approval, result, end] = log;
    expect(prompt.text).toBe(flow.find((n) => n.id === 'tm-gate-ask')!.payload);
    expect(call).toMatchObject({ agent: AGENT_ID, tool: 'diag_echo', risk: 'high', args: { text: 'restart homeassistant' } });
    expect(approval).toMatchObject({ agent: AGENT_ID, tool: 'diag_echo', callId: call.callId, approval: { approver: 'Node-RED editor', kid: gate.kid } });
    expect(JSON.stringify(approval), 'the token itself is not recorded').not.toMatch(/eyJ/);
    expect(result).toMatchObject({ agent: AGENT_ID, tool: 'diag_echo', outcome: 'ok', callId: call.callId });
    expect(end).toMatchObject({ kind: 'answer', text: answer.payload, calls: [{ agent: AGENT_ID, tool: 'diag_echo', outcome: 'ok' }] });

    expect(auditVerify(flowLog)).toMatch(/^ok: 5 records in 1 file/);
    // the agent's own execution log holds the approved call too
    expect(records(agentLog).filter((r) => r.kind === 'tool-call').map((r) => [r.tool, r.approval?.approver])).toEqual([['diag_echo', 'Node-RED editor']]);
    expect(auditVerify(agentLog)).toMatch(/^ok: \d+ records in 1 file/);
  });

  it('records a denial as the result the model reads', async () => {
    const before = records(flowLog).length;
    const requests = next('tm-gate-requests');
    await helper.request().post('/inject/tm-gate-ask').expect(200);
    await requests;
    const answered = next('tm-gate-answer');
    await helper.request().post('/inject/tm-gate-deny').expect(200);
    expect((await answered).payload).toMatch(/^the agent said: DENIED: /);
    const log = records(flowLog).slice(before);
    expect(log.map((r) => r.kind)).toEqual(['prompt', 'tool-call', 'refusal', 'answer']);
    expect(log[2]).toMatchObject({ tool: 'diag_echo', outcome: 'DENIED' });
    expect(auditVerify(flowLog)).toMatch(/^ok: 9 records in 1 file/);
  });
});

describe('flow-as-tool.json: a flow is the tool an llm-agent calls', () => {
  const flow = readFlow('flow-as-tool.json');
  const toolIn = flow.find((n) => n.type === 'toolmesh-tool-in')!;
  let llm: FakeLlm;

  beforeAll(async () => {
    // first a mode the schema does not allow (the model reads INVALID_ARGUMENTS and retries), then away
    llm = await startFakeLlm((body: any, i: number) => {
      const fn = (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith('house_mode'));
      if (!fn) return { content: 'no house_mode offered' };
      if (i < 2) return { toolCalls: [{ name: fn, arguments: { mode: i === 0 ? 'holiday' : 'away' } }] };
      const result = JSON.parse(body.messages.filter((m: any) => m.role === 'tool').at(-1).content);
      return { content: `The house is in ${result.mode} mode now; it was in ${result.previous} mode.` };
    });
    const patched = patchFlow(flow, 0).map((n) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n));
    await helper.load(NODE_MODULES, patched);
    const reg = await registryOf(flow);
    expect(reg.state).toBe('connected');
    await until(() => reg.listTools().find((t) => t.agentId === toolIn.agent && t.tool.name === toolIn.tool), 'the flow\'s tool in the registry');
  });

  afterAll(async () => {
    await helper.unload();
    await llm?.close();
  });

  it('offers the tool with its description, risk and schema', () => {
    const reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const offered = reg.listTools().find((t) => t.agentId === 'house' && t.tool.name === 'house_mode')!;
    expect(offered.tool.description).toBe(toolIn.description);
    expect(offered.tool.annotations?.risk).toBe('low');
    expect(offered.tool.inputSchema).toMatchObject({ type: 'object', required: ['mode'], properties: { mode: { enum: ['home', 'away', 'night'] } } });
  });

  it('"we are off for the weekend": the flow sets the mode and the llm-agent answers with its result', async () => {
    const changes = next('tm-tool-changes');
    const answered = next('tm-tool-answer');
    await helper.request().post('/inject/tm-tool-ask').expect(200);
    expect((await changes).payload).toEqual({ mode: 'away', previous: 'home' });
    const msg = await answered;
    expect(msg.payload).toBe('The house is in away mode now; it was in home mode.');
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool, c.ok])).toEqual([['house', 'house_mode', false], ['house', 'house_mode', true]]);
    // the schema refused the first call before the flow ran; the model read why
    const refused = llm.requests[1].body.messages.find((m: any) => m.role === 'tool').content;
    expect(refused).toMatch(/^INVALID_ARGUMENTS: /);
    expect(llm.requests).toHaveLength(3);
  });

  it('"show the house mode" reads the flow variable the tool set', async () => {
    const shown = next('tm-tool-mode');
    await helper.request().post('/inject/tm-tool-show').expect(200);
    expect((await shown).payload).toBe('away');
  });
});
