/**
 * Test certificates made with Debian's `openssl`: a CA, and a server certificate it signed for
 * `127.0.0.1` and `localhost` (subjectAltName), both EC P-256 and valid for two days.
 * In CI (`CI=true`) a missing openssl is an error; elsewhere {@link makeTestCerts} returns null.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { systemBinary } from './mosquitto';

/** PEM texts, and the files that hold them (in `dir`). */
export interface TestCerts {
  dir: string;
  ca: string;
  cert: string;
  key: string;
  files: { ca: string; cert: string; key: string };
  /** Issues another server certificate (same names) from the same CA. */
  issue(name: string): { cert: string; key: string };
  /** Removes `dir`. */
  remove(): void;
}

/** Makes a CA and a server certificate in a fresh temp directory; null without openssl (outside CI). */
export function makeTestCerts(): TestCerts | null {
  const openssl = systemBinary('/usr/bin/openssl', 'openssl');
  if (!openssl) return null;
  const dir = mkdtempSync(join(tmpdir(), 'toolmesh-certs-'));
  const f = (name: string) => join(dir, name);
  const run = (...args: string[]) => execFileSync(openssl, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', f('ca.key'), '-out', f('ca.crt'), '-days', '2', '-subj', '/CN=ToolMesh test CA',
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign');
  writeFileSync(f('server.ext'), [
    'subjectAltName=IP:127.0.0.1,DNS:localhost',
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth',
  ].join('\n'));
  const issue = (name: string) => {
    run('req', ...ec, '-keyout', f(`${name}.key`), '-out', f(`${name}.csr`), '-subj', '/CN=localhost');
    run('x509', '-req', '-in', f(`${name}.csr`), '-CA', f('ca.crt'), '-CAkey', f('ca.key'), '-CAcreateserial',
      '-out', f(`${name}.crt`), '-days', '2', '-extfile', f('server.ext'));
    return { cert: readFileSync(f(`${name}.crt`), 'utf8'), key: readFileSync(f(`${name}.key`), 'utf8') };
  };
  issue('server');
  const files = { ca: f('ca.crt'), cert: f('server.crt'), key: f('server.key') };
  return {
    dir, files, issue,
    ca: readFileSync(files.ca, 'utf8'),
    cert: readFileSync(files.cert, 'utf8'),
    key: readFileSync(files.key, 'utf8'),
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}
