/**
 * Broker authentication in the demo: the tool-registry's embedded broker (127.0.0.1 only) refuses
 * anonymous clients, and every process the demo starts logs in as a user of its own, under the
 * rules of protocol/broker-auth.ts (an agent publishes only on its own topics, a caller only
 * under its own caller id; the username is the id).
 *
 * - Passwords: 24 random bytes, base64url, one file per user `.toolmesh-demo/broker/<user>.pass`
 *   (the folder mode 0700, each file mode 0600), made on the first start and reused after.
 * - Users ({@link demoBrokerUsers}): each demo agent (role `agent`); the callers `cli` (for
 *   scripts and the printed mosquitto lines; also `.toolmesh-demo/mqtt-cli.json`), `mcp-demo`
 *   (the HTTP MCP bridge), `mcp-vscode` and `mcp-claude` (the stdio bridges the printed VS Code
 *   and Claude Desktop configs start); and `demo-data` (role `admin`: the only role the rules
 *   let use topics outside ToolMesh's, for the motion example's `mqtt in` node and the dashboard
 *   widgets' MQTT nodes). Node-RED's own registry caller and the flows' tool-in agents get
 *   passwords the registry generates for itself (nodes/tool-registry/registry.ts).
 * - Before Node-RED starts ({@link settleBrokerAuth}), every embedded tool-registry in the user's
 *   flows that listens on the demo's port gets `requireAuth` on and the demo users in its
 *   `users` credential (lines the user added there for other ids are kept), and every core
 *   `mqtt-broker` node pointing at 127.0.0.1:<port> without a user of its own gets `demo-data`.
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { isValidId } from '@toolmesh/agent/protocol';
import type { BrokerRole } from '@toolmesh/agent/protocol/broker-auth';
import { openCredentials } from './gate-keys';
import { DemoError, type FlowNode } from './options';

/** The folder of the password files, in the demo user directory. */
export const BROKER_DIR = 'broker';
/** The caller for scripts and the printed mosquitto lines. */
export const CLI_CALLER = 'cli';
/** The file with {@link CLI_CALLER}'s URL, username and password, in the demo user directory. */
export const CLI_CREDENTIALS_FILE = 'mqtt-cli.json';
/** The callers the printed stdio MCP configs log in as (one each, so both can run at once). */
export const STDIO_MCP_CALLERS = { vscode: 'mcp-vscode', claude: 'mcp-claude' } as const;
/** The admin user of the flows' and widgets' own MQTT topics (e.g. home/hall/motion). */
export const DATA_USER = 'demo-data';
/** The first line of the demo's part of a registry's `users` credential; the demo rewrites the lines after it. */
const USERS_MARK = '# written by the ToolMesh demo (npm start) on every start; lines above this one are kept';

/** A broker user of the demo with its password. */
export interface DemoBrokerUser {
  username: string;
  role: BrokerRole;
  /** Absolute path of the file holding the password (one line, mode 0600). */
  passwordFile: string;
  password: string;
}

/**
 * The password of `username`, from `<userDir>/broker/<username>.pass`, made (24 random bytes,
 * base64url) when the file is absent or empty. The file and folder are set to 0600 / 0700 also
 * when they exist.
 * @throws DemoError when `username` is not an id (`^[A-Za-z0-9_-]{1,64}$`).
 */
