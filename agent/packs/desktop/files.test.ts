// The desktop pack's file tools on real files in a temp dir, called as the agent calls them
// (arguments parsed by the tool's zod schema): create and delete with dry runs that change
// nothing, the allowed root never deleted, symlinks never followed out, search by glob with
// maxResults, and the glob matcher itself.
import { EventEmitter } from 'node:events';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import type { ToolContext, ToolDefinition } from '../../../protocol/tool';
import { compileGlob } from './glob';
import { DesktopConfigSchema, desktopPack } from './index';

const base = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-desktop-files-')));
const root = join(base, 'home');
const outside = join(base, 'outside');
let tools: ToolDefinition[];

function toolCtx(over: Partial<ToolContext> = {}): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {}, ...over };
}

async function call(name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<any> {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name}`);
  return tool.execute(tool.input.parse(args), toolCtx(over));
}

async function callError(name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<ToolError> {
  const err = await call(name, args, over).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

/** Every path under `dir`, sorted (what a dry run must leave as it was). */
function tree(dir: string): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' }).sort();
}

/** A project tree: 3 files (5 + 6 + 0 bytes), 2 subdirectories, one symlink to the outside. */
function makeProject(dir: string): void {
  mkdirSync(join(dir, 'src', 'deep'), { recursive: true });
  writeFileSync(join(dir, 'a.txt'), 'hello');
  writeFileSync(join(dir, 'src', 'b.ts'), 'export');
  writeFileSync(join(dir, 'src', 'deep', 'empty.md'), '');
  symlinkSync(outside, join(dir, 'src', 'to-outside'));
}

beforeAll(async () => {
  mkdirSync(root);
  mkdirSync(outside);
  writeFileSync(join(outside, 'keep.txt'), 'must survive');
  const config = DesktopConfigSchema.parse({ allowedPaths: [root], searchMaxResults: 5 });
  const result = await desktopPack.create(config, { agentId: 'desk', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() });
  if ('unavailable' in result) throw new Error(result.unavailable);
  tools = result.tools;
});

beforeEach(() => {
  for (const name of readdirSync(root)) rmSync(join(root, name), { recursive: true, force: true });
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('desktop_create_directory', () => {
  it('previews in a dry run, then creates with parents; an existing one is left alone', async () => {
    const dry = await call('desktop_create_directory', { path: 'projects/2026/notes' }, { dryRun: true });
    expect(dry).toEqual({
      dryRun: true, path: join(root, 'projects/2026/notes'),
      create: [join(root, 'projects'), join(root, 'projects/2026'), join(root, 'projects/2026/notes')],
      wouldDo: expect.stringMatching(/^create .*projects, .*projects\/2026, .*projects\/2026\/notes$/),
    });
    expect(tree(root)).toEqual([]);
    const made = await call('desktop_create_directory', { path: 'projects/2026/notes' });
    expect(made).toMatchObject({ path: join(root, 'projects/2026/notes'), created: true });
    expect(lstatSync(join(root, 'projects/2026/notes')).isDirectory()).toBe(true);
    expect(await call('desktop_create_directory', { path: join(root, 'projects') })).toEqual({ path: join(root, 'projects'), created: false });
  });

  it('refuses paths outside, through an outside symlink too, and creates nothing there', async () => {
    symlinkSync(outside, join(root, 'link-out'));
    for (const path of ['../outside/new', 'link-out/new', join(outside, 'new')]) {
      expect((await callError('desktop_create_directory', { path })).code).toBe('PATH_NOT_ALLOWED');
    }
    expect(existsSync(join(outside, 'new'))).toBe(false);
  });

  it('fails over an existing file', async () => {
    writeFileSync(join(root, 'file'), 'x');
    expect((await callError('desktop_create_directory', { path: 'file' })).message).toMatch(/exists and is not a directory/);
    expect((await callError('desktop_create_directory', { path: 'file/sub' })).message).toMatch(/is not a directory, so nothing can be created/);
  });
});

describe('desktop_delete_directory', () => {
  it('dry run counts what would go and changes nothing; the real call deletes it', async () => {
    makeProject(join(root, 'proj'));
    const before = tree(root);
    const dry = await call('desktop_delete_directory', { path: 'proj', recursive: true }, { dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, path: join(root, 'proj'), files: 3, directories: 2, symlinks: 1, other: 0, bytes: 11 });
    expect(dry.wouldDo).toBe(`delete ${join(root, 'proj')} and everything in it: 3 files (11 bytes), 2 subdirectories, 1 symbolic link (removed, not followed)`);
    expect(tree(root)).toEqual(before);
    const done = await call('desktop_delete_directory', { path: 'proj', recursive: true });
    expect(done).toMatchObject({ path: join(root, 'proj'), deleted: true, files: 3, directories: 2, bytes: 11 });
    expect(existsSync(join(root, 'proj'))).toBe(false);
    expect(tree(outside)).toEqual(['keep.txt']);
  });

  it('without recursive deletes only an empty directory', async () => {
    makeProject(join(root, 'proj'));
    mkdirSync(join(root, 'empty'));
    const err = await callError('desktop_delete_directory', { path: 'proj' });
    expect(err.code).toBe('EXECUTION_FAILED');
    expect(err.message).toMatch(/is not empty \(3 files \(11 bytes\), 2 subdirectories.*pass recursive: true/);
    expect((await callError('desktop_delete_directory', { path: 'proj' }, { dryRun: true })).message).toMatch(/is not empty/);
    expect(existsSync(join(root, 'proj', 'a.txt'))).toBe(true);
    expect(await call('desktop_delete_directory', { path: 'empty' })).toMatchObject({ deleted: true, files: 0, directories: 0 });
    expect(existsSync(join(root, 'empty'))).toBe(false);
  });

  it('never deletes the allowed root, in any spelling', async () => {
    for (const path of [root, '.', 'x/..', `${root}/`]) {
      const err = await callError('desktop_delete_directory', { path, recursive: true }, { dryRun: path === '.' });
      expect(err.code).toBe('PATH_NOT_ALLOWED');
      expect(err.details?.reason).toBe('root');
    }
    expect(existsSync(root)).toBe(true);
  });

  it('refuses a symlink to a directory outside, and does not delete a link to an inside directory', async () => {
    symlinkSync(outside, join(root, 'link-out'));
    mkdirSync(join(root, 'real'));
    symlinkSync(join(root, 'real'), join(root, 'link-in'));
    expect((await callError('desktop_delete_directory', { path: 'link-out', recursive: true })).code).toBe('PATH_NOT_ALLOWED');
    expect((await callError('desktop_delete_directory', { path: '../outside', recursive: true })).code).toBe('PATH_NOT_ALLOWED');
    expect((await callError('desktop_delete_directory', { path: 'link-in', recursive: true })).message).toMatch(/is a symbolic link, not a directory/);
    expect(existsSync(join(root, 'real'))).toBe(true);
    expect(tree(outside)).toEqual(['keep.txt']);
  });

  it('fails for a missing directory and for a file', async () => {
    writeFileSync(join(root, 'file'), 'x');
    expect((await callError('desktop_delete_directory', { path: 'nope' })).message).toMatch(/does not exist/);
    expect((await callError('desktop_delete_directory', { path: 'file' })).message).toMatch(/is not a directory/);
  });
});

describe('desktop_search_files', () => {
  beforeEach(() => makeProject(join(root, 'proj')));

  it('finds names at any depth, or relative paths with **, without following symlinks', async () => {
    const r = await call('desktop_search_files', { root: 'proj', pattern: '*.ts' });
    expect(r).toMatchObject({ root: join(root, 'proj'), truncated: false });
    expect(r.matches).toEqual([{ path: join(root, 'proj/src/b.ts'), relativePath: 'src/b.ts', type: 'file', sizeBytes: 6, modified: expect.any(String) }]);
    const all = await call('desktop_search_files', { root: 'proj', pattern: '**' });
    expect(all.matches.map((m: any) => m.relativePath)).toEqual(['a.txt', 'src', 'src/b.ts', 'src/deep', 'src/to-outside']);
    expect(all.matches.find((m: any) => m.relativePath === 'src/to-outside').type).toBe('symlink');
    const deep = await call('desktop_search_files', { root: join(root, 'proj'), pattern: 'src/**/*.md' });
    expect(deep.matches.map((m: any) => m.relativePath)).toEqual(['src/deep/empty.md']);
    const dirs = await call('desktop_search_files', { root: 'proj', pattern: '*', type: 'directory' });
    expect(dirs.matches.map((m: any) => m.relativePath)).toEqual(['src', 'src/deep']);
  });

  it('stops at maxResults and says so; maxResults above the configured cap is refused', async () => {
    for (let i = 0; i < 8; i++) writeFileSync(join(root, 'proj', `n${i}.log`), String(i));
    const r = await call('desktop_search_files', { root: 'proj', pattern: '*.log', maxResults: 3 });
    expect(r.matches.map((m: any) => m.relativePath)).toEqual(['n0.log', 'n1.log', 'n2.log']);
    expect(r.truncated).toBe('maxResults');
    const capped = await call('desktop_search_files', { root: 'proj', pattern: '*.log', maxResults: 5 });
    expect(capped.matches).toHaveLength(5);
    const search = tools.find((t) => t.name === 'desktop_search_files')!;
    expect(search.input.safeParse({ root: 'proj', pattern: '*', maxResults: 6 }).success).toBe(false);
  });

  it('refuses a root outside the allowed paths, and a bad pattern', async () => {
    expect((await callError('desktop_search_files', { root: 'proj/src/to-outside', pattern: '*' })).code).toBe('PATH_NOT_ALLOWED');
    expect((await callError('desktop_search_files', { root: '/', pattern: '*' })).code).toBe('PATH_NOT_ALLOWED');
    expect((await callError('desktop_search_files', { root: 'proj', pattern: '/etc/*' })).code).toBe('INVALID_ARGUMENTS');
  });
});

describe('glob matcher', () => {
  const m = (pattern: string, path: string) => compileGlob(pattern).matches(path);

  it('matches *, ?, sets, escapes and ** as documented', () => {
    expect(m('*.txt', 'a/b/c.txt')).toBe(true);
    expect(m('*.txt', 'a/b/c.txt.bak')).toBe(false);
    expect(m('?.md', 'x/a.md')).toBe(true);
    expect(m('?.md', 'ab.md')).toBe(false);
    expect(m('[a-c]*', 'beta')).toBe(true);
    expect(m('[!a-c]*', 'beta')).toBe(false);
    expect(m('[^a-c]*', 'delta')).toBe(true);
    expect(m('\\*', '*')).toBe(true);
    expect(m('\\*', 'x')).toBe(false);
    expect(m('[x', '[x')).toBe(true);
    expect(m('src/*.ts', 'src/a.ts')).toBe(true);
    expect(m('src/*.ts', 'src/sub/a.ts')).toBe(false);
    expect(m('src/**/*.ts', 'src/a.ts')).toBe(true);
    expect(m('src/**/*.ts', 'src/a/b/c.ts')).toBe(true);
    expect(m('**/b/*', 'a/b/c')).toBe(true);
    expect(m('a/**', 'a')).toBe(true);
    expect(m('a/**', 'b/c')).toBe(false);
    expect(m('*', '😀.png')).toBe(true);
    expect(m('?.png', '😀.png')).toBe(true);
  });

  it('refuses empty, absolute and empty-segment patterns', () => {
    for (const bad of ['', '/x', 'a//b', 'a\0b', 'x'.repeat(257)]) expect(() => compileGlob(bad), bad).toThrow();
  });

  it('handles a pathological pattern in linear-ish time', () => {
    const glob = compileGlob(`${'*a'.repeat(60)}b`);
    expect(glob.matches('a'.repeat(4000))).toBe(false);
  });
});
