import { describe, expect, it } from 'vitest';
import { DEFAULT_MODEL, readSettings } from './settings';

describe('readSettings', () => {
  it('prefers the node, then TOOLMESH_LLM_*, then OPENAI_*, then defaults', () => {
    const env = { TOOLMESH_LLM_BASE_URL: 'http://tm/v1', OPENAI_BASE_URL: 'http://oa/v1', OPENAI_API_KEY: 'oa-key', TOOLMESH_LLM_MODEL: 'llama3' };
    expect(readSettings({ baseUrl: ' http://node/v1 ', model: 'm' }, { apiKey: 'node-key' }, env).settings)
      .toMatchObject({ baseURL: 'http://node/v1', apiKey: 'node-key', model: 'm', maxIterations: 8 });
    expect(readSettings({}, {}, env)).toEqual({
      settings: {
        baseURL: 'http://tm/v1', apiKey: 'oa-key', model: 'llama3', maxIterations: 8, maxParallelToolCalls: 4,
        mode: 'direct', approvalRisk: 'high', wiredTimeoutMs: 120_000, runTimeoutMs: 300_000, memoryMessages: 20, maxSessions: 1000, sessionIdleMs: 86_400_000, maxTools: 16, maxToolTokens: 2500, pinnedTools: [],
        vision: false, stream: false, toolMode: 'auto', progress: false,
      },
      problems: [],
    });
    expect(readSettings({}, {}, { OPENAI_BASE_URL: 'http://oa/v1' }).settings).toMatchObject({ baseURL: 'http://oa/v1', apiKey: undefined, model: DEFAULT_MODEL });
  });

  it('parses numbers from the editor and reports bad ones by field', () => {
    const ok = readSettings({ baseUrl: 'http://x/v1', maxIterations: '3', toolTimeoutMs: '1500', temperature: '0.2', systemPrompt: ' hi ' }, {}, {});
    expect(ok.settings).toMatchObject({ maxIterations: 3, toolTimeoutMs: 1500, temperature: 0.2, systemPrompt: 'hi' });
    const bad = readSettings({ baseUrl: 'http://x/v1', maxIterations: '0', toolTimeoutMs: '1.5', temperature: 'hot' }, {}, {});
    expect(bad.problems.map((p) => p.key === 'bad-field' && p.field)).toEqual(['maxIterations', 'toolTimeoutMs', 'temperature']);
    expect(bad.settings.maxIterations).toBe(8);
  });

  it('reads the mode, memory, limits and provider options, and refuses unknown choices', () => {
    const s = readSettings({ baseUrl: 'http://x/v1', mode: 'wired', approvalRisk: 'never', runTimeoutMs: '', memoryMessages: '0', toolMode: 'json', vision: true, stream: true, progress: true, contextStore: 'file' }, {}, {});
    expect(s.problems).toEqual([]);
    expect(s.settings).toMatchObject({ mode: 'wired', approvalRisk: undefined, runTimeoutMs: undefined, memoryMessages: 0, toolMode: 'json', vision: true, stream: true, progress: true, contextStore: 'file' });
    const bad = readSettings({ baseUrl: 'http://x/v1', mode: 'telepathic', approvalRisk: 'extreme', toolMode: 'xml' }, {}, {});
    expect(bad.problems.map((p) => p.key === 'bad-field' && p.field)).toEqual(['mode', 'approvalRisk', 'toolMode']);
  });

  it('reads the tool budget: max tools 1 to 128, tool tokens, pinned patterns split at commas and new lines', () => {
    const s = readSettings({ baseUrl: 'http://x/v1', maxTools: '40', maxToolTokens: 6000, pinnedTools: 'pi-garage-17/*, */uptime\n robot-kitchen-2/robot_move ' }, {}, {});
    expect(s.problems).toEqual([]);
    expect(s.settings).toMatchObject({ maxTools: 40, maxToolTokens: 6000, pinnedTools: ['pi-garage-17/*', '*/uptime', 'robot-kitchen-2/robot_move'] });
    const bad = readSettings({ baseUrl: 'http://x/v1', maxTools: 129, maxToolTokens: '50' }, {}, {});
    expect(bad.problems.map((p) => p.key === 'bad-field' && p.field)).toEqual(['maxTools', 'maxToolTokens']);
    expect(bad.settings).toMatchObject({ maxTools: 16, maxToolTokens: 2500 });
  });

  it('reads max parallel tool calls, 1 to 32 (default 4), and names the field when it is out of range', () => {
    expect(readSettings({ baseUrl: 'http://x/v1', maxParallelToolCalls: '12' }, {}, {}).settings.maxParallelToolCalls).toBe(12);
    expect(readSettings({ baseUrl: 'http://x/v1', maxParallelToolCalls: 1 }, {}, {}).settings.maxParallelToolCalls).toBe(1);
    for (const value of ['0', '33', '2.5', 'many']) {
      const bad = readSettings({ baseUrl: 'http://x/v1', maxParallelToolCalls: value }, {}, {});
      expect(bad.problems).toEqual([{ key: 'bad-field', field: 'maxParallelToolCalls', value, expected: 'a whole number from 1 to 32' }]);
      expect(bad.settings.maxParallelToolCalls).toBe(4);
    }
  });

  it('reads the session bounds: 1 to 1000000 conversations, 1 s to 365 days idle', () => {
    const s = readSettings({ baseUrl: 'http://x/v1', maxSessions: '50', sessionIdleMs: 3_600_000 }, {}, {});
    expect(s.problems).toEqual([]);
    expect(s.settings).toMatchObject({ maxSessions: 50, sessionIdleMs: 3_600_000 });
    const bad = readSettings({ baseUrl: 'http://x/v1', maxSessions: '0', sessionIdleMs: '999' }, {}, {});
    expect(bad.problems.map((p) => p.key === 'bad-field' && p.field)).toEqual(['maxSessions', 'sessionIdleMs']);
    expect(bad.settings).toMatchObject({ maxSessions: 1000, sessionIdleMs: 86_400_000 });
  });

  it('reports no endpoint when neither a base URL nor an API key is anywhere', () => {
    expect(readSettings({ model: 'm' }, {}, {}).problems).toEqual([{ key: 'no-endpoint' }]);
    expect(readSettings({}, {}, { OPENAI_API_KEY: 'k' }).problems).toEqual([]);
  });
});
