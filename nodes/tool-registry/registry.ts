/**
 * The runtime of a tool-registry config node, kept free of Node-RED so it reads (and tests) on
 * its own: one {@link RpcCaller} (and, in embedded mode, the aedes broker it connects to), the
 * nodes that use it and get its connection state pushed to them (as core mqtt-broker does), the
 * policy that decides which tools LLMs are offered, and catalog-change listeners.
 */
import type { KeyObject } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import {
  RpcCaller, toolErrorOf, toolErrorResult, type AgentView, type CallOptions, type CallToolResult, type ConnectOptions, type Tool,
} from '@toolmesh/agent/protocol';
import { urlForLog } from '@toolmesh/agent/protocol/redact';
import { startBroker, type BrokerTlsOptions, type BrokerUser, type EmbeddedBroker } from '@toolmesh/agent/protocol/broker';
import { hashPassword, isPasswordHash, type BrokerRole } from '@toolmesh/agent/protocol/broker-auth';
import { isValidId, topics } from '@toolmesh/agent/protocol/topics';
import { BrokerUserStore, MAX_NOTE } from './user-store';
import type { AgentConnection, OfferedTool, RegistryState, RegistryUser, ToolRegistryApi } from '../shared/registry-api';
import { emitCall } from '../shared/events';
import { McpServerMount, type McpServerMountOptions } from '../../mcp/client';
import { isOffered, type Policy } from './policy';
import { BROKER_HANDOVER_MS, brokerFingerprint, parkBroker, takeParked, type RefusalRelay } from './broker-handover';

/**
 * Where the broker is: an external one at a URL, or an embedded aedes started by the registry.
 * External: `agentAuth` is what hosted agents log in with (username defaults to the agent id);
 * without it they use the caller's `connection` credentials.
 * Embedded: with `auth`, only `auth.users` and the users the registry makes for itself (its
 * caller, and each hosted agent, with generated passwords) may connect; `tls` serves `mqtts://`.
 */

/** Catalog changes within this window reach the listeners as one notification, ms. */
export const CATALOG_NOTIFY_MS = 20;
export type BrokerChoice =
  | { mode: 'external'; connection: ConnectOptions; agentAuth?: { username?: string; password?: string } }
  | { mode: 'embedded'; port: number; host: string; auth?: { users: BrokerUser[] }; tls?: BrokerTlsOptions };

export { BROKER_HANDOVER_MS, parkedBrokerCount, stopParkedBrokers } from './broker-handover';

/** A generated password: 24 random bytes, base64url. */
function generatePassword(): string {
  return randomBytes(24).toString('base64url');
}

/** Options of {@link ToolRegistry}; the node wrapper builds them from the editor config. */
export interface RegistryOptions {
  broker: BrokerChoice;
  /** Topic root, e.g. `toolmesh/v1`. */
  root: string;
  /** Caller id on the wire (`^[A-Za-z0-9_-]{1,64}$`). */
  callerId: string;
  policy: Policy;
  /** Budget of a call when neither the call nor the tool's catalog entry gives one, ms. */
  defaultTimeoutMs: number;
  /**
   * External MCP servers to mount (mcp/client.ts): each appears as agent `mcp-<name>` in
   * listAgents, listTools (same policy), call, onCatalogChange and describeAgents, like a mesh agent.
   */
  mcpServers?: McpServerMountOptions[];
  /** Approval keys of gates in other Node-RED instances that this registry's flow agents trust, by key id (trusted-keys.ts). */
  trustedKeys?: ReadonlyMap<string, KeyObject>;
  /**
   * Embedded mode: the key (the config node id, or the id of the toolmesh-broker node whose
   * settings it runs) under which {@link ToolRegistry.close} with
   * `keepBroker` leaves the running broker for a re-created registry with the same key and equal
   * broker settings. Without it, close always stops the broker.
   */
  brokerKey?: string;
  /** How long a kept broker waits for its take-over, ms (default {@link BROKER_HANDOVER_MS}). */
  brokerHandoverMs?: number;
  /**
   * Embedded mode with authentication: the JSON file of the broker users added one by one (in the
   * editor, or by a join) that this registry keeps across restarts (user-store.ts; the node uses
   * `<userDir>/toolmesh/broker-users-<node id>.json`). Without it the user methods throw.
   */
  userStoreFile?: string;
}

/** A broker user as {@link ToolRegistry.listBrokerUsers} lists it (no password, no hash). */
export interface BrokerUserSummary {
  username: string;
  role: BrokerRole;
  /** `editor`: in the user store (added one by one, or joined); `list`: in the old users text. */
  source: 'editor' | 'list';
  /** ISO time (store users only). */
  addedAt?: string;
  note?: string;
  /** A client is connected as this user now. */
  online: boolean;
}

