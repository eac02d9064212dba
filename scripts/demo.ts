#!/usr/bin/env node
/**
 * `npm start`: the one-command ToolMesh demo (built to dist/scripts/demo.js).
 *
 * 1. A Node-RED user directory `.toolmesh-demo/` at the repository root, set up the way a user
 *    installs the pack: `node_modules/node-red-contrib-toolmesh` is a symlink to this repository
 *    and `package.json` lists it, so Node-RED loads the nodes with their locales and lists the
 *    example flows under Import > Examples. `settings.js` is written once (with a generated
 *    credentialSecret) and then left to the user; the first run also copies
 *    flows/docker-management.json as the user's `flows.json`, later runs keep the user's flows.
 * 2. Docker: the engine at a unix:// `DOCKER_HOST` or /var/run/docker.sock when it answers; else,
 *    as root with Debian's dockerd installed, a private dockerd under `.toolmesh-demo/docker`
 *    (scripts/dockerd.ts); else the docker pack is left out. With an engine, the demo container
 *    `toolmesh-demo-web` (BusyBox httpd plus a heartbeat log line, network mode none) is created
 *    and started.
 * 3. Node-RED as a child process (its tool-registry runs the embedded MQTT broker), then the Pi
 *    agent (`dist/agent/cli.js --config .toolmesh-demo/pi-agent.yaml`). Their log lines are
 *    prefixed `[node-red]` and `[pi]`.
 * 4. Ctrl-C / SIGTERM stops the agent (it publishes `offline`), then Node-RED, then stops the demo
 *    container if this run started it (the container itself is kept), then the private dockerd if
 *    this run started it. Only processes this run started are signalled, by pid.
 *
 * Environment: TOOLMESH_UI_HOST (127.0.0.1), TOOLMESH_UI_PORT (1880), TOOLMESH_MQTT_PORT (1883),
 * TOOLMESH_ADMIN_PASSWORD (required for a non-loopback TOOLMESH_UI_HOST: editor login `admin`),
 * TOOLMESH_LLM_BASE_URL / TOOLMESH_LLM_API_KEY / TOOLMESH_LLM_MODEL (passed to Node-RED for the
 * llm-agent node), DOCKER_HOST (a unix:// engine socket).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import { dirname, join, relative, resolve } from 'node:path';
import readline from 'node:readline';
import Docker from 'dockerode';
import { stringify as toYaml } from 'yaml';
import { SYSTEM_COMMANDS } from '../agent/packs/system';
import { ensureDockerd, pingSocket, stopDockerd, TEST_IMAGE } from './dockerd';

/** The npm name of this pack. */
export const PACKAGE = 'node-red-contrib-toolmesh';
/** The example flow the first run installs as the user's flows. */
export const EXAMPLE_FLOW = 'docker-management.json';
/** Agent id of the demo agent (the example flow calls agent `pi`). */
export const AGENT_ID = 'pi';
/** The container the example flow restarts and reads logs of. */
export const DEMO_CONTAINER = 'toolmesh-demo-web';
/** Its image, imported from Debian's busybox-static (no registry is needed). */
export const DEMO_IMAGE = TEST_IMAGE;
/** The caller id the printed mosquitto lines use. */
const SHELL_CALLER = 'cli';
const TOPIC_ROOT = 'toolmesh/v1';

const DEFAULTS = { uiHost: '127.0.0.1', uiPort: 1880, mqttPort: 1883 } as const;
const NODE_RED_READY_MS = 60_000;
const BROKER_READY_MS = 30_000;
const AGENT_READY_MS = 20_000;
const STOP_AGENT_MS = 10_000;
const STOP_NODE_RED_MS = 20_000;

/** A problem the user can fix; printed as one message without a stack. */
export class DemoError extends Error {}

/** What the environment asks for. */
export interface DemoOptions {
  uiHost: string;
  uiPort: number;
  mqttPort: number;
  /** Set: Node-RED's adminAuth gets user `admin` with this password. */
  adminPassword?: string;
  /** TOOLMESH_UI_HOST was given (even as 127.0.0.1). */
  uiHostGiven: boolean;
}

