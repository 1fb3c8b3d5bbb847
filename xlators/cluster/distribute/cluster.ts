// What every part of cluster/distribute works with: the children and their state, the
// per-inode placement, bounds, counters. The translator (index.ts) is the one implementation.
import { FopError, Frame, Inode, ROOT_CALLER, inFrame } from '../../../src/core/index';
import type { Caller, Clock, Logger, Xlator, XlatorHost } from '../../../src/core/index';
import type { NameHasher } from './hash';
import type { Layout } from './layout';

/** Where a file's data is (the child "caching" it, GlusterFS says), or a directory's layout. */
export type Placement = { readonly kind: 'file'; readonly cached: number } | { readonly kind: 'dir'; readonly layout: Layout };

export interface Bounds {
  /** The longest a file's migration may hold its writers back (copy and switch). */
  readonly migrateMs: number;
  /** The longest a fop waits for a migration of its file to finish (more than migrateMs). */
  readonly fopWaitMs: number;
  /** The longest a migration waits for the fops in flight on its file (then it skips the file). */
  readonly migrateLockMs: number;
}

/** What happened, for statedumps and tests. */
export interface Counters {
  lookupsEverywhere: number;
  linktosMade: number;
  dirsHealed: number;
  layoutsWritten: number;
  relocations: number;
  migrations: number;
}

export interface Cluster {
  readonly name: string;
  readonly children: readonly Xlator[];
  readonly log: Logger;
  readonly host: XlatorHost;
  readonly hasher: NameHasher;
  readonly bounds: Bounds;
  /** Where migrations read the time (tests move a clock of their own). */
  readonly clock: Clock;
  readonly counters: Counters;
  /** Whether child `i` last reported up (children that never reported count as down). */
  isUp(i: number): boolean;
  /** The children new layouts use: up, and not being removed. */
  eligible(): number[];
  /** Children being drained (`rebalance --remove`): they get no new names. */
  readonly removing: ReadonlySet<number>;
  placement(inode: Inode): Placement | undefined;
  place(inode: Inode, p: Placement): void;
  childName(i: number): string;
  childIndex(name: string): number | undefined;
}

/** Runs `fn` in a frame of the graph as root: DHT's own bookkeeping (heals, linkto files, layouts, migrations). */
export const internal = <T>(c: Cluster, op: string, fn: (frame: Frame) => Promise<T>, who: Caller = ROOT_CALLER): Promise<T> =>
  inFrame(c.host, `dht-${op}`, fn, who);

export type Outcome<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly error: FopError };

/** Every promise's outcome, errors as FopErrors (a fop on all children at once). */
export async function settle<T>(ps: readonly Promise<T>[]): Promise<Outcome<T>[]> {
  const rs = await Promise.allSettled(ps);
  return rs.map((r) => (r.status === 'fulfilled' ? { ok: true, value: r.value } : { ok: false, error: FopError.from(r.reason) }));
}

/** Errors that mean "not there" rather than "could not ask". */
export const isAbsent = (e: FopError): boolean => e.code === 'ENOENT' || e.code === 'ESTALE';
