/** The demo's Node-RED user directory (`.toolmesh-demo/`): this pack installed, settings, flows, adminAuth. */
import { randomBytes } from 'node:crypto';
import {
  existsSync, lstatSync, mkdirSync, readFileSync, readlinkSync, rmSync, symlinkSync, unlinkSync, writeFileSync,
} from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import {
  DEFAULTS, DemoError, EXAMPLE_FLOW, PACKAGE, patchFlow, type DemoOptions, type FlowNode,
} from './options';
import { say } from './processes';

/**
 * Makes `<userDir>` look like a Node-RED user directory with this pack installed; writes
 * settings.js unless present. Returns true when flows.json had to be created (first run).
 */
export function prepareUserDir(root: string, userDir: string, opts: DemoOptions): boolean {
  const modules = join(userDir, 'node_modules');
  mkdirSync(modules, { recursive: true });

  const link = join(modules, PACKAGE);
  const target = relative(dirname(link), root);
  let stat;
  try { stat = lstatSync(link); } catch { stat = undefined; }
  if (stat?.isSymbolicLink() && resolve(dirname(link), readlinkSync(link)) !== root) {
    unlinkSync(link);
    stat = undefined;
  }
  if (!stat) symlinkSync(target, link, 'dir');
  else if (!stat.isSymbolicLink()) say(`${link} is a real directory, not a link to this repository: Node-RED loads that copy`);

  const pkgFile = join(userDir, 'package.json');
  let pkg: { dependencies?: Record<string, string>; [k: string]: unknown } = {
    name: 'toolmesh-demo', version: '0.0.0', private: true,
    description: 'Node-RED user directory of the ToolMesh demo (npm start)',
  };
  if (existsSync(pkgFile)) pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
  const spec = `file:${relative(userDir, root) || '.'}`;
  if (pkg.dependencies?.[PACKAGE] !== spec) {
    pkg.dependencies = { ...pkg.dependencies, [PACKAGE]: spec };
    writeFileSync(pkgFile, `${JSON.stringify(pkg, null, 2)}\n`);
  }

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
      const ports = flows.filter((n) => n.type === 'tool-registry' && (n.mode ?? 'embedded') === 'embedded').map((n) => Number(n.port ?? 1883));
      if (ports.length && !ports.includes(opts.mqttPort)) {
        say(`note: the tool-registry in ${relative(root, flowsFile)} runs its broker on port ${ports.join(', ')}, but `
          + `TOOLMESH_MQTT_PORT is ${opts.mqttPort}; the agent connects to ${opts.mqttPort}. Change one of them `
          + `(or delete ${relative(root, flowsFile)} to start again from the example).`);
      }
    } catch { /* Node-RED reports a broken flow file itself */ }
    return false;
  }
  let source = join(root, 'flows', EXAMPLE_FLOW);
  if (!existsSync(source)) source = join(root, 'examples', EXAMPLE_FLOW);
  const flow = patchFlow(JSON.parse(readFileSync(source, 'utf8')) as FlowNode[], opts.mqttPort);
  writeFileSync(flowsFile, `${JSON.stringify(flow, null, 4)}\n`);
  say(`first run: installed ${relative(root, source)} as ${relative(root, flowsFile)}`);
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
