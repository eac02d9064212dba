/**
 * Maps the registry's tools to OpenAI function tools and back. OpenAI function names must match
 * `^[a-zA-Z0-9_-]{1,64}$` (OpenAI API reference, "Create chat completion", `tools[].function.name`),
 * while a ToolMesh tool is (agent id, tool name) and tool names may hold dots or run to 128
 * characters.
 */
import { createHash } from 'node:crypto';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import type { OfferedTool } from '../shared/registry-api';

/** What OpenAI accepts as a function name. */
export const FUNCTION_NAME_PATTERN = /^[a-zA-Z0-9_-]{1,64}$/;

/** The offered tools as OpenAI sees them, and the way back from a function name. */
export interface ToolNameMap {
  /** `tools` of a chat-completions request, one per offered tool, in the order given. */
  readonly tools: ChatCompletionFunctionTool[];
  /** The offered tool behind a function name, or `undefined` for a name that was not offered. */
  resolve(name: string): OfferedTool | undefined;
}

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

/** One line the model reads: the tool's description, then its agent and risk level. */
function describe(o: OfferedTool): string {
  const risk = o.tool.annotations?.risk ?? 'unknown';
  const text = o.tool.description.trim();
  return `${text}${text ? '\n' : ''}(tool "${o.tool.name}" on agent "${o.agentId}", risk: ${risk})`;
}

/**
 * Builds unique, valid function names for `offered` (a repeated (agent, tool) pair keeps its
 * first entry). Names in the plain form are claimed first, so a hashed name never takes a plain
 * one. `parameters` is the tool's JSON Schema `inputSchema` as published in the catalog.
 */
export function buildToolNames(offered: readonly OfferedTool[]): ToolNameMap {
  const byName = new Map<string, OfferedTool>();
  const seen = new Set<string>();
  const unique = offered.filter((o) => {
    const key = `${o.agentId}\0${o.tool.name}`;
    return seen.has(key) ? false : (seen.add(key), true);
  });
  const plain = unique.filter((o) => FUNCTION_NAME_PATTERN.test(`${o.agentId}__${o.tool.name}`));
  for (const o of plain) byName.set(`${o.agentId}__${o.tool.name}`, o);
  for (const o of unique) {
    if (plain.includes(o)) continue;
    let salt = 0;
    let name = functionNameOf(o.agentId, o.tool.name);
    while (byName.has(name)) name = functionNameOf(o.agentId, o.tool.name, ++salt);
    byName.set(name, o);
  }
  const nameOf = new Map([...byName].map(([name, o]) => [o, name]));
  const tools = unique.map((o): ChatCompletionFunctionTool => ({
    type: 'function',
    function: { name: nameOf.get(o)!, description: describe(o), parameters: o.tool.inputSchema },
  }));
  return { tools, resolve: (name) => byName.get(name) };
}
