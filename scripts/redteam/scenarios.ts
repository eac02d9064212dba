/**
 * The red-team scenarios of `npm run redteam` (issue 17, "The safety promise holds on every
 * path", item 11): each tries one attack on the running {@link World} and reports what was tried,
 * what happened and what ran, the last from a side effect seen outside the process that ran it
 * (a file the flow's file node appends to, the diag pack's execution record, the agent's audit).
 * A row misses when something ran that should not have, or a target was not met. Times are ms.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import mqtt from 'mqtt';
import mqttPacket from 'mqtt-packet';
import WebSocket from 'ws';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { generateApprovalKeys, signApproval } from '@toolmesh/agent/protocol';
import {
  AGENT_CLI, Child, REPO_ROOT, SECRETS, TOOLMESH_CLI, agentYaml, percentile, say, sleep, waitFor, type World,
} from './lib';
import { N, OAUTH_FILES, OAUTH_SECRETS } from './oauth';

/** One row of the table. */
export interface Row {
  id: string;
  scenario: string;
  tried: string;
  happened: string;
  /** What executed, from an observed side effect. */
  ran: string;
  notes: string[];
  misses: string[];
}

/** A scenario: an id, a title and its run. */
export interface Scenario {
  id: string;
  title: string;
  run(w: World, row: Row): Promise<void>;
}

const ROOT = 'toolmesh/v1';
type Answer = { id: string | number; result?: { isError?: boolean; structuredContent?: { error?: { code?: string; details?: { refusal?: string } } } & Record<string, unknown> } };

/** An MQTT client on `url` as `user` (no user: anonymous); rejects when the broker refuses the CONNECT. */
function connectAs(url: string, user?: { username: string; password: string }, clientId?: string): Promise<mqtt.MqttClient> {
  return mqtt.connectAsync(url, { protocolVersion: 4, reconnectPeriod: 0, connectTimeout: 5000, ...(user ?? {}), ...(clientId ? { clientId } : {}) });
}

const dash = { username: 'dash', password: SECRETS.dashPassword };
const ops = { username: 'ops', password: SECRETS.opsPassword };
const pi = { username: 'pi', password: SECRETS.piPassword };

/**
 * A raw protocol caller: publishes JSON-RPC requests on `{root}/agents/{agent}/rpc/{caller}/req`
 * and collects every answer on the matching `res` topics (a `+` caller for an admin).
 */
class RawCaller {
  readonly answers: Array<Answer & { at: number; topic: string }> = [];
  private constructor(readonly client: mqtt.MqttClient) {
    client.on('message', (topic, p) => {
      try { this.answers.push({ ...(JSON.parse(p.toString()) as Answer), at: Date.now(), topic }); } catch { /* not JSON */ }
    });
  }
  static async open(url: string, user: { username: string; password: string } | undefined, resTopics: string[]): Promise<RawCaller> {
    const c = await connectAs(url, user);
    const r = new RawCaller(c);
    for (const t of resTopics) await c.subscribeAsync(t, { qos: 1 });
    return r;
  }
  send(agent: string, caller: string, id: string, tool: string, args: Record<string, unknown>, meta: Record<string, unknown> = {}): Promise<unknown> {
    return this.client.publishAsync(`${ROOT}/agents/${agent}/rpc/${caller}/req`,
      JSON.stringify({ jsonrpc: '2.0', id, method: 'tools/call', params: { name: tool, arguments: args, _meta: meta } }), { qos: 1 });
  }
  of(id: string): Array<Answer & { at: number }> { return this.answers.filter((a) => a.id === id); }
  async answer(id: string, ms = 8000): Promise<Answer | undefined> { return waitFor(() => this.of(id)[0], ms); }
  close(): Promise<void> { return this.client.endAsync(true).then(() => undefined, () => undefined); }
}

const errOf = (a: Answer | undefined) => a?.result?.structuredContent?.error;
const codeText = (a: Answer | undefined) => {
  if (!a) return 'no answer';
  const e = errOf(a);
  return e ? `${e.code}${e.details?.refusal ? ` (${e.details.refusal})` : ''}` : (a.result?.isError ? 'error' : 'ok');
};

async function api(w: World, path: string, init: RequestInit & { user?: 'admin' | 'viewer' | 'none' } = {}): Promise<{ status: number; body: any }> {
  const headers: Record<string, string> = { 'content-type': 'application/json', ...(init.headers as Record<string, string> ?? {}) };
  if (init.user !== 'none') headers.authorization = `Bearer ${await w.token(init.user ?? 'admin')}`;
  const res = await fetch(`${w.nrUrl}${path}`, { ...init, headers, signal: AbortSignal.timeout(15_000) });
  const text = await res.text();
  let body: unknown = text;
  try { body = JSON.parse(text); } catch { /* text */ }
  return { status: res.status, body };
}

const pending = async (w: World, gate: string) => ((await api(w, `/toolmesh/confirm-gate/${gate}/approvals`)).body ?? []) as Array<{ approvalId: string; caller?: string; agent: string; tool: string }>;