/** An Error with a `code` the admin endpoints map to a status: `EXISTS` 409, `UNKNOWN` 404, `LISTED` 409, `UNAVAILABLE` 409, `INVALID` 400. */
function codedError(code: 'EXISTS' | 'UNKNOWN' | 'LISTED' | 'UNAVAILABLE' | 'INVALID', message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}

/** A catalog tool as the admin endpoint lists it, with whether the policy offers it to LLMs. */
export interface ToolSummary {
  name: string;
  description: string;
  inputSchema: Tool['inputSchema'];
  annotations: Tool['annotations'];
  timeoutMs?: number;
  offered: boolean;
}

/** Agents on one page of the admin endpoint unless `limit` says otherwise. */
export const DEFAULT_PAGE = 100;
/** The most agents one page of the admin endpoint holds. */
export const MAX_PAGE = 500;

/** What {@link ToolRegistry.findAgents} looks for; every field is optional. */
export interface AgentQuery {
  /** Text in the agent's id, name or kind (case-insensitive). */
  q?: string;
  /** Exactly this agent id. */
  agent?: string;
  /** Matches skipped before the page, default 0. */
  offset?: number;
  /** Agents on the page, default {@link DEFAULT_PAGE}. */
  limit?: number;
  /** False: no tool lists (`tools: []`), for pick-lists of agents. Default true. */
  tools?: boolean;
}

/** An agent as the admin endpoint lists it (`GET /toolmesh/registry/:id/agents`). */
export interface AgentSummary {
  id: string;
  name?: string;
  kind?: string;
  host?: string;
  version?: string;
  /** Last status state seen: `online`, `offline`, `lost`, or `unknown` (no status, or decommissioned). */
  state: string;
  online: boolean;
  /** Online with a current catalog: its tools are callable and may be offered. */
  ready: boolean;
  /** The tools of its last catalog, also while it is offline (for pick-lists). */
  tools: ToolSummary[];
}

/**
 * One registry. Events: `state` (state: {@link RegistryState}, detail?: string) on every change,
 * `warn` (message: string) for protocol warnings and late results.
 */
export class ToolRegistry extends EventEmitter implements ToolRegistryApi {
  private current: RegistryState = 'connecting';
  private detail?: string;
  private readonly users = new Map<string, RegistryUser>();
  private readonly catalogListeners = new Set<() => void>();
  private readonly closeTasks = new Set<() => Promise<void>>();
  private caller?: RpcCaller;
  private broker?: EmbeddedBroker;
  /** The embedded broker's settings digest, its refusal relay and the caller's generated password (for a hand-over). */
  private fingerprint?: string;
  private relay?: RefusalRelay;
  private callerPassword?: string;
  private kept = false;
  /** The caller's connection settings, once started. */
  private connection?: ConnectOptions;
  /** Generated passwords of hosted agents on the embedded broker (with their hash), by agent id. */
  private readonly agentPasswords = new Map<string, Promise<{ password: string; hash: string }>>();
  private starting?: Promise<void>;
  private closed = false;
  /** The broker users kept across restarts (embedded mode with auth and {@link RegistryOptions.userStoreFile}). */
  private store?: BrokerUserStore;
  /** Mounted MCP servers by agent id (`mcp-<name>`). */
  private readonly mounts = new Map<string, McpServerMount>();
  /** {@link toolsByAgent}'s policy-filtered array per agent array (the caller's, or a mount's tools). */
  private readonly offeredOf = new WeakMap<object, readonly OfferedTool[]>();

  /** @throws Error naming the field when an MCP server's options are unusable (see McpServerMount). */
  constructor(private readonly opts: RegistryOptions) {
    super();
    for (const o of opts.mcpServers ?? []) {
      const mount = new McpServerMount({ defaultTimeoutMs: opts.defaultTimeoutMs, ...o });
      if (this.mounts.has(mount.agentId)) throw new Error(`MCP server name ${o.name} is used twice`);
      mount.on('change', () => this.catalogChanged());
      mount.on('warn', (m: string) => this.emit('warn', m));
      this.mounts.set(mount.agentId, mount);
    }
  }

  /** The mounted MCP servers (for tests and the admin endpoint). */
  get mcpMounts(): McpServerMount[] {
    return [...this.mounts.values()];
  }

  get state(): RegistryState {
    return this.current;
  }

  get callerId(): string {
    return this.opts.callerId;
  }

  /** The embedded broker's `mqtt://host:port` once it listens; `undefined` in external mode. */
  get brokerUrl(): string | undefined {
    return this.broker?.url;
  }

  /** True when this registry took over the running embedded broker of its closed predecessor (see {@link close}). */
  get brokerKept(): boolean {
    return this.kept;
  }

