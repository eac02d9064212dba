// Approvals and policy enforced on the device: a real broker, the real agent runtime with a
// config from validateConfig, in-test tools of each risk level that count their runs, callers
// through RpcCaller and raw MQTT publishes. Every attack must leave the tool un-run, answer with
// the refusal code, and emit a `call` event carrying the refusal (what the audit log records).
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  defineTool, generateApprovalKeys, RpcCaller, signApproval, toolErrorOf, topics,
  type CallEvent, type CallToolResult, type Risk, type ToolDefinition,
} from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { ConfigError, validateConfig, type AgentConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { until } from './support/until';

const AGENT = 'safepi';
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-approvals-test-'));
const usedTokensFile = join(dir, 'used.jsonl');
const gate = generateApprovalKeys();
const stranger = generateApprovalKeys();
const quiet = { info() {}, warn() {}, error() {} };

/** Runs of each tool for real, and dry runs apart. */
const runs: Record<string, number> = {};
const dryRuns: Record<string, number> = {};

const counted = (name: string, risk: Risk): ToolDefinition => defineTool({
  name, description: `${risk}-risk test tool`, risk, supportsDryRun: true,
  input: z.strictObject({ target: z.string(), force: z.boolean().default(false) }),
  execute: (args, ctx) => {
    const tally = ctx.dryRun ? dryRuns : runs;
    tally[name] = (tally[name] ?? 0) + 1;
    return ctx.dryRun ? { dryRun: true, wouldDo: `${name} ${args.target}` } : { done: args.target, force: args.force };
  },
});
const extraTools = [
  counted('t_low', 'low'), counted('t_medium', 'medium'), counted('t_high', 'high'), counted('t_critical', 'critical'),
  counted('t_other_high', 'high'), counted('t_raised', 'medium'), counted('t_disabled', 'high'),
];

function config(over: Record<string, unknown> = {}): AgentConfig {
  return validateConfig({
    version: 1,
    agent: { id: AGENT },
    broker: { url: broker.url },
    policy: {
      tools: { disable: ['t_disabled'] },
      callers: [{ caller: 'nodered-*', tools: ['*'] }, { caller: 'dashboard', tools: ['t_low'] }],
      risk: { t_raised: 'high' },
    },
    approvals: { keys: { 'gate-1': gate.publicKeyPem }, usedTokensFile },
    ...over,
  }, 'test.yaml', dir);
}

let broker: EmbeddedBroker;
let agent: RunningAgent;
let events: CallEvent[] = [];
let caller: RpcCaller;
let dashboard: RpcCaller;

async function startSafeAgent(): Promise<void> {
  agent = await startAgent(config(), quiet, extraTools);
  agent.server.on('call', (e: CallEvent) => events.push(e));
}

async function connectCaller(callerId: string): Promise<RpcCaller> {
  const c = new RpcCaller({ connection: { url: broker.url }, callerId });
  await c.start();
  await until(() => c.agent(AGENT)?.ready, `${callerId} sees ${AGENT}`);
  return c;
}

/** A token approving `tool` with `args` for `callerId` on this agent; `over` changes any claim. */
function approve(tool: string, args: Record<string, unknown>, over: Partial<Parameters<typeof signApproval>[0]> = {}): string {
  return signApproval({
    kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: AGENT, tool, args,
    exp: Date.now() + 60_000, approver: 'alice', ...over,
  });
}

/** Publishes one raw tools/call under `callerId`'s topic and resolves with the response. */
async function rawCall(callerId: string, params: Record<string, unknown>, id: string | number = `raw-${Date.now()}`): Promise<any> {
  const t = topics();
  const c = await mqtt.connectAsync(broker.url);
  await c.subscribeAsync(t.res(AGENT, callerId), { qos: 1 });
  const got = new Promise<any>((resolve) => c.on('message', (_t, p) => resolve(JSON.parse(p.toString()))));
  await c.publishAsync(t.req(AGENT, callerId), JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }), { qos: 1 });
  const msg = await got;
  await c.endAsync();
  return msg;
}

