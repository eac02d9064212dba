// tool-registry with broker authentication, in Node-RED (node-red-node-test-helper): the embedded
// broker's user list, generated users for the registry's caller and flow-defined tools, the refusal
// to expose an open broker, TLS through a core tls-config node, and agent credentials on an
// external broker.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import type { RegistryState } from '../shared/registry-api';
import registryNode, { type ToolRegistryNode } from './tool-registry';
import registryCatalog from './locales/en-US/tool-registry.json';
import toolInNode from '../tool-in/tool-in';
import toolOutNode from '../tool-out/tool-out';
import toolInCatalog from '../tool-in/locales/en-US/tool-in.json';
import { coreNode, helper } from '../../test/support/node-red';
import { freePort } from '../../test/support/mosquitto';
import { makeTestCerts } from '../../test/support/certs';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';

const catalog = { ...registryCatalog, ...toolInCatalog };

const nodes = [withCatalog(registryNode, catalog), withCatalog(toolInNode, catalog), toolOutNode, coreNode('network/05-tls.js')];

const echo = defineTool({ name: 'echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => ({ echo: a.text }) });
const USERS = 'agent pi pi-secret\n# callers\ncaller dash dash-secret\nadmin ops ops-secret';

const started: Array<{ stop(): Promise<void> }> = [];
const brokers: EmbeddedBroker[] = [];

async function loadRegistry(props: Record<string, unknown>, credentials: Record<string, unknown> = {}, extra: object[] = []): Promise<ToolRegistryNode> {
  await helper.load(nodes, [{ id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', callerId: 'flowreg', ...props }, ...extra], { reg: credentials });
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.state !== 'connecting', 'the registry to connect or fail');
  return reg;
}

async function agent(connection: ConstructorParameters<typeof RpcServer>[0]['connection'], agentId = 'pi'): Promise<RpcServer> {
  const server = new RpcServer({ authorization: { keys: new Map() }, connection, agentId, tools: [echo] });
  started.push(server);
  await server.start();
  return server;
}

/** Log lines of `level` (helper.log().WARN, .ERROR) as strings. */
function logged(level: number): string[] {
  return helper.log().args.filter((a: Array<{ level: number }>) => a[0].level === level).map((a: Array<{ msg: unknown }>) => String(a[0].msg));
}

/** The last status node `id` set. */
function lastStatus(id: string): { fill?: string; text?: string } | undefined {
  return helper.getNode(id).status.getCalls().filter((c: { thisValue: { id: string } }) => c.thisValue.id === id).at(-1)?.args[0];
}

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
  await helper.unload();
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

describe('tool-registry: embedded broker with authentication', () => {
  it('lists an agent that logs in with its credentials from the user list, and not one with a wrong password', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, requireAuth: true }, { users: USERS });
    expect(reg.state).toBe('connected'); // its own caller got a generated user
    await agent({ url: reg.brokerUrl!, username: 'pi', password: 'pi-secret' });
    await until(() => reg.listTools().length === 1, 'the agent\'s tools');
    expect(reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`)).toEqual(['pi/echo']);
    expect((await reg.call('pi', 'echo', { text: 'hi' })).structuredContent).toEqual({ echo: 'hi' });

    const refused: Error[] = [];
    const robot = new RpcServer({ authorization: { keys: new Map() }, connection: { url: reg.brokerUrl!, username: 'robot', password: 'guess' }, agentId: 'robot', tools: [echo] });
    robot.on('connection-error', (e: Error) => refused.push(e));
    started.push(robot);
    void robot.start();
    await until(() => refused.length > 0, 'the refusal');
    expect(refused[0].message).toMatch(/Bad username or password/);
    const impostor = new RpcServer({ authorization: { keys: new Map() }, connection: { url: reg.brokerUrl!, username: 'pi', password: 'wrong' }, agentId: 'pi', tools: [echo] });
    impostor.on('connection-error', (e: Error) => refused.push(e));
    started.push(impostor);
    void impostor.start();
    await until(() => refused.length > 1, 'the second refusal');
    expect(reg.listAgents().map((a) => a.id)).toEqual(['pi']);
    expect(logged(helper.log().WARN).some((m) => /embedded broker: connection refused .*user "robot".*bad username or password/.test(m))).toBe(true);
  });

  it('refuses anonymous clients', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, requireAuth: true }, { users: USERS });
    const refused: Error[] = [];
    const open = new RpcServer({ authorization: { keys: new Map() }, connection: { url: reg.brokerUrl! }, agentId: 'pi', tools: [echo] });
    open.on('connection-error', (e: Error) => refused.push(e));
    started.push(open);
    void open.start();
    await until(() => refused.length > 0, 'the refusal');
    expect(refused[0].message).toMatch(/Not authorized/);
    expect(reg.listAgents()).toEqual([]);
  });

  it('refuses to start an open broker on a non-loopback address, with an error state', async () => {
    const port = await freePort();
    const reg = await loadRegistry({ mode: 'embedded', port, host: '0.0.0.0' });
    expect(reg.state).toBe('error');
    expect(reg.brokerPort).toBeUndefined();
    const states: Array<[RegistryState, string | undefined]> = [];
    reg.register({ id: 'u1', onRegistryState: (s, d) => states.push([s, d]) });
    expect(states).toEqual([['error', expect.stringMatching(/^The embedded broker would listen on 0\.0\.0\.0, beyond this machine, without authentication/)]]);
    expect(logged(helper.log().ERROR)).toEqual([expect.stringMatching(/^Tool registry not usable: The embedded broker would listen on 0\.0\.0\.0/)]);
    const listening = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
      s.on('error', () => resolve(false));
    });
    expect(listening).toBe(false);
  });

  it('names a bad user-list line in its error state', async () => {
    const reg = await loadRegistry({ mode: 'embedded', port: 0, requireAuth: true }, { users: 'agent pi pi-secret\nagent robot' });
    expect(reg.state).toBe('error');
    expect(logged(helper.log().ERROR)).toEqual(['Tool registry not usable: users, line 2: there is no password; expected role id password']);
  });

  it('gives flow-defined tools an agent user of their own, and callers from the list can call them', async () => {
    const flow = [
      { id: 'f1', type: 'tab' },
      {
        id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'flows', tool: 'greet', description: 'Greets.', wires: [['tout']],
        schema: JSON.stringify({ type: 'object', properties: { who: { type: 'string' } }, required: ['who'] }),
      },
      { id: 'tout', type: 'toolmesh-tool-out', z: 'f1' },
    ];
    const reg = await loadRegistry({ mode: 'embedded', port: 0, requireAuth: true }, { users: USERS }, flow);
    await until(() => lastStatus('tin')?.fill === 'green', 'the flow agent online');
    const dash = new RpcCaller({ connection: { url: reg.brokerUrl!, username: 'dash', password: 'dash-secret' }, callerId: 'dash' });
    started.push(dash);
    await dash.start();
    await until(() => dash.agent('flows')?.ready, 'the flow agent seen by dash');
    const r = await dash.call('flows', 'greet', { who: 'Ann' });
    expect(r.isError).toBe(false);
    expect(r.structuredContent).toEqual({ who: 'Ann' });
    expect(reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`)).toEqual(['flows/greet']);
  });

  it('shows an error on a tool-in whose agent id is a caller in the user list', async () => {
    const flow = [
      { id: 'f1', type: 'tab' },
      { id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'dash', tool: 'greet', wires: [['tout']] },
      { id: 'tout', type: 'toolmesh-tool-out', z: 'f1' },
    ];
    await loadRegistry({ mode: 'embedded', port: 0, requireAuth: true }, { users: USERS }, flow);
    await until(() => lastStatus('tin')?.fill === 'red', 'the error status');
    expect(lastStatus('tin')?.text).toBe('registry: broker user "dash" is already a caller; one id has one role (got agent too)');
  });
});

