/**
 * The agent side of wire protocol v1 (docs/protocol.md): announces status (with a last will)
 * and catalog, retained; answers `tools/call`, `tools/list` and `ping`; honours cancels and
 * progress tokens; suppresses duplicates by (callerId, id); tells packs at once when a caller is
 * lost, but cancels that caller's running calls only when it has not come back (same instance)
 * within a grace period; and republishes its state on every (re)connect of its own and when a
 * caller that finds it incomplete asks (`notifications/republish`, at most once per
 * `republishMinIntervalMs` whoever asks), never merely because a caller came online.
 *
 * Every message is checked for size, then parsed, then checked for depth and width
 * (protocol/json-limits.ts) before any hashing or schema work; a handler that throws anyway
 * becomes one `warn` event (and a -32603 answer when the request had an id), never an uncaught
 * exception.
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import type { MqttClient } from 'mqtt';
import { connectMqtt, endMqtt, publishWithin, type ConnectOptions } from './mqtt';
import { topics, assertValidId, type Topics } from './topics';
import { printable } from './redact';
import {
  DEFAULT_MAX_PAYLOAD_BYTES, CallParamsSchema, CallerStatusSchema, CancelledParamsSchema, NotificationSchema, RequestSchema,
  type CallToolResult, type Catalog, type RequestId, type Risk, type RpcRequest, type Tool,
} from './schemas';
import { JSONRPC, ToolError, rpcError, toolErrorResult } from './errors';
import type { ApprovalClaims, AuthorizeRefusal } from './authorize';
import { createAuthorizer, type Authorizer, type ServerAuthorization } from './policy';
import { DEFAULT_TOOL_TIMEOUT_MS, toCallToolResult, toCatalogTool, type ToolDefinition } from './tool';
import { CallStore, callKey, canonicalHash, type StoredCall } from './call-store';
import { checkJsonLimits, type JsonLimits } from './json-limits';
import { CallerPresence } from './caller-presence';
import { CallLimits, type LimitRefusal } from './call-limits';

/** Tolerated clock skew for `_meta.deadline`, ms. */
export const DEFAULT_SKEW_TOLERANCE_MS = 30_000;
/** How long a lost caller has to come back (same instance) before its running calls are cancelled, ms. */
export const DEFAULT_CALLER_GRACE_MS = 5000;
/** Calls of one caller that may run at once (the excess gets BUSY). */
export const DEFAULT_MAX_RUNNING_PER_CALLER = 8;
/** Calls that may run at once in all, whoever calls (caller ids are free to rotate). */
export const DEFAULT_MAX_RUNNING = 32;
/** Least time between two answers from the store to copies of one finished request, ms. */
export const DEFAULT_RESEND_INTERVAL_MS = 1000;
/** Least time between two announcements of status and catalog made for `notifications/republish`, ms. */
export const DEFAULT_REPUBLISH_MIN_INTERVAL_MS = 5000;
/** The optional notification a caller sends an agent whose retained status or catalog it misses (docs/protocol.md). */
export const REPUBLISH_METHOD = 'notifications/republish';

