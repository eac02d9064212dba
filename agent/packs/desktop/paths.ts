/**
 * The desktop pack's path guard: every path a tool receives is checked here, and tools then work
 * on the real path this returns, never on the text they were given.
 *
 * Order of the checks (each refusal is a `PATH_NOT_ALLOWED` ToolError with `details.reason`):
 * 1. The text: no NUL (`nul`); well-formed UTF-16, no control characters (Unicode Cc) and no
 *    invisible format characters (Cf: bidi overrides and isolates, zero-width characters, soft
 *    hyphen, BOM) (`odd-characters`); no non-ASCII character that stands for a dot or a slash —
 *    any whose NFKC form holds `.`, `/` or `\` (fullwidth `．` `／` `＼`, the leaders `․` `‥`,
 *    `…`, small full stop `﹒`) and the slash look-alikes NFKC leaves alone (`∕` `⁄` `⧸` `⧹` `∖`
 *    `﹨`) (`lookalike`); no combining mark at the start of a name or right after a dot
 *    (`combining-mark`); no name ending in a space or a dot other than `.` and `..`, since
 *    Windows and many sync tools strip those and two names would mean one file
 *    (`trailing-dot-or-space`); on POSIX no backslash (`backslash`: paths use `/` here).
 * 2. The text is normalised to Unicode NFC (so `cafe\u0301` and `café` name the same directory;
 *    a name stored on disk in another form is reachable by search, not by these tools).
 * 3. `~` and `~/...` mean the home directory; other relative paths are relative to the first
 *    allowed root. `path.resolve` removes `.` and `..` lexically.
 * 4. The longest existing prefix is resolved with `fs.realpath` (symlinks anywhere in it,
 *    including a symlink as the last existing name); the names after it are appended. A dangling
 *    or looping symlink in the way is refused (`dangling-symlink`), since creating through it
 *    would land wherever it points.
 * 5. The real path must be an allowed root or inside one (`outside`).
 * Allowed roots are themselves real paths (resolved once at start). What stays open: a local
 * process that swaps a checked directory for a symlink between the check and the operation
 * (a race no path-based check closes; the model's own tools cannot create symlinks).
 */
import { lstat, realpath } from 'node:fs/promises';
import { homedir } from 'node:os';
import { basename, dirname, isAbsolute, join, resolve, sep } from 'node:path';
import { ToolError } from '../../../protocol/errors';
import type { Logger } from '../types';

/** Longest path text accepted, characters (Linux PATH_MAX is 4096 bytes). */
export const MAX_PATH_CHARS = 4096;

/** Slash look-alikes that NFKC does not map to `/` or `\`. */
const SLASH_LOOKALIKES = new Set(['\u2215', '\u2044', '\u29F8', '\u29F9', '\u2216', '\uFE68']);
/** Control (Cc), format (Cf) and lone surrogate (Cs) code points. */
const CONTROL_OR_FORMAT = /[\p{Cc}\p{Cf}\p{Cs}]/u;
const COMBINING = /\p{M}/u;

/** A path that passed the guard. */
export interface CheckedPath {
  /** What the caller sent. */
  input: string;
  /** After NFC, `~` expansion and `path.resolve` (symlinks not resolved): what the caller meant. */
  lexical: string;
  /** With every existing symlink resolved: where the operation happens. */
  real: string;
  /** The allowed root `real` lies in. */
  root: string;
  /** True when the whole path exists. */
  exists: boolean;
  /** The longest existing part of `real` (`real` itself when it exists). */
  existingPrefix: string;
}

function refuse(input: string, reason: string, message: string, extra: Record<string, unknown> = {}): ToolError {
  return new ToolError('PATH_NOT_ALLOWED', message, { path: input, reason, ...extra });
}

/**
 * Checks the text of a path (step 1 above).
 * @throws ToolError PATH_NOT_ALLOWED with `details.reason` naming the rule.
 */
