import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildMesh, type MeshAgent } from '../../scripts/mesh/catalog';
import type { OfferedTool } from '../shared/registry-api';
import { compactSchema, DESCRIPTION_CAP, propertyDescription, shortDescription, toFunctionDefinition } from './tool-definition';

type Schema = Record<string, any>;

/** Every schema node of `s` with its path (iterative). */
function nodes(s: unknown): Array<[string, Schema]> {
  const out: Array<[string, Schema]> = [];
  const stack: Array<[string, unknown]> = [['', s]];
  while (stack.length) {
    const [path, n] = stack.pop()!;
    if (!n || typeof n !== 'object' || Array.isArray(n)) continue;
    const o = n as Schema;
    out.push([path, o]);
    for (const [k, v] of Object.entries(o.properties ?? {})) stack.push([`${path}.${k}`, v]);
    if (o.items) stack.push([`${path}[]`, o.items]);
    if (o.additionalProperties && typeof o.additionalProperties === 'object') stack.push([`${path}{}`, o.additionalProperties]);
    for (const key of ['anyOf', 'oneOf', 'allOf']) (o[key] ?? []).forEach((x: unknown, i: number) => stack.push([`${path}|${key}${i}`, x]));
  }
  return out;
}

/** The rendered schema keeps what a call needs of `real` and drops the noise. */
function expectFaithful(real: Schema, shown: Schema): void {
  const shownAt = new Map(nodes(shown));
  for (const [path, r] of nodes(real)) {
    const s = shownAt.get(path);
    expect(s, `node ${path || '(root)'} is shown`).toBeDefined();
    for (const k of ['type', 'enum', 'const', 'format', 'exclusiveMinimum', 'exclusiveMaximum', 'multipleOf']) expect(s![k], `${path} ${k}`).toEqual(r[k]);
    expect(s!.required ?? [], `${path} required`).toEqual(r.required ?? []);
    for (const k of ['minimum', 'maximum']) {
      if (Math.abs(r[k]) < Number.MAX_SAFE_INTEGER) expect(s![k], `${path} ${k}`).toBe(r[k]);
      else expect(s![k], `${path} ${k}`).toBeUndefined();
    }
    // string bounds from 32 up and item bounds from 256 up are left out (the agent's check names them if crossed)
    if (r.maxLength !== undefined) expect(s!.maxLength, `${path} maxLength`).toBe(r.maxLength < 32 ? r.maxLength : undefined);
    if (r.maxItems !== undefined && r.maxItems < 256) expect(s!.maxItems, `${path} maxItems`).toBe(r.maxItems);
    for (const k of ['minLength', 'minItems']) if (r[k] > 1) expect(s![k], `${path} ${k}`).toBe(r[k]);
    if (r.default !== undefined && r.default !== false && !(Array.isArray(r.default) && !r.default.length)) expect(s!.default, `${path} default`).toEqual(r.default);
    // noise
    expect(s!.additionalProperties, `${path} additionalProperties: false`).not.toBe(false);
    for (const k of ['$schema', 'title', 'propertyNames']) expect(s![k], `${path} ${k}`).toBeUndefined();
    if (s!.required) expect(s!.required.length).toBeGreaterThan(0);
    if (s!.default !== undefined) expect(s!.default).not.toBe(false);
    if (typeof r.description === 'string') {
      const cap = r.enum || /^(one of|allowed|only)\b/i.test(r.description) ? r.description.length : Math.min(r.description.length, 60);
      expect(s!.description?.length ?? 0, `${path} description`).toBeLessThanOrEqual(cap);
    }
  }
}

const offer = (agentId: string, tool: OfferedTool['tool']): OfferedTool => ({ agentId, tool });

