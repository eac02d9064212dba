// The demo's generated configuration (scripts/demo/): every example device's config, rewritten
// for this machine, passes the agent's validator and points at the demo's broker, folders and
// Node-RED; the demo runs an agent for every agent id the example flows call; and the confirm-gate
// keys the demo puts into Node-RED's credentials file are the ones a real Node-RED process
// decrypts and signs with (checked through the gate's own public-key endpoint). Every agent keeps an
// execution log under the demo directory and the summary's `toolmesh audit verify` lines pass on
// real logs (and fail on an edited one); Node-RED started as the demo starts it, on the settings.js
// the demo writes, reports telemetry off and no tours at /settings.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { afterAll, describe, expect, it } from 'vitest';
import { validateConfig } from '../agent/config';
import { generateApprovalKeys } from '../protocol';
import { AuditWriter, chainFiles } from '../protocol/audit';
import { agentIdsCalled, demoConfig, SIMULATED_HDMI, type DemoContext } from '../scripts/demo/devices';
import { DATA_USER, demoBrokerUsers, ensurePassword, settleBrokerAuth, usersCredential, writeCliCredentials } from '../scripts/demo/broker-users';
import { openCredentials } from '../scripts/demo/gate-keys';
import { parseUserList } from '../nodes/tool-registry/users';
import { ensureDemoKey, gateKid, gateKidsOf, settleGateKeys } from '../scripts/demo/gate-keys';
import { agentAuditFile, agentConfigYaml, AGENT_ID, DEFAULTS, patchFlow } from '../scripts/demo/options';
import { summaryLines } from '../scripts/demo/summary';
import type { AgentProcess } from '../scripts/demo/agents';
import { allExamples, flowAuditFiles, nodeRedArgs, OLD_PACKAGE, prepareUserDir, quietEditorDefines, readSettings } from '../scripts/demo/userdir';
import { freePort } from './support/mosquitto';
import { startNodeRedProcess } from './support/node-red-process';
import { until } from './support/until';

const ROOT = join(__dirname, '..');
const dirs: string[] = [];
const tempDir = () => {
  const d = mkdtempSync(join(tmpdir(), 'toolmesh-demo-test-'));
  dirs.push(d);
  return d;
};
afterAll(() => { for (const d of dirs) rmSync(d, { recursive: true, force: true }); });

const configFiles = readdirSync(join(ROOT, 'configs')).filter((f) => /\.ya?ml$/.test(f)).sort();
const rawConfigs = configFiles.map((f) => [f.replace(/\.ya?ml$/, ''), parseYaml(readFileSync(join(ROOT, 'configs', f), 'utf8'))] as const);
const devices = rawConfigs.filter(([, raw]) => raw.agent.id !== AGENT_ID);

function context(userDir: string): DemoContext {
  const key = generateApprovalKeys().publicKeyPem;
  return {
    root: ROOT, userDir, brokerUrl: 'mqtt://127.0.0.1:18830', nodeRedUrl: 'http://127.0.0.1:18800',
    trustedKeys: { 'gate-a': key, 'gate-b': key },
    brokerLogin: (id) => join(userDir, 'broker', `${id}.pass`),
    dataLogin: { username: DATA_USER, passwordFile: join(userDir, 'broker', `${DATA_USER}.pass`) },
  };
}

