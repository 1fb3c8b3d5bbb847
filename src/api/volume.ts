// xlstack's client API (GlusterFS's gfapi): a volfile's graph used straight from a program,
// without FUSE. Every call is async, names an object by path, and runs with the caller's
// credentials (per call, or the volume's default). Paths are hints resolved on the active
// graph, open files are handles that move to a new graph on their first use after a reload:
// the same bridge core a mount uses, so a reload here behaves as a mount's.
import { constants } from 'fs';
import * as path from 'path';
import { FopError } from '../core/errors';
import type { ReloadResult } from '../core/lifecycle';
import { Logger } from '../core/log';
import { Registry } from '../core/registry';
import { Caller, Iatt, LOCK_TO_EOF, Name, ROOT_CALLER, SetAttr, Statfs, nameBytes, nameFromBytes, nameFromUtf8, nameToUtf8 } from '../core/types';
import type { BridgeCore, Req, SetAttrSize } from '../fuse/core';
import { GraphSwitcher } from '../fuse/switcher';

/** A path or name: a string (UTF-8) or the exact bytes. */
export type PathLike = string | Buffer;

/** Who a call runs as. */
export type Credentials = Caller;

export interface VolumeOptions {
  /** Who calls run as when a call does not say (default: root). */
  readonly caller?: Credentials;
  readonly log?: Logger;
  /** How long a new graph may take to come up, and an old one to go down (ms). */
  readonly startTimeoutMs?: number;
  readonly stopTimeoutMs?: number;
  /** Accept volfiles with types xlstack does not implement (see the CLI's flag). */
  readonly passthroughUnknown?: boolean;
}

export interface Entry {
  /** The name as bytes; `text` is it decoded as UTF-8. */
  readonly name: Buffer;
  readonly text: string;
  readonly ino: number;
  /** File type bits (S_IFREG, S_IFDIR...), 0 if unknown. */
  readonly type: number;
}

export type LockType = 'read' | 'write';

const bytes = (p: PathLike): Name => (Buffer.isBuffer(p) ? nameFromBytes(p) : nameFromUtf8(p));

/** "/a/b" -> ["/a", "b"], as byte strings. */
function split(p: PathLike): [string, Name] {
  const abs = bytes(p);
  if (!abs.startsWith('/')) throw new FopError('EINVAL', `paths are absolute in a volume: ${nameToUtf8(abs)}`);
  const parts = abs.split('/').filter(Boolean);
  const name = parts.pop();
  if (name === undefined) throw new FopError('EBUSY', 'the root has no name to change');
  return ['/' + parts.join('/'), name];
}

/**
 * A volume opened from its volfile. `Volume.open` builds and starts the graph (its children
 * must come up); `reload` re-reads the volfile; `close` releases every open file and takes
 * the graphs down.
 */
export class Volume {
  private closed = false;

  private constructor(
    private readonly switcher: GraphSwitcher,
    private readonly core: BridgeCore,
    private readonly caller: Credentials,
  ) {}

  static async open(volfile: string, opts: VolumeOptions = {}): Promise<Volume> {
    const switcher = new GraphSwitcher({
      volfile: path.resolve(volfile),
      registry: new Registry(),
      log: opts.log ?? Logger.create('warn'),
      passthroughUnknown: opts.passthroughUnknown,
      startTimeoutMs: opts.startTimeoutMs ?? 10_000,
      stopTimeoutMs: opts.stopTimeoutMs ?? 10_000,
      sweepAfterMs: 1000,
    });
    const bridge = await switcher.start();
    return new Volume(switcher, bridge.core, opts.caller ?? ROOT_CALLER);
  }

  private req(as?: Credentials): Req {
    if (this.closed) throw new FopError('EBADF', 'the volume is closed');
    return { caller: as ?? this.caller };
  }

  /** Re-reads the volfile: options change in place, or a new graph takes over; open files keep working. */
  reload(): Promise<ReloadResult> {
    return this.switcher.reload();
  }

  /** The graph serving now. */
  get graph(): number {
    return this.core.active.id;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.core.stopSweeping();
    for (const base of [...this.core.basefds.all()]) await this.core.release(base.id).catch(() => undefined);
    await this.switcher.stopAll();
  }

  // --- objects by path --------------------------------------------------------------

  stat(p: PathLike, as?: Credentials): Promise<Iatt> {
    return this.core.getattr(this.req(as), bytes(p));
  }

  statfs(as?: Credentials): Promise<Statfs> {
    return this.core.statfs(this.req(as), '/');
  }

  async mkdir(p: PathLike, mode = 0o777, as?: Credentials): Promise<Iatt> {
    return (await this.core.mkdir(this.req(as), ...split(p), mode)).iatt;
  }

  unlink(p: PathLike, as?: Credentials): Promise<void> {
    return this.core.unlink(this.req(as), ...split(p));
  }

  rmdir(p: PathLike, as?: Credentials): Promise<void> {
    return this.core.rmdir(this.req(as), ...split(p));
  }

  /** flags: RENAME_NOREPLACE, RENAME_EXCHANGE (src/core/types), or 0. */
  rename(from: PathLike, to: PathLike, flags = 0, as?: Credentials): Promise<void> {
    return this.core.rename(this.req(as), ...split(from), ...split(to), flags);
  }

  async link(existing: PathLike, p: PathLike, as?: Credentials): Promise<Iatt> {
    return (await this.core.link(this.req(as), bytes(existing), ...split(p))).iatt;
  }

  async symlink(target: PathLike, p: PathLike, as?: Credentials): Promise<Iatt> {
    return (await this.core.symlink(this.req(as), ...split(p), bytes(target))).iatt;
  }