  /** The embedded broker's actual TCP port (useful with port 0); `undefined` in external mode. */
  get brokerPort(): number | undefined {
    return this.broker?.port;
  }

  /**
   * Where the caller connects, without any user info (protocol/redact.ts: config.ts refuses a URL
   * that holds some; this is the second line of defence): for logs.
   */
  get displayUrl(): string {
    const b = this.opts.broker;
    if (b.mode === 'embedded') return this.broker?.url ?? `mqtt://${b.host}:${b.port}`;
    return urlForLog(b.connection.url);
  }

  /**
   * Starts the embedded broker (if any), then the caller. Resolves once the caller is started
   * (not connected: an external broker may be down, and the caller keeps retrying). Never
   * rejects: a broker that cannot start turns the state to `error` with a short detail.
   */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  /**
   * Marks the registry unusable because of a configuration error: state `error` with `detail`
   * (pushed to users); {@link start} then does nothing and calls fail with `AGENT_OFFLINE`.
   */
  fail(detail: string): void {
    this.starting ??= Promise.resolve();
    this.setState('error', detail);
  }

  private async doStart(): Promise<void> {
    // MCP servers need no broker: they start beside it and keep restarting on their own
    for (const m of this.mounts.values()) void m.start();
    let connection: ConnectOptions;
    const b = this.opts.broker;
    if (b.mode === 'embedded') {
      let password = b.auth ? generatePassword() : undefined;
      const fingerprint = brokerFingerprint(b, this.opts.root, this.opts.callerId);
      const kept = await takeParked(this.opts.brokerKey, fingerprint, b.port);
      try {
        if (kept) {
          // the previous registry of this node left its broker running: agents stay connected
          kept.relay.to = this;
          this.kept = true;
          this.relay = kept.relay;
          this.broker = kept.broker;
          password = kept.callerPassword;
          for (const [id, p] of kept.agentPasswords) this.agentPasswords.set(id, p);
          // its store users are in the running broker already; the store is read for the user methods
          if (b.auth) await this.openStore();
        } else {
          const relay: RefusalRelay = { to: this };
          this.relay = relay;
          const stored = b.auth ? await this.openStore() : [];
          this.broker = await startBroker({
            port: b.port, host: b.host, root: this.opts.root, tls: b.tls,
            auth: b.auth && {
              // the registry's caller id is also its confirm-gates' identity: they read and answer
              // other callers' approval requests (docs/protocol.md, "Approval requests from other callers")
              users: [...b.auth.users, { username: this.opts.callerId, role: 'caller', password, approvalGate: true }, ...stored],
              onRefused: (m) => relay.to?.emit('warn', `embedded broker: ${m}`),
            },
          });
        }
        this.fingerprint = fingerprint;
        this.callerPassword = password;
      } catch (e) {
        const err = e as NodeJS.ErrnoException;
        const detail = err.code === 'EADDRINUSE' ? `${b.host}:${b.port} in use`
          : err.code === 'EADDRNOTAVAIL' ? `${b.host} is not an address of this machine`
          : err.message;
        this.setState('error', detail);
        return;
      }
      if (this.closed) return;
      connection = { url: this.broker.url, extra: this.broker.clientOptions };
      if (password) Object.assign(connection, { username: this.opts.callerId, password });
    } else {
      connection = b.connection;
    }
    let caller: RpcCaller;
    try {
      caller = new RpcCaller({ connection, callerId: this.opts.callerId, root: this.opts.root });
    } catch (e) {
      this.setState('error', (e as Error).message);
      return;
    }
    caller.on('connect', () => this.setState('connected'));
    // every failed reconnect attempt closes again: keep the reason it gave, so a broker that
    // stays away is one state change (one log line, one status) per distinct reason
    caller.on('close', () => {
      if (!this.closed) this.setState('disconnected', this.current === 'disconnected' ? this.detail : undefined);
    });
    // e.g. "Connection refused: Not authorized": users see why they are disconnected
    caller.on('connection-error', (e: Error) => {
      if (!this.closed) this.setState('disconnected', e.message);
    });
    caller.on('agents', () => this.catalogChanged());
    caller.on('warn', (m: string) => this.emit('warn', m));
    caller.on('late-result', (e: { agentId: string; tool: string; id: string; result: CallToolResult }) => {
      this.emit('warn', `late result of ${e.agentId}/${e.tool} (call ${e.id}) after it was reported AGENT_OFFLINE: isError=${e.result.isError === true}`);
    });
    try {
      void caller.start();
    } catch (e) {
      // MQTT.js throws at once on a URL it cannot use (e.g. an unknown protocol)
      this.setState('error', (e as Error).message);
      return;
    }
    this.caller = caller;
    this.connection = connection;
  }

