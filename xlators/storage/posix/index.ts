import * as fs from 'fs';
import { performance } from 'perf_hooks';
import {
  Dirent,
  DirentPlus,
  ErrnoCode,
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  Fd,
  FdContext,
  Flock,
  FopError,
  Frame,
  Gfid,
  INTERNAL_XATTR_PREFIX,
  Iatt,
  LockCmd,
  LockKind,
  Loc,
  Name,
  OptionValues,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_GFID,
  S_IFMT,
  SetAttr,
  Statfs,
  Timespec,
  XattrMap,
  XattrOp,
  XlEvent,
  Xlator,
  XlatorInit,
  check,
  defineTranslator,
  gfidOfLoc,
  isByteString,
  isDir,
  isLnk,
  nameBytes,
  nameFromBytes,
  opt,
} from '../../../src/core/index';
import { checkAccess, iattOf, statfsOf } from './attrs';
import { GFID_XATTR, readGfid } from './gfid';
import { HandleStore, META_NAME } from './handles';
import { identify } from './heal';
import { NewObject, makeDir, makeObject } from './make';
import { At, SEEK_DATA, SEEK_HOLE, Stat, UTIME_NOW, UTIME_OMIT, sys } from './sys';

const options = {
  directory: opt.path({ description: 'the backing directory this volume serves', reconfigurable: false }),
  'create-directory': opt.bool({
    description: 'create the backing directory if it does not exist (otherwise that is an error)',
    default: 'off',
  }),
};

type Options = OptionValues<typeof options>;

const { O_CREAT, O_EXCL, O_NOFOLLOW, O_TRUNC, O_DIRECT, O_RDWR, O_RDONLY, O_WRONLY, O_NONBLOCK, O_APPEND, O_SYNC, O_DSYNC, O_NOATIME, O_DIRECTORY } = fs.constants;
const { S_IFDIR, S_IFREG, S_IFLNK } = fs.constants;
// Not in fs.constants.
const O_ACCMODE = 0o3;
/**
 * The open flags that reach a backing file: how it is accessed, appending, synchronous
 * writes, no atime. Creation flags were the caller's business; anything else (O_PATH,
 * O_DIRECTORY, O_TMPFILE...) has no place on a regular file opened by GFID.
 */
const PASSED_OPEN_FLAGS = O_ACCMODE | O_APPEND | O_SYNC | O_DSYNC | O_NOATIME;
const RESERVED_XATTRS = (name: string) => name === GFID_XATTR || name.startsWith('trusted.xlstack.');
const NAME_MAX = 255;
/** The longest symlink target the kernel takes (PATH_MAX with its NUL). */
const TARGET_MAX = 4095;
const FALLOC_MODES = FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE | FALLOC_FL_ZERO_RANGE;
const META = nameBytes(META_NAME);
const DOT = nameBytes('.');

interface FileCtx {
  readonly kind: 'file';
  readonly osfd: number;
  /** Opened with O_APPEND: every write goes to the end, whatever offset it carries. */
  readonly append: boolean;
  /** Opened O_SYNC or O_DSYNC (or O_DIRECT): a write waits for the disk. */
  readonly durable: boolean;
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

/** One entry of a listing, as the backing directory has it. */
interface RawEntry {
  readonly name: Buffer;
  readonly type: number;
  readonly offset: number;
}

/** A path that reaches an open directory through its fd (the kernel jumps to the directory itself). */
const byFd = (osfd: number) => `/proc/self/fd/${osfd}`;

/**
 * Writes of up to this size (all the kernel sends) go to the page cache on the loop thread:
 * a thread-pool hand-off (two thread wake-ups) costs more than the copy. Not for files whose
 * writes wait for the disk; nor for a while after one such write was slow (SLOW_WRITE_MS: the
 * page cache is pushing back, dirty pages throttled or the journal full), so the loop never
 * waits long on a write.
 */
const SYNC_WRITE_MAX = 1024 * 1024;
const SLOW_WRITE_MS = 5;
const POOL_AFTER_SLOW_WRITE_MS = 1000;

/** The flags a backing file is opened with for an fd opened with `flags`. */
function backingFlags(flags: number): number {
  let f = (flags & PASSED_OPEN_FLAGS) | O_NOFOLLOW;
  // O_DIRECT is not passed on: Node's buffers are not aligned as it requires. What a caller
  // counts on from it is that the data is on disk when the write returns: O_DSYNC gives that.
  if (flags & O_DIRECT) f |= O_DSYNC;
  return f;
}

/**
 * storage/posix: serves a backing directory. Every object gets a GFID, kept in the
 * `trusted.gfid` xattr and indexed under `.xlstack/handles`, so it is found by GFID on any
 * graph and after restarts. Requests name objects by GFID or by (parent GFID, name), never
 * by a path: every call works relative to an open directory (*at system calls), with names
 * as the exact bytes the client sent, so no request reaches outside the directory, follows
 * a symlink inside it, or runs into PATH_MAX however deep the tree.
 * Metadata calls are synchronous (a few µs, and atomic with respect to every other fop
 * of this process); data calls (read, write, fsync, readdir, fallocate) go to the thread pool.
 */
export class Posix extends Xlator<Options> {
  private store?: HandleStore;
  /** Until when writes go to the thread pool (one on the loop thread was slow). */
  private poolWritesUntil = 0;
  private readonly fds = new FdContext<FileCtx | DirCtx>(this);

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
    const ctx = this.fds.take(fd);
    if (ctx?.kind === 'file') {
      fs.closeSync(ctx.osfd);
      this.store?.closed(fd.inode.gfid);
    } else if (ctx?.kind === 'dir') {
      await ctx.dir?.close().catch(() => undefined);
      fs.closeSync(ctx.osfd);
    }
  }

