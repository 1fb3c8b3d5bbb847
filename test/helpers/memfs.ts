// A small in-memory KernelFs for the kernel transport's tests and measurements (test code
// only): nodeids with lookup counts, files with data, directories, symlinks, hard links,
// xattrs, and POSIX/flock locks where SETLKW blocks until the lock is free or the request
// is interrupted. Its events let a test wait for what the kernel did instead of for time.
import { EventEmitter } from 'events';
import { constants as fsConstants } from 'fs';
import { constants } from 'os';
import { FopError } from '../../src/core/errors';
import { LOCK_TO_EOF, RENAME_EXCHANGE, RENAME_NOREPLACE } from '../../src/core/types';
import type { Flock, Iatt, Statfs, Timespec } from '../../src/core/types';
import type { Attr, ConnInfo, DirSink, Entry, KernelFs, LockIn, Opened, Request, SetattrIn } from '../../src/fuse/kernel/fs';
import { FileData } from './filedata';

const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK } = fsConstants;
const O_TRUNC = 0o1000;
const O_ACCMODE = 3;
const XATTR_CREATE = 1;
const XATTR_REPLACE = 2;
const SEEK_DATA = 3;
const SEEK_HOLE = 4;
const FALLOC_FL_KEEP_SIZE = 1;
const DOT = 1;
const DOTDOT = 2;

interface Node {
  readonly id: number;
  readonly generation: number;
  mode: number;
  uid: number;
  gid: number;
  nlink: number;
  rdev: number;
  readonly data: FileData;
  atime: Timespec;
  mtime: Timespec;
  ctime: Timespec;
  /** Directories: name (latin1) -> child, in cookie order. */
  children?: Map<string, { id: number; cookie: number }>;
  nextCookie: number;
  parent: number;
  target?: Buffer;
  xattrs: Map<string, Buffer>;
  /** The kernel's references (entry replies minus FORGETs). */
  lookups: number;
  opens: number;
  locks: HeldLock[];
}

interface HeldLock {
  readonly owner: string;
  readonly type: 'read' | 'write';
  readonly start: number;
  readonly end: number;
  readonly pid: number;
}

interface Handle {
  readonly nodeid: number;
  readonly flags: number;
  /** Directories: where the last listing stopped, to go on from there without a rescan. */
  listing?: { offset: number; rest: Iterator<[string, Child]>; pending?: IteratorResult<[string, Child]> };
}

interface Child {
  readonly id: number;
  readonly cookie: number;
}

interface Waiter {
  readonly nodeid: number;
  retry(): boolean;
}

export interface MemFsOptions {
  /** Validity of entries and attributes handed to the kernel (default 1000 ms). */
  readonly ttlMs?: number;
}

export interface MemFsEvents {
  /** A SETLKW is now waiting for a conflicting lock. */
  lockWait: [nodeid: number];
  /** A request this fs was serving got interrupted. */
  interrupt: [op: string];
  forget: [nodeid: number, nlookup: number];
  destroy: [];
}

const ROOT_REQ: Request = { unique: 0, uid: 0, gid: 0, pid: 0, interrupted: false, onInterrupt: () => () => undefined };

const now = (): Timespec => {
  const ms = Date.now();
  return { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };
};
const key = (name: Buffer): string => name.toString('latin1');
const err = (code: keyof typeof constants.errno, msg?: string): FopError => new FopError(code, msg);
// The two answers `ls -l` and O_CREAT ask for thousands of times, as rejected promises made
// once (and marked handled): a JS throw costs V8 a stack walk, and every fresh rejection
// Node's unhandled-rejection bookkeeping, each more than the transport's own work.
const settledRejection = (e: FopError): Promise<never> => {
  const p = Promise.reject(e);
  p.catch(() => undefined);
  return p;
};
const REJECTED_NO_ENTRY = settledRejection(err('ENOENT'));
const REJECTED_NO_ATTR = settledRejection(err('ENODATA'));

export class MemFs extends EventEmitter<MemFsEvents> implements KernelFs {
  readonly nodes = new Map<number, Node>();
  private nextId = 2;
  private nextFh = 1;
  private readonly handles = new Map<number, Handle>();
  private readonly waiters = new Set<Waiter>();
  private readonly ttl: number;
  conn?: ConnInfo;
  destroyed = 0;
  interrupts = 0;
  /** Sizes of the WRITEs received, and how the largest one's data was placed. */
  readonly writeSizes: number[] = [];
  largestWrite?: { size: number; byteOffset: number; bufferLength: number };
  /** Throws something that is not a FopError on LOOKUP of this name (a bug, for tests). */
  bugName?: string;
  private readonly gates = new Map<string, { enter(): void; opened: Promise<void> }>();