/** True for a loopback bind address (reachable from this machine only). */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

function portOf(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 65535) throw new DemoError(`${name}=${raw}: must be a TCP port number from 1 to 65535`);
  return n;
}

/**
 * Reads TOOLMESH_UI_HOST, TOOLMESH_UI_PORT, TOOLMESH_MQTT_PORT and TOOLMESH_ADMIN_PASSWORD.
 * @throws DemoError for a bad port, equal ports, or a non-loopback UI host without a password.
 */
export function readOptions(env: NodeJS.ProcessEnv = process.env): DemoOptions {
  const uiHost = env.TOOLMESH_UI_HOST?.trim() || DEFAULTS.uiHost;
  const uiPort = portOf(env, 'TOOLMESH_UI_PORT', DEFAULTS.uiPort);
  const mqttPort = portOf(env, 'TOOLMESH_MQTT_PORT', DEFAULTS.mqttPort);
  if (uiPort === mqttPort) throw new DemoError(`TOOLMESH_UI_PORT and TOOLMESH_MQTT_PORT are both ${uiPort}; give them different ports`);
  const adminPassword = env.TOOLMESH_ADMIN_PASSWORD || undefined;
  if (!isLoopbackHost(uiHost) && !adminPassword) {
    throw new DemoError(`TOOLMESH_UI_HOST=${uiHost} would expose the Node-RED editor, which can run code and `
      + 'call Docker tools, beyond this machine. Set TOOLMESH_ADMIN_PASSWORD as well: the editor then asks for a '
      + 'login (user admin). Or leave TOOLMESH_UI_HOST unset (127.0.0.1).');
  }
  return { uiHost, uiPort, mqttPort, adminPassword, uiHostGiven: Boolean(env.TOOLMESH_UI_HOST?.trim()) };
}

/** The demo agent's config file (YAML, `version: 1`); `dockerSocket` undefined leaves the docker pack out. */
export function agentConfigYaml(opts: { mqttPort: number; dockerSocket?: string }): string {
  const packs: Record<string, unknown> = {};
  if (opts.dockerSocket) packs.docker = { socketPath: opts.dockerSocket, images: [{ image: DEMO_IMAGE }] };
  packs.system = { commands: [...SYSTEM_COMMANDS], units: [] };
  packs.diag = {};
  const config = {
    version: 1,
    agent: { id: AGENT_ID, name: 'Demo Pi (this machine)', kind: 'pi' },
    broker: { url: `mqtt://127.0.0.1:${opts.mqttPort}` },
    packs,
  };
  return '# Written by the ToolMesh demo (npm start) on every start; edits are overwritten.\n'
    + '# Run it by hand with: toolmesh-agent --config <this file>\n' + toYaml(config);
}

/** A flow node as far as the demo reads it. */
interface FlowNode {
  id: string;
  type: string;
  mode?: string;
  port?: number | string;
  host?: string;
  [key: string]: unknown;
}

/** A copy of `flow` whose embedded tool-registry brokers listen on 127.0.0.1:`mqttPort`. */
export function patchFlow(flow: FlowNode[], mqttPort: number): FlowNode[] {
  return flow.map((n) => (n.type === 'tool-registry' && (n.mode ?? 'embedded') === 'embedded'
    ? { ...n, port: mqttPort, host: '127.0.0.1' }
    : { ...n }));
}

// ---------------------------------------------------------------------------------------------

const say = (msg: string) => process.stdout.write(`[demo] ${msg}\n`);

/** The repository root: the nearest directory up from here whose package.json is this pack's. */
function findRoot(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === PACKAGE) return dir;
    } catch { /* look one level up */ }
  }
  throw new DemoError(`cannot find the ${PACKAGE} package.json above ${__dirname}`);
}