  async readlink(p: PathLike, as?: Credentials): Promise<Buffer> {
    return nameBytes(await this.core.readlink(this.req(as), bytes(p)));
  }

  /** chmod, chown, utimens and truncate in one: only the fields given change. */
  setattr(p: PathLike, attr: SetAttrSize, as?: Credentials): Promise<Iatt> {
    return this.core.setattr(this.req(as), bytes(p), attr);
  }

  getxattr(p: PathLike, name: string, as?: Credentials): Promise<Buffer> {
    return this.core.getxattr(this.req(as), bytes(p), nameFromUtf8(name));
  }

  /** flags: XATTR_CREATE (1), XATTR_REPLACE (2), or 0. */
  setxattr(p: PathLike, name: string, value: Buffer, flags = 0, as?: Credentials): Promise<void> {
    return this.core.setxattr(this.req(as), bytes(p), nameFromUtf8(name), value, flags);
  }

  async listxattr(p: PathLike, as?: Credentials): Promise<string[]> {
    return (await this.core.listxattr(this.req(as), bytes(p))).map(nameToUtf8);
  }

  removexattr(p: PathLike, name: string, as?: Credentials): Promise<void> {
    return this.core.removexattr(this.req(as), bytes(p), nameFromUtf8(name));
  }

  /** Every entry of a directory but "." and "..". */
  async readdir(p: PathLike, as?: Credentials): Promise<Entry[]> {
    const req = this.req(as);
    const fh = await this.core.opendir(req, bytes(p));
    try {
      const out: Entry[] = [];
      await this.core.readdir(req, fh, 0, false, (e) => {
        if (e.name !== '.' && e.name !== '..') out.push({ name: nameBytes(e.name), text: nameToUtf8(e.name), ino: e.ino, type: e.type });
        return true;
      });
      return out;
    } finally {
      await this.core.releasedir(fh);
    }
  }

  // --- files ---------------------------------------------------------------------------

  /** open(2): flags as fs.constants (O_CREAT creates with `mode`). */
  async open(p: PathLike, flags = constants.O_RDONLY, mode = 0o666, as?: Credentials): Promise<File> {
    const req = this.req(as);
    const fh =
      flags & constants.O_CREAT
        ? await this.core.create(req, ...split(p), mode, flags).then((r) => r.fh)
        : await this.core.open(req, bytes(p), flags);
    return new File(this.core, fh, req.caller, (flags & constants.O_APPEND) !== 0);
  }

  /** open(O_CREAT|O_EXCL|O_RDWR). */
  create(p: PathLike, mode = 0o666, as?: Credentials): Promise<File> {
    return this.open(p, constants.O_CREAT | constants.O_EXCL | constants.O_RDWR, mode, as);
  }
}

let nextOwner = 1;

/**
 * An open file. Reads and writes go at an explicit position (pread/pwrite) or at the
 * file's own (read/write move it, as a file descriptor's would). Locks are POSIX byte-range
 * locks owned by this file object, released at close.
 */
export class File {
  /** The position read() and write() use. */
  position = 0;
  private readonly owner = `api-${process.pid}-${nextOwner++}`;
  private closed = false;

  constructor(
    private readonly core: BridgeCore,
    private readonly fh: number,
    private readonly caller: Credentials,
    private readonly appending: boolean,
  ) {}

  private req(as?: Credentials): Req {
    if (this.closed) throw new FopError('EBADF', 'the file is closed');
    return { caller: as ?? this.caller, lkOwner: this.owner };
  }

  pread(size: number, position: number, as?: Credentials): Promise<Buffer> {
    return this.core.read(this.req(as), this.fh, size, position);
  }

  pwrite(data: Buffer, position: number, as?: Credentials): Promise<number> {
    return this.core.write(this.req(as), this.fh, data, position);
  }

  async read(size: number, as?: Credentials): Promise<Buffer> {
    const data = await this.pread(size, this.position, as);
    this.position += data.length;
    return data;
  }

  /** At the position; on a file opened O_APPEND, at its end (storage appends). */
  async write(data: Buffer, as?: Credentials): Promise<number> {
    const n = await this.pwrite(data, this.position, as);
    this.position = this.appending ? (await this.stat(as)).size : this.position + n;
    return n;
  }

  stat(as?: Credentials): Promise<Iatt> {
    return this.core.getattr(this.req(as), '/', this.fh);
  }

  /** fchmod, fchown, futimens, ftruncate. */
  setattr(attr: SetAttr & { size?: number }, as?: Credentials): Promise<Iatt> {
    return this.core.setattr(this.req(as), '/', attr, this.fh);
  }

  fsync(datasync = false, as?: Credentials): Promise<void> {
    return this.core.fsync(this.req(as), this.fh, datasync);
  }

  /** Takes a lock on [start, start+length) (length 0: to the end); `wait` blocks until it is free (EAGAIN otherwise). */
  async lock(type: LockType, start = 0, length = 0, wait = false, as?: Credentials): Promise<void> {
    const end = length === 0 ? LOCK_TO_EOF : start + length - 1;
    await this.core.lk(this.req(as), this.fh, wait ? 'wait' : 'set', { type, start, end, pid: process.pid }, 'posix');
  }

  async unlock(start = 0, length = 0, as?: Credentials): Promise<void> {
    const end = length === 0 ? LOCK_TO_EOF : start + length - 1;
    await this.core.lk(this.req(as), this.fh, 'set', { type: 'unlock', start, end, pid: process.pid }, 'posix');
  }

  /** Flushes (dropping this file's locks) and releases it. */
  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.core.flush(this.req(), this.fh);
    } finally {
      this.closed = true;
      await this.core.release(this.fh);
    }
  }
}
