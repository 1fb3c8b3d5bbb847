// Entry heal: a sink's copy of a directory gets the source's names. What the source has and
// the sink lacks is made there with the same GFID: a hard link when the sink has that file
// under another name (a link or a rename made while it was away), a rename when it has that
// directory under another name here, else a new object (whose data and metadata are then
// healed: the source's copy is marked as ahead of the sink's, so that is not lost if this
// client dies). What the sink has and the source does not is removed there (a directory
// with everything in it). Names are removed only after what is made, so a file renamed
// elsewhere keeps its data.
//
// When no copy is accused (a change to the directory was cut short, nobody knows which copy
// is right), nothing is removed: every copy gets every name any copy has (conservative merge).
import { FopError, S_IFMT } from '../../../../src/core/index';
import type { DirentPlus, Frame, Gfid, Inode, Name } from '../../../../src/core/index';
import type { Replica } from '../context';
import { kindsOf } from '../inode-state';
import { listCopy } from './copies';

const S_IFDIR = 0o040000;
const S_IFREG = 0o100000;
const S_IFLNK = 0o120000;

export interface EntryHealResult {
  /** Sinks whose copy now has exactly the source's names (merge: every name any copy has). */
  readonly healed: number[];
  /** Objects made on sinks: their data and metadata are to be healed next. */
  readonly made: Gfid[];
}

const typeOf = (e: DirentPlus): number => e.iatt!.mode & S_IFMT;

export async function healEntries(r: Replica, frame: Frame, dir: Inode, src: number, sinks: readonly number[], merge: boolean, all: readonly number[]): Promise<EntryHealResult> {
  const c = r.subvols;
  const lists = new Map<number, Map<Name, DirentPlus>>();
  for (const i of merge ? all : [src, ...sinks]) lists.set(i, await listCopy(r, frame, i, dir));
  const made: Gfid[] = [];
  const healed: number[] = [];
  for (const s of merge ? all : sinks) {
    try {
      const ok = merge ? await mergeInto(r, frame, dir, s, lists, made) : await mirror(r, frame, dir, src, s, lists.get(src)!, lists.get(s)!, made);
      if (ok) healed.push(s);
    } catch (e) {
      r.log.warn(`entry heal of ${dir.gfid} on ${c.names[s]} failed: ${(e as Error).message}`);
    }
  }
  return { healed, made };
}

/** Makes sink `s`'s names those of the source. Returns whether everything could be done now. */
async function mirror(r: Replica, frame: Frame, dir: Inode, src: number, s: number, want: Map<Name, DirentPlus>, have: Map<Name, DirentPlus>, made: Gfid[]): Promise<boolean> {
  let complete = true;
  const stale = new Map([...have].filter(([n, e]) => want.get(n)?.iatt!.gfid !== e.iatt!.gfid));
  // Directories renamed within this directory: moved, not made again.
  for (const [n, e] of want) {
    if (have.get(n)?.iatt!.gfid === e.iatt!.gfid || typeOf(e) !== S_IFDIR || have.has(n)) continue;
    const old = [...stale].find(([, x]) => x.iatt!.gfid === e.iatt!.gfid);
    if (!old) continue;
    await r.subvols.call(s, frame, 'rename', { parent: dir, name: old[0] }, { parent: dir, name: n }, 0);
    stale.delete(old[0]);
    have.delete(old[0]);
    have.set(n, old[1]);
  }
  // Names taken by something else on the sink must be freed before the right object goes there.
  for (const [n] of [...stale].filter(([n]) => want.has(n))) {
    await expunge(r, frame, s, dir, n, stale.get(n)!);
    stale.delete(n);
    have.delete(n);
  }
  for (const [n, e] of want) {
    if (have.get(n)?.iatt!.gfid === e.iatt!.gfid) continue;
    const done = await recreate(r, frame, dir, n, e, src, s);
    if (done === 'made') made.push(e.iatt!.gfid);
    if (done === 'later') complete = false;
  }
  for (const [n, e] of stale) await expunge(r, frame, s, dir, n, e);
  return complete;
}

