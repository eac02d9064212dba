/**
 * A flow as a tool whose work is a statically configured remote-tool:
 * tool-in (flows/lookup) → remote-tool (agent pi, tool echo, set in its dialog) → tool-out,
 * called by a caller on the mesh over a real aedes broker. tool-in's message carries
 * `msg.toolCall` (flows/lookup); a remote-tool whose dialog sets agent and tool must call pi/echo
 * and ignore it, instead of calling flows/lookup, itself, until the call times out.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, toolErrorOf } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import toolInNode from '../nodes/tool-in/tool-in';
import toolOutNode from '../nodes/tool-out/tool-out';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryCatalog from '../nodes/tool-registry/locales/en-US/tool-registry.json';
import toolInCatalog from '../nodes/tool-in/locales/en-US/tool-in.json';
import toolOutCatalog from '../nodes/tool-out/locales/en-US/tool-out.json';
import remoteToolCatalog from '../nodes/remote-tool/locales/en-US/remote-tool.json';
import { until } from './support/until';
import { withCatalog } from './support/i18n';
import { NODE_RED_MAIN } from './support/node-red-path';

// node-red-node-test-helper ships no types
// eslint-disable-next-line @typescript-eslint/no-require-imports
const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const catalog = { ...registryCatalog, ...toolInCatalog, ...toolOutCatalog, ...remoteToolCatalog };
const nodes = [registryNode, toolInNode, toolOutNode, remoteToolNode].map((n) => withCatalog(n, catalog));

const echoed: string[] = [];
const tools = [
  defineTool({
    name: 'echo', description: 'Echoes text.', risk: 'low', input: z.object({ text: z.string() }).strict(),
    execute: (a) => { echoed.push(a.text); return { echo: a.text }; },
  }),
];

let broker: EmbeddedBroker;
let pi: RpcServer;
let caller: RpcCaller | undefined;

beforeAll(async () => {
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0 });
  pi = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'pi', tools });
  await pi.start();
});
afterAll(async () => {
  await pi.stop();
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
});
afterEach(async () => {
  await caller?.stop();
  caller = undefined;
  await helper.unload();
  echoed.length = 0;
});

describe('tool-in → remote-tool (agent and tool set in its dialog) → tool-out', () => {
  it('calls the configured tool, not the flow tool named by tool-in\'s msg.toolCall', async () => {
    await helper.load(nodes, [
      { id: 'f1', type: 'tab' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: 'flowreg', policy: '*/*' },
      {
        id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'flows', tool: 'lookup', description: 'Echoes through pi.',
        risk: 'low', schema: JSON.stringify({ type: 'object', properties: { text: { type: 'string' } }, required: ['text'] }),
        timeout: 3000, wires: [['rt']],
      },
      { id: 'rt', type: 'toolmesh-remote-tool', z: 'f1', registry: 'reg', agent: 'pi', tool: 'echo', argsFrom: 'payload', wires: [['tout']] },
      { id: 'tout', type: 'toolmesh-tool-out', z: 'f1' },
    ]);
    const reg = helper.getNode('reg') as ToolRegistryNode;
    await until(() => reg.listAgents().find((a) => a.id === 'pi' && a.ready), 'agent pi in the registry');
    caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'outside' });
    await caller.start();
    await until(() => caller!.agent('flows')?.ready, 'the flow agent ready');

    const result = await caller.call('flows', 'lookup', { text: 'hi' }, { timeoutMs: 3000 });

    expect(toolErrorOf(result)).toBeUndefined();
    expect(result.structuredContent).toEqual({ echo: 'hi' });
    expect(echoed).toEqual(['hi']);
  });
});
