// McpServerMount against real MCP servers: @modelcontextprotocol/server-filesystem (stdio, a temp
// folder) and @modelcontextprotocol/server-everything (stdio and Streamable HTTP). No mocks.
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { McpServerMount, mcpAgentId } from './client';
import { toolErrorOf } from '../protocol/errors';
import { freePort } from '../test/support/mosquitto';
import { until } from '../test/support/until';

const FS_SERVER = join(__dirname, '../node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
const EVERYTHING = join(__dirname, '../node_modules/@modelcontextprotocol/server-everything/dist/index.js');
const missing = [FS_SERVER, EVERYTHING].filter((f) => !existsSync(f));
if (missing.length && process.env.CI === 'true') throw new Error(`MCP test servers missing: ${missing.join(', ')}; run npm ci`);
const skip = missing.length > 0;
if (skip) console.log(`skipping MCP client tests: ${missing.join(', ')} not installed`);

describe('mcpAgentId', () => {
  it('prefixes mcp- and rejects names that make no valid id, naming the field', () => {
    expect(mcpAgentId('files')).toBe('mcp-files');
    expect(() => mcpAgentId('a b')).toThrow(/^name must be/);
    expect(() => mcpAgentId('x'.repeat(61))).toThrow(/^name must be/);
    expect(() => new McpServerMount({ name: 'ok', transport: { type: 'http', url: 'ftp://x' } })).toThrow(/transport\.url/);
    expect(() => new McpServerMount({ name: 'ok', transport: { type: 'stdio', command: 'node' }, risks: { a: 'huge' as never } })).toThrow(/risks\.a/);
  });
});

describe.skipIf(skip)('filesystem server over stdio', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-fs-'));
  writeFileSync(join(dir, 'hello.txt'), 'hello from the demo folder\n');
  const mount = new McpServerMount({
    name: 'files', transport: { type: 'stdio', command: process.execPath, args: [FS_SERVER, dir] },
    risks: { list_directory: 'low', read_text_file: 'medium' }, backoffMinMs: 200, backoffMaxMs: 1000,
  });
  const changes: number[] = [];
  mount.on('change', () => changes.push(mount.view().status!.catalogRev!));

  beforeAll(async () => {
    await mount.start();
    await until(() => mount.online, 'the filesystem server online', 20_000);
  });
  afterAll(() => mount.stop());

  it('appears as an mcp agent with a protocol status and catalog', () => {
    const v = mount.view();
    expect(v).toMatchObject({ id: 'mcp-files', online: true, ready: true });
    expect(v.status).toMatchObject({ state: 'online', agent: 'mcp-files', kind: 'mcp', catalogRev: v.catalog!.rev });
    expect(v.catalog!.agent).toMatchObject({ id: 'mcp-files', kind: 'mcp' });
    const names = v.catalog!.tools.map((t) => t.name);
    expect(names).toEqual(expect.arrayContaining(['read_text_file', 'list_directory', 'write_file', 'move_file']));
  });

  it('every tool is high risk unless overridden; the server\'s own hints stay visible', () => {
    const tools = Object.fromEntries(mount.view().catalog!.tools.map((t) => [t.name, t]));
    expect(tools.list_directory.annotations.risk).toBe('low');
    expect(tools.read_text_file.annotations.risk).toBe('medium');
    expect(tools.write_file.annotations.risk).toBe('high');
    expect(tools.move_file.annotations.risk).toBe('high');
    // the server says read_text_file is read-only and write_file is not: hints, shown, not trusted
    expect(tools.read_text_file.annotations.readOnlyHint).toBe(true);
    expect(tools.write_file.annotations.readOnlyHint).toBe(false);
    expect(tools.read_text_file.inputSchema).toMatchObject({ type: 'object', properties: { path: expect.any(Object) } });
  });

  it('calls a tool and passes its content through', async () => {
    const r = await mount.call('read_text_file', { path: join(dir, 'hello.txt') }, { timeoutMs: 10_000 });
    expect(r.isError).toBe(false);
    expect(JSON.stringify(r.content)).toContain('hello from the demo folder');
    const w = await mount.call('write_file', { path: join(dir, 'new.txt'), content: 'written by ToolMesh' });
    expect(w.isError).toBe(false);
    expect(readFileSync(join(dir, 'new.txt'), 'utf8')).toBe('written by ToolMesh');
  });

  it('stays confined: a path outside the folder is the server\'s error, EXECUTION_FAILED', async () => {
    const r = await mount.call('read_text_file', { path: '/etc/hostname' });
    expect(r.isError).toBe(true);
    expect(toolErrorOf(r)).toMatchObject({ code: 'EXECUTION_FAILED', message: expect.stringMatching(/denied|outside/i) });
  });

  it('unknown tool → TOOL_NOT_FOUND; bad arguments → an error result; too deep → INVALID_ARGUMENTS unsent; dry run → NOT_SUPPORTED', async () => {
    expect(toolErrorOf(await mount.call('no_such_tool', {}))?.code).toBe('TOOL_NOT_FOUND');
    const bad = await mount.call('read_text_file', { path: 42 });
    expect(bad.isError).toBe(true);
    expect(toolErrorOf(bad)!.message).toMatch(/path|string|invalid/i);
    let deep: Record<string, unknown> = {};
    const root = deep;
    for (let i = 0; i < 70; i++) deep = (deep.a = {}) as Record<string, unknown>;
    expect(toolErrorOf(await mount.call('read_text_file', root))).toMatchObject({ code: 'INVALID_ARGUMENTS', details: { limit: 'maxDepth' } });
    expect(toolErrorOf(await mount.call('write_file', { path: join(dir, 'dry.txt'), content: 'x' }, { dryRun: true }))?.code).toBe('NOT_SUPPORTED');
    expect(existsSync(join(dir, 'dry.txt'))).toBe(false);
  });

  it('kill -9 of the server: offline, then back online as a new instance after the restart', async () => {
    const pid = mount.pid!;
    expect(pid).toBeGreaterThan(0);
    const before = mount.view();
    process.kill(pid, 'SIGKILL');
    await until(() => !mount.online, 'the mount offline after kill -9', 10_000);
    expect(mount.view().status!.state).toBe('offline');
    expect(toolErrorOf(await mount.call('list_directory', { path: dir }))).toMatchObject({ code: 'AGENT_OFFLINE', details: { outcome: 'not_sent' } });
    await until(() => mount.online, 'the mount back online', 20_000);
    const after = mount.view();
    expect(mount.pid).not.toBe(pid);
    expect(after.status!.instance).not.toBe(before.status!.instance);
    expect(after.catalog!.rev).toBeGreaterThan(before.catalog!.rev);
    const r = await mount.call('list_directory', { path: dir });
    expect(JSON.stringify(r.content)).toContain('hello.txt');
  });

  it('stop() ends the child process', async () => {
    const pid = mount.pid!;
    await mount.stop();
    expect(mount.view().status!.state).toBe('offline');
    await until(() => {
      try {
        process.kill(pid, 0);
        return false;
      } catch {
        return true;
      }
    }, 'the server process gone', 10_000);
  });
});

