// The engine's lock table: POSIX ranges (split, merge, conflicts between owners), flock
// locks (per open file, conversion), the waiting queue (arrival order, downgrades,
// interrupts, deadlocks) and every release path. Deterministic: the table grants and
// refuses synchronously, so a test looks at its state (dump) right after each step and
// lets promise callbacks run with setImmediate rounds; no timers.
import { FopError } from '../../src/core/errors';
import { Frame } from '../../src/core/frame';
import { FdKey, LockTable } from '../../src/core/locktable';
import { Flock, LOCK_TO_EOF, LockKind, ROOT_CALLER } from '../../src/core/types';
import { flush } from '../helpers/core';

const F1 = '11111111-1111-1111-1111-111111111111';
const F2 = '22222222-2222-2222-2222-222222222222';

const lk = (type: Flock['type'], start = 0, end = LOCK_TO_EOF, pid = 0): Flock => ({ type, start, end, pid });

const frameCounter = { id: 1, frameStarted: () => undefined, frameDone: () => undefined };
const newFrame = (lkOwner = '') => new Frame(frameCounter, 'lk', { caller: ROOT_CALLER, lkOwner });

/** A promise's outcome, readable synchronously once its callbacks have run. */
interface Tracked {
  state: 'pending' | 'granted' | 'failed';
  value?: Flock;
  code?: string;
}

/** `log`, when given, records `name` when the promise is granted: the order grants came in. */
function track(p: Promise<Flock>, name?: string, log?: string[]): Tracked {
  const t: Tracked = { state: 'pending' };
  p.then(
    (v) => {
      Object.assign(t, { state: 'granted', value: v });
      if (name) log?.push(name);
    },
    (e: FopError) => Object.assign(t, { state: 'failed', code: e.code }),
  );
  return t;
}

/** Thin wrappers: each owner has its own open file unless a test says otherwise. */
const set = (t: LockTable, owner: string, l: Flock, o: { gfid?: string; kind?: LockKind; fdKey?: FdKey } = {}) =>
  t.lock(o.gfid ?? F1, o.kind ?? 'posix', owner, l, { wait: false, fdKey: o.fdKey ?? `fd-${owner}` });
const wait = (t: LockTable, owner: string, l: Flock, o: { gfid?: string; kind?: LockKind; fdKey?: FdKey; frame?: Frame; log?: string[] } = {}) =>
  track(t.lock(o.gfid ?? F1, o.kind ?? 'posix', owner, l, { wait: true, fdKey: o.fdKey ?? `fd-${owner}`, frame: o.frame }), owner, o.log);

const code = async (p: Promise<unknown>): Promise<string> => p.then(() => 'OK', (e: FopError) => e.code);

interface Shown {
  kind: string;
  owner: string;
  type: string;
  start: number;
  end: number | 'EOF';
  pid: number;
}
const files = (t: LockTable) => (t.dump() as { files: Record<string, { held: Shown[]; waiting: Shown[] }> }).files;
/** What `owner` holds on `gfid`, as "type start-end" strings in order. */
const heldBy = (t: LockTable, owner: string, gfid = F1, kind: LockKind = 'posix') =>
  (files(t)[gfid]?.held ?? []).filter((h) => h.owner === owner && h.kind === kind).map((h) => `${h.type} ${h.start}-${h.end}`);
const waitingOn = (t: LockTable, gfid = F1) => (files(t)[gfid]?.waiting ?? []).map((w) => `${w.owner} ${w.type} ${w.start}-${w.end}`);

