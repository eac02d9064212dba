/**
 * What keeps a flood of CONNECTs with passwords from taking the embedded broker's process down
 * with it (issue 17, item 5). Every password check is an scrypt run of 16 MiB on the libuv thread
 * pool (4 threads by default, `UV_THREADPOOL_SIZE`), which Node-RED's file I/O and DNS share; a
 * few hundred bad logins a second would queue every `fs` call behind them. So:
 *
 * - **bounded hashing**: at most {@link LoginLimits.maxConcurrentHashes} checks run at once and
 *   {@link LoginLimits.maxQueuedHashes} wait; a CONNECT beyond them is refused at once;
 * - **verified credentials are remembered**: a username and password that passed are remembered
 *   for {@link LoginLimits.verifiedTtlMs}, counted from the login and again from the end of every
 *   connection it opened, keyed by HMAC-SHA-256 under a per-process random key (the password itself
 *   is never kept); a CONNECT with them is accepted without hashing and without touching the
 *   throttle, so an agent that reconnects gets in during a flood that names its user;
 * - **failed logins are throttled** per client address and per username (all unknown usernames
 *   share one bucket) with token buckets of {@link LoginLimits.failedLoginBurst} tokens refilled
 *   at {@link LoginLimits.failedLoginsPerSec}: a check that hashes takes a token from both and a
 *   successful one gives them back; with either bucket empty the CONNECT is refused without
 *   hashing. The buckets refill within seconds, so a mistyped password locks nobody out for long.
 *
 * Refusals for the last two reasons use CONNACK return code 3, "server unavailable" (MQTT 3.1.1
 * §3.2.2.3; aedes passes codes 2–5 of an `authenticate` error through): the credentials were not
 * judged, and clients retry.
 */
import { createHmac, randomBytes } from 'node:crypto';

/** Limits of the embedded broker's password checks; every field is optional (defaults below). */
export interface LoginLimits {
  /**
   * scrypt checks running at once (default {@link DEFAULT_LOGIN_LIMITS}: 2). Each holds one
   * libuv thread-pool thread (of 4 by default) and 16 MiB while it runs, about 40–100 ms.
   */
  maxConcurrentHashes?: number;
  /** Checks waiting for a free slot (default 32); a CONNECT beyond them is refused at once (CONNACK 3). */
  maxQueuedHashes?: number;
  /**
   * How long a verified username and password are remembered, ms (default 60 000), counted from the
   * login and again from the end of each connection it opened. 0 remembers nothing.
   */
  verifiedTtlMs?: number;
  /** Size of the failed-login token bucket of each client address and of each username (default 10). */
  failedLoginBurst?: number;
  /** Tokens each bucket gets back per second (default 2): a full bucket after 5 s. */
  failedLoginsPerSec?: number;
}

/** The defaults of {@link LoginLimits}. */
export const DEFAULT_LOGIN_LIMITS: Readonly<Required<LoginLimits>> = Object.freeze({
  maxConcurrentHashes: 2,
  maxQueuedHashes: 32,
  verifiedTtlMs: 60_000,
  failedLoginBurst: 10,
  failedLoginsPerSec: 2,
});

/** Counters since the broker started, for tests and benches. */
export interface LoginStats {
  /** scrypt runs for logins (one per stored hash tried). */
  hashRuns: number;
  /** Logins accepted from the remembered credentials, without hashing. */
  remembered: number;
  /** CONNECTs refused without hashing because an address or username had failed too often. */
  throttled: number;
  /** CONNECTs refused without hashing because every slot and queue place was taken. */
  queueFull: number;
}

/** Most entries a map of this module holds (addresses, usernames, remembered credentials). */
const MAX_ENTRIES = 10_000;

/**
 * Checks and clamps `limits` against the defaults.
 * @throws Error naming the field when a value is not a number in its range.
 */
export function resolveLoginLimits(limits: LoginLimits = {}): Required<LoginLimits> {
  const out = { ...DEFAULT_LOGIN_LIMITS };
  const ranges: Record<keyof LoginLimits, [number, number, boolean]> = {
    maxConcurrentHashes: [1, 64, true],
    maxQueuedHashes: [0, 10_000, true],
    verifiedTtlMs: [0, 86_400_000, false],
    failedLoginBurst: [1, 10_000, true],
    failedLoginsPerSec: [0.001, 10_000, false],
  };
  for (const key of Object.keys(ranges) as Array<keyof LoginLimits>) {
    const v = limits[key];
    if (v === undefined) continue;
    const [min, max, integer] = ranges[key];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max || (integer && !Number.isInteger(v))) {
      throw new Error(`broker login limit ${key} is ${JSON.stringify(v)}; expected ${integer ? 'an integer' : 'a number'} from ${min} to ${max}`);
    }
    out[key] = v;
  }
  return out;
}

/** Drops the oldest entries of `map` until it has room for one more. */
function makeRoom<K, V>(map: Map<K, V>, drop: (v: V) => boolean): void {
  if (map.size < MAX_ENTRIES) return;
  for (const [k, v] of map) if (drop(v)) map.delete(k);
  for (const k of map.keys()) {
    if (map.size < MAX_ENTRIES) break;
    map.delete(k);
  }
}

