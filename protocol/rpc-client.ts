/**
 * The caller side of wire protocol v1 (docs/protocol.md): tracks every agent's status and
 * catalog, calls tools, and applies the caller rules:
 * - never publishes while disconnected; after a reconnect, and when an agent comes back online
 *   with the same instance, re-sends each pending request with the same id (the agent answers
 *   from its store or joins the run);
 * - settles an agent's pending calls with `AGENT_OFFLINE` (outcome unknown) only once the agent
 *   has stayed `lost` for `offlineGraceMs` while this caller stayed connected (a broker that shuts
 *   down publishes every client's will just before it drops this caller too); after this
 *   caller's own reconnect, an agent still known as lost gets `reconnectGraceMs` to return;
 *   `offline`, an empty status and a new instance settle them at once. A late result is still
 *   accepted until the timeout (event `late-result`); a `lost` from an older instance is ignored;
 * - offers tools only while `catalog.rev == status.catalogRev`;
 * - asks one agent to republish (`notifications/republish`, docs/protocol.md) when its state
 *   stayed incomplete for `republishAskAfterMs`: a live `online` status without a catalog, or
 *   with a catalog of another `rev`, or a catalog without a status (a broker restarted without
 *   persistence, a bridge that carried only part of the retained set); at most once per
 *   `republishAskIntervalMs` per agent and {@link MAX_REPUBLISH_ASKS_PER_SWEEP} per sweep;
 * - forgets an agent that has not been online for `forgetAfterMs` (offline, lost, or only ever
 *   seen through a catalog or a will) and has no call waiting for it, so months of agents coming
 *   and going keep no entry each; a malformed catalog of an agent it does not know leaves none;
 * - `timeoutMs` is an idle budget that each progress notification restarts;
 * - every message is parsed with depth and width limits (protocol/json-limits.ts), and a handler
 *   that throws becomes one `warn` event, never an uncaught exception;
 * - every catalog is validated before its agent counts as ready; a tools list already validated
 *   for another agent (the same text) is taken from a bounded cache and shared, frozen
 *   (protocol/catalog-reader.ts): 10,000 agents of a few kinds cost a few parses, not 10,000.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import type { z } from 'zod';
import { connectMqtt, endMqtt, publishWithin, type ConnectOptions } from './mqtt';
import { topics, assertValidId, isValidId, type Topics } from './topics';
import { printable } from './redact';
import {
  DEFAULT_MAX_PAYLOAD_BYTES, ON_BEHALF_OF_PATTERN, CallToolResultSchema, CatalogSchema, ErrorResponseSchema, ProgressParamsSchema, ResultResponseSchema, StatusSchema,
  type AgentStatus, type CallToolResult, type Catalog, type ProgressParams, type Tool,
} from './schemas';
import { rpcErrorToToolResult, toolErrorResult } from './errors';
import { checkJsonLimits, parseJsonWithin, type JsonLimits } from './json-limits';
import { CatalogReader } from './catalog-reader';

/** Default budget of a call when neither the options nor the catalog give one, ms. */
export const DEFAULT_CALL_TIMEOUT_MS = 30_000;
/** How long an agent must stay lost, while the caller is connected, before its calls settle `AGENT_OFFLINE`, ms. */
export const DEFAULT_OFFLINE_GRACE_MS = 1000;
/**
 * After the caller's own reconnect, how long an agent still known as lost has to come back, ms:
 * agents reconnect within about 5 s of their broker's return (backoff cap), 10 s with margin.
 */
export const DEFAULT_RECONNECT_GRACE_MS = 10_000;
/**
 * How long an agent that is not online stays in {@link RpcCaller.listAgents} (and calls to it
 * fail at once with `AGENT_OFFLINE`, remote-tool shows "waiting for X (lost)") before the caller
 * forgets it, ms: 10 min.
 */
export const DEFAULT_FORGET_AFTER_MS = 600_000;
/**
 * How long an agent's state must stay incomplete before the caller asks it to republish, ms: the
 * retained set of a big mesh arrives status by status and catalog by catalog (10,000 agents in
 * about 2 s), so an agent seen without its catalog is usually only waiting for it.
 */
