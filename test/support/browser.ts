/**
 * A Chromium page for editor tests (Debian's chromium driven by playwright-core) that records
 * what a test must fail on: page errors and console errors (`errors`), and requests to any host
 * but 127.0.0.1 (`offHost`; tests talk to 127.0.0.1 only). Each page gets a fresh profile
 * directory, removed by `close()`.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext, type Page } from 'playwright-core';

/** Flags for headless Chromium on a machine without network or GPU. */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--no-first-run',
  '--disable-quic', '--disable-component-update', '--disable-sync'];

/** A page and what it recorded. */
export interface WatchedPage {
  page: Page;
  context: BrowserContext;
  /**
   * `[phase] page error: … (first stack frames)` and `[phase] console error: … (url)` lines, in
   * order, where phase is what the test last put in `phase`, so a late error names what was on
   * screen.
   */
  errors: string[];
  /** What the test is doing now (`tool-in dialog`); set by the test, prefixed to each error. */
  phase: string;
  /** URLs of requests to hosts other than 127.0.0.1. */
  offHost: string[];
  close(): Promise<void>;
}

/**
 * Opens a page in a fresh profile.
 * @param executablePath the chromium binary (`/usr/bin/chromium`).
 * @param locale the browser's language (`en-US`, `de-DE`: Node-RED's editor follows it); default the system's.
 */
export async function openWatchedPage(executablePath: string, locale?: string): Promise<WatchedPage> {
  const profile = mkdtempSync(join(tmpdir(), 'toolmesh-chromium-'));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath, args: CHROMIUM_ARGS, headless: true, locale, viewport: { width: 1600, height: 1000 },
  });
  const page = context.pages()[0] ?? await context.newPage();
  page.setDefaultTimeout(20_000);
  const errors: string[] = [];
  const offHost: string[] = [];
  const watched: WatchedPage = {
    page, context, errors, offHost, phase: 'page load',
    close: async () => {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
  const frames = (stack: string | undefined) => (stack ?? '').split('\n').filter((l) => /^\s+at /.test(l)).slice(0, 4).map((l) => l.trim()).join(' < ');
  page.on('pageerror', (e) => errors.push(`[${watched.phase}] page error: ${e.message}${frames(e.stack) ? ` (${frames(e.stack)})` : ''}`));
  page.on('request', (r) => { if (/^(https?|wss?):/.test(r.url()) && new URL(r.url()).hostname !== '127.0.0.1') offHost.push(r.url()); });
  page.on('console', (m) => {
    if (m.type() === 'error') errors.push(`[${watched.phase}] console error: ${m.text()} (${m.location().url})`);
  });
  return watched;
}
