// cluster/distribute for real: the shipped volfiles/distribute.vol over its bricks (child
// processes), mounted; grown by a brick with a reload and rebalanced while a process writes
// through files it keeps open; drained of a brick by a rebalance in another process (the
// bricks' locks keep it and the mount's writer apart) before the volfile drops it.
import { spawn } from 'child_process';
import { createHash } from 'crypto';
import * as fs from 'fs';
import * as path from 'path';
import { freePort, startBrick, TestBrick } from '../helpers/brick';
import { startMount, statedump, TestMount, waitFor, within, xlstack } from '../helpers/mount';
import { cleanupScratch, scratchDir, track } from '../helpers/scratch';
import type { WriterArgs, WriterResult } from './distribute-writer-child';

const VOLFILES = path.resolve(__dirname, '../../../volfiles');
const WRITER = path.join(__dirname, 'distribute-writer-child.js');
const shipped = (name: string) => fs.readFileSync(path.join(VOLFILES, name), 'utf8');

afterAll(cleanupScratch);

/** Brick `i` (1-based) of the shipped volfiles, on `dir` and `port`; a fourth is made like the third. */
function brickText(i: number, dir: string, port: number): string {
  const base = shipped(`distribute-brick${Math.min(i, 3)}.vol`).replace(/dist3/g, `dist${i}`);
  return base.replace(/option directory \S+/, `option directory ${dir}`).replace(/listen-port \d+/, `listen-port ${port}`);
}

/** The shipped distribute.vol over bricks on `ports` (dist1..distN; a fourth brick's client is added like the others). */
function clientText(ports: readonly number[], only?: readonly number[]): string {
  let text = shipped('distribute.vol');
  const block = (i: number) => /volume dist1\n[\s\S]*?end-volume\n/.exec(text)![0].replace(/dist1/g, `dist${i}`).replace(/remote-port \d+/, `remote-port ${ports[i - 1]}`);
  for (let i = 1; i <= 3; i++) text = text.replace(new RegExp(`volume dist${i}\\n[\\s\\S]*?end-volume\\n`), block(i));
  if (ports.length > 3) text = text.replace('\n# The longest', `\n${block(4)}\n# The longest`);
  const children = only ?? ports.map((_, k) => k + 1);
  for (let i = 1; i <= ports.length; i++) if (!children.includes(i)) text = text.replace(new RegExp(`volume dist${i}\\n[\\s\\S]*?end-volume\\n`), '');
  return text.replace(/subvolumes dist1 dist2 dist3/, `subvolumes ${children.map((i) => `dist${i}`).join(' ')}`);
}

async function bricks(n: number): Promise<TestBrick[]> {
  const out: TestBrick[] = [];
  for (let i = 1; i <= n; i++) out.push(await startBrick({ port: await freePort(), volfile: (dir, port) => brickText(i, dir, port) }));
  return out;
}

/** The data files (not linkto files) a brick holds in `rel`. */
function dataFiles(b: TestBrick, rel: string): string[] {
  const dir = path.join(b.dir, rel);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((n) => {
    const st = fs.lstatSync(path.join(dir, n));
    return !(st.isFile() && (st.mode & 0o7777) === 0o1000);
  });
}

/** What static file `i` holds: a size and bytes of its own. */
function content(i: number): Buffer {
  const b = Buffer.alloc(1 + ((i * 997) % 5000));
  for (let k = 0; k < b.length; k++) b[k] = (i * 31 + k * 7) & 0xff;
  return b;
}

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function reload(m: TestMount, text: string): Promise<void> {
  fs.writeFileSync(m.volfile, text);
  const r = await xlstack(['reload', m.mountpoint]);
  expect(r.stderr).toBe('');
  expect(r.stdout).toMatch(/^switched: graph \d+/);
}

