/**
 * The broker users a tool-registry keeps across restarts (issue 18, items 3 and 4): users added one
 * by one in the editor, and devices that joined with a code. One JSON file per registry,
 * `<Node-RED userDir>/toolmesh/broker-users-<registry node id>.json` (see {@link userStoreFile}),
 * mode 0600, replaced atomically (temporary file, fsync, rename, fsync of the directory) on every
 * change. It holds only scrypt hashes (protocol/broker-auth.ts `hashPassword`), never a password.
 *
 * File shape: `{ "version": 1, "users": StoredBrokerUser[] }`.
 */
import { mkdir, open, readFile, rename, chmod } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import { isValidId } from '@toolmesh/agent/protocol/topics';
import { isPasswordHash, type BrokerRole } from '@toolmesh/agent/protocol/broker-auth';

/** A broker user kept by the registry across restarts (only hashes, never a password). */
export interface StoredBrokerUser {
  /** Agent or caller id, `^[A-Za-z0-9_-]{1,64}$`. */
  username: string;
  role: BrokerRole;
  /** protocol/broker-auth `hashPassword()` format (`$scrypt$...`). */
  passwordHash: string;
  /** ISO time. */
  addedAt: string;
  /** E.g. "joined with a code from <who>", "added in the editor" (at most {@link MAX_NOTE} characters). */
  note?: string;
}

/** The most users one store holds (a bound on the file and on the broker's user table). */
export const MAX_STORED_USERS = 10_000;
/** The longest note, characters. */
export const MAX_NOTE = 200;
/** The largest store file read, bytes (10,000 users of about 250 bytes each, with room). */
const MAX_FILE_BYTES = 8 * 1024 * 1024;
const ROLES: readonly string[] = ['agent', 'caller', 'admin'];

/** The store file of registry node `registryId` under Node-RED's user directory. */
export function userStoreFile(userDir: string, registryId: string): string {
  // a node id is hex with dots on older Node-RED; keep the file name to safe characters anyway
  return join(userDir, 'toolmesh', `broker-users-${registryId.replace(/[^A-Za-z0-9_.-]/g, '_')}.json`);
}

/**
 * Checks one user; returns it cleaned (no unknown fields).
 * @throws Error naming the field and the expectation (`where` says which entry), never echoing a hash.
 */
function checkUser(u: unknown, where: string): StoredBrokerUser {
  if (u === null || typeof u !== 'object' || Array.isArray(u)) throw new Error(`${where}: expected an object`);
  const o = u as Record<string, unknown>;
  if (!isValidId(o.username)) throw new Error(`${where}: username must be an agent or caller id (1–64 letters, digits, _ or -)`);
  const name = `${where} (${o.username})`;
  if (typeof o.role !== 'string' || !ROLES.includes(o.role)) throw new Error(`${name}: role must be agent, caller or admin`);
  if (typeof o.passwordHash !== 'string' || !isPasswordHash(o.passwordHash)) throw new Error(`${name}: passwordHash must be a $scrypt$ln=..,r=..,p=..$salt$hash string`);
  if (typeof o.addedAt !== 'string' || Number.isNaN(Date.parse(o.addedAt))) throw new Error(`${name}: addedAt must be an ISO time`);
  if (o.note !== undefined && (typeof o.note !== 'string' || o.note.length > MAX_NOTE)) throw new Error(`${name}: note must be a text of at most ${MAX_NOTE} characters`);
  const user: StoredBrokerUser = { username: o.username, role: o.role as BrokerRole, passwordHash: o.passwordHash, addedAt: o.addedAt };
  if (o.note !== undefined) user.note = o.note as string;
  return user;
}

/** The broker users of one registry, in a JSON file. Changes are written one at a time, in call order. */
export class BrokerUserStore {
  private readonly users = new Map<string, StoredBrokerUser>();
  /** The write under way; each change waits for the one before. */
  private writing: Promise<void> = Promise.resolve();

  private constructor(readonly file: string) {}

