// The gstreamer pack's parsing and policy helpers without GStreamer: the pipeline description
// subset, its argv form, destination rules on real files in a temp dir (.., symlinks), "did you
// mean" suggestions, value checks, and the v4l2-ctl and /dev/video* readers.
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { checkDestination, isRiskyProperty, normalizeHost } from './destinations';
import { listVideoDevices, parseV4l2Formats } from './discovery';
import { formatValue, parsePipeline, toArgv } from './pipeline';
import { editDistance, suggest, valueProblem } from './validate';
import { parseInspect, type PropertyInfo } from './inspect';

const argvOf = (text: string) => {
  const p = parsePipeline(text);
  expect(p.issues).toEqual([]);
  return toArgv(p.nodes);
};
const issuesOf = (text: string) => parsePipeline(text).issues.map((i) => i.message).join(' | ');

describe('pipeline descriptions', () => {
  it('parses elements, properties, caps, names and references into one argument each', () => {
    expect(argvOf('videotestsrc is-live=true ! video/x-raw,width=640,height=360 ! x264enc tune=zerolatency bitrate=2000 ! h264parse ! mpegtsmux ! udpsink host=127.0.0.1 port=5000'))
      .toEqual(['videotestsrc', 'is-live=true', '!', 'video/x-raw,width=640,height=360', '!', 'x264enc', 'tune=zerolatency', 'bitrate=2000',
        '!', 'h264parse', '!', 'mpegtsmux', '!', 'udpsink', 'host=127.0.0.1', 'port=5000']);
    expect(argvOf('videotestsrc ! tee name=t  t. ! queue ! fakesink  t.src_1 ! queue ! fakesink'))
      .toEqual(['videotestsrc', '!', 'tee', 'name=t', 't.', '!', 'queue', '!', 'fakesink', 't.src_1', '!', 'queue', '!', 'fakesink']);
  });

  it('normalizes spacing around = and after caps commas, and quotes values only when needed', () => {
    expect(argvOf('videotestsrc  pattern = ball ! "video/x-raw, width=320, framerate=15/1" ! timeoverlay text="Cam 1" ! fakesink'))
      .toEqual(['videotestsrc', 'pattern=ball', '!', 'video/x-raw,width=320,framerate=15/1', '!', 'timeoverlay', 'text="Cam 1"', '!', 'fakesink']);
    expect(argvOf("srtsink uri='srt://127.0.0.1:5000?mode=caller'")).toEqual(['srtsink', 'uri=srt://127.0.0.1:5000?mode=caller']);
    expect(formatValue('a b!c')).toBe('"a b!c"');
    expect(formatValue('/rec/x.ts')).toBe('/rec/x.ts');
  });

  it('refuses bins, URIs, options, child-proxy properties, backslashes and open quotes', () => {
    expect(issuesOf('( videotestsrc ! fakesink )')).toMatch(/"\(" is not an element/);
    expect(issuesOf('file:///etc/passwd ! fakesink')).toMatch(/URIs/);
    expect(issuesOf('--gst-plugin-path=/tmp/x videotestsrc ! fakesink')).toMatch(/options/);
    expect(issuesOf('splitmuxsink sink::location=/etc/x')).toMatch(/is not an element/);
    expect(issuesOf('fakesink name=a\\ b')).toMatch(/backslashes/);
    expect(issuesOf('fakesink name="abc')).toMatch(/quote is not closed/);
  });

  it('refuses misplaced links, caps and properties, duplicate names and unknown references', () => {
    expect(issuesOf('! fakesink')).toMatch(/needs an element/);
    expect(issuesOf('videotestsrc !')).toMatch(/ends with "!"/);
    expect(issuesOf('video/x-raw ! fakesink')).toMatch(/must sit between two "!"/);
    expect(issuesOf('videotestsrc ! video/x-raw')).toMatch(/must be followed by "!"/);
    expect(issuesOf('videotestsrc ! bitrate=5 fakesink')).toMatch(/must follow its element/);
    expect(issuesOf('videotestsrc name=a ! fakesink name=a')).toMatch(/two elements are named "a"/);
    expect(issuesOf('videotestsrc ! mux.')).toMatch(/"mux\." refers to no element/);
    expect(issuesOf('')).toMatch(/empty/);
    expect(issuesOf(Array.from({ length: 65 }, () => 'queue').join(' ! '))).toMatch(/65 elements/);
  });
});

