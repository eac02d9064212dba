/** The registry's tool policy lives in protocol/tool-policy.ts (the MCP bridge applies the same rules). */
export * from '@toolmesh/agent/protocol/tool-policy';
