// Live graph switching, driven in-process through the bridge (no FUSE): reloads, lazy fd
// migration under the BaseFd lock, old-graph cleanup.
import { constants } from 'fs';
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { Bridge } from '../../src/fuse/bridge';
import { GraphSwitcher } from '../../src/fuse/switcher';
import { cleanupGraphs, tempDir } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';

const O_RDWR = constants.O_RDWR;

interface Setup {
  dir: string;
  volfile: string;
  backing: string;
  switcher: GraphSwitcher;
  bridge: Bridge;
  logs: string[];
  write(text: string): void;
}

const posix = (dir: string) => `volume posix\n    type storage/posix\n    option directory ${dir}\nend-volume\n`;
const traced = (dir: string, extra = '') => `${posix(dir)}volume top\n    type debug/trace\n    option log-history on\n${extra}    subvolumes posix\nend-volume\n`;
const delayed = (dir: string) => `${posix(dir)}volume top\n    type debug/delay-gen\n    subvolumes posix\nend-volume\n`;

const setups: Setup[] = [];

async function setup(text: (backing: string) => string, sweepAfterMs = 0, passthroughUnknown = false): Promise<Setup> {
  const dir = tempDir('xlstack-switch-');
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const volfile = path.join(dir, 'test.vol');
  const write = (t: string) => fs.writeFileSync(volfile, t);
  write(text(backing));
  const logs: string[] = [];
  const switcher = new GraphSwitcher({
    volfile,
    registry: new Registry(),
    log: Logger.create('info', (l) => logs.push(l)),
    startTimeoutMs: 5000,
    stopTimeoutMs: 5000,
    sweepAfterMs,
    passthroughUnknown,
  });
  const bridge = await switcher.start();
  const s = { dir, volfile, backing, switcher, bridge, logs, write };
  setups.push(s);
  return s;
}

afterEach(async () => {
  for (const s of setups.splice(0)) {
    for (const b of [...s.bridge.basefds.all()]) await s.bridge.release(b.path, b.id).catch(() => undefined);
    s.bridge.stopSweeping();
    await s.switcher.stopAll();
  }
  await cleanupGraphs();
});

/** Waits (bounded) until `cond` holds. */
const until = (cond: () => boolean, what: string, ms = 5000) => waitFor(cond, ms, what);

const ids = (s: Setup) => s.switcher.graphs().map((g) => g.id);

async function writeFile(b: Bridge, p: string, text: string): Promise<number> {
  const fh = await b.create(p, 0o644, O_RDWR);
  await b.write(p, fh, Buffer.from(text), 0);
  return fh;
}

describe('reload', () => {
  test('an unchanged volfile changes nothing', async () => {
    const s = await setup(traced);
    expect(await s.switcher.reload()).toMatchObject({ action: 'unchanged', graph: 1 });
    expect(ids(s)).toEqual([1]);
  });

  test('an options-only change is applied in place: same graph, new behaviour', async () => {
    const s = await setup((d) => traced(d).replace('option log-history on', 'option log-history off'));
    const trace = () => s.bridge.active.xlators.get('top')!.dump().history as string[];
    await s.bridge.mkdir('/before', 0o755);
    expect(trace()).toEqual([]);
    s.write(traced(s.backing));
    expect(await s.switcher.reload()).toMatchObject({ action: 'reconfigured', graph: 1 });
    expect(ids(s)).toEqual([1]);
    await s.bridge.mkdir('/after', 0o755);
    expect(trace().some((l) => l.includes('mkdir') && l.includes('/after'))).toBe(true);
  });

  test('an option that cannot change in place builds a new graph', async () => {
    const s = await setup(traced);
    const other = path.join(s.dir, 'other');
    fs.mkdirSync(other);
    s.write(traced(other));
    expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
    expect(s.logs.join('\n')).toContain("option 'directory' of volume 'posix' cannot change in place");
  });

  test('a topology change switches to graph N+1 and cleans graph N once idle', async () => {
    const s = await setup(traced);
    s.write(delayed(s.backing));
    const r = await s.switcher.reload();
    expect(r).toMatchObject({ action: 'switched', graph: 2 });
    expect(s.bridge.active.id).toBe(2);
    await until(() => ids(s).join() === '2', 'graph 1 to be cleaned up');
    expect(s.logs.join('\n')).toMatch(/switched to graph 2 \(from graph 1: volume 'top' is now of type debug\/delay-gen\)/);
    expect(s.logs.join('\n')).toContain('graph 1: cleaned up');
  });

  test('a volfile that does not parse leaves the graph serving and says where', async () => {
    const s = await setup(traced);
    s.write(`${posix(s.backing)}volume top\n    type debug/trace\n    subvolumes nosuch\nend-volume\n`);
    await expect(s.switcher.reload()).rejects.toThrow(`${s.volfile}:7: unknown subvolume 'nosuch'`);
    expect(ids(s)).toEqual([1]);
    await s.bridge.mkdir('/still-serving', 0o755);
  });

  test('a new graph whose init fails leaves the old one serving', async () => {
    const s = await setup(traced);
    s.write(traced('/nonexistent/xlstack-switch'));
    await expect(s.switcher.reload()).rejects.toThrow(/does not exist/);
    expect(s.bridge.active.id).toBe(1);
    expect(ids(s)).toEqual([1]);
    await s.bridge.mkdir('/still-serving', 0o755);
  });

  test('reloads asked for while one runs share the next one', async () => {
    const s = await setup(traced);
    s.write(delayed(s.backing));
    const results = await Promise.all([s.switcher.reload(), s.switcher.reload(), s.switcher.reload()]);
    expect(results).toEqual([results[0], results[0], results[0]]);
    expect(results[0]).toMatchObject({ action: 'switched', graph: 2 });
    await until(() => ids(s).join() === '2', 'graph 1 to be cleaned up');
  });
});

