// One FUSE connection served on the Node event loop: the /dev/fuse fd is non-blocking and
// polled; each readable event reads requests (one read, one request), decodes them, calls
// the KernelFs method and answers each with one writev, all on the loop thread. A WRITE's
// data is a view of the read buffer, lent to that request until its promise settles while
// reading goes on into another buffer of a small pool: nothing is copied on the write path.
import { FopError } from '../../core/errors';
import { Logger } from '../../core/log';
import { withDeadline } from '../../core/time';
import { dev } from './dev';
import type { Dev, NotifierHandle, PollHandle } from './dev';
import type { Attr, ConnInfo, Entry, KernelFs, Opened } from './fs';
import { maxPagesLimit, negotiate } from './negotiate';
import type { Negotiated } from './negotiate';
import { Req } from './request';
import {
  DirPacker,
  E,
  IN_HEADER_SIZE,
  Init,
  OUT_HEADER_SIZE,
  Op,
  SIZE,
  decodeAccess,
  decodeBatchForget,
  decodeCopyFileRange,
  decodeCreate,
  decodeFallocate,
  decodeFlush,
  decodeForget,
  decodeFsync,
  decodeGetattr,
  decodeGetxattr,
  decodeInHeader,
  decodeInit,
  decodeInterrupt,
  decodeLink,
  decodeLk,
  decodeLseek,
  decodeMkdir,
  decodeMknod,
  decodeName,
  decodeOpen,
  decodeRead,
  decodeRelease,
  decodeRename,
  decodeSetattr,
  decodeSetxattr,
  decodeSymlink,
  decodeWrite,
  encodeAttrOut,
  encodeEntryOut,
  encodeInitOut,
  encodeLkOut,
  encodeNotifyDelete,
  encodeNotifyInvalEntry,
  encodeNotifyInvalInode,
  encodeOpenOut,
  encodeOutHeader,
  encodeStatfs,
  encodeU32Out,
  encodeU64Out,
  flagNames,
  opName,
  readBufferSize,
} from './protocol';
import type { InHeader, InitFlag } from './protocol';
import type { Flock, Statfs } from '../../core/types';

export interface SessionOptions {
  readonly log?: Logger;
  /** max_write offered to the kernel (default 1 MiB); also sizes the read buffers. */
  readonly maxWrite?: number;
  /** max_pages asked for (default 256; the kernel caps it at fs.fuse.max_pages_limit). */
  readonly maxPages?: number;
  readonly maxBackground?: number;
  readonly congestionThreshold?: number;
  /** Capabilities to leave out of INIT (tests, benchmarks). */
  readonly disable?: readonly InitFlag[];
  /** Requests read per readable event (default 1; more batches reads of queued requests before their replies). */
  readonly readsPerEvent?: number;
  /** How long a notification may stay blocked in the kernel before its promise fails ETIMEDOUT. */
  readonly notifyTimeoutMs?: number;
  /**
   * After each request, and once every request is answered, keep the event loop polling this
   * long (µs) instead of sleeping (default 0: sleep). Waking a sleeping thread costs tens of
   * µs on a virtual machine; the next request of a burst, or the thread pool's answer, finds
   * the loop awake. Costs a busy core meanwhile.
   */
  readonly busyPollUs?: number;
  /** The system calls (default: the fuse_dev addon; tests play the kernel with their own). */
  readonly dev?: Dev;
  /** Runs before each reply is written (a worker's record of what the reply hands the kernel). */
  readonly beforeReply?: () => void;
}

/** What a statedump shows of a session. */
export interface SessionDump {
  readonly state: 'waiting for INIT' | 'serving' | 'closed';
  readonly closedReason?: string;
  readonly protocol?: string;
  readonly flags: string[];
  readonly maxWrite?: number;
  readonly requests: Record<string, number>;
  readonly inFlight: { unique: number; op: string; ageMs: number; interrupted: boolean }[];
  readonly replyFailures: number;
  readonly resent: number;
  readonly readBuffers: { lent: number; free: number };
}

const DEFAULT_MAX_WRITE = 1 << 20;
/** Bounds of max_write: the kernel's floor, and what a read buffer per lent WRITE may cost. */
const MAX_WRITE_RANGE = [4096, 16 << 20] as const;
const DEFAULT_NOTIFY_TIMEOUT_MS = 30_000;
/**
 * Requests read per readable event (the poll is level-triggered: the rest wait one turn).
 * One: the replies (sent when the callback's microtasks run) leave before the next read,
 * which for a lone caller would only say EAGAIN.
 */
