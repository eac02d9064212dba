// kill -9 of the built toolmesh-agent (issue 9, item 6), a real broker (aedes in-process).
//
// 1. During a burst of audited calls (every call has a started record: audit.durableFrom low;
//    every fifth call's record is 1 MB, so a kill can land inside a write; the log rotates every
//    4 MB): `toolmesh audit verify` passes after each kill, reporting a torn last line as a
//    crash tail (a warning), never as a problem; the restarted agent continues the chain and it
//    verifies again without warning. Every final record follows the started record of its call.
//    (test/audit-crash.test.ts does the same for the writer library alone.)
// 2. An approval token used just before a kill -9 is refused after the restart as a replay.
import { closeSync, existsSync, fstatSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, readSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys, RpcCaller, signApproval, toolErrorOf } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { chainFiles } from '../protocol/audit';
import { rawCall, requireBuild, spawnAgent, stopAgent, verifyCli, waitReady, type AgentProcess } from './durability-helpers';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-durability-kill-'));
let broker: EmbeddedBroker;
let watcher: RpcCaller;
const agents: AgentProcess[] = [];

beforeAll(async () => {
  await requireBuild();
  broker = await startBroker({ port: 0 });
  watcher = new RpcCaller({ connection: { url: broker.url }, callerId: 'watcher' });
  await watcher.start();
});

afterAll(async () => {
  await watcher?.stop();
  for (const a of agents) await stopAgent(a);
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function start(config: string): Promise<AgentProcess> {
  const a = await spawnAgent(config);
  agents.push(a);
  return a;
}

async function kill9(a: AgentProcess): Promise<void> {
  if (a.alive()) process.kill(a.pid, 'SIGKILL');
  expect((await a.exited).signal).toBe('SIGKILL');
}

/**
 * Polls the end of `file` (blocking, up to `ms`) and SIGKILLs `pid` the moment its last byte is
 * not a line end, i.e. while a record is being written. @returns whether it caught one.
 */
function killMidWrite(pid: number, file: string, ms: number): boolean {
  const end = Date.now() + ms;
  const last = Buffer.alloc(1);
  while (Date.now() < end) {
    let fd: number | undefined;
    try {
      fd = openSync(file, 'r');
      const size = fstatSync(fd).size;
      if (size > 0 && readSync(fd, last, 0, 1, size - 1) === 1 && last[0] !== 0x0a) {
        process.kill(pid, 'SIGKILL');
        return true;
      }
    } catch { /* rotated away between open and read: look again */ } finally {
      if (fd !== undefined) closeSync(fd);
    }
  }
  return false;
}

/** All records of the chain of `file`, in seq order. */
function allRecords(file: string): any[] {
  return chainFiles(file)
    .flatMap((f) => readFileSync(f, 'utf8').split('\n').slice(0, -1).map((l) => JSON.parse(l)))
    .sort((a, b) => a.seq - b.seq);
}

describe('kill -9 during a burst of audited calls', () => {
  it('the audit log verifies after each kill (a torn tail is a crash tail), and after the restart', async () => {
    const auditFile = join(dir, 'burstpi-audit.jsonl');
    const config = join(dir, 'burstpi.yaml');
    writeFileSync(config, [
      'version: 1',
      'agent: { id: burstpi }',
      `broker: { url: "${broker.url}" }`,
      'packs: { diag: {} }',
      // the burst below runs 24 calls of one caller at once (above the default bound of 8)
      'limits: { maxRunningPerCaller: 32 }',
      `audit: { file: "${auditFile}", rotateMb: 4, durableFrom: low }`,
      '',
    ].join('\n'));
    const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'burster' });
    await caller.start();
    // the audit log caps strings at 4096 characters, not their number: a 1 MB record
    const big = Array.from({ length: 256 }, (_, i) => `${i}`.padEnd(4000, 'y'));
    let instance: string | undefined;
    let tails = 0;
    let okBefore = 0;
    const figures: string[] = [];
    try {
      for (let round = 0; round < 4; round++) {
        const agent = await start(config);
        instance = await waitReady(caller, 'burstpi', agent, instance);
        // 24 workers calling back to back; the kill lands after 80 answers came back: at a random
        // moment (even rounds), or the moment the log's last byte is not a line end (odd rounds:
        // a record is being written, so the kill likely cuts it)
        let answered = 0;
        let burst = true;
        const workers = Array.from({ length: 24 }, async (_, w) => {
          for (let i = 0; burst; i++) {
            const r = await caller.call('burstpi', 'diag_echo', (w + i) % 5 === 4 ? { text: 'big', data: big } : { text: `w${w} i${i}` }, { timeoutMs: 5000 }).catch(() => undefined);
            if (r && !r.isError) answered++;
          }
        });
        while (answered < 80) await new Promise((r) => setTimeout(r, 2));
        let how = 'at a random moment';
        if (round % 2 === 0) await new Promise((r) => setTimeout(r, Math.random() * 50));
        else how = killMidWrite(agent.pid, auditFile, 3000) ? 'mid-record' : 'after 3 s without catching a record mid-write';
        await kill9(agent);
        burst = false;
        await Promise.all(workers);

        const killed = await verifyCli(auditFile);
        expect(killed.code, `round ${round}: ${killed.out}`).toBe(0);
        expect(killed.out).toMatch(/^ok: \d+ records/m);
        expect(killed.out).not.toMatch(/^problem:/m);
        const warned = /^warning: .*crash-tail: /m.test(killed.out);
        if (warned) tails++;
        else expect(killed.out).not.toMatch(/warning/);
        const count = Number(/^ok: (\d+) records/m.exec(killed.out)![1]);
        expect(count).toBeGreaterThan(okBefore);
        figures.push(`round ${round}: killed ${how} after ${answered} answers, ${count} records, ${warned ? 'torn tail' : 'no torn tail'}`);

        // the restarted agent moves a torn tail aside and continues the chain
        const again = await start(config);
        instance = await waitReady(caller, 'burstpi', again, instance);
        const r = await caller.call('burstpi', 'diag_echo', { text: `after kill ${round}` });
        expect(r.structuredContent).toEqual({ echo: { text: `after kill ${round}` } });
        await stopAgent(again);
        expect((await again.exited).code, again.output()).toBe(0);
        const after = await verifyCli(auditFile);
        expect(after.code, after.out).toBe(0);
        expect(after.out).not.toMatch(/warning|problem/);
        okBefore = Number(/^ok: (\d+) records/m.exec(after.out)![1]);
        expect(okBefore).toBeGreaterThanOrEqual(count + 2); // its started and final records at least
      }
    } finally {
      await caller.stop();
    }
    const records = allRecords(auditFile);
    expect(records.map((r) => r.seq)).toEqual(records.map((_, i) => i + 1));
    // a call's final record always follows its started record (the start is on disk before it runs)
    const startedAt = new Map(records.filter((r) => r.kind === 'call-started').map((r) => [`${r.caller}/${r.callId}`, r.seq]));
    const finals = records.filter((r) => r.kind === 'tool-call');
    // (answers go out before their final record is written, so a kill loses some final records, never a start)
    expect(finals.length).toBeGreaterThan(4 * 40);
    for (const f of finals) expect(startedAt.get(`${f.caller}/${f.callId}`), `call ${f.callId}`).toBeLessThan(f.seq);
    const open = startedAt.size - finals.filter((f) => f.caller === 'burster').length;
    console.log(`kill -9 burst: ${figures.join('; ')}; ${startedAt.size} calls started, ${open} with no final record (cut by a kill)`);
    expect(chainFiles(auditFile).length).toBeGreaterThan(1); // it rotated along the way
    expect(readdirSync(dir).filter((f) => f.includes('.torn-')).length).toBe(tails); // each torn tail kept aside
  }, 120_000);
});

