import * as fs from 'fs';
import { buildGraph } from '../../src/core/builder';
import { XlEvent } from '../../src/core/events';
import { Fd } from '../../src/core/fd';
import { Graph } from '../../src/core/graph';
import { Inode } from '../../src/core/inode';
import { Logger } from '../../src/core/log';
import { OptionValues, opt } from '../../src/core/options';
import { Registry, defineTranslator } from '../../src/core/registry';
import { ROOT_GFID } from '../../src/core/types';
import { parseVolfile } from '../../src/core/volfile';
import { Xlator } from '../../src/core/xlator';
import { deferred, expectSame, flush, vol } from '../helpers/core';
import { cleanupGraphs, tempDir } from '../helpers/graphs';

// --- a recording test translator ---------------------------------------------------

let journal: string[];
/** drain() of the named translator waits for this promise. */
let gates: Map<string, Promise<void>>;
/** What each release saw: was the fd still counted on the graph? */
let releaseSawFd: Map<string, boolean>;
let failRelease: Set<string>;

const recOptions = {
  mode: opt.enum({ description: 'how PARENT_UP is answered', values: ['default', 'up', 'mute'] as const, default: 'default' }),
  'fail-init': opt.bool({ description: 'init throws', default: 'off' }),
};

class Rec extends Xlator<OptionValues<typeof recOptions>> {
  override async init(): Promise<void> {
    journal.push(`init ${this.name}`);
    if (this.options['fail-init']) throw new Error('no backend');
  }
  override async fini(): Promise<void> {
    journal.push(`fini ${this.name}`);
  }
  override async release(fd: Fd): Promise<void> {
    journal.push(`release ${this.name}`);
    releaseSawFd.set(this.name, (this.host as Graph).fds.has(fd));
    if (failRelease.has(this.name)) throw new Error('release broke');
  }
  override forget(_inode: Inode): void {
    journal.push(`forget ${this.name}`);
  }
  override dump(): Record<string, unknown> {
    return { mode: this.options.mode };
  }
  override notify(event: XlEvent, from?: Xlator): void {
    journal.push(`${this.name}<-${event}`);
    if (event === XlEvent.PARENT_UP && this.options.mode === 'mute') return;
    if (event === XlEvent.PARENT_UP && this.options.mode === 'up' && this.children.length === 0) {
      this.up(XlEvent.CHILD_UP);
      return;
    }
    super.notify(event, from);
  }
  protected override async drain(): Promise<void> {
    journal.push(`drain ${this.name}`);
    const gate = gates.get(this.name);
    if (gate) await gate;
    journal.push(`drained ${this.name}`);
  }
}

const registry = new Registry();
registry.register(
  defineTranslator({
    type: 'test/rec',
    description: 'records what happens to it',
    options: recOptions,
    subvolumes: { min: 0 },
    create: (init) => new Rec(init),
  }),
);

let logs: string[];
let log: Logger;
let nextId = 100;

beforeEach(() => {
  journal = [];
  gates = new Map();
  releaseSawFd = new Map();
  failRelease = new Set();
  logs = [];
  log = Logger.create('debug', (l) => logs.push(l));
});

const graphs: Graph[] = [];
afterEach(async () => {
  // Nothing may outlive a test (a failed assertion must not leave a graph up).
  for (const g of graphs.splice(0)) await g.stop(100).catch(() => undefined);
  await cleanupGraphs();
});

function build(text: string, extra: { lruLimit?: number; entryTimeoutMs?: number } = {}): Graph {
  const g = buildGraph(parseVolfile(text, '/etc/xlstack/test.vol'), { id: nextId++, registry, log, ...extra });
  graphs.push(g);
  return g;
}

/** a <- b <- c (c is the top); `leafMode` is how a answers PARENT_UP. */
function chain(leafMode = 'up', extra = ''): Graph {
  return build(
    vol(
      'volume a', '  type test/rec', `  option mode ${leafMode}`, extra, 'end-volume',
      'volume b', '  type test/rec', '  subvolumes a', 'end-volume',
      'volume c', '  type test/rec', '  subvolumes b', 'end-volume',
    ),
  );
}

/** Settles with `p`'s value, or rejects after `ms` (no test waits forever). */
function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout;
  const t = new Promise<never>((_, rej) => (timer = setTimeout(() => rej(new Error(`${what}: not within ${ms} ms`)), ms)));
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}

// --- start ------------------------------------------------------------------------

