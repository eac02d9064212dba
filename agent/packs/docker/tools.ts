/**
 * The docker pack's tool definitions. Every tool that changes something declares
 * `supportsDryRun` and honours `ctx.dryRun` (it still checks that the container exists or the
 * image is allowed, then returns `{ dryRun: true, wouldDo }`), and every engine request carries
 * `ctx.signal`.
 */
import type Docker from 'dockerode';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import {
  bodyBuffer, containerName, containerSummary, demuxLogs, imageRow, keepTail,
  normalizeImageRef, parseDevice, shortId, statsSummary,
} from './format';
import type { DockerConfig } from './index';
import type { ContainerListCache } from './list-cache';

/** Budget of stop/restart, ms: covers the longest `timeoutSeconds` (120 s) plus the kill. */
const LIFECYCLE_TIMEOUT_MS = 150_000;

/** Docker's own name rule (daemon/names: `[a-zA-Z0-9][a-zA-Z0-9_.-]`); no `/`, so no path tricks. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/** A container name (the Engine API's leading `/` allowed) or id; never a path. */
const ContainerRef = z.string()
  .regex(/^\/?[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$/, 'a container name or id: letters, digits, _ . - (the first a letter or digit)')
  .describe('Container name or id (a unique id prefix works too)');
const StopTimeout = z.number().int().min(0).max(120).optional()
  .describe('Seconds to wait after SIGTERM before SIGKILL (Docker default 10)');

/** The parts of a docker-modem error this pack reads. */
interface EngineError {
  statusCode?: number;
  json?: { message?: string } | null;
  message?: string;
}

/**
 * Turns a dockerode failure into a {@link ToolError} (`EXECUTION_FAILED`; a 404 for a container
 * names it). The error of an aborted call passes through unchanged: the agent knows why it aborted.
 */
function engineError(err: unknown, signal: AbortSignal, container?: string): unknown {
  if (signal.aborted || err instanceof ToolError) return err;
  const e = err as EngineError;
  if (e.statusCode === 404 && container !== undefined) {
    return new ToolError('EXECUTION_FAILED',
      `no container named or with id "${container}"; docker_list_containers with all: true lists them`, { container });
  }
  const detail = (typeof e.json === 'object' && e.json?.message) || e.message || String(err);
  return new ToolError('EXECUTION_FAILED', `Docker engine: ${detail}`, {
    ...(container !== undefined ? { container } : {}),
    ...(e.statusCode !== undefined ? { statusCode: e.statusCode } : {}),
  });
}

/** Runs one engine request, mapping its failure with {@link engineError}. */
async function engine<T>(ctx: ToolContext, container: string | undefined, request: () => Promise<T>): Promise<T> {
  try {
    return await request();
  } catch (err) {
    throw engineError(err, ctx.signal, container);
  }
}

/** Environment of a started container: the call's entries, then the profile's, which win. */
function mergeEnv(fromCall: Record<string, string> | undefined, fromProfile: string[] = []): string[] {
  const fixed = new Set(fromProfile.map((e) => e.slice(0, e.indexOf('='))));
  const own = Object.entries(fromCall ?? {}).filter(([k]) => !fixed.has(k)).map(([k, v]) => `${k}=${v}`);
  return [...own, ...fromProfile];
}

/**
 * Builds the pack's tools for one engine. `agentId` labels the containers `docker_run_container`
 * starts; `lists` answers `docker_list_containers`, and every tool that changes a container
 * invalidates it before returning (also when the change failed).
 */
export function containerTools(docker: Docker, config: DockerConfig, agentId: string, lists: ContainerListCache): ToolDefinition[] {
  /** Every container tool starts here, then addresses the container by the id this returns. */
  const inspect = (ref: string, ctx: ToolContext) =>
    engine(ctx, ref, () => docker.getContainer(ref.replace(/^\//, '')).inspect({ abortSignal: ctx.signal }));

  /** start / stop / restart; Docker's 304 ("already started/stopped") is a success with `changed: false`. */
  async function changeState(action: 'start' | 'stop' | 'restart', ref: string, ctx: ToolContext, t?: number) {
    const before = await inspect(ref, ctx);
    const name = containerName(before.Name);
    if (ctx.dryRun) return { dryRun: true, wouldDo: `${action} container ${name} (${before.State.Status})` };
    const c = docker.getContainer(before.Id);
    const signalOnly = { abortSignal: ctx.signal };
    const withTimeout = t === undefined ? signalOnly : { ...signalOnly, t };
    let changed = true;
    try {
      if (action === 'start') await c.start(signalOnly);
      else if (action === 'stop') await c.stop(withTimeout);
      else await c.restart(withTimeout);
    } catch (err) {
      if ((err as EngineError).statusCode !== 304) throw engineError(err, ctx.signal, ref);
      changed = false;
    } finally {
      lists.invalidate();
    }
    const after = await inspect(before.Id, ctx);
    return { container: name, id: shortId(after.Id), changed, state: after.State.Status, startedAt: after.State.StartedAt };
  }

  const tools: ToolDefinition[] = [
    defineTool({
      name: 'docker_list_containers',
      description: 'List containers: short id, name, image, state and status text. Only running ones unless all is true.',
      input: z.strictObject({ all: z.boolean().default(false).describe('Include stopped containers') }),
      risk: 'low', readOnly: true, idempotent: true,
      async execute({ all }, ctx) {
        return { containers: await engine(ctx, undefined, () => lists.list(all, ctx.signal)) };
      },
    }),
    defineTool({
      name: 'docker_inspect_container',
      description: 'Summary of one container: state, image, created, start/finish times, restart count, mounts, ports, network mode. Environment variables are not shown.',
      input: z.strictObject({ container: ContainerRef }),
      risk: 'low', readOnly: true, idempotent: true,
      async execute({ container }, ctx) {
        return { ...containerSummary(await inspect(container, ctx)) };
      },
    }),
    defineTool({
      name: 'docker_start_container',
      description: 'Start a stopped container. Starting a running one changes nothing (changed: false).',
      input: z.strictObject({ container: ContainerRef }),
      risk: 'medium', supportsDryRun: true, idempotent: true,
      execute: ({ container }, ctx) => changeState('start', container, ctx),
    }),
    defineTool({
      name: 'docker_stop_container',
      description: 'Stop a running container (SIGTERM, then SIGKILL after timeoutSeconds). Stopping a stopped one changes nothing.',
      input: z.strictObject({ container: ContainerRef, timeoutSeconds: StopTimeout }),
      risk: 'medium', supportsDryRun: true, idempotent: true, timeoutMs: LIFECYCLE_TIMEOUT_MS,
      execute: ({ container, timeoutSeconds }, ctx) => changeState('stop', container, ctx, timeoutSeconds),
    }),
    defineTool({
      name: 'docker_restart_container',
      description: 'Restart a container (stop as docker_stop_container does, then start). Starts a stopped one.',
      input: z.strictObject({ container: ContainerRef, timeoutSeconds: StopTimeout }),
      risk: 'medium', supportsDryRun: true, timeoutMs: LIFECYCLE_TIMEOUT_MS,
      execute: ({ container, timeoutSeconds }, ctx) => changeState('restart', container, ctx, timeoutSeconds),
    }),
    defineTool({
      name: 'docker_remove_container',
      description: 'Remove a container and its writable layer (named volumes stay). A running container needs force: true, which kills it first.',
      input: z.strictObject({ container: ContainerRef, force: z.boolean().default(false).describe('Kill a running container first') }),
      risk: 'high', supportsDryRun: true, destructive: true,
      async execute({ container, force }, ctx) {
        const info = await inspect(container, ctx);
        const name = containerName(info.Name);
        if (info.State.Running && !force) {
          throw new ToolError('EXECUTION_FAILED',
            `container ${name} is running; stop it first (docker_stop_container) or pass force: true`, { container: name });
        }
        if (ctx.dryRun) return { dryRun: true, wouldDo: `remove container ${name} (${info.State.Status})` };
        await engine(ctx, container, () => docker.getContainer(info.Id).remove({ force, v: false, abortSignal: ctx.signal }))
          .finally(() => lists.invalidate());
        return { container: name, id: shortId(info.Id), removed: true };
      },
    }),
    defineTool({
      name: 'docker_container_logs',
      description: `The newest log lines of a container (stdout and stderr interleaved as written), at most ${config.logsMaxLines} lines and ${config.logsMaxBytes} bytes (the newest are kept).`,
      input: z.strictObject({
        container: ContainerRef,
        tail: z.number().int().min(1).max(config.logsMaxLines).default(Math.min(100, config.logsMaxLines))
          .describe('Number of newest lines'),
        timestamps: z.boolean().default(false).describe('Prefix each line with its RFC 3339 time'),
      }),
      risk: 'low', readOnly: true, idempotent: true,
      async execute({ container, tail, timestamps }, ctx) {
        const info = await inspect(container, ctx);
        const body = await engine(ctx, container, () => docker.getContainer(info.Id)
          .logs({ stdout: true, stderr: true, follow: false, tail, timestamps, abortSignal: ctx.signal }));
        const buf = bodyBuffer(body);
        const kept = keepTail(info.Config.Tty ? buf.toString('utf8') : demuxLogs(buf), config.logsMaxBytes);
        const lines = kept.text === '' ? 0 : kept.text.replace(/\n$/, '').split('\n').length;
        return { container: containerName(info.Name), lines, truncated: kept.truncated, text: kept.text };
      },
    }),
    defineTool({
      name: 'docker_container_stats',
      description: 'One sample of a running container\'s resource use: CPU percent (100 = one full CPU), memory use and limit in bytes, process count. Takes 1 to 2 s (the engine waits for a second sample).',
      input: z.strictObject({ container: ContainerRef }),
      risk: 'low', readOnly: true, idempotent: true,
      async execute({ container }, ctx) {
        const info = await inspect(container, ctx);
        const name = containerName(info.Name);
        if (!info.State.Running) {
          throw new ToolError('EXECUTION_FAILED',
            `container ${name} is ${info.State.Status}; stats exist only for running containers`, { container: name, state: info.State.Status });
        }
        // Not a literal: @types/dockerode's stats options omit abortSignal, dockerode reads it.
        const opts = { stream: false as const, abortSignal: ctx.signal };
        const stats = await engine(ctx, container, () => docker.getContainer(info.Id).stats(opts));
        return { container: name, read: stats.read, ...statsSummary(stats) };
      },
    }),
    defineTool({
      name: 'docker_list_images',
      description: 'List the images present on this engine: short id, tags, size in bytes, creation time.',
      input: z.strictObject({}),
      risk: 'low', readOnly: true, idempotent: true,
      async execute(_args, ctx) {
        const list = await engine(ctx, undefined, () => docker.listImages({ abortSignal: ctx.signal }));
        return { images: list.map(imageRow) };
      },
    }),
  ];
  if (config.images.length > 0) tools.push(runTool(docker, config, agentId, lists));
  return tools;
}

/**
 * `docker_run_container`: starts an allowlisted image detached. Access beyond an isolated
 * container comes only from the image's profile; the network mode is
 * `profile.networkMode ?? defaultNetworkMode`. Raises PERMISSION_DENIED for other images and
 * EXECUTION_FAILED when the image is not present (the agent never pulls).
 */
function runTool(docker: Docker, config: DockerConfig, agentId: string, lists: ContainerListCache): ToolDefinition {
  const allowed = new Map(config.images.map((entry) => [normalizeImageRef(entry.image), entry]));
  const allowedList = config.images.map((entry) => entry.image);
  return defineTool({
    name: 'docker_run_container',
    description: `Create and start a container from an allowed image (${allowedList.join(', ')}), detached. Mounts, devices, capabilities and network come from the agent's configuration for that image.`,
    input: z.strictObject({
      image: z.string().min(1).max(256).describe(`One of: ${allowedList.join(', ')}`),
      name: z.string().regex(NAME, 'a name of letters, digits, _ . - (the first a letter or digit)').optional(),
      command: z.array(z.string().max(4096)).min(1).max(64).optional()
        .describe('Program and arguments, run without a shell; default: the image\'s command'),
      env: z.record(z.string().regex(ENV_NAME, 'a variable name'), z.string().max(4096)).optional(),
      autoRemove: z.boolean().default(false).describe('Remove the container when it exits'),
    }),
    risk: 'medium', supportsDryRun: true,
    async execute(args, ctx) {
      const entry = allowed.get(normalizeImageRef(args.image));
      if (!entry) {
        throw new ToolError('PERMISSION_DENIED',
          `image "${args.image}" is not allowed on this agent; allowed images: ${allowedList.join(', ')}`,
          { image: args.image, allowed: allowedList });
      }
      try {
        // dockerode's image inspect takes no abortSignal; it is one quick local request.
        await docker.getImage(entry.image).inspect();
      } catch (err) {
        if ((err as EngineError).statusCode !== 404) throw engineError(err, ctx.signal);
        throw new ToolError('EXECUTION_FAILED',
          `image ${entry.image} is allowed but not present on this engine; the agent does not pull images, so load it there first`,
          { image: entry.image });
      }
      const profile = entry.profile ?? {};
      const hostConfig = {
        NetworkMode: profile.networkMode ?? config.defaultNetworkMode,
        AutoRemove: args.autoRemove,
        ...(profile.binds ? { Binds: profile.binds } : {}),
        ...(profile.capAdd ? { CapAdd: profile.capAdd } : {}),
        ...(profile.devices ? { Devices: profile.devices.map(parseDevice) } : {}),
        ...(profile.privileged ? { Privileged: true } : {}),
      };
      if (ctx.dryRun) {
        const as = args.name ? ` as ${args.name}` : '';
        return { dryRun: true, wouldDo: `run ${entry.image}${as} with network ${hostConfig.NetworkMode}`, hostConfig };
      }
      let created: Docker.Container;
      try {
        created = await engine(ctx, undefined, () => docker.createContainer({
          Image: entry.image,
          ...(args.name ? { name: args.name } : {}),
          ...(args.command ? { Cmd: args.command } : {}),
          Env: mergeEnv(args.env, profile.env),
          Labels: { 'io.toolmesh.agent': agentId, 'io.toolmesh.caller': ctx.callerId },
          HostConfig: hostConfig,
          abortSignal: ctx.signal,
        }));
        try {
          await created.start({ abortSignal: ctx.signal });
        } catch (err) {
          await created.remove({ force: true }).catch(() => undefined);
          throw engineError(err, ctx.signal);
        }
      } finally {
        lists.invalidate();
      }
      // An autoRemove container that exited at once is already gone.
      const info = await created.inspect().catch(() => undefined);
      return {
        id: shortId(created.id),
        name: info ? containerName(info.Name) : args.name ?? null,
        image: entry.image,
        networkMode: hostConfig.NetworkMode,
        state: info?.State.Status ?? 'removed',
      };
    },
  });
}
