// Self-heal over in-process bricks: a child is switched off, changes of every kind are made,
// it comes back, and the client's background heal (on CHILD_UP) makes its copies the same as
// the others: data, metadata, entries (creates, unlinks, renames, links, replaced names),
// changelogs clear, indexes empty. With no background passes, a read heals what it finds
// behind; a large file's heal lets writers in between windows. A change cut short (dirty
// markers only) is healed from the largest copy; a directory's copies are merged, nothing
// removed.
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as path from 'path';
import { cleanupGraphs, newBridge, readAll, within, writeFile } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { ROOT_CALLER } from '../../src/core/index';
import { ReplicaSet, changelogOf, clear, indexed, startReplica, stopReplicas } from '../helpers/replica';

afterEach(async () => {
  await stopReplicas();
  await cleanupGraphs();
});

const { O_RDWR } = fs.constants;

/** Waits (bounded) until the set's background healer has nothing queued, running or armed. */
async function quiet(r: ReplicaSet): Promise<void> {
  await waitFor(() => r.afr.heal.quiet, 20_000, 'the background heal to finish');
}

interface Node {
  type: string;
  mode: number;
  uid: number;
  gid: number;
  size: number;
  data?: string;
  link?: string;
  gfid: string;
  xattrs: string;
  mtime?: number;
}

/** A brick's tree as the user sees it (no .xlstack), with what must be the same on every copy. */
function tree(dir: string, times = false): Record<string, Node> {
  const out: Record<string, Node> = {};
  const walk = (rel: string) => {
    for (const name of fs.readdirSync(path.join(dir, rel)).sort()) {
      if (rel === '' && name === '.xlstack') continue;
      const p = path.join(dir, rel, name);
      const st = fs.lstatSync(p);
      const r = path.join(rel, name);
      const attrs = execFileSync('getfattr', ['-h', '--absolute-names', '-d', '-m', '-', '-e', 'hex', p], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('=') && !l.startsWith('trusted.xlstack.'))
        .sort()
        .join(';');
      out[r] = {
        type: st.isDirectory() ? 'dir' : st.isSymbolicLink() ? 'link' : st.isFile() ? 'file' : 'other',
        mode: st.mode,
        uid: st.uid,
        gid: st.gid,
        size: st.isDirectory() ? 0 : st.size,
        data: st.isFile() ? fs.readFileSync(p).toString('base64') : undefined,
        link: st.isSymbolicLink() ? fs.readlinkSync(p) : undefined,
        gfid: attrs,
        xattrs: attrs,
        ...(times && !st.isDirectory() ? { mtime: st.mtimeMs } : {}),
      };
      if (st.isDirectory()) walk(r);
    }
  };
  walk('');
  return out;
}

function expectSame(r: ReplicaSet, times = false): void {
  const t0 = tree(r.dirs[0], times);
  for (const d of r.dirs.slice(1)) expect(tree(d, times)).toEqual(t0);
  for (const d of r.dirs) {
    expect(indexed(d)).toEqual([]);
    for (const rel of ['', ...Object.keys(t0).filter((k) => t0[k].type !== 'link')]) expect([rel, clear(changelogOf(d, rel))]).toEqual([rel, true]);
  }
}

