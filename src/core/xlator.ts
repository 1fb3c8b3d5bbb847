import { FopError } from './errors';
import { XlEvent } from './events';
import type { Fd } from './fd';
import { DataChangingFop, FOP_NAMES, FopArgs, FopName, FopResult, Fops, Loc, gfidOfLoc } from './fops';
import type { Frame, FrameInit } from './frame';
import type { Inode, InodeTable } from './inode';
import type { Logger } from './log';
import type { Caller, Gfid } from './types';
import type { Upcall } from './upcall';

/** What a translator may ask of the graph it belongs to. */
export interface XlatorHost {
  readonly id: number;
  readonly log: Logger;
  /** The graph's inodes (a server finds the inodes of the GFIDs its clients send here). */
  readonly itable: InodeTable;
  /** An event reached a translator without parents: the graph handles it. */
  topEvent(event: XlEvent, from: Xlator): void;
  /** An upcall reached a translator without parents: the graph passes it on (to the bridge). */
  topUpcall?(upcall: Upcall, from: Xlator): void;
  /** A frame counted on this graph: for background work, or for a request from a remote caller. */
  frame(op: string, who?: Caller | FrameInit): Frame;
  /** A new fd on an inode of this graph (a server opening files for its clients). */
  newFd(inode: Inode, flags: number, isDir: boolean, openId?: string): Fd;
}

export interface XlatorInit<V> {
  readonly name: string;
  readonly type: string;
  readonly options: V;
  readonly children: readonly Xlator[];
  readonly host: XlatorHost;
}

// A graph may be a chain of any depth (a volfile of 10,000 volumes is valid), so neither an
// event nor a fop may need a stack frame per level.

/** Events (and upcalls) waiting to be delivered, in the order they were sent (see deliver()). */
const events: { to: Xlator; event: XlEvent | Upcall; from?: Xlator }[] = [];
let delivering = false;

/**
 * Hands `event` (or an upcall) to `to`. Delivery is iterative: an event sent while another
 * is being delivered waits in line and goes out when that one returns, so propagating
 * through a chain of any depth takes no stack per level. Everything sent is delivered
 * before the outermost send returns.
 */
function deliver(to: Xlator, event: XlEvent | Upcall, from?: Xlator): void {
  events.push({ to, event, from });
  if (delivering) return;
  delivering = true;
  try {
    for (let i = 0; i < events.length; i++) {
      const e = events[i];
      try {
        if (typeof e.event === 'string') e.to.notify(e.event, e.from);
        else e.to.upcall(e.event, e.from);
      } catch (err) {
        // One translator's bug must not stop the event reaching the others.
        const what = typeof e.event === 'string' ? e.event : 'an upcall';
        e.to.log.error(`handling ${what}${e.from ? ` from ${e.from.name}` : ''} failed: ${(err as Error).message}`);
      }
    }
  } finally {
    events.length = 0;
    delivering = false;
  }
}

/**
 * How many levels one fop winds down on the caller's stack; past that it goes on from a
 * fresh one (a microtask), so a chain of any depth fits the stack.
 */
const MAX_SYNC_WIND_DEPTH = 256;
/** Levels the fop being wound now went down without returning (synchronous nesting). */
let windDepth = 0;

// Declaration merging: an Xlator has every fop; the defaults are installed below.
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export interface Xlator extends Fops {}

/**
 * A translator. Every fop defaults to winding the call, unchanged, to the first child;
 * a translator overrides only the fops it cares about.
 */
// eslint-disable-next-line @typescript-eslint/no-unsafe-declaration-merging
export class Xlator<V = unknown> {
  readonly name: string;
  readonly type: string;
  options: V;
  readonly children: readonly Xlator[];
  readonly parents: Xlator[] = [];
  readonly host: XlatorHost;
  readonly log: Logger;
  private parentDownSeen = false;
  private drained = false;
  private downHandledSent = false;
  private readonly downHandled = new Set<Xlator>();

  constructor(init: XlatorInit<V>) {
    this.name = init.name;
    this.type = init.type;
    this.options = init.options;
    this.children = init.children;
    this.host = init.host;
    this.log = init.host.log.child(`${init.name}-${init.host.id}`);
    for (const c of init.children) c.parents.push(this);
  }

  /** Sets up the translator; children are initialised before their parents. */
  async init(): Promise<void> {}

  /** Frees everything; called parents first, after the graph went down. */
  async fini(): Promise<void> {}

  /** Applies changed options in place (the volfile changed only option values). */
  async reconfigure(options: V): Promise<void> {
    this.options = options;
  }

  /** The last reference to an fd this translator keeps state for (fd.ctx) is gone. */
  async release(_fd: Fd): Promise<void> {}

  /** The inode table dropped an inode: free its context. */
  forget(_inode: Inode): void {}

  /**
   * A client of the graph is gone (a server's last connection from that client process
   * closed): what it held that is not tied to an fd (internal locks) goes. `owner` is the
   * prefix of its lock owners. Passed down to every child.
   */
  clientGone(owner: string): void {
    for (const c of this.children) c.clientGone(owner);
  }

  /** This translator's part of a statedump. */
  dump(): Record<string, unknown> {
    return {};
  }

  /** Finishes background work when the graph goes down, before the children do. */
  protected async drain(): Promise<void> {}

