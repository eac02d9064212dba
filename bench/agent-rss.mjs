#!/usr/bin/env node
// ToolMesh benchmark: idle resident memory of real toolmesh-agent processes, one per pack mix, and
// which libraries each has loaded. Prints figures, asserts nothing. Everything on 127.0.0.1.
//
//   node bench/agent-rss.mjs                       this checkout's build (run `npm run build` first)
//   node bench/agent-rss.mjs --before /work/main   and another checkout's build beside it
//
// Each agent is the agent package's bin, packages/agent/dist/agent/cli.js (dist/agent/cli.js in a
// checkout from before the agent package), started through its shebang (as users run the bin, with its V8
// flags) with a config file in a temp dir, against an aedes broker in this process. The bench waits
// for the agent's retained `online` status, reads VmRSS from /proc/<pid>/status after BENCH_IDLE_MS
// (default 3000) and again after BENCH_LATE_MS (default 15000; V8's memory reducer has usually run
// a full GC by then), then asks the preload hook bench/loaded-modules.cjs (NODE_OPTIONS --require;
// SIGUSR2) for the packages in its require.cache. The five mixes of a run idle side by side (one
// process each); BENCH_RUNS runs (default 3); medians are printed. The goal (issue 18): idle RSS
// <= 60 MB without the docker pack.
//
// Mixes: diag; system; robot (simulated backend, videotestsrc camera); desktop (one allowed folder
// in the temp dir, no apps); docker+system with packs.docker.socketPath at a socket that does not
// exist: the docker pack loads dockerode, pings, finds no engine and is left out of the catalog
// ("no Docker engine reachable"), so that agent serves the system tools only; its figure is what
// dockerode costs an agent configured for Docker.
import { spawn } from 'node:child_process';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { startBroker } = require(join(root, 'packages/agent/dist/protocol/broker.js'));
const mqtt = require('mqtt');

const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const IDLE_MS = Number(process.env.BENCH_IDLE_MS ?? 3000);
const LATE_MS = Math.max(IDLE_MS, Number(process.env.BENCH_LATE_MS ?? 15000));
const ONLINE_TIMEOUT_MS = 20_000;
const HOOK = join(root, 'bench/loaded-modules.cjs');
/** Libraries worth naming when loaded: the heavy ones and the ones every agent needs. */
const WATCH = ['dockerode', 'ssh2', '@grpc/grpc-js', 'protobufjs', 'mqtt', 'zod', 'yaml', 'ws'];

const argAt = process.argv.indexOf('--before');
const before = argAt > 0 ? resolve(process.argv[argAt + 1] ?? '') : undefined;
/** The agent bin of a checkout's build: the agent package's, or dist/agent/cli.js from before it. */
const cliOf = (checkout) => [join(checkout, 'packages/agent/dist/agent/cli.js'), join(checkout, 'dist/agent/cli.js')].find((f) => existsSync(f));
if (before && !cliOf(before)) {
  console.error(`--before ${before}: no packages/agent/dist/agent/cli.js nor dist/agent/cli.js there (build that checkout first)`);
  process.exit(2);
}

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-agent-rss-'));
const folder = join(dir, 'files');
mkdirSync(folder);
const MIXES = {
  diag: 'diag: {}',
  system: 'system: {}',
  'robot (simulated)': 'robot: { backend: simulated, camera: { source: videotestsrc } }',
  desktop: `desktop: { allowedPaths: ["${folder}"] }`,
  'docker (no engine) + system': `docker: { socketPath: "${join(dir, 'no-docker.sock')}" }\n  system: {}`,
};

const sleep = (t) => new Promise((r) => setTimeout(r, t));
const rssMb = (pid) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1]) / 1024;
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Starts one agent of `checkout` with `packs`, waits for it online, idles, measures, stops it. */
async function measure(checkout, broker, watcher, id, packs) {
  const cfg = join(dir, `${id}.yaml`);
  const out = join(dir, `${id}.modules.json`);
  rmSync(out, { force: true });
  writeFileSync(cfg, `version: 1\nagent: { id: ${id} }\nbroker: { url: "${broker.url}" }\npacks:\n  ${packs}\n`);
  const online = new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`${id}: not online within ${ONLINE_TIMEOUT_MS} ms`)), ONLINE_TIMEOUT_MS);
    const h = (topic, p) => {
      if (topic !== `toolmesh/v1/agents/${id}/status` || !p.length || JSON.parse(p.toString()).state !== 'online') return;
      clearTimeout(timer); watcher.off('message', h); res();
    };
    watcher.on('message', h);
  });
  let log = '';
  const child = spawn(cliOf(checkout), ['--config', cfg], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_OPTIONS: `--require ${HOOK}`, TOOLMESH_MODULES_OUT: out },
  });
  child.stdout.on('data', (d) => (log += d));
  child.stderr.on('data', (d) => (log += d));
  try {
    await online;
  } catch (e) {
    child.kill('SIGKILL');
    throw new Error(`${e.message}\n${log}`);
  }
  await sleep(IDLE_MS);
  const rss = rssMb(child.pid);
  await sleep(LATE_MS - IDLE_MS);
  const late = rssMb(child.pid);
  child.kill('SIGUSR2');
  for (let i = 0; i < 50 && !existsSync(out); i++) await sleep(20);
  const loaded = existsSync(out) ? JSON.parse(readFileSync(out, 'utf8')) : { packages: [], files: NaN };
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  return { rss, late, packages: loaded.packages, files: loaded.files, log };
}

