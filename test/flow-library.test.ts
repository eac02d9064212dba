// The pack is ready for the Node-RED flow library (issue 18, item 2): node-red-dev 0.1.6's package
// checks (P01-P08) and node checks (N01 unique type names, N02 examples) run on the packed tarball,
// as `node-red-dev validate` would, but offline: its network calls (the flow library catalogue and
// npm's node-red metadata) get test/fixtures/flow-library-catalogue.json instead. Any P or N warning
// fails. The dependency checks are not run (D02/D03 walk npm's dependency trees); D01 (at most 6
// dependencies, src/libs/checkdeps.js) is printed with the count, not failed.
//
// node-red-dev is loaded from the project's node_modules (devDependency node-red-dev@0.1.6), or
// from TOOLMESH_NODE_RED_DEV_DIR (its package folder). When it cannot be loaded the tests skip with
// the reason, and fail under CI=true.
import { execFileSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import Module, { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const REPO_ROOT = join(__dirname, '..');
const FIXTURE = JSON.parse(readFileSync(join(__dirname, 'fixtures/flow-library-catalogue.json'), 'utf8')) as {
  catalogue: { modules: { id: string; types: string[] }[] };
  npm: Record<string, unknown>;
};
/** node-red-dev's limit for D01 (src/libs/checkdeps.js: "Should have 6 or less dependencies"). */
const D01_MAX = 6;

/** node-red-dev's package folder, or the reason it cannot be used. */
function findNodeRedDev(): { dir: string } | { reason: string } {
  let dir: string | undefined;
  if (process.env.TOOLMESH_NODE_RED_DEV_DIR) dir = resolve(process.env.TOOLMESH_NODE_RED_DEV_DIR);
  else {
    try {
      dir = join(createRequire(join(REPO_ROOT, 'package.json')).resolve('node-red-dev/package.json'), '..');
    } catch {
      return { reason: 'node-red-dev is not installed (devDependency node-red-dev@0.1.6; or set TOOLMESH_NODE_RED_DEV_DIR to its folder)' };
    }
  }
  if (!existsSync(join(dir, 'src/libs/checknodes.js'))) return { reason: `${dir} has no src/libs/checknodes.js: not node-red-dev 0.1.x` };
  return { dir: realpathSync(dir) };
}
const found = findNodeRedDev();
if ('reason' in found && process.env.CI) throw new Error(`flow library checks: ${found.reason}`);
if ('reason' in found) console.warn(`skipping the flow library checks: ${found.reason}`);
const NRDEV = 'dir' in found ? found.dir : '';

/** The network answers node-red-dev asks for, from the fixture; anything else is refused and recorded. */
const unexpected: string[] = [];
const axiosStub = {
  get: async (url: string) => {
    if (url === 'https://catalogue.nodered.org/catalogue.json') return { data: structuredClone(FIXTURE.catalogue) };
    const npm = /^https:\/\/registry\.npmjs\.org\/(.+)$/.exec(url)?.[1];
    if (npm && FIXTURE.npm[npm]) return { data: structuredClone(FIXTURE.npm[npm]) };
    unexpected.push(url);
    throw new Error(`no network in this test: ${url}`);
  },
};
/** checkpackage.js opens a readline interface on stdin when loaded; it is never used by the checks. */
const readlineStub = { createInterface: () => ({ close() {}, on() {}, question() {} }) };

type Check = (path: string, cli: Cli, scorecard: Scorecard, npmMetadata: unknown) => Promise<Scorecard>;
type Scorecard = Record<string, { test: boolean; nodes?: string[]; [k: string]: unknown }>;
interface Cli { log(s: string): void; warn(s: string): void; error(e: unknown): never }

/** A cli like oclif's: log and warn collected, error throws. */
function recorder() {
  const logs: string[] = [];
  const warnings: string[] = [];
  const cli: Cli = {
    log: (s) => { logs.push(String(s)); },
    warn: (s) => { warnings.push(String(s)); },
    error: (e) => { throw e instanceof Error ? e : new Error(String(e)); },
  };
  return { cli, logs, warnings };
}

/** Runs one node-red-dev check on `dir`, with console.log (its "Unable to parse" note) collected too. */
async function run(check: Check, dir: string) {
  const r = recorder();
  const scorecard: Scorecard = {};
  const consoleLog = console.log;
  const printed: string[] = [];
  console.log = (...a: unknown[]) => { printed.push(a.join(' ')); };
  try {
    await check(dir, r.cli, scorecard, false);
  } finally {
    console.log = consoleLog;
  }
  return { ...r, scorecard, printed };
}

describe.skipIf(!NRDEV)('node-red-dev 0.1.6 package and node checks on the packed tarball (offline)', () => {
  let work: string;
  let pkgDir: string;
  let checkpackage: Check;
  let checknodes: Check;
  const load = (Module as unknown as { _load: (request: string, parent: { filename?: string } | undefined, isMain: boolean) => unknown });
  const originalLoad = load._load;

  beforeAll(() => {
    if (!existsSync(join(REPO_ROOT, 'dist/nodes/tool-registry/tool-registry.html'))) {
      throw new Error('dist/ is not built: run npm run build (npm test does) before this test');
    }
    load._load = function (request, parent, isMain) {
      if (parent?.filename?.startsWith(NRDEV)) {
        if (request === 'axios') return axiosStub;
        if (request === 'readline') return readlineStub;
      }
      return originalLoad.call(this, request, parent, isMain);
    };
    const req = createRequire(join(NRDEV, 'package.json'));
    checkpackage = req('./src/libs/checkpackage.js') as Check;
    checknodes = req('./src/libs/checknodes.js') as Check;

    work = mkdtempSync(join(tmpdir(), 'toolmesh-flow-library-'));
    const packed = JSON.parse(execFileSync('npm', ['pack', '--json', '--pack-destination', work], { cwd: REPO_ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })) as Array<{ filename: string }>;
    execFileSync('tar', ['-xzf', join(work, packed[0].filename), '-C', work]);
    pkgDir = join(work, 'package');
  }, 120_000);

  afterAll(() => {
    load._load = originalLoad;
    if (work) rmSync(work, { recursive: true, force: true });
  });

  it('package checks P01-P08: no warning, every check passed; D01 printed with the count', async () => {
    const { warnings, scorecard, logs } = await run(checkpackage, pkgDir);
    console.log(['node-red-dev checkpackage:', ...logs].join('\n  '));
    expect(unexpected, 'requests the fixture does not answer').toEqual([]);
    expect(warnings, 'P warnings').toEqual([]);
    const p = Object.entries(scorecard).filter(([k]) => /^P\d\d$/.test(k));
    expect(p.map(([k]) => k).sort()).toEqual(['P01', 'P03', 'P04', 'P05', 'P06', 'P07', 'P08']);
    expect(p.filter(([, v]) => !v.test).map(([k]) => k), 'failed P checks').toEqual([]);
    expect(scorecard.package).toMatchObject({ name: '@toolmesh/node-red-toolmesh' });

    const deps = Object.keys((JSON.parse(readFileSync(join(pkgDir, 'package.json'), 'utf8')) as { dependencies?: object }).dependencies ?? {});
    console.log(`D01 (not failed here): ${deps.length} dependencies, node-red-dev's limit is ${D01_MAX}${deps.length > D01_MAX ? ` (${deps.length - D01_MAX} over)` : ''}: ${deps.join(', ')}`);
  });

  it('node checks N01 (no type another module registers) and N02 (an example for every node): no warning', async () => {
    const { warnings, scorecard, printed, logs } = await run(checknodes, pkgDir);
    console.log(['node-red-dev checknodes:', ...logs].join('\n  '));
    expect(printed.filter((l) => /Unable to parse/.test(l)), 'editor .html files node-red-dev could not read (their types would go unchecked)').toEqual([]);
    expect(unexpected).toEqual([]);
    expect(warnings, 'N warnings').toEqual([]);
    expect(scorecard.N01).toEqual({ test: true });
    expect(scorecard.N02.test).toBe(true);
    // N02 lists the non-config types it found in the examples: proof that every editor file was parsed
    expect([...scorecard.N02.nodes!].sort()).toEqual(['toolmesh-audit-log', 'toolmesh-confirm-gate', 'toolmesh-llm-agent', 'toolmesh-remote-tool', 'toolmesh-tool-in', 'toolmesh-tool-out']);
  });

  it('the same checks fail the pack as it was: unscoped, no repository (P03, P04); unprefixed types (N01)', async () => {
    const old = join(work, 'old');
    cpSync(pkgDir, old, { recursive: true });
    const pkgFile = join(old, 'package.json');
    const pkg = JSON.parse(readFileSync(pkgFile, 'utf8'));
    const { repository: _r, bugs: _b, ...rest } = { ...pkg, name: 'node-red-contrib-toolmesh' };
    writeFileSync(pkgFile, JSON.stringify(rest));
    const htmls: string[] = [];
    const walk = (d: string) => {
      for (const e of readdirSync(d)) {
        const f = join(d, e);
        if (statSync(f).isDirectory()) walk(f);
        else if (f.endsWith('.html')) htmls.push(f);
      }
    };
    walk(join(old, 'dist/nodes'));
    for (const f of htmls) writeFileSync(f, readFileSync(f, 'utf8').replace(/registerType\('toolmesh-(?!sidebar)/g, "registerType('"));
    mkdirSync(join(old, 'examples'), { recursive: true });

    const p = await run(checkpackage, old);
    expect(p.warnings.some((w) => w.startsWith('P03'))).toBe(true);
    expect(p.warnings.some((w) => w.startsWith('P04'))).toBe(true);
    // the catalogue check leaves out the module's own entry (by id), so the new name with the old types
    writeFileSync(pkgFile, JSON.stringify(pkg));
    const n = await run(checknodes, old);
    expect(n.scorecard.N01.test).toBe(false);
    expect(n.warnings).toContain('Duplicate nodename audit-log found in package node-red-contrib-toolmesh');
    expect(n.warnings.filter((w) => w.startsWith('Duplicate nodename'))).toHaveLength(7);
    expect(n.scorecard.N01.nodes).toEqual(['node-red-contrib-toolmesh']);
  });
});
