// The audit-log node in a real Node-RED runtime (test helper): messages pass unchanged and in
// order, one record per message of each kind, credentials of the flow's nodes redacted, write
// failures reach Catch while the message still passes.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { closeSync, constants, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { signApproval } from '../../protocol';
import { chainFiles, verifyChain, type AuditRecord } from '../../protocol/audit';
import { helper } from '../../test/support/node-red';
import auditLogNode, { readAuditLogConfig, WRITE_WAIT_MS } from './audit-log';
import catalog from './locales/en-US/audit-log.json';
import { withCatalog } from '../../test/support/i18n';
import { trapFirstRead, watchProcessFaults } from '../../test/support/nodes-faults';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-audit-node-'));

/** Stand-ins with the real nodes' credential definitions, so no broker or LLM is needed. */
function fakeCredentialNodes(RED: NodeAPI): void {
  function Plain(this: Node, def: NodeDef): void { RED.nodes.createNode(this, def); }
  RED.nodes.registerType('toolmesh-tool-registry', Plain, { credentials: { username: { type: 'text' }, password: { type: 'password' } } });
  RED.nodes.registerType('toolmesh-llm-agent', Plain, { credentials: { apiKey: { type: 'password' } } });
}

const { privateKey } = generateKeyPairSync('ed25519');
const token = signApproval({ kid: 'gate-1', privateKey, caller: 'nr', agent: 'pi', tool: 'docker_restart', args: { id: 'web' }, exp: Date.now() + 60_000, approver: 'alice', jti: 'jti-approval-0001' });
const call = { id: 'tc-1', name: 'pi__docker_restart', agent: 'pi', tool: 'docker_restart', arguments: { id: 'web', apiKey: 'abc', note: 'uses sk-llm-key-123456' }, risk: 'medium' };

const messages: Record<string, unknown>[] = [
  { payload: 'Restart the web container; the broker login is nodered-1 / s3cr3t-mqtt-pw' },
  { topic: call.name, payload: call.arguments, toolCall: call },
  { topic: call.name, payload: call.arguments, toolCall: { ...call, approval: token } },
  { toolCall: call, toolResult: { id: 'tc-1', isError: false, agent: 'pi', tool: 'docker_restart', durationMs: 42, content: [{ type: 'text', text: 'ok' }] } },
  { toolCall: call, toolResult: { id: 'tc-2', isError: true, agent: 'pi', tool: 'docker_restart', durationMs: 3, structuredContent: { error: { code: 'DENIED', message: 'bob said no' } } } },
  { payload: 'Restarted.', sessionId: 's-1', toolCalls: [{ id: 'x', name: 'pi__docker_restart', agent: 'pi', tool: 'docker_restart', arguments: {}, ok: true, durationMs: 42 }], usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 } },
  { payload: { n: 1 } },
];

function flow(file: string, extra: Record<string, unknown> = {}): Record<string, unknown>[] {
  return [
    { id: 'tab', type: 'tab' },
    { id: 'reg', z: 'tab', type: 'toolmesh-tool-registry' },
    { id: 'llm', z: 'tab', type: 'toolmesh-llm-agent', wires: [[], []] },
    { id: 'audit', z: 'tab', type: 'toolmesh-audit-log', file, rotateMb: 10, rotateDaily: true, redactKeys: 'note2, pin', wires: [['out']], ...extra },
    { id: 'out', z: 'tab', type: 'helper' },
    { id: 'c1', z: 'tab', type: 'catch', scope: null, uncaught: false, wires: [['caught']] },
    { id: 'caught', z: 'tab', type: 'helper' },
  ];
}

const credentials = { reg: { username: 'nodered-1', password: 's3cr3t-mqtt-pw' }, llm: { apiKey: 'sk-llm-key-123456' } };
const auditLogWithCatalog = withCatalog(auditLogNode, catalog);
const nodes = [fakeCredentialNodes, auditLogWithCatalog];

