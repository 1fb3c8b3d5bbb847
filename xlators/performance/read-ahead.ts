import { constants } from 'fs';
import { CachingXlator, FdContext, Xlator, defineTranslator, inFrame, opt, systemClock } from '../../src/core/index';
import type { Clock, Fd, Frame, Gfid, Loc, OptionValues, Upcall, XlatorInit } from '../../src/core/index';

const options = {
  'page-count': opt.int({ description: 'how many pages are read ahead of a sequential reader', default: '4', min: 1, max: 16 }),
  'page-size': opt.size({ description: 'the unit read ahead', default: '128KB', min: 4096, max: 4 * 1024 * 1024 }),
};

type Options = OptionValues<typeof options>;

/** The read-ahead state of one fd. */
interface RaFile {
  readonly fd: Fd;
  /** Where the next read must start to be sequential (-1: no read yet). */
  expected: number;
  /** Pages by index, read ahead or on their way (undefined: it failed, or the file changed). */
  readonly pages: Map<number, Promise<Buffer | undefined>>;
  /** The first page index known to end the file (a short page); Infinity: unknown. */
  eofPage: number;
  /** Bumped whenever what was read ahead is dropped: pages landing later are not used. */
  gen: number;
}

/**
 * performance/read-ahead: notices a sequential reader on an fd (each read starting where the
 * last one ended) and reads page-count pages of page-size ahead of it (the missing ones in one
 * request), so a reader that asks one request at a time finds the next ones on their way. A read elsewhere
 * drops what was read ahead for the fd; so does any change to the file's data that passes
 * through here (a write, truncate or fallocate through any fd of the file) or that an upcall
 * reports, and a lost connection below. O_DIRECT reads pass through.
 */
export class ReadAhead extends CachingXlator<Options> {
  static {
    // What was read ahead of a changed file is stale, whatever the change's outcome.
    Xlator.afterDataChanges(ReadAhead, (xl, gfid) => xl.changed(gfid));
  }

  private readonly fds = new FdContext<RaFile>(this);
  /** The read-ahead states of each file, so that a change through one fd reaches the others. */
  private readonly byGfid = new Map<Gfid, Set<RaFile>>();
  private readonly stats = { prefetched: 0, requests: 0, hits: 0, waited: 0, misses: 0, discarded: 0, dropped: 0 };

  constructor(
    init: XlatorInit<Options>,
    // Read-ahead keeps no time; the clock is taken for symmetry with the other caches' factories.
    _clock: Clock = systemClock,
  ) {
    super(init);
  }

  private get pageSize(): number {
    return this.options['page-size'];
  }

  // --- events -----------------------------------------------------------------------

  protected dropNamed(u: Upcall): void {
    if (u.data || u.attrs) this.changed(u.gfid);
  }

  override async reconfigure(options: Options): Promise<void> {
    await super.reconfigure(options);
    this.dropAll();
  }

  override async release(fd: Fd): Promise<void> {
    const f = this.fds.take(fd);
    if (!f) return;
    this.discard(f);
    const set = this.byGfid.get(fd.inode.gfid);
    set?.delete(f);
    if (set?.size === 0) this.byGfid.delete(fd.inode.gfid);
  }

  override dump(): Record<string, unknown> {
    let pages = 0;
    for (const set of this.byGfid.values()) for (const f of set) pages += f.pages.size;
    return { 'page-count': this.options['page-count'], 'page-size': this.pageSize, fds: [...this.byGfid.values()].reduce((n, s) => n + s.size, 0), pages, ...this.stats };
  }

  // --- reads ---------------------------------------------------------------------------

