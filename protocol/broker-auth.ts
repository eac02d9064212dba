/**
 * Authentication and topic rules of the embedded broker (docs/protocol.md, "Authentication").
 * The MQTT username is the agent id or caller id; each user has one role:
 *
 * | role   | may publish                                                  | may subscribe                                                          |
 * | agent  | `{root}/agents/{self}/status`, `.../catalog`, `.../rpc/+/res` | `{root}/agents/{self}/rpc/+/req`, `{root}/callers/+/status`            |
 * | caller | `{root}/agents/+/rpc/{self}/req`, `{root}/callers/{self}/status` | `{root}/agents/+/status`, `{root}/agents/+/catalog`, `{root}/agents/+/rpc/{self}/res`, `{root}/callers/{self}/status` |
 * | caller, also | `{root}/approvals/{self}/req`                              | `{root}/approvals/{self}/res`                                          |
 * | caller with `approvalGate` | also `{root}/approvals/+/res`                  | also `{root}/approvals/+/req`                                          |
 * | admin  | anything but `$SYS/`                                         | anything                                                               |
 *
 * Approval requests (docs/protocol.md, "Approval requests from other callers"): every caller may
 * ask a confirm-gate under its own id and read the answers to itself only. Reading every caller's
 * requests and answering them is for the confirm-gate's identity: a caller user marked
 * `approvalGate` (the tool-registry gives its own caller id this mark, since its confirm-gates
 * log in with the registry's credentials) or an admin. A plain caller (an MCP bridge) can neither
 * read another caller's requests (their arguments) nor answer them.
 *
 * Anonymous clients are refused unless `allowAnonymous` is set; they then only observe
 * (subscribe to agents' status and catalog; publish nothing, no will).
 *
 * Further rules that follow from the protocol:
 * - a will must be the client's own status topic (agent or caller), checked at CONNECT;
 * - `retain` only on status and catalog topics (a retained request would run again whenever
 *   its agent subscribes);
 * - the empty retained "decommissioned" message can only come from the agent itself or an
 *   admin, since nobody else may publish on its status and catalog;
 * - a subscription filter is granted only when every topic it can match is allowed (so `#`,
 *   or `+` in a caller's own segment, is refused);
 * - a client id in use by another user cannot be taken over (aedes would disconnect the first
 *   client), except by an admin.
 *
 * Passwords are kept as scrypt hashes (node:crypto) in the PHC string format
 * `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` (base64 without padding) and compared in constant time;
 * an unknown username costs the same scrypt run as a known one. Logins are guarded against floods
 * (./login-guard.ts): a bounded number of scrypt runs at a time behind a bounded queue, verified
 * credentials remembered briefly (a reconnect skips the scrypt) and failed logins throttled per
 * address and per username; the refusals these cause use CONNACK 3, "server unavailable".
 */
import { randomBytes, scrypt, timingSafeEqual, type ScryptOptions } from 'node:crypto';
import type { Aedes, AuthenticateError, Client, PublishPacket, Subscription } from 'aedes';
import { isValidId, topics, type Topics } from './topics';
import { printable } from './redact';
import { approvalTopics } from './approval-requests';
import { LoginGuard, type LoginLimits, type LoginStats } from './login-guard';

export { DEFAULT_LOGIN_LIMITS, type LoginLimits, type LoginStats } from './login-guard';

/** A broker user's role. */
export type BrokerRole = 'agent' | 'caller' | 'admin';

/**
 * A user of the embedded broker. `username` is the agent or caller id (`^[A-Za-z0-9_-]{1,64}$`);
 * give exactly one of `password` (hashed when the broker starts) and `passwordHash` (from
 * {@link hashPassword}).
 */
export interface BrokerUser {
  username: string;
  role: BrokerRole;
  password?: string;
  passwordHash?: string;
  /**
   * Only for a caller: it may also read every caller's approval requests
   * (`{root}/approvals/+/req`) and answer them (`{root}/approvals/+/res`): the identity confirm-gates
   * log in with. Default false.
   */
  approvalGate?: boolean;
}

/** Options of the embedded broker's authentication. */
export interface BrokerAuthOptions {
  users: BrokerUser[];
  /** Let clients without a username observe agents' status and catalogs (default false). */
  allowAnonymous?: boolean;
  /**
   * Told of every refused connection, publish or subscription, in one line (no passwords).
   * Refusals of a login flood (throttled, queue full) come at most once per 10 s per kind, with a
   * count of those left out.
   */
  onRefused?: (message: string) => void;
  /** Limits of password checks against login floods (see {@link LoginLimits} for the defaults). */
  limits?: LoginLimits;
}

