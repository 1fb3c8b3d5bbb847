// Open files and the fops that reach a file's data. The data may move (a migration) while
// the file is open: a fop that changes the file holds it shared (MIGRATE_DOMAIN) on the child
// it goes to, so no migration runs under it; and every fop on a file learns from the child
// whether the copy it used still has a name. A copy without one was left behind by a
// migration (or the file was unlinked): the file is looked for by GFID, and if it is found
// elsewhere, the open file moves there and the fop runs again there.
import { FdContext, FopError, Frame, Mutex, reopenFlags } from '../../../src/core/index';
import type { Caller, Fd, Inode, Loc, Xlator } from '../../../src/core/index';
import { Cluster, internal, isAbsent } from './cluster';
import { lockOn, MIGRATE_DOMAIN } from './locks';
import type { Lookups } from './lookup';

/** An open file: where its data is now, through which child fd. */
export interface OpenFile {
  readonly kind: 'file';
  child: number;
  fd: Fd;
  /** Who opened it: a move reopens with the same credentials. */
  readonly opener: Caller;
  /** Its copy lost its last name and the file is nowhere else (unlinked while open): it stays. */
  settled: boolean;
  readonly moving: Mutex;
}

/** An open directory: a child fd on every child that has a copy (undefined: none there). */
export interface OpenDir {
  readonly kind: 'dir';
  readonly fds: readonly (Fd | undefined)[];
}

/** How many times one fop follows its file to another child before it gives up on following. */
const MAX_MOVES = 3;

/** A fop's result, and the link count of the copy it reached (undefined: not known). */
type Reached<T> = { readonly value: T; readonly nlink?: number };

export class Files {
  readonly open: FdContext<OpenFile | OpenDir>;

  constructor(
    owner: Xlator,
    private readonly c: Cluster,
    private readonly lookups: Lookups,
  ) {
    this.open = new FdContext<OpenFile | OpenDir>(owner);
  }

