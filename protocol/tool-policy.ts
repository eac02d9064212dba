/**
 * The registry's tool policy: which `agent/tool` pairs are offered to LLMs.
 *
 * Text form, one pattern a line: `agent/tool` globs (`*` = any run of characters except `/`,
 * `?` = one such character), a leading `!` excludes, `#` starts a comment line, blank lines are
 * skipped. A tool is offered when it matches at least one include and no exclude (an exclude
 * always wins, whatever the line order). With no include line at all, `*\/*` is implied, so a
 * policy of only `!*\/danger*` means "everything except those".
 */
import { globToRegExp } from './glob';

/** A parsed policy. */
export interface Policy {
  /** Offered when some include matches and no exclude does. */
  readonly include: readonly RegExp[];
  readonly exclude: readonly RegExp[];
  /** The pattern lines as written (for logs and the admin endpoint). */
  readonly source: readonly string[];
}

/** Default policy text: every tool of every agent. */
export const DEFAULT_POLICY = '*/*';

const LINE = /^!?[^/\s]+\/[^/\s]+$/;

/**
 * Parses policy text (see the module doc).
 * @throws Error naming the line when a pattern is not `agent/tool` (e.g. `pi` or `a/b/c`).
 */
export function parsePolicy(text: string | undefined): Policy {
  const include: RegExp[] = [];
  const exclude: RegExp[] = [];
  const source: string[] = [];
  const lines = (text ?? '').split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) return;
    if (!LINE.test(line)) {
      throw new Error(`policy line ${i + 1} "${line}" is not an agent/tool pattern; expected e.g. "pi/*", "*/docker_*" or "!*/danger*"`);
    }
    source.push(line);
    if (line.startsWith('!')) exclude.push(globToRegExp(line.slice(1), '/'));
    else include.push(globToRegExp(line, '/'));
  });
  if (include.length === 0) include.push(globToRegExp(DEFAULT_POLICY, '/'));
  return { include, exclude, source };
}

/** True when the policy offers `tool` of `agentId` to LLMs. */
export function isOffered(policy: Policy, agentId: string, tool: string): boolean {
  const key = `${agentId}/${tool}`;
  return policy.include.some((r) => r.test(key)) && !policy.exclude.some((r) => r.test(key));
}
