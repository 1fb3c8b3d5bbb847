// performance/readdir-ahead: a directory is read ahead from its opendir, the reader is served
// from what came, every entry once and in order; reading ahead pauses at rda-cache-limit and
// starts again from wherever the reader seeks; entries never carry what is no longer true
// (attributes of objects changed since, names removed since), and errors reach the reader.
import * as fs from 'fs';
import * as path from 'path';
import type { Fd } from '../../src/core/fd';
import type { DirentPlus } from '../../src/core/types';
import type { ReaddirAhead } from '../../xlators/performance/readdir-ahead';
import { CacheStack, Layer, cacheStack, stopCacheStacks } from '../helpers/caches';
import { cleanupGraphs, errCode, within } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';

afterEach(async () => {
  await stopCacheStacks();
  await cleanupGraphs();
});

const RDA: Layer = { type: 'performance/readdir-ahead', options: { 'rda-request-size': '4KB' } };
const rda = (s: CacheStack) => s.xl<ReaddirAhead>('readdir-ahead');
const names = (n: number) => Array.from({ length: n }, (_, i) => `entry-${String(i).padStart(4, '0')}`);

/** A directory `d` with `n` files, made straight on storage. */
async function withDir(s: CacheStack, n: number): Promise<{ dir: Fd; all: string[] }> {
  fs.mkdirSync(path.join(s.dir, 'd'));
  const all = names(n);
  for (const name of all) fs.writeFileSync(path.join(s.dir, 'd', name), name);
  const { inode } = await s.lookup('d');
  return { dir: await s.open(inode), all };
}

/** Reads the listing as the bridge does: from cookie `from` on, each time from the last cookie, until nothing comes. */
async function listAll(s: CacheStack, fd: Fd, plus = true, size = 8192, from = 0): Promise<DirentPlus[]> {
  const out: DirentPlus[] = [];
  for (let cookie = from; ; ) {
    const part: DirentPlus[] = plus ? await s.graph.top.readdirp(s.frame(), fd, size, cookie) : await s.graph.top.readdir(s.frame(), fd, size, cookie);
    if (part.length === 0) return out;
    out.push(...part);
    cookie = part[part.length - 1].offset;
  }
}

test('reading ahead starts at opendir; the listing is served from it, every entry once, in order, with attributes', async () => {
  const s = await cacheStack([RDA]);
  const { dir, all } = await withDir(s, 300);
  await waitFor(() => s.calls('readdirp') >= 2, 5000, 'reading ahead before anyone asked');
  const listed = await listAll(s, dir);
  expect(listed.map((e) => e.name).filter((n) => n !== '.' && n !== '..').sort()).toEqual(all);
  expect(new Set(listed.map((e) => e.offset)).size).toBe(listed.length);
  expect(listed.every((e, i) => i === 0 || e.offset > listed[i - 1].offset)).toBe(true);
  for (const e of listed) if (e.name.startsWith('entry-')) expect(e.iatt?.size).toBe(10);
  expect(rda(s).dump()).toMatchObject({ served: expect.any(Number) });
  expect(rda(s).dump().served as number).toBeGreaterThan(0);
  await dir.unref();
  expect(rda(s).dump()).toMatchObject({ bytes: 0, listings: [] });
});

test('readdir (without attributes) is served from the same entries', async () => {
  const s = await cacheStack([RDA]);
  const { dir, all } = await withDir(s, 50);
  const listed = await listAll(s, dir, false);
  expect(listed.map((e) => e.name).filter((n) => n.startsWith('entry-')).sort()).toEqual(all);
  expect(listed.some((e) => e.iatt !== undefined)).toBe(false);
  expect(s.calls('readdir')).toBe(0);
  await dir.unref();
});

test('rda-cache-limit: reading ahead pauses there, and goes on as the reader takes entries', async () => {
  const s = await cacheStack([{ ...RDA, options: { 'rda-request-size': '4KB', 'rda-cache-limit': '8KB' } }]);
  const { dir, all } = await withDir(s, 400);
  await waitFor(() => !(rda(s).dump().listings as { filling: boolean }[])[0].filling && s.calls('readdirp') > 0, 5000, 'reading ahead to pause');
  const paused = s.calls('readdirp');
  expect(rda(s).dump().bytes as number).toBeLessThan(8192 + 4096 + 200);
  expect(rda(s).dump().bytes as number).toBeGreaterThanOrEqual(8192);
  const listed = await listAll(s, dir);
  expect(listed.map((e) => e.name).filter((n) => n.startsWith('entry-')).sort()).toEqual(all);
  expect(s.calls('readdirp')).toBeGreaterThan(paused);
  await dir.unref();
});

