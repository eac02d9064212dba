// Join with a code, timed (issue 18, item 3, "online in the sidebar with its tools in <= 60 s").
// Starts a real Node-RED process (the pack installed in a temporary userDir as a user installs
// it) with a tool-registry whose embedded broker requires authentication, asks its admin endpoint
// for a join string (what the editor's "Add a device" does), then runs on the "device" the two
// commands a person runs: `toolmesh-agent join <string> --config <file>` and
// `toolmesh-agent --config <file>` (packages/agent/dist/agent/cli.js, in an empty directory), and waits until the
// registry lists the agent online with its tools. Prints the seconds of each step. The editor
// has a login (adminAuth): the join-codes endpoint needs it, the device's join endpoint does not.
//
//   npm run build && node bench/join.mjs [--runs 3] [--packs system]
//
// TOOLMESH_NODE_RED_DIR picks the Node-RED (default: this repository's node_modules).
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { dist, require, root } from './support.mjs';

const args = process.argv.slice(2);
const opt = (name, dflt) => { const i = args.indexOf(`--${name}`); return i >= 0 ? args[i + 1] : dflt; };
const RUNS = Number(opt('runs', 3));
const PACKS = opt('packs', 'system');
const CLI = join(root, 'packages/agent/dist/agent/cli.js');
const PACKAGE = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).name;

const freePort = () => new Promise((r) => { const s = createServer().listen(0, '127.0.0.1', () => { const p = s.address().port; s.close(() => r(p)); }); });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function run(cmd, argv, cwd) {
  const child = spawn(process.execPath, [cmd, ...argv], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  child.stderr.on('data', (d) => (out += d));
  const exit = new Promise((r) => child.once('exit', (code) => r(code)));
  return { child, exit, output: () => out };
}

const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-bench-join-'));
mkdirSync(dirname(join(userDir, 'node_modules', PACKAGE)), { recursive: true }); // a scoped name needs its @scope folder
symlinkSync(root, join(userDir, 'node_modules', PACKAGE), 'dir');
writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'bench', version: '1.0.0', dependencies: { [PACKAGE]: `file:${root}` } }));
const nrPort = await freePort();
const brokerPort = await freePort();
writeFileSync(join(userDir, 'settings.js'), `module.exports = ${JSON.stringify({
  uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: 'bench', telemetry: { enabled: false, updateNotification: false },
  editorTheme: { tours: false }, logging: { console: { level: 'warn' } },
  // an editor login, as on a real install: the join endpoint must answer the device without one
  adminAuth: { type: 'credentials', users: [{ username: 'admin', password: require('bcryptjs').hashSync('bench-pass', 8), permissions: '*' }] },
})};\n`);
writeFileSync(join(userDir, 'flows.json'), JSON.stringify([
  { id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', mode: 'embedded', host: '127.0.0.1', port: brokerPort, requireAuth: true, callerId: 'bench' },
]));
const redJs = join(dirname(require.resolve('node-red/package.json', { paths: [resolve(process.env.TOOLMESH_NODE_RED_DIR ?? root)] })), 'red.js');
const nodeRed = run(redJs, ['--userDir', userDir, '--port', String(nrPort)], userDir);
const base = `http://127.0.0.1:${nrPort}`;
const children = [nodeRed.child];
function cleanup() {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
}
process.on('exit', cleanup);

try {
  const t0 = Date.now();
  let auth;
  for (;;) {
    const tok = await fetch(`${base}/auth/token`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: 'bench-pass' }),
    }).then((r) => (r.ok ? r.json() : undefined), () => undefined);
    auth = tok && { authorization: `Bearer ${tok.access_token}` };
    const ok = auth && await fetch(`${base}/toolmesh/registry/reg/agents`, { headers: auth }).then((r) => r.ok, () => false);
    if (ok) break;
    if (nodeRed.child.exitCode !== null || Date.now() - t0 > 60_000) throw new Error(`Node-RED did not start:\n${nodeRed.output()}`);
    await sleep(200);
  }
  const anonymous = await fetch(`${base}/toolmesh/registry/reg/join-codes`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
  if (anonymous.status !== 401) throw new Error(`join-codes without a login answered ${anonymous.status}, expected 401`);
  console.log(`Node-RED up in ${((Date.now() - t0) / 1000).toFixed(1)} s; join runs: ${RUNS}, packs: ${PACKS}`);
  const totals = [];
  for (let i = 0; i < RUNS; i++) {
    const agentId = `bench-${i}`;
    const device = mkdtempSync(join(tmpdir(), 'toolmesh-device-'));
    const start = Date.now();
    const res = await fetch(`${base}/toolmesh/registry/reg/join-codes`, {
      method: 'POST', headers: { 'content-type': 'application/json', ...auth },
      body: JSON.stringify({ nodeRedUrl: base, brokerUrl: `mqtt://127.0.0.1:${brokerPort}`, agentId, packs: PACKS.split(',') }),
    });
    const issued = await res.json();
    if (!res.ok) throw new Error(`join-codes: ${res.status} ${JSON.stringify(issued)}`);
    const j = run(CLI, ['join', issued.joinString, '--config', 'agent.yaml', '--packs', PACKS], device);
    const code = await j.exit;
    if (code !== 0) throw new Error(`join exited ${code}: ${j.output()}`);
    const joined = Date.now();
    const agent = run(CLI, ['--config', 'agent.yaml'], device);
    children.push(agent.child);
    for (;;) {
      const list = await fetch(`${base}/toolmesh/registry/reg/agents?agent=${agentId}`, { headers: auth }).then((r) => r.json(), () => []);
      if (list[0]?.ready && list[0].tools.length > 0) break;
      if (agent.child.exitCode !== null || Date.now() - joined > 60_000) throw new Error(`agent did not come online:\n${agent.output()}`);
      await sleep(50);
    }
    const online = Date.now();
    totals.push((online - start) / 1000);
    console.log(`run ${i + 1}: join ${((joined - start) / 1000).toFixed(2)} s (code, exchange, scrypt, files), start to online with tools ${((online - joined) / 1000).toFixed(2)} s, total ${((online - start) / 1000).toFixed(2)} s`);
    agent.child.kill('SIGTERM');
    await agent.exit;
    rmSync(device, { recursive: true, force: true });
  }
  console.log(`join -> online with tools: median ${totals.sort((a, b) => a - b)[Math.floor(totals.length / 2)].toFixed(2)} s, max ${Math.max(...totals).toFixed(2)} s (goal <= 60 s, without the npm install)`);
} finally {
  cleanup();
  await sleep(300);
  rmSync(userDir, { recursive: true, force: true });
}
