// Can a page on another site drive a Dashboard 2.0 on 127.0.0.1 (and so its approval buttons,
// issue 21) through Dashboard 2.0's socket.io? A real Node-RED process with
// @flowfuse/node-red-dashboard and one ui-base, and a raw engine.io/socket.io client (node:http
// for long-polling, `ws` for websockets) that sends what a browser would: a foreign Origin is
// refused, a same-origin client (no Origin on the polling handshake, as browsers send it, then the
// websocket upgrade with Origin = the page's own) is accepted. Then the same from Chromium: a
// script on another origin (another port of 127.0.0.1) and on the dashboard's own.
//
// What refuses it is Dashboard 2.0 itself (nodes/config/ui_base.js, 1.31): its default socket.io
// middleware (used unless settings.js sets `dashboard.ioMiddleware`) closes a socket whose
// handshake was a direct websocket request, and one whose handshake carried an Origin header
// (`socket.handshake.xdomain`, socket.io 4: `!!headers.origin`); the server sets no CORS headers.
import { createServer, request as httpRequest, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { openChromium, startDashboardNodeRed } from './support/dashboard-env';
import type { NodeRedProcess } from './support/node-red-process';

const FOREIGN = 'http://evil.example:8080';
const flows = [
  { id: 'ui-base-1', type: 'ui-base', name: 'UI', path: '/dashboard', includeClientData: true, acceptsClientConfig: ['ui-notification', 'ui-control'], showPathInSidebar: false, navigationStyle: 'default', titleBarStyle: 'default' },
  { id: 'ui-theme-1', type: 'ui-theme', name: 'Default', colors: { surface: '#ffffff', primary: '#0094CE', bgPage: '#eeeeee', groupBg: '#ffffff', groupOutline: '#cccccc' } },
  { id: 'tab-1', type: 'tab', label: 'Origin test' },
  { id: 'ui-page-1', type: 'ui-page', name: 'Approvals', ui: 'ui-base-1', path: '/approvals', layout: 'grid', theme: 'ui-theme-1', order: 1 },
];

let nodeRed: NodeRedProcess;
let path: string;
/** A page on another origin (another port of 127.0.0.1), as a hostile site would serve it. */
let foreign: Server;
let foreignUrl: string;

/**
 * One HTTP request of the engine.io long-polling transport: status and body text; status 0 when
 * no answer came within `ms` (a long-poll with nothing to say).
 */
function poll(method: 'GET' | 'POST', query: string, origin?: string, body?: string, ms = 10_000): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    const headers: Record<string, string> = { ...(origin ? { Origin: origin } : {}), ...(body !== undefined ? { 'Content-Type': 'text/plain;charset=UTF-8' } : {}) };
    const req = httpRequest({ host: '127.0.0.1', port: nodeRed.port, method, path: `${path}?EIO=4&transport=polling&${query}`, headers }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
    });
    const timer = setTimeout(() => {
      resolve({ status: 0, text: `(no answer within ${ms} ms)` });
      req.destroy();
    }, ms);
    req.on('close', () => clearTimeout(timer));
    req.on('error', (e) => (req.destroyed ? undefined : reject(e)));
    req.end(body);
  });
}

/**
 * Opens a socket.io connection to the default namespace over long-polling, as socket.io-client
 * does, with `origin` (or none) on every request.
 * @returns the engine.io sid and what the server sent after the CONNECT packet: `connected`
 *   (a `40{"sid":…}` CONNECT ack) or `refused` (the session closed, or no ack).
 */
async function connectPolling(origin?: string): Promise<{ sid: string; result: 'connected' | 'refused'; packets: string }> {
  const open = await poll('GET', `t=${Date.now()}`, origin);
  expect(open.status).toBe(200);
  const sid = JSON.parse(open.text.slice(open.text.indexOf('{'))).sid as string;
  const posted = await poll('POST', `sid=${sid}`, origin, '40');
  if (posted.status !== 200) return { sid, result: 'refused', packets: posted.text };
  // an accepted CONNECT is acknowledged at once; a refused one is left unanswered (no ack, and the
  // server drops the client's event packets until socket.io's connect timeout closes it, 45 s)
  const got = await poll('GET', `sid=${sid}&t=${Date.now()}`, origin, undefined, 3000);
  const connected = got.status === 200 && got.text.split('\x1e').some((p) => p.startsWith('40{"sid"'));
  return { sid, result: connected ? 'connected' : 'refused', packets: `${got.status} ${got.text}` };
}

