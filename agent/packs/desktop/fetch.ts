/**
 * `desktop_fetch_webpage`: GET a listed URL and return its text. Each hop (the first URL and
 * every redirect target) must match the URL allowlist, and the addresses its host resolves to
 * must be public unless listed (a URL entry whose host is that very IP literal, or a range in
 * `privateRanges`), so a model cannot reach Node-RED's admin API on loopback, the LAN, or cloud
 * metadata. The connection goes to the address that was checked (no second DNS answer), and
 * redirects are followed by hand, at most `maxRedirects` of them.
 */
// node:http, node:https (with TLS), node:zlib and node:dns load on the first fetch, not with this
// module: every agent loads the desktop pack's config schema (FetchConfigSchema), and https alone
// is ~1.5 MB resident (bench/agent-rss.mjs)
import type { lookup as Lookup } from 'node:dns/promises';
import type http from 'node:http';
import type { LookupFunction } from 'node:net';
import type { Readable } from 'node:stream';
import type zlib from 'node:zlib';
import { z } from 'zod';
import { ToolError } from '../../../protocol/errors';
import type { CallToolResult } from '../../../protocol/schemas';
import { defineTool, type ToolContext, type ToolDefinition } from '../../../protocol/tool';
import { inCidr, parseCidr, parseIp, sameAddress, specialRange, type Cidr, type IpBytes } from './address';
import { htmlToText } from './html';
import { parseUrlRule, type FetchConfig, type UrlRule } from './schemas';

export { FetchConfigSchema, parseUrlRule, type FetchConfig, type UrlRule } from './schemas';

const REDIRECTS = new Set([301, 302, 303, 307, 308]);
const HEADERS = {
  'user-agent': 'ToolMesh-desktop-agent',
  accept: 'text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5',
  'accept-encoding': 'gzip, deflate, br',
};

function pathUnder(path: string, prefix: string): boolean {
  return prefix.endsWith('/') ? path.startsWith(prefix) : path === prefix || path.startsWith(`${prefix}/`);
}

/** The first rule `url` matches, or `undefined`. */
export function matchRule(rules: readonly UrlRule[], url: URL): UrlRule | undefined {
  if (url.protocol !== 'http:' && url.protocol !== 'https:') return undefined;
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  return rules.find((r) => (r.kind === 'prefix'
    ? url.protocol === r.protocol && url.host === r.host && pathUnder(url.pathname, r.path)
    : url.port === '' && (r.wildcard ? hostname.endsWith(`.${r.hostname}`) : hostname === r.hostname)));
}

interface Pin { address: string; family: number }

function denied(reason: string, message: string, details: Record<string, unknown>): ToolError {
  return new ToolError('PERMISSION_DENIED', message, { reason, ...details });
}

/** Everything one fetch needs besides the URL. */
interface Fetcher {
  rules: UrlRule[];
  ranges: Cidr[];
}

/** Checks one hop: the URL against the allowlist, then every address of its host. Returns the addresses (all checked) to connect to. */
async function checkHop(f: Fetcher, url: URL, hop: number): Promise<Pin[]> {
  const where = { url: url.href, hop };
  if (url.username || url.password) throw denied('credentials', `${url.href} carries a user name or password; fetch it without them`, where);
  const rule = matchRule(f.rules, url);
  if (!rule) {
    throw denied('not-listed', `${hop ? `redirect ${hop} goes to ` : ''}${url.href}, which is not on this agent's URL allowlist (${f.rules.map((r) => r.text).join(', ')})`, where);
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, '');
  const literal = parseIp(hostname);
  let pins: Pin[];
  try {
    pins = literal ? [{ address: hostname, family: literal.length === 4 ? 4 : 6 }] : await (require('node:dns/promises') as { lookup: typeof Lookup }).lookup(hostname, { all: true, verbatim: true });
  } catch (e) {
    throw new ToolError('EXECUTION_FAILED', `cannot resolve ${hostname}: ${(e as Error).message}`, where);
  }
  // an entry naming this very IP address lists it; a name (or a *. pattern) lists no address
  const listed = parseIp(rule.hostname);
  for (const pin of pins) {
    const ip = parseIp(pin.address) as IpBytes;
    const label = specialRange(ip);
    if (!label || (listed && sameAddress(ip, listed)) || f.ranges.some((c) => inCidr(ip, c))) continue;
    throw denied('private-address', `${hop ? `redirect ${hop} goes to ` : ''}${url.href}, whose host ${hostname} is ${pin.address}, a ${label} address; such addresses are reached only when listed (a URL with that IP address, or privateRanges in the agent config)`, { ...where, address: pin.address, range: label });
  }
  return pins;
}

