import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, toolErrorOf, type CallToolResult } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import registryCatalog from '../tool-registry/locales/en-US/tool-registry.json';
import toolInNode from './tool-in';
import toolOutNode from '../tool-out/tool-out';
import toolInCatalog from './locales/en-US/tool-in.json';
import toolOutCatalog from '../tool-out/locales/en-US/tool-out.json';
import { defaultFlowAgentId, readToolInConfig } from './config';
import { until } from '../../test/support/until';
import { translator, withCatalog } from '../../test/support/i18n';
import { NODE_RED_MAIN, coreNodePath } from '../../test/support/node-red-path';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);
// eslint-disable-next-line @typescript-eslint/no-require-imports
const changeNode = require(coreNodePath('function/15-change.js'));

const catalog = { ...registryCatalog, ...toolInCatalog, ...toolOutCatalog };

const translate = translator(catalog);
const nodes = [withCatalog(registryNode, catalog), withCatalog(toolInNode, catalog), withCatalog(toolOutNode, catalog), changeNode];

const GREET_SCHEMA = JSON.stringify({
  type: 'object',
  properties: { who: { type: 'string', minLength: 1, description: 'whom to greet' } },
  required: ['who'],
  additionalProperties: false,
});

/**
 * The flow under test: tool-ins of agent `flows` on one registry:
 * - greet → change (payload := {greeting}) → tool-out, and → helper `seen`;
 * - fail → change (error := "disk full") → tool-out;
 * - catchy → change that throws; a catch node for it → tool-out;
 * - manual (5 s budget) → helper `held`: the test answers through `tout` itself;
 * - never (300 ms budget) → helper `held`: nobody answers.
 * (One catch node only: the helper registers the core catch type once per catch node in a flow.)
 */
function meshFlow(registry: Record<string, unknown>, extra: object[] = []): object[] {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', callerId: 'flowreg', policy: '*/*', ...registry },
    {
      id: 'tin_greet', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 100, registry: 'reg', agent: 'flows', tool: 'greet',
      description: 'Greets someone.', risk: 'medium', schema: GREET_SCHEMA, timeout: 2000, readOnly: true, dryRun: true, wires: [['chg', 'seen']],
    },
    {
      id: 'chg', type: 'change', z: 'f1', x: 300, y: 100, wires: [['tout']],
      rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '{"greeting": "hello " & payload.who}', tot: 'jsonata' }],
    },
    { id: 'tin_fail', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 200, registry: 'reg', agent: 'flows', tool: 'fail', description: 'Always fails.', risk: 'low', schema: '', timeout: '', wires: [['chg_fail']] },
    {
      id: 'chg_fail', type: 'change', z: 'f1', x: 300, y: 200, wires: [['tout']],
      rules: [{ t: 'set', p: 'error', pt: 'msg', to: 'disk full', tot: 'str' }],
    },
    { id: 'tin_catchy', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 250, registry: 'reg', agent: 'flows', tool: 'catchy', description: 'Fails in a node.', risk: 'low', wires: [['chg_err']] },
    {
      id: 'chg_err', type: 'change', z: 'f1', x: 300, y: 250, wires: [['tout']],
      rules: [{ t: 'set', p: 'payload', pt: 'msg', to: '$error("lamp offline")', tot: 'jsonata' }],
    },
    { id: 'c2', type: 'catch', z: 'f1', x: 300, y: 300, scope: ['chg_err'], uncaught: false, wires: [['tout']] },
    { id: 'tin_manual', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 300, registry: 'reg', agent: 'flows', tool: 'manual', description: 'Answered by the test.', risk: 'medium', timeout: 5000, wires: [['held']] },
    { id: 'tin_never', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 400, registry: 'reg', agent: 'flows', tool: 'never', description: 'Never answered.', risk: 'low', timeout: 300, wires: [['held']] },
    { id: 'tout', type: 'toolmesh-tool-out', z: 'f1', x: 500, y: 100, wires: [] },
    { id: 'seen', type: 'helper', z: 'f1', x: 500, y: 200 },
    { id: 'held', type: 'helper', z: 'f1', x: 500, y: 300 },
    ...extra,
  ];
}

const callers: RpcCaller[] = [];
let broker: EmbeddedBroker | undefined;

/** A protocol caller (not Node-RED) on the registry's broker that waits until agent `agentId` is ready. */
async function observer(url: string, agentId = 'flows'): Promise<RpcCaller> {
  const caller = new RpcCaller({ connection: { url }, callerId: 'observer' });
  callers.push(caller);
  await caller.start();
  await until(() => caller.agent(agentId)?.ready, `agent ${agentId} ready`);
  return caller;
}

/** Loads the mesh flow on an embedded registry (port 0) and returns an observer on its broker. */
async function loadEmbedded(extra: object[] = []): Promise<RpcCaller> {
  await helper.load(nodes, meshFlow({ mode: 'embedded', port: 0 }, extra));
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.brokerPort, 'the embedded broker');
  return observer(`mqtt://127.0.0.1:${reg.brokerPort}`);
}

