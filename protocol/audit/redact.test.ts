// Redaction of audit records: key names anywhere nested, known values, tokens, caps.
import { generateKeyPairSync } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { signApproval } from '../approval';
import { REDACTED, Redactor, approvalOf, looksLikeToken } from './redact';

const { privateKey } = generateKeyPairSync('ed25519');
const token = signApproval({ kid: 'k1', privateKey, caller: 'nr', agent: 'pi', tool: 'docker_stop', args: { id: 'x' }, exp: Date.now() + 60_000, approver: 'alice', jti: 'jti-0001-abcdef' });

describe('redaction', () => {
  it('redacts by key name, case-insensitively, anywhere nested', () => {
    const r = new Redactor({ keys: ['pin_code'] });
    const out = r.redact({
      user: 'bob', Password: 'hunter2', nested: { deeper: [{ API_KEY: 'abc', 'X-Api-Key': 'def', ok: 1 }], Authorization: 'Bearer x' },
      db: { connection: { passwd: 'p', host: 'h' } }, refreshToken: 't', sessionCookie: 'c', privateKey: { pem: '...' },
      awsCredentials: ['a'], clientSecret: 's', PinCode: 1234,
    });
    expect(out).toEqual({
      user: 'bob', Password: REDACTED, nested: { deeper: [{ API_KEY: REDACTED, 'X-Api-Key': REDACTED, ok: 1 }], Authorization: REDACTED },
      db: { connection: { passwd: REDACTED, host: 'h' } }, refreshToken: REDACTED, sessionCookie: REDACTED, privateKey: REDACTED,
      awsCredentials: REDACTED, clientSecret: REDACTED, PinCode: REDACTED,
    });
  });

  it('redacts known secret values wherever they occur inside strings', () => {
    const r = new Redactor({ values: ['s3cr3t-broker-pw', 'sk-live-123456', 'pi'] });
    const out = r.redact({ cmd: 'mosquitto_pub -P s3cr3t-broker-pw -t x', list: ['sk-live-123456'], host: 'pi', deep: { a: { b: 'key=sk-live-123456;' } } });
    expect(out).toEqual({ cmd: `mosquitto_pub -P ${REDACTED} -t x`, list: [REDACTED], host: 'pi', deep: { a: { b: `key=${REDACTED};` } } });
    expect(r.redactText('password is s3cr3t-broker-pw')).toBe(`password is ${REDACTED}`);
  });

  it('never keeps an approval token: token-shaped strings are redacted, approvalOf keeps approver, jti, kid', () => {
    const r = new Redactor();
    expect(looksLikeToken(token)).toBe(true);
    expect(JSON.stringify(r.redact({ note: token, list: [token] }))).not.toContain(token.split('.')[1]);
    expect(r.redactText(token)).toBe(REDACTED);
    expect(approvalOf(token)).toEqual({ approver: 'alice', jti: 'jti-0001-abcdef', kid: 'k1' });
    const fromObject = approvalOf({ token, at: 1763884800000 });
    expect(fromObject).toEqual({ approver: 'alice', jti: 'jti-0001-abcdef', kid: 'k1', at: 1763884800000 });
    expect(JSON.stringify(fromObject)).not.toContain(token);
    expect(approvalOf({ approver: 'bob', jti: 'j-1' })).toEqual({ approver: 'bob', jti: 'j-1' });
    expect(approvalOf(undefined)).toBeUndefined();
    expect(approvalOf('not a token')).toBeUndefined();
  });

  it('turns binary, cycles, deep nesting and long strings into plain, bounded JSON', () => {
    const r = new Redactor({ maxString: 10, maxDepth: 3 });
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const out = r.redact({ buf: Buffer.alloc(5), cyclic, deep: { a: { b: { c: 1 } } }, long: 'x'.repeat(25), fn: () => 1, n: NaN, when: new Date(0) });
    expect(out).toEqual({
      buf: '[binary 5 bytes]', cyclic: { a: 1, self: '[circular]' }, deep: { a: { b: '[too deep]' } },
      long: 'xxxxxxxxxx…[15 more chars]', n: 'NaN', when: '1970-01-01T00:00:00.000Z',
    });
  });
});
