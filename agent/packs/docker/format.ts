/**
 * Pure helpers of the docker pack: compact shapes of Docker Engine API answers (so a model reads
 * a few lines, not the raw inspect document), log stream demultiplexing, and image references.
 * Field names follow the Engine API (docs.docker.com/reference/api/engine, v1.41 as served by
 * Debian's docker.io 20.10).
 */
import type Dockerode from 'dockerode';

/** Length of the short container/image id Docker's CLI shows. */
const SHORT_ID = 12;

/** Short id without the `sha256:` prefix. */
export function shortId(id: string): string {
  return id.replace(/^sha256:/, '').slice(0, SHORT_ID);
}

/** Container name without the leading `/` the Engine API puts in front. */
export function containerName(name: string): string {
  return name.replace(/^\//, '');
}

/** One row of `docker_list_containers`. */
export interface ContainerRow {
  id: string;
  name: string;
  image: string;
  /** created, running, paused, restarting, removing, exited or dead. */
  state: string;
  /** Docker's human text, e.g. "Up 5 minutes". */
  status: string;
}

export function containerRow(c: Dockerode.ContainerInfo): ContainerRow {
  return {
    id: shortId(c.Id),
    name: containerName(c.Names[0] ?? ''),
    image: c.Image,
    state: c.State,
    status: c.Status,
  };
}

/** Publishes of one container port, e.g. `{ container: "80/tcp", host: ["0.0.0.0:8080"] }`. */
export interface PortSummary {
  container: string;
  host: string[];
}

/**
 * The compact form of `GET /containers/{id}/json`. `Config.Env` is left out on purpose: it often
 * holds secrets, and the result travels to a model.
 */
export interface ContainerSummary {
  id: string;
  name: string;
  image: string;
  imageId: string;
  /** ISO 8601. */
  created: string;
  command: string[];
  state: {
    status: string;
    running: boolean;
    paused: boolean;
    restarting: boolean;
    oomKilled: boolean;
    exitCode: number;
    error?: string;
    health?: string;
    /** ISO 8601; Docker's zero time `0001-01-01T00:00:00Z` when never started. */
    startedAt: string;
    finishedAt: string;
  };
  restartCount: number;
  restartPolicy: string;
  networkMode: string;
  mounts: Array<{ type: string; source: string; destination: string; readOnly: boolean }>;
  ports: PortSummary[];
}

export function containerSummary(c: Dockerode.ContainerInspectInfo): ContainerSummary {
  const s = c.State;
  const ports = Object.entries(c.NetworkSettings?.Ports ?? {}).map(([container, bindings]) => ({
    container,
    host: (bindings ?? []).map((b) => `${b.HostIp}:${b.HostPort}`),
  }));
  return {
    id: shortId(c.Id),
    name: containerName(c.Name),
    image: c.Config.Image,
    imageId: shortId(c.Image),
    created: c.Created,
    command: [c.Path, ...c.Args],
    state: {
      status: s.Status,
      running: s.Running,
      paused: s.Paused,
      restarting: s.Restarting,
      oomKilled: s.OOMKilled,
      exitCode: s.ExitCode,
      ...(s.Error ? { error: s.Error } : {}),
      ...(s.Health ? { health: s.Health.Status } : {}),
      startedAt: s.StartedAt,
      finishedAt: s.FinishedAt,
    },
    restartCount: c.RestartCount,
    restartPolicy: c.HostConfig.RestartPolicy?.Name || 'no',
    networkMode: c.HostConfig.NetworkMode ?? 'default',
    mounts: c.Mounts.map((m) => ({ type: m.Type, source: m.Source, destination: m.Destination, readOnly: !m.RW })),
    ports,
  };
}

/** One row of `docker_list_images`. */
export interface ImageRow {
  id: string;
  tags: string[];
  sizeBytes: number;
  /** ISO 8601. */
  created: string;
}

export function imageRow(i: Dockerode.ImageInfo): ImageRow {
  return {
    id: shortId(i.Id),
    tags: (i.RepoTags ?? []).filter((t) => t !== '<none>:<none>'),
    sizeBytes: i.Size,
    created: new Date(i.Created * 1000).toISOString(),
  };
}

/** Figures of `docker_container_stats`. */
export interface StatsSummary {
  /** Share of one CPU times the number of CPUs, as `docker stats` shows it (200 = two full CPUs). */
  cpuPercent: number;
  onlineCpus: number;
  /** Usage without the page cache, as `docker stats` counts it; bytes. */
  memoryUsageBytes: number;
  /** The cgroup limit, or the host's memory when the container has none; bytes. */
  memoryLimitBytes: number;
  memoryPercent: number;
  pids?: number;
}

const round2 = (n: number) => Math.round(n * 100) / 100;

/**
 * Computes the figures `docker stats` shows from one non-streamed stats sample (which carries the
 * previous sample in `precpu_stats`). Formulas from the docker CLI
 * (cli/command/container/stats_helpers.go: calculateCPUPercentUnix, calculateMemUsageUnixNoCache).
 */
export function statsSummary(s: Dockerode.ContainerStats): StatsSummary {
  const cpu = s.cpu_stats;
  const pre = s.precpu_stats;
  const onlineCpus = cpu.online_cpus || cpu.cpu_usage.percpu_usage?.length || 1;
  const cpuDelta = cpu.cpu_usage.total_usage - (pre?.cpu_usage?.total_usage ?? 0);
  const systemDelta = (cpu.system_cpu_usage ?? 0) - (pre?.system_cpu_usage ?? 0);
  const cpuPercent = cpuDelta > 0 && systemDelta > 0 ? (cpuDelta / systemDelta) * onlineCpus * 100 : 0;

  const mem = s.memory_stats;
  const stats = (mem.stats ?? {}) as Partial<Record<string, number>>;
  // cgroup v1 reports total_inactive_file, cgroup v2 inactive_file.
  const inactive = stats.total_inactive_file ?? stats.inactive_file ?? 0;
  const usage = mem.usage ?? 0;
  const memoryUsageBytes = inactive < usage ? usage - inactive : usage;
  const memoryLimitBytes = mem.limit ?? 0;
  return {
    cpuPercent: round2(cpuPercent),
    onlineCpus,
    memoryUsageBytes,
    memoryLimitBytes,
    memoryPercent: memoryLimitBytes > 0 ? round2((memoryUsageBytes / memoryLimitBytes) * 100) : 0,
    ...(s.pids_stats?.current !== undefined ? { pids: s.pids_stats.current } : {}),
  };
}

/**
 * Turns a non-TTY log body into text. Docker multiplexes stdout and stderr into frames with an
 * 8-byte header: stream type (byte 0: 1 stdout, 2 stderr), three zero bytes, payload length
 * (uint32 big-endian). Engine API docs, "Attach to a container", "Stream format". Frames are
 * concatenated in arrival order, as `docker logs` prints them; a truncated last frame keeps the
 * bytes that are there.
 */
export function demuxLogs(buf: Buffer): string {
  const parts: Buffer[] = [];
  let at = 0;
  while (at + 8 <= buf.length) {
    const size = buf.readUInt32BE(at + 4);
    parts.push(buf.subarray(at + 8, Math.min(at + 8 + size, buf.length)));
    at += 8 + size;
  }
  return Buffer.concat(parts).toString('utf8');
}

/**
 * dockerode buffers a non-streamed body and hands back `JSON.parse` of it when that succeeds, so
 * the log of a TTY container that happens to be one JSON value arrives parsed. This undoes that
 * (whitespace of such a value is lost; any other log comes back byte for byte).
 */
export function bodyBuffer(body: unknown): Buffer {
  if (Buffer.isBuffer(body)) return body;
  return Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
}

/**
 * Keeps the last `maxBytes` bytes of `text`, cut at a line start when one is inside the window.
 * Returns the kept text and whether anything was dropped.
 */
export function keepTail(text: string, maxBytes: number): { text: string; truncated: boolean } {
  const buf = Buffer.from(text, 'utf8');
  if (buf.length <= maxBytes) return { text, truncated: false };
  let tail = buf.subarray(buf.length - maxBytes).toString('utf8');
  const nl = tail.indexOf('\n');
  if (nl >= 0 && nl < tail.length - 1) tail = tail.slice(nl + 1);
  return { text: tail, truncated: true };
}

/**
 * Normalises an image reference for allowlist matching: adds the `:latest` tag Docker assumes
 * when neither tag nor digest is given (`busybox` → `busybox:latest`, `reg:5000/app` →
 * `reg:5000/app:latest`).
 */
export function normalizeImageRef(ref: string): string {
  if (ref.includes('@')) return ref;
  const lastSegment = ref.slice(ref.lastIndexOf('/') + 1);
  return lastSegment.includes(':') ? ref : `${ref}:latest`;
}

/**
 * Parses a device mapping in `docker run --device` form: `/dev/x`, `/dev/x:/dev/y` or
 * `/dev/x:/dev/y:rwm`.
 */
export function parseDevice(spec: string): { PathOnHost: string; PathInContainer: string; CgroupPermissions: string } {
  const [host, inContainer, perms] = spec.split(':');
  return { PathOnHost: host, PathInContainer: inContainer || host, CgroupPermissions: perms || 'rwm' };
}