  /**
   * Opens the JSON file, or starts empty when it does not exist (the file is written on the first
   * change; its directory is made then, mode 0700). A file found is set to mode 0600.
   * @throws Error naming the file and the entry when it is not a store file (bad JSON, a bad
   *   user, a username twice, over {@link MAX_STORED_USERS} users or 8 MiB).
   */
  static async open(file: string): Promise<BrokerUserStore> {
    const store = new BrokerUserStore(file);
    let text: string;
    try {
      text = await readFile(file, 'utf8');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return store;
      throw e;
    }
    if (text.length > MAX_FILE_BYTES) throw new Error(`broker user store ${file}: larger than ${MAX_FILE_BYTES} bytes`);
    let data: unknown;
    try {
      data = JSON.parse(text);
    } catch (e) {
      throw new Error(`broker user store ${file}: not JSON (${(e as Error).message})`);
    }
    const users = (data as { users?: unknown } | null)?.users;
    if (!Array.isArray(users)) throw new Error(`broker user store ${file}: expected an object with a "users" array`);
    if (users.length > MAX_STORED_USERS) throw new Error(`broker user store ${file}: ${users.length} users; at most ${MAX_STORED_USERS}`);
    users.forEach((u, i) => {
      const user = checkUser(u, `broker user store ${file}, users[${i}]`);
      if (store.users.has(user.username)) throw new Error(`broker user store ${file}, users[${i}]: username ${user.username} is there twice`);
      store.users.set(user.username, user);
    });
    await chmod(file, 0o600);
    return store;
  }

  /** The users, in the order they were added. */
  list(): readonly StoredBrokerUser[] {
    return [...this.users.values()];
  }

  get(username: string): StoredBrokerUser | undefined {
    return this.users.get(username);
  }

  /**
   * Adds a user and writes the file.
   * @throws Error naming the field when the user is malformed; Error with code `EXISTS` when the
   *   username is taken; an Error of the file system when the write fails (the user is not added).
   */
  async add(user: StoredBrokerUser): Promise<void> {
    const clean = checkUser(user, 'broker user');
    if (this.users.has(clean.username)) throw Object.assign(new Error(`broker user ${clean.username} exists`), { code: 'EXISTS' });
    if (this.users.size >= MAX_STORED_USERS) throw new Error(`broker user ${clean.username}: the store holds ${MAX_STORED_USERS} users already`);
    await this.change(() => this.users.set(clean.username, clean), () => this.users.delete(clean.username));
  }

  /** Removes a user and writes the file; false (no write) when there is no such user. */
  async remove(username: string): Promise<boolean> {
    const user = this.users.get(username);
    if (!user) return false;
    await this.change(() => this.users.delete(username), () => this.users.set(username, user));
    return true;
  }

  /**
   * Replaces a user's password hash and writes the file.
   * @throws Error when there is no such user or the hash is malformed.
   */
  async setPasswordHash(username: string, passwordHash: string): Promise<void> {
    const user = this.users.get(username);
    if (!user) throw Object.assign(new Error(`broker user ${username} does not exist`), { code: 'UNKNOWN' });
    if (!isPasswordHash(passwordHash)) throw new Error(`broker user ${username}: passwordHash must be a $scrypt$ln=..,r=..,p=..$salt$hash string`);
    await this.change(() => this.users.set(username, { ...user, passwordHash }), () => this.users.set(username, user));
  }

  /** Applies `apply`, writes the file (after any write under way), and undoes with `undo` when the write fails. */
  private change(apply: () => void, undo: () => void): Promise<void> {
    const run = this.writing.then(async () => {
      apply();
      try {
        await this.write();
      } catch (e) {
        undo();
        throw e;
      }
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  /** Temporary file (mode 0600), fsync, rename over the store, fsync of the directory. */
  private async write(): Promise<void> {
    const dir = dirname(this.file);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const tmp = `${this.file}.${process.pid}.tmp`;
    const fh = await open(tmp, 'w', 0o600);
    try {
      await fh.write(`${JSON.stringify({ version: 1, users: [...this.users.values()] }, null, 1)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.file);
    const d = await open(dir, 'r');
    try {
      await d.sync();
    } finally {
      await d.close();
    }
  }
}
