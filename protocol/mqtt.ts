/**
 * MQTT connection helper used by both sides: MQTT.js with TCP_NODELAY on every socket and
 * reconnects that back off exponentially with jitter on every attempt (docs/protocol.md,
 * "Behaviour").
 *
 * Why TCP_NODELAY: MQTT.js leaves Nagle's algorithm on; a request/response round trip on
 * loopback measured 88 ms with Nagle and 0.1 ms without.
 *
 * The reconnect timer is deliberately not `unref()`'d: a daemon whose only live handle is that
 * timer must stay alive while its broker is away (Node exits when only unref'd timers remain).
 */
import { createConnection } from 'node:net';
import mqtt, { MqttClient, type IClientOptions } from 'mqtt';

/** Options for {@link connectMqtt}. */
export interface ConnectOptions {
  /** Broker URL: `mqtt://`, `mqtts://`, `ws://` or `wss://`. */
  url: string;
  username?: string;
  password?: string;
  clientId?: string;
  /** Last will, published by the broker when the connection drops without DISCONNECT. */
  will?: { topic: string; payload: string; qos: 0 | 1; retain: boolean };
  /** Keepalive in seconds (default 10: a lost agent is noticed within ~15 s). */
  keepaliveSec?: number;
  /** Base of the first reconnect delay, ms (default 1 000: the first retry comes after 0.5–1 s). */
  backoffMinMs?: number;
  /**
   * Largest reconnect delay, ms (default {@link DEFAULT_BACKOFF_MAX_MS}, 5 000: a client is back
   * within about 5 s of its broker's return, inside the 10 s the protocol promises).
   */
  backoffMaxMs?: number;
  /** Extra MQTT.js options (TLS: `ca`, `cert`, `key`, `rejectUnauthorized`). */
  extra?: Partial<IClientOptions>;
}

/** Default first reconnect delay base, ms. */
export const DEFAULT_BACKOFF_MIN_MS = 1000;
/** Default cap of the reconnect delay, ms. */
export const DEFAULT_BACKOFF_MAX_MS = 5000;

/**
 * Next reconnect delay: "equal jitter" over an exponential window `w = min(max, min·2^n)`, a
 * uniform pick in `[w/2, w]`. Every attempt is jittered, the first one too (`[min/2, min]`), so
 * the clients of a restarted broker do not all reconnect in the same millisecond; the lower half
 * keeps a floor so a flapping broker is not hammered.
 * @param attempt 0 for the first retry. @param random a source in [0, 1). @returns delay in ms.
 */
export function backoffDelay(attempt: number, minMs = DEFAULT_BACKOFF_MIN_MS, maxMs = DEFAULT_BACKOFF_MAX_MS, random: () => number = Math.random): number {
  const window = Math.min(maxMs, minMs * 2 ** Math.min(Math.max(0, attempt), 30));
  return Math.round(window * (0.5 + random() / 2));
}

/** Turns Nagle off on the client's current socket (TCP or TLS); no-op for WebSockets. */
export function setNoDelay(client: MqttClient): void {
  const s = client.stream as unknown as { setNoDelay?: (on: boolean) => void; socket?: { setNoDelay?: (on: boolean) => void } };
  if (typeof s?.setNoDelay === 'function') s.setNoDelay(true);
  else s?.socket?.setNoDelay?.(true);
}

/**
 * Writes what the client sends while it handles one chunk read from the broker in one go: corks
 * the socket when a chunk arrives and uncorks it once the chunk's packets are handled (MQTT.js
 * handles them on `process.nextTick`, so `setImmediate` comes after the last one). Without it each
 * QoS 1 message costs its own `writev` of a 4-byte PUBACK: a fresh caller taking in 20,000
 * retained messages (10,000 agents) spent ~0.9 s of its ~3 s in those system calls
 * (`node --cpu-prof` on bench/discovery.mjs's caller). Nothing waits longer than the current turn
 * of the event loop. No-op for a stream without `cork` (kept as is).
 */
export function batchWrites(client: MqttClient): void {
  const s = client.stream as unknown as { cork?: () => void; uncork?: () => void; on?: (e: string, f: () => void) => void } | undefined;
  if (typeof s?.cork !== 'function' || typeof s.uncork !== 'function' || typeof s.on !== 'function') return;
  let corked = false;
  s.on('data', () => {
    if (corked) return;
    corked = true;
    s.cork!();
    setImmediate(() => {
      corked = false;
      s.uncork!();
    });
  });
}

/**
 * Host and port of a plain `mqtt://host[:port]` URL (no user info, query or path beyond `/`),
 * which {@link connectMqtt} dials itself; undefined for anything else (`mqtts://`, `ws://`, user
 * info, a query), which goes through `mqtt.connect`. Port defaults to 1883; IPv6 brackets are dropped.
 */