describe('demo agent configs', () => {
  it.each(devices)('%s: the demo config validates and uses the demo broker, keys and folders', (name, raw) => {
    const userDir = tempDir();
    const ctx = context(userDir);
    const made = demoConfig(name, raw, ctx);
    if ('skipped' in made) throw new Error(`skipped: ${made.skipped}`);
    const cfg = validateConfig(made.config, name, join(userDir, 'agents'));
    expect(cfg.agent.id).toBe(raw.agent.id);
    expect(cfg.broker.url).toBe(ctx.brokerUrl);
    expect(cfg.broker.username, 'each agent logs in as itself').toBe(raw.agent.id);
    expect(cfg.broker.passwordFile).toBe(join(userDir, 'broker', `${raw.agent.id}.pass`));
    expect(cfg.broker.password).toBeUndefined();
    expect(Object.keys(cfg.approvals.keys).sort()).toEqual(['gate-a', 'gate-b']);
    expect(cfg.approvals.usedTokensFile!.startsWith(join(userDir, 'agents'))).toBe(true);
    expect(cfg.audit?.file, 'every demo agent keeps an execution log').toBe(join(userDir, 'agents', `${raw.agent.id}-audit.jsonl`));
    expect(cfg.audit?.anchorKeyFile).toBeUndefined();
    expect(Object.keys(cfg.packs)).toEqual(Object.keys(raw.packs));

    const packs = cfg.packs as Record<string, any>;
    if (packs.robot) {
      expect(packs.robot.backend).toBe('simulated');
      expect(packs.robot.camera.source).toBe('videotestsrc');
    }
    if (packs.gstreamer) {
      expect(packs.gstreamer.inputs.length).toBeGreaterThan(0);
      for (const input of packs.gstreamer.inputs) expect(input.pipeline).toBe(SIMULATED_HDMI);
      expect(packs.gstreamer.allowedHosts).toEqual(['127.0.0.1']);
      expect(packs.gstreamer.recordingPaths).toEqual([join(userDir, 'recordings')]);
    }
    if (packs.desktop) expect(packs.desktop.allowedPaths).toEqual([join(userDir, 'desktop-files')]);
    if (packs.dashboard) {
      expect(packs.dashboard.url).toBe(ctx.nodeRedUrl);
      expect(packs.dashboard.mqtt.url).toBe(ctx.brokerUrl);
      expect(packs.dashboard.mqtt.username, 'widgets use topics outside ToolMesh\'s').toBe(DATA_USER);
      expect(packs.dashboard.mqtt.passwordFile).toBe(ctx.dataLogin!.passwordFile);
      expect(packs.dashboard.auth).toBeUndefined();
      expect(packs.dashboard.configDir).toBe(join(userDir, 'dashboard-snapshots'));
    }
  });

  it('a dashboard behind an editor login gets the admin password file', () => {
    const dashboard = devices.find(([, raw]) => raw.packs.dashboard);
    expect(dashboard, 'configs/ has a dashboard device').toBeDefined();
    const userDir = tempDir();
    const made = demoConfig(dashboard![0], dashboard![1], { ...context(userDir), adminPasswordFile: join(userDir, '.admin-password') });
    if ('skipped' in made) throw new Error(made.skipped);
    expect((made.config.packs as any).dashboard.auth).toEqual({ username: 'admin', passwordFile: join(userDir, '.admin-password') });
  });

  it('a device whose pack this build lacks is skipped with the reason', () => {
    const made = demoConfig('toaster', { version: 1, agent: { id: 'toaster' }, broker: { url: 'mqtt://x:1883' }, packs: { toaster: {} } }, context(tempDir()));
    expect(made).toEqual({ skipped: expect.stringMatching(/pack toaster not in this build/) });
  });

  it('the Pi config with approval keys and its execution log validates', () => {
    const userDir = tempDir();
    const keys = context(userDir).trustedKeys;
    const auditFile = agentAuditFile(userDir, AGENT_ID);
    expect(auditFile).toBe(join(userDir, 'agents', 'pi-audit.jsonl'));
    const cfg = validateConfig(parseYaml(agentConfigYaml({ mqttPort: 18830, approvalKeys: keys, auditFile, username: 'pi', passwordFile: join(userDir, 'broker', 'pi.pass') })), 'pi', tempDir());
    expect(cfg.broker).toEqual(expect.objectContaining({ url: 'mqtt://127.0.0.1:18830', username: 'pi', passwordFile: join(userDir, 'broker', 'pi.pass') }));
    expect(Object.keys(cfg.approvals.keys).sort()).toEqual(Object.keys(keys).sort());
    expect(Object.keys(cfg.packs)).toEqual(['system', 'diag']);
    expect(cfg.audit?.file).toBe(auditFile);
  });

  it('runs an agent for every agent id the example flows call', () => {
    const ids = [AGENT_ID, ...devices.map(([, raw]) => raw.agent.id)];
    expect(agentIdsCalled(allExamples(ROOT, 1883)).filter((id) => !ids.includes(id))).toEqual([]);
  });
});

