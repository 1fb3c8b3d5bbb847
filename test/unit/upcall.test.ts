// features/upcall and its path to the clients: in this process, a brick (storage/posix,
// features/upcall, protocol/server) and client graphs (protocol/client, each its own process
// identity, md-cache on some). A client that touched an object is told when another changes
// it (attributes, data, names), the one that changed it is not, a client that never touched
// it or touched it longer ago than cache-invalidation-timeout (a ManualClock) is not; a
// client that did not ask for upcalls never gets the frame; a lost connection is an upcall
// for everything; a brick's graph switch keeps who touched what.
import * as fs from 'fs';
import { v4 as uuidv4 } from 'uuid';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Registry } from '../../src/core/registry';
import type { Iatt } from '../../src/core/types';
import type { Upcall } from '../../src/core/upcall';
import { Backoff } from '../../src/rpc/backoff';
import { Kind } from '../../src/rpc/frame';
import { checkUpcall } from '../../src/rpc/wire';
import { upcall as upcallDef } from '../../xlators/features/upcall';
import { serverLogin } from '../helpers/brick';
import { ManualClock } from '../helpers/clock';
import { cleanupGraphs, errCode, tempDir, within } from '../helpers/graphs';
import { waitFor } from '../helpers/mount';
import { NetGraph, startBrickGraph, startClientGraph, stopNetGraphs } from '../helpers/protocol';
import { RawConn, closeRawConns } from '../helpers/raw-peer';
import { freePort } from '../helpers/brick';

afterEach(async () => {
  closeRawConns();
  await stopNetGraphs();
  await cleanupGraphs();
});

const brickText = (dir: string, port: number, upcallOptions = '') => `volume brick-posix
    type storage/posix
    option directory ${dir}
end-volume
volume brick-upcall
    type features/upcall
${upcallOptions}    subvolumes brick-posix
end-volume
volume brick-server
    type protocol/server
    option listen-port ${port}
${serverLogin('brick-upcall')}    subvolumes brick-upcall
end-volume
`;

interface Brick {
  readonly dir: string;
  readonly port: number;
  readonly clock: ManualClock;
  readonly net: NetGraph;
}

async function brick(upcallOptions = '', dir = tempDir('xlstack-upcall-'), port?: number, clock = new ManualClock()): Promise<Brick> {
  const p = port ?? (await freePort());
  const registry = new Registry();
  registry.register(upcallDef(clock));
  const net = await startBrickGraph(brickText(dir, p, upcallOptions), registry);
  return { dir, port: p, clock, net };
}

interface Client {
  readonly graph: Graph;
  /** Every upcall that reached the top of its graph. */
  readonly upcalls: Upcall[];
  lookup(name: string, parent?: Inode): Promise<{ inode: Inode; iatt: Iatt }>;
  stat(inode: Inode): Promise<Iatt>;
  create(name: string, parent?: Inode): Promise<Inode>;
  write(inode: Inode, data: string, offset?: number): Promise<void>;
}

let processes = 0;

/** A client graph of its own process identity (as another machine would be), md-cache on top if asked. */
async function client(b: Brick, opts: { mdCache?: boolean; fast?: boolean } = {}): Promise<Client> {
  const above = opts.mdCache ? 'volume cache\n    type performance/md-cache\n    option md-cache-timeout 600\n    subvolumes remote\nend-volume\n' : '';
  const deps = opts.fast ? { backoff: new Backoff({ initialMs: 10, maxMs: 10, jitter: 0 }) } : undefined;
  const net = await startClientGraph(b.port, { volume: 'brick-upcall', extra: `    option process-uuid upcall-test-${++processes}\n`, above, deps });
  expect(net.started).toBe('up');
  const g = net.graph;
  const upcalls: Upcall[] = [];
  g.upcall$.subscribe((u) => upcalls.push(u));
  const top = () => g.top;
  const root = g.itable.root;
  return {
    graph: g,
    upcalls,
    async lookup(name, parent = root) {
      const iatt = await top().lookup(g.frame('lookup'), { parent, name });
      return { inode: g.itable.link(iatt, parent, name), iatt };
    },
    stat: (inode) => top().stat(g.frame('stat'), { inode }),
    async create(name, parent = root) {
      const inode = g.itable.get(uuidv4());
      const fd = g.newFd(inode, fs.constants.O_RDWR, false);
      const iatt = await top().create(g.frame('create'), { parent, name, inode }, 0o644, fd);
      await fd.unref();
      return g.itable.link(iatt, parent, name);
    },
    async write(inode, data, offset = 0) {
      const fd = g.newFd(inode, fs.constants.O_RDWR, false);
      await top().open(g.frame('open'), { inode }, fd);
      await top().write(g.frame('write'), fd, Buffer.from(data), offset);
      await top().flush(g.frame('flush'), fd);
      await fd.unref();
    },
  };
}

