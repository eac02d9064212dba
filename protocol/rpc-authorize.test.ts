// RpcServer's one enforcement point (its required `authorization`, protocol/policy.ts) on a real
// broker: the beforeRun hook sees the arguments as sent and runs after validation and before
// execution; a refusal, a throwing hook and a cancel while an async hook runs all leave the tool
// un-run; a duplicate joins without a second authorization and gets one answer; caller rules
// filter tools/list; a dry run needs the tool's own support; and the `call` event carries risk,
// args, dryRun, approval and refusal.
import { createPublicKey } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcServer, type CallEvent } from './rpc-server';
import { RpcCaller } from './rpc-client';
import { defineTool } from './tool';
import { toolErrorOf } from './errors';
import { generateApprovalKeys, signApproval } from './approval';
import { UsedTokenStore } from './used-tokens';
import type { AuthorizeRefusal, AuthorizeRequest } from './authorize';
import { until } from '../test/support/until';

let broker: EmbeddedBroker;
let server: RpcServer;
let caller: RpcCaller;
let runs = 0;
const asked: AuthorizeRequest[] = [];
const events: CallEvent[] = [];
const gate = generateApprovalKeys();
/** What the hook does next; each test sets it. */
let decide: (call: AuthorizeRequest) => AuthorizeRefusal | undefined | Promise<AuthorizeRefusal | undefined> = () => undefined;

const tool = defineTool({
  name: 'act', description: 'counts runs', risk: 'medium', supportsDryRun: true,
  input: z.strictObject({ n: z.number(), mode: z.enum(['a', 'b']).default('a') }),
  execute: (args, ctx) => { if (!ctx.dryRun) runs++; return { n: args.n }; },
});
const risky = defineTool({
  name: 'wipe', description: 'high risk, no dry run', risk: 'high', input: z.strictObject({ n: z.number() }),
  execute: (args) => { runs++; return { n: args.n }; },
});
const hidden = defineTool({ name: 'hidden', description: 'not listed', risk: 'low', input: z.strictObject({}), execute: () => ({}) });

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  const store = await UsedTokenStore.open(join(mkdtempSync(join(tmpdir(), 'toolmesh-rpc-authorize-')), 'used.jsonl'), 0, () => undefined);
  server = new RpcServer({
    connection: { url: broker.url }, agentId: 'authpi', tools: [tool, risky, hidden],
    authorization: {
      keys: new Map([['gate-1', createPublicKey(gate.publicKeyPem)]]), store,
      policy: { callers: [{ caller: 'admin', tools: ['*'] }, { caller: '*', tools: ['act', 'wipe'] }] },
      beforeRun: async (call) => { asked.push(call); return decide(call); },
    },
  });
  server.on('call', (e: CallEvent) => events.push(e));
  await server.start();
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'tester' });
  await caller.start();
  await until(() => caller.agent('authpi')?.ready, 'the agent');
});

afterAll(async () => {
  await caller.stop();
  await server.stop();
  await broker.close();
});

/** The event of the next call this test makes. */
async function nextEvent(seen: number): Promise<CallEvent> {
  return until(() => events[seen], 'the call event');
}

