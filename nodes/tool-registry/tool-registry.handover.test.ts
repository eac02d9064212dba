// The embedded broker outlives a re-created tool-registry node (issue 18, "the broker stays up
// while flows change"), in Node-RED (node-red-node-test-helper): a deploy that re-creates the
// registry with equal broker settings keeps the broker and every agent's connection; a changed
// port moves it; deleting the registry or stopping the flows closes it at once. Also the
// ToolRegistry itself: the hand-over wait expires, and changed users start a new broker.
import net from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import registryNode, { type ToolRegistryNode } from './tool-registry';
import registryCatalog from './locales/en-US/tool-registry.json';
import { parsePolicy } from './policy';
import { ToolRegistry, parkedBrokerCount, stopParkedBrokers, type RegistryOptions } from './registry';
import { helper } from '../../test/support/node-red';
import { freePort } from '../../test/support/mosquitto';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';
import brokerNode from '../broker/broker';
import brokerCatalog from '../broker/locales/en-US/broker.json';

const nodes = [withCatalog(registryNode, registryCatalog)];
const tool = (name: string) => defineTool({ name, description: name, risk: 'low', input: z.object({}), execute: () => ({ ok: name }) });
const USERS = 'agent pi pi-secret\ncaller dash dash-secret';

const agents: RpcServer[] = [];

/** An agent on `url` that counts its MQTT connection's drops (`offline`) and (re)connects (`online`). */
async function agent(url: string, login: { username?: string; password?: string } = {}): Promise<RpcServer & { drops: number; connects: number }> {
  const a = Object.assign(new RpcServer({ authorization: { keys: new Map() }, connection: { url, ...login }, agentId: 'pi', tools: [tool('echo'), tool('drive')] }), { drops: 0, connects: 0 });
  a.on('offline', () => a.drops++);
  a.on('online', () => a.connects++);
  agents.push(a);
  await a.start();
  return a;
}

function regFlow(props: Record<string, unknown>): object[] {
  return [{ id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', callerId: 'flowreg', mode: 'embedded', port: 0, ...props }];
}

async function connected(): Promise<ToolRegistryNode> {
  const reg = await until(() => helper.getNode('reg') as ToolRegistryNode | null, 'the registry node');
  await until(() => reg.state === 'connected', 'the registry connected');
  return reg;
}

/** Whether something accepts TCP connections on 127.0.0.1:`port`. */
function listening(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1', () => { s.destroy(); resolve(true); });
    s.on('error', () => resolve(false));
  });
}

/** Log lines of `level` (helper.log().INFO, .WARN) as strings. */
function logged(level: number): string[] {
  return helper.log().args.filter((a: Array<{ level: number }>) => a[0].level === level).map((a: Array<{ msg: unknown }>) => String(a[0].msg));
}

