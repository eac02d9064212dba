/**
 * One flat name per (agent id, tool name) pair, shared by the llm-agent (OpenAI function names)
 * and the MCP bridge (MCP tool names): `<agentId>__<toolName>`. OpenAI function names must match
 * `^[a-zA-Z0-9_-]{1,64}$` (OpenAI API reference, "Create chat completion",
 * `tools[].function.name`); MCP tool names should be 1 to 128 of `[A-Za-z0-9_.-]` (MCP
 * 2025-11-25, "Tools", tool names), so the stricter OpenAI rule serves both. A ToolMesh tool name
 * may hold dots or run to 128 characters, hence the hashed form.
 */
import { createHash } from 'node:crypto';

/** What OpenAI accepts as a function name. */
export const FUNCTION_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/**
 * The function name of one tool: `<agentId>__<toolName>` when that matches
 * {@link FUNCTION_NAME_PATTERN}; otherwise the same with invalid characters replaced by `_`, cut
 * to 55 characters, plus `_` and 8 hex digits of SHA-256 over `agentId + "\0" + toolName` (64 at most).
 * `salt` (default 0) changes the hash; {@link buildToolNames} uses it only to break a collision.
 */
export function functionNameOf(agentId: string, toolName: string, salt = 0): string {
  const plain = `${agentId}__${toolName}`;
  if (salt === 0 && FUNCTION_NAME_PATTERN.test(plain)) return plain;
  const hash = createHash('sha256').update(`${agentId}\0${toolName}${salt ? `\0${salt}` : ''}`).digest('hex').slice(0, 8);
  return `${plain.replace(/[^a-zA-Z0-9_-]/g, '_').slice(0, 55)}_${hash}`;
}

/**
 * Unique, valid names for `items` (each an agent id and a tool name; a repeated pair keeps its
 * first entry). Names in the plain form are claimed first, so a hashed name never takes a plain
 * one. Returns the items by name, in the order given.
 */
export function assignToolNames<T extends { agentId: string; tool: { name: string } }>(items: readonly T[]): Map<string, T> {
  const byName = new Map<string, T>();
  const seen = new Set<string>();
  const unique = items.filter((o) => {
    const key = `${o.agentId}\0${o.tool.name}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
  // a plain name goes to the first pair that has it: `a__b` + `c` and `a` + `b__c` are both
  // `a__b__c`, and the second one is hashed (instead of being dropped)
  const plain = new Set<T>();
  for (const o of unique) {
    const name = `${o.agentId}__${o.tool.name}`;
    if (FUNCTION_NAME_PATTERN.test(name) && !byName.has(name)) {
      byName.set(name, o);
      plain.add(o);
    }
  }
  for (const o of unique) {
    if (plain.has(o)) continue;
    let salt = 0;
    let name = functionNameOf(o.agentId, o.tool.name);
    while (byName.has(name)) name = functionNameOf(o.agentId, o.tool.name, ++salt);
    byName.set(name, o);
  }
  const order = new Map(unique.map((o, i) => [o, i]));
  return new Map([...byName].sort((a, b) => order.get(a[1])! - order.get(b[1])!));
}
