// storage/posix: GFID assignment, persistence (restart, nameless lookup) and healing of
// objects made outside xlstack (new files, copies that kept their xattrs).
// Needs root: trusted.* xattrs.

import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { ROOT_GFID } from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, hex, lookup, lookupInode, nameless, newBridge, readAll, startGraph, stopGraph, tempDir, writeFile } from '../helpers/graphs';

const { O_RDWR, S_IFMT, S_IFDIR, S_IFREG, S_IFLNK, S_IFIFO } = fs.constants;

// --- helpers -------------------------------------------------------------------

afterEach(cleanupGraphs);

const storedGfid = (p: string) => sys.getxattr(p, 'trusted.gfid');

/** Walks a path by lookups, returning the inode. */
async function walk(g: Graph, p: string): Promise<Inode> {
  let cur = g.itable.root;
  for (const name of p.split('/').filter(Boolean)) cur = await lookupInode(g, cur, name);
  return cur;
}

// --- tests ---------------------------------------------------------------------------

describe('GFID assignment', () => {
  test('the backing root gets the root GFID as 16 raw bytes', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    expect(storedGfid(dir)).toEqual(Buffer.from(hex(ROOT_GFID), 'hex'));
    const ia = await g.top.lookup(g.frame('lookup'), { path: '/', inode: g.itable.root });
    expect(ia.gfid).toBe(ROOT_GFID);
    expect(ia.mode & S_IFMT).toBe(S_IFDIR);
  });

  test('create, mkdir, mknod and symlink give the requested GFID, stored as trusted.gfid and indexed', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;

    const fileG = uuidv4();
    const fileInode = g.itable.get(fileG);
    const fd = g.newFd(fileInode, O_RDWR, false);
    const fileIa = await g.top.create(g.frame('create'), { path: '/f', parent: root, name: 'f', inode: fileInode }, 0o644, fd);
    await fd.unref();

    const dirG = uuidv4();
    const dirIa = await g.top.mkdir(g.frame('mkdir'), { path: '/d', parent: root, name: 'd', inode: g.itable.get(dirG) }, 0o755);

    const nodG = uuidv4();
    const nodIa = await g.top.mknod(g.frame('mknod'), { path: '/p', parent: root, name: 'p', inode: g.itable.get(nodG) }, S_IFIFO | 0o644, 0);

    const lnkG = uuidv4();
    const lnkIa = await g.top.symlink(g.frame('symlink'), 'f', { path: '/l', parent: root, name: 'l', inode: g.itable.get(lnkG) });

    expect([fileIa.gfid, dirIa.gfid, nodIa.gfid, lnkIa.gfid]).toEqual([fileG, dirG, nodG, lnkG]);
    for (const [name, gfid] of [['f', fileG], ['d', dirG], ['p', nodG], ['l', lnkG]] as const) {
      const onDisk = storedGfid(path.join(dir, name));
      expect(onDisk.length).toBe(16);
      expect(onDisk).toEqual(Buffer.from(hex(gfid), 'hex'));
      // and a lookup by name agrees
      expect((await lookup(g, root, name)).gfid).toBe(gfid);
    }
    // Non-directories: the handle is a hard link; the directory: a symlink to parent/name.
    for (const [name, gfid] of [['f', fileG], ['p', nodG], ['l', lnkG]] as const) {
      expect(fs.lstatSync(handlePath(dir, gfid)).ino).toBe(fs.lstatSync(path.join(dir, name)).ino);
    }
    expect(fs.readlinkSync(handlePath(dir, dirG))).toBe(`../${ROOT_GFID.slice(0, 2)}/${ROOT_GFID}/d`);
    expect(fs.lstatSync(path.join(dir, 'l')).isSymbolicLink()).toBe(true);
    expect(fs.readlinkSync(path.join(dir, 'l'))).toBe('f');
  });
});

