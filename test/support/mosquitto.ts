/**
 * Starts Debian's mosquitto on a free loopback port for interop tests. In CI (`CI=true`) a
 * missing binary is an error; elsewhere `startMosquitto` returns null and the test says why it
 * skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
  stop(): Promise<void>;
}

/** Starts mosquitto with anonymous access on 127.0.0.1:<free port>; resolves once it accepts connections. */
export async function startMosquitto(extraConfig = ''): Promise<Mosquitto | null> {
  const bin = systemBinary('/usr/sbin/mosquitto', 'mosquitto');
  if (!bin) return null;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mosquitto-'));
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\npersistence false\n${extraConfig}\n`);
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
    stop: () => new Promise<void>((resolve) => {
      child.once('exit', () => { rmSync(dir, { recursive: true, force: true }); resolve(); });
      child.kill('SIGTERM');
    }),
  };
}
