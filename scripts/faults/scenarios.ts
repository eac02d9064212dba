/**
 * The fault scenarios of `npm run faults` (docs/protocol.md, "Behaviour"; the reliability issue's
 * "Done when"). Each runs against real processes, measures (never assumes) its figures, and
 * returns one {@link Row} with the targets it missed. Times are ms, memory MB.
 */
import mqtt from 'mqtt';
import { RpcCaller } from '@toolmesh/agent/protocol/rpc-client';
import { startBroker } from '@toolmesh/agent/protocol/broker';
import { toolErrorOf } from '@toolmesh/agent/protocol/errors';
import { topics } from '@toolmesh/agent/protocol/topics';
import type { CallToolResult } from '@toolmesh/agent/protocol/schemas';
import {
  AgentProcess, MosquittoBroker, NodeRed, StatusObserver, callFlow, duplicates, freePort, accepts, mb, removeDir, say, sleep, tempDir, waitFor,
} from './lib';
import { startTcpProxy } from './tcp-proxy';

/** One row of the table. Unset figures print as `-`. */
export interface Row {
  id: string;
  scenario: string;
  /** Time to AGENT_OFFLINE, ms (or a text such as "none"). */
  offline?: string;
  /** Results delivered of those in flight, e.g. `100/100`. */
  delivered?: string;
  duplicates?: number;
  hangs?: number;
  /** Time from the fault's end (broker back, path healed) to the agent's `online`, ms. */
  backOnline?: string;
  /** RSS before → after, MB, per process. */
  rss?: string;
  /** `yes`, or which process died. */
  alive?: string;
  /** Further measured facts. */
  notes: string[];
  /** Targets missed; empty: the row passes. */
  misses: string[];
}

/** A scenario: an id, a title, and the function that runs it (cleanups it registers run even when it throws). */
export interface Scenario {
  id: string;
  title: string;
  run(row: Row, cleanup: (fn: () => Promise<void> | void) => void): Promise<void>;
}

const ms = (v: number) => `${Math.round(v)} ms`;

/** A call made by the suite's caller, with when and how it settled. */
interface Tracked { startedAt: number; settledAt?: number; result?: CallToolResult; id?: string }

/** Calls `tool` and records when and how the call settled. */
function track(caller: RpcCaller, agent: string, tool: string, args: Record<string, unknown>, timeoutMs: number): Tracked {
  const t: Tracked = { startedAt: Date.now() };
  void caller.call(agent, tool, args, { timeoutMs }).then((result) => {
    t.settledAt = Date.now();
    t.result = result;
  });
  return t;
}

const okSleep = (t: Tracked) => t.result !== undefined && !t.result.isError && (t.result.structuredContent as { slept?: number } | undefined)?.slept !== undefined;

/** `AGENT_OFFLINE ×3, TIMEOUT ×1` for the failed calls, or '' when none failed. */
function codes(calls: Tracked[]): string {
  const n = new Map<string, number>();
  for (const c of calls) {
    if (!c.result) continue;
    const code = toolErrorOf(c.result)?.code;
    if (code) n.set(code, (n.get(code) ?? 0) + 1);
  }
  return [...n].map(([k, v]) => `${k} ×${v}`).join(', ');
}

async function startCaller(url: string, callerId: string, cleanup: (fn: () => Promise<void>) => void): Promise<RpcCaller> {
  const caller = new RpcCaller({ connection: { url }, callerId });
  caller.on('warn', () => {});
  cleanup(() => caller.stop());
  await caller.start();
  return caller;
}

async function ready(caller: RpcCaller, agent: AgentProcess, ms = 15_000): Promise<void> {
  const ok = await waitFor(() => caller.agent(agent.id)?.ready || !agent.running, ms);
  if (!ok || !agent.running) throw new Error(`agent ${agent.id} did not come online (${agent.child.exitText}):\n${agent.child.output().slice(-3000)}`);
}

function startAgent(id: string, url: string, dir: string, cleanup: (fn: () => Promise<void>) => void, keepaliveSec?: number): AgentProcess {
  const a = new AgentProcess(id, url, dir, keepaliveSec);
  cleanup(() => a.child.stop());
  return a;
}

/**
 * a/b. 100 calls in flight to diag_sleep (1.5 s), mosquitto stopped (SIGTERM) and started again
 * on the same port 0.7 s after it exited.
 */
