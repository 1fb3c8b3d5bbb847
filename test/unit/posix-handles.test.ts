// storage/posix: what the volume hides (.xlstack, trusted.gfid, handle links), the life of
// GFID handles (unlink, open-unlinked files, rename, rmdir), atomic creation, and two
// graphs serving one backing directory at once. Needs root: trusted.* xattrs.

import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Dirent, ROOT_GFID } from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, lookup, nameless, newBridge, readAll, startGraph, stopGraph, tempDir, writeFile } from '../helpers/graphs';

const { O_RDWR, O_RDONLY, S_IFMT, S_IFDIR, S_IFREG, S_IFIFO } = fs.constants;

// --- helpers -------------------------------------------------------------------

afterEach(cleanupGraphs);

const hasHandle = (dir: string, gfid: string) => fs.lstatSync(handlePath(dir, gfid), { throwIfNoEntry: false }) !== undefined;
/** Whether a file that lost its last name while open is parked among the unlinked. */
const isUnlinked = (dir: string, gfid: string) => fs.lstatSync(path.join(dir, '.xlstack', 'unlinked', gfid), { throwIfNoEntry: false }) !== undefined;
/** Where a file's data lives: under its handle, among the unlinked, or nowhere any more. */
const whereIs = (dir: string, gfid: string) => (hasHandle(dir, gfid) ? 'handle' : isUnlinked(dir, gfid) ? 'unlinked' : 'gone');
const dirHandleTarget = (parent: string, name: string) => `../${parent.slice(0, 2)}/${parent}/${name}`;
const tmpListing = (dir: string) => fs.readdirSync(path.join(dir, '.xlstack', 'tmp'));

async function readdirAll(g: Graph, inode: Inode): Promise<Dirent[]> {
  const fd = g.newFd(inode, O_RDONLY, true);
  try {
    await g.top.opendir(g.frame('opendir'), { path: '<dir>', inode }, fd);
    const out: Dirent[] = [];
    for (let offset = 0, rounds = 0; rounds < 10_000; rounds++) {
      const chunk = await g.top.readdir(g.frame('readdir'), fd, 4096, offset);
      if (chunk.length === 0) return out;
      out.push(...chunk);
      offset = chunk[chunk.length - 1].offset;
    }
    throw new Error('readdir never ended');
  } finally {
    await fd.unref();
  }
}

// --- visibility ------------------------------------------------------------------------

