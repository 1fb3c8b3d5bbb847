// Changes as transactions (GlusterFS's afr-transaction.c): lock the object on every copy
// (in child order), mark it dirty there and record against the copies left out that they
// miss this change (pre-op), make the change on each, record against those where it failed
// (before the caller hears of it), then clear the dirty marks (post-op) and unlock. A rename
// across directories is recorded as missed by a copy that was behind in either of them: the
// name it moves may stand for another object there.
//
// Data changes share their lock and pre-op while they keep coming (eager locking with a
// delayed post-op): a burst of writes to one file costs one lock, one pre-op and one post-op
// in all, and what a failed write must record is recorded before that write is answered.
// The shared lock is given back after post-op-delay idle, on flush and release of the file,
// when a child comes up (the next change must include it), when a heal of this client wants
// it, and at most EAGER_MAX_HOLD_MS after it was taken, so other clients get their turn.
// Changes to names in one directory share a lock on the whole directory the same way
// (given back after ENTRY_IDLE_MS idle).
import { FopError, Frame, ROOT_CALLER } from '../../../src/core/index';
import type { Clock, Inode, Logger, Name, Timer, XlatorHost } from '../../../src/core/index';
import { Changelog, CopyLog, Kind, judge } from './changelog';
import { Children, Outcome, Quorum, firstError, isGone, quorumMet, succeeded } from './children';
import { InodeStates } from './inode-state';
import { HeldLocks, LockTarget, newOwner } from './locks';

/** How long one client may keep a shared lock while it keeps changing the object. */
export const EAGER_MAX_HOLD_MS = 2000;
/**
 * How long an idle directory lock is kept: long enough for back-to-back changes (an rm -r,
 * an untar), short enough that another client's create in that directory hardly waits.
 */
export const ENTRY_IDLE_MS = 100;

export interface TxnOptions {
  readonly eager: boolean;
  readonly postOpDelayMs: number;
  readonly lockTimeoutMs: number;
  readonly quorum: Quorum;
}

export interface TxnDeps {
  readonly name: string;
  readonly children: Children;
  readonly host: XlatorHost;
  readonly log: Logger;
  readonly changelog: Changelog;
  readonly states: InodeStates;
  readonly clock: Clock;
  readonly options: () => TxnOptions;
}

/** A change to one object's data or metadata. */
export interface InodeChange<T> {
  readonly kind: 'data' | 'metadata';
  readonly inode: Inode;
  readonly frame: Frame;
  /** For messages. */
  readonly what: string;
  /** The children the change can go to, among those holding the lock (an fd may have to be opened there first). */
  readonly targets?: (holding: readonly number[]) => Promise<readonly number[]>;
  readonly run: (child: number) => Promise<T>;
}

/** A change to names in directories (create, unlink, rename...). */
export interface EntryChange<T> {
  readonly frame: Frame;
  readonly what: string;
  /** The directories whose entries change (their changelogs record it). */
  readonly dirs: readonly Inode[];
  /** The names locked. */
  readonly names: readonly { readonly dir: Inode; readonly name: Name }[];
  /** The object whose attributes the answer carries, if any but a new one (a link, a rename). */
  readonly answer?: Inode;
  readonly run: (child: number) => Promise<T>;
}

export interface Done<T> {
  readonly value: T;
  /** The children where the change was made. */
  readonly on: readonly number[];
}

/** One lock and pre-op on an object, shared by the changes made under it. */
class Session {
  readonly owner: string;
  readonly startedAt: number;
  readonly generation: number;
  locks!: HeldLocks;
  /** Children whose copies carry this session's dirty mark. */
  preOp: readonly number[] = [];
  /** Children already recorded as behind on the copies of preOp. */
  readonly marked = new Set<number>();
  /** Children the pre-op recorded as behind (left out of the session). */
  premarked: readonly number[] = [];
  /**
   * Of a session over several directories (a rename across them): children whose copy of
   * one of them was behind at pre-op, by its changelog. A name there may stand for another
   * object on such a copy, so what the change does to the other directory may differ there.
   */
  stale: ReadonlySet<number> = new Set();
  /** A change of the session was made somewhere (else the pre-op's records are undone). */
  changed = false;
  users = 0;
  /** No more changes join; it ends when the last user leaves. */
  closing = false;
  ready!: Promise<void>;
  idle?: Timer;
  /** close() has begun (it runs once). */
  closeStarted = false;
  private resolveEnded!: () => void;
  readonly ended = new Promise<void>((r) => (this.resolveEnded = r));
  private endedFlag = false;

