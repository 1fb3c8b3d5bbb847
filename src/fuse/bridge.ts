import { constants } from 'fs';
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../core/errors';
import type { Fd } from '../core/fd';
import type { Loc } from '../core/fops';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Logger } from '../core/log';
import type { Iatt, SetAttr, Statfs } from '../core/types';
import type { DirEntry, FuseOps, TimeArg } from './adapter';
import { BaseFd, BaseFdTable, GraphFd } from './basefd';
import { Resolver } from './resolver';

const READDIR_CHUNK = 128 * 1024;
// Not in fs.constants.
const O_ACCMODE = 0o3;

/**
 * The FUSE bridge: maps every kernel request onto the active graph. Paths are resolved on
 * the active graph; the kernel's handles name BaseFds, which name the Fd serving them.
 */
export class Bridge implements FuseOps {
  readonly basefds = new BaseFdTable();
  private activeGraph: Graph;

  constructor(
    graph: Graph,
    readonly log: Logger,
  ) {
    this.activeGraph = graph;
    graph.state = 'active';
  }

  get active(): Graph {
    return this.activeGraph;
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

  /** Runs a request on the Fd that serves handle `fh`, in a frame of that Fd's graph. */
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
    }
  }

  /** The Fd that serves a handle now. */
  protected async resolveFd(base: BaseFd): Promise<GraphFd> {
    return base.current;
  }

  private addBase(g: Graph, fd: Fd, path: string): number {
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

  private async closeBase(fh: number): Promise<void> {
    const base = this.basefds.remove(fh);
    await base.lock.run(() => base.current.fd.unref());
  }

  // --- attributes ----------------------------------------------------------------

  getattr(path: string): Promise<Iatt> {
    return this.onActive('getattr', (r) => r.attributes(path));
  }

  access(path: string, mask: number): Promise<void> {
    return this.onActive('access', async (r, g, frame) => g.top.access(frame, (await r.inode(path)).loc, mask));
  }

  statfs(path: string): Promise<Statfs> {
    return this.onActive('statfs', async (r, g, frame) => g.top.statfs(frame, (await r.inode(path)).loc));
  }

  readlink(path: string): Promise<string> {
    return this.onActive('readlink', async (r, g, frame) => g.top.readlink(frame, (await r.inode(path)).loc));
  }

  private setattr(op: string, path: string, attr: SetAttr): Promise<void> {
    return this.onActive(op, async (r, g, frame) => {
      await g.top.setattr(frame, (await r.inode(path)).loc, attr);
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
      await g.top.truncate(frame, (await r.inode(path)).loc, size);
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
      const iatt = await g.top.rename(frame, src.loc, dst.loc);
      g.itable.rename(src.parent, src.name, dst.parent, dst.name, iatt);
    });
  }

  // --- files ----------------------------------------------------------------------

  open(path: string, flags: number): Promise<number> {
    return this.onActive('open', async (r, g, frame) => {
      const { inode, loc } = await r.inode(path);
      if (inode.isDir && (flags & O_ACCMODE) !== constants.O_RDONLY) throw new FopError('EISDIR');
      const fd = g.newFd(inode, flags, false);
      return this.openFd(g, fd, path, () => g.top.open(frame, loc, fd));
    });
  }

  create(path: string, mode: number, flags: number): Promise<number> {
    return this.onActive('create', async (r, g, frame) => {
      const { parent, name } = await r.entry(path);
      const inode = g.itable.get(uuidv4());
      const fd = g.newFd(inode, flags | constants.O_CREAT, false);
      try {
        return await this.openFd(g, fd, path, async () => g.itable.link(await g.top.create(frame, { path, parent, name, inode }, mode, fd), parent, name));
      } catch (e) {
        g.itable.forget(inode);
        // The name appeared since the kernel's lookup: open what is there, as open(O_CREAT) does.
        if (FopError.from(e).code !== 'EEXIST') throw e;
        const existing = await r.lookup(parent, name, path);
        const fd2 = g.newFd(existing.inode, flags, false);
        return this.openFd(g, fd2, path, () => g.top.open(frame, { path, inode: existing.inode }, fd2));
      }
    });
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
    return this.onActive('getxattr', async (r, g, frame) => g.top.getxattr(frame, (await r.inode(path)).loc, name));
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.onActive('setxattr', async (r, g, frame) => g.top.setxattr(frame, (await r.inode(path)).loc, name, value, flags));
  }

  listxattr(path: string): Promise<string[]> {
    return this.onActive('listxattr', async (r, g, frame) => g.top.listxattr(frame, (await r.inode(path)).loc));
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.onActive('removexattr', async (r, g, frame) => g.top.removexattr(frame, (await r.inode(path)).loc, name));
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
      })),
    };
  }
}
