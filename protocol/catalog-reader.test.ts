// CatalogReader (the caller's fast path for catalogs that share their tools) gives exactly what the
// full path gives (JSON.parse, limits, CatalogSchema) or declines; and RpcCaller, on a real
// in-process aedes, still validates every catalog of every agent through it.
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcCaller } from './index';
import { CatalogSchema } from './schemas';
import { parseJsonWithin, type JsonLimits } from './json-limits';
import { CatalogReader } from './catalog-reader';
import { startBroker, type EmbeddedBroker } from './broker';
import { until } from '../test/support/until';

const tool = (i: number, description = `Reads thing ${i}.`) => ({
  name: `read_${i}`, description, timeoutMs: 5000,
  inputSchema: { type: 'object', properties: { path: { type: 'string', maxLength: 256 } }, required: ['path'], additionalProperties: false },
  annotations: { risk: i % 2 ? 'low' : 'high', readOnlyHint: true },
});
const TOOLS = [tool(1), tool(2), tool(3)];
const catalogText = (id: string, tools: unknown = TOOLS, rev: unknown = 7) => JSON.stringify({ agent: { id, name: `Agent ${id}`, host: `h-${id}` }, rev, tools });

/** The full path of RpcCaller: parse within the limits, then CatalogSchema; undefined when refused. */
function full(text: string, limits?: JsonLimits) {
  const p = parseJsonWithin(text, limits);
  if ('error' in p) return undefined;
  const c = CatalogSchema.safeParse(p.value);
  return c.success ? c.data : undefined;
}

describe('CatalogReader', () => {
  it('validates each distinct tools text once and shares the frozen list between agents that announce it', () => {
    const r = new CatalogReader();
    const a = r.read(catalogText('a'));
    const b = r.read(catalogText('b'));
    expect(a).toEqual(full(catalogText('a')));
    expect(b).toEqual(full(catalogText('b')));
    expect(a!.agent.id).toBe('a');
    expect(b!.agent).toEqual({ id: 'b', name: 'Agent b', host: 'h-b' });
    expect(b!.tools).toBe(a!.tools);
    expect(r.size).toBe(1);
    expect(Object.isFrozen(a!.tools) && Object.isFrozen(a!.tools[0]) && Object.isFrozen(a!.tools[0].inputSchema)).toBe(true);
    expect(() => { (a!.tools[0] as { name: string }).name = 'x'; }).toThrow(TypeError);
    // a changed tool is a new text: parsed and validated on its own
    const changed = r.read(catalogText('a', [tool(1, 'Changed.'), tool(2), tool(3)]));
    expect(changed!.tools[0].description).toBe('Changed.');
    expect(r.size).toBe(2);
  });

  it('declines every catalog the full path refuses, even when its tools text is known', () => {
    const r = new CatalogReader();
    expect(r.read(catalogText('a'))).toBeDefined();
    const refused = [
      catalogText('b', TOOLS, 'seven'), // rev not an integer, tools known
      catalogText('bad id', TOOLS), // agent id not an id
      catalogText('b', [tool(1), { ...tool(2), annotations: { risk: 'extreme' } }]), // a tool with an unknown risk
      catalogText('b', [{ name: 'x', description: 'no annotations', inputSchema: {} }]),
      catalogText('b', { not: 'a list' }),
      `${catalogText('b')} x`, // text after the closing brace
      `{"tools":${JSON.stringify(TOOLS)},"rev":7}`, // no agent
      `{"agent":{"id":"b"},"rev":7,"a\\"tools":${JSON.stringify(TOOLS)}}`, // the known list under the key a"tools: no tools
      '{"agent":{"id":"b"},"rev":7,"tools":[', // cut short
    ];
    for (const text of refused) {
      expect(full(text), text.slice(0, 80)).toBeUndefined();
      expect(r.read(text), text.slice(0, 80)).toBeUndefined();
    }
  });

  it('gives what JSON.parse gives for texts that try to fool the cut', () => {
    const r = new CatalogReader();
    r.read(catalogText('a'));
    const known = JSON.stringify(TOOLS);
    const tricky = [
      // a tools key that is not the last one: the later keys must not be lost
      `{"agent":{"id":"b"},"rev":7,"tools":${known},"extra":{"tools":[]}}`,
      // the first "tools": is inside the agent (a key of its own); the real one comes later
      `{"agent":{"id":"b","x\\"tools":1},"rev":7,"tools":${known}}`,
      `{"agent":{"id":"b","tools":[]},"rev":7,"tools":${known}}`,
      // whitespace around the value and before the brace
      `{"agent":{"id":"b"},"rev":7,"tools":  ${known}  \n}`,
      // duplicate tools keys whose last one is the known list
      `{"agent":{"id":"b"},"tools":[],"rev":7,"tools":${known}}`,
      `{"agent":{"id":"b"},"rev":7,"tools":5,"tools":${known}}`,
      `{"agent":{"id":"b"},"rev":7,"tools":${known},"tools":5}`,
    ];
    for (const text of tricky) {
      const want = full(text);
      const got = r.read(text);
      if (got !== undefined) expect(got, text.slice(0, 80)).toEqual(want);
      expect(got ?? want, text.slice(0, 80)).toEqual(want);
    }
  });

  it('applies the depth and width limits to the tools as part of the whole catalog', () => {
    const limits = { maxDepth: 6, maxWidth: 5 };
    const r = new CatalogReader(limits);
    // catalog(1) > tools(2) > tool(3) > inputSchema(4) > properties(5) > path(6): at the limit
    const ok = catalogText('a');
    expect(full(ok, limits)).toBeDefined();
    expect(r.read(ok)).toEqual(full(ok, limits));
    // one level more, inside the tools only: over the limit as a whole catalog
    const deep = catalogText('a', [{ ...tool(1), inputSchema: { type: 'object', properties: { path: { type: 'object', properties: {} } } } }]);
    expect(full(deep, limits)).toBeUndefined();
    expect(r.read(deep)).toBeUndefined();
    // six tools: an array wider than 5
    const wide = catalogText('a', [tool(1), tool(2), tool(3), tool(4), tool(5), tool(6)]);
    expect(full(wide, limits)).toBeUndefined();
    expect(r.read(wide)).toBeUndefined();
  });

  it('keeps at most maxLists tool lists, the least recently used going first', () => {
    const r = new CatalogReader({}, 2);
    const t1 = r.read(catalogText('a', [tool(1)]))!.tools;
    const t2 = r.read(catalogText('a', [tool(2)]))!.tools;
    expect(r.read(catalogText('b', [tool(1)]))!.tools).toBe(t1); // t1 used again: newest
    r.read(catalogText('a', [tool(3)])); // drops [tool(2)], the least recently used
    expect(r.size).toBe(2);
    expect(r.read(catalogText('c', [tool(1)]))!.tools).toBe(t1);
    const again = r.read(catalogText('c', [tool(2)]))!.tools; // read and validated anew
    expect(again).not.toBe(t2);
    expect(again).toEqual(t2);
  });
});

