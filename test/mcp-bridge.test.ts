// `toolmesh mcp` as its users meet it: the real bridge process (dist/nodes/cli.js mcp, the toolmesh-node-red bin)
// driven by the MCP SDK's own Client over stdio and over Streamable HTTP, with a real agent
// runtime on a real broker (aedes in-process; Debian's mosquitto for the interop pass). Tools in
// the agent count their runs, so "nothing ran" is checked on the device, not inferred.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import { ElicitRequestSchema, McpError, ToolListChangedNotificationSchema, type CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool, generateApprovalKeys, publicKeyOf, type ToolDefinition } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { verifyChain } from '../protocol/audit';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { freePort, startMosquitto, type Mosquitto } from './support/mosquitto';
import { REPO_ROOT } from './support/node-red-process';
import { until } from './support/until';

const BIN = join(REPO_ROOT, 'dist/nodes/cli.js');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-test-'));
const quiet = { info() {}, warn() {}, error() {} };
const keys = generateApprovalKeys();
const keyFile = join(dir, 'mcp-signing.key');
writeFileSync(keyFile, keys.privateKeyPem, { mode: 0o600 });

const runs: Record<string, number> = {};
const cancelled: Record<string, number> = {};
const count = (name: string) => { runs[name] = (runs[name] ?? 0) + 1; };
// 1x1 PNG
const PNG = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==';

const tools: ToolDefinition[] = [
  defineTool({
    name: 'echo', description: 'Echoes its text', risk: 'low', readOnly: true, idempotent: true,
    input: z.strictObject({ text: z.string().max(100) }),
    execute: (a) => { count('echo'); return { echoed: a.text }; },
  }),
  defineTool({
    name: 'snapshot', description: 'Takes a picture', risk: 'low', readOnly: true,
    input: z.strictObject({}),
    execute: () => { count('snapshot'); return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }, { type: 'text', text: '1x1 test image' }] }; },
  }),
  defineTool({
    name: 'encode', description: 'Long work with progress', risk: 'medium',
    input: z.strictObject({ steps: z.number().int().min(1).max(10) }),
    execute: async (a, ctx) => {
      count('encode');
      for (let i = 1; i <= a.steps; i++) {
        await new Promise((r) => setTimeout(r, 30));
        ctx.progress(i, a.steps, `step ${i}`);
      }
      return { steps: a.steps };
    },
  }),
  defineTool({
    name: 'wait', description: 'Waits until cancelled', risk: 'low',
    input: z.strictObject({ ms: z.number().int().max(60_000) }),
    execute: (a, ctx) => new Promise((resolve) => {
      count('wait');
      const t = setTimeout(() => resolve({ waited: a.ms }), a.ms);
      ctx.signal.addEventListener('abort', () => { clearTimeout(t); cancelled.wait = (cancelled.wait ?? 0) + 1; resolve({ aborted: true }); });
    }),
  }),
  defineTool({
    name: 'remove_everything', description: 'Removes everything', risk: 'high', destructive: true,
    input: z.strictObject({ target: z.string() }),
    execute: (a) => { count('remove_everything'); return { removed: a.target }; },
  }),
];

function agentConfig(id: string, url: string) {
  return validateConfig({
    version: 1, agent: { id, name: `Test ${id}`, kind: 'pi' }, broker: { url },
    approvals: { keys: { 'mcp-test': keys.publicKeyPem }, usedTokensFile: join(dir, `${id}-used.jsonl`) },
  }, 'test.yaml', dir);
}