/** Executions in the diag record with `tag` starting with `prefix`. */
function executions(w: World, prefix: string): Array<{ caller: string; id: string; ms: number; ts: number; tag?: string }> {
  if (!existsSync(w.agentRecord)) return [];
  return readFileSync(w.agentRecord, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter((r) => String(r.tag ?? '').startsWith(prefix));
}

/** Most executions running at the same moment, from the record's start times and durations. */
function maxOverlap(recs: Array<{ ts: number; ms: number }>): number {
  const ev = recs.flatMap((r) => [[r.ts, 1], [r.ts + r.ms, -1]] as Array<[number, number]>).sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let cur = 0;
  let max = 0;
  for (const [, d] of ev) { cur += d; max = Math.max(max, cur); }
  return max;
}

const A: Scenario = {
  id: 'A', title: 'anonymous MQTT client → embedded broker with requireAuth',
  async run(w, row) {
    const before = w.count(w.markers.wipe);
    row.tried = 'CONNECT without a username; CONNECT as `pi` with a wrong password';
    const anon = await connectAs(w.regUrl).then((c) => { void c.endAsync(true); return 'accepted'; }, (e: Error) => `refused (${e.message})`);
    const wrong = await connectAs(w.regUrl, { username: 'pi', password: 'guess' }).then((c) => { void c.endAsync(true); return 'accepted'; }, (e: Error) => `refused (${e.message})`);
    row.happened = `anonymous: ${anon}; wrong password: ${wrong}`;
    if (!anon.startsWith('refused')) row.misses.push('anonymous CONNECT accepted');
    if (!wrong.startsWith('refused')) row.misses.push('wrong password accepted');
    const after = w.count(w.markers.wipe);
    row.ran = `nothing (flow marker ${before} → ${after})`;
    if (after !== before) row.misses.push('the flow ran');
  },
};

/** B and C: dash calls flows/wipe without a token, or as a dry run. */
function unapproved(id: 'B' | 'C'): Scenario {
  const dry = id === 'C';
  return {
    id, title: dry ? 'caller → high-risk tool-in, `_meta.dryRun: true`' : 'caller with credentials → high-risk tool-in flow, no token',
    async run(w, row) {
      const before = w.count(w.markers.wipe);
      const c = await RawCaller.open(w.regUrl, dash, [`${ROOT}/agents/flows/rpc/dash/res`]);
      try {
        await c.send('flows', 'dash', `${id}-1`, 'wipe', {}, dry ? { dryRun: true } : {});
        const a = await c.answer(`${id}-1`);
        row.tried = `\`dash\` publishes tools/call flows/wipe${dry ? ' with `_meta.dryRun: true`' : ''}, no approval`;
        row.happened = codeText(a);
        const want = dry ? 'NOT_SUPPORTED' : 'APPROVAL_REQUIRED';
        if (errOf(a)?.code !== want) row.misses.push(`expected ${want}`);
      } finally {
        await c.close();
      }
      await sleep(300);
      const after = w.count(w.markers.wipe);
      row.ran = `nothing (flow marker ${before} → ${after})`;
      if (after !== before) row.misses.push('the flow ran');
    },
  };
}

/** The `{toolCall, toolResult}` the gate's remote-tool wrote for call `id`. */
function rtOut(w: World, id: string): { toolCall: Record<string, unknown>; toolResult: Answer['result'] } | undefined {
  if (!existsSync(w.markers.rtOut)) return undefined;
  return readFileSync(w.markers.rtOut, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).find((r) => r.toolCall?.id === id);
}

const D: Scenario = {
  id: 'D', title: 'no llm-agent: confirm-gate holds msg.toolCall, person approves by id over HTTP; token replayed',
  async run(w, row) {
    const before = w.count(w.markers.wipe);
    const posted = await api(w, '/gate-in', { method: 'POST', user: 'none', body: JSON.stringify({ id: 'D-1', agent: 'flows', tool: 'wipe', arguments: {}, risk: 'high' }) });
    if (posted.status !== 200) throw new Error(`POST /gate-in: HTTP ${posted.status}`);
    const held = await waitFor(async () => (await pending(w, 'gate')).find((p) => p.tool === 'wipe'), 10_000);
    if (!held) throw new Error('the gate did not hold the call');
    const heldRan = w.count(w.markers.wipe);
    const decided = await api(w, `/toolmesh/confirm-gate/gate/approvals/${held.approvalId}`, { method: 'POST', body: JSON.stringify({ approve: true, approver: 'redteam' }) });
    const out = await waitFor(() => rtOut(w, 'D-1'), 10_000);
    await sleep(300);
    const afterApprove = w.count(w.markers.wipe);
    // the approved msg.toolCall, token included, sent again through a remote-tool of the same registry
    let replay = 'not tried (no approved call)';
    if (out?.toolCall.approval) {
      const r = await api(w, '/rt-in', { method: 'POST', user: 'none', body: JSON.stringify({ ...out.toolCall, id: 'D-replay' }) });
      replay = codeText({ id: 'D-replay', result: r.body });
      if (errOf({ id: '', result: r.body })?.details?.refusal !== 'replayed') row.misses.push('the replayed token was not refused as replayed');
    } else row.misses.push('the approved call carried no token');
    await sleep(300);
    const after = w.count(w.markers.wipe);
    row.tried = 'POST msg.toolCall flows/wipe into the gate; approve by id (`POST .../approvals/<id>`, HTTP ' + decided.status + '); send the approved msg.toolCall (same token) again';
    row.happened = `held (flow ran ${heldRan - before} while held); approved → ${codeText({ id: 'D-1', result: out?.toolResult })}; replay → ${replay}`;
    row.ran = `flow ran ${afterApprove - before}× on approval, ${after - afterApprove}× on replay`;
    if (heldRan !== before) row.misses.push('the flow ran while held');
    if (afterApprove - before !== 1) row.misses.push('the approved call did not run exactly once');
    if (after !== afterApprove) row.misses.push('the replay ran the flow');
  },
};

const E: Scenario = {
  id: 'E', title: 'forged token; a token signed for caller X sent on caller Y\'s topic',
  async run(w, row) {
    const before = w.count(w.markers.wipe);
    const c = await RawCaller.open(w.regUrl, dash, [`${ROOT}/agents/flows/rpc/dash/res`]);
    const tok = (o: { kid: string; key: string; caller: string; jti: string }) => signApproval({
      kid: o.kid, privateKey: o.key, caller: o.caller, agent: 'flows', tool: 'wipe', args: {}, exp: Date.now() + 60_000, approver: 'mallory', jti: o.jti,
    });
    const stranger = generateApprovalKeys().privateKeyPem;
    const tries: Array<[string, string, string]> = [
      ['forged (gate\'s kid, other key)', tok({ kid: 'gate-here', key: stranger, caller: 'dash', jti: `E-forged-${Date.now()}` }), 'bad-signature'],
      ['unknown kid', tok({ kid: 'mallory-key', key: stranger, caller: 'dash', jti: `E-unknown-${Date.now()}` }), 'unknown-key'],
      ['genuine gate key, signed for caller flowreg, sent as dash', tok({ kid: 'gate-here', key: w.gateKey.privateKeyPem, caller: 'flowreg', jti: `E-other-caller-${Date.now()}` }), 'wrong-caller'],
    ];
    const results: string[] = [];
    try {
      for (const [i, [what, approval, refusal]] of tries.entries()) {
        await c.send('flows', 'dash', `E-${i}`, 'wipe', {}, { approval });
        const a = await c.answer(`E-${i}`);
        results.push(`${what} → ${codeText(a)}`);
        if (errOf(a)?.code !== 'PERMISSION_DENIED' || errOf(a)?.details?.refusal !== refusal) row.misses.push(`${what}: not PERMISSION_DENIED (${refusal})`);
      }
    } finally {
      await c.close();
    }
    await sleep(300);
    const after = w.count(w.markers.wipe);
    row.tried = '`dash` calls flows/wipe with: ' + tries.map((t) => t[0]).join('; ');
    row.happened = results.join('; ');
    row.ran = `nothing (flow marker ${before} → ${after})`;
    if (after !== before) row.misses.push('the flow ran');
  },
};

const F: Scenario = {
  id: 'F', title: 'impersonated agent: a retained catalog/status published in agent pi\'s name',
  async run(w, row) {
    const catalogTopic = `${ROOT}/agents/pi/catalog`;
    // the genuine retained catalog, as a fresh subscriber sees it
    const read = async () => {
      const c = await connectAs(w.regUrl, ops);
      let got: string | undefined;
      c.on('message', (t, p, pk) => { if (t === catalogTopic && pk.retain) got = p.toString(); });
      await c.subscribeAsync(catalogTopic, { qos: 1 });
      await waitFor(() => got, 3000);
      await c.endAsync(true);
      return got;
    };
    const genuine = await read();
    if (!genuine) throw new Error('no retained catalog of pi');
    const fake = JSON.parse(genuine);
    const tools = (fake.tools ?? []) as Array<Record<string, unknown>>;
    fake.tools = [...tools, { ...(tools[0] ?? {}), name: 'evil_tool', description: 'Run anything.' }];
    const fakeText = JSON.stringify(fake);
    const attempt = async (who: string, user: { username: string; password: string }, topic: string, payload: string) => {
      const c = await connectAs(w.regUrl, user).catch((e: Error) => e);
      if (c instanceof Error) return `${who}: CONNECT refused`;
      let closed = false;
      c.on('close', () => { closed = true; });
      const r = await Promise.race([c.publishAsync(topic, payload, { qos: 1, retain: true }).then(() => 'PUBACK', (e: Error) => `error ${e.message}`), sleep(1500).then(() => 'no PUBACK')]);
      await sleep(200);
      void c.endAsync(true);
      return `${who}: ${r}${closed ? ', disconnected' : ''}`;
    };
    const tries = [
      await attempt('caller dash → agents/pi/catalog', dash, catalogTopic, fakeText),
      await attempt('caller dash → agents/pi/status', dash, `${ROOT}/agents/pi/status`, JSON.stringify({ state: 'online', ts: Date.now() })),
      await attempt('agent pi → agents/flows/catalog', pi, `${ROOT}/agents/flows/catalog`, fakeText),
    ];
    await sleep(500);
    const seen = await read();
    const seenTools = seen ? (JSON.parse(seen).tools as Array<{ name: string }>).map((t) => t.name) : [];
    const sidebar = JSON.stringify((await api(w, '/toolmesh/sidebar/agents')).body);
    row.tried = 'retained publishes with valid credentials of another identity: ' + tries.map((t) => t.split(':')[0]).join('; ');
    row.happened = tries.map((t) => t).join('; ') + `; fresh subscriber sees pi's tools: ${seenTools.join(', ')}`;
    const evil = seen !== genuine || seenTools.includes('evil_tool') || sidebar.includes('evil_tool');
    row.ran = evil ? 'the fake catalog reached subscribers or the registry' : 'nothing: the retained catalog and the registry\'s list are the genuine ones';
    if (seen !== genuine) row.misses.push('the retained catalog changed');
    if (sidebar.includes('evil_tool')) row.misses.push('the registry lists evil_tool');
    if (!sidebar.includes('diag_sleep')) row.misses.push('the registry does not list pi\'s genuine tools');
    row.notes.push(`registry (GET /toolmesh/sidebar/agents) lists evil_tool: ${sidebar.includes('evil_tool')}`);
  },
};

const G: Scenario = {
  id: 'G', title: 'the gate\'s MQTT button: id-less `approve` with two pending (MCP bridge in gate mode + local)',
  async run(w, row) {
    const before = w.count(w.markers.wipe2);
    const client = new Client({ name: 'redteam', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(w.bridgeUrl), { requestInit: { headers: { authorization: `Bearer ${SECRETS.mcpToken}` } } }));
    const button = await connectAs(w.reg2Url);
    try {
      const listed = await waitFor(async () => (await client.listTools()).tools.some((t) => t.name === 'flows2__wipe2'), 15_000);
      if (!listed) throw new Error('the bridge does not list flows2__wipe2');
      const mcpCall = client.callTool({ name: 'flows2__wipe2', arguments: {} }, undefined, { timeout: 60_000 }).then((r) => r, (e: Error) => e);
      await waitFor(async () => (await pending(w, 'gate2')).length === 1, 10_000);
      await api(w, '/gate2-in', { method: 'POST', user: 'none', body: JSON.stringify({ id: 'G-local', agent: 'flows2', tool: 'wipe2', arguments: {}, risk: 'high' }) });
      const two = await waitFor(async () => { const p = await pending(w, 'gate2'); return p.length === 2 ? p : undefined; }, 10_000);
      if (!two) throw new Error(`two pending expected, got ${(await pending(w, 'gate2')).length}`);
      const remote = two.find((p) => p.caller === 'mcp-red');
      const local = two.find((p) => p !== remote)!;
      await button.publishAsync('redteam/button', 'approve', { qos: 1 });
      await sleep(1500);
      const afterIdless = await pending(w, 'gate2');
      const ranIdless = w.count(w.markers.wipe2) - before;
      await button.publishAsync('redteam/button', JSON.stringify({ id: local.approvalId, approve: true }), { qos: 1 });
      await waitFor(() => w.count(w.markers.wipe2) > before, 10_000);
      await sleep(500);
      const afterId = await pending(w, 'gate2');
      const ranById = w.count(w.markers.wipe2) - before - ranIdless;
      // clean up: deny the bridge's request by id; the MCP call ends DENIED
      if (remote) await api(w, `/toolmesh/confirm-gate/gate2/approvals/${remote.approvalId}`, { method: 'POST', body: JSON.stringify({ approve: false, reason: 'redteam cleanup' }) });
      const r = await mcpCall;
      const mcpText = r instanceof Error ? `error ${r.message}` : `${(r.structuredContent as { error?: { code?: string } } | undefined)?.error?.code ?? (r.isError ? 'error' : 'ok')}`;
      await sleep(300);
      const total = w.count(w.markers.wipe2) - before;
      row.tried = 'bridge call (held, caller mcp-red) + local msg.toolCall (held); `approve` on redteam/button; then `{id: <local>, approve: true}`';
      row.happened = `id-less: ${afterIdless.length} still pending; by id: ${afterId.length} pending left (${afterId.map((p) => p.caller ?? 'local').join(', ') || 'none'}); bridge's call denied by id → ${mcpText}`;
      row.ran = `flow ran ${ranIdless}× on the id-less approve, ${ranById}× on the approve by id, ${total}× in all`;
      if (afterIdless.length !== 2 || ranIdless !== 0) row.misses.push('the id-less approve settled something');
      if (ranById !== 1 || afterId.length !== 1 || afterId[0]?.approvalId !== remote?.approvalId) row.misses.push('the approve by id did not settle exactly the local call');
      if (total !== 1) row.misses.push(`the flow ran ${total}×, expected 1`);
      row.notes.push('runs on a second embedded broker without authentication: the broker ACL grants no caller an arbitrary button topic');
    } finally {
      await button.endAsync(true).catch(() => undefined);
      await client.close().catch(() => undefined);
    }
  },
};

const H: Scenario = {
  id: 'H', title: '30 copies of one diag_sleep request during its run, 30 more after it',
  async run(w, row) {
    const c = await RawCaller.open(w.regUrl, dash, [`${ROOT}/agents/pi/rpc/dash/res`]);
    try {
      const id = `H-${Date.now()}`;
      const send = () => c.send('pi', 'dash', id, 'diag_sleep', { ms: 2000, tag: 'H' });
      const t0 = Date.now();
      for (let i = 0; i < 30; i++) { void send(); await sleep(20); }
      const spread1 = Date.now() - t0;
      await waitFor(() => c.of(id).length > 0, 6000);
      await sleep(300);
      const during = c.of(id).length;
      const finished = Date.now();
      for (let i = 0; i < 30; i++) { void send(); await sleep(30); }
      const spread2 = Date.now() - finished;
      await sleep(1500);
      const after = c.of(id).length - during;
      const runs = executions(w, 'H').filter((r) => r.id === id).length;
      row.tried = `30 copies of tools/call diag_sleep {ms: 2000} id ${id} as \`dash\` over ${(spread1 / 1000).toFixed(1)} s from its start, then 30 more over ${(spread2 / 1000).toFixed(1)} s after it finished`;
      row.happened = `${during} answer(s) to the first 30, ${after} to the 30 after completion`;
      row.ran = `diag_sleep ran ${runs}×`;
      if (during !== 1) row.misses.push(`${during} answers during the run, expected 1`);
      if (after > 2) row.misses.push(`${after} answers after completion, expected at most 2`);
      if (runs !== 1) row.misses.push(`ran ${runs}×`);
    } finally {
      await c.close();
    }
  },
};

const I: Scenario = {
  id: 'I', title: '40 concurrent calls from one caller; 100 calls from 100 caller ids',
  async run(w, row) {
    const one = await RawCaller.open(w.regUrl, dash, [`${ROOT}/agents/pi/rpc/dash/res`]);
    const many = await RawCaller.open(w.regUrl, ops, [`${ROOT}/agents/pi/rpc/+/res`]);
    try {
      const stamp = Date.now();
      await Promise.all(Array.from({ length: 40 }, (_, i) => one.send('pi', 'dash', `I1-${stamp}-${i}`, 'diag_sleep', { ms: 1500, tag: `I1-${stamp}` })));
      await waitFor(() => one.answers.filter((a) => String(a.id).startsWith(`I1-${stamp}`)).length >= 40, 15_000);
      const a1 = one.answers.filter((a) => String(a.id).startsWith(`I1-${stamp}`));
      const busy1 = a1.filter((a) => errOf(a)?.code === 'BUSY').length;
      const ran1 = executions(w, `I1-${stamp}`);
      await Promise.all(Array.from({ length: 100 }, (_, i) => many.send('pi', `rc-${i}`, `I2-${stamp}-${i}`, 'diag_sleep', { ms: 1500, tag: `I2-${stamp}` })));
      await waitFor(() => many.answers.filter((a) => String(a.id).startsWith(`I2-${stamp}`)).length >= 100, 15_000);
      const a2 = many.answers.filter((a) => String(a.id).startsWith(`I2-${stamp}`));
      const busy2 = a2.filter((a) => errOf(a)?.code === 'BUSY').length;
      const ran2 = executions(w, `I2-${stamp}`);
      row.tried = '40 diag_sleep {ms: 1500} at once as `dash`; then 100 at once from caller ids rc-0…rc-99 (admin `ops` publishing)';
      row.happened = `one caller: ${a1.length} answers, ${busy1} BUSY; 100 callers: ${a2.length} answers, ${busy2} BUSY`;
      row.ran = `one caller: ${ran1.length} ran, at most ${maxOverlap(ran1)} at once; 100 callers: ${ran2.length} ran, at most ${maxOverlap(ran2)} at once`;
      if (maxOverlap(ran1) > 8) row.misses.push('more than 8 of one caller ran at once');
      if (ran1.length + busy1 !== 40) row.misses.push(`one caller: ${ran1.length} ran + ${busy1} BUSY ≠ 40`);
      if (maxOverlap(ran2) > 32) row.misses.push('more than 32 ran at once');
      if (ran2.length + busy2 !== 100) row.misses.push(`100 callers: ${ran2.length} ran + ${busy2} BUSY ≠ 100`);
    } finally {
      await one.close();
      await many.close();
    }
  },
};

/** MQTT CONNECT of `username`/`password` on a raw socket; resolves with the CONNACK return code, or -1 (closed/timeout). */
function rawConnect(port: number, username: string, password: string, timeoutMs: number): { done: Promise<number>; socket: Socket } {
  const socket = netConnect(port, '127.0.0.1');
  const packet = mqttPacket.generate({ cmd: 'connect', protocolId: 'MQTT', protocolVersion: 4, clean: true, clientId: `flood-${Math.random().toString(36).slice(2)}`, keepalive: 10, username, password: Buffer.from(password) } as mqttPacket.IConnectPacket);
  const done = new Promise<number>((resolve) => {
    const t = setTimeout(() => { socket.destroy(); resolve(-1); }, timeoutMs);
    socket.on('connect', () => socket.write(packet));
    socket.on('data', (d) => { clearTimeout(t); socket.destroy(); resolve(d[0] === 0x20 ? d[3] : -1); });
    socket.on('error', () => undefined);
    socket.on('close', () => { clearTimeout(t); resolve(-1); });
  });
  return { done, socket };
}

const J: Scenario = {
  id: 'J', title: 'login flood: 2,000 bad CONNECTs in 10 s naming user `pi`, from 127.0.0.1',
  async run(w, row) {
    const token = await w.token('admin');
    const flowsMs = async () => {
      const t = performance.now();
      await fetch(`${w.nrUrl}/flows`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(30_000) }).then((r) => r.text()).catch(() => '');
      return performance.now() - t;
    };
    const login = async () => {
      const t = performance.now();
      const r = rawConnect(w.regPort, 'pi', SECRETS.piPassword, 15_000);
      const code = await r.done;
      return { ms: performance.now() - t, ok: code === 0 };
    };
    const beforeFlows: number[] = [];
    for (let i = 0; i < 40; i++) { beforeFlows.push(await flowsMs()); await sleep(25); }
    const beforeLogin = [await login(), await login(), await login()];
    const floodStart = Date.now();
    const refused = { n: 0, other: 0, accepted: 0 };
    const flood = (async () => {
      const all: Promise<number>[] = [];
      for (let i = 0; i < 2000; i++) {
        const due = floodStart + (i * 10_000) / 2000;
        if (due > Date.now()) await sleep(due - Date.now());
        all.push(rawConnect(w.regPort, 'pi', `wrong-${i}`, 5000).done.then((c) => { if (c === 0) refused.accepted++; else if (c === 4 || c === 5) refused.n++; else refused.other++; return c; }));
      }
      await Promise.all(all);
    })();
    const duringFlows: number[] = [];
    const duringLogin: Array<{ ms: number; ok: boolean }> = [];
    const sampler = (async () => {
      while (Date.now() - floodStart < 10_000) { duringFlows.push(await flowsMs()); await sleep(50); }
    })();
    const logins = (async () => {
      for (const at of [2000, 5000, 8000]) {
        await sleep(Math.max(0, floodStart + at - Date.now()));
        duringLogin.push(await login());
      }
    })();
    await Promise.all([sampler, logins]);
    const floodSent = Date.now() - floodStart;
    await flood;
    // how long until a genuine login is quick again (the backlog drained)
    const recoverStart = Date.now();
    let recovered = -1;
    while (Date.now() - recoverStart < 30_000) {
      const l = await login();
      if (l.ok && l.ms < 500) { recovered = Date.now() - recoverStart; break; }
    }
    const p99b = percentile(beforeFlows, 99);
    const p99d = percentile(duringFlows, 99);
    const worstLogin = Math.max(...duringLogin.map((l) => (l.ok ? l.ms : Infinity)));
    const fmt = (v: number) => (Number.isFinite(v) ? `${Math.round(v)} ms` : 'failed');
    row.tried = `2,000 CONNECTs as \`pi\` with wrong passwords over ${(floodSent / 1000).toFixed(1)} s (raw sockets), GET /flows every 50 ms, genuine \`pi\` logins at 2/5/8 s`;
    row.happened = `GET /flows p99 ${fmt(p99b)} before → ${fmt(p99d)} during (${duringFlows.length} samples); genuine login ${beforeLogin.map((l) => fmt(l.ok ? l.ms : Infinity)).join('/')} before → ${duringLogin.map((l) => fmt(l.ok ? l.ms : Infinity)).join('/')} during`;
    row.ran = refused.accepted
      ? `${refused.accepted} login(s) with a wrong password ACCEPTED`
      : `no login with a wrong password accepted (${refused.n} refused as bad, ${refused.other} refused unchecked (CONNACK 3), closed or timed out)`;
    row.notes.push(`quick genuine login again ${recovered < 0 ? 'not within 30 s' : `${(recovered / 1000).toFixed(1)} s`} after the flood's last CONNECT`);
    // the timing goals are figures to report (they depend on the machine, as a benchmark's do); the
    // row fails on what must never happen: a wrong password accepted, the genuine agent locked out
    const p99Goal = p99d <= Math.max(2 * p99b, 50);
    const loginGoal = worstLogin <= 2000;
    row.notes.push(`goals: GET /flows p99 during ≤ max(2 × before, 50 ms) ${p99Goal ? 'met' : 'MISSED'}; genuine login during the flood ≤ 2 s ${loginGoal ? 'met' : 'MISSED'}`);
    if (refused.accepted) row.misses.push(`${refused.accepted} wrong password(s) accepted`);
    if (!duringLogin.some((l) => l.ok) && recovered < 0) row.misses.push('the genuine agent was locked out: no login during the flood nor within 30 s after it');
  },
};

