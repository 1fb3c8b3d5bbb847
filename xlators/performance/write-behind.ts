import { constants } from 'fs';
import { FopError, MAX_OFFSET, XlEvent, Xlator, defineTranslator, gfidOfLoc as gfidOf, opt, systemClock } from '../../src/core/index';
import type { Clock, DirentPlus, Fd, Flock, Frame, Gfid, Iatt, LockCmd, LockKind, Loc, OptionValues, SetAttr, Timer, XlatorInit } from '../../src/core/index';

const options = {
  'cache-size': opt.size({
    description:
      'bytes of writes a file may have queued; past it the queue is written out and further writes wait until it is back under (memory stays bounded)',
    default: '1MB',
    aliases: ['window-size'],
    min: 0,
  }),
  'aggregate-size': opt.size({
    description: 'contiguous writes of one fd are merged into writes of up to this many bytes (fewer, larger writes for the subvolume)',
    default: '128KB',
    min: 4096,
    max: 16 * 1024 * 1024,
  }),
  'flush-after': opt.time({
    description: 'queued writes older than this (in seconds) are written out; 0: no timer, data waits for another trigger',
    default: '1',
    min: 0,
  }),
};

type Options = OptionValues<typeof options>;

/** Writes on fds opened with these flags go straight through. */
const WRITE_THROUGH = constants.O_SYNC | constants.O_DSYNC | constants.O_DIRECT;

/** One write (or several merged contiguous writes of one fd) waiting to go down. */
interface Req {
  /** Position in arrival order (global, increasing). */
  readonly seq: number;
  readonly fd: Fd;
  readonly offset: number;
  /** Copies of the application's buffers, in order. */
  readonly chunks: Buffer[];
  length: number;
  /** When its first byte was queued (ms, by the translator's clock). */
  readonly queuedAt: number;
}

/** The write-behind state of one file (inode), keyed by GFID. */
interface InodeQueue {
  readonly gfid: Gfid;
  /** Writes not yet handed to the child, in arrival order. */
  readonly reqs: Req[];
  /** Writes the child is serving now (their ranges never overlap). */
  readonly inflight: Set<Req>;
  /** Bytes queued or in flight. */
  bytes: number;
  /** Seq of the last write queued, and of the last one the child finished. */
  lastSeq: number;
  doneSeq: number;
  /** Every write with a seq up to this is to be written out now. */
  target: number;
  /** Fops waiting for the writes up to `seq` to be written out. */
  readonly waiters: { readonly seq: number; readonly resolve: () => void }[];
  /** Writes waiting (in order) for the queue to drop under cache-size. */
  readonly blocked: (() => void)[];
  /** A waiting write was let in and has not queued its data yet (1 at most). */
  waking: number;
  timer?: Timer;
}

/** Per-fd state (fd.ctx), so release is called for every fd that wrote here. */
interface FdCtx {
  /** A background write of this fd failed and nobody was told yet. */
  error?: FopError;
}

/**
 * performance/write-behind: acknowledges writes at once and writes them out behind the
 * application's back, but only while its child is up: while the child reports CHILD_DOWN (a
 * brick away), every write goes through and returns what the child answered, so nothing is
 * acknowledged that cannot land.
 *
 * Writes are copied and queued per inode, in arrival order; contiguous writes of one fd are
 * merged up to aggregate-size. A queue is written out in order, several writes at once as
 * long as their ranges do not overlap (a write waits for every earlier one it overlaps; an
 * O_APPEND write, whose place only storage knows, waits for all and is waited for): when it
 * grows past cache-size (writers then wait: backpressure), when its oldest data is older than
 * flush-after, on fsync/flush/release, before any other fop that would see the file's data or
 * size, when the child goes down, and when the graph goes down. A failed background write is
 * reported, once, by the next fop on the fd that wrote it, at the latest by its flush (which
 * the kernel sends on every close); one still unreported when the fd is released (nobody is
 * left to tell) is logged.
 */
