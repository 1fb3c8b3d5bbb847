// features/access-control over storage/posix, in process: each fop as callers who are not
// root, answered with the errno Linux gives on a local disk (pjdfstest's expectations:
// EACCES for missing mode bits, EPERM for what only an owner or root may do). Needs root
// (storage/posix chowns, sets trusted.* xattrs).
import * as fs from 'fs';
import { v4 as uuidv4 } from 'uuid';
import type { Fd } from '../../src/core/fd';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { buildGraph } from '../../src/core/builder';
import { XlEvent } from '../../src/core/events';
import { Logger } from '../../src/core/log';
import { Registry, TranslatorDef, defineTranslator } from '../../src/core/registry';
import { Caller, DirentPlus, Iatt, RENAME_NOREPLACE, ROOT_CALLER, ROOT_GFID } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { Xlator } from '../../src/core/xlator';
import { cleanupGraphs, errCode, startGraph, tempDir, within } from '../helpers/graphs';

const { O_RDONLY, O_WRONLY, O_RDWR, O_TRUNC, O_NOATIME, S_IFIFO, S_IFCHR, S_IFBLK, R_OK, W_OK } = fs.constants;
const NOBODY: Caller = { uid: 65534, gid: 65534, groups: [], pid: 1 };
const ALICE: Caller = { uid: 1234, gid: 1234, groups: [], pid: 2 };
const ROOT = ROOT_CALLER;

const volfile = (dir: string) => `volume posix
    type storage/posix
    option directory ${dir}
end-volume
volume acl
    type features/access-control
    subvolumes posix
end-volume
`;

let g: Graph;
let dir: string;

beforeEach(async () => {
  dir = tempDir('xlstack-acl-');
  g = await startGraph(dir, 1, volfile(dir));
});
afterEach(cleanupGraphs);

const root = () => g.itable.root;
const at = (parent: Inode, name: string, inode?: Inode) => ({ path: name, parent, name, inode });
const on = (inode: Inode) => ({ path: `<gfid:${inode.gfid}>`, inode, gfid: inode.gfid });
const frame = (who: Caller, op = 'test') => g.frame(op, who);

async function mkdir(parent: Inode, name: string, mode: number, owner?: Caller, who: Caller = ROOT): Promise<Inode> {
  const inode = g.itable.get(uuidv4());
  const iatt = await g.top.mkdir(frame(who), at(parent, name, inode), mode);
  g.itable.link(iatt, parent, name);
  if (owner) await g.top.setattr(frame(ROOT), on(inode), { uid: owner.uid, gid: owner.gid, mode });
  return inode;
}

async function file(parent: Inode, name: string, mode: number, owner?: Caller, who: Caller = ROOT): Promise<Inode> {
  const inode = g.itable.get(uuidv4());
  const fd = g.newFd(inode, O_RDWR, false);
  try {
    const iatt = await g.top.create(frame(who), at(parent, name, inode), mode, fd);
    g.itable.link(iatt, parent, name);
  } finally {
    await fd.unref();
  }
  if (owner) await g.top.setattr(frame(ROOT), on(inode), { uid: owner.uid, gid: owner.gid });
  await g.top.setattr(frame(ROOT), on(inode), { mode });
  return inode;
}

async function open(inode: Inode, flags: number, who: Caller): Promise<Fd> {
  const fd = g.newFd(inode, flags, false);
  try {
    await g.top.open(frame(who), on(inode), fd);
    return fd;
  } catch (e) {
    await fd.unref();
    throw e;
  }
}

/** 'OK' or the errno of opening (and closing again). */
const opens = async (inode: Inode, flags: number, who: Caller) => errCode(open(inode, flags, who).then((fd) => fd.unref()));
const stat = (inode: Inode): Promise<Iatt> => g.top.stat(frame(ROOT), on(inode));
const exists = (parent: Inode, name: string) => g.top.lookup(frame(ROOT), at(parent, name)).then(() => true, () => false);

