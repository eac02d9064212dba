/**
 * The audit library: hash-chained, append-only JSONL records with an anchor file, crash
 * recovery, rotation, redaction and verification. Used by the audit-log node and the agent.
 * No Node-RED imports.
 */
export * from './record';
export * from './redact';
export * from './anchor';
export * from './tail';
export * from './writer';
export * from './verify';
export * from './files';
