// Test-only variants of the bridge and the switcher that do what older designs did. Each
// flaw is one design choice (most with a GlusterFS bug behind it); a race test runs the
// same schedule on the real bridge and on a variant with the flaw, and shows that the
// variant fails (hangs, leaks or corrupts) where the real one does not.
import { v4 as uuidv4 } from 'uuid';
import { FopError } from '../../src/core/errors';
import { Fd } from '../../src/core/fd';
import type { Loc } from '../../src/core/fops';
import type { Frame } from '../../src/core/frame';
import type { Graph } from '../../src/core/graph';
import { Inode } from '../../src/core/inode';
import type { Logger } from '../../src/core/log';
import { defineTranslator } from '../../src/core/registry';
import type { Iatt } from '../../src/core/types';
import { Xlator } from '../../src/core/xlator';
import type { BaseFd, GraphFd } from '../../src/fuse/basefd';
import { BridgeCore, BridgeOptions } from '../../src/fuse/core';
import { MigrationBounds, Migrator, held, inFrame } from '../../src/fuse/migrator';
import { Resolver } from '../../src/fuse/resolver';
import { GraphSwitcher, ReloadResult, SwitcherOptions } from '../../src/fuse/switcher';

export type BridgeFlaw =
  /** 2012: one fd per open, its inode and per-translator state moved to the new graph in place. */
  | 'swap-inode-on-migrate'
  /** fuse_create_cbk: the fd takes whatever inode the table links for the new name. */
  | 'swap-inode-on-create'
  /** Migration without the handle's own lock. */
  | 'no-basefd-lock'
  /** Reopen on the new graph without flushing what the old graph holds back. */
  | 'no-flush-on-migrate'
  /** Reopen by the path the file was opened with, not by GFID. */
  | 'migrate-by-path'
  /** Any failed migration makes the handle EBADF for good, even on a graph whose children are down. */
  | 'fail-forever'
  /** #4841: a failed reopen keeps the new fd it made. */
  | 'leak-failed-reopen'
  /** #4836: close releases only the fd made at open, never the one the handle migrated to. */
  | 'release-first-fd-only'
  /** Eager migration at switch time only (GlusterFS before 811654ddf7): no migration on first use. */
  | 'eager-only'
  /** The new graph answers path requests about a file whose writes an older graph still holds. */
  | 'no-catch-up';

/** What the flawed core and migrator share: the flaws, and what an older design remembered per handle. */
class Legacy {
  readonly openedAs = new Map<number, string>();
  readonly first = new Map<number, Fd>();

  constructor(readonly flaws: ReadonlySet<BridgeFlaw>) {}

  has(f: BridgeFlaw): boolean {
    return this.flaws.has(f);
  }
}

class LegacyMigrator extends Migrator {
  constructor(
    active: () => Graph,
    log: Logger,
    bounds: MigrationBounds,
    private readonly legacy: Legacy,
  ) {
    super(active, log, bounds);
  }

  override resolve(base: BaseFd): Promise<GraphFd> {
    if (this.legacy.has('eager-only')) return Promise.resolve(held(base.current));
    if (!this.legacy.has('no-basefd-lock')) return super.resolve(base);
    if (base.current.graph === this.target) return Promise.resolve(held(base.current));
    return this.migrate(base).then(held);
  }

  /** Eager migration: called for every handle at the switch. */
  migrateNow(base: BaseFd): Promise<GraphFd> {
    return this.migrate(base);
  }

  protected override async migrate(base: BaseFd): Promise<GraphFd> {
    try {
      return this.legacy.has('swap-inode-on-migrate') ? await this.migrateInPlace(base) : await super.migrate(base);
    } catch (e) {
      if (this.legacy.has('fail-forever')) base.failed = true;
      throw e;
    }
  }

