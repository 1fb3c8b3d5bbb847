// storage/posix: names are bytes. Names, symlink targets and xattr names reach the backing
// filesystem as exactly the bytes of their byte string (latin1), never through UTF-8:
// invalid UTF-8 round-trips, distinct byte names never collide, and a string that is not
// a byte string is EINVAL. Needs root: trusted.* xattrs.

import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { v4 as uuidv4 } from 'uuid';
import { nameBytes, nameFromBytes, nameFromUtf8 } from '../../src/core/types';
import { cleanupGraphs, errCode, lookup, nameless, startGraph, stopGraph, tempDir } from '../helpers/graphs';
import { create, createFile, listAll, mkdir, readAllFd, symlink, tree } from './posix-helpers';

const { O_RDWR, S_IFMT, S_IFLNK, S_IFIFO } = fs.constants;

afterEach(cleanupGraphs);

/** Names whose bytes are not valid UTF-8 (or are, differently spelt), as byte strings. */
const BAD_UTF8 = {
  lone: nameFromBytes(Buffer.from([0x66, 0xff, 0x6f])), // f\xffo
  latin1: nameFromBytes(Buffer.from('caf\xe9', 'latin1')), // café in latin1: \xe9 alone
  truncated: nameFromBytes(Buffer.from([0xe2, 0x82])), // the start of € without its end
  overlong: nameFromBytes(Buffer.from([0xc0, 0xaf, 0x2e])), // an overlong '/' then '.'
  surrogate: nameFromBytes(Buffer.from([0xed, 0xa0, 0x80])), // a UTF-16 surrogate in UTF-8
  controls: nameFromBytes(Buffer.from([0x01, 0x0a, 0x7f, 0x80])),
};

/** The backing directory's names, as raw bytes. */
const rawNames = (dir: string): Buffer[] => fs.readdirSync(dir, { encoding: 'buffer' }).filter((b) => b.toString() !== '.xlstack');
const rawPath = (dir: string, ...names: string[]): Buffer => Buffer.concat([Buffer.from(dir), ...names.map((n) => Buffer.concat([Buffer.from('/'), nameBytes(n)]))]);
const hexSorted = (bs: Buffer[]) => bs.map((b) => b.toString('hex')).sort();