describe('Graph.start', () => {
  it('inits children before parents, then sends PARENT_UP from the top, and reports up', async () => {
    const g = chain('up');
    expect(g.state).toBe('built');
    expect(g.status$.value).toBe('unknown');
    const status = await within(g.start(2000), 3000, 'start');
    expect(status).toBe('up');
    expect(g.state).toBe('up');
    expect(g.status$.value).toBe('up');
    expect(journal.filter((l) => l.startsWith('init '))).toEqual(['init a', 'init b', 'init c']);
    const firstUp = journal.findIndex((l) => l.includes('PARENT_UP'));
    expect(firstUp).toBe(3);
    expect(journal.filter((l) => l.includes('PARENT_UP'))).toEqual(['c<-PARENT_UP', 'b<-PARENT_UP', 'a<-PARENT_UP']);
    expect(journal).toContain('b<-CHILD_UP');
    expect(journal).toContain('c<-CHILD_UP');
  });

  it("returns 'down' when a leaf reports CHILD_DOWN", async () => {
    const g = chain('default');
    expect(await within(g.start(2000), 3000, 'start')).toBe('down');
    expect(g.state).toBe('down');
    expect(g.status$.value).toBe('down');
    expect(journal).toContain('c<-CHILD_DOWN');
  });

  it("returns 'unknown' after the timeout when nothing answers", async () => {
    const g = chain('mute');
    const t0 = Date.now();
    const status = await within(g.start(50), 2000, 'start');
    const took = Date.now() - t0;
    expect(status).toBe('unknown');
    expect(took).toBeGreaterThanOrEqual(40);
    expect(took).toBeLessThan(1500);
    expect(g.state).toBe('down');
    expect(journal).toContain('a<-PARENT_UP');
  });

  it('fails when a translator cannot init, naming it; its parents are not initialised', async () => {
    const g = chain('up', '  option fail-init on');
    await expect(within(g.start(1000), 3000, 'start')).rejects.toThrow(/volume 'a' \(test\/rec\) failed to start: no backend/);
    expect(g.state).toBe('dead');
    expect(journal).toEqual(['init a']);
  });

  // fini() "frees everything"; after a failed start the graph is 'dead' and stop() returns at
  // once, so a translator that did init must be finished by start() itself.
  it('finishes the translators that did init when a later one fails', async () => {
    const g = build(
      vol(
        'volume a', '  type test/rec', '  option mode up', 'end-volume',
        'volume b', '  type test/rec', '  option fail-init on', '  subvolumes a', 'end-volume',
        'volume c', '  type test/rec', '  subvolumes b', 'end-volume',
      ),
    );
    await expect(within(g.start(1000), 3000, 'start')).rejects.toThrow(/volume 'b'/);
    await within(g.stop(100), 2000, 'stop');
    expect(journal.filter((l) => l.startsWith('init '))).toEqual(['init a', 'init b']);
    expect(journal).toContain('fini a');
    expect(journal).not.toContain('init c');
  });

  it('settles with a status when the graph is stopped while start() waits', async () => {
    const g = chain('mute');
    const started = g.start(5000).then(
      (status) => ({ status }),
      (e: Error) => ({ error: `${e.name}: ${e.message}` }),
    );
    await flush();
    await within(g.stop(100), 2000, 'stop');
    const outcome = await within(started, 2000, 'start');
    expect(outcome).toEqual({ status: expect.stringMatching(/^(unknown|down)$/) });
    expect(g.state).toBe('dead');
  });

  it("comes up over storage/posix in a temporary directory, and serves the root", async () => {
    const dir = tempDir('xl-core-graph-');
    const g = build(
      vol(
        'volume brick', '  type storage/posix', `  option directory ${dir}`, 'end-volume',
        'volume tr', '  type debug/trace', '  subvolumes brick', 'end-volume',
      ),
    );
    expect(await within(g.start(2000), 3000, 'start')).toBe('up');
    expect(g.state).toBe('up');
    const frame = g.frame('stat');
    const st = await g.top.stat(frame, { path: '/', inode: g.itable.root });
    frame.done();
    expect(st.gfid).toBe(ROOT_GFID);
    await within(g.stop(2000), 3000, 'stop');
    expect(g.state).toBe('dead');
  });
});

// --- stop ---------------------------------------------------------------------------

