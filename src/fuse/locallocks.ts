import type { Frame } from '../core/frame';
import type { Logger } from '../core/log';
import { LockTable } from '../core/locktable';
import type { Flock, Gfid, LockCmd, LockKind } from '../core/types';
import type { BaseFd } from './basefd';

/**
 * The locks of a mount whose graph has no lock translator. `fcntl` and `flock` must never
 * answer ENOSYS to an application: without features/locks the bridge keeps them here, so
 * they hold between the processes of this mount (not between mounts), as on a local disk.
 */
export class LocalLocks {
  private table?: LockTable;

  constructor(private readonly log: Logger) {}

  lk(base: BaseFd, frame: Frame, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    if (!this.table) {
      this.log.warn('the graph has no lock translator (features/locks): locks hold within this mount only');
      this.table = new LockTable({ log: this.log });
    }
    // flock locks belong to the open file; POSIX locks to the lock owner the kernel names.
    const owner = kind === 'flock' ? `fh:${base.id}` : frame.lkOwner;
    if (cmd === 'get') return Promise.resolve(this.table.test(base.gfid, kind, owner, lock));
    return this.table.lock(base.gfid, kind, owner, lock, { wait: cmd === 'wait', frame, fdKey: base });
  }

  /** close(2) by `owner` of any fd of the file: its POSIX locks on the file go. */
  closed(gfid: Gfid, owner: string): void {
    this.table?.releaseOwner(gfid, owner);
  }

  /** The open file is gone: its flock locks, and every lock taken through it, go. */
  released(base: BaseFd): void {
    this.table?.releaseFd(base);
  }

  dump(): Record<string, unknown> {
    return this.table?.dump() ?? {};
  }
}