  /**
   * Runs the {@link beforeClose} tasks, then stops the caller (it publishes `offline`), then the
   * embedded broker. Safe to call twice.
   * With `keepBroker` and a {@link RegistryOptions.brokerKey}, the embedded broker keeps running
   * (its clients stay connected) for {@link RegistryOptions.brokerHandoverMs}: a registry started
   * within that time with the same key and equal broker settings takes it over (with its users,
   * including the generated ones); other settings, or no take-over in time, stop it.
   */
  async close(opts: { keepBroker?: boolean } = {}): Promise<void> {
    this.closed = true;
    clearTimeout(this.changeScheduled);
    this.changeScheduled = undefined;
    const tasks = [...this.closeTasks];
    this.closeTasks.clear();
    await Promise.all(tasks.map((task) => task().catch((e: Error) => this.emit('warn', `a task before close failed: ${e.message}`))));
    await this.starting;
    await Promise.all([...this.mounts.values()].map((m) => m.stop()));
    await this.caller?.stop();
    await this.releaseBroker(opts.keepBroker === true);
    this.catalogListeners.clear();
    this.users.clear();
  }

  /** Stops the embedded broker, or parks it for a take-over (see {@link close}). */
  private async releaseBroker(keep: boolean): Promise<void> {
    const broker = this.broker;
    if (!broker) return;
    this.broker = undefined;
    const key = this.opts.brokerKey;
    if (!keep || key === undefined || !this.fingerprint || !this.relay) {
      await broker.close();
      return;
    }
    this.relay.to = undefined;
    await parkBroker(key, {
      broker, fingerprint: this.fingerprint, relay: this.relay, callerPassword: this.callerPassword,
      agentPasswords: new Map(this.agentPasswords),
    }, this.opts.brokerHandoverMs ?? BROKER_HANDOVER_MS);
  }

  /**
   * Opens the user store (when a file is set) and returns its users for the broker to start with,
   * leaving out (with a warning) those whose id the users text or the caller id takes.
   * @throws Error naming the file when it is unreadable or malformed (the broker then does not start).
   */
  private async openStore(): Promise<Array<{ username: string; role: BrokerRole; passwordHash: string }>> {
    const file = this.opts.userStoreFile;
    if (!file || this.opts.broker.mode !== 'embedded') return [];
    this.store = await BrokerUserStore.open(file);
    const listed = new Set((this.opts.broker.auth?.users ?? []).map((u) => u.username));
    const out: Array<{ username: string; role: BrokerRole; passwordHash: string }> = [];
    for (const u of this.store.list()) {
      if (listed.has(u.username) || u.username === this.opts.callerId) {
        this.emit('warn', `broker user ${u.username} of ${file} is left out: the users text or the caller id takes that id`);
      } else out.push({ username: u.username, role: u.role, passwordHash: u.passwordHash });
    }
    return out;
  }

  /** The started embedded broker with auth and the store, or an Error saying what is missing. */
  private async userBroker(): Promise<{ broker: EmbeddedBroker; store: BrokerUserStore; listed: ReadonlySet<string> }> {
    await this.starting;
    return this.userBrokerNow();
  }

  /** {@link userBroker} without waiting for the start. */
  private userBrokerNow(): { broker: EmbeddedBroker; store: BrokerUserStore; listed: ReadonlySet<string> } {
    const b = this.opts.broker;
    if (b.mode !== 'embedded' || !b.auth) throw codedError('UNAVAILABLE', 'broker users need the embedded broker with authentication on');
    if (this.closed) throw codedError('UNAVAILABLE', 'the tool registry is closed');
    if (!this.broker) throw codedError('UNAVAILABLE', `the embedded broker is not running (${this.detail ?? this.current})`);
    if (!this.store) throw codedError('UNAVAILABLE', 'broker users added one by one need a user store file (Node-RED\'s user directory)');
    return { broker: this.broker, store: this.store, listed: new Set(b.auth.users.map((u) => u.username)) };
  }

  /**
   * The users of the embedded broker with authentication: those of the users text (`list`) and of
   * the store (`editor`), sorted by id, with whether a client is connected as each. The registry's
   * own caller and hosted flow agents are left out.
   * @throws Error (code `UNAVAILABLE`) in external mode, without authentication, without a store,
   *   or before the broker started ({@link start} resolved).
   */
  listBrokerUsers(): BrokerUserSummary[] {
    const { broker, store } = this.userBrokerNow();
    const online = broker.onlineUsers();
    const b = this.opts.broker as Extract<BrokerChoice, { mode: 'embedded' }>;
    const out: BrokerUserSummary[] = (b.auth?.users ?? []).map((u) => ({ username: u.username, role: u.role, source: 'list' as const, online: online.has(u.username) }));
    const listed = new Set(out.map((u) => u.username));
    for (const u of store.list()) {
      if (listed.has(u.username) || u.username === this.opts.callerId) continue;
      out.push({ username: u.username, role: u.role, source: 'editor', addedAt: u.addedAt, ...(u.note !== undefined ? { note: u.note } : {}), online: online.has(u.username) });
    }
    return out.sort((x, y) => (x.username < y.username ? -1 : x.username > y.username ? 1 : 0));
  }

