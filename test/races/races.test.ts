// The known graph-switch races, each reproduced deterministically with debug/gate holds,
// each run twice on the same schedule: on the real bridge (it must pass) and on a variant
// that does what an older design did (it must fail: hang, leak or corrupt). A reproduction
// that did not fail on the older design would prove nothing.
import * as fs from 'fs';
import { constants } from 'fs';
import * as path from 'path';
import type { Iatt } from '../../src/core/types';
import { InodeSerializer, LegacySwitcher } from './legacy';
import type { StackOptions } from './harness';
import { within as bounded } from '../helpers/graphs';
import { HUNG, O_RDWR, POSIX, closeStacks, createFile, layer, outcome, read, settledOrBlocked, stack, track, until, within } from './harness';

afterEach(closeStacks);

const TRACE_OVER_POSIX = POSIX + layer('top', 'debug/trace', 'posix');
const DELAY_OVER_POSIX = POSIX + layer('top', 'debug/delay-gen', 'posix');

describe('1. lock and unlock through a swapped fd.inode', () => {
  // A translator locks fd.inode on the way down and unlocks fd.inode on the way up.
  const V1 = POSIX + layer('gate', 'debug/gate', 'posix') + layer('top', 'test/inode-serializer', 'gate');
  const V2 = POSIX + layer('gate', 'debug/gate', 'posix') + layer('ser', 'test/inode-serializer', 'gate') + layer('top', 'debug/trace', 'ser');

  async function schedule(opts: StackOptions) {
    const s = await stack(V1, opts);
    const fh1 = await createFile(s.bridge, '/f', 'data');
    const fh2 = await s.bridge.open('/f', O_RDWR);
    const serializer1 = s.graph(1).xlators.get('top') as InodeSerializer;
    const oldInode = s.bridge.basefds.get(fh1).current.fd.inode;
    const a = s.gate(1).hold('read', 'before');
    const taskA = outcome(read(s.bridge, '/f', fh1)); // A takes graph 1's inode lock and is held below it
    await bounded(a.reached, 5000);
    await s.reload(V2);
    const taskB = track(outcome(read(s.bridge, '/f', fh1))); // B moves fh1 to graph 2 while A holds the lock
    // B is done, or queued on graph 1's lock of the old inode (which A holds until released).
    const bBeforeA = await settledOrBlocked(taskB, () => serializer1.lockOf(oldInode).waiting > 0);
    a.release();
    const aResult = await within(taskA, 10_000);
    const bResult = await within(taskB.promise, 10_000);
    const cResult = await within(outcome(read(s.bridge, '/f', fh2)), 10_000); // C: the other fd on the file moves too
    // Every request is answered: a lock still held now is held by nobody who will unlock it.
    const heldLocks = serializer1.heldLocks();
    return { bBeforeA, aResult: String(aResult), bResult, cResult, heldLocks, oldInodeLocked: serializer1.lockOf(oldInode).isHeld };
  }

  test('real bridge: the migration waits for A; A unlocks the inode it locked; nothing is left held', async () => {
    const r = await schedule({});
    expect(r.bBeforeA).toBe('blocked'); // B's flush on the old graph waits for A: no fd is repointed under A
    expect(r.aResult).toBe('data');
    expect(r.bResult).toBe('data');
    expect(r.cResult).toBe('data');
    expect(r.heldLocks).toEqual([]);
    expect(r.oldInodeLocked).toBe(false);
  });

  test('older design (swap-inode-on-migrate): A unlocks the new inode; the old inode stays locked for good, so its next locker would hang', async () => {
    const r = await schedule({ flaws: ['swap-inode-on-migrate'] });
    expect(r.bBeforeA).toBe('data');
    expect(r.aResult).toBe('EBADF');
    expect(r.heldLocks).toHaveLength(1);
    expect(r.oldInodeLocked).toBe(true);
  });
});

