/**
 * Node-RED node `tool-in`: offers a tool whose implementation is the flow wired to it. Each call
 * (arguments already checked against the tool's schema) leaves as a message; a `tool-out` node
 * answers it. All tool-in nodes of one registry and agent id form one agent on the mesh (see
 * flow-agent.ts). See the help text in locales/en-US/tool-in.html for the message contract.
 */
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeStatus } from 'node-red';
import { printable, ToolError, type ToolDefinition } from '@toolmesh/agent/protocol';
import { registryOf, type RegistryState, type RegistryUser } from '../shared/registry-api';
import { registryStatus } from '../shared/status';
import { endCallsOf, runInFlow } from './calls';
import { readToolInConfig, type ToolInConfig } from './config';
import { joinFlowAgent, ToolNameTakenError, type FlowAgentMembership, type FlowAgentState } from './flow-agent';

export type { ToolInConfig } from './config';
export type { ToolCallMessage } from './calls';

/** Registers the `toolmesh-tool-in` type (the palette shows its catalog's `tool-in.label.palette`). */
export default function toolIn(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>) => RED._(key, params);

  function ToolInNode(this: Node, def: NodeDef & ToolInConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const registry = registryOf(RED, def.registry);
    const { spec, error } = readToolInConfig(def, { t, userDir: RED.settings.userDir });

    if (!spec || !registry) {
      node.error(registry ? error : t('tool-in.errors.no-registry'));
      node.status(registry ? { fill: 'red', shape: 'ring', text: 'tool-in.status.bad-config' } : registryStatus('tool-in', 'no-registry', t));
      return;
    }

    const label = `${spec.agentId}/${spec.name}`;
    let agentState: FlowAgentState = 'waiting';
    let agentDetail: string | undefined;
    let registryState: RegistryState = 'connecting';
    let registryDetail: string | undefined;
    let busy = 0;
    let lastCode: string | undefined;
    let closed = false;
    let refused: NodeStatus | undefined;

    const status = (): NodeStatus => {
      if (refused) return refused;
      if (agentState === 'error') {
        const detail = agentDetail ?? (registryState === 'error' ? registryDetail : undefined) ?? registryState;
        return registryStatus('tool-in', 'error', t, detail);
      }
      if (agentState === 'waiting') return registryStatus('tool-in', 'waiting', t);
      if (busy) return { fill: 'blue', shape: 'dot', text: t('tool-in.status.busy', { label, count: busy }) };
      if (lastCode) return { fill: 'yellow', shape: 'dot', text: t('tool-in.status.last-failed', { label, code: lastCode }) };
      return { fill: 'green', shape: 'dot', text: label };
    };
    const show = () => {
      if (!closed) node.status(status());
    };

    const tool: ToolDefinition = {
      name: spec.name, description: spec.description, input: spec.input, risk: spec.risk, timeoutMs: spec.timeoutMs,
      readOnly: spec.readOnly, destructive: spec.destructive, idempotent: spec.idempotent, supportsDryRun: spec.supportsDryRun,
      execute: (args, ctx) => {
        busy++;
        show();
        return runInFlow(
          { nodeId: node.id, agentId: spec.agentId, tool: spec.name },
          args as Record<string, unknown>,
          ctx,
          (msg) => node.send(msg as unknown as NodeMessage),
          (code) => {
            busy--;
            lastCode = code;
            show();
          },
        );
      },
    };

    const user: RegistryUser = {
      id: node.id,
      onRegistryState: (state, detail) => {
        registryState = state;
        registryDetail = detail;
        show();
      },
    };
    registry.register(user);

    // RED.version() is typed as a promise but returns the runtime's version string (absent in the test helper)
    const version: unknown = typeof RED.version === 'function' ? RED.version() : undefined;
    const info = { name: 'Node-RED flows', kind: 'node-red', version: typeof version === 'string' ? version : undefined };
    let membership: FlowAgentMembership | undefined;
    try {
      membership = joinFlowAgent(def.registry!, registry, spec.agentId, info, {
        id: node.id,
        tool,
        callers: spec.callers,
        // the flow agent's warnings name callers and tools from the wire: one line each
        warn: (m) => node.warn(printable(m)),
        onAgentState: (state, detail) => {
          agentState = state;
          agentDetail = detail;
          show();
        },
      }, RED.settings.userDir);
    } catch (e) {
      if (!(e instanceof ToolNameTakenError)) throw e;
      node.error(t('tool-in.errors.name-taken', { agent: e.agentId, tool: e.tool, node: e.byNode }));
      refused = { fill: 'red', shape: 'ring', text: 'tool-in.status.name-taken' };
      show();
    }

    node.on('close', (removed: boolean, done: () => void) => {
      closed = true;
      registry.deregister(user);
      endCallsOf(node.id, new ToolError('CANCELLED', t(removed ? 'tool-in.errors.removed' : 'tool-in.errors.redeployed', { tool: spec.name })));
      (membership?.leave(removed) ?? Promise.resolve())
        .catch((e: Error) => node.warn(e.message))
        .finally(() => done());
    });
  }

  RED.nodes.registerType('toolmesh-tool-in', ToolInNode);
}
