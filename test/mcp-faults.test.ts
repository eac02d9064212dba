// `toolmesh mcp` under faults, with real parts only: Debian's mosquitto that the test stops and
// starts on one port (test/support/restartable-mosquitto.ts), a real toolmesh-agent process
// (packages/agent/dist/agent/cli.js, YAML config, diag pack with diag_sleep recording each execution in a file),
// and the real bridge process driven by the MCP SDK's Client over stdio. The rules checked are
// those of docs/protocol.md, "Broker restarts, lost agents and lost callers": a broker restart
// loses no result and runs nothing twice; a killed agent ends the call with AGENT_OFFLINE after
// the confirmation window; the bridge comes up while the broker is down.
// In CI (`CI=true`) a missing mosquitto fails; elsewhere these tests skip.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterEach, describe, expect, it } from 'vitest';
import { startRestartableMosquitto, type RestartableMosquitto } from './support/restartable-mosquitto';
import { until } from './support/until';

// not support/node-red-process's REPO_ROOT: that module insists on a node-red inside this checkout
const REPO_ROOT = join(__dirname, '..');
const BIN = join(REPO_ROOT, 'dist/nodes/cli.js');
const AGENT_BIN = join(REPO_ROOT, 'packages/agent/dist/agent/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-faults-'));

interface Agent { child: ChildProcess; recordFile: string; output: () => string }

