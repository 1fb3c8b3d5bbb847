// The internal locks that serialise changes to one object between clients: an inodelk per
// kind (data, metadata) in replicate's own domains, entrylks on names for changes to a
// directory. Every copy is locked, always in child order, so two clients never each hold a
// part of what the other waits for: first all at once without waiting (the usual case: no
// contention), and if anything is taken, everything is given back and taken again one
// child after the other, waiting (GlusterFS's non-blocking, then blocking, lock phases).
import { FopError, Frame, LOCK_TO_EOF, ROOT_CALLER, XlatorHost } from '../../../src/core/index';
import type { Flock, Inode, Logger, Name } from '../../../src/core/index';
import { Children, isGone } from './children';

/** What one lock covers: a whole inode in a domain, or names in directories. */
export type LockTarget =
  | { readonly kind: 'inode'; readonly domain: string; readonly inode: Inode }
  | { readonly kind: 'entry'; readonly domain: string; readonly names: readonly { readonly dir: Inode; readonly name?: Name }[] };

const WHOLE: Flock = { type: 'write', start: 0, end: LOCK_TO_EOF, pid: 0 };
const UNLOCK: Flock = { type: 'unlock', start: 0, end: LOCK_TO_EOF, pid: 0 };

let owners = 0;
/** A lock owner nobody else uses (the brick adds the client's identity in front). */
export const newOwner = (what: string): string => `afr.${what}.${process.pid}.${++owners}`;

export class LockTimeout extends FopError {
  constructor(what: string, ms: number) {
    super('EIO', `waited ${ms} ms for ${what}`);
  }
}

/** Names in a fixed order (directory GFID, then name), so every client takes them alike. */
function sortedNames(t: Extract<LockTarget, { kind: 'entry' }>) {
  const key = (n: { dir: Inode; name?: Name }) => `${n.dir.gfid}/${n.name ?? ''}`;
  const seen = new Set<string>();
  return [...t.names].sort((a, b) => (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0)).filter((n) => !seen.has(key(n)) && seen.add(key(n)));
}

/**
 * Locks held on some children for one owner. `acquire` returns the children it holds the
 * lock on; a child that is down, or whose copy is missing, is left out (the change then
 * counts as missed there). `release` gives everything back (best effort: a child that went
 * down dropped its locks with its connection).
 */
export class HeldLocks {
  private held: number[] = [];
  /** Why children were left out, by child. */
  private readonly leftOut = new Map<number, FopError>();

  constructor(
    private readonly children: Children,
    private readonly host: XlatorHost,
    private readonly log: Logger,
    readonly owner: string,
    readonly target: LockTarget,
    private readonly timeoutMs: number,
  ) {}

  get on(): readonly number[] {
    return this.held;
  }

  private frame(op: string): Frame {
    return this.host.frame(op, { caller: ROOT_CALLER, lkOwner: this.owner });
  }

  /** Takes the lock on child i (waiting or not); throws what the child answered. */
  private async take(i: number, wait: boolean): Promise<void> {
    const t = this.target;
    if (t.kind === 'inode') {
      await this.callBounded(i, wait, (f) => this.children.call(i, f, 'inodelk', t.domain, { inode: t.inode }, wait ? 'wait' : 'set', WHOLE));
      return;
    }
    const got: { dir: Inode; name?: Name }[] = [];
    try {
      for (const n of sortedNames(t)) {
        await this.callBounded(i, wait, (f) => this.children.call(i, f, 'entrylk', t.domain, { inode: n.dir }, n.name, wait ? 'lock' : 'trylock', 'write'));
        got.push(n);
      }
    } catch (e) {
      await this.untake(i, got);
      throw e;
    }
  }

  /** A waiting lock call, given up after timeoutMs (its frame interrupted, so it leaves the brick's queue). */
  private async callBounded(i: number, wait: boolean, fn: (f: Frame) => Promise<unknown>): Promise<void> {
    const f = this.frame('lock');
    const timer = wait ? setTimeout(() => f.interrupt(), this.timeoutMs) : undefined;
    try {
      await fn(f);
    } catch (e) {
      if (f.interrupted) throw new LockTimeout(`${this.describe()} on ${this.children.names[i]}`, this.timeoutMs);
      throw e;
    } finally {
      clearTimeout(timer);
      f.done();
    }
  }

