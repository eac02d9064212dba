// The robot pack on its own: config, faces, the motor controller with simulated wheels, the
// agent's life events, and photos through the real gst-launch-1.0 (Debian gstreamer1.0-tools;
// in CI a missing binary fails the camera tests, elsewhere they skip saying why).
import { EventEmitter } from 'node:events';
import { inflateSync } from 'node:zlib';
import { afterEach, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import type { ToolContext, ToolDefinition } from '../../../protocol/tool';
import { systemBinary } from '../../../test/support/mosquitto';
import { until } from '../../../test/support/until';
import type { Logger, PackContext, PackResult } from '../types';
import { captureJpeg, pipelineArgs, photoSize, takePhoto, type CameraConfig } from './camera';
import { EMOTIONS, FACE_HEIGHT, FACE_WIDTH, faceAscii, facePng, PNG_SCALE } from './face';
import { cameraConfig, createRobot, RobotConfigSchema } from './index';
import { MotorController } from './motion';
import { simulatedBackend, SimulatedMotors } from './simulated';

const GST = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools');
const gstMissing = GST === null ? 'gst-launch-1.0 is not installed (Debian package gstreamer1.0-tools)' : '';

/** A logger that keeps its lines as `level: message`. */
function memoryLog(): Logger & { lines: string[] } {
  const lines: string[] = [];
  return { lines, info: (m) => lines.push(`info: ${m}`), warn: (m) => lines.push(`warn: ${m}`), error: (m) => lines.push(`error: ${m}`) };
}

function toolCtx(over: Partial<ToolContext> = {}): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {}, ...over };
}

function toolsOf(result: PackResult): ToolDefinition[] {
  if ('unavailable' in result) throw new Error(`pack unavailable: ${result.unavailable}`);
  return result.tools;
}

/** Parses `args` with the tool's schema and runs it, as the agent does. */
async function call(tools: ToolDefinition[], name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<any> {
  const tool = tools.find((t) => t.name === name)!;
  return tool.execute(tool.input.parse(args), toolCtx(over));
}

/** True for a complete JPEG: SOI marker first, EOI marker last. */
function isJpeg(buf: Buffer): boolean {
  return buf.length > 4 && buf[0] === 0xff && buf[1] === 0xd8 && buf[buf.length - 2] === 0xff && buf[buf.length - 1] === 0xd9;
}

/** Width and height from a JPEG's first SOFn segment. */
function jpegSize(buf: Buffer): { width: number; height: number } {
  for (let i = 2; i + 9 < buf.length;) {
    const marker = buf[i + 1];
    const length = buf.readUInt16BE(i + 2);
    if (marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker)) {
      return { height: buf.readUInt16BE(i + 5), width: buf.readUInt16BE(i + 7) };
    }
    i += 2 + length;
  }
  throw new Error('no SOF segment');
}

const camera = (over: Partial<CameraConfig> = {}): CameraConfig => ({ ...cameraConfig(RobotConfigSchema.parse({}).camera), ...over });

