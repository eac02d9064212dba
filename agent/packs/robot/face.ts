/**
 * The robot's faces: one 16 × 8 pixel-art bitmap per emotion, shown as ASCII text and rendered
 * as a 128 × 64 PNG (each pixel 8 × 8, white on black, the size of a common SSD1306 OLED). The
 * caption is not drawn (no font here); tools report it beside the image.
 */
import { deflateSync } from 'node:zlib';

/** The emotions the face can show. */
export const EMOTIONS = ['happy', 'sad', 'surprised', 'angry', 'sleepy', 'neutral', 'thinking'] as const;
export type Emotion = (typeof EMOTIONS)[number];

/** Bitmap width and height, pixels. */
export const FACE_WIDTH = 16;
export const FACE_HEIGHT = 8;
/** Each bitmap pixel becomes a square of this many PNG pixels (PNG: 128 × 64). */
export const PNG_SCALE = 8;

/** `#` is a lit pixel, `.` a dark one; FACE_HEIGHT rows of FACE_WIDTH characters each. */
const BITMAPS: Record<Emotion, readonly string[]> = {
  happy: [
    '................',
    '................',
    '...##......##...',
    '..#..#....#..#..',
    '................',
    '..#..........#..',
    '...#........#...',
    '....########....',
  ],
  sad: [
    '................',
    '................',
    '..###......###..',
    '................',
    '................',
    '....########....',
    '...#........#...',
    '..#..........#..',
  ],
  surprised: [
    '................',
    '..##........##..',
    '.#..#......#..#.',
    '.#..#......#..#.',
    '..##........##..',
    '.......##.......',
    '......#..#......',
    '.......##.......',
  ],
  angry: [
    '.##..........##.',
    '...##......##...',
    '...##......##...',
    '................',
    '................',
    '....########....',
    '...#........#...',
    '................',
  ],
  sleepy: [
    '.............###',
    '..............#.',
    '.............###',
    '.####......####.',
    '................',
    '................',
    '......####......',
    '................',
  ],
  neutral: [
    '................',
    '................',
    '..##........##..',
    '..##........##..',
    '................',
    '................',
    '....########....',
    '................',
  ],
  thinking: [
    '...##.......##..',
    '...##.......##..',
    '................',
    '................',
    '................',
    '......#####.....',
    '................',
    '..........#.#.#.',
  ],
};

/** The face as text: FACE_HEIGHT lines, `#` lit and a space dark (trailing spaces dropped). */
export function faceAscii(emotion: Emotion): string {
  return BITMAPS[emotion].map((row) => row.replace(/\./g, ' ').trimEnd()).join('\n');
}

/** True when pixel (x, y) of the emotion's bitmap is lit. */
export function facePixel(emotion: Emotion, x: number, y: number): boolean {
  return BITMAPS[emotion][y]?.[x] === '#';
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

/** CRC-32 as PNG chunks use it (ISO 3309, PNG spec section 5.5). */
function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const byte of buf) c = CRC_TABLE[(c ^ byte) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** One PNG chunk: length, type, data, CRC over type and data. */
function chunk(type: string, data: Buffer): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt32BE(data.length, 0);
  head.write(type, 4, 'ascii');
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(Buffer.concat([head.subarray(4), data])), 0);
  return Buffer.concat([head, data, crc]);
}

/**
 * The face as a PNG (PNG spec, W3C 2003): 128 × 64, 8-bit greyscale, filter type 0 on every row,
 * lit pixels white (255) on black. About 300 bytes.
 */
export function facePng(emotion: Emotion): Buffer {
  const width = FACE_WIDTH * PNG_SCALE;
  const height = FACE_HEIGHT * PNG_SCALE;
  const raw = Buffer.alloc((width + 1) * height);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (facePixel(emotion, Math.floor(x / PNG_SCALE), Math.floor(y / PNG_SCALE))) raw[y * (width + 1) + 1 + x] = 255;
    }
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr[8] = 8; // bit depth
  ihdr[9] = 0; // colour type: greyscale
  return Buffer.concat([
    Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]),
    chunk('IHDR', ihdr),
    chunk('IDAT', deflateSync(raw)),
    chunk('IEND', Buffer.alloc(0)),
  ]);
}
