// OAuth 2.1 sign-in on the demo's MCP bridge as a new user meets it: `npm start`'s own program
// (dist/scripts/demo.js) with its own user directory and free ports (support/demo-process.ts).
// An OAuth client that knows only the bridge's URL (the official SDK's client auth, as Home
// Assistant or the MCP Inspector use it) discovers the metadata, registers, and is approved on the
// consent page with the pairing code the summary printed and the label `home-assistant`; it lists
// the tools and calls pi__diag_echo. `toolmesh mcp clients` (a child process, with the paths the
// summary prints) lists it by label; the static token still works on the same bridge; `toolmesh
// mcp clients --revoke home-assistant` ends it: its token gets 401 and its open session is gone.
// The printed code works once, and `toolmesh mcp pair` (as the summary says) makes another.
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDemo, stopDemo } from './support/demo-process';
import { REPO_ROOT } from './support/node-red-process';
import { httpCall, MemoryOAuthClient, signIn } from './support/oauth-client';
import { until } from './support/until';

const dockerd = inject('dockerd');
const run = promisify(execFile);

/** The first match of `re` in the demo's output, group 1 (and the rest). */
function printed(out: string, re: RegExp, what: string): RegExpExecArray {
  const m = re.exec(out);
  if (!m) throw new Error(`the demo printed no ${what}:\n${out}`);
  return m;
}

/** `node <cli> mcp <args>` from the repository root, as the summary's lines are run; stdout, stderr and the exit code. */
async function toolmesh(cli: string, args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  try {
    const { stdout, stderr } = await run(process.execPath, [cli, 'mcp', ...args], { cwd: REPO_ROOT, timeout: 20_000 });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === 'number' ? x.code : -1, stdout: x.stdout ?? '', stderr: x.stderr ?? '' };
  }
}

/** A POST of a tools/list to the bridge with `headers`: the HTTP status. */
async function postStatus(url: string, headers: Record<string, string>): Promise<number> {
  const r = await httpCall(url, {
    method: 'POST', body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'tools/list', params: {} }),
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream', 'mcp-protocol-version': '2025-06-18', ...headers },
  });
  return r.status;
}

