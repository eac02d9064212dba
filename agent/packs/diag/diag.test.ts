import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import { toCallToolResult, toCatalogTool, type ToolContext } from '../../../protocol/tool';
import { DiagConfigSchema, diagEcho, diagPack } from './index';

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
