// What a brick does with a request sent again after its connection broke (the brick died,
// or the network did), for the fops that are not safe to carry out twice.
//
//   fop                         client                      brick, on a request sent again
//   --------------------------  --------------------------  ---------------------------------------------
//   create mkdir mknod symlink  resent, with a request id   the reply cache; else the name holds the GFID
//                                                           the client chose: done (create opens that file,
//                                                           without O_CREAT/O_EXCL/O_TRUNC)
//   link                        resent, with a request id   the reply cache; else the new name holds the
//                                                           source's GFID: done
//   rename (not EXCHANGE)       resent, with a request id   the reply cache; else the old name no longer
//                                                           holds the source's GFID and the new one does:
//                                                           done
//   rename EXCHANGE             resent, with a request id   the reply cache only
//   unlink rmdir                resent, with a request id   the reply cache; else the name is gone or holds
//                                                           another GFID than the one the client named: done
//   write on an O_APPEND fd     resent, with a request id   the reply cache; else the size noted before it
//                                                           (an intent, on disk before the write) and the
//                                                           bytes there are the request's (on a write-only
//                                                           fd: the size is exactly that much more): done
//   setxattr with XATTR_CREATE  resent, with a request id   the reply cache; else the value is there: done
//   removexattr                 resent, with a request id   the reply cache; else the name is gone: done
//   any other setxattr          resent, with a request id   the reply cache (setting it again is the same)
//   reads, stats, lookups,      resent as they are          carried out again (the same result)
//   writes at an offset,
//   truncate, setattr, open...
//   lk inodelk entrylk          not resent (ENOTCONN)       locks went with the connection
//   xattrop                     not resent (ENOTCONN)       an add carried out twice is not the same add
//
// "Done" means answered as if it had just been carried out (with the object's attributes
// where the fop returns them), and remembered in the reply cache for a third sending. A
// request still being carried out for the same client and id is waited for, never started
// twice. Outcomes are remembered (on disk, before the reply leaves) except EINTR and
// ENOTCONN, which say the fop was not carried out.
import { constants } from 'fs';
import { Fd, FopError, FopName, Frame, Iatt, Loc, Xlator } from '../../src/core/index';
import type { Logger } from '../../src/core/index';
import { Outcome, ReplyCache } from './reply-cache';

const RENAME_EXCHANGE = 2;
const XATTR_CREATE = 1;

/** Fops sent with a request id (and so resent): the table above. */
const WITH_ID = new Set<FopName>(['create', 'mkdir', 'mknod', 'symlink', 'link', 'rename', 'unlink', 'rmdir', 'setxattr', 'removexattr']);

/** Whether a fop travels with a request id: it may then be sent again after a reconnection. */
export function needsRequestId(op: FopName, fd?: Fd): boolean {
  return WITH_ID.has(op) || (op === 'write' && fd !== undefined && (fd.flags & constants.O_APPEND) !== 0);
}

/** One request with an id, as the server hands it over. */
export interface ReplayCall {
  /** The client's identity and the request id. */
  readonly key: string;
  /** The client sent it before (on a connection that broke). */
  readonly again: boolean;
  readonly op: FopName;
  /** Its arguments after the frame, as the server made them. */
  readonly args: readonly unknown[];
  readonly frame: Frame;
  /** The subvolume the server serves. */
  readonly child: Xlator;
}

/** Whether the fop it is about had been carried out, and its value then. */
type Found = { readonly done: false } | { readonly done: true; readonly value?: unknown };
const NOT_DONE: Found = { done: false };

const NOT_CARRIED_OUT = new Set(['EINTR', 'ENOTCONN']);

const gfidOf = (l: Loc) => l.inode?.gfid ?? l.gfid;

/** The reply cache and the per-fop rules, for one protocol/server. */
export class Replays {
  private readonly running = new Map<string, Promise<unknown>>();
  /** Requests answered from the cache or recognised as done, for statedumps. */
  replayed = 0;
  recognised = 0;
  /** Sendings waiting for an earlier one of the same request to finish. */
  private waiting = 0;

  constructor(
    readonly cache: ReplyCache,
    private readonly log: Logger,
  ) {}

  /** Carries out `exec` for a request, unless it was already: then answers as it was answered. */
  async run(c: ReplayCall, exec: () => Promise<unknown>): Promise<unknown> {
    // The first sending may still be on its way through the graph: wait for it.
    for (let r = this.running.get(c.key); r; r = this.running.get(c.key)) {
      this.waiting++;
      await r.catch(() => undefined).finally(() => this.waiting--);
    }
    const known = this.cache.get(c.key)?.outcome;
    if (known) {
      this.replayed++;
      this.log.info(`${c.op} ${c.key} sent again: answered from the reply cache (${known.ok ? 'ok' : known.errno})`);
      return this.replay(c, known);
    }
    const p = this.carryOut(c, exec);
    this.running.set(c.key, p);
    try {
      return await p;
    } finally {
      this.running.delete(c.key);
    }
  }

