/** The registry's tool policy lives in protocol/tool-policy.ts (the MCP bridge applies the same rules). */
export * from '../../protocol/tool-policy';
