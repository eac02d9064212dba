import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import { BrokerAuth, filterWithin, hashPassword, isPasswordHash, mayLeaveWill, mayPublish, maySubscribe, verifyPassword, type BrokerIdentity } from './broker-auth';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcCaller, RpcServer, defineTool, topics } from '.';
import { until } from '../test/support/until';

const t = topics();
const agent: BrokerIdentity = { username: 'pi', role: 'agent' };
const caller: BrokerIdentity = { username: 'nodered-a', role: 'caller' };
const admin: BrokerIdentity = { username: 'root', role: 'admin' };
const observer: BrokerIdentity = { role: 'observer' };

describe('topic rules', () => {
  it('grants a filter only when every topic it can match is within the pattern', () => {
    expect(filterWithin('a/+/c', 'a/+/c')).toBe(true);
    expect(filterWithin('a/b/c', 'a/+/c')).toBe(true);
    expect(filterWithin('a/+/c', 'a/b/c')).toBe(false);
    expect(filterWithin('a/#', 'a/+')).toBe(false);
    expect(filterWithin('#', 'a/+/c')).toBe(false);
    expect(filterWithin('a/+', 'a/+/c')).toBe(false);
    expect(filterWithin('a/b/c/d', 'a/+/c')).toBe(false);
  });

  it('lets an agent publish only its own status, catalog and results', () => {
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/pi/status', true)).toBe(true);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/pi/catalog', true)).toBe(true);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/pi/rpc/nodered-a/res', false)).toBe(true);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/pi/rpc/nodered-a/res', true)).toBe(false); // retained result
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/robot/status', true)).toBe(false);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/robot/rpc/x/res', false)).toBe(false);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/robot/rpc/pi/req', false)).toBe(false); // no calls as a caller
    expect(mayPublish(t, agent, 'toolmesh/v1/callers/pi/status', true)).toBe(false);
    expect(mayPublish(t, agent, 'toolmesh/v1/agents/pi/rpc/a b/res', false)).toBe(false); // not an id
    expect(mayPublish(t, agent, 'other/v1/agents/pi/status', true)).toBe(false);
  });

  it('lets a caller publish only requests under its own id and its own status', () => {
    expect(mayPublish(t, caller, 'toolmesh/v1/agents/pi/rpc/nodered-a/req', false)).toBe(true);
    expect(mayPublish(t, caller, 'toolmesh/v1/agents/robot/rpc/nodered-a/req', false)).toBe(true);
    expect(mayPublish(t, caller, 'toolmesh/v1/callers/nodered-a/status', true)).toBe(true);
    expect(mayPublish(t, caller, 'toolmesh/v1/agents/pi/rpc/other/req', false)).toBe(false);
    expect(mayPublish(t, caller, 'toolmesh/v1/agents/pi/rpc/nodered-a/req', true)).toBe(false); // retained request
    expect(mayPublish(t, caller, 'toolmesh/v1/agents/pi/status', true)).toBe(false); // no decommissioning
    expect(mayPublish(t, caller, 'toolmesh/v1/callers/other/status', true)).toBe(false);
  });

  it('lets an admin publish anything but $SYS and an observer nothing', () => {
    expect(mayPublish(t, admin, 'toolmesh/v1/agents/pi/status', true)).toBe(true);
    expect(mayPublish(t, admin, 'anything/else', true)).toBe(true);
    expect(mayPublish(t, admin, '$SYS/x', false)).toBe(false);
    expect(mayPublish(t, observer, 'toolmesh/v1/agents/pi/status', true)).toBe(false);
  });

  it('grants subscriptions within the role, also narrower ones, and refuses wildcards beyond it', () => {
    expect(maySubscribe(t, agent, 'toolmesh/v1/agents/pi/rpc/+/req')).toBe(true);
    expect(maySubscribe(t, agent, 'toolmesh/v1/agents/pi/rpc/nodered-a/req')).toBe(true);
    expect(maySubscribe(t, agent, 'toolmesh/v1/callers/+/status')).toBe(true);
    expect(maySubscribe(t, agent, 'toolmesh/v1/agents/robot/rpc/+/req')).toBe(false);
    expect(maySubscribe(t, agent, 'toolmesh/v1/agents/+/status')).toBe(false);
    expect(maySubscribe(t, agent, 'toolmesh/v1/agents/pi/rpc/+/+')).toBe(false);

    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/+/status')).toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/pi/catalog')).toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/+/rpc/nodered-a/res')).toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/pi/rpc/nodered-a/res')).toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/+/rpc/other/res')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/callers/nodered-a/status'), 'its own status (the MCP bridge checks it before starting)').toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/callers/other/status')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/callers/+/status')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/+/rpc/+/res')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/agents/+/rpc/nodered-a/+')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/#')).toBe(false);
    expect(maySubscribe(t, caller, '#')).toBe(false);
    expect(maySubscribe(t, caller, '$share/g/toolmesh/v1/agents/+/rpc/other/res')).toBe(false);

    expect(maySubscribe(t, observer, 'toolmesh/v1/agents/+/catalog')).toBe(true);
    expect(maySubscribe(t, observer, 'toolmesh/v1/agents/+/rpc/+/res')).toBe(false);
    expect(maySubscribe(t, admin, '#')).toBe(true);
  });

  it('approval requests: a caller asks and reads under its own id only; a caller marked approvalGate reads and answers all', () => {
    const gate: BrokerIdentity = { username: 'nodered-reg', role: 'caller', approvalGate: true };
    expect(mayPublish(t, caller, 'toolmesh/v1/approvals/nodered-a/req', false)).toBe(true);
    expect(mayPublish(t, caller, 'toolmesh/v1/approvals/nodered-a/req', true)).toBe(false); // retained: an old request held again
    expect(mayPublish(t, caller, 'toolmesh/v1/approvals/other/req', false)).toBe(false);
    expect(mayPublish(t, caller, 'toolmesh/v1/approvals/nodered-a/res', false)).toBe(false); // no answering itself
    expect(mayPublish(t, caller, 'toolmesh/v1/approvals/other/res', false)).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/approvals/nodered-a/res')).toBe(true);
    expect(maySubscribe(t, caller, 'toolmesh/v1/approvals/other/res')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/approvals/+/res')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/approvals/+/req')).toBe(false);
    expect(maySubscribe(t, caller, 'toolmesh/v1/approvals/nodered-a/req')).toBe(false);

    expect(maySubscribe(t, gate, 'toolmesh/v1/approvals/+/req')).toBe(true);
    expect(maySubscribe(t, gate, 'toolmesh/v1/approvals/#')).toBe(false);
    expect(mayPublish(t, gate, 'toolmesh/v1/approvals/nodered-a/res', false)).toBe(true);
    expect(mayPublish(t, gate, 'toolmesh/v1/approvals/nodered-a/res', true)).toBe(false);
    expect(mayPublish(t, gate, 'toolmesh/v1/approvals/nodered-a/req', false)).toBe(false);
    expect(maySubscribe(t, gate, 'toolmesh/v1/approvals/+/res')).toBe(false);
    // the mark is for callers: an agent or an observer gets nothing of it
    expect(maySubscribe(t, { ...agent, approvalGate: true }, 'toolmesh/v1/approvals/+/req')).toBe(false);
    expect(maySubscribe(t, observer, 'toolmesh/v1/approvals/+/req')).toBe(false);
    expect(maySubscribe(t, admin, 'toolmesh/v1/approvals/+/req')).toBe(true);
  });

  it('accepts a will only on the own status topic', () => {
    expect(mayLeaveWill(t, agent, 'toolmesh/v1/agents/pi/status')).toBe(true);
    expect(mayLeaveWill(t, agent, 'toolmesh/v1/agents/robot/status')).toBe(false);
    expect(mayLeaveWill(t, agent, 'toolmesh/v1/agents/pi/catalog')).toBe(false);
    expect(mayLeaveWill(t, caller, 'toolmesh/v1/callers/nodered-a/status')).toBe(true);
    expect(mayLeaveWill(t, caller, 'toolmesh/v1/callers/other/status')).toBe(false);
    expect(mayLeaveWill(t, observer, 'toolmesh/v1/agents/pi/status')).toBe(false);
    expect(mayLeaveWill(t, admin, 'toolmesh/v1/agents/robot/status')).toBe(true);
  });
});

