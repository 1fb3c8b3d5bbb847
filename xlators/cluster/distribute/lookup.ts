// Finding names and GFIDs. A name is looked for on its hashed child first; a linkto file
// there leads to the child with the data; a miss (renamed, created on another layout, the
// layout changed) looks on every child, and a file found elsewhere gets a linkto file on its
// hashed child so the next lookup is direct. A GFID alone is looked for on every child.
import { FopError, Frame, ROOT_GFID, isDir } from '../../../src/core/index';
import type { Gfid, Iatt, Inode, Loc } from '../../../src/core/index';
import { withIno } from './attrs';
import { Cluster, internal, isAbsent } from './cluster';
import type { Dirs } from './dirs';
import { looksLikeLinkto, makeLinkto, readLinkto, setLinkto } from './linkto';

/** What one child has under a name (or a GFID). */
export type Found =
  | { readonly kind: 'data'; readonly child: number; readonly iatt: Iatt }
  /** `pendingMode`: a migration's new copy, complete, whose switch may have been interrupted (see PENDING_XATTR). */
  | { readonly kind: 'linkto'; readonly child: number; readonly iatt: Iatt; readonly target?: number; readonly pendingMode?: number }
  | { readonly kind: 'dir'; readonly child: number; readonly iatt: Iatt }
  | { readonly kind: 'missing'; readonly child: number }
  | { readonly kind: 'down'; readonly child: number; readonly error: FopError };

export type DataFound = Extract<Found, { kind: 'data' }>;
export type LinktoFound = Extract<Found, { kind: 'linkto' }>;

/** Finishes a migration whose switch was interrupted (its old copy gone, its new one still a linkto file). */
export type Finisher = (frame: Frame, at: LinktoFound, loc: Loc) => Promise<DataFound | undefined>;

export class Lookups {
  /** Set by the translator (migrate.ts finishes interrupted switches). */
  finisher?: Finisher;

  constructor(
    private readonly c: Cluster,
    private readonly dirs: Dirs,
  ) {}

  private inodeOf(loc: Loc, gfid: Gfid): Inode {
    return loc.inode?.gfid === gfid ? loc.inode : this.c.host.itable.get(gfid);
  }

  /** What child `i` has at `loc`; a linkto file is told from a file with a sticky bit by its xattr. */
  async probe(frame: Frame, i: number, loc: Loc): Promise<Found> {
    if (!this.c.isUp(i)) return { kind: 'down', child: i, error: new FopError('ENOTCONN', `${this.c.childName(i)} is down`) };
    const child = this.c.children[i];
    let iatt: Iatt;
    try {
      iatt = await child.lookup(frame, loc);
    } catch (e) {
      const err = FopError.from(e);
      return isAbsent(err) ? { kind: 'missing', child: i } : { kind: 'down', child: i, error: err };
    }
    if (isDir(iatt.mode)) return { kind: 'dir', child: i, iatt };
    if (!looksLikeLinkto(iatt)) return { kind: 'data', child: i, iatt };
    let state;
    try {
      state = await readLinkto(this.c, frame, i, { gfid: iatt.gfid });
    } catch (e) {
      const err = FopError.from(e);
      return isAbsent(err) ? { kind: 'missing', child: i } : { kind: 'down', child: i, error: err };
    }
    if (state.target === undefined) return { kind: 'data', child: i, iatt };
    return { kind: 'linkto', child: i, iatt, target: this.c.childIndex(state.target), pendingMode: state.pendingMode };
  }

  /** The data copy among `all`, or the one an interrupted switch left as a linkto file (finished first). */
  async dataOf(frame: Frame, all: readonly Found[], loc: Loc): Promise<DataFound | undefined> {
    const data = pickData(all);
    if (data) return data;
    const pending = all.find((f): f is LinktoFound => f.kind === 'linkto' && f.pendingMode !== undefined);
    return pending && this.finisher ? this.finisher(frame, pending, loc) : undefined;
  }

