// storage/posix: no request reaches outside the backing directory. Names and GFIDs are
// checked, user symlinks are never followed or taken for directories, special files are
// never opened. Needs root: trusted.* xattrs, chown, mknod.

import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { buildGraph } from '../../src/core/builder';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { ROOT_GFID, nameFromUtf8 } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, hex, lookup, lookupInode, nameless, newBridge, startGraph, stopGraph, tempDir, within } from '../helpers/graphs';

const { O_RDWR, O_RDONLY, O_NONBLOCK, S_IFMT, S_IFDIR, S_IFLNK, S_IFIFO, S_IFCHR, S_IFREG } = fs.constants;
const makedev = (major: number, minor: number) => (major << 8) | minor;

// --- helpers -------------------------------------------------------------------

afterEach(cleanupGraphs);

/** Every entry-creating fop on (parent, name), each with a fresh GFID: their error codes. */
async function createAll(g: Graph, parent: Inode, name: string): Promise<Record<string, string>> {
  const loc = () => ({ path: `x/${name}`, parent, name, inode: g.itable.get(uuidv4()) });
  const createLoc = loc();
  const fd = g.newFd(createLoc.inode, O_RDWR, false);
  const out: Record<string, string> = {};
  out.create = await errCode(g.top.create(g.frame('create'), createLoc, 0o644, fd));
  if (out.create === 'OK') await fd.unref();
  out.mkdir = await errCode(g.top.mkdir(g.frame('mkdir'), loc(), 0o755));
  out.mknod = await errCode(g.top.mknod(g.frame('mknod'), loc(), S_IFREG | 0o644, 0));
  out.symlink = await errCode(g.top.symlink(g.frame('symlink'), 'target', loc()));
  return out;
}

/** A scratch directory `base` with the volume's backing directory `base/vol` in it: room outside the volume. */
function volumeInside(): { base: string; dir: string } {
  const base = tempDir();
  const dir = path.join(base, 'vol');
  fs.mkdirSync(dir);
  return { base, dir };
}

function listing(dir: string): string[] {
  return fs.readdirSync(dir).sort();
}

// --- tests ---------------------------------------------------------------------------

describe('names are checked', () => {
  const BAD_NAMES = ['..', '.', '', 'a/b', '../escape', 'a\0b', '\0', 'x/'];

  test.each(BAD_NAMES.map((n) => [JSON.stringify(n), n]))('name %s is EINVAL for every entry fop', async (_label, name) => {
    const { base: parentDir, dir } = volumeInside();
    fs.mkdirSync(path.join(dir, 'a'));
    const g = await startGraph(dir);
    const root = g.itable.root;
    await lookupInode(g, root, 'a');
    const beforeOutside = listing(parentDir);
    const beforeInside = listing(dir);

    expect(await errCode(lookup(g, root, name))).toBe('EINVAL');
    expect(await createAll(g, root, name)).toEqual({ create: 'EINVAL', mkdir: 'EINVAL', mknod: 'EINVAL', symlink: 'EINVAL' });
    expect(await errCode(g.top.unlink(g.frame('unlink'), { path: name, parent: root, name }))).toBe('EINVAL');
    expect(await errCode(g.top.rmdir(g.frame('rmdir'), { path: name, parent: root, name }))).toBe('EINVAL');

    // as a rename source and target, and a link target
    const f = uuidv4();
    const fd = g.newFd(g.itable.get(f), O_RDWR, false);
    await g.top.create(g.frame('create'), { path: '/f', parent: root, name: 'f', inode: g.itable.get(f) }, 0o644, fd);
    await fd.unref();
    const fInode = await lookupInode(g, root, 'f');
    expect(await errCode(g.top.rename(g.frame('rename'), { path: '/f', parent: root, name: 'f' }, { path: name, parent: root, name }, 0))).toBe('EINVAL');
    expect(await errCode(g.top.rename(g.frame('rename'), { path: name, parent: root, name }, { path: '/z', parent: root, name: 'z' }, 0))).toBe('EINVAL');
    expect(await errCode(g.top.link(g.frame('link'), { path: '/f', inode: fInode }, { path: name, parent: root, name }))).toBe('EINVAL');

    expect(listing(parentDir)).toEqual(beforeOutside);
    expect(listing(dir)).toEqual([...beforeInside, 'f'].sort());
    expect(fs.existsSync(path.join(dir, 'a', 'b'))).toBe(false);
  });

  test('a name of 256 bytes is ENAMETOOLONG; 255 bytes is fine', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const long = 'n'.repeat(256);
    const longUtf8 = nameFromUtf8('é'.repeat(128)); // 256 bytes, the UTF-8 of 128 characters
    for (const name of [long, longUtf8]) {
      expect(await errCode(lookup(g, root, name))).toBe('ENAMETOOLONG');
      expect(await createAll(g, root, name)).toEqual({ create: 'ENAMETOOLONG', mkdir: 'ENAMETOOLONG', mknod: 'ENAMETOOLONG', symlink: 'ENAMETOOLONG' });
    }
    const ok = 'n'.repeat(255);
    expect(await errCode(g.top.mkdir(g.frame('mkdir'), { path: ok, parent: root, name: ok, inode: g.itable.get(uuidv4()) }, 0o755))).toBe('OK');
    expect(fs.statSync(path.join(dir, ok)).isDirectory()).toBe(true);
    expect(listing(dir)).toEqual(['.xlstack', ok]);
  });
});