describe('the demo\'s MCP bridge: OAuth sign-in beside the static token', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  beforeAll(async () => {
    if (!dockerd && process.env.CI) throw new Error('the demo MCP test needs the test Docker engine (scripts/install-system-deps.sh)');
    demo = await startDemo({}, 'toolmesh-mcp-oauth-demo-');
  }, 150_000);
  afterAll(async () => { await stopDemo(demo); }, 60_000);

  it('signs in with the printed pairing code, calls a tool, is listed by label, and is ended by --revoke', async () => {
    const out = demo!.out();
    const url = printed(out, /MCP bridge: +(http:\/\/127\.0\.0\.1:\d+\/mcp) /, 'MCP bridge URL')[1];
    const code = printed(out, /pairing code ([0-9A-Z]{4}-[0-9A-Z]{4}) +\(lasts 10 minutes/, 'pairing code')[1];
    // the summary is the only place the code is shown: no [mcp] (or other) log line has it
    expect(out.split(code).length - 1).toBe(1);
    expect(out.split('\n').find((l) => l.includes(code))).toMatch(/^ {4}pairing code /);
    const [, cli, stateFile] = printed(out, /signed-in clients: node (\S+) mcp clients --oauth-state (\S+);/, 'mcp clients line');
    expect(printed(out, /another: node (\S+ mcp pair --oauth-state \S+), the code is its last line/, 'mcp pair line')[1]).toBe(`${cli} mcp pair --oauth-state ${stateFile}`);
    expect(stateFile).toMatch(/mcp-oauth\.json$/);

    // a client that knows only the URL: 401 → RFC 9728 / 8414 discovery → RFC 7591 registration → consent with the code
    const oauth = new MemoryOAuthClient('http://127.0.0.1:9/callback', 'Home Assistant');
    const { client, transport } = await signIn(url, oauth, code, 'home-assistant');
    const sid = transport.sessionId!;
    expect(sid).toBeTruthy();
    const clientId = oauth.info!.client_id;
    try {
      const { tools } = await client.listTools();
      expect(tools.map((t) => t.name)).toEqual(expect.arrayContaining(['pi__diag_echo', 'robot__robot_take_photo']));
      const echo = (await client.callTool({ name: 'pi__diag_echo', arguments: { text: 'hello from home-assistant' } })) as CallToolResult;
      expect(echo.isError, JSON.stringify(echo)).toBeFalsy();
      expect(echo.structuredContent).toEqual({ echo: { text: 'hello from home-assistant' } });
      // the device's own audit names the signed-in client's label, beside the bridge's caller id
      await until(() => /"onBehalfOf":"home-assistant"/.test(readFileSync(join(demo!.dir, 'agents', 'pi-audit.jsonl'), 'utf8')), 'the agent audit naming the label', 5000);
      const records = readFileSync(join(demo!.dir, 'agents', 'pi-audit.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
      const call = records.find((r) => r.onBehalfOf === 'home-assistant' && r.tool === 'diag_echo');
      expect(call?.caller).toBe('mcp-demo');

      // the printed code worked once: another client cannot use it again
      const late = new MemoryOAuthClient('http://127.0.0.1:9/callback', 'Late Comer');
      await expect(signIn(url, late, code, 'late-comer')).rejects.toThrow(/no authorization code/);

      // `toolmesh mcp clients` with the summary's paths lists it by its label
      const listing = await toolmesh(cli, ['clients', '--oauth-state', stateFile]);
      expect(listing.code, listing.stderr).toBe(0);
      expect(listing.stdout).toMatch(new RegExp(`^home-assistant\\t${clientId}\\tHome Assistant\\t.*\\tsigned in$`, 'm'));

      // the static token (the VS Code config's) still works on the same bridge
      const vscode = JSON.parse(readFileSync(join(demo!.dir, 'mcp', 'vscode-mcp.json'), 'utf8')).servers.toolmesh;
      const tokenClient = new Client({ name: 'vscode', version: '1.0.0' });
      await tokenClient.connect(new StreamableHTTPClientTransport(new URL(vscode.url), { requestInit: { headers: vscode.headers } }));
      try {
        const r = (await tokenClient.callTool({ name: 'pi__diag_echo', arguments: { text: 'hello from the token' } })) as CallToolResult;
        expect(r.isError, JSON.stringify(r)).toBeFalsy();
        // the OAuth client's session is not the token's
        expect(await postStatus(url, { authorization: vscode.headers.Authorization, 'mcp-session-id': sid })).toBe(403);
      } finally {
        await tokenClient.close();
      }

      // revoke it by label: its token gets 401 at once, its session is gone within a second
      const revoked = await toolmesh(cli, ['clients', '--revoke', 'home-assistant', '--oauth-state', stateFile]);
      expect(revoked.code, revoked.stderr).toBe(0);
      expect(revoked.stdout).toContain(clientId);
      const bearer = `Bearer ${oauth.saved!.access_token}`;
      expect(await postStatus(url, { authorization: bearer })).toBe(401);
      expect(await postStatus(url, { authorization: bearer, 'mcp-session-id': sid })).toBe(401);
      // asked with a token that passes, the bridge no longer knows the session (404, not 403)
      const seen: number[] = [];
      await until(async () => { seen.push(await postStatus(url, { authorization: vscode.headers.Authorization, 'mcp-session-id': sid })); return seen.at(-1) === 404; }, 'the revoked client\'s session closed', 2000)
        .catch((e: Error) => { throw new Error(`${e.message}: statuses ${[...new Set(seen)].join(', ')}\n${demo!.out().split('\n').filter((l) => l.includes('[mcp]')).join('\n')}`); });
      await until(() => demo!.out().includes(`client home-assistant (${clientId}) was revoked: its session ${sid} is closed`), 'the bridge\'s revocation log line', 2000);
      const after = await toolmesh(cli, ['clients', '--oauth-state', stateFile]);
      expect(after.stdout).toMatch(new RegExp(`^home-assistant\\t${clientId}\\t.*\\trevoked `, 'm'));
    } finally {
      await client.close().catch(() => {});
    }

    // `toolmesh mcp pair`, as the summary says, makes another code (its last line) for the next client
    const pair = await toolmesh(cli, ['pair', '--oauth-state', stateFile]);
    expect(pair.code, pair.stderr).toBe(0);
    const next = pair.stdout.trim().split('\n').at(-1)!;
    expect(next).toMatch(/^[0-9A-Z]{4}-[0-9A-Z]{4}$/);
    const inspector = new MemoryOAuthClient('http://localhost:6274/oauth/callback', 'MCP Inspector');
    const second = await signIn(url, inspector, next, 'inspector');
    try {
      expect((await second.client.listTools()).tools.length).toBeGreaterThan(0);
    } finally {
      await second.client.close();
    }
    // the codes stay secrets: none reached the bridge's log lines
    expect(demo!.out()).not.toContain(next);
  }, 120_000);
});
