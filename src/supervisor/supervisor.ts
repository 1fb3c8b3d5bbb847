// The supervisor of a mount: a small process that owns the /dev/fuse fd and the mount and
// does almost nothing else. A worker process (the same command, XLSTACK_WORKER set) serves
// the graph on an inherited copy of the same open file, and writes down, in a record the
// supervisor reads once it is gone (record.ts), what the kernel holds (the INIT it
// negotiated, nodeids, handles, locks). When a worker dies the supervisor starts another with
// that record: it takes over what the
// kernel holds and serves again what the dead one read and never answered. A worker that
// keeps dying right after it starts is not restarted forever: the mount then answers EIO.
import { ChildProcess, spawn } from 'child_process';
import * as fs from 'fs';
import { FopError } from '../core/errors';
import { ProcessIdentity, processIdentity, setProcessIdentity } from '../core/identity';
import type { Logger } from '../core/log';
import type { KernelFs } from '../fuse/kernel/fs';
import { detachWhenDead, mountKernel, unmountKernel } from '../fuse/kernel/mount';
import { KernelSession } from '../fuse/kernel/session';
import { MountRecord, RETIRED, fromWireConn, readRecord } from './record';

/**
 * A worker that dies before it serves, or this soon after, failed fast (it may be a request
 * sent again that kills every worker that serves it).
 */
export const FAST_FAILURE_MS = 1000;
/** This many fast failures in a row, and the supervisor stops restarting. */
export const MAX_FAST_FAILURES = 5;
/** How long the first worker may take to serve. */
const FIRST_READY_MS = 60_000;

/** Set in a worker's environment: its generation (1 for the first). */
export const WORKER_ENV = 'XLSTACK_WORKER';
/** Set in a worker's environment: the supervisor's process identity (JSON), the same for every worker. */
export const IDENTITY_ENV = 'XLSTACK_IDENTITY';
/** Set in a worker's environment: the directory it keeps its record in. */
export const RECORD_DIR_ENV = 'XLSTACK_RECORD_DIR';
/** In a worker: the inherited /dev/fuse fd. */
export const WORKER_FUSE_FD = 3;

export interface SupervisorOptions {
  readonly mountpoint: string;
  readonly fsname: string;
  readonly log: Logger;
  /** A private directory, on tmpfs, for the workers' record (removed at the end). */
  readonly recordDir: string;
  /** SIGUSR2: the log file was rotated (the supervisor's own log, and the worker's). */
  readonly reopenLog?: () => void;
  /** The worker's command line after node (the same mount command). */
  readonly workerArgs: readonly string[];
  readonly fastFailureMs?: number;
  readonly maxFastFailures?: number;
}

/** The supervisor as a worker's statedump shows it. */
export interface SupervisorDump {
  readonly pid: number;
  readonly generation: number;
  readonly fastFailures: number;
  readonly upgrades: number;
  readonly lastEnd?: { readonly generation: number; readonly how: string; readonly at: string };
  /** What the last worker left on record (nodeids, handles, lock requests, unreadable lines). */
  readonly record: Record<string, unknown>;
}

/** What a worker tells its supervisor. */
interface WorkerMessage {
  /** It built its graph and waits for its record. */
  readonly standby?: boolean;
  /** It serves. */
  readonly ready?: boolean;
  /** `xlstack upgrade` asked it to hand over to a new worker. */
  readonly upgrade?: boolean;
}

/** Everything fails with EIO: what the mount answers once the supervisor gave up on workers. */
const EIO_FS = new Proxy({} as KernelFs, {
  get: (_t, name) => (name === 'init' || name === 'forget' || name === 'destroy' ? () => undefined : () => Promise.reject(new FopError('EIO', 'no worker serves this mount'))),
});

export class Supervisor {
  private fd = -1;
  private generation = 0;
  private worker?: ChildProcess;
  private fastFailures = 0;
  private upgrades = 0;
  private stopping = false;
  /** How the last worker ended. */
  private lastEnd?: SupervisorDump['lastEnd'];
  /** What the last worker left on record, read when it was gone. */
  private record = new MountRecord();
  private resolveDone!: (code: number) => void;
  /** Settles with the exit code once the mount is gone. */
  readonly done = new Promise<number>((r) => (this.resolveDone = r));
  private firstReady?: (ok: boolean) => void;