  /**
   * Adds a broker user: written to the store, and admitted by the running broker at once.
   * @throws Error naming the field (code `INVALID`) for a bad username, role, hash or note; code
   *   `EXISTS` when the id is taken (store, users text, the caller id, or a hosted flow agent);
   *   code `UNAVAILABLE` as {@link listBrokerUsers}; a file system Error when the store cannot be written.
   */
  async addBrokerUser(u: { username: string; role: BrokerRole; passwordHash: string; note?: string }): Promise<void> {
    const { broker, store, listed } = await this.userBroker();
    if (!isValidId(u.username)) throw codedError('INVALID', 'username: expected an agent or caller id (1–64 letters, digits, _ or -)');
    if (!['agent', 'caller', 'admin'].includes(u.role)) throw codedError('INVALID', 'role: expected agent, caller or admin');
    if (typeof u.passwordHash !== 'string' || !isPasswordHash(u.passwordHash)) throw codedError('INVALID', 'passwordHash: expected a $scrypt$ln=..,r=..,p=..$salt$hash string');
    if (u.note !== undefined && (typeof u.note !== 'string' || u.note.length > MAX_NOTE)) throw codedError('INVALID', `note: expected a text of at most ${MAX_NOTE} characters`);
    const taken = store.get(u.username) ? 'a broker user' : listed.has(u.username) ? 'a user of the users text'
      : u.username === this.opts.callerId ? 'this registry\'s caller id' : this.agentPasswords.has(u.username) ? 'an agent hosted in these flows' : undefined;
    if (taken) throw codedError('EXISTS', `username: ${u.username} is ${taken} already`);
    await store.add({ username: u.username, role: u.role, passwordHash: u.passwordHash, addedAt: new Date().toISOString(), ...(u.note !== undefined ? { note: u.note } : {}) });
    try {
      await broker.addUser({ username: u.username, role: u.role, passwordHash: u.passwordHash });
    } catch (e) {
      await store.remove(u.username).catch(() => undefined);
      throw e;
    }
  }

  /**
   * Revokes a broker user of the store: the running broker drops every password of it and closes
   * its connections (their wills are published), and the store forgets it.
   * Resolves false when the store has no such user.
   * @throws Error with code `LISTED` for a user of the users text (it is removed there), or as {@link listBrokerUsers}.
   */
  async removeBrokerUser(username: string): Promise<boolean> {
    const { broker, store, listed } = await this.userBroker();
    if (listed.has(username)) throw codedError('LISTED', `${username} is a user of the users text ("More users"): remove its line there and deploy`);
    if (!store.get(username)) return false;
    await store.remove(username);
    await broker.removeUser(username);
    return true;
  }

  /**
   * Gives a store user a new password (its hash): the old one is refused from now on, and
   * connections made with it are closed. The store keeps the new hash.
   * @throws Error with code `UNKNOWN` when the store has no such user, `LISTED` for a user of the
   *   users text, `INVALID` for a malformed hash, or as {@link listBrokerUsers}.
   */
  async resetBrokerPassword(username: string, passwordHash: string): Promise<void> {
    const { broker, store, listed } = await this.userBroker();
    if (listed.has(username)) throw codedError('LISTED', `${username} is a user of the users text ("More users"): change its line there and deploy`);
    const user = store.get(username);
    if (!user) throw codedError('UNKNOWN', `username: no broker user ${username}`);
    if (typeof passwordHash !== 'string' || !isPasswordHash(passwordHash)) throw codedError('INVALID', 'passwordHash: expected a $scrypt$ln=..,r=..,p=..$salt$hash string');
    await store.setPasswordHash(username, passwordHash);
    await broker.removeUser(username);
    await broker.addUser({ username, role: user.role, passwordHash });
  }

