/**
 * Node-RED node `confirm-gate`: lets low-risk tool calls (`msg.toolCall`, as llm-agent emits
 * them) pass and holds risky ones until a person approves. An approved call
 * leaves with `msg.toolCall.approval`, an Ed25519-signed token bound to the registry's caller id,
 * the agent, the tool and the arguments (docs/protocol.md, "Approval tokens"), which agents require
 * before they run a high-risk tool.
 *
 * Outputs: 1 calls to run (passed untouched, or approved with the token); 2 approval requests
 * (`topic: 'approval-request'`, `payload`: {@link ApprovalRequestPayload}), the end of each hold
 * (`topic: 'approval-settled'`, `payload`: SettledEvent) and the answer to `list-approvals`
 * (`topic: 'approvals'`, `payload`: HeldEvent[] of every deployed gate); 3 denied calls with
 * `msg.toolResult` = a `DENIED` error result, to wire back to the llm-agent. Decisions arrive as
 * input messages (also for another deployed gate's approval id: forwarded to it), over HTTP
 * (admin.ts) and optionally over MQTT. Every hold is emitted on `toolmeshEvents` as `held` and
 * its end as `settled` (nodes/shared/events.ts). See locales/en-US/confirm-gate.html (the help) for the
 * message contract.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow } from 'node-red';
import { printable, signApproval } from '@toolmesh/agent/protocol';
import {
  addGateSource, allHolds, emitApprovals, emitHeld, emitSettled, gateKnowing, type GateDecisionResult, type HeldEvent, type SettledEvent,
} from '../shared/events';
import { addGateKey } from '../shared/gate-keys';
import { registryOf } from '../shared/registry-api';
import { parseToolCall, ToolMessageError } from '../shared/tool-messages';
import { registerAdminEndpoints, type GateEndpoint } from './admin';
import { ApprovalBook, deniedResult, type ApprovalRequestPayload, type DecideResult, type FullCap, type Held, type Outcome } from './approvals';
import { DecisionError, messageDecision, mqttDecision, type Decision } from './decisions';
import { subscribeApprovals, type ApprovalSubscription } from './mqtt-approvals';
import { approvalIdOf, approvedResponse, deniedResponse, readApprovalRequest } from './remote-requests';
import { MAX_APPROVAL_MESSAGE_BYTES, approvalTopics, type ApprovalResponseMessage } from '@toolmesh/agent/protocol/approval-requests';
import { higherRisk, isHeld, readGateSettings, type ConfirmGateConfig, type ConfirmGateCredentials, type SettingsProblem } from './settings';
import { readKeyFile } from './keys';
import { summarizeCall } from './summary';

export type { ConfirmGateConfig, ConfirmGateCredentials } from './settings';

type Msg = NodeMessageInFlow & Record<string, unknown>;
type Send = (msg: Array<Msg | Record<string, unknown> | null>) => void;
type Done = (err?: Error) => void;

/** What the gate keeps of a held call: its message and the send/done of the input that brought it. */
interface LocalHold {
  kind?: undefined;
  msg: Msg;
  toolCall: Record<string, unknown>;
  send: Send;
  done: Done;
}

/** What the gate keeps of a request from another caller over MQTT: whom to answer, and the arguments to sign. */
interface RemoteHold {
  kind: 'remote';
  caller: string;
  args: Record<string, unknown>;
}

