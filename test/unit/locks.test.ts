// features/locks in in-process graphs over a real storage/posix: lk answered from its lock
// table, flush and release dropping what they must, waiters granted and interrupted,
// statedump; and on a brick, under protocol/server, a client whose connection ends loses
// its locks. A debug/gate under the translator shows what reaches storage. Waits are
// deterministic (the translator grants synchronously; setImmediate rounds let replies
// land) and bounded (`within`).
import * as fs from 'fs';
import * as path from 'path';
import type { Fd } from '../../src/core/fd';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { parseVolfile } from '../../src/core/volfile';
import { Flock, LOCK_TO_EOF, LockCmd, LockKind, ROOT_CALLER } from '../../src/core/types';
import type { Gate } from '../../xlators/debug/gate';
import type { Locks } from '../../xlators/features/locks';
import { freePort } from '../helpers/brick';
import { waitFor } from '../helpers/mount';
import { flush } from '../helpers/core';
import { cleanupGraphs, errCode, lookupInode, startGraph, stopGraph, tempDir, within } from '../helpers/graphs';

const { O_RDWR, O_RDONLY, O_WRONLY } = fs.constants;

afterEach(cleanupGraphs);

const lk = (type: Flock['type'], start = 0, end = LOCK_TO_EOF, pid = 0): Flock => ({ type, start, end, pid });

/** storage/posix, a gate (to see what reaches storage), features/locks on top. */
const localVolfile = (dir: string) => `volume p
 type storage/posix
 option directory ${dir}
end-volume
volume g
 type debug/gate
 subvolumes p
end-volume
volume l
 type features/locks
 subvolumes g
end-volume
`;

interface Setup {
  readonly g: Graph;
  readonly dir: string;
  readonly file: Inode;
  readonly gate: Gate;
  readonly locks: Locks;
}

async function setup(): Promise<Setup> {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'f'), 'some data');
  const g = await startGraph(dir, 1, localVolfile(dir));
  return { g, dir, file: await lookupInode(g, g.itable.root, 'f'), gate: g.xlators.get('g') as Gate, locks: g.xlators.get('l') as unknown as Locks };
}

async function open(g: Graph, inode: Inode, flags = O_RDWR): Promise<Fd> {
  const fd = g.newFd(inode, flags, false);
  await g.top.open(g.frame('open'), { inode }, fd);
  return fd;
}

const frameOf = (g: Graph, owner: string, pid = 0): Frame => g.frame('lk', { caller: { ...ROOT_CALLER, pid }, lkOwner: owner });

/** One lk through the graph, in its own frame. */
async function call(g: Graph, fd: Fd, owner: string, cmd: LockCmd, lock: Flock, kind: LockKind = 'posix', frame = frameOf(g, owner)): Promise<Flock> {
  try {
    return await g.top.lk(frame, fd, cmd, lock, kind);
  } finally {
    frame.done();
  }
}

async function flushFd(g: Graph, fd: Fd, owner: string): Promise<void> {
  const frame = frameOf(g, owner);
  try {
    await g.top.flush(frame, fd);
  } finally {
    frame.done();
  }
}

/** A promise's outcome, readable once its callbacks have run. */
function track<T>(p: Promise<T>): { state: 'pending' | 'granted' | 'failed'; code?: string } {
  const t: { state: 'pending' | 'granted' | 'failed'; code?: string } = { state: 'pending' };
  p.then(
    () => (t.state = 'granted'),
    (e: { code?: string }) => Object.assign(t, { state: 'failed', code: e.code }),
  );
  return t;
}

interface DumpedLock {
  kind: string;
  owner: string;
  type: string;
  start: number;
  end: number | 'EOF';
  pid: number;
}
/** The locks translator's part of the graph's statedump. */
function dumped(g: Graph, name = 'l'): { held: number; waiting: number; files: Record<string, { held: DumpedLock[]; waiting: DumpedLock[] }> } {
  const xl = (g.dump().xlators as { name: string }[]).find((x) => x.name === name);
  return xl as unknown as ReturnType<typeof dumped>;
}

