// Upcalls reaching the top of a mount's graph go to the kernel as INVAL_INODE / INVAL_ENTRY,
// by the nodeids the kernel holds, never from where the upcall came (a socket's event) but
// from a callback of their own, one at a time, each queued once. Driven in-process: the
// kernel adapter over a real graph, the session replaced by a recording notifier.
import * as fs from 'fs';
import * as path from 'path';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import type { Upcall } from '../../src/core/upcall';
import type { BridgeCore } from '../../src/fuse/core';
import { DEFAULT_KERNEL_ADAPTER_OPTIONS, KernelAdapter } from '../../src/fuse/kernel/adapter';
import type { Request } from '../../src/fuse/kernel/fs';
import type { KernelNotifier } from '../../src/fuse/kernel/invalidator';
import { ROOT_NODEID } from '../../src/fuse/nodes';
import { GraphSwitcher } from '../../src/fuse/switcher';
import { deferred, flush } from '../helpers/core';
import { cleanupGraphs, tempDir } from '../helpers/graphs';

const posix = (dir: string) => `volume posix\n    type storage/posix\n    option directory ${dir}\nend-volume\n`;
const traced = (dir: string) => `${posix(dir)}volume top\n    type debug/trace\n    subvolumes posix\nend-volume\n`;

type Sent = ['inode', number, number, number] | ['entry', number, string];

interface Setup {
  switcher: GraphSwitcher;
  core: BridgeCore;
  adapter: KernelAdapter;
  sent: Sent[];
  /** Set to hold each notification until the test resolves it. */
  gate?: () => Promise<void>;
  /** An upcall coming up from the bottom of the active graph (as protocol/client would send it). */
  upcall(u: Upcall): void;
  nodeid(name: string): Promise<number>;
  stop: () => void;
}

const setups: Setup[] = [];
let unique = 2;
const req = (): Request => ({ unique: (unique += 2), uid: 0, gid: 0, pid: 0, interrupted: false, onInterrupt: () => () => undefined });

async function setup(): Promise<Setup & { backing: string; volfile: string }> {
  const dir = tempDir('xlstack-kinval-');
  const backing = path.join(dir, 'backing');
  fs.mkdirSync(backing);
  const volfile = path.join(dir, 'test.vol');
  fs.writeFileSync(volfile, posix(backing));
  const log = Logger.create('error', () => undefined);
  const switcher = new GraphSwitcher({ volfile, registry: new Registry(), log, startTimeoutMs: 5000, stopTimeoutMs: 5000 });
  const core = (await switcher.start()).core;
  const adapter = new KernelAdapter(core, log, DEFAULT_KERNEL_ADAPTER_OPTIONS);
  const s = {
    backing,
    volfile,
    switcher,
    core,
    adapter,
    sent: [] as Sent[],
    gate: undefined as (() => Promise<void>) | undefined,
    upcall: (u: Upcall) => {
      const g = core.active;
      // The bottom of the graph: what protocol/client is in a client's graph.
      const leaf = [...g.xlators.values()].find((x) => x.children.length === 0)!;
      leaf.upcall(u);
    },
    nodeid: async (name: string) => (await adapter.lookup(req(), ROOT_NODEID, Buffer.from(name))).nodeid,
    stop: (() => undefined) as () => void,
  };
  const kernel: KernelNotifier = {
    async notifyInvalInode(nodeid, off, len) {
      await s.gate?.();
      s.sent.push(['inode', nodeid, off, len]);
      return true;
    },
    async notifyInvalEntry(parent, name) {
      await s.gate?.();
      s.sent.push(['entry', parent, name.toString('latin1')]);
      return true;
    },
  };
  s.stop = adapter.followInvalidations(kernel);
  setups.push(s);
  return s;
}

afterEach(async () => {
  for (const s of setups.splice(0)) {
    s.stop();
    await s.switcher.stopAll();
  }
  await cleanupGraphs();
});

const gfidOf = (s: Setup, nodeid: number) => [...s.core.nodes.all()].find((b) => b.nodeid === nodeid)!.gfid;

