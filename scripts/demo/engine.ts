/** Docker for the demo: find or start an engine, and the demo container on it. */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import Docker from 'dockerode';
import { ensureDockerd, pingSocket } from '../dockerd';
import { DEMO_CONTAINER, DEMO_IMAGE } from './options';
import { say } from './processes';

/** The Docker engine the demo uses. */
export interface Engine {
  socketPath: string;
  /** This run started the engine (a private dockerd); stop it on exit. */
  startedHere: boolean;
}

/** Finds or starts a Docker engine; undefined (after saying why, in one line) when there is none. */
export async function findEngine(userDir: string): Promise<Engine | undefined> {
  const host = process.env.DOCKER_HOST;
  const candidates = host?.startsWith('unix://') ? [host.slice('unix://'.length)] : [];
  if (host && !host.startsWith('unix://')) say(`DOCKER_HOST=${host} is not a unix:// socket; the docker pack only uses local sockets`);
  candidates.push('/var/run/docker.sock');
  for (const socketPath of candidates) {
    if (await pingSocket(socketPath)) {
      say(`Docker engine: ${socketPath}`);
      return { socketPath, startedHere: false };
    }
  }
  const isRoot = process.getuid?.() === 0;
  const missing = ['/usr/sbin/dockerd', '/usr/bin/docker', '/bin/busybox'].filter((p) => !existsSync(p));
  if (!isRoot || missing.length) {
    say(`no Docker engine answers at ${candidates.join(' or ')}, so the agent runs without its docker pack. `
      + (isRoot ? `To get it: apt-get install docker.io busybox-static (missing: ${missing.join(', ')}).`
        : 'To get it: apt-get install docker.io and start Docker, or run the demo as root so it starts a private dockerd.'));
    return undefined;
  }
  let dir = join(userDir, 'docker');
  // a unix socket path may not exceed 107 bytes
  if (join(dir, 'docker.sock').length > 100) dir = join('/tmp', `toolmesh-demo-dockerd-${process.getuid?.() ?? 0}`);
  const socketPath = join(dir, 'docker.sock');
  const leftover = await pingSocket(socketPath);
  delete process.env.TOOLMESH_TEST_DOCKER_SOCKET; // that variable is for tests; the demo picks its own engine
  say(leftover ? `reusing the private dockerd an earlier demo run left at ${socketPath} (it keeps running after this run)`
    : `no Docker engine at ${candidates.join(' or ')}: starting a private dockerd on ${socketPath} (log: ${join(dir, 'dockerd.log')})`);
  try {
    const engine = await ensureDockerd(dir);
    if (!engine) throw new Error('prerequisites missing');
    return { socketPath: engine.socketPath, startedHere: !leftover };
  } catch (e) {
    say(`the private dockerd did not start, so the agent runs without its docker pack: ${(e as Error).message.split('\n')[0]}`);
    return undefined;
  }
}

/** Makes sure {@link DEMO_IMAGE} exists on a shared engine (imported from busybox-static). */
async function ensureImageOn(docker: Docker, socketPath: string, userDir: string): Promise<boolean> {
  if (await docker.getImage(DEMO_IMAGE).inspect().then(() => true, () => false)) return true;
  if (!existsSync('/usr/bin/docker') || !existsSync('/bin/busybox')) {
    say(`image ${DEMO_IMAGE} is missing and cannot be made here (needs the docker CLI and /bin/busybox: apt-get install docker.io busybox-static)`);
    return false;
  }
  say(`importing image ${DEMO_IMAGE} from /bin/busybox into ${socketPath}`);
  const before = process.env.TOOLMESH_TEST_DOCKER_SOCKET;
  process.env.TOOLMESH_TEST_DOCKER_SOCKET = socketPath; // ensureDockerd then only imports the image there
  try {
    return (await ensureDockerd(join(userDir, 'docker-image'))) !== null;
  } finally {
    if (before === undefined) delete process.env.TOOLMESH_TEST_DOCKER_SOCKET;
    else process.env.TOOLMESH_TEST_DOCKER_SOCKET = before;
  }
}

/**
 * Creates and starts the demo container when needed. Resolves true when this run started it
 * (so the shutdown stops it again). A container of that name without the demo label is used as
 * it is, never started or stopped by the demo.
 */
export async function ensureDemoContainer(engine: Engine, userDir: string): Promise<boolean> {
  const docker = new Docker({ socketPath: engine.socketPath });
  let info: Docker.ContainerInspectInfo | undefined;
  try {
    info = await docker.getContainer(DEMO_CONTAINER).inspect();
  } catch (e) {
    if ((e as { statusCode?: number }).statusCode !== 404) throw e;
  }
  if (info && info.Config.Labels?.['io.toolmesh.demo'] !== '1') {
    say(`a container named ${DEMO_CONTAINER} exists without the label io.toolmesh.demo=1; the demo leaves it as it is (${info.State.Status})`);
    return false;
  }
  if (!info) {
    if (!engine.startedHere && !(await ensureImageOn(docker, engine.socketPath, userDir))) return false;
    const heartbeat = `trap 'exit 0' TERM INT; httpd -p 8080 -h /tmp; echo "${DEMO_CONTAINER}: httpd listening on :8080"; `
      + `while true; do echo "$(date -u '+%Y-%m-%dT%H:%M:%SZ') ${DEMO_CONTAINER}: alive"; sleep 15 & wait $!; done`;
    await docker.createContainer({
      name: DEMO_CONTAINER,
      Image: DEMO_IMAGE,
      Cmd: ['sh', '-c', heartbeat],
      Labels: { 'io.toolmesh.demo': '1' },
      HostConfig: { NetworkMode: 'none' },
    });
    say(`created container ${DEMO_CONTAINER} (image ${DEMO_IMAGE}, network none, label io.toolmesh.demo=1)`);
    info = await docker.getContainer(DEMO_CONTAINER).inspect();
  }
  if (info.State.Running) {
    say(`container ${DEMO_CONTAINER} is running`);
    return false;
  }
  await docker.getContainer(DEMO_CONTAINER).start();
  say(`started container ${DEMO_CONTAINER}`);
  return true;
}

/** Stops the demo container (it is kept); quiet when it is already stopped. */
export async function stopDemoContainer(engine: Engine): Promise<void> {
  try {
    await new Docker({ socketPath: engine.socketPath }).getContainer(DEMO_CONTAINER).stop({ t: 5 });
    say(`stopped container ${DEMO_CONTAINER} (kept; the next run starts it again)`);
  } catch (e) {
    const err = e as { statusCode?: number; code?: string; message: string };
    if (err.statusCode === 304) return; // already stopped
    if (engine.startedHere && (err.code === 'ENOENT' || err.code === 'ECONNREFUSED')) {
      // Ctrl-C in a terminal reaches the private dockerd too: it is shutting down and stops its containers itself
      say(`the private dockerd is already shutting down (it got the signal too); it stops ${DEMO_CONTAINER} itself`);
      return;
    }
    say(`could not stop container ${DEMO_CONTAINER}: ${err.message}`);
  }
}
