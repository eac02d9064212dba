import { describe, expect, it } from 'vitest';
import { isOffered, parsePolicy } from './policy';
import { defaultCallerId, readConfig, type ConfigContext } from './config';
import { parseTrustedKeys } from './trusted-keys';
import { createPublicKey, generateKeyPairSync } from 'node:crypto';
import { generateApprovalKeys } from '../../protocol';
import { agentKeySnippet } from '../confirm-gate/keys';

const ctx: ConfigContext = {
  t: (key, params) => `${key} ${JSON.stringify(params ?? {})}`,
  userDir: '/data',
  addTls: (id, opts) => {
    if (id !== 'tls1') return false;
    opts.rejectUnauthorized = false;
    return true;
  },
};

describe('policy', () => {
  it('offers what an include matches and no exclude matches, whatever the line order', () => {
    const p = parsePolicy('!*/danger*\n# comment\n\npi/*\nrobot/take_?hoto');
    expect(isOffered(p, 'pi', 'echo')).toBe(true);
    expect(isOffered(p, 'pi', 'danger_wipe')).toBe(false);
    expect(isOffered(p, 'robot', 'take_photo')).toBe(true);
    expect(isOffered(p, 'robot', 'drive')).toBe(false);
    expect(isOffered(p, 'pi-2', 'echo')).toBe(false);
  });

  it('implies */* when there are only excludes, and for an empty text', () => {
    expect(isOffered(parsePolicy('!*/docker_*'), 'x', 'y')).toBe(true);
    expect(isOffered(parsePolicy('!*/docker_*'), 'x', 'docker_run')).toBe(false);
    expect(isOffered(parsePolicy(''), 'a', 'b')).toBe(true);
  });

  it('keeps * within one segment and takes regex characters literally', () => {
    expect(isOffered(parsePolicy('p*/echo'), 'pi', 'echo')).toBe(true);
    expect(isOffered(parsePolicy('*/a.b'), 'pi', 'a.b')).toBe(true);
    expect(isOffered(parsePolicy('*/a.b'), 'pi', 'axb')).toBe(false);
  });

  it('names the line of a pattern that is not agent/tool', () => {
    expect(() => parsePolicy('pi/*\npi')).toThrow(/policy line 2 "pi"/);
    expect(() => parsePolicy('a/b/c')).toThrow(/policy line 1/);
  });
});

describe('readConfig', () => {
  it('fills defaults: embedded on 127.0.0.1:1883, toolmesh/v1, derived caller id, 30 s', () => {
    const { options, error } = readConfig({ id: 'abc' }, undefined, ctx);
    expect(error).toBeUndefined();
    expect(options).toMatchObject({
      broker: { mode: 'embedded', port: 1883, host: '127.0.0.1' }, root: 'toolmesh/v1',
      callerId: defaultCallerId('/data', 'abc'), defaultTimeoutMs: 30_000,
    });
    expect(options.callerId).toMatch(/^nodered-[0-9a-f]{12}$/);
    expect(defaultCallerId('/other', 'abc')).not.toBe(options.callerId);
  });

  it('passes credentials and TLS options to an external connection', () => {
    const { options, error } = readConfig({ id: 'a', mode: 'external', broker: 'mqtts://hub:8883', tls: 'tls1' }, { username: 'u', password: 'p' }, ctx);
    expect(error).toBeUndefined();
    expect(options.broker).toEqual({ mode: 'external', connection: { url: 'mqtts://hub:8883', username: 'u', password: 'p', extra: { rejectUnauthorized: false } } });
  });

  it('reports the first bad field by name', () => {
    expect(readConfig({ id: 'a', port: '70000' }, undefined, ctx).error).toContain('"field":"port"');
    expect(readConfig({ id: 'a', mode: 'external', broker: 'http://x' }, undefined, ctx).error).toContain('"field":"broker"');
    expect(readConfig({ id: 'a', mode: 'external', tls: 'missing' }, undefined, ctx).error).toContain('"field":"tls"');
    expect(readConfig({ id: 'a', callerId: 'has space' }, undefined, ctx).error).toContain('"field":"callerId"');
    expect(readConfig({ id: 'a', root: 'a/#' }, undefined, ctx).error).toContain('"field":"root"');
    expect(readConfig({ id: 'a', timeout: '0' }, undefined, ctx).error).toContain('"field":"timeout"');
    const bad = readConfig({ id: 'a', policy: 'pi' }, undefined, ctx);
    expect(bad.error).toMatch(/^policy: policy line 1/);
    expect(isOffered(bad.options.policy, 'pi', 'echo')).toBe(false);
  });
});

