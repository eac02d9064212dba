/**
 * Groups and elements of the pack's tab. An element is one Dashboard 2.0 widget bound to MQTT:
 * an `mqtt in` node on its topic feeds the widget (its data source), and the widgets a person
 * operates (switch, button, number) feed an `mqtt out` node on the command topic. Widget fields
 * follow the defaults of Dashboard 2.0's editor (`nodes/widgets/ui_*.html`, version 1.31).
 * Pure functions on a {@link TabModel}.
 */
import { ToolError } from '../../../protocol/errors';
import type { FlowNode } from './admin-api';
import { ensurePage, newId, type Surroundings, type TabModel } from './tab';

/** The element types the tools offer. */
export const ELEMENT_TYPES = ['gauge', 'switch', 'button', 'text', 'number', 'indicator'] as const;
export type ElementType = (typeof ELEMENT_TYPES)[number];

/** Dashboard 2.0 widget behind each element type (an indicator is a small `ui-template` lamp). */
const WIDGET_OF: Record<ElementType, string> = {
  gauge: 'ui-gauge', switch: 'ui-switch', button: 'ui-button', text: 'ui-text', number: 'ui-number-input', indicator: 'ui-template',
};
const TYPE_OF = new Map(Object.entries(WIDGET_OF).map(([k, v]) => [v, k as ElementType]));

/** Element types a person operates; their widget publishes to the command topic. */
export const COMMAND_TYPES: ReadonlySet<ElementType> = new Set(['switch', 'button', 'number']);

/** Every node type the pack's tab may hold; `load_dashboard` refuses a snapshot with any other. */
export const ALLOWED_TYPES: ReadonlySet<string> = new Set([
  ...Object.values(WIDGET_OF), 'ui-base', 'ui-theme', 'ui-page', 'ui-group', 'mqtt in', 'mqtt out', 'mqtt-broker',
]);

/** Node types the pack needs the runtime to have (`ui-*` from @flowfuse/node-red-dashboard). */
export const REQUIRED_TYPES: readonly string[] = [...ALLOWED_TYPES];

/** What `add_dashboard_element` asks for (validated by the tool's schema). */
export interface ElementSpec {
  type: ElementType;
  label: string;
  /** The data source: the widget shows what arrives here (buttons: where they publish). */
  topic: string;
  /** Where switch, button and number publish; default `topic`. */
  commandTopic?: string;
  min?: number;
  max?: number;
  step?: number;
  units?: string;
  /** What a button publishes. */
  payload?: string;
  /** Publish commands retained. */
  retain?: boolean;
}

/** One element as `list_groups` reports it. */
export interface ElementSummary {
  id: string;
  type: ElementType;
  label: string;
  topic?: string;
  commandTopic?: string;
}

/** One group as `list_groups` reports it; `order` is 1-based within its page. */
export interface GroupSummary {
  id: string;
  name: string;
  page: string;
  pagePath: string;
  width: number;
  order: number;
  elements: ElementSummary[];
}

const isWidget = (n: FlowNode) => TYPE_OF.has(n.type);
const byOrder = (a: FlowNode, b: FlowNode) => (Number(a.order) || 0) - (Number(b.order) || 0);

/** HTML-escapes text for the indicator's template. */
function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/**
 * The Vue template of an indicator: a lamp that is green while the last payload is `true`, 1,
 * "1", "on", "ON", "true" or "open", grey otherwise, then the label. The label sits in a `v-pre`
 * element, HTML-escaped, so no text of it is compiled as a template expression.
 */
export function indicatorTemplate(label: string): string {
  return '<div style="display:flex;align-items:center;gap:8px">'
    + '<span :style="{display:\'inline-block\',width:\'14px\',height:\'14px\',borderRadius:\'50%\','
    + 'background:(msg && [true,1,\'1\',\'on\',\'ON\',\'true\',\'open\'].includes(msg.payload)) ? \'#2e7d32\' : \'#9e9e9e\'}"></span>'
    + `<span v-pre>${escapeHtml(label)}</span></div>`;
}

