#!/usr/bin/env node
/**
 * `npm start`: the one-command ToolMesh demo (built to dist/scripts/demo.js). It runs an agent for
 * every example device, so every example flow works as imported.
 *
 * 1. A Node-RED user directory `.toolmesh-demo/` at the repository root, set up the way a user
 *    installs the pack: `node_modules/@toolmesh/node-red-toolmesh` is a symlink to this repository
 *    and `package.json` lists it, so Node-RED loads the nodes with their locales and lists the
 *    example flows under Import > Examples; Dashboard 2.0 (`@flowfuse/node-red-dashboard`, a dev
 *    dependency) is linked the same way. `settings.js` is written once (with a generated
 *    credentialSecret) and then left to the user; the first run installs every example flow
 *    (flows/*.json, one tab each, sharing the registry `tm-registry`) as the user's `flows.json`;
 *    later runs keep the user's flows. settings.js turns off the editor's telemetry question and
 *    its welcome tour (a settings.js from an earlier run that leaves them open gets them as -D options).
 * 2. Approvals (demo/gate-keys.ts): a demo Ed25519 key (`approval-signing.key`) made once; the
 *    confirm-gates without a signing key get it in Node-RED's credentials before Node-RED starts,
 *    and every agent trusts the gates' public keys by key id.
 * 3. Docker: the engine at a unix:// `DOCKER_HOST` or /var/run/docker.sock when it answers; else,
 *    as root with Debian's dockerd installed, a private dockerd under `.toolmesh-demo/docker`
 *    (scripts/dockerd.ts); else the docker pack is left out. With an engine, the demo container
 *    `toolmesh-demo-web` (BusyBox httpd plus a heartbeat log line, network mode none) is created
 *    and started.
 * 4. Broker logins (demo/broker-users.ts): the tool-registry's embedded broker (127.0.0.1 only)
 *    runs with `requireAuth`; every agent, the callers `cli`, `mcp-demo`, `mcp-vscode` and
 *    `mcp-claude`, and the admin `demo-data` (the flows' own MQTT topics) log in with a password
 *    made once and kept in `.toolmesh-demo/broker/<user>.pass` (0600); the registry gets them in
 *    its `users` credential before Node-RED starts. `.toolmesh-demo/mqtt-cli.json` (0600) holds
 *    caller `cli`'s URL, username and password for scripts; the printed mosquitto lines read
 *    its password file.
 * 5. Node-RED as a child process (its tool-registry runs the embedded MQTT broker), then the
 *    agents (`packages/agent/dist/agent/cli.js --config .toolmesh-demo/agents/<device>.yaml`): the Pi (docker,
 *    system, diag) and one per `configs/<device>.yaml` whose packs this build has (demo/devices.ts:
 *    simulated robot hardware, real GStreamer with a test-picture "HDMI input", a desktop confined
 *    to `.toolmesh-demo/desktop-files`, the dashboard editing this Node-RED). Log lines are
 *    prefixed `[node-red]` and `[<agent id>]`. Every agent keeps its execution log in
 *    `.toolmesh-demo/agents/<id>-audit.jsonl`; the summary prints a `toolmesh audit verify` line for
 *    each, and for each audit-log file of the flows (under `.toolmesh-demo/toolmesh-audit/`).
 * 6. The MCP bridge (demo/mcp.ts): `toolmesh mcp` over Streamable HTTP on 127.0.0.1:TOOLMESH_MCP_PORT
 *    (8765) with a bearer token made once, logged in to the broker as caller `mcp-demo`; the summary prints it with ready-to-paste configs for
 *    VS Code, Claude Desktop, Open WebUI and LiteLLM. The same bridge signs clients in with OAuth 2.1
 *    (`--oauth`, state in `.toolmesh-demo/mcp-oauth.json`): the demo makes a pairing code (10 min,
 *    once) when the bridge is up, and the summary prints it with the sign-in steps for Home Assistant,
 *    Open WebUI and the MCP Inspector. TOOLMESH_MCP_APPROVALS=gate lets a person
 *    approve high-risk calls at a confirm-gate (default refuse).
 * 7. An agent that exits is reported and the others keep running. Ctrl-C / SIGTERM stops the
 *    agents (each publishes `offline`), then Node-RED, then the demo container if this run started
 *    it (the container itself is kept), then the private dockerd if this run started it. Only
 *    processes this run started are signalled, by pid.
 *
 * Environment: TOOLMESH_UI_HOST (127.0.0.1), TOOLMESH_UI_PORT (1880), TOOLMESH_MQTT_PORT (1883),
 * TOOLMESH_MCP_PORT (8765), TOOLMESH_MCP_APPROVALS (refuse | gate), TOOLMESH_DEMO_DIR (the user directory,
 * default `.toolmesh-demo/`),
 * TOOLMESH_ADMIN_PASSWORD (required for a non-loopback TOOLMESH_UI_HOST: editor login `admin`),
 * TOOLMESH_LLM_BASE_URL / TOOLMESH_LLM_API_KEY / TOOLMESH_LLM_MODEL (passed to Node-RED for the
 * llm-agent nodes), DOCKER_HOST (a unix:// engine socket).
 *
 * The parts are in scripts/demo/: options.ts (environment, Pi config, flow patch), userdir.ts,
 * gate-keys.ts, broker-users.ts, devices.ts, agents.ts, engine.ts (Docker), processes.ts (ports,
 * waits, children), mcp.ts and summary.ts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { stopDockerd } from './dockerd';
import { startAgentProcess, stopAgents, type AgentProcess } from './demo/agents';
import { agentIdsCalled, prepareDevices, type DemoDevice } from './demo/devices';
import { ensureDemoContainer, findEngine, stopDemoContainer, type Engine } from './demo/engine';
import { ensureDemoKey, gateKidsOf, settleGateKeys } from './demo/gate-keys';
import { agentAuditFile, agentConfigYaml, AGENT_ID, DEMO_CONTAINER, DemoError, EXAMPLE_FLOW, PACKAGE, readOptions } from './demo/options';
import { isLoopbackHost } from '@toolmesh/agent/protocol/broker';
import { forward, httpAnswers, portFree, say, stopChild, tcpAccepts, waitFor } from './demo/processes';
import { shellWord, summaryLines } from './demo/summary';
import {
  bridgeArgs, clientConfigs, DEMO_MCP_CALLER, demoPairingCode, ensureMcpDemoFiles, ensureMcpToken, FILESYSTEM_MCP_MODULE, mcpOAuthStateFile, mcpSummaryLines, writeClientConfigs,
} from './demo/mcp';
import { BROKER_DIR, CLI_CALLER, DATA_USER, dataTopic, demoBrokerUsers, ensurePassword, settleBrokerAuth, STDIO_MCP_CALLERS, writeCliCredentials } from './demo/broker-users';
import { isValidId } from '@toolmesh/agent/protocol';
import { allExamples, DASHBOARD_MODULE, flowAuditFiles, nodeRedArgs, prepareUserDir, readSettings, withoutDashboardFlows, writeAdminAuth } from './demo/userdir';

const NODE_RED_READY_MS = 60_000;
const BROKER_READY_MS = 30_000;
const AGENTS_READY_MS = 30_000;
const STOP_NODE_RED_MS = 20_000;

/** The repository root: the nearest directory up from here whose package.json is this pack's. */
function findRoot(): string {
  for (let dir = __dirname; dir !== dirname(dir); dir = dirname(dir)) {
    try {
      if ((JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string }).name === PACKAGE) return dir;
    } catch { /* look one level up */ }
  }
  throw new DemoError(`cannot find the ${PACKAGE} package.json above ${__dirname}`);
}