describe('readConfig: authentication and TLS', () => {
  const tlsCtx: ConfigContext = {
    ...ctx,
    addTls: (id, opts) => {
      if (id === 'client-only') return true;
      if (id !== 'server') return false;
      Object.assign(opts, { key: 'KEY', cert: 'CERT', ca: 'CA', passphrase: 'pp', rejectUnauthorized: true });
      return true;
    },
  };

  it('refuses user info in the broker URL and in an MCP server URL without echoing it (protocol/redact.ts)', () => {
    const pw = 's3cr%t/ p@ss word';
    for (const broker of [`mqtt://nr:${pw}@127.0.0.1:1883`, `mqtt://nr:${encodeURIComponent(pw)}@host:1883`, 'mqtt://nr@host:1883']) {
      const { options, error } = readConfig({ id: 'a', mode: 'external', broker }, { username: 'nr', password: 'x' }, ctx);
      expect(error).toBe('tool-registry.errors.broker-userinfo {}');
      expect(options.broker).toMatchObject({ mode: 'external', connection: { url: 'mqtt://127.0.0.1:1883' } });
    }
    const { error } = readConfig({ id: 'a', mcpServers: [{ name: 'f', type: 'http', url: `http://u:${pw}@127.0.0.1:3001/mcp` }] }, undefined, ctx);
    expect(error).toBe('tool-registry.errors.mcp-userinfo {"field":"mcpServers[0].url"}');
  });

  it('refuses to expose the embedded broker beyond loopback without authentication', () => {
    expect(readConfig({ id: 'a', host: '0.0.0.0' }, undefined, ctx).error).toMatch(/^tool-registry\.errors\.exposed \{"host":"0\.0\.0\.0"\}/);
    expect(readConfig({ id: 'a', host: '192.168.1.5', requireAuth: false }, undefined, ctx).error).toContain('errors.exposed');
    expect(readConfig({ id: 'a', host: '127.0.0.2' }, undefined, ctx).error).toBeUndefined();
    const { options, error } = readConfig({ id: 'a', host: '0.0.0.0', requireAuth: true }, { users: '' }, ctx);
    expect(error).toBeUndefined();
    expect(options.broker).toEqual({ mode: 'embedded', port: 1883, host: '0.0.0.0', auth: { users: [] }, tls: undefined });
  });

  it('reads the user list: role id password a line, comments, and scrypt hashes', () => {
    const hash = '$scrypt$ln=14,r=8,p=1$c2FsdHNhbHRzYWx0$MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY';
    const users = `# role id password\n\nagent pi  two words \ncaller dash s3cret\r\nadmin ops ${hash}`;
    const { options, error } = readConfig({ id: 'a', requireAuth: 'true' }, { users }, ctx);
    expect(error).toBeUndefined();
    expect(options.broker).toMatchObject({
      auth: {
        users: [
          { username: 'pi', role: 'agent', password: 'two words' },
          { username: 'dash', role: 'caller', password: 's3cret' },
          { username: 'ops', role: 'admin', passwordHash: hash },
        ],
      },
    });
  });

  it('names the bad line of the user list without echoing a password', () => {
    const error = (users: string) => readConfig({ id: 'a', requireAuth: true }, { users }, ctx).error;
    expect(error('agent pi pw\nroot ops secret-1')).toBe('tool-registry.errors.user-role {"line":2,"role":"root"}');
    expect(error('agent a/b secret-2')).toBe('tool-registry.errors.user-id {"line":1,"id":"a/b"}');
    expect(error('agent pi')).toBe('tool-registry.errors.user-password {"line":1}');
    expect(error('agent')).toBe('tool-registry.errors.user-id {"line":1,"id":""}');
    expect(error('agent pi $scrypt$broken')).toBe('tool-registry.errors.user-hash {"line":1}');
    expect(error('agent pi secret-3\ncaller pi secret-4')).toBe('tool-registry.errors.user-duplicate {"line":2,"id":"pi"}');
  });

  it('takes the embedded broker\'s key and certificate from a tls-config node', () => {
    expect(readConfig({ id: 'a', brokerTls: 'server' }, undefined, tlsCtx).options.broker)
      .toMatchObject({ mode: 'embedded', tls: { key: 'KEY', cert: 'CERT', ca: 'CA', passphrase: 'pp' } });
    expect(readConfig({ id: 'a', brokerTls: 'client-only' }, undefined, tlsCtx).error).toContain('"field":"brokerTls"');
    expect(readConfig({ id: 'a', brokerTls: 'missing' }, undefined, tlsCtx).error).toContain('"field":"brokerTls"');
  });

  it('keeps the flow agent\'s credentials for an external broker apart from the caller\'s', () => {
    const def = { id: 'a', mode: 'external', broker: 'mqtt://hub:1883' };
    expect(readConfig(def, { username: 'c', password: 'p' }, ctx).options.broker).toMatchObject({ agentAuth: undefined });
    expect(readConfig(def, { username: 'c', password: 'p', agentPassword: 'ap' }, ctx).options.broker)
      .toMatchObject({ connection: { username: 'c', password: 'p' }, agentAuth: { username: undefined, password: 'ap' } });
  });
});

