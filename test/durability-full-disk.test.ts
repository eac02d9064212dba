// A full disk under the audit log and the used-token store (issue 9, item 6). The test mounts a
// 64 KiB tmpfs (root only), fills it with a file and removes the file again to give space back.
// Outside CI a machine that does not allow the mount skips the tmpfs tests with the reason
// printed; with CI set they fail instead.
//
// 1. The writer alone: records appended while the disk is full fail, leave the chain and the
//    anchor as they were, and appending works again when space returns.
// 2. The built toolmesh-agent (real broker, real desktop pack): calls at or above
//    audit.durableFrom (default high) are refused with EXECUTION_FAILED naming the audit file and
//    do not run, and an approval token sent with such a call stays unused; lower-risk calls run;
//    the agent lives, writes again when space returns, and `toolmesh audit verify` passes during
//    and after.
// 3. A second agent with its used-token file on the full disk (audit log elsewhere): a valid
//    token is refused (not-recorded) and the tool does not run; after space returns the same
//    token works once, then is a replay.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, unlinkSync, writeFileSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys, RpcCaller, signApproval, toolErrorOf } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { AuditWriter, chainFiles, verifyChain } from '../protocol/audit';
import { ConfigError, validateConfig } from '../agent/config';
import { rawCall, requireBuild, spawnAgent, stopAgent, verifyCli, waitReady, type AgentProcess } from './durability-helpers';
import { until } from './support/until';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-durability-disk-'));
const disk = join(dir, 'disk');
const work = join(dir, 'work');
const fillFile = join(disk, 'fill');

/** Mounts a 64 KiB tmpfs at `at`; returns why it could not, or undefined when mounted. */
function mountTmpfs(at: string): string | undefined {
  mkdirSync(at, { recursive: true });
  if (process.platform !== 'linux') return `tmpfs mounts need Linux (this is ${process.platform})`;
  try {
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k', 'tmpfs', at], { stdio: 'pipe' });
    return undefined;
  } catch (e) {
    const err = e as { stderr?: Buffer; message: string };
    return `mount -t tmpfs -o size=64k tmpfs ${at} failed (the test needs root and permission to mount): ${err.stderr?.toString().trim() || err.message}`;
  }
}

const notMounted = mountTmpfs(disk);
const mustRun = !!process.env.CI;
if (notMounted && !mustRun) console.warn(`durability full-disk tests skipped: ${notMounted}`);

afterAll(() => {
  if (!notMounted) {
    try {
      execFileSync('umount', [disk], { stdio: 'pipe' });
    } catch (e) {
      // still busy (a file left open by a failed test): detach it now, the kernel frees it when closed
      console.warn(`umount ${disk} failed (${(e as Error).message.trim()}); detaching it with umount -l`);
      execFileSync('umount', ['-l', disk], { stdio: 'pipe' });
    }
  }
  rmSync(dir, { recursive: true, force: true });
});

/** Fills the tmpfs: writes a file until ENOSPC, page-sized then byte by byte. @returns bytes written. */
function fillDisk(): number {
  const fd = openSync(fillFile, 'w');
  let total = 0;
  try {
    for (const size of [4096, 1]) {
      const buf = Buffer.alloc(size, 0x78);
      for (;;) {
        try {
          total += writeSync(fd, buf);
        } catch (e) {
          if ((e as NodeJS.ErrnoException).code === 'ENOSPC') break;
          throw e;
        }
      }
    }
  } finally {
    closeSync(fd);
  }
  // the disk is full: a new file with content cannot be written
  expect(() => writeFileSync(join(disk, 'probe'), 'x')).toThrow(/ENOSPC/);
  rmSync(join(disk, 'probe'), { force: true });
  return total;
}

function freeDisk(): void {
  unlinkSync(fillFile);
}

