// The audit chain: writer, anchor, rotation, crash tail and verification, on real files.
import { appendFileSync, copyFileSync, existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { AuditError, AuditWriter, GENESIS, anchorPath, chainFiles, hashOf, readAnchor, verifyChain, type AuditRecord } from './index';

const root = mkdtempSync(join(tmpdir(), 'toolmesh-audit-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let n = 0;
const freshFile = () => join(root, `t${++n}`, 'audit.jsonl');

/** Writes `count` records (tool calls with a number argument) and closes the writer. */
async function writeLog(file: string, count: number, opts: Partial<Parameters<typeof AuditWriter.open>[0]> = {}): Promise<AuditRecord[]> {
  const w = await AuditWriter.open({ file, ...opts });
  const out: AuditRecord[] = [];
  for (let i = 0; i < count; i++) out.push(await w.append({ kind: 'tool-call', agent: 'pi', tool: 'echo', args: { i, text: `call ${i}` } }));
  await w.close();
  return out;
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean);
const writeLines = (file: string, ls: string[]) => writeFileSync(file, ls.map((l) => `${l}\n`).join(''));

describe('audit chain', () => {
  it('verifies many records, linked from GENESIS, with the anchor on the head', async () => {
    const file = freshFile();
    const recs = await writeLog(file, 200);
    expect(recs[0]).toMatchObject({ seq: 1, prev: GENESIS, kind: 'tool-call' });
    expect(recs[1].prev).toBe(recs[0].hash);
    expect(hashOf(recs[5])).toBe(recs[5].hash);
    const v = verifyChain([file]);
    expect(v).toMatchObject({ ok: true, records: 200, head: { seq: 200, hash: recs[199].hash }, anchor: { seq: 200, lag: 0 } });
    expect(v.firstProblem).toBeUndefined();
    expect(readAnchor(anchorPath(file))).toMatchObject({ v: 1, file: 'audit.jsonl', seq: 200, hash: recs[199].hash });
  });

  it('names an edited record in the middle by line and seq', async () => {
    const file = freshFile();
    await writeLog(file, 50);
    const ls = lines(file);
    ls[24] = ls[24].replace('"call 24"', '"call 99"');
    expect(JSON.parse(ls[24]).args.text).toBe('call 99'); // still valid JSON
    writeLines(file, ls);
    const v = verifyChain([file]);
    expect(v.ok).toBe(false);
    expect(v.firstProblem).toMatchObject({ kind: 'edited', file, line: 25, seq: 25 });
    expect(v.records).toBe(24);
  });

  it('detects an edited record whose hash was recomputed, at the link after it', async () => {
    const file = freshFile();
    await writeLog(file, 20);
    const ls = lines(file);
    const r = JSON.parse(ls[9]) as AuditRecord;
    r.args = { i: 9, text: 'forged' };
    r.hash = hashOf(r);
    ls[9] = JSON.stringify(r);
    writeLines(file, ls);
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'broken-link', line: 11, seq: 11 });
  });

  it('detects a deleted middle line as removed', async () => {
    const file = freshFile();
    await writeLog(file, 30);
    const ls = lines(file);
    ls.splice(14, 1);
    writeLines(file, ls);
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'removed', line: 15, seq: 16 });
  });

  it('detects records removed from the end through the anchor', async () => {
    const file = freshFile();
    await writeLog(file, 30);
    writeLines(file, lines(file).slice(0, 27));
    const v = verifyChain([file]);
    expect(v.ok).toBe(false);
    expect(v.firstProblem).toMatchObject({ kind: 'truncated', seq: 28, line: 28 });
    expect(v.firstProblem!.message).toMatch(/ends at seq 30 .* end at seq 27: 3 record/);
    await expect(AuditWriter.open({ file })).rejects.toMatchObject({ code: 'truncated' });
  });

  it('detects swapped records as reordered', async () => {
    const file = freshFile();
    await writeLog(file, 20);
    const ls = lines(file);
    [ls[7], ls[8]] = [ls[8], ls[7]];
    writeLines(file, ls);
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'reordered', line: 8, seq: 9 });
  });

  it('reports a missing anchor under a multi-record log, and checks the chain alone with anchor: false', async () => {
    const file = freshFile();
    await writeLog(file, 5);
    unlinkSync(anchorPath(file));
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'anchor' });
    expect(verifyChain([file], { anchor: false }).ok).toBe(true);
    await expect(AuditWriter.open({ file })).rejects.toBeInstanceOf(AuditError);
  });

  it('accepts an anchor one record behind (crash between append and anchor), not two', async () => {
    const file = freshFile();
    await writeLog(file, 3);
    const a3 = readFileSync(anchorPath(file));
    await writeLog(file, 1);
    const a4 = readFileSync(anchorPath(file));
    await writeLog(file, 1);
    writeFileSync(anchorPath(file), a4);
    expect(verifyChain([file])).toMatchObject({ ok: true, anchor: { seq: 4, lag: 1 } });
    writeFileSync(anchorPath(file), a3);
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'anchor' });
    writeFileSync(anchorPath(file), a4);
    const notes: string[] = [];
    const w = await AuditWriter.open({ file, onNotice: (t) => notes.push(t) });
    await w.close();
    expect(notes.join()).toMatch(/one record behind/);
    expect(readAnchor(anchorPath(file))!.seq).toBe(5);
  });

  it('signs the anchor with an HMAC key when given one', async () => {
    const file = freshFile();
    await writeLog(file, 3, { anchorKey: 'k1' });
    expect(readAnchor(anchorPath(file))!.mac).toMatch(/^[0-9a-f]{64}$/);
    expect(verifyChain([file], { anchorKey: 'k1' }).ok).toBe(true);
    expect(verifyChain([file], { anchorKey: 'k2' }).firstProblem).toMatchObject({ kind: 'anchor' });
    await expect(AuditWriter.open({ file, anchorKey: 'k2' })).rejects.toMatchObject({ code: 'anchor' });
  });

  it('reports a torn last line as crash-tail (ok), moves it aside on reopen and continues', async () => {
    const file = freshFile();
    const recs = await writeLog(file, 10);
    appendFileSync(file, '{"seq":11,"ts":17638848');
    const v = verifyChain([file]);
    expect(v).toMatchObject({ ok: true, records: 10, crashTail: { kind: 'crash-tail', line: 11 }, firstProblem: { kind: 'crash-tail' } });
    const notes: string[] = [];
    const more = await writeLog(file, 2, { onNotice: (t) => notes.push(t) });
    expect(notes.join()).toMatch(/crash tail: 23 bytes/);
    expect(more[0]).toMatchObject({ seq: 11, prev: recs[9].hash });
    const torn = readdirSync(join(file, '..')).filter((f) => f.startsWith('audit.jsonl.torn-'));
    expect(torn).toHaveLength(1);
    expect(readFileSync(join(file, '..', torn[0]), 'utf8')).toBe('{"seq":11,"ts":17638848');
    const after = verifyChain([file]);
    expect(after).toMatchObject({ ok: true, records: 12 });
    expect(after.crashTail).toBeUndefined();
  });

  it('refuses to open a log whose last complete line is no record', async () => {
    const file = freshFile();
    await writeLog(file, 2);
    appendFileSync(file, 'garbage\n');
    await expect(AuditWriter.open({ file })).rejects.toMatchObject({ code: 'malformed' });
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'malformed', line: 3 });
  });

  it('keeps call order for concurrent appends', async () => {
    const file = freshFile();
    const w = await AuditWriter.open({ file });
    const recs = await Promise.all(Array.from({ length: 40 }, (_, i) => w.append({ kind: 'prompt', text: `p${i}` })));
    await w.close();
    expect(recs.map((r) => r.text)).toEqual(Array.from({ length: 40 }, (_, i) => `p${i}`));
    expect(recs.map((r) => r.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    await expect(w.append({ kind: 'prompt' })).rejects.toMatchObject({ code: 'closed' });
  });
});

