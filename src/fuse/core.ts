import { constants } from 'fs';
import { Subject } from 'rxjs';
import { v4 as uuidv4 } from 'uuid';
import { FopError, check } from '../core/errors';
import type { Fd } from '../core/fd';
import type { Loc } from '../core/fops';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Logger } from '../core/log';
import {
  Caller,
  Dirent,
  DirentPlus,
  Flock,
  Gfid,
  Iatt,
  LockCmd,
  LockKind,
  Name,
  ROOT_GFID,
  RENAME_EXCHANGE,
  SetAttr,
  Statfs,
} from '../core/types';
import type { Upcall } from '../core/upcall';
import { BaseFd, BaseFdTable, GraphFd } from './basefd';
import { LocalLocks } from './locallocks';
import { DEFAULT_MIGRATION_BOUNDS, MigrationBounds, Migrator, findByGfid } from './migrator';
import { BaseInode, NodeTable } from './nodes';
import { Resolver } from './resolver';

/**
 * How a transport names an object: a nodeid record (the kernel transport), or a path
 * (fuse-native). Both are hints, resolved on the active graph on each use.
 */
export type Hint = BaseInode | string;

/** Who asks, as a transport knows it, and how it may give up. */
export interface Req {
  readonly caller: Caller;
  /** The POSIX lock owner, for lk, flush and release ('' or absent: none). */
  readonly lkOwner?: string;
  onInterrupt?(fn: () => void): () => void;
  /** The GFID what this request makes must get (a request served again: the one chosen the first time). */
  readonly gfid?: Gfid;
}

/** An object a request found or made, on the graph that answered. */
export interface Found {
  readonly graph: Graph;
  readonly inode: Inode;
  readonly iatt: Iatt;
}

/** One entry of a listing. With attributes (readdirplus) it carries what lookup would have found. */
export interface ListEntry extends Dirent {
  readonly found?: Found;
}

/** Changes a setattr applies; `size` truncates. */
export interface SetAttrSize extends SetAttr {
  readonly size?: number;
}

export interface BridgeOptions {
  /** After a switch, handles nobody used are moved to the new graph this much later (ms; 0: never). */
  readonly sweepAfterMs?: number;
  readonly bounds?: MigrationBounds;
  /** Makes the migrator (tests pass older-design variants). */
  readonly migrator?: (active: () => Graph, log: Logger, bounds: MigrationBounds) => Migrator;
}

const hasAttrs = (a: SetAttr) => Object.values(a).some((v) => v !== undefined);

/** How much a listing asks the graph for at once. */
const READDIR_CHUNK = 128 * 1024;
/** Readdir cookies of "." and "..": the graph's cookies come after them. */
const DOT_COOKIES = 2;
const O_ACCMODE = 0o3;
/** The chunk copy_file_range moves at a time through the stack. */
const COPY_CHUNK = 1024 * 1024;

/**
 * The bridge core: maps requests onto the active graph, whatever the transport. Objects are
 * named by hints (nodeid records, paths) and handles by BaseFds, both resolved on the active
 * graph on use; after a switch nothing moves until it is used (or swept). The core knows no
 * transport: each transport is an adapter that turns its requests into these calls.
 */
export class BridgeCore {
  readonly basefds = new BaseFdTable();
  readonly nodes = new NodeTable();
  readonly migrator: Migrator;
  /** Locks of a graph without a lock translator: local to this mount, as on a local disk. */
  readonly localLocks: LocalLocks;
  /**
   * What changed behind the mount's back: upcalls that reached the top of a graph (another
   * client's change, told by its brick; a lost connection). A transport that can makes the
   * kernel drop what it caches of them. Emitted from wherever the upcall came (a socket's
   * event, never a request): a transport must not wait for the kernel where it gets them.
   */
  readonly invalidations$ = new Subject<Upcall>();
  private readonly watched = new WeakSet<Graph>();
  private activeGraph: Graph;
  private sweepTimer?: NodeJS.Timeout;
  private readonly bounds: MigrationBounds;

