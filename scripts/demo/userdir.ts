/** The demo's Node-RED user directory (`.toolmesh-demo/`): this pack installed, settings, flows, adminAuth. */
import { randomBytes } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, readdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import {
  DEFAULTS, DemoError, EXAMPLE_FLOW, PACKAGE, patchFlow, type DemoOptions, type FlowNode,
} from './options';
import { say } from './processes';
import { readAuditLogConfig } from '../../nodes/audit-log/audit-log';
import { migrateFlowsFileSync } from '../../nodes/migrate';

/** The pack's name before issue 18 (its node types then had no `toolmesh-` prefix). */
export const OLD_PACKAGE = 'node-red-contrib-toolmesh';

/**
 * Moves a demo user directory of the old pack over (issue 18): removes the old package's link and
 * its package.json entry (else Node-RED would load this repository twice), and rewrites the old
 * node types in flows.json ({@link migrateFlowsFileSync}: node ids kept, so flows_cred.json stays
 * valid; the old file is kept as flows.json.bak-toolmesh). Says what it did; no-op when nothing is old.
 */
export function migrateUserDir(root: string, userDir: string): void {
  const link = join(userDir, 'node_modules', OLD_PACKAGE);
  let stat;
  try { stat = lstatSync(link); } catch { stat = undefined; }
  if (stat?.isSymbolicLink()) {
    unlinkSync(link);
    say(`removed ${relative(root, link)} (the pack is now ${PACKAGE})`);
  } else if (stat) say(`note: ${relative(root, link)} is a real directory: remove it, Node-RED would load the old pack too`);
  const pkgFile = join(userDir, 'package.json');
  if (existsSync(pkgFile)) {
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8')) as { dependencies?: Record<string, string> };
    if (pkg.dependencies && OLD_PACKAGE in pkg.dependencies) {
      delete pkg.dependencies[OLD_PACKAGE];
      writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
    }
  }
  const flowsFile = join(userDir, 'flows.json');
  if (!existsSync(flowsFile)) return;
  try {
    const res = migrateFlowsFileSync(flowsFile);
    if (res.changed) say(`moved ${relative(root, flowsFile)} to the toolmesh-* node types (${res.changed} nodes, ids kept; the old file is ${relative(root, res.backup!)})`);
    for (const h of res.settingsHints) say(`note: ${h}: rename the permission in adminAuth`);
  } catch (e) {
    say(`note: could not move ${relative(root, flowsFile)} to the new node types: ${(e as Error).message}`);
  }
}

/** Dashboard 2.0, which the dashboard example and agent need in the demo's Node-RED. */
export const DASHBOARD_MODULE = '@flowfuse/node-red-dashboard';

/**
 * Installs `target` in `<userDir>/node_modules/<name>` as a symlink (replacing a link that points
 * elsewhere; a real directory is left alone, with a note) and lists it in the userDir's
 * package.json as `file:<relative path>`, as npm would.
 */
function linkModule(userDir: string, name: string, target: string): void {
  const link = join(userDir, 'node_modules', name);
  mkdirSync(dirname(link), { recursive: true });
  let stat;
  try { stat = lstatSync(link); } catch { stat = undefined; }
  if (stat?.isSymbolicLink() && resolve(dirname(link), readlinkSync(link)) !== target) {
    unlinkSync(link);
    stat = undefined;
  }
  if (!stat) symlinkSync(relative(dirname(link), target), link, 'dir');
  else if (!stat.isSymbolicLink()) say(`${link} is a real directory, not a link to ${target}: Node-RED loads that copy`);

  const pkgFile = join(userDir, 'package.json');
  let pkg: { dependencies?: Record<string, string>; [k: string]: unknown } = {
    name: 'toolmesh-demo', version: '0.0.0', private: true,
    description: 'Node-RED user directory of the ToolMesh demo (npm start)',
  };
  if (existsSync(pkgFile)) pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const spec = `file:${relative(userDir, target) || '.'}`;
  if (pkg.dependencies?.[name] !== spec) {
    pkg.dependencies = { ...pkg.dependencies, [name]: spec };
    writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  }
}

