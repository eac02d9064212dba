// End to end with the GStreamer example as a user imports it (flows/gstreamer-streaming.json), in
// a real Node-RED (test helper) with a real encoder-board agent started from
// configs/encoder-board.yaml (pointed at the flow's embedded broker; its HDMI input simulated by
// videotestsrc, recordings in a temp dir) and the scripted OpenAI-compatible model:
// - "stream the HDMI input at 15 Mbps to SRT": the model reads the board and its encoders, writes
//   a pipeline with a misspelled property, reads validate_pipeline's "did you mean", validates the
//   corrected pipeline and starts it; a real SRT listener (gst-launch-1.0 srtsrc) on 127.0.0.1
//   receives MPEG-TS from the board's gst-launch-1.0;
// - the rows without an LLM: encoders, running pipelines, and "stop all pipelines", after which
//   the board's gst-launch process has exited with status 0.
// GStreamer (Debian gstreamer1.0-tools and plugins) is required in CI; elsewhere this skips.
import { spawn, type ChildProcess } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { systemBinary } from './support/mosquitto';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

const GST = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools');
const ROOT = join(__dirname, '..');
const flow = JSON.parse(readFileSync(join(ROOT, 'flows/gstreamer-streaming.json'), 'utf8')) as Array<Record<string, any>>;
const ASK = flow.find((n) => n.id === 'tm-gst-ask')!.payload as string;
/** The simulated HDMI input: what configs/encoder-board.yaml's v4l2src becomes in this test. */
const HDMI = 'videotestsrc is-live=true pattern=smpte ! video/x-raw,width=640,height=360,framerate=15/1';

/** Resolves with the next message node `id` receives; rejects after `ms`. */
function next(id: string, ms = 20_000): Promise<any> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    helper.getNode(id).once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

