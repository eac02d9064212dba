/**
 * The diag pack: `diag_echo`, a no-op tool for connectivity checks and round-trip benchmarks,
 * and, opt-in (`packs.diag.sleepTool: true`), `diag_sleep`, a slow tool for the fault suite and
 * the soak (`npm run faults`, `npm run soak`) that can record every execution in a file so that
 * duplicate executions can be counted.
 *
 * ```yaml
 * packs:
 *   diag: { sleepTool: true, recordFile: /tmp/pi-executions.jsonl }
 * ```
 */
import { appendFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolDefinition } from '../../../protocol/tool';
import type { ToolPack } from '../types';

/** Longest sleep `diag_sleep` accepts, ms. */
export const DIAG_SLEEP_MAX_MS = 60_000;

/**
 * The `packs.diag` section of the agent config; unknown keys are errors.
 * - `sleepTool` (default false): also offer `diag_sleep`.
 * - `recordFile`: append one JSON line per `diag_sleep` execution (needs `sleepTool: true`);
 *   a relative path is resolved against the agent's working directory.
 */
export const DiagConfigSchema = z.strictObject({
  sleepTool: z.boolean().default(false).describe('offer diag_sleep, a slow tool for fault tests (default off)'),
  recordFile: z.string().min(1).optional().describe('append {"caller","id","ms","ts"} per diag_sleep execution to this file'),
}).refine((c) => c.recordFile === undefined || c.sleepTool, { message: 'recordFile needs sleepTool: true', path: ['recordFile'] });

/** `diag_echo {text?, data?}` returns `{ echo: <the arguments> }` at once, changing nothing. */
export const diagEcho = defineTool({
  name: 'diag_echo',
  description: 'Returns its arguments unchanged as { echo }. Does nothing else; use it to check that an agent answers.',
  input: z.strictObject({
    text: z.string().optional(),
    data: z.unknown().optional().describe('Any JSON value'),
  }),
  risk: 'low', readOnly: true, idempotent: true,
  execute: (args) => ({ echo: args }),
});

/** One line of the record file: who asked (caller id from the topic, JSON-RPC id), how long, when (epoch ms). */
export interface DiagSleepRecord {
  caller: string;
  id: string | number;
  ms: number;
  ts: number;
  tag?: string;
}

const SleepInput = z.strictObject({
  ms: z.number().int().min(0).max(DIAG_SLEEP_MAX_MS).describe('how long to sleep, ms'),
  tag: z.string().max(200).optional().describe('free text, recorded and returned'),
});

/**
 * `diag_sleep {ms, tag?}`: records the execution (when `recordFile` is set; the line is written
 * before sleeping, so a run that is cancelled or killed counts too), sleeps `ms` milliseconds,
 * and returns `{ slept: ms, caller, id, tag? }`. A cancel ends the sleep with `CANCELLED`.
 * @param recordFile absolute path of the JSONL record, or undefined for none.
 */
export function makeDiagSleep(recordFile?: string): ToolDefinition<typeof SleepInput> {
  return defineTool({
    name: 'diag_sleep',
    description: 'Sleeps for ms milliseconds, then returns { slept }. A test tool for slow calls; it changes nothing.',
    input: SleepInput,
    risk: 'low', readOnly: true, idempotent: false,
    timeoutMs: DIAG_SLEEP_MAX_MS + 10_000,
    async execute(args, ctx) {
      if (recordFile) {
        const rec: DiagSleepRecord = { caller: ctx.callerId, id: ctx.requestId, ms: args.ms, ts: Date.now(), ...(args.tag !== undefined ? { tag: args.tag } : {}) };
        appendFileSync(recordFile, JSON.stringify(rec) + '\n');
      }
      await new Promise<void>((done, fail) => {
        const cancelled = () => {
          clearTimeout(timer);
          fail(new ToolError('CANCELLED', `diag_sleep cancelled: ${String(ctx.signal.reason ?? 'cancelled')}`));
        };
        const timer = setTimeout(() => {
          ctx.signal.removeEventListener('abort', cancelled);
          done();
        }, args.ms);
        if (ctx.signal.aborted) return cancelled();
        ctx.signal.addEventListener('abort', cancelled, { once: true });
      });
      return { slept: args.ms, caller: ctx.callerId, id: ctx.requestId, ...(args.tag !== undefined ? { tag: args.tag } : {}) };
    },
  });
}

/** The diag pack: {@link diagEcho}, plus `diag_sleep` ({@link makeDiagSleep}) when `sleepTool` is on. */
export const diagPack: ToolPack<typeof DiagConfigSchema> = {
  name: 'diag',
  configSchema: DiagConfigSchema,
  async create(config) {
    if (!config.sleepTool) return { tools: [diagEcho] };
    return { tools: [diagEcho, makeDiagSleep(config.recordFile === undefined ? undefined : resolve(config.recordFile))] };
  },
};
