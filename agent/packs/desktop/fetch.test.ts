// desktop_fetch_webpage against real HTTP servers on 127.0.0.1: two servers listed in the
// config (by IP literal, so loopback is explicitly allowed for them) and one unlisted, which
// must never receive a request. Every redirect hop is checked: chains within the allowlist are
// followed, a hop to an unlisted URL or to a listed name that resolves to loopback is refused at
// that hop. Plus the allowlist syntax, the address ranges, body caps and decoding.
import { EventEmitter } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ToolError } from '../../../protocol/errors';
import type { ToolContext, ToolDefinition } from '../../../protocol/tool';
import { parseIp, specialRange } from './address';
import { matchRule, parseUrlRule } from './fetch';
import { DesktopConfigSchema, desktopPack } from './index';

interface Server { port: number; hits: string[]; close(): Promise<void> }

/** A loopback HTTP server answering from `routes` (path → handler), 404 otherwise; it records every path asked for. */
async function serve(routes: Record<string, (res: http.ServerResponse) => void>): Promise<Server> {
  const hits: string[] = [];
  const server = http.createServer((req, res) => {
    hits.push(req.url ?? '');
    const route = routes[req.url ?? ''];
    if (route) route(res);
    else res.writeHead(404, { 'content-type': 'text/plain' }).end('not here');
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { port: (server.address() as AddressInfo).port, hits, close: () => new Promise((resolve) => server.close(() => resolve())) };
}

const redirect = (status: number, location: string) => (res: http.ServerResponse) => res.writeHead(status, { location }).end();
const page = (type: string, body: string | Buffer, extra: Record<string, string> = {}) =>
  (res: http.ServerResponse) => res.writeHead(200, { 'content-type': type, ...extra }).end(body);

let a: Server;
let b: Server;
let unlisted: Server;
let tools: ToolDefinition[];
let withRanges: ToolDefinition[];

async function makeTools(fetch: Record<string, unknown>): Promise<ToolDefinition[]> {
  const result = await desktopPack.create(DesktopConfigSchema.parse({ fetch }), { agentId: 'desk', log: { info() {}, warn() {}, error() {} }, events: new EventEmitter() });
  if ('unavailable' in result) throw new Error(result.unavailable);
  return result.tools;
}

function toolCtx(): ToolContext {
  return { signal: new AbortController().signal, callerId: 'tester', requestId: 1, dryRun: false, progress() {} };
}

async function fetchPage(args: Record<string, unknown>, set = tools): Promise<any> {
  const tool = set.find((t) => t.name === 'desktop_fetch_webpage')!;
  return tool.execute(tool.input.parse(args), toolCtx());
}

async function refused(url: string, set = tools): Promise<ToolError> {
  const err = await fetchPage({ url }, set).then(() => undefined, (e: unknown) => e);
  expect(err, url).toBeInstanceOf(ToolError);
  return err as ToolError;
}

beforeAll(async () => {
  unlisted = await serve({ '/secret': page('text/plain', 'admin secrets'), '/': page('text/plain', 'unlisted root') });
  b = await serve({
    '/docs/end': page('text/html; charset=utf-8', '<html><head><title>End</title></head><body><p>end of chain</p></body></html>'),
    '/admin': page('text/plain', 'admin'),
  });
  const routes: Record<string, (res: http.ServerResponse) => void> = {
    '/page': page('text/html', '<!doctype html><title>Hello &amp; welcome</title><script>var x = "<p>hidden</p>";</script><h1>Heading</h1><p>First&nbsp;para.</p><ul><li>one</li><li>two</li></ul>'),
    '/plain': page('text/plain; charset=iso-8859-1', Buffer.from('caf\xe9 au lait', 'latin1')),
    '/json': page('application/json', '{"ok":true}'),
    '/image': page('image/png', Buffer.alloc(64)),
    '/big': page('text/plain', 'x'.repeat(100_000)),
    '/gzip': page('text/html', gzipSync('<p>compressed page</p>'), { 'content-encoding': 'gzip' }),
    '/gzip-broken': page('text/plain', Buffer.from('this is not gzip'), { 'content-encoding': 'gzip' }),
    '/zstd': page('text/plain', Buffer.from('??'), { 'content-encoding': 'zstd' }),
    '/gzip-bomb': page('text/plain', gzipSync(Buffer.alloc(10 * 1024 * 1024, 0x41)), { 'content-encoding': 'gzip' }),
    '/r/chain1': redirect(302, '/r/chain2'),
    '/r/chain2': redirect(301, `http://127.0.0.1:${b.port}/docs/end`),
    '/r/loop': redirect(307, '/r/loop'),
    '/r/file': redirect(302, 'file:///etc/passwd'),
    '/r/metadata': redirect(302, 'http://169.254.169.254/latest/meta-data/'),
    '/r/unlisted': redirect(302, `http://127.0.0.1:${unlisted.port}/secret`),
    '/r/b-admin': redirect(303, `http://127.0.0.1:${b.port}/admin`),
  };
  a = await serve(routes);
  routes['/r/localhost'] = redirect(302, `http://localhost:${a.port}/page`);
  tools = await makeTools({
    urls: [`http://127.0.0.1:${a.port}/`, `http://127.0.0.1:${b.port}/docs/`, `http://localhost:${a.port}/`],
    maxBytes: 64 * 1024,
    maxRedirects: 3,
  });
  withRanges = await makeTools({ urls: [`http://localhost:${a.port}/`], privateRanges: ['127.0.0.0/8', '::1'] });
});

afterAll(async () => {
  await Promise.all([a, b, unlisted].map((s) => s?.close()));
});

describe('listed loopback servers', () => {
  it('fetches an HTML page as readable text with its title', async () => {
    const r = await fetchPage({ url: `http://127.0.0.1:${a.port}/page` });
    expect(r.isError).toBe(false);
    expect(r.structuredContent).toEqual({
      url: `http://127.0.0.1:${a.port}/page`, finalUrl: `http://127.0.0.1:${a.port}/page`, status: 200, contentType: 'text/html',
      title: 'Hello & welcome', bytes: expect.any(Number), truncated: false, redirects: [], text: 'Heading\n\nFirst para.\n\n- one\n- two',
    });
    expect(r.content[0].text).toBe(`http://127.0.0.1:${a.port}/page (HTTP 200, text/html)\nTitle: Hello & welcome\n\nHeading\n\nFirst para.\n\n- one\n- two`);
  });

  it('decodes charsets, gzip and JSON, and refuses binary content', async () => {
    expect((await fetchPage({ url: `http://127.0.0.1:${a.port}/plain` })).structuredContent.text).toBe('caf\u00e9 au lait');
    expect((await fetchPage({ url: `http://127.0.0.1:${a.port}/gzip` })).structuredContent.text).toBe('compressed page');
    expect((await fetchPage({ url: `http://127.0.0.1:${a.port}/json` })).structuredContent).toMatchObject({ contentType: 'application/json', text: '{"ok":true}' });
    const img = await refused(`http://127.0.0.1:${a.port}/image`);
    expect(img.code).toBe('NOT_SUPPORTED');
    expect((await refused(`http://127.0.0.1:${a.port}/zstd`)).code).toBe('NOT_SUPPORTED');
    const broken = await refused(`http://127.0.0.1:${a.port}/gzip-broken`);
    expect(broken.code).toBe('EXECUTION_FAILED');
    expect(broken.message).toMatch(/^reading .*\/gzip-broken failed: /);
    const missing = await fetchPage({ url: `http://127.0.0.1:${a.port}/nope` });
    expect(missing.structuredContent).toMatchObject({ status: 404, text: 'not here' });
  });

  it('caps what it reads, compressed or not', async () => {
    const big = await fetchPage({ url: `http://127.0.0.1:${a.port}/big`, maxBytes: 2048 });
    expect(big.structuredContent).toMatchObject({ truncated: true, bytes: 2048 });
    expect(big.structuredContent.text).toHaveLength(2048);
    const bomb = await fetchPage({ url: `http://127.0.0.1:${a.port}/gzip-bomb`, maxBytes: 4096 });
    expect(bomb.structuredContent).toMatchObject({ truncated: true, bytes: 4096 });
    const tool = tools.find((t) => t.name === 'desktop_fetch_webpage')!;
    expect(tool.input.safeParse({ url: 'http://x/', maxBytes: 64 * 1024 + 1 }).success).toBe(false);
  });

  it('follows a redirect chain within the allowlist, across servers', async () => {
    const r = await fetchPage({ url: `http://127.0.0.1:${a.port}/r/chain1` });
    expect(r.structuredContent).toMatchObject({
      finalUrl: `http://127.0.0.1:${b.port}/docs/end`, status: 200, title: 'End', text: 'end of chain',
      redirects: [`http://127.0.0.1:${a.port}/r/chain2`, `http://127.0.0.1:${b.port}/docs/end`],
    });
  });

  it('gives up after maxRedirects', async () => {
    const err = await refused(`http://127.0.0.1:${a.port}/r/loop`);
    expect(err.code).toBe('EXECUTION_FAILED');
    expect(err.message).toMatch(/more than 3 redirects/);
  });
});

describe('refusals', () => {
  it('an unlisted loopback URL (another port, Node-RED\'s admin API) is refused and never requested', async () => {
    for (const url of [`http://127.0.0.1:${unlisted.port}/`, 'http://127.0.0.1:1880/flows', `http://[::ffff:127.0.0.1]:${a.port}/page`, `https://127.0.0.1:${a.port}/page`]) {
      const err = await refused(url);
      expect(err.code, url).toBe('PERMISSION_DENIED');
      expect(err.details, url).toMatchObject({ reason: 'not-listed', hop: 0 });
    }
    expect(unlisted.hits).toEqual([]);
  });

  it('a redirect to an unlisted URL is refused at that hop, before any request goes there', async () => {
    const hitsOfB = b.hits.length;
    const cases: Array<[string, string]> = [
      ['/r/unlisted', `http://127.0.0.1:${unlisted.port}/secret`],
      ['/r/b-admin', `http://127.0.0.1:${b.port}/admin`],
      ['/r/metadata', 'http://169.254.169.254/latest/meta-data/'],
      ['/r/file', 'file:///etc/passwd'],
    ];
    for (const [path, target] of cases) {
      const err = await refused(`http://127.0.0.1:${a.port}${path}`);
      expect(err.code, path).toBe('PERMISSION_DENIED');
      expect(err.details, path).toMatchObject({ reason: 'not-listed', hop: 1, url: target });
      expect(err.message).toMatch(/^redirect 1 goes to /);
    }
    expect(unlisted.hits).toEqual([]);
    expect(b.hits.slice(hitsOfB)).toEqual([]);
  });

  it('a listed host name that resolves to loopback is refused, directly and as a redirect target', async () => {
    const direct = await refused(`http://localhost:${a.port}/page`);
    expect(direct.details).toMatchObject({ reason: 'private-address', hop: 0, range: 'loopback' });
    const hop = await refused(`http://127.0.0.1:${a.port}/r/localhost`);
    expect(hop.details).toMatchObject({ reason: 'private-address', hop: 1, url: `http://localhost:${a.port}/page` });
    expect(hop.message).toMatch(/privateRanges/);
  });

  it('privateRanges lets a listed host name reach loopback', async () => {
    const r = await fetchPage({ url: `http://localhost:${a.port}/page` }, withRanges);
    expect(r.structuredContent).toMatchObject({ status: 200, title: 'Hello & welcome' });
  });

  it('refuses credentials in the URL and text that is no URL', async () => {
    expect((await refused(`http://user:pw@127.0.0.1:${a.port}/page`)).details).toMatchObject({ reason: 'credentials' });
    expect((await refused('not a url')).code).toBe('INVALID_ARGUMENTS');
  });
});

describe('allowlist syntax and address ranges', () => {
  const rules = ['https://example.com/docs', 'example.org', '*.example.net', 'http://[::1]:8080/'].map(parseUrlRule);
  const ok = (url: string) => matchRule(rules, new URL(url))?.text;

  it('matches URL prefixes by scheme, host, port and whole path segments', () => {
    expect(ok('https://example.com/docs')).toBe('https://example.com/docs');
    expect(ok('https://example.com/docs/a?q=1')).toBe('https://example.com/docs');
    expect(ok('https://example.com/docs/../admin')).toBeUndefined();
    expect(ok('https://example.com/docs%2F..%2F..')).toBeUndefined();
    expect(ok('https://example.com/docsecret')).toBeUndefined();
    expect(ok('http://example.com/docs')).toBeUndefined();
    expect(ok('https://example.com:8443/docs')).toBeUndefined();
    expect(ok('https://example.com.evil.test/docs')).toBeUndefined();
    expect(ok('http://[::1]:8080/x')).toBe('http://[::1]:8080/');
  });

  it('matches hosts on default ports, and *. subdomains only', () => {
    expect(ok('http://example.org/any')).toBe('example.org');
    expect(ok('https://EXAMPLE.org/')).toBe('example.org');
    expect(ok('https://example.org:444/')).toBeUndefined();
    expect(ok('https://sub.example.org/')).toBeUndefined();
    expect(ok('https://a.b.example.net/')).toBe('*.example.net');
    expect(ok('https://example.net/')).toBeUndefined();
    expect(ok('https://badexample.net/')).toBeUndefined();
    expect(ok('ftp://example.org/')).toBeUndefined();
  });

  it('refuses malformed entries in the config', () => {
    for (const bad of ['ftp://x/', 'https://u:p@x/', 'https://x/?q', 'exa mple.com', '*', '*.127.0.0.1', 'x/y', '']) {
      expect(DesktopConfigSchema.safeParse({ fetch: { urls: [bad] } }).success, bad).toBe(false);
    }
    expect(DesktopConfigSchema.safeParse({ fetch: { privateRanges: ['10.0.0.0/33'] } }).success).toBe(false);
    expect(DesktopConfigSchema.safeParse({ fetch: { privateRanges: ['192.168.1.0/24', 'fd00::/8', '127.0.0.1'] } }).success).toBe(true);
  });

  it('classifies special-purpose addresses, also inside IPv6 forms', () => {
    const range = (a: string) => specialRange(parseIp(a)!);
    expect(range('127.0.0.1')).toBe('loopback');
    expect(range('::ffff:127.0.0.1')).toBe('loopback');
    expect(range('::ffff:7f00:1')).toBe('loopback');
    expect(range('64:ff9b::a00:1')).toBe('private');
    expect(range('2002:c0a8:101::1')).toBe('private');
    expect(range('::1')).toMatch(/loopback/);
    expect(range('169.254.169.254')).toMatch(/metadata/);
    expect(range('fd00:ec2::254')).toMatch(/unique-local/);
    expect(range('100.100.100.200')).toMatch(/carrier-grade NAT/);
    expect(range('fe80::1%eth0')).toBe('link-local');
    expect(range('0.0.0.0')).toBe('this-network');
    expect(range('8.8.8.8')).toBeUndefined();
    expect(range('2606:4700::1111')).toBeUndefined();
  });
});
