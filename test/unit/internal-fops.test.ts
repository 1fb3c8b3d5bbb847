// The fops cluster translators are built on: internal inode locks (inodelk) and entry locks
// (entrylk) in named domains, kept by features/locks, and atomic operations on internal
// xattrs (xattrop), kept by storage/posix where no client can see them; all of them over
// the wire, where a client that goes away loses its internal locks.
import * as fs from 'fs';
import * as path from 'path';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Flock, LOCK_TO_EOF } from '../../src/core/types';
import { freePort, serverLogin } from '../helpers/brick';
import { cleanupGraphs, errCode, lookupInode, startGraph, tempDir, within } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { startBrickGraph, startClientGraph, stopNetGraphs } from '../helpers/protocol';

afterEach(async () => {
  await stopNetGraphs();
  await cleanupGraphs();
});

const local = (dir: string) => `volume p\n type storage/posix\n option directory ${dir}\nend-volume\nvolume l\n type features/locks\n subvolumes p\nend-volume\n`;
const whole = (type: Flock['type']): Flock => ({ type, start: 0, end: LOCK_TO_EOF, pid: 0 });
const as = (g: Graph, owner: string, op = 'x'): Frame => g.frame(op, { caller: { uid: 0, gid: 0, groups: [], pid: 0 }, lkOwner: owner });

async function setup(): Promise<{ g: Graph; dir: string; file: Inode; root: Inode }> {
  const dir = tempDir();
  fs.writeFileSync(path.join(dir, 'f'), 'data');
  const g = await startGraph(dir, 1, local(dir));
  return { g, dir, file: await lookupInode(g, g.itable.root, 'f'), root: g.itable.root };
}

describe('inodelk: internal byte-range locks in named domains', () => {
  test('owners exclude each other within a domain, not across domains, and not with fcntl locks', async () => {
    const { g, file } = await setup();
    await g.top.inodelk(as(g, 'A'), 'afr.data', { inode: file }, 'set', whole('write'));
    expect(await errCode(g.top.inodelk(as(g, 'B'), 'afr.data', { inode: file }, 'set', whole('write')))).toBe('EAGAIN');
    expect(await g.top.inodelk(as(g, 'B'), 'afr.data', { inode: file }, 'get', whole('write'))).toMatchObject({ type: 'write' });
    await g.top.inodelk(as(g, 'B'), 'afr.metadata', { inode: file }, 'set', whole('write'));
    const fd = g.newFd(file, fs.constants.O_RDWR, false);
    await g.top.open(as(g, 'C'), { inode: file }, fd);
    await g.top.lk(as(g, 'C'), fd, 'set', whole('write'), 'posix');
    await fd.unref();
  });

  test('a waiter is granted on unlock, in order; an interrupted one leaves with EINTR', async () => {
    const { g, file } = await setup();
    await g.top.inodelk(as(g, 'A'), 'd', { inode: file }, 'set', whole('write'));
    const interrupted = as(g, 'B');
    const b = errCode(g.top.inodelk(interrupted, 'd', { inode: file }, 'wait', whole('write')));
    const c = g.top.inodelk(as(g, 'C'), 'd', { inode: file }, 'wait', whole('write'));
    interrupted.interrupt();
    expect(await within(b)).toBe('EINTR');
    await g.top.inodelk(as(g, 'A'), 'd', { inode: file }, 'set', whole('unlock'));
    await expect(within(c)).resolves.toMatchObject({ type: 'write' });
  });
});

describe('entrylk: internal locks on names', () => {
  test('a name excludes writers of that name only; the whole directory excludes every name', async () => {
    const { g, root } = await setup();
    const dir = { inode: root };
    await g.top.entrylk(as(g, 'A'), 'dht', dir, 'x', 'trylock', 'write');
    await g.top.entrylk(as(g, 'B'), 'dht', dir, 'y', 'trylock', 'write');
    expect(await errCode(g.top.entrylk(as(g, 'B'), 'dht', dir, 'x', 'trylock', 'write'))).toBe('EAGAIN');
    expect(await errCode(g.top.entrylk(as(g, 'C'), 'dht', dir, undefined, 'trylock', 'read'))).toBe('EAGAIN');
    await g.top.entrylk(as(g, 'C'), 'other-domain', dir, undefined, 'trylock', 'write');
    const waiting = g.top.entrylk(as(g, 'C'), 'dht', dir, undefined, 'lock', 'write');
    await g.top.entrylk(as(g, 'A'), 'dht', dir, 'x', 'unlock', 'write');
    await g.top.entrylk(as(g, 'B'), 'dht', dir, 'y', 'unlock', 'write');
    await within(waiting);
    expect((g.xlators.get('l')!.dump().entrylks as { held: unknown[] }[]).flatMap((d) => d.held)).toEqual(
      expect.arrayContaining([{ owner: 'C', name: undefined, type: 'write' }]),
    );
  });

  test('readers share a name', async () => {
    const { g, root } = await setup();
    await g.top.entrylk(as(g, 'A'), 'd', { inode: root }, 'n', 'trylock', 'read');
    await g.top.entrylk(as(g, 'B'), 'd', { inode: root }, 'n', 'trylock', 'read');
    expect(await errCode(g.top.entrylk(as(g, 'C'), 'd', { inode: root }, 'n', 'trylock', 'write'))).toBe('EAGAIN');
  });
});

