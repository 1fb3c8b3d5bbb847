import type { Fd } from './fd';
import type { Frame } from './frame';
import type { Inode } from './inode';
import type { Dirent, DirentPlus, EntryLockCmd, EntryLockType, Flock, Gfid, Iatt, LockCmd, LockKind, Name, SetAttr, Statfs, XattrMap, XattrOp } from './types';

/**
 * What a fop is about. Entry fops (lookup, create, mkdir, mknod, symlink, link target,
 * rename, unlink, rmdir) name `parent` + `name`; fops on an existing object give `inode`
 * (or just `gfid` for a nameless lookup). For the entry-creating fops `inode` is the inode
 * to create: its GFID is the one the new entry must get.
 * `path`, when a transport knows one, is for logs only; nothing trusts it.
 */
export interface Loc {
  readonly path?: string;
  readonly inode?: Inode;
  readonly gfid?: Gfid;
  readonly parent?: Inode;
  readonly name?: Name;
}

/** What a Loc names, for messages. */
export function locName(loc: Loc): string {
  if (loc.path !== undefined) return loc.path;
  if (loc.parent && loc.name !== undefined) return `<gfid:${loc.parent.gfid}>/${loc.name}`;
  return `<gfid:${loc.inode?.gfid ?? loc.gfid}>`;
}

/**
 * Every file operation. All are async and fail only by throwing FopError.
 * A buffer handed to `write` is valid only until the call settles: a translator that
 * keeps the data must copy it. Names, symlink targets and xattr names are byte strings
 * (see `Name`); offsets and sizes are at most MAX_OFFSET.
 */
export interface Fops {
  lookup(frame: Frame, loc: Loc): Promise<Iatt>;
  stat(frame: Frame, loc: Loc): Promise<Iatt>;
  fstat(frame: Frame, fd: Fd): Promise<Iatt>;
  access(frame: Frame, loc: Loc, mask: number): Promise<void>;
  readlink(frame: Frame, loc: Loc): Promise<Name>;
  mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt>;
  mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt>;
  unlink(frame: Frame, loc: Loc): Promise<void>;
  rmdir(frame: Frame, loc: Loc): Promise<void>;
  symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt>;
  /**
   * flags: RENAME_NOREPLACE (EEXIST if `to` exists), RENAME_EXCHANGE (swap the two, both
   * must exist), or 0. Returns the attributes of the renamed inode.
   */
  rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt>;
  link(frame: Frame, from: Loc, to: Loc): Promise<Iatt>;
  truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt>;
  ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt>;
  /** Opens `fd` (created by the caller on loc.inode, with its flags) on every translator. */
  open(frame: Frame, loc: Loc, fd: Fd): Promise<void>;
  create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt>;
  /** Returns at most `size` bytes; fewer only at end of file. */
  read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer>;
  write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number>;
  flush(frame: Frame, fd: Fd): Promise<void>;
  fsync(frame: Frame, fd: Fd, datasync: boolean): Promise<void>;
  opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void>;
  /** Entries after the one whose cookie is `offset` (0: from the start); [] at the end. */
  readdir(frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]>;
  /** readdir with the attributes (and so the GFID) of each entry. */
  readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]>;
  fsyncdir(frame: Frame, fd: Fd, datasync: boolean): Promise<void>;
  statfs(frame: Frame, loc: Loc): Promise<Statfs>;
  setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt>;
  fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt>;
  getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer>;
  /** flags: XATTR_CREATE (1) / XATTR_REPLACE (2). */
  setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void>;
  listxattr(frame: Frame, loc: Loc): Promise<string[]>;
  removexattr(frame: Frame, loc: Loc, name: string): Promise<void>;
  /**
   * Locks: test ('get': returns the first conflicting lock, or one of type 'unlock'), take
   * ('set': EAGAIN on conflict) or wait for ('wait': until granted, or EINTR when the frame
   * is interrupted) a lock, or unlock (type 'unlock'). The owner is frame.lkOwner for POSIX
   * locks, the open file (fd) for flock. Returns the lock as it now stands.
   */
  lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock>;
  /** mode: FALLOC_FL_* bits (0: allocate and extend). */
  fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void>;
  /** lseek SEEK_DATA / SEEK_HOLE: the next data or hole at or after `offset` (ENXIO past the end). */
  seek(frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number>;
  /**
   * Internal byte-range locks on an inode, in a named domain (cluster translators serialise
   * their transactions with them; GlusterFS's inodelk). Like `lk` with POSIX semantics,
   * owned by frame.lkOwner; no application ever sees them.
   */
  inodelk(frame: Frame, domain: string, loc: Loc, cmd: LockCmd, lock: Flock): Promise<Flock>;
  /**
   * Internal locks on a name in a directory (`loc` names the directory; name undefined: the
   * whole directory), in a named domain (GlusterFS's entrylk). Owned by frame.lkOwner.
   */
  entrylk(frame: Frame, domain: string, loc: Loc, name: Name | undefined, cmd: EntryLockCmd, type: EntryLockType): Promise<void>;
  /** Atomic operations on internal xattrs (see XattrOp); returns the values after the operation. */
  xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>>;
}

export type FopName = keyof Fops;
export type FopArgs<K extends FopName> = Parameters<Fops[K]>;
export type FopResult<K extends FopName> = Awaited<ReturnType<Fops[K]>>;

/** Every fop name, in a stable order (the keys of Fops, checked by the compiler). */
export const FOP_NAMES = Object.keys({
  lookup: 1, stat: 1, fstat: 1, access: 1, readlink: 1, mknod: 1, mkdir: 1, unlink: 1,
  rmdir: 1, symlink: 1, rename: 1, link: 1, truncate: 1, ftruncate: 1, open: 1, create: 1,
  read: 1, write: 1, flush: 1, fsync: 1, opendir: 1, readdir: 1, readdirp: 1, fsyncdir: 1, statfs: 1,
  setattr: 1, fsetattr: 1, getxattr: 1, setxattr: 1, listxattr: 1, removexattr: 1,
  lk: 1, fallocate: 1, seek: 1, inodelk: 1, entrylk: 1, xattrop: 1,
} satisfies Record<FopName, 1>) as FopName[];

/** The GFID a Loc names (its inode's, or the one given for a nameless lookup). */
export const gfidOfLoc = (loc: Loc): Gfid | undefined => loc.inode?.gfid ?? loc.gfid;

/** The fops that change a file's data. */
export type DataChangingFop = 'write' | 'truncate' | 'ftruncate' | 'fallocate';

export function isFopName(s: string): s is FopName {
  return (FOP_NAMES as string[]).includes(s);
}
