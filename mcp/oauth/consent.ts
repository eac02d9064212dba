/**
 * The consent page of the bridge's OAuth server: a person sees which client asks (its registered
 * name, escaped, its client_id and redirect URI) and what it could call, gives it a label, and
 * approves by typing a pairing code from `toolmesh mcp pair`.
 *
 * - Plain HTML and one form: no JavaScript, no outside resources; readable on a phone.
 * - Cannot be framed: `Content-Security-Policy: frame-ancestors 'none'` and `X-Frame-Options: DENY`
 *   (clickjacking).
 * - Refuses cross-site form posts (CSRF): the POST must carry the consent's random id and a
 *   double-submit value that is also in a `SameSite=Strict` cookie set with the page, and a
 *   browser's `Origin` / `Sec-Fetch-Site` must say the post came from this page's origin.
 * - Everything a client chose (name, redirect URI) is HTML-escaped.
 * - Wrong pairing codes: {@link PAIRING_FAILURES_PER_ADDRESS} per client address per 10 minutes, then
 *   that address is refused without a check; the state file voids every code after
 *   `PAIRING_MAX_FAILURES` from all addresses together (mcp/oauth/provider.ts).
 */
import type { IncomingMessage } from 'node:http';
import type { Request, Response } from 'express';
import type { OAuthClientInformationFull } from '@modelcontextprotocol/sdk/shared/auth.js';
import { readBody } from '../body';
import { LABEL_PATTERN } from '../identity';
import { CONSENT_TTL_MS, PAIRING_FAILURES_PER_ADDRESS, type BridgeOAuthProvider, type PendingConsent } from './provider';
import type { ClientRecord } from './state';

/** Largest consent form body, bytes. */
const MAX_FORM_BYTES = 8192;

/** `&<>"'` escaped for HTML text and attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** A label suggestion from a client's registered name: `Home Assistant` → `home-assistant`. */
export function suggestLabel(name: string | undefined): string {
  const s = (name ?? '').toLowerCase().replace(/[^a-z0-9_.-]+/g, '-').replace(/^-+|-+$/g, '').slice(0, 64);
  return s || 'client';
}

function cookieName(consent: PendingConsent): string {
  return `tm_consent_${consent.id.slice(0, 16)}`;
}

/** What the page needs besides the consent. */
export interface ConsentPageContext {
  /** Lines saying what the client could call as `label` (the MCP tool names it would be offered, and the label rules). */
  access: (clientId: string, label: string) => string[];
  /** Whether the page is served over HTTPS (the cookie is then `Secure`). */
  secure: boolean;
}

/**
 * Writes the consent page (status 200, or 400 with `problem` shown).
 */
