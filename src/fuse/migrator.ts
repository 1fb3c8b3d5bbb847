import { constants } from 'fs';
import { FopError } from '../core/errors';
import { Fd, reopenFlags } from '../core/fd';
import type { Frame } from '../core/frame';
import type { Graph } from '../core/graph';
import type { Inode } from '../core/inode';
import type { Logger } from '../core/log';
import { Expired, withDeadline } from '../core/time';
import type { BaseFd, GraphFd } from './basefd';
import { Resolver } from './resolver';

/** The GraphFd with a reference taken for the caller. */
export const held = (g: GraphFd): GraphFd => (g.fd.ref(), g);

export interface MigrationBounds {
  /** How long a handle waits for its old graph to flush what it holds back; then it moves on. */
  readonly flushMs: number;
  /** How long a request waits for a handle that another request is migrating. */
  readonly lockWaitMs: number;
}

export const DEFAULT_MIGRATION_BOUNDS: MigrationBounds = { flushMs: 5_000, lockWaitMs: 15_000 };

const O_ACCMODE = 0o3;
const writable = (flags: number) => (flags & O_ACCMODE) !== constants.O_RDONLY;

export async function inFrame<T>(g: Graph, op: string, fn: (frame: Frame) => Promise<T>): Promise<T> {
  const frame = g.frame(op);
  try {
    return await fn(frame);
  } finally {
    frame.done();
  }
}

/**
 * Moves handles to the active graph, each on its own first use after a switch, under its
 * own lock: flush what the old graph holds for it (bounded), find its inode on the new graph
 * by GFID (by path as a fallback, checked by GFID), open a new Fd with the original flags
 * minus create/exclusive/truncate, keep it, drop the old one. An Fd's inode never changes.
 */
export class Migrator {
  constructor(
    private readonly active: () => Graph,
    protected readonly log: Logger,
    protected readonly bounds: MigrationBounds = DEFAULT_MIGRATION_BOUNDS,
  ) {}

  protected get target(): Graph {
    return this.active();
  }

  /**
   * The Fd that serves a handle now, with a reference the caller drops. A handle whose Fd
   * is on the active graph is a hit; otherwise it migrates, under its own lock. The
   * reference is taken in the same step as the choice, so nothing can close it in between.
   */
  resolve(base: BaseFd): Promise<GraphFd> {
    if (base.current.graph === this.target) return Promise.resolve(held(base.current));
    return base.lock.run(async () => held(await this.migrate(base)), this.bounds.lockWaitMs);
  }

  /** Migrates a handle nobody is using now; a failure is its own next user's to see. */
  moveToActive(base: BaseFd): Promise<void> {
    return this.resolve(base).then(
      (r) => r.fd.unref(),
      () => undefined,
    );
  }

  /**
   * Moves a handle to the active graph. A file the new graph cannot find keeps its old graph
   * until released; a reopen that fails leaves this handle EBADF from then on (unless the new
   * graph is down, which a later switch may mend).
   */
  protected async migrate(base: BaseFd): Promise<GraphFd> {
    const target = this.target;
    const from = base.current;
    if (from.graph === target || base.stuckOn === target) return from;
    if (base.failed) throw new FopError('EBADF', `handle ${base.id} (${base.name}) could not be reopened after a graph switch`);
    await this.flushOld(base, from);
    const inode = await this.findOn(target, base);
    const fd = inode && (await this.reopen(target, base, inode));
    if (!fd) return this.stay(base, target, from);
    base.current = { graph: target, fd };
    base.reached.add(target.id);
    this.log.debug(`handle ${base.id} (${base.name}): graph ${from.graph.id} -> ${target.id}`);
    this.dropOld(from);
    return base.current;
  }