describe('.xlstack is invisible at the volume root', () => {
  test('lookup ENOENT, not listed, not creatable (EPERM), not removable or renamable', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const root = g.itable.root;
    await writeFile(b, '/f', 'x');
    await b.mkdir('/d', 0o755);
    expect(fs.existsSync(path.join(dir, '.xlstack'))).toBe(true);

    expect(await errCode(lookup(g, root, '.xlstack'))).toBe('ENOENT');
    expect(await errCode(b.getattr('/.xlstack'))).toBe('ENOENT');
    expect(await errCode(b.getattr('/.xlstack/handles'))).toBe('ENOENT');
    expect((await readdirAll(g, root)).map((e) => e.name).sort()).toEqual(['d', 'f']);
    expect((await b.readdir('/')).map((e) => e.name).sort()).toEqual(['.', '..', 'd', 'f']);

    const loc = () => ({ path: '/.xlstack', parent: root, name: '.xlstack', inode: g.itable.get(uuidv4()) });
    const cl = loc();
    const fd = g.newFd(cl.inode, O_RDWR, false);
    expect(await errCode(g.top.create(g.frame('create'), cl, 0o644, fd))).toBe('EPERM');
    await fd.unref();
    expect(await errCode(g.top.mkdir(g.frame('mkdir'), loc(), 0o755))).toBe('EPERM');
    expect(await errCode(g.top.mknod(g.frame('mknod'), loc(), S_IFIFO | 0o644, 0))).toBe('EPERM');
    expect(await errCode(g.top.symlink(g.frame('symlink'), 'x', loc()))).toBe('EPERM');
    expect(await errCode(b.mkdir('/.xlstack', 0o755))).toBe('EPERM');
    expect(await errCode(b.create('/.xlstack', 0o644, O_RDWR))).toBe('EPERM');
    expect(await errCode(b.link('/f', '/.xlstack'))).toBe('EPERM');
    expect(await errCode(b.rename('/d', '/.xlstack'))).toBe('EPERM');
    expect(await errCode(b.rename('/f', '/.xlstack'))).toBe('EPERM');
    expect(await errCode(g.top.unlink(g.frame('unlink'), { path: '/.xlstack', parent: root, name: '.xlstack' }))).toBe('ENOENT');
    expect(await errCode(g.top.rmdir(g.frame('rmdir'), { path: '/.xlstack', parent: root, name: '.xlstack' }))).toBe('ENOENT');
    expect(
      await errCode(g.top.rename(g.frame('rename'), { path: '/.xlstack', parent: root, name: '.xlstack' }, { path: '/moved', parent: root, name: 'moved' }, 0)),
    ).toBe('ENOENT');

    // all still in place
    expect(fs.statSync(path.join(dir, '.xlstack', 'handles')).isDirectory()).toBe(true);
    expect(fs.existsSync(path.join(dir, 'moved'))).toBe(false);
    expect(fs.statSync(path.join(dir, 'd')).isDirectory()).toBe(true);
    expect(fs.readFileSync(path.join(dir, 'f'), 'utf8')).toBe('x');
  });

  test('.xlstack in a subdirectory is an ordinary name', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/sub', 0o755);
    await b.mkdir('/sub/.xlstack', 0o700);
    await writeFile(b, '/sub/.xlstack/inner', 'in');
    await writeFile(b, '/sub/x', 'x');
    expect((await b.getattr('/sub/.xlstack')).mode & S_IFMT).toBe(S_IFDIR);
    const subIa = await b.getattr('/sub');
    const sub = g.itable.link(subIa);
    expect((await readdirAll(g, sub)).map((e) => e.name).sort()).toEqual(['.xlstack', 'x']);
    expect(await readAll(b, '/sub/.xlstack/inner')).toBe('in');
    await b.rename('/sub/x', '/sub/.xlstack/x');
    await b.unlink('/sub/.xlstack/x');
    await b.unlink('/sub/.xlstack/inner');
    await b.rmdir('/sub/.xlstack');
    expect(fs.readdirSync(path.join(dir, 'sub'))).toEqual([]);
    // a file called .xlstack too
    await writeFile(b, '/sub/.xlstack', 'file');
    expect((await b.getattr('/sub/.xlstack')).mode & S_IFMT).toBe(S_IFREG);
  });
});

describe('reserved xattrs are hidden and refused', () => {
  test('trusted.gfid and trusted.xlstack.* : getxattr ENODATA, not listed, set/remove EPERM, stored GFID unchanged', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/f', 'x');
    await b.mkdir('/d', 0o755);
    await b.setxattr('/f', 'user.visible', Buffer.from('1'), 0);
    sys.setxattr(path.join(dir, 'f'), 'trusted.xlstack.private', Buffer.from('p'), 0);

    for (const p of ['/', '/f', '/d']) {
      const real = path.join(dir, p);
      const before = sys.getxattr(real, 'trusted.gfid');
      for (const name of ['trusted.gfid', 'trusted.xlstack.private', 'trusted.xlstack.x']) {
        expect({ p, name, code: await errCode(b.getxattr(p, name)) }).toEqual({ p, name, code: 'ENODATA' });
        expect({ p, name, code: await errCode(b.setxattr(p, name, Buffer.alloc(16, 7), 0)) }).toEqual({ p, name, code: 'EPERM' });
        expect({ p, name, code: await errCode(b.setxattr(p, name, Buffer.alloc(16, 7), 2)) }).toEqual({ p, name, code: 'EPERM' });
        expect({ p, name, code: await errCode(b.removexattr(p, name)) }).toEqual({ p, name, code: 'EPERM' });
      }
      const listed = await b.listxattr(p);
      expect(listed.filter((n) => n === 'trusted.gfid' || n.startsWith('trusted.xlstack.'))).toEqual([]);
      expect(sys.getxattr(real, 'trusted.gfid')).toEqual(before);
    }
    expect(await b.listxattr('/f')).toContain('user.visible');
    expect(sys.getxattr(path.join(dir, 'f'), 'trusted.xlstack.private').toString()).toBe('p');
    // by GFID too
    const gfid = (await b.getattr('/f')).gfid;
    expect(await errCode(g.top.getxattr(g.frame('getxattr'), { path: 'f', gfid }, 'trusted.gfid'))).toBe('ENODATA');
    expect(await errCode(g.top.removexattr(g.frame('removexattr'), { path: 'f', gfid }, 'trusted.gfid'))).toBe('EPERM');
  });
});

