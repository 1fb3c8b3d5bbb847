// Data heal: a sink's copy becomes the source's, byte for byte. The sink is cut to nothing
// and grown to the source's size (all hole), then the source's data is copied into it,
// region by region as SEEK_DATA/SEEK_HOLE find them, a chunk at a time (chunks of zeros
// are left as holes); the sink is synced, and given the source's times. It is done under
// the data lock, given back between windows of HEAL_WINDOW bytes so that writers of a large
// file are not held for the whole copy: what they write meanwhile goes to every copy (a
// region not copied yet is copied from the source afterwards, with their write in it).
import { constants } from 'fs';
import { FopError } from '../../../../src/core/index';
import type { Fd, Frame, Inode } from '../../../../src/core/index';
import type { Replica } from '../context';
import { openCopy } from './copies';

/** How much is read and written at once. */
export const HEAL_CHUNK = 1024 * 1024;
/** How much is copied before the lock is given back for a moment (writers waiting get their turn). */
export const HEAL_WINDOW = 32 * 1024 * 1024;

const isZero = (b: Buffer): boolean => {
  for (let i = 0; i < b.length; i++) if (b[i] !== 0) return false;
  return true;
};

/** The next data region at or after `off`: [start, end), or undefined past the last. */
async function nextData(r: Replica, frame: Frame, src: number, fd: Fd, off: number, size: number): Promise<[number, number] | undefined> {
  if (off >= size) return undefined;
  try {
    const start = await r.subvols.call(src, frame, 'seek', fd, off, 'data');
    if (start >= size) return undefined;
    const end = await r.subvols.call(src, frame, 'seek', fd, start, 'hole');
    return [start, Math.min(end, size)];
  } catch (e) {
    const err = FopError.from(e);
    if (err.code === 'ENXIO') return undefined;
    // A child that cannot tell holes: everything from here is data.
    if (err.code === 'EINVAL' || err.code === 'ENOSYS' || err.code === 'EOPNOTSUPP') return [off, size];
    throw err;
  }
}

/**
 * Copies the source's data to each sink; returns the sinks that got all of it. `between`
 * runs after each window (it gives the lock back and takes it again) and says whether the
 * heal may go on (the source is still a source); if not, no sink is done.
 */
export async function healData(r: Replica, frame: Frame, inode: Inode, src: number, sinks: readonly number[], between: () => Promise<boolean>): Promise<number[]> {
  const c = r.subvols;
  const from = await openCopy(r, frame, src, inode, constants.O_RDONLY);
  const to = new Map<number, Fd>();
  try {
    for (const s of sinks) {
      try {
        to.set(s, await openCopy(r, frame, s, inode, constants.O_WRONLY));
      } catch (e) {
        r.log.warn(`data heal of ${inode.gfid}: cannot open the copy on ${c.names[s]}: ${(e as Error).message}`);
      }
    }
    const size = (await c.call(src, frame, 'fstat', from)).size;
    const live = new Map(to);
    const drop = (s: number, e: unknown) => {
      r.log.warn(`data heal of ${inode.gfid} on ${c.names[s]} failed: ${(e as Error).message}`);
      live.delete(s);
    };
    const onEach = (fn: (s: number, fd: Fd) => Promise<unknown>) => Promise.all([...live].map(([s, fd]) => fn(s, fd).catch((e) => drop(s, e))));
    await onEach(async (s, fd) => {
      await c.call(s, frame, 'ftruncate', fd, 0);
      await c.call(s, frame, 'ftruncate', fd, size);
    });
    let windows = 0;
    let sinceBreak = 0;
    for (let off = 0; live.size > 0; ) {
      const region = await nextData(r, frame, src, from, off, size);
      if (!region) break;
      for (let at = region[0]; at < region[1] && live.size > 0; ) {
        const chunk = await c.call(src, frame, 'read', from, Math.min(HEAL_CHUNK, region[1] - at), at);
        if (chunk.length === 0) break;
        if (!isZero(chunk)) await onEach((s, fd) => c.call(s, frame, 'write', fd, chunk, at));
        at += chunk.length;
        sinceBreak += chunk.length;
        if (sinceBreak >= HEAL_WINDOW) {
          sinceBreak = 0;
          windows++;
          if (!(await between())) throw new FopError('EAGAIN', `data heal of ${inode.gfid}: ${c.names[src]} is no longer a source; again later`);
        }
      }
      off = region[1];
    }
    await onEach((s, fd) => c.call(s, frame, 'fsync', fd, false));
    const done = await c.call(src, frame, 'fstat', from);
    // Under the lock from start to end, nothing else could change it.
    if (windows === 0 && done.size !== size) throw new FopError('EAGAIN', `data heal of ${inode.gfid}: the source changed size while it was copied`);
    await onEach((s, fd) => c.call(s, frame, 'fsetattr', fd, { atime: done.atime, mtime: done.mtime }));
    return [...live.keys()];
  } finally {
    await from.unref();
    await Promise.all([...to.values()].map((fd) => fd.unref()));
  }
}
