/** Wire protocol v1: the contract shared by agents and callers. No Node-RED imports. */
export * from './topics';
export * from './schemas';
export * from './errors';
export * from './tool';
export * from './mqtt';
export * from './call-store';
export * from './authorize';
export * from './rpc-server';
export * from './rpc-client';
export * from './approval';
export * from './glob';
export * from './approval-requests';
export * from './tool-policy';
export * from './call-summary';
export * from './tool-names';
export * from './redact';
