/**
 * The robot pack's tool definitions. Speed and duration caps are part of `robot_drive`'s input
 * schema (JSON Schema `maximum`), so the model sees them, and a call over a cap fails with
 * INVALID_ARGUMENTS before anything moves; nothing is silently clamped. Every tool that changes
 * something declares `supportsDryRun` and honours `ctx.dryRun` with `{ dryRun: true, wouldDo }`;
 * the read-only ones refuse dry runs (NOT_SUPPORTED, protocol/rpc-server.ts).
 */
import { z } from 'zod';
import type { CallToolResult } from '../../../protocol/schemas';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolDefinition } from '../../../protocol/tool';
import type { RobotBackend } from './adapters';
import { describeSource, MAX_ATTEMPTS, photoSize, takePhoto, type CameraConfig } from './camera';
import { EMOTIONS, faceAscii, facePng } from './face';
import { DIRECTIONS, type MotorController, type MotorState } from './motion';

/** What the tools work with. */
export interface RobotToolsOptions {
  camera: CameraConfig;
  /** False when gst-launch-1.0 was not found: robot_take_photo answers NOT_SUPPORTED. */
  cameraReady: boolean;
  motors: MotorController;
  backend: RobotBackend;
  backendName: string;
  limits: { maxSpeed: number; maxDurationMs: number };
}

/** Longest caption on the face, characters. */
export const MAX_CAPTION = 64;

/** `driving forward at 0.3 until 12:00:01.000Z` or `stopped`. */
function motorsText(m: MotorState): string {
  return m.state === 'driving' ? `driving ${m.direction} at speed ${m.speed} until ${new Date(m.until!).toISOString()}` : 'stopped';
}