export class WriteBehind extends Xlator<Options> {
  private readonly queues = new Map<Gfid, InodeQueue>();
  /** Fds holding an unreported error (for statedumps). */
  private readonly errored = new Set<Fd>();
  private seq = 0;
  /** The graph is going down: no more caching, writes go through. */
  private down = false;
  /** What the child last reported; until it reports up, writes go through. */
  private childUp = false;
  /** Most bytes any one inode ever had queued (for statedumps and tests). */
  private peakBytes = 0;

  constructor(
    init: XlatorInit<Options>,
    private readonly clock: Clock = systemClock,
  ) {
    super(init);
  }

  override notify(event: XlEvent, from?: Xlator): void {
    if (event === XlEvent.CHILD_UP) this.childUp = true;
    if (event === XlEvent.CHILD_DOWN) {
      this.childUp = false;
      // What was acknowledged goes on its way now: the child may still deliver it (a client
      // resends on reconnection within its frame-timeout); a failure goes to the writer's fd.
      for (const q of this.queues.values()) this.startWriteOut(q, q.lastSeq);
    }
    super.notify(event, from);
  }

  /** Writes are cached only while the child is up and the graph is not going down. */
  private get caching(): boolean {
    return this.childUp && !this.down;
  }

  override async reconfigure(options: Options): Promise<void> {
    await super.reconfigure(options);
    for (const q of [...this.queues.values()]) {
      if (q.bytes > this.limit) this.startWriteOut(q, q.lastSeq);
      this.admit(q);
      this.clearTimer(q);
      this.armTimer(q);
    }
  }

  override async fini(): Promise<void> {
    for (const q of this.queues.values()) this.clearTimer(q);
  }

  protected override async drain(): Promise<void> {
    this.down = true;
    await Promise.all([...this.queues.keys()].map((gfid) => this.writeOut(gfid)));
    for (const q of this.queues.values()) this.clearTimer(q);
  }

  override async release(fd: Fd): Promise<void> {
    try {
      await this.writeOut(fd.inode.gfid);
    } finally {
      const ctx = fd.ctx.get(this) as FdCtx | undefined;
      fd.ctx.delete(this);
      this.errored.delete(fd);
      if (ctx?.error) {
        this.log.error(`fd ${fd.id} (${fd.inode.gfid}) released with an unreported write error, data was lost: ${ctx.error.message}`);
      }
    }
  }

  override dump(): Record<string, unknown> {
    const now = this.clock.now();
    return {
      'cache-size': this.limit,
      'flush-after': this.options['flush-after'],
      childUp: this.childUp,
      peakQueuedBytes: this.peakBytes,
      timers: [...this.queues.values()].filter((q) => q.timer).length,
      inodes: [...this.queues.values()].map((q) => {
        const oldest = [...q.inflight, ...q.reqs][0];
        return {
          gfid: q.gfid,
          queuedBytes: q.bytes,
          queuedWrites: q.reqs.length + q.inflight.size,
          writesInFlight: q.inflight.size,
          oldestAgeMs: oldest ? now - oldest.queuedAt : 0,
          writingOut: q.inflight.size > 0,
          blockedWriters: q.blocked.length,
        };
      }),
      pendingErrors: [...this.errored].map((fd) => ({
        fd: fd.id,
        gfid: fd.inode.gfid,
        error: (fd.ctx.get(this) as FdCtx | undefined)?.error?.code,
      })),
    };
  }

  // --- fops -------------------------------------------------------------------------

