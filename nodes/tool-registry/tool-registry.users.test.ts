// The tool-registry's broker-user and device-removal admin endpoints in Node-RED
// (node-red-node-test-helper), on its embedded aedes with authentication, with real clients.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt from 'mqtt';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { RpcServer, defineTool } from '../../protocol';
import registryNode, { type ToolRegistryNode } from './tool-registry';
import registryCatalog from './locales/en-US/tool-registry.json';
import { helper } from '../../test/support/node-red';
import { until } from '../../test/support/until';
import { withCatalog } from '../../test/support/i18n';

const nodes = [withCatalog(registryNode, registryCatalog)];
const ping = defineTool({ name: 'ping', description: 'ping', risk: 'low', input: z.object({}), execute: () => ({ pong: true }) });
const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-users-nr-'));
const started: RpcServer[] = [];

async function loadRegistry(props: Record<string, unknown> = { mode: 'embedded', port: 0, requireAuth: true }, users = 'agent listed listed-secret-long'): Promise<ToolRegistryNode> {
  helper.settings({ userDir });
  await helper.load(nodes, [{ id: 'reg', type: 'tool-registry', name: 'mesh', callerId: 'flowreg', ...props }], { reg: { users } });
  const reg = helper.getNode('reg') as ToolRegistryNode;
  await until(() => reg.state !== 'connecting', 'the registry to connect or fail');
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

const api = (path = '') => `/toolmesh/registry/reg/broker-users${path}`;

beforeAll(() => new Promise<void>((resolve) => helper.startServer(resolve)));
afterAll(() => new Promise<void>((resolve) => helper.stopServer(resolve)));
afterEach(async () => {
  await Promise.all(started.splice(0).map((s) => s.stop()));
  await helper.unload();
});
afterAll(() => rmSync(userDir, { recursive: true, force: true }));

describe('tool-registry broker-user endpoints', () => {
  it('adds with a generated password shown once, resets, removes, refuses listed users, and keeps users across a restart', async () => {
    rmSync(join(userDir, 'toolmesh'), { recursive: true, force: true });
    const reg = await loadRegistry();
    const url = reg.brokerUrl!;
    expect((await helper.request().get(api()).expect(200)).body).toEqual([{ username: 'listed', role: 'agent', source: 'list', online: false }]);

    const added = await helper.request().post(api()).send({ username: 'pi', role: 'agent' }).expect(201);
    expect(added.headers['cache-control']).toBe('no-store');
    expect(added.body).toMatchObject({ username: 'pi', role: 'agent' });
    const first = added.body.password as string;
    expect(first).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await tryConnect(url, 'pi', first)).toBe('connected');
    const chosen = await helper.request().post(api()).send({ username: 'ops', role: 'admin', password: 'ops-chosen-password' }).expect(201);
    expect(chosen.body.password).toBeUndefined();

    expect((await helper.request().post(api()).send({ username: 'pi', role: 'agent' }).expect(409)).body.error).toMatch(/^username: pi is a broker user already/);
    expect((await helper.request().post(api()).send({ username: 'listed', role: 'agent' }).expect(409)).body.error).toMatch(/users text/);
    expect((await helper.request().post(api()).send({ username: 'x y', role: 'agent' }).expect(400)).body.error).toMatch(/^username/);
    expect((await helper.request().post(api()).send({ username: 'x', role: 'root' }).expect(400)).body.error).toMatch(/^role/);
    expect((await helper.request().post(api()).send({ username: 'x', role: 'agent', password: 'short' }).expect(400)).body.error).toMatch(/^password/);

    const online = await mqtt.connectAsync(url, { username: 'pi', password: first, reconnectPeriod: 0 });
    const list = (await helper.request().get(api()).expect(200)).body as Array<{ username: string; source: string; online: boolean; note?: string; addedAt?: string }>;
    expect(list.map((u) => [u.username, u.source, u.online])).toEqual([['listed', 'list', false], ['ops', 'editor', false], ['pi', 'editor', true]]);
    expect(list[2].note).toBe('added in the editor');
    expect(Date.parse(list[2].addedAt!)).toBeGreaterThan(Date.now() - 60_000);

    const closed = new Promise<void>((resolve) => online.once('close', () => resolve()));
    const reset = await helper.request().post(api('/pi/password')).send({}).expect(200);
    const second = reset.body.password as string;
    expect(second).toMatch(/^[A-Za-z0-9_-]{32}$/);
    await closed; // the connection made with the old password is closed
    expect(await tryConnect(url, 'pi', first)).toMatch(/Bad username or password|Not authorized/);
    expect(await tryConnect(url, 'pi', second)).toBe('connected');
    await helper.request().post(api('/nobody/password')).send({}).expect(404);
    await helper.request().post(api('/listed/password')).send({}).expect(409);

    // a restart of the flows (the node is re-created from the same store file)
    await helper.unload();
    const again = await loadRegistry();
    expect(await tryConnect(again.brokerUrl!, 'pi', second)).toBe('connected');
    expect((await helper.request().get(api()).expect(200)).body.map((u: { username: string }) => u.username)).toEqual(['listed', 'ops', 'pi']);

    await helper.request().delete(api('/pi')).expect(200, { removed: true });
    expect(await tryConnect(again.brokerUrl!, 'pi', second)).toMatch(/Bad username or password|Not authorized/);
    await helper.request().delete(api('/pi')).expect(404);
    await helper.request().delete(api('/listed')).expect(409);

    const file = join(userDir, 'toolmesh', 'broker-users-reg.json');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    const text = readFileSync(file, 'utf8');
    const logs = JSON.stringify(helper.log().args);
    for (const pw of [first, second, 'ops-chosen-password']) {
      expect(text).not.toContain(pw);
      expect(logs).not.toContain(pw);
    }
  });

  it('removes a device: a real agent is revoked, cannot come back, and nothing retained of it is left', async () => {
    const reg = await loadRegistry();
    const url = reg.brokerUrl!;
    const { password } = (await helper.request().post(api()).send({ username: 'dev1', role: 'agent' }).expect(201)).body;
    await helper.request().post(api()).send({ username: 'watch', role: 'admin', password: 'watch-password-long' }).expect(201);
    const refused: string[] = [];
    const server = new RpcServer({ authorization: { keys: new Map() }, agentId: 'dev1', tools: [ping], connection: { url, username: 'dev1', password, extra: { reconnectPeriod: 100 } } });
    server.on('connection-error', (e: Error) => refused.push(e.message));
    started.push(server);
    await server.start();
    await until(() => reg.describeAgents().some((a) => a.id === 'dev1' && a.ready), 'the agent online');

    expect((await helper.request().delete('/toolmesh/registry/reg/agents/dev1').expect(200)).body).toEqual({ revoked: true, listed: false });
    await until(() => !reg.describeAgents().some((a) => a.id === 'dev1'), 'the registry to forget the agent');
    await until(() => refused.length >= 2, 'the agent to be refused on reconnect');
    const watcher = await mqtt.connectAsync(url, { username: 'watch', password: 'watch-password-long', reconnectPeriod: 0 });
    const retained: string[] = [];
    watcher.on('message', (topic, _p, packet) => {
      if (packet.retain) retained.push(topic);
    });
    await watcher.subscribeAsync('toolmesh/v1/agents/dev1/#');
    await new Promise((resolve) => setTimeout(resolve, 300));
    await watcher.endAsync();
    expect(retained).toEqual([]);
    expect(reg.describeAgents().some((a) => a.id === 'dev1')).toBe(false);
    expect(refused.at(-1)).toMatch(/Bad username or password|Not authorized/);

    await helper.request().delete('/toolmesh/registry/reg/agents/bad%20id').expect(400);
    await helper.request().delete('/toolmesh/registry/other/agents/dev1').expect(404);
  });

  it('answers 409 without authentication and 404 for a registry that is not deployed', async () => {
    await loadRegistry({ mode: 'embedded', port: 0, requireAuth: false }, '');
    expect((await helper.request().get(api()).expect(409)).body.error).toMatch(/authentication on/);
    await helper.request().post(api()).send({ username: 'pi', role: 'agent' }).expect(409);
    await helper.request().get('/toolmesh/registry/nope/broker-users').expect(404);
  });
});
