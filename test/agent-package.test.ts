// The lean agent package (issue 18) as a device installs it: `npm pack` of packages/agent
// (@toolmesh/agent), `npm install --prefix <empty dir> <tgz>` (its dependencies from the npm
// registry), then the installed bins. The install stays <= 30 MB on disk and brings none of the
// node pack's libraries (Node-RED, openai, the MCP SDK, express, minisearch) nor the optional peers
// dockerode and aedes; the installed toolmesh-agent reports the agent package's version, checks a
// config, comes online against a broker on 127.0.0.1, and names the install command when its
// config turns on the docker pack without dockerode.
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { installedPackages } from './support/installed-packages';

const REPO_ROOT = join(__dirname, '..');
const AGENT_PKG = JSON.parse(readFileSync(join(REPO_ROOT, 'packages/agent/package.json'), 'utf8')) as { name: string; version: string };
/** The install budget of issue 18, MB (du of the prefix's node_modules). */
const MAX_INSTALL_MB = 30;
/** Packages a device must not get with the agent. */
const NOT_INSTALLED = ['node-red', 'openai', '@modelcontextprotocol/sdk', 'express', 'minisearch', 'dockerode', 'aedes'];

describe('the agent package, packed and installed into an empty directory', () => {
  let work: string;
  let prefix: string;
  let bin: (name: string) => string;
  let broker: EmbeddedBroker;

  beforeAll(async () => {
    if (!existsSync(join(REPO_ROOT, 'packages/agent/dist/agent/cli.js'))) {
      throw new Error('packages/agent/dist/ is not built: run npm run build (npm test does) before this test');
    }
    work = mkdtempSync(join(tmpdir(), 'toolmesh-agent-pkg-'));
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--workspace', 'packages/agent', '--pack-destination', work], { cwd: REPO_ROOT, encoding: 'utf8' })) as Array<{ filename: string }>;
    prefix = join(work, 'device');
    mkdirSync(prefix);
    execFileSync('npm', ['install', '--no-audit', '--no-fund', '--prefix', prefix, join(work, packed[0].filename)], { cwd: work, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    bin = (name) => join(prefix, 'node_modules/.bin', name);
    broker = await startBroker({ port: 0 });
  }, 300_000);

  afterAll(async () => {
    await broker?.close();
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it(`installs within ${MAX_INSTALL_MB} MB, without the node pack's libraries or the optional peers`, () => {
    const kb = Number(execFileSync('du', ['-sk', join(prefix, 'node_modules')], { encoding: 'utf8' }).split(/\s/)[0]);
    const mb = kb / 1024;
    const packages = installedPackages(prefix);
    console.log(`agent package install: ${mb.toFixed(1)} MB in node_modules (du), ${packages.length} packages`);
    expect(packages).toContain(AGENT_PKG.name);
    expect(NOT_INSTALLED.filter((name) => packages.includes(name))).toEqual([]);
    expect(packages.filter((name) => name.startsWith('@node-red/'))).toEqual([]);
    expect(mb).toBeLessThanOrEqual(MAX_INSTALL_MB);
  });

  it('toolmesh-agent --version reports the agent package version', () => {
    const r = spawnSync(bin('toolmesh-agent'), ['--version'], { encoding: 'utf8' });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout.trim()).toBe(AGENT_PKG.version);
  });

  it('toolmesh-agent --check accepts a diag-only config', () => {
    const cfg = join(work, 'diag.yaml');
    writeFileSync(cfg, 'version: 1\nagent: { id: lean }\nbroker: { url: "mqtt://127.0.0.1:1883" }\npacks:\n  diag: {}\n');
    const r = spawnSync(bin('toolmesh-agent'), ['--config', cfg, '--check'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.trim()).toBe(`${cfg}: ok (agent lean, packs: diag)`);
  });

  it('the installed agent comes online and announces the agent package version', async () => {
    const cfg = join(work, 'online.yaml');
    writeFileSync(cfg, `version: 1\nagent: { id: lean-online }\nbroker: { url: "${broker.url}" }\npacks:\n  diag: {}\n`);
    const watcher = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
    const child = spawn(bin('toolmesh-agent'), ['--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    let log = '';
    child.stderr!.on('data', (d) => (log += d));
    try {
      const status = new Promise<{ state: string; version?: string }>((resolve) => watcher.on('message', (_t, p) => {
        if (!p.length) return;
        const s = JSON.parse(p.toString()) as { state: string };
        if (s.state === 'online') resolve(s);
      }));
      const catalog = new Promise<{ agent: { version?: string }; tools: Array<{ name: string }> }>((resolve) => watcher.on('message', (t, p) => {
        if (t.endsWith('/catalog') && p.length) resolve(JSON.parse(p.toString()));
      }));
      await watcher.subscribeAsync(['toolmesh/v1/agents/lean-online/status', 'toolmesh/v1/agents/lean-online/catalog'], { qos: 1 });
      const timeout = new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`not online within 20 s; its log:\n${log}`)), 20_000));
      await Promise.race([status, timeout]);
      const cat = await Promise.race([catalog, timeout]);
      expect(cat.agent.version).toBe(AGENT_PKG.version);
      expect(cat.tools.map((t) => t.name)).toContain('diag_echo');
    } finally {
      const exited = new Promise((r) => child.once('exit', r));
      child.kill('SIGTERM');
      await exited;
      await watcher.endAsync();
    }
    expect(child.exitCode).toBe(0);
  }, 60_000);

  it('a config with the docker pack exits 2 naming the dockerode install command', () => {
    const cfg = join(work, 'docker.yaml');
    writeFileSync(cfg, `version: 1\nagent: { id: lean-docker }\nbroker: { url: "${broker.url}" }\npacks:\n  docker: { socketPath: "${join(work, 'no-docker.sock')}" }\n`);
    const r = spawnSync(bin('toolmesh-agent'), ['--config', cfg], { encoding: 'utf8', timeout: 20_000 });
    expect(r.status, r.stderr).toBe(2);
    expect(r.stderr).toContain('npm install -g dockerode@4');
    expect(r.stderr).not.toMatch(/\n\s+at /); // one message, not a stack
  });

  it('toolmesh: audit verify is here, mcp says where it lives', () => {
    const help = spawnSync(bin('toolmesh'), ['--help'], { encoding: 'utf8' });
    expect(help.status).toBe(0);
    expect(help.stdout).toContain('toolmesh audit verify');
    const mcp = spawnSync(bin('toolmesh'), ['mcp', '--help'], { encoding: 'utf8' });
    expect(mcp.status).toBe(2);
    expect(mcp.stderr.trim()).toMatch(/^toolmesh mcp lives in the Node-RED node pack now: npm install -g \S+, then run toolmesh-node-red mcp --help$/);
  });
});
