/**
 * Node-RED node `llm-agent`: runs the tool-calling loop ({@link runToolLoop}) against any
 * OpenAI-compatible endpoint for each message, with the tools its tool-registry offers.
 * Input `msg.payload` (prompt) and/or `msg.messages` (conversation); output the answer on
 * `msg.payload` plus `msg.messages`, `msg.toolCalls` and `msg.usage`. Failures (LLM errors, max
 * iterations, config problems) go to Catch nodes through `done(err)`.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import OpenAI from 'openai';
import type { ChatCompletionMessageParam } from 'openai/resources/chat/completions';
import type { RegistryState, RegistryUser, ToolRegistryApi } from '../shared/registry-api';
import { readSettings, type LlmAgentConfig, type LlmAgentCredentials, type SettingsProblem } from './settings';
import { runToolLoop, ToolLoopError, type LoopEvent } from './tool-loop';

export type { LlmAgentConfig, LlmAgentCredentials } from './settings';

/** Fill and shape of the idle status for each registry state (texts from Node-RED's common catalog). */
const REGISTRY_STATUS: Record<RegistryState, NodeStatus> = {
  connected: { fill: 'green', shape: 'dot', text: 'node-red:common.status.connected' },
  connecting: { fill: 'yellow', shape: 'ring', text: 'node-red:common.status.connecting' },
  disconnected: { fill: 'red', shape: 'ring', text: 'node-red:common.status.disconnected' },
  error: { fill: 'red', shape: 'ring', text: 'node-red:common.status.error' },
};

/** Registers the `llm-agent` type. */
export default function llmAgent(RED: NodeAPI): void {
  /** The conversation of one message: `msg.messages` (if any) then a string `msg.payload` as the next user turn. */
  function conversationOf(msg: NodeMessageInFlow & { messages?: unknown }): ChatCompletionMessageParam[] {
    const { messages, payload } = msg;
    if (messages !== undefined && !Array.isArray(messages)) throw new Error(RED._('llm-agent.errors.bad-messages', { type: typeof messages }));
    const out = [...(messages ?? [])] as ChatCompletionMessageParam[];
    const bad = out.findIndex((m) => typeof m !== 'object' || m === null || typeof (m as { role?: unknown }).role !== 'string');
    if (bad >= 0) throw new Error(RED._('llm-agent.errors.bad-message', { index: bad }));
    if (typeof payload === 'string' && payload.trim() !== '') out.push({ role: 'user', content: payload });
    if (!out.length) throw new Error(RED._('llm-agent.errors.no-prompt'));
    return out;
  }

  function problemText(p: SettingsProblem): string {
    return p.key === 'no-endpoint' ? RED._('llm-agent.errors.no-endpoint') : RED._('llm-agent.errors.bad-field', { field: p.field, value: p.value, expected: p.expected });
  }

  function LlmAgentNode(this: Node<LlmAgentCredentials>, def: NodeDef & LlmAgentConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const { settings, problems } = readSettings(def, node.credentials ?? {});
    const registry = def.registry ? (RED.nodes.getNode(def.registry) as unknown as ToolRegistryApi | null) : null;
    const problem = problems.length ? problemText(problems[0])
      : def.registry && !registry ? RED._('llm-agent.errors.no-registry', { id: def.registry })
      : undefined;
    // local servers (Ollama, llama.cpp) need no key, but the client requires one
    const client = new OpenAI({ baseURL: settings.baseURL, apiKey: settings.apiKey ?? 'none', maxRetries: 1 });
    const runs = new Map<AbortController, Promise<void>>();
    let registryState: RegistryState | undefined;
    let closing = false;

    const showIdle = () => {
      if (problem) {
        const key = problems[0]?.key === 'no-endpoint' ? 'no-endpoint' : 'bad-config';
        node.status({ fill: key === 'no-endpoint' ? 'yellow' : 'red', shape: 'ring', text: RED._(`llm-agent.status.${key}`) });
      } else if (registry && registryState) {
        node.status({ ...REGISTRY_STATUS[registryState], text: RED._(REGISTRY_STATUS[registryState].text as string) });
      } else if (!registry) {
        node.status({ fill: 'grey', shape: 'ring', text: RED._('llm-agent.status.no-tools') });
      }
    };
    const user: RegistryUser = {
      id: node.id,
      onRegistryState(state) {
        registryState = state;
        if (!runs.size) showIdle();
      },
    };
    registry?.register(user);
    showIdle();
    if (problem) node.warn(problem);

    const onEvent = (e: LoopEvent) => {
      if (e.type === 'llm-request') node.status({ fill: 'blue', shape: 'dot', text: RED._('llm-agent.status.thinking') });
      if (e.type === 'tool-call') {
        const tool = e.agent ? `${e.agent}/${e.tool}` : e.name;
        node.status({ fill: 'blue', shape: 'dot', text: RED._('llm-agent.status.calling', { tool }) });
      }
    };

    node.on('input', (msg: NodeMessageInFlow & Record<string, unknown>, send, done) => {
      if (problem) {
        showIdle();
        return done(new Error(problem));
      }
      let messages: ChatCompletionMessageParam[];
      try {
        messages = conversationOf(msg);
      } catch (err) {
        node.status({ fill: 'red', shape: 'ring', text: RED._('llm-agent.status.failed', { code: 'input' }) });
        return done(err as Error);
      }
      const ac = new AbortController();
      const started = Date.now();
      const run = runToolLoop({
        client, model: settings.model, messages, systemPrompt: settings.systemPrompt, tools: registry ?? undefined,
        maxIterations: settings.maxIterations, toolTimeoutMs: settings.toolTimeoutMs, temperature: settings.temperature,
        signal: ac.signal, onEvent,
      }).then((result) => {
        Object.assign(msg, { payload: result.answer, messages: result.messages, toolCalls: result.toolCalls, usage: result.usage });
        node.status({ fill: 'green', shape: 'dot', text: RED._('llm-agent.status.done', { tools: result.toolCalls.length, ms: Date.now() - started }) });
        send(msg);
        done();
      }, (err: Error) => {
        if (err instanceof ToolLoopError) Object.assign(msg, { messages: err.partial.messages, toolCalls: err.partial.toolCalls, usage: err.partial.usage });
        const code = err instanceof ToolLoopError ? (err.status ? `HTTP ${err.status}` : err.code) : 'error';
        node.status({ fill: 'red', shape: 'ring', text: RED._('llm-agent.status.failed', { code }) });
        done(closing && err instanceof ToolLoopError && err.code === 'ABORTED' ? new Error(RED._('llm-agent.errors.closed')) : err);
      }).finally(() => runs.delete(ac));
      runs.set(ac, run);
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closing = true;
      for (const ac of runs.keys()) ac.abort();
      registry?.deregister(user);
      void Promise.allSettled(runs.values()).then(() => done());
    });
  }

  RED.nodes.registerType<Node<LlmAgentCredentials>, NodeDef & LlmAgentConfig, object, LlmAgentCredentials>('llm-agent', LlmAgentNode, {
    credentials: { apiKey: { type: 'password' } },
  });
}
