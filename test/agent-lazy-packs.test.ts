// Heavy libraries load only when their pack is configured (issue 18): a real toolmesh-agent process
// (the built CLI) without packs.docker never loads dockerode; one with packs.docker does, even when
// no engine answers (the pack then leaves itself out). The loaded packages come from the process's
// require.cache through the preload hook bench/loaded-modules.cjs (bench/agent-rss.mjs uses it too).
// Likewise MQTT.js's transports: an agent on mqtt:// dials TCP itself (protocol/mqtt.ts), so the
// WebSocket and SOCKS clients that mqtt.connect loads on its first call stay out.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { until } from './support/until';

const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');
const HOOK = join(__dirname, '../bench/loaded-modules.cjs');
/** dockerode and the libraries only it brings in. */
const DOCKER_LIBS = ['dockerode', 'docker-modem', 'ssh2', '@grpc/grpc-js', 'protobufjs'];

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-lazy-packs-'));
const children: ChildProcess[] = [];
let broker: EmbeddedBroker;

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Resolves once `agentId`'s retained status says online. */
async function online(agentId: string): Promise<void> {
  const c = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
  try {
    const got = new Promise<void>((resolve) => c.on('message', (_t, p) => {
      if (p.length && JSON.parse(p.toString()).state === 'online') resolve();
    }));
    await c.subscribeAsync(`toolmesh/v1/agents/${agentId}/status`, { qos: 1 });
    await got;
  } finally {
    await c.endAsync();
  }
}

/** Starts an agent with `packs` (YAML lines under `packs:`), waits for it online, returns its loaded packages and log. */
async function loadedPackages(id: string, packs: string): Promise<{ packages: string[]; log: string }> {
  const cfg = join(dir, `${id}.yaml`);
  const out = join(dir, `${id}.modules.json`);
  writeFileSync(cfg, `version: 1\nagent: { id: ${id} }\nbroker: { url: "${broker.url}" }\npacks:\n${packs}\n`);
  const child = spawn(process.execPath, ['--require', HOOK, CLI, '--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, TOOLMESH_MODULES_OUT: out },
  });
  children.push(child);
  let log = '';
  child.stdout!.on('data', (d) => (log += d));
  child.stderr!.on('data', (d) => (log += d));
  await online(id);
  child.kill('SIGUSR2');
  await until(() => existsSync(out) || undefined, `${id} wrote its module list`);
  const exit = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exit;
  return { packages: (JSON.parse(readFileSync(out, 'utf8')) as { packages: string[] }).packages, log };
}

describe('toolmesh-agent loads a heavy library only with its pack', () => {
  it('never loads dockerode without packs.docker, and loads it with packs.docker configured', async () => {
    const [without, withDocker] = await Promise.all([
      loadedPackages('lazy-nodocker', '  diag: {}\n  system: {}'),
      loadedPackages('lazy-docker', `  diag: {}\n  docker: { socketPath: "${join(dir, 'no-docker.sock')}" }`),
    ]);
    // the hook sees the libraries every agent uses
    expect(without.packages).toEqual(expect.arrayContaining(['mqtt', 'zod', 'yaml']));
    for (const lib of DOCKER_LIBS) expect(without.packages, `${lib} loaded without the docker pack`).not.toContain(lib);
    expect(withDocker.packages).toContain('dockerode');
    expect(withDocker.log).toMatch(/pack docker left out of the catalog: no Docker engine reachable/);
  }, 30_000);

  it('an agent on a plain mqtt:// broker loads none of MQTT.js\'s other transports (WebSocket, SOCKS)', async () => {
    const { packages } = await loadedPackages('lazy-transports', '  diag: {}');
    expect(packages).toContain('mqtt');
    for (const lib of ['ws', 'socks', 'ip-address', 'smart-buffer']) expect(packages, `${lib} loaded for mqtt://`).not.toContain(lib);
  }, 30_000);
});
