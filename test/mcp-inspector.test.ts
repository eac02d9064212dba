// `toolmesh mcp` as the MCP Inspector sees it: the Inspector's CLI mode (@modelcontextprotocol/
// inspector 2.12, `mcp-inspector --cli`, run with the Node 22 of .ci/nr5 because it needs
// Node >= 22.19; the test setup installs it there when missing, see test/support/prerequisites.ts)
// starts the real bridge process (dist/nodes/cli.js mcp, the toolmesh-node-red bin) over stdio, or talks
// to one over Streamable HTTP with a bearer token, against a real agent runtime (diag pack plus a
// counting in-test tool) on aedes. Its JSON output on stdout is what is checked.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { freePort } from './support/mosquitto';
import { until } from './support/until';
import { isNode22_19, nr5NodeBin } from './support/prerequisites';

// not support/node-red-process's REPO_ROOT: that module insists on a node-red inside this checkout
const REPO_ROOT = join(__dirname, '..');
const BIN = join(REPO_ROOT, 'dist/nodes/cli.js');
const NODE22 = nr5NodeBin();
const INSPECTOR = join(REPO_ROOT, 'node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-inspector-'));
const quiet = { info() {}, warn() {}, error() {} };

/**
 * The Node for the Inspector (>= 22.19): the one running the tests when it is new enough (the
 * test:nr5 pass), else Node 22 of .ci/nr5, which the test setup installs (npm run nr5:install) as
 * this file is in NEEDS_NODE22. In CI a missing one fails; elsewhere the tests skip, saying why.
 */
function node22(): string | null {
  const node = isNode22_19(process.version) ? process.execPath : NODE22;
  for (const [path, what] of [[node, 'Node 22 (npm run nr5:install; the test setup runs it when missing, see what it printed)'], [INSPECTOR, '@modelcontextprotocol/inspector (npm ci)']]) {
    if (existsSync(path)) continue;
    if (process.env.CI) throw new Error(`${path} is missing: install ${what}`);
    console.warn(`MCP Inspector tests skipped: ${path} is missing: install ${what}`);
    return null;
  }
  return node;
}

let runs = 0;
const shout = defineTool({
  name: 'shout', description: 'Upper-cases its text', risk: 'low', readOnly: true,
  input: z.strictObject({ text: z.string().max(100), times: z.number().int().min(1).max(5).default(1) }),
  execute: (a) => { runs++; return { shouted: a.text.toUpperCase().repeat(a.times) }; },
});

interface Run { code: number | null; stdout: string; stderr: string; json: any }

/** One Inspector CLI run; stdout parsed as the JSON document it prints first. */
function inspector(node: string, args: string[], env: Record<string, string> = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(node, [INSPECTOR, '--cli', ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
      // its catalog file (servers it has seen) goes to the test's folder, not ~/.mcp-inspector
      env: { ...process.env, MCP_CATALOG_PATH: join(dir, 'inspector-catalog.json'), ...env },
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => { child.kill('SIGKILL'); reject(new Error(`the Inspector did not finish: ${stderr}`)); }, 30_000);
    child.once('exit', (code) => {
      clearTimeout(timer);
      // pretty-printed JSON, then possibly a line of remarks ("Schema portability: ...")
      const end = stdout.lastIndexOf('\n}');
      let json: any;
      try { json = JSON.parse(stdout.slice(0, end + 2)); } catch { json = undefined; }
      resolve({ code, stdout, stderr, json });
    });
  });
}

