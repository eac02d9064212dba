// One authenticated identity per MCP client (issue 19), carried through every call: the bridge
// (McpBridge.createServer(identity)) driven by the MCP SDK's own Client over the SDK's in-memory
// transport, real agent runtimes with their execution logs on an in-process aedes broker, a real
// hash-chained audit log, and the base commit's RpcServer as an agent that predates
// `_meta.onBehalfOf`. A stand-in confirm-gate (a plain MQTT client using the gate's own request
// reader and a trusted signing key) answers approval requests in `gate` mode.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { InMemoryTransport } from '@modelcontextprotocol/sdk/inMemory.js';
import { ElicitRequestSchema, McpError, ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import {
  RpcCaller, connectMqtt, defineTool, endMqtt, generateApprovalKeys, parsePolicy, signApproval, toolErrorOf, type ToolDefinition,
} from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { AuditWriter, Redactor, verifyChain, type AuditRecord } from '../protocol/audit';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { McpBridge } from '../mcp/bridge';
import { GateApprovals } from '../mcp/gate-approvals';
import { clientAllowOf, loadMcpSettings, McpUsageError } from '../mcp/cli';
import { requesterOf } from '../mcp/approvals';
import type { ClientIdentity } from '../mcp/identity';
import { approvedResponse, readApprovalRequest } from '../nodes/confirm-gate/remote-requests';
const REPO_ROOT = join(__dirname, '..');
import { until } from './support/until';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-identity-'));
const quiet = { info() {}, warn() {}, error() {} };
const gateKeys = generateApprovalKeys();
const elicitKeys = generateApprovalKeys();
const CALLER = 'mcp-identity-test';

const runs: Record<string, number> = {};
const count = (name: string) => { runs[name] = (runs[name] ?? 0) + 1; };
const echo = (agent: string): ToolDefinition => defineTool({
  name: 'echo', description: 'Echoes its text', risk: 'low', readOnly: true,
  input: z.strictObject({ text: z.string().max(100) }),
  execute: (a) => { count(`${agent}/echo`); return { echoed: a.text }; },
});
const piTools: ToolDefinition[] = [
  echo('pi'),
  defineTool({
    name: 'remove_everything', description: 'Removes everything', risk: 'high', destructive: true,
    input: z.strictObject({ target: z.string() }),
    execute: (a) => { count('pi/remove_everything'); return { removed: a.target }; },
  }),
  defineTool({ name: 'secret', description: 'Denied by the global policy', risk: 'low', input: z.strictObject({}), execute: () => { count('pi/secret'); return {}; } }),
];
const camTools: ToolDefinition[] = [
  defineTool({ name: 'snapshot', description: 'Takes a picture', risk: 'low', input: z.strictObject({}), execute: () => { count('cam/snapshot'); return { ok: true }; } }),
];

const HA: ClientIdentity = { clientId: 'c-ha-0001', label: 'home-assistant' };
const KITCHEN: ClientIdentity = { clientId: 'oauth-kitchen-id', label: 'kitchen' };
const STRANGER: ClientIdentity = { clientId: 'c-stranger', label: 'stranger' };
const GARAGE: ClientIdentity = { clientId: 'c-garage', label: 'garage-app' };

function agentConfig(id: string, url: string) {
  return validateConfig({
    version: 1, agent: { id, name: `Test ${id}`, kind: 'pi' }, broker: { url },
    approvals: { keys: { 'gate-test': gateKeys.publicKeyPem, 'elicit-test': elicitKeys.publicKeyPem }, usedTokensFile: join(dir, `${id}-used.jsonl`) },
    audit: { file: join(dir, `${id}-audit.jsonl`) },
  }, 'test.yaml', dir);
}

function records(file: string): AuditRecord[] {
  return readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as AuditRecord);
}