/**
 * The example flows in `<root>/flows` (else the built `examples/`) as one flow file: the Docker
 * example's tab first, then the others by file name; config nodes shared by several examples (the
 * registry `tm-registry`) appear once. Embedded brokers are moved to `mqttPort`.
 */
export function allExamples(root: string, mqttPort: number): FlowNode[] {
  let dir = join(root, 'flows');
  if (!existsSync(dir)) dir = join(root, 'examples');
  const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort((a, b) => Number(b === EXAMPLE_FLOW) - Number(a === EXAMPLE_FLOW) || a.localeCompare(b));
  const byId = new Map<string, FlowNode>();
  for (const file of files) {
    for (const node of JSON.parse(readFileSync(join(dir, file), 'utf8')) as FlowNode[]) {
      const kept = byId.get(node.id);
      if (!kept) byId.set(node.id, node);
      else if (kept.type === 'toolmesh-tool-registry' && node.type === 'toolmesh-tool-registry') {
        mergeMcpServers(kept, node);
        if (!sameBut(kept, node, 'mcpServers')) say(`note: ${file} has registry ${node.id} as another example does, with other settings; the first one's are kept (its MCP servers are added)`);
      } else if (JSON.stringify(kept) !== JSON.stringify(node)) say(`note: ${file} has node ${node.id} as another example does, differently; the first one is kept`);
    }
  }
  return patchDemoFlow([...byId.values()], mqttPort);
}

/**
 * `nodes` without what needs Dashboard 2.0 (`ui-*` node types): every `ui-*` node and every node of
 * a tab that holds one. Node-RED starts no flow at all while a type is missing, so without the
 * dashboard the chat example is left out rather than stopping every other example.
 */
export function withoutDashboardFlows(nodes: FlowNode[]): FlowNode[] {
  const isUi = (n: FlowNode) => typeof n.type === 'string' && n.type.startsWith('ui-');
  const tabs = new Set(nodes.filter((n) => isUi(n) && typeof n.z === 'string').map((n) => n.z as string));
  return nodes.filter((n) => !isUi(n) && !tabs.has(n.id) && !(typeof n.z === 'string' && tabs.has(n.z)));
}

/** True when `a` and `b` differ at most in `key`. */
function sameBut(a: FlowNode, b: FlowNode, key: string): boolean {
  // a field one example leaves out is the node's default: only values both set can differ
  return Object.keys(a).every((k) => k === key || !(k in b) || JSON.stringify(a[k]) === JSON.stringify(b[k]));
}

/**
 * The examples share one registry (`tm-registry`); one that mounts MCP servers (the MCP
 * filesystem example) adds them to it, so every example keeps working as one set of tabs.
 */
function mergeMcpServers(kept: FlowNode, other: FlowNode): void {
  const list = (n: FlowNode) => (Array.isArray(n.mcpServers) ? n.mcpServers as Array<{ name?: unknown }> : []);
  const have = new Set(list(kept).map((m) => m.name));
  kept.mcpServers = [...list(kept), ...list(other).filter((m) => !have.has(m.name))];
}

/**
 * `patchFlow` with broker authentication on (`requireAuth`; the users come with the credentials,
 * broker-users.ts), plus core mqtt-broker nodes that point at the examples' broker
 * (127.0.0.1:1883) moved to `mqttPort`.
 */
function patchDemoFlow(flow: FlowNode[], mqttPort: number): FlowNode[] {
  return patchFlow(flow, mqttPort).map((n) => {
    if (n.type === 'toolmesh-tool-registry' && (n.mode ?? 'embedded') === 'embedded' && !n.brokerNode) return { ...n, requireAuth: true };
    return n.type === 'mqtt-broker' && /^(127\.0\.0\.1|localhost)$/.test(String(n.broker ?? '')) && Number(n.port ?? 1883) === DEFAULTS.mqttPort
      ? { ...n, port: String(mqttPort) }
      : n;
  });
}

/**
 * Makes `<userDir>` look like a Node-RED user directory with this pack (and `modules`, names of
 * packages in the repository's node_modules) installed; writes settings.js unless present, and on
 * the first run `examples` ({@link allExamples}) as the user's flows.json. Returns true on that first run.
 */
