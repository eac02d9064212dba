// The gstreamer pack on real GStreamer (Debian gstreamer1.0-tools and plugins): gst-inspect
// parsing, validation with suggestions and destination rules, and real gst-launch-1.0 processes —
// a live H.264 stream to a UDP socket on 127.0.0.1 that counts MPEG-TS packets, a recording into
// a recording path, an early failure, the instance limit, dry runs, and stopping.
import dgram from 'node:dgram';
import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import type { ToolContext, ToolDefinition } from '../../../protocol/tool';
import { systemBinary } from '../../../test/support/mosquitto';
import { until } from '../../../test/support/until';
import type { PackContext } from '../types';
import { GstConfigSchema, gstreamerPack } from './index';

const gst = systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools') && systemBinary('/usr/bin/gst-inspect-1.0', 'gstreamer1.0-tools');
const quiet = { info() {}, warn() {}, error() {} };
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-gst-'));
const rec = join(dir, 'rec');

function ctxOf(over: Partial<ToolContext> = {}): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {}, ...over };
}

/** Creates the pack with `config` (schema defaults applied); returns a caller of its tools and its close. */
async function pack(config: Record<string, unknown> = {}, events = new EventEmitter()) {
  const packCtx: PackContext = { agentId: 'encoder', log: quiet, events };
  const result = await gstreamerPack.create(GstConfigSchema.parse(config), packCtx);
  if ('unavailable' in result) throw new Error(result.unavailable);
  const tools = new Map<string, ToolDefinition>(result.tools.map((t) => [t.name, t]));
  const call = async (name: string, args: unknown = {}, over: Partial<ToolContext> = {}): Promise<any> => {
    const tool = tools.get(name);
    if (!tool) throw new Error(`no tool ${name}`);
    return tool.execute(tool.input.parse(args), ctxOf(over));
  };
  const fail = async (name: string, args: unknown = {}): Promise<ToolError> => {
    const err = await call(name, args).then(() => undefined, (e: unknown) => e);
    expect(err).toBeInstanceOf(ToolError);
    return err as ToolError;
  };
  return { tools, call, fail, close: result.close! };
}

