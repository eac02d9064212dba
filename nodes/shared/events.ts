/**
 * What the ToolMesh editor sidebar (nodes/toolmesh-sidebar) shows, gathered from the deployed
 * nodes without importing them: tool-registries and confirm-gates add themselves as sources while
 * they are deployed, and every node that changes what the sidebar shows emits on
 * {@link toolmeshEvents}. One module instance per Node-RED process (Node-RED loads the plugin and
 * the nodes from the same dist/), so no Node-RED API is needed here.
 */
import { EventEmitter } from 'node:events';

/** A tool of an agent as the sidebar lists it. */
export interface SidebarTool {
  name: string;
  /** The catalog's risk level, `unknown` when it gives none. */
  risk: string;
}

/** An agent as the sidebar lists it. */
export interface SidebarAgent {
  id: string;
  name?: string;
  kind?: string;
  version?: string;
  /** `online`, `offline`, `lost`, or `unknown`. */
  state: string;
  tools: SidebarTool[];
}

/** A deployed tool-registry, as a source of agents. */
export interface RegistrySource {
  name?: string;
  /** Its connection state (`connecting`, `connected`, `disconnected`, `error`). */
  state(): string;
  agents(): SidebarAgent[];
}

/**
 * A decision handed from one confirm-gate to another (issue 21: a page wired to one gate decides
 * every gate's holds): the approval id, approve or deny, who (signed into the token, 1–256
 * characters) and why (at most 500 characters).
 */
export interface GateDecision {
  id: string;
  approve: boolean;
  approver: string;
  reason?: string;
}

/**
 * What a gate did with a {@link GateDecision}: `settled` it; `already` settled before (`settled`
 * says how: `approved`, `denied`, `timed out`, `closed`), so the decision is refused; `unknown`.
 */
export type GateDecisionResult = { status: 'settled' } | { status: 'already'; settled: string } | { status: 'unknown' };

/** A deployed confirm-gate, as a source of pending approvals (their details stay behind its admin endpoint). */
export interface GateSource {
  name?: string;
  /** How many calls it holds now. */
  pending(): number;
  /** Its pending holds, oldest first (what a page lists on load). */
  holds(): HeldEvent[];
  /** True when `approvalId` is pending here, or was settled here and is still remembered (the last 1000). */
  knows(approvalId: string): boolean;
  /**
   * Applies a decision of another gate's input to one of this gate's ids, with every check of
   * its own decisions (single use, the signed token); reports nothing itself (the forwarding
   * gate warns). Never throws for a settled call: sending it on failing ends that call's message.
   */
  decide(d: GateDecision): GateDecisionResult;
}

/** A finished tool call (remote-tool). */
export interface CallEvent {
  agent: string;
  tool: string;
  /** `OK`, or the error code of the result (`TIMEOUT`, `AGENT_OFFLINE`, ...). */
  code: string;
  durationMs: number;
  /** The node that made the call. */
  node?: string;
  /** When it finished, epoch ms. */
  ts: number;
}

/**
 * A call a deployed confirm-gate now holds for a person's approval (issue 21): what a chat card or
 * an approvals page shows, and how an llm-agent joins the hold to its own call (`callId`, the
 * model's tool call id that `msg.toolCall.id` carried into the gate).
 */
export interface HeldEvent {
  /** The gate's node id, and its name when it has one. */
  gate: string;
  gateName?: string;
  /** The id decisions refer to (single use). */
  approvalId: string;
  /** `msg.toolCall.id` of the held call, when it had one (absent for other callers' requests). */
  callId?: string;
  /** The gate's one-line summary, e.g. "Restart container homeassistant on pi". */
  summary: string;
  agent: string;
  tool: string;
  /** `low` … `critical`, or `unknown`. */
  risk: string;
  /** Who asks, for another caller's request (e.g. "MCP client Claude Desktop via toolmesh mcp"). */
  requester?: string;
  /** The other caller's id, for a request over MQTT. */
  caller?: string;
  /** Epoch ms: held at, and when silence becomes a denial. */
  requestedAt: number;
  expiresAt: number;
}

