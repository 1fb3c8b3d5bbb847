import { FopError } from '../../src/core/errors';
import { XlEvent } from '../../src/core/events';
import { FOP_NAMES, FopName, Loc } from '../../src/core/fops';
import { Frame, FrameOwner } from '../../src/core/frame';
import { Logger } from '../../src/core/log';
import { ROOT_CALLER } from '../../src/core/types';
import { Xlator, XlatorHost } from '../../src/core/xlator';
import { Inode, InodeTable } from '../../src/core/inode';
import { Fd } from '../../src/core/fd';
import { deferred, expectSame, flush } from '../helpers/core';

// --- a fake graph ------------------------------------------------------------------

class FakeHost implements XlatorHost, FrameOwner {
  readonly id = 7;
  readonly logs: string[] = [];
  readonly log = Logger.create('error', (l) => this.logs.push(l));
  readonly events: Array<[XlEvent, string]> = [];
  readonly inFlight = new Set<Frame>();
  readonly itable = new InodeTable({ lruLimit: 16, entryTimeoutMs: 1000 });

  topEvent(event: XlEvent, from: Xlator): void {
    this.events.push([event, from.name]);
  }
  frame(op: string): Frame {
    return new Frame(this, op, ROOT_CALLER);
  }
  newFd(inode: Inode, flags: number, isDir: boolean): Fd {
    return new Fd(inode, flags, isDir, async () => undefined);
  }
  frameStarted(frame: Frame): void {
    this.inFlight.add(frame);
  }
  frameDone(frame: Frame): void {
    this.inFlight.delete(frame);
  }
  count(event: XlEvent): number {
    return this.events.filter(([e]) => e === event).length;
  }
}

type AnyFop = (...args: unknown[]) => Promise<unknown>;
const fop = (xl: Xlator, op: FopName): AnyFop => (xl as unknown as Record<FopName, AnyFop>)[op].bind(xl);

/** Waits until `cond` holds, at most `ms`. */
async function until(cond: () => boolean, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`condition not met within ${ms} ms`);
    await new Promise<void>((r) => setTimeout(r, 1));
  }
}

let host: FakeHost;
let journal: string[];

beforeEach(() => {
  host = new FakeHost();
  journal = [];
});

function init(name: string, children: Xlator[] = []) {
  return { name, type: 'test/node', options: {}, children, host };
}

// --- translators for the tests ----------------------------------------------------

/** A leaf that answers every fop itself, recording what it got. */
class Sink extends Xlator {
  readonly calls: Array<{ op: FopName; args: unknown[]; result: object }> = [];
}
Xlator.interceptAll(Sink, async (xl, op, args) => {
  const result = { from: xl.name, op };
  xl.calls.push({ op, args, result });
  return result;
});

/** Records what its interceptor saw, then passes the call on. */
class Spy extends Xlator {
  readonly seen: Array<{ op: FopName; args: unknown[]; self: Xlator }> = [];
}
Xlator.interceptAll(Spy, (xl, op, args, next) => {
  xl.seen.push({ op, args, self: xl });
  return next();
});

/** Records events and drains; its drain waits for `gate` when one is set. */
class Node extends Xlator {
  gate?: Promise<void>;
  drains = 0;

  override notify(event: XlEvent, from?: Xlator): void {
    journal.push(`${this.name}<-${event}${from ? ` from ${from.name}` : ''}`);
    super.notify(event, from);
  }

  protected override async drain(): Promise<void> {
    this.drains++;
    journal.push(`${this.name} drain`);
    if (this.gate) await this.gate;
    journal.push(`${this.name} drained`);
  }
}

/** A leaf whose children (none) are up: answers PARENT_UP with CHILD_UP. */
class UpLeaf extends Node {
  override notify(event: XlEvent, from?: Xlator): void {
    if (event === XlEvent.PARENT_UP) {
      journal.push(`${this.name}<-${event}`);
      this.up(XlEvent.CHILD_UP);
      return;
    }
    super.notify(event, from);
  }
}

