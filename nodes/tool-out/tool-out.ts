/**
 * Node-RED node `tool-out`: answers the tool call a message belongs to (`msg._toolmesh.callId`,
 * set by tool-in), like http-response answers http-in. See the help text in locales/en-US/tool-out.html for
 * what becomes the result.
 */
import type { Node, NodeAPI, NodeDef } from 'node-red';
import { ToolError } from '@toolmesh/agent/protocol';
import { answerCall } from '../tool-in/calls';
import { answerOf, callIdOf, type AnswerMessage } from './answer';

/** Registers the `toolmesh-tool-out` type (the palette shows its catalog's `tool-out.label.palette`). */
export default function toolOut(RED: NodeAPI): void {
  const t = (key: string, params?: Record<string, string | number>) => RED._(key, params);

  function ToolOutNode(this: Node, def: NodeDef): void {
    RED.nodes.createNode(this, def);
    const node = this;

    node.on('input', (msg, _send, done) => {
      const m = msg as AnswerMessage;
      const callId = callIdOf(m);
      if (!callId) {
        node.status({ fill: 'red', shape: 'ring', text: 'tool-out.status.no-call' });
        return done(new Error(t('tool-out.errors.no-call')));
      }
      let answer;
      try {
        answer = answerOf(m, t);
      } catch (e) {
        // a malformed msg.toolResult still ends the call, so its caller is not left waiting
        answerCall(callId, { kind: 'error', error: new ToolError('EXECUTION_FAILED', (e as Error).message) });
        node.status({ fill: 'red', shape: 'ring', text: 'tool-out.status.bad-result' });
        return done(e as Error);
      }
      const outcome = answerCall(callId, answer);
      if (outcome === 'unknown') {
        node.status({ fill: 'red', shape: 'ring', text: 'tool-out.status.no-call' });
        return done(new Error(t('tool-out.errors.unknown-call', { callId })));
      }
      if (outcome !== 'answered') {
        node.warn(t('tool-out.warn.late', { agent: outcome.agentId, tool: outcome.tool, callId, reason: outcome.reason }));
        node.status({ fill: 'yellow', shape: 'ring', text: t('tool-out.status.late', { code: outcome.code }) });
        return done();
      }
      node.status({});
      done();
    });
  }

  RED.nodes.registerType('toolmesh-tool-out', ToolOutNode);
}
