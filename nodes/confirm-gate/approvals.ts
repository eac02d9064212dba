/**
 * The calls a confirm-gate holds: each gets an approval id, waits for one decision or its
 * timeout, and is settled exactly once. Ids are single-use: a later decision on a settled id is
 * reported as such. A decision without an id settles only an unmistakable call (see
 * {@link ApprovalBook.decide}), and the book holds at most so many calls (in all, and per remote
 * caller). No Node-RED imports; the node turns outcomes into messages.
 */
import { randomUUID } from 'node:crypto';
import { toolErrorResult, type CallToolResult, type Risk } from '@toolmesh/agent/protocol';
import type { Decision } from './decisions';
import type { ToolResult } from '../shared/tool-messages';

/** `msg.payload` of an approval request (output 2), and an entry of the pending list. */
export interface ApprovalRequestPayload {
  /** Single-use id that decisions refer to. */
  approvalId: string;
  /** One line for a person, e.g. "Restart container homeassistant on pi". */
  summary: string;
  agent: string;
  tool: string;
  arguments: Record<string, unknown>;
  /** The call's risk level (the higher of `msg.toolCall.risk` and the agent's catalog), `unknown` when neither says. */
  risk: Risk | 'unknown';
  /** `msg.toolCall.id`, when the call has one. */
  callId?: string;
  /** When the call was held, epoch ms. */
  requestedAt: number;
  /** When silence becomes a denial, epoch ms. */
  expiresAt: number;
  /**
   * For a request from another caller over MQTT (docs/protocol.md, "Approval requests from other
   * callers"): its caller id, from the topic. The token is signed for this caller.
   */
  caller?: string;
  /** Who asks, as the requesting caller describes it (e.g. "MCP client Claude Desktop via toolmesh mcp"). */
  requester?: string;
  /**
   * The requesting caller's own one-line summary, when it sent one. Untrusted: `summary` is the
   * gate's own, made from agent, tool and arguments (what the token binds).
   */
  requestSummary?: string;
}

/** How a held call ended. */
export type Outcome =
  | { approved: true; approver: string }
  | { approved: false; cause: 'person'; approver: string; reason?: string }
  | { approved: false; cause: 'timeout' | 'closed' };

/** One held call with what the node needs to send it on (`ctx`). */
export interface Held<T> {
  request: ApprovalRequestPayload;
  ctx: T;
}

/** How a settled id ended, as {@link ApprovalBook.decide} reports a repeated decision. */
export type Settled = 'approved' | 'denied' | 'timed out' | 'closed';

/** Result of {@link ApprovalBook.decide}. */
export type DecideResult<T> =
  | { status: 'settled'; held: Held<T>; outcome: Outcome }
  /** No pending approval with that id (or, for a decision without an id, none at all). */
  | { status: 'unknown'; id?: string }
  /** The id was settled before: the decision is ignored. */
  | { status: 'already'; id: string; settled: Settled }
  /**
   * A decision without an id that would be a guess: `several` calls wait, or the only one is
   * `remote` (a request of another caller). Nothing was settled; `pending` holds the waiting ids,
   * oldest first (at most {@link MAX_LISTED_IDS}), `count` how many wait.
   */
  | { status: 'refused'; why: 'several' | 'remote'; pending: string[]; count: number };

/** Which cap {@link ApprovalBook.full} found reached: `total` (all holds) or `caller` (one remote caller's). */
export type FullCap = { cap: 'total'; max: number } | { cap: 'caller'; caller: string; max: number };

/** Limits of an {@link ApprovalBook}: pending holds in all, and per remote caller. */
export interface BookLimits {
  /** Pending holds at most, local and remote together (a whole number ≥ 1). */
  maxPending: number;
  /** Pending holds at most per remote caller id (a whole number ≥ 1). */
  maxPerCaller: number;
}

/** {@link ApprovalBook.hold} on a full book: nothing was held. */
export class BookFullError extends Error {
  constructor(readonly full: FullCap) {
    super(full.cap === 'total' ? `${full.max} calls wait for approval already (the most this gate holds)` : `${full.max} requests of ${full.caller} wait for approval already (the most it may have)`);
    this.name = 'BookFullError';
  }
}

/** Approval ids a refusal of a decision without an id names at most (the rest are counted). */
export const MAX_LISTED_IDS = 10;

/** Settled ids remembered to report repeated decisions. */
const REMEMBERED = 1000;

/** The pending approvals of one gate. `T` is what the node keeps per call (message, send, done). */
export class ApprovalBook<T> {
  private readonly pending = new Map<string, Held<T> & { timer: NodeJS.Timeout }>();
  private readonly settled = new Map<string, Settled>();
  /** Pending holds per remote caller id (entries with 0 are removed). */
  private readonly perCaller = new Map<string, number>();

  /**
   * @param onSettle receives each held call once, with how it ended.
   * @param limits caps of pending holds; default none.
   */
  constructor(
    private readonly onSettle: (held: Held<T>, outcome: Outcome) => void,
    private readonly limits: BookLimits = { maxPending: Infinity, maxPerCaller: Infinity },
  ) {}

  /** Number of calls waiting for a decision. */
  get size(): number {
    return this.pending.size;
  }

  /** The pending requests, oldest first. */
  list(): ApprovalRequestPayload[] {
    return [...this.pending.values()].map((h) => h.request);
  }

