/**
 * The gstreamer pack: a video-encoder board. Discovery uses the real
 * gst-inspect-1.0, /dev/video* and statfs; pipelines run as gst-launch-1.0 processes started with
 * an argument list. A pipeline written by a model is untrusted: its elements come from the board
 * profile's allowlist (plus `elements`), network sinks may reach only `allowedHosts`, files only
 * `recordingPaths` (see destinations.ts), and gst-launch never sees a shell.
 *
 * Risks: every discovery tool and gst_validate_pipeline are low and read-only;
 * gst_start_pipeline is medium (it spends CPU, bandwidth and disk, but only towards allowed
 * hosts and paths, so it is no wider than docker_run_container); gst_stop_pipeline is low (it
 * only ends what this pack started, and stopping must never wait for an approval).
 * Pipelines keep running when their caller goes away or the broker connection drops (a stream is
 * meant to run unattended); they are stopped when the agent stops.
 *
 * ```yaml
 * packs:
 *   gstreamer:
 *     profile: generic            # generic | amlogic-s905 | raspberry-pi (profiles.ts)
 *     allowedHosts: [127.0.0.1]   # hosts network sinks may reach (localhost = 127.0.0.1, 0.0.0.0 = listen on all)
 *     recordingPaths: [/srv/recordings]
 *     inputs: [{ name: hdmi, description: HDMI capture, pipeline: "v4l2src device=/dev/video0" }]
 * ```
 */
import { isAbsolute } from 'node:path';
import { z } from 'zod';
import type { ToolPack } from '../types';
import { ELEMENT_NAME, ElementCatalog, runTool } from './inspect';
import { PROFILE_IDS, PROFILES } from './profiles';

/** The `packs.gstreamer` section of the agent config. Unknown keys are errors. */
export const GstConfigSchema = z.strictObject({
  profile: z.enum(PROFILE_IDS).default('generic').describe(`Board profile: ${PROFILE_IDS.join(', ')}`),
  gstLaunch: z.string().min(1).default('gst-launch-1.0').describe('gst-launch-1.0 program (path or name on PATH)'),
  gstInspect: z.string().min(1).default('gst-inspect-1.0').describe('gst-inspect-1.0 program (path or name on PATH)'),
  elements: z.array(z.string().regex(ELEMENT_NAME, 'an element name such as x264enc')).default([])
    .describe('Elements allowed besides the profile\'s'),
  allowedHosts: z.array(z.string().min(1)).min(1).default(['127.0.0.1'])
    .describe('Hosts network sinks may send to or listen on; localhost counts as 127.0.0.1, 0.0.0.0 allows listening on every interface'),
  recordingPaths: z.array(z.string().refine(isAbsolute, 'an absolute directory path')).default([])
    .describe('Directories filesink may write into (and filesrc read from); empty: no file output'),
  inputs: z.array(z.strictObject({
    name: z.string().regex(/^[A-Za-z0-9_-]{1,32}$/, 'letters, digits, _ and -'),
    description: z.string().default(''),
    pipeline: z.string().min(1).describe('Pipeline fragment that captures this input, e.g. v4l2src device=/dev/video0'),
  })).default([]).describe('Named video inputs the board reports to models (HDMI, camera ...)'),
  maxInstances: z.number().int().min(1).max(32).default(4).describe('Pipelines that may run at once'),
  logLines: z.number().int().min(10).max(5000).default(200).describe('Log lines kept per pipeline'),
  stopTimeoutMs: z.number().int().min(100).max(60_000).default(5000).describe('Wait after SIGINT before SIGKILL, ms'),
  startWaitMs: z.number().int().min(0).max(30_000).default(3000)
    .describe('How long gst_start_pipeline waits for PLAYING (or an early failure) before it answers, ms'),
});
export type GstConfig = z.output<typeof GstConfigSchema>;

/** Why a GStreamer program cannot be used, or undefined when `<bin> --version` runs. */
async function missing(bin: string): Promise<string | undefined> {
  const run = await runTool(bin, ['--version'], undefined, 10_000).catch((e: Error) => e);
  if (run instanceof Error) return `${bin} cannot run (${run.message}); install GStreamer's tools (Debian: gstreamer1.0-tools)`;
  return run.code === 0 ? undefined : `${bin} --version exited with ${run.code}`;
}

/**
 * The gstreamer pack. `create()` returns `{ unavailable }` when gst-inspect-1.0 or
 * gst-launch-1.0 cannot run. Its `close()` (and the agent's `stopping` event) stops every
 * pipeline; a process `exit` hook SIGKILLs any still running if the agent dies without closing.
 */
export const gstreamerPack: ToolPack<typeof GstConfigSchema> = {
  name: 'gstreamer',
  configSchema: GstConfigSchema,
  async create(config, ctx) {
    const problem = (await missing(config.gstInspect)) ?? (await missing(config.gstLaunch));
    if (problem) return { unavailable: problem };
    // tool code loads here, not with this module: every agent validates every pack's config
    // section, but only an agent with this pack configured needs the tools (bench/agent-rss.mjs)
    const [{ PipelineRunner }, { gstTools }] = await Promise.all([import('./instances'), import('./tools')]);
    const catalog = new ElementCatalog(config.gstInspect);
    const runner = new PipelineRunner(config);
    const policy = {
      allowed: new Set<string>([...PROFILES[config.profile].elements, ...config.elements]),
      allowedHosts: config.allowedHosts,
      recordingPaths: config.recordingPaths,
    };
    const onStopping = () => { void runner.stopAll(); };
    const onExit = () => runner.killAllNow();
    ctx.events.on('stopping', onStopping);
    process.on('exit', onExit);
    return {
      tools: gstTools(config, catalog, runner, policy),
      async close() {
        ctx.events.off('stopping', onStopping);
        await runner.stopAll();
        process.off('exit', onExit);
      },
    };
  },
};