describe('demo approvals', () => {
  it('installs every example once, with one shared registry (and the LAN example\'s own, on its broker node) and every gate', () => {
    const flows = allExamples(ROOT, 18830);
    const files = readdirSync(join(ROOT, 'flows')).filter((f) => f.endsWith('.json'));
    expect(flows.filter((n) => n.type === 'tab')).toHaveLength(files.length);
    expect(flows.filter((n) => n.type === 'toolmesh-tool-registry').map((n) => [n.id, n.port ?? n.brokerNode])).toEqual([['tm-registry', 18830], ['tm-lan-registry', 'tm-lan-broker']]);
    expect(flows.filter((n) => n.type === 'toolmesh-broker').map((n) => [n.id, n.host, n.port])).toEqual([['tm-lan-broker', '127.0.0.1', '1884']]);
    expect(gateKidsOf(flows).length).toBe(flows.filter((n) => n.type === 'toolmesh-confirm-gate').length);
  });

  it('gives key-less gates the demo key, keeps a gate\'s own key, and Node-RED signs with what the agents trust', async () => {
    const flows = patchFlow(allExamples(ROOT, 1883), 0); // embedded broker on a free port
    const gates = flows.filter((n) => n.type === 'toolmesh-confirm-gate');
    expect(gates.length, 'the examples have confirm-gates').toBeGreaterThan(1);
    const scratch = tempDir();
    const secret = 'demo-test-secret';
    const own = generateApprovalKeys();
    writeFileSync(join(scratch, 'flows.json'), JSON.stringify(flows));
    // an existing, unencrypted credentials file: one gate has its own key, another node a secret
    writeFileSync(join(scratch, 'flows_cred.json'), JSON.stringify({ [gates[0].id]: { signingKey: own.privateKeyPem }, other: { apiKey: 'k' } }));
    const key = ensureDemoKey(scratch);
    expect(ensureDemoKey(scratch).privateKeyPem, 'made once').toBe(key.privateKeyPem);

    const settled = settleGateKeys(scratch, { flowFile: 'flows.json', credentialSecret: secret }, key, ['gate-extra']);
    expect(settled.trusted['gate-extra']).toBe(key.publicKeyPem);
    expect(settled.trusted[gateKid(gates[0])]).toBe(own.publicKeyPem);
    for (const g of gates.slice(1)) expect(settled.trusted[gateKid(g)]).toBe(key.publicKeyPem);
    const credText = readFileSync(join(scratch, 'flows_cred.json'), 'utf8');
    expect(Object.keys(JSON.parse(credText)), 'encrypted as Node-RED does').toEqual(['$']);
    expect(settleGateKeys(scratch, { credentialSecret: secret }, key, []).notes, 'a second start changes nothing').toEqual([]);

    const nodeRed = await startNodeRedProcess({ flows, files: { 'flows_cred.json': credText }, settings: { credentialSecret: secret } });
    try {
      for (const g of gates) {
        const res = await fetch(`${nodeRed.url}/toolmesh/confirm-gate/${g.id}/public-key`);
        expect(res.status, `${g.id}: ${nodeRed.output().slice(-2000)}`).toBe(200);
        const body = await res.json() as { kid: string; publicKeyPem: string };
        expect(body.kid).toBe(gateKid(g));
        expect(body.publicKeyPem.trim(), `gate ${g.id} signs with the key the agents trust for ${body.kid}`).toBe(settled.trusted[body.kid].trim());
      }
    } finally {
      await nodeRed.stop();
    }
  }, 90_000);
});

