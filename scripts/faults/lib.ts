/**
 * Shared parts of the fault suite and the soak (scripts/faults): real processes started by pid
 * and always stopped again (also on failure, Ctrl-C or an uncaught error), Debian's mosquitto
 * with a config file of our own in a temp dir, the built `toolmesh-agent` binary, a real Node-RED
 * with this pack installed, a status observer, execution records and resident memory.
 *
 * Everything listens on and connects to 127.0.0.1 only.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import mqtt from 'mqtt';
import { topics } from '@toolmesh/agent/protocol/topics';

/** The repository root: the nearest directory up from here whose package.json is this project's. */
export const REPO_ROOT: string = (() => {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')).name === '@toolmesh/node-red-toolmesh') return dir;
    } catch { /* not here */ }
  }
  throw new Error(`cannot find the repository root above ${__dirname}`);
})();

/** The built agent binary (run through its shebang, as `toolmesh-agent` runs once installed). */
export const AGENT_CLI = join(REPO_ROOT, 'packages/agent/dist/agent/cli.js');
export const MOSQUITTO = '/usr/sbin/mosquitto';
const NODE_RED = join(REPO_ROOT, 'node_modules/node-red/red.js');

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Prints one progress line on stderr (the table goes to stdout). */
export const say = (msg: string) => process.stderr.write(`[faults] ${msg}\n`);

/**
 * Polls `check` every 20 ms until it returns a truthy value.
 * @returns the value, or undefined after `ms` milliseconds (never throws for a timeout).
 */
export async function waitFor<T>(check: () => T | Promise<T>, ms: number): Promise<NonNullable<T> | undefined> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v) return v as NonNullable<T>;
    if (Date.now() > end) return undefined;
    await sleep(20);
  }
}

/** A free TCP port on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

/** True when 127.0.0.1:`port` accepts a TCP connection now. */
export function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** Resident set size of a process, MB (from /proc/<pid>/status VmRSS), or NaN when it is gone. */
export function rssMb(pid: number | undefined): number {
  if (!pid) return NaN;
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) / 1024 : NaN;
  } catch {
    return NaN;
  }
}

// ---- cleanup of everything this process started -------------------------------------------

const children = new Set<ChildProcess>();
const tempDirs = new Set<string>();

/** Kills every child still running (SIGKILL, by pid) and removes the temp dirs. Synchronous: safe in 'exit'. */
export function killEverything(): void {
  for (const c of children) {
    if (c.exitCode === null && c.signalCode === null && c.pid) {
      try { process.kill(c.pid, 'SIGKILL'); } catch { /* already gone */ }
    }
  }
  children.clear();
  for (const d of tempDirs) rmSync(d, { recursive: true, force: true });
  tempDirs.clear();
}
process.on('exit', killEverything);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.once(sig, () => {
    say(`${sig}: stopping every process this run started`);
    killEverything();
    process.exit(130);
  });
}

/** A temp dir, readable by the `mosquitto` user (a broker started as root switches to it); removed at exit. */
export function tempDir(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `toolmesh-${prefix}-`));
  chmodSync(d, 0o777);
  tempDirs.add(d);
  return d;
}

/** Removes a temp dir now. */
export function removeDir(d: string): void {
  rmSync(d, { recursive: true, force: true });
  tempDirs.delete(d);
}

/** A child process this run started, with its output kept (the last `keepChars` characters). */
export class Child {
  readonly proc: ChildProcess;
  private out = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Epoch ms of the exit, 0 while running. */
  exitedAt = 0;

  constructor(readonly name: string, cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv; keepChars?: number } = {}) {
    const keep = opts.keepChars ?? 200_000;
    this.proc = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this.proc);
    const add = (d: Buffer) => {
      this.out += d.toString();
      if (this.out.length > keep * 2) this.out = this.out.slice(-keep);
    };
    this.proc.stdout!.on('data', add);
    this.proc.stderr!.on('data', add);
    this.exited = new Promise((resolve) => this.proc.once('exit', (code, signal) => {
      this.exitedAt = Date.now();
      children.delete(this.proc);
      resolve({ code, signal });
    }));
  }

  get pid(): number | undefined { return this.proc.pid; }
  get running(): boolean { return this.proc.exitCode === null && this.proc.signalCode === null; }
  /** How it exited, e.g. `code 0` or `signal SIGKILL`, or `running`. */
  get exitText(): string {
    if (this.running) return 'running';
    return this.proc.exitCode !== null ? `code ${this.proc.exitCode}` : `signal ${this.proc.signalCode}`;
  }
  output(): string { return this.out; }
  rss(): number { return rssMb(this.pid); }

  /** Sends `signal` to this child's pid. */
  kill(signal: NodeJS.Signals): void {
    if (this.running && this.pid) process.kill(this.pid, signal);
  }

  /** SIGTERM, SIGKILL after `ms` (default 10 000); resolves once it has exited. */
  async stop(ms = 10_000): Promise<void> {
    if (!this.running) return;
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), ms);
    await this.exited;
    clearTimeout(t);
  }
}

