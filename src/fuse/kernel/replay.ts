// What a worker does with a request the kernel sends again because the worker that read it
// died (FUSE_NOTIFY_RESEND): the dead one may have carried it out and not answered.
//
//   request                  first sending                      sent again, and it fails with
//   -----------------------  ---------------------------------  ------------------------------------------
//   MKDIR MKNOD SYMLINK      its GFID is chosen here and        EEXIST: the name holds that GFID: the same
//   CREATE                   written down (the supervisor's     create, answered with its entry (CREATE also
//                            record) before it is carried out   opens it, without O_CREAT/O_EXCL/O_TRUNC)
//   LINK                     -                                  EEXIST: the name holds the source's GFID
//   UNLINK RMDIR             -                                  ENOENT: done (the name is gone) *
//   RENAME                   -                                  ENOENT: done if the new name exists *
//   WRITE on an O_APPEND     the file's size is written down    its bytes are at that size (a write-only
//   handle                   before the write                   handle: the file grew by exactly that): done
//   SETLK SETLKW FLUSH       recorded once done (the locks a new worker takes again)
//   the rest                 -                                  carried out again (the same result)
//
// (*) by what the volume shows, not by a record: an unlink sent again whose name another
// process removed meanwhile is answered as done too.
import { constants } from 'fs';
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../../core/errors';
import type { Logger } from '../../core/log';
import type { Flock } from '../../core/types';
import type { Entry, KernelFs, Opened, Request } from './fs';
import { isResent } from './session';

export interface ReplayOptions {
  /** Writes down the GFID a request (by its unique) gives what it makes, before it is carried out. */
  readonly intend: (unique: number, gfid: string) => void;
  /** The GFID a dead worker chose for a request, if written down. */
  readonly intended: (unique: number) => string | undefined;
  /** The GFID of a nodeid, if known. */
  readonly gfidOf: (nodeid: number) => string | undefined;
  /** Whether a handle appends (O_APPEND). */
  readonly appending?: (fh: number) => boolean;
  /** Writes down the size a file had before an append (by its unique), before it is written. */
  readonly intendAppend?: (unique: number, size: number) => void;
  /** The size a dead worker saw before an append, if written down. */
  readonly appendedAt?: (unique: number) => number | undefined;
  /** A lock request granted (or an unlock done): a new worker takes it again. */
  readonly locked?: (fh: number, owner: bigint, flock: boolean, lock: Flock) => void;
  /** A flush (close(2) of one fd) by `owner` went through: its POSIX locks on the file are gone. */
  readonly flushed?: (fh: number, owner: bigint) => void;
  readonly log: Logger;
}

const codeOf = (e: unknown) => (e instanceof FopError ? e.code : undefined);

