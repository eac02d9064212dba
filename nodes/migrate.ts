/**
 * Moves a Node-RED flows file from the pack's old node types (`llm-agent`, `tool-registry`, …, as
 * published in `node-red-contrib-toolmesh`) to the prefixed ones of `@toolmesh/node-red-toolmesh`
 * (`toolmesh-llm-agent`, `toolmesh-tool-registry`, …; issue 18, item 2). Only each node's `type`
 * changes: ids, wires and every other property stay, so `flows_cred.json` (whose entries Node-RED
 * keys by node id, encrypted or not) stays valid without being read or rewritten.
 *
 * Command: `toolmesh-node-red migrate-flows <flows.json> [--dry-run]` ({@link runMigrate}).
 */
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** The old node types and their new names, in the order the palette shows them. */
export const RENAMED_TYPES: Readonly<Record<string, string>> = Object.freeze({
  'tool-registry': 'toolmesh-tool-registry',
  'remote-tool': 'toolmesh-remote-tool',
  'llm-agent': 'toolmesh-llm-agent',
  'tool-in': 'toolmesh-tool-in',
  'tool-out': 'toolmesh-tool-out',
  'confirm-gate': 'toolmesh-confirm-gate',
  'audit-log': 'toolmesh-audit-log',
});

/** Admin permission names that follow the types (`tool-registry.read` → `toolmesh-tool-registry.read`). */
const OLD_PERMISSION = /(?<![\w/.-])(tool-registry|remote-tool|llm-agent|tool-in|tool-out|confirm-gate|audit-log)\.(read|write)\b/g;

/** Suffix of the copy {@link migrateFlowsFile} keeps of the file before it changes it. */
export const BACKUP_SUFFIX = '.bak-toolmesh';

/** One node whose type changed. */
export interface MigratedNode {
  id: string;
  from: string;
  to: string;
}

/** What {@link migrateFlows} returns: the flows (same shape as given) and how many types changed. */
export interface MigrateResult<T = unknown> {
  flows: T;
  changed: number;
  /** The changed nodes, in file order. */
  nodes: MigratedNode[];
}

/**
 * Rewrites the old ToolMesh node types in a flows document. Accepts what Node-RED stores in its
 * flows file (an array of node objects) or what its admin API v2 exchanges (`{ rev?, flows: [...] }`);
 * returns a new document of the same shape (the input is not changed) and the number of nodes
 * whose type changed (0 when already migrated: running it twice is harmless). Node ids are kept.
 * @throws Error when `flows` is neither shape, or an entry of the array is not an object.
 */
export function migrateFlows<T = unknown>(flows: T): MigrateResult<T> {
  const doc = flows as unknown;
  const list: unknown = Array.isArray(doc) ? doc : doc && typeof doc === 'object' ? (doc as { flows?: unknown }).flows : undefined;
  if (!Array.isArray(list)) throw new Error('flows: expected an array of nodes (a Node-RED flows file) or { flows: [...] }');
  const nodes: MigratedNode[] = [];
  const out = list.map((n: unknown, i: number) => {
    if (!n || typeof n !== 'object' || Array.isArray(n)) throw new Error(`flows[${i}]: expected a node object, got ${Array.isArray(n) ? 'an array' : n === null ? 'null' : typeof n}`);
    const node = n as { id?: unknown; type?: unknown };
    const to = typeof node.type === 'string' && Object.hasOwn(RENAMED_TYPES, node.type) ? RENAMED_TYPES[node.type] : undefined;
    if (!to) return n;
    nodes.push({ id: String(node.id ?? `#${i}`), from: node.type as string, to });
    return { ...node, type: to };
  });
  const result = (Array.isArray(flows) ? out : { ...(flows as object), flows: out }) as T;
  return { flows: result, changed: nodes.length, nodes };
}

/** What {@link migrateFlowsFile} did. */
export interface MigrateFileResult {
  file: string;
  changed: number;
  nodes: MigratedNode[];
  /** The copy of the file as it was, when it changed (`<file>.bak-toolmesh`, or `.bak-toolmesh.<n>` if that exists). */
  backup?: string;
  /** Old permission names found in the settings.js beside the file (adminAuth), to be renamed by hand. */
  settingsHints: string[];
}

/**
 * Migrates the flows file at `path` in place ({@link migrateFlows}): when something changes, first
 * copies it to `<path>.bak-toolmesh` (an existing backup is kept and the next free
 * `.bak-toolmesh.<n>` used), then writes the new content to a temporary file beside it, fsyncs and
 * renames it over `path` (atomic: a crash leaves the old or the new file, never half of one),
 * keeping the file mode and Node-RED's formatting (pretty with 4 spaces when the file had line
 * breaks, else compact). Unchanged files are not touched. `flows_cred.json` is left as it is
 * (keyed by node id). Also reports old permission names (`tool-registry.read`, …) in the
 * `settings.js` of the same folder, which this function does not change.
 * With `dryRun` nothing is written.
 * @throws Error when the file cannot be read, is not JSON, or is not a flows document
 *   (the message names the file).
 */
