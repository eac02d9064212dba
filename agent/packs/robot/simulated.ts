/**
 * The simulated backend: motors that remember their wheel speeds, a face that keeps what it
 * shows, and a battery that drains while the wheels turn. The default backend, and the one tests
 * use; it never touches hardware.
 */
import type { BatteryReading, BatterySensor, Face, FaceDisplay, MotorDriver, RobotBackend } from './adapters';

/** Battery drain of the simulation with both wheels at full speed, percent per second. */
export const SIM_DRAIN_PERCENT_PER_S = 0.5;

/** Simulated wheels: the last speeds set, and how much "full-speed time" they ran (ms). */
export class SimulatedMotors implements MotorDriver {
  left = 0;
  right = 0;
  /** Every change, oldest first: wheel speeds and when (epoch ms). */
  readonly changes: Array<{ left: number; right: number; at: number }> = [];
  private since = Date.now();
  private fullSpeedMs = 0;

  async set(left: number, right: number): Promise<void> {
    this.account();
    this.left = left;
    this.right = right;
    this.changes.push({ left, right, at: Date.now() });
  }

  async stop(): Promise<void> {
    if (this.left === 0 && this.right === 0) return;
    await this.set(0, 0);
  }

  /** Full-speed-equivalent running time so far, ms (mean of both wheels' |speed| × time). */
  usedMs(): number {
    this.account();
    return this.fullSpeedMs;
  }

  private account(): void {
    const now = Date.now();
    this.fullSpeedMs += ((Math.abs(this.left) + Math.abs(this.right)) / 2) * (now - this.since);
    this.since = now;
  }
}

/** A face that keeps what it was asked to show (starts `neutral`). */
export class SimulatedFace implements FaceDisplay {
  private face: Face = { emotion: 'neutral' };

  async show(face: Face): Promise<void> {
    this.face = { ...face };
  }

  current(): Face {
    return { ...this.face };
  }
}

/** A battery that starts full and drains {@link SIM_DRAIN_PERCENT_PER_S} per full-speed second. */
export class SimulatedBattery implements BatterySensor {
  constructor(private readonly motors: SimulatedMotors) {}

  read(): BatteryReading {
    const percent = Math.max(0, 100 - (this.motors.usedMs() / 1000) * SIM_DRAIN_PERCENT_PER_S);
    return { percent: Math.round(percent * 10) / 10, charging: false, simulated: true };
  }
}

/** A fresh simulated backend. */
export function simulatedBackend(): RobotBackend & { motors: SimulatedMotors } {
  const motors = new SimulatedMotors();
  return { motors, face: new SimulatedFace(), battery: new SimulatedBattery(motors) };
}
