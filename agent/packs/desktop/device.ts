/**
 * The desktop pack's machine tools: `desktop_get_device_info` (what this computer is, and the
 * space left under each allowed path) and `desktop_open_app` (starts a configured program;
 * the model picks an app id, never a command line).
 */
import { spawn } from 'node:child_process';
import { statfs } from 'node:fs/promises';
import os from 'node:os';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolDefinition } from '../../../protocol/tool';
import type { PathGuard } from './paths';
import type { AppConfig } from './schemas';

export { AppSchema, AppsSchema, type AppConfig } from './schemas';

/** `desktop_get_device_info`: host, OS, CPUs, memory, uptime and the file systems of the allowed paths. */
export function deviceInfoTool(guard: PathGuard): ToolDefinition {
  return defineTool({
    name: 'desktop_get_device_info',
    description: 'This computer: host name, OS, CPU, memory (bytes), uptime (seconds), load average, and total/free bytes of the file system under each allowed path.',
    input: z.strictObject({}),
    risk: 'low', readOnly: true, idempotent: true, timeoutMs: 10_000,
    async execute() {
      const cpus = os.cpus();
      const storage = await Promise.all(guard.roots.map(async (path) => {
        const s = await statfs(path);
        return { path, totalBytes: s.blocks * s.bsize, freeBytes: s.bfree * s.bsize, availableBytes: s.bavail * s.bsize };
      }));
      return {
        hostname: os.hostname(),
        platform: os.platform(), release: os.release(), version: os.version(), arch: os.arch(),
        user: os.userInfo().username,
        cpu: { count: cpus.length, model: cpus[0]?.model.trim() ?? 'unknown', speedMHz: cpus[0]?.speed ?? 0 },
        memory: { totalBytes: os.totalmem(), freeBytes: os.freemem() },
        uptimeSeconds: Math.round(os.uptime()),
        loadAverage: os.loadavg().map((v) => Math.round(v * 100) / 100),
        storage,
      };
    },
  });
}

/** Starts `command` detached (its own process group, no shell, no stdio) and resolves with its pid once it runs. */
function startDetached(command: string, args: string[], cwd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, detached: true, stdio: 'ignore', shell: false, windowsHide: true });
    child.once('error', reject);
    child.once('spawn', () => {
      child.unref();
      resolve(child.pid!);
    });
  });
}

/**
 * `desktop_open_app {app, args?}`: starts the program of a configured app with its fixed
 * arguments, then each call argument that is in the app's `allowedArgs` or, with `pathArgs`, a
 * path inside the allowed paths (passed as its real path). The program keeps running after the
 * call (and after the agent stops). Left out by the pack when no app is configured.
 * @throws ToolError APP_NOT_ALLOWED for an unknown app id or an argument the app does not allow;
 *   PATH_NOT_ALLOWED for a path argument outside the allowed paths; EXECUTION_FAILED when the
 *   program cannot start (not found, not executable).
 */
export function openAppTool(apps: Record<string, AppConfig>, guard: PathGuard): ToolDefinition {
  const ids = Object.keys(apps);
  const listing = ids.map((id) => (apps[id].description ? `${id} (${apps[id].description})` : id)).join(', ');
  return defineTool({
    name: 'desktop_open_app',
    description: `Start an application on this computer's desktop. Apps: ${listing}. Extra arguments only as each app allows (some take file paths inside the allowed folders).`,
    input: z.strictObject({
      app: z.string().min(1).max(64).describe(`One of: ${ids.join(', ')}`),
      args: z.array(z.string().max(4096)).max(32).default([]).describe('Extra arguments the app allows'),
    }),
    risk: 'medium', supportsDryRun: true,
    async execute({ app, args }, ctx) {
      const def = Object.hasOwn(apps, app) ? apps[app] : undefined;
      if (!def) throw new ToolError('APP_NOT_ALLOWED', `"${app}" is not an app on this agent; apps: ${ids.join(', ')}`, { app, allowed: ids });
      const extra: string[] = [];
      for (const arg of args) {
        if (def.allowedArgs.includes(arg)) extra.push(arg);
        else if (def.pathArgs) extra.push((await guard.check(arg)).real);
        else {
          throw new ToolError('APP_NOT_ALLOWED', `app ${app} does not take the argument "${arg}"${def.allowedArgs.length ? `; it takes: ${def.allowedArgs.join(', ')}` : '; it takes none'}`, { app, argument: arg, allowed: def.allowedArgs });
        }
      }
      const argv = [...def.args, ...extra];
      if (ctx.dryRun) return { dryRun: true, wouldDo: `start ${app}: ${[def.command, ...argv].join(' ')}`, app, command: def.command, args: argv };
      try {
        const pid = await startDetached(def.command, argv, os.homedir());
        return { app, started: true, pid, command: def.command, args: argv };
      } catch (e) {
        throw new ToolError('EXECUTION_FAILED', `app ${app} did not start: ${(e as Error).message}`, { app, command: def.command });
      }
    },
  });
}