/** Whether a process with this pid exists. */
function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('gstreamer pack config', () => {
  it('fills defaults and rejects unknown keys, relative recording paths and unknown profiles', () => {
    expect(GstConfigSchema.parse({})).toMatchObject({ profile: 'generic', allowedHosts: ['127.0.0.1'], recordingPaths: [], elements: [], maxInstances: 4, stopTimeoutMs: 5000 });
    expect(GstConfigSchema.safeParse({ allowedhosts: [] }).success).toBe(false);
    expect(GstConfigSchema.safeParse({ recordingPaths: ['rec'] }).success).toBe(false);
    expect(GstConfigSchema.safeParse({ profile: 'amlogic-s999' }).success).toBe(false);
  });

  it('is unavailable, with the reason, when gst-inspect-1.0 cannot run', async () => {
    const result = await gstreamerPack.create(GstConfigSchema.parse({ gstInspect: join(dir, 'no-gst-inspect-1.0') }), { agentId: 'e', log: quiet, events: new EventEmitter() });
    expect(result).toEqual({ unavailable: expect.stringMatching(/no-gst-inspect-1\.0 cannot run \(.*ENOENT.*\); install GStreamer's tools \(Debian: gstreamer1\.0-tools\)/) });
  });
});

describe.skipIf(!gst)('gstreamer pack on real GStreamer', () => {
  let p: Awaited<ReturnType<typeof pack>>;
  beforeAll(async () => {
    rmSync(rec, { recursive: true, force: true });
    writeFileSync(join(dir, 'outside.txt'), 'keep');
    await import('node:fs/promises').then((fs) => fs.mkdir(rec));
    // amlh264venc: allowed here but never installed on a test machine (Amlogic's vendor plugin)
    p = await pack({ recordingPaths: [rec], elements: ['amlh264venc'], inputs: [{ name: 'hdmi', description: 'simulated HDMI', pipeline: 'videotestsrc is-live=true' }] });
  });
  afterAll(async () => {
    await p?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('gst_get_element_info parses x264enc from gst-inspect-1.0', async () => {
    const info = await p.call('gst_get_element_info', { element: 'x264enc' });
    expect(info).toMatchObject({ element: 'x264enc', allowed: true, factory: { 'Klass': 'Codec/Encoder/Video', 'Long-name': 'x264 H.264 Encoder' }, plugin: { Name: 'x264' } });
    const prop = (n: string) => info.properties.find((x: any) => x.name === n);
    expect(prop('bitrate')).toMatchObject({ type: 'Unsigned Integer', writable: true, range: { min: '1', max: '2048000' }, default: '2048', description: 'Bitrate in kbit/sec' });
    expect(prop('tune')).toMatchObject({ type: 'Flags', typeName: 'GstX264EncTune' });
    expect(prop('tune').values.map((v: any) => v.nick)).toEqual(['stillimage', 'fastdecode', 'zerolatency']);
    expect(prop('speed-preset')).toMatchObject({ type: 'Enum', default: 'medium' });
    expect(prop('multipass-cache-file')).toMatchObject({ type: 'String', default: 'x264.log' });
    expect(info.padTemplates.map((t: any) => [t.direction, t.name, t.presence, t.caps[0].split(',')[0]]))
      .toEqual([['sink', 'sink', 'always', 'video/x-raw'], ['src', 'src', 'always', 'video/x-h264']]);
    expect(prop('bitrate').flags).toEqual(['readable', 'writable', 'changeable in NULL, READY, PAUSED or PLAYING state']);
    const capsfilter = await p.call('gst_get_element_info', { element: 'capsfilter' });
    expect(capsfilter.properties.find((x: any) => x.name === 'caps')).toMatchObject({ type: 'Caps', default: 'ANY', writable: true });
    const err = await p.fail('gst_get_element_info', { element: 'x264encc' });
    expect(err).toMatchObject({ code: 'INVALID_ARGUMENTS', message: expect.stringMatching(/did you mean "x264enc"/) });
  });

  it('gst_validate_pipeline suggests the element and property meant, and names the refused destinations', async () => {
    const v = (pipeline: string) => p.call('gst_validate_pipeline', { pipeline });
    const errorsOf = async (pipeline: string) => (await v(pipeline)).errors;
    expect(await errorsOf('videotestsrc ! x264encc ! fakesink')).toEqual([expect.objectContaining({ code: 'UNKNOWN_ELEMENT', position: 2, suggestion: 'x264enc', message: 'unknown element "x264encc"; did you mean "x264enc"?' })]);
    expect(await errorsOf('videotestsrc ! x264enc bitrat=15000 ! fakesink')).toEqual([expect.objectContaining({ code: 'UNKNOWN_PROPERTY', property: 'bitrat', suggestion: 'bitrate', message: 'x264enc has no property "bitrat"; did you mean "bitrate"?' })]);
    expect(await errorsOf('videotestsrc ! x264enc tune=zerolatncy ! fakesink')).toEqual([expect.objectContaining({ code: 'INVALID_VALUE', suggestion: 'zerolatency' })]);
    expect(await errorsOf('videotestsrc ! x264enc bitrate=9999999 ! fakesink')).toEqual([expect.objectContaining({ code: 'INVALID_VALUE', message: expect.stringMatching(/out of range/) })]);
    expect(await errorsOf('videotestsrc ! x264enc ! mpegtsmux ! udpsink host=10.0.0.5 port=5000')).toEqual([expect.objectContaining({ code: 'HOST_NOT_ALLOWED', element: 'udpsink', property: 'host' })]);
    expect(await errorsOf(`videotestsrc ! jpegenc ! filesink location=${join(dir, 'outside.txt')}`)).toEqual([expect.objectContaining({ code: 'PATH_NOT_ALLOWED', message: expect.stringMatching(/is outside the recording paths/) })]);
    expect(await errorsOf(`videotestsrc ! jpegenc ! filesink location=${rec}/../outside.txt`)).toEqual([expect.objectContaining({ code: 'PATH_NOT_ALLOWED' })]);
    expect(await errorsOf('videotestsrc ! jpegenc ! fdsink fd=1')).toEqual([expect.objectContaining({ code: 'ELEMENT_NOT_ALLOWED', element: 'fdsink', message: expect.stringMatching(/^element fdsink is installed but not on this board's allowlist/) })]);
    expect(await errorsOf('videotestsrc ! x264enc option-string=dump-yuv=/tmp/x ! fakesink')).toEqual([expect.objectContaining({ code: 'PROPERTY_NOT_ALLOWED', property: 'option-string' })]);
    expect(await errorsOf('videotestsrc ! amlh264venc ! fakesink')).toEqual([expect.objectContaining({ code: 'ELEMENT_NOT_INSTALLED', element: 'amlh264venc' })]);
    const ok = await v(`videotestsrc num-buffers = 1 ! "video/x-raw, width=320" ! jpegenc ! filesink location="${rec}/a b.jpg"`);
    expect(ok).toEqual({ valid: true, errors: [], argv: ['videotestsrc', 'num-buffers=1', '!', 'video/x-raw,width=320', '!', 'jpegenc', '!', 'filesink', `location="${rec}/a b.jpg"`], pipeline: expect.any(String) });
  });

  it('checks destinations left at their defaults against the allowed hosts', async () => {
    const strict = await pack({ allowedHosts: ['10.1.1.1'] });
    const r = await strict.call('gst_validate_pipeline', { pipeline: 'videotestsrc ! x264enc ! mpegtsmux ! udpsink port=5000' });
    expect(r.errors.map((e: any) => [e.code, e.property])).toEqual([['HOST_NOT_ALLOWED', 'host'], ['HOST_NOT_ALLOWED', 'clients']]);
    expect(r.errors[0].message).toMatch(/host defaults to localhost; set it/);
    await strict.close();
  });

  it('reports the board, its encoders, storage and video devices from real discovery', async () => {
    const board = await p.call('gst_get_board_info');
    expect(board).toMatchObject({ profile: { id: 'generic' }, gstreamer: expect.stringMatching(/^1\.\d+/), inputs: [{ name: 'hdmi', pipeline: 'videotestsrc is-live=true' }], allowedHosts: ['127.0.0.1'], running: 0 });
    expect(board.allowedElements).toEqual(expect.arrayContaining(['x264enc', 'udpsink', 'srtsink', 'filesink']));
    const enc = await p.call('gst_get_encoder_info');
    expect(enc.recommended).toMatchObject({ h264: 'x264enc', mjpeg: 'jpegenc' });
    expect(enc.recommended.h265).toBe(enc.encoders.find((e: any) => e.element === 'x265enc').installed ? 'x265enc' : null);
    expect(enc.encoders.find((e: any) => e.element === 'x264enc')).toMatchObject({ installed: true, allowed: true, hardware: false, bitrate: { property: 'bitrate', unit: 'kbit/s', range: { min: '1', max: '2048000' } } });
    expect(enc.encoders.find((e: any) => e.element === 'openh264enc')).toMatchObject({ installed: true, bitrate: { unit: 'bit/s', description: 'Bitrate (in bits per second)' } });
    const aml = await pack({ profile: 'amlogic-s905' });
    const amlEnc = await aml.call('gst_get_encoder_info', { codec: 'h264' });
    expect(amlEnc.encoders.find((e: any) => e.element === 'amlh264venc')).toMatchObject({ installed: false, allowed: true, hardware: true, verified: true, documented: { bitrate: expect.stringMatching(/kbit\/s/) } });
    expect(amlEnc.recommended).toEqual({ h264: 'x264enc' });
    await aml.close();
    const storage = await p.call('gst_check_storage');
    expect(storage.paths).toEqual([expect.objectContaining({ path: rec, exists: true, writable: true, totalBytes: expect.any(Number), availableBytes: expect.any(Number) })]);
    expect(storage.paths[0].totalBytes).toBeGreaterThan(0);
    const devices = await p.call('gst_list_video_devices');
    expect(Array.isArray(devices.devices)).toBe(true);
  });

  it('streams H.264 in MPEG-TS to a UDP socket on 127.0.0.1, then stops with end of stream and exit status 0', async () => {
    const sock = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => sock.bind(0, '127.0.0.1', resolve));
    let bytes = 0;
    let badDatagrams = 0;
    sock.on('message', (m) => {
      bytes += m.length;
      for (let i = 0; i < m.length; i += 188) if (m[i] !== 0x47 || m.length % 188 !== 0) badDatagrams++;
    });
    const pipeline = `videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=15/1 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=500 ! h264parse ! mpegtsmux alignment=7 ! udpsink host=127.0.0.1 port=${sock.address().port}`;
    const started = await p.call('gst_start_pipeline', { pipeline, name: 'udp-test' }, { callerId: 'nodered-1' });
    expect(started).toMatchObject({ id: expect.stringMatching(/^pipe-\d+$/), name: 'udp-test', state: 'playing', pid: expect.any(Number), startedBy: 'nodered-1' });
    await until(() => bytes > 20 * 188, 'MPEG-TS packets on the UDP socket');
    expect(badDatagrams).toBe(0);
    const listed = await p.call('gst_get_running_instances', { includeEnded: false });
    expect(listed.instances).toEqual([expect.objectContaining({ id: started.id, state: 'playing', pid: started.pid, exitCode: null })]);
    expect(listed.instances[0].log).toEqual(expect.arrayContaining(['Setting pipeline to PLAYING ...']));
    expect(await p.fail('gst_start_pipeline', { pipeline: 'videotestsrc is-live=true ! fakesink', name: 'udp-test' })).toMatchObject({ code: 'BUSY' });

    const dry = await p.call('gst_stop_pipeline', { id: 'udp-test' }, { dryRun: true });
    expect(dry).toEqual({ dryRun: true, wouldDo: `stop ${started.id} (playing, pid ${started.pid}): SIGINT, SIGKILL after 5000 ms` });
    expect(alive(started.pid)).toBe(true);
    const { stopped } = await p.call('gst_stop_pipeline', { id: started.id });
    expect(stopped).toEqual([expect.objectContaining({ id: started.id, state: 'stopped', exitCode: 0, signal: null, forced: false, changed: true })]);
    expect(stopped[0].log).toEqual(expect.arrayContaining(['EOS on shutdown enabled -- Forcing EOS on the pipeline']));
    expect(alive(started.pid)).toBe(false);
    const again = await p.call('gst_stop_pipeline', { id: started.id });
    expect(again.stopped[0]).toMatchObject({ state: 'stopped', changed: false });
    sock.close();
  });

  it('records into a recording path, and a dry run starts nothing', async () => {
    const file = join(rec, 'shot.jpg');
    const pipeline = `videotestsrc num-buffers=1 ! video/x-raw,width=320,height=240 ! jpegenc ! filesink location=${file}`;
    const dry = await p.call('gst_start_pipeline', { pipeline }, { dryRun: true });
    expect(dry).toMatchObject({ dryRun: true, wouldDo: `start gst-launch-1.0 -e -- ${pipeline.replace(/ {2,}/g, ' ')}` });
    const before = (await p.call('gst_get_running_instances')).instances.length;
    const inst = await p.call('gst_start_pipeline', { pipeline });
    expect((await p.call('gst_get_running_instances')).instances).toHaveLength(before + 1);
    await until(async () => (await p.call('gst_get_running_instances')).instances.find((i: any) => i.id === inst.id).state === 'exited', 'the recording to end');
    expect(readFileSync(file).subarray(0, 3)).toEqual(Buffer.from([0xff, 0xd8, 0xff]));
  });

  it('fails a pipeline that gst-launch refuses, with its error line, and refuses unsafe ones before starting', async () => {
    const err = await p.fail('gst_start_pipeline', { pipeline: 'videotestsrc ! video/x-raw,format=NOPE ! fakesink' });
    expect(err).toMatchObject({ code: 'EXECUTION_FAILED', details: { instance: { state: 'failed', exitCode: expect.any(Number) } } });
    expect(err.message).toMatch(/^the pipeline failed at start: (ERROR|WARNING)/);
    expect(await p.fail('gst_start_pipeline', { pipeline: 'videotestsrc ! x264enc ! mpegtsmux ! udpsink host=10.0.0.5' })).toMatchObject({ code: 'PERMISSION_DENIED', details: { errors: [expect.objectContaining({ code: 'HOST_NOT_ALLOWED' })] } });
    expect(await p.fail('gst_start_pipeline', { pipeline: 'videotestsrc num-buffers=1 ! jpegenc ! filesink location=/etc/x.jpg' })).toMatchObject({ code: 'PATH_NOT_ALLOWED' });
    expect(await p.fail('gst_start_pipeline', { pipeline: 'videotestsrc ! x264enc bitrat=1 ! fakesink' })).toMatchObject({ code: 'INVALID_ARGUMENTS' });
    expect(await p.fail('gst_stop_pipeline', { id: 'pipe-999' })).toMatchObject({ code: 'EXECUTION_FAILED', message: expect.stringMatching(/gst_get_running_instances lists them/) });
  });

  it('refuses a pipeline past maxInstances with BUSY, and stops its pipelines when the agent stops', async () => {
    const events = new EventEmitter();
    const small = await pack({ maxInstances: 1 }, events);
    const first = await small.call('gst_start_pipeline', { pipeline: 'videotestsrc is-live=true ! fakesink' });
    expect(await small.fail('gst_start_pipeline', { pipeline: 'videotestsrc is-live=true ! fakesink' })).toMatchObject({ code: 'BUSY', details: { running: [first.id] } });
    events.emit('stopping');
    await small.close();
    expect(alive(first.pid)).toBe(false);
    expect((await small.call('gst_get_running_instances')).instances[0]).toMatchObject({ id: first.id, state: 'stopped', exitCode: 0 });
  });
});