  /** A lookup: by name, or (no parent) by GFID. */
  async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    if (!loc.parent || loc.name === undefined) return this.nameless(frame, loc);
    const known = loc.inode ?? this.c.host.itable.child(loc.parent, loc.name)?.inode;
    if (known?.isDir) {
      try {
        return await this.dirs.lookup(frame, loc, known.gfid);
      } catch (e) {
        // Gone, or the name is something else now: look again from scratch.
        if (!isAbsent(FopError.from(e))) throw e;
      }
    }
    let h: number | undefined;
    try {
      h = await this.dirs.hashed(frame, loc.parent, loc.name);
    } catch {
      h = undefined;
    }
    if (h === undefined || !this.c.isUp(h)) return this.everywhere(frame, loc, h, await this.probeAll(frame, loc));
    // A name this graph has not seen (mostly a create's lookup, a miss) is asked of every
    // child at once: the miss on its hashed child would ask them anyway, a round trip later.
    const all = known ? undefined : await this.probeAll(frame, loc);
    const f = all ? all[h] : await this.probe(frame, h, loc);
    if (f.kind === 'dir') return this.dirs.lookup(frame, loc, f.iatt.gfid);
    if (f.kind === 'data') return this.found(loc, f);
    if (f.kind === 'linkto' && f.target !== undefined && this.c.isUp(f.target)) {
      const t = all ? all[f.target] : await this.probe(frame, f.target, loc);
      if (t.kind === 'data' && t.iatt.gfid === f.iatt.gfid) return this.found(loc, t);
    }
    return this.everywhere(frame, loc, h, all ?? (await this.probeAll(frame, loc, h, f)));
  }

  private found(loc: Loc, f: DataFound): Iatt {
    this.c.place(this.inodeOf(loc, f.iatt.gfid), { kind: 'file', cached: f.child });
    return withIno(f.iatt);
  }

  /** Every child's answer for a name; what the hashed child `h` said is reused. */
  async probeAll(frame: Frame, loc: Loc, h?: number, atHashed?: Found): Promise<Found[]> {
    return Promise.all(this.c.children.map((_, i) => (i === h && atHashed ? atHashed : this.probe(frame, i, loc))));
  }

  /** The name is not where its hash says: every child's answer (`all`) counts; a file found elsewhere gets its linkto file on `h`. */
  private async everywhere(frame: Frame, loc: Loc, h: number | undefined, all: readonly Found[]): Promise<Iatt> {
    this.c.counters.lookupsEverywhere++;
    const dir = all.find((f) => f.kind === 'dir');
    if (dir?.kind === 'dir') return this.dirs.lookup(frame, loc, dir.iatt.gfid);
    const data = await this.dataOf(frame, all, loc);
    if (data) {
      if (h !== undefined && h !== data.child) await this.healLinkto(loc, h, all[h], data);
      return this.found(loc, data);
    }
    const hashed = h === undefined ? undefined : all[h];
    if (hashed?.kind === 'linkto' && hashed.target !== undefined && !this.c.isUp(hashed.target)) {
      throw new FopError('ENOTCONN', `${loc.name}: its data is on ${this.c.childName(hashed.target)}, which is down`);
    }
    // A linkto file to data that is nowhere (every child answered): it would keep the name taken.
    if (hashed?.kind === 'linkto' && !all.some((f) => f.kind === 'down')) await this.dropStale(h!, loc, hashed);
    if (hashed?.kind === 'down') throw hashed.error;
    if (h === undefined && all.some((f) => f.kind === 'down')) throw new FopError('ENOTCONN', `${loc.name}: the child its hash goes to is down`);
    throw new FopError('ENOENT');
  }

  private async dropStale(h: number, loc: Loc, stale: LinktoFound): Promise<void> {
    try {
      await internal(this.c, 'drop-stale-linkto', (frame) => this.c.children[h].unlink(frame, { parent: loc.parent, name: loc.name, inode: this.inodeOf(loc, stale.iatt.gfid) }));
      this.c.log.info(`${loc.name}: removed a linkto file on ${this.c.childName(h)} whose file is nowhere`);
    } catch (e) {
      this.c.log.debug(`${loc.name}: the stale linkto file on ${this.c.childName(h)} stays: ${(e as Error).message}`);
    }
  }

  /** Gives the hashed child `h` a linkto file for a file whose data is on another child (best effort). */
  private async healLinkto(loc: Loc, h: number, atHashed: Found, data: DataFound): Promise<void> {
    const inode = this.inodeOf(loc, data.iatt.gfid);
    const at = { parent: loc.parent, name: loc.name, inode };
    try {
      await internal(this.c, 'heal-linkto', async (frame) => {
        if (atHashed.kind === 'linkto' && atHashed.iatt.gfid === data.iatt.gfid) return setLinkto(this.c, frame, h, { gfid: data.iatt.gfid }, data.child);
        if (atHashed.kind === 'linkto') await this.c.children[h].unlink(frame, at);
        else if (atHashed.kind !== 'missing') return;
        await makeLinkto(this.c, frame, h, at, data.child);
      });
    } catch (e) {
      this.c.log.debug(`${loc.name}: no linkto file on ${this.c.childName(h)}: ${(e as Error).message}`);
    }
  }

  /** A lookup by GFID: a directory's copies, or the child with the file's data. */
  async nameless(frame: Frame, loc: Loc): Promise<Iatt> {
    const gfid = loc.inode?.gfid ?? loc.gfid;
    if (!gfid) throw new FopError('EINVAL', 'a lookup needs a name or a GFID');
    if (gfid === ROOT_GFID) return this.dirs.lookup(frame, loc, ROOT_GFID);
    const all = await this.probeAll(frame, { inode: loc.inode, gfid });
    const dir = all.find((f) => f.kind === 'dir');
    if (dir?.kind === 'dir') return this.dirs.lookup(frame, { inode: loc.inode, gfid }, gfid);
    const data = await this.dataOf(frame, all, { inode: loc.inode, gfid });
    if (data) return this.found(loc, data);
    const down = all.find((f) => f.kind === 'down');
    if (down?.kind === 'down') throw down.error;
    throw new FopError('ESTALE', `no child has ${gfid}`);
  }

  /** The child holding a file's data now (looked for by GFID if not known). */
  async cachedOf(frame: Frame, inode: Inode): Promise<number> {
    const p = this.c.placement(inode);
    if (p?.kind === 'file') return p.cached;
    await this.nameless(frame, { inode });
    const q = this.c.placement(inode);
    if (q?.kind !== 'file') throw new FopError('EISDIR', `${inode.gfid} is a directory`);
    return q.cached;
  }

  /**
   * Where a file is if it is no longer on child `from` (its copy there has no name: it moved,
   * or it was unlinked): the child holding its data with a name, or undefined.
   */
  async moved(frame: Frame, inode: Inode, from: number): Promise<number | undefined> {
    const all = await this.probeAll(frame, { inode, gfid: inode.gfid });
    const named = all.filter((f) => !(f.kind === 'data' && (f.child === from || f.iatt.nlink === 0)));
    const data = await this.dataOf(frame, named, { inode, gfid: inode.gfid });
    if (!data || data.child === from || data.iatt.nlink === 0) return undefined;
    this.c.place(inode, { kind: 'file', cached: data.child });
    this.c.counters.relocations++;
    return data.child;
  }
}

/** The data copy to use: one with a name rather than an unlinked one still open, then the first child's. */
export function pickData(all: readonly Found[]): DataFound | undefined {
  const data = all.filter((f): f is DataFound => f.kind === 'data');
  return data.find((f) => f.iatt.nlink > 0) ?? data[0];
}
