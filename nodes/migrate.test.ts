// The flows migration of issue 18 (old node types → toolmesh-*): the pure rewrite, the file
// command (backup, atomic replace, dry run, settings hints, usage), and the proof that the
// credentials stay valid: a real Node-RED with an encrypted flows_cred.json holding the broker
// password of an external-mode tool-registry; its flows file is put back to the old types (Node-RED
// then waits for missing types), migrated, and after a restart the registry logs in to an aedes
// broker with exactly that password.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Aedes } from 'aedes';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BACKUP_SUFFIX, migrateFlows, migrateFlowsFile, RENAMED_TYPES, runMigrate } from './migrate';
import { createNodeRed, type NodeRedInstance } from '../test/support/node-red-instance';
import { until } from '../test/support/until';

const OLD_FLOW = [
  { id: 't1', type: 'tab', label: 'ToolMesh' },
  { id: 'reg', type: 'tool-registry', mode: 'embedded', port: 1883 },
  { id: 'rt', type: 'remote-tool', z: 't1', registry: 'reg', agent: 'pi', tool: 'x', wires: [['dbg']] },
  { id: 'la', type: 'llm-agent', z: 't1', registry: 'reg', wires: [[], [], []] },
  { id: 'ti', type: 'tool-in', z: 't1', registry: 'reg', wires: [['to']] },
  { id: 'to', type: 'tool-out', z: 't1', wires: [] },
  { id: 'cg', type: 'confirm-gate', z: 't1', registry: 'reg', wires: [[], []] },
  { id: 'al', type: 'audit-log', z: 't1', file: 'a.jsonl', wires: [[]] },
  { id: 'dbg', type: 'debug', z: 't1', wires: [] },
  { id: 'b2', type: 'toolmesh-broker', port: 1884 },
  { id: 'sf', type: 'subflow:tool-in', z: 't1', wires: [] },
  { id: 'x', type: 'tool-registry-extra', z: 't1', wires: [] },
];

describe('migrateFlows', () => {
  it('prefixes exactly the seven old types, keeps ids and every other property, and leaves the input alone', () => {
    const before = JSON.stringify(OLD_FLOW);
    const { flows, changed, nodes } = migrateFlows(OLD_FLOW);
    expect(JSON.stringify(OLD_FLOW)).toBe(before);
    expect(changed).toBe(7);
    expect(flows.map((n) => n.type)).toEqual(['tab', 'toolmesh-tool-registry', 'toolmesh-remote-tool', 'toolmesh-llm-agent', 'toolmesh-tool-in',
      'toolmesh-tool-out', 'toolmesh-confirm-gate', 'toolmesh-audit-log', 'debug', 'toolmesh-broker', 'subflow:tool-in', 'tool-registry-extra']);
    expect(flows.map((n) => n.id)).toEqual(OLD_FLOW.map((n) => n.id));
    expect(flows.map(({ type: _t, ...rest }) => rest)).toEqual(OLD_FLOW.map(({ type: _t, ...rest }) => rest));
    expect(nodes[0]).toEqual({ id: 'reg', from: 'tool-registry', to: 'toolmesh-tool-registry' });
    expect(Object.keys(RENAMED_TYPES).sort()).toEqual(nodes.map((n) => n.from).sort());
  });

  it('is idempotent, and takes the admin API shape { rev, flows }', () => {
    const once = migrateFlows(OLD_FLOW).flows;
    expect(migrateFlows(once)).toMatchObject({ changed: 0, flows: once });
    const doc = migrateFlows({ rev: 'abc', flows: OLD_FLOW });
    expect(doc.changed).toBe(7);
    expect(doc.flows).toEqual({ rev: 'abc', flows: once });
  });

  it('refuses what is not a flows document, naming the place', () => {
    expect(() => migrateFlows({ nodes: [] })).toThrow(/flows: expected an array of nodes/);
    expect(() => migrateFlows('[]')).toThrow(/flows: expected an array/);
    expect(() => migrateFlows([{ id: 'a', type: 'tab' }, 7])).toThrow('flows[1]: expected a node object, got number');
  });
});

