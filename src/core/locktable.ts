// The lock bookkeeping of one lock domain: POSIX byte-range locks and flock locks per file,
// the requests waiting for them, and what goes when an owner, an open file or a client does.
// Used by features/locks and, when a graph has none, by a transport for mount-local locks.
// It knows nothing of translators, fds or the wire: owners are strings, open files opaque keys.
import { FopError } from './errors';
import type { Frame } from './frame';
import type { Logger } from './log';
import { Flock, Gfid, LOCK_TO_EOF, LockKind, LockType } from './types';

/**
 * Who holds a lock. POSIX: the lock owner (frame.lkOwner; a server prefixes its client so
 * owners of different clients never meet). flock: the open file (one per open(2), shared
 * by dup and fork).
 */
export type LockOwner = string;

/** The open file a lock was taken through: anything the caller can name it by again at release. */
export type FdKey = object | string;

export interface LockOpts {
  /** F_SETLKW: wait until the lock can be granted (else F_SETLK: EAGAIN on conflict). */
  readonly wait: boolean;
  /**
   * What tells of the caller giving up (a Frame, or a transport's request): a waiting
   * request ends with EINTR when it is interrupted.
   */
  readonly frame?: Pick<Frame, 'onInterrupt'>;
  readonly fdKey: FdKey;
}

/** A granted lock. */
interface Held {
  readonly kind: LockKind;
  readonly owner: LockOwner;
  readonly fdKey: FdKey;
  readonly type: Exclude<LockType, 'unlock'>;
  readonly start: number;
  readonly end: number;
  readonly pid: number;
}

/** A request: a lock to take or an unlock. */
interface Request {
  readonly kind: LockKind;
  readonly owner: LockOwner;
  readonly fdKey: FdKey;
  readonly type: LockType;
  readonly start: number;
  readonly end: number;
  readonly pid: number;
}

/** A request waiting (F_SETLKW) for the locks in its way to go. */
interface Waiter extends Request {
  readonly since: number;
  readonly resolve: (lock: Flock) => void;
  readonly reject: (e: FopError) => void;
  /** Stops listening for the frame's interruption. */
  unlisten: () => void;
}

/** One file's locks: granted, and waiting in arrival order. */
interface FileLocks {
  readonly gfid: Gfid;
  held: Held[];
  readonly waiting: Waiter[];
}

const overlaps = (a: { start: number; end: number }, b: { start: number; end: number }): boolean => a.start <= b.end && b.start <= a.end;

/** Whether `h` stands in the way of `r`: the same kind (flock and POSIX locks never meet, as on Linux), another owner, overlapping, and one of them exclusive. */
const conflicts = (h: Held, r: Request): boolean =>
  h.kind === r.kind && h.owner !== r.owner && overlaps(h, r) && (h.type === 'write' || r.type === 'write');

/** The lock a request makes, once granted (a waiter's bookkeeping left behind). */
const heldFrom = (r: Request, type: Held['type']): Held => ({ kind: r.kind, owner: r.owner, fdKey: r.fdKey, type, start: r.start, end: r.end, pid: r.pid });

const asFlock = (l: { type: LockType; start: number; end: number; pid: number }): Flock => ({ type: l.type, start: l.start, end: l.end, pid: l.pid });

const isOffset = (n: unknown): n is number => Number.isSafeInteger(n) && (n as number) >= 0 && (n as number) <= LOCK_TO_EOF;

/** The request as the table keeps it (flock: always the whole file); EINVAL for a malformed one. */
function request(kind: LockKind, owner: LockOwner, lock: Flock, fdKey: FdKey): Request {
  if (kind !== 'posix' && kind !== 'flock') throw new FopError('EINVAL', `unknown lock kind ${JSON.stringify(kind)}`);
  if (lock.type !== 'read' && lock.type !== 'write' && lock.type !== 'unlock') throw new FopError('EINVAL', `unknown lock type ${JSON.stringify(lock.type)}`);
  if (typeof owner !== 'string') throw new FopError('EINVAL', 'a lock needs an owner');
  const pid = Number.isSafeInteger(lock.pid) ? lock.pid : 0;
  if (kind === 'flock') return { kind, owner, fdKey, type: lock.type, start: 0, end: LOCK_TO_EOF, pid };
  if (!isOffset(lock.start) || !isOffset(lock.end) || lock.start > lock.end) {
    throw new FopError('EINVAL', `bad lock range ${lock.start}-${lock.end} (0 <= start <= end <= ${LOCK_TO_EOF})`);
  }
  return { kind, owner, fdKey, type: lock.type, start: lock.start, end: lock.end, pid };
}

