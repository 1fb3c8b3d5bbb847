import { FopError } from '../core/errors';
import type { Graph } from '../core/graph';
import { Iatt, Name, ROOT_CALLER, Statfs, Timespec } from '../core/types';
import type { BaseFdTable } from './basefd';
import type { Logger } from '../core/log';
import { BridgeCore, BridgeOptions, Req } from './core';
import { splitPath } from './resolver';

/** A time to set: a value, or the server's clock. */
export type TimeArg = Timespec | 'now';

export interface DirEntry {
  readonly name: Name;
  readonly ino: number;
  readonly type: number;
}

/**
 * What a path-based transport asks (libfuse's high-level API, fuse-native): every object
 * by its path, handles (`fh`) as uint32 values, never 0. Paths and names are byte strings.
 * Every call rejects only with FopError.
 */
export interface FuseOps {
  getattr(path: string): Promise<Iatt>;
  access(path: string, mask: number): Promise<void>;
  statfs(path: string): Promise<Statfs>;
  readlink(path: string): Promise<Name>;
  mknod(path: string, mode: number, rdev: number): Promise<void>;
  mkdir(path: string, mode: number): Promise<void>;
  unlink(path: string): Promise<void>;
  rmdir(path: string): Promise<void>;
  symlink(target: Name, path: string): Promise<void>;
  rename(from: string, to: string): Promise<void>;
  link(from: string, to: string): Promise<void>;
  chmod(path: string, mode: number): Promise<void>;
  chown(path: string, uid: number | undefined, gid: number | undefined): Promise<void>;
  utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void>;
  truncate(path: string, size: number): Promise<void>;
  ftruncate(path: string, fh: number, size: number): Promise<void>;
  open(path: string, flags: number): Promise<number>;
  create(path: string, mode: number, flags: number): Promise<number>;
  read(path: string, fh: number, size: number, offset: number): Promise<Buffer>;
  /** `data` is only valid until the promise settles. */
  write(path: string, fh: number, data: Buffer, offset: number): Promise<number>;
  flush(path: string, fh: number): Promise<void>;
  fsync(path: string, fh: number, datasync: boolean): Promise<void>;
  release(path: string, fh: number): Promise<void>;
  opendir(path: string): Promise<number>;
  readdir(path: string): Promise<DirEntry[]>;
  fsyncdir(path: string, fh: number, datasync: boolean): Promise<void>;
  releasedir(path: string, fh: number): Promise<void>;
  getxattr(path: string, name: string): Promise<Buffer>;
  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void>;
  listxattr(path: string): Promise<string[]>;
  removexattr(path: string, name: string): Promise<void>;
}

/** A path-based transport gives no caller: requests run with the daemon's own credentials. */
const DAEMON: Req = { caller: ROOT_CALLER };

/** "/a/b/c" -> ["/a/b", "c"]; the root has no name to change. */
function parentAndName(path: string): [string, Name] {
  const parts = splitPath(path);
  if (parts.length === 0) throw new FopError('EBUSY', 'the root has no name to change');
  const name = parts.pop()!;
  return ['/' + parts.join('/'), name];
}

/**
 * The bridge as a path-based transport sees it: each path is a hint resolved on the active
 * graph, each handle a BaseFd. Everything is done by the core; this only speaks paths.
 */
export class Bridge implements FuseOps {
  readonly core: BridgeCore;

  /** Over a core, or (tests, in-process drivers) over a new core on `graph`. */
  constructor(over: BridgeCore | Graph, log?: Logger, opts?: BridgeOptions) {
    this.core = over instanceof BridgeCore ? over : new BridgeCore(over, log!, opts);
  }

  get basefds(): BaseFdTable {
    return this.core.basefds;
  }

  get active(): Graph {
    return this.core.active;
  }

  activate(g: Graph): void {
    this.core.activate(g);
  }

  sweep(): Promise<void> {
    return this.core.sweep();
  }

  stopSweeping(): void {
    this.core.stopSweeping();
  }

  dump(): Record<string, unknown> {
    return this.core.dump();
  }

  /** libfuse keeps a handle's path current across renames: the core uses it as a fallback hint. */
  private at(path: string, fh: number): number {
    const base = this.core.basefds.get(fh);
    base.path = path;
    return fh;
  }

  getattr(path: string): Promise<Iatt> {
    return this.core.getattr(DAEMON, path);
  }

