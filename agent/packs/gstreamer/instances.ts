/**
 * Running gst-launch-1.0 processes: started with an argument list (`spawn`, never a shell), their
 * stdout and stderr kept in a ring buffer of lines, stopped with SIGINT (gst-launch's `-e` turns
 * it into an end-of-stream, so files are finalized) and SIGKILL after a timeout.
 */
import { spawn, type ChildProcess } from 'node:child_process';

/**
 * `starting`: spawned, not yet playing; `playing`: gst-launch set the pipeline to PLAYING;
 * `stopping`: SIGINT sent; `stopped`: ended after a stop request (`forced` when SIGKILL was needed);
 * `exited`: ended by itself with status 0 (end of stream); `failed`: ended by itself otherwise.
 */
export type InstanceState = 'starting' | 'playing' | 'stopping' | 'stopped' | 'exited' | 'failed';

/** What get_running_instances reports about one instance. */
export interface InstanceInfo {
  id: string;
  name?: string;
  pipeline: string;
  pid: number | null;
  startedAt: string;
  endedAt?: string;
  state: InstanceState;
  exitCode: number | null;
  signal: string | null;
  forced: boolean;
  startedBy: string;
  /** The first `ERROR:` (or `WARNING: erroneous pipeline`) line gst-launch printed. */
  lastError?: string;
  /** Newest log lines, stdout and stderr interleaved (stderr lines prefixed `stderr: `). */
  log: string[];
}

/** Options of a {@link PipelineRunner}; all times in ms. */
export interface RunnerOptions {
  gstLaunch: string;
  maxInstances: number;
  logLines: number;
  stopTimeoutMs: number;
  startWaitMs: number;
  /** Ended instances kept for get_running_instances (oldest dropped first). */
  keepEnded?: number;
}

const MAX_LINE = 1000;
const RUNNING: ReadonlySet<InstanceState> = new Set(['starting', 'playing', 'stopping']);

interface Instance {
  info: Omit<InstanceInfo, 'log'>;
  log: string[];
  child: ChildProcess;
  exited: Promise<void>;
  stopRequested: boolean;
}

/** Thrown by {@link PipelineRunner.start} when `maxInstances` pipelines already run. */
export class RunnerBusyError extends Error {}

/** Starts, lists and stops gst-launch-1.0 processes. */
export class PipelineRunner {
  private readonly instances = new Map<string, Instance>();
  private counter = 0;

  constructor(private readonly opts: RunnerOptions) {}

  /** Instances, newest first, with at most `lines` log lines each. */
  list(lines = 20): InstanceInfo[] {
    return [...this.instances.values()].reverse().map((i) => this.snapshot(i, lines));
  }

  /** Running instances (starting, playing or stopping). */
  running(): InstanceInfo[] {
    return this.list(0).filter((i) => RUNNING.has(i.state));
  }

  /** An instance by id or name (the newest with that name). */
  find(idOrName: string): InstanceInfo | undefined {
    const inst = this.instances.get(idOrName) ?? [...this.instances.values()].reverse().find((i) => i.info.name === idOrName);
    return inst && this.snapshot(inst);
  }

  /**
   * Spawns `gstLaunch -e -- ...argv` and waits until it plays, exits, `startWaitMs` passes or
   * `signal` aborts (the process keeps running in the last two cases).
   * @throws RunnerBusyError when `maxInstances` run already.
   */
  async start(argv: string[], meta: { name?: string; startedBy: string }, signal?: AbortSignal): Promise<InstanceInfo> {
    if (this.running().length >= this.opts.maxInstances) {
      throw new RunnerBusyError(`${this.opts.maxInstances} pipelines already run on this board (maxInstances); stop one first`);
    }
    const id = `pipe-${++this.counter}`;
    const child = spawn(this.opts.gstLaunch, ['-e', '--', ...argv], { stdio: ['ignore', 'pipe', 'pipe'] });
    const inst: Instance = {
      info: {
        id, ...(meta.name ? { name: meta.name } : {}), pipeline: argv.join(' '), pid: child.pid ?? null,
        startedAt: new Date().toISOString(), state: 'starting', exitCode: null, signal: null, forced: false, startedBy: meta.startedBy,
      },
      log: [], child, stopRequested: false,
      exited: new Promise<void>((resolve) => {
        const finish = (code: number | null, sig: NodeJS.Signals | null) => {
          if (inst.info.endedAt) return;
          inst.info.exitCode = code;
          inst.info.signal = sig;
          inst.info.endedAt = new Date().toISOString();
          inst.info.state = inst.stopRequested ? 'stopped' : code === 0 ? 'exited' : 'failed';
          resolve();
        };
        child.once('close', finish);
        // a process that could not start (ENOENT, EACCES) may never emit 'close'
        child.once('error', (err) => {
          this.addLine(inst, `stderr: ${err.message}`);
          inst.info.lastError ??= `${this.opts.gstLaunch} could not start: ${err.message}`;
          if (child.pid === undefined) finish(null, null);
        });
      }),
    };
    this.capture(inst, child.stdout!, '');
    this.capture(inst, child.stderr!, 'stderr: ');
    this.instances.set(id, inst);
    this.prune();
    await this.settle(inst, signal);
    return this.snapshot(inst);
  }

