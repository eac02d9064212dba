// The agent's execution log: a real broker, the agent runtime with `audit:` in its config, calls
// through RpcCaller. Every call the agent finished or refused is a record (caller, tool, redacted
// args, approval's approver/jti/kid, outcome, durationMs, dryRun), a high-risk call also has its
// call-started record before it (audit.durableFrom, default high), the chain verifies, and a
// restarted agent continues it.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, generateApprovalKeys, RpcCaller, signApproval, toolErrorOf } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { anchorPath, AuditWriter, chainFiles, readAnchor, verifyChain, type AuditRecord } from '../protocol/audit';
import { validateConfig, type AgentConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { until } from './support/until';

const AGENT = 'auditpi';
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-audit-agent-'));
const gate = generateApprovalKeys();
const quiet = { info() {}, warn() {}, error() {} };
const BROKER_PW = 'brokerpw-123456';

const tools = [
  defineTool({ name: 'echo', description: 'Echoes.', risk: 'low', supportsDryRun: true, input: z.strictObject({ text: z.string(), apiKey: z.string().optional() }), execute: (a, ctx) => ({ echo: a.text, dryRun: ctx.dryRun }) }),
  defineTool({ name: 'wipe', description: 'Needs approval.', risk: 'high', input: z.strictObject({ target: z.string() }), execute: (a) => ({ wiped: a.target }) }),
];

let broker: EmbeddedBroker;
let agent: RunningAgent;
const callers: RpcCaller[] = [];

function config(): AgentConfig {
  return validateConfig({
    version: 1,
    agent: { id: AGENT },
    broker: { url: broker.url, username: 'auditpi', password: BROKER_PW },
    policy: { callers: [{ caller: 'nodered-*', tools: ['*'] }] },
    approvals: { keys: { 'gate-1': gate.publicKeyPem }, usedTokensFile: join(dir, 'used.jsonl') },
    audit: { file: 'logs/pi-audit.jsonl', rotateMb: 10, daily: true, redactKeys: ['target_secret'] },
  }, 'test.yaml', dir);
}

async function connect(callerId: string): Promise<RpcCaller> {
  const c = new RpcCaller({ connection: { url: broker.url }, callerId });
  await c.start();
  await until(() => c.agent(AGENT)?.ready, `${callerId} sees ${AGENT}`);
  callers.push(c);
  return c;
}

const file = join(dir, 'logs', 'pi-audit.jsonl');
const records = () => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
});
afterAll(async () => {
  for (const c of callers) await c.stop();
  await agent?.stop();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('agent execution log', () => {
  it('resolves audit.file against the config directory and leaves the log off without audit:', () => {
    expect(config().audit).toEqual({ file, rotateMb: 10, daily: true, redactKeys: ['target_secret'], durableFrom: 'high' });
    const none = validateConfig({ version: 1, agent: { id: AGENT }, broker: { url: 'mqtt://127.0.0.1:1883' } }, 'x.yaml', dir);
    expect(none.audit).toBeUndefined();
    const defaulted = validateConfig({ version: 1, agent: { id: AGENT }, broker: { url: 'mqtt://127.0.0.1:1883' }, audit: {} }, 'x.yaml', dir);
    expect(defaulted.audit?.file).toBe(join(dir, `${AGENT}-audit.jsonl`));
  });

  it('records successful, dry-run, approved and refused calls, redacted, in one verifiable chain', async () => {
    agent = await startAgent(config(), quiet, tools);
    const ok = await connect('nodered-1');
    const intruder = await connect('intruder');
    const token = signApproval({ kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: AGENT, tool: 'wipe', args: { target: 'cache' }, exp: Date.now() + 60_000, approver: 'alice', jti: 'jti-audit-0001' });

    expect(toolErrorOf(await ok.call(AGENT, 'echo', { text: `pw ${BROKER_PW}`, apiKey: 'sk-abc' }))).toBeUndefined();
    expect(toolErrorOf(await ok.call(AGENT, 'echo', { text: 'preview' }, { dryRun: true }))).toBeUndefined();
    expect(toolErrorOf(await ok.call(AGENT, 'echo', { text: 5 }))?.code).toBe('INVALID_ARGUMENTS');
    expect(toolErrorOf(await intruder.call(AGENT, 'echo', { text: 'hi' }))?.code).toBe('PERMISSION_DENIED');
    expect(toolErrorOf(await ok.call(AGENT, 'wipe', { target: 'cache' }))?.code).toBe('APPROVAL_REQUIRED');
    expect(toolErrorOf(await ok.call(AGENT, 'wipe', { target: 'cache' }, { approval: token }))).toBeUndefined();
    await until(() => records().length === 7, 'seven records');

    const recs = records();
    expect(recs.map((r) => [r.kind, r.caller, r.tool, r.outcome])).toEqual([
      ['tool-call', 'nodered-1', 'echo', 'ok'],
      ['tool-call', 'nodered-1', 'echo', 'ok'],
      ['refusal', 'nodered-1', 'echo', 'INVALID_ARGUMENTS'],
      ['refusal', 'intruder', 'echo', 'PERMISSION_DENIED'],
      ['refusal', 'nodered-1', 'wipe', 'APPROVAL_REQUIRED'],
      ['call-started', 'nodered-1', 'wipe', undefined],
      ['tool-call', 'nodered-1', 'wipe', 'ok'],
    ]);
    for (const r of recs) {
      expect(r.agent).toBe(AGENT);
      if (r.kind !== 'call-started') expect(r.durationMs).toBeTypeOf('number');
      expect(r.callId).toBeDefined();
    }
    expect(recs[5]).toMatchObject({ callId: recs[6].callId, risk: 'high', args: { target: 'cache' }, approval: { approver: 'alice', jti: 'jti-audit-0001', kid: 'gate-1' } });
    expect(recs[0].args).toEqual({ text: 'pw [redacted]', apiKey: '[redacted]' });
    expect(recs[1].dryRun).toBe(true);
    expect(recs[2].refusal).toMatchObject({ code: 'INVALID_ARGUMENTS' });
    expect(recs[3].refusal).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(recs[3].refusal?.reason).toBeTypeOf('string');
    expect(recs[6]).toMatchObject({ risk: 'high', approval: { approver: 'alice', jti: 'jti-audit-0001', kid: 'gate-1' } });
    const text = readFileSync(file, 'utf8');
    expect(text).not.toContain(BROKER_PW);
    expect(text).not.toContain(token.split('.')[0]);
    await until(() => readAnchor(anchorPath(file))?.seq === 7, 'the anchor to name seq 7'); // written after the line
    expect(verifyChain(chainFiles(file))).toMatchObject({ ok: true, records: 7, anchor: { seq: 7, lag: 0 } });
  });

  it('continues the chain after a restart, and refuses to start on a log cut at the end', async () => {
    await agent.stop();
    agent = await startAgent(config(), quiet, tools);
    const ok = callers[0];
    await until(() => ok.agent(AGENT)?.ready, 'the restarted agent');
    expect(toolErrorOf(await ok.call(AGENT, 'echo', { text: 'again' }))).toBeUndefined();
    await until(() => records().length === 8, 'the eighth record');
    expect(records()[7]).toMatchObject({ seq: 8, prev: records()[6].hash });
    await agent.stop();
    expect(verifyChain(chainFiles(file))).toMatchObject({ ok: true, records: 8 });

    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    const w = await AuditWriter.open({ file }); // sanity: the intact log opens
    await w.close();
    writeFileSync(file, lines.slice(0, 5).map((l) => `${l}\n`).join(''));
    await expect(startAgent(config(), quiet, tools)).rejects.toMatchObject({ code: 'truncated' });
    agent = undefined as unknown as RunningAgent;
  });
});
