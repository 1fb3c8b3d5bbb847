// The caches across live graph switches, in-process through the bridge: a new graph starts
// with empty caches and never answers from them around what an older graph still holds (writes
// held back by write-behind there), an old graph's caches are dropped when it goes down, and an
// options-only reload changes a cache in place.
import { constants } from 'fs';
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import { Bridge } from '../../src/fuse/bridge';
import { GraphSwitcher } from '../../src/fuse/switcher';
import { cleanupGraphs, tempDir } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';

const { O_RDWR, O_RDONLY } = constants;

/** The client caches over write-behind (its writes held until flushed); `extra` volumes on top. */
const cached = (mdTimeout: string, extra = '') => (dir: string) => `volume posix
    type storage/posix
    option directory ${dir}
end-volume
volume wb
    type performance/write-behind
    option flush-after 0
    subvolumes posix
end-volume
volume ra
    type performance/read-ahead
    subvolumes wb
end-volume
volume rda
    type performance/readdir-ahead
    subvolumes ra
end-volume
volume ioc
    type performance/io-cache
    option cache-timeout 60
    subvolumes rda
end-volume
volume mdc
    type performance/md-cache
    option md-cache-timeout ${mdTimeout}
    subvolumes ioc
end-volume
${extra}`;

const withTrace = (mdTimeout: string) => cached(mdTimeout, 'volume top\n    type debug/trace\n    subvolumes mdc\nend-volume\n');

interface Setup {
  backing: string;
  switcher: GraphSwitcher;
  bridge: Bridge;
  write(text: string): void;
}

const setups: Setup[] = [];

async function setup(text: (backing: string) => string): Promise<Setup> {
  const dir = tempDir('xlstack-cswitch-');
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const volfile = path.join(dir, 'test.vol');
  const write = (t: string) => fs.writeFileSync(volfile, t);
  write(text(backing));
  const switcher = new GraphSwitcher({ volfile, registry: new Registry(), log: Logger.create('error'), startTimeoutMs: 5000, stopTimeoutMs: 5000 });
  const bridge = await switcher.start();
  const s = { backing, switcher, bridge, write };
  setups.push(s);
  return s;
}

afterEach(async () => {
  for (const s of setups.splice(0)) {
    for (const b of [...s.bridge.basefds.all()]) await s.bridge.release(b.path, b.id).catch(() => undefined);
    s.bridge.stopSweeping();
    await s.switcher.stopAll();
  }
  await cleanupGraphs();
});

async function readAll(b: Bridge, p: string): Promise<string> {
  const fh = await b.open(p, O_RDONLY);
  try {
    return (await b.read(p, fh, 1 << 20, 0)).toString();
  } finally {
    await b.release(p, fh);
  }
}

test('a switch while the old graph holds writes: the new graph\'s caches answer with them (size, data, listing)', async () => {
  const s = await setup(cached('600'));
  const fh = await s.bridge.create('/f', 0o644, O_RDWR);
  await s.bridge.write('/f', fh, Buffer.from('before'), 0);
  await s.bridge.flush('/f', fh);
  // Cached on graph 1, then a write graph 1's write-behind holds.
  expect((await s.bridge.getattr('/f')).size).toBe(6);
  await s.bridge.write('/f', fh, Buffer.from(' and after the switch'), 6);
  expect(fs.readFileSync(path.join(s.backing, 'f'), 'utf8')).toBe('before');
  s.write(withTrace('600')(s.backing));
  expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
  // Graph 2 looks the file up, its handle (on graph 1) catches up, the new caches follow.
  expect((await s.bridge.getattr('/f')).size).toBe(27);
  expect((await s.bridge.getattr('/f')).size).toBe(27);
  expect(await readAll(s.bridge, '/f')).toBe('before and after the switch');
  expect((await s.bridge.readdir('/')).find((e) => e.name === 'f')).toBeDefined();
  await s.bridge.release('/f', fh);
});

test('the old graph\'s caches are dropped when it goes down; the new graph\'s start empty', async () => {
  const s = await setup(cached('600'));
  fs.writeFileSync(path.join(s.backing, 'f'), 'cached on graph 1');
  expect(await readAll(s.bridge, '/f')).toBe('cached on graph 1');
  const g1 = s.switcher.graphs()[0];
  expect(g1.xlators.get('ioc')!.dump()).toMatchObject({ pages: 1 });
  expect(g1.xlators.get('mdc')!.dump().inodes as number).toBeGreaterThan(0);
  s.write(withTrace('600')(s.backing));
  expect(await s.switcher.reload()).toMatchObject({ action: 'switched', graph: 2 });
  await waitFor(() => g1.state === 'dead', 5000, 'graph 1 to be cleaned up');
  expect(g1.xlators.get('ioc')!.dump()).toMatchObject({ pages: 0, bytes: 0 });
  expect(g1.xlators.get('mdc')!.dump()).toMatchObject({ inodes: 0 });
  const g2 = s.switcher.graphs().find((g) => g.id === 2)!;
  expect(g2.xlators.get('ioc')!.dump()).toMatchObject({ pages: 0 });
  expect(await readAll(s.bridge, '/f')).toBe('cached on graph 1');
});

test('an options-only reload changes a cache in place: a shorter md-cache-timeout, a smaller io-cache', async () => {
  const s = await setup(cached('600'));
  fs.writeFileSync(path.join(s.backing, 'f'), 'x'.repeat(300_000));
  expect((await readAll(s.bridge, '/f')).length).toBe(300_000);
  const g = s.switcher.graphs()[0];
  expect(g.xlators.get('ioc')!.dump().bytes).toBe(300_000);
  s.write(cached('0')(s.backing).replace('option cache-timeout 60', 'option cache-timeout 60\n    option cache-size 128KB'));
  expect(await s.switcher.reload()).toMatchObject({ action: 'reconfigured', graph: 1 });
  expect(g.xlators.get('ioc')!.dump().bytes as number).toBeLessThanOrEqual(128 * 1024);
  expect(g.xlators.get('mdc')!.dump()).toMatchObject({ inodes: 0, 'md-cache-timeout': 0 });
  fs.writeFileSync(path.join(s.backing, 'f'), 'shorter');
  // Nothing cached any more: the change behind the graph's back is seen at once.
  expect((await s.bridge.getattr('/f')).size).toBe(7);
});
