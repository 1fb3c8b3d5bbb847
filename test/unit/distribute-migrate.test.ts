// Migration (what rebalance does to each file) of files that are open, read and written
// meanwhile: interleavings held with debug/gate, waits observed in the children's lock tables.
import * as fs from 'fs';
import * as path from 'path';
import { constants } from 'fs';
import { LOCK_TO_EOF, ROOT_CALLER } from '../../src/core/types';
import { systemClock } from '../../src/core/time';
import type { FopName } from '../../src/core/fops';
import { VIRTUAL } from '../../xlators/cluster/distribute/index';
import { LINKTO_XATTR, PENDING_XATTR } from '../../xlators/cluster/distribute/linkto';
import { MIGRATE_DOMAIN } from '../../xlators/cluster/distribute/locks';
import type { ErrorGen } from '../../xlators/debug/error-gen';
import type { Locks } from '../../xlators/features/locks/index';
import { cleanupGraphs, errCode, readAll, writeFile } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { DhtVolume, backingXattr, dataOn, isLinkto, nameOn, pathinfo, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

let seq = 0;
const prefix = () => `mg${++seq}`;

/** Requests waiting in child i's migration lock table. */
function waiting(v: DhtVolume, i: number): number {
  const d = (v.graph.xlators.get(v.names[i]) as unknown as Locks).dump() as { inodelks: Record<string, { waiting: number }> };
  return d.inodelks[MIGRATE_DOMAIN]?.waiting ?? 0;
}

/** Drains child 0: its files' hashed child becomes another one. Returns that child for `file`. */
async function drainFirst(v: DhtVolume, dir: string, file: string): Promise<number> {
  await v.bridge.setxattr('/', VIRTUAL.removing, Buffer.from(v.names[0]), 0);
  expect(JSON.parse((await v.bridge.getxattr(dir, VIRTUAL.fixLayout)).toString()).changed).toBe(true);
  const d = v.names.indexOf((await pathinfo(v, file)).hashed);
  expect(d).toBeGreaterThan(0);
  return d;
}

const migrate = async (v: DhtVolume, file: string) => JSON.parse((await v.bridge.getxattr(file, VIRTUAL.migrate)).toString());

/** A file on child 0 of a new volume, open read-write, with `size` bytes of known data. */
async function openOnFirst(v: DhtVolume, size: number) {
  await v.bridge.mkdir('/d', 0o755);
  const file = `/d/${await nameOn(v, '/d', 0)}`;
  const model = Buffer.alloc(size);
  for (let i = 0; i < size; i++) model[i] = (i * 7 + 3) & 0xff;
  const fh = await v.bridge.create(file, 0o640, constants.O_RDWR);
  expect(await v.bridge.write(file, fh, model, 0)).toBe(size);
  return { file, fh, model };
}

test('a file open for reading and writing moves with its GFID, mode, owner and times; its fd follows it', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  const { file, fh, model } = await openOnFirst(v, 200_000);
  await b.chown(file, 1000, 1001);
  await b.utimens(file, { sec: 1_000_000, nsec: 5 }, { sec: 2_000_000, nsec: 7 });
  await b.setxattr(file, 'user.note', Buffer.from('kept'), 0);
  const before = await b.getattr(file);
  const d = await drainFirst(v, '/d', file);
  expect(await migrate(v, file)).toEqual({ result: 'moved', from: v.names[0], child: v.names[d], bytes: 200_000 });
  const rel = file.slice(1);
  expect(dataOn(v.dirs, rel)).toEqual([d]);
  const st = fs.statSync(path.join(v.dirs[d], rel));
  expect([st.mode & 0o7777, st.uid, st.gid, st.size]).toEqual([0o640, 1000, 1001, 200_000]);
  expect(backingXattr(path.join(v.dirs[d], rel), LINKTO_XATTR)).toBeUndefined();
  const after = await b.getattr(file);
  expect([after.gfid, after.ino, after.mtime]).toEqual([before.gfid, before.ino, { sec: 2_000_000, nsec: 7 }]);
  expect((await b.getxattr(file, 'user.note')).toString()).toBe('kept');
  // The fd opened before reads and writes where the file is now.
  expect(await b.write(file, fh, Buffer.from('XY'), 10)).toBe(2);
  model.write('XY', 10);
  expect((await b.read(file, fh, 300_000, 0)).equals(model)).toBe(true);
  await b.release(file, fh);
  expect(fs.readFileSync(path.join(v.dirs[d], rel)).equals(model)).toBe(true);
  expect(v.dht.counters.relocations).toBeGreaterThan(0);
  expect(await migrate(v, file)).toEqual({ result: 'in-place', child: v.names[d] });
});

