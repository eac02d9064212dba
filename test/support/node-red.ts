/**
 * node-red-node-test-helper, initialised on the installed Node-RED, and Node-RED's core node
 * modules (inject, debug, link ...) for flows that use them. The helper ships no types.
 */
import { dirname, join } from 'node:path';

// eslint-disable-next-line @typescript-eslint/no-require-imports
export const helper = require('node-red-node-test-helper');
helper.init(require.resolve('node-red'));

const coreDir = join(dirname(require.resolve('@node-red/nodes/package.json', { paths: [dirname(require.resolve('node-red'))] })), 'core');

/** A core node module by its path under `@node-red/nodes/core`, e.g. `common/60-link.js`. */
export function coreNode(file: string): unknown {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(join(coreDir, file));
}
