/**
 * How many calls an agent runs at once (docs/protocol.md, "Behaviour"): at most `perCaller` of
 * one caller and `total` in all, since caller ids can be rotated freely. `RpcServer` asks
 * {@link CallLimits.refusal} before a new call starts (the excess gets the retryable `BUSY`) and
 * counts each call from its start to its answer.
 */

/** Why a call may not start now: the `BUSY` message and its `details` (`limit` names the bound). */
export interface LimitRefusal {
  message: string;
  details: Record<string, unknown>;
}

/** Running calls per caller and in all, against their bounds. */
export class CallLimits {
  private readonly byCaller = new Map<string, number>();
  private total = 0;

  /** @param perCaller calls of one caller at once; @param max calls at once in all; @param agentId for the messages. */
  constructor(private readonly perCaller: number, private readonly max: number, private readonly agentId: string) {}

  /** Why a new call of `callerId` may not start now, or undefined when it may. */
  refusal(callerId: string): LimitRefusal | undefined {
    if ((this.byCaller.get(callerId) ?? 0) >= this.perCaller) {
      return {
        message: `caller ${callerId} has ${this.perCaller} calls running on agent ${this.agentId}, its limit; try again when one has finished`,
        details: { limit: 'maxRunningPerCaller', bound: this.perCaller },
      };
    }
    if (this.total >= this.max) {
      return { message: `agent ${this.agentId} runs ${this.max} calls, its limit; try again shortly`, details: { limit: 'maxRunning', bound: this.max } };
    }
    return undefined;
  }

  /** A call of `callerId` starts. */
  start(callerId: string): void {
    this.byCaller.set(callerId, (this.byCaller.get(callerId) ?? 0) + 1);
    this.total++;
  }

  /** A call of `callerId` ended (once per {@link start}). */
  end(callerId: string): void {
    const left = (this.byCaller.get(callerId) ?? 1) - 1;
    if (left > 0) this.byCaller.set(callerId, left);
    else this.byCaller.delete(callerId);
    this.total--;
  }
}
