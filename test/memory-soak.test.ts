/**
 * Bounded memory for months of uptime (issue 17, item 8): what a long-running Node-RED keeps per
 * conversation, per agent and per hosted agent must go again.
 * - llm-agent: distinct `msg.topic`s through the node (fake LLM over HTTP) keep at most
 *   `maxSessions` conversations in the context store; then 100,000 topics through the node's own
 *   ConversationStore and context bring the heap back within 10 MB of its floor.
 * - RpcCaller on a real in-process aedes: 10,000 agent ids going online → catalog → lost/offline,
 *   and 10,000 that only publish invalid catalogs, leave no entry once `forgetAfterMs` has passed,
 *   and the heap is back within 10 MB of its floor.
 * The heap is read after full collections: `--expose-gc` is set at run time (v8.setFlagsFromString),
 * since vitest cannot give one file its own execArgv. `bench/memory-soak.mjs` prints the figures.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import { ConversationStore, type ContextLike } from '../nodes/llm-agent/conversation';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { NODE_RED_MAIN } from './support/node-red-path';
import { until } from './support/until';

// node-red-node-test-helper ships no types
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap in use after full collections, bytes. */
async function heapAfterGc(): Promise<number> {
  for (let i = 0; i < 4; i++) {
    gc();
    await new Promise((r) => setImmediate(r));
  }
  return process.memoryUsage().heapUsed;
}

const MB = 1024 * 1024;
const mb = (n: number) => `${(n / MB).toFixed(1)} MB`;

const ENV_KEYS = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY', 'TOOLMESH_LLM_MODEL'];
const savedEnv = Object.fromEntries(ENV_KEYS.map((k) => [k, process.env[k]]));
beforeAll(() => { for (const k of ENV_KEYS) delete process.env[k]; });
afterAll(() => { for (const k of ENV_KEYS) if (savedEnv[k] !== undefined) process.env[k] = savedEnv[k]; });

let llm: FakeLlm | undefined;
let broker: EmbeddedBroker | undefined;
afterEach(async () => {
  await helper.unload();
  await llm?.close();
  llm = undefined;
  await broker?.close();
  broker = undefined;
});

/** Loads an llm-agent without tools (answers `re: <prompt>`), output 1 → `out`; returns it and its answers. */
async function loadAgent(props: Record<string, unknown>) {
  llm = await startFakeLlm((body: any) => ({ content: `re: ${body.messages.at(-1).content}` }));
  const at = { z: 'f1', x: 0, y: 0 };
  await helper.load([llmAgentNode], [
    { id: 'f1', type: 'tab', label: 'test' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, baseUrl: llm.url, model: 'fake-model', wires: [['out'], [], []], ...props },
    { id: 'out', type: 'helper', ...at },
  ], { llm: { apiKey: 'sk-test' } });
  const out: any[] = [];
  helper.getNode('out').on('input', (m: any) => out.push(m));
  return { node: helper.getNode('llm'), out };
}

/** The keys of the node's conversations in its default context store. */
const conversationKeys = (node: any): string[] => node.context().keys().filter((k: string) => k.startsWith('llm-agent:'));

