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
 * `verifyChain` needs for the whole chain. Siblings are sorted in rotation order (time stamp,
 * then the `-N` of rotations within one second, none counting as 1); verifyChain orders by seq
 * anyway. (The live file is missing after a crash between a rotation's rename and the next
 * append.)
 */
export function chainFiles(file: string): string[] {
  const dir = dirname(file);
  const pattern = rotatedNamePattern(file);
  let names: string[] = [];
  try {
    names = readdirSync(dir).filter((n) => pattern.test(n)).sort(byRotation);
  } catch {
    // no directory: no siblings
  }
  return [...names.map((n) => join(dir, n)), ...(existsSync(file) ? [file] : [])];
}

/** Rotation order of two rotated names: `-YYYYMMDD-HHMMSS`, then `-N` (a plain name sorts before `-2`). */
function byRotation(a: string, b: string): number {
  const key = (n: string) => {
    const m = /-(\d{8})-(\d{6})(?:-(\d+))?\.?[^.-]*$/.exec(n);
    return m ? [`${m[1]}${m[2]}`, Number(m[3] ?? 1)] as const : [n, 0] as const;
  };
  const [sa, na] = key(a);
  const [sb, nb] = key(b);
  return sa < sb ? -1 : sa > sb ? 1 : na - nb;
}