function everythingTests(label: string, make: () => Promise<McpServerMount>) {
  describe.skipIf(skip)(`everything server (${label})`, () => {
    let mount: McpServerMount;
    beforeAll(async () => {
      mount = await make();
      await mount.start();
      await until(() => mount.online, 'the everything server online', 20_000);
    });
    afterAll(() => mount?.stop());

    it('lists its tools (all pages), high risk with the server\'s hints', () => {
      const tools = Object.fromEntries(mount.view().catalog!.tools.map((t) => [t.name, t]));
      expect(Object.keys(tools)).toEqual(expect.arrayContaining(['echo', 'get-tiny-image', 'trigger-long-running-operation', 'get-structured-content']));
      expect(tools['get-tiny-image'].annotations).toMatchObject({ risk: 'high', readOnlyHint: true, destructiveHint: false });
    });

    it('echo', async () => {
      const r = await mount.call('echo', { message: 'hi there' });
      expect(r).toMatchObject({ isError: false, content: [{ type: 'text', text: 'Echo: hi there' }] });
    });

    it('an image passes through', async () => {
      const r = await mount.call('get-tiny-image', {});
      const img = r.content.find((c) => c.type === 'image') as { data: string; mimeType: string };
      expect(img.mimeType).toBe('image/png');
      expect(Buffer.from(img.data, 'base64').subarray(1, 4).toString()).toBe('PNG');
    });

    it('structured content passes through', async () => {
      const r = await mount.call('get-structured-content', { location: 'New York' });
      expect(r.isError).toBe(false);
      expect(r.structuredContent).toMatchObject({ temperature: expect.any(Number) });
    });

    it('progress reaches onProgress and restarts the idle timeout', async () => {
      const seen: Array<{ progress: number; total?: number }> = [];
      const started = Date.now();
      // 1.5 s in 5 steps with an idle budget of 800 ms: only the progress keeps it alive
      const r = await mount.call('trigger-long-running-operation', { duration: 1.5, steps: 5 }, { timeoutMs: 800, onProgress: (p) => seen.push(p) });
      expect(r.isError).toBe(false);
      expect(Date.now() - started).toBeGreaterThan(1400);
      // the last report races the result over stdio; a report after the result is dropped by the SDK
      expect(seen.map((p) => p.progress).slice(0, 4)).toEqual([1, 2, 3, 4]);
      expect(seen[0]).toMatchObject({ total: 5, progressToken: expect.any(String) });
    });

    it('cancel → CANCELLED; a timeout without progress → TIMEOUT', async () => {
      const ac = new AbortController();
      setTimeout(() => ac.abort(), 300);
      const r = await mount.call('trigger-long-running-operation', { duration: 5, steps: 1 }, { signal: ac.signal });
      expect(toolErrorOf(r)?.code).toBe('CANCELLED');
      const t = await mount.call('trigger-long-running-operation', { duration: 3, steps: 1 }, { timeoutMs: 300 });
      expect(toolErrorOf(t)?.code).toBe('TIMEOUT');
      expect(mount.online).toBe(true);
    });

    it('bad arguments are the server\'s error result', async () => {
      const r = await mount.call('get-sum', { a: 'one', b: 2 });
      expect(r.isError).toBe(true);
      expect(toolErrorOf(r)!.message).toMatch(/invalid|expected/i);
    });
  });
}

