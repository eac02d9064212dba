/**
 * The robot's hardware seen through three small adapter interfaces, so the tools and the safety
 * logic (motion.ts) never touch hardware directly. The simulated backend (simulated.ts)
 * implements them and is what the tests use; the camera is real GStreamer on every backend
 * (camera.ts), its source chosen in the config.
 *
 * A hardware backend (say GPIO PWM to an H-bridge for the motors, an SSD1306 OLED on I2C for the
 * face) implements {@link MotorDriver}, {@link FaceDisplay} and {@link BatterySensor} and is
 * added to `BACKENDS` in index.ts under a new `backend` name. This release ships none: no
 * hardware backend is claimed to work before it has run on a robot.
 */
import type { Emotion } from './face';

/**
 * Two wheels (differential drive). Speeds are fractions of full speed, -1..1 (negative:
 * backward). Implementations must make {@link MotorDriver.stop} safe to call at any time, twice,
 * and while a `set` is in flight, and should stop the motors themselves when the process exits.
 */
export interface MotorDriver {
  /** Sets both wheel speeds at once. @throws Error when the hardware refuses (the caller then calls stop). */
  set(left: number, right: number): Promise<void>;
  /** Stops both wheels. Never throws for "already stopped". */
  stop(): Promise<void>;
}

/** What the face display shows: an emotion and an optional caption (≤ 64 characters). */
export interface Face {
  emotion: Emotion;
  text?: string;
}

/** The face display (an OLED or LCD, or a window in simulation). */
export interface FaceDisplay {
  /** Shows `face` until the next call. @throws Error when the display does not answer. */
  show(face: Face): Promise<void>;
  /** What the display shows now. */
  current(): Face;
}

/** A battery reading. `percent` 0..100; `simulated` true when no real sensor stands behind it. */
export interface BatteryReading {
  percent: number;
  charging: boolean;
  simulated: boolean;
}

/** The battery gauge. */
export interface BatterySensor {
  read(): BatteryReading;
}

/** The hardware of one backend. `close` releases it (GPIO lines, I2C bus) after the motors stopped. */
export interface RobotBackend {
  motors: MotorDriver;
  face: FaceDisplay;
  battery: BatterySensor;
  close?(): Promise<void> | void;
}