describe('an approval token used just before kill -9', () => {
  it('is refused as a replay after the restart, and the tool does not run again', async () => {
    const gate = generateApprovalKeys();
    const work = join(dir, 'work');
    const target = join(work, 'doomed');
    mkdirSync(target, { recursive: true });
    const config = join(dir, 'tokenpi.yaml');
    writeFileSync(config, [
      'version: 1',
      'agent: { id: killpi }',
      `broker: { url: "${broker.url}" }`,
      `packs: { desktop: { allowedPaths: ["${work}"] } }`,
      'approvals:',
      `  keys: { gate-1: ${JSON.stringify(gate.publicKeyPem)} }`,
      `  usedTokensFile: "${join(dir, 'killpi.used.jsonl')}"`,
      `audit: { file: "${join(dir, 'killpi-audit.jsonl')}" }`,
      '',
    ].join('\n'));
    const args = { path: target };
    const token = signApproval({
      kid: 'gate-1', privateKey: gate.privateKeyPem, caller: 'nodered-1', agent: 'killpi', tool: 'desktop_delete_directory',
      args, exp: Date.now() + 120_000, approver: 'alice',
    });
    const params = { name: 'desktop_delete_directory', arguments: args, _meta: { approval: token } };

    const first = await start(config);
    const before = await waitReady(watcher, 'killpi', first);
    // SIGKILL the moment the result arrives
    const ran = await rawCall(broker.url, 'killpi', 'nodered-1', 'before-kill', params, () => process.kill(first.pid, 'SIGKILL'));
    expect(toolErrorOf(ran.result), JSON.stringify(ran)).toBeUndefined();
    expect((await first.exited).signal).toBe('SIGKILL');
    expect(existsSync(target)).toBe(false);

    mkdirSync(target);
    const second = await start(config);
    await waitReady(watcher, 'killpi', second, before);
    const replay = await rawCall(broker.url, 'killpi', 'nodered-1', 'after-restart', params);
    expect(toolErrorOf(replay.result), JSON.stringify(replay)).toMatchObject({ code: 'PERMISSION_DENIED', details: { refusal: 'replayed' } });
    expect(toolErrorOf(replay.result)!.message).toMatch(/used already/);
    expect(existsSync(target), 'the replayed call ran').toBe(true);
    await stopAgent(second);
  });
});
