/**
 * The bridge's OAuth state file: registered clients, the SHA-256 of every live token, and the
 * pairing codes (protocol/one-time-code.ts). One JSON document, mode 0600, replaced atomically
 * (temp file, fsync, rename, fsync of the folder), and changed only under a lock file
 * (`<file>.lock`, made with O_EXCL), so `toolmesh mcp pair` and `toolmesh mcp clients --revoke`
 * can change it while the bridge runs; the bridge notices within {@link WATCH_INTERVAL_MS}.
 *
 * Tokens are never stored: only `sha256(token)` (hex) keys the records. A registered client's
 * `client_secret` (confidential clients; the SDK's token handler compares it as given) is the one
 * secret the file holds, which is why it is 0600.
 *
 * No recursion over the file's contents beyond `JSON.parse`; a file that does not parse or has
 * the wrong shape is an error naming the file, never silently replaced.
 */
import { createHash, randomBytes } from 'node:crypto';
import {
  closeSync, existsSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, unwatchFile, watchFile, writeSync,
} from 'node:fs';
import { dirname } from 'node:path';
import { z } from 'zod';
import { emptyCodeBook, type CodeBook } from '@toolmesh/agent/protocol/one-time-code';

/** How often the bridge looks at the state file for changes made by another process, ms. */
export const WATCH_INTERVAL_MS = 250;
/** A lock file older than this is taken to be left by a killed process and removed, ms. */
const STALE_LOCK_MS = 10_000;
/** How long {@link OAuthStateFile.update} waits for the lock before it gives up, ms. */
const LOCK_WAIT_MS = 5_000;

const ClientRecordSchema = z.object({
  /** The registration as the SDK made it (RFC 7591 client information). */
  info: z.record(z.string(), z.unknown()),
  /** When it registered, epoch ms. */
  registeredAt: z.number(),
  /** The owner's label, set at the first consent. */
  label: z.string().optional(),
  /** When the owner first consented, epoch ms; a registration without it expires. */
  consentedAt: z.number().optional(),
  /** When a token of it was last accepted, epoch ms (written at most once a minute). */
  lastUsedAt: z.number().optional(),
  /** When it was revoked, epoch ms: its tokens stop working and it cannot sign in again. */
  revokedAt: z.number().optional(),
});
/** One registered client. */
export type ClientRecord = z.infer<typeof ClientRecordSchema>;

const TokenRecordSchema = z.object({
  kind: z.enum(['access', 'refresh']),
  clientId: z.string(),
  /** Tokens from one authorization code share a family; reuse of a spent refresh token revokes it whole. */
  family: z.string(),
  /** Epoch ms. */
  expiresAt: z.number(),
  /** The resource (RFC 8707) the token is valid for. */
  resource: z.string(),
  /** Refresh tokens: when it was exchanged for a new pair (it is then spent), epoch ms. */
  spentAt: z.number().optional(),
});
/** One token, keyed by its SHA-256 in {@link OAuthState.tokens}. */
export type TokenRecord = z.infer<typeof TokenRecordSchema>;

const StateSchema = z.object({
  version: z.literal(1),
  clients: z.record(z.string(), ClientRecordSchema),
  tokens: z.record(z.string(), TokenRecordSchema),
  pairing: z.object({ codes: z.array(z.object({ sha256: z.string(), expiresAt: z.number() })), failures: z.number() }),
});
/** The whole state file. */
export interface OAuthState {
  version: 1;
  clients: Record<string, ClientRecord>;
  tokens: Record<string, TokenRecord>;
  pairing: CodeBook;
}

/** SHA-256 of a token, hex: the key of its record. */
export function tokenKey(token: string): string {
  return createHash('sha256').update(token).digest('hex');
}

function emptyState(): OAuthState {
  return { version: 1, clients: {}, tokens: {}, pairing: emptyCodeBook() };
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}

/**
 * The state file of one bridge. Reads are served from memory and re-read when the file changed
 * (its mtime, size or inode); {@link update} reads, changes and writes under the lock.
 */
export class OAuthStateFile {
  private cached?: OAuthState;
  private seen = '';
  private watching = false;

  /** @param file path of the state file; its folder is made (mode 0700) when missing. */
  constructor(readonly file: string) {}

  private signature(): string {
    try {
      const s = statSync(this.file);
      return `${s.ino}:${s.size}:${s.mtimeMs}`;
    } catch {
      return 'missing';
    }
  }

