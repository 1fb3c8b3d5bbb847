// Mounting a FUSE filesystem without libfuse. As root: open /dev/fuse and mount(2) it; the
// kernel queues INIT and mount returns at once (the session answers INIT). Otherwise:
// fusermount3 (setuid root) mounts it and passes the fd back over a socketpair.
import { spawn, execFile } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { constants } from 'os';
import { dev, MNT_DETACH, MS_NODEV, MS_NOSUID, SOCK_STREAM } from './dev';

export interface KernelMountOptions {
  /** The mount's source, as mountinfo and df show it. */
  readonly fsname: string;
  /** The type becomes fuse.<subtype> (default 'xlstack'). */
  readonly subtype?: string;
  /** Let users other than the mounter in (non-root: needs user_allow_other in /etc/fuse.conf). */
  readonly allowOther?: boolean;
  /** Let the kernel check permissions from the attributes. */
  readonly defaultPermissions?: boolean;
  /** 'auto' (default): mount(2) as root, fusermount3 otherwise. */
  readonly via?: 'auto' | MountVia;
  /** Bound on fusermount3 (default 10 s). */
  readonly timeoutMs?: number;
}

export type MountVia = 'mount' | 'fusermount';

export interface KernelMount {
  /** The /dev/fuse fd: non-blocking, close-on-exec; hand it to a KernelSession. */
  readonly fd: number;
  /** The absolute mountpoint. */
  readonly mountpoint: string;
  readonly via: MountVia;
  /** unmountKernel() of this mount, the way it was mounted. */
  unmount(lazy?: boolean): Promise<void>;
}

/** A mount or unmount that failed; `code` is the errno name when there is one. */
export class MountError extends Error {
  constructor(
    message: string,
    readonly code?: string,
  ) {
    super(message);
    this.name = 'MountError';
  }
}

const DEFAULT_TIMEOUT_MS = 10_000;
const FUSE_DEVICE = '/dev/fuse';
const FUSERMOUNTS = ['fusermount3', 'fusermount'];

const isRoot = (): boolean => process.getuid?.() === 0;
const errnoName = (neg: number): string => Object.entries(constants.errno).find(([, n]) => n === -neg)?.[0] ?? `errno ${-neg}`;

/** Mounts an empty FUSE filesystem on `mountpoint` and returns its device fd. */
export async function mountKernel(mountpoint: string, opts: KernelMountOptions): Promise<KernelMount> {
  const subtype = opts.subtype ?? 'xlstack';
  // Option strings are comma-separated, and fusermount3 unescapes backslashes.
  for (const [what, v] of [
    ['fsname', opts.fsname],
    ['subtype', subtype],
  ]) {
    if (!v || /[,\\\0\n]/.test(v)) throw new MountError(`invalid ${what} ${JSON.stringify(v)}: must be non-empty, without commas, backslashes, NUL or newlines`, 'EINVAL');
  }
  const mnt = resolveMountpoint(mountpoint);
  const st = statMountpoint(mnt);
  const via = opts.via === undefined || opts.via === 'auto' ? (isRoot() ? 'mount' : 'fusermount') : opts.via;
  const fd = via === 'mount' ? mountDirect(mnt, st, subtype, opts) : await mountFusermount(mnt, subtype, opts);
  return { fd, mountpoint: mnt, via, unmount: (lazy = false) => unmountKernel(mnt, lazy, via) };
}

/**
 * Unmounts `mountpoint` (lazy: detach now, finish when no longer busy). As root umount2(2),
 * otherwise fusermount3 -u. A synchronous unmount may need the serving session's answers: it
 * runs off the event loop, and a session serving the mount from this process keeps serving.
 */
export async function unmountKernel(mountpoint: string, lazy = false, via: MountVia = isRoot() ? 'mount' : 'fusermount'): Promise<void> {
  const mnt = path.resolve(mountpoint);
  if (via === 'fusermount') {
    const bin = findFusermount();
    if (!bin) throw new MountError(`cannot unmount ${mnt}: not root and no fusermount3 on PATH`, 'EPERM');
    await run(bin, ['-u', ...(lazy ? ['-z'] : []), '--', mnt], DEFAULT_TIMEOUT_MS, `unmount ${mnt}`);
    return;
  }
  const r = await dev.umount2(mnt, lazy ? MNT_DETACH : 0);
  if (r === 0) return;
  const code = errnoName(r);
  if (r === -constants.errno.EINVAL) throw new MountError(`cannot unmount ${mnt}: not a mountpoint`, code);
  if (r === -constants.errno.EBUSY) throw new MountError(`cannot unmount ${mnt}: busy (open files or a working directory inside); a lazy unmount detaches it now`, code);
  throw new MountError(`cannot unmount ${mnt}: ${code}`, code);
}

/**
 * The mountpoint as mountinfo will name it, refused if something is mounted there already
 * (mount(2) would stack a second filesystem on top, fusermount3 would refuse). Decided from
 * mountinfo before anything touches the path: a stat of a FUSE mount this process serves
 * would wait on itself.
 */