const READS_PER_EVENT = 1;
/** Reads per readable event at most, messages without a reply included: the loop's other work gets its turn. */
const READS_MAX = 64;
/** Spare read buffers kept for when a lent one comes back; more are allocated while many WRITEs are in flight. */
const FREE_BUFFERS_MAX = 4;
/** The largest reply body of fixed size (CREATE: entry_out + open_out). */
const REPLY_SCRATCH = 256;
/** COPY_FILE_RANGE (not _64) answers in a u32. */
const U32_COPY_MAX = 0xfffff000;

const noop = (): void => undefined;
/** The notification code that makes the kernel requeue the requests read and not answered (kernel 6.9+). */
const NOTIFY_RESEND = 7;

/** Whether a request is one the kernel sent again (its first reader died without answering): see readUnique. */
export const isResent = (unique: number): boolean => unique < 0;

export class KernelSession {
  /** Resolves once, with why the session ended ('unmounted', 'aborted', 'closed: ...'). */
  readonly closed: Promise<string>;
  /** Resolves when INIT is answered; rejects if the session ends before. */
  readonly ready: Promise<ConnInfo>;

  private readonly log: Logger;
  private readonly dev: Dev;
  private readonly readsPerEvent: number;
  private readonly bufSize: number;
  private buf: Buffer;
  private readonly freeBufs: Buffer[] = [];
  private lentBufs = 0;
  private readonly out = Buffer.alloc(OUT_HEADER_SIZE + REPLY_SCRATCH);
  private readonly inFlight = new Map<number, Req>();
  private readonly counts = new Map<number, number>();
  private replyFailures = 0;
  /** Requests the kernel sent again (read by a predecessor that died without answering). */
  private resent = 0;
  private poll?: PollHandle;
  private notifier?: NotifierHandle;
  private conn?: ConnInfo;
  private setxattrExt = false;
  private endedReason?: string;
  private resolveClosed!: (reason: string) => void;
  private settleReady!: [(c: ConnInfo) => void, (e: Error) => void];

  constructor(
    private fd: number,
    private readonly fs: KernelFs,
    private readonly opts: SessionOptions = {},
  ) {
    this.log = opts.log ?? Logger.create('info').child('kernel');
    this.dev = opts.dev ?? dev;
    this.readsPerEvent = Math.max(1, opts.readsPerEvent ?? READS_PER_EVENT);
    const maxWrite = opts.maxWrite ?? DEFAULT_MAX_WRITE;
    if (!Number.isInteger(maxWrite) || maxWrite < MAX_WRITE_RANGE[0] || maxWrite > MAX_WRITE_RANGE[1]) {
      throw new RangeError(`KernelSession: maxWrite ${maxWrite} is outside ${MAX_WRITE_RANGE.join('..')}`);
    }
    this.bufSize = readBufferSize(maxWrite);
    this.buf = Buffer.allocUnsafeSlow(this.bufSize);
    this.closed = new Promise((r) => (this.resolveClosed = r));
    this.ready = new Promise<ConnInfo>((res, rej) => (this.settleReady = [res, rej]));
    this.ready.catch(noop); // whoever does not wait for it must not see an unhandled rejection
  }

  /** Starts serving: polls the fd from the event loop until unmount, abort or close(). */
  start(): void {
    if (this.poll || this.endedReason) throw new Error('KernelSession.start: already started');
    const n = this.dev.notifierOpen(this.fd);
    if (typeof n === 'number') throw FopError.fromErrno(n, 'cannot start the notification thread');
    this.notifier = n;
    const p = this.dev.pollStart(this.fd, this.onReadable, this.opts.busyPollUs ?? 0);
    if (typeof p === 'number') {
      this.dev.notifierClose(n);
      this.notifier = undefined;
      throw new Error(`cannot poll the FUSE device: libuv error ${p}`);
    }
    this.poll = p;
  }

  /**
   * Serves a connection whose INIT an earlier process answered (`conn`: what it negotiated):
   * the kernel sends INIT once. Then asks the kernel to send again every request read from
   * this device file and not yet answered (FUSE_NOTIFY_RESEND): those a dead predecessor
   * took are served here. Resent requests carry bit 63 in their unique (see isResent).
   */
  resume(conn: ConnInfo): void {
    if (this.conn) throw new Error('KernelSession.resume: already serving');
    this.conn = conn;
    this.setxattrExt = (conn.flags & Init.SETXATTR_EXT) !== 0n;
    try {
      this.fs.init(conn);
    } catch (e) {
      this.log.error(`fs.init threw: ${(e as Error).stack ?? e}`);
    }
    this.settleReady[0](conn);
    this.start();
    encodeOutHeader(this.out, OUT_HEADER_SIZE, NOTIFY_RESEND, 0);
    const r = this.dev.write(this.fd, this.out, OUT_HEADER_SIZE);
    if (r < 0) this.log.warn(`FUSE_NOTIFY_RESEND failed (${FopError.fromErrno(r).code}): requests a dead worker read stay unanswered`);
  }