/** The tab's group with id `ref`, else the one named `ref` (case-insensitive, trimmed); undefined when there is none. */
export function groupByRef(m: TabModel, ref: string): FlowNode | undefined {
  const groups = m.nodes.filter((n) => n.type === 'ui-group');
  return groups.find((n) => n.id === ref) ?? groups.find((n) => String(n.name).toLowerCase() === ref.trim().toLowerCase());
}

/** The tab's group with id `ref`, else the one named `ref` (case-insensitive). */
export function findGroup(m: TabModel, ref: string): FlowNode {
  const g = groupByRef(m, ref);
  if (!g) {
    throw new ToolError('EXECUTION_FAILED', `no dashboard group named or with id "${ref}"; list_groups lists them, create_dashboard_group makes one`, { group: ref });
  }
  return g;
}

/** Gives the page's groups the orders 1..n in the order of `groups`. */
function renumber(groups: FlowNode[]): void {
  groups.forEach((g, i) => { g.order = i + 1; });
}

/**
 * Adds group `name` (unique in the tab, case-insensitive) at the end of page `page` (created
 * when missing). `width` is in Dashboard 2.0 grid columns (1 to 12).
 * @throws ToolError EXECUTION_FAILED when the tab has a group of that name.
 */
export function addGroup(m: TabModel, s: Surroundings, o: { name: string; page: string; width: number }): FlowNode {
  if (m.nodes.some((n) => n.type === 'ui-group' && String(n.name).toLowerCase() === o.name.trim().toLowerCase())) {
    throw new ToolError('EXECUTION_FAILED', `a dashboard group named "${o.name}" exists already; group names are unique, pick another or use that one`, { group: o.name });
  }
  const page = ensurePage(m, s, o.page);
  const onPage = m.nodes.filter((n) => n.type === 'ui-group' && n.page === page.id);
  const group: FlowNode = {
    id: newId(), type: 'ui-group', name: o.name.trim(), page: page.id, width: o.width, height: 1,
    order: onPage.length + 1, showTitle: true, className: '', visible: true, disabled: false, groupType: 'default',
  };
  m.nodes.push(group);
  return group;
}

/**
 * Moves a group to position `order` (1-based, clamped) on its page or on page `page` (created
 * when missing; the group goes last unless `order` is given). The page's groups are renumbered.
 */
export function moveGroup(m: TabModel, s: Surroundings, group: FlowNode, o: { order?: number; page?: string }): void {
  const from = String(group.page);
  if (o.page !== undefined) group.page = ensurePage(m, s, o.page).id;
  const rest = (page: unknown) => m.nodes.filter((n) => n.type === 'ui-group' && n.page === page && n !== group).sort(byOrder);
  if (from !== group.page) renumber(rest(from));
  const others = rest(group.page);
  const at = o.order === undefined ? others.length : Math.min(Math.max(o.order, 1), others.length + 1) - 1;
  others.splice(at, 0, group);
  renumber(others);
}

/** The y of a new row in the editor: below the lowest node of the tab. */
function nextRowY(m: TabModel): number {
  const ys = m.nodes.map((n) => Number(n.y)).filter((y) => Number.isFinite(y));
  return ys.length ? Math.max(...ys) + 60 : 60;
}

