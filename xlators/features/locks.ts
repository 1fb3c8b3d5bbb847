import { constants } from 'fs';
import { Fd, FdContext, FopError, Frame, LockTable, Xlator, XlatorInit, defineTranslator } from '../../src/core/index';
import type { Flock, LockCmd, LockKind, LockOwner, OptionValues } from '../../src/core/index';

const options = {};

type Options = OptionValues<typeof options>;

/**
 * Who a request locks for. POSIX: the frame's lock owner; a request that names none (a
 * caller that does not know it) locks for its open file, as an OFD lock does, so that
 * anonymous requests through different open files still exclude each other. flock: the
 * open file.
 */
function ownerOf(frame: Frame, fd: Fd, kind: LockKind): LockOwner {
  return kind === 'posix' && frame.lkOwner !== '' ? frame.lkOwner : `fd:${fd.id}`;
}

const O_ACCMODE = constants.O_RDONLY | constants.O_WRONLY | constants.O_RDWR;

/** fcntl(2): a read lock needs an fd open for reading, a write lock one open for writing. */
function checkAccess(fd: Fd, lock: Flock, kind: LockKind): void {
  if (kind !== 'posix' || lock.type === 'unlock') return;
  const mode = fd.flags & O_ACCMODE;
  if (lock.type === 'read' && mode === constants.O_WRONLY) throw new FopError('EBADF', `a read lock on fd ${fd.id}, which is open for writing only`);
  if (lock.type === 'write' && mode === constants.O_RDONLY) throw new FopError('EBADF', `a write lock on fd ${fd.id}, which is open for reading only`);
}

/**
 * features/locks: POSIX byte-range (fcntl) and flock locks for everything above it (one
 * mount's processes over a local volfile; every client of a brick under protocol/server).
 * It answers `lk` itself from its LockTable and passes every other fop through. A flush
 * (close(2) of any descriptor) drops the POSIX locks its owner holds on that file; the
 * release of an open file drops its flock lock and whatever was locked through it (on a
 * brick: every lock of a client whose connection ended). Going down ends the requests
 * still waiting (ENOTCONN).
 */
export class Locks extends Xlator<Options> {
  private readonly table: LockTable;
  /** Marks the fds that locked here, so their release comes here. */
  private readonly locked = new FdContext<true>(this);

  constructor(init: XlatorInit<Options>) {
    super(init);
    this.table = new LockTable({ log: this.log });
  }

  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    const owner = ownerOf(frame, fd, kind);
    if (cmd === 'get') return this.table.test(fd.inode.gfid, kind, owner, lock);
    if (cmd !== 'set' && cmd !== 'wait') throw new FopError('EINVAL', `unknown lock command ${JSON.stringify(cmd)}`);
    checkAccess(fd, lock, kind);
    this.locked.set(fd, true);
    return this.table.lock(fd.inode.gfid, kind, owner, lock, { wait: cmd === 'wait', frame, fdKey: fd });
  }

  override async flush(frame: Frame, fd: Fd): Promise<void> {
    this.table.releaseOwner(fd.inode.gfid, ownerOf(frame, fd, 'posix'));
    return this.wind('flush', frame, fd);
  }

  override async release(fd: Fd): Promise<void> {
    this.locked.take(fd);
    this.table.releaseFd(fd);
  }

  protected override async drain(): Promise<void> {
    this.table.close(`${this.name} is going down`);
  }

  override dump(): Record<string, unknown> {
    return this.table.dump();
  }
}

export default defineTranslator({
  type: 'features/locks',
  description: 'POSIX (fcntl) and flock locks for every client above it',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Locks(init),
});
