// The embedded broker under a login flood (issue 17, item 5) and its refusal to start when aedes'
// internals differ from those its message-queue patch needs (item 9). Real aedes in process,
// real MQTT.js clients for the genuine agent and raw sockets for the flood, all on 127.0.0.1.
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import mqtt from 'mqtt';
import { Aedes } from 'aedes';
import { startBroker, type EmbeddedBroker } from './broker';
import { hashPassword } from './broker-auth';
import { DEFAULT_LOGIN_LIMITS, LoginGuard } from './login-guard';
import { until } from '../test/support/until';

/** An MQTT string: 2-byte length, UTF-8. */
function str(s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
}

/** An MQTT 3.1.1 CONNECT with clean session, username and password. */
function connectPacket(clientId: string, username: string, password: string): Buffer {
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 60]), str(clientId), str(username), str(password)]);
  const len: number[] = [];
  let n = body.length;
  do {
    let byte = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    len.push(byte);
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...len]), body]);
}

/** Sends a raw CONNECT and resolves with the CONNACK's return code (-1: none), how long it took and when it came (performance.now()), ms. */
function rawConnect(port: number, clientId: string, username: string, password: string): Promise<{ code: number; ms: number; at: number }> {
  return new Promise((resolve) => {
    const t0 = performance.now();
    const socket = net.connect(port, '127.0.0.1', () => socket.write(connectPacket(clientId, username, password)));
    let got = Buffer.alloc(0);
    const finish = (code: number) => {
      socket.destroy();
      resolve({ code, ms: performance.now() - t0, at: performance.now() });
    };
    socket.on('data', (d) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4) finish(got[0] === 0x20 ? got[3] : -1);
    });
    socket.on('error', () => finish(-1));
    socket.on('close', () => finish(-1));
    socket.setTimeout(20_000, () => finish(-1));
  });
}

/** Connects as the genuine agent; resolves with when the CONNACK came (performance.now(), ms); rejects when refused. */
async function login(url: string, username: string, password: string): Promise<number> {
  const c = await mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 10_000, username, password, clientId: `${username}-${Math.random()}` });
  const at = performance.now();
  await c.endAsync(true);
  return at;
}

const brokers: EmbeddedBroker[] = [];
afterEach(async () => {
  vi.restoreAllMocks();
  await Promise.all(brokers.splice(0).map((b) => b.close()));
});