/** Who a connected client is: a user's role, or `observer` for an allowed anonymous client. */
export interface BrokerIdentity {
  username?: string;
  role: BrokerRole | 'observer';
  /** A caller that may read and answer every caller's approval requests (see {@link BrokerUser.approvalGate}). */
  approvalGate?: boolean;
}

const ROLES: readonly BrokerRole[] = ['agent', 'caller', 'admin'];
/** scrypt cost: N = 2^14, r = 8, p = 1 (16 MiB, about 40 ms on a desktop core). */
const COST = { ln: 14, r: 8, p: 1 };
const PHC = /^\$scrypt\$ln=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$/;

function scryptAsync(password: Buffer, salt: Buffer, keylen: number, opts: ScryptOptions): Promise<Buffer> {
  return new Promise((resolve, reject) => scrypt(password, salt, keylen, opts, (err, key) => (err ? reject(err) : resolve(key))));
}

function parseHash(hash: string): { ln: number; r: number; p: number; salt: Buffer; key: Buffer } | undefined {
  const m = PHC.exec(hash);
  if (!m) return undefined;
  const [ln, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // bounds keep a hash from a config file from costing gigabytes per login
  if (ln < 10 || ln > 20 || r < 1 || r > 32 || p < 1 || p > 16 || 128 * 2 ** ln * r > 1024 ** 3) return undefined;
  const salt = Buffer.from(m[4], 'base64');
  const key = Buffer.from(m[5], 'base64');
  return salt.length >= 8 && key.length >= 16 ? { ln, r, p, salt, key } : undefined;
}

/** Hashes a password with scrypt; resolves with a `$scrypt$ln=14,r=8,p=1$<salt>$<hash>` string. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const N = 2 ** COST.ln;
  const key = await scryptAsync(Buffer.from(password, 'utf8'), salt, 32, { N, r: COST.r, p: COST.p, maxmem: 256 * N * COST.r });
  const b64 = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
  return `$scrypt$ln=${COST.ln},r=${COST.r},p=${COST.p}$${b64(salt)}$${b64(key)}`;
}

/** True when `hash` is a {@link hashPassword} string this module accepts. */
export function isPasswordHash(hash: string): boolean {
  return parseHash(hash) !== undefined;
}

/**
 * Checks a password against a {@link hashPassword} string in constant time (for its length).
 * Resolves false for a malformed hash.
 */
export async function verifyPassword(password: string | Buffer, hash: string): Promise<boolean> {
  const h = parseHash(hash);
  if (!h) return false;
  const N = 2 ** h.ln;
  const pw = typeof password === 'string' ? Buffer.from(password, 'utf8') : password;
  const key = await scryptAsync(pw, h.salt, h.key.length, { N, r: h.r, p: h.p, maxmem: 256 * N * h.r * h.p });
  return timingSafeEqual(key, h.key);
}

/**
 * True when every topic the subscription `filter` can match is matched by `pattern`.
 * `pattern` holds literal levels and `+`; the filter may hold `+` and `#`. A `#` in the filter
 * is never within a pattern (patterns have a fixed depth), and a filter's `+` is within only a
 * pattern's `+`.
 */
export function filterWithin(filter: string, pattern: string): boolean {
  const f = filter.split('/');
  const p = pattern.split('/');
  if (f.length !== p.length) return false;
  return f.every((level, i) => level !== '#' && (p[i] === '+' || (level !== '+' && level === p[i])));
}

/** True when `topic` matches `pattern`, whose `+` levels stand for ids (so they must hold a valid one). */
function topicMatchesIds(topic: string, pattern: string): boolean {
  const t = topic.split('/');
  const p = pattern.split('/');
  return t.length === p.length && t.every((level, i) => (p[i] === '+' ? isValidId(level) : p[i] === level));
}

/** Patterns a non-admin may publish on (`retain` marks the topics that may carry retained messages). */
function publishPatterns(t: Topics, who: BrokerIdentity): Array<{ pattern: string; retain: boolean }> {
  const self = who.username ?? '';
  if (who.role === 'agent') {
    return [
      { pattern: t.agentStatus(self), retain: true },
      { pattern: t.agentCatalog(self), retain: true },
      { pattern: t.res(self, '+'), retain: false },
    ];
  }
  if (who.role === 'caller') {
    const a = approvalTopics(t.root);
    return [
      { pattern: t.req('+', self), retain: false }, { pattern: t.callerStatus(self), retain: true },
      { pattern: a.request(self), retain: false },
      ...(who.approvalGate ? [{ pattern: a.response('+'), retain: false }] : []),
    ];
  }
  return [];
}

function subscribePatterns(t: Topics, who: BrokerIdentity): string[] {
  const self = who.username ?? '';
  if (who.role === 'agent') return [t.requestsTo(self), t.anyCallerStatus];
  if (who.role === 'caller') {
    const a = approvalTopics(t.root);
    // its own status too: a bridge asks it before starting whether its caller id is online already
    // (as mosquitto's ACL allows, scripts/mosquitto/toolmesh.acl)
    return [t.anyAgentStatus, t.anyAgentCatalog, t.responsesTo(self), t.callerStatus(self), a.response(self), ...(who.approvalGate ? [a.anyRequest] : [])];
  }
  if (who.role === 'observer') return [t.anyAgentStatus, t.anyAgentCatalog];
  return [];
}

/** True when `who` may publish on `topic` (a topic name, no wildcards), with `retain` as given. */
export function mayPublish(t: Topics, who: BrokerIdentity, topic: string, retain: boolean): boolean {
  if (topic.startsWith('$SYS/')) return false;
  if (who.role === 'admin') return true;
  return publishPatterns(t, who).some((p) => topicMatchesIds(topic, p.pattern) && (p.retain || !retain));
}

/** True when every topic the subscription `filter` can match is one `who` may receive. */
export function maySubscribe(t: Topics, who: BrokerIdentity, filter: string): boolean {
  if (who.role === 'admin') return true;
  return subscribePatterns(t, who).some((p) => filterWithin(filter, p));
}

/** True when `who` may leave a will on `topic`: its own status topic (any topic for an admin). */
export function mayLeaveWill(t: Topics, who: BrokerIdentity, topic: string): boolean {
  if (who.role === 'admin') return !topic.startsWith('$SYS/');
  if (who.role === 'agent') return topic === t.agentStatus(who.username!);
  if (who.role === 'caller') return topic === t.callerStatus(who.username!);
  return false;
}

/** A refusal of a login flood: logged at most once per {@link FLOOD_LOG_MS} per kind. */
type FloodKind = 'throttled' | 'busy';
/** Shortest time between two log lines about refusals of one {@link FloodKind}, ms. */
const FLOOD_LOG_MS = 10_000;

function refusal(returnCode: 2 | 3 | 4 | 5, message: string, flood?: FloodKind): AuthenticateError & { flood?: FloodKind } {
  return Object.assign(new Error(message), { returnCode, flood }) as AuthenticateError & { flood?: FloodKind };
}

/** The client's IP address (IPv4-mapped IPv6 as IPv4), or `unknown`. */
function addressOf(client: Client): string {
  const a = (client as unknown as { conn?: { remoteAddress?: string } }).conn?.remoteAddress;
  return a ? a.replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '') : 'unknown';
}

