// Creation of new objects, atomic: an object is made aside (in .xlstack/tmp, under its
// GFID), given its GFID, owner and mode there, and only then given its name. Whatever
// fails, nothing is left behind: not the entry, not its handle, not the aside object. A
// crash leaves at worst an aside object (tmp is emptied at start) or a complete entry
// without its handle (the next lookup makes it).
import * as fs from 'fs';
import { Caller, FopError, Gfid, Logger, Name, RENAME_NOREPLACE, isDir, isLnk } from '../../../src/core/index';
import { DIR_OPEN } from './dirs';
import { writeGfid } from './gfid';
import type { HandleStore } from './handles';
import { At, Stat, sys } from './sys';

const S_ISGID = 0o2000;

/** A new object: where it goes, the GFID it gets, who makes it and with which mode. */
export interface NewObject {
  /** The parent directory's fd and the new name. */
  readonly entry: At;
  readonly parent: Gfid;
  readonly name: Name;
  readonly gfid: Gfid;
  readonly caller: Caller;
  readonly mode: number;
}

/** Steps already taken, undone in reverse when a later one fails. */
class Undo {
  private readonly steps = new Set<[string, () => void]>();

  constructor(private readonly log: Logger) {}

  /** Returns the way to forget the step: once it needs no undoing any more. */
  push(what: string, fn: () => void): () => void {
    const step: [string, () => void] = [what, fn];
    this.steps.add(step);
    return () => this.steps.delete(step);
  }

  run(): void {
    for (const [what, fn] of [...this.steps].reverse()) {
      try {
        fn();
      } catch (e) {
        this.log.error(`undoing a failed creation: could not ${what}: ${(e as Error).message}`);
      }
    }
  }
}

/**
 * Makes a non-directory. `make(aside)` creates it at `aside` and returns an fd of it (a
 * regular file, kept open for the caller) or undefined. The entry appears with link(2),
 * which fails with EEXIST if the name is taken; then its handle, another link.
 */
export function makeObject(store: HandleStore, log: Logger, o: NewObject, make: (aside: At) => number | undefined): { fd?: number; st: Stat } {
  const handle = store.handleAt(o.gfid);
  if (sys.statIfExists(handle)) throw new FopError('EEXIST', `GFID ${o.gfid} is taken`);
  const aside = store.asideAt(o.gfid);
  const undo = new Undo(log);
  try {
    const fd = make(aside);
    const forgetAside = undo.push('remove the aside object', () => sys.unlinkat(aside));
    if (fd !== undefined) undo.push('close it', () => fs.closeSync(fd));
    const self: At = fd !== undefined ? { dirfd: fd, name: null } : aside;
    writeGfid(self, o.gfid);
    settle(self, o.entry.dirfd, o.caller, o.mode);
    sys.linkat(aside, o.entry);
    undo.push('remove the new entry', () => sys.unlinkat(o.entry));
    sys.linkat(aside, handle);
    undo.push('remove the new handle', () => sys.unlinkat(handle));
    sys.unlinkat(aside);
    forgetAside();
    const st = sys.stat(fd !== undefined ? self : handle);
    store.markVerified(o.gfid, st.ino);
    return { fd, st };
  } catch (e) {
    undo.run();
    throw e;
  }
}

/**
 * Makes a directory: made aside, then moved in with renameat2(RENAME_NOREPLACE) (EEXIST
 * if the name is taken), then its handle written. Its fd goes to the store's open
 * directories.
 */
export function makeDir(store: HandleStore, log: Logger, o: NewObject): Stat {
  const handle = store.handleAt(o.gfid);
  if (sys.statIfExists(handle)) throw new FopError('EEXIST', `GFID ${o.gfid} is taken`);
  const aside = store.asideAt(o.gfid);
  const undo = new Undo(log);
  try {
    sys.mkdirat(aside, o.mode & 0o777);
    const forgetAside = undo.push('remove the aside directory', () => sys.unlinkat(aside, true));
    const fd = sys.openat(aside, DIR_OPEN);
    undo.push('close it', () => fs.closeSync(fd));
    const self: At = { dirfd: fd, name: null };
    writeGfid(self, o.gfid);
    settle(self, o.entry.dirfd, o.caller, o.mode);
    sys.renameat2(aside, o.entry, RENAME_NOREPLACE);
    forgetAside();
    undo.push('remove the new entry', () => sys.unlinkat(o.entry, true));
    store.setDirHandle(o.gfid, o.parent, o.name);
    undo.push('remove the new handle', () => store.removeDirHandle(o.gfid));
    const st = sys.stat(self);
    store.dirs.adopt(o.gfid, fd);
    return st;
  } catch (e) {
    undo.run();
    throw e;
  }
}

/**
 * Gives a new object the owner, group and mode the kernel would have given it in its
 * directory: the caller's ids, a setgid directory's group (and, for a directory, its setgid
 * bit), and no setgid bit on a file whose group the caller is not in. Done aside, before
 * the object has a name: it is never visible with root's ownership.
 */
function settle(self: At, parentFd: number, caller: Caller, requested: number): void {
  const pst = sys.stat({ dirfd: parentFd, name: null });
  const st = sys.stat(self);
  const inherits = (pst.mode & S_ISGID) !== 0;
  const gid = inherits ? pst.gid : caller.gid;
  let mode = requested & 0o7777;
  if (isDir(st.mode) && inherits) mode |= S_ISGID;
  const inGroup = caller.uid === 0 || gid === caller.gid || caller.groups.includes(gid);
  if (!isDir(st.mode) && !inGroup) mode &= ~S_ISGID;
  const chown = st.uid !== caller.uid || st.gid !== gid;
  if (chown) sys.chown(self, caller.uid, gid);
  // chown clears set-id bits: set the mode after it.
  if (!isLnk(st.mode) && (chown || (st.mode & 0o7777) !== mode)) sys.chmod(self, mode);
}
