// Names of files: new ones go to their hashed child; a hard link or a rename keeps the data
// where it is (same child, same GFID, open fds untouched) and gives the new name a linkto
// file on its hashed child when that is another one; removing a name removes its linkto file.
// Every change to a file's names holds the file shared against migrations (MIGRATE_DOMAIN).
import { FopError, Frame, RENAME_EXCHANGE, RENAME_NOREPLACE } from '../../../src/core/index';
import type { Fd, Iatt, Inode, Loc, Name } from '../../../src/core/index';
import { withIno } from './attrs';
import { Cluster, internal, isAbsent, settle } from './cluster';
import type { Dirs } from './dirs';
import type { Files } from './files';
import { makeLinkto } from './linkto';
import type { Lookups } from './lookup';

export class Names {
  constructor(
    private readonly c: Cluster,
    private readonly dirs: Dirs,
    private readonly lookups: Lookups,
    private readonly files: Files,
  ) {}

  private entry(loc: Loc): { parent: Inode; name: Name } {
    if (!loc.parent || loc.name === undefined) throw new FopError('EINVAL', 'an entry fop needs a parent and a name');
    return { parent: loc.parent, name: loc.name };
  }

  /** A new object of any kind but a directory, made on its name's hashed child. */
  async make(frame: Frame, loc: Loc, fop: (i: number) => Promise<Iatt>): Promise<Iatt> {
    const { parent, name } = this.entry(loc);
    const h = await this.dirs.hashed(frame, parent, name);
    if (!this.c.isUp(h)) throw new FopError('ENOTCONN', `${name}: its hashed child ${this.c.childName(h)} is down`);
    const iatt = await fop(h);
    if (loc.inode) this.c.place(loc.inode, { kind: 'file', cached: h });
    return withIno(iatt);
  }