describe('readConfig: MCP servers', () => {
  const base = { id: 'n1', mode: 'embedded', port: 0 };

  it('reads stdio and http servers, with the token from the mcpTokens credential and cwd defaulting to the user directory', () => {
    const { options, error } = readConfig({
      ...base,
      mcpServers: [
        { name: 'files', type: 'stdio', command: 'node', args: ['server.js', 'demo'], env: { A: '1' }, cwd: '', risks: { list_directory: 'low' } },
        { name: 'remote', type: 'http', url: 'http://127.0.0.1:3001/mcp', risks: {} },
      ],
    }, { mcpTokens: '{"remote": "s3cret"}' }, ctx);
    expect(error).toBeUndefined();
    expect(options.mcpServers).toEqual([
      { name: 'files', risks: { list_directory: 'low' }, transport: { type: 'stdio', command: 'node', args: ['server.js', 'demo'], env: { A: '1' }, cwd: '/data' } },
      { name: 'remote', risks: {}, transport: { type: 'http', url: 'http://127.0.0.1:3001/mcp', token: 's3cret' } },
    ]);
  });

  it('names the bad field: name, duplicate, command, url, risk, tokens', () => {
    const err = (servers: unknown[], creds = {}) => readConfig({ ...base, mcpServers: servers as never }, creds, ctx).error;
    expect(err([{ name: 'a b', command: 'node' }])).toMatch(/^tool-registry\.errors\.bad-field .*"field":"mcpServers\[0\]\.name"/);
    expect(err([{ name: 'x'.repeat(61), command: 'node' }])).toMatch(/mcpServers\[0\]\.name/);
    expect(err([{ name: 'a', command: 'node' }, { name: 'a', command: 'node' }])).toMatch(/mcpServers\[1\]\.name/);
    expect(err([{ name: 'a', type: 'stdio', command: '' }])).toMatch(/mcpServers\[0\]\.command/);
    expect(err([{ name: 'a', type: 'http', url: 'ftp://x' }])).toMatch(/mcpServers\[0\]\.url/);
    expect(err([{ name: 'a', command: 'node', risks: { t: 'huge' } }])).toMatch(/mcpServers\[0\]\.risks\.t/);
    expect(err([{ name: 'a', type: 'sse', url: 'http://x' }])).toMatch(/mcpServers\[0\]\.type/);
    expect(err([], { mcpTokens: 'not json' })).toMatch(/"field":"mcpTokens"/);
    expect(err([], { mcpTokens: 'not json' })).not.toMatch(/not json/);
  });
});