/**
 * Sends one GET to the checked addresses (Node tries them in turn when it asks for all), never
 * to a fresh DNS answer; TLS is checked against the URL's host name.
 */
function get(url: URL, pins: Pin[], signal: AbortSignal): Promise<http.IncomingMessage> {
  const pinned: LookupFunction = (_host, opts, cb) => {
    if (opts.all) (cb as (e: null, a: Pin[]) => void)(null, pins);
    else cb(null, pins[0].address, pins[0].family);
  };
  const mod = (url.protocol === 'https:' ? require('node:https') : require('node:http')) as typeof import('node:http');
  return new Promise((resolve, reject) => {
    const req = mod.request(url, { method: 'GET', headers: HEADERS, agent: false, lookup: pinned, signal }, resolve);
    req.on('socket', (s) => s.setNoDelay(true));
    req.on('error', reject);
    req.end();
  });
}

/** Reads at most `cap` bytes of the body (decompressed when it came compressed). */
async function readCapped(res: http.IncomingMessage, cap: number): Promise<{ body: Buffer; truncated: boolean }> {
  const encoding = String(res.headers['content-encoding'] ?? 'identity').trim().toLowerCase();
  const unzip = require('node:zlib') as typeof zlib;
  const decoders: Record<string, () => zlib.Gunzip | zlib.Inflate | zlib.BrotliDecompress> = {
    gzip: unzip.createGunzip, 'x-gzip': unzip.createGunzip, deflate: unzip.createInflate, br: unzip.createBrotliDecompress,
  };
  if (encoding !== 'identity' && !decoders[encoding]) {
    res.destroy();
    throw new ToolError('NOT_SUPPORTED', `the page came with Content-Encoding ${encoding}, which this agent cannot decode`);
  }
  const decoder = decoders[encoding]?.();
  const source: Readable = decoder ? res.pipe(decoder) : res;
  if (decoder) res.on('error', (e) => decoder.destroy(e));
  const chunks: Buffer[] = [];
  let total = 0;
  let truncated = false;
  try {
    for await (const chunk of source as AsyncIterable<Buffer>) {
      if (total + chunk.length > cap) {
        chunks.push(chunk.subarray(0, cap - total));
        truncated = true;
        break;
      }
      chunks.push(chunk);
      total += chunk.length;
    }
  } finally {
    res.destroy();
  }
  return { body: Buffer.concat(chunks), truncated };
}