describe('POSIX ranges of one owner', () => {
  it('an unlock in the middle splits a range; the rest stays held', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 99));
    await set(t, 'A', lk('unlock', 40, 59));
    expect(heldBy(t, 'A')).toEqual(['write 0-39', 'write 60-99']);
    expect(t.test(F1, 'posix', 'B', lk('write', 40, 59))).toEqual(lk('unlock', 40, 59));
    expect(t.test(F1, 'posix', 'B', lk('read', 30, 45, 7))).toMatchObject({ type: 'write', start: 0, end: 39 });
  });

  it('adjacent and overlapping ranges of one type merge', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('read', 0, 9));
    await set(t, 'A', lk('read', 10, 19));
    expect(heldBy(t, 'A')).toEqual(['read 0-19']);
    await set(t, 'A', lk('read', 5, 30));
    expect(heldBy(t, 'A')).toEqual(['read 0-30']);
    await set(t, 'A', lk('read', 40, 50));
    expect(heldBy(t, 'A')).toEqual(['read 0-30', 'read 40-50']);
  });

  it('a lock of another type replaces the owner\'s own range where it falls', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 99));
    await set(t, 'A', lk('read', 40, 59));
    expect(heldBy(t, 'A')).toEqual(['write 0-39', 'read 40-59', 'write 60-99']);
    expect(await code(set(t, 'B', lk('read', 45, 50)))).toBe('OK');
    expect(await code(set(t, 'B', lk('read', 30, 45)))).toBe('EAGAIN');
    // An upgrade over its own read lock is the owner's business... until another reader is in the way.
    expect(await code(set(t, 'A', lk('write', 0, 99)))).toBe('EAGAIN');
    expect(heldBy(t, 'A')).toEqual(['write 0-39', 'read 40-59', 'write 60-99']);
  });

  it('ranges taken through different open files stay apart, so each goes with its own file', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('read', 0, 9), { fdKey: 'fd1' });
    await set(t, 'A', lk('read', 10, 19), { fdKey: 'fd2' });
    expect(heldBy(t, 'A')).toEqual(['read 0-9', 'read 10-19']);
    t.releaseFd('fd1');
    expect(heldBy(t, 'A')).toEqual(['read 10-19']);
  });

  it('an owner\'s unlock covers what it locked through any open file', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9), { fdKey: 'fd1' });
    await set(t, 'A', lk('unlock', 0, LOCK_TO_EOF), { fdKey: 'fd2' });
    expect(heldBy(t, 'A')).toEqual([]);
    expect(t.empty).toBe(true);
  });

  it('a lock to EOF covers the largest offsets', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 100, LOCK_TO_EOF));
    expect(await code(set(t, 'B', lk('write', 1e15, 1e15)))).toBe('EAGAIN');
    expect(await code(set(t, 'B', lk('write', LOCK_TO_EOF, LOCK_TO_EOF)))).toBe('EAGAIN');
    expect(await code(set(t, 'B', lk('write', 0, 99)))).toBe('OK');
    expect(files(t)[F1].held.find((h) => h.owner === 'A')?.end).toBe('EOF');
  });

  it('an unlock of nothing succeeds and leaves the table empty', async () => {
    const t = new LockTable();
    await expect(set(t, 'A', lk('unlock', 5, 9))).resolves.toEqual(lk('unlock', 5, 9));
    expect(t.empty).toBe(true);
  });
});

describe('conflicts and F_GETLK', () => {
  it('readers share, a writer excludes, and one owner never conflicts with itself', async () => {
    const t = new LockTable();
    expect(await code(set(t, 'A', lk('read', 0, 9)))).toBe('OK');
    expect(await code(set(t, 'B', lk('read', 5, 15)))).toBe('OK');
    expect(await code(set(t, 'C', lk('write', 9, 9)))).toBe('EAGAIN');
    expect(await code(set(t, 'C', lk('write', 16, 20)))).toBe('OK');
    expect(await code(set(t, 'C', lk('write', 16, 20)))).toBe('OK');
    expect(await code(set(t, 'C', lk('read', 18, 30)))).toBe('OK');
  });

  it('F_GETLK reports the first conflicting lock with its pid, or the request as unlocked', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('read', 50, 59, 4242));
    await set(t, 'B', lk('write', 10, 19, 77));
    expect(t.test(F1, 'posix', 'C', lk('write', 0, 100, 1))).toEqual(lk('write', 10, 19, 77));
    expect(t.test(F1, 'posix', 'C', lk('write', 40, 100, 1))).toEqual(lk('read', 50, 59, 4242));
    expect(t.test(F1, 'posix', 'C', lk('read', 40, 100, 1))).toEqual(lk('unlock', 40, 100, 1));
    // Its own locks are never in its way.
    expect(t.test(F1, 'posix', 'B', lk('write', 10, 19))).toEqual(lk('unlock', 10, 19));
    expect(t.test(F2, 'posix', 'C', lk('write'))).toEqual(lk('unlock'));
  });

  it('refuses malformed requests with EINVAL and changes nothing', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('read', 0, 9));
    const before = t.dump();
    for (const bad of [lk('write', 10, 5), lk('write', -1, 5), lk('write', 0, LOCK_TO_EOF + 2), lk('write', 0.5, 9), { ...lk('write'), type: 'bogus' } as unknown as Flock]) {
      expect(await code(set(t, 'B', bad))).toBe('EINVAL');
      expect(() => t.test(F1, 'posix', 'B', bad)).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    }
    expect(() => t.test(F1, 'posix', 'B', lk('unlock'))).toThrow(expect.objectContaining({ code: 'EINVAL' }));
    expect(await code(t.lock(F1, 'fcntl' as LockKind, 'B', lk('write'), { wait: false, fdKey: 'x' }))).toBe('EINVAL');
    expect(t.dump()).toEqual(before);
  });
});

