// A directory's listing, merged from its copies: child after child, each entry once. A
// directory is listed from the first child holding a copy (it is on every child); a file
// from the child holding its data (linkto files are left out). Cookies say which child and
// where in it (cookies.ts).
import { FopError, Frame, isDir } from '../../../src/core/index';
import type { DirentPlus, Fd, Inode, Loc } from '../../../src/core/index';
import { inoOf, withIno } from './attrs';
import { Cluster, isAbsent } from './cluster';
import { decodeCookie, encodeCookie, MAX_CHILDREN } from './cookies';
import type { Files } from './files';
import { looksLikeLinkto, readLinkto } from './linkto';
import type { Lookups } from './lookup';

export class Listing {
  constructor(
    private readonly c: Cluster,
    private readonly lookups: Lookups,
    private readonly files: Files,
  ) {
    if (c.children.length > MAX_CHILDREN) throw new Error(`at most ${MAX_CHILDREN} subvolumes`);
  }

  /** Opens the directory on every child that is up and has a copy. */
  async opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    let error: FopError | undefined;
    const fds = await Promise.all(
      this.c.children.map(async (child, i) => {
        if (!this.c.isUp(i)) return undefined;
        const cfd = this.files.childFd(fd);
        try {
          await child.opendir(frame, loc, cfd);
          return cfd;
        } catch (e) {
          await cfd.unref();
          const err = FopError.from(e);
          if (!isAbsent(err)) error ??= err;
          return undefined;
        }
      }),
    );
    if (fds.every((f) => f === undefined)) throw error ?? new FopError('ENOENT', `no copy of ${loc.inode?.gfid} to open`);
    this.files.open.set(fd, { kind: 'dir', fds });
  }

  /** Entries after merged cookie `offset`; [] at the end. With `plus`, files carry their attributes. */
  async list(frame: Frame, fd: Fd, size: number, offset: number, plus: boolean): Promise<DirentPlus[]> {
    const od = this.files.dir(fd);
    let pos;
    try {
      pos = decodeCookie(offset);
    } catch (e) {
      throw new FopError('EINVAL', (e as Error).message);
    }
    const dirChild = od.fds.findIndex((f) => f !== undefined);
    let { child: i, cookie } = pos;
    for (;;) {
      while (i < od.fds.length && !od.fds[i]) [i, cookie] = [i + 1, 0];
      if (i >= od.fds.length) return [];
      const entries = await this.c.children[i].readdirp(frame, od.fds[i]!, size, cookie);
      if (entries.length === 0) {
        [i, cookie] = [i + 1, 0];
        continue;
      }
      const kept = await this.keep(frame, fd.inode, i, entries, dirChild, plus);
      if (kept.length > 0) return kept;
      cookie = entries[entries.length - 1].offset;
    }
  }

  /** The entries of child `i`'s chunk the merged listing shows, with merged cookies and inode numbers. */
  private async keep(frame: Frame, dir: Inode, i: number, entries: readonly DirentPlus[], dirChild: number, plus: boolean): Promise<DirentPlus[]> {
    const shown = await Promise.all(entries.map((e) => this.shows(frame, dir, i, e, dirChild)));
    const out: DirentPlus[] = [];
    entries.forEach((e, k) => {
      if (shown[k] === 'no') return;
      const offset = encodeCookie({ child: i, cookie: e.offset });
      const base = { name: e.name, offset, type: e.type, ino: e.iatt ? inoOf(e.iatt.gfid) : e.ino };
      // A directory's attributes are its copies' merged, and a half-switched file's mode is
      // not its own yet: a lookup gets them (and heals or finishes what needs it).
      if (!plus || !e.iatt || shown[k] === 'bare' || isDir(e.iatt.mode)) {
        out.push(base);
        return;
      }
      this.c.place(this.c.host.itable.get(e.iatt.gfid), { kind: 'file', cached: i });
      out.push({ ...base, iatt: withIno(e.iatt), xattrNames: e.xattrNames });
    });
    return out;
  }

  /**
   * Whether an entry of child `i` is shown: a directory only from `dirChild`; a linkto file
   * not, unless it is a migration's new copy whose old one is already gone (then it is the
   * file, shown without attributes until a lookup finishes its switch).
   */
  private async shows(frame: Frame, dir: Inode, i: number, e: DirentPlus, dirChild: number): Promise<'yes' | 'no' | 'bare'> {
    const iatt = e.iatt;
    if (iatt ? isDir(iatt.mode) : (e.type & 0o170000) === 0o040000) return i === dirChild ? 'yes' : 'no';
    if (!iatt || !looksLikeLinkto(iatt)) return 'yes';
    try {
      const state = await readLinkto(this.c, frame, i, { gfid: iatt.gfid });
      if (state.target === undefined) return 'yes';
      if (state.pendingMode === undefined) return 'no';
      const t = this.c.childIndex(state.target);
      const there = t === undefined ? undefined : await this.lookups.probe(frame, t, { parent: dir, name: e.name });
      return there?.kind === 'missing' ? 'bare' : 'no';
    } catch {
      return 'no';
    }
  }
}
