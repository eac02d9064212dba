/**
 * Debian's mosquitto on one fixed loopback port that a test can stop and start again, the way an
 * administrator restarts a broker (`systemctl restart mosquitto` sends SIGTERM, then starts it).
 * On SIGTERM mosquitto 2.0 publishes every connected client's will before it closes the
 * connections, so to callers a restart looks like every agent going `lost` at once.
 * In CI (`CI=true`) a missing binary is an error; elsewhere {@link startRestartableMosquitto}
 * returns null and the test says why it skipped.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort, systemBinary } from './mosquitto';

/** A mosquitto that can be restarted on the same port. */
export interface RestartableMosquitto {
  /** `mqtt://127.0.0.1:<port>`. */
  readonly url: string;
  readonly port: number;
  /** Its directory: config file, and the persistence database when persistence is on. */
  readonly dir: string;
  /** True while a broker process runs. */
  readonly running: boolean;
  /** How many times a broker process was started. */
  readonly starts: number;
  /** Everything the broker processes printed on stderr. */
  output(): string;
  /** SIGTERM and wait for the exit (no-op when stopped). */
  stop(): Promise<void>;
  /** Starts the broker again on the same port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** {@link stop}, wait `gapMs`, {@link start}. */
  restart(gapMs: number): Promise<void>;
  /** Stops the broker and removes its directory. Safe to call twice. */
  dispose(): Promise<void>;
}

/** Options of {@link startRestartableMosquitto}. */
export interface RestartableMosquittoOptions {
  /**
   * Keep retained messages across restarts (`persistence true`, as Debian's default
   * configuration does), written to the broker's directory on shutdown. Default false.
   */
  persistence?: boolean;
}

/** True once something accepts TCP connections on 127.0.0.1:`port`. */
function accepts(port: number): Promise<boolean> {
  return new Promise<boolean>((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/**
 * Starts mosquitto with anonymous access on 127.0.0.1:<free port>; resolves once it accepts
 * connections. Null outside CI when mosquitto is missing.
 * @throws Error when the broker does not start within ~5 s (the message carries its stderr).
 */
export async function startRestartableMosquitto(opts: RestartableMosquittoOptions = {}): Promise<RestartableMosquitto | null> {
  const bin = systemBinary('/usr/sbin/mosquitto', 'mosquitto');
  if (!bin) return null;
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mosquitto-restart-'));
  // a broker started as root switches to the mosquitto user, which must write the database here
  chmodSync(dir, 0o777);
  const conf = join(dir, 'mosquitto.conf');
  const persistence = opts.persistence
    ? `persistence true\npersistence_location ${dir}/\nautosave_interval 1\n`
    : 'persistence false\n';
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous true\n${persistence}`);
  let child: ChildProcess | undefined;
  let stderr = '';
  let starts = 0;
  let disposed: Promise<void> | undefined;

  const start = async () => {
    if (child) return;
    const c = spawn(bin, ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    child = c;
    starts++;
    c.stderr!.on('data', (d) => (stderr += d));
    c.once('exit', () => { if (child === c) child = undefined; });
    for (let i = 0; ; i++) {
      if (await accepts(port)) return;
      if (i > 100 || c.exitCode !== null) throw new Error(`mosquitto did not start on port ${port}: ${stderr}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  };
  const stop = async () => {
    const c = child;
    if (!c) return;
    const exited = new Promise<void>((resolve) => c.once('exit', () => resolve()));
    c.kill('SIGTERM');
    await exited;
  };
  await start();
  return {
    url: `mqtt://127.0.0.1:${port}`,
    port,
    dir,
    get running() { return child !== undefined; },
    get starts() { return starts; },
    output: () => stderr,
    stop,
    start,
    restart: async (gapMs) => {
      await stop();
      await new Promise((r) => setTimeout(r, gapMs));
      await start();
    },
    dispose: () => (disposed ??= stop().then(() => rmSync(dir, { recursive: true, force: true }))),
  };
}
