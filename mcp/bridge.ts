/**
 * The mesh as one MCP server (MCP 2025-11-25; older versions as the SDK negotiates them): a
 * caller on the mesh (protocol/rpc-client.ts) whose ready agents' tools are MCP tools.
 *
 * - `tools/list`: every tool the policy offers, named `<agent>__<tool>` (mcp/tools.ts);
 *   `notifications/tools/list_changed` goes to every session when agents come, go or change
 *   their catalog (coalesced over {@link LIST_CHANGED_DEBOUNCE_MS}).
 * - `tools/call` maps to protocol v1 `tools/call`: structured content and images pass through,
 *   protocol progress becomes MCP progress (when the client sent a progress token), an MCP
 *   cancel (or a client that goes away) cancels the protocol call, invalid arguments come back
 *   as the agent's `isError` result, an unknown tool is JSON-RPC -32602.
 * - Approvals: the bridge has no power a device does not grant. A call at or above
 *   `approvalFrom` (default `high`), or one an agent answers with `APPROVAL_REQUIRED`, needs a
 *   signed approval token (docs/protocol.md, "Approval tokens"); mcp/approvals.ts obtains one
 *   per the mode (`refuse`, `elicit`, `gate`).
 * - `audit`: every call, approval and refusal goes to a hash-chained audit log when given.
 * - Identity (issue 19): a session created with a {@link ClientIdentity} (the HTTP front's OAuth
 *   or static-token sign-in) has its `clientId` and `label` on every audit record, its label
 *   sent to agents as `_meta.onBehalfOf` and to confirm-gates in the approval request; with
 *   `clientAllow` rules it sees and calls only its own tools ({@link BridgeOptions.clientAllow}).
 *   The name a client gives in `initialize` is shown beside the label, never used to grant.
 *
 * One {@link McpBridge} serves many MCP sessions (one per stdio process, one per HTTP session);
 * they share its caller and caller id. No Node-RED imports.
 */
import { Server } from '@modelcontextprotocol/sdk/server/index.js';
import {
  CallToolRequestSchema, ErrorCode, ListToolsRequestSchema, McpError,
  type CallToolResult as McpCallToolResult, type ServerNotification, type ServerRequest, type Tool as McpTool,
} from '@modelcontextprotocol/sdk/types.js';
import type { RequestHandlerExtra } from '@modelcontextprotocol/sdk/shared/protocol.js';
import {
  assignToolNames, isOffered, printable, toolErrorOf, toolErrorResult, type CallToolResult, type Policy, type RpcCaller, type Risk, type Tool,
} from '@toolmesh/agent/protocol';
import type { AuditApproval, AuditEntry, AuditWriter, Redactor } from '@toolmesh/agent/protocol/audit';
import { obtainApproval, type ApprovalSettings } from './approvals';
import { LABEL_PATTERN, type ClientIdentity } from './identity';
import { riskAtLeast, toMcpResult, toMcpTool } from './tools';

/** How long list changes are gathered before one `notifications/tools/list_changed`, ms. */
export const LIST_CHANGED_DEBOUNCE_MS = 100;
/**
 * How long `tools/list` waits at most, after the bridge starts, for the retained catalogs to
 * arrive, ms: a client that lists right after `initialize` (Claude Desktop does) should see
 * the mesh, not an empty list followed by `list_changed`.
 */
export const FIRST_LIST_WAIT_MS = 3000;
/** The first catalogs count as complete once no agent changed for this long after connecting, ms. */
const FIRST_LIST_QUIET_MS = 250;
/** Tool names remembered after their agent left, so a call to one says AGENT_OFFLINE, not "unknown tool". */
const REMEMBERED_NAMES = 100_000;

/** Log levels of {@link BridgeOptions.log}. */
export type LogLevel = 'info' | 'warn' | 'error';

