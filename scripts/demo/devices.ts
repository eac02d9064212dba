/**
 * The demo's devices besides the Pi: one agent per example config `configs/<device>.yaml`, its
 * config rewritten for this machine. Read from the folder, so a config added there (with its pack
 * in agent/packs/index.ts) runs in the next demo without a change here.
 *
 * Every config gets: the demo broker (logged in as its agent id with the password file that
 * `brokerLogin` names, broker-users.ts), the approval keys of the demo's gates
 * (gate-keys.ts), and state files in `.toolmesh-demo/agents/`: used tokens, and an execution log
 * (`audit:`, also for a config without one) at {@link agentAuditFile}. Packs with
 * an entry in {@link PACK_PATCHES} are pointed at what this machine has: simulated robot hardware
 * with a `videotestsrc` camera, GStreamer with a `videotestsrc` "HDMI input" streaming to
 * 127.0.0.1 and recording into the demo folder, a desktop confined to
 * `.toolmesh-demo/desktop-files`, and the dashboard editing this demo's own Node-RED. Other packs
 * run with their section as written.
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { parse as parseYaml, stringify as toYaml } from 'yaml';
import { ConfigError, validateConfig } from '@toolmesh/agent/agent/config';
import { PACKS } from '@toolmesh/agent/agent/packs';
import { AGENT_ID, agentAuditFile } from './options';

/** What a device's config is rewritten with. */
export interface DemoContext {
  root: string;
  userDir: string;
  /** `mqtt://127.0.0.1:<port>`: the tool-registry's embedded broker. */
  brokerUrl: string;
  /** The demo's Node-RED, e.g. `http://127.0.0.1:1880`. */
  nodeRedUrl: string;
  /**
   * The file holding the broker password of agent `agentId` (the config's `broker.passwordFile`,
   * with `broker.username` the agent id); undefined or absent: no login (an open broker).
   */
  brokerLogin?: (agentId: string) => string | undefined;
  /** The user the dashboard widgets' MQTT nodes log in as, for topics outside ToolMesh's (broker-users.ts). */
  dataLogin?: { username: string; passwordFile: string };
  /** A file holding the editor password of user `admin`, when adminAuth is on. */
  adminPasswordFile?: string;
  /** Public keys (SPKI PEM) the agents trust, by key id. */
  trustedKeys: Record<string, string>;
}

/** A device ready to run: its generated config, or why it is left out. */
export type DemoDevice =
  | { name: string; source: string; id: string; configFile: string; packs: string[]; notes: string[] }
  | { name: string; source: string; skipped: string };

type Section = Record<string, unknown>;
/** Rewrites one pack's section for the demo; returns lines worth printing. */
type PackPatch = (section: Section, ctx: DemoContext) => string[];

const rel = (ctx: DemoContext, p: string) => relative(ctx.root, p);