/** Options of {@link RpcServer}. */
export interface RpcServerOptions {
  connection: ConnectOptions;
  agentId: string;
  /** Topic root (default `toolmesh/v1`). */
  root?: string;
  /** Shown in the catalog: display name, kind (`pi`, `robot` ...), host, version. */
  info?: { name?: string; kind?: string; host?: string; version?: string };
  tools: ToolDefinition[];
  maxPayloadBytes?: number;
  skewToleranceMs?: number;
  /** Cap of the duplicate-suppression store, bytes (default 8 MiB). */
  storeMaxBytes?: number;
  /**
   * Least time between two announcements (catalog then status, retained) made because a caller
   * asked with `notifications/republish`, ms (default {@link DEFAULT_REPUBLISH_MIN_INTERVAL_MS},
   * 5 000), however many callers ask: an ask inside the interval is served once at its end. The
   * announcement of a (re)connect counts as the last one. Agents no longer republish because a
   * caller came online (that cost agents × 12 KB to every subscriber per caller start).
   */
  republishMinIntervalMs?: number;
  /**
   * A caller whose status turns `lost` keeps its running calls this long, ms (default 5 000):
   * a broker that shuts down publishes every client's will, and the caller re-sends its pending
   * requests once it is back. The time counts only while this agent is connected itself. A
   * caller that comes back as a new instance, or says `offline`, has its calls cancelled at
   * once. Packs get `caller-lost` at once either way.
   */
  callerGraceMs?: number;
  /** Depth and width limits of request JSON (defaults: 64 levels, 10 000 entries). */
  jsonLimits?: JsonLimits;
  /**
   * Who may run what (required: no server runs a tool without it): the caller rules, the risk
   * level from which a call needs a person's approval (default `high`), the keys an approval
   * token must be signed with, the used-token store and the durable start record
   * (protocol/policy.ts `createAuthorizer`, docs/protocol.md "Approval tokens"). `{ keys: new Map() }`
   * is the least: any caller, low and medium tools run, high and critical ones are refused with
   * APPROVAL_REQUIRED. Asked once per call (a re-sent request joins the first run or gets its
   * stored result and is not authorized again), after the arguments passed validation and before
   * the tool runs; `tools/list` offers a caller only the tools its rules allow. The retained
   * catalog always lists every tool.
   */
  authorization: ServerAuthorization;
  /** Calls of one caller that may run at once (default {@link DEFAULT_MAX_RUNNING_PER_CALLER}); the excess gets `BUSY` (retryable, not stored). */
  maxRunningPerCaller?: number;
  /** Calls that may run at once in all (default {@link DEFAULT_MAX_RUNNING}); the excess gets `BUSY`. */
  maxRunning?: number;
  /**
   * A copy of a finished request gets the stored answer at most once per this many ms per
   * (caller, id) (default {@link DEFAULT_RESEND_INTERVAL_MS}); the first copy always does. Copies
   * that arrive while the call runs get no answer of their own: the one answer at completion.
   */
  resendIntervalMs?: number;
}

/**
 * Emitted as `call` after each `tools/call` finished or was refused, also for an unknown (or
 * disabled) tool (`code: "TOOL_NOT_FOUND"`, no risk or args); unreadable params and re-sent
 * duplicates emit none. `code` is set on failure. The optional fields carry references to
 * objects the call already holds, so the event costs no copies.
 */
export interface CallEvent {
  callerId: string;
  id: RequestId;
  tool: string;
  durationMs: number;
  code?: string;
  /** The tool's risk level as announced in the catalog. */
  risk?: Risk;
  /** The arguments as the schema parsed them (defaults filled in); unset when they were invalid. Not redacted. */
  args?: unknown;
  /** True when the call was a dry run (`_meta.dryRun`). */
  dryRun?: boolean;
  /**
   * The client the caller called for (`_meta.onBehalfOf`, a label such as "home-assistant"): the
   * caller's word, as trustworthy as the caller id and no more.
   */
  onBehalfOf?: string;
  /**
   * The approval token's claims when its signature verified: with no `refusal` the call ran on
   * that approval; with a `refusal` the token was genuine but did not fit (expired, replayed ...).
   */
  approval?: ApprovalClaims;
  /** Set when the authorization refused the call: its `details.refusal`, else its code. */
  refusal?: string;
}

/**
 * Agent-side protocol endpoint. Events: `online` (status published), `offline` (broker
 * connection lost: stop what must not run unattended), `caller-lost` (callerId, state: a caller
 * that was online went lost/offline/gone; emitted at once, before its calls are cancelled),
 * `connection-error` (Error from MQTT.js), `call` ({@link CallEvent}), `busy` (callerId, limit:
 * a call refused with BUSY before it started, no `call` event), `warn` (string: a malformed
 * message or a failed publish), `republish-asked` (callerId: a caller sent
 * `notifications/republish`; emitted for every ask, rate-limited or not).
 */
