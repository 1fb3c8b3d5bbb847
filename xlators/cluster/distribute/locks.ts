// DHT's internal locks on the children (features/locks' inodelk): a migration holds its
// file exclusively on the child it leaves and the one it fills; every fop that changes a
// file holds it shared where the file is, so a migration sees no change it would miss.
import { Expired, FopError, Frame, LOCK_TO_EOF, withDeadline } from '../../../src/core/index';
import type { Caller, Loc } from '../../../src/core/index';
import { randomUUID } from 'crypto';
import type { Cluster } from './cluster';

/** Files being migrated (shared: fops changing them; exclusive: the migration). */
export const MIGRATE_DOMAIN = 'xlstack.dht.migrate';
/** Directories whose layout is being written (exclusive, on the first child up). */
export const LAYOUT_DOMAIN = 'xlstack.dht.layout';

/** How long a cancelled wait may take to answer (the child must drop the waiter first). */
const CANCEL_GRACE_MS = 5000;

// Lock owners are unique per lock: two fops of one application owner share nothing here.
const OWNER_PREFIX = `dht.${randomUUID()}`;
let nextOwner = 0;

/** Releases a lock: in the background (the promise says when the child has it back). */
export type Unlock = () => Promise<void>;

/**
 * Locks `loc` on child `i` in `domain` (read: shared, write: exclusive), waiting at most
 * `waitMs` (ETIMEDOUT after that, naming `what`); an interrupt of `parent` (the caller gave
 * up) ends the wait too. Returns the unlock, which is sent in the background: nobody needs to
 * wait for it, and a child that went away dropped the lock with its client anyway.
 */
export async function lockOn(c: Cluster, i: number, domain: string, loc: Loc, type: 'read' | 'write', waitMs: number, what: string, who: Caller, parent?: Frame): Promise<Unlock> {
  const child = c.children[i];
  const frame = c.host.frame(`dht-lock`, { caller: who, lkOwner: `${OWNER_PREFIX}.${++nextOwner}` });
  const whole = { start: 0, end: LOCK_TO_EOF, pid: 0 };
  let expired = false;
  // The wait is cancelled on the child (an interrupt), never abandoned: a grant that came
  // after we stopped waiting would hold the lock for nobody.
  const timer = setTimeout(() => ((expired = true), frame.interrupt()), waitMs);
  const off = parent?.onInterrupt(() => frame.interrupt());
  const unlock = (): Promise<void> =>
    child
      .inodelk(frame, domain, loc, 'set', { type: 'unlock', ...whole })
      .catch((e) => c.log.warn(`unlocking ${what} on ${c.childName(i)}: ${(e as Error).message}`))
      .then(() => undefined)
      .finally(() => frame.done());
  try {
    await withDeadline(child.inodelk(frame, domain, loc, 'wait', { type, ...whole }), waitMs + CANCEL_GRACE_MS, what);
  } catch (e) {
    void unlock();
    if (expired || e instanceof Expired) {
      c.log.warn(`gave up waiting for ${what} on ${c.childName(i)} after ${waitMs} ms`);
      throw new FopError('ETIMEDOUT', `waited ${waitMs} ms for ${what} on ${c.childName(i)}`);
    }
    throw FopError.from(e);
  } finally {
    clearTimeout(timer);
    off?.();
  }
  return unlock;
}
