// Broker users added one by one (issue 18, item 4) and removed devices (item 3), on the real
// embedded aedes with authentication: the store file, the running broker, and what a client sees.
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parsePolicy } from './policy';
import { ToolRegistry, type BrokerChoice } from './registry';
import { BrokerUserStore, userStoreFile } from './user-store';
import { hashPassword } from '../../protocol/broker-auth';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';

let dir: string;
let file: string;
const regs: ToolRegistry[] = [];
const warnings: string[] = [];
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'toolmesh-users-'));
  file = userStoreFile(dir, 'reg1');
  warnings.length = 0;
});
afterEach(async () => {
  await Promise.all(regs.splice(0).map((r) => r.close()));
  await rm(dir, { recursive: true, force: true });
});

const EMBEDDED: BrokerChoice = { mode: 'embedded', port: 0, host: '127.0.0.1', auth: { users: [{ username: 'listed', role: 'agent', password: 'listed-secret-long' }] } };

async function start(broker: BrokerChoice = EMBEDDED, withStore = true, brokerKey?: string): Promise<ToolRegistry> {
  const reg = new ToolRegistry({ broker, root: 'toolmesh/v1', callerId: 'node-red', policy: parsePolicy(undefined), defaultTimeoutMs: 5000, userStoreFile: withStore ? file : undefined, brokerKey });
  reg.on('warn', (m: string) => warnings.push(m));
  regs.push(reg);
  await reg.start();
  return reg;
}

/** Connects once and reports `connected`, or the refusal's message. */
function tryConnect(url: string, username: string, password: string): Promise<string> {
  return new Promise((resolve) => {
    const c = mqtt.connect(url, { username, password, reconnectPeriod: 0, connectTimeout: 5000 });
    c.on('connect', () => c.end(true, {}, () => resolve('connected')));
    c.on('error', (e) => c.end(true, {}, () => resolve(e.message)));
  });
}

/** What a fresh subscriber to `filter` gets retained within 300 ms (topic → payload). */
async function retained(url: string, filter: string): Promise<Map<string, string>> {
  const c = await mqtt.connectAsync(url, { username: 'ops', password: 'ops-secret-long-enough', reconnectPeriod: 0 });
  const got = new Map<string, string>();
  c.on('message', (topic, payload, packet) => {
    if (packet.retain) got.set(topic, payload.toString());
  });
  await c.subscribeAsync(filter);
  await new Promise((resolve) => setTimeout(resolve, 300));
  await c.endAsync();
  return got;
}

describe('BrokerUserStore', () => {
  it('writes only hashes, mode 0600, atomically, and reads them back', async () => {
    const store = await BrokerUserStore.open(file);
    expect(store.list()).toEqual([]);
    const hash = await hashPassword('a-password-never-stored');
    await store.add({ username: 'pi', role: 'agent', passwordHash: hash, addedAt: new Date().toISOString(), note: 'added in the editor' });
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    expect(text).toContain(hash);
    expect(text).not.toContain('a-password-never-stored');
    await expect(store.add({ username: 'pi', role: 'agent', passwordHash: hash, addedAt: new Date().toISOString() })).rejects.toMatchObject({ code: 'EXISTS' });
    await expect(store.add({ username: 'bad id', role: 'agent', passwordHash: hash, addedAt: new Date().toISOString() })).rejects.toThrow(/username/);
    await expect(store.add({ username: 'x', role: 'root' as 'agent', passwordHash: hash, addedAt: new Date().toISOString() })).rejects.toThrow(/role/);
    await expect(store.add({ username: 'x', role: 'agent', passwordHash: 'plain', addedAt: new Date().toISOString() })).rejects.toThrow(/passwordHash/);
    const again = await BrokerUserStore.open(file);
    expect(again.list().map((u) => [u.username, u.role, u.note])).toEqual([['pi', 'agent', 'added in the editor']]);
    expect(await again.remove('pi')).toBe(true);
    expect(await again.remove('pi')).toBe(false);
    expect((await BrokerUserStore.open(file)).list()).toEqual([]);
  });

  it('refuses a malformed file, naming the entry and the field', async () => {
    const bad = join(dir, 'bad.json');
    await writeFile(bad, '{"users":[{"username":"pi","role":"agent","passwordHash":"nope","addedAt":"2026-01-01T00:00:00Z"}]}');
    await expect(BrokerUserStore.open(bad)).rejects.toThrow(/users\[0\] \(pi\): passwordHash/);
    await writeFile(bad, 'not json');
    await expect(BrokerUserStore.open(bad)).rejects.toThrow(/not JSON/);
  });
});