  /** Default event routing (GlusterFS's default_notify); override and call super for the rest. */
  notify(event: XlEvent, from?: Xlator): void {
    switch (event) {
      case XlEvent.PARENT_UP:
        if (this.children.length === 0) this.up(XlEvent.CHILD_DOWN);
        for (const c of this.children) deliver(c, event, this);
        return;
      case XlEvent.PARENT_DOWN:
        if (this.parentDownSeen) return;
        this.parentDownSeen = true;
        void this.goDown();
        return;
      case XlEvent.PARENT_DOWN_HANDLED:
        if (from) this.downHandled.add(from);
        this.maybeDownDone();
        return;
      default:
        this.up(event);
    }
  }

  /** Sends an event towards the top. */
  protected up(event: XlEvent): void {
    if (this.parents.length === 0) this.host.topEvent(event, this);
    for (const p of this.parents) deliver(p, event, this);
  }

  /**
   * Something changed behind the graph's back (see Upcall). The default passes it on
   * towards the top; a cache drops what it holds about it first, then calls super.
   */
  upcall(upcall: Upcall, _from?: Xlator): void {
    this.sendUpcall(upcall);
  }

  /** Sends an upcall towards the top (a translator that learns of a change starts one here). */
  protected sendUpcall(upcall: Upcall): void {
    if (this.parents.length === 0) this.host.topUpcall?.(upcall, this);
    for (const p of this.parents) deliver(p, upcall, this);
  }

  /** Passes a fop, unchanged, to the first child. */
  protected wind<K extends FopName>(op: K, ...args: FopArgs<K>): Promise<FopResult<K>> {
    const child = this.children[0];
    if (!child) return Promise.reject(new FopError('ENOTCONN', `${this.name} has no subvolume to serve ${op}`));
    const call = () => (child[op] as unknown as (...a: FopArgs<K>) => Promise<FopResult<K>>).apply(child, args);
    // Microtasks run on an empty stack, where windDepth is back to 0.
    if (windDepth >= MAX_SYNC_WIND_DEPTH) return Promise.resolve().then(call);
    windDepth++;
    try {
      return call();
    } finally {
      windDepth--;
    }
  }

  /**
   * Replaces every fop of a translator class with `around`, which decides what to do and
   * may pass the call on with `next()` (trace, error and delay injection use this).
   */
  static interceptAll<T extends Xlator>(
    cls: { prototype: T },
    around: (xl: T, op: FopName, args: unknown[], next: () => Promise<unknown>) => Promise<unknown>,
  ): void {
    for (const op of FOP_NAMES) {
      Object.defineProperty(cls.prototype, op, {
        configurable: true,
        writable: true,
        value(this: T, ...args: unknown[]) {
          return around(this, op, args, () => (this.wind as (o: FopName, ...a: unknown[]) => Promise<unknown>)(op, ...args));
        },
      });
    }
  }

  /**
   * Makes the fops that change a file's data (write, truncate, ftruncate, fallocate), those a
   * translator class does not define itself, wind on and then, however they ended, call
   * `changed` with the file's GFID: a cache drops what the fop may have changed.
   */
  static afterDataChanges<T extends Xlator>(cls: { prototype: T }, changed: (xl: T, gfid: Gfid | undefined) => void): void {
    const target: Record<DataChangingFop, (args: unknown[]) => Gfid | undefined> = {
      write: (a) => (a[0] as Fd).inode.gfid,
      ftruncate: (a) => (a[0] as Fd).inode.gfid,
      fallocate: (a) => (a[0] as Fd).inode.gfid,
      truncate: (a) => gfidOfLoc(a[0] as Loc),
    };
    for (const [op, gfidOf] of Object.entries(target) as [DataChangingFop, (args: unknown[]) => Gfid | undefined][]) {
      if (Object.prototype.hasOwnProperty.call(cls.prototype, op)) continue;
      Object.defineProperty(cls.prototype, op, {
        configurable: true,
        writable: true,
        value(this: T, frame: Frame, ...args: unknown[]) {
          return (this.wind as (o: FopName, ...a: unknown[]) => Promise<unknown>)(op, frame, ...args).finally(() => changed(this, gfidOf(args)));
        },
      });
    }
  }

  /**
   * Makes the fops a translator class defines reject only with FopError, converting
   * anything else (a Node fs error, say) by its errno: for translators over system APIs.
   */
  static convertErrors<T extends Xlator>(cls: { prototype: T }): void {
    for (const op of FOP_NAMES) {
      if (!Object.prototype.hasOwnProperty.call(cls.prototype, op)) continue;
      const fop = cls.prototype[op] as (...a: unknown[]) => Promise<unknown>;
      Object.defineProperty(cls.prototype, op, {
        configurable: true,
        writable: true,
        value(this: T, ...args: unknown[]) {
          return fop.apply(this, args).catch((e: unknown) => {
            throw FopError.from(e);
          });
        },
      });
    }
  }

  private async goDown(): Promise<void> {
    try {
      await this.drain();
    } catch (e) {
      this.log.error(`finishing background work before going down failed: ${(e as Error).message}`);
    }
    this.drained = true;
    for (const c of this.children) deliver(c, XlEvent.PARENT_DOWN, this);
    this.maybeDownDone();
  }

  /** Down once this translator drained and every child reported down (a shared child may report early). */
  private maybeDownDone(): void {
    if (this.downHandledSent || !this.drained || this.downHandled.size < this.children.length) return;
    this.downHandledSent = true;
    this.up(XlEvent.PARENT_DOWN_HANDLED);
  }
}

Xlator.interceptAll(Xlator, (_xl, _op, _args, next) => next());
