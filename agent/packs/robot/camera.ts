/**
 * Photos through GStreamer: `gst-launch-1.0` started with `execFile` and an argument list, never
 * a shell (gst-launch escapes each argument as one token, so a value cannot add elements). The
 * pipeline is
 * `<source> ! decodebin ! videoconvert ! videoscale ! video/x-raw,width=W,height=H,pixel-aspect-ratio=1/1 ! jpegenc quality=Q ! multifilesink location=<temp dir>/frame-%05d.jpg max-files=1`,
 * so the temp directory ends up holding the last frame only; the first `warmupFrames` frames are
 * there for cameras that adjust exposure. decodebin accepts raw and MJPEG cameras alike.
 * Sources: `videotestsrc` (simulation), `v4l2src device=...` (USB and CSI cameras through V4L2),
 * `libcamerasrc` (Raspberry Pi cameras on libcamera).
 */
import { execFile } from 'node:child_process';
import { constants } from 'node:fs';
import { access, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { ToolError } from '../../../protocol/errors';

/** Camera sources the config can name. */
export const CAMERA_SOURCES = ['videotestsrc', 'v4l2', 'libcamera'] as const;
export type CameraSource = (typeof CAMERA_SOURCES)[number];

/** videotestsrc's patterns (gst-inspect-1.0 videotestsrc, GStreamer 1.22). */
export const TEST_PATTERNS = [
  'smpte', 'snow', 'black', 'white', 'red', 'green', 'blue', 'checkers-1', 'checkers-2', 'checkers-4',
  'checkers-8', 'circular', 'blink', 'smpte75', 'zone-plate', 'gamut', 'chroma-zone-plate', 'solid-color',
  'ball', 'smpte100', 'bar', 'pinwheel', 'spokes', 'gradient', 'colors', 'smpte-rp-219',
] as const;

/** The camera part of the pack config (index.ts has the schema with defaults). */
export interface CameraConfig {
  source: CameraSource;
  /** v4l2: the device (default /dev/video0); libcamera: the camera name (default: the first camera). */
  device?: string;
  pattern: (typeof TEST_PATTERNS)[number];
  /** Default photo size, pixels. */
  width: number;
  height: number;
  /** JPEG quality of the first attempt, 1..100. */
  quality: number;
  /** Largest JPEG a photo may be, bytes. */
  maxBytes: number;
  warmupFrames: number;
  /** Budget of one capture, ms. */
  timeoutMs: number;
  /** The gst-launch-1.0 program: a name looked up on PATH, or a path. */
  gstLaunch: string;
}

/** One capture's size and quality. */
export interface Shot {
  width: number;
  height: number;
  quality: number;
}

/** A photo within the size cap. */
export interface Photo extends Shot {
  jpeg: Buffer;
  /** Captures it took (1 when the first fit under the cap). */
  attempts: number;
}

/** Captures tried before a photo over the cap fails with PAYLOAD_TOO_LARGE. */
export const MAX_ATTEMPTS = 5;
/** Lowest JPEG quality a re-capture goes down to. */
export const MIN_QUALITY = 40;
/** Smallest photo side, pixels. */
export const MIN_SIDE = 16;

/** An even number of pixels ≥ {@link MIN_SIDE} (I420 wants even sides). */
function side(px: number): number {
  return Math.max(MIN_SIDE, 2 * Math.round(px / 2));
}

/**
 * The photo size for the requested width and height: both given: as is; one given: the other
 * from the configured aspect ratio; none: the configured size. Sides are made even.
 */
export function photoSize(cfg: Pick<CameraConfig, 'width' | 'height'>, width?: number, height?: number): { width: number; height: number } {
  const w = width ?? (height !== undefined ? (height * cfg.width) / cfg.height : cfg.width);
  const h = height ?? (width !== undefined ? (width * cfg.height) / cfg.width : cfg.height);
  return { width: side(w), height: side(h) };
}

/** The source elements of the pipeline, delivering `frames` frames then end-of-stream. */
export function sourceArgs(cfg: Pick<CameraConfig, 'source' | 'device' | 'pattern'>, frames: number): string[] {
  switch (cfg.source) {
    case 'videotestsrc': return ['videotestsrc', `num-buffers=${frames}`, `pattern=${cfg.pattern}`];
    case 'v4l2': return ['v4l2src', `device=${cfg.device ?? '/dev/video0'}`, `num-buffers=${frames}`];
    // libcamerasrc is no GstBaseSrc (no num-buffers); identity passes eos-after - 1 buffers, then EOS
    case 'libcamera': return ['libcamerasrc', ...(cfg.device ? [`camera-name=${cfg.device}`] : []), '!', 'identity', `eos-after=${frames + 1}`];
  }
}

/** The whole gst-launch-1.0 argument list of one capture into `dir`. */
export function pipelineArgs(cfg: CameraConfig, shot: Shot, dir: string): string[] {
  return [
    '-q', ...sourceArgs(cfg, cfg.warmupFrames + 1),
    '!', 'decodebin', '!', 'videoconvert', '!', 'videoscale',
    '!', `video/x-raw,width=${shot.width},height=${shot.height},pixel-aspect-ratio=1/1`,
    '!', 'jpegenc', `quality=${shot.quality}`,
    '!', 'multifilesink', `location=${join(dir, 'frame-%05d.jpg')}`, 'max-files=1',
  ];
}

/** A human-readable name of the source, e.g. `videotestsrc pattern=ball` or `v4l2src /dev/video0`. */
export function describeSource(cfg: Pick<CameraConfig, 'source' | 'device' | 'pattern'>): string {
  if (cfg.source === 'videotestsrc') return `videotestsrc pattern=${cfg.pattern} (simulated camera)`;
  if (cfg.source === 'v4l2') return `v4l2src ${cfg.device ?? '/dev/video0'}`;
  return `libcamerasrc ${cfg.device ?? '(first camera)'}`;
}

/** The full path of `program` when it is an executable file (looked up on PATH when it has no `/`), else null. */
export async function findExecutable(program: string, path = process.env.PATH ?? ''): Promise<string | null> {
  const candidates = program.includes('/') ? [program] : path.split(delimiter).filter(Boolean).map((dir) => join(dir, program));
  for (const file of candidates) {
    try {
      await access(file, constants.X_OK);
      return file;
    } catch { /* not here */ }
  }
  return null;
}

/** The last meaningful stderr lines of gst-launch, at most 500 characters. */
function stderrTail(stderr: string): string {
  const text = stderr.trim().split('\n').filter((l) => !/^Additional debug info|^\.\.\/|^\s*$/.test(l)).join(' ');
  return text.length > 500 ? `…${text.slice(-500)}` : text;
}

/** Runs gst-launch once; maps its failures to ToolErrors (an abort by `signal` passes through as it is). */
function runGst(cfg: CameraConfig, args: string[], signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(cfg.gstLaunch, args, { signal, timeout: cfg.timeoutMs, maxBuffer: 256 * 1024, encoding: 'utf8' }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      const e = err as NodeJS.ErrnoException & { killed?: boolean };
      if (signal.aborted) return reject(signal.reason ?? err);
      if (e.code === 'ENOENT') {
        return reject(new ToolError('NOT_SUPPORTED', `${cfg.gstLaunch} is not installed on this robot (Debian package gstreamer1.0-tools), so it cannot take photos`, { program: cfg.gstLaunch }));
      }
      if (e.killed) {
        return reject(new ToolError('TIMEOUT', `the camera (${describeSource(cfg)}) delivered no photo within ${cfg.timeoutMs} ms`, { timeoutMs: cfg.timeoutMs }));
      }
      const missing = /no element "([^"]+)"/.exec(stderr);
      if (missing) {
        return reject(new ToolError('NOT_SUPPORTED', `the GStreamer element ${missing[1]} is not installed on this robot; install its plugin package or change camera.source`, { element: missing[1] }));
      }
      reject(new ToolError('EXECUTION_FAILED', `the camera (${describeSource(cfg)}) failed: ${stderrTail(stderr) || e.message}`, { source: cfg.source }));
    });
  });
}

