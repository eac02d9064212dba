// The robot pack in a real agent (agent/runtime.ts) on an in-process aedes broker, called by a
// real RpcCaller: the photo (real gst-launch-1.0, videotestsrc) arrives as MCP image content;
// drives end by themselves, on robot_stop, when their caller is lost, when the broker goes away
// and when the agent stops; caps are enforced by the schema; dry runs change nothing.
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller, toolErrorOf, type CallToolResult } from '../../../protocol';
import { startBroker, type EmbeddedBroker } from '../../../protocol/broker';
import { validateConfig } from '../../config';
import { startAgent, type RunningAgent } from '../../runtime';
import { systemBinary } from '../../../test/support/mosquitto';
import { until } from '../../../test/support/until';

const GST = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools');
const MAX_BYTES = 256 * 1024;
const AGENT = 'robot';

let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
const log: string[] = [];
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-robot-agent-test-'));

/** Structured content of a successful call; fails the test with the error otherwise. */
function ok(r: CallToolResult): any {
  expect(r.isError, JSON.stringify(toolErrorOf(r))).toBe(false);
  return r.structuredContent;
}

const status = async () => ok(await caller.call(AGENT, 'robot_get_status', {}, { timeoutMs: 20_000 }));
const drive = (c: RpcCaller, args: Record<string, unknown>, opts = {}) => c.call(AGENT, 'robot_drive', args, opts);

beforeAll(async () => {
  broker = await startBroker({ port: 0 });
  const cfg = validateConfig({
    version: 1,
    agent: { id: AGENT, kind: 'robot' },
    broker: { url: broker.url },
    packs: { robot: { camera: { width: 320, height: 240, maxBytes: MAX_BYTES }, motors: { maxSpeed: 0.5, maxDurationMs: 60_000 } } },
  }, 'robot.yaml', dir);
  const line = (level: string) => (m: string) => { log.push(`${level}: ${m}`); };
  agent = await startAgent(cfg, { info: line('info'), warn: line('warn'), error: line('error') });
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'robot-test' });
  await caller.start();
  await until(() => caller.agent(AGENT)?.ready, 'the robot agent');
});

