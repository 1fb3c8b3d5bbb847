// The portable transport: libfuse2's high-level, path-based API through fuse-native. It turns
// fuse-native's callback API (and its quirks: no caller credentials, UTF-8 names, utimens
// with the access time twice, .fuse_hidden renames, a thread hand-off per request) into
// the path-based FuseOps the bridge offers. Nothing else knows fuse-native.
import { execFile } from 'child_process';
import { FopError } from '../core/errors';
import type { Logger } from '../core/log';
import { Iatt, MAX_OFFSET, Statfs, Timespec, nameFromUtf8, nameToUtf8 } from '../core/types';
import { Bridge, FuseOps, TimeArg } from './bridge';
import type { MountSpec, Mounted } from './mounted';

/** fuse-native (and libfuse2 under it), loaded on first use: the kernel transport needs neither. */
function loadFuseNative(): new (mnt: string, handlers: object, opts: object) => { mount(cb: (err: Error | null) => void): void } {
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    return require('fuse-native');
  } catch (e) {
    throw new Error(`the fuse-native transport cannot load (${(e as Error).message.split('\n')[0]}); install libfuse2 (Debian: apt-get install libfuse2)`);
  }
}

interface MountOptions {
  /** Shown as the mount's source in /proc/mounts (fsname=...). */
  readonly fsname: string;
  /** After each request, keep polling for the next one this long (µs); 0: never. */
  readonly busyPollUs: number;
  readonly log: Logger;
}

/**
 * Adaptive busy-polling. fuse-native hands each request to the JS thread with a wake-up;
 * waking a sleeping thread costs tens of µs here, a large part of a request's cost. After
 * a request the loop stays awake (polling, not blocking) for a short window, so the next
 * request of a burst finds it running; once idle for the window, it sleeps again.
 */
class BusyPoll {
  private deadline = 0n;
  private polling = false;
  private readonly windowNs: bigint;

  constructor(windowUs: number) {
    this.windowNs = BigInt(Math.max(0, Math.round(windowUs))) * 1000n;
  }

  kick(): void {
    if (this.windowNs === 0n) return;
    this.deadline = process.hrtime.bigint() + this.windowNs;
    if (this.polling) return;
    this.polling = true;
    setImmediate(this.poll);
  }

  private readonly poll = (): void => {
    if (process.hrtime.bigint() < this.deadline) setImmediate(this.poll);
    else this.polling = false;
  };
}

const O_RDWR = 2;
const ERANGE = 34;
const EFBIG = 27;
/** libfuse2's largest write; big_writes + max_write let writes arrive in pieces this big. */
const MAX_WRITE = 128 * 1024;
/**
 * fuse-native turns a timespec into milliseconds; UTIME_NOW and UTIME_OMIT (tv_sec 0,
 * tv_nsec 2^30-1 / 2^30-2) both arrive as this value. Both mean "now" for `touch`.
 */
const UTIME_SENTINEL_MS = 1073;

const errnoOf = (e: unknown): number => -FopError.from(e).errno;

/**
 * Without hard_remove (which breaks reading an unlinked open file through fuse-native),
 * libfuse turns unlink of an open file into a rename to `.fuse_hidden<16 hex>` and removes
 * that name on release. To the user such a file is unlinked: no name, no link.
 */
const HIDDEN = /^\.fuse_hidden[0-9a-f]{16}$/;
const isHidden = (path: string): boolean => HIDDEN.test(path.slice(path.lastIndexOf('/') + 1));

function msOf(t: Timespec): number {
  return t.sec * 1000 + Math.floor(t.nsec / 1e6);
}

/** fuse-native passes st_ino as 32 bits: fold a larger inode number instead of truncating it. */
function ino32(ino: number): number {
  if (ino <= 0xffffffff) return ino;
  return (ino % 2 ** 32 ^ Math.floor(ino / 2 ** 32)) >>> 0 || 1;
}

