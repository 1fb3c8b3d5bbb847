// storage/posix: data, directory, attribute and xattr fops, ownership and modes of new
// objects. Needs root: trusted.* xattrs, chown, mknod.

import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { performance } from 'perf_hooks';
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../../src/core/errors';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Caller, Dirent, Iatt } from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, lookup, lookupInode, newBridge, startGraph, tempDir, within } from '../helpers/graphs';

const { O_RDWR, O_RDONLY, O_WRONLY, R_OK, W_OK, X_OK, F_OK } = fs.constants;
const { EAGAIN, EOPNOTSUPP } = os.constants.errno;
const { S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, S_IFCHR, S_IFBLK, S_IFSOCK } = fs.constants;
const makedev = (major: number, minor: number) => (major << 8) | minor;
const USER: Caller = { uid: 1000, gid: 1000, groups: [], pid: 1 };

// --- helpers -------------------------------------------------------------------

afterEach(cleanupGraphs);

/** Creates parent/name (open, on an fd the caller must unref). */
async function create(g: Graph, parent: Inode, name: string, mode: number, caller?: Caller, flags = O_RDWR): Promise<{ iatt: Iatt; fd: Fd; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, flags, false);
  try {
    const iatt = await g.top.create(g.frame('create', caller), { path: name, parent, name, inode }, mode, fd);
    g.itable.link(iatt, parent, name);
    return { iatt, fd, inode };
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

async function mkdir(g: Graph, parent: Inode, name: string, mode: number, caller?: Caller): Promise<{ iatt: Iatt; inode: Inode }> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.mkdir(g.frame('mkdir', caller), { path: name, parent, name, inode }, mode);
  g.itable.link(iatt, parent, name);
  return { iatt, inode };
}

async function mknod(g: Graph, parent: Inode, name: string, mode: number, rdev: number, caller?: Caller): Promise<Iatt> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.mknod(g.frame('mknod', caller), { path: name, parent, name, inode }, mode, rdev);
  g.itable.link(iatt, parent, name);
  return iatt;
}

async function symlink(g: Graph, parent: Inode, name: string, target: string, caller?: Caller): Promise<Iatt> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.symlink(g.frame('symlink', caller), target, { path: name, parent, name, inode });
  g.itable.link(iatt, parent, name);
  return iatt;
}

async function openDir(g: Graph, inode: Inode): Promise<Fd> {
  const fd = g.newFd(inode, O_RDONLY, true);
  await g.top.opendir(g.frame('opendir'), { path: '<dir>', inode }, fd);
  return fd;
}

/** Reads a whole listing with `size`-sized batches, continuing from each batch's last cookie. */
async function readAllBatches(g: Graph, fd: Fd, size: number, from = 0): Promise<Dirent[][]> {
  const batches: Dirent[][] = [];
  for (let offset = from; batches.length < 10_000; ) {
    const chunk = await g.top.readdir(g.frame('readdir'), fd, size, offset);
    if (chunk.length === 0) return batches;
    batches.push(chunk);
    offset = chunk[chunk.length - 1].offset;
  }
  throw new Error('readdir never ended');
}

function withUmask<T>(mask: number, fn: () => Promise<T>): Promise<T> {
  const old = process.umask(mask);
  return fn().finally(() => process.umask(old));
}

// --- data ------------------------------------------------------------------------------

