/**
 * `toolmesh-agent join <join string> --config <file> [--packs a,b] [--id <agent id>] [--force]`:
 * trades a one-time join string from the editor ("Add a device") for a ready agent config
 * (protocol/join.ts has the exchange). The device makes its broker password here (24 random
 * bytes) and sends only its scrypt hash; the password goes to `<config>.pass` beside the config
 * (mode 0600), the broker's CA (when it serves TLS) to `<config>.ca.pem`, the confirm-gates' keys
 * inline into `approvals.keys`. The config (mode 0600) passes `--check` and comes online as is.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, openSync, unlinkSync, writeSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { isIP } from 'node:net';
import { hostname } from 'node:os';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { basename, dirname, resolve } from 'node:path';
import { stringify } from 'yaml';
import { hashPassword } from '../protocol/broker-auth';
import { JoinError, checkJoinAnswer, makeJoinRequest, parseJoinString, type JoinAnswer, type JoinTicket } from '../protocol/join';
import { ID_PATTERN } from '../protocol/topics';
import { PACKS } from './packs';
import { validateConfig } from './config';

/** Packs a joined device gets when `--packs` is not given. */
export const DEFAULT_JOIN_PACKS = ['system'];

/**
 * Safe starting sections per pack: nothing that starts containers, opens files or moves motors
 * until a person edits the config. Packs not listed get `{}` (their schema defaults).
 */
export const SAFE_PACK_DEFAULTS: Record<string, Record<string, unknown>> = {
  docker: { images: [], defaultNetworkMode: 'none' },
  system: { commands: ['disk_usage', 'memory', 'uptime'], units: [] },
  diag: { sleepTool: false },
  desktop: { allowedPaths: [] },
  robot: { backend: 'simulated' },
};

/** Options of {@link runJoin}. */
export interface JoinOptions {
  joinString: string;
  /** Config file to write. */
  config: string;
  packs?: string[];
  agentId?: string;
  /** Overwrite existing files. */
  force?: boolean;
  /** Request timeout, ms (default 15 000). */
  timeoutMs?: number;
}

/** What {@link runJoin} wrote. */
export interface JoinResult {
  config: string;
  passwordFile?: string;
  caFile?: string;
  agentId: string;
  answer: JoinAnswer;
  /** The broker password, for the external-broker case (printed once by the CLI). */
  password: string;
}

/** A default agent id from the host name: letters, digits, _ and - only. */
function hostId(): string {
  const id = hostname().split('.')[0].replace(/[^A-Za-z0-9_-]/g, '-').slice(0, 64);
  return ID_PATTERN.test(id) ? id : 'agent';
}

/** `ab:cd:...` or `abcd...` → `ABCD...` */
const normFp = (f: string) => f.replace(/:/g, '').toUpperCase();

/**
 * POSTs the request to `<u>/toolmesh/join`; with `https` and `f` only a server whose certificate
 * has that SHA-256 fingerprint is talked to (a self-signed one too).
 * @throws JoinError `unreachable`, `pinning`, or one from the status (410 used/expired, 403 wrong proof, 429 throttled).
 */