describe('trusted approval keys', () => {
  const gate = generateApprovalKeys();
  const snippet = agentKeySnippet('gate-kitchen', gate.publicKeyPem);

  it('takes the snippet a gate shows for agents, or a plain map of key id to PEM', () => {
    const fromSnippet = parseTrustedKeys(snippet);
    expect(fromSnippet.problem).toBeUndefined();
    expect([...fromSnippet.keys.keys()]).toEqual(['gate-kitchen']);
    expect(fromSnippet.keys.get('gate-kitchen')!.equals(createPublicKey(gate.publicKeyPem))).toBe(true);
    const plain = parseTrustedKeys(`gate-hall: |\n${gate.publicKeyPem.split('\n').map((l) => `  ${l}`).join('\n')}`);
    expect([...plain.keys.keys()]).toEqual(['gate-hall']);
    expect(parseTrustedKeys('').keys.size).toBe(0);
  });

  it('trusts none of them when one is bad, and the registry error names it', () => {
    const bad = `${snippet}    gate-broken: not a key\n`;
    const r = parseTrustedKeys(bad);
    expect(r.keys.size).toBe(0);
    expect(r.problem).toMatch(/^key gate-broken: not a usable public key/);
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 }).publicKey.export({ type: 'spki', format: 'pem' }).toString();
    expect(parseTrustedKeys(`k: |\n${rsa.split('\n').map((l) => `  ${l}`).join('\n')}`).problem).toMatch(/Ed25519/);
    expect(parseTrustedKeys('- a list').problem).toMatch(/expected "approvals: keys:/);
    const { options, error } = readConfig({ id: 'a', trustedKeys: bad }, undefined, ctx);
    expect(error).toMatch(/^trustedKeys: key gate-broken/);
    expect(options.trustedKeys?.size).toBe(0);
    expect(readConfig({ id: 'a', trustedKeys: snippet }, undefined, ctx).options.trustedKeys?.size).toBe(1);
  });
});

describe('readConfig with a toolmesh-broker node (brokerNode)', () => {
  const shared = { broker: { mode: 'embedded' as const, port: 18830, host: '0.0.0.0', auth: { users: [{ username: 'pi', role: 'agent' as const, password: 'pi-secret' }] } } };
  const withBroker: ConfigContext = { ...ctx, brokerNode: (id) => (id === 'bk' ? shared : id === 'bad' ? { ...shared, error: 'port is "x"; expected 0–65535' } : undefined) };

  it('takes the broker from the node and ignores the inline fields, bad ones included', () => {
    const { options, error } = readConfig({ id: 'r', brokerNode: 'bk', port: 'nope', host: '10.0.0.1', requireAuth: false }, { users: 'garbage line' }, withBroker);
    expect(error).toBeUndefined();
    expect(options.broker).toBe(shared.broker);
  });

  it('names brokerNode when the node is not deployed or has a bad field', () => {
    expect(readConfig({ id: 'r', brokerNode: 'gone' }, undefined, withBroker).error)
      .toBe('tool-registry.errors.bad-field {"field":"brokerNode","value":"\\"gone\\"","expected":"the id of a deployed toolmesh-broker node"}');
    expect(readConfig({ id: 'r', brokerNode: 'bad' }, undefined, withBroker).error).toBe('brokerNode: port is "x"; expected 0–65535');
  });

  it('external mode ignores brokerNode; an empty one keeps the inline settings', () => {
    expect(readConfig({ id: 'r', mode: 'external', brokerNode: 'gone' }, undefined, withBroker).options.broker.mode).toBe('external');
    const inline = readConfig({ id: 'r', brokerNode: '', port: 1884 }, undefined, withBroker);
    expect(inline.error).toBeUndefined();
    expect(inline.options.broker).toMatchObject({ mode: 'embedded', port: 1884, host: '127.0.0.1' });
  });
});