  constructor(private readonly o: SupervisorOptions) {}

  /** Mounts and starts the first worker; resolves once it serves. */
  async start(): Promise<void> {
    // From the start: a terminal's hang-up while the first worker starts must not end us.
    for (const sig of ['SIGTERM', 'SIGINT'] as const) process.on(sig, () => this.stop(sig));
    // The daemon's signals (reload, statedump, log reopen) are the worker's to act on: sent to
    // the mount's process, they reach it, and never end the supervisor.
    for (const sig of ['SIGHUP', 'SIGUSR1', 'SIGUSR2'] as const) process.on(sig, () => void this.worker?.kill(sig));
    process.on('SIGUSR2', () => this.reopenLog());
    const m = await mountKernel(this.o.mountpoint, { fsname: this.o.fsname, allowOther: true, defaultPermissions: true });
    this.fd = m.fd;
    // Killed with the worker (SIGKILL to both, the OOM killer), it leaves no dead mount behind.
    if (m.via === 'mount') detachWhenDead(this.o.mountpoint);
    const ready = new Promise<boolean>((r) => (this.firstReady = r));
    this.spawnWorker();
    let timer: NodeJS.Timeout | undefined;
    const ok = await Promise.race([ready, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), FIRST_READY_MS)))]);
    clearTimeout(timer);
    if (!ok) {
      this.stopping = true;
      this.worker?.kill('SIGKILL');
      await unmountKernel(this.o.mountpoint, true).catch(() => undefined);
      this.closeFd();
      throw new Error(`the first worker did not serve ${this.o.mountpoint} (within ${FIRST_READY_MS / 1000} s, or it died: see its log)`);
    }
  }

  private reopenLog(): void {
    try {
      this.o.reopenLog?.();
    } catch (e) {
      this.o.log.error(`reopening the log file failed (still writing to the old one): ${(e as Error).message}`);
    }
  }

  /** What a worker's statedump shows of its supervisor (given to each worker as it starts). */
  dump(): SupervisorDump {
    return { pid: process.pid, generation: this.generation, fastFailures: this.fastFailures, upgrades: this.upgrades, lastEnd: this.lastEnd, record: this.record.dump() };
  }

  /** Starts a worker. It builds its graph, says it waits (`standby`), and is given the record to take over from. */
  private spawnWorker(): void {
    const generation = ++this.generation;
    let served: number | undefined;
    const child = spawn(process.execPath, [...this.o.workerArgs], {
      stdio: ['ignore', 'inherit', 'inherit', this.fd, 'ipc'],
      // Every worker is the same client to the bricks: a new one takes over the open files and
      // locks the last one held there (within the bricks' grace period).
      env: { ...process.env, [WORKER_ENV]: String(generation), [IDENTITY_ENV]: JSON.stringify(processIdentity()), [RECORD_DIR_ENV]: this.o.recordDir },
    });
    this.worker = child;
    child.on('error', (e) => this.o.log.error(`worker ${generation}: ${e.message}`));
    child.on('message', (m: WorkerMessage) => {
      if (m?.standby) return this.waiting(child, generation);
      if (m?.upgrade) return this.upgrade(child);
      if (!m?.ready) return;
      served = Date.now();
      this.o.log.info(`worker ${generation} (pid ${child.pid}) serves ${this.o.mountpoint}`);
      this.firstReady?.(true);
      this.firstReady = undefined;
    });
    child.on('exit', (code, signal) => this.exited(generation, child, code, signal, served));
  }

  private waiting(child: ChildProcess, generation: number): void {
    if (child === this.worker) this.handOver(child, generation);
  }

  private handOver(child: ChildProcess, generation: number): void {
    const resume = this.record.resume(generation);
    child.send({ resume: resume ?? null, supervisor: this.dump() }, (e) => e && this.o.log.warn(`worker ${generation}: its record could not be sent: ${e.message}`));
    if (resume) this.o.log.info(`worker ${generation} (pid ${child.pid}) takes over ${resume.nodes.length} nodeid(s), ${resume.handles.length} handle(s), ${resume.locks.length} lock request(s)`);
  }

  /**
   * `xlstack upgrade`: the serving worker retires, then a new one starts. Not side by side: a
   * new graph's storage/posix starts by emptying the backing directory's tmp and unlinked
   * folders, which the serving worker's storage still uses.
   */
  private upgrade(from: ChildProcess): void {
    if (from !== this.worker) return;
    this.o.log.info(`upgrade: worker ${this.generation} retires, then worker ${this.generation + 1} takes over`);
    from.send({ retire: true });
  }

  private exited(generation: number, child: ChildProcess, code: number | null, signal: NodeJS.Signals | null, served: number | undefined): void {
    const how = signal ? `signal ${signal}` : `exit code ${code}`;
    this.record = readRecord(this.o.recordDir);
    this.lastEnd = { generation, how: code === RETIRED ? 'retired (an upgrade)' : how, at: new Date().toISOString() };
    if (this.worker === child) this.worker = undefined;
    if (code === RETIRED && !this.stopping) {
      this.upgrades++;
      this.o.log.info(`worker ${generation} retired (an upgrade); starting worker ${generation + 1}`);
      return this.spawnWorker();
    }
    // A worker ends by itself (0) once the kernel says the mount is gone.
    if (code === 0) {
      this.o.log.info(`worker ${generation} ended (${how}); ${this.o.mountpoint} is no longer served`);
      return this.finish(0);
    }
    // Stopping, and the worker died before it unmounted (or was not serving yet).
    if (this.stopping) return this.unmountAndFinish(`worker ${generation} ended (${how}) while stopping`);
    const lived = served === undefined ? undefined : Date.now() - served;
    this.fastFailures = lived === undefined || lived < (this.o.fastFailureMs ?? FAST_FAILURE_MS) ? this.fastFailures + 1 : 0;
    const max = this.o.maxFastFailures ?? MAX_FAST_FAILURES;
    if (!this.record.conn) {
      this.firstReady?.(false);
      return this.unmountAndFinish(`worker ${generation} died (${how}) before INIT was answered`);
    }
    if (this.fastFailures >= max) return this.giveUp(how);
    this.o.log.warn(`worker ${generation} (pid ${child.pid}) died (${how}) ${lived === undefined ? 'before serving' : `${lived} ms after it began serving`}; starting worker ${generation + 1}`);
    this.spawnWorker();
  }

  /** Workers keep dying at start: the mount answers EIO (never hangs) until it is unmounted. */
  private giveUp(how: string): void {
    const fastMs = this.o.fastFailureMs ?? FAST_FAILURE_MS;
    this.o.log.error(
      `${this.fastFailures} workers in a row died before serving or within ${fastMs / 1000} s of it (the last: ${how}); not starting another: ` +
        `${this.o.mountpoint} answers EIO until it is unmounted (xlstack unmount, or umount)`,
    );
    const session = new KernelSession(this.fd, EIO_FS, { log: this.o.log.child('eio') });
    this.fd = -1; // the session closes it when it ends
    session.resume(fromWireConn(this.record.conn!));
    void session.closed.then(() => this.finish(1));
  }

  private stop(sig: string): void {
    if (this.stopping) return;
    this.stopping = true;
    this.o.log.info(`${sig}: stopping ${this.o.mountpoint}`);
    if (this.worker) this.worker.kill('SIGTERM');
    else void unmountKernel(this.o.mountpoint, true).catch((e) => this.o.log.error(`unmount: ${(e as Error).message}`));
  }

  private unmountAndFinish(why: string): void {
    this.o.log.error(`${why}; unmounting ${this.o.mountpoint}`);
    void unmountKernel(this.o.mountpoint, true)
      .catch((e) => this.o.log.error(`unmount: ${(e as Error).message}`))
      .then(() => this.finish(1));
  }

  private closeFd(): void {
    if (this.fd >= 0) fs.closeSync(this.fd);
    this.fd = -1;
  }

  private finish(code: number): void {
    this.closeFd();
    fs.rmSync(this.o.recordDir, { recursive: true, force: true });
    this.resolveDone(code);
  }
}

/** In a worker: it is its supervisor to the bricks (see IDENTITY_ENV). */
export function takeSupervisorIdentity(): void {
  const id = JSON.parse(process.env[IDENTITY_ENV] ?? 'null') as ProcessIdentity | null;
  if (typeof id?.name !== 'string' || typeof id.uuid !== 'string') throw new Error(`a worker needs its supervisor's identity in ${IDENTITY_ENV}`);
  setProcessIdentity(id);
}
