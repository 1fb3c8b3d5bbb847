// storage/posix: rename flags (RENAME_NOREPLACE, RENAME_EXCHANGE), readdirp, fallocate,
// seek (SEEK_DATA/SEEK_HOLE), lk (ENOSYS: locks live in features/locks), and open flags
// reaching the backing file (O_APPEND across two graphs, O_SYNC, O_DSYNC, O_NOATIME,
// O_DIRECT as O_DSYNC). Needs root: trusted.* xattrs, mount (a tmpfs).

import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import {
  FALLOC_FL_KEEP_SIZE,
  FALLOC_FL_PUNCH_HOLE,
  FALLOC_FL_ZERO_RANGE,
  RENAME_EXCHANGE,
  RENAME_NOREPLACE,
  ROOT_GFID,
} from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, lookup, lookupInode, nameless, startGraph, stopGraph, tempDir } from '../helpers/graphs';
import { create, createFile, listAll, mkdir, open, openDir, readAllFd, symlink } from './posix-helpers';

const { O_RDWR, O_WRONLY, O_RDONLY, O_APPEND, O_SYNC, O_DSYNC, O_DIRECT, O_NOATIME, S_IFMT, S_IFDIR, S_IFREG } = fs.constants;
const MiB = 1024 * 1024;

const mounts: string[] = [];
afterEach(async () => {
  // A test that failed before unmounting: detach its mount (lazily: a graph may still hold it).
  for (const m of mounts.splice(0)) execFileSync('umount', ['-l', m]);
  await cleanupGraphs();
});

const dirHandleTarget = (parent: string, name: string) => `../${parent.slice(0, 2)}/${parent}/${name}`;
const rename = (g: Graph, from: [Inode, string], to: [Inode, string], flags: number) =>
  g.top.rename(g.frame('rename'), { parent: from[0], name: from[1] }, { parent: to[0], name: to[1] }, flags);

// --- rename flags ----------------------------------------------------------------------

