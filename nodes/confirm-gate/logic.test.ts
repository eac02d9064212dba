// The confirm-gate's logic without Node-RED: summaries, decisions, settings, keys and the book of
// pending approvals (ids, single use, timeouts, closing).
import { afterEach, describe, expect, it, vi } from 'vitest';
import { parse } from 'yaml';
import { generateApprovalKeys } from '../../protocol';
import { ApprovalBook, BookFullError, MAX_LISTED_IDS, deniedResult, type Outcome } from './approvals';
import { DecisionError, httpDecision, messageDecision, mqttDecision } from './decisions';
import { agentKeySnippet, normalizePem, readSigningKey } from './keys';
import { defaultKid, higherRisk, isHeld, isTopicFilter, readGateSettings } from './settings';
import { summarizeCall } from './summary';
import { approvalIdOf, readApprovalRequest } from './remote-requests';
import { deepArrayJson } from '../../test/support/nodes-faults';

describe('summarizeCall', () => {
  it('reads verb, object and the argument the object names', () => {
    expect(summarizeCall('pi', 'docker_restart_container', { container: 'homeassistant' })).toBe('Restart container homeassistant on pi');
    expect(summarizeCall('pi', 'docker_remove_container', { container: 'web', force: true })).toBe('Remove container web on pi with force: true');
  });

  it('falls back to common naming arguments, and lists the rest', () => {
    expect(summarizeCall('desktop', 'delete_directory', { path: '/home/ann/old' })).toBe('Delete directory /home/ann/old on desktop');
    expect(summarizeCall('pi', 'docker_run_container', { image: 'nginx', name: 'web' })).toBe('Run container web on pi with image: nginx');
    expect(summarizeCall('robot', 'drive', { speed: 0.5, durationMs: 2000 })).toBe('Drive on robot with speed: 0.5, durationMs: 2000');
  });

  it('says "Run <tool> on <agent> with <args>" when the name has no known verb', () => {
    expect(summarizeCall('pi', 'diag_echo', { text: 'hello world' })).toBe('Run diag_echo on pi with text: "hello world"');
    expect(summarizeCall('pi', 'reboot_now', {})).toBe('Reboot now on pi');
    expect(summarizeCall('pi', 'mystery', {})).toBe('Run mystery on pi');
  });

  it('keeps long values and summaries short', () => {
    const s = summarizeCall('pi', 'write_file', { path: '/tmp/x', content: 'y'.repeat(1000) });
    expect(s.length).toBeLessThanOrEqual(300);
    expect(s).toMatch(/^Write file \/tmp\/x on pi with content: y+…$/);
  });
});

