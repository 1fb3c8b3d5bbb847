// performance/write-behind: writes acknowledged at once and written out behind the
// application's back, on every trigger, in order, with errors reported to the right fd, and
// never while its child is down. Driven in-process through the bridge (no FUSE); storage is a
// real storage/posix. Time is a ManualClock the tests move by hand: no test waits for a timer.

import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import { XlEvent } from '../../src/core/events';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { MAX_OFFSET } from '../../src/core/types';
import { Clock, systemClock } from '../../src/core/time';
import { parseVolfile } from '../../src/core/volfile';
import type { Xlator } from '../../src/core/xlator';
import { Bridge } from '../../src/fuse/bridge';
import type { Gate, Hold } from '../../xlators/debug/gate';
import { WriteBehind, writeBehind } from '../../xlators/performance/write-behind';
import { freePort } from '../helpers/brick';
import { ManualClock } from '../helpers/clock';
import { cleanupGraphs, errCode, tempDir, within } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';

const { O_APPEND, O_RDWR, O_RDONLY, O_WRONLY, O_SYNC, O_TRUNC } = fs.constants;

// --- helpers ----------------------------------------------------------------------------

interface Layer {
  readonly name: string;
  readonly type: string;
  readonly options?: Record<string, string>;
}

interface Setup {
  readonly dir: string;
  readonly graph: Graph;
  readonly bridge: Bridge;
  readonly wb: WriteBehind;
  /** The clock write-behind's timers run on: time moves only when the test says. */
  readonly clock: ManualClock;
  readonly logs: string[];
  /** The backing file's content now ('' when it does not exist). */
  backing(name?: string): string;
}

const running: { graph: Graph; bridge: Bridge }[] = [];

/** posix at the bottom, `middle` layers (bottom-up) above it, write-behind on top. */
function volfileText(dir: string, wbOptions: Record<string, string>, middle: Layer[]): string {
  const vol = (name: string, type: string, opts: Record<string, string>, sub?: string) =>
    `volume ${name}\n type ${type}\n` +
    Object.entries(opts)
      .map(([k, v]) => ` option ${k} ${v}\n`)
      .join('') +
    (sub ? ` subvolumes ${sub}\n` : '') +
    'end-volume\n';
  let text = vol('p', 'storage/posix', { directory: dir });
  let below = 'p';
  for (const l of middle) {
    text += vol(l.name, l.type, l.options ?? {}, below);
    below = l.name;
  }
  return text + vol('wb', 'performance/write-behind', wbOptions, below);
}

/** `clock`: the one write-behind runs on (a fresh ManualClock unless the test needs another). */
async function setup(wbOptions: Record<string, string> = { 'flush-after': '0' }, middle: Layer[] = [], clock: Clock = new ManualClock()): Promise<Setup> {
  const dir = tempDir('xlstack-wb-');
  const logs: string[] = [];
  const vol = parseVolfile(volfileText(dir, wbOptions, middle), 'test.vol');
  const registry = new Registry();
  registry.register(writeBehind(clock));
  const graph = buildGraph(vol, { id: 1, registry, log: Logger.create('error', (l) => logs.push(l)) });
  expect(await graph.start(5000)).toBe('up');
  const bridge = new Bridge(graph, Logger.create('error', (l) => logs.push(l)));
  running.push({ graph, bridge });
  const wb = graph.xlators.get('wb') as WriteBehind;
  expect(wb).toBeInstanceOf(WriteBehind);
  const backing = (name = 'f') => {
    try {
      return fs.readFileSync(path.join(dir, name), 'latin1');
    } catch {
      return '';
    }
  };
  return { dir, graph, bridge, wb, clock: clock as ManualClock, logs, backing };
}

/** Brick graphs (protocol/server) of the tests over protocol/client: stopped after their clients. */
const bricks: Graph[] = [];

afterEach(async () => {
  for (const { graph, bridge } of running.splice(0)) {
    for (const b of [...bridge.basefds.all()]) await within(bridge.release(b.path, b.id)).catch(() => undefined);
    await within(graph.stop(5000));
  }
  for (const g of bricks.splice(0)) await within(g.stop(10_000), 15_000);
  await cleanupGraphs();
});


/** Waits (bounded) until `cond` holds. */
const until = (cond: () => boolean, what: string, ms = 5000) => waitFor(cond, ms, what);


const B = (s: string) => Buffer.from(s, 'latin1');

/** The Fd a bridge handle is served by now. */
const fdOf = (s: Setup, fh: number): Fd => s.bridge.basefds.get(fh).current.fd;

interface WbDump {
  'cache-size': number;
  'flush-after': number;
  childUp: boolean;
  peakQueuedBytes: number;
  timers: number;
  inodes: { gfid: string; queuedBytes: number; queuedWrites: number; writesInFlight: number; oldestAgeMs: number; writingOut: boolean; blockedWriters: number }[];
  pendingErrors: { fd: number; gfid: string; error?: string }[];
}
const dumpOf = (s: Setup) => s.wb.dump() as unknown as WbDump;

