#!/usr/bin/env node
/**
 * `npm start`: the one-command ToolMesh demo (built to dist/scripts/demo.js).
 *
 * 1. A Node-RED user directory `.toolmesh-demo/` at the repository root, set up the way a user
 *    installs the pack: `node_modules/node-red-contrib-toolmesh` is a symlink to this repository
 *    and `package.json` lists it, so Node-RED loads the nodes with their locales and lists the
 *    example flows under Import > Examples. `settings.js` is written once (with a generated
 *    credentialSecret) and then left to the user; the first run also copies
 *    flows/docker-management.json as the user's `flows.json`, later runs keep the user's flows.
 * 2. Docker: the engine at a unix:// `DOCKER_HOST` or /var/run/docker.sock when it answers; else,
 *    as root with Debian's dockerd installed, a private dockerd under `.toolmesh-demo/docker`
 *    (scripts/dockerd.ts); else the docker pack is left out. With an engine, the demo container
 *    `toolmesh-demo-web` (BusyBox httpd plus a heartbeat log line, network mode none) is created
 *    and started.
 * 3. Node-RED as a child process (its tool-registry runs the embedded MQTT broker), then the Pi
 *    agent (`dist/agent/cli.js --config .toolmesh-demo/pi-agent.yaml`). Their log lines are
 *    prefixed `[node-red]` and `[pi]`.
 * 4. Ctrl-C / SIGTERM stops the agent (it publishes `offline`), then Node-RED, then stops the demo
 *    container if this run started it (the container itself is kept), then the private dockerd if
 *    this run started it. Only processes this run started are signalled, by pid.
 *
 * Environment: TOOLMESH_UI_HOST (127.0.0.1), TOOLMESH_UI_PORT (1880), TOOLMESH_MQTT_PORT (1883),
 * TOOLMESH_ADMIN_PASSWORD (required for a non-loopback TOOLMESH_UI_HOST: editor login `admin`),
 * TOOLMESH_LLM_BASE_URL / TOOLMESH_LLM_API_KEY / TOOLMESH_LLM_MODEL (passed to Node-RED for the
 * llm-agent node), DOCKER_HOST (a unix:// engine socket).
 *
 * The parts are in scripts/demo/: options.ts (environment, agent config, flow patch), userdir.ts,
 * engine.ts (Docker) and processes.ts (ports, waits, children).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { stopDockerd } from './dockerd';
import { ensureDemoContainer, findEngine, stopDemoContainer, type Engine } from './demo/engine';
import {
  agentConfigYaml, AGENT_ID, DEMO_CONTAINER, DemoError, EXAMPLE_FLOW, isLoopbackHost, PACKAGE, readOptions,
} from './demo/options';
import { forward, httpAnswers, portFree, say, stopChild, tcpAccepts, waitFor } from './demo/processes';
import { prepareUserDir, writeAdminAuth } from './demo/userdir';

/** The caller id the printed mosquitto lines use. */
const SHELL_CALLER = 'cli';
const TOPIC_ROOT = 'toolmesh/v1';

const NODE_RED_READY_MS = 60_000;
const BROKER_READY_MS = 30_000;
const AGENT_READY_MS = 20_000;
const STOP_AGENT_MS = 10_000;
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

/** The LLM settings the llm-agent node will see, for the summary. */
function llmSummary(env: NodeJS.ProcessEnv): string {
  const baseUrl = env.TOOLMESH_LLM_BASE_URL || env.OPENAI_BASE_URL;
  const key = env.TOOLMESH_LLM_API_KEY || env.OPENAI_API_KEY;
  if (!baseUrl && !key) {
    return 'not configured: set TOOLMESH_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama), TOOLMESH_LLM_MODEL '
      + 'and, if the endpoint needs one, TOOLMESH_LLM_API_KEY before npm start, or fill in the "Pi assistant" node. '
      + 'The inject buttons work without an LLM.';
  }
  const from = (a: string, b: string) => (env[a] ? a : b);
  return `${baseUrl ?? 'https://api.openai.com/v1'}${baseUrl ? ` (${from('TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL')})` : ''}, `
    + `model ${env.TOOLMESH_LLM_MODEL || 'gpt-4o-mini (default; TOOLMESH_LLM_MODEL unset)'}, `
    + `API key ${key ? `from ${from('TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY')}` : 'none'}`;
}

