/**
 * "Max parallel tool calls" of the llm-agent node on the wired path: at most that many calls of
 * one model turn are out on output 2 at once, the next leaves when a result comes back, calls
 * beyond 4 × the setting come back to the model as BUSY, and a node that closes sends no waiting
 * call. Real pieces: Node-RED (node-red-node-test-helper), the tool-registry with its embedded
 * broker, remote-tool, an agent (RpcServer), the scripted LLM on the OpenAI wire format.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import { startFakeLlm, type FakeLlm, type FakeScript } from '../../test/support/fake-llm';
import { until } from '../../test/support/until';
import remoteToolNode from '../remote-tool/remote-tool';
import toolRegistryNode from '../tool-registry/tool-registry';
import llmAgentNode from './llm-agent';
import catalog from './locales/en-US/llm-agent.json';
import { withCatalog } from '../../test/support/i18n';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const ENV_KEYS = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY', 'TOOLMESH_LLM_MODEL'];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** The slow tool's bookkeeping: calls running now and the most that ever ran at once. */
const load = { active: 0, max: 0, ran: 0 };
const tools = [
  defineTool({
    name: 'slow', description: 'Takes a while.', risk: 'low', input: z.object({ n: z.number().int() }),
    execute: async (a) => {
      load.ran++;
      load.active++;
      load.max = Math.max(load.max, load.active);
      await sleep(80);
      load.active--;
      return { n: a.n };
    },
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
  Object.assign(load, { active: 0, max: 0, ran: 0 });
});

/**
 * Loads tool-registry (embedded broker) + llm-agent `llm` in wired mode (output 1 → `out`, output 2 →
 * `out2`, run events → `events`) + remote-tool `rt` wired back into `llm`, starts agent `pi` and waits for its tool.
 */
async function setup(props: Record<string, unknown>, script: FakeScript, out2: string[]) {
  llm = await startFakeLlm(script);
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([toolRegistryNode, withCatalog(llmAgentNode, catalog), remoteToolNode], [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'llm-parallel-test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake-model', mode: 'wired', progress: true, wires: [['out'], out2, ['events']], ...props },
    { id: 'rt', type: 'toolmesh-remote-tool', ...at, registry: 'reg', wires: [['llm']] },
    ...['out', 'calls', 'events'].map((id) => ({ id, type: 'helper', ...at })),
  ], { llm: { apiKey: 'sk-test' } });
  const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');
  agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
  await agent.start();
  await until(() => helper.getNode('reg').listTools().length === 1, 'the agent\'s tool');
  const got = { out: [] as any[], calls: [] as any[], events: [] as any[] };
  for (const key of ['out', 'calls', 'events'] as const) helper.getNode(key).on('input', (m: any) => got[key].push(m));
  return { node: helper.getNode('llm'), got };
}

const slowCalls = (count: number) => ({ toolCalls: Array.from({ length: count }, (_, n) => ({ id: `c${n}`, name: 'pi__slow', arguments: { n } })) });
const ids = (count: number) => Array.from({ length: count }, (_, n) => `c${n}`);
const toolMessages = (i: number) => llm!.requests[i].body.messages.filter((m: any) => m.role === 'tool');

describe('llm-agent max parallel tool calls (wired)', () => {
  it('has at most that many calls out on output 2; the next leaves when a result comes back, in call order', async () => {
    const { node, got } = await setup({ maxParallelToolCalls: 2 }, [slowCalls(5), { content: 'five' }], ['calls']);
    node.receive({ payload: 'go' });
    await until(() => got.calls.length === 2, 'two calls out');
    await sleep(300);
    expect(got.calls).toHaveLength(2);
    for (let k = 0; k < 5; k++) {
      await until(() => got.calls.length === Math.min(k + 2, 5), `call ${k + 2} out`);
      expect(got.calls.map((m) => m.toolCall.modelCallId)).toEqual(ids(Math.min(k + 2, 5)));
      node.receive({ toolCall: got.calls[k].toolCall, toolResult: `result ${k}` });
    }
    const msg = await until(() => got.out[0], 'the answer');
    expect(msg.payload).toBe('five');
    expect(toolMessages(1).map((m: any) => [m.tool_call_id, m.content])).toEqual(ids(5).map((id, k) => [id, `result ${k}`]));
  });

  it('runs calls through remote-tool at most that many at once, and gives the model BUSY for those beyond 4 ×', async () => {
    const { node, got } = await setup({ maxParallelToolCalls: 2 }, [slowCalls(10), { content: 'eight ran' }], ['rt', 'calls']);
    node.receive({ payload: 'go' });
    const msg = await until(() => got.out[0], 'the answer');
    expect(msg.payload).toBe('eight ran');
    expect(load).toMatchObject({ ran: 8, max: 2 });
    expect(got.calls).toHaveLength(8);
    const results = toolMessages(1);
    expect(results.map((m: any) => m.tool_call_id)).toEqual(ids(10));
    expect(results.slice(8).map((m: any) => m.content)).toEqual(Array(2).fill('BUSY: too many tool calls in one turn: 10 named, at most 8 run; call the rest in a later turn'));
    expect(msg.toolCalls.map((c: any) => c.code ?? 'ok')).toEqual([...Array(8).fill('ok'), 'BUSY', 'BUSY']);
  });

  it('sends no waiting call once the node closes', async () => {
    const { node, got } = await setup({ maxParallelToolCalls: 1 }, [slowCalls(3), { content: 'never' }], ['calls']);
    node.receive({ payload: 'go' });
    await until(() => got.calls.length === 1, 'the first call out');
    await node.close(false);
    await sleep(300);
    expect(got.calls).toHaveLength(1);
    // the waiting calls did not start at all (not even to be cancelled at once)
    expect(got.events.filter((m) => m.payload.type === 'tool-call-start').map((m) => m.payload.id)).toEqual(['c0']);
    expect(llm!.requests).toHaveLength(1);
  });
});
