/**
 * The motor controller: the one place that starts and stops the wheels, whatever the backend.
 * A drive runs for a bounded time and ends by itself; it also ends when it is stopped, replaced
 * by a new drive, its caller is lost, the agent loses its broker, or the agent stops (index.ts
 * wires the agent's life events to {@link MotorController.stop} and
 * {@link MotorController.callerLost}).
 */
import type { Logger } from '../types';
import type { MotorDriver } from './adapters';

/** Where a drive goes. `left`/`right` turn on the spot. */
export const DIRECTIONS = ['forward', 'backward', 'left', 'right'] as const;
export type Direction = (typeof DIRECTIONS)[number];

/** Why the wheels stopped. */
export type StopReason =
  | 'duration-ended' | 'stop-requested' | 'caller-lost' | 'broker-offline' | 'agent-stopping' | 'motor-error';

/** Stop reasons that are safety stops (logged as warnings): nobody is left to stop the robot. */
const SAFETY_STOPS: ReadonlySet<StopReason> = new Set(['caller-lost', 'broker-offline', 'agent-stopping', 'motor-error']);

/** The motors as `robot_get_status` reports them. Times are epoch ms. */
export interface MotorState {
  state: 'driving' | 'stopped';
  direction: Direction | null;
  /** Fraction of full speed, 0..1 (0 when stopped). */
  speed: number;
  /** When the running drive ends by itself; null when stopped. */
  until: number | null;
  /** Caller id that started the running drive; null when stopped. */
  startedBy: string | null;
  /** The last stop of a drive: why and when; null before the first. */
  lastStop: { reason: StopReason; at: number } | null;
}

interface Drive {
  direction: Direction;
  speed: number;
  until: number;
  callerId: string;
  timer: NodeJS.Timeout;
}

/** Wheel speeds (left, right) of a direction at `speed`. */
export function wheelSpeeds(direction: Direction, speed: number): [number, number] {
  switch (direction) {
    case 'forward': return [speed, speed];
    case 'backward': return [-speed, -speed];
    case 'left': return [-speed, speed];
    case 'right': return [speed, -speed];
  }
}

/** Drives a {@link MotorDriver} for bounded times; see the module comment for when it stops. */
export class MotorController {
  private drive?: Drive;
  private lastStop: MotorState['lastStop'] = null;
  /** Bumped by every drive and stop, so a drive whose `set` resolves after a stop does not resume. */
  private generation = 0;

  constructor(private readonly driver: MotorDriver, private readonly log: Logger) {}

  /** The motors now. */
  state(): MotorState {
    const d = this.drive;
    return d
      ? { state: 'driving', direction: d.direction, speed: d.speed, until: d.until, startedBy: d.callerId, lastStop: this.lastStop }
      : { state: 'stopped', direction: null, speed: 0, until: null, startedBy: null, lastStop: this.lastStop };
  }

  /**
   * Starts the wheels and returns at once; they stop by themselves after `durationMs`. A running
   * drive is replaced (its timer cancelled, the new speeds set without a stop in between). The
   * caller checks the caps (speed 0..1, duration) before.
   * @returns the state after the start, and whether a running drive was replaced.
   * @throws Error from the driver; the motors are then stopped (reason `motor-error`).
   */
  async start(direction: Direction, speed: number, durationMs: number, callerId: string): Promise<{ state: MotorState; replaced: boolean }> {
    const replaced = this.drive !== undefined;
    this.clearDrive();
    const generation = ++this.generation;
    const timer = setTimeout(() => {
      if (this.generation === generation) void this.stop('duration-ended').catch(() => undefined);
    }, durationMs);
    this.drive = { direction, speed, until: Date.now() + durationMs, callerId, timer };
    try {
      await this.driver.set(...wheelSpeeds(direction, speed));
    } catch (err) {
      if (this.generation === generation) await this.stop('motor-error').catch(() => undefined);
      throw err;
    }
    return { state: this.state(), replaced };
  }

  /**
   * Stops the wheels now (the driver is told to stop even when no drive runs). A safety stop
   * (caller lost, broker offline, agent stopping, motor error) that ends a drive is logged.
   * @throws Error from the driver's stop (logged too for safety stops).
   */
  async stop(reason: StopReason): Promise<MotorState> {
    const d = this.drive;
    this.generation++;
    this.clearDrive();
    if (d) {
      this.lastStop = { reason, at: Date.now() };
      if (SAFETY_STOPS.has(reason)) this.log.warn(`robot: motors stopped (${reason}) while driving ${d.direction} for caller ${d.callerId}`);
    }
    try {
      await this.driver.stop();
    } catch (err) {
      this.log.error(`robot: the motor driver failed to stop (${reason}): ${(err as Error).message}`);
      throw err;
    }
    return this.state();
  }

  /** Stops the running drive when `callerId` started it (its caller went lost or offline). */
  async callerLost(callerId: string): Promise<void> {
    if (this.drive?.callerId === callerId) await this.stop('caller-lost');
  }

  private clearDrive(): void {
    if (this.drive) clearTimeout(this.drive.timer);
    this.drive = undefined;
  }
}