  constructor(opts: MemFsOptions = {}) {
    super();
    this.ttl = opts.ttlMs ?? 1000;
    const root = this.newNode(S_IFDIR | 0o755, 1);
    root.lookups = 1; // the kernel holds the root for the whole mount, without a LOOKUP
  }

  // ---- inspection ----------------------------------------------------------------------

  /** The kernel's references to every node but the root. */
  totalLookups(): number {
    let n = 0;
    for (const node of this.nodes.values()) if (node.id !== 1) n += node.lookups;
    return n;
  }

  /** The node at a path of names below the root (latin1), if any. */
  find(...names: string[]): Node | undefined {
    let node = this.nodes.get(1);
    for (const n of names) {
      const c = node?.children?.get(n);
      node = c ? this.nodes.get(c.id) : undefined;
    }
    return node;
  }

  /** Holds every LOOKUP of `name` until open() is called; `entered` resolves when one arrives. */
  gateLookup(name: string): { entered: Promise<void>; open(): void } {
    let enter!: () => void;
    let open!: () => void;
    const entered = new Promise<void>((r) => (enter = r));
    const opened = new Promise<void>((r) => (open = r));
    this.gates.set(name, { enter, opened });
    return {
      entered,
      open: () => {
        this.gates.delete(name);
        open();
      },
    };
  }

  /** Creates a file below the root directly, behind the kernel's back (it has no dentry for it). */
  addFile(dir: string, name: string, data: Buffer): void {
    const parent = dir ? this.find(dir) ?? this.create1(ROOT_REQ, 1, Buffer.from(dir, 'latin1'), S_IFDIR | 0o755) : this.node(1);
    const n = this.create1(ROOT_REQ, parent.id, Buffer.from(name, 'latin1'), S_IFREG | 0o644);
    n.data.write(0, data);
  }

  // ---- KernelFs --------------------------------------------------------------------------

  init(conn: ConnInfo): void {
    this.conn = conn;
  }

  forget(nodeid: number, nlookup: number): void {
    const n = this.nodes.get(nodeid);
    if (!n) return;
    n.lookups = Math.max(0, n.lookups - nlookup);
    this.emit('forget', nodeid, nlookup);
    this.maybeFree(n);
  }

  destroy(): void {
    this.destroyed++;
    for (const w of this.waiters) w.retry();
    this.emit('destroy');
  }

  // lookup, getattr and getxattr are plain functions returning settled promises: the hot
  // paths of a measurement pay for no async machinery the transport would not see anyway.
  lookup(req: Request, parent: number, name: Buffer): Promise<Entry> {
    const k = key(name);
    if (this.bugName !== undefined && k === this.bugName) return Promise.reject(new TypeError(`memfs: a planted bug on LOOKUP ${this.bugName}`));
    const gate = this.gates.get(k);
    if (gate) {
      gate.enter();
      return gate.opened.then(() => this.lookupNow(parent, k));
    }
    return this.lookupNow(parent, k);
  }

  private lookupNow(parent: number, k: string): Promise<Entry> {
    const dir = this.nodes.get(parent);
    if (!dir?.children) return Promise.reject(err(dir ? 'ENOTDIR' : 'ESTALE'));
    const id = k === '.' ? dir.id : k === '..' ? dir.parent : dir.children.get(k)?.id;
    if (id === undefined) return REJECTED_NO_ENTRY;
    return Promise.resolve(this.entry(this.node(id)));
  }

  getattr(req: Request, nodeid: number): Promise<Attr> {
    const n = this.nodes.get(nodeid);
    return n ? Promise.resolve({ attrMs: this.ttl, attr: this.iatt(n) }) : Promise.reject(err('ESTALE'));
  }

