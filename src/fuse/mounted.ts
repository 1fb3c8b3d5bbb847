import type { Logger } from '../core/log';
import type { BridgeCore } from './core';

export type TransportName = 'kernel' | 'fuse-native';

export const TRANSPORTS: readonly TransportName[] = ['kernel', 'fuse-native'];

/** What a transport needs to serve a bridge core on a mountpoint. */
export interface MountSpec {
  readonly mountpoint: string;
  /** Shown as the mount's source in /proc/mounts. */
  readonly fsname: string;
  readonly core: BridgeCore;
  readonly log: Logger;
  /** How long the kernel may trust names and attributes, and a name's absence (ms). */
  readonly entryTimeoutMs: number;
  readonly attrTimeoutMs: number;
  readonly negativeTimeoutMs: number;
  /** Poll this long for the next request after each one instead of sleeping (µs; 0: off). */
  readonly busyPollUs: number;
}

/** A mounted filesystem, whatever the transport, as the daemon that owns it sees it. */
export interface Mounted {
  readonly transport: TransportName;
  readonly mountpoint: string;
  /**
   * Settles, with why, once the kernel will send nothing more: unmounted (from outside too),
   * detached lazily and no longer used by anyone, or aborted. Then the daemon tears down.
   */
  readonly ended: Promise<string>;
  /** Unmounts; refused (EBUSY) while in use unless `lazy`, which detaches now and serves what is still open. */
  unmount(lazy: boolean): Promise<void>;
  dump(): Record<string, unknown>;
  /** Under a supervisor: stop serving and leave the mount to a new worker (a live upgrade); absent otherwise. */
  retire?(): Promise<void>;
}