async function main(): Promise<number> {
  const opts = readOptions();
  const root = findRoot();
  // TOOLMESH_DEMO_DIR: another user directory (tests run the demo beside a developer's own)
  const userDir = process.env.TOOLMESH_DEMO_DIR?.trim() ? resolve(process.env.TOOLMESH_DEMO_DIR.trim()) : join(root, '.toolmesh-demo');
  const cli = join(root, 'packages/agent/dist/agent/cli.js');
  const redJs = join(root, 'node_modules/node-red/red.js');
  for (const f of [cli, join(root, 'dist/nodes/tool-registry/tool-registry.js'), join(root, 'examples', EXAMPLE_FLOW)]) {
    if (!existsSync(f)) throw new DemoError(`${relative(root, f)} is missing: build first (npm run build; npm start does it)`);
  }
  if (!existsSync(redJs)) throw new DemoError(`${relative(root, redJs)} is missing: run npm install`);

  // the children get our environment (TOOLMESH_LLM_* included) but never the admin password
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.TOOLMESH_ADMIN_PASSWORD;
  // the agents' shebang runs `node` from PATH: make that this node
  childEnv.PATH = [dirname(process.execPath), process.env.PATH].filter(Boolean).join(':');

  let engine: Engine | undefined;
  let containerStartedHere = false;
  let authFile: string | undefined;
  const passwordFile = join(userDir, '.admin-password');
  let nodeRed: ChildProcess | undefined;
  let bridge: ChildProcess | undefined;
  const agents: AgentProcess[] = [];
  let stopping: Promise<void> | undefined;

  const shutdown = (why: string, code: number): Promise<void> => {
    stopping ??= (async () => {
      say(`${why}: stopping`);
      await stopChild(bridge, 'the MCP bridge', 5000);
      await stopAgents(agents);
      await stopChild(nodeRed, 'Node-RED', STOP_NODE_RED_MS);
      if (engine && containerStartedHere) await stopDemoContainer(engine);
      if (authFile) rmSync(authFile, { force: true });
      rmSync(passwordFile, { force: true });
      if (engine?.startedHere) say('stopping the private dockerd');
      await stopDockerd(); // only ever the dockerd this process started (also one still starting)
      say('stopped');
      process.exit(code);
    })();
    return stopping;
  };
  let signals = 0;
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      if (++signals > 1) {
        say(`${sig} again: killing the agents and Node-RED now`);
        for (const c of [...agents.map((a) => a.child), bridge, nodeRed]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        process.exit(130);
      }
      void shutdown(sig, 0);
    });
  }

  try {
    if (opts.uiHostGiven) {
      say(`the MQTT broker stays on 127.0.0.1:${opts.mqttPort} (with its logins); only the editor listens on ${opts.uiHost}`);
    }
    if (!(await portFree(opts.uiHost, opts.uiPort))) {
      throw new DemoError(`port ${opts.uiPort} on ${opts.uiHost} is in use (another Node-RED?); set TOOLMESH_UI_PORT to a free port`);
    }
    if (!(await portFree('127.0.0.1', opts.mcpPort))) {
      throw new DemoError(`port ${opts.mcpPort} on 127.0.0.1 is in use (another MCP bridge?); set TOOLMESH_MCP_PORT to a free port`);
    }
    if (!(await portFree('127.0.0.1', opts.mqttPort))) {
      throw new DemoError(`port ${opts.mqttPort} on 127.0.0.1 is in use (another MQTT broker?); set TOOLMESH_MQTT_PORT to a free port`);
    }

    const dashboard = existsSync(join(root, 'node_modules', DASHBOARD_MODULE, 'package.json'));
    if (!dashboard) say(`${DASHBOARD_MODULE} is not installed here (npm install): the dashboard and chat examples and the dashboard agent are left out`);
    const examples = dashboard ? allExamples(root, opts.mqttPort) : withoutDashboardFlows(allExamples(root, opts.mqttPort));
    // the MCP filesystem example runs the official server from the user directory, confined to mcp-demo-files/
    const filesystem = existsSync(join(root, 'node_modules', FILESYSTEM_MCP_MODULE, 'package.json'));
    if (!filesystem) say(`${FILESYSTEM_MCP_MODULE} is not installed here (npm install): the MCP filesystem example shows its server offline`);
    prepareUserDir(root, userDir, opts, examples, [...(dashboard ? [DASHBOARD_MODULE] : []), ...(filesystem ? [FILESYSTEM_MCP_MODULE] : [])]);
    ensureMcpDemoFiles(userDir);
    rmSync(join(userDir, 'pi-agent.yaml'), { force: true }); // an earlier release's place of the Pi config
    authFile = writeAdminAuth(root, userDir, opts.adminPassword);
    if (opts.adminPassword) writeFileSync(passwordFile, `${opts.adminPassword}\n`, { mode: 0o600 });

    const settings = readSettings(userDir);
    const key = ensureDemoKey(userDir);
    const gates = settleGateKeys(userDir, settings, key, gateKidsOf(examples));
    for (const note of gates.notes) say(note);

    // Docker first: a private dockerd takes a few seconds
    engine = await findEngine(userDir);
    if (engine) {
      try {
        containerStartedHere = await ensureDemoContainer(engine, userDir);
      } catch (e) {
        say(`could not set up container ${DEMO_CONTAINER}: ${(e as Error).message}`);
      }
    }

    // the agents' configs before Node-RED starts: the broker needs their users (broker-users.ts)
    const probeHost = opts.uiHost === '0.0.0.0' || opts.uiHost === '::' ? '127.0.0.1' : opts.uiHost;
    const nodeRedUrl = `http://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${opts.uiPort}`;
    const brokerUrl = `mqtt://127.0.0.1:${opts.mqttPort}`;
    const brokerLogin = (id: string) => (isValidId(id) ? ensurePassword(userDir, id).file : undefined);
    const dataLogin = { username: DATA_USER, passwordFile: ensurePassword(userDir, DATA_USER).file };
    mkdirSync(join(userDir, 'agents'), { recursive: true });
    const piFile = join(userDir, 'agents', `${AGENT_ID}.yaml`);
    writeFileSync(piFile, agentConfigYaml({
      mqttPort: opts.mqttPort, dockerSocket: engine?.socketPath, approvalKeys: gates.trusted, auditFile: agentAuditFile(userDir, AGENT_ID),
      username: AGENT_ID, passwordFile: brokerLogin(AGENT_ID),
    }));
    const devices = prepareDevices(
      { root, userDir, brokerUrl, nodeRedUrl, brokerLogin, dataLogin, adminPasswordFile: opts.adminPassword ? passwordFile : undefined, trustedKeys: gates.trusted },
      (packs) => (packs.includes('dashboard') && !dashboard ? `needs ${DASHBOARD_MODULE} (npm install)` : undefined),
    );
    const running = devices.filter((d): d is Extract<DemoDevice, { id: string }> => 'id' in d);
    const skipped = devices.filter((d): d is Extract<DemoDevice, { skipped: string }> => 'skipped' in d);
    const brokerUsers = demoBrokerUsers(userDir, [AGENT_ID, ...running.map((d) => d.id)]);
    const brokerAuth = settleBrokerAuth(userDir, settings, opts.mqttPort, brokerUsers);
    for (const note of brokerAuth.notes) say(note);
    if (!brokerAuth.registries.length) say(`note: no tool-registry in the flows runs the embedded broker on port ${opts.mqttPort}: the agents wait for one`);
    const userOf = (name: string) => brokerUsers.find((u) => u.username === name)!;
    const cliJson = writeCliCredentials(userDir, brokerUrl, userOf(CLI_CALLER));

    const nrArgs = nodeRedArgs({ redJs, userDir, port: opts.uiPort, host: opts.uiHost, settings, authFile });
    say(`starting Node-RED: node ${relative(root, redJs)} --userDir ${relative(root, userDir)} --port ${opts.uiPort}`);
    nodeRed = spawn(process.execPath, nrArgs, { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(nodeRed, '[node-red]');
    let nodeRedExit: string | undefined;
    nodeRed.once('exit', (code, signal) => {
      nodeRedExit = `Node-RED exited (${code ?? signal})`;
      if (!stopping) void shutdown(nodeRedExit, 1);
    });

    if (!(await waitFor(() => httpAnswers(`${nodeRedUrl}/`), NODE_RED_READY_MS, () => nodeRedExit))) {
      throw new DemoError(`Node-RED did not answer on ${nodeRedUrl}/ within ${NODE_RED_READY_MS / 1000} s`);
    }
    if (!(await waitFor(() => tcpAccepts('127.0.0.1', opts.mqttPort), BROKER_READY_MS, () => nodeRedExit))) {
      say(`warning: nothing listens on ${brokerUrl} yet. The broker is the tool-registry node's (embedded, port `
        + `${opts.mqttPort}) in the flows; the agents keep retrying until it appears.`);
    }

    // the agents: the Pi, then one per example device config
    for (const d of skipped) say(`not starting ${d.source}: ${d.skipped}`);
    const notes = new Map<string, string[]>([[AGENT_ID, [engine
      ? `Docker engine ${engine.socketPath}, demo container ${DEMO_CONTAINER}`
      : 'no Docker engine here: the docker pack is left out (system and diag tools only)']]]);
    const starts: Array<[string, string]> = [[AGENT_ID, piFile], ...running.map((d): [string, string] => [d.id, d.configFile])];
    for (const d of running) notes.set(d.id, d.notes);
    for (const [id, file] of starts) {
      say(`starting agent ${id}: ${relative(root, cli)} --config ${relative(root, file)}`);
      agents.push(startAgentProcess(cli, id, file, {
        cwd: userDir, env: childEnv,
        onExit: (why) => { if (!stopping) say(`${why}; see its lines above. The demo keeps running without it`); },
      }));
    }
    if (!(await waitFor(async () => agents.every((a) => a.online || a.exit), AGENTS_READY_MS, () => nodeRedExit))) {
      say(`warning: not online after ${AGENTS_READY_MS / 1000} s: ${agents.filter((a) => !a.online && !a.exit).map((a) => a.id).join(', ')}; see their lines`);
    }
    const ids = new Set(agents.map((a) => a.id));
    const uncalled = agentIdsCalled(examples).filter((id) => !ids.has(id));
    if (uncalled.length) say(`note: the example flows call agent${uncalled.length > 1 ? 's' : ''} ${uncalled.join(', ')}, which no demo agent is (no configs/*.yaml with that agent.id)`);

    // the MCP bridge: one more caller on the mesh, for VS Code, Claude Desktop, Open WebUI, LiteLLM
    const toolmeshJs = join(root, 'dist/nodes/cli.js');
    const mcpToken = ensureMcpToken(userDir);
    const mcpUrl = `http://127.0.0.1:${opts.mcpPort}/mcp`;
    const oauthState = mcpOAuthStateFile(userDir);
    say(`starting the MCP bridge: node ${relative(root, toolmeshJs)} mcp --http 127.0.0.1:${opts.mcpPort} --oauth (approvals ${opts.mcpApprovals})`);
    let bridgeUp = false;
    const loginOf = (name: string) => ({ username: name, passwordFile: userOf(name).passwordFile });
    bridge = spawn(process.execPath, bridgeArgs({
      toolmeshJs, mqttPort: opts.mqttPort, mcpPort: opts.mcpPort, tokenFile: mcpToken.file, auditFile: join(userDir, 'mcp-audit.jsonl'), approvals: opts.mcpApprovals,
      login: loginOf(DEMO_MCP_CALLER), oauthStateFile: oauthState,
    }),
      { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(bridge, '[mcp]', (line) => { if (line.includes('serving MCP')) bridgeUp = true; });
    bridge.once('exit', (code, signal) => { if (!stopping) say(`the MCP bridge exited (${code ?? signal}); see its lines above. The demo keeps running without it`); });
    await waitFor(async () => bridgeUp || bridge!.exitCode !== null, 10_000, () => nodeRedExit);
    const mcpConfigs = clientConfigs({
      url: mcpUrl, token: mcpToken.token, toolmeshJs, mqttPort: opts.mqttPort, node: process.execPath,
      logins: { vscode: loginOf(STDIO_MCP_CALLERS.vscode), claude: loginOf(STDIO_MCP_CALLERS.claude) },
    });
    const mcpDir = writeClientConfigs(userDir, mcpConfigs);
    // a pairing code for the first OAuth sign-in: shown in the summary only (a secret while it lives)
    let pairing: { code: string; expiresAt: number } | undefined;
    if (bridgeUp) {
      try {
        pairing = demoPairingCode(oauthState);
      } catch (e) {
        say(`could not make a pairing code in ${relative(root, oauthState)}: ${(e as Error).message}`);
      }
    }

    const pi = agents.find((a) => a.id === AGENT_ID)!;
    const lines = summaryLines({
      root,
      editorUrl: isLoopbackHost(opts.uiHost) ? `${nodeRedUrl}/` : `http://<this machine>:${opts.uiPort}/ (listening on ${opts.uiHost}; here: ${nodeRedUrl}/)`,
      chatUrl: examples.some((n) => n.type === 'ui-page' && n.path === '/chat') ? `${nodeRedUrl}/dashboard/chat` : undefined,
      adminLogin: Boolean(opts.adminPassword),
      mqttPort: opts.mqttPort,
      agents: agents.map((a) => ({ process: a, notes: notes.get(a.id) ?? [] })),
      skipped,
      keyFile: key.file,
      kids: Object.keys(gates.trusted),
      shellAgent: pi.id,
      shellTool: engine ? 'docker_list_containers' : 'diag_echo',
      shellArgs: engine ? '{}' : '{"text":"hello"}',
      dockerdStartedHere: Boolean(engine?.startedHere),
      toolmeshCli: join(root, 'packages/agent/dist/agent/toolmesh.js'),
      auditLogs: [...agents.map((a) => agentAuditFile(userDir, a.id)), ...flowAuditFiles(userDir, settings)],
      brokerAuth: {
        dir: join(userDir, BROKER_DIR), cliPasswordFile: userOf(CLI_CALLER).passwordFile, cliJson,
        data: dataTopic(userDir, settings, brokerAuth.mqttBrokers, dataLogin),
      },
    });
    const mcpLines = mcpSummaryLines({
      url: mcpUrl, token: mcpToken.token, tokenFile: relative(root, mcpToken.file), configDir: relative(root, mcpDir), configs: mcpConfigs, approvals: opts.mcpApprovals, running: bridgeUp,
      oauth: { stateFile: shellWord(relative(root, oauthState)), toolmeshCli: shellWord(relative(root, toolmeshJs)), pairing },
    });
    // after the LLM line: the MCP block belongs with the ways in
    const at = lines.findIndex((l) => l.startsWith('  LLM endpoint:'));
    lines.splice(at + 1, 0, ...mcpLines);
    process.stdout.write(`${lines.join('\n')}\n`);
    await new Promise<never>(() => undefined); // run until a signal
    return 0;
  } catch (e) {
    if (e instanceof DemoError) say(`error: ${e.message}`);
    else say(`error: ${(e as Error).stack ?? e}`);
    await shutdown('startup failed', 1);
    return 1;
  }
}

if (require.main === module) {
  main().then((code) => process.exit(code), (e: Error) => {
    if (e instanceof DemoError) process.stderr.write(`[demo] error: ${e.message}\n`);
    else process.stderr.write(`[demo] error: ${e.stack ?? e.message}\n`);
    process.exit(1);
  });
}
