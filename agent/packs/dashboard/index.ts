/**
 * The dashboard pack: edits a FlowFuse Dashboard 2.0 (`@flowfuse/node-red-dashboard`) through
 * Node-RED's Admin API, confined to one tab of its own. The tab is found by the `env` entry `TOOLMESH_DASHBOARD_TAB` = `tabLabel` and is
 * created on the first edit with the dashboard's config nodes when Node-RED has none (a global
 * `ui-base` is used when there is one). Elements are Dashboard 2.0 widgets bound to MQTT topics
 * on the configured broker. Other tabs are read (`GET /flows`), never written.
 *
 * ```yaml
 * packs:
 *   dashboard:
 *     url: http://127.0.0.1:1880           # Node-RED admin API (add httpAdminRoot if not /)
 *     auth: { username: admin, passwordFile: ./nodered-admin.pass }   # when adminAuth is on
 *     mqtt: { url: mqtt://127.0.0.1:1883 } # where the widgets' MQTT nodes connect
 *     configDir: /var/lib/toolmesh/dashboards
 * ```
 */
import { readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import type { ToolPack } from '../types';
import type { AdminAuth } from './admin-api';
import type { BrokerSettings } from './tab';

/** How long `create()` waits for Node-RED's `GET /nodes`, ms. */
export const PROBE_TIMEOUT_MS = 5000;

const HTTP_URL = /^https?:\/\/[^\s/?#]+(\/[^\s?#]*)?$/;
const MQTT_URL = /^mqtts?:\/\/[^\s/?#:]+(:\d{1,5})?\/?$/;

/** The `packs.dashboard` section of the agent config. Unknown keys are errors; relative paths are resolved against the agent's working directory. */
export const DashboardConfigSchema = z.strictObject({
  url: z.string().regex(HTTP_URL, 'an http(s) URL such as http://127.0.0.1:1880').default('http://127.0.0.1:1880')
    .describe("Node-RED's admin API root (its httpAdminRoot appended when that is not /)"),
  dashboardUrl: z.string().regex(HTTP_URL, 'an http(s) URL').optional()
    .describe('Where Node-RED serves HTTP nodes (origin plus httpNodeRoot); default: the origin of url'),
  auth: z.strictObject({
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    passwordFile: z.string().min(1).optional().describe('file holding the password (one line)'),
    token: z.string().min(1).optional().describe("a bearer token of adminAuth's tokens setting"),
    tokenFile: z.string().min(1).optional(),
  }).refine((a) => Boolean(a.username) !== Boolean(a.token || a.tokenFile), 'give username (with password or passwordFile) or token/tokenFile')
    .optional().describe("A user of Node-RED's adminAuth allowed to write flows; leave out when adminAuth is off"),
  tabLabel: z.string().min(1).max(100).default('ToolMesh dashboard').describe('Label of the one tab the pack edits'),
  basePath: z.string().regex(/^\/[A-Za-z0-9_-]+(\/[A-Za-z0-9_-]+)*$/, 'a path such as /dashboard').default('/dashboard')
    .describe('Path of the ui-base the pack creates when Node-RED has no dashboard yet'),
  defaultPage: z.string().min(1).max(60).default('ToolMesh').describe('Page of groups created without a page'),
  mqtt: z.strictObject({
    url: z.string().regex(MQTT_URL, 'a broker URL such as mqtt://127.0.0.1:1883').default('mqtt://127.0.0.1:1883'),
    username: z.string().min(1).optional(),
    password: z.string().optional(),
    passwordFile: z.string().min(1).optional(),
  }).prefault({}).describe("The broker of the elements' data sources (default: ToolMesh's embedded broker on this machine)"),
  configDir: z.string().min(1).default(() => join(homedir(), '.toolmesh', 'dashboards')).describe('Directory of saved snapshots'),
  deniedTopicPrefixes: z.array(z.string().min(1)).default(['toolmesh/'])
    .describe("Topic prefixes elements may not use; keep ToolMesh's root (broker.root) here"),
  allowedTopicPrefixes: z.array(z.string().min(1)).default([]).describe('When not empty, element topics must start with one of these'),
  requestTimeoutMs: z.number().int().min(100).max(120_000).default(10_000).describe('Budget of one Admin API request, ms'),
});
export type DashboardConfig = z.output<typeof DashboardConfigSchema>;

/** Reads a one-line secret file. */
function secret(file: string): string {
  return readFileSync(resolve(file), 'utf8').trim();
}

/** The broker settings of `mqtt.url` (port 1883, or 8883 for mqtts, when the URL names none). */
export function brokerSettings(mqtt: DashboardConfig['mqtt']): BrokerSettings {
  const u = new URL(mqtt.url);
  const tls = u.protocol === 'mqtts:';
  const password = mqtt.password ?? (mqtt.passwordFile ? secret(mqtt.passwordFile) : undefined);
  return { host: u.hostname, port: u.port ? Number(u.port) : tls ? 8883 : 1883, tls, username: mqtt.username, password };
}

/**
 * The dashboard pack. `create()` reads the secret files and asks Node-RED for its node types
 * (≤ {@link PROBE_TIMEOUT_MS}): it is unavailable when a secret file cannot be read, when
 * Node-RED refuses the credentials, or when Dashboard 2.0 is not installed there; when Node-RED
 * does not answer, the tools are offered anyway and each call tries again.
 * Tools: `create_dashboard_group`, `add_dashboard_element`, `move_group` (medium);
 * `remove_dashboard_element`, `load_dashboard` (medium, destructive: confined to the pack's own
 * tab, and load replaces only what the pack manages); `save_dashboard` (low: writes a snapshot
 * file); `list_groups`, `get_dashboard_status`, `list_dashboard_configs` (low, read-only).
 */
export const dashboardPack: ToolPack<typeof DashboardConfigSchema> = {
  name: 'dashboard',
  configSchema: DashboardConfigSchema,
  async create(config, ctx) {
    let auth: AdminAuth | undefined;
    let broker: BrokerSettings;
    try {
      const a = config.auth;
      if (a) auth = { username: a.username, password: a.password ?? (a.passwordFile ? secret(a.passwordFile) : undefined), token: a.token ?? (a.tokenFile ? secret(a.tokenFile) : undefined) };
      broker = brokerSettings(config.mqtt);
    } catch (e) {
      return { unavailable: `cannot read a secret file of packs.dashboard: ${(e as Error).message}` };
    }
    // tool code loads here, not with this module: every agent validates every pack's config
    // section, but only an agent with this pack configured needs the tools (bench/agent-rss.mjs)
    const [{ NodeRedAdmin }, { TabEditor }, { dashboardTools }] = await Promise.all([import('./admin-api'), import('./editor'), import('./tools')]);
    const admin = new NodeRedAdmin({ url: config.url, auth, timeoutMs: config.requestTimeoutMs });
    const editor = new TabEditor(admin, { tabLabel: config.tabLabel, basePath: config.basePath, broker, agentId: ctx.agentId });
    try {
      await editor.checkTypes(AbortSignal.timeout(PROBE_TIMEOUT_MS));
    } catch (e) {
      if (e instanceof ToolError && (e.code === 'NOT_SUPPORTED' || e.code === 'PERMISSION_DENIED')) return { unavailable: e.message };
      ctx.log.warn(`dashboard: ${(e as Error).message}; the dashboard tools are offered anyway and try again on each call`);
    }
    const dashboardUrl = (config.dashboardUrl ?? new URL(config.url).origin).replace(/\/+$/, '');
    const tools = dashboardTools(editor, {
      dashboardUrl, defaultPage: config.defaultPage, configDir: resolve(config.configDir),
      deniedTopicPrefixes: config.deniedTopicPrefixes, allowedTopicPrefixes: config.allowedTopicPrefixes,
      brokerUrl: `${broker.tls ? 'mqtts' : 'mqtt'}://${broker.host}:${broker.port}`,
    });
    return { tools };
  },
};
