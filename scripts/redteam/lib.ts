/**
 * The world `npm run redteam` attacks, started once for all scenarios (scripts/redteam): a real
 * Node-RED process with this pack and admin authentication, the built `toolmesh-agent` on the
 * Node-RED registry's embedded broker (with `requireAuth` and a user list), and the MCP bridge
 * (`toolmesh mcp`, Streamable HTTP, gate approvals). Processes are the fault suite's
 * (scripts/faults/lib.ts: started by pid, killed by pid at exit, temp dirs removed).
 *
 * Flows (one tab):
 * - `reg`: tool-registry, embedded broker on 127.0.0.1 with `requireAuth`; users `agent pi`,
 *   `caller dash`, `admin ops`; caller id `flowreg`.
 * - tool-in `flows/wipe` (risk high) → change → file node appending `ran` to {@link World.markers}.wipe → tool-out.
 * - confirm-gate `gate` (kid `gate-here`, key file in the userDir) → remote-tool → a file of
 *   `{toolCall, toolResult}` lines (markers.rtOut); `POST /gate-in` puts `msg.toolCall` = body into it.
 * - `POST /rt-in`: body as `msg.toolCall` → a remote-tool → the reply (`msg.toolResult`).
 * - `reg2`: a second embedded broker WITHOUT authentication (a gate's MQTT approval topic is an
 *   arbitrary topic, which the broker's ACL gives no caller); tool-in `flows2/wipe2` (high) →
 *   file markers.wipe2; confirm-gate `gate2` (approval topic `redteam/button`, remote requests on)
 *   → remote-tool; `POST /gate2-in` as above.
 * - llm-agent `llm` (API key credential planted, base URL: {@link World.llmUrl}, a fake model
 *   server of this process that records what it was sent); `POST /ask` triggers it.
 * - `reg3`: an external-broker registry whose URL carries user info (should be refused).
 *
 * Everything listens on and connects to 127.0.0.1.
 */
import { existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import { generateApprovalKeys } from '@toolmesh/agent/protocol';
import { encryptCredentials } from '../demo/gate-keys';
import { AGENT_CLI, Child, REPO_ROOT, accepts, freePort, tempDir, waitFor } from '../faults/lib';

export { AGENT_CLI, Child, REPO_ROOT, accepts, freePort, percentile, sleep, tempDir, waitFor, killEverything } from '../faults/lib';

/** Prints one progress line on stderr (the table goes to stdout). */
export const say = (msg: string) => process.stderr.write(`[redteam] ${msg}\n`);

const NODE_RED = join(REPO_ROOT, 'node_modules/node-red/red.js');
export const TOOLMESH_CLI = join(REPO_ROOT, 'dist/nodes/cli.js');

/**
 * Secrets planted in the run: each holds `@`, `%`, `/` and a space, the characters that break
 * or survive URL encoding. Scenario K looks for them (raw, URL-encoded, base64) in every
 * process's output, every retained message and every audit file.
 */
export const SECRETS = {
  piPassword: 'pi p@ss%2F/w0rd-71',
  dashPassword: 'dash @%/ secret-9x',
  opsPassword: 'ops s3cr@t %/ 44',
  mcpToken: 'mcp tok@n%/ 0123456789abcdef',
  llmKey: 'sk-red @%/ team-0123456789',
  urlPassword: 'url p@ss%/ 5',
} as const;

/** Node-RED admin users: `admin` (everything), `viewer` (no toolmesh-tool-registry.read, no toolmesh-confirm-gate.read). */
export const NR_PASSWORD = 'redteam-editor-pw';
export const VIEWER_PERMISSIONS = ['settings.read', 'flows.read', 'nodes.read', 'plugins.read', 'status.read', 'context.read', 'library.read'];

/** One high-risk tool call as a remote-tool or a confirm-gate takes it in `msg.toolCall`. */
export interface ToolCallMsg { id: string; agent: string; tool: string; arguments: Record<string, unknown>; risk?: string; approval?: string }

/** Everything started for the run. */
export interface World {
  dir: string;
  nr: Child;
  nrUrl: string;
  userDir: string;
  regPort: number;
  reg2Port: number;
  regUrl: string;
  reg2Url: string;
  /** Key of confirm-gate `gate` (kid `gate-here`); its key file is in the userDir. */
  gateKey: { privateKeyPem: string; publicKeyPem: string };
  markers: { wipe: string; wipe2: string; rtOut: string };
  agent: Child;
  agentRecord: string;
  agentAudit: string;
  agentUsed: string;
  bridge: Child;
  bridgeUrl: string;
  mcpAudit: string;
  llmUrl: string;
  /** Authorization headers of what the fake model server was sent. */
  llmSeen: string[];
  /** Every child started for the run (for the output grep), by name. */
  children: Child[];
  /** Admin API bearer token of `user` (`admin` or `viewer`). */
  token(user: 'admin' | 'viewer'): Promise<string>;
  /** Lines written to a marker file so far (0 when absent). */
  count(file: string): number;
  stop(): Promise<void>;
}

/** Lines in `file`, 0 when it does not exist. */
export function lineCount(file: string): number {
  if (!existsSync(file)) return 0;
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).length;
}