describe('2. inode swap in the create callback racing with a lookup of the new file', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(POSIX + layer('top', 'debug/gate', 'posix'), opts);
    const h = s.gate(1, 'top').hold('create', 'after');
    const creating = s.bridge.create('/new', 0o644, O_RDWR);
    await bounded(h.reached, 5000); // the file exists on disk; the reply is held
    const racing = (await s.bridge.getattr('/new')) as Iatt; // another process looks the name up
    h.release();
    const fh = await creating;
    const fdInode = s.bridge.basefds.get(fh).current.fd.inode;
    const tableInode = s.bridge.active.itable.find(racing.gfid)!;
    const wrote = await outcome(s.bridge.write('/new', fh, Buffer.from('x'), 0));
    const released = await outcome(s.bridge.release('/new', fh));
    return { sameInodeFromTheStart: fdInode === tableInode, wrote, released: released === undefined ? 'ok' : String(released), refs: tableInode.refcount };
  }

  test('real bridge: the inode exists before the create is sent; the lookup finds that same inode', async () => {
    const r = await schedule({});
    expect(r).toEqual({ sameInodeFromTheStart: true, wrote: 1, released: 'ok', refs: 0 });
  });

  test('older design (swap-inode-on-create): the fd is repointed and its inode references no longer balance', async () => {
    const r = await schedule({ flaws: ['swap-inode-on-create'] });
    expect(r.released).toMatch(/unref below zero/);
  });
});

describe('3. a request issued on the old graph that completes after its handle moved', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(POSIX + layer('gate', 'debug/gate', 'posix') + layer('top', 'debug/trace', 'gate'), opts);
    const fh = await createFile(s.bridge, '/f', 'before');
    const h = s.gate(1).hold('write', 'before');
    const late = outcome(s.bridge.write('/f', fh, Buffer.from('LATE'), 0)); // on its way down graph 1
    await bounded(h.reached, 5000);
    await s.reload(TRACE_OVER_POSIX.replace('debug/trace', 'debug/delay-gen'));
    const moved = await outcome(read(s.bridge, '/f', fh)); // the handle moves to graph 2 meanwhile
    const current = s.bridge.basefds.get(fh).current;
    h.release();
    const lateResult = await within(late, 10_000);
    return { moved, lateResult, unchanged: s.bridge.basefds.get(fh).current === current, onDisk: fs.readFileSync(path.join(s.backing, 'f'), 'utf8') };
  }

  test('real bridge: the late request finishes on its own Fd, and leaves the handle where it is', async () => {
    expect(await schedule({})).toEqual({ moved: 'before', lateResult: 4, unchanged: true, onDisk: 'LATEre' });
  });

  test('older design (swap-inode-on-migrate): the old state is gone under the late request; the write is lost', async () => {
    const r = await schedule({ flaws: ['swap-inode-on-migrate'] });
    expect(r.lateResult).toBe('EBADF');
    expect(r.onDisk).toBe('before');
  });
});

describe('4. many requests resolving one handle at the moment of the switch', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    const fh = await createFile(s.bridge, '/f', 'x'.repeat(64));
    await s.reload(POSIX + layer('gate', 'debug/gate', 'posix') + layer('top', 'debug/trace', 'gate'));
    const results = await Promise.all(Array.from({ length: 8 }, () => outcome(read(s.bridge, '/f', fh, 8))));
    const opens = s.gate(2).calls.get('open') ?? 0;
    await outcome(s.bridge.release('/f', fh));
    return { results, opens, fdsLeft: s.graph(2).fds.size };
  }

  test('real bridge: exactly one open on the new graph, every request succeeds', async () => {
    const r = await schedule({});
    expect(r.results).toEqual(Array(8).fill('xxxxxxxx'));
    expect(r.opens).toBe(1);
    expect(r.fdsLeft).toBe(0);
  });

  test('older design (no-basefd-lock): one open per request, and the extra fds leak', async () => {
    const r = await schedule({ flaws: ['no-basefd-lock'] });
    expect(r.opens).toBeGreaterThan(1);
    expect(r.fdsLeft).toBeGreaterThan(0);
  });
});

