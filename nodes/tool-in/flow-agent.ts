/**
 * The flow agent: the tools of all tool-in nodes that share a registry and an agent id, offered
 * by ONE {@link RpcServer} on the registry's broker, so this Node-RED instance is an agent of the
 * mesh like any other (same status, catalog, dedupe, cancel and timeout rules).
 *
 * Reference-counted like core mqtt-broker's users: the first tool-in that joins creates the
 * agent, every join and leave replaces its tool set (`setTools`, so the catalog rev changes), and
 * the last leave stops it (it publishes `offline`). The registry is asked to wait for that stop
 * before it closes its embedded broker (`beforeClose`), so the `offline` gets out. When the last
 * tool-in leaves because it was removed (not redeployed), the agent is decommissioned (empty
 * retained status and catalog) and the registry may drop the broker user it made for it.
 *
 * Authorization is the protocol's own (protocol/policy.ts, through `RpcServer`'s required
 * `authorization`), as on every agent: calls at risk `high` or more need an approval token signed
 * by a key this agent trusts — the confirm-gates deployed in this Node-RED (nodes/shared/gate-keys.ts)
 * and the registry's trusted keys — used once (token ids kept in
 * `<userDir>/toolmesh-approvals/<agent id>.used.jsonl`); a tool-in's *Callers* become caller rules;
 * dry runs reach only the tools whose tool-in takes them.
 */
import type { KeyObject } from 'node:crypto';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { DEFAULT_SKEW_TOLERANCE_MS, RpcServer, UsedTokenStore, mergeTrustedKeys, type CallerPolicy, type ToolDefinition } from '@toolmesh/agent/protocol';
import { gateKeys } from '../shared/gate-keys';
import type { ToolRegistryApi } from '../shared/registry-api';

/** `waiting` for the broker, `online` (tools offered), or `error` (the registry has no broker). */
export type FlowAgentState = 'waiting' | 'online' | 'error';

/** A tool-in node as a member of a flow agent. */
export interface FlowAgentMember {
  /** The node id. */
  id: string;
  tool: ToolDefinition;
  /** Caller-id globs allowed to call the tool; undefined: any caller. */
  callers?: readonly string[];
  /** Receives the agent's state on join and on every change; `detail` is a short reason. */
  onAgentState(state: FlowAgentState, detail?: string): void;
  /** Logs a protocol warning (malformed request, failed publish ...). */
  warn(message: string): void;
}

/** What the agent announces about itself besides its id. */
export interface FlowAgentInfo {
  name?: string;
  kind?: string;
  version?: string;
}

/** Raised by {@link joinFlowAgent} when another member of the agent offers the same tool name. */
export class ToolNameTakenError extends Error {
  constructor(readonly agentId: string, readonly tool: string, readonly byNode: string) {
    super(`agent ${agentId} already offers a tool named "${tool}" (tool-in node ${byNode})`);
    this.name = 'ToolNameTakenError';
  }
}

/** How long a stopping agent may take to publish `offline` before it is left to itself, ms. */
const STOP_TIMEOUT_MS = 5000;
/** Folder of the flow agents' used approval tokens inside Node-RED's user directory. */
export const USED_TOKENS_DIR = 'toolmesh-approvals';

/**
 * The keys a flow agent trusts: the deployed gates' and the registry's, by key id. A key id both
 * name with different keys is left out (a token naming it cannot tell whose it is). Cached while
 * both sources return the same map objects.
 */
function trustedKeys(registry: ToolRegistryApi): () => ReadonlyMap<string, KeyObject> {
  let cached: { gates: ReadonlyMap<string, KeyObject>; own?: ReadonlyMap<string, KeyObject>; keys: ReadonlyMap<string, KeyObject> } | undefined;
  return () => {
    const gates = gateKeys();
    const own = registry.approvalKeys?.();
    if (cached?.gates === gates && cached.own === own) return cached.keys;
    const keys = mergeTrustedKeys([gates, own ?? new Map()]);
    cached = { gates, own, keys };
    return keys;
  };
}

class FlowAgent {
  readonly members = new Map<string, FlowAgentMember>();
  private server?: RpcServer;
  private state: FlowAgentState = 'waiting';
  private detail?: string;
  private readonly connecting: Promise<void>;
  private stopping?: Promise<void>;
  private readonly undoBeforeClose?: () => void;
  private store?: UsedTokenStore;
  /** Caller rules made from the members' *Callers*; a new object on every change of members. */
  private policy: CallerPolicy = {};

  constructor(
    readonly agentId: string,
    private readonly registry: ToolRegistryApi,
    private readonly info: FlowAgentInfo,
    previous: Promise<void>,
    private readonly userDir?: string,
  ) {
    this.connecting = previous.then(() => this.connect()).catch((e: Error) => this.setState('error', e.message));
    this.undoBeforeClose = registry.beforeClose?.(() => this.stop());
  }

  join(member: FlowAgentMember): void {
    this.members.set(member.id, member);
    this.policy = this.callerPolicy();
    this.server?.setTools(this.tools());
    member.onAgentState(this.state, this.detail);
  }

  /** Removes a member; true when it was the last one (then call {@link stop}). */
  leave(id: string): boolean {
    this.members.delete(id);
    if (this.members.size === 0) return true;
    this.policy = this.callerPolicy();
    this.server?.setTools(this.tools());
    return false;
  }

