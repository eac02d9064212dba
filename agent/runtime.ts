/**
 * The agent runtime: builds the enabled packs from a validated config, leaves out packs that are
 * unavailable here (one log line each), and serves their tools with {@link RpcServer}.
 */
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
// protocol modules by name, not the '../protocol' barrel: the agent does not load the caller side (rpc-client, ...)
import { RISK_LEVELS } from '../protocol/schemas';
import { RpcServer } from '../protocol/rpc-server';
import { applyToolPolicy, type ServerAuthorization } from '../protocol/policy';
import { printable, urlForLog } from '../protocol/redact';
import type { ConnectOptions } from '../protocol/mqtt';
import type { ToolDefinition } from '../protocol/tool';
import { ConfigError, type AgentConfig, type PackName } from './config';
import { PACKS } from './packs';
import type { Logger } from './packs/types';
import type { AgentAudit } from './audit';
import { resolveApprovals, UsedTokenStore } from './approvals';

/**
 * Agent version: the `version` of the agent package's own package.json (name `@toolmesh/agent`,
 * packages/agent/package.json), announced in status and catalog. Found from an installed package
 * (dist/agent/ two levels below it) and, in the repository, from source or the root's dist/.
 */
export const AGENT_VERSION: string = (() => {
  const AGENT_PACKAGE = '@toolmesh/agent';
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === AGENT_PACKAGE && pkg.version) return pkg.version;
    } catch { /* not here: look one level up */ }
    try {
      // in the repository: <root>/packages/agent/package.json beside the sources
      const pkg = JSON.parse(readFileSync(join(dir, 'packages/agent/package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === AGENT_PACKAGE && pkg.version) return pkg.version;
    } catch { /* not a repository root */ }
  }
  return '0.0.0';
})();

/**
 * A line logger on stderr: `2026-11-23T16:50:00.000Z pi info: message`. Each message is one line:
 * control characters in it (from names chosen by others) are escaped by {@link printable}.
 */
export function consoleLogger(agentId: string, stream: NodeJS.WritableStream = process.stderr): Logger {
  const line = (level: string) => (msg: string) => stream.write(`${new Date().toISOString()} ${agentId} ${level}: ${printable(msg)}\n`);
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
  // writeCache false: MQTT.js's packet writer otherwise fills a cache of 65 536 two-byte Buffers
  // on its first packet (mqtt-packet numbers.js), ~6 MB of heap an idle agent keeps for good; an
  // agent writes a few packets a second, so a small Buffer per packet costs nothing measurable.
  const extra: ConnectOptions['extra'] = { writeCache: false };
  if (b.tls) {
    if (b.tls.ca) extra.ca = readFileSync(b.tls.ca);
    if (b.tls.cert) extra.cert = readFileSync(b.tls.cert);
    if (b.tls.key) extra.key = readFileSync(b.tls.key);
    extra.rejectUnauthorized = b.tls.rejectUnauthorized;
  }
  return { url: b.url, username: b.username, password, keepaliveSec: b.keepaliveSec, extra };
}

/** The policy in force: the tools it offers (effective risks), the server's authorization, and the used-token store to close. */
interface AgentPolicy {
  tools: ToolDefinition[];
  authorization: ServerAuthorization;
  close(): Promise<void>;
}

/**
 * Applies `policy` and `approvals` to the tools and opens the used-token store (only when
 * approval keys are configured: without keys no token can verify). `audit`, when open, gets to
 * write its started record before each call of risk `audit.durableFrom` or higher runs.
 * @throws ConfigError for a risk override that lowers a risk; UsedTokenStoreError for an unreadable store.
 */
async function startPolicy(cfg: AgentConfig, all: ToolDefinition[], log: Logger, audit?: AgentAudit): Promise<AgentPolicy> {
  const { tools, problems, warnings } = applyToolPolicy(cfg.policy, all);
  if (problems.length) throw new ConfigError('<config>', problems);
  for (const w of warnings) log.warn(w);
  const approvals = resolveApprovals(cfg.approvals, cfg.agent.id, process.cwd());
  if ('problems' in approvals) throw new ConfigError('<config>', approvals.problems);
  const store = approvals.keys.size > 0
    ? await UsedTokenStore.open(approvals.usedTokensFile, approvals.skewToleranceMs, (m) => log.warn(m))
    : undefined;
  const from = cfg.policy.approvalRequiredFrom;
  const needing = tools.filter((t) => RISK_LEVELS.indexOf(t.risk) >= RISK_LEVELS.indexOf(from)).map((t) => t.name);
  if (store) log.info(`approvals: trusting key${approvals.keys.size > 1 ? 's' : ''} ${[...approvals.keys.keys()].join(', ')}; used tokens kept in ${store.file}`);
  if (needing.length && !store) {
    log.warn(`${needing.join(', ')} need a person's approval (risk ${from} or higher) but approvals.keys and approvals.keyFiles are empty, so every call to them is refused; add the confirm-gate's public key`);
  }
  const authorization: ServerAuthorization = {
    policy: cfg.policy, keys: approvals.keys, skewToleranceMs: approvals.skewToleranceMs, store,
    beforeRun: audit && ((call, approval) => audit.started(call, approval)),
  };
  return { tools, authorization, close: async () => { await store?.close(); } };
}

/** Runs `closers` newest first, each even when one before it throws. @returns the first error, if any. */
async function closeAll(closers: ReadonlyArray<() => Promise<void> | void>): Promise<unknown> {
  let first: unknown;
  for (const close of [...closers].reverse()) {
    try {
      await close();
    } catch (e) {
      first ??= e;
    }
  }
  return first;
}

