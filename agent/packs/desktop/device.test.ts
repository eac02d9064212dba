// desktop_get_device_info and desktop_open_app on this machine: the app allowlist maps ids to
// real programs (node writing a marker file, so the test sees that the process really ran),
// arguments only as the app allows, paths checked like every path, and never a shell.
import { EventEmitter } from 'node:events';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync } from 'node:fs';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import type { ToolContext, ToolDefinition } from '../../../protocol/tool';
import { until } from '../../../test/support/until';
import { DesktopConfigSchema, desktopPack } from './index';

const base = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-desktop-device-')));
const root = join(base, 'home');
/** Writes "ran <extra args>" to the file named by its first argument. */
const WRITE_MARKER = "require('fs').writeFileSync(process.argv[1], 'ran' + process.argv.slice(2).map((a) => ' ' + a).join(''))";
let tools: ToolDefinition[];

function toolCtx(over: Partial<ToolContext> = {}): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {}, ...over };
}

async function call(name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<any> {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name}`);
  return tool.execute(tool.input.parse(args), toolCtx(over));
}

async function callError(name: string, args: unknown): Promise<ToolError> {
  const err = await call(name, args).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

beforeAll(async () => {
  mkdirSync(join(root, 'out'), { recursive: true });
  const config = DesktopConfigSchema.parse({
    allowedPaths: [root],
    apps: {
      marker: { command: process.execPath, args: ['-e', WRITE_MARKER], allowedArgs: ['--loud'], pathArgs: true, description: 'writes a marker' },
      quiet: { command: '/bin/true' },
      missing: { command: join(base, 'no-such-program') },
    },
  });
  const result = await desktopPack.create(config, { agentId: 'desk', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() });
  if ('unavailable' in result) throw new Error(result.unavailable);
  tools = result.tools;
});

afterAll(() => rmSync(base, { recursive: true, force: true }));

describe('desktop_get_device_info', () => {
  it('reports host, OS, CPU, memory and the file system under each allowed path', async () => {
    const info = await call('desktop_get_device_info', {});
    expect(info).toMatchObject({ hostname: hostname(), platform: process.platform, arch: process.arch });
    expect(info.cpu.count).toBeGreaterThan(0);
    expect(info.memory.totalBytes).toBeGreaterThan(info.memory.freeBytes);
    expect(info.uptimeSeconds).toBeGreaterThan(0);
    expect(info.storage).toEqual([{ path: root, totalBytes: expect.any(Number), freeBytes: expect.any(Number), availableBytes: expect.any(Number) }]);
    expect(info.storage[0].totalBytes).toBeGreaterThan(0);
  });
});

describe('desktop_open_app', () => {
  it('lists the configured apps in its description', () => {
    const tool = tools.find((t) => t.name === 'desktop_open_app')!;
    expect(tool.risk).toBe('medium');
    expect(tool.description).toContain('marker (writes a marker), quiet, missing');
  });

  it('starts the app, which really runs, with a path argument inside and an allowed literal', async () => {
    const marker = join(root, 'out', 'marker.txt');
    const r = await call('desktop_open_app', { app: 'marker', args: ['out/marker.txt', '--loud'] });
    expect(r).toEqual({ app: 'marker', started: true, pid: expect.any(Number), command: process.execPath, args: ['-e', WRITE_MARKER, marker, '--loud'] });
    await until(() => existsSync(marker) && readFileSync(marker, 'utf8') === 'ran --loud', 'the marker file the app writes');
  });

  it('a dry run shows the command and starts nothing', async () => {
    const marker = join(root, 'out', 'dry.txt');
    const r = await call('desktop_open_app', { app: 'marker', args: ['out/dry.txt'] }, { dryRun: true });
    expect(r).toMatchObject({ dryRun: true, wouldDo: `start marker: ${process.execPath} -e ${WRITE_MARKER} ${marker}` });
    // a real start after it: once its marker is there, a process the dry run started would have written too
    await call('desktop_open_app', { app: 'marker', args: ['out/after-dry.txt'] });
    await until(() => existsSync(join(root, 'out', 'after-dry.txt')), 'the marker of the real start');
    expect(existsSync(marker)).toBe(false);
  });

  it('passes arguments without a shell: metacharacters stay part of a file name', async () => {
    await call('desktop_open_app', { app: 'marker', args: ['out/$(touch pwned); echo x'] });
    await until(() => existsSync(join(root, 'out', '$(touch pwned); echo x')), 'the literally named marker');
    expect(existsSync(join(root, 'out', 'pwned'))).toBe(false);
    expect(existsSync(join(process.env.HOME ?? base, 'pwned'))).toBe(false);
  });

  it('refuses unknown app ids, arguments the app does not take, and paths outside', async () => {
    for (const app of ['firefox', '__proto__', 'constructor']) {
      const err = await callError('desktop_open_app', { app });
      expect(err.code).toBe('APP_NOT_ALLOWED');
      expect(err.details).toMatchObject({ app, allowed: ['marker', 'quiet', 'missing'] });
    }
    expect((await call('desktop_open_app', { app: 'quiet' })).started).toBe(true);
    const arg = await callError('desktop_open_app', { app: 'quiet', args: ['--help'] });
    expect(arg).toMatchObject({ code: 'APP_NOT_ALLOWED', details: { argument: '--help' } });
    const outside = await callError('desktop_open_app', { app: 'marker', args: ['../escaped.txt'] });
    expect(outside.code).toBe('PATH_NOT_ALLOWED');
    expect(existsSync(join(base, 'escaped.txt'))).toBe(false);
  });

  it('fails with EXECUTION_FAILED when the program cannot start', async () => {
    const err = await callError('desktop_open_app', { app: 'missing' });
    expect(err.code).toBe('EXECUTION_FAILED');
    expect(err.message).toMatch(/app missing did not start: .*ENOENT/);
  });
});
