// Working on one copy at a time, for heals: open a copy, list a directory's copy.
import { constants } from 'fs';
import type { DirentPlus, Fd, Frame, Inode, Name } from '../../../../src/core/index';
import type { Replica } from '../context';

/** Opens `inode` on child i alone with a fresh fd (released by the caller with fd.unref()). */
export async function openCopy(r: Replica, frame: Frame, i: number, inode: Inode, flags: number): Promise<Fd> {
  const isDir = inode.isDir;
  const fd = r.host.newFd(inode, flags, isDir);
  try {
    await r.subvols.call(i, frame, isDir ? 'opendir' : 'open', { inode, gfid: inode.gfid }, fd);
    return fd;
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

/** Runs `fn` with `inode` open on child i, closing it afterwards. */
export async function withCopy<T>(r: Replica, frame: Frame, i: number, inode: Inode, flags: number, fn: (fd: Fd) => Promise<T>): Promise<T> {
  const fd = await openCopy(r, frame, i, inode, flags);
  try {
    return await fn(fd);
  } finally {
    await fd.unref();
  }
}

const LIST_CHUNK = 64 * 1024;

/** Every entry of a directory's copy on child i (with attributes, so GFIDs), by name. */
export async function listCopy(r: Replica, frame: Frame, i: number, dir: Inode): Promise<Map<Name, DirentPlus>> {
  return withCopy(r, frame, i, dir, constants.O_RDONLY, async (fd) => {
    const out = new Map<Name, DirentPlus>();
    for (let offset = 0; ; ) {
      const batch = await r.subvols.call(i, frame, 'readdirp', fd, LIST_CHUNK, offset);
      if (batch.length === 0) return out;
      for (const e of batch) if (e.name !== '.' && e.name !== '..' && e.iatt) out.set(e.name, e);
      offset = batch[batch.length - 1].offset;
    }
  });
}
