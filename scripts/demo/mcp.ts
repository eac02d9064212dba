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
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The demo bridge's caller id (stdio bridges started by a client get their own, derived ids). */
export const DEMO_MCP_CALLER = 'mcp-demo';

/** The bridge's token, made on the first run. */
export function ensureMcpToken(userDir: string): { file: string; token: string } {
  const file = join(userDir, 'mcp.token');
  if (!existsSync(file)) writeFileSync(file, `${randomBytes(24).toString('base64url')}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return { file, token: readFileSync(file, 'utf8').trim() };
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
 * {@link DEMO_MCP_CALLER}) it logs in to the broker.
 */
export function bridgeArgs(o: { toolmeshJs: string; mqttPort: number; mcpPort: number; tokenFile: string; auditFile: string; approvals: 'refuse' | 'gate'; login?: BrokerLogin }): string[] {
  return [o.toolmeshJs, 'mcp', '--broker', `mqtt://127.0.0.1:${o.mqttPort}`, ...(o.login ? ['--username', o.login.username, '--password-file', o.login.passwordFile] : []),
    '--http', `127.0.0.1:${o.mcpPort}`, '--token-file', o.tokenFile, '--caller-id', DEMO_MCP_CALLER, '--approvals', o.approvals, '--audit', o.auditFile];
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

/** The summary's MCP block. */
export function mcpSummaryLines(o: { url: string; token: string; tokenFile: string; configDir: string; configs: Record<string, unknown>; approvals: 'refuse' | 'gate'; running: boolean }): string[] {
  const json = (name: string) => JSON.stringify(o.configs[name]);
  return [
    `  MCP bridge:      ${o.running ? o.url : `not running (${o.url}); see the [mcp] lines`}  (Streamable HTTP, caller ${DEMO_MCP_CALLER}, approvals ${o.approvals})`,
    `                   bearer token ${o.token}  (kept in ${o.tokenFile})`,
    o.approvals === 'refuse'
      ? '                   high-risk tools answer APPROVAL_REQUIRED; TOOLMESH_MCP_APPROVALS=gate npm start lets a person approve them at the confirm-gate'
      : '                   high-risk tools wait for a person at a confirm-gate that holds approval requests from other callers',
    `  MCP clients (also written to ${o.configDir}/):`,
    `    VS Code, .vscode/mcp.json:  ${json('vscode-mcp.json')}`,
    `    Claude Desktop, claude_desktop_config.json:  ${json('claude_desktop_config.json')}`,
    `    Open WebUI: Admin Settings > External Tools > add a connection of type MCP (Streamable HTTP), URL ${o.url}, auth Bearer, key ${o.token}`,
    `    LiteLLM, config.yaml:  mcp_servers: { toolmesh: { url: "${o.url}", transport: http, auth_type: bearer_token, auth_value: "${o.token}" } }`,
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