describe('rename flags', () => {
  test('RENAME_NOREPLACE: EEXIST on an existing file or directory (nothing changes); a free name works', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const a = await createFile(g, root, 'a', 'A');
    await createFile(g, root, 'b', 'B');
    const d = await mkdir(g, root, 'd');
    await mkdir(g, root, 'e');
    expect(await errCode(rename(g, [root, 'a'], [root, 'b'], RENAME_NOREPLACE))).toBe('EEXIST');
    expect(await errCode(rename(g, [root, 'd'], [root, 'e'], RENAME_NOREPLACE))).toBe('EEXIST');
    expect(await errCode(rename(g, [root, 'a'], [root, 'e'], RENAME_NOREPLACE))).toBe('EEXIST');
    expect(fs.readFileSync(path.join(dir, 'a'), 'utf8')).toBe('A');
    expect(fs.readFileSync(path.join(dir, 'b'), 'utf8')).toBe('B');
    expect(fs.readdirSync(dir).sort()).toEqual(['.xlstack', 'a', 'b', 'd', 'e']);

    expect((await rename(g, [root, 'a'], [root, 'c'], RENAME_NOREPLACE)).gfid).toBe(a.gfid);
    expect((await rename(g, [root, 'd'], [root, 'd2'], RENAME_NOREPLACE)).gfid).toBe(d.gfid);
    expect(fs.readlinkSync(handlePath(dir, d.gfid))).toBe(dirHandleTarget(ROOT_GFID, 'd2'));
    expect((await nameless(g, d.gfid)).ino).toBe(fs.statSync(path.join(dir, 'd2')).ino);
  });

  test('RENAME_EXCHANGE of two directories in different parents: both handles follow, after a restart too', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const p = await mkdir(g, root, 'p');
    const a = await mkdir(g, root, 'a');
    const b = await mkdir(g, p, 'b');
    await createFile(g, a, 'in-a', 'a');
    await createFile(g, b, 'in-b', 'b');
    const ia = await rename(g, [root, 'a'], [p, 'b'], RENAME_EXCHANGE);
    expect(ia.gfid).toBe(a.gfid);
    // on disk: swapped
    expect(fs.readdirSync(path.join(dir, 'a'))).toEqual(['in-b']);
    expect(fs.readdirSync(path.join(dir, 'p', 'b'))).toEqual(['in-a']);
    // by name and by handle
    expect((await lookup(g, root, 'a')).gfid).toBe(b.gfid);
    expect((await lookup(g, p, 'b')).gfid).toBe(a.gfid);
    expect(fs.readlinkSync(handlePath(dir, a.gfid))).toBe(dirHandleTarget(p.gfid, 'b'));
    expect(fs.readlinkSync(handlePath(dir, b.gfid))).toBe(dirHandleTarget(ROOT_GFID, 'a'));
    // a directory used by GFID lands where it is now
    await createFile(g, g.itable.get(a.gfid), 'new-in-a', 'x');
    expect(fs.existsSync(path.join(dir, 'p', 'b', 'new-in-a'))).toBe(true);
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    expect((await nameless(g2, a.gfid)).ino).toBe(fs.statSync(path.join(dir, 'p', 'b')).ino);
    expect((await nameless(g2, b.gfid)).ino).toBe(fs.statSync(path.join(dir, 'a')).ino);
    const b2 = g2.itable.link(await nameless(g2, b.gfid));
    await createFile(g2, b2, 'new-in-b', 'y');
    expect(fs.readdirSync(path.join(dir, 'a')).sort()).toEqual(['in-b', 'new-in-b']);
  });

  test('RENAME_EXCHANGE of a directory and a file: the directory handle follows, the file keeps its own', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const sub = await mkdir(g, root, 'sub');
    const d = await mkdir(g, root, 'd');
    const f = await createFile(g, sub, 'f', 'file data');
    await rename(g, [root, 'd'], [sub, 'f'], RENAME_EXCHANGE);
    expect(fs.statSync(path.join(dir, 'd')).isFile()).toBe(true);
    expect(fs.statSync(path.join(dir, 'sub', 'f')).isDirectory()).toBe(true);
    expect((await lookup(g, root, 'd')).gfid).toBe(f.gfid);
    expect((await lookup(g, sub, 'f')).gfid).toBe(d.gfid);
    expect(fs.readlinkSync(handlePath(dir, d.gfid))).toBe(dirHandleTarget(sub.gfid, 'f'));
    expect(fs.lstatSync(handlePath(dir, f.gfid)).ino).toBe(fs.statSync(path.join(dir, 'd')).ino);
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    expect((await nameless(g2, d.gfid)).mode & S_IFMT).toBe(S_IFDIR);
    expect((await nameless(g2, d.gfid)).ino).toBe(fs.statSync(path.join(dir, 'sub', 'f')).ino);
    expect((await nameless(g2, f.gfid)).size).toBe(9);
  });

  test('RENAME_EXCHANGE with a side missing is ENOENT; bad flag combinations are EINVAL; nothing changes', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    await createFile(g, root, 'a', 'A');
    const d = await mkdir(g, root, 'd');
    expect(await errCode(rename(g, [root, 'a'], [root, 'missing'], RENAME_EXCHANGE))).toBe('ENOENT');
    expect(await errCode(rename(g, [root, 'missing'], [root, 'a'], RENAME_EXCHANGE))).toBe('ENOENT');
    expect(await errCode(rename(g, [root, 'a'], [root, 'b'], RENAME_EXCHANGE | RENAME_NOREPLACE))).toBe('EINVAL');
    expect(await errCode(rename(g, [root, 'a'], [root, 'b'], 4 /* RENAME_WHITEOUT */))).toBe('EINVAL');
    expect(fs.readdirSync(dir).sort()).toEqual(['.xlstack', 'a', 'd']);
    expect(fs.readlinkSync(handlePath(dir, d.gfid))).toBe(dirHandleTarget(ROOT_GFID, 'd'));
  });
});