export function ensurePassword(userDir: string, username: string): { file: string; password: string } {
  if (!isValidId(username)) throw new DemoError(`broker user ${JSON.stringify(username)}: must be an agent or caller id (1–64 letters, digits, _ or -)`);
  const dir = join(userDir, BROKER_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  chmodSync(dir, 0o700);
  const file = join(dir, `${username}.pass`);
  let password = existsSync(file) ? readFileSync(file, 'utf8').trim() : '';
  if (!password) {
    password = randomBytes(24).toString('base64url');
    const tmp = `${file}.tmp`;
    writeFileSync(tmp, `${password}\n`, { mode: 0o600 });
    renameSync(tmp, file);
  }
  chmodSync(file, 0o600);
  return { file, password };
}

/**
 * The demo's broker users (see the module comment), passwords made or read.
 * @param agentIds the ids of the agent processes the demo runs.
 */
export function demoBrokerUsers(userDir: string, agentIds: string[]): DemoBrokerUser[] {
  const wanted: Array<[string, BrokerRole]> = [
    ...[...new Set(agentIds)].map((id): [string, BrokerRole] => [id, 'agent']),
    [CLI_CALLER, 'caller'], ['mcp-demo', 'caller'], [STDIO_MCP_CALLERS.vscode, 'caller'], [STDIO_MCP_CALLERS.claude, 'caller'],
    [DATA_USER, 'admin'],
  ];
  return wanted.map(([username, role]) => {
    const { file, password } = ensurePassword(userDir, username);
    return { username, role, passwordFile: file, password };
  });
}

/**
 * Writes `<userDir>/mqtt-cli.json` (mode 0600): `{"url", "username", "password"}` of the
 * {@link CLI_CALLER} caller, for scripts. The caller id of such a client is its username.
 * @returns the file's path.
 */
export function writeCliCredentials(userDir: string, url: string, user: DemoBrokerUser): string {
  const file = join(userDir, CLI_CREDENTIALS_FILE);
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ url, username: user.username, password: user.password }, null, 2)}\n`, { mode: 0o600 });
  chmodSync(tmp, 0o600);
  renameSync(tmp, file);
  return file;
}

/**
 * A registry's `users` credential with the demo's users: the lines before the demo's mark that
 * name none of the demo's ids are kept (the user's own), then the mark and one `role id password`
 * line per demo user (nodes/tool-registry/users.ts).
 */
export function usersCredential(existing: string | undefined, users: DemoBrokerUser[]): string {
  const ids = new Set(users.map((u) => u.username));
  const kept: string[] = [];
  for (const line of (existing ?? '').split(/\r?\n/)) {
    if (line.trim() === USERS_MARK) break;
    const id = /^\s*\S+\s+(\S+)/.exec(line)?.[1];
    if (line.trim() && !(id && ids.has(id) && !line.trim().startsWith('#'))) kept.push(line);
  }
  return [...kept, USERS_MARK, ...users.map((u) => `${u.role} ${u.username} ${u.password}`)].join('\n');
}

/** True when an embedded tool-registry node listens on 127.0.0.1:`port` (the flows' default port is 1883). */
function demoRegistry(n: FlowNode, port: number): boolean {
  return n.type === 'toolmesh-tool-registry' && (n.mode ?? 'embedded') === 'embedded' && !n.brokerNode && Number(n.port ?? 1883) === port;
}

/** True when a core mqtt-broker node points at the demo broker. */
function demoMqttBroker(n: FlowNode, port: number): boolean {
  return n.type === 'mqtt-broker' && /^(127\.0\.0\.1|localhost)$/.test(String(n.broker ?? '')) && Number(n.port ?? 1883) === port;
}

/** What {@link settleBrokerAuth} did. */
export interface BrokerAuthSettled {
  /** Ids of the tool-registry nodes that run the demo's broker with authentication. */
  registries: string[];
  /** Ids of the core mqtt-broker nodes that log in as {@link DATA_USER}. */
  mqttBrokers: string[];
  /** One line each worth printing (authentication turned on for a registry of an earlier run). */
  notes: string[];
}

/**
 * Turns on authentication for the demo broker in the user's flows (see the module comment),
 * before Node-RED starts: `requireAuth: true` on the embedded tool-registry nodes on `port` (the
 * flow file is rewritten only when one lacked it), the demo users in their `users` credential,
 * and {@link DATA_USER} in the credentials of core mqtt-broker nodes on 127.0.0.1:`port` that
 * have no user of their own.
 * @param settings Node-RED's `flowFile` (default flows.json) and `credentialSecret`.
 * @throws DemoError when settings.js has no credentialSecret, or the credentials file cannot be read
 *   (the broker would then refuse every agent).
 */
export function settleBrokerAuth(userDir: string, settings: { flowFile?: string; credentialSecret?: unknown }, port: number, users: DemoBrokerUser[]): BrokerAuthSettled {
  const flowFile = resolve(userDir, settings.flowFile ?? 'flows.json');
  let flows: FlowNode[] = [];
  try { flows = JSON.parse(readFileSync(flowFile, 'utf8')) as FlowNode[]; } catch { /* no flows yet, or Node-RED reports the broken file */ }
  if (!Array.isArray(flows)) flows = [];
  const registries = flows.filter((n) => demoRegistry(n, port));
  const brokers = flows.filter((n) => demoMqttBroker(n, port));
  const settled: BrokerAuthSettled = { registries: registries.map((n) => n.id), mqttBrokers: [], notes: [] };
  if (!registries.length && !brokers.length) return settled;

  const store = openCredentials(userDir, settings);
  if ('problem' in store) {
    throw new DemoError(store.problem === 'no-secret'
      ? `${join(userDir, 'settings.js')} has no credentialSecret, so the demo cannot give the broker its users (Node-RED's credentials are encrypted with a key only Node-RED knows). Add a credentialSecret there, or delete settings.js to have the demo write a new one`
      : `${store.problem}: the demo cannot give the broker its users`);
  }
  const before = JSON.stringify(store.creds);
  let flowsChanged = false;
  for (const r of registries) {
    if (r.requireAuth !== true && r.requireAuth !== 'true') {
      r.requireAuth = true;
      flowsChanged = true;
      settled.notes.push(`tool-registry ${r.id}: broker authentication turned on (the demo's agents and callers log in with the passwords in ${join(userDir, BROKER_DIR)}/)`);
    }
    const creds = store.creds[r.id] ?? {};
    store.creds[r.id] = { ...creds, users: usersCredential(typeof creds.users === 'string' ? creds.users : undefined, users) };
  }
  const data = users.find((u) => u.username === DATA_USER);
  for (const b of data ? brokers : []) {
    const creds = store.creds[b.id] ?? {};
    if (typeof creds.user === 'string' && creds.user && creds.user !== DATA_USER) continue; // the user's own login
    store.creds[b.id] = { ...creds, user: DATA_USER, password: data!.password };
    settled.mqttBrokers.push(b.id);
  }
  if (JSON.stringify(store.creds) !== before) store.save();
  if (flowsChanged) {
    const tmp = `${flowFile}.toolmesh-demo.tmp`;
    writeFileSync(tmp, `${JSON.stringify(flows, null, 4)}\n`);
    renameSync(tmp, flowFile);
  }
  return settled;
}

/**
 * A topic that an `mqtt in` node of the user's flows listens on through one of `mqttBrokers` (ids
 * of core mqtt-broker nodes, {@link BrokerAuthSettled.mqttBrokers}), one without wildcards, with
 * the `login` that may publish on it; undefined when there is none.
 */
export function dataTopic(
  userDir: string, settings: { flowFile?: string }, mqttBrokers: string[], login: { username: string; passwordFile: string },
): { topic: string; username: string; passwordFile: string } | undefined {
  if (!mqttBrokers.length) return undefined;
  let flows: FlowNode[] = [];
  try { flows = JSON.parse(readFileSync(resolve(userDir, settings.flowFile ?? 'flows.json'), 'utf8')) as FlowNode[]; } catch { return undefined; }
  if (!Array.isArray(flows)) return undefined;
  const node = flows.find((n) => n.type === 'mqtt in' && mqttBrokers.includes(String(n.broker)) && typeof n.topic === 'string' && n.topic && !/[#+]/.test(n.topic));
  return node ? { topic: String(node.topic), ...login } : undefined;
}