  file(fd: Fd): OpenFile {
    const of = this.open.get(fd);
    if (!of) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.c.name}`);
    if (of.kind !== 'file') throw new FopError('EISDIR');
    return of;
  }

  dir(fd: Fd): OpenDir {
    const od = this.open.get(fd);
    if (!od) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.c.name}`);
    if (od.kind !== 'dir') throw new FopError('ENOTDIR');
    return od;
  }

  /** A child fd continuing `fd`'s open file (same flags as asked, same open file for locks). */
  childFd(fd: Fd, flags = fd.flags): Fd {
    return this.c.host.newFd(fd.inode, flags, fd.isDir, fd.openId);
  }

  /** Records an fd opened (or created) on child `i` through child fd `cfd`. */
  adopt(fd: Fd, i: number, cfd: Fd, opener: Caller): void {
    this.open.set(fd, { kind: 'file', child: i, fd: cfd, opener, settled: false, moving: new Mutex(`moving fd ${fd.id}`) });
  }

  /** Opens `fd` where the file's data is (again where it went, if it moved meanwhile). */
  async openFile(frame: Frame, loc: Loc, fd: Fd, truncates: boolean): Promise<void> {
    const inode = loc.inode!;
    for (let moves = 0; ; moves++) {
      const i = await this.lookups.cachedOf(frame, inode);
      const unlock = truncates ? await this.lock(frame, i, inode) : undefined;
      const cfd = this.childFd(fd);
      try {
        await this.c.children[i].open(frame, loc, cfd);
        this.adopt(fd, i, cfd, frame.caller);
        return;
      } catch (e) {
        await cfd.unref();
        const err = FopError.from(e);
        if (!isAbsent(err) || moves >= MAX_MOVES || (await this.lookups.moved(frame, inode, i)) === undefined) throw err;
      } finally {
        unlock?.();
      }
    }
  }

  /** The shared migration lock on a file where its data is: a migration waits for this fop, this fop for a migration. */
  lock(frame: Frame, i: number, inode: Inode): ReturnType<typeof lockOn> {
    return lockOn(this.c, i, MIGRATE_DOMAIN, { inode, gfid: inode.gfid }, 'read', this.c.bounds.fopWaitMs, `the migration of ${inode.gfid}`, frame.caller, frame);
  }

  /**
   * Runs a fop on an open file. `changes`: under the shared migration lock. The fop's own
   * result tells the copy's link count (`nlinkOf`), or an fstat alongside it does. A copy
   * with no name left: the file is looked for elsewhere; found, the open file moves there
   * and the fop runs again (what it did to the copy left behind reached nobody).
   */
  async onFile<T>(frame: Frame, fd: Fd, changes: boolean, fop: (child: Xlator, cfd: Fd) => Promise<T>, nlinkOf?: (v: T) => number | undefined): Promise<T> {
    for (let moves = 0; ; moves++) {
      const of = this.file(fd);
      const { child: i, fd: cfd } = of;
      const child = this.c.children[i];
      cfd.ref();
      let unlock: (() => void) | undefined;
      try {
        if (changes && !of.settled) unlock = await this.lock(frame, i, fd.inode);
        const r = await this.reach(of.settled, () => fop(child, cfd), () => child.fstat(frame, cfd), nlinkOf);
        if (of.settled || r.nlink === undefined || r.nlink > 0 || moves >= MAX_MOVES) return r.value;
        if (!(await this.follow(fd, of, i))) return r.value;
      } finally {
        unlock?.();
        void cfd.unref();
      }
    }
  }

  /**
   * Runs a fop on a file named by its inode, where its data is: the same as onFile, by
   * GFID. A child that no longer has the GFID (ESTALE) also sends it looking.
   */
  async onInode<T>(frame: Frame, inode: Inode, changes: boolean, fop: (child: Xlator, i: number) => Promise<T>, nlinkOf?: (v: T) => number | undefined): Promise<T> {
    for (let moves = 0; ; moves++) {
      const i = await this.lookups.cachedOf(frame, inode);
      const child = this.c.children[i];
      const unlock = changes ? await this.lock(frame, i, inode) : undefined;
      try {
        let r: Reached<T>;
        try {
          r = await this.reach(false, () => fop(child, i), () => child.stat(frame, { inode, gfid: inode.gfid }), nlinkOf);
        } catch (e) {
          const err = FopError.from(e);
          if (!isAbsent(err) || moves >= MAX_MOVES || (await this.lookups.moved(frame, inode, i)) === undefined) throw err;
          continue;
        }
        if (r.nlink === undefined || r.nlink > 0 || moves >= MAX_MOVES) return r.value;
        if ((await this.lookups.moved(frame, inode, i)) === undefined) return r.value;
      } finally {
        unlock?.();
      }
    }
  }

  /** The fop, and the link count of the copy it reached (from its result, or a stat alongside). */
  private async reach<T>(settled: boolean, fop: () => Promise<T>, stat: () => Promise<{ nlink: number }>, nlinkOf?: (v: T) => number | undefined): Promise<Reached<T>> {
    if (settled) return { value: await fop() };
    if (nlinkOf) {
      const value = await fop();
      return { value, nlink: nlinkOf(value) };
    }
    const st = stat().then(
      (s) => s.nlink,
      () => undefined,
    );
    const value = await fop();
    return { value, nlink: await st };
  }

  /**
   * The open file's copy on child `from` has no name: moves the open file to wherever the
   * file is now (once, however many fops notice at the same time). False if it is nowhere
   * else: it was unlinked, and its copy stays the file.
   */
  follow(fd: Fd, of: OpenFile, from: number): Promise<boolean> {
    return of.moving.run(
      () =>
        internal(
          this.c,
          'follow',
          async (frame) => {
            if (of.child !== from) return true;
            const to = await this.lookups.moved(frame, fd.inode, from);
            if (to === undefined) {
              of.settled = true;
              return false;
            }
            const cfd = this.childFd(fd, reopenFlags(fd.flags));
            try {
              await this.c.children[to].open(frame, { inode: fd.inode, gfid: fd.inode.gfid }, cfd);
            } catch (e) {
              await cfd.unref();
              throw e;
            }
            const old = of.fd;
            of.child = to;
            of.fd = cfd;
            this.c.log.debug(`fd ${fd.id} (${fd.inode.gfid}) followed its file from ${this.c.childName(from)} to ${this.c.childName(to)}`);
            void old.unref();
            return true;
          },
          of.opener,
        ),
      this.c.bounds.fopWaitMs,
    );
  }

  /** The last reference to `fd` went: its child fds go too. */
  async release(fd: Fd): Promise<void> {
    const o = this.open.take(fd);
    if (o?.kind === 'file') await o.fd.unref();
    else if (o?.kind === 'dir') await Promise.all(o.fds.map((f) => f?.unref()));
  }
}