describe('link counts hide what the volume does not show', () => {
  test('the root nlink does not count .xlstack', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    expect((await b.getattr('/')).nlink).toBe(2);
    await b.mkdir('/a', 0o755);
    await b.mkdir('/b', 0o755);
    await writeFile(b, '/f', '');
    expect(fs.statSync(dir).nlink).toBe(5);
    expect((await b.getattr('/')).nlink).toBe(4);
    expect((await nameless(g, ROOT_GFID)).nlink).toBe(4);
    expect((await b.getattr('/a')).nlink).toBe(2);
  });

  test("a file's nlink does not count its handle: 1, 2 after link, 1 after unlinking one, 0 (fstat) once all are gone while open", async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const root = g.itable.root;
    const gfid = uuidv4();
    const inode = g.itable.get(gfid);
    const fd = g.newFd(inode, O_RDWR, false);
    const created = await g.top.create(g.frame('create'), { path: '/f', parent: root, name: 'f', inode }, 0o644, fd);
    g.itable.link(created, root, 'f');
    expect(created.nlink).toBe(1);
    expect((await lookup(g, root, 'f')).nlink).toBe(1);
    expect((await g.top.fstat(g.frame('fstat'), fd)).nlink).toBe(1);

    const linked = await g.top.link(g.frame('link'), { path: '/f', inode }, { path: '/f2', parent: root, name: 'f2' });
    expect(linked.nlink).toBe(2);
    expect((await lookup(g, root, 'f')).nlink).toBe(2);
    expect((await b.getattr('/f2')).nlink).toBe(2);
    expect(fs.statSync(path.join(dir, 'f')).nlink).toBe(3);

    await g.top.unlink(g.frame('unlink'), { path: '/f', parent: root, name: 'f' });
    expect((await lookup(g, root, 'f2')).nlink).toBe(1);
    expect((await g.top.stat(g.frame('stat'), { path: '/f2', inode })).nlink).toBe(1);

    await g.top.unlink(g.frame('unlink'), { path: '/f2', parent: root, name: 'f2' });
    expect((await g.top.fstat(g.frame('fstat'), fd)).nlink).toBe(0);
    await fd.unref();
  });

  test('a symlink, a fifo and a directory report their visible link counts', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.symlink('x', '/l');
    await b.mknod('/p', S_IFIFO | 0o600, 0);
    await b.mkdir('/d', 0o755);
    await b.mkdir('/d/e', 0o755);
    expect((await b.getattr('/l')).nlink).toBe(1);
    expect((await b.getattr('/p')).nlink).toBe(1);
    expect((await b.getattr('/d')).nlink).toBe(3);
  });
});

// --- handle lifecycle ----------------------------------------------------------------------