describe('read and write', () => {
  test('writes at offsets, sparse holes read as zeros, reads past the end are short', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd } = await create(g, g.itable.root, 'f', 0o644);
    try {
      expect(await g.top.write(g.frame('write'), fd, Buffer.from('hello'), 0)).toBe(5);
      expect(await g.top.write(g.frame('write'), fd, Buffer.from('HE'), 1)).toBe(2);
      expect(await g.top.write(g.frame('write'), fd, Buffer.from('tail'), 1_000_000)).toBe(4);
      expect((await g.top.read(g.frame('read'), fd, 5, 0)).toString()).toBe('hHElo');
      expect((await g.top.read(g.frame('read'), fd, 3, 2)).toString()).toBe('Elo');
      const hole = await g.top.read(g.frame('read'), fd, 1000, 5000);
      expect(hole.length).toBe(1000);
      expect(hole.every((b) => b === 0)).toBe(true);
      const end = await g.top.read(g.frame('read'), fd, 100, 1_000_000 - 2);
      expect(end).toEqual(Buffer.concat([Buffer.alloc(2), Buffer.from('tail')]));
      expect((await g.top.read(g.frame('read'), fd, 100, 2_000_000)).length).toBe(0);
      const st = await g.top.fstat(g.frame('fstat'), fd);
      expect(st.size).toBe(1_000_004);
      // sparse: far fewer blocks than the size needs
      expect(st.blocks * 512).toBeLessThan(1_000_004);
      expect(fs.statSync(path.join(dir, 'f')).size).toBe(1_000_004);
    } finally {
      await fd.unref();
    }
  });

  test('small (synchronous) and large (> 1 MiB, asynchronous) writes land exactly', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd } = await create(g, g.itable.root, 'f', 0o644);
    try {
      const small = Buffer.alloc(1024 * 1024, 0x61); // exactly the synchronous limit
      const large = Buffer.alloc(3 * 1024 * 1024 + 17);
      for (let i = 0; i < large.length; i++) large[i] = (i * 7919) & 0xff;
      expect(await g.top.write(g.frame('write'), fd, small, 10)).toBe(small.length);
      expect(await g.top.write(g.frame('write'), fd, large, 2_000_000)).toBe(large.length);
      const tiny = Buffer.from('xyz');
      expect(await g.top.write(g.frame('write'), fd, tiny, 3)).toBe(3);
      const onDisk = fs.readFileSync(path.join(dir, 'f'));
      expect(onDisk.length).toBe(2_000_000 + large.length);
      expect(onDisk.subarray(3, 6).toString()).toBe('xyz');
      expect(onDisk.subarray(10, 10 + small.length).equals(small)).toBe(true);
      expect(onDisk.subarray(2_000_000).equals(large)).toBe(true);
      const back = await g.top.read(g.frame('read'), fd, large.length, 2_000_000);
      expect(back.equals(large)).toBe(true);
      // concurrent large writes to different ranges
      const parts = [0, 1, 2, 3].map((k) => Buffer.alloc(200_000, 0x30 + k));
      await Promise.all(parts.map((p, k) => g.top.write(g.frame('write'), fd, p, k * 200_000)));
      const all = await g.top.read(g.frame('read'), fd, 800_000, 0);
      for (let k = 0; k < 4; k++) expect(all.subarray(k * 200_000, (k + 1) * 200_000).equals(parts[k])).toBe(true);
    } finally {
      await fd.unref();
    }
  });

  test('reads take what the page cache holds at once, and the rest, or all when nothing is cached, from the thread pool', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd } = await create(g, g.itable.root, 'f', 0o644);
    const data = Buffer.alloc(300_000);
    for (let i = 0; i < data.length; i++) data[i] = (i * 31) & 0xff;
    const pool = jest.spyOn(sys, 'pread');
    const cached = jest.spyOn(sys, 'preadNowait');
    try {
      expect(await g.top.write(g.frame('write'), fd, data, 0)).toBe(data.length);
      // Just written: in the page cache, read without the pool.
      expect((await g.top.read(g.frame('read'), fd, 200_000, 50_000)).equals(data.subarray(50_000, 250_000))).toBe(true);
      expect((await g.top.read(g.frame('read'), fd, 100, 299_950)).equals(data.subarray(299_950))).toBe(true);
      expect((await g.top.read(g.frame('read'), fd, 100, 400_000)).length).toBe(0);
      expect(pool).not.toHaveBeenCalled();
      // Nothing cached (EAGAIN): all of it from the pool.
      cached.mockImplementationOnce(() => -EAGAIN);
      expect((await g.top.read(g.frame('read'), fd, 200_000, 1000)).equals(data.subarray(1000, 201_000))).toBe(true);
      expect(pool).toHaveBeenCalled();
      // Only a part cached: the rest from the pool, after it.
      pool.mockClear();
      cached.mockImplementationOnce((osfd, buf, off, _len, pos) => fs.readSync(osfd, buf, off, 70_000, pos)).mockImplementationOnce(() => -EAGAIN);
      expect((await g.top.read(g.frame('read'), fd, 250_000, 10_000)).equals(data.subarray(10_000, 260_000))).toBe(true);
      expect(pool).toHaveBeenCalled();
      // A filesystem without RWF_NOWAIT: the pool reads it all.
      cached.mockImplementationOnce(() => -EOPNOTSUPP);
      expect((await g.top.read(g.frame('read'), fd, 5, 7)).equals(data.subarray(7, 12))).toBe(true);
    } finally {
      pool.mockRestore();
      cached.mockRestore();
      await fd.unref();
    }
  });

  test('writes up to 1 MiB go to the page cache on the loop thread, except for O_SYNC/O_DSYNC/O_DIRECT files and for a while after a slow one', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const plain = (await create(g, g.itable.root, 'plain', 0o644)).fd;
    const durable = await Promise.all(
      [fs.constants.O_SYNC, fs.constants.O_DSYNC, fs.constants.O_DIRECT].map(async (f, i) => (await create(g, g.itable.root, `d${i}`, 0o644, undefined, O_RDWR | f)).fd),
    );
    const onLoop = jest.spyOn(sys, 'pwriteSync');
    const pool = jest.spyOn(sys, 'pwrite');
    const clock = jest.spyOn(performance, 'now');
    const wall = jest.spyOn(Date, 'now');
    const data = Buffer.alloc(1024 * 1024, 0x62);
    try {
      expect(await g.top.write(g.frame('write'), plain, data, 0)).toBe(data.length);
      expect([onLoop.mock.calls.length, pool.mock.calls.length]).toEqual([1, 0]);
      for (const fd of durable) expect(await g.top.write(g.frame('write'), fd, Buffer.from('x'), 0)).toBe(1);
      expect([onLoop.mock.calls.length, pool.mock.calls.length]).toEqual([1, 3]);
      // One write on the loop takes 50 ms: the pool takes the writes for the next second.
      clock.mockReturnValueOnce(1000).mockReturnValueOnce(1050);
      wall.mockReturnValue(5_000_000);
      expect(await g.top.write(g.frame('write'), plain, Buffer.from('slow'), 0)).toBe(4);
      expect(await g.top.write(g.frame('write'), plain, Buffer.from('next'), 4)).toBe(4);
      expect([onLoop.mock.calls.length, pool.mock.calls.length]).toEqual([2, 4]);
      wall.mockReturnValue(5_000_000 + 1000);
      expect(await g.top.write(g.frame('write'), plain, Buffer.from('back'), 8)).toBe(4);
      expect([onLoop.mock.calls.length, pool.mock.calls.length]).toEqual([3, 4]);
      expect(fs.readFileSync(path.join(dir, 'plain')).subarray(0, 13).toString()).toBe('slownextbackb');
    } finally {
      for (const spy of [onLoop, pool, clock, wall]) spy.mockRestore();
      for (const fd of [plain, ...durable]) await fd.unref();
    }
  });

  test('a file opened write-only through the bridge takes writes; reads on it fail', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const fh = await b.create('/w', 0o644, O_WRONLY);
    expect(await b.write('/w', fh, Buffer.from('abc'), 0)).toBe(3);
    expect(await errCode(b.read('/w', fh, 3, 0))).toBe('EBADF');
    await b.release('/w', fh);
    expect(fs.readFileSync(path.join(dir, 'w'), 'utf8')).toBe('abc');
  });

  test('ftruncate and truncate shrink and grow; fsync, fdatasync, flush and fsyncdir succeed', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const { fd, inode } = await create(g, root, 'f', 0o644);
    try {
      await g.top.write(g.frame('write'), fd, Buffer.from('0123456789'), 0);
      expect((await g.top.ftruncate(g.frame('ftruncate'), fd, 4)).size).toBe(4);
      expect((await g.top.read(g.frame('read'), fd, 100, 0)).toString()).toBe('0123');
      expect((await g.top.ftruncate(g.frame('ftruncate'), fd, 8)).size).toBe(8);
      expect(await g.top.read(g.frame('read'), fd, 100, 0)).toEqual(Buffer.concat([Buffer.from('0123'), Buffer.alloc(4)]));
      expect((await g.top.truncate(g.frame('truncate'), { path: '/f', inode }, 2)).size).toBe(2);
      expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).toBe('01');
      expect((await g.top.truncate(g.frame('truncate'), { path: '/f', gfid: inode.gfid }, 0)).size).toBe(0);
      expect(fs.statSync(path.join(dir, 'f')).size).toBe(0);
      await g.top.fsync(g.frame('fsync'), fd, false);
      await g.top.fsync(g.frame('fsync'), fd, true);
      await g.top.flush(g.frame('flush'), fd);
    } finally {
      await fd.unref();
    }
    const dfd = await openDir(g, root);
    try {
      await g.top.fsyncdir(g.frame('fsyncdir'), dfd, false);
      await g.top.fsyncdir(g.frame('fsyncdir'), dfd, true);
      expect(await errCode(g.top.fsync(g.frame('fsync'), dfd, false))).toBe('EISDIR');
    } finally {
      await dfd.unref();
    }
    const d = await mkdir(g, root, 'd', 0o755);
    expect(await errCode(g.top.truncate(g.frame('truncate'), { path: '/d', inode: d.inode }, 0))).toBe('EISDIR');
  });
});