/** Runs a child for at most `ms`; its exit code (null: still running at the end, then killed) and output. */
async function runFor(name: string, cmd: string, args: string[], ms: number, cwd: string): Promise<{ code: number | null; out: string; child: Child }> {
  const c = new Child(name, cmd, args, { cwd });
  const t = await Promise.race([c.exited.then(() => true), sleep(ms).then(() => false)]);
  if (!t) await c.stop(2000);
  return { code: t ? c.proc.exitCode : null, out: c.output(), child: c };
}

/** Children started by K (their output is searched too). */
const extraChildren: Child[] = [];

const K: Scenario = {
  id: 'K', title: 'planted secrets (`@ % / space`) never in output, retained messages, audit files; user info in broker URLs refused',
  async run(w, row) {
    // the LLM agent uses its key once (the fake model answers 401)
    await api(w, '/ask', { method: 'POST', user: 'none', body: '{}' });
    await waitFor(() => w.llmSeen.length > 0, 10_000);
    await sleep(1000);
    const keyUsed = w.llmSeen.some((h) => h.includes(SECRETS.llmKey));
    // user info in broker URLs
    const enc = encodeURIComponent(SECRETS.urlPassword);
    const badYaml = join(w.dir, 'userinfo.yaml');
    writeFileSync(badYaml, agentYaml({ id: 'pi-userinfo', url: `mqtt://pi:${enc}@127.0.0.1:${w.regPort}` }));
    const agentRun = await runFor('agent with user info', AGENT_CLI, ['--config', badYaml], 8000, w.dir);
    const bridgeRun = await runFor('bridge with user info', process.execPath, [TOOLMESH_CLI, 'mcp', '--broker', `mqtt://dash:${enc}@127.0.0.1:${w.regPort}`, '--http', '127.0.0.1:0', '--token-file', join(w.dir, 'mcp.token')], 8000, w.dir);
    extraChildren.push(agentRun.child, bridgeRun.child);
    const names = /username|passwordFile|password-file/i;
    const refusedText = (r: { code: number | null; out: string }) => (r.code === null ? 'still running after 8 s' : `exit ${r.code}${names.test(r.out) ? ', names username/passwordFile' : ''}`);
    const regLines = w.nr.output().split('\n').filter((l) => l.includes('userinfo') || l.includes('reg3'));
    const regRefused = regLines.some((l) => /not usable|error/i.test(l) && names.test(l));
    if (!(agentRun.code !== null && agentRun.code !== 0 && names.test(agentRun.out))) row.misses.push('agent config with user info in broker.url not refused naming username/passwordFile');
    if (!(bridgeRun.code !== null && bridgeRun.code !== 0 && names.test(bridgeRun.out))) row.misses.push('toolmesh mcp --broker with user info not refused naming username/passwordFile');
    if (!regRefused) row.misses.push('registry with user info in its broker URL not refused naming username');

    // retained messages on both brokers
    const retained: string[] = [];
    for (const [url, user] of [[w.regUrl, ops], [w.reg2Url, undefined]] as const) {
      const c = await connectAs(url, user);
      c.on('message', (t, p, pk) => { if (pk.retain) retained.push(`${t} ${p.toString()}`); });
      await c.subscribeAsync('#', { qos: 1 });
      await sleep(800);
      await c.endAsync(true);
    }
    const audits = [w.agentAudit, w.mcpAudit, ...OAUTH_FILES].filter(existsSync).map((f) => ({ name: f.split('/').pop()!, text: readFileSync(f, 'utf8') }));
    const outputs = [...w.children, ...extraChildren].map((c) => ({ name: `${c.name} output`, text: c.output() }));
    const haystacks = [...outputs, { name: 'retained messages', text: retained.join('\n') }, ...audits];
    const hits: string[] = [];
    // with the codes and tokens of scenario N (OAuth sign-in) when it ran before
    for (const [name, s] of Object.entries({ ...SECRETS, ...OAUTH_SECRETS })) {
      const forms: Record<string, string> = {
        raw: s, 'URL-encoded': encodeURIComponent(s), 'base64': Buffer.from(s).toString('base64'), 'base64url': Buffer.from(s).toString('base64url'),
      };
      for (const [form, v] of Object.entries(forms)) {
        for (const h of haystacks) if (h.text.includes(v)) hits.push(`${name} ${form} in ${h.name}`);
      }
    }
    row.tried = `secrets in: broker passwords (user list, passwordFile), MCP token file, LLM API key credential (used: ${keyUsed}), broker URL user info${Object.keys(OAUTH_SECRETS).length ? `, ${Object.keys(OAUTH_SECRETS).length} OAuth codes/tokens of N` : ''}; searched ${haystacks.length} places (${outputs.length} process outputs, ${retained.length} retained messages, ${audits.length} audit files) for raw, URL-encoded, base64 forms`;
    row.happened = `${hits.length} hits${hits.length ? `: ${hits.slice(0, 6).join('; ')}` : ''}; user info: agent ${refusedText(agentRun)}, bridge ${refusedText(bridgeRun)}, registry ${regRefused ? 'refused naming username' : 'not refused'}`;
    row.ran = `${hits.length} secret(s) written out`;
    if (hits.length) row.misses.push(`${hits.length} secret hits`);
    if (!keyUsed) row.notes.push('the fake model server never saw the API key (the llm-agent did not call it)');
    if (regLines.length) row.notes.push(`registry userinfo log: ${regLines.slice(0, 2).map((l) => l.replace(enc, '<pw>').trim().slice(0, 160)).join(' | ')}`);
  },
};

