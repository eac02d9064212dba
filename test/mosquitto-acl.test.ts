// The ToolMesh topic rules on Debian's mosquitto: scripts/mosquitto/toolmesh.conf with an ACL
// written by scripts/mosquitto/make-acl.mjs and a password file made by mosquitto_passwd.
import { execFileSync } from 'node:child_process';
import { chmodSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import { z } from 'zod';
import { RpcCaller, RpcServer, defineTool, topics } from '../protocol';
import { startMosquittoWith, systemBinary, writePasswordFile, type Mosquitto } from './support/mosquitto';
import { until } from './support/until';

const SCRIPTS = join(__dirname, '..', 'scripts', 'mosquitto');
const MAKE_ACL = join(SCRIPTS, 'make-acl.mjs');
const t = topics();
const PASSWORDS = { pi: 'pi-pw', robot: 'robot-pw', 'nodered-a': 'a-pw', other: 'other-pw', root: 'root-pw', gatekeeper: 'gate-pw' };

const makeAcl = (...args: string[]) => execFileSync(process.execPath, [MAKE_ACL, ...args], { encoding: 'utf8' });

describe('make-acl.mjs', () => {
  it('wrote the example toolmesh.acl (regenerate it with the arguments in its header)', () => {
    const example = readFileSync(join(SCRIPTS, 'toolmesh.acl'), 'utf8');
    expect(example).toBe(makeAcl('--agents', 'pi,robot', '--callers', 'nodered-x', '--admins', 'admin', '--gates', 'nodered-x'));
    expect(example).toContain('# Written for: --root toolmesh/v1 --callers nodered-x --admins admin --agents pi,robot --gates nodered-x');
    expect(example).toContain('topic write toolmesh/v1/approvals/nodered-x/req\ntopic read toolmesh/v1/approvals/nodered-x/res\n');
    expect(example).toContain('topic read toolmesh/v1/approvals/+/req\ntopic write toolmesh/v1/approvals/+/res\n');
  });

  it('refuses bad ids, an id with two roles and a bad root, with status 2', () => {
    const fail = (...args: string[]) => {
      try {
        makeAcl(...args);
        return 'ok';
      } catch (e) {
        const err = e as { status: number; stderr: string };
        return `${err.status} ${err.stderr.trim()}`;
      }
    };
    expect(fail('--callers', 'a/b')).toBe('2 make-acl: --callers: "a/b" is not a ToolMesh id (1–64 letters, digits, _ or -)');
    expect(fail('--callers', 'pi', '--agents', 'pi')).toBe('2 make-acl: pi is listed twice: an id has one role');
    expect(fail('--callers', 'a', '--gates', 'b')).toBe('2 make-acl: --gates: b must be listed in --callers too (a gate is a caller with more rights)');
    expect(fail('--root', 'a/#')).toMatch(/^2 make-acl: --root: "a\/#" must be a topic without wildcards/);
  });
});

const broker = systemBinary('/usr/sbin/mosquitto', 'mosquitto');
const passwd = systemBinary('/usr/bin/mosquitto_passwd', 'mosquitto');

/** Connects a raw MQTT 3.1.1 client; rejects with MQTT.js's error when the broker refuses. */
function connect(url: string, username?: string, password?: string, extra: IClientOptions = {}): Promise<MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username, password, ...extra });
}

/** Records every live message a client receives (not retained ones replayed on subscribing), as `topic payload`. */
function inbox(c: MqttClient): string[] {
  const seen: string[] = [];
  c.on('message', (topic, payload, packet) => {
    if (!packet.retain) seen.push(`${topic} ${payload.toString()}`);
  });
  return seen;
}