// --- readdirp ------------------------------------------------------------------------------

describe('readdirp', () => {
  test('each entry has the attributes lookup gives, and the same cookies as readdir', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    await mkdir(g, root, 'sub');
    await symlink(g, root, 'lnk', 'sub');
    for (let i = 0; i < 30; i++) await createFile(g, root, `f${i}`, 'x'.repeat(i));
    const plain = await listAll(g, root, false, 300);
    const plus = await listAll(g, root, true, 300);
    expect(plus.map((e) => [e.name, e.offset, e.ino, e.type])).toEqual(plain.map((e) => [e.name, e.offset, e.ino, e.type]));
    for (const e of plus) {
      const ia = await lookup(g, root, e.name);
      expect({ name: e.name, iatt: e.iatt }).toEqual({ name: e.name, iatt: ia });
    }
    // continuing a readdirp listing from a readdir cookie gives what follows it
    const fd = await openDir(g, root);
    try {
      const rest = await g.top.readdirp(g.frame('readdirp'), fd, 1 << 20, plain[9].offset);
      expect(rest.map((e) => e.name)).toEqual(plain.slice(10).map((e) => e.name));
    } finally {
      await fd.unref();
    }
  });

  test('entries made outside xlstack get their GFID and handle exactly as a lookup gives them', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'outside-file'), 'o');
    fs.mkdirSync(path.join(dir, 'outside-dir'));
    fs.symlinkSync('outside-file', path.join(dir, 'outside-link'));
    const g = await startGraph(dir);
    const plus = await listAll(g, g.itable.root, true);
    const by = Object.fromEntries(plus.map((e) => [e.name, e.iatt!]));
    expect(Object.keys(by).sort()).toEqual(['outside-dir', 'outside-file', 'outside-link']);
    for (const name of Object.keys(by)) {
      const stored = sys.getxattr(path.join(dir, name), 'trusted.gfid').toString('hex');
      expect({ name, stored }).toEqual({ name, stored: by[name].gfid.replace(/-/g, '') });
      expect({ name, gfid: (await lookup(g, g.itable.root, name)).gfid }).toEqual({ name, gfid: by[name].gfid });
      expect((await nameless(g, by[name].gfid)).ino).toBe(by[name].ino);
    }
    // the new handle link is not counted, as lookup does not count it
    expect(by['outside-file'].nlink).toBe(1);
    expect(fs.lstatSync(handlePath(dir, by['outside-file'].gfid)).ino).toBe(by['outside-file'].ino);
    expect(fs.readlinkSync(handlePath(dir, by['outside-dir'].gfid))).toBe(dirHandleTarget(ROOT_GFID, 'outside-dir'));
  });

  test('an entry that vanished between listing and stat is given with no attributes', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    for (let i = 0; i < 20; i++) await createFile(g, root, `e${i}`);
    const order = (await listAll(g, root)).map((e) => e.name);
    const fd = await openDir(g, root);
    try {
      // The first batch reads the whole (small) directory from the backing fs; the rest is
      // handed out from what was read.
      const first = await g.top.readdirp(g.frame('readdirp'), fd, 1, 0);
      expect(first.map((e) => e.name)).toEqual([order[0]]);
      const victim = order[5];
      fs.unlinkSync(path.join(dir, victim));
      const rest = await g.top.readdirp(g.frame('readdirp'), fd, 1 << 20, first[0].offset);
      expect(rest.map((e) => e.name)).toEqual(order.slice(1));
      const gone = rest.find((e) => e.name === victim)!;
      expect(gone.iatt).toBeUndefined();
      expect(rest.filter((e) => e.iatt === undefined).map((e) => e.name)).toEqual([victim]);
    } finally {
      await fd.unref();
    }
  });

  test('readdirp on a file fd is ENOTDIR', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd } = await create(g, g.itable.root, 'f');
    try {
      expect(await errCode(g.top.readdirp(g.frame('readdirp'), fd, 4096, 0))).toBe('ENOTDIR');
    } finally {
      await fd.unref();
    }
  });
});

