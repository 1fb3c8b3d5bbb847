// Directories: a copy on every child, one GFID; a copy missing on a child (it was down, or
// was added since) is made there on lookup; the layout is read from the copies and healed
// when it has holes or overlaps; mkdir, rmdir and changes to a directory reach every copy.
import { constants } from 'fs';
import { FopError, Frame, INTERNAL_XATTR_PREFIX, ROOT_CALLER, ROOT_GFID, isDir } from '../../../src/core/index';
import type { DirentPlus, Fd, Gfid, Iatt, Inode, Loc, SetAttr, Xlator } from '../../../src/core/index';
import { mergeDir } from './attrs';
import { Cluster, internal, isAbsent, settle } from './cluster';
import { murmur3 } from './hash';
import { LINKTO_XATTR, looksLikeLinkto } from './linkto';
import { LAYOUT_DOMAIN, lockOn } from './locks';
import { LAYOUT_XATTR, Layout, Range, RangeRecord, decodeRange, encodeRange, freshLayout, hashedChild, isComplete, movedShare, rebalancedLayout, sameLayout, spanOf } from './layout';

/** On the root's copies: the children being drained (`rebalance --remove`), comma-separated names. */
export const REMOVING_XATTR = `${INTERNAL_XATTR_PREFIX}dht.removing`;

/** How long a layout heal or fix waits for another one on the same directory. */
const LAYOUT_LOCK_MS = 10_000;
const EMPTY = Buffer.alloc(0);
/** Entries asked for at once when listing one child's copy. */
const LIST_CHUNK = 64 * 1024;

/** One child's copy of a directory, as a lookup found it. */
type Copy =
  | { readonly kind: 'dir'; readonly iatt: Iatt; readonly range: RangeRecord | undefined | 'bad'; readonly removing?: string }
  | { readonly kind: 'missing' }
  /** Something else has the name there (a file), or another directory has it (another GFID). */
  | { readonly kind: 'other'; readonly iatt: Iatt }
  | { readonly kind: 'down'; readonly error: FopError };

/** What fixing a directory's layout did. */
export interface FixResult {
  readonly changed: boolean;
  /** The share of the hash space that changed child (0..1). */
  readonly moved: number;
}

export class Dirs {
  constructor(
    private readonly c: Cluster,
    /** The root's copies say which children are being drained. */
    private readonly onRemoving: (names: string) => void,
  ) {}

  private inodeOf(loc: Loc, gfid: Gfid): Inode {
    return loc.inode ?? this.c.host.itable.get(gfid);
  }

  // --- reading and healing ----------------------------------------------------------

  /** Every child's copy: found by `loc` (a name, or a GFID), with its range (and, at the root, the drained children). */
  private readCopies(frame: Frame, loc: Loc, gfid: Gfid | undefined): Promise<Copy[]> {
    const root = (gfid ?? loc.inode?.gfid) === ROOT_GFID;
    const keys = { [LAYOUT_XATTR]: EMPTY, ...(root ? { [REMOVING_XATTR]: EMPTY } : {}) };
    return Promise.all(
      this.c.children.map(async (child, i): Promise<Copy> => {
        if (!this.c.isUp(i)) return { kind: 'down', error: new FopError('ENOTCONN', `${this.c.childName(i)} is down`) };
        const xattrs = (g: Gfid) => child.xattrop(frame, { gfid: g }, 'get', keys);
        const early = gfid !== undefined ? xattrs(gfid) : undefined;
        early?.catch(() => undefined);
        let iatt: Iatt;
        try {
          iatt = await child.lookup(frame, loc);
        } catch (e) {
          const err = FopError.from(e);
          return isAbsent(err) ? { kind: 'missing' } : { kind: 'down', error: err };
        }
        if (!isDir(iatt.mode) || (gfid !== undefined && iatt.gfid !== gfid)) return { kind: 'other', iatt };
        try {
          const x = await (early ?? xattrs(iatt.gfid));
          return { kind: 'dir', iatt, range: decodeRange(x[LAYOUT_XATTR] ?? EMPTY), removing: x[REMOVING_XATTR]?.toString('latin1') };
        } catch (e) {
          return { kind: 'down', error: FopError.from(e) };
        }
      }),
    );
  }