  async setattr(req: Request, nodeid: number, s: SetattrIn): Promise<Attr> {
    const n = this.node(nodeid);
    if (s.mode !== undefined) n.mode = (n.mode & S_IFMT) | (s.mode & ~S_IFMT);
    if (s.uid !== undefined) n.uid = s.uid;
    if (s.gid !== undefined) n.gid = s.gid;
    if (s.size !== undefined) {
      if ((n.mode & S_IFMT) !== S_IFREG) throw err('EINVAL');
      n.data.truncate(s.size);
      n.mtime = now();
    }
    if (s.atime !== undefined) n.atime = s.atime === 'now' ? now() : s.atime;
    if (s.mtime !== undefined) n.mtime = s.mtime === 'now' ? now() : s.mtime;
    n.ctime = s.ctime ?? now();
    return { attrMs: this.ttl, attr: this.iatt(n) };
  }

  async readlink(req: Request, nodeid: number): Promise<Buffer> {
    const n = this.node(nodeid);
    if (!n.target) throw err('EINVAL');
    return n.target;
  }

  async symlink(req: Request, parent: number, name: Buffer, target: Buffer): Promise<Entry> {
    const n = this.create1(req, parent, name, S_IFLNK | 0o777);
    n.target = Buffer.from(target);
    return this.entry(n);
  }

  async mknod(req: Request, parent: number, name: Buffer, mode: number, rdev: number, umask: number): Promise<Entry> {
    const n = this.create1(req, parent, name, mode & ~umask);
    n.rdev = rdev;
    return this.entry(n);
  }

  async mkdir(req: Request, parent: number, name: Buffer, mode: number, umask: number): Promise<Entry> {
    return this.entry(this.create1(req, parent, name, S_IFDIR | (mode & ~umask & 0o7777)));
  }

  async unlink(req: Request, parent: number, name: Buffer): Promise<void> {
    const dir = this.dir(parent);
    const c = dir.children!.get(key(name));
    if (!c) throw err('ENOENT');
    const n = this.node(c.id);
    if ((n.mode & S_IFMT) === S_IFDIR) throw err('EISDIR');
    dir.children!.delete(key(name));
    n.nlink--;
    n.ctime = dir.mtime = dir.ctime = now();
    this.maybeFree(n);
  }

  async rmdir(req: Request, parent: number, name: Buffer): Promise<void> {
    const dir = this.dir(parent);
    const c = dir.children!.get(key(name));
    if (!c) throw err('ENOENT');
    const n = this.node(c.id);
    if (!n.children) throw err('ENOTDIR');
    if (n.children.size > 0) throw err('ENOTEMPTY');
    dir.children!.delete(key(name));
    dir.nlink--;
    n.nlink = 0;
    dir.mtime = dir.ctime = now();
    this.maybeFree(n);
  }

  async rename(req: Request, parent: number, name: Buffer, newParent: number, newName: Buffer, flags: number): Promise<void> {
    const from = this.dir(parent);
    const to = this.dir(newParent);
    const src = from.children!.get(key(name));
    if (!src) throw err('ENOENT');
    const dst = to.children!.get(key(newName));
    if (flags & ~(RENAME_NOREPLACE | RENAME_EXCHANGE)) throw err('EINVAL');
    if (flags & RENAME_NOREPLACE && dst) throw err('EEXIST');
    if (flags & RENAME_EXCHANGE) {
      if (!dst) throw err('ENOENT');
      this.link1(from, key(name), dst.id);
      this.link1(to, key(newName), src.id);
      this.node(src.id).parent = to.id;
      this.node(dst.id).parent = from.id;
      return;
    }
    const moving = this.node(src.id);
    if (dst) {
      if (dst.id === src.id) return;
      const old = this.node(dst.id);
      if (old.children && !moving.children) throw err('EISDIR');
      if (!old.children && moving.children) throw err('ENOTDIR');
      if (old.children && old.children.size > 0) throw err('ENOTEMPTY');
      old.nlink = old.children ? 0 : old.nlink - 1;
      if (old.children) to.nlink--;
      this.maybeFree(old);
    }
    from.children!.delete(key(name));
    // A fresh cookie: a listing in progress neither skips nor repeats the others.
    this.link1(to, key(newName), src.id);
    if (moving.children && from !== to) {
      from.nlink--;
      to.nlink++;
    }
    moving.parent = to.id;
    moving.ctime = from.mtime = to.mtime = now();
  }

  async link(req: Request, nodeid: number, newParent: number, newName: Buffer): Promise<Entry> {
    const n = this.node(nodeid);
    if (n.children) throw err('EPERM');
    const dir = this.dir(newParent);
    if (dir.children!.has(key(newName))) throw err('EEXIST');
    this.link1(dir, key(newName), n.id);
    n.nlink++;
    n.ctime = now();
    return this.entry(n);
  }

