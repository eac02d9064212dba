// The embedded broker over TLS, with certificates made by Debian's openssl (test/support/certs.ts).
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import mqtt from 'mqtt';
import { z } from 'zod';
import { startBroker, type EmbeddedBroker } from './broker';
import { RpcCaller, RpcServer, defineTool } from '.';
import { makeTestCerts, type TestCerts } from '../test/support/certs';
import { until } from '../test/support/until';

const certs = makeTestCerts();

describe.skipIf(!certs)('embedded broker over TLS (skipped outside CI when openssl is not installed)', () => {
  let broker: EmbeddedBroker;
  const c = certs as TestCerts;
  beforeAll(async () => {
    broker = await startBroker({
      port: 0, tls: { key: c.key, cert: c.cert },
      auth: { users: [{ username: 'pi', role: 'agent', password: 'pi-pw' }, { username: 'flows', role: 'caller', password: 'flows-pw' }] },
    });
  });
  afterAll(async () => {
    await broker?.close();
    c?.remove();
  });

  it('serves mqtts:// and carries a call for clients that trust the test CA', async () => {
    expect(broker.url).toBe(`mqtts://127.0.0.1:${broker.port}`);
    const echo = defineTool({ name: 'echo', description: 'echo', risk: 'low', input: z.object({ text: z.string() }), execute: (a) => ({ echo: a.text }) });
    const server = new RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url, username: 'pi', password: 'pi-pw', extra: { ca: c.ca } }, agentId: 'pi', tools: [echo] });
    // by name too: the certificate lists DNS:localhost besides IP:127.0.0.1
    const caller = new RpcCaller({ connection: { url: `mqtts://localhost:${broker.port}`, username: 'flows', password: 'flows-pw', extra: { ca: c.ca } }, callerId: 'flows' });
    try {
      await server.start();
      await caller.start();
      await until(() => caller.agent('pi')?.ready, 'the agent over TLS');
      expect((await caller.call('pi', 'echo', { text: 'sealed' })).structuredContent).toEqual({ echo: 'sealed' });
    } finally {
      await caller.stop();
      await server.stop();
    }
  });

  it('is refused by a client without the CA', async () => {
    const err = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, username: 'flows', password: 'flows-pw' })
      .then(async (client) => {
        await client.endAsync(true);
        return undefined;
      }, (e: Error & { code?: string }) => e);
    expect(err?.code).toBe('UNABLE_TO_VERIFY_LEAF_SIGNATURE');
  });

  it('gives clients in this process options that trust exactly its certificate', async () => {
    const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4, reconnectPeriod: 0, username: 'flows', password: 'flows-pw', ...broker.clientOptions });
    expect(client.connected).toBe(true);
    await client.endAsync(true);
    // with the CA given, a certificate the CA issued for the same names is still not this broker's
    const withCa = await startBroker({ port: 0, tls: { key: c.key, cert: c.cert, ca: c.ca } });
    const other = await startBroker({ port: 0, tls: c.issue('second') });
    try {
      const err = await mqtt.connectAsync(other.url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...withCa.clientOptions })
        .then(async (x) => {
          await x.endAsync(true);
          return undefined;
        }, (e: Error) => e);
      expect(err?.message).toMatch(/^the broker presented certificate .*, not the embedded broker's/);
    } finally {
      await other.close();
      await withCa.close();
    }
  });
});
