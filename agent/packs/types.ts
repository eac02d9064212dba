/**
 * The tool-pack contract: a pack is a named config schema plus a factory that returns plain
 * tool definitions: plain data plus functions, no class hierarchy.
 */
import type { EventEmitter } from 'node:events';
import type { z } from 'zod';
import type { ToolDefinition } from '../../protocol/tool';

/** Minimal logger the agent hands to packs. */
export interface Logger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/** What a pack's factory gets besides its own config. */
export interface PackContext {
  agentId: string;
  log: Logger;
  /**
   * Agent life events, for packs that drive hardware which must not run unattended (motors):
   * `caller-lost` (callerId) when a caller that was online goes lost or offline;
   * `broker-offline` when the agent loses its broker connection; `stopping` when the agent stops.
   */
  events: EventEmitter;
}

/**
 * Outcome of creating a pack: its tools, or `unavailable` with a one-line reason (e.g. no Docker
 * engine reachable); the agent then leaves the pack out of its catalog and logs the reason once.
 */
export type PackResult =
  | { tools: ToolDefinition[]; close?: () => Promise<void> | void }
  | { unavailable: string };

/**
 * Thrown by a pack's `create()` when this installation lacks something the pack needs and a
 * restart will not bring (a library that is an optional dependency, e.g. dockerode); the message
 * says what to install. `toolmesh-agent` prints it alone and exits 2, as for a bad config.
 */
export class PackSetupError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PackSetupError';
  }
}

/** A tool pack. `configSchema` validates the pack's section of the agent config (`packs.<name>`). */
export interface ToolPack<C extends z.ZodType = z.ZodType> {
  name: string;
  configSchema: C;
  create(config: z.output<C>, ctx: PackContext): Promise<PackResult>;
}