describe('access-control: opening', () => {
  test('read and write need the mode bits of the caller’s class (owner, group, other)', async () => {
    const f = await file(root(), 'f', 0o640, ALICE);
    await g.top.setattr(frame(ROOT), on(f), { gid: 5000 });
    const member: Caller = { uid: 777, gid: 777, groups: [5000], pid: 3 };
    expect({
      ownerRead: await opens(f, O_RDONLY, ALICE),
      ownerWrite: await opens(f, O_WRONLY, ALICE),
      groupRead: await opens(f, O_RDONLY, member),
      groupWrite: await opens(f, O_RDWR, member),
      otherRead: await opens(f, O_RDONLY, NOBODY),
      otherTrunc: await opens(f, O_RDONLY | O_TRUNC, member),
      root: await opens(f, O_RDWR, ROOT),
    }).toEqual({ ownerRead: 'OK', ownerWrite: 'OK', groupRead: 'OK', groupWrite: 'EACCES', otherRead: 'EACCES', otherTrunc: 'EACCES', root: 'OK' });
  });

  test('the owner gets the owner bits only, even where group or other would grant more', async () => {
    const f = await file(root(), 'f', 0o077, ALICE);
    expect(await opens(f, O_RDONLY, ALICE)).toBe('EACCES');
    expect(await opens(f, O_RDONLY, NOBODY)).toBe('OK');
  });

  test('O_NOATIME is the owner’s; a directory opened for writing is EISDIR; opendir needs read permission', async () => {
    const f = await file(root(), 'f', 0o666, ALICE);
    expect(await opens(f, O_RDONLY | O_NOATIME, NOBODY)).toBe('EPERM');
    expect(await opens(f, O_RDONLY | O_NOATIME, ALICE)).toBe('OK');
    const d = await mkdir(root(), 'd', 0o711);
    expect(await opens(d, O_WRONLY, NOBODY)).toBe('EISDIR');
    const dfd = g.newFd(d, O_RDONLY, true);
    expect(await errCode(g.top.opendir(frame(NOBODY), on(d), dfd))).toBe('EACCES');
    await dfd.unref();
  });

  test('access(2) answers by the same rules', async () => {
    const f = await file(root(), 'f', 0o600);
    expect(await errCode(g.top.access(frame(NOBODY), on(f), R_OK))).toBe('EACCES');
    expect(await errCode(g.top.access(frame(ROOT), on(f), R_OK | W_OK))).toBe('OK');
  });
});

