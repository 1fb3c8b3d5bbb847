// Failover: the brick behind a mount is killed with SIGKILL and restarted again and again
// (at seeded random moments) while child processes read, write and hold files open through
// the mount; the client's graph is also switched while the brick is down and while it comes
// back. Nothing the children do may fail, and every byte must come out as expected.
//
// The seed is printed; FAILOVER_SEED=<n> repeats a run's schedule and data.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { ChildArgs, ChildResult } from '../helpers/failover-child';
import { firstDifference, seededBytes, sha256 } from '../helpers/failover-child';
import { Rng } from '../helpers/rng';
import { cleanupScratch, scratchDir, tracked } from '../helpers/scratch';
import { JsonChild, startJsonChild } from '../helpers/json-child';
import { TestBrick, clientVolfile, startBrick } from '../helpers/brick';
import { TestMount, startMount, waitFor, xlstack } from '../helpers/mount';

const CHILD = path.join(__dirname, '../helpers/failover-child.js');
const SEED = process.env.FAILOVER_SEED ? Number(process.env.FAILOVER_SEED) : Date.now() % 1_000_000;
process.stdout.write(`failover.test: seed ${SEED} (FAILOVER_SEED=${SEED} repeats it)\n`);

const KILLS = 10;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const stamp = () => new Date().toISOString();

afterAll(cleanupScratch, 60_000);

const tmpdir = () => scratchDir('xlstack-failover-');

/** Makes the next reads really go to the daemon and the brick, not the page cache. */
function dropCaches(): void {
  const r = spawnSync('sh', ['-c', 'sync; echo 3 > /proc/sys/vm/drop_caches'], { timeout: 30_000 });
  if (r.status !== 0) throw new Error(`dropping caches failed (root needed): ${r.stderr}`);
}

type Child = JsonChild<ChildResult>;

/** Arguments for a child, but its stop file (made up here). */
type Spec<A> = A extends unknown ? Omit<A, 'stopFile'> : never;

function startChild(args: Spec<ChildArgs>, dir: string): Child {
  return startJsonChild<ChildResult>(CHILD, args, path.join(dir, `stop-${args.mode}-${tracked()}`), `the ${args.mode} child`, 60_000);
}

/**
 * Runs `fn`; if it throws (a bounded wait ran out, an assertion failed), first stops the
 * child and prints what it saw and the mount's log, then rethrows.
 */
async function diagnosed<T>(child: Child, m: TestMount, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (e) {
    const r = await child.finish(25_000).catch((f: Error) => f.message);
    process.stdout.write(`failed at ${stamp()}; the child's result: ${JSON.stringify(r, null, 1)}\nmount log:\n${m.log()}\n`);
    throw e;
  }
}

/** Lines of the mount's log saying its protocol/client (re)connected to this brick. */
const connections = (m: TestMount, b: TestBrick) => m.log().split(`connected to 127.0.0.1:${b.port}/brick-posix (connection`).length - 1;
const noticedDown = (m: TestMount) => (m.log().match(/is unreachable; reconnecting/g) ?? []).length;
const switches = (m: TestMount) => (m.log().match(/switched to graph/g) ?? []).length;

interface Kill {
  readonly at: string;
  readonly oldPid: number;
  readonly newPid: number;
  readonly progressAtKill: number;
  readonly downMs: number;
}

/**
 * Kills the brick with SIGKILL and restarts it `n` times. Before each kill it waits
 * (bounded) for the mount's client to be connected to the current incarnation and for the
 * child to make progress, then waits a random moment; the brick stays down a random time.
 */