// --- directories -------------------------------------------------------------------------

describe('readdir', () => {
  async function populated() {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const d = await mkdir(g, root, 'd', 0o755);
    const names: string[] = [];
    for (let i = 0; i < 40; i++) {
      const name = `entry-${String(i).padStart(3, '0')}-${'x'.repeat(i % 7)}`;
      const { fd } = await create(g, d.inode, name, 0o644);
      await fd.unref();
      names.push(name);
    }
    return { g, d, names };
  }

  test('small batches continue from their last cookie until [], and give every entry once', async () => {
    const { g, d, names } = await populated();
    const fd = await openDir(g, d.inode);
    try {
      const batches = await readAllBatches(g, fd, 100);
      expect(batches.length).toBeGreaterThan(5);
      const all = batches.flat();
      expect(all.map((e) => e.name).sort()).toEqual([...names].sort());
      // cookies strictly increase through the listing
      for (let i = 1; i < all.length; i++) expect(all[i].offset).toBeGreaterThan(all[i - 1].offset);
      // restarting at 0 gives the full list again, in the same order
      const again = (await readAllBatches(g, fd, 100)).flat();
      expect(again.map((e) => e.name)).toEqual(all.map((e) => e.name));
      expect(again.map((e) => e.offset)).toEqual(all.map((e) => e.offset));
      // one large batch gives the same
      const big = (await readAllBatches(g, fd, 1 << 20)).flat();
      expect(big.map((e) => e.name)).toEqual(all.map((e) => e.name));
    } finally {
      await fd.unref();
    }
  });

  test('a non-sequential cookie (jumping back or forward) continues after that entry', async () => {
    const { g, d } = await populated();
    const fd = await openDir(g, d.inode);
    try {
      const all = (await readAllBatches(g, fd, 1 << 20)).flat();
      // read a little, then jump back to an earlier cookie
      const first = await g.top.readdir(g.frame('readdir'), fd, 200, 0);
      const second = await g.top.readdir(g.frame('readdir'), fd, 200, first[first.length - 1].offset);
      expect(second.length).toBeGreaterThan(0);
      for (const k of [3, 0, 17, 30, 5]) {
        const rest = (await readAllBatches(g, fd, 150, all[k].offset)).flat();
        expect({ k, names: rest.map((e) => e.name) }).toEqual({ k, names: all.slice(k + 1).map((e) => e.name) });
      }
      const last = all[all.length - 1].offset;
      expect(await g.top.readdir(g.frame('readdir'), fd, 4096, last)).toEqual([]);
      // and back to the start in the middle of a listing
      await g.top.readdir(g.frame('readdir'), fd, 100, all[10].offset);
      expect((await readAllBatches(g, fd, 4096, 0)).flat().map((e) => e.name)).toEqual(all.map((e) => e.name));
    } finally {
      await fd.unref();
    }
  });

  test('each entry has its type bits and the ino its lookup reports', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const { fd } = await create(g, root, 'reg', 0o644);
    await fd.unref();
    await mkdir(g, root, 'dir', 0o755);
    await symlink(g, root, 'lnk', 'reg');
    await mknod(g, root, 'fifo', S_IFIFO | 0o644, 0);
    await mknod(g, root, 'chr', S_IFCHR | 0o644, makedev(1, 3));
    await mknod(g, root, 'blk', S_IFBLK | 0o644, makedev(7, 200));
    await mknod(g, root, 'sock', S_IFSOCK | 0o644, 0);
    const want: Record<string, number> = { reg: S_IFREG, dir: S_IFDIR, lnk: S_IFLNK, fifo: S_IFIFO, chr: S_IFCHR, blk: S_IFBLK, sock: S_IFSOCK };
    const dfd = await openDir(g, root);
    try {
      const entries = (await readAllBatches(g, dfd, 4096)).flat();
      expect(entries.map((e) => e.name).sort()).toEqual(Object.keys(want).sort());
      for (const e of entries) {
        const ia = await lookup(g, root, e.name);
        expect({ name: e.name, type: e.type, ino: e.ino }).toEqual({ name: e.name, type: want[e.name], ino: ia.ino });
        expect(ia.mode & S_IFMT).toBe(want[e.name]);
      }
    } finally {
      await dfd.unref();
    }
  });

  test('readdir on a file fd is ENOTDIR; opendir of a file is ENOTDIR', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd, inode } = await create(g, g.itable.root, 'f', 0o644);
    try {
      expect(await errCode(g.top.readdir(g.frame('readdir'), fd, 4096, 0))).toBe('ENOTDIR');
    } finally {
      await fd.unref();
    }
    const dfd = g.newFd(inode, O_RDONLY, true);
    expect(await errCode(g.top.opendir(g.frame('opendir'), { path: '/f', inode }, dfd))).toBe('ENOTDIR');
    await dfd.unref();
  });
});

