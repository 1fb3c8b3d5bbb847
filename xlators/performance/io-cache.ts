import { constants } from 'fs';
import { CachingXlator, Xlator, defineTranslator, isReg, opt, systemClock } from '../../src/core/index';
import type { Clock, Fd, Frame, Gfid, Iatt, Loc, OptionValues, SetAttr, Timespec, Upcall, XlatorInit } from '../../src/core/index';

const options = {
  'cache-size': opt.size({ description: 'bytes of file data kept, across all files (least recently used pages go first); 0: nothing is kept', default: '32MB', min: 0 }),
  'page-size': opt.size({ description: 'the unit files are read and kept in', default: '128KB', min: 4096, max: 16 * 1024 * 1024 }),
  'cache-timeout': opt.time({
    description: "how long (seconds) a file's pages are served without asking its attributes again (an open always asks; an upcall drops them at once)",
    default: '1',
    min: 0,
    max: 60,
  }),
};

type Options = OptionValues<typeof options>;

/** What a file's pages were read under: taken before any of them, so a change after shows. */
interface Tag {
  readonly size: number;
  readonly mtime: Timespec;
  readonly ctime: Timespec;
}

/** The cache of one file (inode). */
interface FileCache {
  readonly gfid: Gfid;
  tag?: Tag;
  /** When the tag was last compared with the file (clock ms). */
  checkedAt: number;
  /** Bumped by every invalidation: a page read before it is neither kept nor handed to a later reader. */
  gen: number;
  readonly pages: Map<number, Buffer>;
  /** Pages being read now, of the current generation (concurrent readers share one read). */
  readonly loading: Map<number, Promise<Buffer>>;
  /** A comparison with the file in progress. */
  checking?: Promise<void>;
}

const sameTime = (a: Timespec, b: Timespec) => a.sec === b.sec && a.nsec === b.nsec;
const sameTag = (a: Tag, b: Tag) => a.size === b.size && sameTime(a.mtime, b.mtime) && sameTime(a.ctime, b.ctime);
const tagOf = (i: Iatt): Tag => ({ size: i.size, mtime: i.mtime, ctime: i.ctime });
const key = (gfid: Gfid, index: number) => `${gfid}/${index}`;

/**
 * performance/io-cache: a page cache of file data, shared by every fd of a file and bounded
 * by cache-size (least recently used pages go first). Reads are served in whole pages; the
 * missing pages a read needs, one after the other, are read in one request, and pages read
 * at once by several readers are read once.
 *
 * Coherence: a file's pages are tagged with its size, mtime and ctime as seen before they
 * were read. They are dropped when a write, truncate or fallocate passes through here, when
 * an upcall says the file changed, when the connection below was lost (CHILD_DOWN, CHILD_UP,
 * an upcall for everything), and when the file's attributes no longer match the tag: any
 * lookup or stat reply passing by is compared, an open compares at once (close-to-open: a
 * file rewritten elsewhere and closed before this open is never served from older pages),
 * and a read compares again once cache-timeout has passed since the last comparison. Without
 * upcalls, a rewrite elsewhere that keeps the size within one timestamp tick of the storage is
 * not seen until the next change of either. O_DIRECT reads bypass the cache.
 */
export class IoCache extends CachingXlator<Options> {
  static {
    // A change to the data makes the cached pages stale, whatever its outcome.
    Xlator.afterDataChanges(IoCache, (xl, gfid) => xl.invalidate(gfid));
  }

  private readonly files = new Map<Gfid, FileCache>();
  /** Every page kept, least recently used first: key -> its file and index. */
  private readonly lru = new Map<string, { readonly file: FileCache; readonly index: number }>();
  private bytes = 0;
  private readonly stats = { hits: 0, misses: 0, requests: 0, shared: 0, revalidations: 0, changed: 0, invalidations: 0, evicted: 0 };

  constructor(
    init: XlatorInit<Options>,
    private readonly clock: Clock = systemClock,
  ) {
    super(init);
  }

  private get caching(): boolean {
    return !this.down && this.options['cache-size'] > 0;
  }

  private get pageSize(): number {
    return this.options['page-size'];
  }

  // --- events -----------------------------------------------------------------------

  protected dropNamed(u: Upcall): void {
    if (u.data || u.attrs) this.invalidate(u.gfid);
  }

