/**
 * The demo's MCP bridge: `toolmesh mcp` over Streamable HTTP on 127.0.0.1 (TOOLMESH_MCP_PORT,
 * default 8765) with a bearer token made once (`.toolmesh-demo/mcp.token`, mode 0600), caller id
 * `mcp-demo` (also its broker user, password in `.toolmesh-demo/broker/mcp-demo.pass`), its calls in
 * `.toolmesh-demo/mcp-audit.jsonl`; and the ready-to-paste client
 * configs it prints and writes to `.toolmesh-demo/mcp/`: VS Code (`.vscode/mcp.json`, HTTP and
 * stdio) and Claude Desktop (`claude_desktop_config.json`, stdio); Open WebUI and LiteLLM take
 * the URL and the bearer token ({@link mcpSummaryLines}). The stdio bridges these configs start log
 * in to the broker as callers of their own (`mcp-vscode`, `mcp-claude`; broker-users.ts), with the
 * same caller id, since the broker lets a caller use only its own id in topics.
 *
 * Beside the token the same bridge signs clients in with OAuth 2.1 (`--oauth`, state in
 * `.toolmesh-demo/mcp-oauth.json`): Home Assistant, Open WebUI's OAuth connection and the MCP
 * Inspector register themselves, and a person approves each on the bridge's consent page with the
 * pairing code the summary prints ({@link demoPairingCode}; `toolmesh mcp pair` makes more).
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { newPairingCode } from '../../mcp/oauth/provider';
import { OAuthStateFile } from '../../mcp/oauth/state';

/** The demo bridge's caller id (stdio bridges started by a client get their own, derived ids). */
export const DEMO_MCP_CALLER = 'mcp-demo';

/** The bridge's token, made on the first run. */
export function ensureMcpToken(userDir: string): { file: string; token: string } {
  const file = join(userDir, 'mcp.token');
  if (!existsSync(file)) writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { file, token: readFileSync(file, 'utf8').trim() };
}

/** `<userDir>/mcp-oauth.json`: the demo bridge's OAuth clients, token hashes and pairing codes (mode 0600). */
export function mcpOAuthStateFile(userDir: string): string {
  return join(userDir, 'mcp-oauth.json');
}

/**
 * A new pairing code in the demo bridge's OAuth state file (valid 10 minutes, once), made by the
 * demo process itself: the file is changed under its lock, so this is safe while the bridge runs
 * (it notices within 250 ms). The code is a secret while it lives: only the summary shows it.
 * @returns the code and when it expires (epoch ms).
 * @throws Error naming the file when it does not parse or its lock stays taken (mcp/oauth/state.ts).
 */
export function demoPairingCode(stateFile: string): { code: string; expiresAt: number } {
  return newPairingCode(new OAuthStateFile(stateFile));
}

/** A broker login: the username (also the caller id) and the file with its password. */
export interface BrokerLogin {
  username: string;
  passwordFile: string;
}

/** `--username U --password-file F --caller-id U`, or nothing without a login. */
function loginArgs(login: BrokerLogin | undefined): string[] {
  return login ? ['--username', login.username, '--password-file', login.passwordFile, '--caller-id', login.username] : [];
}

/**
 * Arguments of `node <toolmesh.js> ...` for the demo bridge; with `login` (whose username must be
 * {@link DEMO_MCP_CALLER}) it logs in to the broker; with `oauthStateFile` it also signs clients in
 * with OAuth 2.1 (`--oauth --oauth-state FILE`), the bearer token working as well.
 */
export function bridgeArgs(o: { toolmeshJs: string; mqttPort: number; mcpPort: number; tokenFile: string; auditFile: string; approvals: 'refuse' | 'gate'; login?: BrokerLogin; oauthStateFile?: string }): string[] {
  return [o.toolmeshJs, 'mcp', '--broker', `mqtt://127.0.0.1:${o.mqttPort}`, ...(o.login ? ['--username', o.login.username, '--password-file', o.login.passwordFile] : []),
    '--http', `127.0.0.1:${o.mcpPort}`, '--token-file', o.tokenFile, ...(o.oauthStateFile ? ['--oauth', '--oauth-state', o.oauthStateFile] : []),
    '--caller-id', DEMO_MCP_CALLER, '--approvals', o.approvals, '--audit', o.auditFile];
}

/**
 * The client configs for this demo, by file name. `logins` are the broker logins of the stdio
 * bridges the VS Code and Claude Desktop configs start (without them: none).
 */
export function clientConfigs(o: { url: string; token: string; toolmeshJs: string; mqttPort: number; node?: string; logins?: { vscode: BrokerLogin; claude: BrokerLogin } }): Record<string, unknown> {
  const stdioFor = (login: BrokerLogin | undefined) => ({ command: o.node ?? 'node', args: [o.toolmeshJs, 'mcp', '--broker', `mqtt://127.0.0.1:${o.mqttPort}`, ...loginArgs(login)] });
  return {
    // VS Code: .vscode/mcp.json of a workspace (or "MCP: Open User Configuration")
    'vscode-mcp.json': {
      servers: {
        toolmesh: { type: 'http', url: o.url, headers: { Authorization: `Bearer ${o.token}` } },
        'toolmesh-stdio': { type: 'stdio', ...stdioFor(o.logins?.vscode) },
      },
    },
    // Claude Desktop: claude_desktop_config.json (Settings > Developer > Edit Config)
    'claude_desktop_config.json': { mcpServers: { toolmesh: stdioFor(o.logins?.claude) } },
  };
}

