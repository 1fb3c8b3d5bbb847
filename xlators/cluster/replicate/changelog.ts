// The changelog (GlusterFS's AFR changelog, v2 with its dirty marker): what each copy of an
// object knows about the others, kept beside it on its brick in internal xattrs.
//
//   trusted.xlstack.afr.dirty            int32[3]  a change of that kind is in flight here
//   trusted.xlstack.afr.pending.<child>  int32[3]  changes this copy has that <child>'s lacks
//
// Each value counts data, metadata and entry changes (big-endian int32s, added atomically by
// xattrop). Whoever reads or changes a changelog always names every key of it, so the answer
// (and what features/index on the brick sees) is the object's whole changelog.
import { INTERNAL_XATTR_PREFIX } from '../../../src/core/index';
import type { XattrMap } from '../../../src/core/index';

export type Kind = 'data' | 'metadata' | 'entry';
export const KINDS: readonly Kind[] = ['data', 'metadata', 'entry'];
const SLOT: Readonly<Record<Kind, number>> = { data: 0, metadata: 1, entry: 2 };

export const AFR_PREFIX = `${INTERNAL_XATTR_PREFIX}afr.`;
export const DIRTY_KEY = `${AFR_PREFIX}dirty`;
export const pendingKey = (child: string): string => `${AFR_PREFIX}pending.${child}`;

/** Counters of one key: data, metadata, entry. */
export type Counts = readonly [number, number, number];
const ZERO: Counts = [0, 0, 0];

export function encode(c: Counts): Buffer {
  const b = Buffer.alloc(12);
  c.forEach((n, i) => b.writeInt32BE(n | 0, i * 4));
  return b;
}

/** An absent value counts as zeros; anything but 12 bytes is not a changelog. */
export function decode(b: Buffer | undefined): Counts {
  if (!b || b.length === 0) return ZERO;
  if (b.length !== 12) throw new Error(`a changelog value of ${b.length} bytes (12 expected)`);
  return [b.readInt32BE(0), b.readInt32BE(4), b.readInt32BE(8)];
}

/** One copy's changelog: its dirty counters and what it holds against each child (by index). */
export interface CopyLog {
  readonly dirty: Counts;
  readonly pending: readonly Counts[];
}

/** What a change does to one copy's changelog (by kind: how much to add). */
export interface Delta {
  readonly dirty?: number;
  /** Added to the pending counter of each child index listed. */
  readonly pending?: ReadonlyMap<number, number>;
}

/** The changelog keys of a replica set, by its children's names. */
export class Changelog {
  readonly keys: readonly string[];

  constructor(readonly children: readonly string[]) {
    this.keys = [DIRTY_KEY, ...children.map(pendingKey)];
  }

  /** The xattrop argument that reads a whole changelog. */
  query(): XattrMap {
    return Object.fromEntries(this.keys.map((k) => [k, Buffer.alloc(0)]));
  }

  /** The xattrop 'add' argument for a change of `kind`: every key, zeros where nothing changes. */
  add(kind: Kind, d: Delta): XattrMap {
    const slot = (n: number): Counts => {
      const c: [number, number, number] = [0, 0, 0];
      c[SLOT[kind]] = n;
      return c;
    };
    const out: Record<string, Buffer> = { [DIRTY_KEY]: encode(slot(d.dirty ?? 0)) };
    this.children.forEach((name, i) => (out[pendingKey(name)] = encode(slot(d.pending?.get(i) ?? 0))));
    return out;
  }

  /** The xattrop 'add' argument made of several kinds' deltas at once. */
  addAll(deltas: ReadonlyMap<Kind, Delta>): XattrMap {
    const sum = new Map<string, [number, number, number]>(this.keys.map((k) => [k, [0, 0, 0]]));
    for (const [kind, d] of deltas) {
      sum.get(DIRTY_KEY)![SLOT[kind]] += d.dirty ?? 0;
      this.children.forEach((name, i) => (sum.get(pendingKey(name))![SLOT[kind]] += d.pending?.get(i) ?? 0));
    }
    return Object.fromEntries([...sum].map(([k, c]) => [k, encode(c)]));
  }