describe('robot config', () => {
  it('fills defaults and rejects unknown keys, bad devices and a device for videotestsrc', () => {
    expect(RobotConfigSchema.parse({})).toEqual({
      backend: 'simulated',
      camera: { source: 'videotestsrc', pattern: 'ball', width: 640, height: 480, quality: 85, maxBytes: 1048576, timeoutMs: 10000, gstLaunch: 'gst-launch-1.0' },
      motors: { maxSpeed: 0.5, maxDurationMs: 3000 },
    });
    expect(RobotConfigSchema.safeParse({ wheels: {} }).success).toBe(false);
    expect(RobotConfigSchema.safeParse({ backend: 'gpio' }).success).toBe(false);
    expect(RobotConfigSchema.safeParse({ camera: { source: 'v4l2', device: '/dev/video0 ! filesink location=/etc/x' } }).success).toBe(false);
    expect(RobotConfigSchema.safeParse({ camera: { device: '/dev/video0' } }).error?.issues[0]).toMatchObject({ path: ['camera', 'device'] });
    expect(RobotConfigSchema.safeParse({ motors: { maxSpeed: 1.5 } }).success).toBe(false);
    expect(RobotConfigSchema.safeParse({ camera: { maxBytes: 2 * 1024 * 1024 } }).success).toBe(false);
  });

  it('drops warm-up frames on cameras only, unless told', () => {
    expect(cameraConfig(RobotConfigSchema.parse({}).camera).warmupFrames).toBe(0);
    expect(cameraConfig(RobotConfigSchema.parse({ camera: { source: 'v4l2' } }).camera).warmupFrames).toBe(5);
    expect(cameraConfig(RobotConfigSchema.parse({ camera: { source: 'libcamera', warmupFrames: 2 } }).camera).warmupFrames).toBe(2);
  });

  it('builds the pipeline as an argument list, one token per value', () => {
    const args = pipelineArgs(camera({ source: 'v4l2', device: '/dev/video2', warmupFrames: 3 }), { width: 320, height: 240, quality: 70 }, '/tmp/d');
    expect(args).toEqual(['-q', 'v4l2src', 'device=/dev/video2', 'num-buffers=4', '!', 'decodebin', '!', 'videoconvert', '!', 'videoscale',
      '!', 'video/x-raw,width=320,height=240,pixel-aspect-ratio=1/1', '!', 'jpegenc', 'quality=70', '!', 'multifilesink', 'location=/tmp/d/frame-%05d.jpg', 'max-files=1']);
    expect(photoSize({ width: 640, height: 480 }, 321)).toEqual({ width: 322, height: 240 });
    expect(photoSize({ width: 640, height: 480 }, undefined, 120)).toEqual({ width: 160, height: 120 });
  });
});