function brokerRestart(id: string, persistence: boolean): Scenario {
  return {
    id,
    title: persistence
      ? 'mosquitto restart, Debian default config (persistence true), 100 calls in flight'
      : 'mosquitto restart, persistence false, 100 calls in flight',
    async run(row, cleanup) {
      const N = 100;
      const dir = tempDir(`faults-${id}`);
      cleanup(() => removeDir(dir));
      const broker = await MosquittoBroker.start(persistence);
      cleanup(() => broker.stop());
      const obs = new StatusObserver(broker.url);
      cleanup(() => obs.close());
      const agent = startAgent('pi', broker.url, dir, cleanup);
      const caller = await startCaller(broker.url, `faults-${id}`, cleanup);
      await ready(caller, agent);
      const late = new Set<string>();
      caller.on('late-result', (e: { id: string; result: CallToolResult }) => { if (!e.result.isError) late.add(e.id); });
      const rssBefore = agent.rss();

      const calls = Array.from({ length: N }, (_, i) => track(caller, 'pi', 'diag_sleep', { ms: 1500, tag: `${id}-${i}` }, 15_000));
      const started = await waitFor(() => agent.executions().length >= N, 5000);
      row.notes.push(`${agent.executions().length}/${N} running on the agent when the broker stopped`);
      if (!started) row.misses.push('not all calls were running before the stop');
      const stopAt = Date.now();
      await broker.stop();
      const downMs = Date.now() - stopAt;
      await sleep(700);
      const upAt = await broker.restart();
      row.notes.push(`broker exited ${ms(downMs)} after SIGTERM, back ${ms(upAt - stopAt)} after it`);
      if (persistence) {
        const retainedLost = await obs.first('pi', 'lost', upAt, 3000);
        row.notes.push(retainedLost?.retained ? 'a retained `lost` greeted reconnecting clients' : 'no retained `lost` seen after the restart');
      }
      const online = await obs.online('pi', upAt, 20_000);
      row.backOnline = online ? ms(online.at - upAt) : 'not within 20 s';
      if (!online || online.at - upAt > 10_000) row.misses.push('agent not online again ≤ 10 s after the broker returned');

      await waitFor(() => calls.every((c) => c.settledAt), 20_000);
      const delivered = calls.filter(okSleep).length;
      row.delivered = `${delivered}/${N}`;
      const failed = codes(calls);
      if (failed) row.notes.push(`failed: ${failed}`);
      if (late.size) row.notes.push(`${late.size} late results after a failure`);
      if (delivered < N) row.misses.push(`${N - delivered} results not delivered`);
      const offline = calls.filter((c) => toolErrorOf(c.result ?? { content: [] })?.code === 'AGENT_OFFLINE');
      row.offline = offline.length ? `${offline.length} calls, after ${ms(Math.max(...offline.map((c) => c.settledAt! - stopAt)))}` : 'none';
      row.hangs = calls.filter((c) => !c.settledAt).length;
      if (row.hangs) row.misses.push(`${row.hangs} calls hang`);
      const ex = agent.executions();
      row.duplicates = duplicates(ex);
      if (row.duplicates) row.misses.push(`${row.duplicates} duplicate executions`);
      row.notes.push(`${ex.length} executions on the agent`);
      row.alive = agent.running ? 'yes' : `agent died (${agent.child.exitText})`;
      if (!agent.running) row.misses.push('agent exited');
      row.rss = `agent ${mb(rssBefore)} → ${mb(agent.rss())}`;
    },
  };
}

/** c. The agent is killed with SIGKILL while 5 calls run; the caller must answer AGENT_OFFLINE within 2 s. */
const killAgent: Scenario = {
  id: 'c',
  title: 'agent kill -9 mid-call (5 calls in flight)',
  async run(row, cleanup) {
    const N = 5;
    const dir = tempDir('faults-c');
    cleanup(() => removeDir(dir));
    const broker = await MosquittoBroker.start(false);
    cleanup(() => broker.stop());
    const agent = startAgent('pi', broker.url, dir, cleanup);
    const caller = await startCaller(broker.url, 'faults-c', cleanup);
    await ready(caller, agent);
    const rssBefore = agent.rss();
    const calls = Array.from({ length: N }, (_, i) => track(caller, 'pi', 'diag_sleep', { ms: 3000, tag: `c-${i}` }, 15_000));
    await waitFor(() => agent.executions().length >= N, 5000);
    const rssAt = agent.rss();
    const killAt = Date.now();
    agent.child.kill('SIGKILL');
    await waitFor(() => calls.every((c) => c.settledAt), 8000);
    const offline = calls.filter((c) => toolErrorOf(c.result ?? { content: [] })?.code === 'AGENT_OFFLINE');
    const worst = offline.length ? Math.max(...offline.map((c) => c.settledAt! - killAt)) : NaN;
    row.offline = offline.length ? `${ms(worst)} (${offline.length}/${N} calls)` : 'never';
    if (offline.length < N || worst > 2000) row.misses.push('AGENT_OFFLINE not within 2 s for every call');
    const outcome = offline.map((c) => (toolErrorOf(c.result!)?.details as { outcome?: string } | undefined)?.outcome);
    if (offline.length) row.notes.push(`AGENT_OFFLINE outcome: ${[...new Set(outcome)].join(', ')}`);
    row.delivered = `${calls.filter(okSleep).length}/${N} (killed)`;
    row.hangs = calls.filter((c) => !c.settledAt).length;
    if (row.hangs) row.misses.push(`${row.hangs} calls hang`);
    row.duplicates = duplicates(agent.executions());
    row.alive = `agent killed on purpose; mosquitto ${broker.running ? 'up' : 'DOWN'}`;
    row.rss = `agent ${mb(rssBefore)} → ${mb(rssAt)} (at the kill)`;
  },
};