describe('access-control: names in directories', () => {
  test('lookup needs search permission on the directory: EACCES even for a name that is not there', async () => {
    const d = await mkdir(root(), 'private', 0o700);
    await file(d, 'f', 0o644);
    expect(await errCode(g.top.lookup(frame(NOBODY), at(d, 'f')))).toBe('EACCES');
    expect(await errCode(g.top.lookup(frame(NOBODY), at(d, 'missing')))).toBe('EACCES');
    const open = await mkdir(root(), 'open', 0o755);
    expect(await errCode(g.top.lookup(frame(NOBODY), at(open, 'missing')))).toBe('ENOENT');
  });

  test('creating needs write permission on the directory; an existing name is EEXIST first', async () => {
    const d = await mkdir(root(), 'ro', 0o755);
    await file(d, 'taken', 0o644);
    const made = (name: string) => g.itable.get(uuidv4());
    expect({
      mkdir: await errCode(g.top.mkdir(frame(NOBODY), at(d, 'x', made('x')), 0o755)),
      mknod: await errCode(g.top.mknod(frame(NOBODY), at(d, 'x', made('x')), S_IFIFO | 0o644, 0)),
      symlink: await errCode(g.top.symlink(frame(NOBODY), 'target', at(d, 'x', made('x')))),
      mkdirTaken: await errCode(g.top.mkdir(frame(NOBODY), at(d, 'taken', made('x')), 0o755)),
    }).toEqual({ mkdir: 'EACCES', mknod: 'EACCES', symlink: 'EACCES', mkdirTaken: 'EEXIST' });
    expect(await exists(d, 'x')).toBe(false);
    const w = await mkdir(root(), 'rw', 0o777);
    await mkdir(w, 'mine', 0o750, undefined, NOBODY);
    const st = fs.statSync(`${dir}/rw/mine`);
    expect([st.uid, st.gid, st.mode & 0o7777]).toEqual([NOBODY.uid, NOBODY.gid, 0o750]);
  });

  test('only root makes device nodes', async () => {
    const w = await mkdir(root(), 'rw', 0o777);
    for (const type of [S_IFCHR, S_IFBLK]) {
      expect(await errCode(g.top.mknod(frame(NOBODY), at(w, `dev${type}`, g.itable.get(uuidv4())), type | 0o666, (1 << 8) | 3))).toBe('EPERM');
    }
    expect(await errCode(g.top.mknod(frame(NOBODY), at(w, 'fifo', g.itable.get(uuidv4())), S_IFIFO | 0o666, 0))).toBe('OK');
  });

  test('unlink and rmdir need write permission on the directory; a missing name is ENOENT', async () => {
    const d = await mkdir(root(), 'ro', 0o755);
    await file(d, 'f', 0o666, NOBODY);
    await mkdir(d, 'sub', 0o777, NOBODY);
    expect(await errCode(g.top.unlink(frame(NOBODY), at(d, 'f')))).toBe('EACCES');
    expect(await errCode(g.top.rmdir(frame(NOBODY), at(d, 'sub')))).toBe('EACCES');
    expect(await errCode(g.top.unlink(frame(NOBODY), at(d, 'missing')))).toBe('ENOENT');
    expect(await exists(d, 'f')).toBe(true);
  });

  test('a sticky directory: only the entry’s owner, the directory’s owner or root removes or renames an entry', async () => {
    const tmp = await mkdir(root(), 'tmp', 0o1777, ALICE);
    await file(tmp, 'nobodys', 0o644, NOBODY);
    await file(tmp, 'roots', 0o666);
    const bob: Caller = { uid: 4321, gid: 4321, groups: [], pid: 4 };
    expect(await errCode(g.top.unlink(frame(bob), at(tmp, 'nobodys')))).toBe('EPERM');
    expect(await errCode(g.top.rename(frame(bob), at(tmp, 'nobodys'), at(tmp, 'stolen'), 0))).toBe('EPERM');
    expect(await errCode(g.top.rename(frame(bob), at(tmp, 'x-missing'), at(tmp, 'roots'), 0))).toBe('ENOENT');
    await file(tmp, 'bobs', 0o644, bob);
    expect(await errCode(g.top.rename(frame(bob), at(tmp, 'bobs'), at(tmp, 'roots'), 0))).toBe('EPERM');
    expect(await errCode(g.top.unlink(frame(NOBODY), at(tmp, 'nobodys')))).toBe('OK');
    expect(await errCode(g.top.unlink(frame(ALICE), at(tmp, 'roots')))).toBe('OK');
  });

  test('rename: write permission on both directories; a directory moving to another parent must be writable; NOREPLACE says EEXIST first', async () => {
    const a = await mkdir(root(), 'a', 0o777);
    const b = await mkdir(root(), 'b', 0o755);
    await file(a, 'f', 0o644, NOBODY);
    expect(await errCode(g.top.rename(frame(NOBODY), at(a, 'f'), at(b, 'f'), 0))).toBe('EACCES');
    await file(b, 'taken', 0o644);
    expect(await errCode(g.top.rename(frame(NOBODY), at(a, 'f'), at(b, 'taken'), RENAME_NOREPLACE))).toBe('EEXIST');
    const c = await mkdir(root(), 'c', 0o777);
    await mkdir(a, 'sub', 0o555, NOBODY);
    expect(await errCode(g.top.rename(frame(NOBODY), at(a, 'sub'), at(c, 'sub'), 0))).toBe('EACCES');
    expect(await errCode(g.top.rename(frame(NOBODY), at(a, 'sub'), at(a, 'renamed'), 0))).toBe('OK');
    expect(await exists(a, 'renamed')).toBe(true);
  });

  test('link: protected hard links (a file not the caller’s must be one it may read and write), then write permission', async () => {
    const w = await mkdir(root(), 'rw', 0o777);
    const secret = await file(root(), 'secret', 0o600);
    const shared = await file(root(), 'shared', 0o666);
    const setuid = await file(root(), 'setuid', 0o4777);
    expect(await errCode(g.top.link(frame(NOBODY), on(secret), at(w, 'l1')))).toBe('EPERM');
    expect(await errCode(g.top.link(frame(NOBODY), on(setuid), at(w, 'l2')))).toBe('EPERM');
    expect(await errCode(g.top.link(frame(NOBODY), on(shared), at(w, 'l3')))).toBe('OK');
    expect(await errCode(g.top.link(frame(NOBODY), on(shared), at(w, 'l3')))).toBe('EEXIST');
    const ro = await mkdir(root(), 'ro', 0o755);
    expect(await errCode(g.top.link(frame(NOBODY), on(shared), at(ro, 'l4')))).toBe('EACCES');
  });
});