/**
 * Starts an agent and resolves once it has published `online` the first time. When a step of the
 * start fails (a pack's `create` throws, the policy is refused, the broker client cannot start),
 * what was opened before it is closed again, newest first (the packs created so far, then the
 * audit log), before the error is passed on.
 * @param extraTools tools added after the packs' (embedding programs and tests use it).
 * @throws ConfigError when the policy lowers a tool's risk (`policy.risk.<tool>`); UsedTokenStoreError
 *   when the used approval tokens file cannot be read or written; AuditError when the audit log
 *   cannot be continued; whatever a pack's `create` throws.
 */
export async function startAgent(cfg: AgentConfig, log: Logger = consoleLogger(cfg.agent.id), extraTools: ToolDefinition[] = []): Promise<RunningAgent> {
  const tools: ToolDefinition[] = [];
  const closers: Array<() => Promise<void> | void> = [];
  const packs: string[] = [];
  const events = new EventEmitter();
  // opened first: a log the agent cannot continue stops the start before anything runs
  // the audit writer (agent/audit.ts, protocol/audit) loads only when the config has `audit:`
  const audit = cfg.audit ? await (await import('./audit')).openAgentAudit(cfg, log) : undefined;
  if (audit) closers.push(audit.close);
  try {
    return await serve(cfg, log, extraTools, { tools, closers, packs, events, audit });
  } catch (e) {
    const failedClose = await closeAll(closers);
    if (failedClose) log.error(`while giving up the start: ${(failedClose as Error)?.message ?? String(failedClose)}`);
    throw e;
  }
}

/** What {@link startAgent} has opened so far; {@link serve} adds to it. */
interface Starting {
  tools: ToolDefinition[];
  closers: Array<() => Promise<void> | void>;
  packs: string[];
  events: EventEmitter;
  audit?: AgentAudit;
}

/** The rest of {@link startAgent}: packs, policy, server. Pushes a closer for everything it opens. */
async function serve(cfg: AgentConfig, log: Logger, extraTools: ToolDefinition[], s: Starting): Promise<RunningAgent> {
  const { tools, closers, packs, events, audit } = s;
  for (const [name, section] of Object.entries(cfg.packs) as [PackName, unknown][]) {
    const pack = PACKS[name];
    const result = await pack.create(section as never, { agentId: cfg.agent.id, log, events });
    if ('unavailable' in result) {
      log.warn(`pack ${name} left out of the catalog: ${result.unavailable}`);
      continue;
    }
    tools.push(...result.tools);
    if (result.close) closers.push(result.close);
    packs.push(name);
  }
  tools.push(...extraTools);
  const policy = await startPolicy(cfg, tools, log, audit);
  closers.push(policy.close);
  if (!cfg.broker.username) {
    log.info('broker has no authentication configured: caller policy is advisory (anyone who can reach the broker can call these tools)');
  }
  const server = new RpcServer({
    connection: connectionOf(cfg),
    agentId: cfg.agent.id,
    root: cfg.broker.root,
    info: { name: cfg.agent.name ?? cfg.agent.id, kind: cfg.agent.kind, version: AGENT_VERSION },
    tools: policy.tools,
    authorization: policy.authorization,
    maxPayloadBytes: cfg.limits.maxPayloadBytes,
    skewToleranceMs: cfg.limits.skewToleranceMs,
    maxRunningPerCaller: cfg.limits.maxRunningPerCaller,
    maxRunning: cfg.limits.maxRunning,
  });
  server.on('warn', (m: string) => log.warn(m));
  audit?.attach(server);
  let offline = false;
  server.on('caller-lost', (callerId: string) => events.emit('caller-lost', callerId));
  server.on('offline', () => {
    events.emit('broker-offline');
    if (!offline) log.warn(`no broker connection to ${urlForLog(cfg.broker.url)}; reconnecting for as long as the agent runs (backoff with jitter, at most 5 s apart)`);
    offline = true;
  });
  server.on('online', () => {
    if (offline) log.info(`back online on ${urlForLog(cfg.broker.url)}`);
    offline = false;
  });
  let lastError = '';
  server.on('connection-error', (e: Error) => {
    if (e.message !== lastError) log.error(`broker ${urlForLog(cfg.broker.url)}: ${e.message}`);
    lastError = e.message;
  });
  // calls refused with BUSY: one warning a minute with the count, not a line each (a flood must not flood the log)
  let busy = 0;
  let busyLogged = 0;
  server.on('busy', (callerId: string, limit: string) => {
    busy++;
    if (Date.now() - busyLogged < 60_000) return;
    log.warn(`refused ${busy} call${busy > 1 ? 's' : ''} with BUSY since the last such line (latest from ${printable(callerId)}, limit ${limit}: limits.maxRunningPerCaller ${cfg.limits.maxRunningPerCaller}, limits.maxRunning ${cfg.limits.maxRunning})`);
    busy = 0;
    busyLogged = Date.now();
  });
  server.on('call', (e: { callerId: string; tool: string; durationMs: number; code?: string; onBehalfOf?: string }) => {
    // onBehalfOf matches ^[A-Za-z0-9_.-]{1,64}$ (validated with the request): the caller's word for its client
    log.info(`call ${printable(e.tool)} from ${printable(e.callerId)}${e.onBehalfOf ? ` for ${e.onBehalfOf}` : ''}: ${e.code ?? 'ok'} in ${e.durationMs} ms`);
  });
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= (async () => {
    events.emit('stopping');
    await server.stop();
    const failed = await closeAll(closers);
    if (failed) throw failed;
  })());
  server.once('online', () => log.info(`online as ${cfg.agent.id} on ${urlForLog(cfg.broker.url)} with ${policy.tools.length} tools (packs: ${packs.join(', ') || 'none'})`));
  try {
    await server.start();
  } catch (e) {
    await server.stop().catch(() => undefined);
    throw e;
  }
  return { server, packs, stop };
}