describe('demo audit trail', () => {
  const summary = (auditLogs: string[]) => summaryLines({
    root: ROOT, editorUrl: 'http://127.0.0.1:1880/', adminLogin: false, mqttPort: 1883,
    agents: [{ process: { id: AGENT_ID, configFile: join(ROOT, '.toolmesh-demo/agents/pi.yaml'), child: undefined as never, online: { tools: 3, packs: 'diag' } } as AgentProcess, notes: [] }],
    skipped: [], keyFile: join(ROOT, '.toolmesh-demo/approval-signing.key'), kids: [], shellAgent: AGENT_ID, shellTool: 'diag_echo', shellArgs: '{}',
    dockerdStartedHere: false, toolmeshCli: join(ROOT, 'packages/agent/dist/agent/toolmesh.js'), auditLogs,
    brokerAuth: { dir: join(ROOT, '.toolmesh-demo/broker'), cliPasswordFile: join(ROOT, '.toolmesh-demo/broker/cli.pass'), cliJson: join(ROOT, '.toolmesh-demo/mqtt-cli.json') },
  });
  const verifyLines = (lines: string[]) => lines.filter((l) => l.includes(' audit verify ')).map((l) => l.trim());

  it('prints one ready-to-paste verify line per log, and each passes on its chain (rotated files too)', async () => {
    const userDir = tempDir();
    const piLog = agentAuditFile(userDir, AGENT_ID);
    const flowLog = join(userDir, 'toolmesh-audit', 'approvals.jsonl');
    for (const [file, count] of [[piLog, 40], [flowLog, 3]] as const) {
      const w = await AuditWriter.open({ file, rotateBytes: 1500, durable: false });
      for (let i = 0; i < count; i++) await w.append({ kind: 'tool-call', agent: AGENT_ID, tool: 'diag_echo', args: { i } });
      await w.close();
    }
    expect(chainFiles(piLog).length, 'the Pi log has rotated').toBeGreaterThan(1);
    const lines = verifyLines(summary([piLog, flowLog]));
    expect(lines).toEqual([
      `node packages/agent/dist/agent/toolmesh.js audit verify ${relative(ROOT, piLog).replace(/\.jsonl$/, '')}*.jsonl`,
      `node packages/agent/dist/agent/toolmesh.js audit verify ${relative(ROOT, flowLog).replace(/\.jsonl$/, '')}*.jsonl`,
    ]);
    const run = (line: string) => spawnSync('sh', ['-c', line], { cwd: ROOT, encoding: 'utf8' });
    const pi = run(lines[0]);
    expect(pi.status, pi.stdout + pi.stderr).toBe(0);
    expect(pi.stdout).toMatch(new RegExp(`^ok: 40 records in ${chainFiles(piLog).length} files`));
    expect(run(lines[1]).stdout).toMatch(/^ok: 3 records in 1 file/);

    // an edited record makes the printed line fail
    const text = readFileSync(flowLog, 'utf8');
    writeFileSync(flowLog, text.replace('"i":1', '"i":7'));
    const edited = run(lines[1]);
    expect(edited.status).toBe(1);
    expect(edited.stdout).toMatch(/^problem: /);
  });

  it('checks the audit-log files of the installed example flows', () => {
    const userDir = tempDir();
    prepareUserDir(ROOT, userDir, { ...DEFAULTS, mcpApprovals: 'refuse', uiHostGiven: false }, allExamples(ROOT, 18830));
    const files = flowAuditFiles(userDir, readSettings(userDir));
    expect(files).toEqual([join(userDir, 'toolmesh-audit', 'approvals.jsonl'), join(userDir, 'toolmesh-audit', 'robot.jsonl')]);
    expect(verifyLines(summary(files))).toHaveLength(2);
  });
});

