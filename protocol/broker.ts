/**
 * The embedded broker: aedes (MQTT 3.1.1) on a TCP or TLS port, with TCP_NODELAY on every
 * accepted socket (aedes leaves Nagle on; a loopback round trip measured 88 ms with Nagle, 0.1 ms without),
 * and optionally the ToolMesh users and topic rules of {@link BrokerAuth}.
 * Listens on 127.0.0.1 by default: an open broker in front of Docker tools lets anyone on the
 * network run containers.
 */
import net from 'node:net';
import tls from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { Aedes } from 'aedes';
import type { IClientOptions } from 'mqtt';
import { BrokerAuth, type BrokerAuthOptions, type BrokerUser, type LoginStats } from './broker-auth';
import { DEFAULT_ROOT } from './topics';

export type { BrokerAuthOptions, BrokerRole, BrokerUser, LoginLimits, LoginStats } from './broker-auth';

/** TLS settings of the embedded broker (PEM strings or buffers). */
export interface BrokerTlsOptions {
  /** Private key of the broker's certificate. */
  key: string | Buffer;
  /** The broker's certificate (chain), e.g. with subjectAltName `IP:127.0.0.1` or the host's name. */
  cert: string | Buffer;
  /** Passphrase of an encrypted `key`. */
  passphrase?: string;
  /**
   * CA certificate(s): the issuer of `cert` (clients in this process trust it) and, with
   * `requestCert`, the issuer of client certificates.
   */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Require a client certificate signed by `ca` (default false). */
  requestCert?: boolean;
}

/** MQTT.js options (passed on to `tls.connect`) that make a client trust the embedded broker. */
export type BrokerClientOptions = Partial<IClientOptions> & Pick<tls.ConnectionOptions, 'checkServerIdentity' | 'allowPartialTrustChain'>;

/** Deepest synchronous re-entry of the message queue before it continues on a fresh stack. */
const MAX_QUEUE_REENTRY = 100;

/**
 * aedes's message queue (mqemitter 7) hands the next queued message on from inside the callback of
 * the one before (`released` → `_do`), so a long queue — a burst while a subscriber's socket is
 * full — recurses once per queued message and overflows the stack, which takes the process down
 * (here: Node-RED). Upstream: mcollina/mqemitter#204 (open), where the maintainer suggests
 * deferring only when re-entered too often in one tick. Past {@link MAX_QUEUE_REENTRY} nested
 * deliveries this puts the message back at the head of the queue, keeps its concurrency slot (so
 * new messages still queue behind it and the order is kept) and continues on the next
 * `setImmediate`.
 *
 * The patch relies on mqemitter's private members (`aedes.mq._do`, `_released`, `_messageQueue`,
 * `_messageCallbacks`, `current`), and aedes is on a caret range. A pin or an `overrides` entry in
 * this pack's package.json would not hold: npm applies `overrides` only from the root project
 * (the Node-RED user directory), and a user's install may dedupe to another aedes. So this check
 * is the guarantee: when a member is missing or of another type, the broker refuses to start
 * rather than run unprotected.
 * @throws Error naming the missing member and the installed aedes version (`aedes.version`).
 */
export function boundMessageQueueRecursion(aedes: Aedes): void {
  const mq = (aedes as unknown as { mq?: Record<string, unknown> }).mq;
  const expected: Array<[string, (v: unknown) => boolean, string]> = [
    ['_do', (v) => typeof v === 'function', 'a function'],
    ['_released', (v) => typeof v === 'function', 'a function'],
    ['_messageQueue', Array.isArray, 'an array'],
    ['_messageCallbacks', Array.isArray, 'an array'],
    ['current', (v) => typeof v === 'number', 'a number'],
  ];
  const missing = mq === null || typeof mq !== 'object' ? 'aedes.mq (its mqemitter) is not an object'
    : expected.filter(([name, ok]) => !ok(mq[name])).map(([name, , what]) => `aedes.mq.${name} is not ${what}`).join(', ');
  if (missing) {
    const version = (aedes as unknown as { version?: unknown }).version;
    throw new Error(`embedded broker not started: ${missing} in the installed aedes ${typeof version === 'string' ? version : '(version unknown)'}, `
      + `so the guard against deep recursion of its message queue (mqemitter#204) cannot apply; install aedes 1.2.x (the version this pack was tested with)`);
  }
  const q = mq as unknown as {
    _do: (message: unknown, callback: unknown) => unknown;
    _released: () => void;
    _messageQueue: unknown[];
    _messageCallbacks: unknown[];
    current: number;
  };
  const original = q._do;
  let depth = 0;
  q._do = function (this: typeof q, message: unknown, callback: unknown) {
    if (depth >= MAX_QUEUE_REENTRY) {
      this.current++;
      this._messageQueue.unshift(message);
      this._messageCallbacks.unshift(callback);
      setImmediate(() => this._released());
      return this;
    }
    depth++;
    try {
      return original.call(this, message, callback);
    } finally {
      depth--;
    }
  };
}

// kept in protocol/mqtt.ts (no aedes there, for processes that only connect); exported here as before
export { isLoopbackHost } from './mqtt';

