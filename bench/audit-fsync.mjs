#!/usr/bin/env node
// Audit log append rate: records/s with the default durability (write + fdatasync of the line,
// then the anchor: temp + fsync + rename + directory fsync) and with syncs off, on the file
// system of BENCH_AUDIT_DIR (default: the OS temp dir). Prints figures, asserts nothing.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const require = createRequire(import.meta.url);
const { AuditWriter, verifyChain, chainFiles } = require(join(root, 'packages/agent/dist/protocol/audit/index.js'));

const N = Number(process.env.BENCH_AUDIT_N ?? 2000);
const base = process.env.BENCH_AUDIT_DIR ?? tmpdir();

async function run(durable) {
  const dir = mkdtempSync(join(base, 'toolmesh-audit-bench-'));
  const file = join(dir, 'audit.jsonl');
  const w = await AuditWriter.open({ file, durable });
  const entry = { kind: 'tool-call', caller: 'nodered-1', agent: 'pi', tool: 'docker_list_containers', args: { all: true }, outcome: 'ok', durationMs: 12 };
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await w.append(entry);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await w.close();
  const v = verifyChain(chainFiles(file));
  rmSync(dir, { recursive: true, force: true });
  console.log(`audit append, ${durable ? 'durable (3 syncs per record)' : 'no syncs          '}: ${N} records in ${ms.toFixed(0)} ms = ${(N / (ms / 1000)).toFixed(0)} records/s, ${(ms / N).toFixed(3)} ms each; verify ${v.ok ? 'ok' : 'FAILED'}`);
}

console.log(`directory: ${base}`);
await run(true);
await run(false);
