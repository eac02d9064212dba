// toolmesh-agent join (agent/join.ts) against small in-process join servers built from
// protocol/join.ts: certificate pinning with `f` over https (a self-signed Node-RED), the
// external-broker answer (password kept for the operator), TLS CA written beside the config, and
// an answer for another agent refused. The Node-RED side is covered by test/join-e2e.test.ts.
import { X509Certificate } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { JoinCodeBook, parseJoinRequest, signJoinAnswer, type JoinAnswer } from '../protocol/join';
import { makeTestCerts } from '../test/support/certs';
import { runJoin } from './join';
import { loadConfig } from './config';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-agent-join-'));
const servers: http.Server[] = [];
/** Requests the join servers received. */
let hits = 0;
afterAll(() => {
  for (const s of servers) s.close();
  rmSync(dir, { recursive: true, force: true });
});

type Extra = Partial<Omit<JoinAnswer, 'proof'>>;

/** A join endpoint on `server` answering with `extra` merged into the answer. */
async function serve(server: http.Server, book: JoinCodeBook, extra: Extra = {}): Promise<number> {
  server.on('request', (req, res) => {
    hits++;
    const chunks: Buffer[] = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', async () => {
      const parsed = parseJoinRequest(JSON.parse(Buffer.concat(chunks).toString('utf8')));
      if (!parsed.ok) { res.writeHead(400).end(JSON.stringify({ error: parsed.error })); return; }
      const r = parsed.value;
      const v = await book.redeem(r, async (c) => signJoinAnswer(c.key, r.nonce, {
        agentId: r.agentId, username: r.agentId, brokerUrl: c.brokerUrl, root: 'toolmesh/v1', keys: {}, account: 'added', ...extra,
      }));
      if (!v.ok) { res.writeHead(v.status).end(JSON.stringify({ error: v.error })); return; }
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(v.value));
    });
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return (server.address() as { port: number }).port;
}

describe('toolmesh-agent join', () => {
  const certs = makeTestCerts();

  it('pins Node-RED\'s certificate from the join string over https: the right one joins, another is not even sent to', async () => {
    if (!certs) throw new Error('openssl is needed for this test');
    const book = new JoinCodeBook();
    const port = await serve(https.createServer({ cert: certs.cert, key: certs.key }), book);
    const fingerprint = new X509Certificate(certs.cert).fingerprint256;
    const other = new X509Certificate(certs.issue('other').cert).fingerprint256;
    const wrong = book.issue({ owner: 'r', nodeRedUrl: `https://127.0.0.1:${port}`, brokerUrl: 'mqtts://127.0.0.1:8883', agentId: 'tls1', fingerprint: other });
    await expect(runJoin({ joinString: wrong.joinString, config: join(dir, 'tls1.yaml') })).rejects.toMatchObject({ code: 'pinning' });
    expect(existsSync(join(dir, 'tls1.yaml'))).toBe(false);
    expect(hits).toBe(0); // nothing reached the server
    expect(book.has(wrong.codeId)).toBe(true);
    const right = book.issue({ owner: 'r', nodeRedUrl: `https://127.0.0.1:${port}`, brokerUrl: 'mqtts://127.0.0.1:8883', agentId: 'tls1', fingerprint });
    const r = await runJoin({ joinString: right.joinString, config: join(dir, 'tls1.yaml') });
    expect(r.agentId).toBe('tls1');
    // without a pin, the self-signed certificate is refused as usual
    const unpinned = book.issue({ owner: 'r', nodeRedUrl: `https://127.0.0.1:${port}`, brokerUrl: 'mqtts://127.0.0.1:8883', agentId: 'tls2' });
    await expect(runJoin({ joinString: unpinned.joinString, config: join(dir, 'tls2.yaml') })).rejects.toMatchObject({ code: 'unreachable' });
  });

  it('writes the broker CA beside the config and keeps the password for an external broker', async () => {
    if (!certs) throw new Error('openssl is needed for this test');
    const book = new JoinCodeBook();
    const port = await serve(http.createServer(), book, { account: 'external', ca: certs.ca });
    const issued = book.issue({ owner: 'r', nodeRedUrl: `http://127.0.0.1:${port}`, brokerUrl: 'mqtts://127.0.0.1:8883', agentId: 'ext1' });
    const r = await runJoin({ joinString: issued.joinString, config: join(dir, 'ext1.yaml'), packs: ['docker', 'system'] });
    expect(r.answer.account).toBe('external');
    expect(readFileSync(join(dir, 'ext1.pass'), 'utf8').trim()).toBe(r.password);
    expect(readFileSync(join(dir, 'ext1.ca.pem'), 'utf8')).toBe(certs.ca);
    expect(statSync(join(dir, 'ext1.ca.pem')).mode & 0o777).toBe(0o600);
    const cfg = loadConfig(join(dir, 'ext1.yaml'));
    expect(cfg.broker).toMatchObject({ url: 'mqtts://127.0.0.1:8883', username: 'ext1', tls: { ca: join(dir, 'ext1.ca.pem') } });
    // docker starts with no image allowed; system read-only commands
    expect(cfg.packs.docker).toMatchObject({ images: [], defaultNetworkMode: 'none' });
    expect(cfg.packs.system).toMatchObject({ commands: ['disk_usage', 'memory', 'uptime'], units: [] });
    expect(parseYaml(readFileSync(join(dir, 'ext1.yaml'), 'utf8')).approvals).toEqual({ keys: {} });
  });

  it('refuses an answer for another agent id, a wrong pack and an existing file', async () => {
    const book = new JoinCodeBook();
    const port = await serve(http.createServer(), book, { agentId: 'someone-else' });
    const issued = book.issue({ owner: 'r', nodeRedUrl: `http://127.0.0.1:${port}`, brokerUrl: 'mqtt://127.0.0.1:1883', agentId: 'me' });
    await expect(runJoin({ joinString: issued.joinString, config: join(dir, 'me.yaml') })).rejects.toThrow(/proof does not match|agentId is someone-else/);
    await expect(runJoin({ joinString: issued.joinString, config: join(dir, 'me.yaml'), packs: ['teleport'] })).rejects.toThrow(/--packs: unknown pack teleport/);
    await expect(runJoin({ joinString: issued.joinString, config: join(dir, 'ext1.yaml') })).rejects.toThrow(/exists; choose another --config/);
    expect(existsSync(join(dir, 'me.yaml'))).toBe(false);
  });
});