function statOf(a: Iatt) {
  return {
    mode: a.mode,
    uid: a.uid,
    gid: a.gid,
    size: a.size,
    dev: 0,
    // fuse-native turns a link count of 0 into 1 (`nlink || 1`); 2^32 is truthy and wraps
    // to 0 in the 32-bit array it is written to.
    nlink: a.nlink === 0 ? 2 ** 32 : a.nlink,
    ino: ino32(a.ino),
    rdev: a.rdev,
    blksize: a.blksize,
    blocks: a.blocks,
    atime: msOf(a.atime),
    mtime: msOf(a.mtime),
    ctime: msOf(a.ctime),
  };
}

/** fuse-native passes statfs fields as 32 bits: trade block count for block size. */
function statfsOf(s: Statfs) {
  let { blocks, bfree, bavail, bsize, frsize } = s;
  while (blocks > 0xffffffff) {
    blocks = Math.floor(blocks / 2);
    bfree = Math.floor(bfree / 2);
    bavail = Math.floor(bavail / 2);
    bsize *= 2;
    frsize *= 2;
  }
  const clamp = (n: number) => Math.min(n, 0xffffffff);
  return { ...s, blocks, bfree, bavail, bsize, frsize, files: clamp(s.files), ffree: clamp(s.ffree), favail: clamp(s.favail) };
}

const timeOf = (ms: number): TimeArg =>
  ms === UTIME_SENTINEL_MS ? 'now' : { sec: Math.floor(ms / 1000), nsec: (ms % 1000) * 1e6 };

/** fuse-native gives -1 (as uint32) for "leave the owner/group as it is". */
const idOf = (id: number): number | undefined => (id === 0xffffffff ? undefined : id);

type Cb = (code: number, ...rest: unknown[]) => void;

/** How long rmdir waits for hidden files whose release is on its way. */
const HIDDEN_RELEASE_WAIT_MS = 250;

/**
 * A file closed just before its directory is removed may still be hidden: the kernel sends
 * the release (on which libfuse removes the hidden name) after close returns. If a
 * directory holds nothing but hidden files, wait a little for those releases. (Removing the
 * hidden names ourselves would cut libfuse's path to handles that are still open.)
 */