describe('features/locks over storage/posix', () => {
  it('two owners through two fds: the second is refused, F_GETLK shows the first with its pid, nothing reaches storage', async () => {
    const { g, file, gate } = await setup();
    const fd1 = await open(g, file);
    const fd2 = await open(g, file);
    expect(await call(g, fd1, 'A', 'set', lk('write', 0, 9, 111))).toEqual(lk('write', 0, 9, 111));
    expect(await errCode(call(g, fd2, 'B', 'set', lk('read', 5, 5, 222)))).toBe('EAGAIN');
    expect(await call(g, fd2, 'B', 'get', lk('read', 5, 5, 222))).toEqual(lk('write', 0, 9, 111));
    expect(await call(g, fd2, 'B', 'get', lk('read', 10, 20, 222))).toEqual(lk('unlock', 10, 20, 222));
    expect(await errCode(call(g, fd2, 'B', 'set', lk('write', 10, 20)))).toBe('OK');
    // One owner through another fd of its own: no conflict with itself.
    expect(await errCode(call(g, fd2, 'A', 'set', lk('read', 0, 9)))).toBe('OK');
    expect(await call(g, fd2, 'B', 'get', lk('write', 0, 9))).toEqual(lk('read', 0, 9));
    expect(gate.calls.get('lk')).toBeUndefined();
    await fd1.unref();
    await fd2.unref();
  });

  it('other fops pass through to storage', async () => {
    const { g, file, gate, dir } = await setup();
    const fd = await open(g, file);
    await call(g, fd, 'A', 'set', lk('write'));
    expect(await g.top.write(g.frame('write'), fd, Buffer.from('locked'), 0)).toBe(6);
    expect((await g.top.read(g.frame('read'), fd, 100, 0)).toString()).toBe('lockedata');
    expect(gate.calls.get('write')).toBe(1);
    expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).toBe('lockedata');
    await fd.unref();
  });

  it('flush drops the POSIX locks of its owner on that file only, and still reaches storage', async () => {
    const { g, file, gate, dir } = await setup();
    fs.writeFileSync(path.join(dir, 'f2'), '');
    const other = await lookupInode(g, g.itable.root, 'f2');
    const fdA = await open(g, file);
    const fdB = await open(g, file);
    const fdA2 = await open(g, other);
    await call(g, fdA, 'A', 'set', lk('write', 0, 9));
    await call(g, fdA, 'A', 'set', lk('write'), 'flock');
    await call(g, fdB, 'B', 'set', lk('write', 20, 29));
    await call(g, fdA2, 'A', 'set', lk('write'));
    await flushFd(g, fdB, 'A'); // A closes some descriptor of the file: all of A's POSIX locks on it go
    expect(gate.calls.get('flush')).toBe(1);
    const fdC = await open(g, file);
    expect(await errCode(call(g, fdC, 'C', 'set', lk('write', 0, 9)))).toBe('OK');
    expect(await errCode(call(g, fdC, 'C', 'set', lk('write', 20, 29)))).toBe('EAGAIN');
    expect(await errCode(call(g, fdC, 'C', 'set', lk('read'), 'flock'))).toBe('EAGAIN'); // flush leaves flock alone
    const fdC2 = await open(g, other);
    expect(await errCode(call(g, fdC2, 'C', 'set', lk('read')))).toBe('EAGAIN'); // and other files alone
    for (const fd of [fdA, fdB, fdA2, fdC, fdC2]) await fd.unref();
  });

  it('release of an open file drops its flock lock; a flush does not', async () => {
    const { g, file } = await setup();
    const fd1 = await open(g, file, O_RDONLY);
    const fd2 = await open(g, file, O_RDONLY);
    await call(g, fd1, 'A', 'set', lk('write'), 'flock');
    expect(await errCode(call(g, fd2, 'A', 'set', lk('read'), 'flock'))).toBe('EAGAIN'); // the open file owns a flock, not the process
    await flushFd(g, fd1, 'A');
    expect(await errCode(call(g, fd2, 'A', 'set', lk('read'), 'flock'))).toBe('EAGAIN');
    await fd1.unref();
    expect(await errCode(call(g, fd2, 'A', 'set', lk('read'), 'flock'))).toBe('OK');
    await fd2.unref();
    expect(dumped(g).held).toBe(0);
  });

  it('a blocked waiter is granted when the holder unlocks; statedump shows it held, then waiting, then held', async () => {
    const { g, file } = await setup();
    const fd1 = await open(g, file);
    const fd2 = await open(g, file);
    await call(g, fd1, 'A', 'set', lk('write', 0, 99, 10));
    const frames = g.dump().pendingFrames as number;
    const w = track(call(g, fd2, 'B', 'wait', lk('write', 50, 59, 20)));
    await flush();
    expect(w.state).toBe('pending');
    const d = dumped(g);
    expect([d.held, d.waiting]).toEqual([1, 1]);
    expect(d.files[file.gfid]).toEqual({
      held: [{ kind: 'posix', owner: 'A', type: 'write', start: 0, end: 99, pid: 10 }],
      waiting: [{ kind: 'posix', owner: 'B', type: 'write', start: 50, end: 59, pid: 20, waitingMs: expect.any(Number) }],
    });
    expect(g.dump().pendingFrames).toBe(frames + 1); // the waiting lk is a frame in flight
    await call(g, fd1, 'A', 'set', lk('unlock', 40, 69));
    await flush();
    expect(w.state).toBe('granted');
    expect(dumped(g).files[file.gfid].held.map((h) => `${h.owner} ${h.start}-${h.end}`)).toEqual(['A 0-39', 'B 50-59', 'A 70-99']);
    expect(g.dump().pendingFrames).toBe(frames);
    await fd1.unref();
    await fd2.unref();
  });

  it('an interrupted waiter gets EINTR and leaves the queue', async () => {
    const { g, file } = await setup();
    const fd1 = await open(g, file);
    const fd2 = await open(g, file);
    await call(g, fd1, 'A', 'set', lk('write'));
    const frame = frameOf(g, 'B');
    const w = track(call(g, fd2, 'B', 'wait', lk('read'), 'posix', frame));
    await flush();
    expect(dumped(g).waiting).toBe(1);
    frame.interrupt();
    await flush();
    expect(w).toEqual({ state: 'failed', code: 'EINTR' });
    expect(dumped(g).waiting).toBe(0);
    await call(g, fd1, 'A', 'set', lk('unlock'));
    expect(dumped(g).held).toBe(0);
    await fd1.unref();
    await fd2.unref();
  });

  it('requests without a lock owner lock for their open file', async () => {
    const { g, file } = await setup();
    const fd1 = await open(g, file);
    const fd2 = await open(g, file);
    await call(g, fd1, '', 'set', lk('write', 0, 9));
    expect(await errCode(call(g, fd2, '', 'set', lk('write', 0, 9)))).toBe('EAGAIN');
    expect(await errCode(call(g, fd1, '', 'set', lk('write', 0, 19)))).toBe('OK');
    await flushFd(g, fd1, '');
    expect(await errCode(call(g, fd2, '', 'set', lk('write', 0, 9)))).toBe('OK');
    await fd1.unref();
    await fd2.unref();
  });

  it('a lock the fd\'s access mode does not allow is EBADF; bad commands and ranges are EINVAL; nothing is taken', async () => {
    const { g, file } = await setup();
    const ro = await open(g, file, O_RDONLY);
    const wo = await open(g, file, O_WRONLY);
    expect(await errCode(call(g, ro, 'A', 'set', lk('write')))).toBe('EBADF');
    expect(await errCode(call(g, wo, 'A', 'wait', lk('read')))).toBe('EBADF');
    expect(await errCode(call(g, ro, 'A', 'set', lk('read')))).toBe('OK');
    expect(await errCode(call(g, wo, 'A', 'set', lk('read'), 'flock'))).toBe('OK'); // flock: any access mode
    expect(await errCode(call(g, wo, 'B', 'set', lk('write', 9, 3)))).toBe('EINVAL');
    expect(await errCode(call(g, wo, 'B', 'bogus' as LockCmd, lk('write')))).toBe('EINVAL');
    expect(dumped(g).held).toBe(2);
    await ro.unref();
    await wo.unref();
  });

  it('the graph going down ends waiting requests with ENOTCONN', async () => {
    const { g, file } = await setup();
    const fd1 = await open(g, file);
    const fd2 = await open(g, file);
    await call(g, fd1, 'A', 'set', lk('write'));
    const w = track(call(g, fd2, 'B', 'wait', lk('write')));
    await flush();
    expect(w.state).toBe('pending');
    await stopGraph(g);
    expect(w).toEqual({ state: 'failed', code: 'ENOTCONN' });
  });
});

