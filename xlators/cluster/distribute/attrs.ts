// Attributes as the volume shows them: one inode number per GFID (the children are separate
// filesystems: their inode numbers collide between them and change when a file moves), and a
// directory's times merged from its copies.
import type { Gfid, Iatt, Statfs, Timespec } from '../../../src/core/index';

/**
 * The inode number of a GFID: its last 52 bits (GlusterFS also derives it from the GFID).
 * Stable across children, migrations and restarts; the root's is 1.
 */
export const inoOf = (gfid: Gfid): number => parseInt(gfid.replace(/-/g, '').slice(-13), 16);

export const withIno = (iatt: Iatt): Iatt => ({ ...iatt, ino: inoOf(iatt.gfid) });

const later = (a: Timespec, b: Timespec): Timespec => (b.sec > a.sec || (b.sec === a.sec && b.nsec > a.nsec) ? b : a);

/** A directory's attributes from its copies: the first copy's, with the latest times of any (entries change on every child). */
export function mergeDir(copies: readonly Iatt[]): Iatt {
  const [first, ...rest] = copies;
  let { atime, mtime, ctime } = first;
  for (const c of rest) {
    atime = later(atime, c.atime);
    mtime = later(mtime, c.mtime);
    ctime = later(ctime, c.ctime);
  }
  return { ...withIno(first), atime, mtime, ctime };
}

/** The volume's statfs: the children's space and inodes added up, in the first child's block size. */
export function sumStatfs(all: readonly Statfs[]): Statfs {
  const [first] = all;
  const frsize = first.frsize || first.bsize;
  const scale = (s: Statfs, n: number) => Math.floor((n * (s.frsize || s.bsize)) / frsize);
  const add = (f: (s: Statfs) => number, blocks: boolean) => all.reduce((t, s) => t + (blocks ? scale(s, f(s)) : f(s)), 0);
  return {
    ...first,
    blocks: add((s) => s.blocks, true),
    bfree: add((s) => s.bfree, true),
    bavail: add((s) => s.bavail, true),
    files: add((s) => s.files, false),
    ffree: add((s) => s.ffree, false),
    favail: add((s) => s.favail, false),
    namemax: Math.min(...all.map((s) => s.namemax)),
  };
}
