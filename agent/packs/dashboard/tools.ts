/**
 * The dashboard pack's tool definitions. Edits go through {@link TabEditor}, so they touch only
 * the pack's tab; each editing tool declares `supportsDryRun` and honours `ctx.dryRun` (the
 * would-be changes come back as `changes: { added, removed, changed }` and `wouldDo`).
 */
import { join } from 'node:path';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import { defineTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import type { FlowNode } from './admin-api';
import type { TabEditor } from './editor';
import {
  ALLOWED_TYPES, COMMAND_TYPES, ELEMENT_TYPES, addElement, addGroup, countElements, findGroup, groupByRef, listGroups, moveGroup,
  rebuildIndicators, removeElement,
} from './elements';
import { SnapshotName, listSnapshots, readSnapshot, snapshotExists, writeSnapshot } from './snapshots';
import { baseOf, brokerOf, describeNode, type Surroundings, type TabModel } from './tab';

/** What the tools need from the pack's config. */
export interface DashboardToolOptions {
  /** Where Node-RED serves dashboards (origin plus httpNodeRoot), no trailing slash. */
  dashboardUrl: string;
  defaultPage: string;
  configDir: string;
  deniedTopicPrefixes: string[];
  allowedTopicPrefixes: string[];
  /** The widgets' broker as a URL, for the status report. */
  brokerUrl: string;
}

/** Width of a group add_dashboard_element creates, grid columns (create_dashboard_group's default). */
const NEW_GROUP_WIDTH = 6;

const Label = z.string().trim().min(1).max(60).regex(/^[^\p{Cc}]+$/u, 'no control characters');
const Topic = z.string().min(1).max(200).regex(/^[^#+$\p{Cc}][^#+\p{Cc}]*$/u, 'an MQTT topic without wildcards (+ #), not starting with $')
  .describe('MQTT topic, e.g. home/living/temp');
const PageName = Label.describe('Dashboard page name; created when missing');

/** The URL of a page of the tab. */
function pageUrl(o: DashboardToolOptions, m: TabModel, s: Surroundings, path: unknown): string {
  return `${o.dashboardUrl}${String(baseOf(m, s).path).replace(/\/$/, '')}${String(path)}`;
}

/**
 * Refuses a topic under a denied prefix (default `toolmesh/`: a widget there could send tool
 * calls to agents or read their results) or outside the allowed prefixes when any are set.
 */
function checkTopic(o: DashboardToolOptions, topic: string): void {
  const denied = o.deniedTopicPrefixes.find((p) => topic.startsWith(p));
  if (denied !== undefined) {
    throw new ToolError('PERMISSION_DENIED', `topic "${topic}" is under "${denied}", which dashboard elements may not use (packs.dashboard.deniedTopicPrefixes); pick a data topic such as home/living/temp`, { topic });
  }
  if (o.allowedTopicPrefixes.length && !o.allowedTopicPrefixes.some((p) => topic.startsWith(p))) {
    throw new ToolError('PERMISSION_DENIED', `topic "${topic}" is outside the allowed prefixes ${o.allowedTopicPrefixes.join(', ')} (packs.dashboard.allowedTopicPrefixes)`, { topic });
  }
}

const ElementInput = z.strictObject({
  group: Label.describe('Group name or id (list_groups); a group of this name is created when none exists'),
  type: z.enum(ELEMENT_TYPES).describe('gauge (number on a dial), text (value as text), indicator (lamp: on for true/1/"on"), switch (shows and publishes true/false), button (publishes payload), number (shows and publishes a number)'),
  label: Label.describe('Title shown on the dashboard'),
  topic: Topic.describe('MQTT topic the element shows (its data source); a button publishes here'),
  commandTopic: Topic.optional().describe('switch, number, button: publish here instead of topic'),
  min: z.number().optional().describe('gauge, number: lower bound (default 0)'),
  max: z.number().optional().describe('gauge, number: upper bound (default 100 for gauge, 10 for number)'),
  step: z.number().positive().optional().describe('number: step (default 1)'),
  units: z.string().max(12).regex(/^[^\p{Cc}]*$/u).optional().describe('gauge: unit shown under the value, e.g. °C'),
  payload: z.string().max(200).optional().describe('button: what it publishes (default "pressed")'),
  retain: z.boolean().optional().describe('switch, number, button: publish retained'),
}).superRefine((a, ctx) => {
  const only = (field: keyof typeof a, types: string[]) => {
    if (a[field] !== undefined && !types.includes(a.type)) ctx.addIssue({ code: 'custom', path: [field], message: `${field} applies to ${types.join(', ')} only, not ${a.type}` });
  };
  only('min', ['gauge', 'number']);
  only('max', ['gauge', 'number']);
  only('step', ['number']);
  only('units', ['gauge']);
  only('payload', ['button']);
  only('commandTopic', [...COMMAND_TYPES]);
  only('retain', [...COMMAND_TYPES]);
  const max = a.max ?? (a.type === 'number' ? 10 : 100);
  if ((a.min ?? 0) >= max) ctx.addIssue({ code: 'custom', path: ['max'], message: `max must be greater than min (${a.min ?? 0})` });
});

/** Builds the pack's tools on one tab editor. */
export function dashboardTools(editor: TabEditor, o: DashboardToolOptions): ToolDefinition[] {
  const dir = o.configDir;
  /** The tab as it is now, or an error saying there is none yet. */
  async function existing(ctx: ToolContext, what: string) {
    const state = await editor.read(ctx.signal);
    if (!state.model) throw new ToolError('EXECUTION_FAILED', `${what}: the dashboard tab "${editor.tabLabel}" does not exist yet; create_dashboard_group makes it`);
    return { ...state, model: state.model };
  }

  return [
    defineTool({
      name: 'create_dashboard_group',
      description: 'Create a group (a card with a title) on a dashboard page; the page is created when missing. Elements go into groups.',
      input: z.strictObject({
        name: Label.describe('Group title, unique on this dashboard'),
        page: PageName.optional().describe(`Page name (default "${o.defaultPage}"); created when missing`),
        width: z.number().int().min(1).max(12).default(NEW_GROUP_WIDTH).describe('Width in grid columns (1 to 12)'),
      }),
      risk: 'medium', supportsDryRun: true,
      execute: ({ name, page, width }, ctx) => editor.edit(ctx, `create group "${name}"`, (m, s) => {
        const g = addGroup(m, s, { name, page: page ?? o.defaultPage, width });
        const p = m.nodes.find((n) => n.id === g.page)!;
        return { group: { id: g.id, name: g.name, page: p.name, url: pageUrl(o, m, s, p.path) } };
      }),
    }),
    defineTool({
      name: 'add_dashboard_element',
      description: `Add an element to a group, bound to an MQTT topic as its data source: it shows the latest message on topic; switch, number and button also publish (to commandTopic, default topic). When no group of that name exists, it is created on page "${o.defaultPage}" (the result says so: groupCreated). Returns the element id.`,
      input: ElementInput,
      risk: 'medium', supportsDryRun: true,
      execute: (spec, ctx) => {
        checkTopic(o, spec.topic);
        if (spec.commandTopic) checkTopic(o, spec.commandTopic);
        return editor.edit(ctx, `add ${spec.type} "${spec.label}" on ${spec.topic}`, (m, s) => {
          const found = groupByRef(m, spec.group);
          // "add a PV power gauge to Solar" needs no create_dashboard_group first
          const group = found ?? addGroup(m, s, { name: spec.group, page: o.defaultPage, width: NEW_GROUP_WIDTH });
          const w = addElement(m, group, brokerOf(m)!.id, spec);
          const page = m.nodes.find((n) => n.id === group.page);
          return {
            element: { id: w.id, type: spec.type, label: spec.label, topic: spec.topic, ...(COMMAND_TYPES.has(spec.type) ? { commandTopic: spec.commandTopic ?? spec.topic } : {}) },
            group: group.name,
            ...(found ? {} : { groupCreated: true, note: `there was no group "${group.name}": created it on page "${page?.name ?? o.defaultPage}"` }),
            url: page ? pageUrl(o, m, s, page.path) : undefined,
          };
        });
      },
    }),
    defineTool({
      name: 'remove_dashboard_element',
      description: 'Remove one element (by id, see list_groups) and the MQTT nodes that feed it or that it feeds.',
      input: z.strictObject({ id: z.string().min(1).max(64).describe('Element id') }),
      risk: 'medium', supportsDryRun: true, destructive: true,
      execute: ({ id }, ctx) => editor.edit(ctx, `remove element ${id}`, (m) => ({ removed: removeElement(m, id).map(describeNode) })),
    }),
    defineTool({
      name: 'move_group',
      description: 'Move a group to another position on its page (order 1 = first) and/or to another page (created when missing).',
      input: z.strictObject({
        group: z.string().min(1).describe('Group name or id'),
        order: z.number().int().min(1).optional().describe('New position on the page, 1 = first'),
        page: PageName.optional(),
      }).refine((a) => a.order !== undefined || a.page !== undefined, 'give order, page or both'),
      risk: 'medium', supportsDryRun: true, idempotent: true,
      execute: ({ group, order, page }, ctx) => editor.edit(ctx, `move group "${group}"`, (m, s) => {
        const g = findGroup(m, group);
        moveGroup(m, s, g, { order, page });
        const p = m.nodes.find((n) => n.id === g.page);
        return { group: { id: g.id, name: g.name, page: p?.name, order: g.order } };
      }),
    }),
    defineTool({
      name: 'list_groups',
      description: 'List the dashboard\'s groups by page and order, each with its elements (id, type, label, topic, commandTopic).',
      input: z.strictObject({}),
      risk: 'low', readOnly: true, idempotent: true,
      async execute(_a, ctx) {
        const { model } = await editor.read(ctx.signal);
        return { tab: model ? { id: model.id, label: model.label } : null, groups: model ? listGroups(model) : [] };
      },
    }),
    defineTool({
      name: 'get_dashboard_status',
      description: 'Where the dashboard is and what it holds: Node-RED URL, whether Dashboard 2.0 is installed, the tab, page URLs, number of groups and elements, the MQTT broker of the elements.',
      input: z.strictObject({}),
      risk: 'low', readOnly: true, idempotent: true,
      async execute(_a, ctx) {
        const installed = await editor.checkTypes(ctx.signal).then(() => true, (e) => {
          if (e instanceof ToolError && e.code === 'NOT_SUPPORTED') return false;
          throw e;
        });
        const { model, surroundings: s, duplicates } = await editor.read(ctx.signal);
        const status: Record<string, unknown> = { nodeRed: editor.admin.url, dashboardInstalled: installed, broker: o.brokerUrl, tab: null, pages: [], groups: 0, elements: 0 };
        if (model) {
          const base = s.base ?? model.nodes.find((n) => n.type === 'ui-base');
          Object.assign(status, {
            tab: { id: model.id, label: model.label },
            base: base ? { id: base.id, path: base.path, scope: s.base ? 'global' : 'tab' } : null,
            pages: base ? model.nodes.filter((n) => n.type === 'ui-page').map((p) => ({ name: p.name, path: p.path, url: pageUrl(o, model, s, p.path) })) : [],
            groups: model.nodes.filter((n) => n.type === 'ui-group').length,
            elements: countElements(model),
          });
        }
        if (duplicates.length) status.duplicateTabs = duplicates;
        return status;
      },
    }),
    defineTool({
      name: 'save_dashboard',
      description: 'Save the dashboard tab as a named snapshot (load_dashboard restores it). Only dashboard and MQTT nodes are saved; credentials never are.',
      input: z.strictObject({ name: SnapshotName, overwrite: z.boolean().default(false).describe('Replace a snapshot of that name') }),
      risk: 'low', supportsDryRun: true,
      async execute({ name, overwrite }, ctx) {
        const { model } = await existing(ctx, 'nothing to save');
        if (!overwrite && await snapshotExists(dir, name)) {
          throw new ToolError('EXECUTION_FAILED', `a snapshot named "${name}" exists; pass overwrite: true to replace it, or pick another name`, { name });
        }
        const nodes = model.nodes.filter((n) => ALLOWED_TYPES.has(n.type)).map(({ credentials: _c, ...n }) => n as FlowNode);
        const skipped = model.nodes.filter((n) => !ALLOWED_TYPES.has(n.type)).map(describeNode);
        const counts = { groups: nodes.filter((n) => n.type === 'ui-group').length, elements: countElements({ ...model, nodes }) };
        const file = join(dir, `${name}.json`);
        if (ctx.dryRun) return { dryRun: true, wouldDo: `write ${file}: ${nodes.length} nodes (${counts.groups} groups, ${counts.elements} elements)`, ...counts, skipped };
        const written = await writeSnapshot(dir, { version: 1, name, savedAt: new Date().toISOString(), tabLabel: model.label, nodes });
        return { saved: name, ...written, ...counts, skipped };
      },
    }),
    defineTool({
      name: 'load_dashboard',
      description: 'Replace the whole dashboard tab with a saved snapshot (what is not saved is lost). Other tabs stay as they are.',
      input: z.strictObject({ name: SnapshotName }),
      risk: 'medium', supportsDryRun: true, destructive: true,
      async execute({ name }, ctx) {
        const snap = await readSnapshot(dir, name);
        return editor.edit(ctx, `load snapshot "${name}"`, (m, s) => {
          const clash = snap.nodes.filter((n) => s.ids.has(n.id)).map((n) => n.id);
          if (clash.length) {
            throw new ToolError('EXECUTION_FAILED', `snapshot "${name}" uses node ids that other tabs of this Node-RED use (${clash.slice(0, 5).join(', ')}); it was saved from another Node-RED or copied, and loading it would break those tabs`, { name, ids: clash });
          }
          m.nodes = structuredClone(snap.nodes).map((n) => ({ ...n, z: m.id }));
          rebuildIndicators(m);
          return { loaded: name, savedAt: snap.savedAt, groups: snap.nodes.filter((n) => n.type === 'ui-group').length, elements: countElements(m) };
        });
      },
    }),
    defineTool({
      name: 'list_dashboard_configs',
      description: 'List the saved dashboard snapshots: name, time saved, number of groups and elements, size in bytes.',
      input: z.strictObject({}),
      risk: 'low', readOnly: true, idempotent: true,
      execute: async () => ({ dir, configs: await listSnapshots(dir) }),
    }),
  ];
}
