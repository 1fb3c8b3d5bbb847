// Metadata heal: a sink's copy gets the source's owner, group, mode, times and extended
// attributes (user, trusted, security: everything a client can see; xattrs the sink has and
// the source does not are removed). Owner first: a chown clears set-id bits, which the mode
// then puts back. The internal xattrs translators above replicate keep on the object
// (distribute's layouts and linkto marks) are healed the same way: a copy made by an entry
// heal, or one that was away while they changed, must not lack them (a linkto file without
// its mark would be read as an empty file). Replicate's own changelog is not copied.
import { FopError, S_IFMT } from '../../../../src/core/index';
import type { Frame, Inode, Name } from '../../../../src/core/index';
import { AFR_PREFIX } from '../changelog';
import type { Replica } from '../context';

async function xattrsOf(r: Replica, frame: Frame, i: number, inode: Inode): Promise<Map<Name, Buffer>> {
  const out = new Map<Name, Buffer>();
  let names: Name[];
  try {
    names = await r.subvols.call(i, frame, 'listxattr', { inode });
  } catch (e) {
    if (FopError.from(e).code === 'EOPNOTSUPP') return out;
    throw e;
  }
  for (const n of names) {
    try {
      out.set(n, await r.subvols.call(i, frame, 'getxattr', { inode }, n));
    } catch (e) {
      // Gone since it was listed.
      if (FopError.from(e).code !== 'ENODATA') throw e;
    }
  }
  return out;
}

/** The internal xattrs of translators above on copy `i` (a 'get' of no names reads them all). */
async function foreignInternalOf(r: Replica, frame: Frame, i: number, inode: Inode): Promise<Map<string, Buffer>> {
  const all = await r.subvols.call(i, frame, 'xattrop', { inode }, 'get', {});
  return new Map(Object.entries(all).filter(([n, v]) => !n.startsWith(AFR_PREFIX) && v.length > 0));
}

/** Makes sink `s`'s internal xattrs of translators above those of the source (an empty value removes one). */
async function healForeignInternal(r: Replica, frame: Frame, want: Map<string, Buffer>, s: number, inode: Inode): Promise<void> {
  const have = await foreignInternalOf(r, frame, s, inode);
  const change: Record<string, Buffer> = {};
  for (const n of have.keys()) if (!want.has(n)) change[n] = Buffer.alloc(0);
  for (const [n, v] of want) if (!have.get(n)?.equals(v)) change[n] = v;
  if (Object.keys(change).length > 0) await r.subvols.call(s, frame, 'xattrop', { inode }, 'set', change);
}

/** Gives each sink the source's metadata; returns the sinks that got all of it. */
export async function healMetadata(r: Replica, frame: Frame, inode: Inode, src: number, sinks: readonly number[]): Promise<number[]> {
  const c = r.subvols;
  const a = await c.call(src, frame, 'stat', { inode });
  const want = await xattrsOf(r, frame, src, inode);
  const wantInternal = await foreignInternalOf(r, frame, src, inode);
  const isLink = (a.mode & S_IFMT) === 0o120000;
  const healed: number[] = [];
  await Promise.all(
    sinks.map(async (s) => {
      try {
        const b = await c.call(s, frame, 'stat', { inode });
        if ((b.mode & S_IFMT) !== (a.mode & S_IFMT)) throw new FopError('EIO', 'the copies are of different types');
        if (b.uid !== a.uid || b.gid !== a.gid) await c.call(s, frame, 'setattr', { inode }, { uid: a.uid, gid: a.gid });
        await c.call(s, frame, 'setattr', { inode }, { ...(isLink ? {} : { mode: a.mode & 0o7777 }), atime: a.atime, mtime: a.mtime });
        const have = await xattrsOf(r, frame, s, inode);
        for (const n of have.keys()) if (!want.has(n)) await c.call(s, frame, 'removexattr', { inode }, n);
        for (const [n, v] of want) if (!have.get(n)?.equals(v)) await c.call(s, frame, 'setxattr', { inode }, n, v, 0);
        await healForeignInternal(r, frame, wantInternal, s, inode);
        healed.push(s);
      } catch (e) {
        r.log.warn(`metadata heal of ${inode.gfid} on ${c.names[s]} failed: ${(e as Error).message}`);
      }
    }),
  );
  return healed.sort((x, y) => x - y);
}