describe('5. writes held in performance/write-behind on the old graph at the switch', () => {
  // Graph 1 keeps writes back (no timer); a gate below it holds their write-out.
  const V1 = POSIX + layer('gate', 'debug/gate', 'posix') + layer('top', 'performance/write-behind', 'gate', '    option flush-after 0\n');
  const V2 = POSIX + layer('wb', 'performance/write-behind', 'posix', '    option flush-after 0\n') + layer('top', 'debug/trace', 'wb');

  async function schedule(opts: StackOptions) {
    const s = await stack(V1, opts);
    const fh = await createFile(s.bridge, '/f', 'old!');
    await s.bridge.flush('/f', fh);
    const held = s.gate(1).hold('write', 'before');
    await s.bridge.write('/f', fh, Buffer.from('NEW1'), 0); // acknowledged, kept back in graph 1
    await s.reload(V2);
    const base = s.bridge.basefds.get(fh);
    const flushing = () => (s.graph(1).dump().frames as { op: string }[]).some((f) => f.op === 'flush');
    const reading = track(outcome(read(s.bridge, '/f', fh))); // moves the handle to graph 2
    const readEarly = await settledOrBlocked(reading, flushing); // blocked: graph 1 flushes behind the held write
    const writing = track(outcome(s.bridge.write('/f', fh, Buffer.from('NEW2'), 0).then(() => s.bridge.flush('/f', fh))));
    const writeEarly = await settledOrBlocked(writing, () => base.lock.waiting > 0); // blocked: queued behind the move
    held.release(); // graph 1's write-out of NEW1 may go on
    const seen = await within(reading.promise, 10_000);
    await within(writing.promise, 10_000);
    await until(() => !s.ids().includes(1)); // graph 1 goes, writing out whatever it still held
    return { readEarly, writeEarly, seen, final: fs.readFileSync(path.join(s.backing, 'f'), 'utf8') };
  }

  test('real bridge: the old graph writes out before the new Fd serves; nothing is lost or reordered', async () => {
    const r = await schedule({});
    expect(r.readEarly).toBe('blocked'); // the read waits for graph 1's write-out
    expect(r.writeEarly).toBe('blocked'); // and so does the next write: it comes after
    // The read and the write are concurrent requests: either order is right, stale data is not.
    expect(['NEW1', 'NEW2']).toContain(r.seen);
    expect(r.final).toBe('NEW2');
  });

  test('older design (no-flush-on-migrate): the new Fd reads stale data and the old write lands last', async () => {
    const r = await schedule({ flaws: ['no-flush-on-migrate'] });
    expect(r.seen).toBe('old!');
    expect(r.final).toBe('NEW1');
  });
});

describe('6. a reply lost on the old graph', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(POSIX + layer('top', 'debug/error-gen', 'posix', '    option enable read\n    option drop-replies on\n'), opts);
    const fh = await createFile(s.bridge, '/f', 'data');
    void s.bridge.read('/f', fh, 4, 0); // never answered
    s.write(DELAY_OVER_POSIX);
    const switching = track(s.switcher.reload());
    // The barrier variant waits for graph 1 to have nothing in flight: with a reply lost, that is never.
    const switched = await settledOrBlocked(switching, () => s.switcher instanceof LegacySwitcher && s.switcher.waitingForDrain);
    const served = await within(outcome(s.bridge.getattr('/f')), 10_000);
    return { switched: typeof switched === 'object' ? (switched as { action: string }).action : switched, served: served === HUNG ? HUNG : typeof served, old: s.graph(1).dump() };
  }

  test('real bridge: the switch completes and new requests work; only graph 1 waits, and the statedump says why', async () => {
    const r = await schedule({});
    expect(r.switched).toBe('switched');
    expect(r.served).toBe('object');
    expect(r.old).toMatchObject({ state: 'retired', pendingFrames: 1, frames: [{ op: 'read' }] });
  });

  test('older design (switch-barrier): the switch waits for the old graph to drain, which a lost reply never lets happen', async () => {
    const r = await schedule({ switcherFlaws: ['switch-barrier'] });
    expect(r.switched).toBe('blocked');
    expect(r.old).toMatchObject({ state: 'active', pendingFrames: 1, frames: [{ op: 'read' }] });
  });
});

