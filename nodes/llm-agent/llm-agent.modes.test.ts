/**
 * llm-agent node features around its outputs: wired mode (every call on output 2, results back
 * into the input), direct mode's approval routing, progress events on output 3, a remembered
 * fallback to JSON-in-text tool calls, and the run limits. Memory and images are in
 * llm-agent.memory.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import { startFakeLlm, type FakeLlm, type FakeLlmOptions, type FakeScript } from '../../test/support/fake-llm';
import { until } from '../../test/support/until';
import remoteToolNode from '../remote-tool/remote-tool';
import toolRegistryNode from '../tool-registry/tool-registry';
import llmAgentNode from './llm-agent';
import catalog from './locales/en-US/llm-agent.json';
import { translator, withCatalog } from '../../test/support/i18n';
import { NODE_RED_MAIN } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const ENV_KEYS = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY', 'TOOLMESH_LLM_MODEL'];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
/** How often each tool ran. */
const ran: Record<string, number> = {};
const count = (tool: string) => { ran[tool] = (ran[tool] ?? 0) + 1; };
const tools = [
  // slower than disk, so results of one turn come back out of call order
  defineTool({ name: 'uptime', description: 'Seconds since boot.', risk: 'low', input: z.object({ unit: z.enum(['s', 'h']) }), execute: async (a) => { await sleep(100); count('uptime'); return { uptime: 42, unit: a.unit }; } }),
  defineTool({ name: 'disk', description: 'Free disk space.', risk: 'low', input: z.object({}), execute: () => { count('disk'); return { freeGb: 7 }; } }),
  defineTool({ name: 'wipe', description: 'Erases the disk.', risk: 'high', input: z.object({}), execute: () => { count('wipe'); return { wiped: true }; } }),
];

const translate = translator(catalog);
const llmAgentWithCatalog = withCatalog(llmAgentNode, catalog);

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
  for (const k of Object.keys(ran)) delete ran[k];
});

/** What the helper nodes received: answers (output 1), tool calls (output 2), run events (output 3), caught errors. */
interface Got { out: any[]; calls: any[]; events: any[]; caught: any[] }

/**
 * Loads tool-registry (embedded broker, port 0) + llm-agent `llm` (outputs → `out`, `out2`, `events`)
 * + remote-tool `rt` (dynamic, wired back into `llm`) + catch → `caught`; starts agent `pi` with
 * the tools and waits until the registry offers them.
 */