describe('the waiting queue', () => {
  it('grants waiters in arrival order, each as soon as nothing is in its way', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 99));
    const order: string[] = [];
    const b = wait(t, 'B', lk('write', 0, 9), { log: order });
    const c = wait(t, 'C', lk('write', 5, 9), { log: order });
    const d = wait(t, 'D', lk('read', 50, 60), { log: order });
    expect(waitingOn(t)).toEqual(['B write 0-9', 'C write 5-9', 'D read 50-60']);
    await set(t, 'A', lk('unlock', 0, 99));
    // B came first and takes 0-9; C (behind B) keeps waiting; D, not in B's way, goes too.
    expect(heldBy(t, 'B')).toEqual(['write 0-9']);
    expect(heldBy(t, 'D')).toEqual(['read 50-60']);
    expect(waitingOn(t)).toEqual(['C write 5-9']);
    await flush();
    expect([b.state, c.state, d.state]).toEqual(['granted', 'pending', 'granted']);
    expect(b.value).toEqual(lk('write', 0, 9));
    await set(t, 'B', lk('unlock', 0, 9));
    await flush();
    expect(c.state).toBe('granted');
    expect(order).toEqual(['B', 'D', 'C']);
    expect(waitingOn(t)).toEqual([]);
  });

  it('a later reader is granted while an earlier writer still waits for another reader', async () => {
    const t = new LockTable();
    await set(t, 'R1', lk('read', 0, 4));
    await set(t, 'X', lk('write', 5, 9));
    const w = wait(t, 'W', lk('write', 0, 9));
    const r2 = wait(t, 'R2', lk('read', 5, 9));
    expect(waitingOn(t)).toEqual(['W write 0-9', 'R2 read 5-9']);
    await set(t, 'X', lk('unlock', 5, 9));
    await flush();
    expect([w.state, r2.state]).toEqual(['pending', 'granted']);
  });

  it('a downgrade wakes the readers it no longer excludes', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 99));
    const r = wait(t, 'B', lk('read', 0, 9));
    const w = wait(t, 'C', lk('write', 20, 29));
    await set(t, 'A', lk('read', 0, 99));
    await flush();
    expect([r.state, w.state]).toEqual(['granted', 'pending']);
    expect(heldBy(t, 'A')).toEqual(['read 0-99']);
  });

  it('a waiter whose grant downgrades its own lock lets in an earlier waiter at once', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9));
    await set(t, 'B', lk('write', 20, 29));
    const c = wait(t, 'C', lk('read', 20, 29));
    const b = wait(t, 'B', lk('read', 0, 29));
    await set(t, 'A', lk('unlock'));
    await flush();
    expect([b.state, c.state]).toEqual(['granted', 'granted']);
    expect(heldBy(t, 'B')).toEqual(['read 0-29']);
  });

  it('a waiter whose frame is interrupted gets EINTR and leaves the queue; the others stay', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write'));
    const frame = newFrame('B');
    const b = wait(t, 'B', lk('write', 0, 9), { frame });
    const c = wait(t, 'C', lk('write', 0, 9), { frame: newFrame('C') });
    frame.interrupt();
    await flush();
    expect(b.state).toBe('failed');
    expect(b.code).toBe('EINTR');
    expect(waitingOn(t)).toEqual(['C write 0-9']);
    await set(t, 'A', lk('unlock'));
    await flush();
    expect(c.state).toBe('granted');
    expect(heldBy(t, 'B')).toEqual([]);
  });

  it('an interrupt after the grant changes nothing', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write'));
    const frame = newFrame('B');
    const b = wait(t, 'B', lk('write', 0, 9), { frame });
    await set(t, 'A', lk('unlock'));
    frame.interrupt();
    await flush();
    expect(b.state).toBe('granted');
    expect(heldBy(t, 'B')).toEqual(['write 0-9']);
  });

  it('a request whose frame is already interrupted fails at once if it would wait, and is granted if it need not', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9));
    const frame = newFrame('B');
    frame.interrupt();
    const b = wait(t, 'B', lk('write', 0, 9), { frame });
    const free = wait(t, 'B', lk('write', 10, 19), { frame });
    await flush();
    expect([b.state, b.code, free.state]).toEqual(['failed', 'EINTR', 'granted']);
    expect(waitingOn(t)).toEqual([]);
  });
});