  access(path: string, mask: number): Promise<void> {
    return this.core.access(DAEMON, path, mask);
  }

  statfs(path: string): Promise<Statfs> {
    return this.core.statfs(DAEMON, path);
  }

  readlink(path: string): Promise<Name> {
    return this.core.readlink(DAEMON, path);
  }

  async mknod(path: string, mode: number, rdev: number): Promise<void> {
    await this.core.mknod(DAEMON, ...parentAndName(path), mode, rdev);
  }

  async mkdir(path: string, mode: number): Promise<void> {
    await this.core.mkdir(DAEMON, ...parentAndName(path), mode);
  }

  async symlink(target: Name, path: string): Promise<void> {
    await this.core.symlink(DAEMON, ...parentAndName(path), target);
  }

  async link(from: string, to: string): Promise<void> {
    await this.core.link(DAEMON, from, ...parentAndName(to));
  }

  unlink(path: string): Promise<void> {
    return this.core.unlink(DAEMON, ...parentAndName(path));
  }

  rmdir(path: string): Promise<void> {
    return this.core.rmdir(DAEMON, ...parentAndName(path));
  }

  rename(from: string, to: string): Promise<void> {
    return this.core.rename(DAEMON, ...parentAndName(from), ...parentAndName(to), 0);
  }

  async chmod(path: string, mode: number): Promise<void> {
    await this.core.setattr(DAEMON, path, { mode });
  }

  async chown(path: string, uid: number | undefined, gid: number | undefined): Promise<void> {
    await this.core.setattr(DAEMON, path, { uid, gid });
  }

  async utimens(path: string, atime: TimeArg, mtime: TimeArg): Promise<void> {
    await this.core.setattr(DAEMON, path, { atime, mtime });
  }

  async truncate(path: string, size: number): Promise<void> {
    await this.core.setattr(DAEMON, path, { size });
  }

  async ftruncate(path: string, fh: number, size: number): Promise<void> {
    await this.core.setattr(DAEMON, path, { size }, this.at(path, fh));
  }

  open(path: string, flags: number): Promise<number> {
    return this.core.open(DAEMON, path, flags);
  }

  async create(path: string, mode: number, flags: number): Promise<number> {
    return (await this.core.create(DAEMON, ...parentAndName(path), mode, flags)).fh;
  }

  read(path: string, fh: number, size: number, offset: number): Promise<Buffer> {
    return this.core.read(DAEMON, this.at(path, fh), size, offset);
  }

  write(path: string, fh: number, data: Buffer, offset: number): Promise<number> {
    return this.core.write(DAEMON, this.at(path, fh), data, offset);
  }

  flush(path: string, fh: number): Promise<void> {
    return this.core.flush(DAEMON, this.at(path, fh));
  }

  fsync(path: string, fh: number, datasync: boolean): Promise<void> {
    return this.core.fsync(DAEMON, this.at(path, fh), datasync);
  }

  release(_path: string | undefined, fh: number): Promise<void> {
    return this.core.release(fh);
  }

  opendir(path: string): Promise<number> {
    return this.core.opendir(DAEMON, path);
  }

  /** libfuse's high-level readdir gets a path but no handle and wants every entry at once. */
  async readdir(path: string): Promise<DirEntry[]> {
    const fh = await this.core.opendir(DAEMON, path);
    try {
      const out: DirEntry[] = [];
      await this.core.readdir(DAEMON, fh, 0, false, (e) => (out.push({ name: e.name, ino: e.ino, type: e.type }), true));
      return out;
    } finally {
      await this.core.releasedir(fh);
    }
  }

  fsyncdir(path: string, fh: number, datasync: boolean): Promise<void> {
    return this.core.fsyncdir(DAEMON, this.at(path, fh), datasync);
  }

  releasedir(_path: string | undefined, fh: number): Promise<void> {
    return this.core.releasedir(fh);
  }

  getxattr(path: string, name: string): Promise<Buffer> {
    return this.core.getxattr(DAEMON, path, name);
  }

  setxattr(path: string, name: string, value: Buffer, flags: number): Promise<void> {
    return this.core.setxattr(DAEMON, path, name, value, flags);
  }

  listxattr(path: string): Promise<string[]> {
    return this.core.listxattr(DAEMON, path);
  }

  removexattr(path: string, name: string): Promise<void> {
    return this.core.removexattr(DAEMON, path, name);
  }
}