describe('toFunctionDefinition over the packs\' catalogs', () => {
  let mesh: MeshAgent[];
  beforeAll(async () => { mesh = await buildMesh(5); });

  it('keeps types, required, enums and bounds of every pack tool, drops the noise, and is smaller', () => {
    let before = 0; let after = 0; let tools = 0;
    for (const a of mesh) {
      for (const tool of a.tools) {
        const name = `${a.id}__${tool.name}`;
        const def = toFunctionDefinition(name, offer(a.id, tool));
        expect(def.type).toBe('function');
        expect(def.function.name).toBe(name);
        expect(def.function.parameters).toMatchObject({ type: 'object', properties: expect.any(Object) });
        expectFaithful(tool.inputSchema as Schema, def.function.parameters as Schema);
        const d = def.function.description!;
        // the first words of the tool's own text, the risk only when not low, no agent/tool repeat of the name
        expect(d.startsWith(tool.description.slice(0, 20))).toBe(true);
        expect(d.includes('risk:')).toBe(tool.annotations?.risk === 'high' || tool.annotations?.risk === 'critical');
        expect(d).not.toContain('on agent');
        before += JSON.stringify({ name, description: tool.description, parameters: tool.inputSchema }).length;
        after += JSON.stringify(def.function).length;
        tools++;
      }
    }
    expect(tools).toBeGreaterThan(40);
    expect(after / before).toBeLessThan(0.75);
  });

  it('keeps what a tool accepts on this agent past the cap (allowlists) and the first sentence whole when it fits', () => {
    const desktop = mesh.find((a) => a.kind === 'desktop')!;
    const search = desktop.tools.find((t) => t.name === 'desktop_search_files')!;
    const d = toFunctionDefinition(`${desktop.id}__${search.name}`, offer(desktop.id, search)).function.description!;
    expect(search.description.length).toBeGreaterThan(DESCRIPTION_CAP);
    expect(d).toMatch(/^Find files and directories under a folder by glob pattern/);
    expect(d).toContain('Allowed folders: /tmp');
    expect(d).not.toContain('breadth first');
  });

  it('names the tool and agent when the function name is not the plain <agent>__<tool>, and keeps the source schema untouched', () => {
    const tool = { name: 'camera.take.photo', description: 'Takes a photo.', inputSchema: { type: 'object', properties: {}, additionalProperties: false }, annotations: { risk: 'high' as const } };
    const def = toFunctionDefinition('pi__camera_take_photo_1a2b3c4d', offer('pi', tool));
    expect(def.function.description).toBe('Takes a photo. (tool "camera.take.photo" on agent "pi", risk: high)');
    expect(def.function.parameters).toEqual({ type: 'object', properties: {} });
    expect(tool.inputSchema.additionalProperties).toBe(false);
    // titles: one that repeats the property name goes, one that says more stands in for a missing description
    expect(compactSchema({ type: 'object', title: 'Args', properties: { timeout_seconds: { title: 'Timeout Seconds', type: 'integer' }, mode: { title: 'How to restart', type: 'string' } } }))
      .toEqual({ type: 'object', properties: { timeout_seconds: { type: 'integer' }, mode: { description: 'How to restart', type: 'string' } } });
    expect(toFunctionDefinition('x__y', offer('x', { name: 'y', description: '', inputSchema: {} } as unknown as OfferedTool['tool'])).function.description).toBe('(risk: unknown)');
  });
});

describe('shortDescription and propertyDescription', () => {
  it('cut at sentences, not inside "e.g." or a glob "?"', () => {
    expect(shortDescription('Does one thing, e.g. This. Then more text that will not fit at all into the cap of the description here.', 40)).toBe('Does one thing, e.g. This.');
    expect(shortDescription('A'.repeat(30) + ' ' + 'B'.repeat(30), 40)).toBe(`${'A'.repeat(30)}…`);
    expect(propertyDescription('Container name or id (a unique id prefix works too)')).toBe('Container name or id');
    expect(propertyDescription('gauge (number on a dial), text')).toBe('gauge (number on a dial), text');
    expect(propertyDescription('gst-launch-1.0 pipeline description, e.g. "videotestsrc ! fakesink"')).toBe('gst-launch-1.0 pipeline description');
    const images = 'One of: nginx:1.27, eclipse-mosquitto:2, homeassistant/home-assistant:stable, another/image:with-a-long-tag';
    expect(propertyDescription(images)).toBe(images);
  });
});

describe('compactSchema over zod-generated schemas (property-based)', () => {
  const leaf = fc.oneof(
    fc.record({ min: fc.integer({ min: 0, max: 5 }), max: fc.integer({ min: 6, max: 5000 }) }).map(({ min, max }) => z.string().min(min).max(max)),
    fc.record({ lo: fc.integer({ min: -100, max: 0 }), hi: fc.integer({ min: 1, max: 100 }) }).map(({ lo, hi }) => z.number().int().min(lo).max(hi)),
    fc.constant(z.number().int()),
    fc.uniqueArray(fc.stringMatching(/^[a-z]{1,8}$/), { minLength: 1, maxLength: 6 }).map((vals) => z.enum(vals as [string, ...string[]])),
    fc.constant(z.boolean().default(false)),
    fc.integer({ min: 1, max: 9 }).map((n) => z.number().default(n)),
    fc.constant(z.array(z.string().max(4096)).max(32).default([])),
    fc.constant(z.string().regex(/^[^\p{Cc}]+$/u)),
  );
  const field = fc.tuple(leaf, fc.boolean(), fc.option(fc.lorem({ maxCount: 30 }), { nil: undefined }))
    .map(([s, optional, d]) => { const t = d ? s.describe(d) : s; return optional ? t.optional() : t; });
  const objectSchema = fc.dictionary(fc.stringMatching(/^[a-z][a-zA-Z]{0,10}$/), field, { minKeys: 0, maxKeys: 6 })
    .chain((shape) => fc.boolean().map((nest) => (nest ? { ...shape, inner: z.object(shape).strict() } : shape)))
    .map((shape) => z.object(shape).strict());

  it('keeps every node, type, required, enum and bound a call needs, drops the noise, never grows', () => {
    fc.assert(fc.property(objectSchema, (schema) => {
      const real = z.toJSONSchema(schema, { io: 'input' }) as Schema;
      const shown = compactSchema(real) as Schema;
      expectFaithful(real, shown);
      expect(JSON.stringify(shown).length).toBeLessThanOrEqual(JSON.stringify(real).length);
      expect(JSON.stringify(shown)).not.toContain('$schema');
    }), { numRuns: 200 });
  });
});
