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

/** One directory entry. `offset` is the cookie that continues the listing after it. */
export interface Dirent {
  readonly name: string;
  readonly offset: number;
  readonly ino: number;
  /** File type bits of st_mode (S_IFREG, S_IFDIR, ...), 0 when unknown. */
  readonly type: number;
}

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
