#!/usr/bin/env -S node --max-semi-space-size=1
/**
 * `toolmesh-agent --config <file.yaml>`: runs an agent until SIGINT/SIGTERM, then publishes
 * `offline` and exits 0. It never exits because its broker went away: it reconnects for as long
 * as it runs (backoff with jitter, at most 5 s between attempts), also when the broker is not
 * there at start-up.
 *
 * Exit codes (the systemd unit restarts on everything but 0 and 2):
 * - 0: stopped by SIGINT or SIGTERM (also `--help`, `--version`, a passing `--check`);
 * - 1: an unexpected failure at start-up or later (a defect: the journal has the stack);
 * - 2: bad usage or a bad config (each problem names its key; restarting does not help), or a
 *   configured pack's library is not installed (dockerode: the message names the install command).
 *
 * The shebang caps V8's young generation at 1 MB per semi-space: an idle agent on a small board
 * keeps ~12 MB less resident memory (bench/run.mjs prints the figure), and scavenges stay cheap
 * at the message rates agents see. `env -S` needs GNU coreutils 8.30+ (Debian 10 and later).
 */
import { ConfigError, loadConfig } from './config';
import { AGENT_VERSION, consoleLogger, startAgent } from './runtime';
import { PackSetupError } from './packs/types';
import { urlForLog } from '../protocol/redact';

const USAGE = `usage: toolmesh-agent --config <file.yaml> [--check]
       toolmesh-agent join <join string> --config <file.yaml> [--packs docker,system,...] [--id <agent id>] [--force] [--run]

  -c, --config <file>  agent config (YAML, version: 1)
      --check          validate the config and exit
  -v, --version        print the version
  -h, --help           this text

join: trades a join string from the editor ("Add a device") for a config that comes online as
is (mode 0600; the broker password in <file>.pass beside it). Default packs: system. With --run
it then runs the agent with that config, as toolmesh-agent --config <file.yaml> would.

Environment: TOOLMESH_BROKER_PASSWORD is used when the config sets no broker password.`;

/**
 * `toolmesh-agent join ...`: exit 0 when the config is written, 2 on any problem (one line). With
 * `--run` it goes on to run the agent with the written config ({@link main}'s exit codes).
 */
async function join(argv: string[]): Promise<number> {
  let joinString: string | undefined;
  let config: string | undefined;
  let packs: string[] | undefined;
  let id: string | undefined;
  let force = false;
  let run = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-c' || a === '--config') config = argv[++i];
    else if (a.startsWith('--config=')) config = a.slice(9);
    else if (a === '--packs') packs = (argv[++i] ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    else if (a.startsWith('--packs=')) packs = a.slice(8).split(',').map((p) => p.trim()).filter(Boolean);
    else if (a === '--id') id = argv[++i];
    else if (a.startsWith('--id=')) id = a.slice(5);
    else if (a === '--force') force = true;
    else if (a === '--run') run = true;
    else if (!a.startsWith('-') && joinString === undefined) joinString = a;
    else { console.error(`unknown argument: ${a}\n\n${USAGE}`); return 2; }
  }
  if (!joinString || !config) { console.error(`join needs a join string and --config <file>\n\n${USAGE}`); return 2; }
  // loaded only for join: an agent that runs does not carry the HTTP client
  const { runJoin } = await import('./join');
  const { JoinError } = await import('../protocol/join');
  let written: string;
  try {
    const r = await runJoin({ joinString, config, packs, agentId: id, force });
    console.log(`joined as agent ${r.agentId}: wrote ${r.config}${r.passwordFile ? ` and ${r.passwordFile}` : ''}${r.caFile ? ` and ${r.caFile}` : ''} (mode 0600)`);
    if (r.answer.account === 'external') {
      console.log(`The broker is not run by Node-RED: add user ${r.answer.username ?? r.agentId} with this password (shown once; it is also in ${r.passwordFile}):\n  ${r.password}\n(the editor's "Add a device" dialog shows the mosquitto lines)`);
    }
    if (!run) {
      console.log(`next: toolmesh-agent --config ${r.config}`);
      return 0;
    }
    console.log(`starting it; next time: toolmesh-agent --config ${r.config}`);
    written = r.config;
  } catch (e) {
    if (e instanceof JoinError || (e as NodeJS.ErrnoException).code === 'EEXIST' || e instanceof ConfigError) {
      console.error(`toolmesh-agent join: ${(e as Error).message}`);
      return 2;
    }
    throw e;
  }
  return main(['--config', written]);
}

async function main(argv: string[]): Promise<number> {
  if (argv[0] === 'join') return join(argv.slice(1));
  let file: string | undefined;
  let check = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-c' || a === '--config') file = argv[++i];
    else if (a.startsWith('--config=')) file = a.slice(9);
    else if (a === '--check') check = true;
    else if (a === '-v' || a === '--version') { console.log(AGENT_VERSION); return 0; }
    else if (a === '-h' || a === '--help') { console.log(USAGE); return 0; }
    else { console.error(`unknown argument: ${a}\n\n${USAGE}`); return 2; }
  }
  if (!file) { console.error(USAGE); return 2; }
  let cfg;
  try {
    cfg = loadConfig(file);
  } catch (e) {
    if (e instanceof ConfigError) { console.error(e.message); return 2; }
    throw e;
  }
  if (check) { console.log(`${file}: ok (agent ${cfg.agent.id}, packs: ${Object.keys(cfg.packs).join(', ') || 'none'})`); return 0; }
  const log = consoleLogger(cfg.agent.id);
  // handlers first: a signal while the broker is still unreachable at start-up is a clean stop too
  let signalled: ((sig: string) => void) | undefined;
  const signal = new Promise<string>((resolve) => { signalled = resolve; });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => signalled?.(sig));
  const starting = startAgent(cfg, log);
  const first = await Promise.race([starting.then(() => undefined), signal]).catch((e: unknown) => e);
  if (first instanceof ConfigError) {
    // a config problem that shows only once the tools are known (a risk override that lowers a risk)
    console.error(first.message.replace('<config>', file));
    return 2;
  }
  if (first instanceof PackSetupError) {
    // a pack's library is not installed here (dockerode): a restart would not help
    console.error(`toolmesh-agent: ${first.message}`);
    return 2;
  }
  if (first instanceof Error || (first !== undefined && typeof first !== 'string')) throw first;
  if (typeof first === 'string') {
    // nothing ran yet (no call can arrive before the first connection): exit without waiting for a broker
    log.info(`${first} before the first connection to ${urlForLog(cfg.broker.url)}: stopped`);
    return 0;
  }
  const agent = await starting;
  const sig = await signal;
  log.info(`${sig}: stopping`);
  await agent.stop().catch((e: Error) => log.error(`stop failed: ${e.message}`));
  log.info('stopped');
  return 0;
}

main(process.argv.slice(2)).then((code) => process.exit(code), (e: Error) => {
  console.error(`toolmesh-agent: ${e.stack ?? e.message}`);
  process.exit(1);
});
