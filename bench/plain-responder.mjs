// Baseline responder for bench/run.mjs: plain MQTT.js with default socket options (Nagle on),
// answering each request on bench/req with a JSON-RPC result on bench/res.
import mqtt from 'mqtt';

const client = mqtt.connect(process.argv[2]);
client.on('connect', async () => {
  await client.subscribeAsync('bench/req', { qos: 1 });
  process.send?.('ready');
});
client.on('message', (_t, p) => {
  const m = JSON.parse(p.toString());
  client.publish('bench/res', JSON.stringify({ jsonrpc: '2.0', id: m.id, result: { content: [], structuredContent: {}, isError: false } }), { qos: 1 });
});
process.on('SIGTERM', () => client.end(false, () => process.exit(0)));
