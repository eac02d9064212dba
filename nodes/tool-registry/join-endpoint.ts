/**
 * The Node-RED side of "join with a code" (issue 18, item 3; the exchange is protocol/join.ts).
 *
 * - `POST /toolmesh/registry/:id/join-codes` (permission `toolmesh-tool-registry.write`), body
 *   `{ nodeRedUrl, brokerUrl, agentId?, packs? }` → `{ joinString, codeId, command, installCommand,
 *   configCommand, expiresAt (epoch ms), account, warning? }`: a new single-use join string for
 *   registry `:id` (10 min). 400 naming the field; 404 when the registry is not deployed.
 * - `GET /toolmesh/registry/:id/join-codes/:codeId` (`toolmesh-tool-registry.read`) → `{ state: 'waiting' |
 *   'joined' | 'gone', agentId?, account? }`, so the dialog can show when the device joined (and,
 *   for an external broker, the lines to add for that agent id).
 * - `POST /toolmesh/join` (NO login: the device has none), body a {@link JoinRequest} of at most
 *   {@link MAX_JOIN_BODY_BYTES} → 200 signed {@link JoinAnswer}; 400 naming the field, 403 wrong
 *   proof, 409 agent id taken (the code stays usable), 410 used/void/expired/unknown, 413 too large,
 *   429 with `Retry-After` past {@link MAX_FAILURES_PER_MINUTE} failures a minute, 503 when the
 *   registry cannot add the user.
 *
 * Codes live in memory in one book per process, so a deploy that re-creates the registry keeps
 * them; a deleted registry's codes are dropped.
 */
import { X509Certificate } from 'node:crypto';
import type { NodeAPI } from 'node-red';
import { z } from 'zod';
import type { BrokerRole } from '@toolmesh/agent/protocol/broker-auth';
import {
  JOIN_TTL_MS, JoinCodeBook, MAX_JOIN_BODY_BYTES, describeIssues, parseJoinRequest, signJoinAnswer, type JoinAnswer,
} from '@toolmesh/agent/protocol/join';
import { ID_PATTERN } from '@toolmesh/agent/protocol/topics';
import { isLoopbackHost } from '@toolmesh/agent/protocol/broker';
import { gateKeys } from '../shared/gate-keys';
import type { RegistryOptions } from './registry';

/** What the endpoints need of one deployed registry. */
export interface JoinHost {
  options: RegistryOptions;
  /** {@link ToolRegistry.addBrokerUser} of the registry (it throws with `code` UNAVAILABLE when it has no user store). */
  addBrokerUser: (u: { username: string; role: BrokerRole; passwordHash: string; note?: string }) => Promise<void>;
}

/** The process-wide book (survives re-deploys of the registry nodes). */
const book = new JoinCodeBook();
/** Codes answered, by code id, until the code would have expired: for the dialog's poll. */
const joined = new Map<string, { owner: string; agentId: string; account: JoinAnswer['account']; until: number }>();

const IssueSchema = z.strictObject({
  nodeRedUrl: z.string().max(500),
  brokerUrl: z.string().max(500),
  agentId: z.string().regex(ID_PATTERN, `expected an agent id (${ID_PATTERN.source})`).optional(),
  packs: z.array(z.string().regex(/^[a-z][a-z0-9-]{0,31}$/, 'expected a pack name such as docker')).max(16).optional(),
});