function resolveMountpoint(mountpoint: string): string {
  const abs = path.resolve(mountpoint);
  const busy = (p: string): MountError => new MountError(`mountpoint ${p} is busy: something is mounted there already (unmount it first)`, 'EBUSY');
  let p = abs;
  try {
    p = path.join(fs.realpathSync(path.dirname(abs)), path.basename(abs));
  } catch {
    // the parent is missing: statMountpoint says so
  }
  if (isMountpoint(p)) throw busy(p);
  let real = p;
  try {
    if (fs.lstatSync(p).isSymbolicLink()) real = fs.realpathSync(p);
  } catch {
    return p;
  }
  if (real !== p && isMountpoint(real)) throw busy(real);
  return real;
}

function statMountpoint(mnt: string): fs.Stats {
  try {
    return fs.statSync(mnt);
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOTCONN') throw new MountError(`${mnt} is a FUSE mount whose server is gone: unmount it first (umount -l)`, code);
    throw new MountError(`mountpoint ${mnt}: ${code === 'ENOENT' ? 'does not exist' : (e as Error).message}`, code);
  }
}

/** The mountinfo lines of mounts on `mnt` in this namespace (mountinfo escapes spaces and the like as \ooo). */
function mountinfoAt(mnt: string): string[][] {
  let info: string;
  try {
    info = fs.readFileSync('/proc/self/mountinfo', 'utf8');
  } catch {
    return [];
  }
  const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  return info
    .split('\n')
    .map((l) => l.split(' '))
    .filter((f) => f.length > 4 && unescape(f[4]) === mnt);
}

function isMountpoint(mnt: string): boolean {
  return mountinfoAt(mnt).length > 0;
}

/**
 * How far the kernel reads ahead of a sequential reader of the mount: as far as one request
 * may read (max_pages 256). The kernel starts every FUSE mount at 128 KiB; one request at a
 * time of that size is what held cold sequential reads back (measured: 0.6-0.8 GB/s at 128
 * KiB, 1.0-1.2 GB/s at 1 MiB on a local volume).
 */
export const READ_AHEAD_KB = 1024;

/**
 * Sets the read-ahead of the mount on `mnt` (its backing device's, in sysfs), found from
 * mountinfo, never by a stat that this process would have to answer. Only after INIT: the
 * kernel's INIT handling would cap it again. Returns why not when it cannot (not root, no
 * sysfs): a slower mount, not a failed one.
 */
export function setReadAhead(mnt: string, kib = READ_AHEAD_KB): string | undefined {
  const lines = mountinfoAt(mnt);
  const dev = lines[lines.length - 1]?.[2];
  if (!dev || !/^\d+:\d+$/.test(dev)) return `no mount on ${mnt} in mountinfo`;
  try {
    fs.writeFileSync(`/sys/class/bdi/${dev}/read_ahead_kb`, `${kib}\n`);
    return undefined;
  } catch (e) {
    return `read-ahead of ${mnt} left as it is: ${(e as Error).message}`;
  }
}

function openDevice(): number {
  try {
    return fs.openSync(FUSE_DEVICE, fs.constants.O_RDWR | fs.constants.O_NONBLOCK); // Node adds O_CLOEXEC
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENODEV' || code === 'ENXIO') {
      throw new MountError(`no ${FUSE_DEVICE}: the fuse kernel module is not loaded (modprobe fuse), or this container has no FUSE device`, code);
    }
    if (code === 'EACCES' || code === 'EPERM') {
      throw new MountError(`permission denied opening ${FUSE_DEVICE}: a permission problem (the device's mode/owner, or the container's device policy), not a missing module`, code);
    }
    throw new MountError(`cannot open ${FUSE_DEVICE}: ${(e as Error).message}`, code);
  }
}

function mountDirect(mnt: string, st: fs.Stats, subtype: string, opts: KernelMountOptions): number {
  const fd = openDevice();
  const data = [
    `fd=${fd}`,
    `rootmode=${(st.mode & fs.constants.S_IFMT).toString(8)}`,
    `user_id=${process.getuid?.() ?? 0}`,
    `group_id=${process.getgid?.() ?? 0}`,
    ...(opts.allowOther ? ['allow_other'] : []),
    ...(opts.defaultPermissions ? ['default_permissions'] : []),
  ].join(',');
  const flags = MS_NOSUID | MS_NODEV;
  let r = dev.mount(opts.fsname, mnt, `fuse.${subtype}`, flags, data);
  // Kernels without subtype support know only plain "fuse" (libfuse retries the same way).
  if (r === -constants.errno.ENODEV) r = dev.mount(opts.fsname, mnt, 'fuse', flags, `${data},subtype=${subtype}`);
  if (r === 0) return fd;
  fs.closeSync(fd);
  const code = errnoName(r);
  if (r === -constants.errno.EBUSY) throw new MountError(`mountpoint ${mnt} is busy: something is mounted there already`, code);
  if (r === -constants.errno.EPERM) throw new MountError(`mount(2) of ${mnt} not permitted: needs root (CAP_SYS_ADMIN), or use fusermount3`, code);
  if (r === -constants.errno.ENODEV) throw new MountError(`the kernel does not know the fuse filesystem type (modprobe fuse)`, code);
  if (r === -constants.errno.ENOTDIR) throw new MountError(`mountpoint ${mnt} is not a directory`, code);
  throw new MountError(`mount(2) of ${mnt} failed: ${code}`, code);
}