  override dump(): Record<string, unknown> {
    return { directory: this.options.directory, ...this.store?.dump() };
  }

  // --- naming -----------------------------------------------------------------

  /** Where `name` in directory `parent` is, for finding (ENOENT) or creating (EPERM) it. */
  private entryAt(loc: Loc, creating = false): At {
    const { parent, name } = loc;
    check(parent && name !== undefined, 'EINVAL', `${loc.path}: no parent and name`);
    check(isByteString(name), 'EINVAL', `${JSON.stringify(name)} is not a byte string`);
    check(name !== '' && name !== '.' && name !== '..' && !name.includes('/') && !name.includes('\0'), 'EINVAL', `bad name ${JSON.stringify(name)}`);
    check(name.length <= NAME_MAX, 'ENAMETOOLONG');
    if (parent.gfid === ROOT_GFID && name === META_NAME) {
      throw new FopError(creating ? 'EPERM' : 'ENOENT', `${META_NAME} is reserved`);
    }
    return { dirfd: this.handles.dirs.fd(parent.gfid), name: nameBytes(name) };
  }

  private gfidOf(loc: Loc): Gfid {
    const gfid = gfidOfLoc(loc);
    check(gfid, 'EINVAL', `${loc.path}: no GFID`);
    return gfid;
  }

  /** Where an existing object given by GFID is: a directory's own fd, or a handle. */
  private objectAt(loc: Loc): At {
    const gfid = this.gfidOf(loc);
    return this.isDirectory(gfid, loc.inode?.type) ? { dirfd: this.handles.dirs.fd(gfid), name: null } : this.handles.fileAt(gfid);
  }

  private isDirectory(gfid: Gfid, type: number | undefined): boolean {
    if (type) return type === S_IFDIR || gfid === ROOT_GFID;
    if (this.handles.isKnownDir(gfid)) return true;
    // Type unknown: a handle that is a symlink without a GFID of its own is a directory's.
    const h = this.handles.fileAt(gfid);
    const st = sys.statIfExists(h);
    if (!st) throw new FopError('ESTALE', `no object with GFID ${gfid}`);
    return isLnk(st.mode) && readGfid(h) === undefined;
  }

  private iatt(st: Stat, gfid: Gfid): Iatt {
    return iattOf(st, gfid, isDir(st.mode) ? (gfid === ROOT_GFID ? 1 : 0) : 1);
  }

  private statObject(loc: Loc): Iatt {
    const gfid = this.gfidOf(loc);
    const at = this.objectAt(loc);
    if (at.name !== null) {
      const st = sys.stat(at);
      // A handle whose inode was found to carry this GFID still does (as lookup trusts it).
      if (this.handles.verifiedIno(gfid) !== st.ino && readGfid(at) !== gfid) throw new FopError('ESTALE', `${loc.path}: GFID ${gfid} is gone`);
      return this.iatt(st, gfid);
    }
    // A directory's fd was checked by GFID when opened; dirs.stat finds it again if it was removed.
    return this.iatt(this.handles.dirs.stat(gfid), gfid);
  }

