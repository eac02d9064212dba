#!/usr/bin/env node
// Build: first the agent package (packages/agent: protocol/ and agent/ compiled to
// packages/agent/dist/{protocol,agent} with .d.ts files; `--agent-only` stops there), then the node
// pack (nodes/, mcp/, scripts/ to dist/, importing @toolmesh/agent by name), then put each
// node's editor .html, locales and icons beside its .js (where Node-RED's loader looks for
// them), and the example flows in examples/ at the package root (the only place Node-RED reads
// them from).
import { execFileSync } from 'node:child_process';
import { chmodSync, cpSync, existsSync, mkdirSync, readdirSync, rmSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const tsc = join(root, 'node_modules/typescript/bin/tsc');
const agent = join(root, 'packages/agent');
rmSync(join(agent, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(agent, 'tsconfig.json')], { stdio: 'inherit' });
for (const bin of ['dist/agent/cli.js', 'dist/agent/toolmesh.js']) chmodSync(join(agent, bin), 0o755); // bins run through their shebangs
// the example configs and the systemd unit ship in the agent package (deploy/README.md copies them from there)
rmSync(join(agent, 'configs'), { recursive: true, force: true });
cpSync(join(root, 'configs'), join(agent, 'configs'), { recursive: true });
mkdirSync(join(agent, 'deploy'), { recursive: true });
cpSync(join(root, 'deploy/toolmesh-agent.service'), join(agent, 'deploy/toolmesh-agent.service'));
if (process.argv.includes('--agent-only')) {
  console.log('build: packages/agent/dist/ written');
  process.exit(0);
}

rmSync(join(root, 'dist'), { recursive: true, force: true });
execFileSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.build.json')], { stdio: 'inherit' });
chmodSync(join(root, 'dist/nodes/cli.js'), 0o755);

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
console.log('build: packages/agent/dist/, dist/ and examples/ written');
