/**
 * The desktop pack's file tools: `desktop_create_directory`, `desktop_delete_directory` and
 * `desktop_search_files`. Every path goes through {@link PathGuard.check}, and the tools work on
 * the real path it returns. Walks never follow symbolic links (a link is listed or removed, never
 * entered), so a search or a delete stays under the directory it started from.
 */
import { lstat, mkdir, opendir, rm, rmdir } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import { compileGlob, MAX_PATTERN_CHARS, type Glob } from './glob';
import { isInside, MAX_PATH_CHARS, type CheckedPath, type PathGuard } from './paths';

/** Search limits from the pack config. */
export interface SearchLimits {
  /** Cap on `maxResults` of one call. */
  maxResults: number;
  /** Entries one search looks at before it stops (`truncated: "maxEntries"`). */
  maxEntries: number;
}

const PathArg = z.string().min(1).max(MAX_PATH_CHARS);

/** What a directory tree holds (symbolic links counted, not followed). */
interface TreeCount { files: number; directories: number; symlinks: number; other: number; bytes: number }

function errnoOf(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** Wraps a file-system failure as EXECUTION_FAILED naming the path. */
function fsError(e: unknown, what: string, path: string): ToolError {
  if (e instanceof ToolError) return e;
  return new ToolError('EXECUTION_FAILED', `${what} ${path}: ${(e as Error).message}`, { path, errno: errnoOf(e) });
}

/** Counts a tree below `dir` (the directory itself not included), checking `signal` as it goes. */
async function countTree(dir: string, signal: AbortSignal): Promise<TreeCount> {
  const count: TreeCount = { files: 0, directories: 0, symlinks: 0, other: 0, bytes: 0 };
  const pending = [dir];
  while (pending.length) {
    signal.throwIfAborted();
    const current = pending.pop()!;
    for await (const entry of await opendir(current)) {
      const full = join(current, entry.name);
      if (entry.isDirectory()) {
        count.directories++;
        pending.push(full);
      } else if (entry.isSymbolicLink()) {
        count.symlinks++;
      } else if (entry.isFile()) {
        count.files++;
        count.bytes += (await lstat(full)).size;
      } else {
        count.other++;
      }
    }
  }
  return count;
}

function describeCount(c: TreeCount): string {
  const parts = [`${c.files} file${c.files === 1 ? '' : 's'} (${c.bytes} bytes)`, `${c.directories} subdirector${c.directories === 1 ? 'y' : 'ies'}`];
  if (c.symlinks) parts.push(`${c.symlinks} symbolic link${c.symlinks === 1 ? '' : 's'} (removed, not followed)`);
  if (c.other) parts.push(`${c.other} other entr${c.other === 1 ? 'y' : 'ies'}`);
  return parts.join(', ');
}

/** The directories `mkdir -p` would create for a checked path (outermost first). */
function missingDirs(p: CheckedPath): string[] {
  const rest = relative(p.existingPrefix, p.real).split(sep).filter(Boolean);
  return rest.map((_, i) => join(p.existingPrefix, ...rest.slice(0, i + 1)));
}

/**
 * `mkdir -p` on a checked path. Returns `{path, created: true, createdDirectories}`, or
 * `{path, created: false}` when it exists; a dry run `{dryRun, wouldDo, path, create}`.
 * @throws ToolError PATH_NOT_ALLOWED (guard), EXECUTION_FAILED when a file is in the way.
 */
async function createDirectory(guard: PathGuard, path: string, ctx: ToolContext) {
  const p = await guard.check(path);
  if (p.exists) {
    const st = await lstat(p.real);
    if (!st.isDirectory()) throw new ToolError('EXECUTION_FAILED', `${p.real} exists and is not a directory`, { path: p.real });
    return ctx.dryRun ? { dryRun: true, wouldDo: `nothing: ${p.real} already exists`, path: p.real, create: [] } : { path: p.real, created: false };
  }
  if (!(await lstat(p.existingPrefix)).isDirectory()) {
    throw new ToolError('EXECUTION_FAILED', `${p.existingPrefix} is not a directory, so nothing can be created in it`, { path: p.existingPrefix });
  }
  const create = missingDirs(p);
  if (ctx.dryRun) return { dryRun: true, wouldDo: `create ${create.join(', ')}`, path: p.real, create };
  try {
    await mkdir(p.real, { recursive: true });
  } catch (e) {
    throw fsError(e, 'cannot create', p.real);
  }
  return { path: p.real, created: true, createdDirectories: create };
}

/**
 * Deletes a directory (with `recursive`, everything in it; links inside are removed, not
 * followed). Returns `{path, deleted: true}` plus the {@link TreeCount} of what was inside; a dry
 * run `{dryRun, wouldDo, path, ...count}`.
 * @throws ToolError PATH_NOT_ALLOWED (guard; `reason: "root"` for an allowed root or a path
 *   above one), EXECUTION_FAILED when missing, not a directory, a symlink, or not empty without
 *   `recursive`.
 */
async function deleteDirectory(guard: PathGuard, path: string, recursive: boolean, ctx: ToolContext) {
  const p = await guard.check(path);
  const roots = guard.roots.filter((r) => isInside(r, p.real));
  if (roots.length) {
    throw new ToolError('PATH_NOT_ALLOWED', `${p.real} is ${roots.includes(p.real) ? 'an allowed root' : `above the allowed path ${roots[0]}`}; allowed roots themselves are never deleted`, { path, reason: 'root', roots });
  }
  if (!p.exists) throw new ToolError('EXECUTION_FAILED', `${p.real} does not exist`, { path: p.real });
  if ((await lstat(p.lexical)).isSymbolicLink()) {
    throw new ToolError('EXECUTION_FAILED', `${p.lexical} is a symbolic link, not a directory; this tool removes directories only`, { path: p.lexical });
  }
  if (!(await lstat(p.real)).isDirectory()) throw new ToolError('EXECUTION_FAILED', `${p.real} is not a directory`, { path: p.real });
  let count: TreeCount;
  try {
    count = await countTree(p.real, ctx.signal);
  } catch (e) {
    if (ctx.signal.aborted) throw e;
    throw fsError(e, 'cannot read', p.real);
  }
  const entries = count.files + count.directories + count.symlinks + count.other;
  if (entries > 0 && !recursive) {
    throw new ToolError('EXECUTION_FAILED', `${p.real} is not empty (${describeCount(count)}); pass recursive: true to delete it with everything in it`, { path: p.real, ...count });
  }
  const summary = entries ? `delete ${p.real} and everything in it: ${describeCount(count)}` : `delete the empty directory ${p.real}`;
  if (ctx.dryRun) return { dryRun: true, wouldDo: summary, path: p.real, ...count };
  try {
    if (recursive) await rm(p.real, { recursive: true, force: false });
    else await rmdir(p.real);
  } catch (e) {
    throw fsError(e, 'cannot delete', p.real);
  }
  return { path: p.real, deleted: true, ...count };
}

/** One search hit. */
interface Match { path: string; relativePath: string; type: 'file' | 'directory' | 'symlink' | 'other'; sizeBytes: number; modified: string }

/**
 * Breadth-first walk under a checked folder, entries sorted by name within each folder, links
 * listed but not entered. Returns `{root, pattern, matches, truncated: false | "maxResults" |
 * "maxEntries", scannedEntries, unreadableDirectories}`.
 * @throws ToolError INVALID_ARGUMENTS for a bad pattern, PATH_NOT_ALLOWED (guard),
 *   EXECUTION_FAILED when the root is not a directory.
 */
async function searchFiles(guard: PathGuard, limits: SearchLimits, args: { root: string; pattern: string; type: 'any' | 'file' | 'directory'; maxResults: number }, ctx: ToolContext) {
  let glob: Glob;
  try {
    glob = compileGlob(args.pattern);
  } catch (e) {
    throw new ToolError('INVALID_ARGUMENTS', `pattern "${args.pattern}": expected ${(e as Error).message}`, { pattern: args.pattern });
  }
  const p = await guard.check(args.root);
  if (!p.exists || !(await lstat(p.real)).isDirectory()) throw new ToolError('EXECUTION_FAILED', `${p.real} is not a directory`, { path: p.real });
  const matches: Match[] = [];
  const queue = [''];
  let next = 0;
  let scanned = 0;
  let unreadable = 0;
  let truncated: false | 'maxResults' | 'maxEntries' = false;
  walk: while (next < queue.length) {
    ctx.signal.throwIfAborted();
    const rel = queue[next++];
    let names: Array<{ name: string; kind: Match['type'] }>;
    try {
      const dir = await opendir(join(p.real, rel));
      names = [];
      for await (const e of dir) {
        names.push({ name: e.name, kind: e.isDirectory() ? 'directory' : e.isSymbolicLink() ? 'symlink' : e.isFile() ? 'file' : 'other' });
      }
    } catch {
      unreadable++;
      continue;
    }
    names.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    for (const { name, kind } of names) {
      if (++scanned > limits.maxEntries) {
        truncated = 'maxEntries';
        break walk;
      }
      const childRel = rel ? `${rel}/${name}` : name;
      if (kind === 'directory') queue.push(childRel);
      if (args.type !== 'any' && args.type !== kind) continue;
      if (!glob.matches(childRel)) continue;
      if (matches.length >= args.maxResults) {
        truncated = 'maxResults';
        break walk;
      }
      const full = join(p.real, childRel);
      const st = await lstat(full).catch(() => undefined);
      matches.push({ path: full, relativePath: childRel, type: kind, sizeBytes: st?.isFile() ? st.size : 0, modified: st ? st.mtime.toISOString() : '' });
    }
  }
  return { root: p.real, pattern: args.pattern, matches, truncated, scannedEntries: Math.min(scanned, limits.maxEntries), unreadableDirectories: unreadable };
}

/** Builds the three file tools on one path guard. */
export function fileTools(guard: PathGuard, limits: SearchLimits): ToolDefinition[] {
  const where = `Allowed folders: ${guard.roots.join(', ')}; relative paths are relative to ${guard.roots[0]}.`;
  return [
    defineTool({
      name: 'desktop_create_directory',
      description: `Create a directory, with any missing parent directories. An existing directory is left as it is (created: false). ${where}`,
      input: z.strictObject({ path: PathArg.describe('Directory to create') }),
      risk: 'medium', supportsDryRun: true, idempotent: true,
      execute: ({ path }, ctx) => createDirectory(guard, path, ctx),
    }),
    defineTool({
      name: 'desktop_delete_directory',
      description: `Delete a directory. Without recursive: true only an empty one; with it, everything inside too (symbolic links inside are removed, not followed). The allowed folders themselves cannot be deleted. A dry run reports how many files, directories and bytes would go. ${where}`,
      input: z.strictObject({
        path: PathArg.describe('Directory to delete'),
        recursive: z.boolean().default(false).describe('Also delete everything inside it'),
      }),
      risk: 'high', supportsDryRun: true, destructive: true, timeoutMs: 120_000,
      execute: ({ path, recursive }, ctx) => deleteDirectory(guard, path, recursive, ctx),
    }),
    defineTool({
      name: 'desktop_search_files',
      description: `Find files and directories under a folder by glob pattern: * (any run of characters within a name), ? (one character), [a-z] (a set), ** (any number of directories). A pattern without / matches names at any depth (e.g. *.pdf); one with / matches the path below root (e.g. projects/**/notes.md). Symbolic links are listed, not followed. Results come breadth first, sorted by name within a folder, at most ${limits.maxResults}. ${where}`,
      input: z.strictObject({
        root: PathArg.describe('Folder to search in'),
        pattern: z.string().min(1).max(MAX_PATTERN_CHARS).describe('Glob pattern'),
        type: z.enum(['any', 'file', 'directory']).default('any'),
        maxResults: z.number().int().min(1).max(limits.maxResults).default(Math.min(50, limits.maxResults)),
      }),
      risk: 'low', readOnly: true, idempotent: true, timeoutMs: 60_000,
      execute: (args, ctx) => searchFiles(guard, limits, args, ctx),
    }),
  ];
}
