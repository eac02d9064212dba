/**
 * Node-RED plugin `toolmesh-sidebar` (runtime part): keeps the ToolMesh sidebar of every open
 * editor live through Node-RED's comms. It publishes retained snapshots, so an editor that opens
 * later gets the current state at once:
 * - `toolmesh/sidebar/agents`: `{ registries: [{ id, name, state, total, notOnline, agents: SidebarAgent[] }] }`,
 *   at most {@link SIDEBAR_AGENTS} agents a registry (those not online first, then by id; the
 *   editor searches the rest through the registry's admin endpoint);
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

/** Agents a registry shows in the sidebar snapshot; a mesh of 1,000 agents would be 20,000 rows on every change. */
export const SIDEBAR_AGENTS = 50;

/**
 * The agents of every deployed registry, by registry: the first {@link SIDEBAR_AGENTS} of those
 * not online (what needs a look), then the online ones, each group in id order, with `total`
 * and `notOnline` counting all of them.
 */
export function agentsSnapshot(): unknown {
  return {
    registries: [...registrySources()].sort(([a], [b]) => a.localeCompare(b)).map(([id, r]) => {
      const all = r.agents();
      const down = (a: { state: string }) => a.state !== 'online';
      all.sort((a, b) => Number(down(b)) - Number(down(a)) || a.id.localeCompare(b.id));
      return { id, name: r.name, state: r.state(), total: all.length, notOnline: all.filter(down).length, agents: all.slice(0, SIDEBAR_AGENTS) };
    }),
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