/**
 * The locks of one lock domain (a features/locks translator, or a mount without one).
 *
 * POSIX (fcntl) locks are byte ranges, `end` inclusive (LOCK_TO_EOF: however far the file
 * grows). An owner holds each byte at most once: a new lock replaces the owner's own locks
 * where they overlap, an unlock of the middle of a range splits it, and adjacent or
 * overlapping ranges of the same type taken through the same open file merge. Only locks
 * of different owners conflict. flock locks cover the whole file, one per open file; a
 * second flock by the same open file converts it as Linux does: the old lock goes first, so
 * a conversion that fails or is interrupted leaves none (and two shared holders upgrading at
 * once cannot deadlock). flock and POSIX locks never conflict with each other.
 *
 * A request that must wait is queued; on every change that frees something (unlock,
 * downgrade, release) the queue is walked in arrival order and every request that can be
 * granted now is. A waiting request ends with EINTR when its frame is interrupted, and a
 * POSIX request that would close a cycle of owners waiting for each other fails at once
 * with EDEADLK, as on Linux.
 *
 * Everything here is synchronous except waiting: callers need no lock of their own.
 */
export class LockTable {
  private readonly files = new Map<Gfid, FileLocks>();
  /** The files each open file has (or had) locks or requests on, so its release finds them at once. */
  private readonly byFd = new Map<FdKey, Set<Gfid>>();
  private readonly log?: Logger;
  private closedReason?: string;

  constructor(opts: { log?: Logger } = {}) {
    this.log = opts.log;
  }

  /** No lock held or awaited anywhere. */
  get empty(): boolean {
    return this.files.size === 0;
  }

  /**
   * F_GETLK: the first lock (lowest start) of another owner that would stand in the way of
   * `lock`, or `lock` itself with type 'unlock' when nothing would. EINVAL for a malformed
   * lock or an 'unlock' (there is nothing to test).
   */
  test(gfid: Gfid, kind: LockKind, owner: LockOwner, lock: Flock): Flock {
    const r = request(kind, owner, lock, '');
    if (r.type === 'unlock') throw new FopError('EINVAL', 'F_GETLK needs a read or write lock to test');
    const conflict = this.conflictsOf(this.files.get(gfid), r)[0];
    return conflict ? asFlock(conflict) : asFlock({ ...r, type: 'unlock' });
  }

  /**
   * F_SETLK (wait: false) and F_SETLKW (wait: true), unlock included. Resolves with the lock
   * as granted. Rejects with EAGAIN (conflict, not waiting), EDEADLK (waiting would close a
   * cycle of POSIX owners), EINTR (the frame was interrupted while waiting), EBADF (the open
   * file was released while waiting), ENOTCONN (the owner's group was released or the table
   * closed while waiting), EINVAL (malformed).
   */
  lock(gfid: Gfid, kind: LockKind, owner: LockOwner, lock: Flock, opts: LockOpts): Promise<Flock> {
    let r: Request;
    try {
      r = request(kind, owner, lock, opts.fdKey);
    } catch (e) {
      return Promise.reject(e);
    }
    const file = this.files.get(gfid) ?? { gfid, held: [], waiting: [] };
    if (r.type === 'unlock' && !file.held.some((h) => h.kind === r.kind && h.owner === r.owner)) return Promise.resolve(asFlock(r));
    this.files.set(gfid, file);

    if (r.kind === 'flock') {
      const mine = file.held.find((h) => h.kind === 'flock' && h.owner === r.owner);
      if (mine?.type === r.type) return Promise.resolve(asFlock(r));
      if (mine) {
        // A conversion lets go of the old lock first, and the requests already waiting come first.
        file.held = file.held.filter((h) => h !== mine);
        this.wakeWaiters(file);
        this.files.set(gfid, file);
      }
    }
    const blockers = r.type === 'unlock' ? [] : this.conflictsOf(file, r);
    if (blockers.length === 0) {
      this.grant(file, r);
      this.wakeWaiters(file);
      return Promise.resolve(asFlock(r));
    }
    const refuse = (code: 'EAGAIN' | 'EDEADLK' | 'ENOTCONN', why: string): Promise<Flock> => {
      this.dropIfEmpty(file);
      return Promise.reject(new FopError(code, why));
    };
    const what = () => `${r.kind} ${r.type} lock ${r.start}-${r.end} on ${gfid} for ${r.owner}`;
    if (!opts.wait) return refuse('EAGAIN', `${what()}: held by ${blockers[0].owner}`);
    if (this.closedReason) return refuse('ENOTCONN', `${what()}: ${this.closedReason}`);
    if (r.kind === 'posix' && this.closesCycle(r.owner, blockers)) return refuse('EDEADLK', `${what()}: would wait for an owner that waits for it`);
    return this.enqueue(file, r, opts.frame);
  }