describe('handles live exactly as long as their object', () => {
  test('unlinking the last name of a closed file removes its handle; an earlier name keeps it', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/f', 'data');
    await b.link('/f', '/g');
    const gfid = (await b.getattr('/f')).gfid;
    expect(hasHandle(dir, gfid)).toBe(true);
    await b.unlink('/f');
    expect(hasHandle(dir, gfid)).toBe(true);
    expect(await readAll(b, '/g')).toBe('data');
    await b.unlink('/g');
    expect(hasHandle(dir, gfid)).toBe(false);
    expect(await errCode(nameless(g, gfid))).toBe('ESTALE');
    // symlinks and fifos too
    await b.symlink('t', '/s');
    await b.mknod('/p', S_IFIFO | 0o600, 0);
    const sg = (await b.getattr('/s')).gfid;
    const pg = (await b.getattr('/p')).gfid;
    await b.unlink('/s');
    await b.unlink('/p');
    expect([hasHandle(dir, sg), hasHandle(dir, pg)]).toEqual([false, false]);
  });

  test('a file unlinked while open is parked among the unlinked (readable by fd and by GFID) until its last release', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/f', 'still here');
    const gfid = (await b.getattr('/f')).gfid;
    const fh1 = await b.open('/f', O_RDONLY);
    const fh2 = await b.open('/f', O_RDWR);
    await b.unlink('/f');
    expect(await errCode(b.getattr('/f'))).toBe('ENOENT');
    expect(whereIs(dir, gfid)).toBe('unlinked');
    expect((await b.read('/f', fh1, 100, 0)).toString()).toBe('still here');
    expect(await b.write('/f', fh2, Buffer.from('STILL'), 0)).toBe(5);
    expect((await nameless(g, gfid)).size).toBe(10);
    await b.release('/f', fh1);
    expect(whereIs(dir, gfid)).toBe('unlinked');
    expect((await b.read('/f', fh2, 100, 0)).toString()).toBe('STILL here');
    await b.release('/f', fh2);
    expect(whereIs(dir, gfid)).toBe('gone');
    expect(await errCode(nameless(g, gfid))).toBe('ESTALE');
  });

  test('starting on a backing directory reclaims files an earlier run left among the unlinked', async () => {
    const dir = tempDir();
    await stopGraph(await startGraph(dir));
    const leftover = path.join(dir, '.xlstack', 'unlinked', '01234567-89ab-4def-8123-456789abcdef');
    fs.writeFileSync(leftover, 'crashed while open');
    const g = await startGraph(dir);
    expect(fs.existsSync(leftover)).toBe(false);
    expect(fs.readdirSync(path.join(dir, '.xlstack', 'unlinked'))).toEqual([]);
    await stopGraph(g);
  });

  test('a file whose names are all gone cannot be linked back by GFID (ENOENT, as link(2) says)', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/f', 'x');
    const gfid = (await b.getattr('/f')).gfid;
    const fh = await b.open('/f', O_RDONLY);
    await b.unlink('/f');
    const from = { path: `<gfid:${gfid}>`, gfid };
    expect(await errCode(g.top.link(g.frame('link'), from, { path: '/back', parent: g.itable.root, name: 'back' }))).toBe('ENOENT');
    await b.release('/f', fh);
  });

  test('renaming a file over another removes the replaced file\'s handle (unless it has another name; parks it while open)', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/a', 'A');
    await writeFile(b, '/b', 'B');
    await writeFile(b, '/c', 'C');
    await writeFile(b, '/d', 'D');
    await writeFile(b, '/e', 'E');
    const [ga, gb, gc, gd, ge] = await Promise.all(['/a', '/b', '/c', '/d', '/e'].map(async (p) => (await b.getattr(p)).gfid));

    await b.rename('/a', '/b'); // b had one name: its handle goes
    expect(hasHandle(dir, gb)).toBe(false);
    expect(hasHandle(dir, ga)).toBe(true);
    expect(await readAll(b, '/b')).toBe('A');
    expect((await b.getattr('/b')).gfid).toBe(ga);

    await b.link('/c', '/c2');
    await b.rename('/b', '/c'); // c still has c2
    expect(hasHandle(dir, gc)).toBe(true);
    expect(await readAll(b, '/c2')).toBe('C');

    const fh = await b.open('/e', O_RDONLY);
    await b.rename('/d', '/e'); // e is open: it is parked among the unlinked until release
    expect(whereIs(dir, ge)).toBe('unlinked');
    expect((await b.read('/e', fh, 10, 0)).toString()).toBe('E');
    await b.release('/e', fh);
    expect(whereIs(dir, ge)).toBe('gone');
    expect(hasHandle(dir, gd)).toBe(true);
  });

  test('rmdir removes the directory handle; renaming a directory over an empty one removes that one\'s', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/d', 0o755);
    await b.mkdir('/e', 0o755);
    await b.mkdir('/f', 0o755);
    const [gd, ge, gf] = await Promise.all(['/d', '/e', '/f'].map(async (p) => (await b.getattr(p)).gfid));
    await b.rmdir('/d');
    expect(hasHandle(dir, gd)).toBe(false);
    expect(await errCode(nameless(g, gd))).toBe('ESTALE');
    await b.rename('/e', '/f');
    expect(hasHandle(dir, gf)).toBe(false);
    expect(fs.readlinkSync(handlePath(dir, ge))).toBe(dirHandleTarget(ROOT_GFID, 'f'));
    expect((await nameless(g, ge)).ino).toBe(fs.statSync(path.join(dir, 'f')).ino);
  });

  test('renaming a directory updates its handle; directories and files inside stay reachable by GFID', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/a', 0o755);
    await b.mkdir('/a/b', 0o755);
    await b.mkdir('/a/b/c', 0o755);
    await writeFile(b, '/a/b/c/f', 'deep');
    await b.mkdir('/other', 0o755);
    const ga = (await b.getattr('/a')).gfid;
    const gb = (await b.getattr('/a/b')).gfid;
    const gc = (await b.getattr('/a/b/c')).gfid;
    const gf = (await b.getattr('/a/b/c/f')).gfid;
    const go = (await b.getattr('/other')).gfid;
    expect(fs.readlinkSync(handlePath(dir, gb))).toBe(dirHandleTarget(ga, 'b'));

    await b.rename('/a', '/z');
    expect(fs.readlinkSync(handlePath(dir, ga))).toBe(dirHandleTarget(ROOT_GFID, 'z'));
    await b.rename('/z/b', '/other/b2');
    expect(fs.readlinkSync(handlePath(dir, gb))).toBe(dirHandleTarget(go, 'b2'));
    expect(fs.readlinkSync(handlePath(dir, gc))).toBe(dirHandleTarget(gb, 'c'));

    expect((await nameless(g, gc)).ino).toBe(fs.statSync(path.join(dir, 'other/b2/c')).ino);
    expect((await nameless(g, gb)).ino).toBe(fs.statSync(path.join(dir, 'other/b2')).ino);
    expect((await nameless(g, gf)).ino).toBe(fs.statSync(path.join(dir, 'other/b2/c/f')).ino);
    // a directory found by GFID is a usable parent at its new place
    const c = g.itable.link(await nameless(g, gc));
    expect((await lookup(g, c, 'f')).gfid).toBe(gf);
    expect(await readAll(b, '/other/b2/c/f')).toBe('deep');
    // and the same after a restart (handles on disk, nothing cached)
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    expect((await nameless(g2, gc)).ino).toBe(fs.statSync(path.join(dir, 'other/b2/c')).ino);
    expect((await nameless(g2, ga)).ino).toBe(fs.statSync(path.join(dir, 'z')).ino);
  });

  test('nothing is left in .xlstack/tmp after mkdir, mkdir EEXIST and directory renames', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/d', 0o755);
    expect(tmpListing(dir)).toEqual([]);
    await writeFile(b, '/f', 'x');
    const root = g.itable.root;
    for (const name of ['d', 'f']) {
      expect(await errCode(g.top.mkdir(g.frame('mkdir'), { path: name, parent: root, name, inode: g.itable.get(uuidv4()) }, 0o755))).toBe('EEXIST');
      expect(tmpListing(dir)).toEqual([]);
    }
    expect(await errCode(b.mkdir('/d', 0o755))).toBe('EEXIST');
    await b.rename('/d', '/d2');
    await b.mkdir('/d2/sub', 0o700);
    await b.rmdir('/d2/sub');
    expect(tmpListing(dir)).toEqual([]);
  });
});

