import { constants } from 'fs';
import {
  Caller,
  DirentPlus,
  ErrnoCode,
  Fd,
  Flock,
  FopError,
  Frame,
  Iatt,
  Inode,
  LockCmd,
  LockKind,
  Loc,
  Name,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  SetAttr,
  Xlator,
  defineTranslator,
  isDir,
  isReg,
  locName,
} from '../../src/core/index';

const { O_ACCMODE = 3, O_RDONLY, O_WRONLY, O_TRUNC, O_NOATIME, S_IFMT, S_IFCHR, S_IFBLK } = constants as typeof constants & { O_ACCMODE?: number };
const R = 4;
const W = 2;
const X = 1;
const S_ISUID = 0o4000;
const S_ISGID = 0o2000;
const S_ISVTX = 0o1000;
const S_IXGRP = 0o010;

const isRoot = (c: Caller) => c.uid === 0;
const inGroup = (c: Caller, gid: number) => c.gid === gid || c.groups.includes(gid);
const owns = (c: Caller, a: Iatt) => c.uid === a.uid;
const bits = (mask: number) => `${mask & R ? 'r' : ''}${mask & W ? 'w' : ''}${mask & X ? 'x' : ''}`;

/** Whether `c` may `mask` (R|W|X) an object with attributes `a`: Linux's generic_permission on mode bits. */
export function permits(a: Iatt, c: Caller, mask: number): boolean {
  // root reads and writes anything, and searches or executes what anyone may
  if (isRoot(c)) return !(mask & X) || isDir(a.mode) || (a.mode & 0o111) !== 0;
  const shift = c.uid === a.uid ? 6 : inGroup(c, a.gid) ? 3 : 0;
  return ((a.mode >> shift) & mask) === mask;
}

/** What opening with `flags` asks of a file: read, write or both (O_TRUNC writes). */
function openMask(flags: number): number {
  const acc = flags & O_ACCMODE;
  const mask = acc === O_RDONLY ? R : acc === O_WRONLY ? W : R | W;
  return flags & O_TRUNC ? mask | W : mask;
}

/** Set-id bits that a change of content by someone without CAP_FSETID removes (file_remove_privs). */
function privsToKill(a: Iatt): number {
  if (!isReg(a.mode)) return 0;
  let kill = a.mode & S_ISUID;
  if ((a.mode & (S_ISGID | S_IXGRP)) === (S_ISGID | S_IXGRP)) kill |= S_ISGID;
  return kill;
}

type XattrNamespace = 'user' | 'trusted' | 'security' | 'system' | 'other';
const namespaceOf = (name: Name): XattrNamespace => {
  const ns = name.slice(0, name.indexOf('.'));
  return ns === 'user' || ns === 'trusted' || ns === 'security' || ns === 'system' ? ns : 'other';
};

/**
 * features/access-control: the brick decides what a caller may do, with the caller's uid,
 * gid and groups, the way a local Linux disk would (mode bits; owner, group, other; root's
 * overrides; sticky directories; set-id bits cleared on chmod, chown and writes; who may
 * chown, chmod and set times; search permission on the parent of every entry it names,
 * write permission to create, remove and rename there; protected hard links). It looks up
 * the attributes it needs through its child, so it sits right above storage/posix, which
 * acts as root. What the brick cannot see it cannot check: the directories above an entry's
 * parent (the client's kernel walks those), and an object reached by GFID alone.
 * POSIX ACLs are not evaluated: only root may set system.* attributes.
 */
export class AccessControl extends Xlator {
  private readonly denied = new Map<ErrnoCode, number>();

  override dump(): Record<string, unknown> {
    return { denied: Object.fromEntries(this.denied) };
  }

  private deny(code: ErrnoCode, frame: Frame, why: string): never {
    this.denied.set(code, (this.denied.get(code) ?? 0) + 1);
    throw new FopError(code, `uid ${frame.caller.uid}: ${why}`);
  }

  // --- what the checks look at ------------------------------------------------------------

  private attrs(frame: Frame, loc: Loc): Promise<Iatt> {
    return this.children[0].stat(frame, loc);
  }

  private attrsOfInode(frame: Frame, inode: Inode): Promise<Iatt> {
    return this.children[0].stat(frame, { inode, gfid: inode.gfid });
  }

  /** The entry `name` in `parent`, or undefined if there is none. */
  private async entry(frame: Frame, parent: Inode, name: Name): Promise<Iatt | undefined> {
    try {
      return await this.children[0].lookup(frame, { parent, name });
    } catch (e) {
      if (e instanceof FopError && e.code === 'ENOENT') return undefined;
      throw e;
    }
  }

