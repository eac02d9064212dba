// The agent's policy and approval store without a broker: globs, tool policy (disable, raise,
// lowering refused), config errors naming the key, the authorize decisions, and the used-token
// file (fsync'd records, compaction on open, a torn last line, a damaged file, restart).
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, generateApprovalKeys, signApproval, type AuthorizeRefusal, type AuthorizeRequest, type Risk, type ToolDefinition } from '../protocol';
import { ConfigError, validateConfig } from './config';
import { resolveApprovals, UsedTokenStore, UsedTokenStoreError } from './approvals';
import { applyToolPolicy, createAuthorizer, globMatcher, PolicyConfigSchema } from '../protocol/policy';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-policy-test-'));
const base = { version: 1, agent: { id: 'pi' }, broker: { url: 'mqtt://127.0.0.1:1883' } };

const tool = (name: string, risk: Risk, supportsDryRun = false): ToolDefinition => defineTool({
  name, description: name, risk, supportsDryRun, input: z.strictObject({ target: z.string().optional() }), execute: () => ({}),
});
const tools = [tool('docker_list_containers', 'low'), tool('docker_restart_container', 'medium', true), tool('docker_remove_container', 'high', true), tool('system_uptime', 'low')];

function problemsOf(raw: unknown, baseDir = dir): string[] {
  try {
    validateConfig(raw, 'x.yaml', baseDir);
  } catch (e) {
    if (e instanceof ConfigError) return e.problems;
    throw e;
  }
  return [];
}

describe('globs', () => {
  it('matches * and ? and nothing else specially', () => {
    const m = globMatcher(['docker_*', 'sys?em_uptime', 'a.b']);
    expect(m('docker_list_containers')).toBe(true);
    expect(m('docker_')).toBe(true);
    expect(m('system_uptime')).toBe(true);
    expect(m('systeem_uptime')).toBe(false);
    expect(m('a.b')).toBe(true);
    expect(m('axb')).toBe(false);
    expect(m('xdocker_list')).toBe(false);
    expect(globMatcher([])('anything')).toBe(false);
  });
});

describe('tool policy', () => {
  it('enables all by default and leaves disabled tools out', () => {
    const all = applyToolPolicy(PolicyConfigSchema.parse({}), tools);
    expect(all.tools.map((t) => t.name)).toEqual(tools.map((t) => t.name));
    expect(all.tools[0]).toBe(tools[0]);
    const some = applyToolPolicy(PolicyConfigSchema.parse({ tools: { enable: ['docker_*'], disable: ['docker_remove_container'] } }), tools);
    expect(some.tools.map((t) => t.name)).toEqual(['docker_list_containers', 'docker_restart_container']);
    expect(some.problems).toEqual([]);
  });

  it('raises a risk on a copy and refuses to lower one, naming the key', () => {
    const raised = applyToolPolicy(PolicyConfigSchema.parse({ risk: { docker_restart_container: 'high', docker_remove_container: 'high' } }), tools);
    expect(raised.problems).toEqual([]);
    expect(raised.tools.find((t) => t.name === 'docker_restart_container')!.risk).toBe('high');
    expect(tools[1].risk).toBe('medium');
    const lowered = applyToolPolicy(PolicyConfigSchema.parse({ risk: { docker_remove_container: 'low' } }), tools);
    expect(lowered.problems).toEqual([expect.stringMatching(/^policy\.risk\.docker_remove_container: docker_remove_container is high risk; an override may raise a risk, never lower it/)]);
  });

  it('warns about entries that match no tool', () => {
    const r = applyToolPolicy(PolicyConfigSchema.parse({ tools: { disable: ['docker_remove_containr'] }, risk: { nope: 'high' } }), tools);
    expect(r.warnings).toEqual([
      expect.stringMatching(/^policy\.risk\.nope: no tool of that name/),
      expect.stringMatching(/^policy\.tools\.disable\.0: "docker_remove_containr" matches no tool/),
    ]);
  });
});