  /**
   * Stops an instance by id: SIGINT, then SIGKILL after `stopTimeoutMs`; resolves once it has
   * exited. An instance that already ended is returned as it is (`changed: false`).
   * @throws Error for an unknown id.
   */
  async stop(id: string): Promise<InstanceInfo & { changed: boolean }> {
    const inst = this.instances.get(id);
    if (!inst) throw new Error(`no pipeline instance ${id}`);
    if (!RUNNING.has(inst.info.state)) return { ...this.snapshot(inst), changed: false };
    if (!inst.stopRequested) {
      inst.stopRequested = true;
      inst.info.state = 'stopping';
      inst.child.kill('SIGINT');
      const timer = setTimeout(() => {
        inst.info.forced = true;
        inst.child.kill('SIGKILL');
      }, this.opts.stopTimeoutMs);
      void inst.exited.then(() => clearTimeout(timer));
    }
    await inst.exited;
    return { ...this.snapshot(inst), changed: true };
  }

  /** Stops every running instance (the agent is stopping). */
  async stopAll(): Promise<void> {
    await Promise.all([...this.instances.values()].filter((i) => RUNNING.has(i.info.state)).map((i) => this.stop(i.info.id)));
  }

  /** SIGKILLs every running process at once; for the process `exit` hook, where nothing can wait. */
  killAllNow(): void {
    for (const i of this.instances.values()) if (RUNNING.has(i.info.state)) i.child.kill('SIGKILL');
  }

  private snapshot(inst: Instance, lines = this.opts.logLines): InstanceInfo {
    return { ...inst.info, log: lines > 0 ? inst.log.slice(-lines) : [] };
  }

  private addLine(inst: Instance, line: string): void {
    const text = line.length > MAX_LINE ? `${line.slice(0, MAX_LINE)}…` : line;
    inst.log.push(text);
    if (inst.log.length > this.opts.logLines) inst.log.splice(0, inst.log.length - this.opts.logLines);
    const bare = line.replace(/^stderr: /, '');
    if (bare.startsWith('Setting pipeline to PLAYING') && inst.info.state === 'starting') inst.info.state = 'playing';
    if (/^(ERROR:|WARNING: erroneous pipeline)/.test(bare) && inst.info.lastError === undefined) inst.info.lastError = bare;
  }

  private capture(inst: Instance, stream: NodeJS.ReadableStream, prefix: string): void {
    let rest = '';
    stream.setEncoding('utf8');
    stream.on('data', (chunk: string) => {
      const lines = (rest + chunk).split(/\r?\n/);
      rest = lines.pop() ?? '';
      for (const l of lines) if (l.trim() !== '') this.addLine(inst, prefix + l);
    });
    stream.on('end', () => { if (rest.trim() !== '') this.addLine(inst, prefix + rest); });
  }

  /** Waits until the instance plays or ends, `startWaitMs` passes, or `signal` aborts. */
  private async settle(inst: Instance, signal?: AbortSignal): Promise<void> {
    const end = Date.now() + this.opts.startWaitMs;
    let ended = false;
    void inst.exited.then(() => { ended = true; });
    while (!ended && inst.info.state === 'starting' && Date.now() < end && !signal?.aborted) {
      await new Promise((r) => setTimeout(r, 20));
    }
    // an error right after PLAYING ends the process within moments; give it the rest of the wait
    if (!ended && inst.info.state === 'playing') {
      await Promise.race([inst.exited, new Promise((r) => setTimeout(r, Math.min(300, Math.max(0, end - Date.now()))))]);
    }
  }

  /** Drops the oldest ended instances beyond `keepEnded`. */
  private prune(): void {
    const ended = [...this.instances.values()].filter((i) => !RUNNING.has(i.info.state));
    for (const i of ended.slice(0, Math.max(0, ended.length - (this.opts.keepEnded ?? 20)))) this.instances.delete(i.info.id);
  }
}