// --- fallocate and seek ----------------------------------------------------------------------

describe('fallocate', () => {
  async function fileWith(g: Graph, data: Buffer): Promise<Fd> {
    const { fd } = await create(g, g.itable.root, `f${Math.random().toString(36).slice(2)}`);
    if (data.length) await g.top.write(g.frame('write'), fd, data, 0);
    return fd;
  }
  const fstat = (g: Graph, fd: Fd) => g.top.fstat(g.frame('fstat'), fd);
  const fall = (g: Graph, fd: Fd, mode: number, off: number, len: number) => g.top.fallocate(g.frame('fallocate'), fd, mode, off, len);
  const pattern = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => 1 + (i % 251)));

  test('mode 0 allocates and extends; KEEP_SIZE allocates past the end without growing the file', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const fd = await fileWith(g, Buffer.alloc(0));
    try {
      await fall(g, fd, 0, 0, MiB);
      let st = await fstat(g, fd);
      expect(st.size).toBe(MiB);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(MiB);
      expect((await g.top.read(g.frame('read'), fd, MiB, 0)).equals(Buffer.alloc(MiB))).toBe(true);
      await fall(g, fd, FALLOC_FL_KEEP_SIZE, MiB, MiB);
      st = await fstat(g, fd);
      expect(st.size).toBe(MiB);
      expect(st.blocks * 512).toBeGreaterThanOrEqual(2 * MiB);
    } finally {
      await fd.unref();
    }
  });

  test('PUNCH_HOLE|KEEP_SIZE zeroes the range and frees its blocks; PUNCH_HOLE alone is EOPNOTSUPP', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const data = pattern(MiB);
    const fd = await fileWith(g, data);
    try {
      await g.top.fsync(g.frame('fsync'), fd, false);
      const before = await fstat(g, fd);
      expect(await errCode(fall(g, fd, FALLOC_FL_PUNCH_HOLE, 0, 4096))).toBe('EOPNOTSUPP');
      await fall(g, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 256 * 1024, 512 * 1024);
      const after = await fstat(g, fd);
      expect(after.size).toBe(MiB);
      expect(after.blocks * 512).toBeLessThanOrEqual(before.blocks * 512 - 512 * 1024);
      const back = await readAllFd(g, fd);
      const want = Buffer.from(data);
      want.fill(0, 256 * 1024, 768 * 1024);
      expect(back.equals(want)).toBe(true);
    } finally {
      await fd.unref();
    }
  });

  test('ZERO_RANGE zeroes a range; past the end it grows the file, unless KEEP_SIZE', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const data = pattern(64 * 1024);
    const fd = await fileWith(g, data);
    try {
      await fall(g, fd, FALLOC_FL_ZERO_RANGE, 1000, 3000);
      const want = Buffer.from(data);
      want.fill(0, 1000, 4000);
      expect((await readAllFd(g, fd)).equals(want)).toBe(true);
      expect((await fstat(g, fd)).size).toBe(64 * 1024);
      await fall(g, fd, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE, 60 * 1024, 64 * 1024);
      expect((await fstat(g, fd)).size).toBe(64 * 1024);
      const zeroedTail = Buffer.from(want);
      zeroedTail.fill(0, 60 * 1024);
      expect((await readAllFd(g, fd)).equals(zeroedTail)).toBe(true);
      await fall(g, fd, FALLOC_FL_ZERO_RANGE, 64 * 1024, 64 * 1024);
      expect((await fstat(g, fd)).size).toBe(128 * 1024);
      expect((await readAllFd(g, fd)).equals(Buffer.concat([zeroedTail, Buffer.alloc(64 * 1024)]))).toBe(true);
    } finally {
      await fd.unref();
    }
  });

  test('modes FUSE does not pass (collapse, insert range) are EOPNOTSUPP; a zero length EINVAL; a directory EISDIR', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const data = pattern(64 * 1024);
    const fd = await fileWith(g, data);
    try {
      expect(await errCode(fall(g, fd, 0x08 /* COLLAPSE_RANGE */, 0, 4096))).toBe('EOPNOTSUPP');
      expect(await errCode(fall(g, fd, 0x20 /* INSERT_RANGE */, 0, 4096))).toBe('EOPNOTSUPP');
      expect(await errCode(fall(g, fd, 0, 0, 0))).toBe('EINVAL');
      expect((await readAllFd(g, fd)).equals(data)).toBe(true);
    } finally {
      await fd.unref();
    }
    const dfd = await openDir(g, g.itable.root);
    try {
      expect(await errCode(fall(g, dfd, 0, 0, 4096))).toBe('EISDIR');
    } finally {
      await dfd.unref();
    }
  });

  test('where the backing filesystem refuses a mode (tmpfs: ZERO_RANGE), EOPNOTSUPP and the file is unchanged', async () => {
    const mnt = path.join(tempDir(), 'tmpfs');
    fs.mkdirSync(mnt);
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m', 'tmpfs', mnt]);
    mounts.push(mnt);
    const g = await startGraph(mnt);
    const data = pattern(16 * 1024);
    const fd = await fileWith(g, data);
    try {
      expect(await errCode(fall(g, fd, FALLOC_FL_ZERO_RANGE, 0, 4096))).toBe('EOPNOTSUPP');
      expect((await readAllFd(g, fd)).equals(data)).toBe(true);
      // what tmpfs does support works there
      await fall(g, fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 0, 4096);
      expect((await readAllFd(g, fd)).subarray(0, 4096).equals(Buffer.alloc(4096))).toBe(true);
    } finally {
      await fd.unref();
      await stopGraph(g);
      execFileSync('umount', [mounts.pop()!]);
    }
  });
});