async function post(ticket: JoinTicket, body: object, timeoutMs: number): Promise<unknown> {
  const url = new URL(`${ticket.u}/toolmesh/join`);
  const pin = url.protocol === 'https:' && ticket.f ? normFp(ticket.f) : undefined;
  // with a pin, the TLS connection is made and its certificate checked before a byte of the request is sent
  const socket = pin ? await pinnedSocket(ticket, url, pin, timeoutMs) : undefined;
  const data = JSON.stringify(body);
  return new Promise((resolvePromise, reject) => {
    const opts = {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) },
      timeout: timeoutMs,
    };
    const req: import('node:http').ClientRequest = url.protocol === 'https:'
      // no agent: the request goes over the pinned socket as it is (an agent would dial its own)
      ? (socket ? httpsRequest({ ...opts, host: url.hostname, port: url.port, path: url.pathname, createConnection: () => socket }) : httpsRequest(url, opts))
      : httpRequest(url, opts);
    req.on('timeout', () => req.destroy(new JoinError('unreachable', `cannot reach Node-RED at ${ticket.u}: no answer within ${timeoutMs / 1000} s`)));
    req.on('error', (e: Error) => reject(e instanceof JoinError ? e
      : new JoinError('unreachable', `cannot reach Node-RED at ${ticket.u}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    req.on('response', (res) => {
      let size = 0;
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => {
        size += c.length;
        if (size > 256 * 1024) { req.destroy(new JoinError('bad-answer', `answer of ${ticket.u}: larger than 256 KB`)); return; }
        chunks.push(c);
      });
      res.on('end', () => {
        let json: { error?: unknown } | undefined;
        try { json = JSON.parse(Buffer.concat(chunks).toString('utf8')); } catch { json = undefined; }
        const why = typeof json?.error === 'string' ? json.error.replace(/[^\x20-\x7e]/g, '?').slice(0, 300) : `HTTP ${res.statusCode}`;
        const code = res.statusCode ?? 0;
        if (code === 200 && json) resolvePromise(json);
        else if (code === 410) reject(new JoinError('used', `join refused: ${why}`));
        else if (code === 403) reject(new JoinError('wrong-proof', `join refused: ${why} (copy the join string whole, or make a new one)`));
        else if (code === 429) reject(new JoinError('throttled', `join refused: too many failed attempts at ${ticket.u}; try again in ${res.headers['retry-after'] ?? 60} s`));
        else if (code === 404) reject(new JoinError('unreachable', `${ticket.u} has no ToolMesh join endpoint (HTTP 404): is this the Node-RED with the ToolMesh nodes, with the admin path included?`));
        else reject(new JoinError('refused', `join refused by ${ticket.u}: ${why}`));
      });
      res.on('error', (e) => reject(new JoinError('unreachable', `cannot reach Node-RED at ${ticket.u}: ${e.message}`)));
    });
    req.end(data);
  });
}

/**
 * A TLS connection to `url` whose certificate has SHA-256 fingerprint `pin` (any issuer: Node-RED's
 * certificate is often self-signed; the pin from the join string is the trust).
 * @throws JoinError `pinning` for another certificate, `unreachable` when no connection is made.
 */
function pinnedSocket(ticket: JoinTicket, url: URL, pin: string, timeoutMs: number): Promise<TLSSocket> {
  return new Promise((resolvePromise, reject) => {
    const host = url.hostname.replace(/^\[|\]$/g, '');
    const s = tlsConnect({ host, port: Number(url.port || 443), servername: isIP(host) ? undefined : host, rejectUnauthorized: false, timeout: timeoutMs });
    s.once('timeout', () => s.destroy(new JoinError('unreachable', `cannot reach Node-RED at ${ticket.u}: no answer within ${timeoutMs / 1000} s`)));
    s.once('error', (e: Error) => reject(e instanceof JoinError ? e : new JoinError('unreachable', `cannot reach Node-RED at ${ticket.u}: ${(e as NodeJS.ErrnoException).code ?? e.message}`)));
    s.once('secureConnect', () => {
      const got = normFp(s.getPeerCertificate().fingerprint256 ?? '');
      if (got !== pin) {
        s.destroy();
        reject(new JoinError('pinning', `${ticket.u}: its certificate (SHA-256 ${got || 'none'}) is not the one in the join string; nothing was sent`));
        return;
      }
      s.setTimeout(0);
      resolvePromise(s);
    });
  });
}

/** Writes `text` to a new file with mode 0600 (`wx` unless `force`). */
function writePrivate(file: string, text: string, force: boolean): void {
  const fd = openSync(file, force ? 'w' : 'wx', 0o600);
  try { writeSync(fd, text); } finally { closeSync(fd); }
}

/**
 * The whole join: parse the string, make and hash the password, exchange, check the answer, write
 * the files. Nothing is written unless the answer's proof holds and the config validates.
 * @throws JoinError with one line for a person (`bad-string`, `expired`, `used`, `wrong-proof`,
 *   `throttled`, `unreachable`, `pinning`, `bad-answer`, `refused`), or Error for a local problem
 *   (an existing file without `force`, an unknown pack, a bad id).
 */
export async function runJoin(o: JoinOptions): Promise<JoinResult> {
  const ticket = parseJoinString(o.joinString);
  const packs = o.packs ?? DEFAULT_JOIN_PACKS;
  for (const p of packs) if (!(p in PACKS)) throw new JoinError('refused', `--packs: unknown pack ${p}; known packs are ${Object.keys(PACKS).join(', ')}`);
  const agentId = o.agentId ?? ticket.a ?? hostId();
  if (!ID_PATTERN.test(agentId)) throw new JoinError('refused', `--id: expected an agent id (${ID_PATTERN.source}), got ${JSON.stringify(agentId)}`);
  const config = resolve(o.config);
  const stem = basename(config).replace(/\.ya?ml$/i, '');
  const passwordFile = resolve(dirname(config), `${stem}.pass`);
  const caFile = resolve(dirname(config), `${stem}.ca.pem`);
  for (const f of [config, passwordFile, caFile]) {
    if (!o.force && existsSync(f)) throw new JoinError('refused', `${f} exists; choose another --config, or add --force to overwrite`);
  }
  const password = randomBytes(24).toString('base64url');
  const request = makeJoinRequest(ticket, { agentId, passwordHash: await hashPassword(password), packs });
  const answer = checkJoinAnswer(ticket, request, await post(ticket, request, o.timeoutMs ?? 15_000));

  const packSections: Record<string, unknown> = {};
  for (const p of packs) packSections[p] = { ...(SAFE_PACK_DEFAULTS[p] ?? {}) };
  const withPassword = answer.account !== 'none';
  const doc = {
    version: 1,
    agent: { id: agentId, name: hostname(), kind: 'generic' },
    broker: {
      url: answer.brokerUrl,
      ...(withPassword ? { username: answer.username ?? agentId, passwordFile: `./${basename(passwordFile)}` } : {}),
      root: answer.root,
      ...(answer.ca ? { tls: { ca: `./${basename(caFile)}` } } : {}),
    },
    packs: packSections,
    policy: { approvalRequiredFrom: 'high' },
    approvals: { keys: answer.keys },
    audit: { file: `./${agentId}-audit.jsonl` },
  };
  // the answer passed its proof, but it is still checked as a config before anything is written
  validateConfig(JSON.parse(JSON.stringify(doc)), config, dirname(config));
  const head = `# Written by \`toolmesh-agent join\` on ${new Date().toISOString()} from ${ticket.u}.\n`
    + `# Start it: toolmesh-agent --config ${config}\n# Packs start with safe settings (no images, no paths): edit them here.\n`;
  const written: string[] = [];
  try {
    if (withPassword) { writePrivate(passwordFile, `${password}\n`, o.force === true); written.push(passwordFile); }
    if (answer.ca) { writePrivate(caFile, answer.ca, o.force === true); written.push(caFile); }
    writePrivate(config, head + stringify(doc, { lineWidth: 0 }), o.force === true);
  } catch (e) {
    for (const f of written) try { unlinkSync(f); } catch { /* best effort */ }
    throw e;
  }
  return { config, passwordFile: withPassword ? passwordFile : undefined, caFile: answer.ca ? caFile : undefined, agentId, answer, password };
}
