/**
 * How the mesh's tools look to an MCP client (MCP 2025-11-25, "Tools"): one MCP tool per
 * (agent, tool) of a ready agent, named `<agentId>__<toolName>` as the llm-agent names them
 * (protocol/tool-names.ts), with the catalog's description and input JSON Schema, and
 * annotations derived from the risk level and the tool's own hints. No Node-RED imports.
 */
import type { CallToolResult as McpCallToolResult, Tool as McpTool } from '@modelcontextprotocol/sdk/types.js';
import { RISK_LEVELS, type CallToolResult, type Risk, type Tool } from '@toolmesh/agent/protocol';

/** `_meta` keys the bridge sets on each tool (MCP `_meta` naming: a prefix, then `/`). */
export const META = {
  risk: 'toolmesh/risk',
  agent: 'toolmesh/agent',
  tool: 'toolmesh/tool',
  agentKind: 'toolmesh/agentKind',
} as const;

/** True when `risk` is at or above `threshold` (RISK_LEVELS order: low < medium < high < critical). */
export function riskAtLeast(risk: Risk | undefined, threshold: Risk): boolean {
  // a tool without a risk level is treated as the threshold itself (fail closed)
  return RISK_LEVELS.indexOf(risk ?? threshold) >= RISK_LEVELS.indexOf(threshold);
}

/** "docker_list_containers" → "Docker list containers". */
function humanize(name: string): string {
  const words = name.replace(/[_.-]+/g, ' ').trim();
  return words ? words[0].toUpperCase() + words.slice(1) : name;
}

/**
 * The MCP tool for `tool` of agent `agentId`, under the flat `name`.
 * Annotations (untrusted hints for the client, MCP "ToolAnnotations"):
 * - `readOnlyHint`: the tool's own hint, else true for risk `low`;
 * - `destructiveHint`: the tool's own hint, else true for risk `high` and `critical`;
 * - `idempotentHint`: the tool's own hint, when it has one;
 * - `title`: the tool's own title, else "<Humanized name> on <agent name or id>".
 * The risk level itself, the agent and the tool name go in `_meta` ({@link META}).
 */
export function toMcpTool(name: string, agentId: string, tool: Tool, agent?: { name?: string; kind?: string }): McpTool {
  const risk = tool.annotations?.risk;
  const a = tool.annotations ?? ({} as Tool['annotations']);
  const own = (tool as { title?: unknown }).title;
  const title = typeof own === 'string' && own ? own : `${humanize(tool.name)} on ${agent?.name || agentId}`;
  const annotations: NonNullable<McpTool['annotations']> = {
    title,
    readOnlyHint: a.readOnlyHint ?? risk === 'low',
    destructiveHint: a.destructiveHint ?? (risk === 'high' || risk === 'critical'),
    // a device on the mesh acts on the real world, not on an open web
    openWorldHint: false,
  };
  if (a.idempotentHint !== undefined) annotations.idempotentHint = a.idempotentHint;
  const out: McpTool = {
    name,
    title,
    description: `${tool.description.trim()}${tool.description.trim() ? '\n' : ''}(tool "${tool.name}" on agent "${agentId}", risk: ${risk ?? 'unknown'})`,
    inputSchema: { type: 'object', ...tool.inputSchema } as McpTool['inputSchema'],
    annotations,
    _meta: { [META.risk]: risk ?? 'unknown', [META.agent]: agentId, [META.tool]: tool.name, ...(agent?.kind ? { [META.agentKind]: agent.kind } : {}) },
  };
  if (tool.outputSchema) out.outputSchema = { type: 'object', ...tool.outputSchema } as McpTool['outputSchema'];
  return out;
}

/**
 * A protocol result as an MCP `tools/call` result. Content items (text, image, audio, resource
 * links) and `structuredContent` pass through unchanged, `isError` too; the protocol's `_meta`
 * is kept.
 */
export function toMcpResult(result: CallToolResult): McpCallToolResult {
  const out: McpCallToolResult = { content: (result.content ?? []) as McpCallToolResult['content'] };
  if (result.structuredContent !== undefined) out.structuredContent = result.structuredContent as Record<string, unknown>;
  if (result.isError) out.isError = true;
  const meta = (result as { _meta?: unknown })._meta;
  if (meta && typeof meta === 'object') out._meta = meta as Record<string, unknown>;
  return out;
}
