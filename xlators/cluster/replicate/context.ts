// What replicate's modules share: one replica set's children, its changelog keys, what this
// client knows about objects and open files, and how changes are made. The translator
// (index.ts) builds it; lookup, reads and heal work on it.
import type { Clock, Inode, Logger, XlatorHost } from '../../../src/core/index';
import type { Changelog } from './changelog';
import type { Children } from './children';
import type { FdStates } from './fds';
import type { InodeStates } from './inode-state';
import type { ReadPolicy } from './read-child';
import type { Transactions } from './transaction';

/** What lookups and reads ask of the healer. */
export interface HealTrigger {
  /** Heal this object in the background, soon (deduplicated; ignored when self-heal is off). */
  soon(gfid: string, why: string): void;
  /** No heal is known to be needed or running (all copies alike, as far as this client knows). */
  readonly quiet: boolean;
}

export interface Replica {
  readonly name: string;
  readonly host: XlatorHost;
  readonly log: Logger;
  readonly clock: Clock;
  readonly subvols: Children;
  readonly changelog: Changelog;
  readonly states: InodeStates;
  readonly fds: FdStates;
  readonly txns: Transactions;
  readonly heal: HealTrigger;
  readPolicy(): ReadPolicy;
  /** The inode of this graph for a GFID (for building Locs of objects found on the children). */
  inode(gfid: string, type?: number): Inode;
}
