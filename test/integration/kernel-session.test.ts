// The kernel transport on a real mount: a MemFs served by a KernelSession in this process,
// driven from child processes (sh, coreutils, attr, python3): a synchronous call on the
// mount from this process would deadlock it. Every wait is bounded; every mount is taken
// down in afterAll (unmount, else abort the connection and detach it).
// Needs root, /dev/fuse, python3, attr (getfattr/setfattr), coreutils.
import { ChildProcess, execFile, spawn } from 'child_process';
import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { withDeadline } from '../../src/core/time';
import { mountKernel } from '../../src/fuse/kernel/mount';
import type { KernelMount } from '../../src/fuse/kernel/mount';
import { KernelSession } from '../../src/fuse/kernel/session';
import { MemFs } from '../helpers/memfs';
import { isMounted } from '../helpers/mount';

const RUN_TIMEOUT_MS = 20_000;
const WAIT_MS = 15_000;

interface Run {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs a command to completion in a child process (bounded), never inside the mount. */
function run(cmd: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { timeout: RUN_TIMEOUT_MS, cwd: os.tmpdir() }, (err, stdout, stderr) => {
      const code = err ? ((err as { code?: unknown }).code as number | null) : 0;
      resolve({ code: typeof code === 'number' ? code : null, stdout, stderr });
    });
  });
}

const sh = (script: string, ...args: string[]): Promise<Run> => run('sh', ['-c', script, 'sh', ...args]);
const py = (script: string, ...args: string[]): Promise<Run> => run('python3', ['-c', script, ...args]);

/** Resolves when `cond()` holds, checked whenever `emitter` emits `event` (bounded). */
function when(emitter: NodeJS.EventEmitter, event: string, cond: () => boolean, what: string): Promise<void> {
  if (cond()) return Promise.resolve();
  return withDeadline(
    new Promise<void>((resolve) => {
      const check = (): void => {
        if (!cond()) return;
        emitter.off(event, check);
        resolve();
      };
      emitter.on(event, check);
    }),
    WAIT_MS,
    what,
  );
}

/** The first line a child prints (bounded). */
function firstLine(child: ChildProcess, what: string): Promise<string> {
  return withDeadline(
    new Promise<string>((resolve, reject) => {
      let out = '';
      child.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
        const i = out.indexOf('\n');
        if (i >= 0) resolve(out.slice(0, i));
      });
      child.on('exit', (code) => reject(new Error(`${what}: exited ${code} before printing (${out})`)));
    }),
    WAIT_MS,
    what,
  );
}

function exited(child: ChildProcess, what: string): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return withDeadline(new Promise((r) => child.on('exit', (code) => r(code))), WAIT_MS, what);
}

interface Served {
  readonly dir: string;
  readonly mnt: string;
  readonly memfs: MemFs;
  readonly session: KernelSession;
  readonly mount: KernelMount;
  readonly logs: string[];
}

async function serve(opts: { notifyTimeoutMs?: number; ttlMs?: number } = {}): Promise<Served> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'xlstack-kernel-'));
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  const logs: string[] = [];
  const memfs = new MemFs({ ttlMs: opts.ttlMs });
  const mount = await mountKernel(mnt, { fsname: 'memfs-test' });
  const session = new KernelSession(mount.fd, memfs, { log: Logger.create('debug', (l) => logs.push(l)), notifyTimeoutMs: opts.notifyTimeoutMs });
  session.start();
  await withDeadline(session.ready, WAIT_MS, 'INIT');
  return { dir, mnt, memfs, session, mount, logs };
}

/** Unmounts; if that fails, aborts the connection (closing the fd frees any stuck caller) and detaches. */
async function takedown(s: Served | undefined, children: ChildProcess[]): Promise<void> {
  if (!s) return;
  for (const c of children) if (c.exitCode === null && c.signalCode === null && c.pid) process.kill(c.pid, 'SIGKILL');
  let ended = s.session.dump().state === 'closed';
  if (!ended && isMounted(s.mnt)) {
    ended = await withDeadline(s.mount.unmount(false), 10_000, 'unmount').then(
      () => withDeadline(s.session.closed, 10_000, 'the session to see the unmount').then(() => true),
      () => false,
    );
  }
  if (!ended) s.session.close('test takedown');
  if (isMounted(s.mnt)) await s.mount.unmount(true).catch(() => undefined);
  fs.rmSync(s.dir, { recursive: true, force: true });
}

