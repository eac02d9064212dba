// The example agent configs (configs/*.yaml) and the deployment files (deploy/) stay true:
// every config passes the agent's own validator (loadConfig, the code `toolmesh-agent --check`
// runs), names an agent id that an example flow calls or that is documented, and the systemd unit
// and the Dockerfile start the real bin with the config path they document.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../agent/config';

const ROOT = join(__dirname, '..');
const CONFIGS = join(ROOT, 'configs');
const configFiles = readdirSync(CONFIGS).filter((f) => /\.ya?ml$/.test(f)).sort();
const pkg = JSON.parse(readFileSync(join(ROOT, 'packages/agent/package.json'), 'utf8')) as { name: string; bin: Record<string, string> };
/** The agent's bin name: the agent package's bin entry that runs agent/cli.ts. */
const AGENT_BIN = Object.entries(pkg.bin).find(([, path]) => path === 'dist/agent/cli.js')?.[0];
const CONFIG_PATH = '/etc/toolmesh/agent.yaml';

/** Agent ids the example flows call (remote-tool nodes with a fixed agent). */
function agentIdsInFlows(): Set<string> {
  const ids = new Set<string>();
  for (const f of readdirSync(join(ROOT, 'flows')).filter((n) => n.endsWith('.json'))) {
    for (const n of JSON.parse(readFileSync(join(ROOT, 'flows', f), 'utf8')) as Array<{ type: string; agent?: string }>) {
      if (n.type === 'toolmesh-remote-tool' && n.agent) ids.add(n.agent);
    }
  }
  return ids;
}

describe('example agent configs', () => {
  it('include the Pi', () => {
    expect(configFiles).toContain('pi.yaml');
  });

  it.each(configFiles)('%s passes the agent config validator and enables at least one pack', (file) => {
    const cfg = loadConfig(join(CONFIGS, file));
    expect(cfg.version).toBe(1);
    expect(Object.keys(cfg.packs).length, 'packs enabled').toBeGreaterThan(0);
    expect(cfg.broker.url).toMatch(/^mqtts?:\/\//);
  });

  it('together serve every agent id the example flows call, one config per id', () => {
    const ids = configFiles.map((f) => loadConfig(join(CONFIGS, f)).agent.id);
    expect(new Set(ids).size, `agent ids ${ids.join(', ')}`).toBe(ids.length);
    expect([...agentIdsInFlows()].filter((id) => !ids.includes(id)), 'agent ids called by flows/*.json without a config').toEqual([]);
  });

  it('the Pi config lists docker images and keeps its state where the systemd unit may write', () => {
    const cfg = loadConfig(join(CONFIGS, 'pi.yaml'));
    expect(cfg.agent.id).toBe('pi');
    expect((cfg.packs as { docker?: { images: unknown[] } }).docker?.images.length).toBeGreaterThan(0);
    expect(cfg.audit?.file).toMatch(/^\/var\/lib\/toolmesh\//);
    expect(cfg.approvals.usedTokensFile).toMatch(/^\/var\/lib\/toolmesh\//);
  });
});

describe('deployment files', () => {
  const unit = readFileSync(join(ROOT, 'deploy/toolmesh-agent.service'), 'utf8');
  const dockerfile = readFileSync(join(ROOT, 'deploy/Dockerfile'), 'utf8');
  /** `Key=value` lines of the unit (comments left out). */
  const directives = (key: string) => unit.split('\n').filter((l) => l.startsWith(`${key}=`)).map((l) => l.slice(key.length + 1));

  it('the agent package has the agent bin the files refer to', () => {
    expect(AGENT_BIN).toBe('toolmesh-agent');
  });

  it('the systemd unit starts the agent bin with the documented config, unprivileged and hardened', () => {
    expect(directives('ExecStart')).toEqual([`/usr/bin/env ${AGENT_BIN} --config ${CONFIG_PATH}`]);
    expect(directives('User')).toEqual(['toolmesh']);
    // restarted on every exit but a bad config (2): the agent itself never exits on broker loss
    expect(directives('Restart')).toEqual(['always']);
    expect(directives('RestartPreventExitStatus')).toEqual(['2']);
    expect(directives('NoNewPrivileges')).toEqual(['yes']);
    expect(directives('ProtectSystem')).toEqual(['strict']);
    expect(directives('PrivateTmp')).toEqual(['yes']);
    // the Pi config's audit log and used-token file must be writable under ProtectSystem=strict
    const pi = loadConfig(join(CONFIGS, 'pi.yaml'));
    const writable = directives('ReadWritePaths').flatMap((v) => v.split(/\s+/));
    for (const file of [pi.audit!.file!, pi.approvals.usedTokensFile!]) {
      expect(writable.some((dir) => file.startsWith(`${dir}/`)), `${file} under ReadWritePaths ${writable.join(' ')}`).toBe(true);
    }
  });

  it('the Dockerfile packs the agent package, installs that tarball, runs the agent bin as a non-root user with the same config path', () => {
    expect(dockerfile).toMatch(/^RUN npm ci\b/m);
    expect(dockerfile).toMatch(/^RUN npm run build$/m);
    expect(dockerfile).toMatch(/npm pack --workspace packages\/agent --pack-destination \/pkg$/m);
    // npm pack names the tarball after the package: @toolmesh/agent -> toolmesh-agent-<version>.tgz
    expect(pkg.name).toBe('@toolmesh/agent');
    expect(dockerfile).toMatch(/^RUN npm install -g .*\/tmp\/pkg\/toolmesh-agent-\*\.tgz/m);
    expect(dockerfile).not.toMatch(/git clone/);
    expect(dockerfile).toMatch(new RegExp(`^ENTRYPOINT \\["${AGENT_BIN}"\\]$`, 'm'));
    expect(dockerfile).toMatch(new RegExp(`^CMD \\["--config", "${CONFIG_PATH}"\\]$`, 'm'));
    expect(dockerfile).toMatch(/^USER node$/m);
  });
});
