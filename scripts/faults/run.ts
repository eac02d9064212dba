/**
 * `npm run faults`: the fault suite. Runs every scenario of scripts/faults/scenarios.ts against
 * real processes (the built `toolmesh-agent`, Debian's mosquitto, Node-RED with this pack), prints
 * one Markdown table row per scenario with its measured figures, then the notes, and exits 1
 * when any scenario missed a target (so CI fails on a regression), 0 otherwise.
 *
 * `node dist/scripts/faults/run.js [id ...]` runs only the scenarios named (e.g. `a c g`).
 * Environment: FAULTS_SEED (fuzz seed, default 9), FAULTS_FUZZ_COUNT (default 10 000).
 * Progress goes to stderr, the table to stdout.
 */
import { execFileSync } from 'node:child_process';
import { REPO_ROOT, killEverything, say } from './lib';
import { SCENARIOS, runScenario, type Row } from './scenarios';

/** Longest a scenario may take before it counts as a miss, ms. */
const SCENARIO_LIMIT_MS = 120_000;

const cell = (v: string | number | undefined) => (v === undefined ? '-' : String(v).replace(/\|/g, '\\|'));

/** The table and the notes, as Markdown. */
export function renderTable(rows: Row[]): string {
  const head = ['', 'scenario', 'AGENT_OFFLINE after', 'delivered', 'duplicate executions', 'hangs', 'back online after', 'RSS before → after (MB)', 'alive', 'result'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`];
  for (const r of rows) {
    lines.push(`| ${[r.id, r.scenario, r.offline, r.delivered, r.duplicates, r.hangs, r.backOnline, r.rss, r.alive, r.misses.length ? `**MISS**: ${r.misses.join('; ')}` : 'pass'].map(cell).join(' | ')} |`);
  }
  lines.push('', 'Notes:');
  for (const r of rows) lines.push(`- ${r.id}: ${r.notes.join('; ')}`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const wanted = process.argv.slice(2);
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.id === w));
  if (unknown.length) {
    console.error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(' ')}`);
    return 2;
  }
  const chosen = wanted.length ? SCENARIOS.filter((s) => wanted.includes(s.id)) : SCENARIOS;
  let commit = '?';
  try {
    commit = execFileSync('git', ['-C', REPO_ROOT, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const started = Date.now();
  const rows: Row[] = [];
  for (const s of chosen) rows.push(await runScenario(s, SCENARIO_LIMIT_MS));
  const failed = rows.filter((r) => r.misses.length);
  console.log(`\n## Fault suite (${new Date().toISOString()}, commit ${commit}, ${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  console.log(renderTable(rows));
  console.log(`\n${failed.length ? `${failed.length} of ${rows.length} scenarios missed a target: ${failed.map((r) => r.id).join(', ')}` : `all ${rows.length} scenarios met their targets`}`);
  return failed.length ? 1 : 0;
}

main().then((code) => {
  killEverything();
  process.exit(code);
}, (e: Error) => {
  say(`fault suite failed: ${e.stack ?? e.message}`);
  killEverything();
  process.exit(1);
});
