/**
 * The holds of one run's tool calls: listens on `toolmeshEvents` (`held`, `settled`,
 * nodes/shared/events.ts) for the confirm-gate holds of the calls this run sent out of output 2,
 * and reports each as a {@link ToolCallHoldEvent} under the call's id in the run. A gate knows a
 * call by its wired id (`msg.toolCall.id`, unique across runs and restarts), so holds of other
 * runs, other nodes and other callers never match. No Node-RED imports.
 */
import { toolmeshEvents, type HeldEvent, type SettledEvent } from '../shared/events';
import type { ToolCallHoldEvent } from './loop-types';

/** Listens for the holds of one run until {@link RunHolds.close}. */
export class RunHolds {
  /** Wired call id → the call's id in the run. */
  private readonly wired = new Map<string, string>();
  /** Approval id → the call's id in the run, while held. */
  private readonly held = new Map<string, string>();
  private closed = false;

  private readonly onHeld = (e: HeldEvent): void => {
    const id = e.callId === undefined ? undefined : this.wired.get(e.callId);
    if (id === undefined) return;
    this.held.set(e.approvalId, id);
    this.report({ type: 'tool-call-held', id, approvalId: e.approvalId, gate: e.gate, summary: e.summary, agent: e.agent, tool: e.tool, risk: e.risk, expiresAt: e.expiresAt });
  };

  private readonly onSettled = (e: SettledEvent): void => {
    const id = this.held.get(e.approvalId) ?? (e.callId === undefined ? undefined : this.wired.get(e.callId));
    if (id === undefined) return;
    this.held.delete(e.approvalId);
    this.report({ type: 'tool-call-settled', id, approvalId: e.approvalId, outcome: e.outcome, ...(e.by !== undefined ? { by: e.by } : {}) });
  };

  /** @param emit called with each event of this run's calls; an error it throws is passed to `onError`, never to the gate that emitted. */
  constructor(private readonly emit: (e: ToolCallHoldEvent) => void, private readonly onError: (e: Error) => void = () => undefined) {
    toolmeshEvents.on('held', this.onHeld);
    toolmeshEvents.on('settled', this.onSettled);
  }

  /** Notes that the run's call `runCallId` left output 2 as wired call `wiredId` (call before sending it). */
  noteWired(wiredId: string, runCallId: string): void {
    if (!this.closed) this.wired.set(wiredId, runCallId);
  }

  /** Stops listening (the run ended); safe to call twice. */
  close(): void {
    this.closed = true;
    toolmeshEvents.off('held', this.onHeld);
    toolmeshEvents.off('settled', this.onSettled);
    this.wired.clear();
    this.held.clear();
  }

  private report(e: ToolCallHoldEvent): void {
    try {
      this.emit(e);
    } catch (err) {
      this.onError(err as Error);
    }
  }
}
