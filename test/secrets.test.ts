// Issue 17, item 6: no secret in any output. One run of everything a user starts, with a secret
// planted in every credential field: the tool-registry's embedded broker with authentication
// (its users list), a real toolmesh-agent process (broker password from a passwordFile), the MCP
// bridge process (broker password file and HTTP bearer token), an llm-agent talking to the
// scripted fake LLM (API key), remote-tool and audit-log, in a real Node-RED process. It makes
// calls that work and calls that fail (a wrong broker password, a wrong bearer token, a wrong API
// key, a call the agent's policy refuses), then searches every output for each secret, raw,
// URL-encoded and base64: every process's stdout and stderr (Node-RED's carries node status and
// errors through a status/catch -> debug-to-console wiring), every message on the broker
// (retained catalogs and statuses included), every audit record, every answer and error message.
// It also checks that a broker URL with user info is refused by agent, bridge and registry,
// naming the fields to use, and that names with control characters reach log lines without them.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { printable, userInfoProblem, urlForLog } from '../protocol';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { freePort } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const AGENT_CLI = join(REPO_ROOT, 'packages/agent/dist/agent/cli.js');
const TOOLMESH = join(REPO_ROOT, 'dist/nodes/cli.js');
/** A secret with every character that tends to get encoded, split or echoed: `@`, `%`, `/`, spaces. */
const secret = (tag: string) => `s3cr%t/ p@ss word ${tag}`;
const SECRETS = {
  agentPassword: secret('agent-pw'),
  wrongAgentPassword: secret('wrong-agent-pw'),
  bridgePassword: secret('bridge-pw'),
  watcherPassword: secret('watcher-pw'),
  bridgeToken: secret('bridge-token'),
  wrongBridgeToken: secret('wrong-bridge-token'),
  llmKey: secret('llm-key'),
  wrongLlmKey: secret('wrong-llm-key'),
  urlPassword: secret('url-pw'),
};
/** Control characters of every kind {@link printable} removes, inside a name chosen by a stranger. */
const NASTY = 'ev\u001b[2J\nil\u0085\u2028\u202e\u2066x\u007f';
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/;

/** Every form in which a secret could leak: raw, URL-encoded, base64 (and base64url). */
function forms(s: string): string[] {
  return [s, encodeURIComponent(s), encodeURI(s), Buffer.from(s).toString('base64'), Buffer.from(s).toString('base64url')];
}

/** Names the secrets (and their forms) found in `text`, with where they were found. */
function leaks(where: string, text: string): string[] {
  const found: string[] = [];
  for (const [name, s] of Object.entries(SECRETS)) {
    for (const f of forms(s)) if (text.includes(f)) found.push(`${name} (${f === s ? 'raw' : f}) in ${where}`);
  }
  return found;
}

interface Proc {
  child: ChildProcess;
  out: () => string;
  exit: Promise<number | null>;
}

const procs: Proc[] = [];
function run(args: string[], env: NodeJS.ProcessEnv = {}): Proc {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TOOLMESH_BROKER_PASSWORD: '', TOOLMESH_MCP_TOKEN: '', ...env } });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exit = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const p = { child, out: () => out, exit };
  procs.push(p);
  return p;
}

async function stop(p: Proc): Promise<void> {
  if (p.child.exitCode === null && p.child.signalCode === null) {
    p.child.kill('SIGTERM');
    const t = setTimeout(() => p.child.kill('SIGKILL'), 10_000);
    await p.exit;
    clearTimeout(t);
  }
}

function textOf(r: CallToolResult): string {
  return r.content.map((c) => (c.type === 'text' ? c.text : '')).join('\n');
}

/** The text of every file under `dir` but the test's own inputs (configs, password and token files). */
function writtenFiles(dir: string): string {
  let text = '';
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true })) {
    if (e.isFile() && !/\.(pass|token|yaml)$/.test(e.name)) text += `\n--- ${join(e.parentPath, e.name)}\n${readFileSync(join(e.parentPath, e.name), 'utf8')}`;
  }
  return text;
}