class FailingDrain extends Node {
  protected override async drain(): Promise<void> {
    throw new Error('disk gone');
  }
}

// --- construction -------------------------------------------------------------------

describe('Xlator construction', () => {
  it('links children to their parents and names its logger after the graph', () => {
    const leaf = new Xlator(init('leaf'));
    const top = new Xlator({ ...init('top', [leaf]), type: 'test/top', options: { a: 1 } });
    expect(top.children.map((c) => c.name)).toEqual(['leaf']);
    expectSame(top.children[0], leaf, 'child');
    expect(leaf.parents.map((c) => c.name)).toEqual(['top']);
    expectSame(leaf.parents[0], top, 'parent');
    expect(top.parents).toEqual([]);
    expect(top.type).toBe('test/top');
    expect(top.options).toEqual({ a: 1 });
    expect(leaf.log.prefix).toBe('leaf-7');
    expectSame(top.host, host, 'host');
  });

  it('reconfigure() replaces the options', async () => {
    const xl = new Xlator<{ n: number }>({ ...init('x'), options: { n: 1 } });
    await xl.reconfigure({ n: 2 });
    expect(xl.options).toEqual({ n: 2 });
  });
});

// --- fops ---------------------------------------------------------------------------

describe('default fops', () => {
  it('wind every fop, unchanged, through a chain to the first child and return its result', async () => {
    const sink = new Sink(init('sink'));
    const mid = new Xlator(init('mid', [sink]));
    const top = new Xlator(init('top', [mid]));
    const frame = host.frame('test');
    for (const op of FOP_NAMES) {
      const args = [frame, { path: `/${op}` }, { second: op }, 4096];
      const result = await fop(top, op)(...args);
      const call = sink.calls[sink.calls.length - 1];
      expect(call.op).toBe(op);
      expect(call.args).toHaveLength(args.length);
      call.args.forEach((a, i) => expectSame(a, args[i], `${op} argument ${i}`));
      expectSame(result, call.result, `${op} result`);
    }
    expect(sink.calls.map((c) => c.op)).toEqual(FOP_NAMES);
    frame.done();
  });

  it('go to the first child only', async () => {
    const first = new Sink(init('first'));
    const second = new Sink(init('second'));
    const top = new Xlator(init('top', [first, second]));
    const frame = host.frame('x');
    const loc = { path: '/a' };
    await top.lookup(frame, loc);
    await top.statfs(frame, loc);
    expect(first.calls.map((c) => c.op)).toEqual(['lookup', 'statfs']);
    expect(second.calls).toEqual([]);
  });

  it('pass a child error through unchanged', async () => {
    class Failing extends Xlator {
      override async stat(): Promise<never> {
        throw new FopError('ESTALE', 'gone');
      }
    }
    const leaf = new Failing(init('leaf'));
    const top = new Xlator(init('top', [leaf]));
    await expect(top.stat(host.frame('stat'), { path: '/x' })).rejects.toMatchObject({ code: 'ESTALE', message: 'ESTALE: gone' });
  });

  it('a leaf without children rejects every fop with ENOTCONN (a rejected promise, not a throw)', async () => {
    const leaf = new Xlator(init('lonely'));
    const frame = host.frame('x');
    for (const op of FOP_NAMES) {
      let p: Promise<unknown> | undefined;
      expect(() => {
        p = fop(leaf, op)(frame, { path: '/' });
      }).not.toThrow();
      expect(p).toBeInstanceOf(Promise);
      const err = await p!.then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(FopError);
      expect((err as FopError).code).toBe('ENOTCONN');
      expect((err as FopError).message).toContain('lonely');
      expect((err as FopError).message).toContain(op);
    }
  });

  it('a subclass overriding one fop keeps the defaults for the others', async () => {
    class Over extends Xlator {
      override async readlink(_frame: Frame, _loc: Loc): Promise<string> {
        return 'own answer';
      }
    }
    const sink = new Sink(init('sink'));
    const over = new Over(init('over', [sink]));
    const frame = host.frame('x');
    expect(await over.readlink(frame, { path: '/l' })).toBe('own answer');
    await over.access(frame, { path: '/l' }, 4);
    expect(sink.calls.map((c) => c.op)).toEqual(['access']);
  });
});

