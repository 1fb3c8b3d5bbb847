// The new fops and frame fields on the wire: readdirp, lk, fallocate, seek and rename's
// flags go client -> server -> graph and back; each request carries its lock owner (the
// brick prefixes its client) and can be cancelled (a blocked lock answers EINTR); a client
// whose connection dies has its blocked locks interrupted and its fds released; open flags
// reach the brick on create, open and the lazy reopen; names are byte strings end to end.
// The brick's graph is a recording translator (test/recorder) unless storage/posix is needed.
import * as fs from 'fs';
import type * as net from 'net';
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../../src/core/errors';
import type { Fd } from '../../src/core/fd';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { Caller, DirentPlus, FALLOC_FL_KEEP_SIZE, Flock, Iatt, LockCmd, LockKind, RENAME_NOREPLACE, ROOT_CALLER, ROOT_GFID, S_IFMT } from '../../src/core/types';
import type { Loc } from '../../src/core/fops';
import { XlEvent } from '../../src/core/events';
import { Xlator } from '../../src/core/xlator';
import { Kind } from '../../src/rpc/frame';
import { freePort, serverLogin } from '../helpers/brick';
import { deferred } from '../helpers/core';
import { cleanupGraphs, errCode, tempDir, within } from '../helpers/graphs';
import { waitFor as until } from '../helpers/mount';
import { NetGraph, startBrickGraph, startClientGraph, status, stopNetGraphs } from '../helpers/protocol';
import { RawConn, closeRawConns, outcome } from '../helpers/raw-peer';

const { O_RDONLY, O_WRONLY, O_RDWR, O_CREAT, O_EXCL, O_TRUNC, O_APPEND, O_SYNC, O_DSYNC, O_DIRECT, O_NOATIME, S_IFREG, S_IFDIR, S_IFLNK } = fs.constants;

// --- the recording brick ----------------------------------------------------------------

interface Call {
  readonly op: string;
  readonly caller: Caller;
  readonly lkOwner: string;
  readonly args: unknown[];
  readonly frame: Frame;
}

const T = { sec: 1, nsec: 0 };
const iatt = (gfid: string, mode = S_IFREG | 0o644): Iatt => ({ gfid, ino: 1, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 4096, blocks: 0, atime: T, mtime: T, ctime: T });

/** Names with every byte but NUL and '/': what a kernel may hand over, UTF-8 or not. */
const BYTES = Array.from({ length: 255 }, (_, i) => String.fromCharCode(i + 1))
  .filter((c) => c !== '/')
  .join('');
const HIGH = '\x80\xff\xfe latin1 \xe9';

/** Answers every fop with something of the right shape, and records what reached it. */
class Recorder extends Xlator {
  readonly calls: Call[] = [];
  readonly released: { fd: number; flags: number }[] = [];
  /** A blocking lock waits here until its frame is interrupted (EINTR) or the test grants it. */
  readonly lkWaits: { frame: Frame; grant: () => void }[] = [];
  /** Reads wait here while `holdReads`. */
  holdReads = false;
  readonly heldReads: (() => void)[] = [];

  override notify(event: XlEvent, from?: Xlator): void {
    if (event === XlEvent.PARENT_UP) this.up(XlEvent.CHILD_UP);
    else super.notify(event, from);
  }

  private record(op: string, frame: Frame, args: unknown[]): void {
    this.calls.push({ op, caller: frame.caller, lkOwner: frame.lkOwner, args, frame });
  }