  /**
   * A regular file about to be opened or truncated. The client's kernel opens fifos,
   * sockets and devices itself; opening one here could block or act on the brick's own devices.
   */
  private regularFile(loc: Loc, otherwise: ErrnoCode): At {
    const at = this.objectAt(loc);
    const st = sys.stat(at);
    if (isDir(st.mode)) throw new FopError('EISDIR');
    if ((st.mode & S_IFMT) !== S_IFREG) throw new FopError(isLnk(st.mode) ? 'ELOOP' : otherwise, `${loc.path} is not a regular file`);
    return at;
  }

  // --- fops: lookup and attributes -------------------------------------------------

  override async lookup(_frame: Frame, loc: Loc): Promise<Iatt> {
    if (!loc.parent) return this.statObject(loc);
    const at = this.entryAt(loc);
    // Misses are common (every create starts with one): answer them without an exception.
    const found = sys.statIfExists(at);
    if (!found) return await miss('ENOENT');
    const { gfid, st } = identify(this.handles, this.log, { at, st: found, parent: loc.parent.gfid, name: loc.name! });
    return this.iatt(st, gfid);
  }

  override async stat(_frame: Frame, loc: Loc): Promise<Iatt> {
    return this.statObject(loc);
  }

  override async fstat(_frame: Frame, fd: Fd): Promise<Iatt> {
    return this.iatt(sys.stat({ dirfd: this.ctx(fd).osfd, name: null }), fd.inode.gfid);
  }

