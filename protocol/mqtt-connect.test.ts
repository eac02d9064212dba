// connectMqtt's own TCP path (protocol/mqtt.ts, plainTcpTarget): which URLs it dials itself, and
// that such a client connects and reconnects after its broker comes back on the same port,
// against a real aedes broker on 127.0.0.1.
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker, type EmbeddedBroker } from './broker';
import { connectMqtt, endMqtt, plainTcpTarget } from './mqtt';

describe('plainTcpTarget', () => {
  it('takes plain mqtt:// URLs only, with the default port 1883 and IPv6 brackets dropped', () => {
    expect(plainTcpTarget('mqtt://127.0.0.1:1884')).toEqual({ host: '127.0.0.1', port: 1884 });
    expect(plainTcpTarget('mqtt://broker.local')).toEqual({ host: 'broker.local', port: 1883 });
    expect(plainTcpTarget('mqtt://[::1]:1885/')).toEqual({ host: '::1', port: 1885 });
    for (const url of ['mqtts://127.0.0.1:8883', 'ws://127.0.0.1:9001', 'wss://h/mqtt', 'mqtt://u:p@127.0.0.1:1883', 'mqtt://127.0.0.1:1883?clientId=x', 'mqtt://127.0.0.1/path', 'not a url']) {
      expect(plainTcpTarget(url), url).toBeUndefined();
    }
  });
});

describe('connectMqtt on a plain mqtt:// URL', () => {
  let broker: EmbeddedBroker | undefined;
  afterEach(async () => { await broker?.close(); broker = undefined; });

  it('connects to that port, and reconnects when the broker returns on the same port', async () => {
    broker = await startBroker({ port: 0 });
    const port = Number(new URL(broker.url).port);
    const client = connectMqtt({ url: `mqtt://127.0.0.1:${port}`, clientId: 'plain-tcp', backoffMinMs: 50, backoffMaxMs: 200 });
    try {
      await new Promise<void>((resolve) => client.once('connect', () => resolve()));
      expect((client.stream as unknown as { remotePort?: number }).remotePort).toBe(port);
      await broker.close();
      await new Promise<void>((resolve) => client.once('close', () => resolve()));
      broker = await startBroker({ port });
      await new Promise<void>((resolve) => client.once('connect', () => resolve()));
      await client.publishAsync('t/x', 'after', { qos: 1 });
    } finally {
      await endMqtt(client);
    }
  }, 20_000);
});
