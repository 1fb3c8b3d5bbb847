import type { Caller } from './types';

let nextUnique = 1;

/** Where a frame is counted while it is in flight: its graph. */
export interface FrameOwner {
  readonly id: number;
  frameStarted(frame: Frame): void;
  frameDone(frame: Frame): void;
}

/** Who asks and on whose behalf locks are held. */
export interface FrameInit {
  readonly caller: Caller;
  /**
   * The POSIX lock owner (the kernel's lock_owner, in hex; a server prefixes its client),
   * for lk, flush and release. '' when the request has none.
   */
  readonly lkOwner?: string;
  /**
   * Which client of a server the request came from (its identity, the same across its
   * connections); '' for a request of this process's own.
   */
  readonly client?: string;
}

/**
 * One request travelling down a graph: who asked, which fop, when. A graph counts its
 * frames in flight; an old graph is cleaned up only when none is left.
 */
export class Frame {
  readonly unique = nextUnique++;
  readonly started = Date.now();
  readonly caller: Caller;
  readonly lkOwner: string;
  readonly client: string;
  private finished = false;
  private interruptedFlag = false;
  private listeners?: Set<() => void>;

  constructor(
    readonly owner: FrameOwner,
    readonly op: string,
    init: Caller | FrameInit,
  ) {
    const i = 'caller' in init ? init : { caller: init };
    this.caller = i.caller;
    this.lkOwner = i.lkOwner ?? '';
    this.client = i.client ?? '';
    owner.frameStarted(this);
  }

  get graphId(): number {
    return this.owner.id;
  }

  /** The caller gave up (a signal reached it): a fop that waits (a blocked lock) should stop with EINTR. */
  get interrupted(): boolean {
    return this.interruptedFlag;
  }

  /** Calls `fn` once if the frame is interrupted; returns the way to stop listening. */
  onInterrupt(fn: () => void): () => void {
    if (this.interruptedFlag) {
      fn();
      return () => undefined;
    }
    (this.listeners ??= new Set()).add(fn);
    return () => this.listeners?.delete(fn);
  }

  interrupt(): void {
    if (this.interruptedFlag || this.finished) return;
    this.interruptedFlag = true;
    const fns = this.listeners;
    this.listeners = undefined;
    for (const fn of fns ?? []) fn();
  }

  /** Ends the frame (idempotent: a frame is counted down once). */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.listeners = undefined;
    this.owner.frameDone(this);
  }
}
