// The rebalance walk (src/cli/rebalance.ts) over an in-process distribute volume: it fixes
// every directory's layout and moves the files whose hash moved; draining repeats passes
// while files remain on the children being removed, and says how many are left.
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { rebalanceGraph } from '../../src/cli/rebalance';
import { cleanupGraphs, readAll, startGraph, tempDir, writeFile } from '../helpers/graphs';
import { dataOn, hashedOf, startDht } from './distribute-helpers';

afterEach(cleanupGraphs);

const log = Logger.create('error');
let seq = 0;

test('a grown volume: every directory gets the new child, every file ends on its hashed child, nothing is lost', async () => {
  const p = `rb${++seq}`;
  const small = await startDht(2, { prefix: p });
  const b = small.bridge;
  const files: string[] = [];
  for (const d of ['/a', '/a/b', '/c']) {
    await b.mkdir(d, 0o755);
    for (let i = 0; i < 25; i++) {
      files.push(`${d}/f${i}`);
      await writeFile(b, `${d}/f${i}`, `${d}/f${i}`);
    }
  }
  const grown = await startDht(3, { dirs: [...small.dirs, tempDir('xlstack-dht-new-')], prefix: p });
  const r = await rebalanceGraph(grown.graph, { remove: [], log });
  expect(r).toMatchObject({ directories: 4, layoutsChanged: 4, files: 75, failed: [], left: 0, passes: 1, skipped: {} });
  expect(r.moved + r.inPlace).toBe(75);
  expect(r.moved).toBeGreaterThan(10);
  for (const f of files) {
    expect(await readAll(grown.bridge, f)).toBe(f);
    const dir = path.dirname(f);
    expect(dataOn(grown.dirs, f.slice(1))).toEqual([await hashedOf(grown, dir, path.basename(f))]);
  }
  // Run again: nothing to do.
  const again = await rebalanceGraph(grown.graph, { remove: [], log });
  expect(again).toMatchObject({ moved: 0, inPlace: 75, layoutsChanged: 0 });
});

test('draining: the child ends empty; a file that cannot leave it is counted as left after the last pass', async () => {
  const v = await startDht(3, { prefix: `rb${++seq}` });
  const b = v.bridge;
  await b.mkdir('/d', 0o755);
  for (let i = 0; i < 40; i++) await writeFile(b, `/d/f${i}`, `${i}`);
  const r = await rebalanceGraph(v.graph, { remove: [v.names[1]], log });
  expect(r).toMatchObject({ left: 0, failed: [], passes: 1 });
  expect(fs.readdirSync(path.join(v.dirs[1], 'd'))).toEqual([]);
  for (let i = 0; i < 40; i++) expect(await readAll(b, `/d/f${i}`)).toBe(`${i}`);
  // A hard-linked file on child 0 stays there: draining child 0 leaves it.
  const onZero = (await Promise.all(Array.from({ length: 40 }, async (_, i) => ((await hashedOf(v, '/d', `f${i}`)) === 0 ? i : -1)))).find((i) => i >= 0)!;
  await b.link(`/d/f${onZero}`, '/d/second-name');
  const stuck = await rebalanceGraph(v.graph, { remove: [v.names[0]], log });
  expect(stuck.left).toBeGreaterThanOrEqual(1);
  expect(stuck.passes).toBe(3);
  expect(stuck.skipped['it has hard links']).toBeGreaterThanOrEqual(1);
});

test('a volume without distribute is refused with a clear message', async () => {
  const dir = tempDir();
  const g = await startGraph(dir, 77, `volume p\n type storage/posix\n option directory ${dir}\nend-volume\nvolume l\n type features/locks\n subvolumes p\nend-volume\n`);
  await expect(rebalanceGraph(g, { remove: [], log })).rejects.toThrow(/this volume has no cluster\/distribute to rebalance/);
});
