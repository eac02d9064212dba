/**
 * Agent configuration: a YAML file with `version: 1`, validated at start with zod. Every error
 * names the bad key (`broker.url: ...`), as zigbee2mqtt does with its settings.
 *
 * ```yaml
 * version: 1
 * agent: { id: pi, name: Living-room Pi, kind: pi }
 * broker: { url: mqtt://127.0.0.1:1883, username: pi, password: secret, root: toolmesh/v1 }
 * packs:
 *   docker: { images: [{ image: nginx:alpine }] }
 *   system: { units: [docker] }
 * ```
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { DEFAULT_MAX_PAYLOAD_BYTES, DEFAULT_ROOT, DEFAULT_SKEW_TOLERANCE_MS, ID_PATTERN } from '../protocol';
import { PACKS } from './packs';

/** Names of the packs this agent knows. */
export type PackName = keyof typeof PACKS;

const TlsSchema = z.strictObject({
  ca: z.string().optional().describe('path of a PEM CA bundle'),
  cert: z.string().optional().describe('path of a PEM client certificate'),
  key: z.string().optional().describe('path of a PEM client key'),
  rejectUnauthorized: z.boolean().default(true),
});

/** Schema of the whole file, packs excluded (each pack validates its own section). */
export const AgentConfigSchema = z.strictObject({
  version: z.literal(1, { error: 'must be 1 (the only config version this agent reads)' }),
  agent: z.strictObject({
    id: z.string().regex(ID_PATTERN, 'must match ^[A-Za-z0-9_-]{1,64}$ (letters, digits, _ and -)'),
    name: z.string().optional(),
    kind: z.string().default('generic'),
  }),
  broker: z.strictObject({
    url: z.string().regex(/^(mqtts?|wss?):\/\/[^\s]+$/, 'must be a broker URL such as mqtt://127.0.0.1:1883'),
    username: z.string().optional(),
    password: z.string().optional(),
    /** Read the password from this file (one line), so it stays out of the config. */
    passwordFile: z.string().optional(),
    root: z.string().default(DEFAULT_ROOT),
    keepaliveSec: z.number().int().min(1).max(60).default(10),
    tls: TlsSchema.optional(),
  }),
  packs: z.record(z.string(), z.unknown()).default({}),
  limits: z.strictObject({
    maxPayloadBytes: z.number().int().positive().default(DEFAULT_MAX_PAYLOAD_BYTES),
    skewToleranceMs: z.number().int().min(0).default(DEFAULT_SKEW_TOLERANCE_MS),
  }).prefault({}),
});

/** A validated config: packs holds each enabled pack's parsed section. */
export type AgentConfig = Omit<z.output<typeof AgentConfigSchema>, 'packs'> & {
  packs: Partial<Record<PackName, unknown>>;
};

/** A config error; `message` lists every problem as `key.path: what is wrong`. */
export class ConfigError extends Error {
  constructor(readonly file: string, readonly problems: string[]) {
    super(`invalid agent config ${file}:\n  - ${problems.join('\n  - ')}`);
    this.name = 'ConfigError';
  }
}

function describeIssues(issues: z.core.$ZodIssue[], prefix: string[] = []): string[] {
  return issues.map((i) => {
    const path = [...prefix, ...i.path.map(String)].join('.') || '(top level)';
    if (i.code === 'unrecognized_keys') return `${path}: unknown key${i.keys.length > 1 ? 's' : ''} ${i.keys.map((k) => `"${k}"`).join(', ')}`;
    return `${path}: ${i.message}`;
  });
}

/**
 * Validates a parsed config object. Relative paths (tls files, passwordFile) are resolved
 * against `baseDir`.
 * @throws ConfigError naming each bad key.
 */
export function validateConfig(raw: unknown, file = '<config>', baseDir = process.cwd()): AgentConfig {
  const top = AgentConfigSchema.safeParse(raw);
  const problems: string[] = top.success ? [] : describeIssues(top.error.issues);
  const packs: Partial<Record<PackName, unknown>> = {};
  const rawPacks = (raw as { packs?: unknown } | undefined)?.packs;
  if (rawPacks && typeof rawPacks === 'object') {
    for (const [name, section] of Object.entries(rawPacks)) {
      const pack = PACKS[name as PackName];
      if (!pack) {
        problems.push(`packs.${name}: unknown pack; known packs are ${Object.keys(PACKS).join(', ')}`);
        continue;
      }
      const parsed = pack.configSchema.safeParse(section ?? {});
      if (parsed.success) packs[name as PackName] = parsed.data;
      else problems.push(...describeIssues(parsed.error.issues, ['packs', name]));
    }
  }
  if (!top.success || problems.length) throw new ConfigError(file, problems);
  const cfg = { ...top.data, packs } as AgentConfig;
  const tls = cfg.broker.tls;
  if (tls) for (const k of ['ca', 'cert', 'key'] as const) if (tls[k]) tls[k] = resolve(baseDir, tls[k]!);
  if (cfg.broker.passwordFile) cfg.broker.passwordFile = resolve(baseDir, cfg.broker.passwordFile);
  return cfg;
}

/**
 * Reads and validates a YAML config file.
 * @throws ConfigError when the file cannot be read, is not YAML, or fails validation.
 */
export function loadConfig(file: string): AgentConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(file, [`cannot read the file: ${(e as Error).message}`]);
  }
  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (e) {
    throw new ConfigError(file, [`not valid YAML: ${(e as Error).message}`]);
  }
  return validateConfig(raw, file, dirname(resolve(file)));
}