  override async write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    const gfid = fd.inode.gfid;
    // The transports refuse these; a request past them could never be queued or merged right.
    if (!Number.isSafeInteger(offset) || offset < 0 || offset + data.length > MAX_OFFSET) {
      throw new FopError('EFBIG', `write of ${data.length} bytes at ${offset} is beyond what the stack carries (${MAX_OFFSET})`);
    }
    this.ctx(fd);
    this.takeError(fd);
    if (!this.caching || (fd.flags & WRITE_THROUGH) !== 0) return this.writeThrough(frame, fd, data, offset);
    if (data.length === 0) return 0;
    // The queue is not deleted while writers wait on it or are being let in.
    const q = this.queue(gfid);
    if (q.bytes > this.limit || q.blocked.length || q.waking) {
      // Backpressure: wait, in line with the other waiting writers, until the queue is at
      // most cache-size. Writers are let in one at a time, in arrival order, and the check
      // and the enqueue below run in one step (no await in between), so at most one
      // write's worth ever overshoots.
      this.startWriteOut(q, q.lastSeq);
      await new Promise<void>((resolve) => q.blocked.push(resolve));
      q.waking--;
      while (q.bytes > this.limit) {
        this.startWriteOut(q, q.lastSeq);
        await new Promise<void>((resolve) => q.blocked.unshift(resolve));
        q.waking--;
      }
    }
    try {
      // An error that came while this write waited: this write is the next fop on the fd.
      this.takeError(fd);
      // The child went down (or the graph started going down) while this write waited.
      if (!this.caching) return await this.writeThrough(frame, fd, data, offset);
      this.enqueue(q, fd, data, offset);
    } finally {
      this.admit(q);
    }
    return data.length;
  }

  /** A write the child answers itself, after everything queued before it (order matters where ranges overlap). */
  private async writeThrough(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    await this.writeOut(fd.inode.gfid);
    this.takeError(fd);
    return this.wind('write', frame, fd, data, offset);
  }

  override async read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    await this.beforeFdFop(fd);
    return this.wind('read', frame, fd, size, offset);
  }

  override async flush(frame: Frame, fd: Fd): Promise<void> {
    await this.writeOut(fd.inode.gfid);
    // The child is told of the close even when a write failed (it may hold state for the fd).
    let childErr: unknown;
    try {
      await this.wind('flush', frame, fd);
    } catch (e) {
      childErr = e;
    }
    this.takeError(fd);
    if (childErr) throw childErr;
  }

  override async fsync(frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    await this.beforeFdFop(fd);
    return this.wind('fsync', frame, fd, datasync);
  }

  override async ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    await this.beforeFdFop(fd);
    return this.wind('ftruncate', frame, fd, size);
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    await this.beforeFdFop(fd);
    return this.wind('fstat', frame, fd);
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    await this.beforeFdFop(fd);
    return this.wind('fsetattr', frame, fd, attr);
  }

  override async fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    // A hole punched or a range zeroed after queued writes must not be undone by them.
    await this.beforeFdFop(fd);
    return this.wind('fallocate', frame, fd, mode, offset, length);
  }

  override async seek(frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number> {
    await this.beforeFdFop(fd);
    return this.wind('seek', frame, fd, offset, what);
  }

  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    // Whoever takes the lock next must see the data written under it. A write error is not
    // this call's to report: a failed unlock would leave the lock held; it waits for the
    // next data fop or the flush.
    await this.writeOut(fd.inode.gfid);
    return this.wind('lk', frame, fd, cmd, lock, kind);
  }

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    // An O_TRUNC open must not be overtaken by older queued writes.
    await this.writeOut(gfidOf(loc));
    await this.wind('open', frame, loc, fd);
    this.ctx(fd);
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    const iatt = await this.wind('create', frame, loc, mode, fd);
    this.ctx(fd);
    return iatt;
  }

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    await this.writeOut(gfidOf(loc));
    const iatt = await this.wind('lookup', frame, loc);
    if (!this.hasQueued(iatt.gfid)) return iatt;
    // Found by name: its queued writes go out first, so the size is right.
    await this.writeOut(iatt.gfid);
    return this.wind('lookup', frame, loc);
  }

  /**
   * A listing's attributes of a file with writes still held here would be stale (the size
   * before them), and the kernel caches what a listing says: such entries go without them.
   */
  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    const entries = await this.wind('readdirp', frame, fd, size, offset);
    return entries.map((e) => (e.iatt && this.hasQueued(e.iatt.gfid) ? { name: e.name, offset: e.offset, ino: e.ino, type: e.type } : e));
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    await this.writeOut(gfidOf(loc));
    return this.wind('stat', frame, loc);
  }

  override async truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    await this.writeOut(gfidOf(loc));
    return this.wind('truncate', frame, loc, size);
  }

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    await this.writeOut(gfidOf(loc));
    return this.wind('setattr', frame, loc, attr);
  }

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    await this.writeOut(gfidOf(loc));
    return this.wind('getxattr', frame, loc, name);
  }

  override async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    await this.writeOut(gfidOf(loc));
    return this.wind('setxattr', frame, loc, name, value, flags);
  }

  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    await this.writeOut(gfidOf(loc));
    return this.wind('listxattr', frame, loc);
  }

  override async removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    await this.writeOut(gfidOf(loc));
    return this.wind('removexattr', frame, loc, name);
  }

  // --- fd state and errors -------------------------------------------------------------

  private ctx(fd: Fd): FdCtx {
    let ctx = fd.ctx.get(this) as FdCtx | undefined;
    if (!ctx) {
      ctx = {};
      fd.ctx.set(this, ctx);
    }
    return ctx;
  }

  /** Writes out the file's queue, then reports (once) a background error of this fd. */
  private async beforeFdFop(fd: Fd): Promise<void> {
    await this.writeOut(fd.inode.gfid);
    this.takeError(fd);
  }

  /** Throws, and forgets, the unreported background error of `fd`, if any. */
  private takeError(fd: Fd): void {
    const ctx = fd.ctx.get(this) as FdCtx | undefined;
    const err = ctx?.error;
    if (!ctx || !err) return;
    ctx.error = undefined;
    this.errored.delete(fd);
    throw err;
  }

  private recordError(fd: Fd, err: FopError, req: Req): void {
    const ctx = this.ctx(fd);
    this.log.warn(`background write of ${req.length} bytes at ${req.offset} on fd ${fd.id} (${fd.inode.gfid}) failed: ${err.message}`);
    // The first error is the one to report; later ones of the same fd add nothing.
    if (ctx.error) return;
    ctx.error = err;
    this.errored.add(fd);
  }

  // --- queues ---------------------------------------------------------------------------

  private get limit(): number {
    return this.options['cache-size'];
  }

  private queue(gfid: Gfid): InodeQueue {
    let q = this.queues.get(gfid);
    if (!q) {
      q = { gfid, reqs: [], inflight: new Set(), bytes: 0, lastSeq: 0, doneSeq: 0, target: 0, waiters: [], blocked: [], waking: 0 };
      this.queues.set(gfid, q);
    }
    return q;
  }

  private hasQueued(gfid: Gfid | undefined): boolean {
    const q = gfid === undefined ? undefined : this.queues.get(gfid);
    return q !== undefined && q.lastSeq > q.doneSeq;
  }

  /** Lets the first waiting writer in if there is room (and nobody is being let in). */
  private admit(q: InodeQueue): void {
    if (q.blocked.length && !q.waking && q.bytes <= this.limit) {
      q.waking++;
      q.blocked.shift()!();
    }
    this.maybeDelete(q);
  }

  private enqueue(q: InodeQueue, fd: Fd, data: Buffer, offset: number): void {
    const tail = q.reqs[q.reqs.length - 1];
    if (tail && tail.fd === fd && tail.offset + tail.length === offset && tail.length + data.length <= this.options['aggregate-size']) {
      tail.chunks.push(Buffer.from(data));
      tail.length += data.length;
    } else {
      const req: Req = { seq: ++this.seq, fd, offset, chunks: [Buffer.from(data)], length: data.length, queuedAt: this.clock.now() };
      q.reqs.push(req);
      q.lastSeq = req.seq;
    }
    q.bytes += data.length;
    if (q.bytes > this.peakBytes) this.peakBytes = q.bytes;
    if (q.bytes > this.limit) this.startWriteOut(q, q.lastSeq);
    else this.armTimer(q);
  }

  /** Writes out everything the file has queued now; settles when that is done (errors go to their fds). */
  private writeOut(gfid: Gfid | undefined): Promise<void> {
    const q = gfid === undefined ? undefined : this.queues.get(gfid);
    if (!q || q.lastSeq <= q.doneSeq) return Promise.resolve();
    const seq = q.lastSeq;
    return new Promise<void>((resolve) => {
      q.waiters.push({ seq, resolve });
      this.startWriteOut(q, seq);
    });
  }

  /** Marks the writes up to `seq` for writing out and starts those that may go now. */
  private startWriteOut(q: InodeQueue, seq: number): void {
    if (seq > q.target) q.target = seq;
    this.pump(q);
  }

  /** Hands the child, in order, every marked write that overlaps nothing in flight. */
  private pump(q: InodeQueue): void {
    while (q.reqs.length && q.reqs[0].seq <= q.target && !this.mustWait(q, q.reqs[0])) {
      const req = q.reqs.shift()!;
      q.inflight.add(req);
      void this.writeOne(q, req);
    }
  }

  /** Whether `req` must wait for a write in flight: same bytes, or an append on either side. */
  private mustWait(q: InodeQueue, req: Req): boolean {
    const appends = (r: Req) => (r.fd.flags & constants.O_APPEND) !== 0;
    for (const r of q.inflight) {
      if (appends(r) || appends(req)) return true;
      if (r.offset < req.offset + req.length && req.offset < r.offset + r.length) return true;
    }
    return false;
  }

  private async writeOne(q: InodeQueue, req: Req): Promise<void> {
    const frame = this.host.frame('write');
    let err: FopError | undefined;
    try {
      const data = req.chunks.length === 1 ? req.chunks[0] : Buffer.concat(req.chunks, req.length);
      const n = await this.wind('write', frame, req.fd, data, req.offset);
      if (n !== req.length) err = new FopError('EIO', `short write: ${n} of ${req.length} bytes`);
    } catch (e) {
      err = FopError.from(e);
    } finally {
      frame.done();
    }
    q.inflight.delete(req);
    q.bytes -= req.length;
    // Done: everything before the oldest write still in flight or queued.
    let oldest = q.reqs.length ? q.reqs[0].seq : q.lastSeq + 1;
    for (const r of q.inflight) oldest = Math.min(oldest, r.seq);
    q.doneSeq = oldest - 1;
    if (err) this.recordError(req.fd, err, req);
    this.settleWaiters(q);
    this.admit(q);
    this.pump(q);
    if (!q.inflight.size) this.armTimer(q);
    this.maybeDelete(q);
  }

  private settleWaiters(q: InodeQueue): void {
    for (let i = 0; i < q.waiters.length; ) {
      if (q.waiters[i].seq <= q.doneSeq) q.waiters.splice(i, 1)[0].resolve();
      else i++;
    }
  }

  /** One timer per queue (it never keeps the process alive), for when its oldest write reaches flush-after. */
  private armTimer(q: InodeQueue): void {
    const after = this.options['flush-after'] * 1000;
    if (!q.reqs.length) {
      this.clearTimer(q);
      return;
    }
    if (this.down || after <= 0 || q.timer || q.inflight.size) return;
    const delay = Math.max(0, q.reqs[0].queuedAt + after - this.clock.now());
    q.timer = this.clock.timer(delay, () => this.expire(q));
  }

  private clearTimer(q: InodeQueue): void {
    q.timer?.cancel();
    q.timer = undefined;
  }

  private expire(q: InodeQueue): void {
    q.timer = undefined;
    if (this.queues.get(q.gfid) !== q) return;
    // Everything old enough (1 ms of slack for timer granularity).
    const cutoff = this.clock.now() - this.options['flush-after'] * 1000 + 1;
    let seq = 0;
    for (const r of q.reqs) if (r.queuedAt <= cutoff) seq = r.seq;
    this.startWriteOut(q, seq);
    this.armTimer(q);
  }

  private maybeDelete(q: InodeQueue): void {
    if (q.reqs.length || q.inflight.size || q.waiters.length || q.blocked.length || q.waking) return;
    this.clearTimer(q);
    if (this.queues.get(q.gfid) === q) this.queues.delete(q.gfid);
  }
}

/** The translator type, its timers on `clock` (tests pass one they move by hand). */
export const writeBehind = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'performance/write-behind',
    description: 'acknowledges writes at once and writes them out in the background, aggregated and in order',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new WriteBehind(init, clock),
  });

export default writeBehind();