// ---- mosquitto -----------------------------------------------------------------------------

/**
 * Debian's mosquitto on a fixed 127.0.0.1 port, with its own config file, that can be stopped
 * (SIGTERM) and started again on the same port.
 * - `persistence: false`: `persistence false`.
 * - `persistence: true`: Debian's default configuration (/etc/mosquitto/mosquitto.conf:
 *   `persistence true` with a `persistence_location`, a log file), here in the temp dir, so
 *   retained messages survive a restart.
 */
export class MosquittoBroker {
  private child?: Child;
  readonly conf: string;
  readonly url: string;

  private constructor(readonly port: number, readonly dir: string, persistence: boolean) {
    this.url = `mqtt://127.0.0.1:${port}`;
    this.conf = join(dir, 'mosquitto.conf');
    const data = join(dir, 'data');
    mkdirSync(data, { recursive: true });
    chmodSync(data, 0o777);
    writeFileSync(this.conf, [
      `listener ${port} 127.0.0.1`,
      'allow_anonymous true',
      ...(persistence
        ? ['persistence true', `persistence_location ${data}/`, `log_dest file ${data}/mosquitto.log`]
        : ['persistence false', 'log_dest stderr']),
      '',
    ].join('\n'));
  }

  /** Creates the config on a free port and starts the broker. */
  static async start(persistence = false): Promise<MosquittoBroker> {
    if (!existsSync(MOSQUITTO)) throw new Error(`${MOSQUITTO} is missing: install the Debian package mosquitto (scripts/install-system-deps.sh)`);
    const b = new MosquittoBroker(await freePort(), tempDir('faults-mosquitto'), persistence);
    await b.restart();
    return b;
  }

  get pid(): number | undefined { return this.child?.pid; }
  get running(): boolean { return this.child?.running ?? false; }
  rss(): number { return this.child?.rss() ?? NaN; }

  /** Starts it (again) on the same port. @returns epoch ms when it accepted its first connection. */
  async restart(): Promise<number> {
    if (this.child?.running) throw new Error('mosquitto is running');
    const child = new Child('mosquitto', MOSQUITTO, ['-c', this.conf]);
    this.child = child;
    const up = await waitFor(async () => (await accepts(this.port)) || !child.running, 10_000);
    if (!up || !child.running) throw new Error(`mosquitto did not start on ${this.port} (${child.exitText}): ${child.output()}`);
    return Date.now();
  }

  /** SIGTERM (it publishes every client's will, then exits); resolves when it has exited. */
  async stop(): Promise<void> {
    await this.child?.stop();
  }
}

// ---- the agent -----------------------------------------------------------------------------

/** One execution of `diag_sleep` as the diag pack records it. */
export interface ExecRecord { caller: string; id: string | number; ms: number; ts: number; tag?: string }

/** The built `toolmesh-agent` with the diag pack (diag_echo and the recording diag_sleep). */
export class AgentProcess {
  readonly child: Child;
  readonly recordFile: string;
  readonly configFile: string;

  /**
   * Writes `<dir>/<id>.yaml` and starts `packages/agent/dist/agent/cli.js --config <it>`.
   * @param keepaliveSec MQTT keepalive, s (`broker.keepaliveSec`; default 10, the agent's).
   */
  constructor(readonly id: string, brokerUrl: string, dir: string, keepaliveSec?: number) {
    this.recordFile = join(dir, `${id}-executions.jsonl`);
    this.configFile = join(dir, `${id}.yaml`);
    const broker = keepaliveSec ? `{ url: "${brokerUrl}", keepaliveSec: ${keepaliveSec} }` : `{ url: "${brokerUrl}" }`;
    writeFileSync(this.configFile, [
      'version: 1',
      `agent: { id: ${id}, kind: faults }`,
      `broker: ${broker}`,
      // scenarios a and b keep 100 calls of one caller in flight (default bounds: 8 per caller, 32 in all)
      'limits: { maxRunningPerCaller: 128, maxRunning: 128 }',
      'packs:',
      `  diag: { sleepTool: true, recordFile: "${this.recordFile}" }`,
      '',
    ].join('\n'));
    this.child = new Child(`agent ${id}`, AGENT_CLI, ['--config', this.configFile], { cwd: dir });
  }

  get pid(): number | undefined { return this.child.pid; }
  get running(): boolean { return this.child.running; }
  rss(): number { return this.child.rss(); }

