/**
 * Node-RED plugin `toolmesh-sidebar` (runtime part): keeps the ToolMesh sidebar of every open
 * editor live through Node-RED's comms. It publishes retained snapshots, so an editor that opens
 * later gets the current state at once:
 * - `toolmesh/sidebar/agents`: `{ registries: [{ id, name, state, agents: SidebarAgent[] }] }`;
 * - `toolmesh/sidebar/approvals`: `{ gates: [{ id, name, pending }] }` — only counts: the
 *   editor reads the pending requests from the gate's admin endpoint, behind the
 *   `confirm-gate.read` permission, and decides through it (`confirm-gate.write`);
 * - `toolmesh/sidebar/calls`: `{ calls: CallEvent[] }`, the last {@link MAX_CALLS}, newest first.
 * The data comes from nodes/shared/events.ts, where the deployed nodes add themselves.
 */
import {
  gateSources, registrySources, toolmeshEvents, type CallEvent,
} from '../shared/events';

/** Calls the sidebar keeps. */
export const MAX_CALLS = 50;

/** Comms topics, one per section of the sidebar. */
export const TOPICS = { agents: 'toolmesh/sidebar/agents', approvals: 'toolmesh/sidebar/approvals', calls: 'toolmesh/sidebar/calls' } as const;

/** The part of Node-RED's plugin API this plugin uses (not in @types/node-red). */
export interface PluginApi {
  plugins: { registerPlugin(id: string, definition: { type: string; onadd?: () => void }): void };
  comms: { publish(topic: string, data: unknown, retain: boolean): void };
  log: { warn(msg: string): void };
}

/** Runs `publish` once per burst of changes, 50 ms after the first (a deploy changes many nodes at once). */
function coalesced(publish: () => void): () => void {
  let timer: NodeJS.Timeout | undefined;
  return () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      publish();
    }, 50);
    timer.unref();
  };
}

/** The agents of every deployed registry, by registry, in id order. */
export function agentsSnapshot(): unknown {
  return {
    registries: [...registrySources()].sort(([a], [b]) => a.localeCompare(b)).map(([id, r]) => ({
      id, name: r.name, state: r.state(), agents: r.agents().sort((a, b) => a.id.localeCompare(b.id)),
    })),
  };
}

/** Every deployed gate with its number of pending approvals. */
export function approvalsSnapshot(): unknown {
  return { gates: [...gateSources()].sort(([a], [b]) => a.localeCompare(b)).map(([id, g]) => ({ id, name: g.name, pending: g.pending() })) };
}

/** Registers the plugin and starts publishing. */
export default function toolmeshSidebar(RED: PluginApi): void {
  const calls: CallEvent[] = [];
  const guarded = (what: string, f: () => void) => () => {
    try {
      f();
    } catch (e) {
      // a view must never break the nodes that emit
      RED.log.warn(`toolmesh-sidebar: ${what}: ${(e as Error)?.message ?? String(e)}`);
    }
  };
  const agents = coalesced(guarded('agents', () => RED.comms.publish(TOPICS.agents, agentsSnapshot(), true)));
  const approvals = coalesced(guarded('approvals', () => RED.comms.publish(TOPICS.approvals, approvalsSnapshot(), true)));
  const publishCalls = coalesced(guarded('calls', () => RED.comms.publish(TOPICS.calls, { calls }, true)));

  RED.plugins.registerPlugin('toolmesh-sidebar', {
    type: 'toolmesh-sidebar',
    onadd: () => {
      toolmeshEvents.on('agents', agents);
      toolmeshEvents.on('approvals', approvals);
      toolmeshEvents.on('call', (c) => {
        calls.unshift(c);
        calls.length = Math.min(calls.length, MAX_CALLS);
        publishCalls();
      });
      agents();
      approvals();
      publishCalls();
    },
  });
}