/** The writes debug/trace `tr` saw reach the storage, as "<n bytes>, offset" strings. */
const tracedWrites = (s: Setup): string[] =>
  ((s.graph.xlators.get('tr')!.dump() as { history: string[] }).history)
    .filter((l) => / write\(/.test(l))
    .map((l) => /write\(#\d+, fd=\d+\([^)]*\), (<\d+ bytes>), (\d+)\)/.exec(l)!.slice(1, 3).join(' @'));

const TRACE: Layer = { name: 'tr', type: 'debug/trace', options: { 'log-history': 'on', 'include-ops': 'write' } };
const ERRORS: Layer = { name: 'eg', type: 'debug/error-gen', options: { enable: 'write', 'error-no': 'ENOSPC' } };

async function setFailure(s: Setup, percent: number): Promise<void> {
  const eg = s.graph.xlators.get('eg') as Xlator;
  await eg.reconfigure({ ...(eg.options as object), failure: percent });
}

// --- tests --------------------------------------------------------------------------------

describe('writes are acknowledged before storage has them', () => {
  test('a write returns its length at once; the backing file keeps the old content until a trigger', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    expect(await s.bridge.write('/f', fh, B('hello'), 0)).toBe(5);
    expect(await s.bridge.write('/f', fh, B(' world'), 5)).toBe(6);
    expect(s.backing()).toBe('');
    const d = dumpOf(s);
    expect(d.inodes).toHaveLength(1);
    expect(d.inodes[0]).toMatchObject({ gfid: fdOf(s, fh).inode.gfid, queuedBytes: 11, queuedWrites: 1, writesInFlight: 0 });
    // flush-after 0: no timer writes it out behind the test's back, however late it gets.
    expect(d.timers).toBe(0);
    expect(s.clock.timers).toBe(0);
    s.clock.advance(3_600_000);
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedBytes: 11, writesInFlight: 0 });
    expect(s.backing()).toBe('');
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('hello world');
    expect(dumpOf(s).inodes).toHaveLength(0);
  });

  test('the data is copied: the caller may reuse its buffer as soon as write returns', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    const buf = B('first');
    await s.bridge.write('/f', fh, buf, 0);
    buf.write('XXXXX');
    await s.bridge.write('/f', fh, buf, 10);
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('first\0\0\0\0\0XXXXX');
  });
});

describe('what others are told about a file with writes held back', () => {
  test('a listing with attributes leaves them out for that file (the kernel would cache its old size), and gives them once the writes landed', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.release('/g', await s.bridge.create('/g', 0o644, O_RDWR));
    await s.bridge.write('/f', fh, B('held back'), 0);
    const list = async () => {
      const dir = s.graph.newFd(s.graph.itable.root, O_RDONLY, true);
      await s.graph.top.opendir(s.graph.frame('opendir'), { inode: s.graph.itable.root }, dir);
      try {
        const entries = await s.graph.top.readdirp(s.graph.frame('readdirp'), dir, 65536, 0);
        return Object.fromEntries(entries.map((e) => [e.name, e.iatt?.size ?? 'none']));
      } finally {
        await dir.unref();
      }
    };
    expect(await list()).toEqual({ f: 'none', g: 0 });
    await s.bridge.flush('/f', fh);
    expect(await list()).toEqual({ f: 9, g: 0 });
  });
});

describe('each trigger writes the queue out', () => {
  const triggers: [string, (s: Setup, fh: number) => Promise<unknown>][] = [
    ['flush', (s, fh) => s.bridge.flush('/f', fh)],
    ['fsync', (s, fh) => s.bridge.fsync('/f', fh, false)],
    ['fdatasync', (s, fh) => s.bridge.fsync('/f', fh, true)],
    ['release', (s, fh) => s.bridge.release('/f', fh)],
    ['read (same fd)', (s, fh) => s.bridge.read('/f', fh, 100, 0)],
    ['read (another fd)', async (s) => {
      const fh2 = await s.bridge.open('/f', O_RDONLY);
      await s.bridge.read('/f', fh2, 100, 0);
      await s.bridge.release('/f', fh2);
    }],
    ['getattr', (s) => s.bridge.getattr('/f')],
    ['fstat', (s, fh) => s.graph.top.fstat(s.graph.frame('fstat'), fdOf(s, fh))],
    ['stat', (s, fh) => s.graph.top.stat(s.graph.frame('stat'), { path: '/f', inode: fdOf(s, fh).inode })],
    ['fsetattr', (s, fh) => s.graph.top.fsetattr(s.graph.frame('fsetattr'), fdOf(s, fh), { mode: 0o600 })],
    ['chmod (setattr)', (s) => s.bridge.chmod('/f', 0o600)],
    ['getxattr', (s) => errCode(s.bridge.getxattr('/f', 'user.none'))],
    ['setxattr', (s) => s.bridge.setxattr('/f', 'user.x', B('1'), 0)],
    ['listxattr', (s) => s.bridge.listxattr('/f')],
    ['removexattr', (s) => errCode(s.bridge.removexattr('/f', 'user.none'))],
    ['open (another fd)', async (s) => s.bridge.release('/f', await s.bridge.open('/f', O_RDONLY))],
    ['lookup by parent and name', (s) => s.graph.top.lookup(s.graph.frame('lookup'), { path: '/f', parent: s.graph.itable.root, name: 'f' })],
    ['nameless lookup', (s, fh) => s.graph.top.lookup(s.graph.frame('lookup'), { path: '/f', gfid: fdOf(s, fh).inode.gfid })],
    ['graph stop (drain)', (s) => s.graph.stop(5000)],
  ];

  test.each(triggers)('%s', async (_name, trigger) => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('abc'), 0);
    await s.bridge.write('/f', fh, B('xyz'), 10);
    expect(s.backing()).toBe('');
    await within(trigger(s, fh));
    expect(s.backing()).toBe('abc\0\0\0\0\0\0\0xyz');
  });

  test('truncate and ftruncate come after the writes queued before them', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('hello world'), 0);
    await s.bridge.truncate('/f', 5);
    expect(s.backing()).toBe('hello');
    await s.bridge.write('/f', fh, B('HELLO'), 0);
    await s.bridge.ftruncate('/f', fh, 3);
    expect(s.backing()).toBe('HEL');
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('HEL');
  });

  test('an O_TRUNC open comes after the writes queued before it', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('old data'), 0);
    const fh2 = await s.bridge.open('/f', O_WRONLY | O_TRUNC);
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('');
    await s.bridge.release('/f', fh2);
  });

  test('size: writes past cache-size start a write-out; up to it they stay queued', async () => {
    const s = await setup({ 'cache-size': '8KB', 'flush-after': '0' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, Buffer.alloc(4096, 'a'), 0);
    await s.bridge.write('/f', fh, Buffer.alloc(4096, 'b'), 4096);
    // Exactly at the limit: nothing started (a write-out starts in the same step as the write that passes it).
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedBytes: 8192, writesInFlight: 0 });
    expect(s.backing()).toBe('');
    await s.bridge.write('/f', fh, B('c'), 8192);
    await until(() => s.backing().length === 8193, 'the write-out after passing cache-size');
    expect(s.backing()).toBe('a'.repeat(4096) + 'b'.repeat(4096) + 'c');
    await until(() => dumpOf(s).inodes.length === 0, 'the queue to empty');
  });

  test('window-size is an alias of cache-size', async () => {
    const s = await setup({ 'window-size': '8KB' });
    expect(s.wb.options['cache-size']).toBe(8192);
    expect(s.wb.options['flush-after']).toBe(1); // default: 1 second
  });

  test('time: data older than flush-after is written out by a timer, not a moment earlier', async () => {
    const s = await setup({ 'flush-after': '0.05' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('later'), 0);
    expect(s.backing()).toBe('');
    expect(dumpOf(s).timers).toBe(1);
    s.clock.advance(49);
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedBytes: 5, writesInFlight: 0 });
    // The timer starts the write-out in the same step as it fires.
    s.clock.advance(1);
    expect(dumpOf(s).inodes[0]).toMatchObject({ writesInFlight: 1 });
    await until(() => dumpOf(s).inodes.length === 0, 'the queue to empty');
    expect(s.backing()).toBe('later');
    expect(dumpOf(s).timers).toBe(0);
    expect(s.clock.timers).toBe(0);
    // A later write gets a timer of its own.
    await s.bridge.write('/f', fh, B('LATER'), 0);
    s.clock.advance(50);
    await until(() => s.backing() === 'LATER', 'the second write-out');
  });

  test('time: only data old enough is due; newer data waits for its own deadline', async () => {
    const s = await setup({ 'flush-after': '0.2' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('A'), 0);
    s.clock.advance(120);
    await s.bridge.write('/f', fh, B('B'), 5); // not contiguous: a request of its own
    s.clock.advance(80); // A is 200 ms old, B 80 ms
    await until(() => s.backing() === 'A', 'the first deadline');
    await until(() => dumpOf(s).inodes[0]?.writesInFlight === 0, "A's write to finish");
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 1, queuedBytes: 1 });
    s.clock.advance(119);
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 1, writesInFlight: 0 });
    s.clock.advance(1);
    expect(dumpOf(s).inodes[0]).toMatchObject({ writesInFlight: 1 });
    await until(() => s.backing() === 'A\0\0\0\0B', 'the second deadline');
  });

  test('reconfiguring cache-size under what is queued starts a write-out', async () => {
    const s = await setup({ 'flush-after': '0' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, Buffer.alloc(16384, 'z'), 0);
    expect(s.backing()).toBe('');
    await s.wb.reconfigure({ ...s.wb.options, 'cache-size': 4096 });
    await until(() => s.backing().length === 16384, 'the write-out after reconfigure');
    expect(dumpOf(s)['cache-size']).toBe(4096);
  });
});

