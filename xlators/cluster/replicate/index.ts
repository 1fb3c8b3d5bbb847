import { constants } from 'fs';
import { FopError, Xlator, XlEvent, defineTranslator, opt, systemClock } from '../../../src/core/index';
import type {
  Clock,
  Dirent,
  DirentPlus,
  EntryLockCmd,
  EntryLockType,
  Fd,
  Flock,
  Frame,
  Iatt,
  Inode,
  LockCmd,
  LockKind,
  Loc,
  Name,
  OptionValues,
  SetAttr,
  Statfs,
  Timer,
  XattrMap,
  XattrOp,
  XlatorInit,
} from '../../../src/core/index';
import { Changelog, Kind } from './changelog';
import { Children, Quorum, QuorumType, firstError, isGone, succeeded } from './children';
import type { Replica } from './context';
import { FdStates } from './fds';
import { Healer } from './heal/healer';
import { InodeStates, kindsOf } from './inode-state';
import { lookup, withIno } from './lookup';
import { readFrom, readableOrder } from './read';
import { HashMode, ReadPolicy } from './read-child';
import { Transactions, TxnOptions } from './transaction';
import { getVirtual, isVirtual, setVirtual } from './virtual';

const options = {
  'quorum-type': opt.enum({
    description: 'none: a change needs one child; auto: more than half of the children, or exactly half including the first; fixed: quorum-count children',
    default: 'none',
    values: ['none', 'auto', 'fixed'] as const,
  }),
  'quorum-count': opt.int({ description: "children a change needs with quorum-type fixed", default: '1', min: 1 }),
  'read-subvolume': opt.string({ description: 'a child to read from whenever its copy is current (by name)' }),
  'read-hash-mode': opt.int({
    description: 'which current copy reads go to: 0 the first, 1 one chosen by file (spreads files over the children), 2 by file and reading process',
    default: '1',
    min: 0,
    max: 2,
  }),
  'eager-lock': opt.bool({ description: "a file's writes share one lock and one changelog update while they keep coming", default: 'on' }),
  'post-op-delay-secs': opt.time({ description: 'how long an idle eager lock is kept (and the changelog left marked) before it is given back', default: '1', min: 0, max: 60 }),
  'lock-timeout': opt.time({ description: 'how long a change waits for the locks of another client before it fails (EIO)', default: '20', min: 0.05 }),
  'self-heal-daemon': opt.bool({
    description: 'this client heals in the background: what the bricks\' indexes list when a child comes up (and again later while something is left)',
    default: 'on',
    aliases: ['self-heal'],
  }),
  'background-self-heal-count': opt.int({ description: 'objects healed at once in the background; 0: lookups and reads start no heals', default: '4', min: 0, max: 64 }),
  'heal-timeout': opt.time({ description: 'after a background heal pass that left work, how long until the next', default: '10', min: 0.05 }),
};

type Options = OptionValues<typeof options>;

/** How long replicate waits for every child to say whether it is up before it tells its parents. */
const FIRST_EVENT_WAIT_MS = 5000;
/** How many children a replica set may have (readdir cookies carry the child in 4 bits). */
const MAX_CHILDREN = 16;
const COOKIE_CHILD_BITS = 16;

/**
 * cluster/replicate (GlusterFS's AFR): every child holds a whole copy of the volume. Changes
 * go to every child that is up, as transactions that lock the object on each copy and keep
 * a changelog beside it (transaction.ts, changelog.ts); reads go to a copy that is owed
 * nothing (read.ts, read-child.ts); lookups merge the copies' answers (lookup.ts); copies
 * that missed changes are healed in the background, by `xlstack heal`, and when found on
 * access (heal/); split brain is detected, reported and resolved only on command.
 */
export class Replicate extends Xlator<Options> implements Replica {
  readonly subvols: Children;
  readonly changelog: Changelog;
  readonly states = new InodeStates(this);
  readonly fds: FdStates;
  readonly txns: Transactions;
  readonly heal: Healer;
  private reported?: boolean;
  private firstWait?: Timer;
  private hadQuorum?: boolean;

