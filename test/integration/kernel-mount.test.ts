// mountKernel/unmountKernel: mount(2) as root, fusermount3 (the fd passed back over a
// socketpair) as root and as an unprivileged user, and the clear errors. The unprivileged
// runs are child processes under setpriv; every mount is taken down in afterEach.
// Needs root, /dev/fuse, fuse3 (fusermount3), util-linux (setpriv).
import { execFile } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { withDeadline } from '../../src/core/time';
import { MountError, mountKernel, unmountKernel } from '../../src/fuse/kernel/mount';
import type { KernelMount } from '../../src/fuse/kernel/mount';
import { KernelSession } from '../../src/fuse/kernel/session';
import { Logger } from '../../src/core/log';
import { MemFs } from '../helpers/memfs';
import { isMounted } from '../helpers/mount';

const CHILD = path.resolve(__dirname, '../helpers/kernel-mount-child.js');
const NOBODY = 65534;
const RUN_TIMEOUT_MS = 30_000;

interface ChildOut {
  readonly via?: string;
  readonly io?: string;
  readonly closed?: string;
  readonly code?: string;
  readonly message?: string;
  readonly error?: string;
}

/**
 * Runs the mount child (as `uid`, or as root), bounded; its one JSON line. `device`: a FUSE
 * device node bind-mounted over /dev/fuse in a private mount namespace for the child, so an
 * unprivileged fusermount3 can open it without changing the machine's own /dev/fuse.
 */
function child(args: string[], opts: { uid?: number; path?: string; device?: string } = {}): Promise<ChildOut> {
  const argv = [...(opts.path !== undefined ? ['env', `PATH=${opts.path}`] : []), process.execPath, CHILD, ...args];
  const asUser = opts.uid === undefined ? argv : ['setpriv', `--reuid=${opts.uid}`, `--regid=${opts.uid}`, '--clear-groups', '--', ...argv];
  const cmd = opts.device ? ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" /dev/fuse && exec "$@"', opts.device, ...asUser] : asUser;
  return new Promise((resolve) => {
    execFile(cmd[0], cmd.slice(1), { timeout: RUN_TIMEOUT_MS, cwd: '/' }, (e, out, err) => {
      const line = out.trim().split('\n').pop() ?? '';
      try {
        resolve(JSON.parse(line) as ChildOut);
      } catch {
        resolve({ error: `no JSON from the child (${e?.message ?? ''}): ${out} ${err}` });
      }
    });
  });
}

