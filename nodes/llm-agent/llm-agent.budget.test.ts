// The tool budget through a real Node-RED llm-agent (issue 12): a registry offering 300
// simulated agents' catalogs (the real packs' tools, scripts/mesh/catalog.ts) and the fake LLM.
// No request may carry more than the budget, a tool found with find_tools is called through
// call_tool, and the runs of one session send the same tool block (issue 20).
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { buildMesh, offeredOf, type MeshAgent } from '../../scripts/mesh/catalog';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';
import { provideRegistry, type ToolRegistryApi } from '../shared/registry-api';
import llmAgentNode from './llm-agent';

const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

let mesh: MeshAgent[];
let llm: FakeLlm | undefined;
const calls: string[] = [];
beforeAll(async () => { mesh = await buildMesh(300); });
afterEach(async () => {
  await helper.unload();
  await llm?.close();
  llm = undefined;
  calls.length = 0;
});

/** A registry config node type offering `mesh` as if every agent were online (no broker). */
function stubRegistryNode(RED: any): void {
  RED.nodes.registerType('stub-registry', function (this: any, def: any) {
    RED.nodes.createNode(this, def);
    const offered = offeredOf(mesh);
    const api: ToolRegistryApi = {
      state: 'connected', callerId: 'budget-test',
      register: (u) => u.onRegistryState('connected'), deregister: () => undefined,
      listAgents: () => mesh.map((a) => ({ id: a.id, online: true, ready: true, status: { state: 'online', agent: a.id, instance: 'i', kind: a.kind, name: a.name } })),
      listTools: () => offered,
      isOffered: () => true,
      call: async (agentId, tool) => { calls.push(`${agentId}/${tool}`); return { content: [{ type: 'text', text: '{"ok":true}' }], structuredContent: { ok: true } }; },
      onCatalogChange: () => () => undefined,
      agentConnection: async () => undefined,
      beforeClose: () => () => undefined,
    };
    provideRegistry(this, api);
  });
}

async function load(script: FakeScript, props: Record<string, unknown> = {}) {
  llm = await startFakeLlm(script);
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([stubRegistryNode, llmAgentNode], [
    { id: 'f1', type: 'tab', label: 'budget' },
    { id: 'reg', type: 'stub-registry' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake-model', maxIterations: 4, approvalRisk: 'never', progress: true, wires: [['out'], [], ['events']], ...props },
    { id: 'out', type: 'helper', ...at },
    { id: 'events', type: 'helper', ...at },
    { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', ...at },
  ], { llm: { apiKey: 'sk-test' } });
  return helper.getNode('llm');
}

const next = (id: string) => new Promise<any>((resolve) => helper.getNode(id).once('input', resolve));

describe('llm-agent tool budget (300 simulated agents, fake LLM)', () => {
  it('keeps every request within the default budget and runs a tool found with find_tools through call_tool', async () => {
    const node = await load([
      { toolCalls: [{ id: 'f1', name: 'find_tools', arguments: { query: 'photo camera nursery robot' } }] },
      { toolCalls: [{ id: 'c1', name: 'call_tool', arguments: { name: 'robot-nursery-1__robot_take_photo', arguments: {} } }] },
      { content: 'Here is the picture.' },
    ]);
    const out = next('out');
    const events: any[] = [];
    helper.getNode('events').on('input', (m: any) => events.push(m.payload));
    node.receive({ payload: 'What is the baby doing right now?' });
    const msg = await out;
    expect(msg.payload).toBe('Here is the picture.');
    expect(llm!.requests.length).toBe(3);
    for (const r of llm!.requests) {
      expect(r.body.tools.length).toBeLessThanOrEqual(16);
      expect(r.body.tools.length).toBeLessThanOrEqual(128);
    }
    expect(llm!.requests[0].body.tools.map((t: any) => t.function.name).slice(-2)).toEqual(['find_tools', 'call_tool']);
    expect(new Set(llm!.requests.map((r) => JSON.stringify(r.body.tools))).size).toBe(1);
    expect(llm!.requests[1].body.messages.at(-1).content).toContain('{"name":"robot-nursery-1__robot_take_photo"');
    expect(calls).toEqual(['robot-nursery-1/robot_take_photo']);
    expect(msg.toolCalls.at(-1)).toMatchObject({ name: 'robot-nursery-1__robot_take_photo', via: 'call_tool', agent: 'robot-nursery-1', tool: 'robot_take_photo', ok: true });
    expect(msg.toolsOffered.map((o: any) => o.tools.length)).toEqual(llm!.requests.map((r) => r.body.tools.length));
    expect(msg.toolsOffered[0].catalog).toBe(offeredOf(mesh).length);
    expect(events.filter((e) => e.type === 'tools-offered').length).toBe(3);
  });

  it('honours max tools and pinned tools from the dialog', async () => {
    const node = await load([{ content: 'ok' }], { maxTools: 6, maxToolTokens: 4000, pinnedTools: 'pi-garage-17/system_uptime' });
    const out = next('out');
    node.receive({ payload: 'restart nginx on pi-greenhouse-1' });
    const msg = await out;
    const tools = llm!.requests[0].body.tools.map((t: any) => t.function.name);
    expect(tools.length).toBe(6);
    expect(tools).toContain('pi-garage-17__system_uptime');
    expect(tools).toContain('pi-greenhouse-1__docker_restart_container');
    expect(tools.slice(0, -2)).toEqual([...tools.slice(0, -2)].sort());
    expect(msg.toolsOffered[0].tools.find((t: any) => t.name === 'pi-garage-17__system_uptime').reason).toBe('pinned');
  });

  it('sends the same tool block in every run of a session, whatever it is about; another session and a reset choose their own', async () => {
    const node = await load(() => ({ content: 'ok' }));
    const ask = async (payload: string, extra: Record<string, unknown> = {}) => {
      const out = next('out');
      node.receive({ payload, ...extra });
      return out;
    };
    await ask('restart nginx on pi-greenhouse-1', { topic: 'a' });
    await ask('take a photo with the nursery robot', { topic: 'a' });
    await ask('how full is the disk of the study desktop', { topic: 'a' });
    const [a1, a2, a3] = llm!.requests.map((r) => JSON.stringify(r.body.tools));
    expect(a2).toBe(a1);
    expect(a3).toBe(a1);
    // the remembered history grew; the request starts the same way (system, first turn)
    expect(llm!.requests[2].body.messages.slice(0, 3)).toEqual(llm!.requests[1].body.messages.slice(0, 3));
    await ask('take a photo with the nursery robot', { topic: 'b' });
    expect(JSON.stringify(llm!.requests[3].body.tools)).not.toBe(a1);
    await ask('take a photo with the nursery robot', { topic: 'a', reset: true });
    expect(JSON.stringify(llm!.requests[4].body.tools)).toBe(JSON.stringify(llm!.requests[3].body.tools));
  });

  it('ends the run with CONTEXT_LENGTH, naming the prompt size, when the server says the context overflowed', async () => {
    // Ollama's answer on /v1/chat/completions once truncation dropped the user message (ollama/ollama#18107); the client retries a 500 once
    const node = await load(() => ({ error: { status: 500, message: 'no user query found in messages' } }));
    const caught = next('caught');
    node.receive({ payload: 'restart nginx on pi-garage-17' });
    const msg = await caught;
    expect(msg.error.message).toMatch(/CONTEXT_LENGTH: .*about \d+ prompt tokens.*OLLAMA_CONTEXT_LENGTH/);
  });
});
