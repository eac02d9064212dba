// Join with a code, end to end (issue 18, item 3): Node-RED (node-red-node-test-helper) with a
// tool-registry whose embedded aedes requires authentication, a join string from its admin
// endpoint, and REAL agent processes (packages/agent/dist/agent/cli.js join ..., then --config ...): the device
// comes online with its tools; a used string, a wrong secret, an unreachable Node-RED and a
// middleman that swaps the broker URL in the answer are each refused with one line and exit 2.
// dist/ must be built (npm run build).
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import registryCatalog from '../nodes/tool-registry/locales/en-US/tool-registry.json';
import { helper } from './support/node-red';
import { freePort } from './support/mosquitto';
import { until } from './support/until';
import { withCatalog } from './support/i18n';
import { encodeJoinString, parseJoinString } from '../protocol/join';

const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-join-'));
const children: ChildProcess[] = [];
const servers: http.Server[] = [];

function runCli(args: string[]): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], cwd: dir });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exit };
}

let base = '';
let reg: ToolRegistryNode;

async function newJoinString(agentId: string, nodeRedUrl = base): Promise<{ joinString: string; command: string; codeId: string; account: string }> {
  const res = await helper.request().post('/toolmesh/registry/reg/join-codes')
    .send({ nodeRedUrl, brokerUrl: reg.brokerUrl, agentId, packs: ['diag'] }).expect(200);
  return res.body;
}

beforeAll(async () => {
  helper.settings({ userDir: dir });
  await new Promise<void>((resolve) => helper.startServer(resolve));
  // the helper's admin app (where Node-RED mounts httpAdmin) on a port of its own, as the device reaches it
  const admin = http.createServer((req, res) => helper._httpAdmin(req, res));
  servers.push(admin);
  await new Promise<void>((r) => admin.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(admin.address() as { port: number }).port}`;
  const port = await freePort();
  await helper.load([withCatalog(registryNode, registryCatalog)], [
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', callerId: 'flowreg', mode: 'embedded', host: '127.0.0.1', port, requireAuth: true },
  ], { reg: { users: '' } });
  reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.state === 'connected', 'the registry to connect');
}, 60_000);

afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  for (const s of servers) s.close();
  await helper.unload();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
  rmSync(dir, { recursive: true, force: true });
});

describe('toolmesh-agent join', () => {
  it('writes a 0600 config that --check accepts and that comes online with its tools; the string works once', async () => {
    const issued = await newJoinString('dev1');
    expect(issued.account).toBe('added');
    expect(issued.command).toMatch(/^toolmesh-agent join tmjoin1\.[A-Za-z0-9_-]+ --config dev1\.yaml --packs diag --run$/);
    const config = join(dir, 'dev1.yaml');
    const j = runCli(['join', issued.joinString, '--config', config, '--packs', 'diag']);
    expect(await j.exit, j.output()).toBe(0);
    expect(j.output()).toContain(`next: toolmesh-agent --config ${config}`);
    expect(statSync(config).mode & 0o777).toBe(0o600);
    expect(statSync(join(dir, 'dev1.pass')).mode & 0o777).toBe(0o600);
    const doc = parseYaml(readFileSync(config, 'utf8'));
    expect(doc).toMatchObject({ agent: { id: 'dev1' }, broker: { url: reg.brokerUrl, username: 'dev1', passwordFile: './dev1.pass', root: 'toolmesh/v1' }, packs: { diag: { sleepTool: false } } });
    // the password stays on the device: the user store holds only its hash
    const password = readFileSync(join(dir, 'dev1.pass'), 'utf8').trim();
    const store = readFileSync(join(dir, 'toolmesh', 'broker-users-reg.json'), 'utf8');
    expect(store).toContain('"dev1"');
    expect(store).not.toContain(password);
    expect(store).toContain('joined with a code');

    const check = runCli(['--config', config, '--check']);
    expect(await check.exit, check.output()).toBe(0);

    const agent = runCli(['--config', config]);
    await until(() => reg.describeAgents().some((a) => a.id === 'dev1' && a.ready && a.tools.some((t) => t.name === 'diag_echo')), 'dev1 online with its tools', 20_000);
    const res = await helper.request().get(`/toolmesh/registry/reg/join-codes/${issued.codeId}`).expect(200);
    expect(res.body).toEqual({ state: 'joined', agentId: 'dev1', account: 'added' });
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);

    // used: refused with one line, exit 2, nothing written
    const again = runCli(['join', issued.joinString, '--config', join(dir, 'again.yaml')]);
    expect(await again.exit).toBe(2);
    expect(again.output().trim()).toMatch(/^toolmesh-agent join: join refused: i: this join string was used already/);
    expect(existsSync(join(dir, 'again.yaml'))).toBe(false);
    // an existing config is not overwritten
    const over = runCli(['join', (await newJoinString('dev1b')).joinString, '--config', config]);
    expect(await over.exit).toBe(2);
    expect(over.output()).toMatch(/exists; choose another --config, or add --force/);
  }, 60_000);

  it('refuses a wrong secret, an unreachable Node-RED and a bad string with one line each, exit 2', async () => {
    const ticket = parseJoinString((await newJoinString('dev2')).joinString);
    const wrong = runCli(['join', encodeJoinString({ ...ticket, s: 'x'.repeat(22) }), '--config', join(dir, 'dev2.yaml')]);
    expect(await wrong.exit).toBe(2);
    expect(wrong.output().trim()).toMatch(/^toolmesh-agent join: join refused: proof: does not match the join string/);
    const closed = await freePort();
    const away = runCli(['join', encodeJoinString({ ...ticket, u: `http://127.0.0.1:${closed}` }), '--config', join(dir, 'dev2.yaml')]);
    expect(await away.exit).toBe(2);
    expect(away.output().trim()).toBe(`toolmesh-agent join: cannot reach Node-RED at http://127.0.0.1:${closed}: ECONNREFUSED`);
    const bad = runCli(['join', 'tmjoin1.@@@', '--config', join(dir, 'dev2.yaml')]);
    expect(await bad.exit).toBe(2);
    expect(bad.output().split('\n').filter(Boolean)).toHaveLength(1);
    expect(existsSync(join(dir, 'dev2.yaml'))).toBe(false);
  }, 30_000);

  it('refuses an answer whose broker URL a middleman swapped, and writes nothing', async () => {
    // a proxy in front of Node-RED that hands the device another broker
    const target = new URL(base);
    const proxy = http.createServer((req, res) => {
      const up = http.request({ host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers }, (ur) => {
        const chunks: Buffer[] = [];
        ur.on('data', (c) => chunks.push(c));
        ur.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8').replace(/"brokerUrl":"[^"]*"/, '"brokerUrl":"mqtt://127.0.0.1:1"');
          res.writeHead(ur.statusCode ?? 500, { 'content-type': 'application/json' }).end(text);
        });
      });
      req.pipe(up);
    });
    servers.push(proxy);
    await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', r));
    const port = (proxy.address() as { port: number }).port;
    const issued = await newJoinString('dev3', `http://127.0.0.1:${port}`);
    const j = runCli(['join', issued.joinString, '--config', join(dir, 'dev3.yaml')]);
    expect(await j.exit).toBe(2);
    expect(j.output().trim()).toMatch(/^toolmesh-agent join: answer of http:\/\/127\.0\.0\.1:\d+: its proof does not match the join string/);
    expect(existsSync(join(dir, 'dev3.yaml'))).toBe(false);
    expect(existsSync(join(dir, 'dev3.pass'))).toBe(false);
  }, 30_000);
});
