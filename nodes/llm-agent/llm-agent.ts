/**
 * Node-RED node `llm-agent`: runs the tool-calling loop ({@link runToolLoop}) against any
 * OpenAI-compatible endpoint for each message, with the tools its tool-registry offers.
 *
 * Outputs: 1 the answer (`msg.payload`, `msg.messages`, `msg.toolCalls`, `msg.usage`);
 * 2 tool calls as messages (`msg.toolCall`, `msg.payload` = arguments) — every call in wired
 * mode, and calls at or above the approval risk in direct mode — whose results come back into
 * the input as `msg.toolResult`; 3 run events when "progress" is on (the loop's, and the
 * confirm-gate holds of the run's calls). Every message of a run carries the input's `sessionId`
 * (or the one it was given by `msg.topic`) and its `_client` (Dashboard 2.0). Failures (LLM errors, max
 * iterations, run timeout, token budget, bad input) go to Catch nodes through `done(err)`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import OpenAI from 'openai';
import { RISK_LEVELS, printable, toolErrorResult, type Risk } from '@toolmesh/agent/protocol';
import { registryOf, type RegistryState, type RegistryUser } from '../shared/registry-api';
import { registryStatus as statusOf } from '../shared/status';
import { looksLikeToolResult, parseToolResult, ToolMessageError, type ToolCall } from '../shared/tool-messages';
import { asksNothing, clearConversation, ConversationStore, InputError, openConversation, SessionRuns, sessionIdOf, usesMemory, type ContextLike } from './conversation';
import { fetchWithNestedErrors } from './providers';
import { readSettings, type LlmAgentConfig, type LlmAgentCredentials, type SettingsProblem } from './settings';
import { runToolLoop, ToolLoopError, type LoopEvent, type RunEvent, type ToolMode, type ToolSource } from './tool-loop';
import { RunHolds } from './run-holds';
import { ToolIndex, type AgentInfo, type ToolBlockState } from './tool-select';
import { WiredCalls, type WiredToolCall } from './wired-calls';

export type { LlmAgentConfig, LlmAgentCredentials } from './settings';

type Send = (msg: Array<NodeMessageInFlow | Record<string, unknown> | null>) => void;

/**
 * How the messages of one run leave: its `send`, the fields every message of the run carries
 * (`sessionId`, and the input's `_client`, Dashboard 2.0's routing to the browser that asked),
 * and the run's {@link RunHolds} when it reports holds.
 */
interface RunRoute {
  send: Send;
  carry: { sessionId: string; _client?: unknown };
  holds?: RunHolds;
}