describe('gst-inspect-1.0 text', () => {
  it('reads blurbs continued in column 0 and enum nicks with spaces (layouts of cc708overlay and qroverlay in 1.22)', () => {
    const text = [
      'Factory Details:', '  Rank                     none (0)', '  Long-name                Demo', '',
      'Element Properties:',
      '  font-desc           : Pango font description of font to be used for rendering.',
      'See documentation of pango_font_description_from_string for syntax.',
      '                        flags: readable, writable',
      '                        String. Default: null',
      '  correction          : error correction',
      '                        flags: readable, writable, changeable only in NULL or READY state',
      '                        Enum "GstCorrection" Default: 1, "Approx 15%"',
      '                           (0): Approx 7%        - Level L',
      '                           (1): Approx 15%       - Level M',
      '  width               : Width',
      '                        flags: readable',
      '                        Integer. Range: -1 - 250 Default: -1 ',
      '',
      'Element Signals:', '  "x" :  void user_function (GstElement* object);',
    ].join('\n');
    const info = parseInspect('demo', text);
    expect(info.factory).toEqual({ 'Rank': 'none (0)', 'Long-name': 'Demo' });
    expect(info.properties).toEqual([
      { name: 'font-desc', description: 'Pango font description of font to be used for rendering. See documentation of pango_font_description_from_string for syntax.', flags: ['readable', 'writable'], writable: true, type: 'String', default: null },
      { name: 'correction', description: 'error correction', flags: ['readable', 'writable', 'changeable only in NULL or READY state'], writable: true, type: 'Enum', typeName: 'GstCorrection', default: 'Approx 15%',
        values: [{ value: '0', nick: 'Approx 7%', description: 'Level L' }, { value: '1', nick: 'Approx 15%', description: 'Level M' }] },
      { name: 'width', description: 'Width', flags: ['readable'], writable: false, type: 'Integer', range: { min: '-1', max: '250' }, default: '-1' },
    ]);
  });
});

describe('suggestions and values', () => {
  it('suggests the closest name within a few edits', () => {
    expect(editDistance('bitrat', 'bitrate')).toBe(1);
    expect(editDistance('x264ecn', 'x264enc')).toBe(1);
    expect(suggest('x264encc', ['x264enc', 'openh264enc', 'jpegenc'])).toBe('x264enc');
    expect(suggest('bitrat', ['bitrate', 'bframes', 'byte-stream'])).toBe('bitrate');
    expect(suggest('completelydifferent', ['x264enc'])).toBeUndefined();
    expect(suggest('X264Enc', ['x264enc'])).toBe('x264enc');
  });

  it('checks values against the gst-inspect type', () => {
    const prop = (p: Partial<PropertyInfo>): PropertyInfo => ({ name: 'p', description: '', flags: ['writable'], writable: true, type: 'String', ...p });
    const uint = prop({ type: 'Unsigned Integer', range: { min: '1', max: '2048000' } });
    expect(valueProblem(uint, '15000')).toBeUndefined();
    expect(valueProblem(uint, '0')?.message).toMatch(/out of range \(range 1 - 2048000\)/);
    expect(valueProblem(uint, '15M')?.message).toMatch(/takes an integer/);
    expect(valueProblem(prop({ type: 'Unsigned Integer64', range: { min: '0', max: '18446744073709551615' } }), '18446744073709551615')).toBeUndefined();
    expect(valueProblem(prop({ type: 'Boolean' }), 'yes')).toBeUndefined();
    expect(valueProblem(prop({ type: 'Boolean' }), 'maybe')?.message).toMatch(/true or false/);
    const tune = prop({ type: 'Flags', values: [{ value: '0x00000004', nick: 'zerolatency', description: '' }, { value: '0x00000002', nick: 'fastdecode', description: '' }] });
    expect(valueProblem(tune, 'zerolatency+fastdecode')).toBeUndefined();
    expect(valueProblem(tune, 'zerolatncy')).toMatchObject({ suggestion: 'zerolatency' });
    expect(valueProblem(prop({ type: 'Object', typeName: 'GSocket' }), 'x')?.message).toMatch(/cannot be set/);
  });
});

