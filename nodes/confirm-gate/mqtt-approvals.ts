/**
 * Decisions over MQTT: a client of its own (with the registry's connection settings) that
 * subscribes to the gate's approval topic on every connect and hands each message on.
 * No Node-RED imports.
 */
import { connectMqtt, endMqtt, type ConnectOptions } from '@toolmesh/agent/protocol';

/** Connection state of the approval subscription. `refused`: the broker did not grant the subscription (ACL). */
export type SubscriptionState = 'connected' | 'disconnected' | 'refused';

/** Options of {@link subscribeApprovals}. */
export interface ApprovalSubscriptionOptions {
  connection: ConnectOptions;
  /** Topic or filter, subscribed with QoS 1. */
  topic: string;
  /** Largest payload read, bytes (default {@link MAX_DECISION_BYTES}); larger ones go to `onRefused` unread. */
  maxBytes?: number;
  /**
   * Each message of at most {@link MAX_DECISION_BYTES}: its payload as UTF-8 text and its topic.
   * It runs inside the MQTT client's packet handling, so it should not throw; an exception it
   * throws is dropped here (the subscription goes on) rather than breaking the client.
   */
  onMessage(payload: string, topic: string): void;
  /** A message over {@link MAX_DECISION_BYTES} was dropped unread: its size and the limit, bytes. */
  onRefused?(bytes: number, max: number, topic: string): void;
  /** Connection changes; `detail` is the broker's or the socket's error text. */
  onState(state: SubscriptionState, detail?: string): void;
}

/** Largest decision payload read, bytes; a decision is a few hundred bytes. */
export const MAX_DECISION_BYTES = 64 * 1024;

/** A running subscription; `stop()` ends the client (resolves once it is closed, 2 s at most). */
export interface ApprovalSubscription {
  /**
   * Publishes with QoS 1, not retained, on the same client; resolves on the broker's
   * acknowledgement, or with the error (never rejects), or after `timeoutMs` (default 5 s).
   */
  publish(topic: string, payload: string, timeoutMs?: number): Promise<Error | undefined>;
  stop(): Promise<void>;
}

/**
 * Connects (clean session, reconnects with backoff: see `connectMqtt`) and subscribes to
 * `topic` after every connect. Retained messages are ignored, so an old "approve" left on the
 * topic never decides a new call; so are messages over {@link MAX_DECISION_BYTES} (reported to
 * `onRefused`). A SUBACK of 0x80 reports `refused` (the broker's ACL does not
 * let this user subscribe; see the help text on broker authentication).
 */
export function subscribeApprovals(opts: ApprovalSubscriptionOptions): ApprovalSubscription {
  const client = connectMqtt({ ...opts.connection, clientId: undefined });
  client.on('connect', () => {
    // MQTT.js reports a SUBACK return code 0x80 as an error
    client.subscribe(opts.topic, { qos: 1 }, (err) => {
      if (err) return opts.onState('refused', `${opts.topic}: ${err.message}`);
      opts.onState('connected');
    });
  });
  client.on('close', () => opts.onState('disconnected'));
  client.on('error', (e: Error) => opts.onState('disconnected', e.message));
  client.on('message', (topic, payload, packet) => {
    if (packet.retain) return;
    // an exception here would break MQTT.js's packet stream: this client would stop reading
    try {
      const max = opts.maxBytes ?? MAX_DECISION_BYTES;
      if (payload.length > max) return opts.onRefused?.(payload.length, max, topic);
      opts.onMessage(payload.toString('utf8'), topic);
    } catch {
      // the caller's handler failed on one message; the next one is handled as usual
    }
  });
  let stopping: Promise<void> | undefined;
  return {
    publish: (topic, payload, timeoutMs = 5000) => new Promise((resolve) => {
      const t = setTimeout(() => resolve(new Error(`no acknowledgement within ${timeoutMs} ms`)), timeoutMs);
      client.publish(topic, payload, { qos: 1, retain: false }, (err) => {
        clearTimeout(t);
        resolve(err ?? undefined);
      });
    }),
    stop: () => (stopping ??= endMqtt(client)),
  };
}