/** Waits (bounded) until `c` was told of `gfid`; returns what it was told. */
async function told(c: Client, gfid: string | undefined): Promise<Upcall> {
  await waitFor(() => c.upcalls.some((u) => u.gfid === gfid), 5000, `an upcall for ${gfid ?? 'everything'}`);
  return c.upcalls.find((u) => u.gfid === gfid)!;
}

/** A round trip on `c`'s connection after the upcalls sent so far: they have arrived (one connection keeps order). */
async function roundTrip(c: Client): Promise<void> {
  await c.graph.top.statfs(c.graph.frame('statfs'), { inode: c.graph.itable.root });
}

test('a client that touched a file is told when another changes it; the one that changed it and one that never touched it are not', async () => {
  const b = await brick();
  const [a, bb, c] = [await client(b), await client(b), await client(b)];
  const f = await a.create('f');
  await bb.lookup('f');
  await a.write(f, 'hello');
  const u = await told(bb, f.gfid);
  expect(u).toMatchObject({ gfid: f.gfid, attrs: true, data: true });
  expect(u.client).toBeUndefined();
  await roundTrip(a);
  await roundTrip(c);
  expect(a.upcalls.filter((x) => x.gfid === f.gfid)).toEqual([]);
  expect(c.upcalls.filter((x) => x.gfid === f.gfid)).toEqual([]);
});

test('names: a client that found no such name is told when another makes it, and when it goes', async () => {
  const b = await brick();
  const [a, bb] = [await client(b), await client(b)];
  const root = bb.graph.itable.root.gfid;
  expect(await errCode(bb.lookup('later'))).toBe('ENOENT');
  await a.create('later');
  const made = await told(bb, root);
  expect(made).toMatchObject({ gfid: root, attrs: true, entries: [{ parent: root, name: 'later' }] });
  bb.upcalls.length = 0;
  await bb.lookup('later');
  await a.graph.top.unlink(a.graph.frame('unlink'), { parent: a.graph.itable.root, name: 'later', inode: a.graph.itable.child(a.graph.itable.root, 'later')?.inode });
  await told(bb, root);
  expect(bb.upcalls.find((x) => x.gfid === root)!.entries).toEqual([{ parent: root, name: 'later' }]);
});

test('a rename in one directory is one upcall naming both names', async () => {
  const b = await brick();
  const [a, bb] = [await client(b), await client(b)];
  const root = a.graph.itable.root;
  await a.create('x');
  await bb.lookup('x');
  await a.graph.top.rename(a.graph.frame('rename'), { parent: root, name: 'x', inode: a.graph.itable.child(root, 'x')?.inode }, { parent: root, name: 'y' }, 0);
  const u = await told(bb, root.gfid);
  expect(u.entries).toEqual([
    { parent: root.gfid, name: 'x' },
    { parent: root.gfid, name: 'y' },
  ]);
});

test('a client that touched a file longer ago than cache-invalidation-timeout is not told', async () => {
  const b = await brick('    option cache-invalidation-timeout 10\n');
  const [a, bb, c] = [await client(b), await client(b), await client(b)];
  const f = await a.create('f');
  await bb.lookup('f');
  b.clock.advance(9000);
  await c.lookup('f');
  b.clock.advance(1001);
  await a.write(f, 'x');
  await told(c, f.gfid);
  await roundTrip(bb);
  expect(bb.upcalls.filter((u) => u.gfid === f.gfid)).toEqual([]);
});

test('inode-limit: an object the brick stops following is dropped by the clients that hold it (they could not be told of it any more)', async () => {
  const b = await brick('    option inode-limit 16\n');
  const [a, bb] = [await client(b), await client(b)];
  const first = await a.create('first');
  await bb.lookup('first');
  for (let i = 0; i < 20; i++) await a.create(`n${i}`);
  const u = await told(bb, first.gfid);
  expect(u).toMatchObject({ attrs: true, data: true, xattrs: true });
  expect(b.net.graph.xlators.get('brick-upcall')!.dump()).toMatchObject({ objects: 16 });
  expect((b.net.graph.xlators.get('brick-upcall')!.dump().forgotten as number) > 0).toBe(true);
});

