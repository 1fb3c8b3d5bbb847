import { FopError } from '../../../src/core/index';
import type { EntryLockType, Frame, Gfid, Name } from '../../../src/core/index';

/** One lock on a name in a directory (or, name undefined, on the whole directory). */
interface Held {
  readonly owner: string;
  readonly name?: Name;
  readonly type: EntryLockType;
}

interface Waiter extends Held {
  readonly grant: () => void;
  readonly fail: (e: FopError) => void;
}

interface Dir {
  readonly held: Held[];
  readonly waiting: Waiter[];
}

const conflicts = (a: Held, b: Held): boolean =>
  a.owner !== b.owner && (a.name === undefined || b.name === undefined || a.name === b.name) && (a.type === 'write' || b.type === 'write');

/**
 * Entry locks (GlusterFS's entrylk): a cluster translator locks a name in a directory (or
 * the whole directory) around a change to it, in a domain of its own. Read locks share,
 * write locks exclude; a whole-directory lock conflicts with every name in it. Waiters are
 * granted in arrival order as soon as they can be; an interrupted waiter leaves with EINTR.
 */
export class EntryLocks {
  private readonly dirs = new Map<string, Dir>();

  private dir(domain: string, gfid: Gfid): Dir {
    const key = `${domain}\0${gfid}`;
    let d = this.dirs.get(key);
    if (!d) this.dirs.set(key, (d = { held: [], waiting: [] }));
    return d;
  }

  lock(domain: string, gfid: Gfid, owner: string, name: Name | undefined, type: EntryLockType, wait: boolean, frame?: Pick<Frame, 'onInterrupt'>): Promise<void> {
    const d = this.dir(domain, gfid);
    const want: Held = { owner, name, type };
    // Arrival order: nobody jumps a waiter it would conflict with.
    if (!d.held.some((h) => conflicts(h, want)) && !d.waiting.some((w) => conflicts(w, want))) {
      d.held.push(want);
      return Promise.resolve();
    }
    if (!wait) return Promise.reject(new FopError('EAGAIN', `${name ?? '(directory)'} is locked in ${domain}`));
    return new Promise<void>((resolve, reject) => {
      const off = frame?.onInterrupt(() => {
        const i = d.waiting.indexOf(w);
        if (i < 0) return;
        d.waiting.splice(i, 1);
        this.grantWaiters(domain, gfid, d);
        reject(new FopError('EINTR', 'interrupted while waiting for an entry lock'));
      });
      const w: Waiter = { ...want, grant: () => (off?.(), resolve()), fail: (e) => (off?.(), reject(e)) };
      d.waiting.push(w);
    });
  }

  unlock(domain: string, gfid: Gfid, owner: string, name: Name | undefined): void {
    const d = this.dirs.get(`${domain}\0${gfid}`);
    if (!d) return;
    const i = d.held.findIndex((h) => h.owner === owner && h.name === name);
    if (i >= 0) d.held.splice(i, 1);
    this.grantWaiters(domain, gfid, d);
  }

  /** Every lock and wait of owners starting with `prefix` (a client that is gone). */
  releaseGroup(prefix: string): void {
    for (const [key, d] of this.dirs) {
      const gone = (h: Held) => h.owner.startsWith(prefix);
      for (const w of d.waiting.filter(gone)) w.fail(new FopError('ENOTCONN', 'the client that waited is gone'));
      d.waiting.splice(0, d.waiting.length, ...d.waiting.filter((w) => !gone(w)));
      d.held.splice(0, d.held.length, ...d.held.filter((h) => !gone(h)));
      const [domain, gfid] = key.split('\0');
      this.grantWaiters(domain, gfid, d);
    }
  }

  /** Ends every wait (the translator is going down). */
  close(reason: string): void {
    for (const d of this.dirs.values()) for (const w of d.waiting.splice(0)) w.fail(new FopError('ENOTCONN', reason));
    this.dirs.clear();
  }

  private grantWaiters(domain: string, gfid: Gfid, d: Dir): void {
    for (let i = 0; i < d.waiting.length; ) {
      const w = d.waiting[i];
      const blocked = d.held.some((h) => conflicts(h, w)) || d.waiting.slice(0, i).some((e) => conflicts(e, w));
      if (blocked) {
        i++;
        continue;
      }
      d.waiting.splice(i, 1);
      d.held.push({ owner: w.owner, name: w.name, type: w.type });
      w.grant();
    }
    if (d.held.length === 0 && d.waiting.length === 0) this.dirs.delete(`${domain}\0${gfid}`);
  }

  dump(): Record<string, unknown>[] {
    return [...this.dirs].map(([key, d]) => {
      const [domain, gfid] = key.split('\0');
      return { domain, gfid, held: d.held.map(({ owner, name, type }) => ({ owner, name, type })), waiting: d.waiting.map(({ owner, name, type }) => ({ owner, name, type })) };
    });
  }
}
