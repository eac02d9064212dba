// End to end, every part real except the model: a prompt enters an llm-agent node in a real
// Node-RED runtime, the scripted OpenAI-compatible server asks for docker_restart_container, the
// call travels over the registry's embedded MQTT broker to a toolmesh-agent process, the agent
// restarts a container on a real dockerd, and the answer comes out of the node. The test checks
// on the engine that the container really was restarted.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Docker from 'dockerode';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { startFakeLlm, type FakeLlm } from './support/fake-llm';
import toolRegistryNode from '../nodes/tool-registry/tool-registry';
import llmAgentNode from '../nodes/llm-agent/llm-agent';
import { until } from './support/until';
import { NODE_RED_MAIN } from './support/node-red-path';

const helper = require('node-red-node-test-helper');
helper.init(NODE_RED_MAIN);

const dockerd = inject('dockerd');
const CLI = join(__dirname, '../packages/agent/dist/agent/cli.js');


describe.skipIf(dockerd === null)('prompt → llm-agent → MQTT → toolmesh-agent → Docker → answer', () => {
  const { socketPath, image } = dockerd ?? { socketPath: '', image: '' };
  const docker = new Docker({ socketPath });
  const name = `toolmesh-e2e-${process.pid}-${Date.now().toString(36)}`;
  let llm: FakeLlm;
  let agent: ChildProcess | undefined;
  let agentLog = '';

  beforeAll(async () => {
    const container = await docker.createContainer({
      name, Image: image, Cmd: ['sleep', '3600'], HostConfig: { NetworkMode: 'none' }, Labels: { 'io.toolmesh.test': '1' },
    });
    await container.start();
  });

  afterAll(async () => {
    if (agent && agent.exitCode === null) {
      const exited = new Promise((r) => agent!.once('exit', r));
      agent.kill('SIGTERM');
      await exited;
    }
    await helper.unload();
    await llm?.close();
    await docker.getContainer(name).remove({ force: true }).catch(() => undefined);
  });

  it('restarts the container the model asked for and answers', async () => {
    const before = await docker.getContainer(name).inspect();
    let restartTool = '';
    llm = await startFakeLlm((body: any, index: number) => {
      if (index === 0) {
        restartTool = body.tools.map((t: any) => t.function.name).find((n: string) => n.endsWith('docker_restart_container'));
        return { toolCalls: [{ id: 'call_1', name: restartTool, arguments: { container: name, timeoutSeconds: 1 } }] };
      }
      const toolMsg = body.messages.find((m: any) => m.role === 'tool');
      return { content: `Done: ${toolMsg.content}` };
    });
    const at = { z: 'f1', x: 10, y: 10 };
    await helper.load([toolRegistryNode, llmAgentNode], [
      { id: 'f1', type: 'tab', label: 'e2e' },
      { id: 'reg', type: 'toolmesh-tool-registry', mode: 'embedded', port: 0, host: '127.0.0.1', policy: '*/*' },
      { id: 'llm', type: 'toolmesh-llm-agent', ...at, registry: 'reg', baseUrl: llm.url, model: 'fake', maxIterations: 4, wires: [['out']] },
      { id: 'out', type: 'helper', ...at },
      { id: 'catcher', type: 'catch', ...at, scope: null, uncaught: false, wires: [['caught']] },
      { id: 'caught', type: 'helper', ...at },
    ], { llm: { apiKey: 'sk-test' } });
    const port = await until(() => helper.getNode('reg').brokerPort as number | undefined, 'the embedded broker');

    const dir = mkdtempSync(join(tmpdir(), 'toolmesh-e2e-'));
    const cfg = join(dir, 'pi.yaml');
    writeFileSync(cfg, `version: 1\nagent: { id: pi, kind: pi }\nbroker: { url: "mqtt://127.0.0.1:${port}" }\npacks:\n  docker: { socketPath: "${socketPath}" }\n  system: {}\n`);
    agent = spawn(CLI, ['--config', cfg], { stdio: ['ignore', 'pipe', 'pipe'] });
    agent.stdout!.on('data', (d) => (agentLog += d));
    agent.stderr!.on('data', (d) => (agentLog += d));
    await until(() => helper.getNode('reg').listTools().some((t: any) => t.tool.name === 'docker_restart_container'), `the pi catalog; agent log:\n${agentLog}`);

    let answer: any;
    let failure: any;
    helper.getNode('out').once('input', (m: any) => { answer = m; });
    helper.getNode('caught').once('input', (m: any) => { failure = m; });
    helper.getNode('llm').receive({ payload: `Restart ${name}, please.` });
    await until(() => answer ?? failure, 'an answer or an error', 30_000);
    if (failure) throw new Error(`the flow failed: ${failure.error.message}`);
    const msg = answer;

    expect(msg.payload).toMatch(/^Done: /);
    expect(msg.toolCalls).toHaveLength(1);
    expect(msg.toolCalls[0]).toMatchObject({ agent: 'pi', tool: 'docker_restart_container', ok: true });
    expect(restartTool).toBeTruthy();
    const after = await docker.getContainer(name).inspect();
    expect(after.State.Running).toBe(true);
    expect(Date.parse(after.State.StartedAt)).toBeGreaterThan(Date.parse(before.State.StartedAt));
    expect(agentLog).toMatch(/call docker_restart_container from \S+: ok/);
  });
});
