// Preload hook for measuring which libraries a Node process has loaded (bench/agent-rss.mjs and
// test/agent-lazy-packs.test.ts use it). Load it with NODE_OPTIONS="--require <this file>" and
// set TOOLMESH_MODULES_OUT to a file path; on SIGUSR2 the process writes there one JSON object:
// { packages: string[] (names of the node_modules packages in require.cache, sorted, e.g.
// "dockerode", "@scope/name"), files: number (entries in require.cache), memory:
// process.memoryUsage() (bytes) }. Without
// TOOLMESH_MODULES_OUT the hook does nothing. It reads require.cache only; it loads nothing.
'use strict';
const out = process.env.TOOLMESH_MODULES_OUT;
if (out) {
  const { writeFileSync } = require('node:fs');
  process.on('SIGUSR2', () => {
    const files = Object.keys(require.cache);
    const packages = new Set();
    for (const f of files) {
      const at = f.lastIndexOf('/node_modules/');
      if (at < 0) continue;
      const parts = f.slice(at + '/node_modules/'.length).split('/');
      packages.add(parts[0].startsWith('@') ? `${parts[0]}/${parts[1]}` : parts[0]);
    }
    writeFileSync(out, JSON.stringify({ packages: [...packages].sort(), files: files.length, memory: process.memoryUsage() }));
  });
}
