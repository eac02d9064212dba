// The toolmesh-broker config node in Node-RED (node-red-node-test-helper): a tool-registry in
// embedded mode that points at it (brokerNode) runs the broker with its port, bind address,
// authentication and users; bad fields are reported naming the field; one registry per broker
// node; a registry without brokerNode keeps its inline settings.
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import registryNode, { type ToolRegistryNode } from '../tool-registry/tool-registry';
import registryCatalog from '../tool-registry/locales/en-US/tool-registry.json';
import brokerNode from './broker';
import brokerCatalog from './locales/en-US/broker.json';
import { stopParkedBrokers } from '../tool-registry/registry';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';

// one RED for both: each sees both catalogs (the last withCatalog sets RED._)
const nodes = [withCatalog(registryNode, registryCatalog, brokerCatalog), withCatalog(brokerNode, registryCatalog, brokerCatalog)];
const tool = (name: string) => defineTool({ name, description: name, risk: 'low', input: z.object({}), execute: () => ({ ok: name }) });
const USERS = 'agent pi pi-secret\ncaller dash dash-secret';

const agents: RpcServer[] = [];
function agent(url: string, agentId: string, login: { username?: string; password?: string } = {}): RpcServer {
  const a = new RpcServer({ authorization: { keys: new Map() }, connection: { url, ...login }, agentId, tools: [tool('echo')] });
  agents.push(a);
  void a.start();
  return a;
}

const broker = (props: Record<string, unknown> = {}) => ({ id: 'bk', type: 'toolmesh-broker', name: 'shop floor', port: 0, host: '127.0.0.1', ...props });
const registry = (id: string, props: Record<string, unknown> = {}) => ({ id, type: 'toolmesh-tool-registry', callerId: `caller-${id}`, mode: 'embedded', brokerNode: 'bk', ...props });

const node = (id: string) => until(() => helper.getNode(id) as ToolRegistryNode | null, `node ${id}`);
const offered = (reg: ToolRegistryNode) => reg.listTools().map((t) => `${t.agentId}/${t.tool.name}`);
function logged(level: number): string[] {
  return helper.log().args.filter((a: Array<{ level: number }>) => a[0].level === level).map((a: Array<{ msg: unknown }>) => String(a[0].msg));
}

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(agents.splice(0).map((a) => a.stop()));
  await helper.unload();
  await stopParkedBrokers();
});

describe('toolmesh-broker', () => {
  it('a registry runs the broker node\'s broker: agents log in with a user from its list, others are refused', async () => {
    // the registry's own inline settings (a port in use by nothing, no auth) are ignored
    await helper.load(nodes, [broker({ requireAuth: true }), registry('reg', { port: 1, requireAuth: false })], { bk: { users: USERS } });
    const reg = await node('reg');
    await until(() => reg.state === 'connected', 'the registry connected');
    expect(reg.brokerPort).not.toBe(1);
    agent(reg.brokerUrl!, 'pi', { username: 'pi', password: 'pi-secret' });
    await until(() => offered(reg).includes('pi/echo'), 'the agent\'s tool offered');
    expect((await reg.call('pi', 'echo', {})).structuredContent).toEqual({ ok: 'echo' });

    agent(reg.brokerUrl!, 'robot', { username: 'robot', password: 'guess' });
    await until(() => logged(helper.log().WARN).some((m) => /embedded broker: connection refused .*user "robot"/.test(m)), 'the refusal logged');
    expect(reg.listAgents().map((a) => a.id)).toEqual(['pi']);
    // flow agents (tool-in) get generated logins on this broker
    expect((await reg.agentConnection('flows'))?.connection.username).toBe('flows');
  });

  it('works with the registry before the broker node in the flow file (Node-RED creates the referenced config node first)', async () => {
    await helper.load(nodes, [registry('reg'), broker()]);
    const reg = await node('reg');
    await until(() => reg.state === 'connected', 'the registry connected');
    agent(reg.brokerUrl!, 'pi');
    await until(() => offered(reg).includes('pi/echo'), 'the agent\'s tool offered');
  });

  it('reports a bad field of the broker node, naming it, and the registry does not start the broker', async () => {
    await helper.load(nodes, [broker({ port: 'abc' }), registry('reg')]);
    const reg = await node('reg');
    await until(() => reg.state === 'error', 'the registry in error');
    expect(reg.brokerUrl).toBeUndefined();
    const errors = logged(helper.log().ERROR);
    expect(errors).toContain('Embedded broker settings not usable: port is "abc"; expected 0–65535');
    expect(errors).toContain('Tool registry not usable: brokerNode: port is "abc"; expected 0–65535');
  });

  it('refuses to expose an open broker node beyond loopback, and a bad user line', async () => {
    await helper.load(nodes, [broker({ host: '0.0.0.0' }), registry('reg')]);
    const reg = await node('reg');
    await until(() => reg.state === 'error', 'the registry in error');
    expect(logged(helper.log().ERROR).some((m) => m.startsWith('Tool registry not usable: brokerNode: The embedded broker would listen on 0.0.0.0, beyond this machine, without authentication'))).toBe(true);
    await helper.unload();

    await helper.load(nodes, [broker({ requireAuth: true }), registry('reg')], { bk: { users: 'agent pi pi-secret\nrobot x y' } });
    const again = await node('reg');
    await until(() => again.state === 'error', 'the registry in error');
    expect(logged(helper.log().ERROR)).toContain('Tool registry not usable: brokerNode: users, line 2: the role is "robot"; expected agent, caller or admin (each line: role id password)');
  });

  it('names brokerNode when it points at no deployed broker node', async () => {
    await helper.load(nodes, [registry('reg', { brokerNode: 'gone' })]);
    const reg = await node('reg');
    await until(() => reg.state === 'error', 'the registry in error');
    expect(logged(helper.log().ERROR)).toContain('Tool registry not usable: brokerNode is "gone"; expected the id of a deployed toolmesh-broker node');
  });

  it('one registry per broker node: a second one reports it and starts nothing', async () => {
    await helper.load(nodes, [broker(), registry('reg1'), registry('reg2')]);
    const [r1, r2] = [await node('reg1'), await node('reg2')];
    await until(() => [r1.state, r2.state].sort().join() === 'connected,error', 'one connected, one in error');
    const [ok, refused] = r1.state === 'connected' ? [r1, r2] : [r2, r1];
    expect(refused.brokerUrl).toBeUndefined();
    expect(logged(helper.log().ERROR)).toContain(`Tool registry not usable: brokerNode: this embedded broker node is already used by tool-registry ${ok.id}; one registry runs a broker node at a time (give this one its own broker node, or use external mode with that broker's URL)`);
    agent(ok.brokerUrl!, 'pi');
    await until(() => offered(ok).includes('pi/echo'), 'the agent on the running one');
  });

  it('a registry without brokerNode keeps its inline settings', async () => {
    await helper.load(nodes, [broker({ requireAuth: true }), registry('reg', { brokerNode: '', port: 0 })], { bk: { users: USERS } });
    const reg = await node('reg');
    await until(() => reg.state === 'connected', 'the registry connected');
    // no authentication inline: an agent without a login is admitted
    agent(reg.brokerUrl!, 'pi');
    await until(() => offered(reg).includes('pi/echo'), 'the agent without a login');
  });
});
