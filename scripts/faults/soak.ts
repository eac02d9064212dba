/**
 * `npm run soak` (not in CI): a long steady load through a real Node-RED's remote-tool node to
 * two agents (the built `toolmesh-agent`), over the tool-registry's embedded broker, then the
 * figures: resident memory of each agent and of Node-RED after the warm-up and at the end, and
 * p50/p99 latency per minute.
 *
 * The load (default 200 calls/s), per 20 calls: 10 `diag_echo` and 4 short `diag_sleep` (5–50 ms)
 * that must succeed, 2 with invalid arguments (must fail INVALID_ARGUMENTS), 2 `diag_sleep` 1 s
 * through a remote-tool with a 200 ms budget (must fail TIMEOUT, which cancels them on the agent),
 * all as HTTP POSTs into a flow (http in → remote-tool → http response); and 2 calls cancelled
 * 50 ms after they start (CANCELLED) by a caller in this process, since remote-tool cancels only on
 * redeploy. Latency is the HTTP round trip of the `diag_echo` calls (POST in, reply out).
 *
 * Environment: SOAK_SECONDS (default 600), SOAK_RATE (calls/s, default 200),
 * SOAK_WARMUP_SECONDS (default 360, at most half the run). The default warm-up outlasts the
 * agents' duplicate-suppression store, which keeps every result for at least 5 minutes
 * (protocol/rpc-server.ts: max(5 min, 2 × the longest tool timeout)), so its filling is not
 * taken for a leak; shorter warm-ups show it as growth (the per-minute RSS columns show the curve).
 * Memory is sampled every 5 s. Growth is the RSS floor (smallest sample) of the last minute minus
 * the floor of the first minute after the warm-up: a garbage-collected process's RSS swings by tens
 * of MB between collections (Node-RED: 195–275 MB within a minute at this load), so single samples
 * compare noise, while the floor moves only with memory that is kept.
 * Exits 1 when a process died, an agent or Node-RED grew by more than 10 MB after the warm-up,
 * a call ran twice, or more than 0.5 % of the calls ended otherwise than they must.
 */
import { RpcCaller } from '@toolmesh/agent/protocol/rpc-client';
import { toolErrorOf } from '@toolmesh/agent/protocol/errors';
import { AgentProcess, NodeRed, callFlow, duplicates, freePort, killEverything, mb, percentile, say, sleep, tempDir, waitFor, type CallReply } from './lib';

const SECONDS = Number(process.env.SOAK_SECONDS ?? 600);
const RATE = Number(process.env.SOAK_RATE ?? 200);
const WARMUP_S = Math.min(Number(process.env.SOAK_WARMUP_SECONDS ?? 360), SECONDS / 2);
/** RSS growth after the warm-up that still passes, MB. */
const MAX_GROWTH_MB = 10;

