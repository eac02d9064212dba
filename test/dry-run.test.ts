// Dry runs through the real agent runtime, with every pack the agent ships in one agent, each on
// the real thing: the test Docker engine (test/support/global-setup.ts), the file system (the
// desktop pack under a temporary root, and a harmless app that would write a marker file), a
// Node-RED process with FlowFuse Dashboard 2.0 (test/support/dashboard-env.ts), real
// gst-launch-1.0 pipelines and the robot's simulated hardware.
//
// Dry runs are opt-in per tool (docs/protocol.md, "Dry runs"): every tool that is not read-only
// declares supportsDryRun and answers `_meta.dryRun` with a `dryRun: true` preview that changes
// nothing (engine, files, flows, snapshots, processes, motors and face are compared before and
// after). Every one of them is raised to high risk here (policy.risk): its dry run needs no
// approval, its real call does. Every read-only tool answers a dry run with NOT_SUPPORTED and
// does not run, also when raised to high risk (a dry run skips the approval check, so a read-only
// tool taking one would hand out data without approval). A new tool with side effects fails this
// test until it declares supportsDryRun and gets dry-run arguments here; a new pack fails it until
// it is configured here.
import { randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { generateApprovalKeys, RpcCaller, signApproval, toolErrorOf, type CallEvent, type ToolDefinition } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { PACKS } from '../agent/packs';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { ADMIN, readFlows, startDashboardNodeRed } from './support/dashboard-env';
import { systemBinary } from './support/mosquitto';
import type { NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const dockerd = inject('dockerd');
if (!dockerd) {
  throw new Error('this test needs the test Docker engine: run it with vitest.config.mts, whose globalSetup starts one (Debian packages docker.io and busybox-static)');
}
if (!systemBinary('/usr/bin/gst-launch-1.0', 'gstreamer1.0-tools') || !systemBinary('/usr/bin/gst-inspect-1.0', 'gstreamer1.0-tools')) {
  throw new Error('this test needs gst-launch-1.0 and gst-inspect-1.0 (Debian package gstreamer1.0-tools) for the gstreamer and robot packs');
}
const { socketPath, image } = dockerd;
const AGENT = 'drypi';
const CALLER = 'drytest';
const suffix = randomBytes(4).toString('hex');
const sleeper = `tm-dry-sleeper-${suffix}`;
const stopped = `tm-dry-stopped-${suffix}`;
const runName = `tm-dry-run-${suffix}`;
const docker = new Docker({ socketPath });
const base = realpathSync(mkdtempSync(join(tmpdir(), 'toolmesh-dry-run-test-')));
const home = join(base, 'home');
const configDir = join(base, 'snapshots');
const WRITE_MARKER = "require('fs').writeFileSync(process.argv[1], 'ran')";
const gate = generateApprovalKeys();

/** Read-only tools raised to high risk on this agent: their dry runs must still be refused. */
const RAISED_READ_ONLY = ['desktop_fetch_webpage', 'desktop_search_files', 'docker_container_logs', 'robot_take_photo'];

/** Ids the dashboard set-up created (element ids are made by the pack). */
const ids: Record<string, string> = {};

/**
 * Dry-run arguments of each tool with side effects, for the state the set-up leaves; a tool
 * missing here fails the test.
 */
function dryRunArgs(): Record<string, Record<string, unknown>> {
  return {
    docker_start_container: { container: stopped },
    docker_stop_container: { container: sleeper, timeoutSeconds: 0 },
    docker_restart_container: { container: sleeper, timeoutSeconds: 0 },
    docker_remove_container: { container: sleeper, force: true },
    docker_run_container: { image, name: runName, command: ['sleep', '30'] },
    desktop_create_directory: { path: 'new/deeper' },
    desktop_delete_directory: { path: 'project', recursive: true },
    desktop_open_app: { app: 'marker', args: ['started.txt'] },
    create_dashboard_group: { name: 'Garage' },
    add_dashboard_element: { group: 'Solar', type: 'gauge', label: 'PV power', topic: 'test/solar/pv', max: 5000, units: 'W' },
    remove_dashboard_element: { id: ids.gauge },
    move_group: { group: 'Living room', page: 'Attic' },
    save_dashboard: { name: 'dry' },
    load_dashboard: { name: 'evening' },
    gst_start_pipeline: { pipeline: 'videotestsrc is-live=true ! fakesink', name: 'dry' },
    gst_stop_pipeline: { id: 'live' },
    robot_show_emotion: { emotion: 'happy', text: 'hi' },
    robot_drive: { direction: 'forward', speed: 0.5, durationMs: 5000 },
    robot_stop: {},
  };
}

let web: Server;
let webUrl = '';
let webRequests = 0;

/** Arguments of the read-only tools that need some; the others are called with `{}`. */
function readOnlyArgs(): Record<string, Record<string, unknown>> {
  return {
    docker_inspect_container: { container: sleeper },
    docker_container_logs: { container: sleeper },
    docker_container_stats: { container: sleeper },
    diag_sleep: { ms: 10 },
    system_service_status: { unit: 'dbus.service' },
    desktop_search_files: { root: '.', pattern: '*' },
    desktop_fetch_webpage: { url: `${webUrl}/page` },
    gst_get_element_info: { element: 'fakesink' },
    gst_validate_pipeline: { pipeline: 'videotestsrc ! fakesink' },
  };
}

let nodeRed: NodeRedProcess;
let broker: EmbeddedBroker;
let agent: RunningAgent;
let caller: RpcCaller;
const events: CallEvent[] = [];
/** How often each tool's `execute` ran (dry or not), counted on the agent's own definitions. */
const runs = new Map<string, number>();

/** Calls a tool with a fresh approval token of the gate; fails the test on a tool error. */
async function approved(tool: string, args: Record<string, unknown>): Promise<any> {
  const approval = signApproval({ kid: 'gate-1', privateKey: gate.privateKeyPem, caller: CALLER, agent: AGENT, tool, args, exp: Date.now() + 60_000, approver: 'dry-run test' });
  const r = await caller.call(AGENT, tool, args, { approval, timeoutMs: 30_000 });
  expect(r.isError, `${tool}: ${JSON.stringify(toolErrorOf(r))}`).toBe(false);
  return r.structuredContent;
}

/** A low-risk read; fails the test on a tool error. */
async function read(tool: string, args: Record<string, unknown> = {}): Promise<any> {
  const r = await caller.call(AGENT, tool, args, { timeoutMs: 30_000 });
  expect(r.isError, `${tool}: ${JSON.stringify(toolErrorOf(r))}`).toBe(false);
  return r.structuredContent;
}

/** Every container of this test with its state and start time. */
async function engineState(): Promise<string[]> {
  const list = await docker.listContainers({ all: true, filters: { name: [suffix] } });
  const states = await Promise.all(list.map(async (c) => {
    const s = (await docker.getContainer(c.Id).inspect()).State;
    return `${c.Names[0]} ${s.Status} ${s.StartedAt} ${s.FinishedAt}`;
  }));
  return states.sort();
}

/** The processes whose parent is this test process (`pid name`), from /proc: pipelines and apps start here. */
function children(): string[] {
  const out: string[] = [];
  for (const pid of readdirSync('/proc')) {
    if (!/^\d+$/.test(pid)) continue;
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    } catch {
      continue; // ended meanwhile
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (Number(ppid) === process.pid && state !== 'Z') out.push(`${pid} ${name}`);
  }
  return out.sort();
}

/** Everything a dry run must leave as it was, on every real thing this agent drives. */
async function world() {
  const robot = await read('robot_get_status');
  const gst = (await read('gst_get_running_instances', { includeEnded: true })).instances as any[];
  return {
    engine: await engineState(),
    files: readdirSync(home, { recursive: true, encoding: 'utf8' }).sort(),
    flows: JSON.stringify(await readFlows(nodeRed)),
    snapshots: readdirSync(configDir).sort(),
    processes: children(),
    pipelines: gst.map((i) => `${i.id} ${i.name} ${i.state} ${i.pid}`),
    robot: { face: robot.face, motors: robot.motors },
  };
}

beforeAll(async () => {
  const a = await docker.createContainer({ name: sleeper, Image: image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' } });
  await a.start();
  await docker.createContainer({ name: stopped, Image: image, Cmd: ['true'], HostConfig: { NetworkMode: 'none' } });
  mkdirSync(join(home, 'project', 'src'), { recursive: true });
  writeFileSync(join(home, 'project', 'src', 'main.c'), 'int main;');
  mkdirSync(configDir);
  web = createServer((_req, res) => {
    webRequests++;
    res.writeHead(200, { 'content-type': 'text/html' }).end('<title>private</title><p>only with approval</p>');
  });
  await new Promise<void>((resolve) => web.listen(0, '127.0.0.1', resolve));
  webUrl = `http://127.0.0.1:${(web.address() as AddressInfo).port}`;
  nodeRed = await startDashboardNodeRed();
  broker = await startBroker({ port: 0 });
  const raise = Object.fromEntries([...Object.keys(dryRunArgs()), ...RAISED_READ_ONLY].map((t) => [t, 'high']));
  const cfg = validateConfig({
    version: 1,
    agent: { id: AGENT },
    broker: { url: broker.url },
    approvals: { keys: { 'gate-1': gate.publicKeyPem }, usedTokensFile: join(base, 'used.jsonl') },
    policy: { risk: raise },
    packs: {
      docker: { socketPath, images: [{ image }] },
      system: { units: ['dbus.service'] },
      diag: {},
      desktop: {
        allowedPaths: [home],
        apps: { marker: { command: process.execPath, args: ['-e', WRITE_MARKER], pathArgs: true } },
        fetch: { urls: [`${webUrl}/`] },
      },
      dashboard: { url: nodeRed.url, auth: { username: ADMIN.username, password: ADMIN.password }, mqtt: { url: broker.url }, configDir },
      gstreamer: {},
      robot: { camera: { width: 160, height: 120 }, motors: { maxSpeed: 0.5, maxDurationMs: 60_000 } },
    },
  }, 'dry.yaml', base);
  agent = await startAgent(cfg, { info() {}, warn() {}, error() {} });
  agent.server.on('call', (e: CallEvent) => events.push(e));
  // count runs on the definitions the server holds (the raised ones are its own copies)
  const served = (agent.server as unknown as { tools: Map<string, ToolDefinition> }).tools;
  for (const tool of served.values()) {
    const execute = tool.execute.bind(tool);
    tool.execute = (args, ctx) => {
      runs.set(tool.name, (runs.get(tool.name) ?? 0) + 1);
      return execute(args, ctx);
    };
  }
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: CALLER });
  await caller.start();
  await until(() => caller.agent(AGENT)?.ready, 'the agent');

  // state for the dry runs to leave alone: a dashboard tab with a group, a gauge and a snapshot;
  // a live pipeline; a sad robot on a long drive
  await approved('create_dashboard_group', { name: 'Living room' });
  ids.gauge = (await approved('add_dashboard_element', { group: 'Living room', type: 'gauge', label: 'Temperature', topic: 'test/temp', min: 0, max: 50 })).element.id;
  await approved('save_dashboard', { name: 'evening' });
  await approved('gst_start_pipeline', { pipeline: 'videotestsrc is-live=true ! fakesink', name: 'live' });
  await approved('robot_show_emotion', { emotion: 'sad' });
  await approved('robot_drive', { direction: 'backward', speed: 0.2, durationMs: 60_000 });
}, 120_000);

afterAll(async () => {
  await caller?.stop();
  await agent?.stop(); // stops the pipelines and the motors
  await broker?.close();
  await nodeRed?.stop();
  await new Promise((resolve) => web?.close(resolve));
  const mine = await docker.listContainers({ all: true, filters: { name: [suffix] } });
  await Promise.all(mine.map((c) => docker.getContainer(c.Id).remove({ force: true })));
  rmSync(base, { recursive: true, force: true });
});

describe('which tools take dry runs', () => {
  it('has every pack the agent ships in the catalog', () => {
    expect([...agent.packs].sort()).toEqual(Object.keys(PACKS).sort());
  });

  it('every tool that is not read-only declares supportsDryRun, and no read-only tool does', () => {
    const tools = caller.agent(AGENT)!.catalog!.tools;
    const forgot = tools.filter((t) => !t.annotations.readOnlyHint && t.annotations.supportsDryRun !== true).map((t) => t.name);
    expect(forgot, 'tools with side effects without supportsDryRun: give them a preview that honours ctx.dryRun and declare it').toEqual([]);
    const readOnly = tools.filter((t) => t.annotations.readOnlyHint && 'supportsDryRun' in t.annotations).map((t) => t.name);
    expect(readOnly, 'read-only tools must not take dry runs (a dry run skips the approval check)').toEqual([]);
  });

  it('has dry-run arguments here for exactly the tools with side effects, each raised to high risk', () => {
    const changing = caller.agent(AGENT)!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint);
    expect(changing.map((t) => t.name).sort()).toEqual(Object.keys(dryRunArgs()).sort());
    expect(changing.filter((t) => t.annotations.risk !== 'high').map((t) => t.name)).toEqual([]);
  });
});

describe('dry runs of the tools with side effects', () => {
  it('each previews without an approval, runs once (as a preview) and changes nothing on any of the real things', async () => {
    const before = await world();
    expect(before.engine).toHaveLength(2);
    expect(before.pipelines).toEqual([expect.stringMatching(/^pipe-\d+ live playing \d+$/)]);
    expect(before.processes.filter((p) => p.endsWith(' gst-launch-1.0'))).toHaveLength(1);
    expect(before.robot).toMatchObject({ face: { emotion: 'sad' }, motors: { state: 'driving', direction: 'backward' } });
    expect(before.snapshots).toEqual(['evening.json']);
    const tools = caller.agent(AGENT)!.catalog!.tools.filter((t) => !t.annotations.readOnlyHint);
    const args = dryRunArgs();
    const results: Record<string, any> = {};
    for (const tool of tools) {
      if (!args[tool.name]) throw new Error(`${tool.name} changes something but has no dry-run arguments in this test; add them, and make the tool honour _meta.dryRun`);
      const seen = events.length;
      const ran = runs.get(tool.name) ?? 0;
      const r = await caller.call(AGENT, tool.name, args[tool.name], { dryRun: true, timeoutMs: 30_000 });
      expect(r.isError, `${tool.name}: ${JSON.stringify(r)}`).toBe(false);
      expect(r.structuredContent, tool.name).toMatchObject({ dryRun: true, wouldDo: expect.any(String) });
      results[tool.name] = r.structuredContent;
      const event = await until(() => events.slice(seen).find((e) => e.tool === tool.name), `the call event of ${tool.name}`);
      expect(event, tool.name).toMatchObject({ dryRun: true, risk: 'high' });
      expect(event.refusal, tool.name).toBeUndefined();
      expect(event.approval, tool.name).toBeUndefined();
      expect(runs.get(tool.name), tool.name).toBe(ran + 1);
    }
    expect(await world()).toEqual(before);
    expect(await docker.listContainers({ all: true, filters: { name: [runName] } })).toEqual([]);

    // the previews say what the real call would do, on the state they found
    expect(results.docker_remove_container.wouldDo).toBe(`remove container ${sleeper} (running)`);
    expect(results.desktop_delete_directory).toMatchObject({ files: 1, directories: 1, bytes: 9 });
    expect(results.desktop_create_directory.create).toEqual([join(home, 'new'), join(home, 'new', 'deeper')]);
    expect(results.desktop_open_app.wouldDo).toBe(`start marker: ${process.execPath} -e ${WRITE_MARKER} ${join(home, 'started.txt')}`);
    expect(results.add_dashboard_element).toMatchObject({ groupCreated: true, wouldDo: expect.stringMatching(/ui-group "Solar"/) });
    expect(results.remove_dashboard_element.changes.removed).toEqual(expect.arrayContaining([expect.stringMatching(/^ui-gauge "Temperature"/)]));
    expect(results.load_dashboard.changes).toEqual({ added: expect.any(Array), removed: expect.any(Array), changed: expect.any(Array) });
    expect(results.save_dashboard.wouldDo).toMatch(new RegExp(`^write ${join(configDir, 'dry.json')}: `));
    const live = before.pipelines[0].split(' ');
    expect(results.gst_stop_pipeline.wouldDo).toBe(`stop ${live[0]} (playing, pid ${live[3]}): SIGINT, SIGKILL after 5000 ms`);
    expect(results.robot_drive.wouldDo).toMatch(/^drive forward at speed 0.5 for 5000 ms, replacing the running drive \(driving backward/);
    expect(results.robot_stop.motors).toMatchObject({ state: 'driving' });
  });

  it('the same calls without dryRun need an approval at high risk, and are refused without one before they run', async () => {
    const before = await world();
    const args = dryRunArgs();
    for (const [tool, a] of Object.entries(args)) {
      const ran = runs.get(tool) ?? 0;
      const r = await caller.call(AGENT, tool, a, { timeoutMs: 30_000 });
      expect(toolErrorOf(r), tool).toMatchObject({ code: 'APPROVAL_REQUIRED' });
      expect(runs.get(tool) ?? 0, tool).toBe(ran);
    }
    expect(await world()).toEqual(before);
  });

  it('a real start of the app leaves its marker, so the dry run would have been seen', async () => {
    await approved('desktop_open_app', { app: 'marker', args: ['real.txt'] });
    await until(() => existsSync(join(home, 'real.txt')), 'the marker of the real start');
    expect(existsSync(join(home, 'started.txt'))).toBe(false);
  });
});

describe('dry runs of read-only tools', () => {
  it('every read-only tool answers NOT_SUPPORTED and does not run', async () => {
    const tools = caller.agent(AGENT)!.catalog!.tools.filter((t) => t.annotations.readOnlyHint);
    expect(tools.length).toBeGreaterThan(20);
    expect(tools.filter((t) => RAISED_READ_ONLY.includes(t.name)).map((t) => t.annotations.risk)).toEqual(RAISED_READ_ONLY.map(() => 'high'));
    const args = readOnlyArgs();
    for (const tool of tools) {
      const seen = events.length;
      const ran = runs.get(tool.name) ?? 0;
      const r = await caller.call(AGENT, tool.name, args[tool.name] ?? {}, { dryRun: true });
      expect(toolErrorOf(r), tool.name).toMatchObject({ code: 'NOT_SUPPORTED', details: { dryRun: false } });
      const event = await until(() => events.slice(seen).find((e) => e.tool === tool.name), `the call event of ${tool.name}`);
      expect(event, tool.name).toMatchObject({ dryRun: true, code: 'NOT_SUPPORTED', risk: tool.annotations.risk });
      expect(runs.get(tool.name) ?? 0, `${tool.name} ran`).toBe(ran);
    }
  });

  it('a read-only tool raised to high risk hands out nothing on a dry run: the page is fetched only with an approval', async () => {
    const args = readOnlyArgs().desktop_fetch_webpage;
    const dry = await caller.call(AGENT, 'desktop_fetch_webpage', args, { dryRun: true });
    expect(toolErrorOf(dry)).toMatchObject({ code: 'NOT_SUPPORTED' });
    expect(JSON.stringify(dry)).not.toContain('only with approval');
    expect(toolErrorOf(await caller.call(AGENT, 'desktop_fetch_webpage', args))).toMatchObject({ code: 'APPROVAL_REQUIRED' });
    expect(webRequests).toBe(0);
    const approval = signApproval({ kid: 'gate-1', privateKey: gate.privateKeyPem, caller: CALLER, agent: AGENT, tool: 'desktop_fetch_webpage', args, exp: Date.now() + 60_000, approver: 'dry-run test' });
    const page = await caller.call(AGENT, 'desktop_fetch_webpage', args, { approval });
    expect(page.isError, JSON.stringify(toolErrorOf(page))).toBe(false);
    expect(JSON.stringify(page.content)).toContain('only with approval');
    expect(webRequests).toBe(1);
  });
});