/**
 * Runs `call`, then checks that no tool ran, that the answer is `code` (with `refusal` in its
 * details), and that the agent emitted a `call` event with that refusal. Returns the event.
 */
async function expectRefused(call: () => Promise<CallToolResult>, code: string, refusal: string): Promise<CallEvent> {
  const before = { ...runs };
  const seen = events.length;
  const result = await call();
  const err = toolErrorOf(result);
  expect(err?.code, JSON.stringify(result)).toBe(code);
  expect(err?.details).toMatchObject({ refusal });
  expect(runs).toEqual(before);
  const event = await until(() => events.slice(seen).find((e) => e.refusal), 'the refusal event');
  expect(event).toMatchObject({ code, refusal });
  return event;
}

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  await startSafeAgent();
  caller = await connectCaller('nodered-1');
  dashboard = await connectCaller('dashboard');
});

afterAll(async () => {
  await caller?.stop();
  await dashboard?.stop();
  await agent?.stop();
  await broker?.close();
});

describe('policy on the agent', () => {
  it('leaves disabled tools out of the catalog and announces raised risks', () => {
    const catalog = caller.agent(AGENT)!.catalog!.tools;
    expect(catalog.map((t) => t.name)).toEqual(['t_low', 't_medium', 't_high', 't_critical', 't_other_high', 't_raised']);
    expect(catalog.find((t) => t.name === 't_raised')!.annotations.risk).toBe('high');
    expect(catalog.find((t) => t.name === 't_medium')!.annotations.risk).toBe('medium');
  });

  it('answers a call to a disabled tool with TOOL_NOT_FOUND and runs nothing', async () => {
    const seen = events.length;
    expect(toolErrorOf(await caller.call(AGENT, 't_disabled', { target: 'x' }))?.code).toBe('TOOL_NOT_FOUND');
    expect(await until(() => events[seen], 'the call event')).toEqual({ callerId: 'nodered-1', id: expect.any(String), tool: 't_disabled', durationMs: 0, code: 'TOOL_NOT_FOUND' });
    const raw = await rawCall('nodered-1', { name: 't_disabled', arguments: { target: 'x' }, _meta: { approval: approve('t_disabled', { target: 'x' }) } });
    expect(raw).toMatchObject({ error: { code: -32602, data: { code: 'TOOL_NOT_FOUND' } } });
    expect(runs.t_disabled).toBeUndefined();
  });

  it('runs low and medium calls without a token and reports them in the call event', async () => {
    const seen = events.length;
    expect((await caller.call(AGENT, 't_medium', { target: 'a' })).structuredContent).toEqual({ done: 'a', force: false });
    expect(runs.t_medium).toBe(1);
    const event = await until(() => events.slice(seen).find((e) => e.tool === 't_medium'), 'the call event');
    expect(event).toMatchObject({ callerId: 'nodered-1', tool: 't_medium', risk: 'medium', args: { target: 'a', force: false } });
    expect(event).not.toHaveProperty('code');
    expect(event).not.toHaveProperty('refusal');
    expect(event).not.toHaveProperty('approval');
  });

  it('refuses a caller the policy does not allow with PERMISSION_DENIED, dry run or not', async () => {
    expect((await dashboard.call(AGENT, 't_low', { target: 'a' })).isError).toBe(false);
    const event = await expectRefused(() => dashboard.call(AGENT, 't_medium', { target: 'a' }), 'PERMISSION_DENIED', 'caller-not-allowed');
    expect(event).toMatchObject({ callerId: 'dashboard', tool: 't_medium', risk: 'medium' });
    const result = await dashboard.call(AGENT, 't_high', { target: 'a' }, { dryRun: true });
    expect(toolErrorOf(result)?.message).toBe(`caller "dashboard" may not call t_high on agent ${AGENT}: no rule in the agent's policy.callers allows it; the call was not run`);
    expect(dryRuns.t_high).toBeUndefined();
    await expectRefused(() => rawCall('somebody', { name: 't_low', arguments: { target: 'a' } }).then((m) => m.result), 'PERMISSION_DENIED', 'caller-not-allowed');
  });

  it('lists to each caller only the tools it may call', async () => {
    const listed = (await dashboard.request(AGENT, 'tools/list')) as { tools: { name: string }[] };
    expect(listed.tools.map((t) => t.name)).toEqual(['t_low']);
    const all = (await caller.request(AGENT, 'tools/list')) as { tools: { name: string }[] };
    expect(all.tools).toHaveLength(6);
  });

  it('refuses a risk override that lowers a risk, naming the key', async () => {
    const cfg = config({ policy: { risk: { t_high: 'medium', t_low: 'high' } }, approvals: {} });
    const err = await startAgent(cfg, quiet, extraTools).then((a) => a.stop().then(() => undefined), (e: unknown) => e);
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as ConfigError).problems).toEqual([expect.stringMatching(/^policy\.risk\.t_high: t_high is high risk; an override may raise a risk, never lower it/)]);
  });
});

