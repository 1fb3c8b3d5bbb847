// storage/posix on kernels without getxattrat(2) (before Linux 6.13): xattrs of entries go
// through /proc/self/fd/N/name, which reaches the entry in the open directory N without
// following anything the backing directory holds. The same guarantees, on that path.
// Needs root: trusted.* xattrs.

import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { nameFromBytes } from '../../src/core/types';
import { sys } from '../../xlators/storage/posix/sys';
import { cleanupGraphs, errCode, handlePath, lookup, nameless, startGraph, stopGraph, tempDir } from '../helpers/graphs';
import { createFile, listAll, mkdir, symlink } from './posix-helpers';

const { S_IFMT, S_IFLNK, S_IFIFO } = fs.constants;

beforeAll(() => {
  expect(sys.useXattrAt(false)).toBe(false);
});
// The addon is loaded once per process: put it back for the next test file.
afterAll(() => {
  sys.useXattrAt(true);
});
afterEach(cleanupGraphs);

test('the /proc path is the one in use (a closed fd is ENOENT there, EBADF for getxattrat)', () => {
  const fd = fs.openSync(tempDir(), 'r');
  fs.closeSync(fd);
  expect(() => sys.getxattrAt({ dirfd: fd, name: Buffer.from('x') }, 'user.x')).toThrow(/ENOENT/);
});

test('GFIDs of objects made outside xlstack, by lookup and readdirp; byte names', async () => {
  const dir = tempDir();
  const odd = nameFromBytes(Buffer.from([0x6f, 0xff, 0x25, 0x73])); // o\xff%s: raw bytes, and a format directive
  fs.writeFileSync(Buffer.concat([Buffer.from(dir + '/'), Buffer.from(odd, 'latin1')]), 'o');
  fs.mkdirSync(path.join(dir, 'od'));
  fs.symlinkSync('/etc/passwd', path.join(dir, 'ol'));
  execFileSync('mkfifo', [path.join(dir, 'of')]);
  const g = await startGraph(dir);
  const root = g.itable.root;
  const plus = Object.fromEntries((await listAll(g, root, true)).map((e) => [e.name, e.iatt!]));
  for (const name of Object.keys(plus)) {
    expect({ name, gfid: (await lookup(g, root, name)).gfid }).toEqual({ name, gfid: plus[name].gfid });
    expect((await nameless(g, plus[name].gfid)).ino).toBe(plus[name].ino);
  }
  expect(fs.lstatSync(handlePath(dir, plus[odd].gfid)).ino).toBe(plus[odd].ino);
  expect(plus.ol.mode & S_IFMT).toBe(S_IFLNK);
  // an xattr set on the symlink by GFID is the link's: /etc/passwd is not touched
  await g.top.setxattr(g.frame('setxattr'), { gfid: plus.ol.gfid }, 'trusted.mark', Buffer.from('on the link'), 0);
  expect((await g.top.getxattr(g.frame('getxattr'), { gfid: plus.ol.gfid }, 'trusted.mark')).toString()).toBe('on the link');
  expect(sys.listxattr('/etc/passwd')).not.toContain('trusted.mark');
  // xattr names with bytes that are not UTF-8
  const f = await createFile(g, root, 'f');
  const attr = nameFromBytes(Buffer.from('user.\xff\xfe', 'latin1'));
  await g.top.setxattr(g.frame('setxattr'), { inode: f }, attr, Buffer.from('v'), 0);
  expect(await g.top.listxattr(g.frame('listxattr'), { inode: f })).toEqual([attr]);
  await g.top.removexattr(g.frame('removexattr'), { inode: f }, attr);
  expect(await errCode(g.top.getxattr(g.frame('getxattr'), { inode: f }, attr))).toBe('ENODATA');
});

test('creation and handles work the same; a directory swapped for a symlink is still not followed', async () => {
  const base = tempDir();
  const dir = path.join(base, 'vol');
  const outside = path.join(base, 'outside');
  fs.mkdirSync(dir);
  fs.mkdirSync(outside);
  const g = await startGraph(dir);
  const d = await mkdir(g, g.itable.root, 'd');
  await createFile(g, d, 'inner', 'x');
  await symlink(g, d, 'l', 'inner');
  const n = await g.top.mknod(g.frame('mknod'), { parent: d, name: 'p', inode: g.itable.get('0badc0de-0000-4000-8000-000000000001') }, S_IFIFO | 0o600, 0);
  expect(sys.getxattr(path.join(dir, 'd', 'p'), 'trusted.gfid').toString('hex')).toBe(n.gfid.replace(/-/g, ''));
  await stopGraph(g);
  fs.renameSync(path.join(dir, 'd'), path.join(dir, 'd.real'));
  fs.symlinkSync(outside, path.join(dir, 'd'));
  const g2 = await startGraph(dir, 2);
  const d2 = g2.itable.get(d.gfid);
  expect(await errCode(createFile(g2, d2, 'planted'))).toBe('ESTALE');
  expect(await errCode(nameless(g2, d.gfid))).toBe('ESTALE');
  expect(fs.readdirSync(outside)).toEqual([]);
  expect((await lookup(g2, g2.itable.root, 'd.real')).gfid).toBe(d.gfid);
  expect((await listAll(g2, g2.itable.get(d.gfid))).map((e) => e.name).sort()).toEqual(['inner', 'l', 'p']);
});