describe('GFIDs are checked', () => {
  test('malformed GFIDs are EINVAL for nameless lookup, open, stat and getxattr', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const fh = await b.create('/real', 0o644, O_RDWR);
    await b.release('/real', fh);
    const real = (await b.getattr('/real')).gfid;
    const bad = [
      '../../../../etc/passwd',
      '',
      'not-a-gfid',
      real.toUpperCase(),
      `${real}/`,
      `${real}/..`,
      `../${real.slice(0, 2)}/${real}`,
      ROOT_GFID.replace(/0/g, '.'),
      hex(real),
    ];
    for (const gfid of bad) {
      const codes: Record<string, string> = { gfid };
      codes.nameless = await errCode(nameless(g, gfid));
      const inode = g.itable.get(gfid);
      const fd = g.newFd(inode, O_RDONLY, false);
      codes.open = await errCode(g.top.open(g.frame('open'), { path: gfid, inode }, fd));
      await fd.unref();
      codes.stat = await errCode(g.top.stat(g.frame('stat'), { path: gfid, gfid }));
      codes.getxattr = await errCode(g.top.getxattr(g.frame('getxattr'), { path: gfid, gfid }, 'user.x'));
      codes.getxattrByInode = await errCode(g.top.getxattr(g.frame('getxattr'), { path: gfid, inode }, 'user.x'));
      codes.truncate = await errCode(g.top.truncate(g.frame('truncate'), { path: gfid, gfid }, 0));
      expect(codes).toEqual({ gfid, nameless: 'EINVAL', open: 'EINVAL', stat: 'EINVAL', getxattr: 'EINVAL', getxattrByInode: 'EINVAL', truncate: 'EINVAL' });
      g.itable.forget(inode);
    }
    // /etc/passwd was not touched
    expect(fs.statSync('/etc/passwd').size).toBeGreaterThan(0);
  });
});