describe('aggregation and order', () => {
  test('contiguous writes of one fd reach storage as one write', async () => {
    const s = await setup({ 'flush-after': '0' }, [TRACE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    for (let i = 0; i < 16; i++) await s.bridge.write('/f', fh, Buffer.alloc(256, 97 + i), i * 256);
    expect(tracedWrites(s)).toEqual([]);
    await s.bridge.flush('/f', fh);
    expect(tracedWrites(s)).toEqual(['<4096 bytes> @0']);
    expect(s.backing()).toBe([...Array(16).keys()].map((i) => String.fromCharCode(97 + i).repeat(256)).join(''));
  });

  test('writes that are not contiguous, or come from another fd, are not merged', async () => {
    const s = await setup({ 'flush-after': '0' }, [TRACE]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    const b = await s.bridge.open('/f', O_RDWR);
    await s.bridge.write('/f', a, B('aa'), 0);
    await s.bridge.write('/f', a, B('aa'), 4); // gap
    await s.bridge.write('/f', b, B('bb'), 6); // contiguous, but another fd
    await s.bridge.write('/f', a, B('cc'), 8); // contiguous with b's write, not with a's last
    await s.bridge.flush('/f', a);
    expect(tracedWrites(s)).toEqual(['<2 bytes> @0', '<2 bytes> @4', '<2 bytes> @6', '<2 bytes> @8']);
    expect(s.backing()).toBe('aa\0\0aabbcc');
  });

  test('overlapping writes from two fds land in arrival order', async () => {
    const s = await setup({ 'flush-after': '0' }, [TRACE]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    const b = await s.bridge.open('/f', O_RDWR);
    await s.bridge.write('/f', a, B('AAAA'), 0);
    await s.bridge.write('/f', b, B('BBBB'), 2);
    // Contiguous with a's first write: merging it into that one would reorder it before b's.
    await s.bridge.write('/f', a, B('CC'), 4);
    await s.bridge.write('/f', b, B('D'), 0);
    expect(s.backing()).toBe('');
    await s.bridge.fsync('/f', b, false);
    expect(s.backing()).toBe('DABBCC');
    expect(tracedWrites(s)).toEqual(['<4 bytes> @0', '<4 bytes> @2', '<2 bytes> @4', '<1 bytes> @0']);
  });

  test('an O_SYNC fd writes through, after what other fds queued before', async () => {
    const s = await setup({ 'flush-after': '0' }, [TRACE]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('aaaa'), 0);
    const sync = await s.bridge.open('/f', O_RDWR | O_SYNC);
    expect(s.backing()).toBe('aaaa'); // the open wrote the queue out
    await s.bridge.write('/f', a, B('bbbb'), 0);
    expect(await s.bridge.write('/f', sync, B('S'), 1)).toBe(1);
    expect(s.backing()).toBe('bSbb');
    expect(await s.bridge.write('/f', sync, B('T'), 2)).toBe(1);
    expect(s.backing()).toBe('bSTb');
    expect(dumpOf(s).inodes).toHaveLength(0);
  });

  test('an O_SYNC file created so writes through from its first write', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR | O_SYNC);
    await s.bridge.write('/f', fh, B('now'), 0);
    expect(s.backing()).toBe('now');
  });
});

describe('several writes in flight', () => {
  const GATE: Layer = { name: 'g', type: 'debug/gate' };
  const gateOf = (s: Setup) => s.graph.xlators.get('g') as Gate;
  /** Holds the next write (at `offset`, if given) before it reaches storage. */
  const holdWrite = (s: Setup, offset?: number): Hold => gateOf(s).hold('write', 'before', (args) => offset === undefined || args[2] === offset);
  const writesStarted = (s: Setup) => gateOf(s).calls.get('write') ?? 0;

  test('aggregate-size bounds how much contiguous data one write carries', async () => {
    const s = await setup({ 'flush-after': '0', 'aggregate-size': '8KB', 'cache-size': '1MB' }, [TRACE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    for (let i = 0; i < 5; i++) await s.bridge.write('/f', fh, Buffer.alloc(4096, 97 + i), i * 4096);
    await s.bridge.flush('/f', fh);
    expect(tracedWrites(s)).toEqual(['<8192 bytes> @0', '<8192 bytes> @8192', '<4096 bytes> @16384']);
    expect(s.backing()).toBe([...Array(5).keys()].map((i) => String.fromCharCode(97 + i).repeat(4096)).join(''));
  });

  test('writes to different ranges go to storage together, not one after another', async () => {
    const s = await setup({ 'flush-after': '0', 'aggregate-size': '4KB' }, [GATE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    const held = [0, 4096, 8192].map((o) => holdWrite(s, o));
    for (let i = 0; i < 3; i++) await s.bridge.write('/f', fh, Buffer.alloc(4096, 97 + i), i * 4096);
    const flushed = s.bridge.flush('/f', fh);
    // All three reach the gate while none has finished.
    await within(Promise.all(held.map((h) => h.reached)));
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 3, writingOut: true });
    let flushDone = false;
    flushed.then(
      () => (flushDone = true),
      () => (flushDone = true),
    );
    held[2].release();
    held[0].release();
    await until(() => dumpOf(s).inodes[0]?.writesInFlight === 1, 'the writes at 0 and 8192 to finish');
    // Still waiting for the write at 4096: done means done up to the last write asked for.
    expect(flushDone).toBe(false);
    held[1].release();
    await within(flushed);
    expect(s.backing()).toBe('a'.repeat(4096) + 'b'.repeat(4096) + 'c'.repeat(4096));
  });

  test('a write waits for an earlier write in flight over the same bytes; the later data wins', async () => {
    const s = await setup({ 'flush-after': '0' }, [GATE]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    const b = await s.bridge.open('/f', O_RDWR);
    const first = holdWrite(s, 0);
    await s.bridge.write('/f', a, B('AAAAAAAA'), 0);
    await s.bridge.write('/f', b, B('BB'), 6); // overlaps a's write
    await s.bridge.write('/f', b, B('CC'), 20); // overlaps nothing, but comes after b's first
    const synced = s.bridge.fsync('/f', a, false);
    await within(first.reached);
    // The fsync's write-out decided, in one step, what may go now: only a's write. b's
    // overlaps it, and b's second may not overtake b's first. Nothing else starts them
    // while a's write is held.
    expect(writesStarted(s)).toBe(1);
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 3, writesInFlight: 1 });
    first.release();
    await within(synced);
    expect(writesStarted(s)).toBe(3);
    expect(s.backing()).toBe('AAAAAABB' + '\0'.repeat(12) + 'CC');
  });

  test('appends are never in flight with another write, so they land in order', async () => {
    const s = await setup({ 'flush-after': '0' }, [GATE]);
    const plain = await s.bridge.create('/f', 0o644, O_RDWR);
    const app = await s.bridge.open('/f', O_WRONLY | O_APPEND);
    const first = holdWrite(s, 0);
    await s.bridge.write('/f', plain, B('0123'), 0);
    // The kernel gives appends the size it knows as their offset; storage appends anyway.
    await s.bridge.write('/f', app, B('x'), 100);
    await s.bridge.write('/f', app, B('y'), 200);
    const synced = s.bridge.fsync('/f', plain, false);
    await within(first.reached);
    expect(writesStarted(s)).toBe(1);
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 3, writesInFlight: 1 });
    first.release();
    await within(synced);
    expect(s.backing()).toBe('0123xy');
  });

  test('a failed write among several in flight goes to its fd; the others land', async () => {
    const s = await setup({ 'flush-after': '0', 'aggregate-size': '4KB' }, [ERRORS, GATE]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    const b = await s.bridge.open('/f', O_RDWR);
    const held = [0, 4096, 8192].map((o) => holdWrite(s, o));
    await s.bridge.write('/f', a, Buffer.alloc(4096, 97), 0);
    await s.bridge.write('/f', b, Buffer.alloc(4096, 98), 4096);
    await s.bridge.write('/f', a, Buffer.alloc(4096, 99), 8192);
    const synced = s.bridge.fsync('/f', a, false);
    await within(Promise.all(held.map((h) => h.reached)));
    await setFailure(s, 100);
    held[1].release();
    await until(() => dumpOf(s).pendingErrors.length === 1, "b's write to fail");
    await setFailure(s, 0);
    held[0].release();
    held[2].release();
    await within(synced);
    expect(await errCode(s.bridge.fsync('/f', b, false))).toBe('ENOSPC');
    expect(s.backing()).toBe('a'.repeat(4096) + '\0'.repeat(4096) + 'c'.repeat(4096));
  });
});

describe('what the application sees while writes are queued', () => {
  test('reads see queued data, through the same fd and through another', async () => {
    const s = await setup();
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('hello'), 0);
    expect((await s.bridge.read('/f', a, 100, 0)).toString()).toBe('hello');
    await s.bridge.write('/f', a, B('HE'), 0);
    const b = await s.bridge.open('/f', O_RDONLY);
    await s.bridge.write('/f', a, B('LLO'), 2);
    expect((await s.bridge.read('/f', b, 100, 0)).toString()).toBe('HELLO');
    await s.bridge.write('/f', a, B('!'), 5);
    expect((await s.bridge.read('/f', b, 100, 3)).toString()).toBe('LO!');
  });

  test('getattr reports the size the queued writes give the file', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, Buffer.alloc(1000, 1), 0);
    await s.bridge.write('/f', fh, Buffer.alloc(10, 2), 5000);
    expect(fs.statSync(path.join(s.dir, 'f')).size).toBe(0);
    expect((await s.bridge.getattr('/f')).size).toBe(5010);
    await s.bridge.write('/f', fh, Buffer.alloc(10, 3), 9990);
    const iatt = await s.graph.top.lookup(s.graph.frame('lookup'), { path: '/f', parent: s.graph.itable.root, name: 'f' });
    expect(iatt.size).toBe(10000);
    await s.bridge.write('/f', fh, Buffer.alloc(1, 3), 19999);
    expect((await s.graph.top.fstat(s.graph.frame('fstat'), fdOf(s, fh))).size).toBe(20000);
  });

  test('a lookup of another name does not write anything out', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('data'), 0);
    const g = await s.bridge.create('/g', 0o644, O_RDWR);
    expect((await s.bridge.getattr('/g')).size).toBe(0);
    expect(s.backing()).toBe('');
    await s.bridge.release('/g', g);
    // Releasing another file's fd leaves this file's queue alone too.
    expect(s.backing()).toBe('');
    expect(dumpOf(s).inodes[0].queuedBytes).toBe(4);
  });
});

