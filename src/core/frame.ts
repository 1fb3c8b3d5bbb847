import type { Caller } from './types';

let nextUnique = 1;

/** Where a frame is counted while it is in flight: its graph. */
export interface FrameOwner {
  readonly id: number;
  frameStarted(frame: Frame): void;
  frameDone(frame: Frame): void;
}

/**
 * One request travelling down a graph: who asked, which fop, when. A graph counts its
 * frames in flight; an old graph is cleaned up only when none is left.
 */
export class Frame {
  readonly unique = nextUnique++;
  readonly started = Date.now();
  private finished = false;

  constructor(
    readonly owner: FrameOwner,
    readonly op: string,
    readonly caller: Caller,
  ) {
    owner.frameStarted(this);
  }

  get graphId(): number {
    return this.owner.id;
  }

  /** Ends the frame (idempotent: a frame is counted down once). */
  done(): void {
    if (this.finished) return;
    this.finished = true;
    this.owner.frameDone(this);
  }
}
