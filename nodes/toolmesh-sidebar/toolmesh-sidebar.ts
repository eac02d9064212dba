/**
 * Node-RED plugin `toolmesh-sidebar` (runtime part): keeps the ToolMesh sidebar of every open
 * editor live without handing its content to everyone who can open the editor.
 *
 * Node-RED's comms cannot be filtered per user (every session with `status.read` gets every
 * publish), so comms carries only a content-free signal: {@link CHANGED_TOPIC}, retained, with
 * `{ rev }`, a number that grows by one per burst of changes (nothing else: no ids, names or
 * counts). On that signal the editor reads the data from these admin endpoints, each behind
 * Node-RED's admin auth (`RED.auth.needsPermission`):
 * - `GET /toolmesh/sidebar/agents` (`toolmesh-tool-registry.read`) → `{ rev, registries: [{ id, name,
 *   state, total, notOnline, agents: SidebarAgent[] }] }`, at most {@link SIDEBAR_AGENTS} agents
 *   a registry (those not online first, then by id; the editor searches the rest through the
 *   registry's own endpoint `GET /toolmesh/registry/:id/agents`, also `toolmesh-tool-registry.read`);
 * - `GET /toolmesh/sidebar/calls` (`toolmesh-tool-registry.read`) → `{ rev, calls: CallEvent[] }`, the last
 *   {@link MAX_CALLS}, newest first;
 * - `GET /toolmesh/sidebar/approvals` (`toolmesh-confirm-gate.read`) → `{ rev, gates: [{ id, name, pending }] }`;
 *   the editor reads the pending requests of a gate from the gate's endpoint
 *   `GET /toolmesh/confirm-gate/:id/approvals` (`toolmesh-confirm-gate.read`) and decides each one by its
 *   approval id through `POST /toolmesh/confirm-gate/:id/approvals/:approvalId` (`toolmesh-confirm-gate.write`).
 * `rev` is an opaque string naming the section's state; `?since=<rev>` answers 204 without a body
 * while the section has not changed, so an editor woken by a change elsewhere reads nothing.
 * Every answer carries `Cache-Control: no-store`. The data comes from nodes/shared/events.ts,
 * where the deployed nodes add themselves.
 */
import { randomBytes } from 'node:crypto';
import {
  gateSources, registrySources, toolmeshEvents, type CallEvent,
} from '../shared/events';

/** Calls the sidebar keeps. */
export const MAX_CALLS = 50;

/** The one comms topic: `{ rev: number }` after each burst of changes, nothing else. */
export const CHANGED_TOPIC = 'toolmesh/sidebar/changed';

/** The sections, each with its admin endpoint and the Node-RED permission it requires. */
export const SECTIONS = {
  agents: { path: '/toolmesh/sidebar/agents', permission: 'toolmesh-tool-registry.read' },
  calls: { path: '/toolmesh/sidebar/calls', permission: 'toolmesh-tool-registry.read' },
  approvals: { path: '/toolmesh/sidebar/approvals', permission: 'toolmesh-confirm-gate.read' },
} as const;

/** A section of the sidebar. */
export type Section = keyof typeof SECTIONS;

/** The part of an express request and response the endpoints use. */
interface Req { query: Record<string, unknown> }
interface Res {
  set(field: string, value: string): Res;
  status(code: number): Res;
  json(body: unknown): void;
  end(): void;
}
type Handler = (req: Req, res: Res, next: () => void) => void;

/** The part of Node-RED's plugin API this plugin uses (not in @types/node-red). */
export interface PluginApi {
  plugins: { registerPlugin(id: string, definition: { type: string; onadd?: () => void }): void };
  comms: { publish(topic: string, data: unknown, retain: boolean): void };
  httpAdmin: { get(path: string, ...handlers: Handler[]): void };
  auth: { needsPermission(permission: string): Handler };
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
export function agentsSnapshot(): { registries: unknown[] } {
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
export function approvalsSnapshot(): { gates: unknown[] } {
  return { gates: [...gateSources()].sort(([a], [b]) => a.localeCompare(b)).map(([id, g]) => ({ id, name: g.name, pending: g.pending() })) };
}

/** Registers the plugin and its endpoints, and starts signalling changes. */
export default function toolmeshSidebar(RED: PluginApi): void {
  const calls: CallEvent[] = [];
  // a section's rev names this process too, so an editor's `since` from before a restart never matches
  const boot = randomBytes(4).toString('hex');
  const changes: Record<Section, number> = { agents: 0, calls: 0, approvals: 0 };
  const revOf = (s: Section) => `${boot}.${changes[s]}`;
  let signals = 0;
  const signal = coalesced(() => {
    try {
      RED.comms.publish(CHANGED_TOPIC, { rev: ++signals }, true);
    } catch (e) {
      // a view must never break the nodes that emit
      RED.log.warn(`toolmesh-sidebar: ${(e as Error)?.message ?? String(e)}`);
    }
  });
  const changed = (s: Section) => {
    changes[s]++;
    signal();
  };

  const read: Record<Section, () => object> = {
    agents: agentsSnapshot,
    calls: () => ({ calls }),
    approvals: approvalsSnapshot,
  };
  for (const s of Object.keys(SECTIONS) as Section[]) {
    RED.httpAdmin.get(SECTIONS[s].path, RED.auth.needsPermission(SECTIONS[s].permission), (req, res) => {
      res.set('Cache-Control', 'no-store');
      const rev = revOf(s);
      if (req.query.since === rev) {
        res.status(204).end();
        return;
      }
      res.json({ rev, ...read[s]() });
    });
  }

  RED.plugins.registerPlugin('toolmesh-sidebar', {
    type: 'toolmesh-sidebar',
    onadd: () => {
      toolmeshEvents.on('agents', () => changed('agents'));
      toolmeshEvents.on('approvals', () => changed('approvals'));
      toolmeshEvents.on('call', (c) => {
        calls.unshift(c);
        calls.length = Math.min(calls.length, MAX_CALLS);
        changed('calls');
      });
      signal();
    },
  });
}