describe('no secret in any output (issue 17, item 6)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-secrets-'));
  const files = (name: string, text: string) => {
    const f = join(dir, name);
    writeFileSync(f, `${text}\n`, { mode: 0o600 });
    return f;
  };
  let llm: FakeLlm;
  let red: NodeRedProcess;
  let agent: Proc;
  let bridge: Proc;
  let watcher: MqttClient;
  let brokerUrl = '';
  let bridgeUrl = '';
  /** Every message seen on the broker by an admin subscribed to `#` from the start, retained ones too. */
  const wire: string[] = [];
  /** Answers, results and error texts the test received. */
  const answers: string[] = [];

  beforeAll(async () => {
    llm = await startFakeLlm((body: any) => {
      const names: string[] = (body.tools ?? []).map((t: any) => t.function.name);
      const results = body.messages.filter((m: any) => m.role === 'tool');
      if (!results.length) return { toolCalls: [{ name: names.find((n) => n.endsWith('diag_echo'))!, arguments: { text: 'hello' } }] };
      return { content: `the agent said ${results[0].content}` };
    }, { apiKey: SECRETS.llmKey });
    const port = await freePort();
    brokerUrl = `mqtt://127.0.0.1:${port}`;
    const users = [
      `agent rtagent ${SECRETS.agentPassword}`,
      `caller mcp-desk ${SECRETS.bridgePassword}`,
      `admin watcher ${SECRETS.watcherPassword}`,
    ].join('\n');
    const debug = (id: string, complete: string) => ({ id, type: 'debug', z: 'tab', active: true, tosidebar: true, console: true, tostatus: false, complete, targetType: 'msg', wires: [] });
    const flows = [
      { id: 'tab', type: 'tab', label: 'secrets' },
      {
        id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port, host: '127.0.0.1', requireAuth: true, callerId: 'nodered-secrets', policy: '*/*',
        credentials: { users },
      },
      // a second registry whose broker URL holds a password: refused, and the password is in no output
      { id: 'reg-url', type: 'toolmesh-tool-registry', mode: 'external', broker: `mqtt://nodered:${SECRETS.urlPassword}@127.0.0.1:1` },
      { id: 'ask-in', type: 'http in', z: 'tab', url: '/ask', method: 'post', wires: [['llm']] },
      { id: 'llm', type: 'toolmesh-llm-agent', z: 'tab', registry: 'reg', baseUrl: llm.url, model: 'fake-model', maxIterations: 4, credentials: { apiKey: SECRETS.llmKey }, wires: [['n-audit'], ['n-audit'], []] },
      { id: 'ask-bad-in', type: 'http in', z: 'tab', url: '/ask-bad', method: 'post', wires: [['llm-bad']] },
      { id: 'llm-bad', type: 'toolmesh-llm-agent', z: 'tab', registry: 'reg', baseUrl: llm.url, model: 'fake-model', credentials: { apiKey: SECRETS.wrongLlmKey }, wires: [['n-audit'], [], []] },
      { id: 'call-in', type: 'http in', z: 'tab', url: '/call', method: 'post', wires: [['rt']] },
      { id: 'rt', type: 'toolmesh-remote-tool', z: 'tab', registry: 'reg', agent: 'rtagent', tool: 'diag_echo', arguments: '{"text":"hi"}', argsFrom: 'config', sendErrors: true, wires: [['n-audit']] },
      { id: 'refused-in', type: 'http in', z: 'tab', url: '/refused', method: 'post', wires: [['rt-refused']] },
      { id: 'rt-refused', type: 'toolmesh-remote-tool', z: 'tab', registry: 'reg', agent: 'rtagent', tool: 'diag_sleep', arguments: '{"ms":1}', argsFrom: 'config', sendErrors: true, wires: [['n-audit']] },
      { id: 'n-audit', type: 'toolmesh-audit-log', z: 'tab', file: join(dir, 'nodered-audit.jsonl'), wires: [['n-res', 'dbg-audit']] },
      { id: 'n-res', type: 'http response', z: 'tab', statusCode: '', headers: {}, wires: [] },
      // node status text and errors reach Node-RED's log, which the test searches
      { id: 'n-status', type: 'status', z: 'tab', scope: null, wires: [['dbg-status']] },
      { id: 'n-catch', type: 'catch', z: 'tab', scope: null, uncaught: false, wires: [['dbg-catch']] },
      { id: 'n-catch-llm', type: 'catch', z: 'tab', scope: ['llm-bad'], uncaught: false, wires: [['n-res']] },
      debug('dbg-status', 'status'), debug('dbg-catch', 'error'), debug('dbg-audit', 'payload'),
    ];
    red = await startNodeRedProcess({ settings: { logging: { console: { level: 'debug', metrics: false, audit: false } } } });
    const deployed = await fetch(`${red.url}/flows`, { method: 'POST', headers: { 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify(flows) });
    expect(deployed.status).toBe(204);
    await until(async () => {
      try {
        const c = await mqtt.connectAsync(brokerUrl, { username: 'watcher', password: SECRETS.watcherPassword, reconnectPeriod: 0 });
        watcher = c;
        return true;
      } catch {
        return false;
      }
    }, 'the embedded broker', 30_000);
    watcher.on('message', (topic, payload) => wire.push(`${topic} ${payload.toString('utf8')}`));
    await watcher.subscribeAsync('#', { qos: 1 });

    const agentYaml = files('rtagent.yaml', [
      'version: 1',
      'agent: { id: rtagent, name: Secret keeper }',
      `broker: { url: "${brokerUrl}", username: rtagent, passwordFile: ./rtagent.pass }`,
      'packs: { diag: { sleepTool: true } }',
      'policy: { callers: [{ caller: nodered-secrets, tools: [diag_echo] }, { caller: mcp-desk, tools: [diag_echo] }] }',
      'audit: { file: ./rtagent-audit.jsonl }',
    ].join('\n'));
    files('rtagent.pass', SECRETS.agentPassword);
    agent = run([AGENT_CLI, '--config', agentYaml]);
    await until(() => /online as rtagent/.test(agent.out()), 'the agent online', 20_000);

    const bridgePort = await freePort();
    bridgeUrl = `http://127.0.0.1:${bridgePort}/mcp`;
    bridge = run([TOOLMESH, 'mcp', '--broker', brokerUrl, '--username', 'mcp-desk', '--password-file', files('bridge.pass', SECRETS.bridgePassword),
      '--caller-id', 'mcp-desk', '--http', `127.0.0.1:${bridgePort}`, '--token-file', files('bridge.token', SECRETS.bridgeToken), '--audit', join(dir, 'bridge-audit.jsonl')]);
    await until(() => /serving MCP/.test(bridge.out()) && /connected: /.test(bridge.out()), 'the bridge serving', 20_000);
  }, 120_000);

  afterAll(async () => {
    await watcher?.endAsync();
    for (const p of procs) await stop(p);
    await red?.stop();
    await llm?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('works and fails without a secret in any output', async () => {
    try {
      await scenario();
    } catch (e) {
      // the outputs tell where it stopped
      throw new Error(`${(e as Error).message}\n--- answers:\n${answers.join('\n')}\n--- Node-RED:\n${red.output().slice(-6000)}\n--- agent:\n${agent.out().slice(-3000)}\n--- bridge:\n${bridge.out().slice(-3000)}`);
    }
  }, 180_000);

  async function scenario(): Promise<void> {
    // an llm-agent run that calls the agent's tool, and one with the wrong API key
    const ok = await fetch(`${red.url}/ask`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'echo hello', signal: AbortSignal.timeout(20_000) });
    const okText = await ok.text();
    answers.push(okText);
    expect(okText).toMatch(/the agent said/);
    const bad = await fetch(`${red.url}/ask-bad`, { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'echo hello', signal: AbortSignal.timeout(20_000) });
    answers.push(await bad.text());
    await until(() => /failed: HTTP 401/.test(red.output()), 'the llm-agent refused by the LLM', 10_000);
    // remote-tool: a call that works and one the agent's policy refuses
    const call = await fetch(`${red.url}/call`, { method: 'POST', signal: AbortSignal.timeout(20_000) });
    const callText = await call.text();
    answers.push(callText);
    expect(callText).toMatch(/hi/);
    const refused = await fetch(`${red.url}/refused`, { method: 'POST', signal: AbortSignal.timeout(20_000) });
    const refusedText = await refused.text();
    answers.push(refusedText);
    expect(refusedText).toMatch(/PERMISSION_DENIED/);

    // the MCP bridge: a wrong bearer token, then a client with the right one (and a name full of control characters)
    const wrongToken = await fetch(bridgeUrl, {
      method: 'POST', headers: { authorization: `Bearer ${SECRETS.wrongBridgeToken}`, 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
      body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'x', version: '1' } } }),
    });
    expect(wrongToken.status).toBe(401);
    answers.push(await wrongToken.text());
    const client = new Client({ name: `desk${NASTY}`, version: '1.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(bridgeUrl), { requestInit: { headers: { authorization: `Bearer ${SECRETS.bridgeToken}` } } }));
    try {
      const { tools } = await client.listTools();
      const echo = tools.find((t) => t.name.endsWith('diag_echo'))!;
      const sleep = tools.find((t) => t.name.endsWith('diag_sleep'));
      const r = await client.callTool({ name: echo.name, arguments: { text: 'via mcp' } }) as CallToolResult;
      answers.push(textOf(r));
      expect(r.isError).toBeFalsy();
      // the agent's policy lets mcp-desk call diag_echo only
      const refusedByAgent = await client.callTool({ name: sleep!.name, arguments: { ms: 1 } }) as CallToolResult;
      answers.push(textOf(refusedByAgent));
      expect(refusedByAgent.isError).toBe(true);
    } finally {
      await client.close();
    }
    await until(() => /diag_sleep → /.test(bridge.out()), 'the bridge logs the refused call', 10_000);

    // a second agent with a wrong password: refused by the broker, logged by both
    const wrongYaml = files('wrong.yaml', `version: 1\nagent: { id: rtagent }\nbroker: { url: "${brokerUrl}", username: rtagent, passwordFile: ./wrong.pass }\npacks: { diag: {} }`);
    files('wrong.pass', SECRETS.wrongAgentPassword);
    const wrong = run([AGENT_CLI, '--config', wrongYaml]);
    await until(() => /Not authorized|Bad username or password/i.test(wrong.out()), 'the wrong password refused', 20_000);
    await until(() => /bad username or password/.test(red.output()), 'the broker refusal in the Node-RED log', 20_000);
    await stop(wrong);

    // a request with a tool name full of control characters reaches the agent's call log line without them
    await watcher.publishAsync('toolmesh/v1/agents/rtagent/rpc/watcher/req', JSON.stringify({
      jsonrpc: '2.0', id: 'nasty-1', method: 'tools/call', params: { name: `tool${NASTY}`, arguments: {} },
    }), { qos: 1 });
    await until(() => /call tool.* from watcher: TOOL_NOT_FOUND/.test(agent.out()), 'the agent logs the unknown tool', 10_000);
    // and an MQTT client id full of them reaches the broker's refusal line without them
    const nasty = mqtt.connect(brokerUrl, { clientId: `cid${NASTY}`, username: 'nobody', password: 'nothing', reconnectPeriod: 0 });
    nasty.on('error', () => {});
    await until(() => /client id "cid/.test(red.output()), 'the broker logs the refused client', 10_000);
    nasty.end(true);

    // status and error text: the registry with a password in its URL is refused, naming the fields
    await until(() => /must not hold a username or password/.test(red.output()), 'the URL registry refused', 10_000);
    expect(red.output()).toMatch(/Username and Password fields of the Security tab/);

    await new Promise((r) => setTimeout(r, 500)); // the last records and log lines
    const outputs: Array<[string, string]> = [
      ['the agent', agent.out()], ['the wrong-password agent', wrong.out()], ['the bridge', bridge.out()], ['Node-RED', red.output()],
      ['the broker', wire.join('\n')], ['answers and errors', answers.join('\n')], ['files (audit logs)', writtenFiles(dir)],
    ];
    const found = outputs.flatMap(([where, text]) => leaks(where, text));
    expect(found.join('\n')).toBe('');
    // the searches had something to search: every output holds the traces of its work
    expect(agent.out()).toMatch(/call diag_echo from nodered-secrets: ok/);
    expect(agent.out()).toMatch(/call diag_sleep from nodered-secrets: PERMISSION_DENIED/);
    expect(wrong.out()).toMatch(/broker mqtt:\/\/127\.0\.0\.1:\d+: /);
    expect(wire.some((w) => w.startsWith('toolmesh/v1/agents/rtagent/catalog '))).toBe(true);
    expect(writtenFiles(dir)).toMatch(/"tool":"diag_echo"/);
    expect(red.output()).toMatch(/Incorrect API key provided/);
    // no control character of a stranger's name in any log line (tabs and newlines end lines, so they are allowed between lines)
    for (const [where, text] of outputs.slice(0, 4)) {
      for (const line of text.split('\n')) if (CONTROL.test(line)) throw new Error(`a control character in a line of ${where}: ${JSON.stringify(line)}`);
    }
    expect(agent.out()).toMatch(/call toolev\\u001b\[2J\\u000ail\\u0085\\u2028\\u202e\\u2066x\\u007f from watcher: TOOL_NOT_FOUND/);
    expect(red.output()).toMatch(/client id "cidev\\u001b\[2J\\nil\\u0085\\u2028\\u202e\\u2066x\\u007f"/);
    // the static token's session is the client labelled `token`; the name it gave itself follows in parentheses
    expect(bridge.out()).toMatch(/token \(deskev\\u001b\[2J\\u000ail\\u0085\\u2028\\u202e\\u2066x\\u007f 1\.0\): rtagent\/diag_sleep → /);
  }
});

describe('a broker URL with user info is refused (issue 17, item 6)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-userinfo-'));
  const pw = secret('in-url');
  const url = `mqtt://rtagent:${pw}@127.0.0.1:1883`;
  const encoded = `mqtt://rtagent:${encodeURIComponent(pw)}@127.0.0.1:1883`;
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('by the agent config: exit 2, naming broker.username and broker.passwordFile, without the password', async () => {
    for (const u of [url, encoded]) {
      const f = join(dir, 'a.yaml');
      writeFileSync(f, `version: 1\nagent: { id: rtagent }\nbroker: { url: ${JSON.stringify(u)} }\n`);
      const p = run([AGENT_CLI, '--config', f, '--check']);
      expect(await p.exit).toBe(2);
      expect(p.out()).toMatch(/broker\.url: must not hold a username or password .*put them in broker\.username and broker\.passwordFile/);
      for (const f of forms(pw)) expect(p.out()).not.toContain(f);
    }
  });

  it('nor is a password quoted from a config that is not YAML (agent and bridge)', async () => {
    const f = join(dir, 'broken.yaml');
    writeFileSync(f, `version: 1\nagent: { id: rtagent }\nbroker: { url: "mqtt://127.0.0.1:1883", password: ${pw}: x }\n`);
    for (const args of [[AGENT_CLI, '--config', f, '--check'], [TOOLMESH, 'mcp', '--config', f]]) {
      const p = run(args);
      expect(await p.exit).toBe(2);
      expect(p.out()).toMatch(/(not valid YAML|is not YAML): .* at line 3, column \d+/);
      for (const form of forms(pw)) expect(p.out()).not.toContain(form);
    }
  });

  it('by the MCP bridge: exit 2, naming --username and --password-file, without the password', async () => {
    for (const u of [url, encoded]) {
      const p = run([TOOLMESH, 'mcp', '--broker', u]);
      expect(await p.exit).toBe(2);
      expect(p.out()).toMatch(/broker\.url: must not hold a username or password .*put them in --username \(broker\.username\) and --password-file/);
      for (const f of forms(pw)) expect(p.out()).not.toContain(f);
    }
  });

  it('by one rule in protocol/redact.ts that the registry shares (its Node-RED refusal is checked above)', () => {
    const fields = { username: 'U', password: 'P' };
    for (const u of [url, encoded, 'mqtt://user@host:1883', 'ws://host:80/mqtt?x=a@b', 'mqtt://:pw@host']) expect(userInfoProblem(u, fields)).toMatch(/put them in U and P/);
    for (const u of ['mqtt://127.0.0.1:1883', 'wss://broker.example:8884/mqtt', 'mqtts://[::1]:8883']) expect(userInfoProblem(u, fields)).toBeUndefined();
    expect(urlForLog(url)).toBe('mqtt://127.0.0.1:1883');
    expect(printable(`a${NASTY}`)).not.toMatch(CONTROL);
    expect(printable('a\tb\u0000c\u2069')).toBe('a\\u0009b\\u0000c\\u2069');
  });
});
