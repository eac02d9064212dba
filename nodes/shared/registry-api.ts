/**
 * What a tool-registry config node offers the nodes that use it (remote-tool, llm-agent,
 * confirm-gate, tool-in), and the one way they reach it: {@link registryOf}. Shared so both sides
 * type-check against one contract.
 */
import type { KeyObject } from 'node:crypto';
import type { AgentView, CallOptions, CallToolResult, ConnectOptions, Tool } from '@toolmesh/agent/protocol';

/** A tool as offered to nodes: the agent it lives on and its catalog entry. */
export interface OfferedTool {
  agentId: string;
  tool: Tool;
}

/** Connection state shown in node status: `connecting`, `connected`, `disconnected`, `error`. */
export type RegistryState = 'connecting' | 'connected' | 'disconnected' | 'error';

/** A node that uses the registry and wants its connection state (like mqtt-in with its broker). */
export interface RegistryUser {
  id: string;
  onRegistryState(state: RegistryState, detail?: string): void;
}

/**
 * How an agent that lives beside a registry (the flow agent of tool-in nodes) reaches the same
 * broker: the registry's connection settings (without its client id) and topic root.
 */
export interface AgentConnection {
  connection: ConnectOptions;
  /** Topic root, e.g. `toolmesh/v1`. */
  root: string;
}

/** The runtime side of a tool-registry config node. */
export interface ToolRegistryApi {
  /** Current connection state. */
  readonly state: RegistryState;
  /** Caller id used on the wire (stable across restarts). */
  readonly callerId: string;
  /** Adds a user; it immediately receives the current state. */
  register(user: RegistryUser): void;
  /** Removes a user. */
  deregister(user: RegistryUser): void;
  /** Every agent seen. */
  listAgents(): AgentView[];
  /** Optional: the agent of `listAgents()` with this id, without walking them all; `undefined` when never seen. */
  agent?(id: string): AgentView | undefined;
  /**
   * Tools of ready agents (online, catalog.rev == status.catalogRev) that the registry's policy
   * offers to LLMs (glob patterns `agent/tool`, `!` to exclude; default `*\/*`).
   */
  listTools(): OfferedTool[];
  /**
   * Optional: the tools of `listTools()` grouped by agent id (agents without an offered tool left
   * out). An agent's array must be the same object for as long as that agent's offered tools
   * are unchanged, and must not be changed by the reader: the llm-agent then updates its tool
   * index for the agents whose array changed only, instead of re-reading the whole catalog
   * (1,000 agents × 20 tools) after every catalog change. Without it the llm-agent reads
   * `listTools()`.
   */
  toolsByAgent?(): ReadonlyMap<string, readonly OfferedTool[]>;
  /**
   * True when the registry's policy offers `agentId/tool` to LLMs (the pattern check of
   * `listTools()`, whether or not the agent is online now). Nodes that run calls chosen by a
   * model check it before calling, so a model cannot reach a tool the policy hides; a registry
   * without it is refused for such calls (fail closed).
   */
  isOffered(agentId: string, tool: string): boolean;
  /** Calls a tool; always resolves (failures are `isError` results with a code). */
  call(agentId: string, tool: string, args?: Record<string, unknown>, opts?: CallOptions): Promise<CallToolResult>;
  /** Subscribes to catalog changes (any agent's status or catalog); returns an unsubscribe function. */
  onCatalogChange(listener: () => void): () => void;
  /**
   * Resolves, once the registry has started (and its embedded broker, if any, listens),
   * with the connection agent `agentId`, hosted in this Node-RED instance, should use (including
   * its credentials where the broker requires them); without `agentId`, the registry caller's own
   * settings and credentials. `undefined` when the registry has no usable broker (configuration
   * error, embedded broker failed, or closed). Rejects with an Error saying why when the broker
   * cannot admit that agent id.
   */
  agentConnection(agentId?: string): Promise<AgentConnection | undefined>;
  /**
   * Optional: takes back what `agentConnection(agentId)` set up for hosted agent `agentId` (on an
   * embedded broker with authentication: the broker user with its generated password), so
   * agents that come and go leave nothing behind; a later `agentConnection(agentId)` sets it up
   * again. For the flow agent, when its last tool-in leaves. Never throws.
   */
  releaseAgentConnection?(agentId: string): void;
  /**
   * Registers work to finish before the registry closes its own connection and its
   * embedded broker (e.g. a hosted agent publishing `offline`); returns an unregister function.
   * Tasks run at the start of `close`, in parallel; a failed task is logged, not rethrown.
   */
  beforeClose(task: () => Promise<void>): () => void;
  /**
   * Optional: approval keys set on the registry (gates of other Node-RED instances), by key id,
   * which the flow agents of this registry trust besides the gates deployed here. Absent: none.
   */
  approvalKeys?(): ReadonlyMap<string, KeyObject>;
  /** Optional: the hosted agent `agentId` is gone for good (its last tool-in was removed): drop the broker user made for it. */
  releaseAgentConnection?(agentId: string): void;
}

/** The registries of the deployed tool-registry config nodes, by their node object. */
const registries = new WeakMap<object, ToolRegistryApi>();

/**
 * Makes `api` the registry of config node `node`, for {@link registryOf}. Called by the
 * tool-registry node when it starts; a node object has one registry.
 */
export function provideRegistry(node: object, api: ToolRegistryApi): void {
  registries.set(node, api);
}

/** The part of Node-RED's runtime API {@link registryOf} needs. */
export interface NodeLookup {
  nodes: { getNode(id: string): unknown };
}

/**
 * The registry of the tool-registry config node `id`.
 * @param id the config node's id (a node property such as `def.registry`); empty or undefined
 *   gives undefined.
 * @returns the registry, or undefined when no node `id` is deployed or it is not a tool-registry
 *   (no {@link provideRegistry} call for it). Never throws.
 */
export function registryOf(RED: NodeLookup, id: string | undefined): ToolRegistryApi | undefined {
  if (!id) return undefined;
  const node = RED.nodes.getNode(id);
  return node !== null && typeof node === 'object' ? registries.get(node) : undefined;
}
