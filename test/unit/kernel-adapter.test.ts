// The kernel transport's view of the bridge, driven in-process (no /dev/fuse): nodeids are
// hints resolved on the active graph by GFID, lookup counts come and go with FORGET, names
// are bytes, the caller's credentials reach storage, and listings hand the kernel only what
// fits.
import { constants } from 'fs';
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import type { BridgeCore } from '../../src/fuse/core';
import { DEFAULT_KERNEL_ADAPTER_OPTIONS, KernelAdapter } from '../../src/fuse/kernel/adapter';
import type { DirEntryOut, Entry, KernelFs, Request } from '../../src/fuse/kernel/fs';
import { ROOT_NODEID } from '../../src/fuse/nodes';
import { GraphSwitcher } from '../../src/fuse/switcher';
import { cleanupGraphs, tempDir } from '../helpers/graphs';

const posix = (dir: string) => `volume posix\n    type storage/posix\n    option directory ${dir}\nend-volume\n`;
const traced = (dir: string) => `${posix(dir)}volume top\n    type debug/trace\n    subvolumes posix\nend-volume\n`;

interface Setup {
  backing: string;
  switcher: GraphSwitcher;
  core: BridgeCore;
  fs: KernelFs;
  write(text: string): void;
}

const setups: Setup[] = [];

const locked = (dir: string, extra = '') => `${posix(dir)}volume locks\n    type features/locks\n    subvolumes posix\nend-volume\n${extra}`;
const lockedTraced = (dir: string) => locked(dir, `volume top\n    type debug/trace\n    subvolumes locks\nend-volume\n`);

async function setup(text = posix): Promise<Setup> {
  const dir = tempDir('xlstack-kadapter-');
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const volfile = path.join(dir, 'test.vol');
  const write = (t: string) => fs.writeFileSync(volfile, t);
  write(text(backing));
  const log = Logger.create('error', () => undefined);
  const switcher = new GraphSwitcher({ volfile, registry: new Registry(), log, startTimeoutMs: 5000, stopTimeoutMs: 5000 });
  const core = (await switcher.start()).core;
  const s = { backing, switcher, core, fs: new KernelAdapter(core, log, DEFAULT_KERNEL_ADAPTER_OPTIONS), write };
  setups.push(s);
  return s;
}

afterEach(async () => {
  for (const s of setups.splice(0)) {
    for (const b of [...s.core.basefds.all()]) await s.core.release(b.id).catch(() => undefined);
    await s.switcher.stopAll();
  }
  await cleanupGraphs();
});

let unique = 2;
/** A request as the kernel would send it. */
function req(uid = 0, gid = 0): Request {
  return { unique: (unique += 2), uid, gid, pid: 0, interrupted: false, onInterrupt: () => () => undefined };
}

const b = (s: string) => Buffer.from(s);

async function createFile(s: Setup, parent: number, name: string, text: string): Promise<Entry> {
  const { entry, opened } = await s.fs.create(req(), parent, b(name), 0o644, 0, constants.O_RDWR);
  await s.fs.write(req(), entry.nodeid, opened.fh, 0, b(text));
  await s.fs.release(req(), entry.nodeid, opened.fh, 0, 0n, false);
  return entry;
}

