/**
 * The gstreamer pack's tool definitions. Tool names
 * carry the pack's `gst_` prefix, as the docker and system packs do, so they stay unique on an
 * agent that runs several packs: gst_get_board_info, gst_list_video_devices, gst_check_storage,
 * gst_get_encoder_info, gst_get_element_info, gst_validate_pipeline, gst_get_running_instances,
 * gst_start_pipeline, gst_stop_pipeline.
 */
import { z } from 'zod';
import { ToolError, type ToolErrorCode } from '../../../protocol/errors';
import { defineTool, type ToolDefinition } from '../../../protocol/tool';
import { checkStorage, listVideoDevices, machineInfo } from './discovery';
import { ELEMENT_NAME, type ElementCatalog } from './inspect';
import { PipelineRunner, RunnerBusyError, type InstanceInfo } from './instances';
import { COMMON_ENCODERS, PROFILES } from './profiles';
import type { GstConfig } from './index';
import { suggest, validatePipeline, type IssueCode, type PipelineCheck, type PipelinePolicy } from './validate';

const Pipeline = z.string().min(1).max(4096)
  .describe('gst-launch-1.0 pipeline description, e.g. "videotestsrc is-live=true ! x264enc tune=zerolatency bitrate=4000 ! h264parse ! mpegtsmux ! udpsink host=127.0.0.1 port=5000"');
const InstanceName = z.string().regex(/^[A-Za-z0-9_.-]{1,64}$/, 'letters, digits, _ . - (1 to 64)');

/** Issues that are refusals of this board's policy rather than mistakes. */
const POLICY_CODES: readonly IssueCode[] = ['HOST_NOT_ALLOWED', 'ELEMENT_NOT_ALLOWED', 'PROPERTY_NOT_ALLOWED', 'DEVICE_NOT_ALLOWED'];

/** The tool error of an invalid pipeline: PATH_NOT_ALLOWED or PERMISSION_DENIED for policy refusals, else INVALID_ARGUMENTS. */
function refusal(check: PipelineCheck): ToolError {
  const codes = new Set(check.errors.map((e) => e.code));
  const code: ToolErrorCode = codes.has('PATH_NOT_ALLOWED') ? 'PATH_NOT_ALLOWED'
    : POLICY_CODES.some((c) => codes.has(c)) ? 'PERMISSION_DENIED'
    : 'INVALID_ARGUMENTS';
  return new ToolError(code, `the pipeline is not valid on this board: ${check.errors.map((e) => e.message).join('; ')}`, { errors: check.errors });
}

