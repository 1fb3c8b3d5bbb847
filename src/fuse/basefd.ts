import { FopError } from '../core/errors';
import type { Fd } from '../core/fd';
import type { Graph } from '../core/graph';
import { Mutex } from '../core/mutex';
import type { Gfid } from '../core/types';

/** An fd and the graph it was opened on. */
export interface GraphFd {
  readonly graph: Graph;
  readonly fd: Fd;
}

/** Directory entries read from the graph but not yet taken by the transport (its buffer was full). */
export interface PendingEntries<E> {
  /** The cookie the transport resumes after: these entries follow it. */
  readonly after: number;
  readonly entries: E[];
}

/**
 * What the user opened, as the bridge records it. The kernel's `fh` names a BaseFd; the
 * BaseFd names the Fd that serves it now. Its own lock guards that choice.
 */
export class BaseFd {
  readonly lock: Mutex;
  /** Graphs this handle has had an Fd on. */
  readonly reached = new Set<number>();
  /** A reopen after a switch failed: the handle answers EBADF until released. */
  failed = false;
  /** The graph on which its file could not be found: no use asking it again. */
  stuckOn?: Graph;
  /** An error the next request on the handle reports, once (its old graph may have lost writes). */
  pendingError?: FopError;
  /** The open file every Fd of this handle continues (Fd.openId). */
  readonly openId: string;
  /** A directory listing's read-ahead (see BridgeCore.readdir). */
  pending?: PendingEntries<unknown>;

  constructor(
    readonly id: number,
    readonly gfid: Gfid,
    /** open(2) flags as given; O_CREAT/O_EXCL/O_TRUNC are dropped whenever it is reopened. */
    readonly flags: number,
    readonly isDir: boolean,
    /** Last path a path-based transport used for it (libfuse keeps it current across renames). */
    public path: string | undefined,
    public current: GraphFd,
  ) {
    this.lock = new Mutex(`handle ${id} (${gfid})`);
    this.openId = current.fd.openId;
    this.reached.add(current.graph.id);
  }

  /** For logs: the path if one is known, else the GFID. */
  get name(): string {
    return this.path ?? `<gfid:${this.gfid}>`;
  }

  /** Reports (once) an error left for the next request. */
  takePendingError(): FopError | undefined {
    const e = this.pendingError;
    this.pendingError = undefined;
    return e;
  }
}

const NONE: ReadonlySet<BaseFd> = new Set();

/** Told of every handle the kernel is given and every release (a record kept outside this process). */
export interface HandleObserver {
  opened(base: BaseFd): void;
  closed(fh: number): void;
}

/** BaseFds by handle. Handles are uint32 and 0 means "none" to fuse-native: they start at 1. */
export class BaseFdTable {
  private readonly map = new Map<number, BaseFd>();
  private readonly byGfid = new Map<Gfid, Set<BaseFd>>();
  private next = 1;
  observer?: HandleObserver;

  get size(): number {
    return this.map.size;
  }

  add(make: (id: number) => BaseFd): BaseFd {
    while (this.map.has(this.next)) this.advance();
    const base = make(this.next);
    this.map.set(base.id, base);
    let same = this.byGfid.get(base.gfid);
    if (!same) this.byGfid.set(base.gfid, (same = new Set()));
    same.add(base);
    this.advance();
    this.observer?.opened(base);
    return base;
  }

  /** A handle the kernel holds from a predecessor that died, under its number. */
  restore(base: BaseFd): void {
    if (this.map.has(base.id)) throw new Error(`handle ${base.id} is taken`);
    this.map.set(base.id, base);
    let same = this.byGfid.get(base.gfid);
    if (!same) this.byGfid.set(base.gfid, (same = new Set()));
    same.add(base);
    if (base.id >= this.next) this.next = base.id >= 0xffffffff ? 1 : base.id + 1;
  }

  /** The open handles of one file or directory. */
  withGfid(gfid: Gfid): ReadonlySet<BaseFd> {
    return this.byGfid.get(gfid) ?? NONE;
  }

  find(fh: number): BaseFd | undefined {
    return this.map.get(fh);
  }

  get(fh: number): BaseFd {
    const base = this.map.get(fh);
    if (!base) throw new FopError('EBADF', `no open handle ${fh}`);
    return base;
  }

  remove(fh: number): BaseFd {
    const base = this.get(fh);
    this.map.delete(fh);
    const same = this.byGfid.get(base.gfid)!;
    same.delete(base);
    if (same.size === 0) this.byGfid.delete(base.gfid);
    this.observer?.closed(fh);
    return base;
  }

  all(): IterableIterator<BaseFd> {
    return this.map.values();
  }

  private advance(): void {
    this.next = this.next >= 0xffffffff ? 1 : this.next + 1;
  }
}
