// The broker users a registry makes for hosted flow agents (agentConnection) go again with
// releaseAgentConnection, on the real embedded aedes with authentication, so agents that come
// and go for months leave no user each.
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { parsePolicy } from './policy';
import { ToolRegistry, type BrokerChoice } from './registry';
import type { ConnectOptions } from '../../protocol';

let reg: ToolRegistry | undefined;
afterEach(async () => {
  await reg?.close();
  reg = undefined;
});

async function start(broker: BrokerChoice): Promise<ToolRegistry> {
  reg = new ToolRegistry({ broker, root: 'toolmesh/v1', callerId: 'node-red', policy: parsePolicy(undefined), defaultTimeoutMs: 5000 });
  await reg.start();
  return reg;
}

/** Connects once with `conn` and reports `connected`, or the refusal's message. */
function tryConnect(conn: ConnectOptions): Promise<string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(conn.url, { username: conn.username, password: conn.password, reconnectPeriod: 0, connectTimeout: 5000 });
    c.on('connect', () => c.end(true, {}, () => resolve('connected')));
    c.on('error', (e) => c.end(true, {}, () => resolve(e.message)));
  });
}

const brokerOf = (r: ToolRegistry) => (r as unknown as { broker: { userCount: number } }).broker;

describe('releaseAgentConnection', () => {
  it('takes back the users made for 20 hosted agents, refuses their old passwords, and makes a new one on the next agentConnection', async () => {
    const r = await start({ mode: 'embedded', port: 0, host: '127.0.0.1', auth: { users: [{ username: 'pi', role: 'agent', password: 'pi-secret-long-enough' }] } });
    const baseline = brokerOf(r).userCount; // pi and the registry's own caller
    expect(baseline).toBe(2);
    const conns = new Map<string, ConnectOptions>();
    for (let i = 0; i < 20; i++) conns.set(`flow-${i}`, (await r.agentConnection(`flow-${i}`))!.connection);
    expect(r.hostedAgentUsers).toBe(20);
    expect(brokerOf(r).userCount).toBe(baseline + 20);
    expect(await tryConnect(conns.get('flow-3')!)).toBe('connected');

    for (const id of conns.keys()) r.releaseAgentConnection(id);
    await new Promise((resolve) => setImmediate(resolve));
    expect(r.hostedAgentUsers).toBe(0);
    expect(brokerOf(r).userCount).toBe(baseline);
    expect(await tryConnect(conns.get('flow-3')!)).toMatch(/Not authorized|Bad username or password/i);

    const again = (await r.agentConnection('flow-3'))!.connection;
    expect(again.password).not.toBe(conns.get('flow-3')!.password);
    expect(await tryConnect(again)).toBe('connected');
    r.releaseAgentConnection('never-made'); // no-op
    expect(r.hostedAgentUsers).toBe(1);
  });

  it('keeps a listed user\'s own password when the hosted agent with that id is released, also when released before its user was made', async () => {
    const r = await start({ mode: 'embedded', port: 0, host: '127.0.0.1', auth: { users: [{ username: 'pi', role: 'agent', password: 'pi-secret-long-enough' }] } });
    const hosted = (await r.agentConnection('pi'))!.connection;
    expect(await tryConnect(hosted)).toBe('connected');
    r.releaseAgentConnection('pi');
    await new Promise((resolve) => setImmediate(resolve));
    expect(await tryConnect(hosted)).toMatch(/Not authorized|Bad username or password/i);
    expect(await tryConnect({ ...hosted, password: 'pi-secret-long-enough' })).toBe('connected');
    // released while the user is still being made (hashing): it is taken back once it exists
    const pending = r.agentConnection('late');
    await new Promise((resolve) => setTimeout(resolve, 5));
    r.releaseAgentConnection('late');
    const late = (await pending)!.connection;
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(r.hostedAgentUsers).toBe(0);
    expect(await tryConnect(late)).toMatch(/Not authorized|Bad username or password/i);
  });

  it('is a no-op on an embedded broker without authentication', async () => {
    const r = await start({ mode: 'embedded', port: 0, host: '127.0.0.1' });
    const conn = (await r.agentConnection('flow-1'))!.connection;
    r.releaseAgentConnection('flow-1');
    expect(r.hostedAgentUsers).toBe(0);
    expect(await tryConnect(conn)).toBe('connected');
  });
});