describe('7. a switch during an in-flight create, with a rename and unlink of the same name', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(POSIX + layer('top', 'debug/gate', 'posix'), opts);
    const h = s.gate(1, 'top').hold('create', 'after');
    const creating = s.bridge.create('/x', 0o644, O_RDWR);
    await bounded(h.reached, 5000);
    await s.reload(TRACE_OVER_POSIX);
    await s.bridge.rename('/x', '/y'); // graph 2 renames the file the create just made
    await s.bridge.unlink('/y'); // and unlinks it
    await s.bridge.release('/x', await createFile(s.bridge, '/x', 'another file'));
    h.release();
    const fh = await creating; // answered on graph 1, for a file with no name any more
    const wrote = await outcome(s.bridge.write('/x', fh, Buffer.from('kept'), 0));
    const back = await outcome(read(s.bridge, '/x', fh));
    return { wrote, back, other: fs.readFileSync(path.join(s.backing, 'x'), 'utf8') };
  }

  test('real bridge: the handle moves by GFID to the unlinked file and keeps its data', async () => {
    expect(await schedule({})).toEqual({ wrote: 4, back: 'kept', other: 'another file' });
  });

  test('older design (migrate-by-path): the handle reopens whatever now has the name, and corrupts it', async () => {
    const r = await schedule({ flaws: ['migrate-by-path'] });
    expect(r.other).toBe('kepther file');
  });
});

describe('8. two switches in quick succession while a migration is in progress', () => {
  const V2 = POSIX + layer('gate', 'debug/gate', 'posix', '    option hold open:before\n') + layer('top', 'debug/trace', 'gate');

  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    const fh = await createFile(s.bridge, '/f', 'data');
    await s.reload(V2);
    const first = outcome(read(s.bridge, '/f', fh)); // migration to graph 2, held at its open
    const h = s.gate(2).holds[0];
    await bounded(h.reached, 5000);
    await s.reload(DELAY_OVER_POSIX); // graph 3
    const second = track(outcome(read(s.bridge, '/f', fh)));
    const secondEarly = await settledOrBlocked(second, () => s.bridge.basefds.get(fh).lock.waiting > 0);
    h.release();
    const results = [await within(first, 10_000), await within(second.promise, 10_000)];
    await outcome(s.bridge.release('/f', fh));
    await until(() => s.ids().join() === '3');
    return { secondEarly, results, alive: s.ids(), fdsOn3: s.graph(3).fds.size };
  }

  test('real bridge: the second request waits for the migration in progress; each graph ends with nothing open', async () => {
    const r = await schedule({});
    expect(r.secondEarly).toBe('blocked');
    expect(r.results).toEqual(['data', 'data']);
    expect(r.alive).toEqual([3]);
    expect(r.fdsOn3).toBe(0);
  });

  test('older design (no-basefd-lock): two migrations race; the later graph keeps an fd nobody owns', async () => {
    const r = await schedule({ flaws: ['no-basefd-lock'] });
    expect(r.secondEarly).toBe('data');
    expect(r.fdsOn3).toBeGreaterThan(0);
  });
});

