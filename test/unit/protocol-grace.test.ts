// The brick's grace period (protocol/server grace-timeout): a client whose connection breaks
// without a goodbye keeps its open files, and the POSIX locks they carry, for the grace
// period; its next connection continues them (reopened by openId), so nobody else takes its
// locks in between. Past the grace period they go, and the client's fd that held locks fails
// with EIO instead of pretending it still holds them. Time is a ManualClock: the grace period
// ends exactly when a test says so.
import { constants } from 'fs';
import { v4 as uuidv4 } from 'uuid';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { Flock, ROOT_CALLER } from '../../src/core/types';
import { Backoff } from '../../src/rpc/backoff';
import serverDef, { Server } from '../../xlators/protocol/server';
import { freePort, lockingBrickVolfile } from '../helpers/brick';
import { ManualClock } from '../helpers/clock';
import { cleanupGraphs, errCode, tempDir, within } from '../helpers/graphs';
import { waitFor as until } from '../helpers/mount';
import { NetGraph, startBrickGraph, startClientGraph, status, stopNetGraphs } from '../helpers/protocol';

const { O_RDWR } = constants;
const GRACE_S = 10;

afterEach(async () => {
  await stopNetGraphs();
  await cleanupGraphs();
});

interface Departed {
  identity: string;
  fds: number;
  continued: number;
}

async function brick(grace = GRACE_S): Promise<{ b: NetGraph; port: number; clock: ManualClock; departed: () => Departed[] }> {
  const clock = new ManualClock();
  const registry = new Registry();
  registry.register(defineTranslator({ ...serverDef, create: (init) => new Server(init, clock) }) as unknown as TranslatorDef);
  const port = await freePort();
  const b = await startBrickGraph(lockingBrickVolfile(tempDir('xlstack-grace-'), port, `    option grace-timeout ${grace}\n`), registry);
  const departed = () => (b.graph.xlators.get('brick-server')!.dump() as { departed: Departed[] }).departed;
  return { b, port, clock, departed };
}

/** A client that is `who` to the brick (its process-uuid), reconnecting every 10 ms. */
async function client(port: number, who: string): Promise<Graph> {
  const c = await startClientGraph(port, { volume: 'brick-locks', extra: `    option process-uuid ${who}\n`, deps: { backoff: new Backoff({ initialMs: 10, maxMs: 10, jitter: 0 }) } });
  expect(c.started).toBe('up');
  return c.graph;
}

const frame = (g: Graph, op: string, lkOwner: string) => g.frame(op, { caller: ROOT_CALLER, lkOwner });
const writeLock = (type: Flock['type'] = 'write'): Flock => ({ type, start: 0, end: 99, pid: 7 });

async function create(g: Graph, name: string): Promise<{ fd: Fd; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, O_RDWR, false);
  await within(g.top.create(frame(g, 'create', ''), { path: `/${name}`, parent: g.itable.root, name, inode }, 0o644, fd));
  return { fd, inode };
}

async function open(g: Graph, gfid: string): Promise<Fd> {
  const inode = g.itable.get(gfid);
  const fd = g.newFd(inode, O_RDWR, false);
  await within(g.top.open(frame(g, 'open', ''), { path: `<gfid:${gfid}>`, gfid, inode }, fd));
  return fd;
}

const lk = (g: Graph, fd: Fd, owner: string, lock: Flock) => errCode(g.top.lk(frame(g, 'lk', owner), fd, 'set', lock, 'posix'));
const write = (g: Graph, fd: Fd, data: string) => errCode(g.top.write(frame(g, 'write', ''), fd, Buffer.from(data), 0));

/** The network fails under a client (no goodbye). */
function dropConnection(g: Graph): void {
  const remote = g.xlators.get('remote') as unknown as { conn: { current?: { socket: { destroy(): void } } } };
  remote.conn.current!.socket.destroy();
}