  dump(): Record<string, unknown> {
    return { ...this.cache.dump(), running: this.running.size, waiting: this.waiting, replayed: this.replayed, recognised: this.recognised };
  }

  private async replay(c: ReplayCall, o: Outcome): Promise<unknown> {
    if (!o.ok) throw new FopError(o.errno as FopError['code'], o.message);
    // The first create's fd went with its connection: this sending gets one of its own.
    if (c.op === 'create') await c.child.open(c.frame, c.args[0] as Loc, c.args[2] as Fd);
    return o.value;
  }

  private async carryOut(c: ReplayCall, exec: () => Promise<unknown>): Promise<unknown> {
    const found = c.again ? await this.find(c) : NOT_DONE;
    let outcome: Outcome | undefined;
    try {
      if (found.done) {
        this.recognised++;
        this.log.info(`${c.op} ${c.key} sent again: found carried out, answered ok`);
        const value = await this.replay(c, { ok: true, value: found.value });
        outcome = { ok: true, value };
        return value;
      }
      if (c.op === 'write') this.cache.intend(c.key, { size: (await c.child.fstat(c.frame, c.args[0] as Fd)).size });
      const value = await exec();
      outcome = { ok: true, value };
      return value;
    } catch (e) {
      const err = FopError.from(e);
      if (!NOT_CARRIED_OUT.has(err.code)) outcome = { ok: false, errno: err.code, message: err.detail };
      throw err;
    } finally {
      if (outcome) this.cache.put(c.key, outcome);
    }
  }

  /** Whether the state of the volume shows the fop was carried out (the brick died before remembering it). */
  private async find(c: ReplayCall): Promise<Found> {
    const a = c.args;
    switch (c.op) {
      case 'create':
      case 'mkdir':
      case 'mknod':
      case 'symlink': {
        const loc = (c.op === 'symlink' ? a[1] : a[0]) as Loc;
        const there = await this.at(c, loc);
        return there && there.gfid === gfidOf(loc) ? { done: true, value: there } : NOT_DONE;
      }
      case 'link': {
        const there = await this.at(c, a[1] as Loc);
        return there && there.gfid === gfidOf(a[0] as Loc) ? { done: true, value: there } : NOT_DONE;
      }
      case 'rename': {
        const src = gfidOf(a[0] as Loc);
        if (!src || ((a[2] as number) & RENAME_EXCHANGE) !== 0) return NOT_DONE;
        const to = await this.at(c, a[1] as Loc);
        if (to?.gfid !== src) return NOT_DONE;
        return (await this.at(c, a[0] as Loc))?.gfid === src ? NOT_DONE : { done: true, value: to };
      }
      case 'unlink':
      case 'rmdir': {
        const there = await this.at(c, a[0] as Loc);
        const victim = gfidOf(a[0] as Loc);
        return !there || (victim !== undefined && there.gfid !== victim) ? { done: true } : NOT_DONE;
      }
      case 'setxattr': {
        if (((a[3] as number) & XATTR_CREATE) === 0) return NOT_DONE;
        const now = await this.xattr(c, a[0] as Loc, a[1] as string);
        return now?.equals(a[2] as Buffer) ? { done: true } : NOT_DONE;
      }
      case 'removexattr':
        return (await this.xattr(c, a[0] as Loc, a[1] as string)) === undefined ? { done: true } : NOT_DONE;
      case 'write': {
        const before = this.cache.get(c.key)?.intent?.size;
        // No intent on disk: the brick died before it, so before the write.
        if (before === undefined) return NOT_DONE;
        const [fd, data] = a as [Fd, Buffer];
        const st = await c.child.fstat(c.frame, fd);
        if (st.size < before + data.length) return NOT_DONE;
        const done: Found = { done: true, value: data.length };
        try {
          return (await c.child.read(c.frame, fd, data.length, before)).equals(data) ? done : NOT_DONE;
        } catch (e) {
          // A write-only fd: its size alone must say it (nobody else appended since).
          if (FopError.from(e).code !== 'EBADF') throw e;
          return st.size === before + data.length ? done : NOT_DONE;
        }
      }
      default:
        return NOT_DONE;
    }
  }

  /** What `loc`'s parent and name hold now, or undefined if nothing. */
  private async at(c: ReplayCall, loc: Loc): Promise<Iatt | undefined> {
    try {
      return await c.child.lookup(c.frame, { path: loc.path, parent: loc.parent, name: loc.name });
    } catch (e) {
      if (FopError.from(e).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private async xattr(c: ReplayCall, loc: Loc, name: string): Promise<Buffer | undefined> {
    try {
      return await c.child.getxattr(c.frame, loc, name);
    } catch (e) {
      if (FopError.from(e).code === 'ENODATA') return undefined;
      throw e;
    }
  }
}
