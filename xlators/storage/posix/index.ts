import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { ErrnoCode, FopError, check } from '../../../src/core/errors';
import { XlEvent } from '../../../src/core/events';
import type { Fd } from '../../../src/core/fd';
import type { Loc } from '../../../src/core/fops';
import type { Frame } from '../../../src/core/frame';
import { OptionValues, opt } from '../../../src/core/options';
import { defineTranslator } from '../../../src/core/registry';
import { Caller, Dirent, Gfid, Iatt, ROOT_GFID, SetAttr, Statfs, Timespec, isDir } from '../../../src/core/types';
import { Xlator, XlatorInit } from '../../../src/core/xlator';
import { checkAccess, iattOf, statfsOf } from './attrs';
import { GFID_XATTR, HandleStore, META_NAME, readGfid, writeGfid } from './handles';
import { UTIME_NOW, UTIME_OMIT, XATTR_REPLACE, sys } from './sys';

const options = {
  directory: opt.path({ description: 'the backing directory this volume serves', reconfigurable: false }),
  'create-directory': opt.bool({
    description: 'create the backing directory if it does not exist (otherwise that is an error)',
    default: 'off',
  }),
};

type Options = OptionValues<typeof options>;

const { O_CREAT, O_EXCL, O_NOCTTY, O_NOFOLLOW, O_TRUNC, O_DIRECT, O_RDWR, O_WRONLY, O_NONBLOCK } = fs.constants;
const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } = fs.constants;
// Not in fs.constants.
const O_ACCMODE = 0o3;
const S_ISGID = 0o2000;
/** Open flags that were the caller's business (creation) or that posix cannot honour. */
const STRIPPED_OPEN_FLAGS = O_CREAT | O_EXCL | O_NOCTTY | O_DIRECT;
const RESERVED_XATTRS = (name: string) => name === GFID_XATTR || name.startsWith('trusted.xlstack.');
const NAME_MAX = 255;

interface FileCtx {
  readonly kind: 'file';
  readonly osfd: number;
}

interface DirCtx {
  readonly kind: 'dir';
  /** The directory itself, whatever happens to its name (renamed, removed) while open. */
  readonly osfd: number;
  readonly atRoot: boolean;
  dir?: fs.Dir;
  /** Cookie of the last entry handed out. */
  pos: number;
}

/** A path that reaches an open directory through its fd (the kernel follows it to the inode). */
const byFd = (osfd: number) => `/proc/self/fd/${osfd}`;

const lstat = (p: string) => fs.lstatSync(p, { bigint: true });
/** Writes up to this size go straight to the page cache: cheaper than a thread-pool hand-off. */
const SYNC_WRITE_MAX = 64 * 1024;

/**
 * storage/posix: serves a backing directory. Every object gets a GFID, kept in the
 * `trusted.gfid` xattr and indexed under `.xlstack/handles`, so it is found by GFID on any
 * graph and after restarts. Requests name objects by GFID or by (parent GFID, name):
 * never by a path the client chose, so no request reaches outside the directory.
 * Metadata calls are synchronous (a few µs, and atomic with respect to every other fop
 * of this process); data calls (read, write, fsync, readdir) go to the thread pool.
 */
export class Posix extends Xlator<Options> {
  private store?: HandleStore;

  constructor(init: XlatorInit<Options>) {
    super(init);
  }

  private get handles(): HandleStore {
    if (!this.store) throw new FopError('ENOTCONN', `${this.name} is not started`);
    return this.store;
  }

  override async init(): Promise<void> {
    const dir = this.options.directory;
    if (!dir) throw new Error(`option 'directory' is required`);
    if (!fs.existsSync(dir)) {
      if (!this.options['create-directory']) throw new Error(`directory ${dir} does not exist (set 'option create-directory on' to create it)`);
      fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
      this.log.info(`created ${dir}`);
    }
    if (!fs.statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
    try {
      this.store = HandleStore.acquire(dir);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'EPERM' || code === 'ENOTSUP' || code === 'EOPNOTSUPP') {
        throw new Error(`${dir} does not allow trusted.* extended attributes (${code}); storage/posix keeps GFIDs there: run as root on a filesystem with xattrs`);
      }
      throw e;
    }
  }

