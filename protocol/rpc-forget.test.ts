// RpcCaller forgets agents that are gone (forgetAfterMs) and keeps no entry for an invalid
// catalog, on a real in-process aedes with a raw MQTT client playing the agents.
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { RpcCaller, type RpcCallerOptions } from './index';
import { startBroker, type EmbeddedBroker } from './broker';
import { until } from '../test/support/until';

let broker: EmbeddedBroker | undefined;
let caller: RpcCaller | undefined;
let pub: MqttClient | undefined;
afterEach(async () => {
  await caller?.stop();
  caller = undefined;
  if (pub) await new Promise<void>((resolve) => pub!.end(false, {}, () => resolve()));
  pub = undefined;
  await broker?.close();
  broker = undefined;
});

const TOOL = { name: 'uptime', description: 'Seconds since boot.', inputSchema: { type: 'object' }, annotations: { risk: 'low' } };

/** A broker, a started caller with `opts`, and `send(topic, body)` from a plain MQTT client (QoS 1, not retained). */
async function setup(opts: Partial<RpcCallerOptions>) {
  broker = await startBroker({ port: 0 });
  caller = new RpcCaller({ connection: { url: broker.url }, callerId: 'forget-test', ...opts });
  await caller.start();
  pub = mqtt.connect(broker.url);
  await new Promise<void>((resolve) => pub!.on('connect', () => resolve()));
  const send = (topic: string, body: unknown) => new Promise<void>((resolve, reject) =>
    pub!.publish(topic, typeof body === 'string' ? body : JSON.stringify(body), { qos: 1 }, (e) => (e ? reject(e) : resolve())));
  const t = caller.topics;
  const status = (agent: string, state: string, instance = 'i1') => send(t.agentStatus(agent), { state, agent, instance, catalogRev: 1, ts: Date.now() });
  const catalog = (agent: string, body: unknown = { agent: { id: agent }, rev: 1, tools: [TOOL] }) => send(t.agentCatalog(agent), body);
  return { caller, send, status, catalog };
}

describe('RpcCaller forgetting agents', () => {
  it('shows a lost agent (calls refused AGENT_OFFLINE) for forgetAfterMs, then forgets it and says so', async () => {
    const { caller, status, catalog } = await setup({ forgetAfterMs: 400 });
    await status('pi', 'online');
    await catalog('pi');
    await until(() => caller.agent('pi')?.ready, 'pi ready');
    const changes: string[] = [];
    caller.on('agents', (id: string) => changes.push(id));
    const lostAt = Date.now();
    await status('pi', 'lost');
    await until(() => caller.agent('pi')?.status?.state === 'lost', 'pi lost');
    const refused = await caller.call('pi', 'uptime');
    expect(refused.structuredContent).toMatchObject({ error: { code: 'AGENT_OFFLINE', details: { outcome: 'not_sent' } } });
    await until(() => caller.agent('pi') === undefined, 'pi forgotten', 3000);
    expect(Date.now() - lostAt).toBeGreaterThanOrEqual(350);
    expect(caller.listAgents()).toEqual([]);
    expect(changes.filter((id) => id === 'pi').length).toBeGreaterThanOrEqual(2); // lost, then forgotten
    // it comes back as if new
    await status('pi', 'online', 'i2');
    await catalog('pi');
    await until(() => caller.agent('pi')?.ready, 'pi ready again');
  });

  it('keeps an online agent, and one that went offline, until forgetAfterMs has passed since it went', async () => {
    const { caller, status } = await setup({ forgetAfterMs: 300 });
    await status('a', 'online');
    await status('b', 'online');
    await until(() => caller.listAgents().length === 2, 'both agents');
    await new Promise((r) => setTimeout(r, 500));
    await status('b', 'offline');
    await until(() => caller.agent('b')?.online === false, 'b offline');
    await until(() => caller.agent('b') === undefined, 'b forgotten');
    expect(caller.agent('a')?.online).toBe(true);
  });

  it('keeps a lost agent while a call to it still waits, and forgets it once the call has ended', async () => {
    // the lost window (offlineGraceMs) is longer than forgetAfterMs: the call is still pending
    const { caller, status, catalog } = await setup({ forgetAfterMs: 200, offlineGraceMs: 60_000 });
    await status('pi', 'online');
    await catalog('pi');
    await until(() => caller.agent('pi')?.ready, 'pi ready');
    const call = caller.call('pi', 'uptime', {}, { timeoutMs: 1000 }); // nobody answers
    await status('pi', 'lost');
    await new Promise((r) => setTimeout(r, 600));
    expect(caller.agent('pi')?.status?.state).toBe('lost');
    expect((await call).structuredContent).toMatchObject({ error: { code: 'TIMEOUT' } });
    await until(() => caller.agent('pi') === undefined, 'pi forgotten after its call ended', 3000);
  });

  it('keeps no entry for a malformed or foreign catalog, forgets a catalog-only agent, and ignores a bad catalog of a known agent', async () => {
    const { caller, send, status, catalog } = await setup({ forgetAfterMs: 300 });
    const warnings: string[] = [];
    caller.on('warn', (m: string) => warnings.push(m));
    await send(caller.topics.agentCatalog('junk-a'), '{not json');
    await catalog('junk-b', { rev: 'one' });
    await catalog('junk-c', { agent: { id: 'someone-else' }, rev: 1, tools: [] });
    await catalog('only-catalog');
    await until(() => warnings.length === 3 && caller.agent('only-catalog'), 'the warnings and the valid catalog');
    expect(caller.listAgents().map((a) => a.id)).toEqual(['only-catalog']);
    await status('pi', 'online');
    await catalog('pi');
    await until(() => caller.agent('pi')?.ready, 'pi ready');
    await catalog('pi', { agent: { id: 'pi' }, rev: 'two' });
    await until(() => warnings.length === 4, 'the warning about pi');
    expect(caller.agent('pi')?.ready).toBe(true); // the last good catalog stays
    await until(() => caller.agent('only-catalog') === undefined, 'the catalog-only agent forgotten');
    expect(caller.agent('pi')?.ready).toBe(true);
  });
});