function findFusermount(): string | undefined {
  const dirs = (process.env.PATH ?? '/usr/bin:/bin').split(':').filter(Boolean);
  for (const name of FUSERMOUNTS) {
    for (const d of dirs) {
      const p = path.join(d, name);
      try {
        fs.accessSync(p, fs.constants.X_OK);
        return p;
      } catch {
        // not here
      }
    }
  }
  return undefined;
}

async function mountFusermount(mnt: string, subtype: string, opts: KernelMountOptions): Promise<number> {
  const bin = findFusermount();
  if (!bin) throw new MountError(`cannot mount ${mnt}: not root and no fusermount3 on PATH (Debian: apt-get install fuse3)`, 'EPERM');
  const pair = dev.socketpair(SOCK_STREAM);
  if (typeof pair === 'number') throw new MountError(`socketpair: ${errnoName(pair)}`, errnoName(pair));
  const [ours, theirs] = pair;
  const options = [`fsname=${opts.fsname}`, `subtype=${subtype}`, 'nosuid', 'nodev', ...(opts.allowOther ? ['allow_other'] : []), ...(opts.defaultPermissions ? ['default_permissions'] : [])].join(',');
  let theirsOpen = true;
  try {
    // fusermount3 finds its end of the socket as fd 3; ours is close-on-exec and stays here.
    const child = spawn(bin, ['-o', options, '--', mnt], { stdio: ['ignore', 'ignore', 'pipe', theirs], env: { ...process.env, _FUSE_COMMFD: '3' } });
    fs.closeSync(theirs);
    theirsOpen = false;
    const stderr = await waitExit(child, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS, `${path.basename(bin)} mounting ${mnt}`);
    const fd = dev.recvFd(ours);
    if (fd < 0) throw new MountError(`${path.basename(bin)} did not pass the FUSE fd (${errnoName(fd)})${stderr ? `: ${stderr}` : ''}`, errnoName(fd));
    const nb = dev.setNonblock(fd);
    if (nb < 0) {
      fs.closeSync(fd);
      throw new MountError(`O_NONBLOCK on the FUSE fd: ${errnoName(nb)}`, errnoName(nb));
    }
    return fd;
  } finally {
    fs.closeSync(ours);
    if (theirsOpen) fs.closeSync(theirs);
  }
}

/** Waits (bounded) for a child to exit 0; returns its stderr, or throws with it. */
function waitExit(child: ReturnType<typeof spawn>, ms: number, what: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => {
      if (child.pid !== undefined) process.kill(child.pid, 'SIGKILL');
      reject(new MountError(`${what}: no exit within ${ms} ms`, 'ETIMEDOUT'));
    }, ms);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(new MountError(`${what}: ${e.message}`, (e as NodeJS.ErrnoException).code));
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const msg = err.trim();
      if (code === 0) resolve(msg);
      else reject(new MountError(`${what} failed (${signal ?? `exit ${code}`})${msg ? `: ${msg}` : ''}`, msg.includes('busy') ? 'EBUSY' : undefined));
    });
  });
}

function run(bin: string, args: string[], ms: number, what: string): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile(bin, args, { timeout: ms }, (e, _out, err) => {
      if (!e) return resolve();
      reject(new MountError(`${what} failed: ${err.trim() || e.message}`, err.includes('busy') ? 'EBUSY' : err.includes('not found') || err.includes('not mounted') ? 'EINVAL' : undefined));
    });
  });
}

/**
 * A mount made with mount(2) outlives a server that dies: every access then fails with
 * ENOTCONN until someone unmounts it. A small watcher outside this process (what
 * fusermount3's auto_unmount does) waits for this process to go, and if the mount it leaves
 * is dead, detaches it. A clean exit unmounts first, and the watcher finds a live directory.
 */
export function detachWhenDead(mountpoint: string): void {
  const script = 'read _ ; stat -- "$1" >/dev/null 2>&1 || umount -l -- "$1"';
  const child = spawn('/bin/sh', ['-c', script, 'xlstack-unmount-on-exit', mountpoint], { detached: true, stdio: ['pipe', 'ignore', 'ignore'] });
  child.on('error', () => undefined);
  child.unref();
  // Our end of its stdin stays open (and out of other children) until this process is gone.
  (child.stdin as unknown as { unref?: () => void }).unref?.();
}
