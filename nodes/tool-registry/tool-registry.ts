/**
 * Node-RED config node `tool-registry`: one MQTT connection (to an external broker, or to an
 * embedded aedes it starts, with the settings of its `toolmesh-broker` node (`brokerNode`,
 * nodes/broker) or, in flows from before that node, its own inline ones), the live catalog of
 * every agent, and the policy of which tools are offered to LLMs. Other nodes reach it as a {@link ToolRegistryApi} through
 * `registryOf(RED, id)` (nodes/shared/registry-api.ts).
 *
 * Admin endpoint for edit dialogs (permission `toolmesh-tool-registry.read`):
 * `GET /toolmesh/registry/:id/agents?q=&agent=&offset=&limit=&tools=` → one page of
 * {@link AgentSummary}[] (at most `limit`, default 100, up to 500; `q` filters by id, name or
 * kind; `agent` picks one id; `tools=false` leaves the tool lists out), the number of matches in
 * the `X-Total-Count` header; 400 naming the parameter when one is bad, 404 when that registry
 * is not deployed.
 *
 * Join endpoints (a device joins with a one-time join string): ./join-endpoint.ts.
 * Broker users and device removal: admin-users.ts. Users added one by one are kept in
 * `<userDir>/toolmesh/broker-users-<node id>.json` (user-store.ts).
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { IClientOptions } from 'mqtt';
import { provideRegistry, type ToolRegistryApi } from '../shared/registry-api';
import { addRegistrySource, toolmeshEvents } from '../shared/events';
import { isLoopbackHost } from '@toolmesh/agent/protocol/broker';
import { printable } from '@toolmesh/agent/protocol/redact';
import { ID_PATTERN } from '@toolmesh/agent/protocol/topics';
import { z } from 'zod';
import { MAX_PAGE, ToolRegistry, stopParkedBrokers, type AgentQuery, type AgentSummary } from './registry';
import type { OfferedTool } from '../shared/registry-api';
import { userStoreFile } from './user-store';
import { registerUserEndpoints } from './admin-users';
import { readConfig, type RegistryConfig, type RegistryCredentials } from './config';
import { dropJoinCodes, mountJoinEndpoints, type JoinHost } from './join-endpoint';
import { isBrokerNode } from '../broker/broker';

export type { AgentConnection, OfferedTool, RegistryState, RegistryUser, ToolRegistryApi } from '../shared/registry-api';
export type { AgentSummary, ToolSummary } from './registry';

/** The deployed config node: a Node-RED node that is also the registry API. */
export type ToolRegistryNode = Node<RegistryCredentials> & ToolRegistryApi & {
  /** The embedded broker's `mqtt://host:port` once it listens (undefined in external mode). */
  readonly brokerUrl?: string;
  /** The embedded broker's actual port, e.g. after configuring port 0 (undefined in external mode). */
  readonly brokerPort?: number;
  /** Every agent with its tools (the admin endpoint pages this: {@link ToolRegistry.findAgents}). */
  describeAgents(): AgentSummary[];
  /** One page of matching agents: what the admin endpoint returns. */
  findAgents(query?: AgentQuery): { total: number; agents: AgentSummary[] };
  /** The offered tools grouped by agent (always there on this registry; optional in the API). */
  toolsByAgent(): ReadonlyMap<string, readonly OfferedTool[]>;
} & Pick<ToolRegistry, 'listBrokerUsers' | 'addBrokerUser' | 'removeBrokerUser' | 'resetBrokerPassword' | 'decommissionAgent' | 'removeAgent'>;

/** The admin endpoint's query string (unknown parameters are ignored, e.g. jQuery's `_`). */
const AgentsQuerySchema = z.object({
  q: z.string({ error: 'expected one text' }).max(200, 'expected at most 200 characters').optional(),
  agent: z.string({ error: 'expected one agent id' }).regex(ID_PATTERN, `expected an agent id (${ID_PATTERN.source})`).optional(),
  offset: z.coerce.number({ error: 'expected a whole number from 0' }).int('expected a whole number from 0').min(0, 'expected a whole number from 0').optional(),
  limit: z.coerce.number({ error: `expected a whole number from 1 to ${MAX_PAGE}` }).int(`expected a whole number from 1 to ${MAX_PAGE}`)
    .min(1, `expected a whole number from 1 to ${MAX_PAGE}`).max(MAX_PAGE, `expected a whole number from 1 to ${MAX_PAGE}`).optional(),
  tools: z.enum(['true', 'false'], { error: 'expected true or false' }).transform((v) => v === 'true').optional(),
});