/** Options of {@link startBroker}. */
export interface BrokerOptions {
  /** TCP port (default 1883, 8883 with TLS; 0 picks a free one). */
  port?: number;
  /** Bind address (default `127.0.0.1`). */
  host?: string;
  /** Topic root the authentication rules apply to (default `toolmesh/v1`). */
  root?: string;
  /**
   * Users and topic rules (docs/protocol.md, "Authentication"). Without it the broker is
   * open: anyone who reaches it may publish and subscribe to anything.
   */
  auth?: BrokerAuthOptions;
  /** Serve MQTT over TLS (`mqtts://`) instead of plain TCP. */
  tls?: BrokerTlsOptions;
}

/** A running embedded broker. */
export interface EmbeddedBroker {
  readonly aedes: Aedes;
  readonly port: number;
  readonly host: string;
  /** `mqtt://host:port`, or `mqtts://host:port` with TLS (`127.0.0.1` for a wildcard host). */
  readonly url: string;
  /**
   * MQTT.js options, besides the URL, for a client in this process: with TLS, trust in exactly
   * this broker's certificate, pinned by its SHA-256 fingerprint instead of a host name check
   * (`url` may name an address the certificate does not list). The certificate itself is a
   * trust anchor (`allowPartialTrustChain`, Node 20.18 / 22.9 on; on older Node give `ca`
   * unless the certificate is self-signed). `{}` without TLS.
   */
  readonly clientOptions: BrokerClientOptions;
  /**
   * Adds a user while running, or another password for a user with the same role.
   * @throws Error when the broker has no `auth`, or as {@link BrokerAuth.addUser}.
   */
  addUser(user: BrokerUser): Promise<void>;
  /** Counters of password checks (scrypt runs, remembered logins, flood refusals); undefined without `auth`. */
  loginStats(): Readonly<LoginStats> | undefined;
  /**
   * Takes back one password (its `passwordHash`) of a user added with {@link addUser}, and the
   * user with its last password; connected clients stay connected. No-op without `auth`.
   */
  removePassword(username: string, passwordHash: string): void;
  /**
   * Revokes a user: every password of it, and its connected clients are closed (see
   * {@link BrokerAuth.removeUser}). Resolves false without `auth` or when the user is unknown.
   */
  removeUser(username: string): Promise<boolean>;
  /** Usernames with a client connected now (empty without `auth`). */
  onlineUsers(): Set<string>;
  /** Users the broker admits now (0 without `auth`). */
  readonly userCount: number;
  /** Closes client connections and the listener. */
  close(): Promise<void>;
}

function clientTrust(opts: BrokerTlsOptions): BrokerClientOptions {
  const fingerprint = new X509Certificate(opts.cert).fingerprint256;
  const ca = opts.ca === undefined ? [] : Array.isArray(opts.ca) ? opts.ca : [opts.ca];
  return {
    ca: [...ca, opts.cert].map((c) => c.toString()),
    allowPartialTrustChain: true,
    checkServerIdentity: (_host: string, cert: tls.PeerCertificate) =>
      cert.fingerprint256 === fingerprint ? undefined : new Error(`the broker presented certificate ${cert.fingerprint256}, not the embedded broker's ${fingerprint}`),
  };
}

/** A TLS server handing each connection to aedes; `track` sees the TCP socket under each TLS one. */
function tlsServer(opts: BrokerTlsOptions, aedes: Aedes, track: (socket: net.Socket) => void): tls.Server {
  const { key, cert, passphrase, ca, requestCert } = opts;
  const server = tls.createServer({ key, cert, passphrase, ca, requestCert: requestCert === true }, (socket) => aedes.handle(socket));
  server.on('connection', track);
  return server;
}

/**
 * Starts aedes on `host:port`.
 * @throws Error when the port is in use (`EADDRINUSE`) or the address cannot be bound, when a
 *   user or a login limit is invalid (see {@link BrokerAuth.create}), when the TLS key and
 *   certificate are unusable, or when the installed aedes' internals differ from those
 *   {@link boundMessageQueueRecursion} patches (the message names the member and the version).
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  const auth = opts.auth ? await BrokerAuth.create(opts.auth, opts.root ?? DEFAULT_ROOT) : undefined;
  const aedes = await Aedes.createBroker();
  try {
    boundMessageQueueRecursion(aedes);
  } catch (e) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw e;
  }
  auth?.install(aedes);
  const sockets = new Set<net.Socket>();
  const track = (socket: net.Socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  };
  let server: net.Server;
  try {
    server = opts.tls ? tlsServer(opts.tls, aedes, track) : net.createServer((socket) => {
      track(socket);
      aedes.handle(socket);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port ?? (opts.tls ? 8883 : 1883), host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (e) {
    await new Promise<void>((resolve) => aedes.close(() => resolve()));
    throw e;
  }
  const port = (server.address() as net.AddressInfo).port;
  const shownHost = host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host.includes(':') ? `[${host}]` : host;
  return {
    aedes, port, host,
    url: `${opts.tls ? 'mqtts' : 'mqtt'}://${shownHost}:${port}`,
    clientOptions: opts.tls ? clientTrust(opts.tls) : {},
    addUser: async (user) => {
      if (!auth) throw new Error('this broker was started without auth: it has no users to add to');
      await auth.addUser(user);
    },
    loginStats: () => auth?.loginStats,
    removePassword: (username, passwordHash) => auth?.removePassword(username, passwordHash),
    removeUser: async (username) => (auth ? auth.removeUser(username) : false),
    onlineUsers: () => auth?.onlineUsers() ?? new Set(),
    get userCount() {
      return auth?.userCount ?? 0;
    },
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => aedes.close(() => resolve()));
    }),
  };
}