const offered = (reg: ToolRegistryNode) => reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`);

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await helper.unload();
  await stopParkedBrokers();
});

describe('tool-registry: the embedded broker across deploys', () => {
  it('keeps the broker and the agent\'s connection through full and modified-nodes deploys that change the policy', async () => {
    await helper.load(nodes, regFlow({ policy: 'pi/echo' }));
    const first = await connected();
    const port = first.brokerPort!;
    const pi = await agent(first.brokerUrl!);
    await until(() => offered(first).length === 1, 'the agent\'s offered tool');
    expect(offered(first)).toEqual(['pi/echo']);

    await helper.setFlows(regFlow({ policy: 'pi/*' }), 'full');
    const second = await connected();
    expect(second).not.toBe(first);
    expect(second.brokerPort).toBe(port);
    await until(() => offered(second).length === 2, 'both tools offered under the new policy');
    expect(offered(second)).toEqual(['pi/echo', 'pi/drive']);
    expect((await second.call('pi', 'drive', {})).structuredContent).toEqual({ ok: 'drive' });

    await helper.setFlows(regFlow({ policy: 'pi/drive' }), 'nodes');
    const third = await connected();
    expect(third).not.toBe(second);
    expect(third.brokerPort).toBe(port);
    await until(() => offered(third).length === 1, 'the third policy');
    expect(offered(third)).toEqual(['pi/drive']);
    expect((await third.call('pi', 'echo', {})).structuredContent).toEqual({ ok: 'echo' });
    expect(logged(helper.log().INFO)).toContain(`Embedded broker kept running on mqtt://127.0.0.1:${port}: its clients stayed connected`);

    // "Restart flows": the runtime reloads the stored flows (the helper's are the first policy's)
    await helper.setFlows(null, 'load');
    const fourth = await connected();
    expect(fourth).not.toBe(third);
    expect(fourth.brokerPort).toBe(port);
    await until(() => offered(fourth).length === 1 && offered(fourth)[0] === 'pi/echo', 'the reloaded policy');
    expect({ drops: pi.drops, connects: pi.connects }).toEqual({ drops: 0, connects: 1 });
    expect(parkedBrokerCount()).toBe(0);
  });

  it('with authentication: the re-created registry logs in again, and the agent keeps its login', async () => {
    await helper.load(nodes, regFlow({ requireAuth: true, policy: 'pi/echo' }), { reg: { users: USERS } });
    const first = await connected();
    const port = first.brokerPort;
    const pi = await agent(first.brokerUrl!, { username: 'pi', password: 'pi-secret' });
    await until(() => offered(first).length === 1, 'the agent\'s offered tool');

    await helper.setFlows(regFlow({ requireAuth: true, policy: '*/*' }), 'full', { reg: { users: USERS } });
    const second = await connected();
    expect(second.brokerPort).toBe(port);
    await until(() => offered(second).length === 2, 'both tools under the new policy');
    expect((await second.call('pi', 'drive', {})).structuredContent).toEqual({ ok: 'drive' });
    // flow agents hosted by the new registry get their generated logins on the kept broker
    const hosted = await second.agentConnection('flows');
    expect(hosted?.connection.username).toBe('flows');
    expect(pi.drops).toBe(0);
    // the kept broker's refusals reach the new node's log
    const robot = new RpcServer({ authorization: { keys: new Map() }, connection: { url: second.brokerUrl!, username: 'robot', password: 'guess' }, agentId: 'robot', tools: [tool('echo')] });
    agents.push(robot);
    void robot.start();
    await until(() => logged(helper.log().WARN).some((m) => /embedded broker: connection refused .*user "robot"/.test(m)), 'the refusal logged');
  });

  it('moves the broker to a changed port: the old port closes, agents can connect to the new one', async () => {
    const [p1, p2] = [await freePort(), await freePort()];
    await helper.load(nodes, regFlow({ port: p1 }));
    const first = await connected();
    const pi = await agent(first.brokerUrl!);
    await until(() => offered(first).length === 2, 'the agent\'s tools');

    await helper.setFlows(regFlow({ port: p2 }), 'nodes');
    const second = await connected();
    expect(second.brokerPort).toBe(p2);
    expect(await listening(p1)).toBe(false);
    await until(() => pi.drops > 0, 'the agent\'s connection to the old port dropped');
    expect(parkedBrokerCount()).toBe(0);
    await agent(second.brokerUrl!);
    await until(() => offered(second).length === 2, 'the agent on the new port');
  });

  it('closes the port at once when the registry is deleted', async () => {
    const port = await freePort();
    await helper.load(nodes, [{ id: 'f1', type: 'tab' }, ...regFlow({ port })]);
    const reg = await connected();
    const pi = await agent(reg.brokerUrl!);
    await helper.setFlows([{ id: 'f1', type: 'tab' }], 'full');
    expect(parkedBrokerCount()).toBe(0);
    expect(await listening(port)).toBe(false);
    await until(() => pi.drops > 0, 'the agent\'s connection dropped');
  });

  it('closes the port at once when the flows stop other than for a deploy', async () => {
    const port = await freePort();
    await helper.load(nodes, regFlow({ port }));
    await connected();
    await helper.unload();
    await until(async () => !(await listening(port)), 'the port closed', 2_000);
    expect(parkedBrokerCount()).toBe(0);
  });
});

