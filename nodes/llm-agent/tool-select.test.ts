import OpenAI from 'openai';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encode } from 'gpt-tokenizer';
import { buildMesh, offeredOf, type MeshAgent } from '../../scripts/mesh/catalog';
import { startFakeLlm, type FakeLlm } from '../../test/support/fake-llm';
import { runToolLoop, ToolLoopError, type LoopEvent, type ToolSource } from './tool-loop';
import { estimateTokens, FIND_TOOLS, MAX_TOOLS_LIMIT, ToolIndex, ToolSelection } from './tool-select';

let mesh300: MeshAgent[];
let mesh5: MeshAgent[];
beforeAll(async () => { [mesh300, mesh5] = await Promise.all([buildMesh(300), buildMesh(5)]); });

let llm: FakeLlm | undefined;
afterEach(async () => { await llm?.close(); llm = undefined; });

const indexOf = (mesh: MeshAgent[]) => {
  const index = new ToolIndex();
  index.sync(() => offeredOf(mesh), () => mesh.map((a) => ({ id: a.id, name: a.name, kind: a.kind })));
  return index;
};
const user = (content: string) => [{ role: 'user' as const, content }];

describe('tool selection', () => {
  it('offers every tool, as before, while the catalog fits the budget', () => {
    const index = indexOf(mesh5.slice(0, 1));
    const { tools, offer } = new ToolSelection(index, { maxTools: 128, maxTokens: 100_000 }).turn(user('hi'), 1);
    expect(tools.length).toBe(index.size);
    expect(offer.limited).toBe(false);
    expect(new Set(offer.tools.map((t) => t.reason))).toEqual(new Set(['all']));
    expect(tools.map((t) => t.function.name)).not.toContain(FIND_TOOLS);
  });

  it('over the budget: at most N tools within T tokens, find_tools last, the named agent\'s tools first', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 16, maxTokens: 2500 });
    const { tools, offer } = sel.turn(user('restart nginx on pi-garage-17'), 1);
    expect(tools.length).toBeLessThanOrEqual(16);
    expect(offer.tokens).toBeLessThanOrEqual(2500);
    expect(tools.at(-1)!.function.name).toBe(FIND_TOOLS);
    expect(offer.tools[0]).toMatchObject({ agent: 'pi-garage-17', tool: 'docker_restart_container', reason: 'match' });
    expect(offer.tools.at(-1)).toEqual({ name: FIND_TOOLS, reason: 'meta' });
  });

  it('keeps pinned and used tools, and loads what find_tools found into the next turn', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 20, maxTokens: 4000, pinned: ['desktop-study-1/desktop_get_device_info'] });
    sel.noteUsed('robot-nursery-1__robot_stop');
    const text = sel.find('photo from the nursery robot camera');
    expect(text.split('\n')[0]).toMatch(/^Found \d+ tools for "photo from the nursery robot camera"/);
    expect(text).toContain('robot-nursery-1__robot_take_photo');
    const { offer } = sel.turn(user('what is the cpu temperature of the greenhouse Pi'), 2);
    const reasons = offer.tools.map((t) => `${t.reason}:${t.name}`);
    expect(reasons[0]).toBe('pinned:desktop-study-1__desktop_get_device_info');
    expect(reasons[1]).toBe('used:robot-nursery-1__robot_stop');
    expect(reasons).toContain('found:robot-nursery-1__robot_take_photo');
    expect(reasons).toContain('match:pi-greenhouse-1__system_cpu_temperature');
    expect(offer.tools.length).toBeLessThanOrEqual(20);
  });

  it('never offers more than 128 tools, whatever the budget says', () => {
    const sel = new ToolSelection(indexOf(mesh300), { maxTools: 1000, maxTokens: 1e9 });
    expect(sel.turn(user('disk usage memory uptime system'), 1).tools.length).toBe(MAX_TOOLS_LIMIT);
  });

  it('ranks the best `limit` as the first `limit` of a longer ranking (ties in the same order)', () => {
    const index = indexOf(mesh300);
    const names = (q: string, limit: number) => index.rank(q, limit).map((h) => `${h.entry.name} ${h.score}`);
    for (const q of ['restart nginx on pi-garage-17', 'take a photo in the kitchen', 'disk usage memory uptime system', 'garage', 'stream hdmi to youtube']) {
      const long = names(q, 128);
      expect(long.length, q).toBeGreaterThan(20);
      for (const limit of [1, 5, 16, 40]) expect(names(q, limit), `${q} @${limit}`).toEqual(long.slice(0, limit));
    }
  });

  it('updates the index incrementally: removed tools go, unchanged revisions are not read again', () => {
    const index = indexOf(mesh5);
    let reads = 0;
    const all = offeredOf(mesh5);
    const without = all.filter((o) => o.agentId !== 'pi-garage-17');
    index.sync(() => { reads++; return without; }, undefined, 1);
    index.sync(() => { reads++; return without; }, undefined, 1);
    expect(reads).toBe(1);
    expect(index.rank('restart nginx on pi-garage-17', 50).some((h) => h.entry.offered.agentId === 'pi-garage-17')).toBe(false);
    index.sync(() => all, undefined, 2);
    expect(index.rank('restart nginx on pi-garage-17', 5)[0].entry.name).toBe('pi-garage-17__docker_restart_container');
  });

  it('updated agent by agent, it is the index a whole rebuild makes, and unchanged agents are not read', () => {
    type Offered = ReturnType<typeof offeredOf>[number];
    const info = (agents: MeshAgent[]) => () => agents.map((a) => ({ id: a.id, name: a.name, kind: a.kind }));
    // each unchanged agent's array counts its reads: the per-agent update must not walk them
    let reads = 0;
    const counted = (tools: Offered[]) => new Proxy(tools, { get(t, p, r) { if (p === Symbol.iterator || /^\d+$/.test(String(p))) reads++; return Reflect.get(t, p, r); } });
    const groups = new Map(mesh300.map((a) => [a.id, counted(a.tools.map((tool) => ({ agentId: a.id, tool })))] as [string, Offered[]]));
    const index = new ToolIndex();
    index.syncByAgent(() => groups, info(mesh300), 1);
    // one agent goes, one comes (another's tools under a new id), one changes a description, one re-publishes the same tools
    const next = new Map(groups);
    next.delete('pi-garage-17');
    const donor = mesh300.find((a) => a.kind === 'robot')!;
    next.set('robot-attic-99', donor.tools.map((tool) => ({ agentId: 'robot-attic-99', tool })));
    const [changed, same] = mesh300.filter((a) => a.id !== 'pi-garage-17' && a !== donor && a.kind === 'pi');
    next.set(changed.id, changed.tools.map((tool, i) => ({ agentId: changed.id, tool: i === 0 ? { ...tool, description: 'reboots the flux capacitor' } : tool })));
    next.set(same.id, same.tools.map((tool) => ({ agentId: same.id, tool: { ...tool } })));
    const agents = [...mesh300.filter((a) => a.id !== 'pi-garage-17'), { ...donor, id: 'robot-attic-99', name: 'attic robot' }];
    reads = 0;
    index.syncByAgent(() => next, info(agents), 2);
    expect(reads, 'reads of unchanged agents\' arrays').toBe(0);

    const rebuilt = new ToolIndex();
    rebuilt.sync(() => [...next.values()].flat(), info(agents));
    const summary = (ix: ToolIndex) => [...ix.entries()].map((e) => `${e.name} ${e.tokens} ${e.def.function.description}`).sort();
    expect(index.size).toBe(rebuilt.size);
    expect(index.totalTokens).toBe(rebuilt.totalTokens);
    expect(summary(index)).toEqual(summary(rebuilt));
    const ranked = (ix: ToolIndex, q: string) => ix.rank(q, 100_000).map((h) => `${h.entry.name} ${h.score.toFixed(6)}`).sort();
    for (const q of ['restart nginx on pi-garage-17', 'take a photo with the attic robot', 'flux capacitor', 'cpu temperature greenhouse']) {
      expect(ranked(index, q), q).toEqual(ranked(rebuilt, q));
    }
    expect(index.rank('flux capacitor', 1)[0].entry.name).toBe(`${changed.id}__${changed.tools[0].name}`);
    expect(index.resolve('pi-garage-17__docker_restart_container')).toBeUndefined();
    expect(index.mentions('ask the attic robot')).toEqual(new Set(['robot-attic-99']));
  });

  it('falls back to names for the whole catalog when an agent\'s plain names would collide', () => {
    const tool = (name: string) => ({ name, description: `${name} tool`, inputSchema: { type: 'object', properties: {} }, annotations: { risk: 'low' as const } });
    const index = new ToolIndex();
    const groups = new Map([['a', [{ agentId: 'a', tool: tool('x') }]]]);
    index.syncByAgent(() => groups, undefined, 1);
    // 'a__b' + 'c' and 'a' + 'b__c' have the same plain name a__b__c
    const next = new Map([...groups, ['a__b', [{ agentId: 'a__b', tool: tool('c') }]]]);
    next.set('a', [...groups.get('a')!, { agentId: 'a', tool: tool('b__c') }]);
    index.syncByAgent(() => next, undefined, 2);
    const names = [...index.entries()].map((e) => e.name);
    expect(names).toHaveLength(3);
    expect(new Set(names).size).toBe(3);
    expect(names.map((n) => index.resolve(n)).map((o) => `${o?.agentId}/${o?.tool.name}`).sort()).toEqual(['a/b__c', 'a/x', 'a__b/c']);
  });

  it('estimates definition tokens within 15% of gpt-tokenizer over a pack catalog', () => {
    const index = indexOf(mesh5);
    let est = 0;
    let real = 0;
    for (const e of index.entries()) {
      est += estimateTokens(e.def);
      real += encode(JSON.stringify(e.def)).length;
    }
    expect(Math.abs(est - real) / real).toBeLessThan(0.15);
  });
});