describe('features/locks on a brick, under protocol/server', () => {
  /** posix -> locks -> server on `port`, as volfiles/brick.vol stacks them. */
  const brick = (dir: string, port: number) => `volume brick-posix
 type storage/posix
 option directory ${dir}
end-volume
volume brick-locks
 type features/locks
 subvolumes brick-posix
end-volume
volume brick-server
 type protocol/server
 option listen-port ${port}
 option auth.insecure-open on
 subvolumes brick-locks
end-volume
`;
  const client = (port: number) => `volume remote
 type protocol/client
 option remote-port ${port}
 option remote-subvolume brick-locks
 option ping-timeout 2
 option frame-timeout 20
end-volume
`;

  it('a client whose connection ends loses its locks (its fds are released), which grants the other client\'s waiter', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'f'), 'shared');
    const port = await freePort();
    const b = await startGraph(dir, 10, brick(dir, port));
    const c1 = await startGraph(dir, 11, client(port));
    const c2 = await startGraph(dir, 12, client(port));
    const fd1 = await open(c1, await lookupInode(c1, c1.itable.root, 'f'));
    const fd2 = await open(c2, await lookupInode(c2, c2.itable.root, 'f'));
    await call(c1, fd1, 'A', 'set', lk('write', 0, 9));
    await call(c1, fd1, 'A', 'set', lk('read'), 'flock');
    expect(await errCode(call(c2, fd2, 'B', 'set', lk('write', 5, 5)))).toBe('EAGAIN');
    const posixWaiter = call(c2, fd2, 'B', 'wait', lk('write', 5, 5));
    const fd3 = await open(c2, fd2.inode);
    expect(await errCode(call(c2, fd3, 'B', 'set', lk('write'), 'flock'))).toBe('EAGAIN');
    // The waiter is at the brick before client 1 goes.
    const gfid = fd1.inode.gfid;
    const brickLocks = () => dumped(b, 'brick-locks').files[gfid];
    await waitFor(() => (brickLocks()?.waiting.length ?? 0) > 0, 10_000, 'the waiting lock to reach the brick');
    await stopGraph(c1); // its connection ends: the server releases its fds without any flush or unlock
    await expect(within(posixWaiter)).resolves.toEqual(lk('write', 5, 5));
    expect(await errCode(call(c2, fd3, 'B', 'set', lk('write'), 'flock'))).toBe('OK');
    expect(brickLocks().held.map((h) => `${h.kind} ${h.type}`).sort()).toEqual(['flock write', 'posix write']);
    await fd2.unref();
    await fd3.unref();
  });
});

describe('the shipped volfiles', () => {
  /** The types from the top of a volfile down its first subvolumes. */
  function stack(file: string): string[] {
    const vf = parseVolfile(fs.readFileSync(path.resolve(__dirname, '../../../volfiles', file), 'utf8'), file);
    const byName = new Map(vf.volumes.map((v) => [v.name, v]));
    const types: string[] = [];
    for (let v = vf.volumes[vf.volumes.length - 1]; v; v = byName.get(v.subvolumes[0]?.name)!) types.push(v.type);
    return types;
  }

  it('stack features/locks: under the trace layer locally, under the server (above access control) on a brick', () => {
    expect(stack('default.vol')).toEqual(['debug/trace', 'features/locks', 'storage/posix']);
    expect(stack('brick.vol')).toEqual(['protocol/server', 'features/locks', 'features/upcall', 'features/access-control', 'storage/posix']);
  });
});
