// cluster/distribute: files spread over the children by a hash of their name (GlusterFS's
// DHT). See hash.ts and layout.ts (placement), lookup.ts and linkto.ts (finding names),
// dirs.ts (directories on every child), readdir.ts and cookies.ts (merged listings),
// namespace.ts (creates, links, renames), files.ts (open files that follow their data),
// migrate.ts (rebalance), locks.ts (the internal locks that make migrations safe).
import { constants } from 'fs';
import { FopError, Frame, ROOT_GFID, XlEvent, Xlator, defineTranslator, opt, systemClock } from '../../../src/core/index';
import type { Clock, Dirent, DirentPlus, EntryLockCmd, EntryLockType, Fd, Flock, Iatt, Inode, LockCmd, LockKind, Loc, Name, OptionValues, SetAttr, Statfs, XattrMap, XattrOp, XlatorInit } from '../../../src/core/index';
import { mergeDir, sumStatfs, withIno } from './attrs';
import { Bounds, Cluster, Counters, Placement, settle } from './cluster';
import { Dirs, REMOVING_XATTR } from './dirs';
import { Files } from './files';
import { NameHasher, RSYNC_HASH_REGEX } from './hash';
import { hashedChild } from './layout';
import { Lookups } from './lookup';
import { Migration } from './migrate';
import { Names } from './namespace';
import { Listing } from './readdir';

const options = {
  'migrate-timeout': opt.time({
    description: "the longest a file's migration (its copy and switch) may hold the file's writers back; one that would take longer is abandoned and the file stays where it is",
    default: '60',
    min: 0.1,
  }),
  'rsync-hash-regex': opt.string({
    description: "names it matches are placed by its first group (GlusterFS's default places rsync's temporary .NAME.XXXXXX where NAME goes); '' hashes every name whole",
    default: RSYNC_HASH_REGEX,
    reconfigurable: false,
  }),
};

type Options = OptionValues<typeof options>;

/**
 * The virtual xattrs rebalance drives distribute with (as GlusterFS's rebalance does). Reading
 * `fix-layout` on a directory rewrites its layout over every child not being removed;
 * reading `migrate` on a file moves it to its hashed child; both answer with a JSON report.
 * `pathinfo` says where a file is. Setting `removing` on the root names the children being
 * drained (comma-separated; '' none). Only root may use trusted.* names through a mount.
 */
export const VIRTUAL = {
  fixLayout: 'trusted.xlstack.dht.fix-layout',
  migrate: 'trusted.xlstack.dht.migrate',
  pathinfo: 'trusted.xlstack.dht.pathinfo',
  removing: 'trusted.xlstack.dht.removing',
} as const;

/** How long a migration waits for the fops in flight on its file before it skips it. */
const MIGRATE_LOCK_MS = 5000;
/** How much longer than a migration may last a fop waits for it (the copy's end, the switch). */
const FOP_WAIT_MARGIN_MS = 30_000;
const MAX_MOVES = 3;

const json = (v: unknown): Buffer => Buffer.from(JSON.stringify(v));

function boundsOf(o: Options): Bounds {
  const migrateMs = Math.round(o['migrate-timeout'] * 1000);
  return { migrateMs, fopWaitMs: migrateMs + FOP_WAIT_MARGIN_MS, migrateLockMs: MIGRATE_LOCK_MS };
}

/**
 * A chain that ends in storage/posix without features/locks cannot keep the internal locks
 * migrations and their writers take: refused when the volume is built.
 */
function checkLocks(children: readonly Xlator[]): void {
  for (const child of children) {
    let x = child;
    while (x.children.length === 1 && x.type !== 'features/locks') x = x.children[0];
    if (x.type === 'storage/posix') {
      throw new Error(`subvolume '${child.name}' keeps no internal locks: put a features/locks volume above its storage/posix (distribute makes migrations safe with them)`);
    }
  }
}

export class Distribute extends Xlator<Options> implements Cluster {
  readonly hasher: NameHasher;
  bounds: Bounds;
  clock: Clock = systemClock;
  readonly counters: Counters = { lookupsEverywhere: 0, linktosMade: 0, dirsHealed: 0, layoutsWritten: 0, relocations: 0, migrations: 0 };
  readonly removing = new Set<number>();
  private readonly status: (boolean | undefined)[];
  private reported?: boolean;
  private readonly byName: Map<string, number>;
  private readonly dirs: Dirs;
  private readonly lookups: Lookups;
  private readonly files: Files;
  private readonly names: Names;
  private readonly listing: Listing;
  private readonly migration: Migration;