/** A brick, a client ('holder') holding a write lock on a file, another ('other') with the file open. */
async function lockHeld(grace = GRACE_S) {
  const brickParts = await brick(grace);
  const holder = await client(brickParts.port, 'holder');
  const other = await client(brickParts.port, 'other');
  const { fd, inode } = await create(holder, 'f');
  expect(await lk(holder, fd, 'h', writeLock())).toBe('OK');
  return { ...brickParts, holder, other, fd, theirs: await open(other, inode.gfid) };
}

test('a lock holder whose connection breaks keeps its lock through the grace period and goes on with it when it reconnects', async () => {
  const { clock, departed, holder, other, fd, theirs } = await lockHeld();
  expect(await lk(other, theirs, 'o', writeLock())).toBe('EAGAIN');

  dropConnection(holder);
  await until(() => departed().length === 1, 5000, 'the brick to keep the departed client’s open file');
  expect(departed()).toEqual([{ identity: 'xlstack-test/holder', fds: 1, continued: 0 }]);
  // Nobody can take it in between.
  expect(await lk(other, theirs, 'o', writeLock())).toBe('EAGAIN');

  // Back: its fd is reopened by openId, continues the open file, and the lock is still its own.
  await within(status(holder, 'up'));
  expect(await write(holder, fd, 'still mine')).toBe('OK');
  expect(departed()).toEqual([{ identity: 'xlstack-test/holder', fds: 1, continued: 1 }]);
  expect(await lk(other, theirs, 'o', writeLock())).toBe('EAGAIN');

  // The grace period ends: the old connection's fd goes, the lock stays with the new one.
  clock.advance(GRACE_S * 1000);
  expect(departed()).toEqual([]);
  expect(await lk(other, theirs, 'o', writeLock())).toBe('EAGAIN');

  expect(await lk(holder, fd, 'h', writeLock('unlock'))).toBe('OK');
  expect(await lk(other, theirs, 'o', writeLock())).toBe('OK');
});

test('each departure has its whole grace period: a holder that comes back and leaves again keeps its lock past the first one', async () => {
  const { b, clock, departed, holder, other, fd, theirs } = await lockHeld();
  const departures = () => b.log().split('left; keeps').length - 1;

  dropConnection(holder);
  await until(() => departed().length === 1, 5000, 'the brick to keep the departed client’s open file');
  clock.advance((GRACE_S / 2) * 1000);
  await within(status(holder, 'up'));
  expect(await write(holder, fd, 'back')).toBe('OK');
  dropConnection(holder);
  await until(() => departures() === 2, 5000, 'the brick to see the second departure');
  // Past the first departure's grace period, within the second's.
  clock.advance((GRACE_S / 2 + 1) * 1000);
  expect(departed()).toHaveLength(1);
  expect(await lk(other, theirs, 'o', writeLock())).toBe('EAGAIN');
  clock.advance(GRACE_S * 1000);
  expect(departed()).toEqual([]);
  expect(await lk(other, theirs, 'o', writeLock())).toBe('OK');
});

test('a holder that comes back after the grace period: its lock went to another, and its fd fails with EIO (never a silent loss)', async () => {
  const { clock, departed, holder, other, fd, theirs } = await lockHeld();

  dropConnection(holder);
  await until(() => departed().length === 1, 5000, 'the brick to keep the departed client’s open file');
  clock.advance(GRACE_S * 1000);
  expect(departed()).toEqual([]);
  expect(await lk(other, theirs, 'o', writeLock())).toBe('OK');

  await within(status(holder, 'up'));
  expect(await write(holder, fd, 'lost')).toBe('EIO');
  expect(await write(holder, fd, 'lost')).toBe('EIO');
});

test('a client that says goodbye, or any client with grace-timeout 0, leaves nothing behind: its locks go at once', async () => {
  for (const grace of [GRACE_S, 0]) {
    const { departed, b, holder, other, theirs } = await lockHeld(grace);
    if (grace) await within(holder.stop(5000));
    else dropConnection(holder);
    await until(() => b.graph.fds.size === 1, 5000, 'the brick to release the holder’s fd');
    expect(departed()).toEqual([]);
    expect(await lk(other, theirs, 'o', writeLock())).toBe('OK');
  }
});
