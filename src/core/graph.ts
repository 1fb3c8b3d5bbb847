import { BehaviorSubject, Subject, filter, firstValueFrom, timeout } from 'rxjs';
import { XlEvent } from './events';
import { Fd } from './fd';
import { Frame, FrameInit } from './frame';
import { Inode, InodeTable } from './inode';
import type { Logger } from './log';
import { Caller, ROOT_CALLER } from './types';
import type { Upcall } from './upcall';
import type { Volfile } from './volfile';
import type { Xlator, XlatorHost } from './xlator';

/**
 * built -> starting -> up | down (what its top last reported) -> active (serving new
 * requests) -> retired (replaced; serves only what still holds it) -> stopping -> dead.
 */
export type GraphState = 'built' | 'starting' | 'up' | 'down' | 'active' | 'retired' | 'stopping' | 'dead';

export type TopStatus = 'unknown' | 'up' | 'down';

export interface GraphOptions {
  readonly id: number;
  readonly volfile: Volfile;
  readonly log: Logger;
  readonly lruLimit?: number;
  readonly entryTimeoutMs?: number;
}

async function finiAll(xlators: Xlator[]): Promise<void> {
  for (const xl of xlators) {
    try {
      await xl.fini();
    } catch (e) {
      xl.log.error(`fini failed: ${(e as Error).message}`);
    }
  }
}

/**
 * One build of a volfile: its translators, its inode table, the frames and fds in
 * flight on it. Graphs are numbered; an old graph lives exactly as long as something
 * still uses it.
 */
export class Graph implements XlatorHost {
  readonly id: number;
  private currentVolfile: Volfile;
  readonly log: Logger;
  readonly itable: InodeTable;
  /** Translators in definition order: children before parents; the last is the top. */
  private xlatorList: Xlator[] = [];
  readonly xlators = new Map<string, Xlator>();
  private readonly pending = new Map<number, Frame>();
  readonly fds = new Set<Fd>();
  private _state: GraphState = 'built';
  private stopped?: Promise<void>;
  /** What the top of the graph last reported: are its children up? */
  readonly status$ = new BehaviorSubject<TopStatus>('unknown');
  /** PARENT_DOWN_HANDLED reached the top. */
  private readonly downHandled$ = new Subject<void>();
  /** Fires when nothing is in flight on the graph any more (no frames, no fds). */
  readonly idle$ = new Subject<void>();
  /** Upcalls that reached the top: what changed behind the graph's back (the bridge tells the kernel). */
  readonly upcall$ = new Subject<Upcall>();

  constructor(opts: GraphOptions) {
    this.id = opts.id;
    this.currentVolfile = opts.volfile;
    this.log = opts.log;
    this.itable = new InodeTable({
      lruLimit: opts.lruLimit ?? 65536,
      entryTimeoutMs: opts.entryTimeoutMs ?? 1000,
      onForget: (inode) => this.forgetInode(inode),
    });
  }

  /** Adds the translators, children first (the builder's job). */
  setXlators(list: Xlator[]): void {
    this.xlatorList = list;
    for (const xl of list) this.xlators.set(xl.name, xl);
  }

  /** The volfile the graph was built from, with the option values of the last reconfigure. */
  get volfile(): Volfile {
    return this.currentVolfile;
  }

  /**
   * Applies changed option values in place (the volfile changed only options), children
   * first, as GlusterFS does. `values` are each changed volume's validated options.
   */
  async reconfigure(volfile: Volfile, values: ReadonlyMap<string, unknown>): Promise<void> {
    for (const xl of this.xlatorList) {
      if (!values.has(xl.name)) continue;
      await xl.reconfigure(values.get(xl.name));
      xl.log.info('reconfigured');
    }
    this.currentVolfile = volfile;
  }

  get top(): Xlator {
    return this.xlatorList[this.xlatorList.length - 1];
  }

  get state(): GraphState {
    return this._state;
  }

  set state(s: GraphState) {
    this.log.debug(`graph ${this.id}: ${this._state} -> ${s}`);
    this._state = s;
    this.checkIdle();
  }

  get pendingFrames(): number {
    return this.pending.size;
  }

  get name(): string {
    return `${this.top.name}-${this.id}`;
  }

  // --- frames ---------------------------------------------------------------

  frame(op: string, who: Caller | FrameInit = ROOT_CALLER): Frame {
    return new Frame(this, op, who);
  }

  frameStarted(frame: Frame): void {
    this.pending.set(frame.unique, frame);
  }

  frameDone(frame: Frame): void {
    this.pending.delete(frame.unique);
    this.checkIdle();
  }

  // --- fds --------------------------------------------------------------------

  /** A new fd on an inode of this graph (continuing open file `openId`, if given); the last unref releases it on each translator. */
  newFd(inode: Inode, flags: number, isDir: boolean, openId?: string): Fd {
    if (inode.table !== this.itable) throw new Error(`graph ${this.id}: fd for an inode of another graph`);
    const fd = new Fd(inode, flags, isDir, (f) => this.releaseFd(f), openId);
    this.fds.add(fd);
    return fd;
  }

