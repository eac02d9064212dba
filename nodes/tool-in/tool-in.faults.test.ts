// Hostile messages on the topics the flow agent reads (its request topic and callers' status),
// published over the registry's embedded aedes broker: Node-RED lives, every request with an id
// (or an unparseable one) gets exactly one error answer, a bad caller status is at most one
// warning, and afterwards the flow-defined tool still answers a real call.
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { RpcCaller } from '../../protocol';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import registryCatalog from '../tool-registry/locales/en-US/tool-registry.json';
import toolInNode from './tool-in';
import toolOutNode from '../tool-out/tool-out';
import toolInCatalog from './locales/en-US/tool-in.json';
import toolOutCatalog from '../tool-out/locales/en-US/tool-out.json';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import { hostilePayloads, publishAll, watchProcessFaults } from '../../test/support/nodes-faults';

const ROOT = 'toolmesh/v1';
const catalog = { ...registryCatalog, ...toolInCatalog, ...toolOutCatalog };
const nodes = [withCatalog(registryNode, catalog), withCatalog(toolInNode, catalog), withCatalog(toolOutNode, catalog)];

let caller: RpcCaller | undefined;
let listener: mqtt.MqttClient | undefined;

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await caller?.stop();
  caller = undefined;
  await listener?.endAsync();
  listener = undefined;
  await helper.unload();
});

/** Warnings of the tool-in node `id`. */
function warnings(id: string): string[] {
  const spy = helper.getNode(id).warn;
  return spy.getCalls().filter((c: any) => c.thisValue?.id === id).map((c: any) => String(c.args[0]));
}

describe('flow agent: hostile messages over MQTT', () => {
  it('answers each hostile request once, warns at most once per bad caller status, and keeps serving', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', callerId: 'faults-flows', policy: '*/*' },
      // any object is valid: hostile values inside the arguments reach the flow unless a limit stops them
      { id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'flows', tool: 'echo', description: 'Echoes its arguments.', risk: 'low', schema: '{"type":"object"}', timeout: 2000, wires: [['tout']] },
      { id: 'tout', type: 'toolmesh-tool-out', z: 'f1', wires: [] },
    ]);
    const reg = helper.getNode('reg') as ToolRegistryNode;
    const url = await until(() => reg.brokerUrl, 'the embedded broker');
    caller = new RpcCaller({ connection: { url }, callerId: 'observer' });
    await caller.start();
    await until(() => caller!.agent('flows')?.ready, 'the flow agent');

    // the answers to caller "evil"
    const answers: unknown[] = [];
    listener = mqtt.connect(url, { reconnectPeriod: 0 });
    await new Promise<void>((resolve, reject) => listener!.once('connect', () => resolve()).once('error', reject));
    listener.on('message', (_t, p) => answers.push(JSON.parse(p.toString('utf8'))));
    await listener.subscribeAsync(`${ROOT}/agents/flows/rpc/evil/res`, { qos: 1 });

    let n = 0;
    const call = (json: string) => `{"jsonrpc":"2.0","id":"h-${++n}","method":"tools/call","params":{"name":"echo","arguments":{"x":${json}}}}`;
    const requests = [
      ...hostilePayloads(call),
      ...hostilePayloads((json) => `{"jsonrpc":"2.0","id":"p-${++n}","method":"tools/call","params":${json}}`),
      ...hostilePayloads((json) => `{"jsonrpc":"2.0","id":"m-${++n}","method":"tools/list","params":{"_meta":${json}}}`),
      { name: 'deep id', payload: `{"jsonrpc":"2.0","id":${'['.repeat(20_000)}${']'.repeat(20_000)},"method":"ping"}` },
    ];
    const statuses = hostilePayloads((json) => `{"state":"online","caller":"evil","instance":${json}}`);
    const faults = watchProcessFaults();
    try {
      const before = warnings('tin').length;
      await publishAll(url, `${ROOT}/callers/evil/status`, statuses.map((s) => s.payload));
      await publishAll(url, `${ROOT}/agents/flows/rpc/evil/req`, requests.map((r) => r.payload));
      await until(() => answers.length >= requests.length, `${requests.length} answers`, 20_000);
      await new Promise((r) => setTimeout(r, 200));
      expect(faults.seen).toEqual([]);
      expect(answers).toHaveLength(requests.length);
      expect(({} as Record<string, unknown>).polluted).toBeUndefined();
      // the flow agent still serves its tool
      const r = await caller.call('flows', 'echo', { text: 'still here' });
      expect(r.structuredContent).toEqual({ text: 'still here' });
      expect(warnings('tin').length - before).toBeLessThanOrEqual(statuses.length);
      expect(faults.seen).toEqual([]);
    } finally {
      faults.stop();
    }
  });
});
