import { FopError } from '../../core/errors';
import type { Logger } from '../../core/log';
import { nameBytes } from '../../core/types';
import type { Upcall } from '../../core/upcall';
import type { NodeTable } from '../nodes';

/** The kernel's two invalidation messages (a KernelSession's). */
export interface KernelNotifier {
  notifyInvalInode(nodeid: number, off: number, len: number): Promise<boolean>;
  notifyInvalEntry(parent: number, name: Buffer): Promise<boolean>;
}

type Job = { readonly kind: 'inode'; readonly nodeid: number; data: boolean } | { readonly kind: 'entry'; readonly parent: number; readonly name: Buffer };

/**
 * Makes the kernel drop what it caches of objects that changed behind the mount's back
 * (upcalls): an object's attributes (and its pages, when its data changed) by its nodeid,
 * names by their directory's nodeid; for "everything", every nodeid the kernel holds.
 * Objects the kernel holds no nodeid for are not in its caches: nothing to say.
 *
 * The kernel may hold a lock a notification needs until a request it sent is answered (an
 * entry invalidation takes its directory's lock, which a LOOKUP there holds), so nothing
 * ever waits for one where a request is served: they are queued and written one at a time
 * from a callback of their own (the session bounds each). A queued invalidation of the same
 * thing is not repeated.
 */
export class KernelInvalidator {
  private readonly queue = new Map<string, Job>();
  private running = false;
  private stopped = false;
  private readonly stats = { inodes: 0, entries: 0, notCached: 0, failed: 0 };

  constructor(
    private readonly nodes: NodeTable,
    private readonly kernel: KernelNotifier,
    private readonly log: Logger,
  ) {}

  push(u: Upcall): void {
    if (this.stopped) return;
    if (u.gfid === undefined) {
      for (const b of this.nodes.all()) this.inode(b.nodeid, true);
    } else {
      const b = this.nodes.withGfid(u.gfid);
      if (b) this.inode(b.nodeid, u.data === true);
    }
    for (const e of u.entries ?? []) {
      const dir = this.nodes.withGfid(e.parent);
      if (!dir) continue;
      const name = nameBytes(e.name);
      this.queue.set(`e${dir.nodeid}/${name.toString('hex')}`, { kind: 'entry', parent: dir.nodeid, name });
    }
    this.kick();
  }

  /** No more notifications (the session ended). */
  stop(): void {
    this.stopped = true;
    this.queue.clear();
  }

  dump(): Record<string, unknown> {
    return { queued: this.queue.size, ...this.stats };
  }

  private inode(nodeid: number, data: boolean): void {
    const k = `i${nodeid}`;
    const queued = this.queue.get(k);
    if (queued?.kind === 'inode') queued.data ||= data;
    else this.queue.set(k, { kind: 'inode', nodeid, data });
  }

  private kick(): void {
    if (this.running || this.queue.size === 0) return;
    this.running = true;
    setImmediate(() => void this.run());
  }

  private async run(): Promise<void> {
    try {
      for (const [k, job] of this.queue) {
        this.queue.delete(k);
        await this.send(job);
        if (this.stopped) break;
      }
    } finally {
      this.running = false;
      this.kick();
    }
  }

  private async send(job: Job): Promise<void> {
    try {
      // Attributes only (offset -1), or the pages from 0 to the end too.
      const cached = job.kind === 'inode' ? await this.kernel.notifyInvalInode(job.nodeid, job.data ? 0 : -1, 0) : await this.kernel.notifyInvalEntry(job.parent, job.name);
      this.stats[job.kind === 'inode' ? 'inodes' : 'entries']++;
      if (!cached) this.stats.notCached++;
    } catch (e) {
      this.stats.failed++;
      if (FopError.from(e).code === 'ENOTCONN') return this.stop();
      this.log.warn(`invalidating ${job.kind === 'inode' ? `nodeid ${job.nodeid}` : `an entry of nodeid ${job.parent}`} in the kernel failed: ${(e as Error).message}`);
    }
  }
}
