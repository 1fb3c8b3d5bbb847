import * as fs from 'fs';
import { FopError } from '../../core/errors';
import type { Logger } from '../../core/log';
import { Caller, Flock, Iatt, nameBytes, nameFromBytes } from '../../core/types';
import type { BridgeCore, Found, Req } from '../core';
import type { BaseInode } from '../nodes';
import type { Attr, ConnInfo, DirSink, Entry, KernelFs, LockIn, Opened, Request, SetattrIn } from './fs';
import { KernelInvalidator, KernelNotifier } from './invalidator';

export interface KernelAdapterOptions {
  /** How long the kernel may trust a name (entry-timeout), in ms. */
  readonly entryTimeoutMs: number;
  /** How long the kernel may trust attributes (attribute-timeout), in ms. */
  readonly attrTimeoutMs: number;
  /** How long the kernel may trust that a name does not exist (negative-timeout); 0: not at all. */
  readonly negativeTimeoutMs: number;
  /** How long a caller's supplementary groups, read from /proc, are trusted (gid-timeout). */
  readonly groupsTimeoutMs: number;
}

export const DEFAULT_KERNEL_ADAPTER_OPTIONS: KernelAdapterOptions = {
  entryTimeoutMs: 1000,
  attrTimeoutMs: 1000,
  negativeTimeoutMs: 0,
  groupsTimeoutMs: 1000,
};

const SEEK_DATA = 3;

/**
 * An appending handle bypasses the page cache. Cached, the kernel splits a write at a page it
 * has not read (one request up to the page's end, another for the rest), and over a brick each
 * piece goes to the end of the file on its own: another client's append can land between
 * them, inside the line. Uncached, each write(2) up to max_write is one request.
 */
const uncached = (flags: number): true | undefined => ((flags & fs.constants.O_APPEND) !== 0 ? true : undefined);

/**
 * The kernel's supplementary groups of a caller are not in the request: like libfuse and
 * GlusterFS, read them from /proc (racy by nature; cached per pid for a short while).
 */
class GroupCache {
  private readonly cache = new Map<number, { groups: number[]; until: number }>();

  constructor(private readonly ttlMs: number) {}

  of(pid: number): number[] {
    if (pid === 0) return [];
    const now = Date.now();
    const hit = this.cache.get(pid);
    if (hit && hit.until > now) return hit.groups;
    const groups = readGroups(pid);
    if (this.cache.size > 4096) this.cache.clear();
    this.cache.set(pid, { groups, until: now + this.ttlMs });
    return groups;
  }
}

function readGroups(pid: number): number[] {
  try {
    const status = fs.readFileSync(`/proc/${pid}/task/${pid}/status`, 'latin1');
    const line = /^Groups:(.*)$/m.exec(status)?.[1] ?? '';
    return line.split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return []; // the caller is gone, or not visible from here
  }
}

const NO_GROUPS: readonly number[] = Object.freeze([]);

/**
 * The caller of a kernel request. One class for all (a getter per object would make each
 * caller an object of its own shape, slow for every translator that reads it): the
 * supplementary groups, read from /proc, are read only when a translator asks.
 */
class KernelCaller implements Caller {
  readonly #groups: GroupCache;

  constructor(
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
    groups: GroupCache,
  ) {
    this.#groups = groups;
  }

  get groups(): readonly number[] {
    return this.uid === 0 ? NO_GROUPS : this.#groups.of(this.pid);
  }
}

/** A kernel request as the bridge core sees it. */
class KernelReq implements Req {
  readonly caller: KernelCaller;
  readonly lkOwner?: string;
  readonly gfid?: string;

  constructor(
    private readonly r: Request,
    groups: GroupCache,
    lockOwner?: bigint,
  ) {
    this.caller = new KernelCaller(r.uid, r.gid, r.pid, groups);
    this.lkOwner = lockOwner ? lockOwner.toString(16) : undefined;
    this.gfid = r.gfid;
  }

  onInterrupt(fn: () => void): () => void {
    return this.r.onInterrupt(fn);
  }
}

/**
 * The kernel transport's view of the bridge: nodeids name BaseInode records (hints, resolved
 * on the active graph by GFID), file handles name BaseFds, names are bytes, and every
 * request carries its caller. Everything else is the core's.
 */
export class KernelAdapter implements KernelFs {
  private readonly groups: GroupCache;
  private invalidator?: KernelInvalidator;

  constructor(
    private readonly core: BridgeCore,
    private readonly log: Logger,
    private readonly opts: KernelAdapterOptions = DEFAULT_KERNEL_ADAPTER_OPTIONS,
  ) {
    this.groups = new GroupCache(opts.groupsTimeoutMs);
  }

  private get nodes() {
    return this.core.nodes;
  }

  /**
   * Makes the kernel follow what changed behind the mount's back (the core's invalidations)
   * through `kernel` (this adapter's session), off the request path. Returns the way to stop.
   */
  followInvalidations(kernel: KernelNotifier): () => void {
    const inv = (this.invalidator = new KernelInvalidator(this.nodes, kernel, this.log));
    const sub = this.core.invalidations$.subscribe((u) => inv.push(u));
    return () => {
      sub.unsubscribe();
      inv.stop();
    };
  }

