/**
 * Decisions on held calls as they arrive: input messages, the HTTP admin endpoint and MQTT
 * payloads, each read into one {@link Decision}. No Node-RED imports.
 */

/** A person's (or a button's) answer to one approval request. */
export interface Decision {
  /**
   * The approval id; undefined: the only waiting call, if exactly one waits and it came from the
   * gate's own input (ApprovalBook.decide refuses it otherwise).
   */
  id?: string;
  approve: boolean;
  /** Who decided (1–256 characters); it is signed into the approval token. */
  approver: string;
  /** Why (shown to the model on a denial); at most {@link MAX_REASON_CHARS} characters. */
  reason?: string;
}

/** A malformed decision: `field` is where, `expected` what it should hold. */
export class DecisionError extends Error {
  constructor(readonly field: string, readonly expected: string, readonly got: string) {
    super(`${field} must be ${expected}, got ${got}`);
    this.name = 'DecisionError';
  }
}

/** Longest approver kept, characters (the token's limit). */
export const MAX_APPROVER_CHARS = 256;
/** Longest reason kept, characters. */
export const MAX_REASON_CHARS = 500;

/** Approver of a message decision that names none. */
export const DEFAULT_MESSAGE_APPROVER = 'flow';
/** Approver of a message decision from a Dashboard 2.0 page (`msg._client`) that names no user. */
export const DEFAULT_DASHBOARD_APPROVER = 'dashboard';
/** Approver of an HTTP decision without adminAuth that names none. */
export const DEFAULT_HTTP_APPROVER = 'admin API';