test('a write in flight holds a migration back, a write during one waits for it, reads do not; every write is in the file', async () => {
  const v = await startDht(3, { gates: true, prefix: prefix() });
  const b = v.bridge;
  const { file, fh, model } = await openOnFirst(v, 100_000);
  const d = await drainFirst(v, '/d', file);

  const first = v.gate(0).hold('write', 'before');
  const w1 = b.write(file, fh, Buffer.from('1111'), 0);
  await first.reached;
  const copy = v.gate(d).hold('write', 'before');
  const migration = migrate(v, file);
  await waitFor(() => waiting(v, 0) === 1, 5000, 'the migration to wait for the write in flight');
  expect(copy.isHeld).toBe(false);
  first.release();
  expect(await w1).toBe(4);
  model.write('1111', 0);

  await copy.reached; // the migration holds the file on both children; its copy is under way
  const w2 = b.write(file, fh, Buffer.from('22'), 2);
  await waitFor(() => waiting(v, 0) === 1, 5000, 'the write to wait for the migration');
  expect((await b.read(file, fh, 4, 0)).toString()).toBe('1111');
  copy.release();

  expect(await migration).toEqual({ result: 'moved', from: v.names[0], child: v.names[d], bytes: 100_000 });
  expect(await w2).toBe(2);
  model.write('22', 2);
  expect((await b.read(file, fh, 200_000, 0)).equals(model)).toBe(true);
  await b.release(file, fh);
  expect(fs.readFileSync(path.join(v.dirs[d], file.slice(1))).equals(model)).toBe(true);
  expect(fs.existsSync(path.join(v.dirs[0], file.slice(1)))).toBe(false);
});

test('a migration that would outlast migrate-timeout is abandoned: the file stays, whole, and its writers go on', async () => {
  const v = await startDht(3, { gates: true, prefix: prefix(), dhtOptions: ' option migrate-timeout 5\n' });
  const b = v.bridge;
  const { file, fh, model } = await openOnFirst(v, 50_000);
  const d = await drainFirst(v, '/d', file);
  let now = Date.now();
  v.dht.clock = { now: () => now, timer: systemClock.timer };
  const copy = v.gate(d).hold('write', 'before');
  const migration = migrate(v, file);
  await copy.reached;
  now += 6000;
  copy.release();
  const report = await migration;
  expect(report.result).toBe('skipped');
  expect(report.reason).toMatch(/migrate-timeout/);
  expect(dataOn(v.dirs, file.slice(1))).toEqual([0]);
  expect(isLinkto(v.dirs[d], file.slice(1))).toBe(true);
  expect(fs.statSync(path.join(v.dirs[d], file.slice(1))).size).toBe(0);
  expect(await b.write(file, fh, Buffer.from('after'), 0)).toBe(5);
  model.write('after', 0);
  expect((await b.read(file, fh, 100_000, 0)).equals(model)).toBe(true);
  await b.release(file, fh);
});

