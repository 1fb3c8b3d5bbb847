import { constants } from 'fs';
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../core/errors';
import { Fd, reopenFlags } from '../core/fd';
import type { Loc } from '../core/fops';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Logger } from '../core/log';
import type { Gfid, Iatt, SetAttr, Statfs } from '../core/types';
import type { DirEntry, FuseOps, TimeArg } from './adapter';
import { BaseFd, BaseFdTable, GraphFd } from './basefd';
import { InodeTarget, Resolver } from './resolver';

const READDIR_CHUNK = 128 * 1024;

/** The GraphFd with a reference taken for the caller. */
export const held = (g: GraphFd): GraphFd => (g.fd.ref(), g);
// Not in fs.constants.
const O_ACCMODE = 0o3;

export interface BridgeOptions {
  /** After a switch, handles nobody used are moved to the new graph this much later (ms; 0: never). */
  readonly sweepAfterMs?: number;
}

/**
 * The FUSE bridge: maps every kernel request onto the active graph. Paths are resolved on
 * the active graph; the kernel's handles name BaseFds, which name the Fd serving them and
 * move it to the active graph on their first use after a switch.
 */
export class Bridge implements FuseOps {
  readonly basefds = new BaseFdTable();
  private activeGraph: Graph;
  private sweepTimer?: NodeJS.Timeout;

  constructor(
    graph: Graph,
    readonly log: Logger,
    private readonly opts: BridgeOptions = {},
  ) {
    this.activeGraph = graph;
    graph.state = 'active';
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
    clearTimeout(this.sweepTimer);
    if (this.opts.sweepAfterMs) this.sweepTimer = setTimeout(() => void this.sweep(), this.opts.sweepAfterMs).unref();
  }

  /** Moves every handle still on an older graph, one at a time, as its first use would. */
  async sweep(): Promise<void> {
    for (const base of [...this.basefds.all()]) {
      if (base.current.graph === this.activeGraph || this.basefds.find(base.id) !== base) continue;
      await this.moveToActive(base);
    }
  }

  /** Migrates a handle nobody is using now; a failure is its own next user's to see. */
  private moveToActive(base: BaseFd): Promise<void> {
    return this.resolveFd(base).then(
      (r) => r.fd.unref(),
      () => undefined,
    );
  }

  stopSweeping(): void {
    clearTimeout(this.sweepTimer);
  }

  // --- how requests reach a graph ---------------------------------------------

  /**
   * Runs a path-based request on the active graph in a frame. A stale name (ESTALE: the
   * object behind a cached name is gone) is retried once with every name looked up afresh.
   */
  private async onActive<T>(op: string, fn: (r: Resolver, g: Graph, frame: Frame) => Promise<T>): Promise<T> {
    for (let attempt = 0; ; attempt++) {
      const g = this.activeGraph;
      const frame = g.frame(op);
      try {
        return await fn(new Resolver(g, frame, attempt > 0), g, frame);
      } catch (e) {
        const err = FopError.from(e);
        if (err.code !== 'ESTALE' || attempt > 0) throw err;
      } finally {
        frame.done();
      }
    }
  }

  /**
   * Runs a request on the Fd that serves handle `fh`, in a frame of that Fd's graph. The
   * request holds a reference on the Fd, so a migration never closes it underneath.
   */
  private async onFd<T>(op: string, path: string, fh: number, fn: (fd: Fd, g: Graph, frame: Frame) => Promise<T>): Promise<T> {
    const base = this.basefds.get(fh);
    base.path = path;
    const { graph, fd } = await this.resolveFd(base);
    const frame = graph.frame(op);
    try {
      return await fn(fd, graph, frame);
    } catch (e) {
      throw FopError.from(e);
    } finally {
      frame.done();
      void fd.unref();
    }
  }

