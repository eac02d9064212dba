// The confirm-gate's signing key on the runtime side: POST /toolmesh/confirm-gate/keys makes the
// key file under Node-RED's user directory (mode 0600) and answers the public half only; a gate
// without a credential signs with that file after a deploy; a gate with a credential (flows made
// before key files) keeps using it. Real runtime (node-red-node-test-helper) and a real broker.
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys, publicKeyOf } from '../../protocol';
import { startBroker, type EmbeddedBroker } from '../../protocol/broker';
import registryNode from '../tool-registry/tool-registry';
import confirmGateNode from './confirm-gate';
import catalog from './locales/en-US/confirm-gate.json';
import { helper } from '../../test/support/node-red';
import { withCatalog } from '../../test/support/i18n';
import { keyFingerprint } from './keys';

const gateWithCatalog = withCatalog(confirmGateNode, catalog);
let broker: EmbeddedBroker;
const userDir = mkdtempSync(join(tmpdir(), 'toolmesh-gate-keys-'));

function flow(kid: string) {
  return [
    { id: 'f1', type: 'tab' },
    { id: 'reg', type: 'toolmesh-tool-registry', mode: 'external', broker: broker.url, callerId: 'keys-test', policy: '*/*' },
    { id: 'gate', type: 'toolmesh-confirm-gate', z: 'f1', name: 'gate', registry: 'reg', kid, x: 100, y: 100, wires: [['out'], ['out'], ['out']] },
    { id: 'out', type: 'helper', z: 'f1', x: 300, y: 100 },
  ];
}

beforeAll(async () => {
  helper.settings({ userDir });
  await new Promise<void>((resolve) => helper.startServer(resolve));
  broker = await startBroker({ port: 0 });
});
afterEach(async () => {
  await helper.unload();
});
afterAll(async () => {
  await broker.close();
  await new Promise<void>((resolve) => helper.stopServer(resolve));
  helper.settings({});
  rmSync(userDir, { recursive: true, force: true });
});

describe('confirm-gate: key file on the runtime side', () => {
  it('makes the key file (0600) and answers only the public key and its fingerprint', async () => {
    await helper.load([registryNode, gateWithCatalog], flow('gate-file'));
    const res = await helper.request().post('/toolmesh/confirm-gate/keys').send({ kid: 'gate-file' }).expect(200);
    expect(res.headers['cache-control']).toBe('no-store');
    expect(res.body.privateKeyPem).toBeUndefined();
    expect(JSON.stringify(res.body)).not.toContain('PRIVATE KEY');
    const file = join(userDir, 'toolmesh-keys', 'gate-file.pem');
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(statSync(join(userDir, 'toolmesh-keys')).mode & 0o777).toBe(0o700);
    expect(publicKeyOf(readFileSync(file, 'utf8'))).toBe(res.body.publicKeyPem);
    expect(res.body).toMatchObject({ kid: 'gate-file', created: true, fingerprint: keyFingerprint(res.body.publicKeyPem) });
    expect(res.body.fingerprint).toMatch(/^SHA256:[A-Za-z0-9+/]{43}$/);
    expect(res.body.agentConfig).toContain('    gate-file: |\n      -----BEGIN PUBLIC KEY-----');
    // a second press keeps the key agents already trust; replace makes a new one
    const again = await helper.request().post('/toolmesh/confirm-gate/keys').send({ kid: 'gate-file' }).expect(200);
    expect(again.body).toMatchObject({ created: false, publicKeyPem: res.body.publicKeyPem });
    const replaced = await helper.request().post('/toolmesh/confirm-gate/keys').send({ kid: 'gate-file', replace: true }).expect(200);
    expect(replaced.body.created).toBe(true);
    expect(replaced.body.publicKeyPem).not.toBe(res.body.publicKeyPem);
  });

  it('refuses a key id that could leave the key folder', async () => {
    await helper.load([registryNode, gateWithCatalog], flow('gate-x'));
    for (const kid of ['../evil', '.hidden', '', 'a/b']) {
      const res = await helper.request().post('/toolmesh/confirm-gate/keys').send({ kid }).expect(400);
      expect(res.body.error).toMatch(/key id/);
    }
  });

  it('a gate without a credential signs with its key file once deployed', async () => {
    await helper.load([registryNode, gateWithCatalog], flow('gate-deploy'));
    expect((await helper.request().get('/toolmesh/confirm-gate/gate/public-key').expect(200)).body).toEqual({ kid: 'gate-deploy', publicKeyPem: null, fingerprint: null, agentConfig: null });
    const made = await helper.request().post('/toolmesh/confirm-gate/keys').send({ kid: 'gate-deploy' }).expect(200);
    await helper.unload();
    await helper.load([registryNode, gateWithCatalog], flow('gate-deploy'));
    const pub = await helper.request().get('/toolmesh/confirm-gate/gate/public-key').expect(200);
    expect(pub.body).toMatchObject({ kid: 'gate-deploy', publicKeyPem: made.body.publicKeyPem, fingerprint: made.body.fingerprint });
  });

  it('a credential from an older flow still wins over a key file', async () => {
    const old = generateApprovalKeys();
    await helper.load([registryNode, gateWithCatalog], flow('gate-file'), { gate: { signingKey: old.privateKeyPem } });
    const pub = await helper.request().get('/toolmesh/confirm-gate/gate/public-key').expect(200);
    expect(pub.body.publicKeyPem).toBe(old.publicKeyPem);
  });
});