export function checkPathText(input: string): void {
  if (input.includes('\0')) throw refuse(input, 'nul', 'the path contains a NUL character');
  if (CONTROL_OR_FORMAT.test(input)) {
    throw refuse(input, 'odd-characters', 'the path contains control or invisible formatting characters (e.g. bidi overrides, zero-width characters); send the plain name');
  }
  if (sep === '/' && input.includes('\\')) {
    throw refuse(input, 'backslash', 'the path contains a backslash; paths on this agent use / between names');
  }
  for (const ch of input) {
    if (ch.charCodeAt(0) < 0x80) continue;
    if (SLASH_LOOKALIKES.has(ch) || /[./\\]/.test(ch.normalize('NFKC'))) {
      throw refuse(input, 'lookalike', `the path contains "${ch}" (U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}), which stands for a dot or a slash; use the ASCII characters`, { character: ch });
    }
  }
  for (const name of input.split('/')) {
    if (name === '' || name === '.' || name === '..') continue;
    const first = Array.from(name)[0];
    if (COMBINING.test(first) || /\.\p{M}/u.test(name)) {
      throw refuse(input, 'combining-mark', `the name "${name}" has a combining mark at its start or on a dot`);
    }
    if (/[. ]$/.test(name)) {
      throw refuse(input, 'trailing-dot-or-space', `the name "${name}" ends in a dot or a space; such names are ambiguous (Windows and sync tools strip them)`);
    }
  }
}

/** True when `p` is `root` or inside it (both absolute, normalised). */
export function isInside(p: string, root: string): boolean {
  return p === root || p.startsWith(root.endsWith(sep) ? root : root + sep);
}

/** `~` and `~/x` as the home directory; anything else unchanged. */
export function expandHome(p: string): string {
  return p === '~' ? homedir() : p.startsWith('~/') ? join(homedir(), p.slice(2)) : p;
}

function errno(e: unknown): string | undefined {
  return (e as NodeJS.ErrnoException)?.code;
}

/** The allowed roots of one pack and the check every path argument goes through. */
export class PathGuard {
  private constructor(
    /** Real paths of the allowed roots, in config order. */
    readonly roots: readonly string[],
  ) {}

  /**
   * Resolves the configured roots (`~` expanded, symlinks resolved). A root that does not exist
   * or is not a directory is left out with one warning.
   */
  static async open(paths: readonly string[], log: Logger): Promise<PathGuard> {
    const roots: string[] = [];
    for (const p of paths) {
      const wanted = resolve(expandHome(p.normalize('NFC')));
      try {
        const real = await realpath(wanted);
        if (!(await lstat(real)).isDirectory()) throw Object.assign(new Error('not a directory'), { code: 'ENOTDIR' });
        if (!roots.includes(real)) roots.push(real);
      } catch (e) {
        log.warn(`desktop: allowed path ${p} left out: ${errno(e) === 'ENOENT' ? 'it does not exist' : (e as Error).message}`);
      }
    }
    return new PathGuard(roots);
  }

  /**
   * Checks `input` (see the module comment) and resolves it.
   * @throws ToolError PATH_NOT_ALLOWED (`details.reason`, `details.allowed`), or EXECUTION_FAILED
   *   when a directory on the way cannot be read (EACCES).
   */
  async check(input: string): Promise<CheckedPath> {
    checkPathText(input);
    const text = input.normalize('NFC');
    checkPathText(text);
    if (this.roots.length === 0) throw refuse(input, 'outside', 'no allowed paths are configured on this agent');
    const expanded = expandHome(text);
    const lexical = isAbsolute(expanded) ? resolve(expanded) : resolve(this.roots[0], expanded);
    let existing = lexical;
    const tail: string[] = [];
    for (;;) {
      try {
        await lstat(existing);
        break;
      } catch (e) {
        const code = errno(e);
        if (code !== 'ENOENT' && code !== 'ENOTDIR' && code !== 'ELOOP') {
          throw new ToolError('EXECUTION_FAILED', `cannot look at ${existing}: ${(e as Error).message}`, { path: input, errno: code });
        }
        tail.unshift(basename(existing));
        existing = dirname(existing);
      }
    }
    let realPrefix: string;
    try {
      realPrefix = await realpath(existing);
    } catch (e) {
      throw refuse(input, 'dangling-symlink', `${existing} is a symbolic link that leads nowhere (${errno(e) ?? (e as Error).message}); the path cannot be checked`);
    }
    const real = tail.length ? join(realPrefix, ...tail) : realPrefix;
    const root = this.roots.find((r) => isInside(real, r));
    if (!root) {
      const where = real === lexical ? real : `${real} (${lexical} after following symbolic links)`;
      throw refuse(input, 'outside', `${where} is outside the allowed paths (${this.roots.join(', ')})`, { allowed: [...this.roots] });
    }
    return { input, lexical, real, root, exists: tail.length === 0, existingPrefix: realPrefix };
  }
}
