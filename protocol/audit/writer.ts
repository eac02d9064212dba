/**
 * The audit log writer: appends hash-chained records to a JSONL file, keeps the anchor current,
 * recovers from crashes and rotates by size and UTC day. No Node-RED imports.
 *
 * Per record, in this order: one `write` of the whole line with its `\n`, `fdatasync`, then the
 * anchor (temp + fsync + rename + directory fsync). That is three syncs per record: durable, and
 * slow on SD cards (bench it with `node bench/audit-fsync.mjs`). Appends are queued, so records
 * keep the order of the `append` calls and one failure does not stop the ones after it.
 *
 * A record counts as written only when both its line and the anchor naming it are on disk. When
 * either step fails (a full disk: ENOSPC, EIO ...) the file is cut back to the end of the last
 * written record and the head stays where it was, so the failed record leaves neither a partial
 * line nor a record the anchor lags behind; the next append tries again from there, so writing
 * resumes by itself when space returns. (A full disk often still takes a short line in the last
 * page of the log but not a new anchor file: without the cut-back the anchor would fall further
 * behind with each record, and the log could no longer be verified or reopened.) If even the
 * cut-back fails, the next append retries it first and fails until it succeeds.
 *
 * Crash semantics. A process that dies mid-write leaves a last line without `\n` (a torn tail);
 * on open the writer moves those bytes to `<file>.torn-<ms>` and continues the chain from the last
 * complete record. A process that dies between the append and the anchor update leaves the
 * anchor ONE record behind the file: the writer accepts that on open (and verify does too).
 * Anything else (anchor ahead of the file = records removed from the end, anchor naming another
 * hash, anchor more than one behind, anchor missing under a log with more than one record) is
 * refused with an AuditError: run `toolmesh audit verify`, keep the evidence, move the files aside.
 *
 * Rotation keeps the configured path as the live file: the full file is renamed to
 * `<base>-YYYYMMDD-HHMMSS.jsonl` (UTC time of its first record; `-2`, `-3` ... on a clash) and the
 * next record, first of the new live file, names it in `rotatedFrom` and links to its last hash.
 * One writer per file: two processes appending to one file break the chain.
 */
import { mkdir, open, rename, type FileHandle } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { anchorMacOk, anchorPath, readAnchor, syncDir, writeAnchor } from './anchor';
import { chainFiles } from './files';
import { AuditError, GENESIS, lineOf, sealRecord, utcDay, utcStamp, type AuditEntry, type AuditRecord } from './record';
import { moveTornTail, readEnd, readFirst } from './tail';

/** Options of {@link AuditWriter.open}. */
export interface AuditWriterOptions {
  /** The live log file (JSONL); its directory is created. */
  file: string;
  /** Rotate when the next line would take the file past this size, bytes; 0 or absent: never. */
  rotateBytes?: number;
  /** Rotate on the first append of a new UTC day (default false). */
  rotateDaily?: boolean;
  /** HMAC key for the anchor's `mac`; when set, open refuses an anchor without a valid mac. */
  anchorKey?: string | Buffer;
  /** fsync after each line and anchor (default true). Only benchmarks and tests turn it off. */
  durable?: boolean;
  /** Clock, epoch ms (tests). */
  now?: () => number;
  /** Called with one line of text for each recovery step (torn tail moved, anchor caught up). */
  onNotice?: (text: string) => void;
}

/** The newest rotated sibling of `file` by last seq, or undefined. */
async function newestRotated(file: string): Promise<{ path: string; last: AuditRecord } | undefined> {
  let best: { path: string; last: AuditRecord } | undefined;
  for (const path of chainFiles(file).filter((f) => f !== file)) {
    const last = (await readEnd(path)).last;
    if (last && (!best || last.seq > best.last.seq)) best = { path, last };
  }
  return best;
}

/** An open audit log. Create with {@link AuditWriter.open}. */
export class AuditWriter {
  private handle?: FileHandle;
  private size = 0;
  private head: { seq: number; hash: string; ts: number } = { seq: 0, hash: GENESIS, ts: 0 };
  /** ts of the first record in the live file, or undefined when it is empty. */
  private fileFirstTs?: number;
  private rotatedFrom?: string;
  private queue: Promise<unknown> = Promise.resolve();
  /** Set when a failed record could not be cut back from the file (the write's error): the next write retries the cut first. */
  private uncut?: Error;
  private closed = false;
  private closing?: Promise<void>;
  private readonly now: () => number;

