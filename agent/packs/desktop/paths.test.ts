// The desktop pack's path guard on real files in a temp dir: `..` traversal, symlinks pointing
// outside (to a directory, to a file, dangling), absolute paths elsewhere and odd Unicode are
// refused with PATH_NOT_ALLOWED and a reason; paths inside (also through inside symlinks) resolve
// to their real path.
import { mkdirSync, mkdtempSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { homedir, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import { checkPathText, PathGuard } from './paths';

const base = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-desktop-paths-')));
const root = join(base, 'allowed');
const outside = join(base, 'outside');
const warnings: string[] = [];
const log = { info() {}, warn: (m: string) => { warnings.push(m); }, error() {} };
let guard: PathGuard;

/** The ToolError a refused check throws. */
async function refusal(input: string): Promise<ToolError> {
  const err = await guard.check(input).then(() => undefined, (e: unknown) => e);
  expect(err, `${JSON.stringify(input)} is refused`).toBeInstanceOf(ToolError);
  return err as ToolError;
}

async function reasonOf(input: string): Promise<unknown> {
  const err = await refusal(input);
  expect(err.code).toBe('PATH_NOT_ALLOWED');
  return err.details?.reason;
}

beforeAll(async () => {
  mkdirSync(join(root, 'docs'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret.txt'), 'secret');
  writeFileSync(join(root, 'docs', 'note.txt'), 'note');
  symlinkSync(outside, join(root, 'out-dir'));
  symlinkSync(join(outside, 'secret.txt'), join(root, 'out-file'));
  symlinkSync('docs', join(root, 'in-link'));
  symlinkSync(join(outside, 'nothing-here'), join(root, 'dangling'));
  symlinkSync('loop-b', join(root, 'loop-a'));
  symlinkSync('loop-a', join(root, 'loop-b'));
  writeFileSync(join(base, 'a-file'), 'x');
  guard = await PathGuard.open([root, join(base, 'missing'), join(base, 'a-file')], log);
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('allowed roots', () => {
  it('keeps existing directories as real paths and leaves out the rest with a warning', () => {
    expect(guard.roots).toEqual([root]);
    expect(warnings).toEqual([
      expect.stringContaining(`allowed path ${join(base, 'missing')} left out: it does not exist`),
      expect.stringContaining(`allowed path ${join(base, 'a-file')} left out`),
    ]);
  });

  it('resolves a root given through a symlink and expands ~', async () => {
    symlinkSync(root, join(base, 'root-link'));
    const g = await PathGuard.open([join(base, 'root-link'), '~'], log);
    expect(g.roots).toEqual([root, realpathSync(homedir())]);
  });
});

describe('paths inside', () => {
  it('resolves relative paths against the first root and absolute ones as given', async () => {
    expect(await guard.check('docs')).toMatchObject({ real: join(root, 'docs'), root, exists: true });
    expect(await guard.check(join(root, 'docs', 'new', 'deeper'))).toMatchObject({
      real: join(root, 'docs', 'new', 'deeper'), exists: false, existingPrefix: join(root, 'docs'),
    });
    expect((await guard.check('.')).real).toBe(root);
    expect((await guard.check('docs/..')).real).toBe(root);
  });

  it('follows a symlink that stays inside to its real path', async () => {
    expect(await guard.check('in-link/note.txt')).toMatchObject({ lexical: join(root, 'in-link', 'note.txt'), real: join(root, 'docs', 'note.txt'), exists: true });
    expect((await guard.check('in-link/new')).real).toBe(join(root, 'docs', 'new'));
  });

  it('normalises to NFC: a decomposed é names the composed one', async () => {
    const p = await guard.check('docs/cafe\u0301');
    expect(p.real).toBe(join(root, 'docs', 'caf\u00e9'));
    expect(p.lexical).toBe(join(root, 'docs', 'caf\u00e9'));
  });
});

describe('paths outside', () => {
  it('refuses .. traversal out of the root', async () => {
    expect(await reasonOf('../outside')).toBe('outside');
    expect(await reasonOf('docs/../../outside/secret.txt')).toBe('outside');
    expect(await reasonOf(`${root}/../outside/new-dir`)).toBe('outside');
    expect(await reasonOf('../allowed-not/x')).toBe('outside');
  });

  it('refuses a symlink to a directory outside, and anything through it, existing or not', async () => {
    for (const p of ['out-dir', 'out-dir/secret.txt', 'out-dir/new-dir/sub', 'docs/../out-dir']) {
      const err = await refusal(p);
      expect(err.details).toMatchObject({ reason: 'outside', allowed: [root] });
      expect(err.message).toContain(outside);
    }
  });

  it('refuses a symlink to a file outside', async () => {
    const err = await refusal('out-file');
    expect(err.details?.reason).toBe('outside');
    expect(err.message).toContain(join(outside, 'secret.txt'));
  });

  it('refuses dangling and looping symlinks, and paths through them', async () => {
    expect(await reasonOf('dangling')).toBe('dangling-symlink');
    expect(await reasonOf('dangling/sub')).toBe('dangling-symlink');
    expect(await reasonOf('loop-a/x')).toBe('dangling-symlink');
  });

  it('refuses absolute paths elsewhere, / and ~', async () => {
    for (const p of ['/etc/passwd', '/', outside, base, '~', '~/.ssh']) {
      expect(await reasonOf(p), p).toBe('outside');
    }
  });
});

describe('odd text', () => {
  const cases: Array<[string, string]> = [
    ['docs/a\0b', 'nul'],
    ['\0', 'nul'],
    ['docs/\u202Etxt.exe', 'odd-characters'],
    ['docs/a\u2066b', 'odd-characters'],
    ['docs/\u200Bnote.txt', 'odd-characters'],
    ['docs/\uFEFFx', 'odd-characters'],
    ['docs/x\u0007', 'odd-characters'],
    ['docs/\uD800x', 'odd-characters'],
    ['\u2025/outside', 'lookalike'],
    ['\uFF0E\uFF0E/outside', 'lookalike'],
    ['docs\uFF0F..\uFF0F..', 'lookalike'],
    ['docs/\u2024', 'lookalike'],
    ['\u2215etc\u2215passwd', 'lookalike'],
    ['docs\u2044x', 'lookalike'],
    ['docs/\uFE52\uFE52', 'lookalike'],
    ['docs/\uFF3Cx', 'lookalike'],
    ['docs/\u0301x', 'combining-mark'],
    ['.\u0338./outside', 'combining-mark'],
    ['docs/a.\u0301b', 'combining-mark'],
    ['docs/name ', 'trailing-dot-or-space'],
    ['docs/name.', 'trailing-dot-or-space'],
    ['docs/.../x', 'trailing-dot-or-space'],
    ['..\\outside', 'backslash'],
  ];
  it.each(cases)('%j is refused (%s)', async (input, reason) => {
    expect(await reasonOf(input)).toBe(reason);
    expect(() => checkPathText(input)).toThrow(ToolError);
  });

  it('accepts ordinary non-ASCII names and dot names', () => {
    for (const ok of ['docs/Grüße', 'docs/日本語/メモ.txt', 'docs/.hidden', 'docs/a..b', '../x', 'docs/naïve', 'docs/emoji-😀']) {
      expect(() => checkPathText(ok), ok).not.toThrow();
    }
  });
});
