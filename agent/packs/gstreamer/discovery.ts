/**
 * Real discovery on the board: machine facts (/proc, device tree), video devices
 * (/dev/video*, their names from sysfs, formats from v4l2-ctl when v4l-utils is installed) and
 * storage of the recording paths (statfs).
 */
import { access, constants, readdir, readFile, statfs } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { runTool } from './inspect';

/** One pixel format of a video device, with its frame sizes and rates. */
export interface VideoFormat {
  fourcc: string;
  description: string;
  sizes: Array<{ size: string; fps: number[] }>;
}

/** One /dev/video* node. */
export interface VideoDevice {
  device: string;
  /** The driver's name for it (sysfs `name`), e.g. "USB3.0 HD Video Capture". */
  name: string | null;
  /** Capture formats from `v4l2-ctl --list-formats-ext`; null when v4l2-ctl is missing or failed. */
  formats: VideoFormat[] | null;
}

/**
 * Parses `v4l2-ctl --list-formats-ext` (v4l-utils): `[0]: 'YUYV' (YUYV 4:2:2)` format lines,
 * `Size: Discrete 1920x1080` lines and `Interval: Discrete 0.033s (30.000 fps)` lines.
 */
export function parseV4l2Formats(text: string): VideoFormat[] {
  const formats: VideoFormat[] = [];
  for (const line of text.split('\n')) {
    const f = /^\s*\[\d+\]: '([^']+)' \((.*)\)\s*$/.exec(line);
    const s = /^\s*Size: \w+ (\S+)/.exec(line);
    const i = /^\s*Interval: .*\(([\d.]+) fps\)/.exec(line);
    const fmt = formats[formats.length - 1];
    if (f) formats.push({ fourcc: f[1], description: f[2], sizes: [] });
    else if (s && fmt) fmt.sizes.push({ size: s[1], fps: [] });
    else if (i && fmt?.sizes.length) fmt.sizes[fmt.sizes.length - 1].fps.push(Number(i[1]));
  }
  return formats;
}

/**
 * Lists `<devDir>/video<N>` nodes, sorted by number, with their sysfs name and (via `v4l2ctl`,
 * run with an argument list) their capture formats. An empty list means no video device.
 */
export async function listVideoDevices(opts: { devDir?: string; sysDir?: string; v4l2ctl?: string; signal?: AbortSignal } = {}): Promise<VideoDevice[]> {
  const devDir = opts.devDir ?? '/dev';
  const sysDir = opts.sysDir ?? '/sys/class/video4linux';
  const names = (await readdir(devDir).catch(() => [] as string[])).filter((n) => /^video\d+$/.test(n))
    .sort((a, b) => Number(a.slice(5)) - Number(b.slice(5)));
  return Promise.all(names.map(async (n) => {
    const device = join(devDir, n);
    const name = (await readFile(join(sysDir, n, 'name'), 'utf8').catch(() => null))?.trim() ?? null;
    const run = await runTool(opts.v4l2ctl ?? 'v4l2-ctl', ['--device', device, '--list-formats-ext'], opts.signal, 5000).catch(() => null);
    return { device, name, formats: run && run.code === 0 ? parseV4l2Formats(run.stdout) : null };
  }));
}

/** Space of one recording path, bytes. */
export interface StorageInfo {
  path: string;
  exists: boolean;
  writable: boolean;
  totalBytes?: number;
  freeBytes?: number;
  /** What an unprivileged process may still write. */
  availableBytes?: number;
  usedPercent?: number;
}

/** statfs of each path. A missing path is reported with `exists: false`, not thrown. */
export async function checkStorage(paths: readonly string[]): Promise<StorageInfo[]> {
  return Promise.all(paths.map(async (path) => {
    const s = await statfs(path).catch(() => null);
    if (!s) return { path, exists: false, writable: false };
    const writable = await access(path, constants.W_OK).then(() => true, () => false);
    const totalBytes = s.blocks * s.bsize;
    const freeBytes = s.bfree * s.bsize;
    const availableBytes = s.bavail * s.bsize;
    const usedPercent = totalBytes > 0 ? Math.round(((totalBytes - freeBytes) / totalBytes) * 1000) / 10 : 0;
    return { path, exists: true, writable, totalBytes, freeBytes, availableBytes, usedPercent };
  }));
}

/** Machine facts: host name, architecture, kernel, board model, CPU, memory and GStreamer's version. */
export async function machineInfo(gstLaunch: string, signal?: AbortSignal): Promise<Record<string, unknown>> {
  const model = (await readFile('/proc/device-tree/model', 'utf8').catch(() => null))?.replace(/\0/g, '').trim() ?? null;
  const cpuinfo = await readFile('/proc/cpuinfo', 'utf8').catch(() => '');
  const cpu = /^(?:model name|Hardware|Model)\s*:\s*(.+)$/m.exec(cpuinfo)?.[1].trim() ?? os.cpus()[0]?.model ?? null;
  const version = await runTool(gstLaunch, ['--version'], signal, 5000).catch(() => null);
  const gstreamer = version ? /GStreamer (\S+)/.exec(version.stdout)?.[1] ?? null : null;
  return {
    hostname: os.hostname(), arch: os.arch(), kernel: os.release(), model, cpu, cpuCount: os.cpus().length,
    memoryBytes: os.totalmem(), gstreamer,
  };
}
