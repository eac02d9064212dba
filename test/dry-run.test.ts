// Dry runs through the real agent runtime, on the test Docker engine (test/support/global-setup.ts):
// every tool in the catalog that is not read-only answers a dry run with a `dryRun: true`
// preview and changes nothing on the engine; a high-risk dry run needs no approval while the
// real call does. A new tool with side effects fails this test until it gets dry-run arguments
// here (and honours `_meta.dryRun`).
import { randomBytes } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { RpcCaller, toolErrorOf, type CallEvent } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { until } from './support/until';

const dockerd = inject('dockerd');
if (!dockerd) {
  throw new Error('this test needs the test Docker engine: run it with vitest.config.mts, whose globalSetup starts one (Debian packages docker.io and busybox-static)');
}
const { socketPath, image } = dockerd;
const suffix = randomBytes(4).toString('hex');
const sleeper = `tm-dry-sleeper-${suffix}`;
const stopped = `tm-dry-stopped-${suffix}`;
const runName = `tm-dry-run-${suffix}`;
const docker = new Docker({ socketPath });

/** Dry-run arguments of each tool with side effects; a tool missing here fails the test. */
const DRY_RUN_ARGS: Record<string, Record<string, unknown>> = {
  docker_start_container: { container: stopped },
  docker_stop_container: { container: sleeper, timeoutSeconds: 0 },
  docker_restart_container: { container: sleeper, timeoutSeconds: 0 },
  docker_remove_container: { container: sleeper, force: true },
  docker_run_container: { image, name: runName, command: ['sleep', '30'] },
};

let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
const events: CallEvent[] = [];

/** What a dry run must not change: every container of this test with its state and start time. */
async function engineState(): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { name: [suffix] } });
  const states = await Promise.all(list.map(async (c) => {
    const s = (await docker.getContainer(c.Id).inspect()).State;
    return `${c.Names[0]} ${s.Status} ${s.StartedAt} ${s.FinishedAt}`;
  }));
  return states.sort();
}

beforeAll(async () => {
  const a = await docker.createContainer({ name: sleeper, Image: image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' } });
  await a.start();
  await docker.createContainer({ name: stopped, Image: image, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
  broker = await startBroker({ port: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-dry-run-test-'));
  const cfg = validateConfig({
    version: 1,
    agent: { id: 'drypi' },
    broker: { url: broker.url },
    packs: { docker: { socketPath, images: [{ image }] }, system: {}, diag: {} },
  }, 'dry.yaml', dir);
  agent = await startAgent(cfg, { info() {}, warn() {}, error() {} });
  agent.server.on('call', (e: CallEvent) => events.push(e));
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'drytest' });
  await caller.start();
  await until(() => caller.agent('drypi')?.ready, 'the agent');
});

afterAll(async () => {
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
  const mine = await docker.listContainers({ all: true, filters: { name: [suffix] } });
  await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
});

describe('dry runs through the agent', () => {
  it('has every pack in the catalog, and only docker tools change anything', () => {
    expect(agent.packs).toEqual(['docker', 'system', 'diag']);
    const tools = caller.agent('drypi')!.catalog!.tools;
    const changing = tools.filter((t) => !t.annotations.readOnlyHint).map((t) => t.name);
    expect(changing.sort()).toEqual(Object.keys(DRY_RUN_ARGS).sort());
  });

  it('answers each tool with side effects with a preview and changes nothing on the engine', async () => {
    const before = await engineState();
    expect(before).toHaveLength(2);
    const tools = caller.agent('drypi')!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint);
    for (const tool of tools) {
      const args = DRY_RUN_ARGS[tool.name];
      if (!args) throw new Error(`${tool.name} changes something but has no dry-run arguments in this test; add them, and make the tool honour _meta.dryRun`);
      const seen = events.length;
      const r = await caller.call('drypi', tool.name, args, { dryRun: true });
      expect(r.isError, `${tool.name}: ${JSON.stringify(r)}`).toBe(false);
      expect(r.structuredContent, tool.name).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
      expect(await until(() => events[seen], 'the call event')).toMatchObject({ tool: tool.name, dryRun: true, risk: tool.annotations.risk });
    }
    expect(await engineState()).toEqual(before);
    expect(await docker.listContainers({ all: true, filters: { name: [runName] } })).toEqual([]);
  });

  it('needs no approval for a high-risk dry run, and refuses the real call without one', async () => {
    const before = await engineState();
    const dry = await caller.call('drypi', 'docker_remove_container', { container: sleeper, force: true }, { dryRun: true });
    expect(dry.structuredContent).toEqual({ dryRun: true, wouldDo: `remove container ${sleeper} (running)` });
    const real = await caller.call('drypi', 'docker_remove_container', { container: sleeper, force: true });
    expect(toolErrorOf(real)).toMatchObject({ code: 'APPROVAL_REQUIRED', details: { refusal: 'approval-required' } });
    expect(await engineState()).toEqual(before);
  });
});