describe('GFIDs survive a restart', () => {
  test('lookups by name and nameless lookups on a new graph find the same GFIDs', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const b1 = newBridge(g1);
    await writeFile(b1, '/file', 'file data');
    await b1.mkdir('/a', 0o755);
    await b1.mkdir('/a/b', 0o755);
    await b1.mkdir('/a/b/c', 0o755);
    await writeFile(b1, '/a/b/c/inner', 'inner data');
    await b1.symlink('file', '/link');
    await b1.mkdir('/p', 0o755);
    await b1.mkdir('/p/q', 0o755);
    await writeFile(b1, '/p/q/moved', 'moved data');

    const names = ['/file', '/a', '/a/b', '/a/b/c', '/a/b/c/inner', '/link', '/p/q/moved'];
    const before = new Map<string, string>();
    for (const n of names) before.set(n, (await b1.getattr(n)).gfid);
    // A file renamed, and its parent's parent renamed, before the restart.
    await b1.rename('/p/q/moved', '/p/q/renamed');
    await b1.rename('/p', '/p2');
    await stopGraph(g1);

    const g2 = await startGraph(dir, 2);
    // by name
    for (const n of names.filter((n) => n !== '/p/q/moved')) {
      expect({ n, gfid: (await walk(g2, n)).gfid }).toEqual({ n, gfid: before.get(n) });
    }
    expect((await walk(g2, '/p2/q/renamed')).gfid).toBe(before.get('/p/q/moved'));
  });

  test('nameless lookup after a restart: file, deep directory, symlink, renamed file in a renamed directory', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const b1 = newBridge(g1);
    await writeFile(b1, '/file', 'x');
    await b1.mkdir('/a', 0o755);
    await b1.mkdir('/a/b', 0o755);
    await b1.mkdir('/a/b/c', 0o755);
    await b1.symlink('/nowhere', '/a/b/link');
    await b1.mkdir('/p', 0o755);
    await writeFile(b1, '/p/f', 'y');
    const gfid = {
      file: (await b1.getattr('/file')).gfid,
      c: (await b1.getattr('/a/b/c')).gfid,
      link: (await b1.getattr('/a/b/link')).gfid,
      pf: (await b1.getattr('/p/f')).gfid,
    };
    await b1.rename('/p/f', '/p/g');
    await b1.rename('/p', '/p2');
    await stopGraph(g1);

    const g2 = await startGraph(dir, 2);
    const file = await nameless(g2, gfid.file);
    expect(file.gfid).toBe(gfid.file);
    expect(file.mode & S_IFMT).toBe(S_IFREG);
    expect(file.ino).toBe(fs.statSync(path.join(dir, 'file')).ino);

    const c = await nameless(g2, gfid.c);
    expect(c.gfid).toBe(gfid.c);
    expect(c.mode & S_IFMT).toBe(S_IFDIR);
    expect(c.ino).toBe(fs.statSync(path.join(dir, 'a/b/c')).ino);

    const link = await nameless(g2, gfid.link);
    expect(link.gfid).toBe(gfid.link);
    expect(link.mode & S_IFMT).toBe(S_IFLNK);
    expect(link.ino).toBe(fs.lstatSync(path.join(dir, 'a/b/link')).ino);

    const pf = await nameless(g2, gfid.pf);
    expect(pf.gfid).toBe(gfid.pf);
    expect(pf.ino).toBe(fs.statSync(path.join(dir, 'p2/g')).ino);

    // The deep directory found by GFID is usable as a parent: a create lands in a/b/c.
    const cInode = g2.itable.link(c);
    const ng = uuidv4();
    await g2.top.mkdir(g2.frame('mkdir'), { path: 'new', parent: cInode, name: 'new', inode: g2.itable.get(ng) }, 0o755);
    expect(fs.statSync(path.join(dir, 'a/b/c/new')).isDirectory()).toBe(true);
  });

  test('nameless lookup of a well-formed GFID nobody has gives ESTALE', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    expect(await errCode(nameless(g, uuidv4()))).toBe('ESTALE');
    expect(await errCode(nameless(g, '0123abcd-0000-4000-8000-0000000000ff'))).toBe('ESTALE');
  });
});

describe('objects made outside xlstack', () => {
  test('a file written straight into the backing directory gets a GFID on first lookup, the same one later', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'outside-made'), 'hello');
    const g = await startGraph(dir);
    expect(() => storedGfid(path.join(dir, 'outside-made'))).toThrow(/ENODATA/);
    const first = await lookup(g, g.itable.root, 'outside-made');
    expect(first.gfid).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/);
    expect(storedGfid(path.join(dir, 'outside-made'))).toEqual(Buffer.from(hex(first.gfid), 'hex'));
    expect(fs.statSync(handlePath(dir, first.gfid)).ino).toBe(fs.statSync(path.join(dir, 'outside-made')).ino);
    const second = await lookup(g, g.itable.root, 'outside-made');
    expect(second.gfid).toBe(first.gfid);
    // reachable by GFID, and readable through the bridge
    expect((await nameless(g, first.gfid)).ino).toBe(first.ino);
    expect(await readAll(newBridge(g), '/outside-made')).toBe('hello');
    // and the same after a restart
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    expect((await lookup(g2, g2.itable.root, 'outside-made')).gfid).toBe(first.gfid);
  });

  test('the first lookup of a file made outside reports its nlink without the new handle (1)', async () => {
    const dir = tempDir();
    fs.writeFileSync(path.join(dir, 'plain'), 'hello');
    const g = await startGraph(dir);
    const first = await lookup(g, g.itable.root, 'plain');
    const second = await lookup(g, g.itable.root, 'plain');
    expect(second.nlink).toBe(1);
    expect(first.nlink).toBe(1);
  });

  test('directories and symlinks made outside get GFIDs (and directory handles) on first lookup', async () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'od/inner'), { recursive: true });
    fs.symlinkSync('od', path.join(dir, 'osym'));
    const g = await startGraph(dir);
    const od = await lookupInode(g, g.itable.root, 'od');
    const inner = await lookupInode(g, od, 'inner');
    const osym = await lookup(g, g.itable.root, 'osym');
    expect(osym.mode & S_IFMT).toBe(S_IFLNK);
    expect(storedGfid(path.join(dir, 'osym'))).toEqual(Buffer.from(hex(osym.gfid), 'hex'));
    expect(fs.readlinkSync(handlePath(dir, inner.gfid))).toBe(`../${od.gfid.slice(0, 2)}/${od.gfid}/inner`);
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    expect((await nameless(g2, inner.gfid)).ino).toBe(fs.statSync(path.join(dir, 'od/inner')).ino);
    expect((await nameless(g2, osym.gfid)).mode & S_IFMT).toBe(S_IFLNK);
  });
});

