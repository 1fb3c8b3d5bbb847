// A mount that survives its own worker's death (`xlstack mount`): the supervisor
// holds /dev/fuse and the mount; its worker is SIGKILLed 10 times at seeded moments while a
// reader checksums a 256 MiB file through one fd held open (O_DIRECT), a writer pwrites at
// explicit offsets through another, `tar x` extracts a source tree again and again, and two
// processes run a namespace workload (mkdir, create+write, append, rename, link, unlink,
// rmdir, chmod). Each new worker takes over the kernel's nodeids and
// handles from the supervisor's record and serves again what the dead one read and never
// answered (FUSE_NOTIFY_RESEND), and the POSIX lock one process holds and another waits for
// (taken again from the record). Nothing the processes do may fail; every byte and name is
// checked, and the waiter gets the lock only once it is given back. And a worker that keeps dying at start: the supervisor gives up, the mount
// answers EIO (no hang), and it can be unmounted.
//
// The seed is printed; WORKER_CRASH_SEED=<n> repeats a run's schedule and data.
import { spawn, spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { ChildArgs, ChildResult } from '../helpers/failover-child';
import { seededBytes, sha256, firstDifference } from '../helpers/failover-child';
import type { Model } from '../helpers/namespace-child';
import { Child as NsChild, compare, startChild as startNsChild } from '../helpers/namespace';
import { Rng } from '../helpers/rng';
import { cleanupScratch, scratchDir, track, tracked } from '../helpers/scratch';
import { JsonChild, startJsonChild } from '../helpers/json-child';
import { FAST_FAILURE_MS } from '../../src/supervisor/supervisor';
import { TestMount, startMount, waitFor, within, xlstack } from '../helpers/mount';
import { brickWaiting, brickXlator, clientVolfile, lockingBrickVolfile, startBrick, stopBricks } from '../helpers/brick';
import { python3 } from '../helpers/pytools';

const IO_CHILD = path.join(__dirname, '../helpers/failover-child.js');
const SEED = process.env.WORKER_CRASH_SEED ? Number(process.env.WORKER_CRASH_SEED) : Date.now() % 1_000_000;
process.stdout.write(`worker-crash.test: seed ${SEED} (WORKER_CRASH_SEED=${SEED} repeats it)\n`);

const KILLS = 10;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

afterAll(async () => {
  await stopBricks();
  await cleanupScratch();
}, 60_000);

/** The supervisor's worker now (its one node child; the other is its mount's watcher). */
function workerOf(m: TestMount): number | undefined {
  const r = spawnSync('pgrep', ['-P', String(m.pid), '-x', path.basename(process.execPath)], { encoding: 'utf8', timeout: 5000 });
  const pids = r.stdout.split('\n').filter(Boolean).map(Number);
  return pids.length === 1 ? pids[0] : undefined;
}

/** Lines saying a worker serves (the first, and each one after a death). */
const serving = (m: TestMount) => (m.log().match(/\[supervisor\] worker \d+ \(pid \d+\) serves/g) ?? []).length;

type IoChild = JsonChild<ChildResult>;

type Spec<A> = A extends unknown ? Omit<A, 'stopFile'> : never;

function startIoChild(args: Spec<ChildArgs>, dir: string): IoChild {
  return startJsonChild<ChildResult>(IO_CHILD, args, path.join(dir, `stop-io-${tracked()}`), `the ${args.mode} child`);
}

// The lock holder and waiter (python3: Node has no fcntl locks). The holder marks the
// release on the local disk before it unlocks: a waiter granted before that mark was
// granted a lock that was still held.
const HOLDER = `
import fcntl, os, sys, time
f = open(sys.argv[1], 'r+')
fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
print('locked', flush=True)
deadline = time.time() + 150
while not os.path.exists(os.path.join(sys.argv[2], 'release')) and time.time() < deadline:
    time.sleep(0.02)
open(os.path.join(sys.argv[2], 'released'), 'w').close()
fcntl.lockf(f, fcntl.LOCK_UN)
print('unlocked', flush=True)
`;
const WAITER = `
import fcntl, os, sys
f = open(sys.argv[1], 'r+')
print('waiting', flush=True)
fcntl.lockf(f, fcntl.LOCK_EX)
print('granted after release' if os.path.exists(os.path.join(sys.argv[2], 'released')) else 'granted while held', flush=True)
`;

function startPy(script: string, file: string, dir: string): { saw(what: string): Promise<void>; lines(): string[] } {
  const child = track(spawn(python3(), ['-c', script, file, dir], { stdio: ['ignore', 'pipe', 'pipe'] }));
  let out = '';
  let err = '';
  child.stdout!.setEncoding('utf8').on('data', (d: string) => (out += d));
  child.stderr!.setEncoding('utf8').on('data', (d: string) => (err += d));
  const lines = () => out.split('\n').filter(Boolean);
  return {
    lines,
    async saw(what) {
      await waitFor(() => lines().some((l) => l.startsWith(what)) || child.exitCode !== null, 30_000, `python to say ${what} (stderr: ${err})`);
      if (!lines().some((l) => l.startsWith(what))) throw new Error(`python exited without saying ${what}: ${out} ${err}`);
    },
  };
}

const POSIX = `
volume worker-posix
    type storage/posix
    option directory @BACKING@
end-volume
`;

/** Kills the worker, or has it hand over to a new one (`xlstack upgrade`). */
type Disruption = 'kill' | 'upgrade';

async function underDisruption(how: Disruption): Promise<void> {
  const rnd = new Rng(SEED + (how === 'kill' ? 0 : 1));
  const dir = scratchDir('xlstack-worker-crash-');
  const m = await startMount({ volfile: POSIX });
  try {
    const size = 256 * 2 ** 20;
    const data = seededBytes(SEED, 0, size);
    fs.writeFileSync(path.join(m.backing, 'big'), data);
    const reader = startIoChild({ mode: 'read', file: path.join(m.mountpoint, 'big'), chunk: 256 * 1024, pauseMs: 2, maxMs: 120_000 }, dir);
    const modelFile = path.join(dir, 'pwrite-model');
    const writer = startIoChild({ mode: 'write', file: path.join(m.mountpoint, 'pwrite'), size: 4 * 2 ** 20, seed: SEED, maxLen: 48 * 1024, pauseMs: 1, modelFile, maxMs: 120_000 }, dir);
    const ns: NsChild[] = [0, 1].map((i) =>
      startNsChild({ root: m.mountpoint, name: `p${i}`, seed: SEED * 10 + i, modelFile: path.join(dir, `model-${i}`), maxMs: 120_000 }, dir),
    );
    // tar x of a source tree, again and again, each into a directory of its own.
    const tarball = path.join(dir, 'src.tar');
    expect(spawnSync('tar', ['cf', tarball, '-C', path.resolve(__dirname, '../../..'), 'src', 'xlators'], { timeout: 30_000 }).status).toBe(0);
    const tar = track(
      spawn('sh', ['-c', 'i=0; while [ ! -e "$1/stop-tar" ]; do mkdir "$2/tar$i" && tar xf "$3" -C "$2/tar$i" || exit 1; i=$((i+1)); echo $i; done', 'tar-loop', dir, m.mountpoint, tarball], {
        stdio: ['ignore', 'pipe', 'pipe'],
      }),
    );
    let tars = 0;
    let tarErr = '';
    tar.stdout!.setEncoding('utf8').on('data', (d: string) => (tars = Number(d.trim().split('\n').pop())));
    tar.stderr!.setEncoding('utf8').on('data', (d: string) => (tarErr += d));
    const tarDone = new Promise<number | null>((r) => tar.once('exit', r));
    await Promise.all([reader.ready(), writer.ready(), ...ns.map((c) => c.ready())]);
    // A process holds a POSIX lock on a file; another waits for it (F_SETLKW) all along.
    fs.writeFileSync(path.join(m.backing, 'locked'), 'x');
    const holder = startPy(HOLDER, path.join(m.mountpoint, 'locked'), dir);
    await holder.saw('locked');
    const waiter = startPy(WAITER, path.join(m.mountpoint, 'locked'), dir);
    await waiter.saw('waiting');
    const total = () => reader.progress() + writer.progress() + tars + ns.reduce((s, c) => s + c.progress(), 0);
    const pauses: number[] = [];
    for (let k = 1; k <= KILLS; k++) {
      await waitFor(() => serving(m) >= k, 20_000, `worker ${k} to serve`);
      // A worker killed sooner after it began serving counts as failing at start (5 in a row: the supervisor gives up).
      await sleep(FAST_FAILURE_MS + 100);
      const before = total();
      await waitFor(() => total() > before + 10, 20_000, `progress before ${how} ${k} (stuck at ${total()})`);
      await sleep(20 + rnd.int(400));
      const pid = workerOf(m);
      expect(pid).toBeDefined();
      const t = Date.now();
      if (how === 'kill') process.kill(pid!, 'SIGKILL');
      else {
        const r = await xlstack(['upgrade', m.mountpoint], { timeoutMs: 40_000 });
        expect({ code: r.code, err: r.stderr }).toEqual({ code: 0, err: '' });
        expect(r.stdout).toMatch(new RegExp(`worker generation ${k + 1}`));
      }
      await waitFor(() => serving(m) > k, 20_000, `a new worker after ${how} ${k}`);
      expect(workerOf(m)).not.toBe(pid);
      pauses.push(Date.now() - t);
    }
    const last = total();
    await waitFor(() => total() > last + 20, 20_000, 'progress after the last kill');
    // The waiter never got the lock while the holder held it; once given back, it does.
    expect(waiter.lines()).toEqual(['waiting']);
    fs.writeFileSync(path.join(dir, 'release'), '');
    await holder.saw('unlocked');
    await waiter.saw('granted');
    expect(waiter.lines()).toEqual(['waiting', 'granted after release']);
    fs.writeFileSync(path.join(dir, 'stop-tar'), '');
    const tarCode = await within(tarDone, 60_000);
    const [read, written, ...nsResults] = await Promise.all([reader.finish(), writer.finish(), ...ns.map((c) => c.finish())]);
    expect({ tarCode, tarErr }).toEqual({ tarCode: 0, tarErr: '' });
    expect(tars).toBeGreaterThan(0);
    const pristine = path.join(dir, 'pristine');
    fs.mkdirSync(pristine);
    expect(spawnSync('tar', ['xf', tarball, '-C', pristine], { timeout: 30_000 }).status).toBe(0);
    // Every tree tar made equals the original (the loop stops between two).
    for (let i = 0; i < tars; i++) {
      const d = spawnSync('diff', ['-r', '--no-dereference', pristine, path.join(m.backing, `tar${i}`)], { encoding: 'utf8', timeout: 60_000 });
      expect({ tree: i, diff: d.stdout.slice(0, 2000), status: d.status }).toEqual({ tree: i, diff: '', status: 0 });
    }
    process.stdout.write(`pause per ${how} (to the new worker serving): ${pauses.join(', ')} ms\n`);
    process.stdout.write(`tar x: ${tars} trees; reader: ${read.ops} reads, ${read.passes.length} passes; writer: ${written.ops} pwrites; namespace: ${nsResults.map((r) => `${r.ops} ops, longest ${r.longestMs} ms (${r.longest})`).join('; ')}\n`);
    const replayed = m.log().match(/sent again: found carried out .*/g) ?? [];
    process.stdout.write(`requests sent again and found carried out: ${replayed.length}\n`);
    const errors = [...read.errors, ...written.errors, ...written.mismatches, ...read.mismatches, ...nsResults.flatMap((r) => r.errors)];
    if (errors.length) process.stdout.write(`errors:\n${errors.join('\n')}\nmount log (end):\n${m.log().slice(-8000)}\n`);
    expect(errors).toEqual([]);
    for (const p of read.passes) expect(p).toEqual({ sha256: sha256(data), bytes: size, ms: expect.any(Number) });
    expect(read.passes.length).toBeGreaterThan(0);
    const model = fs.readFileSync(modelFile);
    expect(firstDifference(fs.readFileSync(path.join(m.backing, 'pwrite')), model)).toBeUndefined();
    for (let i = 0; i < ns.length; i++) {
      const nsModel = JSON.parse(fs.readFileSync(path.join(dir, `model-${i}`), 'utf8')) as Model;
      expect({ p: i, diffs: compare(m.backing, `p${i}`, nsModel) }).toEqual({ p: i, diffs: [] });
    }
    // statedump (through the worker now serving) shows the supervisor and the worker's generation.
    const d = JSON.parse((await xlstack(['statedump', m.mountpoint], { timeoutMs: 10_000 })).stdout);
    expect(d.transport.supervisor).toMatchObject({
      pid: m.pid,
      generation: KILLS + 1,
      upgrades: how === 'upgrade' ? KILLS : 0,
      lastEnd: { generation: KILLS, how: how === 'upgrade' ? 'retired (an upgrade)' : 'signal SIGKILL' },
    });
    expect(d.transport.generation).toBe(KILLS + 1);
    if (how === 'upgrade') expect(m.log()).not.toMatch(/died/);
  } finally {
    await m.unmount();
  }
  expect(await within(m.exited, 15_000)).toBe(0);
}

test(`the worker is SIGKILLed ${KILLS} times under a reader, a pwrite writer and two namespace workloads: no error, every byte and name right`, () => underDisruption('kill'), 175_000);

test(`the same with a live upgrade (xlstack upgrade) instead of a kill, ${KILLS} times`, () => underDisruption('upgrade'), 175_000);

test('workers that keep dying at start: after 5 fast failures the supervisor stops, the mount answers EIO, the log says why, unmount works', async () => {
  const m = await startMount({ volfile: POSIX });
  try {
    fs.writeFileSync(path.join(m.backing, 'f'), 'x');
    await sleep(FAST_FAILURE_MS + 100);
    const volfile = fs.readFileSync(m.volfile, 'utf8');
    // Every later worker fails to build its graph, at once.
    fs.writeFileSync(m.volfile, volfile.replace('storage/posix', 'storage/no-such-type'));
    process.kill(workerOf(m)!, 'SIGKILL');
    await waitFor(() => /workers in a row died before serving .* answers EIO/.test(m.log()), 60_000, 'the supervisor to give up');
    // Worker 1 served for over FAST_FAILURE_MS: its death is not a fast failure; workers 2 to 6 die before serving.
    expect((m.log().match(/\[supervisor\] worker \d+ .*died .*; starting worker/g) ?? []).length).toBe(5);
    expect(m.log()).toMatch(/5 workers in a row died before serving/);
    // A process on the mount gets EIO, promptly (a child: a hang would not hold this process).
    const r = spawnSync(process.execPath, ['-e', `try { require('fs').statSync(${JSON.stringify(path.join(m.mountpoint, 'f'))}); console.log('OK') } catch (e) { console.log(e.code) }`], {
      encoding: 'utf8',
      timeout: 10_000,
    });
    expect(r.stdout.trim()).toBe('EIO');
    expect(workerOf(m)).toBeUndefined();
    fs.writeFileSync(m.volfile, volfile);
  } finally {
    await m.unmount();
  }
  expect(await within(m.exited, 15_000)).toBe(1);
}, 90_000);

test('mounting again where xlstack serves upgrades its worker: nothing unmounted, an open file goes on', async () => {
  const m = await startMount({ volfile: POSIX });
  try {
    fs.writeFileSync(path.join(m.backing, 'f'), 'before');
    const holder = startPy(
      `
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
print('open', flush=True)
import time
deadline = time.time() + 50
while not os.path.exists(os.path.join(sys.argv[2], 'go')) and time.time() < deadline:
    time.sleep(0.02)
os.pwrite(fd, b'after!', 0)
print('wrote ' + os.pread(fd, 6, 0).decode(), flush=True)
`,
      path.join(m.mountpoint, 'f'),
      m.dir,
    );
    await holder.saw('open');
    const before = workerOf(m);
    const r = await xlstack(['mount', m.volfile, m.mountpoint], { timeoutMs: 40_000 });
    expect({ code: r.code, out: r.stdout.trim(), err: r.stderr }).toEqual({ code: 0, out: `upgraded ${m.mountpoint}: worker generation 2`, err: '' });
    expect(workerOf(m)).not.toBe(before);
    fs.writeFileSync(path.join(m.dir, 'go'), '');
    await holder.saw('wrote');
    expect(holder.lines()).toEqual(['open', 'wrote after!']);
    expect(fs.readFileSync(path.join(m.backing, 'f'), 'utf8')).toBe('after!');
  } finally {
    await m.unmount();
  }
  expect(await within(m.exited, 15_000)).toBe(0);
}, 60_000);

test('SIGHUP, SIGUSR1 and SIGUSR2 sent to the supervisor reach its worker (reload, statedump, log reopen), and the supervisor lives on', async () => {
  const m = await startMount({ volfile: POSIX });
  try {
    const worker = workerOf(m);
    expect(worker).toBeDefined();
    // A new topology: the reload a SIGHUP asks for builds graph 2.
    fs.appendFileSync(m.volfile, '\nvolume extra\n    type debug/trace\n    subvolumes ' + topOf(m.volfile) + '\nend-volume\n');
    process.kill(m.pid, 'SIGHUP');
    await waitFor(() => /switched to graph 2/.test(m.log()), 20_000, 'the worker to switch graphs');
    process.kill(m.pid, 'SIGUSR1');
    await waitFor(() => /statedump written to/.test(m.log()), 20_000, 'the worker to write a statedump');
    process.kill(m.pid, 'SIGUSR2');
    // The supervisor is alive (signal 0 reaches it), its worker the same, and the mount serves.
    expect(() => process.kill(m.pid, 0)).not.toThrow();
    expect(workerOf(m)).toBe(worker);
    const w = spawnSync(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(path.join(m.mountpoint, 'still'))}, 'served')`], { timeout: 10_000 });
    expect(w.status).toBe(0);
    expect(fs.readFileSync(path.join(m.backing, 'still'), 'utf8')).toBe('served');
  } finally {
    await m.unmount();
  }
  expect(await within(m.exited, 15_000)).toBe(0);
}, 60_000);

/** The last volume a volfile defines (its top). */
function topOf(volfile: string): string {
  const names = [...fs.readFileSync(volfile, 'utf8').matchAll(/^volume (\S+)/gm)].map((x) => x[1]);
  return names[names.length - 1];
}

// Over the network the brick holds the locks: a new worker is the same client to it (its
// supervisor's identity), and the brick keeps a departed client's open files and their locks
// for its grace period, so the new worker continues them instead of finding them gone.
test('over the network: a POSIX lock held through the mount survives its worker’s SIGKILL (the brick keeps it for the new worker), and the waiter gets it only once it is given back', async () => {
  const b = await startBrick({ volfile: lockingBrickVolfile });
  const m = await startMount({ volfile: clientVolfile(b.port, '', 'brick-locks') });
  try {
    const file = path.join(m.mountpoint, 'locked');
    expect(spawnSync(process.execPath, ['-e', `require('fs').writeFileSync(${JSON.stringify(file)}, 'x')`], { timeout: 10_000 }).status).toBe(0);
    const holder = startPy(HOLDER, file, m.dir);
    await holder.saw('locked');
    const waiter = startPy(WAITER, file, m.dir);
    await waiter.saw('waiting');
    await waitFor(() => brickWaiting(b) > 0, 20_000, 'the waiter’s lock request to wait on the brick');

    process.kill(workerOf(m)!, 'SIGKILL');
    await waitFor(() => serving(m) >= 2, 20_000, 'a new worker to serve');
    // The new worker continued the holder's open file (the brick says so), so its lock never went.
    const departed = (brickXlator(b, 'protocol/server').departed ?? []) as { continued: number }[];
    expect(departed.reduce((n, d) => n + d.continued, 0)).toBeGreaterThanOrEqual(1);
    // The waiter's request, sent again to the new worker, waits on the brick again.
    await waitFor(() => brickWaiting(b) > 0, 20_000, 'the waiter’s request to wait on the brick again');
    expect(waiter.lines()).toEqual(['waiting']);

    fs.writeFileSync(path.join(m.dir, 'release'), '');
    await holder.saw('unlocked');
    await waiter.saw('granted');
    expect(waiter.lines()).toEqual(['waiting', 'granted after release']);
  } finally {
    await m.unmount();
    await b.stop();
  }
}, 90_000);
