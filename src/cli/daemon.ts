import * as fs from 'fs';
import type { Server } from 'net';
import * as path from 'path';
import type { Logger } from '../core/log';
import type { FuseMount } from '../fuse/adapter';
import type { Bridge } from '../fuse/bridge';
import type { GraphSwitcher, ReloadResult } from '../fuse/switcher';
import { ControlRequest, serveControl } from './control';
import { mountAt } from './preflight';
import { controlSocket, ensureRuntimeDir } from './runtime';

export interface DaemonOptions {
  readonly volfile: string;
  readonly mountpoint: string;
  readonly pidfile?: string;
  readonly switcher: GraphSwitcher;
  readonly mount: FuseMount;
  readonly log: Logger;
}

/** How often the daemon checks that its mount is still there (umount from outside ends it). */
const MOUNT_CHECK_MS = 2000;

/**
 * The process serving one mount: its pidfile, its control socket, its signals, and an
 * orderly shutdown (unmount, release what is open, take the graph down).
 */
export class MountDaemon {
  private control?: Server;
  private shuttingDown?: Promise<void>;
  private resolveDone!: () => void;
  /** Settles when the daemon has shut down. */
  readonly done = new Promise<void>((r) => (this.resolveDone = r));

  constructor(private readonly opts: DaemonOptions) {}

  async start(): Promise<void> {
    const { pidfile, mountpoint } = this.opts;
    if (pidfile) fs.writeFileSync(pidfile, `${process.pid}\n`);
    ensureRuntimeDir();
    this.control = await serveControl(controlSocket(mountpoint), (req) => this.command(req));
    process.on('SIGTERM', () => this.onSignal('SIGTERM'));
    process.on('SIGINT', () => this.onSignal('SIGINT'));
    process.on('SIGHUP', () => void this.reload().catch(() => undefined));
    process.on('SIGUSR1', () => this.dumpToFile());
    const check = setInterval(() => this.mounted() || this.unmountedFromOutside(check), MOUNT_CHECK_MS);
  }

  private mounted(): boolean {
    return mountAt(this.opts.mountpoint)?.fstype === 'fuse.xlstack';
  }

  /** Someone ran umount (or fusermount -u) on the mount: nothing more will come; stop serving. */
  private unmountedFromOutside(check: NodeJS.Timeout): void {
    clearInterval(check);
    if (this.shuttingDown) return;
    this.opts.log.warn(`${this.opts.mountpoint} was unmounted from outside; shutting down`);
    this.shuttingDown = this.teardown();
  }

  private async command(req: ControlRequest): Promise<unknown> {
    switch (req.cmd) {
      case 'unmount':
        return this.shutdown(false);
      case 'unmount-lazy':
        return this.shutdown(true);
      case 'statedump':
        return this.statedump();
      case 'reload':
        return this.reload();
      default:
        throw new Error(`unknown command '${req.cmd}'`);
    }
  }

  /** Reloads the volfile; a failure leaves the current graph serving and says why. */
  async reload(): Promise<ReloadResult> {
    const { switcher, volfile, log } = this.opts;
    try {
      const r = await switcher.reload();
      log.info(`reload: ${r.action}, graph ${r.graph}${r.detail ? ` (${r.detail})` : ''}`);
      return r;
    } catch (e) {
      log.error(`reload of ${volfile} failed; still serving graph ${switcher.bridge.active.id}:\n${(e as Error).message}`);
      throw e;
    }
  }

  private get bridge(): Bridge {
    return this.opts.switcher.bridge;
  }

  private onSignal(sig: string): void {
    this.opts.log.info(`${sig}: unmounting ${this.opts.mountpoint}`);
    // A signal means "stop now": if the mount is busy, detach it lazily rather than refuse.
    this.shutdown(false).catch(() => this.shutdown(true).catch((e) => this.opts.log.error(`unmount failed: ${(e as Error).message}`)));
  }

  /**
   * Unmounts (refusing, like umount, if busy unless `lazy`), then releases every open
   * handle and takes the graph down. Resolves once unmounted; the teardown follows.
   */
  shutdown(lazy: boolean): Promise<void> {
    if (this.shuttingDown) return this.shuttingDown;
    const { mount, log } = this.opts;
    // Already unmounted from outside: fusermount fails, and there is nothing left to refuse.
    const unmounted = mount.unmount(lazy).catch((e) => {
      if (this.mounted()) throw e;
    });
    this.shuttingDown = unmounted.then(() => {
      log.info(`unmounted ${this.opts.mountpoint}${lazy ? ' (lazily)' : ''}`);
      void this.teardown();
    });
    // A refused unmount leaves the daemon serving; a later attempt may try again.
    this.shuttingDown.catch(() => (this.shuttingDown = undefined));
    return this.shuttingDown;
  }

  private async teardown(): Promise<void> {
    const { switcher, pidfile, mountpoint, log } = this.opts;
    const bridge = this.bridge;
    try {
      bridge.stopSweeping();
      for (const base of [...bridge.basefds.all()]) await bridge.core.release(base.id);
      await switcher.stopAll();
    } catch (e) {
      log.error(`teardown: ${(e as Error).message}`);
    }
    this.control?.close();
    fs.rmSync(controlSocket(mountpoint), { force: true });
    if (pidfile) fs.rmSync(pidfile, { force: true });
    this.resolveDone();
  }

  /** The mount's state as one JSON document (collecting garbage first when node allows it). */
  statedump(): Record<string, unknown> {
    const { switcher, volfile, mountpoint } = this.opts;
    const gc = (globalThis as { gc?: () => void }).gc;
    gc?.();
    const mem = process.memoryUsage();
    return {
      pid: process.pid,
      time: new Date().toISOString(),
      volfile,
      mountpoint,
      memory: { rss: mem.rss, heapUsed: mem.heapUsed, afterGc: gc !== undefined },
      ...this.bridge.dump(),
      graphs: switcher.graphs().map((g) => g.dump()),
    };
  }

  /** SIGUSR1: the statedump goes to a file next to the control socket (GlusterFS naming). */
  private dumpToFile(): void {
    const file = path.join(ensureRuntimeDir(), `xlstack.${process.pid}.dump.${Math.floor(Date.now() / 1000)}`);
    try {
      fs.writeFileSync(file, JSON.stringify(this.statedump(), null, 2) + '\n');
      this.opts.log.info(`statedump written to ${file}`);
    } catch (e) {
      this.opts.log.error(`statedump failed: ${(e as Error).message}`);
    }
  }
}
