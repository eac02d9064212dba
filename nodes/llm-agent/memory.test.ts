import { describe, expect, it } from 'vitest';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { estimateTokens, toMemory, trimHistory } from './memory';

const jpeg = Buffer.alloc(186_000, 7).toString('base64');

describe('toMemory', () => {
  it('replaces data-URL images with a short placeholder, naming the tool when labelled, without touching the input', () => {
    const input: ChatCompletionMessageParam[] = [
      { role: 'user', content: [{ type: 'text', text: 'Look:' }, { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBORw0KGgo=' } }, { type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] },
      { role: 'tool', tool_call_id: 'p', content: 'photo taken\n(1 image attached below)' },
      { role: 'user', content: [
        { type: 'text', text: 'Images from tool results: 1 image from pi/take_photo.' },
        { type: 'text', text: 'Image 1 of 1, from tool pi/take_photo (call p):' },
        { type: 'image_url', image_url: { url: `data:image/jpeg;base64,${jpeg}` } },
      ] },
    ];
    const copy = structuredClone(input);
    const stored = toMemory(input);
    expect(input).toEqual(copy);
    expect(stored[0].content).toEqual([
      { type: 'text', text: 'Look:' },
      { type: 'text', text: '[image image/png 8 B — not kept in memory]' },
      { type: 'image_url', image_url: { url: 'https://example.com/a.png' } },
    ]);
    expect(stored[1]).toBe(input[1]);
    expect((stored[2].content as any[])[2]).toEqual({ type: 'text', text: '[image image/jpeg 182 KB from tool pi/take_photo — not kept in memory]' });
    expect(JSON.stringify(stored).length).toBeLessThan(1_000);
  });
});

/** A conversation of `n` turns; odd turns use a tool (assistant tool_calls + 2 tool messages). */
function conversation(n: number): ChatCompletionMessageParam[] {
  const out: ChatCompletionMessageParam[] = [{ role: 'system', content: 'Be brief.' }];
  for (let t = 0; t < n; t++) {
    out.push({ role: 'user', content: `question ${t}` });
    if (t % 2) {
      out.push({ role: 'assistant', content: null, tool_calls: [{ id: `a${t}`, type: 'function', function: { name: 'f', arguments: '{}' } }, { id: `b${t}`, type: 'function', function: { name: 'g', arguments: '{}' } }] });
      out.push({ role: 'tool', tool_call_id: `a${t}`, content: 'ra' }, { role: 'tool', tool_call_id: `b${t}`, content: 'rb' });
      out.push({ role: 'user', content: [{ type: 'text', text: 'Images from tool results: 1 image from pi/cam.' }] });
    }
    out.push({ role: 'assistant', content: `answer ${t}` });
  }
  return out;
}

/** Fails unless every tool message answers the assistant tool_calls right before it, and every call is answered. */
function expectValid(messages: ChatCompletionMessageParam[]): void {
  let open: string[] = [];
  for (const m of messages) {
    if (m.role === 'tool') {
      expect(open).toContain(m.tool_call_id);
      open = open.filter((id) => id !== m.tool_call_id);
      continue;
    }
    expect(open).toEqual([]);
    if (m.role === 'assistant' && m.tool_calls) open = m.tool_calls.map((c) => c.id);
  }
  expect(open).toEqual([]);
}

describe('trimHistory', () => {
  it('drops the oldest turns first, keeps the system message and never splits a tool round', () => {
    const all = conversation(6);
    for (let max = 1; max <= all.length; max++) {
      const kept = trimHistory(all, { maxMessages: max });
      expect(kept[0]).toEqual({ role: 'system', content: 'Be brief.' });
      expectValid(kept);
      expect(kept[1].role).toBe('user');
      expect(kept[1].content).toMatch(/^question \d$/);
      expect(kept.at(-1)).toEqual({ role: 'assistant', content: 'answer 5' });
      expect(all.slice(-kept.length + 1)).toEqual(kept.slice(1));
      if (max >= 7) expect(kept.length).toBeLessThanOrEqual(max);
    }
    expect(trimHistory(all, { maxMessages: 4 })).toEqual([all[0], ...all.slice(-6)]);
  });

  it('bounds estimated tokens the same way', () => {
    const all = conversation(8);
    const total = all.reduce((s, m) => s + estimateTokens(m), 0);
    const kept = trimHistory(all, { maxTokens: Math.floor(total / 2) });
    expectValid(kept);
    expect(kept.reduce((s, m) => s + estimateTokens(m), 0)).toBeLessThanOrEqual(total / 2);
    expect(kept.length).toBeLessThan(all.length);
    expect(estimateTokens({ role: 'user', content: 'abcd' })).toBe(Math.ceil(JSON.stringify({ role: 'user', content: 'abcd' }).length / 4));
  });

  it('keeps json-mode result messages with their turn', () => {
    const all: ChatCompletionMessageParam[] = [
      { role: 'user', content: 'first' }, { role: 'assistant', content: 'ok' },
      { role: 'user', content: 'second' }, { role: 'assistant', content: '{"tool_calls":[]}' },
      { role: 'user', content: 'Tool results (one per call, in call order):\n\n...' }, { role: 'assistant', content: 'done' },
    ];
    expect(trimHistory(all, { maxMessages: 3 })).toEqual(all.slice(2));
  });

  it('returns a copy when nothing needs dropping', () => {
    const all = conversation(2);
    const kept = trimHistory(all, {});
    expect(kept).toEqual(all);
    expect(kept).not.toBe(all);
  });
});
