/**
 * Starts Debian's mosquitto on a free loopback port for interop and ACL tests. In CI (`CI=true`)
 * a missing binary is an error; elsewhere `startMosquitto` returns null and the test says why it
 * skipped.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** Path of a system binary, or null; throws in CI naming the Debian package to install. */
export function systemBinary(path: string, debianPackage: string): string | null {
  if (existsSync(path)) return path;
  if (process.env.CI) throw new Error(`${path} is missing: install the Debian package ${debianPackage} (scripts/install-system-deps.sh)`);
  return null;
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

/** A running mosquitto. */
export interface Mosquitto {
  url: string;
  port: number;
  /** Its temp directory (config, password and ACL files); removed on stop. */
  dir: string;
  stop(): Promise<void>;
}

/** Starts mosquitto with anonymous access on 127.0.0.1:<free port>; resolves once it accepts connections. */
export function startMosquitto(extraConfig = ''): Promise<Mosquitto | null> {
  return startMosquittoWith((port) => `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${extraConfig}\n`);
}

/**
 * Writes a mosquitto password file with `mosquitto_passwd -b` (Debian's mosquitto package).
 * @param users username → password
 * @throws Error in CI when mosquitto_passwd is missing; returns false elsewhere.
 */
export function writePasswordFile(file: string, users: Record<string, string>): boolean {
  const bin = systemBinary('/usr/bin/mosquitto_passwd', 'mosquitto');
  if (!bin) return false;
  Object.entries(users).forEach(([user, password], i) => {
    execFileSync(bin, i === 0 ? ['-b', '-c', file, user, password] : ['-b', file, user, password], { stdio: 'pipe' });
  });
  return true;
}

/**
 * Starts mosquitto with the whole configuration `config(port, dir)`, where `port` is a free
 * loopback port it must listen on and `dir` a fresh directory for files the configuration names
 * (readable by the `mosquitto` user, which a broker started as root switches to). `prepare(dir)`
 * runs first, to write those files (make them readable by others, too).
 * Resolves once it accepts connections; null outside CI when mosquitto is missing.
 */
export async function startMosquittoWith(config: (port: number, dir: string) => string, prepare?: (dir: string) => void): Promise<Mosquitto | null> {
  const bin = systemBinary('/usr/sbin/mosquitto', 'mosquitto');
  if (!bin) return null;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mosquitto-'));
  chmodSync(dir, 0o755);
  prepare?.(dir);
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, config(port, dir));
  const child: ChildProcess = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d) => (stderr += d));
  for (let i = 0; ; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    if (i > 100 || child.exitCode !== null) throw new Error(`mosquitto did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    stop: () => new Promise<void>((resolve) => {
      child.once('exit', () => { rmSync(dir, { recursive: true, force: true }); resolve(); });
      child.kill('SIGTERM');
    }),
  };
}
