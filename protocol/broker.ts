/**
 * The embedded broker: aedes (MQTT 3.1.1) on a TCP port, with TCP_NODELAY on every accepted
 * socket (aedes leaves Nagle on; shared/FACTS.md measured 88 ms vs 0.1 ms round trips).
 * Listens on 127.0.0.1 by default: an open broker in front of Docker tools lets anyone on the
 * network run containers.
 */
import net from 'node:net';
import { Aedes } from 'aedes';

/** Options of {@link startBroker}. */
export interface BrokerOptions {
  /** TCP port (default 1883; 0 picks a free one). */
  port?: number;
  /** Bind address (default `127.0.0.1`). */
  host?: string;
}

/** A running embedded broker. */
export interface EmbeddedBroker {
  readonly aedes: Aedes;
  readonly port: number;
  readonly host: string;
  /** `mqtt://host:port` */
  readonly url: string;
  /** Closes client connections and the listener. */
  close(): Promise<void>;
}

/**
 * Starts aedes on `host:port`.
 * @throws Error when the port is in use (`EADDRINUSE`) or the address cannot be bound.
 */
export async function startBroker(opts: BrokerOptions = {}): Promise<EmbeddedBroker> {
  const host = opts.host ?? '127.0.0.1';
  const aedes = await Aedes.createBroker();
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    socket.setNoDelay(true);
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    aedes.handle(socket);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.port ?? 1883, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const port = (server.address() as net.AddressInfo).port;
  return {
    aedes, port, host, url: `mqtt://${host === '0.0.0.0' || host === '::' ? '127.0.0.1' : host}:${port}`,
    close: () => new Promise<void>((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => aedes.close(() => resolve()));
    }),
  };
}
