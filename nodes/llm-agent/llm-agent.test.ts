import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import toolRegistryNode from '../tool-registry/tool-registry';
import llmAgentNode from './llm-agent';
import { until } from '../../test/support/until';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const ENV_KEYS = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY', 'TOOLMESH_LLM_MODEL'];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const ran: string[] = [];
const tools = [
  defineTool({ name: 'uptime', description: 'Seconds since boot.', risk: 'low', input: z.object({ unit: z.enum(['s', 'h']) }), execute: (a) => { ran.push(`uptime:${a.unit}`); return { uptime: 42, unit: a.unit }; } }),
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
  ran.length = 0;
});


/** Resolves with the next message the helper node `id` receives. */
const nextMessage = (id: string) => new Promise<any>((resolve) => helper.getNode(id).once('input', resolve));

/**
 * Loads tool-registry (embedded broker on a free port) + llm-agent + output and catch helpers,
 * starts an agent with `tools` on that broker and waits until the registry offers them.
 */
async function load(agentProps: Record<string, unknown>, script: FakeScript = [], credentials: Record<string, unknown> = { apiKey: 'sk-test' }) {
  llm = await startFakeLlm(script, { apiKey: 'sk-test' });
  // flow nodes need x and y: without them Node-RED treats a node as a config node
  const at = { z: 'f1', x: 0, y: 0 };
  const flow = [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'llm-agent-test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, name: 'agent', registry: 'reg', baseUrl: llm.url, model: 'fake-model', maxIterations: 3, wires: [['out']], ...agentProps },
    { id: 'out', type: 'helper', ...at },
    { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', ...at },
  ];
  await helper.load([toolRegistryNode, llmAgentNode], flow, { llm: credentials });
  const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');
  agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
  await agent.start();
  await until(() => helper.getNode('reg').listTools().length === 1, 'the agent\'s tool');
  return helper.getNode('llm');
}

/** The status texts the node showed, in order. */
const statusTexts = (node: any): string[] => node.status.getCalls().map((c: any) => c.args[0].text);

describe('llm-agent node', () => {
  it('answers a prompt, running the tool through the registry, with toolCalls, transcript and usage', async () => {
    const node = await load({ systemPrompt: 'You run a Pi.' }, [
      { toolCalls: [{ id: 'c1', name: 'pi__uptime', arguments: { unit: 'h' } }], usage: { prompt_tokens: 7, completion_tokens: 3 } },
      { content: 'Up 42 hours.', usage: { prompt_tokens: 9, completion_tokens: 2 } },
    ]);
    const out = nextMessage('out');
    node.receive({ payload: 'How long has the Pi been up?', topic: 'keep' });
    const msg = await out;
    expect(msg.payload).toBe('Up 42 hours.');
    expect(msg.topic).toBe('keep');
    expect(ran).toEqual(['uptime:h']);
    expect(msg.toolCalls).toEqual([{ id: 'c1', name: 'pi__uptime', agent: 'pi', tool: 'uptime', arguments: { unit: 'h' }, durationMs: expect.any(Number), startedAt: expect.any(Number), endedAt: expect.any(Number), ok: true }]);
    expect(msg.messages.map((m: any) => m.role)).toEqual(['system', 'user', 'assistant', 'tool', 'assistant']);
    expect(msg.usage).toEqual({ prompt_tokens: 16, completion_tokens: 5, total_tokens: 21 });
    const second = llm!.requests[1];
    expect(second.headers.authorization).toBe('Bearer sk-test');
    expect(second.body.messages.find((m: any) => m.role === 'tool')).toEqual({ role: 'tool', tool_call_id: 'c1', content: '{"uptime":42,"unit":"h"}' });
    await until(() => statusTexts(node).some((t) => t.startsWith('llm-agent.status.done')), 'status done');
    expect(statusTexts(node)).toEqual(expect.arrayContaining(['llm-agent.status.thinking', 'llm-agent.status.calling', 'node-red:common.status.connected']));
  });

  it('continues a conversation from msg.messages and runs concurrent messages independently', async () => {
    const node = await load({}, (body) => ({ content: `answer to ${body.messages.at(-1).content}`, delayMs: body.messages.at(-1).content === 'first' ? 100 : 0 }));
    const got: any[] = [];
    helper.getNode('out').on('input', (m: any) => got.push(m));
    node.receive({ payload: 'first' });
    node.receive({ messages: [{ role: 'user', content: 'earlier' }, { role: 'assistant', content: 'ok' }], payload: 'second' });
    await until(() => got.length === 2, 'two answers');
    expect(got.map((m) => m.payload)).toEqual(['answer to second', 'answer to first']);
    expect(got[0].messages.map((m: any) => m.content)).toEqual(['earlier', 'ok', 'second', 'answer to second']);
  });

  it('sends a max-iterations failure to the Catch node with the run so far', async () => {
    const node = await load({}, (_b, i) => ({ toolCalls: [{ id: `c${i}`, name: 'pi__uptime', arguments: { unit: 's' } }] }));
    const caught = nextMessage('caught');
    let answered = false;
    helper.getNode('out').on('input', () => { answered = true; });
    node.receive({ payload: 'loop forever' });
    const msg = await caught;
    expect(msg.error.message).toMatch(/MAX_ITERATIONS: no final answer after 3 LLM requests/);
    expect(msg.error.source.id).toBe('llm');
    expect(msg.toolCalls).toHaveLength(2);
    expect(ran).toEqual(['uptime:s', 'uptime:s']);
    expect(answered).toBe(false);
    expect(node.status.lastCall.args[0]).toMatchObject({ fill: 'red', text: 'llm-agent.status.failed' });
  });

  it('names the HTTP status of a failing endpoint in the error', async () => {
    const node = await load({}, [], { apiKey: 'wrong' });
    const caught = nextMessage('caught');
    node.receive({ payload: 'hi' });
    expect((await caught).error.message).toMatch(/answered HTTP 401: Incorrect API key provided.*check the API key/);
  });

  it('without base URL and API key shows a status and fails each message clearly', async () => {
    const node = await load({ baseUrl: '' }, [], {});
    expect(node.status.getCalls().map((c: any) => c.args[0])).toContainEqual({ fill: 'yellow', shape: 'ring', text: 'llm-agent.status.no-endpoint' });
    const caught = nextMessage('caught');
    node.receive({ payload: 'hi' });
    const msg = await caught;
    expect(msg.error.message).toContain('llm-agent.errors.no-endpoint');
    expect(llm!.requests).toHaveLength(0);
    // a reset alone needs no endpoint (it only clears memory): no error, and the status still says what is missing
    const errors: unknown[] = [];
    helper.getNode('caught').on('input', (m: unknown) => errors.push(m));
    node.receive({ reset: true });
    await new Promise((r) => setTimeout(r, 100));
    expect(errors).toEqual([]);
    expect(node.status.lastCall.args[0]).toEqual({ fill: 'yellow', shape: 'ring', text: 'llm-agent.status.no-endpoint' });
    // a reset together with a question still fails clearly
    const again = nextMessage('caught');
    node.receive({ reset: true, payload: 'hi' });
    expect((await again).error.message).toContain('llm-agent.errors.no-endpoint');
  });

  it('aborts running LLM requests when closed, then logs that the run ended with the node', async () => {
    const node = await load({}, [{ content: 'too late', delayMs: 10_000 }]);
    node.receive({ payload: 'slow one' });
    await until(() => llm!.requests.length === 1, 'the LLM request');
    await helper.clearFlows();
    await until(() => llm!.requests[0].aborted, 'the aborted LLM request');
    // to the runtime log (no msg): the flow's Catch nodes are stopping too
    await until(() => node.error.called, 'the error');
    expect(node.error.lastCall.args).toEqual(['llm-agent.errors.closed']);
  });
});