  constructor(init: XlatorInit<Options>) {
    super(init);
    checkLocks(init.children);
    try {
      this.hasher = new NameHasher(init.options['rsync-hash-regex']);
    } catch (e) {
      throw new Error(`option 'rsync-hash-regex': ${(e as Error).message}`);
    }
    this.bounds = boundsOf(init.options);
    this.status = init.children.map(() => undefined);
    this.byName = new Map(init.children.map((c, i) => [c.name, i]));
    this.dirs = new Dirs(this, (names) => this.noteRemoving(names));
    this.lookups = new Lookups(this, this.dirs);
    this.files = new Files(this, this, this.lookups);
    this.names = new Names(this, this.dirs, this.lookups, this.files);
    this.listing = new Listing(this, this.lookups, this.files);
    this.migration = new Migration(this, this.dirs, this.lookups);
    this.lookups.finisher = this.migration.finish;
  }

  override async reconfigure(options: Options): Promise<void> {
    await super.reconfigure(options);
    this.bounds = boundsOf(options);
  }

  // --- Cluster ---------------------------------------------------------------------

  isUp(i: number): boolean {
    return this.status[i] === true;
  }

  eligible(): number[] {
    return this.children.map((_, i) => i).filter((i) => this.isUp(i) && !this.removing.has(i));
  }

  placement(inode: Inode): Placement | undefined {
    return inode.ctx.get(this) as Placement | undefined;
  }

  place(inode: Inode, p: Placement): void {
    inode.ctx.set(this, p);
  }

  childName(i: number): string {
    return this.children[i]?.name ?? `#${i}`;
  }

  childIndex(name: string): number | undefined {
    return this.byName.get(name);
  }

  private noteRemoving(names: string): void {
    this.removing.clear();
    for (const n of names.split(',').filter(Boolean)) {
      const i = this.byName.get(n);
      if (i !== undefined) this.removing.add(i);
    }
  }

  // --- events ------------------------------------------------------------------------

  /** Up once every child has reported and one is up; down when none is. */
  override notify(event: XlEvent, from?: Xlator): void {
    if ((event === XlEvent.CHILD_UP || event === XlEvent.CHILD_DOWN) && from) {
      const i = this.children.indexOf(from);
      if (i < 0) return;
      this.status[i] = event === XlEvent.CHILD_UP;
      this.log.info(`${from.name} is ${event === XlEvent.CHILD_UP ? 'up' : 'down'}`);
      if (this.status.some((s) => s === undefined)) return;
      const up = this.status.some(Boolean);
      if (up === this.reported) return;
      this.reported = up;
      this.up(up ? XlEvent.CHILD_UP : XlEvent.CHILD_DOWN);
      return;
    }
    super.notify(event, from);
  }

  override dump(): Record<string, unknown> {
    return {
      children: this.children.map((c, i) => ({ name: c.name, up: this.isUp(i), removing: this.removing.has(i) })),
      counters: { ...this.counters },
    };
  }

  override async release(fd: Fd): Promise<void> {
    await this.files.release(fd);
  }

  // --- what a Loc or an fd is ------------------------------------------------------------

  private inodeOf(loc: Loc): Inode {
    if (loc.inode) return loc.inode;
    if (loc.gfid) return this.host.itable.get(loc.gfid);
    throw new FopError('EINVAL', 'no inode or GFID');
  }

  private isDirInode(inode: Inode): boolean {
    return inode.gfid === ROOT_GFID || inode.isDir || this.placement(inode)?.kind === 'dir';
  }

  /** A file's loc by GFID, for its child (which may not know the name the caller used). */
  private byGfid(inode: Inode): Loc {
    return { inode, gfid: inode.gfid };
  }

  // --- lookups and attributes ------------------------------------------------------------