describe('copies that kept their xattrs get a GFID of their own', () => {
  function copyWithXattrs(from: string, to: string): void {
    fs.copyFileSync(from, to);
    sys.setxattr(to, 'trusted.gfid', sys.getxattr(from, 'trusted.gfid'), 0);
  }

  test('a file copied (with trusted.gfid) while the volume runs gets a different GFID; both read their own data', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/orig', 'original content');
    const origGfid = (await b.getattr('/orig')).gfid;

    copyWithXattrs(path.join(dir, 'orig'), path.join(dir, 'copy'));
    fs.writeFileSync(path.join(dir, 'copy'), 'the copy, changed');
    expect(storedGfid(path.join(dir, 'copy'))).toEqual(Buffer.from(hex(origGfid), 'hex'));

    const copyIa = await b.getattr('/copy');
    expect(copyIa.gfid).not.toBe(origGfid);
    expect((await b.getattr('/orig')).gfid).toBe(origGfid);
    expect(await readAll(b, '/orig')).toBe('original content');
    expect(await readAll(b, '/copy')).toBe('the copy, changed');
    // the copy's GFID leads to the copy, the original's to the original
    expect((await nameless(g, origGfid)).ino).toBe(fs.statSync(path.join(dir, 'orig')).ino);
    expect((await nameless(g, copyIa.gfid)).ino).toBe(fs.statSync(path.join(dir, 'copy')).ino);
  });

  test('a file copied (with trusted.gfid) while the volume is down: after restart the copy gets a new GFID, the original keeps its own', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const b1 = newBridge(g1);
    await writeFile(b1, '/orig', 'original content');
    const origGfid = (await b1.getattr('/orig')).gfid;
    await stopGraph(g1);

    copyWithXattrs(path.join(dir, 'orig'), path.join(dir, 'copy'));
    fs.writeFileSync(path.join(dir, 'copy'), 'copy content');
    const g2 = await startGraph(dir, 2);
    const b2 = newBridge(g2);
    // the copy is looked up first: it must not take over the original's GFID
    const copyGfid = (await b2.getattr('/copy')).gfid;
    expect(copyGfid).not.toBe(origGfid);
    expect((await b2.getattr('/orig')).gfid).toBe(origGfid);
    expect(await readAll(b2, '/orig')).toBe('original content');
    expect(await readAll(b2, '/copy')).toBe('copy content');
  });

  test('a directory copied with its trusted.gfid gets a different GFID; the original stays reachable by its own', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/d', 0o755);
    const dGfid = (await b.getattr('/d')).gfid;
    fs.mkdirSync(path.join(dir, 'd-copy'));
    sys.setxattr(path.join(dir, 'd-copy'), 'trusted.gfid', storedGfid(path.join(dir, 'd')), 0);

    const copyGfid = (await b.getattr('/d-copy')).gfid;
    expect(copyGfid).not.toBe(dGfid);
    expect((await b.getattr('/d')).gfid).toBe(dGfid);
    expect((await nameless(g, dGfid)).ino).toBe(fs.statSync(path.join(dir, 'd')).ino);
    expect((await nameless(g, copyGfid)).ino).toBe(fs.statSync(path.join(dir, 'd-copy')).ino);
  });

  test('a directory inside the volume that carries the root GFID (e.g. an old backing root moved in) gets a GFID of its own', async () => {
    const dir = tempDir();
    fs.mkdirSync(path.join(dir, 'old-brick'));
    fs.writeFileSync(path.join(dir, 'old-brick', 'marker'), 'm');
    sys.setxattr(path.join(dir, 'old-brick'), 'trusted.gfid', Buffer.from(hex(ROOT_GFID), 'hex'), 0);
    const g = await startGraph(dir);
    const ia = await lookup(g, g.itable.root, 'old-brick');
    expect(ia.gfid).not.toBe(ROOT_GFID);
    // and names inside it are looked up inside it, not in the volume root
    const inode = g.itable.link(ia, g.itable.root, 'old-brick');
    expect((await lookup(g, inode, 'marker')).ino).toBe(fs.statSync(path.join(dir, 'old-brick', 'marker')).ino);
  });
});