  constructor(
    readonly key: string,
    readonly kind: Kind,
    readonly dirs: readonly Inode[],
    now: number,
    generation: number,
  ) {
    this.owner = newOwner(kind);
    this.startedAt = now;
    this.generation = generation;
  }

  end(): void {
    if (this.endedFlag) return;
    this.endedFlag = true;
    this.resolveEnded();
  }

  get isEnded(): boolean {
    return this.endedFlag;
  }
}

/** In-process locks on keys: a run holds all its keys (taken in sorted order) while it runs. */
class KeyedLocks {
  private readonly held = new Map<string, Promise<void>>();

  async run<T>(keys: readonly string[], fn: () => Promise<T>): Promise<T> {
    const sorted = [...new Set(keys)].sort();
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    const before = sorted.map((k) => this.held.get(k)).filter((p): p is Promise<void> => !!p);
    for (const k of sorted) this.held.set(k, mine);
    try {
      await Promise.all(before);
      return await fn();
    } finally {
      release();
      for (const k of sorted) if (this.held.get(k) === mine) this.held.delete(k);
    }
  }
}

export class Transactions {
  /** Shared (eager) sessions, by kind and GFID. */
  private readonly sessions = new Map<string, Session>();
  /** Names this client is changing under a shared directory lock, one change at a time each. */
  private readonly names = new KeyedLocks();
  /** Every session open now, shared or not. */
  private readonly live = new Set<Session>();

  constructor(private readonly d: TxnDeps) {}

  private get o(): TxnOptions {
    return this.d.options();
  }

  domain(kind: Kind): string {
    return `${this.d.name}.${kind}`;
  }

  private frame(owner: string, op: string): Frame {
    return this.d.host.frame(op, { caller: ROOT_CALLER, lkOwner: owner });
  }

  quorumMet(on: readonly number[]): boolean {
    return quorumMet(this.o.quorum, this.d.children.n, on);
  }

  private checkQuorum(on: readonly number[], what: string): void {
    if (!this.quorumMet(on)) {
      throw new FopError('ENOTCONN', `${what}: client quorum not met (${on.length} of ${this.d.children.n} children: ${on.map((i) => this.d.children.names[i]).join(', ') || 'none'})`);
    }
  }

  // --- sessions -----------------------------------------------------------------------

  /** Locks and pre-ops a session on the up children; ends it on failure. */
  private async open(s: Session, target: LockTarget, frame: Frame, what: string): Promise<void> {
    const c = this.d.children;
    this.live.add(s);
    try {
      const up = c.upList();
      this.checkQuorum(up, what);
      s.locks = new HeldLocks(c, this.d.host, this.d.log, s.owner, target, this.o.lockTimeoutMs);
      const locked = await s.locks.acquire(up, frame);
      if (locked.length === 0) throw s.locks.failure(what);
      this.checkQuorum(locked, what);
      // Dirty where the change is going, behind where it is not.
      const absent = new Map<number, number>();
      for (let i = 0; i < c.n; i++) if (!locked.includes(i)) absent.set(i, 1);
      const delta = this.d.changelog.add(s.kind, { dirty: 1, pending: absent });
      const f = this.frame(s.owner, 'pre-op');
      try {
        const r = await c.each(locked, (i) => Promise.all(s.dirs.map((dir) => c.call(i, f, 'xattrop', { inode: dir }, 'add', delta))));
        s.preOp = succeeded(r).filter((i) => c.isUp(i));
        if (s.preOp.length === 0) throw firstError(r);
        if (s.dirs.length > 1) s.stale = this.behindAtPreOp(s, r);
      } finally {
        f.done();
      }
      for (const i of absent.keys()) s.marked.add(i);
      s.premarked = [...absent.keys()];
      this.checkQuorum(s.preOp, what);
    } catch (e) {
      await this.close(s);
      throw e;
    }
  }

