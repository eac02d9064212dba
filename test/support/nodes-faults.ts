/**
 * Helpers for the node fault tests: watching the process for uncaught exceptions and unhandled
 * rejections, hostile MQTT payloads, and message properties that make Node-RED's message cloning
 * fail once.
 */
import mqtt from 'mqtt';

/** What {@link watchProcessFaults} saw. */
export interface ProcessFaults {
  /** Uncaught exceptions and unhandled rejections, in order, as `uncaught: <message>` / `unhandled: <message>`. */
  readonly seen: string[];
  /** Removes the listeners. */
  stop(): void;
}

/**
 * Collects uncaught exceptions and unhandled rejections of this process until `stop()`, so a test
 * can assert there were none (vitest reports them too, but only after the test has passed).
 */
export function watchProcessFaults(): ProcessFaults {
  const seen: string[] = [];
  const onUncaught = (e: unknown) => seen.push(`uncaught: ${(e as Error)?.message ?? String(e)}`);
  const onUnhandled = (e: unknown) => seen.push(`unhandled: ${(e as Error)?.message ?? String(e)}`);
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUnhandled);
  return {
    seen,
    stop() {
      process.off('uncaughtException', onUncaught);
      process.off('unhandledRejection', onUnhandled);
    },
  };
}

/** JSON text nested `depth` levels deep: `[[[...]]]` (40 KB for 20,000 levels). */
export function deepArrayJson(depth = 20_000): string {
  return '['.repeat(depth) + ']'.repeat(depth);
}

/** The parsed value of {@link deepArrayJson} (JSON.parse does not recurse, JSON.stringify does). */
export function deepValue(depth = 20_000): unknown {
  return JSON.parse(deepArrayJson(depth));
}

/**
 * Defines an enumerable property `key` on `msg` whose first read throws (`reads` counts them);
 * later reads give `'ok'`. The first `send` of such a message to two wires throws inside
 * Node-RED's message cloning, as a message carrying an uncloneable object does, while the
 * clone that Node-RED makes for Catch nodes afterwards succeeds.
 */
export function trapFirstRead(msg: Record<string, unknown>, key = 'trap'): { reads: number } {
  const state = { reads: 0 };
  Object.defineProperty(msg, key, {
    enumerable: true,
    configurable: true,
    get() {
      if (state.reads++ === 0) throw new Error(`the ${key} property cannot be read`);
      return 'ok';
    },
  });
  return state;
}

/**
 * Publishes each payload to `topic` on the broker at `url` (QoS 1) and disconnects.
 * @param payloads strings or buffers, sent in order.
 */
export async function publishAll(url: string, topic: string, payloads: Array<string | Buffer>, opts: { retain?: boolean } = {}): Promise<void> {
  const client = mqtt.connect(url, { reconnectPeriod: 0 });
  await new Promise<void>((resolve, reject) => client.once('connect', () => resolve()).once('error', reject));
  try {
    for (const p of payloads) await client.publishAsync(topic, p, { qos: 1, retain: opts.retain ?? false });
  } finally {
    await client.endAsync();
  }
}

/**
 * Hostile payloads for any JSON topic: invalid JSON, JSON nested 20,000 levels deep (bare and
 * inside `wrap`, a valid-looking envelope), a huge array, wrong types, binary junk.
 * @param wrap puts a JSON text where a value is expected in an otherwise valid message.
 */
export function hostilePayloads(wrap: (json: string) => string): Array<{ name: string; payload: string | Buffer }> {
  const deep = deepArrayJson();
  const deepObject = '{"a":'.repeat(20_000) + '1' + '}'.repeat(20_000);
  return [
    { name: 'invalid JSON', payload: '{"jsonrpc":"2.0",' },
    { name: 'binary junk', payload: Buffer.from([0xff, 0xfe, 0x00, 0x7b, 0x22]) },
    { name: 'deep array', payload: deep },
    { name: 'deep array in the envelope', payload: wrap(deep) },
    { name: 'deep object in the envelope', payload: wrap(deepObject) },
    { name: 'huge array in the envelope', payload: wrap(`[${'0,'.repeat(200_000)}0]`) },
    { name: 'wrong types: number', payload: '42' },
    { name: 'wrong types: null', payload: 'null' },
    { name: 'wrong types: string', payload: '"approve me"' },
    { name: 'wrong types in the envelope', payload: wrap('{"toString":1,"__proto__":{"polluted":true}}') },
  ];
}