/**
 * The user table and the aedes handlers that enforce the rules above. Create it with
 * {@link BrokerAuth.create}, then {@link install} it on an aedes instance.
 */
export class BrokerAuth {
  private readonly users = new Map<string, { role: BrokerRole; hashes: string[]; approvalGate: boolean }>();
  private readonly identities = new WeakMap<Client, BrokerIdentity>();
  private readonly wills = new WeakMap<Client, string | undefined>();
  /** The remembered-credentials key of each client that logged in with a password, and the guard's generation then. */
  private readonly credentials = new WeakMap<Client, { key: string; generation: number }>();
  private readonly floodLog = new Map<FloodKind, { at: number; more: number }>();
  private readonly guard: LoginGuard;
  private readonly t: Topics;
  /** aedes' connected clients by client id, once {@link install}ed. */
  private aedesClients?: Record<string, Client | undefined>;

  private constructor(private readonly opts: BrokerAuthOptions, root: string, private readonly dummyHash: string) {
    this.t = topics(root);
    this.guard = new LoginGuard(opts.limits);
  }

  /** Counters of the login guard (scrypt runs, remembered logins, refusals), since creation. */
  get loginStats(): Readonly<LoginStats> {
    return this.guard.stats;
  }

  /**
   * Checks and hashes the users.
   * @param root topic root the rules apply to, e.g. `toolmesh/v1`.
   * @throws Error naming the user: an invalid id or role, no password or a malformed hash, or
   *   one id given two roles; or naming a {@link LoginLimits} field out of its range.
   */
  static async create(opts: BrokerAuthOptions, root: string): Promise<BrokerAuth> {
    const auth = new BrokerAuth(opts, root, await hashPassword(randomBytes(16).toString('hex')));
    for (const user of opts.users) await auth.addUser(user);
    return auth;
  }