export async function migrateFlowsFile(path: string, opts: { dryRun?: boolean } = {}): Promise<MigrateFileResult> {
  return migrateFlowsFileSync(path, opts);
}

/** {@link migrateFlowsFile} with synchronous file calls, for start-up code (the demo). */
export function migrateFlowsFileSync(path: string, opts: { dryRun?: boolean } = {}): MigrateFileResult {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read the flows file: ${(e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = text.trim() ? JSON.parse(text) : [];
  } catch (e) {
    throw new Error(`${path}: not JSON: ${(e as Error).message}`);
  }
  let res: MigrateResult;
  try {
    res = migrateFlows(doc);
  } catch (e) {
    throw new Error(`${path}: ${(e as Error).message}`);
  }
  const settingsHints = settingsPermissionHints(join(dirname(path), 'settings.js'));
  if (!res.changed || opts.dryRun) return { file: path, changed: res.changed, nodes: res.nodes, settingsHints };

  const mode = statSync(path).mode & 0o777;
  let backup = `${path}${BACKUP_SUFFIX}`;
  for (let n = 1; existsSync(backup); n++) backup = `${path}${BACKUP_SUFFIX}.${n}`;
  writeAtomically(backup, text, mode);
  const body = text.includes('\n') ? `${JSON.stringify(res.flows, null, 4)}\n` : JSON.stringify(res.flows);
  writeAtomically(path, body, mode);
  return { file: path, changed: res.changed, nodes: res.nodes, backup, settingsHints };
}

/** Writes `text` to a temporary file beside `file`, fsyncs it and renames it over `file`. */
function writeAtomically(file: string, text: string, mode: number): void {
  const tmp = join(dirname(file), `.${basename(file)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'w', mode);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } catch (e) {
    closeSync(fd);
    try { unlinkSync(tmp); } catch { /* already gone */ }
    throw e;
  }
  closeSync(fd);
  renameSync(tmp, file);
}

/** Lines of `settingsFile` (when it exists) naming an old permission, as `settings.js:<line>: old → new`. */
export function settingsPermissionHints(settingsFile: string): string[] {
  if (!existsSync(settingsFile)) return [];
  const hints: string[] = [];
  readFileSync(settingsFile, 'utf8').split('\n').forEach((line, i) => {
    for (const m of line.matchAll(OLD_PERMISSION)) hints.push(`${basename(settingsFile)}:${i + 1}: ${m[0]} → toolmesh-${m[0]}`);
  });
  return hints;
}

const USAGE = `usage: toolmesh-node-red migrate-flows <flows.json> [--dry-run]

Rewrites the node types of ToolMesh in a Node-RED flows file (stop Node-RED first):
  ${Object.entries(RENAMED_TYPES).map(([a, b]) => `${a} → ${b}`).join('\n  ')}
Node ids stay, so flows_cred.json (keyed by node id) stays valid. The file is copied to
<flows.json>${BACKUP_SUFFIX} first and replaced atomically; running it again changes nothing.
  --dry-run   only print what would change`;

/**
 * The `migrate-flows` command: `argv` holds the words after the command name (a leading
 * `migrate-flows` is skipped too). Prints each changed node, the backup, and a hint for every old
 * permission name in the settings.js beside the file. Returns the exit code: 0 done (or nothing to
 * do), 1 the file could not be migrated, 2 bad usage.
 */
export async function runMigrate(argv: string[], out: (line: string) => void = (l) => console.log(l), err: (line: string) => void = (l) => console.error(l)): Promise<number> {
  const args = argv[0] === 'migrate-flows' ? argv.slice(1) : [...argv];
  if (args.includes('-h') || args.includes('--help')) {
    out(USAGE);
    return 0;
  }
  const dryRun = args.includes('--dry-run');
  const files = args.filter((a) => a !== '--dry-run');
  const unknown = files.filter((a) => a.startsWith('-'));
  if (unknown.length || files.length !== 1) {
    err(unknown.length ? `unknown option ${unknown[0]}` : files.length ? 'give exactly one flows file' : 'the flows file is missing');
    err(USAGE);
    return 2;
  }
  let res: MigrateFileResult;
  try {
    res = await migrateFlowsFile(files[0], { dryRun });
  } catch (e) {
    err(`migrate-flows: ${(e as Error).message}`);
    return 1;
  }
  for (const n of res.nodes) out(`${dryRun ? 'would change' : 'changed'} node ${n.id}: ${n.from} → ${n.to}`);
  if (!res.changed) out(`${res.file}: no old ToolMesh node types, nothing to do`);
  else if (dryRun) out(`${res.file}: ${res.changed} node(s) would change (dry run, nothing written)`);
  else out(`${res.file}: ${res.changed} node(s) changed; the old file is in ${res.backup}; flows_cred.json needs no change (node ids kept)`);
  if (res.settingsHints.length) {
    out('adminAuth in settings.js names old permissions; rename them by hand (Node-RED is to be restarted after):');
    for (const h of res.settingsHints) out(`  ${h}`);
  }
  return 0;
}
