/**
 * The desktop pack's config schemas (`packs.desktop.apps`, `packs.desktop.fetch`), apart from the
 * tool code: every agent validates its config with these, and only an agent with the desktop pack
 * configured loads device.ts and fetch.ts (desktop/index.ts, bench/agent-rss.mjs).
 */
import { z } from 'zod';
import { parseCidr, parseIp } from './address';

/** An app id as the model sends it. */
const APP_ID = /^[A-Za-z0-9_.-]{1,64}$/;

/** One app `desktop_open_app` may start. */
export const AppSchema = z.strictObject({
  command: z.string().min(1).describe('Program: an absolute path, or a name looked up on PATH; run without a shell'),
  args: z.array(z.string()).default([]).describe('Arguments always passed first'),
  allowedArgs: z.array(z.string()).default([]).describe('Arguments a call may add, verbatim'),
  pathArgs: z.boolean().default(false)
    .describe('A call may add paths inside allowedPaths (checked like every path, passed resolved)'),
  description: z.string().optional().describe('What the app is, for the model'),
});
export type AppConfig = z.output<typeof AppSchema>;

/** The `apps` part of the desktop config: app id → app. */
export const AppsSchema = z.record(z.string().regex(APP_ID, 'an app id of letters, digits, _ . - (1 to 64)'), AppSchema).default({});

/** One allowlist entry: a URL prefix, or a host (`*.` for any subdomain) on the default ports of http and https. */
export type UrlRule =
  | { kind: 'prefix'; text: string; protocol: string; host: string; hostname: string; path: string }
  | { kind: 'host'; text: string; hostname: string; wildcard: boolean };

/**
 * Parses an allowlist entry: `https://example.com/docs/` (that scheme, host and port, paths at
 * or under that path) or `example.com` / `*.example.com` / `192.168.1.5` (http and https on
 * their default ports).
 * @throws Error saying what an entry looks like.
 */
export function parseUrlRule(text: string): UrlRule {
  if (/^https?:\/\//i.test(text)) {
    const u = new URL(text);
    if (u.username || u.password || u.search || u.hash) throw new Error(`"${text}": a URL entry has no user, password, query or fragment`);
    return { kind: 'prefix', text, protocol: u.protocol, host: u.host, hostname: u.hostname.replace(/^\[|\]$/g, ''), path: u.pathname };
  }
  const wildcard = text.startsWith('*.');
  const bare = wildcard ? text.slice(2) : text;
  if (/[/:@?#*\s]/.test(bare.replace(/^\[.*\]$/, 'ip')) || bare === '') {
    throw new Error(`"${text}" is neither a URL starting with http:// or https:// nor a host such as example.com or *.example.com`);
  }
  const hostname = new URL(`http://${bare}/`).hostname.replace(/^\[|\]$/g, '');
  if (wildcard && parseIp(hostname)) throw new Error(`"${text}": *. goes with a domain name, not an IP address`);
  return { kind: 'host', text, hostname, wildcard };
}

/** The `fetch` part of the desktop config. */
export const FetchConfigSchema = z.strictObject({
  urls: z.array(z.string().min(1).refine((t) => { try { parseUrlRule(t); return true; } catch { return false; } },
    'a URL prefix such as https://example.com/docs/ or a host such as example.com or *.example.com'))
    .default([]).describe('What desktop_fetch_webpage may fetch; empty leaves the tool out'),
  privateRanges: z.array(z.string().refine((t) => { try { parseCidr(t); return true; } catch { return false; } },
    'an address or range such as 192.168.1.0/24, 127.0.0.1 or fd00::/8'))
    .default([]).describe('Loopback, private, link-local ... addresses that listed hosts may resolve to'),
  maxBytes: z.number().int().min(1024).max(1024 * 1024).default(256 * 1024)
    .describe('Cap on the (decompressed) body read and on the text returned, bytes'),
  maxRedirects: z.number().int().min(0).max(20).default(5),
  timeoutMs: z.number().int().min(1000).max(120_000).default(20_000).describe('Budget of one fetch, all hops, ms'),
});
export type FetchConfig = z.output<typeof FetchConfigSchema>;

