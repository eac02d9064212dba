/**
 * The system pack: named, read-only system commands from an allowlist. Programs run through `execFile` with an argument list, never a shell string.
 */
import { readFile } from 'node:fs/promises';
import os from 'node:os';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolDefinition } from '../../../protocol/tool';
import type { ToolPack } from '../types';
import { parseDf, parseMeminfo, parseSystemctlShow, readThermalZones, runProgram } from './read';

/** The commands a config may enable; each is one tool named `system_<command>`. */
export const SYSTEM_COMMANDS = ['disk_usage', 'memory', 'uptime', 'cpu_temperature', 'service_status'] as const;
export type SystemCommand = (typeof SYSTEM_COMMANDS)[number];

/**
 * A systemd unit name (systemd.unit(5): letters, digits, `:-_.\` and `@`). The first character may
 * not be `-`, so a name can never read as a systemctl option.
 */
const UNIT_NAME = /^[A-Za-z0-9_@.:\\][A-Za-z0-9_@.:\\-]{0,255}$/;

/** The `packs.system` section of the agent config. Unknown keys are errors. */
export const SystemConfigSchema = z.strictObject({
  commands: z.array(z.enum(SYSTEM_COMMANDS)).default([...SYSTEM_COMMANDS])
    .describe('Enabled commands; default all'),
  units: z.array(z.string().regex(UNIT_NAME, 'a systemd unit name such as nginx.service')).default([])
    .describe('systemd units system_service_status may report on; empty leaves that tool out'),
});
export type SystemConfig = z.output<typeof SystemConfigSchema>;

/** Properties `system_service_status` asks systemctl for, and the names it reports them under. */
const UNIT_PROPERTIES = {
  Id: 'unit', Description: 'description', LoadState: 'loadState', ActiveState: 'activeState',
  SubState: 'subState', UnitFileState: 'unitFileState', MainPID: 'mainPid',
  ActiveEnterTimestamp: 'activeSince', NRestarts: 'restarts',
} as const;

/** systemctl's complaint when PID 1 is not systemd (containers, other init systems). */
const NO_SYSTEMD = /not been booted with systemd|Failed to connect to bus/;

const TOOL_TIMEOUT_MS = 10_000;

function buildTools(config: SystemConfig): Partial<Record<SystemCommand, ToolDefinition>> {
  const common = { risk: 'low', readOnly: true, idempotent: true, timeoutMs: TOOL_TIMEOUT_MS } as const;
  const tools: Partial<Record<SystemCommand, ToolDefinition>> = {
    disk_usage: defineTool({
      ...common,
      name: 'system_disk_usage',
      description: 'Size, used and available bytes and use percent of each mounted file system (RAM-backed and container layers left out).',
      input: z.strictObject({}),
      async execute(_args, ctx) {
        return { filesystems: parseDf(await runProgram('df', ['-kPT'], ctx.signal)) };
      },
    }),
    memory: defineTool({
      ...common,
      name: 'system_memory',
      description: 'Memory and swap in bytes: total, available (what programs can still get), free, buffers, page cache, and used percent.',
      input: z.strictObject({}),
      async execute() {
        const text = await readFile('/proc/meminfo', 'utf8').catch(() => {
          throw new ToolError('NOT_SUPPORTED', '/proc/meminfo is not readable; system_memory needs Linux');
        });
        const m = parseMeminfo(text);
        const get = (k: string) => m.get(k) ?? 0;
        const totalBytes = get('MemTotal');
        // MemAvailable exists since Linux 3.14; older kernels get the classic estimate.
        const availableBytes = m.get('MemAvailable') ?? get('MemFree') + get('Buffers') + get('Cached');
        return {
          totalBytes, availableBytes,
          freeBytes: get('MemFree'), buffersBytes: get('Buffers'), cachedBytes: get('Cached'),
          swapTotalBytes: get('SwapTotal'), swapFreeBytes: get('SwapFree'),
          usedPercent: totalBytes > 0 ? Math.round(((totalBytes - availableBytes) / totalBytes) * 1000) / 10 : 0,
        };
      },
    }),
    uptime: defineTool({
      ...common,
      name: 'system_uptime',
      description: 'Seconds since boot, boot time, and the 1/5/15-minute load averages with the CPU count to read them against.',
      input: z.strictObject({}),
      execute() {
        // os.uptime() and os.loadavg() read /proc/uptime and /proc/loadavg on Linux.
        const uptimeSeconds = Math.round(os.uptime());
        const [load1, load5, load15] = os.loadavg();
        return {
          uptimeSeconds,
          bootTime: new Date(Date.now() - uptimeSeconds * 1000).toISOString(),
          load1, load5, load15,
          cpuCount: os.cpus().length,
        };
      },
    }),
    cpu_temperature: defineTool({
      ...common,
      name: 'system_cpu_temperature',
      description: 'Temperatures in °C of the thermal zones the kernel exposes (the CPU on a Raspberry Pi), and the highest.',
      input: z.strictObject({}),
      async execute() {
        const zones = await readThermalZones();
        if (zones.length === 0) {
          throw new ToolError('NOT_SUPPORTED', 'this machine exposes no thermal zone under /sys/class/thermal');
        }
        return { zones, maxCelsius: Math.max(...zones.map((z) => z.celsius)) };
      },
    }),
  };
  const [first, ...rest] = config.units;
  if (first !== undefined) {
    tools.service_status = defineTool({
      ...common,
      name: 'system_service_status',
      description: `State of a systemd unit (load, active and sub state, enabled state, main PID, active since, restarts). Units: ${config.units.join(', ')}.`,
      input: z.strictObject({ unit: z.enum([first, ...rest]) }),
      async execute({ unit }, ctx) {
        const args = ['show', unit, '--no-pager', `--property=${Object.keys(UNIT_PROPERTIES).join(',')}`];
        let text: string;
        try {
          text = await runProgram('systemctl', args, ctx.signal);
        } catch (err) {
          if (err instanceof ToolError && err.code === 'EXECUTION_FAILED' && NO_SYSTEMD.test(err.message)) {
            throw new ToolError('NOT_SUPPORTED', 'systemd is not running on this machine, so there are no unit states to report');
          }
          throw err;
        }
        const props = parseSystemctlShow(text);
        return Object.fromEntries(Object.entries(UNIT_PROPERTIES).map(([prop, key]) => [key, props[prop] ?? null]));
      },
    });
  }
  return tools;
}

/**
 * The system pack: `system_disk_usage`, `system_memory`, `system_uptime`,
 * `system_cpu_temperature` and `system_service_status`, all low risk and read-only. Only the
 * tools of `commands` are offered; `system_service_status` only when `units` is not empty.
 */
export const systemPack: ToolPack<typeof SystemConfigSchema> = {
  name: 'system',
  configSchema: SystemConfigSchema,
  async create(config) {
    const all = buildTools(config);
    const tools = [...new Set(config.commands)].flatMap((c) => all[c] ?? []);
    return { tools };
  },
};