describe('migrate-flows command', () => {
  let dir: string;
  beforeAll(() => { dir = mkdtempSync(join(tmpdir(), 'toolmesh-migrate-')); });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  const run = async (...argv: string[]) => {
    const out: string[] = [];
    const err: string[] = [];
    const code = await runMigrate(argv, (l) => out.push(l), (l) => err.push(l));
    return { code, out: out.join('\n'), err: err.join('\n') };
  };

  it('answers bad usage with exit code 2 and the usage text, and an unreadable file with 1', async () => {
    expect(await run()).toMatchObject({ code: 2, err: expect.stringContaining('usage: toolmesh-node-red migrate-flows <flows.json>') });
    expect((await run('a.json', 'b.json')).code).toBe(2);
    expect((await run('--force', 'a.json')).err).toContain('unknown option --force');
    expect((await run('--help')).out).toContain('tool-registry → toolmesh-tool-registry');
    const missing = await run(join(dir, 'nope.json'));
    expect(missing.code).toBe(1);
    expect(missing.err).toMatch(/nope\.json: cannot read the flows file/);
    writeFileSync(join(dir, 'bad.json'), '{"flows": 3}');
    expect((await run(join(dir, 'bad.json'))).err).toMatch(/bad\.json: flows: expected an array/);
  });

  it('dry run prints and writes nothing; the real run keeps a backup, the mode and the format, and a second run changes nothing', async () => {
    const file = join(dir, 'flows.json');
    const original = `${JSON.stringify(OLD_FLOW, null, 4)}\n`;
    writeFileSync(file, original);
    chmodSync(file, 0o640);
    writeFileSync(join(dir, 'settings.js'), 'module.exports = {\n  adminAuth: { users: [{ username: "v", permissions: ["read", "tool-registry.read", "confirm-gate.write"] }] }\n};\n');

    const dry = await run('migrate-flows', file, '--dry-run');
    expect(dry.code).toBe(0);
    expect(dry.out).toContain('would change node reg: tool-registry → toolmesh-tool-registry');
    expect(readFileSync(file, 'utf8')).toBe(original);
    expect(existsSync(file + BACKUP_SUFFIX)).toBe(false);

    const real = await run(file);
    expect(real.code).toBe(0);
    expect(real.out).toContain('7 node(s) changed');
    expect(real.out).toContain('settings.js:2: tool-registry.read → toolmesh-tool-registry.read');
    expect(real.out).toContain('settings.js:2: confirm-gate.write → toolmesh-confirm-gate.write');
    expect(readFileSync(file + BACKUP_SUFFIX, 'utf8')).toBe(original);
    const text = readFileSync(file, 'utf8');
    expect(text).toBe(`${JSON.stringify(migrateFlows(OLD_FLOW).flows, null, 4)}\n`);
    expect(statSync(file).mode & 0o777).toBe(0o640);
    expect((await run(file)).out).toContain('nothing to do');
    expect(readFileSync(file, 'utf8')).toBe(text);
    expect(existsSync(`${file}${BACKUP_SUFFIX}.1`)).toBe(false);

    // an old file imported again later: the first backup is kept, the next one numbered; compact stays compact
    writeFileSync(file, JSON.stringify(OLD_FLOW));
    const again = await migrateFlowsFile(file);
    expect(again.backup).toBe(`${file}${BACKUP_SUFFIX}.1`);
    expect(readFileSync(file + BACKUP_SUFFIX, 'utf8')).toBe(original);
    expect(readFileSync(file, 'utf8')).toBe(JSON.stringify(migrateFlows(OLD_FLOW).flows));
  });
});

