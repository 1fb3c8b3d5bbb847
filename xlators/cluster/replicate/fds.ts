// Where each open file is open. A file opened while a child was down, or whose open failed
// there, is opened there later, when a change or a read needs it (GlusterFS's fix-open):
// through an fd of its own, with the flags the file was opened with minus O_CREAT, O_EXCL
// and O_TRUNC (the copy must not be truncated again), as the user who opened the file.
import { FdContext, FopError, reopenFlags } from '../../../src/core/index';
import type { Caller, Fd, Frame, Logger, XlatorHost } from '../../../src/core/index';
import { Children, isGone } from './children';

interface FdState {
  /** The fd to use on each child where the file is open: the fd itself, or one opened later. */
  readonly on: Map<number, Fd>;
  /** Who opened the file: a later open runs as them. */
  readonly caller: Caller;
  /** Opens in progress, per child (concurrent fops wait for the same one). */
  readonly opening: Map<number, Promise<void>>;
  /** Children where opening failed for a reason of the copy, and the epoch it failed in. */
  readonly failed: Map<number, string>;
}

export class FdStates {
  private readonly ctx: FdContext<FdState>;

  constructor(
    owner: object,
    private readonly children: Children,
    private readonly host: XlatorHost,
    private readonly log: Logger,
    /** Changes whenever a late open may now succeed (a child came up, the file was healed). */
    private readonly epochOf: (fd: Fd) => string,
  ) {
    this.ctx = new FdContext<FdState>(owner);
  }

  /** The file was opened (open, create, opendir) on these children with `fd` itself. */
  opened(fd: Fd, on: readonly number[], caller: Caller): void {
    const s = this.ctx.get(fd) ?? this.ctx.set(fd, { on: new Map(), caller, opening: new Map(), failed: new Map() });
    for (const i of on) s.on.set(i, fd);
  }

  /** The fd to pass to child i, if the file is open there. */
  on(fd: Fd, i: number): Fd | undefined {
    return this.ctx.get(fd)?.on.get(i);
  }

  /** Children where the file is open. */
  openOn(fd: Fd): number[] {
    return [...(this.ctx.get(fd)?.on.keys() ?? [])].sort((a, b) => a - b);
  }

  /**
   * Opens the file on every child of `want` where it is not open yet; returns the children
   * of `want` where it is open afterwards. A copy that cannot be opened (missing, gone) is
   * left out: a change there then counts as missed.
   */
  async ensure(fd: Fd, want: readonly number[]): Promise<number[]> {
    const s = this.ctx.get(fd);
    if (!s) throw new FopError('EBADF', `fd ${fd.id} is not open on this replica set`);
    const epoch = this.epochOf(fd);
    await Promise.all(
      want.map((i) => {
        if (s.on.has(i) || !this.children.isUp(i) || s.failed.get(i) === epoch) return undefined;
        let p = s.opening.get(i);
        if (!p) {
          p = this.openLate(fd, s, i, epoch).finally(() => s.opening.delete(i));
          s.opening.set(i, p);
        }
        return p;
      }),
    );
    return want.filter((i) => s.on.has(i));
  }

  private async openLate(fd: Fd, s: FdState, i: number, epoch: string): Promise<void> {
    const late = this.host.newFd(fd.inode, reopenFlags(fd.flags), fd.isDir, fd.openId);
    const frame: Frame = this.host.frame('open', s.caller);
    try {
      await this.children.call(i, frame, fd.isDir ? 'opendir' : 'open', { inode: fd.inode, gfid: fd.inode.gfid }, late);
      s.on.set(i, late);
      s.failed.delete(i);
      this.log.debug(`fd ${fd.id} (${fd.inode.gfid}) opened on ${this.children.names[i]} (it was not open there)`);
    } catch (e) {
      const err = FopError.from(e);
      if (!isGone(err)) s.failed.set(i, epoch);
      this.log.debug(`fd ${fd.id} (${fd.inode.gfid}) could not be opened on ${this.children.names[i]}: ${err.message}`);
      await late.unref();
    } finally {
      frame.done();
    }
  }

  /** The fd is unusable on child i (its open file there is lost): open it again there next time. */
  lost(fd: Fd, i: number): void {
    const s = this.ctx.get(fd);
    const late = s?.on.get(i);
    if (!s || !late) return;
    s.on.delete(i);
    if (late !== fd) void late.unref();
  }

  /** The file's last reference went: the fds opened later go too. */
  async release(fd: Fd): Promise<void> {
    const s = this.ctx.take(fd);
    if (!s) return;
    await Promise.all(s.opening.values());
    await Promise.all([...s.on.values()].filter((f) => f !== fd).map((f) => f.unref()));
  }
}