describe('Xlator.interceptAll', () => {
  it('sees every fop, with its arguments and the translator, and next() winds them on', async () => {
    const sink = new Sink(init('sink'));
    const spy = new Spy(init('spy', [sink]));
    const frame = host.frame('x');
    for (const op of FOP_NAMES) {
      const args = [frame, { op }, Buffer.from(op), 1];
      const result = await fop(spy, op)(...args);
      const seen = spy.seen[spy.seen.length - 1];
      expect(seen.op).toBe(op);
      expectSame(seen.self, spy, 'interceptor this');
      seen.args.forEach((a, i) => expectSame(a, args[i], `${op} argument ${i} seen`));
      expect(seen.args).toHaveLength(args.length);
      const got = sink.calls[sink.calls.length - 1];
      expect(got.args).toHaveLength(args.length);
      got.args.forEach((a, i) => expectSame(a, args[i], `${op} argument ${i} wound`));
      expectSame(result, got.result, `${op} result`);
    }
    expect(spy.seen.map((s) => s.op)).toEqual(FOP_NAMES);
  });

  it('affects only the class it is applied to', async () => {
    const sink = new Sink(init('sink'));
    const spy = new Spy(init('spy', [sink]));
    const plain = new Xlator(init('plain', [spy]));
    await plain.lookup(host.frame('x'), { path: '/' });
    expect(spy.seen.map((s) => s.op)).toEqual(['lookup']);
    expect(sink.calls).toHaveLength(1);
  });

  it('lets the interceptor answer without winding', async () => {
    class Block extends Xlator {}
    Xlator.interceptAll(Block, async (_xl, op) => {
      throw new FopError('EROFS', `blocked ${op}`);
    });
    const sink = new Sink(init('sink'));
    const block = new Block(init('block', [sink]));
    await expect(block.write(host.frame('w'), {} as never, Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'EROFS' });
    expect(sink.calls).toEqual([]);
  });
});

describe('Xlator.afterDataChanges', () => {
  it('winds write, truncate, ftruncate and fallocate on, then names the changed file, whether the fop succeeded or failed', async () => {
    const seen: string[] = [];
    class Cache extends Xlator {}
    Xlator.afterDataChanges(Cache, (xl, gfid) => seen.push(`${xl.name}:${gfid}`));
    const sink = new Sink(init('sink'));
    const cache = new Cache(init('cache', [sink]));
    const fd = { inode: { gfid: 'g-fd' } } as unknown as Fd;
    const frame = host.frame('x');
    await cache.write(frame, fd, Buffer.alloc(1), 0);
    await cache.ftruncate(frame, fd, 0);
    await cache.fallocate(frame, fd, 0, 0, 1);
    await cache.truncate(frame, { path: '/f', gfid: 'g-loc' } as Loc, 0);
    expect(sink.calls.map((c) => c.op)).toEqual(['write', 'ftruncate', 'fallocate', 'truncate']);
    expect(seen).toEqual(['cache:g-fd', 'cache:g-fd', 'cache:g-fd', 'cache:g-loc']);

    class Refusing extends Xlator {}
    Xlator.interceptAll(Refusing, async () => {
      throw new FopError('EIO', 'disk gone');
    });
    const failing = new Cache(init('failing', [new Refusing(init('refusing'))]));
    await expect(failing.write(frame, fd, Buffer.alloc(1), 0)).rejects.toMatchObject({ code: 'EIO' });
    expect(seen[seen.length - 1]).toBe('failing:g-fd');
  });

  it('leaves a fop the class defines itself alone', async () => {
    const seen: string[] = [];
    class OwnWrite extends Xlator {
      override async write(_frame: Frame, _fd: Fd, _data: Buffer, _offset: number): Promise<number> {
        return 42;
      }
    }
    Xlator.afterDataChanges(OwnWrite, (_xl, gfid) => seen.push(String(gfid)));
    const own = new OwnWrite(init('own', [new Sink(init('sink'))]));
    expect(await own.write(host.frame('w'), { inode: { gfid: 'g' } } as unknown as Fd, Buffer.alloc(1), 0)).toBe(42);
    expect(seen).toEqual([]);
  });
});