function textOf(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

describe('MCP sessions with a client identity', () => {
  let broker: EmbeddedBroker;
  let pi: RunningAgent;
  let cam: RunningAgent;
  let old: { stop(): Promise<void> } | undefined;
  let oldDir = '';
  let caller: RpcCaller;
  let gate: GateApprovals;
  let gateClient: ReturnType<typeof connectMqtt>;
  let bridge: McpBridge;
  let writer: AuditWriter;
  const bridgeAudit = join(dir, 'bridge-audit.jsonl');
  const gateRequests: unknown[] = [];
  const clients: Client[] = [];

  /** One MCP session: the SDK client `name`/`version` (its own words) over an in-memory link. */
  async function session(identity?: ClientIdentity, name = 'vitest-client', version = '1.0.0'): Promise<Client> {
    const server = bridge.createServer(identity);
    const [a, b] = InMemoryTransport.createLinkedPair();
    const client = new Client({ name, version });
    await Promise.all([server.connect(b), client.connect(a)]);
    clients.push(client);
    return client;
  }
  const names = async (c: Client) => (await c.listTools()).tools.map((t) => t.name).sort();
  const unknownTool = async (c: Client, name: string, args: Record<string, unknown> = {}) => {
    const e = await c.callTool({ name, arguments: args }).then(() => undefined, (err: unknown) => err);
    expect(e).toBeInstanceOf(McpError);
    expect((e as McpError).code).toBe(-32602);
    expect((e as McpError).message).toContain(`Unknown tool: ${name}`);
  };

  beforeAll(async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    pi = await startAgent(agentConfig('pi', broker.url), quiet, piTools);
    cam = await startAgent(agentConfig('cam', broker.url), quiet, camTools);

    // the base commit's protocol code, as an agent that predates _meta.onBehalfOf
    // (in a temp folder, without its tests, resolving zod and mqtt through a link to our node_modules)
    oldDir = mkdtempSync(join(tmpdir(), 'toolmesh-old-protocol-'));
    symlinkSync(join(REPO_ROOT, 'node_modules'), join(oldDir, 'node_modules'), 'dir');
    // test/fixtures/protocol-before-onbehalfof.tar.gz is `git archive 6ba062c protocol` without its tests,
    // committed so that the test does not need the git history (CI may clone shallow)
    execFileSync('tar', ['-xzf', join(REPO_ROOT, 'test/fixtures/protocol-before-onbehalfof.tar.gz'), '-C', oldDir], { stdio: 'pipe' });
    const oldProtocol = await import(join(oldDir, 'protocol/index.ts')) as typeof import('../protocol');
    expect(readFileSync(join(oldDir, 'protocol/schemas.ts'), 'utf8')).not.toContain('onBehalfOf');
    const oldServer = new oldProtocol.RpcServer({ authorization: { keys: new Map() }, connection: { url: broker.url }, agentId: 'old', tools: [oldProtocol.defineTool({
      name: 'echo', description: 'Echoes its text', risk: 'low', input: z.strictObject({ text: z.string() }),
      execute: (a: { text: string }) => { count('old/echo'); return { echoed: a.text }; },
    })] });
    await oldServer.start();
    old = oldServer;

    caller = new RpcCaller({ connection: { url: broker.url }, callerId: CALLER });
    await caller.start();
    await until(() => ['pi', 'cam', 'old'].every((a) => caller.agent(a)?.ready), 'the agents ready');

    // a stand-in confirm-gate: reads requests as the gate does, approves with a key the agents trust
    gateClient = connectMqtt({ url: broker.url });
    await new Promise<void>((r) => gateClient.once('connect', () => r()));
    await new Promise<void>((r, j) => gateClient.subscribe('toolmesh/v1/approvals/+/req', { qos: 1 }, (e) => (e ? j(e) : r())));
    gateClient.on('message', (topic, payload) => {
      const got = readApprovalRequest(payload.toString('utf8'));
      gateRequests.push(got);
      if (!('request' in got)) return;
      const q = got.request;
      const callerId = topic.split('/')[3];
      const token = signApproval({
        kid: 'gate-test', privateKey: gateKeys.privateKeyPem, caller: callerId, agent: q.agent, tool: q.tool, args: q.arguments,
        exp: Date.now() + 60_000, approver: 'gate:alice',
      });
      gateClient.publish(`toolmesh/v1/approvals/${callerId}/res`, JSON.stringify(approvedResponse(q.approvalId, token, 'gate:alice')), { qos: 1 });
    });
    gate = new GateApprovals({ connection: { url: broker.url }, root: 'toolmesh/v1', callerId: CALLER });
    gate.start();

    writer = await AuditWriter.open({ file: bridgeAudit });
    bridge = new McpBridge({
      caller,
      policy: parsePolicy('!*/secret'),
      clientAllow: new Map([
        [HA.label, parsePolicy('pi/*\nold/*')],
        // keyed by client_id, not label
        [KITCHEN.clientId, parsePolicy('cam/*')],
        [GARAGE.label, parsePolicy('garage/*')],
      ]),
      approvals: { mode: 'gate', gate, waitMs: 10_000 },
      audit: { writer, redactor: new Redactor({}) },
    });
    await until(async () => {
      const r = (gate as unknown as { subscribed: boolean }).subscribed;
      return r;
    }, 'the bridge\'s approval client subscribed');
  }, 30_000);

  afterAll(async () => {
    await Promise.all(clients.map((c) => c.close().catch(() => {})));
    await bridge?.close();
    await gate?.stop();
    await caller?.stop();
    if (gateClient) await endMqtt(gateClient);
    await writer?.close();
    await old?.stop();
    await pi?.stop();
    await cam?.stop();
    await broker?.close();
    if (oldDir) rmSync(oldDir, { recursive: true, force: true });
  });

  it('tools/list: each identified client sees only its own tools, within the global policy; stdio sessions see everything the policy offers', async () => {
    expect(await names(await session(HA, 'Home Assistant', '2026.1'))).toEqual(['old__echo', 'pi__echo', 'pi__remove_everything']);
    // a rule keyed by the client_id
    expect(await names(await session(KITCHEN))).toEqual(['cam__snapshot']);
    // identified but no rule while rules exist: nothing (fail closed)
    expect(await names(await session(STRANGER))).toEqual([]);
    // no identity (stdio, the owner's own process): unaffected by client rules, only the global policy
    expect(await names(await session())).toEqual(['cam__snapshot', 'old__echo', 'pi__echo', 'pi__remove_everything']);
    expect(bridge.listTools(KITCHEN).map((t) => t.name)).toEqual(['cam__snapshot']);
  });

  it('tools/call outside the client\'s set is -32602 unknown tool and nothing runs on the device', async () => {
    const before = { ...runs };
    const ha = await session(HA);
    const kitchen = await session(KITCHEN);
    const stranger = await session(STRANGER);
    await unknownTool(ha, 'cam__snapshot');
    await unknownTool(kitchen, 'pi__echo', { text: 'x' });
    await unknownTool(stranger, 'pi__echo', { text: 'x' });
    await unknownTool(stranger, 'cam__snapshot');
    // the global policy still applies to a client whose globs match
    await unknownTool(ha, 'pi__secret');
    expect(runs).toEqual(before);
    const r = await kitchen.callTool({ name: 'cam__snapshot', arguments: {} }) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(runs['cam/snapshot']).toBe((before['cam/snapshot'] ?? 0) + 1);
  });

  it('a client that calls itself by another client\'s name gains nothing: only the authenticated identity counts', async () => {
    // signed in as "kitchen", introduces itself in initialize as Home Assistant
    const spoof = await session(KITCHEN, 'home-assistant', '2026.1');
    expect(await names(spoof)).toEqual(['cam__snapshot']);
    await unknownTool(spoof, 'pi__echo', { text: 'let me in' });
    await unknownTool(spoof, 'pi__remove_everything', { target: 'all' });
    // an identity whose label is another client's client_id gets the label rule, not the id rule
    const confused = await session({ clientId: 'c-confused', label: 'oauth-kitchen-id' });
    expect(await names(confused)).toEqual(['cam__snapshot']); // the owner gave it that label: the owner's decision
    const other = await session({ clientId: 'home-assistant-2', label: 'ha2' });
    expect(await names(other)).toEqual([]);
  });

  it('identity lands in the bridge audit (clientId, label on every record of the session) and in the agent audit (onBehalfOf); stdio sessions have neither', async () => {
    const ha = await session(HA, 'Home Assistant', '2026.1');
    const plain = await session(undefined, 'Claude Desktop', '1.2');
    const r1 = await ha.callTool({ name: 'pi__echo', arguments: { text: 'from ha' } }) as CallToolResult;
    expect(r1.structuredContent).toEqual({ echoed: 'from ha' });
    const r2 = await plain.callTool({ name: 'pi__echo', arguments: { text: 'from stdio' } }) as CallToolResult;
    expect(r2.structuredContent).toEqual({ echoed: 'from stdio' });

    await until(() => records(bridgeAudit).filter((r) => r.kind === 'tool-result').length >= 2, 'both results in the bridge audit');
    const bridgeRecs = records(bridgeAudit);
    const haRecs = bridgeRecs.filter((r) => (r.args as { text?: string } | undefined)?.text === 'from ha' || (r.kind === 'tool-result' && r.label));
    const haCall = bridgeRecs.find((r) => r.kind === 'tool-call' && (r.args as { text?: string }).text === 'from ha')!;
    expect(haCall).toMatchObject({ caller: CALLER, clientId: HA.clientId, label: HA.label, client: 'Home Assistant 2026.1', agent: 'pi', tool: 'echo' });
    const haResult = bridgeRecs.find((r) => r.kind === 'tool-result' && r.callId === haCall.callId && r.label)!;
    expect(haResult).toMatchObject({ clientId: HA.clientId, label: HA.label, outcome: 'ok' });
    expect(haRecs.length).toBeGreaterThanOrEqual(2);
    const plainCall = bridgeRecs.find((r) => r.kind === 'tool-call' && (r.args as { text?: string }).text === 'from stdio')!;
    expect(plainCall.client).toBe('Claude Desktop 1.2');
    expect(plainCall).not.toHaveProperty('clientId');
    expect(plainCall).not.toHaveProperty('label');
    // records with and without identity verify as one chain, also with the operator's command (the built CLI)
    expect(verifyChain([bridgeAudit])).toMatchObject({ ok: true });
    const cli = spawnSync(process.execPath, [join(REPO_ROOT, 'packages/agent/dist/agent/toolmesh.js'), 'audit', 'verify', bridgeAudit], { encoding: 'utf8' });
    expect(cli.status, cli.stderr + cli.stdout).toBe(0);

    const piFile = join(dir, 'pi-audit.jsonl');
    await until(() => records(piFile).filter((r) => r.tool === 'echo').length >= 2, 'both calls in the agent audit');
    const piRecs = records(piFile).filter((r) => r.tool === 'echo');
    const fromHa = piRecs.find((r) => (r.args as { text?: string }).text === 'from ha')!;
    expect(fromHa).toMatchObject({ kind: 'tool-call', caller: CALLER, onBehalfOf: 'home-assistant', outcome: 'ok' });
    const fromPlain = piRecs.find((r) => (r.args as { text?: string }).text === 'from stdio')!;
    expect(fromPlain).not.toHaveProperty('onBehalfOf');
    expect(verifyChain([piFile])).toMatchObject({ ok: true });
  });

  it('gate mode: the approval request names the label (requester and onBehalfOf); approval, start and call are recorded with the identity', async () => {
    const ha = await session(HA, 'Home Assistant', '2026.1');
    const before = runs['pi/remove_everything'] ?? 0;
    gateRequests.length = 0;
    const r = await ha.callTool({ name: 'pi__remove_everything', arguments: { target: 'attic' } }) as CallToolResult;
    expect(r.isError, textOf(r)).toBeFalsy();
    expect(runs['pi/remove_everything']).toBe(before + 1);
    expect(gateRequests).toHaveLength(1);
    const q = (gateRequests[0] as { request: Record<string, unknown> }).request;
    expect(q.requester).toBe(`MCP client home-assistant (client Home Assistant 2026.1) via toolmesh mcp (caller ${CALLER})`);
    expect(q.onBehalfOf).toBe('home-assistant');

    const approval = records(bridgeAudit).find((x) => x.kind === 'approval' && x.tool === 'remove_everything')!;
    expect(approval).toMatchObject({ clientId: HA.clientId, label: HA.label, approval: { approver: 'gate:alice' } });
    const piFile = join(dir, 'pi-audit.jsonl');
    await until(() => records(piFile).some((x) => x.kind === 'tool-call' && x.tool === 'remove_everything'), 'the high-risk call in the agent audit');
    const started = records(piFile).find((x) => x.kind === 'call-started' && x.tool === 'remove_everything')!;
    expect(started).toMatchObject({ onBehalfOf: 'home-assistant', approval: { approver: 'gate:alice' } });
    expect(records(piFile).find((x) => x.kind === 'tool-call' && x.tool === 'remove_everything')).toMatchObject({ onBehalfOf: 'home-assistant' });
  });

  it('elicit mode: the token the bridge signs names the label as well as the client\'s own name', async () => {
    const elicitBridge = new McpBridge({
      caller, clientAllow: new Map([[HA.label, parsePolicy('pi/remove_everything')]]),
      approvals: { mode: 'elicit', kid: 'elicit-test', privateKeyPem: elicitKeys.privateKeyPem }, audit: { writer, redactor: new Redactor({}) },
    });
    try {
      const server = elicitBridge.createServer(HA);
      const [a, b] = InMemoryTransport.createLinkedPair();
      const client = new Client({ name: 'Home Assistant', version: '2026.1' }, { capabilities: { elicitation: { form: {} } } });
      client.setRequestHandler(ElicitRequestSchema, async () => ({ action: 'accept', content: { decision: 'approve' } }));
      await Promise.all([server.connect(b), client.connect(a)]);
      clients.push(client);
      const r = await client.callTool({ name: 'pi__remove_everything', arguments: { target: 'cellar' } }) as CallToolResult;
      expect(r.isError, textOf(r)).toBeFalsy();
      const approval = records(bridgeAudit).find((x) => x.kind === 'approval' && (x.args as { target?: string }).target === 'cellar')!;
      expect(approval).toMatchObject({ label: HA.label, approval: { approver: 'mcp-elicitation:home-assistant (client Home Assistant 2026.1)', kid: 'elicit-test' } });
      const piFile = join(dir, 'pi-audit.jsonl');
      await until(() => records(piFile).some((x) => x.kind === 'tool-call' && (x.args as { target?: string } | undefined)?.target === 'cellar'), 'the call in the agent audit');
      expect(records(piFile).find((x) => x.kind === 'tool-call' && (x.args as { target?: string } | undefined)?.target === 'cellar'))
        .toMatchObject({ onBehalfOf: HA.label, approval: { approver: 'mcp-elicitation:home-assistant (client Home Assistant 2026.1)' } });
    } finally {
      await elicitBridge.close();
    }
  });

  it('requester text: the label first, the self-given name after it and cut first; without identity as before', () => {
    expect(requesterOf({ clientName: 'Claude Desktop 1.2', callerId: 'mcp-desk' })).toBe('Claude Desktop 1.2 via toolmesh mcp (caller mcp-desk)');
    const long = requesterOf({ clientName: 'x'.repeat(500), callerId: 'c'.repeat(64), identity: { clientId: 'a', label: 'l'.repeat(64) } });
    expect(long.length).toBeLessThanOrEqual(200);
    expect(long).toMatch(new RegExp(`^MCP client ${'l'.repeat(64)} \\(client x+…\\) via toolmesh mcp \\(caller ${'c'.repeat(64)}\\)$`));
  });

  it('an agent that predates onBehalfOf answers calls that carry it', async () => {
    const ha = await session(HA);
    const before = runs['old/echo'] ?? 0;
    const r = await ha.callTool({ name: 'old__echo', arguments: { text: 'hi old' } }) as CallToolResult;
    expect(r.isError, textOf(r)).toBeFalsy();
    expect(r.structuredContent).toEqual({ echoed: 'hi old' });
    expect(runs['old/echo']).toBe(before + 1);
  });

  it('a malformed onBehalfOf: the agent answers -32602 naming _meta.onBehalfOf and runs nothing; the caller does not send one; the bridge refuses a malformed identity', async () => {
    const before = runs['pi/echo'] ?? 0;
    const raw = connectMqtt({ url: broker.url });
    try {
      await new Promise<void>((r) => raw.once('connect', () => r()));
      await new Promise<void>((r, j) => raw.subscribe('toolmesh/v1/agents/pi/rpc/raw-caller/res', { qos: 1 }, (e) => (e ? j(e) : r())));
      const answers: Array<{ id: unknown; error?: { code: number; message: string } }> = [];
      raw.on('message', (_t, p) => answers.push(JSON.parse(p.toString('utf8'))));
      for (const [id, bad] of [['b1', 'has space'], ['b2', 'x'.repeat(65)], ['b3', 42], ['b4', '']] as const) {
        raw.publish('toolmesh/v1/agents/pi/rpc/raw-caller/req', JSON.stringify({
          jsonrpc: '2.0', id, method: 'tools/call', params: { name: 'echo', arguments: { text: 'x' }, _meta: { onBehalfOf: bad } },
        }), { qos: 1 });
      }
      raw.publish('toolmesh/v1/agents/pi/rpc/raw-caller/req', JSON.stringify({
        jsonrpc: '2.0', id: 'ok1', method: 'tools/call', params: { name: 'echo', arguments: { text: 'raw' }, _meta: { onBehalfOf: 'raw.client_1-x' } },
      }), { qos: 1 });
      await until(() => answers.length >= 5, 'five answers');
      for (const id of ['b1', 'b2', 'b3', 'b4']) {
        const a = answers.find((x) => x.id === id)!;
        expect(a.error?.code).toBe(-32602);
        expect(a.error?.message).toContain('_meta.onBehalfOf');
      }
      expect(answers.find((x) => x.id === 'ok1')).toMatchObject({ result: { structuredContent: { echoed: 'raw' } } });
    } finally {
      await endMqtt(raw);
    }
    expect(runs['pi/echo']).toBe(before + 1);
    const piFile = join(dir, 'pi-audit.jsonl');
    await until(() => records(piFile).some((r) => r.caller === 'raw-caller'), 'the raw call in the agent audit');
    expect(records(piFile).filter((r) => r.caller === 'raw-caller').map((r) => r.onBehalfOf)).toEqual(['raw.client_1-x']);

    const notSent = await caller.call('pi', 'echo', { text: 'x' }, { onBehalfOf: 'not a label' });
    expect(toolErrorOf(notSent)?.code).toBe('INVALID_ARGUMENTS');
    expect(toolErrorOf(notSent)?.message).toMatch(/onBehalfOf must match/);
    expect(runs['pi/echo']).toBe(before + 1);

    expect(() => bridge.createServer({ clientId: 'x', label: 'bad label' })).toThrow(/identity\.label must match/);
    expect(() => bridge.createServer({ clientId: '', label: 'ok' })).toThrow(/identity\.clientId/);
    expect(() => bridge.createServer({ clientId: 'a\nb', label: 'ok' })).toThrow(/identity\.clientId/);
  });

  it('list_changed per session: a limited session hears only of changes to its own tools', async () => {
    const heard = { ha: 0, garage: 0, plain: 0 };
    const ha = await session(HA);
    const garage = await session(GARAGE);
    const plain = await session();
    ha.setNotificationHandler(ToolListChangedNotificationSchema, () => { heard.ha++; });
    garage.setNotificationHandler(ToolListChangedNotificationSchema, () => { heard.garage++; });
    plain.setNotificationHandler(ToolListChangedNotificationSchema, () => { heard.plain++; });
    expect(await names(garage)).toEqual([]);

    const garageAgent = await startAgent(validateConfig({ version: 1, agent: { id: 'garage', kind: 'pi' }, broker: { url: broker.url } }, 'g.yaml', dir), quiet, [echo('garage')]);
    try {
      await until(() => heard.garage >= 1 && heard.plain >= 1, 'list_changed to the garage and the plain session');
      expect(await names(garage)).toEqual(['garage__echo']);
      expect(await names(plain)).toContain('garage__echo');
      expect(await names(ha)).not.toContain('garage__echo');
      const r = await garage.callTool({ name: 'garage__echo', arguments: { text: 'door' } }) as CallToolResult;
      expect(r.structuredContent).toEqual({ echoed: 'door' });
    } finally {
      await garageAgent.stop();
    }
    await until(() => heard.garage >= 2 && heard.plain >= 2, 'list_changed after the garage agent left');
    expect(await names(garage)).toEqual([]);
    // a call to the tool whose agent left: still unknown to HA (not its tool), AGENT_OFFLINE to garage
    await unknownTool(ha, 'garage__echo', { text: 'x' });
    const gone = await garage.callTool({ name: 'garage__echo', arguments: { text: 'x' } }) as CallToolResult;
    expect(toolErrorOf(gone as never)?.code).toBe('AGENT_OFFLINE');
    await new Promise((r) => setTimeout(r, 300));
    expect(heard.ha).toBe(0);
  });
});

