/**
 * The demo's agent processes: `packages/agent/dist/agent/cli.js --config <file>` per device, output prefixed
 * `[<agent id>]`, and what each said when it came online (tool count and packs).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { forward, stopChild } from './processes';

/** How long an agent gets to publish `offline` and exit after SIGTERM, ms. */
const STOP_AGENT_MS = 10_000;

/** A running (or exited) agent process. */
export interface AgentProcess {
  id: string;
  configFile: string;
  child: ChildProcess;
  /** From its `online as <id> ... with N tools (packs: a, b)` line; undefined until then. */
  online?: { tools: number; packs: string };
  /** Why it ended, once it has. */
  exit?: string;
}

/**
 * Starts one agent. `onExit(why)` is called when it ends (also when it cannot start).
 * @param env the environment; PATH must lead to the node the bin's shebang should use.
 */
export function startAgentProcess(cli: string, id: string, configFile: string, opts: { cwd: string; env: NodeJS.ProcessEnv; onExit: (why: string) => void }): AgentProcess {
  const child = spawn(cli, ['--config', configFile], { cwd: opts.cwd, env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  const agent: AgentProcess = { id, configFile, child };
  const online = new RegExp(`online as ${id} on \\S+ with (\\d+) tools \\(packs: ([^)]*)\\)`);
  forward(child, `[${id}]`, (line) => {
    const m = online.exec(line);
    if (m) agent.online = { tools: Number(m[1]), packs: m[2] };
  });
  const ended = (why: string) => {
    if (agent.exit) return;
    agent.exit = why;
    opts.onExit(why);
  };
  child.once('error', (e) => ended(`agent ${id} could not start: ${e.message}`));
  child.once('exit', (code, signal) => ended(`agent ${id} exited (${code ?? signal})`));
  return agent;
}

/** SIGTERM to every agent at once (each publishes `offline`); resolves when all have exited. */
export async function stopAgents(agents: AgentProcess[]): Promise<void> {
  await Promise.all(agents.map((a) => stopChild(a.child, `agent ${a.id}`, STOP_AGENT_MS)));
}