  of(op: string): Call[] {
    return this.calls.filter((c) => c.op === op);
  }

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    this.record('lookup', frame, [loc.name, loc.gfid]);
    return iatt(loc.gfid ?? ROOT_GFID, loc.name === undefined ? S_IFDIR | 0o755 : S_IFREG | 0o644);
  }
  override async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    this.record('mkdir', frame, [loc.name, mode]);
    return iatt(loc.inode!.gfid, S_IFDIR | mode);
  }
  override async symlink(frame: Frame, target: string, loc: Loc): Promise<Iatt> {
    this.record('symlink', frame, [target, loc.name]);
    return iatt(loc.inode!.gfid, S_IFLNK | 0o777);
  }
  override async readlink(frame: Frame, loc: Loc): Promise<string> {
    this.record('readlink', frame, [loc.gfid]);
    return BYTES;
  }
  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    this.record('rename', frame, [from.name, to.name, flags]);
    return iatt(uuidv4());
  }
  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    this.record('create', frame, [loc.name, mode, fd.flags]);
    fd.ctx.set(this, true);
    return iatt(loc.inode!.gfid, S_IFREG | mode);
  }
  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    this.record('open', frame, [loc.gfid, fd.flags]);
    fd.ctx.set(this, true);
  }
  override async opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    this.record('opendir', frame, [loc.gfid, fd.flags]);
    fd.ctx.set(this, true);
  }
  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    this.record('readdirp', frame, [size, offset]);
    return [
      { name: BYTES, offset: 1, ino: 11, type: S_IFREG, iatt: iatt('11111111-1111-4111-8111-111111111111') },
      { name: HIGH, offset: 2, ino: 12, type: S_IFDIR, iatt: iatt('22222222-2222-4222-8222-222222222222', S_IFDIR | 0o755) },
      { name: 'vanished', offset: 3, ino: 13, type: S_IFREG },
    ];
  }
  override async read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    this.record('read', frame, [size, offset]);
    if (this.holdReads) await new Promise<void>((r) => this.heldReads.push(r));
    return Buffer.from('data');
  }
  override async fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    this.record('fallocate', frame, [mode, offset, length]);
  }
  override async seek(frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number> {
    this.record('seek', frame, [offset, what]);
    return what === 'hole' ? 4096 : offset;
  }
  override async flush(frame: Frame, fd: Fd): Promise<void> {
    this.record('flush', frame, []);
  }
  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    this.record('lk', frame, [fd.id, cmd, lock, kind]);
    if (cmd !== 'wait') return lock;
    const granted = deferred();
    const interrupted = new Promise<never>((_, reject) => frame.onInterrupt(() => reject(new FopError('EINTR', 'interrupted while waiting for the lock'))));
    this.lkWaits.push({ frame, grant: granted.resolve });
    await Promise.race([granted.promise, interrupted]);
    return lock;
  }
  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    this.record('getxattr', frame, [name]);
    return Buffer.from([0, 255]);
  }
  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    this.record('listxattr', frame, []);
    return [`user.${HIGH}`, 'user.plain'];
  }
  override async release(fd: Fd): Promise<void> {
    this.released.push({ fd: fd.id, flags: fd.flags });
  }
}

const recorderDef = defineTranslator({ type: 'test/recorder', description: 'records fops', options: {}, subvolumes: { min: 0, max: 0 }, create: (init) => new Recorder(init) });

const recBrickText = (port: number, serverOptions = '') => `volume rec
    type test/recorder
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('rec')}${serverOptions}    subvolumes rec
end-volume
`;

async function recBrick(port?: number, serverOptions = ''): Promise<NetGraph & { rec: Recorder; port: number }> {
  const r = new Registry();
  r.register(recorderDef as unknown as TranslatorDef);
  const p = port ?? (await freePort());
  const b = await startBrickGraph(recBrickText(p, serverOptions), r);
  return { ...b, rec: b.graph.xlators.get('rec') as Recorder, port: p };
}

const recClient = async (port: number, frame = 10) => {
  const c = await startClientGraph(port, { volume: 'rec', frame });
  expect(c.started).toBe('up');
  return c;
};

afterEach(async () => {
  closeRawConns();
  await stopNetGraphs();
  await cleanupGraphs();
}, 60_000);

// --- client-side helpers ------------------------------------------------------------------

const fr = (g: Graph, op: string, lkOwner = '', caller: Caller = ROOT_CALLER) => g.frame(op, { caller, lkOwner });