  override async fini(): Promise<void> {
    this.store?.release();
    this.store = undefined;
  }

  override notify(event: XlEvent, from?: Xlator): void {
    if (event === XlEvent.PARENT_UP) this.up(this.store ? XlEvent.CHILD_UP : XlEvent.CHILD_DOWN);
    else super.notify(event, from);
  }

  override async release(fd: Fd): Promise<void> {
    const ctx = fd.ctx.get(this) as FileCtx | DirCtx | undefined;
    fd.ctx.delete(this);
    if (ctx?.kind === 'file') {
      fs.closeSync(ctx.osfd);
      this.store?.closed(fd.inode.gfid);
    } else if (ctx?.kind === 'dir') {
      await ctx.dir?.close().catch(() => undefined);
      fs.closeSync(ctx.osfd);
    }
  }

  override dump(): Record<string, unknown> {
    return { directory: this.options.directory };
  }

  // --- naming -----------------------------------------------------------------

  /** The backing path of `name` in directory `parent`, for finding (ENOENT) or creating (EPERM) it. */
  private entryPath(loc: Loc, creating = false): string {
    const parent = loc.parent;
    const name = loc.name;
    check(parent && name !== undefined, 'EINVAL', `${loc.path}: no parent and name`);
    check(name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0'), 'EINVAL', `bad name ${JSON.stringify(name)}`);
    check(Buffer.byteLength(name) <= NAME_MAX, 'ENAMETOOLONG');
    if (parent.gfid === ROOT_GFID && name === META_NAME) {
      throw new FopError(creating ? 'EPERM' : 'ENOENT', `${META_NAME} is reserved`);
    }
    return path.join(this.handles.dirPath(parent.gfid), name);
  }

  private gfidOf(loc: Loc): Gfid {
    const gfid = loc.inode?.gfid ?? loc.gfid;
    check(gfid, 'EINVAL', `${loc.path}: no GFID`);
    return gfid;
  }

  /** The backing path of an existing object given by GFID. */
  private objectPath(loc: Loc): string {
    const gfid = this.gfidOf(loc);
    const type = loc.inode?.type;
    if (type) return this.handles.pathOf(gfid, type === S_IFDIR);
    if (gfid === ROOT_GFID || this.handles.dirEntry(gfid)) return this.handles.dirPath(gfid);
    // Type unknown: a handle that is a symlink without a GFID of its own is a directory's.
    const h = this.handles.filePath(gfid);
    let st: fs.Stats;
    try {
      st = fs.lstatSync(h);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw new FopError('ESTALE', `no object with GFID ${gfid}`);
      throw e;
    }
    return st.isSymbolicLink() && readGfid(h) === undefined ? this.handles.dirPath(gfid) : h;
  }

  private iatt(st: fs.BigIntStats, gfid: Gfid): Iatt {
    const dir = (Number(st.mode) & S_IFMT) === S_IFDIR;
    return iattOf(st, gfid, dir ? (gfid === ROOT_GFID ? 1 : 0) : 1);
  }

  private statObject(loc: Loc): Iatt {
    const p = this.objectPath(loc);
    const gfid = this.gfidOf(loc);
    const st = lstat(p);
    const found = readGfid(p);
    if (found !== gfid) throw new FopError('ESTALE', `${loc.path}: GFID ${gfid} is gone`);
    return this.iatt(st, gfid);
  }

  // --- GFID assignment and handle healing ----------------------------------------

  /**
   * The GFID of an entry found by name, assigning one and healing its handle if needed.
   * Returns the entry's attributes as they are afterwards (a new handle is a new link).
   */
  private identify(p: string, st: fs.BigIntStats, parent: Gfid, name: string): { gfid: Gfid; st: fs.BigIntStats } {
    const gfid = readGfid(p) ?? this.assignGfid(p);
    if ((Number(st.mode) & S_IFMT) === S_IFDIR) return { gfid: this.checkDirHandle(p, st, gfid, parent, name), st };
    const checked = this.checkFileHandle(p, st, gfid);
    return { gfid: checked.gfid, st: checked.linked ? lstat(p) : st };
  }

  /** Gives an object without a (valid) GFID a fresh one; another lookup may have won the race. */
  private assignGfid(p: string): Gfid {
    try {
      writeGfid(p, uuidv4());
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    }
    const gfid = readGfid(p);
    if (gfid !== undefined) return gfid;
    // An xattr that is not a GFID (wrong length): replace it.
    const fresh = uuidv4();
    this.log.warn(`${p} has a malformed ${GFID_XATTR}; giving it ${fresh}`);
    writeGfid(p, fresh, XATTR_REPLACE);
    return fresh;
  }

  /** Another object already owns this GFID: this one is a copy that kept the xattr. */
  private renumber(p: string, gfid: Gfid): Gfid {
    const fresh = uuidv4();
    this.log.warn(`${p} carries GFID ${gfid} of another object; giving it ${fresh}`);
    writeGfid(p, fresh, XATTR_REPLACE);
    return fresh;
  }

  private checkFileHandle(p: string, st: fs.BigIntStats, gfid: Gfid): { gfid: Gfid; linked: boolean } {
    if (this.handles.verifiedIno(gfid) === st.ino) return { gfid, linked: false };
    const hst = fs.lstatSync(this.handles.handlePath(gfid), { bigint: true, throwIfNoEntry: false });
    if (hst && hst.ino === st.ino && hst.dev === st.dev) {
      this.handles.markVerified(gfid, st.ino);
      return { gfid, linked: false };
    }
    if (hst) gfid = this.renumber(p, gfid);
    fs.linkSync(p, this.handles.handlePath(gfid));
    this.handles.markVerified(gfid, st.ino);
    return { gfid, linked: true };
  }

  private checkDirHandle(p: string, st: fs.BigIntStats, gfid: Gfid, parent: Gfid, name: string): Gfid {
    // Only the backing root is the root (a directory may carry its GFID from elsewhere).
    if (gfid === ROOT_GFID) gfid = this.renumber(p, gfid);
    const known = this.handles.dirEntry(gfid);
    if (known && known.parent === parent && known.name === name) return gfid;
    let other: fs.BigIntStats | undefined;
    try {
      other = lstat(this.handles.dirPath(gfid));
    } catch {
      other = undefined; // no handle, or it points nowhere: this directory takes it
    }
    if (other && other.ino !== st.ino && other.isDirectory()) gfid = this.renumber(p, gfid);
    this.handles.setDirHandle(gfid, parent, name);
    return gfid;
  }

  // --- creation ---------------------------------------------------------------

  /**
   * Gives a new object (made aside, under .xlstack) the owner, group and mode the kernel
   * would have given it in its directory: the caller's ids, a setgid directory's group
   * (and, for a directory, its setgid bit), and no setgid bit on a file whose group the
   * caller is not in.
   */
  private settle(p: string, parentPath: string, caller: Caller, requested: number): void {
    const pst = fs.lstatSync(parentPath);
    const st = fs.lstatSync(p);
    const inherits = (pst.mode & S_ISGID) !== 0;
    const gid = inherits ? pst.gid : caller.gid;
    let mode = requested & 0o7777;
    if (st.isDirectory() && inherits) mode |= S_ISGID;
    const inGroup = caller.uid === 0 || gid === caller.gid || caller.groups.includes(gid);
    if (!st.isDirectory() && !inGroup) mode &= ~S_ISGID;
    const chown = st.uid !== caller.uid || st.gid !== gid;
    if (chown) fs.lchownSync(p, caller.uid, gid);
    // chown clears set-id bits: set the mode after it.
    if (!st.isSymbolicLink() && (chown || (st.mode & 0o7777) !== mode)) fs.chmodSync(p, mode);
  }

  /**
   * Creates a non-directory at its handle path with its GFID, then gives it its name with
   * link(2), which fails with EEXIST if the name exists: the entry appears atomically, GFID
   * and all. `make` creates the object at the handle path; `undo` frees what it opened.
   */
  private createAtHandle(frame: Frame, loc: Loc, mode: number, make: (h: string) => void, undo = () => {}): string {
    const entry = this.entryPath(loc, true);
    const gfid = this.gfidOf(loc);
    const h = this.handles.handlePath(gfid);
    make(h);
    try {
      writeGfid(h, gfid);
      this.settle(h, path.dirname(entry), frame.caller, mode);
      fs.linkSync(h, entry);
    } catch (e) {
      undo();
      fs.rmSync(h, { force: true });
      throw e;
    }
    this.handles.markVerified(gfid, fs.lstatSync(h, { bigint: true }).ino);
    return h;
  }

  // --- fops: lookup and attributes -------------------------------------------------

  override async lookup(_frame: Frame, loc: Loc): Promise<Iatt> {
    if (!loc.parent) return this.statObject(loc);
    const p = this.entryPath(loc);
    // Misses are common (every create starts with one): answer them without an exception.
    const found = fs.lstatSync(p, { bigint: true, throwIfNoEntry: false });
    if (!found) throw new FopError('ENOENT');
    const { gfid, st } = this.identify(p, found, loc.parent.gfid, loc.name!);
    return this.iatt(st, gfid);
  }

  override async stat(_frame: Frame, loc: Loc): Promise<Iatt> {
    return this.statObject(loc);
  }

  override async fstat(_frame: Frame, fd: Fd): Promise<Iatt> {
    return this.iatt(fs.fstatSync(this.ctx(fd).osfd, { bigint: true }), fd.inode.gfid);
  }

  override async access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    checkAccess(this.statObject(loc), frame.caller, mask);
  }

