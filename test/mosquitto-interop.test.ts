// Protocol v1 over Debian's mosquitto: our caller and agent, and a third-party client that only
// has mosquitto_pub / mosquitto_sub.
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, toolErrorOf } from '../protocol';
import { startMosquitto, systemBinary, type Mosquitto } from './support/mosquitto';

const run = promisify(execFile);
const broker = systemBinary('/usr/sbin/mosquitto', 'mosquitto');
const pub = systemBinary('/usr/bin/mosquitto_pub', 'mosquitto-clients');
const sub = systemBinary('/usr/bin/mosquitto_sub', 'mosquitto-clients');

describe.skipIf(!broker || !pub || !sub)('protocol v1 over mosquitto (skipped outside CI when mosquitto is not installed)', () => {
  let m: Mosquitto;
  let server: RpcServer;
  let caller: RpcCaller;
  let runs = 0;
  beforeAll(async () => {
    m = (await startMosquitto())!;
    const echo = defineTool({ name: 'diag_echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => { runs++; return { echo: a.text }; } });
    server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: m.url }, agentId: 'pi', tools: [echo] });
    await server.start();
    caller = new RpcCaller({ connection: { url: m.url }, callerId: 'nodered-test' });
    await caller.start();
    for (let i = 0; !caller.agent('pi')?.ready; i++) {
      if (i > 200) throw new Error('agent never became ready');
      await new Promise((r) => setTimeout(r, 10));
    }
  });
  afterAll(async () => {
    await caller?.stop();
    await server?.stop();
    await m?.stop();
  });

  it('calls a tool through mosquitto', async () => {
    const r = await caller.call('pi', 'diag_echo', { text: 'through mosquitto' });
    expect(r.structuredContent).toEqual({ echo: 'through mosquitto' });
    expect(toolErrorOf(await caller.call('pi', 'diag_echo', {}))?.code).toBe('INVALID_ARGUMENTS');
  });

  it('shows the retained catalog to mosquitto_sub', async () => {
    const { stdout } = await run(sub!, ['-h', '127.0.0.1', '-p', String(m.port), '-t', 'toolmesh/v1/agents/+/catalog', '-C', '1', '-W', '5']);
    const catalog = JSON.parse(stdout);
    expect(catalog.agent.id).toBe('pi');
    expect(catalog.tools.map((t: { name: string }) => t.name)).toEqual(['diag_echo']);
  });

  it('answers a third-party request published with mosquitto_pub', async () => {
    const before = runs;
    const waiting = run(sub!, ['-h', '127.0.0.1', '-p', String(m.port), '-t', 'toolmesh/v1/agents/pi/rpc/cli/res', '-C', '1', '-W', '10', '-q', '1']);
    await new Promise((r) => setTimeout(r, 300)); // let mosquitto_sub subscribe
    await run(pub!, ['-h', '127.0.0.1', '-p', String(m.port), '-q', '1', '-t', 'toolmesh/v1/agents/pi/rpc/cli/req', '-m',
      JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/call', params: { name: 'diag_echo', arguments: { text: 'hi from cli' } } })]);
    const res = JSON.parse((await waiting).stdout);
    expect(res).toMatchObject({ jsonrpc: '2.0', id: 1, result: { isError: false, structuredContent: { echo: 'hi from cli' } } });
    expect(runs).toBe(before + 1);
  });
});