  override async access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    checkAccess(this.statObject(loc), frame.caller, mask);
  }

  override async readlink(_frame: Frame, loc: Loc): Promise<Name> {
    const at = this.objectAt(loc);
    if (at.name === null) throw new FopError('EINVAL', `${loc.path} is a directory`);
    return nameFromBytes(sys.readlinkat(at));
  }

  override async setattr(_frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    const at = this.objectAt(loc);
    applyAttr(at, attr);
    return this.iatt(sys.stat(at), this.gfidOf(loc));
  }

  override async fsetattr(_frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    const at = { dirfd: this.ctx(fd).osfd, name: null };
    applyAttr(at, attr);
    return this.iatt(sys.stat(at), fd.inode.gfid);
  }

  override async truncate(_frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    // Through an fd opened without following symlinks: truncate(2) would follow one.
    const osfd = sys.openat(this.regularFile(loc, 'EINVAL'), O_WRONLY | O_NOFOLLOW | O_NONBLOCK);
    try {
      await ftruncate(osfd, size);
      return this.iatt(sys.stat({ dirfd: osfd, name: null }), this.gfidOf(loc));
    } finally {
      fs.closeSync(osfd);
    }
  }

  override async ftruncate(_frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    const osfd = this.fileCtx(fd).osfd;
    await ftruncate(osfd, size);
    return this.iatt(sys.stat({ dirfd: osfd, name: null }), fd.inode.gfid);
  }

  override async statfs(_frame: Frame, _loc: Loc): Promise<Statfs> {
    return statfsOf(fs.statfsSync(this.handles.root));
  }

  // --- fops: namespace ------------------------------------------------------------

  /** What a new object at `loc` is: where it goes and the GFID it gets. */
  private newObject(frame: Frame, loc: Loc, mode: number): NewObject {
    const entry = this.entryAt(loc, true);
    return { entry, parent: loc.parent!.gfid, name: loc.name!, gfid: this.gfidOf(loc), caller: frame.caller, mode };
  }

  override async mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    check((mode & S_IFMT) !== S_IFDIR, 'EPERM', 'mknod cannot make directories');
    const o = this.newObject(frame, loc, mode);
    const type = mode & S_IFMT || S_IFREG;
    const { st } = makeObject(this.handles, this.log, o, (aside) => {
      sys.mknodat(aside, type | (mode & 0o777), rdev);
      return undefined;
    });
    return this.iatt(st, o.gfid);
  }

  override async symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    check(typeof target === 'string' && isByteString(target), 'EINVAL', 'the symlink target is not a byte string');
    check(target !== '', 'ENOENT', 'empty symlink target');
    check(!target.includes('\0'), 'EINVAL', 'NUL in a symlink target');
    check(target.length <= TARGET_MAX, 'ENAMETOOLONG', `symlink target of ${target.length} bytes`);
    const o = this.newObject(frame, loc, 0o777);
    const { st } = makeObject(this.handles, this.log, o, (aside) => {
      sys.symlinkat(nameBytes(target), aside);
      return undefined;
    });
    return this.iatt(st, o.gfid);
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    const o = this.newObject(frame, loc, mode);
    const access = (fd.flags & O_ACCMODE) === O_WRONLY ? O_WRONLY : O_RDWR;
    const flags = (backingFlags(fd.flags) & ~O_ACCMODE) | access | O_CREAT | O_EXCL;
    const made = makeObject(this.handles, this.log, o, (aside) => sys.openat(aside, flags, mode & 0o777));
    this.attach(fd, made.fd!);
    return this.iatt(made.st, o.gfid);
  }

  override async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    const o = this.newObject(frame, loc, mode);
    return this.iatt(makeDir(this.handles, this.log, o), o.gfid);
  }

  override async unlink(_frame: Frame, loc: Loc): Promise<void> {
    const at = this.entryAt(loc);
    const st = sys.stat(at);
    if (isDir(st.mode)) throw new FopError('EISDIR');
    const gfid = readGfid(at);
    sys.unlinkat(at);
    if (gfid) this.handles.dropIfNameless(gfid, st.ino);
  }

  override async rmdir(_frame: Frame, loc: Loc): Promise<void> {
    const at = this.entryAt(loc);
    const gfid = readGfid(at);
    sys.unlinkat(at, true);
    if (gfid && this.handles.isAt(gfid, loc.parent!.gfid, loc.name!)) this.handles.removeDirHandle(gfid);
  }

  override async rename(_frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    check(Number.isInteger(flags) && (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) === 0 && flags !== (RENAME_NOREPLACE | RENAME_EXCHANGE), 'EINVAL', `rename flags ${flags}`);
    const src = this.entryAt(from);
    const dst = this.entryAt(to, true);
    const fromParent = from.parent!.gfid;
    const toParent = to.parent!.gfid;
    const { gfid, st: sst } = identify(this.handles, this.log, { at: src, st: sys.stat(src), parent: fromParent, name: from.name! });
    if (flags & RENAME_EXCHANGE) {
      const dst0 = sys.stat(dst);
      const other = identify(this.handles, this.log, { at: dst, st: dst0, parent: toParent, name: to.name! }).gfid;
      sys.renameat2(src, dst, RENAME_EXCHANGE);
      if (isDir(sst.mode)) this.handles.setDirHandle(gfid, toParent, to.name!);
      if (isDir(dst0.mode)) this.handles.setDirHandle(other, fromParent, from.name!);
      return this.iatt(sys.stat(dst), gfid);
    }
    const dst0 = sys.statIfExists(dst);
    const replaced = dst0 && !(dst0.ino === sst.ino && dst0.dev === sst.dev) ? { gfid: readGfid(dst), st: dst0 } : undefined;
    sys.renameat2(src, dst, flags);
    if (isDir(sst.mode)) this.handles.setDirHandle(gfid, toParent, to.name!);
    if (replaced?.gfid) {
      if (isDir(replaced.st.mode)) this.handles.removeDirHandle(replaced.gfid);
      else this.handles.dropIfNameless(replaced.gfid, replaced.st.ino);
    }
    return this.iatt(sys.stat(dst), gfid);
  }

  override async link(_frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const gfid = this.gfidOf(from);
    // Not fileAt: like link(2) on a file whose names are all gone, that fails with ENOENT.
    const src = this.handles.handleAt(gfid);
    const st = sys.statIfExists(src);
    if (!st) throw new FopError('ENOENT', `${from.path}: no object with GFID ${gfid}`);
    check(!isLnk(st.mode) || readGfid(src) !== undefined, 'EPERM', 'cannot link a directory');
    check(!isDir(st.mode) && from.inode?.type !== S_IFDIR, 'EPERM', 'cannot link a directory');
    const dst = this.entryAt(to, true);
    sys.linkat(src, dst);
    return this.iatt(sys.stat(dst), gfid);
  }

  // --- fops: files ----------------------------------------------------------------

  override async open(_frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const at = this.regularFile(loc, 'ENXIO');
    this.attach(fd, sys.openat(at, backingFlags(fd.flags) | (fd.flags & O_TRUNC)));
  }

  private attach(fd: Fd, osfd: number): void {
    const durable = (backingFlags(fd.flags) & (O_SYNC | O_DSYNC)) !== 0;
    this.fds.set(fd, { kind: 'file', osfd, append: (fd.flags & O_APPEND) !== 0, durable });
    this.handles.opened(fd.inode.gfid);
  }

  override async read(_frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    const osfd = this.fileCtx(fd).osfd;
    const buf = Buffer.allocUnsafe(size);
    // What the page cache holds is read here and now; a thread-pool hand-off (two thread
    // wake-ups) costs more than the copy. Only what needs the disk goes to the pool.
    let got = 0;
    let eof = false;
    while (got < size) {
      const n = sys.preadNowait(osfd, buf, got, size - got, offset + got);
      if (n <= 0) {
        eof = n === 0;
        break;
      }
      got += n;
    }
    while (!eof && got < size) {
      const n = await sys.pread(osfd, buf, got, size - got, offset + got);
      if (n === 0) break;
      got += n;
    }
    return got === size ? buf : buf.subarray(0, got);
  }

  override async write(_frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    const { osfd, append, durable } = this.fileCtx(fd);
    // Appending: the offset is where the caller believed the end was (another client may
    // have written since); write(2) on an O_APPEND fd goes to the real end.
    const at = (done: number) => (append ? null : offset + done);
    if (data.length <= SYNC_WRITE_MAX && !durable && Date.now() >= this.poolWritesUntil) {
      const started = performance.now();
      const n = sys.pwriteSync(osfd, data, 0, data.length, at(0));
      if (performance.now() - started > SLOW_WRITE_MS) this.poolWritesUntil = Date.now() + POOL_AFTER_SLOW_WRITE_MS;
      return n;
    }
    let done = 0;
    while (done < data.length) done += await sys.pwrite(osfd, data, done, data.length - done, at(done));
    return done;
  }

  override async flush(_frame: Frame, fd: Fd): Promise<void> {
    this.ctx(fd);
  }

  override async fsync(_frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    const osfd = this.fileCtx(fd).osfd;
    await new Promise<void>((res, rej) => (datasync ? fs.fdatasync : fs.fsync)(osfd, (e) => (e ? rej(e) : res())));
  }

  override async fallocate(_frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    const osfd = this.fileCtx(fd).osfd;
    // What FUSE passes on; other modes (collapse, insert range) are refused as the kernel's FUSE does.
    check((mode & ~FALLOC_MODES) === 0, 'EOPNOTSUPP', `fallocate mode ${mode}`);
    await sys.fallocate(osfd, mode, offset, length);
  }

  override async seek(_frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number> {
    const osfd = this.fileCtx(fd).osfd;
    check(what === 'data' || what === 'hole', 'EINVAL', `seek to ${String(what)}`);
    return sys.lseek(osfd, offset, what === 'data' ? SEEK_DATA : SEEK_HOLE);
  }

  override async lk(_frame: Frame, _fd: Fd, _cmd: LockCmd, _lock: Flock, _kind: LockKind): Promise<Flock> {
    throw new FopError('ENOSYS', `${this.name} keeps no locks: no features/locks translator is in this graph`);
  }

  // --- fops: directories -------------------------------------------------------------

  override async opendir(_frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const gfid = this.gfidOf(loc);
    // A new open file of the directory (its own listing position), not the shared fd.
    const osfd = sys.openat({ dirfd: this.handles.dirs.fd(gfid), name: DOT }, O_RDONLY | O_DIRECTORY);
    this.fds.set(fd, { kind: 'dir', osfd, atRoot: gfid === ROOT_GFID, pos: 0 });
  }

  override async readdir(_frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]> {
    const ctx = this.dirCtx(fd);
    const entries = await this.list(ctx, size, offset, 24);
    return entries.map((e) => {
      const st = sys.statIfExists({ dirfd: ctx.osfd, name: e.name });
      // Gone since it was listed: ino 0; the kernel will find out on lookup.
      return { name: nameFromBytes(e.name), offset: e.offset, ino: st?.ino ?? 0, type: e.type };
    });
  }

  override async readdirp(_frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    const ctx = this.dirCtx(fd);
    // FUSE's direntplus: a struct fuse_entry_out (128 bytes) before each dirent.
    const entries = await this.list(ctx, size, offset, 24 + 128);
    return entries.map((e) => {
      const name = nameFromBytes(e.name);
      const iatt = this.identifyListed(ctx.osfd, e.name, fd.inode.gfid, name);
      const xattrNames = iatt && this.xattrNamesListed(ctx.osfd, e.name);
      return { name, offset: e.offset, ino: iatt?.ino ?? 0, type: e.type, iatt, xattrNames };
    });
  }

  /** A listed entry's attributes, its GFID assigned or healed as lookup does; undefined if it vanished. */
  private identifyListed(dirfd: number, bytes: Buffer, parent: Gfid, name: Name): Iatt | undefined {
    const at = { dirfd, name: bytes };
    const st = sys.statIfExists(at);
    if (!st) return undefined;
    try {
      const found = identify(this.handles, this.log, { at, st, parent, name });
      return this.iatt(found.st, found.gfid);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** What listxattr would answer for a listed entry; undefined if it vanished meanwhile. */
  private xattrNamesListed(dirfd: number, bytes: Buffer): Name[] | undefined {
    try {
      return sys.listxattrAt({ dirfd, name: bytes }).filter((n) => !RESERVED_XATTRS(n));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw e;
    }
  }

  /** Entries after cookie `offset`, roughly as many as fit `size` bytes at `cost` + name bytes each. */
  private async list(ctx: DirCtx, size: number, offset: number, cost: number): Promise<RawEntry[]> {
    if (!ctx.dir || offset !== ctx.pos) await this.rewind(ctx, offset);
    const out: RawEntry[] = [];
    for (let budget = size; budget > 0; ) {
      const e = await ctx.dir!.read();
      if (!e) break;
      const name = e.name as unknown as Buffer;
      if (ctx.atRoot && name.equals(META)) continue;
      out.push({ name, type: direntType(e), offset: ++ctx.pos });
      budget -= cost + name.length;
    }
    return out;
  }

  /** Reopens the listing and skips `offset` entries: cookies are positions. */
  private async rewind(ctx: DirCtx, offset: number): Promise<void> {
    await ctx.dir?.close().catch(() => undefined);
    // Names as Buffers: the exact bytes, whatever their encoding.
    ctx.dir = await fs.promises.opendir(byFd(ctx.osfd), { bufferSize: 128, encoding: 'buffer' as BufferEncoding });
    ctx.pos = 0;
    while (ctx.pos < offset) {
      const e = await ctx.dir.read();
      if (!e) break;
      if (!(ctx.atRoot && (e.name as unknown as Buffer).equals(META))) ctx.pos++;
    }
  }

  override async fsyncdir(_frame: Frame, fd: Fd, _datasync: boolean): Promise<void> {
    const ctx = this.dirCtx(fd);
    await new Promise<void>((res, rej) => fs.fsync(ctx.osfd, (e) => (e ? rej(e) : res())));
  }

  // --- fops: extended attributes ----------------------------------------------------------

  override async getxattr(_frame: Frame, loc: Loc, name: Name): Promise<Buffer> {
    checkXattrName(name);
    if (RESERVED_XATTRS(name)) throw new FopError('ENODATA');
    // Every write asks for security.capability, which files seldom have.
    const value = sys.getxattrIfExists(this.objectAt(loc), name);
    return value ?? (await miss('ENODATA'));
  }

  override async setxattr(_frame: Frame, loc: Loc, name: Name, value: Buffer, flags: number): Promise<void> {
    checkXattrName(name);
    if (RESERVED_XATTRS(name)) throw new FopError('EPERM', `${name} is kept by xlstack`);
    sys.setxattrAt(this.objectAt(loc), name, value, flags);
  }

  override async listxattr(_frame: Frame, loc: Loc): Promise<Name[]> {
    return sys.listxattrAt(this.objectAt(loc)).filter((n) => !RESERVED_XATTRS(n));
  }

  /**
   * Translators' own metadata (AFR's changelog, DHT's layouts): xattrs under
   * INTERNAL_XATTR_PREFIX, which clients never see through getxattr or listxattr. Each call
   * is atomic: this process owns the directory, and the calls are synchronous.
   */
  override async xattrop(_frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    const at = this.objectAt(loc);
    const out: Record<string, Buffer> = {};
    if (op === 'get' && Object.keys(xattrs).length === 0) {
      // Every internal xattr the object has (a replicate's heal copies what translators above it keep).
      for (const key of sys.listxattrAt(at)) if (key.startsWith(INTERNAL_XATTR_PREFIX)) out[key] = readInternal(at, key);
      return out;
    }
    for (const [key, value] of Object.entries(xattrs)) {
      checkXattrName(key);
      check(key.startsWith(INTERNAL_XATTR_PREFIX), 'EPERM', `xattrop is for ${INTERNAL_XATTR_PREFIX}* only, not ${key}`);
      const current = readInternal(at, key);
      if (op === 'get') out[key] = current;
      else if (op === 'set') out[key] = writeInternal(at, key, value);
      else out[key] = writeInternal(at, key, addInt32s(current, value, key));
    }
    return out;
  }

  override async removexattr(_frame: Frame, loc: Loc, name: Name): Promise<void> {
    checkXattrName(name);
    if (RESERVED_XATTRS(name)) throw new FopError('EPERM', `${name} is kept by xlstack`);
    sys.removexattrAt(this.objectAt(loc), name);
  }

  // --- fd context ------------------------------------------------------------------

  private ctx(fd: Fd): FileCtx | DirCtx {
    const ctx = this.fds.get(fd);
    if (!ctx) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.name}`);
    return ctx;
  }

  private fileCtx(fd: Fd): FileCtx {
    const ctx = this.ctx(fd);
    if (ctx.kind !== 'file') throw new FopError('EISDIR');
    return ctx;
  }

  private dirCtx(fd: Fd): DirCtx {
    const ctx = this.ctx(fd);
    if (ctx.kind !== 'dir') throw new FopError('ENOTDIR');
    return ctx;
  }
}

/**
 * Fails a fop with an errno its caller expects often, one microtask later (awaited where it
 * is made): a promise that rejects before its caller attached a handler costs Node's
 * unhandled-rejection bookkeeping (two calls into JavaScript), more than the rest of the miss.
 */
async function miss(code: ErrnoCode): Promise<never> {
  await undefined;
  throw new FopError(code);
}

/** An internal xattr's value; empty when there is none. */
function readInternal(at: At, key: string): Buffer {
  try {
    return sys.getxattrAt(at, key);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENODATA') return Buffer.alloc(0);
    throw e;
  }
}

/** Sets (or, with an empty value, removes) an internal xattr; returns what it now holds. */
function writeInternal(at: At, key: string, value: Buffer): Buffer {
  if (value.length > 0) {
    sys.setxattrAt(at, key, value, 0);
    return value;
  }
  try {
    sys.removexattrAt(at, key);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENODATA') throw e;
  }
  return value;
}

/** Element-wise sum of big-endian int32 arrays (a missing value counts as zeros). */
function addInt32s(current: Buffer, delta: Buffer, key: string): Buffer {
  check(delta.length % 4 === 0, 'EINVAL', `${key}: an add takes int32 arrays, not ${delta.length} bytes`);
  const base = current.length ? current : Buffer.alloc(delta.length);
  check(base.length === delta.length, 'EINVAL', `${key} holds ${base.length} bytes, the add ${delta.length}`);
  const sum = Buffer.alloc(delta.length);
  for (let i = 0; i < delta.length; i += 4) sum.writeInt32BE((base.readInt32BE(i) + delta.readInt32BE(i)) | 0, i);
  return sum;
}

function checkXattrName(name: Name): void {
  check(typeof name === 'string' && isByteString(name), 'EINVAL', `xattr name ${JSON.stringify(name)} is not a byte string`);
}

function applyAttr(at: At, attr: SetAttr): void {
  if (attr.mode !== undefined) {
    if (isLnk(sys.stat(at).mode)) throw new FopError('EOPNOTSUPP', 'symlinks have no mode');
    sys.chmod(at, attr.mode & 0o7777);
  }
  if (attr.uid !== undefined || attr.gid !== undefined) sys.chown(at, attr.uid ?? -1, attr.gid ?? -1);
  if (attr.atime !== undefined || attr.mtime !== undefined) sys.utimens(at, timeArgs(attr.atime), timeArgs(attr.mtime));
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

function direntType(e: fs.Dirent): number {
  return DIRENT_TYPES.find(([m]) => (e[m] as () => boolean).call(e))?.[1] ?? 0;
}

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
