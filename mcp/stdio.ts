/**
 * The bridge over stdio (MCP 2025-11-25, "Transports", stdio: newline-delimited JSON-RPC on
 * stdin/stdout), as VS Code and Claude Desktop start servers. The SDK's stdio transport buffers
 * a line without bound, so stdin passes through {@link LineLimit} first: a line over the cap is
 * dropped as it streams and answered with JSON-RPC -32600 (`id: null`), never held in memory.
 */
import { Transform, type Readable, type Writable, type TransformCallback } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '../protocol';
import type { McpBridge } from './bridge';

const NEWLINE = Buffer.from('\n');

function isJson(line: Buffer): boolean {
  try {
    JSON.parse(line.toString('utf8'));
    return true;
  } catch {
    return false;
  }
}

/**
 * Passes newline-delimited lines of at most `maxBytes` (bytes, newline excluded) through; the
 * rest of a longer line is discarded up to its newline and `onDropped(bytes)` is called once
 * per dropped line with its size.
 */
export class LineLimit extends Transform {
  private held: Buffer[] = [];
  private heldBytes = 0;
  private dropping = false;
  private dropped = 0;

  /**
   * @param onMalformed when given, a line that is not JSON is dropped and reported here (the SDK
   *   would drop it silently, and JSON-RPC asks for a -32700 answer).
   */
  constructor(private readonly maxBytes: number, private readonly onDropped: (bytes: number) => void, private readonly onMalformed?: (bytes: number) => void) {
    super();
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    let start = 0;
    while (start < chunk.length) {
      const nl = chunk.indexOf(0x0a, start);
      const end = nl === -1 ? chunk.length : nl;
      const piece = chunk.subarray(start, end);
      if (this.dropping) {
        this.dropped += piece.length;
      } else if (this.heldBytes + piece.length > this.maxBytes) {
        this.dropping = true;
        this.dropped = this.heldBytes + piece.length;
        this.held = [];
        this.heldBytes = 0;
      } else {
        this.held.push(piece);
        this.heldBytes += piece.length;
      }
      if (nl === -1) break;
      if (this.dropping) {
        this.dropping = false;
        this.onDropped(this.dropped);
        this.dropped = 0;
      } else {
        const line = this.held.length === 1 ? this.held[0] : Buffer.concat(this.held);
        this.held = [];
        this.heldBytes = 0;
        if (this.onMalformed && line.length && !isJson(line)) this.onMalformed(line.length);
        else this.push(Buffer.concat([line, NEWLINE]));
      }
      start = nl + 1;
    }
    cb();
  }
}

/** Options of {@link serveStdio}. */
export interface StdioOptions {
  stdin?: Readable;
  stdout?: Writable;
  /** Largest message read, bytes (default 4 MiB, as the mesh caps requests). */
  maxMessageBytes?: number;
  /** Called once when stdin ends or the session closes (the client went away). */
  onClose?: () => void;
}

/** Serves one MCP session of `bridge` on stdin/stdout; resolves once connected. */
export async function serveStdio(bridge: McpBridge, opts: StdioOptions = {}): Promise<{ close(): Promise<void> }> {
  const stdin = opts.stdin ?? process.stdin;
  const stdout = opts.stdout ?? process.stdout;
  const max = opts.maxMessageBytes ?? DEFAULT_MAX_PAYLOAD_BYTES;
  const answer = (code: number, message: string) => stdout.write(`${JSON.stringify({ jsonrpc: '2.0', id: null, error: { code, message } })}\n`);
  const limited = new LineLimit(max,
    (bytes) => answer(-32600, `message of ${bytes} bytes refused: over the ${max}-byte limit`),
    (bytes) => answer(-32700, `parse error: a line of ${bytes} bytes is not JSON`));
  stdin.pipe(limited);
  const transport = new StdioServerTransport(limited, stdout);
  const server = bridge.createServer();
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await server.close().catch(() => {});
    opts.onClose?.();
  };
  // the SDK's stdio transport does not notice the end of its input: the client has gone away
  stdin.once('end', () => void close());
  stdin.once('close', () => void close());
  server.onclose = ((prev) => () => { prev?.(); void close(); })(server.onclose);
  await server.connect(transport);
  return { close };
}
