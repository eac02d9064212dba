/**
 * A mount of one external MCP server (the client direction): ToolMesh connects to the server
 * with the official SDK (`@modelcontextprotocol/sdk`, protocol 2025-11-25 and the older versions
 * the SDK negotiates) over stdio (a child process) or Streamable HTTP, and shows it as one agent,
 * `mcp-<name>`, with the status and catalog shapes of wire protocol v1 (docs/protocol.md), so a
 * tool-registry can list, offer and call its tools like those of any mesh agent.
 *
 * Trust: a third-party server checks no ToolMesh approvals and its annotations are untrusted hints
 * (MCP spec 2025-11-25, "Tools" > "Tool annotations": "clients MUST consider tool annotations to
 * be untrusted unless they come from trusted servers"). So every tool is `high` risk unless the
 * `risks` option sets another level, and the enforcement point for its tools is the confirm-gate
 * in Node-RED. The server's own hints stay visible in `annotations` (readOnlyHint,
 * destructiveHint, idempotentHint, openWorldHint, title).
 *
 * Imports `protocol/` only (never nodes/ or agent/).
 */
import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Readable } from 'node:stream';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport, getDefaultEnvironment } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { Transport } from '@modelcontextprotocol/sdk/shared/transport.js';
import { ErrorCode, McpError, ToolListChangedNotificationSchema } from '@modelcontextprotocol/sdk/types.js';
import { backoffDelay, DEFAULT_BACKOFF_MAX_MS, DEFAULT_BACKOFF_MIN_MS } from '@toolmesh/agent/protocol/mqtt';
import { isValidId } from '@toolmesh/agent/protocol/topics';
import { RISK_LEVELS, ToolSchema, type AgentStatus, type Catalog, type CallToolResult, type Risk, type Tool } from '@toolmesh/agent/protocol/schemas';
import { toolErrorResult } from '@toolmesh/agent/protocol/errors';
import { checkJsonLimits } from '@toolmesh/agent/protocol/json-limits';
import { DEFAULT_CALL_TIMEOUT_MS, type AgentView, type CallOptions } from '@toolmesh/agent/protocol/rpc-client';

/** Prefix of the agent id of every mounted MCP server: `mcp-<name>`. */
export const MCP_AGENT_PREFIX = 'mcp-';
/** The `kind` of a mounted MCP server in its status and catalog. */
export const MCP_KIND = 'mcp';
/** Risk of a tool of a third-party server when `risks` does not name it. */
export const DEFAULT_MCP_RISK: Risk = 'high';
/** Most `tools/list` pages fetched per listing (a server whose cursors never end is cut off there). */
export const MAX_TOOL_PAGES = 100;

/**
 * How to reach the server.
 * - `stdio`: spawn `command` with `args` (no shell), in `cwd` (default: this process's working
 *   directory), with the SDK's safe default environment (PATH, HOME, ...) plus `env`. The child's
 *   stderr is read and its last lines reported when it exits.
 * - `http`: Streamable HTTP (MCP spec 2025-11-25, "Transports") at `url` (`http://` or
 *   `https://`), with `Authorization: Bearer <token>` when `token` is set.
 */
export type McpTransportOptions =
  | { type: 'stdio'; command: string; args?: string[]; env?: Record<string, string>; cwd?: string }
  | { type: 'http'; url: string; token?: string };

/** Options of {@link McpServerMount}. */
export interface McpServerMountOptions {
  /** Short name; the agent id is `mcp-<name>`, which must match `^[A-Za-z0-9_-]{1,64}$`. */
  name: string;
  transport: McpTransportOptions;
  /** Risk level by tool name; tools not named are `high` (annotations of the server are only hints). */
  risks?: Record<string, Risk>;
  /** Idle budget of a call when the call gives none, ms (default 30 000); each progress report restarts it. */
  defaultTimeoutMs?: number;
  /** Budget of connecting (initialize and the first tools/list), ms (default 30 000). */
  connectTimeoutMs?: number;
  /** First restart delay base and cap, ms (defaults 1 000 and 5 000; see protocol/mqtt.ts backoffDelay). */
  backoffMinMs?: number;
  backoffMaxMs?: number;
  /**
   * Interval of `ping` health checks, ms; 0 turns them off. Default: 5 000 for `http` (a server
   * that went away is otherwise noticed only by the next call), 0 for `stdio` (the child's exit
   * closes the transport at once).
   */
  pingIntervalMs?: number;
  /** Version this client reports in `initialize` (default `0.1.0`). */
  clientVersion?: string;
}

/**
 * Builds the agent id of a server name.
 * @throws Error naming the field (`name`) when `mcp-<name>` is not a valid agent id.
 */
