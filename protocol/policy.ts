/**
 * Authorization on the device, the one enforcement point of every server (`RpcServer` builds it
 * from its required `authorization` option, so no server runs a tool without it): the agent's
 * policy (which tools it offers, which callers may call which tools, risk overrides that may only
 * raise a tool's risk, and from which risk level a call needs a person's approval), checked with
 * the approval token (docs/protocol.md, "Approval tokens").
 *
 * ```yaml
 * policy:
 *   tools: { enable: ["docker_*", "system_*"], disable: [docker_remove_container] }  # default: all enabled
 *   callers:                        # default: any caller may call any enabled tool
 *     - { caller: "nodered-*", tools: ["*"] }
 *     - { caller: dashboard, tools: ["system_*"] }
 *   risk: { docker_restart_container: high }   # raise only; lowering is a config error
 *   approvalRequiredFrom: high      # default high: high and critical calls need an approval token
 * ```
 *
 * Globs: `*` matches any run of characters, `?` one character, everything else itself.
 *
 * Dry runs: only a tool that declares `supportsDryRun` takes `_meta.dryRun` (RpcServer answers any
 * other tool's dry run with NOT_SUPPORTED and runs nothing); such a dry run changes nothing, so it
 * needs no approval, and a token sent with one is neither checked nor used up, so the real call
 * can still use it. Caller rules apply to dry runs as to any call.
 *
 * Without authentication on the broker the caller id (from the topic) is whatever a client
 * publishes under, so caller rules are advisory there, and a token stolen from its caller can be
 * replayed under that caller's topic once (the first use wins).
 */
import type { KeyObject } from 'node:crypto';
import { z } from 'zod';
import { verifyApproval, type ApprovalPayload, type ApprovalRefusal } from './approval';
import type { ApprovalClaims, AuthorizeDecision, AuthorizeRefusal, AuthorizeRequest } from './authorize';
import { globToRegExp } from './glob';
import { RISK_LEVELS, RiskSchema, type Risk } from './schemas';
import type { ToolDefinition } from './tool';
import type { UsedTokenStore } from './used-tokens';

const Glob = z.string().regex(/^\S{1,128}$/, 'a glob of 1 to 128 characters without spaces (* matches any run of characters, ? one)');

/** The `policy` section of the agent config. Unknown keys are errors. */
export const PolicyConfigSchema = z.strictObject({
  tools: z.strictObject({
    enable: z.array(Glob).default(['*']).describe('Tools offered (globs); default all'),
    disable: z.array(Glob).default([]).describe('Tools left out even when enabled (globs)'),
  }).prefault({}),
  callers: z.array(z.strictObject({
    caller: Glob.describe('Caller ids this rule is for (glob)'),
    tools: z.array(Glob).min(1).describe('Tools these callers may call (globs)'),
  })).min(1, 'list at least one rule, or leave callers out to let any caller call any enabled tool').optional()
    .describe('Which callers may call which tools; a call is allowed when any rule matches both'),
  risk: z.record(z.string().min(1).max(128), RiskSchema).default({})
    .describe('Risk overrides by tool name; they may raise a risk, never lower it'),
  approvalRequiredFrom: RiskSchema.default('high')
    .describe('Calls to tools of this risk or higher need a valid approval token'),
});
export type PolicyConfig = z.output<typeof PolicyConfigSchema>;

/** A predicate that is true when `name` matches any of `globs`. */
export function globMatcher(globs: readonly string[]): (name: string) => boolean {
  const res = globs.map((g) => globToRegExp(g));
  return (name) => res.some((re) => re.test(name));
}

const rank = (r: Risk) => RISK_LEVELS.indexOf(r);

/** What {@link applyToolPolicy} made of a tool list. */
export interface ToolPolicyOutcome {
  /** The enabled tools, each with its effective (possibly raised) risk. */
  tools: ToolDefinition[];
  /** Config errors naming the key (`policy.risk.<tool>: ...`): a risk override that lowers a risk. */
  problems: string[];
  /** Entries that match no tool of this agent (a typo, or a pack left out). */
  warnings: string[];
}

/**
 * Applies `policy.tools` and `policy.risk` to the agent's tools: disabled ones are left out of
 * the catalog, raised ones are copies with the higher risk (the catalog announces it, and
 * approvals are required by it).
 */