function bcryptHash(password: string): string {
  const path = require.resolve('bcryptjs', { paths: [join(REPO_ROOT, 'node_modules/node-red')] });
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require(path) as { hashSync(pw: string, rounds: number): string }).hashSync(password, 8);
}

/** The function node body that answers the HTTP request at once and passes the body on as msg.toolCall (output 2). */
const TO_TOOL_CALL = 'return [{ _msgid: msg._msgid, req: msg.req, res: msg.res, payload: { queued: true } }, { toolCall: msg.payload }];';

/** The flows of the module comment. */
function flows(w: { regPort: number; reg2Port: number; markers: World['markers']; llmUrl: string }): unknown[] {
  const z = 'rt';
  const at = { z, x: 100, y: 100 };
  const file = (id: string, filename: string, next: string[] = []) => ({
    id, type: 'file', ...at, filename, filenameType: 'str', appendNewline: true, createDir: true, overwriteFile: 'false', encoding: 'none', wires: [next],
  });
  const setPayload = (id: string, to: string, next: string) => ({ id, type: 'change', ...at, rules: [{ t: 'set', p: 'payload', pt: 'msg', to, tot: 'str' }], wires: [[next]] });
  return [
    { id: z, type: 'tab', label: 'redteam' },
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'auth', mode: 'embedded', port: w.regPort, host: '127.0.0.1', requireAuth: true, callerId: 'flowreg', policy: '*/*' },
    { id: 'reg2', type: 'toolmesh-tool-registry', name: 'open', mode: 'embedded', port: w.reg2Port, host: '127.0.0.1', callerId: 'flowreg2', policy: '*/*' },
    {
      id: 'reg3', type: 'toolmesh-tool-registry', name: 'userinfo', mode: 'external', callerId: 'flowreg3', policy: '*/*',
      broker: `mqtt://dash:${encodeURIComponent(SECRETS.urlPassword)}@127.0.0.1:${w.regPort}`,
    },
    // B–E: the high-risk flow tool on the authenticated broker
    { id: 'tin_wipe', type: 'toolmesh-tool-in', ...at, registry: 'reg', agent: 'flows', tool: 'wipe', description: 'Wipes the disk.', risk: 'high', wires: [['mark_wipe']] },
    setPayload('mark_wipe', 'ran', 'file_wipe'),
    file('file_wipe', w.markers.wipe, ['tout']),
    { id: 'tout', type: 'toolmesh-tool-out', ...at, wires: [] },
    // D: the gate of this Node-RED
    { id: 'gate_in', type: 'http in', ...at, url: '/gate-in', method: 'post', wires: [['gate_in_fn']] },
    { id: 'gate_in_fn', type: 'function', ...at, func: TO_TOOL_CALL, outputs: 2, wires: [['gate_in_res'], ['gate']] },
    { id: 'gate_in_res', type: 'http response', ...at, statusCode: '200' },
    { id: 'gate', type: 'toolmesh-confirm-gate', ...at, name: 'gate', registry: 'reg', kid: 'gate-here', timeout: '60000', wires: [['rt_gate'], [], []] },
    { id: 'rt_gate', type: 'toolmesh-remote-tool', ...at, registry: 'reg', wires: [['rt_gate_fn']] },
    { id: 'rt_gate_fn', type: 'function', ...at, func: 'msg.payload = JSON.stringify({ toolCall: msg.toolCall, toolResult: msg.toolResult }); return msg;', outputs: 1, wires: [['file_rt']] },
    file('file_rt', w.markers.rtOut),
    // D: the same remote-tool path, answering over HTTP (a replay of an approved msg.toolCall)
    { id: 'rt_in', type: 'http in', ...at, url: '/rt-in', method: 'post', wires: [['rt_in_fn']] },
    { id: 'rt_in_fn', type: 'function', ...at, func: 'msg.toolCall = msg.payload; return msg;', outputs: 1, wires: [['rt_replay']] },
    { id: 'rt_replay', type: 'toolmesh-remote-tool', ...at, registry: 'reg', wires: [['rt_replay_fn']] },
    { id: 'rt_replay_fn', type: 'function', ...at, func: 'msg.payload = msg.toolResult; msg.statusCode = 200; return msg;', outputs: 1, wires: [['rt_replay_res']] },
    { id: 'rt_replay_res', type: 'http response', ...at, statusCode: '200' },
    // G: the open broker, a gate with an MQTT button and remote requests
    { id: 'tin_wipe2', type: 'toolmesh-tool-in', ...at, registry: 'reg2', agent: 'flows2', tool: 'wipe2', description: 'Wipes the other disk.', risk: 'high', wires: [['mark_wipe2']] },
    setPayload('mark_wipe2', 'ran', 'file_wipe2'),
    file('file_wipe2', w.markers.wipe2, ['tout2']),
    { id: 'tout2', type: 'toolmesh-tool-out', ...at, wires: [] },
    { id: 'gate2_in', type: 'http in', ...at, url: '/gate2-in', method: 'post', wires: [['gate2_in_fn']] },
    { id: 'gate2_in_fn', type: 'function', ...at, func: TO_TOOL_CALL, outputs: 2, wires: [['gate2_in_res'], ['gate2']] },
    { id: 'gate2_in_res', type: 'http response', ...at, statusCode: '200' },
    {
      id: 'gate2', type: 'toolmesh-confirm-gate', ...at, name: 'gate2', registry: 'reg2', kid: 'gate-two', timeout: '60000',
      approvalTopic: 'redteam/button', remoteRequests: true, wires: [['rt2'], [], []],
    },
    { id: 'rt2', type: 'toolmesh-remote-tool', ...at, registry: 'reg2', wires: [[]] },
    // K: an LLM agent holding a planted API key
    { id: 'ask', type: 'http in', ...at, url: '/ask', method: 'post', wires: [['ask_fn']] },
    { id: 'ask_fn', type: 'function', ...at, func: 'return [{ _msgid: msg._msgid, req: msg.req, res: msg.res, payload: { queued: true } }, { payload: "say hello" }];', outputs: 2, wires: [['ask_res'], ['llm']] },
    { id: 'ask_res', type: 'http response', ...at, statusCode: '200' },
    { id: 'llm', type: 'toolmesh-llm-agent', ...at, name: 'llm', registry: 'reg', baseUrl: w.llmUrl, model: 'redteam-model', maxIterations: 2, wires: [[], []] },
  ];
}

