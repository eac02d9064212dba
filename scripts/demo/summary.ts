/** What the demo prints once everything runs: editor, broker, agents, approvals, LLM, shell lines, audit checks. */
import { extname, relative } from 'node:path';
import type { AgentProcess } from './agents';
import type { DemoDevice } from './devices';
import { PACKAGE } from './options';
import { CLI_CALLER } from './broker-users';

/** The caller id (and broker user) the printed mosquitto lines use. */
const SHELL_CALLER = CLI_CALLER;
const TOPIC_ROOT = 'toolmesh/v1';

/** The LLM settings the llm-agent nodes will see. */
export function llmSummary(env: NodeJS.ProcessEnv): string {
  const baseUrl = env.TOOLMESH_LLM_BASE_URL || env.OPENAI_BASE_URL;
  const key = env.TOOLMESH_LLM_API_KEY || env.OPENAI_API_KEY;
  if (!baseUrl && !key) {
    return 'not configured: set TOOLMESH_LLM_BASE_URL (e.g. http://127.0.0.1:11434/v1 for Ollama), TOOLMESH_LLM_MODEL '
      + 'and, if the endpoint needs one, TOOLMESH_LLM_API_KEY before npm start, or fill in the llm-agent nodes. '
      + 'The inject buttons that call tools directly work without an LLM.';
  }
  const from = (a: string, b: string) => (env[a] ? a : b);
  return `${baseUrl ?? 'https://api.openai.com/v1'}${baseUrl ? ` (${from('TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL')})` : ''}, `
    + `model ${env.TOOLMESH_LLM_MODEL || 'gpt-4o-mini (default; TOOLMESH_LLM_MODEL unset)'}, `
    + `API key ${key ? `from ${from('TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY')}` : 'none'}`;
}

/** Everything the summary shows. */
export interface SummaryInput {
  root: string;
  editorUrl: string;
  /** The chat page's URL (flows/chat-dashboard.json), when Dashboard 2.0 is installed and the flow is in. */
  chatUrl?: string;
  adminLogin: boolean;
  mqttPort: number;
  /** Running agents with a note per agent (packs in use, what is simulated). */
  agents: Array<{ process: AgentProcess; notes: string[] }>;
  skipped: Extract<DemoDevice, { skipped: string }>[];
  /** The demo key file, and the key ids the agents trust (gate-keys.ts). */
  keyFile: string;
  kids: string[];
  /** A tool the shell example calls on agent `shellAgent`, with its arguments as JSON. */
  shellAgent: string;
  shellTool: string;
  shellArgs: string;
  dockerdStartedHere: boolean;
  /** `packages/agent/dist/agent/toolmesh.js`, absolute. */
  toolmeshCli: string;
  /** The live files of the audit logs to check (absolute): the agents' and the flows' audit-log nodes'. */
  auditLogs: string[];
  /** The broker's logins (broker-users.ts); absolute paths. */
  brokerAuth: {
    /** The folder of the password files. */
    dir: string;
    /** The password file of caller {@link SHELL_CALLER}, which the mosquitto lines read. */
    cliPasswordFile: string;
    /** `mqtt-cli.json`: the same caller's URL, username and password for scripts. */
    cliJson: string;
    /** A topic outside ToolMesh's that a flow's `mqtt in` listens on, and the user (admin) that may publish it. */
    data?: { topic: string; username: string; passwordFile: string };
  };
}