export function mcpAgentId(name: unknown): string {
  const id = `${MCP_AGENT_PREFIX}${typeof name === 'string' ? name : ''}`;
  if (typeof name !== 'string' || name === '' || !isValidId(id)) {
    throw new Error(`name must be 1–${64 - MCP_AGENT_PREFIX.length} letters, digits, _ or - (the agent id is ${MCP_AGENT_PREFIX}<name>, matching ^[A-Za-z0-9_-]{1,64}$), got ${JSON.stringify(name)}`);
  }
  return id;
}

/** The ToolMesh form of one MCP tool, or `undefined` when the server's entry is unusable. */
function toMeshTool(t: Record<string, unknown>, risk: Risk): Tool | undefined {
  const server = (t.annotations ?? {}) as Record<string, unknown>;
  const hints: Record<string, unknown> = {};
  for (const k of ['title', 'readOnlyHint', 'destructiveHint', 'idempotentHint', 'openWorldHint']) {
    if (server[k] !== undefined) hints[k] = server[k];
  }
  const tool: Record<string, unknown> = {
    name: t.name,
    description: typeof t.description === 'string' ? t.description : typeof t.title === 'string' ? t.title : '',
    inputSchema: t.inputSchema ?? { type: 'object' },
    annotations: { ...hints, risk },
  };
  if (typeof t.title === 'string') tool.title = t.title;
  if (t.outputSchema !== undefined) tool.outputSchema = t.outputSchema;
  const parsed = ToolSchema.safeParse(tool);
  return parsed.success ? parsed.data : undefined;
}

/** A result from the SDK in the protocol's CallToolResult shape; an error without a code gets `EXECUTION_FAILED`. */
function toMeshResult(r: Record<string, unknown>): CallToolResult {
  if (!Array.isArray(r.content) && 'toolResult' in r) {
    // protocol 2024-10-07 and older answered with `toolResult`
    return { content: [{ type: 'text', text: JSON.stringify(r.toolResult) }] };
  }
  const out: CallToolResult = { content: Array.isArray(r.content) ? r.content as CallToolResult['content'] : [] };
  const sc = r.structuredContent;
  if (sc && typeof sc === 'object' && !Array.isArray(sc)) out.structuredContent = sc as Record<string, unknown>;
  if (r.isError === true) {
    out.isError = true;
    const e = out.structuredContent?.error as { code?: unknown } | undefined;
    if (typeof e?.code !== 'string') {
      const text = out.content.filter((c) => c.type === 'text').map((c) => (c as { text: string }).text).join('\n');
      out.structuredContent = { ...out.structuredContent, error: { code: 'EXECUTION_FAILED', message: text || 'the MCP server reported an error' } };
    }
  } else {
    out.isError = false;
  }
  return out;
}

/**
 * One external MCP server, shown as agent `mcp-<name>`. Events: `change` (status or catalog
 * changed: a (re)connect, a disconnect, a new tool list), `warn` (message: string; a failed
 * connect (once per distinct reason while it keeps failing), the server's last stderr lines when
 * it exits, an unusable tool entry).
 */
export class McpServerMount extends EventEmitter {
  /** `mcp-<name>`. */
  readonly agentId: string;
  private readonly opts: McpServerMountOptions;
  private client?: Client;
  private transport?: Transport;
  /** The client being connected (or connected): a close from an older one is ignored. */
  private generation = 0;
  private state: 'online' | 'offline' = 'offline';
  private instance = randomBytes(4).toString('hex');
  private rev = 0;
  private tools: Tool[] = [];
  private serverName?: string;
  private serverVersion?: string;
  private attempt = 0;
  private retryTimer?: NodeJS.Timeout;
  private pingTimer?: NodeJS.Timeout;
  private stopped = false;
  private started?: Promise<void>;
  private stderrTail = '';
  private childPid?: number;
  private seq = 0;
  /** The last connect failure reported: a server that stays broken is one warning, not one per retry. */
  private lastFailure?: string;