describe('background write errors', () => {
  test('a failed write-out is returned by flush, exactly once', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    expect(await s.bridge.write('/f', fh, B('lost'), 0)).toBe(4);
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('ENOSPC');
    expect(dumpOf(s).pendingErrors).toEqual([]);
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('OK');
    expect(s.backing()).toBe('');
    await s.bridge.release('/f', fh);
    expect(s.logs.filter((l) => l.includes('ERROR'))).toEqual([]);
  });

  test('the error goes to the fd that wrote, not to the fd whose fop caused the write-out', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    const b = await s.bridge.open('/f', O_RDWR);
    await s.bridge.write('/f', a, B('aaaa'), 0);
    // b's read writes a's data out; it fails; b is not told.
    expect(await errCode(s.bridge.read('/f', b, 10, 0))).toBe('OK');
    expect(await errCode(s.bridge.fsync('/f', b, false))).toBe('OK');
    expect(await errCode(s.bridge.flush('/f', b))).toBe('OK');
    const d = dumpOf(s);
    expect(d.pendingErrors).toEqual([{ fd: fdOf(s, a).id, gfid: fdOf(s, a).inode.gfid, error: 'ENOSPC' }]);
    // a's next fop gets it, once.
    expect(await errCode(s.bridge.read('/f', a, 10, 0))).toBe('ENOSPC');
    expect(await errCode(s.bridge.read('/f', a, 10, 0))).toBe('OK');
    expect(await errCode(s.bridge.flush('/f', a))).toBe('OK');
  });

  test('the next fop on the fd returns it: write, fsync, ftruncate, fstat', async () => {
    const fops: [string, (s: Setup, fh: number) => Promise<unknown>][] = [
      ['write', (s, fh) => s.bridge.write('/f', fh, B('x'), 100)],
      ['fsync', (s, fh) => s.bridge.fsync('/f', fh, false)],
      ['ftruncate', (s, fh) => s.bridge.ftruncate('/f', fh, 0)],
      ['fstat', (s, fh) => s.graph.top.fstat(s.graph.frame('fstat'), fdOf(s, fh))],
    ];
    for (const [name, fop] of fops) {
      const s = await setup({ 'flush-after': '0' }, [ERRORS]);
      const a = await s.bridge.create('/f', 0o644, O_RDWR);
      const b = await s.bridge.open('/f', O_RDONLY);
      await s.bridge.write('/f', a, B('aaaa'), 0);
      await s.bridge.read('/f', b, 10, 0); // the write-out fails, behind a's back
      await setFailure(s, 0);
      expect([name, await errCode(fop(s, a))]).toEqual([name, 'ENOSPC']);
      expect([name, await errCode(fop(s, a))]).toEqual([name, 'OK']);
      expect([name, await errCode(s.bridge.flush('/f', a))]).toEqual([name, 'OK']);
    }
  });

  test('a write that fails behind a later write is reported by that write; the later data still lands', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('lost'), 0);
    await s.bridge.fsync('/f', await s.bridge.open('/f', O_RDONLY), false);
    await setFailure(s, 0);
    expect(await errCode(s.bridge.write('/f', a, B('kept'), 4))).toBe('ENOSPC');
    expect(await s.bridge.write('/f', a, B('kept'), 4)).toBe(4);
    expect(await errCode(s.bridge.flush('/f', a))).toBe('OK');
    expect(s.backing()).toBe('\0\0\0\0kept');
  });

  test('a timer-driven write-out that fails is reported by the next fop', async () => {
    const s = await setup({ 'flush-after': '0.03' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('lost'), 0);
    s.clock.advance(30);
    await until(() => dumpOf(s).pendingErrors.length === 1, 'the timer write-out to fail');
    await setFailure(s, 0);
    expect(await errCode(s.bridge.read('/f', a, 10, 0))).toBe('ENOSPC');
    expect(await errCode(s.bridge.flush('/f', a))).toBe('OK');
  });

  test('an fd released with its error unreported is logged at error level', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('lost'), 0);
    const id = fdOf(s, a).id;
    expect(s.logs.filter((l) => l.includes('ERROR'))).toEqual([]);
    await s.bridge.release('/f', a);
    const errors = s.logs.filter((l) => l.includes('ERROR'));
    expect(errors).toHaveLength(1);
    expect(errors[0]).toContain(`fd ${id}`);
    expect(errors[0]).toContain('ENOSPC');
    expect(dumpOf(s).pendingErrors).toEqual([]);
  });

  test('an error reported before release is not logged again', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('lost'), 0);
    expect(await errCode(s.bridge.fsync('/f', a, false))).toBe('ENOSPC');
    await s.bridge.release('/f', a);
    expect(s.logs.filter((l) => l.includes('ERROR'))).toEqual([]);
  });
});