describe('nodeids are hints', () => {
  test('a lookup gives one nodeid per object, counted per lookup, and FORGET drops it at zero', async () => {
    const s = await setup();
    const made = await createFile(s, ROOT_NODEID, 'f', 'data');
    const again = await s.fs.lookup(req(), ROOT_NODEID, b('f'));
    expect(again.nodeid).toBe(made.nodeid);
    expect(s.core.nodes.get(made.nodeid).nlookup).toBe(2);
    s.fs.forget(made.nodeid, 1);
    expect(s.core.nodes.get(made.nodeid).nlookup).toBe(1);
    s.fs.forget(made.nodeid, 1);
    expect(() => s.core.nodes.get(made.nodeid)).toThrow(/ESTALE/);
    // Never reused: a new lookup of the same file gets a new nodeid.
    expect((await s.fs.lookup(req(), ROOT_NODEID, b('f'))).nodeid).toBeGreaterThan(made.nodeid);
  });

  test('hard links share a nodeid (and st_ino)', async () => {
    const s = await setup();
    const f = await createFile(s, ROOT_NODEID, 'f', 'x');
    const l = await s.fs.link(req(), f.nodeid, ROOT_NODEID, b('l'));
    expect(l.nodeid).toBe(f.nodeid);
    expect(l.attr.ino).toBe(f.attr.ino);
    expect(l.attr.nlink).toBe(2);
  });

  test('after a switch, nodeids the kernel holds resolve on the new graph by GFID, without any new lookup by name', async () => {
    const s = await setup();
    const dir = await s.fs.mkdir(req(), ROOT_NODEID, b('d'), 0o755, 0);
    const f = await createFile(s, dir.nodeid, 'f', 'before');
    s.write(traced(s.backing));
    expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
    const attr = await s.fs.getattr(req(), f.nodeid);
    expect(attr.attr.gfid).toBe(f.attr.gfid);
    expect(s.core.nodes.get(f.nodeid).current?.graph.id).toBe(2);
    // An entry op through an old nodeid works on the new graph.
    const g = await createFile(s, dir.nodeid, 'g', 'after');
    expect(s.core.nodes.get(g.nodeid).current?.graph.id).toBe(2);
    const opened = await s.fs.open(req(), f.nodeid, constants.O_RDONLY);
    expect((await s.fs.read(req(), f.nodeid, opened.fh, 0, 100)).toString()).toBe('before');
    await s.fs.release(req(), f.nodeid, opened.fh, 0, 0n, false);
  });

  test('a nodeid whose object is gone answers ESTALE (the kernel then looks the name up again)', async () => {
    const s = await setup();
    const f = await createFile(s, ROOT_NODEID, 'f', 'x');
    await s.fs.unlink(req(), ROOT_NODEID, b('f'));
    s.write(traced(s.backing));
    await s.switcher.reload();
    await expect(s.fs.getattr(req(), f.nodeid)).rejects.toMatchObject({ code: 'ESTALE' });
  });

  test('a cleaned-up graph leaves no inode behind in the records that pointed at it', async () => {
    const s = await setup();
    const f = await createFile(s, ROOT_NODEID, 'f', 'x');
    const first = s.core.active;
    s.write(traced(s.backing));
    await s.switcher.reload();
    const deadline = Date.now() + 5000;
    while (s.switcher.graphs().includes(first) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(s.switcher.graphs()).not.toContain(first);
    expect(s.core.nodes.get(f.nodeid).current).toBeUndefined();
    expect((await s.fs.getattr(req(), f.nodeid)).attr.gfid).toBe(f.attr.gfid);
  });
});

describe('requests as the kernel sends them', () => {
  test('names are bytes: a name that is not valid UTF-8 round-trips through create, readdir and rename', async () => {
    const s = await setup();
    const name = Buffer.from([0x66, 0xff, 0xfe, 0x2e, 0x80]);
    const { entry, opened } = await s.fs.create(req(), ROOT_NODEID, name, 0o644, 0, constants.O_RDWR);
    await s.fs.release(req(), entry.nodeid, opened.fh, 0, 0n, false);
    const names = await listNames(s, ROOT_NODEID);
    expect(names.some((n) => n.equals(name))).toBe(true);
    expect(fs.readdirSync(s.backing, { encoding: 'buffer' }).some((n) => n.equals(name))).toBe(true);
    const renamed = Buffer.from([0xc3, 0x28]);
    await s.fs.rename(req(), ROOT_NODEID, name, ROOT_NODEID, renamed, 0);
    expect((await s.fs.lookup(req(), ROOT_NODEID, renamed)).nodeid).toBe(entry.nodeid);
  });

  test('files and directories belong to the caller', async () => {
    const s = await setup();
    const d = await s.fs.mkdir(req(1234, 2345), ROOT_NODEID, b('mine'), 0o755, 0);
    expect([d.attr.uid, d.attr.gid]).toEqual([1234, 2345]);
    const { entry, opened } = await s.fs.create(req(1234, 2345), d.nodeid, b('f'), 0o600, 0, constants.O_WRONLY);
    await s.fs.release(req(), entry.nodeid, opened.fh, 0, 0n, false);
    const st = fs.statSync(path.join(s.backing, 'mine', 'f'));
    expect([st.uid, st.gid, st.mode & 0o777]).toEqual([1234, 2345, 0o600]);
  });

  test('setattr sets mtime and atime separately, to the nanosecond', async () => {
    const s = await setup();
    const f = await createFile(s, ROOT_NODEID, 'f', 'x');
    const a = await s.fs.setattr(req(), f.nodeid, { mtime: { sec: 1_000_000_000, nsec: 123_456_789 } });
    expect(a.attr.mtime).toEqual({ sec: 1_000_000_000, nsec: 123_456_789 });
    expect(a.attr.atime).not.toEqual(a.attr.mtime);
    const st = fs.statSync(path.join(s.backing, 'f'), { bigint: true });
    expect(st.mtimeNs).toBe(1_000_000_000_123_456_789n);
  });

  test('a listing hands over only what fits, and the next call resumes after the last entry taken', async () => {
    const s = await setup();
    const dir = await s.fs.mkdir(req(), ROOT_NODEID, b('d'), 0o755, 0);
    const want = Array.from({ length: 50 }, (_, i) => `file-${i}`);
    for (const n of want) await createFile(s, dir.nodeid, n, '');
    for (const n of want) s.fs.forget((await s.fs.lookup(req(), dir.nodeid, b(n))).nodeid, 2);
    const opened = await s.fs.opendir(req(), dir.nodeid, 0);
    const seen: string[] = [];
    let offset = 0;
    for (let calls = 0; calls < 100; calls++) {
      const batch: DirEntryOut[] = [];
      // A sink that takes 7 entries a call, like a small kernel buffer.
      await s.fs.readdir(req(), dir.nodeid, opened.fh, offset, { plus: true, add: (d, e) => (batch.length < 7 ? (batch.push(d), e && seen.push(`${d.name}`), true) : false) });
      if (batch.length === 0) break;
      offset = batch[batch.length - 1].offset;
      for (const d of batch) if (!['.', '..'].includes(d.name.toString())) expect(seen).toContain(d.name.toString());
    }
    await s.fs.releasedir(req(), dir.nodeid, opened.fh);
    expect(seen.sort()).toEqual([...want].sort());
    // Each entry the kernel took counts one lookup; the ones it did not take count none.
    for (const n of want) {
      const node = s.core.nodes.withGfid((await s.fs.lookup(req(), dir.nodeid, b(n))).attr.gfid)!;
      expect(node.nlookup).toBe(2);
    }
  });
});

describe('locks', () => {
  const whole = (type: 'read' | 'write' | 'unlock', pid: number) => ({ type, start: 0, end: Number.MAX_SAFE_INTEGER, pid });

  test('a POSIX lock outlives a graph switch: the handle moves, the lock stays held until its owner closes', async () => {
    const s = await setup(locked);
    const f = await createFile(s, ROOT_NODEID, 'f', 'data');
    const a = (await s.fs.open(req(), f.nodeid, constants.O_RDWR)).fh;
    const bfh = (await s.fs.open(req(), f.nodeid, constants.O_RDWR)).fh;
    await s.fs.setlk(req(), f.nodeid, { fh: a, owner: 0xan, lock: whole('write', 100), flock: false }, false);
    const tryB = () => s.fs.setlk(req(), f.nodeid, { fh: bfh, owner: 0xbn, lock: whole('write', 200), flock: false }, false);
    await expect(tryB()).rejects.toMatchObject({ code: 'EAGAIN' });
    s.write(lockedTraced(s.backing));
    expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
    // The holder's handle moves to graph 2 (its Fd on graph 1 is released), and so does B's.
    await s.fs.read(req(), f.nodeid, a, 0, 4);
    await expect(tryB()).rejects.toMatchObject({ code: 'EAGAIN' });
    expect(await s.fs.getlk(req(), f.nodeid, { fh: bfh, owner: 0xbn, lock: whole('write', 200), flock: false })).toMatchObject({ type: 'write', pid: 100 });
    expect(s.core.basefds.get(a).current.graph.id).toBe(2);
    // The owner closes the file: its POSIX locks go, and B gets the lock.
    await s.fs.flush(req(), f.nodeid, a, 0xan);
    await tryB();
    await s.fs.release(req(), f.nodeid, a, 0, 0xan, false);
    await s.fs.release(req(), f.nodeid, bfh, 0, 0xbn, false);
  });

  test('without a lock translator, locks hold between the processes of the mount (never ENOSYS)', async () => {
    const s = await setup();
    const f = await createFile(s, ROOT_NODEID, 'f', 'data');
    const a = (await s.fs.open(req(), f.nodeid, constants.O_RDWR)).fh;
    const bfh = (await s.fs.open(req(), f.nodeid, constants.O_RDWR)).fh;
    await s.fs.setlk(req(), f.nodeid, { fh: a, owner: 1n, lock: whole('write', 100), flock: true }, false);
    await expect(s.fs.setlk(req(), f.nodeid, { fh: bfh, owner: 2n, lock: whole('write', 200), flock: true }, false)).rejects.toMatchObject({ errno: 11 });
    await s.fs.release(req(), f.nodeid, a, 0, 1n, true);
    await s.fs.setlk(req(), f.nodeid, { fh: bfh, owner: 2n, lock: whole('write', 200), flock: true }, false);
    await s.fs.release(req(), f.nodeid, bfh, 0, 2n, true);
  });
});

async function listNames(s: Setup, nodeid: number): Promise<Buffer[]> {
  const opened = await s.fs.opendir(req(), nodeid, 0);
  const names: Buffer[] = [];
  await s.fs.readdir(req(), nodeid, opened.fh, 0, { plus: false, add: (d) => (names.push(d.name), true) });
  await s.fs.releasedir(req(), nodeid, opened.fh);
  return names;
}