  /** The 2012 design: the same fd object is pointed at the new graph's inode. */
  private async migrateInPlace(base: BaseFd): Promise<GraphFd> {
    const target = this.target;
    const from = base.current;
    if (from.graph === target) return from;
    const inode = await this.findOn(target, base);
    if (!inode) throw new FopError('EBADF', 'not found on the new graph');
    const fd = from.fd;
    (fd as { inode: Inode }).inode = inode;
    from.graph.fds.delete(fd);
    target.fds.add(fd);
    base.current = { graph: target, fd };
    await inFrame(target, 'open', (frame) => target.top.open(frame, { path: base.path, inode }, fd));
    // The old graph's state for this fd goes now, whatever is still in flight on it.
    for (const xl of from.graph.xlators.values()) {
      if (!fd.ctx.has(xl)) continue;
      await xl.release(fd);
      fd.ctx.delete(xl);
    }
    return base.current;
  }

  protected override async flushOld(base: BaseFd, from: GraphFd): Promise<void> {
    if (!this.legacy.has('no-flush-on-migrate')) await super.flushOld(base, from);
  }

  protected override async findOn(g: Graph, base: BaseFd): Promise<Inode | undefined> {
    if (!this.legacy.has('migrate-by-path')) return super.findOn(g, base);
    const path = this.legacy.openedAs.get(base.id)!;
    try {
      return (await inFrame(g, 'lookup', (frame) => new Resolver(g, frame, true).inode(path))).inode;
    } catch {
      base.failed = true;
      throw new FopError('EBADF', `${path} is gone from graph ${g.id}`);
    }
  }

  protected override discard(fd: Fd): Promise<void> {
    return this.legacy.has('leak-failed-reopen') ? Promise.resolve() : super.discard(fd);
  }

  protected override dropOld(from: GraphFd): void {
    if (!this.legacy.has('release-first-fd-only')) super.dropOld(from);
  }

  override async close(base: BaseFd): Promise<void> {
    if (this.legacy.has('release-first-fd-only')) return this.legacy.first.get(base.id)!.unref();
    if (this.legacy.has('no-basefd-lock')) return base.current.fd.unref();
    return super.close(base);
  }
}

export class LegacyCore extends BridgeCore {
  private constructor(
    graph: Graph,
    log: Logger,
    opts: BridgeOptions,
    private readonly legacy: Legacy,
  ) {
    super(graph, log, opts);
  }

  static make(graph: Graph, log: Logger, opts: BridgeOptions, flaws: ReadonlySet<BridgeFlaw>): LegacyCore {
    const legacy = new Legacy(flaws);
    return new LegacyCore(graph, log, { ...opts, migrator: (a, l, b) => new LegacyMigrator(a, l, b, legacy) }, legacy);
  }

  override activate(g: Graph): void {
    super.activate(g);
    // Eager migration: every handle known right now is moved, in the background.
    if (this.legacy.has('eager-only')) for (const base of [...this.basefds.all()]) void (this.migrator as LegacyMigrator).migrateNow(base).catch(() => undefined);
  }

  protected override catchUp(gfid: string): Promise<boolean> {
    return this.legacy.has('no-catch-up') ? Promise.resolve(false) : super.catchUp(gfid);
  }

  protected override addBase(g: Graph, fd: Fd, path: string | undefined): number {
    const id = super.addBase(g, fd, path);
    this.legacy.openedAs.set(id, path!);
    this.legacy.first.set(id, fd);
    return id;
  }

  protected override async createOn(g: Graph, frame: Frame, at: Loc, mode: number, flags: number): Promise<{ fd: Fd; iatt: Iatt }> {
    if (!this.legacy.has('swap-inode-on-create')) return super.createOn(g, frame, at, mode, flags);
    // An inode the table does not know yet: it is linked when the reply comes.
    const fresh = new Inode(uuidv4(), g.itable);
    const fd = g.newFd(fresh, flags, false);
    const iatt = await g.top.create(frame, { ...at, inode: fresh }, mode, fd);
    const linked = g.itable.link(iatt, at.parent, at.name);
    if (linked !== fresh) (fd as { inode: Inode }).inode = linked;
    return { fd, iatt };
  }
}