const GETTERS = ['state', 'callerId', 'brokerUrl', 'brokerPort'] as const;
const METHODS = [
  'register', 'deregister', 'listAgents', 'listTools', 'toolsByAgent', 'isOffered', 'call', 'onCatalogChange', 'describeAgents', 'findAgents',
  'agentConnection', 'releaseAgentConnection', 'beforeClose', 'approvalKeys',
  'listBrokerUsers', 'addBrokerUser', 'removeBrokerUser', 'resetBrokerPassword', 'decommissionAgent', 'removeAgent',
] as const;

/**
 * Also puts the registry's API on the node object, for tests and scripts that hold the node
 * (`helper.getNode(id)`) and for the admin endpoint; nodes use `registryOf` instead.
 */
function expose(node: Node<RegistryCredentials>, registry: ToolRegistry): void {
  for (const key of GETTERS) Object.defineProperty(node, key, { get: () => registry[key], enumerable: true });
  for (const key of METHODS) Object.defineProperty(node, key, { value: registry[key].bind(registry) });
}

/** Node-RED event emitters that already stop parked brokers when the flows stop for good. */
const stopListeners = new WeakSet<object>();

/** Registers the `toolmesh-tool-registry` type (the palette shows its catalog's `tool-registry.label.palette`) and its admin endpoint. */
export default function toolRegistry(RED: NodeAPI): void {
  /** The deployed registries by config node id, for the admin endpoint. */
  const deployed = new Map<string, ToolRegistry>();
  /** The same registries with their options, for the join endpoints (join-endpoint.ts). */
  const joinHosts = new Map<string, JoinHost>();

  function ToolRegistryConfigNode(this: Node<RegistryCredentials>, def: NodeDef & RegistryConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const { options, error } = readConfig(def, node.credentials, {
      t: (key, params) => RED._(key, params),
      userDir: RED.settings.userDir,
      addTls: (id, opts: Partial<IClientOptions>) => {
        const tls = RED.nodes.getNode(id) as unknown as { addTLSOptions?: (o: object) => void } | null;
        if (!tls?.addTLSOptions) return false;
        tls.addTLSOptions(opts);
        return true;
      },
      brokerNode: (id) => {
        const b = RED.nodes.getNode(id);
        return isBrokerNode(b) ? b.brokerSettings() : undefined;
      },
    });
    // a toolmesh-broker node's broker runs in one registry at a time, kept under that node's id
    const shared = options.broker.mode === 'embedded' && def.brokerNode ? RED.nodes.getNode(def.brokerNode) : undefined;
    const brokerHolder = isBrokerNode(shared) ? shared : undefined;
    const holder = brokerHolder?.claim(node.id);
    const claimError = holder === undefined ? undefined : RED._('tool-registry.errors.broker-node-taken', { registry: holder });
    // broker users added one by one (editor, join) live beside the flows, as hashes, under the
    // id of the broker they belong to: the broker node's, else this registry's (inline settings)
    const userDir = RED.settings.userDir as string | undefined;
    const storeFile = userDir ? userStoreFile(userDir, brokerHolder ? brokerHolder.id : node.id) : undefined;
    let registry: ToolRegistry;
    let mountError: string | undefined;
    try {
      // a re-created node (deploy, restart flows) with equal broker settings keeps the running broker
      registry = new ToolRegistry({ ...options, brokerKey: brokerHolder ? brokerHolder.id : node.id, userStoreFile: storeFile });
    } catch (e) {
      // readConfig checks every field; this is a last guard so a bad MCP server never throws out of the node
      mountError = (e as Error).message;
      registry = new ToolRegistry({ ...options, mcpServers: [] });
    }
    provideRegistry(node, registry);
    expose(node, registry);
    deployed.set(node.id, registry);
    const joinHost: JoinHost = { options, addBrokerUser: (u) => registry.addBrokerUser(u) };
    if (!error && !mountError) joinHosts.set(node.id, joinHost);
    // the editor sidebar lists this registry's agents while it is deployed
    const removeSource = addRegistrySource(node.id, {
      name: def.name || undefined,
      state: () => registry.state,
      agents: () => registry.describeAgents().map((a) => ({
        id: a.id, name: a.name, kind: a.kind, version: a.version, state: a.state,
        tools: a.tools.map((t) => ({ name: t.name, risk: t.annotations?.risk ?? 'unknown' })),
      })),
    });
    registry.onCatalogChange(() => toolmeshEvents.emit('agents'));
    registry.on('state', () => toolmeshEvents.emit('agents'));

    // warnings carry names and messages from the wire (agent, client and tool names): one line each
    registry.on('warn', (m: string) => node.warn(printable(m)));
    registry.on('state', (state: string, detail?: string) => {
      const url = registry.displayUrl;
      if (state === 'connected') node.log(RED._('tool-registry.log.connected', { url, callerId: registry.callerId }));
      else if (state === 'disconnected') node.log(detail ? RED._('tool-registry.log.disconnected-why', { url, detail: printable(detail) }) : RED._('tool-registry.log.disconnected', { url }));
      else if (state === 'error') node.error(RED._('tool-registry.errors.failed', { detail: printable(detail ?? '') }));
    });

    if (error || claimError || mountError) {
      registry.fail((error ?? claimError ?? mountError)!);
    } else {
      const b = options.broker;
      if (b.mode === 'embedded' && !isLoopbackHost(b.host) && !b.tls) node.warn(RED._('tool-registry.warn.cleartext', { host: b.host }));
      void registry.start().then(() => {
        if (registry.brokerUrl) node.log(RED._(registry.brokerKept ? 'tool-registry.log.embedded-kept' : 'tool-registry.log.embedded', { url: registry.brokerUrl }));
      });
    }

    node.on('close', (removed: boolean, done: () => void) => {
      if (deployed.get(node.id) === registry) deployed.delete(node.id);
      if (joinHosts.get(node.id) === joinHost) joinHosts.delete(node.id);
      if (removed) dropJoinCodes(node.id);
      brokerHolder?.release(node.id);
      removeSource();
      // a deleted node stops its broker now; otherwise the broker waits a few seconds for the
      // re-created node (agents stay connected); a stop that is no deploy ends the wait (below)
      registry.close({ keepBroker: !removed })
        .catch((e: Error) => node.warn(RED._('tool-registry.warn.close', { error: e.message })))
        .finally(() => done());
    });
  }

  // Node-RED stopping its flows for good (shutdown, or a test unloading them) re-creates no
  // registry: the brokers waiting for one stop at once. A deploy (full, modified nodes or flows,
  // restart flows) says `deploy: true`.
  if (!stopListeners.has(RED.events)) {
    stopListeners.add(RED.events);
    RED.events.on('runtime-event', (e: { id?: string; payload?: { state?: string; deploy?: boolean } }) => {
      if (e?.id === 'runtime-state' && e.payload?.state === 'stop' && !e.payload.deploy) void stopParkedBrokers();
    });
  }

  RED.nodes.registerType<Node<RegistryCredentials>, NodeDef & RegistryConfig, object, RegistryCredentials>('toolmesh-tool-registry', ToolRegistryConfigNode, {
    credentials: {
      username: { type: 'text' },
      password: { type: 'password' },
      users: { type: 'password' },
      agentUsername: { type: 'text' },
      agentPassword: { type: 'password' },
      mcpTokens: { type: 'password' },
    },
  });

  mountJoinEndpoints(RED, joinHosts);

  RED.httpAdmin.get('/toolmesh/registry/:id/agents', RED.auth.needsPermission('toolmesh-tool-registry.read'), (req, res) => {
    const registry = deployed.get(String(req.params.id));
    if (!registry) {
      res.status(404).json({ error: RED._('tool-registry.errors.not-deployed') });
      return;
    }
    const query = AgentsQuerySchema.safeParse(req.query);
    if (!query.success) {
      res.status(400).json({ error: query.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ') });
      return;
    }
    const { total, agents } = registry.findAgents(query.data);
    res.set('X-Total-Count', String(total)).json(agents);
  });
  registerUserEndpoints(RED, deployed);
}
