import { EventEmitter } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { toCallToolResult, toCatalogTool, type ToolContext } from '../../../protocol/tool';
import { DIAG_SLEEP_MAX_MS, DiagConfigSchema, diagEcho, diagPack, makeDiagSleep } from './index';

const ctx: ToolContext = { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {} };

describe('diag pack', () => {
  it('offers diag_echo as a low-risk read-only tool', async () => {
    const result = await diagPack.create(DiagConfigSchema.parse({}), { agentId: 'pi', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() });
    expect(result).toEqual({ tools: [diagEcho] });
    expect(toCatalogTool(diagEcho)).toMatchObject({
      name: 'diag_echo',
      annotations: { risk: 'low', readOnlyHint: true, destructiveHint: false },
      inputSchema: { type: 'object', additionalProperties: false },
    });
    expect(DiagConfigSchema.safeParse({ verbose: true }).success).toBe(false);
  });

  it('echoes its arguments, text and any JSON data', async () => {
    const args = diagEcho.input.parse({ text: 'hi', data: { n: [1, 2, { deep: null }] } });
    const value = await diagEcho.execute(args, ctx);
    expect(value).toEqual({ echo: { text: 'hi', data: { n: [1, 2, { deep: null }] } } });
    expect(toCallToolResult(value).structuredContent).toEqual(value);
    expect(await diagEcho.execute(diagEcho.input.parse({}), ctx)).toEqual({ echo: {} });
    expect(diagEcho.input.safeParse({ text: 1 }).success).toBe(false);
    expect(diagEcho.input.safeParse({ other: 1 }).success).toBe(false);
  });
});

describe('diag_sleep (opt-in)', () => {
  const pctx = { agentId: 'pi', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() };

  it('is off by default, on with sleepTool, and recordFile needs sleepTool', async () => {
    expect(DiagConfigSchema.parse({})).toEqual({ sleepTool: false });
    const on = await diagPack.create(DiagConfigSchema.parse({ sleepTool: true }), pctx);
    expect('tools' in on && on.tools.map((t) => t.name)).toEqual(['diag_echo', 'diag_sleep']);
    const bad = DiagConfigSchema.safeParse({ recordFile: '/tmp/x' });
    expect(bad.success).toBe(false);
    expect(bad.error?.issues[0]).toMatchObject({ path: ['recordFile'], message: 'recordFile needs sleepTool: true' });
    expect(DiagConfigSchema.safeParse({ sleepTool: true, other: 1 }).success).toBe(false);
  });

  it('sleeps, records each execution before sleeping, and validates ms', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'diag-'));
    const file = join(dir, 'rec.jsonl');
    const tool = makeDiagSleep(file);
    expect(toCatalogTool(tool).timeoutMs).toBe(DIAG_SLEEP_MAX_MS + 10_000);
    const started = Date.now();
    const run = tool.execute(tool.input.parse({ ms: 120, tag: 't1' }), { ...ctx, callerId: 'c1', requestId: 'r-1' });
    expect(readFileSync(file, 'utf8')).toContain('"id":"r-1"'); // written before the sleep ends
    expect(await run).toEqual({ slept: 120, caller: 'c1', id: 'r-1', tag: 't1' });
    expect(Date.now() - started).toBeGreaterThanOrEqual(115);
    await tool.execute(tool.input.parse({ ms: 0 }), { ...ctx, callerId: 'c1', requestId: 7 });
    const lines = readFileSync(file, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toMatchObject([{ caller: 'c1', id: 'r-1', ms: 120, tag: 't1' }, { caller: 'c1', id: 7, ms: 0 }]);
    expect(typeof lines[0].ts).toBe('number');
    expect(tool.input.safeParse({ ms: -1 }).success).toBe(false);
    expect(tool.input.safeParse({ ms: DIAG_SLEEP_MAX_MS + 1 }).success).toBe(false);
    expect(tool.input.safeParse({ ms: 'soon' }).success).toBe(false);
    rmSync(dir, { recursive: true, force: true });
  });

  it('ends with CANCELLED when the call is cancelled', async () => {
    const tool = makeDiagSleep();
    const ac = new AbortController();
    const started = Date.now();
    const run = tool.execute({ ms: 5000 }, { ...ctx, signal: ac.signal });
    setTimeout(() => ac.abort('caller cancelled'), 30);
    await expect(run).rejects.toMatchObject({ name: 'ToolError', code: 'CANCELLED' });
    expect(Date.now() - started).toBeLessThan(1000);
    const pre = new AbortController();
    pre.abort();
    await expect(tool.execute({ ms: 5000 }, { ...ctx, signal: pre.signal })).rejects.toMatchObject({ code: 'CANCELLED' });
  });
});
