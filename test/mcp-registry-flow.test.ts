// The MCP example flow (flows/mcp-filesystem.json) in a real Node-RED runtime: the tool-registry
// mounts the real filesystem MCP server (stdio, confined to a temp folder) as agent mcp-files next
// to the flow's mesh tool desk/desk_clock (tool-in over the embedded broker). A scripted model
// calls an MCP tool and the mesh tool in one turn, then asks to write a file: write_file is high
// risk (every MCP tool is, unless the registry lowers it), so the llm-agent sends it to the
// confirm-gate, which holds it; nothing is written until the approval, then the answer comes.
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys } from '../protocol';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import toolInNode from '../nodes/tool-in/tool-in';
import toolOutNode from '../nodes/tool-out/tool-out';
import confirmGateNode from '../nodes/confirm-gate/confirm-gate';
import remoteToolNode from '../nodes/remote-tool/remote-tool';
import registryNode, { type ToolRegistryNode } from '../nodes/tool-registry/tool-registry';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import { until } from './support/until';
import { helper, coreNode } from './support/node-red';

const FS_SERVER = join(__dirname, '../node_modules/@modelcontextprotocol/server-filesystem/dist/index.js');
if (!existsSync(FS_SERVER) && process.env.CI === 'true') throw new Error(`${FS_SERVER} is missing; run npm ci`);
const flow = JSON.parse(readFileSync(join(__dirname, '../flows/mcp-filesystem.json'), 'utf8')) as Array<Record<string, any>>;

/** Resolves with the next message helper node `id` receives; rejects after `ms`. */
function next(id: string, ms = 20_000): Promise<any> {
  const node = helper.getNode(id);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no message reached ${id} within ${ms} ms`)), ms);
    node.once('input', (m: unknown) => {
      clearTimeout(timer);
      resolve(m);
    });
  });
}

describe.skipIf(!existsSync(FS_SERVER))('mcp-filesystem.json: an MCP server and a mesh agent in one llm-agent run', () => {
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-mcp-demo-'));
  writeFileSync(join(dir, 'shopping.txt'), 'milk, bread\n');
  const keys = generateApprovalKeys();
  let llm: FakeLlm;
  let reg: ToolRegistryNode;

  beforeAll(async () => {
    await new Promise<void>((resolve) => helper.startServer(resolve));
    llm = await startFakeLlm((body: any) => {
      const names: string[] = (body.tools ?? []).map((t: any) => t.function.name);
      const fn = (suffix: string) => names.find((n) => n.endsWith(suffix))!;
      const results = body.messages.filter((m: any) => m.role === 'tool');
      if (body.messages.at(-1).role === 'user') {
        return { toolCalls: [{ name: fn('mcp-files__list_directory'), arguments: { path: dir } }, { name: fn('desk__desk_clock'), arguments: {} }] };
      }
      if (results.length === 2) return { toolCalls: [{ name: fn('mcp-files__write_file'), arguments: { path: join(dir, 'notes.txt'), content: 'hello' } }] };
      return { content: `listing: ${results[0].content} | clock: ${results[1].content} | write: ${results[2].content}` };
    });
    const patched = flow.map((n) => {
      if (n.type === 'toolmesh-tool-registry') {
        return { ...n, port: 0, mcpServers: n.mcpServers.map((s: any) => ({ ...s, command: process.execPath, args: [FS_SERVER, dir] })) };
      }
      return n.type === 'toolmesh-llm-agent' ? { ...n, baseUrl: llm.url, model: 'fake-model' } : n;
    });
    const core = ['common/20-inject.js', 'common/21-debug.js', 'common/90-comment.js', 'function/10-function.js', 'function/15-change.js', 'function/10-switch.js'].map(coreNode);
    await helper.load([registryNode, remoteToolNode, llmAgentNode, confirmGateNode, toolInNode, toolOutNode, ...core], patched, { 'tm-mcp-gate': { signingKey: keys.privateKeyPem } });
    reg = helper.getNode('tm-registry') as ToolRegistryNode;
    await until(() => reg.listTools().some((t) => t.agentId === 'mcp-files') && reg.listTools().some((t) => t.agentId === 'desk'), 'mcp-files and desk tools in the registry', 30_000);
  });

  afterAll(async () => {
    await helper.unload();
    await new Promise<void>((resolve) => helper.stopServer(resolve));
    await llm?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('lists the MCP server like a mesh agent, with high risk unless the flow lowers it', async () => {
    const agents = reg.describeAgents();
    const files = agents.find((a) => a.id === 'mcp-files')!;
    expect(files).toMatchObject({ kind: 'mcp', state: 'online', online: true, ready: true });
    const risk = Object.fromEntries(files.tools.map((t) => [t.name, t.annotations.risk]));
    expect(risk).toMatchObject({ list_directory: 'low', read_text_file: 'low', write_file: 'high', move_file: 'high', edit_file: 'high' });
    expect(files.tools.find((t) => t.name === 'write_file')!.annotations.readOnlyHint).toBe(false);
    expect(agents.find((a) => a.id === 'desk')).toMatchObject({ online: true });
    expect(reg.isOffered('mcp-files', 'write_file')).toBe(true);
    // the admin endpoint the edit dialog reads
    const res = await helper.request().get('/toolmesh/registry/tm-registry/agents').expect(200);
    expect(res.body.find((a: any) => a.id === 'mcp-files').tools.map((t: any) => t.name)).toContain('list_directory');
  });

  it('one run calls an MCP tool and the mesh tool, the gate holds the MCP write until approved, then answers', async () => {
    const requests = next('tm-mcp-requests');
    await helper.request().post('/inject/tm-mcp-ask').expect(200);
    const request = await requests;
    expect(request.payload).toMatchObject({ agent: 'mcp-files', tool: 'write_file', risk: 'high' });
    // held: nothing written yet
    await new Promise((r) => setTimeout(r, 300));
    expect(existsSync(join(dir, 'notes.txt'))).toBe(false);
    const answered = next('tm-mcp-answer');
    await helper.request().post('/inject/tm-mcp-approve').expect(200);
    const msg = await answered;
    expect(readFileSync(join(dir, 'notes.txt'), 'utf8')).toBe('hello');
    expect(msg.payload).toMatch(/^listing: .*shopping\.txt.* \| clock: \{"time":"\d{4}-\d\d-\d\dT[^"]+Z"\} \| write: .*notes\.txt/);
    expect(msg.toolCalls.map((c: any) => [c.agent, c.tool])).toEqual([['mcp-files', 'list_directory'], ['desk', 'desk_clock'], ['mcp-files', 'write_file']]);
  });
});