function textOf(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

/** The bridge over stdio, started by the SDK client as VS Code would. */
async function stdioClient(url: string, extra: string[] = [], opts: { elicit?: boolean } = {}): Promise<{ client: Client; transport: StdioClientTransport; stderr: () => string }> {
  let err = '';
  const transport = new StdioClientTransport({ command: process.execPath, args: [BIN, 'mcp', '--broker', url, ...extra], stderr: 'pipe' });
  transport.stderr?.on('data', (d) => { err += d; });
  const client = new Client({ name: 'vitest-client', version: '1.0.0' }, { capabilities: opts.elicit ? { elicitation: { form: {} } } : {} });
  await client.connect(transport);
  return { client, transport, stderr: () => err };
}

describe.each(['aedes', 'mosquitto'] as const)('toolmesh mcp over stdio on %s', (brokerKind) => {
  let aedes: EmbeddedBroker | undefined;
  let mosq: Mosquitto | null = null;
  let url = '';
  let agent: RunningAgent;
  let c: Awaited<ReturnType<typeof stdioClient>>;

  beforeAll(async () => {
    if (brokerKind === 'aedes') {
      aedes = await startBroker({ port: 0, host: '127.0.0.1' });
      url = aedes.url;
    } else {
      mosq = await startMosquitto();
      if (!mosq) return;
      url = mosq.url;
    }
    agent = await startAgent(agentConfig(`pi-${brokerKind}`, url), quiet, tools);
    c = await stdioClient(url, ['--caller-id', `mcp-test-${brokerKind}`]);
  });
  afterAll(async () => {
    await c?.client.close();
    await agent?.stop();
    await aedes?.close();
    await mosq?.stop();
  });

  it('lists every tool of the ready agent, named <agent>__<tool>, with annotations and the risk in _meta', async (ctx) => {
    if (!url) return ctx.skip();
    const pi = `pi-${brokerKind}`;
    await until(async () => (await c.client.listTools()).tools.length >= tools.length, 'the tools listed', 5000);
    const { tools: listed } = await c.client.listTools();
    const echo = listed.find((t) => t.name === `${pi}__echo`)!;
    expect(echo).toBeDefined();
    expect(echo.annotations).toMatchObject({ readOnlyHint: true, destructiveHint: false, idempotentHint: true, title: `Echo on Test ${pi}` });
    expect(echo._meta).toMatchObject({ 'toolmesh/risk': 'low', 'toolmesh/agent': pi, 'toolmesh/tool': 'echo' });
    expect(echo.inputSchema).toMatchObject({ type: 'object', properties: { text: { type: 'string' } } });
    const rm = listed.find((t) => t.name === `${pi}__remove_everything`)!;
    expect(rm.annotations).toMatchObject({ destructiveHint: true, readOnlyHint: false });
    expect(rm._meta!['toolmesh/risk']).toBe('high');
  });

  it('calls a tool: structured content and text come back', async (ctx) => {
    if (!url) return ctx.skip();
    const before = runs.echo ?? 0;
    const r = (await c.client.callTool({ name: `pi-${brokerKind}__echo`, arguments: { text: 'hello mesh' } })) as CallToolResult;
    expect(r.isError).toBeFalsy();
    expect(r.structuredContent).toEqual({ echoed: 'hello mesh' });
    expect(runs.echo).toBe(before + 1);
  });

  it('passes images through', async (ctx) => {
    if (!url) return ctx.skip();
    const r = (await c.client.callTool({ name: `pi-${brokerKind}__snapshot`, arguments: {} })) as CallToolResult;
    expect(r.content[0]).toEqual({ type: 'image', data: PNG, mimeType: 'image/png' });
  });

  it('turns protocol progress into MCP progress', async (ctx) => {
    if (!url) return ctx.skip();
    const seen: Array<{ progress: number; total?: number; message?: string }> = [];
    const r = (await c.client.callTool({ name: `pi-${brokerKind}__encode`, arguments: { steps: 4 } }, undefined, { onprogress: (p) => seen.push(p) })) as CallToolResult;
    expect(r.structuredContent).toEqual({ steps: 4 });
    // in order, with total and message; the SDK client may drop the last one when it reads it in
    // the same chunk as the response (modelcontextprotocol/typescript-sdk#2580)
    expect(seen.map((p) => p.progress).slice(0, 3)).toEqual([1, 2, 3]);
    expect(seen.length).toBeLessThanOrEqual(4);
    expect(seen[2]).toMatchObject({ total: 4, message: 'step 3' });
  });

  it('invalid arguments are an isError result and the tool does not run; an unknown tool is -32602', async (ctx) => {
    if (!url) return ctx.skip();
    const before = runs.echo ?? 0;
    const r = (await c.client.callTool({ name: `pi-${brokerKind}__echo`, arguments: { text: 42 } })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect((r.structuredContent as { error: { code: string } }).error.code).toBe('INVALID_ARGUMENTS');
    expect(runs.echo ?? 0).toBe(before);
    const e = await c.client.callTool({ name: 'nope__nothing', arguments: {} }).then(() => undefined, (x: unknown) => x);
    expect(e).toBeInstanceOf(McpError);
    expect((e as McpError).code).toBe(-32602);
  });

  it('refuses a high-risk tool in the default mode: nothing runs on the device', async (ctx) => {
    if (!url) return ctx.skip();
    const r = (await c.client.callTool({ name: `pi-${brokerKind}__remove_everything`, arguments: { target: 'all' } })) as CallToolResult;
    expect(r.isError).toBe(true);
    expect((r.structuredContent as { error: { code: string } }).error.code).toBe('APPROVAL_REQUIRED');
    expect(textOf(r)).toMatch(/--approvals gate/);
    expect(runs.remove_everything ?? 0).toBe(0);
  });

  it('an MCP cancel cancels the protocol call on the agent', async (ctx) => {
    if (!url) return ctx.skip();
    const before = cancelled.wait ?? 0;
    const started = runs.wait ?? 0;
    const ac = new AbortController();
    const p = c.client.callTool({ name: `pi-${brokerKind}__wait`, arguments: { ms: 20_000 } }, undefined, { signal: ac.signal }).catch((e: Error) => e);
    await until(() => (runs.wait ?? 0) > started, 'the wait tool started', 5000);
    ac.abort('user pressed stop');
    await p;
    await until(() => (cancelled.wait ?? 0) === before + 1, 'the agent cancelled the run', 5000);
  });
});

describe('toolmesh mcp: catalog changes, offline agents, clients that go away, hostile input', () => {
  let broker: EmbeddedBroker;
  beforeAll(async () => { broker = await startBroker({ port: 0, host: '127.0.0.1' }); });
  afterAll(async () => { await broker.close(); });

  it('sends list_changed when an agent stops, and a call to its tool is AGENT_OFFLINE', async () => {
    const agent = await startAgent(agentConfig('pi-leaving', broker.url), quiet, tools);
    const c = await stdioClient(broker.url, ['--caller-id', 'mcp-test-leaving']);
    try {
      await until(async () => (await c.client.listTools()).tools.some((t) => t.name === 'pi-leaving__echo'), 'the tools listed', 5000);
      let changed = 0;
      c.client.setNotificationHandler(ToolListChangedNotificationSchema, () => { changed++; });
      await agent.stop();
      await until(() => changed > 0, 'notifications/tools/list_changed', 5000);
      expect((await c.client.listTools()).tools.some((t) => t.name.startsWith('pi-leaving__'))).toBe(false);
      const r = (await c.client.callTool({ name: 'pi-leaving__echo', arguments: { text: 'x' } })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect((r.structuredContent as { error: { code: string } }).error.code).toBe('AGENT_OFFLINE');
    } finally {
      await c.client.close();
    }
  });

  it('a stdio client that goes away mid-call cancels the protocol call, and the bridge exits 0', async () => {
    const agent = await startAgent(agentConfig('pi-abandoned', broker.url), quiet, tools);
    const c = await stdioClient(broker.url, ['--caller-id', 'mcp-test-abandoned']);
    try {
      await until(async () => (await c.client.listTools()).tools.some((t) => t.name === 'pi-abandoned__wait'), 'the tools listed', 5000);
      const before = cancelled.wait ?? 0;
      const startedBefore = runs.wait ?? 0;
      void c.client.callTool({ name: 'pi-abandoned__wait', arguments: { ms: 30_000 } }).catch(() => {});
      await until(() => (runs.wait ?? 0) > startedBefore, 'the wait tool started', 5000);
      const child = (c.transport as unknown as { _process?: ChildProcess })._process!;
      const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
      child.stdin!.end(); // the client is gone: its end of the pipe closes
      expect(await exited).toBe(0);
      await until(() => (cancelled.wait ?? 0) === before + 1, 'the agent cancelled the abandoned call', 5000);
    } finally {
      await c.client.close().catch(() => {});
      await agent.stop();
    }
  });

  it('an oversized line and a malformed line get JSON-RPC errors; the session goes on', async () => {
    const agent = await startAgent(agentConfig('pi-hostile', broker.url), quiet, tools);
    const child = spawn(process.execPath, [BIN, 'mcp', '--broker', broker.url, '--caller-id', 'mcp-test-hostile'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const send = (m: unknown) => child.stdin.write(`${typeof m === 'string' ? m : JSON.stringify(m)}\n`);
    try {
      send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'raw', version: '0' } } });
      await until(() => out.includes('"id":1'), 'initialize answered', 5000);
      send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      child.stdin.write(`{"jsonrpc":"2.0","id":2,"method":"tools/list","params":{"x":"${'a'.repeat(5 * 1024 * 1024)}"}}\n`);
      await until(() => /over the \d+-byte limit/.test(out), 'the oversized line refused', 10_000);
      send('{"jsonrpc": "2.0", "id": 3, "method": ');
      await until(() => out.includes('"code":-32700'), 'the malformed line answered -32700', 5000);
      const deep = `${'['.repeat(20_000)}${']'.repeat(20_000)}`;
      await until(async () => {
        send({ jsonrpc: '2.0', id: 4, method: 'tools/list' });
        await new Promise((r) => setTimeout(r, 200));
        return out.includes('pi-hostile__echo');
      }, 'tools/list still answered', 5000);
      child.stdin.write(`{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"pi-hostile__echo","arguments":{"text":${deep}}}}\n`);
      await until(() => /"id":5/.test(out), 'the deep call answered', 5000);
      const line5 = out.split('\n').find((l) => l.includes('"id":5'))!;
      expect(line5).toMatch(/"isError":true/);
      expect(line5).toMatch(/INVALID_ARGUMENTS/);
      expect(child.exitCode).toBeNull();
    } finally {
      child.kill('SIGTERM');
      await new Promise((r) => child.once('exit', r));
      await agent.stop();
    }
  });

  it('--allow and --deny limit what the bridge offers and calls, with the registry\'s glob rules', async () => {
    const agent = await startAgent(agentConfig('pi-policy', broker.url), quiet, tools);
    const c = await stdioClient(broker.url, ['--caller-id', 'mcp-test-policy', '--allow', 'pi-policy/*', '--deny', '*/remove_*', '--deny', '*/wait']);
    try {
      const names = (await c.client.listTools()).tools.map((t) => t.name).sort();
      expect(names).toEqual(['pi-policy__echo', 'pi-policy__encode', 'pi-policy__snapshot']);
      const e = await c.client.callTool({ name: 'pi-policy__remove_everything', arguments: { target: 'x' } }).then(() => undefined, (x: unknown) => x);
      expect((e as McpError).code).toBe(-32602);
    } finally {
      await c.client.close();
      await agent.stop();
    }
  });

  it('a second bridge with an id that is online refuses to start (exit 1)', async () => {
    const c = await stdioClient(broker.url, ['--caller-id', 'mcp-test-twice']);
    try {
      await new Promise((r) => setTimeout(r, 300));
      const second = spawn(process.execPath, [BIN, 'mcp', '--broker', broker.url, '--caller-id', 'mcp-test-twice'], { stdio: ['pipe', 'pipe', 'pipe'] });
      let err = '';
      second.stderr.on('data', (d) => { err += d; });
      const code = await new Promise<number | null>((r) => second.once('exit', r));
      expect(code).toBe(1);
      expect(err).toMatch(/caller id mcp-test-twice is online already/);
    } finally {
      await c.client.close();
    }
  });

  it('keygen writes a 0600 key and prints an approvals snippet an agent config accepts', async () => {
    const out = join(dir, 'keygen.key');
    const r = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'mcp', 'keygen', '--out', out, '--kid', 'mcp-desk'], { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      p.stdout.on('data', (d) => { stdout += d; });
      p.once('exit', (code) => resolve({ code, stdout }));
    });
    expect(r.code).toBe(0);
    expect(statSync(out).mode & 0o777).toBe(0o600);
    const snippet = r.stdout.slice(r.stdout.indexOf('approvals:'));
    const cfg = validateConfig({ version: 1, agent: { id: 'k' }, broker: { url: broker.url }, ...(parseYaml(snippet) as object) }, 'k.yaml', dir);
    expect(Object.keys(cfg.approvals.keys)).toEqual(['mcp-desk']);
    expect(publicKeyOf(readFileSync(out, 'utf8'))).toBe(cfg.approvals.keys['mcp-desk']);
  });

  it('bad settings exit 2 naming the flag', async () => {
    const run = (args: string[]) => new Promise<{ code: number | null; err: string }>((resolve) => {
      const p = spawn(process.execPath, [BIN, 'mcp', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
      let err = '';
      p.stderr.on('data', (d) => { err += d; });
      p.once('exit', (code) => resolve({ code, err }));
    });
    expect(await run([])).toMatchObject({ code: 2, err: expect.stringMatching(/--broker is required/) });
    expect(await run(['--broker', 'http://x'])).toMatchObject({ code: 2, err: expect.stringMatching(/broker\.url: must be a broker URL/) });
    expect(await run(['--broker', broker.url, '--approvals', 'maybe'])).toMatchObject({ code: 2, err: expect.stringMatching(/approvals\.mode: must be one of refuse, elicit, gate/) });
    expect(await run(['--broker', broker.url, '--approvals', 'elicit'])).toMatchObject({ code: 2, err: expect.stringMatching(/needs --signing-key/) });
    expect(await run(['--broker', broker.url, '--http', '0.0.0.0:1'])).toMatchObject({ code: 2, err: expect.stringMatching(/authentication is required off loopback: a bearer token .*--oauth/) });
  });
});

describe('toolmesh mcp over Streamable HTTP', () => {
  let broker: EmbeddedBroker;
  let agent: RunningAgent;
  let bridge: ChildProcess;
  let port = 0;
  const token = 'test-token-0123456789abcdef';
  const auditFile = join(dir, 'mcp-audit.jsonl');

  beforeAll(async () => {
    broker = await startBroker({ port: 0, host: '127.0.0.1' });
    agent = await startAgent(agentConfig('pi-http', broker.url), quiet, tools);
    port = await freePort();
    bridge = spawn(process.execPath, [BIN, 'mcp', '--broker', broker.url, '--caller-id', 'mcp-test-http', '--http', `127.0.0.1:${port}`,
      '--approvals', 'elicit', '--signing-key', keyFile, '--kid', 'mcp-test', '--audit', auditFile], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOOLMESH_MCP_TOKEN: token } });
    let err = '';
    bridge.stderr!.on('data', (d) => { err += d; });
    await until(() => err.includes('serving MCP (Streamable HTTP)'), 'the HTTP bridge up', 10_000);
  });
  afterAll(async () => {
    bridge?.kill('SIGTERM');
    await new Promise((r) => bridge?.once('exit', r));
    await agent?.stop();
    await broker?.close();
  });

  const endpoint = () => new URL(`http://127.0.0.1:${port}/mcp`);
  async function httpClient(opts: { elicit?: (decision: 'approve' | 'deny') => void; answer?: 'approve' | 'deny' } = {}): Promise<Client> {
    const client = new Client({ name: 'vitest-http', version: '1.0.0' }, { capabilities: opts.answer ? { elicitation: { form: {} } } : {} });
    if (opts.answer) {
      client.setRequestHandler(ElicitRequestSchema, async (req) => {
        expect(req.params.message).toMatch(/Remove everything|remove_everything/i);
        return { action: 'accept', content: { decision: opts.answer! } };
      });
    }
    await client.connect(new StreamableHTTPClientTransport(endpoint(), { requestInit: { headers: { authorization: `Bearer ${token}` } } }));
    return client;
  }

  it('answers 401 without the token and 403 for a foreign Origin', async () => {
    const init = { jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'curl', version: '0' } } };
    const headers = { 'content-type': 'application/json', accept: 'application/json, text/event-stream' };
    const none = await fetch(endpoint(), { method: 'POST', headers, body: JSON.stringify(init) });
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Bearer/);
    const wrong = await fetch(endpoint(), { method: 'POST', headers: { ...headers, authorization: 'Bearer nope' }, body: JSON.stringify(init) });
    expect(wrong.status).toBe(401);
    const origin = await fetch(endpoint(), { method: 'POST', headers: { ...headers, authorization: `Bearer ${token}`, origin: 'http://evil.example' }, body: JSON.stringify(init) });
    expect(origin.status).toBe(403);
    // a DNS-rebinding page reaches us under its own name: fetch cannot forge Host, node:http can
    const host = await new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { ...headers, authorization: `Bearer ${token}`, host: `evil.example:${port}` } }, (res) => { res.resume(); resolve(res.statusCode!); });
      req.on('error', reject);
      req.end(JSON.stringify(init));
    });
    expect(host).toBe(403);
  });

  it('refuses an oversized body with 413 and goes on serving', async () => {
    const big = JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-11-25', capabilities: {}, clientInfo: { name: 'x'.repeat(5 * 1024 * 1024), version: '0' } } });
    const r = await fetch(endpoint(), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` }, body: big });
    expect(r.status).toBe(413);
    // the same without a Content-Length (chunked): refused once more than the limit has arrived
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/mcp', method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}`, 'transfer-encoding': 'chunked' } }, (res) => {
        let body = '';
        res.on('data', (d) => { body += d; });
        res.on('end', () => resolve({ status: res.statusCode!, body }));
      });
      req.on('error', reject);
      for (let i = 0; i < 6; i++) req.write(Buffer.alloc(1024 * 1024, 0x20));
      req.end();
    });
    expect(chunked.status).toBe(413);
    expect(JSON.parse(chunked.body).error.message).toMatch(/^Payload Too Large: Request body must not exceed \d+ bytes$/);
    // a body that is not JSON: 400 with JSON-RPC's parse error, as the SDK answers it
    const bad = await fetch(endpoint(), { method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', authorization: `Bearer ${token}` }, body: '{"jsonrpc": "2.0", ' });
    expect(bad.status).toBe(400);
    expect((await bad.json()).error.code).toBe(-32700);
    const client = await httpClient();
    expect((await client.listTools()).tools.length).toBeGreaterThan(0);
    await client.close();
  });

  it('an HTTP client that cancels cancels the protocol call on the agent', async () => {
    const client = await httpClient();
    try {
      await until(async () => (await client.listTools()).tools.some((t) => t.name === 'pi-http__wait'), 'the tools listed', 5000);
      const before = cancelled.wait ?? 0;
      const started = runs.wait ?? 0;
      const ac = new AbortController();
      const p = client.callTool({ name: 'pi-http__wait', arguments: { ms: 20_000 } }, undefined, { signal: ac.signal }).catch((e: Error) => e);
      await until(() => (runs.wait ?? 0) > started, 'the wait tool started', 5000);
      ac.abort('user pressed stop');
      expect(await p).toBeInstanceOf(Error);
      await until(() => (cancelled.wait ?? 0) === before + 1, 'the agent cancelled the run', 5000);
    } finally {
      await client.close();
    }
  });

  it('lists and calls with the token', async () => {
    const client = await httpClient();
    try {
      await until(async () => (await client.listTools()).tools.some((t) => t.name === 'pi-http__echo'), 'the tools listed', 5000);
      const r = (await client.callTool({ name: 'pi-http__echo', arguments: { text: 'over http' } })) as CallToolResult;
      expect(r.structuredContent).toEqual({ echoed: 'over http' });
    } finally {
      await client.close();
    }
  });

  it('elicit mode: the high-risk tool runs once the client user approves, and not when they deny', async () => {
    const before = runs.remove_everything ?? 0;
    const denier = await httpClient({ answer: 'deny' });
    try {
      await until(async () => (await denier.listTools()).tools.some((t) => t.name === 'pi-http__remove_everything'), 'the tools listed', 5000);
      const r = (await denier.callTool({ name: 'pi-http__remove_everything', arguments: { target: 'cache' } })) as CallToolResult;
      expect(r.isError).toBe(true);
      expect((r.structuredContent as { error: { code: string } }).error.code).toBe('DENIED');
      expect(runs.remove_everything ?? 0).toBe(before);
    } finally {
      await denier.close();
    }
    const approver = await httpClient({ answer: 'approve' });
    try {
      const r = (await approver.callTool({ name: 'pi-http__remove_everything', arguments: { target: 'cache' } })) as CallToolResult;
      expect(r.isError).toBeFalsy();
      expect(r.structuredContent).toEqual({ removed: 'cache' });
      expect(runs.remove_everything).toBe(before + 1);
    } finally {
      await approver.close();
    }
    // every call, approval and refusal is in the hash-chained log
    const v = verifyChain([auditFile], {});
    expect(v.ok).toBe(true);
    expect(v.records).toBeGreaterThanOrEqual(4);
  });
});