async function rmdirPastHidden(ops: FuseOps, path: string): Promise<void> {
  const end = Date.now() + HIDDEN_RELEASE_WAIT_MS;
  for (;;) {
    try {
      return await ops.rmdir(path);
    } catch (e) {
      if (FopError.from(e).code !== 'ENOTEMPTY' || Date.now() > end) throw e;
      const names = (await ops.readdir(path)).map((d) => d.name).filter((n) => n !== '.' && n !== '..');
      if (!names.every((n) => HIDDEN.test(n))) throw e;
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

/**
 * fuse-native decodes every path and name as UTF-8 (a name with invalid UTF-8 bytes is
 * altered before it reaches JS: a limit of this transport); the bridge speaks byte strings.
 */
function utf8(ops: FuseOps): FuseOps {
  const p = nameFromUtf8;
  return {
    getattr: (a) => ops.getattr(p(a)),
    access: (a, m) => ops.access(p(a), m),
    statfs: (a) => ops.statfs(p(a)),
    readlink: async (a) => nameToUtf8(await ops.readlink(p(a))),
    mknod: (a, m, r) => ops.mknod(p(a), m, r),
    mkdir: (a, m) => ops.mkdir(p(a), m),
    unlink: (a) => ops.unlink(p(a)),
    rmdir: (a) => ops.rmdir(p(a)),
    symlink: (t, a) => ops.symlink(p(t), p(a)),
    rename: (a, b) => ops.rename(p(a), p(b)),
    link: (a, b) => ops.link(p(a), p(b)),
    chmod: (a, m) => ops.chmod(p(a), m),
    chown: (a, u, g) => ops.chown(p(a), u, g),
    utimens: (a, at, mt) => ops.utimens(p(a), at, mt),
    truncate: (a, n) => ops.truncate(p(a), n),
    ftruncate: (a, fh, n) => ops.ftruncate(p(a), fh, n),
    open: (a, f) => ops.open(p(a), f),
    create: (a, m, f) => ops.create(p(a), m, f),
    read: (a, fh, n, o) => ops.read(p(a), fh, n, o),
    write: (a, fh, d, o) => ops.write(p(a), fh, d, o),
    flush: (a, fh) => ops.flush(p(a), fh),
    fsync: (a, fh, d) => ops.fsync(p(a), fh, d),
    release: (a, fh) => ops.release(p(a), fh),
    opendir: (a) => ops.opendir(p(a)),
    readdir: async (a) => (await ops.readdir(p(a))).map((e) => ({ ...e, name: nameToUtf8(e.name) })),
    fsyncdir: (a, fh, d) => ops.fsyncdir(p(a), fh, d),
    releasedir: (a, fh) => ops.releasedir(p(a), fh),
    getxattr: (a, n) => ops.getxattr(p(a), p(n)),
    setxattr: (a, n, v, f) => ops.setxattr(p(a), p(n), v, f),
    listxattr: async (a) => (await ops.listxattr(p(a))).map(nameToUtf8),
    removexattr: (a, n) => ops.removexattr(p(a), p(n)),
  };
}

/** Wires FuseOps into fuse-native's handler table. */
function handlers(ops: FuseOps, log: Logger) {
  const run = <T>(op: string, p: Promise<T>, ok: (v: T) => unknown[], cb: Cb) =>
    p.then(
      (v) => cb(0, ...ok(v)),
      (e) => {
        if (!(e instanceof FopError)) log.error(`${op}: ${(e as Error).stack ?? e}`);
        cb(errnoOf(e));
      },
    );
  const none = () => [];
  return {
    getattr: (p: string, cb: Cb) =>
      run('getattr', ops.getattr(p), (a) => [statOf(isHidden(p) ? { ...a, nlink: Math.max(0, a.nlink - 1) } : a)], cb),
    access: (p: string, mask: number, cb: Cb) => run('access', ops.access(p, mask), none, cb),
    statfs: (p: string, cb: Cb) => run('statfs', ops.statfs(p), (s) => [statfsOf(s)], cb),
    readlink: (p: string, cb: Cb) => run('readlink', ops.readlink(p), (t) => [t], cb),
    mknod: (p: string, mode: number, dev: number, cb: Cb) => run('mknod', ops.mknod(p, mode, dev), none, cb),
    mkdir: (p: string, mode: number, cb: Cb) => run('mkdir', ops.mkdir(p, mode), none, cb),
    unlink: (p: string, cb: Cb) => run('unlink', ops.unlink(p), none, cb),
    rmdir: (p: string, cb: Cb) => run('rmdir', rmdirPastHidden(ops, p), none, cb),
    // fuse-native names symlink's arguments (src, dest): the target, then the new link.
    symlink: (target: string, p: string, cb: Cb) => run('symlink', ops.symlink(target, p), none, cb),
    rename: (a: string, b: string, cb: Cb) => run('rename', ops.rename(a, b), none, cb),
    link: (a: string, b: string, cb: Cb) => run('link', ops.link(a, b), none, cb),
    chmod: (p: string, mode: number, cb: Cb) => run('chmod', ops.chmod(p, mode), none, cb),
    chown: (p: string, uid: number, gid: number, cb: Cb) => run('chown', ops.chown(p, idOf(uid), idOf(gid)), none, cb),
    // fuse-native passes the access time twice (the modification time never reaches JS).
    utimens: (p: string, atime: number, _mtime: number, cb: Cb) =>
      run('utimens', ops.utimens(p, timeOf(atime), timeOf(atime)), none, cb),
    truncate: (p: string, size: number, cb: Cb) => (size > MAX_OFFSET ? cb(-EFBIG) : run('truncate', ops.truncate(p, size), none, cb)),
    ftruncate: (p: string, fh: number, size: number, cb: Cb) =>
      size > MAX_OFFSET ? cb(-EFBIG) : run('ftruncate', ops.ftruncate(p, fh, size), none, cb),
    open: (p: string, flags: number, cb: Cb) => run('open', ops.open(p, flags), (fh) => [fh], cb),
    // fuse-native passes no open flags to create: read-write serves every caller.
    create: (p: string, mode: number, cb: Cb) => run('create', ops.create(p, mode, O_RDWR), (fh) => [fh], cb),
    // Offsets arrive as doubles up to 2^64: past MAX_OFFSET (which the engine never sees)
    // a read is at EOF and a write EFBIG, as the kernel transport and ext4 answer.
    read: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) =>
      pos >= MAX_OFFSET
        ? cb(0)
        : ops.read(p, fh, Math.min(len, MAX_OFFSET - pos), pos).then(
            (data) => cb(data.copy(buf, 0, 0, Math.min(len, data.length))),
            (e) => cb(errnoOf(e)),
          ),
    write: (p: string, fh: number, buf: Buffer, len: number, pos: number, cb: (n: number) => void) =>
      pos >= MAX_OFFSET ? cb(-EFBIG) : ops.write(p, fh, buf.subarray(0, Math.min(len, MAX_OFFSET - pos)), pos).then(cb, (e) => cb(errnoOf(e))),
    flush: (p: string, fh: number, cb: Cb) => run('flush', ops.flush(p, fh), none, cb),
    // The order is (path, datasync, fh), whatever fuse-native's README says.
    fsync: (p: string, datasync: number, fh: number, cb: Cb) => run('fsync', ops.fsync(p, fh, !!datasync), none, cb),
    fsyncdir: (p: string, datasync: number, fh: number, cb: Cb) => run('fsyncdir', ops.fsyncdir(p, fh, !!datasync), none, cb),
    release: (p: string, fh: number, cb: Cb) => run('release', ops.release(p, fh), none, cb),
    // opendir's second argument is the (unset) fh, not the flags.
    opendir: (p: string, _fh: number, cb: Cb) => run('opendir', ops.opendir(p), (fh) => [fh], cb),
    readdir: (p: string, cb: Cb) =>
      run(
        'readdir',
        ops.readdir(p).then((all) => all.filter((e) => !HIDDEN.test(e.name))),
        (entries) => [entries.map((e) => e.name), entries.map((e) => ({ mode: e.type, ino: ino32(e.ino) }))],
        cb,
      ),
    releasedir: (p: string, fh: number, cb: Cb) => run('releasedir', ops.releasedir(p, fh), none, cb),
    setxattr: (p: string, name: string, value: Buffer, _pos: number, flags: number, cb: Cb) =>
      run('setxattr', ops.setxattr(p, name, value, flags), none, cb),
    removexattr: (p: string, name: string, cb: Cb) => run('removexattr', ops.removexattr(p, name), none, cb),
    // getxattr/listxattr need the caller's buffer size: see the XlFuse overrides below.
    getxattr: () => undefined,
    listxattr: () => undefined,
  };
}

/** Every handler keeps the loop polling from the request's arrival until shortly after its reply. */
function withPolling<H extends Record<string, (...args: never[]) => unknown>>(hs: H, poll: BusyPoll): H {
  const out: Record<string, unknown> = {};
  for (const [name, h] of Object.entries(hs)) {
    out[name] = (...args: unknown[]) => {
      poll.kick();
      const cb = args[args.length - 1] as (...r: unknown[]) => void;
      args[args.length - 1] = (...r: unknown[]) => {
        cb(...r);
        poll.kick();
      };
      return (h as (...a: unknown[]) => unknown)(...args);
    };
  }
  return out as H;
}

/**
 * fuse-native with the mount options it does not know (big_writes, max_write, use_ino,
 * auto_unmount, nonempty) and xattr replies that respect the kernel's buffer size
 * (fuse-native would report more bytes than the buffer holds).
 */
const makeXlFuse = (Fuse: ReturnType<typeof loadFuseNative>) => class XlFuse extends Fuse {
  constructor(
    mnt: string,
    ops: FuseOps,
    private readonly mountOpts: MountOptions,
    fuseOpts: object,
  ) {
    const poll = new BusyPoll(mountOpts.busyPollUs);
    const xops = utf8(ops);
    super(mnt, withPolling(handlers(xops, mountOpts.log), poll), fuseOpts);
    this.poll = poll;
    this.xops = xops;
  }

  private readonly poll: BusyPoll;
  private readonly xops: FuseOps;

  _fuseOptions(): string {
    const fsname = this.mountOpts.fsname.replace(/[,\\]/g, '_');
    return (
      '-o' +
      [
        'allow_other',
        'default_permissions',
        'big_writes',
        `max_write=${MAX_WRITE}`,
        'use_ino',
        'auto_unmount',
        'nonempty',
        // Not 0: with default_permissions the kernel would then fetch the attributes of
        // every directory of every path it walks.
        'attr_timeout=1',
        'entry_timeout=1',
        `fsname=${fsname}`,
        'subtype=xlstack',
      ].join(',')
    );
  }

  _op_getxattr(signal: (code: number, buf: ArrayBufferLike) => void, path: string, name: string, valueBuf: Buffer) {
    this.poll.kick();
    this.xops.getxattr(path, name).then(
      (value) => {
        if (valueBuf.length === 0) return signal(value.length, valueBuf.buffer);
        if (value.length > valueBuf.length) return signal(-ERANGE, valueBuf.buffer);
        value.copy(valueBuf);
        signal(value.length, valueBuf.buffer);
      },
      (e) => signal(errnoOf(e), valueBuf.buffer),
    );
  }

  _op_listxattr(signal: (code: number, buf: ArrayBufferLike) => void, path: string, listBuf: Buffer) {
    this.poll.kick();
    this.xops.listxattr(path).then(
      (names) => {
        const packed = Buffer.concat(names.map((n) => Buffer.from(n + '\0')));
        if (listBuf.length === 0) return signal(packed.length, listBuf.buffer);
        if (packed.length > listBuf.length) return signal(-ERANGE, listBuf.buffer);
        packed.copy(listBuf);
        signal(packed.length, listBuf.buffer);
      },
      (e) => signal(errnoOf(e), listBuf.buffer),
    );
  }
};

/** How long the kernel waits for any one request before failing it (libfuse's own timeout). */
const OP_TIMEOUT_MS = 60_000;
/** How often the mount table is read to notice an unmount from outside (libfuse says nothing). */
const MOUNT_CHECK_MS = 2000;

/** Mounts `ops` on `mountpoint`; resolves once the kernel has sent INIT. */
function mountFuse(mountpoint: string, ops: FuseOps, opts: MountOptions): Promise<void> {
  const XlFuse = makeXlFuse(loadFuseNative());
  const fuse = new XlFuse(mountpoint, ops, opts, { timeout: OP_TIMEOUT_MS });
  return new Promise((resolve, reject) => {
    fuse.mount((err: Error | null) => (err ? reject(new Error(`mounting ${mountpoint} failed: ${err.message}`)) : resolve()));
  });
}

/**
 * Serves a bridge core through fuse-native. libfuse does not say when its mount goes: the
 * mount table is checked, and after a lazy unmount (whose name is gone at once) the mount
 * ends when its last open handle is released.
 */
export async function mountNativeTransport(spec: MountSpec, isMounted: () => boolean): Promise<Mounted> {
  const { mountpoint, core, log } = spec;
  await mountFuse(mountpoint, new Bridge(core), { fsname: spec.fsname, busyPollUs: spec.busyPollUs, log });
  let detached = false;
  const ended = new Promise<string>((resolve) => {
    const check = setInterval(() => {
      if (!detached && isMounted()) return;
      if (detached && core.basefds.size > 0) return;
      clearInterval(check);
      resolve(detached ? 'detached, and its last open file released' : 'unmounted');
    }, MOUNT_CHECK_MS);
  });
  return {
    transport: 'fuse-native',
    mountpoint,
    ended,
    unmount: async (lazy) => {
      await fusermountU(mountpoint, lazy);
      detached = lazy;
    },
    dump: () => ({ transport: 'fuse-native' }),
  };
}

/** `fusermount -u` (or `-uz`): the mount's own daemon notices and stops serving. */
export function fusermountU(mountpoint: string, lazy: boolean): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('fusermount', [lazy ? '-uz' : '-u', mountpoint], { timeout: 10_000 }, (err, _out, stderr) => {
      if (err) reject(new Error((stderr || err.message).trim()));
      else resolve();
    });
  });
}