  constructor(
    init: XlatorInit<Options>,
    readonly clock: Clock = systemClock,
  ) {
    super(init);
    if (init.children.length < 1 || init.children.length > MAX_CHILDREN) throw new Error(`cluster/replicate takes 1 to ${MAX_CHILDREN} subvolumes`);
    const rs = init.options['read-subvolume'];
    if (rs !== undefined && !init.children.some((c) => c.name === rs)) {
      throw new Error(`option 'read-subvolume': ${rs} is not a subvolume (${init.children.map((c) => c.name).join(', ')})`);
    }
    this.subvols = new Children(init.children, init.host);
    this.changelog = new Changelog(this.subvols.names);
    this.fds = new FdStates(this, this.subvols, init.host, this.log, (fd) => `${this.subvols.generation}.${this.states.peek(fd.inode)?.generation ?? -1}.${this.healEpoch(fd.inode)}`);
    this.txns = new Transactions({
      name: this.name,
      children: this.subvols,
      host: this.host,
      log: this.log,
      changelog: this.changelog,
      states: this.states,
      clock,
      options: () => this.txnOptions(),
    });
    this.heal = new Healer(this, () => ({
      daemon: this.options['self-heal-daemon'],
      onAccess: this.options['background-self-heal-count'] > 0,
      concurrency: Math.max(1, this.options['background-self-heal-count']),
      retryMs: this.options['heal-timeout'] * 1000,
      lockTimeoutMs: this.options['lock-timeout'] * 1000,
    }));
  }

  private healEpoch(inode: Inode): string {
    const s = this.states.peek(inode);
    return s ? (['data', 'metadata', 'entry'] as Kind[]).map((k) => `${s.bad[k].size}`).join(',') : '';
  }

  private txnOptions(): TxnOptions {
    const o = this.options;
    const quorum: Quorum = { type: o['quorum-type'] as QuorumType, count: o['quorum-count'] };
    return { eager: o['eager-lock'], postOpDelayMs: o['post-op-delay-secs'] * 1000, lockTimeoutMs: o['lock-timeout'] * 1000, quorum };
  }

  readPolicy(): ReadPolicy {
    const rs = this.options['read-subvolume'];
    return { preferred: rs === undefined ? undefined : this.subvols.byName(rs), hashMode: this.options['read-hash-mode'] as HashMode };
  }

  inode(gfid: string, type = 0): Inode {
    const inode = this.host.itable.get(gfid);
    if (!inode.type && type) inode.type = type;
    return inode;
  }

  // --- events ------------------------------------------------------------------------

  override notify(event: XlEvent, from?: Xlator): void {
    const i = this.subvols.indexOf(from);
    if (event === XlEvent.PARENT_UP) {
      this.firstWait = this.clock.timer(FIRST_EVENT_WAIT_MS, () => {
        const silent = this.subvols.silent();
        if (silent.length) this.log.warn(`no word from ${silent.join(', ')} within ${FIRST_EVENT_WAIT_MS} ms; going on without`);
        this.report();
      });
    }
    if ((event !== XlEvent.CHILD_UP && event !== XlEvent.CHILD_DOWN) || i < 0) return super.notify(event, from);
    const up = event === XlEvent.CHILD_UP;
    if (this.subvols.set(i, up)) {
      this.log.info(`${this.subvols.names[i]} is ${up ? 'up' : 'down'} (${this.subvols.upList().length} of ${this.subvols.n} up)`);
      if (up) this.txns.childCameUp();
      else this.txns.childWentDown(i);
      this.noteQuorum();
    }
    if (this.subvols.heardFromAll) this.report();
    if (up && this.reported) this.heal.childCameUp();
  }

  /** Tells the parents whether the volume is up (any child up), on changes, once every child was heard from. */
  private report(): void {
    this.firstWait?.cancel();
    const up = this.subvols.upList().length > 0;
    if (this.reported === up) return;
    const first = this.reported === undefined;
    this.reported = up;
    if (first) this.noteQuorum();
    this.up(up ? XlEvent.CHILD_UP : XlEvent.CHILD_DOWN);
    if (first && up) this.heal.childCameUp();
  }

