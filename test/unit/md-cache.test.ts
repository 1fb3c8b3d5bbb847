// performance/md-cache: what it answers itself (attributes, names, their absence, xattrs),
// for how long (a ManualClock: time moves only when a test says), and that every change
// through it, every upcall and every lost connection leaves nothing stale. Races (a reply
// computed before a change arriving after it) are held in place with debug/gate.
import * as fs from 'fs';
import * as path from 'path';
import { XlEvent } from '../../src/core/events';
import type { Iatt } from '../../src/core/types';
import type { MdCache } from '../../xlators/performance/md-cache';
import { CacheStack, cacheStack, stopCacheStacks } from '../helpers/caches';
import { cleanupGraphs, errCode, within } from '../helpers/graphs';

afterEach(async () => {
  await stopCacheStacks();
  await cleanupGraphs();
});

const stack = (options: Record<string, string> = {}) => cacheStack([{ type: 'performance/md-cache', options: { 'md-cache-timeout': '5', ...options } }]);
const mdc = (s: CacheStack) => s.xl<MdCache>('md-cache');
const stat = (s: CacheStack, gfid: string): Promise<Iatt> => s.graph.top.stat(s.frame('stat'), { gfid, inode: s.graph.itable.find(gfid) });

describe('what md-cache answers itself', () => {
  test('a stat within md-cache-timeout is answered here; after it, storage is asked again', async () => {
    const s = await stack();
    const { iatt } = await s.create('f', 'hello');
    const before = s.calls('stat');
    expect((await stat(s, iatt.gfid)).size).toBe(5);
    const asked = s.calls('stat');
    expect(asked).toBe(before + 1);
    s.clock.advance(4999);
    expect((await stat(s, iatt.gfid)).size).toBe(5);
    expect(s.calls('stat')).toBe(asked);
    s.clock.advance(1);
    await stat(s, iatt.gfid);
    expect(s.calls('stat')).toBe(asked + 1);
  });

  test('a looked-up name is answered here, and so is a name that does not exist', async () => {
    const s = await stack();
    await s.create('f', 'x');
    await s.lookup('f');
    const looked = s.calls('lookup');
    await s.lookup('f');
    expect(s.calls('lookup')).toBe(looked);
    expect(await errCode(s.lookup('missing'))).toBe('ENOENT');
    expect(await errCode(s.lookup('missing'))).toBe('ENOENT');
    expect(s.calls('lookup')).toBe(looked + 1);
    expect(mdc(s).dump()).toMatchObject({ negativeHits: 1 });
  });

  test('cache-negative-lookup off: an absent name is asked every time', async () => {
    const s = await stack({ 'cache-negative-lookup': 'off' });
    expect(await errCode(s.lookup('missing'))).toBe('ENOENT');
    expect(await errCode(s.lookup('missing'))).toBe('ENOENT');
    expect(s.calls('lookup')).toBe(2);
  });

  test('md-cache-timeout 0 caches nothing', async () => {
    const s = await stack({ 'md-cache-timeout': '0' });
    const { iatt } = await s.create('f', 'x');
    await stat(s, iatt.gfid);
    await stat(s, iatt.gfid);
    expect(s.calls('stat')).toBe(2);
    expect(mdc(s).dump()).toMatchObject({ inodes: 0 });
  });

  test('xattrs and their absence are cached; trusted.* never are', async () => {
    const s = await stack();
    const { inode } = await s.create('f', 'x');
    await s.graph.top.setxattr(s.frame(), { inode }, 'user.a', Buffer.from('1'), 0);
    await s.graph.top.setxattr(s.frame(), { inode }, 'trusted.t', Buffer.from('2'), 0);
    const get = (n: string) => s.graph.top.getxattr(s.frame(), { inode }, n);
    expect((await get('user.a')).toString()).toBe('1');
    expect((await get('user.a')).toString()).toBe('1');
    expect(await errCode(get('user.none'))).toBe('ENODATA');
    expect(await errCode(get('user.none'))).toBe('ENODATA');
    expect(s.calls('getxattr')).toBe(2);
    await get('trusted.t');
    await get('trusted.t');
    expect(s.calls('getxattr')).toBe(4);
  });

  test('readdirp fills the cache: the entries it listed are then looked up here', async () => {
    const s = await stack();
    for (const n of ['a', 'b', 'c']) await s.create(n, n);
    const dir = await s.open(s.root);
    const entries = await s.graph.top.readdirp(s.frame(), dir, 65536, 0);
    await dir.unref();
    expect(entries.map((e) => e.name).sort()).toEqual(['a', 'b', 'c']);
    const looked = s.calls('lookup');
    for (const n of ['a', 'b', 'c']) expect((await s.lookup(n)).iatt.size).toBe(1);
    expect(s.calls('lookup')).toBe(looked);
  });
  test('readdirp brings each file\'s xattr names: a getxattr of any other name is answered ENODATA here (ls -l asks two per file)', async () => {
    const s = await stack();
    const { inode } = await s.create('a', 'a');
    await s.graph.top.setxattr(s.frame(), { inode }, 'user.present', Buffer.from('v'), 0);
    const dir = await s.open(s.root);
    const entries = await s.graph.top.readdirp(s.frame(), dir, 65536, 0);
    await dir.unref();
    expect(entries.find((e) => e.name === 'a')?.xattrNames).toEqual(['user.present']);
    const get = (n: string) => s.graph.top.getxattr(s.frame(), { inode }, n);
    const asked = s.calls('getxattr');
    expect(await errCode(get('security.selinux'))).toBe('ENODATA');
    expect(await errCode(get('system.posix_acl_access'))).toBe('ENODATA');
    expect(s.calls('getxattr')).toBe(asked);
    // A name the list holds is fetched; a change to the xattrs drops the list.
    expect((await get('user.present')).toString()).toBe('v');
    expect(s.calls('getxattr')).toBe(asked + 1);
    await s.graph.top.setxattr(s.frame(), { inode }, 'user.new', Buffer.from('n'), 0);
    expect((await get('user.new')).toString()).toBe('n');
    // And the list expires with md-cache-timeout.
    const dir2 = await s.open(s.root);
    await s.graph.top.readdirp(s.frame(), dir2, 65536, 0);
    await dir2.unref();
    s.clock.advance(5000);
    const before = s.calls('getxattr');
    expect(await errCode(get('user.gone'))).toBe('ENODATA');
    expect(s.calls('getxattr')).toBe(before + 1);
  });
});