describe('--client-allow and clients.allow', () => {
  const base = ['--broker', 'mqtt://127.0.0.1:1883'];
  const load = (argv: string[]) => {
    const s = loadMcpSettings([...base, ...argv]);
    if (s.help) throw new Error('help');
    return s.cfg;
  };

  it('collects LABEL=GLOB flags per client, merged over the config file, into policies', () => {
    const file = join(dir, 'mcp.yaml');
    writeFileSync(file, 'version: 1\nclients:\n  allow:\n    kitchen: ["cam/*"]\n    c-ha-0001: ["pi/*"]\n');
    const cfg = load(['--config', file, '--client-allow', 'home-assistant=pi/*', '--client-allow', 'home-assistant=!*/docker_*', '--client-allow', 'c-ha-0001=old/*']);
    expect(cfg.clients.allow).toEqual({ kitchen: ['cam/*'], 'c-ha-0001': ['old/*'], 'home-assistant': ['pi/*', '!*/docker_*'] });
    const rules = clientAllowOf(cfg)!;
    expect([...rules.keys()].sort()).toEqual(['c-ha-0001', 'home-assistant', 'kitchen']);
    expect(rules.get('home-assistant')!.source).toEqual(['pi/*', '!*/docker_*']);
    expect(clientAllowOf(load([]))).toBeUndefined();
  });

  it('refuses bad rules naming the flag or key', () => {
    expect(() => load(['--client-allow', 'nolabel'])).toThrow(/--client-allow nolabel: expected LABEL=GLOB/);
    expect(() => load(['--client-allow', '=pi/*'])).toThrow(/expected LABEL=GLOB/);
    expect(() => load(['--client-allow', 'ha='])).toThrow(/expected LABEL=GLOB/);
    expect(() => load(['--client-allow', '__proto__=pi/*'])).toThrow(McpUsageError);
    expect(() => clientAllowOf(load(['--client-allow', 'ha=pi']))).toThrow(/clients\.allow\.ha .*policy line 1 "pi" is not an agent\/tool pattern/);
    const file = join(dir, 'bad.yaml');
    writeFileSync(file, 'version: 1\nclients:\n  allow:\n    kitchen: []\n    "bad key": ["pi/*"]\n');
    let message = '';
    try { load(['--config', file]); } catch (e) { message = (e as Error).message; }
    expect(message).toMatch(/clients\.allow\.kitchen: give at least one agent\/tool glob/);
    expect(message).toMatch(/clients\.allow.*must be a client label or client_id/);
  });
});