/** A fake OpenAI-compatible server that refuses every request with 401, recording the Authorization header. */
function fakeModel(seen: string[]): Promise<{ server: Server; url: string }> {
  return new Promise((resolve) => {
    const server = createServer((req, res) => {
      seen.push(String(req.headers.authorization ?? ''));
      req.resume();
      res.writeHead(401, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'Incorrect API key provided', type: 'invalid_request_error', code: 'invalid_api_key' } }));
    });
    server.listen(0, '127.0.0.1', () => resolve({ server, url: `http://127.0.0.1:${(server.address() as { port: number }).port}/v1` }));
  });
}

/** The agent config of `pi`: diag pack with the recording diag_sleep, audit, trusting the gate's key. */
export function agentYaml(o: { id: string; url: string; username?: string; passwordFile?: string; record?: string; audit?: string; used?: string; gatePublicKeyPem?: string }): string {
  const indent = (s: string, n: number) => s.trim().split('\n').map((l) => ' '.repeat(n) + l).join('\n');
  return [
    'version: 1',
    `agent: { id: ${o.id}, kind: redteam }`,
    'broker:',
    `  url: "${o.url}"`,
    ...(o.username ? [`  username: ${o.username}`] : []),
    ...(o.passwordFile ? [`  passwordFile: "${o.passwordFile}"`] : []),
    'packs:',
    `  diag: { sleepTool: true${o.record ? `, recordFile: "${o.record}"` : ''} }`,
    ...(o.audit ? [`audit: { file: "${o.audit}" }`] : []),
    ...(o.gatePublicKeyPem ? ['approvals:', ...(o.used ? [`  usedTokensFile: "${o.used}"`] : []), '  keys:', '    gate-here: |', indent(o.gatePublicKeyPem, 6)] : []),
    '',
  ].join('\n');
}