export class RpcServer extends EventEmitter {
  /** Boot nonce: a fresh value per start, carried by status and will. */
  readonly instance = randomBytes(8).toString('hex');
  readonly topics: Topics;
  private client?: MqttClient;
  private tools = new Map<string, ToolDefinition>();
  private catalogTools: Tool[] = [];
  private rev = 0;
  private readonly store: CallStore;
  private readonly callers: CallerPresence;
  /** A republish asked for inside the rate limit's interval, due at its end. */
  private republishTimer?: NodeJS.Timeout;
  /** When status and catalog were last announced (performance.now(), ms); -Infinity before the first. */
  private announcedAt = -Infinity;
  private stopping = false;
  private readonly authorizer: Authorizer;
  /** Running calls by caller id, and in all (what `maxRunningPerCaller` and `maxRunning` bound). */
  private readonly limits: CallLimits;

  constructor(private readonly opts: RpcServerOptions) {
    super();
    assertValidId(opts.agentId, 'agentId');
    if (!opts.authorization || typeof opts.authorization !== 'object') {
      throw new Error('RpcServer needs an authorization option (caller rules, approval keys): { keys: new Map() } runs only tools below the approval threshold');
    }
    const a = opts.authorization;
    this.authorizer = createAuthorizer({
      agentId: opts.agentId, policy: a.policy ?? {}, keys: a.keys, store: a.store, beforeRun: a.beforeRun,
      skewToleranceMs: a.skewToleranceMs ?? opts.skewToleranceMs ?? DEFAULT_SKEW_TOLERANCE_MS,
    });
    this.limits = new CallLimits(opts.maxRunningPerCaller ?? DEFAULT_MAX_RUNNING_PER_CALLER, opts.maxRunning ?? DEFAULT_MAX_RUNNING, opts.agentId);
    this.topics = topics(opts.root);
    this.store = new CallStore({ ttlMs: 0, maxBytes: opts.storeMaxBytes });
    this.callers = new CallerPresence({
      graceMs: opts.callerGraceMs ?? DEFAULT_CALLER_GRACE_MS,
      connected: () => this.connected,
      hasRunning: (callerId) => this.store.running(callerId).length > 0,
      cancel: (callerId, why) => {
        for (const c of this.store.running(callerId)) c.abort?.abort(new ToolError('CANCELLED', why));
      },
      lost: (callerId, state) => this.emit('caller-lost', callerId, state),
    });
    this.setToolsInternal(opts.tools);
  }

  /** The catalog this agent announces. */
  get catalog(): Catalog {
    const i = this.opts.info ?? {};
    return {
      agent: { id: this.opts.agentId, name: i.name, kind: i.kind, host: i.host ?? os.hostname(), version: i.version },
      rev: this.rev,
      tools: this.catalogTools,
    };
  }

  /** True while connected to the broker. */
  get connected(): boolean {
    return this.client?.connected ?? false;
  }

  /** Connects and resolves when `online` has been published the first time. */
  start(): Promise<void> {
    const t = this.topics;
    const will = { state: 'lost', agent: this.opts.agentId, instance: this.instance };
    const client = connectMqtt({
      ...this.opts.connection,
      clientId: this.opts.connection.clientId ?? `toolmesh-agent-${this.opts.agentId}-${this.instance.slice(0, 6)}`,
      will: { topic: t.agentStatus(this.opts.agentId), payload: JSON.stringify(will), qos: 1, retain: true },
    });
    this.client = client;
    client.on('message', (topic, payload, packet) => this.onMessage(topic, payload, packet.retain));
    client.on('close', () => {
      // a lost caller cannot come back while we cannot hear it: its grace restarts after reconnect
      this.callers.pause();
      if (!this.stopping) this.emit('offline');
    });
    client.on('error', (err) => this.emit('connection-error', err));
    return new Promise((resolve) => {
      client.on('connect', () => {
        client.subscribe([t.requestsTo(this.opts.agentId), t.anyCallerStatus], { qos: 1 }, (err) => {
          if (err) return this.emit('warn', `subscribe failed: ${err.message}`);
          this.callers.resume();
          this.announce();
          this.emit('online');
          resolve();
        });
      });
    });
  }