/** `text` as one shell word: as it is when it is safe, else in single quotes. */
export function shellWord(text: string): string {
  return /^[\w./@%+=:,-]*$/.test(text) ? text : `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * The command that checks one audit log's chain, to run from `root`:
 * `node <cli> audit verify <dir>/<stem>*<ext>` — the glob takes the live file and the files rotated
 * from it (`<stem>-<UTC date-time><ext>`), which toolmesh audit verify accepts in any order.
 */
export function auditVerifyCommand(root: string, cli: string, liveFile: string): string {
  const rel = relative(root, liveFile);
  const ext = extname(rel);
  return `node ${shellWord(relative(root, cli))} audit verify ${shellWord(rel.slice(0, rel.length - ext.length))}*${shellWord(ext)}`;
}

/** The summary lines (unprefixed, so the commands can be copied as they are). */
export function summaryLines(s: SummaryInput): string[] {
  const topic = `${TOPIC_ROOT}/agents/${s.shellAgent}/rpc/${SHELL_CALLER}`;
  const b = s.brokerAuth;
  // the password stays in its file: the line reads it when it runs
  const login = (user: string, file: string) => `-u ${user} -P "$(cat ${shellWord(file)})"`;
  const cli = `-h 127.0.0.1 -p ${s.mqttPort} ${login(SHELL_CALLER, b.cliPasswordFile)}`;
  const width = Math.max(...s.agents.map((a) => a.process.id.length));
  const agentLines = s.agents.map(({ process: a, notes }) => {
    const state = a.online ? `${a.online.tools} tools (packs: ${a.online.packs || 'none'})` : a.exit ?? 'not online yet';
    return [`    ${a.id.padEnd(width)}  ${state}; config ${relative(s.root, a.configFile)}`, ...notes.map((n) => `    ${' '.repeat(width)}  ${n}`)];
  }).flat();
  const skippedLines = s.skipped.map((d) => `    not started: ${d.source}: ${d.skipped}`);
  return [
    '',
    'ToolMesh demo is running.',
    `  Node-RED editor: ${s.editorUrl}${s.adminLogin ? '  (login: admin / TOOLMESH_ADMIN_PASSWORD)' : ''}`,
    `                   one tab per example flow; Menu > Import > Examples > ${PACKAGE} lists them`,
    ...(s.chatUrl ? [`  Chat page:       ${s.chatUrl}  (approvals: ${s.chatUrl.replace(/\/chat$/, '/approvals')}; whoever reaches it can approve)`] : []),
    `  MQTT broker:     mqtt://127.0.0.1:${s.mqttPort} (embedded in Node-RED; this machine only; login required, anonymous clients are refused)`,
    `                   one user per agent and caller, each password in ${relative(s.root, b.dir)}/<user>.pass (mode 0600);`,
    `                   for scripts: caller "${SHELL_CALLER}" in ${relative(s.root, b.cliJson)} ({"url","username","password"}; the caller id is the username)`,
    '  Agents:',
    ...agentLines,
    ...skippedLines,
    `  Approvals:       confirm-gates without a key of their own sign with the demo key ${relative(s.root, s.keyFile)};`,
    `                   the agents trust the gates' keys as ${s.kids.join(', ') || '(no confirm-gate in the flows)'}.`,
    '                   A gate imported while the demo runs has no key yet: paste that file into its "Signing key"',
    '                   field and deploy, or restart the demo (it gives every key-less gate the demo key).',
    `  LLM endpoint:    ${llmSummary(process.env)}`,
    '',
    `The protocol from a shell (mosquitto-clients), logged in as caller "${SHELL_CALLER}". Every agent's status, the flows' own agents too (it stops after 3 s):`,
    `  mosquitto_sub ${cli} -v -t '${TOPIC_ROOT}/agents/+/status' -W 3`,
    `A protocol v1 tools/call as caller "${SHELL_CALLER}" (the result arrives on ${topic}/res):`,
    `  mosquitto_sub ${cli} -t '${topic}/res' -C 1 -W 30 & sleep 1; `
      + `mosquitto_pub ${cli} -q 1 -t '${topic}/req' `
      + `-m '{"jsonrpc":"2.0","id":"${SHELL_CALLER}-'$(date +%s%N)'","method":"tools/call","params":{"name":"${s.shellTool}","arguments":${s.shellArgs}}}'; wait`,
    ...(b.data ? [
      `A message on ${b.data.topic}, which a flow's mqtt in node listens on (topics outside ToolMesh's take the demo's admin user "${b.data.username}"):`,
      `  mosquitto_pub -h 127.0.0.1 -p ${s.mqttPort} ${login(b.data.username, b.data.passwordFile)} -t '${b.data.topic}' -m on`,
    ] : []),
    '',
    'The audit trail: every agent\'s execution log and the example flows\' audit-log files (empty until the first call).',
    `Check their hash chains, from ${s.root}:`,
    ...s.auditLogs.map((f) => `  ${auditVerifyCommand(s.root, s.toolmeshCli, f)}`),
    '',
    `Ctrl-C stops the agents, Node-RED${s.dockerdStartedHere ? ' and the private dockerd' : ''}.`,
    '',
  ];
}