type HeldMessage = LocalHold | RemoteHold;

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Registers the `toolmesh-confirm-gate` type (the palette shows its catalog's `confirm-gate.label.palette`) and its admin endpoints. */
export default function confirmGate(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, unknown>) => RED._(key, params as Record<string, string>);
  const gates = new Map<string, GateEndpoint>();

  function problemText(p: SettingsProblem): string {
    if (p.key === 'bad-field') return t('confirm-gate.errors.bad-field', { field: p.field, value: p.value, expected: p.expected });
    if (p.key === 'bad-key') return t('confirm-gate.errors.bad-key', { detail: p.detail });
    return t('confirm-gate.errors.no-key');
  }

  function ConfirmGateNode(this: Node<ConfirmGateCredentials>, def: NodeDef & ConfirmGateConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const userDir = (RED.settings as { userDir?: string }).userDir;
    const { settings, problems } = readGateSettings(def, node.credentials ?? {}, node.id, userDir ? (kid) => readKeyFile(userDir, kid) : undefined);
    const registry = registryOf(RED, def.registry);
    const problem = problems.length ? problemText(problems[0])
      : !def.registry ? t('confirm-gate.errors.no-registry')
      : !registry ? t('confirm-gate.errors.registry-not-deployed', { id: def.registry })
      : undefined;
    let closed = false;
    let lastOutcome: Outcome | undefined;
    let subscription: ApprovalSubscription | undefined;
    /** The client of the remote requests (settings.remoteRequests), and where it answers. */
    let remote: { sub: ApprovalSubscription; topics: ReturnType<typeof approvalTopics> } | undefined;
    /** Answers to settled remote requests by `caller approvalId`, sent again to a repeated request (bounded). */
    const answered = new Map<string, ApprovalResponseMessage>();
    /** Answers in flight, awaited (briefly) on close so `closed` reaches the callers. */
    const publishing = new Set<Promise<unknown>>();
    /**
     * Caps reached and warned about (`''` the total, else a caller id): one warning per cap until
     * a hold under it settles, however many requests a caller sends meanwhile.
     */
    const fullWarned = new Set<string>();

    const showStatus = () => {
      if (closed) return;
      if (book.size) return node.status({ fill: 'yellow', shape: 'ring', text: t('confirm-gate.status.waiting', { count: book.size }) });
      if (problem) return node.status({ fill: 'red', shape: 'ring', text: t(problems[0]?.key === 'no-key' ? 'confirm-gate.status.no-key' : 'confirm-gate.status.bad-config') });
      if (lastOutcome?.approved) return node.status({ fill: 'green', shape: 'dot', text: t('confirm-gate.status.approved', { approver: lastOutcome.approver }) });
      if (lastOutcome && lastOutcome.cause !== 'closed') {
        const text = lastOutcome.cause === 'person' ? t('confirm-gate.status.denied', { approver: lastOutcome.approver }) : t('confirm-gate.status.timed-out');
        return node.status({ fill: 'red', shape: 'ring', text });
      }
      node.status({ fill: 'green', shape: 'ring', text: t('confirm-gate.status.ready', { risk: settings.threshold }) });
    };

    /** Publishes an answer to a remote caller; a failure is one warning. */
    const answer = (caller: string, response: ApprovalResponseMessage, remember = true) => {
      if (remember) {
        answered.set(`${caller} ${response.approvalId}`, response);
        if (answered.size > 1000) answered.delete(answered.keys().next().value!);
      }
      if (!remote) return;
      const topic = remote.topics.response(caller);
      const p = remote.sub.publish(topic, JSON.stringify(response)).then((err) => {
        if (err) node.warn(t('confirm-gate.warn.remote-answer-failed', { id: response.approvalId, topic, error: err.message }));
      });
      publishing.add(p);
      void p.finally(() => publishing.delete(p));
    };

    /** The reason and model-readable message of a denial, as local and remote holds give it. */
    const denial = (r: Held<HeldMessage>['request'], outcome: Exclude<Outcome, { approved: true }>) => {
      const reason = outcome.cause === 'person' ? outcome.reason ?? t('confirm-gate.reason.none-given')
        : outcome.cause === 'timeout' ? t('confirm-gate.reason.timeout', { ms: r.expiresAt - r.requestedAt })
        : t('confirm-gate.reason.closed');
      const message = outcome.cause === 'person'
        ? t(outcome.reason ? 'confirm-gate.denied.person-reason' : 'confirm-gate.denied.person', { approver: outcome.approver, summary: r.summary, reason })
        : t(`confirm-gate.denied.${outcome.cause}`, { summary: r.summary, ms: r.expiresAt - r.requestedAt });
      return { reason, message };
    };

    /** Settles a request of another caller: publishes the token, or the denial. */
    const onRemoteSettle = (h: RemoteHold, r: Held<HeldMessage>['request'], outcome: Outcome) => {
      lastOutcome = outcome;
      if (outcome.approved) {
        let token: string;
        try {
          // signed for the caller of the request's topic: the only one the broker lets read the answer
          token = signApproval({
            kid: settings.kid, privateKey: settings.key!.privateKey, caller: h.caller, agent: r.agent, tool: r.tool,
            args: h.args, exp: Date.now() + settings.validityMs, approver: outcome.approver,
          });
        } catch (e) {
          const reason = t('confirm-gate.reason.sign-failed', { error: (e as Error).message });
          answer(h.caller, deniedResponse(r.approvalId, 'misconfigured', t('confirm-gate.denied.misconfigured', { summary: r.summary, problem: reason })));
          node.error(reason);
          return showStatus();
        }
        answer(h.caller, approvedResponse(r.approvalId, token, outcome.approver));
      } else {
        const { message } = denial(r, outcome);
        answer(h.caller, deniedResponse(r.approvalId, outcome.cause, message, outcome.cause === 'person' ? outcome.approver : undefined));
      }
      showStatus();
    };

    /** Sends a held call on output 3 with a DENIED result. */
    const deny = (h: LocalHold, callId: string | undefined, message: string, details: Record<string, unknown>) => {
      const result = deniedResult(callId, message, details);
      h.msg.toolResult = result;
      h.msg.payload = result.structuredContent;
      h.send([null, null, h.msg]);
    };

    /**
     * Sends a settled call on (approved: output 1 with its token; denied: output 3). Runs from
     * decisions (messages, HTTP, MQTT), timeouts and close, so it never throws: a failure to pass
     * the call on (say, Node-RED cannot clone the message) ends the held message with done(err).
     */
    const onSettle = (held: Held<HeldMessage>, outcome: Outcome) => {
      if (held.ctx.kind === 'remote') return onRemoteSettle(held.ctx, held.request, outcome);
      const h = held.ctx;
      const r = held.request;
      h.msg.approvalId = r.approvalId;
      lastOutcome = outcome;
      if (outcome.approved) {
        try {
          h.toolCall.approval = signApproval({
            kid: settings.kid, privateKey: settings.key!.privateKey, caller: registry!.callerId, agent: r.agent, tool: r.tool,
            args: isObject(h.toolCall.arguments) ? h.toolCall.arguments : {}, exp: Date.now() + settings.validityMs, approver: outcome.approver,
          });
        } catch (e) {
          // the key was checked at start, so this is a bug or a broken runtime: never send unsigned
          const reason = t('confirm-gate.reason.sign-failed', { error: (e as Error).message });
          deny(h, r.callId, t('confirm-gate.denied.misconfigured', { summary: r.summary, problem: reason }), { approvalId: r.approvalId, cause: 'misconfigured', reason });
          showStatus();
          return h.done(new Error(reason));
        }
        h.send([h.msg, null, null]);
      } else {
        const { reason, message } = denial(r, outcome);
        const who = outcome.cause === 'person' ? { approver: outcome.approver } : {};
        deny(h, r.callId, message, { approvalId: r.approvalId, cause: outcome.cause, ...who, reason });
      }
      showStatus();
      h.done();
    };

    /** A pending request as pages and llm-agents see it ({@link HeldEvent}). */
    const heldEvent = (r: ApprovalRequestPayload): HeldEvent => ({
      gate: node.id, ...(def.name ? { gateName: def.name } : {}), approvalId: r.approvalId, ...(r.callId !== undefined ? { callId: r.callId } : {}),
      summary: r.summary, agent: r.agent, tool: r.tool, risk: r.risk, ...(r.requester ? { requester: r.requester } : {}),
      ...(r.caller !== undefined ? { caller: r.caller } : {}), requestedAt: r.requestedAt, expiresAt: r.expiresAt,
    });

    /**
     * Tells pages and llm-agents a hold ended: `settled` on toolmeshEvents, and
     * `approval-settled` on output 2 (without `_client`, so every page's card for it goes,
     * also on a page that did not ask). Never throws.
     */
    const announceSettled = (r: ApprovalRequestPayload, outcome: Outcome) => {
      const event: SettledEvent = {
        gate: node.id, approvalId: r.approvalId, ...(r.callId !== undefined ? { callId: r.callId } : {}),
        outcome: outcome.approved ? 'approved' : outcome.cause === 'person' ? 'denied' : outcome.cause,
        ...(outcome.approved || outcome.cause === 'person' ? { by: outcome.approver } : {}), ts: Date.now(),
      };
      emitSettled(event);
      try {
        node.send([null, { topic: 'approval-settled', payload: event }, null]);
      } catch (e) {
        node.error(t('confirm-gate.errors.send-failed', { summary: r.summary, decision: event.outcome, error: (e as Error)?.message ?? String(e) }));
      }
    };

    const book = new ApprovalBook<HeldMessage>((held: Held<HeldMessage>, outcome: Outcome) => {
      emitApprovals();
      announceSettled(held.request, outcome);
      fullWarned.delete('');
      if (held.request.caller !== undefined) fullWarned.delete(held.request.caller);
      try {
        onSettle(held, outcome);
      } catch (e) {
        const decision = outcome.approved ? 'approved' : outcome.cause === 'person' ? 'denied' : outcome.cause;
        try {
          showStatus();
          if (held.ctx.kind === 'remote') throw e;
          held.ctx.done(new Error(t('confirm-gate.errors.send-failed', { summary: held.request.summary, decision, error: (e as Error)?.message ?? String(e) })));
        } catch (e2) {
          node.error(t('confirm-gate.errors.send-failed', { summary: held.request.summary, decision, error: (e2 as Error)?.message ?? String(e2) }));
        }
      }
    }, { maxPending: settings.maxPending, maxPerCaller: settings.maxPendingPerCaller });

    /** Why a decision without an id was refused, naming the waiting approval ids. */
    const refusalText = (r: Extract<DecideResult<HeldMessage>, { status: 'refused' }>, via: string): string => {
      const ids = r.pending.join(', ') + (r.count > r.pending.length ? t('confirm-gate.errors.more-ids', { count: r.count - r.pending.length }) : '');
      if (r.why === 'several') return t('confirm-gate.errors.several-pending', { count: r.count, ids, via });
      return t('confirm-gate.errors.remote-pending', { ids, caller: book.get(r.pending[0])?.caller ?? '', via });
    };

    /**
     * Applies a decision; a repeated or unknown one is warned about and ignored. A refused one
     * (no id, and not exactly one call of this gate's own input waiting) is left to the caller
     * (`refused` is its text): an error for a message, a 409 for HTTP, a warning for MQTT.
     */
    const apply = (d: Decision, via: string): { r: DecideResult<HeldMessage>; refused?: string } => {
      const r = book.decide(d);
      report(r, via);
      return r.status === 'refused' ? { r, refused: refusalText(r, via) } : { r };
    };

    /** Warns about a repeated (`already`) or an `unknown` decision; other results say nothing. */
    const report = (r: DecideResult<unknown> | (GateDecisionResult & { id: string }), via: string) => {
      if (r.status === 'already') node.warn(t('confirm-gate.warn.already', { id: printable(r.id), settled: r.settled, via }));
      if (r.status === 'unknown') node.warn(r.id ? t('confirm-gate.warn.unknown', { id: printable(r.id), via }) : t('confirm-gate.warn.none-pending', { via }));
    };

    /**
     * A message decision naming an approval id this gate never held (nor remembers): decided by
     * the deployed gate that holds it, so a page wired to one gate decides every gate's holds.
     * @returns false when no other gate knows the id (this gate handles the decision as before).
     */
    const forward = (d: Decision): boolean => {
      if (d.id === undefined || book.has(d.id) || book.settledAs(d.id)) return false;
      const other = gateKnowing(d.id, node.id);
      if (!other) return false;
      report({ ...other.source.decide({ id: d.id, approve: d.approve, approver: d.approver, ...(d.reason ? { reason: d.reason } : {}) }), id: d.id }, 'message');
      return true;
    };

    /** The denial text for a call or request refused because a cap is reached. */
    const fullText = (full: FullCap, summary: string): string => full.cap === 'total'
      ? t('confirm-gate.denied.full', { summary, max: full.max })
      : t('confirm-gate.denied.full-caller', { summary, max: full.max, caller: full.caller });

    /** A tool call: passed on, held, or (misconfigured gate) denied at once. */
    const onCall = (msg: Msg, send: Send, done: Done) => {
      let call;
      try {
        call = parseToolCall(msg.toolCall);
      } catch (e) {
        if (!(e instanceof ToolMessageError)) throw e;
        return done(new Error(t('confirm-gate.errors.bad-message', { field: e.field, expected: t(`confirm-gate.expect.${e.expected}`), got: e.got })));
      }
      // the gate signs and strips the token on the message's own object, which it passes on
      const tc = msg.toolCall as Record<string, unknown>;
      const { agent, tool } = call;
      const catalogRisk = registry?.listAgents().find((a) => a.id === agent)?.catalog?.tools.find((x) => x.name === tool)?.annotations?.risk;
      const risk = higherRisk(call.risk, catalogRisk);
      if (!isHeld(settings, agent, tool, risk)) {
        send([msg, null, null]);
        return done();
      }
      // a token that came in with the message was not made for this hold
      delete tc.approval;
      const args = call.arguments;
      const summary = summarizeCall(agent, tool, args);
      const callId = typeof call.id === 'string' ? call.id : undefined;
      const held: LocalHold = { msg, toolCall: tc, send, done };
      if (problem || !settings.key || !registry) {
        deny(held, callId, t('confirm-gate.denied.misconfigured', { summary, problem }), { cause: 'misconfigured', reason: problem });
        showStatus();
        return done(new Error(problem));
      }
      const full = book.full();
      if (full) {
        // nothing is kept for it: no timer, no request on output 2
        const reason = fullText(full, summary);
        deny(held, callId, reason, { cause: 'full', max: full.max });
        showStatus();
        return done(new Error(reason));
      }
      // past the llm-agent's wait the call would run with nobody to hear the result
      const holdMs = call.timeoutMs !== undefined ? Math.min(settings.timeoutMs, call.timeoutMs) : settings.timeoutMs;
      const request = book.hold({ summary, agent, tool, arguments: structuredClone(args), risk: risk ?? 'unknown', ...(callId ? { callId } : {}) }, held, holdMs);
      // Dashboard 2.0 routes a message with msg._client to the page it came from (outputs 1 and 3 send msg itself, so carry it)
      send([null, { topic: 'approval-request', payload: structuredClone(request), ...(msg._client !== undefined ? { _client: msg._client } : {}) }, null]);
      emitHeld(heldEvent(request));
      emitApprovals();
      showStatus();
    };

    node.on('input', (msg: Msg, send: Send, done: Done) => {
      let decision: Decision | undefined;
      try {
        decision = messageDecision(msg);
      } catch (e) {
        if (!(e instanceof DecisionError)) throw e;
        return done(new Error(t('confirm-gate.errors.bad-decision', { field: e.field, expected: e.expected, got: e.got })));
      }
      if (decision) {
        if (forward(decision)) return done();
        const { refused } = apply(decision, 'message');
        return done(refused ? new Error(refused) : undefined);
      }
      if (msg.toolCall === undefined && msg.topic === 'list-approvals') {
        // every deployed gate's holds, back to the page that asked
        send([null, { topic: 'approvals', payload: allHolds(), ...(msg._client !== undefined ? { _client: msg._client } : {}) }, null]);
        return done();
      }
      if (msg.toolCall === undefined) return done(new Error(t('confirm-gate.errors.no-tool-call')));
      onCall(msg, send, done);
    });

    if (settings.approvalTopic) {
      const topic = settings.approvalTopic;
      if (!registry?.agentConnection) {
        node.warn(t('confirm-gate.warn.mqtt-unavailable', { topic }));
      } else {
        void registry.agentConnection().then((c) => {
          if (closed) return;
          if (!c) return node.warn(t('confirm-gate.warn.mqtt-unavailable', { topic }));
          let announced = false;
          subscription = subscribeApprovals({
            connection: c.connection,
            topic,
            // runs inside the MQTT client: whatever a message does, it ends here as one warning
            onMessage: (payload, from) => {
              if (closed) return;
              try {
                const { refused } = apply(mqttDecision(payload, from), 'MQTT');
                if (refused) node.warn(refused);
              } catch (e) {
                if (e instanceof DecisionError) node.warn(t('confirm-gate.errors.bad-decision', { field: e.field, expected: e.expected, got: e.got }));
                else node.warn(t('confirm-gate.warn.mqtt-message-failed', { topic: printable(from), error: printable((e as Error)?.message ?? String(e)) }));
              }
            },
            onRefused: (bytes, max, from) => {
              if (!closed) node.warn(t('confirm-gate.warn.mqtt-too-large', { topic: printable(from), bytes, max }));
            },
            onState: (state, detail) => {
              if (closed) return;
              if (state === 'refused') node.warn(t('confirm-gate.warn.mqtt-refused', { topic, detail: detail ?? '' }));
              if (state === 'connected' && !announced) {
                announced = true;
                node.log(t('confirm-gate.log.mqtt', { topic }));
              }
            },
          });
        }).catch((e: Error) => {
          if (!closed) node.warn(t('confirm-gate.warn.mqtt-failed', { topic, error: e.message }));
        });
      }
    }

    /** A request from another caller: answered at once, held, or (malformed) one warning. */
    const onRemoteRequest = (text: string, topic: string) => {
      const caller = remote!.topics.callerOf(topic, 'req');
      if (!caller) return node.warn(t('confirm-gate.warn.remote-bad', { topic, field: 'topic', problem: t('confirm-gate.expect.caller-topic') }));
      const read = readApprovalRequest(text);
      if ('problem' in read) {
        node.warn(t('confirm-gate.warn.remote-bad', { topic, field: read.problem.field, problem: read.problem.problem }));
        // a request that cannot be held is answered, so the caller does not wait for nothing
        const id = approvalIdOf(text);
        if (id && !book.has(id)) answer(caller, deniedResponse(id, 'misconfigured', t('confirm-gate.denied.remote-bad', { field: read.problem.field, problem: read.problem.problem })), false);
        return;
      }
      const q = read.request;
      const before = answered.get(`${caller} ${q.approvalId}`);
      // a repeat after the answer (the caller reconnected and missed it) gets the same answer again
      if (before) return answer(caller, before, false);
      if (book.has(q.approvalId)) {
        const mine = book.get(q.approvalId)?.caller === caller;
        // a repeat while pending joins the hold; another caller's id clash is refused
        if (!mine) node.warn(t('confirm-gate.warn.remote-id-in-use', { id: q.approvalId, caller }));
        return;
      }
      if (book.settledAs(q.approvalId)) return node.warn(t('confirm-gate.warn.remote-id-in-use', { id: q.approvalId, caller }));
      const catalogRisk = registry?.listAgents().find((a) => a.id === q.agent)?.catalog?.tools.find((x) => x.name === q.tool)?.annotations?.risk;
      const risk = higherRisk(q.risk, catalogRisk) ?? 'unknown';
      // the person reads what the token binds: the gate's own summary of agent, tool and arguments;
      // the caller's own line (untrusted: it could say "read uptime" for a restart) is kept beside it
      const summary = summarizeCall(q.agent, q.tool, q.arguments);
      const requestSummary = q.summary?.trim();
      if (problem || !settings.key || !registry) {
        return answer(caller, deniedResponse(q.approvalId, 'misconfigured', t('confirm-gate.denied.misconfigured', { summary, problem })));
      }
      const full = book.full(caller);
      if (full) {
        // answered, but not remembered, timed or shown: a flood costs no memory here
        answer(caller, deniedResponse(q.approvalId, 'misconfigured', fullText(full, summary)), false);
        const key = full.cap === 'total' ? '' : caller;
        if (!fullWarned.has(key)) {
          fullWarned.add(key);
          node.warn(t(full.cap === 'total' ? 'confirm-gate.warn.full' : 'confirm-gate.warn.full-caller', { max: full.max, caller }));
        }
        return;
      }
      const holdMs = Math.min(settings.timeoutMs, q.expiresAt - Date.now());
      if (holdMs <= 0) {
        return answer(caller, deniedResponse(q.approvalId, 'timeout', t('confirm-gate.denied.remote-expired', { summary })));
      }
      const ctx: RemoteHold = { kind: 'remote', caller, args: structuredClone(q.arguments) };
      const request = book.hold({
        summary, agent: q.agent, tool: q.tool, arguments: structuredClone(q.arguments), risk, caller,
        ...(q.requester ? { requester: q.requester } : {}), ...(requestSummary ? { requestSummary } : {}),
      }, ctx, holdMs, q.approvalId);
      node.send([null, { topic: 'approval-request', payload: structuredClone(request) }, null]);
      emitHeld(heldEvent(request));
      emitApprovals();
      showStatus();
    };

    if (settings.remoteRequests) {
      if (!registry?.agentConnection) {
        node.warn(t('confirm-gate.warn.remote-unavailable'));
      } else {
        void registry.agentConnection().then((c) => {
          if (closed) return;
          if (!c) return node.warn(t('confirm-gate.warn.remote-unavailable'));
          const at = approvalTopics(c.root);
          let announced = false;
          const sub = subscribeApprovals({
            connection: c.connection,
            topic: at.anyRequest,
            maxBytes: MAX_APPROVAL_MESSAGE_BYTES,
            // runs inside the MQTT client: whatever a message does, it ends here as one warning
            onMessage: (payload, from) => {
              if (closed) return;
              try {
                onRemoteRequest(payload, from);
              } catch (e) {
                node.warn(t('confirm-gate.warn.remote-failed', { topic: from, error: (e as Error)?.message ?? String(e) }));
              }
            },
            onRefused: (bytes, max, from) => {
              if (!closed) node.warn(t('confirm-gate.warn.remote-too-large', { topic: from, bytes, max }));
            },
            onState: (state, detail) => {
              if (closed) return;
              if (state === 'refused') node.warn(t('confirm-gate.warn.remote-refused', { topic: at.anyRequest, detail: detail ?? '' }));
              if (state === 'connected' && !announced) {
                announced = true;
                node.log(t('confirm-gate.log.remote', { topic: at.anyRequest }));
              }
            },
          });
          remote = { sub, topics: at };
        }).catch((e: Error) => {
          if (!closed) node.warn(t('confirm-gate.warn.remote-unavailable-because', { error: e.message }));
        });
      }
    }

    const endpoint: GateEndpoint = { kid: settings.kid, publicKeyPem: settings.key?.publicKeyPem, pending: () => book.list(), decide: (d) => apply(d, 'HTTP') };
    gates.set(node.id, endpoint);
    // the editor sidebar counts this gate's holds (their details stay behind the admin endpoint)
    const removeSource = addGateSource(node.id, {
      name: def.name || undefined,
      pending: () => book.size,
      holds: () => book.list().map(heldEvent),
      knows: (id) => book.has(id) || book.settledAs(id) !== undefined,
      decide: (d) => {
        const r = book.decide(d);
        return r.status === 'settled' ? { status: 'settled' } : r.status === 'already' ? { status: 'already', settled: r.settled } : { status: 'unknown' };
      },
    });
    // the flow agents of this Node-RED (tool-in) trust the approvals this gate signs
    const removeKey = settings.key ? addGateKey(node.id, settings.kid, settings.key.publicKeyPem) : undefined;
    if (problem) node.warn(problem);
    showStatus();

    node.on('close', (_removed: boolean, done: () => void) => {
      if (gates.get(node.id) === endpoint) gates.delete(node.id);
      // the waiting llm-agent runs get an answer instead of hanging until their own timeout
      book.closeAll();
      removeSource();
      removeKey?.();
      closed = true;
      // the `closed` answers to remote callers go out before their client ends (2 s at most)
      const flushed = Promise.race([Promise.all([...publishing]), new Promise((r) => setTimeout(r, 2000))]);
      void flushed.then(() => Promise.all([subscription?.stop(), remote?.sub.stop()])).then(() => done());
    });
  }

  RED.nodes.registerType<Node<ConfirmGateCredentials>, NodeDef & ConfirmGateConfig, object, ConfirmGateCredentials>('toolmesh-confirm-gate', ConfirmGateNode, {
    credentials: { signingKey: { type: 'password' } },
  });
  registerAdminEndpoints(RED, gates);
}
