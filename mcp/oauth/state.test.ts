// The OAuth state file under the conditions it is built for: several processes changing it at
// once (the bridge, `toolmesh mcp pair`, `toolmesh mcp clients --revoke`), a lock left by a killed
// process, a file that is not what it should be.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { REPO_ROOT } from '../../test/support/node-red-process';
import { OAuthStateFile } from './state';

const dir = mkdtempSync(join(tmpdir(), 'toolmesh-oauth-state-'));

/** A child process that adds `n` clients named `<tag>-<i>`, one update each, through the built module. */
function writer(file: string, tag: string, n: number): Promise<number | null> {
  const code = `const { OAuthStateFile } = require(${JSON.stringify(join(REPO_ROOT, 'dist/mcp/oauth/state.js'))});
const s = new OAuthStateFile(${JSON.stringify(file)});
for (let i = 0; i < ${n}; i++) s.update((st) => { st.clients['${tag}-' + i] = { info: { client_id: '${tag}-' + i, redirect_uris: [] }, registeredAt: Date.now() }; });`;
  return new Promise((resolve) => spawn(process.execPath, ['-e', code], { stdio: 'inherit' }).on('close', resolve));
}

describe('OAuthStateFile', () => {
  it('loses no change when four processes and this one update it at once', async () => {
    const file = join(dir, 'race', 'state.json');
    const s = new OAuthStateFile(file);
    const seen: number[] = [];
    s.watch((st) => seen.push(Object.keys(st.clients).length));
    const children = ['a', 'b', 'c', 'd'].map((t) => writer(file, t, 40));
    for (let i = 0; i < 40; i++) {
      s.update((st) => { st.clients[`main-${i}`] = { info: {}, registeredAt: Date.now() }; });
      await new Promise((r) => setImmediate(r));
    }
    expect(await Promise.all(children)).toEqual([0, 0, 0, 0]);
    const final = new OAuthStateFile(file).read();
    expect(Object.keys(final.clients)).toHaveLength(200);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    // no temp file or lock left behind
    expect(readdirSync(join(dir, 'race'))).toEqual(['state.json']);
    await new Promise((r) => setTimeout(r, 600));
    expect(seen.length).toBeGreaterThan(0);
    expect(seen[seen.length - 1]).toBe(200);
    s.unwatch();
  });

  it('takes over a lock left by a killed process once it is stale (10 s), and waits for a live one', () => {
    const file = join(dir, 'stale', 'state.json');
    const s = new OAuthStateFile(file);
    s.update(() => {});
    writeFileSync(`${file}.lock`, '');
    const old = (Date.now() - 11_000) / 1000;
    utimesSync(`${file}.lock`, old, old);
    s.update((st) => { st.pairing.failures = 3; });
    expect(s.read().pairing.failures).toBe(3);
    expect(existsSync(`${file}.lock`)).toBe(false);
  });

  it('names the file when it is not JSON or not a state, and never replaces it', () => {
    const file = join(dir, 'bad.json');
    writeFileSync(file, '{"version":1,"clients":');
    const s = new OAuthStateFile(file);
    expect(() => s.read()).toThrow(`OAuth state file ${file} is not JSON`);
    expect(() => s.update(() => {})).toThrow(/is not JSON/);
    writeFileSync(file, JSON.stringify({ version: 1, clients: {}, tokens: { x: { kind: 'other' } }, pairing: { codes: [], failures: 0 } }));
    expect(() => new OAuthStateFile(file).read()).toThrow(new RegExp(`OAuth state file ${file}: tokens\\.x\\.kind`));
  });
});
