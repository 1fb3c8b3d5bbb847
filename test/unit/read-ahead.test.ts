// performance/read-ahead: a sequential reader finds the next pages read (several at once)
// before it asks; anything else reads as asked; a change to the file's data drops what was
// read ahead, including pages still on their way. debug/gate below counts and holds reads.
import * as fs from 'fs';
import * as path from 'path';
import type { Fd } from '../../src/core/fd';
import type { ReadAhead } from '../../xlators/performance/read-ahead';
import { XlEvent } from '../../src/core/events';
import { CacheStack, cacheStack, stopCacheStacks } from '../helpers/caches';
import { cleanupGraphs, within } from '../helpers/graphs';

afterEach(async () => {
  await stopCacheStacks();
  await cleanupGraphs();
});

const PS = 4096;
const stack = (options: Record<string, string> = {}) => cacheStack([{ type: 'performance/read-ahead', options: { 'page-size': '4KB', 'page-count': '3', ...options } }]);
const ra = (s: CacheStack) => s.xl<ReadAhead>('read-ahead');
const read = async (s: CacheStack, fd: Fd, size: number, offset: number) => (await s.graph.top.read(s.frame('read'), fd, size, offset)).toString('latin1');
const pattern = (n: number) => Array.from({ length: n }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');

/** The offsets of every read that reached storage, in order (and their sizes in `sizes`). */
function readOffsets(s: CacheStack, sizes: number[] = []): number[] {
  const seen: number[] = [];
  const orig = s.gate.read.bind(s.gate);
  s.gate.read = (frame, fd, size, offset) => {
    seen.push(offset);
    sizes.push(size);
    return orig(frame, fd, size, offset);
  };
  return seen;
}

test('a sequential reader: from its second read on, page-count pages ahead are read at once and then served', async () => {
  const s = await stack();
  const data = pattern(20 * PS);
  const { inode, fd: w } = await s.create('f', data);
  await w.unref();
  const fd = await s.open(inode, fs.constants.O_RDONLY);
  const sizes: number[] = [];
  const offsets = readOffsets(s, sizes);
  expect(await read(s, fd, PS, 0)).toBe(data.slice(0, PS));
  expect(offsets).toEqual([0]); // the first read alone: nothing ahead
  expect(await read(s, fd, PS, PS)).toBe(data.slice(PS, 2 * PS));
  // The page asked for, then page-count pages after it in one request.
  expect(offsets.slice(1)).toEqual([PS, 2 * PS]);
  expect(sizes.slice(1)).toEqual([PS, 3 * PS]);
  for (let i = 2; i < 20; i++) expect(await read(s, fd, PS, i * PS)).toBe(data.slice(i * PS, (i + 1) * PS));
  expect(await read(s, fd, PS, 20 * PS)).toBe('');
  // Every page once, nothing read twice: the reader was served from what was read ahead.
  const pages = offsets.filter((o) => o < 20 * PS);
  expect(new Set(pages).size).toBe(pages.length);
  expect(ra(s).dump()).toMatchObject({ hits: expect.any(Number) });
  expect((ra(s).dump().hits as number) + (ra(s).dump().waited as number)).toBeGreaterThanOrEqual(18);
  await fd.unref();
});

test('reads that are not sequential read only what they ask', async () => {
  const s = await stack();
  const { fd } = await s.create('f', pattern(20 * PS));
  const offsets = readOffsets(s);
  for (const i of [7, 2, 11, 0, 5]) await read(s, fd, 100, i * PS);
  expect(offsets).toEqual([7, 2, 11, 0, 5].map((i) => i * PS));
  await fd.unref();
});

test('reading ahead stops at the end of the file', async () => {
  const s = await stack({ 'page-count': '8' });
  const data = pattern(2 * PS + 10);
  const { fd } = await s.create('f', data);
  const offsets = readOffsets(s);
  let got = '';
  for (let off = 0; ; off += PS) {
    const part = await read(s, fd, PS, off);
    if (!part) break;
    got += part;
  }
  expect(got).toBe(data);
  // Pages past the short one (index 2) are asked for once at most, in the first window.
  expect(offsets.filter((o) => o > 3 * PS).length).toBeLessThanOrEqual(7);
  const after = offsets.length;
  await read(s, fd, PS, 3 * PS);
  expect(offsets.length).toBe(after + 1);
  await fd.unref();
});

test('a write through another fd drops what was read ahead, pages still on their way included', async () => {
  const s = await stack();
  const data = pattern(10 * PS);
  const { inode, fd: writer } = await s.create('f', data);
  const reader = await s.open(inode, fs.constants.O_RDONLY);
  // The second read brings pages 1-4; the third asks for page 5 ahead, held on its way back
  // (read before the write below).
  const held = s.gate.hold('read', 'after', (args) => args[2] === 5 * PS);
  await read(s, reader, PS, 0);
  await read(s, reader, PS, PS);
  expect(await read(s, reader, PS, 2 * PS)).toBe(data.slice(2 * PS, 3 * PS));
  await within(held.reached);
  await s.graph.top.write(s.frame(), writer, Buffer.from('WRITTEN'), 5 * PS);
  held.release();
  expect(await read(s, reader, PS, 3 * PS)).toBe(data.slice(3 * PS, 4 * PS));
  expect(await read(s, reader, PS, 4 * PS)).toBe(data.slice(4 * PS, 5 * PS));
  expect(await read(s, reader, 7, 5 * PS)).toBe('WRITTEN');
  expect(await read(s, reader, PS, 6 * PS)).toBe(data.slice(6 * PS, 7 * PS));
  await writer.unref();
  await reader.unref();
});

test('an upcall for the file drops what was read ahead (the change is read)', async () => {
  const s = await stack();
  const { fd } = await s.create('f', pattern(8 * PS));
  await read(s, fd, PS, 0);
  await read(s, fd, PS, PS);
  expect(ra(s).dump().pages).toBeGreaterThan(0);
  const f = fs.openSync(path.join(s.dir, 'f'), 'r+');
  fs.writeSync(f, Buffer.from('ELSEWHERE'), 0, 9, 2 * PS);
  fs.closeSync(f);
  ra(s).upcall({ gfid: fd.inode.gfid, data: true });
  expect(ra(s).dump().pages).toBe(0);
  expect(await read(s, fd, 9, 2 * PS)).toBe('ELSEWHERE');
  await fd.unref();
});

test('an upcall for everything (a lost connection), CHILD_DOWN and CHILD_UP each drop what was read ahead', async () => {
  const s = await stack();
  const data = pattern(12 * PS);
  const { fd } = await s.create('f', data);
  const drops = [() => ra(s).upcall({ attrs: true, data: true, xattrs: true }), () => ra(s).notify(XlEvent.CHILD_DOWN), () => ra(s).notify(XlEvent.CHILD_UP)];
  let off = 0;
  for (const drop of drops) {
    // Two sequential reads: pages ahead are kept.
    expect(await read(s, fd, PS, off)).toBe(data.slice(off, off + PS));
    expect(await read(s, fd, PS, off + PS)).toBe(data.slice(off + PS, off + 2 * PS));
    expect(ra(s).dump().pages).toBeGreaterThan(0);
    drop();
    expect(ra(s).dump().pages).toBe(0);
    off += 4 * PS;
  }
  await fd.unref();
});

test('O_DIRECT reads pass through; a released fd leaves nothing behind', async () => {
  const s = await stack();
  const { inode, fd: w } = await s.create('f', pattern(8 * PS));
  await w.unref();
  const direct = await s.open(inode, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
  const offsets = readOffsets(s);
  for (let i = 0; i < 4; i++) await read(s, direct, PS, i * PS);
  expect(offsets).toEqual([0, 1, 2, 3].map((i) => i * PS));
  await direct.unref();
  const fd = await s.open(inode, fs.constants.O_RDONLY);
  await read(s, fd, PS, 0);
  await read(s, fd, PS, PS);
  await fd.unref();
  expect(ra(s).dump()).toMatchObject({ fds: 0, pages: 0 });
});
