// Node-RED keeps working through faults (issue 9, item 5), end to end with real parts only: a
// real Node-RED process loading the built pack, Debian's mosquitto (or the registry's embedded
// aedes), real agents (in this process through agent/runtime.ts startAgent, and the toolmesh-agent
// binary), and the scripted OpenAI-compatible server as the model.
//
// The flow under test: inject → llm-agent (direct mode) → answer; a Catch node for every error; a
// Status node watching the llm-agent and an idle remote-tool (whose status shows the registry's
// connection). Answers, caught errors and statuses are posted by a core http request node to a
// sink in this process, so the test sees what a flow author sees.
//
// The model asks for three parallel calls of a tool that takes 1.5 s. Then, with mosquitto both
// without persistence and with retained messages kept across restarts:
// 1. mosquitto is restarted (SIGTERM, started again on the same port 0.7 s later) while the three
//    run: the run completes with all three results, the status goes reconnecting → connected,
//    nothing runs twice, Node-RED lives (docs/protocol.md, broker restarts);
// 2. a full deploy while the calls run ends that run with an error that says the node was closed
//    (in the runtime log: the flow's Catch nodes stop with it), cancels its calls on the agent and
//    runs nothing twice; the next run works;
// 2b. a full deploy while the broker is away does not hang, and the flow works once it is back;
// and with the registry's embedded aedes:
// 3. Node-RED itself is restarted (SIGTERM, started again on the same userDir and port) under
//    running agents: the agents come back online, nothing runs twice, the run in progress ends
//    with an error that says so, the next run works.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { defineTool, type ToolDefinition } from '../protocol';
import { startFakeLlm, type FakeLlm, type FakeReply } from './support/fake-llm';
import { startHttpSink, type HttpSink } from './support/http-sink';
import { freePort, systemBinary } from './support/mosquitto';
import { createNodeRed, type NodeRedInstance } from './support/node-red-instance';
import { startRestartableMosquitto, type RestartableMosquitto } from './support/restartable-mosquitto';
import { until } from './support/until';

/** How long one call of the slow tool takes. */
const SLOW_MS = 1500;
/** Outside CI a missing mosquitto skips the external-broker tests (in CI systemBinary throws). */
const haveMosquitto = systemBinary('/usr/sbin/mosquitto', 'mosquitto') !== null;

/** One execution of the slow tool, as the agent saw it. */
interface Execution {
  key: string;
  start: number;
  end?: number;
  outcome?: 'done' | 'cancelled';
}

/**
 * The agent side of the count: a tool `slow { key }` that takes {@link SLOW_MS} (or stops when
 * its call is cancelled) and records every execution, so a test can say that nothing ran twice.
 */
class SlowTool {
  readonly executions: Execution[] = [];
  readonly tool: ToolDefinition = defineTool({
    name: 'slow',
    description: 'Reads a slow sensor named by key (takes 1.5 s).',
    risk: 'low',
    input: z.strictObject({ key: z.string() }),
    execute: async ({ key }, ctx) => {
      const e: Execution = { key, start: Date.now() };
      this.executions.push(e);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => { e.outcome = 'done'; resolve(); }, SLOW_MS);
        ctx.signal.addEventListener('abort', () => { clearTimeout(timer); e.outcome = 'cancelled'; resolve(); }, { once: true });
      });
      e.end = Date.now();
      return { key, value: 42 };
    },
  });

  /** The executions of keys starting with `prefix`. */
  of(prefix: string): Execution[] {
    return this.executions.filter((e) => e.key.startsWith(prefix));
  }

  /** Keys (of `prefix`) that ran more than once. */
  duplicates(prefix = ''): string[] {
    const keys = this.of(prefix).map((e) => e.key);
    return [...new Set(keys.filter((k, i) => keys.indexOf(k) !== i))];
  }
}

/** Which tool the model calls for a key, and with what arguments. */
type Route = (key: string) => { tool: string; arguments: Record<string, unknown> };
/** Every call goes to `slowpi`'s {@link SlowTool}. */
const toSlowTool: Route = (key) => ({ tool: 'slowpi__slow', arguments: { key } });