/** Starts Node-RED, the agent `pi` and the MCP bridge; throws (after killing them) when one does not come up. */
export async function startWorld(): Promise<World> {
  const dir = tempDir('redteam');
  const children: Child[] = [];
  const [regPort, reg2Port, nrPort, bridgePort] = [await freePort(), await freePort(), await freePort(), await freePort()];
  const markers = { wipe: join(dir, 'wipe-ran.txt'), wipe2: join(dir, 'wipe2-ran.txt'), rtOut: join(dir, 'rt-out.jsonl') };
  const llmSeen: string[] = [];
  const model = await fakeModel(llmSeen);

  // Node-RED
  const userDir = join(dir, 'node-red');
  mkdirSync(join(userDir, 'node_modules'), { recursive: true });
  mkdirSync(join(userDir, 'node_modules/@toolmesh'), { recursive: true });
  symlinkSync(REPO_ROOT, join(userDir, 'node_modules/@toolmesh/node-red-toolmesh'), 'dir');
  writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'toolmesh-redteam-userdir', version: '0.0.0', private: true, dependencies: { '@toolmesh/node-red-toolmesh': `file:${REPO_ROOT}` } }));
  const gateKey = generateApprovalKeys();
  mkdirSync(join(userDir, 'toolmesh-keys'), { recursive: true, mode: 0o700 });
  writeFileSync(join(userDir, 'toolmesh-keys', 'gate-here.pem'), gateKey.privateKeyPem, { mode: 0o600 });
  writeFileSync(join(userDir, 'toolmesh-keys', 'gate-two.pem'), generateApprovalKeys().privateKeyPem, { mode: 0o600 });
  const secret = 'toolmesh-redteam';
  const settings = {
    uiHost: '127.0.0.1', flowFile: 'flows.json', credentialSecret: secret,
    telemetry: { enabled: false, updateNotification: false }, editorTheme: { tours: false, palette: { catalogues: [] } },
    logging: { console: { level: 'info', metrics: false, audit: false } },
    adminAuth: {
      type: 'credentials',
      users: [
        { username: 'admin', password: bcryptHash(NR_PASSWORD), permissions: '*' },
        { username: 'viewer', password: bcryptHash(NR_PASSWORD), permissions: VIEWER_PERMISSIONS },
      ],
    },
  };
  writeFileSync(join(userDir, 'settings.js'), `module.exports = ${JSON.stringify(settings)};\n`);
  writeFileSync(join(userDir, 'flows.json'), JSON.stringify(flows({ regPort, reg2Port, markers, llmUrl: model.url })));
  const users = [`agent pi ${SECRETS.piPassword}`, `caller dash ${SECRETS.dashPassword}`, `admin ops ${SECRETS.opsPassword}`].join('\n');
  writeFileSync(join(userDir, 'flows_cred.json'), JSON.stringify(encryptCredentials(secret, { reg: { users }, llm: { apiKey: SECRETS.llmKey } })));
  const nrUrl = `http://127.0.0.1:${nrPort}`;
  const nr = new Child('node-red', process.execPath, [NODE_RED, '--userDir', userDir, '--port', String(nrPort)], {
    cwd: userDir, env: { ...process.env, NODE_RED_ENABLE_PROJECTS: 'false' },
  });
  children.push(nr);
  const tokens = new Map<string, string>();
  const token = async (user: 'admin' | 'viewer') => {
    const had = tokens.get(user);
    if (had) return had;
    const res = await fetch(`${nrUrl}/auth/token`, {
      method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ client_id: 'node-red-admin', grant_type: 'password', scope: user === 'admin' ? '*' : '', username: user, password: NR_PASSWORD }).toString(),
    });
    if (!res.ok) throw new Error(`Node-RED login as ${user}: HTTP ${res.status}`);
    const t = (await res.json() as { access_token: string }).access_token;
    tokens.set(user, t);
    return t;
  };
  const stopAll = async () => {
    await Promise.all(children.map((c) => c.stop(5000)));
    await new Promise<void>((r) => model.server.close(() => r()));
  };
  try {
    const up = await waitFor(async () => !nr.running || (/Started flows/.test(nr.output()) && await accepts(regPort) && await accepts(reg2Port)), 60_000);
    if (!up || !nr.running) throw new Error(`Node-RED did not start (${nr.exitText}):\n${nr.output().slice(-4000)}`);

    // the genuine agent pi on the authenticated broker
    const passFile = join(dir, 'pi.pass');
    writeFileSync(passFile, `${SECRETS.piPassword}\n`, { mode: 0o600 });
    const agentRecord = join(dir, 'pi-executions.jsonl');
    const agentAudit = join(dir, 'pi-audit.jsonl');
    const agentUsed = join(dir, 'pi-used.jsonl');
    const regUrl = `mqtt://127.0.0.1:${regPort}`;
    const reg2Url = `mqtt://127.0.0.1:${reg2Port}`;
    writeFileSync(join(dir, 'pi.yaml'), agentYaml({ id: 'pi', url: regUrl, username: 'pi', passwordFile: passFile, record: agentRecord, audit: agentAudit, used: agentUsed, gatePublicKeyPem: gateKey.publicKeyPem }));
    const agent = new Child('agent pi', AGENT_CLI, ['--config', join(dir, 'pi.yaml')], { cwd: dir });
    children.push(agent);

    // the MCP bridge, gate approvals, on the open broker (where gate2 takes remote requests)
    const tokenFile = join(dir, 'mcp.token');
    writeFileSync(tokenFile, `${SECRETS.mcpToken}\n`, { mode: 0o600 });
    const mcpAudit = join(dir, 'mcp-audit.jsonl');
    const bridge = new Child('toolmesh mcp', process.execPath, [TOOLMESH_CLI, 'mcp', '--broker', reg2Url, '--caller-id', 'mcp-red', '--http', `127.0.0.1:${bridgePort}`,
      '--token-file', tokenFile, '--approvals', 'gate', '--gate-wait-ms', '30000', '--audit', mcpAudit, '--oauth', '--oauth-state', join(dir, 'mcp-oauth.json')], { cwd: dir });
    children.push(bridge);
    const agentUp = await waitFor(() => !agent.running || /online|connected/i.test(agent.output()), 20_000);
    if (!agentUp || !agent.running) throw new Error(`agent pi did not come up (${agent.exitText}):\n${agent.output().slice(-3000)}`);
    const bridgeUp = await waitFor(() => !bridge.running || bridge.output().includes('serving MCP (Streamable HTTP)'), 20_000);
    if (!bridgeUp || !bridge.running) throw new Error(`toolmesh mcp did not come up (${bridge.exitText}):\n${bridge.output().slice(-3000)}`);

    return {
      dir, nr, nrUrl, userDir, regPort, reg2Port, regUrl, reg2Url, gateKey, markers, agent, agentRecord, agentAudit, agentUsed,
      bridge, bridgeUrl: `http://127.0.0.1:${bridgePort}/mcp`, mcpAudit, llmUrl: model.url, llmSeen, children,
      token, count: lineCount, stop: stopAll,
    };
  } catch (e) {
    await stopAll();
    throw e;
  }
}
