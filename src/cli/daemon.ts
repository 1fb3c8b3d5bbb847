import * as fs from 'fs';
import type { Server } from 'net';
import * as path from 'path';
import type { Logger } from '../core/log';
import type { Mounted } from '../fuse/mounted';
import type { GraphSwitcher, ReloadResult } from '../fuse/switcher';
import { ControlRequest, serveControl } from './control';
import { rebalanceGraph, removeOf } from './rebalance';
import { controlSocket, ensureRuntimeDir } from './runtime';
import { RETIRED } from '../supervisor/record';

/** How long a daemon that is going waits for the answers it is sending on its control socket. */
const CONTROL_DRAIN_MS = 5000;
/** A retired worker exits this long after answering `xlstack upgrade` (the answer leaves first). */
const RETIRE_EXIT_DELAY_MS = 100;

/** What every xlstack daemon (a mount, a brick) shares: its pidfile, control socket, signals and statedumps. */
export interface DaemonBase {
  /** The path the daemon is known by: a mountpoint, or a brick's volfile. */
  readonly key: string;
  readonly pidfile?: string;
  readonly log: Logger;
  /** SIGUSR2: the log file was rotated; write to a new one. */
  readonly reopenLog?: () => void;
}

/** Writes a file no one else may change: pidfiles 0644, statedumps 0600 (the daemon's umask is 0). */
export function writePrivate(file: string, text: string, mode: number): void {
  const tmp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(tmp, 'w', mode);
  try {
    fs.fchmodSync(fd, mode);
    fs.writeSync(fd, text);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tmp, file);
}

/**
 * The common part of a daemon: one owner for the pidfile, the control socket (`xlstack
 * reload/statedump/unmount` talk to it), and the signals: SIGHUP reloads, SIGUSR1 writes a
 * statedump, SIGUSR2 reopens the log file, SIGTERM/SIGINT stop.
 */
export abstract class Daemon {
  private control?: Server;
  /** The control socket's inode: a successor (a new worker) may have replaced the file. */
  private controlIno?: number;
  private resolveDone!: () => void;
  /** Settles when the daemon has shut down. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(protected readonly base: DaemonBase) {}

  protected get log(): Logger {
    return this.base.log;
  }

  abstract reload(): Promise<ReloadResult>;
  abstract statedump(): Record<string, unknown>;
  /** SIGTERM/SIGINT. */
  protected abstract stop(sig: string): void;
  protected abstract command(req: ControlRequest): Promise<unknown> | undefined;

  async start(): Promise<void> {
    const { pidfile, key } = this.base;
    if (pidfile) writePrivate(pidfile, `${process.pid}\n`, 0o644);
    ensureRuntimeDir();
    this.control = await serveControl(controlSocket(key), (req) => this.dispatch(req));
    this.controlIno = fs.statSync(controlSocket(key)).ino;
    process.on('SIGTERM', () => this.stop('SIGTERM'));
    process.on('SIGINT', () => this.stop('SIGINT'));
    // Also a terminal's hang-up: harmless, a reload of an unchanged volfile changes nothing.
    process.on('SIGHUP', () => void this.reload().catch(() => undefined));
    process.on('SIGUSR1', () => this.dumpToFile());
    process.on('SIGUSR2', () => this.reopenLog());
  }

  private dispatch(req: ControlRequest): Promise<unknown> {
    if (req.cmd === 'statedump') return Promise.resolve(this.statedump());
    if (req.cmd === 'reload') return this.reload();
    return this.command(req) ?? Promise.reject(new Error(`unknown command '${req.cmd}'`));
  }

  private reopenLog(): void {
    try {
      this.base.reopenLog?.();
      this.log.info('log file reopened');
    } catch (e) {
      this.log.error(`reopening the log file failed (still writing to the old one): ${(e as Error).message}`);
    }
  }

  /** SIGUSR1: the statedump goes to a file next to the control socket (GlusterFS naming), readable by root only. */
  private dumpToFile(): void {
    const file = path.join(ensureRuntimeDir(), `xlstack.${process.pid}.dump.${Math.floor(Date.now() / 1000)}`);
    try {
      writePrivate(file, JSON.stringify(this.statedump(), null, 2) + '\n', 0o600);
      this.log.info(`statedump written to ${file}`);
    } catch (e) {
      this.log.error(`statedump failed: ${(e as Error).message}`);
    }
  }

  /** The parts of a statedump every daemon has. */
  protected commonDump(): Record<string, unknown> {
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const mem = process.memoryUsage();
    return { pid: process.pid, time: new Date().toISOString(), memory: { rss: mem.rss, heapUsed: mem.heapUsed, afterGc: gc !== undefined } };
  }

  /** The end: no more control requests (those being answered are, within a bound), no pidfile. */
  protected async finish(): Promise<void> {
    const sock = controlSocket(this.base.key);
    if (fs.statSync(sock, { throwIfNoEntry: false })?.ino === this.controlIno) fs.rmSync(sock, { force: true });
    if (this.base.pidfile) fs.rmSync(this.base.pidfile, { force: true });
    const control = this.control;
    if (control) await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, CONTROL_DRAIN_MS).unref();
      control.close(() => (clearTimeout(timer), resolve()));
    });
    this.resolveDone();
  }
}