/**
 * The model: a user prompt gets three parallel calls with keys `r<request index>-a|b|c` (so each
 * run has keys of its own), each to the tool `route` picks; tool results get an answer that
 * lists them.
 */
function slowModel(route: Route = toSlowTool): (body: any, index: number) => FakeReply {
  return (body, index) => {
    const last = body.messages[body.messages.length - 1];
    if (last.role === 'user') {
      const offered = new Set((body.tools ?? []).map((t: any) => t.function.name));
      const calls = ['a', 'b', 'c'].map((k) => ({ id: `call_${index}_${k}`, key: `r${index}-${k}`, ...route(`r${index}-${k}`) }));
      const missing = calls.filter((c) => !offered.has(c.tool)).map((c) => c.tool);
      if (missing.length) return { content: `not offered: ${missing.join(', ')}` };
      return { toolCalls: calls.map((c) => ({ id: c.id, name: c.tool, arguments: c.arguments })) };
    }
    const results = body.messages.filter((m: any) => m.role === 'tool').map((m: any) => m.content);
    return { content: `results: ${results.join(' | ')}` };
  };
}

/** A function node that posts `payload` (an expression over msg) to the sink's `channel`. */
function poster(id: string, z: string, sink: HttpSink, channel: string, payload: string) {
  return {
    id, type: 'function', z, name: `to ${channel}`, x: 500, y: 100,
    func: `msg.url = ${JSON.stringify(`${sink.url}/${channel}`)};\nmsg.payload = ${payload};\nreturn msg;`,
    outputs: 1, noerr: 0, initialize: '', finalize: '', libs: [], wires: [['post']],
  };
}

/**
 * The flow under test (see the file comment) with `registry` as the tool-registry node's
 * broker settings.
 */