export function applyToolPolicy(policy: PolicyConfig, tools: readonly ToolDefinition[]): ToolPolicyOutcome {
  const problems: string[] = [];
  const warnings: string[] = [];
  const byName = new Map(tools.map((t) => [t.name, t]));
  for (const [name, risk] of Object.entries(policy.risk)) {
    const tool = byName.get(name);
    if (!tool) warnings.push(`policy.risk.${name}: no tool of that name on this agent (misspelt, or its pack is left out)`);
    else if (rank(risk) < rank(tool.risk)) {
      problems.push(`policy.risk.${name}: ${name} is ${tool.risk} risk; an override may raise a risk, never lower it (use ${RISK_LEVELS.slice(rank(tool.risk)).join(', ')}, or disable the tool in policy.tools.disable)`);
    }
  }
  for (const list of ['enable', 'disable'] as const) {
    policy.tools[list].forEach((glob, i) => {
      if (!tools.some((t) => globMatcher([glob])(t.name))) warnings.push(`policy.tools.${list}.${i}: "${glob}" matches no tool on this agent`);
    });
  }
  const enabled = globMatcher(policy.tools.enable);
  const disabled = globMatcher(policy.tools.disable);
  const out = tools.filter((t) => enabled(t.name) && !disabled(t.name)).map((t) => {
    const raised = policy.risk[t.name];
    return raised && rank(raised) > rank(t.risk) ? { ...t, risk: raised } : t;
  });
  return { tools: out, problems, warnings };
}

/**
 * The part of the policy the authorizer checks: caller rules (absent: any caller may call any
 * tool) and the approval threshold (default `high`). A function is asked at each call (a flow
 * agent's rules change as tool-in nodes come and go); its rules are compiled once per object.
 */
export interface CallerPolicy {
  callers?: PolicyConfig['callers'];
  approvalRequiredFrom?: Risk;
}

/** What {@link createAuthorizer} needs. */
export interface AuthorizerOptions {
  agentId: string;
  /** Caller rules and the approval threshold: the agent config's `policy` section, or just those two keys. */
  policy: CallerPolicy | (() => CallerPolicy);
  /**
   * Trusted approval keys by key id (empty: no token can verify, so every call at or above the
   * threshold is refused), or a function asked at each call (a Node-RED flow agent trusts the
   * confirm-gates deployed now, which change with every deploy).
   */
  keys: ReadonlyMap<string, KeyObject> | (() => ReadonlyMap<string, KeyObject>);
  /** Tolerated clock skew for a token's `exp`, ms. */
  skewToleranceMs: number;
  /** Used token ids; without it a token that verifies is refused (`not-recorded`): fail closed. */
  store?: UsedTokenStore;
  /**
   * Runs last, for every call the checks above allowed (dry runs excepted), before its token is
   * marked used: the agent's audit log writes its `call-started` record here
   * (agent/audit.ts `AgentAudit.started`). A refusal it returns refuses the call and leaves the
   * token unused; a rejection refuses it with EXECUTION_FAILED (refusal `authorize-failed`).
   */
  beforeRun?: (call: AuthorizeRequest, approval?: ApprovalClaims) => Promise<AuthorizeRefusal | undefined>;
}

/**
 * `RpcServerOptions.authorization`: {@link AuthorizerOptions} without the agent id (the server's
 * own); `policy` defaults to any caller with approval from `high`, `skewToleranceMs` to the
 * server's. `{ keys: new Map() }` is the least a server can run with.
 */
export interface ServerAuthorization extends Omit<AuthorizerOptions, 'agentId' | 'policy' | 'skewToleranceMs'> {
  policy?: AuthorizerOptions['policy'];
  skewToleranceMs?: number;
}

/** The policy's hooks for {@link RpcServer}: `authorize`, `listable`, and `mayCall` (caller rules alone). */
export interface Authorizer {
  mayCall(callerId: string, tool: string): boolean;
  listable(callerId: string, tool: ToolDefinition): boolean;
  authorize(call: AuthorizeRequest): Promise<AuthorizeDecision>;
}

/** What each token refusal means, for the caller and the model. */
function refusalText(refusal: ApprovalRefusal, p: ApprovalPayload | undefined, call: AuthorizeRequest, agentId: string, skewMs: number): string {
  switch (refusal) {
    case 'malformed': return 'the approval token is not a token of the form payload.signature';
    case 'unknown-key': return `the approval token is signed with key "${p?.kid}", which this agent does not trust (approvals.keys)`;
    case 'bad-signature': return 'the approval token\'s signature does not verify: it was not signed by the key it names, or it was changed after signing';
    case 'wrong-caller': return `the approval was given to caller "${p?.caller}", not to "${call.callerId}"`;
    case 'wrong-agent': return `the approval is for agent "${p?.agent}", not for this agent ("${agentId}")`;
    case 'wrong-tool': return `the approval is for tool ${p?.tool}, not for ${call.tool.name}`;
    case 'arguments-changed': return 'the arguments differ from the ones the person approved';
    case 'expired': return `the approval expired at ${new Date(p?.exp ?? 0).toISOString()} (tolerated clock skew ${skewMs} ms)`;
    case 'replayed': return 'this approval was used already; an approval is good for one call';
  }
}

