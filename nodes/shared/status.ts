/**
 * One look for a registry's state in every node that shows it (remote-tool, llm-agent, tool-in):
 * the same fill, shape and text for each state. Texts without parameters are catalog keys, as
 * Node-RED's own nodes give them (the editor translates a status text that is a key); texts with
 * parameters are translated here through the node's catalog.
 */
import type { NodeStatus } from 'node-red';
import type { RegistryState } from './registry-api';

/**
 * What a node shows about its registry: one of the connection states, `no-registry` (none
 * configured, or the configured one is not deployed) or `waiting` (the node waits for something
 * the registry has not given yet, e.g. tool-in's flow agent before its broker connection).
 */
export type RegistryStatus = RegistryState | 'no-registry' | 'waiting';

/** Node-RED's translation function (`RED._`). */
export type Translate = (key: string, params?: Record<string, string | number>) => string;

/**
 * The node status for a registry state.
 * @param node the node type, whose catalog has `<node>.status.no-registry`, `.waiting`,
 *   `.reconnecting` and `.registry-error` (with `__detail__`) for the states it shows.
 * @param detail the error's text, for `error`.
 * @returns `{ fill, shape, text }`: connected green dot; connecting, reconnecting (the registry's
 *   `disconnected`: its connection retries for as long as it runs) and waiting yellow ring; error
 *   and no registry red ring.
 */
export function registryStatus(node: string, state: RegistryStatus, t: Translate, detail?: string): NodeStatus {
  switch (state) {
    case 'connected': return { fill: 'green', shape: 'dot', text: 'node-red:common.status.connected' };
    case 'connecting': return { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' };
    case 'disconnected': return { fill: 'yellow', shape: 'ring', text: `${node}.status.reconnecting` };
    case 'waiting': return { fill: 'yellow', shape: 'ring', text: `${node}.status.waiting` };
    case 'error': return { fill: 'red', shape: 'ring', text: t(`${node}.status.registry-error`, { detail: detail ?? '' }) };
    case 'no-registry': return { fill: 'red', shape: 'ring', text: `${node}.status.no-registry` };
  }
}
