/**
 * `npm run redteam`: every item of the safety issue (issue 17) as an attack on real processes —
 * the built `toolmesh-agent`, a Node-RED with this pack (tool-in flows, confirm-gates, an
 * llm-agent, admin authentication), the registry's embedded broker with `requireAuth` and a user
 * list, the MCP bridge (`toolmesh mcp`) — one Markdown table row per scenario (what was tried,
 * what happened, what ran), then the notes. Exits 1 when any row shows something ran that should
 * not have or missed a target, 0 otherwise.
 *
 * `node dist/scripts/redteam/run.js [id ...]` runs only the scenarios named (e.g. `A G K`).
 * Progress goes to stderr, the table to stdout. Every process it starts is stopped by pid at exit.
 */
import { execFileSync } from 'node:child_process';
import { REPO_ROOT, killEverything, say, startWorld } from './lib';
import { RUN_ORDER, SCENARIOS, runScenario, type Row } from './scenarios';

/** Longest a scenario may take before it counts as a miss, ms. */
const SCENARIO_LIMIT_MS = 120_000;

const cell = (v: string | undefined) => (v === undefined || v === '' ? '-' : v.replace(/\|/g, '\\|').replace(/\n/g, ' '));

/** The table and the notes, as Markdown. */
export function renderTable(rows: Row[]): string {
  const head = ['', 'scenario', 'tried', 'happened', 'ran', 'result'];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map(() => ' --- ').join('|')}|`];
  for (const r of rows) {
    lines.push(`| ${[r.id, r.scenario, r.tried, r.happened, r.ran, r.misses.length ? `**MISS**: ${r.misses.join('; ')}` : 'pass'].map(cell).join(' | ')} |`);
  }
  lines.push('', 'Notes:');
  for (const r of rows) lines.push(`- ${r.id}: ${r.notes.join('; ')}`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const wanted = process.argv.slice(2).map((a) => a.toUpperCase());
  const unknown = wanted.filter((w) => !SCENARIOS.some((s) => s.id === w));
  if (unknown.length) {
    console.error(`unknown scenario ${unknown.join(', ')}; known: ${SCENARIOS.map((s) => s.id).join(' ')}`);
    return 2;
  }
  let commit = '?';
  try {
    commit = execFileSync('git', ['-C', REPO_ROOT, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).trim();
  } catch { /* not a git checkout */ }
  const started = Date.now();
  say('starting Node-RED, the agent and the MCP bridge');
  const world = await startWorld();
  say(`world up in ${((Date.now() - started) / 1000).toFixed(0)} s`);
  const rows: Row[] = [];
  try {
    for (const id of RUN_ORDER) {
      if (wanted.length && !wanted.includes(id)) continue;
      rows.push(await runScenario(SCENARIOS.find((s) => s.id === id)!, world, SCENARIO_LIMIT_MS));
    }
  } finally {
    await world.stop();
  }
  rows.sort((a, b) => SCENARIOS.findIndex((s) => s.id === a.id) - SCENARIOS.findIndex((s) => s.id === b.id));
  const failed = rows.filter((r) => r.misses.length);
  console.log(`\n## Red team (${new Date().toISOString()}, commit ${commit}, ${((Date.now() - started) / 1000).toFixed(0)} s)\n`);
  console.log(renderTable(rows));
  console.log(`\n${failed.length ? `${failed.length} of ${rows.length} scenarios missed: ${failed.map((r) => r.id).join(', ')}` : `all ${rows.length} scenarios held`}`);
  return failed.length ? 1 : 0;
}

main().then((code) => {
  killEverything();
  process.exit(code);
}, (e: Error) => {
  say(`red team failed: ${e.stack ?? e.message}`);
  killEverything();
  process.exit(1);
});
