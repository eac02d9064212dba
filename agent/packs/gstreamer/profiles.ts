/**
 * Board profiles: which video encoders a board has and which GStreamer elements a pipeline may
 * use on it. The profile only proposes; what is really installed comes from gst-inspect-1.0 at
 * run time, and gst-inspect's property list wins over the notes here.
 *
 * Sources:
 * - x264enc, x265enc, openh264enc: gst-inspect-1.0 1.22 (Debian bookworm) on this project's CI:
 *   x264enc/x265enc `bitrate` in kbit/s, openh264enc `bitrate` in bit/s.
 * - Amlogic `amlh264venc`, `amlh265venc`, `amlvenc`: Amlogic's gst-plugin-venc sources as mirrored
 *   at github.com/khadas/multimedia-gst-plugin-venc (h264-hcodec/, h265-wave420/, multienc-wave521/):
 *   `gop` (IDR interval, -1–1000, default 30), `framerate` (fps, 0–30, default 30), `bitrate`
 *   (kbit/s, 0–12000, default 2000), `encoder-buffer-size` (KiB, 1024–4096).
 * - `aml_h264enc` / `aml_h265enc`: names some Amlogic board documentation uses; we could not
 *   check them against vendor source, so they are marked `verified: false`.
 * - Raspberry Pi `v4l2h264enc` (bcm2835-codec, Pi 4 and earlier; the Pi 5 has no H.264 encoder):
 *   the bitrate goes through `extra-controls="controls,video_bitrate=<bit/s>"` (gst-plugins-good
 *   v4l2 documentation).
 */

/** One encoder a profile knows about. */
export interface EncoderProfile {
  element: string;
  codec: 'h264' | 'h265' | 'mjpeg';
  hardware: boolean;
  /** How the bitrate is set, and in which unit. */
  bitrate?: { property: string; unit: 'kbit/s' | 'bit/s'; note?: string };
  /** Key properties as the source above documents them (shown when gst-inspect cannot show the element). */
  properties?: Record<string, string>;
  /** false: element name and properties are unconfirmed; gst-inspect on the board decides. */
  verified: boolean;
  source: string;
}

/** A board profile: its encoders (best first) and the elements pipelines may use. */
export interface BoardProfile {
  id: string;
  description: string;
  encoders: EncoderProfile[];
  elements: string[];
}

/**
 * Elements every profile allows: test and V4L2 sources, converters, parsers, muxers, RTP
 * payloaders and the sinks whose destinations validate_pipeline checks (hosts, recording paths).
 * Left out on purpose: elements that read or write arbitrary files or run other elements by name
 * (multifilesink, queue2 with temp files, splitmuxsink's sink-factory, fdsink, shmsink ...).
 */
const BASE_ELEMENTS = [
  'videotestsrc', 'v4l2src',
  'queue', 'tee', 'capsfilter', 'videoconvert', 'videoscale', 'videorate', 'videoflip', 'videocrop',
  'timeoverlay', 'clockoverlay', 'textoverlay',
  'h264parse', 'h265parse', 'jpegparse',
  'mpegtsmux', 'matroskamux', 'mp4mux', 'flvmux',
  'rtph264pay', 'rtph265pay', 'rtpmp2tpay', 'rtpjpegpay',
  'udpsink', 'srtsink', 'tcpserversink', 'rtmpsink', 'rtmp2sink', 'filesink', 'fakesink',
];

const X264: EncoderProfile = {
  element: 'x264enc', codec: 'h264', hardware: false, verified: true, source: 'gst-inspect-1.0 1.22',
  bitrate: { property: 'bitrate', unit: 'kbit/s' },
  properties: { 'tune': 'zerolatency for live streams', 'speed-preset': 'ultrafast … veryslow', 'key-int-max': 'frames between key frames' },
};
const OPENH264: EncoderProfile = {
  element: 'openh264enc', codec: 'h264', hardware: false, verified: true, source: 'gst-inspect-1.0 1.22',
  bitrate: { property: 'bitrate', unit: 'bit/s' },
};
const X265: EncoderProfile = {
  element: 'x265enc', codec: 'h265', hardware: false, verified: true, source: 'gst-inspect-1.0 1.22',
  bitrate: { property: 'bitrate', unit: 'kbit/s' },
};
const JPEG: EncoderProfile = {
  element: 'jpegenc', codec: 'mjpeg', hardware: false, verified: true, source: 'gst-inspect-1.0 1.22',
  properties: { quality: '0–100' },
};

