// A start that fails half-way closes what it opened (issue 9, item 7): the real runtime with a
// config whose first pack (gstreamer, real gst-launch) is created and whose second pack
// (dashboard) throws in create. The gstreamer pack hooks process 'exit' to kill its pipelines and
// unhooks it in close(), so the listener count shows whether its close ran; the audit log's file
// handle shows in /proc/self/fd while it is open.
import { mkdtempSync, readdirSync, readlinkSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent } from '../agent/runtime';
import { verifyChain } from '../protocol/audit';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-durability-start-'));
const auditFile = join(dir, 'halfpi-audit.jsonl');
const lines: string[] = [];
const log = { info: (m: string) => lines.push(`info: ${m}`), warn: (m: string) => lines.push(`warn: ${m}`), error: (m: string) => lines.push(`error: ${m}`) };
let broker: EmbeddedBroker;

beforeAll(async () => { broker = await startBroker({ port: 0 }); });
afterAll(async () => {
  await broker?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** Paths this process holds open that lie under `prefix` (Linux: /proc/self/fd). */
function openUnder(prefix: string): string[] {
  const out: string[] = [];
  for (const fd of readdirSync('/proc/self/fd')) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(prefix)) out.push(target);
    } catch { /* closed meanwhile */ }
  }
  return out;
}

function config(packs: Record<string, unknown>) {
  return validateConfig({ version: 1, agent: { id: 'halfpi' }, broker: { url: broker.url }, packs, audit: { file: auditFile } }, 'halfpi.yaml', dir);
}

describe('startAgent when a later pack fails to create', () => {
  it('the gstreamer pack hooks process exit while open and unhooks it on close (the measure used below)', async () => {
    const before = process.listenerCount('exit');
    const agent = await startAgent(config({ gstreamer: {} }), log);
    expect(agent.packs, lines.join('\n')).toEqual(['gstreamer']);
    expect(process.listenerCount('exit')).toBe(before + 1);
    expect(openUnder(auditFile)).toEqual([auditFile]);
    await agent.stop();
    expect(process.listenerCount('exit')).toBe(before);
    expect(openUnder(auditFile)).toEqual([]);
  });

  it('closes the packs created before it and the audit log, then passes the error on', async () => {
    const before = process.listenerCount('exit');
    lines.length = 0;
    // an http URL the schema takes but URL() does not: the dashboard pack's create throws
    const start = startAgent(config({ gstreamer: {}, dashboard: { url: 'http://[::1' } }), log);
    await expect(start).rejects.toThrow(/Invalid URL/);
    expect(process.listenerCount('exit'), 'the gstreamer pack was not closed').toBe(before);
    expect(openUnder(auditFile), 'the audit log was left open').toEqual([]);
    expect(lines.filter((l) => l.startsWith('error:'))).toEqual([]);
    // the log is whole and can be continued by the next start
    expect(verifyChain([auditFile])).toMatchObject({ ok: true });
    const agent = await startAgent(config({ diag: {} }), log);
    await agent.stop();
    expect(openUnder(auditFile)).toEqual([]);
  });
});