// --- notify -------------------------------------------------------------------------

describe('notify routing', () => {
  it('PARENT_UP goes down; a leaf answers CHILD_DOWN, which goes up to the host', () => {
    const leaf = new Node(init('leaf'));
    const mid = new Node(init('mid', [leaf]));
    const top = new Node(init('top', [mid]));
    top.notify(XlEvent.PARENT_UP);
    expect(journal).toEqual([
      'top<-PARENT_UP',
      'mid<-PARENT_UP from top',
      'leaf<-PARENT_UP from mid',
      'mid<-CHILD_DOWN from leaf',
      'top<-CHILD_DOWN from mid',
    ]);
    expect(host.events).toEqual([[XlEvent.CHILD_DOWN, 'top']]);
  });

  it('PARENT_UP reaches every child', () => {
    const a = new Node(init('a'));
    const b = new Node(init('b'));
    const top = new Node(init('top', [a, b]));
    top.notify(XlEvent.PARENT_UP);
    expect(journal).toContain('a<-PARENT_UP from top');
    expect(journal).toContain('b<-PARENT_UP from top');
  });

  it('CHILD_UP from a child reaches the host via topEvent, from the top translator', () => {
    const leaf = new UpLeaf(init('leaf'));
    const mid = new Node(init('mid', [leaf]));
    const top = new Node(init('top', [mid]));
    top.notify(XlEvent.PARENT_UP);
    expect(journal).toContain('mid<-CHILD_UP from leaf');
    expect(journal).toContain('top<-CHILD_UP from mid');
    expect(host.events).toEqual([[XlEvent.CHILD_UP, 'top']]);
  });

  it('a translator without parents hands upward events straight to the host', () => {
    const solo = new Xlator(init('solo'));
    solo.notify(XlEvent.CHILD_UP);
    solo.notify(XlEvent.CHILD_DOWN);
    expect(host.events).toEqual([
      [XlEvent.CHILD_UP, 'solo'],
      [XlEvent.CHILD_DOWN, 'solo'],
    ]);
  });

  it('PARENT_DOWN goes to the children only after drain() finished', async () => {
    const leaf = new Node(init('leaf'));
    const top = new Node(init('top', [leaf]));
    const gate = deferred();
    top.gate = gate.promise;
    top.notify(XlEvent.PARENT_DOWN);
    await flush(5);
    expect(journal).toEqual(['top<-PARENT_DOWN', 'top drain']);
    expect(leaf.drains).toBe(0);
    expect(host.events).toEqual([]);
    gate.resolve();
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0);
    expect(journal).toEqual([
      'top<-PARENT_DOWN',
      'top drain',
      'top drained',
      'leaf<-PARENT_DOWN from top',
      'leaf drain',
      'leaf drained',
      'top<-PARENT_DOWN_HANDLED from leaf',
    ]);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, 'top']]);
  });

  it('a failing drain is logged and the translator still goes down', async () => {
    const leaf = new Node(init('leaf'));
    const top = new FailingDrain(init('top', [leaf]));
    top.notify(XlEvent.PARENT_DOWN);
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0);
    expect(journal).toContain('leaf<-PARENT_DOWN from top');
    expect(host.logs.some((l) => l.includes('disk gone') && l.includes('top-7'))).toBe(true);
  });

  it('PARENT_DOWN_HANDLED reaches the top only once every child handled it', async () => {
    const a = new Node(init('a'));
    const b = new Node(init('b'));
    const top = new Node(init('top', [a, b]));
    const ga = deferred();
    const gb = deferred();
    a.gate = ga.promise;
    b.gate = gb.promise;
    top.notify(XlEvent.PARENT_DOWN);
    await flush(5);
    expect(journal).toContain('a<-PARENT_DOWN from top');
    expect(journal).toContain('b<-PARENT_DOWN from top');
    ga.resolve();
    await until(() => journal.includes('top<-PARENT_DOWN_HANDLED from a'));
    await flush(5);
    expect(host.events).toEqual([]);
    gb.resolve();
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0);
    await flush(5);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, 'top']]);
  });

  it('a second PARENT_DOWN is ignored: one drain each, PARENT_DOWN_HANDLED once', async () => {
    const a = new Node(init('a'));
    const b = new Node(init('b'));
    const top = new Node(init('top', [a, b]));
    top.notify(XlEvent.PARENT_DOWN);
    top.notify(XlEvent.PARENT_DOWN);
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0);
    top.notify(XlEvent.PARENT_DOWN);
    await flush(5);
    expect(host.count(XlEvent.PARENT_DOWN_HANDLED)).toBe(1);
    expect([top.drains, a.drains, b.drains]).toEqual([1, 1, 1]);
    expect(journal.filter((l) => l === 'a<-PARENT_DOWN from top')).toHaveLength(1);
    expect(journal.filter((l) => l === 'b<-PARENT_DOWN from top')).toHaveLength(1);
  });

  it('PARENT_DOWN_HANDLED twice from the same child counts once', async () => {
    // Children that take PARENT_DOWN but leave answering to the test.
    class Silent extends Xlator {
      override notify(event: XlEvent): void {
        if (event !== XlEvent.PARENT_DOWN) super.notify(event);
      }
    }
    const a = new Silent(init('a'));
    const b = new Silent(init('b'));
    const top = new Xlator(init('top', [a, b]));
    top.notify(XlEvent.PARENT_DOWN);
    await flush(5);
    top.notify(XlEvent.PARENT_DOWN_HANDLED, a);
    top.notify(XlEvent.PARENT_DOWN_HANDLED, a);
    expect(host.events).toEqual([]);
    top.notify(XlEvent.PARENT_DOWN_HANDLED, b);
    top.notify(XlEvent.PARENT_DOWN_HANDLED, b);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, 'top']]);
  });

  it('a child that reports down before its parent was told to go down does not end the parent early', async () => {
    const a = new Xlator(init('a'));
    const top = new Xlator(init('top', [a]));
    top.notify(XlEvent.PARENT_DOWN_HANDLED, a);
    expect(host.events).toEqual([]);
    top.notify(XlEvent.PARENT_DOWN);
    await flush(5);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, 'top']]);
  });

  it('a leaf reports PARENT_DOWN_HANDLED to the host when it is the top', async () => {
    const solo = new Node(init('solo'));
    solo.notify(XlEvent.PARENT_DOWN);
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, 'solo']]);
    expect(solo.drains).toBe(1);
  });

  // A volfile may use one subvolume under two parents (the parser accepts it). drain()'s
  // contract: background work is finished "when the graph goes down, before the children do".
  it('with a shared child, a parent does not report PARENT_DOWN_HANDLED before its own drain finished', async () => {
    const shared = new Node(init('shared'));
    const a = new Node(init('a', [shared]));
    const b = new Node(init('b', [shared]));
    const top = new Node(init('top', [a, b]));
    const gb = deferred();
    b.gate = gb.promise;
    top.notify(XlEvent.PARENT_DOWN);
    await flush(20);
    const handledFromB = journal.indexOf('top<-PARENT_DOWN_HANDLED from b');
    const events = [...host.events];
    gb.resolve();
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0 && journal.includes('b drained'));
    expect(handledFromB).toBe(-1);
    expect(events).toEqual([]);
    expect(journal.indexOf('top<-PARENT_DOWN_HANDLED from b')).toBeGreaterThan(journal.indexOf('b drained'));
  });
});