describe('Graph.stop', () => {
  it('sends PARENT_DOWN, waits for PARENT_DOWN_HANDLED, then calls fini parents first', async () => {
    const g = chain('up');
    await within(g.start(2000), 3000, 'start');
    journal = [];
    const gate = deferred();
    gates.set('b', gate.promise);
    const stopped = g.stop(5000);
    await flush();
    expect(g.state).toBe('stopping');
    expect(journal).toEqual(['c<-PARENT_DOWN', 'drain c', 'drained c', 'b<-PARENT_DOWN', 'drain b']);
    gate.resolve();
    await within(stopped, 3000, 'stop');
    expect(journal).toEqual([
      'c<-PARENT_DOWN', 'drain c', 'drained c',
      'b<-PARENT_DOWN', 'drain b', 'drained b',
      'a<-PARENT_DOWN', 'drain a', 'drained a',
      'b<-PARENT_DOWN_HANDLED', 'c<-PARENT_DOWN_HANDLED',
      'fini c', 'fini b', 'fini a',
    ]);
    expect(g.state).toBe('dead');
    expect(g.status$.isStopped).toBe(true);
    expect(g.idle$.isStopped).toBe(true);
  });

  it('does not wait longer than its timeout for PARENT_DOWN_HANDLED', async () => {
    const g = chain('up');
    await within(g.start(2000), 3000, 'start');
    gates.set('b', new Promise<void>(() => undefined)); // never drains
    const t0 = Date.now();
    await within(g.stop(50), 2000, 'stop');
    expect(Date.now() - t0).toBeGreaterThanOrEqual(40);
    expect(journal.filter((l) => l.startsWith('fini '))).toEqual(['fini c', 'fini b', 'fini a']);
    expect(journal).not.toContain('a<-PARENT_DOWN');
    expect(logs.some((l) => l.includes('WARN') && l.includes('PARENT_DOWN not handled within 50 ms'))).toBe(true);
    expect(g.state).toBe('dead');
  });

  it('a concurrent second stop() resolves only once the graph is down', async () => {
    const g = chain('up');
    await within(g.start(2000), 3000, 'start');
    const gate = deferred();
    gates.set('b', gate.promise);
    const first = g.stop(5000);
    let secondDone = false;
    const second = g.stop(5000).then(() => {
      secondDone = true;
    });
    await flush();
    const stateWhenSecondDone = secondDone ? g.state : 'second stop() still waiting';
    gate.resolve();
    await within(Promise.all([first, second]), 3000, 'stop');
    expect(stateWhenSecondDone).toBe('second stop() still waiting');
    expect(g.state).toBe('dead');
  });

  it('a second stop() does nothing', async () => {
    const g = chain('up');
    await within(g.start(2000), 3000, 'start');
    await within(g.stop(1000), 2000, 'stop');
    await within(g.stop(1000), 2000, 'stop again');
    expect(journal.filter((l) => l === 'fini a')).toHaveLength(1);
    expect(journal.filter((l) => l === 'c<-PARENT_DOWN')).toHaveLength(1);
  });
});

// --- frames, fds, idle ---------------------------------------------------------------

