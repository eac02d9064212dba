/**
 * Simulated meshes for the tool-budget bench and tests (issue 12): agents with distinct ids,
 * rooms and kinds (`pi-garage-17`, `robot-kitchen-2`, `encoder-attic-3`, `desktop-office-4`), each
 * offering the real catalog of the packs its kind runs, as the packs build it (tool factories
 * with stub engines: no Docker, GStreamer or hardware is touched; only definitions are read).
 */
import { EventEmitter } from 'node:events';
import type { Tool } from '@toolmesh/agent/protocol';
import { toCatalogTool } from '@toolmesh/agent/protocol/tool';
import type { ToolDefinition } from '@toolmesh/agent/protocol/tool';
import { DesktopConfigSchema, desktopPack } from '@toolmesh/agent/agent/packs/desktop';
import { dashboardTools } from '@toolmesh/agent/agent/packs/dashboard/tools';
import { diagPack, DiagConfigSchema } from '@toolmesh/agent/agent/packs/diag';
import { DockerConfigSchema } from '@toolmesh/agent/agent/packs/docker';
import { containerTools } from '@toolmesh/agent/agent/packs/docker/tools';
import { GstConfigSchema } from '@toolmesh/agent/agent/packs/gstreamer';
import { gstTools } from '@toolmesh/agent/agent/packs/gstreamer/tools';
import { RobotConfigSchema, robotPack } from '@toolmesh/agent/agent/packs/robot';
import { systemPack, SystemConfigSchema } from '@toolmesh/agent/agent/packs/system';

/** One simulated agent and its catalog. */
export interface MeshAgent {
  id: string;
  kind: string;
  room: string;
  name: string;
  tools: Tool[];
}

const quiet = { info() {}, warn() {}, error() {} };
const ctx = (agentId: string) => ({ agentId, log: quiet, events: new EventEmitter() });

async function packTools(create: () => Promise<{ tools: ToolDefinition[] } | { unavailable: string }>): Promise<Tool[]> {
  const r = await create();
  if ('unavailable' in r) throw new Error(r.unavailable);
  return r.tools.map(toCatalogTool);
}

/** The catalog of each kind, by pack: what such an agent's config would enable. */
export async function kindCatalogs(): Promise<Record<string, Tool[]>> {
  const system = await packTools(() => systemPack.create(SystemConfigSchema.parse({ units: ['nginx.service', 'mosquitto.service', 'node-red.service', 'ssh.service'] }), ctx('x')));
  const diag = await packTools(() => diagPack.create(DiagConfigSchema.parse({}), ctx('x')));
  const docker = containerTools({} as never, DockerConfigSchema.parse({
    socketPath: '/var/run/docker.sock',
    images: [{ image: 'nginx:1.27' }, { image: 'eclipse-mosquitto:2' }, { image: 'homeassistant/home-assistant:stable' }],
  }), 'x', {} as never).map(toCatalogTool);
  const gst = gstTools(GstConfigSchema.parse({ inputs: [{ name: 'hdmi', description: 'HDMI capture', pipeline: 'v4l2src device=/dev/video0' }], recordingPaths: ['/srv/recordings'] }),
    {} as never, {} as never, { allowed: new Set(), allowedHosts: ['127.0.0.1'], recordingPaths: [] }).map(toCatalogTool);
  const robot = await packTools(() => robotPack.create(RobotConfigSchema.parse({}), ctx('x')));
  const desktop = await packTools(() => desktopPack.create(DesktopConfigSchema.parse({
    allowedPaths: ['/tmp'], apps: { firefox: { command: 'firefox' }, terminal: { command: 'x-terminal-emulator' } }, fetch: { urls: ['https://example.org/*'] },
  }), ctx('x')));
  const dashboard = dashboardTools({} as never, {
    dashboardUrl: 'http://127.0.0.1:1880', defaultPage: 'Home', configDir: '/tmp', deniedTopicPrefixes: [], allowedTopicPrefixes: [], brokerUrl: 'mqtt://127.0.0.1:1883',
  }).map(toCatalogTool);
  return {
    pi: [...system, ...docker, ...diag],
    robot: [...robot, ...system.slice(0, 3)],
    encoder: [...gst, ...system.slice(0, 4)],
    desktop: [...desktop, ...dashboard, ...system.slice(0, 2)],
  };
}

export const KINDS = ['pi', 'robot', 'encoder', 'desktop'] as const;
export const ROOMS = ['garage', 'kitchen', 'living', 'bedroom', 'office', 'cellar', 'workshop', 'hallway', 'porch', 'bathroom', 'loft', 'shed', 'lab', 'studio', 'pantry', 'laundry'];
const NAME_OF: Record<string, string> = { pi: 'Pi', robot: 'robot', encoder: 'encoder board', desktop: 'desktop' };

/**
 * The labelled agents every mesh holds, in rooms no generated agent uses, so a prompt that says
 * "the greenhouse Pi" means one agent in any mesh size.
 */
export const CORE: ReadonlyArray<{ id: string; kind: string; room: string }> = [
  { id: 'pi-greenhouse-1', kind: 'pi', room: 'greenhouse' },
  { id: 'robot-nursery-1', kind: 'robot', room: 'nursery' },
  { id: 'encoder-attic-1', kind: 'encoder', room: 'attic' },
  { id: 'desktop-study-1', kind: 'desktop', room: 'study' },
  { id: 'pi-garage-17', kind: 'pi', room: 'garage' },
];

/**
 * A mesh of `n` agents (n ≥ 5): the {@link CORE} agents, then generated ones (kinds and rooms in
 * turn), each with its kind's catalog. With `toolsPerAgent`, each agent has exactly that many
 * tools: its kind's first, then the other packs' tools (what the scale benches use: 20).
 */
export async function buildMesh(n: number, opts: { toolsPerAgent?: number } = {}): Promise<MeshAgent[]> {
  const catalogs = await kindCatalogs();
  const per = opts.toolsPerAgent;
  if (per !== undefined) {
    const everyTool = [...new Map(Object.values(catalogs).flat().map((t) => [t.name, t])).values()];
    for (const kind of Object.keys(catalogs)) {
      const own = catalogs[kind];
      catalogs[kind] = [...own, ...everyTool.filter((t) => !own.includes(t))].slice(0, per);
    }
  }
  const agents: MeshAgent[] = CORE.slice(0, n).map((a) => ({ ...a, name: `${a.room} ${NAME_OF[a.kind]}`, tools: catalogs[a.kind] }));
  const ids = new Set(agents.map((a) => a.id));
  for (let i = 0; agents.length < n; i++) {
    const kind = KINDS[i % KINDS.length];
    const room = ROOMS[Math.floor(i / KINDS.length) % ROOMS.length];
    const id = `${kind}-${room}-${Math.floor(i / (KINDS.length * ROOMS.length)) + 2}`;
    if (ids.has(id)) continue;
    ids.add(id);
    agents.push({ id, kind, room, name: `${room} ${NAME_OF[kind]} ${id.split('-').pop()}`, tools: catalogs[kind] });
  }
  return agents;
}

/** A mesh as the registry offers it: one entry per (agent, tool). */
export function offeredOf(mesh: readonly MeshAgent[]): Array<{ agentId: string; tool: Tool }> {
  return mesh.flatMap((a) => a.tools.map((tool) => ({ agentId: a.id, tool })));
}