function startWriter(dir: string, seed: number) {
  const stopFile = path.join(scratchDir('xlstack-dht-writer-'), 'stop');
  const args: WriterArgs = { dir, files: 32, size: 128 * 1024, stopFile, maxMs: 300_000, seed };
  const child = track(spawn(process.execPath, [WRITER, JSON.stringify(args)], { stdio: ['ignore', 'pipe', 'inherit'] }));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let out = '';
  let ops = 0;
  child.stdout!.setEncoding('utf8').on('data', (d: string) => {
    out += d;
    const all = [...out.slice(-200).matchAll(/ops (\d+)\n/g)];
    if (all.length) ops = Number(all[all.length - 1][1]);
  });
  const gone = () => child.exitCode !== null || child.signalCode !== null;
  return {
    async ready() {
      await waitFor(() => out.startsWith('ready\n') || gone(), 60_000, 'the writer to write its files');
      if (!out.startsWith('ready\n')) throw new Error(`the writer exited (${child.exitCode ?? child.signalCode})`);
    },
    /** Waits for the writer to do `n` more operations (it is running, not stuck). */
    async progress(n: number) {
      const from = ops;
      await waitFor(() => ops >= from + n || gone(), 60_000, `the writer to do ${n} more operations after ${from}`);
      if (gone()) throw new Error(`the writer exited (${child.exitCode ?? child.signalCode}): ${out.slice(-500)}`);
    },
    async finish(): Promise<WriterResult> {
      fs.writeFileSync(stopFile, '');
      if ((await within(exited, 60_000)) === undefined) throw new Error('the writer did not stop within 60 s');
      return JSON.parse(out.trim().split('\n').pop()!);
    },
  };
}

/** How many times the mount's open files followed their data to another brick (the active graph's distribute). */
async function followed(m: TestMount): Promise<number> {
  const d = await statedump(m);
  const g = d.graphs.find((x) => x.id === d.activeGraph)!;
  return (g.xlators as { type: string; counters?: { relocations: number } }[]).find((x) => x.type === 'cluster/distribute')!.counters!.relocations;
}

/** Every writer file reads back as its model says. */
function checkWriter(mnt: string, r: WriterResult): void {
  expect(r.errors).toEqual([]);
  expect(r.mismatches).toEqual([]);
  for (const [name, sum] of Object.entries(r.sums)) expect(`${name} ${sha(fs.readFileSync(path.join(mnt, 'w', name)))}`).toBe(`${name} ${sum}`);
}

test('volfiles/distribute.vol over 3 bricks: 2,000 files reachable, listed once, spread evenly; a 4th brick added live and rebalanced while files are written: every byte right, no error', async () => {
  const b = await bricks(4);
  const brick4 = b.pop()!;
  const ports = b.map((x) => x.port);
  const m = await startMount({ volfile: clientText(ports) });
  const root = path.join(m.mountpoint, 'static');
  fs.mkdirSync(root);
  const N = 2000;
  for (let i = 0; i < N; i++) fs.writeFileSync(path.join(root, `file-${i}`), content(i));
  const listed = fs.readdirSync(root);
  expect(listed.length).toBe(N);
  expect(new Set(listed).size).toBe(N);
  for (let i = 0; i < N; i++) expect(sha(fs.readFileSync(path.join(root, `file-${i}`)))).toBe(sha(content(i)));
  const spread = b.map((x) => dataFiles(x, 'static').length);
  expect(spread.reduce((s, k) => s + k)).toBe(N);
  for (const k of spread) expect(Math.abs(k - N / 3) / (N / 3)).toBeLessThan(0.15);
  process.stdout.write(`2,000 files over 3 bricks: ${spread.join(', ')}\n`);

  fs.mkdirSync(path.join(m.mountpoint, 'w'));
  const writer = startWriter(path.join(m.mountpoint, 'w'), 20251206);
  await writer.ready();
  await writer.progress(200);

  // A fourth brick, added by a reload while the writer writes.
  await reload(m, clientText([...ports, brick4.port]));
  await writer.progress(200);
  fs.mkdirSync(path.join(m.mountpoint, 'new'));
  for (let i = 0; i < 40; i++) fs.writeFileSync(path.join(m.mountpoint, 'new', `n${i}`), `${i}`);
  expect(dataFiles(brick4, 'new').length).toBeGreaterThan(0);

  // The rebalance, while the writer goes on through the fds it opened before.
  const r = await xlstack(['rebalance', m.mountpoint], { timeoutMs: 180_000 });
  process.stdout.write(`${r.stdout}`);
  expect(r.stderr).toBe('');
  expect(r.code).toBe(0);
  const moved = Number(/: (\d+) moved/.exec(r.stdout)![1]);
  expect(moved).toBeGreaterThan(N / 8);
  await writer.progress(200);
  const result = await writer.finish();
  process.stdout.write(`writer: ${result.ops} operations through the reload and the rebalance\n`);
  checkWriter(m.mountpoint, result);

  // Every static file still reads right, is listed once, and some now live on the new brick.
  const after = fs.readdirSync(root);
  expect(after.length).toBe(N);
  expect(new Set(after).size).toBe(N);
  for (let i = 0; i < N; i++) expect(sha(fs.readFileSync(path.join(root, `file-${i}`)))).toBe(sha(content(i)));
  const spread4 = [...b, brick4].map((x) => dataFiles(x, 'static').length);
  expect(spread4.reduce((s, k) => s + k)).toBe(N);
  expect(spread4[3]).toBeGreaterThan(N / 8);
  // Some of the writer's files moved while it wrote: its fds followed them.
  expect(dataFiles(brick4, 'w').length).toBeGreaterThan(0);
  expect(await followed(m)).toBeGreaterThan(0);
  expect(m.log()).not.toMatch(/ ERROR /);
  await m.unmount();
}, 420_000);