describe('decisions', () => {
  it('msg.approval, with the approver defaulting to "flow"', () => {
    expect(messageDecision({ approval: { id: 'a1', approve: true, approver: 'alice' } })).toEqual({ id: 'a1', approve: true, approver: 'alice', reason: undefined });
    expect(messageDecision({ approval: { id: 'a1', approve: false, reason: ' not now ' } })).toEqual({ id: 'a1', approve: false, approver: 'flow', reason: 'not now' });
    expect(() => messageDecision({ approval: { id: 'a1', approve: 'yes' } })).toThrow(DecisionError);
    expect(() => messageDecision({ approval: { approve: true } })).toThrow(/msg.approval.id must be an approval id/);
    expect(() => messageDecision({ approval: 'a1' })).toThrow(/msg.approval must be an object/);
  });

  it('msg.topic approve/deny: an id, a request payload, or the oldest', () => {
    expect(messageDecision({ topic: 'approve', payload: 'a1', approver: 'bob' })).toMatchObject({ id: 'a1', approve: true, approver: 'bob' });
    expect(messageDecision({ topic: 'deny', payload: { approvalId: 'a2', summary: 'x' } })).toMatchObject({ id: 'a2', approve: false });
    expect(messageDecision({ topic: 'approve', payload: 1700000000000 })).toMatchObject({ id: undefined, approve: true, approver: 'flow' });
  });

  it('from a Dashboard 2.0 page (msg._client): its logged-in user, else the named approver, else "dashboard"', () => {
    const page = { socketId: 's1', socketIp: '127.0.0.1' };
    expect(messageDecision({ topic: 'approve', payload: 'a1', _client: page })).toMatchObject({ approver: 'dashboard' });
    expect(messageDecision({ topic: 'approve', payload: 'a1', approver: 'bob', _client: page })).toMatchObject({ approver: 'bob' });
    // the FlowFuse user addon's user: username, else name, email, userId
    expect(messageDecision({ topic: 'approve', payload: 'a1', _client: { ...page, user: { userId: 'u1', username: 'alice', name: 'Alice', email: 'a@x' } } })).toMatchObject({ approver: 'alice' });
    expect(messageDecision({ topic: 'deny', payload: 'a1', _client: { ...page, user: { userId: 'u1', name: ' Alice A. ', email: 'a@x' } } })).toMatchObject({ approver: 'Alice A.' });
    expect(messageDecision({ topic: 'deny', payload: 'a1', _client: { ...page, user: { userId: 'u1', email: 'a@x' } } })).toMatchObject({ approver: 'a@x' });
    expect(messageDecision({ topic: 'deny', payload: 'a1', _client: { ...page, user: { userId: 'u1' } } })).toMatchObject({ approver: 'u1' });
    expect(messageDecision({ topic: 'deny', payload: 'a1', _client: { ...page, user: { image: 'x.png', username: 7 } } })).toMatchObject({ approver: 'dashboard' });
    // nobody signs in another person's name alone
    expect(messageDecision({ approval: { id: 'a1', approve: true, approver: 'bob' }, _client: { user: { username: 'alice' } } })).toMatchObject({ approver: 'bob (via alice)' });
    expect(messageDecision({ approval: { id: 'a1', approve: true, approver: 'alice' }, _client: { user: { username: 'alice' } } })).toMatchObject({ approver: 'alice' });
    expect(messageDecision({ topic: 'approve', payload: 'a1', _client: { user: { username: 'x'.repeat(300) } } })!.approver).toHaveLength(256);
  });

  it('is no decision for tool calls (even one named "approve") and other messages', () => {
    expect(messageDecision({ topic: 'approve', payload: {}, toolCall: { agent: 'pi', tool: 'approve' } })).toBeUndefined();
    expect(messageDecision({ topic: 'other', payload: 'a1' })).toBeUndefined();
  });

  it('HTTP without an id (POST .../approvals) is a decision without an id', () => {
    expect(httpDecision(undefined, { approve: true })).toEqual({ id: undefined, approve: true, approver: 'admin API', reason: undefined });
  });

  it('HTTP: the logged-in user is the approver; a different name is kept beside it', () => {
    expect(httpDecision('a1', { approve: true })).toMatchObject({ id: 'a1', approver: 'admin API' });
    expect(httpDecision('a1', { approve: 'false', approver: 'carol' })).toMatchObject({ approve: false, approver: 'carol' });
    expect(httpDecision('a1', { approve: true }, 'admin')).toMatchObject({ approver: 'admin' });
    expect(httpDecision('a1', { approve: true, approver: 'carol' }, 'admin')).toMatchObject({ approver: 'carol (via admin)' });
    expect(() => httpDecision('a1', {})).toThrow(/approve must be true or false, got undefined/);
  });

  it('MQTT: JSON, or plain approve/deny for the oldest', () => {
    expect(mqttDecision('approve', 't/a')).toEqual({ approve: true, approver: 'mqtt:t/a' });
    expect(mqttDecision(' DENY\n', 't/a')).toEqual({ approve: false, approver: 'mqtt:t/a' });
    expect(mqttDecision('"approve"', 't/a')).toEqual({ approve: true, approver: 'mqtt:t/a' });
    expect(mqttDecision('{"id":"a1","approve":false,"approver":"dave","reason":"no"}', 't/a')).toEqual({ id: 'a1', approve: false, approver: 'dave', reason: 'no' });
    expect(() => mqttDecision('yes please', 't/a')).toThrow(DecisionError);
    expect(() => mqttDecision('{"approve":true}', 't/a')).toThrow(/id must be an approval id/);
  });
});