  /** Replaces the tool set; `rev` and the catalog change, and both are republished. */
  setTools(tools: ToolDefinition[]): void {
    this.setToolsInternal(tools);
    this.announce();
  }

  /**
   * Stops cleanly: cancels running calls, publishes `offline` (retained; waits at most 2 s for
   * the broker's acknowledgement), disconnects. Safe to call twice.
   * @param opts.decommission the agent is gone for good (a removed flow agent): empty retained
   *   catalog and status instead of `offline`, so callers forget it (docs/protocol.md, "Topics").
   */
  async stop(opts: { decommission?: boolean } = {}): Promise<void> {
    if (this.stopping) return;
    this.stopping = true;
    clearTimeout(this.republishTimer);
    this.callers.pause();
    for (const c of this.store.running()) c.abort?.abort(new ToolError('CANCELLED', 'agent is stopping'));
    const client = this.client;
    if (!client) return;
    if (client.connected && opts.decommission) {
      await publishWithin(client, this.topics.agentCatalog(this.opts.agentId), '', 2000);
      await publishWithin(client, this.topics.agentStatus(this.opts.agentId), '', 2000);
    } else if (client.connected) {
      await publishWithin(client, this.topics.agentStatus(this.opts.agentId), JSON.stringify(this.status('offline')), 2000);
    }
    await endMqtt(client);
  }

  private setToolsInternal(tools: ToolDefinition[]): void {
    const map = new Map<string, ToolDefinition>();
    for (const tool of tools) {
      if (map.has(tool.name)) throw new Error(`two tools are named "${tool.name}"; tool names must be unique per agent`);
      map.set(tool.name, tool);
    }
    this.tools = map;
    this.catalogTools = tools.map(toCatalogTool);
    // the duplicate store outlives the longest tool budget (callers may re-send until then)
    const longest = Math.max(DEFAULT_TOOL_TIMEOUT_MS, ...tools.map((t) => t.timeoutMs ?? 0));
    this.store.keepAtLeast(Math.max(5 * 60_000, 2 * longest));
    // rev is derived from the tool list itself: it changes whenever the tools change
    this.rev = parseInt(canonicalHash(this.catalogTools).slice(0, 7), 16);
  }

  private status(state: 'online' | 'offline') {
    const i = this.opts.info ?? {};
    return {
      state, agent: this.opts.agentId, instance: this.instance, kind: i.kind, version: i.version,
      catalogRev: this.rev, ts: Date.now(),
    };
  }

  /** Publishes catalog, then status (so a caller that sees the status finds the catalog). */
  private announce(): void {
    const c = this.client;
    if (!c?.connected || this.stopping) return;
    this.announcedAt = performance.now();
    clearTimeout(this.republishTimer);
    this.republishTimer = undefined;
    c.publish(this.topics.agentCatalog(this.opts.agentId), JSON.stringify(this.catalog), { qos: 1, retain: true });
    c.publish(this.topics.agentStatus(this.opts.agentId), JSON.stringify(this.status('online')), { qos: 1, retain: true });
  }

  private send(callerId: string, message: unknown): void {
    this.sendRaw(callerId, JSON.stringify(message));
  }

  private sendRaw(callerId: string, payload: string): void {
    const c = this.client;
    if (!c?.connected) {
      // the caller re-sends after it reconnects and gets the stored response
      this.emit('warn', `not connected; response to ${callerId} kept for its re-send`);
      return;
    }
    c.publish(this.topics.res(this.opts.agentId, callerId), payload, { qos: 1 });
  }

