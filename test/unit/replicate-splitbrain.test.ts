// Split brain: each side changed while the other was away. It is detected (reads fail with
// EIO, the log names the file), never resolved by guess (heal leaves it, heal info lists
// it), and resolved when a source is named. A client that knows the only copy up is behind
// refuses to write there (it would make a split brain).
import * as fs from 'fs';
import * as path from 'path';
import { cleanupGraphs, errCode, newBridge, readAll, within, writeFile } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { ReplicaSet, changelogOf, clear, indexed, startReplica, stopReplicas } from '../helpers/replica';

afterEach(async () => {
  await stopReplicas();
  await cleanupGraphs();
});

const NO_BACKGROUND = '  option self-heal-daemon off\n  option background-self-heal-count 0\n';

const info = async (r: ReplicaSet) => JSON.parse((await newBridge(r.graph).getxattr('/', 'xlstack.replicate.heal-info')).toString());

/**
 * Makes /f a split brain: written with client-1 away, then (by another client, which does
 * not know) with client-0 away. Returns the first client, with both children up again.
 */
async function splitBrain(kind: 'data' | 'metadata'): Promise<ReplicaSet> {
  const r = await startReplica({ n: 2, options: NO_BACKGROUND });
  const b = newBridge(r.graph);
  await writeFile(b, '/f', 'original');
  await r.afr.txns.settleAll();
  r.switches[1].down();
  if (kind === 'data') await writeFile(b, '/f', 'side zero');
  else await b.chmod('/f', 0o600);
  await r.afr.txns.settleAll();
  r.switches[0].down();
  r.switches[1].restore();
  // This client saw client-1 miss the change: it will not write there alone.
  if (kind === 'data') expect(await errCode(writeFile(b, '/f', 'x'))).toBe('EIO');
  const other = await startReplica({ dirs: r.dirs, options: NO_BACKGROUND });
  other.switches[0].down();
  const ob = newBridge(other.graph);
  if (kind === 'data') await writeFile(ob, '/f', 'side one!');
  else await ob.chmod('/f', 0o640);
  await other.afr.txns.settleAll();
  r.switches[0].restore();
  return r;
}

