/** The call summary lives in protocol/call-summary.ts (the MCP bridge shows the same one). */
export * from '@toolmesh/agent/protocol/call-summary';