describe('llm-agent sessions stay bounded', () => {
  it('keeps the most recently used maxSessions conversations of 600 topics in the context store', async () => {
    const { node, out } = await loadAgent({ maxSessions: 100 });
    // topic-0 is used again late, so it is among the most recent and survives
    for (let batch = 0; batch < 600; batch += 50) {
      for (let i = batch; i < batch + 50; i++) node.receive({ topic: `topic-${i}`, payload: `hello ${i}` });
      await until(() => out.length >= batch + 50, `answers up to ${batch + 50}`);
      if (batch === 500) {
        node.receive({ topic: 'topic-0', payload: 'still there?' });
        await until(() => out.length >= batch + 51, 'the answer to topic-0');
      }
    }
    const keys = conversationKeys(node);
    expect(keys).toHaveLength(100);
    expect(keys).toContain('llm-agent:topic-599');
    expect(keys).toContain('llm-agent:topic-0');
    expect(keys).not.toContain('llm-agent:topic-1');
    expect(node.context().get('llm-agent:topic-0').map((m: any) => m.content)).toEqual(['still there?', 're: still there?']);
  });

  it('forgets conversations unused for sessionIdleMs (the sweep looks every second here)', async () => {
    const { node, out } = await loadAgent({ sessionIdleMs: 1000 });
    for (let i = 0; i < 20; i++) node.receive({ topic: `idle-${i}`, payload: 'hello' });
    await until(() => out.length === 20, 'the answers');
    const answeredAt = Date.now();
    expect(conversationKeys(node).length).toBeGreaterThan(0);
    await until(() => conversationKeys(node).length === 0, 'the idle conversations to go', 5000);
    expect(Date.now() - answeredAt).toBeGreaterThanOrEqual(500);
  });

  it('brings the heap back within 10 MB of its floor after 100,000 topics through the node\'s context', async () => {
    const { node } = await loadAgent({ maxSessions: 1000 });
    const ctx = node.context() as unknown as ContextLike;
    let now = 0;
    const store = new ConversationStore(ctx, { maxSessions: 1000, sessionIdleMs: 86_400_000 }, { now: () => now });
    const floor = await heapAfterGc();
    let peak = floor;
    const turn = (i: number) => [{ role: 'user', content: `question ${i} `.repeat(20) }, { role: 'assistant', content: `answer ${i} `.repeat(40) }];
    for (let i = 0; i < 100_000; i++) {
      now += 1000; // a message a second: 100,000 s, more than a day of traffic
      await store.write(`topic-${i}`, turn(i));
      if (i % 10_000 === 0) peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    expect(store.size).toBe(1000);
    expect(conversationKeys(node)).toHaveLength(1000);
    // a day later (fake clock) the sweep's check forgets them all
    now += 86_400_001;
    store.evictIdle();
    store.close();
    expect(store.size).toBe(0);
    await until(() => conversationKeys(node).length === 0, 'the context store to empty');
    const after = await heapAfterGc();
    console.log(`llm-agent 100,000 topics: heap floor ${mb(floor)}, peak ${mb(peak)}, after gc ${mb(after)}`);
    expect(after - floor).toBeLessThan(10 * MB);
  }, 120_000);
});

/**
 * A catalog of 10 tools with schemas (~3 KB of JSON), like a small pack's: 10,000 of them kept
 * would be tens of MB, so the heap check tells a bounded caller from one that keeps them.
 */
const catalogOf = (agent: string) => ({
  agent: { id: agent, name: `Soak ${agent}`, kind: 'pi' },
  rev: 1,
  tools: Array.from({ length: 10 }, (_, k) => ({
    name: `tool_${k}`,
    description: `Reads sensor ${k} of ${agent} and reports its value with the unit and the time it was taken.`,
    inputSchema: { type: 'object', properties: { unit: { type: 'string', enum: ['si', 'imperial'] }, samples: { type: 'integer', minimum: 1, maximum: 100 } } },
    annotations: { risk: 'low', readOnlyHint: true },
  })),
});

describe('RpcCaller stays bounded', () => {
  it('forgets 10,000 agents that came and went and keeps nothing for 10,000 invalid catalogs; heap back within 10 MB', async () => {
    broker = await startBroker({ port: 0 });
    const caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'soak', forgetAfterMs: 300 });
    await caller.start();
    const pub = mqtt.connect(broker.url);
    await new Promise<void>((resolve) => pub.on('connect', () => resolve()));
    const send = (topic: string, body: unknown) => new Promise<void>((resolve, reject) => pub.publish(topic, JSON.stringify(body), { qos: 1 }, (e) => (e ? reject(e) : resolve())));
    const t = caller.topics;
    const floor = await heapAfterGc();
    let peak = floor;
    let maxKnown = 0;
    const N = 10_000;
    for (let batch = 0; batch < N; batch += 500) {
      const sends: Promise<void>[] = [];
      for (let i = batch; i < batch + 500; i++) {
        const agent = `agent-${i}`;
        const instance = `i${i}`;
        sends.push(send(t.agentStatus(agent), { state: 'online', agent, instance, catalogRev: 1, ts: Date.now() }));
        sends.push(send(t.agentCatalog(agent), catalogOf(agent)));
        sends.push(send(t.agentStatus(agent), { state: i % 2 ? 'lost' : 'offline', agent, instance, ts: Date.now() }));
        // an invalid catalog (not one, or another agent's) of an id never seen otherwise
        sends.push(send(t.agentCatalog(`junk-${i}`), i % 2 ? { rev: 'x' } : { agent: { id: 'someone-else' }, rev: 1, tools: [] }));
      }
      await Promise.all(sends);
      maxKnown = Math.max(maxKnown, caller.listAgents().length);
      peak = Math.max(peak, process.memoryUsage().heapUsed);
    }
    await until(() => caller.listAgents().length === 0, 'every agent to be forgotten', 20_000);
    // the agents were there while they came and went, and no invalid catalog left an entry
    expect(maxKnown).toBeGreaterThan(0);
    expect(caller.agent('junk-1')).toBeUndefined();
    await new Promise<void>((resolve) => pub.end(false, {}, () => resolve()));
    const after = await heapAfterGc();
    console.log(`RpcCaller 10,000 agents + 10,000 invalid catalogs: heap floor ${mb(floor)}, peak ${mb(peak)}, after gc ${mb(after)}, most agents known at once ${maxKnown}`);
    expect(after - floor).toBeLessThan(10 * MB);
    await caller.stop();
  }, 120_000);
});