// --- attributes ------------------------------------------------------------------------------

describe('attributes', () => {
  test('statfs reports positive sizes and counts', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const s = await g.top.statfs(g.frame('statfs'), { path: '/', inode: g.itable.root });
    expect(s.bsize).toBeGreaterThan(0);
    expect(s.frsize).toBeGreaterThan(0);
    expect(s.blocks).toBeGreaterThan(0);
    expect(s.bfree).toBeGreaterThan(0);
    expect(s.bavail).toBeGreaterThan(0);
    expect(s.bfree).toBeLessThanOrEqual(s.blocks);
    expect(s.files).toBeGreaterThan(0);
    expect(s.ffree).toBeGreaterThan(0);
    expect(s.namemax).toBe(255);
    const real = fs.statfsSync(dir);
    expect(s.blocks).toBe(real.blocks);
  });

  test('access for a non-root caller follows the owner/group/other bits', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const acc = async (name: string, mask: number, caller: Caller) => {
      const inode = await lookupInode(g, root, name);
      return errCode(g.top.access(g.frame('access', caller), { path: name, inode }, mask));
    };
    for (const [name, mode] of [['m600', 0o600], ['m644', 0o644], ['m755', 0o755], ['m000', 0o000]] as const) {
      const { fd } = await create(g, root, name, mode);
      await fd.unref();
    }
    // owned by root: the user is "other"
    expect({
      m600r: await acc('m600', R_OK, USER),
      m600f: await acc('m600', F_OK, USER),
      m644r: await acc('m644', R_OK, USER),
      m644w: await acc('m644', W_OK, USER),
      m644x: await acc('m644', X_OK, USER),
      m755r: await acc('m755', R_OK, USER),
      m755x: await acc('m755', X_OK, USER),
      m755rx: await acc('m755', R_OK | X_OK, USER),
      m755w: await acc('m755', W_OK, USER),
    }).toEqual({ m600r: 'EACCES', m600f: 'OK', m644r: 'OK', m644w: 'EACCES', m644x: 'EACCES', m755r: 'OK', m755x: 'OK', m755rx: 'OK', m755w: 'EACCES' });
    // owner class decides for the owner even when "other" would allow more
    fs.chownSync(path.join(dir, 'm600'), 1000, 2000);
    fs.writeFileSync(path.join(dir, 'o007'), '');
    fs.chownSync(path.join(dir, 'o007'), 1000, 1000);
    fs.chmodSync(path.join(dir, 'o007'), 0o007);
    expect({
      ownRW: await acc('m600', R_OK | W_OK, USER),
      ownX: await acc('m600', X_OK, USER),
      ownerNoBits: await acc('o007', R_OK, USER),
    }).toEqual({ ownRW: 'OK', ownX: 'EACCES', ownerNoBits: 'EACCES' });
    // group class, by primary group and by supplementary group
    fs.writeFileSync(path.join(dir, 'g640'), '');
    fs.chownSync(path.join(dir, 'g640'), 0, 3000);
    fs.chmodSync(path.join(dir, 'g640'), 0o640);
    expect({
      grpR: await acc('g640', R_OK, { uid: 1001, gid: 3000, groups: [], pid: 1 }),
      grpW: await acc('g640', W_OK, { uid: 1001, gid: 3000, groups: [], pid: 1 }),
      suppR: await acc('g640', R_OK, { uid: 1001, gid: 1001, groups: [5, 3000], pid: 1 }),
      otherR: await acc('g640', R_OK, USER),
    }).toEqual({ grpR: 'OK', grpW: 'EACCES', suppR: 'OK', otherR: 'EACCES' });
    // root: reads and writes anything, executes only what someone may execute
    const ROOT: Caller = { uid: 0, gid: 0, groups: [], pid: 1 };
    expect({
      rootX644: await acc('m644', X_OK, ROOT),
      rootRW000: await acc('m000', R_OK | W_OK, ROOT),
      rootX755: await acc('m755', X_OK, ROOT),
    }).toEqual({ rootX644: 'EACCES', rootRW000: 'OK', rootX755: 'OK' });
  });

  test("setattr times: 'now', and explicit times to the nanosecond", async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd, inode } = await create(g, g.itable.root, 'f', 0o644);
    await fd.unref();
    const p = path.join(dir, 'f');
    const ia = await g.top.setattr(g.frame('setattr'), { path: '/f', inode }, {
      atime: { sec: 1_234_567_890, nsec: 123_456_789 },
      mtime: { sec: 1_600_000_000, nsec: 999_999_999 },
    });
    let st = fs.statSync(p, { bigint: true });
    expect(st.atimeNs).toBe(1_234_567_890_123_456_789n);
    expect(st.mtimeNs).toBe(1_600_000_000_999_999_999n);
    expect(ia.mtime).toEqual({ sec: 1_600_000_000, nsec: 999_999_999 });
    expect(ia.atime).toEqual({ sec: 1_234_567_890, nsec: 123_456_789 });

    // only mtime: atime stays
    await g.top.setattr(g.frame('setattr'), { path: '/f', inode }, { mtime: { sec: 5, nsec: 1 } });
    st = fs.statSync(p, { bigint: true });
    expect(st.mtimeNs).toBe(5_000_000_001n);
    expect(st.atimeNs).toBe(1_234_567_890_123_456_789n);

    const before = BigInt(Date.now()) * 1_000_000n - 1_000_000_000n;
    const nowIa = await g.top.setattr(g.frame('setattr'), { path: '/f', gfid: inode.gfid }, { mtime: 'now', atime: 'now' });
    const after = BigInt(Date.now()) * 1_000_000n + 1_000_000_000n;
    st = fs.statSync(p, { bigint: true });
    for (const t of [st.mtimeNs, st.atimeNs]) {
      expect(t).toBeGreaterThanOrEqual(before);
      expect(t).toBeLessThanOrEqual(after);
    }
    expect(BigInt(nowIa.mtime.sec) * 1_000_000_000n + BigInt(nowIa.mtime.nsec)).toBe(st.mtimeNs);

    // on a directory, and through fsetattr
    const d = await mkdir(g, g.itable.root, 'd', 0o755);
    await g.top.setattr(g.frame('setattr'), { path: '/d', inode: d.inode }, { mtime: { sec: 42, nsec: 42 } });
    expect(fs.statSync(path.join(dir, 'd'), { bigint: true }).mtimeNs).toBe(42_000_000_042n);
    const { fd: fd2 } = await create(g, g.itable.root, 'g', 0o644);
    try {
      const fia = await g.top.fsetattr(g.frame('fsetattr'), fd2, { mtime: { sec: 7, nsec: 700 }, mode: 0o600 });
      expect(fia.mtime).toEqual({ sec: 7, nsec: 700 });
      expect(fia.mode & 0o7777).toBe(0o600);
      expect(fs.statSync(path.join(dir, 'g'), { bigint: true }).mtimeNs).toBe(7_000_000_700n);
    } finally {
      await fd2.unref();
    }
  });

  test('setattr mode and owner on files and directories', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd, inode } = await create(g, g.itable.root, 'f', 0o644);
    await fd.unref();
    const d = await mkdir(g, g.itable.root, 'd', 0o755);
    expect((await g.top.setattr(g.frame('setattr'), { path: '/f', inode }, { mode: 0o4751 })).mode & 0o7777).toBe(0o4751);
    expect(fs.statSync(path.join(dir, 'f')).mode & 0o7777).toBe(0o4751);
    const ia = await g.top.setattr(g.frame('setattr'), { path: '/d', inode: d.inode }, { mode: 0o1777, uid: 123, gid: 456 });
    expect([ia.mode & 0o7777, ia.uid, ia.gid]).toEqual([0o1777, 123, 456]);
    const st = fs.statSync(path.join(dir, 'd'));
    expect([st.mode & 0o7777, st.uid, st.gid]).toEqual([0o1777, 123, 456]);
    await g.top.setattr(g.frame('setattr'), { path: '/f', inode }, { gid: 77 });
    expect([fs.statSync(path.join(dir, 'f')).uid, fs.statSync(path.join(dir, 'f')).gid]).toEqual([0, 77]);
  });
});