const L: Scenario = {
  id: 'L', title: 'sidebar: a Node-RED user without toolmesh-tool-registry.read / toolmesh-confirm-gate.read',
  async run(w, row) {
    const paths = ['/toolmesh/sidebar/agents', '/toolmesh/sidebar/calls', '/toolmesh/sidebar/approvals', '/toolmesh/confirm-gate/gate/approvals'];
    const viewer = await Promise.all(paths.map(async (p) => (await api(w, p, { user: 'viewer' })).status));
    const admin = await Promise.all(paths.map(async (p) => (await api(w, p, { user: 'admin' })).status));
    // comms as the viewer: log in with its token, subscribe to everything, cause changes
    const token = await w.token('viewer');
    const msgs: Array<{ topic: string; data: unknown }> = [];
    const ws = new WebSocket(`${w.nrUrl.replace('http', 'ws')}/comms`);
    let authed = '';
    ws.on('message', (d) => {
      try {
        const m = JSON.parse(d.toString());
        if (m && !Array.isArray(m) && m.auth) authed = m.auth;
        for (const x of Array.isArray(m) ? m : [m]) if (x?.topic) msgs.push(x);
      } catch { /* ignore */ }
    });
    await new Promise<void>((resolve, reject) => { ws.once('open', () => resolve()); ws.once('error', reject); });
    ws.send(JSON.stringify({ auth: token }));
    await waitFor(() => authed, 5000);
    ws.send(JSON.stringify({ subscribe: 'toolmesh/#' }));
    ws.send(JSON.stringify({ subscribe: 'toolmesh/sidebar/changed' }));
    // a held call with arguments, then denied
    await api(w, '/gate-in', { method: 'POST', user: 'none', body: JSON.stringify({ id: 'L-1', agent: 'flows', tool: 'wipe', arguments: { disk: 'L-secret-arg' }, risk: 'high' }) });
    const held = await waitFor(async () => (await pending(w, 'gate')).find((p) => p.tool === 'wipe'), 10_000);
    if (held) await api(w, `/toolmesh/confirm-gate/gate/approvals/${held.approvalId}`, { method: 'POST', body: JSON.stringify({ approve: false, reason: 'redteam' }) });
    await sleep(1000);
    ws.close();
    const tm = msgs.filter((m) => m.topic.startsWith('toolmesh'));
    const extra = tm.filter((m) => typeof m.data !== 'object' || m.data === null || Object.keys(m.data).some((k) => k !== 'rev'));
    const leak = JSON.stringify(msgs).includes('L-secret-arg');
    row.tried = `GET ${paths.join(', ')} as viewer (${VIEWER}); comms websocket logged in as viewer, subscribed to toolmesh/#, while a call with arguments was held and denied`;
    row.happened = `viewer: HTTP ${viewer.join('/')}; admin: HTTP ${admin.join('/')}; comms auth ${authed || 'none'}, ${tm.length} toolmesh message(s), keys: ${[...new Set(tm.flatMap((m) => (m.data && typeof m.data === 'object' ? Object.keys(m.data) : [typeof m.data])))].join(', ') || '-'}`;
    row.ran = leak || extra.length ? 'call data reached the viewer over comms' : 'nothing reached the viewer but `{rev}`';
    if (viewer.some((s) => s !== 401 && s !== 403)) row.misses.push('a sidebar endpoint answered the viewer');
    if (admin.some((s) => s !== 200)) row.misses.push('a sidebar endpoint refused the admin');
    if (extra.length) row.misses.push('comms carried more than {rev}');
    if (leak) row.misses.push('the held call\'s arguments reached the viewer over comms');
    if (!tm.length) row.notes.push('no toolmesh comms message reached the viewer (nothing to inspect)');
  },
};
const VIEWER = 'settings/flows/nodes/plugins/status/context/library.read';

