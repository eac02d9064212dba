import { describe, expect, it } from 'vitest';
import { emptyCodeBook, issueCode, normaliseCode, useCode } from './one-time-code';

describe('one-time codes', () => {
  it('are 8 Crockford base-32 characters shown as XXXX-XXXX, typed in any case, with or without the dash', () => {
    const book = emptyCodeBook();
    const { code } = issueCode(book);
    expect(code).toMatch(/^[0-9A-HJKMNP-TV-Z]{4}-[0-9A-HJKMNP-TV-Z]{4}$/);
    expect(JSON.stringify(book)).not.toContain(code.replace('-', ''));
    expect(useCode(book, ` ${code.toLowerCase().replace('-', ' ')} `)).toEqual({ ok: true });
    expect(normaliseCode('o1l-I')).toBe('0111');
  });

  it('work once and expire', () => {
    const book = emptyCodeBook();
    const { code } = issueCode(book, { now: 1000, ttlMs: 100 });
    expect(useCode(book, code, { now: 1050 })).toEqual({ ok: true });
    expect(useCode(book, code, { now: 1060 })).toMatchObject({ ok: false, reason: 'none-outstanding' });
    const { code: late } = issueCode(book, { now: 2000, ttlMs: 100 });
    expect(useCode(book, late, { now: 2100 })).toMatchObject({ ok: false, reason: 'none-outstanding' });
  });

  it('void every outstanding code after five wrong attempts; a new code starts the count again', () => {
    const book = emptyCodeBook();
    const a = issueCode(book).code;
    const b = issueCode(book).code;
    const left = [1, 2, 3, 4].map(() => (useCode(book, 'WRONG-000') as { attemptsLeft: number }).attemptsLeft);
    expect(left).toEqual([4, 3, 2, 1]);
    expect(useCode(book, 'WRONG-000')).toMatchObject({ ok: false, reason: 'too-many-failures' });
    expect(useCode(book, a)).toMatchObject({ ok: false, reason: 'too-many-failures' });
    expect(useCode(book, b)).toMatchObject({ ok: false });
    const c = issueCode(book).code;
    expect(useCode(book, c)).toEqual({ ok: true });
  });

  it('keep at most five outstanding, dropping the oldest', () => {
    const book = emptyCodeBook();
    const codes = Array.from({ length: 6 }, () => issueCode(book).code);
    expect(book.codes).toHaveLength(5);
    expect(useCode(book, codes[0])).toMatchObject({ ok: false, reason: 'wrong' });
    expect(useCode(book, codes[5])).toEqual({ ok: true });
  });
});