describe('mounting', () => {
  let dir: string;
  let mnt: string;
  const mounts: KernelMount[] = [];
  const sessions: KernelSession[] = [];

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-kmount-'));
    mnt = path.join(dir, 'mnt');
    fs.mkdirSync(mnt);
  });

  afterEach(async () => {
    for (const s of sessions.splice(0)) s.close('test takedown');
    mounts.length = 0;
    if (isMounted(mnt)) await unmountKernel(mnt, true, 'mount').catch(() => undefined);
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('as root with mount(2): fuse.xlstack, source = fsname, nosuid,nodev, and unmountKernel', async () => {
    const m = await mountKernel(mnt, { fsname: 'memfs-root', allowOther: true, defaultPermissions: true });
    mounts.push(m);
    const s = new KernelSession(m.fd, new MemFs(), { log: Logger.create('warn') });
    sessions.push(s);
    s.start();
    await withDeadline(s.ready, 10_000, 'INIT');
    expect(m.via).toBe('mount');
    const line = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').find((l) => l.split(' ')[4] === mnt)!;
    expect(line).toMatch(/ - fuse\.xlstack memfs-root /);
    expect(line).toMatch(/ rw,nosuid,nodev/);
    expect(line).toMatch(/user_id=0,group_id=0,default_permissions,allow_other/);
    await m.unmount();
    expect(await withDeadline(s.closed, 10_000, 'the session to end')).toBe('unmounted');
    expect(isMounted(mnt)).toBe(false);
  });

  it('as root through fusermount3: the fd comes back over the socketpair', async () => {
    const out = await child(['serve', mnt, 'fusermount']);
    expect(out).toEqual({ via: 'fusermount', io: 'hi\n1 directory\n', closed: 'unmounted' });
    expect(isMounted(mnt)).toBe(false);
  });

  it('as an unprivileged user: through fusermount3 by itself', async () => {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    // fusermount3 opens /dev/fuse as the user: give it a node anyone may open (Debian's mode).
    const device = path.join(dir, 'fuse');
    expect((await new Promise<number | null>((r) => execFile('mknod', ['-m', '666', device, 'c', '10', '229'], (e) => r(e ? 1 : 0))))).toBe(0);
    const out = await child(['serve', mnt], { uid: NOBODY, device });
    expect(out).toEqual({ via: 'fusermount', io: 'hi\n1 directory\n', closed: 'unmounted' });
  });

  it('an unprivileged user whose fusermount3 cannot open /dev/fuse: its reason is in the error', async () => {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    const device = path.join(dir, 'fuse');
    expect((await new Promise<number | null>((r) => execFile('mknod', ['-m', '600', device, 'c', '10', '229'], (e) => r(e ? 1 : 0))))).toBe(0);
    const out = await child(['fail', mnt], { uid: NOBODY, device });
    expect(out.message).toMatch(/fusermount3 mounting .* failed \(exit 1\): .*failed to open \/dev\/fuse: Permission denied/);
  });

  it('an unprivileged user without fusermount3 on PATH: a clear error', async () => {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    const out = await child(['fail', mnt], { uid: NOBODY, path: path.join(dir, 'nothing-here') });
    expect(out.code).toBe('EPERM');
    expect(out.message).toMatch(/not root and no fusermount3 on PATH/);
  });

  it('an unprivileged user asking for mount(2): the device permission problem is named as such', async () => {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    const device = path.join(dir, 'fuse');
    expect((await new Promise<number | null>((r) => execFile('mknod', ['-m', '600', device, 'c', '10', '229'], (e) => r(e ? 1 : 0))))).toBe(0);
    const out = await child(['fail', mnt, 'mount'], { uid: NOBODY, device });
    expect(out.code).toBe('EACCES');
    expect(out.message).toMatch(/permission denied opening \/dev\/fuse: a permission problem .* not a missing module/);
  });

  it('an unprivileged user with the device but no right to mount(2): said so', async () => {
    fs.chownSync(dir, NOBODY, NOBODY);
    fs.chownSync(mnt, NOBODY, NOBODY);
    const device = path.join(dir, 'fuse');
    expect((await new Promise<number | null>((r) => execFile('mknod', ['-m', '666', device, 'c', '10', '229'], (e) => r(e ? 1 : 0))))).toBe(0);
    const out = await child(['fail', mnt, 'mount'], { uid: NOBODY, device });
    expect(out.code).toBe('EPERM');
    expect(out.message).toMatch(/mount\(2\) of .* not permitted: needs root/);
  });

  it('refuses a missing mountpoint, a mounted one, a bad fsname, and unmounting what is not mounted', async () => {
    const err = async (p: Promise<unknown>): Promise<MountError> => {
      const e = await p.then(
        () => undefined,
        (x: unknown) => x,
      );
      expect(e).toBeInstanceOf(MountError);
      return e as MountError;
    };
    expect(await err(mountKernel(path.join(dir, 'absent'), { fsname: 'x' }))).toMatchObject({ code: 'ENOENT', message: expect.stringMatching(/does not exist/) });
    expect(await err(mountKernel(mnt, { fsname: 'a,b' }))).toMatchObject({ code: 'EINVAL' });
    expect(await err(unmountKernel(mnt))).toMatchObject({ code: 'EINVAL', message: expect.stringMatching(/not a mountpoint/) });

    const m = await mountKernel(mnt, { fsname: 'first' });
    mounts.push(m);
    const s = new KernelSession(m.fd, new MemFs(), { log: Logger.create('warn') });
    sessions.push(s);
    s.start();
    await withDeadline(s.ready, 10_000, 'INIT');
    expect(await err(mountKernel(mnt, { fsname: 'second' }))).toMatchObject({ code: 'EBUSY', message: expect.stringMatching(/busy: something is mounted there already/) });
    expect(await err(mountKernel(mnt, { fsname: 'second', via: 'fusermount' }))).toMatchObject({ code: 'EBUSY' });
  });
});
