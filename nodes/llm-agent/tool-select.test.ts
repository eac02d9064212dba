import OpenAI from 'openai';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encode } from 'gpt-tokenizer';
import { buildMesh, offeredOf, type MeshAgent } from '../../scripts/mesh/catalog';
import { startFakeLlm, type FakeLlm } from '../../test/support/fake-llm';
import { runToolLoop, ToolLoopError, type LoopEvent, type ToolSource } from './tool-loop';
import { CALL_TOOL, estimateTokens, FIND_TOOLS, MAX_TOOLS_LIMIT, ToolIndex, ToolSelection, type ToolBlockState } from './tool-select';

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

  it('over the budget: at most N tools within T tokens, in canonical order, find_tools and call_tool last, the named agent\'s tools in', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 16, maxTokens: 2500 });
    const { tools, offer } = sel.turn(user('restart nginx on pi-garage-17'), 1);
    expect(tools.length).toBeLessThanOrEqual(16);
    expect(offer.tokens).toBeLessThanOrEqual(2500);
    expect(tools.slice(-2).map((t) => t.function.name)).toEqual([FIND_TOOLS, CALL_TOOL]);
    const names = tools.slice(0, -2).map((t) => t.function.name);
    expect(names).toEqual([...names].sort());
    expect(offer.tools).toContainEqual(expect.objectContaining({ agent: 'pi-garage-17', tool: 'docker_restart_container', reason: 'match' }));
    expect(offer.tools.at(-1)).toEqual({ name: CALL_TOOL, reason: 'meta' });
  });

  it('a block with one tool on many agents renders the repeats by reference, and its estimate counts what that saves', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 16, maxTokens: 2500 });
    const { tools, offer } = sel.turn(user('show a happy face on a robot'), 1);
    const emotion = tools.filter((t) => t.function.name.endsWith('__robot_show_emotion'));
    expect(emotion.length).toBeGreaterThan(2);
    const [first, ...rest] = emotion;
    expect(first.function.description).toMatch(/^Show a face/);
    const agent = first.function.name.slice(0, -'__robot_show_emotion'.length);
    const bare = JSON.parse(JSON.stringify(first.function.parameters), (k, v) => (k === 'description' ? undefined : v));
    expect(JSON.stringify(bare)).not.toBe(JSON.stringify(first.function.parameters));
    for (const t of rest) {
      expect(t.function.description).toBe(`Same as on ${agent}.`);
      // what a call and a grammar need, without the descriptions the first one carries
      expect(t.function.parameters).toEqual(bare);
    }
    const whole = tools.map((t) => index.entryByName(t.function.name)?.def ?? t);
    expect(offer.tokens).toBeLessThan(whole.reduce((n, t) => n + estimateTokens(t), 0));
    expect(encode(JSON.stringify(tools)).length).toBeLessThan(encode(JSON.stringify(whole)).length - 10 * rest.length);
    // the next turn sends the very same array
    expect(sel.turn(user('show a happy face on a robot'), 2).tools).toBe(tools);
  });

  it('keeps pinned and used tools; what find_tools finds comes back as definitions and does not change the block', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 20, maxTokens: 4000, pinned: ['desktop-study-1/desktop_get_device_info'] });
    sel.noteUsed('robot-nursery-1__robot_stop');
    const first = sel.turn(user('what is the cpu temperature of the greenhouse Pi'), 1);
    const reasons = first.offer.tools.map((t) => `${t.reason}:${t.name}`);
    expect(reasons).toContain('pinned:desktop-study-1__desktop_get_device_info');
    expect(reasons).toContain('used:robot-nursery-1__robot_stop');
    expect(reasons).toContain('match:pi-greenhouse-1__system_cpu_temperature');
    const text = sel.find('photo from the nursery robot camera');
    const lines = text.split('\n');
    expect(lines[0]).toMatch(/^Found \d+ tools for "photo from the nursery robot camera"\. Call one with call_tool/);
    // a definition exactly as the block would carry it
    const def = lines.slice(1).map((l) => (l.startsWith('{') ? JSON.parse(l) : undefined)).find((d) => d?.name === 'robot-nursery-1__robot_take_photo');
    expect(def).toEqual(index.entryByName('robot-nursery-1__robot_take_photo')!.def.function);
    const second = sel.turn([...user('what is the cpu temperature of the greenhouse Pi'), { role: 'user', content: 'and a photo from the nursery robot' }], 2);
    expect(second.tools).toBe(first.tools);
    expect(second.offer.tools).toEqual(first.offer.tools);
    expect(first.offer.tools.length).toBeLessThanOrEqual(20);
  });

  it('find_tools gives up to 8 definitions of tools not in the block, names the block\'s matches and 8 more; a search for a named one gives its definition', () => {
    const index = indexOf(mesh300);
    const sel = new ToolSelection(index, { maxTools: 16, maxTokens: 2500 });
    const block = sel.turn(user('restart nginx on pi-garage-17'), 1).offer.tools.map((t) => t.name);
    const { found, more } = sel.searchMore('restart a container on pi-garage-17');
    const fresh = found.filter((h) => !h.offered).map((h) => h.entry.name);
    expect(fresh.length).toBe(8);
    for (const n of fresh) expect(block).not.toContain(n);
    expect(found.filter((h) => h.offered).length).toBeGreaterThan(0);
    expect(more.length).toBe(8);
    const text = sel.find('restart a container on pi-garage-17');
    expect(text).toMatch(/Also matching, already in your tools \(call them directly\): pi-garage-17__/);
    expect(text).toContain(`- ${more[0].name}: `);
    expect(sel.search(more[0].name).find((h) => !h.offered)!.entry).toBe(more[0]);
  });

  it('a session\'s block stays byte for byte the same across runs and reconnects, and is chosen again only when a tool of it goes', () => {
    const groups = new Map<string, ReturnType<typeof offeredOf>>();
    for (const o of offeredOf(mesh300)) groups.set(o.agentId, [...(groups.get(o.agentId) ?? []), o]);
    const index = new ToolIndex();
    const agents = () => mesh300.map((a) => ({ id: a.id, name: a.name, kind: a.kind }));
    let revision = 0;
    index.syncByAgent(() => groups, agents, ++revision);
    const budget = { maxTools: 16, maxTokens: 2500 };
    const session: ToolBlockState = {};
    const block = (text: string) => JSON.stringify(new ToolSelection(index, budget, session).turn(user(text), 1).tools);
    const first = block('restart nginx on pi-garage-17');
    // later runs of the session, about other things: the same block
    expect(block('take a photo in the kitchen')).toBe(first);
    expect(block('how much memory is free on the study desktop')).toBe(first);
    // an agent of the block reconnects (its array is new, re-indexed at the end of the catalog order): the same block
    groups.set('pi-garage-17', groups.get('pi-garage-17')!.map((o) => ({ ...o })));
    index.syncByAgent(() => groups, agents, ++revision);
    expect(block('stream hdmi to youtube')).toBe(first);
    // another agent joins: the same block
    groups.set('pi-new-1', groups.get('pi-garage-17')!.map((o) => ({ ...o, agentId: 'pi-new-1' })));
    index.syncByAgent(() => groups, agents, ++revision);
    expect(block('restart nginx on pi-new-1')).toBe(first);
    // a fresh session asks about something else: another block
    expect(JSON.stringify(new ToolSelection(index, budget, {}).turn(user('take a photo in the kitchen'), 1).tools)).not.toBe(first);
    // an agent of the block goes: chosen again, its survivors kept
    const kept = JSON.parse(first).map((t: any) => t.function.name).filter((n: string) => n.startsWith('pi-garage-17__'));
    expect(kept.length).toBeGreaterThan(0);
    groups.delete('pi-garage-17');
    index.syncByAgent(() => groups, agents, ++revision);
    const again = JSON.parse(block('take a photo in the kitchen')).map((t: any) => t.function.name);
    expect(again.filter((n: string) => n.startsWith('pi-garage-17__'))).toEqual([]);
    const survivors = JSON.parse(first).map((t: any) => t.function.name).filter((n: string) => !n.startsWith('pi-garage-17__'));
    for (const n of survivors) expect(again).toContain(n);
  });

  it('offers every tool in canonical order while the catalog fits, whatever order agents connected in', () => {
    const one = indexOf(mesh5.slice(0, 2));
    const other = new ToolIndex();
    other.sync(() => [...offeredOf(mesh5.slice(0, 2))].reverse());
    const names = (index: ToolIndex) => new ToolSelection(index, { maxTools: 128, maxTokens: 1e6 }).turn(user('hi'), 1).tools.map((t) => t.function.name);
    expect(names(one)).toEqual(names(other));
    expect(names(one)).toEqual([...names(one)].sort());
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

  it('with 300 agents every request carries the same tools; find_tools returns a definition the model calls through call_tool', async () => {
    llm = await startFakeLlm([
      { toolCalls: [{ id: 'f1', name: FIND_TOOLS, arguments: { query: 'video encoder in the attic HDMI capture running pipelines' } }] },
      { toolCalls: [{ id: 'c1', name: CALL_TOOL, arguments: { name: 'encoder-attic-1__gst_get_running_instances', arguments: {} } }] },
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
    const blocks = llm.requests.map((req) => JSON.stringify(req.body.tools));
    expect(new Set(blocks).size).toBe(1);
    expect(llm.requests[0].body.tools.length).toBeLessThanOrEqual(16);
    expect(llm.requests[1].body.tools.map((t: any) => t.function.name)).not.toContain('encoder-attic-1__gst_get_running_instances');
    const found = llm.requests[1].body.messages.find((m: any) => m.role === 'tool').content as string;
    expect(found).toMatch(/^Found \d+ tools/);
    expect(found).toContain('{"name":"encoder-attic-1__gst_get_running_instances","description":');
    expect(found.split('\n').filter((l) => l.startsWith('{"name":')).length).toBeLessThanOrEqual(8);
    expect(calls).toEqual(['encoder-attic-1/gst_get_running_instances']);
    expect(r.toolCalls[1]).toMatchObject({ name: 'encoder-attic-1__gst_get_running_instances', via: 'call_tool', agent: 'encoder-attic-1', tool: 'gst_get_running_instances', arguments: {}, ok: true });
    expect(r.toolsOffered.length).toBe(3);
    expect(r.toolsOffered[2].tools).toEqual(r.toolsOffered[0].tools);
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