/** Builds the pack's tools. `runner` owns the gst-launch processes. */
export function gstTools(config: GstConfig, catalog: ElementCatalog, runner: PipelineRunner, policy: PipelinePolicy): ToolDefinition[] {
  const profile = PROFILES[config.profile];
  const hosts = config.allowedHosts.join(', ');
  const paths = config.recordingPaths.length ? config.recordingPaths.join(', ') : 'none (no file output)';
  const readOnly = { risk: 'low', readOnly: true, idempotent: true } as const;
  const brief = (i: InstanceInfo) => ({ ...i, log: i.log.slice(-20) });

  return [
    defineTool({
      ...readOnly,
      name: 'gst_get_board_info',
      description: 'The encoder board: its profile, machine facts, GStreamer version, the named video inputs with the pipeline fragment that captures each, allowed destination hosts, recording paths, allowed elements and how many pipelines run.',
      input: z.strictObject({}),
      async execute(_args, ctx) {
        return {
          profile: { id: profile.id, description: profile.description },
          ...(await machineInfo(config.gstLaunch, ctx.signal)),
          inputs: config.inputs,
          allowedHosts: config.allowedHosts,
          recordingPaths: config.recordingPaths,
          allowedElements: [...policy.allowed].sort(),
          maxInstances: config.maxInstances,
          running: runner.running().length,
        };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_list_video_devices',
      description: 'Video devices (/dev/video*) with their driver name and, when v4l2-ctl is installed, capture formats, sizes and frame rates. An empty list means no video device is attached.',
      input: z.strictObject({}),
      async execute(_args, ctx) {
        return { devices: await listVideoDevices({ signal: ctx.signal }) };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_check_storage',
      description: `Free and total space in bytes, and whether it is writable, of each recording path (${paths}).`,
      input: z.strictObject({}),
      async execute() {
        return { paths: await checkStorage(config.recordingPaths) };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_get_encoder_info',
      description: 'Which H.264/H.265/JPEG encoders this board has: the profile\'s (hardware first) and the common software ones, each with installed (gst-inspect-1.0), allowed, and its bitrate property with unit. recommended names the first installed, allowed encoder per codec.',
      input: z.strictObject({ codec: z.enum(['h264', 'h265', 'mjpeg']).optional().describe('Only this codec') }),
      async execute({ codec }) {
        const seen = new Set<string>();
        const candidates = [...profile.encoders, ...COMMON_ENCODERS].filter((e) => !seen.has(e.element) && seen.add(e.element) && (!codec || e.codec === codec));
        const encoders = await Promise.all(candidates.map(async (e) => {
          const info = await catalog.get(e.element);
          const prop = e.bitrate && info?.properties.find((p) => p.name === e.bitrate!.property);
          return {
            element: e.element, codec: e.codec, hardware: e.hardware, installed: info !== null, allowed: policy.allowed.has(e.element),
            longName: info?.factory['Long-name'] ?? null,
            bitrate: e.bitrate ? { ...e.bitrate, ...(prop ? { description: prop.description, range: prop.range, default: prop.default } : {}) } : null,
            ...(info ? {} : { documented: e.properties ?? {} }),
            verified: e.verified, source: e.source,
          };
        }));
        const recommended: Record<string, string | null> = {};
        for (const c of codec ? [codec] : ['h264', 'h265', 'mjpeg']) {
          recommended[c] = encoders.find((e) => e.codec === c && e.installed && e.allowed)?.element ?? null;
        }
        return { profile: profile.id, encoders, recommended };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_get_element_info',
      description: 'One GStreamer element as gst-inspect-1.0 describes it: factory details (long name, class, description), plugin, pad templates with caps, and properties with type, flags, default, range and enum values. allowed says whether pipelines on this board may use it.',
      input: z.strictObject({ element: z.string().regex(ELEMENT_NAME, 'an element name such as x264enc').describe('Element factory name, e.g. x264enc') }),
      async execute({ element }) {
        const info = await catalog.get(element);
        if (!info) {
          const s = suggest(element, policy.allowed);
          throw new ToolError('INVALID_ARGUMENTS', `no GStreamer element "${element}" is installed${s ? `; did you mean "${s}"?` : ''}`, { element, ...(s ? { suggestion: s } : {}) });
        }
        return { ...info, allowed: policy.allowed.has(element) };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_validate_pipeline',
      description: `Checks a gst-launch-1.0 pipeline without running it: syntax; every element on this board's allowlist and installed; every property known, writable and of the right type; network sinks only to allowed hosts (${hosts}); files only inside recording paths (${paths}). Unknown names get a suggestion. Returns valid, errors [{code, message, element, property, suggestion}] and the normalized argv. Validate before gst_start_pipeline.`,
      input: z.strictObject({ pipeline: Pipeline }),
      async execute({ pipeline }) {
        return { ...(await validatePipeline(pipeline, catalog, policy)) };
      },
    }),
    defineTool({
      ...readOnly,
      name: 'gst_get_running_instances',
      description: 'Pipelines started on this board, newest first: id, name, pipeline, pid, startedAt, state (starting, playing, stopping, stopped, exited, failed), exit code or signal, lastError and the newest log lines.',
      input: z.strictObject({
        includeEnded: z.boolean().default(true).describe('Also list pipelines that ended'),
        logLines: z.number().int().min(0).max(config.logLines).default(Math.min(20, config.logLines)).describe('Newest log lines per instance'),
      }),
      execute({ includeEnded, logLines }) {
        const all = runner.list(logLines);
        return { instances: includeEnded ? all : all.filter((i) => ['starting', 'playing', 'stopping'].includes(i.state)) };
      },
    }),
    defineTool({
      name: 'gst_start_pipeline',
      description: `Validates a pipeline as gst_validate_pipeline does and runs it with gst-launch-1.0 -e (argument list, no shell). Returns the instance (id, pid, state, first log lines). It keeps running until gst_stop_pipeline, its end of stream, or the agent stops. At most ${config.maxInstances} run at once.`,
      input: z.strictObject({ pipeline: Pipeline, name: InstanceName.optional().describe('A name to find it by, unique among running pipelines') }),
      risk: 'medium', supportsDryRun: true,
      timeoutMs: config.startWaitMs + 15_000,
      async execute({ pipeline, name }, ctx) {
        const check = await validatePipeline(pipeline, catalog, policy);
        if (!check.valid) throw refusal(check);
        const clash = name ? runner.running().find((i) => i.name === name) : undefined;
        if (clash) throw new ToolError('BUSY', `a pipeline named ${name} already runs (${clash.id}); stop it or choose another name`, { id: clash.id });
        if (ctx.dryRun) return { dryRun: true, wouldDo: `start ${config.gstLaunch} -e -- ${check.pipeline}`, argv: check.argv };
        if (ctx.signal.aborted) throw new ToolError('CANCELLED', 'the call was cancelled before the pipeline started');
        let inst: InstanceInfo;
        try {
          inst = await runner.start(check.argv, { name, startedBy: ctx.callerId }, ctx.signal);
        } catch (err) {
          if (err instanceof RunnerBusyError) throw new ToolError('BUSY', err.message, { running: runner.running().map((i) => i.id) });
          throw err;
        }
        if (inst.state === 'failed') {
          throw new ToolError('EXECUTION_FAILED', `the pipeline failed at start: ${inst.lastError ?? `gst-launch exited with ${inst.exitCode ?? inst.signal}`}`, { instance: brief(inst) });
        }
        return brief(inst);
      },
    }),
    defineTool({
      name: 'gst_stop_pipeline',
      description: `Stops a pipeline (by id or name) or all: SIGINT so gst-launch sends end-of-stream and closes files, SIGKILL after ${config.stopTimeoutMs} ms. Returns each instance with its final state and exit status; one that already ended is returned unchanged.`,
      input: z.strictObject({
        id: z.string().min(1).max(64).optional().describe('Instance id (pipe-N) or name'),
        all: z.boolean().optional().describe('Stop every running pipeline'),
      }).refine((a) => (a.id === undefined) !== (a.all !== true), 'give either id or all: true'),
      risk: 'low', supportsDryRun: true,
      timeoutMs: config.stopTimeoutMs + 10_000,
      async execute({ id, all }, ctx) {
        const targets = all ? runner.running() : [runner.find(id!)].filter((i): i is InstanceInfo => i !== undefined);
        if (!all && targets.length === 0) {
          throw new ToolError('EXECUTION_FAILED', `no pipeline instance "${id}"; gst_get_running_instances lists them`, { id });
        }
        if (ctx.dryRun) {
          const what = targets.map((i) => `${i.id} (${i.state}${i.pid ? `, pid ${i.pid}` : ''})`).join(', ') || 'nothing (no pipeline runs)';
          return { dryRun: true, wouldDo: `stop ${what}: SIGINT, SIGKILL after ${config.stopTimeoutMs} ms` };
        }
        const stopped = await Promise.all(targets.map((i) => runner.stop(i.id)));
        return { stopped: stopped.map((i) => ({ ...i, log: i.log.slice(-10) })) };
      },
    }),
  ];
}
