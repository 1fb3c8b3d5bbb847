import { CachingXlator, FopError, RENAME_EXCHANGE, Xlator, defineTranslator, gfidOfLoc, opt, systemClock } from '../../src/core/index';
import type { Clock, DirentPlus, Fd, Frame, Gfid, Iatt, Loc, Name, OptionValues, SetAttr, Upcall, XattrMap, XattrOp, XlatorInit } from '../../src/core/index';

const options = {
  'md-cache-timeout': opt.time({
    description: 'how long (seconds) attributes, xattrs and the presence or absence of names are answered from the cache; 0: nothing is cached',
    default: '1',
    min: 0,
    max: 600,
    aliases: ['timeout', 'cache-timeout'],
  }),
  'cache-xattrs': opt.bool({ description: 'cache extended attributes (and their absence) too; trusted.* are never cached (only root may read them)', default: 'on' }),
  'cache-negative-lookup': opt.bool({ description: 'remember names that do not exist (a lookup that answered ENOENT)', default: 'on' }),
  'inode-limit': opt.int({ description: 'how many inodes the cache keeps (least recently used go first); as many names per directory', default: '65536', min: 16 }),
};

type Options = OptionValues<typeof options>;

/** A value and when (by the translator's clock, ms) it was learned. */
interface Cached<T> {
  readonly value: T;
  readonly at: number;
}

/** What the cache knows of one inode. */
interface Meta {
  /** The sequence number of its last invalidation: a reply to a fop wound before it is not kept. */
  inval: number;
  iatt?: Cached<Iatt>;
  /** Values by xattr name; null: the file has no such xattr (ENODATA). */
  xattrs?: Map<string, Cached<Buffer | null>>;
  list?: Cached<string[]>;
  /** Names in this directory: the GFID each leads to, or null (no such name). */
  names?: Map<Name, Cached<Gfid | null>>;
}

/** What an invalidation drops. */
interface Drop {
  readonly attrs?: boolean;
  readonly xattrs?: boolean;
  /** Every name known in this directory. */
  readonly names?: boolean;
}

/** A setuid file's capability goes with a write or chown (the kernel removes it on the brick). */
const CAPABILITY = 'security.capability';

/**
 * performance/md-cache: answers lookups, stats and xattr reads from what earlier replies said,
 * for md-cache-timeout, and remembers names that do not exist. Every change that passes
 * through it updates or drops what it touches (the object, its directory, the names
 * involved); an upcall (another client changed something; see features/upcall) drops what it
 * names; a lost connection below (CHILD_DOWN, CHILD_UP, an upcall for everything) drops
 * everything. An open drops the file's attributes (close-to-open: what is read after an open
 * is at least as new as the open).
 *
 * Replies race with invalidations (a stat answered before another client's write may arrive
 * after the upcall for it): every invalidation takes a sequence number, and a reply is kept
 * only if nothing invalidated its object since its fop was wound (GlusterFS's generations).
 * Cached answers skip the brick's permission checks: on a mount the kernel checks
 * (default_permissions); trusted.* xattrs, which only root may read, are never cached.
 */
export class MdCache extends CachingXlator<Options> {
  /** Insertion order is recency: the first are the least recently used. */
  private readonly metas = new Map<Gfid, Meta>();
  private seq = 0;
  /** Replies to fops wound before this (everything dropped, an entry evicted) are not kept. */
  private floor = 0;
  /** The graph is going down: nothing more is cached. */
  private readonly stats = { hits: 0, misses: 0, negativeHits: 0, xattrHits: 0, xattrMisses: 0, invalidations: 0, upcalls: 0, dropAll: 0, evicted: 0 };

  constructor(
    init: XlatorInit<Options>,
    private readonly clock: Clock = systemClock,
  ) {
    super(init);
  }

  private get timeoutMs(): number {
    return this.options['md-cache-timeout'] * 1000;
  }

  private get caching(): boolean {
    return !this.down && this.timeoutMs > 0;
  }

  private fresh<T>(c: Cached<T> | undefined): c is Cached<T> {
    return c !== undefined && this.clock.now() - c.at < this.timeoutMs;
  }

  // --- events -----------------------------------------------------------------------

