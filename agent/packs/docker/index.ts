/**
 * The docker pack: containers and images of one Docker engine, reached over its unix socket
 *. `docker_run_container` starts only allowlisted images, and
 * everything that widens a container's access (bind mounts, devices, capabilities, privileged
 * mode, network mode) comes from that image's profile in the agent config, never from arguments.
 */
import type Docker from 'dockerode';
import { z } from 'zod';
import type { ToolDefinition } from '../../../protocol/tool';
import { PackSetupError, type ToolPack } from '../types';
import { normalizeImageRef } from './format';

/** How long `create()` waits for the engine's `/_ping`, ms. */
export const PING_TIMEOUT_MS = 2000;

/**
 * The engine socket when the config names none: the path of a `unix://` `DOCKER_HOST`, else
 * `/var/run/docker.sock`. Other `DOCKER_HOST` schemes (tcp, ssh) are not used by this pack.
 */
export function defaultSocketPath(env: NodeJS.ProcessEnv = process.env): string {
  const host = env.DOCKER_HOST;
  return host?.startsWith('unix://') ? host.slice('unix://'.length) : '/var/run/docker.sock';
}

const ENV_ENTRY = /^[A-Za-z_][A-Za-z0-9_]*=/;
const DEVICE = /^\/dev\/[^:]+(:\/dev\/[^:]+(:[rwm]{1,3})?)?$/;

/** What an allowlisted image may get beyond an isolated container; every field is optional. */
const ProfileSchema = z.strictObject({
  binds: z.array(z.string().min(1)).optional().describe('Bind mounts, `host:container[:ro]`'),
  capAdd: z.array(z.string().min(1)).optional().describe('Added Linux capabilities, e.g. NET_ADMIN'),
  devices: z.array(z.string().regex(DEVICE, 'a device as /dev/x[:/dev/y[:rwm]]')).optional(),
  privileged: z.boolean().optional(),
  networkMode: z.string().min(1).optional().describe('Overrides defaultNetworkMode, e.g. bridge or host'),
  env: z.array(z.string().regex(ENV_ENTRY, 'an environment entry as NAME=value')).optional()
    .describe('Environment entries that win over the ones a call passes'),
});
export type ImageProfile = z.output<typeof ProfileSchema>;

/** The `packs.docker` section of the agent config. Unknown keys are errors. */
export const DockerConfigSchema = z.strictObject({
  socketPath: z.string().min(1).default(() => defaultSocketPath())
    .describe('Engine socket; default from a unix:// DOCKER_HOST, else /var/run/docker.sock'),
  images: z.array(z.strictObject({
    image: z.string().min(1).describe('Image reference; a missing tag means :latest'),
    profile: ProfileSchema.optional(),
  })).refine((list) => new Set(list.map((i) => normalizeImageRef(i.image))).size === list.length,
    'each image may appear once in images')
    .default([]).describe('Images docker_run_container may start; empty leaves the tool out'),
  logsMaxLines: z.number().int().min(1).max(100_000).default(500),
  logsMaxBytes: z.number().int().min(1024).max(2 * 1024 * 1024).default(256 * 1024)
    .describe('Cap on the log text one call returns (the newest bytes are kept), bytes'),
  defaultNetworkMode: z.string().min(1).default('none')
    .describe('Network mode of started containers whose profile sets none'),
  listCacheMs: z.number().int().min(0).max(60_000).default(1000)
    .describe('Longest docker_list_containers answers from memory, ms; any Docker event ends it sooner; 0 asks the engine on every call'),
});
export type DockerConfig = z.output<typeof DockerConfigSchema>;

/** Reason text of a failed ping. */
function pingFailure(err: unknown): string {
  const e = err as { name?: string; message?: string };
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return `no answer within ${PING_TIMEOUT_MS} ms`;
  return e.message ?? String(err);
}

/**
 * What the docker pack's `create()` throws when `dockerode` is not installed: it is an optional
 * peer dependency of the agent package (packages/agent/package.json), installed beside it.
 */
export const DOCKERODE_MISSING = 'the docker pack needs the dockerode library, which is not installed: run `npm install -g dockerode@4` (beside the agent: in the same global or local node_modules as @toolmesh/agent), or remove packs.docker from the config';

/** Loads dockerode's constructor. @throws PackSetupError {@link DOCKERODE_MISSING} when it is not installed. */
async function loadDockerode(): Promise<typeof import('dockerode')> {
  try {
    return (await import('dockerode')).default;
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    // only dockerode itself missing; a broken install of it (a dependency of its own missing) says so as it is
    if (err?.code === 'MODULE_NOT_FOUND' && /['"]dockerode['"]/.test(err.message ?? '')) throw new PackSetupError(DOCKERODE_MISSING);
    throw e;
  }
}

/**
 * The docker pack. `create()` pings the engine (≤ {@link PING_TIMEOUT_MS}) and returns
 * `{ unavailable: "no Docker engine reachable at <socket>: <reason>" }` when it does not answer.
 * Tools: `docker_list_containers`, `docker_inspect_container`, `docker_container_logs`,
 * `docker_container_stats`, `docker_list_images` (low, read-only); `docker_start_container`,
 * `docker_stop_container`, `docker_restart_container`, `docker_run_container` (medium: run is
 * confined to allowlisted images and their configured profiles, so it is no wider than
 * start/stop); `docker_remove_container` (high, destructive). `docker_run_container` is left out
 * when `images` is empty. `docker_list_containers` answers from memory for up to `listCacheMs`
 * while the engine's event stream is open and quiet ({@link ContainerListCache}): a change made
 * through this pack shows at once, any other change as soon as the engine's event for it arrives.
 * `dockerode` (~10 MB resident with its ssh2/grpc dependencies) and the tool code are loaded by
 * `create()`, not when this module loads: an agent whose config has no `packs.docker` never loads
 * them (bench/agent-rss.mjs, test/agent-lazy-packs.test.ts). `create()` throws a
 * PackSetupError ({@link DOCKERODE_MISSING}) when dockerode is not installed: the agent package
 * leaves it an optional peer dependency.
 */
export const dockerPack: ToolPack<typeof DockerConfigSchema> = {
  name: 'docker',
  configSchema: DockerConfigSchema,
  async create(config, ctx) {
    const Dockerode = await loadDockerode();
    const docker: Docker = new Dockerode({ socketPath: config.socketPath });
    // dockerode's ping takes `{ abortSignal }` at run time (lib/docker.js); @types/dockerode omits it.
    const ping = docker.ping.bind(docker) as unknown as (opts: { abortSignal: AbortSignal }) => Promise<unknown>;
    try {
      await ping({ abortSignal: AbortSignal.timeout(PING_TIMEOUT_MS) });
    } catch (err) {
      return { unavailable: `no Docker engine reachable at ${config.socketPath}: ${pingFailure(err)}` };
    }
    // tool code loads here, not with this module: every agent validates every pack's config
    // section, but only an agent with packs.docker needs the tools (bench/agent-rss.mjs)
    const [{ ContainerListCache }, { containerTools }] = await Promise.all([import('./list-cache'), import('./tools')]);
    const lists = new ContainerListCache(docker, { maxAgeMs: config.listCacheMs, log: ctx.log });
    await lists.start();
    const tools: ToolDefinition[] = containerTools(docker, config, ctx.agentId, lists);
    return { tools, close: () => lists.close() };
  },
};
