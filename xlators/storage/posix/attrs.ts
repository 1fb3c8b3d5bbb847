import { BigIntStats, StatsFs, constants } from 'fs';
import { FopError } from '../../../src/core/errors';
import { Caller, Gfid, Iatt, Statfs, Timespec } from '../../../src/core/types';

const NS = 1_000_000_000n;

export function timespec(ns: bigint): Timespec {
  let sec = ns / NS;
  let nsec = ns % NS;
  if (nsec < 0n) {
    sec -= 1n;
    nsec += NS;
  }
  return { sec: Number(sec), nsec: Number(nsec) };
}

/**
 * Attributes of a backing object as the volume shows them. `hiddenLinks` are links the
 * volume does not show: the GFID handle of a file, the .xlstack folder in the root.
 */
export function iattOf(st: BigIntStats, gfid: Gfid, hiddenLinks: number): Iatt {
  return {
    gfid,
    ino: Number(st.ino),
    mode: Number(st.mode),
    nlink: Math.max(0, Number(st.nlink) - hiddenLinks),
    uid: Number(st.uid),
    gid: Number(st.gid),
    rdev: Number(st.rdev),
    size: Number(st.size),
    blksize: Number(st.blksize),
    blocks: Number(st.blocks),
    atime: timespec(st.atimeNs),
    mtime: timespec(st.mtimeNs),
    ctime: timespec(st.ctimeNs),
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
