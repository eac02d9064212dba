/**
 * The anchor: a small JSON file `<file>.anchor` beside the live log, `{v, file, seq, hash, ts}`
 * (plus `mac`, a hex HMAC-SHA256 of the rest, when a key is configured), naming the chain head
 * after each append. It is what makes removal at the END detectable: a file that ends before
 * the anchored seq was truncated. It is replaced atomically: temp file, fsync, rename, fsync of
 * the directory (so a power loss leaves the old or the new anchor, never a mix, and never an
 * anchor older than the previous one). No Node-RED imports.
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import { basename, dirname } from 'node:path';
import canonicalize from 'canonicalize';

/** The anchor's content. `file` is the base name of the file that held the head when written. */
export interface Anchor {
  v: 1;
  file: string;
  seq: number;
  hash: string;
  /** When it was written, epoch ms. */
  ts: number;
  mac?: string;
}

/** Where the anchor of `file` lives. */
export function anchorPath(file: string): string {
  return `${file}.anchor`;
}

/** Hex HMAC-SHA256 of the canonical JSON of `a` without `mac`. */
export function anchorMac(a: Anchor, key: string | Buffer): string {
  const { mac: _ignored, ...rest } = a;
  return createHmac('sha256', key).update(canonicalize(rest) ?? '').digest('hex');
}

/** True when `a.mac` is the HMAC of `a` under `key`. */
export function anchorMacOk(a: Anchor, key: string | Buffer): boolean {
  if (typeof a.mac !== 'string' || !/^[0-9a-f]{64}$/.test(a.mac)) return false;
  return timingSafeEqual(Buffer.from(a.mac, 'hex'), Buffer.from(anchorMac(a, key), 'hex'));
}

/**
 * Reads an anchor.
 * @returns undefined when the file does not exist.
 * @throws Error when it exists but is not an anchor (unreadable, not JSON, fields missing).
 */
export function readAnchor(path: string): Anchor | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new Error(`cannot read the anchor ${path}: ${(e as Error).message}`);
  }
  let a: Anchor;
  try {
    a = JSON.parse(text) as Anchor;
  } catch {
    throw new Error(`the anchor ${path} is not JSON`);
  }
  if (!a || a.v !== 1 || !Number.isSafeInteger(a.seq) || typeof a.hash !== 'string' || !/^[0-9a-f]{64}$/.test(a.hash)) {
    throw new Error(`the anchor ${path} lacks v: 1, seq or hash`);
  }
  return a;
}

/**
 * Replaces the anchor of `file` atomically with `{v: 1, file, seq, hash, ts}` (+ `mac`).
 * @param durable fsync the temp file and the directory (default true).
 * @throws the file system's error; the old anchor then stays in place.
 */
export async function writeAnchor(file: string, head: { seq: number; hash: string }, opts: { key?: string | Buffer; durable?: boolean; now?: number } = {}): Promise<Anchor> {
  const a: Anchor = { v: 1, file: basename(file), seq: head.seq, hash: head.hash, ts: opts.now ?? Date.now() };
  if (opts.key !== undefined) a.mac = anchorMac(a, opts.key);
  const path = anchorPath(file);
  const tmp = `${path}.tmp`;
  const durable = opts.durable ?? true;
  const h = await open(tmp, 'w');
  try {
    await h.writeFile(`${JSON.stringify(a)}\n`);
    if (durable) await h.sync();
  } catch (e) {
    await h.close();
    await unlink(tmp).catch(() => undefined);
    throw e;
  }
  await h.close();
  await rename(tmp, path);
  if (durable) await syncDir(dirname(path));
  return a;
}

/** fsyncs a directory so a rename in it is durable; a no-op where directories cannot be opened (Windows). */
export async function syncDir(dir: string): Promise<void> {
  let h;
  try {
    h = await open(dir, 'r');
  } catch {
    return;
  }
  try {
    await h.sync();
  } catch {
    // some file systems refuse fsync on directories; the rename is then as durable as they allow
  } finally {
    await h.close();
  }
}