function buildFlows(registry: Record<string, unknown>, llm: FakeLlm, sink: HttpSink): unknown[] {
  const z = 'faults';
  return [
    { id: z, type: 'tab', label: 'faults' },
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', policy: '*/*', ...registry },
    {
      id: 'ask', type: 'inject', z, name: 'ask', x: 100, y: 100, props: [{ p: 'payload' }], repeat: '', crontab: '', once: false,
      onceDelay: 0.1, topic: '', payload: 'Read the three slow sensors', payloadType: 'str', wires: [['llm']],
    },
    {
      id: 'llm', type: 'toolmesh-llm-agent', z, name: 'agent', x: 300, y: 100, registry: 'reg', baseUrl: llm.url, model: 'fake', maxIterations: 4,
      memoryMessages: 0, mode: 'direct', wires: [['to-answer'], [], []],
    },
    { id: 'watch', type: 'toolmesh-remote-tool', z, name: 'watch', x: 300, y: 200, registry: 'reg', agent: '', tool: '', wires: [[]] },
    { id: 'st', type: 'status', z, name: '', x: 100, y: 300, scope: ['watch', 'llm'], wires: [['to-status']] },
    { id: 'catch', type: 'catch', z, name: '', x: 100, y: 400, scope: null, uncaught: false, wires: [['to-caught']] },
    poster('to-answer', z, sink, 'answer', '{ answer: msg.payload, toolCalls: msg.toolCalls }'),
    poster('to-status', z, sink, 'status', '{ node: msg.status.source.id, text: msg.status.text, fill: msg.status.fill, shape: msg.status.shape, at: Date.now() }'),
    poster('to-caught', z, sink, 'caught', '{ message: msg.error.message, source: msg.error.source && msg.error.source.id, at: Date.now() }'),
    {
      id: 'post', type: 'http request', z, name: '', x: 700, y: 100, method: 'POST', ret: 'txt', paytoqs: 'ignore', url: '', tls: '',
      persist: false, proxy: '', insecureHTTPParser: false, authType: '', senderr: false, headers: [], wires: [[]],
    },
  ];
}

/** The agents the registry knows, from its admin endpoint. */
async function agentsOf(nr: NodeRedInstance): Promise<Array<{ id: string; online: boolean; ready: boolean; state: string }>> {
  const res = await nr.api('/toolmesh/registry/reg/agents');
  return res.ok ? ((await res.json()) as any[]) : [];
}

/** Presses the inject button, as a user would. */
async function ask(nr: NodeRedInstance): Promise<void> {
  const res = await nr.api('/inject/ask', { method: 'POST' });
  if (!res.ok) throw new Error(`inject failed: HTTP ${res.status}`);
}

/** Lines of Node-RED output that show a crash or an unhandled promise rejection. */
function crashLines(output: string): string[] {
  return output.split('\n').filter((l) => /uncaught|unhandled|UnhandledPromiseRejection|Maximum call stack/i.test(l));
}

/** The status texts the watched node showed after `since` (sink clock), in order. */
function statusTexts(sink: HttpSink, node: string, since = 0): string[] {
  return sink.records.filter((r) => r.channel === 'status' && r.body.node === node && r.at >= since)
    .sort((a, b) => a.body.at - b.body.at).map((r) => r.body.text as string);
}

/** Waits until the three calls of the run whose keys start with `prefix` all run on the agent. */
async function threeRunning(tool: SlowTool, prefix: string): Promise<void> {
  await until(() => tool.of(prefix).length >= 3, `three running calls ${prefix}*`, 15_000);
}

/** The run prefix (`r<index>-`) of the next run: the model's request index is its key. */
const nextPrefix = (llm: FakeLlm) => `r${llm.requests.length}-`;

// persistence off, and on as in Debian's default configuration: retained messages (the agents'
// `lost` wills among them) are kept across the restart and greet the reconnecting registry
describe.skipIf(!haveMosquitto).each([
  { persistence: false, label: 'persistence off' },
  { persistence: true, label: "retained messages kept, as in Debian's default configuration" },
])('Node-RED with the registry on an external mosquitto ($label)', ({ persistence }) => {
  const tool = new SlowTool();
  const agentLog: string[] = [];
  let mosq: RestartableMosquitto;
  let agent: RunningAgent;
  let llm: FakeLlm;
  let sink: HttpSink;
  let nr: NodeRedInstance;

  beforeAll(async () => {
    mosq = (await startRestartableMosquitto({ persistence }))!;
    const log = (level: string) => (m: string) => { agentLog.push(`${new Date().toISOString()} ${level}: ${m}`); };
    agent = await startAgent(validateConfig({ version: 1, agent: { id: 'slowpi' }, broker: { url: mosq.url }, packs: {} }),
      { info: log('info'), warn: log('warn'), error: log('error') }, [tool.tool]);
    llm = await startFakeLlm(slowModel());
    sink = await startHttpSink();
    nr = await createNodeRed({ flows: buildFlows({ mode: 'external', broker: mosq.url }, llm, sink) });
    await until(async () => (await agentsOf(nr)).some((a) => a.id === 'slowpi' && a.ready), `agent slowpi ready in the registry; Node-RED:\n${nr.output()}`, 20_000);
  });

  afterAll(async () => {
    await nr?.dispose();
    await agent?.stop();
    await mosq?.dispose();
    await llm?.close();
    await sink?.close();
  });

  it('a broker restart during a run with three parallel calls: all three results, reconnecting → connected, nothing twice', async () => {
    const prefix = nextPrefix(llm);
    const answersBefore = sink.of('answer').length;
    const caughtBefore = sink.of('caught').length;
    const outputBefore = nr.lastOutput().length;
    await ask(nr);
    await threeRunning(tool, prefix);
    const restartedAt = Date.now();
    await mosq.restart(700);
    await until(() => sink.of('answer').length > answersBefore || sink.of('caught').length > caughtBefore,
      `the run's answer or error; Node-RED:\n${nr.lastOutput()}`, 30_000);
    const caught = sink.of('caught').slice(caughtBefore);
    expect(caught, 'errors caught in the flow').toEqual([]);
    const { answer, toolCalls } = sink.of('answer')[answersBefore];
    const evidence = `answer: ${answer}\ntool calls: ${JSON.stringify(toolCalls)}\nagent log:\n${agentLog.join('\n')}\nNode-RED:\n${nr.lastOutput()}`;
    expect(toolCalls.map((c: any) => c.code ?? 'ok'), evidence).toEqual(['ok', 'ok', 'ok']);
    expect(answer).toBe(`results: ${['a', 'b', 'c'].map((k) => JSON.stringify({ key: `${prefix}${k}`, value: 42 })).join(' | ')}`);
    // nothing ran twice, and every call ran to its end on the agent
    await new Promise((r) => setTimeout(r, 500));
    expect(tool.duplicates(prefix), evidence).toEqual([]);
    expect(tool.of(prefix).map((e) => `${e.key}:${e.outcome}`).sort()).toEqual(['a', 'b', 'c'].map((k) => `${prefix}${k}:done`));
    // the registry's connection state as the idle remote-tool showed it: reconnecting, then connected
    await until(() => statusTexts(sink, 'watch', restartedAt).at(-1) === 'node-red:common.status.connected', 'the watch status back to connected', 15_000);
    const texts = statusTexts(sink, 'watch', restartedAt);
    const reconnecting = texts.indexOf('remote-tool.status.reconnecting');
    expect(reconnecting, `statuses: ${texts.join(', ')}`).toBeGreaterThanOrEqual(0);
    expect(texts.slice(reconnecting + 1), `statuses: ${texts.join(', ')}`).toContain('node-red:common.status.connected');
    const log = nr.lastOutput().slice(outputBefore);
    expect(log).toMatch(/Disconnected from mqtt:\/\/127\.0\.0\.1:\d+\/?[^\n]*; reconnecting[\s\S]*Connected to mqtt:\/\/127\.0\.0\.1/);
    // one log line per distinct reason, not one per reconnect attempt
    const disconnects = log.split('\n').filter((l) => l.includes('Disconnected from')).map((l) => l.replace(/^.*? - /, ''));
    expect(disconnects, disconnects.join('\n')).toEqual([...new Set(disconnects)]);
    // Node-RED lives and answers
    expect(nr.running).toBe(true);
    expect((await nr.api('/flows')).ok).toBe(true);
    expect(crashLines(nr.output())).toEqual([]);
  }, 60_000);

  it('a full deploy while calls run ends the run with a clear error and runs nothing twice; the next run works', async () => {
    await until(async () => (await agentsOf(nr)).some((a) => a.id === 'slowpi' && a.ready), 'slowpi ready');
    const prefix = nextPrefix(llm);
    const answersBefore = sink.of('answer').length;
    const outputBefore = nr.lastOutput().length;
    await ask(nr);
    await threeRunning(tool, prefix);
    const flows = ((await (await nr.api('/flows')).json()) as { flows: unknown[] }).flows;
    await nr.deployFull(flows);
    // the run ends with an error that says why: reaching the Catch node, or logged by Node-RED
    const closed = /stopped before the answer arrived: the node was closed \(redeploy or shutdown\)/;
    await until(() => sink.of('caught').some((c) => closed.test(c.message)) || closed.test(nr.lastOutput().slice(outputBefore)),
      `the run's error; Node-RED:\n${nr.lastOutput().slice(outputBefore)}`, 15_000);
    const logged = nr.lastOutput().slice(outputBefore).split('\n').filter((l) => closed.test(l));
    for (const line of logged) expect(line).toMatch(/\[error\] \[toolmesh-llm-agent:agent\]/);
    // the calls of the stopped run are not re-sent by the new registry: each ran once
    await new Promise((r) => setTimeout(r, SLOW_MS + 1000));
    expect(tool.duplicates(prefix), `executions: ${JSON.stringify(tool.of(prefix))}`).toEqual([]);
    expect(tool.of(prefix).map((e) => e.outcome), 'the stopped run\'s calls are cancelled on the agent').toEqual(['cancelled', 'cancelled', 'cancelled']);
    expect(sink.of('answer').length, 'no answer from the stopped run').toBe(answersBefore);
    // the redeployed flow works
    await until(async () => (await agentsOf(nr)).some((a) => a.id === 'slowpi' && a.ready), 'slowpi ready after the deploy');
    const next = nextPrefix(llm);
    await ask(nr);
    await until(() => sink.of('answer').length > answersBefore, `the next run's answer; Node-RED:\n${nr.lastOutput().slice(outputBefore)}`, 15_000);
    expect(sink.of('answer').at(-1).toolCalls.map((c: any) => c.code ?? 'ok')).toEqual(['ok', 'ok', 'ok']);
    expect(tool.of(next)).toHaveLength(3);
    expect(tool.duplicates()).toEqual([]);
    expect(nr.running).toBe(true);
    expect(crashLines(nr.output())).toEqual([]);
  }, 60_000);

  it('a full deploy while the broker is away does not hang, and the flow works once it is back', async () => {
    const outputBefore = nr.lastOutput().length;
    const since = Date.now();
    await mosq.stop();
    await until(() => statusTexts(sink, 'watch', since).includes('remote-tool.status.reconnecting'), 'the watch status reconnecting');
    const flows = ((await (await nr.api('/flows')).json()) as { flows: unknown[] }).flows;
    await nr.deployFull(flows);
    // the old registry closed without its broker (Node-RED logs "Close timed out" after 15 s otherwise)
    await until(() => /Started flows/.test(nr.lastOutput().slice(outputBefore)), 'the flows restarted', 10_000);
    const redeployed = Date.now();
    await mosq.start();
    await until(() => statusTexts(sink, 'watch', redeployed).at(-1) === 'node-red:common.status.connected', 'the watch status connected', 15_000);
    await until(async () => (await agentsOf(nr)).some((a) => a.id === 'slowpi' && a.ready), `slowpi ready; agent log:\n${agentLog.join('\n')}`, 40_000);
    const answersBefore = sink.of('answer').length;
    const next = nextPrefix(llm);
    await ask(nr);
    await until(() => sink.of('answer').length > answersBefore, `the run's answer; Node-RED:\n${nr.lastOutput().slice(outputBefore)}`, 15_000);
    expect(sink.of('answer').at(-1).toolCalls.map((c: any) => c.code ?? 'ok')).toEqual(['ok', 'ok', 'ok']);
    expect(tool.of(next)).toHaveLength(3);
    expect(tool.duplicates()).toEqual([]);
    const log = nr.lastOutput().slice(outputBefore);
    expect(log).not.toMatch(/Close timed out|Error stopping node/);
    expect(crashLines(nr.output())).toEqual([]);
  }, 90_000);
});

describe('Node-RED with the embedded broker, restarted under running agents', () => {
  const tool = new SlowTool();
  const agentLog: string[] = [];
  let agent: RunningAgent;
  let binary: ChildProcess | undefined;
  let binaryLog = '';
  let configDir = '';
  let recordFile = '';
  let llm: FakeLlm;
  let sink: HttpSink;
  let nr: NodeRedInstance;

  /** Keys of `prefix` that ran, on both agents: the in-process tool's record and diag_sleep's record file. */
  const ran = (prefix: string): string[] => {
    const lines = existsSync(recordFile) ? readFileSync(recordFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { tag?: string }) : [];
    return [...tool.of(prefix).map((e) => e.key), ...lines.map((l) => l.tag ?? '').filter((t) => t.startsWith(prefix))].sort();
  };
  const bothReady = async () => {
    const agents = await agentsOf(nr);
    return ['slowpi', 'diagbox'].every((id) => agents.some((a) => a.id === id && a.ready));
  };

  beforeAll(async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    // keys a and b run on the in-process agent, c on the toolmesh-agent binary's diag_sleep
    llm = await startFakeLlm(slowModel((key) => key.endsWith('-c')
      ? { tool: 'diagbox__diag_sleep', arguments: { ms: SLOW_MS, tag: key } }
      : toSlowTool(key)));
    sink = await startHttpSink();
    nr = await createNodeRed({ flows: buildFlows({ mode: 'embedded', host: '127.0.0.1', port }, llm, sink) });
    const log = (level: string) => (m: string) => { agentLog.push(`${new Date().toISOString()} ${level}: ${m}`); };
    agent = await startAgent(validateConfig({ version: 1, agent: { id: 'slowpi' }, broker: { url }, packs: {} }),
      { info: log('info'), warn: log('warn'), error: log('error') }, [tool.tool]);
    configDir = mkdtempSync(join(tmpdir(), 'toolmesh-faults-'));
    recordFile = join(configDir, 'diagbox-executions.jsonl');
    const cfg = join(configDir, 'diagbox.yaml');
    writeFileSync(cfg, `version: 1\nagent: { id: diagbox, kind: pi }\nbroker: { url: "${url}" }\npacks:\n  diag: { sleepTool: true, recordFile: "${recordFile}" }\n`);
    // the binary of the build Node-RED loads
    binary = spawn(process.execPath, [join(nr.packageDir, 'node_modules/@toolmesh/agent/dist/agent/cli.js'), '--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    binary.stdout!.on('data', (d) => (binaryLog += d));
    binary.stderr!.on('data', (d) => (binaryLog += d));
    await until(bothReady, `both agents ready; binary agent:\n${binaryLog}`, 20_000);
  });

  afterAll(async () => {
    if (binary && binary.exitCode === null && binary.signalCode === null) {
      const exited = new Promise((r) => binary!.once('exit', r));
      binary.kill('SIGTERM');
      await exited;
    }
    await agent?.stop();
    await nr?.dispose();
    await llm?.close();
    await sink?.close();
    if (configDir) rmSync(configDir, { recursive: true, force: true });
  });

  it('agents come back online, nothing runs twice, the run in progress ends with a clear error, the next run works', async () => {
    const prefix = nextPrefix(llm);
    await ask(nr);
    await until(() => ran(prefix).length >= 3, `three running calls ${prefix}*; binary agent:\n${binaryLog}`, 15_000);
    const exit = await nr.stop();
    const stoppedOutput = nr.lastOutput();
    // Node-RED stopped cleanly, and the run it had in progress ended with an error that says why
    expect(exit, stoppedOutput).toEqual({ code: 0, signal: null });
    expect(stoppedOutput).toMatch(/\[error\] \[toolmesh-llm-agent:agent\] stopped before the answer arrived: the node was closed \(redeploy or shutdown\)/);
    expect(crashLines(stoppedOutput)).toEqual([]);
    await nr.start();
    await until(bothReady, `both agents back online; binary agent:\n${binaryLog}\nNode-RED:\n${nr.lastOutput()}`, 30_000);
    expect(binary!.exitCode, binaryLog).toBeNull();
    // the calls of the stopped run are not run again by the restarted Node-RED or the agents
    await new Promise((r) => setTimeout(r, SLOW_MS + 1000));
    const evidence = `binary agent:\n${binaryLog}\nin-process agent:\n${agentLog.join('\n')}`;
    expect(ran(prefix), evidence).toEqual(['a', 'b', 'c'].map((k) => `${prefix}${k}`));
    expect(sink.of('answer'), 'no answer from the stopped run').toEqual([]);
    // the restarted flow works
    const next = nextPrefix(llm);
    await ask(nr);
    await until(() => sink.of('answer').length > 0 || sink.of('caught').length > 0, `the next run's answer; Node-RED:\n${nr.lastOutput()}`, 15_000);
    expect(sink.of('caught')).toEqual([]);
    expect(sink.of('answer')[0].toolCalls.map((c: any) => c.code ?? 'ok'), evidence).toEqual(['ok', 'ok', 'ok']);
    expect(ran(next)).toEqual(['a', 'b', 'c'].map((k) => `${next}${k}`));
    expect(crashLines(nr.output())).toEqual([]);
  }, 90_000);
});