  async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    return this.make(frame, loc, async (h) => {
      const cfd = this.files.childFd(fd);
      try {
        const iatt = await this.c.children[h].create(frame, loc, mode, cfd);
        this.files.adopt(fd, h, cfd, frame.caller);
        return iatt;
      } catch (e) {
        await cfd.unref();
        throw e;
      }
    });
  }

  /** The inode a name names (looked up if the caller did not know it). */
  private async target(frame: Frame, loc: Loc): Promise<Inode> {
    if (loc.inode) return loc.inode;
    const iatt = await this.lookups.lookup(frame, loc);
    return this.c.host.itable.get(iatt.gfid);
  }

  /** Removes a file's name: on the child with its data, then its linkto file on the hashed child. */
  async unlink(frame: Frame, loc: Loc): Promise<void> {
    const { parent, name } = this.entry(loc);
    const inode = await this.target(frame, loc);
    if (inode.isDir) throw new FopError('EISDIR');
    const h = await this.dirs.hashed(frame, parent, name).catch(() => undefined);
    const cached = await this.files.onInode(frame, inode, true, async (child, i) => {
      await child.unlink(frame, { parent, name, inode });
      return i;
    }, () => 1);
    if (h !== undefined && h !== cached) await this.dropLinkto(h, { parent, name, inode });
  }

  /** Removes the linkto file a name has on child `h`, if it is one and it is that file's. */
  private async dropLinkto(h: number, loc: Loc): Promise<void> {
    await internal(this.c, 'drop-linkto', async (frame) => {
      const f = await this.lookups.probe(frame, h, { parent: loc.parent, name: loc.name });
      if (f.kind === 'linkto' && f.iatt.gfid === loc.inode?.gfid) await this.c.children[h].unlink(frame, loc);
    }).catch((e) => this.c.log.warn(`${loc.name}: its linkto file on ${this.c.childName(h)} stays: ${(e as Error).message}`));
  }

  /** A hard link: on the child with the data; a linkto file on the new name's hashed child if that is another. */
  async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const { parent, name } = this.entry(to);
    const inode = from.inode;
    if (!inode) throw new FopError('EINVAL', 'link needs the inode it links');
    const h = await this.dirs.hashed(frame, parent, name);
    let cached = -1;
    const iatt = await this.files.onInode(frame, inode, true, async (child, i) => {
      cached = i;
      return child.link(frame, from, to);
    }, (v) => v.nlink);
    if (h !== cached) {
      await internal(this.c, 'link-linkto', (f) => makeLinkto(this.c, f, h, { parent, name, inode }, cached)).catch((e) =>
        this.c.log.warn(`link ${name}: no linkto file on ${this.c.childName(h)} (lookups will find it anyway): ${(e as Error).message}`),
      );
    }
    return withIno(iatt);
  }

  async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    if (flags & RENAME_EXCHANGE) throw new FopError('EINVAL', 'cluster/distribute does not exchange names (RENAME_EXCHANGE)');
    this.entry(from);
    const inode = await this.target(frame, from);
    if (inode.isDir) return this.renameDir(frame, from, to, inode, flags);
    return this.renameFile(frame, from, to, inode, flags);
  }

  /** A directory is renamed on every copy: the first child's first (it answers for errors), then the others; a failure puts back those done. */
  private async renameDir(frame: Frame, from: Loc, to: Loc, inode: Inode, flags: number): Promise<Iatt> {
    const up = this.c.children.map((_, i) => i).filter((i) => this.c.isUp(i));
    if (up.length < this.c.children.length) throw new FopError('ENOTCONN', `cannot rename directory ${from.name} while a child is down`);
    const f = { ...from, inode };
    const [first, ...rest] = up;
    const iatt = await this.c.children[first].rename(frame, f, to, flags);
    const done = await settle(rest.map((i) => this.c.children[i].rename(frame, f, to, flags)));
    const failed = done.find((d) => !d.ok && !isAbsent(d.error));
    if (failed && !failed.ok) {
      const back = [first, ...rest.filter((_, k) => done[k].ok)];
      await internal(this.c, 'undo-rename', (fr) => settle(back.map((i) => this.c.children[i].rename(fr, { ...to, inode }, { ...from, inode: undefined }, RENAME_NOREPLACE))));
      throw failed.error;
    }
    return withIno(iatt);
  }

  /**
   * A file keeps its data where it is: renamed on that child (replacing what the new name had
   * there), then the new name's hashed child gets a linkto file (replacing the old target's
   * entry there), the old name's linkto file goes, and the old target's data on a third child
   * goes. Held shared against migrations: the file's, and the replaced file's.
   */
  private async renameFile(frame: Frame, from: Loc, to: Loc, inode: Inode, flags: number): Promise<Iatt> {
    const dst = this.entry(to);
    const src = this.entry(from);
    let old: Inode | undefined = to.inode;
    if (!old) {
      try {
        old = await this.target(frame, { parent: dst.parent, name: dst.name });
      } catch (e) {
        if (!isAbsent(FopError.from(e))) throw e;
      }
    }
    if (old && flags & RENAME_NOREPLACE) throw new FopError('EEXIST');
    if (old?.gfid === inode.gfid) return this.c.children[await this.lookups.cachedOf(frame, inode)].rename(frame, { ...from, inode }, { ...to, inode: old }, flags).then(withIno);
    if (old?.isDir) throw new FopError('EISDIR');
    const h1 = await this.dirs.hashed(frame, src.parent, src.name).catch(() => undefined);
    const h2 = await this.dirs.hashed(frame, dst.parent, dst.name);
    const oldAt = old ? await this.lookups.cachedOf(frame, old).catch(() => undefined) : undefined;
    const holdOld = old && oldAt !== undefined ? await this.files.lock(frame, oldAt, old) : undefined;
    try {
      let cached = -1;
      const iatt = await this.files.onInode(frame, inode, true, async (child, i) => {
        cached = i;
        return child.rename(frame, { ...from, inode }, { ...to, inode: undefined }, flags);
      }, (v) => v.nlink);
      const newAt = { parent: dst.parent, name: dst.name, inode };
      if (h2 !== cached) await this.replaceWithLinkto(h2, newAt, cached, h1 === h2 ? src : undefined);
      if (h1 !== undefined && h1 !== cached && h1 !== h2) await this.dropLinkto(h1, { parent: src.parent, name: src.name, inode });
      if (old && oldAt !== undefined && oldAt !== cached && oldAt !== h2) {
        await internal(this.c, 'rename-replaced', (f) => this.c.children[oldAt].unlink(f, { parent: dst.parent, name: dst.name, inode: old })).catch((e) =>
          this.c.log.warn(`rename ${src.name} -> ${dst.name}: the replaced file's data on ${this.c.childName(oldAt)} stays: ${(e as Error).message}`),
        );
      }
      return withIno(iatt);
    } finally {
      holdOld?.();
    }
  }

  /**
   * Puts a linkto file for `at` (parent, name, inode) on child `h`, replacing whatever that
   * name is there. The old name's linkto file on the same child (`reuse`) is renamed over it;
   * otherwise a new one is made aside and renamed over, so the name never goes missing.
   */
  private async replaceWithLinkto(h: number, at: Loc & { inode: Inode }, target: number, reuse?: { parent: Inode; name: Name }): Promise<void> {
    const child = this.c.children[h];
    await internal(this.c, 'rename-linkto', async (frame) => {
      if (reuse) {
        const f = await this.lookups.probe(frame, h, reuse);
        if (f.kind === 'linkto' && f.iatt.gfid === at.inode.gfid) {
          await child.rename(frame, { ...reuse, inode: at.inode }, { parent: at.parent, name: at.name }, 0);
          return;
        }
      }
      const aside = { parent: at.parent, name: `.xlstack-dht-${at.inode.gfid}`, inode: at.inode };
      await makeLinkto(this.c, frame, h, aside, target);
      try {
        await child.rename(frame, aside, { parent: at.parent, name: at.name }, 0);
      } catch (e) {
        await child.unlink(frame, aside).catch(() => undefined);
        throw e;
      }
    }).catch(async (e) => {
      this.c.log.warn(`rename to ${at.name}: no linkto file on ${this.c.childName(h)}: ${(e as Error).message}`);
      // At least the replaced file's entry must not answer for the name: then every child is asked.
      await internal(this.c, 'rename-unshadow', async (frame) => {
        const f = await this.lookups.probe(frame, h, { parent: at.parent, name: at.name });
        if ((f.kind === 'data' || f.kind === 'linkto') && f.iatt.gfid !== at.inode.gfid) await child.unlink(frame, { parent: at.parent, name: at.name });
      }).catch((e2) => this.c.log.error(`rename to ${at.name}: ${this.c.childName(h)} still answers for it with the replaced file: ${(e2 as Error).message}`));
    });
  }
}