describe.skipIf(!broker || !passwd)('ToolMesh ACL on mosquitto (skipped outside CI when mosquitto is not installed)', () => {
  let m: Mosquitto;
  const clients: MqttClient[] = [];
  const open = async (user: keyof typeof PASSWORDS, extra?: IClientOptions) => {
    const c = await connect(m.url, user, PASSWORDS[user], extra);
    clients.push(c);
    return c;
  };

  beforeAll(async () => {
    const example = readFileSync(join(SCRIPTS, 'toolmesh.conf'), 'utf8');
    m = (await startMosquittoWith((port, dir) => {
      const conf = example
        .replace('password_file /etc/mosquitto/toolmesh.passwd', `password_file ${join(dir, 'passwd')}`)
        .replace('acl_file /etc/mosquitto/toolmesh.acl', `acl_file ${join(dir, 'acl')}`)
        .replace('listener 1883 127.0.0.1', `listener ${port} 127.0.0.1`);
      expect(conf.match(new RegExp(dir, 'g'))?.length).toBe(2);
      expect(conf).toContain(`listener ${port} 127.0.0.1`);
      return conf;
    }, (dir) => {
      makeAcl('--agents', 'pi,robot', '--callers', 'nodered-a,other,gatekeeper', '--gates', 'gatekeeper', '--admins', 'root', '--out', join(dir, 'acl'));
      writePasswordFile(join(dir, 'passwd'), PASSWORDS);
      for (const f of ['acl', 'passwd']) chmodSync(join(dir, f), 0o644); // mosquitto started as root reads them as user mosquitto
    }))!;
  });
  afterAll(async () => {
    await Promise.all(clients.map((c) => c.endAsync(true)));
    await m?.stop();
  });

  it('refuses anonymous clients and wrong passwords', async () => {
    await expect(connect(m.url)).rejects.toThrow(/Not authorized/);
    await expect(connect(m.url, 'pi', 'wrong')).rejects.toThrow(/Not authorized|Bad username or password/);
  });

  it('sends an agent\'s will on its own status topic, not on another agent\'s', async () => {
    const root = await open('root');
    const seen = inbox(root);
    await root.subscribeAsync(t.anyAgentStatus, { qos: 1 });
    /** Connects pi with a will on `topic`, drops the TCP connection without DISCONNECT, and waits for the broker to notice. */
    const dropWith = async (topic: string) => {
      const pi = await connect(m.url, 'pi', PASSWORDS.pi, { will: { topic, payload: Buffer.from('lost'), qos: 1, retain: false } });
      pi.stream.destroy();
      await new Promise((r) => setTimeout(r, 300));
      await pi.endAsync(true);
    };
    await dropWith(t.agentStatus('pi'));
    await until(() => seen.length > 0, 'the own will');
    expect(seen).toEqual([`${t.agentStatus('pi')} lost`]);
    // mosquitto 2.0 accepts the CONNECT and checks the will against the ACL when it would send it
    await dropWith(t.agentStatus('robot'));
    const robot = await open('robot');
    await robot.publishAsync(t.agentStatus('robot'), 'sentinel', { qos: 1 });
    await until(() => seen.length > 1, 'the sentinel');
    expect(seen).toEqual([`${t.agentStatus('pi')} lost`, `${t.agentStatus('robot')} sentinel`]);
  });

  it('drops what an agent publishes as another agent or as a caller', async () => {
    const root = await open('root');
    const seen = inbox(root);
    await root.subscribeAsync('#', { qos: 1 });
    const pi = await open('pi');
    for (const topic of [t.agentStatus('robot'), t.agentCatalog('robot'), t.res('robot', 'x'), t.req('robot', 'pi'), t.callerStatus('pi')]) {
      await pi.publishAsync(topic, 'forged', { qos: 1 });
    }
    await pi.publishAsync(t.agentStatus('pi'), 'mine', { qos: 1 });
    await until(() => seen.length > 0, 'the allowed status');
    expect(seen).toEqual([`${t.agentStatus('pi')} mine`]);
  });

  it('delivers nothing of another caller\'s results or status, whatever the subscription', async () => {
    const a = await open('nodered-a');
    const seen = inbox(a);
    await new Promise<void>((resolve) => a.subscribe([t.responsesTo('other'), '#', t.res('+', '+'), t.responsesTo('nodered-a')], { qos: 1 }, () => resolve()));
    const pi = await open('pi');
    const other = await open('other');
    await other.publishAsync(t.callerStatus('other'), 'other online', { qos: 1 });
    await pi.publishAsync(t.res('pi', 'other'), 'for other', { qos: 1 });
    await pi.publishAsync(t.res('pi', 'nodered-a'), 'for a', { qos: 1 });
    await until(() => seen.length > 0, 'the own result');
    await new Promise((r) => setTimeout(r, 200)); // copies for the overlapping subscriptions
    expect(new Set(seen)).toEqual(new Set([`${t.res('pi', 'nodered-a')} for a`]));
  });

  it('drops a request made under another caller\'s id, and a caller posing as an agent', async () => {
    const pi = await open('pi');
    const seen = inbox(pi);
    await pi.subscribeAsync(t.requestsTo('pi'), { qos: 1 });
    const root = await open('root');
    const watched = inbox(root);
    await root.subscribeAsync('#', { qos: 1 });
    const a = await open('nodered-a');
    await a.publishAsync(t.req('pi', 'other'), 'forged', { qos: 1 });
    await a.publishAsync(t.agentStatus('nodered-a'), 'fake agent', { qos: 1 });
    await a.publishAsync(t.agentStatus('pi'), '', { qos: 1, retain: true }); // decommissioning pi
    await a.publishAsync(t.req('pi', 'nodered-a'), 'mine', { qos: 1 });
    await until(() => seen.length > 0 && watched.length > 0, 'the own request');
    expect(seen).toEqual([`${t.req('pi', 'nodered-a')} mine`]);
    expect(watched).toEqual([`${t.req('pi', 'nodered-a')} mine`]); // in order after the forged ones, had they passed
  });

  it('approval requests: a caller asks and reads under its own id only; the gate reads every request and answers', async () => {
    const req = (c: string) => `${t.root}/approvals/${c}/req`;
    const res = (c: string) => `${t.root}/approvals/${c}/res`;
    const gate = await open('gatekeeper');
    const requests = inbox(gate);
    await gate.subscribeAsync(req('+'), { qos: 1 });
    const a = await open('nodered-a');
    const aSeen = inbox(a);
    await new Promise<void>((resolve) => a.subscribe([res('+'), req('+'), res('nodered-a')], { qos: 1 }, () => resolve()));
    const other = await open('other');
    await other.publishAsync(req('nodered-a'), 'forged', { qos: 1 });
    await other.publishAsync(res('nodered-a'), 'fake answer', { qos: 1 });
    await other.publishAsync(req('other'), 'from other', { qos: 1 });
    await until(() => requests.length > 0, 'the own request');
    await gate.publishAsync(res('other'), 'for other', { qos: 1 });
    await gate.publishAsync(res('nodered-a'), 'for a', { qos: 1 });
    await until(() => aSeen.length > 0, 'the answer to a');
    await new Promise((r) => setTimeout(r, 200));
    expect(requests).toEqual([`${req('other')} from other`]);
    expect(new Set(aSeen)).toEqual(new Set([`${res('nodered-a')} for a`]));
  });

  it('lets an admin publish and read anything', async () => {
    const root = await open('root');
    const seen = inbox(root);
    await root.subscribeAsync('lab/#', { qos: 1 });
    await root.publishAsync('lab/x', 'y', { qos: 1 });
    await root.publishAsync(t.req('robot', 'other'), 'as other', { qos: 1 });
    await until(() => seen.includes('lab/x y'), 'the admin\'s message');
  });

  it('carries the protocol end to end with the ids as usernames', async () => {
    const echo = defineTool({ name: 'echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => ({ echo: a.text }) });
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: m.url, username: 'robot', password: PASSWORDS.robot }, agentId: 'robot', tools: [echo] });
    const caller = new RpcCaller({ connection: { url: m.url, username: 'other', password: PASSWORDS.other }, callerId: 'other' });
    try {
      await server.start();
      await caller.start();
      await until(() => caller.agent('robot')?.ready, 'the agent');
      expect((await caller.call('robot', 'echo', { text: 'via acl' })).structuredContent).toEqual({ echo: 'via acl' });
    } finally {
      await caller.stop();
      await server.stop();
    }
  });
});