  private onMessage(topic: string, payload: Buffer, retained: boolean): void {
    let parsed: ReturnType<Topics['parse']> | undefined;
    const seen: { msg?: unknown } = {};
    try {
      parsed = this.topics.parse(topic);
      if (!parsed) return;
      if (parsed.kind === 'callerStatus') return this.onCallerStatus(parsed.callerId, payload, retained);
      if (parsed.kind !== 'req' || parsed.agentId !== this.opts.agentId) return;
      this.onRequest(parsed.callerId, payload, seen);
    } catch (e) {
      // a defect must not take the agent (or the Node-RED hosting a flow agent) down
      this.emit('warn', `message on ${printable(topic)} failed: ${(e as Error)?.message ?? String(e)}`);
      const id = topLevelId(seen.msg);
      if (parsed?.kind === 'req' && id !== undefined) {
        try {
          this.send(parsed.callerId, rpcError(id, JSONRPC.INTERNAL_ERROR, `internal error: ${(e as Error)?.message ?? String(e)}`));
        } catch { /* nothing more can be done for this message */ }
      }
    }
  }

  /** Handles one request or notification on the req topic; `seen.msg` keeps the parsed message for the error answer of a defect. */
  private onRequest(callerId: string, payload: Buffer, seen: { msg?: unknown }): void {
    const max = this.opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
    if (payload.length > max) {
      return this.send(callerId, rpcError(null, JSONRPC.INVALID_REQUEST, `request too large: ${payload.length} bytes, the limit is ${max} bytes`));
    }
    let msg: unknown;
    try {
      msg = JSON.parse(payload.toString('utf8'));
    } catch (e) {
      return this.send(callerId, rpcError(null, JSONRPC.PARSE_ERROR, `parse error: ${(e as Error).message}`));
    }
    seen.msg = msg;
    const tooBig = checkJsonLimits(msg, this.opts.jsonLimits);
    if (tooBig) {
      const id = topLevelId(msg);
      if (id === undefined && msg && typeof msg === 'object' && !Array.isArray(msg) && !('id' in msg)) return; // a notification gets no response
      return this.send(callerId, rpcError(id ?? null, JSONRPC.INVALID_REQUEST, `invalid request: ${tooBig.message}`, { limit: tooBig.limit, bound: tooBig.bound }));
    }
    this.dispatch(callerId, msg, payload.length);
  }

  /** Handles a parsed message; `bytes` is its size on the wire (what a running call counts toward the store's cap). */
  private dispatch(callerId: string, msg: unknown, bytes: number): void {
    if (msg && typeof msg === 'object' && !Array.isArray(msg) && !('id' in msg)) {
      const n = NotificationSchema.safeParse(msg);
      if (n.success && n.data.method === 'notifications/cancelled') {
        const p = CancelledParamsSchema.safeParse(n.data.params);
        if (p.success) this.cancel(callerId, p.data.requestId, p.data.reason);
      } else if (n.success && n.data.method === REPUBLISH_METHOD) this.republishAsked(callerId);
      return; // notifications get no response (JSON-RPC 2.0 section 4.1)
    }
    const req = RequestSchema.safeParse(msg);
    if (!req.success) {
      return this.send(callerId, rpcError(null, JSONRPC.INVALID_REQUEST, 'invalid request: expected a JSON-RPC 2.0 object with "jsonrpc":"2.0", a string or integer "id" and a "method"'));
    }
    const r = req.data;
    switch (r.method) {
      case 'ping':
        return this.send(callerId, { jsonrpc: '2.0', id: r.id, result: {} });
      case 'tools/list':
        return this.send(callerId, { jsonrpc: '2.0', id: r.id, result: { tools: this.listFor(callerId) } });
      case 'tools/call':
        return this.onCall(callerId, r, bytes);
      default:
        return this.send(callerId, rpcError(r.id, JSONRPC.METHOD_NOT_FOUND, `method not found: ${r.method}`));
    }
  }

