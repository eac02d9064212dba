import { EventEmitter } from 'node:events';
import { randomBytes } from 'node:crypto';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import { toCatalogTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import type { PackContext, PackResult } from '../types';
import { defaultSocketPath, DockerConfigSchema, dockerPack } from './index';
import { demuxLogs, keepTail, normalizeImageRef } from './format';

const dockerd = inject('dockerd');
if (dockerd === undefined) {
  throw new Error('the Docker engine comes from test/support/global-setup.ts; add it to globalSetup in the vitest config');
}

const packCtx: PackContext = { agentId: 'pi', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() };

function toolCtx(over: Partial<ToolContext> = {}): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {}, ...over };
}

function toolsOf(result: PackResult): ToolDefinition[] {
  if ('unavailable' in result) throw new Error(`pack unavailable: ${result.unavailable}`);
  return result.tools;
}

/** Parses `args` with the tool's schema and runs it, as the agent does. */
async function call(tools: ToolDefinition[], name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<any> {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name}`);
  return tool.execute(tool.input.parse(args), toolCtx(over));
}

/** Runs a call that must fail with a ToolError and returns that error. */
async function callError(tools: ToolDefinition[], name: string, args: unknown, over: Partial<ToolContext> = {}): Promise<ToolError> {
  const err = await call(tools, name, args, over).then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

describe('docker pack config and helpers', () => {
  it('fills defaults and rejects unknown keys', () => {
    const c = DockerConfigSchema.parse({ socketPath: '/x.sock' });
    expect(c).toEqual({ socketPath: '/x.sock', images: [], logsMaxLines: 500, logsMaxBytes: 262144, defaultNetworkMode: 'none', listCacheMs: 1000 });
    expect(DockerConfigSchema.safeParse({ sockett: '/x' }).success).toBe(false);
    expect(DockerConfigSchema.safeParse({ images: [{ image: 'a', profile: { binds: [], pid: 'host' } }] }).success).toBe(false);
    expect(DockerConfigSchema.safeParse({ images: [{ image: 'a' }, { image: 'a:latest' }] }).success).toBe(false);
  });

  it('takes the default socket from a unix DOCKER_HOST only', () => {
    expect(defaultSocketPath({ DOCKER_HOST: 'unix:///run/user/1000/docker.sock' })).toBe('/run/user/1000/docker.sock');
    expect(defaultSocketPath({ DOCKER_HOST: 'tcp://10.0.0.2:2375' })).toBe('/var/run/docker.sock');
    expect(defaultSocketPath({})).toBe('/var/run/docker.sock');
  });

  it('normalises image references and demultiplexes log frames', () => {
    expect(normalizeImageRef('busybox')).toBe('busybox:latest');
    expect(normalizeImageRef('reg:5000/app')).toBe('reg:5000/app:latest');
    expect(normalizeImageRef('reg:5000/app:1')).toBe('reg:5000/app:1');
    const frame = (stream: number, text: string) => {
      const body = Buffer.from(text);
      const head = Buffer.alloc(8);
      head[0] = stream;
      head.writeUInt32BE(body.length, 4);
      return Buffer.concat([head, body]);
    };
    expect(demuxLogs(Buffer.concat([frame(1, 'out\n'), frame(2, 'err\n'), frame(1, 'again\n')]))).toBe('out\nerr\nagain\n');
    expect(keepTail('one\ntwo\nthree\n', 8)).toEqual({ text: 'three\n', truncated: true });
  });

  it('reports unavailable when no engine answers', async () => {
    const socketPath = `/tmp/toolmesh-no-engine-${process.pid}.sock`;
    const result = await dockerPack.create(DockerConfigSchema.parse({ socketPath }), packCtx);
    expect(result).toEqual({ unavailable: expect.stringMatching(`^no Docker engine reachable at ${socketPath}: .*ENOENT`) });
  });
});

describe.skipIf(dockerd === null)('docker pack on a real engine', () => {
  const { socketPath, image } = dockerd ?? { socketPath: '', image: '' };
  const suffix = randomBytes(4).toString('hex');
  const docker = new Docker({ socketPath });
  let tools: ToolDefinition[];
  const sleeper = `tm-sleeper-${suffix}`;

  /** Creates a container the tests own (network none) and starts it unless `start` is false. */
  async function container(name: string, cmd: string[], opts: { start?: boolean; tty?: boolean } = {}) {
    const c = await docker.createContainer({
      name: `${name}-${suffix}`, Image: image, Cmd: cmd, Tty: opts.tty ?? false, HostConfig: { NetworkMode: 'none' },
    });
    if (opts.start !== false) await c.start();
    return c;
  }

  beforeAll(async () => {
    const config = DockerConfigSchema.parse({
      socketPath,
      images: [{ image }, { image: 'toolmesh/absent:test' }],
      logsMaxLines: 50,
    });
    tools = toolsOf(await dockerPack.create(config, packCtx));
    await container('tm-sleeper', ['sleep', '3600']);
  });

  afterAll(async () => {
    const mine = await docker.listContainers({ all: true, filters: { name: [suffix] } });
    await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  });

  it('offers every tool with its risk level and a strict JSON Schema', () => {
    const catalog = Object.fromEntries(tools.map((t) => [t.name, toCatalogTool(t)]));
    const annotations = (name: string) => catalog[name].annotations;
    for (const name of ['docker_list_containers', 'docker_inspect_container', 'docker_container_logs', 'docker_container_stats', 'docker_list_images']) {
      expect(annotations(name)).toMatchObject({ risk: 'low', readOnlyHint: true, destructiveHint: false });
    }
    for (const name of ['docker_start_container', 'docker_stop_container', 'docker_restart_container', 'docker_run_container']) {
      expect(annotations(name)).toMatchObject({ risk: 'medium', readOnlyHint: false, destructiveHint: false });
    }
    expect(annotations('docker_remove_container')).toMatchObject({ risk: 'high', destructiveHint: true });
    const run = catalog.docker_run_container.inputSchema as { properties: Record<string, unknown>; additionalProperties: boolean };
    expect(Object.keys(run.properties).sort()).toEqual(['autoRemove', 'command', 'env', 'image', 'name']);
    expect(run.additionalProperties).toBe(false);
    expect(catalog.docker_container_logs.inputSchema).toMatchObject({ properties: { tail: { maximum: 50, default: 50 } } });
  });

  it('leaves docker_run_container out when no image is allowed', async () => {
    const names = toolsOf(await dockerPack.create(DockerConfigSchema.parse({ socketPath }), packCtx)).map((t) => t.name);
    expect(names).not.toContain('docker_run_container');
    expect(names).toContain('docker_list_containers');
  });

  it('lists running containers, and stopped ones with all', async () => {
    const exited = await container('tm-exited', ['true']);
    await exited.wait();
    const running = await call(tools, 'docker_list_containers', {});
    expect(running.containers).toContainEqual(expect.objectContaining({ name: sleeper, image, state: 'running' }));
    expect(running.containers.map((c: { name: string }) => c.name)).not.toContain(`tm-exited-${suffix}`);
    const all = await call(tools, 'docker_list_containers', { all: true });
    expect(all.containers).toContainEqual(expect.objectContaining({ name: `tm-exited-${suffix}`, state: 'exited' }));
  });

  it('inspects a container as a compact summary without its environment', async () => {
    const s = await call(tools, 'docker_inspect_container', { container: sleeper });
    expect(s).toMatchObject({
      name: sleeper, image, command: ['sleep', '3600'], networkMode: 'none', restartCount: 0, mounts: [], ports: [],
      state: { status: 'running', running: true },
    });
    expect(s.id).toMatch(/^[0-9a-f]{12}$/);
    expect(JSON.stringify(s)).not.toMatch(/PATH=/);
    const byId = await call(tools, 'docker_inspect_container', { container: s.id });
    expect(byId.name).toBe(sleeper);
    expect((await call(tools, 'docker_inspect_container', { container: `/${sleeper}` })).id).toBe(s.id);
  });

  it('names a missing container in the error', async () => {
    const err = await callError(tools, 'docker_inspect_container', { container: `nope-${suffix}` });
    expect(err.code).toBe('EXECUTION_FAILED');
    expect(err.message).toContain(`no container named or with id "nope-${suffix}"`);
    expect(err.details).toEqual({ container: `nope-${suffix}` });
    expect(() => tools[0].input.parse({ all: true, extra: 1 })).toThrow();
    const inspectTool = tools.find((t) => t.name === 'docker_inspect_container')!;
    expect(inspectTool.input.safeParse({ container: '../images/json' }).success).toBe(false);
  });

  it('stops, starts and restarts a container; repeating stop or start changes nothing', async () => {
    const c = await container('tm-cycle', ['sleep', '3600']);
    const name = `tm-cycle-${suffix}`;
    const stopped = await call(tools, 'docker_stop_container', { container: name, timeoutSeconds: 0 });
    expect(stopped).toMatchObject({ container: name, changed: true, state: 'exited' });
    expect((await c.inspect()).State.Running).toBe(false);
    expect(await call(tools, 'docker_stop_container', { container: name })).toMatchObject({ changed: false, state: 'exited' });

    const startedOnce = await call(tools, 'docker_start_container', { container: name });
    expect(startedOnce).toMatchObject({ changed: true, state: 'running' });
    expect((await c.inspect()).State.Running).toBe(true);
    expect(await call(tools, 'docker_start_container', { container: name })).toMatchObject({ changed: false, state: 'running' });

    const restarted = await call(tools, 'docker_restart_container', { container: name, timeoutSeconds: 0 });
    expect(restarted).toMatchObject({ changed: true, state: 'running' });
    expect(Date.parse(restarted.startedAt)).toBeGreaterThan(Date.parse(startedOnce.startedAt));
    expect((await c.inspect()).State.StartedAt).toBe(restarted.startedAt);
  });

  it('changes nothing in a dry run but still checks the target', async () => {
    const before = (await docker.getContainer(sleeper).inspect()).State;
    const dry = { dryRun: true };
    expect(await call(tools, 'docker_stop_container', { container: sleeper }, dry))
      .toEqual({ dryRun: true, wouldDo: `stop container ${sleeper} (running)` });
    expect(await call(tools, 'docker_restart_container', { container: sleeper }, dry))
      .toEqual({ dryRun: true, wouldDo: `restart container ${sleeper} (running)` });
    expect(await call(tools, 'docker_remove_container', { container: sleeper, force: true }, dry))
      .toEqual({ dryRun: true, wouldDo: `remove container ${sleeper} (running)` });
    const after = (await docker.getContainer(sleeper).inspect()).State;
    expect(after).toMatchObject({ Running: true, StartedAt: before.StartedAt });

    const plan = await call(tools, 'docker_run_container', { image, name: `tm-dry-${suffix}` }, dry);
    expect(plan).toMatchObject({ dryRun: true, wouldDo: `run ${image} as tm-dry-${suffix} with network none` });
    expect(await docker.listContainers({ all: true, filters: { name: [`tm-dry-${suffix}`] } })).toEqual([]);

    expect((await callError(tools, 'docker_start_container', { container: `nope-${suffix}` }, dry)).code).toBe('EXECUTION_FAILED');
    expect((await callError(tools, 'docker_run_container', { image: 'alpine:3' }, dry)).code).toBe('PERMISSION_DENIED');
  });

  it('returns the newest log lines, demultiplexed, with optional timestamps', async () => {
    const c = await container('tm-logs', ['sh', '-c', 'echo oops >&2; sleep 0.2; for i in 1 2 3 4 5; do echo line$i; done']);
    await c.wait();
    const name = `tm-logs-${suffix}`;
    expect(await call(tools, 'docker_container_logs', { container: name, tail: 2 }))
      .toEqual({ container: name, lines: 2, truncated: false, text: 'line4\nline5\n' });
    const all = await call(tools, 'docker_container_logs', { container: name });
    expect(all.text).toBe('oops\nline1\nline2\nline3\nline4\nline5\n');
    const stamped = await call(tools, 'docker_container_logs', { container: name, tail: 1, timestamps: true });
    expect(stamped.text).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z line5\n$/);
    const logsTool = tools.find((t) => t.name === 'docker_container_logs')!;
    expect(logsTool.input.safeParse({ container: name, tail: 51 }).success).toBe(false);

    const tty = await container('tm-tty', ['echo', 'from a tty'], { tty: true });
    await tty.wait();
    expect((await call(tools, 'docker_container_logs', { container: `tm-tty-${suffix}` })).text).toBe('from a tty\r\n');
  });

  it('samples stats of a running container and refuses a stopped one', async () => {
    const s = await call(tools, 'docker_container_stats', { container: sleeper });
    expect(s.container).toBe(sleeper);
    expect(s.cpuPercent).toBeGreaterThanOrEqual(0);
    expect(s.memoryUsageBytes).toBeGreaterThan(0);
    expect(s.memoryLimitBytes).toBeGreaterThan(s.memoryUsageBytes);
    expect(s.pids).toBe(1);
    const stopped = await container('tm-nostats', ['true']);
    await stopped.wait();
    const err = await callError(tools, 'docker_container_stats', { container: `tm-nostats-${suffix}` });
    expect(err.message).toContain('is exited; stats exist only for running containers');
  });

  it('runs an allowed image with network none and nothing from the call that widens access', async () => {
    const name = `tm-run-${suffix}`;
    const result = await call(tools, 'docker_run_container', { image, name, command: ['sleep', '30'], env: { GREETING: 'hi' } });
    expect(result).toMatchObject({ name, image, networkMode: 'none', state: 'running' });
    const info = await docker.getContainer(name).inspect();
    expect(info.HostConfig).toMatchObject({ NetworkMode: 'none', Privileged: false });
    expect(info.HostConfig.Binds ?? []).toEqual([]);
    expect(info.HostConfig.CapAdd ?? []).toEqual([]);
    expect(info.Config.Env).toContain('GREETING=hi');
    expect(info.Config.Labels).toMatchObject({ 'io.toolmesh.agent': 'pi', 'io.toolmesh.caller': 'tester' });

    const runTool = tools.find((t) => t.name === 'docker_run_container')!;
    for (const widening of [{ binds: ['/:/host'] }, { privileged: true }, { networkMode: 'host' }, { capAdd: ['SYS_ADMIN'] }, { devices: ['/dev/mem'] }]) {
      const parsed = runTool.input.safeParse({ image, ...widening });
      expect(parsed.success).toBe(false);
      expect(parsed.error?.issues[0].code).toBe('unrecognized_keys');
    }
  });

  it('refuses images outside the allowlist and reports an allowed image that is absent', async () => {
    const denied = await callError(tools, 'docker_run_container', { image: 'alpine:3' });
    expect(denied.code).toBe('PERMISSION_DENIED');
    expect(denied.message).toBe(`image "alpine:3" is not allowed on this agent; allowed images: ${image}, toolmesh/absent:test`);
    expect(denied.details).toEqual({ image: 'alpine:3', allowed: [image, 'toolmesh/absent:test'] });
    const absent = await callError(tools, 'docker_run_container', { image: 'toolmesh/absent:test' });
    expect(absent.code).toBe('EXECUTION_FAILED');
    expect(absent.message).toContain('not present on this engine');
  });

  it('applies the image profile from the config, which wins over the call', async () => {
    const config = DockerConfigSchema.parse({
      socketPath,
      images: [{ image, profile: { capAdd: ['NET_ADMIN'], env: ['MODE=profile'], binds: ['/tmp:/host-tmp:ro'] } }],
    });
    const profiled = toolsOf(await dockerPack.create(config, packCtx));
    const name = `tm-profile-${suffix}`;
    await call(profiled, 'docker_run_container', { image, name, command: ['sleep', '30'], env: { MODE: 'call', OTHER: 'x' } });
    const info = await docker.getContainer(name).inspect();
    expect(info.HostConfig).toMatchObject({ NetworkMode: 'none', CapAdd: ['NET_ADMIN'], Binds: ['/tmp:/host-tmp:ro'] });
    expect(info.Config.Env).toEqual(expect.arrayContaining(['MODE=profile', 'OTHER=x']));
    expect(info.Config.Env).not.toContain('MODE=call');
  });

  it('removes an exited autoRemove container by itself', async () => {
    const name = `tm-auto-${suffix}`;
    await call(tools, 'docker_run_container', { image, name, command: ['true'], autoRemove: true });
    const gone = async () => docker.getContainer(name).inspect().then(() => false, () => true);
    for (let i = 0; i < 50 && !(await gone()); i++) await new Promise((r) => setTimeout(r, 100));
    expect(await gone()).toBe(true);
  });

  it('removes a container: a running one only with force', async () => {
    await container('tm-remove', ['sleep', '3600']);
    const name = `tm-remove-${suffix}`;
    const refused = await callError(tools, 'docker_remove_container', { container: name });
    expect(refused.message).toBe(`container ${name} is running; stop it first (docker_stop_container) or pass force: true`);
    expect((await docker.getContainer(name).inspect()).State.Running).toBe(true);
    expect(await call(tools, 'docker_remove_container', { container: name, force: true })).toMatchObject({ container: name, removed: true });
    const err = await docker.getContainer(name).inspect().then(() => undefined, (e: { statusCode?: number }) => e);
    expect(err?.statusCode).toBe(404);
  });

  it('lists the images present', async () => {
    const { images } = await call(tools, 'docker_list_images', {});
    expect(images).toContainEqual(expect.objectContaining({ tags: [image], sizeBytes: expect.any(Number) }));
  });

  it('passes the call\'s abort signal to the engine request', async () => {
    const controller = new AbortController();
    controller.abort();
    const err = await call(tools, 'docker_list_containers', {}, { signal: controller.signal }).then(() => undefined, (e: Error) => e);
    expect(err?.name).toBe('AbortError');
  });
});
