import { constants } from 'fs';
import type { Inode } from './inode';

let nextFdId = 1;

/** The flags to open an fd's file again with (another graph, a new connection): never create, fail on existence or truncate twice. */
export const reopenFlags = (flags: number): number => flags & ~(constants.O_CREAT | constants.O_EXCL | constants.O_TRUNC);

/**
 * An open file or directory on one graph. `inode` is fixed for the fd's whole life:
 * nothing ever points an fd at another inode (or graph). Translators keep their
 * per-fd state in `ctx`, keyed by the translator object.
 */
export class Fd {
  readonly id = nextFdId++;
  readonly ctx = new Map<object, unknown>();
  /**
   * What the user opened, across graphs and connections: an Fd that reopens the same open
   * file elsewhere (a graph switch, a reconnection) carries the same openId, so what belongs
   * to the open file (its flock lock, the locks taken through it) outlives the move.
   */
  readonly openId: string;
  private refs = 1;

  constructor(
    readonly inode: Inode,
    /** open(2) flags as the user gave them (O_CREAT/O_EXCL/O_TRUNC already applied). */
    readonly flags: number,
    readonly isDir: boolean,
    /** Runs the translators' release callbacks; set by the graph that owns the fd. */
    private readonly onRelease: (fd: Fd) => Promise<void>,
    openId?: string,
  ) {
    this.openId = openId ?? `${process.pid}.${this.id}`;
    inode.ref();
  }

  get refcount(): number {
    return this.refs;
  }

  ref(): this {
    if (this.refs <= 0) throw new Error(`fd ${this.id}: ref after release`);
    this.refs++;
    return this;
  }

  /** Drops a reference; the last one releases the fd on every translator that holds state for it. */
  unref(): Promise<void> {
    if (this.refs <= 0) throw new Error(`fd ${this.id}: unref below zero`);
    if (--this.refs > 0) return Promise.resolve();
    return this.onRelease(this).finally(() => this.inode.unref());
  }
}