  /** What was told to the kernel (for statedumps). */
  dumpInvalidations(): Record<string, unknown> | undefined {
    return this.invalidator?.dump();
  }

  // --- what every request needs -------------------------------------------------

  private req(r: Request, lockOwner?: bigint): Req {
    return new KernelReq(r, this.groups, lockOwner);
  }

  private node(nodeid: number): BaseInode {
    return this.nodes.get(nodeid);
  }

  /** The entry reply for what a request found: the kernel now holds its nodeid once more. */
  private entry(found: Found): Entry {
    const b = this.nodes.remember(found.graph, found.inode);
    return this.entryOf(b.nodeid, found.iatt);
  }

  private entryOf(nodeid: number, attr: Iatt): Entry {
    return { nodeid, generation: 0, entryMs: this.opts.entryTimeoutMs, attrMs: this.opts.attrTimeoutMs, attr };
  }

  private attr(attr: Iatt): Attr {
    return { attrMs: this.opts.attrTimeoutMs, attr };
  }

  // --- the connection ----------------------------------------------------------------

  init(conn: ConnInfo): void {
    this.log.info(`FUSE protocol ${conn.major}.${conn.minor}, max_write ${conn.maxWrite}, flags 0x${conn.flags.toString(16)}`);
  }

  forget(nodeid: number, nlookup: number): void {
    this.nodes.forget(nodeid, nlookup);
  }

  destroy(): void {
    this.nodes.clear();
  }

  // --- names and attributes ----------------------------------------------------------

  async lookup(r: Request, parent: number, name: Buffer): Promise<Entry> {
    const n = nameFromBytes(name);
    const dir = this.node(parent);
    if (n === '.') return this.entry(await this.core.self(this.req(r), dir));
    if (n === '..') return this.entry(await this.core.dotdot(this.req(r), dir));
    try {
      return this.entry(await this.core.lookup(this.req(r), dir, n));
    } catch (e) {
      const err = FopError.from(e);
      if (err.code !== 'ENOENT' || this.opts.negativeTimeoutMs === 0) throw err;
      return { ...this.entryOf(0, NO_ATTR), entryMs: this.opts.negativeTimeoutMs };
    }
  }

  async getattr(r: Request, nodeid: number, fh?: number): Promise<Attr> {
    return this.attr(await this.core.getattr(this.req(r), this.node(nodeid), fh));
  }

  async setattr(r: Request, nodeid: number, set: SetattrIn): Promise<Attr> {
    const { mode, uid, gid, size, atime, mtime } = set;
    return this.attr(await this.core.setattr(this.req(r, set.lockOwner), this.node(nodeid), { mode, uid, gid, size, atime, mtime }, set.fh));
  }

  async readlink(r: Request, nodeid: number): Promise<Buffer> {
    return nameBytes(await this.core.readlink(this.req(r), this.node(nodeid)));
  }

  async symlink(r: Request, parent: number, name: Buffer, target: Buffer): Promise<Entry> {
    return this.entry(await this.core.symlink(this.req(r), this.node(parent), nameFromBytes(name), nameFromBytes(target)));
  }

  async mknod(r: Request, parent: number, name: Buffer, mode: number, rdev: number): Promise<Entry> {
    return this.entry(await this.core.mknod(this.req(r), this.node(parent), nameFromBytes(name), mode, rdev));
  }

  async mkdir(r: Request, parent: number, name: Buffer, mode: number): Promise<Entry> {
    return this.entry(await this.core.mkdir(this.req(r), this.node(parent), nameFromBytes(name), mode));
  }

  unlink(r: Request, parent: number, name: Buffer): Promise<void> {
    return this.core.unlink(this.req(r), this.node(parent), nameFromBytes(name));
  }

  rmdir(r: Request, parent: number, name: Buffer): Promise<void> {
    return this.core.rmdir(this.req(r), this.node(parent), nameFromBytes(name));
  }

  rename(r: Request, parent: number, name: Buffer, newParent: number, newName: Buffer, flags: number): Promise<void> {
    return this.core.rename(this.req(r), this.node(parent), nameFromBytes(name), this.node(newParent), nameFromBytes(newName), flags);
  }

  async link(r: Request, nodeid: number, newParent: number, newName: Buffer): Promise<Entry> {
    return this.entry(await this.core.link(this.req(r), this.node(nodeid), this.node(newParent), nameFromBytes(newName)));
  }

  async statfs(r: Request, nodeid: number) {
    return this.core.statfs(this.req(r), this.node(nodeid));
  }

  access(r: Request, nodeid: number, mask: number): Promise<void> {
    return this.core.access(this.req(r), this.node(nodeid), mask);
  }

  // --- extended attributes ---------------------------------------------------------------

  getxattr(r: Request, nodeid: number, name: Buffer): Promise<Buffer> {
    return this.core.getxattr(this.req(r), this.node(nodeid), nameFromBytes(name));
  }

