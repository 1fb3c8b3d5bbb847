// Merged listings: each entry once (directories from one child, no linkto files), cookies
// that resume where they stopped: across calls, across open handles, across a graph over the
// same children, and across a graph that appended a child.
import * as fs from 'fs';
import * as path from 'path';
import { constants } from 'fs';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import type { DirentPlus } from '../../src/core/types';
import { inoOf } from '../../xlators/cluster/distribute/attrs';
import { cleanupGraphs, lookupInode, readAll, tempDir, writeFile } from '../helpers/graphs';
import { nameOn, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

let seq = 0;
const prefix = () => `rd${++seq}`;

async function openDir(g: Graph, dir: Inode) {
  const fd = g.newFd(dir, constants.O_RDONLY, true);
  await g.top.opendir(g.frame('opendir'), { inode: dir }, fd);
  return fd;
}

/** Lists `dir` on `g` from `offset`, `size` bytes a call, at most `calls` calls; the entries and the last cookie. */
async function list(g: Graph, dir: Inode, offset = 0, size = 300, calls = Infinity, plus = false): Promise<{ entries: DirentPlus[]; cookie: number; ended: boolean }> {
  const fd = await openDir(g, dir);
  const entries: DirentPlus[] = [];
  let cookie = offset;
  try {
    for (let n = 0; n < calls; n++) {
      const chunk: DirentPlus[] = plus ? await g.top.readdirp(g.frame('readdirp'), fd, size, cookie) : await g.top.readdir(g.frame('readdir'), fd, size, cookie);
      if (chunk.length === 0) return { entries, cookie, ended: true };
      entries.push(...chunk);
      cookie = chunk[chunk.length - 1].offset;
    }
    return { entries, cookie, ended: false };
  } finally {
    await fd.unref();
  }
}

test('600 files over 3 children: each listed once, in small chunks whose cookies resume on another handle', async () => {
  const v = await startDht(3, { prefix: prefix() });
  await v.bridge.mkdir('/d', 0o755);
  const want = Array.from({ length: 600 }, (_, i) => `file-${i}`);
  for (const n of want) await writeFile(v.bridge, `/d/${n}`, '');
  const dir = await lookupInode(v.graph, v.graph.itable.root, 'd');
  const names: string[] = [];
  let cookie = 0;
  // Every call on a handle of its own: only the cookie carries the position.
  for (let calls = 0; ; calls++) {
    expect(calls).toBeLessThan(1000);
    const r = await list(v.graph, dir, cookie, 300, 1);
    if (r.ended) break;
    names.push(...r.entries.map((e) => e.name));
    cookie = r.cookie;
  }
  expect(names.length).toBe(600);
  expect(new Set(names).size).toBe(600);
  expect([...names].sort()).toEqual([...want].sort());
  // The entries came from every child, child after child.
  for (const d of v.dirs) expect(fs.readdirSync(path.join(d, 'd')).length).toBeGreaterThan(100);
});

test('a cookie resumes on another graph over the same children, and on one that appended a child', async () => {
  const p = prefix();
  const v = await startDht(3, { prefix: p });
  await v.bridge.mkdir('/d', 0o755);
  for (let i = 0; i < 90; i++) await writeFile(v.bridge, `/d/f${i}`, '');
  const dir = await lookupInode(v.graph, v.graph.itable.root, 'd');
  const first = await list(v.graph, dir, 0, 400, 3);
  expect(first.ended).toBe(false);
  const rest = async (g: Graph) => list(g, await lookupInode(g, g.itable.root, 'd'), first.cookie, 400);
  const same = await startDht(3, { dirs: v.dirs, prefix: p });
  const grown = await startDht(4, { dirs: [...v.dirs, tempDir('xlstack-dht-new-')], prefix: p });
  for (const g of [same.graph, grown.graph]) {
    const names = [...first.entries, ...(await rest(g)).entries].map((e) => e.name);
    expect(names.length).toBe(90);
    expect(new Set(names).size).toBe(90);
  }
});

test('a directory is listed once (from the first child), a linkto file never, a misplaced file from where it is', async () => {
  const v = await startDht(3, { prefix: prefix() });
  await v.bridge.mkdir('/d', 0o755);
  for (let i = 0; i < 5; i++) await v.bridge.mkdir(`/d/sub${i}`, 0o755);
  const name = await nameOn(v, '/d', 0);
  fs.writeFileSync(path.join(v.dirs[2], 'd', name), 'misplaced');
  expect(await readAll(v.bridge, `/d/${name}`)).toBe('misplaced'); // leaves a linkto file on child 0
  expect(fs.existsSync(path.join(v.dirs[0], 'd', name))).toBe(true);
  const dir = await lookupInode(v.graph, v.graph.itable.root, 'd');
  const names = (await list(v.graph, dir)).entries.map((e) => e.name).sort();
  expect(names).toEqual([name, 'sub0', 'sub1', 'sub2', 'sub3', 'sub4'].sort());
});

test('readdirp gives files their attributes (inode numbers from GFIDs) and directories none (a lookup merges and heals them)', async () => {
  const v = await startDht(2, { prefix: prefix() });
  await v.bridge.mkdir('/d', 0o755);
  await v.bridge.mkdir('/d/sub', 0o700);
  await writeFile(v.bridge, '/d/file', 'abc');
  const dir = await lookupInode(v.graph, v.graph.itable.root, 'd');
  const { entries } = await list(v.graph, dir, 0, 4096, Infinity, true);
  const file = entries.find((e) => e.name === 'file')!;
  const sub = entries.find((e) => e.name === 'sub')!;
  expect(file.iatt?.size).toBe(3);
  expect(file.ino).toBe(inoOf(file.iatt!.gfid));
  expect(file.iatt!.ino).toBe(file.ino);
  expect(sub.iatt).toBeUndefined();
  expect(sub.type).toBe(constants.S_IFDIR);
  expect(sub.ino).toBe(inoOf((await v.bridge.getattr('/d/sub')).gfid));
});

test('a directory missing on the first child is still opened and listed from the others (its files too)', async () => {
  const p = prefix();
  const small = await startDht(2, { prefix: p });
  await small.bridge.mkdir('/d', 0o755);
  for (let i = 0; i < 20; i++) await writeFile(small.bridge, `/d/f${i}`, '');
  // The new child comes first in the volfile: it has no copy of /d until a lookup makes one.
  const grown = await startDht(3, { dirs: [tempDir('xlstack-dht-new-'), ...small.dirs], prefix: `${p}x` });
  const dir = grown.graph.itable.get((await small.bridge.getattr('/d')).gfid);
  const names = (await list(grown.graph, dir)).entries.map((e) => e.name);
  expect(names.sort()).toEqual(Array.from({ length: 20 }, (_, i) => `f${i}`).sort());
});
