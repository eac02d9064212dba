import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import {
  JOIN_PREFIX, JoinCodeBook, JoinError, MAX_FAILURES_PER_MINUTE, MAX_PROOF_FAILURES, checkJoinAnswer, encodeJoinString, makeJoinRequest,
  parseJoinRequest, parseJoinString, signJoinAnswer, type JoinAnswer,
} from './join';

const HASH = '$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0c2FsdA$a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5a2V5';

function setup(now = () => 1_000_000_000_000) {
  const book = new JoinCodeBook(now);
  const issued = book.issue({ owner: 'reg1', nodeRedUrl: 'http://127.0.0.1:1880/', brokerUrl: 'mqtt://127.0.0.1:1883', agentId: 'pi' });
  const ticket = parseJoinString(issued.joinString, now());
  return { book, issued, ticket };
}

const answerOf = (agentId: string): Omit<JoinAnswer, 'proof'> => ({
  agentId, username: agentId, brokerUrl: 'mqtt://127.0.0.1:1883', root: 'toolmesh/v1', keys: { 'gate-1': 'PEM' }, account: 'added',
});

describe('join strings', () => {
  it('carry the URLs, a 12-character code id, a 128-bit secret and the expiry; the book keeps no secret', () => {
    const { book, issued, ticket } = setup();
    expect(issued.joinString.startsWith(JOIN_PREFIX)).toBe(true);
    expect(ticket).toMatchObject({ u: 'http://127.0.0.1:1880', b: 'mqtt://127.0.0.1:1883', a: 'pi', x: Math.floor(issued.expiresAt / 1000) });
    expect(ticket.i).toHaveLength(12);
    expect(Buffer.from(ticket.s, 'base64url')).toHaveLength(16);
    expect(JSON.stringify([...(book as unknown as { codes: Map<string, unknown> }).codes.values()])).not.toContain(ticket.s);
    // pasted with line breaks from a terminal
    expect(parseJoinString(issued.joinString.replace(/(.{40})/g, '$1\n  '), 1_000_000_000_000)).toEqual(ticket);
  });

  it('are refused naming the field when malformed, and as expired past x', () => {
    expect(() => parseJoinString('tmjoin2.abc')).toThrow(/start with tmjoin1/);
    const bad = encodeJoinString({ u: 'ftp://x', i: 'abcdefghijkl', s: 'A'.repeat(22), b: 'mqtt://h:1', x: 9e9 });
    expect(() => parseJoinString(bad)).toThrow(/^join string: u: expected an http/);
    const userInfo = encodeJoinString({ u: 'http://x', i: 'abcdefghijkl', s: 'A'.repeat(22), b: 'mqtt://u:p@h:1', x: 9e9 });
    expect(() => parseJoinString(userInfo)).toThrow(/b: expected a broker URL/);
    const old = encodeJoinString({ u: 'http://x', i: 'abcdefghijkl', s: 'A'.repeat(22), b: 'mqtt://h:1', x: 100 });
    expect(() => parseJoinString(old)).toThrow(expect.objectContaining({ code: 'expired' }));
  });
});

