/**
 * An HTTP server on 127.0.0.1 that records what a Node-RED flow posts to it (through a core
 * `http request` node), so a test in another process can watch answers, caught errors and node
 * statuses as the flow sees them. Every `POST /<channel>` with a JSON body is recorded and
 * answered `204`.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

/** One recorded post. */
export interface SinkRecord {
  /** The path without its leading slash, e.g. `answer`. */
  channel: string;
  /** The parsed JSON body (the raw text when it was not JSON). */
  body: any;
  /** When it arrived (this process's clock, ms). */
  at: number;
}

/** A running sink. */
export interface HttpSink {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  readonly url: string;
  /** Everything posted so far, in arrival order. */
  readonly records: SinkRecord[];
  /** The bodies posted to `channel`, in arrival order. */
  of(channel: string): any[];
  close(): Promise<void>;
}

/** Starts a sink on 127.0.0.1 (port 0). */
export async function startHttpSink(): Promise<HttpSink> {
  const records: SinkRecord[] = [];
  const server = http.createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (b: Buffer) => parts.push(b));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      let body: any = text;
      try { body = JSON.parse(text); } catch { /* kept as text */ }
      records.push({ channel: (req.url ?? '/').slice(1).split('?')[0], body, at: Date.now() });
      res.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    records,
    of: (channel) => records.filter((r) => r.channel === channel).map((r) => r.body),
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
