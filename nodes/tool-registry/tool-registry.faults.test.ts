// Hostile messages on every topic a tool-registry reads (agents' status, catalog, and the
// responses to its own caller id), published over its embedded aedes broker while a real agent
// serves it: Node-RED lives, each message costs at most one warning, and afterwards the
// registry, its admin endpoint and a remote-tool using it still work.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import remoteToolNode from '../remote-tool/remote-tool';
import remoteToolCatalog from '../remote-tool/locales/en-US/remote-tool.json';
import registryNode, { type AgentSummary, type ToolRegistryNode } from './tool-registry';
import registryCatalog from './locales/en-US/tool-registry.json';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { hostilePayloads, publishAll, watchProcessFaults } from '../../test/support/nodes-faults';

const CALLER = 'faults-reg';
const ROOT = 'toolmesh/v1';
const catalog = { ...registryCatalog, ...remoteToolCatalog };
const nodes = [withCatalog(registryNode, catalog), withCatalog(remoteToolNode, catalog)];
const echo = defineTool({ name: 'echo', description: 'Echoes text.', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => ({ echo: a.text }) });

let agent: RpcServer | undefined;

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await agent?.stop();
  agent = undefined;
  await helper.unload();
});

/** Texts the registry node passed to node.warn. */
function warnings(): string[] {
  const spy = helper.getNode('reg').warn;
  return spy.getCalls().filter((c: any) => c.thisValue?.id === 'reg').map((c: any) => String(c.args[0]));
}

describe('tool-registry: hostile messages over MQTT', () => {
  it('lives through hostile status, catalog and response messages, and still works afterwards', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: CALLER, policy: '*/*' },
      { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', registry: 'reg', agent: 'pi', tool: 'echo', arguments: '{"text":"still here"}', wires: [['out']] },
      { id: 'out', type: 'helper', z: 'f1' },
    ]);
    const reg = helper.getNode('reg') as ToolRegistryNode;
    const url = await until(() => reg.brokerUrl, 'the embedded broker');
    agent = new RpcServer({ authorization: { keys: new Map() }, connection: { url }, agentId: 'pi', tools: [echo] });
    await agent.start();
    await until(() => reg.listAgents().find((a) => a.id === 'pi' && a.ready), 'agent pi ready');

    const status = hostilePayloads((json) => `{"state":"online","agent":"evil","instance":"i-1","kind":"pi","version":"1","catalogRev":${json},"ts":1}`);
    const cat = hostilePayloads((json) => `{"agent":{"id":"evil","name":${json}},"rev":1,"tools":[{"name":"t","description":"d","inputSchema":{"type":"object","x":${json}},"annotations":{"risk":"low"}}]}`);
    const responses = hostilePayloads((json) => `{"jsonrpc":"2.0","id":"nope","result":{"content":[],"structuredContent":{"x":${json}}}}`);
    const errors = hostilePayloads((json) => `{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"m","data":${json}}}`);
    const progress = hostilePayloads((json) => `{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":${json},"progress":1}}`);
    const faults = watchProcessFaults();
    try {
      const before = warnings().length;
      // a valid status and catalog for "evil" whose catalog then turns hostile
      await publishAll(url, `${ROOT}/agents/evil/status`, [...status.map((h) => h.payload)]);
      await publishAll(url, `${ROOT}/agents/evil/catalog`, cat.map((h) => h.payload));
      await publishAll(url, `${ROOT}/agents/pi/status`, status.map((h) => h.payload));
      await publishAll(url, `${ROOT}/agents/pi/catalog`, cat.map((h) => h.payload));
      await publishAll(url, `${ROOT}/agents/pi/rpc/${CALLER}/res`, [...responses, ...errors, ...progress].map((h) => h.payload));
      const sent = status.length * 2 + cat.length * 2 + responses.length + errors.length + progress.length;
      // a marker after them: once the registry has it, it has read everything before it
      await publishAll(url, `${ROOT}/agents/marker/status`, ['{"state":"offline","agent":"marker","instance":"m-1"}']);
      await until(() => reg.listAgents().some((a) => a.id === 'marker'), 'the marker status');
      await new Promise((r) => setTimeout(r, 100));

      expect(faults.seen).toEqual([]);
      // one bad message is one warning at most (soft: the checks below still run if it fails)
      expect.soft(warnings().length - before).toBeLessThanOrEqual(sent);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      // pi is untouched: its tools are still offered and callable
      expect(reg.listAgents().find((a) => a.id === 'pi')).toMatchObject({ online: true, ready: true });
      expect(reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`)).toEqual(['pi/echo']);
      expect((await reg.call('pi', 'echo', { text: 'hi' })).structuredContent).toEqual({ echo: 'hi' });
      const res = await helper.request().get('/toolmesh/registry/reg/agents').expect(200);
      expect((res.body as AgentSummary[]).find((a) => a.id === 'pi')).toMatchObject({ ready: true });
      const out = new Promise<any>((resolve) => helper.getNode('out').once('input', resolve));
      helper.getNode('rt').receive({ payload: 'go' });
      expect((await out).payload).toEqual({ echo: 'still here' });
      expect(faults.seen).toEqual([]);
    } finally {
      faults.stop();
    }
  });
});
