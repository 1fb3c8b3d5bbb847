// Linkto files: a name's placeholder on its hashed child when the data is on another child
// (after a rename, a layout change, a create on a stale layout): a regular file with only the
// sticky bit, no data, the file's GFID, and the holder's name in an internal xattr.
import { FopError, Frame, Iatt, Loc, S_IFMT, isReg } from '../../../src/core/index';
import type { Cluster } from './cluster';

export const LINKTO_XATTR = 'trusted.xlstack.dht.linkto';
const S_ISVTX = 0o1000;
export const LINKTO_MODE = 0o100000 | S_ISVTX;

/** A file with exactly the sticky bit may be a linkto file: its xattr says (a user may make one too). */
export const looksLikeLinkto = (iatt: Iatt): boolean => isReg(iatt.mode) && (iatt.mode & ~S_IFMT) === S_ISVTX;

/**
 * Set on a migration's new copy (still a linkto file) once its data and attributes are
 * complete, just before the old copy's name goes: the file's real mode (uint32). A linkto
 * file with it whose target no longer has the file is that file, its switch interrupted
 * between the two steps: whoever finds it finishes the switch (migrate.ts).
 */
export const PENDING_XATTR = 'trusted.xlstack.dht.pending-mode';

export interface LinktoState {
  /** The child it points to (its name); undefined: not a linkto file. */
  readonly target?: string;
  /** The mode it takes when its migration's switch ends. */
  readonly pendingMode?: number;
}

/** What a file that looks like a linkto file on child `i` is. */
export async function readLinkto(c: Cluster, frame: Frame, i: number, loc: Loc): Promise<LinktoState> {
  const v = await c.children[i].xattrop(frame, loc, 'get', { [LINKTO_XATTR]: Buffer.alloc(0), [PENDING_XATTR]: Buffer.alloc(0) });
  const t = v[LINKTO_XATTR];
  const p = v[PENDING_XATTR];
  return { target: t && t.length > 0 ? t.toString('latin1') : undefined, pendingMode: p && p.length === 4 ? p.readUInt32BE(0) : undefined };
}

/** The name of the child a linkto file on child `i` points to; undefined if it is no linkto file. */
export async function linktoTarget(c: Cluster, frame: Frame, i: number, loc: Loc): Promise<string | undefined> {
  return (await readLinkto(c, frame, i, loc)).target;
}

/** Points the linkto file (or the file being filled by a migration) at `loc` on child `i` to child `target`. */
export async function setLinkto(c: Cluster, frame: Frame, i: number, loc: Loc, target: number): Promise<void> {
  await c.children[i].xattrop(frame, loc, 'set', { [LINKTO_XATTR]: Buffer.from(c.childName(target), 'latin1') });
}

/** Makes the file at `loc` on child `i` an ordinary file again (a migration's last step). */
export async function clearLinkto(c: Cluster, frame: Frame, i: number, loc: Loc): Promise<void> {
  await c.children[i].xattrop(frame, loc, 'set', { [LINKTO_XATTR]: Buffer.alloc(0), [PENDING_XATTR]: Buffer.alloc(0) });
}

/** Marks a migration's new copy complete (or, undefined, not), with the mode it takes at the switch. */
export async function setPending(c: Cluster, frame: Frame, i: number, loc: Loc, mode: number | undefined): Promise<void> {
  const v = Buffer.alloc(mode === undefined ? 0 : 4);
  if (mode !== undefined) v.writeUInt32BE(mode & 0o7777, 0);
  await c.children[i].xattrop(frame, loc, 'set', { [PENDING_XATTR]: v });
}

/**
 * Makes a linkto file at `loc` (parent, name, and the file's inode: its GFID) on child `i`,
 * pointing to child `target`. When child `i` already has the GFID (a linkto file of another
 * name of the same file), the new name is a hard link to it. Nothing is left if it fails.
 */
export async function makeLinkto(c: Cluster, frame: Frame, i: number, loc: Loc, target: number): Promise<void> {
  const child = c.children[i];
  try {
    await child.mknod(frame, loc, LINKTO_MODE, 0);
  } catch (e) {
    if (FopError.from(e).code !== 'EEXIST') throw e;
    // The name is taken (a real conflict), or the GFID is: then link to what has it.
    const taken = await child.lookup(frame, { parent: loc.parent, name: loc.name }).then(
      () => true,
      () => false,
    );
    if (taken) throw e;
    await child.link(frame, { inode: loc.inode, gfid: loc.inode?.gfid }, loc);
    c.counters.linktosMade++;
    return;
  }
  try {
    await setLinkto(c, frame, i, loc, target);
  } catch (e) {
    await child.unlink(frame, loc).catch(() => undefined);
    throw e;
  }
  c.counters.linktosMade++;
}
