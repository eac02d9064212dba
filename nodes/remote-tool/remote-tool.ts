/**
 * Node-RED node `remote-tool`: calls one tool on one agent through a tool-registry.
 * Static mode takes agent, tool and arguments from the editor (arguments optionally from
 * msg.payload); dynamic mode takes `msg.toolCall` as llm-agent emits it. See the help text in
 * remote-tool.html for the message contract.
 */
import type { Node, NodeAPI, NodeDef, NodeMessageInFlow, NodeStatus } from 'node-red';
import { toolErrorOf, toolErrorResult, type CallToolResult } from '../../protocol';
import type { RegistryState, RegistryUser, ToolRegistryApi } from '../shared/registry-api';
import { ToolCallError } from '../shared/tool-call-error';
import { parseArguments, payloadOf, progressText, resolveTarget, toolCallOf, type RemoteToolConfig, type ToolCall } from './invoke';

/** Registers the `remote-tool` type. */
export default function remoteTool(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>) => RED._(key, params);

  function RemoteToolNode(this: Node, def: NodeDef & RemoteToolConfig): void {
    RED.nodes.createNode(this, def);
    const node = this;
    const registry = def.registry ? RED.nodes.getNode(def.registry) as unknown as ToolRegistryApi | null : null;
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
    const inflight = new Set<AbortController>();

    /** The static agent's state when it is known and not online, else ''. */
    const staticAgentState = (): string => {
      const a = def.agent ? registry?.listAgents().find((x) => x.id === def.agent) : undefined;
      return a && !a.online ? a.status?.state ?? 'gone' : '';
    };
    const idleStatus = (): NodeStatus => {
      if (!registry) return { fill: 'red', shape: 'ring', text: 'remote-tool.status.no-registry' };
      if (registryState === 'connecting') return { fill: 'yellow', shape: 'ring', text: 'remote-tool.status.waiting' };
      // the registry's connection retries for as long as it runs: disconnected means reconnecting
      if (registryState === 'disconnected') return { fill: 'yellow', shape: 'ring', text: 'remote-tool.status.reconnecting' };
      if (registryState === 'error') return { fill: 'red', shape: 'ring', text: t('remote-tool.status.registry-error', { detail: registryDetail ?? '' }) };
      if (agentState) return { fill: 'red', shape: 'ring', text: t('remote-tool.status.agent-offline', { agent: def.agent ?? '', state: agentState }) };
      return { fill: 'green', shape: 'ring', text: 'node-red:common.status.connected' };
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
      if (dynamic && registry.isOffered && !registry.isOffered(agent, tool)) {
        return { agent, tool, result: toolErrorResult('PERMISSION_DENIED', t('remote-tool.errors.not-offered', { agent, tool }), { agent, tool }) };
      }
      const abort = new AbortController();
      inflight.add(abort);
      busy++;
      node.status({ fill: 'blue', shape: 'dot', text: t('remote-tool.status.calling', { tool }) });
      try {
        const result = await registry.call(agent, tool, args, {
          timeoutMs,
          approval,
          dryRun,
          signal: abort.signal,
          onProgress: (p) => {
            if (!closed) node.status({ fill: 'blue', shape: 'dot', text: progressText(p, tool) });
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
      const dynamic = toolCallOf(msg as { toolCall?: unknown }) !== undefined;
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
        const toolCall = msg.toolCall as ToolCall | undefined;
        msg.toolResult = {
          id: toolCall?.id, content: result.content, structuredContent: result.structuredContent,
          isError: result.isError === true, agent, tool, durationMs,
        };
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
      for (const abort of inflight) abort.abort(new Error('node closed'));
      unsubscribe?.();
      registry?.deregister(user);
      done();
    });
  }

  RED.nodes.registerType('remote-tool', RemoteToolNode);
}