async function main(): Promise<number> {
  const opts = readOptions();
  const root = findRoot();
  const userDir = join(root, '.toolmesh-demo');
  const cli = join(root, 'dist/agent/cli.js');
  const redJs = join(root, 'node_modules/node-red/red.js');
  for (const f of [cli, join(root, 'dist/nodes/tool-registry/tool-registry.js'), join(root, 'examples', EXAMPLE_FLOW)]) {
    if (!existsSync(f)) throw new DemoError(`${relative(root, f)} is missing: build first (npm run build; npm start does it)`);
  }
  if (!existsSync(redJs)) throw new DemoError(`${relative(root, redJs)} is missing: run npm install`);

  // the children get our environment (TOOLMESH_LLM_* included) but never the admin password
  const childEnv: NodeJS.ProcessEnv = { ...process.env };
  delete childEnv.TOOLMESH_ADMIN_PASSWORD;
  // the agent's shebang runs `node` from PATH: make that this node
  childEnv.PATH = [dirname(process.execPath), process.env.PATH].filter(Boolean).join(':');

  let engine: Engine | undefined;
  let containerStartedHere = false;
  let authFile: string | undefined;
  let nodeRed: ChildProcess | undefined;
  let agent: ChildProcess | undefined;
  let stopping: Promise<void> | undefined;

  const shutdown = (why: string, code: number): Promise<void> => {
    stopping ??= (async () => {
      say(`${why}: stopping`);
      await stopChild(agent, 'the Pi agent', STOP_AGENT_MS);
      await stopChild(nodeRed, 'Node-RED', STOP_NODE_RED_MS);
      if (engine && containerStartedHere) await stopDemoContainer(engine);
      if (authFile) rmSync(authFile, { force: true });
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
        say(`${sig} again: killing the agent and Node-RED now`);
        for (const c of [agent, nodeRed]) if (c && c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
        process.exit(130);
      }
      void shutdown(sig, 0);
    });
  }

  try {
    if (opts.uiHostGiven) {
      say(`the MQTT broker stays on 127.0.0.1:${opts.mqttPort} in this release (broker authentication arrives later); `
        + `only the editor listens on ${opts.uiHost}`);
    }
    if (!(await portFree(opts.uiHost, opts.uiPort))) {
      throw new DemoError(`port ${opts.uiPort} on ${opts.uiHost} is in use (another Node-RED?); set TOOLMESH_UI_PORT to a free port`);
    }
    if (!(await portFree('127.0.0.1', opts.mqttPort))) {
      throw new DemoError(`port ${opts.mqttPort} on 127.0.0.1 is in use (another MQTT broker?); set TOOLMESH_MQTT_PORT to a free port`);
    }

    prepareUserDir(root, userDir, opts);
    authFile = writeAdminAuth(root, userDir, opts.adminPassword);

    // Docker first: a private dockerd takes a few seconds
    engine = await findEngine(userDir);
    if (engine) {
      try {
        containerStartedHere = await ensureDemoContainer(engine, userDir);
      } catch (e) {
        say(`could not set up container ${DEMO_CONTAINER}: ${(e as Error).message}`);
      }
    }

    const nrArgs = [redJs, '--userDir', userDir, '--port', String(opts.uiPort), '-D', `uiHost=${opts.uiHost}`];
    if (authFile) nrArgs.push('-D', `@${authFile}`);
    say(`starting Node-RED: node ${relative(root, redJs)} --userDir ${relative(root, userDir)} --port ${opts.uiPort}`);
    nodeRed = spawn(process.execPath, nrArgs, { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(nodeRed, '[node-red]');
    let nodeRedExit: string | undefined;
    nodeRed.once('exit', (code, signal) => {
      nodeRedExit = `Node-RED exited (${code ?? signal})`;
      if (!stopping) void shutdown(nodeRedExit, 1);
    });

    const probeHost = opts.uiHost === '0.0.0.0' || opts.uiHost === '::' ? '127.0.0.1' : opts.uiHost;
    const editorUrl = `http://${probeHost.includes(':') ? `[${probeHost}]` : probeHost}:${opts.uiPort}/`;
    if (!(await waitFor(() => httpAnswers(editorUrl), NODE_RED_READY_MS, () => nodeRedExit))) {
      throw new DemoError(`Node-RED did not answer on ${editorUrl} within ${NODE_RED_READY_MS / 1000} s`);
    }
    const brokerUrl = `mqtt://127.0.0.1:${opts.mqttPort}`;
    if (!(await waitFor(() => tcpAccepts('127.0.0.1', opts.mqttPort), BROKER_READY_MS, () => nodeRedExit))) {
      say(`warning: nothing listens on ${brokerUrl} yet. The broker is the tool-registry node's (embedded, port `
        + `${opts.mqttPort}) in the flows; the agent keeps retrying until it appears.`);
    }

    const agentFile = join(userDir, 'pi-agent.yaml');
    writeFileSync(agentFile, agentConfigYaml({ mqttPort: opts.mqttPort, dockerSocket: engine?.socketPath }));
    say(`starting the Pi agent: ${relative(root, cli)} --config ${relative(root, agentFile)}`);
    let online = false;
    agent = spawn(cli, ['--config', agentFile], { cwd: userDir, env: childEnv, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    forward(agent, `[${AGENT_ID}]`, (line) => { if (line.includes(`online as ${AGENT_ID}`)) online = true; });
    let agentExit: string | undefined;
    agent.once('error', (e) => { agentExit = `the Pi agent could not start: ${e.message}`; });
    agent.once('exit', (code, signal) => {
      agentExit = `the Pi agent exited (${code ?? signal})`;
      if (!stopping) void shutdown(agentExit, 1);
    });
    if (!(await waitFor(async () => online, AGENT_READY_MS, () => agentExit ?? nodeRedExit))) {
      say(`warning: the Pi agent is not online after ${AGENT_READY_MS / 1000} s; see its [${AGENT_ID}] lines`);
    }

    const shownUrl = isLoopbackHost(opts.uiHost) ? editorUrl : `http://<this machine>:${opts.uiPort}/ (listening on ${opts.uiHost}; here: ${editorUrl})`;
    const tool = engine ? 'docker_list_containers' : 'diag_echo';
    const args = engine ? '{}' : '{"text":"hello"}';
    const topic = `${TOPIC_ROOT}/agents/${AGENT_ID}/rpc/${SHELL_CALLER}`;
    const lines = [
      '',
      'ToolMesh demo is running.',
      `  Node-RED editor: ${shownUrl}${opts.adminPassword ? '  (login: admin / TOOLMESH_ADMIN_PASSWORD)' : ''}`,
      '                   tab "ToolMesh: Docker on the Pi"; more under Import > Examples > node-red-contrib-toolmesh',
      `  MQTT broker:     ${brokerUrl} (embedded in Node-RED; this machine only, no authentication yet)`,
      `  Pi agent:        id ${AGENT_ID}, packs ${engine ? `docker (${engine.socketPath}), ` : ''}system, diag; config ${relative(root, join(userDir, 'pi-agent.yaml'))}`,
      `  LLM endpoint:    ${llmSummary(process.env)}`,
      '',
      'The protocol from a shell (mosquitto-clients). The retained catalog:',
      `  mosquitto_sub -h 127.0.0.1 -p ${opts.mqttPort} -v -t '${TOPIC_ROOT}/agents/+/catalog' -C 1 -W 5`,
      `A protocol v1 tools/call as caller "${SHELL_CALLER}" (the result arrives on ${topic}/res):`,
      `  mosquitto_sub -h 127.0.0.1 -p ${opts.mqttPort} -t '${topic}/res' -C 1 -W 30 & sleep 1; `
        + `mosquitto_pub -h 127.0.0.1 -p ${opts.mqttPort} -q 1 -t '${topic}/req' `
        + `-m '{"jsonrpc":"2.0","id":"${SHELL_CALLER}-'$(date +%s%N)'","method":"tools/call","params":{"name":"${tool}","arguments":${args}}}'; wait`,
      '',
      `Ctrl-C stops the agent, Node-RED${engine?.startedHere ? ' and the private dockerd' : ''}.`,
      '',
    ];
    // unprefixed, so the commands can be copied as they are
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
