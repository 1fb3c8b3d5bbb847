// What the kernel transport asks of a filesystem: one async method per FUSE request, in the
// kernel's own terms (nodeids, file handles, names as bytes). The session (session.ts)
// decodes each request, calls the method, and encodes the answer, or the FopError it threw,
// as the kernel expects (linux/uapi/fuse.h). A method rejects only with FopError; anything
// else is a bug, logged and answered EIO.
import type { Flock, Iatt, Statfs } from '../../core/types';

/** The caller of one request, as the kernel gives it, and its interruption. */
export interface Request {
  /** The kernel's id of the request. */
  readonly unique: number;
  readonly uid: number;
  readonly gid: number;
  /** The calling thread's id (0: not visible from the mounting namespace, or none). */
  readonly pid: number;
  /** The kernel interrupted it (the caller got a signal). */
  readonly interrupted: boolean;
  /** Calls `fn` (once) if the kernel interrupts the request; returns the way to stop listening. */
  onInterrupt(fn: () => void): () => void;
  /** The GFID what this request makes gets (a request sent again: the one chosen the first time); default: a new one. */
  gfid?: string;
}

/** How long the kernel may trust what a reply says (milliseconds; 0: ask again each time). */
export interface Validity {
  readonly entryMs: number;
  readonly attrMs: number;
}

/** An entry reply (lookup, mknod, mkdir, symlink, link, create): a nodeid the kernel now holds once more. */
export interface Entry extends Validity {
  /** 0 only for a negative entry (lookup: the name does not exist, cache that for entryMs). */
  readonly nodeid: number;
  readonly generation: number;
  readonly attr: Iatt;
}

export interface Attr {
  readonly attrMs: number;
  readonly attr: Iatt;
}

/** FOPEN_* answers to open/opendir/create. */
export interface Opened {
  readonly fh: number;
  readonly directIo?: boolean;
  readonly keepCache?: boolean;
  /** Directories: the kernel may cache the listing. */
  readonly cacheDir?: boolean;
  /** The file is not seekable (FOPEN_NONSEEKABLE). */
  readonly nonSeekable?: boolean;
}

/** SETATTR: only the fields whose `valid` bit the kernel set are present. */
export interface SetattrIn {
  readonly fh?: number;
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly size?: number;
  /** A time, or 'now' (FATTR_ATIME_NOW / FATTR_MTIME_NOW: the server's clock). */
  readonly atime?: { sec: number; nsec: number } | 'now';
  readonly mtime?: { sec: number; nsec: number } | 'now';
  readonly ctime?: { sec: number; nsec: number };
  readonly lockOwner?: bigint;
  /** FATTR_KILL_SUIDGID. */
  readonly killSuidgid?: boolean;
}

/** One directory entry to pack into a READDIR or READDIRPLUS reply. */
export interface DirEntryOut {
  readonly name: Buffer;
  /** The cookie after this entry: where the next READDIR resumes. */
  readonly offset: number;
  readonly ino: number;
  /** File type bits (S_IFREG...), 0 if unknown. */
  readonly type: number;
}

/**
 * Where readdir puts its entries. `add` returns false once the kernel's buffer is full: that
 * entry was not sent (and, for READDIRPLUS, the kernel did not take its nodeid), so the
 * listing stops there and resumes from the last added entry's offset.
 */
export interface DirSink {
  readonly plus: boolean;
  /** READDIRPLUS: `entry` is the entry reply for the name ("." and ".." never count a lookup). */
  add(d: DirEntryOut, entry?: Entry): boolean;
}

/** What INIT settled on, for the filesystem to know. */
export interface ConnInfo {
  readonly major: number;
  readonly minor: number;
  readonly maxWrite: number;
  readonly maxRead: number;
  /** The capability flags both sides agreed on (FUSE_* bits, flags | flags2 << 32). */
  readonly flags: bigint;
}

/** Lock requests: `owner` is the kernel's lock owner; `flock` for flock(2) (whole file, per open file). */
export interface LockIn {
  readonly fh: number;
  readonly owner: bigint;
  readonly lock: Flock;
  readonly flock: boolean;
}

export interface KernelFs {
  /** INIT was answered: the connection serves from now on. */
  init(conn: ConnInfo): void;
  /** The kernel dropped `nlookup` of its references to a nodeid (FORGET and each BATCH_FORGET item). */
  forget(nodeid: number, nlookup: number): void;
  /** The connection is gone (unmounted, aborted, DESTROY). */
  destroy(): void;