describe('settings', () => {
  const { privateKeyPem } = generateApprovalKeys();

  it('defaults: high threshold, 120 s to decide, 60 s validity, gate-<id> key id', () => {
    const { settings, problems } = readGateSettings({}, { signingKey: privateKeyPem }, 'a1b2c3d4e5f60718');
    expect(problems).toEqual([]);
    expect(settings).toMatchObject({ threshold: 'high', timeoutMs: 120_000, validityMs: 60_000, kid: 'gate-a1b2c3d4' });
    expect(settings.key?.publicKeyPem).toMatch(/^-----BEGIN PUBLIC KEY-----/);
    expect(defaultKid('a.b')).toBe('gate-ab');
  });

  it('names each bad property; a bad threshold holds everything', () => {
    const { settings, problems } = readGateSettings(
      { threshold: 'severe', timeout: '0', validity: 'soon', kid: 'a b', alwaysHold: 'pi', approvalTopic: 'a/#/b' }, {}, 'n1',
    );
    expect(settings.threshold).toBe('low');
    expect(settings.timeoutMs).toBe(120_000);
    expect(settings.approvalTopic).toBeUndefined();
    expect(problems.map((p) => (p.key === 'bad-field' ? p.field : p.key))).toEqual(['threshold', 'alwaysHold', 'timeout', 'validity', 'kid', 'no-key', 'approvalTopic']);
  });

  it('caps of pending approvals: 100 in all and 20 per other caller by default; a bad one is named and its default used', () => {
    const key = generateApprovalKeys().privateKeyPem;
    expect(readGateSettings({}, { signingKey: key }, 'n1').settings).toMatchObject({ maxPending: 100, maxPendingPerCaller: 20 });
    expect(readGateSettings({ maxPending: '7', maxPendingPerCaller: 3 }, { signingKey: key }, 'n1').settings).toMatchObject({ maxPending: 7, maxPendingPerCaller: 3 });
    const { settings, problems } = readGateSettings({ maxPending: 0, maxPendingPerCaller: '2.5' }, { signingKey: key }, 'n1');
    expect(settings).toMatchObject({ maxPending: 100, maxPendingPerCaller: 20 });
    expect(problems).toEqual([
      { key: 'bad-field', field: 'maxPending', value: '0', expected: 'a whole number from 1 to 10000' },
      { key: 'bad-field', field: 'maxPendingPerCaller', value: '2.5', expected: 'a whole number from 1 to 10000' },
    ]);
  });

  it('refuses a key that is not Ed25519', () => {
    const { problems } = readGateSettings({}, { signingKey: 'not a key' }, 'n1');
    expect(problems).toEqual([{ key: 'bad-key', detail: expect.stringMatching(/not a PEM block/) }]);
  });

  it('holds by risk, unknown risk, and the rules (always hold wins)', () => {
    const s = readGateSettings({ alwaysHold: 'pi/docker_*', neverHold: '*/docker_*\nrobot/*' }, {}, 'n1').settings;
    expect(isHeld(s, 'pi', 'status', 'low')).toBe(false);
    expect(isHeld(s, 'pi', 'status', 'high')).toBe(true);
    expect(isHeld(s, 'pi', 'status', 'critical')).toBe(true);
    expect(isHeld(s, 'pi', 'status', undefined)).toBe(true);
    expect(isHeld(s, 'pi', 'docker_list_containers', 'low')).toBe(true);
    expect(isHeld(s, 'nas', 'docker_remove_container', 'high')).toBe(false);
    expect(isHeld(s, 'robot', 'drive', 'critical')).toBe(false);
    expect(higherRisk('low', 'high')).toBe('high');
    expect(higherRisk('bogus', undefined)).toBeUndefined();
    expect(higherRisk('medium', 'bogus')).toBe('medium');
  });

  it('accepts MQTT topic filters', () => {
    expect(isTopicFilter('toolmesh/v1/approvals/gate1')).toBe(true);
    expect(isTopicFilter('toolmesh/+/approvals/#')).toBe(true);
    expect(isTopicFilter('a/b#')).toBe(false);
    expect(isTopicFilter('a/#/b')).toBe(false);
    expect(isTopicFilter('a+/b')).toBe(false);
  });
});

describe('keys', () => {
  it('reads a PEM whose line breaks an input field removed', () => {
    const { privateKeyPem, publicKeyPem } = generateApprovalKeys();
    const flat = privateKeyPem.replace(/\n/g, '');
    expect(normalizePem(flat)).toBe(privateKeyPem);
    expect(readSigningKey(flat).publicKeyPem).toBe(publicKeyPem);
  });

  it('writes agent configuration that YAML reads back as the public key PEM', () => {
    const { publicKeyPem } = generateApprovalKeys();
    expect(parse(agentKeySnippet('gate-1a2b', publicKeyPem))).toEqual({ approvals: { keys: { 'gate-1a2b': publicKeyPem } } });
  });

  it('writes the agent configuration snippet', () => {
    const snippet = agentKeySnippet('gate-1', '-----BEGIN PUBLIC KEY-----\nMCow\n-----END PUBLIC KEY-----\n');
    expect(snippet).toBe('approvals:\n  keys:\n    gate-1: |\n      -----BEGIN PUBLIC KEY-----\n      MCow\n      -----END PUBLIC KEY-----\n');
  });
});