/** d. Node-RED with the tool-registry's embedded aedes broker, restarted under two running agents. */
const nodeRedRestart: Scenario = {
  id: 'd',
  title: 'Node-RED (embedded aedes broker) restarted under 2 running agents',
  async run(row, cleanup) {
    const dir = tempDir('faults-d');
    cleanup(() => removeDir(dir));
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const nr = await NodeRed.start(callFlow({ mode: 'embedded', port, host: '127.0.0.1', policy: '*/*', callerId: 'nodered-faults' }));
    cleanup(() => nr.stop());
    const obs = new StatusObserver(url);
    cleanup(() => obs.close());
    const agents = [startAgent('pi-1', url, dir, cleanup), startAgent('pi-2', url, dir, cleanup)];
    const caller = await startCaller(url, 'faults-d', cleanup);
    for (const a of agents) await ready(caller, a);
    const viaNodeRed = await waitFor(async () => {
      const r = await nr.call({ agent: 'pi-1', tool: 'diag_echo', arguments: { text: 'x' } }, 3000);
      return r.isError === false;
    }, 15_000);
    if (!viaNodeRed) throw new Error(`Node-RED's remote-tool did not reach the agents:\n${nr.output().slice(-3000)}`);
    const rssBefore = [...agents.map((a) => a.rss()), nr.rss()];

    const callerConnects: number[] = [];
    caller.on('connect', () => callerConnects.push(Date.now()));
    const calls = agents.flatMap((a) => Array.from({ length: 10 }, (_, i) => track(caller, a.id, 'diag_sleep', { ms: 1500, tag: `d-${a.id}-${i}` }, 15_000)));
    const httpCalls = agents.flatMap((a) => Array.from({ length: 5 }, (_, i) => nr.call({ agent: a.id, tool: 'diag_sleep', arguments: { ms: 1500, tag: `d-nr-${a.id}-${i}` } })));
    await waitFor(() => agents.every((a) => a.executions().length >= 15), 5000);
    const stopAt = Date.now();
    await nr.stop();
    const stoppedMs = Date.now() - stopAt;
    await nr.restart();
    const upAt = Date.now();
    row.notes.push(`Node-RED stopped in ${ms(stoppedMs)}, flows running again ${ms(upAt - stopAt)} after SIGTERM`);
    const brokerUp = await waitFor(() => accepts(port), 1);
    if (!brokerUp) row.notes.push('embedded broker port not accepting when the flows reported started');
    const back = await Promise.all(agents.map((a) => obs.online(a.id, stopAt, 20_000)));
    const worst = Math.max(...back.map((b) => (b ? b.at - upAt : Infinity)));
    row.backOnline = Number.isFinite(worst) ? `${ms(worst)} (both)` : `not within 20 s: ${agents.filter((_, i) => !back[i]).map((a) => a.id).join(', ')}`;
    if (!(worst <= 10_000)) row.misses.push('agents not online again ≤ 10 s after Node-RED was back');

    await waitFor(() => calls.every((c) => c.settledAt), 20_000);
    const http = await Promise.all(httpCalls);
    const delivered = calls.filter(okSleep).length;
    row.delivered = `${delivered}/${calls.length} (suite caller)`;
    // the rule "broker restarts lose no result" (docs/protocol.md) covers the embedded broker too
    if (delivered < calls.length) row.misses.push(`${calls.length - delivered} results not delivered to the suite caller`);
    const failed = codes(calls);
    if (failed) row.notes.push(`suite caller failed: ${failed}`);
    for (const [i, a] of agents.entries()) {
      const seen = obs.seen.filter((x) => x.at >= stopAt && x.agent === a.id).map((x) => `${x.state}${x.retained ? ' (retained)' : ''} +${x.at - stopAt} ms`);
      const got = calls.slice(i * 10, i * 10 + 10).filter(okSleep).length;
      row.notes.push(`${a.id}: ${got}/10 delivered, statuses after the stop: ${seen.join(', ') || 'none'}`);
    }
    row.notes.push(`suite caller reconnected at ${callerConnects.map((t) => `+${t - stopAt} ms`).join(', ') || 'never'}`);
    const httpOk = http.filter((r) => r.isError === false).length;
    const httpWhy = [...new Set(http.filter((r) => r.isError !== false).map((r) => r.httpError ?? r.code ?? '?'))];
    row.notes.push(`${httpOk}/${http.length} in-flight calls of the restarted Node-RED answered${httpWhy.length ? ` (the others: ${httpWhy.join('; ')})` : ''}`);
    const after = await Promise.all(agents.map((a) => nr.call({ agent: a.id, tool: 'diag_sleep', arguments: { ms: 10, tag: `d-after-${a.id}` } })));
    const afterOk = after.filter((r) => r.isError === false).length;
    row.notes.push(`after the restart, Node-RED's remote-tool reaches ${afterOk}/2 agents`);
    if (afterOk < 2) row.misses.push('Node-RED cannot call the agents after its restart');
    row.hangs = calls.filter((c) => !c.settledAt).length;
    if (row.hangs) row.misses.push(`${row.hangs} calls hang`);
    row.duplicates = agents.reduce((n, a) => n + duplicates(a.executions()), 0);
    if (row.duplicates) row.misses.push(`${row.duplicates} duplicate executions`);
    const dead = [...agents.filter((a) => !a.running).map((a) => a.id), ...(nr.running ? [] : ['Node-RED'])];
    row.alive = dead.length ? `died: ${dead.join(', ')}` : 'yes';
    if (dead.length) row.misses.push(`died: ${dead.join(', ')}`);
    const rssAfter = [...agents.map((a) => a.rss()), nr.rss()];
    row.rss = `agents ${mb(rssBefore[0])}/${mb(rssBefore[1])} → ${mb(rssAfter[0])}/${mb(rssAfter[1])}; Node-RED ${mb(rssBefore[2])} → ${mb(rssAfter[2])} (new process)`;
  },
};