  /**
   * The Fd that serves a handle now, with a reference the caller drops. A handle whose Fd
   * is on the active graph is a hit; otherwise it migrates, under its own lock. The
   * reference is taken in the same step as the choice, so nothing can close it in between.
   */
  protected resolveFd(base: BaseFd): Promise<GraphFd> {
    if (base.current.graph === this.activeGraph) return Promise.resolve(held(base.current));
    return base.lock.run(async () => held(await this.migrate(base)));
  }

  /**
   * Moves a handle to the active graph: flush what the old graph holds for it, find its
   * inode on the new graph (by GFID, else by path), open a new Fd with the original flags
   * (minus create/exclusive/truncate), keep it, and drop the old one. A file the new graph
   * cannot find keeps its old graph until released; a reopen that fails leaves this handle
   * EBADF from then on (unless the new graph is down, which a later switch may mend).
   */
  protected async migrate(base: BaseFd): Promise<GraphFd> {
    const target = this.activeGraph;
    const from = base.current;
    if (from.graph === target || base.stuckOn === target) return from;
    if (base.failed) throw new FopError('EBADF', `handle ${base.id} (${base.path}) could not be reopened after a graph switch`);
    await this.flushOld(base, from);
    const inode = await this.findOn(target, base);
    const fd = inode && (await this.reopen(target, base, inode));
    if (!fd) return this.stay(base, target, from);
    base.current = { graph: target, fd };
    base.reached.add(target.id);
    this.log.debug(`handle ${base.id} (${base.path}): graph ${from.graph.id} -> ${target.id}`);
    this.dropOld(from);
    return base.current;
  }

  /** What the old graph holds back for a file (write-behind) must reach storage before the new Fd serves. */
  protected async flushOld(base: BaseFd, from: GraphFd): Promise<void> {
    if (!base.isDir) await this.inFrame(from.graph, 'flush', (frame) => from.graph.top.flush(frame, from.fd));
  }

  /**
   * Opens the handle's file on the target graph with its original flags (minus
   * create/exclusive/truncate). Undefined: the graph cannot find it. A failure on a graph
   * whose children are down is passed on (a later switch may mend it); any other makes the
   * handle EBADF for good. A failed open leaves nothing behind.
   */
  protected async reopen(target: Graph, base: BaseFd, inode: Inode): Promise<Fd | undefined> {
    const fd = target.newFd(inode, reopenFlags(base.flags), base.isDir);
    try {
      await this.inFrame(target, 'open', (frame) => {
        const loc = { path: base.path, inode };
        return base.isDir ? target.top.opendir(frame, loc, fd) : target.top.open(frame, loc, fd);
      });
      return fd;
    } catch (e) {
      await this.discard(fd);
      const err = FopError.from(e);
      if (err.code === 'ENOTCONN') throw err;
      if (err.code === 'ESTALE' || err.code === 'ENOENT') return undefined;
      base.failed = true;
      this.log.error(`handle ${base.id} (${base.path}): reopen on graph ${target.id} failed (${err.code}); it answers EBADF from now on`);
      throw new FopError('EBADF', `handle ${base.id} could not be reopened on graph ${target.id}`);
    }
  }

  /** An Fd that never served: release whatever its open left on the translators. */
  protected discard(fd: Fd): Promise<void> {
    return fd.unref();
  }

  /** The handle moved on: drop its reference on the old Fd (requests still on it keep theirs). */
  protected dropOld(from: GraphFd): void {
    void from.fd.unref();
  }

  /** The new graph cannot find the handle's file: the old graph keeps serving it until released. */
  protected stay(base: BaseFd, target: Graph, from: GraphFd): GraphFd {
    base.stuckOn = target;
    this.log.warn(`handle ${base.id} (${base.path}): GFID ${base.gfid} not found on graph ${target.id}; it stays on graph ${from.graph.id} until released`);
    return from;
  }