describe('robot faces', () => {
  it('has a 16 × 8 bitmap per emotion, shown as text and as a 128 × 64 PNG', () => {
    for (const emotion of EMOTIONS) {
      const lines = faceAscii(emotion).split('\n');
      expect(lines, emotion).toHaveLength(FACE_HEIGHT);
      expect(Math.max(...lines.map((l) => l.length)), emotion).toBeLessThanOrEqual(FACE_WIDTH);
      expect(lines.join('').replace(/ /g, '')).toMatch(/^#+$/);
      const png = facePng(emotion);
      expect(png.subarray(0, 8).toString('hex')).toBe('89504e470d0a1a0a');
      expect(png.subarray(12, 16).toString('ascii')).toBe('IHDR');
      expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([FACE_WIDTH * PNG_SCALE, FACE_HEIGHT * PNG_SCALE]);
      // the lit pixels of the image are the bitmap's, each PNG_SCALE² times
      const idatLength = png.readUInt32BE(33);
      const raw = inflateSync(png.subarray(41, 41 + idatLength));
      const lit = [...raw].filter((b) => b === 255).length;
      expect(lit, emotion).toBe(lines.join('').replace(/ /g, '').length * PNG_SCALE * PNG_SCALE);
    }
    expect(new Set(EMOTIONS.map(faceAscii)).size).toBe(EMOTIONS.length);
  });
});

describe('motor controller (simulated wheels)', () => {
  const made: MotorController[] = [];
  afterEach(async () => { for (const m of made.splice(0)) await m.stop('stop-requested'); });

  function controller() {
    const wheels = new SimulatedMotors();
    const log = memoryLog();
    const motors = new MotorController(wheels, log);
    made.push(motors);
    return { wheels, log, motors };
  }

  it('drives, then stops by itself when the duration ends', async () => {
    const { wheels, motors } = controller();
    const { state } = await motors.start('left', 0.4, 150, 'c1');
    expect(state).toMatchObject({ state: 'driving', direction: 'left', speed: 0.4, startedBy: 'c1' });
    expect([wheels.left, wheels.right]).toEqual([-0.4, 0.4]);
    await until(() => motors.state().state === 'stopped', 'the drive to end');
    expect([wheels.left, wheels.right]).toEqual([0, 0]);
    expect(motors.state().lastStop?.reason).toBe('duration-ended');
  });

  it('stops at once, replaces a running drive, and stops only for the caller that started it', async () => {
    const { wheels, log, motors } = controller();
    await motors.start('forward', 0.5, 60_000, 'c1');
    const second = await motors.start('backward', 0.2, 60_000, 'c2');
    expect(second.replaced).toBe(true);
    expect([wheels.left, wheels.right]).toEqual([-0.2, -0.2]);
    await motors.callerLost('c1');
    expect(motors.state().state).toBe('driving');
    await motors.callerLost('c2');
    expect(motors.state()).toMatchObject({ state: 'stopped', lastStop: { reason: 'caller-lost' } });
    expect([wheels.left, wheels.right]).toEqual([0, 0]);
    expect(log.lines).toEqual(['warn: robot: motors stopped (caller-lost) while driving backward for caller c2']);
    await motors.start('right', 0.1, 60_000, 'c3');
    expect((await motors.stop('stop-requested')).state).toBe('stopped');
    expect([wheels.left, wheels.right]).toEqual([0, 0]);
  });

  it('stops the wheels when the driver fails, and reports the failure', async () => {
    const { wheels, motors } = controller();
    wheels.set = async () => { throw new Error('H-bridge fault'); };
    await expect(motors.start('forward', 0.3, 60_000, 'c1')).rejects.toThrow('H-bridge fault');
    expect(motors.state()).toMatchObject({ state: 'stopped', lastStop: { reason: 'motor-error' } });
  });
});

describe('robot pack and the agent\'s life events', () => {
  async function robot(config: unknown = {}) {
    const backend = simulatedBackend();
    const events = new EventEmitter();
    const log = memoryLog();
    const ctx: PackContext = { agentId: 'robot', log, events };
    const result = await createRobot(RobotConfigSchema.parse(config), ctx, backend);
    return { backend, events, log, tools: toolsOf(result), close: () => ('close' in result ? result.close?.() : undefined) };
  }

  it('stops the wheels on caller-lost (of the driving caller), broker-offline and stopping', async () => {
    const r = await robot({ motors: { maxDurationMs: 60_000 } });
    const drive = () => call(r.tools, 'robot_drive', { direction: 'forward', speed: 0.5, durationMs: 60_000 }, { callerId: 'nodered-1' });
    const wheels = () => [r.backend.motors.left, r.backend.motors.right];
    for (const [event, arg] of [['caller-lost', 'nodered-1'], ['broker-offline'], ['stopping']] as const) {
      expect(await drive()).toMatchObject({ driving: true, direction: 'forward', speed: 0.5 });
      r.events.emit('caller-lost', 'someone-else');
      expect(wheels(), `${event}: another caller's loss changes nothing`).toEqual([0.5, 0.5]);
      r.events.emit(event, arg);
      await until(() => r.backend.motors.left === 0, `the wheels to stop on ${event}`);
      expect(wheels()).toEqual([0, 0]);
    }
    const status = await call(r.tools, 'robot_get_status', {});
    expect(status.motors).toMatchObject({ state: 'stopped', lastStop: { reason: 'agent-stopping' } });
    expect(r.log.lines.filter((l) => l.startsWith('warn: robot: motors stopped')).map((l) => /\((.*?)\)/.exec(l)![1]))
      .toEqual(['caller-lost', 'broker-offline', 'agent-stopping']);
    await r.close();
    expect(r.events.listenerCount('caller-lost') + r.events.listenerCount('broker-offline') + r.events.listenerCount('stopping')).toBe(0);
  });

  it('shows emotions on the simulated face, as text and PNG', async () => {
    const r = await robot();
    const res = await call(r.tools, 'robot_show_emotion', { emotion: 'happy', text: 'hello' });
    expect(res.structuredContent).toEqual({ face: { emotion: 'happy', text: 'hello' }, previous: { emotion: 'neutral' } });
    expect(res.content[0].text).toBe(`The face shows happy with the caption "hello" (was neutral):\n${faceAscii('happy')}`);
    expect(res.content[1]).toEqual({ type: 'image', mimeType: 'image/png', data: facePng('happy').toString('base64') });
    expect(r.backend.face.current()).toEqual({ emotion: 'happy', text: 'hello' });
    expect((await call(r.tools, 'robot_get_status', {})).face).toEqual({ emotion: 'happy', text: 'hello' });
    await r.close();
  });

  it('answers robot_take_photo with NOT_SUPPORTED when gst-launch-1.0 is missing, logs it once, and the rest works', async () => {
    const r = await robot({ camera: { gstLaunch: '/nonexistent/gst-launch-1.0' } });
    const err = await call(r.tools, 'robot_take_photo', {}).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    expect(err).toMatchObject({ code: 'NOT_SUPPORTED', message: expect.stringContaining('gstreamer1.0-tools') });
    await call(r.tools, 'robot_take_photo', {}).catch(() => undefined);
    expect(r.log.lines.filter((l) => l.includes('not found'))).toEqual([
      'warn: robot: /nonexistent/gst-launch-1.0 not found (Debian package gstreamer1.0-tools); robot_take_photo answers NOT_SUPPORTED, the other robot tools work',
    ]);
    expect((await call(r.tools, 'robot_get_status', {})).camera).toMatchObject({ available: false });
    expect(await call(r.tools, 'robot_drive', { direction: 'left' })).toMatchObject({ driving: true, speed: 0.3, durationMs: 1000 });
    await r.close();
  });
});

describe.skipIf(GST === null)(`photos through real GStreamer ${gstMissing}`, () => {
  it('takes a JPEG of the requested size from videotestsrc', async () => {
    const jpeg = await captureJpeg(camera({ gstLaunch: GST! }), { width: 320, height: 240, quality: 85 }, new AbortController().signal);
    expect(isJpeg(jpeg)).toBe(true);
    expect(jpegSize(jpeg)).toEqual({ width: 320, height: 240 });
  });

  it('retakes a photo over the cap smaller, and fails with PAYLOAD_TOO_LARGE when it never fits', async () => {
    const retries: number[] = [];
    const cfg = camera({ gstLaunch: GST!, pattern: 'snow', quality: 95, maxBytes: 16 * 1024 });
    const photo = await takePhoto(cfg, { width: 640, height: 480 }, new AbortController().signal, (attempt) => retries.push(attempt));
    expect(photo.attempts).toBeGreaterThan(1);
    expect(retries).toEqual(Array.from({ length: photo.attempts - 1 }, (_, i) => i + 1));
    expect(photo.jpeg.length).toBeLessThanOrEqual(16 * 1024);
    expect(isJpeg(photo.jpeg)).toBe(true);
    expect(jpegSize(photo.jpeg)).toEqual({ width: photo.width, height: photo.height });
    expect(photo.width).toBeLessThan(640);
    // a cap below any JPEG's headers (the schema's minimum is 16 KiB; this bypasses it)
    const err = await takePhoto({ ...cfg, maxBytes: 100 }, { width: 64, height: 48 }, new AbortController().signal).catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'PAYLOAD_TOO_LARGE', details: { maxBytes: 100 } });
  });

  it('says NOT_SUPPORTED for a missing element and EXECUTION_FAILED for a missing camera', async () => {
    const signal = new AbortController().signal;
    const shot = { width: 64, height: 48, quality: 80 };
    await expect(captureJpeg(camera({ gstLaunch: GST!, source: 'libcamera', device: 'no-such-camera' }), shot, signal).catch((e) => e.code + ': ' + e.message))
      .resolves.toMatch(/^(NOT_SUPPORTED: the GStreamer element libcamerasrc is not installed|EXECUTION_FAILED: the camera \(libcamerasrc no-such-camera\) failed)/);
    await expect(captureJpeg(camera({ gstLaunch: GST!, source: 'v4l2', device: '/dev/toolmesh-no-camera' }), shot, signal).catch((e) => e.code + ': ' + e.message))
      .resolves.toMatch(/^EXECUTION_FAILED: the camera \(v4l2src \/dev\/toolmesh-no-camera\) failed: .*Cannot identify device '\/dev\/toolmesh-no-camera'/);
  });
});
