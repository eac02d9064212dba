/** Request bodies of the bridge's HTTP front (mcp/http.ts) and its consent page (mcp/oauth/consent.ts). */
import type { IncomingMessage } from 'node:http';

/**
 * The body of `req` as UTF-8 text, or undefined when it is over `max` bytes (declared in
 * Content-Length, or once more than that has arrived). The rest of an oversized body is read and
 * dropped, so the client can finish sending and read the 413 (Node's `requestTimeout` bounds a
 * body that never ends). Rejects on a stream error.
 */
export function readBody(req: IncomingMessage, max: number): Promise<string | undefined> {
  if (Number(req.headers['content-length']) > max) {
    req.resume();
    return Promise.resolve(undefined);
  }
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size <= max) return void chunks.push(chunk);
      chunks.length = 0;
      resolve(undefined); // once: later calls of a settled promise's resolve do nothing
    });
    req.on('end', () => resolve(size > max ? undefined : Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}