  override async read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    if (this.down || size === 0 || (fd.flags & constants.O_DIRECT) !== 0) return this.wind('read', frame, fd, size, offset);
    const f = this.state(fd);
    // The first read says nothing yet (a small file is read once): reading ahead starts with the second.
    const sequential = offset === f.expected;
    f.expected = offset + size;
    if (!sequential) {
      this.discard(f);
      this.stats.misses++;
      return this.wind('read', frame, fd, size, offset);
    }
    const ps = this.pageSize;
    const first = Math.floor(offset / ps);
    const last = Math.floor((offset + size - 1) / ps);
    // Pages behind the reader are done with.
    for (const i of [...f.pages.keys()]) if (i < first) f.pages.delete(i);
    if (first > f.eofPage) {
      this.stats.misses++;
      return this.wind('read', frame, fd, size, offset);
    }
    const covered = f.pages.has(first);
    // What the reader needs now and what it will need next in separate requests: the reader
    // waits for the first only.
    this.ahead(frame, f, first, Math.min(last, f.eofPage));
    this.ahead(frame, f, last + 1, Math.min(last + this.options['page-count'], f.eofPage));
    const pages: (Buffer | undefined)[] = [];
    for (let i = first; i <= last && i <= f.eofPage; i++) pages.push(await f.pages.get(i));
    if (pages.some((p) => p === undefined)) {
      // A page failed, or the file changed while it was read: the child answers this read itself.
      this.stats.misses++;
      return this.wind('read', frame, fd, size, offset);
    }
    this.stats[covered ? 'hits' : 'waited']++;
    return assemble(pages as Buffer[], offset - first * ps, size, ps);
  }

  /**
   * Starts reading the pages from `from` to `to` (inclusive) that are not read or being read:
   * each run of them one after the other in one request (fewer, larger requests).
   */
  private ahead(frame: Frame, f: RaFile, from: number, to: number): void {
    for (let i = from; i <= to; i++) {
      if (f.pages.has(i)) continue;
      const start = i;
      let end = i;
      while (end < to && !f.pages.has(end + 1)) end++;
      const run = this.fetch(frame, f, start, end);
      for (let k = start; k <= end; k++) f.pages.set(k, run.then((data) => this.pageOf(f, data, start, k)));
      i = end;
    }
  }

  /** Pages `from` to `to` in one read, in a frame of its own (the reader may be gone when it lands) with the reader's credentials. */
  private async fetch(frame: Frame, f: RaFile, from: number, to: number): Promise<Buffer | undefined> {
    this.stats.prefetched += to - from + 1;
    this.stats.requests++;
    const ps = this.pageSize;
    const gen = f.gen;
    try {
      const data = await inFrame(this.host, 'read-ahead', (fr) => this.wind('read', fr, f.fd, (to - from + 1) * ps, from * ps), { caller: frame.caller, lkOwner: frame.lkOwner });
      if (f.gen !== gen) return undefined;
      // A short read ends the file: in the page where it stopped.
      if (data.length < (to - from + 1) * ps) f.eofPage = Math.min(f.eofPage, from + Math.floor(data.length / ps));
      return data;
    } catch {
      // The reader asks the child itself and gets the error (or its data) first hand.
      if (f.gen === gen) for (let k = from; k <= to; k++) f.pages.delete(k);
      return undefined;
    }
  }

  /** Page `index` of what a read from page `from` brought (undefined if it failed or the file changed). */
  private pageOf(f: RaFile, data: Buffer | undefined, from: number, index: number): Buffer | undefined {
    if (!data) return undefined;
    const ps = this.pageSize;
    const start = Math.min(data.length, (index - from) * ps);
    return data.subarray(start, Math.min(data.length, start + ps));
  }

  private state(fd: Fd): RaFile {
    let f = this.fds.get(fd);
    if (!f) {
      f = this.fds.set(fd, { fd, expected: -1, pages: new Map(), eofPage: Infinity, gen: 0 });
      let set = this.byGfid.get(fd.inode.gfid);
      if (!set) this.byGfid.set(fd.inode.gfid, (set = new Set()));
      set.add(f);
    }
    return f;
  }

  // --- changes ---------------------------------------------------------------------------

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    await this.wind('open', frame, loc, fd);
    if (fd.flags & constants.O_TRUNC) this.changed(fd.inode.gfid);
  }

  override async write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    this.changed(fd.inode.gfid);
    try {
      return await this.wind('write', frame, fd, data, offset);
    } finally {
      this.changed(fd.inode.gfid);
    }
  }

  /** The file's data changed: what every fd of it read ahead goes (pages in flight are not used). */
  private changed(gfid: Gfid | undefined): void {
    const set = gfid === undefined ? undefined : this.byGfid.get(gfid);
    for (const f of set ?? []) this.discard(f);
  }

  /** Drops what an fd read ahead; a page still on its way is not used when it lands. */
  private discard(f: RaFile): void {
    if (f.pages.size) this.stats.discarded += f.pages.size;
    f.pages.clear();
    f.eofPage = Infinity;
    f.gen++;
  }

  protected dropAll(): void {
    this.stats.dropped++;
    for (const set of this.byGfid.values()) for (const f of set) this.discard(f);
  }
}

/** The bytes [start, start + size) of consecutive pages (fewer at the end of the file). */
function assemble(pages: Buffer[], start: number, size: number, ps: number): Buffer {
  const parts: Buffer[] = [];
  let left = size;
  for (let k = 0; k < pages.length && left > 0; k++) {
    const from = k === 0 ? start : 0;
    if (from >= pages[k].length) break;
    const part = pages[k].subarray(from, Math.min(pages[k].length, from + left));
    parts.push(part);
    left -= part.length;
    if (pages[k].length < ps) break;
  }
  return parts.length === 1 ? parts[0] : Buffer.concat(parts);
}

export const readAhead = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'performance/read-ahead',
    description: 'reads ahead of a sequential reader, several pages at once',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new ReadAhead(init, clock),
  });

export default readAhead();