/** A UDP port on 127.0.0.1 that is free now (SRT runs over UDP). */
async function freeUdpPort(): Promise<number> {
  const s = dgram.createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

/**
 * The scripted model. Turn by turn, from the tool results it reads: board and encoders → a
 * pipeline with `bitrat` misspelled → validate → the suggestion applied → validate → start → answer.
 */
function model(srtPort: number) {
  let pipeline = '';
  return (body: any) => {
    const fn = (tool: string) => (body.tools ?? []).map((t: any) => t.function.name).find((n: string) => n.endsWith(`__${tool}`));
    const result = (id: string) => JSON.parse(body.messages.find((m: any) => m.role === 'tool' && m.tool_call_id === id).content);
    const last = body.messages.at(-1);
    if (last.role === 'user') {
      return { toolCalls: [{ id: 'board', name: fn('gst_get_board_info'), arguments: {} }, { id: 'enc', name: fn('gst_get_encoder_info'), arguments: { codec: 'h264' } }] };
    }
    switch (last.tool_call_id) {
      case 'enc': {
        const input = result('board').inputs.find((i: any) => i.name === 'hdmi').pipeline;
        const enc = result('enc');
        const encoder = enc.encoders.find((e: any) => e.element === enc.recommended.h264);
        const rate = encoder.bitrate.unit === 'kbit/s' ? 15_000 : 15_000_000;
        pipeline = `${input} ! ${encoder.element} tune=zerolatency speed-preset=ultrafast bitrat=${rate} ! h264parse ! mpegtsmux alignment=7 ! srtsink uri=srt://127.0.0.1:${srtPort}?mode=caller`;
        return { toolCalls: [{ id: 'check-1', name: fn('gst_validate_pipeline'), arguments: { pipeline } }] };
      }
      case 'check-1': {
        const bad = result('check-1').errors[0];
        pipeline = pipeline.replace(`${bad.property}=`, `${bad.suggestion}=`);
        return { toolCalls: [{ id: 'check-2', name: fn('gst_validate_pipeline'), arguments: { pipeline } }] };
      }
      case 'check-2':
        return { toolCalls: [{ id: 'start', name: fn('gst_start_pipeline'), arguments: { pipeline: result('check-2').pipeline, name: 'hdmi-srt' } }] };
      default: {
        const inst = result('start');
        return { content: `Streaming the HDMI input as ${inst.id} (${inst.state}) to srt://127.0.0.1:${srtPort}.` };
      }
    }
  };
}

describe.skipIf(GST === null)('GStreamer example: stream the HDMI input to SRT, then stop it', () => {
  let llm: FakeLlm;
  let agent: RunningAgent;
  let reg: ToolRegistryNode;
  let receiver: ChildProcess;
  let srtPort: number;
  const received: Buffer[] = [];
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-gst-flow-'));
  const bytes = () => received.reduce((n, b) => n + b.length, 0);

  beforeAll(async () => {
    srtPort = await freeUdpPort();
    // the receiver: an SRT listener that writes the raw MPEG-TS it gets to stdout (-q keeps gst-launch's own lines out)
    receiver = spawn(GST!, ['-q', 'srtsrc', `uri=srt://127.0.0.1:${srtPort}?mode=listener`, '!', 'fdsink', 'fd=1', 'sync=false'], { stdio: ['ignore', 'pipe', 'inherit'] });
    receiver.stdout!.on('data', (d: Buffer) => received.push(d));
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm(model(srtPort));
    const patched = patchFlow(flow as never, 0).map((n: any) => (n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n));
    await helper.load([registryNode, remoteToolNode, llmAgentNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js')], patched);
    reg = helper.getNode('tm-registry') as ToolRegistryNode;
    const port = await until(() => reg.brokerPort, 'the embedded broker');

    // configs/encoder-board.yaml as shipped, with the test broker, a simulated HDMI input and a temp recording path
    const cfg = parseYaml(readFileSync(join(ROOT, 'configs/encoder-board.yaml'), 'utf8'));
    expect(cfg.packs.gstreamer.allowedHosts).toEqual(['127.0.0.1']);
    expect(cfg.packs.gstreamer.inputs[0]).toMatchObject({ name: 'hdmi', pipeline: 'v4l2src device=/dev/video0 ! videoconvert' });
    cfg.broker.url = `mqtt://127.0.0.1:${port}`;
    cfg.packs.gstreamer.inputs[0].pipeline = HDMI;
    cfg.packs.gstreamer.recordingPaths = [dir];
    writeFileSync(join(dir, 'encoder-board.yaml'), toYaml(cfg));
    agent = await startAgent(loadConfig(join(dir, 'encoder-board.yaml')), { info() {}, warn() {}, error() {} });
    expect(agent.packs).toEqual(['gstreamer']);
    await until(() => reg.listTools().filter((t) => t.agentId === 'encoder').length === 9, 'the encoder board\'s tools in the registry');
  });

  afterAll(async () => {
    await agent?.stop();
    receiver?.kill('SIGKILL');
    await helper.unload();
    await llm?.close();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
    rmSync(dir, { recursive: true, force: true });
  });

  it('calls agent "encoder", as configs/encoder-board.yaml names it', () => {
    for (const n of flow.filter((x) => x.type === 'toolmesh-remote-tool')) expect(n.agent).toBe('encoder');
    expect(loadConfig(join(ROOT, 'configs/encoder-board.yaml')).agent.id).toBe('encoder');
  });

  it('"stream HDMI to SRT": validate with a typo, read the suggestion, validate again, start; the SRT receiver gets MPEG-TS', async () => {
    const answered = next('tm-gst-answer');
    await helper.request().post('/inject/tm-gst-ask').expect(200);
    const msg = await answered;
    expect(llm.requests[0].body.messages.at(-1)).toEqual({ role: 'user', content: ASK });
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool, c.ok])).toEqual([
      ['encoder', 'gst_get_board_info', true], ['encoder', 'gst_get_encoder_info', true],
      ['encoder', 'gst_validate_pipeline', true], ['encoder', 'gst_validate_pipeline', true], ['encoder', 'gst_start_pipeline', true],
    ]);
    // what the model read after its first pipeline: the misspelled property and the suggestion
    const firstCheck = JSON.parse(llm.requests[2].body.messages.find((m: any) => m.tool_call_id === 'check-1').content);
    expect(firstCheck).toMatchObject({ valid: false, errors: [{ code: 'UNKNOWN_PROPERTY', element: 'x264enc', property: 'bitrat', suggestion: 'bitrate', message: 'x264enc has no property "bitrat"; did you mean "bitrate"?' }] });
    const secondCheck = JSON.parse(llm.requests[3].body.messages.find((m: any) => m.tool_call_id === 'check-2').content);
    expect(secondCheck).toMatchObject({ valid: true, errors: [] });
    expect(secondCheck.argv).toEqual(expect.arrayContaining(['videotestsrc', 'x264enc', 'bitrate=15000', 'srtsink', `uri=srt://127.0.0.1:${srtPort}?mode=caller`]));
    expect(msg.payload).toMatch(new RegExp(`^Streaming the HDMI input as pipe-\\d+ \\(playing\\) to srt://127\\.0\\.0\\.1:${srtPort}\\.$`));

    await until(() => bytes() >= 50 * 188, 'MPEG-TS from the board at the SRT receiver');
    const ts = Buffer.concat(received);
    const aligned = Array.from({ length: Math.floor(ts.length / 188) }, (_, i) => ts[i * 188]).every((b) => b === 0x47);
    expect(aligned, 'every 188-byte packet starts with the MPEG-TS sync byte').toBe(true);
  });

  it('the rows without an LLM: encoders, running pipelines, and "stop all pipelines" ends the stream with status 0', async () => {
    const enc = next('tm-gst-debug-encoders');
    await helper.request().post('/inject/tm-gst-inject-encoders').expect(200);
    expect((await enc).payload.recommended).toMatchObject({ h264: 'x264enc' });

    const listed = next('tm-gst-debug-instances');
    await helper.request().post('/inject/tm-gst-inject-instances').expect(200);
    const [inst] = (await listed).payload.instances;
    expect(inst).toMatchObject({ name: 'hdmi-srt', state: 'playing', pid: expect.any(Number), startedBy: reg.callerId, exitCode: null });
    expect(inst.pipeline).toContain(`srtsink uri=srt://127.0.0.1:${srtPort}?mode=caller`);
    expect(() => process.kill(inst.pid, 0)).not.toThrow();

    const stopped = next('tm-gst-debug-stop');
    await helper.request().post('/inject/tm-gst-inject-stop').expect(200);
    expect((await stopped).payload.stopped).toEqual([expect.objectContaining({ id: inst.id, state: 'stopped', exitCode: 0, forced: false, changed: true })]);
    expect(() => process.kill(inst.pid, 0)).toThrow();
  });
});
