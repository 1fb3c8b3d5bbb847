import * as fs from 'fs';
import { FopError, Gfid, Name, ROOT_GFID, nameBytes } from '../../../src/core/index';
import { readGfid } from './gfid';
import { Lru } from './lru';
import { Stat, sys } from './sys';

/** How directories are opened: never through a symlink, never a non-directory. */
export const DIR_OPEN = fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | fs.constants.O_NOFOLLOW;

/** Where a directory is: its one name in its parent. */
export interface DirLocation {
  readonly parent: Gfid;
  readonly name: Name;
}

/** The deepest chain of directory handles followed to find a directory. */
const MAX_DEPTH = 65536;

const STALE = new Set(['ENOENT', 'ENOTDIR', 'ELOOP']);

/**
 * Open directories by GFID: the fds every entry operation works relative to, so no backing
 * path is ever built (a tree may be deeper than PATH_MAX) and no symlink inside the backing
 * directory is ever followed. A directory not open yet is found from its location (its
 * handle): the nearest open ancestor, then one component at a time with O_NOFOLLOW, each
 * checked by its GFID xattr. At most `max` fds stay open, least recently used closed first;
 * the root's is always open.
 *
 * An fd from here is for the current synchronous step only: one evicted meanwhile is closed
 * in a microtask, so it stays valid until the caller's step ends, but never across an await.
 * (An open fd follows its directory wherever it is renamed.)
 */
export class DirFds {
  private readonly fds: Lru<Gfid, number>;

  constructor(
    private readonly rootFd: number,
    private readonly locate: (gfid: Gfid) => DirLocation,
    max: number,
  ) {
    this.fds = new Lru(max, (_gfid, fd) => queueMicrotask(() => fs.closeSync(fd)));
  }

  get size(): number {
    return this.fds.size;
  }

  /** An fd of directory `gfid`: ESTALE if it is not where its handle says, ENOTDIR if it is no directory. */
  fd(gfid: Gfid): number {
    if (gfid === ROOT_GFID) return this.rootFd;
    const hit = this.fds.get(gfid);
    if (hit !== undefined) return hit;
    // Up to the nearest open ancestor...
    const chain: [Gfid, DirLocation][] = [];
    const seen = new Set<Gfid>([gfid]);
    let top: number;
    for (let g = gfid; ; ) {
      const loc = this.locate(g);
      chain.push([g, loc]);
      if (loc.parent === ROOT_GFID) {
        top = this.rootFd;
        break;
      }
      const open = this.fds.get(loc.parent);
      if (open !== undefined) {
        top = open;
        break;
      }
      if (seen.has(loc.parent) || chain.length >= MAX_DEPTH) throw new FopError('ELOOP', `directory handles of ${gfid} form a loop or a chain deeper than ${MAX_DEPTH}`);
      seen.add(loc.parent);
      g = loc.parent;
    }
    // ...and down again, one checked component at a time.
    let fd = top;
    for (let i = chain.length - 1; i >= 0; i--) {
      const [g, loc] = chain[i];
      fd = this.openChild(fd, loc, g);
      this.fds.set(g, fd);
    }
    return fd;
  }

  /** Stat of directory `gfid`; one removed behind our back (nlink 0) is dropped and looked for again. */
  stat(gfid: Gfid): Stat {
    const st = sys.stat({ dirfd: this.fd(gfid), name: null });
    if (st.nlink > 0 || gfid === ROOT_GFID) return st;
    this.drop(gfid);
    return sys.stat({ dirfd: this.fd(gfid), name: null });
  }

  /** Keeps an fd this store now owns (a directory just made). */
  adopt(gfid: Gfid, fd: number): void {
    this.fds.set(gfid, fd);
  }

  drop(gfid: Gfid): void {
    this.fds.delete(gfid);
  }

  /** Closes every fd at once (the store is going away). */
  clear(): void {
    this.fds.clear();
  }

  private openChild(parentFd: number, loc: DirLocation, gfid: Gfid): number {
    let fd: number;
    try {
      fd = sys.openat({ dirfd: parentFd, name: nameBytes(loc.name) }, DIR_OPEN);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code ?? '';
      if (STALE.has(code)) throw new FopError('ESTALE', `directory ${gfid} is not at <gfid:${loc.parent}>/${loc.name} (${code})`);
      throw e;
    }
    let found: Gfid | undefined;
    try {
      found = readGfid({ dirfd: fd, name: null });
    } finally {
      if (found !== gfid) fs.closeSync(fd);
    }
    if (found !== gfid) throw new FopError('ESTALE', `<gfid:${loc.parent}>/${loc.name} is not directory ${gfid} (it has ${found ?? 'no GFID'})`);
    return fd;
  }
}
