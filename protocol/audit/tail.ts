/**
 * Reading the ends of a log file without reading all of it: the last complete line (the chain
 * head), a torn tail after a crash, and the first record. No Node-RED imports.
 */
import { open, writeFile } from 'node:fs/promises';
import { AuditError, parseRecord, type AuditRecord } from './record';

const CHUNK = 64 * 1024;
const NL = 0x0a;

/** What the end of a file holds. */
export interface FileEnd {
  /** File size, bytes. */
  size: number;
  /** The last complete record; undefined when the file has no complete line. */
  last?: AuditRecord;
  /**
   * Bytes after the last `\n` (a line whose write did not finish: a crash). `start` is the byte
   * offset where the good part of the file ends.
   */
  torn?: { start: number; bytes: Buffer };
}

/**
 * Finds the last complete record and any torn tail of `file`.
 * @returns `{ size: 0 }` for a missing or empty file.
 * @throws AuditError `malformed` when the last complete line is not a record (that is not a crash
 *   signature: a crash leaves a line without its `\n`).
 */
export async function readEnd(file: string): Promise<FileEnd> {
  let h;
  try {
    h = await open(file, 'r');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { size: 0 };
    throw e;
  }
  try {
    const size = (await h.stat()).size;
    if (size === 0) return { size };
    // read backwards until the buffer holds the last two newlines (or the whole file)
    let buf = Buffer.alloc(0);
    let pos = size;
    const newlines = () => { let n = 0; for (const b of buf) if (b === NL) n++; return n; };
    while (pos > 0 && newlines() < 2) {
      const len = Math.min(CHUNK, pos);
      pos -= len;
      const chunk = Buffer.alloc(len);
      await h.read(chunk, 0, len, pos);
      buf = Buffer.concat([chunk, buf]);
    }
    const lastNl = buf.lastIndexOf(NL);
    const end: FileEnd = { size };
    const goodEnd = lastNl + 1; // index in buf where the complete lines end
    if (goodEnd < buf.length) end.torn = { start: pos + goodEnd, bytes: buf.subarray(goodEnd) };
    if (lastNl < 0) return end;
    const prevNl = buf.lastIndexOf(NL, lastNl - 1);
    const line = buf.subarray(prevNl + 1, lastNl).toString('utf8');
    end.last = parseRecord(line);
    if (!end.last) {
      throw new AuditError('malformed', `the last complete line of ${file} (byte ${pos + prevNl + 1}) is not an audit record; run "toolmesh audit verify ${file}" and move the file aside to start a new chain`);
    }
    return end;
  } finally {
    await h.close();
  }
}

/**
 * Reads the first record of `file` (the first line).
 * @returns undefined when the file is missing, empty or its first line is not a record.
 */
export async function readFirst(file: string): Promise<AuditRecord | undefined> {
  let h;
  try {
    h = await open(file, 'r');
  } catch {
    return undefined;
  }
  try {
    let buf = Buffer.alloc(0);
    for (let pos = 0; ; pos += CHUNK) {
      const chunk = Buffer.alloc(CHUNK);
      const { bytesRead } = await h.read(chunk, 0, CHUNK, pos);
      buf = Buffer.concat([buf, chunk.subarray(0, bytesRead)]);
      const nl = buf.indexOf(NL);
      if (nl >= 0) return parseRecord(buf.subarray(0, nl).toString('utf8'));
      if (bytesRead < CHUNK) return undefined;
    }
  } finally {
    await h.close();
  }
}

/**
 * Moves a torn tail aside: copies its bytes to `<file>.torn-<now>` (fsynced), then truncates
 * `file` to the end of its last complete line and fsyncs it.
 * @returns the path of the file that keeps the torn bytes.
 */
export async function moveTornTail(file: string, torn: { start: number; bytes: Buffer }, now = Date.now()): Promise<string> {
  const aside = `${file}.torn-${now}`;
  await writeFile(aside, torn.bytes, { flush: true });
  const h = await open(file, 'r+');
  try {
    await h.truncate(torn.start);
    await h.sync();
  } finally {
    await h.close();
  }
  return aside;
}