describe('user symlinks are never directories', () => {
  async function setup() {
    const { base, dir } = volumeInside();
    const outside = path.join(base, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret'), 'secret');
    const g = await startGraph(dir);
    const b = newBridge(g);
    return { dir, outside, g, b };
  }

  test('a symlink to a directory outside, used as a parent, fails and creates nothing outside', async () => {
    const { dir, outside, g, b } = await setup();
    await b.symlink(outside, '/s');
    // and one made outside xlstack, straight in the backing directory
    fs.symlinkSync('/etc', path.join(dir, 'etc-link'));
    for (const name of ['s', 'etc-link']) {
      const s = await lookupInode(g, g.itable.root, name);
      expect(s.type).toBe(S_IFLNK);
      const codes = await createAll(g, s, 'planted');
      for (const c of Object.values(codes)) expect(['ENOTDIR', 'ESTALE']).toContain(c);
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(lookup(g, s, 'secret')));
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(lookup(g, s, 'passwd')));
      const dfd = g.newFd(s, O_RDONLY, true);
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(g.top.opendir(g.frame('opendir'), { path: name, inode: s }, dfd)));
      await dfd.unref();
    }
    expect(listing(outside)).toEqual(['secret']);
    expect(fs.existsSync('/etc/planted')).toBe(false);
  });

  test('a symlink inode that claims to be a directory is still not one', async () => {
    const { outside, g, b } = await setup();
    await b.symlink(outside, '/s');
    const s = await lookupInode(g, g.itable.root, 's');
    const before = fs.statSync(outside);
    s.type = S_IFDIR; // a confused (or hostile) client
    try {
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(g.top.stat(g.frame('stat'), { path: '/s', inode: s })));
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(g.top.setattr(g.frame('setattr'), { path: '/s', inode: s }, { mode: 0o777 })));
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(g.top.setxattr(g.frame('setxattr'), { path: '/s', inode: s }, 'user.planted', Buffer.from('1'), 0)));
      const codes = await createAll(g, s, 'planted');
      for (const c of Object.values(codes)) expect(['ENOTDIR', 'ESTALE']).toContain(c);
    } finally {
      s.type = S_IFLNK;
    }
    const after = fs.statSync(outside);
    expect(after.mode).toBe(before.mode);
    expect(() => sys.getxattr(outside, 'user.planted')).toThrow(/ENODATA/);
    expect(listing(outside)).toEqual(['secret']);
  });

  test('a symlink whose target looks like a directory handle is not used as a directory', async () => {
    const { dir, g, b } = await setup();
    await b.mkdir('/sub', 0o755);
    const subGfid = (await b.getattr('/sub')).gfid;
    const mimics = [
      `../${ROOT_GFID.slice(0, 2)}/${ROOT_GFID}/sub`,
      `../${ROOT_GFID.slice(0, 2)}/${ROOT_GFID}/..`,
      fs.readlinkSync(handlePath(dir, subGfid)),
      '../../..',
    ];
    for (const [i, target] of mimics.entries()) {
      const name = `mimic${i}`;
      await b.symlink(target, `/${name}`);
      const ia = await lookup(g, g.itable.root, name);
      expect(ia.mode & S_IFMT).toBe(S_IFLNK);
      // by GFID it is a symlink too, on this graph and with a type-less inode
      expect((await nameless(g, ia.gfid)).mode & S_IFMT).toBe(S_IFLNK);
      const s = g.itable.link(ia, g.itable.root, name);
      const codes = await createAll(g, s, 'planted');
      for (const c of Object.values(codes)) expect(['ENOTDIR', 'ESTALE']).toContain(c);
      expect(['ENOTDIR', 'ESTALE']).toContain(await errCode(lookup(g, s, 'sub')));
    }
    expect(listing(path.join(dir, 'sub'))).toEqual([]);
    expect(fs.existsSync(path.join(path.dirname(dir), 'planted'))).toBe(false);
    expect(fs.existsSync(path.join(dir, 'planted'))).toBe(false);
  });
});

