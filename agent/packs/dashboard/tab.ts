/**
 * The pack's own tab as a plain model, and what it needs to show a dashboard: Dashboard 2.0's
 * config nodes (`ui-base`, `ui-theme`, `ui-page`; FlowFuse Dashboard 2.0 docs, "ui-base",
 * "ui-page") and one `mqtt-broker` for the widgets' data sources. Pure functions on node lists;
 * nothing here talks to Node-RED. Every node of the model is in the pack's tab (`z` = its id):
 * the tab is the only thing the pack ever writes.
 */
import { randomBytes } from 'node:crypto';
import { ToolError } from '../../../protocol/errors';
import type { EnvEntry, FlowNode, TabFlow } from './admin-api';

/** Name of the tab `env` entry that marks the pack's tab; its value is the configured tab label. */
export const TAB_MARKER = 'TOOLMESH_DASHBOARD_TAB';

/** The pack's tab: its own fields and all its nodes, flow nodes and tab-scoped config nodes in one list. */
export interface TabModel {
  /** Undefined until the tab exists in Node-RED. */
  id?: string;
  label: string;
  info: string;
  env: EnvEntry[];
  disabled?: boolean;
  nodes: FlowNode[];
}

/** Where the widgets' MQTT nodes connect (the `mqtt-broker` config node of the tab). */
export interface BrokerSettings {
  host: string;
  port: number;
  tls: boolean;
  username?: string;
  password?: string;
}

/** What the pack needs to know about the rest of Node-RED; read from `GET /flows`, never written. */
export interface Surroundings {
  /** A global `ui-base` (no `z`): the dashboard already exists, so the tab uses it instead of its own. */
  base?: FlowNode;
  /** A global `ui-theme`, used when the tab has none. */
  theme?: FlowNode;
  /** `ui-base` nodes scoped to other tabs: nodes in this tab cannot use them. */
  scopedBases: { id: string; tab: string }[];
  /** `ui-page` paths outside this tab. */
  pagePaths: Set<string>;
  /** Ids of every node outside this tab. */
  ids: Set<string>;
}

/** Dashboard 2.0's breakpoints of a new page (its editor's defaults, ui_page.html). */
const BREAKPOINTS = [
  { name: 'Default', px: 0, cols: 3 }, { name: 'Tablet', px: 576, cols: 6 },
  { name: 'Small Desktop', px: 768, cols: 9 }, { name: 'Desktop', px: 1024, cols: 12 },
];

/** A new Node-RED node id: 16 hex digits, as the editor makes them. */
export function newId(): string {
  return randomBytes(8).toString('hex');
}

/** Ids of the tabs marked as this pack's tab for `tabLabel`, in flow order. */
export function findOwnTabs(flows: FlowNode[], tabLabel: string): string[] {
  return flows.filter((n) => n.type === 'tab' && Array.isArray(n.env)
    && (n.env as EnvEntry[]).some((e) => e?.name === TAB_MARKER && e.value === tabLabel)).map((n) => n.id);
}

/** What the rest of `flows` offers and occupies, seen from tab `ownTabId` (undefined: no tab yet). */
export function surroundings(flows: FlowNode[], ownTabId: string | undefined): Surroundings {
  const tabs = new Set(flows.filter((n) => n.type === 'tab' || n.type === 'subflow').map((n) => n.id));
  const others = flows.filter((n) => n.id !== ownTabId && (ownTabId === undefined || n.z !== ownTabId));
  const global = (n: FlowNode) => !n.z || !tabs.has(n.z);
  return {
    base: others.find((n) => n.type === 'ui-base' && global(n)),
    theme: others.find((n) => n.type === 'ui-theme' && global(n)),
    scopedBases: others.filter((n) => n.type === 'ui-base' && !global(n)).map((n) => ({ id: n.id, tab: n.z! })),
    pagePaths: new Set(others.filter((n) => n.type === 'ui-page').map((n) => String(n.path))),
    ids: new Set(others.map((n) => n.id)),
  };
}

/** A model of tab `flow` as `GET /flow/:id` returned it. */
export function modelFromFlow(flow: TabFlow): TabModel {
  return {
    id: flow.id, label: flow.label, info: flow.info ?? '', env: flow.env ?? [], disabled: flow.disabled,
    nodes: [...flow.nodes, ...(flow.configs ?? [])].map((n) => structuredClone(n)),
  };
}

