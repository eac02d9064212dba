/**
 * `toolmesh mcp`: the mesh as an MCP server (mcp/bridge.ts), over stdio (default) or Streamable
 * HTTP (`--http HOST:PORT`), and `toolmesh mcp keygen` for the `elicit` approval mode.
 *
 * Settings come from flags, or from `--config file.yaml` with the same keys (flags win):
 *
 * ```yaml
 * version: 1
 * broker: { url: mqtt://127.0.0.1:1883, username: mcp-desk, passwordFile: ./broker.pass, ca: ./ca.pem, root: toolmesh/v1 }
 * callerId: mcp-desk               # default: mcp-<host name>-<hash of the config>
 * http: { listen: 127.0.0.1:8765, tokenFile: ./mcp.token, allowedHosts: [], allowedOrigins: [] }
 * policy: { allow: ["pi/*"], deny: ["*\/docker_remove_*"] }
 * clients: { allow: { home-assistant: ["pi/*", "!*\/docker_*"], token: ["*\/*"] } }   # per client label or client_id
 * approvals: { mode: refuse }      # or elicit (+ signingKeyFile, kid) or gate (+ waitMs)
 * audit: { file: ./mcp-audit.jsonl }
 * ```
 *
 * Exit codes: 0 on SIGINT/SIGTERM or when the stdio client goes away, 2 for bad usage or
 * settings, 1 when the caller id is online already or on a defect.
 */