export interface MountDaemonOptions extends DaemonBase {
  readonly volfile: string;
  readonly switcher: GraphSwitcher;
  readonly mounted: Mounted;
}

/**
 * The process serving one mount. It serves until the kernel says the mount is gone:
 * unmounted (by `xlstack unmount`, a signal, or from outside), or detached lazily and then
 * released by the last process that had something open there. Then it releases every open
 * handle and takes the graphs down.
 */
export class MountDaemon extends Daemon {
  private stopping?: Promise<void>;

  constructor(private readonly opts: MountDaemonOptions) {
    super(opts);
  }

  override async start(): Promise<void> {
    await super.start();
    void this.opts.mounted.ended.then((why) => this.teardown(why));
  }

  protected command(req: ControlRequest): Promise<unknown> | undefined {
    if (req.cmd === 'unmount') return this.unmount(false);
    if (req.cmd === 'unmount-lazy') return this.unmount(true);
    if (req.cmd === 'rebalance') return rebalanceGraph(this.opts.switcher.bridge.active, { remove: removeOf(req), log: this.log });
    if (req.cmd === 'upgrade') return this.retire();
    return undefined;
  }

  /** Reloads the volfile; a failure leaves the current graph serving and says why. */
  async reload(): Promise<ReloadResult> {
    const { switcher, volfile } = this.opts;
    try {
      const r = await switcher.reload();
      this.log.info(`reload: ${r.action}, graph ${r.graph}${r.detail ? ` (${r.detail})` : ''}`);
      return r;
    } catch (e) {
      this.log.error(`reload of ${volfile} failed; still serving graph ${switcher.bridge.active.id}:\n${(e as Error).message}`);
      throw e;
    }
  }

  /** A signal means "stop now": if the mount is busy, detach it (umount -l) and serve what is still open. */
  protected stop(sig: string): void {
    this.log.info(`${sig}: unmounting ${this.mountpoint}`);
    this.unmount(false).catch(() =>
      this.unmount(true).then(
        () => this.log.info(`${this.mountpoint} was busy: detached; serving what is still open until it is released`),
        (e) => this.log.error(`unmount failed: ${(e as Error).message}`),
      ),
    );
  }

  /**
   * A worker whose supervisor is gone (killed): no one would start a new worker if this one
   * died, and no one holds the mount for it; the mount goes as on SIGKILL of a single process,
   * lazily, so what is open there is served until it is released.
   */
  orphaned(): void {
    this.log.error(`the supervisor is gone; detaching ${this.mountpoint} (what is open there is served until released)`);
    this.unmount(true).catch((e) => this.log.error(`unmount failed: ${(e as Error).message}`));
  }

  /** Unmounts (refused while busy, like umount, unless `lazy`); the teardown follows when the kernel lets go. */
  private unmount(lazy: boolean): Promise<void> {
    this.stopping ??= this.opts.mounted.unmount(lazy).then(() => this.log.info(`unmounted ${this.mountpoint}${lazy ? ' (lazily)' : ''}`));
    // A refused unmount leaves the daemon serving; a later attempt may try again.
    const attempt = this.stopping;
    attempt.catch(() => (this.stopping = undefined));
    return attempt;
  }

  /**
   * A live upgrade: this worker stops serving and exits with RETIRED; its supervisor starts
   * a new one (of whatever xlstack is installed now) that takes over the mount.
   */
  private async retire(): Promise<{ generation: number }> {
    const { mounted } = this.opts;
    if (!mounted.retire) throw new Error(`${this.mountpoint} is not served under a supervisor (it was mounted with --single-process)`);
    const generation = Number((mounted.dump() as { generation?: number }).generation ?? 1);
    await mounted.retire();
    this.log.info(`worker generation ${generation} retired for an upgrade`);
    // Once this answer is on its way.
    setTimeout(() => process.exit(RETIRED), RETIRE_EXIT_DELAY_MS);
    return { generation };
  }

  private get mountpoint(): string {
    return this.opts.mounted.mountpoint;
  }

  private async teardown(why: string): Promise<void> {
    const { switcher } = this.opts;
    if (!this.stopping) this.log.warn(`${this.mountpoint} was unmounted from outside (${why}); shutting down`);
    const core = switcher.bridge.core;
    try {
      core.stopSweeping();
      for (const base of [...core.basefds.all()]) await core.release(base.id);
      await switcher.stopAll();
    } catch (e) {
      this.log.error(`teardown: ${(e as Error).message}`);
    }
    await this.finish();
  }

  statedump(): Record<string, unknown> {
    const { switcher, volfile, mounted } = this.opts;
    return {
      ...this.commonDump(),
      volfile,
      mountpoint: mounted.mountpoint,
      transport: mounted.dump(),
      ...switcher.bridge.dump(),
      graphs: switcher.graphs().map((g) => g.dump()),
    };
  }
}