/** Token buckets by key: `burst` tokens each, refilled at `perSec`. */
class Buckets {
  private readonly map = new Map<string, { tokens: number; at: number }>();
  constructor(private readonly burst: number, private readonly perSec: number) {}

  private level(key: string, now: number): number {
    const b = this.map.get(key);
    return b ? Math.min(this.burst, b.tokens + ((now - b.at) * this.perSec) / 1000) : this.burst;
  }

  /** True when `key` has a whole token. */
  has(key: string, now: number): boolean {
    return this.level(key, now) >= 1;
  }

  /** Adds `n` tokens (negative: takes them); a full bucket is forgotten. */
  add(key: string, n: number, now: number): void {
    const tokens = Math.min(this.burst, this.level(key, now) + n);
    this.map.delete(key);
    if (tokens >= this.burst) return;
    makeRoom(this.map, (b) => b.tokens + ((now - b.at) * this.perSec) / 1000 >= this.burst);
    this.map.set(key, { tokens, at: now });
  }
}

/** Why {@link LoginGuard.admit} refused a check. */
export type LoginRefusal = 'throttled' | 'busy';

/**
 * The state behind the rules in this module's comment, for one broker. Use: {@link remembered}
 * first; else {@link admit}, run the check, then {@link settle} with its outcome.
 */
export class LoginGuard {
  readonly limits: Required<LoginLimits>;
  readonly stats: LoginStats = { hashRuns: 0, remembered: 0, throttled: 0, queueFull: 0 };
  private readonly key = randomBytes(32);
  private readonly verified = new Map<string, number>();
  private readonly byAddress: Buckets;
  private readonly byUser: Buckets;
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  /** @throws Error as {@link resolveLoginLimits}. */
  constructor(limits?: LoginLimits, private readonly now: () => number = Date.now) {
    this.limits = resolveLoginLimits(limits);
    this.byAddress = new Buckets(this.limits.failedLoginBurst, this.limits.failedLoginsPerSec);
    this.byUser = new Buckets(this.limits.failedLoginBurst, this.limits.failedLoginsPerSec);
  }

  /** The key credentials are remembered under: HMAC-SHA-256 (per-process key) of username and password, base64. */
  credentialKey(username: string, password: Buffer): string {
    return createHmac('sha256', this.key).update(username).update('\0').update(password).digest('base64');
  }

  /** True when the credentials of `key` were verified within the TTL; counts it. */
  remembered(key: string): boolean {
    const until = this.verified.get(key);
    if (until === undefined) return false;
    if (until <= this.now()) {
      this.verified.delete(key);
      return false;
    }
    this.stats.remembered++;
    return true;
  }

  /** Remembers the credentials of `key` for the TTL from now (after a login, and when a connection it opened ends). */
  remember(key: string): void {
    if (this.limits.verifiedTtlMs === 0) return;
    const now = this.now();
    this.verified.delete(key);
    makeRoom(this.verified, (until) => until <= now);
    this.verified.set(key, now + this.limits.verifiedTtlMs);
  }

  /** Bumped by {@link forgetAll}: a connection made before it must not remember its credentials when it ends. */
  generation = 0;

  /** Forgets every remembered credential (a password was taken back: it must not log in from memory). */
  forgetAll(): void {
    this.verified.clear();
    this.generation++;
  }

  /**
   * Lets a password check run: resolves when it may start (takes a token from the address's and
   * the user's bucket), or returns why not at once. `user` is the username, or undefined for one
   * that does not exist (those share a bucket).
   */
  admit(address: string, user: string | undefined): Promise<void> | LoginRefusal {
    const now = this.now();
    const userKey = user === undefined ? '\0unknown' : user;
    if (!this.byAddress.has(address, now) || !this.byUser.has(userKey, now)) {
      this.stats.throttled++;
      return 'throttled';
    }
    if (this.running >= this.limits.maxConcurrentHashes && this.waiting.length >= this.limits.maxQueuedHashes) {
      this.stats.queueFull++;
      return 'busy';
    }
    this.byAddress.add(address, -1, now);
    this.byUser.add(userKey, -1, now);
    if (this.running < this.limits.maxConcurrentHashes) {
      this.running++;
      return Promise.resolve();
    }
    return new Promise<void>((resolve) => this.waiting.push(resolve));
  }

  /**
   * Ends a check {@link admit} let run: frees its slot for the next one waiting and, when it
   * succeeded, gives the tokens back and remembers `key`.
   */
  settle(address: string, user: string | undefined, ok: boolean, key: string): void {
    const next = this.waiting.shift();
    if (next) next();
    else this.running--;
    if (!ok) return;
    const now = this.now();
    this.byAddress.add(address, 1, now);
    this.byUser.add(user === undefined ? '\0unknown' : user, 1, now);
    this.remember(key);
  }
}