const certs = makeTestCerts();

describe.skipIf(!certs)('tool-registry: embedded broker over TLS (skipped outside CI when openssl is not installed)', () => {
  afterAll(() => certs?.remove());

  it('serves mqtts:// with a tls-config node\'s certificate; its own caller and flow agent trust it', async () => {
    const c = certs!;
    const flow = [
      { id: 'tls1', type: 'tls-config', cert: c.files.cert, key: c.files.key, ca: '', verifyservercert: true },
      { id: 'f1', type: 'tab' },
      { id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'flows', tool: 'greet', wires: [['tout']] },
      { id: 'tout', type: 'toolmesh-tool-out', z: 'f1' },
    ];
    const reg = await loadRegistry({ mode: 'embedded', port: 0, host: '0.0.0.0', requireAuth: true, brokerTls: 'tls1' }, { users: USERS }, flow);
    expect(reg.state).toBe('connected');
    expect(reg.brokerUrl).toBe(`mqtts://127.0.0.1:${reg.brokerPort}`);
    expect(logged(helper.log().WARN).filter((m) => m.includes('without TLS'))).toEqual([]);
    await agent({ url: `mqtts://localhost:${reg.brokerPort}`, username: 'pi', password: 'pi-secret', extra: { ca: c.ca } });
    await until(() => reg.listTools().length === 2, 'both agents\' tools');
    expect(reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`).sort()).toEqual(['flows/greet', 'pi/echo']);
  });
});

describe('tool-registry: flow-defined tools on an external broker with authentication', () => {
  const users = [
    { username: 'flowreg', role: 'caller' as const, password: 'caller-secret' },
    { username: 'flows', role: 'agent' as const, password: 'agent-secret' },
  ];
  const flow = [
    { id: 'f1', type: 'tab' },
    { id: 'tin', type: 'toolmesh-tool-in', z: 'f1', registry: 'reg', agent: 'flows', tool: 'greet', wires: [['tout']] },
    { id: 'tout', type: 'toolmesh-tool-out', z: 'f1' },
  ];

  it('logs the flow agent in with the agent credentials (username defaulting to the agent id)', async () => {
    const broker = await startBroker({ port: 0, auth: { users } });
    brokers.push(broker);
    const reg = await loadRegistry({ mode: 'external', broker: broker.url }, { username: 'flowreg', password: 'caller-secret', agentPassword: 'agent-secret' }, flow);
    expect(reg.state).toBe('connected');
    await until(() => lastStatus('tin')?.fill === 'green', 'the flow agent online');
    await until(() => reg.listTools().length === 1, 'the flow agent\'s tool');
  });

  it('without agent credentials, the caller\'s login is refused for the agent', async () => {
    const refused: string[] = [];
    const broker = await startBroker({ port: 0, auth: { users, onRefused: (m) => refused.push(m) } });
    brokers.push(broker);
    const reg = await loadRegistry({ mode: 'external', broker: broker.url }, { username: 'flowreg', password: 'caller-secret' }, flow);
    expect(reg.state).toBe('connected');
    await until(() => refused.length > 0, 'the refusal');
    expect(refused[0]).toMatch(/user "flowreg"\): caller flowreg may not leave a will on toolmesh\/v1\/agents\/flows\/status/);
    expect(lastStatus('tin')?.fill).toBe('yellow');
    expect(reg.listTools()).toEqual([]);
  });
});