  override upcall(u: Upcall, from?: Xlator): void {
    this.stats.upcalls++;
    super.upcall(u, from);
  }

  protected dropNamed(u: Upcall): void {
    this.invalidate(u.gfid!, { attrs: u.attrs || u.data, xattrs: u.xattrs, names: u.attrs });
    for (const e of u.entries ?? []) this.forgetName(e.parent, e.name);
  }

  override async reconfigure(options: Options): Promise<void> {
    await super.reconfigure(options);
    if (!this.caching) this.dropAll();
    this.evict();
  }

  override dump(): Record<string, unknown> {
    return { 'md-cache-timeout': this.options['md-cache-timeout'], inodes: this.metas.size, ...this.stats };
  }

  // --- lookups and attributes -----------------------------------------------------------

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    const hit = this.lookupHit(loc);
    if (hit) return hit;
    const g0 = this.seq;
    try {
      const iatt = await this.wind('lookup', frame, loc);
      this.keepIatt(iatt.gfid, iatt, g0);
      if (loc.parent && loc.name !== undefined) this.keepName(loc.parent.gfid, loc.name, iatt.gfid, g0);
      return iatt;
    } catch (e) {
      if (loc.parent && loc.name !== undefined && this.options['cache-negative-lookup'] && FopError.from(e).code === 'ENOENT') {
        this.keepName(loc.parent.gfid, loc.name, null, g0);
      }
      throw e;
    }
  }

  /** A lookup answered here: by name when the name is known (or known not to exist), else by GFID. */
  private lookupHit(loc: Loc): Iatt | undefined {
    if (!this.caching) return undefined;
    if (loc.parent && loc.name !== undefined) {
      const n = this.metas.get(loc.parent.gfid)?.names?.get(loc.name);
      if (!this.fresh(n)) return this.miss();
      if (n.value === null) {
        this.stats.negativeHits++;
        throw new FopError('ENOENT', `${loc.name} (cached: no such name)`);
      }
      return this.iattHit(n.value);
    }
    const gfid = gfidOfLoc(loc);
    return gfid === undefined ? this.miss() : this.iattHit(gfid);
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    const gfid = gfidOfLoc(loc);
    const hit = gfid === undefined ? undefined : this.iattHit(gfid);
    if (hit) return hit;
    const g0 = this.seq;
    const iatt = await this.wind('stat', frame, loc);
    this.keepIatt(iatt.gfid, iatt, g0);
    return iatt;
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    const hit = this.iattHit(fd.inode.gfid);
    if (hit) return hit;
    const g0 = this.seq;
    const iatt = await this.wind('fstat', frame, fd);
    this.keepIatt(iatt.gfid, iatt, g0);
    return iatt;
  }

  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    const g0 = this.seq;
    const entries = await this.wind('readdirp', frame, fd, size, offset);
    for (const e of entries) {
      if (!e.iatt || e.name === '.' || e.name === '..') continue;
      this.keepIatt(e.iatt.gfid, e.iatt, g0);
      this.keepName(fd.inode.gfid, e.name, e.iatt.gfid, g0);
      if (e.xattrNames) this.keepList(e.iatt.gfid, e.xattrNames, g0);
    }
    return entries;
  }

  // --- extended attributes ----------------------------------------------------------------

  private cachesXattr(name: string): boolean {
    return this.caching && this.options['cache-xattrs'] && !name.startsWith('trusted.');
  }

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    const gfid = gfidOfLoc(loc);
    if (gfid === undefined || !this.cachesXattr(name)) return this.wind('getxattr', frame, loc, name);
    const meta = this.metas.get(gfid);
    const c = meta?.xattrs?.get(name);
    if (this.fresh(c)) {
      this.stats.xattrHits++;
      if (c.value === null) throw new FopError('ENODATA', `${name} (cached: no such xattr)`);
      return c.value;
    }
    if (this.fresh(meta?.list) && !meta.list.value.includes(name)) {
      this.stats.xattrHits++;
      throw new FopError('ENODATA', `${name} (cached: not among the file's xattrs)`);
    }
    this.stats.xattrMisses++;
    const g0 = this.seq;
    try {
      const value = await this.wind('getxattr', frame, loc, name);
      this.keepXattr(gfid, name, value, g0);
      return value;
    } catch (e) {
      if (FopError.from(e).code === 'ENODATA') this.keepXattr(gfid, name, null, g0);
      throw e;
    }
  }

  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    const gfid = gfidOfLoc(loc);
    const cacheable = gfid !== undefined && this.caching && this.options['cache-xattrs'];
    const c = cacheable ? this.metas.get(gfid)?.list : undefined;
    if (this.fresh(c)) {
      this.stats.xattrHits++;
      return [...c.value];
    }
    const g0 = this.seq;
    const names = await this.wind('listxattr', frame, loc);
    if (cacheable) this.keepList(gfid, names, g0);
    return names;
  }

  private keepList(gfid: Gfid, names: readonly string[], g0: number): void {
    if (this.caching && this.options['cache-xattrs'] && this.mayKeep(gfid, g0)) this.meta(gfid).list = { value: [...names], at: this.clock.now() };
  }

  override async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    try {
      await this.wind('setxattr', frame, loc, name, value, flags);
    } finally {
      this.touched(gfidOfLoc(loc), { attrs: true, xattrs: true });
    }
  }

  override async removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    try {
      await this.wind('removexattr', frame, loc, name);
    } finally {
      this.touched(gfidOfLoc(loc), { attrs: true, xattrs: true });
    }
  }

  override async xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    try {
      return await this.wind('xattrop', frame, loc, op, xattrs);
    } finally {
      if (op !== 'get') this.touched(gfidOfLoc(loc), { attrs: true, xattrs: true });
    }
  }

  // --- changes to an object ------------------------------------------------------------------

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    await this.wind('open', frame, loc, fd);
    // Close-to-open: attributes read after an open are fetched after it.
    this.touched(fd.inode.gfid, { attrs: true });
  }

  override async write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    try {
      return await this.wind('write', frame, fd, data, offset);
    } finally {
      this.touched(fd.inode.gfid, { attrs: true }, CAPABILITY);
    }
  }

  override async fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    try {
      return await this.wind('fallocate', frame, fd, mode, offset, length);
    } finally {
      this.touched(fd.inode.gfid, { attrs: true });
    }
  }

  override async truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    return this.changing(gfidOfLoc(loc), () => this.wind('truncate', frame, loc, size), CAPABILITY);
  }

  override async ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    return this.changing(fd.inode.gfid, () => this.wind('ftruncate', frame, fd, size), CAPABILITY);
  }

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    return this.changing(gfidOfLoc(loc), () => this.wind('setattr', frame, loc, attr), ownerChange(attr));
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    return this.changing(fd.inode.gfid, () => this.wind('fsetattr', frame, fd, attr), ownerChange(attr));
  }

  /**
   * A fop that changes an object and answers its new attributes: they are kept unless
   * something else invalidated the object while it ran (they could be older than that).
   */
  private async changing(gfid: Gfid | undefined, run: () => Promise<Iatt>, xattr?: string): Promise<Iatt> {
    const g0 = this.seq;
    let iatt: Iatt | undefined;
    try {
      iatt = await run();
      return iatt;
    } finally {
      const id = iatt?.gfid ?? gfid;
      const ok = id !== undefined && iatt !== undefined && this.mayKeep(id, g0);
      this.touched(id, { attrs: true }, xattr);
      if (ok) this.setIatt(id, iatt!);
    }
  }

  // --- names ---------------------------------------------------------------------------------

  override mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    return this.making(loc, () => this.wind('mknod', frame, loc, mode, rdev));
  }

  override mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    return this.making(loc, () => this.wind('mkdir', frame, loc, mode));
  }

  override symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    return this.making(loc, () => this.wind('symlink', frame, target, loc));
  }

  override create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    return this.making(loc, () => this.wind('create', frame, loc, mode, fd));
  }

  override async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const g0 = this.seq;
    let iatt: Iatt | undefined;
    try {
      iatt = await this.wind('link', frame, from, to);
      return iatt;
    } finally {
      const gfid = iatt?.gfid ?? gfidOfLoc(from);
      const ok = gfid !== undefined && iatt !== undefined && this.mayKeep(gfid, g0);
      const dirOk = this.dirMayKeep(to, g0);
      this.touched(gfid, { attrs: true });
      if (ok) this.setIatt(gfid, iatt!);
      this.nameChanged(to, iatt?.gfid, dirOk);
    }
  }

  /** An entry-creating fop: the new object's attributes and name are kept, its directory changed. */
  private async making(loc: Loc, run: () => Promise<Iatt>): Promise<Iatt> {
    const g0 = this.seq;
    let iatt: Iatt | undefined;
    try {
      iatt = await run();
      if (this.mayKeep(iatt.gfid, g0)) this.setIatt(iatt.gfid, iatt);
      return iatt;
    } finally {
      this.nameChanged(loc, iatt?.gfid, this.dirMayKeep(loc, g0));
    }
  }

  override async unlink(frame: Frame, loc: Loc): Promise<void> {
    return this.removing(loc, () => this.wind('unlink', frame, loc));
  }

  override async rmdir(frame: Frame, loc: Loc): Promise<void> {
    return this.removing(loc, () => this.wind('rmdir', frame, loc));
  }

  private async removing(loc: Loc, run: () => Promise<void>): Promise<void> {
    const g0 = this.seq;
    const target = this.named(loc);
    let done = false;
    try {
      await run();
      done = true;
    } finally {
      const dirOk = this.dirMayKeep(loc, g0);
      // Its link count and ctime changed (or it is gone); a removed directory's names go with it.
      this.touched(target, { attrs: true, names: true });
      this.nameChanged(loc, done ? null : undefined, dirOk);
    }
  }

  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    const g0 = this.seq;
    const moved = this.named(from);
    const replaced = this.named(to);
    let iatt: Iatt | undefined;
    try {
      iatt = await this.wind('rename', frame, from, to, flags);
      return iatt;
    } finally {
      const gfid = iatt?.gfid ?? moved;
      const ok = gfid !== undefined && iatt !== undefined && this.mayKeep(gfid, g0);
      const fromOk = this.dirMayKeep(from, g0);
      const toOk = this.dirMayKeep(to, g0);
      this.touched(gfid, { attrs: true });
      this.touched(replaced, { attrs: true, names: true });
      if (ok) this.setIatt(gfid, iatt!);
      // An exchange swaps the two names: neither is known now.
      const swap = (flags & RENAME_EXCHANGE) !== 0 || iatt === undefined;
      this.nameChanged(from, swap ? undefined : null, fromOk);
      this.nameChanged(to, swap ? undefined : iatt!.gfid, toOk);
    }
  }

  /** The GFID a Loc names: its inode's, else what this cache knows of its name. */
  private named(loc: Loc): Gfid | undefined {
    const gfid = gfidOfLoc(loc);
    if (gfid !== undefined || !loc.parent || loc.name === undefined) return gfid;
    return this.metas.get(loc.parent.gfid)?.names?.get(loc.name)?.value ?? undefined;
  }

  /** Whether what a fop wound at `g0` says of names in the directory of `loc` may be kept. */
  private dirMayKeep(loc: Loc, g0: number): boolean {
    return loc.parent !== undefined && this.mayKeep(loc.parent.gfid, g0);
  }

  /**
   * A name in a directory changed through here: the directory's attributes changed, and the
   * name now leads to `gfid` (null: nowhere; undefined: not known), kept if `ok` (nothing
   * invalidated the directory while the fop ran: see dirMayKeep).
   */
  private nameChanged(loc: Loc, gfid: Gfid | null | undefined, ok: boolean): void {
    if (!loc.parent || loc.name === undefined) return;
    const dir = loc.parent.gfid;
    this.touched(dir, { attrs: true });
    const names = this.metas.get(dir)?.names;
    names?.delete(loc.name);
    if (ok && gfid !== undefined && (gfid !== null || this.options['cache-negative-lookup'])) this.setName(dir, loc.name, gfid);
  }

  // --- the store -----------------------------------------------------------------------------

  private miss(): undefined {
    this.stats.misses++;
    return undefined;
  }

  private iattHit(gfid: Gfid): Iatt | undefined {
    if (!this.caching) return undefined;
    const c = this.metas.get(gfid)?.iatt;
    if (!this.fresh(c)) return this.miss();
    this.stats.hits++;
    return c.value;
  }

  /** Whether a reply to a fop wound at sequence `g0` about `gfid` may be kept. */
  private mayKeep(gfid: Gfid, g0: number): boolean {
    return this.caching && g0 >= this.floor && (this.metas.get(gfid)?.inval ?? 0) <= g0;
  }

  private keepIatt(gfid: Gfid, iatt: Iatt, g0: number): void {
    if (this.mayKeep(gfid, g0)) this.setIatt(gfid, iatt);
  }

  private keepName(dir: Gfid, name: Name, gfid: Gfid | null, g0: number): void {
    if (this.mayKeep(dir, g0)) this.setName(dir, name, gfid);
  }

  private keepXattr(gfid: Gfid, name: string, value: Buffer | null, g0: number): void {
    if (!this.mayKeep(gfid, g0)) return;
    const m = this.meta(gfid);
    (m.xattrs ??= new Map()).set(name, { value, at: this.clock.now() });
  }

  private setIatt(gfid: Gfid, iatt: Iatt): void {
    if (this.caching) this.meta(gfid).iatt = { value: iatt, at: this.clock.now() };
  }

  private setName(dir: Gfid, name: Name, gfid: Gfid | null): void {
    if (!this.caching) return;
    const names = (this.meta(dir).names ??= new Map());
    names.delete(name);
    names.set(name, { value: gfid, at: this.clock.now() });
    // A directory's names are bounded like the inodes: the oldest go.
    if (names.size > this.options['inode-limit']) names.delete(names.keys().next().value!);
  }

  /** The cache entry of an inode, made if missing, as the most recently used. */
  private meta(gfid: Gfid): Meta {
    let m = this.metas.get(gfid);
    if (m) this.metas.delete(gfid);
    else m = { inval: 0 };
    this.metas.set(gfid, m);
    if (this.metas.size > this.options['inode-limit']) this.evict();
    return m;
  }

  private evict(): void {
    const limit = this.options['inode-limit'];
    for (const gfid of this.metas.keys()) {
      if (this.metas.size <= limit) break;
      this.metas.delete(gfid);
      this.stats.evicted++;
      // What the evicted entry knew of invalidations is gone: replies in flight are not kept.
      this.floor = this.seq;
    }
  }

  /**
   * Something changed `gfid` through here (a fop, or the kernel's open): drops what is stale.
   * `xattr`: one the change removes if the file has it (a known absence stays: the kernel asks
   * for security.capability before every write).
   */
  private touched(gfid: Gfid | undefined, drop: Drop, xattr?: string): void {
    if (gfid === undefined) return;
    this.invalidate(gfid, drop);
    const xattrs = xattr === undefined ? undefined : this.metas.get(gfid)?.xattrs;
    if (xattrs && xattrs.get(xattr!)?.value !== null) xattrs.delete(xattr!);
  }

  private invalidate(gfid: Gfid, drop: Drop): void {
    this.stats.invalidations++;
    // Nothing is kept while not caching: no entry needs to remember this.
    if (!this.caching) return void ++this.seq;
    const m = this.meta(gfid);
    m.inval = ++this.seq;
    if (drop.attrs) m.iatt = undefined;
    if (drop.xattrs) {
      m.xattrs = undefined;
      m.list = undefined;
    }
    if (drop.names) m.names = undefined;
  }

  private forgetName(dir: Gfid, name: Name): void {
    if (!this.caching) return;
    const m = this.meta(dir);
    m.inval = ++this.seq;
    m.names?.delete(name);
  }

  protected dropAll(): void {
    this.stats.dropAll++;
    this.metas.clear();
    this.floor = ++this.seq;
  }
}

/** A chown (which drops a file's capability) or nothing. */
const ownerChange = (attr: SetAttr): string | undefined => (attr.uid !== undefined || attr.gid !== undefined ? CAPABILITY : undefined);

/** The translator type, its timeouts on `clock` (tests pass one they move by hand). */
export const mdCache = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'performance/md-cache',
    description: 'caches attributes, xattrs and the presence or absence of names, for md-cache-timeout; coherent through upcalls',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new MdCache(init, clock),
  });

export default mdCache();
