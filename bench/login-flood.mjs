#!/usr/bin/env node
// A login flood against the embedded broker (issue 17, item 5): a real Node-RED process with the
// pack (dist/) and a tool-registry whose embedded aedes broker has authentication on and one
// genuine agent user. From this process, on 127.0.0.1: the genuine agent logs in, then
// BENCH_FLOOD (2,000) CONNECTs naming the agent's user with wrong passwords arrive over
// BENCH_FLOOD_S (10) seconds. Meanwhile `GET /flows` is timed (p50/p99, ms), before and during the
// flood, and the genuine agent, whose connection drops a few seconds into the flood, reconnects
// (time to CONNACK, ms). Also: how the flood was answered (CONNACK codes: 4 = checked by scrypt
// and refused, 3 = refused without a check), Node-RED's CPU time, and, for contrast, a first login
// of another user (never verified before, so not exempt from the throttle) during the flood.
// The flood is sent from a worker thread, the timings are taken on the main thread.
// Goals: p99 during within 2x of before; agent <= 2 s. On a shared, loaded machine expect noise.
//
//   node scripts/build.mjs && node bench/login-flood.mjs
//   BENCH_PACK=<dir>   the pack to install in Node-RED (default: this repository; e.g. a build of
//                      an older commit for a before/after comparison)
//   BENCH_FLOOD=2000 BENCH_FLOOD_S=10 (defaults)
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';
import { join, resolve } from 'node:path';
import { pct, require, root } from './support.mjs';

const mqtt = require('mqtt');
const PACK = resolve(process.env.BENCH_PACK ?? root);
const FLOOD = Number(process.env.BENCH_FLOOD ?? 2000);
const FLOOD_S = Number(process.env.BENCH_FLOOD_S ?? 10);
const AGENT_PW = 'genuine-agent-password-1';
const OTHER_PW = 'other-agent-password-2';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A free TCP port on 127.0.0.1. */
function freePort() {
  return new Promise((res, rej) => {
    const s = net.createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

/** An MQTT 3.1.1 CONNECT (clean session, username, password). */
function connectPacket(clientId, username, password) {
  const str = (s) => {
    const b = Buffer.from(s);
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60]), str(clientId), str(username), str(password)]);
  const len = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    len.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...len]), body]);
}

/** A raw CONNECT; resolves with the CONNACK return code, 'timeout' after `ms`, or 'error'. */
function rawConnect(port, clientId, username, password, ms) {
  return new Promise((done) => {
    const socket = net.connect(port, '127.0.0.1', () => socket.write(connectPacket(clientId, username, password)));
    let got = Buffer.alloc(0);
    let settled = false;
    const finish = (r) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      done(r);
    };
    const timer = setTimeout(() => finish('timeout'), ms);
    socket.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4) finish(got[0] === 0x20 ? got[3] : 'error');
    });
    socket.on('error', () => finish('error'));
    socket.on('close', () => finish('error'));
  });
}

/** Logs in with MQTT.js; resolves with the client and the time to CONNACK, ms (or rejects). */
async function login(url, username, password, clientId) {
  const t0 = performance.now();
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 60_000, username, password, clientId });
  return { client: c, ms: performance.now() - t0 };
}

/**
 * Logs in, retrying (like an agent's reconnect loop, every 250 ms) until `deadlineMs` from the
 * first try; resolves with `ms` from the first try to CONNACK (undefined: gave up) and `tries`,
 * each `<ms> <outcome>`.
 */
async function loginRetrying(url, username, password, clientId, deadlineMs) {
  const t0 = performance.now();
  const tries = [];
  for (;;) {
    const t1 = performance.now();
    try {
      const { client } = await login(url, username, password, clientId);
      tries.push(`${(performance.now() - t1).toFixed(0)} ms ok`);
      await client.endAsync(true);
      return { ms: performance.now() - t0, tries };
    } catch (e) {
      tries.push(`${(performance.now() - t1).toFixed(0)} ms ${e.message}`);
      if (performance.now() - t0 > deadlineMs) return { ms: undefined, tries };
      await sleep(250);
    }
  }
}