// --- xattrs ------------------------------------------------------------------------------------

describe('extended attributes', () => {
  test('set, get, list, remove; XATTR_CREATE on existing is EEXIST, XATTR_REPLACE on missing ENODATA', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd, inode } = await create(g, g.itable.root, 'f', 0o644);
    await fd.unref();
    const loc = { path: '/f', inode };
    const big = Buffer.alloc(1000, 0x42);
    await g.top.setxattr(g.frame('setxattr'), loc, 'user.a', Buffer.from('one'), 0);
    await g.top.setxattr(g.frame('setxattr'), loc, 'user.big', big, 1);
    expect((await g.top.getxattr(g.frame('getxattr'), loc, 'user.a')).toString()).toBe('one');
    expect((await g.top.getxattr(g.frame('getxattr'), loc, 'user.big')).equals(big)).toBe(true);
    expect(await errCode(g.top.setxattr(g.frame('setxattr'), loc, 'user.a', Buffer.from('two'), 1))).toBe('EEXIST');
    expect((await g.top.getxattr(g.frame('getxattr'), loc, 'user.a')).toString()).toBe('one');
    expect(await errCode(g.top.setxattr(g.frame('setxattr'), loc, 'user.missing', Buffer.from('x'), 2))).toBe('ENODATA');
    expect(await errCode(g.top.getxattr(g.frame('getxattr'), loc, 'user.missing'))).toBe('ENODATA');
    await g.top.setxattr(g.frame('setxattr'), loc, 'user.a', Buffer.from('three'), 2);
    expect((await g.top.getxattr(g.frame('getxattr'), loc, 'user.a')).toString()).toBe('three');
    expect((await g.top.listxattr(g.frame('listxattr'), loc)).filter((n) => n.startsWith('user.')).sort()).toEqual(['user.a', 'user.big']);
    await g.top.removexattr(g.frame('removexattr'), loc, 'user.a');
    expect(await errCode(g.top.removexattr(g.frame('removexattr'), loc, 'user.a'))).toBe('ENODATA');
    expect(await g.top.listxattr(g.frame('listxattr'), loc)).toEqual(['user.big']);
    // an empty value is a value
    await g.top.setxattr(g.frame('setxattr'), loc, 'user.empty', Buffer.alloc(0), 0);
    expect((await g.top.getxattr(g.frame('getxattr'), loc, 'user.empty')).length).toBe(0);
    // and on a directory by GFID
    const d = await mkdir(g, g.itable.root, 'd', 0o755);
    await g.top.setxattr(g.frame('setxattr'), { path: '/d', gfid: d.inode.gfid }, 'trusted.other', Buffer.from('t'), 0);
    expect((await g.top.getxattr(g.frame('getxattr'), { path: '/d', inode: d.inode }, 'trusted.other')).toString()).toBe('t');
  });
});