export const DEFAULT_REPUBLISH_ASK_AFTER_MS = 2000;
/** Least time between two republish asks to one agent, ms (the agent's own limit is 5 s, whoever asks). */
export const DEFAULT_REPUBLISH_ASK_INTERVAL_MS = 30_000;
/** Asks sent at most per sweep (one sweep per half `republishAskAfterMs`), whatever the number of incomplete agents. */
export const MAX_REPUBLISH_ASKS_PER_SWEEP = 100;

/** What the caller knows of one agent. */
export interface AgentView {
  id: string;
  status?: AgentStatus;
  catalog?: Catalog;
  /** status.state is `online`. */
  online: boolean;
  /** online and `catalog.rev == status.catalogRev`: its tools may be offered. */
  ready: boolean;
}

/** Options of one call. */
export interface CallOptions {
  /** Idle budget, ms; restarted by each progress notification (default: the tool's `timeoutMs`, else 30 000). */
  timeoutMs?: number;
  /** Aborting it cancels the call (`notifications/cancelled`) and settles it with `CANCELLED`. */
  signal?: AbortSignal;
  onProgress?: (p: ProgressParams) => void;
  dryRun?: boolean;
  /** Approval token for high-risk calls. */
  approval?: string;
  /**
   * The client this call is made for (`_meta.onBehalfOf`, {@link ON_BEHALF_OF_PATTERN}): the MCP
   * bridge sends its session's label. Agents record it and trust it as far as they trust this
   * caller's id, no further. A value that does not match is not sent: the call resolves with
   * `INVALID_ARGUMENTS`.
   */
  onBehalfOf?: string;
}

/** Options of {@link RpcCaller}. */
export interface RpcCallerOptions {
  connection: ConnectOptions;
  /** Stable across restarts (docs/protocol.md). */
  callerId: string;
  root?: string;
  /** Requests larger than this are refused locally with PAYLOAD_TOO_LARGE, bytes (default 4 MiB, the agents' cap). */
  maxPayloadBytes?: number;
  /** An agent that turned `lost` while this caller is connected keeps its pending calls this long, ms (default 1 000). */
  offlineGraceMs?: number;
  /** After this caller reconnects, an agent still known as lost keeps its pending calls this long, ms (default 10 000). */
  reconnectGraceMs?: number;
  /** Depth and width limits of incoming JSON (defaults: 64 levels, 10 000 entries). */
  jsonLimits?: JsonLimits;
  /**
   * An agent not online this long (offline, lost, or never seen online), with no call of this
   * caller waiting for it, is forgotten: it leaves `listAgents()` until it shows up again, ms
   * (default {@link DEFAULT_FORGET_AFTER_MS}, 10 min).
   */
  forgetAfterMs?: number;
  /**
   * An agent whose state stays incomplete this long is asked to republish, ms (default
   * {@link DEFAULT_REPUBLISH_ASK_AFTER_MS}, 2 000); 0 turns the asks off.
   */
  republishAskAfterMs?: number;
  /** Least time between two republish asks to one agent, ms (default {@link DEFAULT_REPUBLISH_ASK_INTERVAL_MS}, 30 000). */
  republishAskIntervalMs?: number;
}

/** What the caller keeps of one agent. */
interface AgentEntry {
  status?: AgentStatus;
  catalog?: Catalog;
  /** Instance last seen online; kept while the agent is lost, so its return can be told from a restart. */
  onlineInstance?: string;
  /** Confirmation window of a `lost` status; runs only while this caller is connected. */
  lostTimer?: NodeJS.Timeout;
  /**
   * Set when this caller's connection dropped: what it knows of the agent is from before, so the
   * next `online` of the same instance re-sends the pending requests even if it never saw the
   * agent go (aedes publishes no wills when it closes; the agent may reconnect after the caller).
   */
  unconfirmed?: boolean;
  /** Runs while the agent is not online; when it fires the agent is forgotten (see {@link RpcCallerOptions.forgetAfterMs}). */
  forgetTimer?: NodeJS.Timeout;
  /** Since when (performance.now(), ms) its state is incomplete ({@link isIncomplete}); unset while it is not. */
  incompleteSince?: number;
  /** When this caller last asked it to republish (performance.now(), ms). */
  askedAt?: number;
  /** {@link RpcCaller.toolsByAgent}'s array for this agent, with the catalog it was made from (undefined: not ready). */
  offered?: { catalog?: Catalog; tools: ReadonlyArray<{ agentId: string; tool: Tool }> };
}

