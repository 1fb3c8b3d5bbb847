import { StatsFs, constants } from 'fs';
import { Caller, FopError, Gfid, Iatt, Statfs } from '../../../src/core/index';
import type { Stat } from './sys';

/**
 * Attributes of a backing object as the volume shows them. `hiddenLinks` are links the
 * volume does not show: the GFID handle of a file, the .xlstack folder in the root.
 */
export function iattOf(st: Stat, gfid: Gfid, hiddenLinks: number): Iatt {
  return {
    gfid,
    ino: st.ino,
    mode: st.mode,
    nlink: Math.max(0, st.nlink - hiddenLinks),
    uid: st.uid,
    gid: st.gid,
    rdev: st.rdev,
    size: st.size,
    blksize: st.blksize,
    blocks: st.blocks,
    atime: st.atime,
    mtime: st.mtime,
    ctime: st.ctime,
  };
}

export function statfsOf(s: StatsFs): Statfs {
  return {
    bsize: s.bsize,
    frsize: s.bsize,
    blocks: s.blocks,
    bfree: s.bfree,
    bavail: s.bavail,
    files: s.files,
    ffree: s.ffree,
    favail: s.ffree,
    fsid: 0,
    flag: 0,
    namemax: 255,
  };
}

/** access(2) against mode bits, for callers the kernel did not already check. */
export function checkAccess(iatt: Iatt, caller: Caller, mask: number): void {
  if (mask === constants.F_OK) return;
  if (caller.uid === 0) {
    // root may read and write anything, and execute what anyone may execute
    const anyExec = (iatt.mode & 0o111) !== 0 || (iatt.mode & constants.S_IFMT) === constants.S_IFDIR;
    if (mask & constants.X_OK && !anyExec) throw new FopError('EACCES');
    return;
  }
  const shift = caller.uid === iatt.uid ? 6 : caller.gid === iatt.gid || caller.groups.includes(iatt.gid) ? 3 : 0;
  const granted = (iatt.mode >> shift) & 7;
  if ((mask & granted) !== mask) throw new FopError('EACCES');
}