  parse(values: Readonly<Record<string, Buffer>>): CopyLog {
    return { dirty: decode(values[DIRTY_KEY]), pending: this.children.map((name) => decode(values[pendingKey(name)])) };
  }
}

/**
 * What the changelogs of the copies at hand say about one kind of change (GlusterFS's
 * afr_selfheal_find_direction). A copy that accuses itself took part in a change that failed
 * on it: it is a fool, and what it says about the others does not count. A copy no non-fool
 * accuses is a source; every other copy at hand is a sink. No source at all is split brain.
 */
export interface Verdict {
  readonly sources: readonly number[];
  readonly sinks: readonly number[];
  readonly splitBrain: boolean;
  /** Something to do: a sink, a dirty marker, or any counter not zero. */
  readonly needsHeal: boolean;
  /** No accusation at all, only dirty markers or fools: a change was cut short. */
  readonly cutShort: boolean;
}

/** `logs[i]` is child i's copy's changelog, undefined for a copy that is not at hand. */
export function judge(logs: readonly (CopyLog | undefined)[], kind: Kind): Verdict {
  const s = SLOT[kind];
  const present = logs.flatMap((l, i) => (l ? [i] : []));
  // No copy at hand (gone meanwhile, or unreachable): nothing to say, nothing to do.
  if (present.length === 0) return { sources: [], sinks: [], splitBrain: false, needsHeal: false, cutShort: false };
  const m = (i: number, j: number) => logs[i]!.pending[j]?.[s] ?? 0;
  const fool = (i: number) => m(i, i) > 0;
  const accused = (j: number) => present.some((i) => i !== j && !fool(i) && m(i, j) > 0);
  const sources = present.filter((j) => !accused(j));
  const anyCounter = present.some((i) => logs[i]!.dirty[s] !== 0 || logs[i]!.pending.some((c) => c[s] !== 0));
  // Of anyone, at hand or not: a copy away that is accused is not a change cut short.
  const anyAccusation = present.some((i) => !fool(i) && logs[i]!.pending.some((c, j) => j !== i && c[s] > 0));
  if (sources.length === 0) return { sources, sinks: present, splitBrain: true, needsHeal: true, cutShort: false };
  const sinks = present.filter((j) => !sources.includes(j));
  return { sources, sinks, splitBrain: false, needsHeal: anyCounter || sinks.length > 0, cutShort: anyCounter && !anyAccusation };
}

/**
 * After a heal of `kind` made the copies at hand (`logs[i]` defined) alike: what each of them
 * must add so that their changelogs say so. Counters held against copies at hand go to zero,
 * dirty markers too. What the sources hold against copies not at hand is carried by every
 * healed copy as well (if a source then goes, the others still know who is behind), and so is
 * an accusation of each copy in `behind` (a sink the heal could not finish).
 */
export function clearing(logs: readonly (CopyLog | undefined)[], kind: Kind, sources: readonly number[], behind: readonly number[] = []): Map<number, Delta> {
  const s = SLOT[kind];
  const present = logs.flatMap((l, i) => (l ? [i] : []));
  const absent = logs.flatMap((l, i) => (l ? [] : [i]));
  const out = new Map<number, Delta>();
  for (const i of present) {
    const log = logs[i]!;
    const pending = new Map<number, number>();
    for (const j of present) if (log.pending[j][s] !== 0) pending.set(j, -log.pending[j][s]);
    for (const x of absent) {
      const accused = behind.includes(x) || sources.some((src) => logs[src]!.pending[x][s] > 0);
      if (accused && log.pending[x][s] <= 0) pending.set(x, 1 - log.pending[x][s]);
    }
    if (pending.size > 0 || log.dirty[s] !== 0) out.set(i, { dirty: -log.dirty[s], pending });
  }
  return out;
}
