// In-process stacks for the cache translators' unit tests: storage/posix over a scratch
// directory, debug/gate right above it (it counts what reaches storage and holds fops where a
// test wants a race), the caches above that, their timers on a ManualClock. Fops are called on
// the graph's top with Locs, as the bridge would.
import * as fs from 'fs';
import * as path from 'path';
import { buildGraph } from '../../src/core/builder';
import type { Fd } from '../../src/core/fd';
import type { Loc } from '../../src/core/fops';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import type { Inode } from '../../src/core/inode';
import { Logger } from '../../src/core/log';
import { Registry } from '../../src/core/registry';
import type { Iatt } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import type { Xlator } from '../../src/core/xlator';
import type { Gate } from '../../xlators/debug/gate';
import { ioCache } from '../../xlators/performance/io-cache';
import { mdCache } from '../../xlators/performance/md-cache';
import { readAhead } from '../../xlators/performance/read-ahead';
import { readdirAhead } from '../../xlators/performance/readdir-ahead';
import { ManualClock } from './clock';
import { tempDir, within } from './graphs';

export interface Layer {
  readonly type: string;
  readonly options?: Record<string, string>;
}

export interface CacheStack {
  readonly dir: string;
  readonly graph: Graph;
  /** Right above storage: what reached storage (`gate.calls`), and holds. */
  readonly gate: Gate;
  readonly clock: ManualClock;
  readonly logs: string[];
  /** The translator of a layer, by its type's name (e.g. 'md-cache'). */
  xl<T extends Xlator>(name: string): T;
  /** How many calls of `op` reached storage so far. */
  calls(op: string): number;
  frame(op?: string): Frame;
  root: Inode;
  /** Looks a name up (through the whole stack) and links it in the inode table. */
  lookup(name: string, parent?: Inode): Promise<{ inode: Inode; iatt: Iatt }>;
  /** The Loc of a name in a directory, as the bridge builds it. */
  at(name: string, parent?: Inode): Loc;
  open(inode: Inode, flags?: number): Promise<Fd>;
  create(name: string, data?: string, parent?: Inode): Promise<{ inode: Inode; fd: Fd; iatt: Iatt }>;
  /** A file's bytes on storage, as another client would leave them. */
  backing(name: string): string;
  /** Writes straight to storage (another client's change, which nothing here sees). */
  behindItsBack(name: string, data: string): void;
}

const running: Graph[] = [];

const vol = (name: string, type: string, opts: Record<string, string>, sub?: string) =>
  `volume ${name}\n type ${type}\n` +
  Object.entries(opts)
    .map(([k, v]) => ` option ${k} ${v}\n`)
    .join('') +
  (sub ? ` subvolumes ${sub}\n` : '') +
  'end-volume\n';

/** posix, gate, then `layers` bottom-up; each layer's volume is named after its type ('md-cache'...). */
export async function cacheStack(layers: Layer[], clock = new ManualClock()): Promise<CacheStack> {
  const dir = tempDir('xlstack-cache-');
  let text = vol('posix', 'storage/posix', { directory: dir }) + vol('gate', 'debug/gate', {}, 'posix');
  let below = 'gate';
  for (const l of layers) {
    const name = l.type.split('/')[1];
    text += vol(name, l.type, l.options ?? {}, below);
    below = name;
  }
  const registry = new Registry();
  for (const def of [mdCache(clock), ioCache(clock), readAhead(clock), readdirAhead(clock)]) registry.register(def);
  const logs: string[] = [];
  const graph = buildGraph(parseVolfile(text, 'cache-test.vol'), { id: 1, registry, log: Logger.create('warn', (l) => logs.push(l)) });
  running.push(graph);
  if ((await within(graph.start(5000))) !== 'up') throw new Error(`the stack did not come up:\n${logs.join('\n')}`);
  const gate = graph.xlators.get('gate') as Gate;
  const top = () => graph.top;
  const frame = (op = 'test') => graph.frame(op);
  const root = graph.itable.root;
  const at = (name: string, parent = root): Loc => ({ path: name, parent, name, inode: graph.itable.child(parent, name)?.inode });
  const s: CacheStack = {
    dir,
    graph,
    gate,
    clock,
    logs,
    root,
    xl: <T extends Xlator>(name: string) => graph.xlators.get(name) as T,
    calls: (op) => gate.calls.get(op) ?? 0,
    frame,
    at,
    async lookup(name, parent = root) {
      const iatt = await top().lookup(frame('lookup'), at(name, parent));
      return { inode: graph.itable.link(iatt, parent, name), iatt };
    },
    async open(inode, flags = fs.constants.O_RDWR) {
      const fd = graph.newFd(inode, flags, inode.isDir);
      try {
        await (inode.isDir ? top().opendir(frame('opendir'), { inode }, fd) : top().open(frame('open'), { inode }, fd));
      } catch (e) {
        await fd.unref();
        throw e;
      }
      return fd;
    },
    async create(name, data, parent = root) {
      const { v4 } = await import('uuid');
      const inode = graph.itable.get(v4());
      const fd = graph.newFd(inode, fs.constants.O_RDWR | fs.constants.O_CREAT, false);
      const iatt = await top().create(frame('create'), { ...at(name, parent), inode }, 0o644, fd);
      graph.itable.link(iatt, parent, name);
      if (data !== undefined) await top().write(frame('write'), fd, Buffer.from(data, 'latin1'), 0);
      return { inode, fd, iatt };
    },
    backing: (name) => fs.readFileSync(path.join(dir, name), 'latin1'),
    behindItsBack(name, data) {
      // Another writer through the brick: same file (same GFID), new bytes and times.
      const p = path.join(dir, name);
      const fd = fs.openSync(p, 'r+');
      try {
        fs.ftruncateSync(fd, 0);
        fs.writeSync(fd, Buffer.from(data, 'latin1'), 0, data.length, 0);
        // A distinct mtime, whatever the clock's granularity.
        const t = fs.fstatSync(fd).mtimeMs / 1000 + 7;
        fs.futimesSync(fd, t, t);
      } finally {
        fs.closeSync(fd);
      }
    },
  };
  return s;
}

/** For afterEach: stops every stack (after their fds were released by the test). */
export async function stopCacheStacks(): Promise<void> {
  for (const g of running.splice(0)) await within(g.stop(5000)).catch(() => undefined);
}