  /**
   * A directory found by `loc` on the children, settled: its missing copies made (when its
   * parent and name are known), its layout healed if it has holes or overlaps (only with
   * every child up: a down child's range is unknown, not missing), its placement recorded.
   * Returns the merged attributes.
   */
  async lookup(frame: Frame, loc: Loc, gfid?: Gfid): Promise<Iatt> {
    const copies = await this.readCopies(frame, loc, gfid);
    const dirs = copies.flatMap((c) => (c.kind === 'dir' ? [c] : []));
    if (dirs.length === 0) {
      const down = copies.find((c) => c.kind === 'down');
      if (down?.kind === 'down' && !copies.some((c) => c.kind === 'other')) throw down.error;
      throw new FopError('ENOENT', `no copy of directory ${gfid ?? loc.name ?? ''}`);
    }
    const id = dirs[0].iatt.gfid;
    const other = copies.find((c) => c.kind === 'other');
    if (other) this.c.log.warn(`${loc.name ?? id}: a directory on some children, something else (${other.kind === 'other' ? other.iatt.gfid : ''}) on others; using the directory`);
    const inode = this.inodeOf(loc, id);
    for (const [i, copy] of copies.entries()) {
      if (copy.kind !== 'missing' || !loc.parent || loc.name === undefined) continue;
      if (await this.makeCopy(i, { parent: loc.parent, name: loc.name, inode }, dirs[0].iatt)) copies[i] = { kind: 'dir', iatt: dirs[0].iatt, range: undefined };
    }
    const found = fromCopies(copies);
    let layout = found.layout;
    const { bad, spans } = found;
    if ((bad || !isComplete(layout)) && !copies.some((c) => c.kind === 'down')) {
      if (!bad && spans > spanOf(layout)) this.foreign(id, spans, layout);
      else layout = await this.healLayout(id, copies);
    }
    if (id === ROOT_GFID) this.onRemoving(dirs.find((d) => d.removing !== undefined)?.removing ?? '');
    this.c.place(inode, { kind: 'dir', layout });
    return mergeDir(dirs.map((d) => d.iatt));
  }

  /** The layout of a directory (read from its copies if not known yet). */
  async layoutOf(frame: Frame, dir: Inode): Promise<Layout> {
    const p = this.c.placement(dir);
    if (p?.kind === 'dir') return p.layout;
    await this.lookup(frame, { inode: dir }, dir.gfid);
    const q = this.c.placement(dir);
    if (q?.kind !== 'dir') throw new FopError('ENOTDIR', `${dir.gfid} is not a directory`);
    return q.layout;
  }

  /**
   * The child a name in directory `dir` goes to. A name whose part of the hash space has no
   * child (the child that held it is down, its range unknown) cannot be placed.
   */
  async hashed(frame: Frame, dir: Inode, name: string): Promise<number> {
    const layout = await this.layoutOf(frame, dir);
    const h = hashedChild(layout, this.c.hasher.hash(name));
    if (h === undefined) throw new FopError('ENOTCONN', `${name}: no child takes its hash in ${dir.gfid} (a child holding part of the layout is down)`);
    return h;
  }

  /**
   * A layout that spans more children than this volume has ranges from: written by a client
   * whose volfile has children this one lacks (or lost one without a drain). Lookups leave it
   * alone (healing it would undo that client's layout); names in its hole are looked for on
   * every child, and a rebalance with this volfile rewrites it.
   */
  private foreign(gfid: Gfid, spans: number, layout: Layout): void {
    this.c.log.warn(`the layout of ${gfid} spans ${spans} subvolumes, ${spanOf(layout)} of them here: left as it is (rebalance rewrites it)`);
  }

  /** Makes directory `loc` (parent, name, inode) on child `i`, like `like`; false if that failed. */
  private async makeCopy(i: number, loc: Loc, like: Iatt): Promise<boolean> {
    try {
      await internal(this.c, 'heal-dir', async (frame) => {
        await this.c.children[i].mkdir(frame, loc, like.mode & 0o7777);
        if (like.uid !== 0 || like.gid !== 0) await this.c.children[i].setattr(frame, loc, { uid: like.uid, gid: like.gid });
      });
      this.c.counters.dirsHealed++;
      this.c.log.info(`made the missing copy of ${loc.name} (${loc.inode?.gfid}) on ${this.c.childName(i)}`);
      return true;
    } catch (e) {
      this.c.log.warn(`could not make the missing copy of ${loc.name} (${loc.inode?.gfid}) on ${this.c.childName(i)}: ${(e as Error).message}`);
      return false;
    }
  }