type Kind = 'echo' | 'sleep' | 'invalid' | 'timeout' | 'cancel';
/** What each kind must end with: `ok`, or the tool error code. */
const EXPECTED: Record<Kind, string> = { echo: 'ok', sleep: 'ok', invalid: 'INVALID_ARGUMENTS', timeout: 'TIMEOUT', cancel: 'CANCELLED' };
const MIX: Kind[] = ['echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'echo', 'sleep', 'sleep', 'sleep', 'sleep', 'invalid', 'invalid', 'timeout', 'timeout', 'cancel', 'cancel'];

/** Calls of one minute (by start time): how many of each outcome, and the latencies of its diag_echo calls (ms). */
interface Minute { calls: number; asExpected: number; unexpected: number; byKind: Record<string, number>; latencies: number[]; samples: string[] }

async function main(): Promise<number> {
  const dir = tempDir('soak');
  const port = await freePort();
  const url = `mqtt://127.0.0.1:${port}`;
  say(`soak: ${SECONDS} s at ${RATE} calls/s, warm-up ${WARMUP_S} s; Node-RED with the embedded broker on ${port}`);
  const nr = await NodeRed.start(callFlow({ mode: 'embedded', port, host: '127.0.0.1', policy: '*/*', callerId: 'nodered-soak' }, 200), 'warn');
  const agents = [new AgentProcess('soak-a', url, dir), new AgentProcess('soak-b', url, dir)];
  const canceller = new RpcCaller({ connection: { url }, callerId: 'soak-cancel' });
  canceller.on('warn', () => {});
  await canceller.start();
  for (const a of agents) {
    const ok = await waitFor(async () => (await nr.call({ agent: a.id, tool: 'diag_echo', arguments: {} }, 3000)).isError === false || !a.running, 30_000);
    if (!ok || !a.running) throw new Error(`agent ${a.id} not reachable through Node-RED (${a.child.exitText}):\n${a.child.output().slice(-2000)}`);
    await waitFor(() => canceller.agent(a.id)?.ready, 10_000);
  }

  const minutes: Minute[] = [];
  const minuteOf = (at: number) => {
    const m = Math.floor((at - started) / 60_000);
    while (minutes.length <= m) minutes.push({ calls: 0, asExpected: 0, unexpected: 0, byKind: {}, latencies: [], samples: [] });
    return minutes[m];
  };
  const record = (kind: Kind, startedAt: number, outcome: string) => {
    const m = minuteOf(startedAt);
    m.calls++;
    const good = outcome === EXPECTED[kind];
    if (good) m.asExpected++;
    else {
      m.unexpected++;
      if (m.samples.length < 5) m.samples.push(`${kind} → ${outcome}`);
    }
    m.byKind[`${kind}:${good ? 'ok' : outcome}`] = (m.byKind[`${kind}:${good ? 'ok' : outcome}`] ?? 0) + 1;
    if (good && kind === 'echo') m.latencies.push(Date.now() - startedAt); // diag_sleep's own 5–50 ms would mask the mesh's latency
  };
  const outcomeOf = (r: CallReply) => (r.httpError ? `http: ${r.httpError}` : r.isError === false ? 'ok' : r.code ?? 'error');

  let inFlight = 0;
  const one = async (i: number) => {
    const kind = MIX[Math.floor(i / 2) % MIX.length];
    const agent = agents[i % 2].id;
    const at = Date.now();
    inFlight++;
    try {
      if (kind === 'cancel') {
        const ac = new AbortController();
        const t = setTimeout(() => ac.abort('soak cancel'), 50);
        const r = await canceller.call(agent, 'diag_sleep', { ms: 1000, tag: `cancel-${i}` }, { signal: ac.signal, timeoutMs: 10_000 });
        clearTimeout(t);
        return record(kind, at, r.isError ? toolErrorOf(r)?.code ?? 'error' : 'ok');
      }
      const body = kind === 'echo' ? { agent, tool: 'diag_echo', arguments: { text: `soak ${i}` } }
        : kind === 'sleep' ? { agent, tool: 'diag_sleep', arguments: { ms: 5 + (i % 46), tag: `s-${i}` } }
          : kind === 'invalid' ? { agent, tool: 'diag_sleep', arguments: { ms: 'soon' } }
            : { agent, tool: 'diag_sleep', arguments: { ms: 1000, tag: `t-${i}` }, kind: 'timeout' };
      record(kind, at, outcomeOf(await nr.call(body, 15_000)));
    } finally {
      inFlight--;
    }
  };

  const rssLog: { at: number; values: number[] }[] = [];
  const names = [...agents.map((a) => `agent ${a.id}`), 'Node-RED'];
  const sampleRss = () => rssLog.push({ at: Date.now(), values: [...agents.map((a) => a.rss()), nr.rss()] });
  let warm: number[] | undefined;
  const minuteRss: number[][] = [];
  const started = Date.now();
  const end = started + SECONDS * 1000;
  let issued = 0;
  let maxInFlight = 0;
  let nextReport = started + 60_000;
  let nextSample = started + 5000;
  const pending = new Set<Promise<void>>();
  while (Date.now() < end) {
    const due = Math.floor(((Date.now() - started) * RATE) / 1000);
    for (; issued < due; issued++) {
      const p = one(issued).catch((e: Error) => record('echo', Date.now(), `threw: ${e.message}`));
      pending.add(p);
      void p.finally(() => pending.delete(p));
    }
    maxInFlight = Math.max(maxInFlight, inFlight);
    if (!warm && Date.now() - started >= WARMUP_S * 1000) {
      sampleRss();
      warm = rssLog[rssLog.length - 1].values;
      say(`after the warm-up: ${names.map((n, j) => `${n} ${mb(warm![j])} MB`).join(', ')}`);
    }
    if (Date.now() >= nextSample) {
      sampleRss();
      nextSample += 5000;
    }
    if (Date.now() >= nextReport) {
      sampleRss();
      minuteRss.push(rssLog[rssLog.length - 1].values);
      const done = Math.round((Date.now() - started) / 60_000);
      const m = minutes[done - 1];
      say(`minute ${done}: ${m ? `${m.calls} calls, p50 ${percentile(m.latencies, 50)} ms, p99 ${percentile(m.latencies, 99)} ms, ${m.unexpected} unexpected; ` : ''}RSS ${names.map((n, j) => `${n} ${mb(rssLog[rssLog.length - 1].values[j])}`).join(', ')}; in flight ${inFlight}`);
      nextReport += 60_000;
    }
    if (agents.some((a) => !a.running) || !nr.running) break;
    await sleep(5);
  }
  const elapsed = (Date.now() - started) / 1000;
  await Promise.race([Promise.all(pending), sleep(20_000)]);
  await sleep(1000);
  sampleRss();
  const last = rssLog[rssLog.length - 1].values;
  const dead = [...agents.filter((a) => !a.running).map((a) => `${a.id} (${a.child.exitText})`), ...(nr.running ? [] : [`Node-RED (${nr.exitText})`])];
  const dups = agents.reduce((n, a) => n + duplicates(a.executions()), 0);
  const executions = agents.reduce((n, a) => n + a.executions().length, 0);
  const total = minutes.reduce((n, m) => n + m.calls, 0);
  const unexpected = minutes.reduce((n, m) => n + m.unexpected, 0);

  const out: string[] = [];
  out.push(`## Soak: ${elapsed.toFixed(0)} s at ${RATE} calls/s (${(issued / elapsed).toFixed(0)} issued/s), two agents through Node-RED ${new Date().toISOString()}`, '');
  out.push(`| minute | calls | as expected | unexpected | p50 (ms) | p99 (ms) | max (ms) | RSS at its end (MB): ${names.join(' / ')} |`, '| --- | --- | --- | --- | --- | --- | --- | --- |');
  minutes.forEach((m, i) => {
    const rss = minuteRss[i] ?? last;
    out.push(`| ${i + 1} | ${m.calls} | ${m.asExpected} | ${m.unexpected}${m.samples.length ? ` (${m.samples.join('; ')})` : ''} | ${percentile(m.latencies, 50)} | ${percentile(m.latencies, 99)} | ${m.latencies.length ? Math.max(...m.latencies) : '-'} | ${rss.map(mb).join(' / ')} |`);
  });
  // floors: the smallest 5-second sample of the first minute after the warm-up, and of the last minute
  const warmAt = started + WARMUP_S * 1000;
  const window = (from: number, to: number) => rssLog.filter((r) => r.at >= from && r.at <= to);
  const floor = (rows: { values: number[] }[], j: number) => (rows.length ? Math.min(...rows.map((r) => r.values[j])) : NaN);
  const median = (rows: { values: number[] }[], j: number) => percentile(rows.map((r) => r.values[j]), 50);
  const firstMinute = window(warmAt, warmAt + 60_000);
  const lastMinute = window(started + elapsed * 1000 - 60_000, Date.now());
  const growth = names.map((_, j) => floor(lastMinute, j) - floor(firstMinute, j));
  out.push('', '| process | RSS floor / median, first minute after warm-up (MB) | RSS floor / median, last minute (MB) | floor growth (MB) | last sample (MB) |', '| --- | --- | --- | --- | --- |');
  names.forEach((n, j) => out.push(`| ${n} | ${mb(floor(firstMinute, j))} / ${mb(median(firstMinute, j))} | ${mb(floor(lastMinute, j))} / ${mb(median(lastMinute, j))} | ${mb(growth[j])} | ${mb(last[j])} |`));
  const kinds = new Map<string, number>();
  for (const m of minutes) for (const [k, v] of Object.entries(m.byKind)) kinds.set(k, (kinds.get(k) ?? 0) + v);
  out.push('', `Outcomes: ${[...kinds].sort().map(([k, v]) => `${k} ${v}`).join(', ')}.`);
  out.push(`${total} calls, ${unexpected} unexpected (${((unexpected / Math.max(1, total)) * 100).toFixed(2)} %); at most ${maxInFlight} in flight; ${executions} diag_sleep executions recorded, ${dups} duplicates; processes alive: ${dead.length ? `NO: ${dead.join(', ')}` : 'all'}.`);
  console.log(out.join('\n'));

  const misses: string[] = [];
  if (dead.length) misses.push(`died: ${dead.join(', ')}`);
  names.forEach((n, j) => { if (!(growth[j] <= MAX_GROWTH_MB)) misses.push(`${n}'s RSS floor grew ${mb(growth[j])} MB after the warm-up`); });
  if (dups) misses.push(`${dups} duplicate executions`);
  if (unexpected / Math.max(1, total) > 0.005) misses.push(`${unexpected} calls ended unexpectedly`);
  console.log(misses.length ? `\nMISSED: ${misses.join('; ')}` : '\nall soak targets met');
  await canceller.stop();
  for (const a of agents) await a.child.stop();
  await nr.stop();
  return misses.length ? 1 : 0;
}

main().then((code) => {
  killEverything();
  process.exit(code);
}, (e: Error) => {
  say(`soak failed: ${e.stack ?? e.message}`);
  killEverything();
  process.exit(1);
});
