/**
 * Reads and writes the pack's one tab through the Admin API. Every edit runs alone (edits of
 * this pack are queued), reads the tab fresh (`GET /flow/:id`; `GET /flows` only to find the tab
 * and to see what the rest of Node-RED offers), changes the model, and writes the tab back with
 * `PUT /flow/:id` (or creates it with `POST /flow`). Other tabs are never written. A dry run
 * stops before writing and reports the would-be changes.
 */
import { ToolError } from '../../../protocol/errors';
import type { ToolContext } from '../../../protocol/tool';
import type { NodeRedAdmin } from './admin-api';
import { REQUIRED_TYPES } from './elements';
import {
  diffNodes, findOwnTabs, flowFromModel, modelFromFlow, newModel, scaffold, surroundings,
  type BrokerSettings, type Surroundings, type TabDiff, type TabModel,
} from './tab';

/** What the editor needs from the pack's config. */
export interface EditorOptions {
  tabLabel: string;
  basePath: string;
  broker: BrokerSettings;
  agentId: string;
}

/** The tab as read: its model (null when it does not exist yet), the surroundings, and other tabs with the marker. */
export interface TabState {
  model: TabModel | null;
  surroundings: Surroundings;
  /** Further tabs marked for the same label (copies made in the editor); the first one is used. */
  duplicates: string[];
}

/** Changes in one line: `added: a, b; changed: c`. */
export function summarizeDiff(d: TabDiff): string {
  const parts = (['added', 'removed', 'changed'] as const).filter((k) => d[k].length).map((k) => `${k}: ${d[k].join(', ')}`);
  return parts.length ? parts.join('; ') : 'no change';
}

/** The editor of one Node-RED's pack tab. */
export class TabEditor {
  private queue: Promise<unknown> = Promise.resolve();
  private typesChecked = false;

  constructor(readonly admin: NodeRedAdmin, private readonly opts: EditorOptions) {}

  /** The label (and marker value) of the pack's tab. */
  get tabLabel(): string {
    return this.opts.tabLabel;
  }

  /**
   * Checks once (until it succeeds) that the runtime has every node type the pack writes: a flow
   * with an unknown type would stop all of Node-RED's flows.
   * @throws ToolError NOT_SUPPORTED naming the missing types.
   */
  async checkTypes(signal: AbortSignal): Promise<void> {
    if (this.typesChecked) return;
    const types = await this.admin.nodeTypes(signal);
    const missing = REQUIRED_TYPES.filter((t) => !types.get(t)?.enabled);
    if (missing.length) {
      throw new ToolError('NOT_SUPPORTED', `Node-RED at ${this.admin.url} lacks the node types ${missing.join(', ')}: install FlowFuse Dashboard 2.0 `
        + '(@flowfuse/node-red-dashboard, from Manage palette or with npm in its user directory), restart Node-RED, and try again', { missing });
    }
    this.typesChecked = true;
  }

  /** Reads the tab and its surroundings. */
  async read(signal: AbortSignal): Promise<TabState> {
    const flows = await this.admin.getFlows(signal);
    const [id, ...duplicates] = findOwnTabs(flows, this.opts.tabLabel);
    const flow = id === undefined ? null : await this.admin.getFlow(id, signal);
    return { model: flow ? modelFromFlow({ ...flow, id }) : null, surroundings: surroundings(flows, flow ? id : undefined), duplicates };
  }

  /**
   * Runs one edit: `mutate` changes the model (after scaffolding, so base, theme and broker exist)
   * and returns what the tool reports; the tab is scaffolded again and written when anything
   * changed. Returns that report plus `changes` (and `dryRun: true, wouldDo` in a dry run).
   */
  edit<T extends object>(ctx: ToolContext, what: string, mutate: (m: TabModel, s: Surroundings) => T | Promise<T>): Promise<T & { changes: TabDiff }> {
    const run = async () => {
      await this.checkTypes(ctx.signal);
      const { model, surroundings: s } = await this.read(ctx.signal);
      const m = model ?? newModel(this.opts.tabLabel, this.opts.agentId);
      const before = structuredClone(model?.nodes ?? []);
      const shape = { basePath: this.opts.basePath, broker: this.opts.broker };
      scaffold(m, s, shape);
      const report = await mutate(m, s);
      scaffold(m, s, shape);
      const changes = diffNodes(before, m.nodes);
      if (ctx.dryRun) {
        const creating = m.id ? '' : ` in a new tab "${m.label}"`;
        return { dryRun: true, wouldDo: `${what}${creating}: ${summarizeDiff(changes)}`, ...report, changes };
      }
      const changed = changes.added.length + changes.removed.length + changes.changed.length > 0;
      if (m.id && changed) await this.admin.updateFlow(m.id, flowFromModel(m), ctx.signal);
      else if (!m.id) m.id = await this.admin.addFlow(flowFromModel(m), ctx.signal);
      return { ...report, changes };
    };
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }
}