describe('ToolRegistry broker users', () => {
  it('add: logs in at once; reset: old refused, new works; remove: refused and its client disconnected; restart keeps users', async () => {
    const reg = await start();
    const url = reg.brokerUrl!;
    await reg.addBrokerUser({ username: 'ops', role: 'admin', passwordHash: await hashPassword('ops-secret-long-enough') });
    await reg.addBrokerUser({ username: 'pi', role: 'agent', passwordHash: await hashPassword('pi-first-password'), note: 'added in the editor' });
    expect(await tryConnect(url, 'pi', 'pi-first-password')).toBe('connected');
    await expect(reg.addBrokerUser({ username: 'pi', role: 'agent', passwordHash: await hashPassword('x-long-enough') })).rejects.toMatchObject({ code: 'EXISTS' });
    await expect(reg.addBrokerUser({ username: 'listed', role: 'agent', passwordHash: await hashPassword('x-long-enough') })).rejects.toMatchObject({ code: 'EXISTS' });
    await expect(reg.addBrokerUser({ username: 'node-red', role: 'caller', passwordHash: await hashPassword('x-long-enough') })).rejects.toMatchObject({ code: 'EXISTS' });
    await expect(reg.addBrokerUser({ username: 'x', role: 'agent', passwordHash: 'plain' })).rejects.toThrow(/^passwordHash/);

    await reg.resetBrokerPassword('pi', await hashPassword('pi-second-password'));
    expect(await tryConnect(url, 'pi', 'pi-first-password')).toMatch(/Not authorized|Bad username or password/i);
    expect(await tryConnect(url, 'pi', 'pi-second-password')).toBe('connected');

    const online = await mqtt.connectAsync(url, { username: 'pi', password: 'pi-second-password', reconnectPeriod: 0 });
    const users = reg.listBrokerUsers();
    expect(users.map((u) => [u.username, u.source, u.online])).toEqual([['listed', 'list', false], ['ops', 'editor', false], ['pi', 'editor', true]]);
    expect(users.find((u) => u.username === 'pi')?.note).toBe('added in the editor');
    const closed = new Promise<void>((resolve) => online.once('close', () => resolve()));
    expect(await reg.removeBrokerUser('pi')).toBe(true);
    await closed;
    expect(online.connected).toBe(false);
    expect(await tryConnect(url, 'pi', 'pi-second-password')).toMatch(/Not authorized|Bad username or password/i);
    expect(await reg.removeBrokerUser('pi')).toBe(false);
    await expect(reg.removeBrokerUser('listed')).rejects.toMatchObject({ code: 'LISTED' });

    await reg.addBrokerUser({ username: 'cam', role: 'agent', passwordHash: await hashPassword('cam-password-long') });
    await reg.close();
    const again = await start();
    expect(again.listBrokerUsers().filter((u) => u.source === 'editor').map((u) => u.username)).toEqual(['cam', 'ops']);
    expect(await tryConnect(again.brokerUrl!, 'cam', 'cam-password-long')).toBe('connected');
    expect(await tryConnect(again.brokerUrl!, 'pi', 'pi-second-password')).toMatch(/Not authorized|Bad username or password/i);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const text = await readFile(file, 'utf8');
    for (const pw of ['pi-first-password', 'pi-second-password', 'cam-password-long', 'ops-secret-long-enough']) expect(text).not.toContain(pw);
    for (const w of warnings) for (const pw of ['pi-first-password', 'pi-second-password', 'cam-password-long']) expect(w).not.toContain(pw);
  });

  it('a registry that takes over the running broker (a deploy) keeps the users, lists and revokes them, without a reconnect', async () => {
    const first = await start(EMBEDDED, true, 'reg1');
    await first.addBrokerUser({ username: 'pi', role: 'agent', passwordHash: await hashPassword('pi-first-password') });
    const online = await mqtt.connectAsync(first.brokerUrl!, { username: 'pi', password: 'pi-first-password', reconnectPeriod: 0 });
    let closes = 0;
    online.on('close', () => closes++);
    await first.close({ keepBroker: true });
    regs.splice(regs.indexOf(first), 1);
    const second = await start(EMBEDDED, true, 'reg1');
    try {
      expect(second.brokerKept).toBe(true);
      expect(closes).toBe(0);
      expect(second.listBrokerUsers().find((u) => u.username === 'pi')).toMatchObject({ source: 'editor', online: true });
      expect(await second.removeBrokerUser('pi')).toBe(true);
      await waitFor(() => closes === 1);
      expect(await tryConnect(second.brokerUrl!, 'pi', 'pi-first-password')).toMatch(/Not authorized|Bad username or password/i);
    } finally {
      await online.endAsync(true);
    }
  });

  it('throws in external mode, without authentication, and without a store file', async () => {
    const open = await start({ mode: 'embedded', port: 0, host: '127.0.0.1' });
    expect(() => open.listBrokerUsers()).toThrow(/embedded broker with authentication on/);
    const noStore = await start(EMBEDDED, false);
    await expect(noStore.addBrokerUser({ username: 'pi', role: 'agent', passwordHash: await hashPassword('pi-first-password') })).rejects.toThrow(/user store/);
    const ext = new ToolRegistry({ broker: { mode: 'external', connection: { url: 'mqtt://127.0.0.1:1' } }, root: 'toolmesh/v1', callerId: 'c', policy: parsePolicy(undefined), defaultTimeoutMs: 1000 });
    regs.push(ext);
    await expect(ext.removeBrokerUser('pi')).rejects.toThrow(/embedded broker with authentication on/);
    await expect(ext.decommissionAgent('pi')).rejects.toThrow(/embedded broker/);
  });

  it('removeAgent: a real agent is revoked, cannot reconnect, its retained status and catalog are empty and the registry forgets it', async () => {
    const reg = await start();
    const url = reg.brokerUrl!;
    await reg.addBrokerUser({ username: 'ops', role: 'admin', passwordHash: await hashPassword('ops-secret-long-enough') });
    await reg.addBrokerUser({ username: 'dev1', role: 'agent', passwordHash: await hashPassword('dev1-password-long') });
    const ping = defineTool({ name: 'ping', description: 'ping', risk: 'low', input: z.object({}), execute: () => ({ pong: true }) });
    const server = new RpcServer({
      authorization: { keys: new Map() }, agentId: 'dev1', info: { name: 'Device 1', kind: 'test' }, tools: [ping],
      connection: { url, username: 'dev1', password: 'dev1-password-long', extra: { reconnectPeriod: 100 } },
    });
    const refused: string[] = [];
    server.on('connection-error', (e: Error) => refused.push(e.message));
    server.on('error', (e: Error) => refused.push(e.message));
    await server.start();
    try {
      await waitFor(() => reg.agent('dev1')?.ready === true);
      expect((await retained(url, 'toolmesh/v1/agents/dev1/#')).size).toBe(2);
      expect(await reg.removeAgent('dev1')).toEqual({ revoked: true, listed: false });
      await waitFor(() => reg.agent('dev1') === undefined);
      expect(await retained(url, 'toolmesh/v1/agents/dev1/#')).toEqual(new Map());
      // it keeps trying (every 100 ms) and is refused: nothing retained comes back
      await new Promise((resolve) => setTimeout(resolve, 600));
      expect(reg.agent('dev1')).toBeUndefined();
      expect(await retained(url, 'toolmesh/v1/agents/dev1/#')).toEqual(new Map());
      expect(warnings.some((w) => /user "dev1".*bad username or password/.test(w))).toBe(true);
    } finally {
      await server.stop();
    }
  });
});

async function waitFor(cond: () => boolean, ms = 5000): Promise<void> {
  const until = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > until) throw new Error('timed out waiting');
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
}