  /** The catalog tools `tools/list` offers this caller. */
  private listFor(callerId: string): Tool[] {
    return this.catalogTools.filter((t) => this.authorizer.listable(callerId, this.tools.get(t.name)!));
  }

  /** Parses a caller's status (within the JSON limits) and hands it to the presence rules (caller-presence.ts). */
  private onCallerStatus(callerId: string, payload: Buffer, retained: boolean): void {
    if (payload.length === 0) return this.callers.update(callerId, 'gone', undefined, retained);
    const s = (() => {
      try {
        const v: unknown = JSON.parse(payload.toString('utf8'));
        return checkJsonLimits(v, this.opts.jsonLimits) ? undefined : CallerStatusSchema.safeParse(v);
      } catch { return undefined; }
    })();
    if (!s?.success) return void this.emit('warn', `ignored a malformed caller status from ${callerId}`);
    this.callers.update(callerId, s.data.state, s.data.instance, retained);
  }

  /**
   * A caller misses this agent's retained status or catalog (`notifications/republish`): announce
   * now, or once at the end of the rate limit's interval when the last announcement is more recent
   * than `republishMinIntervalMs` (asks meanwhile, from any caller, join that one).
   */
  private republishAsked(callerId: string): void {
    this.emit('republish-asked', callerId);
    if (this.republishTimer || this.stopping) return;
    const wait = this.announcedAt + (this.opts.republishMinIntervalMs ?? DEFAULT_REPUBLISH_MIN_INTERVAL_MS) - performance.now();
    if (wait <= 0) return this.announce();
    this.republishTimer = setTimeout(() => {
      this.republishTimer = undefined;
      this.announce();
    }, wait);
  }

  private cancel(callerId: string, id: RequestId, reason?: string): void {
    const call = this.store.get(callKey(callerId, id));
    if (!call?.abort) return;
    call.silent = true; // as in MCP, a request the caller cancelled gets no response
    // a caller whose own budget ran out cancels with reason "timeout" (docs/protocol.md): the call
    // timed out, whichever timer fired first, the caller's or the tool's
    if (reason === 'timeout' && call.timeOut) return call.timeOut();
    call.abort.abort(new ToolError('CANCELLED', reason ? `cancelled: ${reason}` : 'cancelled by the caller'));
  }