  /**
   * POSIX: `owner` closed a file descriptor of the file (flush): its POSIX locks on it go,
   * whichever open file they were taken through. Its waiting requests keep waiting (another
   * thread of the owner may be waiting, as on Linux).
   */
  releaseOwner(gfid: Gfid, owner: LockOwner): void {
    const file = this.files.get(gfid);
    if (!file) return;
    this.dropHeld(file, (h) => h.kind === 'posix' && h.owner === owner);
  }

  /**
   * The open file `fdKey` is released: its flock lock, every POSIX lock taken through it,
   * and its waiting requests (EBADF) go.
   */
  releaseFd(fdKey: FdKey): void {
    const gfids = this.byFd.get(fdKey);
    if (!gfids) return;
    this.byFd.delete(fdKey);
    for (const gfid of gfids) {
      const file = this.files.get(gfid);
      if (!file) continue;
      this.dropWaiters(file, (w) => w.fdKey === fdKey, 'EBADF', 'the open file it waited through was released');
      this.dropHeld(file, (h) => h.fdKey === fdKey);
    }
  }

  /**
   * Every owner whose name starts with `prefix` is gone (a client whose connection died):
   * its locks of both kinds go, on every file, and its waiting requests end (ENOTCONN).
   */
  releaseGroup(prefix: string): void {
    if (!prefix) throw new Error('releaseGroup: an empty prefix would release every lock');
    if (this.files.size === 0) return;
    const mine = (l: Request) => l.owner.startsWith(prefix);
    for (const file of [...this.files.values()]) {
      this.dropWaiters(file, mine, 'ENOTCONN', `its owner's group ${prefix} was released`);
      this.dropHeld(file, mine);
    }
  }

  /**
   * The domain goes away (its graph goes down): every waiting request ends with ENOTCONN
   * now, and any later one that would have to wait does too. Granted locks stay until
   * released.
   */
  close(reason: string): void {
    this.closedReason = reason;
    for (const file of [...this.files.values()]) this.dropWaiters(file, () => true, 'ENOTCONN', reason);
  }

  /** Held and waiting locks per GFID, for statedumps. */
  dump(): Record<string, unknown> {
    const now = Date.now();
    const show = (l: Request) => ({ kind: l.kind, owner: l.owner, type: l.type, start: l.start, end: l.end === LOCK_TO_EOF ? 'EOF' : l.end, pid: l.pid });
    const files: Record<string, unknown> = {};
    let held = 0;
    let waiting = 0;
    for (const f of this.files.values()) {
      held += f.held.length;
      waiting += f.waiting.length;
      files[f.gfid] = {
        held: [...f.held].sort((a, b) => a.start - b.start).map(show),
        waiting: f.waiting.map((w) => ({ ...show(w), waitingMs: now - w.since })),
      };
    }
    return { held, waiting, files };
  }

  // --- granting ---------------------------------------------------------------------

  /** The held locks in `r`'s way, lowest start first. */
  private conflictsOf(file: FileLocks | undefined, r: Request): Held[] {
    if (!file) return [];
    return file.held.filter((h) => conflicts(h, r)).sort((a, b) => a.start - b.start);
  }

  /** Applies a request nothing stands in the way of. */
  private grant(file: FileLocks, r: Request): void {
    if (r.kind === 'flock') {
      file.held = file.held.filter((h) => !(h.kind === 'flock' && h.owner === r.owner));
      if (r.type !== 'unlock') file.held.push(heldFrom(r, r.type));
    } else {
      file.held = this.replaceRange(file.held, r);
    }
    if (r.type !== 'unlock') this.index(r.fdKey, file.gfid);
    this.dropIfEmpty(file);
  }

