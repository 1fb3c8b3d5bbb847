// Live graph switching on a real mount: SIGHUP reloads while a process keeps 50 files and
// directories open and does I/O through them.
import { spawn } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { LoadResult } from '../helpers/switch-load-child';
import { POSIX_VOLFILE, TestMount, settledStatedump, startMount, statedump, waitFor, within, xlstack } from '../helpers/mount';
import { cleanupScratch, track } from '../helpers/scratch';

const LOAD = path.join(__dirname, '../helpers/switch-load-child.js');

/** Three topologies to cycle through: each reload is a real switch. */
const TOPOLOGIES = [
  `${POSIX_VOLFILE}\nvolume top\n    type debug/trace\n    subvolumes test-posix\nend-volume\n`,
  `${POSIX_VOLFILE}\nvolume top\n    type debug/delay-gen\n    subvolumes test-posix\nend-volume\n`,
  `${POSIX_VOLFILE}\nvolume mid\n    type debug/delay-gen\n    subvolumes test-posix\nend-volume\nvolume top\n    type debug/trace\n    subvolumes mid\nend-volume\n`,
];

afterAll(cleanupScratch);

const switches = (m: TestMount) => (m.log().match(/switched to graph/g) ?? []).length;

/** Writes topology `k` and sends SIGHUP; waits (bounded) for the daemon to switch. */
async function switchBySighup(m: TestMount, k: number): Promise<void> {
  const before = switches(m);
  fs.writeFileSync(m.volfile, TOPOLOGIES[k % TOPOLOGIES.length].replace(/@BACKING@/g, m.backing));
  process.kill(m.pid, 'SIGHUP');
  await waitFor(() => switches(m) > before || /reload .* failed/.test(m.log()), 10_000, `switch ${k}`);
  expect(m.log()).not.toMatch(/reload .* failed/);
}