/** A folder in the demo user directory, created. */
function demoDir(ctx: DemoContext, name: string): string {
  const dir = join(ctx.userDir, name);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** A simulated HDMI input: GStreamer's test picture at 720p30, live like a capture card. */
export const SIMULATED_HDMI = 'videotestsrc is-live=true pattern=smpte ! video/x-raw,width=1280,height=720,framerate=30/1 ! videoconvert';

/** The demo's rewrites, by pack name. */
export const PACK_PATCHES: Readonly<Record<string, PackPatch>> = {
  robot(s) {
    s.backend = 'simulated';
    const camera = (s.camera ?? {}) as Section;
    camera.source = 'videotestsrc';
    delete camera.device;
    s.camera = camera;
    return ['simulated motors, face and battery; photos from a videotestsrc camera'];
  },
  gstreamer(s, ctx) {
    const inputs = Array.isArray(s.inputs) && s.inputs.length ? s.inputs as Section[] : [{ name: 'hdmi' }];
    s.inputs = inputs.map((i) => ({ name: i.name, description: `${i.description ?? i.name} (simulated: videotestsrc)`, pipeline: SIMULATED_HDMI }));
    s.allowedHosts = ['127.0.0.1'];
    const recordings = demoDir(ctx, 'recordings');
    s.recordingPaths = [recordings];
    return [`real GStreamer; inputs ${inputs.map((i) => i.name).join(', ')} are videotestsrc; streams to 127.0.0.1 only, recordings in ${rel(ctx, recordings)}/`];
  },
  desktop(s, ctx) {
    const files = demoDir(ctx, 'desktop-files');
    for (const sub of ['Documents', 'Downloads']) mkdirSync(join(files, sub), { recursive: true });
    const welcome = join(files, 'Documents', 'welcome.txt');
    if (!existsSync(welcome)) writeFileSync(welcome, 'A file for the ToolMesh demo: the desktop agent may search, create and delete folders only in here.\n');
    s.allowedPaths = [files];
    return [`file tools confined to ${rel(ctx, files)}/`];
  },
  dashboard(s, ctx) {
    s.url = ctx.nodeRedUrl;
    if (s.dashboardUrl) s.dashboardUrl = ctx.nodeRedUrl;
    s.mqtt = { ...(s.mqtt as Section | undefined), url: ctx.brokerUrl };
    delete (s.mqtt as Section).username;
    delete (s.mqtt as Section).password;
    delete (s.mqtt as Section).passwordFile;
    if (ctx.dataLogin) Object.assign(s.mqtt as Section, { username: ctx.dataLogin.username, passwordFile: ctx.dataLogin.passwordFile });
    if (ctx.adminPasswordFile) s.auth = { username: 'admin', passwordFile: ctx.adminPasswordFile };
    else delete s.auth;
    const snapshots = demoDir(ctx, 'dashboard-snapshots');
    s.configDir = snapshots;
    return [`edits its own tab in this Node-RED (${ctx.nodeRedUrl}); snapshots in ${rel(ctx, snapshots)}/`];
  },
};

/**
 * The config of device `name` for the demo, from the parsed example config `raw`.
 * @returns the config object and the lines to print, or `skipped` with the reason.
 */
export function demoConfig(name: string, raw: unknown, ctx: DemoContext): { config: Section; notes: string[] } | { skipped: string } {
  if (!raw || typeof raw !== 'object') return { skipped: 'not a YAML mapping' };
  const cfg = structuredClone(raw) as Section;
  const packs = (cfg.packs ?? {}) as Section;
  const unknown = Object.keys(packs).filter((p) => !PACKS[p]);
  if (unknown.length) return { skipped: `pack${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} not in this build (agent/packs/index.ts)` };
  const agent = (cfg.agent ?? {}) as Section;
  const id = String(agent.id ?? '');
  cfg.agent = { ...agent, name: `${agent.name ?? id} (demo)` };
  const broker = (cfg.broker ?? {}) as Section;
  const passwordFile = ctx.brokerLogin?.(id);
  cfg.broker = {
    url: ctx.brokerUrl, ...(passwordFile ? { username: id, passwordFile } : {}),
    ...(broker.root ? { root: broker.root } : {}), ...(broker.keepaliveSec ? { keepaliveSec: broker.keepaliveSec } : {}),
  };
  const agentsDir = demoDir(ctx, 'agents');
  const approvals = (cfg.approvals ?? {}) as Section;
  cfg.approvals = {
    keys: ctx.trustedKeys,
    usedTokensFile: join(agentsDir, `${id}.approvals-used.jsonl`),
    ...(approvals.skewToleranceMs !== undefined ? { skewToleranceMs: approvals.skewToleranceMs } : {}),
  };
  // every demo agent keeps an execution log, the config's settings kept where it has an audit section
  const audit: Section = { ...(cfg.audit as Section | undefined), file: agentAuditFile(ctx.userDir, id) };
  delete audit.anchorKeyFile; // a path on the device
  cfg.audit = audit;
  const notes: string[] = [];
  for (const [pack, section] of Object.entries(packs)) {
    const s = { ...(section as Section | null) };
    const patch = PACK_PATCHES[pack];
    if (patch) notes.push(...patch(s, ctx));
    packs[pack] = s;
  }
  cfg.packs = packs;
  try {
    validateConfig(cfg, `${name} (demo)`, agentsDir);
  } catch (e) {
    if (e instanceof ConfigError) return { skipped: `its demo config is invalid: ${e.problems.join('; ')}` };
    throw e;
  }
  return { config: cfg, notes };
}

/**
 * Every example device in `<root>/configs/*.yaml` except the Pi (the demo makes its own Pi
 * config; options.ts), with its demo config written to `.toolmesh-demo/agents/<name>.yaml`.
 * `skip(packs)` leaves a device out with a reason (e.g. Dashboard 2.0 is not installed).
 */
export function prepareDevices(ctx: DemoContext, skip: (packs: string[]) => string | undefined = () => undefined): DemoDevice[] {
  const dir = join(ctx.root, 'configs');
  let files: string[] = [];
  try { files = readdirSync(dir).filter((f) => /\.ya?ml$/.test(f)).sort(); } catch { /* no configs folder: only the Pi */ }
  const devices: DemoDevice[] = [];
  for (const file of files) {
    const name = file.replace(/\.ya?ml$/, '');
    const source = rel(ctx, join(dir, file));
    let raw: unknown;
    try {
      raw = parseYaml(readFileSync(join(dir, file), 'utf8'));
    } catch (e) {
      devices.push({ name, source, skipped: `not valid YAML: ${(e as Error).message}` });
      continue;
    }
    const parsed = raw as { agent?: { id?: unknown }; packs?: Record<string, unknown> } | null;
    if (parsed?.agent?.id === AGENT_ID) continue; // the Pi: the demo's own config
    const why = skip(Object.keys(parsed?.packs ?? {}));
    if (why) {
      devices.push({ name, source, skipped: why });
      continue;
    }
    const made = demoConfig(name, raw, ctx);
    if ('skipped' in made) {
      devices.push({ name, source, skipped: made.skipped });
      continue;
    }
    const id = String((made.config.agent as Section).id);
    const taken = devices.find((d) => 'id' in d && d.id === id);
    if (taken) {
      devices.push({ name, source, skipped: `agent id ${id} is ${taken.source}'s already` });
      continue;
    }
    const configFile = join(demoDir(ctx, 'agents'), `${name}.yaml`);
    writeFileSync(configFile, `# Written by the ToolMesh demo (npm start) from ${source} on every start; edits are overwritten.\n`
      + `# Run it by hand with: toolmesh-agent --config ${rel(ctx, configFile)}\n${toYaml(made.config)}`);
    devices.push({ name, source, id, configFile, packs: Object.keys(made.config.packs as Section), notes: made.notes });
  }
  return devices;
}

/** The agent ids the flows' remote-tool nodes call by name (dynamic calls name none). */
export function agentIdsCalled(flows: Array<{ type: string; agent?: unknown }>): string[] {
  return [...new Set(flows.filter((n) => n.type === 'toolmesh-remote-tool' && typeof n.agent === 'string' && n.agent).map((n) => String(n.agent)))].sort();
}
