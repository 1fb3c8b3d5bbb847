import { Xlator, defineTranslator, gfidOfLoc, opt, systemClock } from '../../src/core/index';
import type { Clock, DirentPlus, Fd, Frame, Gfid, Iatt, Loc, Name, OptionValues, SetAttr, Upcall as UpcallMsg, UpcallEntry, XattrMap, XattrOp, XlatorInit } from '../../src/core/index';
import { constants } from 'fs';

const options = {
  'cache-invalidation': opt.bool({ description: 'tell clients of changes other clients make to what they hold (off: pass everything through)', default: 'on' }),
  'cache-invalidation-timeout': opt.time({
    description:
      "how long (seconds) after a client last touched an object it is still told of changes to it: at least the clients' md-cache-timeout plus their kernel's attribute-timeout",
    default: '60',
    min: 1,
  }),
  'inode-limit': opt.int({
    description: 'how many objects the brick follows for its clients; the least recently touched beyond it are let go, and the clients that hold them are told to drop them',
    default: '131072',
    min: 16,
  }),
};

type Options = OptionValues<typeof options>;

/** What changed about one object, for the clients that hold it. */
type Change = Omit<UpcallMsg, 'gfid' | 'client'> & { readonly gfid: Gfid };

/**
 * Which clients touched which objects, and when: one record per volume, shared by every graph
 * of the brick (a graph switch builds a new translator; clients connected to either are told),
 * as features/locks shares its lock table.
 */
class Interest {
  private static readonly byName = new Map<string, Interest>();
  /** Least recently touched first: GFID -> client -> when it last touched it (ms). */
  readonly objects = new Map<Gfid, Map<string, number>>();
  /** The translators of every live graph with this volume: an upcall leaves through each. */
  readonly members = new Set<Upcall>();

  private constructor(readonly name: string) {}

  static acquire(name: string, member: Upcall): Interest {
    let i = Interest.byName.get(name);
    if (!i) Interest.byName.set(name, (i = new Interest(name)));
    i.members.add(member);
    return i;
  }

  release(member: Upcall): void {
    this.members.delete(member);
    if (this.members.size === 0 && Interest.byName.get(this.name) === this) Interest.byName.delete(this.name);
  }

  /**
   * `client` touched `gfid` now. Past `limit` objects the least recently touched are
   * forgotten: returned with the clients that still may hold them (since `since`).
   */
  touched(gfid: Gfid, client: string, now: number, limit: number, since: number): [Gfid, string[]][] {
    let clients = this.objects.get(gfid);
    if (clients) this.objects.delete(gfid);
    else clients = new Map();
    clients.set(client, now);
    this.objects.set(gfid, clients);
    const forgotten: [Gfid, string[]][] = [];
    for (const [old, holders] of this.objects) {
      if (this.objects.size <= limit) break;
      this.objects.delete(old);
      const still = [...holders].filter(([, at]) => at >= since).map(([c]) => c);
      if (still.length) forgotten.push([old, still]);
    }
    return forgotten;
  }

  /** The clients other than `except` that touched `gfid` since `since`; ones that did not are forgotten. */
  interested(gfid: Gfid, except: string, since: number): string[] {
    const clients = this.objects.get(gfid);
    if (!clients) return [];
    const out: string[] = [];
    for (const [c, at] of clients) {
      if (at < since) clients.delete(c);
      else if (c !== except) out.push(c);
    }
    if (clients.size === 0) this.objects.delete(gfid);
    return out;
  }

  clientGone(client: string): void {
    for (const [gfid, clients] of this.objects) {
      clients.delete(client);
      if (clients.size === 0) this.objects.delete(gfid);
    }
  }
}

/**
 * features/upcall, on a brick: remembers which clients touched which objects (every fop
 * that names one, its directory, what a listing or lookup found) and, when one client
 * changes an object, tells the others that touched it within cache-invalidation-timeout what
 * changed (attributes, data, xattrs, names in a directory), before the change is answered:
 * an upcall goes up to protocol/server, which sends it over those clients' connections.
 * Their caches (md-cache, io-cache, read-ahead, readdir-ahead) drop what it names and their
 * mounts tell their kernels. Requests of the brick's own (no client) tell every client.
 */