describe('names with bytes that are not UTF-8', () => {
  test('create, lookup, readdir, readdirp, rename and unlink keep every byte', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const names = Object.values(BAD_UTF8);
    const gfids = new Map<string, string>();
    for (const [i, name] of names.entries()) gfids.set(name, (await createFile(g, root, name, `data ${i}`)).gfid);

    // on disk: exactly those bytes
    expect(hexSorted(rawNames(dir))).toEqual(hexSorted(names.map(nameBytes)));
    // lookup finds each by its bytes, with its GFID and its data
    for (const [i, name] of names.entries()) {
      const ia = await lookup(g, root, name);
      expect({ name: nameBytes(name).toString('hex'), gfid: ia.gfid }).toEqual({ name: nameBytes(name).toString('hex'), gfid: gfids.get(name) });
      expect(fs.readFileSync(rawPath(dir, name), 'latin1')).toBe(`data ${i}`);
    }
    // listings give the same byte strings back
    expect((await listAll(g, root)).map((e) => e.name).sort()).toEqual([...names].sort());
    const plus = await listAll(g, root, true);
    expect(plus.map((e) => [e.name, e.iatt?.gfid]).sort()).toEqual(names.map((n) => [n, gfids.get(n)]).sort());

    // rename to another invalid name, into a directory with an invalid name
    const sub = await mkdir(g, root, BAD_UTF8.surrogate + '-dir');
    const to = nameFromBytes(Buffer.from([0xfe, 0xfe]));
    await g.top.rename(g.frame('rename'), { parent: root, name: BAD_UTF8.lone }, { parent: sub, name: to }, 0);
    expect(fs.readFileSync(rawPath(dir, BAD_UTF8.surrogate + '-dir', to), 'latin1')).toBe('data 0');
    expect((await lookup(g, sub, to)).gfid).toBe(gfids.get(BAD_UTF8.lone));
    expect(await errCode(lookup(g, root, BAD_UTF8.lone))).toBe('ENOENT');

    // unlink removes exactly that name
    await g.top.unlink(g.frame('unlink'), { parent: root, name: BAD_UTF8.latin1 });
    expect(hexSorted(rawNames(dir))).toEqual(hexSorted([BAD_UTF8.surrogate + '-dir', ...names.filter((n) => n !== BAD_UTF8.lone && n !== BAD_UTF8.latin1)].map(nameBytes)));
    expect(await errCode(nameless(g, gfids.get(BAD_UTF8.latin1)!))).toBe('ESTALE');
  });

  test('names that differ only in encoding are different names and never collide', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const latin1 = nameFromBytes(Buffer.from('caf\xe9', 'latin1')); // 63 61 66 e9
    const utf8 = nameFromUtf8('café'); // 63 61 66 c3 a9
    const decomposed = nameFromUtf8('cafe\u0301'); // e + combining acute
    expect(new Set([latin1, utf8, decomposed]).size).toBe(3);
    await createFile(g, root, latin1, 'L');
    await createFile(g, root, utf8, 'U');
    await createFile(g, root, decomposed, 'D');
    // creating any of them again is EEXIST; each reads its own data
    for (const name of [latin1, utf8, decomposed]) {
      expect(await errCode(create(g, root, name).then((r) => r.fd.unref()))).toBe('EEXIST');
    }
    expect(fs.readFileSync(rawPath(dir, latin1), 'latin1')).toBe('L');
    expect(fs.readFileSync(rawPath(dir, utf8), 'latin1')).toBe('U');
    expect(fs.readFileSync(rawPath(dir, decomposed), 'latin1')).toBe('D');
    expect(hexSorted(rawNames(dir))).toEqual(['636166c3a9', '636166e9', '63616665cc81'].sort());
  });

  test('a 255-byte name of high bytes is fine; 256 is ENAMETOOLONG whatever UTF-8 would make of them', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const ok = nameFromBytes(Buffer.alloc(255, 0xe9));
    await createFile(g, root, ok, 'x');
    expect(fs.readFileSync(rawPath(dir, ok), 'latin1')).toBe('x');
    expect(await errCode(lookup(g, root, ok + '\xe9'))).toBe('ENAMETOOLONG');
  });

  test('symlink targets are bytes: readlink gives the target back exactly, on disk too', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const target = nameFromBytes(Buffer.from([0x2e, 0x2e, 0x2f, 0xff, 0xfe, 0x2f, 0xc3, 0x28]));
    const s = await symlink(g, root, BAD_UTF8.lone, target);
    expect(fs.readlinkSync(rawPath(dir, BAD_UTF8.lone), { encoding: 'buffer' })).toEqual(nameBytes(target));
    expect(await g.top.readlink(g.frame('readlink'), { inode: s })).toBe(target);
    // by GFID alone after a restart, too
    await stopGraph(g);
    const g2 = await startGraph(dir, 2);
    const ia = await nameless(g2, s.gfid);
    expect(ia.mode & S_IFMT).toBe(S_IFLNK);
    expect(await g2.top.readlink(g2.frame('readlink'), { gfid: s.gfid })).toBe(target);
    // the longest target the kernel takes (4095 bytes), and one byte more
    const longest = nameFromBytes(Buffer.alloc(4095, 0xe9));
    const l = await symlink(g2, g2.itable.root, 'longest', longest);
    expect(await g2.top.readlink(g2.frame('readlink'), { inode: l })).toBe(longest);
    expect(await errCode(symlink(g2, g2.itable.root, 'too-long', longest + 'x'))).toBe('ENAMETOOLONG');
    expect(fs.existsSync(path.join(dir, 'too-long'))).toBe(false);
  });

  test('xattr names and values are bytes: set, get, list and remove round-trip', async () => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const f = await createFile(g, g.itable.root, 'f');
    const loc = { inode: f };
    const names = [`user.${BAD_UTF8.lone}`, `user.${nameFromUtf8('é')}`, `user.${nameFromBytes(Buffer.from([0xe9]))}`];
    for (const [i, n] of names.entries()) await g.top.setxattr(g.frame('setxattr'), loc, n, Buffer.from([i, 0xff, 0]), 0);
    for (const [i, n] of names.entries()) expect(await g.top.getxattr(g.frame('getxattr'), loc, n)).toEqual(Buffer.from([i, 0xff, 0]));
    expect((await g.top.listxattr(g.frame('listxattr'), loc)).sort()).toEqual([...names].sort());
    // on disk, under exactly those bytes (getfattr prints names as the raw bytes they are)
    const dump = execFileSync('getfattr', ['-d', '-m', '', '-e', 'hex', '--absolute-names', path.join(dir, 'f')]);
    for (const [i, n] of names.entries()) expect({ n, found: dump.includes(Buffer.concat([nameBytes(n), Buffer.from(`=0x0${i}ff00`)])) }).toEqual({ n, found: true });
    // names set outside xlstack come back as their bytes, however invalid as UTF-8
    const outside = [nameFromBytes(Buffer.from('user.\xff', 'latin1')), nameFromBytes(Buffer.from('user.\xfe', 'latin1'))];
    const restore = path.join(tempDir(), 'restore');
    fs.writeFileSync(restore, Buffer.concat([Buffer.from(`# file: ${path.join(dir, 'f')}\n`), ...outside.map((n) => Buffer.concat([nameBytes(n), Buffer.from('="x"\n')]))]));
    execFileSync('setfattr', [`--restore=${restore}`]);
    expect((await g.top.listxattr(g.frame('listxattr'), loc)).sort()).toEqual([...names, ...outside].sort());
    expect((await g.top.getxattr(g.frame('getxattr'), loc, outside[1])).toString()).toBe('x');
    await g.top.removexattr(g.frame('removexattr'), loc, outside[0]);
    await g.top.removexattr(g.frame('removexattr'), loc, outside[1]);
    await g.top.removexattr(g.frame('removexattr'), loc, names[0]);
    expect((await g.top.listxattr(g.frame('listxattr'), loc)).sort()).toEqual(names.slice(1).sort());
    expect(await errCode(g.top.getxattr(g.frame('getxattr'), loc, names[0]))).toBe('ENODATA');
  });
});

