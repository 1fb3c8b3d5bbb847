// cluster/distribute over bricks (protocol/client to in-process brick graphs): blocking
// internal locks over the wire wait as long as their connection lives and are cancelled on
// the brick when given up; a file migrates between bricks while an fd on it keeps working.
import * as fs from 'fs';
import * as path from 'path';
import { constants } from 'fs';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import { Flock, LOCK_TO_EOF } from '../../src/core/types';
import { sleep } from '../../src/core/time';
import { VIRTUAL } from '../../xlators/cluster/distribute/index';
import { clientLogin, freePort, serverLogin } from '../helpers/brick';
import { cleanupGraphs, errCode, lookupInode, newBridge, tempDir, within, writeFile } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { NetGraph, startBrickGraph, startClientGraph, stopNetGraphs } from '../helpers/protocol';

afterEach(async () => {
  await stopNetGraphs();
  await cleanupGraphs();
});

const whole = (type: Flock['type']): Flock => ({ type, start: 0, end: LOCK_TO_EOF, pid: 0 });
const as = (g: Graph, owner: string): Frame => g.frame('x', { caller: { uid: 0, gid: 0, groups: [], pid: 0 }, lkOwner: owner });

let seq = 0;

/** A brick: posix under features/locks, served as volume `name`. */
async function brick(name: string): Promise<{ dir: string; port: number; graph: NetGraph }> {
  const dir = tempDir('xlstack-dht-brick-');
  const port = await freePort();
  const text = `volume ${name}-posix\n type storage/posix\n option directory ${dir}\nend-volume
volume ${name}\n type features/locks\n subvolumes ${name}-posix\nend-volume
volume ${name}-server\n type protocol/server\n option listen-port ${port}\n${serverLogin(name)} subvolumes ${name}\nend-volume\n`;
  return { dir, port, graph: await startBrickGraph(text) };
}

const remote = (name: string, port: number, volume: string, frame = 10) =>
  `volume ${name}\n type protocol/client\n option remote-port ${port}\n option remote-subvolume ${volume}\n${clientLogin()} option ping-timeout 2\n option frame-timeout ${frame}\nend-volume\n`;

test('a blocking internal lock over the wire outlives frame-timeout; an interrupt cancels it on the brick', async () => {
  const name = `wl${++seq}`;
  const b = await brick(name);
  fs.writeFileSync(path.join(b.dir, 'f'), 'x');
  const c = await startClientGraph(b.port, { volume: name, frame: 0.5 });
  const g = c.graph;
  const file = await lookupInode(g, g.itable.root, 'f');
  await g.top.inodelk(as(g, 'A'), 'dom', { inode: file }, 'set', whole('write'));
  const locks = () => (b.graph.graph.xlators.get(name)!.dump() as { inodelks: Record<string, { waiting: number; held: number }> }).inodelks.dom;
  // One wait is granted long after frame-timeout...
  const granted = g.top.inodelk(as(g, 'B'), 'dom', { inode: file }, 'wait', whole('write'));
  await waitFor(() => locks().waiting === 1, 5000, 'the wait to reach the brick');
  await sleep(1500); // three frame-timeouts
  await g.top.inodelk(as(g, 'A'), 'dom', { inode: file }, 'set', whole('unlock'));
  await expect(within(granted)).resolves.toMatchObject({ type: 'write' });
  // ...another is given up: interrupted here, cancelled there, nothing left waiting.
  const frame = as(g, 'C');
  const cancelled = errCode(g.top.inodelk(frame, 'dom', { inode: file }, 'wait', whole('write')));
  await waitFor(() => locks().waiting === 1, 5000, 'the second wait to reach the brick');
  frame.interrupt();
  expect(await cancelled).toBe('EINTR');
  await waitFor(() => locks().waiting === 0, 5000, 'the brick to drop the cancelled wait');
  expect(locks().held).toBe(1);
});

test('files spread over two bricks; after a third is added, those whose hash moved go there while fds on them write', async () => {
  const n = ++seq;
  const bricks = [await brick(`wa${n}`), await brick(`wb${n}`), await brick(`wc${n}`)];
  const dht = (k: number) =>
    `${bricks.slice(1, k).map((b, i) => remote(`r${i + 1}`, b.port, `w${'abc'[i + 1]}${n}`)).join('')}volume dht\n type cluster/distribute\n subvolumes ${['remote', ...bricks.slice(1, k).map((_, i) => `r${i + 1}`)].join(' ')}\nend-volume\n`;
  const two = await startClientGraph(bricks[0].port, { volume: `wa${n}`, above: dht(2) });
  expect(two.started).toBe('up');
  const b2 = newBridge(two.graph);
  await b2.mkdir('/d', 0o755);
  const files = Array.from({ length: 30 }, (_, i) => `/d/f${i}`);
  for (const p of files) await writeFile(b2, p, `${p};`);
  expect(bricks.slice(0, 2).map((b) => fs.readdirSync(path.join(b.dir, 'd')).length).every((k) => k > 5)).toBe(true);
  // The volume grown by a brick (as a reload does): fds opened before the rebalance.
  const three = await startClientGraph(bricks[0].port, { volume: `wa${n}`, above: dht(3) });
  const b3 = newBridge(three.graph);
  const fhs = new Map<string, number>();
  for (const p of files) fhs.set(p, await b3.open(p, constants.O_RDWR));
  expect(JSON.parse((await b3.getxattr('/d', VIRTUAL.fixLayout)).toString()).changed).toBe(true);
  const moved: string[] = [];
  for (const p of files) {
    const r = JSON.parse((await b3.getxattr(p, VIRTUAL.migrate)).toString());
    if (r.result === 'moved') moved.push(p);
    else expect(r).toMatchObject({ result: 'in-place' });
  }
  expect(moved.length).toBeGreaterThan(0);
  expect(fs.readdirSync(path.join(bricks[2].dir, 'd')).sort()).toEqual(moved.map((p) => p.slice(3)).sort());
  for (const [p, fh] of fhs) {
    expect(await b3.write(p, fh, Buffer.from('W'), 0)).toBe(1);
    expect((await b3.read(p, fh, 100, 0)).toString()).toBe(`W${p.slice(1)};`);
    await b3.release(p, fh);
  }
  const listed = (await b3.readdir('/d')).map((e) => e.name).filter((x) => x !== '.' && x !== '..');
  expect(listed.sort()).toEqual(files.map((p) => p.slice(3)).sort());
  expect(await errCode(b3.getattr(moved[0]))).toBe('OK');
});
