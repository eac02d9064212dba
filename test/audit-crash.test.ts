// kill -9 during audit writes: a child process (the built library, dist/; npm test builds first)
// appends records in a tight loop, small and large (large writes can be cut mid-line), rotating
// every ~300 KB; it is SIGKILLed after ~200 ms. Afterwards the chain must verify (a crash tail at
// most), and a writer reopened on it must continue the chain so that it verifies again.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditWriter, chainFiles, verifyChain } from '../protocol/audit';

const LIB = join(__dirname, '../packages/agent/dist/protocol/audit/index.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-audit-crash-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const CHILD = `
const { AuditWriter } = require(process.argv[1]);
(async () => {
  const w = await AuditWriter.open({ file: process.argv[2], rotateBytes: 300 * 1024 });
  const big = 'x'.repeat(256 * 1024);
  for (let i = 0; ; i++) {
    await w.append({ kind: 'tool-call', agent: 'pi', tool: 'echo', args: { i, text: i % 5 === 4 ? big : 'small' } });
    if (i === 0) process.stdout.write('ready\\n');
  }
})().catch((e) => { console.error(e); process.exit(3); });
`;

/** Runs the child until it has appended, lets it write for `ms`, SIGKILLs it. */
function runAndKill(file: string, ms: number): Promise<{ signal: NodeJS.Signals | null; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['-e', CHILD, LIB, file], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (d) => (stderr += d));
    child.stdout!.once('data', () => setTimeout(() => child.kill('SIGKILL'), ms));
    child.once('error', reject);
    child.once('exit', (_code, signal) => resolve({ signal, stderr }));
  });
}

describe('audit log under kill -9', () => {
  it('the built library exists (npm test builds dist/ first)', () => {
    expect(existsSync(LIB), `${LIB} is missing: run npm run build`).toBe(true);
  });

  it('verifies after each kill, and a reopened writer continues the chain', async () => {
    const file = join(dir, 'audit.jsonl');
    let total = 0;
    let tails = 0;
    for (let round = 0; round < 4; round++) {
      const { signal, stderr } = await runAndKill(file, 200);
      expect(stderr).toBe('');
      expect(signal).toBe('SIGKILL');
      const killed = verifyChain(chainFiles(file));
      if (!killed.ok) throw new Error(`round ${round}: ${JSON.stringify(killed.firstProblem)}`);
      if (killed.crashTail) tails++;
      expect(killed.records).toBeGreaterThan(total);
      const w = await AuditWriter.open({ file });
      expect(w.chainHead.seq).toBe(killed.records);
      for (let i = 0; i < 3; i++) await w.append({ kind: 'prompt', text: `after kill ${round}` });
      await w.close();
      const after = verifyChain(chainFiles(file));
      expect(after).toMatchObject({ ok: true, records: killed.records + 3, anchor: { lag: 0 } });
      expect(after.crashTail).toBeUndefined();
      total = after.records;
    }
    expect(chainFiles(file).length).toBeGreaterThan(1); // it rotated along the way
    const torn = readdirSync(dir).filter((f) => f.includes('.torn-'));
    expect(torn.length).toBe(tails); // each crash tail was moved aside, none lost
  });

  it('recovers a file that holds only a torn first line', async () => {
    const file = join(dir, 'only-torn.jsonl');
    writeFileSync(file, '{"seq":1,"ts":1');
    expect(verifyChain([file])).toMatchObject({ ok: true, records: 0, crashTail: { kind: 'crash-tail', line: 1 } });
    const w = await AuditWriter.open({ file });
    await w.append({ kind: 'prompt', text: 'first' });
    await w.close();
    expect(verifyChain([file])).toMatchObject({ ok: true, records: 1 });
  });
});