describe('passwords', () => {
  it('hashes with scrypt and verifies only the right password', async () => {
    const h = await hashPassword('s3cret');
    expect(h).toMatch(/^\$scrypt\$ln=14,r=8,p=1\$[A-Za-z0-9+/]+\$[A-Za-z0-9+/]+$/);
    expect(isPasswordHash(h)).toBe(true);
    expect(await verifyPassword('s3cret', h)).toBe(true);
    expect(await verifyPassword('s3cret ', h)).toBe(false);
    expect(await verifyPassword('s3cret', h.replace('ln=14', 'ln=30'))).toBe(false); // cost out of bounds
    expect(await hashPassword('s3cret')).not.toBe(h); // salted
  });

  it('names the user that cannot be set up', async () => {
    await expect(BrokerAuth.create({ users: [{ username: 'a/b', role: 'agent', password: 'x' }] }, 'toolmesh/v1')).rejects.toThrow(/broker user "a\/b": a username must be/);
    await expect(BrokerAuth.create({ users: [{ username: 'pi', role: 'agent' }] }, 'toolmesh/v1')).rejects.toThrow(/broker user "pi": give a non-empty password/);
    await expect(BrokerAuth.create({ users: [{ username: 'pi', role: 'agent', passwordHash: 'plain' }] }, 'toolmesh/v1')).rejects.toThrow(/passwordHash is not/);
    await expect(BrokerAuth.create({ users: [{ username: 'pi', role: 'root' as 'admin', password: 'x' }] }, 'toolmesh/v1')).rejects.toThrow(/role is "root"/);
    await expect(BrokerAuth.create({
      users: [{ username: 'pi', role: 'agent', password: 'x' }, { username: 'pi', role: 'caller', password: 'y' }],
    }, 'toolmesh/v1')).rejects.toThrow('broker user "pi" is already an agent; one id has one role (got caller too)');
  });
});