describe('access-control: attributes', () => {
  test('chmod of the brick root (or anything not the caller’s) is EPERM; the owner may', async () => {
    expect(await errCode(g.top.setattr(frame(ALICE), on(root()), { mode: 0o777 }))).toBe('EPERM');
    expect(fs.statSync(dir).mode & 0o7777).not.toBe(0o777);
    const f = await file(root(), 'f', 0o600, ALICE);
    expect(await errCode(g.top.setattr(frame(ALICE), on(f), { mode: 0o640 }))).toBe('OK');
    expect((await stat(f)).mode & 0o7777).toBe(0o640);
  });

  test('chmod g+s by an owner outside the file’s group: the setgid bit is dropped, the rest applies', async () => {
    const f = await file(root(), 'f', 0o644, ALICE);
    await g.top.setattr(frame(ROOT), on(f), { gid: 5000 });
    await g.top.setattr(frame(ALICE), on(f), { mode: 0o2755 });
    expect((await stat(f)).mode & 0o7777).toBe(0o755);
    await g.top.setattr(frame({ ...ALICE, groups: [5000] }), on(f), { mode: 0o2755 });
    expect((await stat(f)).mode & 0o7777).toBe(0o2755);
  });

  test('chown: only root gives a file away; the owner may change the group to one of its own', async () => {
    const f = await file(root(), 'f', 0o644, ALICE);
    const withGroups: Caller = { ...ALICE, groups: [6000] };
    expect({
      giveAway: await errCode(g.top.setattr(frame(ALICE), on(f), { uid: NOBODY.uid })),
      sameUid: await errCode(g.top.setattr(frame(ALICE), on(f), { uid: ALICE.uid })),
      notMyGroup: await errCode(g.top.setattr(frame(ALICE), on(f), { gid: 6000 })),
      myGroup: await errCode(g.top.setattr(frame(withGroups), on(f), { gid: 6000 })),
      byOther: await errCode(g.top.setattr(frame(NOBODY), on(f), { gid: NOBODY.gid })),
      root: await errCode(g.top.setattr(frame(ROOT), on(f), { uid: NOBODY.uid })),
    }).toEqual({ giveAway: 'EPERM', sameUid: 'OK', notMyGroup: 'EPERM', myGroup: 'OK', byOther: 'EPERM', root: 'OK' });
    expect((await stat(f)).uid).toBe(NOBODY.uid);
  });

  test('times: explicit ones are the owner’s (EPERM); "now" for both needs only write permission (EACCES)', async () => {
    const ro = await file(root(), 'ro', 0o644);
    const rw = await file(root(), 'rw', 0o666);
    const mine = await file(root(), 'mine', 0o444, NOBODY);
    const t = { sec: 1_000_000, nsec: 0 };
    expect({
      explicit: await errCode(g.top.setattr(frame(NOBODY), on(rw), { atime: t, mtime: t })),
      nowOmit: await errCode(g.top.setattr(frame(NOBODY), on(rw), { mtime: 'now' })),
      touchWritable: await errCode(g.top.setattr(frame(NOBODY), on(rw), { atime: 'now', mtime: 'now' })),
      touchReadOnly: await errCode(g.top.setattr(frame(NOBODY), on(ro), { atime: 'now', mtime: 'now' })),
      owner: await errCode(g.top.setattr(frame(NOBODY), on(mine), { atime: t, mtime: t })),
    }).toEqual({ explicit: 'EPERM', nowOmit: 'EPERM', touchWritable: 'OK', touchReadOnly: 'EACCES', owner: 'OK' });
    expect((await stat(mine)).mtime.sec).toBe(t.sec);
  });

  test('truncate needs write permission', async () => {
    const f = await file(root(), 'f', 0o644);
    expect(await errCode(g.top.truncate(frame(NOBODY), on(f), 0))).toBe('EACCES');
    await g.top.setattr(frame(ROOT), on(f), { mode: 0o666 });
    expect(await errCode(g.top.truncate(frame(NOBODY), on(f), 0))).toBe('OK');
  });

  test('a write by someone who is not root clears setuid, and setgid with group execute (pjdfstest chmod/12)', async () => {
    for (const [mode, after] of [
      [0o4777, 0o777],
      [0o2777, 0o777],
      [0o6777, 0o777],
      [0o2767, 0o2767],
    ]) {
      const f = await file(root(), `f${mode.toString(8)}`, mode);
      const fd = await open(f, O_WRONLY, NOBODY);
      await g.top.write(frame(NOBODY), fd, Buffer.from('x'), 0);
      await fd.unref();
      expect({ mode: mode.toString(8), after: ((await stat(f)).mode & 0o7777).toString(8) }).toEqual({ mode: mode.toString(8), after: after.toString(8) });
    }
    const f = await file(root(), 'rootwrites', 0o4777);
    const fd = await open(f, O_WRONLY, ROOT);
    await g.top.write(frame(ROOT), fd, Buffer.from('x'), 0);
    await fd.unref();
    expect((await stat(f)).mode & 0o7777).toBe(0o4777);
  });
});

