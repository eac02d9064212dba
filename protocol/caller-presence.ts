/**
 * The agent's view of its callers and the lost-caller rules of docs/protocol.md ("Broker
 * restarts, lost agents and lost callers"): a caller that was online and turns `lost`, `offline`
 * or empty is reported at once (packs stop motors); its running calls are cancelled only when it
 * has not come back online with the same instance within the grace period, which counts only
 * while the agent is connected itself. `offline`, an empty status, or a return as a new instance
 * cancel its calls at once. A caller that is not online and has no running calls is forgotten
 * after `forgetAfterMs` (default 10 min), so callers that come and go for months leave no entry
 * each. No MQTT here: the server feeds it parsed statuses and connection events.
 */

/** Default of {@link CallerPresenceHooks.forgetAfterMs}: 10 min, ms. */
export const DEFAULT_CALLER_FORGET_MS = 600_000;

/** A caller's state as its retained status says (`gone`: empty, decommissioned). */
export type CallerState = 'online' | 'offline' | 'lost' | 'gone';

/** What {@link CallerPresence} asks of the agent it serves. */
export interface CallerPresenceHooks {
  /** Grace period of a lost caller, ms. */
  graceMs: number;
  /**
   * A caller not online this long (offline, lost or gone) with no running calls is forgotten, ms
   * (default {@link DEFAULT_CALLER_FORGET_MS}). A forgotten caller is a new one when it shows up
   * again: what is lost is the instance it last had, so a will of that instance arriving later
   * is taken as it comes (the caller was not online anyway).
   */
  forgetAfterMs?: number;
  /** Whether the agent is connected to its broker now. */
  connected(): boolean;
  /** Whether the caller has calls running on this agent. */
  hasRunning(callerId: string): boolean;
  /** Cancel the caller's running calls; `why` is the CANCELLED message. */
  cancel(callerId: string, why: string): void;
  /** A caller that was online is not any more (`caller-lost`). */
  lost(callerId: string, state: CallerState): void;
}

interface CallerView {
  state: CallerState;
  /** Instance of the caller as last seen online (absent for callers that send none). */
  instance?: string;
  /** Grace timer running while the caller is lost. */
  grace?: NodeJS.Timeout;
  /** Runs while the caller is not online; when it fires the caller is forgotten (or it starts again while calls run). */
  forget?: NodeJS.Timeout;
}

/** The callers an agent has heard of, and their grace timers. */
export class CallerPresence {
  private readonly callers = new Map<string, CallerView>();

  constructor(private readonly hooks: CallerPresenceHooks) {}

  /** Callers known now (online ones and those not yet forgotten). */
  get size(): number {
    return this.callers.size;
  }

  /** Stops every timer (grace and forget); for an agent that stops. */
  close(): void {
    for (const view of this.callers.values()) {
      this.clear(view);
      clearTimeout(view.forget);
      view.forget = undefined;
    }
  }

  /**
   * A caller's status arrived (already parsed and checked).
   * @param instance the status's instance, when it has one. @param retained the MQTT retain flag.
   */
  update(callerId: string, state: CallerState, instance: string | undefined, retained: boolean): void {
    const view: CallerView = this.callers.get(callerId) ?? { state: 'gone' };
    const prev = view.state;
    // the will of an instance older than the one we saw online
    if (state !== 'online' && instance && view.instance && instance !== view.instance && prev === 'online') return;
    this.callers.set(callerId, view);
    view.state = state;
    if (state === 'online') {
      this.clear(view);
      clearTimeout(view.forget);
      view.forget = undefined;
      if (instance && view.instance && instance !== view.instance) this.hooks.cancel(callerId, `caller ${callerId} restarted`);
      if (instance) view.instance = instance;
      return;
    }
    if (prev === 'online') this.hooks.lost(callerId, state);
    if (state === 'lost') this.arm(callerId, view);
    else {
      this.clear(view);
      this.hooks.cancel(callerId, `caller ${callerId} is ${state}`);
    }
    this.armForget(callerId, view);
  }

  /** Starts the forget timer of a caller that is not online (kept when one runs already). */
  private armForget(callerId: string, view: CallerView): void {
    if (view.forget) return;
    view.forget = setTimeout(() => {
      view.forget = undefined;
      if (this.callers.get(callerId) !== view || view.state === 'online') return;
      // a lost caller's calls run until its grace ends: remember it until they have ended
      if (this.hooks.hasRunning(callerId)) return this.armForget(callerId, view);
      this.clear(view);
      this.callers.delete(callerId);
    }, this.hooks.forgetAfterMs ?? DEFAULT_CALLER_FORGET_MS);
    view.forget.unref();
  }

  /** The agent lost its broker: a lost caller cannot come back while it cannot be heard, so the grace stops. */
  pause(): void {
    for (const view of this.callers.values()) this.clear(view);
  }

  /** The agent is connected again: the grace of every caller still lost starts afresh. */
  resume(): void {
    for (const [id, view] of this.callers) if (view.state === 'lost') this.arm(id, view);
  }

  /** Starts the grace period of a lost caller (no-op when running, disconnected or without running calls). */
  private arm(callerId: string, view: CallerView): void {
    if (view.grace || !this.hooks.connected() || !this.hooks.hasRunning(callerId)) return;
    const graceMs = this.hooks.graceMs;
    view.grace = setTimeout(() => {
      view.grace = undefined;
      if (view.state === 'lost') this.hooks.cancel(callerId, `caller ${callerId} is lost and did not come back within ${graceMs} ms`);
    }, graceMs);
  }

  private clear(view: CallerView): void {
    clearTimeout(view.grace);
    view.grace = undefined;
  }
}