async function openFile(g: Graph, flags: number, lkOwner = ''): Promise<{ fd: Fd; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, flags, false);
  await g.top.open(fr(g, 'open', lkOwner), { path: '/f', inode, gfid: inode.gfid }, fd);
  return { fd, inode };
}

async function createFile(g: Graph, name: string, flags: number): Promise<{ fd: Fd; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, flags, false);
  await g.top.create(fr(g, 'create'), { path: `/${name}`, parent: g.itable.root, name, inode }, 0o644, fd);
  return { fd, inode };
}

const lock = (type: Flock['type'], start = 0, end = 99): Flock => ({ type, start, end, pid: 42 });

/** Whether a promise has settled, observed without waiting for anything. */
function watch(p: Promise<unknown>): { readonly settled: boolean } {
  const state = { settled: false };
  p.then(
    () => (state.settled = true),
    () => (state.settled = true),
  );
  return state;
}

// --- the tests ----------------------------------------------------------------------------

describe('new fops on the wire', () => {
  test('readdirp, fallocate, seek and rename flags reach the brick with their arguments; their answers come back', async () => {
    const b = await recBrick();
    const c = await recClient(b.port);
    const g = c.graph;
    const { fd } = await openFile(g, O_RDWR);
    await g.top.fallocate(fr(g, 'fallocate'), fd, FALLOC_FL_KEEP_SIZE, 10, 20);
    expect(b.rec.of('fallocate').map((x) => x.args)).toEqual([[FALLOC_FL_KEEP_SIZE, 10, 20]]);
    expect(await g.top.seek(fr(g, 'seek'), fd, 5, 'hole')).toBe(4096);
    expect(await g.top.seek(fr(g, 'seek'), fd, 7, 'data')).toBe(7);
    expect(b.rec.of('seek').map((x) => x.args)).toEqual([
      [5, 'hole'],
      [7, 'data'],
    ]);

    const dfd = g.newFd(g.itable.root, O_RDONLY, true);
    await g.top.opendir(fr(g, 'opendir'), { path: '/', inode: g.itable.root, gfid: ROOT_GFID }, dfd);
    const entries = await g.top.readdirp(fr(g, 'readdirp'), dfd, 8192, 0);
    expect(entries.map((e) => [e.name, e.offset, e.type, e.iatt?.gfid])).toEqual([
      [BYTES, 1, S_IFREG, '11111111-1111-4111-8111-111111111111'],
      [HIGH, 2, S_IFDIR, '22222222-2222-4222-8222-222222222222'],
      ['vanished', 3, S_IFREG, undefined],
    ]);
    expect(entries[1].iatt!.mode & S_IFMT).toBe(S_IFDIR);
    expect(b.rec.of('readdirp').map((x) => x.args)).toEqual([[8192, 0]]);
    // The brick now knows those entries' types (a later fop by GFID needs no lookup to tell).
    expect(b.graph.itable.find('22222222-2222-4222-8222-222222222222')?.isDir).toBe(true);

    const root = g.itable.root;
    await g.top.rename(fr(g, 'rename'), { path: '/a', parent: root, name: 'a' }, { path: '/b', parent: root, name: 'b' }, RENAME_NOREPLACE);
    expect(b.rec.of('rename').map((x) => x.args)).toEqual([['a', 'b', RENAME_NOREPLACE]]);
    await fd.unref();
    await dfd.unref();
  });

  test('lock owners travel with each request; the brick prefixes them with the client process under its login, the same on every connection of that process', async () => {
    const b = await recBrick();
    const c1 = await recClient(b.port);
    const c2 = await recClient(b.port);
    const f1 = await openFile(c1.graph, O_RDWR);
    const f2 = await openFile(c2.graph, O_RDWR);
    await c1.graph.top.lk(fr(c1.graph, 'lk', 'a1b2c3d4'), f1.fd, 'set', lock('write'), 'posix');
    await c2.graph.top.lk(fr(c2.graph, 'lk', 'a1b2c3d4'), f2.fd, 'set', lock('write'), 'posix');
    await c1.graph.top.flush(fr(c1.graph, 'flush', 'a1b2c3d4'), f1.fd);
    const [l1, l2] = b.rec.of('lk');
    expect(l1.args.slice(1)).toEqual(['set', lock('write'), 'posix']);
    // Two graphs of one process (what a graph switch makes): one owner, whichever connection carries it.
    expect(l1.lkOwner).toMatch(/^[\w-]*\/[0-9a-f-]{36}:a1b2c3d4$/);
    expect(l2.lkOwner).toBe(l1.lkOwner);
    // The same client's owner is the same on every fop that carries it (flush drops that owner's locks).
    expect(b.rec.of('flush')[0].lkOwner).toBe(l1.lkOwner);
    await f1.fd.unref();
    await f2.fd.unref();
  });

  test('the caller travels with its groups, also one that reads them only when asked (a getter, as the kernel transport has)', async () => {
    const b = await recBrick();
    const c = await recClient(b.port);
    const g = c.graph;
    let reads = 0;
    class LazyCaller implements Caller {
      readonly uid = 1234;
      readonly gid = 1234;
      readonly pid = 77;
      get groups(): readonly number[] {
        reads++;
        return [5, 6];
      }
    }
    await g.top.lookup(fr(g, 'lookup', '', new LazyCaller()), { path: '/x', parent: g.itable.root, name: 'x' });
    expect(reads).toBe(1);
    const [call] = b.rec.of('lookup');
    expect({ ...call.caller }).toEqual({ uid: 1234, gid: 1234, pid: 77, groups: [5, 6] });
  });

  test('a blocking lock waits past frame-timeout; interrupted, it is cancelled on the brick and answers EINTR', async () => {
    const b = await recBrick();
    const c = await recClient(b.port, 0.3);
    const g = c.graph;
    const { fd } = await openFile(g, O_RDWR);
    const lkFrame = fr(g, 'lk', 'owner-1');
    const waiting = errCode(g.top.lk(lkFrame, fd, 'wait', lock('write'), 'posix'));
    const lk = watch(waiting);
    await until(() => b.rec.lkWaits.length === 1, 3000, 'the lock to wait on the brick');
    // A read sent after the lock gets frame-timeout (0.3 s): when it gives up, any timer the
    // lock had would have fired before it. The lock is still waiting.
    b.rec.holdReads = true;
    expect(await errCode(g.top.read(fr(g, 'read'), fd, 4, 0))).toBe('ENOTCONN');
    expect(lk.settled).toBe(false);
    lkFrame.interrupt();
    expect(await waiting).toBe('EINTR');
    expect(b.rec.lkWaits[0].frame.interrupted).toBe(true);
    for (const r of b.rec.heldReads) r();
    // The connection lived on through both.
    expect(await g.top.seek(fr(g, 'seek'), fd, 1, 'data')).toBe(1);
    await fd.unref();
  });

  test('a blocking lock the brick grants answers normally; an interrupt after that changes nothing', async () => {
    const b = await recBrick();
    const c = await recClient(b.port, 0.3);
    const g = c.graph;
    const { fd } = await openFile(g, O_RDWR);
    const f = fr(g, 'lk', 'owner-2');
    const waiting = g.top.lk(f, fd, 'wait', lock('read'), 'posix');
    await until(() => b.rec.lkWaits.length === 1, 3000, 'the lock to wait on the brick');
    b.rec.lkWaits[0].grant();
    expect(await within(waiting)).toEqual(lock('read'));
    f.interrupt();
    expect(await g.top.seek(fr(g, 'seek'), fd, 3, 'data')).toBe(3);
    await fd.unref();
  });

  test("when a client's connection dies, the brick interrupts its blocked locks and (grace-timeout 0) releases its fds (the path features/locks drops locks on)", async () => {
    const b = await recBrick(undefined, '    option grace-timeout 0\n');
    const c = await recClient(b.port);
    const g = c.graph;
    const held = await openFile(g, O_RDWR, 'owner-3');
    await g.top.lk(fr(g, 'lk', 'owner-3'), held.fd, 'set', lock('write'), 'posix');
    const blocked = errCode(g.top.lk(fr(g, 'lk', 'owner-4'), held.fd, 'wait', lock('write', 200, 300), 'posix'));
    await until(() => b.rec.lkWaits.length === 1, 3000, 'the second lock to wait');
    const brickFd = b.rec.of('lk')[0].args[0] as number;
    expect(b.rec.released).toEqual([]);
    const remote = g.xlators.get('remote') as unknown as { conn: { current?: { socket: net.Socket } } };
    remote.conn.current!.socket.destroy();
    await until(() => b.rec.released.length === 1, 3000, "the brick to release the dead client's fd");
    expect(b.rec.released[0].fd).toBe(brickFd);
    expect(b.rec.lkWaits[0].frame.interrupted).toBe(true);
    // Not sent again on the next connection: a lock is never taken twice blindly.
    expect(await blocked).toBe('ENOTCONN');
    expect(b.rec.of('lk')).toHaveLength(2);
    await held.fd.unref();
  });
});