describe('seek', () => {
  test('SEEK_DATA and SEEK_HOLE find the data and holes of a sparse file; ENXIO past the end', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const block = fs.statSync(dir).blksize;
    const { fd } = await create(g, g.itable.root, 'sparse');
    try {
      await g.top.write(g.frame('write'), fd, Buffer.alloc(block, 0x61), 0);
      await g.top.write(g.frame('write'), fd, Buffer.alloc(block, 0x62), MiB);
      await g.top.fsync(g.frame('fsync'), fd, false);
      const size = MiB + block;
      const seek = (off: number, what: 'data' | 'hole') => g.top.seek(g.frame('seek'), fd, off, what);
      expect(await seek(0, 'data')).toBe(0);
      expect(await seek(0, 'hole')).toBe(block);
      expect(await seek(block, 'data')).toBe(MiB);
      expect(await seek(block + 10, 'hole')).toBe(block + 10);
      expect(await seek(MiB, 'hole')).toBe(size);
      expect(await seek(MiB + 1, 'data')).toBe(MiB + 1);
      expect(await errCode(seek(size, 'data'))).toBe('ENXIO');
      expect(await errCode(seek(size, 'hole'))).toBe('ENXIO');
      expect(await errCode(seek(size + MiB, 'data'))).toBe('ENXIO');
    } finally {
      await fd.unref();
    }
  });
});

describe('lk', () => {
  test('posix keeps no locks: ENOSYS for every command and kind', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const { fd } = await create(g, g.itable.root, 'f');
    try {
      const lock = { type: 'write' as const, start: 0, end: 10, pid: 1 };
      for (const cmd of ['get', 'set', 'wait'] as const) {
        for (const kind of ['posix', 'flock'] as const) expect({ cmd, kind, code: await errCode(g.top.lk(g.frame('lk'), fd, cmd, lock, kind)) }).toEqual({ cmd, kind, code: 'ENOSYS' });
      }
    } finally {
      await fd.unref();
    }
  });
});

