// `toolmesh mcp --oauth` as a person runs it: the real bridge process serving HTTPS with a
// certificate of a test CA (--tls-cert/--tls-key), `toolmesh mcp pair` in another process, and an
// MCP client in a third process that trusts that CA (NODE_EXTRA_CA_CERTS) and signs in with the
// SDK's OAuth; a real agent on a real broker (aedes in-process) runs the call.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { defineTool } from '../protocol';
import { startBroker, type EmbeddedBroker } from '../protocol/broker';
import { validateConfig } from '../agent/config';
import { startAgent, type RunningAgent } from '../agent/runtime';
import { makeTestCerts, type TestCerts } from './support/certs';
import { freePort } from './support/mosquitto';
import { REPO_ROOT } from './support/node-red-process';
import { until } from './support/until';

const BIN = join(REPO_ROOT, 'dist/nodes/cli.js');
const SIGN_IN = join(REPO_ROOT, 'test/fixtures/oauth-sign-in.mjs');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-oauth-proc-'));
const quiet = { info() {}, warn() {}, error() {} };
let echoed = 0;

let broker: EmbeddedBroker;
let agent: RunningAgent;
let certs: TestCerts | null;
const children: ChildProcess[] = [];

beforeAll(async () => {
  certs = makeTestCerts();
  broker = await startBroker({ port: 0, host: '127.0.0.1' });
  agent = await startAgent(validateConfig({ version: 1, agent: { id: 'pi', name: 'Pi', kind: 'pi' }, broker: { url: broker.url } }, 'a.yaml', dir), quiet, [
    defineTool({ name: 'echo', description: 'Echoes', risk: 'low', readOnly: true, input: z.strictObject({ text: z.string() }), execute: (a) => { echoed++; return { echoed: a.text }; } }),
  ]);
});
afterAll(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGTERM');
  await agent?.stop();
  await broker?.close();
  certs?.remove();
});

/**
 * Runs a process to its end without blocking this one (the broker and the agent live in this
 * process: spawnSync would stall them).
 */
function run(args: string[], opts: { env?: NodeJS.ProcessEnv; timeout?: number } = {}): Promise<{ status: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, args, { cwd: REPO_ROOT, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => { stdout += d; });
    child.stderr!.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeout ?? 30_000);
    child.on('close', (status) => { clearTimeout(timer); resolve({ status, stdout, stderr }); });
  });
}

function startBridge(args: string[]): { child: ChildProcess; stderr: () => string } {
  let err = '';
  const child = spawn(process.execPath, [BIN, 'mcp', '--broker', broker.url, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stderr!.on('data', (d) => { err += d; });
  children.push(child);
  return { child, stderr: () => err };
}

describe('toolmesh mcp --oauth over HTTPS, in real processes', () => {
  it('a client in another process signs in over TLS with a code from `toolmesh mcp pair` and calls a tool', async (ctx) => {
    if (!certs) return ctx.skip();
    const port = await freePort();
    const stateFile = join(dir, 'tls-state.json');
    const bridge = startBridge(['--http', `127.0.0.1:${port}`, '--oauth', '--oauth-state', stateFile, '--tls-cert', certs.files.cert, '--tls-key', certs.files.key, '--caller-id', 'mcp-tls']);
    await until(() => bridge.stderr().includes('serving MCP'), 'the bridge serving', 15_000);
    expect(bridge.stderr()).toContain(`https://127.0.0.1:${port}/mcp (OAuth sign-in required)`);
    const pair = await run([BIN, 'mcp', 'pair', '--oauth-state', stateFile]);
    expect(pair.status).toBe(0);
    const code = pair.stdout.trim().split('\n').pop()!;
    expect(code).toMatch(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    const before = echoed;
    const client = await run([SIGN_IN, `https://127.0.0.1:${port}/mcp`, code, 'remote-box'], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: certs.files.ca }, timeout: 30_000,
    });
    const got = JSON.parse(client.stdout.trim().split('\n').pop()!);
    expect(got.error, `${client.stderr}\n${bridge.stderr()}`).toBeUndefined();
    expect(got.issuer).toBe(`https://127.0.0.1:${port}`);
    expect(got.tools).toContain('pi__echo');
    expect(JSON.stringify(got.echo)).toContain('over tls');
    expect(echoed).toBe(before + 1);
    const listed = await run([BIN, 'mcp', 'clients', '--oauth-state', stateFile]);
    expect(listed.stdout).toMatch(/remote-box\t[0-9a-f-]{36}\tRemote Test Client\t.*\tsigned in/);
    // the pairing code and the tokens never reach the bridge's log
    expect(bridge.stderr()).not.toContain(code);
    expect(bridge.stderr()).toContain('approved client remote-box');
    bridge.child.kill('SIGTERM');
  });

  it('a client that does not trust the certificate gets nowhere (no fallback to plain HTTP)', async (ctx) => {
    if (!certs) return ctx.skip();
    const port = await freePort();
    const stateFile = join(dir, 'tls-untrusted.json');
    const bridge = startBridge(['--http', `127.0.0.1:${port}`, '--oauth', '--oauth-state', stateFile, '--tls-cert', certs.files.cert, '--tls-key', certs.files.key, '--caller-id', 'mcp-tls2']);
    await until(() => bridge.stderr().includes('serving MCP'), 'the bridge serving', 15_000);
    const code = (await run([BIN, 'mcp', 'pair', '--oauth-state', stateFile])).stdout.trim().split('\n').pop()!;
    const env = { ...process.env };
    delete env.NODE_EXTRA_CA_CERTS;
    const client = await run([SIGN_IN, `https://127.0.0.1:${port}/mcp`, code, 'x'], { env, timeout: 30_000 });
    expect(client.status).toBe(1);
    expect(JSON.parse(client.stdout.trim().split('\n').pop()!).error).toMatch(/certificate|fetch failed/i);
    bridge.child.kill('SIGTERM');
  });

  it('refuses to start OAuth off loopback without HTTPS, naming the fix', async () => {
    const port = await freePort();
    const r = await run([BIN, 'mcp', '--broker', broker.url, '--http', `0.0.0.0:${port}`, '--oauth', '--oauth-state', join(dir, 'x.json'), '--caller-id', 'mcp-plain'], { timeout: 20_000 });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/sign-in off loopback needs HTTPS.*--tls-cert and --tls-key.*--public-url https:/);
  });

  it('names a bad flag: --tls-cert without --tls-key, a --public-url with a path', async () => {
    const a = await run([BIN, 'mcp', '--broker', broker.url, '--http', '127.0.0.1:1', '--tls-cert', 'c.pem']);
    expect(a.status).toBe(2);
    expect(a.stderr).toContain('http.tls.key');
    const b = await run([BIN, 'mcp', '--broker', broker.url, '--http', '127.0.0.1:1', '--oauth', '--public-url', 'https://pi.lan:8765/mcp']);
    expect(b.status).toBe(2);
    expect(b.stderr).toContain('http.oauth.publicUrl: must be http(s)://HOST[:PORT] without a path');
  });
});
