// connectMqtt writes the PUBACKs of one chunk read in one go (batchWrites), against Debian's
// mosquitto: every retained QoS 1 message still arrives (mosquitto sends at most 20 unacknowledged
// ones, so a lost ack would stall it), with far fewer socket writes than messages.
import mqtt from 'mqtt';
import { afterEach, expect, it } from 'vitest';
import { connectMqtt, endMqtt } from './mqtt';
import { startMosquitto, type Mosquitto } from '../test/support/mosquitto';

let broker: Mosquitto | null = null;
afterEach(async () => {
  await broker?.stop();
  broker = null;
});

it('acknowledges a burst of retained QoS 1 messages in a few writes, and receives them all', async (ctx) => {
  broker = await startMosquitto();
  if (!broker) return ctx.skip(); // no mosquitto outside CI
  const N = 400;
  const pub = mqtt.connect(broker.url);
  await new Promise<void>((resolve) => pub.on('connect', () => resolve()));
  const body = 'x'.repeat(2000);
  await Promise.all(Array.from({ length: N }, (_, i) => new Promise<void>((resolve, reject) =>
    pub.publish(`batch/${i}`, `${i}:${body}`, { qos: 1, retain: true }, (e) => (e ? reject(e) : resolve())))));
  await new Promise<void>((resolve) => pub.end(false, {}, () => resolve()));

  const client = connectMqtt({ url: broker.url, clientId: 'batch-test' });
  await new Promise<void>((resolve) => client.on('connect', () => resolve()));
  // count what reaches the socket from now on (MQTT.js corks each packet; a flush is one call)
  const socket = client.stream as unknown as { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void };
  let writes = 0;
  const write = socket._write.bind(socket);
  socket._write = (...a: unknown[]) => { writes++; write(...a); };
  const writev = socket._writev?.bind(socket);
  if (writev) socket._writev = (...a: unknown[]) => { writes++; writev(...a); };
  const seen = new Set<string>();
  client.on('message', (topic) => seen.add(topic));
  client.subscribe('batch/#', { qos: 1 });
  const t0 = Date.now();
  while (seen.size < N && Date.now() - t0 < 10_000) await new Promise((r) => setTimeout(r, 20));
  expect(seen.size).toBe(N);
  // one SUBSCRIBE, then PUBACKs: 400 without batching; a 64 KB read holds ~30 of these messages
  expect(writes).toBeGreaterThan(0);
  expect(writes).toBeLessThan(N / 4);
  await endMqtt(client);
});