/**
 * The agent's `authorize` hook, in this order: caller rules (PERMISSION_DENIED, refusal
 * `caller-not-allowed`); a dry run passes; a call at or above `approvalRequiredFrom` without
 * a token gets APPROVAL_REQUIRED (refusal `approval-required`); a token, when sent, is verified
 * (caller from the topic, this agent, the tool, the arguments as sent, expiry with skew) and a
 * failed check is PERMISSION_DENIED with `details.refusal` naming it (`bad-signature`,
 * `expired`, `arguments-changed`, ...); a `jti` seen before is refused as `replayed`; then
 * `beforeRun` (the audit log's started record) may still refuse the call, leaving the token
 * unused; last the `jti` is recorded as used (on disk, fsync) before the call may run (a second
 * use that raced past the first check is refused as `replayed` here). A used-token record that
 * cannot be written refuses the call with EXECUTION_FAILED (refusal `not-recorded`): fail closed.
 */
export function createAuthorizer(o: AuthorizerOptions): Authorizer {
  const current = typeof o.policy === 'function' ? o.policy : (() => o.policy as CallerPolicy);
  let compiled: { of: CallerPolicy; rules?: Array<{ caller: (id: string) => boolean; tools: (name: string) => boolean }>; from: Risk } | undefined;
  const policy = () => {
    const p = current();
    if (compiled?.of !== p) {
      compiled = {
        of: p,
        rules: p.callers?.map((r) => ({ caller: globMatcher([r.caller]), tools: globMatcher(r.tools) })),
        from: p.approvalRequiredFrom ?? 'high',
      };
    }
    return compiled;
  };
  const mayCall = (callerId: string, tool: string) => {
    const { rules } = policy();
    return !rules || rules.some((r) => r.caller(callerId) && r.tools(tool));
  };

  async function authorize(call: AuthorizeRequest): Promise<AuthorizeDecision> {
    const { callerId, tool, meta } = call;
    const { from } = policy();
    const threshold = rank(from);
    if (!mayCall(callerId, tool.name)) {
      return {
        code: 'PERMISSION_DENIED',
        message: `caller "${callerId}" may not call ${tool.name} on agent ${o.agentId}: no rule in the agent's policy.callers allows it; the call was not run`,
        details: { refusal: 'caller-not-allowed', caller: callerId, tool: tool.name },
      };
    }
    // a dry run of a tool that does not declare it is refused by RpcServer before this hook; were
    // it not, it is checked here as a real call
    if (meta.dryRun && tool.supportsDryRun) return undefined;
    const token = meta.approval;
    if (token === undefined) {
      if (rank(tool.risk) < threshold) return (await o.beforeRun?.(call)) ?? undefined;
      return {
        code: 'APPROVAL_REQUIRED',
        message: `${tool.name} is ${tool.risk} risk, so this call needs a person's approval: send it through a confirm-gate`,
        details: { refusal: 'approval-required', risk: tool.risk, approvalRequiredFrom: from },
      };
    }
    const keys = typeof o.keys === 'function' ? o.keys() : o.keys;
    const checked = verifyApproval(token, { caller: callerId, agent: o.agentId, tool: tool.name, args: call.args, keys, skewMs: o.skewToleranceMs });
    const genuine = checked.ok || !['malformed', 'unknown-key', 'bad-signature'].includes(checked.refusal);
    const p = checked.payload;
    const approval: ApprovalClaims | undefined = genuine && p ? { approver: p.approver, jti: p.jti, kid: p.kid, exp: p.exp } : undefined;
    const refuse = (refusal: ApprovalRefusal): AuthorizeRefusal => ({
      code: 'PERMISSION_DENIED',
      message: `approval refused (${refusal}): ${refusalText(refusal, p, call, o.agentId, o.skewToleranceMs)}; the call was not run`,
      details: { refusal },
      approval,
    });
    if (!checked.ok) return refuse(checked.refusal);
    if (o.store?.isUsed(checked.payload.jti)) return refuse('replayed');
    const stop = await o.beforeRun?.(call, approval);
    if (stop) return { ...stop, approval };
    try {
      if (!o.store) throw new Error('no used-token store is open');
      if (!(await o.store.claim(checked.payload.jti, checked.payload.exp))) return refuse('replayed');
    } catch (e) {
      return {
        code: 'EXECUTION_FAILED',
        message: `could not record the approval as used (${(e as Error).message}), so the call was not run; the approval is still unused`,
        details: { refusal: 'not-recorded' },
        approval,
      };
    }
    return { approval };
  }

  return { mayCall, listable: (callerId, tool) => mayCall(callerId, tool.name), authorize };
}
