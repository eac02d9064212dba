import { describe, expect, it } from 'vitest';
import { toolErrorResult } from '../../protocol';
import { MAX_PREVIEW_IMAGE_CHARS, MAX_PREVIEW_IMAGES, MAX_PREVIEW_TEXT_CHARS, resultPreview } from './tool-results';

const PNG = Buffer.from('\x89PNG\r\n\x1a\n tiny').toString('base64');

describe('resultPreview (what a chat card shows of a tool result)', () => {
  it('keeps png, jpeg, gif and webp images and leaves out SVG, other types, non-base64 data and oversized images', () => {
    const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)"/>').toString('base64');
    const big = 'A'.repeat(MAX_PREVIEW_IMAGE_CHARS + 4);
    const p = resultPreview({ content: [
      { type: 'text', text: 'photo taken' },
      { type: 'image', mimeType: 'image/png', data: PNG },
      { type: 'image', mimeType: 'image/svg+xml', data: svg },
      { type: 'image', mimeType: 'text/html', data: PNG },
      { type: 'image', mimeType: 'image/jpeg', data: 'not base64"><script>' },
      { type: 'image', mimeType: 'image/gif', data: big },
      { type: 'image', mimeType: 'image/webp', data: PNG },
    ] });
    expect(p).toEqual({ text: 'photo taken', images: [{ mimeType: 'image/png', data: PNG }, { mimeType: 'image/webp', data: PNG }], imagesOmitted: 4 });
  });

  it(`shows at most ${MAX_PREVIEW_IMAGES} images`, () => {
    const p = resultPreview({ content: Array.from({ length: MAX_PREVIEW_IMAGES + 2 }, () => ({ type: 'image' as const, mimeType: 'image/png', data: PNG })) });
    expect(p.images).toHaveLength(MAX_PREVIEW_IMAGES);
    expect(p.imagesOmitted).toBe(2);
  });

  it('gives a failure as CODE: message, structured content as JSON, and cuts long text', () => {
    expect(resultPreview(toolErrorResult('DENIED', 'denied by alice'))).toEqual({ text: 'DENIED: denied by alice', images: [], imagesOmitted: 0 });
    expect(resultPreview({ content: [], structuredContent: { up: 42 } }).text).toBe('{"up":42}');
    const long = resultPreview({ content: [{ type: 'text', text: 'x'.repeat(MAX_PREVIEW_TEXT_CHARS + 10) }] }).text;
    expect(long).toBe(`${'x'.repeat(MAX_PREVIEW_TEXT_CHARS)}…`);
  });
});
