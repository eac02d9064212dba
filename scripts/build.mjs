#!/usr/bin/env node
// Build: tsc to dist/, then put each node's editor .html, locales and icons beside its .js
// (where Node-RED's loader looks for them), and the example flows in examples/ at the package
// root (the only place Node-RED reads them from).
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [join(root, 'node_modules/typescript/bin/tsc'), '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
for (const bin of ['dist/agent/cli.js', 'dist/agent/toolmesh.js']) chmodSync(join(root, bin), 0o755); // bins run through their shebangs

for (const type of readdirSync(join(root, 'nodes'))) {
  const src = join(root, 'nodes', type);
  if (!statSync(src).isDirectory()) continue;
  const out = join(root, 'dist/nodes', type);
  mkdirSync(out, { recursive: true });
  for (const f of readdirSync(src)) {
    if (f.endsWith('.html')) cpSync(join(src, f), join(out, f));
    if (f === 'locales') cpSync(join(src, f), join(out, f), { recursive: true });
  }
  if (existsSync(join(root, 'icons'))) cpSync(join(root, 'icons'), join(out, 'icons'), { recursive: true });
}

rmSync(join(root, 'examples'), { recursive: true, force: true });
if (existsSync(join(root, 'flows'))) cpSync(join(root, 'flows'), join(root, 'examples'), { recursive: true });
console.log('build: dist/ and examples/ written');
