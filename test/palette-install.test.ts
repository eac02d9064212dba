// The pack as a user installs it from the palette: `npm pack` of the built repository and of the
// agent package it depends on (packages/agent, @toolmesh/agent: until both are on the registry the
// palette would fetch the second itself), `npm install <both tgz>` into a fresh Node-RED user directory, and a real Node-RED (the one under test, see
// test/support/node-red-path.ts) started on it. Every node type must be enabled and loaded, and the
// install must stay small and bring no second Node-RED (node-red is a devDependency only).
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './support/mosquitto';
import { writeTestSettings } from './support/node-red-process';
import { NODE_BIN, NODE_RED_RED_JS, NODE_RED_VERSION } from './support/node-red-path';
import { until } from './support/until';
import { installedPackages } from './support/installed-packages';

const REPO_ROOT = join(__dirname, '..');
const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as {
  name: string; version: string; 'node-red': { nodes: Record<string, string> };
};
/**
 * The installed size the palette install must stay within, MB (du of the userDir's node_modules).
 * 61 MB before MCP; the official MCP SDK (@modelcontextprotocol/sdk 1.32, with express 5, hono,
 * ajv and jose for its HTTP transports) took it to 82 MB.
 */
const MAX_INSTALL_MB = 90;
/** Headers of Node-RED's admin API, version v1 (`GET /nodes` answers JSON only when asked for it). */
const API_V1 = { 'Node-RED-API-Version': 'v1', accept: 'application/json' };

/** One node set as `GET /nodes` (Node-RED-API-Version v1) lists it. */
interface NodeSet { id: string; module: string; version?: string; types: string[]; enabled: boolean; err?: unknown }