// --- new objects: types, owners, modes ------------------------------------------------------------

describe('mknod', () => {
  test('a fifo and character and block devices get their type, mode and rdev', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const fifo = await mknod(g, root, 'fifo', S_IFIFO | 0o640, 0);
    const chr = await mknod(g, root, 'zero', S_IFCHR | 0o666, makedev(1, 5));
    const blk = await mknod(g, root, 'loop', S_IFBLK | 0o600, makedev(7, 3));
    const reg = await mknod(g, root, 'reg', 0o600, 0); // no type: a regular file
    expect([fifo.mode, chr.mode, blk.mode, reg.mode]).toEqual([S_IFIFO | 0o640, S_IFCHR | 0o666, S_IFBLK | 0o600, S_IFREG | 0o600]);
    expect([chr.rdev, blk.rdev]).toEqual([makedev(1, 5), makedev(7, 3)]);
    const sc = fs.lstatSync(path.join(dir, 'zero'));
    expect(sc.isCharacterDevice()).toBe(true);
    expect(sc.rdev).toBe(makedev(1, 5));
    expect(sc.mode & 0o7777).toBe(0o666);
    expect(fs.lstatSync(path.join(dir, 'fifo')).isFIFO()).toBe(true);
    expect(fs.lstatSync(path.join(dir, 'fifo')).mode & 0o7777).toBe(0o640);
    expect(fs.lstatSync(path.join(dir, 'loop')).rdev).toBe(makedev(7, 3));
    expect((await lookup(g, root, 'zero')).rdev).toBe(makedev(1, 5));
    expect(await errCode(mknod(g, root, 'adir', S_IFDIR | 0o755, 0))).toBe('EPERM');
    expect(fs.existsSync(path.join(dir, 'adir'))).toBe(false);
  });
});

