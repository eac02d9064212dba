/** Child processes and ports: the demo's probes, waits, log forwarding and shutdown of its children. */
import type { ChildProcess } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import readline from 'node:readline';
import { DemoError } from './options';

/** Prints one `[demo]` line. */
export const say = (msg: string) => process.stdout.write(`[demo] ${msg}\n`);

/** Resolves true when `host:port` can be bound now (false when in use). */
export function portFree(host: string, port: number): Promise<boolean> {
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
export async function waitFor(check: () => Promise<boolean>, ms: number, abort: () => string | undefined): Promise<boolean> {
  const until = Date.now() + ms;
  for (;;) {
    const why = abort();
    if (why) throw new DemoError(why);
    if (await check()) return true;
    if (Date.now() > until) return false;
    await sleep(250);
  }
}

export function httpAnswers(url: string): Promise<boolean> {
  return new Promise((ok) => {
    const req = http.get(url, { timeout: 2000 }, (res) => {
      res.resume();
      ok((res.statusCode ?? 500) < 500);
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => ok(false));
  });
}

export function tcpAccepts(host: string, port: number): Promise<boolean> {
  return new Promise((ok) => {
    const s = net.connect({ host, port });
    s.setTimeout(1000, () => { s.destroy(); ok(false); });
    s.once('connect', () => { s.end(); ok(true); });
    s.once('error', () => ok(false));
  });
}

/** Forwards a child's output line by line with a prefix; `onLine` sees each line too. */
export function forward(child: ChildProcess, prefix: string, onLine?: (line: string) => void): void {
  for (const stream of [child.stdout, child.stderr]) {
    if (!stream) continue;
    readline.createInterface({ input: stream, crlfDelay: Infinity }).on('line', (line) => {
      process.stdout.write(`${prefix} ${line}\n`);
      onLine?.(line);
    });
  }
}

/** SIGTERM to a child this demo started (by pid), SIGKILL after `ms`; resolves once it has exited. */
export async function stopChild(child: ChildProcess | undefined, what: string, ms: number): Promise<void> {
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