describe('audit rotation', () => {
  it('rotates by size into dated files that verify as one chain, in any argument order', async () => {
    const file = freshFile();
    const recs = await writeLog(file, 30, { rotateBytes: 1500 });
    const files = chainFiles(file);
    expect(files.length).toBeGreaterThanOrEqual(3);
    for (const f of files.slice(0, -1)) expect(basename(f)).toMatch(/^audit-\d{8}-\d{6}(-\d+)?\.jsonl$/);
    const second = lines(files[1]).map((l) => JSON.parse(l) as AuditRecord);
    const firstOfFirst = lines(files[0]).map((l) => JSON.parse(l) as AuditRecord);
    expect(second[0].rotatedFrom).toBe(basename(files[0]));
    expect(second[0].prev).toBe(firstOfFirst.at(-1)!.hash);
    expect(verifyChain(files)).toMatchObject({ ok: true, records: 30, head: { seq: 30, hash: recs[29].hash }, anchor: { seq: 30 } });
    expect(verifyChain([...files].reverse()).ok).toBe(true);
    expect(verifyChain([file]).firstProblem).toMatchObject({ kind: 'broken-link' });
  });

  it('reports a deleted middle file as a broken link', async () => {
    const file = freshFile();
    await writeLog(file, 30, { rotateBytes: 1500 });
    const files = chainFiles(file);
    const v = verifyChain([files[0], ...files.slice(2)]);
    expect(v.firstProblem).toMatchObject({ kind: 'broken-link', file: files[2], line: 1 });
  });

  it('rotates on a new UTC day and continues after a crash between rename and the next append', async () => {
    const file = freshFile();
    let now = Date.UTC(2026, 10, 23, 23, 59, 0);
    const clock = () => now;
    await writeLog(file, 3, { rotateDaily: true, now: clock });
    now += 120_000;
    await writeLog(file, 2, { rotateDaily: true, now: clock });
    const files = chainFiles(file);
    expect(files.map((f) => basename(f))).toEqual(['audit-20261123-235900.jsonl', 'audit.jsonl']);
    // a crash after the rename, before the first append to the new live file
    copyFileSync(file, join(file, '..', 'audit-20261124-000100.jsonl'));
    unlinkSync(file);
    now += 86_400_000;
    await writeLog(file, 1, { rotateDaily: true, now: clock });
    const first = JSON.parse(lines(file)[0]) as AuditRecord;
    expect(first).toMatchObject({ seq: 6, rotatedFrom: 'audit-20261124-000100.jsonl' });
    expect(verifyChain(chainFiles(file))).toMatchObject({ ok: true, records: 6 });
    expect(existsSync(anchorPath(file))).toBe(true);
  });
});

describe('chainFiles', () => {
  it('lists rotated files in rotation order, several rotations within one second included', () => {
    const file = join(mkdtempSync(join(tmpdir(), 'toolmesh-chainfiles-')), 'audit.jsonl');
    const dir = join(file, '..');
    for (const n of ['audit-20261202-141500-2.jsonl', 'audit-20261202-141500-10.jsonl', 'audit-20261202-141500.jsonl', 'audit-20261202-141459.jsonl', 'audit.jsonl']) writeFileSync(join(dir, n), '');
    expect(chainFiles(file).map((f) => basename(f))).toEqual([
      'audit-20261202-141459.jsonl', 'audit-20261202-141500.jsonl', 'audit-20261202-141500-2.jsonl', 'audit-20261202-141500-10.jsonl', 'audit.jsonl',
    ]);
    rmSync(dir, { recursive: true });
  });
});
