// cluster/replicate transactions over in-process bricks: changes reach every copy with the
// same GFIDs, the changelog says nothing once they are done, a copy that misses a change is
// recorded as behind on the others before the change is answered, reads never come from it,
// and two clients' changes to one file are serialised (no deadlock, nothing lost).
import * as fs from 'fs';
import * as path from 'path';
import { cleanupGraphs, errCode, newBridge, readAll, within, writeFile } from '../helpers/graphs';
import { changelogOf, clear, indexed, startReplica, stopReplicas } from '../helpers/replica';

afterEach(async () => {
  await stopReplicas();
  await cleanupGraphs();
});

const { O_RDWR, O_RDONLY } = fs.constants;
/** A GFID in hex as its uuid form. */
const uuid = (hex: string) => hex.replace(/^(.{8})(.{4})(.{4})(.{4})/, '$1-$2-$3-$4-');
const gfidOf = (file: string) => require('child_process').execFileSync('getfattr', ['-h', '--absolute-names', '-n', 'trusted.gfid', '-e', 'hex', '--only-values', file]).toString('hex');

describe('changes reach every copy', () => {
  test('create, write, mkdir, symlink, rename, link, setattr, xattrs: identical copies, same GFIDs, clear changelogs', async () => {
    const r = await startReplica({ n: 3 });
    const b = newBridge(r.graph);
    await b.mkdir('/d', 0o750);
    await writeFile(b, '/d/f', 'hello replica');
    await b.symlink('f', '/d/l');
    await b.link('/d/f', '/d/hard');
    await b.rename('/d/f', '/d/g');
    await b.chmod('/d/g', 0o600);
    await b.setxattr('/d/g', 'user.k', Buffer.from('v'), 0);
    await r.afr.txns.settleAll();
    for (const d of r.dirs) {
      expect(fs.readFileSync(path.join(d, 'd/g'), 'utf8')).toBe('hello replica');
      expect(fs.statSync(path.join(d, 'd/g')).mode & 0o777).toBe(0o600);
      expect(fs.statSync(path.join(d, 'd')).mode & 0o777).toBe(0o750);
      expect(fs.readlinkSync(path.join(d, 'd/l'))).toBe('f');
      expect(fs.statSync(path.join(d, 'd/hard')).ino).toBe(fs.statSync(path.join(d, 'd/g')).ino);
      expect(fs.existsSync(path.join(d, 'd/f'))).toBe(false);
      expect(gfidOf(path.join(d, 'd/g'))).toBe(gfidOf(path.join(r.dirs[0], 'd/g')));
      expect(gfidOf(path.join(d, 'd'))).toBe(gfidOf(path.join(r.dirs[0], 'd')));
      for (const f of ['d', 'd/g', '']) expect(clear(changelogOf(d, f))).toBe(true);
      expect(indexed(d)).toEqual([]);
    }
    expect(await readAll(b, '/d/g')).toBe('hello replica');
    // One inode number whichever copy answers.
    expect((await b.getattr('/d/g')).ino).toBe((await b.getattr('/d/hard')).ino);
  });

  test('a write on a fd while a child is down: recorded against it on the others before it is answered; never read from it', async () => {
    // No heal here: what the transaction leaves is what is checked.
    const r = await startReplica({ n: 2, options: '  option read-subvolume client-1\n  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'v1');
    const fh = await b.open('/f', O_RDWR);
    r.switches[1].down();
    expect(await b.write('/f', fh, Buffer.from('v2'), 0)).toBe(2);
    // Answered: the record is already on client-0's copy (the session's dirty mark too, until it ends).
    expect(changelogOf(r.dirs[0], 'f')['pending.client-1'][0]).toBeGreaterThan(0);
    expect(indexed(r.dirs[0])).toContain(uuid(gfidOf(path.join(r.dirs[0], 'f'))));
    r.switches[1].restore();
    // client-1 is preferred for reads, but it is behind: the read comes from client-0.
    expect((await b.read('/f', fh, 10, 0)).toString()).toBe('v2');
    await b.release('/f', fh);
    await r.afr.txns.settleAll();
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('v1');
    const log = changelogOf(r.dirs[0], 'f');
    expect(log.dirty).toEqual([0, 0, 0]);
    expect(log['pending.client-1']).toEqual([1, 0, 0]);
  });

  test('a write that fails on one child (an I/O error there): answered from the other, that copy accuses itself and is healed', async () => {
    const failing = (i: number) => (i === 1 ? `volume extra-1\n  type debug/error-gen\n  option enable write\n  option error-no EIO\n  subvolumes index-1\nend-volume\n` : undefined);
    const r = await startReplica({ n: 2, perBrick: failing, options: '  option read-subvolume client-1\n  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'written');
    await r.afr.txns.settleAll();
    // client-1 took part and failed: every copy that took part says so, client-1's own included (it is not believed).
    expect(changelogOf(r.dirs[0], 'f')['pending.client-1']).toEqual([1, 0, 0]);
    expect(changelogOf(r.dirs[1], 'f')['pending.client-1']).toEqual([1, 0, 0]);
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('');
    // Preferred for reads, but behind: not read. A fresh client judges the same from the changelogs.
    expect(await readAll(b, '/f')).toBe('written');
    const c = await startReplica({ dirs: r.dirs, options: '  option read-subvolume client-1\n  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    expect(await readAll(newBridge(c.graph), '/f')).toBe('written');
    const pass = await within(c.afr.heal.pass(), 20_000);
    expect(pass.healed).toBe(1);
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('written');
    for (const d of r.dirs) expect(clear(changelogOf(d, 'f'))).toBe(true);
  });

  test('a change no copy can take fails with the copies\' errno and records nothing', async () => {
    const r = await startReplica({ n: 2 });
    const b = newBridge(r.graph);
    await b.mkdir('/d', 0o755);
    expect(await errCode(b.mkdir('/d', 0o755))).toBe('EEXIST');
    expect(await errCode(b.rmdir('/nope'))).toBe('ENOENT');
    await r.afr.txns.settleAll();
    for (const d of r.dirs) expect(clear(changelogOf(d, ''))).toBe(true);
  });

  test('every child down: ENOTCONN; a change while one of two is down, with quorum auto and the first down: ENOTCONN, nothing changed', async () => {
    const r = await startReplica({ n: 2, options: '  option quorum-type auto\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'kept');
    r.switches[0].down();
    expect(await errCode(writeFile(b, '/g', 'x'))).toBe('ENOTCONN');
    expect(await errCode(b.chmod('/f', 0o600))).toBe('ENOTCONN');
    // Reads need no quorum.
    expect(await readAll(b, '/f')).toBe('kept');
    r.switches[1].down();
    expect(await errCode(b.getattr('/f'))).toBe('ENOTCONN');
    r.switches[0].restore();
    r.switches[1].restore();
    expect(fs.existsSync(path.join(r.dirs[1], 'g'))).toBe(false);
    expect(fs.statSync(path.join(r.dirs[1], 'f')).mode & 0o777).toBe(0o644);
  });
});

describe('lookups merge the copies', () => {
  test('a name unlinked, replaced or made while a copy was away: answered as the current copies have it, not as the one behind', async () => {
    const r = await startReplica({ n: 2, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const b = newBridge(r.graph);
    await writeFile(b, '/gone', 'old');
    await writeFile(b, '/replaced', 'old');
    await r.afr.txns.settleAll();
    r.switches[0].down();
    await b.unlink('/gone');
    await b.unlink('/replaced');
    await writeFile(b, '/replaced', 'new object');
    await writeFile(b, '/made', 'new');
    await r.afr.txns.settleAll();
    r.switches[0].restore();
    // Another client, which saw none of it: only the directory's changelog tells.
    const c = await startReplica({ dirs: r.dirs, options: '  option self-heal-daemon off\n  option background-self-heal-count 0\n' });
    const cb = newBridge(c.graph);
    expect(await errCode(cb.getattr('/gone'))).toBe('ENOENT');
    expect(await readAll(cb, '/replaced')).toBe('new object');
    expect(await readAll(cb, '/made')).toBe('new');
    // client-0 still has its old copies: nothing was healed.
    expect(fs.readFileSync(path.join(r.dirs[0], 'gone'), 'utf8')).toBe('old');
    expect(fs.readFileSync(path.join(r.dirs[0], 'replaced'), 'utf8')).toBe('old');
  });
});

describe('two clients', () => {
  test('creates, renames and unlinks in one directory from two clients at once: each waits its turn for the directory, every copy the same', async () => {
    const a = await startReplica({ n: 2 });
    const c = await startReplica({ dirs: a.dirs });
    const ba = newBridge(a.graph);
    const bc = newBridge(c.graph);
    await ba.mkdir('/d', 0o755);
    const work = (b: typeof ba, who: string) =>
      (async () => {
        for (let i = 0; i < 15; i++) {
          await writeFile(b, `/d/${who}${i}`, `${who}${i}`);
          if (i % 3 === 0) await b.rename(`/d/${who}${i}`, `/d/${who}${i}-moved`);
          if (i % 5 === 0) await b.unlink(`/d/${who}${i}${i % 3 === 0 ? '-moved' : ''}`);
        }
      })();
    await within(Promise.all([work(ba, 'a'), work(bc, 'c')]), 60_000);
    await a.afr.txns.settleAll();
    await c.afr.txns.settleAll();
    const names = a.dirs.map((d) => fs.readdirSync(path.join(d, 'd')).sort());
    expect(names[0].length).toBe(24);
    expect(names[1]).toEqual(names[0]);
    for (const d of a.dirs) expect(clear(changelogOf(d, 'd'))).toBe(true);
  });

  test('concurrent writes to one file from two clients: serialised by the bricks\' locks, every copy the same, no deadlock', async () => {
    const a = await startReplica({ n: 3 });
    const c = await startReplica({ dirs: a.dirs });
    const ba = newBridge(a.graph);
    const bc = newBridge(c.graph);
    await writeFile(ba, '/f', '');
    const fa = await ba.open('/f', O_RDWR);
    const fc = await bc.open('/f', O_RDWR);
    const writes: Promise<number>[] = [];
    for (let i = 0; i < 40; i++) {
      writes.push(ba.write('/f', fa, Buffer.alloc(100, 65 + (i % 26)), i * 100));
      writes.push(bc.write('/f', fc, Buffer.alloc(100, 97 + (i % 26)), i * 100 + 4000));
    }
    await within(Promise.all(writes), 30_000);
    await ba.release('/f', fa);
    await bc.release('/f', fc);
    await a.afr.txns.settleAll();
    await c.afr.txns.settleAll();
    const copies = a.dirs.map((d) => fs.readFileSync(path.join(d, 'f')));
    expect(copies[0].length).toBe(8000);
    for (const x of copies) expect(x.equals(copies[0])).toBe(true);
    for (const d of a.dirs) expect(clear(changelogOf(d, 'f'))).toBe(true);
    const fb = await ba.open('/f', O_RDONLY);
    expect((await ba.read('/f', fb, 8000, 0)).equals(copies[0])).toBe(true);
    await ba.release('/f', fb);
  });
});