/** Options of {@link McpBridge}. */
export interface BridgeOptions {
  /** The bridge's caller on the mesh (started or not; the bridge does not start or stop it). */
  caller: RpcCaller;
  /** Which `agent/tool` pairs are offered (protocol/tool-policy.ts); default: all. */
  policy?: Policy;
  /** How approvals are obtained; default `{ mode: 'refuse' }`. */
  approvals?: ApprovalSettings;
  /** Calls at or above this risk need an approval before they are sent (default `high`, as agents default). */
  approvalFrom?: Risk;
  /** Hash-chained audit log of every call; `redactor` removes secrets from recorded arguments. */
  audit?: { writer: AuditWriter; redactor: Redactor };
  /** One line per event worth telling the operator (stderr on stdio: stdout carries the protocol). */
  log?: (level: LogLevel, text: string) => void;
  /** Server name and version in `initialize` (default `toolmesh`, the package version). */
  serverInfo?: { name: string; version: string };
  /**
   * Per-client tool limits (`--client-allow LABEL=GLOB`, config `clients.allow`): key a client's
   * OAuth `client_id` or its label (a `client_id` rule wins over a label rule), value the
   * `agent/tool` policy (protocol/tool-policy.ts) of what that client may see and call, on top of
   * {@link policy}. When the map has any rule, a session with an identity but no rule gets no
   * tool at all (fail closed). Sessions without an identity (stdio: the owner's own process;
   * unauthenticated loopback) are never limited by it. Default: no rules, no limit.
   */
  clientAllow?: ReadonlyMap<string, Policy>;
}

/** A policy that offers nothing: an identified client without a rule while rules exist. */
const NOTHING: Policy = { include: [], exclude: [], source: [] };

/** One MCP session: who it belongs to and what it may see. */
interface Session {
  identity?: ClientIdentity;
  /** Its own limit on top of the bridge's policy; undefined: none. */
  allow?: Policy;
  /** The tool list it was last told of (only kept for limited sessions). */
  signature: string;
}

/**
 * Checks an identity from the HTTP front.
 * @throws Error naming the field when `label` does not match {@link LABEL_PATTERN} or `clientId`
 *   is not 1–128 characters without control characters.
 */
function checkIdentity(identity: ClientIdentity): void {
  if (typeof identity.label !== 'string' || !LABEL_PATTERN.test(identity.label)) {
    throw new Error(`identity.label must match ^[A-Za-z0-9_.-]{1,64}$, got ${JSON.stringify(printable(String(identity.label)).slice(0, 80))}`);
  }
  // eslint-disable-next-line no-control-regex
  if (typeof identity.clientId !== 'string' || identity.clientId.length < 1 || identity.clientId.length > 128 || /[\u0000-\u001f\u007f-\u009f]/.test(identity.clientId)) {
    throw new Error('identity.clientId must be 1–128 characters without control characters');
  }
}

/** One offered tool: where it lives and its MCP form. */
interface Entry {
  agentId: string;
  tool: Tool;
  mcp: McpTool;
}

type Extra = RequestHandlerExtra<ServerRequest, ServerNotification>;

/** The MCP server side of the mesh. Create one per process; {@link createServer} per MCP session. */
export class McpBridge {
  private entries = new Map<string, Entry>();
  /** name → (agent, tool) of every name ever offered (bounded), for calls to tools whose agent left. */
  private readonly remembered = new Map<string, { agentId: string; tool: string }>();
  private listSignature = '';
  private readonly sessions = new Map<Server, Session>();
  private listTimer?: NodeJS.Timeout;
  /** Set when some agent's status or catalog changed since the last rebuild. */
  private dirty = true;
  private readonly onAgents = () => {
    this.dirty = true;
    this.scheduleListChanged();
  };
  private closed = false;
  /** Resolves once the first retained statuses and catalogs are in (or after {@link FIRST_LIST_WAIT_MS}). */
  private readonly firstCatalogs: Promise<void>;
  private endFirstWait?: () => void;

