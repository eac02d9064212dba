/**
 * The demo's options and the files it derives from them: constants, the environment
 * (TOOLMESH_UI_HOST, TOOLMESH_UI_PORT, TOOLMESH_MQTT_PORT, TOOLMESH_ADMIN_PASSWORD), the demo
 * agent's config and the example flow patched to the chosen broker port. No side effects.
 */
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { SYSTEM_COMMANDS } from '@toolmesh/agent/agent/packs/system';
import { isLoopbackHost } from '@toolmesh/agent/protocol/broker';
import { TEST_IMAGE } from '../dockerd';

/** The npm name of this pack. */
export const PACKAGE = '@toolmesh/node-red-toolmesh';
/** The example flow whose tab comes first in the flows the first run installs (all examples). */
export const EXAMPLE_FLOW = 'docker-management.json';
/** Agent id of the demo agent (the example flow calls agent `pi`). */
export const AGENT_ID = 'pi';
/** The container the example flow restarts and reads logs of. */
export const DEMO_CONTAINER = 'toolmesh-demo-web';
/** Its image, imported from Debian's busybox-static (no registry is needed). */
export const DEMO_IMAGE = TEST_IMAGE;

/**
 * Where the demo agent `agentId` keeps its execution log (the `audit.file` of its config):
 * `<userDir>/agents/<agentId>-audit.jsonl`; rotated files sit beside it as
 * `<agentId>-audit-<UTC date-time>.jsonl`.
 */
export function agentAuditFile(userDir: string, agentId: string): string {
  return join(userDir, 'agents', `${agentId}-audit.jsonl`);
}

/** Editor address and port, and broker port, when the environment names none. */
export const DEFAULTS = { uiHost: '127.0.0.1', uiPort: 1880, mqttPort: 1883, mcpPort: 8765 } as const;

/** A problem the user can fix; printed as one message without a stack. */
export class DemoError extends Error {}

/** What the environment asks for. */
export interface DemoOptions {
  uiHost: string;
  uiPort: number;
  mqttPort: number;
  /** Port of the MCP bridge's Streamable HTTP endpoint on 127.0.0.1 (TOOLMESH_MCP_PORT). */
  mcpPort: number;
  /** How the demo's MCP bridge obtains approvals (TOOLMESH_MCP_APPROVALS: refuse or gate). */
  mcpApprovals: 'refuse' | 'gate';
  /** Set: Node-RED's adminAuth gets user `admin` with this password. */
  adminPassword?: string;
  /** TOOLMESH_UI_HOST was given (even as 127.0.0.1). */
  uiHostGiven: boolean;
}

function portOf(env: NodeJS.ProcessEnv, name: string, fallback: number): number {
  const raw = env[name]?.trim();
  if (!raw) return fallback;
  const n = Number(raw);
  if (!/^\d+$/.test(raw) || n < 1 || n > 65535) throw new DemoError(`${name}=${raw}: must be a TCP port number from 1 to 65535`);
  return n;
}

/**
 * Reads TOOLMESH_UI_HOST, TOOLMESH_UI_PORT, TOOLMESH_MQTT_PORT, TOOLMESH_MCP_PORT, TOOLMESH_MCP_APPROVALS and
 * TOOLMESH_ADMIN_PASSWORD.
 * @throws DemoError for a bad port, equal ports, or a non-loopback UI host without a password.
 */
