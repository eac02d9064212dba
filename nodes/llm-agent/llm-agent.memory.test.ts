/**
 * llm-agent node memory (conversations per session in node context) and images (tool-result
 * images and msg.images for models that accept them). Outputs and modes are in
 * llm-agent.modes.test.ts.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import { startFakeLlm, type FakeLlm, type FakeReply, type FakeScript } from '../../test/support/fake-llm';
import { until } from '../../test/support/until';
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
/** A 1×1 PNG. */
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==';
const PNG_URL = `data:image/png;base64,${PNG}`;
const tools = [
  defineTool({ name: 'uptime', description: 'Seconds since boot.', risk: 'low', input: z.object({ unit: z.enum(['s', 'h']) }), execute: (a) => ({ uptime: 42, unit: a.unit }) }),
  defineTool({ name: 'photo', description: 'Takes a photo.', risk: 'low', input: z.object({}), execute: () => ({ content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] }) }),
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
});

/**
 * The fake model: asks for uptime on "uptime?" and for a photo on "photo?", answers a tool
 * round or images with a summary, anything else with `re: <prompt>`; "fail" gets HTTP 400.
 */
const chat = (body: any): FakeReply => {
  const last = body.messages.at(-1);
  if (last.content === 'fail') return { error: { status: 400, message: 'the model crashed' } };
  if (last.content === 'uptime?') return { toolCalls: [{ name: 'pi__uptime', arguments: { unit: 'h' } }] };
  if (last.content === 'photo?') return { toolCalls: [{ name: 'pi__photo', arguments: {} }] };
  if (last.role === 'tool') return { content: 'Up 42 hours.' };
  return { content: typeof last.content === 'string' ? `re: ${last.content}` : 'A red dot.' };
};

/**
 * Loads tool-registry (embedded broker, port 0) + llm-agent `llm` (output 1 → `out`) + catch →
 * `caught`; starts agent `pi` with the tools and waits until the registry offers them.
 */
async function load(props: Record<string, unknown> = {}, script: FakeScript = chat) {
  llm = await startFakeLlm(script);
  const at = { z: 'f1', x: 0, y: 0 }; // without x/y Node-RED takes a node for a config node
  await helper.load([toolRegistryNode, llmAgentWithCatalog], [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'llm-agent-test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake-model', systemPrompt: 'You run a Pi.', wires: [['out'], [], []], ...props },
    { id: 'out', type: 'helper', ...at },
    { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', type: 'helper', ...at },
  ], { llm: { apiKey: 'sk-test' } });
  const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');
  agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url: `mqtt://127.0.0.1:${port}` }, agentId: 'pi', tools });
  await agent.start();
  await until(() => helper.getNode('reg').listTools().length === tools.length, 'the agent\'s tools');
  const got = { out: [] as any[], caught: [] as any[] };
  helper.getNode('out').on('input', (m: any) => got.out.push(m));
  helper.getNode('caught').on('input', (m: any) => got.caught.push(m));
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
  /** Sends `msg` in and resolves with the error the Catch node got. */
  const fail = (msg: Record<string, unknown>) => {
    const c = got.caught.length;
    node.receive(msg);
    return until(() => got.caught[c], 'the error');
  };
  /** The conversation stored for `session`. */
  const stored = (session: string): any[] | undefined => node.context().get(`llm-agent:${session}`);
  return { node, got, ask, fail, stored };
}

/** `role` of each message, with `+calls` for an assistant turn with tool calls. */
const roles = (messages: any[]) => messages.map((m) => (m.tool_calls ? `${m.role}+calls` : m.role));
const requestRoles = (i: number) => roles(llm!.requests[i].body.messages);