import { createHash } from 'node:crypto';
import { chmodSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import {
  DEFAULT_ROOT, RISK_LEVELS, RpcCaller, connectMqtt, endMqtt, generateApprovalKeys, isValidId, parsePolicy, publicKeyOf,
  printable, urlForLog, userInfoProblem, type ConnectOptions, type CredentialFields, type Policy,
} from '@toolmesh/agent/protocol';
import { AuditWriter, Redactor } from '@toolmesh/agent/protocol/audit';
import { APPROVAL_MODES, DEFAULT_GATE_WAIT_MS, type ApprovalSettings } from './approvals';
import { McpBridge, type LogLevel } from './bridge';
import { GateApprovals } from './gate-approvals';
import { serveHttp, type HttpFront } from './http';
import { listClients, newPairingCode, revokeClient } from './oauth/provider';
import { OAuthStateFile } from './oauth/state';
import { serveStdio } from './stdio';

export const MCP_USAGE = `usage: toolmesh mcp --broker mqtt://HOST:PORT [options]
       toolmesh mcp --config mcp.yaml [options]
       toolmesh mcp keygen --out FILE [--kid KID]
       toolmesh mcp pair [--config mcp.yaml | --oauth-state FILE]
       toolmesh mcp clients [--revoke LABEL|CLIENT_ID] [--config mcp.yaml | --oauth-state FILE]

Serves the tools of every ready agent on the mesh to MCP clients: over stdio (how VS Code and
Claude Desktop start servers), or over Streamable HTTP at /mcp with --http.

  --broker URL            MQTT broker (mqtt://, mqtts://, ws://, wss://)
  --username NAME         broker user; the password comes from --password-file or TOOLMESH_BROKER_PASSWORD
  --password-file FILE    file holding the broker password (one line)
  --ca FILE               PEM CA bundle for mqtts:// / wss://
  --root TOPIC            topic root (default ${DEFAULT_ROOT})
  --caller-id ID          this bridge's caller id (default mcp-<host>-<hash of the settings>)
  --http HOST:PORT        serve Streamable HTTP at http://HOST:PORT/mcp instead of stdio
  --token-file FILE       bearer token for HTTP (or TOOLMESH_MCP_TOKEN); required off loopback
  --oauth                 also sign clients in with OAuth 2.1 (a person consents with a pairing code)
  --oauth-state FILE      OAuth clients and token hashes (default toolmesh-mcp-oauth.json beside --config, or in the cwd)
  --public-url URL        the URL clients reach the bridge at, e.g. https://pi.lan:8765 (the OAuth issuer)
  --tls-cert FILE         PEM certificate chain: serve HTTPS (with --tls-key)
  --tls-key FILE          PEM private key of --tls-cert
  --allow-host NAME:PORT  another Host header to accept (repeatable; DNS-rebinding protection)
  --allow-origin ORIGIN   another browser Origin to accept (repeatable)
  --allow GLOB            offer only agent/tool pairs matching (repeatable), e.g. 'pi/*'
  --deny GLOB             never offer these (repeatable), e.g. '*/docker_remove_*'
  --client-allow LABEL=GLOB
                          per signed-in client (its label or client_id): offer it only these,
                          within --allow/--deny (repeatable). Once any is set, a signed-in client
                          without one gets no tools; stdio sessions are not limited
  --approvals MODE        refuse (default) | elicit | gate: how high-risk calls get a person's approval
  --signing-key FILE      elicit: Ed25519 private key (toolmesh mcp keygen); --kid names it (default toolmesh-mcp)
  --gate-wait-ms MS       gate: how long to wait for the person (default ${DEFAULT_GATE_WAIT_MS})
  --approval-from RISK    risk that needs an approval before the call is sent (default high)
  --audit FILE            hash-chained audit log of every call (toolmesh audit verify FILE)
  --config FILE           YAML settings with the same keys (see the README, section "MCP")
  -h, --help              this text

Exit codes: 0 stopped (signal, or the stdio client went away), 1 caller id already online or a
defect, 2 bad usage or settings.`;

const KEYGEN_USAGE = `usage: toolmesh mcp keygen --out FILE [--kid KID]

Makes an Ed25519 key pair for --approvals elicit: writes the private key to FILE (mode 0600)
and prints the snippet to paste into each agent's config, so agents trust tokens the bridge signs.`;

/** Where the bridge takes broker credentials: a URL with user info is refused naming these. */
export const MCP_CREDENTIAL_FIELDS: CredentialFields = {
  username: '--username (broker.username)', password: '--password-file (broker.passwordFile) or TOOLMESH_BROKER_PASSWORD',
};

/** Where the OAuth state lives unless `http.oauth.stateFile` says otherwise: beside `--config`, or in the cwd. */
export const DEFAULT_OAUTH_STATE_FILE = 'toolmesh-mcp-oauth.json';

/** A key of `clients.allow`: a label (mcp/identity.ts LABEL_PATTERN) or an OAuth client_id. */
const CLIENT_KEY = /^(?!__proto__$)[\x21-\x3c\x3e-\x7e]{1,128}$/;

/** Settings of `toolmesh mcp`, as the config file holds them. */
export const McpConfigSchema = z.strictObject({
  version: z.literal(1, { error: 'must be 1 (the only version this bridge reads)' }),
  broker: z.strictObject({
    url: z.string().superRefine((url, ctx) => {
      // user info first: its message must win over the shape's, and neither repeats the URL
      const secret = userInfoProblem(url, MCP_CREDENTIAL_FIELDS);
      if (secret) ctx.addIssue({ code: 'custom', message: secret });
      else if (!/^(mqtts?|wss?):\/\/[^\s]+$/.test(url)) ctx.addIssue({ code: 'custom', message: 'must be a broker URL such as mqtt://127.0.0.1:1883' });
    }),
    username: z.string().optional(),
    passwordFile: z.string().optional(),
    ca: z.string().optional(),
    root: z.string().default(DEFAULT_ROOT),
    keepaliveSec: z.number().int().min(1).max(60).default(10),
  }),
  callerId: z.string().refine(isValidId, 'must match ^[A-Za-z0-9_-]{1,64}$').optional(),
  http: z.strictObject({
    listen: z.string().regex(/^(\[[0-9a-fA-F:]+\]|[^\s:]+):\d{1,5}$/, 'must be HOST:PORT, e.g. 127.0.0.1:8765'),
    tokenFile: z.string().optional(),
    oauth: z.strictObject({
      enabled: z.boolean().default(true),
      stateFile: z.string().min(1).default(DEFAULT_OAUTH_STATE_FILE),
      publicUrl: z.string().refine((u) => /^https?:\/\/[^/?#\s]+\/?$/.test(u), 'must be http(s)://HOST[:PORT] without a path, e.g. https://pi.lan:8765').optional(),
      accessTokenTtlSec: z.number().int().min(60).max(86_400).default(3600),
    }).optional(),
    tls: z.strictObject({ cert: z.string().min(1), key: z.string().min(1) }).optional(),
    allowedHosts: z.array(z.string()).default([]),
    allowedOrigins: z.array(z.string()).default([]),
  }).optional(),
  policy: z.strictObject({
    allow: z.array(z.string()).default([]),
    deny: z.array(z.string()).default([]),
  }).prefault({}),
  approvals: z.strictObject({
    mode: z.enum(APPROVAL_MODES, { error: `must be one of ${APPROVAL_MODES.join(', ')}` }).default('refuse'),
    signingKeyFile: z.string().optional(),
    kid: z.string().min(1).max(128).default('toolmesh-mcp'),
    waitMs: z.number().int().min(1000).max(3_600_000).default(DEFAULT_GATE_WAIT_MS),
    from: z.enum(RISK_LEVELS).default('high'),
  }).prefault({}),
  audit: z.strictObject({ file: z.string().min(1) }).optional(),
  clients: z.strictObject({
    allow: z.record(
      z.string(),
      z.array(z.string()).min(1, 'give at least one agent/tool glob (a signed-in client without a rule gets no tools)'),
    ).superRefine((rules, ctx) => {
      for (const key of Object.keys(rules)) {
        if (!CLIENT_KEY.test(key)) ctx.addIssue({ code: 'custom', path: [key], message: 'must be a client label or client_id: 1–128 printable characters without spaces or "="' });
      }
    }).default({}),
  }).prefault({}),
});
export type McpConfig = z.output<typeof McpConfigSchema>;

/** A usage or settings error (exit code 2); `message` names the flag or key. */
export class McpUsageError extends Error {}

type Print = (line: string) => void;

/** Flags of `toolmesh mcp` as a raw config object (to merge over the file's). */
function parseFlags(argv: string[]): { raw: Record<string, unknown>; configFile?: string; help: boolean } {
  const raw: Record<string, any> = {};
  const set = (path: string[], v: unknown) => {
    let o = raw;
    for (const k of path.slice(0, -1)) o = o[k] ??= {};
    o[path[path.length - 1]] = v;
  };
  const push = (path: string[], v: string) => {
    let o = raw;
    for (const k of path.slice(0, -1)) o = o[k] ??= {};
    (o[path[path.length - 1]] ??= []).push(v);
  };
  let configFile: string | undefined;
  let help = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { help = true; continue; }
    const value = () => {
      const v = argv[++i];
      if (v === undefined || v.startsWith('--')) throw new McpUsageError(`${a} needs a value`);
      return v;
    };
    switch (a) {
      case '--broker': set(['broker', 'url'], value()); break;
      case '--username': set(['broker', 'username'], value()); break;
      case '--password-file': set(['broker', 'passwordFile'], value()); break;
      case '--ca': set(['broker', 'ca'], value()); break;
      case '--root': set(['broker', 'root'], value()); break;
      case '--caller-id': set(['callerId'], value()); break;
      case '--http': set(['http', 'listen'], value()); break;
      case '--token-file': set(['http', 'tokenFile'], value()); break;
      case '--oauth': set(['http', 'oauth', 'enabled'], true); break;
      case '--oauth-state': set(['http', 'oauth', 'stateFile'], value()); break;
      case '--public-url': set(['http', 'oauth', 'publicUrl'], value()); break;
      case '--tls-cert': set(['http', 'tls', 'cert'], value()); break;
      case '--tls-key': set(['http', 'tls', 'key'], value()); break;
      case '--allow-host': push(['http', 'allowedHosts'], value()); break;
      case '--allow-origin': push(['http', 'allowedOrigins'], value()); break;
      case '--allow': push(['policy', 'allow'], value()); break;
      case '--deny': push(['policy', 'deny'], value()); break;
      case '--client-allow': {
        const v = value();
        const eq = v.indexOf('=');
        if (eq < 1 || eq === v.length - 1) throw new McpUsageError(`--client-allow ${v}: expected LABEL=GLOB, e.g. home-assistant=pi/*`);
        const key = v.slice(0, eq);
        if (!CLIENT_KEY.test(key)) throw new McpUsageError(`--client-allow ${key}=...: LABEL must be a client label or client_id (1–128 printable characters without spaces or "=")`);
        raw.clients ??= { allow: Object.create(null) };
        (raw.clients.allow[key] ??= []).push(v.slice(eq + 1));
        break;
      }
      case '--approvals': set(['approvals', 'mode'], value()); break;
      case '--signing-key': set(['approvals', 'signingKeyFile'], value()); break;
      case '--kid': set(['approvals', 'kid'], value()); break;
      case '--gate-wait-ms': set(['approvals', 'waitMs'], Number(value())); break;
      case '--approval-from': set(['approvals', 'from'], value()); break;
      case '--audit': set(['audit', 'file'], value()); break;
      case '--config': configFile = value(); break;
      default: throw new McpUsageError(`unknown option: ${a}`);
    }
  }
  return { raw, configFile, help };
}

function merge(base: Record<string, any>, over: Record<string, any>): Record<string, any> {
  const out: Record<string, any> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    out[k] = v && typeof v === 'object' && !Array.isArray(v) && base[k] && typeof base[k] === 'object' ? merge(base[k], v) : v;
  }
  return out;
}

/** Where relative paths of the settings are resolved from: the config's folder, or the cwd. */
function pathsFrom(cfg: McpConfig, baseDir: string): McpConfig {
  const r = (p?: string) => (p ? resolve(baseDir, p) : p);
  return {
    ...cfg,
    broker: { ...cfg.broker, passwordFile: r(cfg.broker.passwordFile), ca: r(cfg.broker.ca) },
    http: cfg.http ? {
      ...cfg.http, tokenFile: r(cfg.http.tokenFile),
      oauth: cfg.http.oauth ? { ...cfg.http.oauth, stateFile: r(cfg.http.oauth.stateFile)! } : undefined,
      tls: cfg.http.tls ? { cert: r(cfg.http.tls.cert)!, key: r(cfg.http.tls.key)! } : undefined,
    } : undefined,
    approvals: { ...cfg.approvals, signingKeyFile: r(cfg.approvals.signingKeyFile) },
    audit: cfg.audit ? { file: r(cfg.audit.file)! } : undefined,
  };
}

/**
 * Reads the settings: the config file (when given) with the flags over it, validated.
 * @throws McpUsageError naming each bad flag or key (`broker.url: must be a broker URL ...`).
 */
export function loadMcpSettings(argv: string[]): { help: true } | { help: false; cfg: McpConfig; configFile?: string } {
  const { raw, configFile, help } = parseFlags(argv);
  if (help) return { help };
  let fileRaw: Record<string, unknown> = { version: 1 };
  if (configFile) {
    let text: string;
    try {
      text = readFileSync(configFile, 'utf8');
    } catch (e) {
      throw new McpUsageError(`cannot read --config ${configFile}: ${(e as Error).message}`);
    }
    try {
      fileRaw = (parseYaml(text) ?? {}) as Record<string, unknown>;
    } catch (e) {
      // the first line names line and column; the rest quotes the source, which may hold a secret
      throw new McpUsageError(`${configFile} is not YAML: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const merged = merge(fileRaw, raw);
  if (!(merged.broker as { url?: unknown } | undefined)?.url) throw new McpUsageError('--broker is required (or broker.url in --config)');
  const parsed = McpConfigSchema.safeParse(merged);
  if (!parsed.success) {
    throw new McpUsageError(parsed.error.issues.map((i) => {
      const path = i.path.join('.') || '(root)';
      return i.code === 'unrecognized_keys' ? `${path === '(root)' ? '' : `${path}: `}unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}` : `${path}: ${i.message}`;
    }).join('\n'));
  }
  return { help: false, cfg: pathsFrom(parsed.data, configFile ? dirname(resolve(configFile)) : process.cwd()), configFile };
}

/**
 * The default caller id: `mcp-<host name>-<6 hex digits>`, the digits from SHA-256 of the
 * settings that make one bridge (config path, broker URL, root, HTTP address), so two bridges on
 * one host with different settings never share an id, and a restart keeps it.
 */
export function defaultCallerId(cfg: McpConfig, configFile?: string, host = hostname()): string {
  const hash = createHash('sha256').update(JSON.stringify([configFile ? resolve(configFile) : '', cfg.broker.url, cfg.broker.root, cfg.http?.listen ?? 'stdio'])).digest('hex').slice(0, 6);
  const h = host.replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64 - 'mcp--'.length - 6) || 'host';
  return `mcp-${h}-${hash}`;
}

/**
 * The per-client limits of `clients.allow` (`--client-allow`): client label or client_id →
 * the policy of its globs (protocol/tool-policy.ts rules: `agent/tool`, a leading `!` excludes).
 * Undefined when there is none (no client is limited). See `BridgeOptions.clientAllow`.
 * @throws McpUsageError naming the client and the bad glob.
 */
export function clientAllowOf(cfg: McpConfig): Map<string, Policy> | undefined {
  const entries = Object.entries(cfg.clients.allow);
  if (!entries.length) return undefined;
  const out = new Map<string, Policy>();
  for (const [key, globs] of entries) {
    try {
      out.set(key, parsePolicy(globs.join('\n')));
    } catch (e) {
      throw new McpUsageError(`clients.allow.${key} (--client-allow ${key}=...): ${(e as Error).message}`);
    }
  }
  return out;
}

/** The policy of `policy.allow` / `policy.deny` (protocol/tool-policy.ts rules). @throws McpUsageError naming the bad glob. */
export function policyOf(cfg: McpConfig): Policy | undefined {
  const { allow, deny } = cfg.policy;
  if (!allow.length && !deny.length) return undefined;
  try {
    return parsePolicy([...allow, ...deny.map((d) => `!${d}`)].join('\n'));
  } catch (e) {
    throw new McpUsageError(`--allow/--deny: ${(e as Error).message}`);
  }
}

function readSecret(file: string, what: string): string {
  try {
    const v = readFileSync(file, 'utf8').trim();
    if (!v) throw new Error('the file is empty');
    return v;
  } catch (e) {
    throw new McpUsageError(`cannot read ${what} ${file}: ${(e as Error).message}`);
  }
}

/** Broker connection settings of the bridge. */
export function connectionOf(cfg: McpConfig): ConnectOptions {
  const password = cfg.broker.passwordFile ? readSecret(cfg.broker.passwordFile, '--password-file') : process.env.TOOLMESH_BROKER_PASSWORD;
  return {
    url: cfg.broker.url,
    ...(cfg.broker.username ? { username: cfg.broker.username } : {}),
    ...(password ? { password } : {}),
    ...(cfg.broker.ca ? { extra: { ca: readSecret(cfg.broker.ca, '--ca') } } : {}),
    keepaliveSec: cfg.broker.keepaliveSec,
  };
}

/**
 * Asks the broker whether `callerId` is online already (its retained status). Resolves
 * `undefined` when the broker cannot be asked within `waitMs` (the bridge then starts anyway: it
 * must come up while the broker is down).
 */
export async function callerOnline(connection: ConnectOptions, root: string, callerId: string, waitMs = 3000): Promise<boolean | undefined> {
  const client = connectMqtt({ ...connection, clientId: undefined });
  try {
    return await new Promise<boolean | undefined>((resolveAnswer) => {
      const timer = setTimeout(() => resolveAnswer(undefined), waitMs);
      const topic = `${root}/callers/${callerId}/status`;
      client.on('message', (_t, payload) => {
        clearTimeout(timer);
        try {
          resolveAnswer((JSON.parse(payload.toString('utf8')) as { state?: unknown }).state === 'online');
        } catch {
          resolveAnswer(false);
        }
      });
      client.on('connect', () => {
        client.subscribe(topic, { qos: 1 }, (err) => {
          if (err) { clearTimeout(timer); return resolveAnswer(undefined); }
          // a retained status arrives right after the SUBACK; none means never seen
          setTimeout(() => { clearTimeout(timer); resolveAnswer(false); }, 300);
        });
      });
    });
  } finally {
    await endMqtt(client, 1000);
  }
}

function keygen(argv: string[], out: Print, err: Print): number {
  let file: string | undefined;
  let kid = 'toolmesh-mcp';
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') { out(KEYGEN_USAGE); return 0; }
    if (a === '--out' || a === '--kid') {
      const v = argv[++i];
      if (!v) { err(`${a} needs a value\n\n${KEYGEN_USAGE}`); return 2; }
      if (a === '--out') file = v; else kid = v;
    } else { err(`unknown option: ${a}\n\n${KEYGEN_USAGE}`); return 2; }
  }
  if (!file) { err(`--out FILE is required\n\n${KEYGEN_USAGE}`); return 2; }
  if (existsSync(file)) { err(`${file} exists; keygen never overwrites a key (remove it first)`); return 2; }
  const { privateKeyPem, publicKeyPem } = generateApprovalKeys();
  writeFileSync(file, privateKeyPem, { mode: 0o600 });
  chmodSync(file, 0o600);
  out(`wrote the private key to ${file} (mode 0600); start the bridge with --approvals elicit --signing-key ${file} --kid ${kid}`);
  out('');
  out('Paste into each agent config that should accept approvals given through MCP clients:');
  out('');
  out('approvals:');
  out('  keys:');
  out(`    ${kid}: ${JSON.stringify(publicKeyPem)}`);
  return 0;
}

const PAIR_USAGE = `usage: toolmesh mcp pair [--config mcp.yaml | --oauth-state FILE]

Makes a pairing code for the bridge's OAuth consent page: valid 10 minutes, once; five wrong
codes block the address that sent them, twenty in all void every outstanding code. The code is the last line of the output.`;

const CLIENTS_USAGE = `usage: toolmesh mcp clients [--revoke LABEL|CLIENT_ID] [--config mcp.yaml | --oauth-state FILE]

Lists the OAuth clients of the bridge (label, name, registered, last used), or revokes one: its
tokens stop working and a running bridge closes its sessions within a second.`;

/** The state file `pair` and `clients` work on: --oauth-state, else http.oauth.stateFile of --config, else the default in the cwd. */
function stateFileOf(argv: string[], usage: string): { file: string; rest: Map<string, string> } | string {
  let configFile: string | undefined;
  let stateFile: string | undefined;
  const rest = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '-h' || a === '--help') return usage;
    const v = argv[++i];
    if (v === undefined || v.startsWith('--')) throw new McpUsageError(`${a} needs a value`);
    if (a === '--config') configFile = v;
    else if (a === '--oauth-state') stateFile = v;
    else if (a === '--revoke') rest.set(a, v);
    else throw new McpUsageError(`unknown option: ${a}`);
  }
  if (stateFile) return { file: resolve(stateFile), rest };
  if (configFile) {
    let raw: { http?: { oauth?: { stateFile?: unknown } } };
    try {
      raw = (parseYaml(readFileSync(configFile, 'utf8')) ?? {}) as typeof raw;
    } catch (e) {
      throw new McpUsageError(`cannot read --config ${configFile}: ${(e as Error).message.split('\n')[0]}`);
    }
    const f = raw.http?.oauth?.stateFile;
    return { file: resolve(dirname(resolve(configFile)), typeof f === 'string' ? f : DEFAULT_OAUTH_STATE_FILE), rest };
  }
  return { file: resolve(DEFAULT_OAUTH_STATE_FILE), rest };
}

function when(ms: number | undefined): string {
  return ms ? new Date(ms).toISOString().replace(/\.\d+Z$/, 'Z') : '-';
}

/** `toolmesh mcp pair` and `toolmesh mcp clients`. */
function oauthCommand(cmd: 'pair' | 'clients', argv: string[], out: Print, err: Print): number {
  const usage = cmd === 'pair' ? PAIR_USAGE : CLIENTS_USAGE;
  try {
    const got = stateFileOf(argv, usage);
    if (typeof got === 'string') { out(got); return 0; }
    const state = new OAuthStateFile(got.file);
    if (cmd === 'pair') {
      if (got.rest.size) throw new McpUsageError(`unknown option: ${[...got.rest.keys()][0]}`);
      const { code, expiresAt } = newPairingCode(state);
      out(`Pairing code for the ToolMesh bridge's consent page (${got.file}), valid until ${when(expiresAt)}, once.`);
      out('Type it on the page your MCP client opens when it signs in, and give the client a label.');
      out(code);
      return 0;
    }
    const who = got.rest.get('--revoke');
    if (who !== undefined) {
      const ids = revokeClient(state, who);
      if (!ids.length) { err(`no client with label or client_id ${printable(who)} (toolmesh mcp clients lists them)`); return 1; }
      out(`revoked ${ids.length} client${ids.length > 1 ? 's' : ''}: ${ids.join(', ')}; a running bridge closes their sessions within a second`);
      return 0;
    }
    const rows = listClients(state.read());
    if (!rows.length) { out(`no OAuth clients yet (${got.file})`); return 0; }
    out(['LABEL', 'CLIENT_ID', 'NAME', 'REGISTERED', 'LAST_USED', 'STATE'].join('\t'));
    for (const c of rows) {
      const st = c.revokedAt ? `revoked ${when(c.revokedAt)}` : c.consentedAt ? 'signed in' : 'waiting for consent';
      out([c.label ?? '-', c.clientId, printable(c.name ?? '-').slice(0, 60), when(c.registeredAt), when(c.lastUsedAt), st].join('\t'));
    }
    return 0;
  } catch (e) {
    err(`toolmesh mcp ${cmd}: ${(e as Error).message}${e instanceof McpUsageError ? `\n\n${usage}` : ''}`);
    return 2;
  }
}

/** Runs `toolmesh mcp ...` until a signal or the end of the stdio session; resolves with the exit code. */
export async function runMcp(argv: string[], out: Print = (l) => process.stdout.write(`${l}\n`), err: Print = (l) => process.stderr.write(`${l}\n`)): Promise<number> {
  if (argv[0] === 'keygen') return keygen(argv.slice(1), out, err);
  if (argv[0] === 'pair' || argv[0] === 'clients') return oauthCommand(argv[0], argv.slice(1), out, err);
  let cfg: McpConfig;
  let configFile: string | undefined;
  let approvals: ApprovalSettings;
  let policy: Policy | undefined;
  let clientAllow: Map<string, Policy> | undefined;
  let connection: ConnectOptions;
  let token: string | undefined;
  try {
    const s = loadMcpSettings(argv);
    if (s.help) { out(MCP_USAGE); return 0; }
    cfg = s.cfg;
    configFile = s.configFile;
    policy = policyOf(cfg);
    clientAllow = clientAllowOf(cfg);
    connection = connectionOf(cfg);
    token = cfg.http?.tokenFile ? readSecret(cfg.http.tokenFile, '--token-file') : process.env.TOOLMESH_MCP_TOKEN || undefined;
    if (cfg.approvals.mode === 'elicit') {
      if (!cfg.approvals.signingKeyFile) throw new McpUsageError('--approvals elicit needs --signing-key FILE (make one with: toolmesh mcp keygen --out FILE)');
      const privateKeyPem = readSecret(cfg.approvals.signingKeyFile, '--signing-key');
      try { publicKeyOf(privateKeyPem); } catch (e) { throw new McpUsageError(`--signing-key ${cfg.approvals.signingKeyFile} is not an Ed25519 private key: ${(e as Error).message}`); }
      approvals = { mode: 'elicit', kid: cfg.approvals.kid, privateKeyPem };
    } else {
      approvals = { mode: 'refuse' };
    }
  } catch (e) {
    if (!(e instanceof McpUsageError)) throw e;
    err(`toolmesh mcp: ${e.message}\n\n(toolmesh mcp --help lists the options)`);
    return 2;
  }
  // one line each: names from MCP clients, agents and the broker have their control characters escaped
  const log = (level: LogLevel, text: string) => err(`[toolmesh mcp] ${level}: ${printable(text)}`);
  const callerId = cfg.callerId ?? defaultCallerId(cfg, configFile);
  const root = cfg.broker.root;

  const online = await callerOnline(connection, root, callerId);
  if (online === true) {
    err(`toolmesh mcp: caller id ${callerId} is online already: another bridge with the same settings runs (two bridges with one id would cancel each other's calls). `
      + 'Stop it, or give this one its own --caller-id. (A bridge that was killed is seen as gone once the broker notices, within 1.5 × its keepalive.)');
    return 1;
  }
  if (online === undefined) log('warn', `broker ${urlForLog(cfg.broker.url)} not reachable yet; starting anyway (the caller id check was skipped) and connecting in the background`);

  const caller = new RpcCaller({ connection, callerId, root });
  caller.on('warn', (m: string) => log('warn', m));
  let everConnected = false;
  caller.on('connect', () => { log('info', `${everConnected ? 'back online' : 'connected'}: ${urlForLog(cfg.broker.url)} as caller ${callerId}`); everConnected = true; });
  let stopping = false;
  caller.on('close', () => { if (everConnected && !stopping) log('warn', `broker connection lost; reconnecting (calls in flight are re-sent)`); });
  caller.on('connection-error', (e: Error) => log('warn', `broker: ${e.message}`));
  // tools/list and tools/call wait (briefly) for the first retained catalogs: McpBridge
  void caller.start();

  let gate: GateApprovals | undefined;
  if (cfg.approvals.mode === 'gate') {
    gate = new GateApprovals({ connection, root, callerId, warn: (m) => log('warn', m) });
    gate.start();
    approvals = { mode: 'gate', gate, waitMs: cfg.approvals.waitMs };
  }
  let audit: { writer: AuditWriter; redactor: Redactor } | undefined;
  if (cfg.audit) {
    try {
      audit = { writer: await AuditWriter.open({ file: cfg.audit.file, onNotice: (t) => log('warn', `audit: ${t}`) }), redactor: new Redactor({ values: [connection.password, token].filter((v): v is string => !!v) }) };
    } catch (e) {
      err(`toolmesh mcp: cannot continue the audit log ${cfg.audit.file}: ${(e as Error).message}`);
      await caller.stop();
      await gate?.stop();
      return 2;
    }
  }
  const version = packageVersion();
  const bridge = new McpBridge({ caller, policy, clientAllow, approvals, approvalFrom: cfg.approvals.from, audit, log, serverInfo: { name: 'toolmesh', version } });

  let front: HttpFront | undefined;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((r) => { finish = r; });
  if (cfg.http) {
    const m = /^(\[[0-9a-fA-F:]+\]|[^\s:]+):(\d{1,5})$/.exec(cfg.http.listen)!;
    const host = m[1].replace(/^\[|\]$/g, '');
    try {
      const o = cfg.http.oauth?.enabled ? cfg.http.oauth : undefined;
      const tls = cfg.http.tls ? { cert: readSecret(cfg.http.tls.cert, '--tls-cert'), key: readSecret(cfg.http.tls.key, '--tls-key') } : undefined;
      front = await serveHttp(bridge, {
        host, port: Number(m[2]), token, allowedHosts: cfg.http.allowedHosts, allowedOrigins: cfg.http.allowedOrigins, log, tls,
        oauth: o ? {
          state: new OAuthStateFile(o.stateFile), publicUrl: o.publicUrl, accessTokenTtlMs: o.accessTokenTtlSec * 1000,
          onApproved: (clientId, label) => log('info', `OAuth: the owner approved client ${label} (${clientId})`),
        } : undefined,
      });
    } catch (e) {
      err(`toolmesh mcp: ${(e as Error).message}`);
      await bridge.close();
      await caller.stop();
      await gate?.stop();
      return 2;
    }
    const auth = [token ? 'bearer token' : '', cfg.http.oauth?.enabled ? 'OAuth sign-in' : ''].filter(Boolean).join(' or ');
    log('info', `serving MCP (Streamable HTTP) at ${front.url}${auth ? ` (${auth} required)` : ''} as caller ${callerId}, approvals ${cfg.approvals.mode}`);
    if (cfg.http.oauth?.enabled) log('info', `OAuth: clients sign in at ${front.url}; approve one with a pairing code from: toolmesh mcp pair --oauth-state ${cfg.http.oauth.stateFile}`);
  } else {
    await serveStdio(bridge, { onClose: () => finish(0) });
    log('info', `serving MCP on stdio as caller ${callerId}, approvals ${cfg.approvals.mode}`);
  }
  const onSignal = () => finish(0);
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  const code = await finished;
  stopping = true;
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  await front?.close();
  await bridge.close();
  await gate?.stop();
  await caller.stop();
  await audit?.writer.close();
  return code;
}


function packageVersion(): string {
  for (const p of [resolve(__dirname, '../../package.json'), resolve(__dirname, '../package.json')]) {
    try {
      const v = (JSON.parse(readFileSync(p, 'utf8')) as { name?: string; version?: string });
      if (v.name === '@toolmesh/node-red-toolmesh' && v.version) return v.version;
    } catch { /* next */ }
  }
  return '0.0.0';
}
