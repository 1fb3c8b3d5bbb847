import * as fs from 'fs';
import * as path from 'path';
import type { Name, Timespec } from '../../../src/core/index';
import { nameBytes } from '../../../src/core/index';

/**
 * Where an object is, for the *at system calls: a directory fd and one name in it, or the
 * object's own fd (`name` null). Names are the exact bytes the backing filesystem stores.
 */
export interface At {
  readonly dirfd: number;
  readonly name: Buffer | null;
}

/** What fstatat reports, as numbers (inode and device numbers are exact below 2^53). */
export interface Stat {
  readonly dev: number;
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

/** The addon (sys.c): all synchronous but fallocate; none follows a final symlink. */
interface Addon {
  stat(dirfd: number, name: Buffer | null, out: Float64Array, missingOk: boolean): boolean;
  getxattr(dirfd: number, name: Buffer | null, attr: Buffer, missingOk: boolean): Buffer | undefined;
  setxattr(dirfd: number, name: Buffer | null, attr: Buffer, value: Buffer, flags: number): void;
  listxattr(dirfd: number, name: Buffer | null): Name[];
  removexattr(dirfd: number, name: Buffer | null, attr: Buffer): void;
  openat(dirfd: number, name: Buffer, flags: number, mode: number): number;
  mkdirat(dirfd: number, name: Buffer, mode: number): void;
  mknodat(dirfd: number, name: Buffer, mode: number, rdev: number): void;
  symlinkat(target: Buffer, dirfd: number, name: Buffer): void;
  readlinkat(dirfd: number, name: Buffer): Buffer;
  linkat(fromDir: number, from: Buffer, toDir: number, to: Buffer): void;
  unlinkat(dirfd: number, name: Buffer, flags: number): void;
  renameat2(fromDir: number, from: Buffer, toDir: number, to: Buffer, flags: number): void;
  chown(dirfd: number, name: Buffer | null, uid: number, gid: number): void;
  chmod(dirfd: number, name: Buffer | null, mode: number): void;
  utimens(dirfd: number, name: Buffer | null, atimeSec: number, atimeNsec: number, mtimeSec: number, mtimeNsec: number): void;
  lseek(fd: number, offset: number, whence: number): number;
  fallocate(fd: number, mode: number, offset: number, length: number): Promise<void>;
  preadNowait(fd: number, buf: Buffer, off: number, len: number, pos: number): number;
  xattrAt(enabled: boolean): boolean;
}

export const UTIME_OMIT = -1;
export const UTIME_NOW = -2;
export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;
export const AT_FDCWD = -100;
export const AT_REMOVEDIR = 0x200;
export const SEEK_DATA = 3;
export const SEEK_HOLE = 4;

/** node-gyp builds the addon into build/Release at the package root. */
function packageRoot(from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    if (fs.existsSync(path.join(dir, 'package.json'))) return dir;
    if (dir === path.dirname(dir)) throw new Error(`no package.json above ${from}`);
  }
}

// eslint-disable-next-line @typescript-eslint/no-require-imports
const addon: Addon = require(path.join(packageRoot(__dirname), 'build', 'Release', 'posix_sys.node'));

// One array for every stat: the addon fills it, statAt copies it out at once.
const statOut = new Float64Array(16);

function statFrom(o: Float64Array): Stat {
  return {
    dev: o[0],
    ino: o[1],
    mode: o[2],
    nlink: o[3],
    uid: o[4],
    gid: o[5],
    rdev: o[6],
    size: o[7],
    blksize: o[8],
    blocks: o[9],
    atime: { sec: o[10], nsec: o[11] },
    mtime: { sec: o[12], nsec: o[13] },
    ctime: { sec: o[14], nsec: o[15] },
  };
}

/** A path for the path-based helpers (tools and tests): the bytes of a normal UTF-8 path. */
const pathAt = (p: string): At => ({ dirfd: AT_FDCWD, name: Buffer.from(p, 'utf8') });

/**
 * The system calls of storage/posix, by `At`. A plain object (tests may replace a call to
 * make it fail). Names are Buffers; xattr names are byte strings.
 */