/** Collects everything helper node `id` receives. */
function collect(id: string): any[] {
  const got: any[] = [];
  helper.getNode(id).on('input', (m: unknown) => got.push(m));
  return got;
}

/** Resolves with the next message the helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 5000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** The status texts node `id` shows from now on. */
function statuses(id: string): string[] {
  const texts: string[] = [];
  helper.getNode(id).on('call:status', (call: { args: Array<{ text?: string }> }) => texts.push(String(call.args[0]?.text)));
  return texts;
}

const codeOf = (r: CallToolResult) => toolErrorOf(r)?.code;

/** The last call node `id` made to one of its spied methods (`status`, `error`, `warn`), by that node only. */
function lastCall(id: string, method: 'status' | 'error' | 'warn'): any {
  return helper.getNode(id)[method].getCalls().filter((c: { thisValue: { id: string } }) => c.thisValue.id === id).at(-1)?.args[0];
}
const lastStatus = (id: string) => lastCall(id, 'status');
const lastError = (id: string) => String(lastCall(id, 'error'));

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(callers.splice(0).map((c) => c.stop()));
  await helper.unload();
  await broker?.close();
  broker = undefined;
});

describe('flow-defined tools on an embedded registry', () => {
  it('offers all tool-in nodes of one agent id as one agent, with schema, risk and budget', async () => {
    const caller = await loadEmbedded();
    const view = caller.agent('flows')!;
    expect(view.catalog!.agent).toMatchObject({ id: 'flows', kind: 'node-red' });
    expect(view.catalog!.tools.map((t) => t.name).sort()).toEqual(['catchy', 'fail', 'greet', 'manual', 'never']);
    const greet = view.catalog!.tools.find((t) => t.name === 'greet')!;
    expect(greet.description).toBe('Greets someone.');
    expect(greet.inputSchema).toMatchObject({
      type: 'object', required: ['who'], additionalProperties: false,
      properties: { who: { type: 'string', minLength: 1, description: 'whom to greet' } },
    });
    expect(greet.annotations).toMatchObject({ risk: 'medium', readOnlyHint: true, destructiveHint: false });
    expect(greet.timeoutMs).toBe(2000);
    const fail = view.catalog!.tools.find((t) => t.name === 'fail')!;
    expect(fail.inputSchema).toMatchObject({ type: 'object', properties: {}, additionalProperties: false });
    expect(fail.timeoutMs).toBe(30_000);
    expect(lastStatus('tin_greet')).toEqual({ fill: 'green', shape: 'dot', text: 'flows/greet' });
  });

  it('runs the flow on a call and returns what reaches tool-out', async () => {
    const caller = await loadEmbedded();
    // fail takes no dry runs (no dry-run checkbox): refused, and its flow does not run
    const early = collect('seen');
    expect(toolErrorOf(await caller.call('flows', 'fail', {}, { dryRun: true }))).toMatchObject({ code: 'NOT_SUPPORTED' });
    // greet has the dry-run checkbox: the flow sees the flag
    const seen = next('seen');
    const result = await caller.call('flows', 'greet', { who: 'Ada' }, { dryRun: true });
    expect(result.isError).toBe(false);
    expect(result.structuredContent).toEqual({ greeting: 'hello Ada' });
    expect(JSON.parse((result.content[0] as { text: string }).text)).toEqual({ greeting: 'hello Ada' });
    const msg = await seen;
    expect(msg.payload).toEqual({ who: 'Ada' });
    expect(msg.topic).toBe('greet');
    expect(msg.toolCall).toEqual({ id: expect.anything(), agent: 'flows', tool: 'greet', arguments: { who: 'Ada' }, callerId: 'observer', dryRun: true });
    expect(early).toHaveLength(1);
    expect(typeof msg._toolmesh.callId).toBe('string');
  });

  it('refuses invalid arguments with INVALID_ARGUMENTS before the flow runs', async () => {
    const caller = await loadEmbedded();
    const seen = collect('seen');
    const wrongType = await caller.call('flows', 'greet', { who: 5 });
    expect(codeOf(wrongType)).toBe('INVALID_ARGUMENTS');
    expect((toolErrorOf(wrongType)!.details as { issues: Array<{ path: string[] }> }).issues[0].path).toEqual(['who']);
    expect(codeOf(await caller.call('flows', 'greet', { who: 'x', extra: 1 }))).toBe('INVALID_ARGUMENTS');
    expect(codeOf(await caller.call('flows', 'greet', {}))).toBe('INVALID_ARGUMENTS');
    await new Promise((r) => setTimeout(r, 50));
    expect(seen).toEqual([]);
  });

  it('fails with EXECUTION_FAILED when the message reaching tool-out has msg.error', async () => {
    const caller = await loadEmbedded();
    const result = await caller.call('flows', 'fail', {});
    expect(result.isError).toBe(true);
    expect(toolErrorOf(result)).toMatchObject({ code: 'EXECUTION_FAILED', message: 'disk full' });
  });

  it('fails with EXECUTION_FAILED and the error when a Catch node sends a node failure to tool-out', async () => {
    const caller = await loadEmbedded();
    const error = toolErrorOf(await caller.call('flows', 'catchy', {}));
    expect(error).toMatchObject({ code: 'EXECUTION_FAILED', details: { source: { id: 'chg_err', type: 'change' } } });
    // the change node's own message: its i18n key, as the helper has no core catalogs
    expect(error!.message).toBe('change.errors.invalid-expr');
  });

  it('publishes offline before the embedded broker closes', async () => {
    const caller = await loadEmbedded();
    const states: string[] = [];
    caller.on('agents', (id: string) => { if (id === 'flows') states.push(String(caller.agent('flows')?.status?.state)); });
    await helper.unload();
    expect(states).toContain('offline');
  });

  it('answers with msg.toolResult as is, a string payload as text, msg.isError as a failure, and passes progress', async () => {
    const caller = await loadEmbedded();
    const tout = helper.getNode('tout');

    let held = next('held');
    const ready = caller.call('flows', 'manual', {});
    tout.receive({ ...(await held), toolResult: { content: [{ type: 'text', text: 'see image' }, { type: 'image', data: 'AAAA', mimeType: 'image/png' }], structuredContent: { n: 1 }, id: 'x', agent: 'pi' } });
    expect(await ready).toEqual({ content: [{ type: 'text', text: 'see image' }, { type: 'image', data: 'AAAA', mimeType: 'image/png' }], structuredContent: { n: 1 }, isError: false });

    held = next('held');
    const progress: unknown[] = [];
    const text = caller.call('flows', 'manual', {}, { onProgress: (p) => progress.push(p) });
    const m = await held;
    tout.receive({ ...m, progress: { progress: 1, total: 2, message: 'half way' } });
    await until(() => progress.length, 'the progress report');
    tout.receive({ ...m, payload: 'all done' });
    expect(await text).toEqual({ content: [{ type: 'text', text: 'all done' }], isError: false });
    expect(progress[0]).toMatchObject({ progress: 1, total: 2, message: 'half way' });

    held = next('held');
    const failed = caller.call('flows', 'manual', {});
    tout.receive({ ...(await held), isError: true, payload: 'lamp unreachable' });
    expect(toolErrorOf(await failed)).toMatchObject({ code: 'EXECUTION_FAILED', message: 'lamp unreachable' });
  });

  it('times out at the tool budget when the flow never answers, and ignores the late answer', async () => {
    const caller = await loadEmbedded();
    const texts = statuses('tin_never');
    const held = next('held');
    const started = Date.now();
    const result = await caller.call('flows', 'never', {});
    expect(codeOf(result)).toBe('TIMEOUT');
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(Date.now() - started).toBeLessThan(2000);
    await until(() => texts.includes('flows/never: last call TIMEOUT'), 'the dropped-call status');
    expect(texts).toContain('flows/never: 1 in progress');

    const tout = helper.getNode('tout');
    const errors: unknown[] = [];
    tout.on('call:error', (c: unknown) => errors.push(c));
    const warned = new Promise<string>((resolve) => tout.once('call:warn', (c: { args: string[] }) => resolve(c.args[0])));
    tout.receive({ ...(await held), payload: 'too late' });
    expect(await warned).toMatch(/^answer to flows\/never \(call .+\) ignored: the call had ended: never took longer than 300 ms$/);
    await new Promise((r) => setTimeout(r, 50));
    expect(errors).toEqual([]);
  });

  it('drops a call the caller cancels', async () => {
    const caller = await loadEmbedded();
    const held = next('held');
    const abort = new AbortController();
    const pending = caller.call('flows', 'manual', {}, { signal: abort.signal });
    const msg = await held;
    abort.abort();
    expect(codeOf(await pending)).toBe('CANCELLED');
    const texts = statuses('tin_manual');
    await until(() => texts.includes('flows/manual: last call CANCELLED'), 'the cancelled status');
    const tout = helper.getNode('tout');
    const warned = new Promise<string>((resolve) => tout.once('call:warn', (c: { args: string[] }) => resolve(c.args[0])));
    tout.receive({ ...msg, payload: 'too late' });
    expect(await warned).toContain('ignored: the call had ended: cancelled');
  });

  it('fails a message without a call id, or with an unknown one (done(err), so Catch nodes see it)', async () => {
    await loadEmbedded();
    const tout = helper.getNode('tout');
    const nextError = () => new Promise<Error>((resolve) => tout.once('call:error', (c: { args: [Error] }) => resolve(c.args[0])));
    let error = nextError();
    tout.receive({ payload: 'hi' });
    expect((await error).message).toMatch(/^msg\._toolmesh\.callId is missing/);
    error = nextError();
    tout.receive({ payload: 'hi', _toolmesh: { callId: 'nope' } });
    expect((await error).message).toMatch(/^no tool call nope is open/);
  });

  it('is offered by the registry itself, so llm-agent and remote-tool can call it', async () => {
    await loadEmbedded();
    const reg = helper.getNode('reg') as ToolRegistryNode;
    await until(() => reg.listTools().find((t) => t.agentId === 'flows' && t.tool.name === 'greet'), 'flows/greet in the registry');
    const result = await reg.call('flows', 'greet', { who: 'Bo' });
    expect(result.structuredContent).toEqual({ greeting: 'hello Bo' });
  });

  it('does not offer a tool whose schema is unusable, and says why', async () => {
    const bad = [
      { id: 'tin_bad', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 600, registry: 'reg', agent: 'flows', tool: 'bad', schema: '{"type":"object","if":{}}', wires: [[]] },
      { id: 'tin_arr', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 700, registry: 'reg', agent: 'flows', tool: 'arr', schema: '{"type":"array"}', wires: [[]] },
      { id: 'tin_twice', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 800, registry: 'reg', agent: 'flows', tool: 'greet', schema: '', wires: [[]] },
    ];
    const caller = await loadEmbedded(bad);
    expect(caller.agent('flows')!.catalog!.tools.map((t) => t.name).sort()).toEqual(['catchy', 'fail', 'greet', 'manual', 'never']);
    expect(lastError('tin_bad')).toMatch(/argument schema is unusable \(zod cannot express it: Conditional schemas/);
    expect(lastError('tin_arr')).toMatch(/must be a JSON Schema object with "type": "object"/);
    expect(lastError('tin_twice')).toMatch(/agent flows already offers a tool named "greet" \(tool-in node tin_greet\)/);
    expect(lastStatus('tin_bad')).toEqual({ fill: 'red', shape: 'ring', text: 'tool-in.status.bad-config' });
    expect(lastStatus('tin_twice')).toEqual({ fill: 'red', shape: 'ring', text: 'tool-in.status.name-taken' });
  });

  it('changes the catalog rev when a tool-in is removed, and keeps the agent instance', async () => {
    const caller = await loadEmbedded();
    const before = caller.agent('flows')!;
    const flow = meshFlow({ mode: 'embedded', port: 0 }).filter((n) => (n as { id: string }).id !== 'tin_never');
    await helper.setFlows(flow, 'nodes');
    await until(() => caller.agent('flows')?.ready && caller.agent('flows')!.catalog!.rev !== before.catalog!.rev, 'a new catalog');
    const after = caller.agent('flows')!;
    expect(after.catalog!.tools.map((t) => t.name).sort()).toEqual(['catchy', 'fail', 'greet', 'manual']);
    expect(after.status!.instance).toBe(before.status!.instance);
  });
});

describe('flow-defined tools on an external broker', () => {
  it('restarts the agent on a full redeploy and ends online with the new instance', async () => {
    broker = await startBroker({ port: 0 });
    const flow = meshFlow({ mode: 'external', broker: broker.url });
    await helper.load(nodes, flow);
    const caller = await observer(broker.url);
    const before = caller.agent('flows')!.status!.instance;
    const states: string[] = [];
    caller.on('agents', (id: string) => { if (id === 'flows') states.push(String(caller.agent('flows')?.status?.state)); });
    await helper.setFlows(flow, 'full');
    await until(() => caller.agent('flows')?.ready && caller.agent('flows')!.status!.instance !== before, 'the new instance');
    await new Promise((r) => setTimeout(r, 100));
    expect(states).toContain('offline');
    expect(caller.agent('flows')!.status!.state).toBe('online');
    expect((await caller.call('flows', 'greet', { who: 'Cy' })).structuredContent).toEqual({ greeting: 'hello Cy' });
  });

  it('uses one derived agent id per registry and publishes offline when the flow closes', async () => {
    broker = await startBroker({ port: 0 });
    const flow = [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: 'flowreg' },
      { id: 'a', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 100, registry: 'reg', tool: 'one', wires: [['out']] },
      { id: 'b', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 200, registry: 'reg', tool: 'two', wires: [['out']] },
      { id: 'out', type: 'toolmesh-tool-out', z: 'f1', x: 300, y: 100 },
    ];
    await helper.load(nodes, flow);
    await until(() => lastStatus('a')?.fill === 'green' && lastStatus('b')?.fill === 'green', 'both tools offered');
    const [id, tool] = String(lastStatus('a').text).split('/');
    expect(tool).toBe('one');
    expect(id).toMatch(/^nodered-flows-[0-9a-f]{12}$/);
    expect(lastStatus('b').text).toBe(`${id}/two`);
    const caller = await observer(broker.url, id);
    expect(caller.agent(id)!.catalog!.tools.map((t) => t.name).sort()).toEqual(['one', 'two']);
    expect(codeOf(await caller.call(id, 'one', {}))).toBeUndefined();
    await helper.unload();
    await until(() => caller.agent(id)?.status?.state === 'offline', 'the offline status');
  });
});