// --- depth ----------------------------------------------------------------------------

describe('event delivery', () => {
  it('an event sent while another is being delivered waits its turn, and all are delivered before the first send returns', () => {
    const x = new UpLeaf(init('x'));
    const y = new UpLeaf(init('y'));
    const mid = new Node(init('mid', [x, y]));
    const top = new Node(init('top', [mid]));
    top.notify(XlEvent.PARENT_UP);
    expect(journal).toEqual([
      'top<-PARENT_UP',
      'mid<-PARENT_UP from top',
      'x<-PARENT_UP',
      'y<-PARENT_UP',
      'mid<-CHILD_UP from x',
      'mid<-CHILD_UP from y',
      'top<-CHILD_UP from mid',
      'top<-CHILD_UP from mid',
    ]);
    expect(host.events).toEqual([
      [XlEvent.CHILD_UP, 'top'],
      [XlEvent.CHILD_UP, 'top'],
    ]);
  });

  it('a translator whose notify throws is logged; the event still reaches the others', () => {
    class Broken extends Node {
      override notify(event: XlEvent, from?: Xlator): void {
        super.notify(event, from);
        throw new Error('boom');
      }
    }
    const a = new Broken(init('a'));
    const b = new Node(init('b'));
    const top = new Node(init('top', [a, b]));
    expect(() => top.notify(XlEvent.PARENT_UP)).not.toThrow();
    expect(journal).toContain('b<-PARENT_UP from top');
    expect(host.logs.some((l) => l.includes('a-7') && l.includes('handling PARENT_UP from top failed: boom'))).toBe(true);
  });
});