describe('approvals enforced on the device', () => {
  it('refuses a high-risk call without a token, also when published straight to the broker', async () => {
    const event = await expectRefused(() => caller.call(AGENT, 't_high', { target: 'web' }), 'APPROVAL_REQUIRED', 'approval-required');
    expect(event).toMatchObject({ tool: 't_high', risk: 'high', args: { target: 'web', force: false } });
    const raw = await rawCall('nodered-1', { name: 't_critical', arguments: { target: 'web' } }, 41);
    expect(raw).toMatchObject({ id: 41, result: { isError: true, structuredContent: { error: { code: 'APPROVAL_REQUIRED', message: 't_critical is critical risk, so this call needs a person\'s approval: send it through a confirm-gate' } } } });
    await expectRefused(() => caller.call(AGENT, 't_raised', { target: 'web' }), 'APPROVAL_REQUIRED', 'approval-required');
    expect(runs.t_high ?? 0).toBe(0);
    expect(runs.t_critical ?? 0).toBe(0);
    expect(runs.t_raised ?? 0).toBe(0);
  });

  it('runs a high-risk dry run without a token, for real nothing', async () => {
    const seen = events.length;
    const r = await caller.call(AGENT, 't_high', { target: 'web' }, { dryRun: true });
    expect(r.structuredContent).toEqual({ dryRun: true, wouldDo: 't_high web' });
    expect(dryRuns.t_high).toBe(1);
    expect(runs.t_high ?? 0).toBe(0);
    expect(await until(() => events.slice(seen).find((e) => e.tool === 't_high'), 'the event')).toMatchObject({ dryRun: true, risk: 'high' });
  });

  it('runs a call with a valid token once, and refuses the same token again as replayed', async () => {
    const args = { target: 'web', force: true };
    const token = approve('t_high', args, { jti: 'valid-token-0001' });
    const seen = events.length;
    const ok = await caller.call(AGENT, 't_high', args, { approval: token });
    expect(ok.structuredContent).toEqual({ done: 'web', force: true });
    expect(runs.t_high).toBe(1);
    const event = await until(() => events.slice(seen).find((e) => e.tool === 't_high'), 'the event');
    expect(event).toMatchObject({ tool: 't_high', risk: 'high', args, approval: { approver: 'alice', jti: 'valid-token-0001', kid: 'gate-1', exp: expect.any(Number) } });
    expect(event).not.toHaveProperty('refusal');
    expect(readFileSync(usedTokensFile, 'utf8')).toContain('"jti":"valid-token-0001"');

    const replay = await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: token }), 'PERMISSION_DENIED', 'replayed');
    expect(replay.approval).toMatchObject({ jti: 'valid-token-0001' });
    await expectRefused(() => rawCall('nodered-1', { name: 't_high', arguments: args, _meta: { approval: token } }).then((m) => m.result), 'PERMISSION_DENIED', 'replayed');
    expect(runs.t_high).toBe(1);
  });

  it('refuses forged tokens: signed with another key, or edited after signing', async () => {
    const args = { target: 'web' };
    const otherKey = approve('t_high', args, { privateKey: stranger.privateKeyPem });
    const event = await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: otherKey }), 'PERMISSION_DENIED', 'bad-signature');
    expect(event.approval).toBeUndefined();
    const [payload, sig] = approve('t_high', { target: 'web' }).split('.');
    const edited = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), tool: 't_critical' })).toString('base64url');
    await expectRefused(() => caller.call(AGENT, 't_critical', args, { approval: `${edited}.${sig}` }), 'PERMISSION_DENIED', 'bad-signature');
    await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: approve('t_high', args, { kid: 'gate-9' }) }), 'PERMISSION_DENIED', 'unknown-key');
    await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: 'not-a-token' }), 'PERMISSION_DENIED', 'malformed');
  });

  it('refuses an expired token and one whose arguments changed after approval', async () => {
    const expired = approve('t_high', { target: 'web' }, { exp: Date.now() - 31_000 });
    const e1 = await expectRefused(() => caller.call(AGENT, 't_high', { target: 'web' }, { approval: expired }), 'PERMISSION_DENIED', 'expired');
    expect(e1.approval).toMatchObject({ approver: 'alice' });
    const token = approve('t_high', { target: 'web' });
    await expectRefused(() => caller.call(AGENT, 't_high', { target: 'db' }, { approval: token }), 'PERMISSION_DENIED', 'arguments-changed');
    // the token binds the arguments as sent: a default the schema fills in is a different argument set
    await expectRefused(() => caller.call(AGENT, 't_high', { target: 'web', force: false }, { approval: token }), 'PERMISSION_DENIED', 'arguments-changed');
    // the refusals did not use the token up: the approved call still runs
    expect((await caller.call(AGENT, 't_high', { target: 'web' }, { approval: token })).isError).toBe(false);
  });

  it('refuses a token for another agent, tool or caller', async () => {
    const args = { target: 'web' };
    await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: approve('t_high', args, { agent: 'otherpi' }) }), 'PERMISSION_DENIED', 'wrong-agent');
    await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: approve('t_other_high', args) }), 'PERMISSION_DENIED', 'wrong-tool');
    const forTwo = approve('t_high', args, { caller: 'nodered-2' });
    await expectRefused(() => caller.call(AGENT, 't_high', args, { approval: forTwo }), 'PERMISSION_DENIED', 'wrong-caller');
    // A token is bound to the caller id in the topic. Without broker authentication anyone may
    // publish under nodered-2's topic, so a client holding nodered-2's token can spend it there:
    // tokens alone do not catch that; broker ACLs (docs/protocol.md, "Authentication") do.
    const before = runs.t_high ?? 0;
    const spoofed = await rawCall('nodered-2', { name: 't_high', arguments: args, _meta: { approval: forTwo } });
    expect(spoofed.result.isError).toBe(false);
    expect(runs.t_high).toBe(before + 1);
  });

  it('checks a token sent with a call that needs none', async () => {
    await expectRefused(() => caller.call(AGENT, 't_low', { target: 'a' }, { approval: approve('t_high', { target: 'a' }) }), 'PERMISSION_DENIED', 'wrong-tool');
  });

  it('still refuses a used token after a restart with the same used-token file', async () => {
    const args = { target: 'restart' };
    const token = approve('t_critical', args, { jti: 'before-restart-01' });
    expect((await caller.call(AGENT, 't_critical', args, { approval: token })).isError).toBe(false);
    expect(runs.t_critical).toBe(1);
    const oldInstance = caller.agent(AGENT)!.status!.instance;
    await agent.stop();
    events = [];
    await startSafeAgent();
    await until(() => caller.agent(AGENT)?.ready && caller.agent(AGENT)!.status!.instance !== oldInstance, 'the restarted agent');
    await expectRefused(() => caller.call(AGENT, 't_critical', args, { approval: token }), 'PERMISSION_DENIED', 'replayed');
    expect(runs.t_critical).toBe(1);
    const fresh = approve('t_critical', args);
    expect((await caller.call(AGENT, 't_critical', args, { approval: fresh })).isError).toBe(false);
    expect(runs.t_critical).toBe(2);
  });
});
