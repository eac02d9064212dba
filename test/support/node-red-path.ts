/**
 * Which Node-RED the tests run against, and with which Node binary: the one place test support
 * resolves them, so the same node and end-to-end tests can run on Node-RED 4.1 (the repository's
 * devDependency) and on Node-RED 5 (a separate install, see README "The two commands").
 *
 * - `TOOLMESH_NODE_RED_DIR`: the directory whose `node_modules` holds `node-red` (default: the
 *   repository root). Resolution fails rather than fall back to another copy found further up.
 * - `TOOLMESH_NODE_BIN`: the Node binary that spawned Node-RED processes run with (default: the
 *   binary running the tests, `process.execPath`). Node-RED 5 needs Node 22.9 or later (its
 *   package.json `engines.node`).
 */
import { readFileSync } from 'node:fs';
import { dirname, join, relative, resolve, sep } from 'node:path';

const REPO_ROOT = resolve(__dirname, '../..');

/** The directory whose `node_modules` holds the `node-red` under test (absolute). */
export const NODE_RED_DIR = resolve(process.env.TOOLMESH_NODE_RED_DIR || REPO_ROOT);

/**
 * The Node binary for spawned Node-RED processes: an absolute path (a relative one is taken from
 * the working directory, since the processes start in their own userDir), or a name on PATH.
 */
export const NODE_BIN = ((bin) => (bin.includes('/') ? resolve(bin) : bin))(process.env.TOOLMESH_NODE_BIN || process.execPath);

function resolveInside(request: string): string {
  let found: string;
  try {
    found = require.resolve(request, { paths: [NODE_RED_DIR] });
  } catch {
    throw new Error(`${request} is not installed under ${NODE_RED_DIR}/node_modules (TOOLMESH_NODE_RED_DIR); run npm install there`);
  }
  const rel = relative(join(NODE_RED_DIR, 'node_modules'), found);
  if (rel.startsWith('..') || rel.startsWith(sep)) {
    throw new Error(`${request} resolved to ${found}, outside ${NODE_RED_DIR}/node_modules (TOOLMESH_NODE_RED_DIR); install node-red there`);
  }
  return found;
}

/** The `node-red` package folder under test. @throws Error when it is not installed in {@link NODE_RED_DIR}. */
export const NODE_RED_PACKAGE_DIR = dirname(resolveInside('node-red/package.json'));

/** node-red's main module, for `helper.init(NODE_RED_MAIN)` (node-red-node-test-helper). */
export const NODE_RED_MAIN = resolveInside('node-red');

/** node-red's launcher, `red.js`, as `node red.js --userDir <dir> --port <port>` starts it. */
export const NODE_RED_RED_JS = join(NODE_RED_PACKAGE_DIR, 'red.js');

/** The version of the `node-red` under test, e.g. `4.1.8` (its package.json). */
export const NODE_RED_VERSION = (JSON.parse(readFileSync(join(NODE_RED_PACKAGE_DIR, 'package.json'), 'utf8')) as { version: string }).version;

/** The `core` folder of the `@node-red/nodes` that this node-red depends on (inject, debug, change ...). */
export const NODE_RED_CORE_DIR = join(dirname(require.resolve('@node-red/nodes/package.json', { paths: [NODE_RED_PACKAGE_DIR] })), 'core');

/** A core node module's path by its place under `@node-red/nodes/core`, e.g. `function/15-change.js`. */
export function coreNodePath(file: string): string {
  return join(NODE_RED_CORE_DIR, file);
}

/**
 * A module that ships with this node-red (e.g. `bcryptjs`), resolved from its package folder.
 * @throws Error (MODULE_NOT_FOUND) when node-red does not depend on it.
 */
export function resolveFromNodeRed(request: string): string {
  return require.resolve(request, { paths: [NODE_RED_PACKAGE_DIR] });
}
