// The xlstack command as a user runs it: clear errors that leave nothing mounted, clean
// unmounts on signals and on `xlstack unmount`, statedumps, and recovery from a killed daemon.
import { ChildProcess, spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { CLI as CLI_PATH, POSIX_VOLFILE, TestMount, isMounted, startMount, waitFor, within, xlstack } from '../helpers/mount';
import { cleanupScratch, scratchDir } from '../helpers/scratch';

const holders: ChildProcess[] = [];

const tempDir = () => scratchDir('xlstack-cli-');

/**
 * A child process that keeps `file` open (and its cwd in `cwd`) until killed. With
 * `reads`, each line on its stdin makes it read the file through the fd it holds and print it.
 */
async function holdOpen(file: string, cwd: string, reads = false): Promise<ChildProcess> {
  const script = `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(file)}, 'r'); console.log('held');
    process.stdin.on('data', () => { const b = Buffer.alloc(4096); console.log(b.subarray(0, fs.readSync(fd, b, 0, 4096, 0)).toString()); });
    setInterval(() => {}, 1000);`;
  const child = spawn(process.execPath, ['-e', script], { cwd, stdio: [reads ? 'pipe' : 'ignore', 'pipe', 'inherit'] });
  holders.push(child);
  await within(new Promise((r) => child.stdout!.once('data', r)), 10_000);
  return child;
}

/** What a holdOpen(.., true) child reads through the fd it holds. */
async function readHeld(child: ChildProcess): Promise<string> {
  const line = new Promise<string>((r) => child.stdout!.once('data', (d: Buffer) => r(d.toString().trim())));
  child.stdin!.write('read\n');
  return (await within(line, 10_000)) as string;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGKILL');
  await within(exited, 5000);
}

afterAll(async () => {
  await Promise.all(holders.map(stop));
  await cleanupScratch();
});

describe('bad input gets a clear error and mounts nothing', () => {
  function setup(volfile: string) {
    const d = tempDir();
    const mnt = path.join(d, 'mnt');
    fs.mkdirSync(mnt);
    fs.mkdirSync(path.join(d, 'back'));
    const vol = path.join(d, 'bad.vol');
    fs.writeFileSync(vol, volfile.replace(/@BACKING@/g, path.join(d, 'back')));
    return { mnt, vol };
  }

  test('a volfile with an unknown subvolume: file, line and problem', async () => {
    const { mnt, vol } = setup(`${POSIX_VOLFILE}\nvolume top\n    type debug/trace\n    subvolumes nosuch\nend-volume\n`);
    const r = await xlstack(['mount', vol, mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${vol}:9: unknown subvolume 'nosuch'`);
    expect(isMounted(mnt)).toBe(false);
  });

  test('a bad option value', async () => {
    const { mnt, vol } = setup(`${POSIX_VOLFILE}\nvolume top\n    type debug/error-gen\n    option failure 150\n    subvolumes test-posix\nend-volume\n`);
    const r = await xlstack(['mount', vol, mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`${vol}:9: volume 'top': bad value for option 'failure': .*at most 100`));
    expect(isMounted(mnt)).toBe(false);
  });

  test('an unimplemented type is named, and --passthrough-unknown mounts it as a pass-through', async () => {
    const text = `${POSIX_VOLFILE}\nvolume test-utime\n    type features/utime\n    option noatime on\n    subvolumes test-posix\nend-volume\n`;
    const { mnt, vol } = setup(text);
    const r = await xlstack(['mount', vol, mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`${vol}:8: volume 'test-utime': type 'features/utime' is not implemented`);
    expect(isMounted(mnt)).toBe(false);

    const m = await startMount({ volfile: text, args: ['--passthrough-unknown'] });
    fs.writeFileSync(path.join(m.mountpoint, 'seen'), 'through the pass-through');
    expect(fs.readFileSync(path.join(m.backing, 'seen'), 'utf8')).toBe('through the pass-through');
    const checked = await xlstack(['check', m.volfile, '--passthrough-unknown']);
    expect(checked.code).toBe(0);
    expect(checked.stdout).toContain('ok (2 volumes');
    expect(m.log()).toContain("type 'features/utime' is not implemented; passing it through");
    expect(m.log()).toContain("ignoring option 'noatime'");
    await m.unmount();
  });

  test('a storage directory that does not exist', async () => {
    const { mnt, vol } = setup(POSIX_VOLFILE.replace('@BACKING@', '/nonexistent/xlstack-test'));
    const r = await xlstack(['mount', vol, mnt]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('directory /nonexistent/xlstack-test does not exist');
    expect(isMounted(mnt)).toBe(false);
  });

  test('a missing volfile, a missing mountpoint, a mountpoint that is a file', async () => {
    const d = tempDir();
    const noVol = await xlstack(['mount', path.join(d, 'nope.vol'), d]);
    expect(noVol.code).toBe(1);
    expect(noVol.stderr).toContain('cannot read volfile');
    const { vol } = setup(POSIX_VOLFILE);
    const noMnt = await xlstack(['mount', vol, path.join(d, 'nodir')]);
    expect(noMnt.stderr).toContain('does not exist');
    fs.writeFileSync(path.join(d, 'file'), '');
    const fileMnt = await xlstack(['mount', vol, path.join(d, 'file')]);
    expect(fileMnt.stderr).toContain('is not a directory');
  });

  test('fuse-native without fusermount on PATH: refused (the kernel transport as root needs none)', async () => {
    const { mnt, vol } = setup(POSIX_VOLFILE);
    const r = await xlstack(['mount', vol, mnt, '--transport', 'fuse-native'], { env: { ...process.env, PATH: '/nonexistent' } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('FUSE is not available: the fusermount helper was not found');
    expect(isMounted(mnt)).toBe(false);
  });

  test('a mountpoint that is busy: refused, and the existing mount keeps serving', async () => {
    const m = await startMount();
    const { vol } = setup(POSIX_VOLFILE);
    const r = await xlstack(['mount', vol, m.mountpoint]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`mountpoint ${m.mountpoint} is busy`);
    fs.writeFileSync(path.join(m.mountpoint, 'still'), 'serving');
    expect(fs.readFileSync(path.join(m.backing, 'still'), 'utf8')).toBe('serving');
    await m.unmount();
  });

  test('usage errors exit 2', async () => {
    expect((await xlstack(['mount'])).code).toBe(2);
    expect((await xlstack(['frobnicate'])).code).toBe(2);
    const r = await xlstack(['mount', 'a.vol', '/mnt', '--log-level', 'loud']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--log-level must be one of');
  });
});

describe('shutting down', () => {
  async function exitsCleanly(m: TestMount, pidfile: string): Promise<void> {
    expect(await within(m.exited, 20_000)).toBe(0);
    expect(isMounted(m.mountpoint)).toBe(false);
    expect(fs.existsSync(pidfile)).toBe(false);
  }

  test.each(['SIGTERM', 'SIGINT'] as const)('%s unmounts and exits 0', async (sig) => {
    const pidfile = path.join(tempDir(), 'pid');
    const m = await startMount({ args: ['--pidfile', pidfile] });
    expect(Number(fs.readFileSync(pidfile, 'utf8'))).toBe(m.pid);
    fs.writeFileSync(path.join(m.mountpoint, 'kept'), 'data');
    process.kill(m.pid, sig);
    await exitsCleanly(m, pidfile);
    expect(fs.readFileSync(path.join(m.backing, 'kept'), 'utf8')).toBe('data');
  });

  test('a signal while a file is open detaches the mount (umount -l) and serves the open file until it is released', async () => {
    const pidfile = path.join(tempDir(), 'pid');
    const m = await startMount({ args: ['--pidfile', pidfile] });
    fs.writeFileSync(path.join(m.mountpoint, 'f'), 'kept open');
    const holder = await holdOpen(path.join(m.mountpoint, 'f'), m.mountpoint, true);
    process.kill(m.pid, 'SIGTERM');
    await waitFor(() => !isMounted(m.mountpoint), 10_000, 'the mount to be detached');
    // The name is gone, the open file is not: the daemon still answers its reads.
    expect(await readHeld(holder)).toBe('kept open');
    expect(m.log()).toContain('detached; serving what is still open');
    await stop(holder);
    await exitsCleanly(m, pidfile);
  });

  test('xlstack unmount: refused while busy, then clean; --lazy detaches a busy mount', async () => {
    const m = await startMount();
    fs.writeFileSync(path.join(m.mountpoint, 'f'), 'x');
    const holder = await holdOpen(path.join(m.mountpoint, 'f'), m.mountpoint);

    const busy = await xlstack(['unmount', m.mountpoint]);
    expect(busy.code).toBe(1);
    expect(busy.stderr).toMatch(/busy/i);
    expect(isMounted(m.mountpoint)).toBe(true);
    expect(fs.readFileSync(path.join(m.mountpoint, 'f'), 'utf8')).toBe('x');

    await stop(holder);
    const ok = await xlstack(['unmount', m.mountpoint]);
    expect(ok.code).toBe(0);
    expect(ok.stdout).toContain(`unmounted ${m.mountpoint}`);
    expect(await within(m.exited, 20_000)).toBe(0);
    expect(isMounted(m.mountpoint)).toBe(false);

    const m2 = await startMount();
    fs.writeFileSync(path.join(m2.mountpoint, 'g'), 'still served');
    const holder2 = await holdOpen(path.join(m2.mountpoint, 'g'), m2.mountpoint, true);
    const lazy = await xlstack(['unmount', '--lazy', m2.mountpoint]);
    expect(lazy.code).toBe(0);
    expect(isMounted(m2.mountpoint)).toBe(false);
    expect(await readHeld(holder2)).toBe('still served');
    await stop(holder2);
    expect(await within(m2.exited, 20_000)).toBe(0);
  });

  test('unmount of something that is not mounted says so', async () => {
    const r = await xlstack(['unmount', tempDir()]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('is not mounted');
  });

  test('a mount unmounted from outside (fusermount -u) ends its daemon; a later SIGTERM is no obstacle', async () => {
    const pidfile = path.join(tempDir(), 'pid');
    const m = await startMount({ args: ['--pidfile', pidfile] });
    const r = spawnSync('fusermount', ['-u', m.mountpoint], { timeout: 10_000 });
    expect(r.status).toBe(0);
    await exitsCleanly(m, pidfile);
    expect(m.log()).toContain('unmounted from outside');

    // Unmounted from outside and signalled before the daemon noticed: it still exits.
    const m2 = await startMount({ args: ['--pidfile', pidfile] });
    expect(spawnSync('fusermount', ['-u', m2.mountpoint], { timeout: 10_000 }).status).toBe(0);
    process.kill(m2.pid, 'SIGTERM');
    await exitsCleanly(m2, pidfile);
  });

  /** A supervisor's worker (its one node child; the other is its mount's watcher). */
  const workerOf = (pid: number): number => {
    const pids = spawnSync('pgrep', ['-P', String(pid), '-x', path.basename(process.execPath)], { encoding: 'utf8', timeout: 5000 }).stdout.split('\n').filter(Boolean).map(Number);
    expect(pids).toHaveLength(1);
    return pids[0];
  };
  const gone = (pid: number) => {
    try {
      process.kill(pid, 0);
      return false;
    } catch {
      return true;
    }
  };

  // The supervisor alone: its worker finds its channel closed and detaches the mount. Both:
  // the supervisor's watcher finds the mount dead and detaches it. --single-process: the
  // daemon's own watcher does.
  test.each([
    ['the supervisor', [] as string[], false],
    ['the supervisor and its worker', [] as string[], true],
    ['a single-process daemon', ['--single-process'], false],
  ])('%s killed with SIGKILL leave(s) no mount behind', async (_what, args, killWorker) => {
    const m = await startMount({ args });
    const worker = args.length ? undefined : workerOf(m.pid);
    process.kill(m.pid, 'SIGKILL');
    if (killWorker) process.kill(worker!, 'SIGKILL');
    await within(m.exited, 10_000);
    await waitFor(() => !isMounted(m.mountpoint), 10_000, 'the mount to go after SIGKILL');
    if (worker) await waitFor(() => gone(worker), 10_000, 'the worker to exit');
    expect(isMounted(m.mountpoint)).toBe(false);
    if (!killWorker && worker) expect(m.log()).toContain('the supervisor is gone; detaching');
    // and the mountpoint is usable again (startMount fails unless it serves there)
    const again = await startMount({ mountpoint: m.mountpoint });
    expect(again.mountpoint).toBe(m.mountpoint);
    await again.unmount();
  });
});

describe('a mount started from a terminal', () => {
  // A pty stands in for the terminal: python's pty.fork runs the daemon as the session leader
  // with the pty as its controlling terminal and its stderr; closing the master hangs it up.
  const PTY_HOST = `
import os, pty, sys, select
pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])
print(pid, flush=True)
seen = b''
while b'serving ' not in seen:
    r, _, _ = select.select([fd], [], [], 20)
    if not r: sys.exit(3)
    seen += os.read(fd, 4096)
os.close(fd)
print('hung up', flush=True)
`;

  test('keeps serving when the terminal goes away (the hang-up and the dead terminal kill nothing)', async () => {
    const d = tempDir();
    const mnt = path.join(d, 'mnt');
    fs.mkdirSync(mnt);
    fs.mkdirSync(path.join(d, 'back'));
    const vol = path.join(d, 't.vol');
    fs.writeFileSync(vol, POSIX_VOLFILE.replace(/@BACKING@/g, path.join(d, 'back')));
    const host = spawn('python3', ['-c', PTY_HOST, process.execPath, CLI_PATH, 'mount', vol, mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
    holders.push(host);
    let out = '';
    host.stdout!.setEncoding('utf8').on('data', (x: string) => (out += x));
    await waitFor(() => out.includes('hung up') || host.exitCode !== null, 30_000, 'the pty host to start the daemon and hang up');
    expect(out).toContain('hung up');
    const pid = Number(out.split('\n')[0]);
    try {
      // The hang-up reached it (a reload of an unchanged volfile), and its log lines now go to a dead terminal.
      const reload = await xlstack(['reload', mnt]);
      expect(reload.stdout).toContain('unchanged');
      fs.writeFileSync(path.join(mnt, 'after'), 'still serving');
      expect(fs.readFileSync(path.join(d, 'back', 'after'), 'utf8')).toBe('still serving');
      expect(process.kill(pid, 0)).toBe(true);
      expect((await xlstack(['unmount', mnt])).code).toBe(0);
      await waitFor(() => !isMounted(mnt), 10_000, 'the unmount');
    } finally {
      if (isMounted(mnt)) spawnSync('umount', ['-l', mnt]);
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone already
      }
    }
  });
});

describe('statedump', () => {
  let m: TestMount;
  let holder: ChildProcess;

  beforeAll(async () => {
    m = await startMount({
      volfile: `${POSIX_VOLFILE}\nvolume test-trace\n    type debug/trace\n    option log-history on\n    option include-ops write\n    subvolumes test-posix\nend-volume\n`,
    });
    fs.writeFileSync(path.join(m.mountpoint, 'open'), 'held open');
    holder = await holdOpen(path.join(m.mountpoint, 'open'), '/');
  });

  afterAll(async () => {
    await stop(holder);
    await m.unmount();
  });

  test('xlstack statedump prints the graphs, inodes, fds and handles as JSON', async () => {
    const r = await xlstack(['statedump', m.mountpoint]);
    expect(r.code).toBe(0);
    const dump = JSON.parse(r.stdout);
    expect(dump.activeGraph).toBe(1);
    expect(dump.graphs.map((g: { id: number }) => g.id)).toEqual([1]);
    expect(dump.graphs[0].state).toBe('active');
    expect(dump.graphs[0].fdCount).toBeGreaterThanOrEqual(1);
    const inode = dump.graphs[0].inodes.find((i: { path: string }) => i.path === '/open');
    expect(inode).toBeDefined();
    const base = dump.baseFds.find((b: { gfid: string }) => b.gfid === inode.gfid);
    expect(base).toMatchObject({ graph: 1, isDir: false });
    // The kernel's nodeid for it names a record on graph 1.
    expect(dump.nodeids).toContainEqual(expect.objectContaining({ gfid: inode.gfid, graph: 1 }));
  });

  test('SIGUSR1 writes the statedump to a file and logs where', async () => {
    process.kill(m.pid, 'SIGUSR1');
    await waitFor(() => /statedump written to (\S+)/.test(m.log()), 10_000, 'the statedump file');
    const file = /statedump written to (\S+)/.exec(m.log())![1];
    const dump = JSON.parse(fs.readFileSync(file, 'utf8'));
    // Written by the worker serving the mount, which names its supervisor (the mount's pid).
    expect(dump.transport.supervisor.pid).toBe(m.pid);
    expect(file).toContain(`xlstack.${dump.pid}.dump.`);
    fs.rmSync(file);
  });

  test('writes reach the graph in 1 MiB pieces (max_write, max_pages), not 4 KiB', async () => {
    const data = Buffer.alloc(1 << 20, 7);
    const traceHistory = async (): Promise<string[]> =>
      JSON.parse((await xlstack(['statedump', m.mountpoint])).stdout).graphs[0].xlators.find((x: { name: string }) => x.name === 'test-trace').history;
    const before = (await traceHistory()).length;
    const writer = spawn(process.execPath, ['-e', `const fs = require('fs'); const fd = fs.openSync(${JSON.stringify(path.join(m.mountpoint, 'big'))}, 'w'); fs.writeSync(fd, Buffer.alloc(${data.length}, 7)); fs.closeSync(fd);`], { stdio: 'inherit' });
    expect(await within(new Promise((r) => writer.on('exit', r)), 20_000)).toBe(0);
    const sizes = (await traceHistory()).slice(before).map((l) => /<(\d+) bytes>/.exec(l)?.[1]).filter(Boolean).map(Number);
    expect(sizes.length).toBeGreaterThan(0);
    expect(Math.max(...sizes)).toBe(1024 * 1024);
    expect(sizes.reduce((a, b) => a + b, 0)).toBe(data.length);
  });
});

test('the CLI prints usage', async () => {
  const r = await xlstack(['help']);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('xlstack mount VOLFILE MOUNTPOINT');
});

describe('the mount as the kernel sees it', () => {
  /** The read-ahead of the mount on `mnt` (its device's, in sysfs), found through mountinfo. */
  const readAheadKb = (mnt: string): string => {
    const line = fs
      .readFileSync('/proc/self/mountinfo', 'utf8')
      .split('\n')
      .map((l) => l.split(' '))
      .find((f) => f[4] === mnt);
    if (!line) throw new Error(`${mnt} is not in mountinfo`);
    return fs.readFileSync(`/sys/class/bdi/${line[2]}/read_ahead_kb`, 'utf8').trim();
  };

  test.each([[[] as string[]], [['--single-process']]])('the kernel reads ahead 1 MiB of a sequential reader, as far as one request reads (args %j)', async (args) => {
    const m = await startMount({ args });
    try {
      expect(readAheadKb(m.mountpoint)).toBe('1024');
    } finally {
      await m.unmount();
    }
  });
});