describe('special files are never opened, symlinks never followed', () => {
  test('open by GFID: a symlink is ELOOP, a fifo and a char device ENXIO (without blocking)', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const fh = await b.create('/file', 0o644, O_RDWR);
    await b.release('/file', fh);
    await b.symlink('file', '/link');
    await b.mknod('/fifo', S_IFIFO | 0o666, 0);
    await b.mknod('/null', S_IFCHR | 0o666, makedev(1, 3));
    // A reader and writer on the fifo, so that even a wrongly opened fifo cannot block the test.
    const guard = fs.openSync(path.join(dir, 'fifo'), O_RDWR | O_NONBLOCK);
    try {
      const codes: Record<string, string> = {};
      for (const name of ['link', 'fifo', 'null']) {
        const ia = await lookup(g, g.itable.root, name);
        for (const flags of [O_RDONLY, O_RDWR]) {
          // a typed inode (as after a lookup) and a type-less one (nameless, as after a restart)
          const typed = g.itable.link(ia, g.itable.root, name);
          const fd = g.newFd(typed, flags, false);
          codes[`${name}/${flags}`] = await errCode(g.top.open(g.frame('open'), { path: name, inode: typed }, fd));
          await fd.unref();
          const fd2 = g.newFd(typed, flags, false);
          typed.type = 0;
          codes[`${name}/${flags}/untyped`] = await errCode(g.top.open(g.frame('open'), { path: name, inode: typed }, fd2));
          typed.type = ia.mode & S_IFMT;
          await fd2.unref();
        }
      }
      expect(codes).toEqual({
        [`link/${O_RDONLY}`]: 'ELOOP',
        [`link/${O_RDONLY}/untyped`]: 'ELOOP',
        [`link/${O_RDWR}`]: 'ELOOP',
        [`link/${O_RDWR}/untyped`]: 'ELOOP',
        [`fifo/${O_RDONLY}`]: 'ENXIO',
        [`fifo/${O_RDONLY}/untyped`]: 'ENXIO',
        [`fifo/${O_RDWR}`]: 'ENXIO',
        [`fifo/${O_RDWR}/untyped`]: 'ENXIO',
        [`null/${O_RDONLY}`]: 'ENXIO',
        [`null/${O_RDONLY}/untyped`]: 'ENXIO',
        [`null/${O_RDWR}`]: 'ENXIO',
        [`null/${O_RDWR}/untyped`]: 'ENXIO',
      });
      // and through the bridge
      expect(await errCode(b.open('/link', O_RDONLY))).toBe('ELOOP');
      expect(await errCode(b.open('/fifo', O_RDONLY))).toBe('ENXIO');
    } finally {
      fs.closeSync(guard);
    }
  });

  test('truncate by GFID of a symlink to a file outside leaves that file alone', async () => {
    const { base, dir } = volumeInside();
    const victim = path.join(base, 'victim');
    fs.writeFileSync(victim, 'do not truncate me');
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.symlink(victim, '/s');
    const s = await lookupInode(g, g.itable.root, 's');
    expect(await errCode(g.top.truncate(g.frame('truncate'), { path: '/s', inode: s }, 0))).not.toBe('OK');
    expect(await errCode(g.top.truncate(g.frame('truncate'), { path: '/s', gfid: s.gfid }, 3))).not.toBe('OK');
    expect(await errCode(b.truncate('/s', 0))).not.toBe('OK');
    expect(fs.readFileSync(victim, 'utf8')).toBe('do not truncate me');
  });

  test('chmod of a symlink is EOPNOTSUPP and the outside target keeps its mode', async () => {
    const { base, dir } = volumeInside();
    const victim = path.join(base, 'victim');
    fs.writeFileSync(victim, 'x');
    fs.chmodSync(victim, 0o600);
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.symlink(victim, '/s');
    const s = await lookupInode(g, g.itable.root, 's');
    expect(await errCode(g.top.setattr(g.frame('setattr'), { path: '/s', inode: s }, { mode: 0o777 }))).toBe('EOPNOTSUPP');
    expect(await errCode(g.top.setattr(g.frame('setattr'), { path: '/s', gfid: s.gfid }, { mode: 0o4777 }))).toBe('EOPNOTSUPP');
    expect(await errCode(b.chmod('/s', 0o777))).toBe('EOPNOTSUPP');
    expect(fs.statSync(victim).mode & 0o7777).toBe(0o600);
  });

  test('chown and utimes of a symlink change the link, not the outside target', async () => {
    const { base, dir } = volumeInside();
    const victim = path.join(base, 'victim');
    fs.writeFileSync(victim, 'x');
    fs.utimesSync(victim, 1_000_000_000, 1_000_000_000);
    const vBefore = fs.statSync(victim, { bigint: true });
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.symlink(victim, '/s');
    const s = await lookupInode(g, g.itable.root, 's');
    const ia = await g.top.setattr(g.frame('setattr'), { path: '/s', inode: s }, {
      uid: 1234,
      gid: 5678,
      atime: { sec: 1_500_000_000, nsec: 1 },
      mtime: { sec: 1_500_000_001, nsec: 999_999_999 },
    });
    expect(ia.mode & S_IFMT).toBe(S_IFLNK);
    expect([ia.uid, ia.gid]).toEqual([1234, 5678]);
    const link = fs.lstatSync(path.join(dir, 's'), { bigint: true });
    expect([link.uid, link.gid]).toEqual([1234n, 5678n]);
    expect(link.mtimeNs).toBe(1_500_000_001_999_999_999n);
    expect(link.atimeNs).toBe(1_500_000_000_000_000_001n);
    const vAfter = fs.statSync(victim, { bigint: true });
    expect([vAfter.uid, vAfter.gid, vAfter.mtimeNs, vAfter.atimeNs, vAfter.mode]).toEqual([vBefore.uid, vBefore.gid, vBefore.mtimeNs, vBefore.atimeNs, vBefore.mode]);
    // 'now' too
    await g.top.setattr(g.frame('setattr'), { path: '/s', inode: s }, { mtime: 'now' });
    expect(fs.statSync(victim, { bigint: true }).mtimeNs).toBe(vBefore.mtimeNs);
  });
});