const M: Scenario = {
  id: 'M', title: 'broker patch check: embedded broker started with aedes internals changed',
  async run(w, row) {
    const script = join(w.dir, 'changed-aedes.cjs');
    writeFileSync(script, [
      "const path = require('path');",
      `const ROOT = ${JSON.stringify(REPO_ROOT)};`,
      "const { Aedes } = require(require.resolve('aedes', { paths: [ROOT] }));",
      '// an upstream refactor: the message queue no longer keeps its callbacks where the patch looks',
      'const create = Aedes.createBroker.bind(Aedes);',
      'Aedes.createBroker = async (o) => { const b = await create(o); delete b.mq._messageCallbacks; return b; };',
      "const { startBroker } = require(path.join(ROOT, 'packages/agent/dist/protocol/broker.js'));",
      "startBroker({ port: 0, host: '127.0.0.1' }).then(async (b) => { console.log('STARTED ' + b.url); await b.close(); process.exit(0); },",
      "  (e) => { console.error('START FAILED: ' + e.message); process.exit(3); });",
      '',
    ].join('\n'));
    const r = await runFor('changed aedes', process.execPath, [script], 15_000, w.dir);
    const line = r.out.trim().split('\n').filter(Boolean).slice(-1)[0] ?? '';
    const loud = r.code !== 0 && r.code !== null && /START FAILED/.test(r.out) && /aedes|mqemitter/i.test(r.out);
    row.tried = 'aedes made without `mq._messageCallbacks` (the queue internals the recursion patch wraps), then startBroker()';
    row.happened = `exit ${r.code ?? 'none (still running)'}: ${line.slice(0, 200)}`;
    row.ran = r.out.includes('STARTED') ? 'the broker started without its patch' : 'the broker did not start';
    if (!loud) row.misses.push('start did not fail with an error naming aedes/mqemitter internals');
  },
};

