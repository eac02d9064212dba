/**
 * The robot pack: camera, face and wheels of a small robot.
 * Photos come from real GStreamer (camera.ts); face, motors and battery sit behind the adapters
 * of adapters.ts, and the simulated backend (simulated.ts) is the default.
 *
 * Motors never run unattended: a drive lasts at most `motors.maxDurationMs` and also stops when
 * the caller that started it is lost, when the agent loses its broker connection, and when the
 * agent stops. A lost connection is noticed within about 1.5 × the agent's MQTT keepalive, so
 * robot agents keep `broker.keepaliveSec` at 10 s or less (the default).
 *
 * ```yaml
 * packs:
 *   robot:
 *     backend: simulated                    # the only backend this release ships
 *     camera: { source: v4l2, device: /dev/video0, width: 640, height: 480, maxBytes: 1048576 }
 *     motors: { maxSpeed: 0.5, maxDurationMs: 3000 }
 * ```
 */
import { z } from 'zod';
import type { PackContext, PackResult, ToolPack } from '../types';
import type { RobotBackend } from './adapters';
import { CAMERA_SOURCES, describeSource, findExecutable, MIN_QUALITY, TEST_PATTERNS, type CameraConfig } from './camera';
import { simulatedBackend } from './simulated';

/** Backends by config name. A hardware backend implements adapters.ts and is added here. */
export const BACKENDS = { simulated: simulatedBackend } as const satisfies Record<string, () => RobotBackend>;

/** Device or camera name: no spaces, quotes or `!`, so it stays one property value in any pipeline text. */
const DEVICE = /^[A-Za-z0-9_./@:,-]{1,256}$/;

/** Frames dropped before the photo on hardware sources when `warmupFrames` is not set (exposure settles). */
export const HARDWARE_WARMUP_FRAMES = 5;

const CameraSchema = z.strictObject({
  source: z.enum(CAMERA_SOURCES).default('videotestsrc')
    .describe('videotestsrc (simulation), v4l2 (v4l2src: USB and CSI cameras) or libcamera (libcamerasrc: Raspberry Pi cameras)'),
  device: z.string().regex(DEVICE, 'a device path or camera name without spaces, quotes or "!"').optional()
    .describe('v4l2: the device (default /dev/video0); libcamera: the camera name (default the first)'),
  pattern: z.enum(TEST_PATTERNS).default('ball').describe('videotestsrc pattern'),
  width: z.number().int().min(16).max(4096).default(640).describe('Default photo width, pixels'),
  height: z.number().int().min(16).max(4096).default(480).describe('Default photo height, pixels'),
  quality: z.number().int().min(MIN_QUALITY).max(100).default(85).describe('JPEG quality of the first capture'),
  maxBytes: z.number().int().min(16 * 1024).max(1024 * 1024).default(1024 * 1024)
    .describe('Largest JPEG, bytes; larger captures are retaken smaller (protocol cap: 1 MiB)'),
  warmupFrames: z.number().int().min(0).max(100).optional()
    .describe(`Frames dropped before the photo; default 0 for videotestsrc, ${HARDWARE_WARMUP_FRAMES} for cameras`),
  timeoutMs: z.number().int().min(1000).max(120_000).default(10_000).describe('Budget of one capture, ms'),
  gstLaunch: z.string().min(1).default('gst-launch-1.0').describe('gst-launch-1.0 program: a name on PATH or a path'),
}).superRefine((c, ctx) => {
  if (c.device !== undefined && c.source === 'videotestsrc') {
    ctx.addIssue({ code: 'custom', path: ['device'], message: 'only for source v4l2 or libcamera; videotestsrc needs no device' });
  }
});

/** The `packs.robot` section of the agent config. Unknown keys are errors. */
export const RobotConfigSchema = z.strictObject({
  backend: z.enum(Object.keys(BACKENDS) as [keyof typeof BACKENDS]).default('simulated')
    .describe('Hardware backend of motors, face and battery'),
  camera: CameraSchema.prefault({}),
  motors: z.strictObject({
    maxSpeed: z.number().gt(0).max(1).default(0.5).describe('Highest speed robot_drive accepts, fraction of full speed'),
    maxDurationMs: z.number().int().min(100).max(60_000).default(3000).describe('Longest drive, ms'),
  }).prefault({}),
});
export type RobotConfig = z.output<typeof RobotConfigSchema>;

/** The camera section with its source-dependent defaults filled in. */
export function cameraConfig(c: RobotConfig['camera']): CameraConfig {
  return { ...c, warmupFrames: c.warmupFrames ?? (c.source === 'videotestsrc' ? 0 : HARDWARE_WARMUP_FRAMES) };
}

/**
 * Builds the robot's tools on `backend` and ties the motors to the agent's life events
 * (`caller-lost`, `broker-offline`, `stopping`). `close()` unhooks them, stops the motors and
 * closes the backend. Tests pass their own simulated backend to watch the wheels.
 */
export async function createRobot(config: RobotConfig, ctx: PackContext, backend: RobotBackend = BACKENDS[config.backend]()): Promise<PackResult> {
  const camera = cameraConfig(config.camera);
  const gst = await findExecutable(camera.gstLaunch);
  if (!gst) {
    ctx.log.warn(`robot: ${camera.gstLaunch} not found (Debian package gstreamer1.0-tools); robot_take_photo answers NOT_SUPPORTED, the other robot tools work`);
  }
  // tool code loads here, not with this module: every agent validates every pack's config
  // section, but only an agent with this pack configured needs the tools (bench/agent-rss.mjs)
  const [{ MotorController }, { robotTools }] = await Promise.all([import('./motion'), import('./tools')]);
  const motors = new MotorController(backend.motors, ctx.log);
  const quietly = (p: Promise<unknown>) => void p.catch(() => undefined); // stop() logs its own failures
  const onCallerLost = (callerId: string) => quietly(motors.callerLost(callerId));
  const onBrokerOffline = () => quietly(motors.stop('broker-offline'));
  const onStopping = () => quietly(motors.stop('agent-stopping'));
  ctx.events.on('caller-lost', onCallerLost);
  ctx.events.on('broker-offline', onBrokerOffline);
  ctx.events.on('stopping', onStopping);
  ctx.log.info(`robot: backend ${config.backend}, camera ${describeSource(camera)}, motors capped at speed ${config.motors.maxSpeed} for ${config.motors.maxDurationMs} ms`);
  return {
    tools: robotTools({ camera, cameraReady: gst !== null, motors, backend, limits: config.motors, backendName: config.backend }),
    async close() {
      ctx.events.off('caller-lost', onCallerLost);
      ctx.events.off('broker-offline', onBrokerOffline);
      ctx.events.off('stopping', onStopping);
      await motors.stop('agent-stopping').catch(() => undefined);
      await backend.close?.();
    },
  };
}

/**
 * The robot pack. Tools: `robot_take_photo` (low, read-only), `robot_get_status` (low,
 * read-only), `robot_show_emotion` (low), `robot_stop` (low: stopping must never wait for an
 * approval), `robot_drive` (medium: it moves hardware, but within the speed and duration caps and
 * with the automatic stops above; set `policy.approvalRequiredFrom: medium` to have a person
 * approve every drive). All but the read-only ones honour dry runs.
 *
 * When gst-launch-1.0 is missing the pack logs it once and `robot_take_photo` answers
 * NOT_SUPPORTED; the other tools work.
 */
export const robotPack: ToolPack<typeof RobotConfigSchema> = {
  name: 'robot',
  configSchema: RobotConfigSchema,
  create: (config, ctx) => createRobot(config, ctx),
};