describe('9. out-of-order activation: graph N+2 comes up before N+1', () => {
  const SLOW = POSIX + layer('gate', 'debug/gate', 'posix', '    option hold CHILD_UP\n') + layer('top', 'debug/trace', 'gate');

  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    s.write(SLOW);
    const first = outcome(s.switcher.reload()); // graph 2: its CHILD_UP is held
    await until(() => s.ids().includes(2));
    const gate2 = s.gate(2);
    await bounded(gate2.holds[0].reached, 5000);
    s.write(DELAY_OVER_POSIX);
    const second = await within(s.switcher.reload(), 10_000); // graph 3 comes up at once
    gate2.holds[0].release(); // graph 2's CHILD_UP arrives late
    const firstResult = await within(first, 10_000);
    await until(() => !s.ids().includes(2));
    const fops = [...gate2.calls.values()].reduce((a, b) => a + b, 0);
    return { second: second === HUNG ? HUNG : second.graph, first: (firstResult as { action?: string }).action, active: s.bridge.active.id, graph2Fops: fops, graph2Alive: s.ids().includes(2) };
  }

  test('real bridge: graph 2 is abandoned, never serves a fop, and is cleaned up; graph 3 is active', async () => {
    expect(await schedule({})).toEqual({ second: 3, first: 'superseded', active: 3, graph2Fops: 0, graph2Alive: false });
  });

  test('older design (no-supersede): the late graph 2 becomes active over graph 3', async () => {
    const r = await schedule({ switcherFlaws: ['no-supersede'] });
    expect(r.active).toBe(2);
  });
});

describe('10. a switch to a graph whose children are down, then to a healthy one', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, { ...opts, passthroughUnknown: true });
    const fh = await createFile(s.bridge, '/f', 'kept');
    await s.reload('volume top\n    type features/nothing-below\n    option any 1\nend-volume\n');
    const whileDown = await within(outcome(read(s.bridge, '/f', fh)), 10_000);
    await s.reload(DELAY_OVER_POSIX);
    const afterRecovery = await within(outcome(read(s.bridge, '/f', fh)), 10_000);
    return { whileDown, afterRecovery };
  }

  test('real bridge: requests fail with ENOTCONN (no hang), and the healthy graph recovers the handle', async () => {
    expect(await schedule({})).toEqual({ whileDown: 'ENOTCONN', afterRecovery: 'kept' });
  });

  test('older design (fail-forever): the handle is EBADF for good', async () => {
    const r = await schedule({ flaws: ['fail-forever'] });
    expect(r.afterRecovery).toBe('EBADF');
  });
});

describe('11. the reopen fails on the new graph', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    const bad = await createFile(s.bridge, '/bad', 'bad');
    const dir = await s.bridge.opendir('/');
    await s.reload(POSIX + layer('top', 'debug/error-gen', 'posix', '    option enable open\n    option error-no EACCES\n'));
    const first = await outcome(read(s.bridge, '/bad', bad));
    const again = await outcome(read(s.bridge, '/bad', bad));
    const other = await outcome(s.bridge.fsyncdir('/', dir, false));
    await s.bridge.release('/bad', bad);
    await s.bridge.release('/', dir);
    await until(() => s.ids().join() === '2');
    return { first, again, other: other === undefined ? 'ok' : other, fdsOn2: s.graph(2).fds.size, alive: s.ids() };
  }

  test('real bridge: only that handle gets EBADF, nothing leaks on either graph, others keep working', async () => {
    expect(await schedule({})).toEqual({ first: 'EBADF', again: 'EBADF', other: 'ok', fdsOn2: 0, alive: [2] });
  });

  test('older design (leak-failed-reopen, GlusterFS #4841): the failed fd stays on the new graph', async () => {
    const r = await schedule({ flaws: ['leak-failed-reopen'] });
    expect(r.fdsOn2).toBeGreaterThan(0);
  });
});

