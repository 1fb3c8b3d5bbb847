import * as fs from 'fs';
import * as path from 'path';
import { FopError } from '../../../src/core/errors';
import { Gfid, ROOT_GFID, isGfid } from '../../../src/core/types';
import { XATTR_CREATE, sys } from './sys';

export const GFID_XATTR = 'trusted.gfid';
/** The folder inside the backing directory where posix keeps its own data. */
export const META_NAME = '.xlstack';

const MAX_DEPTH = 4096;
/** How many file handles are remembered as checked (each check may cost a disk read). */
const VERIFIED_MAX = 65536;


// Not uuid's parse/stringify: they reject GFIDs that are not RFC 4122 uuids, like the root's.
export function gfidBytes(gfid: Gfid): Buffer {
  if (!isGfid(gfid)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(gfid)}`);
  return Buffer.from(gfid.replace(/-/g, ''), 'hex');
}

export function gfidString(b: Buffer): Gfid {
  const h = b.toString('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

/** The GFID stored on a path, or undefined if it has none. */
export function readGfid(p: string): Gfid | undefined {
  try {
    const b = sys.getxattr(p, GFID_XATTR);
    return b.length === 16 ? gfidString(b) : undefined;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENODATA') return undefined;
    throw e;
  }
}

export function writeGfid(p: string, gfid: Gfid, flags = XATTR_CREATE): void {
  sys.setxattr(p, GFID_XATTR, gfidBytes(gfid), flags);
}

/**
 * The GFID index of one backing directory, GlusterFS style: `.xlstack/handles/xx/<gfid>`
 * is a hard link for a file (so it stays reachable by GFID whatever its names) and a
 * symlink `../pp/<parent-gfid>/<name>` for a directory (its one name, kept on disk so a
 * GFID can be found again after a restart). Directory paths are also cached in memory.
 * One level of 256 buckets (GlusterFS has 65536) keeps the index's own directories hot
 * in the cache; ext4's hashed directories hold millions of entries per bucket.
 * One store serves every posix translator of the process on that directory, so graphs
 * that replace each other see each other's renames and open files.
 */
export class HandleStore {
  private static readonly stores = new Map<string, HandleStore>();

  readonly meta: string;
  readonly tmp: string;
  private readonly handles: string;
  /** Handles of files that lost their last name while open (GlusterFS's .glusterfs/unlink). */
  private readonly unlinked: string;
  private readonly dirs = new Map<Gfid, { parent: Gfid; name: string }>();
  /** Inode numbers of files whose handle is known to be theirs (least recently checked first). */
  private readonly verified = new Map<Gfid, bigint>();
  private readonly openCounts = new Map<Gfid, number>();
  /** Open files that lost their last name: their handle goes with the last close. */
  private readonly orphans = new Set<Gfid>();
  private users = 0;

  private constructor(readonly root: string) {
    this.meta = path.join(root, META_NAME);
    this.handles = path.join(this.meta, 'handles');
    this.tmp = path.join(this.meta, 'tmp');
    this.unlinked = path.join(this.meta, 'unlinked');
  }

  /** The store of a backing directory, shared by everyone in the process who uses it. */
  static acquire(root: string): HandleStore {
    const real = fs.realpathSync(root);
    let store = HandleStore.stores.get(real);
    if (!store) {
      store = new HandleStore(real);
      store.setup();
      HandleStore.stores.set(real, store);
    }
    store.users++;
    return store;
  }

  release(): void {
    if (--this.users === 0) HandleStore.stores.delete(this.root);
  }

  private setup(): void {
    const found = readGfid(this.root);
    if (found !== undefined && found !== ROOT_GFID) {
      throw new Error(`${this.root} is not the root of a volume: it has GFID ${found} (it is a directory inside another volume)`);
    }
    if (found === undefined) writeGfid(this.root, ROOT_GFID);
    fs.mkdirSync(this.tmp, { recursive: true, mode: 0o700 });
    // Files left here by an earlier run had no name and nobody has them open any more.
    fs.rmSync(this.unlinked, { recursive: true, force: true });
    fs.mkdirSync(this.unlinked, { mode: 0o700 });
    for (let i = 0; i < 256; i++) fs.mkdirSync(path.join(this.handles, i.toString(16).padStart(2, '0')), { recursive: true, mode: 0o700 });
    this.ensureRootHandle();
  }

  private ensureRootHandle(): void {
    const h = this.handlePath(ROOT_GFID);
    const want = '../../..';
    try {
      if (fs.readlinkSync(h) === want) return;
      fs.unlinkSync(h);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    fs.symlinkSync(want, h);
  }

  /** A GFID is only ever turned into a path here, after checking it is one (never `../..`). */
  handlePath(gfid: Gfid): string {
    if (!isGfid(gfid)) throw new FopError('EINVAL', `bad GFID ${JSON.stringify(gfid)}`);
    return path.join(this.handles, gfid.slice(0, 2), gfid);
  }

  /** The inode number a GFID's handle was recently found (or made) to link to. */
  verifiedIno(gfid: Gfid): bigint | undefined {
    const ino = this.verified.get(gfid);
    if (ino !== undefined) this.markVerified(gfid, ino);
    return ino;
  }

  markVerified(gfid: Gfid, ino: bigint): void {
    this.verified.delete(gfid);
    this.verified.set(gfid, ino);
    if (this.verified.size > VERIFIED_MAX) this.verified.delete(this.verified.keys().next().value!);
  }

  /** A path to operate on for an object: the real path of a directory, the handle of anything else. */
  pathOf(gfid: Gfid, isDir: boolean): string {
    return isDir || gfid === ROOT_GFID ? this.dirPath(gfid) : this.filePath(gfid);
  }

  /** Where a non-directory is reached by GFID: its handle, or its place among the unlinked. */
  filePath(gfid: Gfid): string {
    return this.orphans.has(gfid) ? path.join(this.unlinked, gfid) : this.handlePath(gfid);
  }

  /** The real path of a directory, from the cache or by following handle symlinks. */
  dirPath(gfid: Gfid, depth = 0): string {
    if (gfid === ROOT_GFID) return this.root;
    if (depth > MAX_DEPTH) throw new FopError('ELOOP', `directory handle chain of ${gfid} is too deep`);
    let entry = this.dirs.get(gfid);
    if (!entry) {
      entry = this.readDirHandle(gfid);
      this.dirs.set(gfid, entry);
    }
    return path.join(this.dirPath(entry.parent, depth + 1), entry.name);
  }

  private readDirHandle(gfid: Gfid): { parent: Gfid; name: string } {
    const h = this.handlePath(gfid);
    let target: string;
    try {
      target = fs.readlinkSync(h);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') throw new FopError('ESTALE', `no directory with GFID ${gfid}`);
      if (code === 'EINVAL') throw new FopError('ENOTDIR', `GFID ${gfid} is not a directory`);
      throw e;
    }
    // A user's symlink (it has a GFID of its own) is never read as a directory handle,
    // whatever its target looks like.
    if (readGfid(h) !== undefined) throw new FopError('ENOTDIR', `GFID ${gfid} is not a directory`);
    const m = /^\.\.\/[0-9a-f]{2}\/([0-9a-f-]{36})\/(.+)$/.exec(target);
    if (!m || !isGfid(m[1]) || m[2].includes('/') || m[2] === '..' || m[2] === '.') throw new FopError('ESTALE', `bad directory handle for ${gfid}: ${target}`);
    return { parent: m[1], name: m[2] };
  }

  /** Records (on disk and in memory) that directory `gfid` is `name` in `parent`. */
  setDirHandle(gfid: Gfid, parent: Gfid, name: string): void {
    const h = this.handlePath(gfid);
    const target = `../${parent.slice(0, 2)}/${parent}/${name}`;
    // Write aside and rename over, so a crash never leaves a directory without a handle.
    const aside = path.join(this.tmp, `h-${gfid}`);
    fs.rmSync(aside, { force: true });
    fs.symlinkSync(target, aside);
    fs.renameSync(aside, h);
    this.dirs.set(gfid, { parent, name });
  }

  /** The cached name of a directory, if known. */
  dirEntry(gfid: Gfid): { parent: Gfid; name: string } | undefined {
    return this.dirs.get(gfid);
  }

  removeHandle(gfid: Gfid): void {
    this.dirs.delete(gfid);
    this.verified.delete(gfid);
    fs.rmSync(this.handlePath(gfid), { force: true });
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
    if (this.orphans.delete(gfid)) fs.rmSync(path.join(this.unlinked, gfid), { force: true });
  }

  /**
   * A non-directory lost a name: if only its handle is left, remove that too, or, while the
   * file is open, move it among the unlinked until it is closed (where a restart would
   * reclaim it). A directory's handle is a symlink: not for those.
   */
  dropIfNameless(gfid: Gfid): void {
    const h = this.handlePath(gfid);
    try {
      if (fs.lstatSync(h).nlink !== 1) return;
      this.verified.delete(gfid);
      if (this.isOpen(gfid)) {
        fs.renameSync(h, path.join(this.unlinked, gfid));
        this.orphans.add(gfid);
        return;
      }
      fs.unlinkSync(h);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
  }
}