describe('open flags reach the brick', () => {
  test('on create, open and the lazy reopen (which drops O_CREAT, O_EXCL and O_TRUNC only)', async () => {
    let b = await recBrick();
    const c = await recClient(b.port);
    const g = c.graph;
    const createFlags = O_RDWR | O_CREAT | O_EXCL | O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOATIME;
    const created = await createFile(g, 'new', createFlags);
    const openFlags = O_WRONLY | O_APPEND | O_TRUNC | O_SYNC | O_DIRECT | O_NOATIME;
    const opened = await openFile(g, openFlags);
    expect(b.rec.of('create')[0].args[2]).toBe(createFlags);
    expect(b.rec.of('open')[0].args[1]).toBe(openFlags);

    // A new brick (the old fds are gone there): each fd is reopened on its next use.
    const port = b.port;
    await within(b.graph.stop(10_000), 15_000);
    b = await recBrick(port);
    await g.top.fallocate(fr(g, 'fallocate'), created.fd, 0, 0, 1);
    await g.top.fallocate(fr(g, 'fallocate'), opened.fd, 0, 0, 1);
    expect(b.rec.of('open').map((x) => x.args)).toEqual([
      [created.inode.gfid, O_RDWR | O_APPEND | O_SYNC | O_DSYNC | O_DIRECT | O_NOATIME],
      [opened.inode.gfid, O_WRONLY | O_APPEND | O_SYNC | O_DIRECT | O_NOATIME],
    ]);
    await created.fd.unref();
    await opened.fd.unref();
  });

  test('a file created O_CREAT|O_APPEND is O_APPEND on the brick (storage/posix appends whatever the offset), after a reopen too', async () => {
    const dir = tempDir('xlstack-flags-');
    const port = await freePort();
    const text = `volume brick-posix\n    type storage/posix\n    option directory ${dir}\nend-volume\nvolume brick-server\n    type protocol/server\n    option listen-port ${port}\n${serverLogin('brick-posix')}    subvolumes brick-posix\nend-volume\n`;
    let b = await startBrickGraph(text);
    const c = await startClientGraph(port);
    const g = c.graph;
    const { fd } = await createFile(g, 'log', O_WRONLY | O_CREAT | O_APPEND);
    await g.top.write(fr(g, 'write'), fd, Buffer.from('one;'), 0);
    await g.top.write(fr(g, 'write'), fd, Buffer.from('two;'), 0);
    expect(fs.readFileSync(`${dir}/log`, 'utf8')).toBe('one;two;');
    await within(b.graph.stop(10_000), 15_000);
    await status(g, 'down');
    b = await startBrickGraph(text);
    // The append is never sent twice: it must go on the new connection, not the dying one.
    await until(() => (g.xlators.get('remote')!.dump() as { epoch: number; connected: boolean }).epoch === 2, 5000, 'the client to reconnect');
    await g.top.write(fr(g, 'write'), fd, Buffer.from('three;'), 0);
    expect(fs.readFileSync(`${dir}/log`, 'utf8')).toBe('one;two;three;');
    await fd.unref();
    void b;
  });
});