describe('ownership of new objects', () => {
  test('a non-root caller owns what it creates (create, mkdir, mknod, symlink)', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const { iatt, fd } = await create(g, root, 'f', 0o644, USER);
    await fd.unref();
    const d = await mkdir(g, root, 'd', 0o755, USER);
    const n = await mknod(g, root, 'n', S_IFIFO | 0o644, 0, USER);
    const s = await symlink(g, root, 's', 'f', USER);
    for (const ia of [iatt, d.iatt, n, s]) expect([ia.uid, ia.gid]).toEqual([1000, 1000]);
    for (const name of ['f', 'd', 'n', 's']) {
      const st = fs.lstatSync(path.join(dir, name));
      expect({ name, uid: st.uid, gid: st.gid }).toEqual({ name, uid: 1000, gid: 1000 });
    }
    // root's stay root's
    const { iatt: rootMade, fd: fd2 } = await create(g, root, 'r', 0o644);
    await fd2.unref();
    expect([rootMade.uid, rootMade.gid]).toEqual([0, 0]);
    expect(fs.statSync(path.join(dir, 'r')).uid).toBe(0);
  });

  test('in a setgid directory, new objects take its group and new directories its setgid bit', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const sg = await mkdir(g, root, 'sg', 0o777);
    await g.top.setattr(g.frame('setattr'), { path: '/sg', inode: sg.inode }, { gid: 4321, mode: 0o2777 });
    const { iatt: f, fd } = await create(g, sg.inode, 'f', 0o644);
    await fd.unref();
    const sub = await mkdir(g, sg.inode, 'sub', 0o755);
    const { iatt: uf, fd: fd2 } = await create(g, sg.inode, 'uf', 0o644, USER);
    await fd2.unref();
    const usub = await mkdir(g, sg.inode, 'usub', 0o750, USER);
    const node = await mknod(g, sg.inode, 'node', S_IFIFO | 0o600, 0, USER);
    const lnk = await symlink(g, sg.inode, 'lnk', 'f');

    expect([f.gid, sub.iatt.gid, uf.gid, usub.iatt.gid, node.gid, lnk.gid]).toEqual([4321, 4321, 4321, 4321, 4321, 4321]);
    expect([uf.uid, usub.iatt.uid, node.uid]).toEqual([1000, 1000, 1000]);
    expect(sub.iatt.mode & 0o7777).toBe(0o2755);
    expect(usub.iatt.mode & 0o7777).toBe(0o2750);
    expect(f.mode & 0o7777).toBe(0o644);
    const real = (n: string) => fs.lstatSync(path.join(dir, 'sg', n));
    expect([real('f').gid, real('sub').gid, real('uf').gid, real('usub').gid]).toEqual([4321, 4321, 4321, 4321]);
    expect(real('sub').mode & 0o7777).toBe(0o2755);
    expect(real('usub').mode & 0o7777).toBe(0o2750);
    // and the directory made there passes it on
    const deeper = await mkdir(g, sub.inode, 'deeper', 0o700);
    expect([deeper.iatt.gid, deeper.iatt.mode & 0o7777]).toEqual([4321, 0o2700]);
  });

  test('a caller outside a setgid directory\'s group gets no setgid file there (as the kernel does)', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const sg = await mkdir(g, root, 'sg', 0o777);
    await g.top.setattr(g.frame('setattr'), { path: '/sg', inode: sg.inode }, { gid: 4321, mode: 0o2777 });
    const { iatt, fd } = await create(g, sg.inode, 'f', 0o2755, USER);
    await fd.unref();
    const n = await mknod(g, sg.inode, 'n', S_IFREG | 0o2755, 0, USER);
    expect(iatt.gid).toBe(4321);
    // USER (gid 1000, no supplementary groups) is not in group 4321: S_ISGID must not stay
    expect(fs.statSync(path.join(dir, 'sg', 'f')).mode & 0o7777).toBe(0o755);
    expect(iatt.mode & 0o7777).toBe(0o755);
    expect(n.mode & 0o7777).toBe(0o755);
    // a member keeps it
    const member: Caller = { uid: 1001, gid: 1001, groups: [4321], pid: 1 };
    const { iatt: m, fd: fd2 } = await create(g, sg.inode, 'm', 0o2755, member);
    await fd2.unref();
    expect(m.mode & 0o7777).toBe(0o2755);
  });
});

