// The desktop pack's config, and its dry runs through the real agent runtime (as
// test/dry-run.test.ts does for the docker pack): every tool in the catalog that is not
// read-only answers a dry run with a `dryRun: true` preview and changes nothing on disk or in
// the process table; the high-risk delete needs no approval for a dry run while the real call
// is refused without one. A new desktop tool with side effects fails this test until it gets
// dry-run arguments here.
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, realpathSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, toolErrorOf } from '../../../protocol';
import { startBroker, type EmbeddedBroker } from '../../../protocol/broker';
import { validateConfig } from '../../config';
import { startAgent, type RunningAgent } from '../../runtime';
import { until } from '../../../test/support/until';
import { DesktopConfigSchema, desktopPack } from './index';

const base = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-desktop-agent-')));
const root = join(base, 'home');
const marker = join(root, 'started.txt');
const WRITE_MARKER = "require('fs').writeFileSync(process.argv[1], 'ran')";
const quiet = { info() {}, warn() {}, error() {} };

/** Dry-run arguments of each desktop tool with side effects; a tool missing here fails the test. */
const DRY_RUN_ARGS: Record<string, Record<string, unknown>> = {
  desktop_create_directory: { path: 'new/deeper' },
  desktop_delete_directory: { path: 'project', recursive: true },
  desktop_open_app: { app: 'marker', args: ['started.txt'] },
};

function tree(): string[] {
  return readdirSync(root, { recursive: true, encoding: 'utf8' }).sort();
}

describe('desktop pack config', () => {
  it('fills defaults and rejects unknown keys and relative roots', () => {
    expect(DesktopConfigSchema.parse({})).toEqual({
      allowedPaths: [], searchMaxResults: 200, searchMaxEntries: 100_000, apps: {},
      fetch: { urls: [], privateRanges: [], maxBytes: 262_144, maxRedirects: 5, timeoutMs: 20_000 },
    });
    expect(DesktopConfigSchema.safeParse({ allowedPath: ['/x'] }).success).toBe(false);
    expect(DesktopConfigSchema.safeParse({ allowedPaths: ['docs'] }).success).toBe(false);
    expect(DesktopConfigSchema.safeParse({ apps: { 'bad id!': { command: 'x' } } }).success).toBe(false);
    expect(DesktopConfigSchema.safeParse({ apps: { ed: { command: 'x', shell: true } } }).success).toBe(false);
  });

  it('leaves out the tools whose section is empty; device info is always there', async () => {
    const warnings: string[] = [];
    const r = await desktopPack.create(DesktopConfigSchema.parse({}), { agentId: 'd', log: { ...quiet, warn: (m) => { warnings.push(m); } }, events: new EventEmitter() });
    expect('tools' in r && r.tools.map((t) => t.name)).toEqual(['desktop_get_device_info']);
    expect(warnings).toEqual(['desktop: allowedPaths is empty, so the file tools are left out']);
  });
});

describe('desktop dry runs through the agent', () => {
  let broker: EmbeddedBroker;
  let agent: RunningAgent;
  let caller: RpcCaller;

  beforeAll(async () => {
    mkdirSync(join(root, 'project', 'src'), { recursive: true });
    writeFileSync(join(root, 'project', 'src', 'main.c'), 'int main;');
    broker = await startBroker({ port: 0 });
    const cfg = validateConfig({
      version: 1,
      agent: { id: 'desk' },
      broker: { url: broker.url },
      packs: {
        desktop: {
          allowedPaths: [root],
          apps: { marker: { command: process.execPath, args: ['-e', WRITE_MARKER], pathArgs: true } },
          fetch: { urls: ['http://127.0.0.1:9/'] },
        },
      },
    }, 'desk.yaml', base);
    agent = await startAgent(cfg, quiet);
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'desktest' });
    await caller.start();
    await until(() => caller.agent('desk')?.ready, 'the agent');
  });

  afterAll(async () => {
    await caller?.stop();
    await agent?.stop();
    await broker?.close();
    rmSync(base, { recursive: true, force: true });
  });

  it('offers all six tools with their risk levels', () => {
    const tools = caller.agent('desk')!.catalog!.tools;
    expect(Object.fromEntries(tools.map((t) => [t.name, [t.annotations.risk, t.annotations.readOnlyHint, t.annotations.destructiveHint]]))).toEqual({
      desktop_create_directory: ['medium', false, false],
      desktop_delete_directory: ['high', false, true],
      desktop_search_files: ['low', true, false],
      desktop_get_device_info: ['low', true, false],
      desktop_open_app: ['medium', false, false],
      desktop_fetch_webpage: ['low', true, false],
    });
  });

  it('answers each tool with side effects with a preview and changes nothing', async () => {
    const before = tree();
    const changing = caller.agent('desk')!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint);
    expect(changing.map((t) => t.name).sort()).toEqual(Object.keys(DRY_RUN_ARGS).sort());
    for (const tool of changing) {
      const r = await caller.call('desk', tool.name, DRY_RUN_ARGS[tool.name], { dryRun: true });
      expect(r.isError, `${tool.name}: ${JSON.stringify(r)}`).toBe(false);
      expect(r.structuredContent, tool.name).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
    }
    expect(tree()).toEqual(before);
    // a real start of the same app: once its marker is there, a start by the dry run would have written it too
    const real = await caller.call('desk', 'desktop_open_app', { app: 'marker', args: ['real.txt'] });
    expect(real.isError).toBe(false);
    await until(() => existsSync(join(root, 'real.txt')), 'the marker of the real start');
    expect(existsSync(marker)).toBe(false);
  });

  it('needs no approval for the high-risk delete dry run, and refuses the real call without one', async () => {
    const dry = await caller.call('desk', 'desktop_delete_directory', { path: 'project', recursive: true }, { dryRun: true });
    expect(dry.structuredContent).toMatchObject({ dryRun: true, files: 1, directories: 1, bytes: 9 });
    const real = await caller.call('desk', 'desktop_delete_directory', { path: 'project', recursive: true });
    expect(toolErrorOf(real)).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(existsSync(join(root, 'project', 'src', 'main.c'))).toBe(true);
  });

  it('path refusals reach the caller as PATH_NOT_ALLOWED with the reason', async () => {
    const r = await caller.call('desk', 'desktop_create_directory', { path: '\uFF0E\uFF0E/escape' });
    expect(toolErrorOf(r)).toMatchObject({ code: 'PATH_NOT_ALLOWED', details: { reason: 'lookalike' } });
    const out = await caller.call('desk', 'desktop_search_files', { root: '../', pattern: '*' });
    expect(toolErrorOf(out)).toMatchObject({ code: 'PATH_NOT_ALLOWED', details: { reason: 'outside' } });
  });
});
