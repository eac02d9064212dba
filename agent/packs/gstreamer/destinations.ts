/**
 * Where a pipeline may send or read data. A pipeline written by a model is untrusted, so every
 * property that can name a network peer, a file or a device is either checked by a rule here or
 * refused:
 * - network sinks: the host (or every host of a `clients` list, or the host of a URI and its
 *   `localaddress` parameter) must be one of `allowedHosts`; `localhost` counts as 127.0.0.1 and
 *   an empty host (listen on every interface) as 0.0.0.0;
 * - filesink / filesrc `location`: an absolute path inside one of `recordingPaths` after `..` and
 *   symbolic links of its directory are resolved; the file itself may not be a symbolic link;
 * - v4l2src `device`: `/dev/video<N>`;
 * - any other property whose name says it holds a file, path, address, URI, device, socket,
 *   element factory or option string (e.g. x264enc `option-string`, `multipass-cache-file`) is refused.
 */
import { lstat, realpath } from 'node:fs/promises';
import { basename, dirname, isAbsolute, join, relative, resolve } from 'node:path';

/** How one property's value is checked. */
export type DestinationRule =
  | { kind: 'host' }
  | { kind: 'clients' }
  | { kind: 'url'; schemes: string[]; hostParams?: string[] }
  | { kind: 'recording-path' }
  | { kind: 'video-device' };

/** The allowed destinations. */
export interface DestinationPolicy {
  allowedHosts: readonly string[];
  recordingPaths: readonly string[];
}

/** A refused value: the issue code and a message for the model. */
export interface DestinationProblem { code: 'HOST_NOT_ALLOWED' | 'PATH_NOT_ALLOWED' | 'DEVICE_NOT_ALLOWED' | 'INVALID_VALUE'; message: string }

const HOST: DestinationRule = { kind: 'host' };
const CLIENTS: DestinationRule = { kind: 'clients' };
const RECORDING: DestinationRule = { kind: 'recording-path' };
const RTMP: DestinationRule = { kind: 'url', schemes: ['rtmp', 'rtmps'] };

/** Rules per element and property. An element listed here is a checked source or sink. */
export const DESTINATION_RULES: Readonly<Record<string, Readonly<Record<string, DestinationRule>>>> = {
  udpsink: { 'host': HOST, 'clients': CLIENTS, 'bind-address': HOST },
  multiudpsink: { 'clients': CLIENTS, 'bind-address': HOST },
  srtsink: { uri: { kind: 'url', schemes: ['srt'], hostParams: ['localaddress'] }, localaddress: HOST },
  tcpserversink: { host: HOST },
  tcpclientsink: { host: HOST },
  rtmpsink: { location: RTMP },
  rtmp2sink: { location: RTMP, host: HOST },
  filesink: { location: RECORDING },
  filesrc: { location: RECORDING },
  v4l2src: { device: { kind: 'video-device' } },
};

const RISKY_SEGMENTS = new Set(['fd', 'socket', 'clients', 'factory', 'properties', 'template', 'option', 'device', 'dir', 'directory', 'uri', 'url', 'host', 'path', 'location']);

/**
 * True when a property name suggests a file, path, address, URI, device, socket, element factory
 * or option string: a `-`/`_`-separated part is one of those words, or ends in address, file
 * (not profile), filename, location, path, uri, url, host or device (`localaddress`, `logfile`).
 */
export function isRiskyProperty(name: string): boolean {
  return name.toLowerCase().split(/[-_]/).some((s) => RISKY_SEGMENTS.has(s)
    || /(address|filename|location|path|uri|url|host|device)$/.test(s)
    || (s.endsWith('file') && !s.endsWith('profile')));
}

/** Host in a comparable form: lower case, no IPv6 brackets, localhost as 127.0.0.1, empty as 0.0.0.0. */
export function normalizeHost(host: string): string {
  const h = host.trim().toLowerCase().replace(/^\[(.*)\]$/, '$1');
  if (h === 'localhost') return '127.0.0.1';
  return h === '' ? '0.0.0.0' : h;
}