// --- open flags ------------------------------------------------------------------------------

/** The flags of the backing file posix opened for `fd` (from /proc/self/fdinfo). */
function backingFlags(fd: Fd): number {
  const ctx = [...fd.ctx.values()].find((v) => (v as { kind?: string }).kind === 'file') as { osfd: number };
  const info = fs.readFileSync(`/proc/self/fdinfo/${ctx.osfd}`, 'utf8');
  return parseInt(/^flags:\s+([0-7]+)$/m.exec(info)![1], 8);
}

describe('open flags reach the backing file', () => {
  test('O_APPEND, O_SYNC, O_DSYNC and O_NOATIME on create and open; O_DIRECT becomes O_DSYNC', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const has = (flags: number, bit: number) => (flags & bit) === bit;
    const cases: [string, number, number[], number[]][] = [
      ['plain', O_RDWR, [], [O_APPEND, O_DSYNC, O_NOATIME, O_DIRECT]],
      ['append', O_WRONLY | O_APPEND, [O_APPEND], [O_DSYNC]],
      ['sync', O_RDWR | O_SYNC, [O_SYNC, O_DSYNC], [O_APPEND]],
      ['dsync', O_RDWR | O_DSYNC, [O_DSYNC], [O_SYNC & ~O_DSYNC]],
      ['noatime', O_RDONLY | O_NOATIME, [O_NOATIME], []],
      ['direct', O_RDWR | O_DIRECT, [O_DSYNC], [O_DIRECT]],
    ];
    for (const [label, flags, want, not] of cases) {
      const made = await create(g, root, label, 0o644, flags);
      const onCreate = backingFlags(made.fd);
      await made.fd.unref();
      const fd = await open(g, made.inode, flags);
      const onOpen = backingFlags(fd);
      await fd.unref();
      for (const [when, f] of [['create', onCreate], ['open', onOpen]] as const) {
        expect({ label, when, has: want.map((b) => has(f, b)), hasNot: not.map((b) => has(f, b)) }).toEqual({
          label,
          when,
          has: want.map(() => true),
          hasNot: not.map(() => false),
        });
      }
    }
  });

  test('O_APPEND from two graphs on one backing directory: stale offsets still append, every record is kept', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const g2 = await startGraph(dir, 2);
    const made = await create(g1, g1.itable.root, 'log', 0o644, O_WRONLY | O_APPEND);
    const fd1 = made.fd;
    const f2 = await lookupInode(g2, g2.itable.root, 'log');
    const fd2 = await open(g2, f2, O_WRONLY | O_APPEND);
    const records: Buffer[] = [];
    // Each side passes the end as it last knew it (what it wrote itself): stale after the other's writes.
    const known = new Map<Fd, number>([
      [fd1, 0],
      [fd2, 0],
    ]);
    try {
      for (let i = 0; i < 10; i++) {
        for (const [g, fd, who] of [[g1, fd1, 'one'], [g2, fd2, 'two']] as const) {
          // every third record larger than a synchronous write, to take the other path
          const rec = Buffer.from(`${who}:${i}:`.padEnd(i % 3 === 2 ? 100_000 : 50, who[0]) + '\n');
          records.push(rec);
          expect(await g.top.write(g.frame('write'), fd, rec, known.get(fd)!)).toBe(rec.length);
          known.set(fd, known.get(fd)! + rec.length);
        }
      }
    } finally {
      await fd1.unref();
      await fd2.unref();
    }
    expect(fs.readFileSync(path.join(dir, 'log')).equals(Buffer.concat(records))).toBe(true);
    expect((await lookup(g2, g2.itable.root, 'log')).mode & S_IFMT).toBe(S_IFREG);
  });
});
