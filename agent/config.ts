/**
 * Agent configuration: a YAML file with `version: 1`, validated at start with zod. Every error
 * names the bad key (`broker.url: ...`), as zigbee2mqtt does with its settings.
 *
 * ```yaml
 * version: 1
 * agent: { id: pi, name: Living-room Pi, kind: pi }
 * broker: { url: mqtt://127.0.0.1:1883, username: pi, passwordFile: ./pi.pass, root: toolmesh/v1 }  # no user:password@ in url
 * packs:
 *   docker: { images: [{ image: nginx:alpine }] }
 *   system: { units: [docker] }
 * policy: { callers: [{ caller: "nodered-*", tools: ["*"] }], approvalRequiredFrom: high }   # protocol/policy.ts
 * approvals: { keyFiles: { gate-1: ./gate-1.pub } }                                          # agent/approvals.ts
 * audit: { file: ./pi-audit.jsonl, rotateMb: 10, daily: true, durableFrom: high }         # agent/audit.ts
 * ```
 */
import { readFileSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
// protocol modules by name, not the '../protocol' barrel: the agent does not load the caller side (rpc-client, ...)
import { DEFAULT_MAX_PAYLOAD_BYTES, RISK_LEVELS } from '../protocol/schemas';
import { DEFAULT_MAX_RUNNING, DEFAULT_MAX_RUNNING_PER_CALLER, DEFAULT_SKEW_TOLERANCE_MS } from '../protocol/rpc-server';
import { DEFAULT_ROOT, ID_PATTERN } from '../protocol/topics';
import { userInfoProblem, type CredentialFields } from '../protocol/redact';
import { PACKS } from './packs';
import { ApprovalsConfigSchema, resolveApprovals } from './approvals';
import { PolicyConfigSchema } from '../protocol/policy';

/** Names of the packs this agent knows. */
export type PackName = keyof typeof PACKS;

const TlsSchema = z.strictObject({
  ca: z.string().optional().describe('path of a PEM CA bundle'),
  cert: z.string().optional().describe('path of a PEM client certificate'),
  key: z.string().optional().describe('path of a PEM client key'),
  rejectUnauthorized: z.boolean().default(true),
});

/**
 * `audit:`, the agent's execution log (agent/audit.ts); absent: no log. `file` defaults to
 * `<config dir>/<agent id>-audit.jsonl`; relative paths are resolved against the config's directory.
 */
export const AuditConfigSchema = z.strictObject({
  file: z.string().min(1).optional().describe('the live JSONL file; rotated files and <file>.anchor sit beside it'),
  rotateMb: z.number().min(0).default(10).describe('start a new file past this size, MB; 0: never by size'),
  daily: z.boolean().default(true).describe('start a new file on the first record of each UTC day'),
  redactKeys: z.array(z.string().min(1)).default([]).describe('key names to redact besides the built-in ones (password, token, apikey ...)'),
  anchorKeyFile: z.string().optional().describe('file holding an HMAC key for the anchor (toolmesh audit verify --anchor-key-file)'),
  durableFrom: z.enum(RISK_LEVELS, { error: `must be one of ${RISK_LEVELS.join(', ')}: calls at or above this risk are recorded as started (fsync) before they run, and refused when that record cannot be written` })
    .default('high').describe('calls at or above this risk run only once a "call-started" record is on disk (fail closed); lower ones run even when the log cannot be written'),
});

/** Where the agent takes broker credentials: a URL with user info is refused naming these. */
export const AGENT_CREDENTIAL_FIELDS: CredentialFields = { username: 'broker.username', password: 'broker.passwordFile' };

/** Schema of the whole file, packs excluded (each pack validates its own section). */
export const AgentConfigSchema = z.strictObject({
  version: z.literal(1, { error: 'must be 1 (the only config version this agent reads)' }),
  agent: z.strictObject({
    id: z.string().regex(ID_PATTERN, 'must match ^[A-Za-z0-9_-]{1,64}$ (letters, digits, _ and -)'),
    name: z.string().optional(),
    kind: z.string().default('generic'),
  }),
  broker: z.strictObject({
    url: z.string().superRefine((url, ctx) => {
      // user info first: its message must win over the shape's, and neither repeats the URL
      const secret = userInfoProblem(url, AGENT_CREDENTIAL_FIELDS);
      if (secret) ctx.addIssue({ code: 'custom', message: secret });
      else if (!/^(mqtts?|wss?):\/\/[^\s]+$/.test(url)) ctx.addIssue({ code: 'custom', message: 'must be a broker URL such as mqtt://127.0.0.1:1883' });
    }),
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
    maxRunningPerCaller: z.number().int().min(1).max(10_000).default(DEFAULT_MAX_RUNNING_PER_CALLER)
      .describe('Calls of one caller that run at once; the excess gets BUSY'),
    maxRunning: z.number().int().min(1).max(10_000).default(DEFAULT_MAX_RUNNING)
      .describe('Calls that run at once in all, whoever calls; the excess gets BUSY'),
  }).prefault({}),
  policy: PolicyConfigSchema.prefault({}),
  approvals: ApprovalsConfigSchema.prefault({}),
  audit: AuditConfigSchema.optional(),
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
 * Validates a parsed config object. Relative paths (tls files, passwordFile, approvals.keyFiles,
 * approvals.usedTokensFile) are resolved against `baseDir`; `approvals.usedTokensFile` defaults
 * to `<baseDir>/<agent id>.approvals-used.jsonl`. Approval keys are parsed (key files read) here,
 * so `--check` finds a bad key.
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
  // keys are checked even when other sections fail, so one run lists every problem
  const section = ApprovalsConfigSchema.safeParse((raw as { approvals?: unknown } | undefined)?.approvals ?? {});
  const agentId = top.success ? top.data.agent.id : 'agent';
  const approvals = section.success ? resolveApprovals(section.data, agentId, baseDir) : undefined;
  if (approvals && 'problems' in approvals) problems.push(...approvals.problems);
  if (!top.success || problems.length) throw new ConfigError(file, problems);
  const cfg = { ...top.data, packs } as AgentConfig;
  if (approvals && !('problems' in approvals)) cfg.approvals.usedTokensFile = approvals.usedTokensFile;
  for (const kid of Object.keys(cfg.approvals.keyFiles)) cfg.approvals.keyFiles[kid] = resolve(baseDir, cfg.approvals.keyFiles[kid]);
  const tls = cfg.broker.tls;
  if (tls) for (const k of ['ca', 'cert', 'key'] as const) if (tls[k]) tls[k] = resolve(baseDir, tls[k]!);
  if (cfg.broker.passwordFile) cfg.broker.passwordFile = resolve(baseDir, cfg.broker.passwordFile);
  if (cfg.audit) {
    cfg.audit.file = resolve(baseDir, cfg.audit.file ?? `${cfg.agent.id}-audit.jsonl`);
    if (cfg.audit.anchorKeyFile) cfg.audit.anchorKeyFile = resolve(baseDir, cfg.audit.anchorKeyFile);
  }
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
    // the first line names line and column; the rest quotes the source, which may hold a password
    throw new ConfigError(file, [`not valid YAML: ${(e as Error).message.split('\n')[0]}`]);
  }
  return validateConfig(raw, file, dirname(resolve(file)));
}