  async listxattr(r: Request, nodeid: number): Promise<Buffer> {
    const names = await this.core.listxattr(this.req(r), this.node(nodeid));
    return nameBytes(names.map((n) => n + '\0').join(''));
  }

  setxattr(r: Request, nodeid: number, name: Buffer, value: Buffer, flags: number): Promise<void> {
    return this.core.setxattr(this.req(r), this.node(nodeid), nameFromBytes(name), value, flags);
  }

  removexattr(r: Request, nodeid: number, name: Buffer): Promise<void> {
    return this.core.removexattr(this.req(r), this.node(nodeid), nameFromBytes(name));
  }

  // --- files ---------------------------------------------------------------------------------

  async open(r: Request, nodeid: number, flags: number): Promise<Opened> {
    return { fh: await this.core.open(this.req(r), this.node(nodeid), flags), directIo: uncached(flags) };
  }

  async create(r: Request, parent: number, name: Buffer, mode: number, _umask: number, flags: number): Promise<{ entry: Entry; opened: Opened }> {
    const { fh, found } = await this.core.create(this.req(r), this.node(parent), nameFromBytes(name), mode, flags);
    return { entry: this.entry(found), opened: { fh, directIo: uncached(flags) } };
  }

  read(r: Request, _nodeid: number, fh: number, offset: number, size: number): Promise<Buffer> {
    return this.core.read(this.req(r), fh, size, offset);
  }

  write(r: Request, _nodeid: number, fh: number, offset: number, data: Buffer, lockOwner?: bigint): Promise<number> {
    return this.core.write(this.req(r, lockOwner), fh, data, offset);
  }

  flush(r: Request, _nodeid: number, fh: number, lockOwner: bigint): Promise<void> {
    return this.core.flush(this.req(r, lockOwner), fh);
  }

  fsync(r: Request, _nodeid: number, fh: number, datasync: boolean): Promise<void> {
    return this.core.fsync(this.req(r), fh, datasync);
  }

  release(_r: Request, _nodeid: number, fh: number, _flags?: number, _lockOwner?: bigint, _flockUnlock?: boolean): Promise<void> {
    return this.core.release(fh);
  }

  fallocate(r: Request, _nodeid: number, fh: number, offset: number, length: number, mode: number): Promise<void> {
    return this.core.fallocate(this.req(r), fh, mode, offset, length);
  }

  lseek(r: Request, _nodeid: number, fh: number, offset: number, whence: number): Promise<number> {
    return this.core.seek(this.req(r), fh, offset, whence === SEEK_DATA ? 'data' : 'hole');
  }

  copyFileRange(r: Request, _nodeIn: number, fhIn: number, offIn: number, _nodeOut: number, fhOut: number, offOut: number, length: number): Promise<number> {
    return this.core.copyFileRange(this.req(r), fhIn, offIn, fhOut, offOut, length);
  }

  // --- locks ---------------------------------------------------------------------------------

  getlk(r: Request, _nodeid: number, lk: LockIn): Promise<Flock> {
    return this.core.lk(this.req(r, lk.owner), lk.fh, 'get', lk.lock, lk.flock ? 'flock' : 'posix');
  }

  async setlk(r: Request, _nodeid: number, lk: LockIn, wait: boolean): Promise<void> {
    await this.core.lk(this.req(r, lk.owner), lk.fh, wait ? 'wait' : 'set', lk.lock, lk.flock ? 'flock' : 'posix');
  }

  // --- directories -----------------------------------------------------------------------------

  async opendir(r: Request, nodeid: number, _flags?: number): Promise<Opened> {
    return { fh: await this.core.opendir(this.req(r), this.node(nodeid)) };
  }

  readdir(r: Request, _nodeid: number, fh: number, offset: number, sink: DirSink): Promise<void> {
    return this.core.readdir(this.req(r), fh, offset, sink.plus, (e) => {
      const d = { name: nameBytes(e.name), offset: e.offset, ino: e.ino, type: e.type };
      if (!sink.plus || !e.found) return sink.add(d);
      // The kernel takes the nodeid only if the entry fits in its buffer.
      const b = this.nodes.remember(e.found.graph, e.found.inode);
      const taken = sink.add(d, this.entryOf(b.nodeid, e.found.iatt));
      if (!taken) this.nodes.forget(b.nodeid, 1);
      return taken;
    });
  }

  fsyncdir(r: Request, _nodeid: number, fh: number, datasync: boolean): Promise<void> {
    return this.core.fsyncdir(this.req(r), fh, datasync);
  }

  releasedir(_r: Request, _nodeid: number, fh: number): Promise<void> {
    return this.core.releasedir(fh);
  }
}

/** Attributes of a negative entry: the kernel reads none of them. */
const NO_ATTR: Iatt = {
  gfid: '',
  ino: 0,
  mode: 0,
  nlink: 0,
  uid: 0,
  gid: 0,
  rdev: 0,
  size: 0,
  blksize: 0,
  blocks: 0,
  atime: { sec: 0, nsec: 0 },
  mtime: { sec: 0, nsec: 0 },
  ctime: { sec: 0, nsec: 0 },
};