let broker: EmbeddedBroker | undefined;
let caller: RpcCaller | undefined;
let pub: MqttClient | undefined;
afterEach(async () => {
  await caller?.stop();
  caller = undefined;
  if (pub) await new Promise<void>((resolve) => pub!.end(false, {}, () => resolve()));
  pub = undefined;
  await broker?.close();
  broker = undefined;
});

describe('RpcCaller with shared catalogs', () => {
  it('validates every agent\'s catalog: identical tools are shared, a changed one is read again, a malformed one is refused with a warning', async () => {
    broker = await startBroker({ port: 0 });
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'catalog-reader-test', republishAskAfterMs: 0 });
    const warnings: string[] = [];
    caller.on('warn', (w: string) => warnings.push(w));
    await caller.start();
    pub = mqtt.connect(broker.url);
    await new Promise<void>((resolve) => pub!.on('connect', () => resolve()));
    const t = caller.topics;
    const send = (topic: string, body: string) => new Promise<void>((resolve, reject) => pub!.publish(topic, body, { qos: 1 }, (e) => (e ? reject(e) : resolve())));
    const online = (id: string, rev = 7) => send(t.agentStatus(id), JSON.stringify({ state: 'online', agent: id, instance: `i-${id}`, catalogRev: rev }));
    for (const id of ['a', 'b']) {
      await online(id);
      await send(t.agentCatalog(id), catalogText(id));
    }
    await until(() => caller!.agent('a')?.ready && caller!.agent('b')?.ready, 'a and b ready');
    expect(caller.agent('b')!.catalog!.agent.id).toBe('b');
    expect(caller.agent('b')!.catalog!.tools).toBe(caller.agent('a')!.catalog!.tools);
    expect(caller.listTools().map((x) => `${x.agentId}/${x.tool.name}`)).toEqual(['a/read_1', 'a/read_2', 'a/read_3', 'b/read_1', 'b/read_2', 'b/read_3']);

    // the same tools under another agent's id: refused (the id names the topic's agent)
    await online('c');
    await send(t.agentCatalog('c'), catalogText('a'));
    // the same tools with a head that is not valid: refused although the tools are known
    await send(t.agentCatalog('d'), catalogText('d', TOOLS, 'seven'));
    // a malformed tool list: refused
    await send(t.agentCatalog('e'), catalogText('e', [tool(1), { ...tool(2), annotations: {} }]));
    await until(() => warnings.length >= 3, 'three warnings');
    expect(warnings).toEqual([
      'ignored a malformed catalog of agent c',
      'ignored a malformed catalog of agent d',
      'ignored a malformed catalog of agent e',
    ]);
    expect(caller.agent('c')?.catalog).toBeUndefined();
    expect(caller.agent('d')).toBeUndefined();
    expect(caller.agent('e')).toBeUndefined();

    // b changes one tool (new rev): its new list is read, a keeps the old one
    await online('b', 8);
    await send(t.agentCatalog('b'), catalogText('b', [tool(1, 'Now different.'), tool(2)], 8));
    await until(() => caller!.agent('b')?.catalog?.rev === 8 && caller!.agent('b')?.ready, 'b on rev 8');
    expect(caller.agent('b')!.catalog!.tools.map((x) => x.description)).toEqual(['Now different.', 'Reads thing 2.']);
    expect(caller.agent('a')!.catalog!.tools.map((x) => x.description)).toEqual(['Reads thing 1.', 'Reads thing 2.', 'Reads thing 3.']);
  });
});