describe('destinations', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-gst-dest-'));
  const rec = join(dir, 'rec');
  const outside = join(dir, 'outside');
  mkdirSync(rec);
  mkdirSync(outside);
  symlinkSync(outside, join(rec, 'escape'));
  writeFileSync(join(outside, 'victim'), 'x');
  symlinkSync(join(outside, 'victim'), join(rec, 'link.ts'));
  const policy = { allowedHosts: ['127.0.0.1', 'encoder.lan'], recordingPaths: [rec] };
  const path = (v: string, p = policy) => checkDestination({ kind: 'recording-path' }, 'location', v, p);
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('allows files inside the recording paths only, after resolving .. and symbolic links', async () => {
    expect(await path(join(rec, 'a.ts'))).toBeUndefined();
    expect(await path(join(rec, '..', 'outside', 'a.ts'))).toMatchObject({ code: 'PATH_NOT_ALLOWED', message: expect.stringMatching(/outside the recording paths/) });
    expect(await path(join(rec, 'escape', 'a.ts'))).toMatchObject({ code: 'PATH_NOT_ALLOWED' });
    expect(await path(join(rec, 'link.ts'))).toMatchObject({ message: expect.stringMatching(/symbolic link/) });
    expect(await path('a.ts')).toMatchObject({ message: expect.stringMatching(/absolute path/) });
    expect(await path(join(rec, 'missing', 'a.ts'))).toMatchObject({ message: expect.stringMatching(/does not exist/) });
    expect(await path(rec)).toMatchObject({ code: 'PATH_NOT_ALLOWED' });
    expect(await path(join(rec, 'a.ts'), { ...policy, recordingPaths: [] })).toMatchObject({ message: expect.stringMatching(/no recording paths/) });
  });

  it('allows network peers on the allowed hosts only', async () => {
    const host = (v: string) => checkDestination({ kind: 'host' }, 'host', v, policy);
    expect(await host('127.0.0.1')).toBeUndefined();
    expect(await host('LOCALHOST')).toBeUndefined();
    expect(await host('Encoder.LAN')).toBeUndefined();
    expect(await host('10.0.0.5')).toMatchObject({ code: 'HOST_NOT_ALLOWED', message: expect.stringMatching(/allowed hosts: 127\.0\.0\.1, encoder\.lan/) });
    const clients = (v: string) => checkDestination({ kind: 'clients' }, 'clients', v, policy);
    expect(await clients('127.0.0.1:5000,localhost:5001')).toBeUndefined();
    expect(await clients('127.0.0.1:5000,10.0.0.5:5001')).toMatchObject({ code: 'HOST_NOT_ALLOWED' });
    const srt = (v: string) => checkDestination({ kind: 'url', schemes: ['srt'], hostParams: ['localaddress'] }, 'uri', v, policy);
    expect(await srt('srt://127.0.0.1:5000?mode=caller')).toBeUndefined();
    expect(await srt('srt://:5000?mode=listener')).toMatchObject({ message: expect.stringMatching(/\(every interface\)/) });
    expect(await srt('srt://127.0.0.1:5000?mode=caller&localaddress=10.0.0.5')).toMatchObject({ code: 'HOST_NOT_ALLOWED' });
    expect(await srt('srt://user@10.0.0.5:5000')).toMatchObject({ code: 'INVALID_VALUE' });
    expect(await srt('udp://127.0.0.1:5000')).toMatchObject({ code: 'INVALID_VALUE' });
    expect(normalizeHost('[::1]')).toBe('::1');
    expect(await checkDestination({ kind: 'video-device' }, 'device', '/dev/video0', policy)).toBeUndefined();
    expect(await checkDestination({ kind: 'video-device' }, 'device', '/dev/sda', policy)).toMatchObject({ code: 'DEVICE_NOT_ALLOWED' });
  });

  it('names the properties that may reach files, addresses or devices', () => {
    for (const p of ['location', 'multipass-cache-file', 'option-string', 'localaddress', 'bind-address', 'host', 'uri', 'device', 'socket-path', 'temp-template', 'sink-factory', 'muxer-properties', 'fd', 'clients']) {
      expect(isRiskyProperty(p), p).toBe(true);
    }
    for (const p of ['bitrate', 'profile', 'tune', 'video-direction', 'pattern', 'is-live', 'port', 'name', 'key-int-max']) {
      expect(isRiskyProperty(p), p).toBe(false);
    }
  });
});

describe('video devices', () => {
  it('reads /dev/video<N> nodes in number order with their sysfs names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'toolmesh-gst-dev-'));
    const dev = join(dir, 'dev');
    const sys = join(dir, 'sys');
    for (const n of ['video10', 'video2', 'video0', 'videoX', 'sda']) {
      mkdirSync(dev, { recursive: true });
      writeFileSync(join(dev, n), '');
    }
    mkdirSync(join(sys, 'video2'), { recursive: true });
    writeFileSync(join(sys, 'video2', 'name'), 'USB3.0 HD Video Capture\n');
    const list = await listVideoDevices({ devDir: dev, sysDir: sys, v4l2ctl: join(dir, 'no-v4l2-ctl') });
    expect(list).toEqual([
      { device: join(dev, 'video0'), name: null, formats: null },
      { device: join(dev, 'video2'), name: 'USB3.0 HD Video Capture', formats: null },
      { device: join(dev, 'video10'), name: null, formats: null },
    ]);
    expect(await listVideoDevices({ devDir: join(dir, 'none') })).toEqual([]);
    rmSync(dir, { recursive: true, force: true });
  });

  it('parses v4l2-ctl --list-formats-ext', () => {
    const text = [
      'ioctl: VIDIOC_ENUM_FMT', '\tType: Video Capture', '',
      "\t[0]: 'YUYV' (YUYV 4:2:2)", '\t\tSize: Discrete 640x480', '\t\t\tInterval: Discrete 0.033s (30.000 fps)', '\t\t\tInterval: Discrete 0.067s (15.000 fps)',
      "\t[1]: 'MJPG' (Motion-JPEG, compressed)", '\t\tSize: Discrete 1920x1080', '\t\t\tInterval: Discrete 0.017s (60.000 fps)',
    ].join('\n');
    expect(parseV4l2Formats(text)).toEqual([
      { fourcc: 'YUYV', description: 'YUYV 4:2:2', sizes: [{ size: '640x480', fps: [30, 15] }] },
      { fourcc: 'MJPG', description: 'Motion-JPEG, compressed', sizes: [{ size: '1920x1080', fps: [60] }] },
    ]);
  });
});