  /** @throws Error naming the field when `name`, `transport` or `risks` is unusable. */
  constructor(opts: McpServerMountOptions) {
    super();
    this.agentId = mcpAgentId(opts.name);
    const t = opts.transport as Partial<McpTransportOptions> | undefined;
    if (t?.type === 'stdio') {
      if (typeof t.command !== 'string' || !t.command.trim()) throw new Error(`transport.command of MCP server ${opts.name} must be a program to run, e.g. "node"`);
      if (t.args !== undefined && (!Array.isArray(t.args) || t.args.some((a) => typeof a !== 'string'))) throw new Error(`transport.args of MCP server ${opts.name} must be a list of strings`);
    } else if (t?.type === 'http') {
      let protocol = '';
      try {
        protocol = new URL(String(t.url)).protocol;
      } catch {
        // reported below
      }
      if (protocol !== 'http:' && protocol !== 'https:') throw new Error(`transport.url of MCP server ${opts.name} must be an http:// or https:// URL, got ${JSON.stringify(t.url)}`);
    } else {
      throw new Error(`transport.type of MCP server ${opts.name} must be "stdio" or "http", got ${JSON.stringify(t?.type)}`);
    }
    for (const [tool, risk] of Object.entries(opts.risks ?? {})) {
      if (!(RISK_LEVELS as readonly string[]).includes(risk)) throw new Error(`risks.${tool} of MCP server ${opts.name} must be one of ${RISK_LEVELS.join(', ')}, got ${JSON.stringify(risk)}`);
    }
    this.opts = opts;
  }

  /** The server's name as configured. */
  get name(): string {
    return this.opts.name;
  }

  /** True while connected with a tool list. */
  get online(): boolean {
    return this.state === 'online';
  }

  /** Pid of the stdio child while it runs; `undefined` for `http` or when no child runs. */
  get pid(): number | undefined {
    return this.childPid;
  }

  /**
   * Connects. Resolves after the first attempt, whether it succeeded or not (a failed attempt
   * is retried with backoff for as long as the mount runs). Safe to call twice.
   */
  start(): Promise<void> {
    this.started ??= this.connect();
    return this.started;
  }