describe('strings that are not byte strings are EINVAL, and nothing is made', () => {
  const NOT_BYTES = ['\u20ac', 'a\u0100b', '\ud83d\ude00', '\ufffd'];

  test.each(NOT_BYTES.map((s) => [JSON.stringify(s), s]))('name %s', async (_label, name) => {
    const dir = tempDir();
    const g = await startGraph(dir);
    const root = g.itable.root;
    const f = await createFile(g, root, 'f');
    const before = tree(dir);
    const newLoc = () => ({ parent: root, name, inode: g.itable.get(uuidv4()) });
    const fd = g.newFd(g.itable.get(uuidv4()), O_RDWR, false);
    const codes = {
      lookup: await errCode(lookup(g, root, name)),
      create: await errCode(g.top.create(g.frame('create'), { ...newLoc(), inode: fd.inode }, 0o644, fd)),
      mkdir: await errCode(g.top.mkdir(g.frame('mkdir'), newLoc(), 0o755)),
      mknod: await errCode(g.top.mknod(g.frame('mknod'), newLoc(), S_IFIFO | 0o644, 0)),
      symlink: await errCode(g.top.symlink(g.frame('symlink'), 't', newLoc())),
      symlinkTarget: await errCode(g.top.symlink(g.frame('symlink'), name, { parent: root, name: 's', inode: g.itable.get(uuidv4()) })),
      link: await errCode(g.top.link(g.frame('link'), { inode: f }, { parent: root, name })),
      renameTo: await errCode(g.top.rename(g.frame('rename'), { parent: root, name: 'f' }, { parent: root, name }, 0)),
      unlink: await errCode(g.top.unlink(g.frame('unlink'), { parent: root, name })),
      setxattr: await errCode(g.top.setxattr(g.frame('setxattr'), { inode: f }, `user.${name}`, Buffer.from('v'), 0)),
      getxattr: await errCode(g.top.getxattr(g.frame('getxattr'), { inode: f }, `user.${name}`)),
      removexattr: await errCode(g.top.removexattr(g.frame('removexattr'), { inode: f }, `user.${name}`)),
    };
    await fd.unref();
    expect(codes).toEqual(Object.fromEntries(Object.keys(codes).map((k) => [k, 'EINVAL'])));
    expect(tree(dir)).toEqual(before);
    expect(await g.top.listxattr(g.frame('listxattr'), { inode: f })).toEqual([]);
  });
});

describe('the backing directory option is an ordinary (UTF-8) path', () => {
  test('a backing directory whose path has non-ASCII characters works', async () => {
    const base = tempDir();
    const dir = path.join(base, 'brick-é-€');
    fs.mkdirSync(dir);
    const g = await startGraph(dir);
    const f = await createFile(g, g.itable.root, 'x', 'hello');
    expect(fs.readFileSync(path.join(dir, 'x'), 'utf8')).toBe('hello');
    const { fd } = await create(g, g.itable.root, 'y');
    try {
      expect((await readAllFd(g, fd)).length).toBe(0);
    } finally {
      await fd.unref();
    }
    expect((await nameless(g, f.gfid)).size).toBe(5);
  });
});
