// features/index on a brick: an object is listed while its replicate changelog is not all
// zeros (before a change that may leave it so, so a crash never loses one), unlisted when an
// xattrop shows it clear; the list is durable and read in pages, objects gone are dropped.
import * as fs from 'fs';
import * as path from 'path';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { ROOT_CALLER } from '../../src/core/types';
import { INDEX_KEY } from '../../xlators/features/index';
import { cleanupGraphs, lookupInode, startGraph, stopGraph, tempDir } from '../helpers/graphs';

afterEach(cleanupGraphs);

const volfile = (dir: string) => `volume p\n type storage/posix\n option directory ${dir}\nend-volume
volume i\n type features/index\n option directory ${dir}-index\n subvolumes p\nend-volume\n`;

const KEY = 'trusted.xlstack.afr.pending.x';
const counts = (...n: number[]) => Buffer.concat(n.map((x) => Buffer.from(Int32Array.of(x).buffer).reverse()));

async function setup(names: string[]): Promise<{ g: Graph; dir: string; inodes: Inode[] }> {
  const dir = tempDir();
  for (const n of names) fs.writeFileSync(path.join(dir, n), n);
  const g = await startGraph(dir, 1, volfile(dir));
  return { g, dir, inodes: await Promise.all(names.map((n) => lookupInode(g, g.itable.root, n))) };
}

const op = (g: Graph, inode: Inode, o: 'add' | 'set' | 'get', v: Buffer) => g.top.xattrop(g.frame('x', ROOT_CALLER), { inode }, o, { [KEY]: v });
const list = async (g: Graph, after = '') => (await g.top.xattrop(g.frame('x', ROOT_CALLER), { inode: g.itable.root }, 'get', { [INDEX_KEY]: Buffer.from(after) }))[INDEX_KEY].toString().split('\n').filter(Boolean);

test('listed while not zero, unlisted when an xattrop shows zeros; durable across a restart', async () => {
  const { g, dir, inodes } = await setup(['a', 'b']);
  const [a, b] = inodes;
  await op(g, a, 'add', counts(1, 0, 0));
  await op(g, b, 'add', counts(0, 0, 1));
  expect(await list(g)).toEqual([a.gfid, b.gfid].sort());
  expect(fs.readdirSync(`${dir}-index`).sort()).toEqual([a.gfid, b.gfid].sort());
  await op(g, a, 'add', counts(-1, 0, 0));
  expect(await list(g)).toEqual([b.gfid]);
  // A read that finds it clear (a crash between the change and the index) unlists it too.
  fs.writeFileSync(path.join(`${dir}-index`, a.gfid), '');
  await stopGraph(g);
  const g2 = await startGraph(dir, 2, volfile(dir));
  const a2 = await lookupInode(g2, g2.itable.root, 'a');
  expect((await list(g2)).sort()).toEqual([a.gfid, b.gfid].sort());
  await op(g2, a2, 'get', Buffer.alloc(0));
  expect(await list(g2)).toEqual([b.gfid]);
});

test('an add that may leave something pending lists the object before it reaches storage', async () => {
  const { g, dir, inodes } = await setup(['a']);
  // Storage refuses it (wrong length); the object was listed first all the same, and stays so until seen clear.
  await expect(g.top.xattrop(g.frame('x', ROOT_CALLER), { inode: inodes[0] }, 'add', { [KEY]: counts(1, 0) , 'trusted.xlstack.afr.pending.y': Buffer.alloc(3) })).rejects.toMatchObject({ code: 'EINVAL' });
  expect(fs.readdirSync(`${dir}-index`)).toEqual([inodes[0].gfid]);
});

test('pages after the GFID given; objects gone are dropped', async () => {
  const names = [...Array(10).keys()].map((i) => `f${i}`);
  const { g, dir, inodes } = await setup(names);
  for (const i of inodes) await op(g, i, 'set', counts(0, 2, 0));
  const all = inodes.map((i) => i.gfid).sort();
  expect(await list(g)).toEqual(all);
  expect(await list(g, all[6])).toEqual(all.slice(7));
  const gone = inodes[3].gfid;
  fs.unlinkSync(path.join(dir, 'f3'));
  fs.unlinkSync(path.join(dir, '.xlstack', 'handles', gone.slice(0, 2), gone));
  expect(await list(g)).toEqual(all.filter((x) => x !== gone));
  expect(fs.readdirSync(`${dir}-index`)).not.toContain(gone);
});