describe('access-control: extended attributes and locks', () => {
  test('user.* follows read and write permission; trusted.* is root’s; system.* is set by root only', async () => {
    const f = await file(root(), 'f', 0o644);
    await g.top.setxattr(frame(ROOT), on(f), 'user.a', Buffer.from('1'), 0);
    await g.top.setxattr(frame(ROOT), on(f), 'trusted.t', Buffer.from('2'), 0);
    const secret = await file(root(), 'secret', 0o600);
    expect({
      readUser: await errCode(g.top.getxattr(frame(NOBODY), on(f), 'user.a')),
      readUserSecret: await errCode(g.top.getxattr(frame(NOBODY), on(secret), 'user.a')),
      writeUser: await errCode(g.top.setxattr(frame(NOBODY), on(f), 'user.b', Buffer.from('x'), 0)),
      removeUser: await errCode(g.top.removexattr(frame(NOBODY), on(f), 'user.a')),
      readTrusted: await errCode(g.top.getxattr(frame(NOBODY), on(f), 'trusted.t')),
      writeTrusted: await errCode(g.top.setxattr(frame(NOBODY), on(f), 'trusted.x', Buffer.from('x'), 0)),
      writeSystem: await errCode(g.top.setxattr(frame(NOBODY), on(f), 'system.posix_acl_access', Buffer.alloc(4), 0)),
    }).toEqual({
      readUser: 'OK',
      readUserSecret: 'EACCES',
      writeUser: 'EACCES',
      removeUser: 'EACCES',
      readTrusted: 'ENODATA',
      writeTrusted: 'EPERM',
      writeSystem: 'EOPNOTSUPP',
    });
    expect(await g.top.listxattr(frame(NOBODY), on(f))).toEqual(['user.a']);
    expect((await g.top.listxattr(frame(ROOT), on(f))).sort()).toEqual(['trusted.t', 'user.a']);
  });

  test('a POSIX lock needs an fd open for its kind of lock (EBADF); F_GETLK and flock need nothing', async () => {
    const f = await file(root(), 'f', 0o666);
    const wo = await open(f, O_WRONLY, NOBODY);
    const ro = await open(f, O_RDONLY, NOBODY);
    const lock = (type: 'read' | 'write') => ({ type, start: 0, end: 10, pid: 1 });
    expect(await errCode(g.top.lk(frame(NOBODY), wo, 'set', lock('read'), 'posix'))).toBe('EBADF');
    expect(await errCode(g.top.lk(frame(NOBODY), ro, 'wait', lock('write'), 'posix'))).toBe('EBADF');
    // These pass the check (storage/posix itself keeps no locks: what it answers is not EBADF).
    expect(await errCode(g.top.lk(frame(NOBODY), ro, 'get', lock('write'), 'posix'))).not.toBe('EBADF');
    expect(await errCode(g.top.lk(frame(NOBODY), ro, 'set', lock('write'), 'flock'))).not.toBe('EBADF');
    expect(await errCode(g.top.lk(frame(NOBODY), ro, 'set', lock('read'), 'posix'))).not.toBe('EBADF');
    await wo.unref();
    await ro.unref();
  });
});