describe('creation never goes through or replaces what is there', () => {
  test('create over a dangling symlink to outside is EEXIST and creates nothing outside', async () => {
    const { base, dir } = volumeInside();
    const target = path.join(base, 'would-be-created');
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.symlink(target, '/dangling');
    const codes = await createAll(g, g.itable.root, 'dangling');
    expect(codes).toEqual({ create: 'EEXIST', mkdir: 'EEXIST', mknod: 'EEXIST', symlink: 'EEXIST' });
    // the bridge falls back to opening what is there: a symlink, which is refused
    expect(await errCode(b.create('/dangling', 0o644, O_RDWR))).toBe('ELOOP');
    expect(fs.existsSync(target)).toBe(false);
    expect(fs.readlinkSync(path.join(dir, 'dangling'))).toBe(target);
  });

  test('mkdir with a GFID another object already has fails and leaves that object reachable', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const fh = await b.create('/file', 0o644, O_RDWR);
    await b.write('/file', fh, Buffer.from('keep me'), 0);
    await b.release('/file', fh);
    await b.mkdir('/d', 0o755);
    const fileGfid = (await b.getattr('/file')).gfid;
    const dGfid = (await b.getattr('/d')).gfid;
    const root = g.itable.root;

    for (const [name, gfid] of [['clash-file', fileGfid], ['clash-dir', dGfid], ['clash-root', ROOT_GFID]] as const) {
      const code = await errCode(g.top.mkdir(g.frame('mkdir'), { path: name, parent: root, name, inode: g.itable.get(gfid) }, 0o755));
      expect({ name, code }).toEqual({ name, code: 'EEXIST' });
      expect(fs.existsSync(path.join(dir, name))).toBe(false);
    }
    // every object is still what its GFID leads to
    expect(fs.lstatSync(handlePath(dir, fileGfid)).ino).toBe(fs.statSync(path.join(dir, 'file')).ino);
    expect((await nameless(g, fileGfid)).mode & S_IFMT).toBe(S_IFREG);
    expect(fs.readlinkSync(handlePath(dir, dGfid))).toBe(`../${ROOT_GFID.slice(0, 2)}/${ROOT_GFID}/d`);
    expect(fs.readlinkSync(handlePath(dir, ROOT_GFID))).toBe('../../..');
    expect(listing(path.join(dir, '.xlstack', 'tmp'))).toEqual([]);
  });

  test('create, mknod and symlink with a GFID another object already has are EEXIST and leave it alone', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    const fh = await b.create('/file', 0o644, O_RDWR);
    await b.write('/file', fh, Buffer.from('keep me'), 0);
    await b.release('/file', fh);
    const fileGfid = (await b.getattr('/file')).gfid;
    const root = g.itable.root;
    const inode = g.itable.get(fileGfid);
    const fd = g.newFd(inode, O_RDWR, false);
    const codes = {
      create: await errCode(g.top.create(g.frame('create'), { path: 'c', parent: root, name: 'c', inode }, 0o644, fd)),
      mknod: await errCode(g.top.mknod(g.frame('mknod'), { path: 'm', parent: root, name: 'm', inode }, S_IFIFO | 0o644, 0)),
      symlink: await errCode(g.top.symlink(g.frame('symlink'), 'x', { path: 's', parent: root, name: 's', inode })),
    };
    await fd.unref();
    expect(codes).toEqual({ create: 'EEXIST', mknod: 'EEXIST', symlink: 'EEXIST' });
    expect(listing(dir)).toEqual(['.xlstack', 'file']);
    expect(fs.readFileSync(path.join(dir, 'file'), 'utf8')).toBe('keep me');
    expect(fs.lstatSync(handlePath(dir, fileGfid)).ino).toBe(fs.statSync(path.join(dir, 'file')).ino);
  });
});