describe('ApprovalBook', () => {
  afterEach(() => vi.useRealTimers());
  const call = { summary: 's', agent: 'pi', tool: 't', arguments: {}, risk: 'high' as const };

  it('settles each id once; later decisions are reported, not applied', () => {
    const settled: Array<[string, Outcome]> = [];
    const book = new ApprovalBook<string>((h, o) => settled.push([h.ctx, o]));
    const a = book.hold(call, 'A', 10_000);
    const b = book.hold(call, 'B', 10_000);
    expect(a.approvalId).not.toBe(b.approvalId);
    expect(book.list().map((r) => r.approvalId)).toEqual([a.approvalId, b.approvalId]);
    expect(book.decide({ id: b.approvalId, approve: false, approver: 'x', reason: 'no' })).toMatchObject({ status: 'settled' });
    expect(book.decide({ id: b.approvalId, approve: true, approver: 'y' })).toEqual({ status: 'already', id: b.approvalId, settled: 'denied' });
    expect(book.decide({ id: 'nope', approve: true, approver: 'y' })).toEqual({ status: 'unknown', id: 'nope' });
    // no id, and only A (held from the gate's own input) waits: A
    expect(book.decide({ approve: true, approver: 'z' })).toMatchObject({ status: 'settled', held: { ctx: 'A' } });
    expect(book.decide({ approve: true, approver: 'z' })).toEqual({ status: 'unknown' });
    expect(settled).toEqual([['B', { approved: false, cause: 'person', approver: 'x', reason: 'no' }], ['A', { approved: true, approver: 'z' }]]);
  });

  it('a decision without an id: refused naming both ids when two wait, and nothing settles', () => {
    const settled: string[] = [];
    const book = new ApprovalBook<string>((h) => settled.push(h.ctx));
    const a = book.hold(call, 'A', 10_000);
    const b = book.hold(call, 'B', 10_000);
    expect(book.decide({ approve: true, approver: 'z' })).toEqual({ status: 'refused', why: 'several', pending: [a.approvalId, b.approvalId], count: 2 });
    expect(settled).toEqual([]);
    expect(book.size).toBe(2);
    book.closeAll();
  });

  it('a decision without an id never settles another caller\'s request, even the only one', () => {
    const settled: string[] = [];
    const book = new ApprovalBook<string>((h) => settled.push(h.ctx));
    book.hold({ ...call, caller: 'mcp-bridge' }, 'R', 10_000, 'remote-1');
    expect(book.decide({ approve: true, approver: 'z' })).toEqual({ status: 'refused', why: 'remote', pending: ['remote-1'], count: 1 });
    expect(book.has('remote-1')).toBe(true);
    // with its id it settles
    expect(book.decide({ id: 'remote-1', approve: false, approver: 'z' })).toMatchObject({ status: 'settled', held: { ctx: 'R' } });
    expect(settled).toEqual(['R']);
  });

  it('a refusal lists at most MAX_LISTED_IDS ids, oldest first, and counts them all', () => {
    const book = new ApprovalBook<number>(() => undefined);
    const ids = Array.from({ length: 25 }, (_, i) => book.hold(call, i, 10_000).approvalId);
    expect(book.decide({ approve: false, approver: 'z' })).toEqual({ status: 'refused', why: 'several', pending: ids.slice(0, MAX_LISTED_IDS), count: 25 });
    expect(book.size).toBe(25);
    book.closeAll();
  });

  it('caps the holds in all and per remote caller: a full book holds nothing more, and has room again after a settle', () => {
    const book = new ApprovalBook<string>(() => undefined, { maxPending: 5, maxPerCaller: 2 });
    book.hold({ ...call, caller: 'b1' }, 'x', 10_000, 'b1-1');
    book.hold({ ...call, caller: 'b1' }, 'x', 10_000, 'b1-2');
    expect(book.full('b1')).toEqual({ cap: 'caller', caller: 'b1', max: 2 });
    expect(book.full('b2')).toBeUndefined();
    expect(book.full()).toBeUndefined();
    expect(() => book.hold({ ...call, caller: 'b1' }, 'x', 10_000, 'b1-3')).toThrow(BookFullError);
    expect(book.has('b1-3')).toBe(false);
    expect(book.countOf('b1')).toBe(2);
    book.hold({ ...call, caller: 'b2' }, 'x', 10_000, 'b2-1');
    book.hold(call, 'local', 10_000);
    book.hold(call, 'local', 10_000);
    expect(book.size).toBe(5);
    expect(book.full()).toEqual({ cap: 'total', max: 5 });
    expect(book.full('b3')).toEqual({ cap: 'total', max: 5 });
    expect(() => book.hold(call, 'local', 10_000)).toThrow(/5 calls wait for approval already/);
    expect(book.size).toBe(5);
    book.decide({ id: 'b1-1', approve: false, approver: 'z' });
    expect(book.countOf('b1')).toBe(1);
    expect(book.full('b1')).toBeUndefined();
    book.hold({ ...call, caller: 'b1' }, 'x', 10_000, 'b1-3');
    expect(book.countOf('b1')).toBe(2);
    book.closeAll();
    expect(book.countOf('b1')).toBe(0);
  });

  it('times out and closes', () => {
    vi.useFakeTimers();
    const settled: Outcome[] = [];
    const book = new ApprovalBook<string>((_h, o) => settled.push(o));
    const a = book.hold(call, 'A', 1000);
    book.hold(call, 'B', 5000);
    expect(a.expiresAt - a.requestedAt).toBe(1000);
    vi.advanceTimersByTime(1001);
    expect(settled).toEqual([{ approved: false, cause: 'timeout' }]);
    expect(book.decide({ id: a.approvalId, approve: true, approver: 'late' })).toMatchObject({ status: 'already', settled: 'timed out' });
    book.closeAll();
    expect(settled[1]).toEqual({ approved: false, cause: 'closed' });
    expect(book.size).toBe(0);
  });

  it('holds under a given approval id (a remote caller\'s), single-use: a pending or settled id cannot be held again', () => {
    const book = new ApprovalBook<string>(() => undefined);
    const r = book.hold({ ...call, caller: 'mcp-bridge', requester: 'Claude' }, 'A', 10_000, 'their-id');
    expect(r).toMatchObject({ approvalId: 'their-id', caller: 'mcp-bridge', requester: 'Claude' });
    expect(book.has('their-id')).toBe(true);
    expect(() => book.hold(call, 'B', 10_000, 'their-id')).toThrow('approval id their-id is already in use');
    book.decide({ id: 'their-id', approve: true, approver: 'alice' });
    expect(book.has('their-id')).toBe(false);
    expect(book.settledAs('their-id')).toBe('approved');
    expect(() => book.hold(call, 'C', 10_000, 'their-id')).toThrow(/already in use/);
    expect(book.size).toBe(0);
  });

  it('denied results are DENIED tool errors carrying the call id', () => {
    expect(deniedResult('tc-1', 'alice said no', { approver: 'alice' })).toEqual({
      id: 'tc-1', content: [{ type: 'text', text: 'DENIED: alice said no' }],
      structuredContent: { error: { code: 'DENIED', message: 'alice said no', details: { approver: 'alice' } } }, isError: true,
    });
  });
});

