/**
 * Reads a tool-registry node's editor config (as stored in the flow file) and credentials into
 * {@link RegistryOptions}, checking every field. A bad field falls back to its default and is
 * reported, naming the field, so the registry can show `error` instead of half-working.
 */
import { createHash } from 'node:crypto';
import type { IClientOptions } from 'mqtt';
import { DEFAULT_CALL_TIMEOUT_MS, DEFAULT_ROOT, isValidId } from '@toolmesh/agent/protocol';
import { isLoopbackHost, type BrokerTlsOptions, type BrokerUser } from '@toolmesh/agent/protocol/broker';
import { hasUserInfo } from '@toolmesh/agent/protocol/redact';
import { parsePolicy, type Policy } from './policy';
import { parseTrustedKeys } from './trusted-keys';
import type { BrokerChoice, RegistryOptions } from './registry';
import { parseUserList, type UserLineProblem } from './users';
import { MCP_AGENT_PREFIX, type McpServerMountOptions } from '../../mcp/client';
import { RISK_LEVELS, type Risk } from '@toolmesh/agent/protocol/schemas';

/** The node's properties in the flow file (see the help text for their meaning). */
export interface RegistryConfig {
  id: string;
  name?: string;
  /** `embedded` (default) or `external`. */
  mode?: string;
  /** External broker URL: `mqtt://`, `mqtts://`, `ws://` or `wss://`. */
  broker?: string;
  /** Id of a core `tls-config` node, for `mqtts://` and `wss://` (optional). */
  tls?: string;
  /**
   * Embedded broker: id of a `toolmesh-broker` config node whose settings (port, bind address,
   * authentication and users, TLS) it uses; the inline fields below are then ignored. Empty: the
   * inline fields (flows from before the broker node).
   */
  brokerNode?: string;
  /** Embedded broker TCP port (default 1883; 0 picks a free one). */
  port?: number | string;
  /** Embedded broker bind address (default 127.0.0.1); any other address needs `requireAuth`. */
  host?: string;
  /** Embedded broker: refuse clients without a username and password from `users` (default false). */
  requireAuth?: boolean | string;
  /** Embedded broker: id of a core `tls-config` node with its certificate and key, to serve `mqtts://` (optional). */
  brokerTls?: string;
  /** Topic root (default `toolmesh/v1`). */
  root?: string;
  /** Caller id; empty derives a stable one (see {@link defaultCallerId}). */
  callerId?: string;
  /** Policy text: one `agent/tool` glob a line, `!` excludes (default `*\/*`). */
  policy?: string;
  /** Default call budget, ms (default 30 000). */
  timeout?: number | string;
  /**
   * Public keys of confirm-gates in other Node-RED instances whose approvals this registry's flow
   * agents (tool-in) accept, besides the gates deployed here (trusted-keys.ts).
   */
  trustedKeys?: string;
  /** External MCP servers to mount, each shown as agent `mcp-<name>` (see {@link McpServerConfig}). */
  mcpServers?: McpServerConfig[];
}

/**
 * One MCP server in the flow file. `type` `stdio` runs `command` with `args` (one argument an
 * entry, no shell) in `cwd` (default: the Node-RED user directory) with `env` added to a safe
 * default environment; `http` connects to the Streamable HTTP endpoint `url`, with the bearer
 * token from the `mcpTokens` credential. `risks` maps tool names to risk levels; every other
 * tool is `high` (a third-party server's annotations are only hints).
 */
export interface McpServerConfig {
  name?: string;
  type?: string;
  command?: string;
  args?: string[];
  env?: Record<string, string>;
  cwd?: string;
  url?: string;
  risks?: Record<string, string>;
}

/** The node's credentials (kept out of the flow file by Node-RED). */
export interface RegistryCredentials {
  /** External broker: the caller's username (under ToolMesh ACLs, the caller id). */
  username?: string;
  password?: string;
  /** Embedded broker with `requireAuth`: one `role id password` a line (see ./users.ts). */
  users?: string;
  /**
   * External broker: the flow agent's (tool-in nodes') username; empty with `agentPassword` set
   * means the agent id. Both empty: the caller's credentials, which ToolMesh ACLs refuse.
   */
  agentUsername?: string;
  agentPassword?: string;
  /** Bearer tokens of HTTP MCP servers: a JSON object, server name → token. */
  mcpTokens?: string;
}