  /** The pending request with that id. */
  get(id: string): ApprovalRequestPayload | undefined {
    return this.pending.get(id)?.request;
  }

  /** True when `id` is pending. */
  has(id: string): boolean {
    return this.pending.has(id);
  }

  /** Pending holds of remote caller `caller`. */
  countOf(caller: string): number {
    return this.perCaller.get(caller) ?? 0;
  }

  /**
   * The cap a new hold would pass: `caller` for another caller's request (undefined for a call
   * from the gate's own input). The total cap is checked first.
   * @returns the cap reached, or undefined when there is room.
   */
  full(caller?: string): FullCap | undefined {
    if (this.pending.size >= this.limits.maxPending) return { cap: 'total', max: this.limits.maxPending };
    if (caller !== undefined && this.countOf(caller) >= this.limits.maxPerCaller) return { cap: 'caller', caller, max: this.limits.maxPerCaller };
    return undefined;
  }

  /** How `id` ended, while it is remembered (the last {@link REMEMBERED} settled ids). */
  settledAs(id: string): Settled | undefined {
    return this.settled.get(id);
  }

  /**
   * Holds a call for at most `holdMs` (then it settles as `timeout`).
   * @param approvalId the id to hold it under (a remote caller's own id); default a new random UUID.
   * `call.caller` set marks a request of another caller (counted against its cap, and never
   * settled by a decision without an id).
   * @returns the request, with its approval id and its times.
   * @throws Error when `approvalId` is pending or was settled (ids are single-use);
   *   {@link BookFullError} when a cap is reached (see {@link full}). Either way nothing is held.
   */
  hold(call: Omit<ApprovalRequestPayload, 'approvalId' | 'requestedAt' | 'expiresAt'>, ctx: T, holdMs: number, approvalId?: string): ApprovalRequestPayload {
    const now = Date.now();
    const id = approvalId ?? randomUUID();
    if (this.pending.has(id) || this.settled.has(id)) throw new Error(`approval id ${id} is already in use`);
    const full = this.full(call.caller);
    if (full) throw new BookFullError(full);
    const request: ApprovalRequestPayload = { approvalId: id, ...call, requestedAt: now, expiresAt: now + holdMs };
    const timer = setTimeout(() => this.settle(request.approvalId, { approved: false, cause: 'timeout' }), holdMs);
    this.pending.set(request.approvalId, { request, ctx, timer });
    if (call.caller !== undefined) this.perCaller.set(call.caller, this.countOf(call.caller) + 1);
    return request;
  }

  /**
   * Applies a decision to its id. A decision without an id (a button that cannot name one)
   * settles a call only when it cannot be mistaken: exactly one call waits and it was held from
   * the gate's own input (not a request of another caller); otherwise it is `refused` and
   * nothing is settled.
   */
  decide(d: Decision): DecideResult<T> {
    let id = d.id;
    if (id === undefined) {
      if (this.pending.size === 0) return { status: 'unknown' };
      const [only] = this.pending.values();
      if (this.pending.size > 1 || only.request.caller !== undefined) {
        const pending: string[] = [];
        for (const key of this.pending.keys()) {
          if (pending.length === MAX_LISTED_IDS) break;
          pending.push(key);
        }
        return { status: 'refused', why: this.pending.size > 1 ? 'several' : 'remote', pending, count: this.pending.size };
      }
      id = only.request.approvalId;
    }
    const before = this.settled.get(id);
    if (before) return { status: 'already', id, settled: before };
    if (!this.pending.has(id)) return { status: 'unknown', id };
    const outcome: Outcome = d.approve
      ? { approved: true, approver: d.approver }
      : { approved: false, cause: 'person', approver: d.approver, ...(d.reason ? { reason: d.reason } : {}) };
    const held = this.settle(id, outcome)!;
    return { status: 'settled', held, outcome };
  }

  /** Settles every pending call as `closed` (the node is closing), oldest first. */
  closeAll(): void {
    for (const id of [...this.pending.keys()]) this.settle(id, { approved: false, cause: 'closed' });
  }

  private settle(id: string, outcome: Outcome): Held<T> | undefined {
    const h = this.pending.get(id);
    if (!h) return undefined;
    clearTimeout(h.timer);
    this.pending.delete(id);
    const caller = h.request.caller;
    if (caller !== undefined) {
      const left = this.countOf(caller) - 1;
      if (left > 0) this.perCaller.set(caller, left);
      else this.perCaller.delete(caller);
    }
    this.settled.set(id, outcome.approved ? 'approved' : outcome.cause === 'timeout' ? 'timed out' : outcome.cause === 'closed' ? 'closed' : 'denied');
    if (this.settled.size > REMEMBERED) this.settled.delete(this.settled.keys().next().value!);
    const held = { request: h.request, ctx: h.ctx };
    this.onSettle(held, outcome);
    return held;
  }
}

/**
 * `msg.toolResult` of a denied call: an MCP error result with code `DENIED`, `message` in the
 * text item (`DENIED: <message>`) and in `structuredContent.error`, and `id` = the call's id so
 * the llm-agent matches it (the shared `msg.toolResult` contract, nodes/shared/tool-messages.ts).
 */
export function deniedResult(callId: string | undefined, message: string, details: Record<string, unknown>): ToolResult & CallToolResult {
  return { ...(callId !== undefined ? { id: callId } : {}), ...toolErrorResult('DENIED', message, details) };
}