describe('demo user directory of the old pack (node-red-contrib-toolmesh, unprefixed types)', () => {
  it('is moved over at start: old link and dependency gone, types prefixed with the same ids, flows_cred.json untouched', () => {
    const userDir = tempDir();
    mkdirSync(join(userDir, 'node_modules'), { recursive: true });
    symlinkSync(ROOT, join(userDir, 'node_modules', OLD_PACKAGE), 'dir');
    writeFileSync(join(userDir, 'package.json'), JSON.stringify({ name: 'toolmesh-demo', version: '0.0.0', private: true, dependencies: { [OLD_PACKAGE]: 'file:..' } }));
    // the seven types the old pack had (toolmesh-broker came with the prefix)
    const old = allExamples(ROOT, 18830).map((n) => ({ ...n, type: String(n.type).replace(/^toolmesh-(?=(llm-agent|tool-registry|remote-tool|confirm-gate|audit-log|tool-in|tool-out)$)/, '') }));
    writeFileSync(join(userDir, 'flows.json'), JSON.stringify(old, null, 4));
    const cred = JSON.stringify({ $: 'an encrypted blob keyed by node id' });
    writeFileSync(join(userDir, 'flows_cred.json'), cred);

    expect(prepareUserDir(ROOT, userDir, { ...DEFAULTS, mcpApprovals: 'refuse', uiHostGiven: false }, allExamples(ROOT, 18830))).toBe(false);
    const flows = JSON.parse(readFileSync(join(userDir, 'flows.json'), 'utf8')) as { id: string; type: string }[];
    expect(flows).toEqual(allExamples(ROOT, 18830));
    expect(flows.filter((n) => /^(llm-agent|tool-registry|remote-tool|confirm-gate|audit-log|tool-in|tool-out)$/.test(n.type))).toEqual([]);
    expect(readFileSync(join(userDir, 'flows.json.bak-toolmesh'), 'utf8')).toBe(JSON.stringify(old, null, 4));
    expect(readFileSync(join(userDir, 'flows_cred.json'), 'utf8')).toBe(cred);
    expect(existsSync(join(userDir, 'node_modules', OLD_PACKAGE))).toBe(false);
    expect(lstatSync(join(userDir, 'node_modules', '@toolmesh', 'node-red-toolmesh')).isSymbolicLink()).toBe(true);
    expect(Object.keys(JSON.parse(readFileSync(join(userDir, 'package.json'), 'utf8')).dependencies)).toEqual(['@toolmesh/node-red-toolmesh']);
    // a second start has nothing left to move
    prepareUserDir(ROOT, userDir, { ...DEFAULTS, mcpApprovals: 'refuse', uiHostGiven: false }, allExamples(ROOT, 18830));
    expect(existsSync(join(userDir, 'flows.json.bak-toolmesh.1'))).toBe(false);
  });
});

