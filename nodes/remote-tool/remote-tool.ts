/**
 * Node-RED node `remote-tool`: calls one tool on one agent through a tool-registry.
 * Static mode (agent and tool set in the editor) takes agent, tool and arguments from the editor
 * (arguments optionally from msg.payload) and ignores `msg.toolCall`; dynamic mode (agent or tool
 * empty) takes `msg.toolCall` as llm-agent emits it (nodes/shared/tool-messages.ts). See the
 * node's help text for the message contract.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import { toolErrorOf, toolErrorResult, type CallToolResult } from '@toolmesh/agent/protocol';
import { registryOf, type RegistryState, type RegistryUser } from '../shared/registry-api';
import { registryStatus } from '../shared/status';
import { ToolCallError } from '../shared/tool-call-error';
import type { ToolResult } from '../shared/tool-messages';
import { isDynamicCall, parseArguments, payloadOf, progressText, resolveTarget, type RemoteToolConfig } from './invoke';

/** Registers the `toolmesh-remote-tool` type (the palette shows its catalog's `remote-tool.label.palette`). */
export default function remoteTool(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>) => RED._(key, params);

  function RemoteToolNode(this: Node, def: NodeDef & RemoteToolConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const registry = registryOf(RED, def.registry);
    let baseArgs: Record<string, unknown> | ToolCallError;
    try {
      baseArgs = parseArguments(def.arguments, t);
    } catch (e) {
      baseArgs = e as ToolCallError;
    }
    const timeoutText = String(def.timeout ?? '').trim();
    const timeoutMs = timeoutText === '' ? undefined : Number(timeoutText);
    const timeoutError = timeoutMs !== undefined && !(Number.isInteger(timeoutMs) && timeoutMs > 0)
      ? new ToolCallError('INVALID_ARGUMENTS', t('remote-tool.errors.bad-timeout', { value: timeoutText }))
      : undefined;

    let registryState: RegistryState = 'connecting';
    let registryDetail: string | undefined;
    let agentState = '';
    let busy = 0;
    let closed = false;
    /** The calls running, with their agent and tool. */
    const inflight = new Map<AbortController, { agent: string; tool: string }>();
    /** The "waiting for agent" text shown while a running call's agent is not online, else ''. */
    let waitingText = '';

    /** The state of agent `id` when it is known and not online (lost, offline, …), else ''. */
    const notOnline = (id: string): string => {
      const a = registry?.agent ? registry.agent(id) : registry?.listAgents().find((x) => x.id === id);
      return a && !a.online ? a.status?.state ?? 'gone' : '';
    };
    /** The static agent's state when it is known and not online, else ''. */
    const staticAgentState = (): string => (def.agent ? notOnline(def.agent) : '');
    /**
     * While calls run: says so when the agent of one of them turned lost or offline (its calls
     * wait for it within the protocol's grace), and goes back to "calling" when it is online again.
     */
    const showWaiting = () => {
      if (!busy || closed) return;
      let text = '';
      for (const { agent } of inflight.values()) {
        const state = notOnline(agent);
        if (state) {
          text = t('remote-tool.status.agent-waiting', { agent, state });
          break;
        }
      }
      if (text === waitingText) return;
      waitingText = text;
      const last = [...inflight.values()].at(-1);
      if (text) node.status({ fill: 'yellow', shape: 'ring', text });
      else if (last) node.status({ fill: 'blue', shape: 'dot', text: t('remote-tool.status.calling', { tool: last.tool }) });
    };
    const idleStatus = (): NodeStatus => {
      if (!registry) return registryStatus('remote-tool', 'no-registry', t);
      if (registryState === 'connected' && agentState) {
        return { fill: 'red', shape: 'ring', text: t('remote-tool.status.agent-offline', { agent: def.agent ?? '', state: agentState }) };
      }
      return registryStatus('remote-tool', registryState, t, registryDetail);
    };
    const showIdle = () => {
      if (!busy && !closed) node.status(idleStatus());
    };

    const user: RegistryUser = {
      id: node.id,
      onRegistryState: (state, detail) => {
        registryState = state;
        registryDetail = detail;
        agentState = staticAgentState();
        showIdle();
      },
    };
    registry?.register(user);
    const unsubscribe = registry?.onCatalogChange(() => {
      showWaiting();
      const now = staticAgentState();
      if (now === agentState) return;
      agentState = now;
      showIdle();
    });
    if (!registry) showIdle();

    /** Makes the call the message asks for; failures before sending come back as error results. */
    const run = async (msg: NodeMessageInFlow): Promise<{ result: CallToolResult; agent?: string; tool?: string }> => {
      let target;
      try {
        if (timeoutError) throw timeoutError;
        target = resolveTarget(msg, { agent: def.agent, tool: def.tool, argsFrom: def.argsFrom, baseArgs }, t);
      } catch (e) {
        if (!(e instanceof ToolCallError)) throw e;
        return { result: toolErrorResult(e.code, e.reason) };
      }
      const { agent, tool, args, dynamic, approval, dryRun } = target;
      if (!registry) {
        return { agent, tool, result: toolErrorResult('AGENT_OFFLINE', t('remote-tool.errors.no-registry'), { agent, outcome: 'not_sent' }) };
      }
      // fail closed: a registry that cannot say what its policy offers gets no call a model chose
      if (dynamic && typeof registry.isOffered !== 'function') {
        return { agent, tool, result: toolErrorResult('PERMISSION_DENIED', t('remote-tool.errors.cannot-check', { agent, tool }), { agent, tool }) };
      }
      if (dynamic && !registry.isOffered(agent, tool)) {
        return { agent, tool, result: toolErrorResult('PERMISSION_DENIED', t('remote-tool.errors.not-offered', { agent, tool }), { agent, tool }) };
      }
      const abort = new AbortController();
      inflight.set(abort, { agent, tool });
      busy++;
      waitingText = '';
      node.status({ fill: 'blue', shape: 'dot', text: t('remote-tool.status.calling', { tool }) });
      try {
        const result = await registry.call(agent, tool, args, {
          timeoutMs,
          approval,
          dryRun,
          signal: abort.signal,
          onProgress: (p) => {
            if (closed) return;
            waitingText = '';
            node.status({ fill: 'blue', shape: 'dot', text: progressText(p, tool) });
          },
        });
        return { agent, tool, result };
      } finally {
        busy--;
        inflight.delete(abort);
      }
    };

    node.on('input', (msg, send, done) => {
      const started = Date.now();
      const dynamic = isDynamicCall(msg as { toolCall?: unknown }, def);
      // an exception while passing the result on (say, Node-RED cannot clone the message) goes
      // to Catch nodes like any other failure, and done is called once
      let ended = false;
      const end = (err?: Error) => {
        if (ended) return;
        ended = true;
        done(err);
      };
      run(msg).then(({ result, agent, tool }) => {
        if (closed) {
          // the flow is stopping (redeploy or shutdown): its Catch nodes stop with it, so say it in the log
          node.warn(t('remote-tool.errors.closed', { agent: agent ?? '?', tool: tool ?? '?' }));
          return end();
        }
        const durationMs = Date.now() - started;
        const callId = (msg.toolCall as { id?: unknown } | undefined)?.id;
        const toolResult: ToolResult = {
          id: typeof callId === 'string' || typeof callId === 'number' ? callId : undefined,
          content: result.content, structuredContent: result.structuredContent,
          isError: result.isError === true, agent, tool, durationMs,
        };
        msg.toolResult = toolResult;
        msg.toolMeta = { agent, tool, durationMs };
        const error = toolErrorOf(result);
        if (!error) {
          if (!busy) node.status({ fill: 'green', shape: 'dot', text: t('remote-tool.status.ok', { ms: durationMs }) });
          msg.payload = payloadOf(result);
          send(msg);
          return end();
        }
        if (!busy) node.status({ fill: 'red', shape: 'dot', text: error.code });
        if (dynamic || def.sendErrors) {
          msg.payload = payloadOf(result);
          send(msg);
        }
        end(ToolCallError.of(error));
      }).catch((e: unknown) => {
        if (!ended) return end(e instanceof Error ? e : new Error(String(e)));
        // done itself threw: report it without the message that could not be handled
        node.error(e instanceof Error ? e.message : String(e));
      });
    });

    node.on('close', (_removed: boolean, done: () => void) => {
      closed = true;
      for (const abort of inflight.keys()) abort.abort(new Error('node closed'));
      unsubscribe?.();
      registry?.deregister(user);
      done();
    });
  }

  RED.nodes.registerType('toolmesh-remote-tool', RemoteToolNode);
}
