// What every translator that keeps copies of what lies below (a cache, a read-ahead) does
// with the events that make those copies stale.
import { XlEvent } from './events';
import type { Upcall } from './upcall';
import { Xlator } from './xlator';

/**
 * A translator that keeps copies of what lies below. What changed while a child was away or
 * reconnecting was never told, so a child going or coming back drops everything, as does an
 * upcall for everything; an upcall for one file drops what it names; a graph that drains
 * keeps nothing more (`down`).
 */
export abstract class CachingXlator<V = unknown> extends Xlator<V> {
  /** The graph is draining: nothing is kept any more. */
  protected down = false;

  /** Drops everything kept. */
  protected abstract dropAll(): void;

  /** Drops what an upcall about one file (`u.gfid`) says changed. */
  protected abstract dropNamed(u: Upcall): void;

  override notify(event: XlEvent, from?: Xlator): void {
    if (event === XlEvent.CHILD_DOWN || event === XlEvent.CHILD_UP) this.dropAll();
    super.notify(event, from);
  }

  override upcall(u: Upcall, from?: Xlator): void {
    if (u.gfid === undefined) this.dropAll();
    else this.dropNamed(u);
    super.upcall(u, from);
  }

  protected override async drain(): Promise<void> {
    this.down = true;
    this.dropAll();
  }
}
