/**
 * Every tool pack this agent ships, keyed by pack name (the key of its section `packs.<name>`
 * in the agent config).
 */
import { dashboardPack } from './dashboard';
import { desktopPack } from './desktop';
import { diagPack } from './diag';
import { dockerPack } from './docker';
import { gstreamerPack } from './gstreamer';
import { robotPack } from './robot';
import { systemPack } from './system';
import type { ToolPack } from './types';

export const PACKS: Readonly<Record<string, ToolPack>> = {
  docker: dockerPack,
  system: systemPack,
  diag: diagPack,
  robot: robotPack,
  desktop: desktopPack,
  dashboard: dashboardPack,
  gstreamer: gstreamerPack,
};
