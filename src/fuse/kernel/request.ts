// One request read from the kernel and not yet answered: who asked, and its interruption.
import type { Request } from './fs';

const noop = (): void => undefined;

/** One request read from the kernel and not yet answered. */
export class Req implements Request {
  readonly started = Date.now();
  interrupted = false;
  /** READ/READDIR/xattr: the caller's buffer size. */
  size = 0;
  gfid?: string;
  private listeners?: (() => void)[];

  constructor(
    readonly unique: number,
    readonly opcode: number,
    readonly nodeid: number,
    readonly uid: number,
    readonly gid: number,
    readonly pid: number,
  ) {}

  onInterrupt(fn: () => void): () => void {
    if (this.interrupted) {
      fn();
      return noop;
    }
    const l = (this.listeners ??= []);
    l.push(fn);
    return () => {
      const i = l.indexOf(fn);
      if (i >= 0) l.splice(i, 1);
    };
  }

  /** Runs the listeners once; returns those that threw. */
  interrupt(): unknown[] {
    if (this.interrupted) return [];
    this.interrupted = true;
    const l = this.listeners ?? [];
    this.listeners = undefined;
    const errors: unknown[] = [];
    for (const fn of l) {
      try {
        fn();
      } catch (e) {
        errors.push(e);
      }
    }
    return errors;
  }
}
