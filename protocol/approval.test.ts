import { describe, expect, it } from 'vitest';
import { argsSha256, generateApprovalKeys, signApproval, verifyApproval } from './approval';

const { privateKeyPem, publicKeyPem } = generateApprovalKeys();
const other = generateApprovalKeys();
const keys = new Map([['gate-1', publicKeyPem]]);
const base = { caller: 'nodered-1', agent: 'pi', tool: 'docker_remove_container', args: { container: 'web', force: true } };
const token = (over: Partial<Parameters<typeof signApproval>[0]> = {}) =>
  signApproval({ kid: 'gate-1', privateKey: privateKeyPem, ...base, exp: Date.now() + 60_000, approver: 'alice', ...over });
const check = (t: string, over: Partial<Parameters<typeof verifyApproval>[1]> = {}) => verifyApproval(t, { ...base, keys, skewMs: 30_000, ...over });

describe('approval tokens', () => {
  it('accepts a token for exactly this call, whatever the key order of the arguments', () => {
    const r = check(token(), { args: { force: true, container: 'web' } });
    expect(r).toMatchObject({ ok: true, payload: { v: 1, kid: 'gate-1', approver: 'alice', argsSha256: argsSha256(base.args) } });
  });

  it('refuses each kind of mismatch with its own reason', () => {
    expect(check('garbage')).toMatchObject({ ok: false, refusal: 'malformed' });
    expect(check(token({ kid: 'gate-2' }))).toMatchObject({ ok: false, refusal: 'unknown-key' });
    expect(check(token({ privateKey: other.privateKeyPem }))).toMatchObject({ ok: false, refusal: 'bad-signature' });
    expect(check(token(), { caller: 'someone-else' })).toMatchObject({ ok: false, refusal: 'wrong-caller' });
    expect(check(token(), { agent: 'robot' })).toMatchObject({ ok: false, refusal: 'wrong-agent' });
    expect(check(token(), { tool: 'docker_stop_container' })).toMatchObject({ ok: false, refusal: 'wrong-tool' });
    expect(check(token(), { args: { container: 'db', force: true } })).toMatchObject({ ok: false, refusal: 'arguments-changed' });
    expect(check(token({ exp: Date.now() - 31_000 }))).toMatchObject({ ok: false, refusal: 'expired' });
    expect(check(token({ exp: Date.now() - 10_000 }))).toMatchObject({ ok: true });
    const [payload, sig] = token().split('.');
    const forged = Buffer.from(JSON.stringify({ ...JSON.parse(Buffer.from(payload, 'base64url').toString()), approver: 'mallory' })).toString('base64url');
    expect(check(`${forged}.${sig}`)).toMatchObject({ ok: false, refusal: 'bad-signature' });
  });
});