describe('while the child is down, nothing is acknowledged that is not on its way', () => {
  const GATE: Layer = { name: 'g', type: 'debug/gate' };
  const gateOf = (s: Setup) => s.graph.xlators.get('g') as Gate;
  /** The gate reports an event from below, as protocol/client does when its brick goes or comes back. */
  const childReports = (s: Setup, e: XlEvent) => gateOf(s).notify(e, s.graph.xlators.get('p'));

  test('after CHILD_DOWN every write goes through and returns what the child answered; after CHILD_UP writes are cached again', async () => {
    const s = await setup({ 'flush-after': '0' }, [GATE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    childReports(s, XlEvent.CHILD_DOWN);
    expect(dumpOf(s).childUp).toBe(false);
    // The event went on up to the graph.
    expect(s.graph.status$.value).toBe('down');
    expect(await s.bridge.write('/f', fh, B('through'), 0)).toBe(7);
    expect(s.backing()).toBe('through');
    expect(dumpOf(s).inodes).toEqual([]);
    childReports(s, XlEvent.CHILD_UP);
    expect(s.graph.status$.value).toBe('up');
    expect(await s.bridge.write('/f', fh, B('CACHED'), 0)).toBe(6);
    expect(s.backing()).toBe('through');
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('CACHEDh');
  });

  test('a write through that fails is not acknowledged: the caller gets the error, and it is not reported again', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS, GATE]);
    await setFailure(s, 0);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await setFailure(s, 100);
    childReports(s, XlEvent.CHILD_DOWN);
    expect(await errCode(s.bridge.write('/f', fh, B('never'), 0))).toBe('ENOSPC');
    expect(dumpOf(s).pendingErrors).toEqual([]);
    await setFailure(s, 0);
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('OK');
    expect(s.backing()).toBe('');
  });

  test('writes acknowledged before CHILD_DOWN are handed to the child at once, in order', async () => {
    const s = await setup({ 'flush-after': '0' }, [GATE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('aaaa'), 0);
    await s.bridge.write('/f', fh, B('bb'), 1);
    const first = gateOf(s).hold('write', 'before');
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 2, writesInFlight: 0 });
    childReports(s, XlEvent.CHILD_DOWN);
    // Started in the same step as the event: the first one, the overlapping second after it.
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedWrites: 2, writesInFlight: 1 });
    await within(first.reached);
    // A write arriving now goes through after both, so its bytes win.
    const late = s.bridge.write('/f', fh, B('C'), 2);
    first.release();
    expect(await within(late)).toBe(1);
    expect(s.backing()).toBe('abCa');
    expect(dumpOf(s).inodes).toEqual([]);
  });

  test('an acknowledged write that fails after CHILD_DOWN is returned by the next write on its fd, which is then not sent', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS, GATE]);
    await setFailure(s, 0);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    expect(await s.bridge.write('/f', fh, B('lost'), 0)).toBe(4);
    await setFailure(s, 100);
    childReports(s, XlEvent.CHILD_DOWN);
    await until(() => dumpOf(s).pendingErrors.length === 1, 'the write-out to fail');
    await setFailure(s, 0);
    expect(await errCode(s.bridge.write('/f', fh, B('next'), 4))).toBe('ENOSPC');
    expect(s.backing()).toBe('');
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('OK');
    expect(await s.bridge.write('/f', fh, B('next'), 4)).toBe(4);
    expect(s.backing()).toBe('\0\0\0\0next');
  });

  test('a writer waiting for room when the child goes down writes through when let in', async () => {
    const s = await setup({ 'flush-after': '0', 'cache-size': '4KB' }, [GATE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    const held = gateOf(s).hold('write', 'before');
    await s.bridge.write('/f', fh, Buffer.alloc(4097, 'a'), 0); // past cache-size: written out
    await within(held.reached);
    const waiting = s.bridge.write('/f', fh, B('b'), 4097);
    await until(() => dumpOf(s).inodes[0]?.blockedWriters === 1, 'the second write to wait for room');
    childReports(s, XlEvent.CHILD_DOWN);
    held.release();
    expect(await within(waiting)).toBe(1);
    // Answered by the child: on storage when it returned, nothing left queued.
    expect(s.backing()).toBe('a'.repeat(4097) + 'b');
    expect(dumpOf(s).inodes).toEqual([]);
  });
});