/** Registers the `toolmesh-llm-agent` type (the palette shows its catalog's `llm-agent.label.palette`). */
export default function llmAgent(RED: NodeAPI): void {
  function problemText(p: SettingsProblem): string {
    return p.key === 'no-endpoint' ? RED._('llm-agent.errors.no-endpoint') : RED._('llm-agent.errors.bad-field', { field: p.field, value: p.value, expected: p.expected });
  }

  function LlmAgentNode(this: Node<LlmAgentCredentials>, def: NodeDef & LlmAgentConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const { settings, problems } = readSettings(def, node.credentials ?? {});
    // nothing listens on output 2: a call that must leave there cannot come back
    const outputTwoWired = ((def as { wires?: string[][] }).wires?.[1]?.length ?? 0) > 0;
    const registry = registryOf(RED, def.registry);
    const problem = problems.length ? problemText(problems[0])
      : def.registry && !registry ? RED._('llm-agent.errors.no-registry', { id: def.registry })
      : settings.mode === 'wired' && !registry ? RED._('llm-agent.errors.wired-needs-registry')
      : settings.mode === 'wired' && !outputTwoWired ? RED._('llm-agent.errors.wired-needs-output')
      : undefined;
    // local servers (Ollama, llama.cpp) need no key, but the client requires one
    const client = new OpenAI({ baseURL: settings.baseURL, apiKey: settings.apiKey ?? 'none', maxRetries: 1, fetch: fetchWithNestedErrors() });
    const runs = new Map<AbortController, Promise<void>>();
    // one queue per session: runs that share a history never overlap (see conversation.ts)
    const sessions = new SessionRuns();
    // the stored conversations, bounded by maxSessions and sessionIdleMs (conversation.ts)
    const conversations = new ConversationStore(node.context() as unknown as ContextLike, settings, {
      onError: (e, sessionId) => node.warn(RED._('llm-agent.warn.evict-failed', { session: sessionId ?? '*', error: e.message })),
    });
    let registryState: RegistryState | undefined;
    /** The last status a run showed, put back when the registry reconnects during runs. */
    let busyStatus: NodeStatus | undefined;
    let closing = false;
    // what the endpoint refused once is not tried again (LoopFallback)
    let streamWithTools = true;
    let toolMode: ToolMode | 'auto' = settings.toolMode;

    let registryDetail: string | undefined;
    const registryStatus = (state: RegistryState): NodeStatus => statusOf('llm-agent', state, (k, p) => RED._(k, p), registryDetail);
    const showBusy = (status: NodeStatus) => {
      busyStatus = status;
      node.status(status);
    };
    const showIdle = () => {
      if (problem) {
        const key = problems[0]?.key === 'no-endpoint' ? 'no-endpoint' : 'bad-config';
        node.status({ fill: key === 'no-endpoint' ? 'yellow' : 'red', shape: 'ring', text: RED._(`llm-agent.status.${key}`) });
      } else if (registry && registryState) {
        node.status(registryStatus(registryState));
      } else if (!registry) {
        node.status({ fill: 'grey', shape: 'ring', text: RED._('llm-agent.status.no-tools') });
      }
    };
    const user: RegistryUser = {
      id: node.id,
      onRegistryState(state, detail) {
        registryState = state;
        registryDetail = detail;
        if (!runs.size) showIdle();
        // during runs too: calls wait for the broker while it is away
        else if (state !== 'connected') node.status(registryStatus(state));
        else if (busyStatus) node.status(busyStatus);
      },
    };
    registry?.register(user);
    // the tool index lives as long as the node and follows the catalog's changes (tool-select.ts)
    const toolIndex = new ToolIndex();
    let catalogRevision = 0;
    const offCatalog = registry?.onCatalogChange(() => { catalogRevision++; });
    const toolBudget = { maxTools: settings.maxTools, maxTokens: settings.maxToolTokens, pinned: settings.pinnedTools };
    // each session's frozen tool block (a stable prompt prefix, tool-select.ts): at most maxSessions, least recently used out first
    const toolBlocks = new Map<string, ToolBlockState>();
    const toolBlockOf = (sessionId: string): ToolBlockState => {
      const block = toolBlocks.get(sessionId) ?? {};
      toolBlocks.delete(sessionId);
      toolBlocks.set(sessionId, block);
      while (toolBlocks.size > Math.max(1, settings.maxSessions)) toolBlocks.delete(toolBlocks.keys().next().value!);
      return block;
    };
    // status `kind` (docs/protocol.md, "Topics"); `name` where an agent adds one (status objects are loose)
    const listAgents = (): AgentInfo[] => (registry?.listAgents() ?? []).map((a) => ({ id: a.id, name: typeof a.status?.name === 'string' ? a.status.name : undefined, kind: a.status?.kind }));
    showIdle();
    if (problem) node.warn(problem);

    // calls that leave on output 2, each through the send() of the run that made it
    const wired = new WiredCalls<RunRoute>((call: WiredToolCall, route) => {
      showBusy({ fill: 'blue', shape: 'ring', text: RED._('llm-agent.status.waiting', { count: wired.size }) });
      const toolCall: ToolCall = call;
      route.holds?.noteWired(call.id, call.modelCallId);
      route.send([null, { topic: call.name, payload: call.arguments, toolCall, ...route.carry }, null]);
    });
    const needsWire = (risk: Risk) => settings.mode === 'wired'
      || (settings.approvalRisk !== undefined && RISK_LEVELS.indexOf(risk) >= RISK_LEVELS.indexOf(settings.approvalRisk));

    /** The tools of one run: the registry's, with calls routed out of output 2 where the mode says so. */
    function toolsFor(route: RunRoute): ToolSource | undefined {
      if (!registry) return undefined;
      return {
        listTools: () => registry.listTools(),
        ...(registry.toolsByAgent ? { toolsByAgent: () => registry.toolsByAgent!() } : {}),
        catalogRevision: () => catalogRevision,
        listAgents,
        call(agentId, tool, args, opts, info) {
          const risk = (RISK_LEVELS as readonly string[]).includes(info?.risk ?? '') ? info!.risk as Risk : 'low';
          if (!needsWire(risk)) return registry.call(agentId, tool, args, opts);
          if (!outputTwoWired) {
            return Promise.resolve(toolErrorResult('APPROVAL_REQUIRED', RED._('llm-agent.errors.approval-unwired', { tool: `${agentId}/${tool}`, risk }), { risk }));
          }
          const target = { agent: agentId, tool, name: info?.name ?? tool, risk, modelCallId: info?.id ?? '' };
          return wired.call(target, args, settings.wiredTimeoutMs, route, opts?.signal);
        },
      };
    }

    function onEvent(e: LoopEvent, route: RunRoute): void {
      if (e.type === 'turn-start') showBusy({ fill: 'blue', shape: 'dot', text: RED._('llm-agent.status.thinking') });
      if (e.type === 'tool-call-start') {
        const tool = e.agent ? `${e.agent}/${e.tool}` : e.name;
        showBusy({ fill: 'blue', shape: 'dot', text: RED._('llm-agent.status.calling', { tool }) });
      }
      if (e.type === 'fallback') {
        if (e.from === 'stream') streamWithTools = false;
        if (e.from === 'native') toolMode = 'json';
        node.warn(RED._(`llm-agent.warn.fallback-${e.from}`, { reason: printable(e.reason) }));
      }
      if (settings.progress) sendEvent(e, route);
    }

    /** A run event out of output 3 (`msg.topic` the session id). */
    function sendEvent(e: RunEvent, route: RunRoute): void {
      route.send([null, null, { topic: route.carry.sessionId, payload: e, ...route.carry }]);
    }

    /** A tool result coming back from output 2's flow. */
    function onResult(msg: NodeMessageInFlow & Record<string, unknown>, done: (err?: Error) => void): void {
      const id = WiredCalls.idOf(msg);
      if (id === undefined) return done(new Error(RED._('llm-agent.errors.result-without-id')));
      if (!wired.has(id)) {
        node.warn(RED._('llm-agent.warn.unknown-result', { id: printable(String(id)) }));
        return done();
      }
      const result = msg.toolResult !== undefined ? msg.toolResult
        : { content: [{ type: 'text', text: 'EXECUTION_FAILED: the tool call came back without msg.toolResult' }], structuredContent: { error: { code: 'EXECUTION_FAILED', message: 'the tool call came back without msg.toolResult' } }, isError: true };
      // a ready result (a content array) must keep the contract, or the model would read a broken one
      if (looksLikeToolResult(result)) {
        try {
          parseToolResult(result);
        } catch (e) {
          if (!(e instanceof ToolMessageError)) throw e;
          const text = RED._('llm-agent.errors.bad-result', { field: e.field, expected: RED._(`llm-agent.expect.${e.expected}`), got: e.got });
          wired.settle(id, toolErrorResult('EXECUTION_FAILED', text));
          return done(new Error(text));
        }
      }
      wired.settle(id, result);
      done();
    }

    node.on('input', (msg: NodeMessageInFlow & Record<string, unknown>, send: Send, done: (err?: Error) => void) => {
      // a tool call coming back (with or without its result) is never a prompt
      if (msg.toolResult !== undefined || msg.toolCall !== undefined) return onResult(msg, done);
      // a reset alone (no prompt) needs no endpoint: it only clears this session's memory
      const resetOnly = msg.reset && (msg.payload === undefined || msg.payload === null || msg.payload === '');
      if (problem && !resetOnly) {
        showIdle();
        return done(new Error(problem));
      }
      const ac = new AbortController();
      const sessionId = sessionIdOf(msg);
      const route: RunRoute = { send, carry: { sessionId, ...(msg._client !== undefined ? { _client: msg._client } : {}) } };
      // run events say when a gate holds one of this run's calls, and how the hold ended
      if (settings.progress) route.holds = new RunHolds((e) => sendEvent(e, route), (e) => node.warn(e.message));
      // a reset takes effect now, also while a run of this session is under way: that run answers
      // but does not store its history; runs that start later begin from the empty history
      const resetting = msg.reset ? sessions.reset(sessionId, () => clearConversation(sessionId, conversations)) : undefined;
      if (msg.reset) toolBlocks.delete(sessionId);
      resetting?.catch(() => undefined); // this message's run reports it
      const work = async (stale: () => boolean): Promise<void> => {
        if (resetting) await resetting;
        const started = Date.now();
        const conversation = await openConversation(msg, settings, conversations, { stale });
        if (conversation.empty) {
          if (problem) showIdle();
          else node.status({ fill: 'grey', shape: 'dot', text: RED._(msg.reset ? 'llm-agent.status.reset' : 'llm-agent.status.idle') });
          if (msg.reset) return done();
          throw new InputError('no-prompt');
        }
        const result = await runToolLoop({
          client, model: settings.model, messages: conversation.messages, systemPrompt: settings.systemPrompt,
          tools: toolsFor(route), maxIterations: settings.maxIterations, toolTimeoutMs: settings.toolTimeoutMs, maxParallelToolCalls: settings.maxParallelToolCalls,
          temperature: settings.temperature, runTimeoutMs: settings.runTimeoutMs, maxTotalTokens: settings.maxTotalTokens,
          stream: settings.stream, streamWithTools, toolMode, vision: settings.vision, toolBudget, toolIndex, toolSession: toolBlockOf(conversation.sessionId),
          signal: ac.signal, onEvent: (e) => onEvent(e, route),
        });
        await conversation.remember(result.messages);
        Object.assign(msg, {
          payload: result.answer, messages: result.messages, toolCalls: result.toolCalls, usage: result.usage, toolsOffered: result.toolsOffered, sessionId: conversation.sessionId,
        });
        node.status({ fill: 'green', shape: 'dot', text: RED._('llm-agent.status.done', { tools: result.toolCalls.length, ms: Date.now() - started }) });
        send([msg, null, null]);
        done();
      };
      // runs that read and write the session's history wait for the earlier ones of that session
      const queued = usesMemory(msg, settings) && !asksNothing(msg);
      const run = (queued ? sessions.run(sessionId, work) : work(() => false)).catch((err: Error) => {
        if (err instanceof InputError) {
          node.status({ fill: 'red', shape: 'ring', text: RED._('llm-agent.status.failed', { code: 'input' }) });
          return done(new Error(RED._(`llm-agent.errors.${err.key}`, err.params)));
        }
        if (err instanceof ToolLoopError) Object.assign(msg, { messages: err.partial.messages, toolCalls: err.partial.toolCalls, usage: err.partial.usage, toolsOffered: err.partial.toolsOffered });
        const code = err instanceof ToolLoopError ? (err.status ? `HTTP ${err.status}` : err.code) : 'error';
        node.status({ fill: 'red', shape: 'ring', text: RED._('llm-agent.status.failed', { code }) });
        if (closing && err instanceof ToolLoopError && err.code === 'ABORTED') {
          // the flow is stopping (redeploy or shutdown) and its Catch nodes stop with it: an error
          // handed to them would vanish, so the runtime log gets it
          node.error(RED._('llm-agent.errors.closed'));
          return done();
        }
        done(err);
      }).finally(() => {
        route.holds?.close();
        runs.delete(ac);
      });
      runs.set(ac, run);
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      conversations.close();
      for (const ac of runs.keys()) ac.abort();
      wired.cancelAll(RED._('llm-agent.errors.closed'));
      registry?.deregister(user);
      offCatalog?.();
      void Promise.allSettled(runs.values()).then(() => done());
    });
  }

  RED.nodes.registerType<Node<LlmAgentCredentials>, NodeDef & LlmAgentConfig, object, LlmAgentCredentials>('toolmesh-llm-agent', LlmAgentNode, {
    credentials: { apiKey: { type: 'password' } },
  });
}