  /** The children some directory's changelog, as the pre-op left it, accuses (a split brain names nobody). */
  private behindAtPreOp(s: Session, r: ReadonlyMap<number, Outcome<Record<string, Buffer>[]>>): Set<number> {
    const out = new Set<number>();
    s.dirs.forEach((dir, d) => {
      const logs = [...Array(this.d.children.n).keys()].map((i): CopyLog | undefined => {
        const o = r.get(i);
        if (!o?.ok || !s.preOp.includes(i)) return undefined;
        try {
          return this.d.changelog.parse(o.value[d]);
        } catch (e) {
          this.d.log.warn(`pre-op of ${s.key}: the changelog of ${dir.gfid} on ${this.d.children.names[i]} is malformed: ${(e as Error).message}`);
          return undefined;
        }
      });
      const v = judge(logs, s.kind);
      if (!v.splitBrain) for (const i of v.sinks) out.add(i);
    });
    return out;
  }

  /** Post-op (clears the dirty marks where they were set and can be reached) and unlock. */
  private async close(s: Session): Promise<void> {
    if (s.closeStarted) return s.ended;
    s.closeStarted = true;
    s.closing = true;
    if (this.sessions.get(s.key) === s) this.sessions.delete(s.key);
    this.live.delete(s);
    s.idle?.cancel();
    try {
      const c = this.d.children;
      const on = s.preOp.filter((i) => c.isUp(i));
      if (on.length > 0) {
        // Nothing changed anywhere: nobody missed anything either.
        const undo = s.changed ? undefined : new Map(s.premarked.map((i) => [i, -1]));
        const delta = this.d.changelog.add(s.kind, { dirty: -1, pending: undo });
        const f = this.frame(s.owner, 'post-op');
        try {
          const r = await c.each(on, (i) => Promise.all(s.dirs.map((dir) => c.call(i, f, 'xattrop', { inode: dir }, 'add', delta))));
          for (const [i, o] of r) {
            if (o.ok || isGone(o.error)) continue;
            // The object went meanwhile (a directory removed right after changes in it): no mark is left to clear.
            const gone = o.error.code === 'ESTALE' || o.error.code === 'ENOENT';
            this.d.log[gone ? 'debug' : 'warn'](`post-op of ${s.key} on ${c.names[i]}: ${o.error.message}`);
          }
        } finally {
          f.done();
        }
      }
      await s.locks?.release();
    } finally {
      s.end();
    }
  }

  /** Ends a session once its last user is done; now if nobody uses it. */
  private retire(s: Session): void {
    s.closing = true;
    if (s.users === 0) void this.close(s);
  }

  private leave(s: Session): void {
    if (--s.users > 0 || s.closeStarted) return;
    const delay = s.kind === 'entry' ? Math.min(this.o.postOpDelayMs, ENTRY_IDLE_MS) : this.o.postOpDelayMs;
    if (s.closing || !this.o.eager || delay <= 0) return this.retire(s);
    s.idle?.cancel();
    s.idle = this.d.clock.timer(delay, () => this.retire(s));
  }

  /**
   * Records against `behind` (on every copy carrying the session's dirty mark that can be
   * reached) that they miss a change, before the change is answered. Throws if no copy that
   * has the change took the record.
   */
  private async mark(s: Session, behind: readonly number[], have: readonly number[]): Promise<void> {
    const c = this.d.children;
    const todo = behind.filter((i) => !s.marked.has(i));
    if (todo.length === 0) return;
    const delta = this.d.changelog.add(s.kind, { pending: new Map(todo.map((i) => [i, 1])) });
    const on = s.preOp.filter((i) => c.isUp(i));
    const f = this.frame(s.owner, 'mark');
    try {
      const r = await c.each(on, (i) => Promise.all(s.dirs.map((dir) => c.call(i, f, 'xattrop', { inode: dir }, 'add', delta))));
      if (!succeeded(r).some((i) => have.includes(i))) {
        throw new FopError('EIO', `could not record on any copy that ${todo.map((i) => c.names[i]).join(', ')} missed ${s.key}: ${firstError(r).message}`);
      }
    } finally {
      f.done();
    }
    for (const i of todo) s.marked.add(i);
  }