  lookup(req: Request, parent: number, name: Buffer): Promise<Entry>;
  getattr(req: Request, nodeid: number, fh?: number): Promise<Attr>;
  setattr(req: Request, nodeid: number, set: SetattrIn): Promise<Attr>;
  readlink(req: Request, nodeid: number): Promise<Buffer>;
  symlink(req: Request, parent: number, name: Buffer, target: Buffer): Promise<Entry>;
  mknod(req: Request, parent: number, name: Buffer, mode: number, rdev: number, umask: number): Promise<Entry>;
  mkdir(req: Request, parent: number, name: Buffer, mode: number, umask: number): Promise<Entry>;
  unlink(req: Request, parent: number, name: Buffer): Promise<void>;
  rmdir(req: Request, parent: number, name: Buffer): Promise<void>;
  /** RENAME and RENAME2 (flags: RENAME_NOREPLACE, RENAME_EXCHANGE, 0). */
  rename(req: Request, parent: number, name: Buffer, newParent: number, newName: Buffer, flags: number): Promise<void>;
  link(req: Request, nodeid: number, newParent: number, newName: Buffer): Promise<Entry>;
  open(req: Request, nodeid: number, flags: number): Promise<Opened>;
  create(req: Request, parent: number, name: Buffer, mode: number, umask: number, flags: number): Promise<{ entry: Entry; opened: Opened }>;
  read(req: Request, nodeid: number, fh: number, offset: number, size: number): Promise<Buffer>;
  /** `data` is valid until the promise settles. Returns the bytes written. */
  write(req: Request, nodeid: number, fh: number, offset: number, data: Buffer, lockOwner?: bigint): Promise<number>;
  flush(req: Request, nodeid: number, fh: number, lockOwner: bigint): Promise<void>;
  fsync(req: Request, nodeid: number, fh: number, datasync: boolean): Promise<void>;
  /** RELEASE: `flockUnlock` (FUSE_RELEASE_FLOCK_UNLOCK) asks to drop the file's flock locks of `lockOwner`. */
  release(req: Request, nodeid: number, fh: number, flags: number, lockOwner: bigint, flockUnlock: boolean): Promise<void>;
  statfs(req: Request, nodeid: number): Promise<Statfs>;
  /** The whole value; the session answers size probes and ERANGE itself. */
  getxattr(req: Request, nodeid: number, name: Buffer): Promise<Buffer>;
  /** The names, each ending in NUL; the session answers size probes and ERANGE itself. */
  listxattr(req: Request, nodeid: number): Promise<Buffer>;
  setxattr(req: Request, nodeid: number, name: Buffer, value: Buffer, flags: number): Promise<void>;
  removexattr(req: Request, nodeid: number, name: Buffer): Promise<void>;
  access(req: Request, nodeid: number, mask: number): Promise<void>;
  opendir(req: Request, nodeid: number, flags: number): Promise<Opened>;
  /** READDIR and READDIRPLUS: fill `sink` with the entries after cookie `offset`. */
  readdir(req: Request, nodeid: number, fh: number, offset: number, sink: DirSink): Promise<void>;
  fsyncdir(req: Request, nodeid: number, fh: number, datasync: boolean): Promise<void>;
  releasedir(req: Request, nodeid: number, fh: number): Promise<void>;
  /** GETLK: the first conflicting lock, or one of type 'unlock'. */
  getlk(req: Request, nodeid: number, lk: LockIn): Promise<Flock>;
  /** SETLK (wait=false: EAGAIN on conflict) and SETLKW (wait=true: until granted or interrupted). */
  setlk(req: Request, nodeid: number, lk: LockIn, wait: boolean): Promise<void>;
  fallocate(req: Request, nodeid: number, fh: number, offset: number, length: number, mode: number): Promise<void>;
  /** SEEK_DATA (3) / SEEK_HOLE (4); the kernel handles the other whences itself. */
  lseek(req: Request, nodeid: number, fh: number, offset: number, whence: number): Promise<number>;
  copyFileRange(
    req: Request,
    nodeIn: number,
    fhIn: number,
    offIn: number,
    nodeOut: number,
    fhOut: number,
    offOut: number,
    length: number,
    flags: number,
  ): Promise<number>;
}