describe('changes through md-cache leave nothing stale', () => {
  test('a write: the next stat asks storage and sees the new size', async () => {
    const s = await stack();
    const { iatt, fd } = await s.create('f', 'abc');
    expect((await stat(s, iatt.gfid)).size).toBe(3);
    await s.graph.top.write(s.frame(), fd, Buffer.from('defg'), 3);
    expect((await stat(s, iatt.gfid)).size).toBe(7);
    await fd.unref();
  });

  test('a chmod: its answer is what is cached (storage is not asked again)', async () => {
    const s = await stack();
    const { iatt, inode } = await s.create('f', 'abc');
    await stat(s, iatt.gfid);
    const after = await s.graph.top.setattr(s.frame(), { inode }, { mode: 0o600 });
    const asked = s.calls('stat');
    expect((await stat(s, iatt.gfid)).mode & 0o777).toBe(0o600);
    expect(after.mode & 0o777).toBe(0o600);
    expect(s.calls('stat')).toBe(asked);
  });

  test('create over a cached absence: the name is there at once', async () => {
    const s = await stack();
    expect(await errCode(s.lookup('new'))).toBe('ENOENT');
    await s.create('new', 'x');
    expect((await s.lookup('new')).iatt.size).toBe(1);
  });

  test('unlink: the name is gone at once, its directory\'s attributes are asked again', async () => {
    const s = await stack();
    await s.create('f', 'x');
    await s.lookup('f');
    await stat(s, s.root.gfid);
    const looked = s.calls('lookup');
    await s.graph.top.unlink(s.frame(), s.at('f'));
    expect(await errCode(s.lookup('f'))).toBe('ENOENT');
    expect(s.calls('lookup')).toBe(looked);
    const statsBefore = s.calls('stat');
    await stat(s, s.root.gfid);
    expect(s.calls('stat')).toBe(statsBefore + 1);
  });

  test('rename: the old name is gone, the new one leads to the file, a replaced file is asked again', async () => {
    const s = await stack();
    const a = await s.create('a', 'aaa');
    const b = await s.create('b', 'bb');
    await s.lookup('a');
    await s.lookup('b');
    await stat(s, b.iatt.gfid);
    await s.graph.top.rename(s.frame(), s.at('a'), s.at('b'), 0);
    expect(await errCode(s.lookup('a'))).toBe('ENOENT');
    const looked = s.calls('lookup');
    expect((await s.lookup('b')).iatt.gfid).toBe(a.iatt.gfid);
    expect(s.calls('lookup')).toBe(looked);
    const stats = s.calls('stat');
    // The replaced file is still open here: storage says it has no name left.
    expect((await stat(s, b.iatt.gfid)).nlink).toBe(0);
    expect(s.calls('stat')).toBe(stats + 1);
    await a.fd.unref();
    await b.fd.unref();
  });

  test('link: the link count is asked again, the new name is known', async () => {
    const s = await stack();
    const { iatt, inode } = await s.create('f', 'x');
    expect((await stat(s, iatt.gfid)).nlink).toBe(1);
    await s.graph.top.link(s.frame(), { inode }, s.at('g'));
    expect((await stat(s, iatt.gfid)).nlink).toBe(2);
    expect((await s.lookup('g')).iatt.gfid).toBe(iatt.gfid);
  });

  test('a write keeps a cached absence of security.capability (the kernel asks before each write) but drops a cached value', async () => {
    const s = await stack();
    const { inode, fd } = await s.create('f', 'x');
    const cap = () => s.graph.top.getxattr(s.frame(), { inode }, 'security.capability');
    expect(await errCode(cap())).toBe('ENODATA');
    const asked = s.calls('getxattr');
    await s.graph.top.write(s.frame(), fd, Buffer.from('y'), 1);
    expect(await errCode(cap())).toBe('ENODATA');
    expect(s.calls('getxattr')).toBe(asked);
    // A file with one (a VFS_CAP_REVISION_2 blob: CAP_NET_RAW permitted, effective): a write
    // removes it on storage, so the cached value goes.
    const blob = Buffer.alloc(20);
    blob.writeUInt32LE(0x02000001, 0);
    blob.writeUInt32LE(1 << 13, 4);
    await s.graph.top.setxattr(s.frame(), { inode }, 'security.capability', blob, 0);
    expect((await cap()).equals(blob)).toBe(true);
    const cached = s.calls('getxattr');
    expect((await cap()).equals(blob)).toBe(true);
    expect(s.calls('getxattr')).toBe(cached);
    await s.graph.top.write(s.frame(), fd, Buffer.from('z'), 2);
    expect(await errCode(cap())).toBe('ENODATA');
    expect(s.calls('getxattr')).toBe(cached + 1);
    await fd.unref();
  });

  test('setxattr and removexattr: the next read of an xattr asks storage', async () => {
    const s = await stack();
    const { inode } = await s.create('f', 'x');
    const get = () => s.graph.top.getxattr(s.frame(), { inode }, 'user.k');
    expect(await errCode(get())).toBe('ENODATA');
    await s.graph.top.setxattr(s.frame(), { inode }, 'user.k', Buffer.from('v1'), 0);
    expect((await get()).toString()).toBe('v1');
    expect(await s.graph.top.listxattr(s.frame(), { inode })).toContain('user.k');
    await s.graph.top.removexattr(s.frame(), { inode }, 'user.k');
    expect(await errCode(get())).toBe('ENODATA');
    expect(await s.graph.top.listxattr(s.frame(), { inode })).not.toContain('user.k');
  });

  test('an open drops the file\'s attributes (close-to-open): a change elsewhere shows after the open', async () => {
    const s = await stack();
    const { iatt, inode, fd } = await s.create('f', 'abc');
    await fd.unref();
    expect((await stat(s, iatt.gfid)).size).toBe(3);
    s.behindItsBack('f', 'longer now');
    expect((await stat(s, iatt.gfid)).size).toBe(3); // cached: nothing told md-cache
    const again = await s.open(inode, fs.constants.O_RDONLY);
    expect((await stat(s, iatt.gfid)).size).toBe(10);
    await again.unref();
  });
});