const AML_VENC_SOURCE = 'Amlogic gst-plugin-venc (github.com/khadas/multimedia-gst-plugin-venc)';
const AML_VENC_PROPERTIES = {
  bitrate: 'kbit/s, 0–12000, default 2000',
  gop: 'IDR frame interval in frames, -1–1000, default 30',
  framerate: 'fps, 0–30, default 30',
  'encoder-buffer-size': 'KiB, 1024–4096, default 2048',
};
const AML_UNVERIFIED = 'named by some Amlogic board documentation; not checked against vendor source, gst-inspect on the board decides';

/** Profile ids, as the config's `profile` names them. */
export const PROFILE_IDS = ['generic', 'amlogic-s905', 'raspberry-pi'] as const;
export type ProfileId = (typeof PROFILE_IDS)[number];

/** Every profile by id. */
export const PROFILES: Readonly<Record<ProfileId, BoardProfile>> = {
  generic: {
    id: 'generic',
    description: 'Any Linux board: software encoders installed with GStreamer (x264enc, openh264enc, x265enc, jpegenc)',
    encoders: [X264, OPENH264, X265, JPEG],
    elements: [...BASE_ELEMENTS, 'x264enc', 'openh264enc', 'x265enc', 'jpegenc'],
  },
  'amlogic-s905': {
    id: 'amlogic-s905',
    description: 'Amlogic S905-family board with the vendor hardware encoders (amlh264venc, amlh265venc, amlvenc); x264enc as fallback',
    encoders: [
      { element: 'amlh264venc', codec: 'h264', hardware: true, verified: true, source: AML_VENC_SOURCE,
        bitrate: { property: 'bitrate', unit: 'kbit/s' }, properties: AML_VENC_PROPERTIES },
      { element: 'amlvenc', codec: 'h264', hardware: true, verified: true, source: AML_VENC_SOURCE,
        bitrate: { property: 'bitrate', unit: 'kbit/s', note: 'H.264 or H.265 by the downstream caps (video/x-h264 or video/x-h265)' },
        properties: AML_VENC_PROPERTIES },
      { element: 'aml_h264enc', codec: 'h264', hardware: true, verified: false, source: AML_UNVERIFIED,
        properties: { bitrate: 'target bitrate (unit unconfirmed)', gop: 'key frame interval', framerate: 'fps' } },
      { element: 'amlh265venc', codec: 'h265', hardware: true, verified: true, source: AML_VENC_SOURCE,
        bitrate: { property: 'bitrate', unit: 'kbit/s' }, properties: AML_VENC_PROPERTIES },
      { element: 'aml_h265enc', codec: 'h265', hardware: true, verified: false, source: AML_UNVERIFIED },
      X264, JPEG,
    ],
    elements: [...BASE_ELEMENTS, 'amlh264venc', 'amlh265venc', 'amlvenc', 'aml_h264enc', 'aml_h265enc', 'x264enc', 'jpegenc'],
  },
  'raspberry-pi': {
    id: 'raspberry-pi',
    description: 'Raspberry Pi 4 or earlier: the V4L2 memory-to-memory H.264 encoder (v4l2h264enc); x264enc as fallback',
    encoders: [
      { element: 'v4l2h264enc', codec: 'h264', hardware: true, verified: true, source: 'gst-plugins-good v4l2 documentation',
        bitrate: { property: 'extra-controls', unit: 'bit/s', note: 'extra-controls="controls,video_bitrate=15000000"' } },
      X264, OPENH264, JPEG,
    ],
    elements: [...BASE_ELEMENTS, 'v4l2h264enc', 'x264enc', 'openh264enc', 'jpegenc'],
  },
};

/**
 * Encoders checked on every board besides the profile's own, so get_encoder_info also reports a
 * software encoder or a hardware one the profile does not name.
 */
export const COMMON_ENCODERS: EncoderProfile[] = [X264, OPENH264, X265, JPEG];