describe('demo Node-RED settings', () => {
  it('a settings.js from an earlier run gets telemetry and tours off on the command line; a choice in the file is kept', () => {
    expect(quietEditorDefines({})).toEqual(['-D', 'telemetry.enabled=false', '-D', 'telemetry.updateNotification=false', '-D', 'editorTheme.tours=false']);
    expect(quietEditorDefines({ telemetry: { enabled: true }, editorTheme: { tours: true } })).toEqual(['-D', 'telemetry.updateNotification=false']);
  });

  it('Node-RED started as the demo starts it reports telemetry off and no tours at /settings', async () => {
    const userDir = tempDir();
    prepareUserDir(ROOT, userDir, { ...DEFAULTS, mcpApprovals: 'refuse', uiHostGiven: false }, []);
    const settings = readSettings(userDir);
    expect(quietEditorDefines(settings), 'the written settings.js decides these itself').toEqual([]);
    const port = await freePort();
    const args = nodeRedArgs({ redJs: join(ROOT, 'node_modules/node-red/red.js'), userDir, port, host: '127.0.0.1', settings });
    const child = spawn(process.execPath, args, { cwd: userDir, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<void>((r) => child.once('exit', () => r()));
    try {
      const body = await until(async () => {
        if (child.exitCode !== null) throw new Error(`Node-RED exited (${child.exitCode}): ${out}`);
        try {
          const res = await fetch(`http://127.0.0.1:${port}/settings`);
          return res.ok ? await res.json() as { telemetryEnabled?: boolean; editorTheme?: { tours?: boolean } } : undefined;
        } catch {
          return undefined;
        }
      }, 'Node-RED\'s /settings', 60_000);
      expect(body.telemetryEnabled, 'false: the editor asks no consent question').toBe(false);
      expect(body.editorTheme?.tours, 'false: no welcome tour').toBe(false);
    } finally {
      child.kill('SIGTERM');
      await exited;
    }
  }, 90_000);
});

describe('demo broker logins', () => {
  it('makes one password file per user (0600 in a 0700 folder) and reuses it on the next start', () => {
    const userDir = tempDir();
    const users = demoBrokerUsers(userDir, ['pi', 'robot', 'pi']);
    expect(users.map((u) => [u.role, u.username])).toEqual([
      ['agent', 'pi'], ['agent', 'robot'], ['caller', 'cli'], ['caller', 'mcp-demo'], ['caller', 'mcp-vscode'], ['caller', 'mcp-claude'], ['admin', DATA_USER],
    ]);
    expect(new Set(users.map((u) => u.password)).size, 'all different').toBe(users.length);
    for (const u of users) {
      expect(u.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
      expect(statSync(u.passwordFile).mode & 0o777).toBe(0o600);
      expect(readFileSync(u.passwordFile, 'utf8').trim()).toBe(u.password);
    }
    expect(statSync(join(userDir, 'broker')).mode & 0o777).toBe(0o700);
    expect(demoBrokerUsers(userDir, ['pi', 'robot']).map((u) => u.password), 'the next start reads them').toEqual(users.map((u) => u.password));
    expect(() => ensurePassword(userDir, '../etc')).toThrow(/must be an agent or caller id/);

    const file = writeCliCredentials(userDir, 'mqtt://127.0.0.1:18830', users.find((u) => u.username === 'cli')!);
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ url: 'mqtt://127.0.0.1:18830', username: 'cli', password: users[2].password });
  });

  it('the users credential parses as the tool-registry reads it and keeps lines the user added', () => {
    const users = demoBrokerUsers(tempDir(), ['pi']);
    const own = '# my own\ncaller  kitchen  my-long-secret\nagent pi an-old-password';
    const text = usersCredential(own, users);
    const parsed = parseUserList(text);
    expect(parsed.problem).toBeUndefined();
    expect(parsed.users.map((u) => [u.role, u.username, u.password])).toEqual([
      ['caller', 'kitchen', 'my-long-secret'], ...users.map((u) => [u.role, u.username, u.password]),
    ]);
    expect(usersCredential(text, users), 'the next start writes the same text').toBe(text);
  });

  it('turns authentication on in flows of an earlier run and gives the registry and core MQTT nodes their logins', () => {
    const userDir = tempDir();
    // flows as an earlier demo release installed them: no requireAuth
    const flows = allExamples(ROOT, 18830).map((n) => {
      const { requireAuth, ...rest } = n;
      return rest as typeof n;
    });
    writeFileSync(join(userDir, 'flows.json'), JSON.stringify(flows));
    const settings = { flowFile: 'flows.json', credentialSecret: 'demo-test-secret' };
    const users = demoBrokerUsers(userDir, ['pi', 'robot']);
    const settled = settleBrokerAuth(userDir, settings, 18830, users);
    expect(settled.registries).toEqual(['tm-registry']);
    expect(settled.notes).toEqual([expect.stringMatching(/tm-registry: broker authentication turned on/)]);
    const after = JSON.parse(readFileSync(join(userDir, 'flows.json'), 'utf8')) as Array<{ id: string; type: string; requireAuth?: unknown }>;
    expect(after.find((n) => n.id === 'tm-registry')!.requireAuth).toBe(true);
    const mqttBrokers = after.filter((n) => n.type === 'mqtt-broker').map((n) => n.id);
    expect(mqttBrokers.length, 'the motion example has a core mqtt-broker').toBeGreaterThan(0);
    expect(settled.mqttBrokers.sort()).toEqual(mqttBrokers.sort());

    const store = openCredentials(userDir, settings);
    if ('problem' in store) throw new Error(store.problem);
    expect(readFileSync(store.file, 'utf8')).not.toContain(users[0].password); // encrypted
    const registryUsers = parseUserList(store.creds['tm-registry'].users as string).users;
    expect(registryUsers.map((u) => u.username)).toEqual(users.map((u) => u.username));
    const data = users.find((u) => u.username === DATA_USER)!;
    for (const id of mqttBrokers) expect(store.creds[id]).toEqual({ user: DATA_USER, password: data.password });

    // the next start changes nothing; a core mqtt-broker with a login of its own keeps it
    store.creds[mqttBrokers[0]] = { user: 'me', password: 'mine' };
    store.save();
    const before = readFileSync(store.file, 'utf8');
    const again = settleBrokerAuth(userDir, settings, 18830, users);
    expect(again.notes).toEqual([]);
    expect(again.mqttBrokers).not.toContain(mqttBrokers[0]);
    expect(readFileSync(store.file, 'utf8')).toBe(before);

    // without a credentialSecret the demo cannot give the broker its users: it says so
    expect(() => settleBrokerAuth(userDir, { flowFile: 'flows.json' }, 18830, users)).toThrow(/no credentialSecret/);
  });

  it('new installs get requireAuth on the shared registry', () => {
    expect(allExamples(ROOT, 18830).filter((n) => n.type === 'toolmesh-tool-registry' && !n.brokerNode).map((n) => n.requireAuth)).toEqual([true]);
  });
});