describe('12. an open file renamed, another unlinked (libfuse hides it as .fuse_hidden), then a switch', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    const a = await createFile(s.bridge, '/a', 'AAAA');
    const b = await createFile(s.bridge, '/b', 'BBBB');
    await s.bridge.rename('/a', '/renamed');
    await s.bridge.release('/a', await createFile(s.bridge, '/a', 'XXXX')); // a new file takes the old name
    const hidden = '/.fuse_hidden0000000000000002';
    await s.bridge.rename('/b', hidden); // what libfuse does on unlink of an open file
    await s.reload(DELAY_OVER_POSIX);
    const ra = await outcome(read(s.bridge, '/renamed', a));
    const rb = await outcome(read(s.bridge, hidden, b));
    await outcome(s.bridge.write('/renamed', a, Buffer.from('aaaa'), 0));
    await outcome(s.bridge.write(hidden, b, Buffer.from('bbbb'), 0));
    const file = (n: string) => fs.readFileSync(path.join(s.backing, n), 'utf8');
    return { ra, rb, renamed: file('renamed'), newA: file('a'), hidden: file(hidden.slice(1)) };
  }

  test('real bridge: both handles move by GFID and read and write their own files', async () => {
    expect(await schedule({})).toEqual({ ra: 'AAAA', rb: 'BBBB', renamed: 'aaaa', newA: 'XXXX', hidden: 'bbbb' });
  });

  test('older design (migrate-by-path): one handle reopens another file, the other gets EBADF', async () => {
    const r = await schedule({ flaws: ['migrate-by-path'] });
    expect(r.ra).toBe('XXXX');
    expect(r.rb).toBe('EBADF');
    expect(r.newA).toBe('aaaa');
  });
});

describe('13. a handle moved to the new graph and then closed without another request', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, { ...opts, sweepAfterMs: 20 });
    const fh = await createFile(s.bridge, '/f', 'x');
    await s.reload(DELAY_OVER_POSIX);
    expect(await until(() => s.bridge.basefds.get(fh).current.graph.id === 2)).toBe(true); // the sweep moved it
    await outcome(s.bridge.release('/f', fh));
    await until(() => s.ids().join() === '2');
    return { alive: s.ids(), fdsOn2: s.graph(2).fds.size };
  }

  test('real bridge: released on both graphs', async () => {
    expect(await schedule({})).toEqual({ alive: [2], fdsOn2: 0 });
  });

  test('older design (release-first-fd-only, GlusterFS #4836): the new graph keeps the fd', async () => {
    const r = await schedule({ flaws: ['release-first-fd-only'] });
    expect(r.fdsOn2).toBe(1);
  });
});

describe('14. an open in flight across the switch (the handle is born on the old graph)', () => {
  async function schedule(opts: StackOptions) {
    const s = await stack(POSIX + layer('top', 'debug/gate', 'posix'), opts);
    await s.bridge.release('/f', await createFile(s.bridge, '/f', 'data'));
    const h = s.gate(1, 'top').hold('open', 'after');
    const opening = s.bridge.open('/f', O_RDWR);
    await bounded(h.reached, 5000);
    await s.reload(TRACE_OVER_POSIX);
    h.release();
    const fh = await opening;
    const back = await outcome(read(s.bridge, '/f', fh));
    await until(() => s.ids().join() === '2');
    return { back, servedBy: s.bridge.basefds.get(fh).current.graph.id, alive: s.ids() };
  }

  test('real bridge: the handle moves on its first use, and the old graph can go', async () => {
    const r = await schedule({});
    expect(r.back).toBe('data');
    expect(r.servedBy).toBe(2);
    expect(r.alive).toEqual([2]);
  });

  test('older design (eager-only: move handles at switch time only): the handle stays on the old graph', async () => {
    const r = await schedule({ flaws: ['eager-only'] });
    expect(r.back).toBe('data');
    expect(r.servedBy).toBe(1);
    expect(r.alive).toContain(1);
  });
});