  /**
   * A `tools/call`: copies of a known request are answered from the store (rate-limited) or join
   * the run; a new call is bounded (per caller, in all, and by the store's cap: `BUSY`), then
   * checked (deadline, arguments, dry-run support) and authorized before it runs.
   */
  private onCall(callerId: string, r: RpcRequest, bytes: number): void {
    const params = CallParamsSchema.safeParse(r.params);
    if (!params.success) {
      // the first issue names the field (e.g. `_meta.onBehalfOf: must match ...`); no value is echoed
      const issue = params.error.issues[0];
      const where = issue && issue.path.length ? `; ${issue.path.join('.')}: ${issue.message}` : '';
      return this.send(callerId, rpcError(r.id, JSONRPC.INVALID_PARAMS, `invalid params: tools/call needs params.name (string) and optional params.arguments (object)${where}`));
    }
    const hash = canonicalHash(r.params);
    const seen = this.store.get(callKey(callerId, r.id));
    if (seen) {
      if (seen.paramsHash !== hash) {
        return this.send(callerId, rpcError(r.id, JSONRPC.INVALID_REQUEST, `duplicate id ${JSON.stringify(r.id)} with different params from caller ${callerId}`));
      }
      // a copy during the run joins it: the one answer at completion serves every copy
      if (seen.response === undefined) return;
      const now = Date.now();
      if (seen.resentAt !== undefined && now - seen.resentAt < (this.opts.resendIntervalMs ?? DEFAULT_RESEND_INTERVAL_MS)) return;
      seen.resentAt = now;
      return this.sendRaw(callerId, seen.response);
    }
    const { name, arguments: args = {}, _meta: meta = {} } = params.data;
    const tool = this.tools.get(name);
    if (!tool) {
      this.send(callerId, rpcError(r.id, JSONRPC.INVALID_PARAMS, `unknown tool: ${name}`, { code: 'TOOL_NOT_FOUND', tool: name }));
      return void this.emit('call', { callerId, id: r.id, tool: name, durationMs: 0, code: 'TOOL_NOT_FOUND', ...(meta.onBehalfOf !== undefined ? { onBehalfOf: meta.onBehalfOf } : {}) } satisfies CallEvent);
    }
    const event: CallEvent = { callerId, id: r.id, tool: name, durationMs: 0, risk: tool.risk };
    if (meta.dryRun) event.dryRun = true;
    if (meta.onBehalfOf !== undefined) event.onBehalfOf = meta.onBehalfOf;
    const busy = this.busy(callerId, bytes);
    if (busy) {
      // not stored: the same request may be sent again once a slot is free; no `call` event, so a
      // flood of refused calls costs no audit record and no log line each (`busy` counts them)
      this.send(callerId, { jsonrpc: '2.0', id: r.id, result: toolErrorResult('BUSY', busy.message, busy.details) });
      return void this.emit('busy', callerId, busy.details.limit);
    }
    const started = Date.now();
    const abort = new AbortController();
    const call = this.store.begin(callerId, r.id, hash, abort, bytes);
    this.limits.start(callerId);
    const finish = (result: CallToolResult) => {
      if (call.response !== undefined) return; // settled already (a failed publish re-entering through a catch)
      this.limits.end(callerId);
      const max = this.opts.maxPayloadBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
      let response = JSON.stringify({ jsonrpc: '2.0', id: r.id, result });
      if (Buffer.byteLength(response) > max) {
        result = toolErrorResult('PAYLOAD_TOO_LARGE', `the result of ${name} is ${Buffer.byteLength(response)} bytes, over the ${max}-byte limit`);
        response = JSON.stringify({ jsonrpc: '2.0', id: r.id, result });
      }
      this.store.finish(call, response);
      if (!call.silent) this.sendRaw(callerId, response);
      event.durationMs = Date.now() - started;
      if (result.isError) event.code = String((result.structuredContent?.error as { code?: string } | undefined)?.code ?? 'EXECUTION_FAILED');
      this.emit('call', event);
    };
    const skew = this.opts.skewToleranceMs ?? DEFAULT_SKEW_TOLERANCE_MS;
    if (meta.deadline !== undefined && Date.now() > meta.deadline + skew) {
      return finish(toolErrorResult('TIMEOUT', `deadline passed ${Date.now() - meta.deadline} ms ago (tolerated skew ${skew} ms); the call was not run`, { deadline: meta.deadline }));
    }
    const parsedArgs = tool.input.safeParse(args);
    if (!parsedArgs.success) {
      return finish(toolErrorResult('INVALID_ARGUMENTS', `invalid arguments for ${name}: ${parsedArgs.error.issues.map((i) => `${i.path.join('.') || '(root)'}: ${i.message}`).join('; ')}`, { issues: parsedArgs.error.issues }));
    }
    event.args = parsedArgs.data;
    if (meta.dryRun && !tool.supportsDryRun) {
      // a dry run skips the approval check: only a tool that promises to change nothing takes one
      return finish(toolErrorResult('NOT_SUPPORTED', `${name} does not support dry runs (_meta.dryRun); nothing was run. Call it without dryRun to run it for real`, { dryRun: false }));
    }
    const refuse = (refusal: AuthorizeRefusal) => {
      const why = refusal.details?.refusal;
      event.refusal = typeof why === 'string' ? why : refusal.code;
      finish(toolErrorResult(refusal.code, refusal.message, refusal.details));
    };
    Promise.resolve()
      .then(() => this.authorizer.authorize({ callerId, id: r.id, tool, args, meta }))
      .then((decision) => {
        if (decision?.approval) event.approval = decision.approval;
        if (decision && 'code' in decision) return refuse(decision);
        // cancelled, caller lost or agent stopping while the hook ran: the tool does not start
        if (abort.signal.aborted) {
          const reason = abort.signal.reason;
          return finish(reason instanceof ToolError ? toolErrorResult(reason.code, reason.message, reason.details) : toolErrorResult('CANCELLED', 'cancelled before the tool started'));
        }
        this.execute(tool, parsedArgs.data, call, meta, finish);
      }, (err: unknown) => refuse({
        code: 'EXECUTION_FAILED',
        message: `could not authorize the call, so ${name} was not run: ${(err as Error)?.message ?? String(err)}`,
        details: { refusal: 'authorize-failed' },
      }))
      .catch((e: unknown) => this.emit('warn', `call ${printable(name)} from ${callerId} failed: ${(e as Error)?.message ?? String(e)}`));
  }