  private constructor(readonly opts: AuditWriterOptions) {
    this.now = opts.now ?? Date.now;
  }

  /**
   * Opens (or creates) the log, recovering a torn tail and checking the anchor.
   * @throws AuditError `malformed` (last line is no record), `truncated` (anchor ahead of the
   *   file), `edited` (anchor names another hash), `anchor` (missing, bad mac, or far behind).
   */
  static async open(opts: AuditWriterOptions): Promise<AuditWriter> {
    const w = new AuditWriter(opts);
    await w.recover();
    return w;
  }

  /** The chain head: seq and hash of the last record (seq 0 and {@link GENESIS} before the first). */
  get chainHead(): { seq: number; hash: string } {
    return { seq: this.head.seq, hash: this.head.hash };
  }

  /** The live file's path. */
  get file(): string {
    return this.opts.file;
  }

  private notice(text: string): void {
    this.opts.onNotice?.(text);
  }

  private async recover(): Promise<void> {
    const file = this.opts.file;
    await mkdir(dirname(file), { recursive: true });
    let end = await readEnd(file);
    if (end.torn) {
      const aside = await moveTornTail(file, end.torn, this.now());
      this.notice(`crash tail: ${end.torn.bytes.length} bytes after the last complete record of ${file} moved to ${aside}`);
      end = { size: end.torn.start, last: end.last };
    }
    let last = end.last;
    if (!last) {
      // the live file is new, or a crash came between a rotation's rename and the next append
      const rotated = await newestRotated(file);
      if (rotated) {
        last = rotated.last;
        this.rotatedFrom = basename(rotated.path);
      }
    } else {
      this.fileFirstTs = (await readFirst(file))?.ts ?? last.ts;
    }
    if (last) this.head = { seq: last.seq, hash: last.hash, ts: last.ts };
    await this.checkAnchor();
    this.handle = await open(file, 'a');
    this.size = end.size;
  }

  private async checkAnchor(): Promise<void> {
    const file = this.opts.file;
    const path = anchorPath(file);
    let a;
    try {
      a = readAnchor(path);
    } catch (e) {
      throw new AuditError('anchor', `${(e as Error).message}; run "toolmesh audit verify" on ${file} and move the log and its anchor aside to start a new chain`);
    }
    const head = this.head;
    const advice = `run "toolmesh audit verify" on ${file} (and its rotated files), keep them as evidence, and move them and ${path} aside to start a new chain`;
    if (!a) {
      if (head.seq > 1) throw new AuditError('anchor', `${path} is missing but the log has ${head.seq} records: removal at the end could not be detected; ${advice}`);
      if (head.seq === 1) await this.anchor();
      return;
    }
    if (this.opts.anchorKey !== undefined && !anchorMacOk(a, this.opts.anchorKey)) {
      throw new AuditError('anchor', `${path} has no valid mac for the configured key; ${advice}`);
    }
    if (a.seq > head.seq) throw new AuditError('truncated', `${path} names seq ${a.seq} but the log ends at seq ${head.seq}: records were removed from the end; ${advice}`);
    if (a.seq === head.seq && a.hash !== head.hash) throw new AuditError('edited', `${path} names hash ${a.hash} for seq ${a.seq} but the log's last record has ${head.hash}; ${advice}`);
    if (a.seq < head.seq - 1) throw new AuditError('anchor', `${path} names seq ${a.seq} but the log ends at seq ${head.seq}: records were appended without the anchor; ${advice}`);
    if (a.seq === head.seq - 1) {
      this.notice(`anchor of ${file} was one record behind (the writer stopped between append and anchor update); updated to seq ${head.seq}`);
      await this.anchor();
    }
  }

  private anchor(head: { seq: number; hash: string } = this.head): Promise<unknown> {
    return writeAnchor(this.opts.file, head, { key: this.opts.anchorKey, durable: this.opts.durable, now: this.now() });
  }

  /**
   * Appends one record. Calls are queued: records get seqs in call order.
   * @returns the record as written (with seq, ts, prev, hash), once its line and the anchor are
   *   on disk (fsync unless `durable: false`).
   * @throws AuditError `closed` after close; `write-failed` when the line or the anchor could not
   *   be written and synced (ENOSPC, EIO ...) or the log could not be rotated: the record is then
   *   NOT in the log (the file is cut back to its previous end, the chain and the anchor stay
   *   intact) and a later append may succeed.
   */
  append(entry: AuditEntry): Promise<AuditRecord> {
    if (this.closed) return Promise.reject(new AuditError('closed', `the audit log ${this.opts.file} is closed`));
    const run = this.queue.then(() => this.write(entry));
    this.queue = run.catch(() => undefined);
    return run;
  }