  /**
   * Hands the connection over to a successor (a live upgrade): reads nothing more, waits (at
   * most `timeoutMs`) for every request taken to be answered, and leaves the fd open and the
   * connection alive. Requests still unanswered then are the successor's (it has them resent).
   */
  async retire(timeoutMs: number): Promise<number> {
    if (this.poll) this.dev.pollStop(this.poll);
    this.poll = undefined;
    // A lock request waiting for its lock may wait long: the successor takes it over (resent).
    const answering = () => [...this.inFlight.values()].filter((r) => r.opcode !== Op.SETLKW).length;
    const until = Date.now() + timeoutMs;
    while (answering() > 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 5));
    if (answering() > 0) this.log.warn(`retiring with ${answering()} request(s) unanswered after ${timeoutMs} ms: the next worker serves them`);
    return this.inFlight.size;
  }

  /** Stops serving: the fd is closed (which aborts the connection if still mounted) and fs.destroy() runs. */
  close(reason = 'closed by the server'): void {
    this.end(`closed: ${reason}`);
  }

  get connection(): ConnInfo | undefined {
    return this.conn;
  }

  // ---- the request loop ------------------------------------------------------------------

  private readonly onReadable = (status: number): void => {
    // A message that wants no reply (FORGETs come in bursts) does not use up the turn.
    for (let replies = 0, reads = 0; replies < this.readsPerEvent && reads < READS_MAX && this.endedReason === undefined; reads++) {
      const n = this.dev.read(this.fd, this.buf);
      if (n > 0) {
        if (this.handle(n)) replies++;
        continue;
      }
      if (n === -E.EAGAIN) break;
      // ENOENT: the request vanished between poll and read (interrupted, aborted): go on.
      if (n === -E.ENOENT) continue;
      if (n === -E.ENODEV) return this.end('unmounted');
      if (n === -E.ECONNABORTED) return this.end('aborted');
      if (n === 0) return this.end('end of stream');
      return this.end(`read from the FUSE device failed: ${FopError.fromErrno(n).code}`);
    }
    // libuv stops a poll that saw POLLERR: whatever the reads said, nothing more will come.
    if (status < 0 && this.endedReason === undefined) this.end(`poll error ${status}`);
  };

  /** Serves one message; false if it wants no reply. */
  private handle(n: number): boolean {
    const b = this.buf;
    let h: InHeader;
    try {
      h = decodeInHeader(b, n);
    } catch (e) {
      this.log.error(`malformed request from the kernel: ${(e as Error).message}`);
      return false;
    }
    const op = h.opcode;
    this.counts.set(op, (this.counts.get(op) ?? 0) + 1);
    if (h.unique < 0) this.resent++;
    const off = IN_HEADER_SIZE;
    const end = h.len - h.extLen;
    const silent = op === Op.FORGET || op === Op.BATCH_FORGET || op === Op.INTERRUPT || op === Op.NOTIFY_REPLY;
    if (end < off) {
      this.log.error(`${opName(op)}: extensions (${h.extLen} bytes) longer than the request`);
      if (!silent) this.replyRaw(h.unique, -E.EIO);
      return !silent;
    }
    switch (op) {
      case Op.FORGET:
        this.forgetOne(b, h.nodeid, off, end);
        return false;
      case Op.BATCH_FORGET:
        this.batchForget(b, off, end);
        return false;
      case Op.INTERRUPT:
        this.interrupt(b, off, end);
        return false;
      case Op.NOTIFY_REPLY:
        return false; // RETRIEVE data: never asked for
      case Op.INIT:
        this.init(h, b, off, end);
        return true;
    }
    const req = new Req(h.unique, op, h.nodeid, h.uid, h.gid, h.pid);
    this.inFlight.set(h.unique, req);
    if (!this.conn) {
      this.replyError(req, new FopError('EIO', `${opName(op)} before INIT`));
      return true;
    }
    try {
      this.dispatch(req, h.nodeid, b, off, end);
    } catch (e) {
      this.replyError(req, e);
    }
    return true;
  }

  /**
   * Decodes the body (before the next read reuses the buffer) and starts the fs method.
   * Throws only what decoding refuses; the method's own failures arrive through serve().
   */
  private dispatch(req: Req, nodeid: number, b: Buffer, off: number, end: number): void {
    const f = this.fs;
    switch (req.opcode) {
      case Op.LOOKUP:
        return this.serve(req, f.lookup(req, nodeid, decodeName(b, off, end, 'LOOKUP')), this.replyEntry);
      case Op.GETATTR:
        return this.serve(req, f.getattr(req, nodeid, decodeGetattr(b, off, end)), this.replyAttr);
      case Op.SETATTR:
        return this.serve(req, f.setattr(req, nodeid, decodeSetattr(b, off, end)), this.replyAttr);
      case Op.READLINK:
        req.size = 4095;
        return this.serve(req, f.readlink(req, nodeid), this.replyData);
      case Op.SYMLINK: {
        const s = decodeSymlink(b, off, end);
        return this.serve(req, f.symlink(req, nodeid, s.name, s.target), this.replyEntry);
      }
      case Op.MKNOD: {
        const m = decodeMknod(b, off, end);
        return this.serve(req, f.mknod(req, nodeid, m.name, m.mode, m.rdev, m.umask), this.replyEntry);
      }
      case Op.MKDIR: {
        const m = decodeMkdir(b, off, end);
        return this.serve(req, f.mkdir(req, nodeid, m.name, m.mode, m.umask), this.replyEntry);
      }
      case Op.UNLINK:
        return this.serve(req, f.unlink(req, nodeid, decodeName(b, off, end, 'UNLINK')), this.replyEmpty);
      case Op.RMDIR:
        return this.serve(req, f.rmdir(req, nodeid, decodeName(b, off, end, 'RMDIR')), this.replyEmpty);
      case Op.RENAME:
      case Op.RENAME2: {
        const r = decodeRename(b, off, end, req.opcode === Op.RENAME2);
        return this.serve(req, f.rename(req, nodeid, r.name, r.newParent, r.newName, r.flags), this.replyEmpty);
      }
      case Op.LINK: {
        const l = decodeLink(b, off, end);
        return this.serve(req, f.link(req, l.oldNodeid, nodeid, l.newName), this.replyEntry);
      }
      case Op.OPEN:
        req.size = decodeOpen(b, off, end); // the flags, for a release if the reply is lost
        return this.serve(req, f.open(req, nodeid, req.size), this.replyOpen);
      case Op.OPENDIR:
        req.size = decodeOpen(b, off, end);
        return this.serve(req, f.opendir(req, nodeid, req.size), this.replyOpen);
      case Op.CREATE: {
        const c = decodeCreate(b, off, end);
        req.size = c.flags;
        return this.serve(req, f.create(req, nodeid, c.name, c.mode, c.umask, c.flags), this.replyCreate);
      }
      case Op.READ: {
        const r = decodeRead(b, off, end);
        if (r.size === 0) return this.replyData(req, Buffer.alloc(0));
        req.size = r.size;
        return this.serve(req, f.read(req, nodeid, r.fh, r.offset, r.size), this.replyData);
      }
      case Op.WRITE:
        return this.write(req, nodeid, b, off, end);
      case Op.STATFS:
        return this.serve(req, f.statfs(req, nodeid), this.replyStatfs);
      case Op.RELEASE: {
        const r = decodeRelease(b, off, end);
        return this.serve(req, f.release(req, nodeid, r.fh, r.flags, r.lockOwner, r.flockUnlock), this.replyEmpty);
      }
      case Op.RELEASEDIR:
        return this.serve(req, f.releasedir(req, nodeid, decodeRelease(b, off, end).fh), this.replyEmpty);
      case Op.FSYNC: {
        const s = decodeFsync(b, off, end);
        return this.serve(req, f.fsync(req, nodeid, s.fh, s.datasync), this.replyEmpty);
      }
      case Op.FSYNCDIR: {
        const s = decodeFsync(b, off, end);
        return this.serve(req, f.fsyncdir(req, nodeid, s.fh, s.datasync), this.replyEmpty);
      }
      case Op.FLUSH: {
        const fl = decodeFlush(b, off, end);
        return this.serve(req, f.flush(req, nodeid, fl.fh, fl.lockOwner), this.replyEmpty);
      }
      case Op.SETXATTR: {
        const x = decodeSetxattr(b, off, end, this.setxattrExt);
        return this.serve(req, f.setxattr(req, nodeid, x.name, x.value, x.flags), this.replyEmpty);
      }
      case Op.GETXATTR: {
        const x = decodeGetxattr(b, off, end, true);
        req.size = x.size;
        return this.serve(req, f.getxattr(req, nodeid, x.name!), this.replyXattr);
      }
      case Op.LISTXATTR:
        req.size = decodeGetxattr(b, off, end, false).size;
        return this.serve(req, f.listxattr(req, nodeid), this.replyXattr);
      case Op.REMOVEXATTR:
        return this.serve(req, f.removexattr(req, nodeid, decodeName(b, off, end, 'REMOVEXATTR')), this.replyEmpty);
      case Op.ACCESS:
        return this.serve(req, f.access(req, nodeid, decodeAccess(b, off, end)), this.replyEmpty);
      case Op.READDIR:
      case Op.READDIRPLUS: {
        const r = decodeRead(b, off, end);
        return void this.readdir(req, nodeid, r.fh, r.offset, r.size, req.opcode === Op.READDIRPLUS);
      }
      case Op.GETLK: {
        const l = decodeLk(b, off, end);
        return this.serve(req, f.getlk(req, nodeid, l), this.replyLk);
      }
      case Op.SETLK:
      case Op.SETLKW:
        return this.serve(req, f.setlk(req, nodeid, decodeLk(b, off, end), req.opcode === Op.SETLKW), this.replyEmpty);
      case Op.FALLOCATE: {
        const a = decodeFallocate(b, off, end);
        return this.serve(req, f.fallocate(req, nodeid, a.fh, a.offset, a.length, a.mode), this.replyEmpty);
      }
      case Op.LSEEK: {
        const l = decodeLseek(b, off, end);
        return this.serve(req, f.lseek(req, nodeid, l.fh, l.offset, l.whence), this.replyU64);
      }
      case Op.COPY_FILE_RANGE:
      case Op.COPY_FILE_RANGE_64: {
        const c = decodeCopyFileRange(b, off, end);
        const narrow = req.opcode === Op.COPY_FILE_RANGE;
        const length = narrow ? Math.min(c.length, U32_COPY_MAX) : c.length;
        req.size = length;
        const p = f.copyFileRange(req, nodeid, c.fhIn, c.offIn, c.nodeOut, c.fhOut, c.offOut, length, c.flags);
        return this.serve(req, p, narrow ? this.replyCount : this.replyCount64);
      }
      case Op.DESTROY:
        this.replyRaw(req.unique, 0);
        this.inFlight.delete(req.unique);
        return this.end('destroyed by the kernel');
      default:
        // IOCTL, POLL, BMAP, SYNCFS, TMPFILE, STATX, DAX mappings, anything newer: none is
        // harmful as ENOSYS (each falls back, or fails the caller with ENOTTY/EOPNOTSUPP).
        return this.replyErrno(req, E.ENOSYS);
    }
  }

  /**
   * Answers `req` when `p` settles. then() rather than await: a rejection (an errno, the
   * common case for LOOKUP and GETXATTR) reaches replyError without being rethrown, and a
   * throw costs V8 a stack walk, several microseconds a request. `lent`: the read buffer the
   * request's data lives in, given back once it settled.
   */
  private serve<T>(req: Req, p: Promise<T>, reply: (this: KernelSession, req: Req, v: T) => void, lent?: Buffer): void {
    p.then(
      (v) => {
        if (lent) this.giveBack(lent);
        try {
          reply.call(this, req, v);
        } catch (e) {
          this.replyError(req, e); // an encoding bug (an attribute out of range...)
        }
      },
      (e: unknown) => {
        if (lent) this.giveBack(lent);
        this.replyError(req, e);
      },
    );
  }

  private write(req: Req, nodeid: number, b: Buffer, off: number, end: number): void {
    const w = decodeWrite(b, off, end);
    req.size = w.data.length;
    const p = this.fs.write(req, nodeid, w.fh, w.offset, w.data, w.lockOwner);
    // The data stays a view of the read buffer: lend it to this request, read on into another.
    this.buf = this.freeBufs.pop() ?? Buffer.allocUnsafeSlow(this.bufSize);
    this.lentBufs++;
    this.serve(req, p, this.replyWritten, b);
  }

  private giveBack(b: Buffer): void {
    this.lentBufs--;
    if (this.freeBufs.length < FREE_BUFFERS_MAX) this.freeBufs.push(b);
  }

  private readdir(req: Req, nodeid: number, fh: number, offset: number, size: number, plus: boolean): void {
    const sink = new DirPacker(size, plus);
    this.serve(req, size > 0 ? this.fs.readdir(req, nodeid, fh, offset, sink) : Promise.resolve(), () => {
      if (!this.send(req, 0, sink.buf, sink.length)) this.unreference(sink.nodeids);
    });
  }

  // ---- the messages without a reply ------------------------------------------------------

  private forget(nodeid: number, nlookup: number): void {
    try {
      this.fs.forget(nodeid, nlookup);
    } catch (e) {
      this.log.error(`FORGET ${nodeid} ${nlookup}: ${(e as Error).stack ?? e}`);
    }
  }

  private forgetOne(b: Buffer, nodeid: number, off: number, end: number): void {
    let n: number;
    try {
      n = decodeForget(b, off, end);
    } catch (e) {
      return this.log.error(`FORGET: ${(e as Error).message}`);
    }
    this.forget(nodeid, n);
  }

  private batchForget(b: Buffer, off: number, end: number): void {
    try {
      decodeBatchForget(b, off, end, (nodeid, n) => this.forget(nodeid, n));
    } catch (e) {
      this.log.error(`BATCH_FORGET: ${(e as Error).message}`);
    }
  }

  private interrupt(b: Buffer, off: number, end: number): void {
    let target: number;
    try {
      target = decodeInterrupt(b, off, end);
    } catch (e) {
      this.log.error(`INTERRUPT: ${(e as Error).message}`);
      return;
    }
    // Not in flight: answered already (the kernel sends INTERRUPT only after we read its target).
    const req = this.inFlight.get(target);
    if (!req) return;
    for (const e of req.interrupt()) this.log.error(`${opName(req.opcode)} ${target}: an interrupt listener threw: ${(e as Error).stack ?? e}`);
  }

  // ---- INIT --------------------------------------------------------------------------------

  private init(h: InHeader, b: Buffer, off: number, end: number): void {
    let n: Negotiated;
    try {
      n = negotiate(decodeInit(b, off, end), { ...this.opts, maxWrite: this.bufSize - 4096, maxPagesLimit: maxPagesLimit() });
    } catch (e) {
      this.replyRaw(h.unique, -E.EIO);
      return this.end(`INIT: ${(e as Error).message}`);
    }
    if (n.refuse) {
      this.replyRaw(h.unique, -E.EPROTO);
      return this.end(n.refuse);
    }
    const len = OUT_HEADER_SIZE + n.replySize;
    encodeOutHeader(this.out, len, 0, h.unique);
    encodeInitOut(this.out, OUT_HEADER_SIZE, n.reply);
    if (!this.writeReply(h.unique, Op.INIT, len)) return this.end('the INIT reply failed');
    if (!n.conn) return; // a newer major: told which we speak, the kernel may offer it next
    this.conn = n.conn;
    this.setxattrExt = (n.conn.flags & Init.SETXATTR_EXT) !== 0n;
    this.log.debug(`INIT: kernel ${n.kernel}, serving ${n.conn.major}.${n.conn.minor}, flags ${flagNames(n.conn.flags).join(',')}`);
    try {
      this.fs.init(this.conn);
    } catch (e) {
      this.log.error(`fs.init threw: ${(e as Error).stack ?? e}`);
    }
    this.settleReady[0](this.conn);
  }

  // ---- replies -----------------------------------------------------------------------------
  // Each writes its body at OUT_HEADER_SIZE in `out` (or passes data) and sends one writev.

  private replyEmpty(req: Req): void {
    this.send(req, 0);
  }

  private replyEntry(req: Req, e: Entry): void {
    encodeEntryOut(this.out, OUT_HEADER_SIZE, e);
    if (!this.send(req, SIZE.entry_out) && e.nodeid !== 0) this.unreference([e.nodeid]);
  }

  private replyCreate(req: Req, c: { entry: Entry; opened: Opened }): void {
    encodeEntryOut(this.out, OUT_HEADER_SIZE, c.entry);
    encodeOpenOut(this.out, OUT_HEADER_SIZE + SIZE.entry_out, c.opened);
    if (this.send(req, SIZE.entry_out + SIZE.open_out)) return;
    // The kernel never saw the file or its handle: give both back, as it would have.
    this.releaseLost(req, c.entry.nodeid, c.opened.fh, false);
    this.unreference([c.entry.nodeid]);
  }

  private replyOpen(req: Req, o: Opened): void {
    encodeOpenOut(this.out, OUT_HEADER_SIZE, o);
    if (!this.send(req, SIZE.open_out)) this.releaseLost(req, req.nodeid, o.fh, req.opcode === Op.OPENDIR);
  }

  private replyAttr(req: Req, a: Attr): void {
    encodeAttrOut(this.out, OUT_HEADER_SIZE, a.attrMs, a.attr);
    this.send(req, SIZE.attr_out);
  }

  private replyStatfs(req: Req, s: Statfs): void {
    encodeStatfs(this.out, OUT_HEADER_SIZE, s);
    this.send(req, SIZE.kstatfs);
  }

  private replyLk(req: Req, lk: Flock): void {
    encodeLkOut(this.out, OUT_HEADER_SIZE, lk);
    this.send(req, SIZE.lk_out);
  }

  /** READ, READLINK: at most what was asked (more would be refused with EINVAL). */
  private replyData(req: Req, data: Buffer): void {
    this.send(req, 0, data, Math.min(data.length, req.size));
  }

  private replyWritten(req: Req, n: number): void {
    encodeU32Out(this.out, OUT_HEADER_SIZE, Math.min(n, req.size));
    this.send(req, SIZE.write_out);
  }

  private replyCount(req: Req, n: number): void {
    encodeU32Out(this.out, OUT_HEADER_SIZE, Math.min(n, req.size));
    this.send(req, SIZE.write_out);
  }

  private replyCount64(req: Req, n: number): void {
    encodeU64Out(this.out, OUT_HEADER_SIZE, Math.min(n, req.size));
    this.send(req, SIZE.copy_file_range_out);
  }

  private replyU64(req: Req, v: number): void {
    encodeU64Out(this.out, OUT_HEADER_SIZE, v);
    this.send(req, SIZE.lseek_out);
  }

  /** GETXATTR/LISTXATTR: the size for a probe, ERANGE if the caller's buffer is too small. */
  private replyXattr(req: Req, v: Buffer): void {
    if (req.size === 0) {
      encodeU32Out(this.out, OUT_HEADER_SIZE, v.length);
      this.send(req, SIZE.getxattr_out);
    } else if (v.length > req.size) {
      this.replyErrno(req, E.ERANGE);
    } else {
      this.send(req, 0, v);
    }
  }

  private replyError(req: Req, e: unknown): void {
    if (e instanceof FopError) return this.replyErrno(req, e.errno);
    this.log.error(`${opName(req.opcode)} ${req.unique} (nodeid ${req.nodeid}) failed with something that is not a FopError: ${(e as Error)?.stack ?? e}`);
    this.replyErrno(req, E.EIO);
  }

  private replyErrno(req: Req, errno: number): void {
    if (!this.finish(req)) return;
    // An errno outside (0, 512) makes the kernel refuse the reply and leave the caller waiting.
    this.replyRaw(req.unique, errno > 0 && errno < 512 ? -errno : -E.EIO, req.opcode);
  }

  /** Sends a success reply: `bodyLen` bytes of `out` after the header, then `extra`. */
  private send(req: Req, bodyLen: number, extra?: Buffer, extraLen?: number): boolean {
    if (!this.finish(req)) return false;
    const xl = extra ? extraLen ?? extra.length : 0;
    encodeOutHeader(this.out, OUT_HEADER_SIZE + bodyLen + xl, 0, req.unique);
    return this.writeReply(req.unique, req.opcode, OUT_HEADER_SIZE + bodyLen, extra, xl);
  }

  /** Takes the request out of flight; false if it was answered already (a bug) or the session is over. */
  private finish(req: Req): boolean {
    if (this.inFlight.get(req.unique) !== req) {
      if (this.endedReason === undefined) this.log.error(`${opName(req.opcode)} ${req.unique}: answered twice`);
      return false;
    }
    this.inFlight.delete(req.unique);
    // All answered (maybe long after the request came, by the thread pool): the caller's
    // next request is often a moment away, and should find the loop awake.
    if (this.inFlight.size === 0 && this.poll) this.dev.pollSpin(this.poll);
    return this.endedReason === undefined;
  }

  private replyRaw(unique: number, error: number, opcode = 0): void {
    encodeOutHeader(this.out, OUT_HEADER_SIZE, error, unique);
    this.writeReply(unique, opcode, OUT_HEADER_SIZE);
  }

  private writeReply(unique: number, opcode: number, len: number, extra?: Buffer, extraLen?: number): boolean {
    if (this.endedReason !== undefined) return false;
    this.opts.beforeReply?.();
    const r = this.dev.write(this.fd, this.out, len, extra, extraLen);
    if (r >= 0) return true;
    this.replyFailures++;
    if (r === -E.ENOENT) {
      // The request was interrupted or aborted meanwhile: normal.
      if (this.log.enabled('debug')) this.log.debug(`${opName(opcode)} ${unique}: the kernel no longer waits for the reply`);
    } else {
      this.log.error(`${opName(opcode)} ${unique}: reply of ${len + (extraLen ?? 0)} bytes failed: ${FopError.fromErrno(r).code}`);
    }
    return false;
  }

  /** References the kernel never received (its reply failed): forget them as it would have. */
  private unreference(nodeids: readonly number[]): void {
    if (this.endedReason !== undefined) return;
    for (const id of nodeids) this.forget(id, 1);
  }

  private releaseLost(req: Req, nodeid: number, fh: number, dir: boolean): void {
    if (this.endedReason !== undefined) return;
    const p = dir ? this.fs.releasedir(req, nodeid, fh) : this.fs.release(req, nodeid, fh, req.size, 0n, false);
    p.catch((e) => this.log.warn(`release of handle ${fh} whose open reply was lost: ${(e as Error).message}`));
  }

  // ---- notifications -----------------------------------------------------------------------

  /** Drops the kernel's cached attributes of `nodeid` and, if off >= 0, its pages from off (len <= 0: to the end). False: not cached. */
  notifyInvalInode(nodeid: number, off: number, len: number): Promise<boolean> {
    return this.notify('INVAL_INODE', () => encodeNotifyInvalInode(nodeid, off, len));
  }

  /** Drops the kernel's dentry `name` in `parent`. False: not cached. */
  notifyInvalEntry(parent: number, name: Buffer): Promise<boolean> {
    return this.notify('INVAL_ENTRY', () => encodeNotifyInvalEntry(parent, name));
  }

  /** As notifyInvalEntry, and tells inotify watchers that `child` was deleted. */
  notifyDelete(parent: number, child: number, name: Buffer): Promise<boolean> {
    return this.notify('DELETE', () => encodeNotifyDelete(parent, child, name));
  }

  private async notify(what: string, encode: () => Buffer): Promise<boolean> {
    if (!this.notifier || this.endedReason !== undefined) throw new FopError('ENOTCONN', `${what}: the session is not serving`);
    const ms = this.opts.notifyTimeoutMs ?? DEFAULT_NOTIFY_TIMEOUT_MS;
    let r: number;
    try {
      r = await withDeadline(this.dev.notifierWrite(this.notifier, encode()), ms, `notification ${what}`);
    } catch (e) {
      this.log.warn(`notification ${what} still blocked in the kernel after ${ms} ms (a related request unanswered?)`);
      throw new FopError('ETIMEDOUT', (e as Error).message);
    }
    if (r >= 0) return true;
    if (r === -E.ENOENT) return false;
    throw FopError.fromErrno(r, `notification ${what}`);
  }

  // ---- the end -----------------------------------------------------------------------------

  private end(reason: string): void {
    if (this.endedReason !== undefined) return;
    this.endedReason = reason;
    if (this.poll) this.dev.pollStop(this.poll);
    this.poll = undefined;
    // Answer what is still in flight (when the connection still exists): an unanswered request
    // keeps its kernel locks (a LOOKUP, its directory's), a notification blocked behind them
    // keeps the notifier's dup of the fd, and the connection would then outlive this process.
    for (const req of this.inFlight.values()) {
      encodeOutHeader(this.out, OUT_HEADER_SIZE, -E.ECONNABORTED, req.unique);
      this.dev.write(this.fd, this.out, OUT_HEADER_SIZE);
    }
    if (this.notifier) this.dev.notifierClose(this.notifier);
    this.notifier = undefined;
    const c = this.dev.close(this.fd);
    if (c < 0) this.log.warn(`closing the FUSE device: ${FopError.fromErrno(c).code}`);
    this.fd = -1;
    // Nobody waits for these any more: let waiting methods (blocked locks) stop.
    for (const req of this.inFlight.values()) req.interrupt();
    this.inFlight.clear();
    this.log.info(`FUSE session ended: ${reason}`);
    try {
      this.fs.destroy();
    } catch (e) {
      this.log.error(`fs.destroy threw: ${(e as Error).stack ?? e}`);
    }
    this.settleReady[1](new Error(`the FUSE session ended before INIT: ${reason}`));
    this.resolveClosed(reason);
  }

  // ---- statedump ---------------------------------------------------------------------------

  dump(): SessionDump {
    const now = Date.now();
    const requests: Record<string, number> = {};
    for (const [op, n] of [...this.counts].sort((a, b) => a[0] - b[0])) requests[opName(op)] = n;
    return {
      state: this.endedReason !== undefined ? 'closed' : this.conn ? 'serving' : 'waiting for INIT',
      closedReason: this.endedReason,
      protocol: this.conn ? `${this.conn.major}.${this.conn.minor}` : undefined,
      flags: this.conn ? flagNames(this.conn.flags) : [],
      maxWrite: this.conn?.maxWrite,
      requests,
      inFlight: [...this.inFlight.values()].map((r) => ({ unique: r.unique, op: opName(r.opcode), ageMs: now - r.started, interrupted: r.interrupted })),
      replyFailures: this.replyFailures,
      resent: this.resent,
      readBuffers: { lent: this.lentBufs, free: this.freeBufs.length },
    };
  }
}