async function killAndRestart(b: TestBrick, m: TestMount, child: Child, rnd: Rng, n: number): Promise<Kill[]> {
  const kills: Kill[] = [];
  for (let k = 1; k <= n; k++) {
    await waitFor(() => connections(m, b) >= k, 15_000, `the client to connect to incarnation ${k} of the brick`);
    // Progress between every two kills: this wait fails the test otherwise.
    const before = kills.length ? kills[kills.length - 1].progressAtKill : -1;
    await waitFor(() => child.progress() > before, 20_000, `the child to make progress before kill ${k} (stuck at ${child.progress()})`);
    await sleep(100 + Math.floor(rnd.next() * 700));
    const oldPid = b.pid;
    const progressAtKill = child.progress();
    const at = stamp();
    await b.kill9();
    // Really down: the process is gone.
    expect(() => process.kill(oldPid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    const downMs = Math.floor(rnd.next() * 600);
    await sleep(downMs);
    await b.start();
    expect(b.pid).not.toBe(oldPid);
    expect(b.pid).toBeGreaterThan(0);
    kills.push({ at, oldPid, newPid: b.pid, progressAtKill, downMs });
  }
  process.stdout.write(`kills: ${kills.map((k) => `${k.at} pid ${k.oldPid}->${k.newPid} down ${k.downMs}ms progress ${k.progressAtKill}`).join('\n       ')}\n`);
  return kills;
}

test('a reader checksums a 64 MiB file through the mount while the brick is SIGKILLed and restarted 10 times: right checksum, no error', async () => {
  const seed = SEED + 1;
  const rnd = new Rng(seed);
  const dir = tmpdir();
  const b = await startBrick();
  const size = 64 * 2 ** 20;
  const data = seededBytes(seed, 0, size);
  const want = sha256(data);
  fs.writeFileSync(path.join(b.dir, 'big'), data);
  const m = await startMount({ volfile: clientVolfile(b.port) });
  dropCaches();
  // O_DIRECT: every read goes to the brick, one pass after another, until the kills are over.
  const reader = startChild({ mode: 'read', file: path.join(m.mountpoint, 'big'), chunk: 64 * 1024, pauseMs: 3, maxMs: 80_000 }, dir);
  await reader.ready();
  await diagnosed(reader, m, async () => {
    const ks = await killAndRestart(b, m, reader, rnd, KILLS);
    const last = ks[ks.length - 1].progressAtKill;
    await waitFor(() => reader.progress() > last + 16, 20_000, 'the reader to go on after the last restart');
  });
  const result = await reader.finish();
  process.stdout.write(`reader: ${result.ops} reads, passes ${result.passes.map((p) => `${p.bytes} bytes in ${p.ms} ms`).join(', ')}\n`);
  if (result.errors.length) process.stdout.write(`reader errors:\n${result.errors.join('\n')}\nmount log:\n${m.log()}\n`);
  expect(result.errors).toEqual([]);
  expect(result.bytes).toBe(size);
  expect(result.sha256).toBe(want);
  for (const p of result.passes) expect(p).toEqual({ sha256: want, bytes: size, ms: expect.any(Number) });
  // Every kill hit a connected client, and it reconnected every time.
  expect(noticedDown(m)).toBeGreaterThanOrEqual(KILLS);
  expect(connections(m, b)).toBeGreaterThanOrEqual(KILLS + 1);
  expect(m.log()).not.toMatch(/ ERROR /);
}, 100_000);

test('a writer doing pwrite at explicit offsets while the brick is SIGKILLed and restarted 10 times: the file is what it wrote, no error', async () => {
  const seed = SEED + 2;
  const rnd = new Rng(seed);
  const dir = tmpdir();
  const b = await startBrick();
  const m = await startMount({ volfile: clientVolfile(b.port) });
  const size = 8 * 2 ** 20;
  const modelFile = path.join(dir, 'model');
  const writer = startChild({ mode: 'write', file: path.join(m.mountpoint, 'pwrite'), size, seed, maxLen: 48 * 1024, pauseMs: 0, modelFile, maxMs: 80_000 }, dir);
  await writer.ready();
  await diagnosed(writer, m, async () => {
    const ks = await killAndRestart(b, m, writer, rnd, KILLS);
    const last = ks[ks.length - 1].progressAtKill;
    await waitFor(() => writer.progress() > last + 8, 20_000, 'the writer to go on after the last restart');
  });
  const result = await writer.finish();
  process.stdout.write(`writer: ${result.ops} pwrites\n`);
  if (result.errors.length || result.mismatches.length) process.stdout.write(`writer errors:\n${[...result.errors, ...result.mismatches].join('\n')}\nmount log:\n${m.log()}\n`);
  expect(result.errors).toEqual([]);
  expect(result.mismatches).toEqual([]);
  expect(result.ops).toBeGreaterThan(KILLS * 20);
  const model = fs.readFileSync(modelFile);
  expect(model.length).toBe(size);
  expect(sha256(model)).toBe(result.sha256);
  // The brick's file, read directly.
  const onBrick = fs.readFileSync(path.join(b.dir, 'pwrite'));
  expect(firstDifference(onBrick, model)).toBeUndefined();
  // And read through the mount (by a child, O_DIRECT, caches dropped).
  dropCaches();
  const check = startChild({ mode: 'read', file: path.join(m.mountpoint, 'pwrite'), chunk: 1 << 20, pauseMs: 0, maxMs: 30_000 }, dir);
  const read = await check.finish(30_000);
  expect(read.errors).toEqual([]);
  expect(read.bytes).toBe(size);
  expect(read.sha256).toBe(result.sha256);
  expect(noticedDown(m)).toBeGreaterThanOrEqual(KILLS);
  expect(connections(m, b)).toBeGreaterThanOrEqual(KILLS + 1);
  expect(m.log()).not.toMatch(/ ERROR /);
}, 100_000);

// Topologies over the client volfile's `remote` (protocol/client): each reload is a real switch.
const layer = (name: string, type: string, sub: string) => `volume ${name}\n    type ${type}\n    subvolumes ${sub}\nend-volume\n`;
const TOPOLOGIES: ((port: number) => string)[] = [
  (p) => clientVolfile(p),
  (p) => clientVolfile(p, layer('wb', 'performance/write-behind', 'remote')),
  (p) => clientVolfile(p, layer('tr', 'debug/trace', 'remote')),
  (p) => clientVolfile(p, layer('wb', 'performance/write-behind', 'remote') + layer('tr', 'debug/trace', 'wb')),
];

test('graph switches while the brick is down and while it comes back: a held fd keeps working, data verified, old graphs cleaned up', async () => {
  const seed = SEED + 3;
  const rnd = new Rng(seed);
  /** How long the brick stays down (or starting) around a switch: 200 ms to 1.5 s. */
  const downtime = () => 200 + Math.floor(rnd.next() * 1300);
  const dir = tmpdir();
  const b = await startBrick();
  const m = await startMount({ volfile: TOPOLOGIES[0](b.port) });
  const modelFile = path.join(dir, 'model');
  const pauseFile = path.join(dir, 'pause');
  const holder = startChild({ mode: 'hold', file: path.join(m.mountpoint, 'held'), size: 2 << 20, block: 64 * 1024, seed, pauseMs: 1, modelFile, pauseFile, maxMs: 80_000 }, dir);
  await holder.ready();
  let graph = 1;
  const log: string[] = [];
  const note = (s: string) => log.push(`${stamp()} ${s}`);

  /** Writes topology `k` and sends SIGHUP; returns how to wait (bounded) for the switch. */
  const switchTo = async (k: number) => {
    const before = switches(m);
    fs.writeFileSync(m.volfile, TOPOLOGIES[k % TOPOLOGIES.length](b.port));
    process.kill(m.pid, 'SIGHUP');
    note(`SIGHUP for topology ${k % TOPOLOGIES.length}`);
    return async () => {
      await waitFor(() => switches(m) > before || /reload .* failed/.test(m.log()), 15_000, `the switch to graph ${graph + 1}`);
      expect(m.log()).not.toMatch(/reload .* failed/);
      graph++;
      expect(m.log()).toContain(`switched to graph ${graph} `);
      note(`switched to graph ${graph}`);
    };
  };
  const kill = async () => {
    // At a random moment of the holder's round (a pwrite, read or fsync is likely in flight).
    await sleep(Math.floor(rnd.next() * 40));
    const down = noticedDown(m);
    const oldPid = b.pid;
    await b.kill9();
    expect(() => process.kill(oldPid, 0)).toThrow(expect.objectContaining({ code: 'ESRCH' }));
    note(`killed brick ${oldPid}`);
    await waitFor(() => noticedDown(m) > down, 10_000, 'the client to notice the brick is down');
    return oldPid;
  };
  /** The held fds must work again: the holder completes `rounds` more rounds (bounded). */
  const goesOn = async (what: string, rounds = 5) => {
    const p = holder.progress();
    await waitFor(() => holder.progress() >= p + rounds, 25_000, `the holder to go on ${what} (stuck at round ${holder.progress()})`);
    note(`holder at round ${holder.progress()} ${what}`);
  };

  // Only the active graph is alive once the idle handles moved and old graphs were cleaned up.
  type Dump = { activeGraph: number; graphs: { id: number; fdCount: number; xlators: { name: string; connected?: boolean }[] }[] };
  const dump = async () => {
    const r = await xlstack(['statedump', m.mountpoint]);
    expect(r.code).toBe(0);
    return JSON.parse(r.stdout) as Dump;
  };
  const settled = async () => {
    let d = await dump();
    const end = Date.now() + 15_000;
    while (d.graphs.length > 1 && Date.now() < end) {
      await sleep(200);
      d = await dump();
    }
    return d;
  };

  await diagnosed(holder, m, async () => {
    await goesOn('at the start');

    // 1. Switch while the brick is down; it comes back after the switch.
    let oldPid = await kill();
    await (await switchTo(1))();
    await sleep(downtime());
    await b.start();
    expect(b.pid).not.toBe(oldPid);
    note(`brick restarted as ${b.pid}`);
    await goesOn('after a switch while the brick was down');

    // 2. Switch while it comes back: the brick is starting (not yet listening) at the SIGHUP.
    oldPid = await kill();
    await sleep(downtime());
    const starting = b.start();
    const switched = await switchTo(2);
    await starting;
    await switched();
    expect(b.pid).not.toBe(oldPid);
    await goesOn('after a switch while the brick was starting');

    // 3. The brick is up again and the client is reconnecting (backoff) at the SIGHUP.
    oldPid = await kill();
    await sleep(downtime());
    await b.start();
    await (await switchTo(3))();
    expect(b.pid).not.toBe(oldPid);
    await goesOn('after a switch as the brick came back');

    // 4. Two switches while the brick is down.
    oldPid = await kill();
    await (await switchTo(4))();
    await (await switchTo(5))();
    await sleep(downtime());
    await b.start();
    expect(b.pid).not.toBe(oldPid);
    await goesOn('after two switches while the brick was down');

    // 5. The held fds are idle: the sweep (1 s after the switch) moves them while the brick is down.
    fs.writeFileSync(pauseFile, '');
    await waitFor(() => holder.paused(), 10_000, 'the holder to pause');
    note('holder paused');
    oldPid = await kill();
    await (await switchTo(6))();
    await sleep(1500 + downtime());
    await b.start();
    expect(b.pid).not.toBe(oldPid);
    note(`brick restarted as ${b.pid}`);
    // Still idle: the handles move (and graph 6 goes) with nothing using them.
    await waitFor(() => /graph 6: cleaned up/.test(m.log()), 15_000, 'graph 6 to be cleaned up while its handles were idle');
    note('graph 6 cleaned up');
    fs.rmSync(pauseFile);
    await waitFor(() => !holder.paused(), 10_000, 'the holder to resume');
    await goesOn('after the sweep moved its idle fds while the brick was down');

    // With the held fds open (and idle): they are on the active graph, and it is the only one.
    fs.writeFileSync(pauseFile, '');
    await waitFor(() => holder.paused(), 10_000, 'the holder to pause');
    const d = await settled();
    expect(d.activeGraph).toBe(graph);
    expect(d.graphs.map((g) => g.id)).toEqual([graph]);
    expect(d.graphs[0].fdCount).toBe(2);
    fs.rmSync(pauseFile);
  });

  const result = await holder.finish();
  process.stdout.write(`holder: ${result.ops} rounds\n  ${log.join('\n  ')}\n`);
  if (result.errors.length || result.mismatches.length) process.stdout.write(`holder errors:\n${[...result.errors, ...result.mismatches].join('\n')}\nmount log:\n${m.log()}\n`);
  expect(result.errors).toEqual([]);
  expect(result.mismatches).toEqual([]);
  const model = fs.readFileSync(modelFile);
  expect(sha256(model)).toBe(result.sha256);
  expect(firstDifference(fs.readFileSync(path.join(b.dir, 'held')), model)).toBeUndefined();

  const d = await settled();
  expect(graph).toBe(7);
  expect(d.activeGraph).toBe(graph);
  expect(d.graphs.map((g) => g.id)).toEqual([graph]);
  expect(d.graphs[0].xlators.find((x) => x.name === 'remote')?.connected).toBe(true);
  expect(m.log()).not.toMatch(/ ERROR /);
}, 100_000);