  private async releaseFd(fd: Fd): Promise<void> {
    try {
      // Top-down: a caching translator hands its data to the ones below before they close.
      for (const xl of [...this.xlatorList].reverse()) {
        if (!fd.ctx.has(xl)) continue;
        try {
          await xl.release(fd);
        } catch (e) {
          xl.log.error(`release of fd ${fd.id} failed: ${(e as Error).message}`);
        }
      }
    } finally {
      this.fds.delete(fd);
      this.checkIdle();
    }
  }

  private forgetInode(inode: Inode): void {
    for (const xl of this.xlatorList) if (inode.ctx.has(xl)) xl.forget(inode);
  }

  // --- lifecycle --------------------------------------------------------------

  /**
   * Initialises every translator (children first), sends PARENT_UP and waits, at most
   * `timeoutMs`, for the top to report whether its children are up. Returns that report.
   */
  async start(timeoutMs: number): Promise<TopStatus> {
    this.state = 'starting';
    for (const [i, xl] of this.xlatorList.entries()) {
      try {
        await xl.init();
      } catch (e) {
        // Undo what did start, parents first, so nothing it holds outlives the graph.
        await finiAll(this.xlatorList.slice(0, i).reverse());
        this.state = 'dead';
        this.complete();
        throw new Error(`graph ${this.id}: volume '${xl.name}' (${xl.type}) failed to start: ${(e as Error).message}`);
      }
    }
    for (const xl of this.xlatorList) if (xl.parents.length === 0) xl.notify(XlEvent.PARENT_UP);
    const status = await firstValueFrom(
      this.status$.pipe(
        filter((s) => s !== 'unknown'),
        timeout({ first: timeoutMs, with: async () => 'unknown' as const }),
      ),
      // stop() may end the graph while it is still starting.
      { defaultValue: 'unknown' as const },
    );
    if (this._state === 'starting') this.state = status === 'up' ? 'up' : 'down';
    return status;
  }

  /**
   * Takes the graph down: PARENT_DOWN from the top, each translator finishes its
   * background work, PARENT_DOWN_HANDLED comes back up (bounded by `timeoutMs`), then
   * `fini` top-down.
   */
  stop(timeoutMs: number): Promise<void> {
    if (this._state === 'dead') return Promise.resolve();
    this.stopped ??= this.takeDown(timeoutMs);
    return this.stopped;
  }

  private async takeDown(timeoutMs: number): Promise<void> {
    this.state = 'stopping';
    const handled = firstValueFrom(this.downHandled$.pipe(timeout({ first: timeoutMs, with: async () => 'timeout' as const })));
    for (const xl of this.xlatorList) if (xl.parents.length === 0) xl.notify(XlEvent.PARENT_DOWN);
    if ((await handled) === 'timeout') this.log.warn(`graph ${this.id}: PARENT_DOWN not handled within ${timeoutMs} ms; finishing anyway`);
    await finiAll([...this.xlatorList].reverse());
    this.state = 'dead';
    this.complete();
  }

  private complete(): void {
    this.status$.complete();
    this.idle$.complete();
    this.downHandled$.complete();
    this.upcall$.complete();
  }

  topEvent(event: XlEvent, from: Xlator): void {
    this.log.debug(`graph ${this.id}: ${event} from ${from.name}`);
    if (event === XlEvent.CHILD_UP) this.status$.next('up');
    else if (event === XlEvent.CHILD_DOWN) this.status$.next('down');
    else if (event === XlEvent.PARENT_DOWN_HANDLED) this.downHandled$.next();
  }

  topUpcall(upcall: Upcall, from: Xlator): void {
    if (this.log.enabled('debug')) this.log.debug(`graph ${this.id}: upcall from ${from.name}: ${JSON.stringify(upcall)}`);
    this.upcall$.next(upcall);
  }

  get isIdle(): boolean {
    return this.pending.size === 0 && this.fds.size === 0;
  }

  private checkIdle(): void {
    if (this.isIdle && !this.idle$.closed) this.idle$.next();
  }

  // --- statedump --------------------------------------------------------------

  dump(): Record<string, unknown> {
    return {
      id: this.id,
      state: this._state,
      top: this.top.name,
      status: this.status$.value,
      pendingFrames: this.pending.size,
      fdCount: this.fds.size,
      frames: [...this.pending.values()].map((f) => ({ unique: f.unique, op: f.op, ageMs: Date.now() - f.started })),
      xlators: this.xlatorList.map((xl) => ({ name: xl.name, type: xl.type, ...xl.dump() })),
      inodes: [...this.itable.all()].map((i) => ({
        gfid: i.gfid,
        path: this.itable.path(i),
        refs: i.refcount,
      })),
      fds: [...this.fds].map((fd) => ({ id: fd.id, openId: fd.openId, gfid: fd.inode.gfid, flags: fd.flags, refs: fd.refcount })),
    };
  }
}