describe('modes are exactly what was asked, whatever the process umask', () => {
  test.each([
    ['022', 0o022],
    ['077', 0o077],
    ['000', 0o000],
  ])('umask %s', async (_label, mask) => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    await withUmask(mask, async () => {
      const cases: [string, number][] = [['f640', 0o640], ['f666', 0o666], ['f777', 0o777], ['f4755', 0o4755], ['f2755', 0o2755], ['f000', 0o000]];
      for (const [name, mode] of cases) {
        const { iatt, fd } = await create(g, root, name, mode);
        await fd.unref();
        expect({ name, mode: iatt.mode & 0o7777 }).toEqual({ name, mode });
        expect({ name, mode: fs.statSync(path.join(dir, name)).mode & 0o7777 }).toEqual({ name, mode });
      }
      for (const [name, mode] of [['d777', 0o777], ['d1777', 0o1777], ['d700', 0o700], ['d2775', 0o2775]] as [string, number][]) {
        const { iatt } = await mkdir(g, root, name, mode);
        expect({ name, mode: iatt.mode & 0o7777 }).toEqual({ name, mode });
        expect({ name, mode: fs.statSync(path.join(dir, name)).mode & 0o7777 }).toEqual({ name, mode });
      }
      for (const [name, mode] of [['p666', S_IFIFO | 0o666], ['r4755', S_IFREG | 0o4755]] as [string, number][]) {
        const ia = await mknod(g, root, name, mode, 0);
        expect({ name, mode: ia.mode }).toEqual({ name, mode });
        expect({ name, mode: fs.lstatSync(path.join(dir, name)).mode }).toEqual({ name, mode });
      }
    });
  });

  test('a non-root caller creating 0o4755 keeps the setuid bit on its own file', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { iatt, fd } = await create(g, g.itable.root, 'suid', 0o4755, USER);
    await fd.unref();
    const st = fs.statSync(path.join(dir, 'suid'));
    expect([st.uid, st.mode & 0o7777]).toEqual([1000, 0o4755]);
    expect(iatt.mode & 0o7777).toBe(0o4755);
  });
});

describe('the fop contract (src/core/fops.ts): fops fail only by throwing FopError', () => {
  test('errors from storage/posix are FopErrors with a positive errno', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const { fd, inode } = await create(g, root, 'f', 0o644);
    await fd.unref();
    const failures: [string, () => Promise<unknown>][] = [
      ['create EEXIST', () => create(g, root, 'f', 0o644).then(async (r) => r.fd.unref())],
      ['mkdir EEXIST', () => mkdir(g, root, 'f', 0o755)],
      ['unlink ENOENT', () => g.top.unlink(g.frame('unlink'), { path: '/missing', parent: root, name: 'missing' })],
      ['rmdir ENOTDIR', () => g.top.rmdir(g.frame('rmdir'), { path: '/f', parent: root, name: 'f' })],
      ['getxattr ENODATA', () => g.top.getxattr(g.frame('getxattr'), { path: '/f', inode }, 'user.none')],
      ['readlink EINVAL', () => g.top.readlink(g.frame('readlink'), { path: '/f', inode })],
    ];
    const seen: Record<string, { isFopError: boolean; errno: number }> = {};
    for (const [what, run] of failures) {
      try {
        await within(run());
        seen[what] = { isFopError: false, errno: 0 };
      } catch (e) {
        seen[what] = { isFopError: e instanceof FopError, errno: (e as { errno?: number }).errno ?? 0 };
      }
    }
    const ok = { isFopError: true, errnoPositive: true };
    const got = Object.fromEntries(Object.entries(seen).map(([what, r]) => [what, { isFopError: r.isFopError, errnoPositive: r.errno > 0 }]));
    expect(got).toEqual(Object.fromEntries(failures.map(([what]) => [what, ok])));
  });
});