describe('authorization', () => {
  it('is asked after validation with the arguments as sent, and an approval reaches the event', async () => {
    decide = () => undefined;
    const seenAsked = asked.length;
    const seen = events.length;
    expect(toolErrorOf(await caller.call('authpi', 'act', { n: 'x' }))?.code).toBe('INVALID_ARGUMENTS');
    expect(asked.length).toBe(seenAsked);
    expect(await nextEvent(seen)).toMatchObject({ code: 'INVALID_ARGUMENTS', risk: 'medium' });
    expect(events[seen]).not.toHaveProperty('args');

    const r = await caller.call('authpi', 'act', { n: 1 });
    expect(r.isError).toBe(false);
    expect(asked.at(-1)).toMatchObject({ callerId: 'tester', tool: { name: 'act' }, args: { n: 1 } });
    expect(asked.at(-1)!.args).not.toHaveProperty('mode');
    expect(await nextEvent(seen + 1)).toMatchObject({ callerId: 'tester', tool: 'act', risk: 'medium', args: { n: 1, mode: 'a' } });

    const token = signApproval({ kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'tester', agent: 'authpi', tool: 'wipe', args: { n: 2 }, approver: 'alice', exp: Date.now() + 60_000 });
    expect((await caller.call('authpi', 'wipe', { n: 2 }, { approval: token })).isError).toBe(false);
    expect(await nextEvent(seen + 2)).toMatchObject({ tool: 'wipe', risk: 'high', approval: { approver: 'alice', kid: 'gate-1' } });
    expect(events[seen + 2]).not.toHaveProperty('refusal');
  });

  it('takes a dry run only for a tool that supports one: a high-risk dry run elsewhere is NOT_SUPPORTED and runs nothing', async () => {
    decide = () => undefined;
    const before = runs;
    const seenAsked = asked.length;
    const seen = events.length;
    const dry = await caller.call('authpi', 'act', { n: 3 }, { dryRun: true });
    expect(dry.isError).toBe(false);
    expect(await nextEvent(seen)).toMatchObject({ tool: 'act', dryRun: true });
    const refused = toolErrorOf(await caller.call('authpi', 'wipe', { n: 3 }, { dryRun: true }));
    expect(refused?.code).toBe('NOT_SUPPORTED');
    expect(await nextEvent(seen + 1)).toMatchObject({ tool: 'wipe', dryRun: true, code: 'NOT_SUPPORTED' });
    expect(toolErrorOf(await caller.call('authpi', 'wipe', { n: 3 }))?.code).toBe('APPROVAL_REQUIRED');
    expect(runs).toBe(before);
    expect(asked.length).toBe(seenAsked);
  });

  it('turns a refusal (sync or async) into the tool error and runs nothing', async () => {
    const before = runs;
    decide = () => ({ code: 'PERMISSION_DENIED', message: 'no', details: { refusal: 'because' } });
    const seen = events.length;
    const r = await caller.call('authpi', 'act', { n: 2 });
    expect(toolErrorOf(r)).toEqual({ code: 'PERMISSION_DENIED', message: 'no', details: { refusal: 'because' } });
    expect(await nextEvent(seen)).toMatchObject({ code: 'PERMISSION_DENIED', refusal: 'because', args: { n: 2, mode: 'a' } });

    decide = async () => ({ code: 'EXECUTION_FAILED', message: 'no record' });
    expect(toolErrorOf(await caller.call('authpi', 'act', { n: 3 }))?.code).toBe('EXECUTION_FAILED');
    expect(await nextEvent(seen + 1)).toMatchObject({ code: 'EXECUTION_FAILED', refusal: 'EXECUTION_FAILED' });
    expect(runs).toBe(before);
  });

  it('refuses the call when the hook throws', async () => {
    const before = runs;
    decide = () => { throw new Error('policy exploded'); };
    const seen = events.length;
    const err = toolErrorOf(await caller.call('authpi', 'act', { n: 4 }));
    expect(err).toMatchObject({ code: 'EXECUTION_FAILED', details: { refusal: 'authorize-failed' } });
    expect(err?.message).toBe('could not authorize the call, so act was not run: policy exploded');
    expect(await nextEvent(seen)).toMatchObject({ refusal: 'authorize-failed' });
    expect(runs).toBe(before);
  });

  it('does not start a tool whose call was cancelled while an async hook ran', async () => {
    const before = runs;
    let grant!: () => void;
    decide = () => new Promise((resolve) => { grant = () => resolve(undefined); });
    const ac = new AbortController();
    const seenAsked = asked.length;
    const seen = events.length;
    const pending = caller.call('authpi', 'act', { n: 5 }, { signal: ac.signal });
    await until(() => asked.length > seenAsked, 'the hook');
    ac.abort('changed my mind');
    expect(toolErrorOf(await pending)?.code).toBe('CANCELLED');
    await new Promise((r) => setTimeout(r, 50)); // the cancel notification reaches the agent
    grant();
    expect(await nextEvent(seen)).toMatchObject({ code: 'CANCELLED' });
    expect(runs).toBe(before);
  });

  it('asks once for a duplicate that arrives while the hook runs; the copies get one answer', async () => {
    let grant!: () => void;
    decide = () => new Promise((resolve) => { grant = () => resolve(undefined); });
    const before = runs;
    const seenAsked = asked.length;
    const raw = await mqtt.connectAsync(broker.url);
    const answers: unknown[] = [];
    await raw.subscribeAsync(server.topics.res('authpi', 'dup'), { qos: 1 });
    raw.on('message', (_t, p) => answers.push(JSON.parse(p.toString())));
    const req = JSON.stringify({ jsonrpc: '2.0', id: 'd-1', method: 'tools/call', params: { name: 'act', arguments: { n: 6 } } });
    await raw.publishAsync(server.topics.req('authpi', 'dup'), req, { qos: 1 });
    await until(() => asked.length > seenAsked, 'the hook');
    await raw.publishAsync(server.topics.req('authpi', 'dup'), req, { qos: 1 });
    await new Promise((r) => setTimeout(r, 50));
    grant();
    await until(() => answers.length === 1, 'the answer');
    await new Promise((r) => setTimeout(r, 200)); // a second answer would have come by now
    await raw.endAsync();
    expect(asked.length).toBe(seenAsked + 1);
    expect(runs).toBe(before + 1);
    expect(answers).toHaveLength(1);
    expect(answers[0]).toMatchObject({ id: 'd-1', result: { structuredContent: { n: 6 } } });
  });
});

describe('caller rules', () => {
  it('filter tools/list per caller; the retained catalog keeps every tool', async () => {
    decide = () => undefined;
    const listed = (await caller.request('authpi', 'tools/list')) as { tools: { name: string }[] };
    expect(listed.tools.map((t) => t.name)).toEqual(['act', 'wipe']);
    expect(caller.agent('authpi')!.catalog!.tools.map((t) => t.name)).toEqual(['act', 'wipe', 'hidden']);
    const admin = new RpcCaller({ connection: { url: broker.url }, callerId: 'admin' });
    await admin.start();
    const all = (await admin.request('authpi', 'tools/list')) as { tools: { name: string }[] };
    await admin.stop();
    expect(all.tools.map((t) => t.name)).toEqual(['act', 'wipe', 'hidden']);
  });
});
