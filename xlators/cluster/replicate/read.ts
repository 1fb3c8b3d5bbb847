// Reads go to one copy that is owed nothing for what is read (data for read and seek, data
// and metadata for stat, metadata for xattrs and links, entries for listings), and to the
// next such copy if that one is gone. A copy that is behind is never read, even if it is
// the only one up: that is EIO, and for a split brain the log names the object.
import { FopError } from '../../../src/core/index';
import type { Frame, Inode } from '../../../src/core/index';
import type { Kind } from './changelog';
import { isGone } from './children';
import type { Replica } from './context';
import { refresh, splitBrainError } from './lookup';
import { readOrder } from './read-child';

/** Errors after which the next readable copy is tried: the copy is gone, or its file is. */
const tryNext = (e: FopError): boolean => isGone(e) || e.code === 'EBADF' || e.code === 'ESTALE';

/** The readable copies of `inode` for `kinds`, judged afresh if needed, in the order to try them. */
export async function readableOrder(r: Replica, frame: Frame, inode: Inode, kinds: readonly Kind[], what: string): Promise<number[]> {
  const c = r.subvols;
  if (c.upList().length === 0) throw new FopError('ENOTCONN', `${what}: no child of ${r.name} is up`);
  let readable = r.states.readable(inode, kinds, c.upList(), c.generation);
  if (readable === undefined) {
    await refresh(r, frame, inode);
    readable = r.states.readable(inode, kinds, c.upList(), c.generation) ?? [];
  }
  if (readable.length === 0) throw splitBrainError(r, inode, kinds, what);
  return readOrder(readable, inode.gfid, r.readPolicy(), frame.caller.pid);
}

/** Runs a read on the first readable copy, then the next ones while copies are gone. */
export async function readFrom<T>(r: Replica, frame: Frame, inode: Inode, kinds: readonly Kind[], what: string, fn: (child: number) => Promise<T>): Promise<T> {
  const order = await readableOrder(r, frame, inode, kinds, what);
  let last: FopError | undefined;
  for (const i of order) {
    try {
      return await fn(i);
    } catch (e) {
      last = FopError.from(e);
      if (frame.interrupted || !tryNext(last)) throw last;
      r.log.debug(`${what}: ${r.subvols.names[i]} failed (${last.message}); trying the next copy`);
    }
  }
  throw last!;
}
