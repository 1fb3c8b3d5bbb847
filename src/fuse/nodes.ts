import { FopError } from '../core/errors';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import { Mutex } from '../core/mutex';
import { Gfid, ROOT_GFID } from '../core/types';

/** The inode serving a base inode now, and its graph. */
export interface GraphInode {
  readonly graph: Graph;
  readonly inode: Inode;
}

/**
 * What a nodeid names: the bridge's record of an object the kernel knows. The kernel holds
 * the nodeid as a hint; the record keeps the GFID, how many lookups the kernel has not yet
 * forgotten, and the inode serving it now, which may be on an older graph (then it is found
 * again on the active graph by GFID, under the record's own lock, on first use).
 */
export class BaseInode {
  /** Lookups the kernel has not forgotten yet. */
  nlookup = 0;
  readonly lock: Mutex;
  /** Undefined once its graph is gone: found again by GFID on next use. */
  current?: GraphInode;

  constructor(
    readonly nodeid: number,
    readonly gfid: Gfid,
  ) {
    this.lock = new Mutex(`nodeid ${nodeid} (${gfid})`);
  }

  /** Points the record at `inode` (holding a reference on it) and lets go of the previous one. */
  serve(graph: Graph, inode: Inode): void {
    const old = this.current;
    if (old?.inode === inode) return;
    this.current = { graph, inode: inode.ref() };
    old?.inode.unref();
  }

  drop(): void {
    this.current?.inode.unref();
    this.current = undefined;
  }
}

export const ROOT_NODEID = 1;

/** Told of every lookup the kernel is given and every forget (a record kept outside this process). */
export interface NodeObserver {
  looked(nodeid: number, gfid: Gfid): void;
  forgot(nodeid: number, n: number): void;
}

/**
 * The nodeids the kernel holds. One GFID has one nodeid (hard links share it, as they share
 * st_ino); a nodeid is never reused (EXPORT_SUPPORT asks that), so its generation is always 0.
 */
export class NodeTable {
  readonly root = new BaseInode(ROOT_NODEID, ROOT_GFID);
  private readonly byId = new Map<number, BaseInode>([[ROOT_NODEID, this.root]]);
  private readonly byGfid = new Map<Gfid, BaseInode>([[ROOT_GFID, this.root]]);
  private next = ROOT_NODEID + 1;
  observer?: NodeObserver;

  get size(): number {
    return this.byId.size;
  }

  /** The record a nodeid names; the kernel never sends one it was not given (else ESTALE). */
  get(nodeid: number): BaseInode {
    const b = this.byId.get(nodeid);
    if (!b) throw new FopError('ESTALE', `no nodeid ${nodeid}`);
    return b;
  }

  /** The record of a nodeid, if the kernel holds it. */
  withId(nodeid: number): BaseInode | undefined {
    return this.byId.get(nodeid);
  }

  withGfid(gfid: Gfid): BaseInode | undefined {
    return this.byGfid.get(gfid);
  }

  /** An entry reply tells the kernel about `inode`: its record, with one more lookup counted. */
  remember(graph: Graph, inode: Inode): BaseInode {
    let b = this.byGfid.get(inode.gfid);
    if (!b) {
      b = new BaseInode(this.next++, inode.gfid);
      this.byId.set(b.nodeid, b);
      this.byGfid.set(b.gfid, b);
    }
    // The freshest inode serves: one on the graph that just answered.
    if (b.current?.graph !== graph || b.current.inode !== inode) b.serve(graph, inode);
    b.nlookup++;
    this.observer?.looked(b.nodeid, b.gfid);
    return b;
  }

  /**
   * Takes over what the kernel holds from a predecessor that died (its record): each nodeid
   * with its GFID and lookup count, found on a graph by GFID on first use.
   */
  restore(entries: Iterable<readonly [number, Gfid, number]>, maxNodeid = ROOT_NODEID): void {
    this.next = Math.max(this.next, maxNodeid + 1);
    for (const [nodeid, gfid, nlookup] of entries) {
      if (nodeid === ROOT_NODEID) continue;
      const b = new BaseInode(nodeid, gfid);
      b.nlookup = nlookup;
      this.byId.set(nodeid, b);
      this.byGfid.set(gfid, b);
      this.next = Math.max(this.next, nodeid + 1);
    }
  }

  /** The kernel dropped `n` lookups; the record goes with the last (the root never does). */
  forget(nodeid: number, n: number): void {
    const b = this.byId.get(nodeid);
    if (!b || b === this.root) return;
    this.observer?.forgot(nodeid, n);
    b.nlookup -= n;
    if (b.nlookup > 0) return;
    this.byId.delete(nodeid);
    if (this.byGfid.get(b.gfid) === b) this.byGfid.delete(b.gfid);
    b.drop();
  }

  /** A graph was cleaned up: records still on it let go of its inodes. */
  graphGone(g: Graph): void {
    for (const b of this.byId.values()) if (b.current?.graph === g) b.drop();
  }

  /** The kernel forgets everything at unmount. */
  clear(): void {
    for (const b of this.byId.values()) b.drop();
    this.byId.clear();
    this.byGfid.clear();
    this.byId.set(ROOT_NODEID, this.root);
    this.byGfid.set(ROOT_GFID, this.root);
  }

  all(): IterableIterator<BaseInode> {
    return this.byId.values();
  }

  dump(): Record<string, unknown>[] {
    return [...this.byId.values()].map((b) => ({ nodeid: b.nodeid, gfid: b.gfid, nlookup: b.nlookup, graph: b.current?.graph.id ?? null }));
  }
}
