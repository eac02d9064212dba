/**
 * llm-agent as a chat page needs it (issue 21): every message of a run carries the input's
 * `_client` (Dashboard 2.0's routing) and `sessionId`; run events report the confirm-gate holds
 * of the run's own calls (`tool-call-held`, `tool-call-settled`, from `toolmeshEvents`, emitted
 * here as a gate would) and stop listening when the run ends; `tool-call-end` carries what a card
 * shows of the result.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool, toolErrorResult, type CallToolResult } from '../../protocol';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import { until } from '../../test/support/until';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';
import { toolmeshEvents, type HeldEvent } from '../shared/events';
import toolRegistryNode from '../tool-registry/tool-registry';
import llmAgentNode from './llm-agent';

// node-red-node-test-helper ships no types
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const ENV_KEYS = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY', 'TOOLMESH_LLM_MODEL'];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const PNG = Buffer.from('\x89PNG\r\n\x1a\n a tiny picture').toString('base64');
const tools = [
  defineTool({ name: 'restart', description: 'Restarts a container.', risk: 'high', input: z.object({ name: z.string() }), execute: (a) => ({ restarted: a.name }) }),
  defineTool({
    name: 'photo', description: 'Takes a photo.', risk: 'low', input: z.object({}),
    execute: (): CallToolResult => ({ content: [{ type: 'text', text: 'photo taken' }, { type: 'image', mimeType: 'image/png', data: PNG }, { type: 'image', mimeType: 'image/svg+xml', data: PNG }] }),
  }),
];

let llm: FakeLlm | undefined;
let agent: RpcServer | undefined;

beforeAll(() => { for (const k of ENV_KEYS) delete process.env[k]; });
afterAll(() => { for (const k of ENV_KEYS) if (savedEnv[k] !== undefined) process.env[k] = savedEnv[k]; });
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await helper.unload();
  await llm?.close();
  llm = undefined;
});

interface Got { out: any[]; calls: any[]; events: any[]; caught: any[] }

/**
 * llm-agent `llm` in direct mode with approval from high risk and progress on (outputs → `out`,
 * `calls`, `events`), a catch → `caught`, the registry's embedded broker and agent `pi`. Output 2
 * goes to a helper: the test plays the gate and sends the result back.
 */