  override async readlink(_frame: Frame, loc: Loc): Promise<string> {
    return fs.readlinkSync(this.objectPath(loc));
  }

  override async setattr(_frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    const p = this.objectPath(loc);
    this.applyAttr(p, attr);
    return this.iatt(lstat(p), this.gfidOf(loc));
  }

  override async fsetattr(_frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    const p = this.handles.pathOf(fd.inode.gfid, fd.isDir);
    this.applyAttr(p, attr);
    return this.fstat(_frame, fd);
  }

  private applyAttr(p: string, attr: SetAttr): void {
    if (attr.mode !== undefined) {
      if (fs.lstatSync(p).isSymbolicLink()) throw new FopError('EOPNOTSUPP', 'symlinks have no mode');
      fs.chmodSync(p, attr.mode & 0o7777);
    }
    if (attr.uid !== undefined || attr.gid !== undefined) fs.lchownSync(p, attr.uid ?? -1, attr.gid ?? -1);
    if (attr.atime !== undefined || attr.mtime !== undefined) {
      const [as, an] = timeArgs(attr.atime);
      const [ms, mn] = timeArgs(attr.mtime);
      sys.utimens(p, as, an, ms, mn);
    }
  }

  override async truncate(_frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    const p = this.regularFile(loc, 'EINVAL');
    // Through an fd opened without following symlinks: truncate(2) would follow one.
    const fd = fs.openSync(p, O_WRONLY | O_NOFOLLOW | O_NONBLOCK);
    try {
      await ftruncate(fd, size);
      return this.iatt(fs.fstatSync(fd, { bigint: true }), this.gfidOf(loc));
    } finally {
      fs.closeSync(fd);
    }
  }