afterAll(async () => {
  await caller?.stop();
  await agent?.stop();
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('robot pack through the agent', () => {
  it('announces five tools with their risks, and the caps in the drive schema', () => {
    const tools = caller.agent(AGENT)!.catalog!.tools;
    expect(Object.fromEntries(tools.map((t) => [t.name, [t.annotations.risk, t.annotations.readOnlyHint]]))).toEqual({
      robot_take_photo: ['low', true],
      robot_show_emotion: ['low', false],
      robot_drive: ['medium', false],
      robot_stop: ['low', false],
      robot_get_status: ['low', true],
    });
    const props = (tools.find((t) => t.name === 'robot_drive')!.inputSchema as any).properties;
    expect(props.speed).toMatchObject({ maximum: 0.5, default: 0.3 });
    expect(props.durationMs).toMatchObject({ maximum: 60_000, default: 1000 });
  });

  it.skipIf(GST === null)('robot_take_photo: a JPEG within the cap arrives as image content over MQTT', async () => {
    const r = await caller.call(AGENT, 'robot_take_photo', {});
    const meta = ok(r);
    expect(r.content).toHaveLength(2);
    expect(r.content[0]).toMatchObject({ type: 'text', text: expect.stringMatching(/^Photo from videotestsrc pattern=ball \(simulated camera\): 320x240 JPEG, \d+ bytes, taken /) });
    const image = r.content[1] as { type: string; data: string; mimeType: string };
    expect(image).toMatchObject({ type: 'image', mimeType: 'image/jpeg' });
    const jpeg = Buffer.from(image.data, 'base64');
    expect(jpeg.subarray(0, 2).toString('hex'), 'SOI marker').toBe('ffd8');
    expect(jpeg.subarray(-2).toString('hex'), 'EOI marker').toBe('ffd9');
    expect(jpeg.length).toBeLessThanOrEqual(MAX_BYTES);
    expect(meta).toMatchObject({ mimeType: 'image/jpeg', width: 320, height: 240, bytes: jpeg.length, attempts: 1 });
  });

  it('robot_drive returns once the motors run, and they stop by themselves after the duration', async () => {
    const started = ok(await drive(caller, { direction: 'forward', speed: 0.4, durationMs: 300 }));
    expect(started).toMatchObject({ driving: true, direction: 'forward', speed: 0.4, durationMs: 300, until: expect.any(Number), replaced: false });
    const stopped = await until(async () => { const s = await status(); return s.motors.state === 'stopped' && s; }, 'the drive to end');
    expect(stopped.motors.lastStop).toMatchObject({ reason: 'duration-ended' });
    expect(stopped.battery).toMatchObject({ simulated: true, charging: false });
    expect(stopped.battery.percent).toBeLessThan(100);
  });

  it('robot_stop stops a long drive at once', async () => {
    ok(await drive(caller, { direction: 'left', durationMs: 60_000 }));
    expect((await status()).motors.state).toBe('driving');
    const r = ok(await caller.call(AGENT, 'robot_stop', {}));
    expect(r).toMatchObject({ stopped: true, wasDriving: true, motors: { state: 'stopped', lastStop: { reason: 'stop-requested' } } });
    expect((await status()).motors.state).toBe('stopped');
  });

  it('refuses speeds and durations over the caps with INVALID_ARGUMENTS, and nothing moves', async () => {
    for (const args of [{ direction: 'forward', speed: 0.51 }, { direction: 'forward', durationMs: 60_001 }, { direction: 'up' }, { direction: 'left', speed: 0 }]) {
      const err = toolErrorOf(await drive(caller, args));
      expect(err, JSON.stringify(args)).toMatchObject({ code: 'INVALID_ARGUMENTS' });
    }
    expect((await status()).motors.state).toBe('stopped');
  });

  it('dry runs of every tool with side effects preview and change nothing', async () => {
    ok(await caller.call(AGENT, 'robot_show_emotion', { emotion: 'sad' }));
    ok(await drive(caller, { direction: 'backward', speed: 0.2, durationMs: 60_000 }));
    const before = await status();
    const changing = caller.agent(AGENT)!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint).map((t) => t.name);
    const DRY_RUN_ARGS: Record<string, Record<string, unknown>> = {
      robot_show_emotion: { emotion: 'happy', text: 'hi' },
      robot_drive: { direction: 'forward', speed: 0.5, durationMs: 5000 },
      robot_stop: {},
    };
    expect(changing.sort()).toEqual(Object.keys(DRY_RUN_ARGS).sort());
    for (const tool of changing) {
      const r = await caller.call(AGENT, tool, DRY_RUN_ARGS[tool], { dryRun: true });
      expect(ok(r), tool).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
    }
    const after = await status();
    expect(after.face).toEqual({ emotion: 'sad' });
    expect(after.motors).toEqual(before.motors);
    ok(await caller.call(AGENT, 'robot_stop', {}));
  });

  it('stops the motors when the caller that started the drive is lost', async () => {
    const other = new RpcCaller({ connection: { url: broker.url }, callerId: 'robot-test-2' });
    await other.start();
    await until(() => other.agent(AGENT)?.ready, 'the agent, seen by the second caller');
    ok(await drive(other, { direction: 'right', durationMs: 60_000 }));
    expect((await status()).motors).toMatchObject({ state: 'driving', startedBy: 'robot-test-2' });
    // as a broker does with the caller's will when its connection dies (see protocol/rpc.test.ts)
    const raw = await mqtt.connectAsync(broker.url, { clientId: 'robot-test-raw' });
    await raw.publishAsync('toolmesh/v1/callers/robot-test-2/status', JSON.stringify({ state: 'lost', caller: 'robot-test-2' }), { qos: 1, retain: true });
    const s = await until(async () => { const x = await status(); return x.motors.state === 'stopped' && x; }, 'the motors to stop');
    expect(s.motors.lastStop).toMatchObject({ reason: 'caller-lost' });
    expect(log).toContain('warn: robot: motors stopped (caller-lost) while driving right for caller robot-test-2');
    await raw.publishAsync('toolmesh/v1/callers/robot-test-2/status', '', { qos: 1, retain: true });
    await raw.endAsync();
    await other.stop();
  });

  it('stops the motors when the agent loses its broker connection', async () => {
    ok(await drive(caller, { direction: 'forward', durationMs: 60_000 }));
    const port = broker.port;
    await broker.close();
    await until(() => log.includes('warn: robot: motors stopped (broker-offline) while driving forward for caller robot-test'), 'the broker-offline stop');
    // the agent reconnects with backoff (at most 5 s apart) and is subscribed again once it says online;
    // the caller holds the call until it is back itself
    const back = once(agent.server, 'online');
    broker = await startBroker({ port });
    await back;
    const s = await status();
    expect(s.motors).toMatchObject({ state: 'stopped', lastStop: { reason: 'broker-offline' } });
  });

  it('stops the motors when the agent stops', async () => {
    await until(() => caller.agent(AGENT)?.ready, 'the agent back online');
    ok(await drive(caller, { direction: 'backward', durationMs: 60_000 }));
    await agent.stop();
    expect(log).toContain('warn: robot: motors stopped (agent-stopping) while driving backward for caller robot-test');
  });
});