test('a rewind or a seek reads ahead again from there', async () => {
  const s = await cacheStack([RDA]);
  const { dir } = await withDir(s, 100);
  const first = await s.graph.top.readdirp(s.frame(), dir, 2048, 0);
  const again = await listAll(s, dir);
  expect(again.slice(0, first.length).map((e) => e.name)).toEqual(first.map((e) => e.name));
  const mid = again[40];
  const rest = await listAll(s, dir, true, 1 << 20, mid.offset);
  expect(rest.map((e) => e.name)).toEqual(again.slice(41).map((e) => e.name));
  expect(rda(s).dump().restarts).toBe(2);
  await dir.unref();
});

test('an object changed after it was read ahead is listed without its attributes (through here, or by an upcall)', async () => {
  const s = await cacheStack([RDA]);
  const { dir } = await withDir(s, 20);
  await waitFor(() => (rda(s).dump().listings as { eof: boolean }[])[0]?.eof === true, 5000, 'the whole directory read ahead');
  const { inode: d } = await s.lookup('d');
  const a = await s.lookup('entry-0003', d);
  const b = await s.lookup('entry-0007', d);
  const fd = await s.open(a.inode);
  await s.graph.top.write(s.frame(), fd, Buffer.from('grown by a write'), 0);
  await fd.unref();
  rda(s).upcall({ gfid: b.iatt.gfid, attrs: true });
  const listed = await listAll(s, dir);
  const byName = new Map(listed.map((e) => [e.name, e]));
  expect(byName.get('entry-0003')!.iatt).toBeUndefined();
  expect(byName.get('entry-0007')!.iatt).toBeUndefined();
  expect(byName.get('entry-0004')!.iatt?.size).toBe(10);
  await dir.unref();
});

test('a name removed after it was read ahead leaves the listing (through here, or by an upcall)', async () => {
  const s = await cacheStack([RDA]);
  const { dir } = await withDir(s, 20);
  await waitFor(() => (rda(s).dump().listings as { eof: boolean }[])[0]?.eof === true, 5000, 'the whole directory read ahead');
  const { inode: d } = await s.lookup('d');
  await s.graph.top.unlink(s.frame(), { parent: d, name: 'entry-0005' });
  fs.unlinkSync(path.join(s.dir, 'd', 'entry-0009'));
  rda(s).upcall({ gfid: d.gfid, attrs: true, entries: [{ parent: d.gfid, name: 'entry-0009' }] });
  const listed = (await listAll(s, dir)).map((e) => e.name);
  expect(listed).not.toContain('entry-0005');
  expect(listed).not.toContain('entry-0009');
  expect(listed).toContain('entry-0006');
  await dir.unref();
});

test('an error reading ahead reaches the reader (once; the next read tries again)', async () => {
  const s = await cacheStack([{ type: 'debug/error-gen', options: { enable: 'readdirp', 'error-no': 'EACCES' } }, RDA]);
  const { dir } = await withDir(s, 5);
  expect(await errCode(s.graph.top.readdirp(s.frame(), dir, 4096, 0))).toBe('EACCES');
  expect(await errCode(s.graph.top.readdirp(s.frame(), dir, 4096, 0))).toBe('EACCES');
  await dir.unref();
});

test('a lost connection below drops what was read ahead; the reader goes on from where it was', async () => {
  const s = await cacheStack([RDA]);
  const { dir, all } = await withDir(s, 200);
  const first = await s.graph.top.readdirp(s.frame(), dir, 2048, 0);
  const asked = s.calls('readdirp');
  rda(s).upcall({ attrs: true, data: true, xattrs: true });
  expect(rda(s).dump().bytes).toBe(0);
  const rest: DirentPlus[] = [];
  for (let cookie = first[first.length - 1].offset; ; ) {
    const part = await within(s.graph.top.readdirp(s.frame(), dir, 8192, cookie));
    if (!part.length) break;
    rest.push(...part);
    cookie = part[part.length - 1].offset;
  }
  expect([...first, ...rest].map((e) => e.name).filter((n) => n.startsWith('entry-')).sort()).toEqual(all);
  expect(s.calls('readdirp')).toBeGreaterThan(asked);
  await dir.unref();
});