/** Connects a raw MQTT 3.1.1 client; rejects with MQTT.js's error when the broker refuses. */
function connect(url: string, username?: string, password?: string, extra: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username, password, ...extra });
}

/** The message of a refused connection, or `connected`. */
async function refusal(url: string, username?: string, password?: string, extra: IClientOptions = {}): Promise<string> {
  try {
    const c = await connect(url, username, password, extra);
    await c.endAsync();
    return 'connected';
  } catch (e) {
    return (e as Error).message;
  }
}

/** Subscribes and resolves with the granted QoS of each filter (128: refused), unlike subscribeAsync, which rejects on any refusal. */
function granted(c: MqttClient, filters: string[]): Promise<number[]> {
  return new Promise((resolve) => {
    c.subscribe(filters, { qos: 1 }, (_err, _granted, packet) => resolve((packet as unknown as { granted: number[] }).granted));
  });
}

/** Records every message a client receives, as `topic payload`. */
function inbox(c: MqttClient): string[] {
  const seen: string[] = [];
  c.on('message', (topic, payload) => seen.push(`${topic} ${payload.toString()}`));
  return seen;
}

const closed = (c: MqttClient) => until(() => !c.connected, 'the broker to close the connection');

describe('embedded broker with authentication', () => {
  let broker: EmbeddedBroker;
  const clients: MqttClient[] = [];
  const refused: string[] = [];
  const open = async (username?: string, password?: string, extra?: IClientOptions) => {
    const c = await connect(broker.url, username, password, extra);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    broker = await startBroker({
      port: 0,
      auth: {
        users: [
          { username: 'pi', role: 'agent', password: 'pi-pw' },
          { username: 'robot', role: 'agent', passwordHash: await hashPassword('robot-pw') },
          { username: 'nodered-a', role: 'caller', password: 'a-pw' },
          { username: 'other', role: 'caller', password: 'other-pw' },
          { username: 'root', role: 'admin', password: 'root-pw' },
          { username: 'gatekeeper', role: 'caller', password: 'gate-pw', approvalGate: true },
        ],
        onRefused: (m) => refused.push(m),
      },
    });
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await broker?.close();
  });

  it('refuses a wrong password, an unknown user and anonymous clients, and says why', async () => {
    expect(await refusal(broker.url, 'pi', 'wrong')).toMatch(/Bad username or password/);
    expect(await refusal(broker.url, 'nobody', 'pi-pw')).toMatch(/Bad username or password/);
    expect(await refusal(broker.url)).toMatch(/Not authorized/);
    expect(await refusal(broker.url, 'robot', 'robot-pw')).toBe('connected'); // a stored hash
    expect(refused.some((m) => m.includes('user "pi"') && m.includes('bad username or password'))).toBe(true);
    expect(refused.join('\n')).not.toContain('wrong');
  });

  it('refuses a will on another agent\'s status topic', async () => {
    const will = { topic: t.agentStatus('robot'), payload: Buffer.from('{"state":"lost"}'), qos: 1 as const, retain: true };
    expect(await refusal(broker.url, 'pi', 'pi-pw', { will })).toMatch(/Not authorized/);
    expect(await refusal(broker.url, 'pi', 'pi-pw', { will: { ...will, topic: t.agentStatus('pi') } })).toBe('connected');
  });

  it('does not deliver what an agent publishes as another agent, and closes its connection', async () => {
    const watcher = await open('root', 'root-pw');
    const seen = inbox(watcher);
    await watcher.subscribeAsync('#', { qos: 1 });
    for (const topic of [t.agentStatus('robot'), t.res('robot', 'x'), t.req('robot', 'pi')]) {
      const pi = await open('pi', 'pi-pw');
      pi.publish(topic, '{"forged":true}', { qos: 1, retain: topic.endsWith('status') });
      await closed(pi);
    }
    const pi = await open('pi', 'pi-pw');
    await pi.publishAsync(t.agentStatus('pi'), '{"state":"online"}', { qos: 1, retain: true });
    await until(() => seen.length > 0, 'the allowed status');
    expect(seen).toEqual([`${t.agentStatus('pi')} {"state":"online"}`]);
    expect(refused).toContain(`publish refused, connection closed: agent pi may not publish a retained message on ${t.agentStatus('robot')}`);
  });

  it('grants a caller nothing of another caller\'s results', async () => {
    const a = await open('nodered-a', 'a-pw');
    const seen = inbox(a);
    expect(await granted(a, [t.responsesTo('other'), '#', t.res('+', '+'), `${t.root}/agents/pi/rpc/+/res`, t.responsesTo('nodered-a')]))
      .toEqual([128, 128, 128, 128, 1]);
    const watcher = await open('root', 'root-pw');
    const watched = inbox(watcher);
    await watcher.subscribeAsync(t.res('+', '+'), { qos: 1 });
    const pi = await open('pi', 'pi-pw');
    await pi.publishAsync(t.res('pi', 'other'), 'for other', { qos: 1 });
    await pi.publishAsync(t.res('pi', 'nodered-a'), 'for a', { qos: 1 });
    await until(() => seen.length > 0 && watched.length === 2, 'both results');
    expect(seen).toEqual([`${t.res('pi', 'nodered-a')} for a`]);
  });

  it('does not pass on a request made under another caller\'s id', async () => {
    const pi = await open('pi', 'pi-pw');
    const seen = inbox(pi);
    await pi.subscribeAsync(t.requestsTo('pi'), { qos: 1 });
    const a = await open('nodered-a', 'a-pw');
    a.publish(t.req('pi', 'other'), 'forged', { qos: 1 });
    await closed(a);
    const a2 = await open('nodered-a', 'a-pw');
    await a2.publishAsync(t.req('pi', 'nodered-a'), 'mine', { qos: 1 });
    await until(() => seen.length > 0, 'the own request');
    expect(seen).toEqual([`${t.req('pi', 'nodered-a')} mine`]);
  });

  it('lets only the agent itself or an admin decommission it', async () => {
    const watcher = await open('root', 'root-pw');
    const seen = inbox(watcher);
    await watcher.subscribeAsync(t.anyAgentCatalog, { qos: 1 });
    const a = await open('nodered-a', 'a-pw');
    a.publish(t.agentCatalog('robot'), '', { qos: 1, retain: true });
    await closed(a);
    const robot = await open('robot', 'robot-pw');
    await robot.publishAsync(t.agentCatalog('robot'), '', { qos: 1, retain: true });
    const root = await open('root', 'root-pw');
    await root.publishAsync(t.agentCatalog('pi'), '', { qos: 1, retain: true });
    await until(() => seen.length === 2, 'two decommissions');
    expect(seen.sort()).toEqual([`${t.agentCatalog('pi')} `, `${t.agentCatalog('robot')} `]);
  });

  it('approval requests: a caller can neither ask under another id nor read another caller\'s answers; the gate identity reads and answers', async () => {
    const at = { req: (c: string) => `${t.root}/approvals/${c}/req`, res: (c: string) => `${t.root}/approvals/${c}/res` };
    const gate = await open('gatekeeper', 'gate-pw');
    const requests = inbox(gate);
    expect(await granted(gate, [at.req('+')])).toEqual([1]);
    const a = await open('nodered-a', 'a-pw');
    const aSeen = inbox(a);
    expect(await granted(a, [at.res('nodered-a'), at.res('other'), at.res('+'), at.req('+')])).toEqual([1, 128, 128, 128]);
    const other = await open('other', 'other-pw');
    const otherSeen = inbox(other);
    expect(await granted(other, [at.res('other')])).toEqual([1]);

    // forged: a request under another caller's id closes the connection and reaches nobody
    a.publish(at.req('other'), 'forged', { qos: 1 });
    await closed(a);
    const a2 = await open('nodered-a', 'a-pw');
    const a2Seen = inbox(a2);
    await a2.subscribeAsync(at.res('nodered-a'), { qos: 1 });
    await a2.publishAsync(at.req('nodered-a'), 'mine', { qos: 1 });
    await until(() => requests.length > 0, 'the own request');
    expect(requests).toEqual([`${at.req('nodered-a')} mine`]);
    // a plain caller cannot answer another caller
    const b = await open('other', 'other-pw');
    b.publish(at.res('nodered-a'), 'fake answer', { qos: 1 });
    await closed(b);
    await gate.publishAsync(at.res('nodered-a'), 'answer', { qos: 1 });
    await until(() => a2Seen.length > 0, 'the answer');
    expect(a2Seen).toEqual([`${at.res('nodered-a')} answer`]);
    expect(otherSeen).toEqual([]);
    expect(aSeen).toEqual([]);
  });

  it('keeps a client id with its user', async () => {
    const pi = await open('pi', 'pi-pw', { clientId: 'toolmesh-agent-pi-1' });
    expect(await refusal(broker.url, 'robot', 'robot-pw', { clientId: 'toolmesh-agent-pi-1' })).toMatch(/Identifier rejected/);
    expect(pi.connected).toBe(true);
    expect(await refusal(broker.url, 'pi', 'pi-pw', { clientId: 'toolmesh-agent-pi-1' })).toBe('connected'); // its own reconnect
  });

  it('lets an admin publish and subscribe anywhere', async () => {
    const root = await open('root', 'root-pw');
    const seen = inbox(root);
    expect(await granted(root, ['#', t.res('+', '+')])).toEqual([1, 1]);
    await root.publishAsync('lab/anything', 'x', { qos: 1 });
    await root.publishAsync(t.req('robot', 'other'), 'y', { qos: 1 });
    await until(() => seen.includes('lab/anything x') && seen.includes(`${t.req('robot', 'other')} y`), 'both deliveries');
  });

  it('runs the protocol end to end with the ids as usernames', async () => {
    const echo = defineTool({ name: 'echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => ({ echo: a.text }) });
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url, username: 'robot', password: 'robot-pw' }, agentId: 'robot', tools: [echo] });
    const rpc = new RpcCaller({ connection: { url: broker.url, username: 'other', password: 'other-pw' }, callerId: 'other' });
    const before = refused.length;
    try {
      await server.start();
      await rpc.start();
      await until(() => rpc.agent('robot')?.ready, 'the agent');
      expect((await rpc.call('robot', 'echo', { text: 'hi' })).structuredContent).toEqual({ echo: 'hi' });
      expect(refused.slice(before)).toEqual([]);
    } finally {
      await rpc.stop();
      await server.stop();
    }
  });
});

describe('embedded broker with anonymous observers', () => {
  it('lets anonymous clients read status and catalogs, nothing else', async () => {
    const broker = await startBroker({ port: 0, auth: { users: [], allowAnonymous: true } });
    try {
      const c = await connect(broker.url);
      expect(await granted(c, [t.anyAgentCatalog, t.res('+', '+')])).toEqual([1, 128]);
      c.publish(t.agentStatus('pi'), 'x', { qos: 1 });
      await closed(c);
      await c.endAsync(true);
    } finally {
      await broker.close();
    }
  });

  it('refuses addUser without auth', async () => {
    const broker = await startBroker({ port: 0 });
    try {
      await expect(broker.addUser({ username: 'pi', role: 'agent', password: 'x' })).rejects.toThrow(/without auth/);
    } finally {
      await broker.close();
    }
  });
});