  /** The children holding a copy, and the first of them (where the layout lock is taken). */
  private withCopies(copies: readonly Copy[]): number[] {
    return copies.flatMap((c, i) => (c.kind === 'dir' ? [i] : []));
  }

  /** Reads the ranges of directory `gfid` on `children` (the layout as it is on disk now). */
  private async readLayout(frame: Frame, gfid: Gfid, children: readonly number[]): Promise<{ layout: Layout; bad: boolean; spans: number }> {
    const records: (RangeRecord | undefined | 'bad')[] = new Array(this.c.children.length).fill(undefined);
    await Promise.all(
      children.map(async (i) => {
        const x = await this.c.children[i].xattrop(frame, { gfid }, 'get', { [LAYOUT_XATTR]: EMPTY });
        records[i] = decodeRange(x[LAYOUT_XATTR] ?? EMPTY);
      }),
    );
    return fromRecords(records);
  }

  private async writeLayout(frame: Frame, gfid: Gfid, layout: Layout, children: readonly number[]): Promise<void> {
    const spans = spanOf(layout);
    await Promise.all(children.map((i) => this.c.children[i].xattrop(frame, { gfid }, 'set', { [LAYOUT_XATTR]: encodeRange(layout[i], spans) })));
    this.c.counters.layoutsWritten++;
  }

  /**
   * Writes a complete layout for a directory whose layout has holes or overlaps, under the
   * directory's layout lock (re-read under it: another client may have healed it first).
   */
  private healLayout(gfid: Gfid, copies: readonly Copy[]): Promise<Layout> {
    const have = this.withCopies(copies);
    return this.underLayoutLock(gfid, have, async (frame) => {
      const { layout, bad, spans } = await this.readLayout(frame, gfid, have);
      if (isComplete(layout) && !bad) return layout;
      if (!bad && spans > spanOf(layout)) return layout;
      const next = this.nextLayout(gfid, bad ? [] : layout, have);
      await this.writeLayout(frame, gfid, next, have);
      this.c.log.info(`healed the layout of ${gfid}`);
      return next;
    });
  }

  /** The layout to write over the children that may take names and have a copy: the current one kept as far as possible. */
  private nextLayout(gfid: Gfid, current: Layout, have: readonly number[]): Layout {
    const eligible = this.c.eligible().filter((i) => have.includes(i));
    const anyRange = current.some((r) => r !== undefined);
    return anyRange ? rebalancedLayout(padTo(current, this.c.children.length), eligible) : freshLayout(this.c.children.length, eligible, murmur3(gfid));
  }

  private async underLayoutLock<T>(gfid: Gfid, have: readonly number[], fn: (frame: Frame) => Promise<T>): Promise<T> {
    const first = have.find((i) => this.c.isUp(i));
    if (first === undefined) throw new FopError('ENOTCONN', `no child with a copy of ${gfid} is up`);
    const unlock = await lockOn(this.c, first, LAYOUT_DOMAIN, { gfid }, 'write', LAYOUT_LOCK_MS, `the layout lock of ${gfid}`, ROOT_CALLER);
    try {
      return await internal(this.c, 'layout', fn);
    } finally {
      await unlock();
    }
  }

  /**
   * Rebalance's first step for a directory: its copies made on every child, and a layout over
   * every child that may take names (not those being removed), keeping as much of the old one
   * as it can. Refused while a child is down.
   */
  async fixLayout(frame: Frame, loc: Loc): Promise<FixResult> {
    const gfid = loc.inode?.gfid ?? loc.gfid;
    if (!gfid) throw new FopError('EINVAL', 'fix-layout needs the directory');
    await this.lookup(frame, loc, gfid);
    const copies = await this.readCopies(frame, loc, gfid);
    const down = copies.findIndex((c) => c.kind !== 'dir');
    if (down >= 0) throw new FopError('ENOTCONN', `cannot fix the layout of ${loc.name ?? gfid}: ${this.c.childName(down)} has no copy of it (down?)`);
    const have = this.withCopies(copies);
    const result = await this.underLayoutLock(gfid, have, async (lframe) => {
      const { layout, bad } = await this.readLayout(lframe, gfid, have);
      const next = this.nextLayout(gfid, bad ? [] : layout, have);
      if (sameLayout(padTo(layout, next.length), next) && !bad) return { changed: false, moved: 0, layout };
      await this.writeLayout(lframe, gfid, next, have);
      return { changed: true, moved: movedShare(padTo(layout, next.length), next), layout: next };
    });
    this.c.place(this.inodeOf(loc, gfid), { kind: 'dir', layout: result.layout });
    return { changed: result.changed, moved: result.moved };
  }