describe('embedded broker: login flood', () => {
  it('lets the genuine agent reconnect without a check during a flood of wrong passwords for its user from its address, with a bounded number of scrypt runs', async () => {
    const refused: string[] = [];
    const broker = await startBroker({ port: 0, auth: { users: [{ username: 'pi', role: 'agent', password: 'pi-pw' }], onRefused: (m) => refused.push(m) } });
    brokers.push(broker);
    await login(broker.url, 'pi', 'pi-pw'); // the agent's first login: one scrypt run, remembered
    expect(broker.loginStats()).toMatchObject({ hashRuns: 1, remembered: 0 });

    const FLOOD = 200;
    const t0 = performance.now();
    const flood = Array.from({ length: FLOOD / 2 }, (_, i) => rawConnect(broker.port, `flood-${i}`, 'pi', `guess-${i}`));
    const agentIn = login(broker.url, 'pi', 'pi-pw'); // reconnects in the middle of it
    flood.push(...Array.from({ length: FLOOD / 2 }, (_, i) => rawConnect(broker.port, `flood-b${i}`, 'pi', `guess-b${i}`)));
    const agentAt = await agentIn;
    const answers = await Promise.all(flood);
    const seconds = (performance.now() - t0) / 1000;

    // it got in while the flood went on (how fast: bench/login-flood.mjs), and without a check
    expect(answers.filter((a) => a.at > agentAt).length).toBeGreaterThan(0);
    const stats = broker.loginStats()!;
    expect(stats.remembered).toBe(1);
    const codes = answers.map((a) => a.code);
    expect(codes.filter((c) => c === 0)).toEqual([]);
    expect(codes.filter((c) => c === -1)).toEqual([]);
    const checked = answers.filter((a) => a.code === 4);
    const refusedAtOnce = answers.filter((a) => a.code === 3);
    expect(checked.length + refusedAtOnce.length).toBe(FLOOD);
    // one scrypt run per wrong password that was checked, none for the rest
    expect(stats.hashRuns).toBe(1 + checked.length);
    expect(refusedAtOnce.length).toBe(stats.throttled + stats.queueFull);
    // the throttle's burst plus what it refilled while the flood lasted
    expect(checked.length).toBeLessThanOrEqual(DEFAULT_LOGIN_LIMITS.failedLoginBurst + Math.ceil(seconds * DEFAULT_LOGIN_LIMITS.failedLoginsPerSec) + 1);
    expect(checked.length).toBeGreaterThan(0);
    // the log says it once, not 400 times, and never holds a password
    const floodLines = refused.filter((m) => m.includes('too many failed logins'));
    expect(floodLines.length).toBe(1);
    expect(floodLines[0]).toMatch(/from 127\.0\.0\.1 .*retry in a few seconds/);
    expect(refused.join('\n')).not.toMatch(/guess-|pi-pw/);
  });

  it('lets failed-login throttling decay within seconds, and remembers a connection\'s credentials afresh when it ends', async () => {
    const broker = await startBroker({
      port: 0,
      auth: { users: [{ username: 'pi', role: 'agent', password: 'pi-pw' }, { username: 'robot', role: 'agent', password: 'robot-pw' }], limits: { failedLoginBurst: 3, failedLoginsPerSec: 1 } },
    });
    brokers.push(broker);
    const codes = (await Promise.all(Array.from({ length: 6 }, (_, i) => rawConnect(broker.port, `x${i}`, 'pi', 'wrong')))).map((a) => a.code);
    expect(codes.sort()).toEqual([3, 3, 3, 4, 4, 4]); // a burst of 3 checked, the rest refused without a check
    expect(broker.loginStats()).toMatchObject({ hashRuns: 3, throttled: 3 });
    // the address's bucket refills at 1/s: robot (never remembered) gets in shortly after
    await until(async () => (await rawConnect(broker.port, 'robot-1', 'robot', 'robot-pw')).code === 0, 'the throttle to let robot in', 5000);
    const runs = broker.loginStats()!.hashRuns;
    const c = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, username: 'robot', password: 'robot-pw', clientId: 'robot-2' });
    await c.endAsync(true);
    expect(broker.loginStats()!.hashRuns).toBe(runs); // remembered: no scrypt run
    expect((await rawConnect(broker.port, 'robot-3', 'robot', 'robot-wrong')).code).not.toBe(0); // a wrong one is not
  });

  it('a password taken back does not log in from the remembered credentials', async () => {
    const broker = await startBroker({ port: 0, auth: { users: [] } });
    brokers.push(broker);
    const hash = await hashPassword('hosted-pw');
    await broker.addUser({ username: 'flows', role: 'agent', passwordHash: hash });
    // the same user keeps another password (a configured one): the user stays in the table
    await broker.addUser({ username: 'flows', role: 'agent', password: 'configured-pw' });
    expect((await rawConnect(broker.port, 'flows-1', 'flows', 'hosted-pw')).code).toBe(0);
    const runs = broker.loginStats()!.hashRuns;
    expect((await rawConnect(broker.port, 'flows-2', 'flows', 'hosted-pw')).code).toBe(0);
    expect(broker.loginStats()!.hashRuns).toBe(runs); // remembered
    broker.removePassword('flows', hash);
    expect((await rawConnect(broker.port, 'flows-3', 'flows', 'hosted-pw')).code).not.toBe(0);
    expect((await rawConnect(broker.port, 'flows-4', 'flows', 'configured-pw')).code).toBe(0);
  });

  it('refuses a bad login limit by name', async () => {
    await expect(startBroker({ port: 0, auth: { users: [], limits: { maxConcurrentHashes: 0 } } })).rejects.toThrow('broker login limit maxConcurrentHashes is 0; expected an integer from 1 to 64');
  });
});

