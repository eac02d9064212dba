import { describe, expect, it } from 'vitest';
import { STATUS_TEXT_MAX, progressText } from './invoke';

describe('progressText', () => {
  it('shows the percentage with a total and the count without', () => {
    expect(progressText({ progressToken: 1, progress: 40, total: 100, message: 'encoding' }, 'gst')).toBe('encoding 40%');
    expect(progressText({ progressToken: 1, progress: 3 }, 'gst')).toBe('gst 3');
  });

  it("cuts an agent's long message to one short status line", () => {
    const text = progressText({ progressToken: 1, progress: 1, total: 2, message: 'x'.repeat(1_000_000) }, 'gst');
    expect(text.length).toBeLessThanOrEqual(STATUS_TEXT_MAX + 5);
    expect(text).toMatch(/^x+… 50%$/);
  });
});