/** CPU time the process `pid` used so far, ms (Linux /proc; undefined elsewhere). */
function cpuMs(pid) {
  try {
    const f = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
    return ((Number(f[11]) + Number(f[12])) * 1000) / 100; // utime + stime, clock ticks of 10 ms
  } catch {
    return undefined;
  }
}

/** Times `GET /flows` back to back (20 ms apart) until `stop()` says so; resolves with latencies, ms. */
async function sampleFlows(url, stop) {
  const lat = [];
  while (!stop()) {
    const t0 = performance.now();
    const res = await fetch(`${url}/flows`, { headers: { 'Node-RED-API-Version': 'v2' } });
    await res.arrayBuffer();
    if (res.status !== 200) throw new Error(`GET /flows answered ${res.status}`);
    lat.push(performance.now() - t0);
    await sleep(20);
  }
  return lat;
}

/**
 * The flood, in a worker thread (so its own work does not delay the timings taken on the main
 * thread): `count` raw CONNECTs as `username`, paced evenly over `seconds`; posts
 * `{ codes, sentS }` once every one is answered.
 */
async function flood({ port, count, seconds, username }) {
  const start = performance.now();
  const gap = (seconds * 1000) / count;
  const answers = [];
  for (let i = 0; i < count; i++) {
    const wait = start + i * gap - performance.now();
    if (wait > 1) await sleep(wait);
    answers.push(rawConnect(port, `flood-${i}`, username, `wrong-${i}`, 60_000));
  }
  const sentS = (performance.now() - start) / 1000;
  parentPort.postMessage({ codes: await Promise.all(answers), sentS });
}

