import { describe, expect, it } from 'vitest';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import { estimateTokens, MEMORY_LOW_WATER, toMemory, trimHistory } from './memory';

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

  it('with a low-water mark trims in steps: between two trims every run starts with the same messages', () => {
    const all = conversation(40);
    const max = 40;
    let stored: ChatCompletionMessageParam[] = [];
    let changedStarts = 0;
    let runs = 0;
    // one run per turn: the stored history plus the new turn, stored again trimmed (as conversation.ts does)
    for (let t = 0; t < 40; t++) {
      const start = stored.length ? stored[0] : undefined;
      const next = trimHistory([...stored, ...turnAt(all, t)], { maxMessages: max, lowWater: MEMORY_LOW_WATER });
      expectValid([{ role: 'system', content: 'x' }, ...next]);
      expect(next.length).toBeLessThanOrEqual(max + 6);
      // the next request sends what was stored: unchanged from its start unless this run trimmed
      if (start && next[0] !== start) {
        changedStarts++;
        expect(next.length, 'a trim goes down to the low-water mark (or the newest turn alone)').toBeLessThanOrEqual(Math.max(max * MEMORY_LOW_WATER, turnAt(all, t).length));
      }
      stored = next;
      runs++;
    }
    // trimming one turn per run would change the start in nearly every run once full
    const everyRun = trimRuns(all, max);
    expect(everyRun).toBeGreaterThan(15);
    expect(changedStarts).toBeLessThanOrEqual(everyRun / 3);
    expect(changedStarts).toBeGreaterThan(0);
    expect(runs).toBe(40);
  });
});

/** The messages of turn `t` of {@link conversation} (without the system message). */
function turnAt(all: ChatCompletionMessageParam[], t: number): ChatCompletionMessageParam[] {
  const body = all.slice(1);
  const starts = body.map((m, i) => (m.role === 'user' && typeof m.content === 'string' && m.content.startsWith('question ') ? i : -1)).filter((i) => i >= 0);
  return body.slice(starts[t], starts[t + 1] ?? body.length);
}

/** How many of the runs over `all` change the start of the stored history when trimming just enough. */
function trimRuns(all: ChatCompletionMessageParam[], max: number): number {
  let stored: ChatCompletionMessageParam[] = [];
  let changed = 0;
  for (let t = 0; t < 40; t++) {
    const start = stored[0];
    stored = trimHistory([...stored, ...turnAt(all, t)], { maxMessages: max });
    if (start && stored[0] !== start) changed++;
  }
  return changed;
}