describe('runToolLoop with a tool budget (fake LLM)', () => {
  const source = (mesh: MeshAgent[], calls: string[]): ToolSource => ({
    listTools: () => offeredOf(mesh),
    listAgents: () => mesh.map((a) => ({ id: a.id, name: a.name, kind: a.kind })),
    call: async (agent, tool) => { calls.push(`${agent}/${tool}`); return { content: [{ type: 'text', text: 'ok' }] }; },
  });

  it('with 300 agents no request carries more than the budget; find_tools loads a tool the model then calls', async () => {
    llm = await startFakeLlm([
      { toolCalls: [{ id: 'f1', name: FIND_TOOLS, arguments: { query: 'video encoder in the attic HDMI capture running pipelines' } }] },
      { toolCalls: [{ id: 'c1', name: 'encoder-attic-1__gst_get_running_instances', arguments: {} }] },
      { content: 'Nothing runs.' },
    ]);
    const calls: string[] = [];
    const events: LoopEvent[] = [];
    const client = new OpenAI({ baseURL: llm.url, apiKey: 'x', maxRetries: 0 });
    const r = await runToolLoop({
      client, model: 'fake-model', messages: user('Is anything streaming right now?'), tools: source(mesh300, calls),
      toolBudget: { maxTools: 16, maxTokens: 2500 }, onEvent: (e) => events.push(e),
    });
    expect(r.answer).toBe('Nothing runs.');
    for (const req of llm.requests) expect(req.body.tools.length).toBeLessThanOrEqual(16);
    const secondNames = llm.requests[1].body.tools.map((t: any) => t.function.name);
    expect(secondNames).toContain('encoder-attic-1__gst_get_running_instances');
    const found = llm.requests[1].body.messages.find((m: any) => m.role === 'tool').content as string;
    expect(found).toMatch(/^Found \d+ tools/);
    expect(found.split('\n').length).toBeLessThanOrEqual(9);
    expect(calls).toEqual(['encoder-attic-1/gst_get_running_instances']);
    expect(r.toolsOffered.length).toBe(3);
    expect(r.toolsOffered[1].tools.find((t) => t.name === 'encoder-attic-1__gst_get_running_instances')!.reason).toBe('found');
    expect(r.toolsOffered[2].tools.find((t) => t.name === 'encoder-attic-1__gst_get_running_instances')!.reason).toBe('used');
    expect(events.filter((e) => e.type === 'tools-offered').length).toBe(3);
  });

  it.each([
    ['Ollama: HTTP 500 after truncation', 500, 'no user query found in messages'],
    ['OpenAI: HTTP 400', 400, "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens."],
  ])('turns a context-length refusal into CONTEXT_LENGTH naming the prompt size (%s)', async (_n, status, message) => {
    llm = await startFakeLlm([{ error: { status, message } }]);
    const client = new OpenAI({ baseURL: llm.url, apiKey: 'x', maxRetries: 0 });
    const err = await runToolLoop({ client, model: 'fake-model', messages: user('restart nginx on pi-garage-17'), tools: source(mesh300, []), toolBudget: { maxTools: 16, maxTokens: 2500 } })
      .catch((e) => e);
    expect(err).toBeInstanceOf(ToolLoopError);
    expect(err.code).toBe('CONTEXT_LENGTH');
    expect(err.message).toMatch(/about \d+ prompt tokens, \d+ of them in 16 tool definitions/);
    expect(err.message).toContain('OLLAMA_CONTEXT_LENGTH');
    expect(err.message).toContain('"max tool tokens"');
  });
});