/**
 * Captures one JPEG.
 * @throws ToolError NOT_SUPPORTED (gst-launch or an element missing), TIMEOUT, EXECUTION_FAILED
 *   (the camera failed or delivered no frame); the abort reason when `signal` aborts.
 */
export async function captureJpeg(cfg: CameraConfig, shot: Shot, signal: AbortSignal): Promise<Buffer> {
  const dir = await mkdtemp(join(tmpdir(), 'toolmesh-robot-photo-'));
  try {
    await runGst(cfg, pipelineArgs(cfg, shot, dir), signal);
    const frames = (await readdir(dir)).filter((f) => f.endsWith('.jpg')).sort();
    if (!frames.length) throw new ToolError('EXECUTION_FAILED', `the camera (${describeSource(cfg)}) ended without delivering a frame`, { source: cfg.source });
    return await readFile(join(dir, frames[frames.length - 1]));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * Takes a photo of at most `cfg.maxBytes`: when a capture is larger, it captures again smaller
 * (each side × 0.9·√(cap / size), at most × 0.9) and at a lower quality (−15, not below
 * {@link MIN_QUALITY}), up to {@link MAX_ATTEMPTS} captures.
 * @param onRetry told before each re-capture (for progress notifications).
 * @throws ToolError PAYLOAD_TOO_LARGE when no attempt fits; the errors of {@link captureJpeg}.
 */
export async function takePhoto(cfg: CameraConfig, size: { width: number; height: number }, signal: AbortSignal, onRetry: (attempt: number, bytes: number) => void = () => undefined): Promise<Photo> {
  let shot: Shot = { ...size, quality: cfg.quality };
  let bytes = 0;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    const jpeg = await captureJpeg(cfg, shot, signal);
    if (jpeg.length <= cfg.maxBytes) return { ...shot, jpeg, attempts: attempt };
    bytes = jpeg.length;
    if (attempt === MAX_ATTEMPTS) break;
    onRetry(attempt, bytes);
    const scale = Math.min(0.9, 0.9 * Math.sqrt(cfg.maxBytes / bytes));
    shot = { width: side(shot.width * scale), height: side(shot.height * scale), quality: Math.max(MIN_QUALITY, shot.quality - 15) };
  }
  throw new ToolError('PAYLOAD_TOO_LARGE',
    `the photo stayed over ${cfg.maxBytes} bytes after ${MAX_ATTEMPTS} captures (last: ${shot.width}x${shot.height} at quality ${shot.quality}, ${bytes} bytes); ask for a smaller width and height`,
    { maxBytes: cfg.maxBytes, bytes, width: shot.width, height: shot.height });
}
