/**
 * The agent runtime: builds the enabled packs from a validated config, leaves out packs that are
 * unavailable here (one log line each), and serves their tools with {@link RpcServer}.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { RpcServer, type ConnectOptions, type ToolDefinition } from '../protocol';
import type { AgentConfig, PackName } from './config';
import { PACKS } from './packs';
import type { Logger } from './packs/types';

/** Agent version (package.json's), announced in status and catalog. Found from source and from dist/. */
export const AGENT_VERSION: string = (() => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'node-red-contrib-toolmesh' && pkg.version) return pkg.version;
    } catch { /* not here: look one level up */ }
  }
  return '0.0.0';
})();

/** A line logger on stderr: `2026-11-23T16:50:00.000Z pi info: message`. */
export function consoleLogger(agentId: string, stream: NodeJS.WritableStream = process.stderr): Logger {
  const line = (level: string) => (msg: string) => stream.write(`${new Date().toISOString()} ${agentId} ${level}: ${msg}\n`);
  return { info: line('info'), warn: line('warn'), error: line('error') };
}

/** A running agent. */
export interface RunningAgent {
  readonly server: RpcServer;
  /** Names of the packs that are in the catalog. */
  readonly packs: string[];
  /** Publishes `offline`, closes packs, disconnects. Safe to call twice. */
  stop(): Promise<void>;
}

function connectionOf(cfg: AgentConfig): ConnectOptions {
  const b = cfg.broker;
  const password = b.password ?? (b.passwordFile ? readFileSync(b.passwordFile, 'utf8').trim() : process.env.TOOLMESH_BROKER_PASSWORD);
  const extra: ConnectOptions['extra'] = {};
  if (b.tls) {
    if (b.tls.ca) extra.ca = readFileSync(b.tls.ca);
    if (b.tls.cert) extra.cert = readFileSync(b.tls.cert);
    if (b.tls.key) extra.key = readFileSync(b.tls.key);
    extra.rejectUnauthorized = b.tls.rejectUnauthorized;
  }
  return { url: b.url, username: b.username, password, keepaliveSec: b.keepaliveSec, extra };
}

/**
 * Starts an agent and resolves once it has published `online` the first time.
 * @param extraTools tools added after the packs' (embedding programs and tests use it).
 */
export async function startAgent(cfg: AgentConfig, log: Logger = consoleLogger(cfg.agent.id), extraTools: ToolDefinition[] = []): Promise<RunningAgent> {
  const tools: ToolDefinition[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  const packs: string[] = [];
  for (const [name, section] of Object.entries(cfg.packs) as [PackName, unknown][]) {
    const pack = PACKS[name];
    const result = await pack.create(section as never, { agentId: cfg.agent.id, log });
    if ('unavailable' in result) {
      log.warn(`pack ${name} left out of the catalog: ${result.unavailable}`);
      continue;
    }
    tools.push(...result.tools);
    if (result.close) closers.push(result.close);
    packs.push(name);
  }
  tools.push(...extraTools);
  if (!cfg.broker.username) {
    log.info('broker has no authentication configured: caller policy is advisory (anyone who can reach the broker can call these tools)');
  }
  const server = new RpcServer({
    connection: connectionOf(cfg),
    agentId: cfg.agent.id,
    root: cfg.broker.root,
    info: { name: cfg.agent.name ?? cfg.agent.id, kind: cfg.agent.kind, version: AGENT_VERSION },
    tools,
    maxPayloadBytes: cfg.limits.maxPayloadBytes,
    skewToleranceMs: cfg.limits.skewToleranceMs,
  });
  server.on('warn', (m: string) => log.warn(m));
  let offline = false;
  server.on('offline', () => {
    if (!offline) log.warn(`no broker connection to ${cfg.broker.url}; reconnecting with backoff (1 s to 30 s)`);
    offline = true;
  });
  server.on('online', () => { offline = false; });
  let lastError = '';
  server.on('connection-error', (e: Error) => {
    if (e.message !== lastError) log.error(`broker ${cfg.broker.url}: ${e.message}`);
    lastError = e.message;
  });
  server.on('call', (e: { callerId: string; tool: string; durationMs: number; code?: string }) => {
    log.info(`call ${e.tool} from ${e.callerId}: ${e.code ?? 'ok'} in ${e.durationMs} ms`);
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= (async () => {
    await server.stop();
    for (const close of closers) await close();
  })());
  server.once('online', () => log.info(`online as ${cfg.agent.id} on ${cfg.broker.url} with ${tools.length} tools (packs: ${packs.join(', ') || 'none'})`));
  await server.start();
  return { server, packs, stop };
}
