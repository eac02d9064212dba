/**
 * A real Node-RED process for end-to-end and browser tests:
 * `node node_modules/node-red/red.js --userDir <temp dir> --port <free port>`, bound to 127.0.0.1,
 * with this pack installed the way a user installs it (as scripts/demo/userdir.ts does):
 * `<userDir>/node_modules/@toolmesh/node-red-toolmesh` is a symlink to the repository root and the
 * userDir's package.json lists it, so Node-RED loads the built nodes from dist/ and offers the
 * example flows from examples/ under Import > Examples. dist/ and examples/ must be built first
 * (`npm test` builds them).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto';
import { until } from './until';
import { NODE_BIN, NODE_RED_RED_JS } from './node-red-path';

/** The repository root (where package.json, dist/ and examples/ are). */
export const REPO_ROOT = join(__dirname, '../..');
const PACKAGE = '@toolmesh/node-red-toolmesh';

/** What to start Node-RED with. */
export interface NodeRedProcessOptions {
  /**
   * Packages from the repository's node_modules to install in the userDir as well (symlinked and
   * listed in its package.json), e.g. `@flowfuse/node-red-dashboard`.
   */
  modules?: string[];
  /** The flows Node-RED starts with (written to flows.json); default none. */
  flows?: unknown[];
  /** More files to write into the userDir before Node-RED starts, by name (e.g. `flows_cred.json`). */
  files?: Record<string, string>;
  /**
   * Extra settings, JSON-serialisable, replacing the defaults key by key (uiHost 127.0.0.1, a fixed
   * credentialSecret, telemetry off, editor tours off).
   */
  settings?: Record<string, unknown>;
  /** How long to wait for the editor and runtime to answer, ms (default 60 000). */
  startMs?: number;
}

/** A running Node-RED. */
export interface NodeRedProcess {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  url: string;
  port: number;
  /** The temporary user directory; removed by {@link NodeRedProcess.stop}. */
  userDir: string;
  /** Everything Node-RED printed so far (stdout and stderr). */
  output(): string;
  /** SIGTERM (SIGKILL after 15 s), then removes the userDir. Safe to call twice. */
  stop(): Promise<void>;
}

/**
 * Writes `<userDir>/settings.js` for a test Node-RED: bound to 127.0.0.1, `flows.json`, a fixed
 * credential secret, no telemetry prompt or update check, no tour, info logging; `extra` keys
 * (Node-RED settings) replace those at the top level.
 */
export function writeTestSettings(userDir: string, extra: Record<string, unknown> = {}): void {
  const settings = {
    uiHost: '127.0.0.1',
    flowFile: 'flows.json',
    credentialSecret: 'toolmesh-test-secret',
    // no consent prompt and no calls home; no "welcome to 4.1" tour shading the editor
    telemetry: { enabled: false, updateNotification: false },
    editorTheme: { tours: false },
    logging: { console: { level: 'info', metrics: false, audit: false } },
    ...extra,
  };
  writeFileSync(join(userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings, null, 2)};\n`);
}

/**
 * Starts Node-RED and resolves once its admin API answers `GET /flows` and the flows have started.
 * @throws Error when dist/ is not built, or Node-RED exits or does not answer within `startMs`
 *   (the message carries its output).
 */
export async function startNodeRedProcess(opts: NodeRedProcessOptions = {}): Promise<NodeRedProcess> {
  for (const f of ['dist/nodes/tool-registry/tool-registry.js', 'examples']) {
    if (!existsSync(join(REPO_ROOT, f))) throw new Error(`${f} is missing: run npm run build (npm test does) after npm install`);
  }
  const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-node-red-'));
  const modulesDir = join(userDir, 'node_modules');
  mkdirSync(modulesDir, { recursive: true });
  const dependencies: Record<string, string> = { [PACKAGE]: `file:${REPO_ROOT}` };
  mkdirSync(join(modulesDir, PACKAGE, '..'), { recursive: true });
  symlinkSync(REPO_ROOT, join(modulesDir, PACKAGE), 'dir');
  for (const name of opts.modules ?? []) {
    const source = join(REPO_ROOT, 'node_modules', name);
    if (!existsSync(source)) throw new Error(`${name} is not installed in ${REPO_ROOT}/node_modules: run npm install`);
    mkdirSync(join(modulesDir, name, '..'), { recursive: true });
    symlinkSync(source, join(modulesDir, name), 'dir');
    dependencies[name] = `file:${source}`;
  }
  writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'toolmesh-test-userdir', version: '0.0.0', private: true, dependencies }, null, 2));
  writeTestSettings(userDir, opts.settings);
  if (opts.flows) writeFileSync(join(userDir, 'flows.json'), JSON.stringify(opts.flows));
  for (const [name, text] of Object.entries(opts.files ?? {})) writeFileSync(join(userDir, name), text);

  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  let out = '';
  const child: ChildProcess = spawn(NODE_BIN, [NODE_RED_RED_JS, '--userDir', userDir, '--port', String(port)], {
    cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
  });
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let stopped: Promise<void> | undefined;
  const stop = () => (stopped ??= (async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(userDir, { recursive: true, force: true });
  })());

  try {
    await until(async () => {
      if (child.exitCode !== null || child.signalCode !== null) throw new Error(`Node-RED exited (${child.exitCode ?? child.signalCode})`);
      // the flows have started once the runtime says so; before, the admin API may refuse deploys
      if (!/Started flows|Starting flows/.test(out)) return false;
      try {
        // with adminAuth and no anonymous user, 401 is the admin API answering
        const res = await fetch(`${url}/flows`, { headers: { 'Node-RED-API-Version': 'v2' } });
        return res.ok || res.status === 401;
      } catch {
        return false;
      }
    }, `Node-RED on ${url}`, opts.startMs ?? 60_000);
  } catch (e) {
    await stop();
    throw new Error(`${(e as Error).message}; its output:\n${out}`);
  }
  return { url, port, userDir, output: () => out, stop };
}