describe('tool-registry with a toolmesh-broker node: the broker across deploys', () => {
  // one RED for both: each sees both catalogs (the last withCatalog sets RED._)
  const withBroker = [withCatalog(registryNode, registryCatalog, brokerCatalog), withCatalog(brokerNode, registryCatalog, brokerCatalog)];
  const flow = (policy: string, brokerProps: Record<string, unknown> = {}) => [
    { id: 'bk', type: 'toolmesh-broker', name: 'site', port: 0, host: '127.0.0.1', requireAuth: true, ...brokerProps },
    { id: 'reg', type: 'toolmesh-tool-registry', name: 'mesh', callerId: 'flowreg', mode: 'embedded', brokerNode: 'bk', policy },
  ];
  const creds = (users = USERS) => ({ bk: { users } });

  it('keeps the broker and the agent\'s connection through a full deploy, a modified-nodes deploy of the registry alone, a restart of the flows and a renamed broker node', async () => {
    await helper.load(withBroker, flow('pi/echo'), creds());
    const first = await connected();
    const port = first.brokerPort!;
    const pi = await agent(first.brokerUrl!, { username: 'pi', password: 'pi-secret' });
    await until(() => offered(first).length === 1, 'the agent\'s offered tool');

    await helper.setFlows(flow('pi/*'), 'full', creds());
    const second = await connected();
    expect(second).not.toBe(first);
    expect(second.brokerPort).toBe(port);
    await until(() => offered(second).length === 2, 'both tools offered under the new policy');
    expect((await second.call('pi', 'drive', {})).structuredContent).toEqual({ ok: 'drive' });
    const bk = helper.getNode('bk');

    // only the registry changed: the broker node is not re-created, the registry is
    await helper.setFlows(flow('pi/drive'), 'nodes', creds());
    const third = await connected();
    expect(third).not.toBe(second);
    expect(helper.getNode('bk')).toBe(bk);
    expect(third.brokerPort).toBe(port);
    await until(() => offered(third).length === 1 && offered(third)[0] === 'pi/drive', 'the third policy');
    expect(logged(helper.log().INFO)).toContain(`Embedded broker kept running on mqtt://127.0.0.1:${port}: its clients stayed connected`);

    // "Restart flows": the runtime reloads the stored flows (the first policy's)
    await helper.setFlows(null, 'load');
    const fourth = await connected();
    expect(fourth).not.toBe(third);
    expect(fourth.brokerPort).toBe(port);
    await until(() => offered(fourth).length === 1 && offered(fourth)[0] === 'pi/echo', 'the reloaded policy');

    // a new name for the broker node re-creates it and its registry: its settings are the same
    await helper.setFlows(flow('pi/*', { name: 'renamed' }), 'nodes', creds());
    const fifth = await connected();
    expect(helper.getNode('bk')).not.toBe(bk);
    expect(fifth.brokerPort).toBe(port);
    await until(() => offered(fifth).length === 2, 'the fifth policy');
    expect({ drops: pi.drops, connects: pi.connects }).toEqual({ drops: 0, connects: 1 });
    expect(parkedBrokerCount()).toBe(0);
  });

  it('restarts the broker when the broker node\'s users change: the old port closes', async () => {
    await helper.load(withBroker, flow('*/*'), creds());
    const first = await connected();
    const oldPort = first.brokerPort!;
    const pi = await agent(first.brokerUrl!, { username: 'pi', password: 'pi-secret' });
    await until(() => offered(first).length === 2, 'the agent\'s tools');

    // the editor sends a node's changed credentials on the node (which marks it changed), the helper beside it
    const changed = flow('*/*', { credentials: { users: 'agent pi a-new-secret' } });
    await helper.setFlows(changed, 'nodes', creds('agent pi a-new-secret'));
    const second = await connected();
    expect(second.brokerPort).not.toBe(oldPort);
    expect(await listening(oldPort)).toBe(false);
    await until(() => pi.drops > 0, 'the agent\'s connection dropped');
    expect(parkedBrokerCount()).toBe(0);
    await agent(second.brokerUrl!, { username: 'pi', password: 'a-new-secret' });
    await until(() => offered(second).length === 2, 'the agent with its new password');
  });
});

describe('ToolRegistry: keeping the embedded broker', () => {
  const base: RegistryOptions = {
    broker: { mode: 'embedded', port: 0, host: '127.0.0.1' }, root: 'toolmesh/v1', callerId: 'kept',
    policy: parsePolicy('*/*'), defaultTimeoutMs: 5_000, brokerKey: 'k1', brokerHandoverMs: 300,
  };
  const registries: ToolRegistry[] = [];
  afterEach(async () => {
    await Promise.all(registries.splice(0).map((r) => r.close()));
    await stopParkedBrokers();
  });
  const start = async (opts: RegistryOptions) => {
    const r = new ToolRegistry(opts);
    registries.push(r);
    await r.start();
    return r;
  };

  it('stops a kept broker when nobody takes it over in time', async () => {
    const r = await start(base);
    const port = r.brokerPort!;
    await r.close({ keepBroker: true });
    expect(parkedBrokerCount()).toBe(1);
    expect(await listening(port)).toBe(true);
    await until(async () => !(await listening(port)), 'the kept broker stopped', 3_000);
    expect(parkedBrokerCount()).toBe(0);
  });

  it('starts a new broker when the users changed, and drops the old one', async () => {
    const r = await start(base);
    const pi = await agent(r.brokerUrl!);
    const oldPort = r.brokerPort!;
    await r.close({ keepBroker: true });
    const users = [{ username: 'pi', role: 'agent' as const, password: 'pi-secret' }];
    const r2 = await start({ ...base, broker: { mode: 'embedded', port: 0, host: '127.0.0.1', auth: { users } } });
    expect(r2.brokerPort).not.toBe(oldPort);
    expect(await listening(oldPort)).toBe(false);
    await until(() => pi.drops > 0, 'the agent dropped');
  });

  it('without a broker key, close stops the broker even when asked to keep it', async () => {
    const r = await start({ ...base, brokerKey: undefined });
    const port = r.brokerPort!;
    await r.close({ keepBroker: true });
    expect(parkedBrokerCount()).toBe(0);
    expect(await listening(port)).toBe(false);
  });
});