  /**
   * POSIX: the owner's locks with `r`'s range cut out of them (split where `r` falls in the
   * middle), then `r` itself (unless an unlock), merged with the owner's adjacent pieces of
   * the same type taken through the same open file.
   */
  private replaceRange(held: Held[], r: Request): Held[] {
    const out: Held[] = [];
    const mine: Held[] = [];
    for (const h of held) (h.kind === 'posix' && h.owner === r.owner ? mine : out).push(h);
    const kept: Held[] = [];
    for (const h of mine) {
      if (!overlaps(h, r)) {
        kept.push(h);
        continue;
      }
      if (h.start < r.start) kept.push({ ...h, end: r.start - 1 });
      if (h.end > r.end) kept.push({ ...h, start: r.end + 1 });
    }
    if (r.type === 'unlock') return [...out, ...kept];
    let added = heldFrom(r, r.type);
    const rest: Held[] = [];
    for (const h of kept) {
      const touches = h.end + 1 === added.start || added.end + 1 === h.start;
      if (touches && h.type === added.type && h.fdKey === added.fdKey) {
        added = { ...added, start: Math.min(h.start, added.start), end: Math.max(h.end, added.end) };
      } else {
        rest.push(h);
      }
    }
    return [...out, ...rest, added];
  }

  /** Grants, in arrival order, every waiting request nothing stands in the way of any more (a grant may itself free more: a waiter's downgrade). */
  private wakeWaiters(file: FileLocks): void {
    for (let again = true; again; ) {
      again = false;
      for (const w of [...file.waiting]) {
        if (this.conflictsOf(file, w).length > 0) continue;
        file.waiting.splice(file.waiting.indexOf(w), 1);
        w.unlisten();
        this.grant(file, w);
        this.log?.debug(`granted the waiting ${w.kind} ${w.type} lock ${w.start}-${w.end} on ${file.gfid} to ${w.owner}`);
        w.resolve(asFlock(w));
        again = true;
      }
    }
    this.dropIfEmpty(file);
  }

  private enqueue(file: FileLocks, r: Request, frame: LockOpts['frame']): Promise<Flock> {
    return new Promise<Flock>((resolve, reject) => {
      const w: Waiter = { ...r, since: Date.now(), resolve, reject, unlisten: () => undefined };
      file.waiting.push(w);
      this.index(r.fdKey, file.gfid);
      if (frame) {
        w.unlisten = frame.onInterrupt(() => {
          const i = file.waiting.indexOf(w);
          if (i < 0) return;
          file.waiting.splice(i, 1);
          this.dropIfEmpty(file);
          this.log?.debug(`waiting ${w.kind} ${w.type} lock ${w.start}-${w.end} on ${file.gfid} for ${w.owner} interrupted`);
          reject(new FopError('EINTR', `waiting for a ${w.kind} ${w.type} lock on ${file.gfid}: interrupted`));
        });
      }
    });
  }

  /**
   * Whether `owner`, waiting for `blockers`, would wait for itself: some blocker waits
   * (for a POSIX lock, on any file) for a holder that ... waits for `owner`.
   */
  private closesCycle(owner: LockOwner, blockers: Held[]): boolean {
    const seen = new Set<LockOwner>();
    const todo = blockers.map((b) => b.owner);
    while (todo.length > 0) {
      const o = todo.pop()!;
      if (o === owner) return true;
      if (seen.has(o)) continue;
      seen.add(o);
      for (const file of this.files.values()) {
        for (const w of file.waiting) {
          if (w.kind === 'posix' && w.owner === o) for (const h of this.conflictsOf(file, w)) todo.push(h.owner);
        }
      }
    }
    return false;
  }

  // --- releasing --------------------------------------------------------------------

  private dropHeld(file: FileLocks, gone: (h: Held) => boolean): void {
    const before = file.held.length;
    file.held = file.held.filter((h) => !gone(h));
    if (file.held.length !== before) this.wakeWaiters(file);
    else this.dropIfEmpty(file);
  }

  private dropWaiters(file: FileLocks, gone: (w: Waiter) => boolean, code: 'EBADF' | 'ENOTCONN', why: string): void {
    for (const w of file.waiting.filter(gone)) {
      file.waiting.splice(file.waiting.indexOf(w), 1);
      w.unlisten();
      this.log?.debug(`waiting ${w.kind} ${w.type} lock on ${file.gfid} for ${w.owner} ended: ${why}`);
      w.reject(new FopError(code, `waiting for a ${w.kind} ${w.type} lock on ${file.gfid}: ${why}`));
    }
    this.dropIfEmpty(file);
  }

  private index(fdKey: FdKey, gfid: Gfid): void {
    let gfids = this.byFd.get(fdKey);
    if (!gfids) this.byFd.set(fdKey, (gfids = new Set()));
    gfids.add(gfid);
  }

  private dropIfEmpty(file: FileLocks): void {
    if (file.held.length === 0 && file.waiting.length === 0 && this.files.get(file.gfid) === file) this.files.delete(file.gfid);
  }
}