describe('kernel session on a real mount', () => {
  let s: Served;
  const children: ChildProcess[] = [];
  const count = (op: string): number => s.session.dump().requests[op] ?? 0;

  beforeAll(async () => {
    s = await serve();
  });

  afterAll(async () => {
    await takedown(s, children);
  });

  it('negotiates only what it implements', () => {
    const d = s.session.dump();
    expect(d.protocol).toBe('7.45');
    expect(d.flags).toEqual(expect.arrayContaining(['ASYNC_READ', 'POSIX_LOCKS', 'ATOMIC_O_TRUNC', 'BIG_WRITES', 'FLOCK_LOCKS', 'DO_READDIRPLUS', 'READDIRPLUS_AUTO', 'PARALLEL_DIROPS', 'MAX_PAGES']));
    for (const f of ['WRITEBACK_CACHE', 'POSIX_ACL', 'DONT_MASK', 'HANDLE_KILLPRIV', 'HANDLE_KILLPRIV_V2', 'SECURITY_CTX', 'SETXATTR_EXT']) expect(d.flags).not.toContain(f);
    expect(s.memfs.conn?.maxWrite).toBe(1 << 20);
  });

  it('create, write, read, stat, mkdir, symlink, readdir', async () => {
    const r = await sh('cd "$1" && printf hello > a && cat a && echo && stat -c "%s %h %F %a" a && mkdir d && printf x > d/b && ln -s a l && readlink l && ls', s.mnt);
    expect(r.stderr).toBe('');
    expect(r.stdout.split('\n')).toEqual(['hello', '5 1 regular file 644', 'a', 'a', 'd', 'l', '']);
    expect(s.memfs.find('a')!.data.read(0, 5).toString()).toBe('hello');
    expect(s.memfs.find('d', 'b')!.data.size).toBe(1);
  });

  it('ls -l of a directory the kernel has not seen: entries and attributes from READDIRPLUS, no LOOKUP each', async () => {
    for (let i = 0; i < 100; i++) s.memfs.addFile('many', `f${i}`, Buffer.alloc(i));
    const lookups = count('LOOKUP');
    const plus = count('READDIRPLUS');
    const r = await run('ls', ['-l', path.join(s.mnt, 'many')]);
    expect(r.code).toBe(0);
    const lines = r.stdout.trim().split('\n').slice(1);
    expect(lines).toHaveLength(100);
    expect(lines.find((l) => l.endsWith(' f42'))).toMatch(/^-rw-r--r-- 1 root root 42 /);
    expect(count('READDIRPLUS')).toBeGreaterThan(plus);
    expect(count('LOOKUP') - lookups).toBeLessThanOrEqual(1); // "many" itself
  });

  it('names are bytes: a name that is not UTF-8 round-trips', async () => {
    const script = `
import os, sys
d = sys.argv[1].encode()
n = b'bad-\\xff\\xfe-\\x80'
with open(d + b'/' + n, 'wb') as f: f.write(b'z')
print(sorted(x.hex() for x in os.listdir(d + b'/') if x.startswith(b'bad')))
print(os.stat(d + b'/' + n).st_size)`;
    const r = await py(script, s.mnt);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe(`['${Buffer.from('bad-\xff\xfe-\x80', 'latin1').toString('hex')}']\n1\n`);
    expect(s.memfs.find('bad-\xff\xfe-\x80')).toBeDefined();
  });

  it('xattrs: set, get, list, remove; a size probe gets the size, a small buffer ERANGE', async () => {
    const f = path.join(s.mnt, 'a');
    const r = await sh('setfattr -n user.color -v blue "$1" && getfattr -n user.color --only-values "$1" && echo && getfattr -d "$1"', f);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('blue\n');
    expect(r.stdout).toContain('user.color="blue"');
    const probe = `
import ctypes, errno, sys
libc = ctypes.CDLL(None, use_errno=True)
p = sys.argv[1].encode()
small = ctypes.create_string_buffer(2)
def err(r): return errno.errorcode[ctypes.get_errno()] if r < 0 else r
print(libc.getxattr(p, b'user.color', None, 0), err(libc.getxattr(p, b'user.color', small, 2)))
print(libc.listxattr(p, None, 0), err(libc.listxattr(p, small, 2)))
print(err(libc.getxattr(p, b'user.none', None, 0)))`;
    const pr = await py(probe, f);
    expect(pr.stderr).toBe('');
    expect(pr.stdout).toBe('4 ERANGE\n11 ERANGE\nENODATA\n');
    const rm = await sh('setfattr -x user.color "$1" && getfattr -d "$1"', f);
    expect(rm.code).toBe(0);
    expect(rm.stdout).not.toContain('user.color');
    expect(s.memfs.find('a')!.xattrs.size).toBe(0);
  });

  it('rename NOREPLACE and EXCHANGE (renameat2)', async () => {
    const script = `
import ctypes, errno, os, sys
libc = ctypes.CDLL(None, use_errno=True)
d = sys.argv[1]
def r2(a, b, flags):
    r = libc.renameat2(-100, (d + '/' + a).encode(), -100, (d + '/' + b).encode(), flags)
    return 'ok' if r == 0 else errno.errorcode[ctypes.get_errno()]
for n, v in (('p', 'P'), ('q', 'Q')):
    with open(d + '/' + n, 'w') as f: f.write(v)
print(r2('p', 'q', 1), r2('p', 'q', 2), open(d + '/p').read(), open(d + '/q').read(), r2('p', 'r', 1), r2('nope', 'q', 2))`;
    const renames = count('RENAME2');
    const r = await py(script, s.mnt);
    expect(r.stderr).toBe('');
    expect(r.stdout).toBe('EEXIST ok Q P ok ENOENT\n');
    expect(s.memfs.find('r')!.data.read(0, 1).toString()).toBe('Q');
    // The VFS answers the first (a cached target) and the last (no source) itself.
    expect(count('RENAME2') - renames).toBe(2);
  });

  it('a 1 MiB write arrives as one WRITE whose data is a view of the read buffer', async () => {
    const src = path.join(s.dir, 'random');
    fs.writeFileSync(src, Buffer.from(Array.from({ length: 1 << 20 }, (_, i) => (i * 7919) & 0xff)));
    const writes = s.memfs.writeSizes.length;
    const r = await sh('dd if="$1" of="$2" bs=1M count=1 status=none && cmp "$1" "$2"', src, path.join(s.mnt, 'big'));
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
    expect(s.memfs.writeSizes.slice(writes)).toEqual([1 << 20]);
    // 40-byte header + 40-byte write_in: the data sits where the kernel put it, in a buffer of max_write + 4096.
    expect(s.memfs.largestWrite).toEqual({ size: 1 << 20, byteOffset: 80, bufferLength: (1 << 20) + 4096 });
  });

  it('an interrupted SETLKW: the caller gets EINTR, the fs saw the interrupt, nothing stays in flight', async () => {
    const file = path.join(s.mnt, 'lockme');
    expect((await sh(': > "$1"', file)).code).toBe(0);
    const holder = spawn('python3', ['-c', 'import fcntl, sys\nf = open(sys.argv[1], "r+")\nfcntl.lockf(f, fcntl.LOCK_EX)\nprint("locked", flush=True)\nsys.stdin.read()', file], { cwd: os.tmpdir() });
    children.push(holder);
    expect(await firstLine(holder, 'the lock holder')).toBe('locked');

    const waiterScript = `
import ctypes, errno, fcntl, os, signal, struct, sys
signal.signal(signal.SIGINT, lambda *a: None)
libc = ctypes.CDLL(None, use_errno=True)
fd = os.open(sys.argv[1], os.O_RDWR)
lk = ctypes.create_string_buffer(struct.pack('hh4xqqi4x', fcntl.F_WRLCK, 0, 0, 0, 0))
r = libc.fcntl(fd, fcntl.F_SETLKW, lk)
print('ok' if r == 0 else errno.errorcode[ctypes.get_errno()], flush=True)`;
    const interrupts = s.memfs.interrupts;
    const waiting = withDeadline(new Promise((r) => s.memfs.once('lockWait', r)), WAIT_MS, 'SETLKW to wait');
    const waiter = spawn('python3', ['-c', waiterScript, file], { cwd: os.tmpdir() });
    children.push(waiter);
    const answer = firstLine(waiter, 'the lock waiter');
    await waiting;
    process.kill(waiter.pid!, 'SIGINT');
    expect(await answer).toBe('EINTR');
    expect(await exited(waiter, 'the lock waiter')).toBe(0);
    expect(s.memfs.interrupts).toBe(interrupts + 1);
    holder.stdin!.end();
    expect(await exited(holder, 'the lock holder')).toBe(0);
    expect(s.session.dump().inFlight).toEqual([]);
    expect(s.memfs.find('lockme')!.locks).toEqual([]);
  });

  it('a method that fails with something other than a FopError: the caller gets EIO, the log the stack', async () => {
    s.memfs.bugName = 'bug';
    const r = await run('stat', [path.join(s.mnt, 'bug')]);
    s.memfs.bugName = undefined;
    expect(r.code).not.toBe(0);
    expect(r.stderr).toContain('Input/output error');
    const line = s.logs.find((l) => l.includes('not a FopError'));
    expect(line).toContain('planted bug');
    expect(line).toContain('at MemFs.lookup');
  });

  it('notifications: INVAL_INODE, INVAL_ENTRY; false when nothing was cached', async () => {
    expect((await run('stat', [path.join(s.mnt, 'a')])).code).toBe(0);
    expect(await s.session.notifyInvalInode(s.memfs.find('a')!.id, 0, 0)).toBe(true);
    expect(await s.session.notifyInvalEntry(1, Buffer.from('a'))).toBe(true);
    expect(await s.session.notifyInvalEntry(1, Buffer.from('a'))).toBe(false);
    expect(await s.session.notifyDelete(1, 999, Buffer.from('never-seen'))).toBe(false);
  });

  it('FORGETs bring every lookup count back to zero when the kernel drops its caches', async () => {
    expect(s.memfs.totalLookups()).toBeGreaterThan(0);
    const r = await sh('sync && echo 2 > /proc/sys/vm/drop_caches');
    expect(r.code).toBe(0);
    await when(s.memfs, 'forget', () => s.memfs.totalLookups() === 0, 'FORGETs for every node');
    expect(count('FORGET') + count('BATCH_FORGET')).toBeGreaterThan(0);
  });
});

