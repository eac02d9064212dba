/**
 * node-red-node-test-helper, initialised on the installed Node-RED, and Node-RED's core node
 * modules (inject, debug, link ...) for flows that use them. The helper ships no types.
 */
import { NODE_RED_MAIN, coreNodePath } from './node-red-path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

/** A core node module by its path under `@node-red/nodes/core`, e.g. `common/60-link.js`. */
export function coreNode(file: string): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(coreNodePath(file));
}