  private need(frame: Frame, a: Iatt, mask: number, what: string): void {
    if (!permits(a, frame.caller, mask)) this.deny('EACCES', frame, `no ${bits(mask)} permission on ${what}`);
  }

  /** The parent of an entry fop, which the caller must be able to search. */
  private async searchParent(frame: Frame, loc: Loc): Promise<Iatt> {
    const a = await this.attrsOfInode(frame, loc.parent!);
    if (!isDir(a.mode)) throw new FopError('ENOTDIR', `${locName(loc)}: the parent is not a directory`);
    this.need(frame, a, X, `the directory of ${locName(loc)}`);
    return a;
  }

  /** May the caller create `loc`? EEXIST before EACCES, as Linux answers. */
  private async mayCreate(frame: Frame, loc: Loc): Promise<void> {
    const dir = await this.searchParent(frame, loc);
    if (permits(dir, frame.caller, W | X)) return;
    if (await this.entry(frame, loc.parent!, loc.name!)) throw new FopError('EEXIST');
    this.deny('EACCES', frame, `no write permission in the directory of ${locName(loc)}`);
  }

  /** May the caller remove the entry `loc` (`dir`: its parent's attributes)? Returns the victim's attributes. */
  private async mayDelete(frame: Frame, loc: Loc, dir: Iatt, victim: Iatt | undefined): Promise<Iatt> {
    if (!victim) throw new FopError('ENOENT', locName(loc));
    this.need(frame, dir, W | X, `the directory of ${locName(loc)}`);
    // A sticky directory: only the owner of the entry or of the directory removes it.
    if (dir.mode & S_ISVTX && !owns(frame.caller, victim) && !owns(frame.caller, dir)) {
      this.deny('EPERM', frame, `${locName(loc)} is in a sticky directory and neither it nor the directory is the caller's`);
    }
    return victim;
  }

  /** Clears set-id bits before someone without root's privilege changes the file's content. */
  private async killPrivs(frame: Frame, a: Iatt, target: { fd: Fd } | { loc: Loc }): Promise<void> {
    const kill = privsToKill(a);
    if (!kill) return;
    const attr = { mode: a.mode & 0o7777 & ~kill };
    if ('fd' in target) await this.children[0].fsetattr(frame, target.fd, attr);
    else await this.children[0].setattr(frame, target.loc, attr);
  }

