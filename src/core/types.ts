import { constants } from 'fs';

/** A GFID: the uuid that names a file or directory on every graph and across restarts. */
export type Gfid = string;

export const ROOT_GFID: Gfid = '00000000-0000-0000-0000-000000000001';

const GFID_RE = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** A GFID in canonical form (lowercase hex, dashes): nothing else is taken for one. */
export const isGfid = (s: unknown): s is Gfid => typeof s === 'string' && GFID_RE.test(s);
export const NULL_GFID: Gfid = '00000000-0000-0000-0000-000000000000';

export interface Timespec {
  readonly sec: number;
  readonly nsec: number;
}

/** File attributes as every translator sees them (GlusterFS's iatt). */
export interface Iatt {
  readonly gfid: Gfid;
  readonly ino: number;
  readonly mode: number;
  readonly nlink: number;
  readonly uid: number;
  readonly gid: number;
  readonly rdev: number;
  readonly size: number;
  readonly blksize: number;
  readonly blocks: number;
  readonly atime: Timespec;
  readonly mtime: Timespec;
  readonly ctime: Timespec;
}

/** Changes a setattr applies; absent fields stay as they are. 'now' is the server's clock. */
export interface SetAttr {
  readonly mode?: number;
  readonly uid?: number;
  readonly gid?: number;
  readonly atime?: Timespec | 'now';
  readonly mtime?: Timespec | 'now';
}

/**
 * Names are bytes. Every name, symlink target and xattr name in the engine is a *byte
 * string*: one char per byte (latin1), so any name the kernel accepts, valid UTF-8 or not,
 * round-trips unchanged through every translator and over the wire. Convert only at the
 * edges: storage with `nameBytes`, a transport that speaks UTF-8 with the utf8 helpers.
 */
export type Name = string;

export const nameFromBytes = (b: Buffer): Name => b.toString('latin1');
export const nameBytes = (n: Name): Buffer => Buffer.from(n, 'latin1');
export const nameFromUtf8 = (s: string): Name => Buffer.from(s, 'utf8').toString('latin1');
export const nameToUtf8 = (n: Name): string => Buffer.from(n, 'latin1').toString('utf8');
/** Whether a string is a byte string (no char above 0xff): anything else is not a name. */
export const isByteString = (s: string): boolean => !/[^\x00-\xff]/.test(s);

/**
 * The largest offset or size the stack carries exactly (JavaScript numbers). Transports
 * refuse anything beyond it at the boundary (EFBIG/EINVAL, as ext4 does past its limit),
 * before a translator sees it.
 */
export const MAX_OFFSET = Number.MAX_SAFE_INTEGER;

/** One directory entry. `offset` is the cookie that continues the listing after it. */
export interface Dirent {
  readonly name: Name;
  readonly offset: number;
  readonly ino: number;
  /** File type bits of st_mode (S_IFREG, S_IFDIR, ...), 0 when unknown. */
  readonly type: number;
}

/** A directory entry with the attributes of what it names (undefined: it vanished meanwhile). */
export interface DirentPlus extends Dirent {
  readonly iatt?: Iatt;
  /**
   * The names listxattr would give, when the layer below learns them with the entry at no
   * extra round trip: a cache may then answer a getxattr of any other name with ENODATA
   * (`ls -l` asks two absent xattrs of every file).
   */
  readonly xattrNames?: readonly Name[];
}

/** rename(2) flags (renameat2). */
export const RENAME_NOREPLACE = 1;
export const RENAME_EXCHANGE = 2;

/** fallocate(2) modes. */
export const FALLOC_FL_KEEP_SIZE = 0x01;
export const FALLOC_FL_PUNCH_HOLE = 0x02;
export const FALLOC_FL_ZERO_RANGE = 0x10;

/** F_GETLK, F_SETLK, F_SETLKW. */
export type LockCmd = 'get' | 'set' | 'wait';
/** POSIX byte-range locks (fcntl: per owner) or flock locks (per open file). */
export type LockKind = 'posix' | 'flock';
export type LockType = 'read' | 'write' | 'unlock';
/** `end` for a lock that reaches the end of the file however far it grows. */
export const LOCK_TO_EOF = MAX_OFFSET;

/** A lock as fcntl(2) describes it. Who owns it is the frame's `lkOwner`. */
export interface Flock {
  readonly type: LockType;
  /** First byte. */
  readonly start: number;
  /** Last byte, inclusive (LOCK_TO_EOF: to the end). */
  readonly end: number;
  /** The process holding or asking, as the caller's kernel numbers it (0 when unknown). */
  readonly pid: number;
}

/** entrylk commands: take (waiting), try (EAGAIN if held), release. */
export type EntryLockCmd = 'lock' | 'trylock' | 'unlock';
export type EntryLockType = 'read' | 'write';

/**
 * xattrop: atomic operations on a translator's internal xattrs (keys under
 * INTERNAL_XATTR_PREFIX, which users never see): read them, set them (an empty value removes
 * one), or add big-endian int32 arrays element-wise (a missing value counts as zeros).
 * A 'get' of no keys reads every internal xattr the object has.
 */
export type XattrOp = 'get' | 'set' | 'add';
export type XattrMap = Readonly<Record<string, Buffer>>;
export const INTERNAL_XATTR_PREFIX = 'trusted.xlstack.';

export interface Statfs {
  readonly bsize: number;
  readonly frsize: number;
  readonly blocks: number;
  readonly bfree: number;
  readonly bavail: number;
  readonly files: number;
  readonly ffree: number;
  readonly favail: number;
  readonly fsid: number;
  readonly flag: number;
  readonly namemax: number;
}

/** Who asked: the credentials a fop runs with. */
export interface Caller {
  readonly uid: number;
  readonly gid: number;
  readonly groups: readonly number[];
  readonly pid: number;
}

export const ROOT_CALLER: Caller = { uid: 0, gid: 0, groups: [], pid: 0 };

export const S_IFMT = constants.S_IFMT;
export const isDir = (mode: number): boolean => (mode & S_IFMT) === constants.S_IFDIR;
export const isReg = (mode: number): boolean => (mode & S_IFMT) === constants.S_IFREG;
export const isLnk = (mode: number): boolean => (mode & S_IFMT) === constants.S_IFLNK;