describe('policy and approvals config', () => {
  it('fills defaults: all tools, any caller, approval from high, the used-token file beside the config', () => {
    const cfg = validateConfig(base, 'x.yaml', dir);
    expect(cfg.policy).toEqual({ tools: { enable: ['*'], disable: [] }, risk: {}, approvalRequiredFrom: 'high' });
    expect(cfg.approvals).toEqual({ keys: {}, keyFiles: {}, usedTokensFile: join(dir, 'pi.approvals-used.jsonl'), skewToleranceMs: 30_000 });
  });

  it('names each bad key', () => {
    const text = problemsOf({
      ...base,
      policy: {
        tools: { enable: ['has space'], disabel: [] },
        callers: [],
        risk: { docker_remove_container: 'extreme' },
        approvalRequiredFrom: 'sometimes',
      },
      approvals: { keys: { 'gate-1': 'not a key' }, keyFiles: { 'gate-2': './missing.pub' }, skewToleranceMs: -1, colour: 1 },
    }).join('\n');
    expect(text).toMatch(/^policy\.tools\.enable\.0: a glob of 1 to 128 characters without spaces/m);
    expect(text).toMatch(/^policy\.tools: unknown key "disabel"/m);
    expect(text).toMatch(/^policy\.callers: list at least one rule/m);
    expect(text).toMatch(/^policy\.risk\.docker_remove_container: /m);
    expect(text).toMatch(/^policy\.approvalRequiredFrom: /m);
    expect(text).toMatch(/^approvals\.skewToleranceMs: /m);
    expect(text).toMatch(/^approvals: unknown key "colour"/m);
  });

  it('parses the keys and names a bad one', () => {
    const { publicKeyPem } = generateApprovalKeys();
    writeFileSync(join(dir, 'gate-2.pub'), publicKeyPem);
    const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    const text = problemsOf({
      ...base,
      approvals: { keys: { 'gate-1': 'not a key', 'gate-3': ec, 'gate-2': publicKeyPem }, keyFiles: { 'gate-2': './gate-2.pub', 'gate-4': './missing.pub' } },
    }).join('\n');
    expect(text).toMatch(/^approvals\.keys\.gate-1: not a usable public key/m);
    expect(text).toMatch(/^approvals\.keys\.gate-3: not a usable public key \(an Ed25519 public key is needed, this is ec\)/m);
    expect(text).toMatch(/^approvals\.keyFiles\.gate-2: key id also in approvals\.keys/m);
    expect(text).toMatch(new RegExp(`^approvals\\.keyFiles\\.gate-4: cannot use ${join(dir, 'missing.pub')}: .*ENOENT`, 'm'));

    const both = problemsOf({ ...base, agent: { id: 'bad id' }, approvals: { keyFiles: { 'gate-4': './missing.pub' } } }).join('\n');
    expect(both).toMatch(/^agent\.id: /m);
    expect(both).toMatch(/^approvals\.keyFiles\.gate-4: cannot use /m);

    const cfg = validateConfig({ ...base, approvals: { keys: { 'gate-1': publicKeyPem }, keyFiles: { 'gate-2': './gate-2.pub' }, usedTokensFile: 'used.jsonl' } }, 'x.yaml', dir);
    expect(cfg.approvals.keyFiles['gate-2']).toBe(join(dir, 'gate-2.pub'));
    expect(cfg.approvals.usedTokensFile).toBe(join(dir, 'used.jsonl'));
    const resolved = resolveApprovals(cfg.approvals, 'pi', '/elsewhere');
    expect('keys' in resolved && [...resolved.keys.keys()]).toEqual(['gate-1', 'gate-2']);
  });
});

describe('used-token store', () => {
  const now = 1_800_000_000_000;
  const clock = () => now;
  const noWarn = (m: string) => { throw new Error(`unexpected warning: ${m}`); };

  it('records before it resolves, refuses a seen id, and remembers it after a restart', async () => {
    const file = join(dir, 'restart.jsonl');
    const store = await UsedTokenStore.open(file, 30_000, noWarn, clock);
    expect(existsSync(file)).toBe(true);
    const [a, b] = await Promise.all([store.claim('jti-aaaaaaaa', now + 60_000), store.claim('jti-aaaaaaaa', now + 60_000)]);
    expect([a, b].sort()).toEqual([false, true]);
    expect(readFileSync(file, 'utf8')).toBe(`{"jti":"jti-aaaaaaaa","exp":${now + 60_000}}\n`);
    await store.close();
    const again = await UsedTokenStore.open(file, 30_000, noWarn, clock);
    expect(await again.claim('jti-aaaaaaaa', now + 60_000)).toBe(false);
    expect(await again.claim('jti-bbbbbbbb', now + 60_000)).toBe(true);
    await again.close();
  });

  it('drops expired entries on open and rewrites the file compacted', async () => {
    const file = join(dir, 'compact.jsonl');
    writeFileSync(file, [
      { jti: 'old-one-1', exp: now - 31_000 }, { jti: 'in-skew-1', exp: now - 29_000 }, { jti: 'live-one-1', exp: now + 1000 },
    ].map((e) => `${JSON.stringify(e)}\n`).join(''));
    const store = await UsedTokenStore.open(file, 30_000, noWarn, clock);
    expect(store.size).toBe(2);
    expect(readFileSync(file, 'utf8')).toBe(`{"jti":"in-skew-1","exp":${now - 29_000}}\n{"jti":"live-one-1","exp":${now + 1000}}\n`);
    expect(existsSync(`${file}.${process.pid}.tmp`)).toBe(false);
    await store.close();
  });

  it('drops a torn last line with a warning but refuses a damaged file', async () => {
    const torn = join(dir, 'torn.jsonl');
    writeFileSync(torn, `{"jti":"live-one-1","exp":${now + 1000}}\n{"jti":"half`);
    const warnings: string[] = [];
    const store = await UsedTokenStore.open(torn, 30_000, (m) => warnings.push(m), clock);
    expect(warnings).toEqual([expect.stringContaining('dropped a torn last line')]);
    expect(store.size).toBe(1);
    await store.close();
    expect(readFileSync(torn, 'utf8')).toBe(`{"jti":"live-one-1","exp":${now + 1000}}\n`);

    const damaged = join(dir, 'damaged.jsonl');
    writeFileSync(damaged, `{"jti":"live-one-1","exp":${now + 1000}}\ngarbage\n{"jti":"live-two-2","exp":${now + 1000}}\n`);
    const err = await UsedTokenStore.open(damaged, 30_000, noWarn, clock).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(UsedTokenStoreError);
    expect((err as Error).message).toMatch(/line 2 is not a \{"jti","exp"\} record/);
  });
});