  /**
   * Adds a user, or another password for a user with the same role (both then work).
   * @throws Error as {@link create}.
   */
  async addUser(user: BrokerUser): Promise<void> {
    const name = JSON.stringify(user.username);
    if (!isValidId(user.username)) throw new Error(`broker user ${name}: a username must be an agent or caller id (1–64 letters, digits, _ or -)`);
    if (!ROLES.includes(user.role)) throw new Error(`broker user ${name}: role is ${JSON.stringify(user.role)}; expected agent, caller or admin`);
    if ((user.password === undefined) === (user.passwordHash === undefined) || user.password === '') {
      throw new Error(`broker user ${name}: give a non-empty password or a passwordHash (one of them)`);
    }
    if (user.passwordHash !== undefined && !isPasswordHash(user.passwordHash)) {
      throw new Error(`broker user ${name}: passwordHash is not a $scrypt$ln=..,r=..,p=..$salt$hash string`);
    }
    const existing = this.users.get(user.username);
    if (existing && existing.role !== user.role) {
      throw new Error(`broker user ${name} is already ${existing.role === 'caller' ? 'a' : 'an'} ${existing.role}; one id has one role (got ${user.role} too)`);
    }
    const hash = user.passwordHash ?? await hashPassword(user.password!);
    const approvalGate = user.role === 'caller' && user.approvalGate === true;
    if (existing) {
      existing.hashes.push(hash);
      existing.approvalGate ||= approvalGate;
    } else this.users.set(user.username, { role: user.role, hashes: [hash], approvalGate });
  }

  /**
   * Takes back one password of a user added with {@link addUser} (given as its `passwordHash`),
   * and the user with its last password. Clients connected as that user stay connected; new
   * connections with that password are refused. Unknown users or hashes are ignored.
   */
  removePassword(username: string, passwordHash: string): void {
    const existing = this.users.get(username);
    if (!existing) return;
    existing.hashes = existing.hashes.filter((h) => h !== passwordHash);
    if (existing.hashes.length === 0) this.users.delete(username);
    // a remembered login with the password taken back must not get in without a check
    this.guard.forgetAll();
  }

  /**
   * Revokes a user: takes back every password of `username` (and the user), and closes every
   * client connected as that user now (their wills are published as usual, since they were the
   * user's when it connected). Resolves, once those connections are closed, with whether the user
   * was in the table or had a client connected.
   */
  async removeUser(username: string): Promise<boolean> {
    const known = this.users.delete(username);
    // a remembered login of that user must not get in without a check
    this.guard.forgetAll();
    const closing = this.clientsOf(username).map((client) => new Promise<void>((resolve) => client.close(() => resolve())));
    await Promise.all(closing);
    return known || closing.length > 0;
  }

  /** The usernames with at least one client connected now (anonymous observers left out). */
  onlineUsers(): Set<string> {
    const out = new Set<string>();
    for (const client of Object.values(this.aedesClients ?? {})) {
      const name = client && this.identities.get(client)?.username;
      if (name) out.add(name);
    }
    return out;
  }

  /** Clients connected as `username` now. */
  private clientsOf(username: string): Client[] {
    return Object.values(this.aedesClients ?? {}).filter((c): c is Client => c !== undefined && this.identities.get(c)?.username === username);
  }

  /** Users in the table (for tests and memory checks). */
  get userCount(): number {
    return this.users.size;
  }