  async open(req: Request, nodeid: number, flags: number): Promise<Opened> {
    const n = this.node(nodeid);
    if (n.children) throw err('EISDIR');
    if (flags & O_TRUNC && (flags & O_ACCMODE) !== 0) n.data.truncate(0);
    return { fh: this.openHandle(n, flags) };
  }

  async create(req: Request, parent: number, name: Buffer, mode: number, umask: number, flags: number): Promise<{ entry: Entry; opened: Opened }> {
    const n = this.create1(req, parent, name, S_IFREG | (mode & ~umask & 0o7777));
    return { entry: this.entry(n), opened: { fh: this.openHandle(n, flags) } };
  }

  async read(req: Request, nodeid: number, fh: number, offset: number, size: number): Promise<Buffer> {
    const n = this.handleNode(fh, nodeid);
    return n.data.read(offset, size);
  }

  async write(req: Request, nodeid: number, fh: number, offset: number, data: Buffer): Promise<number> {
    const n = this.handleNode(fh, nodeid);
    this.writeSizes.push(data.length);
    if (!this.largestWrite || data.length > this.largestWrite.size) {
      this.largestWrite = { size: data.length, byteOffset: data.byteOffset, bufferLength: data.buffer.byteLength };
    }
    n.data.write(offset, data);
    n.mtime = n.ctime = now();
    return data.length;
  }

  /** A close: the POSIX locks of its lock owner go (the kernel keeps no record of them to drop itself). */
  async flush(req: Request, nodeid: number, fh: number, lockOwner: bigint): Promise<void> {
    this.unlockAll(this.handleNode(fh, nodeid), `posix:${lockOwner}`);
  }

  async fsync(): Promise<void> {}

  async release(req: Request, nodeid: number, fh: number, flags: number, lockOwner: bigint, flockUnlock: boolean): Promise<void> {
    const h = this.handles.get(fh);
    if (!h) throw err('EBADF');
    this.handles.delete(fh);
    const n = this.nodes.get(h.nodeid);
    if (!n) return;
    n.opens--;
    if (flockUnlock) this.unlockAll(n, `flock:${fh}`);
    this.maybeFree(n);
  }

  async statfs(): Promise<Statfs> {
    return { bsize: 4096, frsize: 4096, blocks: 1 << 20, bfree: 1 << 19, bavail: 1 << 19, files: 1 << 20, ffree: (1 << 20) - this.nodes.size, favail: 0, fsid: 0, flag: 0, namemax: 255 };
  }

  getxattr(req: Request, nodeid: number, name: Buffer): Promise<Buffer> {
    const n = this.nodes.get(nodeid);
    if (!n) return Promise.reject(err('ESTALE'));
    const v = n.xattrs.get(key(name));
    return v ? Promise.resolve(v) : REJECTED_NO_ATTR;
  }

  async listxattr(req: Request, nodeid: number): Promise<Buffer> {
    return Buffer.concat([...this.node(nodeid).xattrs.keys()].map((k) => Buffer.from(k + '\0', 'latin1')));
  }

  async setxattr(req: Request, nodeid: number, name: Buffer, value: Buffer, flags: number): Promise<void> {
    const x = this.node(nodeid).xattrs;
    const k = key(name);
    if (flags & XATTR_CREATE && x.has(k)) throw err('EEXIST');
    if (flags & XATTR_REPLACE && !x.has(k)) throw err('ENODATA');
    x.set(k, Buffer.from(value));
  }

  async removexattr(req: Request, nodeid: number, name: Buffer): Promise<void> {
    if (!this.node(nodeid).xattrs.delete(key(name))) throw err('ENODATA');
  }

  async access(req: Request, nodeid: number): Promise<void> {
    this.node(nodeid);
  }

  async opendir(req: Request, nodeid: number, flags: number): Promise<Opened> {
    return { fh: this.openHandle(this.dir(nodeid), flags) };
  }

