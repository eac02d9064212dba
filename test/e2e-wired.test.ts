// End to end in wired mode, with the example flow as a user imports it (flows/llm-wired-loop.json):
// the scripted model asks for three tools on two agents in one turn; each call leaves the
// llm-agent's tool-call output, crosses link nodes to a remote-tool, travels over MQTT to its
// agent, and comes back through links into the llm-agent, which answers once all three are back.
// The recorded start and end times show that the three calls overlapped (no timing thresholds).
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../protocol';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode from '../nodes/tool-registry/tool-registry';
import { patchFlow } from '../scripts/demo/options';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { coreNode, helper } from './support/node-red';
import { until } from './support/until';

interface Span { tool: string; start: number; end: number }
const spans: Span[] = [];
let open = 0;
let maxOpen = 0;

/** A tool that stays busy until all three calls have started (or 2 s passed), recording its span. */
function slowTool(name: string) {
  return defineTool({
    name, description: `${name} reading`, risk: 'low', input: z.object({}).strict(),
    execute: async () => {
      const start = Date.now();
      open++;
      maxOpen = Math.max(maxOpen, open);
      await until(() => maxOpen >= 3 || Date.now() - start > 2000, 'the other calls', 5000);
      open--;
      spans.push({ tool: name, start, end: Date.now() });
      return { tool: name, value: 42 };
    },
  });
}

const overlap = (a: { start: number; end: number }, b: { start: number; end: number }) => a.start <= b.end && b.start <= a.end;

describe('wired tool loop example: three parallel calls to two agents', () => {
  const agents: RpcServer[] = [];
  let llm: FakeLlm;
  afterAll(async () => {
    for (const a of agents) await a.stop();
    await helper.unload();
    await llm?.close();
  });

  it('sends each call through the flow, runs them concurrently and answers when all are back', async () => {
    const flow = JSON.parse(readFileSync(join(__dirname, '../flows/llm-wired-loop.json'), 'utf8')) as Array<Record<string, any>>;
    llm = await startFakeLlm((body: any, i: number) => {
      if (i === 0) {
        return { toolCalls: [
          { id: 'a', name: 'pi__disk', arguments: {} },
          { id: 'b', name: 'robot__battery', arguments: {} },
          { id: 'c', name: 'pi__memory', arguments: {} },
        ] };
      }
      const tools = body.messages.filter((m: any) => m.role === 'tool');
      return { content: `read ${tools.map((m: any) => `${m.tool_call_id}=${JSON.parse(m.content).tool}`).join(', ')}` };
    });
    const patched = patchFlow(flow as never, 0).map((n: any) => n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake' } : n);
    const outputs = { answer: 'out-answer', calls: 'out-calls', events: 'out-events' };
    const agentDef = patched.find((n: any) => n.type === 'toolmesh-llm-agent')!;
    // observe the three outputs beside the flow's own wiring
    agentDef.wires = agentDef.wires.map((w: string[], i: number) => [...w, Object.values(outputs)[i]]);
    const z = agentDef.z;
    for (const id of Object.values(outputs)) patched.push({ id, type: 'helper', z, x: 900, y: 100 });
    await helper.load([registryNode, remoteToolNode, llmAgentNode, coreNode('common/20-inject.js'), coreNode('common/21-debug.js'), coreNode('common/90-comment.js'), coreNode('common/60-link.js')], patched, {});
    const reg = helper.getNode('tm-registry');
    const port = await until(() => reg.brokerPort as number | undefined, 'the embedded broker');
    const url = `mqtt://127.0.0.1:${port}`;
    agents.push(new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId: 'pi', tools: [slowTool('disk'), slowTool('memory')] }));
    agents.push(new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId: 'robot', tools: [slowTool('battery')] }));
    for (const a of agents) await a.start();
    await until(() => reg.listTools().length === 3, 'both agents\' tools');

    const calls: any[] = [];
    const events: any[] = [];
    helper.getNode(outputs.calls).on('input', (m: any) => calls.push(m));
    helper.getNode(outputs.events).on('input', (m: any) => events.push(m.payload));
    const answered = new Promise<any>((resolve) => helper.getNode(outputs.answer).once('input', resolve));
    // press the flow's inject button, as a user would
    helper.getNode('tm-wired-ask').receive({});
    const msg = await answered;

    expect(msg.payload).toBe('read a=disk, b=battery, c=memory');
    expect(calls.map((m) => `${m.toolCall.agent}/${m.toolCall.tool}`)).toEqual(['pi/disk', 'robot/battery', 'pi/memory']);
    expect(calls.every((m) => typeof m.toolCall.id === 'string' && m.toolCall.risk === 'low')).toBe(true);
    // the calls overlapped, by the agents' own clocks and by the llm-agent's record
    expect(spans).toHaveLength(3);
    expect(maxOpen).toBe(3);
    for (const [x, y] of [[0, 1], [0, 2], [1, 2]]) expect(overlap(spans[x], spans[y])).toBe(true);
    const recorded = msg.toolCalls.map((c: any) => ({ start: c.startedAt, end: c.endedAt }));
    expect(msg.toolCalls.map((c: any) => c.ok)).toEqual([true, true, true]);
    for (const [x, y] of [[0, 1], [0, 2], [1, 2]]) expect(overlap(recorded[x], recorded[y])).toBe(true);
    // the tool messages reached the model in call order
    const second = llm.requests[1].body as any;
    expect(second.messages.filter((m: any) => m.role === 'tool').map((m: any) => m.tool_call_id)).toEqual(['a', 'b', 'c']);
    // run events on output 3: a turn, three starts and three ends, then the closing turn
    expect(events.map((e) => e.type)).toEqual(['turn-start', 'tool-call-start', 'tool-call-start', 'tool-call-start', 'tool-call-end', 'tool-call-end', 'tool-call-end', 'turn-start']);
  });
});
