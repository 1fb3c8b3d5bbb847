import * as fs from 'fs';
import * as path from 'path';
import { FopError, Gfid, Name, ROOT_GFID, isGfid, nameBytes, nameFromBytes } from '../../../src/core/index';
import { DirFds, DIR_OPEN, DirLocation } from './dirs';
import { readGfid, writeGfid } from './gfid';
import { Lru } from './lru';
import { At, sys } from './sys';

/** The folder inside the backing directory where posix keeps its own data. */
export const META_NAME = '.xlstack';

/** How many file handles are remembered as checked (each check may cost a disk read). */
const VERIFIED_MAX = 65536;
/** How many directory locations (the targets of directory handles) are kept in memory. */
const LOCATIONS_MAX = 65536;
/** How many directory fds are kept open (the root's is always open, besides these). */
export const DIR_FDS_MAX = 1024;

/** A directory handle's target: `../<bucket>/<parent gfid>/<name>` (the name may hold any byte but '/'). */
const HANDLE_TARGET = /^\.\.\/[0-9a-f]{2}\/([0-9a-f-]{36})\/([^/]+)$/s;

const ignoreMissing = (fn: () => void): void => {
  try {
    fn();
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
};

const mkdirIfMissing = (at: At): void => {
  try {
    sys.mkdirat(at, 0o700);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
  }
};

/**
 * The GFID index of one backing directory, GlusterFS style: `.xlstack/handles/xx/<gfid>`
 * is a hard link for a file (so it stays reachable by GFID whatever its names) and a
 * symlink `../pp/<parent-gfid>/<name>` for a directory (its one name, kept on disk so a
 * GFID can be found again after a restart). Those symlinks are only ever read, never
 * followed: directories are reached through `dirs`, fds opened one component at a time.
 * Every call here works relative to fds the store holds open (the root, .xlstack/tmp,
 * .xlstack/unlinked and the 256 buckets), so no backing path is ever built.
 * One store serves every posix translator of the process on that directory, so graphs
 * that replace each other see each other's renames and open files.
 */
export class HandleStore {
  private static readonly stores = new Map<string, HandleStore>();

  readonly rootFd: number;
  /** Where objects are made before they get their name (emptied at start). */
  readonly tmpFd: number;
  /** Handles of files that lost their last name while open (GlusterFS's .glusterfs/unlink). */
  private readonly unlinkedFd: number;
  private readonly buckets: number[] = [];
  readonly dirs: DirFds;
  private readonly locations = new Lru<Gfid, DirLocation>(LOCATIONS_MAX);
  /** Inode numbers of files whose handle is known to be theirs. */
  private readonly verified = new Lru<Gfid, number>(VERIFIED_MAX);
  private readonly openCounts = new Map<Gfid, number>();
  /** Open files that lost their last name: their handle goes with the last close. */
  private readonly orphans = new Set<Gfid>();
  private users = 0;

  private constructor(
    /** The backing directory (its real path: for statfs and messages only). */
    readonly root: string,
  ) {
    const opened: number[] = [];
    const open = (at: At) => {
      const fd = sys.openat(at, DIR_OPEN);
      opened.push(fd);
      return fd;
    };
    try {
      this.rootFd = fs.openSync(root, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
      opened.push(this.rootFd);
      const rootAt = { dirfd: this.rootFd, name: null };
      const found = readGfid(rootAt);
      if (found !== undefined && found !== ROOT_GFID) {
        throw new Error(`${root} is not the root of a volume: it has GFID ${found} (it is a directory inside another volume)`);
      }
      if (found === undefined) writeGfid(rootAt, ROOT_GFID);
      const metaAt = { dirfd: this.rootFd, name: nameBytes(META_NAME) };
      mkdirIfMissing(metaAt);
      const meta = open(metaAt);
      // What an earlier run left in tmp was never named; what it left among the unlinked had
      // no name and nobody has it open any more.
      for (const sub of ['tmp', 'unlinked']) fs.rmSync(path.join(root, META_NAME, sub), { recursive: true, force: true });
      for (const sub of ['tmp', 'unlinked', 'handles']) mkdirIfMissing({ dirfd: meta, name: nameBytes(sub) });
      this.tmpFd = open({ dirfd: meta, name: nameBytes('tmp') });
      this.unlinkedFd = open({ dirfd: meta, name: nameBytes('unlinked') });
      // One level of 256 buckets (GlusterFS has 65536) keeps the index's own directories hot
      // in the cache; ext4's hashed directories hold millions of entries per bucket.
      const handles = open({ dirfd: meta, name: nameBytes('handles') });
      for (let i = 0; i < 256; i++) {
        const at = { dirfd: handles, name: nameBytes(i.toString(16).padStart(2, '0')) };
        mkdirIfMissing(at);
        this.buckets.push(open(at));
      }
      for (const fd of [meta, handles]) fs.closeSync(opened.splice(opened.indexOf(fd), 1)[0]);
      this.ensureRootHandle();
    } catch (e) {
      for (const fd of opened) fs.closeSync(fd);
      throw e;
    }
    this.dirs = new DirFds(this.rootFd, (gfid) => this.location(gfid), DIR_FDS_MAX);
  }

  /** The store of a backing directory, shared by everyone in the process who uses it. */
  static acquire(root: string): HandleStore {
    const real = fs.realpathSync(root);
    let store = HandleStore.stores.get(real);
    if (!store) {
      store = new HandleStore(real);
      HandleStore.stores.set(real, store);
    }
    store.users++;
    return store;
  }

  release(): void {
    if (--this.users > 0) return;
    HandleStore.stores.delete(this.root);
    this.dirs.clear();
    for (const fd of [this.rootFd, this.tmpFd, this.unlinkedFd, ...this.buckets]) fs.closeSync(fd);
  }

  /** What the store holds open, for statedumps. */
  dump(): Record<string, unknown> {
    return { dirFds: this.dirs.size, dirFdsMax: DIR_FDS_MAX, locations: this.locations.size, openFiles: this.openCounts.size, orphans: this.orphans.size };
  }

  private ensureRootHandle(): void {
    const h = this.handleAt(ROOT_GFID);
    const want = '../../..';
    try {
      if (sys.readlinkat(h).toString('latin1') === want) return;
      sys.unlinkat(h);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    sys.symlinkat(Buffer.from(want), h);
  }

  /** A GFID is only ever turned into a name here, after checking it is one (never `../..`). */
  handleAt(gfid: Gfid): At {
    if (!isGfid(gfid)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(gfid)}`);
    return { dirfd: this.buckets[parseInt(gfid.slice(0, 2), 16)], name: Buffer.from(gfid, 'latin1') };
  }

  /** Where a new object with this GFID is made before it gets its name. */
  asideAt(gfid: Gfid): At {
    if (!isGfid(gfid)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(gfid)}`);
    return { dirfd: this.tmpFd, name: Buffer.from(gfid, 'latin1') };
  }

  /** Where a non-directory is reached by GFID: its handle, or its place among the unlinked. */
  fileAt(gfid: Gfid): At {
    return this.orphans.has(gfid) ? { dirfd: this.unlinkedFd, name: Buffer.from(gfid, 'latin1') } : this.handleAt(gfid);
  }

  /** The inode number a GFID's handle was recently found (or made) to link to. */
  verifiedIno(gfid: Gfid): number | undefined {
    return this.verified.get(gfid);
  }

  markVerified(gfid: Gfid, ino: number): void {
    this.verified.set(gfid, ino);
  }

  // --- directory handles ---------------------------------------------------------------

  /** Whether `gfid` is known (in memory) to be a directory. */
  isKnownDir(gfid: Gfid): boolean {
    return gfid === ROOT_GFID || this.locations.has(gfid);
  }

  /**
   * Where directory `gfid` is, from memory or its handle: ESTALE if it has none, ENOTDIR
   * if the GFID is not a directory's (a file's hard link, or a user's symlink, which has a
   * GFID of its own, whatever its target looks like).
   */
  location(gfid: Gfid): DirLocation {
    const known = this.locations.get(gfid);
    if (known) return known;
    const h = this.handleAt(gfid);
    let target: Buffer;
    try {
      target = sys.readlinkat(h);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new FopError('ESTALE', `no directory with GFID ${gfid}`);
      if (code === 'EINVAL') throw new FopError('ENOTDIR', `GFID ${gfid} is not a directory`);
      throw e;
    }
    if (readGfid(h) !== undefined) throw new FopError('ENOTDIR', `GFID ${gfid} is not a directory`);
    const m = HANDLE_TARGET.exec(nameFromBytes(target));
    if (!m || !isGfid(m[1]) || m[2] === '.' || m[2] === '..') throw new FopError('ESTALE', `bad directory handle for ${gfid}: ${JSON.stringify(nameFromBytes(target))}`);
    const loc = { parent: m[1], name: m[2] };
    this.locations.set(gfid, loc);
    return loc;
  }

  /** Records (on disk and in memory) that directory `gfid` is `name` in `parent`. */
  setDirHandle(gfid: Gfid, parent: Gfid, name: Name): void {
    const h = this.handleAt(gfid);
    const target = Buffer.concat([Buffer.from(`../${parent.slice(0, 2)}/${parent}/`, 'latin1'), nameBytes(name)]);
    // Made aside and renamed over, so a crash never leaves a directory without a handle.
    const aside = { dirfd: this.tmpFd, name: Buffer.from(`h-${gfid}`, 'latin1') };
    try {
      sys.symlinkat(target, aside);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
      // left by a handle write that failed half-way
      sys.unlinkat(aside);
      sys.symlinkat(target, aside);
    }
    try {
      sys.renameat2(aside, h, 0);
    } catch (e) {
      ignoreMissing(() => sys.unlinkat(aside));
      throw e;
    }
    this.locations.set(gfid, { parent, name });
  }

  /** A directory is gone: its handle, its location and its fd go too. */
  removeDirHandle(gfid: Gfid): void {
    this.locations.delete(gfid);
    this.verified.delete(gfid);
    this.dirs.drop(gfid);
    ignoreMissing(() => sys.unlinkat(this.handleAt(gfid)));
  }

  /** Whether directory `gfid`'s handle says it is `name` in `parent`. */
  isAt(gfid: Gfid, parent: Gfid, name: Name): boolean {
    try {
      const loc = this.location(gfid);
      return loc.parent === parent && loc.name === name;
    } catch {
      return false;
    }
  }

  // --- files kept open: their handle must outlive their last name ---------------

  opened(gfid: Gfid): void {
    this.openCounts.set(gfid, (this.openCounts.get(gfid) ?? 0) + 1);
  }

  isOpen(gfid: Gfid): boolean {
    return this.openCounts.has(gfid);
  }

  /** The last close of a file whose names are all gone removes its handle (and so its data). */
  closed(gfid: Gfid): void {
    const n = (this.openCounts.get(gfid) ?? 1) - 1;
    if (n > 0) {
      this.openCounts.set(gfid, n);
      return;
    }
    this.openCounts.delete(gfid);
    if (this.orphans.delete(gfid)) ignoreMissing(() => sys.unlinkat({ dirfd: this.unlinkedFd, name: Buffer.from(gfid, 'latin1') }));
  }

  /**
   * A non-directory (inode `ino`) lost a name: if only its handle is left, remove that too,
   * or, while the file is open, move it among the unlinked until it is closed (where a
   * restart would reclaim it). A handle that is not that inode's is left alone.
   */
  dropIfNameless(gfid: Gfid, ino: number): void {
    const h = this.handleAt(gfid);
    const st = sys.statIfExists(h);
    if (!st || st.ino !== ino || st.nlink !== 1) return;
    this.verified.delete(gfid);
    if (this.isOpen(gfid)) {
      sys.renameat2(h, { dirfd: this.unlinkedFd, name: h.name }, 0);
      this.orphans.add(gfid);
      return;
    }
    ignoreMissing(() => sys.unlinkat(h));
  }
}