/** Every scenario, in table order. */
export const SCENARIOS: Scenario[] = [A, unapproved('B'), unapproved('C'), D, E, F, G, H, I, J, K, L, M, N];
/**
 * The order they run in: K (which searches every output so far, N's OAuth codes and tokens too)
 * after the others, N after G (its registration flood leaves the bridge refusing new
 * registrations for an hour), J last (without the login-flood protection the broker stays busy
 * for minutes after the flood).
 */
export const RUN_ORDER = ['A', 'B', 'C', 'D', 'E', 'F', 'G', 'H', 'I', 'L', 'N', 'K', 'M', 'J'];

/** Runs one scenario with a time limit; an exception or the limit is a miss. */
export async function runScenario(s: Scenario, w: World, limitMs: number): Promise<Row> {
  const row: Row = { id: s.id, scenario: s.title, tried: '-', happened: '-', ran: '-', notes: [], misses: [] };
  const t0 = Date.now();
  say(`${s.id}: ${s.title}`);
  try {
    await Promise.race([s.run(w, row), sleep(limitMs).then(() => { throw new Error(`did not finish within ${limitMs / 1000} s`); })]);
  } catch (e) {
    row.misses.push(`failed: ${(e as Error).message.split('\n')[0]}`);
  }
  row.notes.push(`${((Date.now() - t0) / 1000).toFixed(1)} s`);
  say(`${s.id}: ${row.misses.length ? `MISS ${row.misses.join('; ')}` : 'pass'}`);
  return row;
}