  /**
   * Decommissions agent `agentId` on the embedded broker: publishes an empty retained message on
   * its status and catalog and on every other topic under `{root}/agents/{agentId}/` that holds a
   * retained message, so callers (this registry's, the sidebar's) forget it (docs/protocol.md:
   * an empty retained status means decommissioned). The broker publishes them itself, since only
   * the agent or an admin may. An agent still connected can publish again: revoke it first.
   * @throws Error (code `INVALID`) for a malformed id, (code `UNAVAILABLE`) in external mode or
   *   when the broker is not running.
   */
  async decommissionAgent(agentId: string): Promise<void> {
    if (!isValidId(agentId)) throw codedError('INVALID', 'agentId: expected an agent id (1–64 letters, digits, _ or -)');
    if (this.opts.broker.mode !== 'embedded') throw codedError('UNAVAILABLE', 'decommissioning an agent needs the embedded broker; on an external broker publish an empty retained message on its status and catalog as an admin');
    await this.starting;
    const broker = this.broker;
    if (!broker || this.closed) throw codedError('UNAVAILABLE', `the embedded broker is not running (${this.detail ?? this.current})`);
    const t = topics(this.opts.root);
    const found = new Set([t.agentStatus(agentId), t.agentCatalog(agentId)]);
    const persistence = (broker.aedes as unknown as { persistence: { createRetainedStream(pattern: string): AsyncIterable<{ topic: string }> } }).persistence;
    for await (const packet of persistence.createRetainedStream(`${this.opts.root}/agents/${agentId}/#`)) found.add(packet.topic);
    for (const topic of found) {
      await new Promise<void>((resolve, reject) => broker.aedes.publish(
        { cmd: 'publish', topic, payload: Buffer.alloc(0), qos: 1, retain: true, dup: false, messageId: 0 } as Parameters<typeof broker.aedes.publish>[0],
        (e?: Error) => (e ? reject(e) : resolve()),
      ));
    }
  }

  /**
   * Removes a device: revokes its broker user when the store has one ({@link removeBrokerUser}),
   * then {@link decommissionAgent}. `revoked` false: it had no store user (e.g. a line of the users
   * text, `listed` true, which stays until removed there; or an external broker).
   * @throws Error as {@link decommissionAgent}.
   */
  async removeAgent(agentId: string): Promise<{ revoked: boolean; listed: boolean }> {
    if (!isValidId(agentId)) throw codedError('INVALID', 'agentId: expected an agent id (1–64 letters, digits, _ or -)');
    const b = this.opts.broker;
    const listed = b.mode === 'embedded' && (b.auth?.users ?? []).some((u) => u.username === agentId);
    let revoked = false;
    if (b.mode === 'embedded' && b.auth && this.store && !listed) revoked = await this.removeBrokerUser(agentId);
    await this.decommissionAgent(agentId);
    return { revoked, listed };
  }

  /** The approval keys set on this registry (its "Trusted approval keys"), by key id; empty when none. */
  approvalKeys(): ReadonlyMap<string, KeyObject> {
    return this.opts.trustedKeys ?? new Map();
  }

  /**
   * The connection settings for agent `agentId` hosted in this Node-RED: the embedded broker's
   * URL once it listens (with authentication on, as user `agentId` with a password generated on
   * first use and kept in memory), or the external broker's settings (URL, TLS) without a client
   * id, with `agentAuth` as credentials when set, else the caller's. Without `agentId`: the
   * caller's own settings and credentials.
   * Waits for {@link start}; `undefined` when there is no started caller or the registry is closed.
   * @throws Error when the embedded broker cannot make `agentId` an agent user (e.g. the id is
   *   this registry's caller id, or a caller or admin in the user list).
   */
  async agentConnection(agentId?: string): Promise<AgentConnection | undefined> {
    await this.starting;
    if (!this.caller || this.closed || !this.connection) return undefined;
    const b = this.opts.broker;
    const root = this.opts.root;
    if (agentId === undefined) return { connection: { ...this.connection, clientId: undefined }, root };
    if (b.mode === 'external') {
      const { username, password } = b.agentAuth ?? {};
      const auth = username || password ? { username: username || agentId, password } : {};
      return { connection: { ...b.connection, clientId: undefined, ...auth }, root };
    }
    const connection: ConnectOptions = { url: this.broker!.url, extra: this.broker!.clientOptions };
    if (b.auth) Object.assign(connection, { username: agentId, password: await this.agentPassword(agentId) });
    return { connection, root };
  }

  private agentPassword(agentId: string): Promise<string> {
    let pending = this.agentPasswords.get(agentId);
    if (!pending) {
      const password = generatePassword();
      const broker = this.broker!;
      // hashed here so the release can take back exactly this password (see releaseAgentConnection)
      pending = hashPassword(password).then(async (hash) => {
        await broker.addUser({ username: agentId, role: 'agent', passwordHash: hash });
        return { password, hash };
      });
      pending.catch(() => {
        if (this.agentPasswords.get(agentId) === pending) this.agentPasswords.delete(agentId);
      });
      this.agentPasswords.set(agentId, pending);
    }
    return pending.then((p) => p.password);
  }