  constructor(
    graph: Graph,
    readonly log: Logger,
    private readonly opts: BridgeOptions = {},
  ) {
    this.activeGraph = graph;
    graph.state = 'active';
    this.bounds = opts.bounds ?? DEFAULT_MIGRATION_BOUNDS;
    const make = opts.migrator ?? ((a, l, b) => new Migrator(a, l, b));
    this.migrator = make(() => this.activeGraph, log, this.bounds);
    this.localLocks = new LocalLocks(log);
    this.watch(graph);
  }

  /** Passes on a graph's upcalls for as long as it lives (an older graph's connections are told too). */
  private watch(g: Graph): void {
    if (this.watched.has(g)) return;
    this.watched.add(g);
    g.upcall$.subscribe((u) => this.invalidations$.next(u));
  }

  get active(): Graph {
    return this.activeGraph;
  }

  /**
   * Makes `g` the graph new requests go to, in one step. Nothing waits: each open handle
   * moves to it on its own first use (or in the sweep, for handles left idle).
   */
  activate(g: Graph): void {
    this.activeGraph = g;
    g.state = 'active';
    this.watch(g);
    clearTimeout(this.sweepTimer);
    if (this.opts.sweepAfterMs) this.sweepTimer = setTimeout(() => void this.sweep(), this.opts.sweepAfterMs).unref();
  }

  /** Moves every handle still on an older graph, one at a time, as its first use would. */
  async sweep(): Promise<void> {
    for (const base of [...this.basefds.all()]) {
      if (base.current.graph === this.activeGraph || this.basefds.find(base.id) !== base) continue;
      await this.migrator.moveToActive(base);
    }
  }

  stopSweeping(): void {
    clearTimeout(this.sweepTimer);
  }

  /** A graph was cleaned up: nodeid records still on it find their inode again on next use. */
  graphGone(g: Graph): void {
    this.nodes.graphGone(g);
  }

  // --- how requests reach a graph ----------------------------------------------

  // Every request pays for what runs here: no objects or closures beyond the frame and its
  // interrupt listener. A fop's promise is awaited where it is made (`return await`, not
  // `return`): a rejection then finds its handler already attached, which spares Node's
  // unhandled-rejection bookkeeping (two calls into JavaScript for each such promise).

