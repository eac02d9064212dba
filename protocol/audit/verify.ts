/**
 * Verification of an audit chain over one or more files: JSON, each record's hash, seq
 * continuity, `prev` links (across rotated files) and the anchor. No Node-RED imports.
 *
 * What each problem kind means:
 * - `edited`: a record's content no longer matches its hash (changed after it was written), or
 *   the anchored head differs from the record at that seq.
 * - `removed`: seqs are missing inside a file (lines deleted), or before the first record.
 * - `reordered`: a record stands where another seq was expected and that seq is elsewhere.
 * - `truncated`: the anchor names a later seq than the files end with (removal at the end).
 * - `broken-link`: `prev` does not match the record before it, or a file does not continue the
 *   one before it (a rotated file is missing).
 * - `malformed`: a line is not a record (not JSON, fields missing), or a non-last file is torn.
 * - `anchor`: no anchor, a bad mac, or an anchor more than one record behind the files.
 *
 * The anchor is looked for beside the last file (in chain order), else beside the live file a
 * rotated file came from (`audit-20261123-120000.jsonl` → `audit.jsonl.anchor`).
 * - `crash-tail`: the last line of the last file has no `\n` (a write cut short by a crash).
 *   Alone it is NOT tampering: the result stays ok and says so in `crashTail`.
 *
 * The anchor may be one record behind (the writer died between append and anchor update); that
 * is accepted. So removing only the single last record after such a crash is undetectable: the
 * anchor never vouched for it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { anchorMacOk, anchorPath, readAnchor } from './anchor';
import { liveFileOf } from './files';
import { GENESIS, hashOf, parseRecord, type AuditRecord } from './record';

/** Problem kinds; see the module doc. */
export type ProblemKind = 'edited' | 'removed' | 'reordered' | 'truncated' | 'broken-link' | 'crash-tail' | 'malformed' | 'anchor';

/** Where and what. `line` is 1-based; `seq` is the record's (or the missing one's) when known. */
export interface VerifyProblem {
  file: string;
  line: number;
  seq?: number;
  kind: ProblemKind;
  message: string;
}

/** Options of {@link verifyChain}. */
export interface VerifyOptions {
  /** Anchor path; default `<file>.anchor` of the last file (in chain order) that has one; false: skip. */
  anchor?: string | false;
  /** HMAC key: the anchor must carry a valid `mac`. */
  anchorKey?: string | Buffer;
}

/** The outcome of {@link verifyChain}. */
export interface VerifyResult {
  /** True when the chain is intact (a crash tail alone keeps it true). */
  ok: boolean;
  /** Records checked and found good (up to the first problem). */
  records: number;
  /** The files in chain order (by first seq). */
  files: string[];
  /** The last good record. */
  head?: { seq: number; hash: string; file: string; line: number };
  /** The anchor that was checked; `lag` 1 when it was one record behind. */
  anchor?: { path: string; seq: number; hash: string; lag: 0 | 1 };
  /** The first problem: a hard one, else the crash tail. */
  firstProblem?: VerifyProblem;
  /** A torn last line, reported as a warning. */
  crashTail?: VerifyProblem;
}

interface Loaded {
  file: string;
  lines: string[];
  /** The bytes after the last `\n`, when any. */
  torn?: string;
  firstSeq?: number;
}

function load(file: string): Loaded {
  const text = readFileSync(file, 'utf8');
  const lines = text.split('\n');
  const tail = lines.pop()!;
  const first = lines.length ? parseRecord(lines[0]) : undefined;
  return { file, lines, torn: tail.length ? tail : undefined, firstSeq: first?.seq };
}

/**
 * Verifies the chain held by `files` (any order: they are put in order by their first seq).
 * @throws Error when a file cannot be read.
 */