  /** Runs a change in session `s` (already open); answers once what it missed is recorded. */
  private async apply<T>(s: Session, frame: Frame, inode: Inode | undefined, what: string, targetsOf: ((h: readonly number[]) => Promise<readonly number[]>) | undefined, run: (i: number) => Promise<T>, answer = inode): Promise<Done<T>> {
    const c = this.d.children;
    const holding = s.preOp.filter((i) => c.isUp(i));
    const targets = targetsOf ? await targetsOf(holding) : holding;
    // A session outlives children going down: quorum is judged for each change.
    this.checkQuorum(targets, what);
    const outcomes = await c.each(targets, run);
    const made = succeeded(outcomes);
    if (made.length === 0) throw firstError(outcomes);
    // Taken only by copies already behind (sinks not yet healed: the name they still have,
    // the current copies lost while they were away) and refused by every current copy: the
    // change failed, as the current copies say. Accusing them would leave no current copy.
    // (A current copy gone mid-change is accused as ever: it did not refuse.)
    const current = targets.filter((i) => !s.dirs.some((o) => this.d.states.peek(o)?.bad[s.kind].has(i)));
    const refusals = current.flatMap((i) => {
      const o = outcomes.get(i);
      return o && !o.ok && !isGone(o.error) ? [o.error] : [];
    });
    if (refusals.length > 0 && !current.some((i) => made.includes(i))) throw refusals[0];
    s.changed = true;
    // Where a directory of the change was behind, it is not known to have come out as on the
    // current copies (the name moved may have stood for another object there): it is behind
    // for every directory of the change, unless no current copy made it.
    const ok = made.some((i) => !s.stale.has(i)) ? made.filter((i) => !s.stale.has(i)) : made;
    const behind = [...Array(c.n).keys()].filter((i) => !ok.includes(i));
    for (const [i, o] of outcomes) if (!o.ok) this.d.log.debug(`${what}: failed on ${c.names[i]}: ${o.error.message}`);
    for (const i of made.filter((x) => !ok.includes(x))) this.d.log.debug(`${what}: made on ${c.names[i]}, whose copy of a directory of it is behind`);
    await this.mark(s, behind, ok);
    if (inode && behind.length > 0) this.d.states.missed(inode, s.kind, behind);
    this.checkQuorum(made, what);
    // A copy behind (a sink being healed) must not describe the object: answer from a current one.
    const from = answer ? this.d.states.answerFrom(answer, ok) : ok[0];
    return { value: (outcomes.get(from) as { value: T }).value, on: ok };
  }

  // --- changes ------------------------------------------------------------------------

  /** A change to an object's data or metadata. */
  async inode<T>(ch: InodeChange<T>): Promise<Done<T>> {
    if (this.d.states.allBad(ch.inode, ch.kind, this.d.children.upList())) {
      throw new FopError('EIO', `${ch.what}: every copy at hand is behind (or in split brain) for ${ch.kind}; not deepening it`);
    }
    const target: LockTarget = { kind: 'inode', domain: this.domain(ch.kind), inode: ch.inode };
    const shared = this.o.eager && ch.kind === 'data';
    return this.within(`${ch.kind}:${ch.inode.gfid}`, ch.kind, [ch.inode], target, shared, ch.frame, ch.what, (s) => this.apply(s, ch.frame, ch.inode, ch.what, ch.targets, ch.run));
  }