export function renderConsentPage(res: Response, ctx: ConsentPageContext, consent: PendingConsent, client: OAuthClientInformationFull, record: ClientRecord | undefined, problem?: string, typedLabel?: string): void {
  const name = client.client_name ?? '(no name given)';
  const label = typedLabel ?? record?.label ?? suggestLabel(client.client_name);
  const access = ctx.access(client.client_id, label);
  const redirect = consent.params.redirectUri;
  const redirectOrigin = new URL(redirect).origin;
  res.status(problem ? 400 : 200);
  res.setHeader('Content-Type', 'text/html; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Frame-Options', 'DENY');
  res.setHeader('X-Content-Type-Options', 'nosniff');
  // not no-referrer: with it browsers send `Origin: null` on the form's POST (Fetch, "serializing a
  // request origin"), which the CSRF check refuses; same-origin still sends no Referer to the client
  res.setHeader('Referrer-Policy', 'same-origin');
  // form-action must also allow where the answer redirects: browsers check the redirect of a form post
  res.setHeader('Content-Security-Policy', `default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self' ${redirectOrigin}`);
  res.setHeader('Set-Cookie', `${cookieName(consent)}=${consent.csrf}; Path=/consent; HttpOnly; SameSite=Strict; Max-Age=600${ctx.secure ? '; Secure' : ''}`);
  const e = escapeHtml;
  res.end(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Allow ${e(name)} to use ToolMesh?</title>
<style>
body{font:16px/1.45 system-ui,sans-serif;margin:0;padding:16px;background:#f6f7f9;color:#1d2430}
main{max-width:560px;margin:0 auto;background:#fff;border:1px solid #d5d9e0;border-radius:8px;padding:16px 20px}
h1{font-size:1.3em;margin:0 0 12px}dt{font-weight:600;margin-top:8px}dd{margin:2px 0 0;overflow-wrap:anywhere}dd code{word-break:break-all}
ul{padding-left:20px;margin:4px 0;max-height:240px;overflow:auto}label{display:block;font-weight:600;margin-top:14px}
input{font:inherit;width:100%;box-sizing:border-box;padding:10px;border:1px solid #9aa3b2;border-radius:6px;margin-top:4px}
.problem{background:#fdecea;border:1px solid #e0a39d;padding:10px;border-radius:6px;margin:0 0 12px}
.hint{font-size:.9em;color:#4a5568;margin:4px 0 0}.buttons{display:flex;gap:12px;margin-top:18px;flex-wrap:wrap}
button{font:inherit;padding:10px 18px;border-radius:6px;border:1px solid #1d4ed8;background:#1d4ed8;color:#fff;min-width:120px}
button.deny{background:#fff;color:#1d2430;border-color:#9aa3b2}
</style></head>
<body><main>
<h1>Allow <q>${e(name)}</q> to use the tools of your mesh?</h1>
${problem ? `<p class="problem" role="alert">${e(problem)}</p>` : ''}
<p>An MCP client asks to sign in to this ToolMesh bridge. Approve only a client you are setting up yourself right now.</p>
<dl>
<dt>Name it gave itself</dt><dd>${e(name)}</dd>
<dt>Client id</dt><dd><code>${e(client.client_id)}</code></dd>
<dt>It will be sent back to</dt><dd><code>${e(redirect)}</code></dd>
<dt>What it could call</dt><dd><ul>${access.map((l) => `<li>${e(l)}</li>`).join('') || '<li>nothing the bridge offers now</li>'}</ul>
<p class="hint">High-risk tools still need a person's approval for every call.</p></dd>
</dl>
<form method="post" action="/consent">
<input type="hidden" name="consent" value="${e(consent.id)}">
<input type="hidden" name="csrf" value="${e(consent.csrf)}">
<label for="label">Label for this client</label>
<input id="label" name="label" value="${e(label)}" required maxlength="64" pattern="[A-Za-z0-9_.\\-]{1,64}" autocomplete="off" autocapitalize="none" spellcheck="false">
<p class="hint">How audits, approvals and <code>toolmesh mcp clients</code> name it, and what <code>--client-allow</code> rules match (letters, digits, <code>_ . -</code>).</p>
<label for="pairing">Pairing code</label>
<input id="pairing" name="pairing_code" required maxlength="20" autocomplete="one-time-code" autocapitalize="characters" spellcheck="false" placeholder="XXXX-XXXX">
<p class="hint">Run <code>toolmesh mcp pair</code> where the bridge runs (or read it in <code>npm start</code>'s summary); it is valid 10 minutes, once.</p>
<div class="buttons"><button type="submit" name="decision" value="allow">Allow</button>
<button type="submit" name="decision" value="deny" class="deny" formnovalidate>Deny</button></div>
</form>
</main></body></html>`);
}

async function readForm(req: IncomingMessage): Promise<URLSearchParams | undefined> {
  const text = await readBody(req, MAX_FORM_BYTES);
  return text === undefined ? undefined : new URLSearchParams(text);
}

function cookies(req: IncomingMessage): Map<string, string> {
  const out = new Map<string, string>();
  for (const part of (req.headers.cookie ?? '').split(';')) {
    const at = part.indexOf('=');
    if (at > 0) out.set(part.slice(0, at).trim(), part.slice(at + 1).trim());
  }
  return out;
}

function plain(res: Response, status: number, text: string): void {
  res.status(status).setHeader('Content-Type', 'text/plain; charset=utf-8');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Frame-Options', 'DENY');
  res.end(text);
}

function redirectTo(res: Response, uri: string, params: Record<string, string | undefined>): void {
  const u = new URL(uri);
  for (const [k, v] of Object.entries(params)) if (v !== undefined) u.searchParams.set(k, v);
  res.setHeader('Cache-Control', 'no-store');
  res.redirect(303, u.href);
}

/**
 * The handler of `POST /consent`: checks origin, consent id and CSRF value, then denies (redirect
 * with `error=access_denied`) or approves with the pairing code (redirect with `code` and
 * `state`); a wrong code or label shows the page again with the problem.
 * @param origins the origins this bridge is reached at (`http://127.0.0.1:8765`, …).
 */
export function consentHandler(provider: BridgeOAuthProvider, ctx: ConsentPageContext, origins: string[], onApproved?: (clientId: string, label: string) => void) {
  /** Wrong pairing codes per client address in the current window (in memory; at most 10,000 addresses). */
  const failures = new Map<string, { count: number; until: number }>();
  const failuresOf = (addr: string) => {
    const f = failures.get(addr);
    if (f && f.until > Date.now()) return f;
    failures.delete(addr);
    return undefined;
  };
  return async (req: Request, res: Response): Promise<void> => {
    const site = req.headers['sec-fetch-site'];
    if (typeof site === 'string' && site !== 'same-origin') return plain(res, 403, 'refused: the consent form must be sent from the consent page itself (Sec-Fetch-Site)');
    const origin = req.headers.origin;
    if (typeof origin === 'string' && !origins.includes(origin)) return plain(res, 403, 'refused: the consent form must be sent from the consent page itself (Origin)');
    const form = await readForm(req);
    if (!form) return plain(res, 413, `the form is larger than ${MAX_FORM_BYTES} bytes`);
    const consent = provider.consent(form.get('consent') ?? '');
    if (!consent) return plain(res, 400, 'this consent page has expired or was already answered; start the sign-in again from the client');
    const csrf = form.get('csrf') ?? '';
    if (csrf !== consent.csrf || cookies(req).get(cookieName(consent)) !== consent.csrf) {
      return plain(res, 403, 'refused: the consent form did not come from the page this browser was shown (CSRF check); start the sign-in again');
    }
    const client = provider.clientsStore.getClient(consent.clientId) as OAuthClientInformationFull | undefined;
    if (!client) {
      provider.endConsent(consent.id);
      return plain(res, 400, 'this client was revoked or its registration expired; start the sign-in again from the client');
    }
    const { redirectUri, state } = consent.params;
    if (form.get('decision') !== 'allow') {
      provider.endConsent(consent.id);
      return redirectTo(res, redirectUri, { error: 'access_denied', error_description: 'the owner denied the sign-in', state });
    }
    const label = (form.get('label') ?? '').trim();
    if (!LABEL_PATTERN.test(label)) {
      return renderConsentPage(res, ctx, consent, client, undefined, 'The label must be 1–64 letters, digits, "_", "." or "-".', label.slice(0, 64));
    }
    const addr = req.socket.remoteAddress ?? '?';
    if ((failuresOf(addr)?.count ?? 0) >= PAIRING_FAILURES_PER_ADDRESS) {
      return renderConsentPage(res, ctx, consent, client, undefined, `Too many wrong pairing codes from this address (${PAIRING_FAILURES_PER_ADDRESS}); try again in 10 minutes.`, label);
    }
    const got = provider.approve(consent, form.get('pairing_code') ?? '', label);
    if (!('code' in got) && !('revoked' in got) && got.reason !== 'none-outstanding') {
      const f = failuresOf(addr) ?? { count: 0, until: Date.now() + CONSENT_TTL_MS };
      f.count += 1;
      failures.delete(addr);
      failures.set(addr, f);
      while (failures.size > 10_000) failures.delete(failures.keys().next().value!);
    }
    if ('code' in got) {
      onApproved?.(consent.clientId, label);
      return redirectTo(res, redirectUri, { code: got.code, state });
    }
    if ('revoked' in got) {
      provider.endConsent(consent.id);
      return plain(res, 400, 'this client was revoked; it cannot sign in');
    }
    const mine = PAIRING_FAILURES_PER_ADDRESS - (failuresOf(addr)?.count ?? 0);
    const left = Math.min(mine, got.attemptsLeft);
    const problem = got.reason === 'wrong'
      ? `That pairing code is wrong or expired; ${left} attempt${left === 1 ? '' : 's'} left${left === got.attemptsLeft ? ' before every outstanding code is void' : ' from this address'}.`
      : got.reason === 'too-many-failures'
        ? 'Too many wrong pairing codes: every outstanding code is void. Run "toolmesh mcp pair" for a new one.'
        : 'No pairing code is outstanding (they last 10 minutes and work once). Run "toolmesh mcp pair" for a new one.';
    return renderConsentPage(res, ctx, consent, client, undefined, problem, label);
  };
}