  async readdir(req: Request, nodeid: number, fh: number, offset: number, sink: DirSink): Promise<void> {
    const dir = this.handleNode(fh, nodeid);
    if (!dir.children) throw err('ENOTDIR');
    const h = this.handles.get(fh)!;
    // Children iterate in cookie order (a name is re-inserted with each new cookie); a listing
    // that goes on where the last one stopped goes on with its live iterator.
    const resumed = h.listing?.offset === offset ? h.listing : undefined;
    h.listing = undefined;
    let last = offset;
    const add = (name: string, n: Node, cookie: number): boolean => {
      const e = sink.plus ? this.entryOf(n) : undefined;
      if (!sink.add({ name: Buffer.from(name, 'latin1'), offset: cookie, ino: n.id, type: n.mode & S_IFMT }, e)) return false;
      if (sink.plus && cookie > DOTDOT) n.lookups++;
      last = cookie;
      return true;
    };
    const rest = resumed?.rest ?? dir.children[Symbol.iterator]();
    if (!resumed && ((offset < DOT && !add('.', dir, DOT)) || (offset < DOTDOT && !add('..', this.node(dir.parent), DOTDOT)))) return;
    let next = resumed?.pending ?? rest.next();
    for (; !next.done; next = rest.next()) {
      const [name, c] = next.value;
      if (c.cookie > offset && !add(name, this.node(c.id), c.cookie)) break;
    }
    h.listing = { offset: last, rest, pending: next.done ? undefined : next }; // what did not fit comes first next time
  }

  async fsyncdir(): Promise<void> {}

  async releasedir(req: Request, nodeid: number, fh: number): Promise<void> {
    if (!this.handles.delete(fh)) throw err('EBADF');
    const n = this.nodes.get(nodeid);
    if (n) {
      n.opens--;
      this.maybeFree(n);
    }
  }

  async getlk(req: Request, nodeid: number, lk: LockIn): Promise<Flock> {
    const c = this.conflict(this.node(nodeid), this.owner(lk), lk.lock);
    return c ? { type: c.type, start: c.start, end: c.end, pid: c.pid } : { ...lk.lock, type: 'unlock' };
  }

