/**
 * The tool-registry's admin endpoints for broker users and devices (issue 18, items 3 and 4), under
 * Node-RED's admin auth; they work on a deployed registry with the embedded broker and
 * authentication on (404 `{ error }` when the registry is not deployed, 409 `{ error }` in external
 * mode or without authentication):
 * - `GET /toolmesh/registry/:id/broker-users` (`toolmesh-tool-registry.read`) → `BrokerUserSummary[]`
 *   (username, role, source `editor`|`list`, addedAt?, note?, online), sorted by username;
 * - `POST /toolmesh/registry/:id/broker-users` (`toolmesh-tool-registry.write`), body
 *   `{ username, role, password?, note? }` → 201 `{ username, role, password? }`: without a
 *   password the server makes one (24 random bytes, base64url) and answers it this once (it is
 *   kept only as a hash); 400 naming the field, 409 when the id is taken;
 * - `POST /toolmesh/registry/:id/broker-users/:username/password` (`toolmesh-tool-registry.write`), body
 *   `{ password? }` → `{ username, password? }` (same make-once rule); the old password is refused
 *   from then on and connections made with it are closed; 404 unknown user, 409 a user of the
 *   users text;
 * - `DELETE /toolmesh/registry/:id/broker-users/:username` (`toolmesh-tool-registry.write`) → `{ removed: true }`:
 *   revoked (its connections closed); 404 unknown, 409 a user of the users text;
 * - `DELETE /toolmesh/registry/:id/agents/:agentId` (`toolmesh-tool-registry.write`) → `{ revoked, listed }`:
 *   removes a device: revokes its broker user when it is one of the store, then empties its
 *   retained status and catalog so callers forget it (`listed`: it logs in with a line of the
 *   users text, which stays until removed there).
 * Answers with a password carry `Cache-Control: no-store`; no password reaches a log line.
 */
import { randomBytes } from 'node:crypto';
import type { NodeAPI } from 'node-red';
import type { Request, Response } from 'express';
import { hashPassword, type BrokerRole } from '@toolmesh/agent/protocol/broker-auth';
import type { ToolRegistry } from './registry';

/** The shortest password a person may choose here, characters. */
export const MIN_PASSWORD = 12;
/** The longest password accepted, characters (scrypt hashes any length; this bounds the body). */
const MAX_PASSWORD = 1024;
const ROLES: readonly BrokerRole[] = ['agent', 'caller', 'admin'];

/** HTTP status of a registry user-method error by its `code`. */
const STATUS: Record<string, number> = { INVALID: 400, UNKNOWN: 404, EXISTS: 409, LISTED: 409, UNAVAILABLE: 409 };

/** A password from the body (checked), or a generated one when the body gives none. */
function passwordOf(body: unknown): { password: string; generated: boolean } | { error: string } {
  const given = (body as { password?: unknown } | undefined)?.password;
  if (given === undefined || given === null || given === '') return { password: randomBytes(24).toString('base64url'), generated: true };
  if (typeof given !== 'string' || given.length < MIN_PASSWORD || given.length > MAX_PASSWORD) {
    return { error: `password: expected a text of ${MIN_PASSWORD} to ${MAX_PASSWORD} characters, or none to have one made` };
  }
  return { password: given, generated: false };
}

/** Registers the endpoints; `deployed` holds the deployed registries by config node id. */
export function registerUserEndpoints(RED: NodeAPI, deployed: ReadonlyMap<string, ToolRegistry>): void {
  const read = RED.auth.needsPermission('toolmesh-tool-registry.read');
  const write = RED.auth.needsPermission('toolmesh-tool-registry.write');
  const registryOf = (req: Request, res: Response): ToolRegistry | undefined => {
    const registry = deployed.get(String(req.params.id));
    if (!registry) res.status(404).json({ error: RED._('tool-registry.errors.not-deployed') });
    return registry;
  };
  /** Answers a registry error with the status of its code (500 for any other, e.g. the store file). */
  const fail = (res: Response, e: unknown) => {
    const err = e as Error & { code?: string };
    res.status(STATUS[err.code ?? ''] ?? 500).json({ error: err.message });
  };

  RED.httpAdmin.get('/toolmesh/registry/:id/broker-users', read, (req, res) => {
    const registry = registryOf(req, res);
    if (!registry) return;
    try {
      res.json(registry.listBrokerUsers());
    } catch (e) {
      fail(res, e);
    }
  });

  RED.httpAdmin.post('/toolmesh/registry/:id/broker-users', write, (req, res) => {
    const registry = registryOf(req, res);
    if (!registry) return;
    res.set('Cache-Control', 'no-store');
    const body = (req.body ?? {}) as { username?: unknown; role?: unknown; note?: unknown };
    if (typeof body.username !== 'string') return void res.status(400).json({ error: 'username: expected an agent or caller id' });
    if (!ROLES.includes(body.role as BrokerRole)) return void res.status(400).json({ error: 'role: expected agent, caller or admin' });
    if (body.note !== undefined && typeof body.note !== 'string') return void res.status(400).json({ error: 'note: expected a text' });
    const pw = passwordOf(req.body);
    if ('error' in pw) return void res.status(400).json({ error: pw.error });
    const who = (req as Request & { user?: { username?: unknown } }).user?.username;
    const note = body.note ?? (typeof who === 'string' && who ? `added in the editor by ${who}` : 'added in the editor');
    const role = body.role as BrokerRole;
    hashPassword(pw.password)
      .then((passwordHash) => registry.addBrokerUser({ username: body.username as string, role, passwordHash, note: note.slice(0, 200) }))
      .then(() => res.status(201).json({ username: body.username, role, ...(pw.generated ? { password: pw.password } : {}) }), (e) => fail(res, e));
  });

  RED.httpAdmin.post('/toolmesh/registry/:id/broker-users/:username/password', write, (req, res) => {
    const registry = registryOf(req, res);
    if (!registry) return;
    res.set('Cache-Control', 'no-store');
    const username = String(req.params.username);
    const pw = passwordOf(req.body);
    if ('error' in pw) return void res.status(400).json({ error: pw.error });
    hashPassword(pw.password)
      .then((hash) => registry.resetBrokerPassword(username, hash))
      .then(() => res.json({ username, ...(pw.generated ? { password: pw.password } : {}) }), (e) => fail(res, e));
  });

  RED.httpAdmin.delete('/toolmesh/registry/:id/broker-users/:username', write, (req, res) => {
    const registry = registryOf(req, res);
    if (!registry) return;
    const username = String(req.params.username);
    registry.removeBrokerUser(username).then(
      (removed) => (removed ? res.json({ removed: true }) : res.status(404).json({ error: `username: no broker user ${username}` })),
      (e) => fail(res, e),
    );
  });

  RED.httpAdmin.delete('/toolmesh/registry/:id/agents/:agentId', write, (req, res) => {
    const registry = registryOf(req, res);
    if (!registry) return;
    registry.removeAgent(String(req.params.agentId)).then((r) => res.json(r), (e) => fail(res, e));
  });
}
