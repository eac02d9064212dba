/**
 * The diag pack: `diag_echo`, a no-op tool for connectivity checks and round-trip benchmarks.
 */
import { z } from 'zod';
import { defineTool } from '../../../protocol/tool';
import type { ToolPack } from '../types';

/** The `packs.diag` section of the agent config: no options; unknown keys are errors. */
export const DiagConfigSchema = z.strictObject({});

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

/** The diag pack: one tool, {@link diagEcho}. */
export const diagPack: ToolPack<typeof DiagConfigSchema> = {
  name: 'diag',
  configSchema: DiagConfigSchema,
  async create() {
    return { tools: [diagEcho] };
  },
};