function kindOf(v: unknown): string {
  return v === null ? 'null' : Array.isArray(v) ? 'array' : typeof v === 'string' ? JSON.stringify(v.slice(0, 40)) : typeof v;
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function text(v: unknown, field: string, max: number): string | undefined {
  if (v === undefined || v === null || v === '') return undefined;
  if (typeof v !== 'string') throw new DecisionError(field, 'a string', kindOf(v));
  const t = v.trim();
  return t ? t.slice(0, max) : undefined;
}

function approveOf(v: unknown, field: string): boolean {
  if (v === true || v === 'true') return true;
  if (v === false || v === 'false') return false;
  throw new DecisionError(field, 'true or false', kindOf(v));
}

function idOf(v: unknown, field: string): string {
  if (typeof v !== 'string' || v.trim() === '') throw new DecisionError(field, 'an approval id (a non-empty string)', kindOf(v));
  return v.trim();
}

/**
 * The logged-in user of a Dashboard 2.0 message's `msg._client`, when a plugin put one there:
 * Dashboard 2.0 itself adds only `{ socketId, socketIp }` (nodes/utils/index.js
 * addConnectionCredentials, with "Include client data" on); the FlowFuse user addon
 * (@flowfuse/node-red-dashboard-2-user-addon, from FlowFuse's login) adds
 * `user: { userId, username, email, name, image }`. httpNodeAuth adds nothing. The first
 * non-empty string of `username`, `name`, `email`, `userId` (or `user` itself, a string), cut to
 * {@link MAX_APPROVER_CHARS}; undefined otherwise.
 */
export function dashboardUser(client: unknown): string | undefined {
  if (!isObject(client)) return undefined;
  const u = client.user;
  if (typeof u === 'string') return u.trim().slice(0, MAX_APPROVER_CHARS) || undefined;
  if (!isObject(u)) return undefined;
  for (const key of ['username', 'name', 'email', 'userId']) {
    const v = u[key];
    if (typeof v === 'string' && v.trim()) return v.trim().slice(0, MAX_APPROVER_CHARS);
  }
  return undefined;
}

/**
 * Who a message decision records: for a message from a Dashboard 2.0 page (`msg._client` an
 * object), its logged-in user ({@link dashboardUser}; a different named approver is kept beside
 * it, as `"<approver> (via <user>)"`), else the named approver, else
 * {@link DEFAULT_DASHBOARD_APPROVER}; for any other message the named approver, else
 * {@link DEFAULT_MESSAGE_APPROVER}.
 */
function messageApprover(named: string | undefined, client: unknown): string {
  if (!isObject(client)) return named ?? DEFAULT_MESSAGE_APPROVER;
  const user = dashboardUser(client);
  if (!user) return named ?? DEFAULT_DASHBOARD_APPROVER;
  return named && named !== user ? `${named} (via ${user})`.slice(0, MAX_APPROVER_CHARS) : user;
}

/**
 * The decision an input message carries, or `undefined` when it carries none:
 * - `msg.approval = { id, approve, approver?, reason? }`;
 * - else, when the message has no `msg.toolCall`, `msg.topic` `approve` or `deny` with
 *   `msg.payload` the approval id (a string, or an object with `approvalId`, such as a request's
 *   payload sent back); any other payload (empty, a timestamp) is a decision without an id (it
 *   settles the only waiting call, see ApprovalBook.decide). `msg.approver` and `msg.reason` are optional.
 * The approver defaults to {@link DEFAULT_MESSAGE_APPROVER}; for a message from a Dashboard 2.0
 * page (`msg._client`) it is the page's logged-in user, or {@link DEFAULT_DASHBOARD_APPROVER}
 * (see {@link messageApprover}).
 * @throws DecisionError for a malformed `msg.approval` (or a non-string approver/reason).
 */
export function messageDecision(msg: Record<string, unknown>): Decision | undefined {
  if (msg.approval !== undefined) {
    const a = msg.approval;
    if (!isObject(a)) throw new DecisionError('msg.approval', 'an object { id, approve, approver?, reason? }', kindOf(a));
    return {
      id: idOf(a.id, 'msg.approval.id'),
      approve: approveOf(a.approve, 'msg.approval.approve'),
      approver: messageApprover(text(a.approver, 'msg.approval.approver', MAX_APPROVER_CHARS), msg._client),
      reason: text(a.reason, 'msg.approval.reason', MAX_REASON_CHARS),
    };
  }
  if (msg.toolCall !== undefined || (msg.topic !== 'approve' && msg.topic !== 'deny')) return undefined;
  const p = msg.payload;
  const id = typeof p === 'string' && p.trim() ? p.trim()
    : isObject(p) && p.approvalId !== undefined ? idOf(p.approvalId, 'msg.payload.approvalId')
    : undefined;
  return {
    id,
    approve: msg.topic === 'approve',
    approver: messageApprover(text(msg.approver, 'msg.approver', MAX_APPROVER_CHARS), msg._client),
    reason: text(msg.reason, 'msg.reason', MAX_REASON_CHARS),
  };
}

/**
 * The decision of `POST .../approvals/:approvalId` with body `{ approve, approver?, reason? }`
 * (`approve` may be the strings `true`/`false`, as HTML forms send); `id` undefined for
 * `POST .../approvals` (a decision without an id: the only waiting call, see ApprovalBook.decide). The approver is the logged-in
 * admin user when Node-RED has adminAuth (`user`); a different `approver` in the body is kept
 * beside it, as `"<approver> (via <user>)"`, so nobody signs in another person's name alone.
 * Without adminAuth it is the body's `approver`, else {@link DEFAULT_HTTP_APPROVER}.
 * @throws DecisionError for a malformed body.
 */
export function httpDecision(id: string | undefined, body: unknown, user?: string): Decision {
  if (!isObject(body)) throw new DecisionError('the request body', 'a JSON object { approve, approver?, reason? }', kindOf(body));
  const named = text(body.approver, 'approver', MAX_APPROVER_CHARS);
  const approver = user
    ? (named && named !== user ? `${named} (via ${user})`.slice(0, MAX_APPROVER_CHARS) : user)
    : named ?? DEFAULT_HTTP_APPROVER;
  return { id: id === undefined ? undefined : idOf(id, 'approvalId'), approve: approveOf(body.approve, 'approve'), approver, reason: text(body.reason, 'reason', MAX_REASON_CHARS) };
}

/**
 * The decision of an MQTT message on the approval topic: JSON `{ id, approve, approver?, reason? }`,
 * or the plain text `approve` / `deny` (any case, also as a JSON string), as a physical button
 * sends: a decision without an id (the only waiting call, see ApprovalBook.decide). The approver defaults to `mqtt:<topic>`.
 * @throws DecisionError for anything else.
 */
export function mqttDecision(payload: string, topic: string): Decision {
  const approver = `mqtt:${topic}`.slice(0, MAX_APPROVER_CHARS);
  let value: unknown = payload.trim();
  try {
    value = JSON.parse(payload);
  } catch {
    // plain text: approve / deny
  }
  if (typeof value === 'string') {
    const word = value.trim().toLowerCase();
    if (word === 'approve' || word === 'deny') return { approve: word === 'approve', approver };
    throw new DecisionError('the MQTT payload', '"approve", "deny" or JSON { id, approve, approver?, reason? }', kindOf(value));
  }
  if (!isObject(value)) throw new DecisionError('the MQTT payload', '"approve", "deny" or JSON { id, approve, approver?, reason? }', kindOf(value));
  return {
    id: idOf(value.id, 'id'),
    approve: approveOf(value.approve, 'approve'),
    approver: text(value.approver, 'approver', MAX_APPROVER_CHARS) ?? approver,
    reason: text(value.reason, 'reason', MAX_REASON_CHARS),
  };
}