/** Collects what helper node `id` receives. */
function collect(id: string): Record<string, unknown>[] {
  const got: Record<string, unknown>[] = [];
  helper.getNode(id).on('input', (m: Record<string, unknown>) => got.push(m));
  return got;
}

async function until(cond: () => boolean, what: string, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const records = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(() => { rmSync(dir, { recursive: true, force: true }); resolve(); })));
afterEach(() => helper.unload());

describe('audit-log node', () => {
  it('passes messages unchanged and in order, recording each kind with secrets redacted', async () => {
    const file = join(dir, 'a', 'audit.jsonl');
    await helper.load(nodes, flow(file), credentials);
    const out = collect('out');
    const caught = collect('caught');
    const sent = messages.map((m) => structuredClone(m));
    for (const m of sent) helper.getNode('audit').receive(m);
    await until(() => out.length === messages.length, 'every message to pass');
    out.forEach((m, i) => {
      const { _msgid, ...rest } = m;
      expect(_msgid).toBeTypeOf('string');
      expect(rest).toEqual(messages[i]);
    });
    expect(caught).toEqual([]);
    await helper.unload(); // flushes and closes the file

    const recs = records(file);
    expect(recs.map((r) => r.kind)).toEqual(['prompt', 'tool-call', 'approval', 'tool-result', 'refusal', 'answer', 'message']);
    expect(recs.map((r) => r.msgId)).toEqual(out.map((m) => m._msgid));
    expect(recs[0].text).toBe('Restart the web container; the broker login is nodered-1 / [redacted]');
    expect(recs[1]).toMatchObject({ callId: 'tc-1', agent: 'pi', tool: 'docker_restart', risk: 'medium', args: { id: 'web', apiKey: '[redacted]', note: 'uses [redacted]' } });
    expect(recs[2].approval).toEqual({ approver: 'alice', jti: 'jti-approval-0001', kid: 'gate-1' });
    expect(recs[3]).toMatchObject({ callId: 'tc-1', outcome: 'ok', durationMs: 42 });
    expect(recs[4]).toMatchObject({ callId: 'tc-2', outcome: 'DENIED', refusal: { code: 'DENIED', reason: 'bob said no' } });
    expect(recs[5]).toMatchObject({ text: 'Restarted.', runId: 's-1', tokens: { prompt: 100, completion: 20, total: 120 }, calls: [{ agent: 'pi', tool: 'docker_restart', outcome: 'ok', durationMs: 42 }] });
    expect(recs[6]).toMatchObject({ kind: 'message', payloadType: 'object' });
    const text = readFileSync(file, 'utf8');
    for (const secret of ['s3cr3t-mqtt-pw', 'sk-llm-key-123456', token, token.split('.')[1]]) expect(text).not.toContain(secret);
    expect(text).toContain('nodered-1'); // a registry's username is no secret
    expect(verifyChain([file])).toMatchObject({ ok: true, records: 7, anchor: { seq: 7 } });
  });

  it('shares one chain between nodes that name the same file', async () => {
    const file = join(dir, 'b', 'audit.jsonl');
    const f = flow(file);
    f[3].wires = [['audit2']];
    f.push({ id: 'audit2', z: 'tab', type: 'toolmesh-audit-log', file, wires: [['out']] });
    await helper.load(nodes, f, credentials);
    const out = collect('out');
    for (let i = 0; i < 20; i++) helper.getNode('audit').receive({ payload: `prompt ${i}` });
    await until(() => out.length === 20, '20 messages through two audit-log nodes');
    expect(out.map((m) => m.payload)).toEqual(Array.from({ length: 20 }, (_, i) => `prompt ${i}`));
    await helper.unload();
    expect(verifyChain(chainFiles(file))).toMatchObject({ ok: true, records: 40 });
  });

  it('passes the message on and raises the error to Catch when the record cannot be written', async () => {
    const blocker = join(dir, 'not-a-dir');
    writeFileSync(blocker, 'x');
    await helper.load(nodes, flow(join(blocker, 'audit.jsonl')), credentials);
    const out = collect('out');
    const caught = collect('caught');
    helper.getNode('audit').receive({ payload: 'hello' });
    await until(() => out.length === 1 && caught.length === 1, 'the message and the error');
    expect(out[0].payload).toBe('hello');
    expect((caught[0].error as { message: string }).message).toMatch(/was not written to .*not-a-dir.*the message was passed on/);
  });

  it('sends an exception thrown while passing the message on to Catch nodes, never as an unhandled rejection', async () => {
    const file = join(dir, 'c', 'audit.jsonl');
    const f = flow(file, { wires: [['out', 'out2']] }); // two wires: Node-RED clones the message, and the clone throws once
    f.push({ id: 'out2', z: 'tab', type: 'helper' });
    await helper.load(nodes, f, credentials);
    const out = collect('out');
    const caught = collect('caught');
    const faults = watchProcessFaults();
    try {
      const msg: Record<string, unknown> = { payload: 'hello' };
      trapFirstRead(msg);
      helper.getNode('audit').receive(msg);
      await until(() => caught.length === 1, 'the error at the Catch node');
      expect((caught[0].error as { message: string }).message).toContain('the trap property cannot be read');
      expect(faults.seen).toEqual([]);
      helper.getNode('audit').receive({ payload: 'still here' });
      await until(() => out.some((m) => m.payload === 'still here'), 'the next message');
    } finally {
      faults.stop();
    }
  });

  it('sends nothing once it is closed, also when a record is not confirmed in time', async () => {
    // a log file on storage that hangs: a FIFO nobody writes to blocks the writer's first read
    const fifoDir = join(dir, 'd');
    mkdirSync(fifoDir, { recursive: true });
    const fifo = join(fifoDir, 'audit.jsonl');
    execFileSync('mkfifo', [fifo]);
    await helper.load(nodes, flow(fifo), credentials);
    const audit = helper.getNode('audit');
    // what the node does once it is closing (the flow's wiring is gone by then, so ask the node)
    let closing = false;
    const afterClose: string[] = [];
    for (const method of ['send', 'error', 'status'] as const) {
      const original = audit[method].bind(audit);
      audit[method] = (...args: unknown[]) => {
        if (closing) afterClose.push(method);
        return original(...args);
      };
    }
    const out = collect('out');
    audit.receive({ payload: 'stuck' });
    closing = true;
    const unloading = helper.unload();
    try {
      await new Promise((r) => setTimeout(r, WRITE_WAIT_MS + 500));
      expect(afterClose).toEqual([]);
      expect(out).toEqual([]);
    } finally {
      // unblock the writer so the node can finish closing: a reader, then a writer that goes away
      const reader = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
      closeSync(openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK));
      await unloading;
      closeSync(reader);
    }
    expect(afterClose.filter((m) => m === 'send')).toEqual([]);
    expect(out).toEqual([]);
  }, 20_000);

  it('reads its config: default file under userDir, relative paths, rotation size', () => {
    expect(readAuditLogConfig({}, '/home/nr/.node-red')).toEqual({ file: '/home/nr/.node-red/toolmesh-audit/audit.jsonl', rotateBytes: 10 * 1024 * 1024, rotateDaily: true, keys: [] });
    expect(readAuditLogConfig({ file: 'logs/a.jsonl', rotateMb: '0.5', rotateDaily: false, redactKeys: 'pin, otp' }, '/u')).toEqual({ file: '/u/logs/a.jsonl', rotateBytes: 524288, rotateDaily: false, keys: ['pin', 'otp'] });
    expect(readAuditLogConfig({ rotateMb: 'lots' }, '/u')).toMatchObject({ rotateBytes: 10 * 1024 * 1024, problem: 'lots' });
  });
});
