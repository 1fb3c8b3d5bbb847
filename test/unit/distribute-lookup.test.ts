// cluster/distribute finds every name: on its hashed child, through a linkto file, or by
// asking every child (then it leaves a linkto file behind); directories get their missing
// copies and whole layouts on lookup; GFIDs are found wherever they are.
import { spawnSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { parseVolfile } from '../../src/core/volfile';
import { inoOf } from '../../xlators/cluster/distribute/attrs';
import { VIRTUAL } from '../../xlators/cluster/distribute/index';
import { LAYOUT_XATTR, decodeRange, isComplete } from '../../xlators/cluster/distribute/layout';
import { LINKTO_XATTR } from '../../xlators/cluster/distribute/linkto';
import { cleanupGraphs, errCode, nameless, readAll, tempDir, writeFile } from '../helpers/graphs';
import { backingXattr, dataOn, hashedOf, isLinkto, nameOn, onChild, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

let seq = 0;
const prefix = () => `lk${++seq}`;

test('a file on another child than its hashed one is found, and its hashed child gets a linkto file to it', async () => {
  const p = prefix();
  const v = await startDht(3, { prefix: p });
  await v.bridge.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  // As if written by a client that still had an older layout: on child 2.
  fs.writeFileSync(path.join(v.dirs[2], 'd', name), 'misplaced');
  const before = v.dht.counters.lookupsEverywhere;
  expect(await readAll(v.bridge, `/d/${name}`)).toBe('misplaced');
  expect(v.dht.counters.lookupsEverywhere).toBe(before + 1);
  expect(isLinkto(v.dirs[0], `d/${name}`)).toBe(true);
  expect(backingXattr(path.join(v.dirs[0], 'd', name), LINKTO_XATTR)?.toString()).toBe(v.names[2]);
  // The linkto file names the child by its volume name: another client goes through it directly.
  const v2 = await startDht(3, { dirs: v.dirs, prefix: p });
  expect(await readAll(v2.bridge, `/d/${name}`)).toBe('misplaced');
  expect(v2.dht.counters.lookupsEverywhere).toBe(0);
  // Listed once, from where the data is.
  expect((await v2.bridge.readdir('/d')).filter((e) => e.name === name)).toHaveLength(1);
});

test('a linkto file pointing to a child that no longer has the file is pointed again where the file is', async () => {
  const p = prefix();
  const v = await startDht(3, { prefix: p });
  await v.bridge.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  fs.writeFileSync(path.join(v.dirs[1], 'd', name), 'first on 1');
  expect(await readAll(v.bridge, `/d/${name}`)).toBe('first on 1');
  expect(backingXattr(path.join(v.dirs[0], 'd', name), LINKTO_XATTR)?.toString()).toBe(v.names[1]);
  // The data goes to child 2 behind the volume's back (keeping its GFID xattr).
  const gfid = backingXattr(path.join(v.dirs[1], 'd', name), 'trusted.gfid')!;
  fs.rmSync(path.join(v.dirs[1], 'd', name));
  const moved = path.join(v.dirs[2], 'd', name);
  fs.writeFileSync(moved, 'now on 2');
  require('child_process').spawnSync('setfattr', ['-n', 'trusted.gfid', '-v', `0x${gfid.toString('hex')}`, moved]);
  const fresh = await startDht(3, { dirs: v.dirs, prefix: p });
  expect(await readAll(fresh.bridge, `/d/${name}`)).toBe('now on 2');
  expect(backingXattr(path.join(v.dirs[0], 'd', name), LINKTO_XATTR)?.toString()).toBe(v.names[2]);
});

test('a name found nowhere is ENOENT, and costs one lookup on every child', async () => {
  const v = await startDht(3, { prefix: prefix() });
  expect(await errCode(v.bridge.getattr('/nothing'))).toBe('ENOENT');
  expect(v.dht.counters.lookupsEverywhere).toBe(1);
});

test('a directory missing on a child (the child was added) is made there on lookup, with its GFID, mode and owner', async () => {
  const p = prefix();
  const small = await startDht(2, { prefix: p });
  await small.bridge.mkdir('/d', 0o750);
  await small.bridge.chown('/d', 1234, 5678);
  await writeFile(small.bridge, '/d/f', 'x');
  const grown = await startDht(3, { dirs: [...small.dirs, tempDir('xlstack-dht-new-')], prefix: p });
  expect(fs.existsSync(path.join(grown.dirs[2], 'd'))).toBe(false);
  const st = await grown.bridge.getattr('/d');
  const copy = fs.statSync(path.join(grown.dirs[2], 'd'));
  expect(copy.isDirectory()).toBe(true);
  expect([copy.mode & 0o7777, copy.uid, copy.gid]).toEqual([0o750, 1234, 5678]);
  expect(backingXattr(path.join(grown.dirs[2], 'd'), 'trusted.gfid')).toEqual(backingXattr(path.join(grown.dirs[0], 'd'), 'trusted.gfid'));
  expect(st.ino).toBe(inoOf(st.gfid));
  expect(grown.dht.counters.dirsHealed).toBe(1);
  // The new child takes no names there until a rebalance: the old layout stands, whole.
  expect(await readAll(grown.bridge, '/d/f')).toBe('x');
  expect(decodeRange(backingXattr(path.join(grown.dirs[2], 'd'), LAYOUT_XATTR) ?? Buffer.alloc(0))).toBeUndefined();
  expect(grown.dht.counters.layoutsWritten).toBe(0);
  // New directories use every child.
  await grown.bridge.mkdir('/e', 0o755);
  const ranges = grown.dirs.map((d) => decodeRange(backingXattr(path.join(d, 'e'), LAYOUT_XATTR)!));
  expect(ranges.every((r) => r !== undefined && r !== 'bad' && r.range !== undefined)).toBe(true);
});

test('a layout spanning a child this volume lacks is left alone by lookups (names in its hole are found everywhere, creates there refused) until a rebalance rewrites it', async () => {
  const p = prefix();
  const three = await startDht(3, { prefix: p });
  await three.bridge.mkdir('/d', 0o755);
  const lost = await nameOn(three, '/d', 2, 'x');
  await writeFile(three.bridge, `/d/${lost}`, 'on the third child');
  const kept = await nameOn(three, '/d', 0, 'y');
  const before = two3(three.dirs, 'd');
  // A client whose volfile has two of the three children.
  const two = await startDht(2, { dirs: three.dirs.slice(0, 2), prefix: p });
  await two.bridge.getattr('/d');
  expect(two3(three.dirs, 'd')).toEqual(before);
  expect(await errCode(two.bridge.getattr(`/d/${lost}`))).toBe('ENOENT');
  await writeFile(two.bridge, `/d/${kept}`, 'ok');
  expect(await readAll(two.bridge, `/d/${kept}`)).toBe('ok');
  expect(await errCode(two.bridge.create(`/d/${lost}`, 0o644, fs.constants.O_RDWR))).toBe('ENOTCONN');
  expect(JSON.parse((await two.bridge.getxattr('/d', VIRTUAL.fixLayout)).toString()).changed).toBe(true);
  const ranges = two.dirs.map((d) => decodeRange(backingXattr(path.join(d, 'd'), LAYOUT_XATTR)!));
  expect(isComplete(ranges.map((r) => (r && r !== 'bad' ? r.range : undefined)))).toBe(true);
  await writeFile(two.bridge, `/d/${lost}`, 'now here');
  expect(await readAll(two.bridge, `/d/${lost}`)).toBe('now here');
});

test('a directory whose layout is gone or garbled gets a whole one on lookup', async () => {
  const p = prefix();
  const v = await startDht(3, { prefix: p });
  await v.bridge.mkdir('/d', 0o755);
  await v.bridge.mkdir('/e', 0o755);
  for (const d of v.dirs) spawnSync('setfattr', ['-x', LAYOUT_XATTR, path.join(d, 'd')]);
  spawnSync('setfattr', ['-n', LAYOUT_XATTR, '-v', '0x0102', path.join(v.dirs[1], 'e')]);
  const fresh = await startDht(3, { dirs: v.dirs, prefix: p });
  for (const dir of ['d', 'e']) {
    await fresh.bridge.getattr(`/${dir}`);
    const ranges = v.dirs.map((d) => decodeRange(backingXattr(path.join(d, dir), LAYOUT_XATTR) ?? Buffer.alloc(0)));
    expect(ranges.every((r) => r !== undefined && r !== 'bad')).toBe(true);
    expect(isComplete(ranges.map((r) => (r && r !== 'bad' ? r.range : undefined)))).toBe(true);
  }
  expect(fresh.dht.counters.layoutsWritten).toBe(2);
});

test('a GFID alone finds a file wherever it is, and a directory', async () => {
  const v = await startDht(3, { prefix: prefix() });
  await v.bridge.mkdir('/d', 0o755);
  const gfids: string[] = [];
  for (let i = 0; i < 12; i++) {
    await writeFile(v.bridge, `/d/f${i}`, `${i}`);
    gfids.push((await v.bridge.getattr(`/d/f${i}`)).gfid);
  }
  const other = await startDht(3, { dirs: v.dirs, prefix: prefix() });
  for (const g of gfids) expect((await nameless(other.graph, g)).gfid).toBe(g);
  const dir = (await v.bridge.getattr('/d')).gfid;
  const st = await nameless(other.graph, dir);
  expect(st.gfid).toBe(dir);
  expect(await errCode(nameless(other.graph, '01234567-89ab-cdef-0123-456789abcdef'))).toBe('ESTALE');
});

test('inode numbers come from GFIDs: one per file whatever child has it, none shared', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const inos = new Set<number>();
  for (let i = 0; i < 30; i++) {
    await writeFile(v.bridge, `/f${i}`, '');
    const st = await v.bridge.getattr(`/f${i}`);
    expect(st.ino).toBe(inoOf(st.gfid));
    inos.add(st.ino);
  }
  expect(inos.size).toBe(30);
  expect((await v.bridge.getattr('/')).ino).toBe(1);
  expect(new Set(v.dirs.map((d) => onChild(d).length)).size).toBeGreaterThan(1);
});

test('statfs adds the children up', async () => {
  const v = await startDht(2, { prefix: prefix() });
  const one = await startDht(1, { dirs: [v.dirs[0]], prefix: prefix() });
  const sum = await v.bridge.statfs('/');
  const single = await one.bridge.statfs('/');
  // Both children are on the same filesystem here: twice its blocks and inodes.
  expect(sum.blocks).toBe(2 * single.blocks);
  expect(sum.files).toBe(2 * single.files);
});

test('a subvolume whose storage has no features/locks above it is refused when the volume is built', () => {
  const dir = tempDir();
  const text = `volume p\n type storage/posix\n option directory ${dir}\nend-volume\nvolume d\n type cluster/distribute\n subvolumes p\nend-volume\n`;
  expect(() => buildGraph(parseVolfile(text, 'x.vol'), { id: 1, registry: new Registry(), log: Logger.create('error') })).toThrow(
    /x\.vol:5: volume 'd': subvolume 'p' keeps no internal locks: put a features\/locks volume above its storage\/posix/,
  );
});

test('files spread over the children by hash: every name on the child its hash says', async () => {
  const v = await startDht(3, { prefix: prefix() });
  await v.bridge.mkdir('/d', 0o755);
  for (let i = 0; i < 40; i++) await writeFile(v.bridge, `/d/x${i}`, '');
  for (let i = 0; i < 40; i++) expect(dataOn(v.dirs, `d/x${i}`)).toEqual([await hashedOf(v, '/d', `x${i}`)]);
});

/** Each child's layout record of a directory, as raw bytes (to see that nothing rewrote them). */
function two3(dirs: readonly string[], rel: string): string[] {
  return dirs.map((d) => backingXattr(path.join(d, rel), LAYOUT_XATTR)?.toString('hex') ?? '');
}

test('a linkto file whose data is nowhere does not keep its name taken', async () => {
  const p = prefix();
  const v = await startDht(3, { prefix: p });
  await v.bridge.mkdir('/d', 0o755);
  const name = await nameOn(v, '/d', 0);
  fs.writeFileSync(path.join(v.dirs[1], 'd', name), 'x');
  await v.bridge.getattr(`/d/${name}`);
  expect(isLinkto(v.dirs[0], `d/${name}`)).toBe(true);
  // The data goes behind the volume's back (a crash between an unlink's two steps does the same).
  fs.rmSync(path.join(v.dirs[1], 'd', name));
  const other = await startDht(3, { dirs: v.dirs, prefix: p });
  expect(await errCode(other.bridge.getattr(`/d/${name}`))).toBe('ENOENT');
  expect(fs.existsSync(path.join(v.dirs[0], 'd', name))).toBe(false);
  await writeFile(other.bridge, `/d/${name}`, 'new');
  expect(await readAll(other.bridge, `/d/${name}`)).toBe('new');
});

test('migrate-timeout changes in place (an options-only reload)', async () => {
  const v = await startDht(2, { prefix: prefix() });
  expect(v.dht.bounds.migrateMs).toBe(60_000);
  await v.dht.reconfigure({ ...v.dht.options, 'migrate-timeout': 2.5 });
  expect(v.dht.bounds).toMatchObject({ migrateMs: 2500, fopWaitMs: 32_500 });
});
