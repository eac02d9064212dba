// Shared by the benches that load the built pack into a Node-RED runtime: where the repository
// and its build are, a require() for them, node-red-node-test-helper started on the Node-RED that
// TOOLMESH_NODE_RED_DIR names (default: this repository's own node_modules), and percentiles.
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository root. */
export const root = join(dirname(fileURLToPath(import.meta.url)), '..');
/** The build the bench measures: TOOLMESH_DIST, else `<root>/dist`. */
export const dist = resolve(process.env.TOOLMESH_DIST ?? join(root, 'dist'));
/** require() from the repository (its node_modules). */
export const require = createRequire(join(root, 'package.json'));
/** A module of the build, e.g. `fromDist('nodes/llm-agent/llm-agent.js')`. */
export const fromDist = (path) => require(join(dist, path));

/** node-red-node-test-helper, initialised with the Node-RED of TOOLMESH_NODE_RED_DIR (default: the repository's). */
export function nodeRedHelper() {
  const helper = require('node-red-node-test-helper');
  helper.init(require.resolve('node-red', { paths: [resolve(process.env.TOOLMESH_NODE_RED_DIR ?? root)] }));
  return helper;
}

/** The `p`th percentile (0–100) of the numbers `a`, unsorted (nearest rank). */
export const pct = (a, p) => [...a].sort((x, y) => x - y)[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