// --- atomic creation -------------------------------------------------------------------------

describe('a handle checked once is trusted while its inode stays', () => {
  test('a stat by GFID of a file already found reads no GFID again; a handle another file took is ESTALE', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/f', 'data');
    const gfid = (await b.getattr('/f')).gfid;
    const reads = jest.spyOn(sys, 'getxattrIfExists');
    try {
      expect((await nameless(g, gfid)).size).toBe(4);
      expect(reads).not.toHaveBeenCalled();
      // Something outside xlstack puts another file where the handle was (/f keeps the old inode).
      fs.unlinkSync(handlePath(dir, gfid));
      fs.writeFileSync(handlePath(dir, gfid), 'other');
      expect(await errCode(nameless(g, gfid))).toBe('ESTALE');
      expect(reads).toHaveBeenCalled();
    } finally {
      reads.mockRestore();
    }
  });
});

describe('creation is atomic and never replaces an existing name', () => {
  async function setup() {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await writeFile(b, '/file', 'original');
    await b.mkdir('/dir', 0o700);
    await writeFile(b, '/dir/inside', 'in');
    await b.symlink('file', '/link');
    const gfids = {
      file: (await b.getattr('/file')).gfid,
      dir: (await b.getattr('/dir')).gfid,
      link: (await b.getattr('/link')).gfid,
    };
    const snapshot = () => ({
      file: fs.readFileSync(path.join(dir, 'file'), 'utf8'),
      fileIno: fs.statSync(path.join(dir, 'file')).ino,
      dirIno: fs.statSync(path.join(dir, 'dir')).ino,
      dirMode: fs.statSync(path.join(dir, 'dir')).mode,
      dirList: fs.readdirSync(path.join(dir, 'dir')),
      link: fs.readlinkSync(path.join(dir, 'link')),
      gfids: ['file', 'dir', 'link'].map((n) => sys.getxattr(path.join(dir, n), 'trusted.gfid').toString('hex')),
      handles: fs.readdirSync(path.join(dir, '.xlstack', 'handles')).flatMap((d) => fs.readdirSync(path.join(dir, '.xlstack', 'handles', d))).sort(),
      tmp: tmpListing(dir),
    });
    return { dir, g, b, gfids, snapshot };
  }

  test('create, mkdir, mknod and symlink on existing names are EEXIST and change nothing', async () => {
    const { dir, g, snapshot } = await setup();
    const before = snapshot();
    const root = g.itable.root;
    for (const name of ['file', 'dir', 'link']) {
      const wanted: string[] = [];
      const loc = () => {
        const gfid = uuidv4();
        wanted.push(gfid);
        return { path: `/${name}`, parent: root, name, inode: g.itable.get(gfid) };
      };
      const cl = loc();
      const fd = g.newFd(cl.inode, O_RDWR, false);
      const codes = {
        create: await errCode(g.top.create(g.frame('create'), cl, 0o600, fd)),
        mkdir: await errCode(g.top.mkdir(g.frame('mkdir'), loc(), 0o777)),
        mknod: await errCode(g.top.mknod(g.frame('mknod'), loc(), S_IFIFO | 0o600, 0)),
        mknodReg: await errCode(g.top.mknod(g.frame('mknod'), loc(), S_IFREG | 0o600, 0)),
        symlink: await errCode(g.top.symlink(g.frame('symlink'), '/etc', loc())),
      };
      await fd.unref();
      expect({ name, ...codes }).toEqual({ name, create: 'EEXIST', mkdir: 'EEXIST', mknod: 'EEXIST', mknodReg: 'EEXIST', symlink: 'EEXIST' });
      // no stray handle for any of the GFIDs asked for
      for (const gfid of wanted) expect(hasHandle(dir, gfid)).toBe(false);
    }
    expect(snapshot()).toEqual(before);
  });

  test('a create that fails with EEXIST leaves no file descriptor open', async () => {
    const { g } = await setup();
    const root = g.itable.root;
    const openHandles = () =>
      fs
        .readdirSync('/proc/self/fd')
        .map((n) => {
          try {
            return fs.readlinkSync(`/proc/self/fd/${n}`);
          } catch {
            return '';
          }
        })
        .filter((t) => t.includes('.xlstack/handles/'));
    const before = openHandles();
    const wanted: string[] = [];
    for (let i = 0; i < 5; i++) {
      const gfid = uuidv4();
      wanted.push(gfid);
      const inode = g.itable.get(gfid);
      const fd = g.newFd(inode, O_RDWR, false);
      expect(await errCode(g.top.create(g.frame('create'), { path: '/file', parent: root, name: 'file', inode }, 0o644, fd))).toBe('EEXIST');
      await fd.unref();
    }
    const leaked = openHandles().filter((t) => !before.includes(t));
    expect(leaked).toEqual([]);
  });

  test('through the bridge: create of an existing name opens it without truncating or re-creating it', async () => {
    const { dir, b, gfids } = await setup();
    const fh = await b.create('/file', 0o600, O_RDWR);
    expect((await b.read('/file', fh, 100, 0)).toString()).toBe('original');
    await b.release('/file', fh);
    expect((await b.getattr('/file')).gfid).toBe(gfids.file);
    expect(fs.statSync(path.join(dir, 'file')).mode & 0o777).toBe(0o644);
    expect(await errCode(b.mkdir('/file', 0o755))).toBe('EEXIST');
    expect(await errCode(b.mkdir('/dir', 0o755))).toBe('EEXIST');
    expect(await errCode(b.symlink('x', '/dir'))).toBe('EEXIST');
    expect(await errCode(b.mknod('/link', S_IFIFO | 0o644, 0))).toBe('EEXIST');
    expect(fs.statSync(path.join(dir, 'dir')).mode & 0o777).toBe(0o700);
    expect((await b.getattr('/dir')).gfid).toBe(gfids.dir);
  });
});