export class Upcall extends Xlator<Options> {
  private readonly interest: Interest;
  private readonly stats = { upcalls: 0, changes: 0, forgotten: 0 };

  constructor(
    init: XlatorInit<Options>,
    private readonly clock: Clock = systemClock,
  ) {
    super(init);
    this.interest = Interest.acquire(init.name, this);
  }

  override async fini(): Promise<void> {
    this.interest.release(this);
  }

  override clientGone(owner: string): void {
    // The owner prefix is the client's identity and a ':'.
    this.interest.clientGone(owner.endsWith(':') ? owner.slice(0, -1) : owner);
    super.clientGone(owner);
  }

  override dump(): Record<string, unknown> {
    return { 'cache-invalidation': this.options['cache-invalidation'], objects: this.interest.objects.size, ...this.stats };
  }

  /** Sends an upcall for one client up this graph (protocol/server routes it to that client's connections). */
  deliver(u: UpcallMsg): void {
    this.sendUpcall(u);
  }

  private get on(): boolean {
    return this.options['cache-invalidation'];
  }

  // --- bookkeeping -----------------------------------------------------------------------

  /** `frame`'s client touched these objects. */
  private touch(frame: Frame, ...gfids: (Gfid | undefined)[]): void {
    // The brick's own requests (no client) cache nothing anywhere.
    if (!this.on || frame.client === '') return;
    const now = this.clock.now();
    const limit = this.options['inode-limit'];
    const since = now - this.options['cache-invalidation-timeout'] * 1000;
    for (const g of gfids) {
      if (g === undefined) continue;
      // An object no longer followed is one its holders can no longer be told of: they drop it now.
      for (const [old, clients] of this.interest.touched(g, frame.client, now, limit, since)) {
        this.stats.forgotten++;
        for (const client of clients) for (const m of this.interest.members) m.deliver({ gfid: old, attrs: true, data: true, xattrs: true, client });
      }
    }
  }

  /** Tells the clients that hold what changed (all but the one that changed it). */
  private tell(frame: Frame, changes: (Change | undefined)[]): void {
    if (!this.on) return;
    const since = this.clock.now() - this.options['cache-invalidation-timeout'] * 1000;
    for (const c of changes) {
      if (!c) continue;
      this.stats.changes++;
      for (const client of this.interest.interested(c.gfid, frame.client, since)) {
        this.stats.upcalls++;
        for (const m of this.interest.members) m.deliver({ ...c, client });
      }
    }
    // The one that changed it holds it too (what it changes, it caches).
    for (const c of changes) if (c) this.touch(frame, c.gfid);
  }

  /** A fop on one object that changes `what` of it when it succeeds. */
  private async changing<T>(frame: Frame, gfid: Gfid | undefined, what: Omit<Change, 'gfid'>, run: () => Promise<T>): Promise<T> {
    this.touch(frame, gfid);
    const r = await run();
    if (gfid !== undefined) this.tell(frame, [{ gfid, ...what }]);
    return r;
  }

  // --- fops that only touch --------------------------------------------------------------

  override async lookup(frame: Frame, loc: Loc): Promise<Iatt> {
    // Its directory too: a client that found no such name caches that (a negative entry).
    this.touch(frame, loc.parent?.gfid, gfidOfLoc(loc));
    const iatt = await this.wind('lookup', frame, loc);
    this.touch(frame, iatt.gfid);
    return iatt;
  }