  private noteQuorum(): void {
    const q = this.txnOptions().quorum;
    // Not before every child had its say (a set starting up is not short of anything).
    if (q.type === 'none' || this.reported === undefined) return;
    const has = this.txns.quorumMet(this.subvols.upList());
    if (has === this.hadQuorum) return;
    this.hadQuorum = has;
    if (has) this.log.info('client quorum is met: changes allowed');
    else this.log.warn(`client quorum is not met (quorum-type ${q.type}): changes fail with ENOTCONN until enough children are back`);
  }

  protected override async drain(): Promise<void> {
    this.firstWait?.cancel();
    await this.heal.stop();
    await this.txns.settleAll();
  }

  override async fini(): Promise<void> {
    this.firstWait?.cancel();
  }

  override async reconfigure(o: Options): Promise<void> {
    const rs = o['read-subvolume'];
    if (rs !== undefined && this.subvols.byName(rs) < 0) throw new Error(`option 'read-subvolume': ${rs} is not a subvolume`);
    await super.reconfigure(o);
    this.noteQuorum();
  }

  override dump(): Record<string, unknown> {
    return { children: this.subvols.dump(), generation: this.subvols.generation, quorum: this.txnOptions().quorum, sessions: this.txns.dump(), heal: this.heal.dump() };
  }

  override async release(fd: Fd): Promise<void> {
    this.txns.retireSoon(fd.inode.gfid);
    await this.fds.release(fd);
  }

  // --- lookups and reads ---------------------------------------------------------------