describe('llm-agent memory', () => {
  it('continues a conversation per msg.topic, tool calls included, and keeps the system prompt out of memory', async () => {
    const { ask, stored } = await load();
    expect((await ask({ payload: 'uptime?', topic: 'chat' })).payload).toBe('Up 42 hours.');
    expect(roles(stored('chat')!)).toEqual(['user', 'assistant+calls', 'tool', 'assistant']);
    const msg = await ask({ payload: 'thanks', topic: 'chat' });
    expect(msg.payload).toBe('re: thanks');
    expect(msg.sessionId).toBe('chat');
    const third = llm!.requests[2].body.messages;
    expect(roles(third)).toEqual(['system', 'user', 'assistant+calls', 'tool', 'assistant', 'user']);
    expect(third[2].tool_calls[0].id).toBe(third[3].tool_call_id);
    expect(third.map((m: any) => m.content)).toEqual(['You run a Pi.', 'uptime?', null, '{"uptime":42,"unit":"h"}', 'Up 42 hours.', 'thanks']);
    expect(stored('chat')!.map((m) => m.content)).toEqual(['uptime?', null, '{"uptime":42,"unit":"h"}', 'Up 42 hours.', 'thanks', 're: thanks']);
  });

  it('keeps conversations apart by msg.sessionId (over msg.topic)', async () => {
    const { ask, stored } = await load();
    await ask({ payload: 'hello', topic: 'chat' });
    await ask({ payload: 'who are you?', topic: 'chat', sessionId: 'other' });
    expect(requestRoles(1)).toEqual(['system', 'user']);
    expect(stored('other')!.map((m) => m.content)).toEqual(['who are you?', 're: who are you?']);
    expect(stored('chat')!.map((m) => m.content)).toEqual(['hello', 're: hello']);
  });

  it('clears a conversation on msg.reset without a prompt, sending nothing', async () => {
    const { node, got, ask, stored } = await load();
    await ask({ payload: 'hello', topic: 'chat' });
    node.receive({ topic: 'chat', reset: true });
    await until(() => node.status.getCalls().some((c: any) => c.args[0].text === 'conversation cleared'), 'the reset');
    expect(stored('chat')).toBeUndefined();
    await ask({ payload: 'again', topic: 'chat' });
    expect(requestRoles(1)).toEqual(['system', 'user']);
    expect(got.out.map((m) => m.payload)).toEqual(['re: hello', 're: again']);
    expect(got.caught).toEqual([]);
  });

  it('remembers nothing with memoryMessages 0', async () => {
    const { ask, stored } = await load({ memoryMessages: 0 });
    await ask({ payload: 'hello', topic: 'chat' });
    await ask({ payload: 'again', topic: 'chat' });
    expect(requestRoles(1)).toEqual(['system', 'user']);
    expect(stored('chat')).toBeUndefined();
  });

  it('trims to memoryMessages by whole exchanges, never splitting tool calls from their results', async () => {
    const { ask, stored } = await load({ memoryMessages: 4 });
    await ask({ payload: 'hello' });
    await ask({ payload: 'uptime?' });
    expect(roles(stored('default')!)).toEqual(['user', 'assistant+calls', 'tool', 'assistant']);
    await ask({ payload: 'bye' });
    expect(requestRoles(3)).toEqual(['system', 'user', 'assistant+calls', 'tool', 'assistant', 'user']);
    // the last 4 messages would start with a tool message: the whole tool exchange goes
    expect(stored('default')!.map((m) => m.content)).toEqual(['bye', 're: bye']);
  });

  it('leaves the conversation as it was when a run fails', async () => {
    const { ask, fail, stored } = await load();
    await ask({ payload: 'hello', topic: 'chat' });
    expect((await fail({ payload: 'fail', topic: 'chat' })).error.message).toMatch(/HTTP 400: the model crashed/);
    expect(stored('chat')!.map((m) => m.content)).toEqual(['hello', 're: hello']);
    await ask({ payload: 'again', topic: 'chat' });
    expect(llm!.requests.at(-1)!.body.messages.map((m: any) => m.content)).toEqual(['You run a Pi.', 'hello', 're: hello', 'again']);
  });
});

/**
 * The fake model of {@link chat}, except that the reply to "slow?" waits until the test calls
 * `release()` (resolved once that request has arrived), then answers `slow done`.
 */
function slowModel(): { script: FakeScript; held: Promise<() => void> } {
  let arrived!: (release: () => void) => void;
  const held = new Promise<() => void>((r) => { arrived = r; });
  const script: FakeScript = (body) => {
    if (body.messages.at(-1).content !== 'slow?') return chat(body);
    return new Promise((answer) => arrived(() => answer({ content: 'slow done' })));
  };
  return { script, held };
}