/** Shell-quotes `s` for the shown command when it needs it. */
const sh = (s: string) => (/^[A-Za-z0-9._,\/:=@-]+$/.test(s) ? s : `'${s.replace(/'/g, `'\\''`)}'`);

/** How a device joined to this registry logs in to its broker. */
function accountOf(o: RegistryOptions): JoinAnswer['account'] {
  if (o.broker.mode === 'external') return 'external';
  return o.broker.auth ? 'added' : 'none';
}

/** PEM text of a CA/cert option (string, Buffer or array of them); undefined when none. */
function pemOf(v: unknown): string | undefined {
  const list = Array.isArray(v) ? v : v === undefined ? [] : [v];
  const text = list.map((x) => (Buffer.isBuffer(x) ? x.toString('utf8') : typeof x === 'string' ? x : '')).filter((x) => x.includes('-----BEGIN')).join('\n');
  return text || undefined;
}

/** The PEM a device needs to trust the broker's certificate, when it serves TLS. */
function caOf(o: RegistryOptions): string | undefined {
  const b = o.broker;
  if (b.mode === 'embedded') return b.tls ? pemOf(b.tls.ca) ?? pemOf(b.tls.cert) : undefined;
  return b.connection.url.startsWith('mqtts:') || b.connection.url.startsWith('wss:') ? pemOf((b.connection.extra as { ca?: unknown } | undefined)?.ca) : undefined;
}

/** SHA-256 fingerprint of Node-RED's own https certificate, when settings.https names one. */
function ownFingerprint(RED: NodeAPI): string | undefined {
  const https = (RED.settings as unknown as { https?: { cert?: string | Buffer } }).https;
  if (!https || typeof https !== 'object' || !https.cert) return undefined;
  try { return new X509Certificate(https.cert).fingerprint256; } catch { return undefined; }
}

/** Mounts the three endpoints; `hosts` holds the deployed registries by config node id. */
export function mountJoinEndpoints(RED: NodeAPI, hosts: ReadonlyMap<string, JoinHost>): void {
  RED.httpAdmin.post('/toolmesh/registry/:id/join-codes', RED.auth.needsPermission('toolmesh-tool-registry.write'), (req, res) => {
    const id = String(req.params.id);
    const host = hosts.get(id);
    if (!host) { res.status(404).json({ error: RED._('tool-registry.errors.not-deployed') }); return; }
    const body = IssueSchema.safeParse(req.body ?? {});
    if (!body.success) { res.status(400).json({ error: describeIssues(body.error.issues) }); return; }
    const o = host.options;
    const account = accountOf(o);
    let issued;
    try {
      issued = book.issue({
        owner: id, nodeRedUrl: body.data.nodeRedUrl, brokerUrl: body.data.brokerUrl, agentId: body.data.agentId,
        fingerprint: body.data.nodeRedUrl.startsWith('https:') ? ownFingerprint(RED) : undefined,
      });
    } catch (e) {
      res.status(400).json({ error: (e as Error).message });
      return;
    }
    const file = `${body.data.agentId ?? 'agent'}.yaml`;
    const packs = body.data.packs?.length ? ` --packs ${body.data.packs.join(',')}` : '';
    let warning: string | undefined;
    if (o.broker.mode === 'embedded' && !o.broker.auth && isLoopbackHost(o.broker.host)) warning = RED._('tool-registry.join.loopback-open');
    res.json({
      joinString: issued.joinString,
      codeId: issued.codeId,
      expiresAt: issued.expiresAt,
      account,
      installCommand: 'npm install -g @toolmesh/agent',
      // joins and runs at once: with the install, two commands on the device
      command: `toolmesh-agent join ${sh(issued.joinString)} --config ${file}${packs} --run`,
      configCommand: `toolmesh-agent --config ${file}`,
      ...(warning ? { warning } : {}),
    });
  });

  RED.httpAdmin.get('/toolmesh/registry/:id/join-codes/:codeId', RED.auth.needsPermission('toolmesh-tool-registry.read'), (req, res) => {
    const now = Date.now();
    for (const [k, v] of joined) if (v.until <= now) joined.delete(k);
    const j = joined.get(String(req.params.codeId));
    if (j && j.owner === String(req.params.id)) { res.json({ state: 'joined', agentId: j.agentId, account: j.account }); return; }
    res.json({ state: book.has(String(req.params.codeId)) ? 'waiting' : 'gone' });
  });

  RED.httpAdmin.post('/toolmesh/join', async (req, res) => {
    res.set('Cache-Control', 'no-store');
    const wait = book.throttledFor();
    if (wait > 0) { res.set('Retry-After', String(wait)).status(429).json({ error: 'too many failed join attempts; try again later' }); return; }
    const length = Number(req.headers['content-length'] ?? 0);
    if (length > MAX_JOIN_BODY_BYTES) { book.fail(); res.status(413).json({ error: `(body): larger than ${MAX_JOIN_BODY_BYTES} bytes` }); return; }
    const parsed = parseJoinRequest(req.body);
    if (!parsed.ok) { book.fail(); res.status(400).json({ error: parsed.error }); return; }
    const r = parsed.value;
    try {
      const verdict = await book.redeem(r, async (code) => {
        const host = hosts.get(code.owner);
        if (!host) throw Object.assign(new Error('i: the registry of this join string is no longer deployed'), { status: 410 });
        const o = host.options;
        const account = accountOf(o);
        if (account === 'added') {
          try {
            await host.addBrokerUser({ username: r.agentId, role: 'agent', passwordHash: r.passwordHash, note: 'joined with a code' });
          } catch (e) {
            const err = e as Error & { code?: string };
            if (err.code === 'EXISTS') throw Object.assign(new Error(`agentId: ${r.agentId} is taken on this broker; join with another --id`), { status: 409, keepCode: true });
            throw Object.assign(new Error(`the registry could not add the broker user: ${err.message}`), { status: 503 });
          }
        }
        const keys: Record<string, string> = {};
        for (const [kid, key] of gateKeys()) keys[kid] = String(key.export({ type: 'spki', format: 'pem' }));
        const ca = caOf(o);
        const answer = signJoinAnswer(code.key, r.nonce, {
          agentId: r.agentId, ...(account === 'none' ? {} : { username: r.agentId }), brokerUrl: code.brokerUrl, root: o.root,
          ...(ca ? { ca } : {}), keys, account,
        });
        return answer;
      });
      if (!verdict.ok) {
        if (verdict.retryAfterSec) res.set('Retry-After', String(verdict.retryAfterSec));
        res.status(verdict.status).json({ error: verdict.error });
        return;
      }
      joined.set(r.i, { owner: verdict.owner, agentId: r.agentId, account: verdict.value.account, until: Date.now() + JOIN_TTL_MS });
      RED.log.info(`toolmesh: agent ${r.agentId} joined registry ${verdict.owner} with a join code (${verdict.value.account})`);
      res.json(verdict.value);
    } catch (e) {
      const err = e as Error & { status?: number };
      res.status(err.status ?? 500).json({ error: err.status ? err.message : 'join failed' });
      if (!err.status) RED.log.warn(`toolmesh: join failed: ${err.message}`);
    }
  });
}

/** Drops the codes of a deleted registry. */
export function dropJoinCodes(registryId: string): void {
  book.revokeOwner(registryId);
}