test('a rebalance in another process drains a brick while the mount writes (the bricks\' locks keep them apart); then the volfile drops it', async () => {
  const b = await bricks(3);
  const ports = b.map((x) => x.port);
  const m = await startMount({ volfile: clientText(ports) });
  const root = path.join(m.mountpoint, 'static');
  fs.mkdirSync(root);
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(root, `file-${i}`), content(i));
  fs.mkdirSync(path.join(m.mountpoint, 'w'));
  const writer = startWriter(path.join(m.mountpoint, 'w'), 77);
  await writer.ready();
  await writer.progress(100);
  const onTwo = dataFiles(b[1], 'static').length + dataFiles(b[1], 'w').length;
  expect(onTwo).toBeGreaterThan(50);

  const bad = await xlstack(['rebalance', m.volfile, '--remove', 'dist9']);
  expect(bad.code).toBe(1);
  expect(bad.stderr).toContain('no subvolume named dist9');
  const r = await xlstack(['rebalance', m.volfile, '--remove', 'dist2'], { timeoutMs: 180_000 });
  process.stdout.write(r.stdout);
  expect(r.stderr).toBe('');
  expect(r.stdout).toContain('dist2: drained; remove it from the volfile and reload');
  expect(r.code).toBe(0);
  expect(dataFiles(b[1], 'static')).toEqual([]);
  expect(dataFiles(b[1], 'w')).toEqual([]);
  await writer.progress(100);

  expect(await followed(m)).toBeGreaterThan(0);
  await reload(m, clientText(ports, [1, 3]));
  await writer.progress(100);
  const result = await writer.finish();
  checkWriter(m.mountpoint, result);
  const listed = fs.readdirSync(root);
  expect(listed.length).toBe(300);
  for (let i = 0; i < 300; i++) expect(sha(fs.readFileSync(path.join(root, `file-${i}`)))).toBe(sha(content(i)));
  await b[1].stop();
  // Without the drained brick, new files go to the others.
  for (let i = 0; i < 30; i++) fs.writeFileSync(path.join(root, `later-${i}`), 'x');
  expect(dataFiles(b[0], 'static').length + dataFiles(b[2], 'static').length).toBe(330);
  expect(m.log()).not.toMatch(/ ERROR /);
  await m.unmount();
}, 420_000);

test('xlstack rebalance says clearly what it cannot do', async () => {
  const dir = scratchDir('xlstack-dht-cli-');
  const plain = path.join(dir, 'plain.vol');
  fs.mkdirSync(path.join(dir, 'store'));
  fs.writeFileSync(plain, `volume p\n    type storage/posix\n    option directory ${path.join(dir, 'store')}\nend-volume\n`);
  const none = await xlstack(['rebalance', plain]);
  expect(none.code).toBe(1);
  expect(none.stderr).toMatch(/this volume has no cluster\/distribute to rebalance/);
  const missing = await xlstack(['rebalance', path.join(dir, 'nothing-here')]);
  expect(missing.code).toBe(1);
  expect(missing.stderr).toMatch(/no such mountpoint or volfile/);
  const notServed = await xlstack(['rebalance', dir]);
  expect(notServed.code).toBe(1);
  expect(notServed.stderr).toMatch(/no xlstack daemon serves/);
  const usage = await xlstack(['rebalance', plain, '--remove']);
  expect(usage.code).toBe(2);
});