describe('names are byte strings', () => {
  test('every byte but NUL and "/" survives the JSON framing both ways: names, symlink targets, xattr names', async () => {
    const b = await recBrick();
    const c = await recClient(b.port);
    const g = c.graph;
    const root = g.itable.root;
    await g.top.lookup(fr(g, 'lookup'), { path: '/x', parent: root, name: BYTES });
    await g.top.mkdir(fr(g, 'mkdir'), { path: '/x', parent: root, name: HIGH, inode: g.itable.get(uuidv4()) }, 0o755);
    await g.top.symlink(fr(g, 'symlink'), BYTES, { path: '/x', parent: root, name: HIGH, inode: g.itable.get(uuidv4()) });
    const target = g.itable.get(uuidv4());
    await g.top.getxattr(fr(g, 'getxattr'), { path: '/x', inode: target, gfid: target.gfid }, `user.${HIGH}`);
    expect(b.rec.of('lookup').map((x) => x.args[0])).toEqual([BYTES]);
    expect(b.rec.of('mkdir')[0].args[0]).toBe(HIGH);
    expect(b.rec.of('symlink')[0].args).toEqual([BYTES, HIGH]);
    expect(b.rec.of('getxattr')[0].args).toEqual([`user.${HIGH}`]);
    expect(await g.top.readlink(fr(g, 'readlink'), { path: '/x', inode: target, gfid: target.gfid })).toBe(BYTES);
    expect(await g.top.listxattr(fr(g, 'listxattr'), { path: '/x', inode: target, gfid: target.gfid })).toEqual([`user.${HIGH}`, 'user.plain']);
  });

  test('a name, target, xattr name or lock owner that is not a byte string, or a caller id of (uid_t)-1, is EINVAL and reaches nothing', async () => {
    const b = await recBrick();
    const raw = await RawConn.open(b.port);
    expect(await raw.hello('rec')).toEqual({ ok: true });
    const before = b.rec.calls.length;
    const bad = [
      await raw.request('lookup', [{ path: '/x', parent: ROOT_GFID, name: 'ā' }]),
      await raw.request('mkdir', [{ path: '/x', parent: ROOT_GFID, name: 'snow☃', gfid: uuidv4() }, 0o755]),
      await raw.request('symlink', ['🚀', { path: '/x', parent: ROOT_GFID, name: 'l', gfid: uuidv4() }]),
      await raw.request('getxattr', [{ path: '/', gfid: ROOT_GFID }, 'user.\u0100']),
    ];
    expect(bad.map(outcome)).toEqual(['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL']);
    const f = await raw.call(Kind.REQUEST, { op: 'lookup', caller: ROOT_CALLER, lkOwner: 'owner\u0100', args: [{ path: '/', gfid: ROOT_GFID }] });
    expect(outcome(f?.body as never)).toBe('EINVAL');
    // (uid_t)-1 is "leave unchanged" to chown(2): no caller may be it.
    const minusOne = await raw.request('lookup', [{ path: '/', gfid: ROOT_GFID }], 5000, { uid: -1, gid: 0, groups: [], pid: 1 });
    const maxId = await raw.request('lookup', [{ path: '/', gfid: ROOT_GFID }], 5000, { uid: 0, gid: 0xffffffff, groups: [], pid: 1 });
    expect([outcome(minusOne), outcome(maxId)]).toEqual(['EINVAL', 'EINVAL']);
    expect(b.rec.calls.length).toBe(before);
    // The same requests with byte strings go through.
    expect(outcome(await raw.request('lookup', [{ path: '/x', parent: ROOT_GFID, name: '\xe9' }]))).toBe('OK');
  });
});