describe('remote approval requests', () => {
  const good = { v: 1, approvalId: 'a-1', agent: 'pi', tool: 'docker_restart_container', arguments: { container: 'db' }, expiresAt: 1_900_000_000_000 };

  it('reads a valid request, and names the field of an invalid one', () => {
    expect(readApprovalRequest(JSON.stringify(good))).toEqual({ request: good });
    expect(readApprovalRequest('{')).toMatchObject({ problem: { field: 'payload', problem: expect.stringMatching(/^not JSON/) } });
    expect(readApprovalRequest(JSON.stringify({ ...good, approvalId: '' }))).toMatchObject({ problem: { field: 'approvalId' } });
    expect(readApprovalRequest(JSON.stringify({ ...good, agent: 'no/slash' }))).toMatchObject({ problem: { field: 'agent' } });
    expect(readApprovalRequest(JSON.stringify({ ...good, risk: 'harmless' }))).toMatchObject({ problem: { field: 'risk' } });
    expect(readApprovalRequest(JSON.stringify([good]))).toMatchObject({ problem: { field: 'payload' } });
    expect(readApprovalRequest(deepArrayJson(20_000))).toEqual({ problem: { field: 'payload', problem: 'JSON nested deeper than 64 levels (limit maxDepth 64)' } });
    expect(approvalIdOf(JSON.stringify({ ...good, v: 9 }))).toBe('a-1');
    expect(approvalIdOf(deepArrayJson(20_000))).toBeUndefined();
  });

  it('the option is off unless set', () => {
    const key = generateApprovalKeys().privateKeyPem;
    expect(readGateSettings({}, { signingKey: key }, 'n1').settings.remoteRequests).toBe(false);
    expect(readGateSettings({ remoteRequests: true }, { signingKey: key }, 'n1').settings.remoteRequests).toBe(true);
    expect(readGateSettings({ remoteRequests: 'true' }, { signingKey: key }, 'n1').settings.remoteRequests).toBe(true);
  });
});