describe('background heal when a child comes back', () => {
  test('data: overwrites, appends, a file grown sparse and one truncated, all healed to the byte', async () => {
    const r = await startReplica({ n: 2 });
    const b = newBridge(r.graph);
    await writeFile(b, '/a', 'aaaaaaaaaa');
    await writeFile(b, '/t', 'x'.repeat(5000));
    await writeFile(b, '/big', '');
    await r.afr.txns.settleAll();
    r.switches[1].down();
    const fa = await b.open('/a', O_RDWR);
    await b.write('/a', fa, Buffer.from('BB'), 3);
    await b.write('/a', fa, Buffer.from('tail'), 10);
    await b.release('/a', fa);
    await b.truncate('/t', 100);
    const fb = await b.open('/big', O_RDWR);
    const chunk = Buffer.alloc(300_000, 7);
    await b.write('/big', fb, chunk, 0);
    await b.write('/big', fb, chunk, 5_000_000);
    await b.release('/big', fb);
    await r.afr.txns.settleAll();
    expect(changelogOf(r.dirs[0], 'a')['pending.client-1'][0]).toBe(1);
    expect(indexed(r.dirs[0]).length).toBe(3);
    r.switches[1].restore();
    await quiet(r);
    expectSame(r, true);
    expect(fs.readFileSync(path.join(r.dirs[1], 'a'), 'utf8')).toBe('aaaBBaaaaatail');
    expect(fs.statSync(path.join(r.dirs[1], 'big')).size).toBe(5_300_000);
    // Sparse stays sparse: the hole was not written.
    expect(fs.statSync(path.join(r.dirs[1], 'big')).blocks * 512).toBeLessThan(2_000_000);
    expect(r.log()).toContain('healed data of');
    // Once healed, client-1's copy is read again.
    expect(r.afr.states.readable(r.graph.itable.find((await b.getattr('/a')).gfid)!, ['data'], [0, 1], r.afr.subvols.generation)).toEqual([0, 1]);
  });

  test('metadata: mode, owner, times and xattrs set and removed', async () => {
    const r = await startReplica({ n: 3 });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'x');
    await b.mkdir('/d', 0o755);
    await b.setxattr('/f', 'user.gone', Buffer.from('1'), 0);
    await r.afr.txns.settleAll();
    r.switches[2].down();
    await b.chmod('/f', 0o4750);
    await b.chown('/f', 1234, 5678);
    await b.chmod('/f', 0o4750);
    await b.utimens('/f', { sec: 1000, nsec: 5 }, { sec: 2000, nsec: 7 });
    await b.setxattr('/f', 'user.new', Buffer.from('value'), 0);
    await b.removexattr('/f', 'user.gone');
    await b.chmod('/d', 0o700);
    await b.setxattr('/d', 'trusted.thing', Buffer.from('t'), 0);
    r.switches[2].restore();
    await quiet(r);
    expectSame(r, true);
    const st = fs.statSync(path.join(r.dirs[2], 'f'));
    expect([st.mode & 0o7777, st.uid, st.gid, st.mtimeMs]).toEqual([0o4750, 1234, 5678, 2000000.000007]);
  });

  test('entries: creates (a tree, a symlink, a fifo), unlinks, a non-empty directory removed, renames across directories, hard links, a name replaced', async () => {
    const r = await startReplica({ n: 2 });
    const b = newBridge(r.graph);
    await b.mkdir('/old', 0o755);
    await b.mkdir('/old/sub', 0o755);
    await writeFile(b, '/old/sub/deep', 'deep data');
    await writeFile(b, '/keep', 'keep');
    await writeFile(b, '/moved', 'moved data');
    await writeFile(b, '/replaced', 'first');
    await writeFile(b, '/doomed', 'doomed');
    await b.mkdir('/dir2', 0o755);
    await r.afr.txns.settleAll();
    r.switches[0].down();
    await b.mkdir('/new', 0o711);
    await b.mkdir('/new/inner', 0o755);
    await writeFile(b, '/new/inner/file', 'made while away');
    await b.symlink('../keep', '/new/link');
    await b.mknod('/new/fifo', fs.constants.S_IFIFO | 0o640, 0);
    await b.unlink('/doomed');
    await b.rename('/moved', '/dir2/moved-here');
    await b.link('/keep', '/dir2/keep-link');
    await b.rename('/old', '/dir2/old-renamed');
    await b.unlink('/replaced');
    await writeFile(b, '/replaced', 'second object');
    await b.mkdir('/gone', 0o755);
    await writeFile(b, '/gone/x', 'x');
    await b.unlink('/gone/x');
    await b.rmdir('/gone');
    r.switches[0].restore();
    await quiet(r);
    // The directory renamed to another directory is removed from its old place and made again where it went.
    expectSame(r);
    const t = tree(r.dirs[0]);
    expect(t['dir2/old-renamed/sub/deep'].data).toBe(Buffer.from('deep data').toString('base64'));
    expect(t['new/inner/file'].data).toBe(Buffer.from('made while away').toString('base64'));
    expect(fs.statSync(path.join(r.dirs[0], 'dir2/keep-link')).ino).toBe(fs.statSync(path.join(r.dirs[0], 'keep')).ino);
    expect(t['doomed']).toBeUndefined();
    expect(t['old']).toBeUndefined();
    expect(await readAll(b, '/replaced')).toBe('second object');
  });

  test('a file created while a child was down, written through an fd held across its return: the fd is opened there, every write lands', async () => {
    const r = await startReplica({ n: 2 });
    const b = newBridge(r.graph);
    r.switches[1].down();
    const fh = await b.create('/f', 0o644, O_RDWR);
    await b.write('/f', fh, Buffer.from('one '), 0);
    r.switches[1].restore();
    await quiet(r);
    await b.write('/f', fh, Buffer.from('two'), 4);
    await b.release('/f', fh);
    await r.afr.txns.settleAll();
    await quiet(r);
    expectSame(r);
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('one two');
  });

  test("internal xattrs of a translator above (distribute's linkto marks): set on a file made while a child was down, and changed on one it had; both healed", async () => {
    const LINKTO = 'trusted.xlstack.dht.linkto';
    const r = await startReplica({ n: 2 });
    const b = newBridge(r.graph);
    const mark = async (p: string, value: string) => {
      const frame = r.graph.frame('xattrop', ROOT_CALLER);
      try {
        await within(r.afr.xattrop(frame, { gfid: (await b.getattr(p)).gfid }, 'set', { [LINKTO]: Buffer.from(value, 'latin1') }));
      } finally {
        frame.done();
      }
    };
    await writeFile(b, '/had', '');
    await mark('/had', 'pair0');
    await r.afr.txns.settleAll();
    r.switches[1].down();
    await writeFile(b, '/made', '');
    await mark('/made', 'pair1');
    await mark('/had', 'pair2');
    await r.afr.txns.settleAll();
    r.switches[1].restore();
    await quiet(r);
    const backing = (rel: string) => execFileSync('getfattr', ['--absolute-names', '--only-values', '-n', LINKTO, path.join(r.dirs[1], rel)], { encoding: 'latin1' });
    expect([backing('made'), backing('had')]).toEqual(['pair1', 'pair2']);
    expectSame(r);
  });
});