async function load(script: FakeScript, props: Record<string, unknown> = {}) {
  llm = await startFakeLlm(script);
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([toolRegistryNode, llmAgentNode], [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'llm-agent-chat-test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake-model', maxIterations: 3, mode: 'direct', approvalRisk: 'high', progress: true, wires: [['out'], ['calls'], ['events']], ...props },
    ...['out', 'calls', 'events', 'caught'].map((id) => ({ id, type: 'helper', ...at })),
    { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
  ], { llm: { apiKey: 'sk-test' } });
  const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');
  agent = new RpcServer({ authorization: { keys: new Map(), policy: { approvalRequiredFrom: 'critical' } }, connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
  await agent.start();
  await until(() => helper.getNode('reg').listTools().length === tools.length, 'the agent\'s tools');
  const got: Got = { out: [], calls: [], events: [], caught: [] };
  for (const key of Object.keys(got) as (keyof Got)[]) helper.getNode(key).on('input', (m: any) => got[key].push(m));
  return { node: helper.getNode('llm'), got };
}

/** A hold as confirm-gate emits it, of the call with wired id `callId`. */
function held(callId: string | undefined, approvalId: string): HeldEvent {
  const now = Date.now();
  return { gate: 'gate1', approvalId, ...(callId ? { callId } : {}), summary: 'Restart container web on pi', agent: 'pi', tool: 'restart', risk: 'high', requestedAt: now, expiresAt: now + 60_000 };
}

const restart = (id: string) => ({ toolCalls: [{ id, name: 'pi__restart', arguments: { name: 'web' } }] });
const listeners = () => [toolmeshEvents.listenerCount('held'), toolmeshEvents.listenerCount('settled')];
const types = (events: any[]) => events.map((e) => e.payload.type);

describe('llm-agent for a chat page', () => {
  it('reports the hold of its own call (held, then settled with who decided), carries _client and sessionId on outputs 1, 2 and 3, and stops listening when the run ends', async () => {
    const before = listeners();
    const { node, got } = await load([restart('c1'), { content: 'Restarted web.' }]);
    const client = { socketId: 'sock-a', socketIp: '127.0.0.1' };
    node.receive({ payload: 'Restart web', sessionId: 'conv-a', _client: client });
    const call = await until(() => got.calls[0], 'the held call on output 2');
    expect(call).toMatchObject({ sessionId: 'conv-a', _client: client, toolCall: { agent: 'pi', tool: 'restart', modelCallId: 'c1' } });
    expect(listeners()).toEqual([before[0] + 1, before[1] + 1]);
    // another caller's hold and another run's call are not this run's
    toolmeshEvents.emit('held', held(undefined, 'ap-mcp'));
    toolmeshEvents.emit('held', held('tc-someone-else-1', 'ap-other'));
    toolmeshEvents.emit('held', held(call.toolCall.id, 'ap-1'));
    toolmeshEvents.emit('settled', { gate: 'gate1', approvalId: 'ap-other', callId: 'tc-someone-else-1', outcome: 'approved', by: 'bob', ts: Date.now() });
    toolmeshEvents.emit('settled', { gate: 'gate1', approvalId: 'ap-1', callId: call.toolCall.id, outcome: 'approved', by: 'alice', ts: Date.now() });
    await until(() => got.events.some((e) => e.payload.type === 'tool-call-settled'), 'the settled event');
    node.receive({ toolCall: call.toolCall, toolResult: { restarted: 'web' } });
    const answer = await until(() => got.out[0], 'the answer');
    expect(answer).toMatchObject({ payload: 'Restarted web.', sessionId: 'conv-a', _client: client });
    expect(types(got.events)).toEqual(['turn-start', 'tool-call-start', 'tool-call-held', 'tool-call-settled', 'tool-call-end', 'turn-start']);
    expect(got.events.every((e) => e.topic === 'conv-a' && e.sessionId === 'conv-a' && e._client?.socketId === 'sock-a')).toBe(true);
    const [, , heldEvent, settledEvent, end] = got.events.map((e) => e.payload);
    expect(heldEvent).toEqual({ type: 'tool-call-held', id: 'c1', approvalId: 'ap-1', gate: 'gate1', summary: 'Restart container web on pi', agent: 'pi', tool: 'restart', risk: 'high', expiresAt: expect.any(Number) });
    expect(settledEvent).toEqual({ type: 'tool-call-settled', id: 'c1', approvalId: 'ap-1', outcome: 'approved', by: 'alice' });
    expect(end).toMatchObject({ call: { id: 'c1', ok: true }, result: { text: '{"restarted":"web"}', images: [], imagesOmitted: 0 } });
    await until(() => listeners()[0] === before[0] && listeners()[1] === before[1], 'the listeners to go');
    // a hold after the run reaches nobody
    toolmeshEvents.emit('held', held(call.toolCall.id, 'ap-late'));
    expect(got.events).toHaveLength(6);
  });

  it('keeps two conversations apart: each run reports only its own hold, under its own _client', async () => {
    const { node, got } = await load((body) => (body.messages.some((m: any) => m.role === 'tool') ? { content: `done for ${body.messages.find((m: any) => m.role === 'user').content}` } : restart('c1')));
    node.receive({ payload: 'first', sessionId: 'conv-a', _client: { socketId: 'a' } });
    node.receive({ payload: 'second', sessionId: 'conv-b', _client: { socketId: 'b' } });
    await until(() => got.calls.length === 2, 'both calls');
    const [a, b] = ['conv-a', 'conv-b'].map((s) => got.calls.find((c) => c.sessionId === s));
    // both models named their call c1: the wired ids tell them apart
    expect(a.toolCall.id).not.toBe(b.toolCall.id);
    toolmeshEvents.emit('held', held(b.toolCall.id, 'ap-b'));
    await until(() => got.events.some((e) => e.payload.type === 'tool-call-held'), 'the held event');
    for (const c of [a, b]) node.receive({ toolCall: c.toolCall, toolResult: 'ok' });
    await until(() => got.out.length === 2, 'both answers');
    const heldEvents = got.events.filter((e) => e.payload.type === 'tool-call-held');
    expect(heldEvents.map((e) => [e.sessionId, e._client.socketId, e.payload.approvalId])).toEqual([['conv-b', 'b', 'ap-b']]);
    expect(got.out.map((m) => [m.sessionId, m._client.socketId, m.payload]).sort()).toEqual([['conv-a', 'a', 'done for first'], ['conv-b', 'b', 'done for second']]);
    for (const e of got.events) expect(e._client.socketId).toBe(e.sessionId === 'conv-a' ? 'a' : 'b');
  });

  it('reports a denial and the DENIED result on the card', async () => {
    const { node, got } = await load([restart('c1'), { content: 'Not restarted: denied.' }]);
    node.receive({ payload: 'Restart web', sessionId: 'conv-a' });
    const call = await until(() => got.calls[0], 'the held call');
    expect(call).not.toHaveProperty('_client');
    toolmeshEvents.emit('held', held(call.toolCall.id, 'ap-1'));
    toolmeshEvents.emit('settled', { gate: 'gate1', approvalId: 'ap-1', callId: call.toolCall.id, outcome: 'denied', by: 'dashboard', ts: Date.now() });
    await until(() => got.events.some((e) => e.payload.type === 'tool-call-settled'), 'the settled event');
    node.receive({ toolCall: call.toolCall, toolResult: toolErrorResult('DENIED', 'denied by dashboard') });
    await until(() => got.out[0], 'the answer');
    const end = got.events.find((e) => e.payload.type === 'tool-call-end').payload;
    expect(end).toMatchObject({ call: { ok: false, code: 'DENIED' }, result: { text: 'DENIED: denied by dashboard' } });
    expect(got.events.find((e) => e.payload.type === 'tool-call-settled').payload).toMatchObject({ outcome: 'denied', by: 'dashboard' });
  });

  it('puts a result\'s images of allowed types on tool-call-end, leaving out SVG', async () => {
    const { node, got } = await load([{ toolCalls: [{ id: 'p1', name: 'pi__photo', arguments: {} }] }, { content: 'Here it is.' }]);
    node.receive({ payload: 'Photo please', _client: { socketId: 's' } });
    await until(() => got.out[0], 'the answer');
    const end = got.events.find((e) => e.payload.type === 'tool-call-end');
    expect(end.payload.result).toEqual({ text: 'photo taken', images: [{ mimeType: 'image/png', data: PNG }], imagesOmitted: 1 });
    expect(end).toMatchObject({ topic: 'default', sessionId: 'default', _client: { socketId: 's' } });
  });

  it('stops listening when a run fails and when the node closes during a hold, leaving no listener behind', async () => {
    const before = listeners();
    const { node, got } = await load((_b, i) => restart(`c${i}`), { maxIterations: 2, wiredTimeoutMs: 200 });
    node.receive({ payload: 'loop', _client: { socketId: 'x' } });
    const caught = await until(() => got.caught[0], 'the failure');
    expect(caught.error.message).toMatch(/MAX_ITERATIONS/);
    expect(caught._client).toEqual({ socketId: 'x' });
    await until(() => listeners()[0] === before[0] && listeners()[1] === before[1], 'the listeners to go after a failure');
    node.receive({ payload: 'again' });
    await until(() => got.calls.length === 2, `the second run's held call (got ${JSON.stringify(got.caught.map((c) => c.error.message))})`);
    expect(listeners()).toEqual([before[0] + 1, before[1] + 1]);
    await helper.clearFlows();
    await until(() => listeners()[0] === before[0] && listeners()[1] === before[1], 'the listeners to go after close');
  });

  it('without progress listens for nothing', async () => {
    const before = listeners();
    const { node, got } = await load([restart('c1'), { content: 'ok' }], { progress: false });
    node.receive({ payload: 'Restart web' });
    await until(() => got.calls[0], 'the held call');
    expect(listeners()).toEqual(before);
    node.receive({ toolCall: got.calls[0].toolCall, toolResult: 'ok' });
    await until(() => got.out[0], 'the answer');
    expect(got.events).toEqual([]);
  });
});
