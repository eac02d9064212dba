#!/usr/bin/env node
/**
 * `toolmesh`: operator commands of the agent package. `toolmesh mcp ...` (the MCP bridge) lives in
 * the Node-RED node pack (`toolmesh-node-red mcp`): it is forwarded there when that pack is
 * installed beside this one, else one line says where it lives (exit 2).
 * `toolmesh audit verify <file...>` checks an audit
 * log's hash chain (protocol/audit). Output: `ok: N records in M files, chain head <hash> matches
 * the anchor`, or `problem: <file>:<line> seq <seq>: <kind>: <what>`; a crash tail alone adds a
 * `warning:` line and is still ok. Exit codes: 0 intact, 1 a problem, 2 bad usage or a file that
 * cannot be read.
 */
import { existsSync, readFileSync } from 'node:fs';
import { verifyChain, type VerifyOptions, type VerifyProblem } from '../protocol/audit';

const USAGE = `usage: toolmesh audit verify [options] <file...>
       toolmesh mcp ...   (the MCP bridge, in the node pack: toolmesh-node-red mcp --help)

Checks an audit log (JSONL, from the audit-log node or the agent's audit: setting): each
record's hash, seq continuity, the links between records and across rotated files, and the
anchor (<live file>.anchor) that catches records removed from the end. Pass the live file and
its rotated files, in any order: toolmesh audit verify logs/audit-*.jsonl logs/audit.jsonl

  --anchor <file>           the anchor to check (default: beside the last file, or beside the
                            live file a rotated file came from)
  --no-anchor               check the chain alone (removal at the end then goes unnoticed)
  --anchor-key-file <file>  HMAC key the anchor was written with; its mac must match
  --json                    print the whole result as JSON
  -h, --help                this text

Exit codes: 0 intact (a torn last line from a crash alone is a warning), 1 a problem was
found, 2 bad usage or a file that cannot be read.`;

type Print = (line: string) => void;

function where(p: VerifyProblem): string {
  return `${p.file}:${p.line}${p.seq !== undefined ? ` seq ${p.seq}` : ''}`;
}

/** `toolmesh audit verify ...`; returns the exit code. */
function auditVerify(argv: string[], out: Print, err: Print): number {
  const files: string[] = [];
  const opts: VerifyOptions = {};
  let json = false;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--no-anchor') opts.anchor = false;
    else if (a === '--anchor' || a === '--anchor-key-file') {
      const v = argv[++i];
      if (v === undefined) { err(`${a} needs a file\n\n${USAGE}`); return 2; }
      if (a === '--anchor') opts.anchor = v;
      else {
        try {
          opts.anchorKey = readFileSync(v, 'utf8').trim();
        } catch (e) {
          err(`cannot read the key file ${v}: ${(e as Error).message}`);
          return 2;
        }
      }
    } else if (a === '--json') json = true;
    else if (a === '-h' || a === '--help') { out(USAGE); return 0; }
    else if (a.startsWith('-')) { err(`unknown option: ${a}\n\n${USAGE}`); return 2; }
    else files.push(a);
  }
  if (!files.length) { err(`no files given\n\n${USAGE}`); return 2; }
  const missing = files.filter((f) => !existsSync(f));
  if (missing.length) { err(`no such file: ${missing.join(', ')}`); return 2; }
  let r;
  try {
    r = verifyChain(files, opts);
  } catch (e) {
    err(`cannot read the log: ${(e as Error).message}`);
    return 2;
  }
  if (json) {
    out(JSON.stringify(r, null, 2));
    return r.ok ? 0 : 1;
  }
  if (!r.ok) {
    const p = r.firstProblem!;
    out(`problem: ${where(p)}: ${p.kind}: ${p.message}`);
    out(`(${r.records} records checked good before it, in ${r.files.length} file${r.files.length === 1 ? '' : 's'})`);
    return 1;
  }
  if (r.crashTail) out(`warning: ${where(r.crashTail)}: crash-tail: ${r.crashTail.message}`);
  const head = r.head?.hash ?? '(none)';
  const anchor = opts.anchor === false ? '; the anchor was not checked'
    : r.anchor?.lag === 1 ? '; the anchor is one record behind it (the writer stopped between an append and the anchor update)'
      : r.anchor ? ' matches the anchor'
        : '; no anchor yet (the log has at most one record)';
  out(`ok: ${r.records} records in ${r.files.length} file${r.files.length === 1 ? '' : 's'}, chain head ${head}${anchor}`);
  return 0;
}

/** Dispatches `toolmesh <command> ...`; returns the exit code. */
export function main(argv: string[], out: Print = (l) => console.log(l), err: Print = (l) => console.error(l)): number {
  const [group, command, ...rest] = argv;
  if (group === '-h' || group === '--help') { out(USAGE); return 0; }
  if (group === 'audit' && command === 'verify') return auditVerify(rest, out, err);
  err(group === undefined ? USAGE : `unknown command: ${[group, command].filter(Boolean).join(' ')}\n\n${USAGE}`);
  return 2;
}

/**
 * Package names of the Node-RED node pack, newest first (it was renamed for the flow library);
 * its CLI is `<name>/dist/nodes/cli.js` (nodes/cli.ts, `toolmesh-node-red`).
 */
export const NODE_PACK_NAMES: readonly string[] = ['@toolmesh/node-red-toolmesh', 'node-red-contrib-toolmesh'];

/** Where the node pack's CLI is, found from this file as Node's require would, or undefined. */
export function nodePackCli(paths?: string[]): string | undefined {
  for (const name of NODE_PACK_NAMES) {
    try {
      return require.resolve(`${name}/dist/nodes/cli.js`, paths ? { paths } : undefined);
    } catch { /* not installed under this name */ }
  }
  return undefined;
}

/** The line `toolmesh mcp` prints when the node pack is not installed beside the agent package. */
export const MCP_MOVED = `toolmesh mcp lives in the Node-RED node pack now: npm install -g ${NODE_PACK_NAMES[0]}, then run toolmesh-node-red mcp --help`;

if (require.main === module) {
  const argv = process.argv.slice(2);
  if (argv[0] === 'mcp') {
    const cli = nodePackCli();
    if (!cli) {
      console.error(MCP_MOVED);
      process.exitCode = 2;
    } else {
      // the MCP bridge runs until a signal or the end of its stdio session
      void (require(cli) as { run(argv: string[]): Promise<number> }).run(argv).then(
        (code) => process.exit(code),
        (e: Error) => { console.error(`toolmesh mcp: defect: ${e?.stack ?? e}`); process.exit(1); },
      );
    }
  } else {
    process.exitCode = main(argv);
  }
}
