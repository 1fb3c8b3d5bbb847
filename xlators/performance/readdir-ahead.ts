import { constants } from 'fs';
import { CachingXlator, FdContext, FopError, defineTranslator, gfidOfLoc, inFrame, opt, systemClock } from '../../src/core/index';
import type { Clock, Dirent, DirentPlus, Fd, Frame, Gfid, Iatt, Loc, Name, OptionValues, SetAttr, Upcall, XlatorInit, Caller } from '../../src/core/index';

const options = {
  'rda-request-size': opt.size({ description: 'how much each read of the directory asks for', default: '128KB', min: 4096, max: 16 * 1024 * 1024 }),
  'rda-cache-limit': opt.size({ description: 'bytes of entries kept ahead, across all directories being listed; reading ahead pauses past it', default: '10MB', min: 0 }),
};

type Options = OptionValues<typeof options>;

/** What an entry costs: as storage/posix counts it for a FUSE direntplus (fuse_entry_out + dirent). */
const entryCost = (e: Dirent) => 24 + 128 + e.name.length;

/** The listing of one open directory, read ahead. */
interface Listing {
  readonly fd: Fd;
  /** Who opened it: reading ahead runs with their credentials. */
  readonly caller: Caller;
  /** Entries read ahead and not handed out yet, in order. */
  entries: DirentPlus[];
  bytes: number;
  /** The cookie reading ahead continues from. */
  next: number;
  /** The cookie of the last entry handed out: the next readdirp must ask for this to be served here. */
  served: number;
  eof: boolean;
  /** What reading ahead failed with (handed to the reader once the entries before it are out). */
  error?: FopError;
  /** The read in flight (one at a time: storage lists a directory fd from one position). */
  filling?: Promise<void>;
  /** Bumped when the listing is reset: the read in flight then adds nothing. */
  gen: number;
  /** Objects changed since their entries were read: their attributes are not handed out. */
  readonly stale: Set<Gfid>;
}

/**
 * performance/readdir-ahead: reads a directory ahead of its reader, with attributes
 * (readdirp), from the moment it is opened, so a long listing (`ls -l`) finds its entries
 * waiting instead of asking for each chunk in turn. Served are reads that continue where the
 * last one ended; any other (a rewind, a seek) starts reading ahead again from there. At most
 * rda-cache-limit bytes of entries are kept, across all listings.
 *
 * Entries kept here must not say what is no longer true: the attributes of an object changed
 * through here (a write, a truncate, a setattr...) or by another client (an upcall) are not
 * handed out with its entry, and a name removed or replaced through here or elsewhere leaves
 * the listing (the kernel would otherwise cache the name again). A name made meanwhile may be
 * missing, as POSIX allows for a listing in progress. A lost connection below drops every
 * listing's entries (reading ahead starts again where the reader is).
 */
export class ReaddirAhead extends CachingXlator<Options> {
  private readonly dirs = new FdContext<Listing>(this);
  private readonly listings = new Set<Listing>();
  private bytes = 0;
  private readonly stats = { served: 0, waited: 0, direct: 0, requests: 0, restarts: 0, staleAttrs: 0, removedNames: 0 };

  constructor(
    init: XlatorInit<Options>,
    // Reading ahead keeps no time; the clock is taken for symmetry with the other caches' factories.
    _clock: Clock = systemClock,
  ) {
    super(init);
  }

  // --- events -----------------------------------------------------------------------

  /** Every listing starts again where its reader is. */
  protected dropAll(): void {
    for (const l of this.listings) this.reset(l, l.served);
  }

  protected dropNamed(u: Upcall): void {
    if (u.attrs || u.data) this.changed(u.gfid);
    for (const e of u.entries ?? []) this.nameGone(e.parent, e.name);
  }

  protected override async drain(): Promise<void> {
    await super.drain();
    this.listings.clear();
  }

  override async release(fd: Fd): Promise<void> {
    const l = this.dirs.take(fd);
    if (l) this.close(l);
  }