describe('over protocol/client: a brick that goes away', () => {
  /** A brick (storage/posix under protocol/server) in this process, on `port`. */
  async function startBrick(dir: string, port: number): Promise<Graph> {
    const text = `volume bp\n type storage/posix\n option directory ${dir}\nend-volume\nvolume bs\n type protocol/server\n option listen-port ${port}\n option auth.insecure-open on\n subvolumes bp\nend-volume\n`;
    const g = buildGraph(parseVolfile(text, 'brick.vol'), { id: 100 + bricks.length, registry: new Registry(), log: Logger.create('error') });
    bricks.push(g);
    expect(await within(g.start(5000))).toBe('up');
    return g;
  }

  async function clientSetup(): Promise<Setup & { dir: string; port: number; brick: Graph }> {
    const dir = tempDir('xlstack-wb-brick-');
    const port = await freePort();
    const brick = await startBrick(dir, port);
    const clock = new ManualClock();
    const registry = new Registry();
    registry.register(writeBehind(clock));
    const logs: string[] = [];
    const text =
      `volume remote\n type protocol/client\n option remote-port ${port}\n option remote-subvolume bp\n option frame-timeout 0.5\nend-volume\n` +
      'volume wb\n type performance/write-behind\n option flush-after 0\n subvolumes remote\nend-volume\n';
    const graph = buildGraph(parseVolfile(text, 'client.vol'), { id: 1, registry, log: Logger.create('error', (l) => logs.push(l)) });
    expect(await within(graph.start(5000))).toBe('up');
    const bridge = new Bridge(graph, Logger.create('error', (l) => logs.push(l)));
    running.push({ graph, bridge });
    const wb = graph.xlators.get('wb') as WriteBehind;
    const backing = (name = 'f') => (fs.existsSync(path.join(dir, name)) ? fs.readFileSync(path.join(dir, name), 'latin1') : '');
    return { dir, port, brick, graph, bridge, wb, clock, logs, backing };
  }

  const stopped = async (brick: Graph) => {
    await within(brick.stop(10_000), 15_000);
    bricks.splice(bricks.indexOf(brick), 1);
  };

  test('with the brick down a write is refused (ENOTCONN), not acknowledged; with it back writes are cached again', async () => {
    const s = await clientSetup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    expect(await s.bridge.write('/f', fh, B('one'), 0)).toBe(3);
    expect(s.backing()).toBe(''); // cached
    await s.bridge.flush('/f', fh);
    expect(s.backing()).toBe('one');

    await stopped(s.brick);
    await until(() => !dumpOf(s).childUp, 'protocol/client to report CHILD_DOWN');
    // Sent through: the client waits frame-timeout for its brick, then fails it.
    expect(await errCode(s.bridge.write('/f', fh, B('two'), 3))).toBe('ENOTCONN');
    expect(dumpOf(s).inodes).toEqual([]);
    expect(dumpOf(s).pendingErrors).toEqual([]);

    await startBrick(s.dir, s.port);
    await until(() => dumpOf(s).childUp, 'protocol/client to report CHILD_UP');
    expect(await s.bridge.write('/f', fh, B('two'), 3)).toBe(3);
    expect(s.backing()).toBe('one');
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('OK');
    expect(s.backing()).toBe('onetwo');
  });

  test('a write acknowledged before the brick went away and never delivered is returned by flush, once', async () => {
    const s = await clientSetup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    expect(await s.bridge.write('/f', fh, B('queued'), 0)).toBe(6);
    await stopped(s.brick);
    await until(() => dumpOf(s).pendingErrors.length === 1, 'the handed-over write to fail after frame-timeout');
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('ENOTCONN');
    expect(dumpOf(s).pendingErrors).toEqual([]);
    expect(s.backing()).toBe('');
    await s.bridge.release('/f', fh);
    // Reported by flush: release has nothing left to log.
    expect(s.logs.filter((l) => l.includes('ERROR') && l.includes('unreported'))).toEqual([]);
  });
});

