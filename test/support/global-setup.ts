/**
 * vitest globalSetup: starts the test Docker engine once per run (scripts/dockerd.ts) and
 * stops it afterwards if this run started it. Test files read it with `inject('dockerd')`:
 * `{ socketPath, image }`, or null when Docker tests must skip (outside CI only; in CI a missing
 * package fails the run). Workers also find the socket in `TOOLMESH_TEST_DOCKER_SOCKET`.
 */
import type { TestProject } from 'vitest/node';
import { ensureDockerd, stopDockerd, type TestDockerd } from '../../scripts/dockerd';

declare module 'vitest' {
  export interface ProvidedContext {
    dockerd: TestDockerd | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const dockerd = await ensureDockerd();
  project.provide('dockerd', dockerd);
  const setEnv = dockerd !== null && !process.env.TOOLMESH_TEST_DOCKER_SOCKET;
  if (setEnv) process.env.TOOLMESH_TEST_DOCKER_SOCKET = dockerd.socketPath;
  return async () => {
    if (setEnv) delete process.env.TOOLMESH_TEST_DOCKER_SOCKET;
    await stopDockerd();
  };
}