export function prepareUserDir(root: string, userDir: string, opts: DemoOptions, examples: FlowNode[], modules: string[] = []): boolean {
  mkdirSync(join(userDir, 'node_modules'), { recursive: true });
  migrateUserDir(root, userDir);
  linkModule(userDir, PACKAGE, root);
  for (const name of modules) linkModule(userDir, name, join(root, 'node_modules', name));

  const settingsFile = join(userDir, 'settings.js');
  if (!existsSync(settingsFile)) {
    const secret = randomBytes(24).toString('hex');
    writeFileSync(settingsFile, `/**
 * Node-RED settings of the ToolMesh demo, written by its first run (npm start); the demo never
 * overwrites this file. On every start the demo passes the editor's address and port on the
 * command line (TOOLMESH_UI_HOST, TOOLMESH_UI_PORT), and adminAuth (user admin) when
 * TOOLMESH_ADMIN_PASSWORD is set; the values below apply when you run Node-RED by hand:
 *   node node_modules/node-red/red.js --userDir .toolmesh-demo
 */
module.exports = {
    uiHost: ${JSON.stringify(DEFAULTS.uiHost)},
    uiPort: ${DEFAULTS.uiPort},
    flowFile: "flows.json",
    // Encrypts flows_cred.json (API keys, broker passwords). Generated once; keep it with the flows.
    credentialSecret: ${JSON.stringify(secret)},
    // No telemetry question over the flows on the first visit and no update checks (Node-RED asks
    // while telemetry.enabled is unset), and no "welcome to 4.1" tour.
    telemetry: { enabled: false, updateNotification: false },
    editorTheme: { tours: false },
    logging: {
        console: { level: "info", metrics: false, audit: false }
    }
};
`, { mode: 0o600 });
    say(`wrote ${relative(root, settingsFile)} (credentialSecret generated)`);
  }

  const flowsFile = join(userDir, 'flows.json');
  if (existsSync(flowsFile)) {
    // later runs keep the user's flows; warn when their broker port is not the one the agent will use
    try {
      const flows = JSON.parse(readFileSync(flowsFile, 'utf8')) as FlowNode[];
      const ports = flows.filter((n) => n.type === 'toolmesh-tool-registry' && (n.mode ?? 'embedded') === 'embedded' && !n.brokerNode).map((n) => Number(n.port ?? 1883));
      const tabs = new Set(flows.filter((n) => n.type === 'tab').map((n) => n.id));
      const missing = examples.filter((n) => n.type === 'tab' && !tabs.has(n.id)).map((n) => String(n.label ?? n.id));
      if (missing.length) {
        say(`note: ${relative(root, flowsFile)} (from an earlier run) lacks the example tabs ${missing.map((l) => `"${l}"`).join(', ')}: `
          + `import them with Menu > Import > Examples > ${PACKAGE}, or delete ${relative(root, flowsFile)} to start again from all examples`);
      }
      if (ports.length && !ports.includes(opts.mqttPort)) {
        say(`note: the tool-registry in ${relative(root, flowsFile)} runs its broker on port ${ports.join(', ')}, but `
          + `TOOLMESH_MQTT_PORT is ${opts.mqttPort}; the agent connects to ${opts.mqttPort}. Change one of them `
          + `(or delete ${relative(root, flowsFile)} to start again from the examples).`);
      }
    } catch { /* Node-RED reports a broken flow file itself */ }
    return false;
  }
  writeFileSync(flowsFile, `${JSON.stringify(examples, null, 4)}\n`);
  say(`first run: installed every example flow (${examples.filter((n) => n.type === 'tab').length} tabs) as ${relative(root, flowsFile)}`);
  return true;
}

/** Writes (or removes) the -D settings file with adminAuth; returns its path when written. */
export function writeAdminAuth(root: string, userDir: string, password: string | undefined): string | undefined {
  const file = join(userDir, '.admin-auth.json');
  if (!password) {
    rmSync(file, { force: true });
    return undefined;
  }
  const nodeRedDir = dirname(require.resolve('node-red/package.json', { paths: [root] }));
  let bcrypt: { hashSync(pw: string, rounds: number): string };
  try {
    // bcryptjs ships as a dependency of node-red (its adminAuth uses it); not one of ours
    bcrypt = require(require.resolve('bcryptjs', { paths: [nodeRedDir] }));
  } catch (e) {
    throw new DemoError(`TOOLMESH_ADMIN_PASSWORD needs bcryptjs, which Node-RED installs as its dependency, but it is not resolvable from ${nodeRedDir}: ${(e as Error).message}`);
  }
  const adminAuth = { type: 'credentials', users: [{ username: 'admin', password: bcrypt.hashSync(password, 10), permissions: '*' }] };
  writeFileSync(file, JSON.stringify({ adminAuth }), { mode: 0o600 });
  return file;
}