describe('split brain', () => {
  test('data: reads fail with EIO and the log names the file; heal leaves it and lists it; resolving with a source makes every copy that one', async () => {
    const r = await splitBrain('data');
    const b = newBridge(r.graph);
    // Fresh eyes: a third client judges only by the changelogs.
    const c = await startReplica({ dirs: r.dirs, options: NO_BACKGROUND });
    const cb = newBridge(c.graph);
    expect(await errCode(readAll(cb, '/f'))).toBe('EIO');
    expect(c.log()).toMatch(/split brain: \/f \([0-9a-f-]{36}\): data changed on each side/);
    expect((await cb.getattr('/f')).size).toBeGreaterThan(0);
    const pass = await within(c.afr.heal.pass(), 20_000);
    expect([pass.splitBrain, c.log()]).toEqual([[expect.any(String)], expect.anything()]);
    expect(fs.readFileSync(path.join(r.dirs[0], 'f'), 'utf8')).toBe('side zero');
    expect(fs.readFileSync(path.join(r.dirs[1], 'f'), 'utf8')).toBe('side one!');
    const listed = await info(c);
    expect(listed.entries).toEqual([expect.objectContaining({ type: 'file', pending: { data: 'split-brain' } })]);
    // Resolved by naming the source.
    expect(await errCode(cb.setxattr('/f', 'xlstack.replicate.split-brain-source', Buffer.from('client-9'), 0))).toBe('EINVAL');
    await cb.setxattr('/f', 'xlstack.replicate.split-brain-source', Buffer.from('client-1'), 0);
    expect(await readAll(cb, '/f')).toBe('side one!');
    for (const d of r.dirs) {
      expect(fs.readFileSync(path.join(d, 'f'), 'utf8')).toBe('side one!');
      expect(clear(changelogOf(d, 'f'))).toBe(true);
      expect(indexed(d)).toEqual([]);
    }
    expect((await info(c)).entries).toEqual([]);
    // The first client, which had its own idea, judges again and reads too.
    expect(await readAll(b, '/f')).toBe('side one!');
    // Not in split brain any more: the command says so.
    expect(await errCode(cb.setxattr('/f', 'xlstack.replicate.split-brain-source', Buffer.from('client-0'), 0))).toBe('EINVAL');
  });

  test('metadata: detected and resolved the same way', async () => {
    const r = await splitBrain('metadata');
    const c = await startReplica({ dirs: r.dirs, options: NO_BACKGROUND });
    const cb = newBridge(c.graph);
    expect(await errCode(cb.getxattr('/f', 'user.x'))).toBe('EIO');
    expect((await info(c)).entries).toEqual([expect.objectContaining({ pending: { metadata: 'split-brain' } })]);
    await cb.setxattr('/f', 'xlstack.replicate.split-brain-source', Buffer.from('client-0'), 0);
    for (const d of r.dirs) expect(fs.statSync(path.join(d, 'f')).mode & 0o777).toBe(0o600);
  });

  test('a name made on each side with different objects: EIO on lookup, resolved on the directory', async () => {
    const r = await startReplica({ n: 2, options: NO_BACKGROUND });
    r.switches[1].down();
    await writeFile(newBridge(r.graph), '/n', 'zero');
    await r.afr.txns.settleAll();
    r.switches[0].down();
    const o = await startReplica({ dirs: r.dirs, options: NO_BACKGROUND });
    o.switches[0].down();
    await writeFile(newBridge(o.graph), '/n', 'one');
    await o.afr.txns.settleAll();
    const c = await startReplica({ dirs: r.dirs, options: NO_BACKGROUND });
    const cb = newBridge(c.graph);
    expect(await errCode(cb.getattr('/n'))).toBe('EIO');
    expect(c.log()).toContain('names different objects on different copies');
    await cb.setxattr('/', 'xlstack.replicate.split-brain-source', Buffer.from('client-0'), 0);
    await waitFor(() => c.afr.heal.quiet, 20_000, 'the heal of what the resolution made');
    expect(await readAll(cb, '/n')).toBe('zero');
    for (const d of r.dirs) expect(fs.readFileSync(path.join(d, 'n'), 'utf8')).toBe('zero');
  });

  test('not by the root: EPERM', async () => {
    const r = await startReplica({ n: 2, options: NO_BACKGROUND });
    const frame = r.graph.frame('x', { uid: 1000, gid: 1000, groups: [], pid: 1 });
    expect(await errCode(r.graph.top.getxattr(frame, { inode: r.root() }, 'xlstack.replicate.heal-info'))).toBe('EPERM');
  });
});

describe('quorum prevents it', () => {
  test('quorum-type auto with two children: with the first down, nothing is written (ENOTCONN), so no split brain can start', async () => {
    const r = await startReplica({ n: 2, options: `${NO_BACKGROUND}  option quorum-type auto\n` });
    const b = newBridge(r.graph);
    await writeFile(b, '/f', 'v1');
    r.switches[1].down();
    await writeFile(b, '/f', 'v2');
    r.switches[0].down();
    r.switches[1].restore();
    const o = await startReplica({ dirs: r.dirs, options: `${NO_BACKGROUND}  option quorum-type auto\n` });
    o.switches[0].down();
    const ob = newBridge(o.graph);
    expect(await errCode(writeFile(ob, '/f', 'v3'))).toBe('ENOTCONN');
    expect(o.log()).toContain('client quorum is not met');
    r.switches[0].restore();
    o.switches[0].restore();
    const pass = await within(r.afr.heal.pass(), 20_000);
    expect(pass.splitBrain).toEqual([]);
    for (const d of r.dirs) expect(fs.readFileSync(path.join(d, 'f'), 'utf8')).toBe('v2');
  });

  test('three children, quorum auto: one down is fine, two down is not', async () => {
    const r = await startReplica({ n: 3, options: `${NO_BACKGROUND}  option quorum-type auto\n` });
    const b = newBridge(r.graph);
    r.switches[0].down();
    await writeFile(b, '/a', 'ok');
    r.switches[2].down();
    expect(await errCode(writeFile(b, '/b', 'no'))).toBe('ENOTCONN');
    expect(await readAll(b, '/a')).toBe('ok');
  });
});
