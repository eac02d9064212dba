/**
 * An in-process TCP proxy for partition tests: listens on 127.0.0.1, forwards each accepted
 * connection to a target, and can **blackhole** all traffic in both directions without closing
 * any socket, then **heal**. While blackholed it reads nothing from either side (the bytes wait in
 * the kernel's buffers, as they would behind a dead link while TCP retransmits), forwards no
 * close, and holds new connections without connecting them upstream. On heal everything queued
 * flows again, closes that happened meanwhile are passed on, and held connections are connected.
 * So a peer sees exactly what a silent network shows: no data, no FIN, no RST, until keepalive
 * timers fire (docs/protocol.md, "Behaviour": brokers notice silent clients by keepalive).
 *
 * Used by test/partition.test.ts (through test/support/tcp-proxy.ts) and by the fault suite
 * (scripts/faults). Every socket gets TCP_NODELAY, like every socket the project opens.
 */
import net from 'node:net';

/** Options of {@link startTcpProxy}. */
export interface TcpProxyOptions {
  /** Where to forward to. */
  targetHost?: string;
  targetPort: number;
  /** Port to listen on (default 0: a free port). */
  listenPort?: number;
}

/** A running proxy. */
export interface TcpProxy {
  /** The port it listens on, 127.0.0.1. */
  readonly port: number;
  /** True while blackholed. */
  readonly blackholed: boolean;
  /** Connections open now (each a client socket, with its upstream once connected). */
  readonly connections: number;
  /** Connections accepted since start. */
  readonly accepted: number;
  /** Bytes forwarded client → target and target → client since start. */
  readonly bytes: { up: number; down: number };
  /**
   * When bytes last went client → target and target → client, epoch ms (0: never). The broker's
   * keepalive clock starts at the last packet it got, so `lastForwardedAt.up` just before a
   * blackhole is where "1.5 × keepalive" counts from.
   */
  readonly lastForwardedAt: { up: number; down: number };
  /** Stops forwarding in both directions; sockets stay open. Idempotent. */
  blackhole(): void;
  /** Forwards again: queued bytes flow, pending closes are passed on, held connections connect. Idempotent. */
  heal(): void;
  /** Destroys every connection at once (both sides see the connection reset). */
  cut(): void;
  /** Stops listening and destroys every connection. */
  close(): Promise<void>;
}

interface Link {
  client: net.Socket;
  upstream?: net.Socket;
  /** Set once either side ended or failed; the other side is ended when not blackholed. */
  closed: boolean;
}

/**
 * Starts a proxy on 127.0.0.1 that forwards to `targetHost:targetPort` (default host 127.0.0.1).
 * @returns once it listens.
 */
export function startTcpProxy(opts: TcpProxyOptions): Promise<TcpProxy> {
  const host = opts.targetHost ?? '127.0.0.1';
  const links = new Set<Link>();
  let holed = false;
  let accepted = 0;
  const bytes = { up: 0, down: 0 };
  const lastAt = { up: 0, down: 0 };

  /** Copies `from` into `to`, with backpressure, never while blackholed. */
  const forward = (link: Link, from: net.Socket, to: net.Socket, dir: 'up' | 'down') => {
    from.on('data', (chunk: Buffer) => {
      bytes[dir] += chunk.length;
      lastAt[dir] = Date.now();
      if (!to.write(chunk)) from.pause();
    });
    to.on('drain', () => {
      if (!holed) from.resume();
    });
    from.on('end', () => finish(link));
  };

  /** Ends both sides of a link, unless blackholed (then on heal). */
  const finish = (link: Link) => {
    link.closed = true;
    if (holed) return;
    for (const s of [link.client, link.upstream]) {
      if (s && !s.destroyed) s.end(() => s.destroy()); // FIN after the queued bytes, then gone
    }
    links.delete(link);
  };

  const connectUpstream = (link: Link) => {
    const up = net.connect({ host, port: opts.targetPort });
    up.setNoDelay(true);
    link.upstream = up;
    up.on('error', () => finish(link));
    up.on('close', () => finish(link));
    forward(link, link.client, up, 'up');
    forward(link, up, link.client, 'down');
  };

  const server = net.createServer({ pauseOnConnect: true }, (client) => {
    accepted++;
    client.setNoDelay(true);
    const link: Link = { client, closed: false };
    links.add(link);
    client.on('error', () => finish(link));
    client.on('close', () => finish(link));
    if (holed) return; // held: connected upstream on heal
    connectUpstream(link);
    client.resume();
  });

  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.listenPort ?? 0, '127.0.0.1', () => {
      const port = (server.address() as net.AddressInfo).port;
      resolve({
        port,
        get blackholed() { return holed; },
        get connections() { return links.size; },
        get accepted() { return accepted; },
        get bytes() { return { ...bytes }; },
        get lastForwardedAt() { return { ...lastAt }; },
        blackhole() {
          holed = true;
          for (const l of links) {
            l.client.pause();
            l.upstream?.pause();
          }
        },
        heal() {
          if (!holed) return;
          holed = false;
          for (const l of [...links]) {
            if (l.closed) { finish(l); continue; }
            if (!l.upstream) connectUpstream(l);
            l.client.resume();
            l.upstream!.resume();
          }
        },
        cut() {
          for (const l of links) {
            l.client.destroy();
            l.upstream?.destroy();
          }
          links.clear();
        },
        close() {
          return new Promise<void>((done) => {
            for (const l of links) {
              l.client.destroy();
              l.upstream?.destroy();
            }
            links.clear();
            server.close(() => done());
          });
        },
      });
    });
  });
}