export const sys = {
  stat(at: At): Stat {
    addon.stat(at.dirfd, at.name, statOut, false);
    return statFrom(statOut);
  },
  /** undefined if the entry does not exist (misses are common: no exception for them). */
  statIfExists(at: At): Stat | undefined {
    return addon.stat(at.dirfd, at.name, statOut, true) ? statFrom(statOut) : undefined;
  },
  /** `attr` a byte string, or its bytes (a name used on every lookup need not be converted each time). */
  getxattrAt: (at: At, attr: Name | Buffer): Buffer => addon.getxattr(at.dirfd, at.name, attrBytes(attr), false)!,
  /** undefined if the object has no such attribute (ENODATA: no exception for a miss). */
  getxattrIfExists: (at: At, attr: Name | Buffer): Buffer | undefined => addon.getxattr(at.dirfd, at.name, attrBytes(attr), true),
  setxattrAt: (at: At, attr: Name | Buffer, value: Buffer, flags: number): void => addon.setxattr(at.dirfd, at.name, attrBytes(attr), value, flags),
  listxattrAt: (at: At): Name[] => addon.listxattr(at.dirfd, at.name),
  removexattrAt: (at: At, attr: Name): void => addon.removexattr(at.dirfd, at.name, nameBytes(attr)),
  openat: (at: At, flags: number, mode = 0): number => addon.openat(at.dirfd, entry(at), flags, mode),
  mkdirat: (at: At, mode: number): void => addon.mkdirat(at.dirfd, entry(at), mode),
  mknodat: (at: At, mode: number, rdev: number): void => addon.mknodat(at.dirfd, entry(at), mode, rdev),
  symlinkat: (target: Buffer, at: At): void => addon.symlinkat(target, at.dirfd, entry(at)),
  readlinkat: (at: At): Buffer => addon.readlinkat(at.dirfd, entry(at)),
  linkat: (from: At, to: At): void => addon.linkat(from.dirfd, entry(from), to.dirfd, entry(to)),
  unlinkat: (at: At, dir = false): void => addon.unlinkat(at.dirfd, entry(at), dir ? AT_REMOVEDIR : 0),
  renameat2: (from: At, to: At, flags: number): void => addon.renameat2(from.dirfd, entry(from), to.dirfd, entry(to), flags),
  chown: (at: At, uid: number, gid: number): void => addon.chown(at.dirfd, at.name, uid, gid),
  chmod: (at: At, mode: number): void => addon.chmod(at.dirfd, at.name, mode),
  /** A nsec of UTIME_OMIT (-1) leaves that time as it is; UTIME_NOW (-2) sets it to now. */
  utimens: (at: At, atime: [number, number], mtime: [number, number]): void => addon.utimens(at.dirfd, at.name, atime[0], atime[1], mtime[0], mtime[1]),
  lseek: (fd: number, offset: number, whence: number): number => addon.lseek(fd, offset, whence),
  fallocate: (fd: number, mode: number, offset: number, length: number): Promise<void> => addon.fallocate(fd, mode, offset, length),
  /**
   * Reads what the page cache holds of [pos, pos + len) into buf at off, without waiting for
   * the disk (preadv2 RWF_NOWAIT): the byte count (short if only a part is cached; 0 at the
   * end of the file), or -errno (-EAGAIN: nothing cached; other filesystems may not offer it).
   */
  preadNowait: (fd: number, buf: Buffer, off: number, len: number, pos: number): number => addon.preadNowait(fd, buf, off, len, pos),
  /** pwrite(2) on the calling thread (position null: at the end, for O_APPEND): the byte count. */
  pwriteSync: (fd: number, buf: Buffer, off: number, len: number, pos: number | null): number => fs.writeSync(fd, buf, off, len, pos),
  /** pwrite(2) on the thread pool: the byte count. */
  pwrite: (fd: number, buf: Buffer, off: number, len: number, pos: number | null): Promise<number> =>
    new Promise((res, rej) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? rej(e) : res(n)))),
  /** pread(2) on the thread pool (it may wait for the disk): the byte count. */
  pread: (fd: number, buf: Buffer, off: number, len: number, pos: number): Promise<number> =>
    new Promise((res, rej) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? rej(e) : res(n)))),

  /**
   * Whether xattrs of entries are read and written with getxattrat(2) and friends (Linux
   * 6.13), or through /proc/self/fd/N/name as older kernels need (false: tests of that path).
   * Returns whether they are now used (false on kernels without them, whatever was asked).
   */
  useXattrAt: (enabled: boolean): boolean => addon.xattrAt(enabled),

  // Path-based, for tools and tests (a final symlink is not followed).
  getxattr: (p: string, attr: Name): Buffer => sys.getxattrAt(pathAt(p), attr),
  setxattr: (p: string, attr: Name, value: Buffer, flags: number): void => sys.setxattrAt(pathAt(p), attr, value, flags),
  listxattr: (p: string): Name[] => sys.listxattrAt(pathAt(p)),
  removexattr: (p: string, attr: Name): void => sys.removexattrAt(pathAt(p), attr),
};

const attrBytes = (attr: Name | Buffer): Buffer => (typeof attr === 'string' ? nameBytes(attr) : attr);

/** The name of an entry call: these never act on the fd itself. */
function entry(at: At): Buffer {
  if (at.name === null) throw Object.assign(new Error('EINVAL: an entry call needs a name'), { code: 'EINVAL' });
  return at.name;
}