describe('a chain of any depth needs no stack frame per level', () => {
  const DEPTH = 20_000;
  /** DEPTH default translators over `leaf`; returns the top. */
  function chainOver(leaf: Xlator): Xlator {
    let below = leaf;
    for (let i = 1; i < DEPTH; i++) below = new Xlator(init(`x${i}`, [below]));
    return below;
  }

  it('a fop winds down to the leaf and its result comes back', async () => {
    const sink = new Sink(init('sink'));
    const top = chainOver(sink);
    const frame = host.frame('lookup');
    const loc: Loc = { path: '/deep' };
    const result = await fop(top, 'lookup')(frame, loc);
    expect(result).toEqual({ from: 'sink', op: 'lookup' });
    expect(sink.calls).toHaveLength(1);
    expectSame(sink.calls[0].args[0], frame, 'frame');
    expectSame(sink.calls[0].args[1], loc, 'loc');
  });

  it('an error from the leaf comes back up unchanged', async () => {
    class Failing extends Xlator {}
    Xlator.interceptAll(Failing, async () => {
      throw new FopError('ESTALE', 'deep down');
    });
    const top = chainOver(new Failing(init('leaf')));
    await expect(fop(top, 'stat')(host.frame('stat'), { path: '/x' })).rejects.toMatchObject({ code: 'ESTALE' });
  });

  it('PARENT_UP reaches the leaf and its CHILD_UP reaches the host', () => {
    const leaf = new UpLeaf(init('leaf'));
    const top = chainOver(leaf);
    top.notify(XlEvent.PARENT_UP);
    expect(journal).toEqual(['leaf<-PARENT_UP']);
    expect(host.events).toEqual([[XlEvent.CHILD_UP, top.name]]);
  });

  it('PARENT_DOWN reaches the leaf and PARENT_DOWN_HANDLED the host', async () => {
    const leaf = new Node(init('leaf'));
    const top = chainOver(leaf);
    top.notify(XlEvent.PARENT_DOWN);
    await until(() => host.count(XlEvent.PARENT_DOWN_HANDLED) > 0, 10_000);
    expect(leaf.drains).toBe(1);
    expect(host.events).toEqual([[XlEvent.PARENT_DOWN_HANDLED, top.name]]);
  });
});