describe('a real Node-RED keeps the encrypted credentials across the migration', () => {
  let nr: NodeRedInstance | undefined;
  let server: Server | undefined;
  let aedes: Aedes | undefined;
  const logins: { username?: string; password?: string }[] = [];
  const PASSWORD = 'pw-Ü-' + Math.random().toString(36).slice(2);

  afterAll(async () => {
    await nr?.dispose();
    await new Promise<void>((r) => (aedes ? aedes.close(() => r()) : r()));
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  });

  it('the migrated flows start and the registry logs in with the password from flows_cred.json', async () => {
    aedes = await Aedes.createBroker({
      authenticate: (_c, username, password, done) => {
        logins.push({ username, password: password?.toString() });
        done(null, username === 'nr-caller' && password?.toString() === PASSWORD);
      },
    });
    server = createServer((s) => aedes!.handle(s));
    await new Promise<void>((r) => server!.listen(0, '127.0.0.1', () => r()));
    const broker = `mqtt://127.0.0.1:${(server.address() as { port: number }).port}`;

    const registry = { id: 'mig-reg', type: 'toolmesh-tool-registry', name: 'mig', mode: 'external', broker, root: 'toolmesh/v1', policy: '*/*', timeout: 30000 };
    const flows = [
      { id: 'mig-tab', type: 'tab', label: 'migrate' },
      registry,
      { id: 'mig-rt', type: 'toolmesh-remote-tool', z: 'mig-tab', registry: 'mig-reg', agent: 'pi', tool: 'x', arguments: '{}', argsFrom: 'config', x: 200, y: 80, wires: [[]] },
    ];
    nr = await createNodeRed({ flows: [], startMs: 15_000 });
    const credFile = join(nr.userDir, 'flows_cred.json');
    const flowsFile = join(nr.userDir, 'flows.json');
    // deploy with credentials through the admin API, as the editor does: Node-RED encrypts them
    await nr.deployFull(flows.map((n) => (n.id === 'mig-reg' ? { ...n, credentials: { username: 'nr-caller', password: PASSWORD } } : n)));
    await until(() => logins.some((l) => l.password === PASSWORD), 'the registry logs in to the broker', 20_000);
    const cred = readFileSync(credFile, 'utf8');
    expect(JSON.parse(cred)).toHaveProperty('$');
    expect(cred).not.toContain(PASSWORD);
    await nr.stop();

    // what an installation of the old pack has on disk: the same ids and credentials, old types
    const old = (JSON.parse(readFileSync(flowsFile, 'utf8')) as { type: string }[])
      .map((n) => ({ ...n, type: n.type.replace(/^toolmesh-/, '') }));
    writeFileSync(flowsFile, JSON.stringify(old, null, 4));
    // the flows wait for the missing types, so "Started flows" never comes: start() gives up after startMs and stops it
    expect(await nr.start().then(() => 'started', (e: Error) => e.message)).toMatch(/Node-RED on http/);
    expect(nr.lastOutput()).toContain('Waiting for missing types to be registered');
    expect(nr.lastOutput()).toMatch(/- (tool-registry|remote-tool)\b/);

    logins.length = 0;
    const out: string[] = [];
    expect(await runMigrate(['migrate-flows', flowsFile], (l) => out.push(l), (l) => out.push(l))).toBe(0);
    expect(out.join('\n')).toContain('2 node(s) changed');
    expect(readFileSync(credFile, 'utf8')).toBe(cred);
    await nr.start();
    await until(() => logins.some((l) => l.username === 'nr-caller' && l.password === PASSWORD), 'the migrated registry logs in with the stored password', 20_000);
    expect(logins.filter((l) => l.password !== PASSWORD)).toEqual([]);
    const res = await nr.api('/credentials/toolmesh-tool-registry/mig-reg');
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ username: 'nr-caller', has_password: true });
    const deployed = (await (await nr.api('/flows')).json()) as { flows: { id: string; type: string }[] };
    expect(deployed.flows.filter((n) => n.id.startsWith('mig-')).map((n) => [n.id, n.type]))
      .toEqual([['mig-tab', 'tab'], ['mig-reg', 'toolmesh-tool-registry'], ['mig-rt', 'toolmesh-remote-tool']]);
  }, 180_000);
});
