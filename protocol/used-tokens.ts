/**
 * The used approval tokens of one agent (docs/protocol.md, "Approval tokens"): token ids (`jti`)
 * kept on disk until the tokens expire, so that a restart does not reopen a replay. Every server
 * that checks approval tokens (toolmesh-agent, a Node-RED flow agent) keeps one
 * (protocol/policy.ts `createAuthorizer`).
 */
import { open, readFile, rename, type FileHandle } from 'node:fs/promises';
import { dirname } from 'node:path';
import { z } from 'zod';

/** A used-token file that cannot be read safely. The agent does not start: replays could reopen. */
export class UsedTokenStoreError extends Error {
  constructor(readonly file: string, problem: string) {
    super(`used approval tokens file ${file}: ${problem}`);
    this.name = 'UsedTokenStoreError';
  }
}

/** One line of the used-token file. */
const EntrySchema = z.strictObject({ jti: z.string().min(1), exp: z.number() });

/**
 * The used token ids of one agent: in memory, and appended to a JSON-lines file
 * (`{"jti":"...","exp":<epoch ms>}` per line) with an fsync before {@link claim} resolves, so a
 * token is on disk before the call it approves runs. Opening drops entries that can no longer be
 * replayed (`exp + skew` passed) and rewrites the file compacted (temporary file, fsync, rename).
 *
 * Crash behaviour: a line is written before its call runs, so a crash loses no used token of a
 * call that ran. A torn last line (a crash mid-append, before its call ran) is dropped on open,
 * with a warning; an unreadable line elsewhere stops the agent from starting (the file was
 * edited or damaged, and skipping it could reopen a replay).
 */
export class UsedTokenStore {
  private readonly used = new Map<string, number>();
  private handle?: FileHandle;
  private lastPrune = 0;

  private constructor(readonly file: string, private readonly skewMs: number, private readonly now: () => number) {}

  /**
   * Loads, compacts and opens the file (created with mode 0600 when missing).
   * @param warn told about a dropped torn last line.
   * @throws UsedTokenStoreError when a line other than the last cannot be read, or the file cannot be written.
   */
  static async open(file: string, skewMs: number, warn: (msg: string) => void, now: () => number = Date.now): Promise<UsedTokenStore> {
    const store = new UsedTokenStore(file, skewMs, now);
    let text = '';
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new UsedTokenStoreError(file, `cannot read it: ${(e as Error).message}`);
    }
    const lines = text.split('\n');
    if (lines.at(-1) === '') lines.pop();
    lines.forEach((line, i) => {
      const entry = (() => { try { return EntrySchema.safeParse(JSON.parse(line)); } catch { return undefined; } })();
      if (entry?.success) return store.remember(entry.data.jti, entry.data.exp);
      if (i < lines.length - 1) {
        throw new UsedTokenStoreError(file, `line ${i + 1} is not a {"jti","exp"} record; the file was edited or damaged. Restore it, or delete it knowing that tokens used before will then work again until they expire`);
      }
      warn(`used approval tokens file ${file}: dropped a torn last line (a crash while recording a token, before its call ran)`);
    });
    try {
      await store.compact();
      store.handle = await open(file, 'a', 0o600);
    } catch (e) {
      throw new UsedTokenStoreError(file, `cannot write it: ${(e as Error).message}`);
    }
    return store;
  }

  /** Number of remembered token ids. */
  get size(): number {
    return this.used.size;
  }

  /** True when `jti` was claimed before and may not be used again (a check only; {@link claim} decides). */
  isUsed(jti: string): boolean {
    this.prune();
    return this.used.has(jti);
  }

  /**
   * Marks a token id used: false when it was used before; true once it is on disk (fsync).
   * @throws Error when the append or fsync fails; the id then stays unused, so the call must not run.
   */
  async claim(jti: string, exp: number): Promise<boolean> {
    this.prune();
    if (this.used.has(jti)) return false;
    const handle = this.handle;
    if (!handle) throw new Error('the used-token store is closed');
    // remembered before the write, so a second call with the same token that arrives meanwhile is refused
    this.remember(jti, exp);
    try {
      await handle.write(`${JSON.stringify({ jti, exp })}\n`);
      await handle.datasync();
    } catch (e) {
      this.used.delete(jti);
      throw e;
    }
    return true;
  }

  /** Closes the file. */
  async close(): Promise<void> {
    const h = this.handle;
    this.handle = undefined;
    await h?.close();
  }

  private remember(jti: string, exp: number): void {
    if (exp + this.skewMs >= this.now()) this.used.set(jti, Math.max(exp, this.used.get(jti) ?? exp));
  }

  /** Forgets expired ids at most once a minute (they can no longer pass the expiry check). */
  private prune(): void {
    const now = this.now();
    if (now - this.lastPrune < 60_000) return;
    this.lastPrune = now;
    for (const [jti, exp] of this.used) if (exp + this.skewMs < now) this.used.delete(jti);
  }

  /** Rewrites the file with the live entries: temporary file, fsync, rename, fsync of the directory. */
  private async compact(): Promise<void> {
    const tmp = `${this.file}.${process.pid}.tmp`;
    const body = [...this.used].map(([jti, exp]) => `${JSON.stringify({ jti, exp })}\n`).join('');
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.write(body);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const dir = await open(dirname(this.file), 'r');
    try {
      await dir.sync();
    } finally {
      await dir.close();
    }
  }
}
