/**
 * The embedded brokers of closed tool-registries kept for a re-created registry (issue 18, item 4):
 * Node-RED's deploys and "Restart flows" close and re-create the registry node; a registry whose
 * broker settings did not change takes the running broker over, so agents stay connected. One
 * process-wide table, by the registry's node id.
 */
import { createHash } from 'node:crypto';
import type { EmbeddedBroker } from '@toolmesh/agent/protocol/broker';
import type { BrokerChoice, ToolRegistry } from './registry';

/** How long a closed registry's embedded broker waits for a re-created registry to take it over, ms. */
export const BROKER_HANDOVER_MS = 5_000;

/** Sends the refusals an embedded broker reports to the registry that owns it now. */
export interface RefusalRelay {
  to?: ToolRegistry;
}

/** An embedded broker whose registry closed but may be re-created (see {@link ToolRegistry.close}). */
export interface ParkedBroker {
  broker: EmbeddedBroker;
  /** {@link brokerFingerprint} of the settings it was started with. */
  fingerprint: string;
  relay: RefusalRelay;
  /** The registry caller's generated password (with auth). */
  callerPassword?: string;
  /** Generated passwords of hosted agents, so re-created tool-in nodes log in with them again. */
  agentPasswords: Map<string, Promise<{ password: string; hash: string }>>;
  /** Stops it when {@link BROKER_HANDOVER_MS} pass without a take-over. */
  timer: NodeJS.Timeout;
}

/** Embedded brokers of closed registries, by {@link RegistryOptions.brokerKey} (one process-wide table). */
const parkedBrokers = new Map<string, ParkedBroker>();

/**
 * A digest of everything that defines an embedded broker: port, bind address, topic root (its
 * topic rules), TLS key, certificate and CA, the user list (auth on or off) and the caller id
 * (the registry's own broker user). Equal digests: a re-created registry may keep the broker.
 */
export function brokerFingerprint(b: Extract<BrokerChoice, { mode: 'embedded' }>, root: string, callerId: string): string {
  const settings = { port: b.port, host: b.host, root, callerId, users: b.auth?.users ?? null, tls: b.tls ?? null };
  return createHash('sha256').update(JSON.stringify(settings)).digest('base64url');
}

/** Closes of parked brokers under way (a new broker on their port waits for them). */
const stoppingBrokers = new Set<Promise<void>>();

/** Stops a parked broker now; never throws. */
function stopParked(key: string, entry: ParkedBroker): Promise<void> {
  if (parkedBrokers.get(key) === entry) parkedBrokers.delete(key);
  clearTimeout(entry.timer);
  entry.relay.to = undefined;
  const stopping = entry.broker.close().catch(() => undefined);
  stoppingBrokers.add(stopping);
  void stopping.finally(() => stoppingBrokers.delete(stopping));
  return stopping;
}

/**
 * Stops every parked broker now (e.g. when Node-RED stops its flows other than for a deploy:
 * nothing will re-create the registries). Resolves once their ports are closed; never rejects.
 */
export async function stopParkedBrokers(): Promise<void> {
  await Promise.all([...parkedBrokers].map(([k, e]) => stopParked(k, e)));
}

/**
 * The parked broker under `key` when it was started with settings of `fingerprint` (taken out of
 * the table); otherwise stops the one under `key` and any other parked broker on `port` (so the
 * port is free to bind again) and returns `undefined`.
 */
export async function takeParked(key: string | undefined, fingerprint: string, port: number): Promise<ParkedBroker | undefined> {
  const mine = key === undefined ? undefined : parkedBrokers.get(key);
  if (mine && mine.fingerprint === fingerprint) {
    parkedBrokers.delete(key!);
    clearTimeout(mine.timer);
    return mine;
  }
  const stale = [...parkedBrokers].filter(([k, e]) => k === key || (port !== 0 && e.broker.port === port));
  await Promise.all([...stale.map(([k, e]) => stopParked(k, e)), ...stoppingBrokers]);
  return undefined;
}

/** Embedded brokers kept for a re-created registry now (for tests). */
export function parkedBrokerCount(): number {
  return parkedBrokers.size;
}

/**
 * Parks `entry` (the broker of a closed registry) under `key` for a take-over by
 * {@link takeParked} within `handoverMs`, after which it is stopped; a broker parked under `key`
 * before is stopped first. The timer does not keep the process alive.
 */
export async function parkBroker(key: string, entry: Omit<ParkedBroker, 'timer'>, handoverMs: number): Promise<void> {
  const parked: ParkedBroker = { ...entry, timer: setTimeout(() => void stopParked(key, parked), handoverMs) };
  // a Node-RED that stops for good exits without waiting for the hand-over
  parked.timer.unref();
  const previous = parkedBrokers.get(key);
  if (previous) await stopParked(key, previous);
  parkedBrokers.set(key, parked);
}