test('cache-invalidation off: nobody is told', async () => {
  const b = await brick('    option cache-invalidation off\n');
  const [a, bb] = [await client(b), await client(b)];
  const f = await a.create('f');
  await bb.lookup('f');
  await a.write(f, 'x');
  await roundTrip(bb);
  expect(bb.upcalls).toEqual([]);
});

test('a peer that did not ask for upcalls in its HELLO never gets the frame; one that did, does', async () => {
  const b = await brick();
  const a = await client(b);
  const f = await a.create('f');
  const peers: RawConn[] = [];
  for (const upcalls of [false, true]) {
    const conn = await RawConn.open(b.port);
    const hello = await conn.call(Kind.HELLO, { ...(await conn.helloBody('brick-upcall')), process: `raw-${upcalls}`, upcalls });
    expect((hello?.body as { ok: boolean }).ok).toBe(true);
    const r = await conn.request('lookup', [{ gfid: f.gfid }]);
    expect(r?.ok).toBe(true);
    peers.push(conn);
  }
  await a.write(f, 'x');
  await waitFor(() => peers[1].unsolicited.some((fr) => fr.kind === Kind.UPCALL), 5000, 'the upcall on the peer that asked');
  expect(peers[1].unsolicited.find((fr) => fr.kind === Kind.UPCALL)!.body).toMatchObject({ gfid: f.gfid, data: true });
  // Its connection answers in order: a reply after the upcall means nothing more is coming.
  expect((await peers[0].request('lookup', [{ gfid: f.gfid }]))?.ok).toBe(true);
  expect(peers[0].unsolicited.filter((fr) => fr.kind === Kind.UPCALL)).toEqual([]);
});

test('md-cache on a client follows another client\'s changes at once, with a timeout of 600 s', async () => {
  const b = await brick();
  const a = await client(b);
  const bb = await client(b, { mdCache: true });
  const f = await a.create('f');
  const { inode } = await bb.lookup('f');
  expect((await bb.stat(inode)).size).toBe(0);
  const cache = bb.graph.xlators.get('cache')!;
  const hits = cache.dump().hits as number;
  expect((await bb.stat(inode)).size).toBe(0);
  expect(cache.dump().hits).toBe(hits + 1); // answered from the cache
  await a.write(f, 'twelve bytes');
  await told(bb, f.gfid);
  expect((await bb.stat(inode)).size).toBe(12);
});

test('a lost connection is an upcall for everything, when it goes and when it comes back', async () => {
  const b = await brick();
  const c = await client(b, { fast: true });
  expect(c.upcalls).toEqual([]);
  await within(b.net.graph.stop(10_000), 15_000);
  await waitFor(() => c.upcalls.length === 1, 5000, 'the upcall for everything when the brick went');
  expect(c.upcalls[0]).toEqual({ attrs: true, data: true, xattrs: true });
  await brick('', b.dir, b.port);
  await waitFor(() => c.upcalls.length === 2, 5000, 'the upcall for everything when the brick came back');
  expect(c.upcalls[1].gfid).toBeUndefined();
});

test('a brick\'s graph switch keeps who touched what: a client still on the old graph is told of a change through the new one', async () => {
  const b = await brick();
  const old = await client(b);
  const f = await old.create('f');
  await old.lookup('f');
  // A second graph of the brick's volfile (a switch): it takes the port over, the old one keeps its connections.
  const registry = new Registry();
  registry.register(upcallDef(b.clock));
  await startBrickGraph(brickText(b.dir, b.port), registry);
  const fresh = await client(b);
  const { inode } = await fresh.lookup('f');
  await fresh.write(inode, 'through the new graph');
  expect(await told(old, f.gfid)).toMatchObject({ data: true });
});

test('an upcall frame is checked like a request: GFIDs, names, flags, at most 64 entries', () => {
  const g = uuidv4();
  expect(checkUpcall({ gfid: g, attrs: true, entries: [{ parent: g, name: 'n\xff' }] })).toEqual({ gfid: g, attrs: true, data: undefined, xattrs: undefined, entries: [{ parent: g, name: 'n\xff' }] });
  expect(checkUpcall({ attrs: true, data: true })).toMatchObject({ gfid: undefined });
  for (const bad of [null, 'x', { gfid: 'not-a-gfid' }, { attrs: 'yes' }, { entries: [{ parent: g, name: '\u0100' }] }, { entries: [{ parent: 'x', name: 'a' }] }, { entries: Array(65).fill({ parent: g, name: 'a' }) }]) {
    expect(checkUpcall(bad)).toBeUndefined();
  }
});
