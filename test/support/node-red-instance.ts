/**
 * A real Node-RED process that a test can stop and start again on the same user directory and
 * port, as a systemd unit or a Docker restart does: `node node_modules/node-red/red.js --userDir
 * <dir> --port <port>`, bound to 127.0.0.1, with this pack installed in the userDir as a user
 * installs it (a package folder symlinked into the userDir's node_modules and listed in its
 * package.json, as test/support/node-red-process.ts does).
 *
 * The package folder is a snapshot of the build taken at creation: package.json, dist/ and
 * examples/ copied, node_modules a symlink to the repository's. So every start of one instance
 * loads the same code, even when dist/ is rebuilt meanwhile (`npm run build` empties it first).
 * dist/ must be built first.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto';
import { REPO_ROOT, writeTestSettings } from './node-red-process';
import { until } from './until';
import { NODE_BIN, NODE_RED_RED_JS } from './node-red-path';

/** What to start Node-RED with. */
export interface NodeRedInstanceOptions {
  /** The flows Node-RED starts with the first time (written to flows.json). */
  flows: unknown[];
  /** Extra settings, replacing the defaults key by key (see {@link createNodeRed}). */
  settings?: Record<string, unknown>;
  /** How long to wait for the runtime to start its flows, ms (default 60 000). */
  startMs?: number;
}

/** How one Node-RED process ended. */
export interface NodeRedExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** A Node-RED that can be restarted on the same userDir and port. */
export interface NodeRedInstance {
  /**
   * The installed copy of the pack (its `node_modules/@toolmesh/agent/dist/agent/cli.js` is the
   * agent binary of the same build, the repository's packages/agent);
   * removed by {@link NodeRedInstance.dispose}.
   */
  readonly packageDir: string;
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  readonly url: string;
  readonly port: number;
  readonly userDir: string;
  /** True while a Node-RED process runs. */
  readonly running: boolean;
  /** How each stopped process ended, in order. */
  readonly exits: NodeRedExit[];
  /** Everything every process printed (stdout and stderr), processes separated by a marker line. */
  output(): string;
  /** What the current (or last) process printed. */
  lastOutput(): string;
  /** Starts a process; resolves once the flows have started and `GET /flows` answers. */
  start(): Promise<void>;
  /** SIGTERM (SIGKILL after 15 s) and wait for the exit; resolves with how it ended. */
  stop(): Promise<NodeRedExit | undefined>;
  /** Stops the process and removes the userDir and the package copy. Safe to call twice. */
  dispose(): Promise<void>;
  /** `fetch` against the admin API with `Node-RED-API-Version: v2` and JSON headers. */
  api(path: string, init?: RequestInit): Promise<Response>;
  /** Replaces every flow (`POST /flows`, `Node-RED-Deployment-Type: full`); resolves with the new revision. */
  deployFull(flows: unknown[]): Promise<string>;
}

/** Every file Node-RED needs of each node in package.json's `node-red.nodes`: runtime, editor, catalog. */
function missingNodeFiles(dir: string): string[] {
  const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { 'node-red': { nodes: Record<string, string> } };
  return Object.values(pkg['node-red'].nodes).flatMap((js) => {
    const base = js.replace(/\.js$/, '');
    const name = base.split('/').pop()!;
    return [js, `${base}.html`, join(base, '..', 'locales/en-US', `${name}.json`)];
  }).filter((f) => !existsSync(join(dir, f)));
}

/**
 * Copies the built pack (package.json, dist/, examples/) to a new folder whose node_modules is
 * the repository's. Retries for a few seconds while the copy is incomplete (a build running).
 * @throws Error naming the missing files when dist/ stays incomplete.
 */
async function snapshotPackage(): Promise<string> {
  for (let attempt = 0; ; attempt++) {
    const dir = mkdtempSync(join(tmpdir(), 'toolmesh-pack-'));
    try {
      cpSync(join(REPO_ROOT, 'package.json'), join(dir, 'package.json'));
      cpSync(join(REPO_ROOT, 'dist'), join(dir, 'dist'), { recursive: true });
      if (existsSync(join(REPO_ROOT, 'examples'))) cpSync(join(REPO_ROOT, 'examples'), join(dir, 'examples'), { recursive: true });
      symlinkSync(join(REPO_ROOT, 'node_modules'), join(dir, 'node_modules'), 'dir');
      const missing = missingNodeFiles(dir);
      if (!missing.length) return dir;
      if (attempt >= 10) throw new Error(`the build is incomplete: ${missing.join(', ')} missing; run npm run build`);
    } catch (e) {
      rmSync(dir, { recursive: true, force: true });
      if (attempt >= 10) throw e;
      await new Promise((r) => setTimeout(r, 1000));
      continue;
    }
    rmSync(dir, { recursive: true, force: true });
    await new Promise((r) => setTimeout(r, 1000));
  }
}