/** Online with the catalog its status announces: its tools may be called and offered. */
function isReady(a: AgentEntry): boolean {
  return a.status?.state === 'online' && a.catalog !== undefined && a.catalog.rev === a.status.catalogRev;
}

/**
 * Live with a missing or mismatched catalog, or a catalog without any status: the broker lacks
 * part of the agent's retained state, and only the agent can put it back.
 */
function isIncomplete(a: AgentEntry): boolean {
  if (a.status?.state === 'online') return a.catalog === undefined || a.catalog.rev !== a.status.catalogRev;
  return a.status === undefined && a.catalog !== undefined;
}

interface Pending {
  id: string;
  agentId: string;
  tool: string;
  payload: string;
  idleMs: number;
  timer?: NodeJS.Timeout;
  /** Agent instance online when the call was made. */
  instance?: string;
  /** Settled already (AGENT_OFFLINE) but still waiting for a late result. */
  settled: boolean;
  onProgress?: (p: ProgressParams) => void;
  /** Drops the listener on the caller's AbortSignal. */
  release?: () => void;
  resolve(result: CallToolResult): void;
  /** Raw requests (ping, tools/list) resolve with the JSON-RPC result instead. */
  raw?: { resolve(v: unknown): void; reject(e: Error): void };
}

/**
 * Caller-side protocol endpoint. Events: `connect`, `close`, `connection-error` (Error from
 * MQTT.js, e.g. "Connection refused: Not authorized"), `agents` (status or catalog of some agent
 * changed; arg: agentId), `late-result` ({ agentId, tool, id, result }), `warn` (string).
 */
export class RpcCaller extends EventEmitter {
  readonly topics: Topics;
  /** Boot nonce of this caller; request ids start with it so ids never repeat across restarts. */
  readonly instance = randomBytes(4).toString('hex');
  private client?: MqttClient;
  private readonly agents = new Map<string, AgentEntry>();
  /** The ids of {@link agents}, sorted; made again only after an agent was added or removed. */
  private sortedIds?: readonly string[];
  private readonly pending = new Map<string, Pending>();
  private seq = 0;
  private stopped = false;
  /** Agents whose state is incomplete now (see {@link isIncomplete}), and the sweep that asks them to republish. */
  private readonly incomplete = new Set<string>();
  private askTimer?: NodeJS.Timeout;
  /** Parses catalogs, sharing the validated tool list of agents that announce the same tools (protocol/catalog-reader.ts). */
  private readonly catalogReader: CatalogReader;

  private readonly maxPayloadBytes: number;

  constructor(private readonly opts: RpcCallerOptions) {
    super();
    this.maxPayloadBytes = opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    this.catalogReader = new CatalogReader(opts.jsonLimits);
    assertValidId(opts.callerId, 'callerId');
    this.topics = topics(opts.root);
  }