  /**
   * Takes back the broker user that {@link agentConnection} made for hosted agent `agentId` on the
   * embedded broker with authentication (its generated password); a later `agentConnection`
   * makes a new one. Users from the user list keep their own passwords; a client still connected
   * with the taken-back password stays connected until it disconnects. No-op in external mode,
   * without auth, or when no user was made for `agentId`. Never throws.
   */
  releaseAgentConnection(agentId: string): void {
    const pending = this.agentPasswords.get(agentId);
    if (!pending) return;
    this.agentPasswords.delete(agentId);
    const broker = this.broker;
    pending.then(({ hash }) => broker?.removePassword(agentId, hash), () => undefined);
  }

  /** Hosted-agent users made by {@link agentConnection} and not released (for tests and memory checks). */
  get hostedAgentUsers(): number {
    return this.agentPasswords.size;
  }

  beforeClose(task: () => Promise<void>): () => void {
    this.closeTasks.add(task);
    return () => {
      this.closeTasks.delete(task);
    };
  }

  register(user: RegistryUser): void {
    this.users.set(user.id, user);
    user.onRegistryState(this.current, this.detail);
  }

  deregister(user: RegistryUser): void {
    this.users.delete(user.id);
  }

  /** Mesh agents and mounted MCP servers, sorted by id; a mesh agent that takes a mounted server's id is hidden. */
  listAgents(): AgentView[] {
    const mesh = (this.caller?.listAgents() ?? []).filter((a) => !this.mounts.has(a.id));
    if (this.mounts.size === 0) return mesh;
    return [...mesh, ...[...this.mounts.values()].map((m) => m.view())].sort((a, b) => (a.id < b.id ? -1 : a.id > b.id ? 1 : 0));
  }

  /** The agent of {@link listAgents} with this id (a mounted server hides a mesh agent of its id), or `undefined`. */
  agent(id: string): AgentView | undefined {
    return this.mounts.get(id)?.view() ?? this.caller?.agent(id);
  }

  /** Tools of ready agents and mounted servers that the policy offers to LLMs (mesh agents by id, then mounted servers). */
  listTools(): OfferedTool[] {
    return [...this.toolsByAgent().values()].flat();
  }

  /**
   * The tools of {@link listTools} grouped by agent (mesh agents by id, then mounted MCP servers;
   * an agent with no offered tool is left out). An agent's array is the same object while its
   * catalog, readiness and the policy are unchanged ({@link RpcCaller.toolsByAgent}), so the
   * llm-agent's tool index updates only the agents that changed.
   */
  toolsByAgent(): Map<string, readonly OfferedTool[]> {
    const out = new Map<string, readonly OfferedTool[]>();
    const add = (id: string, key: object, make: () => OfferedTool[]) => {
      let offered = this.offeredOf.get(key);
      if (!offered) {
        offered = make().filter((t) => isOffered(this.opts.policy, t.agentId, t.tool.name));
        this.offeredOf.set(key, offered);
      }
      if (offered.length) out.set(id, offered);
    };
    for (const [id, tools] of this.caller?.toolsByAgent() ?? []) if (!this.mounts.has(id)) add(id, tools, () => [...tools]);
    for (const m of this.mounts.values()) {
      const v = m.view();
      if (v.ready) add(v.id, v.catalog!.tools, () => v.catalog!.tools.map((tool) => ({ agentId: v.id, tool })));
    }
    return out;
  }

  isOffered(agentId: string, tool: string): boolean {
    return isOffered(this.opts.policy, agentId, tool);
  }