describe('open handles across a switch', () => {
  async function switchTopology(s: Setup, to: (d: string) => string): Promise<number> {
    s.write(to(s.backing));
    const r = await s.switcher.reload();
    expect(r.action).toBe('switched');
    return r.graph;
  }

  test('a handle moves to the new graph on its first use, and keeps its data', async () => {
    const s = await setup(traced);
    const fh = await writeFile(s.bridge, '/f', 'before the switch');
    await switchTopology(s, delayed);
    const base = s.bridge.basefds.get(fh);
    expect(base.current.graph.id).toBe(1); // lazily: nothing moved yet
    expect((await s.bridge.read('/f', fh, 100, 0)).toString()).toBe('before the switch');
    expect(base.current.graph.id).toBe(2);
    expect([...base.reached]).toEqual([1, 2]);
    await s.bridge.write('/f', fh, Buffer.from('after!'), 0);
    expect(fs.readFileSync(path.join(s.backing, 'f'), 'utf8')).toBe('after! the switch');
    await until(() => ids(s).join() === '2', 'graph 1 to go once its last fd moved');
  });

  test('many concurrent requests on one handle at the switch: one open on the new graph, all succeed', async () => {
    const s = await setup(delayed);
    const fh = await writeFile(s.bridge, '/f', 'x'.repeat(4096));
    await switchTopology(s, (d) => traced(d, '    option include-ops open\n'));
    const reads = await Promise.all(Array.from({ length: 32 }, (_, i) => s.bridge.read('/f', fh, 100, i * 100)));
    expect(reads.every((b) => b.toString() === 'x'.repeat(100))).toBe(true);
    const opens = (s.bridge.active.xlators.get('top')!.dump().history as string[]).filter((l) => l.includes('open('));
    expect(opens).toHaveLength(1);
  });

  test('a file unlinked while open moves by GFID and keeps reading and writing', async () => {
    const s = await setup(traced);
    const fh = await writeFile(s.bridge, '/doomed', 'still here');
    // What libfuse does on unlink of an open file: rename it aside.
    await s.bridge.rename('/doomed', '/.fuse_hidden0000000000000001');
    await switchTopology(s, delayed);
    expect((await s.bridge.read('/.fuse_hidden0000000000000001', fh, 100, 0)).toString()).toBe('still here');
    expect(s.bridge.basefds.get(fh).current.graph.id).toBe(2);
  });

  test('a file the new graph cannot find keeps its old graph until released: never EBADF', async () => {
    const s = await setup(traced);
    const fh = await writeFile(s.bridge, '/gone', 'data');
    const gfid = s.bridge.basefds.get(fh).gfid;
    // Remove every name and the handle behind the daemon's back: nothing can find it by GFID.
    fs.unlinkSync(path.join(s.backing, 'gone'));
    fs.rmSync(path.join(s.backing, '.xlstack', 'handles', gfid.slice(0, 2), gfid));
    await switchTopology(s, delayed);
    expect((await s.bridge.read('/gone', fh, 100, 0)).toString()).toBe('data');
    expect(s.bridge.basefds.get(fh).current.graph.id).toBe(1);
    expect(ids(s)).toEqual([1, 2]);
    await s.bridge.release('/gone', fh);
    await until(() => ids(s).join() === '2', 'graph 1 to go once the handle is released');
  });

  test('a failed reopen gives that handle EBADF from then on, leaks nothing, and others keep working', async () => {
    const s = await setup(traced);
    const bad = await writeFile(s.bridge, '/bad', 'bad');
    const good = await s.bridge.opendir('/');
    await switchTopology(s, (d) => `${posix(d)}volume top\n    type debug/error-gen\n    option enable open\n    option error-no EACCES\n    subvolumes posix\nend-volume\n`);
    await expect(s.bridge.read('/bad', bad, 10, 0)).rejects.toMatchObject({ code: 'EBADF' });
    await expect(s.bridge.read('/bad', bad, 10, 0)).rejects.toMatchObject({ code: 'EBADF' });
    await s.bridge.fsyncdir('/', good, false); // a directory reopens with opendir: unaffected
    expect(s.bridge.basefds.get(good).current.graph.id).toBe(2);
    expect(s.bridge.active.fds.size).toBe(1); // only the directory: the failed open left nothing
    await s.bridge.release('/bad', bad);
    await until(() => ids(s).join() === '2', 'graph 1 to go');
  });

  test('a handle moved and then closed without another request is released on both graphs', async () => {
    const s = await setup(traced, 20);
    const fh = await writeFile(s.bridge, '/f', 'x');
    const first = s.bridge.active;
    await switchTopology(s, delayed);
    await until(() => s.bridge.basefds.get(fh).current.graph.id === 2, 'the sweep to move the idle handle');
    await until(() => first.state === 'dead', 'graph 1 to be cleaned');
    await s.bridge.release('/f', fh);
    expect(s.bridge.active.fds.size).toBe(0);
    expect(first.fds.size).toBe(0);
  });

  test('a reply lost on the old graph holds up only that graph\'s cleanup, never the switch or new requests', async () => {
    const s = await setup((d) => `${posix(d)}volume top\n    type debug/error-gen\n    option enable read\n    option drop-replies on\n    subvolumes posix\nend-volume\n`);
    const fh = await writeFile(s.bridge, '/f', 'data');
    const lost = s.bridge.read('/f', fh, 4, 0);
    let answered = false;
    void lost.then(() => (answered = true));
    await switchTopology(s, delayed);
    expect((await s.bridge.read('/f', fh, 4, 0)).toString()).toBe('data');
    await s.bridge.mkdir('/new', 0o755);
    const old = s.switcher.graphs().find((g) => g.id === 1)!;
    expect(old.state).toBe('retired');
    expect(old.dump()).toMatchObject({ pendingFrames: 1, frames: [{ op: 'read' }] });
    expect(answered).toBe(false);
    expect(ids(s)).toEqual([1, 2]);
  });

  test('a directory handle moves the same way', async () => {
    const s = await setup(traced);
    await s.bridge.mkdir('/d', 0o755);
    const fh = await s.bridge.opendir('/d');
    await switchTopology(s, delayed);
    await s.bridge.fsyncdir('/d', fh, false);
    expect(s.bridge.basefds.get(fh).current.graph.id).toBe(2);
    expect(s.bridge.basefds.get(fh).current.fd.isDir).toBe(true);
  });

  test('a switch to a graph whose children are down: fops fail with ENOTCONN, a later switch recovers every handle', async () => {
    const s = await setup(traced, 0, true);
    const fh = await writeFile(s.bridge, '/f', 'kept');
    // A pass-through leaf has nothing below it: its graph reports CHILD_DOWN.
    s.write(`volume top\n    type features/nothing-below\n    option whatever 1\nend-volume\n`);
    expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
    expect(s.logs.join('\n')).toContain('graph 2: its children are down; switching anyway');
    await expect(s.bridge.read('/f', fh, 10, 0)).rejects.toMatchObject({ code: 'ENOTCONN' });
    await expect(s.bridge.getattr('/f')).rejects.toMatchObject({ code: 'ENOTCONN' });
    expect(s.bridge.basefds.get(fh).failed).toBe(false);
    s.write(delayed(s.backing));
    expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 3 });
    expect((await s.bridge.read('/f', fh, 10, 0)).toString()).toBe('kept');
    expect(s.bridge.basefds.get(fh).current.graph.id).toBe(3);
    await until(() => ids(s).join() === '3', 'graphs 1 and 2 to go');
  });
});