/** What {@link readConfig} needs from the runtime. */
export interface ConfigContext {
  /** Node-RED's translation function (`RED._`). */
  t(key: string, params?: Record<string, string | number>): string;
  /** Node-RED's user directory (`RED.settings.userDir`), part of the default caller id. */
  userDir?: string;
  /** Adds the TLS options of the `tls-config` node with this id; false when there is none. */
  addTls(id: string, opts: Partial<IClientOptions>): boolean;
  /**
   * The checked settings of the deployed `toolmesh-broker` node with this id (`error`: its first
   * bad field, in its own words), or undefined when there is none.
   */
  brokerNode?(id: string): { broker?: Extract<BrokerChoice, { mode: 'embedded' }>; error?: string } | undefined;
}

/** Default port of the embedded broker. */
export const DEFAULT_PORT = 1883;
/** Default bind address of the embedded broker: loopback only. */
export const DEFAULT_HOST = '127.0.0.1';
/** Default external broker URL. */
export const DEFAULT_BROKER_URL = 'mqtt://127.0.0.1:1883';

const NOTHING: Policy = { include: [], exclude: [], source: [] };

/**
 * The default caller id: `nodered-` + the first 12 hex digits of SHA-256 over the Node-RED user
 * directory and the config node's id. Both survive restarts, and two Node-RED instances that
 * import the same flow get different ids.
 */
export function defaultCallerId(userDir: string | undefined, nodeId: string): string {
  return `nodered-${createHash('sha256').update(`${userDir ?? ''}|${nodeId}`).digest('hex').slice(0, 12)}`;
}

function userProblem(ctx: Pick<ConfigContext, 't'>, p: UserLineProblem, ns: string): string {
  const { problem, ...params } = p;
  return ctx.t(`${ns}.errors.user-${problem}`, params);
}

function intIn(value: unknown, min: number, max: number): number | undefined {
  const s = typeof value === 'string' ? value.trim() : value;
  const n = typeof s === 'number' ? s : typeof s === 'string' && s !== '' ? Number(s) : NaN;
  return Number.isInteger(n) && n >= min && n <= max ? n : undefined;
}

/** The embedded broker's settings as a tool-registry (inline) or a toolmesh-broker node holds them. */
export interface EmbeddedBrokerConfig {
  port?: number | string;
  host?: string;
  requireAuth?: boolean | string;
  brokerTls?: string;
}

/**
 * Reads and checks an embedded broker's settings: port (0–65535, default {@link DEFAULT_PORT}),
 * bind address (default {@link DEFAULT_HOST}; any other address needs `requireAuth`), the user
 * list from `creds.users` when `requireAuth` (./users.ts), and the `brokerTls` tls-config node
 * (certificate and key). Never throws: `problems` holds one message a bad field, naming it, in
 * the catalog of `ns` (`<ns>.errors.bad-field`, `.exposed`, `.user-*`); the broker gets defaults.
 */
export function readEmbeddedBroker(
  def: EmbeddedBrokerConfig, creds: { users?: string } | undefined, ctx: Pick<ConfigContext, 't' | 'addTls'>, ns: string,
): { broker: Extract<BrokerChoice, { mode: 'embedded' }>; problems: string[] } {
  const problems: string[] = [];
  const bad = (field: string, value: unknown, expected: string) => {
    problems.push(ctx.t(`${ns}.errors.bad-field`, { field, value: JSON.stringify(value ?? null), expected }));
  };
  const port = intIn(def.port ?? DEFAULT_PORT, 0, 65535);
  if (port === undefined) bad('port', def.port, '0–65535');
  const host = def.host?.trim() || DEFAULT_HOST;
  let auth: { users: BrokerUser[] } | undefined;
  if (def.requireAuth === true || def.requireAuth === 'true') {
    const { users, problem } = parseUserList(creds?.users);
    if (problem) problems.push(userProblem(ctx, problem, ns));
    auth = { users };
  } else if (!isLoopbackHost(host)) {
    // an open broker in front of tools is remote code execution for anyone who reaches it:
    // exposing it is an explicit option that requires credentials
    problems.push(ctx.t(`${ns}.errors.exposed`, { host }));
  }
  let tls: BrokerTlsOptions | undefined;
  if (def.brokerTls) {
    const o: Partial<IClientOptions> & { passphrase?: string } = {};
    if (!ctx.addTls(def.brokerTls, o)) bad('brokerTls', def.brokerTls, 'the id of a deployed tls-config node');
    else if (!o.key || !o.cert) bad('brokerTls', def.brokerTls, 'a tls-config node with the broker\'s certificate and private key');
    else tls = { key: o.key as string | Buffer, cert: o.cert as string | Buffer, ca: o.ca as BrokerTlsOptions['ca'], passphrase: o.passphrase };
  }
  return { broker: { mode: 'embedded', port: port ?? DEFAULT_PORT, host, auth, tls }, problems };
}