  /**
   * Calls a tool; always resolves. The budget is `opts.timeoutMs`, else the tool's catalog
   * `timeoutMs`, else the registry's default. Without a started caller (the embedded broker
   * failed, or the registry is closed) it resolves at once with `AGENT_OFFLINE`, outcome `not_sent`.
   */
  async call(agentId: string, tool: string, args: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<CallToolResult> {
    await this.starting;
    const mount = this.mounts.get(agentId);
    if (mount) {
      if (this.closed) return toolErrorResult('AGENT_OFFLINE', `the tool registry is closed; the call to ${agentId}/${tool} was not sent`, { agent: agentId, outcome: 'not_sent' });
      const started = Date.now();
      const result = await mount.call(tool, args, { ...opts, timeoutMs: opts.timeoutMs ?? this.opts.defaultTimeoutMs });
      emitCall({ agent: agentId, tool, code: toolErrorOf(result)?.code ?? 'OK', durationMs: Date.now() - started });
      return result;
    }
    const caller = this.caller;
    if (!caller || this.closed) {
      const why = this.closed ? 'is closed' : `has no broker connection (${this.detail ?? this.current})`;
      return toolErrorResult('AGENT_OFFLINE', `the tool registry ${why}; the call to ${agentId}/${tool} was not sent`, { agent: agentId, outcome: 'not_sent' });
    }
    const timeoutMs = opts.timeoutMs
      ?? caller.agent(agentId)?.catalog?.tools.find((t) => t.name === tool)?.timeoutMs
      ?? this.opts.defaultTimeoutMs;
    const started = Date.now();
    const result = await caller.call(agentId, tool, args, { ...opts, timeoutMs });
    // every node's calls (remote-tool, llm-agent in direct mode, confirm-gate's flows) reach the sidebar
    emitCall({ agent: agentId, tool, code: toolErrorOf(result)?.code ?? 'OK', durationMs: Date.now() - started });
    return result;
  }

  /** Set while a catalog-change notification waits for the end of the current burst. */
  private changeScheduled?: NodeJS.Timeout;

  onCatalogChange(listener: () => void): () => void {
    this.catalogListeners.add(listener);
    return () => {
      this.catalogListeners.delete(listener);
    };
  }

  /** Every agent seen, with its last catalog's tools and the policy's verdict on each. */
  describeAgents(): AgentSummary[] {
    return this.listAgents().map((a) => this.summaryOf(a));
  }

  /**
   * One page of the agents that match `query` (what the admin endpoint and the editor's
   * type-ahead pick-lists read): `agent` picks one agent by id; `q` keeps the agents whose id,
   * name or kind contains it (case-insensitive), those that start with it first, then by id;
   * `offset` and `limit` cut the page; `tools: false` leaves the tool lists out (`tools: []`).
   * `total` counts every match. One step per agent seen, and tool summaries for the page only.
   */
  findAgents(query: AgentQuery = {}): { total: number; agents: AgentSummary[] } {
    const { q, agent, offset = 0, limit = DEFAULT_PAGE, tools = true } = query;
    let views = this.listAgents();
    if (agent !== undefined) views = views.filter((a) => a.id === agent);
    if (q) {
      const needle = q.toLowerCase();
      const scored: Array<{ a: AgentView; first: boolean }> = [];
      for (const a of views) {
        const id = a.id.toLowerCase();
        const name = (a.catalog?.agent.name ?? '').toLowerCase();
        const kind = (a.catalog?.agent.kind ?? a.status?.kind ?? '').toLowerCase();
        if (id.includes(needle) || name.includes(needle) || kind.includes(needle)) {
          scored.push({ a, first: id.startsWith(needle) || name.startsWith(needle) });
        }
      }
      views = scored.sort((x, y) => Number(y.first) - Number(x.first)).map((x) => x.a); // stable: by id within each group
    }
    const page = views.slice(offset, offset + limit).map((a) => this.summaryOf(a, tools));
    return { total: views.length, agents: page };
  }

  private summaryOf(a: AgentView, withTools = true): AgentSummary {
    return {
      id: a.id,
      name: a.catalog?.agent.name,
      kind: a.catalog?.agent.kind ?? a.status?.kind,
      host: a.catalog?.agent.host,
      version: a.catalog?.agent.version ?? a.status?.version,
      state: a.status?.state ?? 'unknown',
      online: a.online,
      ready: a.ready,
      tools: withTools ? (a.catalog?.tools ?? []).map((t) => ({
        name: t.name,
        description: t.description,
        inputSchema: t.inputSchema,
        annotations: t.annotations,
        timeoutMs: t.timeoutMs,
        offered: isOffered(this.opts.policy, a.id, t.name),
      })) : [],
    };
  }

  private setState(state: RegistryState, detail?: string): void {
    if (state === this.current && detail === this.detail) return;
    this.current = state;
    this.detail = detail;
    this.emit('state', state, detail);
    for (const user of this.users.values()) {
      try {
        user.onRegistryState(state, detail);
      } catch (e) {
        this.emit('warn', `node ${user.id} failed to take the registry state: ${(e as Error).message}`);
      }
    }
  }

  /**
   * Tells the catalog listeners, once per burst: a caller that starts against 1,000 agents gets
   * 2,000 status and catalog messages in a few hundred ms (bench/discovery.mjs), and a listener
   * may read the whole catalog (remote-tool's status does), so the changes of each
   * {@link CATALOG_NOTIFY_MS} share one notification, sent at its end.
   */
  private catalogChanged(): void {
    if (this.changeScheduled) return;
    this.changeScheduled = setTimeout(() => {
      this.changeScheduled = undefined;
      this.notifyCatalogListeners();
    }, CATALOG_NOTIFY_MS);
  }

  private notifyCatalogListeners(): void {
    for (const listener of this.catalogListeners) {
      try {
        listener();
      } catch (e) {
        this.emit('warn', `a catalog-change listener failed: ${(e as Error).message}`);
      }
    }
  }
}
