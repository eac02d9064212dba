// The message catalogs and help files of every node, as Node-RED loads them from
// nodes/<type>/locales/<lang>/<type>.json and .html: the German catalog has exactly the keys of
// the English one (with the same __placeholders__), no text is empty, every key follows the one
// naming style, each language has a non-empty help page for the type with the same structure (so an
// English help that changes fails until the German one follows), the help lives only there (not in
// the node's editor .html), and every key the editor .html asks for exists.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '..');
const TYPES = ['tool-registry', 'broker', 'remote-tool', 'llm-agent', 'tool-in', 'tool-out', 'confirm-gate', 'audit-log'];
const LANGS = ['en-US', 'de'];
/**
 * The naming style of catalog keys: `<type>.<section>.<name>`, every part after the type in
 * lower-case kebab-case (as Node-RED's own status and error keys are), e.g. `llm-agent.label.base-url`.
 */
const KEY_PART = /^[a-z0-9]+(-[a-z0-9]+)*$/;

function localeFile(type: string, lang: string, ext: 'json' | 'html'): string {
  return join(ROOT, 'nodes', type, 'locales', lang, `${type}.${ext}`);
}

/** Every leaf of the catalog as `key -> text` (non-strings are kept, to be reported). */
function flatten(o: unknown, prefix = '', out = new Map<string, unknown>()): Map<string, unknown> {
  if (o && typeof o === 'object' && !Array.isArray(o)) {
    for (const [k, v] of Object.entries(o)) flatten(v, prefix ? `${prefix}.${k}` : k, out);
  } else out.set(prefix, o);
  return out;
}

function catalog(type: string, lang: string): Map<string, unknown> {
  return flatten(JSON.parse(readFileSync(localeFile(type, lang, 'json'), 'utf8')));
}

const placeholders = (text: unknown) => [...String(text).matchAll(/__(\w+)__/g)].map((m) => m[1]).sort();

/** The help text of `type` in `html` without tags, or undefined when there is no help block. */
function helpText(html: string, type: string): string | undefined {
  const m = new RegExp(`<script type="text/html" data-help-name="toolmesh-${type}">([\\s\\S]*?)</script>`).exec(html);
  return m?.[1].replace(/<[^>]+>/g, ' ').replace(/\s+/g, ' ').trim();
}

describe.each(TYPES)('%s', (type) => {
  it('has a catalog in each language', () => {
    for (const lang of LANGS) expect(existsSync(localeFile(type, lang, 'json')), `${type} ${lang} catalog`).toBe(true);
  });

  it('the German catalog has exactly the English keys, with the same placeholders', () => {
    const en = catalog(type, 'en-US');
    const de = catalog(type, 'de');
    expect([...en.keys()].filter((k) => !de.has(k)), 'keys missing in de').toEqual([]);
    expect([...de.keys()].filter((k) => !en.has(k)), 'keys in de that en-US does not have').toEqual([]);
    const differ = [...en.keys()].filter((k) => de.has(k) && placeholders(en.get(k)).join() !== placeholders(de.get(k)).join());
    expect(differ, 'keys whose __placeholders__ differ between en-US and de').toEqual([]);
  });

  it('every text is a non-empty string and every key follows the naming style', () => {
    for (const lang of LANGS) {
      const cat = catalog(type, lang);
      expect([...cat.keys()].every((k) => k.startsWith(`${type}.`)), `${lang}: all keys under "${type}"`).toBe(true);
      expect([...cat].filter(([, v]) => typeof v !== 'string' || !v.trim()).map(([k]) => k), `${lang}: empty or non-string texts`).toEqual([]);
      expect([...cat.keys()].filter((k) => !k.split('.').slice(1).every((p) => KEY_PART.test(p))), `${lang}: keys not in kebab-case`).toEqual([]);
    }
  });

  it('has a non-empty help page in each language, and none in the editor .html', () => {
    for (const lang of LANGS) {
      const file = localeFile(type, lang, 'html');
      expect(existsSync(file), `${type} ${lang} help file`).toBe(true);
      const text = helpText(readFileSync(file, 'utf8'), type);
      expect(text, `${lang}: a <script type="text/html" data-help-name="toolmesh-${type}"> block`).toBeDefined();
      expect(text!.length, `${lang}: help text length`).toBeGreaterThan(200);
    }
    expect(readFileSync(localeFile(type, 'de', 'html'), 'utf8')).not.toBe(readFileSync(localeFile(type, 'en-US', 'html'), 'utf8'));
    expect(readFileSync(join(ROOT, 'nodes', type, `${type}.html`), 'utf8')).not.toContain('data-help-name');
  });

  it('the German help has the shape of the English one (a change to one shows in the other)', () => {
    // the same number of paragraphs, headings, properties, list items, code and pre elements: an
    // English help that gains a property or a paragraph fails until the German one has it too
    const shape = (lang: string) => {
      const html = readFileSync(localeFile(type, lang, 'html'), 'utf8');
      return Object.fromEntries(['<p>', '<h3>', '<dt', '<li>', '<code>', '<pre>'].map((tag) => [tag, html.split(tag).length - 1]));
    };
    expect(shape('de')).toEqual(shape('en-US'));
  });

  it('every catalog key the editor .html names exists', () => {
    const html = readFileSync(join(ROOT, 'nodes', type, `${type}.html`), 'utf8');
    const named = [
      ...[...html.matchAll(/data-i18n="(?:\[[a-z]+\])?([^"]+)"/g)].map((m) => m[1]),
      ...[...html.matchAll(/\._\('([^']+)'[,)]/g)].map((m) => m[1]),
    ];
    expect(named.length).toBeGreaterThan(0);
    const en = catalog(type, 'en-US');
    expect(named.filter((k) => !en.has(k)), 'keys the editor asks for that en-US lacks').toEqual([]);
  });
});