/** `holders`: the load also holds nodeids (a cwd, looked-up files, a listing under way) and reports each round. */
function startLoad(m: TestMount, files: number, dirs: number, holders = false) {
  const stopFile = path.join(m.dir, 'stop');
  const args = { root: m.mountpoint, files, dirs, stopFile, maxMs: 300_000, holders, progress: holders };
  const child = track(spawn(process.execPath, [LOAD, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let out = '';
  let rounds = 0;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const last = /round (\d+)\n(?![\s\S]*round \d+\n)/.exec(out.slice(-200));
    if (last) rounds = Number(last[1]);
    if (out.length > 1 << 20) out = out.slice(out.lastIndexOf('\n', out.length - 1000) + 1); // rounds only: keep the tail
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  return {
    async ready() {
      await waitFor(() => out.startsWith('ready\n') || gone(), 30_000, 'the load to open its files');
      if (!out.startsWith('ready\n')) throw new Error(`the load exited (${child.exitCode ?? child.signalCode}) before opening its files`);
    },
    /** Waits until the load has finished a round it started after this call. */
    async nextRound(): Promise<void> {
      const seen = rounds;
      await waitFor(() => rounds >= seen + 2 || gone(), 20_000, `the load to do a round after round ${seen}`);
      if (gone()) throw new Error(`the load exited (${child.exitCode ?? child.signalCode})`);
    },
    async finish(): Promise<LoadResult> {
      fs.writeFileSync(stopFile, '');
      if ((await within(exited, 60_000)) === undefined) throw new Error('the load did not stop within 60 s');
      const last = out.trim().split('\n').pop()!;
      return JSON.parse(last);
    },
  };
}

test('kernel transport: 50 open files and directories doing I/O, a cwd, looked-up files and a listing under way, through 100 SIGHUP switches: no ESTALE, no EBADF, every byte right, old graphs cleaned', async () => {
  const m = await startMount({ volfile: TOPOLOGIES[0], args: ['--transport', 'kernel'] });
  const load = startLoad(m, 40, 10, true);
  await load.ready();
  for (let k = 1; k <= 100; k++) {
    await switchBySighup(m, k);
    // every switch is followed by a whole round through what was held before it
    await load.nextRound();
  }
  const result = await load.finish();
  process.stdout.write(`load through 100 switches: ${result.rounds} rounds, ${result.ops} calls, ${result.listings} slow listings read whole\n`);
  expect(result.errors).toEqual([]);
  expect(result.mismatches).toEqual([]);
  expect(result.rounds).toBeGreaterThan(100);
  expect(result.listings).toBeGreaterThanOrEqual(1);
  // Handles left idle after the last switch move in the sweep; then only the active graph is alive.
  const d = await settledStatedump(m);
  expect(d.activeGraph).toBe(101);
  expect(d.graphs.map((g: { id: number }) => g.id)).toEqual([101]);
  expect(m.log()).not.toMatch(/ERROR/);
});

test('a bad volfile on SIGHUP: the mount keeps serving and the log names file, line and problem', async () => {
  const m = await startMount({ volfile: TOPOLOGIES[0] });
  fs.writeFileSync(m.volfile, `${TOPOLOGIES[0].replace(/@BACKING@/g, m.backing)}\nvolume broken\n    type debug/trace\n    subvolumes nowhere\nend-volume\n`);
  process.kill(m.pid, 'SIGHUP');
  await waitFor(() => /reload .* failed/.test(m.log()), 10_000, 'the reload to fail');
  expect(m.log()).toContain(`${m.volfile}:14: unknown subvolume 'nowhere'`);
  expect(m.log()).toMatch(/still serving graph 1/);
  fs.writeFileSync(path.join(m.mountpoint, 'still'), 'serving');
  expect(fs.readFileSync(path.join(m.mountpoint, 'still'), 'utf8')).toBe('serving');
  expect((await statedump(m)).activeGraph).toBe(1);
});

test('an options-only reload keeps the graph and takes effect; xlstack reload says what it did', async () => {
  const m = await startMount({ volfile: TOPOLOGIES[0] });
  const history = async () => (await statedump(m)).graphs[0].xlators.find((x: { name: string }) => x.name === 'top').history as string[];
  fs.writeFileSync(path.join(m.mountpoint, 'quiet'), 'not traced');
  expect(await history()).toEqual([]);
  fs.writeFileSync(m.volfile, TOPOLOGIES[0].replace(/@BACKING@/g, m.backing).replace('type debug/trace\n', 'type debug/trace\n    option log-history on\n'));
  const r = await xlstack(['reload', m.mountpoint]);
  expect(r.stdout).toBe('reconfigured: graph 1 (options of top)\n');
  fs.writeFileSync(path.join(m.mountpoint, 'loud'), 'traced');
  const d = await statedump(m);
  expect(d.activeGraph).toBe(1);
  expect(d.graphs).toHaveLength(1);
  expect((await history()).some((l) => l.includes('/loud'))).toBe(true);
  expect((await xlstack(['reload', m.mountpoint])).stdout).toBe('unchanged: graph 1\n');
});

test('memory stays flat over 500 switches with open files (heap after GC)', async () => {
  const m = await startMount({ volfile: TOPOLOGIES[0], nodeArgs: ['--expose-gc'] });
  const load = startLoad(m, 8, 2);
  await load.ready();
  const memory = async () => (await settledStatedump(m)).memory as { heapUsed: number; rss: number; afterGc: boolean };
  for (let k = 1; k <= 50; k++) await switchBySighup(m, k); // warm up: JIT, caches, pools
  const before = await memory();
  const N = 500;
  for (let k = 51; k <= 50 + N; k++) await switchBySighup(m, k);
  const after = await memory();
  const result = await load.finish();
  expect(result.errors).toEqual([]);
  expect(result.mismatches).toEqual([]);
  expect(before.afterGc).toBe(true);
  const perSwitchMB = (after.heapUsed - before.heapUsed) / N / 2 ** 20;
  const rssPerSwitchMB = (after.rss - before.rss) / N / 2 ** 20;
  process.stdout.write(`memory over ${N} switches: heap ${(before.heapUsed / 2 ** 20).toFixed(1)} -> ${(after.heapUsed / 2 ** 20).toFixed(1)} MB (${perSwitchMB.toFixed(4)} MB/switch), rss ${(before.rss / 2 ** 20).toFixed(1)} -> ${(after.rss / 2 ** 20).toFixed(1)} MB (${rssPerSwitchMB.toFixed(4)} MB/switch)\n`);
  expect(perSwitchMB).toBeLessThan(0.05);
}, 300_000);