describe('deadlocks', () => {
  it('a POSIX waiter that would close a cycle of two owners gets EDEADLK; the other keeps waiting', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 0));
    await set(t, 'B', lk('write', 1, 1));
    const a = wait(t, 'A', lk('write', 1, 1));
    const b = wait(t, 'B', lk('write', 0, 0));
    await flush();
    expect([a.state, b.state, b.code]).toEqual(['pending', 'failed', 'EDEADLK']);
    await set(t, 'B', lk('unlock'));
    await flush();
    expect(a.state).toBe('granted');
  });

  it('finds cycles through several owners and files', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 0), { gfid: F1 });
    await set(t, 'C', lk('write', 5, 5), { gfid: F1 });
    await set(t, 'B', lk('write'), { gfid: F2 });
    // A waits for B (on F2), B for C (on F1): C asking for what A holds closes C -> A -> B -> C.
    const a = wait(t, 'A', lk('write', 0, 0), { gfid: F2 });
    const b = wait(t, 'B', lk('write', 5, 5), { gfid: F1 });
    const c = wait(t, 'C', lk('read', 0, 0), { gfid: F1 });
    await flush();
    expect([a.state, b.state, c.state, c.code]).toEqual(['pending', 'pending', 'failed', 'EDEADLK']);
    // D waiting at the end of that chain closes nothing.
    const d = wait(t, 'D', lk('write', 0, 0), { gfid: F1 });
    await flush();
    expect(d.state).toBe('pending');
  });

  it('two readers upgrading the same range: the second gets EDEADLK, the first the write lock once the second lets go', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('read', 0, 9));
    await set(t, 'B', lk('read', 0, 9));
    const a = wait(t, 'A', lk('write', 0, 9));
    const b = wait(t, 'B', lk('write', 0, 9));
    await flush();
    expect([a.state, b.state, b.code]).toEqual(['pending', 'failed', 'EDEADLK']);
    await set(t, 'B', lk('unlock', 0, 9));
    await flush();
    expect(a.state).toBe('granted');
    expect(heldBy(t, 'A')).toEqual(['write 0-9']);
  });

  it('a waiter behind a chain that does not come back to it just waits', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 0));
    await set(t, 'B', lk('write', 1, 1));
    const a = wait(t, 'A', lk('write', 1, 1));
    const c = wait(t, 'C', lk('write', 0, 0));
    await flush();
    expect([a.state, c.state]).toEqual(['pending', 'pending']);
  });
});