describe('the backing directory must be a volume root', () => {
  test('a directory inside another volume (it has a non-root GFID) is refused with a clear message', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/sub', 0o755);
    const subGfid = (await b.getattr('/sub')).gfid;
    const sub = path.join(dir, 'sub');

    const vol = parseVolfile(`volume inner\n type storage/posix\n option directory ${sub}\nend-volume\n`, 'inner.vol');
    const g2 = buildGraph(vol, { id: 2, registry: new Registry(), log: Logger.create('error') });
    await expect(within(g2.start(5000))).rejects.toThrow(/not the root of a volume.*GFID/);
    // nothing was changed in the subdirectory
    expect(sys.getxattr(sub, 'trusted.gfid')).toEqual(Buffer.from(hex(subGfid), 'hex'));
    expect(listing(sub)).toEqual([]);
    // the outer volume still works
    expect((await b.getattr('/sub')).gfid).toBe(subGfid);
  });
});

describe('a directory swapped for a symlink in the backing directory is never followed', () => {
  /** A volume with /d (holding `inner`) open, and a directory outside it with a secret. */
  async function swapped() {
    const { base, dir } = volumeInside();
    const outside = path.join(base, 'outside');
    fs.mkdirSync(outside);
    fs.writeFileSync(path.join(outside, 'secret'), 'secret');
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/d', 0o755);
    const fh = await b.create('/d/inner', 0o644, O_RDWR);
    await b.release('/d/inner', fh);
    await b.symlink('x', '/victim-link');
    const d = await lookupInode(g, g.itable.root, 'd');
    const f = await lookupInode(g, g.itable.root, 'victim-link');
    // A directory fd held across the swap, as an open directory would be.
    const held = g.newFd(d, O_RDONLY, true);
    await g.top.opendir(g.frame('opendir'), { path: '/d', inode: d }, held);
    // Someone with access to the backing directory swaps d for a symlink to outside.
    fs.renameSync(path.join(dir, 'd'), path.join(dir, 'd.real'));
    fs.symlinkSync(outside, path.join(dir, 'd'));
    return { dir, outside, g, d, f, held };
  }

  /** Every entry fop with `d` as the parent: creation, link, rename in, lookup, readdir. */
  async function everything(g: Graph, d: Inode, f: Inode, held?: Fd): Promise<Record<string, string>> {
    const codes = await createAll(g, d, 'planted');
    codes.link = await errCode(g.top.link(g.frame('link'), { path: '/victim-link', inode: f }, { path: 'planted-link', parent: d, name: 'planted-link' }));
    codes.renameIn = await errCode(g.top.rename(g.frame('rename'), { parent: g.itable.root, name: 'victim-link' }, { parent: d, name: 'planted-rename' }, 0));
    codes.lookupSecret = await errCode(lookup(g, d, 'secret'));
    codes.unlinkSecret = await errCode(g.top.unlink(g.frame('unlink'), { parent: d, name: 'secret' }));
    const listed: string[] = [];
    const fd = held ?? g.newFd(d, O_RDONLY, true);
    try {
      if (!held) await g.top.opendir(g.frame('opendir'), { path: '/d', inode: d }, fd);
      for (const e of await g.top.readdir(g.frame('readdir'), fd, 1 << 16, 0)) listed.push(e.name);
      for (const e of await g.top.readdirp(g.frame('readdirp'), fd, 1 << 16, 0)) listed.push(e.name);
      codes.listing = listed.includes('secret') ? 'LISTED OUTSIDE' : 'OK';
    } catch (e) {
      codes.listing = String((e as { code?: string }).code);
    } finally {
      if (!held) await fd.unref();
    }
    return codes;
  }

  test('while the directory is known (its fd open): entry fops land in the real directory, nothing outside', async () => {
    const { dir, outside, g, d, f, held } = await swapped();
    const codes = await everything(g, d, f, held);
    await held.unref();
    expect(listing(outside)).toEqual(['secret']);
    expect(fs.readFileSync(path.join(outside, 'secret'), 'utf8')).toBe('secret');
    // (createAll makes one name four ways: the first wins, the others find it there)
    expect(codes).toEqual({
      create: 'OK', mkdir: 'EEXIST', mknod: 'EEXIST', symlink: 'EEXIST', link: 'OK', renameIn: 'OK',
      lookupSecret: 'ENOENT', unlinkSecret: 'ENOENT', listing: 'OK',
    });
    // what succeeded went into the real directory, inside the volume
    expect(listing(path.join(dir, 'd.real'))).toEqual(['inner', 'planted', 'planted-link', 'planted-rename']);
  });

  test('after a restart (nothing open): the directory is not found through the symlink (ESTALE), nothing outside', async () => {
    const { dir, outside, g, d, f, held } = await swapped();
    await held.unref();
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    const d2 = g2.itable.get(d.gfid);
    d2.type = S_IFDIR;
    const f2 = g2.itable.get(f.gfid);
    const codes = await everything(g2, d2, f2);
    expect(codes).toEqual({
      create: 'ESTALE', mkdir: 'ESTALE', mknod: 'ESTALE', symlink: 'ESTALE', link: 'ESTALE', renameIn: 'ESTALE',
      lookupSecret: 'ESTALE', unlinkSecret: 'ESTALE', listing: 'ESTALE',
    });
    expect(await errCode(nameless(g2, d.gfid))).toBe('ESTALE');
    expect(await errCode(g2.top.setxattr(g2.frame('setxattr'), { inode: d2 }, 'user.planted', Buffer.from('1'), 0))).toBe('ESTALE');
    expect(listing(outside)).toEqual(['secret']);
    expect(() => sys.getxattr(outside, 'user.planted')).toThrow(/ENODATA/);
    // A lookup by its new name finds the real directory, which keeps its GFID and handle.
    expect((await lookup(g2, g2.itable.root, 'd.real')).gfid).toBe(d.gfid);
    expect((await nameless(g2, d.gfid)).ino).toBe(fs.statSync(path.join(dir, 'd.real')).ino);
  });

  test('an ancestor swapped for a symlink to a copy carrying the same GFIDs is not followed either', async () => {
    const { base, dir } = volumeInside();
    const g = await startGraph(dir);
    const b = newBridge(g);
    await b.mkdir('/a', 0o755);
    await b.mkdir('/a/b', 0o755);
    const ga = (await b.getattr('/a')).gfid;
    const gb = (await b.getattr('/a/b')).gfid;
    await stopGraph(g);
    // outside: a copy of a/b with the very same GFIDs (as `cp -a` by root would make)
    const copy = path.join(base, 'copy');
    fs.mkdirSync(path.join(copy, 'b'), { recursive: true });
    sys.setxattr(copy, 'trusted.gfid', sys.getxattr(path.join(dir, 'a'), 'trusted.gfid'), 0);
    sys.setxattr(path.join(copy, 'b'), 'trusted.gfid', sys.getxattr(path.join(dir, 'a', 'b'), 'trusted.gfid'), 0);
    fs.renameSync(path.join(dir, 'a'), path.join(dir, 'a.real'));
    fs.symlinkSync(copy, path.join(dir, 'a'));
    const g2 = await startGraph(dir, 2);
    const bInode = g2.itable.get(gb);
    bInode.type = S_IFDIR;
    expect(await createAll(g2, bInode, 'planted')).toEqual({ create: 'ESTALE', mkdir: 'ESTALE', mknod: 'ESTALE', symlink: 'ESTALE' });
    expect(await errCode(nameless(g2, gb))).toBe('ESTALE');
    expect(await errCode(nameless(g2, ga))).toBe('ESTALE');
    expect(listing(path.join(copy, 'b'))).toEqual([]);
    // and a directory swapped for another directory (no GFID) is not taken for it
    fs.unlinkSync(path.join(dir, 'a'));
    fs.mkdirSync(path.join(dir, 'a'));
    fs.mkdirSync(path.join(dir, 'a', 'b'));
    expect(await createAll(g2, bInode, 'planted')).toEqual({ create: 'ESTALE', mkdir: 'ESTALE', mknod: 'ESTALE', symlink: 'ESTALE' });
    expect(listing(path.join(dir, 'a', 'b'))).toEqual([]);
  });
});
