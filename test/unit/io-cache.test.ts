// performance/io-cache: re-reads served from its pages (shared by every fd of a file, bounded
// by cache-size), and never stale: a write through it, a change of the file's attributes
// (seen at open, by a lookup or stat passing by, or after cache-timeout on a ManualClock), an
// upcall or a lost connection drops them; a page read before such a change is not kept.
import * as fs from 'fs';
import { XlEvent } from '../../src/core/events';
import type { Fd } from '../../src/core/fd';
import type { IoCache } from '../../xlators/performance/io-cache';
import { CacheStack, cacheStack, stopCacheStacks } from '../helpers/caches';
import { cleanupGraphs, within } from '../helpers/graphs';

afterEach(async () => {
  await stopCacheStacks();
  await cleanupGraphs();
});

const KiB = 1024;
const stack = (options: Record<string, string> = {}) => cacheStack([{ type: 'performance/io-cache', options: { 'page-size': '4KB', 'cache-timeout': '5', ...options } }]);
const ioc = (s: CacheStack) => s.xl<IoCache>('io-cache');
const read = async (s: CacheStack, fd: Fd, size: number, offset = 0) => (await s.graph.top.read(s.frame('read'), fd, size, offset)).toString('latin1');
/** A file of `n` bytes whose byte i is 'a' + i % 26. */
const pattern = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

