/**
 * What the dashboard tests share: a real Node-RED process with FlowFuse Dashboard 2.0 installed
 * and adminAuth on (user {@link ADMIN}; anonymous users may read, so `GET /flows` works without a
 * login, writes need one), and headless Chromium (playwright-core, Debian's /usr/bin/chromium)
 * with a fresh profile directory.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './node-red-process';
import { resolveFromNodeRed } from './node-red-path';

/** The Node-RED editor user the dashboard agent logs in as. */
export const ADMIN = { username: 'admin', password: 'toolmesh-dashboard-test' } as const;

/** Chromium flags of the project's browser tests. */
import { CHROMIUM_ARGS } from './browser';

export { CHROMIUM_ARGS };

/** A bcrypt hash of `password` with bcryptjs, which Node-RED ships for its adminAuth. */
function bcryptHash(password: string): string {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bcrypt = require(resolveFromNodeRed('bcryptjs')) as { hashSync(pw: string, rounds: number): string };
  return bcrypt.hashSync(password, 8);
}

/** Starts Node-RED with Dashboard 2.0, adminAuth ({@link ADMIN}, anonymous read) and `flows`. */
export function startDashboardNodeRed(flows: unknown[] = []): Promise<NodeRedProcess> {
  return startNodeRedProcess({
    modules: ['@flowfuse/node-red-dashboard'],
    flows,
    settings: {
      adminAuth: {
        type: 'credentials',
        users: [{ username: ADMIN.username, password: bcryptHash(ADMIN.password), permissions: '*' }],
        default: { permissions: 'read' },
      },
    },
  });
}

/** A headless Chromium with one page; `close()` ends it and removes its profile. */
export interface Browser {
  page: Page;
  context: BrowserContext;
  close(): Promise<void>;
}

/** Starts Chromium at `executablePath` with a fresh `--user-data-dir`. */
export async function openChromium(executablePath: string): Promise<Browser> {
  const profile = mkdtempSync(join(tmpdir(), 'toolmesh-chromium-'));
  const context = await chromium.launchPersistentContext(profile, { executablePath, headless: true, args: CHROMIUM_ARGS });
  const page = context.pages()[0] ?? await context.newPage();
  return {
    page, context,
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** `GET <nodeRed>/flow/:id` (anonymous read), or null for 404. */
export async function readFlow(nodeRed: NodeRedProcess, id: string): Promise<any> {
  const res = await fetch(`${nodeRed.url}/flow/${id}`, { headers: { 'Node-RED-API-Version': 'v1' } });
  if (res.status === 404) return null;
  if (!res.ok) throw new Error(`GET /flow/${id}: HTTP ${res.status}`);
  return res.json();
}

/** `GET <nodeRed>/flows` as a plain node list (anonymous read). */
export async function readFlows(nodeRed: NodeRedProcess): Promise<any[]> {
  const res = await fetch(`${nodeRed.url}/flows`, { headers: { 'Node-RED-API-Version': 'v1' } });
  if (!res.ok) throw new Error(`GET /flows: HTTP ${res.status}`);
  return res.json() as Promise<any[]>;
}