/** Gives sink `s` every name some copy has that it lacks (nothing removed). */
async function mergeInto(r: Replica, frame: Frame, dir: Inode, s: number, lists: Map<number, Map<Name, DirentPlus>>, made: Gfid[]): Promise<boolean> {
  const have = lists.get(s)!;
  let complete = true;
  const seen = new Set<Name>();
  for (const [from, list] of lists) {
    if (from === s) continue;
    for (const [n, e] of list) {
      if (have.has(n) || seen.has(n)) {
        if (have.has(n) && have.get(n)!.iatt!.gfid !== e.iatt!.gfid) {
          r.log.error(`split brain: <gfid:${dir.gfid}>/${n} names ${e.iatt!.gfid} on ${r.subvols.names[from]} and ${have.get(n)!.iatt!.gfid} on ${r.subvols.names[s]}, and no copy is known to be right`);
          complete = false;
        }
        continue;
      }
      seen.add(n);
      const done = await recreate(r, frame, dir, n, e, from, s);
      if (done === 'made') made.push(e.iatt!.gfid);
      if (done === 'later') complete = false;
    }
  }
  return complete;
}

/**
 * Makes name `n` on sink `s` for the object `e` is on `from`: 'linked' (the sink had it
 * elsewhere), 'made' (new; marked for its own heal), or 'later' (the sink has that directory
 * elsewhere, whose own directory's heal removes it first).
 */
async function recreate(r: Replica, frame: Frame, dir: Inode, n: Name, e: DirentPlus, from: number, s: number): Promise<'linked' | 'made' | 'later'> {
  const c = r.subvols;
  const a = e.iatt!;
  const type = a.mode & S_IFMT;
  const inode = r.inode(a.gfid, type);
  const loc = { parent: dir, name: n, inode };
  const exists = await c.call(s, frame, 'lookup', { gfid: a.gfid }).then(
    () => true,
    () => false,
  );
  if (exists && type !== S_IFDIR) {
    await c.call(s, frame, 'link', { inode, gfid: a.gfid }, loc);
    return 'linked';
  }
  if (exists) {
    r.log.info(`entry heal: directory ${a.gfid} is elsewhere on ${c.names[s]}; made here once its old place is healed`);
    return 'later';
  }
  const perm = a.mode & 0o7777;
  switch (type) {
    case S_IFDIR:
      await c.call(s, frame, 'mkdir', loc, perm);
      break;
    case S_IFLNK:
      await c.call(s, frame, 'symlink', await c.call(from, frame, 'readlink', { inode }), loc);
      break;
    case S_IFREG:
      await c.call(s, frame, 'mknod', loc, S_IFREG | perm, 0);
      break;
    default:
      await c.call(s, frame, 'mknod', loc, type | perm, a.rdev);
  }
  // The new copy is empty and root's: the source's copy says so, durably, before anything else.
  const kinds = kindsOf(type, type === S_IFDIR);
  const mark = r.changelog.addAll(new Map(kinds.map((k) => [k, { pending: new Map([[s, 1]]) }])));
  await c.call(from, frame, 'xattrop', { inode }, 'add', mark);
  for (const k of kinds) r.states.missed(inode, k, [s]);
  return 'made';
}

/** Removes name `n` from sink `s`, a directory with all it holds. */
async function expunge(r: Replica, frame: Frame, s: number, dir: Inode, n: Name, e: DirentPlus): Promise<void> {
  const c = r.subvols;
  const loc = { parent: dir, name: n };
  if (typeOf(e) !== S_IFDIR) {
    await c.call(s, frame, 'unlink', loc).catch((err) => ignoreMissing(err));
    return;
  }
  const sub = r.inode(e.iatt!.gfid, S_IFDIR);
  for (const [m, x] of await listCopy(r, frame, s, sub)) await expunge(r, frame, s, sub, m, x);
  await c.call(s, frame, 'rmdir', loc).catch((err) => ignoreMissing(err));
  r.log.info(`entry heal: removed directory <gfid:${dir.gfid}>/${n} (${e.iatt!.gfid}) and its contents from ${c.names[s]}`);
}

function ignoreMissing(e: unknown): void {
  if (FopError.from(e).code !== 'ENOENT') throw e;
}