/** A raw MQTT client of the suite (not the protocol code under test). */
async function rawClient(url: string, cleanup: (fn: () => Promise<void>) => void): Promise<mqtt.MqttClient> {
  const c = mqtt.connect(url, { protocolVersion: 4, reconnectPeriod: 0 });
  cleanup(() => c.endAsync(true).then(() => undefined, () => undefined));
  await new Promise<void>((resolve, reject) => { c.once('connect', () => resolve()); c.once('error', reject); });
  return c;
}

/** The 40 KB request nested 20 000 levels deep (arguments.data is 20 000 nested arrays). */
export function nestedRequest(id: string, depth = 20_000): string {
  return `{"jsonrpc":"2.0","id":"${id}","method":"tools/call","params":{"name":"diag_echo","arguments":{"data":${'['.repeat(depth)}${']'.repeat(depth)}}}}`;
}

/** e. The nested request, published raw on the agent's req topic. */
const nested: Scenario = {
  id: 'e',
  title: 'tools/call nested 20,000 deep (40 KB) on the req topic',
  async run(row, cleanup) {
    const dir = tempDir('faults-e');
    cleanup(() => removeDir(dir));
    const broker = await MosquittoBroker.start(false);
    cleanup(() => broker.stop());
    const agent = startAgent('pi', broker.url, dir, cleanup);
    const caller = await startCaller(broker.url, 'faults-e', cleanup);
    await ready(caller, agent);
    const rssBefore = agent.rss();
    const t = topics();
    const raw = await rawClient(broker.url, cleanup);
    const answers: { at: number; msg: { id?: unknown; error?: { code: number; message: string } } }[] = [];
    raw.on('message', (_topic, p) => { try { answers.push({ at: Date.now(), msg: JSON.parse(p.toString()) }); } catch { /* ignore */ } });
    await raw.subscribeAsync(t.res('pi', 'fuzzer'), { qos: 1 });
    const payload = nestedRequest('deep-1');
    row.notes.push(`request ${(Buffer.byteLength(payload) / 1024).toFixed(0)} KB`);
    const sentAt = Date.now();
    await raw.publishAsync(t.req('pi', 'fuzzer'), payload, { qos: 1 });
    // the same shape on the status topics every agent and caller reads
    await raw.publishAsync(t.callerStatus('fuzzer'), nestedRequest('deep-2').replace('"jsonrpc"', '"state":"online","caller":"fuzzer","instance":"x","jsonrpc"'), { qos: 1 });
    await raw.publishAsync(t.agentStatus('fuzz-agent'), `{"state":"online","agent":"fuzz-agent","instance":"x","catalogRev":1,"x":${'['.repeat(20_000)}${']'.repeat(20_000)}}`, { qos: 1 });
    await raw.publishAsync(t.agentCatalog('fuzz-agent'), `{"agent":{"id":"fuzz-agent"},"rev":1,"tools":${'['.repeat(20_000)}${']'.repeat(20_000)}}`, { qos: 1 });
    const answer = await waitFor(() => answers.find((a) => a.msg.error && (a.msg.id === 'deep-1' || a.msg.id === null)), 5000);
    if (answer) {
      row.notes.push(`answer after ${ms(answer.at - sentAt)}: ${answer.msg.error!.code} "${answer.msg.error!.message}" (id ${JSON.stringify(answer.msg.id)})`);
      if (answer.msg.error!.code !== -32600) row.misses.push(`answered ${answer.msg.error!.code}, not -32600`);
      if (!/depth|deep|nest|64/i.test(answer.msg.error!.message)) row.misses.push('the error message does not name the limit');
    } else {
      row.notes.push('no answer within 5 s');
      row.misses.push('no -32600 answer');
    }
    await sleep(300);
    const ping = await caller.request('pi', 'ping', undefined, 3000).then(() => true, () => false);
    const echo = await caller.call('pi', 'diag_echo', { text: 'still here' }, { timeoutMs: 3000 });
    const answersAfter = ping && !echo.isError;
    row.alive = agent.running && answersAfter ? 'yes (agent answers ping and diag_echo)' : `agent ${agent.child.exitText}, answers: ${answersAfter}`;
    if (!agent.running || !answersAfter) row.misses.push('agent dead or not answering');
    if (!broker.running) row.misses.push('mosquitto died');
    row.rss = `agent ${mb(rssBefore)} → ${mb(agent.rss())}`;
  },
};