  // --- entries ----------------------------------------------------------------------

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    if (!isRoot(frame.caller) && loc.parent) await this.searchParent(frame, loc);
    return this.wind('lookup', frame, loc);
  }

  override async mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    if (!isRoot(frame.caller)) {
      const type = mode & S_IFMT;
      if (type === S_IFCHR || type === S_IFBLK) this.deny('EPERM', frame, 'only root makes device nodes');
      await this.mayCreate(frame, loc);
    }
    return this.wind('mknod', frame, loc, mode, rdev);
  }

  override async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    if (!isRoot(frame.caller)) await this.mayCreate(frame, loc);
    return this.wind('mkdir', frame, loc, mode);
  }

  override async symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    if (!isRoot(frame.caller)) await this.mayCreate(frame, loc);
    return this.wind('symlink', frame, target, loc);
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    if (!isRoot(frame.caller)) await this.mayCreate(frame, loc);
    return this.wind('create', frame, loc, mode, fd);
  }

  override async unlink(frame: Frame, loc: Loc): Promise<void> {
    if (!isRoot(frame.caller) && loc.parent) {
      const dir = await this.searchParent(frame, loc);
      await this.mayDelete(frame, loc, dir, await this.entry(frame, loc.parent, loc.name!));
    }
    return this.wind('unlink', frame, loc);
  }

  override async rmdir(frame: Frame, loc: Loc): Promise<void> {
    if (!isRoot(frame.caller) && loc.parent) {
      const dir = await this.searchParent(frame, loc);
      await this.mayDelete(frame, loc, dir, await this.entry(frame, loc.parent, loc.name!));
    }
    return this.wind('rmdir', frame, loc);
  }

  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    if (!isRoot(frame.caller) && from.parent && to.parent) {
      const fromDir = await this.searchParent(frame, from);
      const toDir = await this.searchParent(frame, to);
      const src = await this.entry(frame, from.parent, from.name!);
      if (!src) throw new FopError('ENOENT', locName(from));
      const dst = await this.entry(frame, to.parent, to.name!);
      // What renameat2 answers before it looks at permissions.
      if (flags & RENAME_NOREPLACE && dst) throw new FopError('EEXIST', locName(to));
      if (flags & RENAME_EXCHANGE && !dst) throw new FopError('ENOENT', locName(to));
      await this.mayDelete(frame, from, fromDir, src);
      if (dst) await this.mayDelete(frame, to, toDir, dst);
      else this.need(frame, toDir, W | X, `the directory of ${locName(to)}`);
      // A directory that changes parent gets a new '..': it is written to.
      if (from.parent.gfid !== to.parent.gfid) {
        if (isDir(src.mode)) this.need(frame, src, W, `${locName(from)} (a directory moving to another parent)`);
        if (flags & RENAME_EXCHANGE && dst && isDir(dst.mode)) this.need(frame, dst, W, `${locName(to)} (a directory moving to another parent)`);
      }
    }
    return this.wind('rename', frame, from, to, flags);
  }

  override async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    if (!isRoot(frame.caller) && to.parent) {
      const dir = await this.searchParent(frame, to);
      if (await this.entry(frame, to.parent, to.name!)) throw new FopError('EEXIST', locName(to));
      const src = await this.attrs(frame, from);
      // protected_hardlinks (Debian's default): a file not the caller's must be a plain file it may read and write.
      const safe = isReg(src.mode) && !(src.mode & S_ISUID) && (src.mode & (S_ISGID | S_IXGRP)) !== (S_ISGID | S_IXGRP) && permits(src, frame.caller, R | W);
      if (!safe && !owns(frame.caller, src)) this.deny('EPERM', frame, `may not hard-link ${locName(from)}, which is not the caller's`);
      this.need(frame, dir, W | X, `the directory of ${locName(to)}`);
    }
    return this.wind('link', frame, from, to);
  }

  // --- opening ------------------------------------------------------------------------

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    if (!isRoot(frame.caller)) {
      const a = await this.attrs(frame, loc);
      const mask = openMask(fd.flags);
      if (isDir(a.mode) && mask & W) throw new FopError('EISDIR');
      this.need(frame, a, mask, locName(loc));
      if (fd.flags & O_NOATIME && !owns(frame.caller, a)) this.deny('EPERM', frame, `O_NOATIME on ${locName(loc)}, which is not the caller's`);
    }
    return this.wind('open', frame, loc, fd);
  }

  override async opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    if (!isRoot(frame.caller)) this.need(frame, await this.attrs(frame, loc), R, locName(loc));
    return this.wind('opendir', frame, loc, fd);
  }

  /** Listing needs read permission (at opendir); the entries' attributes need search permission too, as stat(2) would. */
  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    const entries = await this.wind('readdirp', frame, fd, size, offset);
    if (isRoot(frame.caller) || permits(await this.children[0].fstat(frame, fd), frame.caller, X)) return entries;
    return entries.map(({ iatt: _hidden, ...e }) => e);
  }

  override async access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    const m = mask & (R | W | X);
    if (m) this.need(frame, await this.attrs(frame, loc), m, locName(loc));
    return this.wind('access', frame, loc, mask);
  }

  // --- content ----------------------------------------------------------------------

  override async write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    if (!isRoot(frame.caller)) await this.killPrivs(frame, await this.children[0].fstat(frame, fd), { fd });
    return this.wind('write', frame, fd, data, offset);
  }

  override async ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    if (!isRoot(frame.caller)) await this.killPrivs(frame, await this.children[0].fstat(frame, fd), { fd });
    return this.wind('ftruncate', frame, fd, size);
  }

  override async fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    if (!isRoot(frame.caller)) await this.killPrivs(frame, await this.children[0].fstat(frame, fd), { fd });
    return this.wind('fallocate', frame, fd, mode, offset, length);
  }

  override async truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    if (!isRoot(frame.caller)) {
      const a = await this.attrs(frame, loc);
      if (isDir(a.mode)) throw new FopError('EISDIR');
      this.need(frame, a, W, locName(loc));
      await this.killPrivs(frame, a, { loc });
    }
    return this.wind('truncate', frame, loc, size);
  }

  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    // fcntl: a read lock needs an fd open for reading, a write lock one open for writing.
    if (kind === 'posix' && cmd !== 'get' && lock.type !== 'unlock') {
      const acc = fd.flags & O_ACCMODE;
      const ok = lock.type === 'read' ? acc !== O_WRONLY : acc !== O_RDONLY;
      if (!ok) throw new FopError('EBADF', `a ${lock.type} lock on an fd not open for ${lock.type === 'read' ? 'reading' : 'writing'}`);
    }
    return this.wind('lk', frame, fd, cmd, lock, kind);
  }

  // --- attributes -------------------------------------------------------------------

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    const allowed = isRoot(frame.caller) ? attr : this.maySetattr(frame, await this.attrs(frame, loc), attr, locName(loc));
    return this.wind('setattr', frame, loc, allowed);
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    const allowed = isRoot(frame.caller) ? attr : this.maySetattr(frame, await this.children[0].fstat(frame, fd), attr, `<gfid:${fd.inode.gfid}>`);
    return this.wind('fsetattr', frame, fd, allowed);
  }

  /** Linux's setattr_prepare for someone who is not root: the change as it may go through. */
  private maySetattr(frame: Frame, a: Iatt, attr: SetAttr, what: string): SetAttr {
    const c = frame.caller;
    if (attr.uid !== undefined && !(owns(c, a) && attr.uid === a.uid)) this.deny('EPERM', frame, `only root gives ${what} to another owner`);
    if (attr.gid !== undefined && !(owns(c, a) && (inGroup(c, attr.gid) || attr.gid === a.gid))) {
      this.deny('EPERM', frame, `may not give ${what} to group ${attr.gid}`);
    }
    let mode = attr.mode;
    if (mode !== undefined) {
      if (!owns(c, a)) this.deny('EPERM', frame, `only the owner changes the mode of ${what}`);
      // Not in the file's group: the setgid bit does not stick (silently, as chmod(2) does).
      if (!inGroup(c, attr.gid ?? a.gid)) mode &= ~S_ISGID;
    }
    const times = attr.atime !== undefined || attr.mtime !== undefined;
    if (times && !owns(c, a)) {
      // Setting both to now is touching: write permission will do. Anything else is the owner's.
      if (attr.atime === 'now' && attr.mtime === 'now') this.need(frame, a, W, `${what} (to touch it)`);
      else this.deny('EPERM', frame, `only the owner sets the times of ${what}`);
    }
    return mode === attr.mode ? attr : { ...attr, mode };
  }

  // --- extended attributes ------------------------------------------------------------

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    if (!isRoot(frame.caller)) await this.mayXattr(frame, loc, name, 'read');
    return this.wind('getxattr', frame, loc, name);
  }

  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    const names = await this.wind('listxattr', frame, loc);
    // trusted.* exists only for root.
    return isRoot(frame.caller) ? names : names.filter((n) => namespaceOf(n) !== 'trusted');
  }

  override async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    if (!isRoot(frame.caller)) await this.mayXattr(frame, loc, name, 'write');
    return this.wind('setxattr', frame, loc, name, value, flags);
  }

  override async removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    if (!isRoot(frame.caller)) await this.mayXattr(frame, loc, name, 'write');
    return this.wind('removexattr', frame, loc, name);
  }

  /** Linux's xattr_permission, for someone who is not root. */
  private async mayXattr(frame: Frame, loc: Loc, name: Name, how: 'read' | 'write'): Promise<void> {
    switch (namespaceOf(name)) {
      case 'trusted':
        if (how === 'read') throw new FopError('ENODATA');
        return this.deny('EPERM', frame, `${name} is root's`);
      case 'security':
      case 'system':
        // Reading is anyone's; ACLs and labels are not enforced here, so only root sets them.
        if (how === 'write') this.deny(namespaceOf(name) === 'system' ? 'EOPNOTSUPP' : 'EPERM', frame, `only root sets ${name} on this brick`);
        return;
      case 'other':
        throw new FopError('EOPNOTSUPP', `no xattr namespace ${JSON.stringify(name)}`);
      case 'user': {
        const a = await this.attrs(frame, loc);
        if (!isReg(a.mode) && !isDir(a.mode)) throw new FopError(how === 'read' ? 'ENODATA' : 'EPERM', `user xattrs are for files and directories (${name})`);
        if (how === 'write' && isDir(a.mode) && a.mode & S_ISVTX && !owns(frame.caller, a)) this.deny('EPERM', frame, `${locName(loc)} is sticky and not the caller's`);
        this.need(frame, a, how === 'read' ? R : W, `${locName(loc)} (${name})`);
      }
    }
  }
}

export default defineTranslator({
  type: 'features/access-control',
  description: "checks every fop against the caller's uid, gid and groups as a local disk would (put it right above storage/posix)",
  options: {},
  subvolumes: { min: 1, max: 1 },
  create: (init) => new AccessControl(init),
});