  private async untake(i: number, names?: readonly { dir: Inode; name?: Name }[]): Promise<void> {
    const f = this.frame('unlock');
    const t = this.target;
    try {
      if (t.kind === 'inode') await this.children.call(i, f, 'inodelk', t.domain, { inode: t.inode }, 'set', UNLOCK);
      else for (const n of names ?? sortedNames(t)) await this.children.call(i, f, 'entrylk', t.domain, { inode: n.dir }, n.name, 'unlock', 'write');
    } catch (e) {
      // A child that is gone dropped the lock with its connection.
      if (!isGone(FopError.from(e))) this.log.warn(`releasing ${this.describe()} on ${this.children.names[i]}: ${(e as Error).message}`);
    } finally {
      f.done();
    }
  }

  describe(): string {
    const t = this.target;
    return t.kind === 'inode' ? `the ${t.domain} lock of ${t.inode.gfid}` : `the ${t.domain} lock of ${t.names.map((n) => `<gfid:${n.dir.gfid}>/${n.name ?? '*'}`).join(', ')}`;
  }

  /**
   * Takes the lock on the children listed (up ones). Returns those holding it. A child that
   * is gone or has no copy is left out; a lock that cannot be had within timeoutMs is an
   * error (everything taken is given back), as is an interrupted caller.
   */
  async acquire(on: readonly number[], caller?: Frame): Promise<readonly number[]> {
    const targets = [...on].sort((a, b) => a - b);
    const tries = await this.children.each(targets, (i) => this.take(i, false));
    const busy = [...tries].filter(([, o]) => !o.ok && o.error.code === 'EAGAIN').map(([i]) => i);
    const got = [...tries].filter(([, o]) => o.ok).map(([i]) => i);
    this.noteFailures(tries);
    if (busy.length === 0) return (this.held = got);
    // Contention: give everything back and queue for each lock in child order.
    await Promise.all(got.map((i) => this.untake(i)));
    const held: number[] = [];
    for (const i of targets) {
      if (caller?.interrupted) break;
      try {
        await this.take(i, true);
        held.push(i);
      } catch (e) {
        const err = FopError.from(e);
        if (err instanceof LockTimeout || err.code === 'EINTR' || err.code === 'EDEADLK') {
          this.held = held;
          await this.release();
          throw err;
        }
        this.leave(i, err);
      }
    }
    if (caller?.interrupted) {
      this.held = held;
      await this.release();
      throw new FopError('EINTR', `interrupted while waiting for ${this.describe()}`);
    }
    return (this.held = held);
  }

  /**
   * Takes the lock on the children listed without waiting. Returns those holding it, or
   * undefined (and holds nothing) if any of them has it taken already.
   */
  async tryAcquire(on: readonly number[]): Promise<readonly number[] | undefined> {
    const tries = await this.children.each([...on].sort((a, b) => a - b), (i) => this.take(i, false));
    this.noteFailures(tries);
    this.held = [...tries].filter(([, o]) => o.ok).map(([i]) => i);
    if ([...tries.values()].some((o) => !o.ok && o.error.code === 'EAGAIN')) {
      await this.release();
      return undefined;
    }
    return this.held;
  }

  private noteFailures(tries: ReadonlyMap<number, { ok: boolean; error?: FopError }>): void {
    for (const [i, o] of tries) if (!o.ok && o.error!.code !== 'EAGAIN') this.leave(i, o.error!);
  }

  private leave(i: number, e: FopError): void {
    this.leftOut.set(i, e);
    this.log.debug(`${this.describe()}: ${this.children.names[i]} left out: ${e.message}`);
  }

  /** The error for a lock held nowhere: what a copy said about the object, else that none is reachable. */
  failure(what: string): FopError {
    const errors = [...this.leftOut.values()];
    const e = errors.find((x) => !isGone(x)) ?? errors[0];
    return e ? new FopError(e.code, `${what}: ${e.detail ?? e.message}`) : new FopError('ENOTCONN', `${what}: no child is up`);
  }

  async release(): Promise<void> {
    const on = this.held;
    this.held = [];
    await Promise.all(on.map((i) => this.untake(i)));
  }

  /** Drops child i from the holders (it went down: its brick dropped the lock). */
  forget(i: number): void {
    this.held = this.held.filter((c) => c !== i);
  }
}