describe('kernel session, one mount per test', () => {
  let s: Served | undefined;
  afterEach(async () => {
    await takedown(s, []);
    s = undefined;
  });

  it('when the filesystem is unmounted from outside', async () => {
    s = await serve();
    expect((await run('stat', [s.mnt])).code).toBe(0);
    const r = await run('umount', [s.mnt]);
    expect(r.stderr).toBe('');
    expect(await withDeadline(s.session.closed, WAIT_MS, 'the session to end')).toBe('unmounted');
    expect(s.memfs.destroyed).toBe(1);
    expect(s.session.dump().state).toBe('closed');
    expect(isMounted(s.mnt)).toBe(false);
  });

  it('when the server closes it: the connection is aborted, callers get ENOTCONN', async () => {
    s = await serve();
    s.session.close('test');
    expect(await s.session.closed).toBe('closed: test');
    expect(s.memfs.destroyed).toBe(1);
    const r = await run('stat', [s.mnt]);
    expect(r.stderr).toContain('Transport endpoint is not connected');
  });

  it('notifications are written off the loop: a blocked INVAL_ENTRY does not stop serving', async () => {
    s = await serve({ ttlMs: 0 }); // nothing cached: every stat reaches the session
    // A LOOKUP left unanswered holds its directory: an INVAL_ENTRY there blocks in the kernel.
    const gate = s.memfs.gateLookup('slow');
    const stat = run('stat', [path.join(s.mnt, 'slow')]);
    await withDeadline(gate.entered, WAIT_MS, 'the gated LOOKUP');
    let settled = false;
    const notified = s.session.notifyInvalEntry(1, Buffer.from('x')).finally(() => (settled = true));
    // The loop still serves: a GETATTR of the root (no directory lock) needs it.
    const getattrs = s.session.dump().requests.GETATTR ?? 0;
    expect((await run('stat', ['-c', '%i', s.mnt])).stdout).toBe('1\n');
    expect(s.session.dump().requests.GETATTR).toBeGreaterThan(getattrs);
    expect(settled).toBe(false);
    gate.open();
    expect((await stat).stderr).toContain('No such file');
    expect(await withDeadline(notified, WAIT_MS, 'the INVAL_ENTRY')).toBe(false);
  });

  it('closing with a request unanswered and a notification blocked behind it: the request is answered, the connection ends', async () => {
    s = await serve();
    const gate = s.memfs.gateLookup('slow'); // never opened
    const stat = run('stat', [path.join(s.mnt, 'slow')]);
    await withDeadline(gate.entered, WAIT_MS, 'the gated LOOKUP');
    const notified = s.session.notifyInvalEntry(1, Buffer.from('x')).then(
      () => 'settled',
      () => 'settled',
    );
    s.session.close('test');
    expect((await stat).stderr).toContain('Software caused connection abort');
    expect(await withDeadline(notified, WAIT_MS, 'the notification')).toBe('settled');
    expect((await run('stat', [s.mnt])).stderr).toContain('Transport endpoint is not connected');
  });

  it('a blocked notification fails ETIMEDOUT after its bound, and the session serves on', async () => {
    s = await serve({ notifyTimeoutMs: 300 });
    const gate = s.memfs.gateLookup('slow');
    const stat = run('stat', [path.join(s.mnt, 'slow')]);
    await withDeadline(gate.entered, WAIT_MS, 'the gated LOOKUP');
    await expect(s.session.notifyInvalEntry(1, Buffer.from('x'))).rejects.toMatchObject({ code: 'ETIMEDOUT' });
    expect(s.logs.some((l) => l.includes('notification INVAL_ENTRY still blocked'))).toBe(true);
    gate.open();
    await stat;
    expect((await run('stat', [s.mnt])).code).toBe(0);
  });
});