/** Builds the five robot tools. */
export function robotTools(o: RobotToolsOptions): ToolDefinition[] {
  const { camera, motors, backend, limits } = o;
  const defaultSpeed = Math.min(0.3, limits.maxSpeed);
  const defaultDuration = Math.min(1000, limits.maxDurationMs);

  return [
    defineTool({
      name: 'robot_take_photo',
      description: `Take a photo with the robot's camera and return it as a JPEG image (default ${camera.width}x${camera.height}, at most ${camera.maxBytes} bytes: larger photos are retaken smaller). Give width or height for another size; the other side keeps the aspect ratio.`,
      input: z.strictObject({
        width: z.number().int().min(16).max(4096).optional().describe('Photo width, pixels'),
        height: z.number().int().min(16).max(4096).optional().describe('Photo height, pixels'),
      }),
      risk: 'low', readOnly: true,
      timeoutMs: camera.timeoutMs * MAX_ATTEMPTS + 5000,
      async execute({ width, height }, ctx): Promise<CallToolResult> {
        if (!o.cameraReady) {
          throw new ToolError('NOT_SUPPORTED', `${camera.gstLaunch} is not installed on this robot (Debian package gstreamer1.0-tools), so it cannot take photos; the other robot tools work`, { program: camera.gstLaunch });
        }
        const photo = await takePhoto(camera, photoSize(camera, width, height), ctx.signal,
          (attempt, bytes) => ctx.progress(attempt, MAX_ATTEMPTS, `photo was ${bytes} bytes, over ${camera.maxBytes}: retaking it smaller`));
        const capturedAt = new Date().toISOString();
        const source = describeSource(camera);
        const smaller = photo.attempts > 1 ? ` (retaken smaller to stay under ${camera.maxBytes} bytes)` : '';
        return {
          content: [
            { type: 'text', text: `Photo from ${source}: ${photo.width}x${photo.height} JPEG, ${photo.jpeg.length} bytes, taken ${capturedAt}${smaller}.` },
            { type: 'image', data: photo.jpeg.toString('base64'), mimeType: 'image/jpeg' },
          ],
          structuredContent: {
            mimeType: 'image/jpeg', width: photo.width, height: photo.height, bytes: photo.jpeg.length,
            quality: photo.quality, attempts: photo.attempts, source, capturedAt,
          },
          isError: false,
        };
      },
    }),

    defineTool({
      name: 'robot_show_emotion',
      description: `Show a face on the robot's display, with an optional short caption. Emotions: ${EMOTIONS.join(', ')}.`,
      input: z.strictObject({
        emotion: z.enum(EMOTIONS),
        text: z.string().max(MAX_CAPTION).optional().describe(`Caption under the face, at most ${MAX_CAPTION} characters`),
      }),
      risk: 'low', supportsDryRun: true, idempotent: true, timeoutMs: 5000,
      async execute({ emotion, text }, ctx): Promise<CallToolResult | Record<string, unknown>> {
        const previous = backend.face.current();
        const caption = text ? ` with the caption "${text}"` : '';
        if (ctx.dryRun) return { dryRun: true, wouldDo: `show the ${emotion} face${caption} (now ${previous.emotion})`, current: previous };
        const face = text ? { emotion, text } : { emotion };
        await backend.face.show(face);
        return {
          content: [
            { type: 'text', text: `The face shows ${emotion}${caption} (was ${previous.emotion}):\n${faceAscii(emotion)}` },
            { type: 'image', data: facePng(emotion).toString('base64'), mimeType: 'image/png' },
          ],
          structuredContent: { face, previous },
          isError: false,
        };
      },
    }),

    defineTool({
      name: 'robot_drive',
      description: `Drive the robot: forward, backward, or turn left/right on the spot, at a speed (fraction of full speed, at most ${limits.maxSpeed}) for a duration (ms, at most ${limits.maxDurationMs}). Returns once the motors run; they stop by themselves when the duration ends. A new drive replaces a running one; robot_stop stops at once.`,
      input: z.strictObject({
        direction: z.enum(DIRECTIONS),
        speed: z.number().positive().max(limits.maxSpeed).default(defaultSpeed)
          .describe(`Fraction of full speed, above 0 and at most ${limits.maxSpeed}`),
        durationMs: z.number().int().min(100).max(limits.maxDurationMs).default(defaultDuration)
          .describe(`How long to drive, ms (100 to ${limits.maxDurationMs})`),
      }),
      risk: 'medium', supportsDryRun: true, timeoutMs: 5000,
      async execute({ direction, speed, durationMs }, ctx) {
        const now = motors.state();
        if (ctx.dryRun) {
          const replacing = now.state === 'driving' ? `, replacing the running drive (${motorsText(now)})` : '';
          return { dryRun: true, wouldDo: `drive ${direction} at speed ${speed} for ${durationMs} ms${replacing}`, motors: now };
        }
        try {
          const { state, replaced } = await motors.start(direction, speed, durationMs, ctx.callerId);
          return { driving: true, direction, speed, durationMs, until: state.until, replaced };
        } catch (err) {
          throw new ToolError('EXECUTION_FAILED', `the motor driver failed: ${(err as Error).message}; the motors were told to stop`, { direction, speed });
        }
      },
    }),

    defineTool({
      name: 'robot_stop',
      description: 'Stop the robot\'s motors now. Safe to call at any time.',
      input: z.strictObject({}),
      risk: 'low', supportsDryRun: true, idempotent: true, timeoutMs: 5000,
      async execute(_args, ctx) {
        const before = motors.state();
        if (ctx.dryRun) return { dryRun: true, wouldDo: `stop the motors (now ${motorsText(before)})`, motors: before };
        try {
          const after = await motors.stop('stop-requested');
          return { stopped: true, wasDriving: before.state === 'driving', motors: after };
        } catch (err) {
          throw new ToolError('EXECUTION_FAILED', `the motor driver failed to stop: ${(err as Error).message}`);
        }
      },
    }),

    defineTool({
      name: 'robot_get_status',
      description: 'The robot\'s state: the face shown, the motors (driving or stopped, direction, speed, until when), the battery and the camera.',
      input: z.strictObject({}),
      risk: 'low', readOnly: true, idempotent: true, timeoutMs: 5000,
      execute: () => ({
        backend: o.backendName,
        face: backend.face.current(),
        motors: motors.state(),
        battery: backend.battery.read(),
        camera: { source: describeSource(camera), available: o.cameraReady, width: camera.width, height: camera.height, maxBytes: camera.maxBytes },
        limits,
      }),
    }),
  ];
}
