// The MCP side of the demo as a new user meets it: `npm start`'s own program (dist/scripts/demo.js)
// with Node-RED, its embedded broker, every demo agent and the MCP bridge; a third-party MCP
// client (the SDK's Client) configured only from what the demo prints (the README's configs,
// filled in): over HTTP with the printed token and over stdio with the printed Claude Desktop
// command. It lists the demo's tools, calls docker_list_containers on the real engine, gets
// isError for invalid arguments, and in the default mode cannot run docker_remove_container at
// all (the container is still there afterwards).
import Docker from 'dockerode';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { StreamableHTTPClientTransport } from '@modelcontextprotocol/sdk/client/streamableHttp.js';
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startDemo, stopDemo } from './support/demo-process';
import { until } from './support/until';

const dockerd = inject('dockerd');
const DEMO_CONTAINER = 'toolmesh-demo-web';

/** The Docker engine socket the demo's summary names (its private dockerd). */
function demoEngine(out: string): Docker {
  const m = /Docker engine (\S+?), demo container/.exec(out);
  if (!m) throw new Error(`the demo runs without a Docker engine:\n${out}`);
  return new Docker({ socketPath: m[1] });
}

/** A JSON value printed after `label` on one summary line. */
function printedJson(out: string, label: string): any {
  const line = out.split('\n').find((l) => l.includes(label));
  if (!line) throw new Error(`the summary has no line with ${label}:\n${out}`);
  return JSON.parse(line.slice(line.indexOf('{')));
}

function codeOf(r: CallToolResult): string | undefined {
  return (r.structuredContent as { error?: { code?: string } } | undefined)?.error?.code;
}

describe('the demo through a third-party MCP client (refuse mode, the default)', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  beforeAll(async () => {
    if (!dockerd && process.env.CI) throw new Error('the demo MCP test needs the test Docker engine (scripts/install-system-deps.sh)');
    demo = await startDemo({}, 'toolmesh-mcp-demo-');
  }, 150_000);
  afterAll(async () => { await stopDemo(demo); }, 60_000);

  const transports = {
    'Streamable HTTP (VS Code config)': () => {
      const server = printedJson(demo!.out(), 'VS Code, .vscode/mcp.json:').servers.toolmesh;
      return new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: server.headers } });
    },
    'stdio (Claude Desktop config)': () => {
      const server = printedJson(demo!.out(), 'Claude Desktop, claude_desktop_config.json:').mcpServers.toolmesh;
      return new StdioClientTransport({ command: server.command, args: server.args, stderr: 'ignore' });
    },
  };

  it.each(Object.keys(transports))('over %s: lists, calls docker_list_containers, isError for bad arguments, cannot remove', async (name) => {
    const client = new Client({ name: 'third-party', version: '1.0.0' });
    await client.connect(transports[name as keyof typeof transports]());
    try {
      const { tools } = await client.listTools();
      const names = tools.map((t) => t.name);
      expect(names).toEqual(expect.arrayContaining(['pi__diag_echo', 'robot__robot_take_photo', 'encoder__gst_get_board_info']));
      if (!dockerd) return; // outside CI without an engine the demo has no docker pack
      expect(names).toEqual(expect.arrayContaining(['pi__docker_list_containers', 'pi__docker_remove_container']));
      const list = (await client.callTool({ name: 'pi__docker_list_containers', arguments: { all: true } })) as CallToolResult;
      expect(list.isError).toBeFalsy();
      const containers = (list.structuredContent as { containers: Array<{ name: string }> }).containers;
      expect(containers.map((c) => c.name)).toContain(DEMO_CONTAINER);
      const bad = (await client.callTool({ name: 'pi__docker_list_containers', arguments: { all: 'yes please' } })) as CallToolResult;
      expect(bad.isError).toBe(true);
      expect(codeOf(bad)).toBe('INVALID_ARGUMENTS');
      const rm = (await client.callTool({ name: 'pi__docker_remove_container', arguments: { container: DEMO_CONTAINER, force: true } })) as CallToolResult;
      expect(rm.isError).toBe(true);
      expect(codeOf(rm)).toBe('APPROVAL_REQUIRED');
      // the engine still has it: nothing was sent to the device
      const still = await demoEngine(demo!.out()).getContainer(DEMO_CONTAINER).inspect();
      expect(still.Name).toBe(`/${DEMO_CONTAINER}`);
    } finally {
      await client.close();
    }
  }, 60_000);
});

describe('the demo through a third-party MCP client (gate mode: TOOLMESH_MCP_APPROVALS=gate)', () => {
  let demo: Awaited<ReturnType<typeof startDemo>> | undefined;
  const victim = `toolmesh-mcp-gate-${process.pid}`;
  let docker: Docker;
  beforeAll(async () => {
    if (!dockerd) {
      if (process.env.CI) throw new Error('the demo MCP test needs the test Docker engine (scripts/install-system-deps.sh)');
      return;
    }
    demo = await startDemo({ TOOLMESH_MCP_APPROVALS: 'gate' }, 'toolmesh-mcp-demo-');
    docker = demoEngine(demo.out());
    await docker.createContainer({ name: victim, Image: dockerd.image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' } });
  }, 150_000);
  afterAll(async () => {
    await docker?.getContainer(victim).remove({ force: true }).catch(() => {});
    await stopDemo(demo);
  }, 60_000);

  it('docker_remove_container runs only after a person approves at the confirm-gate', async (ctx) => {
    if (!demo) return ctx.skip();
    const server = printedJson(demo.out(), 'VS Code, .vscode/mcp.json:').servers.toolmesh;
    const client = new Client({ name: 'third-party', version: '1.0.0' });
    await client.connect(new StreamableHTTPClientTransport(new URL(server.url), { requestInit: { headers: server.headers } }));
    const editor = /Node-RED editor: (http:\/\/\S+?)\/?\s/.exec(demo.out())![1];
    try {
      const call = client.callTool({ name: 'pi__docker_remove_container', arguments: { container: victim, force: true } }, undefined, { timeout: 60_000 }) as Promise<CallToolResult>;
      // the example flow's gate holds it: listed as pending, asked by the bridge's caller id
      const pending = await until(async () => {
        const r = await fetch(`${editor}/toolmesh/confirm-gate/tm-gate/approvals`);
        const list = (await r.json()) as Array<{ tool: string; caller?: string; approvalId: string }>;
        return list.find((p) => p.tool === 'docker_remove_container');
      }, 'the confirm-gate holds the request', 20_000);
      expect(pending.caller).toBe('mcp-demo');
      await new Promise((r) => setTimeout(r, 500));
      expect((await docker.getContainer(victim).inspect()).Name).toBe(`/${victim}`); // nothing ran while it waits
      // the person presses "approve the request shown" in the editor (it names the request by its id)
      const press = await fetch(`${editor}/inject/tm-gate-approve`, { method: 'POST' });
      expect(press.status).toBe(200);
      const r = await call;
      expect(r.isError, JSON.stringify(r)).toBeFalsy();
      await expect(docker.getContainer(victim).inspect()).rejects.toThrow(/no such container/i);
    } finally {
      await client.close();
    }
  }, 90_000);
});