describe('told from below', () => {
  test('an upcall for a file drops its attributes; one with entries drops those names (absent ones too)', async () => {
    const s = await stack();
    const { iatt, fd } = await s.create('f', 'abc');
    await fd.unref();
    await stat(s, iatt.gfid);
    expect(await errCode(s.lookup('other'))).toBe('ENOENT');
    s.behindItsBack('f', 'changed!');
    fs.writeFileSync(path.join(s.dir, 'other'), 'made elsewhere');
    mdc(s).upcall({ gfid: iatt.gfid, attrs: true });
    expect((await stat(s, iatt.gfid)).size).toBe(8);
    expect(await errCode(s.lookup('other'))).toBe('ENOENT'); // no upcall for the name yet
    mdc(s).upcall({ gfid: s.root.gfid, attrs: true, entries: [{ parent: s.root.gfid, name: 'other' }] });
    expect((await s.lookup('other')).iatt.size).toBe(14);
  });

  test('an upcall for everything, CHILD_DOWN and CHILD_UP each drop everything', async () => {
    const s = await stack();
    const { iatt } = await s.create('f', 'abc');
    for (const drop of [() => mdc(s).upcall({ attrs: true, data: true, xattrs: true }), () => mdc(s).notify(XlEvent.CHILD_DOWN), () => mdc(s).notify(XlEvent.CHILD_UP)]) {
      await stat(s, iatt.gfid);
      const asked = s.calls('stat');
      await stat(s, iatt.gfid);
      expect(s.calls('stat')).toBe(asked);
      drop();
      await stat(s, iatt.gfid);
      expect(s.calls('stat')).toBe(asked + 1);
    }
  });

  test('upcalls go on up the graph', async () => {
    const s = await stack();
    const seen: unknown[] = [];
    s.graph.upcall$.subscribe((u) => seen.push(u));
    mdc(s).upcall({ gfid: s.root.gfid, attrs: true });
    expect(seen).toEqual([{ gfid: s.root.gfid, attrs: true }]);
  });
});

