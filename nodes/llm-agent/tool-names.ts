/**
 * Maps the registry's tools to OpenAI function tools and back. OpenAI function names must match
 * `^[a-zA-Z0-9_-]{1,64}$` (OpenAI API reference, "Create chat completion", `tools[].function.name`),
 * while a ToolMesh tool is (agent id, tool name) and tool names may hold dots or run to 128
 * characters.
 */
import { assignToolNames, FUNCTION_NAME_PATTERN, functionNameOf } from '@toolmesh/agent/protocol/tool-names';
import type { ChatCompletionFunctionTool } from 'openai/resources/chat/completions';
import type { OfferedTool } from '../shared/registry-api';
import { toFunctionDefinition } from './tool-definition';

export { FUNCTION_NAME_PATTERN, functionNameOf };

/** The offered tools as OpenAI sees them, and the way back from a function name. */
export interface ToolNameMap {
  /** `tools` of a chat-completions request, one per offered tool, in the order given. */
  readonly tools: ChatCompletionFunctionTool[];
  /** The offered tool behind a function name, or `undefined` for a name that was not offered. */
  resolve(name: string): OfferedTool | undefined;
}

/**
 * Builds unique, valid function names for `offered` ({@link assignToolNames}: a repeated
 * (agent, tool) pair keeps its first entry, plain names are claimed first). Each definition is
 * rendered by {@link toFunctionDefinition} (tool-definition.ts: short description, the input
 * schema without what does not change a call).
 */
export function buildToolNames(offered: readonly OfferedTool[]): ToolNameMap {
  const byName = assignToolNames(offered);
  const tools = [...byName].map(([name, o]) => toFunctionDefinition(name, o));
  return { tools, resolve: (name) => byName.get(name) };
}