  override async ftruncate(_frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    const osfd = this.fileCtx(fd).osfd;
    await ftruncate(osfd, size);
    return this.iatt(fs.fstatSync(osfd, { bigint: true }), fd.inode.gfid);
  }

  override async statfs(_frame: Frame, _loc: Loc): Promise<Statfs> {
    return statfsOf(fs.statfsSync(this.handles.root));
  }

  // --- fops: namespace ------------------------------------------------------------

  override async mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    check((mode & S_IFMT) !== S_IFDIR, 'EPERM', 'mknod cannot make directories');
    const h = this.createAtHandle(frame, loc, mode, (p) => sys.mknod(p, (mode & S_IFMT || S_IFREG) | (mode & 0o777), rdev));
    return this.iatt(lstat(h), this.gfidOf(loc));
  }

  override async symlink(frame: Frame, target: string, loc: Loc): Promise<Iatt> {
    check(target !== '' && !target.includes('\0'), 'ENOENT', 'empty symlink target');
    const h = this.createAtHandle(frame, loc, 0o777, (p) => fs.symlinkSync(target, p));
    return this.iatt(lstat(h), this.gfidOf(loc));
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    let osfd = -1;
    const flags = ((fd.flags & ~STRIPPED_OPEN_FLAGS & ~O_TRUNC) | O_CREAT | O_EXCL | O_NOFOLLOW) & ~O_ACCMODE;
    const access = (fd.flags & O_ACCMODE) === O_WRONLY ? O_WRONLY : O_RDWR;
    const make = (p: string) => (osfd = fs.openSync(p, flags | access, mode & 0o777));
    const close = () => fs.closeSync(osfd);
    this.createAtHandle(frame, loc, mode, make, close);
    try {
      const st = fs.fstatSync(osfd, { bigint: true });
      this.attach(fd, osfd);
      return this.iatt(st, fd.inode.gfid);
    } catch (e) {
      close();
      throw e;
    }
  }

  override async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    const entry = this.entryPath(loc, true);
    const gfid = this.gfidOf(loc);
    check(!fs.lstatSync(this.handles.handlePath(gfid), { throwIfNoEntry: false }), 'EEXIST', `GFID ${gfid} is taken`);
    // Made aside with its GFID, then moved in without replacing anything.
    const tmp = path.join(this.handles.tmp, gfid);
    fs.mkdirSync(tmp, mode & 0o777);
    try {
      writeGfid(tmp, gfid);
      this.settle(tmp, path.dirname(entry), frame.caller, mode);
      sys.renameNoReplace(tmp, entry);
    } catch (e) {
      fs.rmSync(tmp, { recursive: true, force: true });
      throw e;
    }
    this.handles.setDirHandle(gfid, loc.parent!.gfid, loc.name!);
    return this.iatt(lstat(entry), gfid);
  }

  override async unlink(_frame: Frame, loc: Loc): Promise<void> {
    const entry = this.entryPath(loc);
    const gfid = readGfid(entry);
    fs.unlinkSync(entry);
    if (gfid) this.handles.dropIfNameless(gfid);
  }

  override async rmdir(_frame: Frame, loc: Loc): Promise<void> {
    const entry = this.entryPath(loc);
    const gfid = readGfid(entry);
    fs.rmdirSync(entry);
    if (gfid) this.handles.removeHandle(gfid);
  }

  override async rename(_frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const src = this.entryPath(from);
    const dst = this.entryPath(to, true);
    const { gfid, st: sst } = this.identify(src, lstat(src), from.parent!.gfid, from.name!);
    const dst0 = fs.lstatSync(dst, { bigint: true, throwIfNoEntry: false });
    const replaced = dst0 && dst0.ino !== sst.ino ? { gfid: readGfid(dst), dir: dst0.isDirectory() } : undefined;
    fs.renameSync(src, dst);
    if (sst.isDirectory()) this.handles.setDirHandle(gfid, to.parent!.gfid, to.name!);
    if (replaced?.gfid) {
      if (replaced.dir) this.handles.removeHandle(replaced.gfid);
      else this.handles.dropIfNameless(replaced.gfid);
    }
    return this.iatt(lstat(dst), gfid);
  }

  override async link(_frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const gfid = this.gfidOf(from);
    // Not filePath: like link(2) on a file whose names are all gone, that fails with ENOENT.
    const src = this.handles.handlePath(gfid);
    const st = (() => {
      try {
        return lstat(src);
      } catch {
        throw new FopError('ENOENT', `${from.path}: no object with GFID ${gfid}`);
      }
    })();
    check(!st.isSymbolicLink() || readGfid(src) !== undefined, 'EPERM', 'cannot link a directory');
    check(!isDir(Number(st.mode)) && from.inode?.type !== S_IFDIR, 'EPERM', 'cannot link a directory');
    const dst = this.entryPath(to, true);
    fs.linkSync(src, dst);
    return this.iatt(lstat(dst), gfid);
  }

  // --- fops: files ----------------------------------------------------------------

  override async open(_frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const p = this.regularFile(loc, 'ENXIO');
    this.attach(fd, fs.openSync(p, (fd.flags & ~STRIPPED_OPEN_FLAGS) | O_NOFOLLOW));
  }

  /**
   * The path of a regular file about to be opened. The client's kernel opens fifos, sockets
   * and devices itself; opening one here could block or act on the brick's own devices.
   */
  private regularFile(loc: Loc, otherwise: ErrnoCode): string {
    const p = this.objectPath(loc);
    const st = fs.lstatSync(p);
    if (st.isDirectory()) throw new FopError('EISDIR');
    if ((st.mode & S_IFMT) !== S_IFREG) throw new FopError(st.isSymbolicLink() ? 'ELOOP' : otherwise, `${loc.path} is not a regular file`);
    return p;
  }

  private attach(fd: Fd, osfd: number): void {
    fd.ctx.set(this, { kind: 'file', osfd } satisfies FileCtx);
    this.handles.opened(fd.inode.gfid);
  }

  override async read(_frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    const osfd = this.fileCtx(fd).osfd;
    const buf = Buffer.allocUnsafe(size);
    let got = 0;
    while (got < size) {
      const n = await readAt(osfd, buf, got, size - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return got === size ? buf : buf.subarray(0, got);
  }

  override async write(_frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    const osfd = this.fileCtx(fd).osfd;
    if (data.length <= SYNC_WRITE_MAX) return fs.writeSync(osfd, data, 0, data.length, offset);
    let done = 0;
    while (done < data.length) done += await writeAt(osfd, data, done, data.length - done, offset + done);
    return done;
  }

  override async flush(_frame: Frame, fd: Fd): Promise<void> {
    this.ctx(fd);
  }

  override async fsync(_frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    const osfd = this.fileCtx(fd).osfd;
    await new Promise<void>((res, rej) => (datasync ? fs.fdatasync : fs.fsync)(osfd, (e) => (e ? rej(e) : res())));
  }

  // --- fops: directories -------------------------------------------------------------

  override async opendir(_frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const gfid = this.gfidOf(loc);
    const osfd = fs.openSync(this.handles.dirPath(gfid), fs.constants.O_RDONLY | fs.constants.O_DIRECTORY | O_NOFOLLOW);
    fd.ctx.set(this, { kind: 'dir', osfd, atRoot: gfid === ROOT_GFID, pos: 0 } satisfies DirCtx);
  }

  override async readdir(_frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]> {
    const ctx = this.ctx(fd);
    if (ctx.kind !== 'dir') throw new FopError('ENOTDIR');
    if (!ctx.dir || offset !== ctx.pos) await this.rewind(ctx, offset);
    const out: Dirent[] = [];
    // Roughly what fits in `size` bytes of struct dirent.
    for (let budget = size; budget > 0; ) {
      const e = await ctx.dir!.read();
      if (!e) break;
      if (ctx.atRoot && e.name === META_NAME) continue;
      out.push(direntOf(byFd(ctx.osfd), e, ++ctx.pos));
      budget -= 24 + Buffer.byteLength(e.name);
    }
    return out;
  }

  /** Reopens the listing and skips `offset` entries: cookies are positions. */
  private async rewind(ctx: DirCtx, offset: number): Promise<void> {
    await ctx.dir?.close().catch(() => undefined);
    ctx.dir = await fs.promises.opendir(byFd(ctx.osfd), { bufferSize: 128 });
    ctx.pos = 0;
    while (ctx.pos < offset) {
      const e = await ctx.dir.read();
      if (!e) break;
      if (!(ctx.atRoot && e.name === META_NAME)) ctx.pos++;
    }
  }

  override async fsyncdir(_frame: Frame, fd: Fd, _datasync: boolean): Promise<void> {
    const ctx = this.ctx(fd);
    if (ctx.kind !== 'dir') throw new FopError('ENOTDIR');
    await new Promise<void>((res, rej) => fs.fsync(ctx.osfd, (e) => (e ? rej(e) : res())));
  }

  // --- fops: extended attributes ----------------------------------------------------------

  override async getxattr(_frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    if (RESERVED_XATTRS(name)) throw new FopError('ENODATA');
    return sys.getxattr(this.objectPath(loc), name);
  }

  override async setxattr(_frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    if (RESERVED_XATTRS(name)) throw new FopError('EPERM', `${name} is kept by xlstack`);
    sys.setxattr(this.objectPath(loc), name, value, flags);
  }

  override async listxattr(_frame: Frame, loc: Loc): Promise<string[]> {
    return sys.listxattr(this.objectPath(loc)).filter((n) => !RESERVED_XATTRS(n));
  }

  override async removexattr(_frame: Frame, loc: Loc, name: string): Promise<void> {
    if (RESERVED_XATTRS(name)) throw new FopError('EPERM', `${name} is kept by xlstack`);
    sys.removexattr(this.objectPath(loc), name);
  }

  // --- fd context ------------------------------------------------------------------

  private ctx(fd: Fd): FileCtx | DirCtx {
    const ctx = fd.ctx.get(this) as FileCtx | DirCtx | undefined;
    if (!ctx) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.name}`);
    return ctx;
  }

  private fileCtx(fd: Fd): FileCtx {
    const ctx = this.ctx(fd);
    if (ctx.kind !== 'file') throw new FopError('EISDIR');
    return ctx;
  }
}

function timeArgs(t: Timespec | 'now' | undefined): [number, number] {
  if (t === undefined) return [0, UTIME_OMIT];
  if (t === 'now') return [0, UTIME_NOW];
  return [t.sec, t.nsec];
}

const DIRENT_TYPES: [keyof fs.Dirent, number][] = [
  ['isFile', S_IFREG],
  ['isDirectory', S_IFDIR],
  ['isSymbolicLink', S_IFLNK],
  ['isFIFO', fs.constants.S_IFIFO],
  ['isSocket', fs.constants.S_IFSOCK],
  ['isCharacterDevice', fs.constants.S_IFCHR],
  ['isBlockDevice', fs.constants.S_IFBLK],
];

function direntOf(dir: string, e: fs.Dirent, offset: number): Dirent {
  const type = DIRENT_TYPES.find(([m]) => (e[m] as () => boolean).call(e))?.[1] ?? 0;
  let ino = 0;
  try {
    ino = Number(lstat(path.join(dir, e.name)).ino);
  } catch {
    // gone since it was listed: the kernel will find out on lookup
  }
  return { name: e.name, offset, ino, type };
}

const readAt = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((res, rej) => fs.read(fd, buf, off, len, pos, (e, n) => (e ? rej(e) : res(n))));

const writeAt = (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
  new Promise<number>((res, rej) => fs.write(fd, buf, off, len, pos, (e, n) => (e ? rej(e) : res(n))));

const ftruncate = (fd: number, size: number) =>
  new Promise<void>((res, rej) => fs.ftruncate(fd, size, (e) => (e ? rej(e) : res())));

// Node and the addon throw their own errors; fops answer with FopError only.
Xlator.convertErrors(Posix);

export default defineTranslator({
  type: 'storage/posix',
  description: 'serves a backing directory; GFIDs in xattrs, indexed under .xlstack/handles',
  options,
  subvolumes: { min: 0, max: 0 },
  create: (init) => new Posix(init),
});
