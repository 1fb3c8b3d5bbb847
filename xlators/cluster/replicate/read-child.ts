// Which copy a read goes to. Only a copy that is owed nothing is ever a candidate; among
// those, a configured child first, else one chosen by file (GlusterFS's read-hash-mode).
import type { Gfid } from '../../../src/core/index';

/** 0: the first readable child; 1: by file (GFID), so reads spread over the children; 2: by file and reading process. */
export type HashMode = 0 | 1 | 2;

export interface ReadPolicy {
  /** A child to read from whenever it is readable (read-subvolume). */
  readonly preferred?: number;
  readonly hashMode: HashMode;
}

/** A stable number for a GFID (FNV-1a over its characters). */
export function gfidHash(gfid: Gfid, salt = 0): number {
  let h = 0x811c9dc5 ^ salt;
  for (let i = 0; i < gfid.length; i++) {
    h ^= gfid.charCodeAt(i);
    h = Math.imul(h, 0x01000193);
  }
  return h >>> 0;
}

/** The child to read `gfid` from, among `readable` (ascending child indices); undefined if none. */
export function pickReadChild(readable: readonly number[], gfid: Gfid, policy: ReadPolicy, pid = 0): number | undefined {
  if (readable.length === 0) return undefined;
  if (policy.preferred !== undefined && readable.includes(policy.preferred)) return policy.preferred;
  switch (policy.hashMode) {
    case 0:
      return readable[0];
    case 1:
      return readable[gfidHash(gfid) % readable.length];
    case 2:
      return readable[gfidHash(gfid, pid) % readable.length];
  }
}

/** The order to try children in: the chosen one, then the other readable ones. */
export function readOrder(readable: readonly number[], gfid: Gfid, policy: ReadPolicy, pid = 0): number[] {
  const first = pickReadChild(readable, gfid, policy, pid);
  return first === undefined ? [] : [first, ...readable.filter((c) => c !== first)];
}