describe('palette install of the packed pack', () => {
  let work: string;
  let userDir: string;
  let child: ChildProcess | undefined;
  let out = '';
  let url: string;
  /** Paths in the node pack's tarball. */
  let packFiles: string[] = [];

  beforeAll(async () => {
    if (!existsSync(join(REPO_ROOT, 'dist/nodes/tool-registry/tool-registry.js'))) {
      throw new Error('dist/ is not built: run npm run build (npm test does) before this test');
    }
    work = mkdtempSync(join(tmpdir(), 'toolmesh-palette-'));
    const pack = (args: string[]) => {
      const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work, ...args], { cwd: REPO_ROOT, encoding: 'utf8' })) as Array<{ filename: string; files: Array<{ path: string }> }>;
      return { tgz: join(work, packed[0].filename), files: packed[0].files.map((f) => f.path) };
    };
    const agentPack = pack(['--workspace', 'packages/agent']);
    const nodePack = pack([]);
    packFiles = nodePack.files;
    userDir = join(work, 'user');
    mkdirSync(userDir);
    writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'node-red-project', version: '0.0.1', private: true }, null, 2));
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefer-offline', agentPack.tgz, nodePack.tgz], { cwd: userDir, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    writeTestSettings(userDir);
    const port = await freePort();
    url = `http://127.0.0.1:${port}`;
    const c = spawn(NODE_BIN, [NODE_RED_RED_JS, '--userDir', userDir, '--port', String(port)], {
      cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
    });
    child = c;
    c.stdout!.on('data', (d) => (out += d));
    c.stderr!.on('data', (d) => (out += d));
    await until(async () => {
      if (c.exitCode !== null || c.signalCode !== null) throw new Error(`Node-RED exited (${c.exitCode ?? c.signalCode}); its output:\n${out}`);
      if (!/Started flows|Starting flows/.test(out)) return false;
      try {
        return (await fetch(`${url}/nodes`, { headers: API_V1 })).ok;
      } catch {
        return false;
      }
    }, `Node-RED on ${url}`, 60_000).catch((e: Error) => { throw new Error(`${e.message}; its output:\n${out}`); });
  }, 300_000);

  afterAll(async () => {
    const c = child;
    if (c && c.exitCode === null && c.signalCode === null) {
      const exited = new Promise((r) => c.once('exit', r));
      c.kill('SIGTERM');
      const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    if (work) rmSync(work, { recursive: true, force: true });
  }, 30_000);

  it('installs without a second Node-RED and within the size budget', () => {
    const packages = installedPackages(userDir);
    const kb = Number(execFileSync('du', ['-sk', join(userDir, 'node_modules')], { encoding: 'utf8' }).split(/\s/)[0]);
    const mb = kb / 1024;
    console.log(`palette install: ${mb.toFixed(1)} MB in node_modules (du), ${packages.length} packages, on Node-RED ${NODE_RED_VERSION}`);
    expect(packages).toContain(pkg.name);
    // the protocol and the agent come once, from the agent package, not as a copy in the node pack
    expect(packages.filter((name) => name === '@toolmesh/agent')).toEqual(['@toolmesh/agent']);
    expect(packFiles.filter((f) => /^dist\/(agent|protocol)\//.test(f))).toEqual([]);
    expect(packages.filter((name) => name === 'node-red' || name.startsWith('@node-red/'))).toEqual([]);
    expect(mb).toBeLessThanOrEqual(MAX_INSTALL_MB);
  });

  it('loads all eight node types, enabled and without errors', async () => {
    const res = await fetch(`${url}/nodes`, { headers: API_V1 });
    expect(res.status).toBe(200);
    const sets = (await res.json() as NodeSet[]).filter((s) => s.module === pkg.name);
    const types = Object.keys(pkg['node-red'].nodes);
    expect(types.sort()).toEqual(['toolmesh-audit-log', 'toolmesh-broker', 'toolmesh-confirm-gate', 'toolmesh-llm-agent', 'toolmesh-remote-tool', 'toolmesh-tool-in', 'toolmesh-tool-out', 'toolmesh-tool-registry']);
    for (const type of types) {
      const set = sets.find((s) => s.types.includes(type));
      expect(set, `${type} is not listed by GET /nodes; Node-RED's output:\n${out}`).toBeDefined();
      // a set whose runtime file threw on load carries `err`; the admin API leaves `loaded` out
      expect({ type, enabled: set!.enabled, err: set!.err ?? null, version: set!.version })
        .toEqual({ type, enabled: true, err: null, version: pkg.version });
    }
    // the editor gets the HTML of loaded sets only: each type registers itself there
    const html = await (await fetch(`${url}/nodes`, { headers: { 'Node-RED-API-Version': 'v1', accept: 'text/html' } })).text();
    for (const type of types) expect(html, `the editor HTML does not register ${type}`).toContain(`RED.nodes.registerType('${type}'`);
    expect(out).not.toMatch(/\[error\]/);
  });

  it('has the MCP bridge in the node pack: toolmesh-node-red mcp, and the agent package\'s toolmesh mcp forwards there', () => {
    const bin = (name: string) => join(userDir, 'node_modules/.bin', name);
    const direct = spawnSync(bin('toolmesh-node-red'), ['mcp', '--help'], { encoding: 'utf8' });
    expect(direct.status, direct.stderr).toBe(0);
    expect(direct.stdout).toMatch(/^usage: toolmesh mcp --broker/);
    const forwarded = spawnSync(bin('toolmesh'), ['mcp', '--help'], { encoding: 'utf8' });
    expect(forwarded.status, forwarded.stderr).toBe(0);
    expect(forwarded.stdout).toBe(direct.stdout);
  });

  it('runs on the Node-RED under test', async () => {
    const settings = await (await fetch(`${url}/settings`, { headers: API_V1 })).json() as { version: string };
    const node = execFileSync(NODE_BIN, ['--version'], { encoding: 'utf8' }).trim();
    console.log(`palette install: Node-RED ${settings.version} on Node ${node}`);
    // Node-RED appends "-git" when a .git folder sits four levels above its runtime (the repository's own copy)
    expect(settings.version.replace(/-git$/, '')).toBe(NODE_RED_VERSION);
  });
});