describe('fd fops after queued writes', () => {
  const GATE: Layer = { name: 'g', type: 'debug/gate' };
  const gateOf = (s: Setup) => s.graph.xlators.get('g') as Gate;
  const fops: [string, (s: Setup, fd: Fd) => Promise<unknown>][] = [
    ['fallocate', (s, fd) => s.graph.top.fallocate(s.graph.frame('fallocate'), fd, 0, 0, 8)],
    ['seek', (s, fd) => s.graph.top.seek(s.graph.frame('seek'), fd, 0, 'data')],
    ['lk', (s, fd) => s.graph.top.lk(s.graph.frame('lk'), fd, 'set', { type: 'write', start: 0, end: 10, pid: 1 }, 'posix')],
  ];

  test.each(fops)('%s reaches the child only after the queued writes landed', async (op, call) => {
    const s = await setup({ 'flush-after': '0' }, [GATE]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('data'), 0);
    const held = gateOf(s).hold(op as 'fallocate', 'before');
    const p = errCode(call(s, fdOf(s, fh)));
    await within(held.reached);
    expect(s.backing()).toBe('data');
    held.release();
    await p; // storage/posix may not implement it; only the order is at stake here
  });

  test.each(fops.slice(0, 2))('%s returns an unreported write error of its fd, once, and is then not sent', async (op, call) => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS, GATE]);
    await setFailure(s, 0);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('lost'), 0);
    await setFailure(s, 100);
    expect(await errCode(call(s, fdOf(s, fh)))).toBe('ENOSPC');
    expect(gateOf(s).calls.get(op as 'fallocate') ?? 0).toBe(0);
    expect(dumpOf(s).pendingErrors).toEqual([]);
  });

  test('lk leaves a write error for the next data fop or flush (a failed unlock would leave the lock held)', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS, GATE]);
    await setFailure(s, 0);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('lost'), 0);
    await setFailure(s, 100);
    await errCode(fops[2][1](s, fdOf(s, fh)));
    expect(gateOf(s).calls.get('lk')).toBe(1);
    expect(dumpOf(s).pendingErrors).toHaveLength(1);
    await setFailure(s, 0);
    expect(await errCode(s.bridge.flush('/f', fh))).toBe('ENOSPC');
  });
});