  override dump(): Record<string, unknown> {
    return {
      'rda-request-size': this.options['rda-request-size'],
      'rda-cache-limit': this.options['rda-cache-limit'],
      bytes: this.bytes,
      listings: [...this.listings].map((l) => ({ gfid: l.fd.inode.gfid, entries: l.entries.length, served: l.served, eof: l.eof, filling: !!l.filling })),
      ...this.stats,
    };
  }

  // --- listing ---------------------------------------------------------------------------

  override async opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    await this.wind('opendir', frame, loc, fd);
    if (this.down) return;
    const l: Listing = { fd, caller: frame.caller, entries: [], bytes: 0, next: 0, served: 0, eof: false, gen: 0, stale: new Set() };
    this.dirs.set(fd, l);
    this.listings.add(l);
    this.fill(l);
  }

  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    const l = this.dirs.get(fd);
    const served = l && (await this.serve(l, size, offset));
    return served ?? this.wind('readdirp', frame, fd, size, offset);
  }

  override async readdir(frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]> {
    const l = this.dirs.get(fd);
    const served = l && (await this.serve(l, size, offset));
    if (!served) return this.wind('readdir', frame, fd, size, offset);
    return served.map((e) => ({ name: e.name, offset: e.offset, ino: e.ino, type: e.type }));
  }

  /**
   * Entries after cookie `offset`, at most `size` bytes of them (at least one), from what was
   * read ahead; undefined when this listing cannot be read ahead (the graph is going down).
   */
  private async serve(l: Listing, size: number, offset: number): Promise<DirentPlus[] | undefined> {
    if (offset !== l.served) {
      // A rewind or a seek: reading ahead starts again from there.
      this.stats.restarts++;
      this.reset(l, offset);
    }
    if (l.entries.length === 0 && !l.eof && !l.error) this.stats.waited++;
    else this.stats.served++;
    while (l.entries.length === 0 && !l.eof && !l.error) {
      this.fill(l);
      if (!l.filling) return undefined;
      await l.filling;
    }
    if (l.entries.length === 0 && l.error) {
      const err = l.error;
      // Told once; the next read tries again.
      l.error = undefined;
      throw err;
    }
    // As many as fit `size` (at least one), taken off the front at once.
    let n = 0;
    let bytes = 0;
    for (let budget = size; n < l.entries.length && (n === 0 || budget >= entryCost(l.entries[n])); n++) {
      budget -= entryCost(l.entries[n]);
      bytes += entryCost(l.entries[n]);
    }
    const out = l.entries.splice(0, n).map((e) => (e.iatt && l.stale.has(e.iatt.gfid) ? this.withoutAttrs(e) : e));
    this.account(l, -bytes);
    if (out.length) l.served = out[out.length - 1].offset;
    if (l.entries.length === 0 && !l.filling) l.stale.clear();
    this.fill(l);
    return out;
  }

  private withoutAttrs(e: DirentPlus): DirentPlus {
    this.stats.staleAttrs++;
    return { name: e.name, offset: e.offset, ino: e.ino, type: e.type };
  }

  /** Reads the next chunk ahead unless one is on its way, the listing is complete or the limit is reached. */
  private fill(l: Listing): void {
    if (l.filling || l.eof || l.error || this.down || !this.listings.has(l)) return;
    if (this.bytes >= this.options['rda-cache-limit'] && l.entries.length > 0) return;
    const gen = l.gen;
    const from = l.next;
    this.stats.requests++;
    l.filling = inFrame(this.host, 'readdir-ahead', (frame) => this.wind('readdirp', frame, l.fd, this.options['rda-request-size'], from), l.caller)
      .then((entries) => {
        // Reset meanwhile (a seek, a lost connection): what came is from elsewhere.
        if (l.gen !== gen) return;
        if (entries.length === 0) l.eof = true;
        for (const e of entries) {
          l.entries.push(e);
          this.account(l, entryCost(e));
        }
        if (entries.length) l.next = entries[entries.length - 1].offset;
      })
      .catch((e) => {
        if (l.gen === gen) l.error = FopError.from(e);
      })
      .finally(() => {
        l.filling = undefined;
        this.fill(l);
      });
  }

  /** Drops what was read ahead and continues from cookie `offset`. */
  private reset(l: Listing, offset: number): void {
    this.account(l, -l.bytes);
    l.entries = [];
    l.stale.clear();
    l.next = offset;
    l.served = offset;
    l.eof = false;
    l.error = undefined;
    l.gen++;
  }

  private close(l: Listing): void {
    this.reset(l, l.served);
    this.listings.delete(l);
  }

  private account(l: Listing, delta: number): void {
    const full = this.bytes >= this.options['rda-cache-limit'];
    l.bytes += delta;
    this.bytes += delta;
    // Room again: listings that paused at the limit go on.
    if (full && this.bytes < this.options['rda-cache-limit']) for (const other of this.listings) if (other !== l) this.fill(other);
  }

  // --- changes ---------------------------------------------------------------------------

  /** An object changed: entries read ahead no longer give its attributes. */
  private changed(gfid: Gfid | undefined): void {
    if (gfid === undefined) return;
    for (const l of this.listings) if (l.entries.length || l.filling) l.stale.add(gfid);
  }

  /** A name in a directory was removed or replaced: it leaves that directory's listings. */
  private nameGone(dir: Gfid | undefined, name: Name | undefined): void {
    if (dir === undefined || name === undefined) return;
    for (const l of this.listings) {
      if (l.fd.inode.gfid !== dir) continue;
      const i = l.entries.findIndex((e) => e.name === name);
      if (i < 0) continue;
      this.stats.removedNames++;
      this.account(l, -entryCost(l.entries[i]));
      l.entries.splice(i, 1);
    }
  }

  private async changing<T>(gfid: Gfid | undefined, run: () => Promise<T>): Promise<T> {
    try {
      return await run();
    } finally {
      this.changed(gfid);
    }
  }

  override write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    return this.changing(fd.inode.gfid, () => this.wind('write', frame, fd, data, offset));
  }

  override truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    return this.changing(gfidOfLoc(loc), () => this.wind('truncate', frame, loc, size));
  }

  override ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    return this.changing(fd.inode.gfid, () => this.wind('ftruncate', frame, fd, size));
  }

  override fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    return this.changing(fd.inode.gfid, () => this.wind('fallocate', frame, fd, mode, offset, length));
  }

  override setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    return this.changing(gfidOfLoc(loc), () => this.wind('setattr', frame, loc, attr));
  }

  override fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    return this.changing(fd.inode.gfid, () => this.wind('fsetattr', frame, fd, attr));
  }

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    return this.changing(fd.flags & constants.O_TRUNC ? fd.inode.gfid : undefined, () => this.wind('open', frame, loc, fd));
  }

  override async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    return this.changing(gfidOfLoc(from), () => this.wind('link', frame, from, to));
  }

  override async unlink(frame: Frame, loc: Loc): Promise<void> {
    try {
      await this.wind('unlink', frame, loc);
    } finally {
      this.changed(gfidOfLoc(loc));
      this.nameGone(loc.parent?.gfid, loc.name);
    }
  }

  override async rmdir(frame: Frame, loc: Loc): Promise<void> {
    try {
      await this.wind('rmdir', frame, loc);
    } finally {
      this.nameGone(loc.parent?.gfid, loc.name);
    }
  }

  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    try {
      return await this.wind('rename', frame, from, to, flags);
    } finally {
      this.changed(gfidOfLoc(from));
      this.changed(gfidOfLoc(to));
      this.nameGone(from.parent?.gfid, from.name);
      this.nameGone(to.parent?.gfid, to.name);
    }
  }
}

export const readdirAhead = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'performance/readdir-ahead',
    description: 'reads directories ahead of their readers, with attributes',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new ReaddirAhead(init, clock),
  });

export default readdirAhead();
