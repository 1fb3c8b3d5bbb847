import type { Gfid, Name } from './types';

/** A name in a directory whose lookup may now answer differently (made, removed, renamed). */
export interface UpcallEntry {
  readonly parent: Gfid;
  readonly name: Name;
}

/**
 * Something changed behind a graph's back (another client, through a brick), or may have:
 * caches above drop what they hold about it. An upcall travels up the graph, from the
 * translator that learned it (protocol/client) to the top, and from there to the bridge,
 * which passes it to the kernel (GlusterFS's cache-invalidation upcall).
 */
export interface Upcall {
  /** The object that changed; undefined: every object (a connection to a brick was lost or made again). */
  readonly gfid?: Gfid;
  /** Its attributes changed (size, times, mode, owner, link count). */
  readonly attrs?: boolean;
  /** Its data changed (page caches drop its pages). */
  readonly data?: boolean;
  /** Its extended attributes changed. */
  readonly xattrs?: boolean;
  /** Names that now lead elsewhere or nowhere, or lead somewhere where there was nothing. */
  readonly entries?: readonly UpcallEntry[];
  /**
   * On a brick, from features/upcall to protocol/server: the client (its identity, Frame.client)
   * this upcall is for. Undefined on the way up a client's graph.
   */
  readonly client?: string;
}

/** Everything may have changed: what a lost connection leaves a cache with. */
export const UPCALL_ALL: Upcall = Object.freeze({ attrs: true, data: true, xattrs: true });
