// The MQTT-triggered automation example (flows/motion-photo.json), with no LLM: a motion message
// published to the broker makes the robot agent (configs/robot.yaml, simulated backend, real
// GStreamer camera) take a photo, and the flow stores it as a JPEG file.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { loadConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode from '../nodes/tool-registry/tool-registry';
import { freePort, systemBinary } from './support/mosquitto';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

const ROOT = join(__dirname, '..');
const gst = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools');

describe.skipIf(!gst)('motion-photo.json: MQTT motion message → robot photo → file (skipped outside CI without GStreamer)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-motion-'));
  let agent: RunningAgent | undefined;
  afterAll(async () => {
    await agent?.stop();
    await helper.unload();
  });

  it('stores a JPEG for a motion message and ignores a "no motion" one', async () => {
    const port = await freePort();
    const flow = (JSON.parse(readFileSync(join(ROOT, 'flows/motion-photo.json'), 'utf8')) as Array<Record<string, any>>).map((n) => {
      if (n.type === 'toolmesh-tool-registry') return { ...n, port };
      if (n.type === 'mqtt-broker') return { ...n, port: String(port) };
      // store photos in the test's temp dir instead of Node-RED's working directory
      if (n.type === 'function') return { ...n, func: n.func.replace("'toolmesh-photos/", `'${dir}/`) };
      return n;
    });
    const stored = flow.find((n) => n.id === 'tm-motion-stored')!;
    stored.wires = [];
    flow.find((n) => n.id === 'tm-motion-file')!.wires = [['tm-motion-stored', 'out']];
    flow.push({ id: 'out', type: 'helper', z: stored.z, x: 0, y: 0 });
    // what passes the "motion detected?" switch
    flow.find((n) => n.id === 'tm-motion-switch')!.wires[0].push('passed');
    flow.push({ id: 'passed', type: 'helper', z: stored.z, x: 0, y: 0 });
    await helper.load([registryNode, remoteToolNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'),
      coreNode('function/10-switch.js'), coreNode('function/10-function.js'), coreNode('network/10-mqtt.js'), coreNode('storage/10-file.js')], flow, {});
    const reg = helper.getNode('tm-registry');
    await until(() => reg.brokerPort === port, 'the embedded broker');

    const cfg = parseYaml(readFileSync(join(ROOT, 'configs/robot.yaml'), 'utf8'));
    cfg.broker.url = `mqtt://127.0.0.1:${port}`;
    writeFileSync(join(dir, 'robot.yaml'), toYaml(cfg));
    agent = await startAgent(loadConfig(join(dir, 'robot.yaml')), { info() {}, warn() {}, error() {} });
    await until(() => reg.listAgents().some((a: any) => a.id === 'robot' && a.ready), 'the robot agent');

    const written: any[] = [];
    const passed: unknown[] = [];
    helper.getNode('out').on('input', (m: any) => written.push(m));
    helper.getNode('passed').on('input', (m: any) => passed.push(m.payload));
    // the mqtt in node subscribes once its broker connection is up
    await until(() => helper.getNode('tm-motion-broker').connected, 'the flow\'s MQTT connection');
    const sensor = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`);
    await sensor.publishAsync('home/hall/motion', 'off', { qos: 1 });
    await sensor.publishAsync('home/hall/motion', JSON.stringify({ motion: true }), { qos: 1 });
    await until(() => written.length === 1, 'the stored photo', 20_000);
    await sensor.endAsync();

    const files = readdirSync(dir).filter((f) => f.endsWith('.jpg'));
    expect(files).toHaveLength(1);
    const jpeg = readFileSync(join(dir, files[0]));
    expect(jpeg.subarray(0, 2).toString('hex')).toBe('ffd8');
    expect(jpeg.subarray(-2).toString('hex')).toBe('ffd9');
    expect(written[0].filename).toBe(join(dir, files[0]));
    expect(passed).toEqual([{ motion: true }]);
  });
});