  /**
   * Stops: cancels restarts and health checks and closes the SDK transport (for stdio that ends
   * the child process: stdin closed, then SIGTERM, then SIGKILL). Status turns `offline`. Safe to call twice.
   */
  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    clearTimeout(this.retryTimer);
    clearInterval(this.pingTimer);
    this.generation++;
    const client = this.client;
    const transport = this.transport;
    this.client = undefined;
    this.transport = undefined;
    const wasOnline = this.state === 'online';
    this.state = 'offline';
    this.childPid = undefined;
    await (client ? client.close() : transport?.close())?.catch(() => undefined);
    if (wasOnline) this.emit('change');
  }

  /**
   * What a caller knows of this server, in the protocol's shapes: status `online` while
   * connected, `offline` otherwise (kind `mcp`, `instance` a nonce per connection, `catalogRev`);
   * the catalog of the last tool list (kept while offline, for pick-lists), `rev` counting every
   * change. `ready` equals `online`.
   */
  view(): AgentView {
    const status: AgentStatus = {
      state: this.state, agent: this.agentId, instance: this.instance, kind: MCP_KIND, catalogRev: this.rev, ts: Date.now(),
      ...(this.serverVersion ? { version: this.serverVersion } : {}),
    };
    const t = this.opts.transport;
    const host = t.type === 'http' ? new URL(t.url).host : hostname();
    const catalog: Catalog | undefined = this.rev === 0 ? undefined : {
      agent: { id: this.agentId, name: this.serverName ?? this.opts.name, kind: MCP_KIND, host, ...(this.serverVersion ? { version: this.serverVersion } : {}) },
      rev: this.rev,
      tools: this.tools,
    };
    const online = this.state === 'online';
    return { id: this.agentId, status, catalog, online, ready: online && catalog !== undefined };
  }

  /**
   * Calls a tool (MCP `tools/call`). Always resolves with a protocol CallToolResult:
   * `AGENT_OFFLINE` (outcome `not_sent`) while the server is not connected, `TOOL_NOT_FOUND`
   * for a tool not in its last list, `INVALID_ARGUMENTS` when the arguments break the JSON shape
   * limits (checked before anything is sent), `NOT_SUPPORTED` for a dry run (MCP has none, and a
   * dry run must never run the tool), `CANCELLED` when `opts.signal` aborts (the SDK sends
   * `notifications/cancelled`), `TIMEOUT` after `opts.timeoutMs` without a result or progress,
   * `AGENT_OFFLINE` (outcome unknown) when the connection drops mid-call, `EXECUTION_FAILED`
   * with the message of any other MCP error. The server's own results (text, images, audio,
   * resources, structured content) pass through; an `isError` result without a ToolMesh code
   * gets `structuredContent.error.code: "EXECUTION_FAILED"` with its text. `opts.approval` is not
   * sent: the server checks none.
   */
  async call(tool: string, args: Record<string, unknown> = {}, opts: CallOptions = {}): Promise<CallToolResult> {
    const client = this.client;
    if (!client || this.state !== 'online') {
      return toolErrorResult('AGENT_OFFLINE', `MCP server ${this.agentId} is not connected; the call to ${tool} was not sent`, { agent: this.agentId, outcome: 'not_sent' });
    }
    if (!this.tools.some((t) => t.name === tool)) {
      return toolErrorResult('TOOL_NOT_FOUND', `MCP server ${this.agentId} has no tool ${JSON.stringify(tool)}`, { agent: this.agentId, tool });
    }
    if (opts.signal?.aborted) return toolErrorResult('CANCELLED', 'cancelled before it was sent');
    const shape = checkJsonLimits(args);
    if (shape) return toolErrorResult('INVALID_ARGUMENTS', `arguments for ${this.agentId}/${tool} refused: ${shape.message}; the call was not sent`, { limit: shape.limit, bound: shape.bound });
    if (opts.dryRun) return toolErrorResult('NOT_SUPPORTED', `MCP server ${this.agentId} has no dry run; ${tool} was not called`, { agent: this.agentId, tool });
    const timeout = opts.timeoutMs ?? this.opts.defaultTimeoutMs ?? DEFAULT_CALL_TIMEOUT_MS;
    const progressToken = `${this.instance}-${++this.seq}`;
    try {
      const r = await client.callTool({ name: tool, arguments: args }, undefined, {
        signal: opts.signal,
        timeout,
        resetTimeoutOnProgress: true,
        onprogress: opts.onProgress && ((p) => opts.onProgress!({ ...p, progressToken })),
      });
      return toMeshResult(r as Record<string, unknown>);
    } catch (e) {
      if (opts.signal?.aborted) return toolErrorResult('CANCELLED', 'cancelled by the caller');
      if (e instanceof McpError && e.code === ErrorCode.RequestTimeout) {
        return toolErrorResult('TIMEOUT', `no result from ${this.agentId}/${tool} within ${timeout} ms`, { agent: this.agentId, timeoutMs: timeout });
      }
      if ((e instanceof McpError && e.code === ErrorCode.ConnectionClosed) || client !== this.client) {
        return toolErrorResult('AGENT_OFFLINE', `the connection to MCP server ${this.agentId} closed during the call to ${tool}; it may have run`, { agent: this.agentId, outcome: 'unknown' });
      }
      if (e instanceof McpError && e.code === ErrorCode.InvalidParams && /tool .*not found|unknown tool/i.test(e.message)) {
        return toolErrorResult('TOOL_NOT_FOUND', e.message, { agent: this.agentId, tool, rpcCode: e.code });
      }
      if (!(e instanceof McpError) && this.opts.transport.type === 'http') {
        // fetch failed: the server is gone; check now instead of at the next ping
        void this.ping(client);
        return toolErrorResult('AGENT_OFFLINE', `MCP server ${this.agentId} did not answer the call to ${tool}: ${(e as Error).message}`, { agent: this.agentId, outcome: 'unknown' });
      }
      return toolErrorResult('EXECUTION_FAILED', `${this.agentId}/${tool}: ${(e as Error).message}`, { agent: this.agentId, ...(e instanceof McpError ? { rpcCode: e.code } : {}) });
    }
  }

  private makeTransport(): Transport {
    const t = this.opts.transport;
    if (t.type === 'http') {
      return new StreamableHTTPClientTransport(new URL(t.url), {
        requestInit: t.token ? { headers: { Authorization: `Bearer ${t.token}` } } : undefined,
      });
    }
    const transport = new StdioClientTransport({
      command: t.command, args: t.args ?? [], cwd: t.cwd || undefined, env: { ...getDefaultEnvironment(), ...(t.env ?? {}) }, stderr: 'pipe',
    });
    this.stderrTail = '';
    // read it always: a full pipe would block the child
    (transport.stderr as Readable | null)?.on('data', (d: Buffer) => {
      this.stderrTail = (this.stderrTail + d.toString('utf8')).slice(-2000);
    });
    return transport;
  }

  /** One connect attempt; on failure schedules the next one. */
  private async connect(): Promise<void> {
    if (this.stopped) return;
    const generation = ++this.generation;
    const transport = this.makeTransport();
    const client = new Client({ name: 'toolmesh', version: this.opts.clientVersion ?? '0.1.0' }, { capabilities: {} });
    this.transport = transport;
    client.onclose = () => this.closed(generation);
    client.onerror = () => undefined; // a failed attempt or send also closes; reported there
    client.setNotificationHandler(ToolListChangedNotificationSchema, () => {
      if (generation === this.generation) void this.refresh(client, generation);
    });
    const timeout = this.opts.connectTimeoutMs ?? 30_000;
    try {
      await client.connect(transport, { timeout });
      if (transport instanceof StdioClientTransport) this.childPid = transport.pid ?? undefined;
      const tools = await this.fetchTools(client, timeout);
      if (generation !== this.generation || this.stopped) {
        await client.close().catch(() => undefined);
        return;
      }
      const info = client.getServerVersion();
      this.serverName = info?.title ?? info?.name;
      this.serverVersion = info?.version;
      this.client = client;
      this.instance = randomBytes(4).toString('hex');
      this.tools = tools;
      this.rev++;
      this.state = 'online';
      this.attempt = 0;
      this.lastFailure = undefined;
      this.startPings(client, generation);
      this.emit('change');
    } catch (e) {
      if (generation !== this.generation || this.stopped) return;
      this.generation++; // the close of this client is not a disconnect
      this.childPid = undefined;
      await client.close().catch(() => undefined);
      const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
      const failure = `MCP server ${this.agentId}: connecting failed: ${(e as Error).message}${tail ? `; its stderr: ${tail}` : ''}; retrying`;
      if (failure !== this.lastFailure) this.emit('warn', failure);
      this.lastFailure = failure;
      this.scheduleRetry();
    }
  }

  /** `tools/list` with the cursor loop (MCP spec 2025-11-25, "Pagination"). */
  private async fetchTools(client: Client, timeout: number): Promise<Tool[]> {
    const out: Tool[] = [];
    const seen = new Set<string>();
    let cursor: string | undefined;
    for (let page = 0; page < MAX_TOOL_PAGES; page++) {
      const res = await client.listTools(cursor ? { cursor } : undefined, { timeout });
      for (const t of res.tools as unknown as Record<string, unknown>[]) {
        const name = String(t.name);
        if (seen.has(name)) continue;
        const tool = toMeshTool(t, this.opts.risks?.[name] ?? DEFAULT_MCP_RISK);
        if (!tool) {
          this.emit('warn', `MCP server ${this.agentId}: tool ${JSON.stringify(t.name)} is left out: its entry is not a usable tool (name 1–128 characters, inputSchema an object)`);
          continue;
        }
        seen.add(name);
        out.push(tool);
      }
      cursor = res.nextCursor;
      if (!cursor) return out;
    }
    this.emit('warn', `MCP server ${this.agentId}: tools/list still had more pages after ${MAX_TOOL_PAGES}; the rest is left out`);
    return out;
  }

  /** `notifications/tools/list_changed`: fetches the list again and emits `change`. */
  private async refresh(client: Client, generation: number): Promise<void> {
    try {
      const tools = await this.fetchTools(client, this.opts.connectTimeoutMs ?? 30_000);
      if (generation !== this.generation || this.client !== client) return;
      this.tools = tools;
      this.rev++;
      this.emit('change');
    } catch (e) {
      this.emit('warn', `MCP server ${this.agentId}: fetching the changed tool list failed: ${(e as Error).message}`);
    }
  }

  private startPings(client: Client, generation: number): void {
    const every = this.opts.pingIntervalMs ?? (this.opts.transport.type === 'http' ? 5000 : 0);
    if (every <= 0) return;
    clearInterval(this.pingTimer);
    this.pingTimer = setInterval(() => {
      if (generation === this.generation) void this.ping(client);
    }, every);
    this.pingTimer.unref();
  }

  /** A failed `ping` closes the client, which counts as a disconnect (restart with backoff). */
  private async ping(client: Client): Promise<void> {
    try {
      await client.ping({ timeout: 5000 });
    } catch {
      if (client === this.client) await client.close().catch(() => undefined);
    }
  }

  /** The transport of client `generation` closed: the server crashed, exited or went away. */
  private closed(generation: number): void {
    if (generation !== this.generation || this.stopped) return;
    this.generation++;
    clearInterval(this.pingTimer);
    const wasOnline = this.state === 'online';
    this.client = undefined;
    this.transport = undefined;
    this.childPid = undefined;
    this.state = 'offline';
    const tail = this.stderrTail.trim().split('\n').slice(-3).join(' | ');
    this.emit('warn', `MCP server ${this.agentId} disconnected${tail ? ` (its stderr: ${tail})` : ''}; restarting`);
    if (wasOnline) this.emit('change');
    this.scheduleRetry();
  }

  private scheduleRetry(): void {
    if (this.stopped) return;
    clearTimeout(this.retryTimer);
    const delay = backoffDelay(this.attempt++, this.opts.backoffMinMs ?? DEFAULT_BACKOFF_MIN_MS, this.opts.backoffMaxMs ?? DEFAULT_BACKOFF_MAX_MS);
    this.retryTimer = setTimeout(() => void this.connect(), delay);
  }
}
