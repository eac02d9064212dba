// toolmesh-agent as a user runs it: the built CLI (npm test builds first), a real broker,
// a YAML config. Covers config errors naming the key, the docker pack left out when no engine is
// reachable, bad input over the wire, and a clean stop on SIGTERM/SIGINT publishing `offline`.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { toolErrorOf, RpcCaller } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig, ConfigError } from '../agent/config';

const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-agent-test-'));

function writeConfig(name: string, text: string): string {
  const f = join(dir, name);
  writeFileSync(f, text);
  return f;
}

function runCli(args: string[]): { child: ChildProcess; output: () => string; exit: Promise<number | null> } {
  const child = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exit };
}

describe('agent config', () => {
  it('names each bad key', () => {
    const bad = { version: 2, agent: { id: 'bad id!' }, broker: { url: 'http://x', colour: 1 }, packs: { docker: { images: 'nginx' }, teleport: {} } };
    let err: ConfigError | undefined;
    try { validateConfig(bad, 'x.yaml'); } catch (e) { err = e as ConfigError; }
    expect(err).toBeInstanceOf(ConfigError);
    const text = err!.problems.join('\n');
    expect(text).toMatch(/^version: must be 1/m);
    expect(text).toMatch(/^agent\.id: must match/m);
    expect(text).toMatch(/^broker\.url: must be a broker URL/m);
    expect(text).toMatch(/^broker: unknown key "colour"/m);
    expect(text).toMatch(/^packs\.docker\.images: /m);
    expect(text).toMatch(/^packs\.teleport: unknown pack/m);
  });

  it('accepts a minimal config with defaults', () => {
    const cfg = validateConfig({ version: 1, agent: { id: 'pi' }, broker: { url: 'mqtt://127.0.0.1:1883' }, packs: { diag: {} } });
    expect(cfg.broker.root).toBe('toolmesh/v1');
    expect(cfg.limits.maxPayloadBytes).toBe(4 * 1024 * 1024);
    expect(Object.keys(cfg.packs)).toEqual(['diag']);
  });

  it('exits 2 with the bad key when the CLI gets a bad file', async () => {
    const f = writeConfig('bad.yaml', 'version: 1\nagent: { id: pi }\nbroker: { url: "mqtt://127.0.0.1:1" }\npacks: { system: { commands: [rm_rf] } }\n');
    const r = runCli(['--config', f]);
    expect(await r.exit).toBe(2);
    expect(r.output()).toContain('packs.system.commands.0');
  });
});

describe('toolmesh-agent process', () => {
  let broker: EmbeddedBroker;
  let caller: RpcCaller;
  let agent: ReturnType<typeof runCli>;
  let statuses: any[] = [];
  let watcher: mqtt.MqttClient;
  beforeAll(async () => {
    broker = await startBroker({ port: 0 });
    watcher = await mqtt.connectAsync(broker.url);
    await watcher.subscribeAsync('toolmesh/v1/agents/clipi/status', { qos: 1 });
    watcher.on('message', (_t, p) => statuses.push(p.length ? JSON.parse(p.toString()) : null));
    const f = writeConfig('pi.yaml', `version: 1\nagent: { id: clipi, kind: pi, name: Test Pi }\nbroker: { url: "${broker.url}" }\npacks:\n  docker: { socketPath: ${join(dir, 'nothing.sock')} }\n  system: { commands: [uptime, memory] }\n  diag: {}\n`);
    agent = runCli(['--config', f]);
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'clitest' });
    await caller.start();
    for (let i = 0; !caller.agent('clipi')?.ready; i++) {
      if (i > 500) throw new Error(`agent never became ready:\n${agent.output()}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  afterAll(async () => {
    if (agent.child.exitCode === null) agent.child.kill('SIGKILL');
    await caller.stop();
    await watcher.endAsync();
    await broker.close();
  });

  it('leaves the docker pack out with one log line and still starts', () => {
    const names = caller.agent('clipi')!.catalog!.tools.map((t) => t.name);
    expect(names).toContain('diag_echo');
    expect(names).toContain('system_uptime');
    expect(names.some((n) => n.startsWith('docker_'))).toBe(false);
    expect(agent.output().match(/pack docker left out of the catalog: .*nothing\.sock/g)).toHaveLength(1);
    expect(agent.output()).toMatch(/caller policy is advisory/);
  });

  it('runs tools and refuses bad input without dying', async () => {
    expect((await caller.call('clipi', 'system_uptime', {})).isError).toBe(false);
    expect(toolErrorOf(await caller.call('clipi', 'system_uptime', { extra: 1 }))?.code).toBe('INVALID_ARGUMENTS');
    expect(toolErrorOf(await caller.call('clipi', 'docker_restart_container', { container: 'x' }))?.code).toBe('TOOL_NOT_FOUND');
    const raw = await mqtt.connectAsync(broker.url);
    await raw.subscribeAsync('toolmesh/v1/agents/clipi/rpc/evil/res', { qos: 1 });
    const answers: any[] = [];
    raw.on('message', (_t, p) => answers.push(JSON.parse(p.toString())));
    await raw.publishAsync('toolmesh/v1/agents/clipi/rpc/evil/req', '{"jsonrpc":', { qos: 1 });
    await raw.publishAsync('toolmesh/v1/agents/clipi/rpc/evil/req', Buffer.alloc(5 * 1024 * 1024, 'x'), { qos: 1 });
    await raw.publishAsync('toolmesh/v1/agents/clipi/rpc/evil/req', JSON.stringify({ jsonrpc: '2.0', id: 9, method: 'tools/call', params: { name: 'diag_echo', arguments: { text: 'late' }, _meta: { deadline: Date.now() - 3_600_000 } } }), { qos: 1 });
    for (let i = 0; answers.length < 3; i++) {
      if (i > 300) throw new Error(`got ${answers.length} answers`);
      await new Promise((r) => setTimeout(r, 10));
    }
    await raw.endAsync();
    expect(answers[0]).toMatchObject({ id: null, error: { code: -32700 } });
    expect(answers[1]).toMatchObject({ id: null, error: { code: -32600 } });
    expect(answers[2]).toMatchObject({ id: 9, result: { isError: true, structuredContent: { error: { code: 'TIMEOUT' } } } });
    expect(agent.child.exitCode).toBeNull();
    expect((await caller.call('clipi', 'diag_echo', { text: 'still here' })).structuredContent).toMatchObject({ echo: { text: 'still here' } });
  });

  it('publishes offline and exits 0 on SIGTERM', async () => {
    const instance = caller.agent('clipi')!.status!.instance;
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
    for (let i = 0; statuses.at(-1)?.state !== 'offline'; i++) {
      if (i > 200) throw new Error('no offline status');
      await new Promise((r) => setTimeout(r, 10));
    }
    expect(statuses.at(-1)).toMatchObject({ state: 'offline', agent: 'clipi', instance });
    expect(statuses.some((s) => s?.state === 'lost')).toBe(false);
  });
});