/** An empty model of a new tab labelled `label`, marked as the pack's, managed by agent `agentId`. */
export function newModel(label: string, agentId: string): TabModel {
  return {
    label,
    info: `Managed by the ToolMesh dashboard pack of agent "${agentId}": its tools edit this tab and no other. `
      + 'Edits made here in the editor stay, but load_dashboard replaces the whole tab with a saved snapshot.',
    env: [{ name: TAB_MARKER, type: 'str', value: label }],
    nodes: [],
  };
}

/** The body of `POST /flow` or `PUT /flow/:id` for the model (config nodes travel in `nodes`). */
export function flowFromModel(m: TabModel): TabFlow {
  const flow: TabFlow = { label: m.label, info: m.info, env: m.env, nodes: m.nodes.map((n) => ({ ...n, z: m.id ?? n.z })) };
  if (m.disabled !== undefined) flow.disabled = m.disabled;
  for (const n of flow.nodes) if (n.z === undefined) delete n.z;
  return flow;
}

/** The page path for a page name: `/` plus its lower-case letters and digits joined by `-`. */
export function slug(name: string): string {
  const s = name.normalize('NFKD').replace(/[\u0300-\u036f]/g, '').toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-+|-+$/g, '');
  return `/${s || 'page'}`;
}

/** The tab's `ui-page` named `name` (case-insensitive), or undefined. */
export function findPage(m: TabModel, name: string): FlowNode | undefined {
  const want = name.trim().toLowerCase();
  return m.nodes.find((n) => n.type === 'ui-page' && String(n.name).toLowerCase() === want);
}

/** Page paths in use, in and outside the tab, except page `self`'s. */
function usedPaths(m: TabModel, s: Surroundings, self?: FlowNode): Set<string> {
  return new Set([...s.pagePaths, ...m.nodes.filter((n) => n.type === 'ui-page' && n !== self).map((n) => String(n.path))]);
}

/** A path from `slug(name)` that no page in or outside the tab uses yet. */
function freePagePath(m: TabModel, s: Surroundings, name: string, self?: FlowNode): string {
  const used = usedPaths(m, s, self);
  const base = slug(name);
  let path = base;
  for (let i = 2; used.has(path); i++) path = `${base}-${i}`;
  return path;
}

/**
 * The tab's page named `name`; created (with a free path from its name, the tab's base and
 * theme, after the tab's other pages) when missing. Call {@link scaffold} first.
 */
export function ensurePage(m: TabModel, s: Surroundings, name: string): FlowNode {
  const found = findPage(m, name);
  if (found) return found;
  const pages = m.nodes.filter((n) => n.type === 'ui-page');
  const page: FlowNode = {
    id: newId(), type: 'ui-page', name: name.trim(), ui: baseOf(m, s).id, path: freePagePath(m, s, name), icon: 'home',
    layout: 'grid', theme: themeOf(m, s).id, breakpoints: BREAKPOINTS,
    order: Math.max(0, ...pages.map((p) => Number(p.order) || 0)) + 1, className: '', visible: 'true', disabled: 'false',
  };
  m.nodes.push(page);
  return page;
}

/** The `ui-base` the tab's pages use: the global one when there is one, else the tab's own. */
export function baseOf(m: TabModel, s: Surroundings): FlowNode {
  const b = s.base ?? m.nodes.find((n) => n.type === 'ui-base');
  if (!b) throw new Error('scaffold() must run before baseOf()');
  return b;
}

function themeOf(m: TabModel, s: Surroundings): FlowNode {
  const t = m.nodes.find((n) => n.type === 'ui-theme') ?? s.theme;
  if (!t) throw new Error('scaffold() must run before themeOf()');
  return t;
}

/** The tab's `mqtt-broker`, or undefined before {@link scaffold}. */
export function brokerOf(m: TabModel): FlowNode | undefined {
  return m.nodes.find((n) => n.type === 'mqtt-broker');
}

/**
 * Makes the tab able to show a dashboard, changing only the model:
 * - a `ui-base` at `basePath` when Node-RED has no global one (a global one is used instead, and
 *   a `ui-base` of the tab's own is then dropped: Dashboard 2.0 serves one base per runtime);
 * - a `ui-theme` when neither the tab nor the global config has one;
 * - one `mqtt-broker` with `broker`'s settings (credentials sent along when a username is set);
 * - every page of the tab on that base, on an existing theme, at a path no other page uses
 *   (a page whose path is taken gets a free one from its name);
 * - every `mqtt in` / `mqtt out` of the tab on that broker.
 * @throws ToolError NOT_SUPPORTED when the only `ui-base` lives in another tab (nodes here cannot use it).
 */