describe('authorize decisions', () => {
  const gate = generateApprovalKeys();
  const keys = new Map([['gate-1', createPublicKey(gate.publicKeyPem)]]);
  const policy = PolicyConfigSchema.parse({ callers: [{ caller: 'nodered-*', tools: ['*'] }, { caller: 'dashboard', tools: ['system_*'] }] });
  const req = (over: Partial<AuthorizeRequest> & { toolName?: string } = {}): AuthorizeRequest => ({
    callerId: 'nodered-1', id: 1, tool: tools.find((t) => t.name === (over.toolName ?? 'docker_remove_container'))!, args: { target: 'web' }, meta: {}, ...over,
  });
  const token = (over: Partial<Parameters<typeof signApproval>[0]> = {}) => signApproval({
    kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: 'pi', tool: 'docker_remove_container', args: { target: 'web' },
    exp: Date.now() + 60_000, approver: 'alice', ...over,
  });

  it('applies caller rules, approval, dry run and the jti in that order', async () => {
    const store = await UsedTokenStore.open(join(dir, 'decisions.jsonl'), 30_000, () => {});
    const { authorize, mayCall } = createAuthorizer({ agentId: 'pi', policy, keys, skewToleranceMs: 30_000, store });
    expect(mayCall('dashboard', 'system_uptime')).toBe(true);
    expect(mayCall('dashboard', 'docker_list_containers')).toBe(false);
    expect(mayCall('stranger', 'system_uptime')).toBe(false);
    expect(await authorize(req({ toolName: 'system_uptime', callerId: 'dashboard' }))).toBeUndefined();
    expect(await authorize(req({ toolName: 'docker_restart_container' }))).toBeUndefined();

    const denied = await authorize(req({ callerId: 'dashboard', meta: { dryRun: true } })) as AuthorizeRefusal;
    expect(denied).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'caller-not-allowed' } });
    expect(denied.message).toBe('caller "dashboard" may not call docker_remove_container on agent pi: no rule in the agent\'s policy.callers allows it; the call was not run');
    expect(await authorize(req())).toMatchObject({
      code: 'APPROVAL_REQUIRED', message: 'docker_remove_container is high risk, so this call needs a person\'s approval: send it through a confirm-gate',
      details: { refusal: 'approval-required', risk: 'high', approvalRequiredFrom: 'high' },
    });
    expect(await authorize(req({ meta: { dryRun: true } }))).toBeUndefined();
    // only a tool that declares supportsDryRun skips the approval on a dry run
    expect(await authorize(req({ tool: { ...req().tool, supportsDryRun: false }, meta: { dryRun: true } }))).toMatchObject({ code: 'APPROVAL_REQUIRED' });

    const t = token({ jti: 'decision-jti-1' });
    expect(await authorize(req({ tool: { ...req().tool, supportsDryRun: true }, meta: { approval: t, dryRun: true } }))).toBeUndefined();
    expect(await authorize(req({ meta: { approval: t } }))).toEqual({ approval: { approver: 'alice', jti: 'decision-jti-1', kid: 'gate-1', exp: expect.any(Number) } });
    expect(await authorize(req({ meta: { approval: t } }))).toMatchObject({
      code: 'PERMISSION_DENIED', details: { refusal: 'replayed' }, approval: { jti: 'decision-jti-1' },
    });
    // a token sent with a call that needs none is still checked
    expect(await authorize(req({ toolName: 'docker_restart_container', meta: { approval: t } }))).toMatchObject({ details: { refusal: 'wrong-tool' } });
    const forged = await authorize(req({ meta: { approval: token({ privateKey: generateApprovalKeys().privateKeyPem }) } })) as AuthorizeRefusal;
    expect(forged).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'bad-signature' } });
    expect(forged.approval).toBeUndefined();

    await store.close();
    const unrecorded = await authorize(req({ meta: { approval: token() } })) as AuthorizeRefusal;
    expect(unrecorded).toMatchObject({ code: 'EXECUTION_FAILED', details: { refusal: 'not-recorded' } });
  });

  it('requires approval from the configured level', async () => {
    const strict = createAuthorizer({ agentId: 'pi', policy: PolicyConfigSchema.parse({ approvalRequiredFrom: 'medium' }), keys: new Map(), skewToleranceMs: 0 });
    expect(await strict.authorize(req({ toolName: 'docker_restart_container' }))).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(await strict.authorize(req({ toolName: 'docker_list_containers', callerId: 'anyone' }))).toBeUndefined();
    expect(await strict.authorize(req({ meta: { approval: token() } }))).toMatchObject({ details: { refusal: 'unknown-key' } });
  });
});