describe('audit config', () => {
  it('audit.durableFrom defaults to high and names the key when it is wrong', () => {
    const base = { version: 1, agent: { id: 'pi' }, broker: { url: 'mqtt://127.0.0.1:1883' } };
    expect(validateConfig({ ...base, audit: {} }, 'x.yaml', dir).audit?.durableFrom).toBe('high');
    expect(validateConfig({ ...base, audit: { durableFrom: 'medium' } }, 'x.yaml', dir).audit?.durableFrom).toBe('medium');
    let err: ConfigError | undefined;
    try { validateConfig({ ...base, audit: { durableFrom: 'extreme' } }, 'x.yaml', dir); } catch (e) { err = e as ConfigError; }
    expect(err).toBeInstanceOf(ConfigError);
    expect(err!.problems.join('\n')).toMatch(/^audit\.durableFrom: must be one of low, medium, high, critical/m);
  });
});

describe.skipIf(notMounted !== undefined && !mustRun)('a full disk under the audit log', () => {
  beforeAll(() => {
    if (notMounted) throw new Error(`CI is set, so the full-disk tests must run, but: ${notMounted}`);
  });

  it('the writer fails records while full, keeps chain and anchor whole, and writes again when space returns', async () => {
    const file = join(disk, 'lib', 'audit.jsonl');
    const w = await AuditWriter.open({ file });
    for (let i = 0; i < 3; i++) await w.append({ kind: 'message', text: `before ${i}` });
    try {
      fillDisk();
      let failures = 0;
      for (let i = 0; i < 5; i++) {
        await w.append({ kind: 'message', text: `while full ${i}` }).then(() => undefined, (e: Error) => {
          failures++;
          expect(e.message).toMatch(/ENOSPC/);
          expect(e.message).toMatch(/not written/);
        });
      }
      expect(failures).toBe(5);
      expect(w.chainHead.seq).toBe(3);
      expect(verifyChain([file])).toMatchObject({ ok: true, records: 3, anchor: { seq: 3, lag: 0 } });
    } catch (e) {
      await w.close();
      throw e;
    } finally {
      if (existsSync(fillFile)) freeDisk();
    }
    try {
      await w.append({ kind: 'message', text: 'space again' });
    } finally {
      await w.close();
    }
    const after = verifyChain([file]);
    expect(after).toMatchObject({ ok: true, records: 4, anchor: { seq: 4, lag: 0 } });
    expect(after.crashTail).toBeUndefined();
    // and a new writer continues it
    const again = await AuditWriter.open({ file });
    expect(again.chainHead.seq).toBe(4);
    await again.close();
  });

  describe('the agent binary', () => {
    let broker: EmbeddedBroker;
    let caller: RpcCaller;
    let audited: AgentProcess | undefined;
    let tokens: AgentProcess | undefined;
    const auditFile = join(disk, 'diskpi-audit.jsonl');
    const usedFile = join(disk, 'tokenpi.used.jsonl');
    const gate = generateApprovalKeys();

    beforeAll(async () => {
      await requireBuild();
      mkdirSync(work, { recursive: true });
      broker = await startBroker({ port: 0 });
      // diskpi: audit log on the small disk (used tokens on the big one); high-risk calls need no
      // token here, so the audit write is what decides; create_directory is raised to critical and needs one
      writeFileSync(join(dir, 'diskpi.yaml'), [
        'version: 1',
        'agent: { id: diskpi }',
        `broker: { url: "${broker.url}" }`,
        'packs:',
        `  desktop: { allowedPaths: ["${work}"] }`,
        '  diag: {}',
        'policy: { approvalRequiredFrom: critical, risk: { desktop_create_directory: critical } }',
        'approvals:',
        `  keys: { gate-1: ${JSON.stringify(gate.publicKeyPem)} }`,
        `  usedTokensFile: "${join(dir, 'diskpi.used.jsonl')}"`,
        `audit: { file: "${auditFile}" }`,
        '',
      ].join('\n'));
      // tokenpi: used-token file on the small disk, audit log on the big one
      writeFileSync(join(dir, 'tokenpi.yaml'), [
        'version: 1',
        'agent: { id: tokenpi }',
        `broker: { url: "${broker.url}" }`,
        'packs:',
        `  desktop: { allowedPaths: ["${work}"] }`,
        'approvals:',
        `  keys: { gate-1: ${JSON.stringify(gate.publicKeyPem)} }`,
        `  usedTokensFile: "${usedFile}"`,
        `audit: { file: "${join(dir, 'tokenpi-audit.jsonl')}" }`,
        '',
      ].join('\n'));
      caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'nodered-1' });
      await caller.start();
      audited = await spawnAgent(join(dir, 'diskpi.yaml'));
      tokens = await spawnAgent(join(dir, 'tokenpi.yaml'));
      await waitReady(caller, 'diskpi', audited);
      await waitReady(caller, 'tokenpi', tokens);
    });

    afterAll(async () => {
      if (existsSync(fillFile)) freeDisk();
      await caller?.stop();
      await stopAgent(audited);
      await stopAgent(tokens);
      await broker?.close();
    });

    const dirPath = (name: string) => join(work, name);
    const make = (name: string) => mkdirSync(dirPath(name), { recursive: true });
    const records = () => readFileSync(auditFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));

    it('refuses high-risk calls while the log cannot be written, runs the others, and resumes', async () => {
      make('victim-1');
      make('victim-2');
      // space: a high-risk call runs after its started record
      const first = await caller.call('diskpi', 'desktop_delete_directory', { path: dirPath('victim-1') });
      expect(toolErrorOf(first), JSON.stringify(first)).toBeUndefined();
      expect(existsSync(dirPath('victim-1'))).toBe(false);
      // the final record is written after the answer went out: let it and its anchor land before
      // the disk fills (an anchor replaced meanwhile frees the old one's page: the disk would not be full)
      await until(() => {
        const last = existsSync(auditFile) ? records().at(-1) : undefined;
        if (last?.kind !== 'tool-call' || last.args?.path !== dirPath('victim-1')) return false;
        return JSON.parse(readFileSync(`${auditFile}.anchor`, 'utf8')).seq === last.seq;
      }, 'the record of victim-1 and its anchor');

      const filled = fillDisk();
      expect(filled).toBeGreaterThan(0);
      const refused = await caller.call('diskpi', 'desktop_delete_directory', { path: dirPath('victim-2') });
      const err = toolErrorOf(refused);
      expect(err?.code, JSON.stringify(refused)).toBe('EXECUTION_FAILED');
      expect(err?.message).toContain('audit log');
      expect(err?.message).toContain(auditFile);
      expect(err?.message).toMatch(/could not be written .*ENOSPC/);
      expect(err?.details).toMatchObject({ refusal: 'audit-not-written', file: auditFile, risk: 'high', durableFrom: 'high' });
      expect(existsSync(dirPath('victim-2')), 'the refused tool ran').toBe(true);

      // an approved critical call is refused the same way, and its token stays unused
      const madeArgs = { path: dirPath('made-once') };
      const token = signApproval({
        kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: 'diskpi', tool: 'desktop_create_directory',
        args: madeArgs, exp: Date.now() + 120_000, approver: 'alice',
      });
      const approved = await caller.call('diskpi', 'desktop_create_directory', madeArgs, { approval: token });
      expect(toolErrorOf(approved), JSON.stringify(approved)).toMatchObject({ code: 'EXECUTION_FAILED', details: { refusal: 'audit-not-written', risk: 'critical' } });
      expect(existsSync(dirPath('made-once'))).toBe(false);

      // lower risk still runs, with a warning in the agent's log
      const echo = await caller.call('diskpi', 'diag_echo', { text: 'still here' });
      expect(echo.structuredContent).toEqual({ echo: { text: 'still here' } });
      await until(() => /warn: audit: .*not written: .*ENOSPC/.test(audited!.output()), 'the audit warning');

      // the log on the full disk is whole: no half-written record, anchor in step
      const during = await verifyCli(auditFile);
      expect(during.code, during.out).toBe(0);
      expect(during.out).toMatch(/^ok: /m);
      expect(during.out).not.toMatch(/warning|problem/);
      expect(audited!.alive(), audited!.output()).toBe(true);

      freeDisk();
      const second = await caller.call('diskpi', 'desktop_delete_directory', { path: dirPath('victim-2') });
      expect(toolErrorOf(second), JSON.stringify(second)).toBeUndefined();
      expect(existsSync(dirPath('victim-2'))).toBe(false);
      const approvedNow = await caller.call('diskpi', 'desktop_create_directory', madeArgs, { approval: token });
      expect(toolErrorOf(approvedNow), JSON.stringify(approvedNow)).toBeUndefined();
      expect(existsSync(dirPath('made-once'))).toBe(true);
      rmSync(dirPath('made-once'), { recursive: true });
      const replayed = await caller.call('diskpi', 'desktop_create_directory', madeArgs, { approval: token });
      expect(toolErrorOf(replayed)).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
      expect(existsSync(dirPath('made-once'))).toBe(false);
      await until(() => /info: audit: writing to .* again; \d+ records were not written meanwhile and 2 calls were refused/.test(audited!.output()), 'the resume line');

      await stopAgent(audited);
      expect((await audited!.exited).code, audited!.output()).toBe(0);
      const after = await verifyCli(auditFile);
      expect(after.code, after.out).toBe(0);
      expect(after.out).not.toMatch(/warning|problem/);

      const recs = records();
      const started = recs.filter((r) => r.kind === 'call-started');
      // victim-1, victim-2's second attempt, made-once's approved run; nothing of the refused attempts
      // nor of the replay (refused before its start), nothing for lower risks
      expect(started.map((r) => r.args.path)).toEqual([dirPath('victim-1'), dirPath('victim-2'), dirPath('made-once')]);
      expect(started[2]).toMatchObject({ risk: 'critical', approval: { approver: 'alice', kid: 'gate-1' } });
      for (const s of started) {
        const done = recs.find((r) => r.kind === 'tool-call' && r.callId === s.callId && r.caller === s.caller);
        expect(done, `no final record for ${s.callId}`).toBeDefined();
        expect(done.seq).toBeGreaterThan(s.seq);
        expect(done.outcome).toBe('ok');
      }
      expect(recs.filter((r) => r.kind === 'refusal').map((r) => r.refusal.reason)).toEqual(['replayed']);
    });

    it('keeps the used-token store closed while full: the token is refused unused, then works once', async () => {
      make('victim-3');
      const args = { path: dirPath('victim-3') };
      const token = signApproval({
        kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: 'tokenpi', tool: 'desktop_delete_directory',
        args, exp: Date.now() + 120_000, approver: 'alice',
      });
      const call = (id: string) => rawCall(broker.url, 'tokenpi', 'nodered-1', id, { name: 'desktop_delete_directory', arguments: args, _meta: { approval: token } });
      fillDisk();
      try {
        const full = await call('full-1');
        const err = toolErrorOf(full.result);
        expect(err?.code, JSON.stringify(full)).toBe('EXECUTION_FAILED');
        expect(err?.details).toMatchObject({ refusal: 'not-recorded' });
        expect(err?.message).toMatch(/the approval is still unused/);
        expect(existsSync(dirPath('victim-3')), 'the tool ran without its token on disk').toBe(true);
        expect(tokens!.alive(), tokens!.output()).toBe(true);
      } finally {
        freeDisk();
      }
      const ok = await call('space-1');
      expect(toolErrorOf(ok.result), JSON.stringify(ok)).toBeUndefined();
      expect(existsSync(dirPath('victim-3'))).toBe(false);
      make('victim-3');
      const again = await call('space-2');
      expect(toolErrorOf(again.result)).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
      expect(existsSync(dirPath('victim-3'))).toBe(true);
      expect(readFileSync(usedFile, 'utf8').split('\n').filter(Boolean)).toHaveLength(1);
    });
  });
});