export function scaffold(m: TabModel, s: Surroundings, opts: { basePath: string; broker: BrokerSettings }): void {
  if (s.base) {
    m.nodes = m.nodes.filter((n) => n.type !== 'ui-base');
  } else if (!m.nodes.some((n) => n.type === 'ui-base')) {
    if (s.scopedBases.length) {
      const b = s.scopedBases[0];
      throw new ToolError('NOT_SUPPORTED', `the dashboard's ui-base (${b.id}) is scoped to tab ${b.tab}, so nodes in the ToolMesh tab cannot use it; `
        + 'in the Node-RED editor, open Configuration nodes and set its scope to global, then try again', { base: b.id, tab: b.tab });
    }
    m.nodes.push({
      id: newId(), type: 'ui-base', name: 'ToolMesh dashboard', path: opts.basePath, appIcon: '', includeClientData: true,
      acceptsClientConfig: ['ui-notification', 'ui-control'], showPathInSidebar: false, headerContent: 'page',
      navigationStyle: 'default', titleBarStyle: 'default', showReconnectNotification: true, notificationDisplayTime: 1,
      showDisconnectNotification: true, allowInstall: false,
    });
  }
  if (!m.nodes.some((n) => n.type === 'ui-theme') && !s.theme) {
    m.nodes.push({
      id: newId(), type: 'ui-theme', name: 'ToolMesh theme',
      colors: { surface: '#fcfcfd', primary: '#0d74ce', bgPage: '#f9f9fb', groupBg: '#ffffff', groupOutline: '#d9d9e0' },
      sizes: { density: 'default', pagePadding: '12px', groupGap: '12px', groupBorderRadius: '4px', widgetGap: '12px' },
    });
  }
  const base = baseOf(m, s);
  const themes = new Set([...m.nodes.filter((n) => n.type === 'ui-theme').map((n) => n.id), ...(s.theme ? [s.theme.id] : [])]);
  for (const page of m.nodes.filter((n) => n.type === 'ui-page')) {
    page.ui = base.id;
    if (!themes.has(String(page.theme))) page.theme = themeOf(m, s).id;
    if (typeof page.path !== 'string' || !page.path.startsWith('/') || usedPaths(m, s, page).has(page.path)) {
      page.path = freePagePath(m, s, String(page.name), page);
    }
  }
  const brokers = m.nodes.filter((n) => n.type === 'mqtt-broker');
  const broker: FlowNode = brokers[0] ?? { id: newId(), type: 'mqtt-broker' };
  m.nodes = m.nodes.filter((n) => n.type !== 'mqtt-broker' || n === broker);
  Object.assign(broker, {
    name: 'ToolMesh dashboard broker', broker: opts.broker.host, port: String(opts.broker.port), clientid: '', autoConnect: true,
    usetls: opts.broker.tls, protocolVersion: '4', keepalive: '60', cleansession: true, autoUnsubscribe: true,
  });
  if (opts.broker.username) broker.credentials = { user: opts.broker.username, password: opts.broker.password ?? '' };
  if (!brokers.length) m.nodes.push(broker);
  for (const n of m.nodes) if (n.type === 'mqtt in' || n.type === 'mqtt out') n.broker = broker.id;
}

/** A node as one short line for diffs and summaries: `ui-gauge "Temperature" (3f2a...)`. */
export function describeNode(n: FlowNode): string {
  const label = [n.name, n.title, n.label, n.topic].find((v) => typeof v === 'string' && v !== '');
  return `${n.type}${label ? ` "${label}"` : ''} (${n.id})`;
}

/** JSON with sorted keys, so equal nodes compare equal whatever their key order. */
function canonical(v: unknown): string {
  return JSON.stringify(v, (_k, x) => (x && typeof x === 'object' && !Array.isArray(x)
    ? Object.fromEntries(Object.keys(x).sort().map((k) => [k, (x as Record<string, unknown>)[k]])) : x));
}

/** What an edit changes in the tab: nodes added, removed and changed, each as {@link describeNode}. */
export interface TabDiff {
  added: string[];
  removed: string[];
  changed: string[];
}

/** The difference between two node lists of the tab (`z` and credentials ignored). */
export function diffNodes(before: FlowNode[], after: FlowNode[]): TabDiff {
  const strip = (n: FlowNode) => canonical({ ...n, z: undefined, credentials: undefined });
  const old = new Map(before.map((n) => [n.id, n]));
  const now = new Map(after.map((n) => [n.id, n]));
  return {
    added: after.filter((n) => !old.has(n.id)).map(describeNode),
    removed: before.filter((n) => !now.has(n.id)).map(describeNode),
    changed: after.filter((n) => old.has(n.id) && strip(old.get(n.id)!) !== strip(n)).map(describeNode),
  };
}