describe('Graph frames and fds', () => {
  it('counts frames until done(); done() twice counts once', () => {
    const g = chain();
    expect(g.pendingFrames).toBe(0);
    const f1 = g.frame('lookup');
    const f2 = g.frame('read');
    expect(g.pendingFrames).toBe(2);
    expect(f1.graphId).toBe(g.id);
    expect(f1.op).toBe('lookup');
    expect(f1.unique).not.toBe(f2.unique);
    f1.done();
    expect(g.pendingFrames).toBe(1);
    f1.done();
    expect(g.pendingFrames).toBe(1);
    f2.done();
    expect(g.pendingFrames).toBe(0);
    expect(g.isIdle).toBe(true);
  });

  it('the host frame() used by translators is counted on the graph', () => {
    const g = chain();
    const f = g.xlators.get('a')!.host.frame('background');
    expect(g.pendingFrames).toBe(1);
    f.done();
    expect(g.pendingFrames).toBe(0);
  });

  it('idle$ fires when the last frame goes', () => {
    const g = chain();
    let idle = 0;
    g.idle$.subscribe(() => idle++);
    const f1 = g.frame('a');
    const f2 = g.frame('b');
    f1.done();
    expect(idle).toBe(0);
    f2.done();
    expect(idle).toBe(1);
    f2.done();
    expect(idle).toBe(1);
  });

  it('newFd adds the fd; the last unref releases it top-down on translators with ctx, then removes it', async () => {
    const g = chain();
    const inode = g.itable.get('00000000-0000-4000-8000-0000000000aa');
    const fd = g.newFd(inode, fs.constants.O_RDONLY, false);
    expect(g.fds.has(fd)).toBe(true);
    expect(fd.flags).toBe(fs.constants.O_RDONLY);
    expect(inode.refcount).toBe(1);
    const [a, , c] = ['a', 'b', 'c'].map((n) => g.xlators.get(n)!);
    fd.ctx.set(a, 'a-state');
    fd.ctx.set(c, 'c-state');
    fd.ref();
    await fd.unref();
    expect(journal.filter((l) => l.startsWith('release'))).toEqual([]);
    expect(g.fds.has(fd)).toBe(true);
    await within(fd.unref(), 2000, 'release');
    expect(journal.filter((l) => l.startsWith('release'))).toEqual(['release c', 'release a']);
    expect(releaseSawFd.get('c')).toBe(true);
    expect(releaseSawFd.get('a')).toBe(true);
    expect(g.fds.has(fd)).toBe(false);
    expect(g.fds.size).toBe(0);
    expect(inode.refcount).toBe(0);
  });

  it('a failing release is logged and the others still run', async () => {
    const g = chain();
    const fd = g.newFd(g.itable.root, fs.constants.O_RDONLY, true);
    for (const xl of g.xlators.values()) fd.ctx.set(xl, true);
    failRelease.add('c');
    await within(fd.unref(), 2000, 'release');
    expect(journal.filter((l) => l.startsWith('release'))).toEqual(['release c', 'release b', 'release a']);
    expect(logs.some((l) => l.includes('ERROR') && l.includes('release broke'))).toBe(true);
    expect(g.fds.size).toBe(0);
  });

  it('idle$ fires when the last fd goes, not while a frame or fd remains', async () => {
    const g = chain();
    let idle = 0;
    g.idle$.subscribe(() => idle++);
    const frame = g.frame('open');
    const fd1 = g.newFd(g.itable.root, 0, true);
    const fd2 = g.newFd(g.itable.root, 0, true);
    frame.done();
    expect(idle).toBe(0);
    await within(fd1.unref(), 2000, 'release');
    expect(idle).toBe(0);
    expect(g.isIdle).toBe(false);
    await within(fd2.unref(), 2000, 'release');
    expect(idle).toBe(1);
    expect(g.isIdle).toBe(true);
  });

  it('refuses an fd for an inode of another graph', () => {
    const g1 = chain();
    const g2 = chain();
    expect(() => g1.newFd(g2.itable.root, 0, true)).toThrow(/another graph/);
    expect(g1.fds.size).toBe(0);
  });

  it('an inode dropped from the table is forgotten on the translators that have ctx for it', () => {
    const g = chain();
    const inode = g.itable.get('00000000-0000-4000-8000-0000000000bb');
    inode.ctx.set(g.xlators.get('b')!, 'b-state');
    g.itable.forget(inode);
    expect(journal.filter((l) => l.startsWith('forget'))).toEqual(['forget b']);
  });

  it('passes lruLimit and entryTimeoutMs to its inode table', () => {
    const g = build(vol('volume a', '  type test/rec', 'end-volume'), { lruLimit: 2, entryTimeoutMs: 60_000 });
    const mk = (n: number) => `00000000-0000-4000-8000-${n.toString().padStart(12, '0')}`;
    const t = { sec: 0, nsec: 0 };
    const first = g.itable.link(
      { gfid: mk(1), ino: 1, mode: fs.constants.S_IFREG, nlink: 1, uid: 0, gid: 0, rdev: 0, size: 0, blksize: 0, blocks: 0, atime: t, mtime: t, ctime: t },
      g.itable.root,
      'f',
    );
    expect(g.itable.child(g.itable.root, 'f')!.validUntil).toBeGreaterThan(Date.now() + 50_000);
    for (let i = 2; i < 10; i++) g.itable.get(mk(i));
    expect(g.itable.find(first.gfid)).toBeUndefined();
  });
});

// --- statedump ----------------------------------------------------------------------

describe('Graph.dump', () => {
  it('reports id, state, frames, fds and translators', async () => {
    const g = chain();
    const frame = g.frame('readdir');
    const fd = g.newFd(g.itable.root, 0, true);
    const d = g.dump();
    expect(d.id).toBe(g.id);
    expect(d.state).toBe('built');
    expect(d.top).toBe('c');
    expect(d.status).toBe('unknown');
    expect(d.pendingFrames).toBe(1);
    expect(d.fdCount).toBe(1);
    expect(d.frames).toEqual([{ unique: frame.unique, op: 'readdir', ageMs: expect.any(Number) }]);
    expect(d.xlators).toEqual([
      { name: 'a', type: 'test/rec', mode: 'up' },
      { name: 'b', type: 'test/rec', mode: 'default' },
      { name: 'c', type: 'test/rec', mode: 'default' },
    ]);
    expect(d.fds).toEqual([{ id: fd.id, openId: fd.openId, gfid: ROOT_GFID, flags: 0, refs: 1 }]);
    expect(d.inodes).toEqual([{ gfid: ROOT_GFID, path: '/', refs: 2 }]);
    expect(JSON.parse(JSON.stringify(d))).toEqual(d);
    frame.done();
    await fd.unref();
    const after = g.dump();
    expect(after.pendingFrames).toBe(0);
    expect(after.fdCount).toBe(0);
    expect(after.frames).toEqual([]);
  });

  it('names the graph after its top and id', () => {
    const g = chain();
    expect(g.name).toBe(`c-${g.id}`);
    expectSame(g.top, g.xlators.get('c'), 'top');
  });
});