async function load(props: Record<string, unknown>, script: FakeScript, out2: string[] = ['calls'], llmOpts: FakeLlmOptions = {}) {
  llm = await startFakeLlm(script, llmOpts);
  const at = { z: 'f1', x: 0, y: 0 }; // without x/y Node-RED takes a node for a config node
  await helper.load([toolRegistryNode, llmAgentWithCatalog, remoteToolNode], [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'llm-agent-test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake-model', maxIterations: 4, wires: [['out'], out2, ['events']], ...props },
    { id: 'rt', type: 'toolmesh-remote-tool', ...at, registry: 'reg', wires: [['llm']] },
    ...['out', 'calls', 'events', 'caught'].map((id) => ({ id, type: 'helper', ...at })),
    { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
  ], { llm: { apiKey: 'sk-test' } });
  const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');
  // this agent's policy lets high-risk calls run without a token (approval from critical), so the
  // llm-agent's own approval setting is what the tests see
  agent = new RpcServer({ authorization: { keys: new Map(), policy: { approvalRequiredFrom: 'critical' } }, connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
  await agent.start();
  await until(() => helper.getNode('reg').listTools().length === tools.length, 'the agent\'s tools');
  const got: Got = { out: [], calls: [], events: [], caught: [] };
  for (const key of Object.keys(got) as (keyof Got)[]) helper.getNode(key).on('input', (m: any) => got[key].push(m));
  const node = helper.getNode('llm');
  /** Sends `msg` in and resolves with the answer; fails fast with the error when one is caught instead. */
  const ask = (msg: Record<string, unknown>) => {
    const [n, c] = [got.out.length, got.caught.length];
    node.receive(msg);
    return until(() => {
      if (got.caught.length > c) throw new Error(`caught: ${got.caught[c].error.message}`);
      return got.out[n];
    }, 'the answer');
  };
  return { node, got, ask };
}

/** What llm-agent (not the other nodes, which share the spies) passed to `node.<method>`. */
const callsOf = (method: 'warn' | 'status') => helper.getNode('llm')[method].getCalls().filter((c: any) => c.thisValue?.id === 'llm').map((c: any) => c.args[0]);
/** The tool messages of LLM request `i`. */
const toolMessages = (i: number) => llm!.requests[i].body.messages.filter((m: any) => m.role === 'tool');
const uptimeThenDisk = { toolCalls: [{ id: 'c1', name: 'pi__uptime', arguments: { unit: 'h' } }, { id: 'c2', name: 'pi__disk', arguments: {} }] };

describe('llm-agent wired mode', () => {
  it('sends every call out on output 2; remote-tool runs it and the results come back in call order', async () => {
    const { got, ask } = await load({ mode: 'wired' }, [uptimeThenDisk, { content: 'Up 42 h, 7 GB free.' }], ['rt', 'calls']);
    const msg = await ask({ payload: 'Status?' });
    expect(msg.payload).toBe('Up 42 h, 7 GB free.');
    expect(ran).toEqual({ uptime: 1, disk: 1 });
    expect(msg.toolCalls.map((c: any) => [c.id, c.agent, c.tool, c.ok])).toEqual([['c1', 'pi', 'uptime', true], ['c2', 'pi', 'disk', true]]);
    expect(toolMessages(1)).toEqual([
      { role: 'tool', tool_call_id: 'c1', content: '{"uptime":42,"unit":"h"}' },
      { role: 'tool', tool_call_id: 'c2', content: '{"freeGb":7}' },
    ]);
    expect(got.calls).toHaveLength(2);
    expect(got.calls[0].toolCall).toMatchObject({ id: expect.stringMatching(/^tc-/), name: 'pi__uptime', agent: 'pi', tool: 'uptime', arguments: { unit: 'h' }, risk: 'low', modelCallId: 'c1' });
    expect(got.calls[0].payload).toEqual({ unit: 'h' });
    expect(got.calls[1].toolCall).toMatchObject({ name: 'pi__disk', agent: 'pi', tool: 'disk', arguments: {}, risk: 'low', modelCallId: 'c2' });
    expect(got.calls[0].toolCall.id).not.toBe(got.calls[1].toolCall.id);
    expect(got.caught).toEqual([]);
  });

  it('takes msg.toolResult from any flow, as text for the model', async () => {
    const { node, got, ask } = await load({ mode: 'wired' }, [{ toolCalls: [{ id: 'c1', name: 'pi__uptime', arguments: { unit: 's' } }] }, { content: 'It is 42.' }]);
    const answer = ask({ payload: 'Uptime?' });
    const call = await until(() => got.calls[0], 'the tool call');
    node.receive({ toolCall: call.toolCall, toolResult: 'forty-two' });
    expect((await answer).payload).toBe('It is 42.');
    expect(toolMessages(1)).toEqual([{ role: 'tool', tool_call_id: 'c1', content: 'forty-two' }]);
    expect(ran).toEqual({});
  });

  it('answers a msg.toolResult that breaks the contract as EXECUTION_FAILED naming the field, and tells Catch nodes', async () => {
    const { node, got } = await load({ mode: 'wired' }, [{ toolCalls: [{ id: 'c1', name: 'pi__uptime', arguments: { unit: 's' } }] }, { content: 'The tool failed.' }]);
    node.receive({ payload: 'Uptime?' });
    const call = await until(() => got.calls[0], 'the tool call');
    node.receive({ toolCall: call.toolCall, toolResult: { content: [{ text: 'no type' }] } });
    expect((await until(() => got.out[0], 'the answer')).payload).toBe('The tool failed.');
    const expected = translate('llm-agent.errors.bad-result', { field: 'msg.toolResult.content.0', expected: translate('llm-agent.expect.content'), got: 'object' });
    expect(toolMessages(1)).toEqual([{ role: 'tool', tool_call_id: 'c1', content: `EXECUTION_FAILED: ${expected}` }]);
    expect(got.caught[0].error.message).toBe(`Error: ${expected}`);
  });

  it('turns a call that never comes back into TIMEOUT, and ignores its late result with a warning', async () => {
    const { node, got, ask } = await load({ mode: 'wired', wiredTimeoutMs: 200 }, [{ toolCalls: [{ id: 'c1', name: 'pi__disk', arguments: {} }] }, { content: 'The disk did not answer.' }]);
    const msg = await ask({ payload: 'Disk?' });
    expect(msg.payload).toBe('The disk did not answer.');
    expect(toolMessages(1)[0].content).toMatch(/^TIMEOUT: no result came back for pi\/disk within 200 ms/);
    expect(msg.toolCalls[0]).toMatchObject({ ok: false, code: 'TIMEOUT' });
    const late = got.calls[0].toolCall;
    node.receive({ toolCall: late, toolResult: 'too late' });
    await until(() => callsOf('warn').some((w: string) => w.includes(late.id)), 'the warning');
    await sleep(100);
    expect(callsOf('warn')).toContain(translate('llm-agent.warn.unknown-result', { id: late.id }));
    expect([got.out.length, got.calls.length, got.caught.length, llm!.requests.length]).toEqual([1, 1, 0, 2]);
  });

  it('with output 2 unwired shows a config error and fails each message to the Catch node', async () => {
    const { node, got } = await load({ mode: 'wired' }, [], []);
    const problem = translate('llm-agent.errors.wired-needs-output');
    expect(callsOf('status')).toContainEqual({ fill: 'red', shape: 'ring', text: 'invalid configuration' });
    expect(callsOf('warn')).toContain(problem);
    node.receive({ payload: 'hi' });
    const caught = await until(() => got.caught[0], 'the error');
    expect(caught.error).toMatchObject({ message: `Error: ${problem}`, source: { id: 'llm' } });
    expect(llm!.requests).toHaveLength(0);
  });
});

describe('llm-agent direct mode approval', () => {
  const wipeAndUptime = { toolCalls: [{ id: 'c1', name: 'pi__wipe', arguments: {} }, { id: 'c2', name: 'pi__uptime', arguments: { unit: 'h' } }] };

  it('sends a high-risk call out on output 2 and calls a low one directly; a denial reaches the model', async () => {
    const { node, got, ask } = await load({}, [wipeAndUptime, { content: 'Wipe was denied; up 42 h.' }]);
    const answer = ask({ payload: 'Wipe it and tell me the uptime.' });
    const call = await until(() => got.calls[0], 'the approval request');
    expect(call.toolCall).toMatchObject({ agent: 'pi', tool: 'wipe', risk: 'high', modelCallId: 'c1' });
    node.receive({ toolCall: call.toolCall, toolResult: { isError: true, content: [{ type: 'text', text: 'denied' }], structuredContent: { error: { code: 'DENIED', message: 'the operator said no' } } } });
    const msg = await answer;
    expect(msg.payload).toBe('Wipe was denied; up 42 h.');
    expect(toolMessages(1).map((m: any) => m.content)).toEqual(['DENIED: the operator said no', '{"uptime":42,"unit":"h"}']);
    expect(msg.toolCalls.map((c: any) => c.code ?? 'ok')).toEqual(['DENIED', 'ok']);
    expect(ran).toEqual({ uptime: 1 });
    expect(got.calls).toHaveLength(1);
  });

  it('with output 2 unwired answers APPROVAL_REQUIRED and never runs the tool', async () => {
    const { got, ask } = await load({}, [wipeAndUptime, { content: 'Wipe needs approval.' }], []);
    const msg = await ask({ payload: 'Wipe it.' });
    expect(toolMessages(1)[0].content).toBe(`APPROVAL_REQUIRED: ${translate('llm-agent.errors.approval-unwired', { tool: 'pi/wipe', risk: 'high' })}\ndetails: {"risk":"high"}`);
    expect(msg.toolCalls[0]).toMatchObject({ ok: false, code: 'APPROVAL_REQUIRED' });
    expect(ran).toEqual({ uptime: 1 });
    expect(got.calls).toEqual([]);
  });

  it("with approval risk 'never' calls the high-risk tool directly", async () => {
    const { got, ask } = await load({ approvalRisk: 'never' }, [wipeAndUptime, { content: 'Wiped.' }]);
    await ask({ payload: 'Wipe it.' });
    expect(ran).toEqual({ wipe: 1, uptime: 1 });
    expect(toolMessages(1)[0].content).toBe('{"wiped":true}');
    expect(got.calls).toEqual([]);
  });
});

describe('llm-agent progress output', () => {
  const script = [{ toolCalls: [{ id: 'c1', name: 'pi__uptime', arguments: { unit: 'h' } }] }, { content: 'Up 42 hours, all fine.' }];

  it('emits turn and tool-call events on output 3 with the session id as topic', async () => {
    const { got, ask } = await load({ progress: true }, script);
    await ask({ payload: 'Uptime?', topic: 'room' });
    await until(() => got.events.length >= 4, 'the run events');
    expect(got.events.map((e) => e.payload.type)).toEqual(['turn-start', 'tool-call-start', 'tool-call-end', 'turn-start']);
    expect(got.events.every((e) => e.topic === 'room')).toBe(true);
    expect(got.events[1].payload).toMatchObject({ id: 'c1', name: 'pi__uptime', agent: 'pi', tool: 'uptime' });
    expect(got.events[2].payload.call).toMatchObject({ id: 'c1', ok: true, durationMs: expect.any(Number) });
    expect(got.events[2].payload.call.durationMs).toBeGreaterThanOrEqual(90);
  });

  it('with streaming adds text-delta events that make up the answer', async () => {
    const { got, ask } = await load({ progress: true, stream: true }, script);
    const msg = await ask({ payload: 'Uptime?', sessionId: 's1' });
    await until(() => got.events.some((e) => e.payload.type === 'text-delta') && got.events.length > 4, 'the run events');
    const types = got.events.map((e) => e.payload.type);
    expect(types.slice(0, 4)).toEqual(['turn-start', 'tool-call-start', 'tool-call-end', 'turn-start']);
    const deltas = got.events.slice(4);
    expect(deltas.length).toBeGreaterThan(1);
    expect(deltas.every((e) => e.payload.type === 'text-delta' && e.topic === 's1')).toBe(true);
    expect(deltas.map((e) => e.payload.text).join('')).toBe(msg.payload);
    expect(llm!.requests.every((r) => r.body.stream === true)).toBe(true);
  });
});

describe('llm-agent fallback and limits', () => {
  it('remembers a refused tools parameter: later runs go straight to JSON in text, warned once', async () => {
    // answers a results message, asks for uptime otherwise
    const script: FakeScript = (body) => (String(body.messages.at(-1).content).startsWith('Tool results')
      ? { content: 'Up 42 hours.' }
      : { content: '{"tool_calls":[{"name":"pi__uptime","arguments":{"unit":"h"}}]}' });
    const { ask } = await load({}, script, ['calls'], { provider: 'ollama', rejectTools: true });
    expect((await ask({ payload: 'Uptime?' })).payload).toBe('Up 42 hours.');
    expect(llm!.requests.map((r) => r.body.tools !== undefined)).toEqual([true, false, false]);
    expect((await ask({ payload: 'And now?', sessionId: 'other' })).payload).toBe('Up 42 hours.');
    expect(llm!.requests.map((r) => r.body.tools !== undefined)).toEqual([true, false, false, false, false]);
    expect(llm!.requests[3].body.messages.some((m: any) => m.role === 'system' && m.content.includes('"name":"pi__uptime"'))).toBe(true);
    expect(ran).toEqual({ uptime: 2 });
    const warned = callsOf('warn').filter((w: string) => w.startsWith('the endpoint refused the tools parameter'));
    expect(warned).toEqual([expect.stringContaining('does not support tools')]);
  });

  it('ends a run over its token budget with TOKEN_BUDGET at the Catch node', async () => {
    const { node, got } = await load({ maxTotalTokens: 10 }, [{ content: 'A long answer.', usage: { prompt_tokens: 50, completion_tokens: 5 } }]);
    node.receive({ payload: 'hi' });
    const caught = await until(() => got.caught[0], 'the error');
    expect(caught.error.message).toMatch(/^ToolLoopError: TOKEN_BUDGET: the run used 55 tokens, over its budget of 10/);
    expect(caught.usage).toEqual({ prompt_tokens: 50, completion_tokens: 5, total_tokens: 55 });
    expect(got.out).toEqual([]);
  });

  it('ends a run over its time budget with RUN_TIMEOUT, aborting the LLM request', async () => {
    const { node, got } = await load({ runTimeoutMs: 150 }, [{ content: 'Too late.', delayMs: 5000 }]);
    const started = Date.now();
    node.receive({ payload: 'hi' });
    const caught = await until(() => got.caught[0], 'the error');
    expect(Date.now() - started).toBeLessThan(2000);
    expect(caught.error.message).toMatch(/^ToolLoopError: RUN_TIMEOUT: the run took longer than its 150 ms budget/);
    await until(() => llm!.requests[0].aborted, 'the aborted request');
    expect(callsOf('status').at(-1)).toEqual({ fill: 'red', shape: 'ring', text: 'failed: RUN_TIMEOUT' });
    expect(got.out).toEqual([]);
  });
});
