/**
 * A private Docker engine for tests and the demo: Debian's
 * `dockerd` on a socket of its own under a directory (default {@link TEST_DOCKER_DIR}), started
 * with `--bridge=none --iptables=false`, and the image {@link TEST_IMAGE} imported from Debian's
 * `busybox-static` (no registry is reachable). Safe to call from several processes: a lock file
 * lets one of them start the engine and import the image while the others wait.
 *
 * `TOOLMESH_TEST_DOCKER_SOCKET=/path/docker.sock` makes it use an engine that already runs there
 * instead of starting one (the image is still imported when missing).
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { chmod, copyFile, mkdir, mkdtemp, readFile, rm, symlink, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Where the test engine keeps its socket, data, state, log and lock. */
export const TEST_DOCKER_DIR = '/tmp/toolmesh-test-dockerd';
/** The image tests create containers from: BusyBox with every applet linked into /bin. */
export const TEST_IMAGE = 'toolmesh/busybox:test';

const DOCKERD = '/usr/sbin/dockerd';
const DOCKER_CLI = '/usr/bin/docker';
const BUSYBOX = '/bin/busybox';
const READY_TIMEOUT_MS = 30_000;
const LOCK_TIMEOUT_MS = 60_000;
const STOP_TIMEOUT_MS = 20_000;

/** A usable test engine. */
export interface TestDockerd {
  socketPath: string;
  image: string;
}

/** The engine this process started, if any; {@link stopDockerd} stops only this one. */
let started: ChildProcess | undefined;

/** Resolves true when the socket answers `GET /_ping` with OK within 1 s. */
export function pingSocket(socketPath: string): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ socketPath, path: '/_ping', timeout: 1000 }, (res) => {
      let body = '';
      res.on('data', (c) => { body += c; });
      res.on('end', () => resolve(res.statusCode === 200 && body === 'OK'));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

/** What is missing to start an engine here, as one sentence naming the Debian packages; or null. */
function missingPrerequisites(startEngine: boolean): string | null {
  const needs: Array<[string, string]> = [[DOCKER_CLI, 'docker.io'], [BUSYBOX, 'busybox-static']];
  if (startEngine) needs.unshift([DOCKERD, 'docker.io']);
  const missing = needs.filter(([path]) => !existsSync(path));
  if (missing.length > 0) {
    const pkgs = [...new Set(missing.map(([, pkg]) => pkg))].join(' ');
    return `${missing.map(([path]) => path).join(', ')} not found; install the Debian packages: ${pkgs}`;
  }
  if (startEngine && process.getuid?.() !== 0) return 'dockerd must run as root to start a test engine';
  return null;
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Runs `fn` holding `<dir>/setup.lock` (created exclusively; a lock of a dead pid is taken over). */
async function withLock<T>(dir: string, fn: () => Promise<T>): Promise<T> {
  const lock = join(dir, 'setup.lock');
  const until = Date.now() + LOCK_TIMEOUT_MS;
  for (;;) {
    try {
      await writeFile(lock, String(process.pid), { flag: 'wx' });
      break;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const holder = Number(await readFile(lock, 'utf8').catch(() => ''));
      if (holder > 0 && !alive(holder)) await unlink(lock).catch(() => undefined);
      else if (Date.now() > until) throw new Error(`${lock} held by pid ${holder} for over ${LOCK_TIMEOUT_MS} ms`);
      else await sleep(200);
    }
  }
  try {
    return await fn();
  } finally {
    await unlink(lock).catch(() => undefined);
  }
}

/** Starts dockerd on `<dir>/docker.sock` and waits (≤ 30 s) until it answers. */
async function startDockerd(dir: string, socketPath: string): Promise<void> {
  const logPath = join(dir, 'dockerd.log');
  const log = openSync(logPath, 'a');
  const child = spawn(DOCKERD, [
    '--host', `unix://${socketPath}`, '--data-root', join(dir, 'data'), '--exec-root', join(dir, 'exec'),
    '--pidfile', join(dir, 'docker.pid'), '--bridge=none', '--iptables=false', '--shutdown-timeout=2',
  ], { stdio: ['ignore', log, log] });
  closeSync(log);
  child.unref();
  started = child;
  let exited: string | undefined;
  child.on('exit', (code, signal) => { exited = `exit ${code ?? signal}`; });
  const until = Date.now() + READY_TIMEOUT_MS;
  while (!(await pingSocket(socketPath))) {
    if (exited || Date.now() > until) {
      const tail = (await readFile(logPath, 'utf8').catch(() => '')).split('\n').slice(-10).join('\n');
      if (!exited) await stopDockerd();
      started = undefined;
      throw new Error(`dockerd ${exited ? `ended (${exited})` : `did not answer within ${READY_TIMEOUT_MS} ms`}; ${logPath} ends:\n${tail}`);
    }
    await sleep(100);
  }
}

/** Imports {@link TEST_IMAGE} from /bin/busybox unless the engine has it. */
async function ensureImage(socketPath: string): Promise<void> {
  const cli = (...args: string[]) => run(DOCKER_CLI, ['-H', `unix://${socketPath}`, ...args]);
  if (await cli('image', 'inspect', TEST_IMAGE).then(() => true, () => false)) return;
  const work = await mkdtemp(join(tmpdir(), 'toolmesh-busybox-'));
  try {
    const bin = join(work, 'root', 'bin');
    await mkdir(bin, { recursive: true });
    await mkdir(join(work, 'root', 'tmp'));
    await copyFile(BUSYBOX, join(bin, 'busybox'));
    await chmod(join(bin, 'busybox'), 0o755);
    const { stdout } = await run(BUSYBOX, ['--list']);
    for (const applet of stdout.split('\n').filter((a) => a && a !== 'busybox')) {
      await symlink('busybox', join(bin, applet));
    }
    await run('tar', ['-C', join(work, 'root'), '-cf', join(work, 'rootfs.tar'), '.']);
    await cli('import', '--change', 'CMD ["/bin/sh"]', join(work, 'rootfs.tar'), TEST_IMAGE);
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

/**
 * Makes sure an engine under `dir` answers and has {@link TEST_IMAGE}; idempotent. Reuses an engine that
 * already answers on the socket (or the one `TOOLMESH_TEST_DOCKER_SOCKET` names), else starts one.
 * When dockerd, the docker CLI or busybox is missing, or we are not root: throws (naming the
 * Debian package) when `CI` is set, else logs the reason and resolves null so tests can skip.
 */
export async function ensureDockerd(dir: string = TEST_DOCKER_DIR): Promise<TestDockerd | null> {
  const given = process.env.TOOLMESH_TEST_DOCKER_SOCKET;
  const socketPath = given || join(dir, 'docker.sock');
  if (given && !(await pingSocket(given))) {
    throw new Error(`TOOLMESH_TEST_DOCKER_SOCKET=${given}: no Docker engine answers there`);
  }
  const missing = missingPrerequisites(!given);
  if (missing) {
    if (process.env.CI) throw new Error(`Docker tests cannot run: ${missing}`);
    console.warn(`Docker tests skipped: ${missing}`);
    return null;
  }
  await mkdir(dir, { recursive: true });
  await withLock(dir, async () => {
    if (!(await pingSocket(socketPath))) await startDockerd(dir, socketPath);
    await ensureImage(socketPath);
  });
  return { socketPath, image: TEST_IMAGE };
}

/**
 * Stops the dockerd this process started (SIGTERM, SIGKILL after 20 s), and nothing else: an
 * engine that was already running is left alone. Resolves once it has exited.
 */
export async function stopDockerd(): Promise<void> {
  const child = started;
  started = undefined;
  if (!child || child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}