test('an object\'s attributes (and pages when its data changed) by its nodeid, names by their directory\'s; never from where the upcall came', async () => {
  const s = await setup();
  fs.writeFileSync(path.join(s.backing, 'f'), 'x');
  const f = await s.nodeid('f');
  s.upcall({ gfid: gfidOf(s, f), attrs: true });
  s.upcall({ gfid: gfidOf(s, ROOT_NODEID), attrs: true, entries: [{ parent: gfidOf(s, ROOT_NODEID), name: 'n\xe9' }] });
  expect(s.sent).toEqual([]);
  await flush();
  expect(s.sent).toEqual([
    ['inode', f, -1, 0],
    ['inode', ROOT_NODEID, -1, 0],
    ['entry', ROOT_NODEID, 'n\xe9'],
  ]);
  s.sent.length = 0;
  s.upcall({ gfid: gfidOf(s, f), attrs: true, data: true });
  await flush();
  expect(s.sent).toEqual([['inode', f, 0, 0]]);
});

test('objects the kernel holds no nodeid for are not mentioned; everything means every nodeid it holds', async () => {
  const s = await setup();
  for (const n of ['a', 'b']) fs.writeFileSync(path.join(s.backing, n), n);
  const a = await s.nodeid('a');
  const b = await s.nodeid('b');
  s.upcall({ gfid: '0f0f0f0f-0000-4000-8000-000000000000', attrs: true, entries: [{ parent: '0f0f0f0f-0000-4000-8000-000000000000', name: 'x' }] });
  await flush();
  expect(s.sent).toEqual([]);
  s.upcall({ attrs: true, data: true, xattrs: true });
  await flush();
  expect(s.sent.map((x) => x[1]).sort()).toEqual([ROOT_NODEID, a, b].sort());
  expect(s.sent.every((x) => x[0] === 'inode' && x[2] === 0)).toBe(true);
});

test('one at a time, each queued once: what comes while one is blocked in the kernel waits, merged', async () => {
  const s = await setup();
  fs.writeFileSync(path.join(s.backing, 'f'), 'x');
  fs.writeFileSync(path.join(s.backing, 'g'), 'y');
  const f = await s.nodeid('f');
  const g = await s.nodeid('g');
  const held = deferred();
  let blocked = 0;
  s.gate = async () => {
    blocked++;
    await held.promise;
  };
  s.upcall({ gfid: gfidOf(s, f), attrs: true });
  await flush();
  expect(blocked).toBe(1);
  for (let i = 0; i < 5; i++) s.upcall({ gfid: gfidOf(s, g), attrs: true });
  s.upcall({ gfid: gfidOf(s, g), data: true });
  await flush();
  expect(blocked).toBe(1);
  held.resolve();
  await flush();
  expect(s.sent).toEqual([
    ['inode', f, -1, 0],
    ['inode', g, 0, 0],
  ]);
});

test('after a graph switch, the new graph\'s upcalls reach the kernel, and so do the old one\'s while it lives', async () => {
  const s = await setup();
  fs.writeFileSync(path.join(s.backing, 'f'), 'x');
  const f = await s.nodeid('f');
  // An open handle keeps the old graph alive after the switch.
  const { fh } = await s.adapter.open(req(), f, fs.constants.O_RDONLY);
  const old = s.core.active;
  fs.writeFileSync(s.volfile, traced(s.backing));
  expect(await s.switcher.reload()).toMatchObject({ action: 'switched' });
  expect(s.core.active).not.toBe(old);
  s.upcall({ gfid: gfidOf(s, f), attrs: true });
  await flush();
  expect(s.sent).toEqual([['inode', f, -1, 0]]);
  expect(old.state).toBe('retired');
  [...old.xlators.values()].find((x) => x.children.length === 0)!.upcall({ gfid: gfidOf(s, f), data: true });
  await flush();
  expect(s.sent).toEqual([
    ['inode', f, -1, 0],
    ['inode', f, 0, 0],
  ]);
  await s.adapter.release(req(), f, fh);
});

test('a session that ended (ENOTCONN) stops the notifications', async () => {
  const s = await setup();
  fs.writeFileSync(path.join(s.backing, 'f'), 'x');
  await s.nodeid('f');
  let tries = 0;
  s.gate = async () => {
    tries++;
    const { FopError } = await import('../../src/core/errors');
    throw new FopError('ENOTCONN', 'the session is not serving');
  };
  s.upcall({ attrs: true, data: true, xattrs: true });
  await flush();
  expect(tries).toBe(1);
  s.upcall({ attrs: true });
  await flush();
  expect(tries).toBe(1);
  expect(s.adapter.dumpInvalidations()).toMatchObject({ failed: 1, queued: 0 });
});