/** Seeded PRNG (mulberry32): the fuzz run is reproducible from FAULTS_SEED. @returns a float in [0, 1). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * One fuzzed message for the agent's req topic, a caller/agent status topic, or a res topic:
 * random bytes, random JSON, mutated protocol messages, deep and wide JSON, odd ids and numbers,
 * prototype keys, invalid UTF-8, and a few multi-MB strings.
 */
function fuzzPayload(rnd: () => number, i: number): { payload: Buffer | string; request: boolean } {
  const pick = <T>(xs: T[]): T => xs[Math.floor(rnd() * xs.length)];
  const randomJson = (d: number): unknown => {
    const k = rnd();
    if (d > 5 || k < 0.3) return pick([null, true, false, 0, -1, 1e308, 3.14, '', 'x', '\u0000', '🦀', 'a'.repeat(Math.floor(rnd() * 300))]);
    if (k < 0.65) return Array.from({ length: Math.floor(rnd() * 5) }, () => randomJson(d + 1));
    return Object.fromEntries(Array.from({ length: Math.floor(rnd() * 5) }, () => [pick(['id', 'method', 'params', 'jsonrpc', 'state', 'name', 'arguments', '_meta', 'x', '__proto__']), randomJson(d + 1)]));
  };
  const templates = (): Record<string, unknown>[] => [
    { jsonrpc: '2.0', id: `f-${i}`, method: 'tools/call', params: { name: 'diag_echo', arguments: { text: 't' } } },
    { jsonrpc: '2.0', id: i, method: 'tools/call', params: { name: 'diag_sleep', arguments: { ms: Math.floor(rnd() * 20) }, _meta: { timeoutMs: 1000, progressToken: `p${i}` } } },
    { jsonrpc: '2.0', id: `f-${i}`, method: 'tools/list' },
    { jsonrpc: '2.0', id: `f-${i}`, method: 'ping' },
    { jsonrpc: '2.0', method: 'notifications/cancelled', params: { requestId: `f-${i - 1}`, reason: 'fuzz' } },
    { jsonrpc: '2.0', id: `f-${i}`, method: 'tools/call', params: { name: 'no_such_tool', arguments: {} } },
    { jsonrpc: '2.0', id: 'dup', method: 'tools/call', params: { name: 'diag_echo', arguments: { text: String(i) } } },
    { state: pick(['online', 'lost', 'offline', 'weird']), caller: 'fuzzer', instance: String(i % 7) },
  ];
  const k = rnd();
  if (k < 0.15) return { payload: Buffer.from(Array.from({ length: Math.floor(rnd() * 2000) }, () => Math.floor(rnd() * 256))), request: false };
  if (k < 0.3) return { payload: JSON.stringify(randomJson(0)), request: false };
  if (k < 0.75) {
    const m = pick(templates());
    const r = rnd();
    if (r < 0.4) return { payload: JSON.stringify(m), request: typeof m.id !== 'undefined' && typeof m.method === 'string' };
    const keys = Object.keys(m);
    const mutated: Record<string, unknown> = { ...m };
    if (r < 0.55) delete mutated[pick(keys)];
    else if (r < 0.7) mutated[pick(keys)] = randomJson(3);
    else if (r < 0.8) mutated.id = pick([null, {}, [], 1e400, -0, 'x'.repeat(100_000), true, 2 ** 53 + 1]);
    else if (r < 0.9) {
      const s = JSON.stringify(m);
      return { payload: s.slice(0, Math.floor(rnd() * s.length)), request: false };
    } else {
      const s = Buffer.from(JSON.stringify(m));
      for (let j = 0; j < 3; j++) s[Math.floor(rnd() * s.length)] = Math.floor(rnd() * 256);
      return { payload: s, request: false };
    }
    return { payload: JSON.stringify(mutated), request: false };
  }
  if (k < 0.85) {
    const depth = rnd() < 0.1 ? 20_000 + Math.floor(rnd() * 30_000) : Math.floor(50 + rnd() * 2000);
    const [o, c] = rnd() < 0.5 ? ['[', ']'] : ['{"a":', '}'];
    const inner = `${o.repeat(depth)}1${c.repeat(depth)}`;
    return { payload: `{"jsonrpc":"2.0","id":"deep-${i}","method":"tools/call","params":{"name":"diag_echo","arguments":{"data":${inner}}}}`, request: true };
  }
  if (k < 0.92) {
    const width = rnd() < 0.1 ? 10_001 + Math.floor(rnd() * 90_000) : Math.floor(1000 + rnd() * 12_000);
    const wide = rnd() < 0.5 ? `[${Array.from({ length: width }, (_, j) => j).join(',')}]` : `{${Array.from({ length: width }, (_, j) => `"k${j}":${j}`).join(',')}}`;
    return { payload: `{"jsonrpc":"2.0","id":"wide-${i}","method":"tools/call","params":{"name":"diag_echo","arguments":{"data":${wide}}}}`, request: true };
  }
  if (k < 0.96) return { payload: '{"__proto__":{"polluted":1},"constructor":{"prototype":{"polluted":1}},"jsonrpc":"2.0","id":"proto","method":"ping"}', request: true };
  if (k < 0.999) return { payload: Buffer.concat([Buffer.from('{"jsonrpc":"2.0","id":"utf8","method":"tools/call","params":{"name":"diag_echo","arguments":{"text":"'), Buffer.from([0xc3, 0x28, 0xff, 0xfe, 0xed, 0xa0, 0x80]), Buffer.from('"}}}')]), request: true };
  return { payload: `{"jsonrpc":"2.0","id":"big-${i}","method":"tools/call","params":{"name":"diag_echo","arguments":{"text":"${'x'.repeat(5 * 1024 * 1024)}"}}}`, request: true };
}

