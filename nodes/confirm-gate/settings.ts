/**
 * The confirm-gate's configuration: the node's properties and credential as saved in the flow,
 * read into {@link GateSettings} with defaults, and the problems found (each naming the property).
 * Also the rule that decides whether a call is held. No Node-RED imports.
 */
import { RISK_LEVELS, type Risk } from '@toolmesh/agent/protocol';
import { isOffered, parsePolicy, type Policy } from '../tool-registry/policy';
import { KID_PATTERN, readSigningKey, type SigningKey } from './keys';

/** Default of {@link GateSettings.timeoutMs}: how long a person has to decide, ms. */
export const DEFAULT_TIMEOUT_MS = 120_000;
/** Default of {@link GateSettings.validityMs}: how long a signed approval stays valid, ms. */
export const DEFAULT_VALIDITY_MS = 60_000;
/** Default {@link GateSettings.threshold}. */
export const DEFAULT_THRESHOLD: Risk = 'high';
const MAX_MS = 86_400_000;
/** Default of {@link GateSettings.maxPending}: calls held at once, in all. */
export const DEFAULT_MAX_PENDING = 100;
/** Default of {@link GateSettings.maxPendingPerCaller}: requests held at once per other caller. */
export const DEFAULT_MAX_PENDING_PER_CALLER = 20;
/** Largest value of either cap. */
const MAX_CAP = 10_000;

/** The node's properties in the flow file (the help text gives their meaning). */
export interface ConfirmGateConfig {
  name?: string;
  /** Id of the tool-registry config node. */
  registry?: string;
  /** Lowest risk that is held: `low`, `medium`, `high` (default) or `critical`. */
  threshold?: string;
  /** `agent/tool` patterns (registry policy syntax), one a line: always held. */
  alwaysHold?: string;
  /** `agent/tool` patterns, one a line: never held (unless also in `alwaysHold`). */
  neverHold?: string;
  /** Time to decide, ms (default 120 000); silence past it is a denial. */
  timeout?: number | string;
  /** Lifetime of a signed approval (`exp`), ms (default 60 000). */
  validity?: number | string;
  /** Key id agents know the public key by (default `gate-<first 8 characters of the node id>`). */
  kid?: string;
  /** MQTT topic (filter) to take decisions from; empty: none. */
  approvalTopic?: string;
  /**
   * Hold approval requests from other callers (MCP bridges) sent over MQTT to
   * `{root}/approvals/+/req` (docs/protocol.md, "Approval requests from other callers"). Default off.
   */
  remoteRequests?: boolean | string;
  /** Calls held at once, local and remote together (default 100); one more is denied at once. */
  maxPending?: number | string;
  /** Requests held at once per other caller (default 20); one more is denied at once. */
  maxPendingPerCaller?: number | string;
}

/** The node's credentials. */
export interface ConfirmGateCredentials {
  /** Ed25519 private key, PKCS#8 PEM. */
  signingKey?: string;
}

/** What the gate runs with. */
export interface GateSettings {
  threshold: Risk;
  /** Undefined when the property is empty. */
  alwaysHold?: Policy;
  neverHold?: Policy;
  timeoutMs: number;
  validityMs: number;
  kid: string;
  /** Undefined when the credential is missing or unusable (see the problems). */
  key?: SigningKey;
  /** Undefined: decisions are not taken over MQTT. */
  approvalTopic?: string;
  /** True: approval requests of other callers over MQTT are held too. */
  remoteRequests: boolean;
  /** Calls held at once in all (1–10 000). */
  maxPending: number;
  /** Requests held at once per other caller id (1–10 000). */
  maxPendingPerCaller: number;
}

/**
 * A configuration problem: `bad-field` (a property with a value out of range: `field`, `value`,
 * `expected`), `no-key` (no signing key), `bad-key` (`detail` says why it cannot be used).
 */
export type SettingsProblem =
  | { key: 'bad-field'; field: string; value: string; expected: string }
  | { key: 'no-key' }
  | { key: 'bad-key'; detail: string };

/** The default key id of a node: `gate-` and the first 8 letters or digits of its id. */
export function defaultKid(nodeId: string): string {
  return `gate-${nodeId.replace(/[^A-Za-z0-9]/g, '').slice(0, 8) || 'node'}`;
}

/**
 * Reads the configuration. Never throws: each bad property becomes a problem and its default is
 * used, except the threshold, which falls back to `low` (hold everything) so a typo cannot let
 * risky calls through. The signing key is the credential when set (flows made before key
 * files), else `keyFile(kid)`: the runtime-side key file (see keys.ts), which may throw for an
 * unusable file (a `bad-key` problem).
 */