describe('join exchange', () => {
  it('a right proof redeems the code once and the device accepts the signed answer', async () => {
    const { book, ticket } = setup();
    const req = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: ['system'] });
    const v = await book.redeem(req, async (c) => signJoinAnswer(c.key, req.nonce, answerOf(req.agentId)));
    expect(v.ok).toBe(true);
    if (!v.ok) return;
    expect(v.brokerUrl).toBe('mqtt://127.0.0.1:1883');
    expect(checkJoinAnswer(ticket, req, JSON.parse(JSON.stringify(v.value)))).toMatchObject({ agentId: 'pi', keys: { 'gate-1': 'PEM' } });
    // reuse: the code is spent
    const again = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    expect(await book.redeem(again, async () => 1)).toMatchObject({ ok: false, status: 410, error: expect.stringMatching(/used already/) });
  });

  it('the device refuses a tampered answer: another broker, another key, another nonce or agent', async () => {
    const { book, ticket } = setup();
    const req = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    const v = await book.redeem(req, async (c) => signJoinAnswer(c.key, req.nonce, answerOf('pi')));
    if (!v.ok) throw new Error('not redeemed');
    const good = v.value;
    const tampered: JoinAnswer[] = [
      { ...good, brokerUrl: 'mqtt://10.6.6.6:1883' },
      { ...good, keys: { ...good.keys, evil: 'PEM2' } },
      { ...good, ca: '-----BEGIN CERTIFICATE-----' },
      { ...good, account: 'none' },
    ];
    for (const t of tampered) expect(() => checkJoinAnswer(ticket, req, t)).toThrow(expect.objectContaining({ code: 'wrong-proof' }));
    // a replayed answer for another request (other nonce) fails too
    const other = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    expect(() => checkJoinAnswer(ticket, other, good)).toThrow(JoinError);
    // an answer signed with another secret (a server that never saw the join string)
    const forged = signJoinAnswer(Buffer.alloc(32, 7), req.nonce, answerOf('pi'));
    expect(() => checkJoinAnswer(ticket, req, forged)).toThrow(/proof does not match/);
  });

  it('a wrong secret is refused; five wrong proofs void the code', async () => {
    const { book, ticket } = setup();
    let used = 0;
    for (let k = 0; k < MAX_PROOF_FAILURES; k++) {
      const req = makeJoinRequest({ ...ticket, s: `wrong${k}`.padEnd(22, 'x') }, { agentId: 'pi', passwordHash: HASH, packs: [] });
      expect(await book.redeem(req, async () => ++used)).toMatchObject({ ok: false, status: 403, error: 'proof: does not match the join string' });
    }
    const right = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    expect(await book.redeem(right, async () => ++used)).toMatchObject({ ok: false, status: 410 });
    expect(used).toBe(0);
  });

  it('a changed request field breaks the proof (the hash cannot be swapped on the way)', async () => {
    const { book, ticket } = setup();
    const req = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    const swapped = { ...req, passwordHash: HASH.replace('a2V5', 'ZXZp') };
    expect(await book.redeem(swapped, async () => 1)).toMatchObject({ ok: false, status: 403 });
    expect(await book.redeem({ ...req, agentId: 'other' }, async () => 1)).toMatchObject({ ok: false, status: 403 });
    expect(await book.redeem(req, async () => 1)).toMatchObject({ ok: true });
  });

  it('codes expire after 10 minutes', async () => {
    let t = 1_000_000_000_000;
    const { book, ticket } = setup(() => t);
    t += 10 * 60_000;
    expect(() => parseJoinString(encodeJoinString(ticket), t)).toThrow(/expired/);
    const req = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    expect(await book.redeem(req, async () => 1)).toMatchObject({ ok: false, status: 410, error: expect.stringMatching(/expired/) });
  });

  it(`more than ${MAX_FAILURES_PER_MINUTE} failures a minute answer 429 with a retry time, also for a right proof, until the minute passes`, async () => {
    let t = 1_000_000_000_000;
    const { book, ticket } = setup(() => t);
    for (let k = 0; k < MAX_FAILURES_PER_MINUTE; k++) {
      const req = makeJoinRequest({ ...ticket, i: `unknown${k}`.padEnd(12, 'x') }, { agentId: 'pi', passwordHash: HASH, packs: [] });
      expect(await book.redeem(req, async () => 1)).toMatchObject({ ok: false, status: 410 });
      t += 1000;
    }
    const right = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: [] });
    const v = await book.redeem(right, async () => 1);
    expect(v).toMatchObject({ ok: false, status: 429 });
    expect((v as { retryAfterSec: number }).retryAfterSec).toBeGreaterThanOrEqual(49);
    t += 51_000;
    expect(await book.redeem(right, async () => 1)).toMatchObject({ ok: true });
  });
});

describe('the join body parser', () => {
  it('names the field', () => {
    expect(parseJoinRequest({ i: 'abcdefghijkl', agentId: 'a b', passwordHash: HASH, nonce: 'n'.repeat(22), proof: 'p'.repeat(43) }))
      .toEqual({ ok: false, error: expect.stringMatching(/^agentId: expected an agent id/) });
    expect(parseJoinRequest({ i: 'abcdefghijkl', agentId: 'a', passwordHash: 'plain', nonce: 'n'.repeat(22), proof: 'p'.repeat(43), x: 1 }))
      .toEqual({ ok: false, error: expect.stringMatching(/passwordHash: expected an scrypt hash.*unknown key\(s\) x/) });
    // a join string's holder cannot make every login of its id cost a gigabyte of scrypt
    const dear = HASH.replace(/^\$scrypt\$ln=\d+,r=\d+,p=\d+\$/, '$scrypt$ln=20,r=8,p=1$');
    expect(dear).not.toBe(HASH);
    expect(parseJoinRequest({ i: 'abcdefghijkl', agentId: 'a', passwordHash: dear, nonce: 'n'.repeat(22), proof: 'p'.repeat(43) }))
      .toEqual({ ok: false, error: expect.stringMatching(/^passwordHash: expected an scrypt hash of at most the agent's own cost \(ln=14, r=8, p=1\)/) });
    expect(parseJoinRequest({ i: 'abcdefghijkl', agentId: 'a', passwordHash: HASH, nonce: 'n'.repeat(22), proof: 'p'.repeat(43) })).toMatchObject({ ok: true });
    expect(parseJoinRequest({ i: 'a', pad: 'x'.repeat(20_000) })).toEqual({ ok: false, error: expect.stringMatching(/larger than/) });
    expect(parseJoinRequest([1])).toEqual({ ok: false, error: '(body): expected a JSON object' });
  });

  it('never throws on any JSON value and accepts only well-formed requests', () => {
    const { ticket } = setup();
    const good = makeJoinRequest(ticket, { agentId: 'pi', passwordHash: HASH, packs: ['docker'] });
    fc.assert(fc.property(fc.jsonValue({ maxDepth: 60 }), (v) => {
      const r = parseJoinRequest(v);
      if (r.ok) expect(r.value).toMatchObject({ agentId: expect.any(String), proof: expect.any(String) });
      else expect(r.error.length).toBeGreaterThan(0);
    }), { numRuns: 500 });
    // mutations of a good body: either still well-formed or refused with a named field
    fc.assert(fc.property(fc.constantFrom(...Object.keys(good)), fc.jsonValue({ maxDepth: 3 }), (key, value) => {
      const r = parseJoinRequest({ ...good, [key]: value });
      if (!r.ok) expect(r.error).toMatch(new RegExp(`^${key}[.:]|^\\(body\\)`));
    }), { numRuns: 500 });
    expect(parseJoinRequest(good)).toEqual({ ok: true, value: good });
  });
});