  /** The inode of a handle on another graph: by GFID first, then by its path, checked by GFID. */
  protected async findOn(g: Graph, base: BaseFd): Promise<Inode | undefined> {
    const known = g.itable.find(base.gfid);
    if (known?.type) return known;
    try {
      return await this.inFrame(g, 'lookup', async (frame) => g.itable.link(await g.top.lookup(frame, { path: `<gfid:${base.gfid}>`, gfid: base.gfid })));
    } catch (e) {
      const code = FopError.from(e).code;
      if (code !== 'ESTALE' && code !== 'ENOENT') throw e;
    }
    try {
      const byPath = await this.inFrame(g, 'lookup', (frame) => new Resolver(g, frame, true).inode(base.path));
      return byPath.inode.gfid === base.gfid ? byPath.inode : undefined;
    } catch {
      return undefined;
    }
  }

  protected async inFrame<T>(g: Graph, op: string, fn: (frame: Frame) => Promise<T>): Promise<T> {
    const frame = g.frame(op);
    try {
      return await fn(frame);
    } finally {
      frame.done();
    }
  }

  protected addBase(g: Graph, fd: Fd, path: string): number {
    return this.basefds.add((id) => new BaseFd(id, fd.inode.gfid, fd.flags, fd.isDir, path, { graph: g, fd })).id;
  }

  /** Opens `fd` with `open` (undoing everything if that fails) and hands out a handle. */
  private async openFd(g: Graph, fd: Fd, path: string, open: () => Promise<unknown>): Promise<number> {
    try {
      await open();
    } catch (e) {
      await fd.unref();
      throw e;
    }
    return this.addBase(g, fd, path);
  }

  /** The handle is closed: release its Fd (any earlier one was released when it moved on). */
  protected async closeBase(fh: number): Promise<void> {
    const base = this.basefds.remove(fh);
    await base.lock.run(() => base.current.fd.unref());
  }

  // --- attributes ----------------------------------------------------------------

  /** The attributes of `path`, fresh from the active graph (fuse-native sends fstat this way too). */
  getattr(path: string): Promise<Iatt> {
    return this.onActive('getattr', async (r) => {
      const iatt = await r.attributes(path);
      // Writes an older graph still holds back for the file change what it should say.
      return (await this.catchUp(iatt.gfid)) ? r.attributes(path) : iatt;
    });
  }

  /**
   * Before the active graph answers about a file, its handles still on older graphs move
   * to it, which flushes what those graphs hold back (write-behind). Says whether any did.
   */
  protected async catchUp(gfid: Gfid): Promise<boolean> {
    let moved = false;
    for (const base of [...this.basefds.withGfid(gfid)]) {
      if (base.current.graph === this.activeGraph) continue;
      moved = true;
      await this.moveToActive(base);
    }
    return moved;
  }

  /** An existing object by path, on the active graph, once older graphs have caught up on it. */
  private async existing(r: Resolver, path: string): Promise<InodeTarget> {
    const t = await r.inode(path);
    await this.catchUp(t.inode.gfid);
    return t;
  }

  access(path: string, mask: number): Promise<void> {
    return this.onActive('access', async (r, g, frame) => g.top.access(frame, (await this.existing(r, path)).loc, mask));
  }

  statfs(path: string): Promise<Statfs> {
    return this.onActive('statfs', async (r, g, frame) => g.top.statfs(frame, (await r.inode(path)).loc));
  }

  readlink(path: string): Promise<string> {
    return this.onActive('readlink', async (r, g, frame) => g.top.readlink(frame, (await this.existing(r, path)).loc));
  }

  private setattr(op: string, path: string, attr: SetAttr): Promise<void> {
    return this.onActive(op, async (r, g, frame) => {
      await g.top.setattr(frame, (await this.existing(r, path)).loc, attr);
    });
  }

  chmod(path: string, mode: number): Promise<void> {
    return this.setattr('chmod', path, { mode });
  }

  chown(path: string, uid: number | undefined, gid: number | undefined): Promise<void> {
    return this.setattr('chown', path, { uid, gid });
  }

  utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
    return this.setattr('utimens', path, { atime, mtime });
  }

  truncate(path: string, size: number): Promise<void> {
    return this.onActive('truncate', async (r, g, frame) => {
      await g.top.truncate(frame, (await this.existing(r, path)).loc, size);
    });
  }

  // --- namespace -------------------------------------------------------------------

  /** Creates a new entry with a GFID chosen here, so its inode exists before the fop runs. */
  private makeEntry(op: string, path: string, make: (g: Graph, frame: Frame, loc: Loc) => Promise<Iatt>): Promise<void> {
    return this.onActive(op, async (r, g, frame) => {
      const { parent, name } = await r.entry(path);
      const inode = g.itable.get(uuidv4());
      try {
        g.itable.link(await make(g, frame, { path, parent, name, inode }), parent, name);
      } catch (e) {
        g.itable.forget(inode);
        throw e;
      }
    });
  }

  mknod(path: string, mode: number, rdev: number): Promise<void> {
    return this.makeEntry('mknod', path, (g, frame, loc) => g.top.mknod(frame, loc, mode, rdev));
  }

  mkdir(path: string, mode: number): Promise<void> {
    return this.makeEntry('mkdir', path, (g, frame, loc) => g.top.mkdir(frame, loc, mode));
  }

  symlink(target: string, path: string): Promise<void> {
    return this.makeEntry('symlink', path, (g, frame, loc) => g.top.symlink(frame, target, loc));
  }

  link(from: string, to: string): Promise<void> {
    return this.onActive('link', async (r, g, frame) => {
      const src = await r.inode(from);
      const dst = await r.entry(to);
      g.itable.link(await g.top.link(frame, src.loc, dst.loc), dst.parent, dst.name);
    });
  }

  private remove(op: 'unlink' | 'rmdir', path: string): Promise<void> {
    return this.onActive(op, async (r, g, frame) => {
      const { parent, name, loc } = await r.entry(path);
      await g.top[op](frame, loc);
      g.itable.unlink(parent, name);
    });
  }

  unlink(path: string): Promise<void> {
    return this.remove('unlink', path);
  }

  rmdir(path: string): Promise<void> {
    return this.remove('rmdir', path);
  }

  rename(from: string, to: string): Promise<void> {
    return this.onActive('rename', async (r, g, frame) => {
      const src = await r.entry(from);
      const dst = await r.entry(to);
      const iatt = await g.top.rename(frame, src.loc, dst.loc, 0);
      g.itable.rename(src.parent, src.name, dst.parent, dst.name, iatt);
    });
  }

  // --- files ----------------------------------------------------------------------

  open(path: string, flags: number): Promise<number> {
    return this.onActive('open', async (r, g, frame) => {
      const { inode, loc } = await this.existing(r, path);
      if (inode.isDir && (flags & O_ACCMODE) !== constants.O_RDONLY) throw new FopError('EISDIR');
      const fd = g.newFd(inode, flags, false);
      return this.openFd(g, fd, path, () => g.top.open(frame, loc, fd));
    });
  }

  create(path: string, mode: number, flags: number): Promise<number> {
    return this.onActive('create', async (r, g, frame) => {
      const { parent, name } = await r.entry(path);
      try {
        return this.addBase(g, await this.createOn(g, frame, { path, parent, name }, mode, flags | constants.O_CREAT), path);
      } catch (e) {
        // The name appeared since the kernel's lookup: open what is there, as open(O_CREAT) does.
        if (FopError.from(e).code !== 'EEXIST') throw e;
        const existing = await r.lookup(parent, name, path);
        const fd = g.newFd(existing.inode, flags, false);
        return this.openFd(g, fd, path, () => g.top.open(frame, { path, inode: existing.inode }, fd));
      }
    });
  }

  /**
   * Creates and opens a file. Its GFID is chosen here, so its inode is in the table before
   * the fop is sent: whoever looks the new name up meanwhile finds that same inode, and the
   * fd's inode never needs to change.
   */
  protected async createOn(g: Graph, frame: Frame, at: Loc, mode: number, flags: number): Promise<Fd> {
    const inode = g.itable.get(uuidv4());
    const fd = g.newFd(inode, flags, false);
    try {
      g.itable.link(await g.top.create(frame, { ...at, inode }, mode, fd), at.parent, at.name);
      return fd;
    } catch (e) {
      await fd.unref();
      g.itable.forget(inode);
      throw e;
    }
  }

  read(path: string, fh: number, size: number, offset: number): Promise<Buffer> {
    return this.onFd('read', path, fh, (fd, g, frame) => g.top.read(frame, fd, size, offset));
  }

  write(path: string, fh: number, data: Buffer, offset: number): Promise<number> {
    return this.onFd('write', path, fh, (fd, g, frame) => g.top.write(frame, fd, data, offset));
  }

  flush(path: string, fh: number): Promise<void> {
    return this.onFd('flush', path, fh, (fd, g, frame) => g.top.flush(frame, fd));
  }

  fsync(path: string, fh: number, datasync: boolean): Promise<void> {
    return this.onFd('fsync', path, fh, (fd, g, frame) => g.top.fsync(frame, fd, datasync));
  }

  async ftruncate(path: string, fh: number, size: number): Promise<void> {
    await this.onFd('ftruncate', path, fh, (fd, g, frame) => g.top.ftruncate(frame, fd, size));
  }

  release(_path: string, fh: number): Promise<void> {
    return this.closeBase(fh);
  }

  // --- directories -------------------------------------------------------------------

  opendir(path: string): Promise<number> {
    return this.onActive('opendir', async (r, g, frame) => {
      const { inode, loc } = await r.inode(path);
      const fd = g.newFd(inode, constants.O_RDONLY, true);
      return this.openFd(g, fd, path, () => g.top.opendir(frame, loc, fd));
    });
  }

  /**
   * fuse-native's readdir gets a path but no handle and wants every entry at once, so the
   * listing is read through an fd of its own.
   */
  readdir(path: string): Promise<DirEntry[]> {
    return this.onActive('readdir', async (r, g, frame) => {
      const { inode, loc } = await r.inode(path);
      const fd = g.newFd(inode, constants.O_RDONLY, true);
      try {
        await g.top.opendir(frame, loc, fd);
        const self = await g.top.fstat(frame, fd);
        const out: DirEntry[] = [
          { name: '.', ino: self.ino, type: constants.S_IFDIR },
          { name: '..', ino: self.ino, type: constants.S_IFDIR },
        ];
        for (let offset = 0; ; ) {
          const chunk = await g.top.readdir(frame, fd, READDIR_CHUNK, offset);
          if (chunk.length === 0) return out;
          for (const e of chunk) out.push({ name: e.name, ino: e.ino, type: e.type });
          offset = chunk[chunk.length - 1].offset;
        }
      } finally {
        await fd.unref();
      }
    });
  }

  fsyncdir(path: string, fh: number, datasync: boolean): Promise<void> {
    return this.onFd('fsyncdir', path, fh, (fd, g, frame) => g.top.fsyncdir(frame, fd, datasync));
  }

  releasedir(_path: string, fh: number): Promise<void> {
    return this.closeBase(fh);
  }

  // --- extended attributes -------------------------------------------------------------

  getxattr(path: string, name: string): Promise<Buffer> {
    return this.onActive('getxattr', async (r, g, frame) => g.top.getxattr(frame, (await this.existing(r, path)).loc, name));
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.onActive('setxattr', async (r, g, frame) => g.top.setxattr(frame, (await this.existing(r, path)).loc, name, value, flags));
  }

  listxattr(path: string): Promise<string[]> {
    return this.onActive('listxattr', async (r, g, frame) => g.top.listxattr(frame, (await this.existing(r, path)).loc));
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.onActive('removexattr', async (r, g, frame) => g.top.removexattr(frame, (await this.existing(r, path)).loc, name));
  }

  // --- statedump ---------------------------------------------------------------------------

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
    };
  }
}