const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe('llm-agent sessions: concurrent messages', () => {
  it('runs the messages of one session one after the other, each seeing the history before it', async () => {
    const { script, held } = slowModel();
    const { node, got, stored } = await load({}, script);
    node.receive({ payload: 'slow?', topic: 'chat' });
    const release = await held;
    node.receive({ payload: 'second', topic: 'chat' });
    node.receive({ payload: 'other session', topic: 'elsewhere' });
    // another session is not held up
    await until(() => got.out.find((m) => m.payload === 're: other session'), 'the other session\'s answer');
    await pause(100);
    expect(llm!.requests.map((r) => r.body.messages.at(-1).content)).toEqual(['slow?', 'other session']);
    release();
    await until(() => got.out.length === 3, 'all three answers');
    expect(got.out.map((m) => m.payload)).toEqual(['re: other session', 'slow done', 're: second']);
    expect(llm!.requests[2].body.messages.map((m: any) => m.content)).toEqual(['You run a Pi.', 'slow?', 'slow done', 'second']);
    expect(stored('chat')!.map((m) => m.content)).toEqual(['slow?', 'slow done', 'second', 're: second']);
    expect(got.caught).toEqual([]);
  });

  it('keeps a msg.reset that arrives during a run: the run answers but does not store its history', async () => {
    const { script, held } = slowModel();
    const { node, got, ask, stored } = await load({}, script);
    await ask({ payload: 'hello', topic: 'chat' });
    node.receive({ payload: 'slow?', topic: 'chat' });
    const release = await held;
    node.receive({ topic: 'chat', reset: true });
    await until(() => node.status.getCalls().some((c: any) => c.args[0].text === 'conversation cleared'), 'the reset');
    expect(stored('chat')).toBeUndefined();
    release();
    await until(() => got.out.length === 2, 'the slow answer');
    expect(got.out[1].payload).toBe('slow done');
    await pause(50);
    expect(stored('chat')).toBeUndefined();
    await ask({ payload: 'again', topic: 'chat' });
    expect(llm!.requests.at(-1)!.body.messages.map((m: any) => m.content)).toEqual(['You run a Pi.', 'again']);
    expect(got.caught).toEqual([]);
  });

  it('starts a prompt that comes with msg.reset during a run after that run, from an empty history', async () => {
    const { script, held } = slowModel();
    const { node, got, ask, stored } = await load({}, script);
    await ask({ payload: 'hello', topic: 'chat' });
    node.receive({ payload: 'slow?', topic: 'chat' });
    const release = await held;
    node.receive({ payload: 'fresh start', topic: 'chat', reset: true });
    await pause(100);
    expect(llm!.requests).toHaveLength(2); // the reset's prompt waits for the running run
    release();
    await until(() => got.out.length === 3, 'both answers');
    expect(got.out.map((m) => m.payload)).toEqual(['re: hello', 'slow done', 're: fresh start']);
    expect(llm!.requests[2].body.messages.map((m: any) => m.content)).toEqual(['You run a Pi.', 'fresh start']);
    expect(stored('chat')!.map((m) => m.content)).toEqual(['fresh start', 're: fresh start']);
  });
});

describe('llm-agent images', () => {
  it('sends a tool image to a vision model after the tool messages and keeps only a placeholder in memory', async () => {
    const { ask, stored } = await load({ vision: true });
    expect((await ask({ payload: 'photo?' })).payload).toBe('A red dot.');
    const second = llm!.requests[1].body.messages;
    expect(roles(second)).toEqual(['system', 'user', 'assistant+calls', 'tool', 'user']);
    expect(second[3].content).toBe('(1 image attached below)');
    expect(second[4].content).toContainEqual({ type: 'image_url', image_url: { url: PNG_URL } });
    const memory = stored('default')!;
    expect(roles(memory)).toEqual(['user', 'assistant+calls', 'tool', 'user', 'assistant']);
    expect(memory[3].content).toContainEqual({ type: 'text', text: expect.stringMatching(/^\[image image\/png \d+ B from tool pi\/photo — not kept in memory\]$/) });
    expect(JSON.stringify(memory)).not.toContain(PNG);
  });

  it('refuses msg.images unless the node says its model accepts images', async () => {
    const { fail } = await load();
    const caught = await fail({ payload: 'what is this?', images: [PNG_URL] });
    expect(caught.error.message).toContain('Model accepts images');
    expect(caught.error.message).toContain(translate('llm-agent.errors.no-vision'));
    expect(llm!.requests).toHaveLength(0);
  });

  it('sends msg.images (Buffer data) as image_url parts of the user message to a vision model', async () => {
    const { ask, stored } = await load({ vision: true });
    await ask({ payload: 'what is this?', images: [{ data: Buffer.from(PNG, 'base64'), mimeType: 'image/png' }] });
    expect(llm!.requests[0].body.messages.at(-1)).toEqual({
      role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: PNG_URL } }],
    });
    expect(JSON.stringify(stored('default'))).not.toContain(PNG);
  });
});
