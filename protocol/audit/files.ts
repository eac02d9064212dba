/** Names of the files of one chain: the live file and its rotated siblings. No Node-RED imports. */
import { existsSync, readdirSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';

/** Matches the base names of the rotated files of `file`: `<stem>-YYYYMMDD-HHMMSS[-N]<ext>`. */
export function rotatedNamePattern(file: string): RegExp {
  const ext = extname(file);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new RegExp(`^${esc(basename(file, ext))}-\\d{8}-\\d{6}(-\\d+)?${esc(ext)}$`);
}

/** The live file a rotated file came from (`audit-20261123-120000-2.jsonl` → `audit.jsonl`), or undefined. */
export function liveFileOf(rotated: string): string | undefined {
  const m = /^(.+)-\d{8}-\d{6}(?:-\d+)?(\.[^.]*)?$/.exec(basename(rotated));
  return m ? join(dirname(rotated), `${m[1]}${m[2] ?? ''}`) : undefined;
}

/**
 * The rotated siblings of `file` (same directory), then `file` itself when it exists: what
 * `verifyChain` needs for the whole chain. Siblings are sorted by name; verifyChain orders by
 * seq anyway. (The live file is missing after a crash between a rotation's rename and the next
 * append.)
 */
export function chainFiles(file: string): string[] {
  const dir = dirname(file);
  const pattern = rotatedNamePattern(file);
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => pattern.test(n)).sort();
  } catch {
    // no directory: no siblings
  }
  return [...names.map((n) => join(dir, n)), ...(existsSync(file) ? [file] : [])];
}
