// The children of a replica set as replicate sees them: which are up, whether enough are for
// writes (quorum), and every call made to them. A call goes out in a frame of its own, so
// that when its child goes down the call is interrupted at once: protocol/client would
// otherwise wait for the brick to come back (and send it again then), while replicate has
// the other copies to go on with.
import { FopError, Frame, XlatorHost } from '../../../src/core/index';
import type { FopArgs, FopName, FopResult, Xlator } from '../../../src/core/index';

/** none: any child up will do; auto: more than half, or exactly half with the first; fixed: quorum-count. */
export type QuorumType = 'none' | 'auto' | 'fixed';

export interface Quorum {
  readonly type: QuorumType;
  readonly count: number;
}

/** Whether `set` (child indices) is enough of `n` children for a change. */
export function quorumMet(q: Quorum, n: number, set: readonly number[]): boolean {
  if (set.length === 0) return false;
  switch (q.type) {
    case 'none':
      return true;
    case 'fixed':
      return set.length >= Math.min(q.count, n);
    case 'auto':
      return set.length * 2 > n || (set.length * 2 === n && set.includes(0));
  }
}

/** A call's outcome on one child. */
export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: FopError };

/** An error that says the child is gone rather than anything about the object. */
export const isGone = (e: FopError): boolean => e.code === 'ENOTCONN' || e.code === 'EINTR' || e.code === 'ETIMEDOUT';

export class Children {
  readonly n: number;
  readonly names: readonly string[];
  private readonly up: boolean[];
  private readonly heard: boolean[];
  /** Bumped whenever a child comes up: what was judged before may have missed its copy. */
  generation = 0;
  /** Frames of calls in flight, per child: interrupted when that child goes down. */
  private readonly inflight: Set<Frame>[];

  constructor(
    readonly xlators: readonly Xlator[],
    private readonly host: XlatorHost,
  ) {
    this.n = xlators.length;
    this.names = xlators.map((x) => x.name);
    this.up = xlators.map(() => false);
    this.heard = xlators.map(() => false);
    this.inflight = xlators.map(() => new Set());
  }

  indexOf(xl: Xlator | undefined): number {
    return xl ? this.xlators.indexOf(xl) : -1;
  }

  byName(name: string): number {
    return this.names.indexOf(name);
  }

  isUp(i: number): boolean {
    return this.up[i];
  }

  /** Children that are up, ascending. */
  upList(): number[] {
    return this.up.flatMap((u, i) => (u ? [i] : []));
  }

  /** Children that have not said yet whether they are up. */
  silent(): string[] {
    return this.names.filter((_, i) => !this.heard[i]);
  }

  get heardFromAll(): boolean {
    return this.heard.every((h) => h);
  }

  /** Records child i's event; returns whether its state changed. A child going down has its calls interrupted. */
  set(i: number, up: boolean): boolean {
    this.heard[i] = true;
    if (this.up[i] === up) return false;
    this.up[i] = up;
    if (up) this.generation++;
    else for (const f of [...this.inflight[i]]) f.interrupt();
    return true;
  }

  /**
   * Calls fop `op` on child i in a frame of its own (the caller's credentials and lock
   * owner, `frame`'s interrupts passed on). Fails at once with ENOTCONN if the child is down,
   * and with ENOTCONN if it goes down before answering.
   */
  async call<K extends FopName>(i: number, frame: Frame, op: K, ...args: FopArgs<K> extends [Frame, ...infer R] ? R : never): Promise<FopResult<K>> {
    if (!this.up[i]) throw new FopError('ENOTCONN', `${this.names[i]} is down`);
    const sub = this.host.frame(op, { caller: frame.caller, lkOwner: frame.lkOwner });
    const set = this.inflight[i];
    set.add(sub);
    const off = frame.onInterrupt(() => sub.interrupt());
    try {
      const child = this.xlators[i];
      return await (child[op] as unknown as (...a: unknown[]) => Promise<FopResult<K>>).call(child, sub, ...args);
    } catch (e) {
      const err = FopError.from(e);
      // Interrupted because the child went down, not because the caller gave up.
      if (!frame.interrupted && (err.code === 'EINTR' || !this.up[i])) throw new FopError('ENOTCONN', `${this.names[i]} went down: ${err.message}`);
      throw err;
    } finally {
      off();
      set.delete(sub);
      sub.done();
    }
  }

  /** Calls `fn` on each child listed, in parallel; every outcome, by child index. */
  async each<T>(on: readonly number[], fn: (i: number) => Promise<T>): Promise<Map<number, Outcome<T>>> {
    const out = new Map<number, Outcome<T>>();
    await Promise.all(
      on.map(async (i) => {
        try {
          out.set(i, { ok: true, value: await fn(i) });
        } catch (e) {
          out.set(i, { ok: false, error: FopError.from(e) });
        }
      }),
    );
    return new Map([...out].sort((a, b) => a[0] - b[0]));
  }

  dump(): Record<string, unknown>[] {
    return this.names.map((name, i) => ({ name, up: this.up[i], heard: this.heard[i], inflight: this.inflight[i].size }));
  }
}

/** The children an outcome map says succeeded, and the values, ascending. */
export function succeeded<T>(outcomes: ReadonlyMap<number, Outcome<T>>): number[] {
  return [...outcomes].flatMap(([i, o]) => (o.ok ? [i] : []));
}

export function failed<T>(outcomes: ReadonlyMap<number, Outcome<T>>): number[] {
  return [...outcomes].flatMap(([i, o]) => (o.ok ? [] : [i]));
}

/** The error to answer with when nothing succeeded: the first that says something about the object, else the first. */
export function firstError<T>(outcomes: ReadonlyMap<number, Outcome<T>>): FopError {
  const errors = [...outcomes.values()].flatMap((o) => (o.ok ? [] : [o.error]));
  return errors.find((e) => !isGone(e)) ?? errors[0] ?? new FopError('ENOTCONN', 'no child answered');
}