/** f. 10 000 fuzzed messages on the agent's req topic, caller and agent status topics and res topics. */
const fuzz: Scenario = {
  id: 'f',
  title: '10,000 fuzzed messages (req, status and res topics)',
  async run(row, cleanup) {
    const N = Number(process.env.FAULTS_FUZZ_COUNT ?? 10_000);
    const seed = Number(process.env.FAULTS_SEED ?? 9);
    const dir = tempDir('faults-f');
    cleanup(() => removeDir(dir));
    const broker = await MosquittoBroker.start(false);
    cleanup(() => broker.stop());
    const agent = startAgent('pi', broker.url, dir, cleanup);
    const nr = await NodeRed.start(callFlow({ mode: 'external', broker: broker.url, policy: '*/*', callerId: 'nodered-fuzz' }));
    cleanup(() => nr.stop());
    const caller = await startCaller(broker.url, 'faults-f', cleanup);
    await ready(caller, agent);
    await waitFor(async () => (await nr.call({ agent: 'pi', tool: 'diag_echo', arguments: {} }, 3000)).isError === false, 15_000);
    const thrown: string[] = [];
    const onUncaught = (e: Error) => thrown.push(e.message);
    process.on('uncaughtException', onUncaught);
    cleanup(() => { process.off('uncaughtException', onUncaught); });
    const rssBefore = { agent: agent.rss(), nr: nr.rss(), mosq: broker.rss(), suite: process.memoryUsage().rss / 1024 / 1024 };

    const t = topics();
    const raw = await rawClient(broker.url, cleanup);
    let answers = 0;
    raw.on('message', () => { answers++; });
    await raw.subscribeAsync(t.res('pi', 'fuzzer'), { qos: 1 });
    const rnd = prng(seed);
    const where = (): string => {
      const k = rnd();
      if (k < 0.6) return t.req('pi', 'fuzzer');
      if (k < 0.75) return t.callerStatus(`fuzzer${Math.floor(rnd() * 5)}`);
      if (k < 0.85) return t.agentStatus(`fuzz-agent${Math.floor(rnd() * 5)}`);
      if (k < 0.9) return t.agentCatalog(`fuzz-agent${Math.floor(rnd() * 5)}`);
      if (k < 0.95) return t.res('pi', 'faults-f');
      return t.res('pi', 'nodered-fuzz');
    };
    let requests = 0;
    let bytes = 0;
    const started = Date.now();
    for (let i = 0; i < N; i += 100) {
      const batch: Promise<unknown>[] = [];
      for (let j = i; j < Math.min(N, i + 100); j++) {
        const topic = where();
        const { payload, request } = fuzzPayload(rnd, j);
        if (request && topic.endsWith('/req')) requests++;
        bytes += Buffer.byteLength(payload);
        batch.push(raw.publishAsync(topic, payload, { qos: 1, retain: rnd() < 0.01 }));
      }
      await Promise.all(batch);
      // pace on the agent: a ping after each batch is answered only after the batch before it
      await raw.publishAsync(t.req('pi', 'fuzzer'), JSON.stringify({ jsonrpc: '2.0', id: `sync-${i}`, method: 'ping' }), { qos: 1 });
      const want = answers + 1;
      await waitFor(() => answers >= want || !agent.running, 10_000);
      if (!agent.running) break;
    }
    row.notes.push(`${N} messages (${(bytes / 1024 / 1024).toFixed(1)} MB, seed ${seed}) in ${ms(Date.now() - started)}; ${answers} answers on the fuzzer's res topic (${requests} well-formed-looking requests sent)`);
    await sleep(500);
    const echo = await caller.call('pi', 'diag_echo', { text: 'after the fuzz' }, { timeoutMs: 3000 });
    const viaNr = await nr.call({ agent: 'pi', tool: 'diag_echo', arguments: { text: 'after the fuzz' } }, 5000);
    const dead = [
      ...(agent.running ? [] : [`agent (${agent.child.exitText})`]),
      ...(nr.running ? [] : [`Node-RED (${nr.exitText})`]),
      ...(broker.running ? [] : ['mosquitto']),
      ...(thrown.length ? [`suite caller threw ${thrown.length}× (${thrown[0]})`] : []),
    ];
    row.alive = dead.length ? `died: ${dead.join(', ')}` : 'yes (agent, Node-RED, mosquitto, suite caller)';
    if (dead.length) row.misses.push(`died: ${dead.join(', ')}`);
    if (echo.isError) row.misses.push(`agent does not answer afterwards (${toolErrorOf(echo)?.code})`);
    if (viaNr.isError !== false) row.misses.push(`Node-RED cannot call the agent afterwards (${viaNr.httpError ?? viaNr.code})`);
    const warnings = (nr.output().match(/\[warn\]/g) ?? []).length;
    row.notes.push(`Node-RED logged ${warnings} warnings`);
    row.rss = `agent ${mb(rssBefore.agent)} → ${mb(agent.rss())}; Node-RED ${mb(rssBefore.nr)} → ${mb(nr.rss())}; mosquitto ${mb(rssBefore.mosq)} → ${mb(broker.rss())}; suite ${mb(rssBefore.suite)} → ${mb(process.memoryUsage().rss / 1024 / 1024)}`;
  },
};