/** Resolves true when `host:port` can be bound now (false when in use). */
function portFree(host: string, port: number): Promise<boolean> {
  return new Promise((resolvePort, reject) => {
    const srv = net.createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'EADDRINUSE' || e.code === 'EACCES') resolvePort(false);
      else reject(new DemoError(`cannot listen on ${host}:${port}: ${e.message}`));
    });
    srv.listen({ host, port, exclusive: true }, () => srv.close(() => resolvePort(true)));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Polls `check` every 250 ms until it resolves true; false after `ms`, or as soon as `abort()` says why. */
async function waitFor(check: () => Promise<boolean>, ms: number, abort: () => string | undefined): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const why = abort();
    if (why) throw new DemoError(why);
    if (await check()) return true;
    if (Date.now() > until) return false;
    await sleep(250);
  }
}

function httpAnswers(url: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      ok((res.statusCode ?? 500) < 500);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => ok(false));
  });
}

function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = net.connect({ host, port });
    s.setTimeout(1000, () => { s.destroy(); ok(false); });
    s.once('connect', () => { s.end(); ok(true); });
    s.once('error', () => ok(false));
  });
}

/** Forwards a child's output line by line with a prefix; `onLine` sees each line too. */
function forward(child: ChildProcess, prefix: string, onLine?: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      process.stdout.write(`${prefix} ${line}\n`);
      onLine?.(line);
    });
  }
}

/** SIGTERM to a child this demo started (by pid), SIGKILL after `ms`; resolves once it has exited. */
async function stopChild(child: ChildProcess | undefined, what: string, ms: number): Promise<void> {
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  say(`stopping ${what} (pid ${child.pid})`);
  child.kill('SIGTERM');
  const timer = setTimeout(() => {
    say(`${what} did not stop within ${ms / 1000} s: SIGKILL`);
    child.kill('SIGKILL');
  }, ms);
  await exited;
  clearTimeout(timer);
}

// ---------------------------------------------------------------------------------------------
// The user directory

/**
 * Makes `<userDir>` look like a Node-RED user directory with this pack installed; writes
 * settings.js unless present. Returns true when flows.json had to be created (first run).
 */