/** The widget node of an element (without wires). */
function widgetNode(spec: ElementSpec, base: FlowNode): FlowNode {
  const min = spec.min ?? 0;
  const max = spec.max ?? (spec.type === 'number' ? 10 : 100);
  const command = spec.commandTopic ?? spec.topic;
  switch (spec.type) {
    case 'gauge': {
      const at = (f: number) => String(Number((min + f * (max - min)).toFixed(3)));
      return {
        ...base, width: 3, height: 3, gtype: 'gauge-half', gstyle: 'needle', title: spec.label, alwaysShowTitle: false,
        floatingTitlePosition: 'top-left', units: spec.units ?? '', icon: '', prefix: '', suffix: '',
        segments: [['#5cd65c', 0], ['#ffc800', 0.6], ['#ea5353', 0.8]].map(([color, f]) => ({ from: at(f as number), color, text: '', textType: 'label' })),
        min, max, sizeThickness: 16, sizeGap: 4, sizeKeyThickness: 8, styleRounded: true, styleGlow: false, className: '',
        value: 'payload', valueType: 'msg',
      };
    }
    case 'switch':
      return {
        ...base, label: spec.label, passthru: false, decouple: false, topic: command, topicType: 'str', style: '', className: '',
        layout: 'row-spread', clickableArea: 'switch', onvalue: 'true', onvalueType: 'bool', onicon: '', oncolor: '',
        offvalue: 'false', offvalueType: 'bool', officon: '', offcolor: '',
      };
    case 'button':
      return {
        ...base, label: spec.label, emulateClick: false, tooltip: '', color: '', bgcolor: '', className: '', icon: '',
        iconPosition: 'left', payload: spec.payload ?? 'pressed', payloadType: 'str', topic: command, topicType: 'str',
        buttonColor: '', textColor: '', iconColor: '', enableClick: true, enablePointerdown: false, pointerdown: '',
        pointerdownPayloadType: 'str', enablePointerup: false, pointerup: '', pointerupPayloadType: 'str',
      };
    case 'text':
      return {
        ...base, label: spec.label, format: '{{msg.payload}}', layout: 'row-spread', style: false, font: '', fontSize: 16,
        color: '#717171', wrapText: false, className: '', value: 'payload', valueType: 'msg',
      };
    case 'number':
      return {
        ...base, label: spec.label, topic: command, topicType: 'str', min, max, step: spec.step ?? 1, tooltip: '', passthru: false,
        sendOnDelay: false, delay: 300, sendOnBlur: true, sendOnEnter: true, className: '', clearable: false, icon: '',
        iconPosition: 'left', iconInnerPosition: 'inside', spinner: 'default',
      };
    case 'indicator':
      return {
        ...base, page: '', ui: '', head: '', format: indicatorTemplate(spec.label), storeOutMessages: true, passthru: false,
        resendOnRefresh: true, templateScope: 'local', className: '',
      };
  }
}

/**
 * Adds an element to `group`: the widget (last in the group), an `mqtt in` on `topic` wired to
 * it (not for buttons), and for switch, button and number an `mqtt out` on the command topic fed
 * by it. Call `scaffold()` first (the MQTT nodes use the tab's broker). Returns the widget.
 */
export function addElement(m: TabModel, group: FlowNode, brokerId: string, spec: ElementSpec): FlowNode {
  const y = nextRowY(m);
  const order = Math.max(0, ...m.nodes.filter((n) => isWidget(n) && n.group === group.id).map((n) => Number(n.order) || 0)) + 1;
  const widget = widgetNode(spec, {
    id: newId(), type: WIDGET_OF[spec.type], name: spec.label, group: group.id, order, width: 0, height: 0, x: 430, y, wires: [[]],
  });
  if (spec.type === 'text') widget.wires = [];
  const added = [widget];
  if (spec.type !== 'button') {
    added.unshift({
      id: newId(), type: 'mqtt in', name: spec.topic, topic: spec.topic, qos: '0', datatype: 'auto-detect', broker: brokerId,
      nl: false, rap: true, rh: 0, inputs: 0, x: 170, y, wires: [[widget.id]],
    });
  }
  if (COMMAND_TYPES.has(spec.type)) {
    const command = spec.commandTopic ?? spec.topic;
    const out: FlowNode = {
      id: newId(), type: 'mqtt out', name: command, topic: command, qos: '0', retain: spec.retain ? 'true' : 'false',
      respTopic: '', contentType: '', userProps: '', correl: '', expiry: '', broker: brokerId, x: 690, y, wires: [],
    };
    widget.wires = [[out.id]];
    added.push(out);
  }
  m.nodes.push(...added);
  return widget;
}