/** Decodes a body with the charset of its Content-Type (or an HTML `<meta charset>`), UTF-8 otherwise. */
function decodeBody(body: Buffer, contentType: string): string {
  const declared = /charset\s*=\s*"?([\w.:-]+)/i.exec(contentType)?.[1]
    ?? /<meta[^>]{0,200}charset\s*=\s*["']?([\w.:-]+)/i.exec(body.subarray(0, 2048).toString('latin1'))?.[1];
  try {
    return new TextDecoder(declared ?? 'utf-8').decode(body);
  } catch {
    return new TextDecoder('utf-8').decode(body);
  }
}

/** `text` cut to at most `maxBytes` bytes of UTF-8, on a character boundary. */
function capUtf8(text: string, maxBytes: number): { text: string; cut: boolean } {
  if (Buffer.byteLength(text) <= maxBytes) return { text, cut: false };
  const cut = new TextDecoder().decode(Buffer.from(text).subarray(0, maxBytes));
  return { text: cut.replace(/\uFFFD$/, ''), cut: true };
}

const TEXTUAL = /^(text\/|application\/(json|xml|javascript|ecmascript|x-www-form-urlencoded)$|application\/[\w.+-]+\+(json|xml)$)/;

/** Builds `desktop_fetch_webpage` (left out by the pack when `urls` is empty). */
export function fetchTool(config: FetchConfig): ToolDefinition {
  const f: Fetcher = { rules: config.urls.map(parseUrlRule), ranges: config.privateRanges.map(parseCidr) };
  return defineTool({
    name: 'desktop_fetch_webpage',
    description: `Fetch a web page (HTTP GET) and return its readable text, title, content type and final URL after redirects. Only these URLs may be fetched: ${config.urls.join(', ')}. At most ${config.maxBytes} bytes are read.`,
    input: z.strictObject({
      url: z.string().min(1).max(4096).describe('An http:// or https:// URL on the allowlist'),
      maxBytes: z.number().int().min(1024).max(config.maxBytes).optional().describe(`Read at most this many bytes (default and cap ${config.maxBytes})`),
    }),
    risk: 'low', readOnly: true, idempotent: true, timeoutMs: config.timeoutMs,
    async execute(args, ctx: ToolContext): Promise<CallToolResult> {
      let url: URL;
      try {
        url = new URL(args.url);
      } catch {
        throw new ToolError('INVALID_ARGUMENTS', `"${args.url}" is not a URL; send an absolute http:// or https:// URL`, { url: args.url });
      }
      const cap = args.maxBytes ?? config.maxBytes;
      const redirects: string[] = [];
      for (let hop = 0; ; hop++) {
        const pins = await checkHop(f, url, hop);
        let res: http.IncomingMessage;
        try {
          res = await get(url, pins, ctx.signal);
        } catch (e) {
          if (ctx.signal.aborted) throw e;
          throw new ToolError('EXECUTION_FAILED', `GET ${url.href} failed: ${(e as Error).message}`, { url: url.href, hop });
        }
        const status = res.statusCode ?? 0;
        const location = res.headers.location;
        if (REDIRECTS.has(status) && location) {
          res.destroy();
          if (hop >= config.maxRedirects) {
            throw new ToolError('EXECUTION_FAILED', `more than ${config.maxRedirects} redirects, starting at ${args.url}`, { url: args.url, redirects });
          }
          try {
            url = new URL(location, url);
          } catch {
            throw new ToolError('EXECUTION_FAILED', `${url.href} redirects to "${location}", which is not a URL`, { url: url.href, location });
          }
          redirects.push(url.href);
          continue;
        }
        const contentType = String(res.headers['content-type'] ?? 'text/plain').toLowerCase();
        const mime = contentType.split(';')[0].trim();
        if (!TEXTUAL.test(mime) && mime !== 'application/xhtml+xml') {
          res.destroy();
          throw new ToolError('NOT_SUPPORTED', `${url.href} is ${mime} (HTTP ${status}); this tool returns text pages only`, { url: url.href, status, contentType });
        }
        let read: { body: Buffer; truncated: boolean };
        try {
          read = await readCapped(res, cap);
        } catch (e) {
          if (ctx.signal.aborted || e instanceof ToolError) throw e;
          throw new ToolError('EXECUTION_FAILED', `reading ${url.href} failed: ${(e as Error).message}`, { url: url.href, status });
        }
        const { body, truncated } = read;
        const decoded = decodeBody(body, contentType);
        const page = mime === 'text/html' || mime === 'application/xhtml+xml' ? htmlToText(decoded) : { title: '', text: decoded };
        const capped = capUtf8(page.text, cap);
        const meta = { url: args.url, finalUrl: url.href, status, contentType: mime, title: page.title, bytes: body.length, truncated: truncated || capped.cut, redirects };
        const head = `${url.href} (HTTP ${status}, ${mime})${page.title ? `\nTitle: ${page.title}` : ''}${meta.truncated ? `\n(cut at ${cap} bytes)` : ''}`;
        return { content: [{ type: 'text', text: `${head}\n\n${capped.text}` }], structuredContent: { ...meta, text: capped.text }, isError: false };
      }
    },
  });
}
