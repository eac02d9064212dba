/**
 * The bridge over stdio (MCP 2025-11-25, "Transports", stdio: newline-delimited JSON-RPC on
 * stdin/stdout), as VS Code and Claude Desktop start servers. The SDK's stdio transport buffers
 * a line up to 10 MB and closes the session past that, so stdin passes through {@link LineLimit}
 * first: a line over the cap is dropped as it streams and answered with JSON-RPC -32600
 * (`id: null`), never held in memory. A line the SDK cannot read is answered -32700 or -32600.
 */
import { Transform, type Readable, type Writable, type TransformCallback } from 'node:stream';
import { StdioServerTransport } from '@modelcontextprotocol/sdk/server/stdio.js';
import { DEFAULT_MAX_PAYLOAD_BYTES } from '@toolmesh/agent/protocol';
import type { McpBridge } from './bridge';

const NEWLINE = Buffer.from('\n');

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

  constructor(private readonly maxBytes: number, private readonly onDropped: (bytes: number) => void) {
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
        this.push(Buffer.concat([...this.held, NEWLINE]));
        this.held = [];
        this.heldBytes = 0;
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
  const limited = new LineLimit(max, (bytes) => answer(-32600, `message of ${bytes} bytes refused: over the ${max}-byte limit`));
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
  // the SDK's stdio transport drops a line it cannot read and reports it here; JSON-RPC 2.0
  // (section 5.1) asks for an answer: -32700 for text that is not JSON, -32600 for JSON that is
  // no JSON-RPC message
  server.onerror = (e) => {
    if (e instanceof SyntaxError) answer(-32700, `parse error: ${e.message}`);
    else if (e?.name === 'ZodError') answer(-32600, 'invalid request: not a JSON-RPC 2.0 message');
  };
  await server.connect(transport);
  return { close };
}