describe('what io-cache serves itself', () => {
  test('a re-read is served from pages, through any fd of the file', async () => {
    const s = await stack();
    const data = pattern(10 * KiB);
    const { inode, fd } = await s.create('f', data);
    expect(await read(s, fd, 10 * KiB)).toBe(data);
    const reads = s.calls('read');
    expect(reads).toBe(1); // three 4 KiB pages, missing one after the other: one request
    expect(ioc(s).dump()).toMatchObject({ misses: 3, requests: 1 });
    const other = await s.open(inode, fs.constants.O_RDONLY);
    expect(await read(s, other, 10 * KiB)).toBe(data);
    expect(await read(s, other, 100, 4000)).toBe(data.slice(4000, 4100));
    expect(s.calls('read')).toBe(reads);
    expect(ioc(s).dump()).toMatchObject({ pages: 3, bytes: 10 * KiB });
    await fd.unref();
    await other.unref();
  });

  test('missing pages between kept ones are read in one request each run', async () => {
    const s = await stack();
    const data = pattern(6 * 4096);
    const { fd } = await s.create('f', data);
    await read(s, fd, 1, 0); // page 0
    await read(s, fd, 1, 3 * 4096); // page 3
    const before = s.calls('read');
    // Pages 1-2 and 4-5 are missing: two runs, two requests; 0 and 3 are served from pages.
    expect(await read(s, fd, 6 * 4096)).toBe(data);
    expect(s.calls('read') - before).toBe(2);
    expect(ioc(s).dump()).toMatchObject({ pages: 6, bytes: 6 * 4096 });
    await fd.unref();
  });

  test('reads past the end, and across it, answer what the file has', async () => {
    const s = await stack();
    const data = pattern(5000);
    const { fd } = await s.create('f', data);
    expect(await read(s, fd, 8192, 4000)).toBe(data.slice(4000));
    expect(await read(s, fd, 100, 5000)).toBe('');
    expect(await read(s, fd, 100, 9000)).toBe('');
    await fd.unref();
  });

  test('pages read at once by several readers are read once', async () => {
    const s = await stack();
    const data = pattern(4096);
    const { fd } = await s.create('f', data);
    await read(s, fd, 1); // the file's attributes are known now, and page 0 kept
    await s.graph.top.write(s.frame(), fd, Buffer.from('Z'), 0); // page 0 dropped
    await s.graph.top.fstat(s.frame(), fd); // the new attributes are known: no comparison before the reads
    const before = s.calls('read');
    const held = s.gate.hold('read', 'before');
    const readers = [read(s, fd, 4096), read(s, fd, 10, 100), read(s, fd, 5, 4000)];
    await within(held.reached);
    held.release();
    expect(await Promise.all(readers)).toEqual(['Z' + data.slice(1), data.slice(100, 110), data.slice(4000, 4005)]);
    expect(s.calls('read')).toBe(before + 1);
    expect(ioc(s).dump()).toMatchObject({ shared: 2 });
    await fd.unref();
  });

  test('cache-size bounds the pages kept: the least recently used go', async () => {
    const s = await stack({ 'cache-size': '16KB' });
    const { fd } = await s.create('f', pattern(40 * KiB));
    await read(s, fd, 40 * KiB);
    expect(ioc(s).dump()).toMatchObject({ bytes: 16 * KiB, pages: 4 });
    const reads = s.calls('read');
    expect(await read(s, fd, 10, 36 * KiB)).toBe(pattern(40 * KiB).slice(36 * KiB, 36 * KiB + 10)); // kept (recent)
    expect(s.calls('read')).toBe(reads);
    await read(s, fd, 10, 0); // evicted long ago
    expect(s.calls('read')).toBe(reads + 1);
    await fd.unref();
  });

  test('O_DIRECT reads pass through', async () => {
    const s = await stack();
    const { inode, fd } = await s.create('f', 'direct');
    await fd.unref();
    const direct = await s.open(inode, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
    await read(s, direct, 6);
    await read(s, direct, 6);
    expect(s.calls('read')).toBe(2);
    expect(ioc(s).dump()).toMatchObject({ pages: 0 });
    await direct.unref();
  });
});

describe('never stale', () => {
  test('a write through io-cache: the next read has it', async () => {
    const s = await stack();
    const { fd } = await s.create('f', pattern(8192));
    await read(s, fd, 8192);
    await s.graph.top.write(s.frame(), fd, Buffer.from('XYZ'), 4095);
    expect(await read(s, fd, 5, 4094)).toBe(pattern(8192)[4094] + 'XYZ' + pattern(8192)[4098]);
    await fd.unref();
  });

  test('a change elsewhere is seen once cache-timeout passed (the attributes are compared again)', async () => {
    const s = await stack();
    const { fd } = await s.create('f', 'version one');
    expect(await read(s, fd, 100)).toBe('version one');
    s.behindItsBack('f', 'version two');
    s.clock.advance(4999);
    expect(await read(s, fd, 100)).toBe('version one');
    s.clock.advance(1);
    expect(await read(s, fd, 100)).toBe('version two');
    await fd.unref();
  });

  test('close-to-open: a file rewritten elsewhere (same size) is read anew after the next open', async () => {
    const s = await stack({ 'cache-timeout': '60' });
    const { inode, fd } = await s.create('f', 'AAAAAAAA');
    expect(await read(s, fd, 100)).toBe('AAAAAAAA');
    await fd.unref();
    s.behindItsBack('f', 'BBBBBBBB');
    const again = await s.open(inode, fs.constants.O_RDONLY);
    expect(await read(s, again, 100)).toBe('BBBBBBBB');
    expect(ioc(s).dump()).toMatchObject({ changed: 1 });
    await again.unref();
  });

  test('a lookup or stat passing by with other attributes drops the pages', async () => {
    const s = await stack({ 'cache-timeout': '60' });
    const { iatt, fd } = await s.create('f', 'one');
    expect(await read(s, fd, 100)).toBe('one');
    s.behindItsBack('f', 'two!');
    await s.graph.top.stat(s.frame(), { gfid: iatt.gfid, inode: s.graph.itable.find(iatt.gfid) });
    expect(await read(s, fd, 100)).toBe('two!');
    s.behindItsBack('f', 'three');
    await s.lookup('f');
    expect(await read(s, fd, 100)).toBe('three');
    await fd.unref();
  });

  test('an upcall for the file drops its pages at once; for everything, and CHILD_DOWN/UP, all pages', async () => {
    const s = await stack({ 'cache-timeout': '60' });
    const { iatt, fd } = await s.create('f', 'one');
    await read(s, fd, 100);
    s.behindItsBack('f', 'two');
    ioc(s).upcall({ gfid: iatt.gfid, data: true, attrs: true });
    expect(await read(s, fd, 100)).toBe('two');
    for (const drop of [() => ioc(s).upcall({ attrs: true, data: true, xattrs: true }), () => ioc(s).notify(XlEvent.CHILD_DOWN), () => ioc(s).notify(XlEvent.CHILD_UP)]) {
      await read(s, fd, 100);
      expect(ioc(s).dump().pages).toBe(1);
      drop();
      expect(ioc(s).dump().pages).toBe(0);
    }
    await fd.unref();
  });

  test('a page read before a write and answered after it is handed to its reader but not kept, and no later reader shares it', async () => {
    const s = await stack();
    const { fd } = await s.create('f', 'old data');
    await s.graph.top.fstat(s.frame(), fd);
    await read(s, fd, 1);
    ioc(s).upcall({ gfid: fd.inode.gfid, data: true }); // page 0 dropped
    await s.graph.top.fstat(s.frame(), fd); // attributes known again, no page
    const held = s.gate.hold('read', 'after');
    const early = read(s, fd, 100);
    await within(held.reached);
    await s.graph.top.write(s.frame(), fd, Buffer.from('NEW'), 0);
    const late = read(s, fd, 100);
    expect(await late).toBe('NEW data');
    held.release();
    expect(await early).toBe('old data');
    expect(await read(s, fd, 100)).toBe('NEW data');
    await fd.unref();
  });

  test('truncate through io-cache: the next read has the new size', async () => {
    const s = await stack();
    const { inode, fd } = await s.create('f', pattern(6000));
    await read(s, fd, 6000);
    await s.graph.top.truncate(s.frame(), { inode }, 10);
    expect(await read(s, fd, 6000)).toBe(pattern(10));
    await s.graph.top.ftruncate(s.frame(), fd, 3);
    expect(await read(s, fd, 6000)).toBe(pattern(3));
    await fd.unref();
  });

  test('a chmod through io-cache keeps the pages (the data did not change)', async () => {
    const s = await stack({ 'cache-timeout': '60' });
    const { inode, fd } = await s.create('f', 'kept');
    await read(s, fd, 100);
    await s.graph.top.setattr(s.frame(), { inode }, { mode: 0o600 });
    const reads = s.calls('read');
    await s.lookup('f');
    expect(await read(s, fd, 100)).toBe('kept');
    expect(s.calls('read')).toBe(reads);
    await fd.unref();
  });

  test('going down drops everything; a reconfigured smaller cache-size evicts at once', async () => {
    const s = await stack();
    const { fd } = await s.create('f', pattern(16 * KiB));
    await read(s, fd, 16 * KiB);
    await ioc(s).reconfigure({ ...ioc(s).options, 'cache-size': 8 * KiB });
    expect(ioc(s).dump()).toMatchObject({ bytes: 8 * KiB });
    await fd.unref();
    await within(s.graph.stop(5000));
    expect(ioc(s).dump()).toMatchObject({ bytes: 0, pages: 0 });
  });
});