  private readNow(): OAuthState {
    if (!existsSync(this.file)) return emptyState();
    let raw: unknown;
    try {
      raw = JSON.parse(readFileSync(this.file, 'utf8'));
    } catch (e) {
      throw new Error(`OAuth state file ${this.file} is not JSON (${(e as Error).message}); move it away to start over (every client then signs in again)`);
    }
    const parsed = StateSchema.safeParse(raw);
    if (!parsed.success) {
      const i = parsed.error.issues[0];
      throw new Error(`OAuth state file ${this.file}: ${i.path.join('.') || '(root)'}: ${i.message}; move it away to start over`);
    }
    return parsed.data as OAuthState;
  }

  /**
   * The state as the file holds it now (from memory unless the file changed).
   * @throws Error naming the file when it does not parse.
   */
  read(): OAuthState {
    const sig = this.signature();
    if (!this.cached || sig !== this.seen) {
      this.cached = this.readNow();
      this.seen = sig;
    }
    return this.cached;
  }

  /**
   * Runs `change` on the current state under the lock and writes the result atomically; returns
   * what `change` returned. `change` must not throw after it changed the state half-way: throw
   * first, then change (a throw writes nothing).
   * @throws Error when the lock cannot be had within 5 s, or the file cannot be written.
   */
  update<T>(change: (state: OAuthState) => T): T {
    mkdirSync(dirname(this.file), { recursive: true, mode: 0o700 });
    const lock = `${this.file}.lock`;
    const deadline = Date.now() + LOCK_WAIT_MS;
    let fd: number | undefined;
    while (fd === undefined) {
      try {
        fd = openSync(lock, 'wx', 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
        try {
          if (Date.now() - statSync(lock).mtimeMs > STALE_LOCK_MS) unlinkSync(lock);
        } catch { /* gone meanwhile */ }
        if (Date.now() > deadline) throw new Error(`OAuth state file ${this.file} is locked by another process (${lock}); try again`);
        sleepSync(5);
      }
    }
    try {
      const state = this.readNow();
      const result = change(state);
      const tmp = `${this.file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
      const out = openSync(tmp, 'w', 0o600);
      try {
        writeSync(out, `${JSON.stringify(state)}\n`);
        fsyncSync(out);
      } finally {
        closeSync(out);
      }
      renameSync(tmp, this.file);
      try {
        const dir = openSync(dirname(this.file), 'r');
        try { fsyncSync(dir); } finally { closeSync(dir); }
      } catch { /* folders cannot be opened everywhere */ }
      this.cached = state;
      this.seen = this.signature();
      return result;
    } finally {
      closeSync(fd);
      try { unlinkSync(lock); } catch { /* removed as stale by another process */ }
    }
  }

  /**
   * Calls `onChange` (at most every {@link WATCH_INTERVAL_MS}) when the file changed since the last
   * call (another process's change; this object's own writes may be reported too). The watcher
   * keeps its own "last seen" state: a {@link read} in between (a request verifying a token right
   * after `toolmesh mcp clients --revoke`) refreshes the cache but does not hide the change.
   */
  watch(onChange: (state: OAuthState) => void): void {
    if (this.watching) return;
    this.watching = true;
    let last: OAuthState | undefined;
    try {
      last = this.read();
    } catch { /* reported on use */ }
    watchFile(this.file, { interval: WATCH_INTERVAL_MS, persistent: false }, () => {
      try {
        const now = this.read();
        if (now === last) return;
        last = now;
        onChange(now);
      } catch { /* a torn read cannot happen (rename), a bad file is reported on use */ }
    });
  }

  /** Stops {@link watch}. */
  unwatch(): void {
    if (!this.watching) return;
    this.watching = false;
    unwatchFile(this.file);
  }
}

/** Drops what can no longer be used: expired tokens and codes, and registrations nobody consented to after `pendingTtlMs`. */
export function prune(state: OAuthState, now: number, pendingTtlMs: number): void {
  for (const [k, t] of Object.entries(state.tokens)) if (t.expiresAt <= now) delete state.tokens[k];
  for (const [id, c] of Object.entries(state.clients)) {
    if (!c.consentedAt && !c.revokedAt && now - c.registeredAt > pendingTtlMs) delete state.clients[id];
  }
  state.pairing.codes = state.pairing.codes.filter((c) => c.expiresAt > now);
}