/** Writes the client configs to `<userDir>/mcp/`; returns the folder. */
export function writeClientConfigs(userDir: string, configs: Record<string, unknown>): string {
  const dir = join(userDir, 'mcp');
  mkdirSync(dir, { recursive: true });
  for (const [name, value] of Object.entries(configs)) writeFileSync(join(dir, name), `${JSON.stringify(value, null, 2)}\n`, { mode: 0o600 });
  return dir;
}

/** The OAuth part of the summary's MCP block: the state file and a fresh pairing code. */
export interface OAuthSummary {
  /** The state file as the summary shows it (relative to the repository root). */
  stateFile: string;
  /** `node <toolmesh.js>` as the summary shows it (relative to the repository root). */
  toolmeshCli: string;
  /** A pairing code made at start ({@link demoPairingCode}), and when it expires (epoch ms); none when the bridge is not running. */
  pairing?: { code: string; expiresAt: number };
}

/** `HH:MM:SS`, local time. */
function clock(ms: number): string {
  return new Date(ms).toTimeString().slice(0, 8);
}

/**
 * The summary's MCP block: the bridge, the static-token configs, and with `oauth` the OAuth
 * sign-in steps with the pairing code (the only place the code is printed).
 */
export function mcpSummaryLines(o: { url: string; token: string; tokenFile: string; configDir: string; configs: Record<string, unknown>; approvals: 'refuse' | 'gate'; running: boolean; oauth?: OAuthSummary }): string[] {
  const json = (name: string) => JSON.stringify(o.configs[name]);
  const a = o.oauth;
  const pair = a ? `${a.toolmeshCli} mcp pair --oauth-state ${a.stateFile}` : '';
  return [
    `  MCP bridge:      ${o.running ? o.url : `not running (${o.url}); see the [mcp] lines`}  (Streamable HTTP, caller ${DEMO_MCP_CALLER}, approvals ${o.approvals})`,
    `                   bearer token ${o.token}  (kept in ${o.tokenFile})`,
    ...(a ? [`                   or OAuth 2.1 sign-in, one identity per client (clients and token hashes in ${a.stateFile})`] : []),
    o.approvals === 'refuse'
      ? '                   high-risk tools answer APPROVAL_REQUIRED; TOOLMESH_MCP_APPROVALS=gate npm start lets a person approve them at the confirm-gate'
      : '                   high-risk tools wait for a person at a confirm-gate that holds approval requests from other callers',
    `  MCP clients with the token (also written to ${o.configDir}/):`,
    `    VS Code, .vscode/mcp.json:  ${json('vscode-mcp.json')}`,
    `    Claude Desktop, claude_desktop_config.json:  ${json('claude_desktop_config.json')}`,
    `    Open WebUI: Admin Settings > External Tools > add a connection of type MCP (Streamable HTTP), URL ${o.url}, auth Bearer, key ${o.token}`,
    `    LiteLLM, config.yaml:  mcp_servers: { toolmesh: { url: "${o.url}", transport: http, auth_type: bearer_token, auth_value: "${o.token}" } }`,
    ...(a ? [
      '  MCP clients that sign in with OAuth (the client opens the bridge\'s sign-in page: type the pairing code, give the client a label such as home-assistant, Allow):',
      a.pairing
        ? `    pairing code ${a.pairing.code}  (lasts 10 minutes, until ${clock(a.pairing.expiresAt)}, and works once; another: node ${pair}, the code is its last line)`
        : `    pairing code: none yet (the bridge is not running); make one with: node ${pair}, the code is its last line`,
      `    Home Assistant: Settings > Devices & services > Add integration > "Model Context Protocol", URL ${o.url} (Home Assistant on this machine);`,
      '      on another machine it needs the bridge on a LAN address with HTTPS: toolmesh mcp ... --oauth --http 0.0.0.0:8765 --tls-cert cert.pem --tls-key key.pem --public-url https://<name>:8765',
      `    Open WebUI: Admin Settings > External Tools > add a connection of type MCP (Streamable HTTP), URL ${o.url}, auth OAuth 2.1`,
      `    MCP Inspector: npx @modelcontextprotocol/inspector; Transport Type Streamable HTTP, URL ${o.url}, Open Auth Settings > Quick OAuth Flow`,
      `    signed-in clients: node ${a.toolmeshCli} mcp clients --oauth-state ${a.stateFile}; add --revoke LABEL to end one (its sessions close at once)`,
    ] : []),
  ];
}

/** The official filesystem MCP server, which the MCP filesystem example mounts (a devDependency, linked into the user directory). */
export const FILESYSTEM_MCP_MODULE = '@modelcontextprotocol/server-filesystem';

/** `<userDir>/mcp-demo-files/`, the only folder the example's filesystem server may touch, with a file to find. */
export function ensureMcpDemoFiles(userDir: string): string {
  const dir = join(userDir, 'mcp-demo-files');
  mkdirSync(dir, { recursive: true });
  const note = join(dir, 'shopping-list.txt');
  if (!existsSync(note)) writeFileSync(note, 'milk\nbread\ncoffee\n');
  return dir;
}
