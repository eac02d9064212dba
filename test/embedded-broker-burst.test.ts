// The embedded broker (aedes, inside Node-RED for the tool-registry) under a burst: 120 MB of
// large requests and 3,000 small calls to a real toolmesh-agent, then close. Before the queue
// guard in protocol/broker.ts this overflowed the stack in aedes's message queue (mqemitter's
// released → _do recursion, mcollina/mqemitter#204) in two runs of three, taking the process down.
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { describe, expect, it } from 'vitest';
import { startBroker } from '../protocol/broker';
import { until } from './support/until';

const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');

describe('embedded broker under a burst', () => {
  it('delivers a burst of large and small requests to a real agent and closes without a stack overflow', async () => {
    const crashes: unknown[] = [];
    const onCrash = (e: unknown) => crashes.push(e);
    process.on('uncaughtException', onCrash);
    try {
      for (let round = 0; round < 3; round++) {
        const broker = await startBroker({ port: 0 });
        const dir = mkdtempSync(join(tmpdir(), 'toolmesh-burst-'));
        writeFileSync(join(dir, 'a.yaml'), `version: 1\nagent: { id: burst }\nbroker: { url: "${broker.url}" }\npacks: { diag: {} }\n`);
        const agent = spawn(process.execPath, [CLI, '--config', join(dir, 'a.yaml')], { stdio: 'ignore' });
        const client = await mqtt.connectAsync(broker.url, { reconnectPeriod: 0 });
        const seen: string[] = [];
        await client.subscribeAsync('toolmesh/v1/agents/burst/status', { qos: 1 });
        client.on('message', (_t, p) => seen.push(p.toString()));
        await until(() => seen.some((s) => s.includes('"online"')), 'agent online');
        for (let i = 0; i < 40; i++) await client.publishAsync('toolmesh/v1/agents/burst/rpc/f/req', Buffer.alloc(3 * 1024 * 1024, 0x5b), { qos: 1 });
        for (let i = 0; i < 3000; i++) {
          await client.publishAsync('toolmesh/v1/agents/burst/rpc/f/req', JSON.stringify({ jsonrpc: '2.0', id: `r${i}`, method: 'tools/call', params: { name: 'diag_echo', arguments: { text: 'x'.repeat(1000) } } }), { qos: 1 });
        }
        agent.kill('SIGTERM');
        await new Promise((r) => agent.once('exit', r));
        await client.endAsync(true);
        await broker.close();
        await new Promise((r) => setTimeout(r, 300));
      }
      expect(crashes).toEqual([]);
    } finally {
      process.off('uncaughtException', onCrash);
    }
  }, 120_000);
});
