/**
 * One {@link AuditWriter} per file per process, shared by every audit-log node that names the
 * file, so their records go through one queue and one chain (two writers on one file would
 * break it). The first node to open a file sets its rotation options. No Node-RED imports.
 */
import { resolve } from 'node:path';
import { AuditWriter, type AuditWriterOptions } from '@toolmesh/agent/protocol/audit';

const open = new Map<string, { writer: Promise<AuditWriter>; users: number }>();

/**
 * The writer of `opts.file`, opened on first use; every call needs one {@link release}.
 * @returns a promise that rejects with the AuditError that prevented opening (see AuditWriter.open).
 */
export function acquire(opts: AuditWriterOptions): Promise<AuditWriter> {
  const key = resolve(opts.file);
  let entry = open.get(key);
  if (!entry) {
    entry = { writer: AuditWriter.open({ ...opts, file: key }), users: 0 };
    entry.writer.catch(() => undefined); // handled by each user
    open.set(key, entry);
  }
  entry.users++;
  return entry.writer;
}

/** Gives a writer back; the last user's release waits for queued appends and closes the file. */
export async function release(file: string): Promise<void> {
  const key = resolve(file);
  const entry = open.get(key);
  if (!entry || --entry.users > 0) return;
  open.delete(key);
  const writer = await entry.writer.catch(() => undefined);
  await writer?.close();
}
