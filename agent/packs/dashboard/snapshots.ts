/**
 * Snapshots of the pack's tab: one JSON file per name in the configured directory,
 * `<dir>/<name>.json` = `{ version: 1, name, savedAt, tabLabel, nodes }` (the tab's nodes and
 * config nodes as `GET /flow/:id` returns them, so without credentials). Names are plain words,
 * never paths. A snapshot is read back only if every node is of a type the pack itself creates.
 */
import { mkdir, readdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import type { FlowNode } from './admin-api';
import { ALLOWED_TYPES } from './elements';

/** A snapshot name: a letter or digit, then up to 63 letters, digits, `_` or `-`. */
export const SnapshotName = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$/, 'a name of letters, digits, _ and - (at most 64, the first a letter or digit)')
  .describe('Snapshot name, e.g. living-room');

/** Largest snapshot file read back, bytes. */
export const MAX_SNAPSHOT_BYTES = 1024 * 1024;

const SnapshotSchema = z.object({
  version: z.literal(1),
  name: z.string(),
  savedAt: z.string(),
  tabLabel: z.string(),
  nodes: z.array(z.looseObject({ id: z.string().min(1).max(64), type: z.string().min(1) })),
});

/** A snapshot file's content. */
export type Snapshot = z.output<typeof SnapshotSchema> & { nodes: FlowNode[] };

/** One entry of {@link listSnapshots}. */
export interface SnapshotInfo {
  name: string;
  savedAt: string;
  groups: number;
  elements: number;
  bytes: number;
}

const fileOf = (dir: string, name: string) => join(dir, `${name}.json`);

/** Whether snapshot `name` exists in `dir`. */
export async function snapshotExists(dir: string, name: string): Promise<boolean> {
  return stat(fileOf(dir, name)).then(() => true, () => false);
}

/**
 * Writes `snap` as `<dir>/<name>.json` (the directory is created, mode 0700), through a temporary
 * file renamed into place, so a crash leaves the old snapshot or the new one.
 * @returns the file and its size in bytes.
 */
export async function writeSnapshot(dir: string, snap: Snapshot): Promise<{ file: string; bytes: number }> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const file = fileOf(dir, snap.name);
  const text = `${JSON.stringify(snap, null, 2)}\n`;
  const tmp = `${file}.${process.pid}.tmp`;
  await writeFile(tmp, text, { mode: 0o600 });
  await rename(tmp, file);
  return { file, bytes: Buffer.byteLength(text) };
}

/**
 * Reads snapshot `name` from `dir`.
 * @throws ToolError EXECUTION_FAILED when it is missing, larger than {@link MAX_SNAPSHOT_BYTES},
 *   not a snapshot, or holds a node type the pack does not create (`details.types`).
 */
export async function readSnapshot(dir: string, name: string): Promise<Snapshot> {
  const file = fileOf(dir, name);
  let text: string;
  try {
    const st = await stat(file);
    if (st.size > MAX_SNAPSHOT_BYTES) throw new ToolError('EXECUTION_FAILED', `snapshot "${name}" is ${st.size} bytes, more than the ${MAX_SNAPSHOT_BYTES} a snapshot may have`, { name });
    text = await readFile(file, 'utf8');
  } catch (err) {
    if (err instanceof ToolError) throw err;
    throw new ToolError('EXECUTION_FAILED', `no snapshot named "${name}"; list_dashboard_configs lists the saved ones`, { name });
  }
  let parsed;
  try {
    parsed = SnapshotSchema.safeParse(JSON.parse(text));
  } catch {
    parsed = undefined;
  }
  if (!parsed?.success) throw new ToolError('EXECUTION_FAILED', `${file} is not a dashboard snapshot (version 1 with a nodes list)`, { name });
  const foreign = [...new Set(parsed.data.nodes.map((n) => n.type).filter((t) => !ALLOWED_TYPES.has(t)))];
  if (foreign.length) {
    throw new ToolError('EXECUTION_FAILED', `snapshot "${name}" holds node types the dashboard pack does not create (${foreign.join(', ')}); it loads only dashboard widgets, their groups and pages, and MQTT nodes`, { name, types: foreign });
  }
  return parsed.data as Snapshot;
}

/** The snapshots in `dir` by name (none when the directory does not exist); unreadable files are left out. */
export async function listSnapshots(dir: string): Promise<SnapshotInfo[]> {
  const names = await readdir(dir).catch(() => [] as string[]);
  const out: SnapshotInfo[] = [];
  for (const f of names.filter((n) => n.endsWith('.json')).sort()) {
    const name = f.slice(0, -'.json'.length);
    if (!SnapshotName.safeParse(name).success) continue;
    try {
      const snap = await readSnapshot(dir, name);
      const bytes = (await stat(fileOf(dir, name))).size;
      out.push({
        name, savedAt: snap.savedAt, bytes,
        groups: snap.nodes.filter((n) => n.type === 'ui-group').length,
        elements: snap.nodes.filter((n) => n.type.startsWith('ui-') && !['ui-base', 'ui-theme', 'ui-page', 'ui-group'].includes(n.type)).length,
      });
    } catch { /* not a snapshot of this pack: not listed */ }
  }
  return out;
}