describe('the MCP Inspector CLI against toolmesh mcp', () => {
  const node = node22();
  let broker: EmbeddedBroker;
  let agent: RunningAgent;

  beforeAll(async () => {
    if (!node) return;
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi-insp', name: 'Inspected Pi', kind: 'pi' }, broker: { url: broker.url }, packs: { diag: {} } }, 'test.yaml', dir), quiet, [shout]);
  });
  afterAll(async () => {
    await agent?.stop();
    await broker?.close();
  });

  const stdioServer = (callerId: string) => ['--', process.execPath, BIN, 'mcp', '--broker', broker.url, '--caller-id', callerId];

  it('stdio: tools/list shows the agent\'s tools with their schema, annotations and risk', async (ctx) => {
    if (!node) return ctx.skip();
    const r = await inspector(node, ['--method', 'tools/list', ...stdioServer('mcp-insp-list')]);
    expect(r.code, r.stderr).toBe(0);
    const names = (r.json.tools as Array<{ name: string }>).map((t) => t.name).sort();
    expect(names).toEqual(['pi-insp__diag_echo', 'pi-insp__shout']);
    const echo = r.json.tools.find((t: { name: string }) => t.name === 'pi-insp__diag_echo');
    expect(echo).toMatchObject({
      inputSchema: { type: 'object', properties: { text: { type: 'string' } }, additionalProperties: false },
      annotations: { readOnlyHint: true, destructiveHint: false, idempotentHint: true, title: 'Diag echo on Inspected Pi' },
      _meta: { 'toolmesh/risk': 'low', 'toolmesh/agent': 'pi-insp', 'toolmesh/tool': 'diag_echo', 'toolmesh/agentKind': 'pi' },
    });
    // the Inspector's schema portability check (on stderr) finds no errors in what the bridge offers
    expect(r.stderr).toMatch(/Schema portability: 0 errors/);
  });

  it('stdio: tools/call runs the tool once on the agent; --tool-arg values arrive typed', async (ctx) => {
    if (!node) return ctx.skip();
    const before = runs;
    const r = await inspector(node, ['--method', 'tools/call', '--tool-name', 'pi-insp__shout', '--tool-arg', 'text=hey', 'times=2', ...stdioServer('mcp-insp-call')]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.isError).toBeFalsy();
    expect(r.json.structuredContent).toEqual({ shouted: 'HEYHEY' });
    expect(runs).toBe(before + 1);
    const echo = await inspector(node, ['--method', 'tools/call', '--tool-name', 'pi-insp__diag_echo', '--tool-arg', 'text=hello mesh', 'data={"n":[1,2,{"deep":null}]}', ...stdioServer('mcp-insp-echo')]);
    expect(echo.code, echo.stderr).toBe(0);
    expect(echo.json.structuredContent).toEqual({ echo: { text: 'hello mesh', data: { n: [1, 2, { deep: null }] } } });
    expect(JSON.parse(echo.json.content[0].text)).toEqual(echo.json.structuredContent);
  });

  it('stdio: invalid arguments come back as an isError result (INVALID_ARGUMENTS) and nothing runs', async (ctx) => {
    if (!node) return ctx.skip();
    const before = runs;
    const r = await inspector(node, ['--method', 'tools/call', '--tool-name', 'pi-insp__shout', '--tool-arg', 'text=hey', 'times=9', ...stdioServer('mcp-insp-bad')]);
    expect(r.json?.isError, r.stdout + r.stderr).toBe(true);
    expect(r.json.structuredContent.error.code).toBe('INVALID_ARGUMENTS');
    expect(runs).toBe(before);
  });

  describe('over Streamable HTTP with a bearer token', () => {
    let bridge: ChildProcess;
    let port = 0;
    const token = 'inspector-token-0123456789abcdef';

    beforeAll(async () => {
      if (!node) return;
      port = await freePort();
      bridge = spawn(process.execPath, [BIN, 'mcp', '--broker', broker.url, '--caller-id', 'mcp-insp-http', '--http', `127.0.0.1:${port}`], { stdio: ['ignore', 'ignore', 'pipe'], env: { ...process.env, TOOLMESH_MCP_TOKEN: token } });
      let err = '';
      bridge.stderr!.on('data', (d) => { err += d; });
      await until(() => err.includes('serving MCP (Streamable HTTP)') && err.includes('connected:'), 'the HTTP bridge up and connected', 10_000);
    });
    afterAll(async () => {
      if (!bridge) return;
      const exited = new Promise((r) => bridge.once('exit', r));
      bridge.kill('SIGTERM');
      await exited;
    });

    const httpArgs = (t = token) => ['--transport', 'http', '--server-url', `http://127.0.0.1:${port}/mcp`, '--header', `Authorization: Bearer ${t}`];

    it('lists and calls', async (ctx) => {
      if (!node) return ctx.skip();
      await until(async () => ((await inspector(node, ['--method', 'tools/list', ...httpArgs()])).json?.tools ?? []).length === 2, 'both tools listed over HTTP', 20_000);
      const before = runs;
      const r = await inspector(node, ['--method', 'tools/call', '--tool-name', 'pi-insp__shout', '--tool-arg', 'text=over http', ...httpArgs()]);
      expect(r.code, r.stderr).toBe(0);
      expect(r.json.structuredContent).toEqual({ shouted: 'OVER HTTP' });
      expect(runs).toBe(before + 1);
    });

    it('a wrong token is refused (the Inspector reports auth_required) and nothing runs', async (ctx) => {
      if (!node) return ctx.skip();
      const before = runs;
      // --stored-auth-only: no interactive OAuth attempt after the 401
      const r = await inspector(node, ['--stored-auth-only', '--method', 'tools/call', '--tool-name', 'pi-insp__shout', '--tool-arg', 'text=x', ...httpArgs('wrong-token')]);
      expect(r.code).not.toBe(0);
      expect(r.json?.structuredContent).toBeUndefined();
      const err = JSON.parse(r.stderr.trim().split('\n').pop()!) as { error: { code: string; message: string } };
      expect(err.error.code).toBe('auth_required');
      expect(err.error.message).toMatch(/invalid bearer token/);
      expect(runs).toBe(before);
    });
  });
});