  /** Every recorded diag_sleep execution so far. */
  executions(): ExecRecord[] {
    if (!existsSync(this.recordFile)) return [];
    return readFileSync(this.recordFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as ExecRecord);
  }
}

/** Executions beyond the first of each (caller, id): a re-sent request that ran the tool again. */
export function duplicates(records: ExecRecord[]): number {
  const seen = new Set<string>();
  let dups = 0;
  for (const r of records) {
    const k = `${r.caller}\u0000${r.id}`;
    if (seen.has(k)) dups++;
    else seen.add(k);
  }
  return dups;
}

// ---- status observer -----------------------------------------------------------------------

/** One agent status message as the observer saw it. */
export interface SeenStatus { at: number; agent: string; state: string; instance?: string; ts?: number; retained: boolean }

/**
 * A plain MQTT client, independent of the protocol code under test, that records every agent
 * status message (`{root}/agents/+/status`). It reconnects every 100 ms, so it sees an agent's
 * return as soon as the broker is back.
 */
export class StatusObserver {
  readonly seen: SeenStatus[] = [];
  private readonly client: mqtt.MqttClient;

  constructor(url: string) {
    const t = topics();
    this.client = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 100, connectTimeout: 2000 });
    this.client.on('connect', () => this.client.subscribe(t.anyAgentStatus, { qos: 1 }));
    this.client.on('error', () => {});
    this.client.on('message', (topic, payload, packet) => {
      const parsed = t.parse(topic);
      if (parsed?.kind !== 'agentStatus') return;
      try {
        const s = payload.length ? JSON.parse(payload.toString()) as { state?: string; instance?: string; ts?: number } : { state: 'empty' };
        this.seen.push({ at: Date.now(), agent: parsed.agentId, state: String(s.state), instance: s.instance, ts: s.ts, retained: packet.retain });
      } catch { /* not JSON: not an agent's status */ }
    });
  }

  /**
   * Waits for `agent` to announce `online` that it published at or after `since` (epoch ms; the
   * status's own `ts`, so a retained `online` from before a restart does not count).
   * @returns the status, or undefined after `ms`.
   */
  online(agent: string, since: number, ms: number): Promise<SeenStatus | undefined> {
    return waitFor(() => this.seen.find((s) => s.agent === agent && s.state === 'online' && (s.ts ?? 0) >= since - 5), ms);
  }

  /** The first `state` message of `agent` seen at or after `since` (epoch ms), waiting up to `ms`. */
  first(agent: string, state: string, since: number, ms: number): Promise<SeenStatus | undefined> {
    return waitFor(() => this.seen.find((s) => s.agent === agent && s.state === state && s.at >= since), ms);
  }

  close(): Promise<void> {
    return this.client.endAsync(true).then(() => undefined, () => undefined);
  }
}

// ---- Node-RED ------------------------------------------------------------------------------

/**
 * A real Node-RED (`node node_modules/node-red/red.js --userDir <dir> --port <port>`) with this
 * pack installed as a user installs it (the userDir's node_modules links to the repository, and
 * its package.json lists it). The userDir and port stay the same across {@link restart}, so the
 * same flows start again, with the embedded broker on the same port.
 */
export class NodeRed {
  private child?: Child;
  readonly url: string;

  private constructor(readonly port: number, readonly userDir: string, private readonly logLevel: string) {
    this.url = `http://127.0.0.1:${port}`;
  }

