/**
 * vitest globalSetup: prints one line when Debian packages are missing, installs Node 22 and
 * Node-RED 5 into .ci/nr5 when a selected test file needs them (test/support/prerequisites.ts),
 * then starts the test Docker engine once per run (scripts/dockerd.ts) and
 * stops it afterwards if this run started it. Test files read it with `inject('dockerd')`:
 * `{ socketPath, image }`, or null when Docker tests must skip (outside CI only; in CI a missing
 * package fails the run). Workers also find the socket in `TOOLMESH_TEST_DOCKER_SOCKET`.
 */
import type { TestProject } from 'vitest/node';
import { ensureDockerd, stopDockerd, type TestDockerd } from '../../scripts/dockerd';
import { ensureNr5, reportSystemDeps } from './prerequisites';

declare module 'vitest' {
  export interface ProvidedContext {
    dockerd: TestDockerd | null;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  reportSystemDeps();
  // the test files of this run (vitest's experimental state API; empty when unknown: all files)
  await ensureNr5(project.vitest.state?.getPaths?.() ?? []);
  const dockerd = await ensureDockerd();
  project.provide('dockerd', dockerd);
  const setEnv = dockerd !== null && !process.env.TOOLMESH_TEST_DOCKER_SOCKET;
  if (setEnv) process.env.TOOLMESH_TEST_DOCKER_SOCKET = dockerd.socketPath;
  return async () => {
    if (setEnv) delete process.env.TOOLMESH_TEST_DOCKER_SOCKET;
    await stopDockerd();
  };
}