describe('access-control: readdirp', () => {
  /** A directory of mode `mode` owned by root, listing one entry with its attributes. */
  class Listing extends Xlator {
    constructor(
      init: ConstructorParameters<typeof Xlator>[0],
      private readonly mode: number,
    ) {
      super(init);
    }
    override notify(event: XlEvent, from?: Xlator): void {
      if (event === XlEvent.PARENT_UP) this.up(XlEvent.CHILD_UP);
      else super.notify(event, from);
    }
    private attrs(gfid: string, mode: number): Iatt {
      const t = { sec: 1, nsec: 0 };
      return { gfid, ino: 1, mode, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 42, blksize: 4096, blocks: 1, atime: t, mtime: t, ctime: t };
    }
    override async fstat(): Promise<Iatt> {
      return this.attrs(ROOT_GFID, fs.constants.S_IFDIR | this.mode);
    }
    override async readdirp(): Promise<DirentPlus[]> {
      return [{ name: 'f', offset: 1, ino: 7, type: fs.constants.S_IFREG, iatt: this.attrs('77777777-7777-4777-8777-777777777777', fs.constants.S_IFREG | 0o600) }];
    }
  }

  async function listAs(mode: number, who: Caller): Promise<DirentPlus[]> {
    const registry = new Registry();
    registry.register(defineTranslator({ type: 'test/listing', description: 'one entry', options: {}, subvolumes: { min: 0, max: 0 }, create: (init) => new Listing(init, mode) }) as unknown as TranslatorDef);
    const text = 'volume l\n    type test/listing\nend-volume\nvolume acl\n    type features/access-control\n    subvolumes l\nend-volume\n';
    const lg = buildGraph(parseVolfile(text, 'acl.vol'), { id: 50 + mode, registry, log: Logger.create('error') });
    expect(await within(lg.start(5000))).toBe('up');
    try {
      const fd = lg.newFd(lg.itable.root, O_RDONLY, true);
      const entries = await lg.top.readdirp(lg.frame('readdirp', who), fd, 4096, 0);
      await fd.unref();
      return entries;
    } finally {
      await within(lg.stop(5000));
    }
  }

  test("entries' attributes need search permission on the directory, as stat(2) would; the names need only read", async () => {
    const readOnly = await listAs(0o744, NOBODY);
    expect(readOnly.map((e) => [e.name, e.iatt])).toEqual([['f', undefined]]);
    const searchable = await listAs(0o755, NOBODY);
    expect(searchable[0].iatt?.size).toBe(42);
    expect((await listAs(0o700, ROOT))[0].iatt?.size).toBe(42);
  });
});