  /**
   * What the old graph holds back for a file (write-behind) must reach storage before the new
   * Fd serves. A flush whose answer does not come within the bound is given up on: the handle
   * moves on, and if it was open for writing, its next request fails once with EIO (the old
   * graph may have lost writes it acknowledged). Only the old graph's cleanup waits longer.
   */
  protected async flushOld(base: BaseFd, from: GraphFd): Promise<void> {
    if (base.isDir) return;
    const what = `flush of handle ${base.id} (${base.name}) on graph ${from.graph.id}`;
    try {
      await withDeadline(
        inFrame(from.graph, 'flush', (frame) => from.graph.top.flush(frame, from.fd)),
        this.bounds.flushMs,
        what,
      );
    } catch (e) {
      if (!(e instanceof Expired)) {
        // A write the old graph acknowledged failed: the handle's next request reports it.
        base.pendingError = FopError.from(e);
        this.log.warn(`${what} failed (${base.pendingError.code}); the handle moves on and its next request reports it`);
        return;
      }
      const lost = writable(base.flags);
      this.log.error(`${e.message}; the handle moves on to graph ${this.target.id}${lost ? ' and its next request fails with EIO' : ''}`);
      if (lost) base.pendingError = new FopError('EIO', `${what} got no answer: writes it held may be lost`);
    }
  }

  /**
   * Opens the handle's file on the target graph with its original flags (minus
   * create/exclusive/truncate). Undefined: the graph cannot find it. A failure on a graph
   * whose children are down is passed on (a later switch may mend it); any other makes the
   * handle EBADF for good. A failed open leaves nothing behind.
   */
  protected async reopen(target: Graph, base: BaseFd, inode: Inode): Promise<Fd | undefined> {
    const fd = target.newFd(inode, reopenFlags(base.flags), base.isDir, base.openId);
    try {
      await inFrame(target, 'open', (frame) => {
        const loc = { path: base.path, inode };
        return base.isDir ? target.top.opendir(frame, loc, fd) : target.top.open(frame, loc, fd);
      });
      return fd;
    } catch (e) {
      await this.discard(fd);
      const err = FopError.from(e);
      if (err.code === 'ENOTCONN') throw err;
      if (err.code === 'ESTALE' || err.code === 'ENOENT') return undefined;
      base.failed = true;
      this.log.error(`handle ${base.id} (${base.name}): reopen on graph ${target.id} failed (${err.code}); it answers EBADF from now on`);
      throw new FopError('EBADF', `handle ${base.id} could not be reopened on graph ${target.id}`);
    }
  }

  /** An Fd that never served: release whatever its open left on the translators. */
  protected discard(fd: Fd): Promise<void> {
    return fd.unref();
  }

  /** The handle moved on: drop its reference on the old Fd (requests still on it keep theirs). */
  protected dropOld(from: GraphFd): void {
    void from.fd.unref();
  }

  /** The new graph cannot find the handle's file: the old graph keeps serving it until released. */
  protected stay(base: BaseFd, target: Graph, from: GraphFd): GraphFd {
    base.stuckOn = target;
    this.log.warn(`handle ${base.id} (${base.name}): GFID ${base.gfid} not found on graph ${target.id}; it stays on graph ${from.graph.id} until released`);
    return from;
  }

  /** The inode of a handle on another graph: by GFID first, then by its path (if known), checked by GFID. */
  protected async findOn(g: Graph, base: BaseFd): Promise<Inode | undefined> {
    const byGfid = await findByGfid(g, base.gfid);
    if (byGfid || base.path === undefined) return byGfid;
    const path = base.path;
    try {
      const byPath = await inFrame(g, 'lookup', (frame) => new Resolver(g, frame, true).inode(path));
      return byPath.inode.gfid === base.gfid ? byPath.inode : undefined;
    } catch {
      return undefined;
    }
  }

  /** Closes a handle: releases its Fd (any earlier one was released when it moved on). */
  async close(base: BaseFd): Promise<void> {
    await base.lock.run(() => base.current.fd.unref(), this.bounds.lockWaitMs);
  }
}

/** The inode of a GFID on a graph (a nameless lookup unless the table knows its type); undefined if gone. */
export async function findByGfid(g: Graph, gfid: string): Promise<Inode | undefined> {
  const known = g.itable.find(gfid);
  if (known?.type) return known;
  try {
    return await inFrame(g, 'lookup', async (frame) => g.itable.link(await g.top.lookup(frame, { gfid })));
  } catch (e) {
    const code = FopError.from(e).code;
    if (code !== 'ESTALE' && code !== 'ENOENT') throw e;
    return undefined;
  }
}