describe('15. a close racing the handle\'s migration', () => {
  const V2 = POSIX + layer('gate', 'debug/gate', 'posix', '    option hold open:before\n') + layer('top', 'debug/trace', 'gate');

  async function schedule(opts: StackOptions) {
    const s = await stack(TRACE_OVER_POSIX, opts);
    const fh = await createFile(s.bridge, '/f', 'data');
    await s.reload(V2);
    const reading = outcome(read(s.bridge, '/f', fh)); // migration held at graph 2's open
    const h = s.gate(2).holds[0];
    await bounded(h.reached, 5000);
    const base = s.bridge.basefds.get(fh);
    const closing = track(outcome(s.bridge.release('/f', fh)));
    const closedEarly = await settledOrBlocked(closing, () => base.lock.waiting > 0);
    h.release();
    await within(reading, 10_000);
    await within(closing.promise, 10_000);
    await until(() => s.ids().join() === '2');
    return { closedEarly, alive: s.ids(), fdsOn2: s.graph(2).fds.size };
  }

  test('real bridge: the close waits for the migration, then releases on both graphs', async () => {
    const r = await schedule({});
    expect(r.closedEarly).toBe('blocked');
    expect(r.alive).toEqual([2]);
    expect(r.fdsOn2).toBe(0);
  });

  test('older design (no-basefd-lock): the close misses the fd the migration opens; it leaks', async () => {
    const r = await schedule({ flaws: ['no-basefd-lock'] });
    expect(r.fdsOn2).toBeGreaterThan(0);
  });
});

describe('16. a path request after a switch away from write-behind, while the old graph still holds a write', () => {
  const V1 = POSIX + layer('top', 'performance/write-behind', 'posix', '    option flush-after 60\n');

  async function schedule(opts: StackOptions) {
    const s = await stack(V1, opts);
    const fh = await createFile(s.bridge, '/f', '');
    await s.bridge.write('/f', fh, Buffer.alloc(4096, 7), 0); // acknowledged, held back in graph 1
    await s.reload(TRACE_OVER_POSIX);
    const size = ((await s.bridge.getattr('/f')) as Iatt).size; // what the kernel would cache
    const other = await s.bridge.open('/f', O_RDWR);
    const readByOther = (await s.bridge.read('/f', other, 8192, 0)).length;
    return { size, readByOther };
  }

  test('real bridge: the file\'s handles on the old graph move first, so the new graph answers with the data', async () => {
    expect(await schedule({})).toEqual({ size: 4096, readByOther: 4096 });
  });

  test('older design (no-catch-up): the new graph answers from storage, and the written data is invisible', async () => {
    expect(await schedule({ flaws: ['no-catch-up'] })).toEqual({ size: 0, readByOther: 0 });
  });
});

describe('17. a flush on the old graph that never answers (a lost reply) when a handle moves', () => {
  const DROP_FLUSH = POSIX + layer('top', 'debug/error-gen', 'posix', '    option enable flush\n    option drop-replies on\n');
  const BOUNDS = { flushMs: 200, lockWaitMs: 5000 };

  async function schedule(opts: StackOptions) {
    const s = await stack(DROP_FLUSH, opts);
    const fh = await createFile(s.bridge, '/f', 'one');
    const ro = await s.bridge.open('/f', constants.O_RDONLY);
    await s.reload(TRACE_OVER_POSIX);
    // Both handles need graph 1 to flush before they move; graph 1 never answers.
    const first = outcome(s.bridge.write('/f', fh, Buffer.from('two'), 0));
    const concurrent = outcome(s.bridge.read('/f', fh, 3, 0)); // waits for the same handle's move
    const reader = outcome(read(s.bridge, '/f', ro));
    const results = { first: await within(first, 5000), concurrent: await within(concurrent, 5000), reader: await within(reader, 5000) };
    const after = await within(outcome(s.bridge.write('/f', fh, Buffer.from('TWO'), 0)), 5000);
    const onGraph = s.bridge.basefds.get(fh).current.graph.id;
    return { ...results, after, onGraph, final: fs.readFileSync(path.join(s.backing, 'f'), 'utf8') };
  }

  test('real bridge: the handle moves on after the bound; a writer is told once (EIO) that writes may be lost, a reader is not', async () => {
    const r = await schedule({ bounds: BOUNDS });
    // Whichever of the two requests on the writable handle migrates it reports the loss; the other is served.
    expect([r.first, r.concurrent].filter((x) => x === 'EIO')).toHaveLength(1);
    expect(r.reader).toBe('one');
    expect(r.after).toBe(3);
    expect(r.onGraph).toBe(2);
    expect(r.final).toBe('TWO');
  });
});