function prepareUserDir(root: string, userDir: string, opts: DemoOptions): boolean {
  const modules = join(userDir, 'node_modules');
  mkdirSync(modules, { recursive: true });

  const link = join(modules, PACKAGE);
  const target = relative(dirname(link), root);
  let stat;
  try { stat = lstatSync(link); } catch { stat = undefined; }
  if (stat?.isSymbolicLink() && resolve(dirname(link), readlinkSync(link)) !== root) {
    unlinkSync(link);
    stat = undefined;
  }
  if (!stat) symlinkSync(target, link, 'dir');
  else if (!stat.isSymbolicLink()) say(`${link} is a real directory, not a link to this repository: Node-RED loads that copy`);

  const pkgFile = join(userDir, 'package.json');
  let pkg: { dependencies?: Record<string, string>; [k: string]: unknown } = {
    name: 'toolmesh-demo', version: '0.0.0', private: true,
    description: 'Node-RED user directory of the ToolMesh demo (npm start)',
  };
  if (existsSync(pkgFile)) pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const spec = `file:${relative(userDir, root) || '.'}`;
  if (pkg.dependencies?.[PACKAGE] !== spec) {
    pkg.dependencies = { ...pkg.dependencies, [PACKAGE]: spec };
    writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  }

  const settingsFile = join(userDir, 'settings.js');
  if (!existsSync(settingsFile)) {
    const secret = randomBytes(24).toString('hex');
    writeFileSync(settingsFile, `/**
 * Node-RED settings of the ToolMesh demo, written by its first run (npm start); the demo never
 * overwrites this file. On every start the demo passes the editor's address and port on the
 * command line (TOOLMESH_UI_HOST, TOOLMESH_UI_PORT), and adminAuth (user admin) when
 * TOOLMESH_ADMIN_PASSWORD is set; the values below apply when you run Node-RED by hand:
 *   node node_modules/node-red/red.js --userDir .toolmesh-demo
 */
module.exports = {
    uiHost: ${JSON.stringify(DEFAULTS.uiHost)},
    uiPort: ${DEFAULTS.uiPort},
    flowFile: "flows.json",
    // Encrypts flows_cred.json (API keys, broker passwords). Generated once; keep it with the flows.
    credentialSecret: ${JSON.stringify(secret)},
    logging: {
        console: { level: "info", metrics: false, audit: false }
    }
};
`, { mode: 0o600 });
    say(`wrote ${relative(root, settingsFile)} (credentialSecret generated)`);
  }

  const flowsFile = join(userDir, 'flows.json');
  if (existsSync(flowsFile)) {
    // later runs keep the user's flows; warn when their broker port is not the one the agent will use
    try {
      const flows = JSON.parse(readFileSync(flowsFile, 'utf8')) as FlowNode[];
      const ports = flows.filter((n) => n.type === 'tool-registry' && (n.mode ?? 'embedded') === 'embedded').map((n) => Number(n.port ?? 1883));
      if (ports.length && !ports.includes(opts.mqttPort)) {
        say(`note: the tool-registry in ${relative(root, flowsFile)} runs its broker on port ${ports.join(', ')}, but `
          + `TOOLMESH_MQTT_PORT is ${opts.mqttPort}; the agent connects to ${opts.mqttPort}. Change one of them `
          + `(or delete ${relative(root, flowsFile)} to start again from the example).`);
      }
    } catch { /* Node-RED reports a broken flow file itself */ }
    return false;
  }
  let source = join(root, 'flows', EXAMPLE_FLOW);
  if (!existsSync(source)) source = join(root, 'examples', EXAMPLE_FLOW);
  const flow = patchFlow(JSON.parse(readFileSync(source, 'utf8')) as FlowNode[], opts.mqttPort);
  writeFileSync(flowsFile, `${JSON.stringify(flow, null, 4)}\n`);
  say(`first run: installed ${relative(root, source)} as ${relative(root, flowsFile)}`);
  return true;
}

/** Writes (or removes) the -D settings file with adminAuth; returns its path when written. */
function writeAdminAuth(root: string, userDir: string, password: string | undefined): string | undefined {
  const file = join(userDir, '.admin-auth.json');
  if (!password) {
    rmSync(file, { force: true });
    return undefined;
  }
  const nodeRedDir = dirname(require.resolve('node-red/package.json', { paths: [root] }));
  let bcrypt: { hashSync(pw: string, rounds: number): string };
  try {
    // bcryptjs ships as a dependency of node-red (its adminAuth uses it); not one of ours
    bcrypt = require(require.resolve('bcryptjs', { paths: [nodeRedDir] }));
  } catch (e) {
    throw new DemoError(`TOOLMESH_ADMIN_PASSWORD needs bcryptjs, which Node-RED installs as its dependency, but it is not resolvable from ${nodeRedDir}: ${(e as Error).message}`);
  }
  const adminAuth = { type: 'credentials', users: [{ username: 'admin', password: bcrypt.hashSync(password, 10), permissions: '*' }] };
  writeFileSync(file, JSON.stringify({ adminAuth }), { mode: 0o600 });
  return file;
}

// ---------------------------------------------------------------------------------------------
// Docker

interface Engine {
  socketPath: string;
  /** This run started the engine (a private dockerd); stop it on exit. */
  startedHere: boolean;
}