export function readOptions(env: NodeJS.ProcessEnv = process.env): DemoOptions {
  const uiHost = env.TOOLMESH_UI_HOST?.trim() || DEFAULTS.uiHost;
  const uiPort = portOf(env, 'TOOLMESH_UI_PORT', DEFAULTS.uiPort);
  const mqttPort = portOf(env, 'TOOLMESH_MQTT_PORT', DEFAULTS.mqttPort);
  if (uiPort === mqttPort) throw new DemoError(`TOOLMESH_UI_PORT and TOOLMESH_MQTT_PORT are both ${uiPort}; give them different ports`);
  const mcpPort = portOf(env, 'TOOLMESH_MCP_PORT', DEFAULTS.mcpPort);
  if (mcpPort === uiPort || mcpPort === mqttPort) throw new DemoError(`TOOLMESH_MCP_PORT ${mcpPort} is taken by the editor or the broker; give it a port of its own`);
  const mcpApprovals = (env.TOOLMESH_MCP_APPROVALS?.trim() || 'refuse') as DemoOptions['mcpApprovals'];
  if (mcpApprovals !== 'refuse' && mcpApprovals !== 'gate') {
    throw new DemoError(`TOOLMESH_MCP_APPROVALS=${env.TOOLMESH_MCP_APPROVALS}: must be refuse (the default: high-risk tools cannot run from MCP clients) or gate (a person approves at the confirm-gate)`);
  }
  const adminPassword = env.TOOLMESH_ADMIN_PASSWORD || undefined;
  if (!isLoopbackHost(uiHost) && !adminPassword) {
    throw new DemoError(`TOOLMESH_UI_HOST=${uiHost} would expose the Node-RED editor, which can run code and `
      + 'call Docker tools, beyond this machine. Set TOOLMESH_ADMIN_PASSWORD as well: the editor then asks for a '
      + 'login (user admin). Or leave TOOLMESH_UI_HOST unset (127.0.0.1).');
  }
  return { uiHost, uiPort, mqttPort, mcpPort, mcpApprovals, adminPassword, uiHostGiven: Boolean(env.TOOLMESH_UI_HOST?.trim()) };
}

/**
 * The demo Pi agent's config file (YAML, `version: 1`): docker (when `dockerSocket` is given; the
 * demo image allowlisted), system and diag packs, the demo broker (as `username` with the password
 * in `passwordFile`, an absolute path, when given), `approvalKeys` (public
 * keys by key id, gate-keys.ts) under `approvals.keys`, and `auditFile` (an absolute path, see
 * {@link agentAuditFile}) as its execution log under `audit.file`.
 */
export function agentConfigYaml(opts: { mqttPort: number; dockerSocket?: string; approvalKeys?: Record<string, string>; auditFile?: string; username?: string; passwordFile?: string }): string {
  const packs: Record<string, unknown> = {};
  if (opts.dockerSocket) packs.docker = { socketPath: opts.dockerSocket, images: [{ image: DEMO_IMAGE }] };
  packs.system = { commands: [...SYSTEM_COMMANDS], units: [] };
  packs.diag = {};
  const config = {
    version: 1,
    agent: { id: AGENT_ID, name: 'Demo Pi (this machine)', kind: 'pi' },
    broker: { url: `mqtt://127.0.0.1:${opts.mqttPort}`, ...(opts.username ? { username: opts.username, passwordFile: opts.passwordFile } : {}) },
    packs,
    ...(opts.approvalKeys && Object.keys(opts.approvalKeys).length ? { approvals: { keys: opts.approvalKeys } } : {}),
    ...(opts.auditFile ? { audit: { file: opts.auditFile } } : {}),
  };
  return '# Written by the ToolMesh demo (npm start) on every start; edits are overwritten.\n'
    + '# Run it by hand with: toolmesh-agent --config <this file>\n' + toYaml(config);
}

/** A flow node as far as the demo reads it. */
export interface FlowNode {
  id: string;
  type: string;
  mode?: string;
  port?: number | string;
  host?: string;
  [key: string]: unknown;
}

/** A copy of `flow` whose embedded tool-registry brokers listen on 127.0.0.1:`mqttPort`, and whose toolmesh-broker nodes on 127.0.0.1 (their own port; a free one when `mqttPort` is 0). */
export function patchFlow(flow: FlowNode[], mqttPort: number): FlowNode[] {
  return flow.map((n) => (n.type === 'toolmesh-tool-registry' && (n.mode ?? 'embedded') === 'embedded' && !n.brokerNode
    ? { ...n, port: mqttPort, host: '127.0.0.1' }
    // a broker node keeps its own port beside the registries' broker (a free one with port 0)
    : n.type === 'toolmesh-broker' ? { ...n, port: mqttPort === 0 ? 0 : n.port, host: '127.0.0.1' }
    : { ...n }));
}
