import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { z } from 'zod';
import { buildMesh, type MeshAgent } from '../../scripts/mesh/catalog';
import type { OfferedTool } from '../shared/registry-api';
import { compactSchema, DESCRIPTION_CAP, fitSentence, propertyDescription, saysNothingNew, shortDescription, toFunctionDefinition, withReferences, wordsOf } from './tool-definition';

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
        expect(d.startsWith(tool.description.split(' ').slice(0, 2).join(' '))).toBe(true);
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

describe('fitSentence, saysNothingNew and withReferences', () => {
  it('a long first sentence loses its asides first, then its last clauses, and says so with …', () => {
    const logs = 'The newest log lines of a container (stdout and stderr interleaved as written), at most 500 lines and 262144 bytes.';
    expect(fitSentence(logs, 90)).toBe('The newest log lines of a container, at most 500 lines and 262144 bytes.');
    expect(fitSentence(logs, 200)).toBe(logs);
    // still too long without asides: cut at the last clause within the cap, marked as cut
    expect(fitSentence('Summary of one container: state, image, created, start/finish times, restart count, mounts, ports and networks.', 80))
      .toBe('Summary of one container: state, image, created, start/finish times…');
    // no clause boundary in the second half: cut at a word
    expect(fitSentence(`Seconds since boot ${'and more words '.repeat(8)}end.`, 60)).toMatch(/^Seconds since boot and more words .*…$/);
    expect(fitSentence(`Seconds since boot ${'and more words '.repeat(8)}end.`, 60).length).toBeLessThanOrEqual(60);
    // a glob's "?" after an aside is not eaten
    expect(fitSentence('Find files by glob pattern: * (any run of characters within a name), ? (one character), [a-z] (a set), ** (any number of directories).', 90))
      .toBe('Find files by glob pattern: *, ?, [a-z], **.');
    // an enum's explanation keeps its asides (they are the explanation)
    expect(propertyDescription('gauge (number on a dial), text (value as text), indicator (lamp: on for true/1/"on"), switch (on/off), button (publishes), number (input)', true))
      .toMatch(/^gauge \(number on a dial\), text \(value as text\)/);
  });

  it('a property description that only repeats the names and the tool\'s text goes; one that adds anything stays', () => {
    const shown = new Set([...wordsOf('desktop_create_directory'), ...wordsOf('Create a directory, with any missing parent directories.')]);
    expect(saysNothingNew('Directory to create', 'path', shown)).toBe(true);
    expect(saysNothingNew('Directory to make', 'path', shown)).toBe(false);
    expect(saysNothingNew('Width in 12 columns', 'width', new Set(wordsOf('width in columns')))).toBe(false);
    expect(saysNothingNew('Container name or id', 'container', new Set(wordsOf('docker_stop_container Stop a running container')))).toBe(false);
    expect(wordsOf('maxResults of the Files')).toEqual(['max', 'result', 'file']);
    const tool = { name: 'desktop_create_directory', description: 'Create a directory, with any missing parent directories.', annotations: { risk: 'medium' as const },
      inputSchema: { type: 'object', properties: { path: { type: 'string', description: 'Directory to create' }, mode: { type: 'string', description: 'Octal permission bits' } }, required: ['path'] } };
    expect(toFunctionDefinition('d__desktop_create_directory', offer('d', tool)).function.parameters)
      .toEqual({ type: 'object', properties: { path: { type: 'string' }, mode: { type: 'string', description: 'Octal permission bits' } }, required: ['path'] });
  });

  it('renders a repeated tool by reference, keeps its parameters and risk, and leaves different tools whole', () => {
    const drive = { name: 'robot_drive', description: 'Drive the robot forward or backward.', annotations: { risk: 'high' as const },
      inputSchema: { type: 'object', properties: { direction: { type: 'string', enum: ['forward', 'backward'] } }, required: ['direction'] } };
    const photo = { ...drive, name: 'robot_take_photo', description: 'Take a photo.', annotations: { risk: 'low' as const } };
    const other = { ...drive, description: 'Drive the other kind of robot.' };
    const defs = [
      toFunctionDefinition('r1__robot_drive', offer('r1', drive)),
      toFunctionDefinition('r1__robot_take_photo', offer('r1', photo)),
      toFunctionDefinition('r2__robot_drive', offer('r2', drive)),
      toFunctionDefinition('r3__robot_drive', offer('r3', other)),
      toFunctionDefinition('r4__robot_drive_9f8e7d6c', offer('r4', drive)),
      toFunctionDefinition('r5__robot_take_photo', offer('r5', photo)),
    ];
    const out = withReferences(defs);
    expect(out.map((d) => d.function.name)).toEqual(defs.map((d) => d.function.name));
    expect(out[0]).toBe(defs[0]);
    expect(out[1]).toBe(defs[1]);
    expect(out[2].function.description).toBe('Same as on r1. (risk: high)');
    expect(out[2].function.parameters).toEqual(defs[0].function.parameters); // no descriptions to leave out here
    const described = { ...drive, inputSchema: { type: 'object', properties: { direction: { type: 'string', enum: ['forward', 'backward'], description: 'Which way' }, speed: { type: 'number', maximum: 1, description: 'Fraction of full speed' } }, required: ['direction'] } };
    const [, again] = withReferences([toFunctionDefinition('r1__robot_drive', offer('r1', described)), toFunctionDefinition('r2__robot_drive', offer('r2', described))]);
    expect(again.function.parameters).toEqual({ type: 'object', properties: { direction: { type: 'string', enum: ['forward', 'backward'] }, speed: { type: 'number', maximum: 1 } }, required: ['direction'] });
    expect(toFunctionDefinition('r1__robot_drive', offer('r1', described)).function.parameters).toMatchObject({ properties: { speed: { description: 'Fraction of full speed' } } });
    expect(out[3]).toBe(defs[3]); // another text: its own description
    // a hashed name carries its tool and agent in its text, so it is never the same text: whole
    expect(out[4]).toBe(defs[4]);
    expect(out[5].function.description).toBe('Same as on r1.');
    expect(withReferences(defs)).toEqual(out); // the same definitions render the same way
    // a name that is not <agent>__<tool> is referred to whole
    const plain = withReferences([{ type: 'function', function: { name: 'a', description: 'X.', parameters: {} } }, { type: 'function', function: { name: 'b', description: 'X.', parameters: {} } }]);
    expect(plain[1].function.description).toBe('Same as a.');
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