  /**
   * Writes the userDir (settings bound to 127.0.0.1, telemetry off) with `flows` and starts it.
   * @param logLevel Node-RED's console log level (default `info`).
   */
  static async start(flows: unknown[], logLevel = 'info'): Promise<NodeRed> {
    for (const f of ['dist/nodes/tool-registry/tool-registry.js', 'node_modules/node-red/red.js']) {
      if (!existsSync(join(REPO_ROOT, f))) throw new Error(`${f} is missing: run npm run build after npm ci`);
    }
    const userDir = tempDir('faults-node-red');
    mkdirSync(join(userDir, 'node_modules'));
    mkdirSync(join(userDir, 'node_modules/@toolmesh'), { recursive: true });
    symlinkSync(REPO_ROOT, join(userDir, 'node_modules/@toolmesh/node-red-toolmesh'), 'dir');
    writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'toolmesh-faults-userdir', version: '0.0.0', private: true, dependencies: { '@toolmesh/node-red-toolmesh': `file:${REPO_ROOT}` } }));
    const settings = {
      uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: 'toolmesh-faults',
      telemetry: { enabled: false, updateNotification: false }, editorTheme: { tours: false },
      logging: { console: { level: logLevel, metrics: false, audit: false } },
    };
    writeFileSync(join(userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings)};\n`);
    writeFileSync(join(userDir, 'flows.json'), JSON.stringify(flows));
    const nr = new NodeRed(await freePort(), userDir, logLevel);
    await nr.restart();
    return nr;
  }

  get pid(): number | undefined { return this.child?.pid; }
  get running(): boolean { return this.child?.running ?? false; }
  rss(): number { return this.child?.rss() ?? NaN; }
  output(): string { return this.child?.output() ?? ''; }
  get exitText(): string { return this.child?.exitText ?? 'not started'; }

  /** Starts it (again) and resolves once its admin API answers and the flows run. */
  async restart(): Promise<void> {
    if (this.child?.running) throw new Error('Node-RED is running');
    const child = new Child('node-red', process.execPath, [NODE_RED, '--userDir', this.userDir, '--port', String(this.port)], {
      cwd: this.userDir, env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
    });
    this.child = child;
    const ok = await waitFor(async () => {
      if (!child.running) return true;
      if (this.logLevel === 'info' && !/Started flows/.test(child.output())) return false;
      try {
        return (await fetch(`${this.url}/flows`, { headers: { 'Node-RED-API-Version': 'v2' } })).ok;
      } catch {
        return false;
      }
    }, 60_000);
    if (!ok || !child.running) throw new Error(`Node-RED did not start (${child.exitText}); its output:\n${child.output().slice(-4000)}`);
  }

  /** SIGTERM (SIGKILL after 15 s); resolves once it has exited. */
  async stop(): Promise<void> {
    await this.child?.stop(15_000);
  }

  /**
   * One tool call through the flow of {@link callFlow}: POST /call → remote-tool → the reply.
   * @returns the reply (`msg.toolResult` fields), or `{ httpError }` when the request failed.
   */
  async call(body: { agent: string; tool: string; arguments?: Record<string, unknown>; kind?: string }, timeoutMs = 20_000): Promise<CallReply> {
    try {
      const res = await fetch(`${this.url}/call`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body), signal: AbortSignal.timeout(timeoutMs),
      });
      if (!res.ok) return { httpError: `HTTP ${res.status}` };
      return await res.json() as CallReply;
    } catch (e) {
      return { httpError: (e as Error).message };
    }
  }
}

/** What POST /call answers: the remote-tool's `msg.toolResult` in short, or why the HTTP request failed. */
export interface CallReply { isError?: boolean; code?: string; durationMs?: number; structuredContent?: Record<string, unknown>; httpError?: string }

/**
 * Flow nodes for {@link NodeRed.call}: `POST /call` with `{agent, tool, arguments, kind}` →
 * remote-tool in dynamic mode (msg.toolCall) → `{isError, code, durationMs, structuredContent}`.
 * `kind: "timeout"` goes through a second remote-tool whose budget is `shortTimeoutMs`.
 * @param registry the tool-registry config node (embedded or external broker).
 */
export function callFlow(registry: Record<string, unknown>, shortTimeoutMs = 200): unknown[] {
  const z = 'faults';
  const at = { z, x: 100, y: 100 };
  const toToolCall = [
    'const p = msg.payload || {};',
    'msg.toolCall = { id: String(p.id || ""), name: p.tool, agent: p.agent, tool: p.tool, arguments: p.arguments || {}, risk: "low" };',
    'return p.kind === "timeout" ? [null, msg] : [msg, null];',
  ].join('\n');
  const toReply = [
    'const r = msg.toolResult || {};',
    'const sc = r.structuredContent;',
    'msg.payload = { isError: r.isError === true, code: sc && sc.error ? sc.error.code : undefined, durationMs: r.durationMs, structuredContent: sc };',
    'msg.statusCode = 200;',
    'return msg;',
  ].join('\n');
  return [
    { id: z, type: 'tab', label: 'faults' },
    { id: 'reg', ...registry, type: 'toolmesh-tool-registry' },
    { id: 'in', type: 'http in', ...at, url: '/call', method: 'post', wires: [['route']] },
    { id: 'route', type: 'function', ...at, func: toToolCall, outputs: 2, wires: [['rt'], ['rtShort']] },
    { id: 'rt', type: 'toolmesh-remote-tool', ...at, registry: 'reg', wires: [['reply']] },
    { id: 'rtShort', type: 'toolmesh-remote-tool', ...at, registry: 'reg', timeout: String(shortTimeoutMs), wires: [['reply']] },
    { id: 'reply', type: 'function', ...at, func: toReply, outputs: 1, wires: [['out']] },
    { id: 'out', type: 'http response', ...at, statusCode: '200' },
  ];
}

/** p-th percentile (0..100) of `values`, ms; NaN when empty. */
export function percentile(values: number[], p: number): number {
  if (!values.length) return NaN;
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** `12.3` for a number of MB, `-` for NaN. */
export const mb = (v: number) => (Number.isFinite(v) ? v.toFixed(1) : '-');