/** A broker for the partition scenario: Debian's mosquitto, or aedes as the tool-registry embeds it. */
interface PartitionBroker { name: string; start(): Promise<{ url: string; port: number; stop(): Promise<void> }>; lostWithinMs(keepaliveSec: number): number; bound: string }

const MOSQUITTO_PARTITION: PartitionBroker = {
  name: 'mosquitto',
  start: () => MosquittoBroker.start(false),
  // measured here: mosquitto 2.0.11 publishes a silent client's will ~3 × keepalive after its last packet
  lostWithinMs: (k) => 3 * k * 1000 + 1000,
  bound: '3 × keepalive + 1 s (mosquitto 2.0.11)',
};
const AEDES_PARTITION: PartitionBroker = {
  name: 'aedes',
  start: async () => {
    const b = await startBroker({ port: 0 });
    return { url: b.url, port: b.port, stop: () => b.close() };
  },
  lostWithinMs: (k) => 1.5 * k * 1000 + 500,
  bound: '1.5 × keepalive + 0.5 s',
};

/**
 * g. The agent behind a TCP proxy that blackholes both directions without closing sockets
 * (keepalive 2 s); 5 calls with a 30 s budget run when the path goes silent. The broker must
 * publish `lost`, the caller fail the calls with AGENT_OFFLINE, and after the heal the agent must
 * come back and the results it kept reach the caller (as late results).
 */
function partition(id: string, b: PartitionBroker): Scenario {
  return {
    id,
    title: `partition (blackhole proxy, keepalive 2 s) on ${b.name}`,
    async run(row, cleanup) {
      const N = 5;
      const KEEPALIVE = 2;
      const dir = tempDir(`faults-${id}`);
      cleanup(() => removeDir(dir));
      const broker = await b.start();
      cleanup(() => broker.stop());
      const proxy = await startTcpProxy({ targetPort: broker.port });
      cleanup(() => proxy.close());
      const obs = new StatusObserver(broker.url);
      cleanup(() => obs.close());
      const agent = startAgent('pi', `mqtt://127.0.0.1:${proxy.port}`, dir, cleanup, KEEPALIVE);
      const caller = await startCaller(broker.url, `faults-${id}`, cleanup);
      await ready(caller, agent);
      const late = new Map<string, CallToolResult>();
      caller.on('late-result', (e: { id: string; result: CallToolResult }) => late.set(e.id, e.result));
      const rssBefore = agent.rss();
      const ids: string[] = [];
      const calls = Array.from({ length: N }, (_, i) => track(caller, 'pi', 'diag_sleep', { ms: 1500, tag: `${id}-${i}` }, 30_000));
      await waitFor(() => agent.executions().length >= N, 5000);
      for (const e of agent.executions()) ids.push(String(e.id));

      const cutAt = Date.now();
      proxy.blackhole();
      const lastPacketAt = proxy.lastForwardedAt.up;
      const lost = await obs.first('pi', 'lost', cutAt, 20_000);
      if (lost) {
        row.notes.push(`lost published ${ms(lost.at - lastPacketAt)} after the agent's last packet (${ms(lost.at - cutAt)} after the blackhole began); bound ${b.bound}`);
        if (lost.at - lastPacketAt > b.lostWithinMs(KEEPALIVE)) row.misses.push(`lost later than ${b.bound}`);
        if (lost.at - lastPacketAt > 1.5 * KEEPALIVE * 1000 + 500) row.notes.push('MQTT-3.1.2-24 asks for 1.5 × keepalive');
      } else {
        row.misses.push('broker never published lost');
      }
      await waitFor(() => calls.every((c) => c.settledAt), 10_000);
      const offline = calls.filter((c) => toolErrorOf(c.result ?? { content: [] })?.code === 'AGENT_OFFLINE');
      const worst = offline.length ? Math.max(...offline.map((c) => c.settledAt! - cutAt)) : NaN;
      row.offline = offline.length ? `${ms(worst)} after the blackhole${lost ? `, ${ms(worst - (lost.at - cutAt))} after lost` : ''} (${offline.length}/${N})` : 'never';
      if (offline.length < N) row.misses.push('not every call failed AGENT_OFFLINE');
      else if (lost && worst - (lost.at - cutAt) > 2000) row.misses.push('AGENT_OFFLINE later than 2 s after lost');

      await sleep(Math.max(0, (lost?.at ?? Date.now()) + 2000 - Date.now()));
      const healAt = Date.now();
      row.notes.push(`partitioned for ${ms(healAt - cutAt)}`);
      proxy.heal();
      const online = await obs.online('pi', healAt, 20_000);
      row.backOnline = online ? ms(online.at - healAt) : 'not within 20 s';
      if (!online || online.at - healAt > 10_000) row.misses.push('agent not online again ≤ 10 s after the heal');
      if (online && online.instance !== caller.agent('pi')?.status?.instance) row.notes.push('came back as a new instance');
      await waitFor(() => calls.every((c) => okSleep(c) || [...late.values()].length >= N), 10_000);
      await sleep(200);
      const lateOk = [...late.values()].filter((r) => !r.isError).length;
      const direct = calls.filter(okSleep).length;
      row.delivered = `${lateOk + direct}/${N}${lateOk ? ` (${lateOk} as late results)` : ''}`;
      if (lateOk + direct < N) row.misses.push('kept results not delivered after the heal');
      row.hangs = calls.filter((c) => !c.settledAt).length;
      if (row.hangs) row.misses.push(`${row.hangs} calls hang`);
      row.duplicates = duplicates(agent.executions());
      if (row.duplicates) row.misses.push(`${row.duplicates} duplicate executions`);
      row.alive = agent.running ? 'yes' : `agent died (${agent.child.exitText})`;
      if (!agent.running) row.misses.push('agent exited');
      row.rss = `agent ${mb(rssBefore)} → ${mb(agent.rss())}`;
    },
  };
}