/**
 * Removes element `id`: its widget, the `mqtt in` nodes that feed only it, and the `mqtt out`
 * nodes only it feeds; wires of other nodes to them are dropped. Returns the removed nodes.
 * @throws ToolError EXECUTION_FAILED when the tab has no element with that id.
 */
export function removeElement(m: TabModel, id: string): FlowNode[] {
  const widget = m.nodes.find((n) => n.id === id && isWidget(n));
  if (!widget) throw new ToolError('EXECUTION_FAILED', `no dashboard element with id "${id}"; list_groups lists the elements and their ids`, { id });
  const targets = (n: FlowNode) => (n.wires ?? []).flat();
  const feeders = (t: string) => m.nodes.filter((n) => targets(n).includes(t));
  const gone = new Set([widget.id]);
  for (const n of feeders(widget.id)) if (n.type === 'mqtt in' && targets(n).every((t) => t === widget.id)) gone.add(n.id);
  for (const t of targets(widget)) {
    const out = m.nodes.find((n) => n.id === t);
    if (out?.type === 'mqtt out' && feeders(t).every((f) => f.id === widget.id)) gone.add(t);
  }
  const removed = m.nodes.filter((n) => gone.has(n.id));
  m.nodes = m.nodes.filter((n) => !gone.has(n.id));
  for (const n of m.nodes) if (n.wires) n.wires = n.wires.map((out) => out.filter((t) => !gone.has(t)));
  return removed;
}

/** The element behind widget `w`: its type, label, the topic feeding it and the one it publishes to. */
function summarize(m: TabModel, w: FlowNode): ElementSummary {
  const type = TYPE_OF.get(w.type)!;
  const label = String((type === 'gauge' ? w.title : type === 'indicator' ? w.name : w.label) ?? w.name ?? '');
  const source = m.nodes.find((n) => n.type === 'mqtt in' && (n.wires ?? []).flat().includes(w.id));
  const sink = m.nodes.find((n) => n.type === 'mqtt out' && (w.wires ?? []).flat().includes(n.id));
  const e: ElementSummary = { id: w.id, type, label };
  if (source) e.topic = String(source.topic);
  else if (sink) e.topic = String(sink.topic);
  if (sink) e.commandTopic = String(sink.topic);
  return e;
}

/** Every group of the tab with its elements, by page order, then group order. */
export function listGroups(m: TabModel): GroupSummary[] {
  const pages = m.nodes.filter((n) => n.type === 'ui-page').sort(byOrder);
  const rank = (g: FlowNode) => { const i = pages.findIndex((p) => p.id === g.page); return i < 0 ? pages.length : i; };
  const groups = m.nodes.filter((n) => n.type === 'ui-group').sort((a, b) => rank(a) - rank(b) || byOrder(a, b));
  return groups.map((g) => {
    const page = pages.find((p) => p.id === g.page);
    return {
      id: g.id, name: String(g.name), page: String(page?.name ?? '?'), pagePath: String(page?.path ?? '?'),
      width: Number(g.width) || 0, order: Number(g.order) || 0,
      elements: m.nodes.filter((n) => isWidget(n) && n.group === g.id).sort(byOrder).map((w) => summarize(m, w)),
    };
  });
}

/** Number of elements (widgets) in the tab. */
export function countElements(m: TabModel): number {
  return m.nodes.filter(isWidget).length;
}

/** Rewrites each indicator's template from its label, so a snapshot cannot bring template code of its own. */
export function rebuildIndicators(m: TabModel): void {
  for (const n of m.nodes) if (n.type === 'ui-template') Object.assign(n, { templateScope: 'local', format: indicatorTemplate(String(n.name ?? '')), head: '' });
}