export function verifyChain(files: string[], opts: VerifyOptions = {}): VerifyResult {
  const all = files.map(load);
  const used = all.filter((f) => f.lines.length || f.torn);
  const ordered = used.every((f) => f.firstSeq !== undefined || !f.lines.length)
    ? [...used].sort((a, b) => (a.firstSeq ?? Infinity) - (b.firstSeq ?? Infinity))
    : used;
  const result: VerifyResult = { ok: false, records: 0, files: ordered.map((f) => f.file) };
  const seqs = new Set<number>();
  for (const f of ordered) for (const l of f.lines) { const r = parseRecord(l); if (r) seqs.add(r.seq); }

  let last: { rec: AuditRecord; file: string; line: number } | undefined;
  let beforeLast: { rec: AuditRecord; file: string; line: number } | undefined;
  const fail = (p: VerifyProblem): VerifyResult => ({ ...result, firstProblem: p, head: last && { seq: last.rec.seq, hash: last.rec.hash, file: last.file, line: last.line } });

  for (const [fi, f] of ordered.entries()) {
    for (const [i, text] of f.lines.entries()) {
      const at = { file: f.file, line: i + 1 };
      const rec = parseRecord(text);
      if (!rec) return fail({ ...at, kind: 'malformed', message: text.trim() ? 'not an audit record (not JSON, or seq/ts/kind/prev/hash missing)' : 'an empty line' });
      const p = { ...at, seq: rec.seq };
      if (hashOf(rec) !== rec.hash) return fail({ ...p, kind: 'edited', message: `seq ${rec.seq} does not match its hash: the record was changed after it was written` });
      if (!last) {
        if (rec.prev !== GENESIS) {
          if (rec.rotatedFrom) return fail({ ...p, kind: 'broken-link', message: `the chain starts at seq ${rec.seq}, continuing ${rec.rotatedFrom}, which was not given; pass it (and the files before it) too` });
          return fail({ ...p, kind: 'removed', message: `the first record (seq ${rec.seq}) links to an earlier record that is in none of the files: records before it were removed` });
        }
        if (rec.seq !== 1) return fail({ ...p, kind: 'removed', message: `the chain starts at seq ${rec.seq}, not 1` });
      } else {
        const want = last.rec.seq + 1;
        const where = `${last.file}:${last.line}`;
        if (rec.seq > want && i === 0) {
          return fail({ ...p, kind: 'broken-link', message: `${f.file} starts at seq ${rec.seq} but ${last.file} ends at seq ${last.rec.seq}: a file between them is missing${rec.rotatedFrom ? ` (this one continues ${rec.rotatedFrom})` : ''}` });
        }
        if (rec.seq > want && seqs.has(want)) return fail({ ...p, kind: 'reordered', message: `seq ${rec.seq} stands where seq ${want} was expected (after ${where}); seq ${want} is elsewhere` });
        if (rec.seq > want) return fail({ ...p, kind: 'removed', message: `seq ${want}${rec.seq - 1 > want ? `..${rec.seq - 1}` : ''} missing before this line: ${rec.seq - want} record(s) removed` });
        if (rec.seq < want) return fail({ ...p, kind: 'reordered', message: `seq ${rec.seq} comes after seq ${last.rec.seq} (${where})` });
        if (rec.prev !== last.rec.hash) {
          return fail({ ...p, kind: 'broken-link', message: `prev of seq ${rec.seq} is not the hash of seq ${last.rec.seq} (${where}): one of the two was rewritten${i === 0 && fi > 0 ? ', or a file is missing' : ''}` });
        }
      }
      beforeLast = last;
      last = { rec, ...at };
      result.records++;
    }
    if (f.torn !== undefined) {
      const p: VerifyProblem = { file: f.file, line: f.lines.length + 1, kind: 'crash-tail', message: `the last line has no line end (${Buffer.byteLength(f.torn)} bytes): a write cut short by a crash, not counted; the writer moves it aside when it reopens the log` };
      if (fi < ordered.length - 1) return fail({ ...p, kind: 'malformed', message: 'a line without line end in a file that is not the last: the file was cut or the files are out of order' });
      result.crashTail = p;
    }
  }
  if (last) result.head = { seq: last.rec.seq, hash: last.rec.hash, file: last.file, line: last.line };

  const anchorProblem = checkAnchor(result, last, beforeLast, ordered, opts);
  if (anchorProblem) return { ...result, firstProblem: anchorProblem };
  return { ...result, ok: true, firstProblem: result.crashTail };
}

type Located = { rec: AuditRecord; file: string; line: number };

/** Checks the anchor against the head; sets `result.anchor` when it matches. */
function checkAnchor(
  result: VerifyResult, last: Located | undefined, beforeLast: Located | undefined,
  ordered: Loaded[], opts: VerifyOptions,
): VerifyProblem | undefined {
  if (opts.anchor === false) return undefined;
  const lastFile = ordered.at(-1)?.file ?? '';
  const endLine = (ordered.at(-1)?.lines.length ?? 0) + 1;
  // beside a file, or beside the live file a rotated one came from (the live file may be gone or empty)
  const candidates = [...ordered].reverse().flatMap((f) => [f.file, liveFileOf(f.file)]).filter((f): f is string => !!f);
  const path = opts.anchor ?? candidates.map(anchorPath).find((p) => existsSync(p));
  const headSeq = last?.rec.seq ?? 0;
  // a log of one record may have lost its first anchor update in a crash (see the module doc)
  if (!path && headSeq <= 1) return undefined;
  if (!path) {
    return { file: lastFile, line: endLine, kind: 'anchor', message: `no anchor found (looked for ${anchorPath(lastFile)}): removal of records at the end cannot be ruled out; check the chain alone with --no-anchor` };
  }
  let a;
  try {
    a = readAnchor(path);
  } catch (e) {
    return { file: path, line: 1, kind: 'anchor', message: (e as Error).message };
  }
  if (!a) return { file: path, line: 1, kind: 'anchor', message: `the anchor ${path} does not exist` };
  if (opts.anchorKey !== undefined && !anchorMacOk(a, opts.anchorKey)) {
    return { file: path, line: 1, kind: 'anchor', message: `the anchor ${path} has no valid mac for the given key: it was changed or written with another key` };
  }
  if (a.seq > headSeq) {
    return { file: lastFile, line: endLine, seq: headSeq + 1, kind: 'truncated', message: `the anchor says the chain ends at seq ${a.seq} but the files end at seq ${headSeq}: ${a.seq - headSeq} record(s) removed from the end` };
  }
  if (a.seq < headSeq - 1) {
    return { file: path, line: 1, seq: a.seq, kind: 'anchor', message: `the anchor names seq ${a.seq} but the files end at seq ${headSeq}: ${headSeq - a.seq} records were appended without updating the anchor` };
  }
  const anchored = a.seq === headSeq ? last : beforeLast;
  if (!anchored || anchored.rec.hash !== a.hash) {
    return { file: anchored?.file ?? lastFile, line: anchored?.line ?? 1, seq: a.seq, kind: 'edited', message: `the anchor names hash ${a.hash} for seq ${a.seq}, the files hold ${anchored?.rec.hash ?? 'nothing'}: the record was replaced` };
  }
  result.anchor = { path, seq: a.seq, hash: a.hash, lag: a.seq === headSeq ? 0 : 1 };
  return undefined;
}
