// toolmesh-agent as a daemon (the built CLI, a real broker): it never exits because its broker
// went away, comes back online with the same instance when the broker returns, starts without a
// broker and exits 0 on SIGTERM even before its first connection. Exit codes: agent/cli.ts.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { freePort } from './support/mosquitto';
import { until } from './support/until';

const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-daemon-test-'));
const children: ChildProcess[] = [];
let broker: EmbeddedBroker | undefined;

afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await broker?.close();
  broker = undefined;
});

function startCli(port: number, id: string) {
  const f = join(dir, `${id}.yaml`);
  writeFileSync(f, `version: 1\nagent: { id: ${id} }\nbroker: { url: "mqtt://127.0.0.1:${port}" }\npacks: { diag: {} }\n`);
  const child = spawn(process.execPath, [CLI, '--config', f], { stdio: ['ignore', 'pipe', 'pipe'] });
  children.push(child);
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  return { child, output: () => out, exit };
}

/** Resolves with the next retained-or-live `online` status of `agentId` on the broker at `port`. */
async function onlineStatus(port: number, agentId: string): Promise<{ instance: string }> {
  const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { reconnectPeriod: 0 });
  try {
    const got = new Promise<{ instance: string }>((resolve) => c.on('message', (_t, p) => {
      const s = p.length ? JSON.parse(p.toString()) : null;
      if (s?.state === 'online') resolve(s);
    }));
    await c.subscribeAsync(`toolmesh/v1/agents/${agentId}/status`, { qos: 1 });
    return await got;
  } finally {
    await c.endAsync();
  }
}

describe('toolmesh-agent keeps running without its broker', () => {
  it('stays up while the broker is away and is back online with the same instance', async () => {
    const port = await freePort();
    broker = await startBroker({ port });
    const agent = startCli(port, 'daemon1');
    const first = await until(() => onlineStatus(port, 'daemon1'), 'agent online');
    await broker.close();
    broker = undefined;
    // the old defect: exit code 0 about 1 s after the broker went away
    await new Promise((r) => setTimeout(r, 4000));
    expect(agent.child.exitCode).toBeNull();
    broker = await startBroker({ port });
    const back = Date.now();
    const again = await onlineStatus(port, 'daemon1');
    expect(again.instance).toBe(first.instance);
    expect(Date.now() - back).toBeLessThan(10_000);
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
  }, 30_000);

  it('starts without a broker, keeps trying, and exits 0 on SIGTERM before its first connection', async () => {
    const port = await freePort();
    const agent = startCli(port, 'daemon2');
    await until(() => /no broker connection|ECONNREFUSED/.test(agent.output()), 'a connection error in the log');
    await new Promise((r) => setTimeout(r, 2500));
    expect(agent.child.exitCode).toBeNull();
    agent.child.kill('SIGTERM');
    expect(await agent.exit).toBe(0);
    expect(agent.output()).toMatch(/SIGTERM before the first connection/);
  }, 20_000);

  it('comes online once a broker appears after its start', async () => {
    const port = await freePort();
    const agent = startCli(port, 'daemon3');
    await new Promise((r) => setTimeout(r, 1500));
    broker = await startBroker({ port });
    await onlineStatus(port, 'daemon3');
    agent.child.kill('SIGINT');
    expect(await agent.exit).toBe(0);
  }, 20_000);
});