  setlk(req: Request, nodeid: number, lk: LockIn, wait: boolean): Promise<void> {
    const n = this.node(nodeid);
    const owner = this.owner(lk);
    if (lk.lock.type === 'unlock') {
      this.unlockRange(n, owner, lk.lock.start, lk.lock.end);
      return Promise.resolve();
    }
    const tryTake = (): boolean => {
      if (this.conflict(n, owner, lk.lock)) return false;
      this.unlockRange(n, owner, lk.lock.start, lk.lock.end);
      n.locks.push({ owner, type: lk.lock.type as 'read' | 'write', start: lk.lock.start, end: lk.lock.end, pid: lk.lock.pid });
      return true;
    };
    if (tryTake()) return Promise.resolve();
    if (!wait) return Promise.reject(err('EAGAIN'));
    if (req.interrupted) return Promise.reject(this.interrupted('SETLKW'));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        nodeid,
        retry: () => {
          if (this.destroyed) done(err('ENOTCONN'));
          else if (tryTake()) done();
          else return false;
          return true;
        },
      };
      const stop = req.onInterrupt(() => done(this.interrupted('SETLKW')));
      const done = (e?: FopError): void => {
        this.waiters.delete(waiter);
        stop();
        if (e) reject(e);
        else resolve();
      };
      this.waiters.add(waiter);
      this.emit('lockWait', nodeid);
    });
  }

  private interrupted(op: string): FopError {
    this.interrupts++;
    this.emit('interrupt', op);
    return err('EINTR', `${op} interrupted`);
  }

  async fallocate(req: Request, nodeid: number, fh: number, offset: number, length: number, mode: number): Promise<void> {
    const n = this.handleNode(fh, nodeid);
    if (!(mode & FALLOC_FL_KEEP_SIZE) && offset + length > n.data.size) n.data.truncate(offset + length);
  }

  async lseek(req: Request, nodeid: number, fh: number, offset: number, whence: number): Promise<number> {
    const n = this.handleNode(fh, nodeid);
    if (offset >= n.data.size) throw err('ENXIO');
    if (whence === SEEK_DATA) return offset;
    if (whence === SEEK_HOLE) return n.data.size;
    throw err('EINVAL');
  }

  async copyFileRange(req: Request, nodeIn: number, fhIn: number, offIn: number, nodeOut: number, fhOut: number, offOut: number, length: number): Promise<number> {
    const src = this.handleNode(fhIn, nodeIn);
    const dst = this.handleNode(fhOut, nodeOut);
    const chunk = Buffer.from(src.data.read(offIn, length));
    dst.data.write(offOut, chunk);
    return chunk.length;
  }

  // ---- internals ---------------------------------------------------------------------------

  private newNode(mode: number, parent: number): Node {
    const t = now();
    const isDir = (mode & S_IFMT) === S_IFDIR;
    const n: Node = {
      id: parent === 1 && this.nodes.size === 0 ? 1 : this.nextId++,
      generation: 1,
      mode,
      uid: 0,
      gid: 0,
      nlink: isDir ? 2 : 1,
      rdev: 0,
      data: new FileData(),
      atime: t,
      mtime: t,
      ctime: t,
      children: isDir ? new Map() : undefined,
      nextCookie: 3,
      parent,
      xattrs: new Map(),
      lookups: 0,
      opens: 0,
      locks: [],
    };
    if (n.id === 1) (n as { generation: number }).generation = 0;
    this.nodes.set(n.id, n);
    return n;
  }

  private create1(req: Request, parent: number, name: Buffer, mode: number): Node {
    const dir = this.dir(parent);
    if (dir.children!.has(key(name))) throw err('EEXIST');
    const n = this.newNode(mode, dir.id);
    n.uid = req.uid;
    n.gid = req.gid;
    this.link1(dir, key(name), n.id);
    if (n.children) dir.nlink++;
    dir.mtime = dir.ctime = now();
    return n;
  }

  private node(id: number): Node {
    const n = this.nodes.get(id);
    if (!n) throw err('ESTALE', `no node ${id}`);
    return n;
  }

  private dir(id: number): Node {
    const n = this.node(id);
    if (!n.children) throw err('ENOTDIR');
    return n;
  }

  private handleNode(fh: number, nodeid: number): Node {
    const h = this.handles.get(fh);
    if (!h || h.nodeid !== nodeid) throw err('EBADF', `fh ${fh} is not open on ${nodeid}`);
    return this.node(nodeid);
  }

  /** Puts `name` in `dir` with a fresh cookie, last in listing order. */
  private link1(dir: Node, name: string, id: number): void {
    dir.children!.delete(name);
    dir.children!.set(name, { id, cookie: dir.nextCookie++ });
  }

  private openHandle(n: Node, flags: number): number {
    const fh = this.nextFh++;
    this.handles.set(fh, { nodeid: n.id, flags });
    n.opens++;
    return fh;
  }

  private entryOf(n: Node): Entry {
    return { nodeid: n.id, generation: n.generation, entryMs: this.ttl, attrMs: this.ttl, attr: this.iatt(n) };
  }

  /** An entry reply: the kernel holds the node once more. */
  private entry(n: Node): Entry {
    n.lookups++;
    return this.entryOf(n);
  }

  private iatt(n: Node): Iatt {
    return {
      gfid: '',
      ino: n.id,
      mode: n.mode,
      nlink: n.nlink,
      uid: n.uid,
      gid: n.gid,
      rdev: n.rdev,
      size: n.target?.length ?? n.data.size,
      blksize: 4096,
      blocks: Math.ceil(n.data.size / 512),
      atime: n.atime,
      mtime: n.mtime,
      ctime: n.ctime,
    };
  }

  private maybeFree(n: Node): void {
    if (n.id === 1 || n.nlink > 0 || n.lookups > 0 || n.opens > 0) return;
    n.data.free();
    this.nodes.delete(n.id);
  }

  private owner(lk: LockIn): string {
    return lk.flock ? `flock:${lk.fh}` : `posix:${lk.owner}`;
  }

  private conflict(n: Node, owner: string, l: Flock): HeldLock | undefined {
    return n.locks.find((h) => h.owner !== owner && h.start <= l.end && l.start <= h.end && (h.type === 'write' || l.type === 'write'));
  }

  private unlockRange(n: Node, owner: string, start: number, end: number): void {
    const kept: HeldLock[] = [];
    for (const h of n.locks) {
      if (h.owner !== owner || h.end < start || h.start > end) {
        kept.push(h);
        continue;
      }
      if (h.start < start) kept.push({ ...h, end: start - 1 });
      if (h.end > end) kept.push({ ...h, start: end + 1 });
    }
    n.locks = kept;
    this.wake(n.id);
  }

  private unlockAll(n: Node, owner: string): void {
    this.unlockRange(n, owner, 0, LOCK_TO_EOF);
  }

  private wake(nodeid: number): void {
    for (const w of [...this.waiters]) if (w.nodeid === nodeid) w.retry();
  }
}