function hostProblem(host: string, policy: DestinationPolicy, what: string): DestinationProblem | undefined {
  const allowed = policy.allowedHosts.map(normalizeHost);
  if (allowed.includes(normalizeHost(host))) return undefined;
  const shown = host === '' ? '(every interface)' : host;
  return { code: 'HOST_NOT_ALLOWED', message: `${what} ${shown} is not an allowed host on this board; allowed hosts: ${policy.allowedHosts.join(', ')}` };
}

/** `scheme://host[:port][/path][?query]` with the host possibly empty or in brackets; null when it does not parse. */
function parseUrl(value: string): { scheme: string; host: string; query: URLSearchParams } | null {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(\[[^\]]*\]|[^/:?#@]*)(?::(\d+))?([/?#][^#]*)?$/i.exec(value);
  if (!m) return null;
  const rest = m[4] ?? '';
  const q = rest.indexOf('?');
  return { scheme: m[1].toLowerCase(), host: m[2], query: new URLSearchParams(q >= 0 ? rest.slice(q + 1) : '') };
}

/** Absolute, `..`-free form of `p` with its directory's symbolic links resolved; null when that directory does not exist. */
async function resolvedFile(p: string): Promise<string | null> {
  const abs = resolve(p);
  try {
    return join(await realpath(dirname(abs)), basename(abs));
  } catch {
    return null;
  }
}

async function pathProblem(value: string, policy: DestinationPolicy): Promise<DestinationProblem | undefined> {
  const roots = policy.recordingPaths;
  if (roots.length === 0) return { code: 'PATH_NOT_ALLOWED', message: 'this board has no recording paths configured, so no file may be written or read' };
  const where = `recording paths: ${roots.join(', ')}`;
  if (!isAbsolute(value)) return { code: 'PATH_NOT_ALLOWED', message: `location ${value} must be an absolute path inside the ${where}` };
  const file = await resolvedFile(value);
  if (file === null) return { code: 'PATH_NOT_ALLOWED', message: `the directory of ${value} does not exist; use one of the ${where}` };
  const link = await lstat(file).then((s) => s.isSymbolicLink(), () => false);
  if (link) return { code: 'PATH_NOT_ALLOWED', message: `${value} is a symbolic link; write a plain file inside the ${where}` };
  for (const root of roots) {
    const real = await realpath(root).catch(() => null);
    if (real === null) continue;
    const rel = relative(real, file);
    if (rel !== '' && !rel.startsWith('..') && !isAbsolute(rel)) return undefined;
  }
  return { code: 'PATH_NOT_ALLOWED', message: `${value} is outside the ${where}` };
}

/**
 * Checks one value against its rule.
 * @returns the problem, or undefined when the value is allowed.
 */
export async function checkDestination(rule: DestinationRule, property: string, value: string, policy: DestinationPolicy): Promise<DestinationProblem | undefined> {
  switch (rule.kind) {
    case 'host':
      return hostProblem(value, policy, `${property}`);
    case 'clients': {
      for (const entry of value.split(',').map((s) => s.trim()).filter(Boolean)) {
        const m = /^(\[[^\]]*\]|[^:]*):(\d+)$/.exec(entry);
        if (!m) return { code: 'INVALID_VALUE', message: `${property}: "${entry}" is not host:port` };
        const p = hostProblem(m[1], policy, `${property} entry`);
        if (p) return p;
      }
      return undefined;
    }
    case 'url': {
      const url = /\s/.test(value) ? null : parseUrl(value);
      if (!url || !rule.schemes.includes(url.scheme)) {
        return { code: 'INVALID_VALUE', message: `${property} must be a ${rule.schemes.map((s) => `${s}://host:port`).join(' or ')} URI without user info or spaces` };
      }
      const bad = hostProblem(url.host, policy, `${property} host`);
      if (bad) return bad;
      for (const param of rule.hostParams ?? []) {
        const v = url.query.get(param);
        const p = v === null ? undefined : hostProblem(v, policy, `${property} ${param}`);
        if (p) return p;
      }
      return undefined;
    }
    case 'recording-path':
      return pathProblem(value, policy);
    case 'video-device':
      return /^\/dev\/video\d+$/.test(value) ? undefined
        : { code: 'DEVICE_NOT_ALLOWED', message: `${property} ${value} is not a video device; use /dev/video<N> (gst_list_video_devices lists them)` };
  }
}