  override async reconfigure(options: Options): Promise<void> {
    const pageSize = this.pageSize;
    await super.reconfigure(options);
    if (this.pageSize !== pageSize) this.dropAll();
    this.evict();
  }

  override dump(): Record<string, unknown> {
    return {
      'cache-size': this.options['cache-size'],
      'page-size': this.pageSize,
      'cache-timeout': this.options['cache-timeout'],
      bytes: this.bytes,
      pages: this.lru.size,
      files: this.files.size,
      ...this.stats,
    };
  }

  // --- reads ---------------------------------------------------------------------------

  override async read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    if (!this.caching || size === 0 || (fd.flags & constants.O_DIRECT) !== 0) return this.wind('read', frame, fd, size, offset);
    const f = this.file(fd.inode.gfid);
    await this.validate(frame, fd, f, false);
    const ps = this.pageSize;
    const first = Math.floor(offset / ps);
    // Pages past the end of the file (as far as the tag, just compared, says) are not asked for.
    const end = Math.min(offset + size, f.tag?.size ?? Infinity);
    if (end <= offset) return Buffer.alloc(0);
    const last = Math.floor((end - 1) / ps);
    const wanted: Promise<Buffer>[] = [];
    for (let i = first; i <= last; ) {
      const have = this.page(f, i);
      if (have) {
        wanted.push(have);
        i++;
        continue;
      }
      // Pages neither kept nor on their way, one after the other: one request reads them all.
      let j = i;
      while (j < last && !f.pages.has(j + 1) && !f.loading.has(j + 1)) j++;
      wanted.push(...this.load(frame, fd, f, i, j));
      i = j + 1;
    }
    const pages = await Promise.all(wanted);
    const parts: Buffer[] = [];
    let left = size;
    for (let k = 0; k < pages.length && left > 0; k++) {
      const page = pages[k];
      const start = k === 0 ? offset - first * ps : 0;
      if (start >= page.length) break;
      const part = page.subarray(start, Math.min(page.length, start + left));
      parts.push(part);
      left -= part.length;
      if (page.length < ps) break; // the end of the file
    }
    return parts.length === 1 ? parts[0] : Buffer.concat(parts);
  }

  /** Page `index` of the file if it is kept or on its way. */
  private page(f: FileCache, index: number): Promise<Buffer> | undefined {
    const kept = f.pages.get(index);
    if (kept) {
      this.stats.hits++;
      this.touch(f, index);
      return Promise.resolve(kept);
    }
    const loading = f.loading.get(index);
    if (loading) this.stats.shared++;
    return loading;
  }

  /** Reads pages `from` to `to` in one request; each is kept if nothing changed the file meanwhile. */
  private load(frame: Frame, fd: Fd, f: FileCache, from: number, to: number): Promise<Buffer>[] {
    const ps = this.pageSize;
    const gen = f.gen;
    this.stats.misses += to - from + 1;
    this.stats.requests++;
    const all = this.wind('read', frame, fd, (to - from + 1) * ps, from * ps);
    const out: Promise<Buffer>[] = [];
    for (let i = from; i <= to; i++) {
      const p: Promise<Buffer> = all
        .then((data) => {
          const page = data.subarray(Math.min(data.length, (i - from) * ps), Math.min(data.length, (i - from + 1) * ps));
          if (f.gen === gen && this.files.get(f.gfid) === f) this.keep(f, i, page);
          return page;
        })
        .finally(() => {
          if (f.loading.get(i) === p) f.loading.delete(i);
        });
      f.loading.set(i, p);
      out.push(p);
    }
    return out;
  }

  /**
   * Compares the file's attributes with the tag (an fstat below), unless they were compared
   * within cache-timeout (`force`: always). Concurrent readers share one comparison.
   */
  private async validate(frame: Frame, fd: Fd, f: FileCache, force: boolean): Promise<void> {
    if (!force && f.tag && this.clock.now() - f.checkedAt < this.options['cache-timeout'] * 1000) return;
    if (!f.checking) {
      this.stats.revalidations++;
      f.checking = this.wind('fstat', frame, fd)
        .then((iatt) => this.observe(f.gfid, iatt))
        .finally(() => (f.checking = undefined));
    }
    await f.checking;
  }

  /** Attributes of a file from below: pages read under other ones are dropped. */
  private observe(gfid: Gfid, iatt: Iatt): void {
    const f = this.files.get(gfid);
    if (!f || !isReg(iatt.mode)) return;
    const tag = tagOf(iatt);
    if (f.tag && !sameTag(f.tag, tag)) {
      this.stats.changed++;
      this.invalidate(gfid);
    }
    const now = this.files.get(gfid);
    if (now) {
      now.tag = tag;
      now.checkedAt = this.clock.now();
    }
  }

  // --- what passes by ---------------------------------------------------------------------

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const trunc = (fd.flags & constants.O_TRUNC) !== 0;
    if (trunc) this.invalidate(fd.inode.gfid);
    await this.wind('open', frame, loc, fd);
    if (trunc) this.invalidate(fd.inode.gfid);
    // Close-to-open: pages kept from before this open are checked against the file now.
    const f = this.files.get(fd.inode.gfid);
    if (f && !trunc && (fd.flags & constants.O_DIRECT) === 0) await this.validate(frame, fd, f, true);
  }

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    const iatt = await this.wind('lookup', frame, loc);
    this.observe(iatt.gfid, iatt);
    return iatt;
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    const iatt = await this.wind('stat', frame, loc);
    this.observe(iatt.gfid, iatt);
    return iatt;
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    const iatt = await this.wind('fstat', frame, fd);
    this.observe(iatt.gfid, iatt);
    return iatt;
  }

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    const iatt = await this.wind('setattr', frame, loc, attr);
    this.retag(iatt);
    return iatt;
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    const iatt = await this.wind('fsetattr', frame, fd, attr);
    this.retag(iatt);
    return iatt;
  }

  /** A change through here that leaves the data as it is (chmod, utimes): the tag follows it. */
  private retag(iatt: Iatt): void {
    const f = this.files.get(iatt.gfid);
    if (f?.tag && f.tag.size === iatt.size) f.tag = tagOf(iatt);
  }

  // --- the store ---------------------------------------------------------------------------

  private file(gfid: Gfid): FileCache {
    let f = this.files.get(gfid);
    if (!f) {
      f = { gfid, checkedAt: 0, gen: 0, pages: new Map(), loading: new Map() };
      this.files.set(gfid, f);
    }
    return f;
  }

  private keep(f: FileCache, index: number, data: Buffer): void {
    if (!this.caching || data.length === 0 || data.length > this.options['cache-size']) return;
    // A slice of a larger buffer (a whole frame) would keep all of it alive.
    const own = data.byteOffset === 0 && data.buffer.byteLength === data.length ? data : Buffer.from(data);
    this.drop(f, index);
    f.pages.set(index, own);
    this.lru.set(key(f.gfid, index), { file: f, index });
    this.bytes += own.length;
    this.evict();
  }

  private touch(f: FileCache, index: number): void {
    const k = key(f.gfid, index);
    const e = this.lru.get(k);
    if (!e) return;
    this.lru.delete(k);
    this.lru.set(k, e);
  }

  private drop(f: FileCache, index: number): void {
    const page = f.pages.get(index);
    if (!page) return;
    f.pages.delete(index);
    this.lru.delete(key(f.gfid, index));
    this.bytes -= page.length;
  }

  private evict(): void {
    for (const [, e] of this.lru) {
      if (this.bytes <= this.options['cache-size']) break;
      this.drop(e.file, e.index);
      this.stats.evicted++;
      this.forgetIfEmpty(e.file);
    }
  }

  private forgetIfEmpty(f: FileCache): void {
    if (f.pages.size === 0 && f.loading.size === 0 && !f.checking) this.files.delete(f.gfid);
  }

  /** The file changed: its pages go, reads in flight are not kept, and its attributes must be compared again. */
  private invalidate(gfid: Gfid | undefined): void {
    const f = gfid === undefined ? undefined : this.files.get(gfid);
    if (!f) return;
    this.stats.invalidations++;
    for (const index of [...f.pages.keys()]) this.drop(f, index);
    f.gen++;
    f.loading.clear();
    f.tag = undefined;
    f.checkedAt = 0;
    this.forgetIfEmpty(f);
  }

  protected dropAll(): void {
    for (const f of this.files.values()) {
      f.gen++;
      f.loading.clear();
    }
    this.files.clear();
    this.lru.clear();
    this.bytes = 0;
  }
}

/** The translator type, its timeouts on `clock` (tests pass one they move by hand). */
export const ioCache = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'performance/io-cache',
    description: 'a page cache of file data, bounded by cache-size, dropped when the file changes',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new IoCache(init, clock),
  });

export default ioCache();