describe('xattrop: internal xattrs', () => {
  test('add sums int32 arrays atomically, get reads them, set replaces or removes; clients never see them', async () => {
    const { g, file, dir } = await setup();
    const key = 'trusted.xlstack.afr.client-1';
    const v = (...n: number[]) => Buffer.concat(n.map((x) => Buffer.from(Int32Array.of(x).buffer).reverse()));
    expect(await g.top.xattrop(as(g, ''), { inode: file }, 'get', { [key]: Buffer.alloc(0) })).toEqual({ [key]: Buffer.alloc(0) });
    await Promise.all([1, 2, 3].map(() => g.top.xattrop(as(g, ''), { inode: file }, 'add', { [key]: v(1, 0, 2) })));
    expect((await g.top.xattrop(as(g, ''), { inode: file }, 'add', { [key]: v(-1, 0, 0) }))[key]).toEqual(v(2, 0, 6));
    expect(await g.top.listxattr(as(g, ''), { inode: file })).not.toContain(key);
    expect(await errCode(g.top.getxattr(as(g, ''), { inode: file }, key))).toBe('ENODATA');
    expect(await errCode(g.top.setxattr(as(g, ''), { inode: file }, key, v(0), 0))).toBe('EPERM');
    expect(await errCode(g.top.xattrop(as(g, ''), { inode: file }, 'add', { [key]: v(1) }))).toBe('EINVAL'); // another length
    expect(await errCode(g.top.xattrop(as(g, ''), { inode: file }, 'set', { 'user.x': v(1) }))).toBe('EPERM');
    expect(await errCode(g.top.xattrop(as(g, ''), { inode: file }, 'set', { 'trusted.gfid': v(1) }))).toBe('EPERM');
    await g.top.xattrop(as(g, ''), { inode: file }, 'set', { [key]: Buffer.alloc(0) });
    expect((await g.top.xattrop(as(g, ''), { inode: file }, 'get', { [key]: Buffer.alloc(0) }))[key]).toEqual(Buffer.alloc(0));
    expect(fs.existsSync(path.join(dir, 'f'))).toBe(true);
  });
});

describe('over the wire', () => {
  const brickText = (dir: string, port: number) => `${local(dir)}volume brick-server
 type protocol/server
 option listen-port ${port}
${serverLogin('l')} subvolumes l
end-volume
`;

  test('internal locks and xattrops reach the brick; a client that goes away loses its internal locks', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'f'), 'data');
    const port = await freePort();
    const b = await startBrickGraph(brickText(dir, port));
    // Two client processes, as the brick sees them.
    const c1 = await startClientGraph(port, { volume: 'l', extra: '    option process-uuid client-one\n' });
    const c2 = await startClientGraph(port, { volume: 'l', extra: '    option process-uuid client-two\n' });
    const f1 = await lookupInode(c1.graph, c1.graph.itable.root, 'f');
    const f2 = await lookupInode(c2.graph, c2.graph.itable.root, 'f');
    await c1.graph.top.inodelk(as(c1.graph, 'A'), 'afr', { inode: f1 }, 'set', whole('write'));
    await c1.graph.top.entrylk(as(c1.graph, 'A'), 'afr', { inode: c1.graph.itable.root }, 'f', 'trylock', 'write');
    expect(await errCode(c2.graph.top.inodelk(as(c2.graph, 'B'), 'afr', { inode: f2 }, 'set', whole('write')))).toBe('EAGAIN');
    const key = 'trusted.xlstack.test';
    const sum = await c2.graph.top.xattrop(as(c2.graph, 'B'), { inode: f2 }, 'add', { [key]: Buffer.from([0, 0, 0, 5]) });
    expect(sum[key]).toEqual(Buffer.from([0, 0, 0, 5]));
    const waiting = c2.graph.top.inodelk(as(c2.graph, 'B'), 'afr', { inode: f2 }, 'wait', whole('write'));
    const locks = () => b.graph.xlators.get('l')!.dump() as { inodelks: Record<string, { waiting: number }> };
    await waitFor(() => (locks().inodelks.afr?.waiting ?? 0) > 0, 10_000, 'the wait to reach the brick');
    // Client 1 goes: its internal locks go with it.
    await stopNetGraphs([c1.graph]);
    await expect(within(waiting)).resolves.toMatchObject({ type: 'write' });
    await c2.graph.top.entrylk(as(c2.graph, 'B'), 'afr', { inode: c2.graph.itable.root }, 'f', 'trylock', 'write');
  });
});

describe('a client reconnected to its brick', () => {
  const brickText = (dir: string, port: number) => `${local(dir)}volume brick-server
 type protocol/server
 option listen-port ${port}
${serverLogin('l')} subvolumes l
end-volume
`;

  test('an fd that held locks fails with EIO (its locks are gone); an fd that held none is reopened', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'f'), 'data');
    const port = await freePort();
    const b1 = await startBrickGraph(brickText(dir, port));
    const c = await startClientGraph(port, { volume: 'l' });
    const g = c.graph;
    const file = await lookupInode(g, g.itable.root, 'f');
    const open = async () => {
      const fd = g.newFd(file, fs.constants.O_RDWR, false);
      await g.top.open(as(g, 'A'), { inode: file }, fd);
      return fd;
    };
    const locked = await open();
    const plain = await open();
    await g.top.lk(as(g, 'A'), locked, 'set', whole('write'), 'posix');
    // The brick restarts: the connection, and with it every lock, is gone.
    await b1.graph.stop(10_000);
    await startBrickGraph(brickText(dir, port));
    await waitFor(() => (g.xlators.get('remote')!.dump() as { epoch: number }).epoch === 2, 10_000, 'the client to reconnect');
    expect((await g.top.read(as(g, 'A'), plain, 4, 0)).toString()).toBe('data');
    expect(await errCode(g.top.read(as(g, 'A'), locked, 4, 0))).toBe('EIO');
    await locked.unref();
    await plain.unref();
  });
});
