// storage/posix has no PATH_MAX of its own: every call works relative to an open directory,
// so a tree deeper than PATH_MAX works for every fop, before and after a restart (when
// directories are found again from their handles, one component at a time), and however
// few directory fds stay open. Needs root: trusted.* xattrs.

import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, RENAME_EXCHANGE, RENAME_NOREPLACE } from '../../src/core/types';
import { DIR_FDS_MAX } from '../../xlators/storage/posix/handles';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, lookup, lookupInode, nameless, startGraph, stopGraph, tempDir } from '../helpers/graphs';
import { create, createFile, listAll, mkdir, mknod, open, openDir, symlink } from './posix-helpers';

const { O_RDONLY, O_DIRECTORY, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO, R_OK, W_OK } = fs.constants;
const PATH_MAX = 4096;

// Trees deeper than PATH_MAX are beyond fs.rmSync (it works with paths): GNU rm walks with fds.
const deepDirs: string[] = [];
afterEach(async () => {
  for (const d of deepDirs.splice(0)) execFileSync('rm', ['-rf', '--', d]);
  await cleanupGraphs();
});

function deepTempDir(): string {
  const d = tempDir();
  deepDirs.push(d);
  return d;
}

/** Opens a path component by component (each open short), as a check independent of posix. */
function existsDeep(dir: string, names: string[]): fs.Stats | undefined {
  let fd = fs.openSync(dir, O_RDONLY | O_DIRECTORY);
  try {
    for (const [i, name] of names.entries()) {
      const last = i === names.length - 1;
      const next = `/proc/self/fd/${fd}/${name}`;
      if (last) return fs.lstatSync(next, { throwIfNoEntry: false });
      const nfd = fs.openSync(next, O_RDONLY | O_DIRECTORY | fs.constants.O_NOFOLLOW);
      fs.closeSync(fd);
      fd = nfd;
    }
    return fs.fstatSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** A chain of `depth` directories named by `nameOf(level)`; returns their inodes, top first. */
async function chain(g: Graph, depth: number, nameOf: (i: number) => string): Promise<Inode[]> {
  const out: Inode[] = [];
  let parent = g.itable.root;
  for (let i = 0; i < depth; i++) {
    parent = await mkdir(g, parent, nameOf(i));
    out.push(parent);
  }
  return out;
}

const DEPTH = 300;
const deepName = (i: number) => `${String(i).padStart(3, '0')}-`.padEnd(210, 'd');

describe('a tree deeper than PATH_MAX', () => {
  test(`${DEPTH} levels of 210-byte names: every fop at the bottom, then again after a restart`, async () => {
    const dir = deepTempDir();
    const g = await startGraph(dir);
    const dirs = await chain(g, DEPTH, deepName);
    const names = dirs.map((_, i) => deepName(i));
    const bottom = dirs[DEPTH - 1];
    expect(Buffer.byteLength(path.join(dir, ...names))).toBeGreaterThan(60 * 1024);

    // files: create, write, read, fstat, fsetattr, ftruncate, fallocate, seek, fsync, flush
    const { fd, inode: f } = await create(g, bottom, 'file');
    try {
      expect(await g.top.write(g.frame('write'), fd, Buffer.from('deep data'), 0)).toBe(9);
      expect((await g.top.read(g.frame('read'), fd, 100, 0)).toString()).toBe('deep data');
      expect((await g.top.fstat(g.frame('fstat'), fd)).size).toBe(9);
      expect((await g.top.fsetattr(g.frame('fsetattr'), fd, { mode: 0o600 })).mode & 0o7777).toBe(0o600);
      expect((await g.top.ftruncate(g.frame('ftruncate'), fd, 4)).size).toBe(4);
      await g.top.fallocate(g.frame('fallocate'), fd, FALLOC_FL_KEEP_SIZE, 0, 8192);
      await g.top.fallocate(g.frame('fallocate'), fd, FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE, 0, 2);
      expect((await g.top.read(g.frame('read'), fd, 100, 0)).toString('latin1')).toBe('\0\0ep');
      expect(await g.top.seek(g.frame('seek'), fd, 0, 'data')).toBe(0);
      await g.top.fsync(g.frame('fsync'), fd, false);
      await g.top.flush(g.frame('flush'), fd);
    } finally {
      await fd.unref();
    }
    // by inode: lookup, stat, access, setattr, truncate, open, xattrs
    expect((await lookup(g, bottom, 'file')).gfid).toBe(f.gfid);
    expect((await g.top.stat(g.frame('stat'), { inode: f })).size).toBe(4);
    await g.top.access(g.frame('access'), { inode: f }, R_OK | W_OK);
    expect((await g.top.setattr(g.frame('setattr'), { inode: f }, { mtime: { sec: 42, nsec: 7 } })).mtime).toEqual({ sec: 42, nsec: 7 });
    expect((await g.top.truncate(g.frame('truncate'), { inode: f }, 2)).size).toBe(2);
    const rfd = await open(g, f, O_RDONLY);
    expect((await g.top.read(g.frame('read'), rfd, 10, 0)).length).toBe(2);
    await rfd.unref();
    await g.top.setxattr(g.frame('setxattr'), { inode: f }, 'user.deep', Buffer.from('v'), 0);
    expect((await g.top.getxattr(g.frame('getxattr'), { inode: f }, 'user.deep')).toString()).toBe('v');
    expect(await g.top.listxattr(g.frame('listxattr'), { inode: bottom })).toEqual([]);
    await g.top.setxattr(g.frame('setxattr'), { inode: bottom }, 'user.dir', Buffer.from('d'), 0);
    await g.top.removexattr(g.frame('removexattr'), { inode: f }, 'user.deep');
    // namespace: mknod, symlink, readlink, link, rename (flags too), mkdir, statfs
    await mknod(g, bottom, 'fifo', S_IFIFO | 0o600);
    const s = await symlink(g, bottom, 'link', '../'.repeat(DEPTH));
    expect(await g.top.readlink(g.frame('readlink'), { inode: s })).toBe('../'.repeat(DEPTH));
    await g.top.link(g.frame('link'), { inode: f }, { parent: bottom, name: 'hard' });
    await g.top.rename(g.frame('rename'), { parent: bottom, name: 'hard' }, { parent: dirs[DEPTH - 2], name: 'moved-up' }, RENAME_NOREPLACE);
    const sub = await mkdir(g, bottom, 'sub');
    await g.top.rename(g.frame('rename'), { parent: bottom, name: 'sub' }, { parent: dirs[DEPTH - 2], name: 'moved-up' }, RENAME_EXCHANGE);
    expect((await lookup(g, bottom, 'sub')).mode & S_IFMT).toBe(S_IFREG);
    expect((await lookup(g, dirs[DEPTH - 2], 'moved-up')).gfid).toBe(sub.gfid);
    expect((await g.top.statfs(g.frame('statfs'), { inode: bottom })).blocks).toBeGreaterThan(0);
    // directories: opendir, readdir, readdirp, fsyncdir
    expect((await listAll(g, bottom)).map((e) => e.name).sort()).toEqual(['fifo', 'file', 'link', 'sub']);
    const plus = await listAll(g, bottom, true);
    expect(plus.map((e) => [e.name, e.iatt!.mode & S_IFMT]).sort()).toEqual([['fifo', S_IFIFO], ['file', S_IFREG], ['link', S_IFLNK], ['sub', S_IFREG]]);
    const dfd = await openDir(g, bottom);
    await g.top.fsyncdir(g.frame('fsyncdir'), dfd, true);
    await dfd.unref();
    // what is on disk, checked without posix and without long paths
    expect(existsDeep(dir, [...names, 'file'])?.size).toBe(2);
    expect(existsDeep(dir, [...names.slice(0, -1), 'moved-up'])?.isDirectory()).toBe(true);

    // After a restart no directory is open: each is found again from its handle.
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    const b2 = await nameless(g2, bottom.gfid);
    expect(b2.mode & S_IFMT).toBe(S_IFDIR);
    expect((await nameless(g2, f.gfid)).size).toBe(2);
    const bottom2 = g2.itable.link(b2);
    expect((await g2.top.getxattr(g2.frame('getxattr'), { inode: bottom2 }, 'user.dir')).toString()).toBe('d');
    const f2 = await createFile(g2, bottom2, 'after-restart', 'again');
    expect(existsDeep(dir, [...names, 'after-restart'])?.size).toBe(5);
    expect((await listAll(g2, bottom2)).map((e) => e.name).sort()).toEqual(['after-restart', 'fifo', 'file', 'link', 'sub']);
    // and a name-by-name walk down agrees
    let cur = g2.itable.root;
    for (const n of names) cur = await lookupInode(g2, cur, n);
    expect(cur.gfid).toBe(bottom.gfid);

    // everything removes, bottom up: nothing is left that nobody can remove
    for (const n of ['after-restart', 'file', 'fifo', 'link', 'sub']) await g2.top.unlink(g2.frame('unlink'), { parent: bottom2, name: n });
    expect(await errCode(nameless(g2, f2.gfid))).toBe('ESTALE');
    await g2.top.rmdir(g2.frame('rmdir'), { parent: g2.itable.get(dirs[DEPTH - 2].gfid), name: 'moved-up' });
    for (let i = DEPTH - 1; i >= 0; i--) {
      const parent = i === 0 ? g2.itable.root : g2.itable.get(dirs[i - 1].gfid);
      await g2.top.rmdir(g2.frame('rmdir'), { parent, name: names[i] });
    }
    expect(fs.readdirSync(dir)).toEqual(['.xlstack']);
    expect(fs.readdirSync(path.join(dir, '.xlstack', 'tmp'))).toEqual([]);
  });

  test('a chain deeper than the directory fds kept open is found again after a restart', async () => {
    const dir = deepTempDir();
    const g = await startGraph(dir);
    const depth = DIR_FDS_MAX + 100;
    const dirs = await chain(g, depth, (i) => `l${i}`);
    const bottom = dirs[depth - 1];
    await createFile(g, bottom, 'f', 'bottom');
    await stopGraph(g);

    const g2 = await startGraph(dir, 2);
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    const ia = await nameless(g2, bottom.gfid);
    expect(ia.mode & S_IFMT).toBe(S_IFDIR);
    const b = g2.itable.link(ia);
    expect((await lookup(g2, b, 'f')).size).toBe(6);
    await createFile(g2, b, 'g', 'new');
    expect(existsDeep(dir, [...dirs.map((_, i) => `l${i}`), 'g'])?.size).toBe(3);
    // at most DIR_FDS_MAX directories stay open, whatever the depth
    const state = g2.top.dump() as { dirFds: number };
    expect(state.dirFds).toBeLessThanOrEqual(DIR_FDS_MAX);
    expect(fs.readdirSync('/proc/self/fd').length - fdsBefore).toBeLessThanOrEqual(DIR_FDS_MAX + 2);
  });
});

describe('directory fds are bounded and reopened on demand', () => {
  test(`${DIR_FDS_MAX + 50} directories used in turn: each works, at most ${DIR_FDS_MAX} stay open`, async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const n = DIR_FDS_MAX + 50;
    const dirs: Inode[] = [];
    for (let i = 0; i < n; i++) dirs.push(await mkdir(g, root, `d${i}`));
    const fdsBefore = fs.readdirSync('/proc/self/fd').length;
    // in creation order, so each is the least recently used one when its turn comes
    for (const [i, d] of dirs.entries()) await createFile(g, d, 'f', String(i));
    for (const [i, d] of dirs.entries()) expect({ i, size: (await lookup(g, d, 'f')).size }).toEqual({ i, size: String(i).length });
    expect((g.top.dump() as { dirFds: number }).dirFds).toBeLessThanOrEqual(DIR_FDS_MAX);
    expect(fs.readdirSync('/proc/self/fd').length - fdsBefore).toBeLessThanOrEqual(DIR_FDS_MAX);
    for (let i = 0; i < n; i += 97) expect(fs.readFileSync(path.join(dir, `d${i}`, 'f'), 'utf8')).toBe(String(i));
  });
});

describe('backing paths around PATH_MAX', () => {
  /** Directories under `dir` so that dir/.../<name of nameLen bytes> is exactly `total` bytes. */
  async function pathOfLength(g: Graph, dir: string, total: number): Promise<{ parent: Inode; name: string; parts: string[] }> {
    const parts: string[] = [];
    let len = Buffer.byteLength(dir);
    let parent = g.itable.root;
    // each level adds '/' + 200 bytes; stop when one last name of 1..255 bytes makes `total`
    while (total - len - 1 > 255) {
      const name = `p${parts.length}`.padEnd(200, 'p');
      parent = await mkdir(g, parent, name);
      parts.push(name);
      len += 1 + name.length;
    }
    const name = 'n'.repeat(total - len - 1);
    return { parent, name, parts };
  }

  test.each([PATH_MAX - 1, PATH_MAX, PATH_MAX + 1])('create, use and remove an entry whose backing path is %i bytes', async (total) => {
    const dir = deepTempDir();
    const g = await startGraph(dir);
    const { parent, name, parts } = await pathOfLength(g, dir, total);
    expect(Buffer.byteLength(path.join(dir, ...parts, name))).toBe(total);

    const f = await createFile(g, parent, name, 'at the limit');
    expect((await lookup(g, parent, name)).gfid).toBe(f.gfid);
    expect((await nameless(g, f.gfid)).size).toBe(12);
    await g.top.setxattr(g.frame('setxattr'), { parent, name, inode: f }, 'user.x', Buffer.from('1'), 0);
    await g.top.rename(g.frame('rename'), { parent, name }, { parent, name: name.slice(1) + 'm' }, 0);
    await g.top.unlink(g.frame('unlink'), { parent, name: name.slice(1) + 'm' });
    expect(await errCode(nameless(g, f.gfid))).toBe('ESTALE');
    const d = await mkdir(g, parent, name);
    await symlink(g, d, 'l', 'x');
    await g.top.unlink(g.frame('unlink'), { parent: d, name: 'l' });
    await g.top.rmdir(g.frame('rmdir'), { parent, name });
    expect(existsDeep(dir, [...parts, name])).toBeUndefined();
    expect(fs.readdirSync(path.join(dir, '.xlstack', 'tmp'))).toEqual([]);
  });

  test('the addon takes a path of PATH_MAX - 1 bytes (what the kernel takes) and refuses PATH_MAX', async () => {
    const dir = deepTempDir();
    const g = await startGraph(dir);
    const { parent, name, parts } = await pathOfLength(g, dir, PATH_MAX - 1);
    await createFile(g, parent, name);
    const p = path.join(dir, ...parts, name);
    expect(Buffer.byteLength(p)).toBe(PATH_MAX - 1);
    sys.setxattr(p, 'user.at-the-limit', Buffer.from('ok'), 0);
    expect(sys.getxattr(p, 'user.at-the-limit').toString()).toBe('ok');
    expect(sys.listxattr(p)).toContain('user.at-the-limit');
    expect(() => sys.getxattr(p + 'x', 'user.at-the-limit')).toThrow(/ENAMETOOLONG/);
    // and the entry is removable through the volume
    await g.top.unlink(g.frame('unlink'), { parent, name });
    expect(existsDeep(dir, [...parts, name])).toBeUndefined();
  });
});
