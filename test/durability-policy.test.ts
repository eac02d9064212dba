// Where the audit log's started record sits in the agent's authorize hook (createAuthorizer's
// `beforeRun`), with a real used-token file on disk and the real AgentAudit on a real log: it runs
// only for calls every check allowed (not for refused callers, missing or bad tokens, replays or
// dry runs), and a refusal from it leaves the approval token unused.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, generateApprovalKeys, signApproval, type AuthorizeRequest, type Risk, type ToolDefinition } from '../protocol';
import { resolveApprovals, UsedTokenStore } from '../agent/approvals';
import { openAgentAudit } from '../agent/audit';
import { validateConfig } from '../agent/config';
import { createAuthorizer } from '../protocol/policy';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-durability-policy-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));
const quiet = { info() {}, warn() {}, error() {} };
const gate = generateApprovalKeys();
const tool = (name: string, risk: Risk): ToolDefinition => defineTool({ name, description: name, risk, input: z.strictObject({ target: z.string() }), execute: () => ({}) });
const low = tool('t_low', 'low');
const high = tool('t_high', 'high');
const critical = tool('t_critical', 'critical');

describe('the started record in the authorize hook', () => {
  it('is written only for calls every check allowed, and a refusal from it keeps the token unused', async () => {
    const cfg = validateConfig({
      version: 1, agent: { id: 'pi' }, broker: { url: 'mqtt://127.0.0.1:1883' },
      policy: { callers: [{ caller: 'nodered-*', tools: ['*'] }], approvalRequiredFrom: 'critical' },
      approvals: { keys: { 'gate-1': gate.publicKeyPem }, usedTokensFile: join(dir, 'used.jsonl') },
      audit: { file: join(dir, 'audit.jsonl') },
    }, 'x.yaml', dir);
    const approvals = resolveApprovals(cfg.approvals, 'pi', dir);
    if ('problems' in approvals) throw new Error(approvals.problems.join('; '));
    const store = await UsedTokenStore.open(approvals.usedTokensFile, approvals.skewToleranceMs, () => undefined);
    const audit = (await openAgentAudit(cfg, quiet))!;
    let closeAudit = false; // when set, the started hook meets a closed log: the write fails
    const seen: string[] = [];
    const authz = createAuthorizer({
      agentId: 'pi', policy: cfg.policy, keys: approvals.keys, skewToleranceMs: approvals.skewToleranceMs, store,
      beforeRun: async (call, approval) => {
        seen.push(String(call.id));
        if (closeAudit) await audit.close();
        return audit.started(call, approval);
      },
    });
    const token = (target: string, over: Record<string, unknown> = {}) => signApproval({
      kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: 'pi', tool: 't_critical', args: { target }, exp: Date.now() + 60_000, approver: 'bob', ...over,
    });
    const ask = (id: string, t: ToolDefinition, callerId = 'nodered-1', meta: AuthorizeRequest['meta'] = {}) =>
      authz.authorize({ callerId, id, tool: t, args: { target: 'x' }, meta });

    expect(await ask('low', low)).toBeUndefined();
    expect(await ask('high', high)).toBeUndefined();
    expect(await ask('intruder', high, 'intruder')).toMatchObject({ code: 'PERMISSION_DENIED' });
    expect(await ask('no-token', critical)).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(await ask('bad-token', critical, 'nodered-1', { approval: token('x', { exp: Date.now() - 120_000 }) })).toMatchObject({ details: { refusal: 'expired' } });
    // a dry run skips the approval only for a tool that declares supportsDryRun
    expect(await ask('dry', { ...critical, supportsDryRun: true }, 'nodered-1', { dryRun: true })).toBeUndefined();
    expect(await ask('dry-unsupported', critical, 'nodered-1', { dryRun: true })).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    const good = token('x');
    expect(await ask('approved', critical, 'nodered-1', { approval: good })).toMatchObject({ approval: { approver: 'bob' } });
    expect(await ask('replayed', critical, 'nodered-1', { approval: good })).toMatchObject({ details: { refusal: 'replayed' } });
    // the hook is asked for allowed calls only; the audit writes started records from high up
    expect(seen).toEqual(['low', 'high', 'approved']);
    const records = () => readFileSync(join(dir, 'audit.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    expect(records().map((r) => [r.kind, r.callId, r.risk])).toEqual([['call-started', 'high', 'high'], ['call-started', 'approved', 'critical']]);

    // the log cannot be written: refused, EXECUTION_FAILED naming the file, token still unused
    closeAudit = true;
    const fresh = token('x');
    const refused = await ask('unlogged', critical, 'nodered-1', { approval: fresh });
    expect(refused).toMatchObject({ code: 'EXECUTION_FAILED', details: { refusal: 'audit-not-written', file: join(dir, 'audit.jsonl'), risk: 'critical' }, approval: { approver: 'bob' } });
    expect((refused as { message: string }).message).toContain(`the audit log ${join(dir, 'audit.jsonl')} could not be written`);
    expect(store.isUsed(JSON.parse(Buffer.from(fresh.split('.')[0], 'base64url').toString()).jti)).toBe(false);
    // lower risks still pass with the log closed
    expect(await ask('low-unlogged', low)).toBeUndefined();
    await store.close();
  });
});