/** `inner`, answering requests sent again as the table above says. */
export function withReplay(inner: KernelFs, o: ReplayOptions): KernelFs & { replayed(): number } {
  let replayed = 0;
  const done = (r: Request, what: string) => {
    replayed++;
    o.log.info(`${what} ${r.unique} sent again: found carried out by the worker that died`);
  };

  /** Whether the bytes of an append are at `at` (on a handle it cannot read: the size alone says it). */
  async function appended(r: Request, nodeid: number, fh: number, at: number, data: Buffer, size: number): Promise<boolean> {
    try {
      return (await inner.read(r, nodeid, fh, at, data.length)).equals(data);
    } catch (e) {
      if (codeOf(e) !== 'EBADF') throw e;
      return size === at + data.length;
    }
  }

  /** Chooses (or takes the dead worker's) GFID, writes it down, runs `make`; EEXIST on a resend: the same create? */
  async function making<T>(r: Request, parent: number, name: Buffer, what: string, make: () => Promise<T>, same: (e: Entry) => Promise<T>): Promise<T> {
    const key = Math.abs(r.unique);
    const gfid = (isResent(r.unique) && o.intended(key)) || uuidv4();
    o.intend(key, gfid);
    r.gfid = gfid;
    try {
      return await make();
    } catch (e) {
      if (!isResent(r.unique) || codeOf(e) !== 'EEXIST') throw e;
      const there = await inner.lookup(r, parent, name);
      if (there.attr.gfid !== gfid) {
        inner.forget(there.nodeid, 1);
        throw e;
      }
      done(r, what);
      return same(there);
    }
  }

  const overrides: Partial<KernelFs> = {
    write: async (r, nodeid, fh, offset, data, owner) => {
      if (!o.appending?.(fh)) return inner.write(r, nodeid, fh, offset, data, owner);
      const key = Math.abs(r.unique);
      const before = isResent(r.unique) ? o.appendedAt?.(key) : undefined;
      const size = (await inner.getattr(r, nodeid, fh)).attr.size;
      if (before !== undefined && size >= before + data.length && (await appended(r, nodeid, fh, before, data, size))) {
        done(r, 'WRITE (append)');
        return data.length;
      }
      o.intendAppend?.(key, size);
      return inner.write(r, nodeid, fh, offset, data, owner);
    },
    setlk: async (r, nodeid, lk, wait) => {
      await inner.setlk(r, nodeid, lk, wait);
      o.locked?.(lk.fh, lk.owner, lk.flock, lk.lock);
    },
    flush: async (r, nodeid, fh, owner) => {
      await inner.flush(r, nodeid, fh, owner);
      o.flushed?.(fh, owner);
    },
    mkdir: (r, parent, name, mode, umask) => making(r, parent, name, 'MKDIR', () => inner.mkdir(r, parent, name, mode, umask), async (e) => e),
    mknod: (r, parent, name, mode, rdev, umask) => making(r, parent, name, 'MKNOD', () => inner.mknod(r, parent, name, mode, rdev, umask), async (e) => e),
    symlink: (r, parent, name, target) => making(r, parent, name, 'SYMLINK', () => inner.symlink(r, parent, name, target), async (e) => e),
    create: (r, parent, name, mode, umask, flags) =>
      making(
        r,
        parent,
        name,
        'CREATE',
        () => inner.create(r, parent, name, mode, umask, flags),
        async (entry) => {
          let opened: Opened;
          try {
            opened = await inner.open(r, entry.nodeid, flags & ~(constants.O_CREAT | constants.O_EXCL | constants.O_TRUNC));
          } catch (e) {
            inner.forget(entry.nodeid, 1);
            throw e;
          }
          return { entry, opened };
        },
      ),
    link: async (r, nodeid, newParent, newName) => {
      try {
        return await inner.link(r, nodeid, newParent, newName);
      } catch (e) {
        if (!isResent(r.unique) || codeOf(e) !== 'EEXIST') throw e;
        const there = await inner.lookup(r, newParent, newName);
        if (there.attr.gfid !== o.gfidOf(nodeid)) {
          inner.forget(there.nodeid, 1);
          throw e;
        }
        done(r, 'LINK');
        return there;
      }
    },
    unlink: async (r, parent, name) => {
      try {
        await inner.unlink(r, parent, name);
      } catch (e) {
        if (!isResent(r.unique) || codeOf(e) !== 'ENOENT') throw e;
        done(r, 'UNLINK');
      }
    },
    rmdir: async (r, parent, name) => {
      try {
        await inner.rmdir(r, parent, name);
      } catch (e) {
        if (!isResent(r.unique) || codeOf(e) !== 'ENOENT') throw e;
        done(r, 'RMDIR');
      }
    },
    rename: async (r, parent, name, newParent, newName, flags) => {
      try {
        await inner.rename(r, parent, name, newParent, newName, flags);
      } catch (e) {
        if (!isResent(r.unique) || codeOf(e) !== 'ENOENT') throw e;
        const there = await inner.lookup(r, newParent, newName).catch(() => undefined);
        if (!there) throw e;
        inner.forget(there.nodeid, 1);
        done(r, 'RENAME');
      }
    },
  };
  // Every other method of `inner`, bound once: the session calls these for every request.
  const all: Record<string, unknown> = {};
  for (let o = inner as object; o !== Object.prototype; o = Object.getPrototypeOf(o)) {
    for (const key of Object.getOwnPropertyNames(o)) {
      const v = (inner as unknown as Record<string, unknown>)[key];
      if (key !== 'constructor' && !(key in all) && typeof v === 'function') all[key] = v.bind(inner);
    }
  }
  return Object.assign(all, overrides, { replayed: () => replayed }) as unknown as KernelFs & { replayed(): number };
}