  /**
   * A change to names in directories. In one directory, changes share a lock on the whole
   * directory and one pre-op while they keep coming (as writes do), names of this client
   * taken one change at a time; across two (a rename), the two names are locked alone,
   * after this client's shared locks on both directories are given back.
   */
  async entry<T>(ch: EntryChange<T>): Promise<Done<T>> {
    const c = this.d.children;
    for (const dir of ch.dirs) {
      if (this.d.states.allBad(dir, 'entry', c.upList())) throw new FopError('EIO', `${ch.what}: every copy of <gfid:${dir.gfid}> at hand is behind (or in split brain) for entries`);
    }
    const shared = this.o.eager && ch.dirs.length === 1;
    if (!shared) for (const dir of ch.dirs) await this.settle(dir.gfid, 'entry');
    const [dir] = ch.dirs;
    const target: LockTarget = { kind: 'entry', domain: this.domain('entry'), names: shared ? [{ dir }] : ch.names };
    const key = `entry:${ch.dirs.map((d) => d.gfid).join('+')}`;
    const done = await this.within(key, 'entry', ch.dirs, target, shared, ch.frame, ch.what, (s) =>
      shared ? this.names.run(ch.names.map((n) => `${n.dir.gfid}/${n.name}`), () => this.apply(s, ch.frame, undefined, ch.what, undefined, ch.run, ch.answer)) : this.apply(s, ch.frame, undefined, ch.what, undefined, ch.run, ch.answer),
    );
    const missed = [...Array(c.n).keys()].filter((i) => !done.on.includes(i));
    if (missed.length > 0) for (const d of ch.dirs) this.d.states.missed(d, 'entry', missed);
    return done;
  }

  /**
   * Runs `body` in a session on `dirs` (the objects whose changelogs record the change): the
   * shared one of `key` if there is one that may still be joined (else a new one), or, not
   * shared, a session of its own that ends with the change.
   */
  private async within<T>(key: string, kind: Kind, dirs: readonly Inode[], target: LockTarget, shared: boolean, frame: Frame, what: string, body: (s: Session) => Promise<T>): Promise<T> {
    const c = this.d.children;
    for (;;) {
      const cur = shared ? this.sessions.get(key) : undefined;
      if (cur && (cur.closing || cur.generation !== c.generation)) {
        this.retire(cur);
        await cur.ended;
        continue;
      }
      let s = cur;
      if (!s) {
        s = new Session(key, kind, dirs, this.d.clock.now(), c.generation);
        if (shared) this.sessions.set(key, s);
        s.ready = this.open(s, target, frame, what);
      } else if (this.d.clock.now() - s.startedAt > EAGER_MAX_HOLD_MS) {
        // Long enough: this change is its last, others get the lock next.
        s.closing = true;
      }
      s.users++;
      s.idle?.cancel();
      try {
        await s.ready;
        return await body(s);
      } finally {
        if (shared) this.leave(s);
        else {
          s.users--;
          await this.close(s);
        }
      }
    }
  }

  // --- giving the lock back -----------------------------------------------------------

  /** Ends the shared session on this object's data or entries (a heal wants the lock); resolves when it is over. */
  async settle(gfid: string, kind: 'data' | 'entry' = 'data'): Promise<void> {
    const s = this.sessions.get(`${kind}:${gfid}`);
    if (!s) return;
    this.retire(s);
    await s.ended;
  }

  /** Ends the shared session on this object's data as soon as it is idle, without waiting (a close). */
  retireSoon(gfid: string): void {
    const s = this.sessions.get(`data:${gfid}`);
    if (s) this.retire(s);
  }

  /** A child went down: its brick dropped the locks; no session counts on its copy any more. */
  childWentDown(i: number): void {
    for (const s of this.live) {
      s.preOp = s.preOp.filter((c) => c !== i);
      s.locks?.forget(i);
    }
  }

  /** A child came up: every shared session ends as soon as it can, the next change includes the child. */
  childCameUp(): void {
    for (const s of [...this.sessions.values()]) this.retire(s);
  }

  /** The graph goes down: every session ends. */
  async settleAll(): Promise<void> {
    const all = [...this.sessions.values()];
    for (const s of all) this.retire(s);
    await Promise.all(all.map((s) => s.ended));
  }

  dump(): Record<string, unknown>[] {
    return [...this.sessions.values()].map((s) => ({
      key: s.key,
      owner: s.owner,
      users: s.users,
      closing: s.closing,
      locked: s.locks?.on.map((i) => this.d.children.names[i]),
      preOp: s.preOp.map((i) => this.d.children.names[i]),
      marked: [...s.marked].map((i) => this.d.children.names[i]),
      ageMs: this.d.clock.now() - s.startedAt,
    }));
  }
}