export function plainTcpTarget(url: string): { host: string; port: number } | undefined {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return undefined;
  }
  if (u.protocol !== 'mqtt:' || u.username || u.password || u.search || u.hash || (u.pathname !== '' && u.pathname !== '/') || !u.hostname) return undefined;
  return { host: u.hostname.replace(/^\[|\]$/g, ''), port: u.port ? Number(u.port) : 1883 };
}

/**
 * The MQTT.js client for `opts`: for a plain `mqtt://` URL ({@link plainTcpTarget}) without TLS
 * files, a SOCKS proxy (MQTTJS_SOCKS_PROXY) or `extra.servers`, an MqttClient on our own TCP
 * stream builder; else `mqtt.connect`. Why: `mqtt.connect` loads every transport on its first call
 * (ws, tls, the socks client and their dependencies), ~3 MB resident that a TCP-only agent never
 * uses (bench/agent-rss.mjs; issue 18's idle goal of 60 MB). The options are what `mqtt.connect`
 * derives from such a URL (host, hostname, port, protocol `mqtt`).
 */
function newClient(url: string, options: IClientOptions): MqttClient {
  const target = plainTcpTarget(url);
  if (!target || options.cert || options.key || options.servers || options.socksProxy || process.env.MQTTJS_SOCKS_PROXY) return mqtt.connect(url, options);
  const client = new MqttClient(() => createConnection({ host: target.host, port: target.port }), {
    ...options, host: target.host, hostname: target.host, port: target.port, protocol: 'mqtt',
  });
  client.on('error', () => {}); // as mqtt.connect does: errors also come as 'close', which drives reconnects
  return client;
}

/**
 * Connects with a clean session, TCP_NODELAY after every (re)connect, writes batched per chunk
 * read ({@link batchWrites}), and our own reconnect
 * loop (MQTT.js's `reconnectPeriod` is a fixed interval, so it is set to 0 and
 * `client.reconnect()` is called after {@link backoffDelay}). `client.end()` stops the loop.
 * @returns the MQTT.js client; listen for `connect`/`close` as usual.
 */
export function connectMqtt(opts: ConnectOptions): MqttClient {
  const minMs = opts.backoffMinMs ?? DEFAULT_BACKOFF_MIN_MS;
  const maxMs = opts.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS;
  const client = newClient(opts.url, {
    protocolVersion: 4,
    clean: true,
    keepalive: opts.keepaliveSec ?? 10,
    reconnectPeriod: 0,
    connectTimeout: 10_000,
    username: opts.username,
    password: opts.password,
    clientId: opts.clientId,
    will: opts.will,
    ...opts.extra,
  });
  let attempt = 0;
  let timer: NodeJS.Timeout | undefined;
  /** The stream {@link batchWrites} was set up on (a reconnect makes a new one). */
  let batched: unknown;
  client.on('connect', () => {
    attempt = 0;
    setNoDelay(client);
    if (client.stream !== batched) {
      batched = client.stream;
      batchWrites(client);
    }
  });
  // A failed attempt may emit 'error' before 'close'; the loop is driven by 'close' alone.
  client.on('error', () => {});
  client.on('close', () => {
    if (client.disconnecting || client.disconnected || timer) return;
    const delay = backoffDelay(attempt++, minMs, maxMs);
    timer = setTimeout(() => {
      timer = undefined;
      if (!client.disconnecting && !client.disconnected) client.reconnect();
    }, delay);
  });
  client.on('end', () => {
    if (timer) clearTimeout(timer);
    timer = undefined;
  });
  return client;
}

/** Ends the client and resolves once the connection is closed (force after `timeoutMs`, default 2 000). */
export function endMqtt(client: MqttClient, timeoutMs = 2000): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(() => client.end(true, () => resolve()), timeoutMs);
    client.end(false, () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * Publishes a retained QoS 1 message and resolves on the broker's acknowledgement or after
 * `timeoutMs`, whichever comes first (a connection that drops mid-publish must not hang a stop).
 */
export function publishWithin(client: MqttClient, topic: string, payload: string, timeoutMs: number): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, timeoutMs);
    client.publish(topic, payload, { qos: 1, retain: true }, () => {
      clearTimeout(t);
      resolve();
    });
  });
}

/**
 * True for a loopback bind address (`localhost`, `::1`, `127.x.y.z`): reachable from this machine
 * only. Anything else exposes the listener to the network.
 */
export function isLoopbackHost(host: string): boolean {
  return host === 'localhost' || host === '::1' || host.startsWith('127.');
}