/** A real toolmesh-agent process with the diag pack and diag_sleep, recording executions. */
function startAgentProcess(id: string, url: string): Agent {
  const recordFile = join(dir, `${id}-executions.jsonl`);
  const cfg = join(dir, `${id}.yaml`);
  writeFileSync(cfg, `version: 1\nagent: { id: ${id}, name: Fault ${id}, kind: pi }\nbroker: { url: "${url}" }\npacks:\n  diag: { sleepTool: true, recordFile: ${JSON.stringify(recordFile)} }\n`);
  const child = spawn(process.execPath, [AGENT_BIN, '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  return { child, recordFile, output: () => out };
}

/** Executions of diag_sleep with `tag` the agent recorded. */
function executions(agent: Agent, tag: string): number {
  if (!existsSync(agent.recordFile)) return 0;
  return readFileSync(agent.recordFile, 'utf8').split('\n').filter((l) => l && (JSON.parse(l) as { tag?: string }).tag === tag).length;
}

interface Bridge { client: Client; process: ChildProcess; stderr: () => string }

/** The bridge over stdio, started by the SDK client as VS Code would. */
async function startBridge(url: string, callerId: string): Promise<Bridge> {
  let err = '';
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--broker', url, '--caller-id', callerId], stderr: 'pipe' });
  transport.stderr?.on('data', (d) => { err += d; });
  const client = new Client({ name: 'vitest-faults', version: '1.0.0' });
  await client.connect(transport);
  const child = (transport as unknown as { _process?: ChildProcess })._process!;
  return { client, process: child, stderr: () => err };
}

async function listed(b: Bridge, name: string, ms = 15_000): Promise<void> {
  await until(async () => (await b.client.listTools()).tools.some((t) => t.name === name), `${name} listed`, ms);
}

const running = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

async function kill(p: ChildProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!p || !running(p)) return;
  const exited = new Promise((r) => p.once('exit', r));
  p.kill(signal);
  await exited;
}

describe('toolmesh mcp under faults (Debian mosquitto, a toolmesh-agent process)', () => {
  let mosq: RestartableMosquitto | null = null;
  let agent: Agent | undefined;
  let bridge: Bridge | undefined;

  afterEach(async () => {
    await bridge?.client.close().catch(() => {});
    await kill(bridge?.process);
    await kill(agent?.child);
    await mosq?.dispose();
    bridge = undefined;
    agent = undefined;
    mosq = null;
  });

  it('mosquitto restarted while a 1.5 s tools/call is in flight: the result arrives, the tool ran once, the bridge serves the next call', async (ctx) => {
    mosq = await startRestartableMosquitto();
    if (!mosq) return ctx.skip();
    agent = startAgentProcess('pi-restart', mosq.url);
    bridge = await startBridge(mosq.url, 'mcp-fault-restart');
    await listed(bridge, 'pi-restart__diag_sleep');

    const started = Date.now();
    const call = bridge.client.callTool({ name: 'pi-restart__diag_sleep', arguments: { ms: 1500, tag: 'across-restart' } }) as Promise<CallToolResult>;
    await until(() => executions(agent!, 'across-restart') === 1, 'diag_sleep started on the agent', 5000);
    // down for 1 s: the tool finishes while agent and bridge are both disconnected, so its result
    // reaches the bridge only through the re-send after the reconnect (the agent's store)
    await mosq.restart(1000);
    const r = await call;
    expect(r.isError, JSON.stringify(r)).toBeFalsy();
    expect(r.structuredContent).toMatchObject({ slept: 1500, caller: 'mcp-fault-restart', tag: 'across-restart' });
    expect(Date.now() - started).toBeLessThan(15_000);
    // the re-sent request joined the run or got the stored result: one execution
    await new Promise((res) => setTimeout(res, 500));
    expect(executions(agent, 'across-restart')).toBe(1);
    expect(mosq.starts).toBe(2);
    expect(running(bridge.process)).toBe(true);
    expect(bridge.stderr()).toMatch(/back online/);

    const next = (await bridge.client.callTool({ name: 'pi-restart__diag_echo', arguments: { text: 'after the restart' } })) as CallToolResult;
    expect(next.isError).toBeFalsy();
    expect(next.structuredContent).toEqual({ echo: { text: 'after the restart' } });
    expect(running(bridge.process)).toBe(true);
  });

  it('the agent process killed (-9) mid-call: the MCP client gets an isError AGENT_OFFLINE result, not a hang', async (ctx) => {
    mosq = await startRestartableMosquitto();
    if (!mosq) return ctx.skip();
    agent = startAgentProcess('pi-killed', mosq.url);
    bridge = await startBridge(mosq.url, 'mcp-fault-kill');
    await listed(bridge, 'pi-killed__diag_sleep');

    const call = bridge.client.callTool({ name: 'pi-killed__diag_sleep', arguments: { ms: 20_000, tag: 'killed' } }) as Promise<CallToolResult>;
    await until(() => executions(agent!, 'killed') === 1, 'diag_sleep started on the agent', 5000);
    const killedAt = Date.now();
    await kill(agent.child, 'SIGKILL');
    const r = await call;
    const waited = Date.now() - killedAt;
    expect(r.isError).toBe(true);
    const error = (r.structuredContent as { error: { code: string; details?: { outcome?: string } } }).error;
    expect(error.code).toBe('AGENT_OFFLINE');
    // the call may have had effects: the outcome is unknown (docs/protocol.md, tool error codes)
    expect(error.details?.outcome).toBe('unknown');
    // the broker publishes the will at once; the caller confirms it for offlineGraceMs (1 s)
    expect(waited).toBeGreaterThanOrEqual(900);
    expect(waited).toBeLessThan(5000);
    expect(running(bridge.process)).toBe(true);
    // its tools leave the list, and a call now is AGENT_OFFLINE without being sent
    await until(async () => !(await bridge!.client.listTools()).tools.some((t) => t.name.startsWith('pi-killed__')), 'the killed agent\'s tools unlisted', 5000);
    const again = (await bridge.client.callTool({ name: 'pi-killed__diag_echo', arguments: {} })) as CallToolResult;
    expect(again.isError).toBe(true);
    expect((again.structuredContent as { error: { code: string } }).error.code).toBe('AGENT_OFFLINE');
  });

  it('the bridge started while the broker is down keeps running and serves tools once the broker is up', async (ctx) => {
    mosq = await startRestartableMosquitto();
    if (!mosq) return ctx.skip();
    await mosq.stop();
    // initialize is answered with the broker down (the bridge waits for it only a bounded time)
    const t0 = Date.now();
    bridge = await startBridge(mosq.url, 'mcp-fault-late');
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect((await bridge.client.listTools()).tools).toEqual([]);
    await until(() => /not reachable yet; starting anyway/.test(bridge!.stderr()), 'the bridge says it starts without the broker', 5000);
    await new Promise((res) => setTimeout(res, 1500));
    expect(running(bridge.process)).toBe(true);

    await mosq.start();
    agent = startAgentProcess('pi-late', mosq.url);
    // the bridge's reconnect backoff is at most 5 s
    await listed(bridge, 'pi-late__diag_echo', 20_000);
    expect(bridge.stderr()).toMatch(/connected: mqtt:\/\/127\.0\.0\.1/);
    const r = (await bridge.client.callTool({ name: 'pi-late__diag_echo', arguments: { text: 'late' } })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toEqual({ echo: { text: 'late' } });
    const slept = (await bridge.client.callTool({ name: 'pi-late__diag_sleep', arguments: { ms: 50, tag: 'late' } })) as CallToolResult;
    expect(slept.structuredContent).toMatchObject({ slept: 50, caller: 'mcp-fault-late' });
    expect(executions(agent, 'late')).toBe(1);
    expect(running(bridge.process)).toBe(true);
  });
});
