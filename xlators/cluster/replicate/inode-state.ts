// What this client knows about each object's copies: which are readable for each kind of
// change (from the changelogs, last read at a lookup or a refresh), which it saw miss a
// change itself (known before any changelog says so, and after its accuser goes away), and
// whether the copies are in split brain.
import type { Inode } from '../../../src/core/index';
import { KINDS, Kind, Verdict } from './changelog';

export interface InodeState {
  /** Readable copies per kind, as the last judgement found them (undefined: never judged). */
  readonly readable: Partial<Record<Kind, readonly number[]>>;
  /** Copies this client saw miss a change of that kind, not healed since. */
  readonly bad: Record<Kind, Set<number>>;
  readonly splitBrain: Set<Kind>;
  /** Children.generation when last judged: a child that came up since was not seen. */
  generation: number;
  /** Split brain was logged for these kinds already (once per episode). */
  readonly logged: Set<Kind>;
}

const fresh = (): InodeState => ({
  readable: {},
  bad: { data: new Set(), metadata: new Set(), entry: new Set() },
  splitBrain: new Set(),
  generation: -1,
  logged: new Set(),
});

/** Which kinds of change an object of this type has. */
export function kindsOf(type: number, isDirectory: boolean): Kind[] {
  if (isDirectory) return ['metadata', 'entry'];
  return type === 0 || (type & 0o170000) === 0o100000 ? ['data', 'metadata'] : ['metadata'];
}

/** Per-inode state kept in the inode's context (one per replicate translator). */
export class InodeStates {
  constructor(private readonly owner: object) {}

  get(inode: Inode): InodeState {
    let s = inode.ctx.get(this.owner) as InodeState | undefined;
    if (!s) inode.ctx.set(this.owner, (s = fresh()));
    return s;
  }

  peek(inode: Inode): InodeState | undefined {
    return inode.ctx.get(this.owner) as InodeState | undefined;
  }

  /** Records a judgement of the copies `judged` (the ones at hand). */
  judged(inode: Inode, verdicts: ReadonlyMap<Kind, Verdict>, generation: number): InodeState {
    const s = this.get(inode);
    for (const [kind, v] of verdicts) {
      (s.readable as Record<Kind, readonly number[]>)[kind] = v.splitBrain ? [] : v.sources;
      if (v.splitBrain) s.splitBrain.add(kind);
      else {
        s.splitBrain.delete(kind);
        s.logged.delete(kind);
      }
    }
    s.generation = generation;
    return s;
  }

  /** Copies that missed a change this client made. */
  missed(inode: Inode, kind: Kind, children: Iterable<number>): void {
    const s = this.get(inode);
    for (const c of children) s.bad[kind].add(c);
  }

  /** A heal made these copies alike for `kind`. */
  healed(inode: Inode, kind: Kind, alike: readonly number[]): void {
    const s = this.get(inode);
    (s.readable as Record<Kind, readonly number[]>)[kind] = alike;
    for (const c of alike) s.bad[kind].delete(c);
    s.splitBrain.delete(kind);
    s.logged.delete(kind);
  }

  /** An object made now on `on` (the others missed it): readable there for every kind. */
  created(inode: Inode, on: readonly number[], all: number, generation: number): void {
    const s = this.get(inode);
    for (const k of KINDS) {
      (s.readable as Record<Kind, readonly number[]>)[k] = on;
      s.bad[k].clear();
      for (let c = 0; c < all; c++) if (!on.includes(c)) s.bad[k].add(c);
    }
    s.splitBrain.clear();
    s.generation = generation;
  }

  /**
   * The copies to read `kinds` from, among `up`: readable for each kind and not seen to miss
   * anything; undefined when no judgement is known yet (or it predates a child coming up).
   */
  readable(inode: Inode, kinds: readonly Kind[], up: readonly number[], generation: number): number[] | undefined {
    const s = this.peek(inode);
    if (!s || s.generation !== generation) return undefined;
    let out = [...up];
    for (const k of kinds) {
      const r = s.readable[k];
      if (r === undefined) return undefined;
      out = out.filter((c) => r.includes(c) && !s.bad[k].has(c));
    }
    return out;
  }

  /**
   * The copy whose answer to a change describes the object (its attributes go to the kernel,
   * which caches them): the first of `on` current for every kind as last judged (a child
   * that came up since counts if it was current then and this client saw it miss nothing),
   * else the first of `on`.
   */
  answerFrom(inode: Inode, on: readonly number[]): number {
    const s = this.peek(inode);
    if (!s) return on[0];
    const kinds = kindsOf(inode.type, inode.type === 0o040000);
    const current = on.find((c) => kinds.every((k) => (s.readable[k] ?? [c]).includes(c) && !s.bad[k].has(c)));
    return current ?? on[0];
  }

  /** Whether this client knows every copy in `on` to be behind for `kind` (writing there would only deepen it). */
  allBad(inode: Inode, kind: Kind, on: readonly number[]): boolean {
    const s = this.peek(inode);
    if (!s) return false;
    if (s.splitBrain.has(kind)) return true;
    return on.length > 0 && on.every((c) => s.bad[kind].has(c));
  }
}
