#!/usr/bin/env node
/**
 * `toolmesh-node-red`: the node pack's operator commands, one subcommand each (a small table, so a
 * new one is one row). `toolmesh-node-red mcp ...` serves the mesh to MCP clients (mcp/cli.ts).
 * The agent package's `toolmesh mcp ...` forwards here when this pack is installed beside it.
 * Exit codes: those of the subcommand; 2 for an unknown one or none.
 */

type Print = (line: string) => void;

/** One subcommand: a one-line summary for the usage text and its runner (resolves to the exit code). */
interface Command {
  summary: string;
  run(argv: string[]): Promise<number>;
}

/** The subcommands, loaded only when run (the MCP bridge pulls in the MCP SDK and express). */
export const COMMANDS: Readonly<Record<string, Command>> = {
  mcp: {
    summary: 'mcp --broker mqtt://HOST:PORT [options]   serve the mesh to MCP clients (mcp --help)',
    run: (argv) => (require('../mcp/cli') as typeof import('../mcp/cli')).runMcp(argv),
  },
  'migrate-flows': {
    summary: 'migrate-flows [--dry-run] <flows.json>     rewrite node types of node-red-contrib-toolmesh (ids kept)',
    run: (argv) => (require('./migrate') as typeof import('./migrate')).runMigrate(argv),
  },
};

export const USAGE = `usage: ${Object.values(COMMANDS).map((c) => `toolmesh-node-red ${c.summary}`).join('\n       ')}`;

/** Dispatches `toolmesh-node-red <command> ...`; resolves to the exit code. */
export async function run(argv: string[], out: Print = (l) => console.log(l), err: Print = (l) => console.error(l)): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '-h' || name === '--help') { out(USAGE); return 0; }
  const command = name !== undefined && Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!command) {
    err(name === undefined ? USAGE : `unknown command: ${name}\n\n${USAGE}`);
    return 2;
  }
  return command.run(rest);
}

if (require.main === module) {
  // the MCP bridge runs until a signal or the end of its stdio session
  run(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e: Error) => { console.error(`toolmesh-node-red: defect: ${e?.stack ?? e}`); process.exit(1); },
  );
}