/** A websocket to the socket.io path; resolves with what happened within `ms`: the texts received and whether it closed. */
function websocket(query: string, origin: string | undefined, send: (ws: WebSocket, text: string) => void, ms = 1500): Promise<{ received: string[]; closed: boolean }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${nodeRed.port}${path}?EIO=4&transport=websocket&${query}`, origin ? { origin } : {});
    const received: string[] = [];
    let closed = false;
    ws.on('message', (data) => {
      const text = data.toString();
      received.push(text);
      send(ws, text);
    });
    ws.on('open', () => send(ws, ''));
    ws.on('close', () => (closed = true));
    ws.on('error', (e) => (received.length ? undefined : reject(e)));
    setTimeout(() => {
      resolve({ received, closed });
      ws.terminate();
    }, ms);
  });
}

beforeAll(async () => {
  nodeRed = await startDashboardNodeRed(flows);
  const setup = await (await fetch(`${nodeRed.url}/dashboard/_setup`)).json() as { socketio: { path: string } };
  path = setup.socketio.path.replace(/\/?$/, '/');
  foreign = createServer((_req, res) => res.writeHead(200, { 'Content-Type': 'text/html' }).end('<!doctype html><title>another site</title>'));
  await new Promise<void>((resolve) => foreign.listen(0, '127.0.0.1', resolve));
  foreignUrl = `http://127.0.0.1:${(foreign.address() as AddressInfo).port}/`;
}, 90_000);
afterAll(async () => {
  await new Promise((resolve) => foreign?.close(resolve));
  await nodeRed?.stop();
});

/**
 * Runs in a Chromium page: connects to Dashboard 2.0's socket.io at `base` + `path` the two ways a
 * script can, long-polling (fetch) and a direct websocket, sending the socket.io CONNECT packet
 * (`40`) on each. `connected` means the server acknowledged it (`40{"sid":…}`).
 */
async function probe({ base, path }: { base: string; path: string }): Promise<{ polling: string; websocket: string }> {
  let polling: string;
  try {
    const q = `${base}${path}?EIO=4&transport=polling`;
    const open = await (await fetch(`${q}&t=1`)).text();
    const sid = JSON.parse(open.slice(open.indexOf('{'))).sid;
    await fetch(`${q}&sid=${sid}`, { method: 'POST', body: '40' });
    const abort = new AbortController();
    setTimeout(() => abort.abort(), 3000);
    const got = await (await fetch(`${q}&sid=${sid}&t=2`, { signal: abort.signal })).text();
    polling = got.includes('40{"sid"') ? 'connected' : `no ack: ${got}`;
  } catch (e) {
    polling = `failed: ${(e as Error).name}`;
  }
  const websocket = await new Promise<string>((resolve) => {
    // the browser's WebSocket (the name `WebSocket` in this file is the ws package's, which vitest rewrites)
    const ws = new (globalThis as unknown as { WebSocket: typeof globalThis.WebSocket }).WebSocket(`${base.replace(/^http/, 'ws')}${path}?EIO=4&transport=websocket`);
    ws.onmessage = (e) => {
      const text = String(e.data);
      if (text.startsWith('0{')) ws.send('40');
      if (text.startsWith('40{"sid"')) resolve('connected');
    };
    ws.onclose = () => resolve('closed');
    setTimeout(() => resolve('no ack'), 3000);
  });
  return { polling, websocket };
}

describe('Dashboard 2.0 socket.io and the Origin of the page', () => {
  it('accepts a same-origin client: polling handshake without Origin, then the websocket upgrade with the page\'s own Origin', async () => {
    const { sid, result, packets } = await connectPolling();
    expect(result, packets).toBe('connected');
    // the upgrade, as socket.io-client does it: probe, then switch
    const up = await websocket(`sid=${sid}`, nodeRed.url, (ws, text) => {
      if (text === '') ws.send('2probe');
      if (text === '3probe') ws.send('5');
    });
    expect(up.received).toContain('3probe');
    expect(up.closed).toBe(false);
  });

  it('refuses a polling client with a foreign Origin (what a page on another site sends)', async () => {
    const { result, packets } = await connectPolling(FOREIGN);
    expect(result, packets).toBe('refused');
  });

  it('refuses a direct websocket with a foreign Origin (no CORS check applies to websockets in browsers)', async () => {
    const r = await websocket('', FOREIGN, (ws, text) => {
      if (text.startsWith('0{')) ws.send('40');
    });
    expect(r.received.some((t) => t.startsWith('40{"sid"')), r.received.join(' | ')).toBe(false);
    expect(r.closed).toBe(true);
  });

  it('answers no CORS headers, so a foreign page cannot read the polling handshake either', async () => {
    const res = await fetch(`${nodeRed.url}${path}?EIO=4&transport=polling`, { headers: { Origin: FOREIGN } });
    expect(res.headers.get('access-control-allow-origin')).toBeNull();
    await res.text();
  });
});

describe('Dashboard 2.0 socket.io from a real browser (Chromium)', () => {
  it('a script on another site can neither read the polling handshake nor connect a websocket; the same script on the dashboard\'s own origin connects by polling', async () => {
    const browser = await openChromium('/usr/bin/chromium');
    try {
      await browser.page.goto(foreignUrl);
      const fromForeign = await browser.page.evaluate(probe, { base: nodeRed.url, path });
      // CORS keeps the handshake unreadable (no sid); the websocket handshake carries the foreign Origin
      expect(fromForeign).toEqual({ polling: 'failed: TypeError', websocket: 'closed' });

      await browser.page.goto(`${nodeRed.url}/dashboard/_setup`);
      const fromOwn = await browser.page.evaluate(probe, { base: nodeRed.url, path });
      // a direct websocket is refused on any origin (Dashboard 2.0's rule); its client polls first, then upgrades
      expect(fromOwn).toEqual({ polling: 'connected', websocket: 'closed' });
    } finally {
      await browser.close();
    }
  }, 60_000);
});
