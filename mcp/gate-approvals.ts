/**
 * The caller side of approval requests (docs/protocol.md, "Approval requests from other
 * callers"): the bridge publishes a request on `{root}/approvals/{callerId}/req` and waits for a
 * confirm-gate's answer on `{root}/approvals/{callerId}/res`. It uses a client of its own (same
 * broker settings and credentials as the bridge's caller), so the caller's connection is left as
 * protocol v1 defines it. No Node-RED imports.
 */
import { randomUUID } from 'node:crypto';
import type { MqttClient } from 'mqtt';
import {
  APPROVAL_REQUEST_VERSION, ApprovalResponseMessageSchema, MAX_APPROVAL_MESSAGE_BYTES, approvalTopics, connectMqtt, endMqtt,
  type ApprovalRequestMessage, type ApprovalResponseMessage, type ConnectOptions,
} from '@toolmesh/agent/protocol';
import { parseJsonWithin } from '@toolmesh/agent/protocol/json-limits';

/** Options of {@link GateApprovals}. */
export interface GateApprovalsOptions {
  connection: ConnectOptions;
  root: string;
  callerId: string;
  /** Warnings (a malformed answer, a failed subscription). */
  warn?: (text: string) => void;
}

/** What {@link GateApprovals.request} resolves with: the gate's answer, or why there is none. */
export type GateAnswer =
  | ApprovalResponseMessage
  | { approved: false; cause: 'no-answer' | 'cancelled' | 'disconnected'; reason: string };

interface Waiting {
  resolve(a: GateAnswer): void;
  timer: NodeJS.Timeout;
}

/** Approval requests to a confirm-gate over MQTT. `start()` once, then `request()` per call. */
export class GateApprovals {
  private client?: MqttClient;
  private readonly waiting = new Map<string, Waiting>();
  private readonly t: ReturnType<typeof approvalTopics>;
  private subscribed = false;

  constructor(private readonly opts: GateApprovalsOptions) {
    this.t = approvalTopics(opts.root);
  }

  /** Connects (reconnecting with backoff) and subscribes to the response topic on every connect. */
  start(): void {
    const client = connectMqtt({ ...this.opts.connection, clientId: `toolmesh-approvals-${this.opts.callerId}-${randomUUID().slice(0, 8)}` });
    this.client = client;
    client.on('connect', () => {
      client.subscribe(this.t.response(this.opts.callerId), { qos: 1 }, (err) => {
        if (err) this.opts.warn?.(`approval responses: subscribe to ${this.t.response(this.opts.callerId)} refused: ${err.message}`);
        else this.subscribed = true;
      });
    });
    client.on('close', () => { this.subscribed = false; });
    client.on('message', (_topic, payload, packet) => {
      if (packet.retain) return;
      try {
        this.onAnswer(payload);
      } catch (e) {
        this.opts.warn?.(`approval response dropped: ${(e as Error)?.message ?? String(e)}`);
      }
    });
  }

  private onAnswer(payload: Buffer): void {
    if (payload.length > MAX_APPROVAL_MESSAGE_BYTES) throw new Error(`${payload.length} bytes, over the ${MAX_APPROVAL_MESSAGE_BYTES}-byte limit`);
    const parsed = parseJsonWithin(payload.toString('utf8'));
    if ('error' in parsed) throw new Error(parsed.error);
    const answer = ApprovalResponseMessageSchema.safeParse(parsed.value);
    if (!answer.success) throw new Error(`not an approval response: ${answer.error.issues[0]?.path.join('.') || '(root)'}: ${answer.error.issues[0]?.message}`);
    // resolve() removes the entry and clears the timer; no entry: an answer this bridge no longer waits for
    this.waiting.get(answer.data.approvalId)?.resolve(answer.data);
  }

  /**
   * Publishes a request and waits for the gate's answer, at most `waitMs` (ms) and never past the
   * abort of `signal`. Never rejects: no gate, a broker that is down, a cancel, all come back as
   * `approved: false` with a cause and a reason a model can read.
   */
  request(req: Omit<ApprovalRequestMessage, 'v' | 'approvalId' | 'expiresAt'>, waitMs: number, signal?: AbortSignal): Promise<GateAnswer> {
    const approvalId = randomUUID();
    const message: ApprovalRequestMessage = { v: APPROVAL_REQUEST_VERSION, approvalId, ...req, expiresAt: Date.now() + waitMs };
    return new Promise((resolve) => {
      if (!this.client?.connected || !this.subscribed) {
        return resolve({ approved: false, cause: 'disconnected', reason: 'the bridge is not connected to the broker, so no confirm-gate can be asked; try again once it is back' });
      }
      const done = (a: GateAnswer) => {
        if (!this.waiting.delete(approvalId)) return;
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        resolve(a);
      };
      const onAbort = () => done({ approved: false, cause: 'cancelled', reason: 'the MCP client cancelled the call while it waited for approval' });
      const timer = setTimeout(() => done({
        approved: false, cause: 'no-answer',
        reason: `no confirm-gate answered within ${waitMs} ms; is a confirm-gate with "Hold approval requests from other callers" deployed on this broker (topic ${this.t.anyRequest})?`,
      }), waitMs + 2000); // the gate denies on silence at expiresAt; this is the backstop for no gate at all
      this.waiting.set(approvalId, { resolve: (a) => done(a), timer });
      signal?.addEventListener('abort', onAbort, { once: true });
      this.client.publish(this.t.request(this.opts.callerId), JSON.stringify(message), { qos: 1 });
    });
  }

  /** Answers every waiting request `disconnected` and closes the client. */
  async stop(): Promise<void> {
    for (const [id, w] of [...this.waiting]) {
      this.waiting.delete(id);
      clearTimeout(w.timer);
      w.resolve({ approved: false, cause: 'disconnected', reason: 'the bridge is stopping' });
    }
    if (this.client) await endMqtt(this.client);
  }
}
