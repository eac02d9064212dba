/**
 * Node-RED config node `toolmesh-broker` (palette label "embedded broker"): the settings of an
 * MQTT broker (aedes) embedded in this Node-RED, kept apart from the tool-registry as Node-RED
 * core keeps its `mqtt-broker` apart from the mqtt nodes: port, bind address, authentication with
 * its user list (credential), TLS. A tool-registry in embedded mode points at it with its
 * `brokerNode` property and runs the broker with these settings (nodes/tool-registry/config.ts).
 *
 * The registry, not this node, runs the aedes instance, under this node's id as its hand-over key
 * (nodes/tool-registry/broker-handover.ts): a deploy or "Restart flows" that re-creates this node
 * and the registry with equal settings keeps the running broker, and its clients stay connected.
 * One registry uses a broker node at a time ({@link BrokerNodeApi.claim}).
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import type { IClientOptions } from 'mqtt';
import { readEmbeddedBroker, type EmbeddedBrokerConfig } from '../tool-registry/config';
import type { BrokerChoice } from '../tool-registry/registry';

/** The node's properties in the flow file (see the help text). */
export interface BrokerConfig extends EmbeddedBrokerConfig {
  id: string;
  name?: string;
}

/** The node's credentials: `users`, one `role id password` a line (nodes/tool-registry/users.ts). */
export interface BrokerCredentials {
  users?: string;
}

/** What a tool-registry asks a deployed broker node. */
export interface BrokerNodeApi {
  /** The checked settings; `error` names the first bad field (the broker must not start then). */
  brokerSettings(): { broker: Extract<BrokerChoice, { mode: 'embedded' }>; error?: string };
  /**
   * Records that registry `registryId` runs this broker. Returns the id of another registry that
   * holds it already (then `registryId` must not start it), else undefined.
   */
  claim(registryId: string): string | undefined;
  /** Ends the claim of `registryId` (on its close); no-op when another registry holds it. */
  release(registryId: string): void;
}

/** Whether `node` (from `RED.nodes.getNode`) is a deployed toolmesh-broker. */
export function isBrokerNode(node: unknown): node is Node & BrokerNodeApi {
  return !!node && (node as { type?: string }).type === 'toolmesh-broker' && typeof (node as BrokerNodeApi).brokerSettings === 'function';
}

/** Registers the `toolmesh-broker` config node type. */
export default function brokerNode(RED: NodeAPI): void {
  function BrokerConfigNode(this: Node<BrokerCredentials>, def: NodeDef & BrokerConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const { broker, problems } = readEmbeddedBroker(def, node.credentials, {
      t: (key, params) => RED._(key, params),
      addTls: (id, opts: Partial<IClientOptions>) => {
        const tls = RED.nodes.getNode(id) as unknown as { addTLSOptions?: (o: object) => void } | null;
        if (!tls?.addTLSOptions) return false;
        tls.addTLSOptions(opts);
        return true;
      },
    }, 'broker');
    const error = problems[0];
    if (error) node.error(RED._('broker.errors.not-usable', { detail: error }));
    let holder: string | undefined;
    const api: BrokerNodeApi = {
      brokerSettings: () => ({ broker, error }),
      claim: (registryId) => {
        if (holder !== undefined && holder !== registryId) return holder;
        holder = registryId;
        return undefined;
      },
      release: (registryId) => {
        if (holder === registryId) holder = undefined;
      },
    };
    Object.assign(node, api);
  }

  RED.nodes.registerType<Node<BrokerCredentials>, NodeDef & BrokerConfig, object, BrokerCredentials>('toolmesh-broker', BrokerConfigNode, {
    credentials: { users: { type: 'password' } },
  });
}