describe('flock locks', () => {
  const flock = { kind: 'flock' as const };

  it('shared locks share, an exclusive one excludes, the whole file whatever range is given', async () => {
    const t = new LockTable();
    expect(await code(set(t, 'f1', lk('read', 0, 0), flock))).toBe('OK');
    expect(await code(set(t, 'f2', lk('read', 500, 600), flock))).toBe('OK');
    expect(await code(set(t, 'f3', lk('write', 10_000, 10_000), flock))).toBe('EAGAIN');
    expect(heldBy(t, 'f2', F1, 'flock')).toEqual(['read 0-EOF']);
    expect(t.test(F1, 'flock', 'f3', lk('write', 7, 7))).toMatchObject({ type: 'read', start: 0, end: LOCK_TO_EOF });
  });

  it('a second flock by the same open file converts it', async () => {
    const t = new LockTable();
    await set(t, 'f1', lk('read'), flock);
    expect(await code(set(t, 'f1', lk('write'), flock))).toBe('OK');
    expect(heldBy(t, 'f1', F1, 'flock')).toEqual(['write 0-EOF']);
    expect(await code(set(t, 'f1', lk('read'), flock))).toBe('OK');
    expect(heldBy(t, 'f1', F1, 'flock')).toEqual(['read 0-EOF']);
    expect(await code(set(t, 'f2', lk('read'), flock))).toBe('OK');
  });

  it('a conversion that fails has dropped the old lock first (Linux)', async () => {
    const t = new LockTable();
    await set(t, 'f1', lk('read'), flock);
    await set(t, 'f2', lk('read'), flock);
    expect(await code(set(t, 'f1', lk('write'), flock))).toBe('EAGAIN');
    expect(heldBy(t, 'f1', F1, 'flock')).toEqual([]);
    expect(await code(set(t, 'f2', lk('write'), flock))).toBe('OK');
  });

  it('two shared holders upgrading at once do not deadlock: the first gets it when the second lets go of its shared lock', async () => {
    const t = new LockTable();
    await set(t, 'f1', lk('read'), flock);
    await set(t, 'f2', lk('read'), flock);
    const a = wait(t, 'f1', lk('write'), flock);
    const b = wait(t, 'f2', lk('write'), flock);
    await flush();
    expect([a.state, b.state]).toEqual(['granted', 'pending']);
    await set(t, 'f1', lk('unlock'), flock);
    await flush();
    expect(b.state).toBe('granted');
  });

  it('flock and POSIX locks never conflict, even of one owner name', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write'));
    expect(await code(set(t, 'B', lk('write'), flock))).toBe('OK');
    expect(await code(set(t, 'A', lk('write'), flock))).toBe('EAGAIN'); // B's flock, not A's POSIX lock, is in the way
    expect(t.test(F1, 'flock', 'C', lk('write'))).toMatchObject({ type: 'write' });
    expect(t.test(F1, 'posix', 'B', lk('write'))).toMatchObject({ type: 'write' });
    await set(t, 'B', lk('unlock'), flock);
    expect(t.test(F1, 'flock', 'C', lk('write'))).toEqual(lk('unlock'));
    expect(heldBy(t, 'A')).toEqual(['write 0-EOF']);
  });
});