/**
 * Builds the registry options. Never throws: a bad field gets its default (an unparseable policy
 * offers nothing) and `error` names the first bad field and what was expected.
 */
export function readConfig(def: RegistryConfig, creds: RegistryCredentials | undefined, ctx: ConfigContext): { options: RegistryOptions; error?: string } {
  const problems: string[] = [];
  const bad = (field: string, value: unknown, expected: string) => {
    problems.push(ctx.t('tool-registry.errors.bad-field', { field, value: JSON.stringify(value ?? null), expected }));
  };

  let broker: BrokerChoice;
  const mode = def.mode || 'embedded';
  if (mode === 'embedded' && def.brokerNode) {
    // the settings of a toolmesh-broker config node (nodes/broker), checked there
    const shared = ctx.brokerNode?.(def.brokerNode);
    if (!shared) bad('brokerNode', def.brokerNode, 'the id of a deployed toolmesh-broker node');
    else if (shared.error) problems.push(`brokerNode: ${shared.error}`);
    broker = shared?.broker ?? { mode, port: DEFAULT_PORT, host: DEFAULT_HOST };
  } else if (mode === 'embedded') {
    const read = readEmbeddedBroker(def, creds, ctx, 'tool-registry');
    problems.push(...read.problems);
    broker = read.broker;
  } else {
    if (mode !== 'external') bad('mode', def.mode, '"embedded" or "external"');
    let url = def.broker?.trim() || DEFAULT_BROKER_URL;
    let protocol = '';
    try {
      protocol = new URL(url).protocol;
    } catch {
      // reported below
    }
    // user info is refused before the shape is checked: that message would repeat the URL, secret and all
    if (hasUserInfo(url)) {
      problems.push(ctx.t('tool-registry.errors.broker-userinfo'));
      url = DEFAULT_BROKER_URL;
    } else if (!['mqtt:', 'mqtts:', 'ws:', 'wss:'].includes(protocol)) bad('broker', def.broker, 'mqtt://, mqtts://, ws:// or wss:// URL, e.g. mqtt://192.168.1.10:1883');
    const extra: Partial<IClientOptions> = {};
    if (def.tls && !ctx.addTls(def.tls, extra)) bad('tls', def.tls, 'the id of a deployed tls-config node');
    broker = {
      mode: 'external',
      connection: { url, username: creds?.username || undefined, password: creds?.password || undefined, extra },
      agentAuth: creds?.agentUsername || creds?.agentPassword
        ? { username: creds.agentUsername || undefined, password: creds.agentPassword || undefined }
        : undefined,
    };
  }

  const root = def.root?.trim() || DEFAULT_ROOT;
  if (/[#+]/.test(root) || root.startsWith('/') || root.endsWith('/')) bad('root', def.root, 'a topic without wildcards or leading/trailing "/", e.g. toolmesh/v1');

  let callerId = def.callerId?.trim() || defaultCallerId(ctx.userDir, def.id);
  if (!isValidId(callerId)) {
    bad('callerId', def.callerId, '1–64 letters, digits, _ or -');
    callerId = defaultCallerId(ctx.userDir, def.id);
  }

  let policy = NOTHING;
  try {
    policy = parsePolicy(def.policy);
  } catch (e) {
    problems.push(`policy: ${(e as Error).message}`);
  }

  const timeout = def.timeout === undefined || def.timeout === '' ? DEFAULT_CALL_TIMEOUT_MS : intIn(def.timeout, 1, 24 * 3600_000);
  if (timeout === undefined) bad('timeout', def.timeout, 'a whole number of ms from 1 to 86400000');

  const mcpServers = readMcpServers(def.mcpServers, creds?.mcpTokens, ctx, bad, (text) => problems.push(text));

  // a bad key is a config error and trusts none of them (fail closed)
  const trusted = parseTrustedKeys(def.trustedKeys);
  if (trusted.problem) problems.push(`trustedKeys: ${trusted.problem}`);

  return {
    options: { broker, root, callerId, policy, defaultTimeoutMs: timeout ?? DEFAULT_CALL_TIMEOUT_MS, mcpServers, trustedKeys: trusted.keys },
    error: problems[0],
  };
}

/**
 * The MCP servers of the config, checked field by field; a bad server is left out and reported
 * through `bad` with the field path, e.g. `mcpServers[0].name` (through `report`, without its
 * value, when the value holds a secret).
 */
function readMcpServers(
  list: McpServerConfig[] | undefined, tokensText: string | undefined, ctx: ConfigContext,
  bad: (field: string, value: unknown, expected: string) => void, report: (text: string) => void,
): McpServerMountOptions[] {
  if (list === undefined || (typeof list === 'string' && list === '')) return [];
  if (!Array.isArray(list)) {
    bad('mcpServers', list, 'a list of MCP servers');
    return [];
  }
  let tokens: Record<string, unknown> = {};
  if (tokensText?.trim()) {
    try {
      const t = JSON.parse(tokensText) as unknown;
      if (!t || typeof t !== 'object' || Array.isArray(t)) throw new Error('not an object');
      tokens = t as Record<string, unknown>;
    } catch {
      bad('mcpTokens', '(hidden)', 'a JSON object of server name to bearer token, e.g. {"files": "secret"}');
    }
  }
  const out: McpServerMountOptions[] = [];
  const names = new Set<string>();
  list.forEach((s, i) => {
    const at = `mcpServers[${i}]`;
    const name = typeof s?.name === 'string' ? s.name.trim() : s?.name;
    if (typeof name !== 'string' || !/^[A-Za-z0-9_-]+$/.test(name) || name.length > 64 - MCP_AGENT_PREFIX.length) {
      return bad(`${at}.name`, s?.name, `1–${64 - MCP_AGENT_PREFIX.length} letters, digits, _ or - (the agent id is ${MCP_AGENT_PREFIX}<name>)`);
    }
    if (names.has(name)) return bad(`${at}.name`, name, 'a name no other MCP server of this registry has');
    const risks: Record<string, Risk> = {};
    for (const [tool, risk] of Object.entries(s.risks ?? {})) {
      if (!(RISK_LEVELS as readonly string[]).includes(risk)) return bad(`${at}.risks.${tool}`, risk, RISK_LEVELS.join(', '));
      risks[tool] = risk as Risk;
    }
    const type = s.type || 'stdio';
    if (type === 'stdio') {
      if (typeof s.command !== 'string' || !s.command.trim()) return bad(`${at}.command`, s.command, 'a program to run, e.g. node');
      const args = s.args ?? [];
      if (!Array.isArray(args) || args.some((a) => typeof a !== 'string')) return bad(`${at}.args`, s.args, 'a list of strings, one argument each');
      const env = s.env ?? {};
      if (typeof env !== 'object' || Array.isArray(env) || Object.values(env).some((v) => typeof v !== 'string')) return bad(`${at}.env`, s.env, 'an object of names to string values');
      out.push({ name, risks, transport: { type: 'stdio', command: s.command.trim(), args, env, cwd: s.cwd?.trim() || ctx.userDir } });
    } else if (type === 'http') {
      if (hasUserInfo(String(s.url))) {
        return report(ctx.t('tool-registry.errors.mcp-userinfo', { field: `${at}.url` }));
      }
      let protocol = '';
      try {
        protocol = new URL(String(s.url)).protocol;
      } catch {
        // reported below
      }
      if (protocol !== 'http:' && protocol !== 'https:') return bad(`${at}.url`, s.url, 'an http:// or https:// URL of a Streamable HTTP endpoint, e.g. http://127.0.0.1:3001/mcp');
      const token = typeof tokens[name] === 'string' && tokens[name] ? tokens[name] as string : undefined;
      out.push({ name, risks, transport: { type: 'http', url: String(s.url).trim(), token } });
    } else {
      return bad(`${at}.type`, s.type, '"stdio" or "http"');
    }
    names.add(name);
  });
  return out;
}