describe('offsets and appends', () => {
  test('a write reaching past MAX_OFFSET is refused (EFBIG) and nothing is queued', async () => {
    const s = await setup();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    const write = (offset: number, len = 1) => errCode(s.graph.top.write(s.graph.frame('write'), fdOf(s, fh), Buffer.alloc(len), offset));
    expect(await write(MAX_OFFSET)).toBe('EFBIG');
    expect(await write(MAX_OFFSET - 1, 2)).toBe('EFBIG');
    expect(await write(-1)).toBe('EFBIG');
    expect(await write(0.5)).toBe('EFBIG');
    expect(dumpOf(s).inodes).toEqual([]);
    expect(await write(MAX_OFFSET - 1)).toBe('OK'); // the last byte there is still a byte
    expect(dumpOf(s).inodes[0]).toMatchObject({ queuedBytes: 1 });
  });

  test('appends of two fds land in arrival order; one fd\'s appends merge only when nothing came in between', async () => {
    const s = await setup({ 'flush-after': '0' }, [TRACE]);
    const a = await s.bridge.create('/f', 0o644, O_WRONLY | O_APPEND);
    const b = await s.bridge.open('/f', O_WRONLY | O_APPEND);
    // Offsets as the kernel gives them (the size it knows); storage appends wherever the end is.
    await s.bridge.write('/f', a, B('a1'), 0);
    await s.bridge.write('/f', b, B('b1'), 2);
    await s.bridge.write('/f', a, B('a2'), 4); // contiguous with a's first, but b's came in between
    await s.bridge.write('/f', a, B('a3'), 6); // contiguous with a's last: one write
    await s.bridge.write('/f', a, B('a4'), 6); // a stale offset: not contiguous, a write of its own
    expect(s.backing()).toBe('');
    await s.bridge.flush('/f', a);
    expect(s.backing()).toBe('a1b1a2a3a4');
    expect(tracedWrites(s)).toEqual(['<2 bytes> @0', '<2 bytes> @2', '<4 bytes> @4', '<2 bytes> @6']);
  });
});

describe('bounds and lifetime', () => {
  test('under a flood of writes, queued bytes never exceed cache-size plus one write', async () => {
    const LIMIT = 8192;
    const SIZE = 1024;
    const N = 200;
    const s = await setup({ 'cache-size': `${LIMIT}`, 'flush-after': '0' }, [
      { name: 'dg', type: 'debug/delay-gen', options: { enable: 'write', 'delay-percentage': '100', 'delay-duration': '1000' } },
    ]);
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    let maxSeen = 0;
    let maxBlocked = 0;
    const sample = () => {
      for (const i of dumpOf(s).inodes) {
        maxSeen = Math.max(maxSeen, i.queuedBytes);
        maxBlocked = Math.max(maxBlocked, i.blockedWriters);
      }
    };
    // Every other block of a fd, then the rest from another fd: no merging across the flood.
    const b = await s.bridge.open('/f', O_RDWR);
    const writes = [...Array(N).keys()].map((i) =>
      s.bridge.write('/f', i % 2 ? b : fh, Buffer.alloc(SIZE, 65 + (i % 26)), i * SIZE).then((n) => (sample(), n)),
    );
    sample();
    expect(await within(Promise.all(writes), 20_000)).toEqual(Array(N).fill(SIZE));
    await s.bridge.flush('/f', fh);
    expect(maxBlocked).toBeGreaterThan(0); // the flood did have to wait
    expect(maxSeen).toBeGreaterThan(LIMIT - SIZE);
    expect(maxSeen).toBeLessThanOrEqual(LIMIT + SIZE);
    expect(dumpOf(s).peakQueuedBytes).toBeLessThanOrEqual(LIMIT + SIZE);
    const want = [...Array(N).keys()].map((i) => String.fromCharCode(65 + (i % 26)).repeat(SIZE)).join('');
    expect(s.backing()).toBe(want);
  });

  test('a pending flush-after timer (on the system clock) never keeps the process alive, and none is left after stop', async () => {
    const s = await setup({ 'flush-after': '30' }, [], systemClock);
    const timeouts = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
    const before = timeouts();
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('held'), 0);
    expect(dumpOf(s).timers).toBe(1);
    expect(timeouts()).toBe(before); // unref'd
    await within(s.graph.stop(5000));
    expect(s.backing()).toBe('held');
    expect(dumpOf(s).timers).toBe(0);
    expect(dumpOf(s).inodes).toHaveLength(0);
  });

  test('emptying a queue clears its timer', async () => {
    const s = await setup({ 'flush-after': '30' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', fh, B('x'), 0);
    expect(dumpOf(s).timers).toBe(1);
    await s.bridge.flush('/f', fh);
    expect(dumpOf(s).timers).toBe(0);
  });

  test('writes after the graph started going down go straight through', async () => {
    const s = await setup({ 'flush-after': '30' });
    const fh = await s.bridge.create('/f', 0o644, O_RDWR);
    const fd = fdOf(s, fh);
    await s.bridge.write('/f', fh, B('queued'), 0);
    await within(s.graph.stop(5000));
    expect(s.backing()).toBe('queued');
    // Nothing would write a queue out any more: the write reaches storage before it returns.
    expect(await s.graph.top.write(s.graph.frame('write'), fd, B('LATE'), 0)).toBe(4);
    expect(s.backing()).toBe('LATEed');
    expect(dumpOf(s).inodes).toHaveLength(0);
    expect(dumpOf(s).timers).toBe(0);
  });

  test('the statedump shows queued bytes, writes, oldest age and pending errors per fd', async () => {
    const s = await setup({ 'flush-after': '0' }, [ERRORS]);
    const a = await s.bridge.create('/f', 0o644, O_RDWR);
    await s.bridge.write('/f', a, B('1234'), 0);
    s.clock.advance(20);
    await s.bridge.write('/f', a, B('56'), 10);
    let d = dumpOf(s);
    expect(d['cache-size']).toBe(1024 * 1024);
    expect(d['flush-after']).toBe(0);
    expect(d.childUp).toBe(true);
    expect(d.inodes).toEqual([
      { gfid: fdOf(s, a).inode.gfid, queuedBytes: 6, queuedWrites: 2, writesInFlight: 0, oldestAgeMs: 20, writingOut: false, blockedWriters: 0 },
    ]);
    await s.bridge.getattr('/f'); // writes out; both fail
    d = dumpOf(s);
    expect(d.inodes).toEqual([]);
    expect(d.pendingErrors).toEqual([{ fd: fdOf(s, a).id, gfid: fdOf(s, a).inode.gfid, error: 'ENOSPC' }]);
  });
});