export type SwitcherFlaw =
  /** GlusterFS's handle_graph_switch: the switch waits until the old graph has nothing in flight. */
  | 'switch-barrier'
  /** Every graph that comes up becomes active, in the order they come up. */
  | 'no-supersede';

export class LegacySwitcher extends GraphSwitcher {
  /** The switch-barrier variant is waiting for the old graph to have nothing in flight. */
  waitingForDrain = false;

  constructor(
    opts: SwitcherOptions,
    private readonly flaws: ReadonlySet<SwitcherFlaw>,
  ) {
    super(opts);
  }

  override reload(): Promise<ReloadResult> {
    return this.flaws.has('no-supersede') ? this.reloadNow() : super.reload();
  }

  protected override async activate(g: Graph, reason: string): Promise<void> {
    if (this.flaws.has('switch-barrier')) {
      const old = this.bridge.active;
      this.waitingForDrain = true;
      // Until the old graph is idle, or gone (the test is over: stop polling).
      const drained = await new Promise<boolean>((resolve) => {
        const check = () => (old.pendingFrames === 0 ? resolve(true) : old.state === 'dead' ? resolve(false) : setTimeout(check, 5).unref());
        check();
      });
      if (!drained) return;
    }
    return super.activate(g, reason);
  }
}

/**
 * A lock taken and released through a pointer (GlusterFS's LOCK(&fd->inode->lock)):
 * unlocking a lock nobody holds is silently ignored, as a plain mutex would misbehave.
 */
export class PointerLock {
  private holder = false;
  private readonly waiters: (() => void)[] = [];

  get isHeld(): boolean {
    return this.holder;
  }

  get waiting(): number {
    return this.waiters.length;
  }

  async lock(): Promise<void> {
    if (!this.holder) {
      this.holder = true;
      return;
    }
    await new Promise<void>((r) => this.waiters.push(r));
  }

  unlock(): void {
    if (!this.holder) return;
    const next = this.waiters.shift();
    if (next) next();
    else this.holder = false;
  }
}

/**
 * test/inode-serializer: a translator that serializes requests per file the way GlusterFS
 * translators do, by locking `fd.inode` on the way down and unlocking `fd.inode` on the way
 * up (the pointer is read twice). Its release takes the same lock; its drain waits for
 * every lock to be free.
 */
export class InodeSerializer extends Xlator {
  readonly locks = new Map<Inode, PointerLock>();
  private finished = false;

  lockOf(inode: Inode): PointerLock {
    let l = this.locks.get(inode);
    if (!l) this.locks.set(inode, (l = new PointerLock()));
    return l;
  }

  heldLocks(): string[] {
    return [...this.locks].filter(([, l]) => l.isHeld).map(([i]) => i.gfid);
  }

  override async release(fd: Fd): Promise<void> {
    await this.lockOf(fd.inode).lock();
    fd.ctx.delete(this);
    this.lockOf(fd.inode).unlock();
  }

  protected override async drain(): Promise<void> {
    // A lock that stays held forever (the race this reproduces) is waited for until fini.
    while (!this.finished && this.heldLocks().length) await new Promise((r) => setTimeout(r, 5).unref());
  }

  override async fini(): Promise<void> {
    this.finished = true;
  }

  override dump(): Record<string, unknown> {
    return { heldLocks: this.heldLocks() };
  }
}

Xlator.interceptAll(InodeSerializer, async (xl, _op, args, next) => {
  const fd = args[1];
  if (!(fd instanceof Fd)) return next();
  fd.ctx.set(xl, true);
  await xl.lockOf(fd.inode).lock();
  try {
    return await next();
  } finally {
    xl.lockOf(fd.inode).unlock();
  }
});

export const inodeSerializer = defineTranslator({
  type: 'test/inode-serializer',
  description: 'serializes requests per file by locking through fd.inode (test only)',
  options: {},
  subvolumes: { min: 1, max: 1 },
  create: (init) => new InodeSerializer(init),
});