  override lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    return lookup(this, frame, loc);
  }

  private inodeOf(loc: Loc): Inode {
    if (loc.inode) return loc.inode;
    if (loc.gfid) return this.inode(loc.gfid);
    throw new FopError('EINVAL', 'replicate needs the inode or GFID of what it reads');
  }

  private kindsFor(inode: Inode, attrs: boolean): Kind[] {
    if (inode.isDir) return ['metadata'];
    return attrs ? kindsOf(inode.type, false) : ['metadata'];
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    const inode = this.inodeOf(loc);
    return withIno(await readFrom(this, frame, inode, this.kindsFor(inode, true), 'stat', (i) => this.subvols.call(i, frame, 'stat', loc)));
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    return withIno(await this.readFd(frame, fd, this.kindsFor(fd.inode, true), 'fstat', (i, f) => this.subvols.call(i, frame, 'fstat', f)));
  }

  override access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    return readFrom(this, frame, this.inodeOf(loc), ['metadata'], 'access', (i) => this.subvols.call(i, frame, 'access', loc, mask));
  }

  override readlink(frame: Frame, loc: Loc): Promise<Name> {
    return readFrom(this, frame, this.inodeOf(loc), ['metadata'], 'readlink', (i) => this.subvols.call(i, frame, 'readlink', loc));
  }

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    if (isVirtual(name)) return getVirtual(this, this.heal, frame, name);
    return readFrom(this, frame, this.inodeOf(loc), ['metadata'], 'getxattr', (i) => this.subvols.call(i, frame, 'getxattr', loc, name));
  }

  override listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    return readFrom(this, frame, this.inodeOf(loc), ['metadata'], 'listxattr', (i) => this.subvols.call(i, frame, 'listxattr', loc));
  }

  override read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    return this.readFd(frame, fd, ['data'], 'read', (i, f) => this.subvols.call(i, frame, 'read', f, size, offset));
  }

  override seek(frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number> {
    return this.readFd(frame, fd, ['data'], 'seek', (i, f) => this.subvols.call(i, frame, 'seek', f, offset, what));
  }

  override async statfs(frame: Frame, loc: Loc): Promise<Statfs> {
    const res = await this.subvols.each(this.subvols.upList(), (i) => this.subvols.call(i, frame, 'statfs', loc));
    const ok = succeeded(res);
    if (ok.length === 0) throw firstError(res);
    // The smallest copy is what the volume can hold.
    return ok.map((i) => (res.get(i) as { value: Statfs }).value).reduce((a, b) => (b.bavail * b.frsize < a.bavail * a.frsize ? b : a));
  }

  /** A read through an fd: on a readable copy where the file is (or can be) opened. */
  private readFd<T>(frame: Frame, fd: Fd, kinds: Kind[], what: string, fn: (child: number, fd: Fd) => Promise<T>): Promise<T> {
    return readFrom(this, frame, fd.inode, kinds, what, async (i) => {
      await this.fds.ensure(fd, [i]);
      const f = this.fds.on(fd, i);
      if (!f) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.subvols.names[i]}`);
      return fn(i, f);
    });
  }

  // --- directories -------------------------------------------------------------------

  override opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    return this.openAll(frame, loc, fd, 'opendir');
  }

  override readdir(frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]> {
    return this.list(frame, fd, size, offset, false);
  }

  override readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    return this.list(frame, fd, size, offset, true) as Promise<DirentPlus[]>;
  }

  /**
   * A listing comes from one copy that is current for the directory's entries; its cookies
   * carry that child, so the next call continues there (or at the same position on another
   * current copy, if that one is gone).
   */
  private async list(frame: Frame, fd: Fd, size: number, offset: number, plus: boolean): Promise<Dirent[]> {
    const from = offset === 0 ? undefined : offset % COOKIE_CHILD_BITS;
    const pos = Math.floor(offset / COOKIE_CHILD_BITS);
    const order = await readableOrder(this, frame, fd.inode, ['entry'], 'readdir');
    const tryOrder = from !== undefined && order.includes(from) ? [from, ...order.filter((c) => c !== from)] : order;
    let last: FopError | undefined;
    for (const i of tryOrder) {
      try {
        await this.fds.ensure(fd, [i]);
        const f = this.fds.on(fd, i);
        if (!f) throw new FopError('EBADF', `directory fd ${fd.id} is not open on ${this.subvols.names[i]}`);
        const entries = plus ? await this.subvols.call(i, frame, 'readdirp', f, size, pos) : await this.subvols.call(i, frame, 'readdir', f, size, pos);
        return entries.map((e) => this.entryFrom(i, e, plus));
      } catch (e) {
        last = FopError.from(e);
        if (frame.interrupted || !(isGone(last) || last.code === 'EBADF')) throw last;
      }
    }
    throw last ?? new FopError('ENOTCONN', 'readdir: no copy to list');
  }

  private entryFrom(i: number, e: Dirent | DirentPlus, plus: boolean): Dirent | DirentPlus {
    const offset = e.offset * COOKIE_CHILD_BITS + i;
    if (!plus) return { ...e, offset };
    const iatt = (e as DirentPlus).iatt;
    if (!iatt) return { ...e, offset };
    // Attributes only from a copy known to be current for that entry (else the kernel looks it up).
    const known = this.host.itable.find(iatt.gfid);
    const kinds = kindsOf(iatt.mode & 0o170000, (iatt.mode & 0o170000) === 0o040000);
    const readable = known ? this.states.readable(known, kinds, this.subvols.upList(), this.subvols.generation) : undefined;
    const trusted = readable ? readable.includes(i) : this.heal.quiet && this.subvols.upList().length === this.subvols.n;
    const full = withIno(iatt);
    return { ...e, offset, ino: full.ino, iatt: trusted ? full : undefined };
  }

  override async fsyncdir(frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    await this.onOpen(frame, fd, 'fsyncdir', (i, f) => this.subvols.call(i, frame, 'fsyncdir', f, datasync));
  }

  // --- opening -------------------------------------------------------------------------

  /** Opens on every child that is up; the file counts as open where that worked. */
  private async openAll(frame: Frame, loc: Loc, fd: Fd, op: 'open' | 'opendir'): Promise<void> {
    const up = this.subvols.upList();
    if (up.length === 0) throw new FopError('ENOTCONN', `${op}: no child of ${this.name} is up`);
    const res = await this.subvols.each(up, (i) => (op === 'open' ? this.subvols.call(i, frame, 'open', loc, fd) : this.subvols.call(i, frame, 'opendir', loc, fd)));
    const ok = succeeded(res);
    if (ok.length === 0) throw firstError(res);
    this.fds.opened(fd, ok, frame.caller);
  }

  override async open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    if (!(fd.flags & constants.O_TRUNC)) return this.openAll(frame, loc, fd, 'open');
    // Truncating is a change to the data like any other.
    const done = await this.txns.inode({ kind: 'data', inode: fd.inode, frame, what: 'open with O_TRUNC', run: (i) => this.subvols.call(i, frame, 'open', loc, fd) });
    this.fds.opened(fd, done.on, frame.caller);
  }

  // --- changes to data and metadata ----------------------------------------------------

  private change<T>(frame: Frame, kind: 'data' | 'metadata', inode: Inode, what: string, run: (i: number) => Promise<T>, fd?: Fd): Promise<T> {
    const targets = fd ? (holding: readonly number[]) => this.fds.ensure(fd, holding) : undefined;
    return this.txns
      .inode({
        kind,
        inode,
        frame,
        what,
        targets,
        run: fd
          ? (i) => {
              if (!this.fds.on(fd, i)) throw new FopError('EBADF', `fd ${fd.id} is not open on ${this.subvols.names[i]}`);
              return run(i);
            }
          : run,
      })
      .then((d) => d.value);
  }

  private fdOn(fd: Fd, i: number): Fd {
    return this.fds.on(fd, i)!;
  }

  override write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    return this.change(frame, 'data', fd.inode, 'write', (i) => this.subvols.call(i, frame, 'write', this.fdOn(fd, i), data, offset), fd);
  }

  override async ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    return withIno(await this.change(frame, 'data', fd.inode, 'ftruncate', (i) => this.subvols.call(i, frame, 'ftruncate', this.fdOn(fd, i), size), fd));
  }

  override async truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    return withIno(await this.change(frame, 'data', this.inodeOf(loc), 'truncate', (i) => this.subvols.call(i, frame, 'truncate', loc, size)));
  }

  override fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    return this.change(frame, 'data', fd.inode, 'fallocate', (i) => this.subvols.call(i, frame, 'fallocate', this.fdOn(fd, i), mode, offset, length), fd);
  }

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    return withIno(await this.change(frame, 'metadata', this.inodeOf(loc), 'setattr', (i) => this.subvols.call(i, frame, 'setattr', loc, attr)));
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    return withIno(await this.change(frame, 'metadata', fd.inode, 'fsetattr', (i) => this.subvols.call(i, frame, 'fsetattr', this.fdOn(fd, i), attr), fd));
  }

  override async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    if (isVirtual(name)) return setVirtual(this, this.heal, frame, loc.inode ?? (loc.gfid ? this.inode(loc.gfid) : undefined), name, value);
    return this.change(frame, 'metadata', this.inodeOf(loc), 'setxattr', (i) => this.subvols.call(i, frame, 'setxattr', loc, name, value, flags));
  }

  override removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    return this.change(frame, 'metadata', this.inodeOf(loc), 'removexattr', (i) => this.subvols.call(i, frame, 'removexattr', loc, name));
  }

  // --- changes to names ------------------------------------------------------------------

  /** `answer`: the existing object whose attributes the change answers with (a link, a rename). */
  private entry<T>(frame: Frame, what: string, names: { dir: Inode; name: Name }[], run: (i: number) => Promise<T>, answer?: Inode) {
    const dirs = [...new Set(names.map((n) => n.dir))];
    return this.txns.entry({ frame, what, dirs, names, run, answer });
  }

  private parentOf(loc: Loc, what: string): { dir: Inode; name: Name } {
    if (!loc.parent || loc.name === undefined) throw new FopError('EINVAL', `${what} needs a parent and a name`);
    return { dir: loc.parent, name: loc.name };
  }

  /** A new object's bookkeeping: readable where it was made, missed everywhere else. */
  private made(loc: Loc, on: readonly number[]): void {
    if (loc.inode) this.states.created(loc.inode, on, this.subvols.n, this.subvols.generation);
  }

  override async create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    const d = await this.entry(frame, 'create', [this.parentOf(loc, 'create')], (i) => this.subvols.call(i, frame, 'create', loc, mode, fd));
    this.fds.opened(fd, d.on, frame.caller);
    this.made(loc, d.on);
    return withIno(d.value);
  }

  override async mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    const d = await this.entry(frame, 'mknod', [this.parentOf(loc, 'mknod')], (i) => this.subvols.call(i, frame, 'mknod', loc, mode, rdev));
    this.made(loc, d.on);
    return withIno(d.value);
  }

  override async mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    const d = await this.entry(frame, 'mkdir', [this.parentOf(loc, 'mkdir')], (i) => this.subvols.call(i, frame, 'mkdir', loc, mode));
    this.made(loc, d.on);
    return withIno(d.value);
  }

  override async symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    const d = await this.entry(frame, 'symlink', [this.parentOf(loc, 'symlink')], (i) => this.subvols.call(i, frame, 'symlink', target, loc));
    this.made(loc, d.on);
    return withIno(d.value);
  }

  override async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const d = await this.entry(frame, 'link', [this.parentOf(to, 'link')], (i) => this.subvols.call(i, frame, 'link', from, to), from.inode);
    return withIno(d.value);
  }

  override async unlink(frame: Frame, loc: Loc): Promise<void> {
    await this.entry(frame, 'unlink', [this.parentOf(loc, 'unlink')], (i) => this.subvols.call(i, frame, 'unlink', loc));
  }

  override async rmdir(frame: Frame, loc: Loc): Promise<void> {
    await this.entry(frame, 'rmdir', [this.parentOf(loc, 'rmdir')], (i) => this.subvols.call(i, frame, 'rmdir', loc));
  }

  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    const d = await this.entry(frame, 'rename', [this.parentOf(from, 'rename'), this.parentOf(to, 'rename')], (i) => this.subvols.call(i, frame, 'rename', from, to, flags), from.inode);
    return withIno(d.value);
  }

  // --- open files: flush, fsync, locks -------------------------------------------------

  /** Runs `fn` on every child where the file is open; succeeds if any does. */
  private async onOpen<T>(frame: Frame, fd: Fd, what: string, fn: (i: number, f: Fd) => Promise<T>): Promise<T> {
    const on = this.fds.openOn(fd).filter((i) => this.subvols.isUp(i));
    if (on.length === 0) throw new FopError('ENOTCONN', `${what}: fd ${fd.id} is open on no child that is up`);
    const res = await this.subvols.each(on, (i) => fn(i, this.fds.on(fd, i)!));
    const ok = succeeded(res);
    if (ok.length === 0) throw firstError(res);
    return (res.get(ok[0]) as { value: T }).value;
  }

  override async flush(frame: Frame, fd: Fd): Promise<void> {
    // The shared data lock goes back soon after a close: others may be waiting for it.
    this.txns.retireSoon(fd.inode.gfid);
    await this.onOpen(frame, fd, 'flush', (i, f) => this.subvols.call(i, frame, 'flush', f));
  }

  override async fsync(frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    await this.onOpen(frame, fd, 'fsync', (i, f) => this.subvols.call(i, frame, 'fsync', f, datasync));
  }

  /**
   * POSIX and flock locks are taken on every copy, one child after the other in child order
   * (so two clients never each hold a part); a conflict on one gives back what was taken.
   */
  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    const up = await this.fds.ensure(fd, this.subvols.upList());
    if (up.length === 0) throw new FopError('ENOTCONN', `lk: fd ${fd.id} is open on no child that is up`);
    const call = (i: number, c: LockCmd, l: Flock) => this.subvols.call(i, frame, 'lk', this.fds.on(fd, i)!, c, l, kind);
    if (cmd === 'get') return readFrom(this, frame, fd.inode, [], 'lk', (i) => (up.includes(i) ? call(i, 'get', lock) : Promise.reject(new FopError('EBADF'))));
    if (lock.type === 'unlock') {
      await this.subvols.each(up, (i) => call(i, 'set', lock));
      return lock;
    }
    const taken: number[] = [];
    let result: Flock | undefined;
    for (const i of up) {
      try {
        result = await call(i, cmd, lock);
        taken.push(i);
      } catch (e) {
        const err = FopError.from(e);
        if (isGone(err) && !frame.interrupted) continue;
        await this.subvols.each(taken, (t) => call(t, 'set', { ...lock, type: 'unlock' }));
        throw err;
      }
    }
    if (!result) throw new FopError('ENOTCONN', 'lk: no copy took the lock');
    return result;
  }

  // --- internal fops from translators above --------------------------------------------

  /** Internal locks of a translator above: on every child that is up, in child order. */
  override async inodelk(frame: Frame, domain: string, loc: Loc, cmd: LockCmd, lock: Flock): Promise<Flock> {
    return this.inOrder(frame, 'inodelk', cmd === 'get' || lock.type === 'unlock', (i) => this.subvols.call(i, frame, 'inodelk', domain, loc, cmd, lock), (i) =>
      this.subvols.call(i, frame, 'inodelk', domain, loc, 'set', { ...lock, type: 'unlock' }),
    );
  }

  override async entrylk(frame: Frame, domain: string, loc: Loc, name: Name | undefined, cmd: EntryLockCmd, type: EntryLockType): Promise<void> {
    await this.inOrder(frame, 'entrylk', cmd === 'unlock', (i) => this.subvols.call(i, frame, 'entrylk', domain, loc, name, cmd, type), (i) =>
      this.subvols.call(i, frame, 'entrylk', domain, loc, name, 'unlock', type),
    );
  }

  private async inOrder<T>(frame: Frame, what: string, everywhere: boolean, take: (i: number) => Promise<T>, undo: (i: number) => Promise<unknown>): Promise<T> {
    const up = this.subvols.upList();
    if (up.length === 0) throw new FopError('ENOTCONN', `${what}: no child of ${this.name} is up`);
    if (everywhere) {
      const res = await this.subvols.each(up, take);
      const ok = succeeded(res);
      if (ok.length === 0) throw firstError(res);
      return (res.get(ok[0]) as { value: T }).value;
    }
    const taken: number[] = [];
    let first: T | undefined;
    for (const i of up) {
      try {
        const v = await take(i);
        if (taken.length === 0) first = v;
        taken.push(i);
      } catch (e) {
        const err = FopError.from(e);
        if (isGone(err) && !frame.interrupted) continue;
        await this.subvols.each(taken, undo);
        throw err;
      }
    }
    if (taken.length === 0) throw new FopError('ENOTCONN', `${what}: no child took it`);
    return first as T;
  }

  /**
   * Internal xattrs of a translator above (distribute's layouts and linkto marks): read from a
   * current copy, changed as metadata like any xattr, so a copy that misses a change is healed.
   */
  override async xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    if (op === 'get') return readFrom(this, frame, this.inodeOf(loc), ['metadata'], 'xattrop', (i) => this.subvols.call(i, frame, 'xattrop', loc, op, xattrs));
    return this.change(frame, 'metadata', this.inodeOf(loc), 'xattrop', (i) => this.subvols.call(i, frame, 'xattrop', loc, op, xattrs));
  }
}

export default defineTranslator({
  type: 'cluster/replicate',
  description: 'keeps a whole copy of the volume on every subvolume (GlusterFS AFR): changelogged transactions, reads from current copies, self-heal, split-brain detection',
  options,
  subvolumes: { min: 1, max: MAX_CHILDREN },
  create: (init) => new Replicate(init),
});