describe('release paths', () => {
  it('releaseOwner drops that owner\'s POSIX locks on that file only, and wakes waiters', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9), { fdKey: 'fa1' });
    await set(t, 'A', lk('write', 20, 29), { fdKey: 'fa2' });
    await set(t, 'A', lk('write'), { gfid: F2 });
    await set(t, 'A', lk('write'), { kind: 'flock' });
    await set(t, 'B', lk('write', 50, 59));
    const c = wait(t, 'C', lk('write', 0, 29));
    t.releaseOwner(F1, 'A');
    await flush();
    expect(c.state).toBe('granted');
    expect(heldBy(t, 'A')).toEqual([]);
    expect(heldBy(t, 'A', F2)).toEqual(['write 0-EOF']);
    expect(heldBy(t, 'A', F1, 'flock')).toEqual(['write 0-EOF']);
    expect(heldBy(t, 'B')).toEqual(['write 50-59']);
  });

  it('releaseOwner leaves the owner\'s waiting requests waiting', async () => {
    const t = new LockTable();
    await set(t, 'B', lk('write'));
    const a = wait(t, 'A', lk('write', 0, 9));
    t.releaseOwner(F1, 'A');
    await flush();
    expect(a.state).toBe('pending');
    await set(t, 'B', lk('unlock'));
    await flush();
    expect(a.state).toBe('granted');
  });

  it('releaseFd drops the flock of that open file and every lock taken through it, ends its waiters with EBADF, and wakes others', async () => {
    const t = new LockTable();
    const fd = {};
    await set(t, 'f', lk('write'), { kind: 'flock', fdKey: fd });
    await set(t, 'A', lk('write', 0, 9), { fdKey: fd });
    await set(t, 'A', lk('write', 10, 19), { fdKey: 'other' });
    await set(t, 'Z', lk('write', 40, 49));
    const mine = wait(t, 'A', lk('write', 40, 49), { fdKey: fd });
    const other = wait(t, 'B', lk('write', 0, 9));
    const otherFlock = wait(t, 'g', lk('write'), { kind: 'flock' });
    t.releaseFd(fd);
    await flush();
    expect([mine.state, mine.code]).toEqual(['failed', 'EBADF']);
    expect([other.state, otherFlock.state]).toEqual(['granted', 'granted']);
    expect(heldBy(t, 'A')).toEqual(['write 10-19']);
    expect(heldBy(t, 'f', F1, 'flock')).toEqual([]);
  });

  it('releaseGroup drops every lock of the owners with that prefix, on every file, and ends their waiters', async () => {
    const t = new LockTable();
    await set(t, 'c1:A', lk('write', 0, 9));
    await set(t, 'c1:B', lk('read'), { gfid: F2 });
    await set(t, 'c1:fd7', lk('write'), { kind: 'flock', gfid: F2 });
    await set(t, 'c2:A', lk('write', 10, 19));
    const gone = wait(t, 'c1:C', lk('write', 10, 19));
    const w = wait(t, 'c2:B', lk('write'), { gfid: F2 });
    t.releaseGroup('c1:');
    await flush();
    expect([gone.state, gone.code]).toEqual(['failed', 'ENOTCONN']);
    expect(w.state).toBe('granted');
    expect(heldBy(t, 'c1:A')).toEqual([]);
    expect(heldBy(t, 'c1:fd7', F2, 'flock')).toEqual([]);
    expect(heldBy(t, 'c2:A')).toEqual(['write 10-19']);
    expect(() => t.releaseGroup('')).toThrow(/empty prefix/);
  });

  it('close ends every waiter with ENOTCONN, refuses later waits, and still serves what need not wait', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9));
    const b = wait(t, 'B', lk('write', 0, 9));
    t.close('going down');
    await flush();
    expect([b.state, b.code]).toEqual(['failed', 'ENOTCONN']);
    const c = wait(t, 'C', lk('write', 0, 9));
    await flush();
    expect([c.state, c.code]).toEqual(['failed', 'ENOTCONN']);
    expect(await code(set(t, 'C', lk('write', 10, 19)))).toBe('OK');
    expect(await code(set(t, 'A', lk('unlock')))).toBe('OK');
  });

  it('leaves nothing behind once every lock is gone, and releases on an empty table are no-ops', async () => {
    const t = new LockTable();
    t.releaseFd({});
    t.releaseOwner(F1, 'A');
    t.releaseGroup('c1:');
    expect(t.empty).toBe(true);
    expect(t.dump()).toEqual({ held: 0, waiting: 0, files: {} });
    await set(t, 'A', lk('write', 0, 9));
    await set(t, 'B', lk('read'), { kind: 'flock' });
    const c = wait(t, 'C', lk('write', 0, 9), { frame: newFrame('C') });
    expect(t.empty).toBe(false);
    await set(t, 'A', lk('unlock'));
    await flush();
    expect(c.state).toBe('granted');
    await set(t, 'C', lk('unlock'));
    t.releaseFd('fd-B');
    expect(t.empty).toBe(true);
  });
});

describe('statedump', () => {
  it('lists held and waiting locks per file with owner, kind, range and pid', async () => {
    const t = new LockTable();
    await set(t, 'A', lk('write', 0, 9, 100));
    const w = wait(t, 'B', lk('read', 5, LOCK_TO_EOF, 200));
    expect(t.dump()).toEqual({
      held: 1,
      waiting: 1,
      files: {
        [F1]: {
          held: [{ kind: 'posix', owner: 'A', type: 'write', start: 0, end: 9, pid: 100 }],
          waiting: [{ kind: 'posix', owner: 'B', type: 'read', start: 5, end: 'EOF', pid: 200, waitingMs: expect.any(Number) }],
        },
      },
    });
    t.close('test over');
    await flush();
    expect(w.state).toBe('failed');
  });
});