/**
 * Prepares a userDir (settings: uiHost 127.0.0.1, a fixed credentialSecret, telemetry and tours
 * off, console log at info) on a free port and starts Node-RED in it.
 * @throws Error when dist/ is not built, or Node-RED exits or does not start within `startMs`
 *   (the message carries its output).
 */
export async function createNodeRed(opts: NodeRedInstanceOptions): Promise<NodeRedInstance> {
  const packageDir = await snapshotPackage();
  const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-node-red-'));
  mkdirSync(join(userDir, 'node_modules', '@toolmesh'), { recursive: true });
  symlinkSync(packageDir, join(userDir, 'node_modules', '@toolmesh', 'node-red-toolmesh'), 'dir');
  writeFileSync(join(userDir, 'package.json'), JSON.stringify({
    name: 'toolmesh-test-userdir', version: '0.0.0', private: true, dependencies: { '@toolmesh/node-red-toolmesh': `file:${packageDir}` },
  }, null, 2));
  writeTestSettings(userDir, opts.settings);
  writeFileSync(join(userDir, 'flows.json'), JSON.stringify(opts.flows));
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let all = '';
  let last = '';
  let child: ChildProcess | undefined;
  let exited: Promise<NodeRedExit> | undefined;
  const exits: NodeRedExit[] = [];
  let disposed: Promise<void> | undefined;
  const api = (path: string, init: RequestInit = {}) => fetch(`${url}${path}`, {
    ...init, headers: { 'Node-RED-API-Version': 'v2', 'content-type': 'application/json', ...(init.headers as Record<string, string> | undefined) },
  });

  const stop = async (): Promise<NodeRedExit | undefined> => {
    const c = child;
    if (!c || !exited) return undefined;
    if (c.exitCode === null && c.signalCode === null) c.kill('SIGTERM');
    const timer = setTimeout(() => c.kill('SIGKILL'), 15_000);
    const how = await exited;
    clearTimeout(timer);
    return how;
  };
  const start = async () => {
    if (child) throw new Error('Node-RED is already running');
    last = '';
    all += `\n----- Node-RED start ${exits.length + 1} -----\n`;
    const c = spawn(NODE_BIN, [NODE_RED_RED_JS, '--userDir', userDir, '--port', String(port)], {
      cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
    });
    child = c;
    const take = (d: Buffer) => { all += d; last += d; };
    c.stdout!.on('data', take);
    c.stderr!.on('data', take);
    exited = new Promise<NodeRedExit>((resolve) => c.once('exit', (code, signal) => {
      const how = { code, signal };
      exits.push(how);
      if (child === c) child = undefined;
      resolve(how);
    }));
    try {
      await until(async () => {
        if (c.exitCode !== null || c.signalCode !== null) throw new Error(`Node-RED exited (${c.exitCode ?? c.signalCode})`);
        if (!/Started flows/.test(last)) return false;
        try {
          return (await api('/flows')).ok;
        } catch {
          return false;
        }
      }, `Node-RED on ${url}`, opts.startMs ?? 60_000);
    } catch (e) {
      await stop();
      throw new Error(`${(e as Error).message}; its output:\n${last}`);
    }
  };
  const remove = () => {
    rmSync(userDir, { recursive: true, force: true });
    rmSync(packageDir, { recursive: true, force: true });
  };
  await start().catch((e) => { remove(); throw e; });
  return {
    packageDir,
    url,
    port,
    userDir,
    get running() { return child !== undefined; },
    exits,
    output: () => all,
    lastOutput: () => last,
    start,
    stop,
    dispose: () => (disposed ??= stop().then(remove)),
    api,
    async deployFull(flows) {
      const res = await api('/flows', { method: 'POST', headers: { 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify({ flows }) });
      if (!res.ok) throw new Error(`deploy failed: HTTP ${res.status} ${await res.text()}`);
      return ((await res.json()) as { rev: string }).rev;
    },
  };
}