everythingTests('stdio', async () => new McpServerMount({ name: 'everything', transport: { type: 'stdio', command: process.execPath, args: [EVERYTHING, 'stdio'] } }));

let httpServer: ChildProcess | undefined;
let httpLog = '';
everythingTests('Streamable HTTP', async () => {
  const port = await freePort();
  httpServer = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
  httpServer.stdout!.on('data', (d) => (httpLog += d));
  httpServer.stderr!.on('data', (d) => (httpLog += d));
  await until(() => /listening on port/.test(httpLog), `the HTTP server; its output: ${httpLog}`, 20_000);
  return new McpServerMount({ name: 'everything-http', transport: { type: 'http', url: `http://127.0.0.1:${port}/mcp`, token: 'not-checked-by-this-server' } });
});
afterAll(() => {
  httpServer?.kill('SIGKILL');
});

describe('paged server (the SDK\'s own Server): tools/list pages and list_changed', () => {
  const mount = new McpServerMount({ name: 'paged', transport: { type: 'stdio', command: process.execPath, args: [join(__dirname, 'fixtures/paged-server.mjs')] }, risks: { alpha: 'low' } });
  afterAll(() => mount.stop());

  it('follows nextCursor to the last page, then refetches on notifications/tools/list_changed and emits change', async () => {
    await mount.start();
    await until(() => mount.online, 'the paged server online', 20_000);
    const v = mount.view();
    expect(v.catalog!.tools.map((t) => t.name)).toEqual(['alpha', 'beta', 'gamma', 'grow', 'delta']);
    expect(v.catalog!.agent).toMatchObject({ name: 'paged', version: '1.2.3' });
    expect(v.catalog!.tools.map((t) => t.annotations.risk)).toEqual(['low', 'high', 'high', 'high', 'high']);
    let changed = 0;
    mount.on('change', () => changed++);
    const r = await mount.call('grow', {});
    expect(r.content).toEqual([{ type: 'text', text: 'added grown_5' }]);
    await until(() => mount.view().catalog!.tools.some((t) => t.name === 'grown_5'), 'the new tool in the catalog');
    expect(changed).toBeGreaterThan(0);
    const after = mount.view();
    expect(after.catalog!.rev).toBeGreaterThan(v.catalog!.rev);
    expect(after.status!.catalogRev).toBe(after.catalog!.rev);
    expect(after.status!.instance, 'same connection').toBe(v.status!.instance);
    expect((await mount.call('grown_5', {})).content).toEqual([{ type: 'text', text: 'grown_5 ran' }]);
  });
});

describe.skipIf(skip)('Streamable HTTP server that goes away', () => {
  let server: ChildProcess | undefined;
  let port = 0;
  const startServer = async () => {
    let log = '';
    server = spawn(process.execPath, [EVERYTHING, 'streamableHttp'], { env: { ...process.env, PORT: String(port) }, stdio: ['ignore', 'pipe', 'pipe'] });
    server.stdout!.on('data', (d) => (log += d));
    server.stderr!.on('data', (d) => (log += d));
    await until(() => /listening on port/.test(log), `the HTTP server; its output: ${log}`, 20_000);
  };
  let mount: McpServerMount;
  afterAll(async () => {
    await mount?.stop();
    server?.kill('SIGKILL');
  });

  it('shows offline after kill -9 (the ping notices), and online again as a new instance once the server is back', async () => {
    port = await freePort();
    await startServer();
    mount = new McpServerMount({ name: 'gone', transport: { type: 'http', url: `http://127.0.0.1:${port}/mcp` }, pingIntervalMs: 200, backoffMinMs: 200, backoffMaxMs: 500 });
    await mount.start();
    await until(() => mount.online, 'online', 20_000);
    const first = mount.view().status!.instance;
    const exited = new Promise((r) => server!.once('exit', r));
    server!.kill('SIGKILL');
    await exited;
    await until(() => !mount.online, 'offline after the server died', 10_000);
    expect(toolErrorOf(await mount.call('echo', { message: 'x' }))?.code).toBe('AGENT_OFFLINE');
    await startServer();
    await until(() => mount.online, 'online again', 20_000);
    expect(mount.view().status!.instance).not.toBe(first);
    expect((await mount.call('echo', { message: 'back' })).content).toEqual([{ type: 'text', text: 'Echo: back' }]);
  });
});
