#!/usr/bin/env node
// Writes a Mosquitto 2 ACL file (acl_file) with the ToolMesh topic rules (docs/protocol.md,
// "Authentication"); the header of its output explains how the rules map onto mosquitto.
//
//   node scripts/mosquitto/make-acl.mjs --callers nodered-x,dash --admins ops [--agents pi,robot]
//                                       [--gates nodered-x] [--root toolmesh/v1] [--out toolmesh.acl]
//
// Without --out it prints the file. Exits with status 2 and a message on a bad argument.
import { writeFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

const ID = /^[A-Za-z0-9_-]{1,64}$/;

const HEADER = `# ToolMesh ACL for Mosquitto 2 (acl_file), written by scripts/mosquitto/make-acl.mjs:
#   node scripts/mosquitto/make-acl.mjs --callers <ids> --admins <ids> [--agents <ids>] [--gates <ids>] [--root <root>] [--out <file>]
# Regenerate it when callers or admins change; mosquitto re-reads it on SIGHUP.
#
# The rules; the MQTT username is the agent id or caller id:
# - an agent may publish only agents/{self}/status, agents/{self}/catalog and
#   agents/{self}/rpc/+/res, and read only agents/{self}/rpc/+/req and callers/+/status;
# - a caller may publish only agents/+/rpc/{self}/req and callers/{self}/status, and read only
#   agents/+/status, agents/+/catalog and agents/+/rpc/{self}/res;
# - a caller may also ask a confirm-gate for approval: publish approvals/{self}/req and read
#   approvals/{self}/res (docs/protocol.md, "Approval requests from other callers");
# - a caller listed in --gates (the caller id of a Node-RED whose confirm-gates hold other
#   callers' requests) may also read approvals/+/req and publish approvals/+/res;
# - an admin may do anything.
#
# How they map onto mosquitto. A "pattern" line applies to EVERY user (%u is the username), so
# patterns cannot tell an agent from a caller. The role with the fewest rights, agent, is given by
# pattern: every user of the password file that is not listed below as a caller or admin is an
# agent and can touch only its own agent topics. Callers and admins get "user" blocks. A caller's
# block first denies what the agent patterns would also give it (the topics of an agent with the
# caller's id, and other callers' status; mosquitto checks a user's "deny" lines before anything
# else), then grants the caller's rights.
# Consequences:
# - a caller missing from this file has agent rights only: it cannot call anything (fails closed);
# - an id has one role: one password-file entry, listed here at most once;
# - a caller may also read its own caller status (the agents' callers/+/status pattern);
# - mosquitto accepts every SUBSCRIBE and checks "read" per message on delivery, so a
#   subscription to "#" succeeds but delivers only what the user may read;
# - a refused PUBLISH is acknowledged and dropped (MQTT 3.1.1 has no way to say no); a will on
#   a topic the user may not write is accepted at CONNECT but never sent;
# - unlike the embedded broker, mosquitto cannot refuse a retained request or result;
# - usernames must be ToolMesh ids (letters, digits, _ and -): a "/" in a name would add levels
#   to the patterns.
`;

/** Thrown for a bad argument; the CLI prints the message and exits with status 2. */
export class AclArgumentError extends Error {}

function ids(list, option) {
  const out = (list ?? '').split(',').map((s) => s.trim()).filter(Boolean);
  for (const id of out) {
    if (!ID.test(id)) throw new AclArgumentError(`${option}: ${JSON.stringify(id)} is not a ToolMesh id (1–64 letters, digits, _ or -)`);
  }
  return out;
}

/**
 * The ACL file text.
 * @param {{ callers?: string, admins?: string, agents?: string, root?: string }} opts comma-separated ids, and the topic root (default toolmesh/v1)
 * @returns {string}
 * @throws {AclArgumentError} on an invalid id or root, or an id listed twice
 */
export function makeAcl(opts) {
  const root = opts.root ?? 'toolmesh/v1';
  if (!root || /[+#]/.test(root) || root.startsWith('/') || root.endsWith('/')) {
    throw new AclArgumentError(`--root: ${JSON.stringify(root)} must be a topic without wildcards or leading/trailing "/", e.g. toolmesh/v1`);
  }
  const callers = ids(opts.callers, '--callers');
  const admins = ids(opts.admins, '--admins');
  const agents = ids(opts.agents, '--agents');
  const gates = ids(opts.gates, '--gates');
  for (const g of gates) {
    if (!callers.includes(g)) throw new AclArgumentError(`--gates: ${g} must be listed in --callers too (a gate is a caller with more rights)`);
  }
  const seen = new Set();
  for (const id of [...callers, ...admins, ...agents]) {
    if (seen.has(id)) throw new AclArgumentError(`${id} is listed twice: an id has one role`);
    seen.add(id);
  }
  const lines = [HEADER];
  const list = (xs) => xs.join(',') || '(none)';
  lines.push(`# Written for: --root ${root} --callers ${list(callers)} --admins ${list(admins)} --agents ${list(agents)} --gates ${list(gates)}`);
  lines.push('# (agents are listed only to check that no id has two roles; they need no lines)');
  lines.push('');
  lines.push('# Agents: every user not listed below, by pattern.');
  lines.push(`pattern write ${root}/agents/%u/status`);
  lines.push(`pattern write ${root}/agents/%u/catalog`);
  lines.push(`pattern write ${root}/agents/%u/rpc/+/res`);
  lines.push(`pattern read ${root}/agents/%u/rpc/+/req`);
  lines.push(`pattern read ${root}/callers/+/status`);
  for (const c of callers) {
    lines.push('', `# Caller ${c}`, `user ${c}`);
    lines.push(`topic deny ${root}/agents/${c}/#`);
    for (const other of callers) if (other !== c) lines.push(`topic deny ${root}/callers/${other}/status`);
    lines.push(`topic write ${root}/agents/+/rpc/${c}/req`);
    lines.push(`topic write ${root}/callers/${c}/status`);
    lines.push(`topic read ${root}/agents/+/status`);
    lines.push(`topic read ${root}/agents/+/catalog`);
    lines.push(`topic read ${root}/agents/+/rpc/${c}/res`);
    lines.push(`topic write ${root}/approvals/${c}/req`);
    lines.push(`topic read ${root}/approvals/${c}/res`);
    if (gates.includes(c)) {
      lines.push(`# ${c} is a gate: it reads and answers every caller's approval requests`);
      lines.push(`topic read ${root}/approvals/+/req`);
      lines.push(`topic write ${root}/approvals/+/res`);
    }
  }
  for (const a of admins) {
    lines.push('', `# Admin ${a}`, `user ${a}`, 'topic readwrite #', 'topic read $SYS/#');
  }
  return lines.join('\n') + '\n';
}

function main() {
  const { values } = parseArgs({
    options: {
      callers: { type: 'string' }, admins: { type: 'string' }, agents: { type: 'string' }, gates: { type: 'string' },
      root: { type: 'string' }, out: { type: 'string' }, help: { type: 'boolean' },
    },
  });
  if (values.help) {
    process.stdout.write('usage: make-acl.mjs --callers <ids> --admins <ids> [--agents <ids>] [--gates <ids>] [--root toolmesh/v1] [--out <file>]\n');
    return;
  }
  const acl = makeAcl(values);
  if (values.out) writeFileSync(values.out, acl);
  else process.stdout.write(acl);
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  try {
    main();
  } catch (e) {
    if (!(e instanceof AclArgumentError) && e?.code !== 'ERR_PARSE_ARGS_UNKNOWN_OPTION') throw e;
    process.stderr.write(`make-acl: ${e.message}\n`);
    process.exit(2);
  }
}