/** h. The broker is away for 5 s: the agent must keep running the whole time and come back online. */
const brokerAway: Scenario = {
  id: 'h',
  title: 'broker stopped for 5 s: the agent keeps running',
  async run(row, cleanup) {
    const dir = tempDir('faults-h');
    cleanup(() => removeDir(dir));
    const broker = await MosquittoBroker.start(false);
    cleanup(() => broker.stop());
    const obs = new StatusObserver(broker.url);
    cleanup(() => obs.close());
    const agent = startAgent('pi', broker.url, dir, cleanup);
    await obs.online('pi', 0, 15_000);
    const rssBefore = agent.rss();
    const stopAt = Date.now();
    await broker.stop();
    await sleep(Math.max(0, stopAt + 5000 - Date.now()));
    const runningAtRestart = agent.running;
    const upAt = await broker.restart();
    const online = await obs.online('pi', upAt, 20_000);
    row.backOnline = online ? ms(online.at - upAt) : 'not within 20 s';
    if (!online || online.at - upAt > 10_000) row.misses.push('agent not online again ≤ 10 s after the broker returned');
    row.alive = runningAtRestart && agent.running ? 'yes, the whole time' : `agent exited ${agent.child.exitText} ${ms(agent.child.exitedAt - stopAt)} after the broker stopped`;
    if (!runningAtRestart || !agent.running) row.misses.push('agent exited while the broker was away');
    row.rss = `agent ${mb(rssBefore)} → ${mb(agent.rss())}`;
  },
};

/** Every scenario, in table order. */
export const SCENARIOS: Scenario[] = [
  brokerRestart('a', false),
  brokerRestart('b', true),
  killAgent,
  nodeRedRestart,
  nested,
  fuzz,
  partition('g', MOSQUITTO_PARTITION),
  partition('g2', AEDES_PARTITION),
  brokerAway,
];

/** Runs one scenario with a time limit (ms); cleanups run in reverse order, also on failure. */
export async function runScenario(s: Scenario, limitMs: number): Promise<Row> {
  const row: Row = { id: s.id, scenario: s.title, notes: [], misses: [] };
  const cleanups: Array<() => Promise<void> | void> = [];
  const started = Date.now();
  say(`${s.id}: ${s.title}`);
  let timer: NodeJS.Timeout | undefined;
  try {
    await Promise.race([
      s.run(row, (fn) => cleanups.push(fn)),
      new Promise((_, reject) => { timer = setTimeout(() => reject(new Error(`scenario took longer than ${limitMs / 1000} s`)), limitMs); }),
    ]);
  } catch (e) {
    row.misses.push(`error: ${(e as Error).message.split('\n')[0]}`);
    say(`${s.id} failed: ${(e as Error).stack ?? e}`);
  } finally {
    clearTimeout(timer);
    for (const fn of cleanups.reverse()) {
      try { await fn(); } catch (e) { say(`${s.id} cleanup: ${(e as Error).message}`); }
    }
  }
  row.notes.push(`took ${((Date.now() - started) / 1000).toFixed(1)} s`);
  say(`${s.id}: ${row.misses.length ? `MISSED ${row.misses.join('; ')}` : 'ok'}`);
  return row;
}
