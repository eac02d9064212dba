/**
 * The demo (`npm start`'s own program, dist/scripts/demo.js) as a test runs it: its own user
 * directory under the system temp folder and free ports for the editor, the broker and the MCP
 * bridge. Without DOCKER_HOST the demo starts its own private dockerd (as root), so its demo
 * container never appears on the engine the other tests share.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { freePort } from './mosquitto';
import { REPO_ROOT } from './node-red-process';
import { until } from './until';

/** A running demo: the process, everything it printed so far, its user directory and broker port. */
export interface DemoProcess {
  child: ChildProcess;
  out(): string;
  dir: string;
  mqttPort: number;
}

/**
 * Starts the demo with `env` added and waits for its summary (120 s).
 * @throws Error with its output when it exits first.
 */
export async function startDemo(env: Record<string, string>, prefix = 'toolmesh-demo-'): Promise<DemoProcess> {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  const [ui, mqtt, mcp] = [await freePort(), await freePort(), await freePort()];
  let out = '';
  const child = spawn(process.execPath, [join(REPO_ROOT, 'dist/scripts/demo.js')], {
    cwd: REPO_ROOT,
    env: {
      ...process.env, TOOLMESH_DEMO_DIR: dir, TOOLMESH_UI_PORT: String(ui), TOOLMESH_MQTT_PORT: String(mqtt), TOOLMESH_MCP_PORT: String(mcp),
      DOCKER_HOST: '', ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => { out += d; });
  child.stderr!.on('data', (d) => { out += d; });
  await until(() => out.includes('ToolMesh demo is running.') || child.exitCode !== null, 'the demo summary', 120_000);
  if (child.exitCode !== null) throw new Error(`the demo exited (${child.exitCode}):\n${out}`);
  return { child, out: () => out, dir, mqttPort: mqtt };
}

/** SIGTERM to the demo (it stops its children), then its user directory is removed. */
export async function stopDemo(d: { child: ChildProcess; dir: string } | undefined): Promise<void> {
  if (!d) return;
  if (d.child.exitCode === null) {
    const exited = new Promise((r) => d.child.once('exit', r));
    d.child.kill('SIGTERM');
    await exited;
  }
  rmSync(d.dir, { recursive: true, force: true });
}