  override lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    return this.lookups.lookup(frame, loc);
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.stat(frame, loc);
    return withIno(await this.files.onInode(frame, inode, false, (child) => child.stat(frame, this.byGfid(inode)), (v) => v.nlink));
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    const o = this.files.open.get(fd);
    if (o?.kind === 'dir') return this.onDirFds(o.fds, (child, cfd) => child.fstat(frame, cfd)).then(mergeDir);
    return withIno(await this.files.onFile(frame, fd, false, (child, cfd) => child.fstat(frame, cfd), (v) => v.nlink));
  }

  override async access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.onFirst((child) => child.access(frame, loc, mask));
    await this.files.onInode(frame, inode, false, (child) => child.access(frame, this.byGfid(inode), mask), () => 1);
  }

  override async readlink(frame: Frame, loc: Loc): Promise<Name> {
    const inode = this.inodeOf(loc);
    return this.files.onInode(frame, inode, false, (child) => child.readlink(frame, this.byGfid(inode)), () => 1);
  }

  override async statfs(frame: Frame, loc: Loc): Promise<Statfs> {
    const up = this.children.map((_, i) => i).filter((i) => this.isUp(i));
    const rs = await settle(up.map((i) => this.children[i].statfs(frame, { inode: this.host.itable.root, gfid: ROOT_GFID, path: loc.path })));
    const ok = rs.flatMap((r) => (r.ok ? [r.value] : []));
    if (ok.length === 0) throw rs.length ? (rs[0] as { error: FopError }).error : new FopError('ENOTCONN', 'every child is down');
    return sumStatfs(ok);
  }

  override async setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.setattr(frame, loc, attr);
    return withIno(await this.files.onInode(frame, inode, true, (child) => child.setattr(frame, this.byGfid(inode), attr), (v) => v.nlink));
  }

  override async fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    const o = this.files.open.get(fd);
    if (o?.kind === 'dir') return this.onDirFds(o.fds, (child, cfd) => child.fsetattr(frame, cfd, attr)).then(mergeDir);
    return withIno(await this.files.onFile(frame, fd, true, (child, cfd) => child.fsetattr(frame, cfd, attr), (v) => v.nlink));
  }

  override async truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    const inode = this.inodeOf(loc);
    return withIno(await this.files.onInode(frame, inode, true, (child) => child.truncate(frame, this.byGfid(inode), size), (v) => v.nlink));
  }

  override async ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    return withIno(await this.files.onFile(frame, fd, true, (child, cfd) => child.ftruncate(frame, cfd, size), (v) => v.nlink));
  }

  // --- xattrs (and the virtual ones rebalance uses) --------------------------------------------

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    if (name === VIRTUAL.migrate && loc.parent && loc.name !== undefined) return json(await this.migration.migrate(frame, loc.parent, loc.name));
    const inode = this.inodeOf(loc);
    if (name === VIRTUAL.fixLayout) {
      if (!this.isDirInode(inode)) throw new FopError('ENOTDIR', `${VIRTUAL.fixLayout} is for directories`);
      return json(await this.dirs.fixLayout(frame, { ...loc, inode }));
    }
    if (name === VIRTUAL.migrate) {
      const { parent, name: n } = this.entryOf(loc, inode);
      return json(await this.migration.migrate(frame, parent, n));
    }
    if (name === VIRTUAL.pathinfo) return json(await this.pathinfo(frame, loc, inode));
    if (this.isDirInode(inode)) return this.dirs.onFirst((child) => child.getxattr(frame, loc, name));
    // Metadata reads need no link-count check (`ls -l` asks every file for its ACL): a copy a
    // migration left behind has the xattrs it had at the switch; a gone one sends it looking.
    return this.files.onInode(frame, inode, false, (child) => child.getxattr(frame, this.byGfid(inode), name), () => 1);
  }

  /** The parent and name a file is known by (given, or the name lookups last found). */
  private entryOf(loc: Loc, inode: Inode): { parent: Inode; name: Name } {
    if (loc.parent && loc.name !== undefined) return { parent: loc.parent, name: loc.name };
    const d = [...inode.dentries][0];
    if (!d) throw new FopError('EINVAL', `${inode.gfid}: which name? (look it up by name first)`);
    return { parent: d.parent, name: d.name };
  }

  private async pathinfo(frame: Frame, loc: Loc, inode: Inode): Promise<Record<string, unknown>> {
    if (this.isDirInode(inode)) {
      const layout = await this.dirs.layoutOf(frame, inode);
      return { directory: true, layout: Object.fromEntries(layout.map((r, i) => [this.childName(i), r ? [r.start, r.stop] : null])) };
    }
    const child = this.childName(await this.lookups.cachedOf(frame, inode));
    const { parent, name } = this.entryOf(loc, inode);
    const h = hashedChild(await this.dirs.layoutOf(frame, parent), this.hasher.hash(name));
    return { child, hashed: h === undefined ? null : this.childName(h) };
  }

  override async setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    const inode = this.inodeOf(loc);
    if (name === VIRTUAL.removing) return this.setRemoving(frame, inode, value.toString('latin1'));
    if (this.isDirInode(inode)) return this.dirs.setxattr(frame, loc, name, value, flags);
    await this.files.onInode(frame, inode, true, (child) => child.setxattr(frame, this.byGfid(inode), name, value, flags));
  }

  /** Names the children being drained, on every copy of the root (so every client learns it at its next root lookup). */
  private async setRemoving(frame: Frame, inode: Inode, list: string): Promise<void> {
    if (inode.gfid !== ROOT_GFID) throw new FopError('EINVAL', `${VIRTUAL.removing} is set on the root`);
    const names = list.split(',').map((s) => s.trim()).filter(Boolean);
    const unknown = names.filter((n) => !this.byName.has(n));
    if (unknown.length) throw new FopError('EINVAL', `no subvolume named ${unknown.join(', ')} (subvolumes: ${this.children.map((c) => c.name).join(', ')})`);
    if (names.length >= this.children.length) throw new FopError('EINVAL', 'cannot remove every subvolume');
    const down = this.children.findIndex((_, i) => !this.isUp(i));
    if (down >= 0) throw new FopError('ENOTCONN', `${this.childName(down)} is down`);
    const value = Buffer.from(names.join(','), 'latin1');
    await Promise.all(this.children.map((c) => c.xattrop(frame, { inode: this.host.itable.root, gfid: ROOT_GFID }, 'set', { [REMOVING_XATTR]: value })));
    this.noteRemoving(names.join(','));
    this.log.info(names.length ? `removing ${names.join(', ')}: no new names go there` : 'no subvolume is being removed');
  }

  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.onFirst((child) => child.listxattr(frame, loc));
    return this.files.onInode(frame, inode, false, (child) => child.listxattr(frame, this.byGfid(inode)), () => 1);
  }

  override async removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.removexattr(frame, loc, name);
    await this.files.onInode(frame, inode, true, (child) => child.removexattr(frame, this.byGfid(inode), name));
  }

  // --- namespace ------------------------------------------------------------------------------

  override mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    return this.names.make(frame, loc, (h) => this.children[h].mknod(frame, loc, mode, rdev));
  }

  override symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    return this.names.make(frame, loc, (h) => this.children[h].symlink(frame, target, loc));
  }

  override mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    return this.dirs.mkdir(frame, loc, mode);
  }

  override unlink(frame: Frame, loc: Loc): Promise<void> {
    return this.names.unlink(frame, loc);
  }

  override async rmdir(frame: Frame, loc: Loc): Promise<void> {
    const inode = loc.inode ?? this.host.itable.get((await this.lookups.lookup(frame, loc)).gfid);
    return this.dirs.rmdir(frame, loc, inode);
  }

  override rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    return this.names.rename(frame, from, to, flags);
  }

  override link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    return this.names.link(frame, from, to);
  }

  override create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    return this.names.create(frame, loc, mode, fd);
  }

  // --- files ---------------------------------------------------------------------------------

  override open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    return this.files.openFile(frame, { ...loc, inode: this.inodeOf(loc) }, fd, (fd.flags & constants.O_TRUNC) !== 0);
  }

  override read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    return this.files.onFile(frame, fd, false, (child, cfd) => child.read(frame, cfd, size, offset));
  }

  override write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    return this.files.onFile(frame, fd, true, (child, cfd) => child.write(frame, cfd, data, offset));
  }

  override async flush(frame: Frame, fd: Fd): Promise<void> {
    const o = this.files.open.get(fd);
    if (o?.kind === 'dir') return;
    const of = this.files.file(fd);
    return this.children[of.child].flush(frame, of.fd);
  }

  override async fsync(frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    const of = this.files.file(fd);
    return this.children[of.child].fsync(frame, of.fd, datasync);
  }

  override fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    return this.files.onFile(frame, fd, true, (child, cfd) => child.fallocate(frame, cfd, mode, offset, length));
  }

  override seek(frame: Frame, fd: Fd, offset: number, what: 'data' | 'hole'): Promise<number> {
    return this.files.onFile(frame, fd, false, (child, cfd) => child.seek(frame, cfd, offset, what));
  }

  /**
   * Application locks are kept where the data is. A lock taken on a copy a migration left
   * behind would guard nothing: whether the copy still has a name is checked under the
   * migration lock (a migration either saw this lock and left the file alone, or is over),
   * and a lock on a left-behind copy is undone there and taken again where the file went.
   */
  override async lk(frame: Frame, fd: Fd, cmd: LockCmd, lock: Flock, kind: LockKind): Promise<Flock> {
    const o = this.files.open.get(fd);
    if (o?.kind === 'dir') {
      const i = o.fds.findIndex((f) => f !== undefined);
      return this.children[i].lk(frame, o.fds[i]!, cmd, lock, kind);
    }
    for (let moves = 0; ; moves++) {
      const of = this.files.file(fd);
      const { child: i, fd: cfd } = of;
      cfd.ref();
      try {
        const got = await this.children[i].lk(frame, cfd, cmd, lock, kind);
        if (cmd === 'get' || of.settled || moves >= MAX_MOVES) return got;
        const unlock = await this.files.lock(frame, i, fd.inode);
        let nlink: number;
        try {
          nlink = (await this.children[i].fstat(frame, cfd)).nlink;
        } finally {
          unlock();
        }
        if (nlink > 0) return got;
        if (lock.type !== 'unlock') await this.children[i].lk(frame, cfd, 'set', { ...lock, type: 'unlock' }, kind).catch(() => undefined);
        if (!(await this.files.follow(fd, of, i))) return got;
      } finally {
        void cfd.unref();
      }
    }
  }

  // --- directories ------------------------------------------------------------------------------

  override opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    return this.listing.opendir(frame, loc, fd);
  }

  override async readdir(frame: Frame, fd: Fd, size: number, offset: number): Promise<Dirent[]> {
    const entries = await this.listing.list(frame, fd, size, offset, false);
    return entries.map(({ name, offset: o, ino, type }) => ({ name, offset: o, ino, type }));
  }

  override readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    return this.listing.list(frame, fd, size, offset, true);
  }

  override async fsyncdir(frame: Frame, fd: Fd, datasync: boolean): Promise<void> {
    await this.onDirFds(this.files.dir(fd).fds, (child, cfd) => child.fsyncdir(frame, cfd, datasync));
  }

  private async onDirFds<T>(fds: readonly (Fd | undefined)[], fop: (child: Xlator, cfd: Fd) => Promise<T>): Promise<T[]> {
    const rs = await settle(fds.flatMap((f, i) => (f ? [fop(this.children[i], f)] : [])));
    const failed = rs.find((r) => !r.ok);
    if (failed && !failed.ok) throw failed.error;
    return rs.map((r) => (r as { value: T }).value);
  }

  // --- internal fops from above: where the object is --------------------------------------------

  override async inodelk(frame: Frame, domain: string, loc: Loc, cmd: LockCmd, lock: Flock): Promise<Flock> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.onFirst((child) => child.inodelk(frame, domain, loc, cmd, lock));
    return this.children[await this.lookups.cachedOf(frame, inode)].inodelk(frame, domain, this.byGfid(inode), cmd, lock);
  }

  override async entrylk(frame: Frame, domain: string, loc: Loc, name: Name | undefined, cmd: EntryLockCmd, type: EntryLockType): Promise<void> {
    return this.dirs.onFirst((child) => child.entrylk(frame, domain, loc, name, cmd, type));
  }

  override async xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    const inode = this.inodeOf(loc);
    if (this.isDirInode(inode)) return this.dirs.onFirst((child) => child.xattrop(frame, loc, op, xattrs));
    return this.children[await this.lookups.cachedOf(frame, inode)].xattrop(frame, this.byGfid(inode), op, xattrs);
  }
}

export default defineTranslator({
  type: 'cluster/distribute',
  description: 'spreads files over its subvolumes by a hash of their name (GlusterFS DHT); grows and shrinks online with xlstack rebalance',
  options,
  subvolumes: { min: 1 },
  create: (init) => new Distribute(init),
});