/** A volume whose children can fail setattr on demand (the last step of a migration's switch). */
async function withFailingSwitch(p: string) {
  const v = await startDht(3, { prefix: p, layers: ['debug/error-gen'] });
  const eg = (i: number) => v.layer<ErrorGen>(i, 'debug/error-gen');
  for (let i = 0; i < 3; i++) eg(i).options = { ...eg(i).options, enable: new Set<FopName>(['setattr']) as never, failure: 0 };
  return { v, fail: (i: number, on: boolean) => (eg(i).options = { ...eg(i).options, failure: on ? 100 : 0 }) };
}

test('a switch interrupted between its two steps (old copy gone, new one still marked) is finished by the next lookup', async () => {
  const p = prefix();
  const { v, fail } = await withFailingSwitch(p);
  const { file, fh, model } = await openOnFirst(v, 30_000);
  await v.bridge.release(file, fh);
  const d = await drainFirst(v, '/d', file);
  fail(d, true);
  expect((await migrate(v, file)).result).toBe('moved');
  const rel = file.slice(1);
  expect(fs.existsSync(path.join(v.dirs[0], rel))).toBe(false);
  expect(isLinkto(v.dirs[d], rel)).toBe(true);
  expect(backingXattr(path.join(v.dirs[d], rel), PENDING_XATTR)?.readUInt32BE(0)).toBe(0o640);
  fail(d, false);
  const other = await startDht(3, { dirs: v.dirs, prefix: p, layers: ['debug/error-gen'] });
  for (let i = 0; i < 3; i++) {
    const eg = other.layer<ErrorGen>(i, 'debug/error-gen');
    eg.options = { ...eg.options, failure: 0 };
  }
  expect(await readAll(other.bridge, file)).toBe(model.subarray(0, 4096).toString());
  const st = fs.statSync(path.join(v.dirs[d], rel));
  expect(st.mode & 0o7777).toBe(0o640);
  expect(backingXattr(path.join(v.dirs[d], rel), LINKTO_XATTR)).toBeUndefined();
  expect(backingXattr(path.join(v.dirs[d], rel), PENDING_XATTR)).toBeUndefined();
  expect(fs.readFileSync(path.join(v.dirs[d], rel)).equals(model)).toBe(true);
});

test('an fd opened before an interrupted switch finishes it and writes where the file went', async () => {
  const { v, fail } = await withFailingSwitch(prefix());
  const b = v.bridge;
  const { file, fh, model } = await openOnFirst(v, 30_000);
  const d = await drainFirst(v, '/d', file);
  fail(d, true);
  expect((await migrate(v, file)).result).toBe('moved');
  fail(d, false);
  expect(await b.write(file, fh, Buffer.from('late'), 100)).toBe(4);
  model.write('late', 100);
  expect((await b.read(file, fh, 60_000, 0)).equals(model)).toBe(true);
  await b.release(file, fh);
  expect(fs.readFileSync(path.join(v.dirs[d], file.slice(1))).equals(model)).toBe(true);
  expect(isLinkto(v.dirs[d], file.slice(1))).toBe(false);
});

test('a lookup during a switch waits for it and finds the file (it never vanishes)', async () => {
  const p = prefix();
  const v = await startDht(3, { gates: true, prefix: p });
  const { file, fh } = await openOnFirst(v, 10_000);
  await v.bridge.release(file, fh);
  const d = await drainFirst(v, '/d', file);
  const commit = v.gate(d).hold('setattr', 'before');
  const migration = migrate(v, file);
  await commit.reached; // the old copy is gone, the new one not switched yet
  expect(fs.existsSync(path.join(v.dirs[0], file.slice(1)))).toBe(false);
  const other = await startDht(3, { dirs: v.dirs, prefix: p });
  const look = other.bridge.getattr(file);
  await waitFor(() => waiting(v, d) === 1, 5000, 'the lookup to wait for the switch');
  commit.release();
  expect((await migration).result).toBe('moved');
  expect((await look).size).toBe(10_000);
});