/** A hold that ended, wherever it was decided (an input message, the sidebar, MQTT, a page, the timeout, a redeploy). */
export interface SettledEvent {
  gate: string;
  approvalId: string;
  callId?: string;
  /** `approved`, `denied` (by a person), `timeout`, or `closed` (the gate closed first). */
  outcome: 'approved' | 'denied' | 'timeout' | 'closed';
  /** Who decided, for `approved`/`denied` (the approver the gate records). */
  by?: string;
  /** When, epoch ms. */
  ts: number;
}

/**
 * Events: `agents` (a registry or its agents changed), `approvals` (a gate or its holds changed),
 * `call` ({@link CallEvent}), `held` ({@link HeldEvent}) and `settled` ({@link SettledEvent}).
 */
interface EventMap {
  agents: [];
  approvals: [];
  call: [CallEvent];
  held: [HeldEvent];
  settled: [SettledEvent];
}

/** The process-wide emitter the nodes emit on and the sidebar plugin listens to. */
export const toolmeshEvents = new EventEmitter<EventMap>();
// every open editor adds nothing here (the plugin listens once), but many registries may
toolmeshEvents.setMaxListeners(0);

const registries = new Map<string, RegistrySource>();
const gates = new Map<string, GateSource>();

/**
 * Makes the deployed tool-registry `id` a source of agents until the returned function is called
 * (on close); emits `agents` both times.
 */
export function addRegistrySource(id: string, source: RegistrySource): () => void {
  registries.set(id, source);
  toolmeshEvents.emit('agents');
  return () => {
    if (registries.get(id) === source) registries.delete(id);
    toolmeshEvents.emit('agents');
  };
}

/**
 * Makes the deployed confirm-gate `id` a source of approvals until the returned function is
 * called (on close); emits `approvals` both times.
 */
export function addGateSource(id: string, source: GateSource): () => void {
  gates.set(id, source);
  emitApprovals();
  return () => {
    if (gates.get(id) === source) gates.delete(id);
    emitApprovals();
  };
}

/** The deployed registries, by node id. */
export function registrySources(): ReadonlyMap<string, RegistrySource> {
  return registries;
}

/** The deployed gates, by node id. */
export function gateSources(): ReadonlyMap<string, GateSource> {
  return gates;
}

/** Emits a finished call; a failing listener never reaches the node that made the call. */
export function emitCall(call: Omit<CallEvent, 'ts'>): void {
  try {
    toolmeshEvents.emit('call', { ...call, ts: Date.now() });
  } catch {
    // the sidebar is a view: it must not break a flow
  }
}

/**
 * The deployed gate, other than `except` (a node id), that holds or remembers `approvalId`
 * ({@link GateSource.knows}), with its node id; undefined when none does.
 */
export function gateKnowing(approvalId: string, except?: string): { id: string; source: GateSource } | undefined {
  for (const [id, source] of gates) {
    if (id !== except && source.knows(approvalId)) return { id, source };
  }
  return undefined;
}

/** Every deployed gate's pending holds, oldest first (by `requestedAt`, then gate id). */
export function allHolds(): HeldEvent[] {
  const all: HeldEvent[] = [];
  for (const source of gates.values()) all.push(...source.holds());
  return all.sort((a, b) => a.requestedAt - b.requestedAt || a.gate.localeCompare(b.gate));
}

/** Emits a hold; a failing listener never reaches the gate. */
export function emitHeld(held: HeldEvent): void {
  try {
    toolmeshEvents.emit('held', held);
  } catch {
    // a page or an llm-agent listening is a view of the gate: it must not break the hold
  }
}

/** Emits the end of a hold; a failing listener never reaches the gate. */
export function emitSettled(settled: SettledEvent): void {
  try {
    toolmeshEvents.emit('settled', settled);
  } catch {
    // as emitHeld
  }
}

/** Emits `approvals` (a gate or its holds changed); a failing listener never reaches the gate. */
export function emitApprovals(): void {
  try {
    toolmeshEvents.emit('approvals');
  } catch {
    // as emitHeld
  }
}
