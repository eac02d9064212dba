// The gstreamer pack inside the real agent runtime (as test/dry-run.test.ts does for docker):
// every tool with side effects answers a dry run with a preview and starts or stops nothing; a
// pipeline started over MQTT is stopped when the agent stops. And the runner's SIGKILL path, with
// a stand-in program that ignores SIGINT.
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller } from '../../../protocol';
import { startBroker, type EmbeddedBroker } from '../../../protocol/broker';
import { validateConfig } from '../../config';
import { startAgent, type RunningAgent } from '../../runtime';
import { systemBinary } from '../../../test/support/mosquitto';
import { until } from '../../../test/support/until';
import { PipelineRunner } from './instances';

const gst = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools') && systemBinary('/usr/bin/gst-inspect-1.0', 'gstreamer1.0-tools');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-gst-agent-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

/** Dry-run arguments of each tool with side effects; a tool missing here fails the test. */
const DRY_RUN_ARGS: Record<string, Record<string, unknown>> = {
  gst_start_pipeline: { pipeline: 'videotestsrc is-live=true ! fakesink', name: 'dry' },
  gst_stop_pipeline: { all: true },
};

describe.skipIf(!gst)('gstreamer pack in the agent runtime', () => {
  let broker: EmbeddedBroker;
  let agent: RunningAgent;
  let caller: RpcCaller;

  beforeAll(async () => {
    broker = await startBroker({ port: 0 });
    const cfg = validateConfig({ version: 1, agent: { id: 'encoder', kind: 'encoder-board' }, broker: { url: broker.url }, packs: { gstreamer: {} } }, 'encoder.yaml', dir);
    agent = await startAgent(cfg, { info() {}, warn() {}, error() {} });
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'gsttest' });
    await caller.start();
    await until(() => caller.agent('encoder')?.ready, 'the agent');
  });

  afterAll(async () => {
    await caller?.stop();
    await agent?.stop();
    await broker?.close();
  });

  it('offers the nine tools with their risks', () => {
    const tools = caller.agent('encoder')!.catalog!.tools;
    expect(Object.fromEntries(tools.map((t) => [t.name, t.annotations.risk]))).toEqual({
      gst_get_board_info: 'low', gst_list_video_devices: 'low', gst_check_storage: 'low', gst_get_encoder_info: 'low',
      gst_get_element_info: 'low', gst_validate_pipeline: 'low', gst_get_running_instances: 'low',
      gst_start_pipeline: 'medium', gst_stop_pipeline: 'low',
    });
    expect(tools.filter((t) => !t.annotations.readOnlyHint).map((t) => t.name).sort()).toEqual(Object.keys(DRY_RUN_ARGS).sort());
  });

  it('answers each tool with side effects with a preview and starts or stops nothing', async () => {
    const running = async () => (await caller.call('encoder', 'gst_get_running_instances', {})).structuredContent!.instances as any[];
    const live = await caller.call('encoder', 'gst_start_pipeline', { pipeline: 'videotestsrc is-live=true ! fakesink', name: 'live' });
    expect(live.isError).toBe(false);
    const before = await running();
    for (const tool of caller.agent('encoder')!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint)) {
      const args = DRY_RUN_ARGS[tool.name];
      if (!args) throw new Error(`${tool.name} changes something but has no dry-run arguments in this test; add them, and make the tool honour _meta.dryRun`);
      const r = await caller.call('encoder', tool.name, args, { dryRun: true });
      expect(r.isError, `${tool.name}: ${JSON.stringify(r)}`).toBe(false);
      expect(r.structuredContent, tool.name).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
    }
    const after = await running();
    expect(after.map((i) => [i.id, i.state, i.pid])).toEqual(before.map((i) => [i.id, i.state, i.pid]));
    expect(after).toEqual([expect.objectContaining({ name: 'live', state: 'playing' })]);
  });

  it('stops running pipelines when the agent stops', async () => {
    const [inst] = (await caller.call('encoder', 'gst_get_running_instances', { includeEnded: false })).structuredContent!.instances as any[];
    expect(alive(inst.pid)).toBe(true);
    await agent.stop();
    expect(alive(inst.pid)).toBe(false);
  });
});

describe('pipeline runner', () => {
  it('sends SIGKILL when the program ignores SIGINT past stopTimeoutMs, and reports it', async () => {
    const stubborn = join(dir, 'stubborn-gst-launch');
    writeFileSync(stubborn, '#!/bin/sh\ntrap "" INT\necho "Setting pipeline to PLAYING ..."\nexec sleep 60\n');
    chmodSync(stubborn, 0o755);
    const runner = new PipelineRunner({ gstLaunch: stubborn, maxInstances: 2, logLines: 50, stopTimeoutMs: 200, startWaitMs: 5000 });
    const inst = await runner.start(['videotestsrc', '!', 'fakesink'], { startedBy: 't' });
    expect(inst).toMatchObject({ state: 'playing', pipeline: 'videotestsrc ! fakesink', log: ['Setting pipeline to PLAYING ...'] });
    const stopped = await runner.stop(inst.id);
    expect(stopped).toMatchObject({ state: 'stopped', forced: true, signal: 'SIGKILL', exitCode: null, changed: true });
    expect(alive(inst.pid!)).toBe(false);
  });

  it('reports a program that cannot start as failed', async () => {
    const runner = new PipelineRunner({ gstLaunch: join(dir, 'no-such-gst-launch'), maxInstances: 1, logLines: 50, stopTimeoutMs: 200, startWaitMs: 5000 });
    const inst = await runner.start(['fakesink'], { startedBy: 't' });
    expect(inst).toMatchObject({ state: 'failed', pid: null, lastError: expect.stringMatching(/could not start: .*ENOENT/) });
    expect(runner.running()).toEqual([]);
  });
});