describe('changes while a copy is behind', () => {
  test('a change only the copy behind takes (a name it still has) fails as the current copy says, and accuses nobody', async () => {
    const r = await startReplica({ n: 2, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await b.mkdir('/d', 0o755);
    await writeFile(b, '/d/x', 'x');
    await r.afr.txns.settleAll();
    r.switches[1].down();
    await b.unlink('/d/x');
    await r.afr.txns.settleAll();
    r.switches[1].restore();
    // Not healed: client-1 still has the name client-0 lost.
    expect(fs.existsSync(path.join(r.dirs[1], 'd', 'x'))).toBe(true);
    const d = r.graph.itable.find((await b.getattr('/d')).gfid)!;
    const frame = r.graph.frame('unlink', ROOT_CALLER);
    try {
      await expect(within(r.afr.unlink(frame, { parent: d, name: 'x' }))).rejects.toMatchObject({ code: 'ENOENT' });
    } finally {
      frame.done();
    }
    await r.afr.txns.settleAll();
    // client-0 is still current for /d: changes to its names go on.
    await writeFile(b, '/d/y', 'y');
    expect(fs.readFileSync(path.join(r.dirs[0], 'd', 'y'), 'utf8')).toBe('y');
  });
});

describe('heal on access', () => {
  test('with no background passes, a file read after its child came back is served from the current copy and healed', async () => {
    const r = await startReplica({ n: 2, options: '  option self-heal-daemon off\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'old');
    await writeFile(b, '/g', 'untouched');
    await r.afr.txns.settleAll();
    r.switches[1].down();
    await writeFile(b, '/f', 'new data');
    await b.chmod('/f', 0o600);
    await r.afr.txns.settleAll();
    r.switches[1].restore();
    // No pass on CHILD_UP: the read is what finds the file behind on client-1.
    expect(await readAll(b, '/f')).toBe('new data');
    await quiet(r);
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('new data');
    expect(fs.statSync(path.join(r.dirs[1], 'f')).mode & 0o777).toBe(0o600);
    for (const d of r.dirs) expect(clear(changelogOf(d, 'f'))).toBe(true);
    expect(r.log()).toMatch(/healed data of \/f /);
    expect(r.log()).not.toMatch(/healed \w+ of \/g /);
  });
});

describe('answers while a copy is healed', () => {
  test('a change of metadata during the data heal of the first child answers with the current copy\'s attributes (not the sink\'s, cut to nothing)', async () => {
    const gate = (i: number) => (i === 0 ? `volume extra-0\n  type debug/gate\n  subvolumes index-0\nend-volume\n` : undefined);
    const r = await startReplica({ n: 2, perBrick: gate, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'old');
    await r.afr.txns.settleAll();
    r.switches[0].down();
    await writeFile(b, '/f', 'the data of the current copy');
    await r.afr.txns.settleAll();
    r.switches[0].restore();
    const inode = r.graph.itable.find((await b.getattr('/f')).gfid)!;
    const g = r.graph.xlators.get('extra-0') as import('../../xlators/debug/gate').Gate;
    // The heal cut client-0's copy to nothing and is about to grow it.
    const grow = g.hold('ftruncate', 'before', (args: unknown[]) => args[1] === 28);
    const pass = r.afr.heal.pass();
    await within(grow.reached);
    expect(fs.statSync(path.join(r.dirs[0], 'f')).size).toBe(0);
    const iatt = await within(r.afr.setattr(r.graph.frame('chmod', ROOT_CALLER), { inode }, { mode: 0o600 }));
    expect([iatt.size, iatt.mode & 0o777]).toEqual([28, 0o600]);
    grow.release();
    expect((await within(pass, 20_000)).healed).toBe(1);
  });
});

describe('a large file', () => {
  test('the data lock is given back between windows of the copy: a write waiting for it lands before the heal ends, on every copy', async () => {
    const gate = (i: number) => (i === 1 ? `volume extra-1\n  type debug/gate\n  subvolumes index-1\nend-volume\n` : undefined);
    const r = await startReplica({ n: 2, perBrick: gate, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/big', '');
    await r.afr.txns.settleAll();
    r.switches[1].down();
    const fh = await b.open('/big', O_RDWR);
    const MiB = 1024 * 1024;
    for (let i = 0; i < 40; i++) await b.write('/big', fh, Buffer.alloc(MiB, 1 + (i % 200)), i * MiB);
    await r.afr.txns.settleAll();
    r.switches[1].restore();
    const g = r.graph.xlators.get('extra-1') as import('../../xlators/debug/gate').Gate;
    const at = (off: number) => (args: unknown[]) => args[2] === off;
    const first = g.hold('write', 'before', at(16 * MiB));
    const second = g.hold('write', 'before', at(36 * MiB));
    const pass = r.afr.heal.pass();
    await within(first.reached);
    // Waits for the heal's lock.
    const write = b.write('/big', fh, Buffer.from('written during the heal'), 100);
    first.release();
    await within(second.reached);
    // The heal is past its first window and holds the lock again: the write got its turn in between.
    expect(await within(write)).toBe(23);
    second.release();
    const done = await within(pass, 30_000);
    expect(done.healed).toBe(1);
    await b.release('/big', fh);
    await r.afr.txns.settleAll();
    const copies = r.dirs.map((d) => fs.readFileSync(path.join(d, 'big')));
    expect(copies[0].subarray(100, 123).toString()).toBe('written during the heal');
    expect(copies[1].equals(copies[0])).toBe(true);
  });
});

describe('changes cut short', () => {
  test('dirty markers and no accusation: data healed from the largest copy, entries merged (nothing removed)', async () => {
    const r = await startReplica({ n: 2, options: '  option self-heal-daemon off\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'short');
    await b.mkdir('/d', 0o755);
    await r.afr.txns.settleAll();
    // As if a client died mid-write and mid-create: each copy dirty, one longer, a name on one side only.
    const dirty = (p: string, slot: number) => {
      const v = Buffer.alloc(12);
      v.writeInt32BE(1, slot * 4);
      execFileSync('setfattr', ['-h', '-n', 'trusted.xlstack.afr.dirty', '-v', `0x${v.toString('hex')}`, p]);
    };
    fs.writeFileSync(path.join(r.dirs[1], 'f'), 'longer data');
    for (const d of r.dirs) dirty(path.join(d, 'f'), 0);
    fs.writeFileSync(path.join(r.dirs[0], 'd', 'only-on-0'), 'zero');
    fs.writeFileSync(path.join(r.dirs[1], 'd', 'only-on-1'), 'one');
    for (const d of r.dirs) dirty(path.join(d, 'd'), 2);
    const pass = await within(r.afr.heal.full(), 20_000);
    expect(pass.splitBrain).toEqual([]);
    await quiet(r);
    for (const d of r.dirs) {
      expect(fs.readFileSync(path.join(d, 'f'), 'utf8')).toBe('longer data');
      expect(fs.readdirSync(path.join(d, 'd')).sort()).toEqual(['only-on-0', 'only-on-1']);
    }
    expectSame(r);
  });
});
