/**
 * Node-RED node `audit-log`: passes every message on unchanged and appends a record describing
 * it (prompt, tool call, approval, tool result, answer: see describe.ts) to a hash-chained JSONL
 * file (protocol/audit). The message leaves once its record is on disk, or after
 * {@link WRITE_WAIT_MS} at most; a record that could not be written still lets the message pass
 * and raises the error to Catch nodes (`done(err)`), with a red status. Once the node is closing
 * nothing leaves it: messages still waiting for their record are dropped (their flow is
 * stopping) and their wait timers cleared; the records already queued are still written before
 * the file closes. See locales/en-US/audit-log.html (the help).
 */
import os from 'node:os';
import { isAbsolute, join } from 'node:path';
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { Redactor } from '@toolmesh/agent/protocol/audit';
import { entryOf } from './describe';
import { acquire, release } from './writers';

/** Longest a message waits for its record before it passes anyway (and an error is raised), ms. */
export const WRITE_WAIT_MS = 5000;

/** The node's editor config. */
export interface AuditLogConfig {
  /** Log file; empty: `<userDir>/toolmesh-audit/audit.jsonl`; relative paths are under userDir. */
  file?: string;
  /** Rotate past this size, MB (default 10; 0: never by size). */
  rotateMb?: number | string;
  /** Rotate on the first record of each UTC day (default true). */
  rotateDaily?: boolean;
  /** Extra key names to redact, comma- or space-separated (added to the built-in list). */
  redactKeys?: string;
}

/** The file, rotation size (bytes) and extra keys a config means; `problem` names a bad field. */
export function readAuditLogConfig(def: AuditLogConfig, userDir: string | undefined): { file: string; rotateBytes: number; rotateDaily: boolean; keys: string[]; problem?: string } {
  const dir = userDir ?? join(os.homedir(), '.node-red');
  const given = (def.file ?? '').trim();
  const file = given ? (isAbsolute(given) ? given : join(dir, given)) : join(dir, 'toolmesh-audit', 'audit.jsonl');
  const mbText = String(def.rotateMb ?? '').trim();
  const mb = mbText === '' ? 10 : Number(mbText);
  const bad = !Number.isFinite(mb) || mb < 0;
  return {
    file,
    rotateBytes: bad ? 10 * 1024 * 1024 : Math.round(mb * 1024 * 1024),
    rotateDaily: def.rotateDaily !== false,
    keys: (def.redactKeys ?? '').split(/[\s,]+/).filter(Boolean),
    problem: bad ? mbText : undefined,
  };
}

/** Registers the `toolmesh-audit-log` type (the palette shows its catalog's `audit-log.label.palette`). */
export default function auditLog(RED: NodeAPI): void {
  /**
   * Credentials to redact by value: every string credential of each tool-registry node except
   * its username, and of every other node those whose key names a secret (an llm-agent's apiKey).
   * Read per message, so credentials changed by a partial deploy are known at once.
   */
  function knownSecrets(r: Redactor): string[] {
    const values: string[] = [];
    RED.nodes.eachNode((n) => {
      const creds = RED.nodes.getCredentials(n.id) as Record<string, unknown> | undefined;
      for (const [k, v] of Object.entries(creds ?? {})) {
        if (typeof v === 'string' && v && (n.type === 'toolmesh-tool-registry' ? k !== 'username' : r.isSecretKey(k))) values.push(v);
      }
    });
    return values;
  }

  function AuditLogNode(this: Node, def: NodeDef & AuditLogConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const cfg = readAuditLogConfig(def, RED.settings.userDir);
    if (cfg.problem !== undefined) node.warn(RED._('audit-log.errors.bad-rotate', { value: cfg.problem }));
    const keyRedactor = new Redactor({ keys: cfg.keys });
    const writer = acquire({ file: cfg.file, rotateBytes: cfg.rotateBytes, rotateDaily: cfg.rotateDaily, onNotice: (text) => node.warn(text) });
    let written = 0;
    let closed = false;
    const fail = (e: Error) => {
      if (!closed) node.status({ fill: 'red', shape: 'ring', text: RED._('audit-log.status.error', { code: (e as { code?: string }).code ?? 'error' }) });
    };
    writer.then(
      () => { if (!closed) node.status({ fill: 'grey', shape: 'ring', text: RED._('audit-log.status.ready') }); },
      (e: Error) => { fail(e); node.error(RED._('audit-log.errors.open', { file: cfg.file, error: e.message })); },
    );

    /** Messages waiting for their record, each with what ends its wait when the node closes. */
    const waiting = new Set<() => void>();

    node.on('input', (msg: NodeMessageInFlow, send, done) => {
      let appended: Promise<unknown>;
      try {
        const r = new Redactor({ keys: cfg.keys, values: knownSecrets(keyRedactor) });
        const entry = entryOf(msg as unknown as Record<string, unknown>, r);
        appended = writer.then((w) => w.append(entry));
      } catch (e) {
        appended = Promise.reject(e);
      }
      let settled = false;
      let ended = false;
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        done(err);
      };
      /** Ends the wait: false when it had ended already (a record confirmed late, or the node closed). */
      const settle = (): boolean => {
        if (settled) return false;
        settled = true;
        clearTimeout(timer);
        waiting.delete(abandon);
        return true;
      };
      const finish = (err?: Error) => {
        if (!settle()) return;
        // an exception while passing the message on (Node-RED cannot clone it) goes to Catch nodes
        try {
          send(msg);
        } catch (e) {
          fail(e as Error);
          return end(e as Error);
        }
        if (!err) return end();
        fail(err);
        end(new Error(RED._('audit-log.errors.write', { file: cfg.file, error: err.message })));
      };
      /** The node closes first: the message goes nowhere (its flow is stopping), the wait ends. */
      const abandon = () => {
        if (settle()) end();
      };
      waiting.add(abandon);
      const timer = setTimeout(() => finish(new Error(RED._('audit-log.errors.slow', { ms: WRITE_WAIT_MS }))), WRITE_WAIT_MS);
      appended.then(() => {
        written++;
        if (!closed) node.status({ fill: 'green', shape: 'dot', text: RED._('audit-log.status.written', { count: written }) });
        finish();
      }, (e: Error) => {
        // a record that fails after the node closed is still worth a line in the log
        if (closed && settled) return node.warn(RED._('audit-log.errors.write', { file: cfg.file, error: e.message }));
        finish(e);
      }).catch((e: unknown) => end(e instanceof Error ? e : new Error(String(e))));
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      for (const abandon of [...waiting]) abandon();
      release(cfg.file).catch((e: Error) => node.warn(e.message)).finally(() => done());
    });
  }

  RED.nodes.registerType('toolmesh-audit-log', AuditLogNode);
}
