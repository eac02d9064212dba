/**
 * The real tool path for tool-loop tests: an embedded aedes broker, an agent `pi` (RpcServer)
 * with test tools, and an RpcCaller as the loop's tool source; plus a fake LLM per test and an
 * `openai` client for it.
 */
import OpenAI from 'openai';
import { z } from 'zod';
import { RpcCaller, RpcServer, ToolError, defineTool, type CallToolResult } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import type { ToolCallInfo, ToolLoopOptions, ToolSource } from '../../nodes/llm-agent/tool-loop';
import { startFakeLlm, type FakeLlm, type FakeLlmOptions, type FakeScript } from './fake-llm';

/** 3 000 bytes of "JPEG" (random bytes are enough: nothing decodes them), base64. */
export const PHOTO_BASE64 = Buffer.from(Array.from({ length: 3_000 }, (_, i) => (i * 37) % 256)).toString('base64');

/** A running harness. */
export interface LoopHarness {
  readonly caller: RpcCaller;
  /** What the tools did, in order (`echo:<text>`, `photo`, `sleep:cancelled`, ...). */
  readonly runs: string[];
  /** Start and end (performance.now) of `slow_a` / `slow_b`. */
  readonly spans: Record<string, { start: number; end: number }>;
  /** Starts a fake LLM (closed by {@link reset}) and returns loop options with the caller as tool source. */
  setup(script: FakeScript, fake?: FakeLlmOptions, extra?: Partial<ToolLoopOptions>): Promise<ToolLoopOptions>;
  /** The fake LLM of the current test. */
  readonly llm: FakeLlm;
  /** Closes the fake LLM and clears `runs` and `spans`. */
  reset(): Promise<void>;
  close(): Promise<void>;
}

/** A tool source over `caller` that records the `info` of every call. */
export function recordingSource(caller: RpcCaller, infos: (ToolCallInfo | undefined)[]): ToolSource {
  return {
    listTools: () => caller.listTools(),
    call: (agent, tool, args, opts, info) => {
      infos.push(info);
      return caller.call(agent, tool, args, opts);
    },
  };
}

/** Starts broker, agent `pi` and caller; resolves once the caller offers all of pi's tools. */
export async function startLoopHarness(callerId: string): Promise<LoopHarness> {
  const runs: string[] = [];
  const spans: Record<string, { start: number; end: number }> = {};
  const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
  /** Records a span; `slow_a` ends only after `slow_b` has started (polled, at most 2 s), then 20 ms later. */
  const span = async (key: string, waitFor?: string) => {
    spans[key] = { start: performance.now(), end: Infinity };
    const deadline = Date.now() + 2_000;
    do await sleep(5);
    while (waitFor && !spans[waitFor] && Date.now() < deadline);
    await sleep(20);
    spans[key].end = performance.now();
  };
  const tools = [
    defineTool({ name: 'echo', description: 'Echoes text.', risk: 'low', input: z.object({ text: z.string() }).strict(), execute: (a) => { runs.push(`echo:${a.text}`); return { echo: a.text }; } }),
    defineTool({ name: 'slow_a', description: 'Takes a while.', risk: 'medium', input: z.object({}), execute: async () => { await span('a', 'b'); return 'A done'; } }),
    defineTool({ name: 'slow_b', description: 'Takes a while too.', risk: 'medium', input: z.object({}), execute: async () => { await span('b'); return 'B done'; } }),
    defineTool({
      name: 'take_photo', description: 'Takes a photo.', risk: 'low', input: z.object({}),
      execute: (): CallToolResult => { runs.push('photo'); return { content: [{ type: 'text', text: 'photo taken' }, { type: 'image', data: PHOTO_BASE64, mimeType: 'image/jpeg' }] }; },
    }),
    defineTool({ name: 'reboot', description: 'Reboots.', risk: 'medium', input: z.object({}), execute: () => { throw new ToolError('DENIED', 'the operator denied this call'); } }),
    defineTool({ name: 'wipe', description: 'Wipes.', risk: 'medium', input: z.object({}), execute: () => { throw new ToolError('APPROVAL_REQUIRED', 'this call needs an approval token'); } }),
    defineTool({
      name: 'sleep', description: 'Sleeps.', risk: 'low', input: z.object({ ms: z.number() }),
      execute: (a, ctx) => new Promise((resolve) => {
        const t = setTimeout(() => { runs.push('sleep:done'); resolve('slept'); }, a.ms);
        ctx.signal.addEventListener('abort', () => { clearTimeout(t); runs.push('sleep:cancelled'); resolve('cancelled'); }, { once: true });
      }),
    }),
  ];
  const broker: EmbeddedBroker = await startBroker({ port: 0 });
  const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools });
  await server.start();
  const caller = new RpcCaller({ connection: { url: broker.url }, callerId });
  await caller.start();
  await new Promise<void>((r) => { const chk = () => caller.listTools().length === tools.length ? r() : setTimeout(chk, 10); chk(); });
  let llm: FakeLlm | undefined;
  return {
    caller, runs, spans,
    get llm() { return llm!; },
    async setup(script, fake = {}, extra = {}) {
      llm = await startFakeLlm(script, fake);
      const client = new OpenAI({ baseURL: llm.url, apiKey: 'sk-test', maxRetries: 0 });
      return { client, model: 'fake-model', messages: [{ role: 'user', content: 'go' }], tools: caller, ...extra };
    },
    async reset() {
      await llm?.close();
      llm = undefined;
      runs.length = 0;
      for (const k of Object.keys(spans)) delete spans[k];
    },
    async close() {
      await caller.stop();
      await server.stop();
      await broker.close();
    },
  };
}