  /** Why a new call of `callerId` (`bytes` long) may not start now, or undefined when it may. */
  private busy(callerId: string, bytes: number): LimitRefusal | undefined {
    const refusal = this.limits.refusal(callerId);
    if (refusal || this.store.fits(bytes)) return refusal;
    return { message: `agent ${this.opts.agentId} holds as many running and finished calls as its memory cap allows; try again shortly`, details: { limit: 'storeMaxBytes' } };
  }


  private execute(
    tool: ToolDefinition, args: unknown, call: StoredCall,
    meta: { timeoutMs?: number; progressToken?: string | number; dryRun?: boolean },
    finish: (result: CallToolResult) => void,
  ): void {
    const abort = call.abort!;
    const budget = meta.timeoutMs ?? tool.timeoutMs ?? DEFAULT_TOOL_TIMEOUT_MS;
    const timeOut = () => abort.abort(new ToolError('TIMEOUT', `${tool.name} took longer than ${budget} ms`));
    const timer = setTimeout(timeOut, budget);
    call.timeOut = timeOut;
    const aborted = new Promise<never>((_, reject) => {
      abort.signal.addEventListener('abort', () => reject(abort.signal.reason), { once: true });
    });
    const ctx = {
      signal: abort.signal,
      callerId: call.callerId,
      requestId: call.id,
      dryRun: meta.dryRun ?? false,
      progress: (progress: number, total?: number, message?: string) => {
        if (meta.progressToken === undefined || abort.signal.aborted) return;
        this.send(call.callerId, {
          jsonrpc: '2.0', method: 'notifications/progress',
          params: { progressToken: meta.progressToken, progress, total, message },
        });
      },
    };
    Promise.race([Promise.resolve().then(() => tool.execute(args, ctx)), aborted])
      .then((value) => finish(toCallToolResult(value)))
      .catch((err: unknown) => {
        if (err instanceof ToolError) return finish(toolErrorResult(err.code, err.message, err.details));
        finish(toolErrorResult('EXECUTION_FAILED', `${tool.name} failed: ${(err as Error)?.message ?? String(err)}`));
      })
      .catch((e: unknown) => this.emit('warn', `call ${tool.name} from ${call.callerId} failed: ${(e as Error)?.message ?? String(e)}`))
      .finally(() => clearTimeout(timer));
  }
}

/** The `id` of a top-level JSON-RPC object when it is a valid id (string or integer), else undefined. */
function topLevelId(msg: unknown): RequestId | undefined {
  if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return undefined;
  const id = (msg as { id?: unknown }).id;
  if (typeof id === 'string' && id.length > 0 && id.length <= 256) return id;
  if (typeof id === 'number' && Number.isInteger(id)) return id;
  return undefined;
}
