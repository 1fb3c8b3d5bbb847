// A directory's layout: which child each part of the hash space goes to. Each child's copy of
// the directory keeps its own range in an internal xattr, so every client, and every client
// after a restart, reads the same layout from the children themselves.
import { HASH_SPACE } from './hash';

/** Part of the hash space: [start, stop], both inclusive. */
export interface Range {
  readonly start: number;
  readonly stop: number;
}

/** Each child's range, by child index; undefined: the child takes no names in this directory. */
export type Layout = readonly (Range | undefined)[];

/** The xattr holding a child's range on its copy of the directory. */
export const LAYOUT_XATTR = 'trusted.xlstack.dht.layout';

/**
 * The xattr's value: five big-endian uint32: format (1), whether there is a range (0 or 1),
 * start, stop, and how many children have a range in the layout it belongs to. A child whose
 * copy has no value yet (added to the volume, not rebalanced) takes no names there, as one
 * with "no range" does. The count tells a layout with a hole from one that spans children a
 * client does not have (its volfile is older or newer): only the first is healed by lookups.
 */
const FORMAT = 1;
const RECORD_BYTES = 20;

/** One child's record: its range (if any) and the number of children the layout spans. */
export interface RangeRecord {
  readonly range?: Range;
  readonly spans: number;
}

export function encodeRange(r: Range | undefined, spans: number): Buffer {
  const b = Buffer.alloc(RECORD_BYTES);
  b.writeUInt32BE(FORMAT, 0);
  if (r) {
    b.writeUInt32BE(1, 4);
    b.writeUInt32BE(r.start, 8);
    b.writeUInt32BE(r.stop, 12);
  }
  b.writeUInt32BE(spans, 16);
  return b;
}

/** A child's record from its xattr value (empty: none written); 'bad' if it is not one this code wrote. */
export function decodeRange(b: Buffer): RangeRecord | undefined | 'bad' {
  if (b.length === 0) return undefined;
  if (b.length !== RECORD_BYTES || b.readUInt32BE(0) !== FORMAT) return 'bad';
  const has = b.readUInt32BE(4);
  const spans = b.readUInt32BE(16);
  if (has === 0) return { spans };
  const range = { start: b.readUInt32BE(8), stop: b.readUInt32BE(12) };
  return has === 1 && range.start <= range.stop ? { range, spans } : 'bad';
}

/** How many children have a range. */
export const spanOf = (layout: Layout): number => layout.filter((r) => r !== undefined).length;

/** The child whose range holds `hash`, if any. */
export function hashedChild(layout: Layout, hash: number): number | undefined {
  for (let i = 0; i < layout.length; i++) {
    const r = layout[i];
    if (r && r.start <= hash && hash <= r.stop) return i;
  }
  return undefined;
}

/** Whether the ranges cover the whole hash space exactly once (no hole, no overlap). */
export function isComplete(layout: Layout): boolean {
  const ranges = layout.filter((r): r is Range => r !== undefined).sort((a, b) => a.start - b.start);
  let next = 0;
  for (const r of ranges) {
    if (r.start !== next) return false;
    next = r.stop + 1;
  }
  return next === HASH_SPACE;
}

export function sameLayout(a: Layout, b: Layout): boolean {
  if (a.length !== b.length) return false;
  return a.every((r, i) => r?.start === b[i]?.start && r?.stop === b[i]?.stop);
}

/** The hash space cut into `k` equal slots, in order (the last takes the remainder). */
function slots(k: number): Range[] {
  const size = Math.floor(HASH_SPACE / k);
  return Array.from({ length: k }, (_, j) => ({ start: j * size, stop: j === k - 1 ? HASH_SPACE - 1 : (j + 1) * size - 1 }));
}

const overlap = (a: Range, b: Range): number => Math.max(0, Math.min(a.stop, b.stop) - Math.max(a.start, b.start) + 1);

/**
 * A new directory's layout over `eligible` children (indices into `n` children): equal
 * slots, the first given to the child `seed` (the directory's own hash) picks, so that
 * directories do not all start on the same child. Deterministic: two clients that heal the
 * same directory at once write the same layout.
 */
export function freshLayout(n: number, eligible: readonly number[], seed: number): Layout {
  const out: (Range | undefined)[] = new Array(n).fill(undefined);
  const k = eligible.length;
  if (k === 0) return out;
  const rot = seed % k;
  slots(k).forEach((s, j) => (out[eligible[(j + rot) % k]] = s));
  return out;
}

/**
 * The layout a rebalance gives a directory: equal slots over `eligible` children, each
 * child getting the slot that overlaps its current range most (greedily, largest overlap
 * first), so that as few names as possible change child. Children without a current range
 * take the slots left, in index order. Deterministic, and a layout already equal over the
 * same children comes back unchanged.
 */
export function rebalancedLayout(current: Layout, eligible: readonly number[]): Layout {
  const out: (Range | undefined)[] = new Array(current.length).fill(undefined);
  const k = eligible.length;
  if (k === 0) return out;
  const free = slots(k);
  const pairs: { child: number; slot: number; weight: number }[] = [];
  for (const child of eligible) {
    const r = current[child];
    if (r) free.forEach((s, slot) => pairs.push({ child, slot, weight: overlap(r, s) }));
  }
  pairs.sort((a, b) => b.weight - a.weight || a.child - b.child || a.slot - b.slot);
  const placed = new Set<number>();
  const taken = new Set<number>();
  for (const p of pairs) {
    if (p.weight === 0 || placed.has(p.child) || taken.has(p.slot)) continue;
    out[p.child] = free[p.slot];
    placed.add(p.child);
    taken.add(p.slot);
  }
  const left = free.filter((_, slot) => !taken.has(slot));
  for (const child of [...eligible].sort((a, b) => a - b)) if (!placed.has(child)) out[child] = left.shift();
  return out;
}

/** How much of the hash space changes child from `a` to `b` (0..1): the share of names that move. */
export function movedShare(a: Layout, b: Layout): number {
  let kept = 0;
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const x = a[i];
    const y = b[i];
    if (x && y) kept += overlap(x, y);
  }
  return 1 - kept / HASH_SPACE;
}

export const describeLayout = (layout: Layout, names: readonly string[]): string =>
  layout.map((r, i) => `${names[i]}=${r ? `${r.start.toString(16)}-${r.stop.toString(16)}` : 'none'}`).join(' ');