describe('races: a reply older than an invalidation is never kept', () => {
  test('a stat answered before an upcall, arriving after it, is returned but not cached', async () => {
    const s = await stack();
    const { iatt, fd } = await s.create('f', 'abc');
    await fd.unref();
    mdc(s).upcall({ gfid: iatt.gfid, attrs: true });
    const held = s.gate.hold('stat', 'after');
    const old = stat(s, iatt.gfid);
    await within(held.reached);
    // Storage answered (size 3); now another client changes the file and says so.
    s.behindItsBack('f', 'changed!');
    mdc(s).upcall({ gfid: iatt.gfid, attrs: true });
    held.release();
    expect((await old).size).toBe(3);
    expect((await stat(s, iatt.gfid)).size).toBe(8);
  });

  test('a stat wound before a write through md-cache and answered after it is not cached', async () => {
    const s = await stack();
    const { iatt, fd } = await s.create('f', 'abc');
    mdc(s).upcall({ gfid: iatt.gfid, attrs: true });
    const held = s.gate.hold('stat', 'after');
    const old = stat(s, iatt.gfid);
    await within(held.reached);
    await s.graph.top.write(s.frame(), fd, Buffer.from('defg'), 3);
    held.release();
    expect((await old).size).toBe(3);
    expect((await stat(s, iatt.gfid)).size).toBe(7);
    await fd.unref();
  });

  test('a lookup answering ENOENT before a create elsewhere, arriving after its upcall, leaves no absence behind', async () => {
    const s = await stack();
    const held = s.gate.hold('lookup', 'after');
    const old = s.lookup('late');
    await within(held.reached);
    fs.writeFileSync(path.join(s.dir, 'late'), 'here');
    mdc(s).upcall({ gfid: s.root.gfid, attrs: true, entries: [{ parent: s.root.gfid, name: 'late' }] });
    held.release();
    expect(await errCode(old)).toBe('ENOENT');
    expect((await s.lookup('late')).iatt.size).toBe(4);
  });

  test('two chmods at once: the answer of the first to finish is not trusted over the other', async () => {
    const s = await stack();
    const { iatt, inode } = await s.create('f', 'x');
    const held = s.gate.hold('setattr', 'after', (args) => (args[1] as { mode?: number }).mode === 0o640);
    const first = s.graph.top.setattr(s.frame(), { inode }, { mode: 0o640 });
    await within(held.reached);
    await s.graph.top.setattr(s.frame(), { inode }, { uid: 4242 });
    held.release();
    await first;
    const now = await stat(s, iatt.gfid);
    expect(now.mode & 0o777).toBe(0o640);
    expect(now.uid).toBe(4242);
  });
});

describe('bounds and lifecycle', () => {
  test('inode-limit: the least recently used go first, and replies in flight across an eviction are not kept', async () => {
    const s = await stack({ 'inode-limit': '16' });
    const files = [];
    for (let i = 0; i < 20; i++) files.push((await s.create(`f${i}`)).iatt.gfid);
    for (const g of files) await stat(s, g);
    expect(mdc(s).dump().inodes).toBeLessThanOrEqual(16);
    const asked = s.calls('stat');
    await stat(s, files[0]);
    expect(s.calls('stat')).toBe(asked + 1);
  });

  test('a reconfigured timeout applies at once; timeout 0 empties the cache', async () => {
    const s = await stack();
    const { iatt } = await s.create('f', 'x');
    await stat(s, iatt.gfid);
    s.clock.advance(2000);
    await mdc(s).reconfigure({ ...mdc(s).options, 'md-cache-timeout': 1 });
    const asked = s.calls('stat');
    await stat(s, iatt.gfid);
    expect(s.calls('stat')).toBe(asked + 1);
    await mdc(s).reconfigure({ ...mdc(s).options, 'md-cache-timeout': 0 });
    expect(mdc(s).dump()).toMatchObject({ inodes: 0 });
  });

  test('going down (PARENT_DOWN) drops everything and caches nothing more', async () => {
    const s = await stack();
    const { iatt } = await s.create('f', 'x');
    await stat(s, iatt.gfid);
    expect(mdc(s).dump().inodes).toBeGreaterThan(0);
    await within(s.graph.stop(5000));
    expect(mdc(s).dump()).toMatchObject({ inodes: 0 });
  });
});