  /**
   * Runs a request on the active graph in a frame. A stale name (ESTALE: the object behind a
   * cached path is gone) is retried once with every name looked up afresh.
   */
  protected async onActive<T>(req: Req, op: string, fn: (g: Graph, frame: Frame, fresh: boolean) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const g = this.activeGraph;
      const frame = g.frame(op, req);
      const off = req.onInterrupt?.(() => frame.interrupt());
      try {
        return await fn(g, frame, attempt > 0);
      } catch (e) {
        const err = FopError.from(e);
        if (err.code !== 'ESTALE' || attempt > 0) throw err;
      } finally {
        off?.();
        frame.done();
      }
    }
  }

  /**
   * Runs a request on the Fd that serves handle `fh`, in a frame of that Fd's graph. The
   * request holds a reference on the Fd, so a migration never closes it underneath.
   */
  protected async onFd<T>(req: Req, op: string, fh: number, fn: (fd: Fd, g: Graph, frame: Frame, base: BaseFd) => Promise<T>): Promise<T> {
    const base = this.basefds.get(fh);
    const { graph, fd } = await this.migrator.resolve(base);
    // Another handle of the file may still be on an older graph, holding writes back: they
    // land first, or this request would read around them or be overwritten by them later.
    if (graph === this.activeGraph && this.onOlderGraph(base.gfid)) await this.catchUp(base.gfid).catch(() => undefined);
    const frame = graph.frame(op, req);
    const off = req.onInterrupt?.(() => frame.interrupt());
    try {
      const pending = base.takePendingError();
      if (pending) throw pending;
      return await fn(fd, graph, frame, base);
    } catch (e) {
      throw FopError.from(e);
    } finally {
      off?.();
      frame.done();
      void fd.unref();
    }
  }

  /** The inode a hint names on graph `g`. */
  protected async resolve(g: Graph, frame: Frame, hint: Hint, fresh: boolean): Promise<{ inode: Inode; loc: Loc }> {
    if (typeof hint === 'string') return new Resolver(g, frame, fresh).inode(hint);
    const cur = hint.current;
    const inode = cur?.graph === g ? cur.inode : await this.nodeOn(g, hint);
    return { inode, loc: { inode } };
  }

  /**
   * The inode a nodeid record names on graph `g`: a hit when it is already there; else found
   * by GFID (a nameless lookup), under the record's own lock, and kept.
   */
  protected async nodeOn(g: Graph, b: BaseInode): Promise<Inode> {
    const cur = b.current;
    if (cur?.graph === g) return cur.inode;
    if (b.gfid === ROOT_GFID) {
      b.serve(g, g.itable.root);
      return g.itable.root;
    }
    return b.lock.run(async () => {
      if (b.current?.graph === g) return b.current.inode;
      const inode = await findByGfid(g, b.gfid);
      if (!inode) throw new FopError('ESTALE', `nodeid ${b.nodeid}: GFID ${b.gfid} is gone from graph ${g.id}`);
      b.serve(g, inode);
      return inode;
    }, this.bounds.lockWaitMs);
  }

  /** A directory and a name in it, for fops that create, remove or rename that name. */
  protected async entry(g: Graph, frame: Frame, parent: Hint, name: Name, fresh: boolean): Promise<{ parent: Inode; loc: Loc }> {
    check(name !== '' && name !== '.' && name !== '..' && !name.includes('/'), 'EINVAL', `bad name ${JSON.stringify(name)}`);
    const dir = (await this.resolve(g, frame, parent, fresh)).inode;
    if (!dir.isDir) throw new FopError('ENOTDIR');
    const path = typeof parent === 'string' ? `${parent === '/' ? '' : parent}/${name}` : undefined;
    return { parent: dir, loc: { path, parent: dir, name, inode: g.itable.child(dir, name)?.inode } };
  }

  /** An existing object on the active graph, once older graphs have caught up on it. */
  protected async existing(g: Graph, frame: Frame, hint: Hint, fresh: boolean): Promise<{ inode: Inode; loc: Loc }> {
    const t = await this.resolve(g, frame, hint, fresh);
    if (this.onOlderGraph(t.inode.gfid)) await this.catchUp(t.inode.gfid);
    return t;
  }

  /**
   * Before the active graph answers about a file, its handles still on older graphs move to
   * it, which flushes what those graphs hold back (write-behind). Says whether any did.
   */
  protected async catchUp(gfid: Gfid): Promise<boolean> {
    let moved = false;
    for (const base of [...this.basefds.withGfid(gfid)]) {
      if (base.current.graph === this.activeGraph) continue;
      moved = true;
      await this.migrator.moveToActive(base);
    }
    return moved;
  }

  /** Whether a handle of the file is still on an older graph. */
  private onOlderGraph(gfid: Gfid): boolean {
    for (const base of this.basefds.withGfid(gfid)) if (base.current.graph !== this.activeGraph) return true;
    return false;
  }

  protected addBase(g: Graph, fd: Fd, path: string | undefined): number {
    return this.basefds.add((id) => new BaseFd(id, fd.inode.gfid, fd.flags, fd.isDir, path, { graph: g, fd })).id;
  }

  /** Opens `fd` with `open` (undoing everything if that fails) and hands out a handle. */
  private async openFd(g: Graph, fd: Fd, path: string | undefined, open: () => Promise<unknown>): Promise<number> {
    try {
      await open();
    } catch (e) {
      await fd.unref();
      throw e;
    }
    return this.addBase(g, fd, path);
  }

  // --- lookups and attributes ----------------------------------------------------

  /** A name in a directory, looked up on the active graph. */
  /** A name in a directory, looked up on the active graph (the attributes are the kernel's to cache: older graphs catch up first). */
  lookup(req: Req, parent: Hint, name: Name): Promise<Found> {
    return this.onActive(req, 'lookup', async (g, frame, fresh) => {
      const at = await this.entry(g, frame, parent, name, fresh);
      const look = () => new Resolver(g, frame).lookup(at.parent, name, at.loc.path);
      const found = await look();
      const gfid = found.inode.gfid;
      return { graph: g, ...(this.onOlderGraph(gfid) && (await this.catchUp(gfid)) ? await look() : found) };
    });
  }

  /** The object a hint names, with its attributes (a lookup of "."). */
  self(req: Req, target: Hint): Promise<Found> {
    return this.onActive(req, 'lookup', async (g, frame, fresh) => {
      const { inode, loc } = await this.resolve(g, frame, target, fresh);
      return { graph: g, inode, iatt: await g.top.stat(frame, loc) };
    });
  }

  /** The directory a directory is in, as far as names looked up tell (a lookup of ".."). */
  dotdot(req: Req, target: Hint): Promise<Found> {
    return this.onActive(req, 'lookup', async (g, frame, fresh) => {
      const { inode } = await this.resolve(g, frame, target, fresh);
      const up = inode === g.itable.root ? inode : [...inode.dentries][0]?.parent;
      if (!up) throw new FopError('ENOENT', `the parent of ${inode.gfid} is not known`);
      return { graph: g, inode: up, iatt: await g.top.stat(frame, { inode: up }) };
    });
  }

  /**
   * The attributes of an object, fresh from the graph (by its open handle when given: an
   * unlinked file still answers). Writes an older graph still holds back for the file
   * change what they should say, so those handles catch up first.
   */
  async getattr(req: Req, target: Hint, fh?: number): Promise<Iatt> {
    if (fh !== undefined && this.basefds.find(fh)) return this.onFd(req, 'fstat', fh, (fd, g, frame) => g.top.fstat(frame, fd));
    const found = this.onActive(req, 'getattr', async (g, frame, fresh) => {
      const attrs = () => (typeof target === 'string' ? new Resolver(g, frame, fresh).attributes(target) : this.statNode(g, frame, target));
      const iatt = await attrs();
      return this.onOlderGraph(iatt.gfid) && (await this.catchUp(iatt.gfid)) ? attrs() : iatt;
    });
    return typeof target === 'string' ? found : found.catch((e) => this.statOpen(req, target.gfid, e));
  }

  private async statNode(g: Graph, frame: Frame, b: BaseInode): Promise<Iatt> {
    const cur = b.current;
    const inode = cur?.graph === g ? cur.inode : await this.nodeOn(g, b);
    return await g.top.stat(frame, { inode });
  }

  /**
   * The attributes of an object the graph cannot find by GFID any more (unlinked, a directory
   * removed) while something still has it open: the kernel asks by nodeid, the open handle answers.
   */
  private async statOpen(req: Req, gfid: Gfid, err: unknown): Promise<Iatt> {
    const base = this.openHandle(gfid, err);
    return this.onFd(req, 'fstat', base.id, (fd, g, frame) => g.top.fstat(frame, fd));
  }

  /** An open handle of a file the graph no longer finds (else `err` stands). */
  private openHandle(gfid: Gfid, err: unknown): BaseFd {
    const code = FopError.from(err).code;
    const base = [...this.basefds.withGfid(gfid)][0];
    if (!base || (code !== 'ESTALE' && code !== 'ENOENT')) throw err;
    return base;
  }

  /** setattr: a size truncates first (through the handle when given), then the rest applies. */
  async setattr(req: Req, target: Hint, attr: SetAttrSize, fh?: number): Promise<Iatt> {
    if (fh !== undefined && this.basefds.find(fh)) return this.fsetattr(req, fh, attr);
    const done = this.onActive(req, 'setattr', async (g, frame, fresh) => {
      const { loc } = await this.existing(g, frame, target, fresh);
      const { size, ...rest } = attr;
      let iatt = size !== undefined ? await g.top.truncate(frame, loc, size) : undefined;
      if (hasAttrs(rest) || !iatt) iatt = await g.top.setattr(frame, loc, rest);
      return iatt;
    });
    if (typeof target === 'string') return done;
    // fchmod, futimens... of a file the graph cannot find by GFID any more (unlinked, a
    // removed directory) come by nodeid: its open handle serves them.
    return done.catch((e) => {
      const base = this.openHandle(target.gfid, e);
      return this.fsetattr(req, base.id, attr);
    });
  }

  private fsetattr(req: Req, fh: number, attr: SetAttrSize): Promise<Iatt> {
    const { size, ...rest } = attr;
    return this.onFd(req, 'setattr', fh, async (fd, g, frame) => {
      let iatt = size !== undefined ? await g.top.ftruncate(frame, fd, size) : undefined;
      if (hasAttrs(rest) || !iatt) iatt = await g.top.fsetattr(frame, fd, rest);
      return iatt;
    });
  }

  access(req: Req, target: Hint, mask: number): Promise<void> {
    return this.onActive(req, 'access', async (g, frame, fresh) => await g.top.access(frame, (await this.existing(g, frame, target, fresh)).loc, mask));
  }

  readlink(req: Req, target: Hint): Promise<Name> {
    return this.onActive(req, 'readlink', async (g, frame, fresh) => await g.top.readlink(frame, (await this.existing(g, frame, target, fresh)).loc));
  }

  statfs(req: Req, target: Hint): Promise<Statfs> {
    return this.onActive(req, 'statfs', async (g, frame, fresh) => await g.top.statfs(frame, (await this.resolve(g, frame, target, fresh)).loc));
  }

  getxattr(req: Req, target: Hint, name: string): Promise<Buffer> {
    return this.onActive(req, 'getxattr', async (g, frame, fresh) => await g.top.getxattr(frame, (await this.existing(g, frame, target, fresh)).loc, name));
  }

  setxattr(req: Req, target: Hint, name: string, value: Buffer, flags: number): Promise<void> {
    return this.onActive(req, 'setxattr', async (g, frame, fresh) => await g.top.setxattr(frame, (await this.existing(g, frame, target, fresh)).loc, name, value, flags));
  }

  listxattr(req: Req, target: Hint): Promise<string[]> {
    return this.onActive(req, 'listxattr', async (g, frame, fresh) => await g.top.listxattr(frame, (await this.existing(g, frame, target, fresh)).loc));
  }

  removexattr(req: Req, target: Hint, name: string): Promise<void> {
    return this.onActive(req, 'removexattr', async (g, frame, fresh) => await g.top.removexattr(frame, (await this.existing(g, frame, target, fresh)).loc, name));
  }

  // --- namespace -------------------------------------------------------------------

  /** Creates a new entry with a GFID chosen here, so its inode exists before the fop runs. */
  private makeEntry(req: Req, op: string, parent: Hint, name: Name, make: (g: Graph, frame: Frame, loc: Loc) => Promise<Iatt>): Promise<Found> {
    return this.onActive(req, op, async (g, frame, fresh) => {
      const at = await this.entry(g, frame, parent, name, fresh);
      const inode = g.itable.get(req.gfid ?? uuidv4());
      try {
        const iatt = await make(g, frame, { ...at.loc, inode });
        return { graph: g, inode: g.itable.link(iatt, at.parent, name), iatt };
      } catch (e) {
        g.itable.forget(inode);
        throw e;
      }
    });
  }

  mknod(req: Req, parent: Hint, name: Name, mode: number, rdev: number): Promise<Found> {
    return this.makeEntry(req, 'mknod', parent, name, (g, frame, loc) => g.top.mknod(frame, loc, mode, rdev));
  }

  mkdir(req: Req, parent: Hint, name: Name, mode: number): Promise<Found> {
    return this.makeEntry(req, 'mkdir', parent, name, (g, frame, loc) => g.top.mkdir(frame, loc, mode));
  }

  symlink(req: Req, parent: Hint, name: Name, target: Name): Promise<Found> {
    return this.makeEntry(req, 'symlink', parent, name, (g, frame, loc) => g.top.symlink(frame, target, loc));
  }

  link(req: Req, target: Hint, parent: Hint, name: Name): Promise<Found> {
    return this.onActive(req, 'link', async (g, frame, fresh) => {
      const src = await this.existing(g, frame, target, fresh);
      const dst = await this.entry(g, frame, parent, name, fresh);
      const iatt = await g.top.link(frame, src.loc, dst.loc);
      return { graph: g, inode: g.itable.link(iatt, dst.parent, name), iatt };
    });
  }

  private remove(req: Req, op: 'unlink' | 'rmdir', parent: Hint, name: Name): Promise<void> {
    return this.onActive(req, op, async (g, frame, fresh) => {
      const { parent: dir, loc } = await this.entry(g, frame, parent, name, fresh);
      await g.top[op](frame, loc);
      g.itable.unlink(dir, name);
    });
  }

  unlink(req: Req, parent: Hint, name: Name): Promise<void> {
    return this.remove(req, 'unlink', parent, name);
  }

  rmdir(req: Req, parent: Hint, name: Name): Promise<void> {
    return this.remove(req, 'rmdir', parent, name);
  }

  rename(req: Req, parent: Hint, name: Name, newParent: Hint, newName: Name, flags: number): Promise<void> {
    return this.onActive(req, 'rename', async (g, frame, fresh) => {
      const src = await this.entry(g, frame, parent, name, fresh);
      const dst = await this.entry(g, frame, newParent, newName, fresh);
      const iatt = await g.top.rename(frame, src.loc, dst.loc, flags);
      if (flags & RENAME_EXCHANGE) {
        // Both names now name the other object: lookups will say which.
        g.itable.unlink(src.parent, name);
        g.itable.unlink(dst.parent, newName);
      } else {
        g.itable.rename(src.parent, name, dst.parent, newName, iatt);
      }
    });
  }

  // --- files ------------------------------------------------------------------------

  open(req: Req, target: Hint, flags: number): Promise<number> {
    return this.onActive(req, 'open', async (g, frame, fresh) => {
      const { inode, loc } = await this.existing(g, frame, target, fresh);
      if (inode.isDir && (flags & O_ACCMODE) !== constants.O_RDONLY) throw new FopError('EISDIR');
      const fd = g.newFd(inode, flags, false);
      return this.openFd(g, fd, loc.path, () => g.top.open(frame, loc, fd));
    });
  }

  /**
   * Creates and opens a file. Its GFID is chosen here, so its inode is in the table before
   * the fop is sent: whoever looks the new name up meanwhile finds that same inode, and the
   * fd's inode never needs to change. A name that appeared since the kernel's lookup is
   * opened, as open(O_CREAT) does (unless O_EXCL).
   */
  create(req: Req, parent: Hint, name: Name, mode: number, flags: number): Promise<{ fh: number; found: Found }> {
    return this.onActive(req, 'create', async (g, frame, fresh) => {
      const at = await this.entry(g, frame, parent, name, fresh);
      try {
        const { fd, iatt } = await this.createOn(g, frame, at.loc, mode, flags | constants.O_CREAT, req.gfid);
        return { fh: this.addBase(g, fd, at.loc.path), found: { graph: g, inode: fd.inode, iatt } };
      } catch (e) {
        if (FopError.from(e).code !== 'EEXIST' || flags & constants.O_EXCL) throw e;
        const existing = await new Resolver(g, frame).lookup(at.parent, name, at.loc.path);
        const fd = g.newFd(existing.inode, flags & ~constants.O_CREAT, false);
        const fh = await this.openFd(g, fd, at.loc.path, () => g.top.open(frame, { path: at.loc.path, inode: existing.inode }, fd));
        return { fh, found: { graph: g, ...existing } };
      }
    });
  }

  protected async createOn(g: Graph, frame: Frame, at: Loc, mode: number, flags: number, gfid?: Gfid): Promise<{ fd: Fd; iatt: Iatt }> {
    const inode = g.itable.get(gfid ?? uuidv4());
    const fd = g.newFd(inode, flags, false);
    try {
      const iatt = await g.top.create(frame, { ...at, inode }, mode, fd);
      g.itable.link(iatt, at.parent, at.name);
      return { fd, iatt };
    } catch (e) {
      await fd.unref();
      g.itable.forget(inode);
      throw e;
    }
  }

  read(req: Req, fh: number, size: number, offset: number): Promise<Buffer> {
    return this.onFd(req, 'read', fh, (fd, g, frame) => g.top.read(frame, fd, size, offset));
  }

  write(req: Req, fh: number, data: Buffer, offset: number): Promise<number> {
    return this.onFd(req, 'write', fh, (fd, g, frame) => g.top.write(frame, fd, data, offset));
  }

  /** close(2) of one of the process's fds: the owner's POSIX locks on the file go too. */
  async flush(req: Req, fh: number): Promise<void> {
    await this.onFd(req, 'flush', fh, (fd, g, frame) => g.top.flush(frame, fd));
    if (req.lkOwner) this.localLocks.closed(this.basefds.get(fh).gfid, req.lkOwner);
  }

  fsync(req: Req, fh: number, datasync: boolean): Promise<void> {
    return this.onFd(req, 'fsync', fh, (fd, g, frame) => g.top.fsync(frame, fd, datasync));
  }

  fallocate(req: Req, fh: number, mode: number, offset: number, length: number): Promise<void> {
    return this.onFd(req, 'fallocate', fh, (fd, g, frame) => g.top.fallocate(frame, fd, mode, offset, length));
  }

  seek(req: Req, fh: number, offset: number, what: 'data' | 'hole'): Promise<number> {
    return this.onFd(req, 'seek', fh, (fd, g, frame) => g.top.seek(frame, fd, offset, what));
  }

  /** copy_file_range, through the stack: reads from one handle, writes to the other. */
  async copyFileRange(req: Req, fhIn: number, offIn: number, fhOut: number, offOut: number, length: number): Promise<number> {
    let done = 0;
    while (done < length) {
      const data = await this.read(req, fhIn, Math.min(COPY_CHUNK, length - done), offIn + done);
      if (data.length === 0) break;
      const n = await this.write(req, fhOut, data, offOut + done);
      done += n;
      if (n < data.length) break;
    }
    return done;
  }

  /**
   * Locks. A graph without a lock translator answers ENOSYS: the bridge then keeps the locks
   * itself, so they hold between the processes of this mount as on a local disk.
   */
  lk(req: Req, fh: number, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    return this.onFd(req, 'lk', fh, async (fd, g, frame, base) => {
      try {
        return await g.top.lk(frame, fd, cmd, lock, kind);
      } catch (e) {
        if (FopError.from(e).code !== 'ENOSYS') throw e;
        return this.localLocks.lk(base, frame, cmd, lock, kind);
      }
    });
  }

  /** The handle is closed: release its Fd (any earlier one was released when it moved on). */
  async release(fh: number): Promise<void> {
    const base = this.basefds.remove(fh);
    this.localLocks.released(base);
    await this.migrator.close(base);
  }

  // --- directories ---------------------------------------------------------------------

  opendir(req: Req, target: Hint): Promise<number> {
    return this.onActive(req, 'opendir', async (g, frame, fresh) => {
      const { inode, loc } = await this.resolve(g, frame, target, fresh);
      if (!inode.isDir) throw new FopError('ENOTDIR');
      const fd = g.newFd(inode, constants.O_RDONLY, true);
      return this.openFd(g, fd, loc.path, () => g.top.opendir(frame, loc, fd));
    });
  }

  /**
   * Lists a directory from cookie `offset`, handing entries to `take` until it says its
   * buffer is full. What the graph returned beyond that is kept for the next call from the
   * last cookie taken, so a listing never asks the graph for the same entries twice.
   * "." and ".." come first. With `plus`, each entry carries what a lookup would have found.
   */
  readdir(req: Req, fh: number, offset: number, plus: boolean, take: (e: ListEntry) => boolean): Promise<void> {
    return this.onFd(req, plus ? 'readdirp' : 'readdir', fh, async (fd, g, frame, base) => {
      if (offset < DOT_COOKIES) {
        const self = await g.top.fstat(frame, fd);
        for (const name of ['.', '..'].slice(offset)) {
          const e = { name, offset: name === '.' ? 1 : 2, ino: self.ino, type: constants.S_IFDIR };
          if (!take(e)) return;
        }
      }
      let cookie = Math.max(offset, DOT_COOKIES);
      for (;;) {
        const entries = this.pendingFrom(base, cookie) ?? (await this.listChunk(g, frame, fd, cookie, plus));
        if (entries.length === 0) return;
        for (let i = 0; i < entries.length; i++) {
          if (!take(entries[i])) {
            base.pending = { after: cookie, entries: entries.slice(i) };
            return;
          }
          cookie = entries[i].offset;
        }
      }
    });
  }

  private pendingFrom(base: BaseFd, cookie: number): ListEntry[] | undefined {
    const p = base.pending;
    base.pending = undefined;
    return p && p.after === cookie ? (p.entries as ListEntry[]) : undefined;
  }

  private async listChunk(g: Graph, frame: Frame, fd: Fd, cookie: number, plus: boolean): Promise<ListEntry[]> {
    const from = cookie - DOT_COOKIES;
    const shift = (e: Dirent) => ({ name: e.name, ino: e.ino, type: e.type, offset: e.offset + DOT_COOKIES });
    if (!plus) return (await g.top.readdir(frame, fd, READDIR_CHUNK, from)).map(shift);
    const entries: DirentPlus[] = await g.top.readdirp(frame, fd, READDIR_CHUNK, from);
    return entries.map((e) => {
      // Attributes an older graph may still change (writes it holds back) are not given out.
      if (!e.iatt || this.onOlderGraph(e.iatt.gfid)) return shift(e);
      return { ...shift(e), found: { graph: g, inode: g.itable.link(e.iatt, fd.inode, e.name), iatt: e.iatt } };
    });
  }

  fsyncdir(req: Req, fh: number, datasync: boolean): Promise<void> {
    return this.onFd(req, 'fsyncdir', fh, (fd, g, frame) => g.top.fsyncdir(frame, fd, datasync));
  }

  releasedir(fh: number): Promise<void> {
    return this.release(fh);
  }

  // --- statedump -------------------------------------------------------------------------

  dump(): Record<string, unknown> {
    return {
      activeGraph: this.activeGraph.id,
      baseFds: [...this.basefds.all()].map((b) => ({
        fh: b.id,
        gfid: b.gfid,
        path: b.path,
        flags: b.flags,
        isDir: b.isDir,
        graph: b.current.graph.id,
        fd: b.current.fd.id,
        reached: [...b.reached],
        failed: b.failed,
      })),
      nodeids: this.nodes.dump(),
      localLocks: this.localLocks.dump(),
    };
  }
}

export type { GraphFd };
