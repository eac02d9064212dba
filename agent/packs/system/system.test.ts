import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rm, statfs, writeFile } from 'node:fs/promises';
import os from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import { toCatalogTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import type { PackContext } from '../types';
import { SystemConfigSchema, systemPack } from './index';
import { parseDf, parseMeminfo, parseSystemctlShow, readThermalZones, runProgram } from './read';

const packCtx: PackContext = { agentId: 'pi', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() };
const signal = new AbortController().signal;
const ctx: ToolContext = { signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {} };

async function toolsFor(config: unknown): Promise<ToolDefinition[]> {
  const result = await systemPack.create(SystemConfigSchema.parse(config), packCtx);
  if ('unavailable' in result) throw new Error(result.unavailable);
  return result.tools;
}

async function call(tools: ToolDefinition[], name: string, args: unknown = {}): Promise<any> {
  const tool = tools.find((t) => t.name === name);
  if (!tool) throw new Error(`no tool ${name}`);
  return tool.execute(tool.input.parse(args), ctx);
}

async function rejection(p: Promise<unknown>): Promise<ToolError> {
  const err = await p.then(() => undefined, (e: unknown) => e);
  expect(err).toBeInstanceOf(ToolError);
  return err as ToolError;
}

describe('system pack config', () => {
  it('enables every command but service_status by default', async () => {
    const tools = await toolsFor({});
    expect(tools.map((t) => t.name)).toEqual(['system_disk_usage', 'system_memory', 'system_uptime', 'system_cpu_temperature']);
    for (const t of tools) expect(toCatalogTool(t).annotations).toMatchObject({ risk: 'low', readOnlyHint: true });
  });

  it('offers only the enabled commands, and service_status for the listed units', async () => {
    expect((await toolsFor({ commands: ['memory'] })).map((t) => t.name)).toEqual(['system_memory']);
    const tools = await toolsFor({ commands: ['service_status', 'uptime'], units: ['ssh.service', 'getty@tty1.service'] });
    expect(tools.map((t) => t.name)).toEqual(['system_service_status', 'system_uptime']);
    expect(toCatalogTool(tools[0]).inputSchema).toMatchObject({
      properties: { unit: { enum: ['ssh.service', 'getty@tty1.service'] } }, additionalProperties: false,
    });
    expect(tools[0].input.safeParse({ unit: 'sshd.service' }).success).toBe(false);
  });

  it('rejects unknown keys, unknown commands and unit names that could read as options', () => {
    expect(SystemConfigSchema.safeParse({ shell: 'sh' }).success).toBe(false);
    expect(SystemConfigSchema.safeParse({ commands: ['reboot'] }).success).toBe(false);
    expect(SystemConfigSchema.safeParse({ units: ['-H'] }).success).toBe(false);
    expect(SystemConfigSchema.safeParse({ units: ['a b'] }).success).toBe(false);
  });
});

describe('system tools on this machine', () => {
  it('reports disk usage of real file systems in bytes, as statfs sees them', async () => {
    const { filesystems } = await call(await toolsFor({}), 'system_disk_usage');
    const root = filesystems.find((f: { mount: string }) => f.mount === '/');
    const st = await statfs('/');
    expect(root.sizeBytes).toBe(st.blocks * st.bsize);
    expect(root.usedBytes + root.availableBytes).toBeLessThanOrEqual(root.sizeBytes);
    expect(filesystems.map((f: { type: string }) => f.type)).not.toContain('tmpfs');
  });

  it('reports memory in bytes', async () => {
    const m = await call(await toolsFor({}), 'system_memory');
    expect(m.totalBytes).toBe(os.totalmem());
    expect(m.availableBytes).toBeGreaterThan(0);
    expect(m.availableBytes).toBeLessThanOrEqual(m.totalBytes);
    expect(m.usedPercent).toBeGreaterThan(0);
    expect(m.usedPercent).toBeLessThan(100);
  });

  it('reports uptime, boot time and load', async () => {
    const u = await call(await toolsFor({}), 'system_uptime');
    expect(Math.abs(u.uptimeSeconds - os.uptime())).toBeLessThanOrEqual(2);
    expect(Math.abs(Date.parse(u.bootTime) - (Date.now() - os.uptime() * 1000))).toBeLessThan(3000);
    expect(u.cpuCount).toBe(os.cpus().length);
    expect(u.load1).toBeGreaterThanOrEqual(0);
  });

  it('reports CPU temperature, or NOT_SUPPORTED where the kernel exposes no thermal zone', async () => {
    const tools = await toolsFor({});
    const zones = await readThermalZones();
    if (zones.length === 0) {
      const err = await rejection(call(tools, 'system_cpu_temperature'));
      expect(err.code).toBe('NOT_SUPPORTED');
      expect(err.message).toContain('/sys/class/thermal');
    } else {
      const t = await call(tools, 'system_cpu_temperature');
      expect(t.zones.map((z: { zone: string }) => z.zone)).toEqual(zones.map((z) => z.zone));
    }
  });

  it('reports a unit state, or NOT_SUPPORTED where systemd is not the init system', async () => {
    const tools = await toolsFor({ units: ['systemd-journald.service'] });
    // sd_booted(3): systemd runs when /run/systemd/system exists.
    if (existsSync('/run/systemd/system')) {
      const s = await call(tools, 'system_service_status', { unit: 'systemd-journald.service' });
      expect(s).toMatchObject({ unit: 'systemd-journald.service', loadState: 'loaded', activeState: expect.any(String) });
    } else {
      const err = await rejection(call(tools, 'system_service_status', { unit: 'systemd-journald.service' }));
      expect(err.code).toBe('NOT_SUPPORTED');
      expect(err.message).toMatch(/systemd is not running|systemctl is not installed/);
    }
  });
});

describe('system readers', () => {
  const dirs: string[] = [];
  afterAll(async () => {
    await Promise.all(dirs.map((d) => rm(d, { recursive: true, force: true })));
  });

  it('reads thermal zones in millidegrees and skips unreadable ones', async () => {
    const dir = await mkdtemp(join(os.tmpdir(), 'toolmesh-thermal-'));
    dirs.push(dir);
    await mkdir(join(dir, 'thermal_zone0'));
    await writeFile(join(dir, 'thermal_zone0', 'temp'), '48312\n');
    await writeFile(join(dir, 'thermal_zone0', 'type'), 'cpu-thermal\n');
    await mkdir(join(dir, 'thermal_zone1', 'temp'), { recursive: true }); // reading it fails (EISDIR)
    await mkdir(join(dir, 'cooling_device0'));
    expect(await readThermalZones(dir)).toEqual([{ zone: 'thermal_zone0', type: 'cpu-thermal', celsius: 48.312 }]);
    expect(await readThermalZones(join(dir, 'absent'))).toEqual([]);
  });

  it('parses df -kPT, keeping mount points with spaces and dropping pseudo file systems', () => {
    const text = [
      'Filesystem     Type     1024-blocks    Used Available Capacity Mounted on',
      '/dev/root      ext4        29888536 9184116  19442380      33% /',
      'tmpfs          tmpfs         942356       0    942356       0% /dev/shm',
      '/dev/sda1      vfat          261108   51410    209698      20% /media/USB Stick',
      '',
    ].join('\n');
    expect(parseDf(text)).toEqual([
      { filesystem: '/dev/root', type: 'ext4', mount: '/', sizeBytes: 29888536 * 1024, usedBytes: 9184116 * 1024, availableBytes: 19442380 * 1024, usePercent: 33 },
      { filesystem: '/dev/sda1', type: 'vfat', mount: '/media/USB Stick', sizeBytes: 261108 * 1024, usedBytes: 51410 * 1024, availableBytes: 209698 * 1024, usePercent: 20 },
    ]);
  });

  it('parses /proc/meminfo into bytes and counts', () => {
    const m = parseMeminfo('MemTotal:        3884356 kB\nActive(anon):      10 kB\nHugePages_Total:       0\n');
    expect(m.get('MemTotal')).toBe(3884356 * 1024);
    expect(m.get('Active(anon)')).toBe(10240);
    expect(m.get('HugePages_Total')).toBe(0);
  });

  it('parses systemctl show output', () => {
    expect(parseSystemctlShow('Id=ssh.service\nActiveState=active\nExecMainStartTimestamp=Sun 2026-11-22 10:00:00 UTC\n'))
      .toEqual({ Id: 'ssh.service', ActiveState: 'active', ExecMainStartTimestamp: 'Sun 2026-11-22 10:00:00 UTC' });
  });

  it('runs programs without a shell, under time and output caps', async () => {
    expect(await runProgram('echo', ['$(id)', '; true'], signal)).toBe('$(id) ; true\n');
    expect((await rejection(runProgram('toolmesh-no-such-program', [], signal))).code).toBe('NOT_SUPPORTED');
    const failed = await rejection(runProgram('ls', ['/toolmesh-no-such-dir'], signal));
    expect(failed.code).toBe('EXECUTION_FAILED');
    expect(failed.message).toContain('No such file or directory');
    expect((await rejection(runProgram('sleep', ['5'], signal, { timeoutMs: 100 }))).code).toBe('TIMEOUT');
    expect((await rejection(runProgram('head', ['-c', '5000', '/dev/zero'], signal, { maxBytes: 1000 }))).code).toBe('PAYLOAD_TOO_LARGE');
    const controller = new AbortController();
    const pending = runProgram('sleep', ['5'], controller.signal);
    controller.abort();
    expect((await pending.then(() => undefined, (e: Error) => e))?.name).toBe('AbortError');
  });
});
