// INTERIM (not to be committed): replaced by the lock table from the locks work.
import { FopError } from './errors';
import type { Frame } from './frame';
import type { Flock, Gfid, LockKind } from './types';
export class LockTable {
  constructor(_opts: object = {}) {}
  test(_gfid: Gfid, _kind: LockKind, _owner: string, lock: Flock): Flock {
    return { ...lock, type: 'unlock' };
  }
  lock(_gfid: Gfid, _kind: LockKind, _owner: string, _lock: Flock, _opts: { wait: boolean; frame?: Frame; fdKey: object | string }): Promise<Flock> {
    return Promise.reject(new FopError('ENOLCK'));
  }
  releaseOwner(_gfid: Gfid, _owner: string): void {}
  releaseFd(_fdKey: object | string): void {}
  dump(): Record<string, unknown> {
    return {};
  }
}