// --- two graphs on one backing directory ------------------------------------------------------

describe('two graphs serving one backing directory at once', () => {
  test('a file open on graph 1 and unlinked on graph 2 stays readable; it is gone with graph 1\'s release', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const g2 = await startGraph(dir, 2);
    const b1 = newBridge(g1);
    const b2 = newBridge(g2);
    await writeFile(b1, '/f', 'shared data');
    const gfid = (await b1.getattr('/f')).gfid;
    expect((await b2.getattr('/f')).gfid).toBe(gfid);

    const fh = await b1.open('/f', O_RDONLY);
    await b2.unlink('/f');
    expect(await errCode(b2.getattr('/f'))).toBe('ENOENT');
    expect(whereIs(dir, gfid)).toBe('unlinked');
    expect((await b1.read('/f', fh, 100, 0)).toString()).toBe('shared data');
    // still reachable by GFID on both graphs while open
    expect((await nameless(g2, gfid)).size).toBe(11);
    await b1.release('/f', fh);
    expect(whereIs(dir, gfid)).toBe('gone');
    expect(await errCode(nameless(g1, gfid))).toBe('ESTALE');
  });

  test('the same with graph 2 stopped before graph 1 releases', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const g2 = await startGraph(dir, 2);
    const b1 = newBridge(g1);
    const b2 = newBridge(g2);
    await writeFile(b2, '/f', 'data');
    const gfid = (await b2.getattr('/f')).gfid;
    const fh = await b1.open('/f', O_RDONLY);
    await b2.unlink('/f');
    await stopGraph(g2);
    expect((await b1.read('/f', fh, 100, 0)).toString()).toBe('data');
    expect(whereIs(dir, gfid)).toBe('unlinked');
    await b1.release('/f', fh);
    expect(whereIs(dir, gfid)).toBe('gone');
  });

  test('a directory renamed on graph 2 is found by GFID on graph 1 at its new place', async () => {
    const dir = tempDir();
    const g1 = await startGraph(dir, 1);
    const g2 = await startGraph(dir, 2);
    const b1 = newBridge(g1);
    const b2 = newBridge(g2);
    await b1.mkdir('/a', 0o755);
    await b1.mkdir('/a/b', 0o755);
    await writeFile(b1, '/a/b/f', 'x');
    const gb = (await b1.getattr('/a/b')).gfid;
    const ga = (await b1.getattr('/a')).gfid;
    await b2.mkdir('/new', 0o755);
    await b2.rename('/a', '/new/a2');

    const bIa = await nameless(g1, gb);
    expect(bIa.ino).toBe(fs.statSync(path.join(dir, 'new/a2/b')).ino);
    expect((await nameless(g1, ga)).ino).toBe(fs.statSync(path.join(dir, 'new/a2')).ino);
    // graph 1 creates through its inode of b: the file lands at the new place
    const bInode = g1.itable.get(gb);
    await g1.top.mkdir(g1.frame('mkdir'), { path: 'made-by-1', parent: bInode, name: 'made-by-1', inode: g1.itable.get(uuidv4()) }, 0o755);
    expect(fs.statSync(path.join(dir, 'new/a2/b/made-by-1')).isDirectory()).toBe(true);
    expect(fs.existsSync(path.join(dir, 'a'))).toBe(false);
  });
});