/** What the demo reads from `<userDir>/settings.js`. */
export interface DemoSettings {
  flowFile?: string;
  credentialSecret?: unknown;
  /** Node-RED's `telemetry` section (`enabled`, `updateNotification`), as the file has it. */
  telemetry?: { enabled?: unknown; updateNotification?: unknown };
  /** Node-RED's `editorTheme` section (`tours` among others), as the file has it. */
  editorTheme?: { tours?: unknown };
}

/**
 * `flowFile`, `credentialSecret`, `telemetry` and `editorTheme` from `<userDir>/settings.js`
 * (loaded as Node-RED loads it); empty when the file cannot be loaded (Node-RED then reports why).
 */
export function readSettings(userDir: string): DemoSettings {
  const section = (v: unknown) => (v && typeof v === 'object' ? v as Record<string, unknown> : undefined);
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const s = require(join(userDir, 'settings.js')) as Record<string, unknown>;
    return {
      flowFile: typeof s.flowFile === 'string' ? s.flowFile : undefined,
      credentialSecret: s.credentialSecret,
      telemetry: section(s.telemetry),
      editorTheme: section(s.editorTheme),
    };
  } catch {
    return {};
  }
}

/**
 * The `-D key=value` arguments that keep Node-RED's editor from opening on a question or a tour
 * when settings.js leaves the choice open (a file from an earlier demo release): `telemetry.enabled`
 * (the editor asks for consent while it is unset), `telemetry.updateNotification` and
 * `editorTheme.tours` (the "welcome to 4.1" tour), each `false`. A key the file sets is left to it.
 */
export function quietEditorDefines(settings: DemoSettings): string[] {
  const defines: string[] = [];
  if (settings.telemetry?.enabled === undefined) defines.push('telemetry.enabled=false');
  if (settings.telemetry?.updateNotification === undefined) defines.push('telemetry.updateNotification=false');
  if (settings.editorTheme?.tours === undefined) defines.push('editorTheme.tours=false');
  return defines.flatMap((d) => ['-D', d]);
}

/**
 * The arguments after `node` that start the demo's Node-RED: `red.js --userDir <userDir> --port
 * <port> -D uiHost=<host>`, the {@link quietEditorDefines} for `settings`, and `-D @<authFile>`
 * (adminAuth, {@link writeAdminAuth}) when given.
 */
export function nodeRedArgs(o: { redJs: string; userDir: string; port: number; host: string; settings: DemoSettings; authFile?: string }): string[] {
  const args = [o.redJs, '--userDir', o.userDir, '--port', String(o.port), '-D', `uiHost=${o.host}`, ...quietEditorDefines(o.settings)];
  if (o.authFile) args.push('-D', `@${o.authFile}`);
  return args;
}

/**
 * The live files the audit-log nodes in the user's flows (`<userDir>/<flowFile>`, default
 * flows.json) write, absolute and without repeats: a node's `file`, relative to `userDir`, or the
 * node's default `<userDir>/toolmesh-audit/audit.jsonl`. Empty when the flows cannot be read.
 */
export function flowAuditFiles(userDir: string, settings: DemoSettings): string[] {
  let flows: FlowNode[];
  try {
    flows = JSON.parse(readFileSync(join(userDir, settings.flowFile ?? 'flows.json'), 'utf8')) as FlowNode[];
  } catch {
    return [];
  }
  if (!Array.isArray(flows)) return [];
  return [...new Set(flows.filter((n) => n.type === 'toolmesh-audit-log').map((n) => readAuditLogConfig({ file: typeof n.file === 'string' ? n.file : '' }, userDir).file))];
}
