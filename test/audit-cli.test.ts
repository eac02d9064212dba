// `toolmesh audit verify` as an operator runs it: the built CLI (npm test builds first) on real
// logs: intact, edited in the middle, cut at the end, torn by a crash, rotated; exit codes 0/1/2.
import { spawnSync } from 'node:child_process';
import { appendFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditWriter, chainFiles } from '../protocol/audit';

const CLI = join(__dirname, '../packages/agent/dist/agent/toolmesh.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-audit-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

function toolmesh(...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

let n = 0;
async function log(count: number, opts: { rotateBytes?: number; anchorKey?: string } = {}): Promise<string> {
  const file = join(dir, `l${++n}`, 'audit.jsonl');
  const w = await AuditWriter.open({ file, ...opts });
  for (let i = 0; i < count; i++) await w.append({ kind: 'tool-call', agent: 'pi', tool: 'echo', args: { i } });
  await w.close();
  return file;
}
const lines = (f: string) => readFileSync(f, 'utf8').split('\n').filter(Boolean);

describe('toolmesh audit verify', () => {
  it('prints ok with the record count and the anchored chain head, exit 0', async () => {
    const file = await log(12);
    const head = JSON.parse(lines(file)[11]).hash as string;
    const r = toolmesh('audit', 'verify', file);
    expect(r).toMatchObject({ code: 0, err: '' });
    expect(r.out.trim()).toBe(`ok: 12 records in 1 file, chain head ${head} matches the anchor`);
  });

  it('verifies rotated files as one chain, given in any order', async () => {
    const file = await log(30, { rotateBytes: 1200 });
    const files = chainFiles(file);
    expect(files.length).toBeGreaterThanOrEqual(3);
    const r = toolmesh('audit', 'verify', ...files.reverse());
    expect(r.code).toBe(0);
    expect(r.out).toMatch(new RegExp(`^ok: 30 records in ${files.length} files, chain head [0-9a-f]{64} matches the anchor`));
  });

  it('names an edited record by file:line and seq, exit 1', async () => {
    const file = await log(10);
    const ls = lines(file);
    ls[4] = ls[4].replace('"i":4', '"i":40');
    writeFileSync(file, ls.map((l) => `${l}\n`).join(''));
    const r = toolmesh('audit', 'verify', file);
    expect(r.code).toBe(1);
    expect(r.out).toContain(`problem: ${file}:5 seq 5: edited: `);
  });

  it('reports records removed from the end as truncated, exit 1', async () => {
    const file = await log(10);
    writeFileSync(file, lines(file).slice(0, 8).map((l) => `${l}\n`).join(''));
    const r = toolmesh('audit', 'verify', file);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/^problem: .*audit\.jsonl:9 seq 9: truncated: the anchor says the chain ends at seq 10 but the files end at seq 8/);
  });

  it('reports a crash tail alone as a warning, exit 0', async () => {
    const file = await log(5);
    appendFileSync(file, '{"seq":6,"ts":1');
    const r = toolmesh('audit', 'verify', file);
    expect(r.code).toBe(0);
    const out = r.out.trim().split('\n');
    expect(out[0]).toMatch(new RegExp(`^warning: ${file.replace(/[.]/g, '\\.')}:6: crash-tail: `));
    expect(out[1]).toMatch(/^ok: 5 records in 1 file, chain head [0-9a-f]{64} matches the anchor$/);
  });

  it('checks an HMAC-signed anchor with --anchor-key-file, and the chain alone with --no-anchor', async () => {
    const file = await log(4, { anchorKey: 'right-key' });
    writeFileSync(join(dir, 'right.key'), 'right-key\n');
    writeFileSync(join(dir, 'wrong.key'), 'wrong-key\n');
    expect(toolmesh('audit', 'verify', '--anchor-key-file', join(dir, 'right.key'), file).code).toBe(0);
    const wrong = toolmesh('audit', 'verify', '--anchor-key-file', join(dir, 'wrong.key'), file);
    expect(wrong.code).toBe(1);
    expect(wrong.out).toMatch(/anchor: the anchor .* has no valid mac/);
    rmSync(`${file}.anchor`);
    expect(toolmesh('audit', 'verify', file).code).toBe(1);
    const alone = toolmesh('audit', 'verify', '--no-anchor', file);
    expect(alone.code).toBe(0);
    expect(alone.out).toMatch(/^ok: 4 records in 1 file, chain head [0-9a-f]{64}; the anchor was not checked/);
    const json = JSON.parse(toolmesh('audit', 'verify', '--json', '--no-anchor', file).out);
    expect(json).toMatchObject({ ok: true, records: 4, head: { seq: 4 } });
  });

  it('exits 2 on bad usage or a missing file', () => {
    expect(toolmesh().code).toBe(2);
    expect(toolmesh('audit').code).toBe(2);
    expect(toolmesh('audit', 'verify').code).toBe(2);
    expect(toolmesh('audit', 'verify', '--bogus', 'x').code).toBe(2);
    const missing = toolmesh('audit', 'verify', join(dir, 'nope.jsonl'));
    expect(missing.code).toBe(2);
    expect(missing.err).toMatch(/no such file: .*nope\.jsonl/);
    const help = toolmesh('--help');
    expect(help.code).toBe(0);
    expect(help.out).toMatch(/^usage: toolmesh audit verify/);
  });
});