  /**
   * Stops the agent (publishes `offline`, or decommissions it: empty retained status and catalog,
   * and the registry's broker user for it goes); resolves within {@link STOP_TIMEOUT_MS}. Safe to call twice.
   */
  stop(decommission = false): Promise<void> {
    this.stopping ??= (async () => {
      this.undoBeforeClose?.();
      await this.connecting;
      const server = this.server;
      if (!server) {
        await this.store?.close();
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      const late = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          this.warn(`agent ${this.agentId} did not finish stopping within ${STOP_TIMEOUT_MS} ms; its offline status may be missing`);
          resolve();
        }, STOP_TIMEOUT_MS);
      });
      await Promise.race([server.stop({ decommission }), late]);
      clearTimeout(timer);
      await this.store?.close().catch((e: Error) => this.warn(`used approval tokens file: ${e.message}`));
      if (decommission) this.registry.releaseAgentConnection?.(this.agentId);
    })();
    return this.stopping;
  }

  /** One rule per caller glob of each member that limits its callers; `*` for the others. */
  private callerPolicy(): CallerPolicy {
    const members = [...this.members.values()];
    if (!members.some((m) => m.callers)) return {};
    return { callers: members.flatMap((m) => (m.callers ?? ['*']).map((caller) => ({ caller, tools: [m.tool.name] }))) };
  }

  /**
   * Opens the used-token store in the user directory. Without one (no user directory, or it
   * cannot be written) every approval token is refused (`not-recorded`): high-risk tools do not
   * run, and the warning says why.
   */
  private async openStore(): Promise<UsedTokenStore | undefined> {
    if (!this.userDir) {
      this.warn(`agent ${this.agentId}: Node-RED has no user directory to keep used approval tokens in, so calls that need a person's approval are refused`);
      return undefined;
    }
    const dir = join(this.userDir, USED_TOKENS_DIR);
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
      return await UsedTokenStore.open(join(dir, `${this.agentId}.used.jsonl`), DEFAULT_SKEW_TOLERANCE_MS, (m) => this.warn(m));
    } catch (e) {
      this.warn(`agent ${this.agentId}: ${(e as Error).message}; calls that need a person's approval are refused until it can be written`);
      return undefined;
    }
  }

  private tools(): ToolDefinition[] {
    return [...this.members.values()].map((m) => m.tool);
  }

  /** Logs through the first member; never throws (it runs inside the MQTT client's handlers). */
  private warn(message: string): void {
    try {
      this.members.values().next().value?.warn(message);
    } catch {
      // a node that cannot log has nowhere to report to
    }
  }

  private async connect(): Promise<void> {
    if (this.stopping) return;
    if (!this.registry.agentConnection) return this.setState('error', 'the registry cannot host agents');
    const conn = await this.registry.agentConnection(this.agentId);
    if (this.stopping || this.members.size === 0) return;
    if (!conn) return this.setState('error');
    this.store = await this.openStore();
    if (this.stopping || this.members.size === 0) return;
    const server = new RpcServer({
      connection: conn.connection, root: conn.root, agentId: this.agentId, info: this.info, tools: this.tools(),
      authorization: { keys: trustedKeys(this.registry), store: this.store, policy: () => this.policy },
    });
    server.on('online', () => this.setState('online'));
    server.on('offline', () => this.setState('waiting'));
    server.on('connection-error', (e: Error) => this.setState('waiting', e.message));
    server.on('warn', (m: string) => this.warn(m));
    void server.start(); // throws at once on a URL MQTT.js cannot use (caught by the constructor's handler)
    this.server = server;
  }

  private setState(state: FlowAgentState, detail?: string): void {
    if (state === this.state && detail === this.detail) return;
    this.state = state;
    this.detail = detail;
    // runs from the MQTT client's events: one member that throws must not stop the others
    for (const m of this.members.values()) {
      try {
        m.onAgentState(state, detail);
      } catch (e) {
        this.warn(`tool-in node ${m.id} failed to take the agent state ${state}: ${(e as Error)?.message ?? String(e)}`);
      }
    }
  }
}

const agents = new Map<string, FlowAgent>();
/** Agents being stopped, by key: a new agent with the same key starts after the old one stopped. */
const stopping = new Map<string, Promise<void>>();

/** A tool-in node's place in its flow agent. */
export interface FlowAgentMembership {
  /**
   * Withdraws the tool; resolves once the agent stopped, when it was the last tool.
   * @param removed the node was removed (not redeployed): the last one out decommissions the agent.
   */
  leave(removed?: boolean): Promise<void>;
}

/**
 * Adds a tool to the flow agent of (`registryId`, `agentId`), creating and starting the agent
 * when it is the first.
 * @throws ToolNameTakenError when another member of that agent offers a tool with the same name.
 */
export function joinFlowAgent(
  registryId: string, registry: ToolRegistryApi, agentId: string, info: FlowAgentInfo, member: FlowAgentMember, userDir?: string,
): FlowAgentMembership {
  const key = `${registryId}\n${agentId}`;
  let agent = agents.get(key);
  const taken = agent && [...agent.members.values()].find((m) => m.tool.name === member.tool.name && m.id !== member.id);
  if (taken) throw new ToolNameTakenError(agentId, member.tool.name, taken.id);
  if (!agent) {
    agent = new FlowAgent(agentId, registry, info, stopping.get(key) ?? Promise.resolve(), userDir);
    agents.set(key, agent);
  }
  agent.join(member);
  const joined = agent;
  let left: Promise<void> | undefined;
  return {
    leave: (removed = false) => {
      left ??= (async () => {
        if (!joined.leave(member.id)) return;
        if (agents.get(key) === joined) agents.delete(key);
        const stopped = joined.stop(removed);
        stopping.set(key, stopped);
        await stopped;
        if (stopping.get(key) === stopped) stopping.delete(key);
      })();
      return left;
    },
  };
}