  get callerId(): string {
    return this.opts.callerId;
  }

  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Connects; resolves on the first connect (the client keeps reconnecting with backoff). */
  start(): Promise<void> {
    const t = this.topics;
    const id = this.opts.callerId;
    const client = connectMqtt({
      ...this.opts.connection,
      clientId: this.opts.connection.clientId ?? `toolmesh-caller-${id}-${this.instance}`,
      will: { topic: t.callerStatus(id), payload: JSON.stringify({ state: 'lost', caller: id, instance: this.instance }), qos: 1, retain: true },
    });
    this.client = client;
    client.on('message', (topic, payload, packet) => {
      try {
        this.onMessage(topic, payload, packet.retain);
      } catch (e) {
        this.emit('warn', `message on ${printable(topic)} failed: ${(e as Error)?.message ?? String(e)}`);
      }
    });
    client.on('close', () => {
      // the confirmation windows count only while we are connected (docs/protocol.md)
      for (const a of this.agents.values()) {
        clearTimeout(a.lostTimer);
        a.lostTimer = undefined;
        a.unconfirmed = true;
      }
      this.emit('close');
    });
    client.on('error', (err) => this.emit('connection-error', err));
    return new Promise((resolve) => {
      client.on('connect', () => {
        client.subscribe([t.anyAgentStatus, t.anyAgentCatalog, t.responsesTo(id)], { qos: 1 }, (err) => {
          if (err) return this.emit('warn', `subscribe failed: ${err.message}`);
          client.publish(t.callerStatus(id), JSON.stringify({ state: 'online', caller: id, instance: this.instance, ts: Date.now() }), { qos: 1, retain: true });
          const reconnectGrace = this.opts.reconnectGraceMs ?? DEFAULT_RECONNECT_GRACE_MS;
          for (const [agentId, a] of this.agents) if (a.status?.state === 'lost') this.armLost(agentId, a, reconnectGrace);
          for (const p of this.pending.values()) client.publish(t.req(p.agentId, id), p.payload, { qos: 1 });
          this.emit('connect');
          resolve();
        });
      });
    });
  }