  // --- mkdir, rmdir ---------------------------------------------------------------------

  /**
   * Makes the directory on its hashed child first (that one answers for the name), then on
   * every other child that is up, then writes its layout over the copies made. A copy that
   * fails for another reason than its child being down undoes the others.
   */
  async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    const gfid = loc.inode?.gfid;
    if (!loc.parent || loc.name === undefined || !gfid) throw new FopError('EINVAL', 'mkdir needs a parent, a name and the new GFID');
    const h = await this.hashed(frame, loc.parent, loc.name);
    if (!this.c.isUp(h)) throw new FopError('ENOTCONN', `${loc.name}: its hashed child ${this.c.childName(h)} is down`);
    const first = await this.c.children[h].mkdir(frame, loc, mode);
    const others = this.c.children.map((_, i) => i).filter((i) => i !== h && this.c.isUp(i));
    const made = await settle(others.map((i) => this.c.children[i].mkdir(frame, loc, mode)));
    const have = [h, ...others.filter((_, k) => made[k].ok)];
    const failed = made.find((m) => !m.ok && m.error.code !== 'ENOTCONN');
    if (failed && !failed.ok) {
      await internal(this.c, 'undo-mkdir', (f) => settle(have.map((i) => this.c.children[i].rmdir(f, loc))));
      throw failed.error;
    }
    const layout = freshLayout(this.c.children.length, this.c.eligible().filter((i) => have.includes(i)), murmur3(gfid));
    try {
      await internal(this.c, 'layout', (f) => this.writeLayout(f, gfid, layout, have));
    } catch (e) {
      // The directory works without it: the next lookup heals its layout.
      this.c.log.warn(`mkdir ${loc.name} (${gfid}): writing its layout failed, a lookup will heal it: ${(e as Error).message}`);
    }
    this.c.place(loc.inode!, { kind: 'dir', layout });
    return mergeDir([first]);
  }

  /**
   * Removes every copy. A directory whose copies hold only linkto files is empty (they point
   * to data that is no longer there): they go first. The first child's copy goes last, so a
   * failure half-way leaves the directory listed; the copies removed by then are made again.
   * Refused while a child is down (its copy would come back).
   */
  async rmdir(frame: Frame, loc: Loc, inode: Inode): Promise<void> {
    const down = this.c.children.findIndex((_, i) => !this.c.isUp(i));
    if (down >= 0) throw new FopError('ENOTCONN', `cannot remove ${loc.name}: ${this.c.childName(down)} is down`);
    const copies = await this.readCopies(frame, loc, inode.gfid);
    const have = this.withCopies(copies);
    const like = copies.find((c) => c.kind === 'dir');
    if (!like || like.kind !== 'dir') throw new FopError('ENOENT');
    const stale = await this.staleEntries(frame, inode, have);
    await internal(this.c, 'rmdir-linkto', (f) => settle(stale.map(([i, name]) => this.c.children[i].unlink(f, { parent: inode, name }))));
    const [last, ...rest] = have;
    const removed = await settle(rest.map((i) => this.c.children[i].rmdir(frame, loc)));
    const failed = removed.find((r) => !r.ok);
    let error = failed && !failed.ok ? failed.error : undefined;
    if (!error) {
      try {
        await this.c.children[last].rmdir(frame, loc);
        return;
      } catch (e) {
        error = FopError.from(e);
      }
    }
    const gone = rest.filter((_, k) => removed[k].ok);
    for (const i of gone) await this.makeCopy(i, { parent: loc.parent, name: loc.name, inode }, like.iatt);
    if (gone.length) {
      const { layout } = fromCopies(copies);
      await internal(this.c, 'layout', (f) => this.writeLayout(f, inode.gfid, layout, gone)).catch(() => undefined);
    }
    throw error;
  }

  /** The linkto files in a directory's copies, or ENOTEMPTY at the first entry that is not one. */
  private async staleEntries(frame: Frame, dir: Inode, have: readonly number[]): Promise<[number, string][]> {
    const found: [number, string][] = [];
    await Promise.all(
      have.map((i) =>
        this.listCopy(frame, i, dir, async (entries) => {
          for (const e of entries) {
            if (!e.iatt || !looksLikeLinkto(e.iatt)) throw new FopError('ENOTEMPTY');
            const x = await this.c.children[i].xattrop(frame, { gfid: e.iatt.gfid }, 'get', { [LINKTO_XATTR]: EMPTY });
            if (!x[LINKTO_XATTR]?.length) throw new FopError('ENOTEMPTY');
            found.push([i, e.name]);
          }
        }),
      ),
    );
    return found;
  }

  /** Lists child `i`'s copy of `dir` chunk by chunk. */
  async listCopy(frame: Frame, i: number, dir: Inode, each: (entries: readonly DirentPlus[]) => Promise<void>): Promise<void> {
    const child = this.c.children[i];
    const fd: Fd = this.c.host.newFd(dir, constants.O_RDONLY, true);
    try {
      await child.opendir(frame, { inode: dir }, fd);
      for (let cookie = 0; ; ) {
        const entries = await child.readdirp(frame, fd, LIST_CHUNK, cookie);
        if (entries.length === 0) return;
        await each(entries);
        cookie = entries[entries.length - 1].offset;
      }
    } finally {
      await fd.unref();
    }
  }

  // --- changes to every copy -----------------------------------------------------------

  /** A directory's attributes: every copy's, merged. */
  async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    return this.onEvery((child) => child.stat(frame, loc)).then(mergeDir);
  }

  async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    return this.onEvery((child) => child.setattr(frame, loc, attr)).then(mergeDir);
  }

  async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    await this.onEvery((child) => child.setxattr(frame, loc, name, value, flags));
  }

  async removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    await this.onEvery((child) => child.removexattr(frame, loc, name));
  }

  /**
   * Runs a fop on every copy (children that are up and have one); the first failure other
   * than a missing copy is the answer.
   */
  private async onEvery<T>(fop: (child: Xlator) => Promise<T>): Promise<T[]> {
    const up = this.c.children.map((_, i) => i).filter((i) => this.c.isUp(i));
    const rs = await settle(up.map((i) => fop(this.c.children[i])));
    const failed = rs.find((r) => !r.ok && !isAbsent(r.error));
    if (failed && !failed.ok) throw failed.error;
    const ok = rs.flatMap((r) => (r.ok ? [r.value] : []));
    if (ok.length === 0) throw rs.length ? (rs[0] as { error: FopError }).error : new FopError('ENOTCONN', 'every child is down');
    return ok;
  }

  /** The first child up with a copy answers (reads of a directory's own metadata). */
  async onFirst<T>(fop: (child: Xlator) => Promise<T>): Promise<T> {
    let last: FopError | undefined;
    for (const [i, child] of this.c.children.entries()) {
      if (!this.c.isUp(i)) continue;
      try {
        return await fop(child);
      } catch (e) {
        last = FopError.from(e);
        if (!isAbsent(last)) throw last;
      }
    }
    throw last ?? new FopError('ENOTCONN', 'every child is down');
  }
}

function fromRecords(records: readonly (RangeRecord | undefined | 'bad')[]): { layout: Layout; bad: boolean; spans: number } {
  let bad = false;
  let spans = 0;
  const layout = records.map((r): Range | undefined => {
    if (r === 'bad') bad = true;
    else if (r) spans = Math.max(spans, r.spans);
    return r === 'bad' ? undefined : r?.range;
  });
  return { layout, bad, spans };
}

function fromCopies(copies: readonly Copy[]): { layout: Layout; bad: boolean; spans: number } {
  return fromRecords(copies.map((c) => (c.kind === 'dir' ? c.range : undefined)));
}

function padTo(layout: Layout, n: number): Layout {
  return Array.from({ length: n }, (_, i) => layout[i]);
}