if (!isMainThread) {
  await flood(workerData);
} else {
  // --- Node-RED with the pack, as a user installs it (test/support/node-red-process.ts) ---
  const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-login-flood-'));
  mkdirSync(join(userDir, 'node_modules', '@toolmesh'), { recursive: true });
  symlinkSync(PACK, join(userDir, 'node_modules', '@toolmesh/node-red-toolmesh'), 'dir');
  writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'bench', version: '0.0.0', private: true, dependencies: { '@toolmesh/node-red-toolmesh': `file:${PACK}` } }));
  writeFileSync(join(userDir, 'settings.js'), `module.exports = ${JSON.stringify({
    uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: false,
    telemetry: { enabled: false, updateNotification: false }, editorTheme: { tours: false },
    logging: { console: { level: 'info', metrics: false, audit: false } },
  })};\n`);
  const brokerPort = await freePort();
  writeFileSync(join(userDir, 'flows.json'), JSON.stringify([
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'embedded', port: brokerPort, host: '127.0.0.1', requireAuth: true, callerId: 'nodered-bench' },
  ]));
  // credentialSecret false: flows_cred.json is plain JSON
  writeFileSync(join(userDir, 'flows_cred.json'), JSON.stringify({ reg: { users: `agent pi ${AGENT_PW}\nagent robot ${OTHER_PW}` } }));

  const httpPort = await freePort();
  const url = `http://127.0.0.1:${httpPort}`;
  const redJs = require.resolve('node-red/red.js', { paths: [resolve(process.env.TOOLMESH_NODE_RED_DIR ?? root)] });
  let out = '';
  const child = spawn(process.execPath, [redJs, '--userDir', userDir, '--port', String(httpPort)], { cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const stop = async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
    }
    rmSync(userDir, { recursive: true, force: true });
  };

  try {
    const brokerUrl = `mqtt://127.0.0.1:${brokerPort}`;
    const t0 = Date.now();
    for (;;) {
      try {
        const { client } = await login(brokerUrl, 'pi', AGENT_PW, 'pi');
        const res = await fetch(`${url}/flows`);
        if (res.status === 200) {
          await client.endAsync(true);
          break;
        }
      } catch { /* not up yet */ }
      if (Date.now() - t0 > 90_000) throw new Error(`Node-RED or its embedded broker did not come up:\n${out}`);
      await sleep(250);
    }
    // the genuine agent is connected (its credentials were verified once)
    const agent = (await login(brokerUrl, 'pi', AGENT_PW, 'pi')).client;

    for (let i = 0; i < 20; i++) await (await fetch(`${url}/flows`)).arrayBuffer(); // warm-up
    let phase = 'before';
    const beforeEnd = Date.now() + 5000;
    const cpu0 = cpuMs(child.pid);
    const before = await sampleFlows(url, () => Date.now() > beforeEnd);
    const cpuBefore = cpuMs(child.pid) - cpu0;

    // the flood, paced over FLOOD_S
    phase = 'during';
    const floodStart = performance.now();
    const cpu1 = cpuMs(child.pid);
    const sampling = sampleFlows(url, () => phase !== 'during');
    const worker = new Worker(new URL(import.meta.url), { workerData: { port: brokerPort, count: FLOOD, seconds: FLOOD_S, username: 'pi' } });
    const flooded = new Promise((res, rej) => {
      worker.once('message', res);
      worker.once('error', rej);
    });
    // GET /flows is sampled for as long as the flood is sent (FLOOD_S, or longer on a loaded machine)
    const sending = flooded.then(() => undefined);
    // 3 s in, the agent's connection drops and it logs in again
    await sleep(3000);
    await agent.endAsync(true);
    const agentLogin = await loginRetrying(brokerUrl, 'pi', AGENT_PW, 'pi', 30_000);
    // and another user that has not logged in before (no remembered credentials) tries too
    const otherLogin = await loginRetrying(brokerUrl, 'robot', OTHER_PW, 'robot', Math.max(1000, FLOOD_S * 1000 - (performance.now() - floodStart)));
    const { codes, sentS } = await flooded;
    await sending;
    const answeredS = (performance.now() - floodStart) / 1000;
    const cpuDuring = cpuMs(child.pid) - cpu1;
    phase = 'after';
    const during = await sampling;
    await worker.terminate();
    const count = (c) => codes.filter((x) => x === c).length;
    const after = await sampleFlows(url, (() => { const end = Date.now() + 2000; return () => Date.now() > end; })());

    const f = (n) => (n === undefined ? 'never (gave up)' : `${n.toFixed(1)} ms`);
    console.log(`pack: ${PACK}`);
    console.log(`flood: ${FLOOD} CONNECTs as "pi" with wrong passwords from 127.0.0.1, sent in ${sentS.toFixed(1)} s, all answered after ${answeredS.toFixed(1)} s`);
    console.log(`  answers: ${count(4)} checked and refused (code 4, one scrypt run each), ${count(3)} refused without a check (code 3), ${count(0)} accepted, ${count('timeout')} no answer in 60 s, ${count('error')} closed without CONNACK`);
    console.log(`GET /flows before: n=${before.length} p50 ${pct(before, 50).toFixed(1)} ms, p99 ${pct(before, 99).toFixed(1)} ms`);
    console.log(`GET /flows during: n=${during.length} p50 ${pct(during, 50).toFixed(1)} ms, p99 ${pct(during, 99).toFixed(1)} ms (${(pct(during, 99) / pct(before, 99)).toFixed(2)}x before; goal <= 2x)`);
    console.log(`GET /flows after:  n=${after.length} p50 ${pct(after, 50).toFixed(1)} ms, p99 ${pct(after, 99).toFixed(1)} ms`);
    console.log(`Node-RED CPU: ${(cpuBefore / 5).toFixed(0)} ms/s before, ${(cpuDuring / answeredS).toFixed(0)} ms/s during (1000 = one core)`);
    console.log(`genuine agent "pi" reconnects during the flood: ${f(agentLogin.ms)} (goal <= 2000 ms); tries: ${agentLogin.tries.join('; ')}`);
    console.log(`first login of "robot" (never verified before) during the flood: ${f(otherLogin.ms)}; ${otherLogin.tries.length} tries, last: ${otherLogin.tries.at(-1)}`);
  } finally {
    await stop();
  }
}