  /** Publishes `offline` (waiting at most 2 s for the ack), fails pending calls with CANCELLED and disconnects. Safe to call twice. */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.askTimer);
    for (const a of this.agents.values()) {
      clearTimeout(a.lostTimer);
      clearTimeout(a.forgetTimer);
    }
    for (const p of [...this.pending.values()]) this.settle(p, toolErrorResult('CANCELLED', 'the caller is stopping'), true);
    const client = this.client;
    if (!client) return;
    if (client.connected) {
      const status = { state: 'offline', caller: this.opts.callerId, instance: this.instance, ts: Date.now() };
      await publishWithin(client, this.topics.callerStatus(this.opts.callerId), JSON.stringify(status), 2000);
    }
    await endMqtt(client);
  }

  /** Every agent seen, sorted by id. */
  listAgents(): AgentView[] {
    return this.ids().map((id) => this.agent(id)!);
  }

  /** One agent, or `undefined` when never seen. */
  agent(id: string): AgentView | undefined {
    const a = this.agents.get(id);
    if (!a) return undefined;
    return { id, status: a.status, catalog: a.catalog, online: a.status?.state === 'online', ready: isReady(a) };
  }

  /**
   * The tools of {@link listTools}, grouped by agent: ready agents only, in id order, each
   * agent's tools in catalog order. An agent's array is the same object for as long as the agent
   * stays ready with the same catalog message, so a reader that keeps something per agent (the
   * llm-agent's tool index) can skip the unchanged ones by identity instead of walking every
   * tool. Cost: one step per known agent (and the sort of their ids). The arrays must not be changed.
   */
  toolsByAgent(): Map<string, ReadonlyArray<{ agentId: string; tool: Tool }>> {
    const out = new Map<string, ReadonlyArray<{ agentId: string; tool: Tool }>>();
    for (const id of this.ids()) {
      const a = this.agents.get(id)!;
      if (!isReady(a)) {
        a.offered = undefined;
        continue;
      }
      let offered = a.offered;
      if (!offered || offered.catalog !== a.catalog) a.offered = offered = { catalog: a.catalog, tools: a.catalog!.tools.map((tool) => ({ agentId: id, tool })) };
      out.set(id, offered.tools);
    }
    return out;
  }

  /** Tools that may be offered now: those of ready agents, by agent id. */
  listTools(): { agentId: string; tool: Tool }[] {
    return [...this.toolsByAgent().values()].flat();
  }

  /**
   * Calls a tool. Always resolves: failures (JSON-RPC errors, timeouts, cancels, an agent that
   * went away) come back as `isError: true` results with a code (see `toolErrorOf`).
   */
  call(agentId: string, tool: string, args: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<CallToolResult> {
    if (!isValidId(agentId)) {
      return Promise.resolve(toolErrorResult('INVALID_ARGUMENTS', `agent must match ^[A-Za-z0-9_-]{1,64}$, got ${JSON.stringify(agentId)}`));
    }
    const known = this.agent(agentId);
    if (known && !known.online) {
      return Promise.resolve(toolErrorResult('AGENT_OFFLINE', `agent ${agentId} is ${known.status?.state ?? 'gone'}; the call was not sent`, { agent: agentId, outcome: 'not_sent' }));
    }
    if (opts.signal?.aborted) return Promise.resolve(toolErrorResult('CANCELLED', 'cancelled before it was sent'));
    if (opts.onBehalfOf !== undefined && !ON_BEHALF_OF_PATTERN.test(opts.onBehalfOf)) {
      return Promise.resolve(toolErrorResult('INVALID_ARGUMENTS', `onBehalfOf must match ^[A-Za-z0-9_.-]{1,64}$ (a client label), got ${JSON.stringify(opts.onBehalfOf.slice(0, 80))}; the call was not sent`));
    }
    // arguments often come from a model: the same shape limits as the agent's, before any recursive walk
    const shape = checkJsonLimits(args, this.opts.jsonLimits);
    if (shape) return Promise.resolve(toolErrorResult('INVALID_ARGUMENTS', `arguments for ${agentId}/${tool} refused: ${shape.message}; the call was not sent`, { limit: shape.limit, bound: shape.bound }));
    const idleMs = opts.timeoutMs ?? known?.catalog?.tools.find((t) => t.name === tool)?.timeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const id = this.nextId();
    const meta: Record<string, unknown> = { progressToken: id, timeoutMs: idleMs, deadline: Date.now() + idleMs };
    if (opts.dryRun) meta.dryRun = true;
    if (opts.approval) meta.approval = opts.approval;
    if (opts.onBehalfOf !== undefined) meta.onBehalfOf = opts.onBehalfOf;
    const payload = JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: args, _meta: meta } });
    const size = Buffer.byteLength(payload);
    if (size > this.maxPayloadBytes) {
      return Promise.resolve(toolErrorResult('PAYLOAD_TOO_LARGE', `the request to ${agentId}/${tool} is ${size} bytes, over the ${this.maxPayloadBytes}-byte limit; it was not sent`, { bytes: size, limit: this.maxPayloadBytes }));
    }
    return new Promise((resolve) => {
      const p: Pending = { id, agentId, tool, payload, idleMs, settled: false, onProgress: opts.onProgress, resolve, instance: known?.status?.instance };
      this.pending.set(id, p);
      this.arm(p);
      const onAbort = () => {
        if (p.settled || !this.pending.has(id)) return;
        this.publish(agentId, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: id, reason: String(opts.signal?.reason ?? 'cancelled') } }));
        this.settle(p, toolErrorResult('CANCELLED', 'cancelled by the caller'), true);
      };
      // removed when the call settles: one run's signal may serve many calls
      p.release = () => opts.signal?.removeEventListener('abort', onAbort);
      opts.signal?.addEventListener('abort', onAbort, { once: true });
      this.publish(agentId, payload);
    });
  }

  /**
   * Sends any other request (`ping`, `tools/list`) and resolves with its JSON-RPC `result`.
   * @throws Error with the JSON-RPC error message, or on timeout (`timeoutMs`, default 5 000).
   */
  request(agentId: string, method: string, params?: Record<string, unknown>, timeoutMs = 5000): Promise<unknown> {
    const id = this.nextId();
    const payload = JSON.stringify({ jsonrpc: '2.0', id, method, ...(params ? { params } : {}) });
    return new Promise((resolve, reject) => {
      const p: Pending = { id, agentId, tool: method, payload, idleMs: timeoutMs, settled: false, resolve: () => {}, raw: { resolve, reject } };
      this.pending.set(id, p);
      this.arm(p);
      this.publish(agentId, payload);
    });
  }

  private nextId(): string {
    return `${this.instance}-${++this.seq}`;
  }

  private publish(agentId: string, payload: string): void {
    // never publish while disconnected: pending requests are re-sent on reconnect
    if (this.client?.connected) this.client.publish(this.topics.req(agentId, this.opts.callerId), payload, { qos: 1 });
  }

  private arm(p: Pending): void {
    clearTimeout(p.timer);
    p.timer = setTimeout(() => {
      if (p.settled) {
        this.pending.delete(p.id);
        return;
      }
      if (p.raw) {
        this.pending.delete(p.id);
        return p.raw.reject(new Error(`${p.tool} to ${p.agentId} timed out after ${p.idleMs} ms`));
      }
      this.publish(p.agentId, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: p.id, reason: 'timeout' } }));
      this.settle(p, toolErrorResult('TIMEOUT', `no result from ${p.agentId}/${p.tool} within ${p.idleMs} ms`, { agent: p.agentId, timeoutMs: p.idleMs }), true);
    }, p.idleMs);
  }

  /** Resolves a pending call; `drop` removes it, otherwise it stays for a late result. */
  private settle(p: Pending, result: CallToolResult, drop: boolean): void {
    if (drop) {
      clearTimeout(p.timer);
      this.pending.delete(p.id);
    }
    if (p.settled) return;
    p.settled = true;
    p.release?.();
    if (p.raw) p.raw.reject(new Error(result.content[0]?.type === 'text' ? result.content[0].text : 'failed'));
    else p.resolve(result);
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    const parsed = this.topics.parse(topic);
    if (!parsed) return;
    if (parsed.kind === 'agentStatus') return this.onStatus(parsed.agentId, payload, retained);
    if (parsed.kind === 'agentCatalog') return this.onCatalog(parsed.agentId, payload);
    if (parsed.kind === 'res' && parsed.callerId === this.opts.callerId) this.onResponse(parsed.agentId, payload);
  }

  /** Agent ids in order, sorted once per change of the set of agents, not per reader. */
  private ids(): readonly string[] {
    return (this.sortedIds ??= [...this.agents.keys()].sort());
  }

  /** Puts `a` in {@link agents} under `id` unless it is there already. */
  private keep(id: string, a: AgentEntry): void {
    if (this.agents.get(id) === a) return;
    this.agents.set(id, a);
    this.sortedIds = undefined;
  }

  private forget(id: string): void {
    const a = this.agents.get(id);
    if (!a) return;
    clearTimeout(a.lostTimer);
    clearTimeout(a.forgetTimer);
    this.agents.delete(id);
    this.incomplete.delete(id);
    this.sortedIds = undefined;
  }

  /** Notes whether the agent's state is incomplete now, and starts the sweep that asks when it is. */
  private track(agentId: string, a: AgentEntry): void {
    if (this.agents.get(agentId) !== a || !isIncomplete(a)) {
      a.incompleteSince = undefined;
      this.incomplete.delete(agentId);
      return;
    }
    a.incompleteSince ??= performance.now();
    this.incomplete.add(agentId);
    this.armAsk();
  }

  /** Starts the sweep (one timer per caller, not per agent) unless it runs, asks are off or nothing is incomplete. */
  private armAsk(): void {
    const after = this.opts.republishAskAfterMs ?? DEFAULT_REPUBLISH_ASK_AFTER_MS;
    if (this.askTimer || this.stopped || after <= 0 || this.incomplete.size === 0) return;
    this.askTimer = setTimeout(() => {
      this.askTimer = undefined;
      this.askRepublish(after);
      this.armAsk();
    }, after / 2);
    this.askTimer.unref();
  }

  /**
   * Asks each agent incomplete for at least `after` ms (and not asked within the interval) to
   * republish: `notifications/republish` on its request topic, which agents older than it ignore.
   */
  private askRepublish(after: number): void {
    if (!this.connected) return; // the agents announce on their own reconnect; asks wait for ours
    const now = performance.now();
    const interval = this.opts.republishAskIntervalMs ?? DEFAULT_REPUBLISH_ASK_INTERVAL_MS;
    let sent = 0;
    for (const id of this.incomplete) {
      const a = this.agents.get(id);
      if (!a || !isIncomplete(a)) {
        this.incomplete.delete(id);
        continue;
      }
      if (now - (a.incompleteSince ?? now) < after || (a.askedAt !== undefined && now - a.askedAt < interval)) continue;
      if (sent++ >= MAX_REPUBLISH_ASKS_PER_SWEEP) break;
      a.askedAt = now;
      const missing = !a.status ? 'status' : !a.catalog ? 'catalog' : 'rev';
      this.publish(id, JSON.stringify({ jsonrpc: '2.0', method: 'notifications/republish', params: { missing } }));
    }
  }

  /**
   * Starts the forget timer of an agent that is not online (kept when one runs already), stops it
   * for one that is. When it fires the agent is forgotten, unless it is online again or a call of
   * this caller still waits for it (then the timer starts again).
   */
  private scheduleForget(agentId: string, a: AgentEntry): void {
    if (a.status?.state === 'online') {
      clearTimeout(a.forgetTimer);
      a.forgetTimer = undefined;
      return;
    }
    if (a.forgetTimer || this.stopped) return;
    a.forgetTimer = setTimeout(() => {
      a.forgetTimer = undefined;
      if (this.agents.get(agentId) !== a || a.status?.state === 'online') return;
      for (const p of this.pending.values()) {
        if (p.agentId === agentId && !p.settled) return this.scheduleForget(agentId, a);
      }
      this.forget(agentId);
      this.emit('agents', agentId);
    }, this.opts.forgetAfterMs ?? DEFAULT_FORGET_AFTER_MS);
    a.forgetTimer.unref();
  }

  /** Parses JSON from an agent within the depth and width limits; `undefined` (and a `warn`) when it is not. */
  private parseJson(payload: Buffer | string, what: string): unknown {
    const r = parseJsonWithin(typeof payload === 'string' ? payload : payload.toString('utf8'), this.opts.jsonLimits);
    if ('error' in r) {
      this.emit('warn', `ignored ${r.kind === 'parse' ? 'malformed JSON' : `JSON over the limits (${r.error})`} on ${what}`);
      return undefined;
    }
    return r.value;
  }

  private onStatus(agentId: string, payload: Buffer, retained: boolean): void {
    const a: AgentEntry = this.agents.get(agentId) ?? {};
    let status: AgentStatus | undefined;
    if (payload.length > 0) {
      const v = this.parseJson(payload, `status of ${agentId}`);
      if (v === undefined) return; // warned already
      const s = StatusSchema.safeParse(v);
      if (!s.success) return void this.emit('warn', `ignored a malformed status of agent ${agentId}`);
      status = s.data;
      if (status.state !== 'online' && a.onlineInstance && status.instance !== a.onlineInstance) return; // an older instance's will
    }
    this.keep(agentId, a);
    const wasOnline = a.status?.state === 'online';
    a.status = status;
    if (!status) a.catalog = undefined; // empty retained status: decommissioned
    if (status?.state === 'online') {
      clearTimeout(a.lostTimer);
      a.lostTimer = undefined;
      const previous = a.onlineInstance;
      a.onlineInstance = status.instance;
      const unconfirmed = a.unconfirmed === true;
      // a retained `online` may be older than the agent's connection: only a live one confirms it
      if (!retained) a.unconfirmed = false;
      if (previous && previous !== status.instance) this.failPending(agentId, 'restarted', previous);
      // back with the same instance: it answers from its store or joins the run
      else if (!wasOnline || unconfirmed) this.resend(agentId);
    } else if (status?.state === 'lost') {
      // a retained `lost` is what the broker remembers from before we (re)connected: allow a reconnect
      this.armLost(agentId, a, retained ? this.opts.reconnectGraceMs ?? DEFAULT_RECONNECT_GRACE_MS : this.opts.offlineGraceMs ?? DEFAULT_OFFLINE_GRACE_MS);
    } else {
      clearTimeout(a.lostTimer);
      a.lostTimer = undefined;
      this.failPending(agentId, status?.state ?? 'decommissioned');
      // decommissioned (empty retained status): the agent is gone, not an agent of unknown state
      if (!status) this.forget(agentId);
    }
    if (this.agents.get(agentId) === a) this.scheduleForget(agentId, a);
    this.track(agentId, a);
    this.emit('agents', agentId);
  }

  /** Starts the confirmation window of a lost agent (kept when one runs already); only while connected. */
  private armLost(agentId: string, a: AgentEntry, ms: number): void {
    if (a.lostTimer || !this.connected) return;
    a.lostTimer = setTimeout(() => {
      a.lostTimer = undefined;
      if (a.status?.state === 'lost' && this.connected) this.failPending(agentId, `lost for ${ms} ms`);
    }, ms);
  }

  /** Re-sends the agent's pending requests, those kept for a late result too. */
  private resend(agentId: string): void {
    for (const p of this.pending.values()) if (p.agentId === agentId) this.publish(agentId, p.payload);
  }

  /**
   * Settles the agent's pending calls with AGENT_OFFLINE (outcome unknown), keeping them for a
   * late result. With `instance`, only calls made to that instance (or before any was known).
   */
  private failPending(agentId: string, state: string, instance?: string): void {
    for (const p of this.pending.values()) {
      if (p.agentId !== agentId || p.settled) continue;
      if (instance !== undefined && p.instance !== undefined && p.instance !== instance) continue;
      this.settle(p, toolErrorResult('AGENT_OFFLINE', `agent ${agentId} went ${state} while the call was pending; it may or may not have run`, { agent: agentId, outcome: 'unknown' }), false);
    }
  }

  private onCatalog(agentId: string, payload: Buffer): void {
    if (payload.length === 0) {
      // decommissioned: forget the catalog, and the agent when no status says it is there
      const known = this.agents.get(agentId);
      if (!known) return;
      known.catalog = undefined;
      if (!known.status) this.forget(agentId);
      this.track(agentId, known);
      return void this.emit('agents', agentId);
    }
    // a catalog that is not one leaves no entry behind (only a warning)
    const text = payload.toString('utf8');
    // the fast path validates as much as the full one; it declines anything it cannot cut safely
    let catalog = this.catalogReader.read(text);
    if (!catalog) {
      const v = this.parseJson(text, `catalog of ${agentId}`);
      if (v === undefined) return; // warned already
      const c = CatalogSchema.safeParse(v);
      if (!c.success) return void this.emit('warn', `ignored a malformed catalog of agent ${agentId}`);
      catalog = c.data;
    }
    if (catalog.agent.id !== agentId) return void this.emit('warn', `ignored a malformed catalog of agent ${agentId}`);
    const a = this.agents.get(agentId) ?? {};
    this.keep(agentId, a);
    a.catalog = catalog;
    this.scheduleForget(agentId, a);
    this.track(agentId, a);
    this.emit('agents', agentId);
  }

  private onResponse(agentId: string, payload: Buffer): void {
    const msg = this.parseJson(payload, `responses from ${agentId}`) as { method?: string; params?: unknown } | undefined;
    if (!msg || typeof msg !== 'object') return;
    if (msg.method === 'notifications/progress') {
      const pp = ProgressParamsSchema.safeParse(msg.params);
      const p = pp.success ? this.pending.get(String(pp.data.progressToken)) : undefined;
      if (p && !p.settled && p.agentId === agentId) {
        this.arm(p);
        p.onProgress?.(pp.data as ProgressParams);
      }
      return;
    }
    const isError = 'error' in msg;
    const r = isError ? ErrorResponseSchema.safeParse(msg) : ResultResponseSchema.safeParse(msg);
    if (!r.success) return void this.emit('warn', `ignored a malformed response from ${agentId}`);
    const error = isError ? (r.data as z.infer<typeof ErrorResponseSchema>).error : undefined;
    const p = r.data.id === null ? undefined : this.pending.get(String(r.data.id));
    if (!p || p.agentId !== agentId) {
      if (error) this.emit('warn', `error from ${agentId}: ${printable(error.message)}`);
      return;
    }
    if (p.raw) {
      this.pending.delete(p.id);
      clearTimeout(p.timer);
      if (error) p.raw.reject(new Error(error.message));
      else p.raw.resolve((r.data as { result: unknown }).result);
      return;
    }
    let result: CallToolResult;
    if (error) result = rpcErrorToToolResult(error);
    else {
      const c = CallToolResultSchema.safeParse((r.data as { result: unknown }).result);
      result = c.success ? (c.data as CallToolResult) : toolErrorResult('EXECUTION_FAILED', `malformed result from ${agentId}/${p.tool}`);
    }
    if (p.settled) {
      clearTimeout(p.timer);
      this.pending.delete(p.id);
      this.emit('late-result', { agentId, tool: p.tool, id: p.id, result });
      return;
    }
    this.settle(p, result, true);
  }
}