  constructor(private readonly opts: BridgeOptions) {
    opts.caller.on('agents', this.onAgents);
    this.rebuild();
    this.firstCatalogs = new Promise<void>((resolve) => {
      const caller = opts.caller;
      let quiet: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(quiet);
        clearTimeout(cap);
        caller.off('agents', again);
        caller.off('connect', again);
        resolve();
      };
      const again = () => {
        if (!caller.connected) return;
        clearTimeout(quiet);
        quiet = setTimeout(done, FIRST_LIST_QUIET_MS);
      };
      const cap = setTimeout(done, FIRST_LIST_WAIT_MS);
      this.endFirstWait = done;
      caller.on('agents', again);
      caller.on('connect', again);
      again();
    });
  }

  /** The caller id the bridge calls with. */
  get callerId(): string {
    return this.opts.caller.callerId;
  }

  /** Number of open MCP sessions. */
  get sessionCount(): number {
    return this.sessions.size;
  }

  /**
   * The MCP tools offered now, in catalog order (agents sorted by id): to a session of
   * `identity` when given (its `clientAllow` rule applied), else to a session without identity.
   */
  listTools(identity?: ClientIdentity): McpTool[] {
    return this.toolsFor(this.allowFor(identity));
  }

  /** The labels and client ids that have a `clientAllow` rule (empty when no client is limited). */
  clientRuleKeys(): string[] {
    return [...(this.opts.clientAllow?.keys() ?? [])];
  }

  /** The client limit of a session of `identity`: undefined (none), its rule, or {@link NOTHING}. */
  private allowFor(identity: ClientIdentity | undefined): Policy | undefined {
    const rules = this.opts.clientAllow;
    if (!identity || !rules || rules.size === 0) return undefined;
    return rules.get(identity.clientId) ?? rules.get(identity.label) ?? NOTHING;
  }

  private toolsFor(allow: Policy | undefined): McpTool[] {
    const out: McpTool[] = [];
    for (const e of this.entries.values()) if (!allow || isOffered(allow, e.agentId, e.tool.name)) out.push(e.mcp);
    return out;
  }

  /** Rebuilds the offered tools from the caller's view when it changed; true when the list changed. */
  private rebuild(): boolean {
    if (!this.dirty) return false;
    this.dirty = false;
    const caller = this.opts.caller;
    const offered = caller.listTools().filter((o) => !this.opts.policy || isOffered(this.opts.policy, o.agentId, o.tool.name));
    const byName = assignToolNames(offered);
    const entries = new Map<string, Entry>();
    for (const [name, o] of byName) {
      const agent = caller.agent(o.agentId)?.catalog?.agent;
      entries.set(name, { agentId: o.agentId, tool: o.tool, mcp: toMcpTool(name, o.agentId, o.tool, agent) });
      this.remembered.delete(name);
      this.remembered.set(name, { agentId: o.agentId, tool: o.tool.name });
    }
    while (this.remembered.size > REMEMBERED_NAMES) this.remembered.delete(this.remembered.keys().next().value!);
    this.entries = entries;
    const signature = JSON.stringify([...entries.values()].map((e) => e.mcp));
    if (signature === this.listSignature) return false;
    this.listSignature = signature;
    return true;
  }

  private scheduleListChanged(): void {
    if (this.closed || this.listTimer) return;
    this.listTimer = setTimeout(() => {
      this.listTimer = undefined;
      if (this.closed || !this.rebuild()) return;
      for (const [s, session] of this.sessions) {
        // a limited session is told only when its own list changed
        if (session.allow) {
          const signature = JSON.stringify(this.toolsFor(session.allow));
          if (signature === session.signature) continue;
          session.signature = signature;
        }
        // a session that is not initialized yet, or whose transport is gone, just misses it
        s.sendToolListChanged().catch(() => {});
      }
    }, LIST_CHANGED_DEBOUNCE_MS);
  }

  /**
   * A new SDK `Server` for one MCP session, with `tools` (and `listChanged`) capability. Connect
   * it to a transport; when the transport closes, the session's running calls are cancelled
   * (the SDK aborts their signals) and the session is dropped.
   *
   * `identity`: who the session belongs to, as the HTTP front authenticated it (mcp/identity.ts);
   * none for stdio and unauthenticated loopback. It is fixed for the session's life: its calls
   * are audited with it, sent with `_meta.onBehalfOf: label`, and limited by
   * {@link BridgeOptions.clientAllow}.
   * @throws Error naming the field when `identity` is malformed (label pattern, clientId length).
   */
  createServer(identity?: ClientIdentity): Server {
    if (identity) {
      checkIdentity(identity);
      identity = { clientId: identity.clientId, label: identity.label };
    }
    const allow = this.allowFor(identity);
    const session: Session = { identity, allow, signature: allow ? JSON.stringify(this.toolsFor(allow)) : '' };
    const info = this.opts.serverInfo ?? { name: 'toolmesh', version: '0.0.0' };
    const server = new Server(
      { name: info.name, version: info.version, title: 'ToolMesh' },
      {
        capabilities: { tools: { listChanged: true } },
        instructions: 'Tools of the devices on a ToolMesh mesh (Raspberry Pis, robots, encoder boards, desktops). '
          + 'Each tool name is <agent>__<tool>; _meta["toolmesh/risk"] gives its risk level. High-risk tools need a person\'s approval.',
      },
    );
    server.setRequestHandler(ListToolsRequestSchema, async () => {
      await this.firstCatalogs;
      this.rebuild();
      const tools = this.toolsFor(allow);
      if (allow) session.signature = JSON.stringify(tools);
      return { tools };
    });
    server.setRequestHandler(CallToolRequestSchema, (req, extra) => this.callTool(server, session, req.params, extra));
    this.sessions.set(server, session);
    server.onclose = () => this.sessions.delete(server);
    return server;
  }

  /**
   * Where a tool name leads for a session limited by `allow`: an offered tool, a tool whose agent
   * left, or nothing (also for a tool outside `allow`: to that client it does not exist).
   */
  private async resolve(name: string, allow: Policy | undefined): Promise<Entry | { agentId: string; tool: string; gone: true } | undefined> {
    const mine = <T extends { agentId: string }>(t: T | undefined, tool: (t: T) => string): T | undefined =>
      t && (!allow || isOffered(allow, t.agentId, tool(t))) ? t : undefined;
    const e = this.entries.get(name);
    if (e) return mine(e, (x) => x.tool.name);
    // a one-shot client may call before the retained catalogs are in
    await this.firstCatalogs;
    this.rebuild();
    const again = this.entries.get(name);
    if (again) return mine(again, (x) => x.tool.name);
    const r = this.remembered.get(name);
    return r ? mine({ ...r, gone: true as const }, (x) => x.tool) : undefined;
  }

  /** Passes `text` on to the log option, one line: names from clients and agents are made {@link printable}. */
  private log(level: LogLevel, text: string): void {
    this.opts.log?.(level, printable(text));
  }

  private async record(entry: AuditEntry): Promise<void> {
    const a = this.opts.audit;
    if (!a) return;
    try {
      await a.writer.append(entry);
    } catch (e) {
      this.log('error', `audit: the record of ${entry.kind} ${entry.agent ?? ''}/${entry.tool ?? ''} was not written: ${(e as Error).message}`);
      throw e;
    }
  }

  private async callTool(server: Server, session: Session, params: { name: string; arguments?: Record<string, unknown>; _meta?: Record<string, unknown> }, extra: Extra): Promise<McpCallToolResult> {
    const target = await this.resolve(params.name, session.allow);
    if (!target) throw new McpError(ErrorCode.InvalidParams, `Unknown tool: ${params.name}`, { code: 'TOOL_NOT_FOUND' });
    const { identity } = session;
    const client = server.getClientVersion();
    const clientName = client ? `${client.name}${client.version ? ` ${client.version}` : ''}` : 'an MCP client';
    // for the operator's log: the owner's label first, the client's own words after it
    const who = identity ? `${identity.label} (${clientName})` : clientName;
    const args = params.arguments ?? {};
    const started = Date.now();
    const base: AuditEntry = {
      kind: 'tool-call', caller: this.callerId, callId: String(extra.requestId), client: clientName,
      ...(identity ? { clientId: identity.clientId, label: identity.label } : {}),
    };
    const onBehalfOf = identity?.label;
    if ('gone' in target) {
      const result = toolErrorResult('AGENT_OFFLINE', `agent ${target.agentId} is not online, so ${target.tool} cannot run now; the call was not sent`, { agent: target.agentId, outcome: 'not_sent' });
      await this.record({ ...base, kind: 'refusal', agent: target.agentId, tool: target.tool, refusal: { code: 'AGENT_OFFLINE' } }).catch(() => {});
      return toMcpResult(result);
    }
    const { agentId, tool } = target;
    const risk = tool.annotations?.risk;
    const redacted = this.opts.audit?.redactor.redact(args);
    const progressToken = params._meta?.progressToken as string | number | undefined;
    // progress goes out in order and before the result (a client drops progress after the response)
    let progressSent: Promise<void> = Promise.resolve();
    const onProgress = progressToken === undefined ? undefined : (p: { progress: number; total?: number; message?: string }) => {
      const params = { progressToken, progress: p.progress, ...(p.total !== undefined ? { total: p.total } : {}), ...(p.message ? { message: p.message } : {}) };
      progressSent = progressSent.then(() => extra.sendNotification({ method: 'notifications/progress', params })).catch(() => {});
    };

    let approval: string | undefined;
    let approvalAudit: AuditApproval | undefined;
    const approve = async (reason: string): Promise<CallToolResult | undefined> => {
      const got = await obtainApproval(this.opts.approvals ?? { mode: 'refuse' }, {
        server, extra, callerId: this.callerId, agentId, tool: tool.name, risk, args, clientName, identity, reason, onProgress,
      });
      if ('token' in got) {
        approval = got.token;
        approvalAudit = got.audit;
        await this.record({ ...base, kind: 'approval', agent: agentId, tool: tool.name, risk, args: redacted, approval: got.audit });
        return undefined;
      }
      await this.record({ ...base, kind: 'refusal', agent: agentId, tool: tool.name, risk, args: redacted, refusal: { code: toolErrorOf(got.refusal)?.code ?? 'DENIED', reason: toolErrorOf(got.refusal)?.message } });
      return got.refusal;
    };

    try {
      if (riskAtLeast(risk, this.opts.approvalFrom ?? 'high')) {
        const refused = await approve(`risk ${risk ?? 'unknown'}`);
        if (refused) return toMcpResult(refused);
      }
      // recorded before it is sent: a call the log cannot hold does not run (fail closed)
      await this.record({ ...base, agent: agentId, tool: tool.name, risk, args: redacted, ...(approvalAudit ? { approval: approvalAudit } : {}) });
      let result = await this.opts.caller.call(agentId, tool.name, args, { signal: extra.signal, onProgress, approval, onBehalfOf });
      // an agent whose threshold is lower than ours asks for approval itself
      if (!approval && toolErrorOf(result)?.code === 'APPROVAL_REQUIRED' && !extra.signal.aborted) {
        const refused = await approve(`agent ${agentId} requires an approval`);
        if (refused) return toMcpResult(refused);
        result = await this.opts.caller.call(agentId, tool.name, args, { signal: extra.signal, onProgress, approval, onBehalfOf });
      }
      const code = toolErrorOf(result)?.code;
      await this.record({ ...base, kind: 'tool-result', agent: agentId, tool: tool.name, risk, outcome: code ?? 'ok', durationMs: Date.now() - started }).catch(() => {});
      if (code && code !== 'INVALID_ARGUMENTS') this.log('info', `${who}: ${agentId}/${tool.name} → ${code}`);
      if (onProgress) {
        await progressSent;
        // the SDK client drops progress it reads in the same chunk as the response
        // (modelcontextprotocol/typescript-sdk#2580): let the last one leave on its own
        await new Promise((r) => setTimeout(r, 2));
      }
      return toMcpResult(result);
    } catch (e) {
      if (e instanceof McpError) throw e;
      // an audit log that cannot be written refuses the call; anything else is a defect reported as a tool error
      const message = (e as Error)?.message ?? String(e);
      return toMcpResult(toolErrorResult('EXECUTION_FAILED', `the bridge could not run ${agentId}/${tool.name}: ${message}`));
    }
  }

  /** Stops sending list changes and closes every session (their running calls are cancelled). */
  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.listTimer);
    this.opts.caller.off('agents', this.onAgents);
    this.endFirstWait?.();
    await Promise.all([...this.sessions.keys()].map((s) => s.close().catch(() => {})));
    this.sessions.clear();
  }
}