export function readGateSettings(
  def: ConfirmGateConfig, creds: ConfirmGateCredentials, nodeId: string,
  keyFile?: (kid: string) => SigningKey | undefined,
): { settings: GateSettings; problems: SettingsProblem[] } {
  const problems: SettingsProblem[] = [];
  const bad = (field: string, value: unknown, expected: string) => problems.push({ key: 'bad-field', field, value: String(value), expected });

  const thresholdText = String(def.threshold ?? '').trim() || DEFAULT_THRESHOLD;
  let threshold: Risk = 'low';
  if ((RISK_LEVELS as readonly string[]).includes(thresholdText)) threshold = thresholdText as Risk;
  else bad('threshold', thresholdText, RISK_LEVELS.join(', '));

  const ms = (field: 'timeout' | 'validity', value: number | string | undefined, fallback: number): number => {
    const text = String(value ?? '').trim();
    if (text === '') return fallback;
    const n = Number(text);
    if (Number.isInteger(n) && n >= 1 && n <= MAX_MS) return n;
    bad(field, text, `a whole number of ms from 1 to ${MAX_MS}`);
    return fallback;
  };
  const rules = (field: 'alwaysHold' | 'neverHold', text: string | undefined): Policy | undefined => {
    if (!text?.trim()) return undefined;
    try {
      const policy = parsePolicy(text);
      return policy.source.length ? policy : undefined;
    } catch (e) {
      bad(field, text.trim().split(/\r?\n/).join(' '), (e as Error).message);
      return undefined;
    }
  };

  const cap = (field: 'maxPending' | 'maxPendingPerCaller', value: number | string | undefined, fallback: number): number => {
    const text = String(value ?? '').trim();
    if (text === '') return fallback;
    const n = Number(text);
    if (Number.isInteger(n) && n >= 1 && n <= MAX_CAP) return n;
    bad(field, text, `a whole number from 1 to ${MAX_CAP}`);
    return fallback;
  };

  const alwaysHold = rules('alwaysHold', def.alwaysHold);
  const neverHold = rules('neverHold', def.neverHold);
  const timeoutMs = ms('timeout', def.timeout, DEFAULT_TIMEOUT_MS);
  const validityMs = ms('validity', def.validity, DEFAULT_VALIDITY_MS);

  const kid = String(def.kid ?? '').trim() || defaultKid(nodeId);
  if (!KID_PATTERN.test(kid)) bad('kid', kid, '1 to 128 letters, digits, _ . or -');

  let key: SigningKey | undefined;
  if (!creds.signingKey?.trim()) {
    // no credential: the key file the editor had the runtime make for this key id
    try {
      key = KID_PATTERN.test(kid) ? keyFile?.(kid) : undefined;
      if (!key) problems.push({ key: 'no-key' });
    } catch (e) {
      problems.push({ key: 'bad-key', detail: (e as Error).message });
    }
  } else {
    try {
      key = readSigningKey(creds.signingKey);
    } catch (e) {
      problems.push({ key: 'bad-key', detail: (e as Error).message });
    }
  }

  const topic = String(def.approvalTopic ?? '').trim();
  if (topic && !isTopicFilter(topic)) {
    bad('approvalTopic', topic, 'an MQTT topic or filter, e.g. toolmesh/v1/approvals/gate1');
  }

  return {
    settings: {
      threshold,
      alwaysHold,
      neverHold,
      timeoutMs,
      validityMs,
      kid,
      key,
      approvalTopic: topic && isTopicFilter(topic) ? topic : undefined,
      remoteRequests: def.remoteRequests === true || def.remoteRequests === 'true',
      maxPending: cap('maxPending', def.maxPending, DEFAULT_MAX_PENDING),
      maxPendingPerCaller: cap('maxPendingPerCaller', def.maxPendingPerCaller, DEFAULT_MAX_PENDING_PER_CALLER),
    },
    problems,
  };
}

/** True for a valid MQTT topic filter: `+` only as a whole level, `#` only as the whole last level. */
export function isTopicFilter(topic: string): boolean {
  const levels = topic.split('/');
  return !topic.includes('\u0000') && levels.every((l, i) => (l === '#' ? i === levels.length - 1 : l === '+' || !/[#+]/.test(l)));
}

/** The higher of two risk levels; `undefined` when neither is a known level. */
export function higherRisk(a: unknown, b: unknown): Risk | undefined {
  const rank = (r: unknown) => (RISK_LEVELS as readonly unknown[]).indexOf(r);
  const best = Math.max(rank(a), rank(b));
  return best < 0 ? undefined : RISK_LEVELS[best];
}

/**
 * Whether a call is held: a match in `alwaysHold` holds it; else a match in `neverHold` lets it
 * pass; else it is held when its risk is unknown or at or above the threshold.
 */
export function isHeld(s: Pick<GateSettings, 'threshold' | 'alwaysHold' | 'neverHold'>, agent: string, tool: string, risk: Risk | undefined): boolean {
  if (s.alwaysHold && isOffered(s.alwaysHold, agent, tool)) return true;
  if (s.neverHold && isOffered(s.neverHold, agent, tool)) return false;
  return risk === undefined || RISK_LEVELS.indexOf(risk) >= RISK_LEVELS.indexOf(s.threshold);
}