/** Finds or starts a Docker engine; undefined (after saying why, in one line) when there is none. */
async function findEngine(userDir: string): Promise<Engine | undefined> {
  const host = process.env.DOCKER_HOST;
  const candidates = host?.startsWith('unix://') ? [host.slice('unix://'.length)] : [];
  if (host && !host.startsWith('unix://')) say(`DOCKER_HOST=${host} is not a unix:// socket; the docker pack only uses local sockets`);
  candidates.push('/var/run/docker.sock');
  for (const socketPath of candidates) {
    if (await pingSocket(socketPath)) {
      say(`Docker engine: ${socketPath}`);
      return { socketPath, startedHere: false };
    }
  }
  const isRoot = process.getuid?.() === 0;
  const missing = ['/usr/sbin/dockerd', '/usr/bin/docker', '/bin/busybox'].filter((p) => !existsSync(p));
  if (!isRoot || missing.length) {
    say(`no Docker engine answers at ${candidates.join(' or ')}, so the agent runs without its docker pack. `
      + (isRoot ? `To get it: apt-get install docker.io busybox-static (missing: ${missing.join(', ')}).`
        : 'To get it: apt-get install docker.io and start Docker, or run the demo as root so it starts a private dockerd.'));
    return undefined;
  }
  let dir = join(userDir, 'docker');
  // a unix socket path may not exceed 107 bytes
  if (join(dir, 'docker.sock').length > 100) dir = join('/tmp', `toolmesh-demo-dockerd-${process.getuid?.() ?? 0}`);
  const socketPath = join(dir, 'docker.sock');
  const leftover = await pingSocket(socketPath);
  delete process.env.TOOLMESH_TEST_DOCKER_SOCKET; // that variable is for tests; the demo picks its own engine
  say(leftover ? `reusing the private dockerd an earlier demo run left at ${socketPath} (it keeps running after this run)`
    : `no Docker engine at ${candidates.join(' or ')}: starting a private dockerd on ${socketPath} (log: ${join(dir, 'dockerd.log')})`);
  try {
    const engine = await ensureDockerd(dir);
    if (!engine) throw new Error('prerequisites missing');
    return { socketPath: engine.socketPath, startedHere: !leftover };
  } catch (e) {
    say(`the private dockerd did not start, so the agent runs without its docker pack: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** Makes sure {@link DEMO_IMAGE} exists on a shared engine (imported from busybox-static). */
async function ensureImageOn(docker: Docker, socketPath: string, userDir: string): Promise<boolean> {
  if (await docker.getImage(DEMO_IMAGE).inspect().then(() => true, () => false)) return true;
  if (!existsSync('/usr/bin/docker') || !existsSync('/bin/busybox')) {
    say(`image ${DEMO_IMAGE} is missing and cannot be made here (needs the docker CLI and /bin/busybox: apt-get install docker.io busybox-static)`);
    return false;
  }
  say(`importing image ${DEMO_IMAGE} from /bin/busybox into ${socketPath}`);
  const before = process.env.TOOLMESH_TEST_DOCKER_SOCKET;
  process.env.TOOLMESH_TEST_DOCKER_SOCKET = socketPath; // ensureDockerd then only imports the image there
  try {
    return (await ensureDockerd(join(userDir, 'docker-image'))) !== null;
  } finally {
    if (before === undefined) delete process.env.TOOLMESH_TEST_DOCKER_SOCKET;
    else process.env.TOOLMESH_TEST_DOCKER_SOCKET = before;
  }
}

/**
 * Creates and starts the demo container when needed. Resolves true when this run started it
 * (so the shutdown stops it again). A container of that name without the demo label is used as
 * it is, never started or stopped by the demo.
 */
async function ensureDemoContainer(engine: Engine, userDir: string): Promise<boolean> {
  const docker = new Docker({ socketPath: engine.socketPath });
  let info: Docker.ContainerInspectInfo | undefined;
  try {
    info = await docker.getContainer(DEMO_CONTAINER).inspect();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
  }
  if (info && info.Config.Labels?.['io.toolmesh.demo'] !== '1') {
    say(`a container named ${DEMO_CONTAINER} exists without the label io.toolmesh.demo=1; the demo leaves it as it is (${info.State.Status})`);
    return false;
  }
  if (!info) {
    if (!engine.startedHere && !(await ensureImageOn(docker, engine.socketPath, userDir))) return false;
    const heartbeat = `trap 'exit 0' TERM INT; httpd -p 8080 -h /tmp; echo "${DEMO_CONTAINER}: httpd listening on :8080"; `
      + `while true; do echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') ${DEMO_CONTAINER}: alive"; sleep 15 & wait $!; done`;
    await docker.createContainer({
      name: DEMO_CONTAINER,
      Image: DEMO_IMAGE,
      Cmd: ['sh', '-c', heartbeat],
      Labels: { 'io.toolmesh.demo': '1' },
      HostConfig: { NetworkMode: 'none' },
    });
    say(`created container ${DEMO_CONTAINER} (image ${DEMO_IMAGE}, network none, label io.toolmesh.demo=1)`);
    info = await docker.getContainer(DEMO_CONTAINER).inspect();
  }
  if (info.State.Running) {
    say(`container ${DEMO_CONTAINER} is running`);
    return false;
  }
  await docker.getContainer(DEMO_CONTAINER).start();
  say(`started container ${DEMO_CONTAINER}`);
  return true;
}

async function stopDemoContainer(engine: Engine): Promise<void> {
  try {
    await new Docker({ socketPath: engine.socketPath }).getContainer(DEMO_CONTAINER).stop({ t: 5 });
    say(`stopped container ${DEMO_CONTAINER} (kept; the next run starts it again)`);
  } catch (e) {
    const err = e as { statusCode?: number; code?: string; message: string };
    if (err.statusCode === 304) return; // already stopped
    if (engine.startedHere && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
      // Ctrl-C in a terminal reaches the private dockerd too: it is shutting down and stops its containers itself
      say(`the private dockerd is already shutting down (it got the signal too); it stops ${DEMO_CONTAINER} itself`);
      return;
    }
    say(`could not stop container ${DEMO_CONTAINER}: ${err.message}`);
  }
}

// ---------------------------------------------------------------------------------------------

/** The LLM settings the llm-agent node will see, for the summary. */
function llmSummary(env: NodeJS.ProcessEnv): string {
  const baseUrl = env.TOOLMESH_LLM_BASE_URL || env.OPENAI_BASE_URL;
  const key = env.TOOLMESH_LLM_API_KEY || env.OPENAI_API_KEY;
  if (!baseUrl && !key) {
    return 'not configured: set TOOLMESH_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama), TOOLMESH_LLM_MODEL '
      + 'and, if the endpoint needs one, TOOLMESH_LLM_API_KEY before npm start, or fill in the "Pi assistant" node. '
      + 'The inject buttons work without an LLM.';
  }
  const from = (a: string, b: string) => (env[a] ? a : b);
  return `${baseUrl ?? 'https://api.openai.com/v1'}${baseUrl ? ` (${from('TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL')})` : ''}, `
    + `model ${env.TOOLMESH_LLM_MODEL || 'gpt-4o-mini (default; TOOLMESH_LLM_MODEL unset)'}, `
    + `API key ${key ? `from ${from('TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY')}` : 'none'}`;
}

async function main(): Promise<number> {
  const opts = readOptions();
  const root = findRoot();
  const userDir = join(root, '.toolmesh-demo');
  const cli = join(root, 'dist/agent/cli.js');
  const redJs = join(root, 'node_modules/node-red/red.js');
  for (const f of [cli, join(root, 'dist/nodes/tool-registry/tool-registry.js'), join(root, 'examples', EXAMPLE_FLOW)]) {
    if (!existsSync(f)) throw new DemoError(`${relative(root, f)} is missing: build first (npm run build; npm start does it)`);
  }
  if (!existsSync(redJs)) throw new DemoError(`${relative(root, redJs)} is missing: run npm install`);

  // the children get our environment (TOOLMESH_LLM_* included) but never the admin password
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.TOOLMESH_ADMIN_PASSWORD;
  // the agent's shebang runs `node` from PATH: make that this node
  childEnv.PATH = [dirname(process.execPath), process.env.PATH].filter(Boolean).join(':');

  let engine: Engine | undefined;
  let containerStartedHere = false;
  let authFile: string | undefined;
  let nodeRed: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;

  const shutdown = (why: string, code: number): Promise<void> => {
    stopping ??= (async () => {
      say(`${why}: stopping`);
      await stopChild(agent, 'the Pi agent', STOP_AGENT_MS);
      await stopChild(nodeRed, 'Node-RED', STOP_NODE_RED_MS);
      if (engine && containerStartedHere) await stopDemoContainer(engine);
      if (authFile) rmSync(authFile, { force: true });
      if (engine?.startedHere) say('stopping the private dockerd');
      await stopDockerd(); // only ever the dockerd this process started (also one still starting)
      say('stopped');
      process.exit(code);
    })();
    return stopping;
  };
  let signals = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (++signals > 1) {
        say(`${sig} again: killing the agent and Node-RED now`);
        for (const c of [agent, nodeRed]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        process.exit(130);
      }
      void shutdown(sig, 0);
    });
  }

  try {
    if (opts.uiHostGiven) {
      say(`the MQTT broker stays on 127.0.0.1:${opts.mqttPort} in this release (broker authentication arrives later); `
        + `only the editor listens on ${opts.uiHost}`);
    }
    if (!(await portFree(opts.uiHost, opts.uiPort))) {
      throw new DemoError(`port ${opts.uiPort} on ${opts.uiHost} is in use (another Node-RED?); set TOOLMESH_UI_PORT to a free port`);
    }
    if (!(await portFree('127.0.0.1', opts.mqttPort))) {
      throw new DemoError(`port ${opts.mqttPort} on 127.0.0.1 is in use (another MQTT broker?); set TOOLMESH_MQTT_PORT to a free port`);
    }

    prepareUserDir(root, userDir, opts);
    authFile = writeAdminAuth(root, userDir, opts.adminPassword);

    // Docker first: a private dockerd takes a few seconds
    engine = await findEngine(userDir);
    if (engine) {
      try {
        containerStartedHere = await ensureDemoContainer(engine, userDir);
      } catch (e) {
        say(`could not set up container ${DEMO_CONTAINER}: ${(e as Error).message}`);
      }
    }

    const nrArgs = [redJs, '--userDir', userDir, '--port', String(opts.uiPort), '-D', `uiHost=${opts.uiHost}`];
    if (authFile) nrArgs.push('-D', `@${authFile}`);
    say(`starting Node-RED: node ${relative(root, redJs)} --userDir ${relative(root, userDir)} --port ${opts.uiPort}`);
    nodeRed = spawn(process.execPath, nrArgs, { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(nodeRed, '[node-red]');
    let nodeRedExit: string | undefined;
    nodeRed.once('exit', (code, signal) => {
      nodeRedExit = `Node-RED exited (${code ?? signal})`;
      if (!stopping) void shutdown(nodeRedExit, 1);
    });

    const probeHost = opts.uiHost === '0.0.0.0' || opts.uiHost === '::' ? '127.0.0.1' : opts.uiHost;
    const editorUrl = `http://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${opts.uiPort}/`;
    if (!(await waitFor(() => httpAnswers(editorUrl), NODE_RED_READY_MS, () => nodeRedExit))) {
      throw new DemoError(`Node-RED did not answer on ${editorUrl} within ${NODE_RED_READY_MS / 1000} s`);
    }
    const brokerUrl = `mqtt://127.0.0.1:${opts.mqttPort}`;
    if (!(await waitFor(() => tcpAccepts('127.0.0.1', opts.mqttPort), BROKER_READY_MS, () => nodeRedExit))) {
      say(`warning: nothing listens on ${brokerUrl} yet. The broker is the tool-registry node's (embedded, port `
        + `${opts.mqttPort}) in the flows; the agent keeps retrying until it appears.`);
    }

    const agentFile = join(userDir, 'pi-agent.yaml');
    writeFileSync(agentFile, agentConfigYaml({ mqttPort: opts.mqttPort, dockerSocket: engine?.socketPath }));
    say(`starting the Pi agent: ${relative(root, cli)} --config ${relative(root, agentFile)}`);
    let online = false;
    agent = spawn(cli, ['--config', agentFile], { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(agent, `[${AGENT_ID}]`, (line) => { if (line.includes(`online as ${AGENT_ID}`)) online = true; });
    let agentExit: string | undefined;
    agent.once('error', (e) => { agentExit = `the Pi agent could not start: ${e.message}`; });
    agent.once('exit', (code, signal) => {
      agentExit = `the Pi agent exited (${code ?? signal})`;
      if (!stopping) void shutdown(agentExit, 1);
    });
    if (!(await waitFor(async () => online, AGENT_READY_MS, () => agentExit ?? nodeRedExit))) {
      say(`warning: the Pi agent is not online after ${AGENT_READY_MS / 1000} s; see its [${AGENT_ID}] lines`);
    }

    const shownUrl = isLoopbackHost(opts.uiHost) ? editorUrl : `http://<this machine>:${opts.uiPort}/ (listening on ${opts.uiHost}; here: ${editorUrl})`;
    const tool = engine ? 'docker_list_containers' : 'diag_echo';
    const args = engine ? '{}' : '{"text":"hello"}';
    const topic = `${TOPIC_ROOT}/agents/${AGENT_ID}/rpc/${SHELL_CALLER}`;
    const lines = [
      '',
      'ToolMesh demo is running.',
      `  Node-RED editor: ${shownUrl}${opts.adminPassword ? '  (login: admin / TOOLMESH_ADMIN_PASSWORD)' : ''}`,
      '                   tab "ToolMesh: Docker on the Pi"; more under Import > Examples > node-red-contrib-toolmesh',
      `  MQTT broker:     ${brokerUrl} (embedded in Node-RED; this machine only, no authentication yet)`,
      `  Pi agent:        id ${AGENT_ID}, packs ${engine ? `docker (${engine.socketPath}), ` : ''}system, diag; config ${relative(root, join(userDir, 'pi-agent.yaml'))}`,
      `  LLM endpoint:    ${llmSummary(process.env)}`,
      '',
      'The protocol from a shell (mosquitto-clients). The retained catalog:',
      `  mosquitto_sub -h 127.0.0.1 -p ${opts.mqttPort} -v -t '${TOPIC_ROOT}/agents/+/catalog' -C 1 -W 5`,
      `A protocol v1 tools/call as caller "${SHELL_CALLER}" (the result arrives on ${topic}/res):`,
      `  mosquitto_sub -h 127.0.0.1 -p ${opts.mqttPort} -t '${topic}/res' -C 1 -W 30 & sleep 1; `
        + `mosquitto_pub -h 127.0.0.1 -p ${opts.mqttPort} -q 1 -t '${topic}/req' `
        + `-m '{"jsonrpc":"2.0","id":"${SHELL_CALLER}-'$(date +%s%N)'","method":"tools/call","params":{"name":"${tool}","arguments":${args}}}'; wait`,
      '',
      `Ctrl-C stops the agent, Node-RED${engine?.startedHere ? ' and the private dockerd' : ''}.`,
      '',
    ];
    // unprefixed, so the commands can be copied as they are
    process.stdout.write(`${lines.join('\n')}\n`);
    await new Promise<never>(() => undefined); // run until a signal
    return 0;
  } catch (e) {
    if (e instanceof DemoError) say(`error: ${e.message}`);
    else say(`error: ${(e as Error).stack ?? e}`);
    await shutdown('startup failed', 1);
    return 1;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code), (e: Error) => {
    if (e instanceof DemoError) process.stderr.write(`[demo] error: ${e.message}\n`);
    else process.stderr.write(`[demo] error: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
}