describe('LoginGuard', () => {
  it('runs at most maxConcurrentHashes checks, queues maxQueuedHashes and refuses the rest at once', async () => {
    const guard = new LoginGuard({ maxConcurrentHashes: 2, maxQueuedHashes: 3, failedLoginBurst: 1000 });
    const started: number[] = [];
    const results = Array.from({ length: 10 }, (_, i) => {
      const r = guard.admit(`10.0.0.${i}`, 'pi');
      if (typeof r !== 'string') void r.then(() => started.push(i));
      return r;
    });
    expect(results.slice(5)).toEqual(['busy', 'busy', 'busy', 'busy', 'busy']);
    await Promise.resolve();
    expect(started).toEqual([0, 1]);
    guard.settle('10.0.0.0', 'pi', false, 'k');
    await Promise.resolve();
    expect(started).toEqual([0, 1, 2]); // the slot passes to the first one waiting
    for (const i of [1, 2, 3, 4]) guard.settle(`10.0.0.${i}`, 'pi', false, 'k');
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual([0, 1, 2, 3, 4]);
    expect(typeof guard.admit('10.0.0.9', 'pi')).toBe('object'); // slots free again
    expect(guard.stats.queueFull).toBe(5);
  });

  it('throttles per address and per user, refunds a success, and forgets after the TTL', () => {
    let now = 0;
    const guard = new LoginGuard({ failedLoginBurst: 2, failedLoginsPerSec: 1, verifiedTtlMs: 1000 }, () => now);
    const key = guard.credentialKey('pi', Buffer.from('pi-pw'));
    expect(key).not.toContain('pi-pw');
    expect(guard.credentialKey('pi', Buffer.from('pi-pw'))).toBe(key);
    expect(new LoginGuard().credentialKey('pi', Buffer.from('pi-pw'))).not.toBe(key); // a per-process key
    for (let i = 0; i < 2; i++) {
      expect(typeof guard.admit('a', 'pi')).toBe('object');
      guard.settle('a', 'pi', false, key);
    }
    expect(guard.admit('a', 'pi')).toBe('throttled'); // the address and the user are spent
    expect(guard.admit('b', 'pi')).toBe('throttled'); // the user, from elsewhere
    expect(typeof guard.admit('a', 'robot')).toBe('string'); // the address, as another user
    expect(typeof guard.admit('b', 'robot')).toBe('object');
    guard.settle('b', 'robot', true, 'robot-key'); // success: tokens back, remembered
    expect(typeof guard.admit('b', 'robot')).toBe('object');
    guard.settle('b', 'robot', false, 'robot-key');
    now = 1000; // one token back each
    expect(typeof guard.admit('a', 'pi')).toBe('object');
    guard.settle('a', 'pi', false, key);
    expect(guard.remembered('robot-key')).toBe(false); // 1000 ms TTL is over
    guard.remember('robot-key');
    now = 1999;
    expect(guard.remembered('robot-key')).toBe(true);
    expect(guard.remembered(key)).toBe(false);
  });
});

describe('embedded broker: aedes internals', () => {
  const aedesVersion = (): string => {
    const main = createRequire(__filename).resolve('aedes');
    return (JSON.parse(readFileSync(join(dirname(main), 'package.json'), 'utf8')) as { version: string }).version;
  };

  it('refuses to start, naming the missing member and the aedes version, when the message-queue patch cannot apply', async () => {
    const create = Aedes.createBroker.bind(Aedes);
    let made: Aedes | undefined;
    vi.spyOn(Aedes, 'createBroker').mockImplementation(async (opts) => {
      made = await create(opts);
      delete (made as unknown as { mq: Record<string, unknown> }).mq._messageCallbacks;
      return made;
    });
    await expect(startBroker({ port: 0 })).rejects.toThrow(
      `embedded broker not started: aedes.mq._messageCallbacks is not an array in the installed aedes ${aedesVersion()}, so the guard against deep recursion`,
    );
    expect(made?.closed).toBe(true); // and the aedes it made is closed again

    vi.spyOn(Aedes, 'createBroker').mockImplementation(async (opts) => {
      const a = await create(opts);
      (a as unknown as { mq: Record<string, unknown> }).mq._do = 'not a function';
      return a;
    });
    await expect(startBroker({ port: 0 })).rejects.toThrow(/aedes\.mq\._do is not a function/);
  });

  it('starts on the installed aedes', async () => {
    const broker = await startBroker({ port: 0 });
    brokers.push(broker);
    expect((broker.aedes as unknown as { version: string }).version).toBe(aedesVersion());
  });
});
