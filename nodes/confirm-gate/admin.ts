/**
 * The confirm-gate's admin HTTP endpoints (under Node-RED's admin auth):
 * - `POST /toolmesh/confirm-gate/keys` (`toolmesh-confirm-gate.write`), body `{ kid, replace? }` → makes the
 *   key file `<userDir>/toolmesh-keys/<kid>.pem` (mode 0600) with a new Ed25519 pair, or keeps the
 *   one there unless `replace: true`, and answers `{ kid, publicKeyPem, fingerprint, agentConfig,
 *   created }`: the private key stays on the runtime side; 400 for a bad key id;
 * - `GET /toolmesh/confirm-gate/:id/public-key` (`toolmesh-confirm-gate.read`) → `{ kid, publicKeyPem, fingerprint, agentConfig }`
 *   (the last three `null` while the deployed gate has no key yet);
 * - `GET /toolmesh/confirm-gate/:id/approvals` (`toolmesh-confirm-gate.read`) → the pending requests, oldest first;
 * - `POST /toolmesh/confirm-gate/:id/approvals/:approvalId` (`toolmesh-confirm-gate.write`), body
 *   `{ approve, approver?, reason? }` → `{ approvalId, approved, approver }`; 400 malformed body,
 *   404 unknown id, 409 already decided (`{ error, settled }`);
 * - `POST /toolmesh/confirm-gate/:id/approvals` (`toolmesh-confirm-gate.write`), same body, no id: decides
 *   the only waiting call when exactly one waits and it came from the gate's own input (for a
 *   script or button that cannot name the id); 404 none waits, 409 `{ error, pending }` when
 *   several wait or the only one is another caller's request (`pending`: their ids, oldest
 *   first, at most 10), and nothing is settled.
 * A gate that is not deployed answers 404.
 */
import type { NodeAPI } from 'node-red';
import type { Request, Response } from 'express';
import type { ApprovalRequestPayload, DecideResult } from './approvals';
import { DecisionError, httpDecision, type Decision } from './decisions';
import { KID_PATTERN, agentKeySnippet, ensureKeyFile, keyFingerprint } from './keys';

/** What a deployed gate offers the endpoints. */
export interface GateEndpoint {
  kid: string;
  /** Undefined when the gate has no usable signing key. */
  publicKeyPem?: string;
  pending(): ApprovalRequestPayload[];
  /** Applies a decision; `refused` is the error text of a refused decision without an id. */
  decide(d: Decision): { r: DecideResult<unknown>; refused?: string };
}

/** Registers the endpoints; `gates` holds the deployed gates by node id. */
export function registerAdminEndpoints(RED: NodeAPI, gates: ReadonlyMap<string, GateEndpoint>): void {
  const read = RED.auth.needsPermission('toolmesh-confirm-gate.read');
  const write = RED.auth.needsPermission('toolmesh-confirm-gate.write');
  const gateOf = (req: Request, res: Response): GateEndpoint | undefined => {
    const gate = gates.get(String(req.params.id));
    if (!gate) res.status(404).json({ error: RED._('confirm-gate.errors.not-deployed') });
    return gate;
  };

  RED.httpAdmin.post('/toolmesh/confirm-gate/keys', write, (req, res) => {
    const kid = typeof req.body?.kid === 'string' ? req.body.kid.trim() : '';
    res.set('Cache-Control', 'no-store');
    if (!KID_PATTERN.test(kid) || kid.startsWith('.')) {
      res.status(400).json({ error: RED._('confirm-gate.errors.bad-kid', { kid }) });
      return;
    }
    const userDir = (RED.settings as { userDir?: string }).userDir;
    if (!userDir) {
      res.status(500).json({ error: RED._('confirm-gate.errors.no-user-dir') });
      return;
    }
    try {
      const info = ensureKeyFile(userDir, kid, req.body?.replace === true);
      res.json({ kid, publicKeyPem: info.publicKeyPem, fingerprint: info.fingerprint, agentConfig: agentKeySnippet(kid, info.publicKeyPem), created: info.created });
    } catch (e) {
      res.status(500).json({ error: RED._('confirm-gate.errors.key-file', { detail: (e as Error).message }) });
    }
  });

  RED.httpAdmin.get('/toolmesh/confirm-gate/:id/public-key', read, (req, res) => {
    const gate = gateOf(req, res);
    if (!gate) return;
    // a deployed gate without a key yet (a new one, before its key was generated) is not an error
    if (!gate.publicKeyPem) {
      res.json({ kid: gate.kid, publicKeyPem: null, fingerprint: null, agentConfig: null });
      return;
    }
    res.json({ kid: gate.kid, publicKeyPem: gate.publicKeyPem, fingerprint: keyFingerprint(gate.publicKeyPem), agentConfig: agentKeySnippet(gate.kid, gate.publicKeyPem) });
  });

  RED.httpAdmin.get('/toolmesh/confirm-gate/:id/approvals', read, (req, res) => {
    const gate = gateOf(req, res);
    if (gate) res.json(gate.pending());
  });

  /** Both decision routes: `approvalId` undefined for the one without an id. */
  const decide = (req: Request, res: Response, approvalId: string | undefined) => {
    const gate = gateOf(req, res);
    if (!gate) return;
    const user = (req as Request & { user?: { username?: unknown } }).user?.username;
    let decision: Decision;
    try {
      decision = httpDecision(approvalId, req.body, typeof user === 'string' && user ? user : undefined);
    } catch (e) {
      if (!(e instanceof DecisionError)) throw e;
      res.status(400).json({ error: RED._('confirm-gate.errors.bad-decision', { field: e.field, expected: e.expected, got: e.got }) });
      return;
    }
    const { r, refused } = gate.decide(decision);
    if (r.status === 'settled') {
      res.json({ approvalId: r.held.request.approvalId, approved: r.outcome.approved, approver: decision.approver });
    } else if (r.status === 'already') {
      res.status(409).json({ error: RED._('confirm-gate.warn.already', { id: r.id, settled: r.settled, via: 'HTTP' }), settled: r.settled });
    } else if (r.status === 'refused') {
      res.status(409).json({ error: refused, pending: r.pending });
    } else if (decision.id === undefined) {
      res.status(404).json({ error: RED._('confirm-gate.warn.none-pending', { via: 'HTTP' }) });
    } else {
      res.status(404).json({ error: RED._('confirm-gate.warn.unknown', { id: decision.id, via: 'HTTP' }) });
    }
  };
  RED.httpAdmin.post('/toolmesh/confirm-gate/:id/approvals/:approvalId', write, (req, res) => decide(req, res, String(req.params.approvalId)));
  RED.httpAdmin.post('/toolmesh/confirm-gate/:id/approvals', write, (req, res) => decide(req, res, undefined));
}