  override async stat(frame: Frame, loc: Loc): Promise<Iatt> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('stat', frame, loc);
  }

  override async fstat(frame: Frame, fd: Fd): Promise<Iatt> {
    this.touch(frame, fd.inode.gfid);
    return this.wind('fstat', frame, fd);
  }

  override async access(frame: Frame, loc: Loc, mask: number): Promise<void> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('access', frame, loc, mask);
  }

  override async readlink(frame: Frame, loc: Loc): Promise<Name> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('readlink', frame, loc);
  }

  override async read(frame: Frame, fd: Fd, size: number, offset: number): Promise<Buffer> {
    this.touch(frame, fd.inode.gfid);
    return this.wind('read', frame, fd, size, offset);
  }

  override async opendir(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('opendir', frame, loc, fd);
  }

  override async readdir(frame: Frame, fd: Fd, size: number, offset: number) {
    this.touch(frame, fd.inode.gfid);
    return this.wind('readdir', frame, fd, size, offset);
  }

  override async readdirp(frame: Frame, fd: Fd, size: number, offset: number): Promise<DirentPlus[]> {
    this.touch(frame, fd.inode.gfid);
    const entries = await this.wind('readdirp', frame, fd, size, offset);
    // The client (and its kernel) now caches each listed object's attributes.
    this.touch(frame, ...entries.map((e) => e.iatt?.gfid));
    return entries;
  }

  override async getxattr(frame: Frame, loc: Loc, name: string): Promise<Buffer> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('getxattr', frame, loc, name);
  }

  override async listxattr(frame: Frame, loc: Loc): Promise<string[]> {
    this.touch(frame, gfidOfLoc(loc));
    return this.wind('listxattr', frame, loc);
  }

  // --- fops that change an object ----------------------------------------------------------

  override open(frame: Frame, loc: Loc, fd: Fd): Promise<void> {
    const trunc = (fd.flags & constants.O_TRUNC) !== 0;
    if (!trunc) {
      this.touch(frame, fd.inode.gfid);
      return this.wind('open', frame, loc, fd);
    }
    return this.changing(frame, fd.inode.gfid, { attrs: true, data: true }, () => this.wind('open', frame, loc, fd));
  }

  override write(frame: Frame, fd: Fd, data: Buffer, offset: number): Promise<number> {
    return this.changing(frame, fd.inode.gfid, { attrs: true, data: true }, () => this.wind('write', frame, fd, data, offset));
  }

  override truncate(frame: Frame, loc: Loc, size: number): Promise<Iatt> {
    return this.changing(frame, gfidOfLoc(loc), { attrs: true, data: true }, () => this.wind('truncate', frame, loc, size));
  }

  override ftruncate(frame: Frame, fd: Fd, size: number): Promise<Iatt> {
    return this.changing(frame, fd.inode.gfid, { attrs: true, data: true }, () => this.wind('ftruncate', frame, fd, size));
  }

  override fallocate(frame: Frame, fd: Fd, mode: number, offset: number, length: number): Promise<void> {
    return this.changing(frame, fd.inode.gfid, { attrs: true, data: true }, () => this.wind('fallocate', frame, fd, mode, offset, length));
  }

  override setattr(frame: Frame, loc: Loc, attr: SetAttr): Promise<Iatt> {
    return this.changing(frame, gfidOfLoc(loc), { attrs: true }, () => this.wind('setattr', frame, loc, attr));
  }

  override fsetattr(frame: Frame, fd: Fd, attr: SetAttr): Promise<Iatt> {
    return this.changing(frame, fd.inode.gfid, { attrs: true }, () => this.wind('fsetattr', frame, fd, attr));
  }

  override setxattr(frame: Frame, loc: Loc, name: string, value: Buffer, flags: number): Promise<void> {
    return this.changing(frame, gfidOfLoc(loc), { attrs: true, xattrs: true }, () => this.wind('setxattr', frame, loc, name, value, flags));
  }

  override removexattr(frame: Frame, loc: Loc, name: string): Promise<void> {
    return this.changing(frame, gfidOfLoc(loc), { attrs: true, xattrs: true }, () => this.wind('removexattr', frame, loc, name));
  }

  /** Internal xattrs (a cluster translator's bookkeeping) are nobody's cache: no upcall. */
  override xattrop(frame: Frame, loc: Loc, op: XattrOp, xattrs: XattrMap): Promise<Record<string, Buffer>> {
    return this.wind('xattrop', frame, loc, op, xattrs);
  }

  // --- fops that change names ------------------------------------------------------------

  /** A directory whose entry `name` changed. */
  private dirChange(loc: Loc): Change | undefined {
    if (!loc.parent || loc.name === undefined) return undefined;
    const entries: UpcallEntry[] = [{ parent: loc.parent.gfid, name: loc.name }];
    return { gfid: loc.parent.gfid, attrs: true, entries };
  }

  private async making(frame: Frame, loc: Loc, run: () => Promise<Iatt>): Promise<Iatt> {
    this.touch(frame, loc.parent?.gfid);
    const iatt = await run();
    this.tell(frame, [this.dirChange(loc)]);
    this.touch(frame, iatt.gfid);
    return iatt;
  }

  override mknod(frame: Frame, loc: Loc, mode: number, rdev: number): Promise<Iatt> {
    return this.making(frame, loc, () => this.wind('mknod', frame, loc, mode, rdev));
  }

  override mkdir(frame: Frame, loc: Loc, mode: number): Promise<Iatt> {
    return this.making(frame, loc, () => this.wind('mkdir', frame, loc, mode));
  }

  override symlink(frame: Frame, target: Name, loc: Loc): Promise<Iatt> {
    return this.making(frame, loc, () => this.wind('symlink', frame, target, loc));
  }

  override create(frame: Frame, loc: Loc, mode: number, fd: Fd): Promise<Iatt> {
    return this.making(frame, loc, () => this.wind('create', frame, loc, mode, fd));
  }

  override async link(frame: Frame, from: Loc, to: Loc): Promise<Iatt> {
    const gfid = gfidOfLoc(from);
    this.touch(frame, gfid, to.parent?.gfid);
    const iatt = await this.wind('link', frame, from, to);
    this.tell(frame, [{ gfid: iatt.gfid, attrs: true }, this.dirChange(to)]);
    return iatt;
  }

  private async removing(frame: Frame, loc: Loc, run: () => Promise<void>): Promise<void> {
    const gfid = gfidOfLoc(loc);
    this.touch(frame, loc.parent?.gfid, gfid);
    await run();
    this.tell(frame, [this.dirChange(loc), gfid === undefined ? undefined : { gfid, attrs: true }]);
  }

  override unlink(frame: Frame, loc: Loc): Promise<void> {
    return this.removing(frame, loc, () => this.wind('unlink', frame, loc));
  }

  override rmdir(frame: Frame, loc: Loc): Promise<void> {
    return this.removing(frame, loc, () => this.wind('rmdir', frame, loc));
  }

  override async rename(frame: Frame, from: Loc, to: Loc, flags: number): Promise<Iatt> {
    const replaced = gfidOfLoc(to);
    this.touch(frame, from.parent?.gfid, to.parent?.gfid, gfidOfLoc(from), replaced);
    const iatt = await this.wind('rename', frame, from, to, flags);
    // Both entries of one directory go in one upcall.
    const dirs = from.parent?.gfid === to.parent?.gfid ? [mergeEntries(this.dirChange(from), this.dirChange(to))] : [this.dirChange(from), this.dirChange(to)];
    // The other object (replaced, or swapped by RENAME_EXCHANGE) changed too.
    const other = replaced !== undefined && replaced !== iatt.gfid ? { gfid: replaced, attrs: true } : undefined;
    this.tell(frame, [...dirs, { gfid: iatt.gfid, attrs: true }, other]);
    return iatt;
  }
}

/** One directory's change with the entries of both. */
function mergeEntries(a: Change | undefined, b: Change | undefined): Change | undefined {
  if (!a || !b) return a ?? b;
  return { ...a, entries: [...(a.entries ?? []), ...(b.entries ?? [])] };
}

export const upcall = (clock: Clock = systemClock) =>
  defineTranslator({
    type: 'features/upcall',
    description: 'on a brick: tells clients of changes other clients make to what they hold (cache invalidation)',
    options,
    subvolumes: { min: 1, max: 1 },
    create: (init) => new Upcall(init, clock),
  });

export default upcall();
