/**
 * Helpers of the durability tests (test/durability-*.test.ts): the built `toolmesh-agent` and
 * `toolmesh` binaries run as child processes (npm run build first), raw tools/call publishes with
 * chosen request ids, and a wait for an agent to be ready.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { RpcCaller, topics } from '../protocol';
import { chainFiles } from '../protocol/audit';
import { until } from './support/until';

export const AGENT_CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');
export const TOOLMESH_CLI = join(__dirname, '../packages/agent/dist/agent/toolmesh.js');

/**
 * Resolves once dist/ holds both binaries; waits up to `ms` (default 60 000) for a build that is
 * under way (it rewrites dist/). @throws Error naming the command that builds them.
 */
export async function requireBuild(ms = 60_000): Promise<void> {
  const end = Date.now() + ms;
  while (![AGENT_CLI, TOOLMESH_CLI].every((f) => existsSync(f))) {
    if (Date.now() > end) throw new Error(`${AGENT_CLI} or ${TOOLMESH_CLI} is missing: run npm run build first`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** A running `toolmesh-agent --config <file>`; `output()` is its stdout and stderr so far. */
export interface AgentProcess {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** Resolves with the exit code and signal once the process has exited. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
}

/** Starts the built agent on `configFile` (after {@link requireBuild}). */
export async function spawnAgent(configFile: string): Promise<AgentProcess> {
  await requireBuild();
  const child = spawn(process.execPath, [AGENT_CLI, '--config', configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  let done = false;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => { done = true; resolve({ code, signal }); }));
  return { child, pid: child.pid!, output: () => out, exited, alive: () => !done };
}

/** Sends SIGTERM (or `signal`) to the agent by its pid and waits for it to exit (5 s, then SIGKILL). */
export async function stopAgent(a: AgentProcess | undefined, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (!a || !a.alive()) return;
  process.kill(a.pid, signal);
  const timer = setTimeout(() => { if (a.alive()) process.kill(a.pid, 'SIGKILL'); }, 5000);
  await a.exited;
  clearTimeout(timer);
}

/** Waits until `caller` sees `agentId` online with its catalog (10 s), naming the agent's output on failure. */
export async function waitReady(caller: RpcCaller, agentId: string, agent: AgentProcess, instanceNot?: string): Promise<string> {
  try {
    await until(() => {
      const v = caller.agent(agentId);
      return v?.ready && v.status?.instance !== instanceNot;
    }, `${agentId} to be ready`);
  } catch (e) {
    throw new Error(`${(e as Error).message}; agent output:\n${agent.output()}`);
  }
  return caller.agent(agentId)!.status!.instance;
}

/** Publishes one raw tools/call with request id `id` under `callerId`'s topic; resolves with the response. `onResponse` runs synchronously on arrival. */
export async function rawCall(brokerUrl: string, agentId: string, callerId: string, id: string, params: Record<string, unknown>, onResponse?: () => void): Promise<any> {
  const t = topics();
  const c = await mqtt.connectAsync(brokerUrl, { clientId: `raw-${callerId}-${id}-${process.pid}` });
  try {
    await c.subscribeAsync(t.res(agentId, callerId), { qos: 1 });
    const got = new Promise<any>((resolve) => c.on('message', (_t, p) => {
      const msg = JSON.parse(p.toString());
      if (msg.id !== id) return;
      onResponse?.();
      resolve(msg);
    }));
    await c.publishAsync(t.req(agentId, callerId), JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params }), { qos: 1 });
    return await got;
  } finally {
    await c.endAsync();
  }
}

/** `toolmesh audit verify` on the chain of `file` (live file and rotated siblings): exit code and output. */
export async function verifyCli(file: string): Promise<{ code: number | null; out: string }> {
  await requireBuild();
  const r = spawnSync(process.execPath, [TOOLMESH_CLI, 'audit', 'verify', ...chainFiles(file)], { encoding: 'utf8' });
  return { code: r.status, out: `${r.stdout}${r.stderr}` };
}
