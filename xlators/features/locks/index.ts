import { constants } from 'fs';
import { Fd, FdContext, FopError, Frame, LockTable, Xlator, XlatorInit, defineTranslator, gfidOfLoc } from '../../../src/core/index';
import { EntryLocks } from './entrylk';
import type { EntryLockCmd, EntryLockType, Flock, Iatt, LockCmd, LockKind, LockOwner, Loc, Name, OptionValues } from '../../../src/core/index';

const options = {};

type Options = OptionValues<typeof options>;

/**
 * Who a request locks for. POSIX: the frame's lock owner; a request that names none (a
 * caller that does not know it) locks for its open file, as an OFD lock does, so that
 * anonymous requests through different open files still exclude each other. flock: the
 * open file.
 */
function ownerOf(frame: Frame, fd: Fd, kind: LockKind): LockOwner {
  return kind === 'posix' && frame.lkOwner !== '' ? frame.lkOwner : `open:${fd.openId}`;
}

/**
 * The locks of one volume, shared by every graph of the process that has it (by volume
 * name): a graph switch builds a new translator, and the locks must not notice. What is
 * held through an open file lasts while any Fd continues it (Fd.openId: the handle moved
 * to the new graph before its Fd on the old one was released).
 */
class Shared {
  private static readonly byName = new Map<string, Shared>();
  readonly table: LockTable;
  /** Internal inode locks (inodelk), a table per domain. */
  private readonly domains = new Map<string, LockTable>();
  /** Internal entry locks (entrylk). */
  readonly entries = new EntryLocks();
  /** Fds open through this volume, per open file. */
  private readonly opens = new Map<string, number>();
  private users = 0;

  private constructor(
    readonly name: string,
    private readonly log: Locks['log'],
  ) {
    this.table = new LockTable({ log });
  }

  domain(name: string): LockTable {
    let t = this.domains.get(name);
    if (!t) this.domains.set(name, (t = new LockTable({ log: this.log })));
    return t;
  }

  /**
   * A client is gone: its internal locks (inodelk, entrylk). Its POSIX and flock locks go with
   * the open files that carry them (a server may keep a departed client's open files for a
   * grace period, for it to continue them).
   */
  releaseGroup(prefix: string): void {
    for (const t of this.domains.values()) t.releaseGroup(prefix);
    this.entries.releaseGroup(prefix);
  }

  dump(): Record<string, unknown> {
    const inodelks = Object.fromEntries([...this.domains].map(([d, t]) => [d, t.dump()]));
    return { ...this.table.dump(), inodelks, entrylks: this.entries.dump() };
  }

  static acquire(name: string, log: Locks['log']): Shared {
    let s = Shared.byName.get(name);
    if (!s) Shared.byName.set(name, (s = new Shared(name, log)));
    s.users++;
    return s;
  }

  /** The last graph with this volume went down: waiting requests end. */
  release(reason: string): void {
    if (--this.users > 0) return;
    Shared.byName.delete(this.name);
    this.table.close(reason);
    for (const t of this.domains.values()) t.close(reason);
    this.entries.close(reason);
  }

  opened(openId: string): void {
    this.opens.set(openId, (this.opens.get(openId) ?? 0) + 1);
  }

  /** An Fd of the open file went; with the last, what the open file held goes. */
  closed(openId: string): void {
    const n = (this.opens.get(openId) ?? 1) - 1;
    if (n > 0) return void this.opens.set(openId, n);
    this.opens.delete(openId);
    this.table.releaseFd(openId);
  }
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
  private readonly shared: Shared;
  /** Marks the fds opened through here, so their release comes here. */
  private readonly opens = new FdContext<true>(this);
  private down = false;

  constructor(init: XlatorInit<Options>) {
    super(init);
    this.shared = Shared.acquire(init.name, this.log);
  }

  private get table(): LockTable {
    return this.shared.table;
  }

  private opened(fd: Fd): void {
    this.opens.set(fd, true);
    this.shared.opened(fd.openId);
  }

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    await this.wind('open', frame, loc, fd);
    this.opened(fd);
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    const iatt = await this.wind('create', frame, loc, mode, fd);
    this.opened(fd);
    return iatt;
  }

  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    const owner = ownerOf(frame, fd, kind);
    if (cmd === 'get') return this.table.test(fd.inode.gfid, kind, owner, lock);
    if (cmd !== 'set' && cmd !== 'wait') throw new FopError('EINVAL', `unknown lock command ${JSON.stringify(cmd)}`);
    checkAccess(fd, lock, kind);
    // An fd this translator did not see opened (a test driving it directly) counts from here.
    if (!this.opens.get(fd)) this.opened(fd);
    return this.table.lock(fd.inode.gfid, kind, owner, lock, { wait: cmd === 'wait', frame, fdKey: fd.openId });
  }

  override async flush(frame: Frame, fd: Fd): Promise<void> {
    this.table.releaseOwner(fd.inode.gfid, ownerOf(frame, fd, 'posix'));
    return this.wind('flush', frame, fd);
  }

  override async release(fd: Fd): Promise<void> {
    if (this.opens.take(fd)) this.shared.closed(fd.openId);
  }

  protected override async drain(): Promise<void> {
    this.shutdown();
  }

  override async fini(): Promise<void> {
    this.shutdown();
  }

  private shutdown(): void {
    if (this.down) return;
    this.down = true;
    this.shared.release(`${this.name} is going down`);
  }

  override async inodelk(frame: Frame, domain: string, loc: Loc, cmd: LockCmd, lock: Flock): Promise<Flock> {
    const gfid = gfidOfLoc(loc);
    if (!gfid) throw new FopError('EINVAL', 'inodelk needs the GFID of what it locks');
    const owner = frame.lkOwner || 'anonymous';
    const table = this.shared.domain(domain);
    if (cmd === 'get') return table.test(gfid, 'posix', owner, lock);
    // Not tied to any open file: they go with an unlock, or with their client.
    return table.lock(gfid, 'posix', owner, lock, { wait: cmd === 'wait', frame, fdKey: `inodelk:${owner}` });
  }

  override async entrylk(frame: Frame, domain: string, loc: Loc, name: Name | undefined, cmd: EntryLockCmd, type: EntryLockType): Promise<void> {
    const gfid = gfidOfLoc(loc);
    if (!gfid) throw new FopError('EINVAL', 'entrylk needs the GFID of the directory');
    const owner = frame.lkOwner || 'anonymous';
    if (cmd === 'unlock') return this.shared.entries.unlock(domain, gfid, owner, name);
    return this.shared.entries.lock(domain, gfid, owner, name, type, cmd === 'lock', frame);
  }

  override clientGone(owner: string): void {
    this.shared.releaseGroup(owner);
    super.clientGone(owner);
  }

  override dump(): Record<string, unknown> {
    return this.shared.dump();
  }
}

export default defineTranslator({
  type: 'features/locks',
  description: 'POSIX (fcntl) and flock locks for every client above it',
  options,
  subvolumes: { min: 1, max: 1 },
  create: (init) => new Locks(init),
});