test('a file an application holds a lock on stays where it is until the lock goes', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  const { file, fh } = await openOnFirst(v, 1000);
  await drainFirst(v, '/d', file);
  const req = { caller: ROOT_CALLER, lkOwner: 'app-owner' };
  await b.core.lk(req, b.core.basefds.all().next().value!.id, 'set', { type: 'write', start: 0, end: LOCK_TO_EOF, pid: 42 }, 'posix');
  const skipped = await migrate(v, file);
  expect(skipped).toMatchObject({ result: 'skipped', child: v.names[0] });
  expect(skipped.reason).toMatch(/lock/);
  await b.core.lk(req, b.core.basefds.all().next().value!.id, 'set', { type: 'unlock', start: 0, end: LOCK_TO_EOF, pid: 42 }, 'posix');
  expect((await migrate(v, file)).result).toBe('moved');
  await b.release(file, fh);
});

test('hard-linked files stay; symlinks, fifos and empty files move', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  const [lnk, fifo, empty, hard] = [await nameOn(v, '/d', 0, 'l'), await nameOn(v, '/d', 0, 'p'), await nameOn(v, '/d', 0, 'e'), await nameOn(v, '/d', 0, 'h')];
  await b.symlink('../some/target', `/d/${lnk}`);
  await b.mknod(`/d/${fifo}`, constants.S_IFIFO | 0o600, 0);
  await writeFile(b, `/d/${empty}`, '');
  await writeFile(b, `/d/${hard}`, 'two names');
  await b.link(`/d/${hard}`, `/d/${hard}-too`);
  await drainFirst(v, '/d', `/d/${lnk}`);
  for (const n of [lnk, fifo, empty]) expect((await migrate(v, `/d/${n}`)).result).toBe('moved');
  expect(await b.readlink(`/d/${lnk}`)).toBe('../some/target');
  expect(((await b.getattr(`/d/${fifo}`)).mode & constants.S_IFMT)).toBe(constants.S_IFIFO);
  expect((await b.getattr(`/d/${empty}`)).size).toBe(0);
  for (const n of [lnk, fifo, empty]) expect(dataOn(v.dirs, `d/${n}`)).not.toContain(0);
  const hardReport = await migrate(v, `/d/${hard}`);
  expect(hardReport).toMatchObject({ result: 'skipped', child: v.names[0], reason: 'it has hard links' });
});

test('draining a child: every file leaves it, and new directories give it no range', async () => {
  const v = await startDht(3, { prefix: prefix() });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  for (let i = 0; i < 60; i++) await writeFile(b, `/d/f${i}`, `${i}`.repeat(100));
  const onFirst = fs.readdirSync(path.join(v.dirs[0], 'd')).length;
  expect(onFirst).toBeGreaterThan(5);
  await drainFirst(v, '/d', '/d/f0');
  const reports = [];
  for (let i = 0; i < 60; i++) reports.push(await migrate(v, `/d/f${i}`));
  // Every file of child 0 moves (and some between the others: equal halves of the space now).
  expect(reports.filter((r) => r.result === 'moved' && r.from === v.names[0]).length).toBe(onFirst);
  expect(reports.filter((r) => r.result === 'skipped')).toEqual([]);
  expect(fs.readdirSync(path.join(v.dirs[0], 'd'))).toEqual([]);
  for (let i = 0; i < 60; i++) expect(await readAll(b, `/d/f${i}`)).toBe(`${i}`.repeat(100).slice(0, 4096));
  await b.mkdir('/e', 0o755);
  expect((await pathinfo(v, '/e') as unknown as { layout: Record<string, unknown> }).layout[v.names[0]]).toBeNull();
  expect(await errCode(v.bridge.setxattr('/', VIRTUAL.removing, Buffer.from('no-such-child'), 0))).toBe('EINVAL');
  expect(await errCode(v.bridge.setxattr('/', VIRTUAL.removing, Buffer.from(v.names.join(',')), 0))).toBe('EINVAL');
});
