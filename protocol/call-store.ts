/**
 * Duplicate suppression for the agent side, keyed by (callerId from the topic, request id)
 * (docs/protocol.md, "Behaviour"). A duplicate that arrives while its call runs joins that
 * run (one answer at completion, however many copies came); one that arrives later gets the
 * stored response. Entries live at least `ttlMs` after they finish (longer than the longest tool
 * timeout) and the store is capped in bytes, running calls included: a running call counts its
 * request's size until it finishes, then its response's.
 */
import { createHash } from 'node:crypto';
import canonicalize from 'canonicalize';
import type { RequestId } from './schemas';

/** One remembered call. `response` is the serialized JSON-RPC response once finished. */
export interface StoredCall {
  readonly key: string;
  readonly callerId: string;
  readonly id: RequestId;
  /** SHA-256 (hex) of the canonical (RFC 8785) JSON of the request params. */
  readonly paramsHash: string;
  abort?: AbortController;
  /** Serialized response, set when the call finished. */
  response?: string;
  /** True when the caller cancelled it: its response is stored but not published (MCP "Cancellation"). */
  silent?: boolean;
  /** Ends the running call as its own budget would (`TIMEOUT`): what a cancel with reason "timeout" does. */
  timeOut?: () => void;
  finishedAt?: number;
  /** When the stored response was last published for a copy of the request, epoch ms (rate limit of re-sends). */
  resentAt?: number;
}

/**
 * What one stored entry costs beside its response text, bytes: the key, the params hash and the
 * entry object with its Map slot (V8 heap measured over 30,000 finished entries on Node 20:
 * about 555 bytes each with a 63-byte response), so many small results cannot outgrow the cap.
 */
export const ENTRY_OVERHEAD_BYTES = 480;

/** Key of a call: callerId and the JSON form of the id ("1" and 1 differ). */
export function callKey(callerId: string, id: RequestId): string {
  return `${callerId}\u0000${JSON.stringify(id)}`;
}

/**
 * SHA-256 hex of the RFC 8785 canonical JSON of `value` (`canonicalize` package).
 * `canonicalize` recurses: pass only values that passed `checkJsonLimits` (protocol/json-limits.ts)
 * or that this process built itself.
 */
export function canonicalHash(value: unknown): string {
  return createHash('sha256').update(canonicalize(value ?? null) ?? 'null').digest('hex');
}

/** Options of {@link CallStore}. */
export interface CallStoreOptions {
  /** Minimum time a finished entry is kept, ms (raise it later with {@link CallStore.keepAtLeast}). */
  ttlMs: number;
  /** Cap on the summed size of stored responses plus {@link ENTRY_OVERHEAD_BYTES} per entry, bytes (default 8 MiB). */
  maxBytes?: number;
  now?: () => number;
}

/** The (callerId, id) → call store. Oldest finished entries are evicted first. */
export class CallStore {
  private readonly calls = new Map<string, StoredCall>();
  /** UTF-8 bytes of each stored response, by key (what `bytes` sums). */
  private readonly sizes = new Map<string, number>();
  private bytes = 0;
  private ttl: number;
  private readonly maxBytes: number;
  private readonly now: () => number;

  constructor(opts: CallStoreOptions) {
    this.ttl = opts.ttlMs;
    this.maxBytes = opts.maxBytes ?? 8 * 1024 * 1024;
    this.now = opts.now ?? Date.now;
  }

  /** Minimum time a finished entry is kept, ms. */
  get ttlMs(): number {
    return this.ttl;
  }

  /** Raises the minimum keep time to at least `ms` (never lowers it: callers may still re-send). */
  keepAtLeast(ms: number): void {
    this.ttl = Math.max(this.ttl, ms);
  }

  get(key: string): StoredCall | undefined {
    return this.calls.get(key);
  }

  /**
   * True when a new running call whose request is `requestBytes` long fits under the cap once
   * finished entries are evicted (running calls are never evicted).
   */
  fits(requestBytes: number): boolean {
    this.evict(requestBytes + ENTRY_OVERHEAD_BYTES);
    return this.bytes + requestBytes + ENTRY_OVERHEAD_BYTES <= this.maxBytes;
  }

  /** Records a new running call; it counts `requestBytes` (its request's size) plus the entry overhead toward the cap until it finishes. */
  begin(callerId: string, id: RequestId, paramsHash: string, abort?: AbortController, requestBytes = 0): StoredCall {
    const call: StoredCall = { key: callKey(callerId, id), callerId, id, paramsHash, abort };
    this.calls.set(call.key, call);
    const size = requestBytes + ENTRY_OVERHEAD_BYTES;
    this.sizes.set(call.key, size);
    this.bytes += size;
    return call;
  }

  /** Stores the finished response and evicts expired or over-cap entries. */
  finish(call: StoredCall, response: string): void {
    call.response = response;
    call.finishedAt = this.now();
    call.abort = undefined;
    // re-insert so Map order is finish order, which eviction relies on
    this.calls.delete(call.key);
    this.calls.set(call.key, call);
    const size = Buffer.byteLength(response, 'utf8') + ENTRY_OVERHEAD_BYTES;
    this.bytes += size - (this.sizes.get(call.key) ?? 0);
    this.sizes.set(call.key, size);
    this.evict();
  }

  /** Calls still running for a caller. */
  running(callerId?: string): StoredCall[] {
    const out: StoredCall[] = [];
    for (const c of this.calls.values()) if (!c.response && (!callerId || c.callerId === callerId)) out.push(c);
    return out;
  }

  /** Number of entries (running and finished). */
  get size(): number {
    return this.calls.size;
  }

  /** Summed size of stored responses and running requests (UTF-8 bytes) plus the per-entry overhead. */
  get storedBytes(): number {
    return this.bytes;
  }

  /** Evicts expired finished entries, and the oldest finished ones while the store (plus `room` bytes) is over its cap. */
  private evict(room = 0): void {
    const expiredBefore = this.now() - this.ttl;
    for (const [key, c] of this.calls) {
      if (!c.response) continue;
      if (this.bytes + room <= this.maxBytes && (c.finishedAt ?? 0) > expiredBefore) break;
      this.calls.delete(key);
      this.bytes -= this.sizes.get(key) ?? 0;
      this.sizes.delete(key);
    }
  }
}