describe('flow-defined tools without a broker', () => {
  it('shows the registry error and offers nothing', async () => {
    const flow = [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: 'ftp://nowhere' },
      { id: 'a', type: 'toolmesh-tool-in', z: 'f1', x: 100, y: 100, registry: 'reg', tool: 'one', wires: [[]] },
    ];
    await helper.load(nodes, flow);
    await until(() => lastStatus('a')?.fill === 'red', 'the error status');
    expect(lastStatus('a')).toEqual({ fill: 'red', shape: 'ring', text: expect.stringMatching(/^registry: broker is "ftp:\/\/nowhere"; expected mqtt:/) });
  });
});

describe('tool-in config', () => {
  const t = translate;
  it('derives one stable agent id per Node-RED instance and registry', () => {
    expect(defaultFlowAgentId('/home/a/.node-red', 'reg1')).toBe(defaultFlowAgentId('/home/a/.node-red', 'reg1'));
    expect(defaultFlowAgentId('/home/a/.node-red', 'reg1')).not.toBe(defaultFlowAgentId('/home/b/.node-red', 'reg1'));
    expect(defaultFlowAgentId('/home/a/.node-red', 'reg1')).not.toBe(defaultFlowAgentId('/home/a/.node-red', 'reg2'));
  });

  it('names the bad field and what was expected', () => {
    const base = { registry: 'reg', tool: 'ok' };
    expect(readToolInConfig({ ...base, tool: 'has space' }, { t }).error).toBe('tool is "has space"; expected 1–64 letters, digits, _ or -, e.g. set_scene. The tool is not offered until you fix it in the node');
    expect(readToolInConfig({ ...base, agent: 'a/b' }, { t }).error).toMatch(/^agent is "a\/b"/);
    expect(readToolInConfig({ ...base, risk: 'extreme' }, { t }).error).toMatch(/^risk is "extreme"; expected low, medium, high or critical/);
    expect(readToolInConfig({ ...base, timeout: '1.5' }, { t }).error).toMatch(/^timeout is "1.5"/);
    expect(readToolInConfig({ ...base, schema: '{' }, { t }).error).toMatch(/argument schema is unusable \(not valid JSON/);
    expect(readToolInConfig({ tool: 'ok' }, { t }).error).toMatch(/no tool-registry/);
  });

  it('defaults to no arguments, low risk and 30 s', () => {
    const { spec } = readToolInConfig({ registry: 'reg', tool: 'ok' }, { t, userDir: '/u' });
    expect(spec).toMatchObject({ agentId: defaultFlowAgentId('/u', 'reg'), name: 'ok', risk: 'low', timeoutMs: 30_000, readOnly: false });
    expect(spec!.input.safeParse({}).success).toBe(true);
    expect(spec!.input.safeParse({ x: 1 }).success).toBe(false);
  });
});