  private async write(entry: AuditEntry): Promise<AuditRecord> {
    if (this.uncut) await this.cutBack(this.uncut);
    if (this.uncut) throw this.uncutError(this.uncut);
    const now = this.now();
    let record = sealRecord(entry, this.head.seq + 1, this.head.hash, now, this.rotatedFrom);
    let line = lineOf(record);
    if (this.rotationDue(Buffer.byteLength(line), now)) {
      await this.rotate();
      record = sealRecord(entry, this.head.seq + 1, this.head.hash, now, this.rotatedFrom);
      line = lineOf(record);
    }
    const bytes = Buffer.from(line, 'utf8');
    const h = this.handle ?? (this.handle = await this.openLive());
    try {
      let off = 0;
      while (off < bytes.length) off += (await h.write(bytes, off, bytes.length - off)).bytesWritten;
      if (this.opts.durable ?? true) await h.datasync();
    } catch (e) {
      await this.cutBack(e as Error);
      throw new AuditError('write-failed', `could not append to ${this.opts.file}: ${(e as Error).message}; the record was not written`);
    }
    try {
      // writeAnchor replaces the anchor by rename, its last step that can fail: when it throws, the old anchor is in place
      await this.anchor(record);
    } catch (e) {
      await this.cutBack(e as Error);
      throw new AuditError('write-failed', `could not update the anchor ${anchorPath(this.opts.file)}: ${(e as Error).message}; the record was taken out of ${this.opts.file} again, so it was not written`);
    }
    this.size += bytes.length;
    this.head = { seq: record.seq, hash: record.hash, ts: record.ts };
    this.fileFirstTs ??= record.ts;
    this.rotatedFrom = undefined;
    return record;
  }

  /** After a failed write: cut the file back to its last good end (`size`); when that fails, {@link uncut} makes the next write retry. */
  private async cutBack(cause: Error): Promise<void> {
    if (!this.handle) return; // nothing was written through a handle that is not open
    try {
      await this.handle.truncate(this.size);
      if (this.opts.durable ?? true) await this.handle.sync();
      this.uncut = undefined;
    } catch {
      this.uncut = cause;
    }
  }

  private uncutError(cause: Error): AuditError {
    return new AuditError('write-failed', `${this.opts.file} may hold a partial record after "${cause.message}" and could not be cut back to ${this.size} bytes; no record is written until that succeeds (or reopen the log to recover it)`);
  }

  /** Opens the live file for appending (after a rotation whose reopen failed). */
  private async openLive(): Promise<FileHandle> {
    try {
      return await open(this.opts.file, 'a');
    } catch (e) {
      throw new AuditError('write-failed', `could not open ${this.opts.file} for appending: ${(e as Error).message}; the record was not written`);
    }
  }

  private rotationDue(lineBytes: number, now: number): boolean {
    if (this.size === 0) return false;
    const max = this.opts.rotateBytes ?? 0;
    if (max > 0 && this.size + lineBytes > max) return true;
    return (this.opts.rotateDaily ?? false) && utcDay(this.head.ts) !== utcDay(now);
  }

  /** Renames the live file to its dated name and starts a new live file. */
  private async rotate(): Promise<void> {
    const file = this.opts.file;
    const ext = extname(file);
    const stem = join(dirname(file), basename(file, ext));
    const stamp = utcStamp(this.fileFirstTs ?? this.head.ts);
    let target = `${stem}-${stamp}${ext}`;
    for (let n = 2; existsSync(target); n++) target = `${stem}-${stamp}-${n}${ext}`;
    await this.handle?.close();
    this.handle = undefined;
    try {
      await rename(file, target);
      if (this.opts.durable ?? true) await syncDir(dirname(file));
    } catch (e) {
      this.handle = await this.openLive();
      throw new AuditError('write-failed', `could not rotate ${file} to ${target}: ${(e as Error).message}; the record was not written`);
    }
    this.size = 0;
    this.fileFirstTs = undefined;
    this.rotatedFrom = basename(target);
    this.handle = await this.openLive(); // when this fails, the next write opens the live file again
  }

  /** Waits for queued appends, then closes the file. Safe to call twice. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closed = true;
      this.closing = this.queue.then(async () => {
        await this.handle?.close();
        this.handle = undefined;
      });
    }
    return this.closing;
  }
}
