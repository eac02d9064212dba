// The chat page (flows/chat-dashboard.json) as shipped, in a Node-RED that has no LLM endpoint: the
// llm-agent's base URL and API key are empty and Node-RED's environment has none of
// TOOLMESH_LLM_BASE_URL / TOOLMESH_LLM_API_KEY / OPENAI_BASE_URL / OPENAI_API_KEY. The first
// question must end in a notice on the page that says so and names the setting, on a phone
// (390 × 844, headless Chromium). A separate file from chat-dashboard.test.ts because that one's
// Node-RED has the scripted model configured.
//
// Screenshots go to <tmp>/toolmesh-chat-dashboard-shots/ (or $TOOLMESH_SCREENSHOT_DIR), as in
// chat-dashboard.test.ts; the test prints the directory.
import { mkdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateApprovalKeys } from '../protocol';
import { patchFlow } from '../scripts/demo/options';
import { CHROMIUM_ARGS } from './support/browser';
import { freePort, systemBinary } from './support/mosquitto';
import { REPO_ROOT, startNodeRedProcess, type NodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const CHROMIUM = systemBinary('/usr/bin/chromium', 'chromium');
const SHOTS = process.env.TOOLMESH_SCREENSHOT_DIR ?? join(tmpdir(), 'toolmesh-chat-dashboard-shots');
const flow = JSON.parse(readFileSync(join(REPO_ROOT, 'flows/chat-dashboard.json'), 'utf8')) as Array<Record<string, any>>;
const gateDef = flow.find((n) => n.type === 'toolmesh-confirm-gate')!;
const agentDef = flow.find((n) => n.type === 'toolmesh-llm-agent')!;
/** Where the llm-agent would find an endpoint besides its own fields (nodes/llm-agent/settings.ts). */
const ENDPOINT_ENV = ['TOOLMESH_LLM_BASE_URL', 'OPENAI_BASE_URL', 'TOOLMESH_LLM_API_KEY', 'OPENAI_API_KEY'];

let nodeRed: NodeRedProcess;
let browser: Browser;

beforeAll(async () => {
  mkdirSync(SHOTS, { recursive: true });
  console.log(`chat-dashboard screenshots: ${SHOTS}`);
  // the Node-RED child inherits this worker's environment (one process per test file)
  for (const k of ENDPOINT_ENV) delete process.env[k];
  nodeRed = await startNodeRedProcess({
    modules: ['@flowfuse/node-red-dashboard'],
    flows: patchFlow(flow as never, await freePort()),
    files: { 'flows_cred.json': JSON.stringify({ [gateDef.id]: { signingKey: generateApprovalKeys().privateKeyPem } }) },
  });
  browser = await chromium.launch({ executablePath: CHROMIUM!, args: CHROMIUM_ARGS, headless: true });
}, 120_000);

afterAll(async () => {
  await browser?.close();
  await nodeRed?.stop();
});

describe('chat page without an LLM endpoint', () => {
  it('the flow as shipped has no endpoint of its own', () => {
    expect(agentDef.baseUrl).toBe('');
    expect(agentDef.apiKey ?? '').toBe('');
  });

  it('says so on the first question and names the setting, on a phone (390 × 844)', async () => {
    await until(async () => (await fetch(`${nodeRed.url}/dashboard/chat`)).ok, 'the dashboard');
    const context = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1 });
    try {
      const page = await context.newPage();
      page.setDefaultTimeout(20_000);
      const errors: string[] = [];
      page.on('pageerror', (e) => errors.push(e.message));
      page.on('request', (r) => { if (!/^(data:|https?:\/\/127\.0\.0\.1[:/]|ws:\/\/127\.0\.0\.1[:/])/.test(r.url())) errors.push(`request off 127.0.0.1: ${r.url()}`); });
      await page.goto(`${nodeRed.url}/dashboard/chat`);
      await page.getByText('Ask a question').waitFor();
      await expect(page.locator('.tmc-notice').count(), 'no notice before the first question').resolves.toBe(0);

      const input = page.getByLabel('Your question');
      await input.fill('which containers run?');
      await input.press('Enter');

      const notice = page.locator('.tmc-notice');
      await notice.waitFor();
      await expect(notice.getAttribute('role')).resolves.toBe('alert');
      const text = (await notice.textContent()) ?? '';
      expect(text).toMatch(/^No LLM endpoint is configured, so nobody can answer: set a base URL/);
      expect(text).not.toMatch(/no LLM endpoint configured/); // said once
      // it names where to set it: the node's base URL (or key), or Node-RED's environment
      expect(text).toContain('set a base URL or an API key in the node');
      expect(text).toContain('TOOLMESH_LLM_BASE_URL');
      expect(text).toContain('TOOLMESH_LLM_API_KEY');
      // the failed run also shows in the conversation, and no answer pretends otherwise
      await expect(page.locator('.tmc-error .tmc-text').last().textContent()).resolves.toMatch(/^no LLM endpoint configured: /);
      await expect(page.locator('.tmc-answer').count()).resolves.toBe(0);
      await expect(page.locator('.tmc-card').count()).resolves.toBe(0);
      // the notice fits the phone's width
      const box = await notice.boundingBox();
      expect(box!.x).toBeGreaterThanOrEqual(0);
      expect(box!.x + box!.width).toBeLessThanOrEqual(390);
      await page.screenshot({ path: join(SHOTS, 'chat-phone-no-endpoint.png'), fullPage: true });
      // "New conversation" needs no endpoint: the page empties and no new error comes back
      await page.getByRole('button', { name: 'New conversation' }).click();
      await page.getByText('Ask a question').waitFor();
      await new Promise((r) => setTimeout(r, 500));
      await expect(page.locator('.tmc-error').count()).resolves.toBe(0);

      expect(errors).toEqual([]);
    } finally {
      await context.close();
    }
  }, 60_000);
});