  /**
   * Sets aedes' `preConnect`, `authenticate`, `authorizePublish` and `authorizeSubscribe`, and
   * listens for `clientDisconnect` (a connection's end remembers its credentials afresh).
   */
  install(aedes: Aedes): void {
    const clients = (aedes as unknown as { clients: Record<string, Client | undefined> }).clients;
    this.aedesClients = clients;
    aedes.preConnect = (client, packet, done) => {
      this.wills.set(client, packet.will?.topic);
      done(null, true);
    };
    aedes.authenticate = (client, username, password, done) => {
      this.authenticate(client, username, password, clients).then(
        () => done(null, true),
        (e: ReturnType<typeof refusal>) => {
          const line = `connection refused (client id ${JSON.stringify(client.id)}, user ${JSON.stringify(username ?? null)}): ${e.message}`;
          if (e.flood) this.refusedOften(e.flood, line);
          else this.refused(line);
          done(e, false);
        },
      );
    };
    aedes.on('clientDisconnect', (client: Client) => {
      const c = this.credentials.get(client);
      // not when a password was taken back since this client logged in
      if (c && c.generation === this.guard.generation) this.guard.remember(c.key);
    });
    aedes.authorizePublish = (client, packet: PublishPacket, done) => {
      // client is null only for a will stored before a broker restart; wills are checked at CONNECT
      if (!client) return done(null);
      const who = this.identities.get(client);
      if (who && mayPublish(this.t, who, packet.topic, packet.retain)) return done(null);
      const message = `${describe(who)} may not publish ${packet.retain ? 'a retained message ' : ''}on ${packet.topic}`;
      this.refused(`publish refused, connection closed: ${message}`);
      done(new Error(message));
    };
    aedes.authorizeSubscribe = (client, sub: Subscription, done) => {
      const who = this.identities.get(client);
      if (who && maySubscribe(this.t, who, sub.topic)) return done(null, sub);
      this.refused(`subscription refused: ${describe(who)} may not subscribe to ${sub.topic}`);
      done(null, null);
    };
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined, clients: Record<string, Client | undefined>): Promise<void> {
    let who: BrokerIdentity;
    if (username === undefined || username === '') {
      if (!this.opts.allowAnonymous) throw refusal(5, 'anonymous clients are not allowed: connect with a username and password');
      who = { role: 'observer' };
    } else {
      const user = this.users.get(username);
      const pw = password ?? Buffer.alloc(0);
      const key = this.guard.credentialKey(username, pw);
      // remembered credentials: no scrypt run, and no token of the failed-login throttle
      if (!user || !this.guard.remembered(key)) {
        const address = addressOf(client);
        const admitted = this.guard.admit(address, user ? username : undefined);
        if (admitted === 'throttled') throw refusal(3, `too many failed logins from ${address} or as this user: refused without a check; retry in a few seconds`, 'throttled');
        if (admitted === 'busy') throw refusal(3, `${this.guard.limits.maxQueuedHashes} logins are waiting for a password check: refused without a check; retry in a few seconds`, 'busy');
        await admitted;
        let ok = false;
        try {
          // every stored hash is tried, and an unknown user costs one scrypt run too
          for (const hash of user?.hashes ?? [this.dummyHash]) {
            this.guard.stats.hashRuns++;
            if (await verifyPassword(pw, hash)) ok = true;
          }
        } finally {
          this.guard.settle(address, user ? username : undefined, ok && user !== undefined, key);
        }
        // a user revoked (or a password taken back) during the check is refused
        if (!user || !ok || this.users.get(username) !== user) throw refusal(4, 'bad username or password');
      }
      this.credentials.set(client, { key, generation: this.guard.generation });
      who = { username, role: user.role, ...(user.approvalGate ? { approvalGate: true } : {}) };
    }
    const will = this.wills.get(client);
    if (will !== undefined && !mayLeaveWill(this.t, who, will)) {
      throw refusal(5, `${describe(who)} may not leave a will on ${will}; an agent's or caller's will goes on its own status topic`);
    }
    const holder = clients[client.id];
    const holderName = holder ? this.identities.get(holder)?.username : undefined;
    if (holder && holder !== client && holderName !== who.username && who.role !== 'admin') {
      throw refusal(2, `client id ${JSON.stringify(client.id)} is in use by another user`);
    }
    this.identities.set(client, who);
  }

  /** {@link refused}, at most once per {@link FLOOD_LOG_MS} for `kind`, with the count left out since. */
  private refusedOften(kind: FloodKind, message: string): void {
    const now = Date.now();
    const last = this.floodLog.get(kind);
    if (last && now - last.at < FLOOD_LOG_MS) {
      last.more++;
      return;
    }
    this.floodLog.set(kind, { at: now, more: 0 });
    this.refused(last?.more ? `${message} (and ${last.more} more such refusals in the ${Math.round((now - last.at) / 1000)} s before)` : message);
  }

  private refused(message: string): void {
    try {
      // client ids, usernames and topics are chosen by whoever connects: one line, no control characters
      this.opts.onRefused?.(printable(message));
    } catch {
      // a failing logger must not break the broker
    }
  }
}

function describe(who: BrokerIdentity | undefined): string {
  if (!who) return 'an unauthenticated client';
  return who.username ? `${who.role} ${who.username}` : 'an anonymous observer';
}