/** Median idle RSS and the loaded packages of every mix, for one checkout's build. */
async function measureCheckout(checkout, tag) {
  const broker = await startBroker({ port: 0 });
  const watcher = await mqtt.connectAsync(broker.url);
  await watcher.subscribeAsync('toolmesh/v1/agents/+/status', { qos: 1 });
  const mixes = Object.entries(MIXES);
  const runs = [];
  for (let r = 0; r < RUNS; r++) runs.push(await Promise.all(mixes.map(([, packs], i) => measure(checkout, broker, watcher, `rss${tag}${r}m${i}`, packs))));
  const rows = {};
  mixes.forEach(([mix], i) => {
    const of = runs.map((run) => run[i]);
    const rss = of.map((x) => x.rss);
    rows[mix] = { rss: median(rss), min: Math.min(...rss), max: Math.max(...rss), late: median(of.map((x) => x.late)), packages: of[0].packages, files: of[0].files, log: of[0].log };
  });
  await watcher.endAsync();
  await broker.close();
  return rows;
}

/** RSS of a bare Node process (with the agent's V8 flag) that loads `mods` and idles. */
async function floor(mods) {
  const child = spawn(process.execPath, ['--max-semi-space-size=1', '-e', `${mods.map((m) => `require(${JSON.stringify(m)});`).join('')}setTimeout(()=>{},60000)`], { cwd: root, stdio: 'ignore' });
  await sleep(IDLE_MS);
  const rss = rssMb(child.pid);
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
  return rss;
}

try {
  const after = await measureCheckout(root, 'a');
  const was = before ? await measureCheckout(before, 'b') : undefined;
  const fmt = (x) => x.toFixed(1);
  console.log(`\nidle RSS of toolmesh-agent processes, MB (median of ${RUNS} runs, ${IDLE_MS} ms after online, min-max in brackets; 'late': ${LATE_MS} ms after online)`);
  console.table(Object.fromEntries(Object.entries(after).map(([mix, a]) => {
    const row = { [`RSS ${before ? 'after' : ''}`.trim()]: `${fmt(a.rss)} [${fmt(a.min)}-${fmt(a.max)}]` };
    if (was) {
      row['RSS before'] = `${fmt(was[mix].rss)} [${fmt(was[mix].min)}-${fmt(was[mix].max)}]`;
      row['saved'] = fmt(was[mix].rss - a.rss);
    }
    row['late'] = fmt(a.late);
    if (was) row['late before'] = fmt(was[mix].late);
    row['<= 60 MB (late)'] = `${a.rss <= 60 ? 'yes' : 'no'} (${a.late <= 60 ? 'yes' : 'no'})`;
    row['dockerode loaded'] = a.packages.includes('dockerode') ? 'yes' : 'no';
    if (was) row['dockerode before'] = was[mix].packages.includes('dockerode') ? 'yes' : 'no';
    row['packages / files'] = `${a.packages.length} / ${a.files}`;
    if (was) row['before'] = `${was[mix].packages.length} / ${was[mix].files}`;
    return [mix, row];
  })));
  console.log('watched libraries loaded (after):');
  for (const [mix, a] of Object.entries(after)) console.log(`  ${mix}: ${WATCH.filter((w) => a.packages.includes(w)).join(', ')}`);
  const docker = after['docker (no engine) + system'];
  const left = /pack docker left out[^\n]*/.exec(docker.log)?.[0];
  if (left) console.log(`docker mix: ${left}`);
  console.log(`floors (bare node --max-semi-space-size=1): nothing ${fmt(await floor([]))} MB, mqtt+zod+yaml ${fmt(await floor(['mqtt', 'zod', 'yaml']))} MB, +dockerode ${fmt(await floor(['mqtt', 'zod', 'yaml', 'dockerode']))} MB`);
  console.log('goal (issue 18): idle RSS <= 60 MB without the docker pack');
} finally {
  rmSync(dir, { recursive: true, force: true });
}
