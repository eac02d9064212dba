/**
 * The desktop pack: folders, file search, device facts,
 * configured apps and allowlisted web pages on a desktop computer. Every tool is named
 * `desktop_<action>`:
 *
 * | tool | risk | notes |
 * | --- | --- | --- |
 * | `desktop_create_directory {path}` | medium | idempotent; dry run lists the directories it would create |
 * | `desktop_delete_directory {path, recursive}` | high, destructive | dry run counts files, directories, links and bytes |
 * | `desktop_search_files {root, pattern, type, maxResults}` | low, read-only | glob (see glob.ts), capped by `searchMaxResults` |
 * | `desktop_get_device_info {}` | low, read-only | host, OS, CPU, memory, uptime, space under each allowed path |
 * | `desktop_open_app {app, args}` | medium | configured apps only (APP_NOT_ALLOWED); dry run shows the command |
 * | `desktop_fetch_webpage {url, maxBytes}` | low, read-only | URL allowlist per hop; private addresses only when listed |
 *
 * Paths are checked by {@link PathGuard} (paths.ts: odd Unicode refused, NFC, symlinks resolved,
 * inside `allowedPaths` or PATH_NOT_ALLOWED). The file tools are left out when no allowed path
 * exists, `desktop_open_app` when `apps` is empty, `desktop_fetch_webpage` when `fetch.urls` is
 * empty.
 *
 * ```yaml
 * packs:
 *   desktop:
 *     allowedPaths: [~/Documents, ~/Downloads]
 *     apps:
 *       editor: { command: /usr/bin/gedit, pathArgs: true, description: text editor }
 *     fetch:
 *       urls: [https://en.wikipedia.org/wiki/, "*.example.com"]
 * ```
 */
import { z } from 'zod';
import type { ToolDefinition } from '../../../protocol/tool';
import type { ToolPack } from '../types';
import { AppsSchema, FetchConfigSchema } from './schemas';

/** The `packs.desktop` section of the agent config. Unknown keys are errors. */
export const DesktopConfigSchema = z.strictObject({
  allowedPaths: z.array(z.string().min(1).refine((p) => p.startsWith('/') || p === '~' || p.startsWith('~/'), 'an absolute path, or one starting with ~/'))
    .default([]).describe('Folders the file tools may touch (and everything inside); symlinks are resolved first'),
  searchMaxResults: z.number().int().min(1).max(10_000).default(200).describe('Cap on maxResults of desktop_search_files'),
  searchMaxEntries: z.number().int().min(100).max(10_000_000).default(100_000)
    .describe('Entries one search looks at before it stops'),
  apps: AppsSchema.describe('Apps desktop_open_app may start, by app id; empty leaves the tool out'),
  fetch: FetchConfigSchema.prefault({}),
});
export type DesktopConfig = z.output<typeof DesktopConfigSchema>;

/** The desktop pack; see the module comment for its tools. Never unavailable: at least desktop_get_device_info is offered. */
export const desktopPack: ToolPack<typeof DesktopConfigSchema> = {
  name: 'desktop',
  configSchema: DesktopConfigSchema,
  async create(config, ctx) {
    // tool code loads here, not with this module: every agent validates every pack's config
    // section, but only an agent with this pack configured needs the tools (bench/agent-rss.mjs)
    const [{ fileTools }, { PathGuard }, { deviceInfoTool, openAppTool }, { fetchTool }] = await Promise.all([
      import('./files'), import('./paths'), import('./device'), import('./fetch'),
    ]);
    const guard = await PathGuard.open(config.allowedPaths, ctx.log);
    const tools: ToolDefinition[] = [];
    if (guard.roots.length) tools.push(...fileTools(guard, { maxResults: config.searchMaxResults, maxEntries: config.searchMaxEntries }));
    else ctx.log.warn(`desktop: ${config.allowedPaths.length ? 'none of allowedPaths exists' : 'allowedPaths is empty'}, so the file tools are left out`);
    tools.push(deviceInfoTool(guard));
    if (Object.keys(config.apps).length) tools.push(openAppTool(config.apps, guard));
    if (config.fetch.urls.length) tools.push(fetchTool(config.fetch));
    return { tools };
  },
};
