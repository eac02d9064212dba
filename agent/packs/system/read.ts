/**
 * How the system pack reads the machine: programs started with `execFile` (an argument list,
 * never a shell) under a time and output cap, plus parsers of their output and of /proc and
 * /sys files. Parsers are pure so tests can feed them recorded text.
 */
import { execFile } from 'node:child_process';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { ToolError } from '../../../protocol/errors';

/** Time cap of one program run, ms. */
export const EXEC_TIMEOUT_MS = 5000;
/** Output cap of one program run (stdout and stderr each), bytes. */
export const EXEC_MAX_BYTES = 1024 * 1024;

/**
 * Runs `file` with `args` (no shell, `LC_ALL=C` so output is not localised) and resolves with its
 * stdout. Raises NOT_SUPPORTED when the program is missing, TIMEOUT after `timeoutMs` (default
 * {@link EXEC_TIMEOUT_MS}), PAYLOAD_TOO_LARGE past `maxBytes` (default {@link EXEC_MAX_BYTES}),
 * EXECUTION_FAILED on a non-zero exit (with stderr in the message). A cancelled run rejects with
 * the abort error.
 */
export function runProgram(
  file: string, args: string[], signal: AbortSignal,
  { timeoutMs = EXEC_TIMEOUT_MS, maxBytes = EXEC_MAX_BYTES }: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<string> {
  const options = {
    signal, timeout: timeoutMs, maxBuffer: maxBytes, encoding: 'utf8' as const,
    env: { ...process.env, LC_ALL: 'C' },
  };
  return new Promise((resolve, reject) => {
    execFile(file, args, options, (err, stdout, stderr) => {
      if (!err) return resolve(stdout);
      const e = err as NodeJS.ErrnoException & { killed?: boolean; code?: string | number };
      const command = [file, ...args].join(' ');
      if (signal.aborted) reject(err);
      else if (e.code === 'ENOENT') reject(new ToolError('NOT_SUPPORTED', `${file} is not installed on this machine`, { program: file }));
      else if (e.code === 'ERR_CHILD_PROCESS_STDIO_MAXBUFFER') {
        reject(new ToolError('PAYLOAD_TOO_LARGE', `${command} wrote more than ${maxBytes} bytes`, { program: file }));
      } else if (e.killed) reject(new ToolError('TIMEOUT', `${command} did not finish within ${timeoutMs} ms`, { program: file }));
      else {
        reject(new ToolError('EXECUTION_FAILED', `${command} failed (exit ${String(e.code)}): ${stderr.trim() || e.message}`,
          { program: file, exitCode: e.code, stderr: stderr.trim() }));
      }
    });
  });
}

/** File system types `df` lists that hold no user data (RAM-backed, container layers, snaps). */
const PSEUDO_FS = new Set(['tmpfs', 'devtmpfs', 'ramfs', 'overlay', 'squashfs', 'efivarfs', 'proc', 'sysfs', 'cgroup', 'cgroup2']);

/** One mounted file system, sizes in bytes. */
export interface DiskRow {
  filesystem: string;
  type: string;
  mount: string;
  sizeBytes: number;
  usedBytes: number;
  availableBytes: number;
  /** Rounded up, as df prints it. */
  usePercent: number;
}

/**
 * Parses `df -kPT` (POSIX format with a type column, 1024-byte blocks; GNU coreutils and BusyBox
 * print the same) and drops pseudo file systems. Mount points may contain spaces.
 */
export function parseDf(text: string): DiskRow[] {
  const rows: DiskRow[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 7 || PSEUDO_FS.has(f[1])) continue;
    const [filesystem, type, size, used, avail, capacity] = f;
    rows.push({
      filesystem, type,
      mount: f.slice(6).join(' '),
      sizeBytes: Number(size) * 1024,
      usedBytes: Number(used) * 1024,
      availableBytes: Number(avail) * 1024,
      usePercent: Number(capacity.replace('%', '')),
    });
  }
  return rows;
}

/** `/proc/meminfo` as a map of field → value: bytes for `kB` fields (the kernel's kB are KiB), else counts. */
export function parseMeminfo(text: string): Map<string, number> {
  const fields = new Map<string, number>();
  for (const line of text.split('\n')) {
    const m = /^(\S+):\s+(\d+)(\s+kB)?$/.exec(line.trim());
    if (m) fields.set(m[1], Number(m[2]) * (m[3] ? 1024 : 1));
  }
  return fields;
}

/** `systemctl show` output (`Key=value` lines) as an object. */
export function parseSystemctlShow(text: string): Record<string, string> {
  const props: Record<string, string> = {};
  for (const line of text.split('\n')) {
    const eq = line.indexOf('=');
    if (eq > 0) props[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return props;
}

/** One thermal zone's reading. */
export interface ThermalZone {
  zone: string;
  /** The driver's name for the sensor, e.g. `cpu-thermal` on a Raspberry Pi. */
  type: string;
  celsius: number;
}

/**
 * Reads every `thermal_zone*` under `dir` (Linux sysfs thermal ABI:
 * Documentation/driver-api/thermal/sysfs-api.rst; `temp` is in millidegrees Celsius). Zones whose
 * `temp` cannot be read (some drivers answer EINVAL while a sensor sleeps) are left out.
 */
export async function readThermalZones(dir = '/sys/class/thermal'): Promise<ThermalZone[]> {
  let names: string[];
  try {
    names = (await readdir(dir)).filter((n) => n.startsWith('thermal_zone')).sort();
  } catch {
    return [];
  }
  const zones: ThermalZone[] = [];
  for (const zone of names) {
    try {
      const milli = Number((await readFile(join(dir, zone, 'temp'), 'utf8')).trim());
      if (!Number.isFinite(milli)) continue;
      const type = (await readFile(join(dir, zone, 'type'), 'utf8').catch(() => '')).trim();
      zones.push({ zone, type, celsius: milli / 1000 });
    } catch {
      // unreadable sensor: skipped, see above
    }
  }
  return zones;
}
